//! What a crossbar request needs in memory, estimated before anything is allocated (see
//! [`crate::limits`]). The constants come from peak resident sizes measured with
//! `/usr/bin/time -f %M netc xbar --rows R --cols R --g-uniform 1e-5 --rw 1 --solver S`
//! (docs/limits.md lists the runs), rounded up.

use super::{Crossbar, LinearMethod, SolveOptions, XbarError};

/// Bytes per cell held by every solver: conductances, the network (nodes, wires, pattern),
/// the detailed solution of one vector and the maps drawn from it.
const BYTES_PER_CELL_BASE: u128 = 200;
/// Sparse direct factor (nested dissection on the 2·R·C-node grid): bytes per cell per
/// `log2(cells)` of fill.
const BYTES_PER_CELL_LOG_DIRECT: u128 = 80;
/// Iterative solver (line-preconditioned CG): work vectors per cell and worker.
const BYTES_PER_CELL_CG: u128 = 64;
/// Nonlinear cells: the Newton Jacobian's LU is not symmetric, and Newton keeps iterates and
/// residuals (measured: 2–3 times the linear solve).
const NONLINEAR_FACTOR: u128 = 3;
/// Per input vector and row (the input) and per output (output, ideal output, error, their
/// JSON or table text).
const BYTES_PER_INPUT: u128 = 16;
const BYTES_PER_OUTPUT: u128 = 256;

/// Memory the dense conductance matrix of an `rows × cols` array takes (checked before the
/// array is built, from the sizes alone).
pub fn check_size(rows: usize, cols: usize) -> Result<(), XbarError> {
    let cells = rows as u128 * cols as u128;
    crate::limits::check(
        || format!("a {rows}×{cols} crossbar ({cells} cells)"),
        cells.saturating_mul(BYTES_PER_CELL_BASE),
    )
    .map_err(|e| XbarError::Invalid(e.to_string()))
}

/// Estimated peak bytes of solving `vectors` inputs on `xb` with `opts`.
pub fn estimate_bytes(xb: &Crossbar, opts: &SolveOptions, vectors: usize) -> u128 {
    let (r, c) = (xb.rows as u128, xb.cols as u128);
    let cells = r * c;
    let log2 = (128 - cells.leading_zeros()) as u128;
    let workers = rayon::current_num_threads() as u128;
    let solver = match opts.method {
        LinearMethod::Iterative(_) => cells * BYTES_PER_CELL_CG * workers.max(1),
        LinearMethod::Direct => {
            let fill = cells * log2.max(1) * BYTES_PER_CELL_LOG_DIRECT;
            // dense blocks over the terminals (drivers and sense lines) per worker
            let dense = (r + c) * (r + c) * 8 * (workers + 1);
            let f = if super::ops::is_linear(xb) {
                1
            } else {
                NONLINEAR_FACTOR
            };
            (fill + dense) * f
        }
    };
    let io = (vectors as u128).saturating_mul(r * BYTES_PER_INPUT + c * BYTES_PER_OUTPUT);
    (cells * BYTES_PER_CELL_BASE)
        .saturating_add(solver)
        .saturating_add(io)
}

/// Refuse a request whose estimate exceeds the memory budget.
pub fn check(xb: &Crossbar, opts: &SolveOptions, vectors: usize) -> Result<(), XbarError> {
    let solver = match opts.method {
        LinearMethod::Iterative(_) => "the iterative solver",
        LinearMethod::Direct => "the direct solver",
    };
    crate::limits::check(
        || {
            format!(
                "solving a {}×{} crossbar with {vectors} input vector(s) by {solver}",
                xb.rows, xb.cols
            )
        },
        estimate_bytes(xb, opts, vectors),
    )
    .map_err(|e| XbarError::Invalid(e.to_string()))
}
