//! Level-1 (Shichman–Hodges) MOSFET, DC, following ngspice's `mos1load.c` at the nominal
//! temperature (27 °C): cutoff, triode, saturation, channel-length modulation (applied in triode
//! too, as ngspice does), body effect, source/drain exchange for negative `V_DS`, and the two bulk
//! junction diodes with `gmin` in parallel.

use crate::netlist::MosModel;

/// Thermal voltage kT/q at 300.15 K (V), with ngspice's constants.
pub const VT_300K_V: f64 = 1.380_648_52e-23 * 300.15 / 1.602_176_620_8e-19;

/// Largest exponent argument used for junctions (ngspice's MAX_EXP_ARG).
const MAX_EXP_ARG: f64 = 709.0;

/// Terminal currents of a MOSFET and their derivatives.
///
/// Order of terminals everywhere: drain, gate, source, bulk. `i_a[k]` is the current flowing *into*
/// the device at terminal k (A); `g_siemens[k][m]` = ∂ i_a[k] / ∂ V_m (S).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MosEval {
    pub i_a: [f64; 4],
    pub g_siemens: [[f64; 4]; 4],
    /// Threshold voltage at the operating point (normalised sign: positive for an enhancement
    /// device of either polarity), used for voltage limiting.
    pub von_v: f64,
    /// Drain–source channel current in the device's own polarity (A), for reports.
    pub ids_a: f64,
}

/// Instance geometry and model.
#[derive(Debug, Clone, PartialEq)]
pub struct Mos1 {
    pub model: MosModel,
    pub w_m: f64,
    pub l_m: f64,
}

impl Mos1 {
    /// β = KP·W/L_eff (A/V²).
    pub fn beta(&self) -> f64 {
        let l_eff = self.l_m - 2.0 * self.model.ld_m;
        self.model.kp_a_per_v2 * self.w_m / l_eff
    }

    fn sign(&self) -> f64 {
        if self.model.nmos {
            1.0
        } else {
            -1.0
        }
    }

    /// Threshold (ngspice `von`) for a normalised source-role bulk voltage `vbx`, and d von / d vbx.
    fn von(&self, vbx: f64) -> (f64, f64, f64) {
        let m = &self.model;
        let phi = m.phi_v;
        let (sarg, dsarg) = if vbx <= 0.0 {
            let s = (phi - vbx).sqrt();
            (s, -0.5 / s)
        } else {
            let s0 = phi.sqrt();
            let s = s0 - vbx / (s0 + s0);
            if s > 0.0 {
                (s, -1.0 / (s0 + s0))
            } else {
                (0.0, 0.0)
            }
        };
        let tvbi = m.vto_v - self.sign() * m.gamma_sqrt_v * phi.sqrt();
        let von = tvbi * self.sign() + m.gamma_sqrt_v * sarg;
        (von, m.gamma_sqrt_v * dsarg, sarg)
    }

    /// Channel current in normalised variables with the source role at terminal x:
    /// returns (cdrain, ∂/∂vgx, ∂/∂vdx, ∂/∂vbx, von).
    fn channel(&self, vgx: f64, vdx: f64, vbx: f64) -> (f64, f64, f64, f64, f64) {
        let beta = self.beta();
        let lambda = self.model.lambda_per_v;
        let (von, dvon, _) = self.von(vbx);
        let vgst = vgx - von;
        if vgst <= 0.0 {
            return (0.0, 0.0, 0.0, 0.0, von);
        }
        let betap = beta * (1.0 + lambda * vdx);
        let (c, gm, gds) = if vgst <= vdx {
            let c = betap * vgst * vgst * 0.5;
            (c, betap * vgst, lambda * beta * vgst * vgst * 0.5)
        } else {
            let c = betap * vdx * (vgst - 0.5 * vdx);
            (
                c,
                betap * vdx,
                betap * (vgst - vdx) + lambda * beta * vdx * (vgst - 0.5 * vdx),
            )
        };
        // vgst = vgx − von(vbx): ∂c/∂vbx = gm · (−dvon/dvbx)
        (c, gm, gds, -gm * dvon, von)
    }

    /// Evaluate currents and Jacobian at terminal voltages `v = [V_d, V_g, V_s, V_b]` (V).
    pub fn eval(&self, v: [f64; 4], gmin_siemens: f64) -> MosEval {
        let t = self.sign();
        let (vd, vg, vs, vb) = (t * v[0], t * v[1], t * v[2], t * v[3]);
        let mut i = [0.0; 4];
        let mut g = [[0.0; 4]; 4];
        // Channel.
        let (ich, d_ich, von) = if vd - vs >= 0.0 {
            let (c, gm, gds, gmbs, von) = self.channel(vg - vs, vd - vs, vb - vs);
            // I(d→s) = c; derivatives w.r.t. [d, g, s, b]
            (c, [gds, gm, -(gm + gds + gmbs), gmbs], von)
        } else {
            let (c, gm, gds, gmbs, von) = self.channel(vg - vd, vs - vd, vb - vd);
            (-c, [gm + gds + gmbs, -gm, -gds, -gmbs], von)
        };
        i[0] += ich;
        i[2] -= ich;
        for m in 0..4 {
            g[0][m] += d_ich[m];
            g[2][m] -= d_ich[m];
        }
        // Junctions: bulk→source and bulk→drain diodes.
        let is = self.model.is_a;
        let vt = VT_300K_V;
        for (x, vbx) in [(2usize, vb - vs), (0usize, vb - vd)] {
            let (c, gj) = if vbx <= -3.0 * vt {
                (gmin_siemens * vbx - is, gmin_siemens)
            } else {
                let e = (vbx / vt).min(MAX_EXP_ARG).exp();
                (
                    is * (e - 1.0) + gmin_siemens * vbx,
                    is * e / vt + gmin_siemens,
                )
            };
            // current flows into the device at bulk, out at x
            i[3] += c;
            i[x] -= c;
            g[3][3] += gj;
            g[3][x] -= gj;
            g[x][3] -= gj;
            g[x][x] += gj;
        }
        for c in i.iter_mut() {
            *c *= t;
        }
        MosEval {
            i_a: i,
            g_siemens: g,
            von_v: von,
            ids_a: ich,
        }
    }
}

/// ngspice's `DEVfetlim`: limit the change of a gate–source voltage around the threshold.
pub fn fetlim(vnew: f64, vold: f64, vto: f64) -> f64 {
    let vtsthi = (2.0 * (vold - vto)).abs() + 2.0;
    let vtstlo = vtsthi / 2.0 + 2.0;
    let vtox = vto + 3.5;
    let delv = vnew - vold;
    let mut vnew = vnew;
    if vold >= vto {
        if vold >= vtox {
            if delv <= 0.0 {
                if vnew >= vtox {
                    if -delv > vtstlo {
                        vnew = vold - vtstlo;
                    }
                } else {
                    vnew = vnew.max(vto + 2.0);
                }
            } else if delv >= vtsthi {
                vnew = vold + vtsthi;
            }
        } else if delv <= 0.0 {
            vnew = vnew.max(vto - 0.5);
        } else {
            vnew = vnew.min(vto + 4.0);
        }
    } else if delv <= 0.0 {
        if -delv > vtsthi {
            vnew = vold - vtsthi;
        }
    } else {
        let vtemp = vto + 0.5;
        if vnew <= vtemp {
            if delv > vtstlo {
                vnew = vold + vtstlo;
            }
        } else {
            vnew = vtemp;
        }
    }
    vnew
}

/// Critical voltage of a junction with saturation current `is_a` (ngspice's `vcrit`).
pub fn vcrit(is_a: f64) -> f64 {
    VT_300K_V * (VT_300K_V / (std::f64::consts::SQRT_2 * is_a)).ln()
}

/// ngspice's `DEVpnjlim`: logarithmic damping of a forward junction voltage step.
pub fn pnjlim(vnew: f64, vold: f64, vcrit: f64) -> f64 {
    let vt = VT_300K_V;
    if vnew > vcrit && (vnew - vold).abs() > vt + vt {
        if vold > 0.0 {
            let arg = 1.0 + (vnew - vold) / vt;
            if arg > 0.0 {
                vold + vt * arg.ln()
            } else {
                vcrit
            }
        } else {
            vt * (vnew / vt).ln()
        }
    } else {
        vnew
    }
}

/// ngspice's `DEVlimvds`: limit the change of a drain–source voltage.
pub fn limvds(vnew: f64, vold: f64) -> f64 {
    if vold >= 3.5 {
        if vnew > vold {
            vnew.min(3.0 * vold + 2.0)
        } else if vnew < 3.5 {
            vnew.max(2.0)
        } else {
            vnew
        }
    } else if vnew > vold {
        vnew.min(4.0)
    } else {
        vnew.max(-0.5)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(nmos: bool) -> Mos1 {
        Mos1 {
            model: MosModel {
                nmos,
                vto_v: if nmos { 0.7 } else { -0.7 },
                kp_a_per_v2: 1.1e-4,
                lambda_per_v: 0.04,
                gamma_sqrt_v: 0.45,
                phi_v: 0.65,
                ..MosModel::default()
            },
            w_m: 2e-6,
            l_m: 1e-6,
        }
    }

    #[test]
    fn jacobian_matches_finite_differences_in_every_region() {
        let points = [
            [2.5, 1.5, 0.0, 0.0],  // saturation
            [0.2, 2.5, 0.0, 0.0],  // deep triode
            [1.0, 0.3, 0.0, 0.0],  // cutoff
            [0.0, 2.0, 0.8, -0.5], // reversed, body effect
            [1.2, 1.8, 0.1, -1.0], // triode with body effect
            [1.5, 2.0, 0.0, 0.2],  // forward-biased bulk (small)
        ];
        for nmos in [true, false] {
            let d = dev(nmos);
            let s = if nmos { 1.0 } else { -1.0 };
            for p in points {
                let v = p.map(|x| s * x);
                let e = d.eval(v, 1e-12);
                for m in 0..4 {
                    let h = 1e-6;
                    let mut vp = v;
                    let mut vm = v;
                    vp[m] += h;
                    vm[m] -= h;
                    let ip = d.eval(vp, 1e-12).i_a;
                    let im = d.eval(vm, 1e-12).i_a;
                    for k in 0..4 {
                        let fd = (ip[k] - im[k]) / (2.0 * h);
                        let an = e.g_siemens[k][m];
                        assert!(
                            (fd - an).abs() <= 1e-6 * an.abs().max(fd.abs()) + 1e-12,
                            "nmos={nmos} v={v:?} d i{k}/d v{m}: fd {fd} analytic {an}"
                        );
                    }
                }
                let sum: f64 = e.i_a.iter().sum();
                assert!(sum.abs() < 1e-18, "KCL inside the device");
            }
        }
    }

    #[test]
    fn closed_form_saturation_and_triode() {
        let mut d = dev(true);
        d.model.gamma_sqrt_v = 0.0;
        d.model.is_a = 0.0;
        let beta = 1.1e-4 * 2.0;
        // saturation: Id = β/2 (Vgs−Vt)² (1+λVds)
        let e = d.eval([2.0, 1.5, 0.0, 0.0], 0.0);
        let want = beta / 2.0 * 0.8f64.powi(2) * (1.0 + 0.04 * 2.0);
        assert!((e.i_a[0] - want).abs() < 1e-15 + 1e-12 * want);
        // triode: Id = β (Vgs−Vt − Vds/2) Vds (1+λVds)
        let e = d.eval([0.1, 2.5, 0.0, 0.0], 0.0);
        let want = beta * (1.8 - 0.05) * 0.1 * (1.0 + 0.004);
        assert!((e.i_a[0] - want).abs() < 1e-12 * want);
        // PMOS mirror image
        let mut p = dev(false);
        p.model.gamma_sqrt_v = 0.0;
        p.model.is_a = 0.0;
        let e = p.eval([-2.0, -1.5, 0.0, 0.0], 0.0);
        let want = beta / 2.0 * 0.8f64.powi(2) * (1.0 + 0.04 * 2.0);
        assert!((e.i_a[0] + want).abs() < 1e-12 * want);
    }
}
