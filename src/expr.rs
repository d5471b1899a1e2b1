//! Expression trees shared by `.param`, `{…}` values and behavioural (`B`) sources.
//!
//! The parser produces [`Expr`] with names; elaboration substitutes parameters (leaving only numbers,
//! node voltages and source currents for B sources), and the circuit layer compiles the remaining tree
//! against unknown indices.

use std::fmt;

/// Binary operators of the dialect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    /// `^` and `**`.
    Pow,
}

/// Built-in functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Func {
    Exp,
    /// Natural logarithm (`log` and `ln`, as in ngspice).
    Ln,
    Log10,
    Sqrt,
    Sinh,
    Cosh,
    Tanh,
    Sin,
    Cos,
    Atan,
    Abs,
    Min,
    Max,
    /// `pow(a, b)`: `|a|^b` in B sources; in `.param` ngspice evaluates the plain power
    /// (`pow(-2, 3)` = −8), and so does [`Expr::eval_const`].
    Pow,
    /// `pwr(a, b)`: in B sources the signed power `sign(a)·|a|^b` (ngspice: `pwr(-2, 2)` = −4);
    /// in `.param` ngspice evaluates it as `|a|^b`, and so does [`Expr::eval_const`].
    Pwr,
}

impl Func {
    /// Look a function up by its (case-insensitive) name.
    pub fn from_name(name: &str) -> Option<Func> {
        Some(match name.to_ascii_lowercase().as_str() {
            "exp" => Func::Exp,
            "log" | "ln" => Func::Ln,
            "log10" => Func::Log10,
            "sqrt" => Func::Sqrt,
            "sinh" => Func::Sinh,
            "cosh" => Func::Cosh,
            "tanh" => Func::Tanh,
            "sin" => Func::Sin,
            "cos" => Func::Cos,
            "atan" => Func::Atan,
            "abs" => Func::Abs,
            "min" => Func::Min,
            "max" => Func::Max,
            "pow" => Func::Pow,
            "pwr" => Func::Pwr,
            _ => return None,
        })
    }

    /// Number of arguments the function takes.
    pub fn arity(self) -> usize {
        match self {
            Func::Min | Func::Max | Func::Pow | Func::Pwr => 2,
            _ => 1,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Func::Exp => "exp",
            Func::Ln => "ln",
            Func::Log10 => "log10",
            Func::Sqrt => "sqrt",
            Func::Sinh => "sinh",
            Func::Cosh => "cosh",
            Func::Tanh => "tanh",
            Func::Sin => "sin",
            Func::Cos => "cos",
            Func::Atan => "atan",
            Func::Abs => "abs",
            Func::Min => "min",
            Func::Max => "max",
            Func::Pow => "pow",
            Func::Pwr => "pwr",
        }
    }
}

/// An expression tree. Names are stored lower-case.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Num(f64),
    /// A parameter reference, resolved during elaboration.
    Param(String),
    /// `V(n)` (second is `None`) or `V(n1, n2)`.
    V(String, Option<String>),
    /// `I(vsrc)`: branch current of an independent voltage source (ngspice sign).
    I(String),
    Neg(Box<Expr>),
    Bin(BinOp, Box<Expr>, Box<Expr>),
    Call(Func, Vec<Expr>),
}

impl Expr {
    pub fn bin(op: BinOp, a: Expr, b: Expr) -> Expr {
        Expr::Bin(op, Box::new(a), Box::new(b))
    }

    /// Visit every node of the tree.
    pub fn visit(&self, f: &mut impl FnMut(&Expr)) {
        f(self);
        match self {
            Expr::Neg(a) => a.visit(f),
            Expr::Bin(_, a, b) => {
                a.visit(f);
                b.visit(f);
            }
            Expr::Call(_, args) => args.iter().for_each(|a| a.visit(f)),
            _ => {}
        }
    }

    /// True when the tree contains no node voltage or branch current.
    pub fn is_constant(&self) -> bool {
        let mut c = true;
        self.visit(&mut |e| {
            if matches!(e, Expr::V(..) | Expr::I(_) | Expr::Param(_)) {
                c = false
            }
        });
        c
    }
}

impl fmt::Display for Expr {
    /// Writes the expression in the dialect's syntax (ngspice accepts it).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expr::Num(x) => {
                if *x < 0.0 {
                    write!(f, "({x:e})")
                } else {
                    write!(f, "{x:e}")
                }
            }
            Expr::Param(p) => write!(f, "{p}"),
            Expr::V(a, None) => write!(f, "V({a})"),
            Expr::V(a, Some(b)) => write!(f, "V({a},{b})"),
            Expr::I(v) => write!(f, "I({v})"),
            Expr::Neg(a) => write!(f, "(-{a})"),
            Expr::Bin(op, a, b) => {
                let o = match op {
                    BinOp::Add => "+",
                    BinOp::Sub => "-",
                    BinOp::Mul => "*",
                    BinOp::Div => "/",
                    BinOp::Pow => "^",
                };
                write!(f, "({a}{o}{b})")
            }
            Expr::Call(func, args) => {
                write!(f, "{}(", func.name())?;
                for (i, a) in args.iter().enumerate() {
                    if i > 0 {
                        write!(f, ",")?;
                    }
                    write!(f, "{a}")?;
                }
                write!(f, ")")
            }
        }
    }
}

/// Apply a function to evaluated arguments.
pub fn apply(func: Func, a: &[f64]) -> f64 {
    match func {
        Func::Exp => a[0].exp(),
        Func::Ln => a[0].ln(),
        Func::Log10 => a[0].log10(),
        Func::Sqrt => a[0].sqrt(),
        Func::Sinh => a[0].sinh(),
        Func::Cosh => a[0].cosh(),
        Func::Tanh => a[0].tanh(),
        Func::Sin => a[0].sin(),
        Func::Cos => a[0].cos(),
        Func::Atan => a[0].atan(),
        Func::Abs => a[0].abs(),
        Func::Min => a[0].min(a[1]),
        Func::Max => a[0].max(a[1]),
        Func::Pow => pow(a[0], a[1]),
        Func::Pwr => a[0].signum() * pow(a[0], a[1]),
    }
}

/// Partial derivatives of `func` with respect to each argument, at `a`.
pub fn apply_grad(func: Func, a: &[f64], out: &mut [f64]) {
    match func {
        Func::Exp => out[0] = a[0].exp(),
        Func::Ln => out[0] = 1.0 / a[0],
        Func::Log10 => out[0] = 1.0 / (a[0] * std::f64::consts::LN_10),
        Func::Sqrt => out[0] = 0.5 / a[0].sqrt(),
        Func::Sinh => out[0] = a[0].cosh(),
        Func::Cosh => out[0] = a[0].sinh(),
        Func::Tanh => {
            let t = a[0].tanh();
            out[0] = 1.0 - t * t
        }
        Func::Sin => out[0] = a[0].cos(),
        Func::Cos => out[0] = -a[0].sin(),
        Func::Atan => out[0] = 1.0 / (1.0 + a[0] * a[0]),
        Func::Abs => out[0] = if a[0] >= 0.0 { 1.0 } else { -1.0 },
        Func::Min => {
            let first = a[0] <= a[1];
            out[0] = if first { 1.0 } else { 0.0 };
            out[1] = if first { 0.0 } else { 1.0 };
        }
        Func::Max => {
            let first = a[0] >= a[1];
            out[0] = if first { 1.0 } else { 0.0 };
            out[1] = if first { 0.0 } else { 1.0 };
        }
        Func::Pow => {
            // d/da |a|^b = b·|a|^(b−1)·sign(a); d/db = |a|^b·ln|a|
            let m = a[0].abs();
            let p = m.powf(a[1]);
            out[0] = if a[1] == 0.0 {
                0.0
            } else {
                a[1] * m.powf(a[1] - 1.0) * a[0].signum()
            };
            out[1] = if m > 0.0 { p * m.ln() } else { 0.0 };
        }
        Func::Pwr => {
            // sign(a)·|a|^b: d/da = b·|a|^(b−1) (the signs cancel); d/db = sign(a)·|a|^b·ln|a|
            let m = a[0].abs();
            out[0] = if a[1] == 0.0 {
                0.0
            } else {
                a[1] * m.powf(a[1] - 1.0)
            };
            out[1] = if m > 0.0 {
                a[0].signum() * m.powf(a[1]) * m.ln()
            } else {
                0.0
            };
        }
    }
}

/// Power as ngspice's B sources and `.param` evaluate `a^b` and `pow(a,b)`: `|a|^b`.
pub fn pow(a: f64, b: f64) -> f64 {
    a.abs().powf(b)
}

/// Why [`Expr::eval_const`] could not produce a number.
#[derive(Debug, Clone, PartialEq)]
pub enum ConstEvalError {
    /// A parameter the lookup does not know.
    UnknownParam(String),
    /// The expression reads a node voltage or a branch current.
    NotConstant,
    /// The value is infinite or NaN (e.g. a division by zero or `sqrt(-1)`).
    NonFinite,
}

impl Expr {
    /// Evaluate an expression made of numbers, parameters (resolved by `lookup`) and functions,
    /// with the semantics of ngspice's parameter evaluator (checked against ngspice 39):
    /// `a^b` and `a**b` are `|a|^b` (so `(-2)^3` = 8), `pow(a,b)` is the plain power (NaN, hence an
    /// error, for a negative base and a fractional exponent), `log` is the natural logarithm.
    pub fn eval_const(&self, lookup: &dyn Fn(&str) -> Option<f64>) -> Result<f64, ConstEvalError> {
        let v = match self {
            Expr::Num(x) => *x,
            Expr::Param(p) => lookup(p).ok_or_else(|| ConstEvalError::UnknownParam(p.clone()))?,
            Expr::V(..) | Expr::I(_) => return Err(ConstEvalError::NotConstant),
            Expr::Neg(a) => -a.eval_const(lookup)?,
            Expr::Bin(op, a, b) => {
                let x = a.eval_const(lookup)?;
                let y = b.eval_const(lookup)?;
                match op {
                    BinOp::Add => x + y,
                    BinOp::Sub => x - y,
                    BinOp::Mul => x * y,
                    BinOp::Div => x / y,
                    BinOp::Pow => x.abs().powf(y),
                }
            }
            Expr::Call(func, args) => {
                let mut vals = [0.0f64; 2];
                if args.len() != func.arity() || args.len() > 2 {
                    return Err(ConstEvalError::NonFinite);
                }
                for (slot, a) in vals.iter_mut().zip(args) {
                    *slot = a.eval_const(lookup)?;
                }
                match func {
                    // ngspice's parameter evaluator: pow(-2, 3) = −8, pow(-2, 0.5) an error,
                    // pwr(-2, 3) = 8
                    Func::Pow => vals[0].powf(vals[1]),
                    Func::Pwr => pow(vals[0], vals[1]),
                    _ => apply(*func, &vals[..args.len()]),
                }
            }
        };
        if v.is_finite() {
            Ok(v)
        } else {
            Err(ConstEvalError::NonFinite)
        }
    }

    /// Names of the parameters the expression refers to (in order of appearance, repeated).
    pub fn param_names(&self) -> Vec<&str> {
        let mut out = Vec::new();
        fn walk<'a>(e: &'a Expr, out: &mut Vec<&'a str>) {
            match e {
                Expr::Param(p) => out.push(p),
                Expr::Neg(a) => walk(a, out),
                Expr::Bin(_, a, b) => {
                    walk(a, out);
                    walk(b, out);
                }
                Expr::Call(_, args) => args.iter().for_each(|a| walk(a, out)),
                _ => {}
            }
        }
        walk(self, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(f: Func, a: f64, b: f64) -> Expr {
        Expr::Call(f, vec![Expr::Num(a), Expr::Num(b)])
    }

    /// The values ngspice 39 gives (B sources: `V=pwr(V(a),3)` with V(a) = −2 is −8;
    /// `.param p={pow(-2,3)}` is −8, `{pwr(-2,3)}` is 8, `{pow(-2,0.5)}` an error).
    #[test]
    fn powers_as_ngspice_evaluates_them() {
        let none = |_: &str| None;
        // .param
        assert_eq!(call(Func::Pow, -2.0, 3.0).eval_const(&none), Ok(-8.0));
        assert_eq!(call(Func::Pow, -2.0, 2.0).eval_const(&none), Ok(4.0));
        assert_eq!(
            call(Func::Pow, -2.0, 0.5).eval_const(&none),
            Err(ConstEvalError::NonFinite)
        );
        assert_eq!(call(Func::Pwr, -2.0, 3.0).eval_const(&none), Ok(8.0));
        assert_eq!(
            call(Func::Pwr, -2.0, 0.5).eval_const(&none),
            Ok(2f64.sqrt())
        );
        // B sources
        assert_eq!(apply(Func::Pow, &[-2.0, 3.0]), 8.0);
        assert_eq!(apply(Func::Pwr, &[-2.0, 2.0]), -4.0);
        assert!((apply(Func::Pwr, &[-2.0, 1.5]) + 2f64.powf(1.5)).abs() < 1e-15);
        assert_eq!(apply(Func::Pwr, &[0.0, 2.0]), 0.0);
        assert_eq!(Func::from_name("PWR"), Some(Func::Pwr));
        assert_eq!(Func::Pwr.name(), "pwr");
    }

    #[test]
    fn power_gradients_match_finite_differences() {
        for f in [Func::Pow, Func::Pwr] {
            for (a, b) in [(-0.7, 3.0), (-1.3, 1.5), (0.4, 2.5), (2.0, -0.5)] {
                let mut g = [0.0; 2];
                apply_grad(f, &[a, b], &mut g);
                let h = 1e-6;
                let da = (apply(f, &[a + h, b]) - apply(f, &[a - h, b])) / (2.0 * h);
                let db = (apply(f, &[a, b + h]) - apply(f, &[a, b - h])) / (2.0 * h);
                assert!(
                    (g[0] - da).abs() < 1e-7 * (1.0 + da.abs()),
                    "{f:?} d/da at {a}, {b}"
                );
                assert!(
                    (g[1] - db).abs() < 1e-7 * (1.0 + db.abs()),
                    "{f:?} d/db at {a}, {b}"
                );
            }
        }
    }
}
