//! `netc eval (NET | --preset P) --weights W [--backend …] [--compare ideal,encoded]
//! [--chip CHIP --age 30d --read-seed S]`

use super::train::{BackendKind, NetArgs};
use crate::device::chip::{network_hash, Chip};
use crate::nn::backend::{ForwardCtx, MatmulBackend, Pass};
use crate::nn::circuit::CircuitBackend;
use crate::nn::model::{Model, WeightsFile};
use crate::nn::plot::confusion_heatmap;
use crate::nn::train::{evaluate, layer_errors, read_json, write_json, EvalResult};
use crate::nn::NnError;
use clap::{Args as ClapArgs, ValueEnum};
use std::io::Write;
use std::path::PathBuf;

#[derive(Debug, Clone, ClapArgs)]
pub struct Args {
    #[command(flatten)]
    pub net: NetArgs,
    /// Model file written by `netc train` (model.json).
    #[arg(long)]
    pub weights: PathBuf,
    #[arg(long, value_enum, default_value_t = BackendKind::Ideal)]
    pub backend: BackendKind,
    /// Evaluate with two backends and print them side by side, e.g. `ideal,circuit`.
    #[arg(long, value_delimiter = ',')]
    pub compare: Vec<String>,
    /// A chip directory written by `netc program` for this network (and these weights): adds the
    /// `chip` backend (the default when no `--compare` is given).
    #[arg(long)]
    pub chip: Option<PathBuf>,
    /// Time since the chip was programmed: `30d`, `2h`, `10min`, `45s` or plain seconds.
    #[arg(long, default_value = "0", value_parser = parse_age)]
    pub age: f64,
    /// Seed of the chip's read noise (same seed, same read).
    #[arg(long, default_value_t = 1)]
    pub read_seed: u64,
    /// Directory for eval.json and the confusion-matrix pictures (default: next to the weights).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

fn kind(s: &str) -> Result<BackendKind, NnError> {
    BackendKind::from_str(s.trim(), true).map_err(|_| {
        NnError::Format(format!(
            "unknown backend {s:?} (ideal, encoded, circuit, chip)"
        ))
    })
}

fn parse_age(s: &str) -> Result<f64, String> {
    crate::device::chip::parse_age(s).map_err(|e| e.to_string())
}

/// The `chip` backend: the circuit backend of the `.net` file whose arrays hold the conductances
/// of the chip in `a.chip`, read at `a.age` (drift from each cell's last write, then read noise
/// seeded by `a.read_seed`). A chip programmed for another network file is an error.
pub fn chip_backend(a: &Args, model: &Model) -> Result<Box<dyn MatmulBackend>, NnError> {
    let dir = a.chip.as_ref().ok_or_else(|| {
        NnError::Format("the chip backend needs --chip CHIP (a directory of `netc program`)".into())
    })?;
    let path = match &a.net.net {
        Some(p) if p.extension().is_some_and(|e| e == "net") => p,
        _ => {
            return Err(NnError::Format(
                "the chip backend needs the .net file the chip was programmed for".into(),
            ))
        }
    };
    let text = std::fs::read_to_string(path).map_err(|source| NnError::Io {
        path: path.clone(),
        source,
    })?;
    let chip =
        Chip::load(dir, Some(&network_hash(&text))).map_err(|e| NnError::Format(e.to_string()))?;
    let (file, ir) = crate::net::load(path).map_err(|e| NnError::Format(e.to_string()))?;
    let ov = crate::nn::circuit::CircuitOverrides {
        r_wire_ohm: a.net.r_wire_ohm,
        exact_nonlinear: a.net.exact_nonlinear,
        weight_scale: None,
    };
    Ok(Box::new(chip_circuit(
        &file,
        &ir,
        model,
        ov,
        &chip,
        a.age,
        a.read_seed,
    )?))
}

/// The circuit backend of `model` whose arrays hold `chip` read at `age_seconds` (read noise seeded
/// by `read_seed`), prepared: with the weights the chip records it was programmed from
/// ([`crate::device::chip::Manifest::scale_weights`]: an in-situ or hybrid run freezes each
/// matrix's siemens per unit at its first programming), so that the conductances decode with
/// the scales they were written at; otherwise with the model's weights (a chip of `netc
/// program`). The caller does not prepare it again.
pub fn chip_circuit(
    file: &crate::net::NetFile,
    ir: &crate::net::NetworkIr,
    model: &Model,
    ov: crate::nn::circuit::CircuitOverrides,
    chip: &Chip,
    age_seconds: f64,
    read_seed: u64,
) -> Result<CircuitBackend, NnError> {
    let mut b = CircuitBackend::for_model(file, ir, model, ov)?
        .with_chip_conductances(chip.read(age_seconds, read_seed));
    let Some(sw) = &chip.manifest.scale_weights else {
        model.prepare_backend(&mut b)?;
        return Ok(b);
    };
    if sw.len() != model.weights.len() {
        return Err(NnError::Format(format!(
            "the chip records {} weight matrices, the model has {}",
            sw.len(),
            model.weights.len()
        )));
    }
    for (id, (m, w)) in sw.iter().zip(&model.weights).enumerate() {
        if (m.rows, m.cols) != (w.rows, w.cols) || m.data.len() != m.rows * m.cols {
            return Err(NnError::Format(format!(
                "the chip's weight matrix {id} is {}×{} ({} values), the model's {}×{}",
                m.rows,
                m.cols,
                m.data.len(),
                w.rows,
                w.cols
            )));
        }
        b.prepare(id, m)?;
    }
    Ok(b)
}

fn print_confusion(out: &mut dyn Write, cm: &[Vec<usize>]) -> std::io::Result<()> {
    write!(out, "true\\pred")?;
    for p in 0..cm.len() {
        write!(out, "{p:>6}")?;
    }
    writeln!(out)?;
    for (t, row) in cm.iter().enumerate() {
        write!(out, "{t:>9}")?;
        for v in row {
            write!(out, "{v:>6}")?;
        }
        writeln!(out)?;
    }
    Ok(())
}

fn stdout_err(source: std::io::Error) -> NnError {
    NnError::Io {
        path: PathBuf::from("<stdout>"),
        source,
    }
}

/// What [`evaluate_net`] measured: the recipe's name, each backend's name and result in the order
/// asked, and (for two or more backends) the per-layer relative RMS difference of the second's outputs
/// from the first's.
pub struct Evaluated {
    pub name: String,
    pub results: Vec<(String, EvalResult)>,
    pub layer_errors: Option<Vec<f64>>,
}

/// One backend's entry of `eval.json` (what the Python `netc.evaluate` returns).
pub fn summary(backend: &str, r: &EvalResult) -> serde_json::Value {
    serde_json::json!({"backend": backend, "accuracy": r.accuracy, "loss": r.loss, "samples": r.samples, "confusion": r.confusion})
}

/// Evaluate the weights with the backends `kinds` (as `netc eval` and the Python `netc.evaluate`
/// do); with `out`, write each confusion matrix (JSON and pictures) and `eval.json` there.
pub fn evaluate_net(
    a: &Args,
    kinds: &[BackendKind],
    out: Option<&std::path::Path>,
) -> Result<Evaluated, NnError> {
    let p = a.net.recipe()?;
    let wf: WeightsFile = read_json(&a.weights)?;
    let model = Model::from_weights_file(&wf)
        .map_err(|e| NnError::Format(format!("{}: {e}", a.weights.display())))?;
    if model.spec != p.model {
        return Err(NnError::Format(format!(
            "{}: weights belong to a different network than {}",
            a.weights.display(),
            p.name
        )));
    }
    let split = a.net.split(&p)?;
    let mut results: Vec<(String, EvalResult)> = vec![];
    let mut backends: Vec<Box<dyn MatmulBackend>> = vec![];
    // the chip backend here holds one read taken when it is made (`--age`, `--read-seed`); the
    // other backends have no devices to read: nothing is drawn from this stream
    let mut read_rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(a.read_seed);
    let mut ctx = ForwardCtx::new(&mut read_rng, Pass::Test);
    for &k in kinds {
        // the chip backend comes prepared (with the weights its chip records, if any)
        let mut b = if k == BackendKind::Chip {
            chip_backend(a, &model)?
        } else {
            let mut b = a.net.backend(k, &model)?;
            model.prepare_backend(b.as_mut())?;
            b
        };
        let r = evaluate(&model, b.as_mut(), &split.test, 500, &mut ctx)?;
        results.push((b.name(), r));
        backends.push(b);
    }
    let layer_errors = if backends.len() >= 2 {
        let (first, rest) = backends.split_at_mut(1);
        Some(layer_errors(
            &model,
            first[0].as_mut(),
            rest[0].as_mut(),
            &split.test,
            200,
            &mut ctx,
        )?)
    } else {
        None
    };
    // written once every backend and the comparison have run: a failure leaves no partial output
    if let Some(out) = out {
        for (name, r) in &results {
            let stem = format!("confusion_{name}");
            write_json(&out.join(format!("{stem}.json")), &r.confusion)?;
            confusion_heatmap(
                out,
                &stem,
                &format!("{} test, {name}: {:.2}%", p.name, 100.0 * r.accuracy),
                &r.confusion,
            )?;
        }
        let entries: Vec<_> = results.iter().map(|(n, r)| summary(n, r)).collect();
        write_json(&out.join("eval.json"), &entries)?;
    }
    Ok(Evaluated {
        name: p.name,
        results,
        layer_errors,
    })
}

pub fn run(a: &Args) -> Result<(), NnError> {
    let out = a
        .out
        .clone()
        .unwrap_or_else(|| a.weights.parent().map(PathBuf::from).unwrap_or_default());
    let kinds: Vec<BackendKind> = if a.compare.is_empty() {
        // `--chip` alone evaluates the chip
        vec![if a.chip.is_some() && a.backend == BackendKind::Ideal {
            BackendKind::Chip
        } else {
            a.backend
        }]
    } else {
        a.compare
            .iter()
            .map(|s| kind(s))
            .collect::<Result<_, _>>()?
    };
    let Evaluated {
        name: pname,
        results,
        layer_errors: errs,
    } = evaluate_net(a, &kinds, Some(&out))?;
    let stdout = std::io::stdout();
    let mut o = std::io::BufWriter::new(stdout.lock());
    if results.len() == 1 {
        let (name, r) = &results[0];
        writeln!(
            o,
            "{} test accuracy ({name}): {:.2}% ({} samples), loss {:.4}",
            pname,
            100.0 * r.accuracy,
            r.samples,
            r.loss
        )
        .map_err(stdout_err)?;
        print_confusion(&mut o, &r.confusion).map_err(stdout_err)?;
    } else {
        let rows: Vec<(&str, f64, f64)> = results
            .iter()
            .map(|(n, r)| (n.as_str(), r.accuracy, r.loss))
            .collect();
        write!(o, "{}", compare_table(&rows)).map_err(stdout_err)?;
        let agree = results[0]
            .1
            .predictions
            .iter()
            .zip(&results[1].1.predictions)
            .filter(|(x, y)| x == y)
            .count();
        writeln!(o, "identical predictions: {agree}/{}", results[0].1.samples)
            .map_err(stdout_err)?;
        writeln!(
            o,
            "per-layer relative RMS difference of outputs ({} vs {}):",
            results[1].0, results[0].0
        )
        .map_err(stdout_err)?;
        for (li, e) in errs.iter().flatten().enumerate() {
            writeln!(o, "  layer {li:>2}: {e:.3e}").map_err(stdout_err)?;
        }
    }
    o.flush().map_err(stdout_err)?;
    Ok(())
}

/// The `--compare` table: one row per backend `(name, accuracy, loss)`; the name column is as
/// wide as the longest name, so the numbers line up whatever the backend names.
pub fn compare_table(rows: &[(&str, f64, f64)]) -> String {
    let w = rows
        .iter()
        .map(|(n, _, _)| n.chars().count())
        .chain(std::iter::once("backend".len()))
        .max()
        .unwrap_or(0)
        + 2;
    let mut s = format!("{:<w$}{:>12}{:>12}\n", "backend", "accuracy", "loss");
    for (name, acc, loss) in rows {
        s += &format!("{:<w$}{:>11.2}%{:>12.4}\n", name, 100.0 * acc, loss);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::compare_table;

    /// Every line of the table has the same width and its columns end at the same places,
    /// however long a backend name is.
    #[test]
    fn compare_table_aligns_long_names() {
        let t = compare_table(&[
            ("ideal", 0.9712, 0.1),
            ("circuit-small-signal", 0.9534, 0.25),
            ("encoded", 0.5, 12.5),
        ]);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines.len(), 4);
        let width = lines[0].chars().count();
        for l in &lines {
            assert_eq!(l.chars().count(), width, "{t}");
        }
        // the accuracy column (ends in `%` on data rows) ends 12 characters before the line end
        for l in &lines[1..] {
            assert_eq!(l.chars().nth(width - 13), Some('%'), "{t}");
        }
        assert!(lines[2].starts_with("circuit-small-signal  "));
    }
}
