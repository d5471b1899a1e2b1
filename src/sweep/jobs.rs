//! Job kinds: what one sweep point runs. Adding a kind is one [`JobKind`] variant (with its names,
//! options and metrics in the tables below) and one `run_*` function.

use super::file::SweepSpec;
use super::plan::Point;
use crate::net::ast::Stmt;
use crate::nn::backend::{IdealBackend, MatmulBackend};
use crate::nn::model::{Model, WeightsFile};
use serde_json::{Map, Value as Json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum JobKind {
    /// Train the `.net` network (`netc train`); metrics of the last epoch.
    Train,
    /// Evaluate given weights on the `.net` network (`netc eval`).
    Eval,
    /// Solve a crossbar array (`netc xbar`); metrics from its JSON report.
    Xbar,
}

/// Metric values of one point, by name.
pub type Metrics = BTreeMap<String, f64>;

/// What a point runs with.
pub struct PointCtx<'a> {
    pub spec: &'a SweepSpec,
    pub point: &'a Point,
    /// A directory of this point's own for files the job writes.
    pub work_dir: PathBuf,
}

const NET_JOB_KEYS: &[&str] = &[
    "backend",
    "weights",
    "limit_train",
    "limit_test",
    "exact_nonlinear",
];
const TRAIN_METRICS: &[&str] = &["test_acc", "train_acc", "loss", "epochs"];
const EVAL_METRICS: &[&str] = &["accuracy", "loss", "samples"];
/// xbar flags that name input files (resolved against the sweep file's directory) and output
/// files (resolved against the point's work directory).
const XBAR_INPUT_FLAGS: &[&str] = &["spec", "g", "inputs"];
const XBAR_OUTPUT_FLAGS: &[&str] = &["emit", "plot"];

impl JobKind {
    pub const ALL: &'static [JobKind] = &[JobKind::Train, JobKind::Eval, JobKind::Xbar];

    pub fn name(self) -> &'static str {
        match self {
            JobKind::Train => "train",
            JobKind::Eval => "eval",
            JobKind::Xbar => "xbar",
        }
    }

    pub fn from_name(s: &str) -> Option<JobKind> {
        JobKind::ALL.iter().copied().find(|k| k.name() == s)
    }

    /// Whether `base` must be given (the `.net` file).
    pub fn needs_base(self) -> bool {
        matches!(self, JobKind::Train | JobKind::Eval)
    }

    pub fn default_metrics(self) -> &'static [&'static str] {
        match self {
            JobKind::Train => &["test_acc"],
            JobKind::Eval => &["accuracy"],
            JobKind::Xbar => &["error.mean_rel"],
        }
    }

    pub fn check_metric(self, m: &str) -> Result<(), String> {
        let known = match self {
            JobKind::Train => TRAIN_METRICS,
            JobKind::Eval => EVAL_METRICS,
            // any number in the JSON report, by its dotted path (`error.max_rel`,
            // `solve_time_seconds`)
            JobKind::Xbar => {
                return if !m.is_empty()
                    && m.split('.').all(|p| {
                        !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                    }) {
                    Ok(())
                } else {
                    Err(format!(
                        "`{m}` is not a dotted path into the xbar JSON report"
                    ))
                };
            }
        };
        if known.contains(&m) {
            Ok(())
        } else {
            Err(format!(
                "unknown {} metric `{m}` (known: {})",
                self.name(),
                known.join(", ")
            ))
        }
    }

    /// A parameter path: a `.net` field (`block.key`, `block.sub.key`) or an xbar flag.
    pub fn check_param(self, path: &str) -> Result<(), String> {
        match self {
            JobKind::Train | JobKind::Eval => {
                if path.contains('.') {
                    Ok(())
                } else if NET_JOB_KEYS.contains(&path) {
                    Err(format!(
                        "`{path}` is a fixed job option: put it under [job], or sweep a `.net` field by its path (`hardware.r_wire`)"
                    ))
                } else {
                    Err(format!(
                        "`{path}`: a `.net` field is named by its path, e.g. `hardware.r_wire`, `training.epochs`"
                    ))
                }
            }
            JobKind::Xbar => check_xbar_flag(path),
        }
    }

    /// Fixed options (`[job]`); an error names the offending key.
    pub fn check_job(self, job: &BTreeMap<String, Json>) -> Result<(), (String, String)> {
        for (k, v) in job {
            match self {
                JobKind::Train | JobKind::Eval => {
                    if k.contains('.') {
                        continue; // a fixed `.net` override, checked when the plan loads it
                    }
                    if !NET_JOB_KEYS.contains(&k.as_str())
                        || (self == JobKind::Train && k == "weights")
                    {
                        return Err((
                            k.clone(),
                            format!(
                                "unknown {} option `{k}` (known: backend, {}limit_train, limit_test, exact_nonlinear, or a `.net` path like \"training.epochs\")",
                                self.name(),
                                if self == JobKind::Eval { "weights, " } else { "" }
                            ),
                        ));
                    }
                    let ok = match k.as_str() {
                        "backend" => matches!(v.as_str(), Some("ideal" | "circuit")),
                        "weights" => v.is_string(),
                        "exact_nonlinear" => v.is_boolean(),
                        _ => v.as_u64().is_some(),
                    };
                    if !ok {
                        return Err((
                            k.clone(),
                            match k.as_str() {
                                "backend" => "`backend` is \"ideal\" or \"circuit\"".into(),
                                "weights" => "`weights` is a file name".into(),
                                "exact_nonlinear" => "`exact_nonlinear` is true or false".into(),
                                _ => format!("`{k}` is a whole number ≥ 0"),
                            },
                        ));
                    }
                }
                JobKind::Xbar => check_xbar_flag(k).map_err(|m| (k.clone(), m))?,
            }
        }
        if self == JobKind::Eval && !job.contains_key("weights") {
            return Err((
                "job".into(),
                "an eval sweep needs `weights = \"model.json\"` under [job]".into(),
            ));
        }
        Ok(())
    }

    /// Check a point without running it (at plan time): `.net` overrides load and validate;
    /// xbar flags parse.
    pub fn check_point(self, spec: &SweepSpec, point: &Point) -> Result<(), String> {
        match self {
            JobKind::Train | JobKind::Eval => net_with_overrides(spec, point).map(|_| ()),
            JobKind::Xbar => xbar_args(spec, point, Path::new(".")).map(|_| ()),
        }
    }

    /// Run one point.
    pub fn run(self, ctx: &PointCtx) -> Result<Metrics, String> {
        match self {
            JobKind::Train => run_train(ctx),
            JobKind::Eval => run_eval(ctx),
            JobKind::Xbar => run_xbar(ctx),
        }
    }
}

// ---------------------------------------------------------------- .net kinds

/// The point's `.net` file: parsed, every override spliced into the statement tree (as if
/// written in the source), then validated and shape-checked like any file.
pub fn net_with_overrides(
    spec: &SweepSpec,
    point: &Point,
) -> Result<(crate::net::NetFile, crate::net::NetworkIr), String> {
    let base = spec.base.as_deref().ok_or("no base .net file")?;
    let mut stmts = crate::net::parse::parse_file(base).map_err(|e| e.to_string())?;
    let base_dir = base.parent().unwrap_or(Path::new("."));
    let fixed = spec.job.iter().filter(|(k, _)| k.contains('.'));
    for (path, v) in fixed.chain(point.params.iter()) {
        set_net_field(&mut stmts, path, v, base_dir)?;
    }
    for block in ["training", "mapping"] {
        if stmts.iter().any(|s| s.key == block) {
            set_net_field(
                &mut stmts,
                &format!("{block}.seed"),
                &Json::from(point.seed),
                base_dir,
            )?;
        }
    }
    let file = crate::net::spec::NetFile::from_ast(&stmts, base).map_err(|e| e.to_string())?;
    let ir = crate::net::ir::NetworkIr::infer(&file.network).map_err(|e| e.to_string())?;
    file.check_against(&ir).map_err(|e| e.to_string())?;
    Ok((file, ir))
}

/// The `.net` text of a parameter value: numbers as written, strings verbatim (`"1 x 64x64"`,
/// `"2ohm"`), booleans as `on`/`off`.
fn net_text(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        Json::Bool(b) => if *b { "on" } else { "off" }.into(),
        other => other.to_string(),
    }
}

/// Set `path` (`block.key`, `block.sub.key`; a segment matches a statement's key or its name,
/// e.g. `network.c1.kernels`) to `v`, replacing the statement's values or appending it.
fn set_net_field(
    stmts: &mut Vec<Stmt>,
    path: &str,
    v: &Json,
    base_dir: &Path,
) -> Result<(), String> {
    let segs: Vec<&str> = path.split('.').collect();
    let (leaf, blocks) = segs.split_last().ok_or("empty parameter path")?;
    let text = format!("{leaf} {};", net_text(v));
    let name = format!("<sweep {path} = {}>", net_text(v));
    let parsed = crate::net::parse::parse_str(&text, &name, base_dir).map_err(|e| e.to_string())?;
    let new = parsed
        .into_iter()
        .next()
        .ok_or_else(|| format!("{name}: no statement"))?;
    let mut cur = stmts;
    for (depth, seg) in blocks.iter().enumerate() {
        let matches = |s: &Stmt| {
            s.key == *seg
                || matches!(s.values.first().map(|v| &v.kind), Some(crate::net::ast::ValueKind::Ident(n)) if n == seg)
        };
        let found = cur.iter_mut().find(|s| matches(s) && s.body.is_some());
        cur = match found {
            Some(s) => s.body.as_mut().expect("checked"),
            None => {
                return Err(format!(
                    "`{path}`: the base file has no block `{}`",
                    segs[..=depth].join(".")
                ))
            }
        };
    }
    match cur.iter_mut().find(|s| s.key == *leaf) {
        Some(s) => {
            s.values = new.values;
            if new.body.is_some() {
                s.body = new.body;
            }
        }
        None => cur.push(new),
    }
    Ok(())
}

fn usize_opt(spec: &SweepSpec, key: &str) -> Option<usize> {
    spec.job
        .get(key)
        .and_then(|v| v.as_u64())
        .map(|n| n as usize)
}

fn backend_for(
    ctx: &PointCtx,
    file: &crate::net::NetFile,
    ir: &crate::net::NetworkIr,
    model: &Model,
) -> Result<Box<dyn MatmulBackend>, String> {
    match ctx.spec.job.get("backend").and_then(|v| v.as_str()) {
        None | Some("ideal") => Ok(Box::new(IdealBackend::new())),
        Some("circuit") => {
            let ov = crate::nn::circuit::CircuitOverrides {
                r_wire_ohm: None,
                exact_nonlinear: ctx
                    .spec
                    .job
                    .get("exact_nonlinear")
                    .and_then(|v| v.as_bool())
                    .unwrap_or(false),
                weight_scale: None,
            };
            Ok(Box::new(
                crate::nn::circuit::CircuitBackend::for_model(file, ir, model, ov)
                    .map_err(|e| e.to_string())?,
            ))
        }
        Some(other) => Err(format!("unknown backend {other}")),
    }
}

fn split_for(ctx: &PointCtx, p: &crate::nn::presets::Preset) -> Result<crate::data::Split, String> {
    let mut s = p.data.load().map_err(|e| e.to_string())?;
    if let Some(n) = usize_opt(ctx.spec, "limit_train") {
        s.train = s.train.take(n);
    }
    if let Some(n) = usize_opt(ctx.spec, "limit_test") {
        s.test = s.test.take(n);
    }
    Ok(s)
}

fn run_train(ctx: &PointCtx) -> Result<Metrics, String> {
    let (file, ir) = net_with_overrides(ctx.spec, ctx.point)?;
    let base = ctx.spec.base.as_deref().unwrap_or(Path::new("?"));
    let (p, ir) = crate::nn::from_net::recipe_from(&file, ir, base).map_err(|e| e.to_string())?;
    let split = split_for(ctx, &p)?;
    let mut model = Model::new(p.model.clone()).map_err(|e| e.to_string())?;
    let mut backend = backend_for(ctx, &file, &ir, &model)?;
    let opts = crate::nn::train::TrainOptions {
        out_dir: Some(ctx.work_dir.clone()),
        resume: false,
        progress: false,
        readback: false,
        stop_after: None,
    };
    let rep = crate::nn::train::train(&mut model, backend.as_mut(), &split, &p.train, &opts)
        .map_err(|e| e.to_string())?;
    let m = rep.metrics.last().ok_or("training ran no epoch")?;
    Ok(Metrics::from([
        ("test_acc".into(), m.test_acc),
        ("train_acc".into(), m.train_acc),
        ("loss".into(), m.loss),
        ("epochs".into(), m.epoch as f64),
    ]))
}

fn run_eval(ctx: &PointCtx) -> Result<Metrics, String> {
    let (file, ir) = net_with_overrides(ctx.spec, ctx.point)?;
    let base = ctx.spec.base.as_deref().unwrap_or(Path::new("?"));
    let (p, ir) = crate::nn::from_net::recipe_from(&file, ir, base).map_err(|e| e.to_string())?;
    let weights = ctx
        .spec
        .job
        .get("weights")
        .and_then(|v| v.as_str())
        .ok_or("no weights")?;
    let wpath = ctx.spec.dir.join(weights);
    let wf: WeightsFile = crate::nn::train::read_json(&wpath).map_err(|e| e.to_string())?;
    let model = Model::from_weights_file(&wf).map_err(|e| e.to_string())?;
    if model.spec != p.model {
        return Err(format!(
            "{}: weights belong to a different network than {}",
            wpath.display(),
            p.name
        ));
    }
    let split = split_for(ctx, &p)?;
    let mut b = backend_for(ctx, &file, &ir, &model)?;
    model
        .prepare_backend(b.as_mut())
        .map_err(|e| e.to_string())?;
    // ideal and circuit backends have no devices to read: nothing is drawn from this stream
    let mut read_rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0);
    let mut ctx =
        crate::nn::backend::ForwardCtx::new(&mut read_rng, crate::nn::backend::Pass::Test);
    let r = crate::nn::train::evaluate(&model, b.as_mut(), &split.test, 500, &mut ctx)
        .map_err(|e| e.to_string())?;
    Ok(Metrics::from([
        ("accuracy".into(), r.accuracy),
        ("loss".into(), r.loss),
        ("samples".into(), r.samples as f64),
    ]))
}

// ---------------------------------------------------------------- xbar

#[derive(clap::Parser)]
#[command(name = "xbar", no_binary_name = false)]
struct XbarCli {
    #[command(flatten)]
    args: crate::cli::xbar::XbarArgs,
}

fn xbar_flag_names() -> Vec<String> {
    use clap::CommandFactory;
    XbarCli::command()
        .get_arguments()
        .filter_map(|a| a.get_long().map(|s| s.to_string()))
        .collect()
}

fn check_xbar_flag(key: &str) -> Result<(), String> {
    let flag = key.replace('_', "-");
    if matches!(flag.as_str(), "json" | "seed") {
        return Err(format!(
            "`{key}` is set by the sweep itself (seeds come from `seeds`)"
        ));
    }
    let names = xbar_flag_names();
    if names.contains(&flag) {
        Ok(())
    } else {
        Err(format!(
            "`{key}` is not a `netc xbar` flag (flags: {})",
            names
                .iter()
                .filter(|n| !matches!(n.as_str(), "json" | "seed" | "help"))
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}

/// The `netc xbar` arguments of a point: base spec, fixed options, parameters, seed.
fn xbar_args(
    spec: &SweepSpec,
    point: &Point,
    work_dir: &Path,
) -> Result<crate::cli::xbar::XbarArgs, String> {
    use clap::Parser;
    let mut argv = vec!["xbar".to_string()];
    if let Some(b) = &spec.base {
        argv.push("--spec".into());
        argv.push(b.display().to_string());
    }
    for (k, v) in spec.job.iter().chain(point.params.iter()) {
        let flag = k.replace('_', "-");
        let text = match v {
            Json::Bool(false) => continue,
            Json::Bool(true) => {
                argv.push(format!("--{flag}"));
                continue;
            }
            Json::String(s) if XBAR_INPUT_FLAGS.contains(&flag.as_str()) => {
                spec.dir.join(s).display().to_string()
            }
            Json::String(s) if XBAR_OUTPUT_FLAGS.contains(&flag.as_str()) => {
                work_dir.join(s).display().to_string()
            }
            Json::String(s) => s.clone(),
            Json::Array(a) => a
                .iter()
                .map(|x| x.to_string())
                .collect::<Vec<_>>()
                .join(","),
            other => other.to_string(),
        };
        argv.push(format!("--{flag}={text}"));
    }
    argv.push(format!("--seed={}", point.seed));
    XbarCli::try_parse_from(&argv).map(|c| c.args).map_err(|e| {
        let msg = e.render().to_string();
        let first = msg
            .lines()
            .next()
            .unwrap_or("")
            .trim_start_matches("error: ");
        format!("xbar arguments {}: {first}", argv[1..].join(" "))
    })
}

/// Numbers of the xbar report that a netc before the unit renames named with a bare `_s`, and
/// their names now (a sweep file may still ask for the old ones).
const LEGACY_XBAR_METRICS: [(&str, &str); 2] = [
    ("solve_time_s", "solve_time_seconds"),
    ("detail_time_s", "detail_time_seconds"),
];

/// Numbers of a JSON object by dotted path (arrays are left out).
fn flatten_numbers(v: &Json, prefix: &str, out: &mut Map<String, Json>) {
    if let Json::Object(m) = v {
        for (k, x) in m {
            let p = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            match x {
                Json::Number(_) => {
                    out.insert(p, x.clone());
                }
                Json::Object(_) => flatten_numbers(x, &p, out),
                _ => {}
            }
        }
    }
}

fn run_xbar(ctx: &PointCtx) -> Result<Metrics, String> {
    let args = xbar_args(ctx.spec, ctx.point, &ctx.work_dir)?;
    let report = crate::cli::xbar::report_json(&args).map_err(|e| e.to_string())?;
    let mut flat = Map::new();
    flatten_numbers(&report, "", &mut flat);
    let mut out = Metrics::new();
    for m in &ctx.spec.metrics {
        // a sweep file written for a netc before the unit renames names its times the old way
        let current = LEGACY_XBAR_METRICS
            .iter()
            .find(|(old, _)| old == m)
            .map_or(m.as_str(), |(_, new)| new);
        match flat
            .get(m)
            .or_else(|| flat.get(current))
            .and_then(|v| v.as_f64())
        {
            Some(x) => {
                out.insert(m.clone(), x);
            }
            None => {
                return Err(format!(
                    "metric `{m}` is not in the xbar report (numbers there: {})",
                    flat.keys().cloned().collect::<Vec<_>>().join(", ")
                ))
            }
        }
    }
    Ok(out)
}
