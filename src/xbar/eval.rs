//! From a nodal solution to what a user looks at: node voltages, cell currents, column outputs and
//! source currents.
#![allow(clippy::needless_range_loop)] // parallel arrays indexed together

use super::array::{CellKind, Crossbar, SenseKind};
use super::network::{Network, Node};

/// Default gmin across transistor junctions (S), as ngspice.
pub const GMIN_JUNCTION_SIEMENS: f64 = 1e-12;

/// Cell current (A) from the word-line node to the bit-line node of cell k = i·C + j, and its two
/// partial derivatives (∂/∂V_w, ∂/∂V_b); `vm` is the 1T1R internal node (warm start in, result out).
#[inline]
pub fn cell_current(x: &Crossbar, k: usize, vw: f64, vb: f64, vm: &mut f64) -> (f64, f64, f64) {
    let g = x.g_siemens[k];
    match &x.cell {
        CellKind::Linear => (g * (vw - vb), g, -g),
        CellKind::Sinh { k_per_v } => {
            let v = vw - vb;
            let kv = k_per_v * v;
            let i = g * kv.sinh() / k_per_v;
            let d = g * kv.cosh();
            (i, d, -d)
        }
        CellKind::OneT1R { mos, v_gate_v } => {
            let i_row = k / x.cols;
            let (i, dw, db, m) = Crossbar::one_t1r_current(
                mos,
                g,
                vw,
                vb,
                v_gate_v[i_row],
                *vm,
                GMIN_JUNCTION_SIEMENS,
            );
            *vm = m;
            (i, dw, db)
        }
    }
}

/// The TIA output voltage for a sense-node voltage, and its derivative.
#[inline]
pub fn tia_output(sense: SenseKind, v_sense: f64) -> (f64, f64) {
    match sense {
        SenseKind::Tia { gain, vsat_v, .. } => {
            let t = (gain * (0.0 - v_sense) / vsat_v).tanh();
            (vsat_v * t, -gain * (1.0 - t * t))
        }
        SenseKind::VirtualGround => (0.0, 0.0),
    }
}

/// Everything about one solved operating point.
#[derive(Debug, Clone)]
pub struct Solved {
    /// Word-line node voltages (V), row-major R×C.
    pub v_word: Vec<f64>,
    /// Bit-line node voltages (V), row-major R×C.
    pub v_bit: Vec<f64>,
    /// Cell currents (A), word → bit, row-major.
    pub i_cell: Vec<f64>,
    /// 1T1R internal node voltages (V), row-major (empty otherwise).
    pub v_internal: Vec<f64>,
    /// Current into each column's bottom source (A, positive into ground); `None` for columns
    /// without a source.
    pub i_col: Vec<Option<f64>>,
    /// Current out of each row's source into the array (A); `None` for floating rows.
    pub i_row: Vec<Option<f64>>,
    /// Transimpedance amplifier outputs (V) and their sense-node voltages (V), per column.
    pub v_tia_out: Vec<Option<f64>>,
    pub v_tia_sense: Vec<Option<f64>>,
}

/// Evaluate a solution `xs` (unknowns) with source values `v_row` (per row) and `v_col` (per
/// column bottom source).
pub fn evaluate(
    xb: &Crossbar,
    net: &Network,
    xs: &[f64],
    v_row: &[f64],
    v_col: &[f64],
    vm_warm: Option<&[f64]>,
) -> Solved {
    let (r, c) = (xb.rows, xb.cols);
    let n = r * c;
    let mut v_word = Vec::with_capacity(n);
    let mut v_bit = Vec::with_capacity(n);
    for k in 0..n {
        v_word.push(Network::voltage(net.w[k], xs, v_row, v_col));
        v_bit.push(Network::voltage(net.b[k], xs, v_row, v_col));
    }
    let is_1t1r = matches!(xb.cell, CellKind::OneT1R { .. });
    let mut v_internal = if is_1t1r {
        match vm_warm {
            Some(v) if v.len() == n => v.to_vec(),
            _ => v_bit.clone(),
        }
    } else {
        Vec::new()
    };
    let mut i_cell = Vec::with_capacity(n);
    let mut dummy = 0.0;
    for k in 0..n {
        let vm = if is_1t1r {
            &mut v_internal[k]
        } else {
            &mut dummy
        };
        i_cell.push(cell_current(xb, k, v_word[k], v_bit[k], vm).0);
    }
    let mut i_col: Vec<Option<f64>> = vec![None; c];
    let mut i_row: Vec<Option<f64>> = vec![None; r];
    let mut add_col = |j: u32, val: f64| {
        let e = &mut i_col[j as usize];
        *e = Some(e.unwrap_or(0.0) + val);
    };
    for e in &net.wires {
        let va = Network::voltage(e.a, xs, v_row, v_col);
        let vb = Network::voltage(e.b, xs, v_row, v_col);
        // current from a to b through the element
        let i = e.g_siemens * (va - vb);
        if let Node::Col(j) = e.b {
            add_col(j, i);
        }
        if let Node::Col(j) = e.a {
            add_col(j, -i);
        }
    }
    for k in 0..n {
        if let Node::Col(j) = net.b[k] {
            add_col(j, i_cell[k]);
        }
    }
    let mut add_row = |i: u32, val: f64| {
        let e = &mut i_row[i as usize];
        *e = Some(e.unwrap_or(0.0) + val);
    };
    for e in &net.wires {
        let va = Network::voltage(e.a, xs, v_row, v_col);
        let vb = Network::voltage(e.b, xs, v_row, v_col);
        let i = e.g_siemens * (va - vb);
        if let Node::Row(i_r) = e.a {
            add_row(i_r, i);
        }
        if let Node::Row(i_r) = e.b {
            add_row(i_r, -i);
        }
    }
    for k in 0..n {
        if let Node::Row(i_r) = net.w[k] {
            add_row(i_r, i_cell[k]);
        }
    }
    let mut v_tia_out = vec![None; c];
    let mut v_tia_sense = vec![None; c];
    for &(j, s) in &net.tia {
        let vs = xs[s as usize];
        v_tia_sense[j] = Some(vs);
        v_tia_out[j] = Some(tia_output(xb.sense, vs).0);
    }
    Solved {
        v_word,
        v_bit,
        i_cell,
        v_internal,
        i_col,
        i_row,
        v_tia_out,
        v_tia_sense,
    }
}

impl Solved {
    /// The array outputs: TIA voltages where there is an amplifier, else column currents
    /// (0 for a column with neither).
    pub fn outputs(&self) -> Vec<f64> {
        self.i_col
            .iter()
            .zip(&self.v_tia_out)
            .map(|(i, v)| v.or(*i).unwrap_or(0.0))
            .collect()
    }
}
