//! `netc xbar --op set|reset|write-verify`: one cell or one column, through `crate::device::write`.

use std::path::Path;

use plotters::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

use super::xbar::{Op, XbarArgs};
use crate::device::write::{compliance_currents, gates_for_targets, set_netlist, write_verify};
use crate::device::{DeviceError, DeviceParams, DeviceSpec};
use crate::xbar::{CellKind, Crossbar};

#[derive(Debug, thiserror::Error)]
pub enum WriteCmdError {
    #[error(transparent)]
    Device(#[from] DeviceError),
    #[error("{0}")]
    Usage(String),
    #[error("{path}: {message}")]
    Io { path: String, message: String },
}

fn usage(m: impl Into<String>) -> WriteCmdError {
    WriteCmdError::Usage(m.into())
}

fn device(a: &XbarArgs) -> Result<DeviceSpec, WriteCmdError> {
    let w = a.window.clone().unwrap_or_else(|| vec![1e-6, 1e-4]);
    if w.len() != 2 || !(w[0] >= 0.0 && w[1] > w[0]) {
        return Err(usage("--window takes lo,hi with 0 ≤ lo < hi (S)"));
    }
    let mut d = DeviceSpec::ideal(w[0], w[1]);
    d.v_set_v = a.v_set.unwrap_or(2.5);
    d.v_m_v = a.v_m.unwrap_or(0.4);
    d.g_max_siemens = d.g_max_siemens.max(w[1]);
    d.validate()?;
    Ok(d)
}

/// Run a write op; returns the JSON report and the table.
pub fn run(a: &XbarArgs, xb: &Crossbar) -> Result<(Value, String), WriteCmdError> {
    let spec = device(a)?;
    let mut rng = ChaCha8Rng::seed_from_u64(a.seed);
    match a.op {
        Op::Set => set(a, xb, &spec),
        Op::Reset => {
            let (i, j) = at(a, xb)?;
            let p = DeviceParams::nominal(&spec);
            let before = xb.g(i, j);
            let after = spec.reset(&p, before);
            let json = json!({"op": "reset", "row": i, "col": j, "compliance_current_a": null,
                "g_before_siemens": before, "g_after_siemens": after, "pulses": 1,
                "reset_depth": spec.reset_depth});
            let table = format!(
                "RESET of cell ({i}, {j}): {before:.6e} S → {after:.6e} S (depth {})\n",
                spec.reset_depth
            );
            Ok((json, table))
        }
        Op::WriteVerify => {
            let (i, j) = at(a, xb)?;
            let target = a
                .target
                .ok_or_else(|| usage("--op write-verify needs --target G (S)"))?;
            let p = DeviceParams::nominal(&spec);
            let mut x = xb.clone();
            let before = x.g(i, j);
            let mut pulses = 0u32;
            let out = write_verify(&spec, &p, &mut x, i, j, target, &mut pulses, &mut rng)?;
            let json = json!({"op": "write-verify", "row": i, "col": j, "compliance_current_a": null,
                "g_before_siemens": before, "g_after_siemens": out.g_true_siemens,
                "g_read_siemens": out.g_read_siemens, "target_siemens": target,
                "pulses": out.pulses, "converged": out.converged, "error_rel": out.error_rel});
            let table = format!(
                "write-verify of cell ({i}, {j}) to {target:.4e} S: {} pulses, read {:.6e} S (true {:.6e} S), error {:.3} %, {}\n",
                out.pulses,
                out.g_read_siemens,
                out.g_true_siemens,
                100.0 * out.error_rel,
                if out.converged { "inside the window" } else { "FAILED (pulse limit)" }
            );
            Ok((json, table))
        }
        _ => Err(usage("not a write operation")),
    }
}

fn at(a: &XbarArgs, xb: &Crossbar) -> Result<(usize, usize), WriteCmdError> {
    match &a.at {
        Some(v) if v.len() == 2 && v[0] < xb.rows && v[1] < xb.cols => Ok((v[0], v[1])),
        Some(_) => Err(usage(format!(
            "--at i,j must name a cell of the {}×{} array",
            xb.rows, xb.cols
        ))),
        None => Err(usage("--at i,j selects the cell")),
    }
}

fn set(a: &XbarArgs, xb: &Crossbar, spec: &DeviceSpec) -> Result<(Value, String), WriteCmdError> {
    let gates_row = match &xb.cell {
        CellKind::OneT1R { v_gate_v, .. } => v_gate_v.clone(),
        _ => {
            return Err(usage(
                "--op set needs --cell 1t1r (a compliance-limited SET)",
            ))
        }
    };
    // one cell: only its row's gate is on; a column: every row with its own gate
    let (j, rows): (usize, Vec<usize>) = match (a.col, &a.at) {
        (Some(j), None) if j < xb.cols => (j, (0..xb.rows).collect()),
        (None, Some(_)) => {
            let (i, j) = at(a, xb)?;
            (j, vec![i])
        }
        _ => {
            return Err(usage(
                "--op set takes --at i,j (one cell) or --col j (a column)",
            ))
        }
    };
    let mut vg: Vec<f64> = (0..xb.rows)
        .map(|i| if rows.contains(&i) { gates_row[i] } else { 0.0 })
        .collect();
    if let Some(t) = a.target {
        let found = gates_for_targets(spec, xb, j, &vec![t; xb.rows])?;
        for &i in &rows {
            vg[i] = found[i];
        }
    }
    let i_cc = compliance_currents(xb, j, &vg, spec.v_set_v, spec.v_m_v)?;
    let p = DeviceParams::nominal(spec);
    let mut rng = ChaCha8Rng::seed_from_u64(a.seed);
    let before: Vec<f64> = rows.iter().map(|&i| xb.g(i, j)).collect();
    let after: Vec<f64> = rows
        .iter()
        .map(|&i| spec.set_from_compliance(&p, i_cc[i], vg[i], &mut rng))
        .collect();
    let icc: Vec<f64> = rows.iter().map(|&i| i_cc[i]).collect();
    let gates: Vec<f64> = rows.iter().map(|&i| vg[i]).collect();
    if let Some(path) = &a.emit {
        let text = set_netlist(xb, j, &vg, spec.v_set_v, spec.v_m_v)?;
        crate::mapping::write_atomic(path, text.as_bytes()).map_err(|e| WriteCmdError::Io {
            path: path.display().to_string(),
            message: e.to_string(),
        })?;
    }
    let mut plots = Vec::new();
    if let Some(dir) = &a.plot {
        let i = rows[0];
        let p = gate_curve(dir, xb, j, i, spec)?;
        plots.push(p.display().to_string());
    }
    let one = rows.len() == 1;
    let pick = |v: &Vec<f64>| if one { json!(v[0]) } else { json!(v) };
    let json = json!({"op": "set", "col": j, "rows": rows, "v_set_v": spec.v_set_v, "v_m_v": spec.v_m_v,
        "v_gate_v": pick(&gates), "compliance_current_a": pick(&icc),
        "g_before_siemens": pick(&before), "g_after_siemens": pick(&after), "pulses": 1,
        "law": "G = I_cc / V_m", "plots": plots});
    let mut table = format!(
        "compliance-limited SET, column {j}, V_SET {} V, V_m {} V (G = I_cc/V_m):\n  row   V_gate (V)   I_cc (A)       G before (S)   G after (S)\n",
        spec.v_set_v, spec.v_m_v
    );
    for (k, i) in rows.iter().enumerate() {
        table.push_str(&format!(
            "  {i:<5} {:<12.4} {:<14.6e} {:<14.6e} {:.6e}\n",
            gates[k], icc[k], before[k], after[k]
        ));
    }
    for p in &plots {
        table.push_str(&format!("wrote {p}\n"));
    }
    Ok((json, table))
}

/// G after SET against the gate voltage of cell (i, j) (S1 Fig. 1b), solved point by point.
fn gate_curve(
    dir: &Path,
    xb: &Crossbar,
    j: usize,
    i: usize,
    spec: &DeviceSpec,
) -> Result<std::path::PathBuf, WriteCmdError> {
    let io = |e: &dyn std::fmt::Display| WriteCmdError::Io {
        path: dir.display().to_string(),
        message: e.to_string(),
    };
    std::fs::create_dir_all(dir).map_err(|e| io(&e))?;
    let n = 41;
    let mut pts = Vec::with_capacity(n);
    for k in 0..n {
        let v =
            spec.v_gate_min_v + (spec.v_gate_max_v - spec.v_gate_min_v) * k as f64 / (n - 1) as f64;
        let mut vg = vec![0.0; xb.rows];
        vg[i] = v;
        let icc = compliance_currents(xb, j, &vg, spec.v_set_v, spec.v_m_v)?[i];
        pts.push((v, icc / spec.v_m_v * 1e6));
    }
    let path = dir.join(format!("set_g_vs_gate_{i}_{j}.png"));
    let gmax = pts.iter().map(|p| p.1).fold(1e-9, f64::max) * 1.05;
    let draw = |t: &Path| -> Result<(), Box<dyn std::error::Error>> {
        let area = BitMapBackend::new(t, (640, 480)).into_drawing_area();
        area.fill(&WHITE)?;
        let mut ch = ChartBuilder::on(&area)
            .caption(
                format!("cell ({i}, {j}): conductance after SET vs gate voltage"),
                ("sans-serif", 18),
            )
            .margin(10)
            .x_label_area_size(40)
            .y_label_area_size(55)
            .build_cartesian_2d(spec.v_gate_min_v..spec.v_gate_max_v, 0.0..gmax)?;
        ch.configure_mesh()
            .x_desc("gate voltage (V)")
            .y_desc("G = I_cc / V_m (µS)")
            .draw()?;
        ch.draw_series(LineSeries::new(pts.iter().copied(), &BLUE))?;
        ch.draw_series(pts.iter().map(|p| Circle::new(*p, 3, BLUE.filled())))?;
        area.present()?;
        Ok(())
    };
    crate::atomic::write_via(&path, draw).map_err(|e| io(&e))?;
    Ok(path)
}
