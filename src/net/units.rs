//! SI suffixes and units of `.net` numbers (`2.5ohm`, `10uS`, `0.2V`, `1Meg`, `1.3um`).

/// Canonical units the language knows. Empty means dimensionless.
pub const UNITS: &[&str] = &["", "s", "ohm", "v", "a", "m", "hz"];

/// Split the letters after a number into a power of ten and a canonical unit.
/// SPICE rules: `meg` = 1e6, then one of `f p n u µ m k g t`; a lone `m` is milli.
/// Returns `None` for an unknown unit.
pub fn split_suffix(letters: &str) -> Option<(i32, String)> {
    let s: String = letters
        .chars()
        .map(|c| match c {
            'Ω' => "ohm".to_string(),
            'µ' | 'μ' => "u".to_string(),
            c => c.to_lowercase().to_string(),
        })
        .collect();
    let canon = |u: &str| -> Option<String> {
        match u {
            "" => Some(String::new()),
            "s" | "siemens" => Some("s".into()),
            "ohm" | "ohms" => Some("ohm".into()),
            "v" | "volt" | "volts" => Some("v".into()),
            "a" | "amp" | "amps" => Some("a".into()),
            "hz" => Some("hz".into()),
            "meter" | "metre" => Some("m".into()),
            _ => None,
        }
    };
    if s != "m" {
        if let Some(u) = canon(&s) {
            return Some((0, u));
        }
    }
    if let Some(rest) = s.strip_prefix("meg") {
        return canon(rest).map(|u| (6, u));
    }
    let mut chars = s.chars();
    let first = chars.next()?;
    let rest: String = chars.collect();
    let scale = match first {
        'f' => -15,
        'p' => -12,
        'n' => -9,
        'u' => -6,
        'm' => -3,
        'k' => 3,
        'g' => 9,
        't' => 12,
        _ => return None,
    };
    if rest == "m" {
        return Some((scale, "m".into()));
    }
    canon(&rest).map(|u| (scale, u))
}

/// `mantissa` (digits, optional sign and point) × 10^(`exp` + `power`), correctly rounded.
pub fn scaled(mantissa: &str, exp: i32, power: i32) -> Option<f64> {
    let x: f64 = format!("{mantissa}e{}", exp.checked_add(power)?)
        .parse()
        .ok()?;
    x.is_finite().then_some(x)
}

/// Human name of a canonical unit, for messages.
pub fn unit_name(unit: &str) -> &'static str {
    match unit {
        "s" => "siemens (S)",
        "ohm" => "ohms (ohm)",
        "v" => "volts (V)",
        "a" => "amperes (A)",
        "m" => "metres (m)",
        "hz" => "hertz (Hz)",
        _ => "a plain number",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffixes() {
        let (s, u) = split_suffix("uS").unwrap();
        assert_eq!((s, u.as_str()), (-6, "s"));
        assert_eq!(split_suffix("ohm").unwrap(), (0, "ohm".into()));
        assert_eq!(split_suffix("kΩ").unwrap(), (3, "ohm".into()));
        assert_eq!(split_suffix("Meg").unwrap(), (6, "".into()));
        assert_eq!(split_suffix("m").unwrap(), (-3, "".into()));
        assert_eq!(split_suffix("um").unwrap(), (-6, "m".into()));
        assert_eq!(split_suffix("V").unwrap(), (0, "v".into()));
        assert_eq!(split_suffix("mS").unwrap(), (-3, "s".into()));
        assert_eq!(split_suffix("µS").unwrap(), (-6, "s".into()));
        assert_eq!(scaled("10", 0, -6), Some(1e-5));
        assert_eq!(scaled("2.5", 0, -6), Some(2.5e-6));
        assert_eq!(scaled("1.5", -3, 3), Some(1.5));
        assert!(split_suffix("furlong").is_none());
    }
}
