//! Devices that remember: one typed device model (how a memristor's conductance moves under SET,
//! RESET and programming pulses, how it varies, fails, is read and drifts), the write operations
//! solved at circuit level ([`write`]) and the chip state that holds every cell ([`chip`]).
//!
//! Every law cites where it comes from; `docs/devices.md` lists the parameters and their sources.
//! Conductances are in siemens, voltages in volts, times in seconds. A device's own parameters
//! (device-to-device variation, faults) are drawn once ([`DeviceSpec::draw`]); cycle-to-cycle noise
//! is drawn per write from the caller's random generator, so the same seed gives the same chip.

pub mod chip;
pub mod program;
pub mod set_bias;
pub mod spec;
pub mod write;

use rand::Rng;
use rand_distr::{Distribution, StandardNormal};
use serde::{Deserialize, Serialize};

use crate::span::Span;

/// Errors of the device layer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DeviceError {
    /// A bad parameter in a `device { … }` block, located.
    #[error("{}", .span.render(.message))]
    Invalid { span: Span, message: String },
    /// A bad parameter with no source text (built in code).
    #[error("invalid device: {0}")]
    Param(String),
    /// A measured curve file that cannot be read or is malformed.
    #[error("{path}:{line}: {message}")]
    Table {
        path: String,
        line: usize,
        message: String,
    },
    #[error("circuit: {0}")]
    Circuit(String),
    #[error("{0}")]
    Io(String),
    /// A chip directory that does not belong to the network it is loaded for, or is malformed.
    #[error("chip: {0}")]
    Chip(String),
}

/// How a compliance-limited SET turns the solved compliance current into a conductance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "law")]
pub enum SetLaw {
    /// `G = I_cc / V_m`: the filament grows until the cell's resistance drops the switching voltage
    /// V_m at the compliance current (R_on ≈ V_m / I_cc; DEVICES.md, "Compliance-controlled SET").
    Empirical,
    /// S1's linear rule (seed 001, Table 1 and Methods "Training method"): ΔV_gate = R_vg·ΔG, i.e.
    /// `G = (V_gate − v_gate_zero) / R_vg`, `v_gate_zero` the gate voltage where the line reaches 0.
    LinearGate {
        #[serde(alias = "r_vg_v_per_s")]
        r_vg_v_per_siemens: f64,
        v_gate_zero_v: f64,
    },
}

/// The conductance change of one programming pulse, as a function of the device state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "law")]
pub enum PulseLaw {
    /// A fixed step per pulse, possibly different up and down (asymmetric), clipped to the window.
    Linear {
        #[serde(alias = "dg_up_s")]
        dg_up_siemens: f64,
        #[serde(alias = "dg_down_s")]
        dg_down_siemens: f64,
    },
    /// aihwkit `SoftBoundsDevice` written on the normalised state x = (G − G_min)/(G_max − G_min):
    /// up Δx = dw_min·(1 + up_down)·(1 − x), down Δx = −dw_min·(1 − up_down)·x — the step
    /// vanishes linearly at each bound. `dw_min` is a fraction of the window.
    SoftBounds { dw_min: f64, up_down: f64 },
    /// NeuroSim `RealDevice` (Chen et al., NeuroSim manual): G_LTP(P) = B·(1 − e^(−P/A)) + G_min,
    /// G_LTD(P) = −B·(1 − e^((P − P_max)/A)) + G_max, B = (G_max − G_min)/(1 − e^(−P_max/A)); a pulse
    /// moves the device one step along its curve from its current position. A in pulses.
    Nonlinear {
        a_ltp_pulses: f64,
        a_ltd_pulses: f64,
        p_max_pulses: f64,
    },
    /// A measured curve: conductance after p potentiating pulses from G_min, p = 0, 1, …
    /// (monotone increasing); depression walks the same curve back.
    Table {
        #[serde(alias = "g_s")]
        g_siemens: Vec<f64>,
    },
}

/// Drift with time since the last write.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct DriftSpec {
    /// Power law G(t) = G_prog·(t/t0)^(−ν) for t > t0 (aihwkit `PCMLikeNoiseModel`, t0 = 20 s).
    pub nu: f64,
    /// Device-to-device spread of ν (absolute σ), drawn once per device.
    pub nu_d2d: f64,
    #[serde(alias = "t0_s")]
    pub t0_seconds: f64,
    /// Tail-cell relaxation (S5, seed 004, Extended Data Fig. 3: a minority of cells relax over
    /// minutes to hours): a fraction of cells moves towards G_prog·(1 + tail_sigma_rel·ξ) with
    /// time constant τ: G(t) = G_prog + (G_tail − G_prog)·(1 − e^(−t/τ)).
    pub tail_fraction: f64,
    #[serde(alias = "tail_tau_s")]
    pub tail_tau_seconds: f64,
    pub tail_sigma_rel: f64,
}

/// Closed-loop write-verify settings (S5 Methods: ±50 nA at 0.2 V, ≤ 500 pulses; S4: a relative
/// tolerance).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerifySpec {
    pub v_read_v: f64,
    /// Absolute window on the read current (A), if given.
    pub tolerance_a: Option<f64>,
    /// Relative window on the read conductance, if given.
    pub tolerance_rel: Option<f64>,
    pub max_pulses: usize,
    /// The amplitude ramp of the loop's pulses (S4); `None`: every pulse at the fixed amplitude
    /// (`v_pulse` for SET, [`DeviceSpec::v_pulse_reset`] for RESET).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ramp: Option<VerifyRamp>,
}

/// A write-verify whose pulse amplitude ramps (S4, seed 003, Fig. 3 caption: "500-µs-long voltage
/// pulses with amplitudes in a [0.8 V, 1.5 V]/[−1.8 V, −0.8 V] range to increase/decrease device
/// conductance", with the automated tuning algorithm of its ref. 48, Alibart et al. 2012). The
/// k-th consecutive pulse of one polarity has amplitude `start + k·step`, held at `stop` once it
/// gets there; a change of polarity (the read has crossed the target) restarts the other
/// polarity's ramp at its `start`. Amplitudes are magnitudes (a RESET pulse is negative across
/// the cell).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VerifyRamp {
    pub set_start_v: f64,
    pub set_stop_v: f64,
    pub reset_start_v: f64,
    pub reset_stop_v: f64,
    /// Amplitude increment between consecutive pulses of one polarity (both polarities).
    pub step_v: f64,
}

impl VerifyRamp {
    /// Amplitude (magnitude, V) of the `k`-th consecutive pulse (k = 0, 1, …) of one polarity.
    pub fn amplitude_v(&self, set: bool, k: usize) -> f64 {
        let (start, stop) = if set {
            (self.set_start_v, self.set_stop_v)
        } else {
            (self.reset_start_v, self.reset_stop_v)
        };
        (start + k as f64 * self.step_v).min(stop)
    }

    /// Check the ranges (0 < start ≤ stop, step > 0, all finite).
    // `!(a < b)` on purpose: a NaN must fail
    #[allow(clippy::neg_cmp_op_on_partial_ord)]
    pub fn validate(&self) -> Result<(), DeviceError> {
        for (name, lo, hi) in [
            ("ramp_set", self.set_start_v, self.set_stop_v),
            ("ramp_reset", self.reset_start_v, self.reset_stop_v),
        ] {
            if !(lo.is_finite() && hi.is_finite() && lo > 0.0 && lo <= hi) {
                return Err(DeviceError::Param(format!(
                    "`{name}` needs 0 < start ≤ stop, got {lo} .. {hi} V"
                )));
            }
        }
        if !(self.step_v.is_finite() && self.step_v > 0.0) {
            return Err(DeviceError::Param(format!(
                "`ramp_step` must be > 0, got {} V",
                self.step_v
            )));
        }
        Ok(())
    }
}

/// A device fault, drawn once per device.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub enum Fault {
    None,
    /// Ignores every write; always at this conductance.
    Stuck {
        #[serde(alias = "g_s")]
        g_siemens: f64,
    },
    /// Its writes land at a random state of the window (S5's deliberately mis-written weights).
    Miswritten,
}

impl Fault {
    /// Code stored in the chip's `fault.npy`: 0 none, 1 stuck, 2 mis-written.
    pub fn code(self) -> u8 {
        match self {
            Fault::None => 0,
            Fault::Stuck { .. } => 1,
            Fault::Miswritten => 2,
        }
    }
}

/// The device model of an array: every law and its parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceSpec {
    /// Conductance window the device is operated in.
    #[serde(alias = "g_min_s")]
    pub g_min_siemens: f64,
    #[serde(alias = "g_max_s")]
    pub g_max_siemens: f64,
    pub set_law: SetLaw,
    /// Switching voltage held across the memristor while the filament forms during SET.
    pub v_m_v: f64,
    /// SET voltage on the top-electrode lines (S1: 2.5 V).
    pub v_set_v: f64,
    /// Gate voltages a SET may use (S1: 0.5–2.5 V).
    pub v_gate_min_v: f64,
    pub v_gate_max_v: f64,
    /// RESET: line voltage and gate voltage (S1: 1.7 V, 5 V); `reset_depth` 1 = full RESET to G_min,
    /// < 1 = partial: G ← G − depth·(G − G_min).
    pub v_reset_v: f64,
    pub v_gate_reset_v: f64,
    pub reset_depth: f64,
    /// Absolute σ of the conductance after a one-shot SET (S1: 10 µS).
    #[serde(alias = "program_noise_s")]
    pub program_noise_siemens: f64,
    pub pulse: PulseLaw,
    #[serde(alias = "pulse_width_s")]
    pub pulse_width_seconds: f64,
    /// Amplitude of a programming pulse; a cell moves only when |V across it| reaches its
    /// switching threshold: `v_threshold` for SET (potentiating) pulses, `v_threshold_reset` (when
    /// given, else `v_threshold`) for RESET (depressing) ones.
    pub v_pulse_v: f64,
    /// Amplitude (magnitude) of a RESET pulse of the rules that do not ramp (Manhattan pulses,
    /// open-loop pulses, a write-verify without a ramp); `None`: `v_pulse`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub v_pulse_reset_v: Option<f64>,
    pub v_threshold_v: f64,
    #[serde(default)]
    pub v_threshold_reset_v: Option<f64>,
    /// Device-to-device relative σ of both switching thresholds, drawn once per device (S4, seed
    /// 003 Fig. 2: SET 1.0 ± 0.13 V, RESET −1.2 ± 0.15 V within one crossbar, i.e. ≈ 13 % of the mean).
    #[serde(default)]
    pub v_threshold_dtod: f64,
    /// How a pulse's step depends on its overdrive (VTEAM-like threshold switching): the step is
    /// multiplied by ((|V| − V_th,device) / (V_pulse − V_th,nominal))^α. α = 0 (the default): the
    /// step does not depend on the amplitude once the threshold is reached.
    #[serde(default)]
    pub overdrive_exponent: f64,
    /// Cycle-to-cycle relative σ of each pulse's step (aihwkit `dw_min_std`).
    pub c2c_sigma: f64,
    /// Device-to-device relative σ of the step size (aihwkit `dw_min_dtod`) and of G_max
    /// (aihwkit `w_max_dtod`).
    pub dw_min_dtod: f64,
    pub w_max_dtod: f64,
    /// Stuck-ON and stuck-OFF devices: fraction and conductance.
    pub stuck_on_fraction: f64,
    #[serde(alias = "stuck_on_g_s")]
    pub stuck_on_g_siemens: f64,
    pub stuck_off_fraction: f64,
    #[serde(alias = "stuck_off_g_s")]
    pub stuck_off_g_siemens: f64,
    pub miswrite_fraction: f64,
    /// Relative σ of each read.
    pub read_noise_rel: f64,
    /// Absolute σ (S) of the relaxation of a freshly written state: a write-verify that ended in
    /// its window leaves the device there, and the state then moves by N(0, σ) before anything
    /// else reads it (S5, seed 004, Methods: the measured programming error of the transfer is
    /// δ ~ N(0, 108 nA) at 0.2 V although the loop stops within ±50 nA). 0 = none.
    #[serde(default, alias = "relax_sigma_s")]
    pub relax_sigma_siemens: f64,
    pub drift: DriftSpec,
    pub verify: VerifySpec,
}

impl DeviceSpec {
    /// A noise-free device with a linear pulse step of 1/100 of the window and the empirical SET law
    /// (V_m = 0.4 V): the default when a `.net` file declares no device.
    pub fn ideal(g_min_siemens: f64, g_max_siemens: f64) -> DeviceSpec {
        let dg = (g_max_siemens - g_min_siemens) / 100.0;
        DeviceSpec {
            g_min_siemens,
            g_max_siemens,
            set_law: SetLaw::Empirical,
            v_m_v: 0.4,
            v_set_v: 2.5,
            v_gate_min_v: 0.5,
            v_gate_max_v: 2.5,
            v_reset_v: 1.7,
            v_gate_reset_v: 5.0,
            reset_depth: 1.0,
            program_noise_siemens: 0.0,
            pulse: PulseLaw::Linear {
                dg_up_siemens: dg,
                dg_down_siemens: dg,
            },
            pulse_width_seconds: 50e-9,
            v_pulse_v: 2.0,
            v_pulse_reset_v: None,
            v_threshold_v: 0.0,
            v_threshold_reset_v: None,
            v_threshold_dtod: 0.0,
            overdrive_exponent: 0.0,
            c2c_sigma: 0.0,
            dw_min_dtod: 0.0,
            w_max_dtod: 0.0,
            stuck_on_fraction: 0.0,
            stuck_on_g_siemens: g_max_siemens,
            stuck_off_fraction: 0.0,
            stuck_off_g_siemens: g_min_siemens,
            miswrite_fraction: 0.0,
            read_noise_rel: 0.0,
            relax_sigma_siemens: 0.0,
            drift: DriftSpec {
                t0_seconds: 20.0,
                ..DriftSpec::default()
            },
            verify: VerifySpec {
                v_read_v: 0.2,
                tolerance_a: None,
                tolerance_rel: Some(0.05),
                max_pulses: 500,
                ramp: None,
            },
        }
    }

    /// Check every parameter (built-in code paths; the `.net` parser checks with spans first).
    // `!(a < b)` on purpose: a NaN parameter must fail every check
    #[allow(clippy::neg_cmp_op_on_partial_ord)]
    pub fn validate(&self) -> Result<(), DeviceError> {
        let bad = |m: String| Err(DeviceError::Param(m));
        let fin = |x: f64| x.is_finite();
        if !(fin(self.g_min_siemens) && fin(self.g_max_siemens) && self.g_min_siemens >= 0.0)
            || self.g_max_siemens <= self.g_min_siemens
        {
            return bad(format!(
                "window must satisfy 0 ≤ g_min < g_max, got {} .. {}",
                self.g_min_siemens, self.g_max_siemens
            ));
        }
        for (name, x) in [
            ("program_noise", self.program_noise_siemens),
            ("c2c", self.c2c_sigma),
            ("dw_min_dtod", self.dw_min_dtod),
            ("w_max_dtod", self.w_max_dtod),
            ("read_noise", self.read_noise_rel),
            ("relax_sigma", self.relax_sigma_siemens),
            ("v_threshold", self.v_threshold_v),
            ("v_threshold_reset", self.v_threshold_reset()),
            ("v_threshold_dtod", self.v_threshold_dtod),
            ("overdrive_exponent", self.overdrive_exponent),
            ("pulse_width", self.pulse_width_seconds),
            ("v_pulse", self.v_pulse_v),
            ("v_pulse_reset", self.v_pulse_reset()),
            ("drift nu_d2d", self.drift.nu_d2d),
            ("tail sigma", self.drift.tail_sigma_rel),
        ] {
            if !(fin(x) && x >= 0.0) {
                return bad(format!("{name} must be finite and ≥ 0, got {x}"));
            }
        }
        for (name, x) in [
            ("stuck_on fraction", self.stuck_on_fraction),
            ("stuck_off fraction", self.stuck_off_fraction),
            ("miswrite fraction", self.miswrite_fraction),
            ("tail fraction", self.drift.tail_fraction),
        ] {
            if !(0.0..=1.0).contains(&x) {
                return bad(format!("{name} must be in [0, 1], got {x}"));
            }
        }
        if self.stuck_on_fraction + self.stuck_off_fraction + self.miswrite_fraction > 1.0 {
            return bad("fault fractions add up to more than 1".into());
        }
        if !(self.reset_depth > 0.0 && self.reset_depth <= 1.0) {
            return bad(format!(
                "reset depth must be in (0, 1], got {}",
                self.reset_depth
            ));
        }
        if !(fin(self.v_m_v) && self.v_m_v > 0.0) {
            return bad(format!("v_m must be > 0, got {}", self.v_m_v));
        }
        if !(self.v_gate_min_v < self.v_gate_max_v) {
            return bad("gate range must be lo < hi".into());
        }
        if let SetLaw::LinearGate {
            r_vg_v_per_siemens, ..
        } = self.set_law
        {
            if !(fin(r_vg_v_per_siemens) && r_vg_v_per_siemens > 0.0) {
                return bad(format!("r_vg must be > 0, got {r_vg_v_per_siemens}"));
            }
        }
        if !(fin(self.drift.nu) && self.drift.nu >= 0.0 && self.drift.t0_seconds > 0.0) {
            return bad("drift needs ν ≥ 0 and t0 > 0".into());
        }
        if self.drift.tail_fraction > 0.0 && !(self.drift.tail_tau_seconds > 0.0) {
            return bad("tail relaxation needs τ > 0".into());
        }
        if self.verify.max_pulses == 0 {
            return bad("write-verify needs at least one pulse".into());
        }
        if self.overdrive_exponent > 0.0
            && !(self.v_pulse_v > self.v_threshold_v
                && self.v_pulse_reset() > self.v_threshold_reset())
        {
            return bad(format!(
                "an overdrive-dependent step needs the fixed pulse amplitudes above both switching \
                 thresholds (v_pulse over the SET one, v_pulse_reset or else v_pulse over the RESET \
                 one), got v_pulse {} V, RESET amplitude {} V, thresholds {} V (SET) and {} V (RESET)",
                self.v_pulse_v,
                self.v_pulse_reset(),
                self.v_threshold_v,
                self.v_threshold_reset()
            ));
        }
        if let Some(ramp) = &self.verify.ramp {
            ramp.validate()?;
        }
        match &self.pulse {
            PulseLaw::Linear {
                dg_up_siemens,
                dg_down_siemens,
            } => {
                if !(*dg_up_siemens > 0.0
                    && *dg_down_siemens > 0.0
                    && fin(*dg_up_siemens)
                    && fin(*dg_down_siemens))
                {
                    return bad("linear pulse steps must be > 0".into());
                }
            }
            PulseLaw::SoftBounds { dw_min, up_down } => {
                if !(*dw_min > 0.0 && *dw_min < 1.0 && up_down.abs() < 1.0) {
                    return bad(format!(
                        "soft bounds need 0 < dw_min < 1 and |up_down| < 1, got {dw_min}, {up_down}"
                    ));
                }
            }
            PulseLaw::Nonlinear {
                a_ltp_pulses,
                a_ltd_pulses,
                p_max_pulses,
            } => {
                if !(*a_ltp_pulses > 0.0 && *a_ltd_pulses > 0.0 && *p_max_pulses >= 1.0) {
                    return bad("nonlinear pulses need A > 0 and P_max ≥ 1".into());
                }
            }
            PulseLaw::Table { g_siemens } => {
                if g_siemens.len() < 2 || g_siemens.windows(2).any(|w| !(w[1] > w[0])) {
                    return bad("a measured curve needs ≥ 2 strictly increasing points".into());
                }
            }
        }
        Ok(())
    }

    /// Draw one device's own parameters (device-to-device variation and faults), once.
    pub fn draw<R: Rng>(&self, rng: &mut R) -> DeviceParams {
        let n = |rng: &mut R| -> f64 { StandardNormal.sample(rng) };
        // aihwkit PulsedDevice: Δw_min per device = dw_min·(1 + dw_min_dtod·ξ), kept positive;
        // the same draw scales both directions, and G_max per device = G_max·(1 + w_max_dtod·ξ).
        let gain = (1.0 + self.dw_min_dtod * n(rng)).max(0.05);
        let g_max = (self.g_max_siemens * (1.0 + self.w_max_dtod * n(rng)))
            .max(self.g_min_siemens + 0.05 * (self.g_max_siemens - self.g_min_siemens));
        let nu = (self.drift.nu + self.drift.nu_d2d * n(rng)).max(0.0);
        let u: f64 = rng.gen();
        let fault = if u < self.stuck_on_fraction {
            Fault::Stuck {
                g_siemens: self.stuck_on_g_siemens,
            }
        } else if u < self.stuck_on_fraction + self.stuck_off_fraction {
            Fault::Stuck {
                g_siemens: self.stuck_off_g_siemens,
            }
        } else if u < self.stuck_on_fraction + self.stuck_off_fraction + self.miswrite_fraction {
            Fault::Miswritten
        } else {
            Fault::None
        };
        let tail = rng.gen::<f64>() < self.drift.tail_fraction;
        let tail_g_rel = if tail {
            self.drift.tail_sigma_rel * n(rng)
        } else {
            0.0
        };
        // drawn last and only when there is a spread, so that devices without one draw exactly
        // the stream they drew before thresholds could vary
        let (th_set_gain, th_reset_gain) = if self.v_threshold_dtod > 0.0 {
            let set = 1.0 + self.v_threshold_dtod * n(rng);
            let reset = 1.0 + self.v_threshold_dtod * n(rng);
            (set.max(0.0), reset.max(0.0))
        } else {
            (1.0, 1.0)
        };
        DeviceParams {
            step_gain: gain,
            g_max_siemens: g_max,
            nu,
            fault,
            tail_g_rel,
            th_set_gain,
            th_reset_gain,
        }
    }

    /// Device `p`'s switching threshold (magnitude, V) for a SET (`set`) or RESET pulse.
    pub fn device_threshold(&self, p: &DeviceParams, set: bool) -> f64 {
        let gain = if set { p.th_set_gain } else { p.th_reset_gain };
        self.nominal_threshold(set) * gain
    }

    /// The nominal switching threshold (magnitude, V) of a SET (`set`) or RESET pulse.
    fn nominal_threshold(&self, set: bool) -> f64 {
        if set {
            self.v_threshold_v
        } else {
            self.v_threshold_reset()
        }
    }

    /// Whether a pulse of `v_cell_v` across device `p` (positive = SET) reaches its threshold
    /// for that polarity: the one decision of who switches (the law, and the pulse counter of
    /// [`write::pulse_train`]).
    pub fn reaches_threshold(&self, p: &DeviceParams, v_cell_v: f64) -> bool {
        v_cell_v.abs() >= self.device_threshold(p, v_cell_v >= 0.0)
    }

    /// Amplitude (magnitude) of a RESET pulse of the rules that do not ramp: `v_pulse_reset`,
    /// else `v_pulse`.
    pub fn v_pulse_reset(&self) -> f64 {
        self.v_pulse_reset_v.unwrap_or(self.v_pulse_v)
    }

    /// Amplitude (magnitude) of a fixed-amplitude pulse of polarity `set`.
    pub fn v_pulse_fixed(&self, set: bool) -> f64 {
        if set {
            self.v_pulse_v
        } else {
            self.v_pulse_reset()
        }
    }

    /// The voltage across the cell of a fixed-amplitude pulse: `+v_pulse` for SET (`set`),
    /// `−v_pulse_reset` for RESET.
    pub fn v_pulse_signed(&self, set: bool) -> f64 {
        if set {
            self.v_pulse_fixed(true)
        } else {
            -self.v_pulse_fixed(false)
        }
    }

    /// The nominal RESET switching threshold (magnitude).
    pub fn v_threshold_reset(&self) -> f64 {
        self.v_threshold_reset_v.unwrap_or(self.v_threshold_v)
    }

    /// The step multiplier of one pulse of amplitude `v_cell_v` on device `p`: 0 below the
    /// device's threshold for that polarity (positive = SET), else the overdrive factor
    /// ((|V| − V_th,device) / (V_pulse − V_th,nominal))^α (1 when α = 0), V_pulse the fixed
    /// amplitude of that polarity (`v_pulse`, or `v_pulse_reset` for RESET): the pulse law's step
    /// is the step at that amplitude on a nominal device.
    pub fn pulse_drive(&self, p: &DeviceParams, v_cell_v: f64) -> f64 {
        if !self.reaches_threshold(p, v_cell_v) {
            return 0.0;
        }
        if self.overdrive_exponent == 0.0 {
            return 1.0;
        }
        let set = v_cell_v >= 0.0;
        let th_nominal = self.nominal_threshold(set);
        let (v, th) = (v_cell_v.abs(), self.device_threshold(p, set));
        // validate() guarantees v_pulse (v_pulse_reset) > th_nominal when α > 0
        ((v - th) / (self.v_pulse_fixed(set) - th_nominal)).powf(self.overdrive_exponent)
    }

    /// Clamp to this device's window.
    fn clip(&self, p: &DeviceParams, g: f64) -> f64 {
        g.clamp(self.g_min_siemens, p.g_max_siemens)
    }

    /// The conductance after `n` identical pulses (n > 0 potentiating, n < 0 depressing) of
    /// amplitude `v_cell_v` across the cell, from `g`. Below the device's switching threshold
    /// nothing moves; above it each step is scaled by the overdrive factor
    /// ([`DeviceSpec::pulse_drive`]); a stuck device never moves. Cycle-to-cycle noise multiplies
    /// each step by (1 + c2c·ξ).
    pub fn pulses<R: Rng>(
        &self,
        p: &DeviceParams,
        g: f64,
        n: i64,
        v_cell_v: f64,
        rng: &mut R,
    ) -> f64 {
        if let Fault::Stuck { g_siemens } = p.fault {
            return g_siemens;
        }
        // the polarity the cell sees is the pulse's: a SET pulse is positive across the cell
        let drive = self.pulse_drive(
            p,
            if n > 0 {
                v_cell_v.abs()
            } else {
                -v_cell_v.abs()
            },
        );
        if n == 0 || drive == 0.0 {
            return g;
        }
        let mut g = g;
        for _ in 0..n.unsigned_abs() {
            let noise = if self.c2c_sigma > 0.0 {
                let xi: f64 = StandardNormal.sample(rng);
                1.0 + self.c2c_sigma * xi
            } else {
                1.0
            };
            g = self.one_pulse(p, g, n > 0, drive * noise);
        }
        g
    }

    /// One pulse with a given step multiplier (1 = noise-free).
    pub fn one_pulse(&self, p: &DeviceParams, g: f64, up: bool, noise: f64) -> f64 {
        let (lo, hi) = (self.g_min_siemens, p.g_max_siemens);
        let span = hi - lo;
        let step = match &self.pulse {
            PulseLaw::Linear {
                dg_up_siemens,
                dg_down_siemens,
            } => {
                if up {
                    *dg_up_siemens
                } else {
                    -*dg_down_siemens
                }
            }
            PulseLaw::SoftBounds { dw_min, up_down } => {
                let x = ((g - lo) / span).clamp(0.0, 1.0);
                if up {
                    dw_min * (1.0 + up_down) * (1.0 - x) * span
                } else {
                    -dw_min * (1.0 - up_down) * x * span
                }
            }
            PulseLaw::Nonlinear {
                a_ltp_pulses,
                a_ltd_pulses,
                p_max_pulses,
            } => {
                let target = nonlinear_step(
                    g,
                    lo,
                    hi,
                    if up { *a_ltp_pulses } else { *a_ltd_pulses },
                    *p_max_pulses,
                    up,
                );
                target - g
            }
            PulseLaw::Table { g_siemens } => {
                // the measured curve scaled onto this device's window: locate the device on it,
                // move one pulse along it
                let (t0, t1) = (g_siemens[0], g_siemens[g_siemens.len() - 1]);
                let x = t0 + ((g - lo) / span).clamp(0.0, 1.0) * (t1 - t0);
                let p0 = table_inverse(g_siemens, x);
                let k = if up { p0 + 1.0 } else { p0 - 1.0 };
                lo + (table_at(g_siemens, k) - t0) / (t1 - t0) * span - g
            }
        };
        self.clip(p, g + step * p.step_gain * noise)
    }

    /// The conductance a compliance-limited SET leaves, from the solved compliance current and the
    /// gate voltage used, plus programming noise (absolute σ). Stuck devices stay stuck;
    /// mis-written devices land anywhere in the window.
    pub fn set_from_compliance<R: Rng>(
        &self,
        p: &DeviceParams,
        i_cc_a: f64,
        v_gate_v: f64,
        rng: &mut R,
    ) -> f64 {
        self.land(p, self.set_law_g(i_cc_a, v_gate_v), rng)
    }

    /// The conductance the SET law gives for a compliance current and gate voltage, before
    /// programming noise, faults and the window.
    pub fn set_law_g(&self, i_cc_a: f64, v_gate_v: f64) -> f64 {
        match self.set_law {
            SetLaw::Empirical => i_cc_a.max(0.0) / self.v_m_v,
            SetLaw::LinearGate {
                r_vg_v_per_siemens,
                v_gate_zero_v,
            } => (v_gate_v - v_gate_zero_v) / r_vg_v_per_siemens,
        }
    }

    /// Where a noise-free write aimed at `g_target` lands on device `p` (window and faults; a
    /// mis-written device's landing is random, so `None`).
    pub fn aimed(&self, p: &DeviceParams, g: f64) -> Option<f64> {
        match p.fault {
            Fault::Stuck { g_siemens } => Some(g_siemens),
            Fault::Miswritten => None,
            Fault::None => Some(self.clip(p, g)),
        }
    }

    /// Where a write aimed at `g_target` lands: programming noise, faults, window.
    pub fn land<R: Rng>(&self, p: &DeviceParams, g_target: f64, rng: &mut R) -> f64 {
        match p.fault {
            Fault::Stuck { g_siemens } => g_siemens,
            Fault::Miswritten => rng.gen_range(self.g_min_siemens..=p.g_max_siemens),
            Fault::None => {
                let xi: f64 = if self.program_noise_siemens > 0.0 {
                    StandardNormal.sample(rng)
                } else {
                    0.0
                };
                self.clip(p, g_target + self.program_noise_siemens * xi)
            }
        }
    }

    /// The state a write left at `g` after its relaxation: `g + relax_sigma·ξ` clipped to the
    /// device's window (a stuck device stays at its stuck value; no relaxation declared, no draw).
    pub fn relaxed<R: Rng>(&self, p: &DeviceParams, g: f64, rng: &mut R) -> f64 {
        if let Fault::Stuck { g_siemens } = p.fault {
            return g_siemens;
        }
        if self.relax_sigma_siemens == 0.0 {
            return g;
        }
        let xi: f64 = StandardNormal.sample(rng);
        self.clip(p, g + self.relax_sigma_siemens * xi)
    }

    /// RESET: full (depth 1) to G_min or partial.
    pub fn reset(&self, p: &DeviceParams, g: f64) -> f64 {
        if let Fault::Stuck { g_siemens } = p.fault {
            return g_siemens;
        }
        g - self.reset_depth * (g - self.g_min_siemens)
    }

    /// The gate voltage that S1's linear rule gives for a target conductance, bounded to the gate
    /// range (seed 001, Methods: new gate = last gate + R_vg·ΔG, bounded to [V_g,min, V_g,max]).
    pub fn gate_for(&self, g_target_siemens: f64) -> f64 {
        let v = match self.set_law {
            SetLaw::LinearGate {
                r_vg_v_per_siemens,
                v_gate_zero_v,
            } => v_gate_zero_v + r_vg_v_per_siemens * g_target_siemens,
            // empirical law: inverted numerically by the write operation (see write::gate_for_target)
            SetLaw::Empirical => f64::NAN,
        };
        v.clamp(self.v_gate_min_v, self.v_gate_max_v)
    }

    /// Conductance at age `t_seconds` since the last write (drift; aihwkit `PCMLikeNoiseModel`
    /// power law and S5's tail-cell relaxation).
    pub fn drifted(&self, p: &DeviceParams, g_prog: f64, t_seconds: f64) -> f64 {
        if let Fault::Stuck { g_siemens } = p.fault {
            return g_siemens;
        }
        let d = &self.drift;
        let mut g = g_prog;
        if p.nu > 0.0 && t_seconds > d.t0_seconds {
            g *= (t_seconds / d.t0_seconds).powf(-p.nu);
        }
        if p.tail_g_rel != 0.0 && t_seconds > 0.0 {
            let g_tail = g_prog * (1.0 + p.tail_g_rel);
            g += (g_tail - g_prog) * (1.0 - (-t_seconds / d.tail_tau_seconds).exp());
        }
        g.max(0.0)
    }

    /// One noisy read of conductance `g` (relative Gaussian).
    pub fn read<R: Rng>(&self, g: f64, rng: &mut R) -> f64 {
        if self.read_noise_rel == 0.0 {
            return g;
        }
        let xi: f64 = StandardNormal.sample(rng);
        (g * (1.0 + self.read_noise_rel * xi)).max(0.0)
    }

    /// Is the read conductance `g_read` inside the verify window around `g_target`?
    pub fn within(&self, g_read: f64, g_target: f64) -> bool {
        let err = (g_read - g_target).abs();
        let abs_ok = self
            .verify
            .tolerance_a
            .map(|t| err * self.verify.v_read_v <= t);
        let rel_ok = self.verify.tolerance_rel.map(|t| err <= t * g_target.abs());
        match (abs_ok, rel_ok) {
            (Some(a), Some(b)) => a || b,
            (Some(a), None) => a,
            (None, Some(b)) => b,
            (None, None) => err == 0.0,
        }
    }
}

/// One device's own parameters, drawn once.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DeviceParams {
    /// Multiplier of the pulse step (device-to-device).
    pub step_gain: f64,
    /// This device's upper bound.
    #[serde(alias = "g_max_s")]
    pub g_max_siemens: f64,
    /// Drift exponent.
    pub nu: f64,
    pub fault: Fault,
    /// Tail cell: relative offset its conductance relaxes to (0 = not a tail cell).
    pub tail_g_rel: f64,
    /// Multipliers of the nominal SET and RESET switching thresholds (device-to-device; 1 =
    /// nominal): this device switches at `v_threshold·th_set_gain` and
    /// `v_threshold_reset·th_reset_gain`.
    #[serde(default = "one")]
    pub th_set_gain: f64,
    #[serde(default = "one")]
    pub th_reset_gain: f64,
}

fn one() -> f64 {
    1.0
}

impl DeviceParams {
    /// A nominal device of `spec` (no variation, no fault).
    pub fn nominal(spec: &DeviceSpec) -> DeviceParams {
        DeviceParams {
            step_gain: 1.0,
            g_max_siemens: spec.g_max_siemens,
            nu: spec.drift.nu,
            fault: Fault::None,
            tail_g_rel: 0.0,
            th_set_gain: 1.0,
            th_reset_gain: 1.0,
        }
    }
}

/// NeuroSim's curve position and one step along it (see [`PulseLaw::Nonlinear`]).
pub fn nonlinear_step(g: f64, lo: f64, hi: f64, a: f64, p_max: f64, up: bool) -> f64 {
    let b = (hi - lo) / (1.0 - (-p_max / a).exp());
    if up {
        let frac = ((g - lo) / b).clamp(0.0, 1.0 - 1e-15);
        let p0 = -a * (1.0 - frac).ln();
        b * (1.0 - (-(p0 + 1.0) / a).exp()) + lo
    } else {
        let frac = ((hi - g) / b).clamp(0.0, 1.0 - 1e-15);
        let p0 = p_max + a * (1.0 - frac).ln();
        -b * (1.0 - ((p0 - 1.0 - p_max) / a).exp()) + hi
    }
}

/// Linear interpolation of a table at fractional index `k` (clamped).
fn table_at(g: &[f64], k: f64) -> f64 {
    let last = (g.len() - 1) as f64;
    let k = k.clamp(0.0, last);
    let i = (k.floor() as usize).min(g.len() - 2);
    let t = k - i as f64;
    g[i] + t * (g[i + 1] - g[i])
}

/// Fractional index where a strictly increasing table reaches `x` (clamped to the ends).
fn table_inverse(g: &[f64], x: f64) -> f64 {
    if x <= g[0] {
        return 0.0;
    }
    let n = g.len();
    if x >= g[n - 1] {
        return (n - 1) as f64;
    }
    let i = g.partition_point(|v| *v <= x) - 1;
    i as f64 + (x - g[i]) / (g[i + 1] - g[i])
}

/// Read a measured curve `pulse,g_siemens` (header line optional, `#` comments) from a CSV file.
pub fn read_curve_csv(path: &std::path::Path) -> Result<Vec<f64>, DeviceError> {
    let text = std::fs::read_to_string(path).map_err(|e| DeviceError::Table {
        path: path.display().to_string(),
        line: 0,
        message: e.to_string(),
    })?;
    let mut out = Vec::new();
    for (k, line) in text.lines().enumerate() {
        let l = line.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let cells: Vec<&str> = l.split(',').map(str::trim).collect();
        let err = |m: String| DeviceError::Table {
            path: path.display().to_string(),
            line: k + 1,
            message: m,
        };
        if cells.len() != 2 {
            return Err(err(format!("expected `pulse,g_siemens`, found {l:?}")));
        }
        let (Ok(p), Ok(g)) = (cells[0].parse::<f64>(), cells[1].parse::<f64>()) else {
            if out.is_empty() && k == 0 {
                continue; // header
            }
            return Err(err(format!("not two numbers: {l:?}")));
        };
        if p != out.len() as f64 {
            return Err(err(format!(
                "pulse numbers must run 0, 1, 2, …; expected {}, found {p}",
                out.len()
            )));
        }
        if !(g.is_finite() && g >= 0.0) {
            return Err(err(format!("conductance must be finite and ≥ 0, got {g}")));
        }
        if let Some(&last) = out.last() {
            if g <= last {
                return Err(err(
                    "conductance must increase strictly with pulse number".into()
                ));
            }
        }
        out.push(g);
    }
    if out.len() < 2 {
        return Err(DeviceError::Table {
            path: path.display().to_string(),
            line: 0,
            message: "a measured curve needs at least two points".into(),
        });
    }
    Ok(out)
}
