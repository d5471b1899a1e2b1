//! `netc xbar`: build an array from flags or a JSON spec, run inference, a single-cell read or a
//! programming pulse, and report (table or `--json`), write the netlist (`--emit`) and maps (`--plot`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use faer::Mat;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

use crate::xbar::ops::{is_linear, Scheme};
use crate::xbar::plot::{heatmap, Map};
use crate::xbar::spec::{parse_matrix, ArraySpec, TiaSpec};
use crate::xbar::{
    emit_with, program, read, select_bias, Crossbar, Engine, LinearMethod, NewtonOptions,
    PcgOptions, SenseKind, SolveOptions, Solved, Topology, XbarError,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Op {
    Infer,
    Read,
    Program,
    /// Compliance-limited SET of one 1T1R cell (`--at`) or a whole column (`--col`), solved.
    Set,
    /// RESET of one cell (the device law; full or partial).
    Reset,
    /// Closed-loop write-verify of one cell to `--target`, reads through the array.
    WriteVerify,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum SolverChoice {
    /// Conjugate gradients for inference on linear arrays of 512×512 cells and more (with
    /// nonzero wire resistance), sparse Cholesky otherwise.
    Auto,
    /// Sparse Cholesky (exact).
    Direct,
    /// Line-preconditioned conjugate gradients (linear arrays, nonzero wire resistances).
    Cg,
}

/// Solve a crossbar array: inference, single-cell read, programming pulse.
#[derive(Debug, Clone, clap::Args)]
pub struct XbarArgs {
    /// JSON array spec (fields: rows, cols, g | g_uniform | g_random, seed, rw, rw_word, rw_bit,
    /// r_driver, r_sense, cell, k, v_gate, mos, tia); flags override it.
    #[arg(long)]
    pub spec: Option<PathBuf>,
    #[arg(long)]
    pub rows: Option<usize>,
    #[arg(long)]
    pub cols: Option<usize>,
    /// Conductance matrix file (S): one row per line, comma or space separated.
    #[arg(long, conflicts_with_all = ["g_uniform", "g_random"])]
    pub g: Option<PathBuf>,
    /// Every cell at this conductance (S).
    #[arg(long, conflicts_with = "g_random")]
    pub g_uniform: Option<f64>,
    /// Conductances uniform in [lo, hi] (S), e.g. `1e-6,1e-4`.
    #[arg(long, value_delimiter = ',')]
    pub g_random: Option<Vec<f64>>,
    /// Seed for random conductances and input vectors.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Segment resistance of word and bit lines (Ω).
    #[arg(long)]
    pub rw: Option<f64>,
    #[arg(long)]
    pub rw_word: Option<f64>,
    #[arg(long)]
    pub rw_bit: Option<f64>,
    /// Driver output resistance (Ω).
    #[arg(long)]
    pub r_driver: Option<f64>,
    /// Sense input resistance (Ω).
    #[arg(long)]
    pub r_sense: Option<f64>,
    /// Cell kind: passive, sinh or 1t1r.
    #[arg(long)]
    pub cell: Option<String>,
    /// sinh nonlinearity k (1/V): I = g·sinh(k·V)/k.
    #[arg(long)]
    pub k: Option<f64>,
    /// 1T1R gate voltage: one value for all rows or one per row (comma separated).
    #[arg(long, value_delimiter = ',')]
    pub v_gate: Option<Vec<f64>>,
    /// Transimpedance sensing instead of ideal virtual grounds: gain,R_f,vsat.
    #[arg(long, value_delimiter = ',')]
    pub tia: Option<Vec<f64>>,

    #[arg(long, value_enum, default_value_t = Op::Infer)]
    pub op: Op,
    /// Inference inputs: file with one vector (R volts) per line.
    #[arg(long, conflicts_with_all = ["v_uniform", "v_random"])]
    pub inputs: Option<PathBuf>,
    /// Inference inputs: every row at this voltage.
    #[arg(long, conflicts_with = "v_random")]
    pub v_uniform: Option<f64>,
    /// Inference inputs: uniform in [lo, hi] V (default 0,0.5).
    #[arg(long, value_delimiter = ',')]
    pub v_random: Option<Vec<f64>>,
    /// Number of random input vectors.
    #[arg(long, default_value_t = 1)]
    pub vectors: usize,
    /// Selected cell for read/program: `i,j`.
    #[arg(long, value_delimiter = ',')]
    pub at: Option<Vec<usize>>,
    /// Read or programming voltage (V); defaults 0.2 (read) and 2.0 (program).
    #[arg(long)]
    pub v: Option<f64>,
    /// Unselected lines: floating, grounded, v/2, v/3 (defaults: grounded for read, v/2 for program).
    #[arg(long)]
    pub scheme: Option<String>,

    /// set / write-verify: target conductance (S).
    #[arg(long)]
    pub target: Option<f64>,
    /// set: program every cell of this column (each row with its own `--v-gate`).
    #[arg(long)]
    pub col: Option<usize>,
    /// set: top-electrode SET voltage (V, default 2.5) and switching voltage V_m (V, default 0.4).
    #[arg(long)]
    pub v_set: Option<f64>,
    #[arg(long)]
    pub v_m: Option<f64>,
    /// reset / write-verify: device window lo,hi (S; default 1e-6,1e-4).
    #[arg(long, value_delimiter = ',')]
    pub window: Option<Vec<f64>>,

    #[arg(long, value_enum, default_value_t = SolverChoice::Auto)]
    pub solver: SolverChoice,
    /// Relative residual tolerance of the iterative solver.
    #[arg(long, default_value_t = 1e-10)]
    pub tol: f64,
    #[arg(long, default_value_t = 20_000)]
    pub max_iter: usize,

    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
    /// Write the circuit (first input vector, or the read/program bias) as a netlist.
    #[arg(long)]
    pub emit: Option<PathBuf>,
    /// Write maps (PNG, and SVG for small arrays) into this directory.
    #[arg(long)]
    pub plot: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum XbarCmdError {
    #[error(transparent)]
    Xbar(#[from] XbarError),
    #[error("{0}")]
    Usage(String),
    #[error("{path}: {err}")]
    File { path: String, err: std::io::Error },
    #[error("writing output: {0}")]
    Io(#[from] std::io::Error),
}

fn read_file(p: &Path) -> Result<String, XbarCmdError> {
    std::fs::read_to_string(p).map_err(|err| XbarCmdError::File {
        path: p.display().to_string(),
        err,
    })
}

/// Write a file whole or not at all ([`crate::atomic::write`]).
fn write_atomic(p: &Path, text: &str) -> Result<(), XbarCmdError> {
    crate::atomic::write(p, text.as_bytes()).map_err(|err| XbarCmdError::File {
        path: p.display().to_string(),
        err,
    })
}

/// The array described by the spec file and flags.
pub fn build_array(a: &XbarArgs) -> Result<Crossbar, XbarCmdError> {
    // a malformed file is named in the message (the parsers only know line numbers)
    let named = |p: &Path| {
        let p = p.display().to_string();
        move |e: XbarError| XbarCmdError::Usage(format!("{p}: {e}"))
    };
    let base = match &a.spec {
        Some(p) => ArraySpec::from_json(&read_file(p)?).map_err(named(p))?,
        None => ArraySpec::default(),
    };
    let g = match &a.g {
        Some(p) => Some(parse_matrix(&read_file(p)?).map_err(named(p))?),
        None => None,
    };
    let over = ArraySpec {
        rows: a.rows,
        cols: a.cols,
        g,
        g_uniform: a.g_uniform,
        g_random: a.g_random.as_ref().map(|v| [v[0], v[1]]),
        seed: if a.spec.is_some() && a.seed == 0 {
            None
        } else {
            Some(a.seed)
        },
        rw: a.rw,
        rw_word: a.rw_word,
        rw_bit: a.rw_bit,
        r_driver: a.r_driver,
        r_sense: a.r_sense,
        cell: a.cell.clone(),
        k: a.k,
        v_gate: a.v_gate.clone(),
        mos: None,
        tia: a.tia.as_ref().map(|v| TiaSpec {
            gain: v[0],
            r_f: v[1],
            vsat: v[2],
        }),
    };
    Ok(base.merged(&over).build()?)
}

fn inputs(a: &XbarArgs, rows: usize) -> Result<Mat<f64>, XbarCmdError> {
    if let Some(p) = &a.inputs {
        let m = parse_matrix(&read_file(p)?)
            .map_err(|e| XbarCmdError::Usage(format!("{}: {e}", p.display())))?;
        if m.is_empty() || m.iter().any(|v| v.len() != rows) {
            return Err(XbarCmdError::Usage(format!(
                "{}: every input vector needs {rows} values",
                p.display()
            )));
        }
        if let Some((t, i)) = (0..m.len())
            .flat_map(|t| (0..rows).map(move |i| (t, i)))
            .find(|&(t, i)| !m[t][i].is_finite())
        {
            return Err(XbarCmdError::Usage(format!(
                "{}: input vector {} has a non-finite value ({}) at row {i}",
                p.display(),
                t + 1,
                m[t][i]
            )));
        }
        return Ok(Mat::from_fn(m.len(), rows, |t, i| m[t][i]));
    }
    if a.vectors == 0 {
        return Err(XbarCmdError::Usage("--vectors must be ≥ 1".into()));
    }
    if let Some(v) = a.v_uniform {
        if !v.is_finite() {
            return Err(XbarCmdError::Usage(format!(
                "--v-uniform must be finite, got {v}"
            )));
        }
        return Ok(Mat::from_fn(a.vectors, rows, |_, _| v));
    }
    let (lo, hi) = match &a.v_random {
        Some(v) => (v[0], v[1]),
        None => (0.0, 0.5),
    };
    if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
        return Err(XbarCmdError::Usage("--v-random needs lo ≤ hi".into()));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(a.seed.wrapping_add(1));
    Ok(Mat::from_fn(a.vectors, rows, |_, _| {
        if hi > lo {
            rng.gen_range(lo..hi)
        } else {
            lo
        }
    }))
}

fn options(a: &XbarArgs, xb: &Crossbar) -> SolveOptions {
    solve_options(a.op, a.solver, a.tol, a.max_iter, xb)
}

/// The solver options of an operation on `xb` for a solver choice (`auto`: CG for inference on
/// linear arrays of 512×512 cells and more with nonzero wire resistance, sparse Cholesky otherwise).
pub fn solve_options(
    op: Op,
    solver: SolverChoice,
    tol: f64,
    max_iter: usize,
    xb: &Crossbar,
) -> SolveOptions {
    let cg_suits = matches!(op, Op::Infer)
        && xb.cell.is_linear()
        && matches!(xb.sense, SenseKind::VirtualGround)
        && xb.r_word_ohm > 0.0
        && xb.r_bit_ohm > 0.0
        && xb.rows * xb.cols >= 512 * 512;
    let cg = PcgOptions {
        rel_tol: tol,
        max_iter,
    };
    SolveOptions {
        method: match solver {
            SolverChoice::Auto if cg_suits => LinearMethod::Iterative(cg),
            SolverChoice::Auto | SolverChoice::Direct => LinearMethod::Direct,
            SolverChoice::Cg => LinearMethod::Iterative(cg),
        },
        newton: NewtonOptions::default(),
        ..Default::default()
    }
}

/// Mean and max of |x| over a slice.
fn stats(v: &[f64]) -> (f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0);
    }
    let m = v.iter().fold(0.0f64, |m, x| m.max(x.abs()));
    (v.iter().map(|x| x.abs()).sum::<f64>() / v.len() as f64, m)
}

fn check_len(name: &str, v: &Option<Vec<impl Sized>>, n: usize) -> Result<(), XbarCmdError> {
    match v {
        Some(v) if v.len() != n => Err(XbarCmdError::Usage(format!(
            "--{name} takes {n} comma-separated values, got {}",
            v.len()
        ))),
        _ => Ok(()),
    }
}

/// The `--json` report of one run (what `netc sweep` collects metrics from).
pub fn report_json(a: &XbarArgs) -> Result<Value, XbarCmdError> {
    Ok(report(a)?.json)
}

fn report(a: &XbarArgs) -> Result<Report, XbarCmdError> {
    check_len("g-random", &a.g_random, 2)?;
    check_len("v-random", &a.v_random, 2)?;
    check_len("tia", &a.tia, 3)?;
    check_len("at", &a.at, 2)?;
    if !(a.tol > 0.0 && a.tol < 1.0) {
        return Err(XbarCmdError::Usage(format!(
            "--tol is a relative residual and must be in (0, 1), got {}",
            a.tol
        )));
    }
    let xb = build_array(a)?;
    let opts = options(a, &xb);
    // inputs from a file are already in memory: only random/uniform vectors are planned here
    let vectors = if a.inputs.is_some() { 1 } else { a.vectors };
    crate::xbar::budget::check(&xb, &opts, vectors)?;
    match a.op {
        Op::Infer => run_infer(a, &xb, &opts),
        Op::Read | Op::Program => run_cell_op(a, &xb, &opts),
        Op::Set | Op::Reset | Op::WriteVerify => {
            let (json, table) = super::xbar_write::run(a, &xb).map_err(|e| match e {
                super::xbar_write::WriteCmdError::Usage(m) => XbarCmdError::Usage(m),
                other => XbarCmdError::Usage(other.to_string()),
            })?;
            Ok(Report { json, table })
        }
    }
}

pub fn run(a: &XbarArgs) -> Result<(), XbarCmdError> {
    let report = report(a)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    if a.json {
        serde_json::to_writer(&mut out, &report.json).map_err(std::io::Error::from)?;
        writeln!(out)?;
    } else {
        out.write_all(report.table.as_bytes())?;
    }
    out.flush()?;
    Ok(())
}

struct Report {
    json: Value,
    table: String,
}

fn describe(xb: &Crossbar) -> Value {
    json!({
        "rows": xb.rows, "cols": xb.cols, "cell": xb.cell.name(),
        "r_word_ohm": xb.r_word_ohm, "r_bit_ohm": xb.r_bit_ohm,
        "r_driver_ohm": xb.r_driver_ohm, "r_sense_ohm": xb.r_sense_ohm,
        "sense": match xb.sense { SenseKind::VirtualGround => json!("virtual_ground"),
            SenseKind::Tia { gain, r_f_ohm, vsat_v } => json!({"tia": {"gain": gain, "r_f_ohm": r_f_ohm, "vsat_v": vsat_v}}) },
    })
}

fn run_infer(a: &XbarArgs, xb: &Crossbar, opts: &SolveOptions) -> Result<Report, XbarCmdError> {
    let x = inputs(a, xb.rows)?;
    let k = x.nrows();
    let (r, c) = (xb.rows, xb.cols);
    let t0 = Instant::now();
    let mut eng = Engine::new(xb, *opts)?;
    let out = eng.infer(x.as_ref())?;
    let solve_seconds = t0.elapsed().as_secs_f64();
    let (pcg_stats, newton_stats) = (eng.last_pcg(), eng.last_newton());
    let t_detail = Instant::now();
    let v0: Vec<f64> = (0..r).map(|i| x[(0, i)]).collect();
    let detail = eng.solve_detailed(&v0)?;
    let detail_seconds = t_detail.elapsed().as_secs_f64();
    // Ideal outputs: Gᵀ·V, through an ideal linear amplifier when the array has one.
    let (unit, amp) = match xb.sense {
        SenseKind::VirtualGround => ("A", None),
        SenseKind::Tia { r_f_ohm, .. } => ("V", Some(-r_f_ohm)),
    };
    let mut ideal = Mat::<f64>::zeros(k, c);
    let mut err_col = vec![0.0; c];
    let mut rel = Vec::with_capacity(k * c);
    let mut abs_max: f64 = 0.0;
    for t in 0..k {
        let v: Vec<f64> = (0..r).map(|i| x[(t, i)]).collect();
        let id = xb.ideal_currents(&v);
        for j in 0..c {
            let want = amp.map_or(id[j], |g| g * id[j]);
            ideal[(t, j)] = want;
            let e = out[(t, j)] - want;
            abs_max = abs_max.max(e.abs());
            let re = if want != 0.0 { e / want.abs() } else { 0.0 };
            rel.push(re);
            err_col[j] += re.abs() / k as f64;
        }
    }
    let (mean_rel, max_rel) = stats(&rel);
    // Per-cell current error for the first vector (against g·V_i), summarised by row.
    let cell_err: Vec<f64> = (0..r * c)
        .map(|kk| detail.i_cell[kk] - xb.g_siemens[kk] * v0[kk / c])
        .collect();
    let err_row: Vec<f64> = (0..r)
        .map(|i| {
            let s: f64 = (0..c).map(|j| cell_err[i * c + j]).sum();
            let id: f64 = (0..c).map(|j| xb.g(i, j) * v0[i]).sum();
            if id != 0.0 {
                s / id.abs()
            } else {
                0.0
            }
        })
        .collect();
    let mut plots = Vec::new();
    if let Some(dir) = &a.plot {
        let ir: Vec<f64> = (0..r * c)
            .map(|kk| v0[kk / c] - detail.v_word[kk])
            .collect();
        for (stem, title, unit_s, data) in [
            (
                "word_voltage",
                "word-line voltage (vector 0)",
                "V",
                &detail.v_word,
            ),
            (
                "bit_voltage",
                "bit-line voltage (vector 0)",
                "V",
                &detail.v_bit,
            ),
            (
                "word_ir_drop",
                "word-line IR drop V_in − V_word (vector 0)",
                "V",
                &ir,
            ),
            (
                "cell_current_error",
                "cell current − g·V_in (vector 0)",
                "A",
                &cell_err,
            ),
        ] {
            plots.extend(heatmap(
                dir,
                &Map {
                    stem,
                    title: title.into(),
                    unit: unit_s,
                    rows: r,
                    cols: c,
                    data,
                },
            )?);
        }
    }
    if let Some(p) = &a.emit {
        write_atomic(p, &xb.emit(&v0)?)?;
    }
    let solver = solver_name(xb, opts);
    let json = json!({
        "op": "infer", "array": describe(xb), "solver": solver, "vectors": k, "unit": unit,
        "solve_time_seconds": solve_seconds, "detail_time_seconds": detail_seconds,
        "outputs": rows_of(&out), "ideal": rows_of(&ideal),
        "error": {"max_abs": abs_max, "max_rel": max_rel, "mean_rel": mean_rel,
                  "by_column_mean_rel": err_col, "by_row_cell_current_rel": err_row},
        "pcg": pcg_stats.map(|s| json!({"iterations": s.iterations, "rel_residual": s.rel_residual})),
        "newton": newton_stats.map(|(sum, max)| json!({"iterations_total": sum, "iterations_max": max})),
        "tia_sense_v": detail.v_tia_sense, "plots": plots,
    });
    let mut t = String::new();
    use std::fmt::Write as _;
    let _ = writeln!(
        t,
        "netc xbar: {}×{} {} array, r_word {} Ω, r_bit {} Ω, r_driver {} Ω, r_sense {} Ω, {}",
        r,
        c,
        xb.cell.name(),
        xb.r_word_ohm,
        xb.r_bit_ohm,
        xb.r_driver_ohm,
        xb.r_sense_ohm,
        match xb.sense {
            SenseKind::VirtualGround => "virtual-ground sensing".to_string(),
            SenseKind::Tia {
                gain,
                r_f_ohm,
                vsat_v,
            } => format!("TIA A={gain} R_f={r_f_ohm} Ω vsat={vsat_v} V"),
        }
    );
    let _ = writeln!(
        t,
        "inference of {k} vector(s) with the {solver} solver in {solve_seconds:.4} s"
    );
    let _ = writeln!(
        t,
        "{:>6} {:>14} {:>14} {:>11}",
        "column",
        format!("ideal ({unit})"),
        format!("solved ({unit})"),
        "rel error"
    );
    let show = c.min(16);
    for j in 0..show {
        let e = if ideal[(0, j)] != 0.0 {
            (out[(0, j)] - ideal[(0, j)]) / ideal[(0, j)].abs()
        } else {
            0.0
        };
        let _ = writeln!(
            t,
            "{j:>6} {:>14.6e} {:>14.6e} {:>11.3e}",
            ideal[(0, j)],
            out[(0, j)],
            e
        );
    }
    if c > show {
        let _ = writeln!(t, "   … {} more columns (--json for all)", c - show);
    }
    let _ = writeln!(t, "error over all vectors: max |Δ| {abs_max:.3e} {unit}, max rel {max_rel:.3e}, mean rel {mean_rel:.3e}");
    let (cm, cx) = stats(&err_col);
    let (rm, rx) = stats(&err_row);
    let _ = writeln!(t, "by column (mean rel): mean {cm:.3e}, worst {cx:.3e}; by row (cell-current rel, vector 0): mean {rm:.3e}, worst {rx:.3e}");
    if let Some(s) = pcg_stats {
        let _ = writeln!(
            t,
            "CG: {} iterations, relative residual {:.2e}",
            s.iterations, s.rel_residual
        );
    }
    if let Some((sum, max)) = newton_stats {
        let _ = writeln!(
            t,
            "Newton: {sum} iterations in total, at most {max} per vector"
        );
    }
    if let Some(vs) = detail
        .v_tia_sense
        .iter()
        .flatten()
        .map(|v| v.abs())
        .reduce(f64::max)
    {
        let _ = writeln!(
            t,
            "largest amplifier input (virtual-ground error): {vs:.3e} V"
        );
    }
    for p in &plots {
        let _ = writeln!(t, "wrote {}", p.display());
    }
    Ok(Report { json, table: t })
}

fn solver_name(xb: &Crossbar, opts: &SolveOptions) -> &'static str {
    match (is_linear(xb), opts.method) {
        (true, LinearMethod::Direct) => "direct (sparse Cholesky)",
        (true, LinearMethod::Iterative(_)) => "iterative (line-preconditioned CG)",
        (false, _) => "Newton (per vector)",
    }
}

fn rows_of(m: &Mat<f64>) -> Vec<Vec<f64>> {
    (0..m.nrows())
        .map(|t| (0..m.ncols()).map(|j| m[(t, j)]).collect())
        .collect()
}

fn run_cell_op(a: &XbarArgs, xb: &Crossbar, opts: &SolveOptions) -> Result<Report, XbarCmdError> {
    let (i, j) = match &a.at {
        Some(v) => (v[0], v[1]),
        None => return Err(XbarCmdError::Usage("--at i,j selects the cell".into())),
    };
    let is_read = a.op == Op::Read;
    let scheme = match &a.scheme {
        Some(s) => Scheme::parse(s).ok_or_else(|| {
            XbarCmdError::Usage(format!(
                "unknown scheme '{s}' (floating, grounded, v/2, v/3)"
            ))
        })?,
        None if is_read => Scheme::Grounded,
        None => Scheme::Half,
    };
    let v = a.v.unwrap_or(if is_read { 0.2 } else { 2.0 });
    let direct = SolveOptions {
        method: LinearMethod::Direct,
        ..*opts
    };
    let t0 = Instant::now();
    let (json_res, solved, table): (Value, Solved, String) = if is_read {
        let (res, s) = read(xb, i, j, v, scheme, &direct)?;
        let table = format!(
            "read of cell ({i}, {j}) at {v} V, unselected lines {}:\n  measured {:.6e} A, cell {:.6e} A, sneak {:.6e} A (sneak fraction {:.4})\n  read conductance {:.6e} S, true {:.6e} S (isolated-cell current g·V = {:.6e} A)\n",
            scheme.label(), res.measured_a, res.cell_a, res.sneak_a, res.sneak_fraction,
            res.g_read_siemens, res.g_true_siemens, res.ideal_a
        );
        (
            serde_json::to_value(&res).map_err(std::io::Error::from)?,
            s,
            table,
        )
    } else {
        let (res, s) = program(xb, i, j, v, scheme, &direct)?;
        let table = format!(
            "programming pulse on cell ({i}, {j}) at {v} V, {} scheme:\n  selected cell sees {:.6} V; worst half-selected cell ({}, {}) sees {:.6} V (ratio {:.4})\n",
            scheme.label(), res.v_selected_v, res.disturb_cell.0, res.disturb_cell.1,
            res.v_disturb_max_v, res.disturb_ratio
        );
        (
            serde_json::to_value(&res).map_err(std::io::Error::from)?,
            s,
            table,
        )
    };
    let solve_seconds = t0.elapsed().as_secs_f64();
    let (r, c) = (xb.rows, xb.cols);
    let mut plots = Vec::new();
    if let Some(dir) = &a.plot {
        let v_cell: Vec<f64> = solved
            .v_word
            .iter()
            .zip(&solved.v_bit)
            .map(|(p, q)| p - q)
            .collect();
        let mut maps: Vec<(&str, String, &str, &Vec<f64>)> = vec![
            (
                "word_voltage",
                format!("word-line voltage ({})", a_op(is_read)),
                "V",
                &solved.v_word,
            ),
            (
                "bit_voltage",
                format!("bit-line voltage ({})", a_op(is_read)),
                "V",
                &solved.v_bit,
            ),
        ];
        if is_read {
            maps.push((
                "sneak_current",
                format!("cell currents during the read of ({i}, {j})"),
                "A",
                &solved.i_cell,
            ));
        } else {
            maps.push((
                "half_select_voltage",
                format!(
                    "voltage across cells, pulse on ({i}, {j}), {}",
                    scheme.label()
                ),
                "V",
                &v_cell,
            ));
        }
        for (stem, title, unit, data) in maps {
            plots.extend(heatmap(
                dir,
                &Map {
                    stem,
                    title,
                    unit,
                    rows: r,
                    cols: c,
                    data,
                },
            )?);
        }
        if is_read {
            // and the disturb map of the read bias too
            plots.extend(heatmap(
                dir,
                &Map {
                    stem: "read_cell_voltage",
                    title: "voltage across cells during the read".into(),
                    unit: "V",
                    rows: r,
                    cols: c,
                    data: &v_cell,
                },
            )?);
        }
    }
    if let Some(p) = &a.emit {
        let (topo, vr, vc): (Topology, Vec<f64>, Vec<f64>) = select_bias(xb, i, j, v, scheme);
        write_atomic(p, &emit_with(xb, &topo, &vr, &vc)?)?;
    }
    let mut json = json!({
        "op": if is_read { "read" } else { "program" }, "array": describe(xb),
        "solve_time_seconds": solve_seconds, "plots": plots,
    });
    json["result"] = json_res;
    let mut table = table;
    table.push_str(&format!("solved in {solve_seconds:.4} s\n"));
    for p in &plots {
        table.push_str(&format!("wrote {}\n", p.display()));
    }
    Ok(Report { json, table })
}

fn a_op(is_read: bool) -> &'static str {
    if is_read {
        "read"
    } else {
        "program"
    }
}
