//! A small array description (JSON file or command-line flags) and its validation into a
//! [`Crossbar`].

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::array::{default_access_mos, CellKind, Crossbar, SenseKind};
use super::XbarError;

/// Access-transistor parameters (level-1 NMOS); unset fields keep the defaults of
/// [`default_access_mos`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MosSpec {
    pub vto: Option<f64>,
    pub kp: Option<f64>,
    pub lambda: Option<f64>,
    pub gamma: Option<f64>,
    pub phi: Option<f64>,
    pub w: Option<f64>,
    pub l: Option<f64>,
}

/// Transimpedance amplifier parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TiaSpec {
    pub gain: f64,
    pub r_f: f64,
    pub vsat: f64,
}

/// The array description. Conductances come from exactly one of `g` (matrix, S), `g_uniform` (S)
/// or `g_random` (`[lo, hi]` S, uniform, with `seed`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ArraySpec {
    pub rows: Option<usize>,
    pub cols: Option<usize>,
    pub g: Option<Vec<Vec<f64>>>,
    pub g_uniform: Option<f64>,
    pub g_random: Option<[f64; 2]>,
    pub seed: Option<u64>,
    /// Segment resistance of both line families (Ω).
    pub rw: Option<f64>,
    pub rw_word: Option<f64>,
    pub rw_bit: Option<f64>,
    pub r_driver: Option<f64>,
    pub r_sense: Option<f64>,
    /// `passive`, `sinh` or `1t1r`.
    pub cell: Option<String>,
    /// sinh nonlinearity (1/V).
    pub k: Option<f64>,
    /// 1T1R gate voltage(s): one value for every row, or one per row.
    pub v_gate: Option<Vec<f64>>,
    pub mos: Option<MosSpec>,
    /// Transimpedance sensing (absent: ideal virtual ground).
    pub tia: Option<TiaSpec>,
}

impl ArraySpec {
    pub fn from_json(text: &str) -> Result<ArraySpec, XbarError> {
        serde_json::from_str(text).map_err(|e| XbarError::Invalid(format!("array spec: {e}")))
    }

    /// Fields set in `over` replace those of `self`.
    pub fn merged(mut self, over: &ArraySpec) -> ArraySpec {
        macro_rules! take {
            ($($f:ident),*) => { $( if over.$f.is_some() { self.$f = over.$f.clone(); } )* };
        }
        take!(rows, cols, seed, rw, rw_word, rw_bit, r_driver, r_sense, cell, k, v_gate, mos, tia);
        if over.g.is_some() || over.g_uniform.is_some() || over.g_random.is_some() {
            self.g = over.g.clone();
            self.g_uniform = over.g_uniform;
            self.g_random = over.g_random;
        }
        self
    }

    /// Validate and build the array.
    pub fn build(&self) -> Result<Crossbar, XbarError> {
        let bad = |m: &str| Err(XbarError::Invalid(m.to_string()));
        let sources = [
            self.g.is_some(),
            self.g_uniform.is_some(),
            self.g_random.is_some(),
        ]
        .iter()
        .filter(|b| **b)
        .count();
        if sources != 1 {
            return bad(
                "give exactly one of a conductance matrix, a uniform conductance or a random range",
            );
        }
        let (rows, cols, g) = if let Some(m) = &self.g {
            let r = m.len();
            let c = m.first().map(|x| x.len()).unwrap_or(0);
            if r == 0 || c == 0 || m.iter().any(|row| row.len() != c) {
                return bad("the conductance matrix must be rectangular and non-empty");
            }
            if self.rows.is_some_and(|x| x != r) || self.cols.is_some_and(|x| x != c) {
                return bad("rows/cols disagree with the conductance matrix");
            }
            (r, c, m.iter().flatten().copied().collect())
        } else {
            let (Some(r), Some(c)) = (self.rows, self.cols) else {
                return bad("rows and cols are required without a conductance matrix");
            };
            if r == 0 || c == 0 {
                return bad("rows and cols must be ≥ 1");
            }
            if r.checked_mul(c).is_none_or(|n| n > 1 << 26) {
                return bad("array too large (at most 2^26 cells)");
            }
            super::budget::check_size(r, c)?;
            if let Some(g) = self.g_uniform {
                (r, c, vec![g; r * c])
            } else {
                let [lo, hi] = self.g_random.unwrap_or([0.0, 0.0]);
                if !(lo.is_finite() && hi.is_finite() && 0.0 <= lo && lo <= hi) {
                    return bad("g_random needs 0 ≤ lo ≤ hi");
                }
                let mut rng = ChaCha8Rng::seed_from_u64(self.seed.unwrap_or(0));
                let g = (0..r * c)
                    .map(|_| if hi > lo { rng.gen_range(lo..hi) } else { lo })
                    .collect();
                (r, c, g)
            }
        };
        self.build_with(rows, cols, g)
    }

    /// Build the array from this spec's wires, cells and sensing with the conductances `g`
    /// (row-major, `rows × cols`, S) given directly; the spec's own conductance fields are ignored.
    pub fn build_with(&self, rows: usize, cols: usize, g: Vec<f64>) -> Result<Crossbar, XbarError> {
        let bad = |m: &str| Err(XbarError::Invalid(m.to_string()));
        let rw = self.rw.unwrap_or(0.0);
        let cell = match self.cell.as_deref().unwrap_or("passive") {
            "passive" | "linear" | "0t1r" => CellKind::Linear,
            "sinh" => CellKind::Sinh {
                k_per_v: self.k.unwrap_or(2.0),
            },
            "1t1r" => {
                let mut mos = default_access_mos();
                if let Some(m) = &self.mos {
                    let md = &mut mos.model;
                    md.vto_v = m.vto.unwrap_or(md.vto_v);
                    md.kp_a_per_v2 = m.kp.unwrap_or(md.kp_a_per_v2);
                    md.lambda_per_v = m.lambda.unwrap_or(md.lambda_per_v);
                    md.gamma_sqrt_v = m.gamma.unwrap_or(md.gamma_sqrt_v);
                    md.phi_v = m.phi.unwrap_or(md.phi_v);
                    mos.w_m = m.w.unwrap_or(mos.w_m);
                    mos.l_m = m.l.unwrap_or(mos.l_m);
                }
                let vg = self.v_gate.clone().unwrap_or_else(|| vec![3.0]);
                let v_gate_v = match vg.len() {
                    1 => vec![vg[0]; rows],
                    n if n == rows => vg,
                    _ => return bad("v_gate needs one value or one per row"),
                };
                CellKind::OneT1R { mos, v_gate_v }
            }
            other => {
                return Err(XbarError::Invalid(format!(
                    "unknown cell kind '{other}' (passive, sinh, 1t1r)"
                )))
            }
        };
        let sense = match &self.tia {
            None => SenseKind::VirtualGround,
            Some(t) => SenseKind::Tia {
                gain: t.gain,
                r_f_ohm: t.r_f,
                vsat_v: t.vsat,
            },
        };
        let xb = Crossbar {
            rows,
            cols,
            g_siemens: g,
            cell,
            r_word_ohm: self.rw_word.unwrap_or(rw),
            r_bit_ohm: self.rw_bit.unwrap_or(rw),
            r_driver_ohm: self.r_driver.unwrap_or(0.0),
            r_sense_ohm: self.r_sense.unwrap_or(0.0),
            sense,
        };
        xb.validate()?;
        Ok(xb)
    }
}

/// Read a conductance matrix (S) from text: one row per line, values separated by commas or
/// whitespace; `#` starts a comment.
pub fn parse_matrix(text: &str) -> Result<Vec<Vec<f64>>, XbarError> {
    let mut out = Vec::new();
    for (ln, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let row: Result<Vec<f64>, _> = line
            .split(|ch: char| ch == ',' || ch.is_whitespace())
            .filter(|t| !t.is_empty())
            .map(|t| t.parse::<f64>())
            .collect();
        match row {
            Ok(r) => out.push(r),
            Err(e) => {
                return Err(XbarError::Invalid(format!(
                    "conductance file line {}: {e}",
                    ln + 1
                )))
            }
        }
    }
    Ok(out)
}
