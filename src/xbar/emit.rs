//! Write an array, under a biasing topology, as a netlist in netc's SPICE dialect (which ngspice
//! runs): R for wires and linear cells, B `I=g*sinh(k*V(a,b))/k` for nonlinear cells, M level-1 with a
//! `.model` for access transistors, B `V=vsat*tanh(…)` op-amps, V sources, `.op`.
//!
//! Node names: `w_i_j` / `b_i_j` (word / bit line nodes), `in_i` (row source), `d_i` (between a
//! driver resistance and the first segment), `t_j` (between the last segment and a sense
//! resistance), `s_j` (column end: the 0 V sense source or the amplifier's input), `o_j` (amplifier
//! output), `m_i_j` (1T1R internal node), `g_i` (gate line). Merged nodes of zero-resistance lines:
//! `w_i` / `b_j`. Sources: `vin_i`, `vs_j`, `vg_i`; the current of `vs_j` is the column output.
#![allow(clippy::needless_range_loop)] // parallel arrays indexed together

use std::fmt::Write;

use super::array::{CellKind, Crossbar, SenseKind};
use super::network::{ColEnd, RowEnd, Topology};

fn num(v: f64) -> String {
    format!("{v:e}")
}

/// Name of word-line node (i, j) (consistent with the solver's node merging).
pub fn word_node(xb: &Crossbar, topo: &Topology, i: usize, j: usize) -> String {
    if xb.r_word_ohm > 0.0 {
        format!("w_{i}_{j}")
    } else if topo.rows[i] == RowEnd::Driven && xb.r_driver_ohm == 0.0 {
        format!("in_{i}")
    } else {
        format!("w_{i}")
    }
}

/// Name of bit-line node (i, j).
pub fn bit_node(xb: &Crossbar, topo: &Topology, i: usize, j: usize) -> String {
    if xb.r_bit_ohm > 0.0 {
        format!("b_{i}_{j}")
    } else if xb.r_sense_ohm == 0.0 && topo.cols[j] != ColEnd::Open {
        format!("s_{j}")
    } else {
        format!("b_{j}")
    }
}

/// The netlist of `xb` under `topo` with row sources `v_row` and column sources `v_col`.
pub fn emit_with(xb: &Crossbar, topo: &Topology, v_row: &[f64], v_col: &[f64]) -> String {
    let (r, c) = (xb.rows, xb.cols);
    let mut s = String::new();
    let _ = writeln!(
        s,
        "netc crossbar {r}x{c} cell={} r_word={} r_bit={} r_driver={} r_sense={}",
        xb.cell.name(),
        num(xb.r_word_ohm),
        num(xb.r_bit_ohm),
        num(xb.r_driver_ohm),
        num(xb.r_sense_ohm)
    );
    let _ = writeln!(s, ".options reltol=1e-9 vntol=1e-12 abstol=1e-15");
    // Row drivers and word-line segments.
    for i in 0..r {
        if topo.rows[i] == RowEnd::Driven {
            let _ = writeln!(s, "vin_{i} in_{i} 0 DC {}", num(v_row[i]));
            if xb.r_word_ohm > 0.0 {
                let first = word_node(xb, topo, i, 0);
                if xb.r_driver_ohm > 0.0 {
                    let _ = writeln!(s, "rdrv_{i} in_{i} d_{i} {}", num(xb.r_driver_ohm));
                    let _ = writeln!(s, "rw_{i}_0 d_{i} {first} {}", num(xb.r_word_ohm));
                } else {
                    let _ = writeln!(s, "rw_{i}_0 in_{i} {first} {}", num(xb.r_word_ohm));
                }
            } else if xb.r_driver_ohm > 0.0 {
                let _ = writeln!(
                    s,
                    "rdrv_{i} in_{i} {} {}",
                    word_node(xb, topo, i, 0),
                    num(xb.r_driver_ohm)
                );
            }
        }
        if xb.r_word_ohm > 0.0 {
            for j in 1..c {
                let _ = writeln!(
                    s,
                    "rw_{i}_{j} {} {} {}",
                    word_node(xb, topo, i, j - 1),
                    word_node(xb, topo, i, j),
                    num(xb.r_word_ohm)
                );
            }
        }
    }
    // Bit-line segments and column ends.
    for j in 0..c {
        if xb.r_bit_ohm > 0.0 {
            for i in 1..r {
                let _ = writeln!(
                    s,
                    "rb_{i}_{j} {} {} {}",
                    bit_node(xb, topo, i - 1, j),
                    bit_node(xb, topo, i, j),
                    num(xb.r_bit_ohm)
                );
            }
        }
        if topo.cols[j] == ColEnd::Open {
            continue;
        }
        let last = bit_node(xb, topo, r - 1, j);
        let end = format!("s_{j}");
        match (xb.r_bit_ohm > 0.0, xb.r_sense_ohm > 0.0) {
            (true, true) => {
                let _ = writeln!(s, "rb_{r}_{j} {last} t_{j} {}", num(xb.r_bit_ohm));
                let _ = writeln!(s, "rsen_{j} t_{j} {end} {}", num(xb.r_sense_ohm));
            }
            (true, false) => {
                let _ = writeln!(s, "rb_{r}_{j} {last} {end} {}", num(xb.r_bit_ohm));
            }
            (false, true) => {
                let _ = writeln!(s, "rsen_{j} {last} {end} {}", num(xb.r_sense_ohm));
            }
            (false, false) => {} // the merged line is s_j itself
        }
        match topo.cols[j] {
            ColEnd::Driven => {
                let _ = writeln!(s, "vs_{j} {end} 0 DC {}", num(v_col[j]));
            }
            ColEnd::Tia => {
                if let SenseKind::Tia {
                    gain,
                    r_f_ohm,
                    vsat_v,
                } = xb.sense
                {
                    let _ = writeln!(s, "rf_{j} {end} o_{j} {}", num(r_f_ohm));
                    let _ = writeln!(
                        s,
                        "bamp_{j} o_{j} 0 V={}*tanh({}*(0-V({end}))/{})",
                        num(vsat_v),
                        num(gain),
                        num(vsat_v)
                    );
                }
            }
            ColEnd::Open => {}
        }
    }
    // Cells.
    if let CellKind::OneT1R { v_gate_v, mos } = &xb.cell {
        for (i, vg) in v_gate_v.iter().enumerate() {
            let _ = writeln!(s, "vg_{i} g_{i} 0 DC {}", num(*vg));
        }
        let m = &mos.model;
        let _ = writeln!(
            s,
            ".model nacc nmos level=1 vto={} kp={} lambda={} gamma={} phi={} is={} ld={}",
            num(m.vto_v),
            num(m.kp_a_per_v2),
            num(m.lambda_per_v),
            num(m.gamma_sqrt_v),
            num(m.phi_v),
            num(m.is_a),
            num(m.ld_m)
        );
    }
    for i in 0..r {
        for j in 0..c {
            let (wn, bn) = (word_node(xb, topo, i, j), bit_node(xb, topo, i, j));
            let g = xb.g(i, j);
            match &xb.cell {
                CellKind::Linear => {
                    if g > 0.0 {
                        let _ = writeln!(s, "rc_{i}_{j} {wn} {bn} {}", num(1.0 / g));
                    }
                }
                CellKind::Sinh { k_per_v } => {
                    if g > 0.0 {
                        let _ = writeln!(
                            s,
                            "bc_{i}_{j} {wn} {bn} I={}*sinh({}*V({wn},{bn}))/{}",
                            num(g),
                            num(*k_per_v),
                            num(*k_per_v)
                        );
                    }
                }
                CellKind::OneT1R { mos, .. } => {
                    let _ = writeln!(s, "rc_{i}_{j} {wn} m_{i}_{j} {}", num(1.0 / g));
                    let _ = writeln!(
                        s,
                        "mc_{i}_{j} m_{i}_{j} g_{i} {bn} 0 nacc W={} L={}",
                        num(mos.w_m),
                        num(mos.l_m)
                    );
                }
            }
        }
    }
    let _ = writeln!(s, ".op");
    let _ = writeln!(s, ".end");
    s
}

impl Crossbar {
    /// The inference circuit for input vector `v_in` (every row driven, every column into its
    /// sense amplifier) as a netlist.
    pub fn emit(&self, v_in: &[f64]) -> String {
        let topo = Topology::inference(self);
        let v_col = vec![0.0; self.cols];
        emit_with(self, &topo, v_in, &v_col)
    }
}
