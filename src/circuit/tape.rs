//! Behavioural expressions compiled to a tape over circuit unknowns: value and gradient by a
//! forward and a reverse sweep, no allocation per evaluation, with step limiting of the arguments
//! of `exp`, `sinh` and `cosh` between Newton iterations.

use crate::expr::{apply, apply_grad, BinOp, Expr, Func};

#[derive(Debug, Clone, Copy, PartialEq)]
enum Op {
    Const(f64),
    /// Index into the circuit's unknown vector.
    Var(usize),
    Neg(usize),
    Bin(BinOp, usize, usize),
    Call1(Func, usize),
    Call2(Func, usize, usize),
}

/// Errors while compiling an expression against the circuit's unknowns.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TapeError {
    #[error("unresolved parameter `{0}`")]
    Param(String),
    #[error("unknown node `{0}`")]
    Node(String),
    #[error("I({0}): `{0}` is not a voltage source")]
    Current(String),
    #[error("function `{0}` takes {1} argument(s)")]
    Arity(&'static str, usize),
}

/// A compiled expression.
#[derive(Debug, Clone)]
pub struct Tape {
    ops: Vec<Op>,
    /// Distinct unknown indices the expression reads (sorted).
    pub deps: Vec<usize>,
    /// For every `Var` op, its position in `deps`.
    var_pos: Vec<usize>,
    vals: Vec<f64>,
    adj: Vec<f64>,
    /// Previous (limited) argument of each limited call op, by op index.
    prev_arg: Vec<f64>,
    scratch: Vec<f64>,
    /// The last evaluation was outside the expression's domain (a non-finite value or
    /// derivative, linearised as a constant): the raw value, for messages.
    pub out_of_domain: Option<f64>,
}

/// Largest change of an `exp`/`sinh`/`cosh` argument taken in one Newton step before limiting.
const ARG_STEP_LIMIT: f64 = 2.0;

impl Tape {
    /// Compile `e`; `node` maps node names to unknown indices (ground to the scratch index), `branch`
    /// maps a voltage-source name to its branch-current unknown.
    pub fn compile(
        e: &Expr,
        node: &dyn Fn(&str) -> Option<usize>,
        branch: &dyn Fn(&str) -> Option<usize>,
    ) -> Result<Tape, TapeError> {
        let mut ops = Vec::new();
        build(e, &mut ops, node, branch)?;
        let mut deps: Vec<usize> = ops
            .iter()
            .filter_map(|o| if let Op::Var(i) = o { Some(*i) } else { None })
            .collect();
        deps.sort_unstable();
        deps.dedup();
        let var_pos = ops
            .iter()
            .map(|o| match o {
                Op::Var(i) => deps.binary_search(i).unwrap_or(0),
                _ => 0,
            })
            .collect();
        let n = ops.len();
        Ok(Tape {
            ops,
            deps,
            var_pos,
            vals: vec![0.0; n],
            adj: vec![0.0; n],
            prev_arg: vec![f64::NAN; n],
            scratch: Vec::with_capacity(n),
            out_of_domain: None,
        })
    }

    /// Evaluate at unknowns `x`; writes ∂f/∂x[deps[k]] into `grad[k]` and returns (f, limited).
    /// With `limit`, arguments of exponential-like functions move at most a logarithmic step from
    /// their previous value and the function is replaced by its tangent there.
    pub fn eval(&mut self, x: &[f64], grad: &mut [f64], limit: bool) -> (f64, bool) {
        let mut limited = false;
        for i in 0..self.ops.len() {
            let v = match self.ops[i] {
                Op::Const(c) => c,
                Op::Var(k) => x[k],
                Op::Neg(a) => -self.vals[a],
                Op::Bin(op, a, b) => {
                    let (a, b) = (self.vals[a], self.vals[b]);
                    match op {
                        BinOp::Add => a + b,
                        BinOp::Sub => a - b,
                        BinOp::Mul => a * b,
                        BinOp::Div => a / b,
                        BinOp::Pow => crate::expr::pow(a, b),
                    }
                }
                Op::Call1(f, a) => {
                    let arg = self.vals[a];
                    if matches!(f, Func::Exp | Func::Sinh | Func::Cosh) {
                        let prev = self.prev_arg[i];
                        let lim = if limit && prev.is_finite() {
                            limit_arg(arg, prev)
                        } else {
                            arg
                        };
                        if lim != arg {
                            limited = true;
                        }
                        self.prev_arg[i] = lim;
                        let mut d = [0.0];
                        apply_grad(f, &[lim], &mut d);
                        // tangent at the limited argument; slope kept in adj[i] for the sweep
                        self.adj[i] = d[0];
                        apply(f, &[lim]) + d[0] * (arg - lim)
                    } else {
                        apply(f, &[arg])
                    }
                }
                Op::Call2(f, a, b) => apply(f, &[self.vals[a], self.vals[b]]),
            };
            self.vals[i] = v;
        }
        let n = self.ops.len();
        let out = self.vals[n - 1];
        // Reverse sweep. Slopes of limited calls were stashed in adj; move them aside first.
        let mut slopes = std::mem::take(&mut self.adj);
        let mut adj = std::mem::take(&mut self.scratch);
        adj.clear();
        adj.resize(n, 0.0);
        adj[n - 1] = 1.0;
        grad.iter_mut().for_each(|g| *g = 0.0);
        for i in (0..n).rev() {
            let w = adj[i];
            if w == 0.0 {
                continue;
            }
            match self.ops[i] {
                Op::Const(_) => {}
                Op::Var(_) => grad[self.var_pos[i]] += w,
                Op::Neg(a) => adj[a] -= w,
                Op::Bin(op, a, b) => {
                    let (va, vb) = (self.vals[a], self.vals[b]);
                    match op {
                        BinOp::Add => {
                            adj[a] += w;
                            adj[b] += w;
                        }
                        BinOp::Sub => {
                            adj[a] += w;
                            adj[b] -= w;
                        }
                        BinOp::Mul => {
                            adj[a] += w * vb;
                            adj[b] += w * va;
                        }
                        BinOp::Div => {
                            adj[a] += w / vb;
                            adj[b] -= w * va / (vb * vb);
                        }
                        BinOp::Pow => {
                            let mut d = [0.0, 0.0];
                            apply_grad(Func::Pow, &[va, vb], &mut d);
                            adj[a] += w * d[0];
                            adj[b] += w * d[1];
                        }
                    }
                }
                Op::Call1(f, a) => {
                    let d = if matches!(f, Func::Exp | Func::Sinh | Func::Cosh) {
                        slopes[i]
                    } else {
                        let mut d = [0.0];
                        apply_grad(f, &[self.vals[a]], &mut d);
                        d[0]
                    };
                    adj[a] += w * d;
                }
                Op::Call2(f, a, b) => {
                    let mut d = [0.0, 0.0];
                    apply_grad(f, &[self.vals[a], self.vals[b]], &mut d);
                    adj[a] += w * d[0];
                    adj[b] += w * d[1];
                }
            }
        }
        slopes.iter_mut().for_each(|s| *s = 0.0);
        self.adj = slopes;
        self.scratch = adj;
        // Outside a function's domain (ln 0, sqrt′ at 0, …) at an intermediate Newton iterate:
        // linearise as a constant there and refuse convergence at this point; a solution that
        // is itself outside the domain then ends in a non-convergence report.
        let mut out = out;
        self.out_of_domain = None;
        if !out.is_finite() || grad.iter().any(|g| !g.is_finite()) {
            self.out_of_domain = Some(out);
            if !out.is_finite() {
                out = 0.0;
            }
            grad.iter_mut()
                .filter(|g| !g.is_finite())
                .for_each(|g| *g = 0.0);
            limited = true;
        }
        (out, limited)
    }

    /// Forget the limiting history (start of a new solve).
    pub fn reset(&mut self) {
        self.prev_arg.iter_mut().for_each(|p| *p = f64::NAN);
    }
}

/// Logarithmic damping of a large step of an exponential argument (like SPICE's `pnjlim`).
fn limit_arg(arg: f64, prev: f64) -> f64 {
    let d = arg - prev;
    if d.abs() <= ARG_STEP_LIMIT || arg.abs() <= 1.0 {
        return arg;
    }
    // only damp steps that push the argument further out
    if arg.abs() < prev.abs() {
        return arg;
    }
    prev + d.signum() * (ARG_STEP_LIMIT + (d.abs() - ARG_STEP_LIMIT + 1.0).ln())
}

fn build(
    e: &Expr,
    ops: &mut Vec<Op>,
    node: &dyn Fn(&str) -> Option<usize>,
    branch: &dyn Fn(&str) -> Option<usize>,
) -> Result<usize, TapeError> {
    let op = match e {
        Expr::Num(x) => Op::Const(*x),
        Expr::Param(p) => return Err(TapeError::Param(p.clone())),
        Expr::V(a, b) => {
            let ia = node(a).ok_or_else(|| TapeError::Node(a.clone()))?;
            ops.push(Op::Var(ia));
            let pa = ops.len() - 1;
            if let Some(b) = b {
                let ib = node(b).ok_or_else(|| TapeError::Node(b.clone()))?;
                ops.push(Op::Var(ib));
                let pb = ops.len() - 1;
                Op::Bin(BinOp::Sub, pa, pb)
            } else {
                return Ok(pa);
            }
        }
        Expr::I(v) => Op::Var(branch(v).ok_or_else(|| TapeError::Current(v.clone()))?),
        Expr::Neg(a) => Op::Neg(build(a, ops, node, branch)?),
        Expr::Bin(op, a, b) => {
            let a = build(a, ops, node, branch)?;
            let b = build(b, ops, node, branch)?;
            Op::Bin(*op, a, b)
        }
        Expr::Call(f, args) => {
            if args.len() != f.arity() {
                return Err(TapeError::Arity(f.name(), f.arity()));
            }
            let a = build(&args[0], ops, node, branch)?;
            if f.arity() == 2 {
                let b = build(&args[1], ops, node, branch)?;
                Op::Call2(*f, a, b)
            } else {
                Op::Call1(*f, a)
            }
        }
    };
    ops.push(op);
    Ok(ops.len() - 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(n: &str) -> Expr {
        Expr::V(n.into(), None)
    }

    #[test]
    fn gradient_matches_finite_differences() {
        // g*sinh(k*V(a,b))/k + tanh(V(a))*I(v1) - pow(V(b)+2, 1.5)/exp(V(a)) + max(V(a),V(b))^2
        let g = Expr::bin(
            BinOp::Div,
            Expr::bin(
                BinOp::Mul,
                Expr::Num(1e-4),
                Expr::Call(
                    Func::Sinh,
                    vec![Expr::bin(
                        BinOp::Mul,
                        Expr::Num(3.0),
                        Expr::V("a".into(), Some("b".into())),
                    )],
                ),
            ),
            Expr::Num(3.0),
        );
        let t = Expr::bin(
            BinOp::Mul,
            Expr::Call(Func::Tanh, vec![v("a")]),
            Expr::I("v1".into()),
        );
        let p = Expr::bin(
            BinOp::Div,
            Expr::Call(
                Func::Pow,
                vec![
                    Expr::bin(BinOp::Add, v("b"), Expr::Num(2.0)),
                    Expr::Num(1.5),
                ],
            ),
            Expr::Call(Func::Exp, vec![v("a")]),
        );
        let m = Expr::bin(
            BinOp::Pow,
            Expr::Call(Func::Max, vec![v("a"), v("b")]),
            Expr::Num(2.0),
        );
        let e = Expr::bin(
            BinOp::Add,
            Expr::bin(BinOp::Sub, Expr::bin(BinOp::Add, g, t), p),
            Expr::Neg(Box::new(m)),
        );
        let node = |n: &str| match n {
            "a" => Some(0),
            "b" => Some(1),
            _ => None,
        };
        let br = |n: &str| if n == "v1" { Some(2) } else { None };
        let mut tape = Tape::compile(&e, &node, &br).unwrap();
        assert_eq!(tape.deps, vec![0, 1, 2]);
        let x = [0.3, -0.7, 2e-3];
        let mut grad = [0.0; 3];
        let (f0, lim) = tape.eval(&x, &mut grad, false);
        assert!(!lim);
        for k in 0..3 {
            let h = 1e-6;
            let mut xp = x;
            let mut xm = x;
            xp[k] += h;
            xm[k] -= h;
            let mut gg = [0.0; 3];
            let fp = tape.eval(&xp, &mut gg, false).0;
            let fm = tape.eval(&xm, &mut gg, false).0;
            let fd = (fp - fm) / (2.0 * h);
            assert!(
                (fd - grad[k]).abs() < 1e-7 * (1.0 + fd.abs()),
                "k={k} fd={fd} an={}",
                grad[k]
            );
        }
        assert!(f0.is_finite());
    }

    #[test]
    fn limiting_damps_large_exponential_steps() {
        let e = Expr::Call(Func::Exp, vec![v("a")]);
        let node = |n: &str| if n == "a" { Some(0) } else { None };
        let br = |_: &str| None;
        let mut tape = Tape::compile(&e, &node, &br).unwrap();
        let mut g = [0.0];
        tape.eval(&[1.0], &mut g, true);
        let (f, lim) = tape.eval(&[100.0], &mut g, true);
        assert!(lim);
        assert!(f.is_finite() && f < 1e6);
        // at convergence (no step) the value is exact
        let mut tape = Tape::compile(&e, &node, &br).unwrap();
        let (f, lim) = tape.eval(&[0.5], &mut g, true);
        assert!(!lim && (f - 0.5f64.exp()).abs() < 1e-15);
    }
}
