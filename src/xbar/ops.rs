//! The three array operations: inference (many input vectors), single-cell read with a biasing
//! scheme for the unselected lines, and a programming pulse (half-select disturb map).

use std::sync::Arc;

use faer::linalg::matmul::matmul;
use faer::{Accum, Mat, MatMut, MatRef, Par};
use rayon::prelude::*;
use serde::Serialize;

use super::array::{CellKind, Crossbar, SenseKind};
use super::eval::{evaluate, tia_output, Solved};
use super::factor::Symbolic;
use super::frontal::FrontalPlan;
use super::linear::{check_row_mask, zero_unread_rows, LinearSystem};
use super::lines::{LineScratch, LineSolver, LineStats};
use super::network::{linearized_cell_g, ColEnd, Network, Node, RowEnd, Topology};
use super::newton::{NewtonOptions, NewtonProblem, NewtonStats};
use super::pcg::{PcgOptions, PcgStats, Stencil};
use super::XbarError;

/// Which linear solver to use for linear arrays.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LinearMethod {
    /// Sparse Cholesky (exact to rounding).
    Direct,
    /// Conjugate gradients preconditioned by exact line solves (structured arrays only).
    Iterative(PcgOptions),
}

/// Solver options.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SolveOptions {
    pub method: LinearMethod,
    pub newton: NewtonOptions,
    /// Conductance from every unknown node to ground (S); needed when lines float.
    pub gmin_siemens: f64,
    /// Vectors solved together per block in nonlinear inference (the chord path).
    pub block: usize,
    /// Newton steps on the cell currents ([`super::lines`]) before a vector of a nonlinear
    /// array goes to the chord path; 0 sends every vector there.
    pub max_current_steps: usize,
}

impl Default for SolveOptions {
    fn default() -> Self {
        SolveOptions {
            method: LinearMethod::Direct,
            newton: NewtonOptions::default(),
            gmin_siemens: 0.0,
            block: 256,
            max_current_steps: super::lines::MAX_OUTER,
        }
    }
}

/// The solver an engine uses, with the data it prepared for its array. Which variant exists is
/// decided by [`SolveOptions::method`] in [`Engine::new`] / [`Engine::set_options`] only, so the
/// prepared data always matches the declared method.
enum Solver {
    /// Sparse Cholesky on the nodal network. Linear arrays are factored (on first use); for
    /// nonlinear ones the factored linearised array is Newton's start, and Newton shares the
    /// symbolic analysis.
    Direct {
        net: Arc<Network>,
        lin: Box<LinearSystem>,
        newton_symbolic: Option<Symbolic>,
        /// The effective weight matrix `T`, once built (cleared by every conductance change).
        t: Option<Mat<f64>>,
    },
    /// Conjugate gradients on the array's stencil (structured linear arrays).
    Iterative { stencil: Stencil, pcg: PcgOptions },
}

impl Solver {
    fn prepare(xb: &Crossbar, opts: &SolveOptions) -> Result<Solver, XbarError> {
        let trace = super::trace();
        let t0 = std::time::Instant::now();
        if let LinearMethod::Iterative(pcg) = opts.method {
            let stencil = Stencil::new(xb)?;
            if trace {
                eprintln!("xbar: stencil {:.3} s", t0.elapsed().as_secs_f64());
            }
            return Ok(Solver::Iterative { stencil, pcg });
        }
        let tia_g = xb.sense.small_signal_g_siemens();
        let cell_g = linearized_cell_g(xb, super::eval::GMIN_JUNCTION_SIEMENS);
        let gmin = opts.gmin_siemens;
        let build = || -> Result<(Arc<Network>, LinearSystem), XbarError> {
            let net = Arc::new(Network::new(xb, &Topology::inference(xb))?);
            let lin = LinearSystem::assemble(Arc::clone(&net), cell_g, tia_g, gmin);
            Ok((net, lin))
        };
        // a linear array's effective-weight plan depends on the geometry only: made while the
        // network is built and stamped, used if the network has the structure it assumed (else
        // the linear system plans from the network when first asked for effective weights)
        let (built, grid) = if is_linear(xb) && xb.r_word_ohm > 0.0 && xb.r_bit_ohm > 0.0 {
            rayon::join(build, || {
                FrontalPlan::for_grid(xb.rows, xb.cols, &vec![true; xb.rows])
            })
        } else {
            (build(), None)
        };
        let (net, mut lin) = built?;
        if let Some((plan, structure)) = grid {
            if structure.matches(&net) {
                lin.set_frontal_plan(plan);
            }
        }
        if trace {
            eprintln!(
                "xbar: network, stamping and plan {:.3} s",
                t0.elapsed().as_secs_f64()
            );
        }
        // factored on first use: effective weights may not need a factor of the whole array
        lin.par = par_for(net.n_free);
        Ok(Solver::Direct {
            net,
            lin: Box::new(lin),
            newton_symbolic: None,
            t: None,
        })
    }
}

fn needs_direct() -> XbarError {
    XbarError::Invalid(
        "this operation needs the direct solver (the engine was built with the iterative one)"
            .into(),
    )
}

/// An array ready for inference: linear arrays are factored once; nonlinear ones keep the shared
/// symbolic analysis and the factored linearized array (Newton's start). The state is private:
/// the array changes only through [`Engine::set_conductances`] and the solver only through
/// [`Engine::set_options`], which keep the prepared data (factor, `T`) consistent.
pub struct Engine {
    xb: Crossbar,
    opts: SolveOptions,
    solver: Solver,
    last_pcg: Option<PcgStats>,
    last_newton: Option<(usize, usize)>,
    last_bulk: Option<BulkTimes>,
}

/// Where the time of the last bulk nonlinear inference went (wall seconds) and which path
/// solved how many vectors.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct BulkTimes {
    /// Newton on the cell currents ([`super::lines`]): the whole stage.
    pub current_seconds: f64,
    /// Vectors it solved, its Newton steps and GMRES iterations summed over them.
    pub current_vectors: usize,
    pub current_steps: usize,
    pub current_krylov: usize,
    /// Thread time (summed over threads; wall time of each thread, so it includes waiting under
    /// load) of its cell passes, its final residual checks, its GMRES solves and, of those, the
    /// Gram–Schmidt orthogonalisation (s).
    pub current_cells_cpu_seconds: f64,
    pub current_check_cpu_seconds: f64,
    pub current_krylov_cpu_seconds: f64,
    pub current_orth_cpu_seconds: f64,
    /// Vectors that went through the chord path (the array does not fit the cell-current
    /// iteration, or the vector did not converge there).
    pub chord_vectors: usize,
    /// Chord path: small-signal start of every vector, one block solve with the factor.
    pub start_solve_seconds: f64,
    /// Chord path: residual evaluations (cells and wires).
    pub residual_seconds: f64,
    /// Chord path: block solves of the chord steps.
    pub chord_solve_seconds: f64,
    /// The whole call.
    pub total_seconds: f64,
}

/// True when the array is linear end to end (linear cells and ideal virtual grounds).
pub fn is_linear(xb: &Crossbar) -> bool {
    xb.cell.is_linear() && matches!(xb.sense, SenseKind::VirtualGround)
}

impl Engine {
    pub fn new(xb: &Crossbar, opts: SolveOptions) -> Result<Engine, XbarError> {
        xb.validate()?;
        Ok(Engine {
            solver: Solver::prepare(xb, &opts)?,
            xb: xb.clone(),
            opts,
            last_pcg: None,
            last_newton: None,
            last_bulk: None,
        })
    }

    /// The array this engine solves.
    pub fn crossbar(&self) -> &Crossbar {
        &self.xb
    }

    /// The options it was prepared with.
    pub fn options(&self) -> &SolveOptions {
        &self.opts
    }

    /// The nodal network (direct solver only; the iterative one works on the array's stencil).
    pub fn network(&self) -> Option<&Network> {
        match &self.solver {
            Solver::Direct { net, .. } => Some(net),
            Solver::Iterative { .. } => None,
        }
    }

    /// Statistics of the last iterative solve.
    pub fn last_pcg(&self) -> Option<PcgStats> {
        self.last_pcg
    }

    /// Newton iterations of the last nonlinear inference (sum, max).
    pub fn last_newton(&self) -> Option<(usize, usize)> {
        self.last_newton
    }

    /// Stage times of the last bulk nonlinear inference ([`Engine::infer`] on a nonlinear array).
    pub fn last_bulk_times(&self) -> Option<BulkTimes> {
        self.last_bulk
    }

    /// New solver options. A different method or `gmin` prepares the solver again (on error the
    /// engine keeps its previous options and data); Newton, block and PCG settings apply directly.
    pub fn set_options(&mut self, opts: SolveOptions) -> Result<(), XbarError> {
        let same_kind = matches!(
            (&self.solver, opts.method),
            (Solver::Direct { .. }, LinearMethod::Direct)
                | (Solver::Iterative { .. }, LinearMethod::Iterative(_))
        );
        if !same_kind || opts.gmin_siemens != self.opts.gmin_siemens {
            self.solver = Solver::prepare(&self.xb, &opts)?;
        } else if let (Solver::Iterative { pcg, .. }, LinearMethod::Iterative(p)) =
            (&mut self.solver, opts.method)
        {
            *pcg = p;
        }
        self.opts = opts;
        Ok(())
    }

    /// A new conductance state (`g_siemens`, row-major, one per cell) of the same array: the
    /// network and its symbolic analysis are kept, only the numeric factor is redone (and `T`
    /// rebuilt when next asked for). On error the engine keeps its previous state.
    pub fn set_conductances(&mut self, g_siemens: &[f64]) -> Result<(), XbarError> {
        if g_siemens.len() != self.xb.g_siemens.len() {
            return Err(XbarError::Invalid(format!(
                "{} conductances for a {}×{} array",
                g_siemens.len(),
                self.xb.rows,
                self.xb.cols
            )));
        }
        let old = std::mem::replace(&mut self.xb.g_siemens, g_siemens.to_vec());
        if let Err(e) = self.xb.validate() {
            self.xb.g_siemens = old;
            return Err(e);
        }
        let tia_g = self.xb.sense.small_signal_g_siemens();
        let gmin = self.opts.gmin_siemens;
        let updated = match &mut self.solver {
            Solver::Iterative { stencil, .. } => Stencil::new(&self.xb).map(|s| *stencil = s),
            Solver::Direct { lin, t, .. } => {
                *t = None;
                let cell_g = linearized_cell_g(&self.xb, super::eval::GMIN_JUNCTION_SIEMENS);
                lin.update_cells(&cell_g, tia_g, gmin)
            }
        };
        if let Err(e) = updated {
            // back to the previous state, prepared afresh (its factor is known to exist)
            self.xb.g_siemens = old;
            self.solver = Solver::prepare(&self.xb, &self.opts)?;
            return Err(e);
        }
        Ok(())
    }

    /// The exact effective weight matrix `T` (R × C): `I = Tᵀ·V` for the column currents. Only for
    /// linear arrays with virtual-ground sensing, with the direct solver.
    pub fn effective_weights(&mut self) -> Result<&Mat<f64>, XbarError> {
        if !is_linear(&self.xb) {
            return Err(XbarError::Invalid(
                "an effective weight matrix exists only for linear cells with virtual grounds"
                    .into(),
            ));
        }
        let Solver::Direct { lin, t, .. } = &mut self.solver else {
            return Err(needs_direct());
        };
        let m = match t.take() {
            Some(m) => m,
            None => lin.effective_weights()?,
        };
        Ok(t.insert(m))
    }

    /// The linear system and the cached `T` of a linear array with the direct solver (what
    /// effective weights need).
    fn linear_system(&mut self) -> Result<(&mut LinearSystem, &mut Option<Mat<f64>>), XbarError> {
        if !is_linear(&self.xb) {
            return Err(XbarError::Invalid(
                "effective weights exist only for linear cells with virtual grounds".into(),
            ));
        }
        let Solver::Direct { lin, t, .. } = &mut self.solver else {
            return Err(needs_direct());
        };
        Ok((lin, t))
    }

    /// Signed combinations of the columns of `T` (see [`LinearSystem::combined_weights`]); only for
    /// linear arrays with virtual-ground sensing, with the direct solver.
    pub fn combined_weights(
        &mut self,
        combos: &[Vec<(usize, f64)>],
    ) -> Result<Mat<f64>, XbarError> {
        let rows = self.xb.rows;
        let (lin, t) = self.linear_system()?;
        if let Some(t) = t {
            let mut m = Mat::<f64>::zeros(rows, combos.len());
            for (k, combo) in combos.iter().enumerate() {
                for &(j, tau) in combo {
                    for i in 0..rows {
                        m[(i, k)] += tau * t[(i, j)];
                    }
                }
            }
            return Ok(m);
        }
        lin.combined_weights(combos)
    }

    /// [`Engine::combined_weights`] of the rows `read[i]` only; the other rows are taken as
    /// driven at 0 V (as an unused input is) and get zero weights. The read rows' weights are
    /// those of [`Engine::combined_weights`] (the same circuit), but the multifrontal elimination
    /// keeps only the read rows as terminals, so rows that are never driven cost nothing.
    pub fn combined_weights_of_rows(
        &mut self,
        combos: &[Vec<(usize, f64)>],
        read: &[bool],
    ) -> Result<Mat<f64>, XbarError> {
        let (lin, t) = self.linear_system()?;
        if t.is_none() {
            return lin.combined_weights_of_rows(combos, read);
        }
        // `T` is built already: combine it
        check_row_mask(read, self.xb.rows)?;
        let mut m = self.combined_weights(combos)?;
        zero_unread_rows(&mut m, read);
        Ok(m)
    }

    /// Outputs (k × C: currents for virtual grounds, volts for amplifiers) for the input vectors in
    /// the rows of `inputs` (k × R).
    pub fn infer(&mut self, inputs: MatRef<'_, f64>) -> Result<Mat<f64>, XbarError> {
        let (r, c) = (self.xb.rows, self.xb.cols);
        if inputs.ncols() != r {
            return Err(XbarError::Invalid(format!(
                "input vectors have {} entries, the array has {r} rows",
                inputs.ncols()
            )));
        }
        let k = inputs.nrows();
        if !is_linear(&self.xb) {
            return self.infer_nonlinear(inputs);
        }
        if let Solver::Iterative { stencil, pcg } = &self.solver {
            let mut out = Mat::<f64>::zeros(k, c);
            let mut last = None;
            for t in 0..k {
                let v: Vec<f64> = (0..r).map(|i| inputs[(t, i)]).collect();
                let (x, stats) = stencil.solve(&stencil.rhs(&v), pcg)?;
                last = Some(stats);
                for (j, o) in stencil.outputs(&x).iter().enumerate() {
                    out[(t, j)] = *o;
                }
            }
            self.last_pcg = last;
            return Ok(out);
        }
        if self.through_t(k) {
            let t0 = std::time::Instant::now();
            let t = self.effective_weights()?;
            let t1 = std::time::Instant::now();
            let out = inputs * t;
            if super::trace() {
                eprintln!(
                    "xbar: T {:.2} ms, product of {k} vectors {:.2} ms",
                    (t1 - t0).as_secs_f64() * 1e3,
                    t1.elapsed().as_secs_f64() * 1e3
                );
            }
            return Ok(out);
        }
        let Solver::Direct { lin, .. } = &mut self.solver else {
            return Err(needs_direct());
        };
        let v_col = vec![0.0; c];
        let x = lin.solve_rows(inputs.transpose(), &v_col)?;
        let mut out = Mat::<f64>::zeros(k, c);
        let terms = lin.output_terms();
        for &(j, node, g) in &terms {
            match node {
                Node::Free(p) => {
                    for t in 0..k {
                        out[(t, j)] += g * x[(p as usize, t)];
                    }
                }
                Node::Row(i) => {
                    for t in 0..k {
                        out[(t, j)] += g * inputs[(t, i as usize)];
                    }
                }
                _ => {}
            }
        }
        Ok(out)
    }

    /// [`Engine::infer`] into a caller's buffer `out` (k × C), for streams of batches that reuse
    /// one output matrix. With an exact `T` (linear cells, virtual grounds) the outputs are one
    /// matrix product written straight into `out`; other arrays are solved as in `infer` and copied.
    pub fn infer_into(
        &mut self,
        inputs: MatRef<'_, f64>,
        mut out: MatMut<'_, f64>,
    ) -> Result<(), XbarError> {
        let (r, c) = (self.xb.rows, self.xb.cols);
        if inputs.ncols() != r || out.nrows() != inputs.nrows() || out.ncols() != c {
            return Err(XbarError::Invalid(format!(
                "input vectors {}×{} and outputs {}×{} for a {r}×{c} array (want k×{r} and k×{c})",
                inputs.nrows(),
                inputs.ncols(),
                out.nrows(),
                out.ncols()
            )));
        }
        if is_linear(&self.xb) && self.through_t(inputs.nrows()) {
            let t = self.effective_weights()?;
            matmul(
                out.as_mut(),
                Accum::Replace,
                inputs,
                t.as_ref(),
                1.0,
                faer::get_global_parallelism(),
            );
            return Ok(());
        }
        let o = self.infer(inputs)?;
        out.copy_from(&o);
        Ok(())
    }

    /// Whether `k` input vectors through a linear array go through `T` (one product) rather
    /// than direct solves: with the direct method, once `T` exists or `k ≥ min(R, C)` (building
    /// `T` costs about as much as min(R, C) solves).
    fn through_t(&self, k: usize) -> bool {
        match &self.solver {
            Solver::Direct { t, .. } => t.is_some() || k >= self.xb.rows.min(self.xb.cols),
            Solver::Iterative { .. } => false,
        }
    }

    /// Nonlinear inference in bulk. Arrays whose lines are paths held at one end (virtual-ground
    /// columns, no gmin; sinh and 1T1R cells) are solved vector by vector by Newton on the cell
    /// currents ([`super::lines`]: no factor of the 2-D network, vectors in parallel); the
    /// vectors it does not finish, and every other array, go in blocks of `opts.block` vectors
    /// from the small-signal solution through the chord iteration of [`super::bulk`] (per-vector
    /// Newton for the vectors it does not finish). Same stopping test as per-vector Newton on
    /// every path.
    ///
    /// Arrays sensed by transimpedance amplifiers stay with per-vector Newton: their outputs are
    /// the sense-node voltages times the gain, and a chord iterate that meets the stopping test
    /// (vntol on the sense node) can still differ from Newton's quadratically converged answer
    /// by gain × vntol in the outputs.
    fn infer_nonlinear(&mut self, inputs: MatRef<'_, f64>) -> Result<Mat<f64>, XbarError> {
        if matches!(self.xb.sense, SenseKind::Tia { .. }) {
            return self.infer_per_vector(inputs);
        }
        let (r, c) = (self.xb.rows, self.xb.cols);
        let k = inputs.nrows();
        let v_col = vec![0.0; c];
        let xb = &self.xb;
        let Solver::Direct { net, lin, .. } = &mut self.solver else {
            return Err(needs_direct());
        };
        let net = Arc::clone(net);
        let n = net.n_free;
        let nopts = self.opts.newton;
        let t_all = std::time::Instant::now();
        let mut out = Mat::<f64>::zeros(k, c);
        let (mut steps_sum, mut steps_max) = (0usize, 0usize);
        let mut times = BulkTimes::default();
        // 1. Newton on the cell currents, where the array's lines are paths held at one end
        let mut todo: Vec<usize> = (0..k).collect();
        let max_steps = self.opts.max_current_steps;
        let line_solver = if max_steps > 0 {
            LineSolver::new(xb, &net, self.opts.gmin_siemens)
        } else {
            None
        };
        if let Some(ls) = line_solver {
            let t_l = std::time::Instant::now();
            let mut flat = vec![0.0; k * c];
            let net_ref = &*net;
            // a few chunks of vectors per thread: one scratch per chunk, reused within it
            let chunk = k.div_ceil(4 * rayon::current_num_threads().max(1)).max(1);
            let mut results: Vec<Option<LineStats>> = vec![None; k];
            flat.par_chunks_mut(c * chunk)
                .zip(results.par_chunks_mut(chunk))
                .enumerate()
                .for_each(|(q, (o, res))| {
                    let mut s = LineScratch::default();
                    let mut x = vec![0.0; n];
                    let mut vr = vec![0.0; r];
                    for (u, (ot, rt)) in o.chunks_mut(c).zip(res.iter_mut()).enumerate() {
                        let t = q * chunk + u;
                        for (i, v) in vr.iter_mut().enumerate() {
                            *v = inputs[(t, i)];
                        }
                        *rt = ls.solve(&mut s, &vr, &v_col, &mut x, &nopts, max_steps);
                        if rt.is_some() {
                            column_outputs_into(xb, net_ref, &x, &vr, &v_col, ot);
                        }
                    }
                });
            todo.clear();
            for (t, res) in results.iter().enumerate() {
                match res {
                    Some(st) => {
                        for j in 0..c {
                            out[(t, j)] = flat[t * c + j];
                        }
                        steps_sum += st.outer;
                        steps_max = steps_max.max(st.outer);
                        times.current_vectors += 1;
                        times.current_steps += st.outer;
                        times.current_krylov += st.krylov;
                        times.current_cells_cpu_seconds += st.cells_seconds;
                        times.current_krylov_cpu_seconds += st.krylov_seconds;
                        times.current_check_cpu_seconds += st.check_seconds;
                        times.current_orth_cpu_seconds += st.orth_seconds;
                    }
                    None => todo.push(t),
                }
            }
            times.current_seconds = t_l.elapsed().as_secs_f64();
        }
        // 2. the chord iteration on the small-signal factor for the rest
        if !todo.is_empty() {
            let problem = NewtonProblem::new(xb, &net, None, self.opts.gmin_siemens)?;
            let block = self.opts.block.max(1);
            let mut v_rows = Vec::new();
            let mut x = Vec::new();
            let mut t0 = 0;
            while t0 < todo.len() {
                let nb = block.min(todo.len() - t0);
                let ids = &todo[t0..t0 + nb];
                v_rows.clear();
                for &t in ids {
                    v_rows.extend((0..r).map(|i| inputs[(t, i)]));
                }
                x.clear();
                x.resize(n * nb, 0.0);
                for (t, xt) in x.chunks_mut(n.max(1)).enumerate().take(nb) {
                    lin.rhs_into(&v_rows[t * r..(t + 1) * r], &v_col, xt);
                }
                let t_start = std::time::Instant::now();
                lin.solve_in_place_parallel(MatMut::from_column_major_slice_mut(&mut x, n, nb))?;
                times.start_solve_seconds += t_start.elapsed().as_secs_f64();
                let st = super::bulk::solve_block(&problem, lin, &v_rows, &v_col, &mut x, &nopts)?;
                times.residual_seconds += st.residual_seconds;
                times.chord_solve_seconds += st.solve_seconds;
                steps_sum += st.chord_steps * nb + st.newton_iterations;
                steps_max = steps_max.max(st.chord_steps);
                times.chord_vectors += nb;
                let outs: Vec<Vec<f64>> = (0..nb)
                    .into_par_iter()
                    .map(|t| {
                        let xt = if n == 0 {
                            &[][..]
                        } else {
                            &x[t * n..(t + 1) * n]
                        };
                        column_outputs(xb, &net, xt, &v_rows[t * r..(t + 1) * r], &v_col)
                    })
                    .collect();
                for (&t, o) in ids.iter().zip(&outs) {
                    for (j, v) in o.iter().enumerate() {
                        out[(t, j)] = *v;
                    }
                }
                t0 += nb;
            }
        }
        times.total_seconds = t_all.elapsed().as_secs_f64();
        if super::trace() {
            eprintln!(
                "xbar: bulk {k} vectors {:.3} s: cell-current Newton {} vectors {:.3} s ({:.2} \
                 steps, {:.1} GMRES iterations per vector; CPU: cells {:.3} s, GMRES {:.3} s); \
                 chord {} vectors: start solves {:.3} s, residuals {:.3} s, chord solves {:.3} s",
                times.total_seconds,
                times.current_vectors,
                times.current_seconds,
                times.current_steps as f64 / times.current_vectors.max(1) as f64,
                times.current_krylov as f64 / times.current_vectors.max(1) as f64,
                times.current_cells_cpu_seconds,
                times.current_krylov_cpu_seconds,
                times.chord_vectors,
                times.start_solve_seconds,
                times.residual_seconds,
                times.chord_solve_seconds,
            );
        }
        self.last_newton = Some((steps_sum, steps_max));
        self.last_bulk = Some(times);
        Ok(out)
    }

    /// Nonlinear inference with one damped Newton solve per input vector (vectors in parallel):
    /// the reference the bulk solver of [`Engine::infer`] is checked and timed against.
    pub fn infer_per_vector(&mut self, inputs: MatRef<'_, f64>) -> Result<Mat<f64>, XbarError> {
        if is_linear(&self.xb) {
            return self.infer(inputs);
        }
        let (r, c) = (self.xb.rows, self.xb.cols);
        if inputs.ncols() != r {
            return Err(XbarError::Invalid(format!(
                "input vectors have {} entries, the array has {r} rows",
                inputs.ncols()
            )));
        }
        let k = inputs.nrows();
        let v_col = vec![0.0; c];
        let xb = &self.xb;
        let Solver::Direct {
            net,
            lin,
            newton_symbolic,
            ..
        } = &mut self.solver
        else {
            return Err(needs_direct());
        };
        if newton_symbolic.is_none() {
            *newton_symbolic = Some(Symbolic::new(net, NewtonProblem::factor_kind(xb))?);
        }
        let mut out = Mat::<f64>::zeros(k, c);
        let mut iters_sum = 0usize;
        let mut iters_max = 0usize;
        let block = self.opts.block.max(1);
        let nopts = self.opts.newton;
        let mut t0 = 0;
        while t0 < k {
            let nb = block.min(k - t0);
            let rows = inputs.subrows(t0, nb);
            let x0 = lin.solve_rows(rows.transpose(), &v_col)?;
            let problem =
                NewtonProblem::new(xb, net, newton_symbolic.clone(), self.opts.gmin_siemens)?;
            let net = &**net;
            let results: Vec<Result<(Vec<f64>, NewtonStats), XbarError>> = (0..nb)
                .into_par_iter()
                .map_init(
                    || problem.workspace(),
                    |ws, t| {
                        let ws = ws.as_mut().map_err(|e| e.clone())?;
                        let v_row: Vec<f64> = (0..r).map(|i| rows[(t, i)]).collect();
                        let mut x: Vec<f64> = (0..x0.nrows()).map(|p| x0[(p, t)]).collect();
                        let stats = problem.solve(ws, &mut x, &v_row, &v_col, &nopts)?;
                        let o = column_outputs(xb, net, &x, &v_row, &v_col);
                        Ok((o, stats))
                    },
                )
                .collect();
            for (t, res) in results.into_iter().enumerate() {
                let (o, st) = res?;
                iters_sum += st.iterations;
                iters_max = iters_max.max(st.iterations);
                for (j, v) in o.iter().enumerate() {
                    out[(t0 + t, j)] = *v;
                }
            }
            t0 += nb;
        }
        self.last_newton = Some((iters_sum, iters_max));
        Ok(out)
    }

    /// One input vector solved in full detail (node voltages, cell currents, outputs).
    pub fn solve_detailed(&mut self, v_in: &[f64]) -> Result<Solved, XbarError> {
        if v_in.len() != self.xb.rows {
            return Err(XbarError::Invalid(format!(
                "input vector has {} entries, the array has {} rows",
                v_in.len(),
                self.xb.rows
            )));
        }
        let v_col = vec![0.0; self.xb.cols];
        let xb = &self.xb;
        let (net, lin, newton_symbolic) = match &mut self.solver {
            Solver::Iterative { stencil, pcg } => {
                let (x, stats) = stencil.solve(&stencil.rhs(v_in), pcg)?;
                let solved = stencil_solved(xb, stencil, &x, v_in);
                self.last_pcg = Some(stats);
                return Ok(solved);
            }
            Solver::Direct {
                net,
                lin,
                newton_symbolic,
                ..
            } => (net, lin, newton_symbolic),
        };
        let x = {
            let x = lin.solve_rows(MatRef::from_column_major_slice(v_in, v_in.len(), 1), &v_col)?;
            x.col(0).iter().copied().collect::<Vec<f64>>()
        };
        if is_linear(xb) {
            return Ok(evaluate(xb, net, &x, v_in, &v_col, None));
        }
        let problem = NewtonProblem::new(xb, net, newton_symbolic.clone(), self.opts.gmin_siemens)?;
        let mut ws = problem.workspace()?;
        let mut x = x;
        let st = problem.solve(&mut ws, &mut x, v_in, &v_col, &self.opts.newton)?;
        let solved = evaluate(
            xb,
            net,
            &x,
            v_in,
            &v_col,
            Some(NewtonProblem::internal_voltages(&ws)),
        );
        self.last_newton = Some((st.iterations, st.iterations));
        Ok(solved)
    }
}

/// A full report of a stencil solution.
fn stencil_solved(xb: &Crossbar, st: &Stencil, x: &[f64], v_in: &[f64]) -> Solved {
    let (c, r) = (xb.cols, xb.rows);
    let (w, b) = st.split(x);
    let i_cell: Vec<f64> = (0..r * c)
        .map(|k| xb.g_siemens[k] * (w[k] - b[k]))
        .collect();
    Solved {
        v_word: w.to_vec(),
        v_bit: b.to_vec(),
        i_cell,
        v_internal: Vec::new(),
        i_col: st.outputs(x).into_iter().map(Some).collect(),
        i_row: (0..r)
            .map(|i| Some(st.g_drv * (v_in[i] - w[i * c])))
            .collect(),
        v_tia_out: vec![None; c],
        v_tia_sense: vec![None; c],
    }
}

/// Column outputs straight from the unknowns (no full evaluation).
pub fn column_outputs(
    xb: &Crossbar,
    net: &Network,
    x: &[f64],
    v_row: &[f64],
    v_col: &[f64],
) -> Vec<f64> {
    let mut out = vec![0.0; xb.cols];
    column_outputs_into(xb, net, x, v_row, v_col, &mut out);
    out
}

/// [`column_outputs`] into `out` (C values).
pub fn column_outputs_into(
    xb: &Crossbar,
    net: &Network,
    x: &[f64],
    v_row: &[f64],
    v_col: &[f64],
    out: &mut [f64],
) {
    out.iter_mut().for_each(|v| *v = 0.0);
    for e in &net.wires {
        if let Node::Col(j) = e.b {
            out[j as usize] +=
                e.g_siemens * (Network::voltage(e.a, x, v_row, v_col) - v_col[j as usize]);
        }
    }
    let mut vm = 0.0;
    for k in 0..net.b.len() {
        if let Node::Col(j) = net.b[k] {
            let vw = Network::voltage(net.w[k], x, v_row, v_col);
            if matches!(xb.cell, CellKind::OneT1R { .. }) {
                vm = 0.5 * (vw + v_col[j as usize]);
            }
            out[j as usize] += super::eval::cell_current(xb, k, vw, v_col[j as usize], &mut vm).0;
        }
    }
    for &(j, s) in &net.tia {
        out[j] = tia_output(xb.sense, x[s as usize]).0;
    }
}

/// Biasing of the unselected lines during a read or a programming pulse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    /// Unselected lines left open.
    Floating,
    /// Unselected lines at 0 V.
    Grounded,
    /// Unselected rows and columns at V/2.
    Half,
    /// Unselected rows at V/3, unselected columns at 2V/3.
    Third,
}

impl Scheme {
    pub fn parse(s: &str) -> Option<Scheme> {
        match s.to_ascii_lowercase().as_str() {
            "floating" | "float" => Some(Scheme::Floating),
            "grounded" | "ground" | "gnd" => Some(Scheme::Grounded),
            "v/2" | "half" | "v2" => Some(Scheme::Half),
            "v/3" | "third" | "v3" => Some(Scheme::Third),
            _ => None,
        }
    }
    pub fn label(self) -> &'static str {
        match self {
            Scheme::Floating => "floating",
            Scheme::Grounded => "grounded",
            Scheme::Half => "V/2",
            Scheme::Third => "V/3",
        }
    }
}

/// Line terminations and source values for selecting cell (i, j) with voltage `v`: the selected
/// row at `v`, the selected column at 0 V (sensed), the others per the scheme.
pub fn select_bias(
    xb: &Crossbar,
    i: usize,
    j: usize,
    v: f64,
    scheme: Scheme,
) -> (Topology, Vec<f64>, Vec<f64>) {
    let (row_end, row_v, col_end, col_v) = match scheme {
        Scheme::Floating => (RowEnd::Open, 0.0, ColEnd::Open, 0.0),
        Scheme::Grounded => (RowEnd::Driven, 0.0, ColEnd::Driven, 0.0),
        Scheme::Half => (RowEnd::Driven, v / 2.0, ColEnd::Driven, v / 2.0),
        Scheme::Third => (RowEnd::Driven, v / 3.0, ColEnd::Driven, 2.0 * v / 3.0),
    };
    let mut topo = Topology {
        rows: vec![row_end; xb.rows],
        cols: vec![col_end; xb.cols],
    };
    topo.rows[i] = RowEnd::Driven;
    topo.cols[j] = ColEnd::Driven;
    let mut v_row = vec![row_v; xb.rows];
    let mut v_col = vec![col_v; xb.cols];
    v_row[i] = v;
    v_col[j] = 0.0;
    (topo, v_row, v_col)
}

/// Solve one operating point of the array under an arbitrary topology (linear or Newton).
pub fn solve_biased(
    xb: &Crossbar,
    topo: &Topology,
    v_row: &[f64],
    v_col: &[f64],
    opts: &SolveOptions,
) -> Result<(Network, Solved), XbarError> {
    let net = Network::new(xb, topo)?;
    let floating = topo.rows.contains(&RowEnd::Open) || topo.cols.contains(&ColEnd::Open);
    let gmin = if floating {
        opts.gmin_siemens.max(1e-12)
    } else {
        opts.gmin_siemens
    };
    let tia_g = xb.sense.small_signal_g_siemens();
    let cell_g = linearized_cell_g(xb, super::eval::GMIN_JUNCTION_SIEMENS);
    let mut lin = LinearSystem::new(net.clone(), cell_g, tia_g, gmin, par_for(net.n_free))?;
    let x = lin.solve_rows(
        MatRef::from_column_major_slice(v_row, v_row.len(), 1),
        v_col,
    )?;
    let mut x: Vec<f64> = x.col(0).iter().copied().collect();
    let linear = xb.cell.is_linear() && net.tia.is_empty();
    if linear {
        let s = evaluate(xb, &net, &x, v_row, v_col, None);
        return Ok((net, s));
    }
    let problem = NewtonProblem::new(xb, &net, None, gmin)?;
    let mut ws = problem.workspace()?;
    problem.solve(&mut ws, &mut x, v_row, v_col, &opts.newton)?;
    let s = evaluate(
        xb,
        &net,
        &x,
        v_row,
        v_col,
        Some(NewtonProblem::internal_voltages(&ws)),
    );
    Ok((net, s))
}

/// Result of a single-cell read.
#[derive(Debug, Clone, Serialize)]
pub struct ReadResult {
    pub row: usize,
    pub col: usize,
    pub v_read_v: f64,
    pub scheme: Scheme,
    /// Current into the selected column's sense (A).
    pub measured_a: f64,
    /// Current through the selected cell itself (A).
    pub cell_a: f64,
    /// `measured − cell` (A).
    pub sneak_a: f64,
    /// `sneak / measured`.
    pub sneak_fraction: f64,
    /// The ideal read `g·V` of an isolated cell (A, linear cells) for reference.
    pub ideal_a: f64,
    /// Conductance the read reports, `measured / V` (S).
    pub g_read_siemens: f64,
    pub g_true_siemens: f64,
}

/// Read cell (i, j) with `v_read` on its row, its column sensed at 0 V, the other lines per `scheme`.
pub fn read(
    xb: &Crossbar,
    i: usize,
    j: usize,
    v_read: f64,
    scheme: Scheme,
    opts: &SolveOptions,
) -> Result<(ReadResult, Solved), XbarError> {
    check_cell(xb, i, j)?;
    let (topo, v_row, v_col) = select_bias(xb, i, j, v_read, scheme);
    let (_, s) = solve_biased(xb, &topo, &v_row, &v_col, opts)?;
    let measured = s.i_col[j].unwrap_or(0.0);
    let cell = s.i_cell[i * xb.cols + j];
    let sneak = measured - cell;
    let res = ReadResult {
        row: i,
        col: j,
        v_read_v: v_read,
        scheme,
        measured_a: measured,
        cell_a: cell,
        sneak_a: sneak,
        sneak_fraction: if measured != 0.0 {
            sneak / measured
        } else {
            0.0
        },
        ideal_a: xb.g(i, j) * v_read,
        g_read_siemens: if v_read != 0.0 {
            measured / v_read
        } else {
            0.0
        },
        g_true_siemens: xb.g(i, j),
    };
    Ok((res, s))
}

/// Result of a programming pulse: the voltage across every cell.
#[derive(Debug, Clone, Serialize)]
pub struct ProgramResult {
    pub row: usize,
    pub col: usize,
    pub v_program_v: f64,
    pub scheme: Scheme,
    /// Voltage across the selected cell (V).
    pub v_selected_v: f64,
    /// Largest |voltage| across an unselected cell (V), and where.
    pub v_disturb_max_v: f64,
    pub disturb_cell: (usize, usize),
    /// `v_disturb_max / |v_selected|`.
    pub disturb_ratio: f64,
    /// Voltage across every cell, row-major (V).
    pub v_cell_v: Vec<f64>,
}

/// Apply a programming pulse `v_program` on cell (i, j) with the V/2 or V/3 scheme.
pub fn program(
    xb: &Crossbar,
    i: usize,
    j: usize,
    v_program: f64,
    scheme: Scheme,
    opts: &SolveOptions,
) -> Result<(ProgramResult, Solved), XbarError> {
    check_cell(xb, i, j)?;
    if !matches!(scheme, Scheme::Half | Scheme::Third) {
        return Err(XbarError::Invalid(
            "programming uses the V/2 or V/3 scheme".into(),
        ));
    }
    let (topo, v_row, v_col) = select_bias(xb, i, j, v_program, scheme);
    let (_, s) = solve_biased(xb, &topo, &v_row, &v_col, opts)?;
    let v_cell: Vec<f64> = s.v_word.iter().zip(&s.v_bit).map(|(a, b)| a - b).collect();
    let sel = v_cell[i * xb.cols + j];
    let mut worst = (0.0f64, (0, 0));
    for (k, v) in v_cell.iter().enumerate() {
        if k != i * xb.cols + j && v.abs() > worst.0 {
            worst = (v.abs(), (k / xb.cols, k % xb.cols));
        }
    }
    let res = ProgramResult {
        row: i,
        col: j,
        v_program_v: v_program,
        scheme,
        v_selected_v: sel,
        v_disturb_max_v: worst.0,
        disturb_cell: worst.1,
        disturb_ratio: if sel != 0.0 { worst.0 / sel.abs() } else { 0.0 },
        v_cell_v: v_cell,
    };
    Ok((res, s))
}

fn check_cell(xb: &Crossbar, i: usize, j: usize) -> Result<(), XbarError> {
    if i >= xb.rows || j >= xb.cols {
        return Err(XbarError::Invalid(format!(
            "cell ({i}, {j}) is outside the {}×{} array",
            xb.rows, xb.cols
        )));
    }
    Ok(())
}

/// Parallelism for a factorization of n unknowns: below ~200k unknowns the supernodes are too
/// small for threads to pay off.
fn par_for(n: usize) -> Par {
    if n < 200_000 {
        Par::Seq
    } else {
        Par::rayon(0)
    }
}
