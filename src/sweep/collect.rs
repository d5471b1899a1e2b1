//! `netc sweep collect`: merge the result files into tables and draw every metric against every
//! parameter (mean and spread over seeds), plus a heatmap when the sweep has two parameters.
//!
//! `collected.csv` has one row per point (parameters, seed, status, metrics, error): only what the
//! points computed, so the same sweep gives the same file however it ran. `collected.json` holds
//! the whole results (host, wall time, version, manifest hash). `summary.csv` aggregates over
//! seeds: count, mean and sample standard deviation of each metric per parameter combination.

use super::plan::Manifest;
use super::runner::{read_result, PointResult, Status};
use super::{io_err, write_atomic, SweepError};
use crate::atomic::ViaError;
use plotters::prelude::*;
use serde_json::{json, Value as Json};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// What `collect` found and wrote.
#[derive(Debug, Clone)]
pub struct Collected {
    pub total: usize,
    pub ok: usize,
    pub failed: usize,
    pub missing: usize,
    pub csv: PathBuf,
    pub json: PathBuf,
    pub summary: PathBuf,
    pub plots: Vec<PathBuf>,
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn value_text(v: &Json) -> String {
    match v {
        Json::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A float as CSV text: shortest round-trip representation.
fn num_text(x: f64) -> String {
    format!("{x:?}")
}

/// Mean and sample standard deviation (0 for one value).
fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    let var = if v.len() > 1 {
        v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0)
    } else {
        0.0
    };
    (mean, var.sqrt())
}

pub fn collect(dir: &Path, plots: bool) -> Result<Collected, SweepError> {
    let m = Manifest::read(dir)?;
    let results: Vec<Option<PointResult>> =
        m.points.iter().map(|p| read_result(dir, &p.id)).collect();
    let params: Vec<String> = m.spec.params.iter().map(|p| p.path.clone()).collect();
    let metrics = &m.spec.metrics;
    // per-point table
    let mut csv = String::new();
    let mut head = vec!["index".to_string(), "id".into()];
    head.extend(params.iter().cloned());
    head.extend(["replicate".into(), "seed".into(), "status".into()]);
    head.extend(metrics.iter().cloned());
    head.push("error".into());
    csv.push_str(
        &head
            .iter()
            .map(|h| csv_field(h))
            .collect::<Vec<_>>()
            .join(","),
    );
    csv.push('\n');
    let (mut ok, mut failed, mut missing) = (0, 0, 0);
    for (p, r) in m.points.iter().zip(&results) {
        let mut row = vec![p.index.to_string(), p.id.clone()];
        row.extend(
            params
                .iter()
                .map(|k| p.params.get(k).map(value_text).unwrap_or_default()),
        );
        row.push(p.replicate.map(|r| r.to_string()).unwrap_or_default());
        row.push(p.seed.to_string());
        match r {
            None => {
                missing += 1;
                row.push("missing".into());
                row.extend(metrics.iter().map(|_| String::new()));
                row.push(String::new());
            }
            Some(r) => {
                if r.status == Status::Ok {
                    ok += 1;
                    row.push("ok".into());
                } else {
                    failed += 1;
                    row.push("failed".into());
                }
                row.extend(
                    metrics
                        .iter()
                        .map(|k| r.metrics.get(k).map(|x| num_text(*x)).unwrap_or_default()),
                );
                row.push(r.error.clone().unwrap_or_default().replace('\n', " "));
            }
        }
        csv.push_str(
            &row.iter()
                .map(|h| csv_field(h))
                .collect::<Vec<_>>()
                .join(","),
        );
        csv.push('\n');
    }
    let csv_path = dir.join("collected.csv");
    write_atomic(&csv_path, csv.as_bytes())?;
    let json_path = dir.join("collected.json");
    let doc = json!({
        "sweep": m.spec.name, "kind": m.spec.kind.name(), "manifest_hash": m.hash,
        "netc_version": env!("CARGO_PKG_VERSION"),
        "parameters": params, "metrics": metrics,
        "counts": {"total": m.points.len(), "ok": ok, "failed": failed, "missing": missing},
        "points": m.points.iter().zip(&results).map(|(p, r)| json!({
            "point": p, "result": r,
        })).collect::<Vec<_>>(),
    });
    write_atomic(
        &json_path,
        serde_json::to_string_pretty(&doc)
            .expect("serialises")
            .as_bytes(),
    )?;
    // aggregate over seeds: key = parameter values in order
    let mut groups: BTreeMap<usize, (Vec<Json>, Vec<Vec<f64>>)> = BTreeMap::new();
    let mut key_of: Vec<(Vec<Json>, usize)> = Vec::new();
    for (p, r) in m.points.iter().zip(&results) {
        let Some(r) = r.as_ref().filter(|r| r.status == Status::Ok) else {
            continue;
        };
        let key: Vec<Json> = params
            .iter()
            .map(|k| p.params.get(k).cloned().unwrap_or(Json::Null))
            .collect();
        let g = match key_of.iter().find(|(k, _)| *k == key) {
            Some((_, g)) => *g,
            None => {
                key_of.push((key.clone(), key_of.len()));
                key_of.len() - 1
            }
        };
        let e = groups
            .entry(g)
            .or_insert_with(|| (key, vec![vec![]; metrics.len()]));
        for (i, k) in metrics.iter().enumerate() {
            if let Some(x) = r.metrics.get(k) {
                e.1[i].push(*x);
            }
        }
    }
    let mut sum = String::new();
    let mut head: Vec<String> = params.clone();
    head.push("n".into());
    for k in metrics {
        head.push(format!("mean_{k}"));
        head.push(format!("std_{k}"));
    }
    sum.push_str(
        &head
            .iter()
            .map(|h| csv_field(h))
            .collect::<Vec<_>>()
            .join(","),
    );
    sum.push('\n');
    for (key, vals) in groups.values() {
        let mut row: Vec<String> = key.iter().map(value_text).collect();
        row.push(vals.first().map_or(0, |v| v.len()).to_string());
        for v in vals {
            if v.is_empty() {
                row.extend([String::new(), String::new()]);
            } else {
                let (mu, sd) = mean_std(v);
                row.extend([num_text(mu), num_text(sd)]);
            }
        }
        sum.push_str(
            &row.iter()
                .map(|h| csv_field(h))
                .collect::<Vec<_>>()
                .join(","),
        );
        sum.push('\n');
    }
    let summary = dir.join("summary.csv");
    write_atomic(&summary, sum.as_bytes())?;
    let mut out_plots = Vec::new();
    if plots && !params.is_empty() && !groups.is_empty() {
        let pdir = dir.join("plots");
        std::fs::create_dir_all(&pdir).map_err(|e| io_err(&pdir, e))?;
        let rows: Vec<&(Vec<Json>, Vec<Vec<f64>>)> = groups.values().collect();
        for (mi, metric) in metrics.iter().enumerate() {
            for (pi, param) in params.iter().enumerate() {
                let path = pdir.join(format!("{}_vs_{}.png", slug(metric), slug(param)));
                line_plot(&path, &m, &rows, mi, pi)?;
                out_plots.push(path);
            }
            if params.len() == 2 {
                let path = pdir.join(format!(
                    "{}_heatmap_{}_{}.png",
                    slug(metric),
                    slug(&params[0]),
                    slug(&params[1])
                ));
                heatmap(&path, &m, &rows, mi)?;
                out_plots.push(path);
            }
        }
    }
    Ok(Collected {
        total: m.points.len(),
        ok,
        failed,
        missing,
        csv: csv_path,
        json: json_path,
        summary,
        plots: out_plots,
    })
}

fn slug(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

/// The distinct values of parameter `pi` in sweep order, and whether all are numbers.
fn axis(m: &Manifest, pi: usize) -> (Vec<Json>, bool) {
    let vals: Vec<Json> = {
        let mut v: Vec<Json> = Vec::new();
        for x in &m.spec.params[pi].values {
            if !v.contains(x) {
                v.push(x.clone());
            }
        }
        v
    };
    let numeric = vals.iter().all(|v| v.is_number());
    (vals, numeric)
}

/// A line: its label and, per x position, the metric's values over seeds.
type Series = (String, Vec<(f64, Vec<f64>)>);

type Rows<'a> = [&'a (Vec<Json>, Vec<Vec<f64>>)];

fn plot_err(p: &Path, e: impl std::fmt::Display) -> SweepError {
    SweepError::Plot(format!("{}: {e}", p.display()))
}

/// Draw the PNG `path`, written whole ([`crate::atomic::write_via`]).
fn render(
    path: &Path,
    draw: impl FnOnce(
        &DrawingArea<BitMapBackend, plotters::coord::Shift>,
    ) -> Result<(), Box<dyn std::error::Error>>,
) -> Result<(), SweepError> {
    crate::atomic::write_via(path, |t| {
        let area = BitMapBackend::new(t, (800, 520)).into_drawing_area();
        draw(&area).map_err(|e| plot_err(path, e))?;
        area.present().map_err(|e| plot_err(path, e))
    })
    .map_err(|e| match e {
        ViaError::Fill(e) => e,
        ViaError::Io(e) => io_err(path, e),
    })
}

/// Metric `mi` against parameter `pi`: one line per combination of the other parameters (the
/// first 8; more are merged into their mean), error bars ± one standard deviation over seeds.
fn line_plot(
    path: &Path,
    m: &Manifest,
    rows: &Rows,
    mi: usize,
    pi: usize,
) -> Result<(), SweepError> {
    let (xs, numeric) = axis(m, pi);
    let xpos = |v: &Json| -> f64 {
        if numeric {
            v.as_f64().unwrap_or(0.0)
        } else {
            xs.iter().position(|x| x == v).unwrap_or(0) as f64
        }
    };
    // series: other parameters' values
    let mut series: Vec<Series> = Vec::new();
    for (key, vals) in rows {
        let others: Vec<String> = key
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != pi)
            .map(|(j, v)| format!("{}={}", m.spec.params[j].path, value_text(v)))
            .collect();
        let mut label = others.join(", ");
        if series.len() >= 8 && !series.iter().any(|(l, _)| *l == label) {
            label = "others (merged)".into();
        }
        let s = match series.iter_mut().position(|(l, _)| *l == label) {
            Some(i) => &mut series[i].1,
            None => {
                series.push((label, vec![]));
                &mut series.last_mut().expect("pushed").1
            }
        };
        let x = xpos(&key[pi]);
        match s.iter_mut().find(|(px, _)| *px == x) {
            Some((_, v)) => v.extend(&vals[mi]),
            None => s.push((x, vals[mi].clone())),
        }
    }
    for s in &mut series {
        s.1.retain(|(_, v)| !v.is_empty());
        s.1.sort_by(|a, b| a.0.total_cmp(&b.0));
    }
    let pts: Vec<(f64, f64, f64)> = series
        .iter()
        .flat_map(|(_, s)| {
            s.iter().map(|(x, v)| {
                let (mu, sd) = mean_std(v);
                (*x, mu, sd)
            })
        })
        .collect();
    if pts.is_empty() {
        return Ok(());
    }
    let (mut x0, mut x1) = pts
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
            (a.min(p.0), b.max(p.0))
        });
    let (mut y0, mut y1) = pts
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), p| {
            (a.min(p.1 - p.2), b.max(p.1 + p.2))
        });
    let pad = |a: &mut f64, b: &mut f64| {
        let w = if *b > *a { *b - *a } else { a.abs().max(1e-12) };
        *a -= 0.08 * w;
        *b += 0.08 * w;
    };
    pad(&mut x0, &mut x1);
    pad(&mut y0, &mut y1);
    let metric = &m.spec.metrics[mi];
    let param = &m.spec.params[pi].path;
    let title = format!("{}: {metric} vs {param}", m.spec.name);
    let labels: Vec<String> = xs.iter().map(value_text).collect();
    render(path, |area| {
        area.fill(&WHITE)?;
        let mut c = ChartBuilder::on(area)
            .caption(&title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(70)
            .build_cartesian_2d(x0..x1, y0..y1)?;
        let fmt_x = |x: &f64| {
            if numeric {
                format!("{x}")
            } else {
                let i = x.round();
                if (x - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < labels.len() {
                    labels[i as usize].clone()
                } else {
                    String::new()
                }
            }
        };
        let mut mesh = c.configure_mesh();
        mesh.x_desc(param.as_str())
            .y_desc(metric.as_str())
            .x_label_formatter(&fmt_x);
        if !numeric {
            mesh.x_labels(labels.len() * 4 + 1);
        }
        mesh.draw()?;
        for (si, (label, s)) in series.iter().enumerate() {
            let color = Palette99::pick(si).to_rgba();
            let line: Vec<(f64, f64)> = s.iter().map(|(x, v)| (*x, mean_std(v).0)).collect();
            c.draw_series(LineSeries::new(line.clone(), color.stroke_width(2)))?
                .label(if label.is_empty() {
                    "mean"
                } else {
                    label.as_str()
                })
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color));
            c.draw_series(
                line.iter()
                    .map(|&(x, y)| Circle::new((x, y), 3, color.filled())),
            )?;
            c.draw_series(s.iter().filter(|(_, v)| v.len() > 1).map(|(x, v)| {
                let (mu, sd) = mean_std(v);
                ErrorBar::new_vertical(*x, mu - sd, mu, mu + sd, color, 8)
            }))?;
        }
        c.configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        Ok(())
    })
}

/// Mean of metric `mi` over seeds on the grid of the two parameters.
fn heatmap(path: &Path, m: &Manifest, rows: &Rows, mi: usize) -> Result<(), SweepError> {
    let (xs, _) = axis(m, 0);
    let (ys, _) = axis(m, 1);
    let mut cell = vec![vec![None; ys.len()]; xs.len()];
    for (key, vals) in rows {
        let (Some(i), Some(j)) = (
            xs.iter().position(|x| *x == key[0]),
            ys.iter().position(|y| *y == key[1]),
        ) else {
            continue;
        };
        if !vals[mi].is_empty() {
            cell[i][j] = Some(mean_std(&vals[mi]).0);
        }
    }
    let all: Vec<f64> = cell.iter().flatten().flatten().copied().collect();
    if all.is_empty() {
        return Ok(());
    }
    let lo = all.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = all.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let metric = &m.spec.metrics[mi];
    let title = format!("{}: mean {metric}", m.spec.name);
    let xl: Vec<String> = xs.iter().map(value_text).collect();
    let yl: Vec<String> = ys.iter().map(value_text).collect();
    let (px, py) = (&m.spec.params[0].path, &m.spec.params[1].path);
    render(path, |area| {
        area.fill(&WHITE)?;
        let mut c = ChartBuilder::on(area)
            .caption(&title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(90)
            .build_cartesian_2d(0.0..xl.len() as f64, 0.0..yl.len() as f64)?;
        let fx = |x: &f64| {
            let i = (x - 0.5).round();
            if ((x - 0.5) - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < xl.len() {
                xl[i as usize].clone()
            } else {
                String::new()
            }
        };
        let fy = |y: &f64| {
            let i = (y - 0.5).round();
            if ((y - 0.5) - i).abs() < 1e-6 && i >= 0.0 && (i as usize) < yl.len() {
                yl[i as usize].clone()
            } else {
                String::new()
            }
        };
        c.configure_mesh()
            .disable_mesh()
            .x_desc(px.as_str())
            .y_desc(py.as_str())
            .x_labels(xl.len() * 2 + 1)
            .y_labels(yl.len() * 2 + 1)
            .x_label_formatter(&fx)
            .y_label_formatter(&fy)
            .draw()?;
        for (i, col) in cell.iter().enumerate() {
            for (j, v) in col.iter().enumerate() {
                let Some(v) = v else { continue };
                let t = if hi > lo { (v - lo) / (hi - lo) } else { 0.5 };
                let color = ViridisRGB::get_color(t);
                let (x, y) = (i as f64, j as f64);
                c.draw_series(std::iter::once(Rectangle::new(
                    [(x, y), (x + 1.0, y + 1.0)],
                    color.filled(),
                )))?;
                let text_color = if t > 0.6 { BLACK } else { WHITE };
                c.draw_series(std::iter::once(Text::new(
                    format!("{v:.4}"),
                    (x + 0.3, y + 0.55),
                    ("sans-serif", 14).into_font().color(&text_color),
                )))?;
            }
        }
        Ok(())
    })
}
