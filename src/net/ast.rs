//! Generic statement tree of a `.net` file: `key value* (";" | "{" stmt* "}")`, every piece located.

use crate::span::Span;

/// One statement.
#[derive(Debug, Clone, PartialEq)]
pub struct Stmt {
    /// Lower-case key (`conv2d`, `g_min`, …).
    pub key: String,
    pub key_span: Span,
    pub values: Vec<Value>,
    /// Nested statements when the statement has a `{ … }` body.
    pub body: Option<Vec<Stmt>>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Value {
    pub kind: ValueKind,
    pub span: Span,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ValueKind {
    /// A number after SI-suffix scaling, with its (lower-case, canonical) unit: "" (none), "s",
    /// "ohm", "v", "a", "m", "hz".
    Number { value: f64, unit: String },
    /// `8x8x1`, `128 x 64`.
    Dims(Vec<usize>),
    /// `a .. b`.
    Range(Box<Value>, Box<Value>),
    /// `"text"`.
    Str(String),
    /// A bare word (`relu`, `same`, `on`).
    Ident(String),
}

impl ValueKind {
    /// A short description used in error messages.
    pub fn describe(&self) -> &'static str {
        match self {
            ValueKind::Number { .. } => "a number",
            ValueKind::Dims(_) => "dimensions",
            ValueKind::Range(..) => "a range",
            ValueKind::Str(_) => "a string",
            ValueKind::Ident(_) => "a word",
        }
    }
}
