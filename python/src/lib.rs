//! Python bindings of netc (`import netc`): numpy arrays in and out, netc's located error messages
//! as Python exceptions. Built by maturin from the repository's `pyproject.toml`; the Python package
//! `python/netc` re-exports this module (`netc._netc`) and carries the type stubs.
//!
//! Every function here is a thin layer over the library calls the CLI makes (`netc::cli::…`), so the
//! Python results are the CLI's (the pytest suite checks that against the built binary). Long calls
//! run with the interpreter detached (`Python::detach`), so other Python threads keep running.

use std::path::PathBuf;
use std::sync::Mutex;

use clap::Parser;
use faer::{MatMut, MatRef};
use numpy::{
    PyArray2, PyArrayDescrMethods, PyArrayDyn, PyArrayMethods, PyUntypedArray,
    PyUntypedArrayMethods,
};
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyTuple};

use netc::cli;
use netc::xbar::spec::{ArraySpec, MosSpec, TiaSpec};
use netc::xbar::{self, Engine, LinearMethod, Scheme, SolveOptions};

create_exception!(
    _netc,
    NetcError,
    PyException,
    "An error netc reports; the message is netc's own (with `file:line:col` and a caret where there is source text)."
);

/// The message `netc` prints for an error: the error and its sources, joined by ": ".
fn message(e: &dyn std::error::Error) -> String {
    let mut m = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let t = s.to_string();
        if !m.contains(&t) {
            m.push_str(": ");
            m.push_str(&t);
        }
        src = s.source();
    }
    m
}

fn netc_err(e: impl std::error::Error) -> PyErr {
    NetcError::new_err(message(&e))
}

/// A JSON value as Python objects (dicts, lists, floats, ints, strings, None) through the standard
/// `json` module, so floats come back exactly as the CLI prints them.
fn to_py(py: Python<'_>, v: &serde_json::Value) -> PyResult<Py<PyAny>> {
    let text = serde_json::to_string(v).map_err(netc_err)?;
    Ok(py.import("json")?.call_method1("loads", (text,))?.unbind())
}

/// `os.fspath(p)` as a path (str or os.PathLike).
fn fspath(p: &Bound<'_, PyAny>) -> PyResult<PathBuf> {
    let s = p.py().import("os")?.call_method1("fspath", (p,))?;
    s.extract::<PathBuf>()
        .map_err(|_| PyTypeError::new_err("expected a str or os.PathLike path"))
}

// ---------------------------------------------------------------------------------------------
// arrays

/// `obj` as a float64 numpy array of `ndims` dimensions (one of them), or a clear error.
fn float_array<'py>(
    obj: &Bound<'py, PyAny>,
    name: &str,
    ndims: &[usize],
    want: &str,
) -> PyResult<Bound<'py, PyArrayDyn<f64>>> {
    let Ok(arr) = obj.cast::<PyUntypedArray>() else {
        return Err(PyTypeError::new_err(format!(
            "{name} must be a numpy array of float64 {want}, got {} (use numpy.asarray({name}, dtype=numpy.float64))",
            obj.get_type().name()?
        )));
    };
    let dt = arr.dtype();
    if !dt.is_equiv_to(&numpy::dtype::<f64>(obj.py())) {
        return Err(PyTypeError::new_err(format!(
            "{name} must have dtype float64, got {} (use {name}.astype(numpy.float64))",
            dt.str()?
        )));
    }
    if !ndims.contains(&arr.ndim()) {
        return Err(PyValueError::new_err(format!(
            "{name} must be {want}, got shape {:?}",
            arr.shape()
        )));
    }
    Ok(arr.cast::<PyArrayDyn<f64>>()?.clone())
}

/// The elements of a float64 array in row-major order: the array's own memory when it is
/// C-contiguous (no copy), else a row-major copy.
enum RowMajor<'a> {
    Borrowed(&'a [f64]),
    Owned(Vec<f64>),
}

impl RowMajor<'_> {
    fn slice(&self) -> &[f64] {
        match self {
            RowMajor::Borrowed(s) => s,
            RowMajor::Owned(v) => v,
        }
    }
}

fn row_major<'a>(a: &'a numpy::PyReadonlyArrayDyn<'_, f64>) -> RowMajor<'a> {
    if a.is_c_contiguous() {
        if let Ok(s) = a.as_slice() {
            return RowMajor::Borrowed(s);
        }
    }
    RowMajor::Owned(a.as_array().iter().copied().collect())
}

fn f64_matrix<'py>(
    py: Python<'py>,
    rows: usize,
    cols: usize,
    at: impl Fn(usize, usize) -> f64,
) -> Bound<'py, PyArray2<f64>> {
    let out = PyArray2::<f64>::zeros(py, [rows, cols], false);
    {
        let mut w = out.readwrite();
        let mut v = w.as_array_mut();
        for ((i, j), x) in v.indexed_iter_mut() {
            *x = at(i, j);
        }
    }
    out
}

// ---------------------------------------------------------------------------------------------
// solve

/// Solve a netlist's analyses (`.op`, `.dc`); returns what `netc solve --json` prints.
///
/// `source` is a path (str or os.PathLike) or, when it is a str holding a newline, the netlist text
/// itself (its first line is the title). Front-end warnings become Python warnings (`UserWarning`).
#[pyfunction]
#[pyo3(signature = (source, /))]
fn solve(py: Python<'_>, source: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
    let text: Option<String> = match source.extract::<String>() {
        Ok(s) if s.contains('\n') => Some(s),
        _ => None,
    };
    let path = match &text {
        Some(_) => None,
        None => Some(fspath(source)?),
    };
    let solved = py.detach(|| {
        let src = match (&text, &path) {
            (Some(t), _) => cli::solve::Source::Text {
                text: t,
                name: "<string>",
            },
            (None, Some(p)) => cli::solve::Source::File(p),
            (None, None) => unreachable!("a path or a text"),
        };
        let netlist = cli::solve::parse(src).map_err(|e| message(&e))?;
        let results = netc::solver::run(&netlist).map_err(|e| message(&e))?;
        Ok::<_, String>((netlist.warnings, netc::solver::to_json(&results)))
    });
    let (warnings, json) = solved.map_err(NetcError::new_err)?;
    let warn = py.import("warnings")?;
    for w in warnings {
        warn.call_method1("warn", (w,))?;
    }
    to_py(py, &json)
}

// ---------------------------------------------------------------------------------------------
// compile, train, evaluate

/// Map a `.net` network onto crossbar arrays; returns what `mapping.json` holds (the mapping
/// report under "report", the network, hardware, lowering, encoders, …).
///
/// Without `out` nothing is written (and "netlists" is empty); with `out` the report, floorplan and
/// netlists are written there as `netc compile NET -o OUT` does. `weights`: a `netc-weights/1`
/// file (default: the seeded initialisation); `whole`: also write the whole-network circuit.
#[pyfunction]
#[pyo3(signature = (net_path, *, weights=None, out=None, whole=false))]
fn compile(
    py: Python<'_>,
    net_path: &Bound<'_, PyAny>,
    weights: Option<&Bound<'_, PyAny>>,
    out: Option<&Bound<'_, PyAny>>,
    whole: bool,
) -> PyResult<Py<PyAny>> {
    let net = fspath(net_path)?;
    let weights = weights.map(fspath).transpose()?;
    let out = out.map(fspath).transpose()?;
    if whole && out.is_none() {
        return Err(PyValueError::new_err(
            "whole=True writes network.cir: give out=DIR",
        ));
    }
    let json = py
        .detach(|| match out {
            None => cli::compile::mapping_in_memory(&net, weights.as_deref()),
            Some(out) => {
                let args = cli::compile::CompileArgs {
                    net: net.clone(),
                    out: Some(out),
                    weights,
                    whole,
                    quiet: true,
                };
                let c = cli::compile::compile(&args)?;
                cli::compile::mapping_json(
                    &c.file,
                    &c.ir,
                    &c.lowering,
                    &c.report,
                    &c.programmed,
                    &c.netlists,
                )
            }
        })
        .map_err(netc_err)?;
    to_py(py, &json)
}

/// Keyword options as command-line flags: `epochs=2` → `--epochs 2`, `limit_test=100` →
/// `--limit-test 100`, `True` → a bare flag, `False`/`None` → nothing, sequences comma-joined.
fn flags(options: Option<&Bound<'_, PyDict>>, argv: &mut Vec<String>) -> PyResult<()> {
    let Some(options) = options else {
        return Ok(());
    };
    for (k, v) in options.iter() {
        let key: String = k.extract()?;
        let flag = format!("--{}", key.replace('_', "-"));
        if v.is_none() {
            continue;
        }
        if let Ok(b) = v.cast::<pyo3::types::PyBool>() {
            if b.is_true() {
                argv.push(flag);
            }
            continue;
        }
        let value = if v.cast::<PyList>().is_ok() || v.cast::<PyTuple>().is_ok() {
            let parts: Vec<String> = v
                .try_iter()?
                .map(|x| x.and_then(|x| x.str().map(|s| s.to_string())))
                .collect::<PyResult<_>>()?;
            parts.join(",")
        } else if let Ok(p) = fspath(&v) {
            p.to_string_lossy().into_owned()
        } else {
            v.str()?.to_string()
        };
        argv.push(flag);
        argv.push(value);
    }
    Ok(())
}

#[derive(Parser)]
#[command(name = "netc.train", no_binary_name = true, disable_help_flag = true)]
struct TrainCmd {
    #[command(flatten)]
    args: cli::train::Args,
}

#[derive(Parser)]
#[command(
    name = "netc.evaluate",
    no_binary_name = true,
    disable_help_flag = true
)]
struct EvalCmd {
    #[command(flatten)]
    args: cli::eval::Args,
}

/// Parse options the way the CLI does (same names, defaults and checks); a bad option is a
/// `ValueError` with clap's message.
fn parse_cmd<T: Parser>(argv: Vec<String>) -> PyResult<T> {
    T::try_parse_from(argv)
        .map_err(|e| PyValueError::new_err(e.render().to_string().trim().to_string()))
}

fn net_argv(net_path: Option<&Bound<'_, PyAny>>) -> PyResult<Vec<String>> {
    Ok(match net_path {
        Some(p) => vec![fspath(p)?.to_string_lossy().into_owned()],
        None => vec![],
    })
}

/// Train a network as `netc train` does (options are its flags as keywords: `preset`, `backend`,
/// `epochs`, `seed`, `batch_size`, `lr`, `lr_decay`, `out`, `resume`, `data_dir`, `limit_train`,
/// `limit_test`, `g_min`, `g_max`, `levels`, `rw`, `exact_nonlinear`, `quiet`; `quiet` defaults to
/// True here). Writes `model.json`, `metrics.json`, … into `out` (default `runs/<name>`) and
/// returns {"network", "finished", "metrics": [per epoch], "out_dir", "model", "compiler_weights"}.
#[pyfunction]
#[pyo3(signature = (net_path=None, **options))]
fn train(
    py: Python<'_>,
    net_path: Option<&Bound<'_, PyAny>>,
    options: Option<&Bound<'_, PyDict>>,
) -> PyResult<Py<PyAny>> {
    let mut argv = net_argv(net_path)?;
    let quiet_given = options.is_some_and(|o| o.contains("quiet").unwrap_or(false));
    flags(options, &mut argv)?;
    if !quiet_given {
        argv.push("--quiet".into());
    }
    let cmd: TrainCmd = parse_cmd(argv)?;
    let t = py
        .detach(|| cli::train::train_net(&cmd.args))
        .map_err(netc_err)?;
    let json = serde_json::json!({
        "network": t.name,
        "finished": t.report.finished,
        "metrics": t.report.metrics,
        "out_dir": t.out_dir,
        "model": t.out_dir.join(netc::nn::train::MODEL_FILE),
        "compiler_weights": t.compiler_weights,
    });
    to_py(py, &json)
}

/// Evaluate trained weights (`model.json` of `train`) with one backend ("ideal", "encoded" or
/// "circuit"), as `netc eval NET --weights W --backend B` does; other options are its flags as
/// keywords (`preset`, `data_dir`, `limit_test`, `g_min`, `g_max`, `levels`, `rw`,
/// `exact_nonlinear`). Returns that backend's entry of `eval.json`: {"backend", "accuracy",
/// "loss", "samples", "confusion"}. Nothing is written unless `out` is given (then `eval.json` and
/// the confusion matrices go there).
#[pyfunction]
#[pyo3(signature = (net_path=None, *, weights, backend="ideal", out=None, **options))]
fn evaluate(
    py: Python<'_>,
    net_path: Option<&Bound<'_, PyAny>>,
    weights: &Bound<'_, PyAny>,
    backend: &str,
    out: Option<&Bound<'_, PyAny>>,
    options: Option<&Bound<'_, PyDict>>,
) -> PyResult<Py<PyAny>> {
    let mut argv = net_argv(net_path)?;
    argv.push("--weights".into());
    argv.push(fspath(weights)?.to_string_lossy().into_owned());
    argv.push("--backend".into());
    argv.push(backend.into());
    flags(options, &mut argv)?;
    let out = out.map(fspath).transpose()?;
    let cmd: EvalCmd = parse_cmd(argv)?;
    if !cmd.args.compare.is_empty() {
        return Err(PyValueError::new_err(
            "evaluate takes one backend; call it once per backend to compare",
        ));
    }
    let kinds = [cmd.args.backend];
    let e = py
        .detach(|| cli::eval::evaluate_net(&cmd.args, &kinds, out.as_deref()))
        .map_err(netc_err)?;
    let (name, r) = &e.results[0];
    to_py(py, &cli::eval::summary(name, r))
}

// ---------------------------------------------------------------------------------------------
// Crossbar

/// A crossbar array solved at circuit level (see `Crossbar.__init__` in the stubs for the
/// parameters).
#[pyclass(module = "netc._netc", name = "Crossbar")]
struct PyCrossbar {
    xb: xbar::Crossbar,
    /// The engine (factors, effective weights) behind a lock: calls run detached from the
    /// interpreter, and a second thread's call waits here, not on a Python-level borrow error.
    engine: Mutex<Engine>,
    opts: SolveOptions,
    // `.program(i, j, …)` (device programming models) belongs here once the device issue lands.
}

fn lock(m: &Mutex<Engine>) -> std::sync::MutexGuard<'_, Engine> {
    // a panic inside a solve leaves no half-updated state the next call relies on
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn gate_voltages(v: &Bound<'_, PyAny>) -> PyResult<Vec<f64>> {
    if let Ok(x) = v.extract::<f64>() {
        return Ok(vec![x]);
    }
    v.extract::<Vec<f64>>().map_err(|_| {
        PyTypeError::new_err("v_gate must be a float or a sequence of floats (one per row)")
    })
}

#[pymethods]
impl PyCrossbar {
    #[new]
    #[pyo3(signature = (g, *, r_wire=0.0, r_word=None, r_bit=None, r_driver=0.0, r_sense=0.0,
        cell="passive", k=2.0, v_gate=None, mos=None, tia=None, solver="auto", tol=1e-10,
        max_iter=20000))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        g: &Bound<'_, PyAny>,
        r_wire: f64,
        r_word: Option<f64>,
        r_bit: Option<f64>,
        r_driver: f64,
        r_sense: f64,
        cell: &str,
        k: f64,
        v_gate: Option<&Bound<'_, PyAny>>,
        mos: Option<&Bound<'_, PyDict>>,
        tia: Option<(f64, f64, f64)>,
        solver: &str,
        tol: f64,
        max_iter: usize,
    ) -> PyResult<Self> {
        let ga = float_array(g, "g", &[2], "2-D (rows, cols)")?;
        let (rows, cols) = {
            let s = ga.shape();
            (s[0], s[1])
        };
        let gro = ga.try_readonly()?;
        let g_siemens = row_major(&gro).slice().to_vec();
        drop(gro);
        let mos = match mos {
            None => None,
            Some(d) => {
                let text: String = py.import("json")?.call_method1("dumps", (d,))?.extract()?;
                Some(
                    serde_json::from_str::<MosSpec>(&text)
                        .map_err(|e| PyValueError::new_err(format!("mos: {e}")))?,
                )
            }
        };
        let spec = ArraySpec {
            rw: Some(r_wire),
            rw_word: r_word,
            rw_bit: r_bit,
            r_driver: Some(r_driver),
            r_sense: Some(r_sense),
            cell: Some(cell.to_string()),
            k: Some(k),
            v_gate: v_gate.map(gate_voltages).transpose()?,
            mos,
            tia: tia.map(|(gain, r_f, vsat)| TiaSpec { gain, r_f, vsat }),
            ..Default::default()
        };
        let choice = match solver {
            "auto" => cli::xbar::SolverChoice::Auto,
            "direct" => cli::xbar::SolverChoice::Direct,
            "cg" => cli::xbar::SolverChoice::Cg,
            other => {
                return Err(PyValueError::new_err(format!(
                    "unknown solver {other:?} (auto, direct, cg)"
                )))
            }
        };
        let xb = spec.build_with(rows, cols, g_siemens).map_err(netc_err)?;
        let opts = cli::xbar::solve_options(cli::xbar::Op::Infer, choice, tol, max_iter, &xb);
        let engine = py.detach(|| Engine::new(&xb, opts)).map_err(netc_err)?;
        Ok(PyCrossbar {
            xb,
            engine: Mutex::new(engine),
            opts,
        })
    }

    /// Number of rows (word lines, inputs).
    #[getter]
    fn rows(&self) -> usize {
        self.xb.rows
    }

    /// Number of columns (bit lines, outputs).
    #[getter]
    fn cols(&self) -> usize {
        self.xb.cols
    }

    /// (rows, cols).
    #[getter]
    fn shape(&self) -> (usize, usize) {
        (self.xb.rows, self.xb.cols)
    }

    /// The cell kind: "passive", "sinh" or "1t1r".
    #[getter]
    fn cell(&self) -> &'static str {
        self.xb.cell.name()
    }

    /// The cell conductances (S), a (rows, cols) copy.
    #[getter]
    fn g<'py>(&self, py: Python<'py>) -> Bound<'py, PyArray2<f64>> {
        let c = self.xb.cols;
        f64_matrix(py, self.xb.rows, c, |i, j| self.xb.g_siemens[i * c + j])
    }

    fn __repr__(&self) -> String {
        format!(
            "Crossbar({}×{} {}, r_word={} Ω, r_bit={} Ω)",
            self.xb.rows,
            self.xb.cols,
            self.xb.cell.name(),
            self.xb.r_word_ohm,
            self.xb.r_bit_ohm
        )
    }

    /// Outputs for a batch of input vectors: `v` (n, rows) volts → (n, cols) (amperes into the
    /// virtual grounds, or volts of the amplifiers); a 1-D `v` (rows,) gives (cols,). `out`: an
    /// (n, cols) C-contiguous float64 array to write into (returned).
    #[pyo3(signature = (v, *, out=None))]
    fn infer<'py>(
        &self,
        py: Python<'py>,
        v: &Bound<'py, PyAny>,
        out: Option<Bound<'py, PyArray2<f64>>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let (r, c) = (self.xb.rows, self.xb.cols);
        let va = float_array(v, "v", &[1, 2], "(n, rows) or (rows,)")?;
        let one = va.ndim() == 1;
        let n = if one { 1 } else { va.shape()[0] };
        let width = va.shape()[va.ndim() - 1];
        if width != r {
            return Err(PyValueError::new_err(format!(
                "v must have {r} values per vector (the array's rows), got shape {:?}",
                va.shape()
            )));
        }
        let out = match out {
            Some(o) => {
                if one || o.shape() != [n, c] || !o.is_c_contiguous() {
                    return Err(PyValueError::new_err(format!(
                        "out must be a C-contiguous float64 array of shape ({n}, {c}), got shape {:?}",
                        o.shape()
                    )));
                }
                o
            }
            None => PyArray2::<f64>::zeros(py, [n, c], false),
        };
        {
            let vro = va.try_readonly()?;
            let x = row_major(&vro);
            let mut w = out.try_readwrite()?;
            let dst = w
                .as_slice_mut()
                .map_err(|e| PyValueError::new_err(format!("out: {e}")))?;
            let xs = x.slice();
            py.detach(|| {
                let xm = MatRef::from_row_major_slice(xs, n, r);
                let om = MatMut::from_row_major_slice_mut(dst, n, c);
                lock(&self.engine).infer_into(xm, om)
            })
            .map_err(netc_err)?;
        }
        if one {
            return Ok(out.reshape([c])?.into_any());
        }
        Ok(out.into_any())
    }

    /// The exact effective weight matrix `T` (rows, cols): outputs are `v @ T` (linear cells with
    /// virtual-ground sensing only; with ideal wires `T` is `g`).
    fn effective_weights<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyArray2<f64>>> {
        let t = py
            .detach(|| lock(&self.engine).effective_weights().cloned())
            .map_err(netc_err)?;
        Ok(f64_matrix(py, t.nrows(), t.ncols(), |i, j| t[(i, j)]))
    }

    /// Read cell (i, j): `v` volts on its row, its column sensed at 0 V, the other lines per
    /// `scheme` ("floating", "grounded", "v/2", "v/3"); returns what `netc xbar --op read --json`
    /// reports under "result" (measured, cell and sneak currents, read and true conductance).
    #[pyo3(signature = (i, j, *, scheme="grounded", v=0.2))]
    fn read(
        &self,
        py: Python<'_>,
        i: usize,
        j: usize,
        scheme: &str,
        v: f64,
    ) -> PyResult<Py<PyAny>> {
        let scheme = Scheme::parse(scheme).ok_or_else(|| {
            PyValueError::new_err(format!(
                "unknown scheme {scheme:?} (floating, grounded, v/2, v/3)"
            ))
        })?;
        // as `netc xbar --op read`: a single operating point, solved directly
        let opts = SolveOptions {
            method: LinearMethod::Direct,
            ..self.opts
        };
        let res = py
            .detach(|| xbar::read(&self.xb, i, j, v, scheme, &opts))
            .map_err(netc_err)?
            .0;
        let json = serde_json::to_value(&res).map_err(netc_err)?;
        to_py(py, &json)
    }

    /// A new conductance state `g` (rows, cols) of the same array: the network and its analysis
    /// are kept, only the numeric factor (and `T`) are redone.
    fn set_conductances(&mut self, py: Python<'_>, g: &Bound<'_, PyAny>) -> PyResult<()> {
        let ga = float_array(g, "g", &[2], "2-D (rows, cols)")?;
        if ga.shape() != [self.xb.rows, self.xb.cols] {
            return Err(PyValueError::new_err(format!(
                "g must have shape ({}, {}), got {:?}",
                self.xb.rows,
                self.xb.cols,
                ga.shape()
            )));
        }
        let gro = ga.try_readonly()?;
        let g_siemens = row_major(&gro).slice().to_vec();
        drop(gro);
        let engine = &self.engine;
        py.detach(|| lock(engine).set_conductances(&g_siemens))
            .map_err(netc_err)?;
        self.xb.g_siemens = g_siemens;
        Ok(())
    }
}

#[pymodule]
fn _netc(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("NetcError", m.py().get_type::<NetcError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(solve, m)?)?;
    m.add_function(wrap_pyfunction!(compile, m)?)?;
    m.add_function(wrap_pyfunction!(train, m)?)?;
    m.add_function(wrap_pyfunction!(evaluate, m)?)?;
    m.add_class::<PyCrossbar>()?;
    Ok(())
}
