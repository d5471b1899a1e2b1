//! Phase 2: one logical line → one statement, with the pest grammar `grammar/spice.pest`.
//!
//! Tokens keep their byte offset in the logical line so that later phases can point at them.
//! Lines made only of plain blank-separated tokens (most element cards of big arrays) take a fast
//! path that produces exactly what the grammar would (all items are `word`s); a unit test checks
//! the two agree.

use pest::iterators::Pair;
use pest::Parser;
use pest_derive::Parser;

use super::lines::{LogicalLine, SourceMap};
use super::number::parse_number;
use super::SpiceError;
use crate::expr::{BinOp, Expr, Func};

#[derive(Parser)]
#[grammar = "grammar/spice.pest"]
struct CardParser;

/// Deepest expression tree accepted (keeps recursive tree walks far from the stack limit). A
/// chain `a+b+c+…` is a left-leaning tree as deep as it is long, so this is also the longest
/// chain of operators; parentheses are limited separately (`MAX_NESTING`).
pub const MAX_EXPR_DEPTH: usize = 1024;
/// Deepest `(`/`{` nesting accepted on a line (the grammar recurses through parentheses).
const MAX_NESTING: usize = 64;

/// A token of a logical line: lower-case text (borrowed from the line: no allocation per token)
/// and its byte position.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Tok<'s> {
    pub text: &'s str,
    pub off: u32,
    pub len: u32,
}

impl<'s> Tok<'s> {
    fn new(text: &'s str, off: usize) -> Tok<'s> {
        Tok {
            text,
            off: off as u32,
            len: text.len() as u32,
        }
    }
}

/// An item after the head of a card.
#[derive(Debug, Clone, PartialEq)]
pub enum Item<'s> {
    /// A bare token (node, number, keyword, model or subcircuit name).
    Word(Tok<'s>),
    /// `"…"` (the token includes the quotes).
    Str(Tok<'s>),
    /// `{expr}`, `'expr'`, or a bare expression as the value of `key=`. The token covers the text.
    Expr(Tok<'s>, Expr),
    /// `key = value`.
    Kv(Tok<'s>, Box<Item<'s>>),
    /// `( … )`.
    Group(Tok<'s>, Vec<Item<'s>>),
}

impl<'s> Item<'s> {
    pub fn tok(&self) -> &Tok<'s> {
        match self {
            Item::Word(t)
            | Item::Str(t)
            | Item::Expr(t, _)
            | Item::Kv(t, _)
            | Item::Group(t, _) => t,
        }
    }

    pub fn word(&self) -> Option<&'s str> {
        match self {
            Item::Word(t) => Some(t.text),
            _ => None,
        }
    }
}

/// A statement (phase 2 output). `line` indexes the parser's logical-line table.
#[derive(Debug, Clone)]
pub struct Stmt {
    pub line: u32,
    pub kind: StmtKind,
}

#[derive(Debug, Clone)]
pub enum StmtKind {
    /// An element card. Nothing is kept: the card was checked by the grammar (plain lines of
    /// blank-separated words need no check) and is parsed again, into tokens borrowed from the
    /// kept lower-cased logical line, when it is elaborated; this keeps the memory of
    /// million-element netlists low.
    Element,
    /// A generic directive (`.model` …), checked by the grammar; parsed again (borrowed) by
    /// the elaboration, like elements.
    Card,
    /// `.include file`: path as written (case kept), position (`off`, `len`) for errors.
    Include { path: String, off: u32, len: u32 },
    /// `.lib file section`.
    LibInclude {
        path: String,
        section: String,
        off: u32,
        len: u32,
    },
    /// `.lib section` (start of a section inside a library file).
    LibStart { section: String },
    /// `.endl`.
    LibEnd,
    /// `.end`.
    End,
    /// `.control`: the following lines up to `.endc` are skipped.
    Control,
    /// `.endc`.
    Endc,
    /// Accepted and ignored (a warning was recorded).
    Ignored,
}

/// Directives that are accepted and ignored with a warning.
const IGNORED_DIRECTIVES: &[&str] = &[
    ".save", ".print", ".plot", ".probe", ".width", ".temp", ".title", ".nodeset",
];

/// Directives parsed by the grammar and interpreted later.
const CARD_DIRECTIVES: &[&str] = &[
    ".model", ".subckt", ".ends", ".param", ".options", ".option", ".opt", ".op", ".dc", ".global",
];

/// Parse one logical line into a statement. `warn` collects warnings. The line's text is
/// lower-cased in place (file names of `.include` / `.lib` are taken before, with their case).
pub fn parse_line(
    map: &SourceMap,
    ll: &mut LogicalLine,
    line_idx: u32,
    warn: &mut Vec<String>,
) -> Result<Stmt, SpiceError> {
    let head_len = card_head(&ll.text).len();
    let span = |off: usize, len: usize| map.span(ll, off, len);
    let stmt = |kind| Stmt {
        line: line_idx,
        kind,
    };
    if head_len == 0 {
        return Err(SpiceError::Syntax {
            msg: "expected an element name or a directive".into(),
            span: span(0, 1),
        });
    }
    let is_directive = ll.text.starts_with('.');
    if is_directive {
        // Directives are few: their lower-cased head may be allocated.
        let head_lower = ll.text[..head_len].to_ascii_lowercase();
        let head = head_lower.as_str();
        let d = &head[1..];
        let rest_off = head_len;
        let rest = ll.text[rest_off..].trim();
        let rest_pos =
            rest_off + (ll.text[rest_off..].len() - ll.text[rest_off..].trim_start().len());
        match d {
            "end" => return Ok(stmt(StmtKind::End)),
            "control" => return Ok(stmt(StmtKind::Control)),
            "endc" => return Ok(stmt(StmtKind::Endc)),
            "endl" => return Ok(stmt(StmtKind::LibEnd)),
            "include" | "inc" => {
                let path = unquote(rest);
                if path.is_empty() {
                    return Err(SpiceError::Syntax {
                        msg: "`.include` needs a file name".into(),
                        span: span(0, head_len),
                    });
                }
                return Ok(stmt(StmtKind::Include {
                    path: path.to_string(),
                    off: rest_pos as u32,
                    len: rest.len() as u32,
                }));
            }
            "lib" => {
                let parts = split_args(rest);
                return match parts.as_slice() {
                    [section] => Ok(stmt(StmtKind::LibStart {
                        section: unquote(section).to_ascii_lowercase(),
                    })),
                    [path, section] => Ok(stmt(StmtKind::LibInclude {
                        path: unquote(path).to_string(),
                        section: unquote(section).to_ascii_lowercase(),
                        off: rest_pos as u32,
                        len: rest.len() as u32,
                    })),
                    _ => Err(SpiceError::Syntax {
                        msg: "expected `.lib file section` or `.lib section`".into(),
                        span: span(0, ll.text.len()),
                    }),
                };
            }
            _ => {}
        }
        if IGNORED_DIRECTIVES.contains(&head) {
            warn.push(span(0, head_len).render(&format!(
                "warning: `{head}` ignored (netc prints every node)"
            )));
            return Ok(stmt(StmtKind::Ignored));
        }
        if !CARD_DIRECTIVES.contains(&head) {
            return Err(SpiceError::UnknownDirective {
                name: head.to_string(),
                span: span(0, head_len),
            });
        }
    } else {
        let c = ll.text.as_bytes()[0].to_ascii_lowercase();
        match c {
            b'r' | b'v' | b'i' | b'e' | b'g' | b'f' | b'h' | b'b' | b'm' | b'x' => {}
            b'c' => {
                warn.push(
                    span(0, head_len)
                        .render("warning: capacitor ignored (an open circuit in DC analyses)"),
                );
                return Ok(stmt(StmtKind::Ignored));
            }
            c if c.is_ascii_alphabetic() => {
                return Err(SpiceError::Unsupported {
                    what: format!(
                        "element type `{}` (`{}`)",
                        c as char,
                        ll.text[..head_len].to_ascii_lowercase()
                    ),
                    span: span(0, head_len),
                });
            }
            _ => {
                return Err(SpiceError::Syntax {
                    msg: "expected an element name or a directive".into(),
                    span: span(0, head_len),
                })
            }
        }
    }
    ll.text.make_ascii_lowercase();
    let ll: &LogicalLine = ll;
    // A plain line (blank-separated words) always parses: the check is only needed for others.
    if !is_plain(&ll.text) {
        let span = |off: usize, len: usize| map.span(ll, off, len);
        parse_card(&ll.text, &span)?;
    }
    Ok(stmt(if is_directive {
        StmtKind::Card
    } else {
        StmtKind::Element
    }))
}

fn unquote(s: &str) -> &str {
    let s = s.trim();
    for q in ['"', '\''] {
        if let Some(inner) = s.strip_prefix(q).and_then(|t| t.strip_suffix(q)) {
            return inner;
        }
    }
    s
}

/// Split on blanks, keeping quoted pieces together.
fn split_args(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
            i += 1;
        }
        if i >= b.len() {
            break;
        }
        let start = i;
        if b[i] == b'"' || b[i] == b'\'' {
            let q = b[i];
            i += 1;
            while i < b.len() && b[i] != q {
                i += 1;
            }
            i = (i + 1).min(b.len());
        } else {
            while i < b.len() && b[i] != b' ' && b[i] != b'\t' {
                i += 1;
            }
        }
        out.push(&s[start..i]);
    }
    out
}

type SpanFn<'a> = dyn Fn(usize, usize) -> crate::span::Span + 'a;

/// True when the fast path applies: only blank-separated plain words.
fn is_plain(line: &str) -> bool {
    !line
        .bytes()
        .any(|c| matches!(c, b'=' | b'(' | b')' | b'{' | b'}' | b',' | b'\'' | b'"'))
}

/// The name (first token) of a lower-cased card and its length in bytes.
pub fn card_head(line: &str) -> &str {
    let n = line
        .find(|c: char| c == ' ' || c == '\t' || "=(){},'\"".contains(c))
        .unwrap_or(line.len());
    &line[..n]
}

/// Parse a lower-cased card (element or generic directive) into head and items.
pub fn parse_card<'s>(
    line: &'s str,
    span: &SpanFn,
) -> Result<(Tok<'s>, Vec<Item<'s>>), SpiceError> {
    if is_plain(line) {
        return Ok(parse_plain(line));
    }
    check_nesting(line, span)?;
    let mut pairs = CardParser::parse(Rule::card, line).map_err(|e| {
        let pos = match e.location {
            pest::error::InputLocation::Pos(p) => p,
            pest::error::InputLocation::Span((a, _)) => a,
        };
        let msg = match &e.variant {
            pest::error::ErrorVariant::ParsingError { positives, .. } => {
                describe_expected(positives, line, pos)
            }
            pest::error::ErrorVariant::CustomError { message } => message.clone(),
        };
        SpiceError::Syntax {
            msg,
            span: span(pos, 1),
        }
    })?;
    let card = pairs.next().ok_or_else(|| SpiceError::Syntax {
        msg: "empty card".into(),
        span: span(0, 1),
    })?;
    let mut inner = card.into_inner();
    let head_pair = inner.next().ok_or_else(|| SpiceError::Syntax {
        msg: "empty card".into(),
        span: span(0, 1),
    })?;
    let head = tok_of(&head_pair);
    let mut items = Vec::new();
    for p in inner {
        if p.as_rule() == Rule::EOI {
            continue;
        }
        items.push(conv_item(p, span)?);
    }
    Ok((head, items))
}

fn describe_expected(positives: &[Rule], line: &str, pos: usize) -> String {
    let found = line[pos.min(line.len())..].chars().next();
    let found = match found {
        Some(c) => format!("`{c}`"),
        None => "end of line".to_string(),
    };
    let mut names: Vec<&str> = positives
        .iter()
        .map(|r| match r {
            Rule::expr | Rule::term | Rule::unary | Rule::power | Rule::pow_rhs => "an expression",
            Rule::number => "a number",
            Rule::node => "a node name",
            Rule::ident => "a name",
            Rule::kv => "`key=value`",
            Rule::brace => "`{expression}`",
            Rule::add_op | Rule::mul_op | Rule::pow_op => "an operator",
            Rule::EOI => "end of line",
            _ => "a token",
        })
        .collect();
    names.sort();
    names.dedup();
    if names.is_empty() {
        format!("unexpected {found}")
    } else {
        format!("unexpected {found}, expected {}", names.join(" or "))
    }
}

fn check_nesting(line: &str, span: &SpanFn) -> Result<(), SpiceError> {
    let mut depth = 0usize;
    for (i, c) in line.bytes().enumerate() {
        match c {
            b'(' | b'{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Err(SpiceError::Syntax {
                        msg: format!("parentheses nested deeper than {MAX_NESTING}"),
                        span: span(i, 1),
                    });
                }
            }
            b')' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

pub(crate) fn parse_plain(line: &str) -> (Tok<'_>, Vec<Item<'_>>) {
    let mut head = None;
    let mut items = Vec::with_capacity(4);
    let b = line.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
            i += 1;
        }
        let s = i;
        while i < b.len() && b[i] != b' ' && b[i] != b'\t' {
            i += 1;
        }
        if i > s {
            let t = Tok::new(&line[s..i], s);
            if head.is_none() {
                head = Some(t);
            } else {
                items.push(Item::Word(t));
            }
        }
    }
    (head.unwrap_or_else(|| Tok::new("", 0)), items)
}

fn tok_of<'s>(p: &Pair<'s, Rule>) -> Tok<'s> {
    let s = p.as_span();
    Tok::new(s.as_str(), s.start())
}

fn conv_item<'s>(p: Pair<'s, Rule>, span: &SpanFn) -> Result<Item<'s>, SpiceError> {
    let tok = tok_of(&p);
    Ok(match p.as_rule() {
        Rule::word => Item::Word(tok),
        Rule::dquoted => Item::Str(tok),
        Rule::brace | Rule::quoted => {
            let e = p
                .into_inner()
                .next()
                .ok_or_else(|| syntax("empty expression", &tok, span))?;
            Item::Expr(tok, conv_expr(e, span)?.0)
        }
        Rule::expr => Item::Expr(tok, conv_expr(p, span)?.0),
        Rule::kv => {
            let mut it = p.into_inner();
            let key = it
                .next()
                .ok_or_else(|| syntax("expected a key", &tok, span))?;
            let val = it
                .next()
                .ok_or_else(|| syntax("expected a value", &tok, span))?;
            Item::Kv(tok_of(&key), Box::new(conv_item(val, span)?))
        }
        Rule::group => {
            let mut v = Vec::new();
            for q in p.into_inner() {
                v.push(conv_item(q, span)?);
            }
            Item::Group(tok, v)
        }
        _ => return Err(syntax("unexpected token", &tok, span)),
    })
}

fn syntax(msg: &str, tok: &Tok, span: &SpanFn) -> SpiceError {
    SpiceError::Syntax {
        msg: msg.into(),
        span: span(tok.off as usize, tok.len as usize),
    }
}

fn too_deep(tok: &Tok, span: &SpanFn) -> SpiceError {
    syntax(
        &format!(
            "expression too long: more than {MAX_EXPR_DEPTH} operators in one tree \
             (split it into `.param` steps)"
        ),
        tok,
        span,
    )
}

fn fold(op: BinOp, a: (Expr, usize), b: (Expr, usize)) -> (Expr, usize) {
    (Expr::bin(op, a.0, b.0), 1 + a.1.max(b.1))
}

/// Convert an expression pair; returns the tree and its depth.
fn conv_expr(p: Pair<Rule>, span: &SpanFn) -> Result<(Expr, usize), SpiceError> {
    let tok = tok_of(&p);
    let r = match p.as_rule() {
        Rule::expr | Rule::term => {
            let mut it = p.into_inner();
            let first = it
                .next()
                .ok_or_else(|| syntax("expected an expression", &tok, span))?;
            let mut acc = conv_expr(first, span)?;
            while let Some(op) = it.next() {
                let rhs = it
                    .next()
                    .ok_or_else(|| syntax("expected an operand", &tok, span))?;
                let op = match op.as_str() {
                    "+" => BinOp::Add,
                    "-" => BinOp::Sub,
                    "*" => BinOp::Mul,
                    _ => BinOp::Div,
                };
                acc = fold(op, acc, conv_expr(rhs, span)?);
                if acc.1 > MAX_EXPR_DEPTH {
                    return Err(too_deep(&tok, span));
                }
            }
            acc
        }
        Rule::unary | Rule::pow_rhs => {
            let mut neg = false;
            let mut operand = None;
            for q in p.into_inner() {
                if q.as_rule() == Rule::sign {
                    if q.as_str() == "-" {
                        neg = !neg;
                    }
                } else {
                    operand = Some(conv_expr(q, span)?);
                }
            }
            let (e, d) = operand.ok_or_else(|| syntax("expected an operand", &tok, span))?;
            if neg {
                (Expr::Neg(Box::new(e)), d + 1)
            } else {
                (e, d)
            }
        }
        Rule::power => {
            let mut it = p.into_inner();
            let first = it
                .next()
                .ok_or_else(|| syntax("expected an operand", &tok, span))?;
            let mut acc = conv_expr(first, span)?;
            while let Some(_op) = it.next() {
                let rhs = it
                    .next()
                    .ok_or_else(|| syntax("expected an exponent", &tok, span))?;
                acc = fold(BinOp::Pow, acc, conv_expr(rhs, span)?);
                if acc.1 > MAX_EXPR_DEPTH {
                    return Err(too_deep(&tok, span));
                }
            }
            acc
        }
        Rule::number => {
            let v = parse_number(p.as_str()).ok_or_else(|| SpiceError::BadNumber {
                text: p.as_str().to_string(),
                span: span(tok.off as usize, tok.len as usize),
            })?;
            (Expr::Num(v), 1)
        }
        Rule::ident => (Expr::Param(p.as_str().to_string()), 1),
        Rule::vcall => {
            let mut it = p.into_inner();
            let a = it
                .next()
                .map(|q| q.as_str().to_string())
                .unwrap_or_default();
            let b = it.next().map(|q| q.as_str().to_string());
            (Expr::V(a, b), 1)
        }
        Rule::icall => {
            let a = p
                .into_inner()
                .next()
                .map(|q| q.as_str().to_string())
                .unwrap_or_default();
            (Expr::I(a), 1)
        }
        Rule::call => {
            let mut it = p.into_inner();
            let name = it
                .next()
                .ok_or_else(|| syntax("expected a function name", &tok, span))?;
            let name_tok = tok_of(&name);
            let func =
                Func::from_name(name.as_str()).ok_or_else(|| SpiceError::UnknownFunction {
                    name: name.as_str().to_string(),
                    span: span(name_tok.off as usize, name_tok.len as usize),
                })?;
            let mut args = Vec::new();
            let mut depth = 0;
            for a in it {
                let (e, d) = conv_expr(a, span)?;
                depth = depth.max(d);
                args.push(e);
            }
            if args.len() != func.arity() {
                return Err(SpiceError::BadArity {
                    func: func.name().to_string(),
                    expected: func.arity(),
                    found: args.len(),
                    span: span(tok.off as usize, tok.len as usize),
                });
            }
            (Expr::Call(func, args), depth + 1)
        }
        _ => return Err(syntax("unexpected token in expression", &tok, span)),
    };
    if r.1 > MAX_EXPR_DEPTH {
        return Err(too_deep(&tok, span));
    }
    Ok(r)
}

/// Parse a standalone expression (used by tests and by callers holding expression text).
pub fn parse_expr_str(src: &str) -> Result<Expr, SpiceError> {
    let lower = src.to_ascii_lowercase();
    let sp = |off: usize, len: usize| {
        crate::span::Span::new("<expr>".into(), 1, off + 1, len, lower.as_str().into())
    };
    check_nesting(&lower, &sp)?;
    let line = format!("x {{{lower}}}");
    let shifted = |off: usize, len: usize| sp(off.saturating_sub(3), len);
    let (_, items) = parse_card(&line, &shifted)?;
    match items.as_slice() {
        [Item::Expr(_, e)] => Ok(e.clone()),
        _ => Err(SpiceError::Syntax {
            msg: "not a single expression".into(),
            span: sp(0, lower.len()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::span::Span;
    use rand::{Rng, SeedableRng};

    fn sp(_: usize, _: usize) -> Span {
        Span::default()
    }

    fn e(s: &str) -> Expr {
        parse_expr_str(s).unwrap_or_else(|err| panic!("{s}: {err}"))
    }

    #[test]
    fn precedence_matches_ngspice() {
        use Expr::*;
        // -2^2 = -(2^2) (ngspice 39 gives -4)
        assert_eq!(
            e("-2^2"),
            Neg(Box::new(Expr::bin(BinOp::Pow, Num(2.0), Num(2.0))))
        );
        // 2^3^2 = (2^3)^2 (ngspice 39 gives 64)
        assert_eq!(
            e("2^3**2"),
            Expr::bin(
                BinOp::Pow,
                Expr::bin(BinOp::Pow, Num(2.0), Num(3.0)),
                Num(2.0)
            )
        );
        assert_eq!(
            e("1+2*3"),
            Expr::bin(
                BinOp::Add,
                Num(1.0),
                Expr::bin(BinOp::Mul, Num(2.0), Num(3.0))
            )
        );
        assert_eq!(
            e("1-2-3"),
            Expr::bin(
                BinOp::Sub,
                Expr::bin(BinOp::Sub, Num(1.0), Num(2.0)),
                Num(3.0)
            )
        );
        assert_eq!(
            e("2^-1"),
            Expr::bin(BinOp::Pow, Num(2.0), Neg(Box::new(Num(1.0))))
        );
        assert_eq!(e("--3"), Num(3.0));
        assert_eq!(
            e("V(A) - v( b , c )*I(Vx)"),
            Expr::bin(
                BinOp::Sub,
                V("a".into(), None),
                Expr::bin(BinOp::Mul, V("b".into(), Some("c".into())), I("vx".into()))
            )
        );
        assert_eq!(
            e("1k*x"),
            Expr::bin(BinOp::Mul, Num(1e3), Param("x".into()))
        );
        assert_eq!(e("max(1, 2meg)"), Call(Func::Max, vec![Num(1.0), Num(2e6)]));
        assert_eq!(e("log(2)"), Call(Func::Ln, vec![Num(2.0)]));
    }

    #[test]
    fn expression_errors() {
        assert!(matches!(
            parse_expr_str("max(1)"),
            Err(SpiceError::BadArity {
                expected: 2,
                found: 1,
                ..
            })
        ));
        assert!(matches!(
            parse_expr_str("foo(1)"),
            Err(SpiceError::UnknownFunction { .. })
        ));
        assert!(matches!(
            parse_expr_str("1+"),
            Err(SpiceError::Syntax { .. })
        ));
        let deep = "(".repeat(100) + "1" + &")".repeat(100);
        assert!(matches!(
            parse_expr_str(&deep),
            Err(SpiceError::Syntax { .. })
        ));
        let long = vec!["1"; 2000].join("+");
        assert!(matches!(
            parse_expr_str(&long),
            Err(SpiceError::Syntax { .. })
        ));
        let signs = "-".repeat(10001) + "1";
        assert_eq!(
            parse_expr_str(&signs).ok(),
            Some(Expr::Neg(Box::new(Expr::Num(1.0))))
        );
    }

    #[test]
    fn fast_path_agrees_with_grammar() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let alphabet: Vec<char> = "abr01.9_-+*/^:#xkmeg \t".chars().collect();
        for _ in 0..2000 {
            let n = rng.gen_range(1..30);
            let mut s: String = (0..n)
                .map(|_| alphabet[rng.gen_range(0..alphabet.len())])
                .collect();
            s = s.trim().to_string();
            if s.is_empty() {
                continue;
            }
            s.insert(0, 'r');
            let fast = parse_plain(&s);
            let mut pairs = CardParser::parse(Rule::card, &s).expect("plain line parses");
            let card = pairs.next().unwrap();
            let mut inner = card.into_inner();
            let head = tok_of(&inner.next().unwrap());
            let items: Vec<Item> = inner
                .filter(|p| p.as_rule() != Rule::EOI)
                .map(|p| conv_item(p, &sp).unwrap())
                .collect();
            assert_eq!(fast, (head, items), "line {s:?}");
        }
    }

    #[test]
    fn braces_inside_expressions() {
        use Expr::*;
        // ngspice replaces `{expr}` by its value anywhere on the line, so inside an expression a
        // brace is a parenthesised sub-expression.
        let (_, items) = parse_card("bo out 0 v={vs}*tanh({a}*(v(inp)-v(inn))/{vs})", &sp).unwrap();
        assert_eq!(items.len(), 3);
        let Item::Kv(k, v) = &items[2] else {
            panic!("{items:?}")
        };
        assert_eq!(k.text, "v");
        let Item::Expr(_, got) = &**v else {
            panic!("{v:?}")
        };
        assert_eq!(
            *got,
            e("vs*tanh((a)*(v(inp)-v(inn))/(vs))"),
            "same tree as with parentheses"
        );
        // spaces around the `=` and the operators, and a current B source
        let (_, items) = parse_card("b2 o 0 i = {g} * v(a) + {i0}*1e-6", &sp).unwrap();
        assert!(
            matches!(&items[2], Item::Kv(k, v) if k.text == "i" && matches!(&**v, Item::Expr(_, x) if *x == e("g*v(a)+i0*1e-6")))
        );
        // a value that is only `{…}` is unchanged, also in instance and model parameters
        let (_, items) = parse_card("x1 a b sub r={rbase/10} k={-1*1}", &sp).unwrap();
        assert!(
            matches!(&items[3], Item::Kv(_, v) if matches!(&**v, Item::Expr(_, x) if *x == Expr::bin(BinOp::Div, Param("rbase".into()), Num(10.0))))
        );
        let (_, items) = parse_card(".model m nmos (level=1 vto={vt} kp={kp*2})", &sp).unwrap();
        let Item::Group(_, g) = &items[2] else {
            panic!("{items:?}")
        };
        assert!(
            matches!(&g[1], Item::Kv(_, v) if matches!(&**v, Item::Expr(_, Param(n)) if n == "vt"))
        );
        assert!(parse_expr_str("{a}*{b").is_err());
    }

    #[test]
    fn card_items() {
        let (h, items) = parse_card(".model nch nmos (level=1, vto={a*2} kp='1u')", &sp).unwrap();
        assert_eq!(h.text, ".model");
        assert_eq!(items.len(), 3);
        let Item::Group(_, g) = &items[2] else {
            panic!("{items:?}")
        };
        assert_eq!(g.len(), 3);
        assert!(
            matches!(&g[0], Item::Kv(k, v) if k.text == "level" && matches!(**v, Item::Expr(_, Expr::Num(x)) if x == 1.0))
        );
        let (_, items) = parse_card("b1 out 0 v = 2*v(in) + 1", &sp).unwrap();
        assert_eq!(items.len(), 3);
        assert!(
            matches!(&items[2], Item::Kv(k, v) if k.text == "v" && matches!(**v, Item::Expr(..)))
        );
        assert_eq!(items[2].tok().off, 9);
    }
}
