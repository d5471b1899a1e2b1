//! Device laws against their closed forms; faults, thresholds, drift; located errors of the
//! `device { … }` block.

use netc::device::{DeviceParams, DeviceSpec, Fault, PulseLaw, SetLaw};
use netc::net::load_str;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::path::PathBuf;

fn rng() -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(7)
}

fn spec(pulse: PulseLaw) -> DeviceSpec {
    let mut s = DeviceSpec::ideal(10e-6, 100e-6);
    s.pulse = pulse;
    s.validate().unwrap();
    s
}

fn close(a: f64, b: f64, rel: f64) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs())
}

#[test]
fn linear_steps_are_arithmetic_and_clip() {
    let s = spec(PulseLaw::Linear {
        dg_up_siemens: 2e-6,
        dg_down_siemens: 3e-6,
    });
    let p = DeviceParams::nominal(&s);
    let mut r = rng();
    let g = s.pulses(&p, 20e-6, 7, 2.0, &mut r);
    assert!(close(g, 20e-6 + 7.0 * 2e-6, 1e-12), "{g}");
    let g = s.pulses(&p, g, -4, -2.0, &mut r);
    assert!(close(g, 34e-6 - 4.0 * 3e-6, 1e-12), "{g}");
    // clipped at both ends of the window
    assert_eq!(s.pulses(&p, 99e-6, 10, 2.0, &mut r), 100e-6);
    assert_eq!(s.pulses(&p, 11e-6, -10, -2.0, &mut r), 10e-6);
}

#[test]
fn soft_bounds_follow_geometric_closed_form() {
    // x_n: 1 − x_n = (1 − x_0)(1 − δ⁺)^n up, x_n = x_0 (1 − δ⁻)^n down, δ± = dw_min(1 ± up_down)
    let (dw, ud) = (0.03, 0.2);
    let s = spec(PulseLaw::SoftBounds {
        dw_min: dw,
        up_down: ud,
    });
    let p = DeviceParams::nominal(&s);
    let mut r = rng();
    let (lo, hi) = (s.g_min_siemens, s.g_max_siemens);
    let x0 = 0.25;
    let g0 = lo + x0 * (hi - lo);
    for n in [1i64, 5, 40] {
        let g = s.pulses(&p, g0, n, 2.0, &mut r);
        let want = lo + (1.0 - (1.0 - x0) * (1.0 - dw * (1.0 + ud)).powi(n as i32)) * (hi - lo);
        assert!(close(g, want, 1e-12), "up n={n}: {g} vs {want}");
        let g = s.pulses(&p, g0, -n, -2.0, &mut r);
        let want = lo + x0 * (1.0 - dw * (1.0 - ud)).powi(n as i32) * (hi - lo);
        assert!(close(g, want, 1e-12), "down n={n}: {g} vs {want}");
    }
}

#[test]
fn neurosim_nonlinear_follows_its_curves() {
    let (a_p, a_d, pmax) = (25.0, 15.0, 100.0);
    let s = spec(PulseLaw::Nonlinear {
        a_ltp_pulses: a_p,
        a_ltd_pulses: a_d,
        p_max_pulses: pmax,
    });
    let p = DeviceParams::nominal(&s);
    let mut r = rng();
    let (lo, hi) = (s.g_min_siemens, s.g_max_siemens);
    let b = |a: f64| (hi - lo) / (1.0 - (-pmax / a).exp());
    // LTP from G_min: G_LTP(n) = B(1 − e^(−n/A)) + G_min (NeuroSim RealDevice)
    for n in [1i64, 10, 50, 100] {
        let g = s.pulses(&p, lo, n, 2.0, &mut r);
        let want = b(a_p) * (1.0 - (-(n as f64) / a_p).exp()) + lo;
        assert!(close(g, want, 1e-9), "LTP n={n}: {g} vs {want}");
    }
    // LTD from G_max: G_LTD(P_max − n) = −B(1 − e^(−n/A)) + G_max
    for n in [1i64, 10, 50, 100] {
        let g = s.pulses(&p, hi, -n, -2.0, &mut r);
        let want = -b(a_d) * (1.0 - (-(n as f64) / a_d).exp()) + hi;
        assert!(close(g, want, 1e-9), "LTD n={n}: {g} vs {want}");
    }
    // P_max pulses span the whole window
    assert!(close(s.pulses(&p, lo, pmax as i64, 2.0, &mut r), hi, 1e-9));
}

#[test]
fn measured_table_is_walked_pulse_by_pulse() {
    // a table sampled from a NeuroSim curve reproduces that curve at whole pulse counts
    let (lo, hi, a, pmax) = (10e-6, 100e-6, 20.0, 60usize);
    let b = (hi - lo) / (1.0 - (-(pmax as f64) / a).exp());
    let curve: Vec<f64> = (0..=pmax)
        .map(|p| b * (1.0 - (-(p as f64) / a).exp()) + lo)
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("curve.csv");
    let mut text = String::from("pulse,g_siemens\n");
    for (p, g) in curve.iter().enumerate() {
        text.push_str(&format!("{p},{g:e}\n"));
    }
    std::fs::write(&path, text).unwrap();
    let table = netc::device::read_curve_csv(&path).unwrap();
    let s = spec(PulseLaw::Table { g_siemens: table });
    let p = DeviceParams::nominal(&s);
    let mut r = rng();
    for n in [1usize, 7, 30, 60] {
        let g = s.pulses(&p, lo, n as i64, 2.0, &mut r);
        assert!(close(g, curve[n], 1e-9), "n={n}: {g} vs {}", curve[n]);
    }
    let g = s.pulses(&p, curve[40], -15, -2.0, &mut r);
    assert!(close(g, curve[25], 1e-9), "{g} vs {}", curve[25]);
    // a malformed curve is an error with its line
    std::fs::write(&path, "pulse,g\n0,1e-5\n1,0.5e-5\n").unwrap();
    let e = netc::device::read_curve_csv(&path).unwrap_err().to_string();
    assert!(e.contains(":3:") && e.contains("increase"), "{e}");
}

#[test]
fn threshold_decides_who_moves() {
    let mut s = spec(PulseLaw::Linear {
        dg_up_siemens: 1e-6,
        dg_down_siemens: 1e-6,
    });
    s.v_threshold_v = 1.2;
    let p = DeviceParams::nominal(&s);
    let mut r = rng();
    // a half-selected cell at V/2 = 1.0 V stays, the selected one at 2.0 V moves
    assert_eq!(s.pulses(&p, 50e-6, 3, 1.0, &mut r), 50e-6);
    assert!(close(s.pulses(&p, 50e-6, 3, 2.0, &mut r), 53e-6, 1e-12));
}

#[test]
fn stuck_devices_never_move() {
    let mut s = spec(PulseLaw::SoftBounds {
        dw_min: 0.05,
        up_down: 0.0,
    });
    s.c2c_sigma = 0.1;
    s.program_noise_siemens = 5e-6;
    s.drift.nu = 0.1;
    let mut p = DeviceParams::nominal(&s);
    p.fault = Fault::Stuck { g_siemens: 10e-6 };
    let mut r = rng();
    assert_eq!(s.pulses(&p, 10e-6, 50, 2.0, &mut r), 10e-6);
    assert_eq!(s.pulses(&p, 10e-6, -50, -2.0, &mut r), 10e-6);
    assert_eq!(s.reset(&p, 10e-6), 10e-6);
    assert_eq!(s.set_from_compliance(&p, 1e-4, 2.0, &mut r), 10e-6);
    assert_eq!(s.land(&p, 80e-6, &mut r), 10e-6);
    assert_eq!(s.drifted(&p, 10e-6, 1e6), 10e-6);
}

#[test]
fn fault_fractions_are_drawn_as_declared() {
    let mut s = spec(PulseLaw::Linear {
        dg_up_siemens: 1e-6,
        dg_down_siemens: 1e-6,
    });
    s.stuck_off_fraction = 0.11;
    s.stuck_off_g_siemens = 10e-6;
    s.miswrite_fraction = 0.1;
    let mut r = rng();
    let n = 20_000;
    let ps: Vec<_> = (0..n).map(|_| s.draw(&mut r)).collect();
    let stuck = ps
        .iter()
        .filter(|p| matches!(p.fault, Fault::Stuck { .. }))
        .count();
    let mis = ps.iter().filter(|p| p.fault == Fault::Miswritten).count();
    // binomial: 4σ bounds
    let sd = |f: f64| 4.0 * (n as f64 * f * (1.0 - f)).sqrt();
    assert!(
        ((stuck as f64) - 0.11 * n as f64).abs() < sd(0.11),
        "{stuck}"
    );
    assert!(((mis as f64) - 0.1 * n as f64).abs() < sd(0.1), "{mis}");
}

#[test]
fn drift_follows_power_law_and_tail_relaxation() {
    let mut s = spec(PulseLaw::Linear {
        dg_up_siemens: 1e-6,
        dg_down_siemens: 1e-6,
    });
    s.drift.nu = 0.06;
    s.drift.t0_seconds = 20.0;
    let p = DeviceParams::nominal(&s);
    let g0 = 50e-6;
    assert_eq!(s.drifted(&p, g0, 10.0), g0); // before t0
    for t in [100.0, 86_400.0, 30.0 * 86_400.0] {
        let want = g0 * (t / 20.0f64).powf(-0.06);
        assert!(close(s.drifted(&p, g0, t), want, 1e-12));
    }
    // tail cell: G(t) = G0 + (G_tail − G0)(1 − e^(−t/τ))
    let mut s2 = s.clone();
    s2.drift.nu = 0.0;
    s2.drift.tail_tau_seconds = 3600.0;
    let mut q = DeviceParams::nominal(&s2);
    q.nu = 0.0;
    q.tail_g_rel = -0.2;
    for t in [60.0, 3600.0, 36_000.0] {
        let want = g0 + (0.8 * g0 - g0) * (1.0 - (-t / 3600.0f64).exp());
        assert!(close(s2.drifted(&q, g0, t), want, 1e-12));
    }
}

#[test]
fn set_laws_closed_forms() {
    let mut s = spec(PulseLaw::Linear {
        dg_up_siemens: 1e-6,
        dg_down_siemens: 1e-6,
    });
    s.g_max_siemens = 300e-6;
    let p = DeviceParams::nominal(&s);
    let mut r = rng();
    s.v_m_v = 0.5;
    assert!(close(
        s.set_from_compliance(&p, 50e-6, 1.0, &mut r),
        100e-6,
        1e-12
    ));
    // S1: ΔV_gate = R_vg·ΔG, R_vg = 1.5e4 V/S
    s.set_law = SetLaw::LinearGate {
        r_vg_v_per_siemens: 1.5e4,
        v_gate_zero_v: 0.5,
    };
    let g = s.set_from_compliance(&p, 0.0, 2.0, &mut r);
    assert!(close(g, 1.5 / 1.5e4, 1e-12), "{g}");
    assert!(close(s.gate_for(g), 2.0, 1e-12));
    // partial RESET
    s.reset_depth = 0.5;
    assert!(close(s.reset(&p, 110e-6), 60e-6, 1e-12));
}

fn models_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("netlists")
}

fn with_device(device: &str) -> String {
    format!(
        "network t {{\n  input 4;\n  dense d {{ units 2; }}\n}}\nhardware {{\n  arrays 1 x 8x8;\n  cell passive;\n  g_min 10uS; g_max 100uS;\n  device {{\n{device}\n  }}\n}}\n"
    )
}

#[test]
fn device_block_parses() {
    let src = with_device(
        "    program_noise 10uS; pulse nonlinear { a_ltp 20; a_ltd 10; p_max 64; }\n    stuck_off 0.11 10uS; read_noise 0.01; v_threshold 1.1V;\n    drift { nu 0.01; t0_seconds 20; }\n    verify { tolerance_a 50nA; max_pulses 500; }",
    );
    let (f, _) = load_str(&src, "t.net", &models_dir()).unwrap();
    let d = f.hardware.device.expect("declared device");
    assert_eq!(d.program_noise_siemens, 10e-6);
    assert_eq!(d.relax_sigma_siemens, 0.0);
    assert_eq!(d.stuck_off_fraction, 0.11);
    assert_eq!(d.verify.tolerance_a, Some(50e-9));
    assert_eq!(d.verify.max_pulses, 500);
    assert!(matches!(d.pulse, PulseLaw::Nonlinear { p_max_pulses, .. } if p_max_pulses == 64.0));
}

#[test]
fn threshold_keys_parse() {
    let src = with_device(
        "    v_pulse 1.6V; v_threshold 1V; v_threshold_reset 1.2V; v_threshold_dtod 0.13;\n    overdrive_exponent 1;",
    );
    let (f, _) = load_str(&src, "t.net", &models_dir()).unwrap();
    let d = f.hardware.device.expect("declared device");
    assert_eq!(
        (d.v_threshold_v, d.v_threshold_reset(), d.v_threshold_dtod),
        (1.0, 1.2, 0.13)
    );
    assert_eq!(d.overdrive_exponent, 1.0);
    // without `v_threshold_reset` both polarities switch at `v_threshold`
    let (f, _) = load_str(
        &with_device("    v_threshold 0.9V;"),
        "t.net",
        &models_dir(),
    )
    .unwrap();
    assert_eq!(f.hardware.device.unwrap().v_threshold_reset(), 0.9);
}

#[test]
fn ramp_keys_parse() {
    let src = with_device(
        "    v_pulse 1.6V; v_pulse_reset 1.7V;\n    verify { tolerance_rel 0.05; ramp_set 0.8V .. 1.5V; ramp_reset 800mV .. 1.8V; ramp_step 50mV; }",
    );
    let (f, _) = load_str(&src, "t.net", &models_dir()).unwrap();
    let d = f.hardware.device.expect("declared device");
    assert_eq!(d.v_pulse_reset(), 1.7);
    assert_eq!(d.v_pulse_fixed(true), 1.6);
    let r = d.verify.ramp.expect("ramp");
    assert_eq!(
        (r.set_start_v, r.set_stop_v, r.reset_start_v, r.reset_stop_v),
        (0.8, 1.5, 0.8, 1.8)
    );
    assert!((r.step_v - 0.05).abs() < 1e-15);
    // the k-th pulse of a run: start + k·step, held at the stop
    assert_eq!(r.amplitude_v(true, 0), 0.8);
    assert!((r.amplitude_v(false, 4) - 1.0).abs() < 1e-12);
    assert_eq!(r.amplitude_v(true, 100), 1.5);
    assert_eq!(r.amplitude_v(false, 100), 1.8);
    // absent: no ramp, the RESET amplitude is `v_pulse`; and the manifest's JSON does not carry
    // the new fields (chips written before them read the same)
    let (f, _) = load_str(&with_device("    v_pulse 1.6V;"), "t.net", &models_dir()).unwrap();
    let d = f.hardware.device.unwrap();
    assert!(d.verify.ramp.is_none() && d.v_pulse_reset_v.is_none());
    assert_eq!(d.v_pulse_reset(), 1.6);
    let json = serde_json::to_string(&d).unwrap();
    assert!(
        !json.contains("ramp") && !json.contains("v_pulse_reset"),
        "{json}"
    );
}

#[test]
fn relax_sigma_parses_in_siemens() {
    let src = with_device("    relax_sigma 0.52uS; verify { tolerance_a 50nA; }");
    let (f, _) = load_str(&src, "t.net", &models_dir()).unwrap();
    let d = f.hardware.device.expect("declared device");
    assert!((d.relax_sigma_siemens - 0.52e-6).abs() < 1e-18);
}

#[test]
fn bad_device_parameters_are_located() {
    for (body, line, col, needle) in [
        ("    read_noise 2;", 10, 16, "must be in [0, 1]"),
        ("    program_noise 10V;", 10, 19, "siemens"),
        ("    pulse soft_bounds { dw_min 0; }", 10, 32, "(0, 1)"),
        ("    wobble 3;", 10, 5, "unknown key `wobble`"),
        ("    set_law linear_gate;", 10, 5, "needs `r_vg`"),
        ("    stuck_on 0.2;", 10, 5, "needs 2 value"),
        ("    relax_sigma 0.5V;", 10, 17, "siemens"),
        ("    relax_sigma -1uS;", 10, 17, "must be in [0"),
        ("    v_threshold_dtod 2;", 10, 22, "must be in [0, 1]"),
        (
            "    v_pulse 1V; v_threshold 0.9V; v_threshold_reset 1V; overdrive_exponent 1;",
            9,
            3,
            "above both switching thresholds",
        ),
        (
            "    v_pulse 1.6V; v_threshold 1V; v_pulse_reset 1V; overdrive_exponent 1;",
            9,
            3,
            "above both switching thresholds",
        ),
        ("    v_pulse_reset 0V;", 10, 19, "must be > 0"),
        (
            "    verify { ramp_set 1.5V .. 0.8V; ramp_reset 0.8V .. 1.8V; ramp_step 0.05V; }",
            10,
            23,
            "the ramp must rise",
        ),
        (
            "    verify { ramp_set 0.8V .. 1.5V; ramp_reset -0.8V .. -1.8V; ramp_step 0.05V; }",
            10,
            48,
            "magnitudes",
        ),
        (
            "    verify { ramp_set 0.8V .. 1.5V; ramp_reset 0.8V .. 1.8V; ramp_step 0V; }",
            10,
            72,
            "must be > 0",
        ),
        (
            "    verify { ramp_set 0.8V .. 1.5V; ramp_reset 0.8 .. 1.8uS; ramp_step 0.05V; }",
            10,
            55,
            "volts",
        ),
        (
            "    verify { ramp_set 0.8V .. 1.5V; ramp_reset 1.8V; ramp_step 0.05V; }",
            10,
            48,
            "needs `start .. stop`",
        ),
        (
            "    verify { ramp_set 0.8V .. 1.5V; }",
            10,
            5,
            "missing ramp_reset, ramp_step",
        ),
    ] {
        let src = with_device(body);
        let e = match load_str(&src, "t.net", &models_dir()) {
            Ok(_) => panic!("accepted: {body}"),
            Err(e) => e,
        };
        let msg = e.to_string();
        assert!(
            msg.starts_with(&format!("t.net:{line}:{col}: ")),
            "{body}: {msg}"
        );
        assert!(msg.contains(needle), "{body}: {msg}");
        assert!(msg.lines().last().unwrap().contains('^'), "{msg}");
    }
}

#[test]
fn half_select_disturb_is_decided_by_the_threshold() {
    use netc::device::write::pulse_train;
    use netc::xbar::{Crossbar, Scheme};
    let mut s = spec(PulseLaw::Linear {
        dg_up_siemens: 1e-6,
        dg_down_siemens: 1e-6,
    });
    s.v_pulse_v = 2.0;
    let g0 = vec![40e-6; 16];
    let params = vec![DeviceParams::nominal(&s); 16];
    let mut r = rng();
    // threshold above V/2: only the selected cell moves, by exactly n steps
    s.v_threshold_v = 1.5;
    let mut xb = Crossbar::passive(4, 4, g0.clone(), 2.0).unwrap();
    let mut pulses = vec![0u32; 16];
    let rep = pulse_train(
        &s,
        &params,
        &mut xb,
        1,
        2,
        5,
        Scheme::Half,
        &mut pulses,
        &mut r,
    )
    .unwrap();
    assert_eq!(rep.disturbed_cells, 0);
    assert!(close(xb.g_siemens[6], 45e-6, 1e-12));
    assert!(
        rep.v_selected_v > 1.9 && rep.v_disturb_max_v < 1.05,
        "{rep:?}"
    );
    // threshold below V/2: the half-selected cells of the row and column move too (V/2 scheme:
    // 3 + 3 of them), the unselected ones (≈ 0 V) do not
    s.v_threshold_v = 0.9;
    let mut xb = Crossbar::passive(4, 4, g0, 2.0).unwrap();
    let mut pulses = vec![0u32; 16];
    let rep = pulse_train(
        &s,
        &params,
        &mut xb,
        1,
        2,
        5,
        Scheme::Half,
        &mut pulses,
        &mut r,
    )
    .unwrap();
    assert_eq!(rep.disturbed_cells, 6, "{rep:?}");
    assert_eq!(xb.g_siemens[0], 40e-6);
}

/// S4 (seed 003 Fig. 2): switching thresholds vary from device to device, and with an
/// overdrive-dependent step (VTEAM-like, α) a fixed-amplitude pulse moves each device by
/// ((|V| − V_th,device) / (V_pulse − V_th,nominal))^α steps — closed forms on a linear law.
#[test]
fn threshold_spread_and_overdrive_scale_the_step() {
    let mut s = spec(PulseLaw::Linear {
        dg_up_siemens: 1e-6,
        dg_down_siemens: 1e-6,
    });
    s.v_pulse_v = 1.6;
    s.v_threshold_v = 1.0;
    s.v_threshold_reset_v = Some(1.2);
    s.overdrive_exponent = 1.0;
    s.validate().unwrap();
    let p = DeviceParams::nominal(&s);
    let mut r = rng();
    let g0 = 50e-6;
    // the nominal device at the nominal amplitude: exactly one step either way
    assert!(close(s.pulses(&p, g0, 1, 1.6, &mut r), g0 + 1e-6, 1e-12));
    assert!(close(s.pulses(&p, g0, -1, -1.6, &mut r), g0 - 1e-6, 1e-12));
    // half the SET overdrive: half a step; RESET uses its own threshold (0.1 / 0.4 V)
    assert!(close(
        s.pulses(&p, g0, 2, 1.3, &mut r),
        g0 + 2.0 * 0.5e-6,
        1e-12
    ));
    assert!(close(
        s.pulses(&p, g0, -1, -1.3, &mut r),
        g0 - 0.25e-6,
        1e-12
    ));
    // below the RESET threshold nothing moves, although the SET threshold is lower
    assert_eq!(s.pulses(&p, g0, -3, -1.1, &mut r), g0);
    // a device whose SET threshold is 30 % high: 1.3 V does not reach it, 1.6 V half a step
    let high = DeviceParams {
        th_set_gain: 1.3,
        ..p
    };
    assert_eq!(s.pulses(&high, g0, 1, 1.3, &mut r), g0);
    assert!(close(
        s.pulses(&high, g0, 1, 1.6, &mut r),
        g0 + 0.5e-6,
        1e-12
    ));
    // α = 2 squares the ratio; α = 0 is today's threshold-only law
    s.overdrive_exponent = 2.0;
    assert!(close(s.pulses(&p, g0, 1, 1.3, &mut r), g0 + 0.25e-6, 1e-12));
    s.overdrive_exponent = 0.0;
    assert!(close(s.pulses(&p, g0, 1, 1.3, &mut r), g0 + 1e-6, 1e-12));
    // an overdrive law needs the pulse above both thresholds
    s.overdrive_exponent = 1.0;
    s.v_pulse_v = 1.2;
    assert!(s.validate().is_err());
}

#[test]
fn threshold_spread_is_drawn_with_its_sigma() {
    let mut s = spec(PulseLaw::Linear {
        dg_up_siemens: 1e-6,
        dg_down_siemens: 1e-6,
    });
    s.v_threshold_v = 1.0;
    s.v_threshold_dtod = 0.13;
    let mut r = rng();
    let n = 20_000;
    let (mut m1, mut m2, mut c) = (0.0, 0.0, 0.0);
    for _ in 0..n {
        let p = s.draw(&mut r);
        m1 += p.th_set_gain;
        m2 += p.th_set_gain * p.th_set_gain;
        c += (p.th_set_gain - 1.0) * (p.th_reset_gain - 1.0);
    }
    let mean = m1 / n as f64;
    let sd = (m2 / n as f64 - mean * mean).sqrt();
    // standard errors: 0.13/√n ≈ 0.0009 for the mean, ≈ 0.0007 for σ
    assert!((mean - 1.0).abs() < 0.004, "{mean}");
    assert!((sd - 0.13).abs() < 0.004, "{sd}");
    // SET and RESET thresholds are drawn independently
    assert!((c / n as f64).abs() < 0.13 * 0.13 * 0.05, "{c}");
    // no spread: every device nominal
    s.v_threshold_dtod = 0.0;
    let p = s.draw(&mut r);
    assert_eq!((p.th_set_gain, p.th_reset_gain), (1.0, 1.0));
}
