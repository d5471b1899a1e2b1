//! pest front end: source text → [`Stmt`] list, with `include "file";` spliced in place.

use super::ast::{Stmt, Value, ValueKind};
use super::units::split_suffix;
use super::NetError;
use crate::span::Span;
use pest::iterators::Pair;
use pest::Parser;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Deepest `{` nesting and `include` chain. The pest parser and the readers after it recurse
/// once per level; the limits keep them far from the end of the stack (real networks nest 3
/// levels and include 1 or 2 files).
pub const MAX_NESTING: usize = 64;
pub const MAX_INCLUDE_DEPTH: usize = 32;

#[derive(pest_derive::Parser)]
#[grammar = "../grammar/net.pest"]
struct NetParser;

/// Parse a file and everything it includes.
pub fn parse_file(path: &Path) -> Result<Vec<Stmt>, NetError> {
    let src = std::fs::read_to_string(path).map_err(|e| NetError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    let base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
    let mut stack = vec![canonical(path)];
    parse_source(&src, &path.display().to_string(), &base, &mut stack)
}

/// Parse source text; includes resolve against `base_dir`.
pub fn parse_str(src: &str, name: &str, base_dir: &Path) -> Result<Vec<Stmt>, NetError> {
    let mut stack = vec![canonical(&base_dir.join(name))];
    parse_source(src, name, base_dir, &mut stack)
}

fn canonical(p: &Path) -> PathBuf {
    std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf())
}

struct Ctx {
    file: Arc<str>,
    lines: Vec<Arc<str>>,
}

impl Ctx {
    fn span_at(&self, line: usize, col: usize, len: usize) -> Span {
        let text = self
            .lines
            .get(line.saturating_sub(1))
            .cloned()
            .unwrap_or_else(|| Arc::from(""));
        Span::new(self.file.clone(), line, col, len, text)
    }

    fn span(&self, p: &pest::Span<'_>) -> Span {
        let (line, col) = p.start_pos().line_col();
        let s = p.as_str();
        let first_line = s.split('\n').next().unwrap_or("");
        let len = first_line.chars().count().max(1);
        self.span_at(line, col, len)
    }
}

fn rule_name(r: &Rule) -> String {
    match r {
        Rule::EOI => "end of file",
        Rule::include => "`include`",
        Rule::stmt => "a statement",
        Rule::body => "`{`",
        Rule::key => "a keyword",
        Rule::range => "a range",
        Rule::dims => "dimensions like 3x3",
        Rule::uint => "an integer",
        Rule::number => "a number",
        Rule::mantissa => "a number",
        Rule::exponent => "an exponent",
        Rule::unit => "a unit",
        Rule::string => "a string",
        Rule::string_in => "string text",
        Rule::ident | Rule::word => "a name",
        _ => "something else",
    }
    .to_string()
}

fn parse_source(
    src: &str,
    name: &str,
    base: &Path,
    stack: &mut Vec<PathBuf>,
) -> Result<Vec<Stmt>, NetError> {
    let ctx = Ctx {
        file: Arc::from(name),
        lines: src.lines().map(Arc::from).collect(),
    };
    if let Some((line, col)) = too_deep(src) {
        return Err(NetError::Syntax {
            span: ctx.span_at(line, col, 1),
            message: format!("`{{` nested deeper than {MAX_NESTING} levels"),
        });
    }
    let mut pairs = NetParser::parse(Rule::file, src).map_err(|e| {
        let (line, col) = match e.line_col {
            pest::error::LineColLocation::Pos(p) => p,
            pest::error::LineColLocation::Span(p, _) => p,
        };
        let e = e.renamed_rules(rule_name);
        let message = match &e.variant {
            pest::error::ErrorVariant::ParsingError { .. } => e.variant.message().to_string(),
            pest::error::ErrorVariant::CustomError { message } => message.clone(),
        };
        let message = message.replace('\n', " ");
        NetError::Syntax {
            span: ctx.span_at(line, col, 1),
            message: if message.contains(';') || message.contains("`;`") {
                message
            } else {
                format!("{message} (or a missing `;`)")
            },
        }
    })?;
    let file = pairs.next().expect("grammar: file rule");
    let mut out = Vec::new();
    for item in file.into_inner() {
        match item.as_rule() {
            Rule::include => {
                let s = item.into_inner().next().expect("grammar: include string");
                let sp = ctx.span(&s.as_span());
                let rel = s.into_inner().next().map(|p| p.as_str()).unwrap_or("");
                let path = base.join(rel);
                let canon = canonical(&path);
                if stack.len() >= MAX_INCLUDE_DEPTH {
                    return Err(NetError::Include {
                        span: sp,
                        path: rel.to_string(),
                        message: format!("`include` files nested deeper than {MAX_INCLUDE_DEPTH}"),
                    });
                }
                if stack.contains(&canon) {
                    return Err(NetError::IncludeCycle {
                        span: sp,
                        path: rel.to_string(),
                    });
                }
                let text = std::fs::read_to_string(&path).map_err(|e| NetError::Include {
                    span: sp.clone(),
                    path: rel.to_string(),
                    message: e.to_string(),
                })?;
                let sub_base = path.parent().unwrap_or(Path::new(".")).to_path_buf();
                stack.push(canon);
                let mut inner = parse_source(&text, &path.display().to_string(), &sub_base, stack)?;
                stack.pop();
                out.append(&mut inner);
            }
            Rule::stmt => out.push(stmt(&ctx, item)?),
            _ => {}
        }
    }
    Ok(out)
}

/// Line and column (1-based) of the first `{` deeper than [`MAX_NESTING`], skipping comments
/// and strings as the grammar does; checked before the recursive parser runs.
fn too_deep(src: &str) -> Option<(usize, usize)> {
    let b = src.as_bytes();
    let (mut i, mut depth) = (0usize, 0usize);
    while i < b.len() {
        match b[i] {
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'/' if b.get(i + 1) == Some(&b'/') => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i < b.len() && !(b[i] == b'*' && b.get(i + 1) == Some(&b'/')) {
                    i += 1;
                }
                i += 2;
                continue;
            }
            b'"' => {
                i += 1;
                while i < b.len() && b[i] != b'"' && b[i] != b'\n' {
                    i += 1;
                }
            }
            b'{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    let before = &src[..i];
                    let line = before.matches('\n').count() + 1;
                    let start = before.rfind('\n').map_or(0, |p| p + 1);
                    return Some((line, src[start..i].chars().count() + 1));
                }
            }
            b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    None
}

fn stmt(ctx: &Ctx, p: Pair<'_, Rule>) -> Result<Stmt, NetError> {
    let mut inner = p.into_inner();
    let k = inner.next().expect("grammar: stmt key");
    let key_span = ctx.span(&k.as_span());
    let key = k.as_str().to_ascii_lowercase();
    let mut values = Vec::new();
    let mut body = None;
    for part in inner {
        match part.as_rule() {
            Rule::body => {
                let mut b = Vec::new();
                for s in part.into_inner() {
                    b.push(stmt(ctx, s)?);
                }
                body = Some(b);
            }
            _ => values.push(value(ctx, part)?),
        }
    }
    Ok(Stmt {
        key,
        key_span,
        values,
        body,
    })
}

fn value(ctx: &Ctx, p: Pair<'_, Rule>) -> Result<Value, NetError> {
    let span = ctx.span(&p.as_span());
    let kind = match p.as_rule() {
        Rule::range => {
            let mut it = p.into_inner();
            let a = value(ctx, it.next().expect("grammar: range lo"))?;
            let b = value(ctx, it.next().expect("grammar: range hi"))?;
            ValueKind::Range(Box::new(a), Box::new(b))
        }
        Rule::dims => {
            let mut d = Vec::new();
            for u in p.into_inner() {
                let n: usize = u.as_str().parse().map_err(|_| NetError::Invalid {
                    span: ctx.span(&u.as_span()),
                    message: "dimension too large".into(),
                })?;
                d.push(n);
            }
            ValueKind::Dims(d)
        }
        Rule::number => {
            let mut mantissa = "";
            let mut exp = 0i32;
            let mut letters = "";
            for part in p.into_inner() {
                match part.as_rule() {
                    Rule::mantissa => mantissa = part.as_str(),
                    Rule::exponent => {
                        exp = part.as_str()[1..].parse().map_err(|_| NetError::Invalid {
                            span: span.clone(),
                            message: "exponent out of range".into(),
                        })?
                    }
                    Rule::unit => letters = part.as_str(),
                    _ => {}
                }
            }
            let (power, unit) = split_suffix(letters).ok_or_else(|| NetError::Invalid {
                span: span.clone(),
                message: format!(
                    "unknown unit or SI suffix `{letters}` (suffixes f p n u m k meg g t; units S ohm V A m Hz)"
                ),
            })?;
            let x =
                super::units::scaled(mantissa, exp, power).ok_or_else(|| NetError::Invalid {
                    span: span.clone(),
                    message: "number out of range".into(),
                })?;
            ValueKind::Number { value: x, unit }
        }
        Rule::string => ValueKind::Str(
            p.into_inner()
                .next()
                .map(|s| s.as_str().to_string())
                .unwrap_or_default(),
        ),
        Rule::ident | Rule::word => ValueKind::Ident(p.as_str().to_string()),
        r => {
            return Err(NetError::Invalid {
                span,
                message: format!("unexpected {}", rule_name(&r)),
            })
        }
    };
    Ok(Value { kind, span })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(src: &str) -> Result<Vec<Stmt>, NetError> {
        parse_str(src, "t.net", Path::new("."))
    }

    #[test]
    fn values() {
        let s = p("a 8x8x1 128 x 64 -0.2V .. 0.2V 10uS \"m.cir\" same 1e-8 2.5ohm;").unwrap();
        let v = &s[0].values;
        assert_eq!(v[0].kind, ValueKind::Dims(vec![8, 8, 1]));
        assert_eq!(v[1].kind, ValueKind::Dims(vec![128, 64]));
        assert!(matches!(v[2].kind, ValueKind::Range(..)));
        assert_eq!(
            v[3].kind,
            ValueKind::Number {
                value: 10e-6,
                unit: "s".into()
            }
        );
        assert_eq!(v[4].kind, ValueKind::Str("m.cir".into()));
        assert_eq!(v[5].kind, ValueKind::Ident("same".into()));
        assert!(matches!(v[6].kind, ValueKind::Number { value, .. } if value == 1e-8));
        assert!(
            matches!(v[7].kind, ValueKind::Number { value, ref unit } if value == 2.5 && unit == "ohm")
        );
        assert_eq!(v[3].span.col, 32);
    }

    #[test]
    fn nested_and_comments() {
        let s = p("// c\nnetwork n { # x\n conv2d c1 { kernels 15; } /* y */ relu; }").unwrap();
        assert_eq!(s.len(), 1);
        let b = s[0].body.as_ref().unwrap();
        assert_eq!(b.len(), 2);
        assert_eq!(b[0].key, "conv2d");
        assert_eq!(b[0].key_span.line, 3);
    }

    #[test]
    fn syntax_error_has_caret() {
        let e = p("network n {\n  dense fc { units 10 }\n  relu\n}").unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with("t.net:"), "{msg}");
        assert!(msg.contains('^'), "{msg}");
    }
}
