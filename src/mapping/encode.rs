//! Weight ↔ conductance-pair encoding.
//!
//! A weight `w` becomes a conductance difference `Δg = w · scale` (S/unit; S1's `R_gw`), written as
//! `g⁺ = g_min + max(Δg, 0)`, `g⁻ = g_min + max(−Δg, 0)`, so one device of the pair sits at `g_min`
//! and both stay inside `[g_min, g_max]`; `|Δg|` is clipped to `g_max − g_min`. With `levels = N`
//! device states `g_min + k·step`, `step = (g_max − g_min)/(N − 1)`, `Δg` is rounded to a multiple
//! of `step`, which gives `2N − 1` weight levels (S5: 8 states of 2.5 µS in 2.5–20 µS → 15 levels).
//! With several pairs per weight every pair carries the same `Δg` and the weight is decoded from the
//! mean difference, `w = mean(g⁺ − g⁻) / scale` (S1).

use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Encoder {
    pub g_min_siemens: f64,
    pub g_max_siemens: f64,
    /// Device states (0 = analogue).
    pub levels: usize,
    /// Siemens per unit weight.
    pub scale_siemens: f64,
}

/// One encoded weight.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Pair {
    pub g_plus_siemens: f64,
    pub g_minus_siemens: f64,
    /// True when `|w·scale|` exceeded the window and was clipped.
    pub clipped: bool,
}

impl Encoder {
    /// Conductance step between device states (None when analogue).
    pub fn step_siemens(&self) -> Option<f64> {
        (self.levels >= 2)
            .then(|| (self.g_max_siemens - self.g_min_siemens) / (self.levels - 1) as f64)
    }

    /// The largest representable |weight|.
    pub fn w_max(&self) -> f64 {
        (self.g_max_siemens - self.g_min_siemens) / self.scale_siemens
    }

    /// All representable weights (quantised encoders), ascending: `2·levels − 1` values.
    pub fn weight_levels(&self) -> Option<Vec<f64>> {
        let step = self.step_siemens()?;
        let n = self.levels as i64 - 1;
        Some(
            (-n..=n)
                .map(|q| q as f64 * step / self.scale_siemens)
                .collect(),
        )
    }

    /// Largest decode error for an in-range weight: half a step (quantised) or 0 (analogue).
    pub fn max_error(&self) -> f64 {
        self.step_siemens()
            .map(|s| 0.5 * s / self.scale_siemens)
            .unwrap_or(0.0)
    }

    pub fn encode(&self, w: f64) -> Pair {
        let span = self.g_max_siemens - self.g_min_siemens;
        let mut dg = w * self.scale_siemens;
        let clipped = dg.abs() > span * (1.0 + 1e-12) || !dg.is_finite();
        if !dg.is_finite() {
            dg = 0.0;
        }
        dg = dg.clamp(-span, span);
        let (up, down) = match self.step_siemens() {
            Some(step) => {
                let q = (dg / step)
                    .round()
                    .clamp(-(self.levels as f64 - 1.0), self.levels as f64 - 1.0);
                let k = q.abs();
                let g = self.g_min_siemens + k * step;
                if q >= 0.0 {
                    (g, self.g_min_siemens)
                } else {
                    (self.g_min_siemens, g)
                }
            }
            None => {
                if dg >= 0.0 {
                    (self.g_min_siemens + dg, self.g_min_siemens)
                } else {
                    (self.g_min_siemens, self.g_min_siemens - dg)
                }
            }
        };
        Pair {
            g_plus_siemens: up.min(self.g_max_siemens),
            g_minus_siemens: down.min(self.g_max_siemens),
            clipped,
        }
    }

    /// Decode one pair.
    pub fn decode(&self, g_plus_siemens: f64, g_minus_siemens: f64) -> f64 {
        (g_plus_siemens - g_minus_siemens) / self.scale_siemens
    }

    /// Decode several pairs of one weight (mean difference).
    pub fn decode_pairs(&self, pairs: &[(f64, f64)]) -> f64 {
        if pairs.is_empty() {
            return 0.0;
        }
        let d: f64 = pairs.iter().map(|(p, m)| p - m).sum::<f64>() / pairs.len() as f64;
        d / self.scale_siemens
    }

    /// The weight the encoder actually stores for `w` (encode then decode).
    pub fn quantise(&self, w: f64) -> f64 {
        let p = self.encode(w);
        self.decode(p.g_plus_siemens, p.g_minus_siemens)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s5_fifteen_levels() {
        let e = Encoder {
            g_min_siemens: 2.5e-6,
            g_max_siemens: 20e-6,
            levels: 8,
            scale_siemens: 17.5e-6 / 7.0,
        };
        let lv = e.weight_levels().unwrap();
        assert_eq!(lv.len(), 15);
        for (i, w) in lv.iter().enumerate() {
            assert!((w - (i as f64 - 7.0)).abs() < 1e-12);
            let p = e.encode(*w);
            // both devices on one of the 8 states
            for g in [p.g_plus_siemens, p.g_minus_siemens] {
                let k = (g - 2.5e-6) / 2.5e-6;
                assert!((k - k.round()).abs() < 1e-9 && (0.0..=7.0).contains(&k.round()));
            }
            assert!((e.decode(p.g_plus_siemens, p.g_minus_siemens) - w).abs() < 1e-9);
        }
    }
}
