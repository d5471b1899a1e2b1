//! The structured crossbar array model (built in code, not parsed from text).
//!
//! Conventions (docs/crossbar.md; the same circuit badcrossbar solves): R rows (word
//! lines, inputs) and C columns (bit lines, outputs); row i is driven at its left end, column j leaves
//! at its bottom end (row R−1) into a sense amplifier. Cell (i, j) joins word-line node (i, j) to
//! bit-line node (i, j). A segment of `r_word_ohm` joins consecutive word-line nodes, plus one
//! between the driver and cell (i, 0); a segment of `r_bit_ohm` joins consecutive bit-line nodes, plus
//! one between cell (R−1, j) and the sense amplifier. Far ends are open. Driver and sense resistances
//! come on top (in series with the end segments) and default to 0.

use crate::circuit::mos1::Mos1;
use crate::netlist::MosModel;

use super::XbarError;

/// Largest conductance accepted anywhere in the array (S): a 1 pΩ contact; larger values are
/// not physical and overflow when summed into the nodal matrix.
pub const MAX_G_SIEMENS: f64 = 1e12;

/// What sits at each cross point.
#[derive(Debug, Clone, PartialEq)]
pub enum CellKind {
    /// A linear memristor: `I = g·V`.
    Linear,
    /// A nonlinear memristor `I(v) = g·sinh(k·v)/k` (small-signal conductance `g` at 0 V).
    Sinh { k_per_v: f64 },
    /// 1T1R: the memristor (conductance `g`) from the word line to an internal node, then a level-1
    /// NMOS access transistor from that node (drain) to the bit line (source), bulk at ground, gate on
    /// a gate line parallel to the rows (`v_gate_v[i]` for row i).
    OneT1R { mos: Mos1, v_gate_v: Vec<f64> },
}

impl CellKind {
    pub fn is_linear(&self) -> bool {
        matches!(self, CellKind::Linear)
    }
    pub fn name(&self) -> &'static str {
        match self {
            CellKind::Linear => "passive",
            CellKind::Sinh { .. } => "sinh",
            CellKind::OneT1R { .. } => "1t1r",
        }
    }
}

/// What terminates each column.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SenseKind {
    /// An ideal virtual ground (a 0 V source); the output is its current, positive into ground.
    VirtualGround,
    /// A transimpedance amplifier: inverting input is the sense node, non-inverting at ground,
    /// output `vsat·tanh(gain·(0 − V(sense))/vsat)`, feedback resistor `r_f_ohm` from output to the
    /// sense node. The output is the amplifier voltage.
    Tia {
        gain: f64,
        r_f_ohm: f64,
        vsat_v: f64,
    },
}

impl SenseKind {
    /// Conductance (S) from the sense node to ground of the amplifier linearised at 0 V:
    /// `(1 + A)/R_f` for a TIA, 0 for a virtual ground (the node is a source there).
    pub fn small_signal_g_siemens(&self) -> f64 {
        match *self {
            SenseKind::Tia { gain, r_f_ohm, .. } => (1.0 + gain) / r_f_ohm,
            SenseKind::VirtualGround => 0.0,
        }
    }
}

/// An R×C crossbar array with its parasitics.
#[derive(Debug, Clone, PartialEq)]
pub struct Crossbar {
    pub rows: usize,
    pub cols: usize,
    /// Cell conductances, row-major (`g_siemens[i * cols + j]`).
    pub g_siemens: Vec<f64>,
    pub cell: CellKind,
    /// Word-line segment resistance (Ω), 0 for ideal wires.
    pub r_word_ohm: f64,
    /// Bit-line segment resistance (Ω), 0 for ideal wires.
    pub r_bit_ohm: f64,
    /// Driver output resistance in series with the first word-line segment (Ω).
    pub r_driver_ohm: f64,
    /// Sense input resistance in series with the last bit-line segment (Ω).
    pub r_sense_ohm: f64,
    pub sense: SenseKind,
}

/// A default access transistor for 1T1R arrays: W/L = 1 µm / 1 µm, VTO 0.5 V, KP 200 µA/V².
pub fn default_access_mos() -> Mos1 {
    Mos1 {
        model: MosModel {
            name: "nacc".into(),
            nmos: true,
            vto_v: 0.5,
            kp_a_per_v2: 2e-4,
            lambda_per_v: 0.02,
            gamma_sqrt_v: 0.0,
            phi_v: 0.6,
            is_a: 1e-14,
            ld_m: 0.0,
        },
        w_m: 1e-6,
        l_m: 1e-6,
    }
}

impl Crossbar {
    /// A passive (linear) array with ideal virtual-ground sensing and equal word/bit segments.
    pub fn passive(
        rows: usize,
        cols: usize,
        g_siemens: Vec<f64>,
        r_wire_ohm: f64,
    ) -> Result<Crossbar, XbarError> {
        let x = Crossbar {
            rows,
            cols,
            g_siemens,
            cell: CellKind::Linear,
            r_word_ohm: r_wire_ohm,
            r_bit_ohm: r_wire_ohm,
            r_driver_ohm: 0.0,
            r_sense_ohm: 0.0,
            sense: SenseKind::VirtualGround,
        };
        x.validate()?;
        Ok(x)
    }

    /// Check sizes and values; every constructor path should call this.
    pub fn validate(&self) -> Result<(), XbarError> {
        let bad = |m: String| Err(XbarError::Invalid(m));
        if self.rows == 0 || self.cols == 0 {
            return bad(format!(
                "array must be at least 1×1, got {}×{}",
                self.rows, self.cols
            ));
        }
        if self.g_siemens.len() != self.rows * self.cols {
            return bad(format!(
                "conductance matrix has {} entries, expected {}×{} = {}",
                self.g_siemens.len(),
                self.rows,
                self.cols,
                self.rows * self.cols
            ));
        }
        if let Some((k, g)) = self
            .g_siemens
            .iter()
            .enumerate()
            .find(|(_, g)| !g.is_finite() || **g < 0.0)
        {
            return bad(format!(
                "conductance of cell ({}, {}) must be finite and ≥ 0, got {g}",
                k / self.cols,
                k % self.cols
            ));
        }
        // Larger conductances are not physical and their sums in the nodal matrix overflow
        // (1e308 + 1e308 = inf), which would surface as a "singular" or "floating" matrix.
        if let Some((k, g)) = self
            .g_siemens
            .iter()
            .enumerate()
            .find(|(_, g)| **g > MAX_G_SIEMENS)
        {
            return bad(format!(
                "conductance of cell ({}, {}) is {g:e} S, above the {MAX_G_SIEMENS:e} S netc \
                 accepts (sums of such values overflow the nodal matrix)",
                k / self.cols,
                k % self.cols
            ));
        }
        for (name, r) in [
            ("word-line segment resistance", self.r_word_ohm),
            ("bit-line segment resistance", self.r_bit_ohm),
            ("driver resistance", self.r_driver_ohm),
            ("sense resistance", self.r_sense_ohm),
        ] {
            if !r.is_finite() || r < 0.0 {
                return bad(format!("{name} must be finite and ≥ 0, got {r}"));
            }
            if r > 0.0 && r < 1.0 / MAX_G_SIEMENS {
                return bad(format!(
                    "{name} is {r:e} Ω: nonzero values below {:e} Ω (a conductance above \
                     {MAX_G_SIEMENS:e} S) overflow the nodal matrix; use 0 for an ideal wire",
                    1.0 / MAX_G_SIEMENS
                ));
            }
        }
        match &self.cell {
            CellKind::Linear => {}
            CellKind::Sinh { k_per_v } => {
                if !k_per_v.is_finite() || *k_per_v <= 0.0 {
                    return bad(format!("sinh nonlinearity k must be > 0, got {k_per_v}"));
                }
            }
            CellKind::OneT1R { mos, v_gate_v } => {
                if v_gate_v.len() != self.rows {
                    return bad(format!(
                        "1T1R needs one gate voltage per row ({}), got {}",
                        self.rows,
                        v_gate_v.len()
                    ));
                }
                if v_gate_v.iter().any(|v| !v.is_finite()) {
                    return bad("gate voltages must be finite".into());
                }
                if !(mos.w_m > 0.0 && mos.l_m > 2.0 * mos.model.ld_m && mos.model.kp_a_per_v2 > 0.0)
                {
                    return bad("access transistor needs W > 0, L > 2·LD and KP > 0".into());
                }
                if !mos.model.nmos {
                    return bad("the access transistor must be an NMOS".into());
                }
                if let Some((k, g)) = self.g_siemens.iter().enumerate().find(|(_, g)| **g <= 0.0) {
                    return bad(format!(
                        "1T1R memristor conductance of cell ({}, {}) must be > 0, got {g}",
                        k / self.cols,
                        k % self.cols
                    ));
                }
            }
        }
        if let SenseKind::Tia {
            gain,
            r_f_ohm,
            vsat_v,
        } = self.sense
        {
            if !(gain.is_finite()
                && gain > 0.0
                && r_f_ohm.is_finite()
                && r_f_ohm > 0.0
                && vsat_v.is_finite()
                && vsat_v > 0.0)
            {
                return bad(format!(
                    "transimpedance amplifier needs gain > 0, R_f > 0, vsat > 0 (got {gain}, {r_f_ohm}, {vsat_v})"
                ));
            }
        }
        Ok(())
    }

    /// The linear array that has, at 0 V, the slope of this one: every cell becomes its
    /// small-signal conductance ([`super::network::linearized_cell_g`]: `g` for sinh cells, the
    /// memristor in series with the access transistor's channel for 1T1R); wires and sensing
    /// are kept.
    pub fn small_signal(&self) -> Crossbar {
        Crossbar {
            g_siemens: super::network::linearized_cell_g(self, 0.0),
            cell: CellKind::Linear,
            ..self.clone()
        }
    }

    /// Conductance of cell (i, j) (S).
    #[inline]
    pub fn g(&self, i: usize, j: usize) -> f64 {
        self.g_siemens[i * self.cols + j]
    }

    /// The ideal output `I_j = Σ_i g_ij·v_i` (A) for one input vector.
    pub fn ideal_currents(&self, v_in: &[f64]) -> Vec<f64> {
        let mut out = vec![0.0; self.cols];
        for (i, &v) in v_in.iter().enumerate().take(self.rows) {
            let row = &self.g_siemens[i * self.cols..(i + 1) * self.cols];
            for (o, g) in out.iter_mut().zip(row) {
                *o += g * v;
            }
        }
        out
    }

    /// The 1T1R cell current (A) flowing from the word-line node to the bit-line node, its derivatives
    /// with respect to the two node voltages, and the internal node voltage, for a gate voltage `vg`;
    /// `vm_guess` warm-starts the internal Newton iteration. Bulk at 0 V.
    pub fn one_t1r_current(
        mos: &Mos1,
        g_mem: f64,
        vw: f64,
        vb: f64,
        vg: f64,
        vm_guess: f64,
        gmin: f64,
    ) -> (f64, f64, f64, f64) {
        // KCL at the internal node m: g(vw − vm) = i_d(vm)   (i_d: current into the drain)
        // f(vm) = g(vw − vm) − i_d(vm) is strictly decreasing.
        let f = |vm: f64| {
            let e = mos.eval([vm, vg, vb, 0.0], gmin);
            (g_mem * (vw - vm) - e.i_a[0], -g_mem - e.g_siemens[0][0], e)
        };
        let (mut lo, mut hi) = (vw.min(vb), vw.max(vb));
        let finish = |vm: f64, e: crate::circuit::mos1::MosEval| {
            let i = g_mem * (vw - vm);
            let den = g_mem + e.g_siemens[0][0];
            let dvm_dvw = g_mem / den;
            let dvm_dvb = -e.g_siemens[0][2] / den;
            (i, g_mem * (1.0 - dvm_dvw), -g_mem * dvm_dvb, vm)
        };
        // Fast path: plain Newton from the warm start (the function is strictly decreasing with
        // slope ≤ −g); fall back to a bracketed search when it does not settle quickly.
        let mut vm = vm_guess;
        if vm.is_finite() {
            for _ in 0..6 {
                let (fv, dfv, e) = f(vm);
                let step = fv / dfv;
                if !step.is_finite() {
                    break;
                }
                if step.abs() <= 1e-14 * (1.0 + vm.abs()) {
                    return finish(vm, e);
                }
                vm -= step;
            }
        }
        let mut vm = vm_guess.clamp(lo, hi);
        if !vm.is_finite() {
            vm = 0.5 * (lo + hi);
        }
        // Bracket the root (f(lo) ≥ 0 ≥ f(hi)).
        let mut step = 0.1;
        while f(lo).0 < 0.0 {
            lo -= step;
            step *= 2.0;
        }
        step = 0.1;
        while f(hi).0 > 0.0 {
            hi += step;
            step *= 2.0;
        }
        let mut last = f(vm);
        for _ in 0..200 {
            let (fv, dfv, _) = last;
            if fv > 0.0 {
                lo = vm;
            } else {
                hi = vm;
            }
            let mut next = vm - fv / dfv;
            if !(next > lo && next < hi && next.is_finite()) {
                next = 0.5 * (lo + hi);
            }
            let done = (next - vm).abs() <= 1e-15 * (1.0 + vm.abs()) || hi - lo <= 1e-15;
            vm = next;
            last = f(vm);
            if done {
                break;
            }
        }
        // Implicit derivatives: (g + gdd)·dvm = g·dvw − gds·dvb, with gdd = ∂i_d/∂vm, gds = ∂i_d/∂vb.
        finish(vm, last.2)
    }
}
