//! Solvers for the nodal equations: sparse LU with the symbolic analysis reused, Newton–Raphson
//! with ngspice's convergence test and device limiting, gmin stepping and source stepping as
//! fallbacks, and the `.op` / `.dc` analyses.

pub mod lu;
pub mod spd;

use std::collections::BTreeMap;

use crate::circuit::{Circuit, CircuitError, SourceRef};
use crate::netlist::{Analysis, Netlist};
use crate::span::Span;
use lu::{LuError, SparseLu};

#[derive(Debug, thiserror::Error)]
pub enum SolveError {
    #[error(transparent)]
    Circuit(#[from] CircuitError),
    #[error(transparent)]
    Lu(#[from] LuError),
    #[error("Newton–Raphson did not converge after {iterations} iterations (also tried gmin and source stepping): worst unknown {worst} (last update {update_v:e}, KCL residual there {residual:e})")]
    NonConvergence {
        worst: String,
        update_v: f64,
        residual: f64,
        iterations: usize,
    },
    #[error("the solution is not finite at {unknown}: the matrix is numerically singular (check for nodes held only by current sources or ideal controlled sources)")]
    NonFinite { unknown: String },
    #[error("{}", span.render(&format!(".dc: `{name}` is not an independent voltage or current source")))]
    SweepSource { name: String, span: Span },
    #[error("{}", span.render(&format!(".dc: bad sweep ({msg})")))]
    SweepRange { msg: String, span: Span },
    #[error("{}", span.render(&format!(".dc: {source}")))]
    TooLarge {
        source: crate::limits::LimitError,
        span: Span,
    },
}

/// Memory planned per stored value of a sweep result: the solution entry, the named entry of
/// the output map and its JSON/CSV rendering (order of magnitude, rounded up).
pub const BYTES_PER_SWEEP_VALUE: u128 = 256;

/// Newton statistics of the last solve.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct SolveStats {
    pub iterations: usize,
    pub factorizations: usize,
}

/// Owns the numeric workspace of one circuit; nothing is allocated per Newton iteration.
pub struct Solver {
    pub circuit: Circuit,
    /// The LU of the whole system, analysed when first needed (linear circuits solved by
    /// [`spd::Reduced`] never need it).
    lu: Option<SparseLu>,
    /// Linear circuits of resistors and grounded sources: the factored reduced system.
    reduced: Option<spd::Reduced>,
    lin: Vec<f64>,
    vals: Vec<f64>,
    rhs: Vec<f64>,
    /// Linear circuits: the matrix is factored once.
    linear_factored: bool,
    /// Print every Newton iteration to stderr (`NETC_TRACE` set).
    trace: bool,
    pub stats: SolveStats,
}

impl Solver {
    pub fn new(circuit: Circuit) -> Result<Solver, SolveError> {
        let nnz = circuit.pattern.nnz();
        let mut lin = vec![0.0; nnz + 1];
        circuit.stamp_linear(&mut lin);
        // Nonlinear circuits factor the whole system from the first iteration on.
        let lu = if circuit.is_linear() {
            None
        } else {
            Some(SparseLu::new(&circuit.pattern)?)
        };
        Ok(Solver {
            lu,
            reduced: None,
            vals: lin.clone(),
            lin,
            rhs: vec![0.0; circuit.n + 1],
            linear_factored: false,
            trace: std::env::var_os("NETC_TRACE").is_some(),
            stats: SolveStats::default(),
            circuit,
        })
    }

    fn check_finite(&self, x: &[f64]) -> Result<(), SolveError> {
        if let Some(i) = x[..self.circuit.n].iter().position(|v| !v.is_finite()) {
            return Err(SolveError::NonFinite {
                unknown: self.circuit.unknown_name(i),
            });
        }
        Ok(())
    }

    /// The LU of the whole system (symbolic analysis on first use).
    fn lu(&mut self) -> Result<&mut SparseLu, SolveError> {
        if self.lu.is_none() {
            self.lu = Some(SparseLu::new(&self.circuit.pattern)?);
        }
        Ok(self.lu.as_mut().expect("set above"))
    }

    /// Solve a linear circuit (matrix factored once for all right-hand sides): the reduced
    /// symmetric system when the circuit allows it ([`spd`]), else the LU of the whole system.
    fn solve_linear(&mut self) -> Result<Vec<f64>, SolveError> {
        if !self.linear_factored {
            self.reduced = spd::Reduced::new(&self.circuit, &self.lin);
            if self.reduced.is_none() {
                let lin = std::mem::take(&mut self.lin);
                let factored = self.lu().and_then(|lu| Ok(lu.factor(&lin)?));
                self.lin = lin;
                factored?;
            }
            self.stats.factorizations += 1;
            self.linear_factored = true;
        }
        let mut x = vec![0.0; self.circuit.n + 1];
        self.circuit.stamp_sources(&mut x, 1.0);
        match &mut self.reduced {
            Some(r) => {
                let rhs = x.clone();
                r.solve(&rhs, &mut x);
            }
            None => self.lu()?.solve_vec(&mut x),
        }
        x[self.circuit.n] = 0.0;
        self.check_finite(&x)?;
        Ok(x)
    }

    /// Operating point from initial guess `x0` (len n + 1), with fallbacks.
    pub fn solve_from(&mut self, x0: &[f64], itl: usize) -> Result<Vec<f64>, SolveError> {
        if self.circuit.is_linear() {
            return self.solve_linear();
        }
        self.circuit.reset_limiting();
        let first = match self.newton(x0, 1.0, 0.0, itl) {
            Ok(x) => return Ok(x),
            Err(e) => e,
        };
        // gmin stepping: a conductance from every node to ground, relaxed decade by decade.
        let mut x = x0.to_vec();
        let mut ok = true;
        let mut g = 1e-2;
        while g > self.circuit.options.gmin_siemens * 0.5 {
            self.circuit.reset_limiting();
            match self.newton(&x, 1.0, g, itl.max(100)) {
                Ok(xn) => x = xn,
                Err(_) => {
                    ok = false;
                    break;
                }
            }
            g /= 10.0;
        }
        if ok {
            self.circuit.reset_limiting();
            if let Ok(xn) = self.newton(&x, 1.0, 0.0, itl.max(100)) {
                return Ok(xn);
            }
        }
        // Source stepping: ramp every independent source from 0 to its value.
        let mut x = vec![0.0; self.circuit.n + 1];
        let mut scale: f64 = 0.0;
        let mut step: f64 = 0.1;
        while scale < 1.0 {
            let next = (scale + step).min(1.0);
            self.circuit.reset_limiting();
            match self.newton(&x, next, 0.0, itl.max(100)) {
                Ok(xn) => {
                    x = xn;
                    scale = next;
                    step = (step * 1.5).min(0.5);
                }
                Err(_) => {
                    step /= 4.0;
                    if step < 1e-6 {
                        return Err(first);
                    }
                }
            }
        }
        Ok(x)
    }

    /// Matrix values and right-hand side of the true (unlimited) equations linearised at `x`.
    fn stamp_at(&mut self, x: &[f64]) {
        self.vals.copy_from_slice(&self.lin);
        self.circuit.stamp_sources(&mut self.rhs, 1.0);
        self.circuit.reset_limiting();
        self.circuit
            .stamp_nonlinear(x, &mut self.vals, &mut self.rhs, false);
    }

    /// The Jacobian of the nodal equations at `x` as a dense matrix (row-major, n × n): the
    /// companion-model matrix every device stamps. For tests and diagnostics of small circuits.
    pub fn jacobian_dense(&mut self, x: &[f64]) -> Vec<f64> {
        let n = self.circuit.n;
        self.stamp_at(x);
        let p = &self.circuit.pattern;
        let mut j = vec![0.0; n * n];
        for c in 0..n {
            for k in p.col_ptr[c]..p.col_ptr[c + 1] {
                j[p.row_idx[k] * n + c] += self.vals[k];
            }
        }
        j
    }

    /// KCL residual F(x) of the true (unlimited) equations; returns it per unknown.
    pub fn residual(&mut self, x: &[f64]) -> Vec<f64> {
        let n = self.circuit.n;
        self.stamp_at(x);
        let p = &self.circuit.pattern;
        let mut r: Vec<f64> = self.rhs[..n].iter().map(|b| -b).collect();
        for (c, &xc) in x.iter().enumerate().take(n) {
            for k in p.col_ptr[c]..p.col_ptr[c + 1] {
                r[p.row_idx[k]] += self.vals[k] * xc;
            }
        }
        r
    }

    /// Plain Newton–Raphson with ngspice's convergence test.
    fn newton(
        &mut self,
        x0: &[f64],
        scale: f64,
        gdiag: f64,
        itl: usize,
    ) -> Result<Vec<f64>, SolveError> {
        let n = self.circuit.n;
        let nn = self.circuit.n_nodes;
        let o = self.circuit.options.clone();
        let mut x = x0.to_vec();
        x[n] = 0.0;
        let mut xn = vec![0.0; n + 1];
        let mut worst = (0usize, 0.0f64, 0.0f64);
        // After ngspice's test passes, one more (cheap, quadratically convergent) iteration is taken
        // unless the last update was already negligible, so that answers are exact to ~1e-12.
        let mut polishing = false;
        for it in 0..itl {
            self.vals.copy_from_slice(&self.lin);
            if gdiag > 0.0 {
                self.circuit.stamp_diag(&mut self.vals, gdiag);
            }
            self.circuit.stamp_sources(&mut self.rhs, scale);
            let limited = self
                .circuit
                .stamp_nonlinear(&x, &mut self.vals, &mut self.rhs, true);
            let vals = std::mem::take(&mut self.vals);
            let factored = self.lu().and_then(|lu| Ok(lu.factor(&vals)?));
            self.vals = vals;
            factored?;
            self.stats.factorizations += 1;
            self.stats.iterations += 1;
            xn.copy_from_slice(&self.rhs);
            self.lu()?.solve_vec(&mut xn);
            xn[n] = 0.0;
            if let Some(i) = xn[..n].iter().position(|v| !v.is_finite()) {
                if let Some(e) = self.circuit.non_finite_device(&x) {
                    return Err(e.into());
                }
                return Err(SolveError::NonFinite {
                    unknown: self.circuit.unknown_name(i),
                });
            }
            let mut converged = true;
            let mut tiny = true;
            worst = (0, 0.0, 0.0);
            for i in 0..n {
                let d = (xn[i] - x[i]).abs();
                let tol = o.reltol * xn[i].abs().max(x[i].abs())
                    + if i < nn { o.vntol_v } else { o.abstol_a };
                if d > tol {
                    converged = false;
                }
                if d > 1e-9 * tol {
                    tiny = false;
                }
                let ratio = d / tol;
                if ratio > worst.2 {
                    worst = (i, d, ratio);
                }
            }
            std::mem::swap(&mut x, &mut xn);
            if self.trace {
                eprintln!(
                    "newton: iteration {it}, source scale {scale}, gmin step {gdiag:e}, converged {converged}, limited {limited}, largest update {:e} at {}",
                    worst.1,
                    self.circuit.unknown_name(worst.0)
                );
            }
            if converged && !limited && it > 0 {
                if polishing || tiny {
                    return Ok(x);
                }
                polishing = true;
            } else {
                polishing = false;
            }
        }
        if let Some(e) = self.circuit.non_finite_device(&x) {
            return Err(e.into());
        }
        let r = self.residual(&x);
        Err(SolveError::NonConvergence {
            worst: self.circuit.unknown_name(worst.0),
            update_v: worst.1,
            residual: r.get(worst.0).copied().unwrap_or(f64::NAN),
            iterations: itl,
        })
    }

    /// `.op`.
    pub fn op(&mut self) -> Result<Vec<f64>, SolveError> {
        let x0 = vec![0.0; self.circuit.n + 1];
        let itl = self.circuit.options.itl1;
        self.solve_from(&x0, itl)
    }

    /// `.dc`: sweep `src` over `values`, each point starting from the previous solution.
    pub fn dc(&mut self, src: SourceRef, values: &[f64]) -> Result<Vec<Vec<f64>>, SolveError> {
        let saved = self.circuit.source_value(src);
        let mut out = Vec::with_capacity(values.len());
        let mut x = vec![0.0; self.circuit.n + 1];
        let mut result = Ok(());
        for (k, &v) in values.iter().enumerate() {
            self.circuit.set_source_value(src, v);
            let itl = if k == 0 {
                self.circuit.options.itl1
            } else {
                self.circuit.options.itl2
            };
            match self.solve_from(&x, itl) {
                Ok(xs) => {
                    x.copy_from_slice(&xs);
                    out.push(xs);
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        self.circuit.set_source_value(src, saved);
        result.map(|_| out)
    }

    /// Named outputs of a solution: `v(node)` for every node, `i(vname)` for every independent
    /// voltage source (ngspice's sign).
    /// Number of entries [`Solver::outputs`] returns.
    pub fn outputs_len(&self) -> usize {
        self.circuit.node_names.len() + self.circuit.vsource_branches().count()
    }

    pub fn outputs(&self, x: &[f64]) -> BTreeMap<String, f64> {
        let c = &self.circuit;
        let mut v: Vec<(String, f64)> = Vec::with_capacity(self.outputs_len());
        for (i, name) in c.node_names.iter().enumerate() {
            v.push((format!("v({name})"), x[i]));
        }
        for (name, k) in c.vsource_branches() {
            v.push((format!("i({name})"), x[k]));
        }
        // collected at once (sorted, then built in bulk): faster than one insert per name
        v.into_iter().collect()
    }
}

/// The result of one analysis.
#[derive(Debug, Clone, PartialEq)]
pub enum AnalysisResult {
    Op {
        values: BTreeMap<String, f64>,
    },
    Dc {
        sweep: String,
        points: Vec<(f64, BTreeMap<String, f64>)>,
    },
}

/// Points of a `.dc` sweep, ngspice-style (the stop value included when reached within rounding).
pub fn sweep_points(start: f64, stop: f64, step: f64) -> Result<Vec<f64>, String> {
    if !(start.is_finite() && stop.is_finite() && step.is_finite()) {
        return Err("non-finite value".into());
    }
    if step == 0.0 {
        return Err("zero step".into());
    }
    if (stop - start) * step < 0.0 {
        return Err(format!(
            "step {step} goes away from stop {stop} (start {start})"
        ));
    }
    let count = sweep_count(start, stop, step);
    if count > MAX_SWEEP_POINTS {
        return Err(format!(
            "{count} points are too many (at most {MAX_SWEEP_POINTS})"
        ));
    }
    Ok((0..count).map(|k| start + k as f64 * step).collect())
}

/// Most points of one `.dc` sweep (the memory budget may allow fewer).
pub const MAX_SWEEP_POINTS: usize = 10_000_000;

/// Number of points of a valid sweep (saturating for absurd ranges).
fn sweep_count(start: f64, stop: f64, step: f64) -> usize {
    ((stop - start) / step + 1e-9)
        .floor()
        .min(usize::MAX as f64 / 2.0) as usize
        + 1
}

/// Run every analysis of a netlist in file order.
pub fn run(netlist: &Netlist) -> Result<Vec<AnalysisResult>, SolveError> {
    let circuit = Circuit::build(netlist)?;
    let mut solver = Solver::new(circuit)?;
    let mut out = Vec::new();
    for a in &netlist.analyses {
        match a {
            Analysis::Op { .. } => {
                let x = solver.op()?;
                out.push(AnalysisResult::Op {
                    values: solver.outputs(&x),
                });
            }
            Analysis::Dc {
                src,
                start,
                stop,
                step,
                span,
            } => {
                let s = solver
                    .circuit
                    .source(src)
                    .ok_or_else(|| SolveError::SweepSource {
                        name: src.clone(),
                        span: span.clone(),
                    })?;
                let values =
                    sweep_points(*start, *stop, *step).map_err(|msg| SolveError::SweepRange {
                        msg,
                        span: span.clone(),
                    })?;
                // Every point keeps the solution and a named map of every output.
                let n_values = solver.circuit.n + 1 + solver.outputs_len();
                crate::limits::check(
                    || {
                        format!(
                            "sweep of `{src}` with {} points × {n_values} values",
                            values.len()
                        )
                    },
                    (values.len() as u128)
                        .saturating_mul(n_values as u128)
                        .saturating_mul(BYTES_PER_SWEEP_VALUE),
                )
                .map_err(|source| SolveError::TooLarge {
                    source,
                    span: span.clone(),
                })?;
                let xs = solver.dc(s, &values)?;
                let points = values
                    .iter()
                    .zip(&xs)
                    .map(|(v, x)| (*v, solver.outputs(x)))
                    .collect();
                out.push(AnalysisResult::Dc {
                    sweep: src.clone(),
                    points,
                });
            }
        }
    }
    Ok(out)
}

/// The `--json` form (docs/spice-dialect.md, "Output"): analyses in file order, `v(node)`, `i(vname)`.
pub fn to_json(results: &[AnalysisResult]) -> serde_json::Value {
    // serialising the view cannot fail: every key is a string
    serde_json::to_value(JsonResults(results)).unwrap_or(serde_json::Value::Null)
}

/// Write the JSON form of [`to_json`] straight from the results (no intermediate
/// `serde_json::Value`: at 10⁵ nodes building the tree cost more than writing it).
pub fn write_json(
    out: &mut impl std::io::Write,
    results: &[AnalysisResult],
) -> serde_json::Result<()> {
    serde_json::to_writer(out, &JsonResults(results))
}

/// `{"analyses": [...]}`: the one definition of the JSON form ([`to_json`], [`write_json`]).
struct JsonResults<'a>(&'a [AnalysisResult]);

/// One analysis: `{"type": "op", "values": {...}}` or
/// `{"type": "dc", "sweep": name, "points": [{name: value, "values": {...}}, ...]}`.
struct JsonAnalysis<'a>(&'a AnalysisResult);

/// One point of a sweep: the swept value under the source's name, then the values.
struct JsonPoint<'a> {
    sweep: &'a str,
    at: f64,
    values: &'a BTreeMap<String, f64>,
}

impl serde::Serialize for JsonResults<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut m = s.serialize_map(Some(1))?;
        m.serialize_entry(
            "analyses",
            &SerializeIter(|| self.0.iter().map(JsonAnalysis)),
        )?;
        m.end()
    }
}

impl serde::Serialize for JsonAnalysis<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        match self.0 {
            AnalysisResult::Op { values } => {
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("type", "op")?;
                m.serialize_entry("values", values)?;
                m.end()
            }
            AnalysisResult::Dc { sweep, points } => {
                let mut m = s.serialize_map(Some(3))?;
                m.serialize_entry("type", "dc")?;
                m.serialize_entry("sweep", sweep)?;
                m.serialize_entry(
                    "points",
                    &SerializeIter(|| {
                        points.iter().map(|(at, values)| JsonPoint {
                            sweep,
                            at: *at,
                            values,
                        })
                    }),
                )?;
                m.end()
            }
        }
    }
}

impl serde::Serialize for JsonPoint<'_> {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        // a source named `values` is overwritten by the values, as in a JSON object built
        // key by key
        if self.sweep == "values" {
            let mut m = s.serialize_map(Some(1))?;
            m.serialize_entry("values", self.values)?;
            return m.end();
        }
        let mut m = s.serialize_map(Some(2))?;
        m.serialize_entry(self.sweep, &self.at)?;
        m.serialize_entry("values", self.values)?;
        m.end()
    }
}

/// A sequence serialised from an iterator made on demand.
struct SerializeIter<F>(F);

impl<F, I> serde::Serialize for SerializeIter<F>
where
    F: Fn() -> I,
    I: Iterator,
    I::Item: serde::Serialize,
{
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq((self.0)())
    }
}

#[cfg(test)]
mod tests;
