//! The `device { … }` block of a `.net` hardware block: every key typed and checked with its span.
//!
//! ```text
//! hardware {
//!   …
//!   device {
//!     set_law linear_gate; r_vg 1.5e4; v_gate_zero 0.5V;   // or `set_law empirical; v_m 0.4V;`
//!     v_set 2.5V; gate_range 0.5V .. 2.5V; v_reset 1.7V; v_gate_reset 5V; reset_depth 1;
//!     program_noise 10uS;
//!     pulse soft_bounds { dw_min 0.01; up_down 0; }  // linear { up 1uS; down 1uS; }
//!                                                    // nonlinear { a_ltp 20; a_ltd 20; p_max 100; }
//!                                                    // table "curve.csv";
//!     pulse_width_ns 50; v_pulse 2V; v_pulse_reset 2V; v_threshold 1V; v_threshold_reset 1.2V;
//!     v_threshold_dtod 0.13; overdrive_exponent 1;
//!     c2c 0.02; dw_min_dtod 0.3; w_max_dtod 0.1;
//!     stuck_on 0.01 100uS; stuck_off 0.11 10uS; miswrite 0.1;
//!     read_noise 0.01; relax_sigma 0.5uS;
//!     drift { nu 0.005; nu_d2d 0.002; t0_seconds 20; tail_fraction 0.05; tail_tau_seconds 3600; tail_sigma 0.1; }
//!     verify { v_read 0.2V; tolerance_a 50nA; tolerance_rel 0.05; max_pulses 500;
//!              ramp_set 0.8V .. 1.5V; ramp_reset 0.8V .. 1.8V; ramp_step 0.05V; }
//!   }
//! }
//! ```
//! Times carry their unit in the key (`_ns`, `_seconds`) because `s` in a `.net` number is siemens.

use std::path::Path;

use super::{DeviceError, DeviceSpec, PulseLaw, SetLaw};
use crate::net::ast::{Stmt, Value, ValueKind};
use crate::span::Span;

/// Keys of the `device` block.
pub const DEVICE_KEYS: &[&str] = &[
    "g_min",
    "g_max",
    "set_law",
    "r_vg",
    "v_gate_zero",
    "v_m",
    "v_set",
    "gate_range",
    "v_reset",
    "v_gate_reset",
    "reset_depth",
    "program_noise",
    "pulse",
    "pulse_width_ns",
    "v_pulse",
    "v_pulse_reset",
    "v_threshold",
    "v_threshold_reset",
    "v_threshold_dtod",
    "overdrive_exponent",
    "c2c",
    "dw_min_dtod",
    "w_max_dtod",
    "stuck_on",
    "stuck_off",
    "miswrite",
    "read_noise",
    "relax_sigma",
    "drift",
    "verify",
];

fn invalid(span: &Span, message: impl Into<String>) -> DeviceError {
    DeviceError::Invalid {
        span: span.clone(),
        message: message.into(),
    }
}

fn num_of(v: &Value, key: &str, unit: &str) -> Result<f64, DeviceError> {
    crate::net::spec::number_in(v, key, unit)
        .map_err(|(span, message)| DeviceError::Invalid { span, message })
}

fn values(s: &Stmt, n: usize) -> Result<&[Value], DeviceError> {
    if s.values.len() < n {
        return Err(invalid(
            &s.key_span,
            format!("`{}` needs {n} value(s)", s.key),
        ));
    }
    if let Some(v) = s.values.get(n) {
        return Err(invalid(&v.span, format!("`{}` takes {n} value(s)", s.key)));
    }
    Ok(&s.values)
}

/// A number in `[lo, hi]` (inclusive), with unit `unit` ("" = plain).
fn bounded(s: &Stmt, unit: &str, lo: f64, hi: f64) -> Result<f64, DeviceError> {
    let v = &values(s, 1)?[0];
    let x = num_of(v, &s.key, unit)?;
    if x < lo || x > hi {
        return Err(invalid(
            &v.span,
            format!("`{}` must be in [{lo}, {hi}], got {x}", s.key),
        ));
    }
    Ok(x)
}

fn positive(s: &Stmt, unit: &str) -> Result<f64, DeviceError> {
    let v = &values(s, 1)?[0];
    let x = num_of(v, &s.key, unit)?;
    if x <= 0.0 {
        return Err(invalid(&v.span, format!("`{}` must be > 0", s.key)));
    }
    Ok(x)
}

fn non_negative(s: &Stmt, unit: &str) -> Result<f64, DeviceError> {
    bounded(s, unit, 0.0, f64::INFINITY)
}

fn word(s: &Stmt, options: &[&str]) -> Result<String, DeviceError> {
    let v = &values(s, 1)?[0];
    match &v.kind {
        ValueKind::Ident(w) if options.contains(&w.to_ascii_lowercase().as_str()) => {
            Ok(w.to_ascii_lowercase())
        }
        _ => Err(invalid(
            &v.span,
            format!("`{}` must be one of: {}", s.key, options.join(", ")),
        )),
    }
}

fn no_body(s: &Stmt) -> Result<(), DeviceError> {
    if s.body.is_some() {
        return Err(invalid(
            &s.key_span,
            format!("`{}` takes no `{{ … }}` body", s.key),
        ));
    }
    Ok(())
}

fn check_keys<'a>(body: &'a [Stmt], block: &str, known: &[&str]) -> Result<(), DeviceError> {
    let mut seen: Vec<&'a str> = Vec::new();
    for st in body {
        if !known.contains(&st.key.as_str()) {
            return Err(invalid(
                &st.key_span,
                format!(
                    "unknown key `{}` in {block} (known: {})",
                    st.key,
                    known.join(", ")
                ),
            ));
        }
        if seen.contains(&st.key.as_str()) {
            return Err(invalid(
                &st.key_span,
                format!("`{}` given twice in {block}", st.key),
            ));
        }
        seen.push(&st.key);
    }
    Ok(())
}

/// Parse a `device { … }` statement. `g_min_siemens`/`g_max_siemens` are the hardware window (the
/// device block may narrow it); `base` is the directory measured-curve files are looked up in.
pub fn device_block(
    s: &Stmt,
    base: &Path,
    g_min_siemens: f64,
    g_max_siemens: f64,
) -> Result<DeviceSpec, DeviceError> {
    if let Some(v) = s.values.first() {
        return Err(invalid(&v.span, "`device` takes no name"));
    }
    let body = s.body.as_deref().unwrap_or(&[]);
    check_keys(body, "device", DEVICE_KEYS)?;
    let mut d = DeviceSpec::ideal(g_min_siemens, g_max_siemens);
    let mut law_span = None;
    let mut r_vg = None;
    let mut v_gate_zero = 0.0;
    let mut stuck_on_given = false;
    let mut stuck_off_given = false;
    for st in body {
        if !matches!(st.key.as_str(), "pulse" | "drift" | "verify") {
            no_body(st)?;
        }
        match st.key.as_str() {
            "g_min" => d.g_min_siemens = positive(st, "s")?,
            "g_max" => d.g_max_siemens = positive(st, "s")?,
            "set_law" => {
                law_span = Some(st.key_span.clone());
                d.set_law = match word(st, &["empirical", "linear_gate"])?.as_str() {
                    "empirical" => SetLaw::Empirical,
                    _ => SetLaw::LinearGate {
                        r_vg_v_per_siemens: f64::NAN,
                        v_gate_zero_v: 0.0,
                    },
                }
            }
            "r_vg" => r_vg = Some((positive(st, "")?, st.key_span.clone())),
            "v_gate_zero" => v_gate_zero = num_of(&values(st, 1)?[0], &st.key, "v")?,
            "v_m" => d.v_m_v = positive(st, "v")?,
            "v_set" => d.v_set_v = positive(st, "v")?,
            "gate_range" => {
                let v = &values(st, 1)?[0];
                let ValueKind::Range(a, b) = &v.kind else {
                    return Err(invalid(&v.span, "`gate_range` needs `lo .. hi`"));
                };
                let (lo, hi) = (num_of(a, "gate_range", "v")?, num_of(b, "gate_range", "v")?);
                if lo >= hi {
                    return Err(invalid(&v.span, "`gate_range`: empty range"));
                }
                d.v_gate_min_v = lo;
                d.v_gate_max_v = hi;
            }
            "v_reset" => d.v_reset_v = positive(st, "v")?,
            "v_gate_reset" => d.v_gate_reset_v = positive(st, "v")?,
            "reset_depth" => {
                let x = bounded(st, "", 0.0, 1.0)?;
                if x == 0.0 {
                    return Err(invalid(&st.values[0].span, "`reset_depth` must be > 0"));
                }
                d.reset_depth = x;
            }
            "program_noise" => d.program_noise_siemens = non_negative(st, "s")?,
            "pulse" => d.pulse = pulse(st, base)?,
            "pulse_width_ns" => d.pulse_width_seconds = positive(st, "")? * 1e-9,
            "v_pulse" => d.v_pulse_v = positive(st, "v")?,
            "v_pulse_reset" => d.v_pulse_reset_v = Some(positive(st, "v")?),
            "v_threshold" => d.v_threshold_v = non_negative(st, "v")?,
            "v_threshold_reset" => d.v_threshold_reset_v = Some(non_negative(st, "v")?),
            "v_threshold_dtod" => d.v_threshold_dtod = bounded(st, "", 0.0, 1.0)?,
            "overdrive_exponent" => d.overdrive_exponent = bounded(st, "", 0.0, 10.0)?,
            "c2c" => d.c2c_sigma = bounded(st, "", 0.0, 1.0)?,
            "dw_min_dtod" => d.dw_min_dtod = bounded(st, "", 0.0, 1.0)?,
            "w_max_dtod" => d.w_max_dtod = bounded(st, "", 0.0, 1.0)?,
            "stuck_on" | "stuck_off" => {
                let vs = values(st, 2)?;
                let f = num_of(&vs[0], &st.key, "")?;
                if !(0.0..=1.0).contains(&f) {
                    return Err(invalid(
                        &vs[0].span,
                        format!("`{}` fraction must be in [0, 1], got {f}", st.key),
                    ));
                }
                let g = num_of(&vs[1], &st.key, "s")?;
                if g <= 0.0 {
                    return Err(invalid(&vs[1].span, "a stuck conductance must be > 0"));
                }
                if st.key == "stuck_on" {
                    d.stuck_on_fraction = f;
                    d.stuck_on_g_siemens = g;
                    stuck_on_given = true;
                } else {
                    d.stuck_off_fraction = f;
                    d.stuck_off_g_siemens = g;
                    stuck_off_given = true;
                }
            }
            "miswrite" => d.miswrite_fraction = bounded(st, "", 0.0, 1.0)?,
            "read_noise" => d.read_noise_rel = bounded(st, "", 0.0, 1.0)?,
            "relax_sigma" => d.relax_sigma_siemens = non_negative(st, "s")?,
            "drift" => drift(st, &mut d)?,
            "verify" => verify(st, &mut d)?,
            _ => unreachable!("checked against DEVICE_KEYS"),
        }
    }
    if let SetLaw::LinearGate { .. } = d.set_law {
        let Some((r, _)) = r_vg else {
            return Err(invalid(
                law_span.as_ref().unwrap_or(&s.key_span),
                "`set_law linear_gate` needs `r_vg` (V/S; S1: 1.5e4)",
            ));
        };
        d.set_law = SetLaw::LinearGate {
            r_vg_v_per_siemens: r,
            v_gate_zero_v: v_gate_zero,
        };
    } else if let Some((_, sp)) = r_vg {
        return Err(invalid(&sp, "`r_vg` is used only by `set_law linear_gate`"));
    }
    if d.g_min_siemens >= d.g_max_siemens {
        return Err(invalid(
            &s.key_span,
            format!(
                "device window must satisfy g_min < g_max, got {:e} .. {:e} S",
                d.g_min_siemens, d.g_max_siemens
            ),
        ));
    }
    if !stuck_on_given {
        d.stuck_on_g_siemens = d.g_max_siemens;
    }
    if !stuck_off_given {
        d.stuck_off_g_siemens = d.g_min_siemens;
    }
    if let PulseLaw::Linear {
        dg_up_siemens,
        dg_down_siemens,
    } = &mut d.pulse
    {
        if dg_up_siemens.is_nan() {
            *dg_up_siemens = (d.g_max_siemens - d.g_min_siemens) / 100.0;
            *dg_down_siemens = *dg_up_siemens;
        }
    }
    d.validate()
        .map_err(|e| invalid(&s.key_span, e.to_string()))?;
    Ok(d)
}

fn pulse(s: &Stmt, base: &Path) -> Result<PulseLaw, DeviceError> {
    let kinds = ["linear", "soft_bounds", "nonlinear", "table"];
    let v = s.values.first().ok_or_else(|| {
        invalid(
            &s.key_span,
            "`pulse` needs a law: linear, soft_bounds, nonlinear or table",
        )
    })?;
    let kind = match &v.kind {
        ValueKind::Ident(w) if kinds.contains(&w.to_ascii_lowercase().as_str()) => {
            w.to_ascii_lowercase()
        }
        _ => {
            return Err(invalid(
                &v.span,
                format!("`pulse` must be one of: {}", kinds.join(", ")),
            ))
        }
    };
    let body = s.body.as_deref().unwrap_or(&[]);
    if kind == "table" {
        let f = s
            .values
            .get(1)
            .ok_or_else(|| invalid(&v.span, "`pulse table` needs a quoted CSV file name"))?;
        let ValueKind::Str(name) = &f.kind else {
            return Err(invalid(
                &f.span,
                "`pulse table` needs a quoted CSV file name",
            ));
        };
        let path = [base.join(name), base.join("models").join(name)]
            .into_iter()
            .find(|p| p.exists())
            .ok_or_else(|| {
                invalid(
                    &f.span,
                    format!("no curve file `{name}` next to the .net file or in its models/"),
                )
            })?;
        let g_siemens =
            super::read_curve_csv(&path).map_err(|e| invalid(&f.span, e.to_string()))?;
        return Ok(PulseLaw::Table { g_siemens });
    }
    if let Some(extra) = s.values.get(1) {
        return Err(invalid(&extra.span, "`pulse` takes one law name"));
    }
    let known: &[&str] = match kind.as_str() {
        "linear" => &["up", "down"],
        "soft_bounds" => &["dw_min", "up_down"],
        _ => &["a_ltp", "a_ltd", "p_max"],
    };
    check_keys(body, &format!("pulse {kind}"), known)?;
    let get = |k: &str| body.iter().find(|st| st.key == k);
    let need =
        |k: &str| get(k).ok_or_else(|| invalid(&v.span, format!("`pulse {kind}` needs `{k}`")));
    for st in body {
        no_body(st)?;
    }
    Ok(match kind.as_str() {
        "linear" => {
            let up = positive(need("up")?, "s")?;
            let down = match get("down") {
                Some(st) => positive(st, "s")?,
                None => up,
            };
            PulseLaw::Linear {
                dg_up_siemens: up,
                dg_down_siemens: down,
            }
        }
        "soft_bounds" => {
            let st = need("dw_min")?;
            let dw = bounded(st, "", 0.0, 1.0)?;
            if dw == 0.0 || dw == 1.0 {
                return Err(invalid(&st.values[0].span, "`dw_min` must be in (0, 1)"));
            }
            let ud = match get("up_down") {
                Some(st) => {
                    let x = bounded(st, "", -1.0, 1.0)?;
                    if x.abs() >= 1.0 {
                        return Err(invalid(&st.values[0].span, "`up_down` must be in (−1, 1)"));
                    }
                    x
                }
                None => 0.0,
            };
            PulseLaw::SoftBounds {
                dw_min: dw,
                up_down: ud,
            }
        }
        _ => {
            let a = positive(need("a_ltp")?, "")?;
            let a_d = match get("a_ltd") {
                Some(st) => positive(st, "")?,
                None => a,
            };
            let st = need("p_max")?;
            let p = positive(st, "")?;
            if p < 1.0 || p.fract() != 0.0 {
                return Err(invalid(
                    &st.values[0].span,
                    "`p_max` must be a whole number ≥ 1",
                ));
            }
            PulseLaw::Nonlinear {
                a_ltp_pulses: a,
                a_ltd_pulses: a_d,
                p_max_pulses: p,
            }
        }
    })
}

fn drift(s: &Stmt, d: &mut DeviceSpec) -> Result<(), DeviceError> {
    if let Some(v) = s.values.first() {
        return Err(invalid(
            &v.span,
            "`drift` takes no value, only a `{ … }` body",
        ));
    }
    let body = s.body.as_deref().unwrap_or(&[]);
    check_keys(
        body,
        "drift",
        &[
            "nu",
            "nu_d2d",
            "t0_seconds",
            "tail_fraction",
            "tail_tau_seconds",
            "tail_sigma",
        ],
    )?;
    for st in body {
        no_body(st)?;
        match st.key.as_str() {
            "nu" => d.drift.nu = bounded(st, "", 0.0, 1.0)?,
            "nu_d2d" => d.drift.nu_d2d = bounded(st, "", 0.0, 1.0)?,
            "t0_seconds" => d.drift.t0_seconds = positive(st, "")?,
            "tail_fraction" => d.drift.tail_fraction = bounded(st, "", 0.0, 1.0)?,
            "tail_tau_seconds" => d.drift.tail_tau_seconds = positive(st, "")?,
            _ => d.drift.tail_sigma_rel = bounded(st, "", 0.0, 1.0)?,
        }
    }
    if d.drift.tail_fraction > 0.0 && d.drift.tail_tau_seconds <= 0.0 {
        return Err(invalid(
            &s.key_span,
            "tail relaxation needs `tail_tau_seconds`",
        ));
    }
    Ok(())
}

fn verify(s: &Stmt, d: &mut DeviceSpec) -> Result<(), DeviceError> {
    if let Some(v) = s.values.first() {
        return Err(invalid(
            &v.span,
            "`verify` takes no value, only a `{ … }` body",
        ));
    }
    let body = s.body.as_deref().unwrap_or(&[]);
    check_keys(
        body,
        "verify",
        &[
            "v_read",
            "tolerance_a",
            "tolerance_rel",
            "max_pulses",
            "ramp_set",
            "ramp_reset",
            "ramp_step",
        ],
    )?;
    let mut abs = None;
    let mut rel = None;
    let mut ramp_set = None;
    let mut ramp_reset = None;
    let mut ramp_step = None;
    for st in body {
        no_body(st)?;
        match st.key.as_str() {
            "v_read" => d.verify.v_read_v = positive(st, "v")?,
            "tolerance_a" => abs = Some(positive(st, "a")?),
            "tolerance_rel" => rel = Some(positive(st, "")?),
            "ramp_set" => ramp_set = Some(amplitude_range(st)?),
            "ramp_reset" => ramp_reset = Some(amplitude_range(st)?),
            "ramp_step" => ramp_step = Some(positive(st, "v")?),
            _ => {
                let x = positive(st, "")?;
                if x.fract() != 0.0 || x > 1e9 {
                    return Err(invalid(
                        &st.values[0].span,
                        "`max_pulses` must be a whole number",
                    ));
                }
                d.verify.max_pulses = x as usize;
            }
        }
    }
    if abs.is_some() || rel.is_some() {
        d.verify.tolerance_a = abs;
        d.verify.tolerance_rel = rel;
    }
    d.verify.ramp = match (ramp_set, ramp_reset, ramp_step) {
        (None, None, None) => None,
        (Some((set_start_v, set_stop_v)), Some((reset_start_v, reset_stop_v)), Some(step_v)) => {
            Some(super::VerifyRamp {
                set_start_v,
                set_stop_v,
                reset_start_v,
                reset_stop_v,
                step_v,
            })
        }
        (set, reset, step) => {
            let missing: Vec<&str> = [
                ("ramp_set", set.is_none()),
                ("ramp_reset", reset.is_none()),
                ("ramp_step", step.is_none()),
            ]
            .into_iter()
            .filter_map(|(k, m)| m.then_some(k))
            .collect();
            return Err(invalid(
                &s.key_span,
                format!(
                    "an amplitude ramp needs `ramp_set`, `ramp_reset` and `ramp_step`; missing {}",
                    missing.join(", ")
                ),
            ));
        }
    };
    Ok(())
}

/// A pulse amplitude range `start .. stop` (magnitudes, volts, 0 < start ≤ stop).
fn amplitude_range(s: &Stmt) -> Result<(f64, f64), DeviceError> {
    let v = &values(s, 1)?[0];
    let ValueKind::Range(a, b) = &v.kind else {
        return Err(invalid(
            &v.span,
            format!("`{}` needs `start .. stop` (V)", s.key),
        ));
    };
    let (lo, hi) = (num_of(a, &s.key, "v")?, num_of(b, &s.key, "v")?);
    if lo <= 0.0 || hi <= 0.0 {
        return Err(invalid(
            &v.span,
            format!(
                "`{}`: amplitudes are magnitudes and must be > 0 (a RESET pulse's sign is its \
                 polarity), got {lo} .. {hi}",
                s.key
            ),
        ));
    }
    if lo > hi {
        return Err(invalid(
            &v.span,
            format!("`{}`: the ramp must rise, got {lo} .. {hi}", s.key),
        ));
    }
    Ok((lo, hi))
}
