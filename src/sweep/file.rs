//! The sweep file (TOML): what to run, over which parameters, with which seeds, collecting which
//! metrics. Parsed with `toml` into spanned values so every error points at its key or value.

use super::jobs::JobKind;
use super::SweepError;
use crate::span::Span;
use serde_json::Value as Json;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use toml::Spanned;

/// How the parameter lists combine into points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Combine {
    /// Every combination (the Cartesian product), first parameter slowest.
    Grid,
    /// The i-th values of every list together (all lists the same length).
    Zip,
}

/// Replicates of every parameter point.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Seeds {
    /// `seeds = N`: N replicates whose seeds are derived from the point (a hash).
    Derived(usize),
    /// `seeds = [1, 2, 3]`: these seeds, the same for every point.
    List(Vec<u64>),
}

/// One parameter: its path (`hardware.r_wire`, `rw`) and values in order.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Param {
    pub path: String,
    pub values: Vec<Json>,
    /// Where the parameter is written (for errors found later, e.g. by the `.net` checker).
    #[serde(skip)]
    pub span: Span,
}

/// A validated sweep file. Paths are absolute (resolved against the sweep file's directory).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SweepSpec {
    pub name: String,
    pub kind: JobKind,
    /// The sweep file's directory: relative paths in `[job]` and `[params]` resolve against it.
    pub dir: PathBuf,
    /// `.net` file (train, eval) or JSON array spec (xbar, optional).
    pub base: Option<PathBuf>,
    pub combine: Combine,
    pub seeds: Seeds,
    pub metrics: Vec<String>,
    /// Fixed options of the job kind (`[job]` table), the same for every point.
    pub job: BTreeMap<String, Json>,
    pub params: Vec<Param>,
}

/// Raw form, as TOML deserialises it.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    name: Option<Spanned<String>>,
    kind: Spanned<String>,
    base: Option<Spanned<String>>,
    combine: Option<Spanned<String>>,
    seeds: Option<Spanned<toml::Value>>,
    metrics: Option<Spanned<Vec<Spanned<String>>>>,
    job: Option<Spanned<toml::Table>>,
    params: Option<Spanned<toml::Table>>,
}

/// Byte offsets → located spans.
pub(crate) struct Source {
    name: Arc<str>,
    text: String,
}

impl Source {
    pub(crate) fn new(name: &str, text: &str) -> Source {
        Source {
            name: Arc::from(name),
            text: text.to_string(),
        }
    }

    pub(crate) fn span(&self, r: std::ops::Range<usize>) -> Span {
        let start = r.start.min(self.text.len());
        let before = &self.text[..start];
        let line = before.matches('\n').count() + 1;
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let col = self.text[line_start..start].chars().count() + 1;
        let line_text = self.text[line_start..]
            .split('\n')
            .next()
            .unwrap_or("")
            .to_string();
        let end = r
            .end
            .clamp(start, start + line_text.len() - (start - line_start));
        let len = self.text[start..end].chars().count().max(1);
        Span::new(self.name.clone(), line, col, len, Arc::from(line_text))
    }

    fn err(&self, r: std::ops::Range<usize>, message: impl Into<String>) -> SweepError {
        SweepError::Invalid {
            span: self.span(r),
            message: message.into(),
        }
    }

    /// The span of `key` written in the table that starts at `table.start` (TOML spans cover
    /// values, not keys): the first line from there on that starts with the key, bare or quoted.
    fn key_span(&self, key: &str, table: std::ops::Range<usize>) -> std::ops::Range<usize> {
        let find_from = |start: usize| {
            let mut off = start.min(self.text.len());
            // start at a line beginning
            off = self.text[..off].rfind('\n').map_or(0, |i| i + 1);
            for line in self.text[off..].split_inclusive('\n') {
                let lead = line.len() - line.trim_start().len();
                let t = line.trim_start();
                for cand in [format!("\"{key}\""), key.to_string()] {
                    if let Some(rest) = t.strip_prefix(&cand) {
                        if rest.starts_with([' ', '\t', '=', '.']) {
                            return Some(off + lead..off + lead + cand.len());
                        }
                    }
                }
                off += line.len();
            }
            None
        };
        find_from(table.start)
            .or_else(|| find_from(0))
            .unwrap_or(table)
    }
}

/// Read and validate a sweep file.
pub fn load(path: &Path) -> Result<SweepSpec, SweepError> {
    let text = std::fs::read_to_string(path).map_err(|e| SweepError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().to_string())
        .unwrap_or_else(|| "sweep".into());
    parse_str(&text, &path.display().to_string(), &dir, &stem)
}

/// Validate sweep text; relative paths resolve against `dir`; `default_name` when no `name`.
pub fn parse_str(
    text: &str,
    name: &str,
    dir: &Path,
    default_name: &str,
) -> Result<SweepSpec, SweepError> {
    let src = Source::new(name, text);
    let raw: Raw = toml::from_str(text).map_err(|e| {
        let span = e.span().unwrap_or(0..0);
        src.err(span, e.message().trim().to_string())
    })?;
    let kind = JobKind::from_name(raw.kind.get_ref()).ok_or_else(|| {
        src.err(
            raw.kind.span(),
            format!(
                "unknown job kind `{}` (known: {})",
                raw.kind.get_ref(),
                JobKind::ALL
                    .iter()
                    .map(|k| k.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        )
    })?;
    let base = match &raw.base {
        Some(b) => {
            let p = dir.join(b.get_ref());
            if !p.is_file() {
                return Err(src.err(b.span(), format!("no such file: {}", p.display())));
            }
            Some(p)
        }
        None => None,
    };
    if kind.needs_base() && base.is_none() {
        return Err(src.err(
            raw.kind.span(),
            format!("a `{}` sweep needs `base = \"FILE.net\"`", kind.name()),
        ));
    }
    let combine = match &raw.combine {
        None => Combine::Grid,
        Some(c) => match c.get_ref().as_str() {
            "grid" => Combine::Grid,
            "zip" => Combine::Zip,
            other => {
                return Err(src.err(
                    c.span(),
                    format!("`combine` is `grid` or `zip`, not `{other}`"),
                ))
            }
        },
    };
    let seeds = match &raw.seeds {
        None => Seeds::Derived(1),
        Some(s) => match s.get_ref() {
            toml::Value::Integer(n) if (1..=10_000).contains(n) => Seeds::Derived(*n as usize),
            toml::Value::Array(a) if !a.is_empty() => {
                let mut v = Vec::new();
                for x in a {
                    match x {
                        toml::Value::Integer(n) if *n >= 0 => v.push(*n as u64),
                        _ => {
                            return Err(src.err(
                                s.span(),
                                "`seeds` lists whole numbers ≥ 0 (or is a count: `seeds = 3`)",
                            ))
                        }
                    }
                }
                Seeds::List(v)
            }
            _ => {
                return Err(src.err(
                    s.span(),
                    "`seeds` is a count 1..10000 (derived seeds) or a non-empty list of seeds",
                ))
            }
        },
    };
    let mut job = BTreeMap::new();
    if let Some(t) = &raw.job {
        for (k, v) in t.get_ref() {
            let json = scalar_json(v).ok_or_else(|| {
                src.err(
                    src.key_span(k, t.span()),
                    format!("`job.{k}`: a number, string, boolean or list of numbers"),
                )
            })?;
            job.insert(k.clone(), json);
        }
        if let Err((key, message)) = kind.check_job(&job) {
            return Err(src.err(src.key_span(&key, t.span()), message));
        }
    }
    // parameters: nested tables flatten into dotted paths; a table with `from` is a range
    let mut params = Vec::new();
    if let Some(t) = &raw.params {
        flatten(&src, t.get_ref(), "", t.span(), &mut params)?;
    }
    for p in &params {
        kind.check_param(&p.path).map_err(|m| SweepError::Invalid {
            span: p.span.clone(),
            message: m,
        })?;
    }
    if combine == Combine::Zip {
        if let Some(first) = params.first() {
            for p in &params[1..] {
                if p.values.len() != first.values.len() {
                    return Err(SweepError::Invalid {
                        span: p.span.clone(),
                        message: format!(
                            "`combine = \"zip\"` needs lists of one length: `{}` has {}, `{}` has {}",
                            first.path,
                            first.values.len(),
                            p.path,
                            p.values.len()
                        ),
                    });
                }
            }
        }
    }
    let metrics = match &raw.metrics {
        None => kind
            .default_metrics()
            .iter()
            .map(|s| s.to_string())
            .collect(),
        Some(m) => {
            if m.get_ref().is_empty() {
                return Err(src.err(m.span(), "`metrics` lists at least one metric"));
            }
            let mut out = Vec::new();
            for x in m.get_ref() {
                kind.check_metric(x.get_ref())
                    .map_err(|msg| src.err(x.span(), msg))?;
                out.push(x.get_ref().clone());
            }
            out
        }
    };
    let name = match &raw.name {
        Some(n) => {
            let ok = !n.get_ref().is_empty()
                && n.get_ref()
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
            if !ok {
                return Err(src.err(n.span(), "`name` uses letters, digits, `-`, `_`, `.`"));
            }
            n.get_ref().clone()
        }
        None => default_name.to_string(),
    };
    Ok(SweepSpec {
        name,
        kind,
        dir: dir.to_path_buf(),
        base,
        combine,
        seeds,
        metrics,
        job,
        params,
    })
}

/// A TOML value a job option or parameter value may be: numbers, strings, booleans and flat
/// lists of numbers (e.g. `g_random = [1e-6, 1e-4]`).
fn scalar_json(v: &toml::Value) -> Option<Json> {
    match v {
        toml::Value::Integer(n) => Some(Json::from(*n)),
        toml::Value::Float(x) if x.is_finite() => Some(Json::from(*x)),
        toml::Value::String(s) => Some(Json::from(s.clone())),
        toml::Value::Boolean(b) => Some(Json::from(*b)),
        toml::Value::Array(a) => {
            let mut out = Vec::new();
            for x in a {
                match x {
                    toml::Value::Integer(n) => out.push(Json::from(*n)),
                    toml::Value::Float(f) if f.is_finite() => out.push(Json::from(*f)),
                    _ => return None,
                }
            }
            Some(Json::Array(out))
        }
        _ => None,
    }
}

/// Most points a sweep may have (each a result file; a typo in a range should not fill a disk).
pub const MAX_POINTS: usize = 100_000;

fn flatten(
    src: &Source,
    t: &toml::Table,
    prefix: &str,
    table_span: std::ops::Range<usize>,
    out: &mut Vec<Param>,
) -> Result<(), SweepError> {
    for (k, v) in t {
        let path = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        let key_r = src.key_span(k, table_span.clone());
        let span = src.span(key_r.clone());
        let bad = |m: String| SweepError::Invalid {
            span: span.clone(),
            message: m,
        };
        let values = match v {
            toml::Value::Table(inner) if inner.contains_key("from") => {
                range(inner).map_err(|m| bad(format!("parameter `{path}`: {m}")))?
            }
            toml::Value::Table(inner) => {
                flatten(src, inner, &path, table_span.clone(), out)?;
                continue;
            }
            toml::Value::Array(a) => {
                if a.is_empty() {
                    return Err(bad(format!("parameter `{path}` has no values")));
                }
                let mut vals = Vec::new();
                for x in a {
                    match x {
                        toml::Value::Array(_) => match scalar_json(x) {
                            Some(j) => vals.push(j),
                            None => {
                                return Err(bad(format!(
                                    "parameter `{path}`: inner lists hold numbers only"
                                )))
                            }
                        },
                        toml::Value::Table(_) | toml::Value::Datetime(_) => {
                            return Err(bad(format!(
                                "parameter `{path}`: values are numbers, strings or booleans"
                            )))
                        }
                        _ => vals.push(scalar_json(x).ok_or_else(|| {
                            bad(format!("parameter `{path}`: values must be finite"))
                        })?),
                    }
                }
                vals
            }
            other => vec![scalar_json(other).ok_or_else(|| {
                bad(format!(
                    "parameter `{path}`: a list, a range `{{ from, to, step | num }}` or one value"
                ))
            })?],
        };
        if values.len() > MAX_POINTS {
            return Err(bad(format!(
                "parameter `{path}` has {} values (at most {MAX_POINTS})",
                values.len()
            )));
        }
        out.push(Param { path, values, span });
    }
    Ok(())
}

/// `{ from = a, to = b, step = s }` (inclusive, integers stay integers) or
/// `{ from = a, to = b, num = n [, log = true] }` (n evenly or log-spaced values).
fn range(t: &toml::Table) -> Result<Vec<Json>, String> {
    for k in t.keys() {
        if !["from", "to", "step", "num", "log"].contains(&k.as_str()) {
            return Err(format!(
                "unknown range key `{k}` (from, to, step | num, log)"
            ));
        }
    }
    let num_of = |k: &str| -> Result<Option<f64>, String> {
        match t.get(k) {
            None => Ok(None),
            Some(toml::Value::Integer(n)) => Ok(Some(*n as f64)),
            Some(toml::Value::Float(x)) if x.is_finite() => Ok(Some(*x)),
            Some(_) => Err(format!("`{k}` must be a finite number")),
        }
    };
    let ints = ["from", "to", "step"]
        .iter()
        .all(|k| matches!(t.get(*k), None | Some(toml::Value::Integer(_))));
    let from = num_of("from")?.ok_or("missing `from`")?;
    let to = num_of("to")?.ok_or("a range needs `to`")?;
    let log = match t.get("log") {
        None => false,
        Some(toml::Value::Boolean(b)) => *b,
        Some(_) => return Err("`log` is true or false".into()),
    };
    match (num_of("step")?, t.get("num")) {
        (Some(step), None) => {
            if log {
                return Err("`log` goes with `num`, not `step`".into());
            }
            if step == 0.0 || (to - from) / step < 0.0 {
                return Err("`step` must be nonzero and lead from `from` to `to`".into());
            }
            let n = ((to - from) / step + 1e-9).floor() + 1.0;
            if n > MAX_POINTS as f64 {
                return Err(format!("{n} values (at most {MAX_POINTS})"));
            }
            Ok((0..n as usize)
                .map(|i| {
                    if ints {
                        Json::from(from as i64 + i as i64 * step as i64)
                    } else {
                        Json::from(from + i as f64 * step)
                    }
                })
                .collect())
        }
        (None, Some(toml::Value::Integer(n))) if *n >= 1 && (*n as usize) <= MAX_POINTS => {
            let n = *n as usize;
            if log && (from <= 0.0 || to <= 0.0) {
                return Err("a log range needs `from` and `to` > 0".into());
            }
            Ok((0..n)
                .map(|i| {
                    let f = if n == 1 {
                        0.0
                    } else {
                        i as f64 / (n - 1) as f64
                    };
                    Json::from(if log {
                        (from.ln() + f * (to.ln() - from.ln())).exp()
                    } else {
                        from + f * (to - from)
                    })
                })
                .collect())
        }
        (None, Some(_)) => Err(format!("`num` is a whole number 1..{MAX_POINTS}")),
        (Some(_), Some(_)) => Err("give `step` or `num`, not both".into()),
        (None, None) => Err("a range needs `step` or `num`".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<SweepSpec, SweepError> {
        parse_str(text, "t.toml", Path::new("."), "t")
    }

    #[test]
    fn ranges_and_nested_params() {
        let s = parse(
            "kind = \"xbar\"\n[params]\nrw = { from = 1, to = 7, step = 3 }\n\
             g_uniform = { from = 1e-6, to = 1e-4, num = 3, log = true }\n",
        )
        .unwrap();
        assert_eq!(
            s.params[0].values,
            vec![Json::from(1), Json::from(4), Json::from(7)]
        );
        let g: Vec<f64> = s.params[1]
            .values
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        assert!((g[1] - 1e-5).abs() < 1e-18, "{g:?}");
    }

    #[test]
    fn errors_are_located() {
        let e = parse("kind = \"xbar\"\n[params]\nrw = { from = 1, to = 7 }\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("t.toml:3:1:"), "{e}");
        assert!(e.contains("^^"), "{e}");
        let e = parse("kind = \"xbar\"\ncombine = \"cross\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("t.toml:2:11:"), "{e}");
        let e = parse("kind = \"xbar\"\nseeds = \"three\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("t.toml:2:9:"), "{e}");
        let e = parse("kind = \"xbar\"\nbogus = 1\n")
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("t.toml:2:1:"), "{e}");
        let e = parse("kind = \"xbar\"\n[params]\nnot_a_flag = [1, 2]\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("t.toml:3:1:") && e.contains("not_a_flag"),
            "{e}"
        );
    }
}
