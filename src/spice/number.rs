//! SPICE numbers: `1e-3`, `.5`, `5.`, SI suffixes `f p n u m k meg g t mil` (case-insensitive,
//! `m` is milli, `meg` mega) and trailing unit letters that are ignored (`10kOhm`, `2.5V`, `1uA`).
//! Checked against ngspice 39: `1a` = 1 (no atto), `1MA` = 1e-3, `1e3k` = 1e6, `2x` = 2.

/// Parse a SPICE number. Returns `None` when `s` is not a number (or is not finite).
pub fn parse_number(s: &str) -> Option<f64> {
    let b = s.as_bytes();
    let mut i = 0;
    if i < b.len() && (b[i] == b'+' || b[i] == b'-') {
        i += 1;
    }
    let int_start = i;
    while i < b.len() && b[i].is_ascii_digit() {
        i += 1;
    }
    let mut n_digits = i - int_start;
    if i < b.len() && b[i] == b'.' {
        i += 1;
        let f = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        n_digits += i - f;
    }
    if n_digits == 0 {
        return None;
    }
    // Exponent: only when digits follow (`2e` is 2 with unit letter `e`).
    if i < b.len() && (b[i] == b'e' || b[i] == b'E') {
        let mut j = i + 1;
        if j < b.len() && (b[j] == b'+' || b[j] == b'-') {
            j += 1;
        }
        let d = j;
        while j < b.len() && b[j].is_ascii_digit() {
            j += 1;
        }
        if j > d {
            i = j;
        }
    }
    let rest = &s[i..];
    if !rest.bytes().all(|c| c.is_ascii_alphabetic()) {
        return None;
    }
    let v = match suffix_exponent(rest) {
        Ok(0) => s[..i].parse::<f64>().ok()?,
        // Decimal scaling by text keeps the result correctly rounded (`110u` = 1.1e-4 exactly
        // as `1.1e-4` would be).
        Ok(p10) => {
            let (mant, exp) = match s[..i].find(['e', 'E']) {
                Some(k) => (&s[..k], s[k + 1..i].parse::<i32>().ok()?),
                None => (&s[..i], 0),
            };
            format!("{mant}e{}", exp.checked_add(p10)?)
                .parse::<f64>()
                .ok()?
        }
        Err(factor) => s[..i].parse::<f64>().ok()? * factor,
    };
    v.is_finite().then_some(v)
}

/// The power of ten of a suffix, or `Err(factor)` when it is not a power of ten (`mil`).
fn suffix_exponent(letters: &str) -> Result<i32, f64> {
    let scale = suffix_scale(letters);
    if scale == 25.4e-6 {
        return Err(scale);
    }
    Ok(scale.log10().round() as i32)
}

/// Scale factor of the letters after a number (`""` → 1).
pub fn suffix_scale(letters: &str) -> f64 {
    let l = letters.as_bytes();
    let lower = |k: usize| l.get(k).map(|c| c.to_ascii_lowercase());
    match lower(0) {
        None => 1.0,
        Some(b'f') => 1e-15,
        Some(b'p') => 1e-12,
        Some(b'n') => 1e-9,
        Some(b'u') => 1e-6,
        Some(b'm') => {
            if lower(1) == Some(b'e') && lower(2) == Some(b'g') {
                1e6
            } else if lower(1) == Some(b'i') && lower(2) == Some(b'l') {
                25.4e-6
            } else {
                1e-3
            }
        }
        Some(b'k') => 1e3,
        Some(b'g') => 1e9,
        Some(b't') => 1e12,
        Some(_) => 1.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn si_suffix_table() {
        let cases: &[(&str, f64)] = &[
            ("1", 1.0),
            ("-2.5", -2.5),
            ("+3", 3.0),
            (".5", 0.5),
            ("5.", 5.0),
            ("1e-3", 1e-3),
            ("1E3", 1e3),
            ("1e+2", 100.0),
            ("1f", 1e-15),
            ("1p", 1e-12),
            ("1n", 1e-9),
            ("1u", 1e-6),
            ("1m", 1e-3),
            ("1M", 1e-3),
            ("1k", 1e3),
            ("1K", 1e3),
            ("1meg", 1e6),
            ("1MEG", 1e6),
            ("1Meg", 1e6),
            ("1g", 1e9),
            ("1t", 1e12),
            ("1mil", 25.4e-6),
            ("10kOhm", 1e4),
            ("2.5V", 2.5),
            ("1uA", 1e-6),
            ("1MA", 1e-3),
            ("1a", 1.0),
            ("2x", 2.0),
            ("1e3k", 1e6),
            ("2e", 2.0),
            ("3megohm", 3e6),
        ];
        for (s, v) in cases {
            let got = parse_number(s).unwrap_or_else(|| panic!("{s} did not parse"));
            assert!(
                (got - v).abs() <= 1e-15 * v.abs(),
                "{s}: got {got}, want {v}"
            );
        }
        for bad in [
            "", "k", "-", ".", "e3", "1k2", "1.2.3", "1e", "x1", "1-2", "1e999",
        ] {
            if bad == "1e" {
                // `1e` is 1 with unit letter `e`.
                assert_eq!(parse_number(bad), Some(1.0));
                continue;
            }
            assert_eq!(parse_number(bad), None, "{bad:?} should not parse");
        }
    }
}
