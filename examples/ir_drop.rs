//! Library use in a few lines: the same 64×64 passive array solved by the crossbar engine and by
//! the general SPICE path, and the IR-drop error of every output against the ideal `Gᵀ·V`.
//!
//! cargo run --release --example ir_drop [-- R_WIRE_OHM]

use netc::solver::{self, AnalysisResult};
use netc::xbar::{Crossbar, Engine, SolveOptions};

fn main() -> anyhow::Result<()> {
    let r_wire_ohm: f64 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(2.5);
    let n = 64;
    // conductances in [10 µS, 100 µS] and inputs in [0, 0.2] V, deterministic
    let g: Vec<f64> = (0..n * n)
        .map(|k| 10e-6 + 90e-6 * ((k * 7919) % 1000) as f64 / 1000.0)
        .collect();
    let v: Vec<f64> = (0..n)
        .map(|i| 0.2 * ((i * 37) % 64) as f64 / 63.0)
        .collect();
    let xb = Crossbar::passive(n, n, g, r_wire_ohm)?;

    let mut engine = Engine::new(&xb, SolveOptions::default())?;
    let out = engine.infer(faer::Mat::from_fn(1, n, |_, i| v[i]).as_ref())?;
    let ideal = xb.ideal_currents(&v);

    // the same circuit through the netlist writer, the SPICE front end and the sparse MNA solver
    let netlist = netc::spice::parse_str(&xb.emit(&v)?, "ir_drop.cir")?;
    let res = solver::run(&netlist)?;
    let AnalysisResult::Op { values } = &res[0] else {
        anyhow::bail!("expected an operating point");
    };
    let spice_out: Vec<f64> = (0..n).map(|j| values[&format!("i(vs_{j})")]).collect();

    let mut worst_err = 0.0f64;
    let mut worst_agree = 0.0f64;
    for j in 0..n {
        worst_err = worst_err.max((out[(0, j)] - ideal[j]).abs() / ideal[j].abs());
        worst_agree = worst_agree.max((out[(0, j)] - spice_out[j]).abs() / spice_out[j].abs());
    }
    println!("{n}×{n} passive array, {r_wire_ohm} Ω segments");
    println!(
        "  worst IR-drop error of an output vs ideal Gᵀ·V: {:.2} %",
        100.0 * worst_err
    );
    println!("  crossbar engine vs general MNA solver: {worst_agree:.1e} relative");
    Ok(())
}
