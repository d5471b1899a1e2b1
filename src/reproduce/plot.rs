//! The reproduction's pictures (PNG + SVG, written atomically by [`crate::nn::plot::render`]):
//! in-batch accuracy and loss curves (S1 Fig. 2b,c; S2 Fig. 4a,b), the S3 stuck-fraction curve
//! with error bars (Fig. 4b), the S5 chain as bars next to the paper's, and conductance
//! histograms before and after training (S1 Fig. 2d–f).

use std::path::{Path, PathBuf};

use plotters::coord::Shift;
use plotters::prelude::*;

use super::experiments::RunRecord;
use super::tables::stat;
use super::{Paper, ReproduceError};
use crate::nn::plot::{render, DrawResult};

fn plot_err(dir: &Path, e: crate::nn::NnError) -> ReproduceError {
    ReproduceError::Plot {
        path: dir.into(),
        msg: e.to_string(),
    }
}

/// Moving average over `w` points (the papers plot smoothed in-batch curves).
pub fn smooth(xs: &[f64], w: usize) -> Vec<f64> {
    let w = w.max(1);
    let mut out = Vec::with_capacity(xs.len());
    let mut sum = 0.0;
    for i in 0..xs.len() {
        sum += xs[i];
        if i >= w {
            sum -= xs[i - w];
        }
        out.push(sum / (i + 1).min(w) as f64);
    }
    out
}

const COLORS: [RGBColor; 4] = [
    RGBColor(200, 30, 30),
    RGBColor(30, 80, 200),
    RGBColor(30, 150, 60),
    RGBColor(150, 90, 20),
];

/// Two panels: smoothed in-batch accuracy and loss against the update, one line per run.
fn inbatch<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    runs: &[(&str, &RunRecord)],
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    area.fill(&WHITE)?;
    let (left, right) = area.split_horizontally(area.dim_in_pixel().0 / 2);
    let n = runs
        .iter()
        .map(|(_, r)| r.batches.len())
        .max()
        .unwrap_or(1)
        .max(2) as f64;
    let w = ((n / 20.0) as usize).max(1);
    let lmax = runs
        .iter()
        .flat_map(|(_, r)| r.batches.iter().map(|b| b.loss))
        .filter(|l| l.is_finite())
        .fold(1e-6, f64::max)
        * 1.05;
    for (panel, is_acc) in [(&left, true), (&right, false)] {
        let ymax = if is_acc { 100.0 } else { lmax };
        let mut c = ChartBuilder::on(panel)
            .caption(
                format!(
                    "{title}: in-batch {} (moving average of {w})",
                    if is_acc { "accuracy (%)" } else { "loss" }
                ),
                ("sans-serif", 15),
            )
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(0.0..n, 0.0..ymax)?;
        c.configure_mesh().x_desc("update (mini-batch)").draw()?;
        for (k, (name, r)) in runs.iter().enumerate() {
            let ys: Vec<f64> = r
                .batches
                .iter()
                .map(|b| if is_acc { 100.0 * b.batch_acc } else { b.loss })
                .collect();
            let col = COLORS[k % COLORS.len()];
            c.draw_series(LineSeries::new(
                r.batches
                    .iter()
                    .zip(smooth(&ys, w))
                    .map(|(b, y)| (b.update as f64, y)),
                col.stroke_width(2),
            ))?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], col));
        }
        c.configure_series_labels()
            .position(if is_acc {
                SeriesLabelPosition::LowerRight
            } else {
                SeriesLabelPosition::UpperRight
            })
            .background_style(WHITE)
            .border_style(BLACK)
            .draw()?;
    }
    Ok(())
}

/// S3 Fig. 4b: test accuracy against the stuck-OFF fraction, mean ± s.d. over seeds.
fn sweep<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, recs: &[&RunRecord]) -> DrawResult
where
    DB::ErrorType: 'static,
{
    area.fill(&WHITE)?;
    let mut fr: Vec<f64> = recs.iter().filter_map(|r| r.fraction).collect();
    fr.sort_by(f64::total_cmp);
    fr.dedup();
    let xmax = fr.last().copied().unwrap_or(0.5).max(0.05) * 100.0;
    let mut c = ChartBuilder::on(area)
        .caption(
            "S3: test accuracy vs stuck-OFF devices (mean ± s.d. over seeds)",
            ("sans-serif", 16),
        )
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(50)
        .build_cartesian_2d(-2.0..xmax + 2.0, 0.0..100.0)?;
    c.configure_mesh()
        .x_desc("stuck-OFF devices (%)")
        .y_desc("test accuracy (%)")
        .draw()?;
    for (k, (kind, name)) in [("sweep_insitu", "in situ"), ("sweep_exsitu", "ex situ")]
        .into_iter()
        .enumerate()
    {
        let pts: Vec<(f64, f64, f64)> = fr
            .iter()
            .map(|&f| {
                let s = stat(recs, kind, Some(f), |r| Some(r.chip_final.test));
                (100.0 * f, s.mean, s.sd)
            })
            .filter(|p| p.1.is_finite())
            .collect();
        let col = COLORS[k];
        c.draw_series(LineSeries::new(
            pts.iter().map(|p| (p.0, p.1)),
            col.stroke_width(2),
        ))?
        .label(name)
        .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], col));
        c.draw_series(
            pts.iter()
                .map(|&(x, m, sd)| ErrorBar::new_vertical(x, m - sd, m, m + sd, col.filled(), 8)),
        )?;
    }
    c.draw_series(LineSeries::new(
        [(-2.0, 60.0), (xmax + 2.0, 60.0)],
        BLACK.mix(0.7).stroke_width(2),
    ))?
    .label("paper: in situ > 60 % at 50 %")
    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], BLACK.mix(0.7)));
    c.configure_series_labels()
        .position(SeriesLabelPosition::LowerLeft)
        .background_style(WHITE)
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

/// S5: the chain as bars, paper (grey) next to netc (blue).
fn chain<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, bars: &[(&str, f64, f64)]) -> DrawResult
where
    DB::ErrorType: 'static,
{
    area.fill(&WHITE)?;
    let n = bars.len();
    let mut c = ChartBuilder::on(area)
        .caption(
            "S5: test accuracy along the hybrid chain (grey: paper, blue: netc)",
            ("sans-serif", 16),
        )
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..n as f64, 0.0..100.0)?;
    c.configure_mesh()
        .disable_x_mesh()
        .x_labels(n * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - i as f64 - 0.5).abs() < 0.26 && i < n {
                bars[i].0.to_string()
            } else {
                String::new()
            }
        })
        .y_desc("test accuracy (%)")
        .draw()?;
    for (i, &(_, paper, netc)) in bars.iter().enumerate() {
        let x = i as f64;
        if paper.is_finite() {
            c.draw_series(std::iter::once(Rectangle::new(
                [(x + 0.1, 0.0), (x + 0.48, paper)],
                RGBColor(160, 160, 160).filled(),
            )))?;
        }
        if netc.is_finite() {
            c.draw_series(std::iter::once(Rectangle::new(
                [(x + 0.52, 0.0), (x + 0.9, netc)],
                COLORS[1].filled(),
            )))?;
            c.draw_series(std::iter::once(Text::new(
                format!("{netc:.1}"),
                (x + 0.53, (netc + 4.0).min(99.0)),
                ("sans-serif", 12),
            )))?;
        }
    }
    Ok(())
}

/// Histogram of conductances (µS) before and after training.
fn hist<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    before: &[f64],
    after: &[f64],
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    area.fill(&WHITE)?;
    let all = before.iter().chain(after).map(|g| g * 1e6);
    let (lo, hi) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), g| {
        (a.min(g), b.max(g))
    });
    let (lo, hi) = if lo.is_finite() && hi > lo {
        (lo, hi)
    } else {
        (0.0, 1.0)
    };
    const BINS: usize = 40;
    let width = (hi - lo) / BINS as f64;
    let count = |gs: &[f64]| {
        let mut h = vec![0usize; BINS];
        for g in gs {
            let b = (((g * 1e6 - lo) / width) as usize).min(BINS - 1);
            h[b] += 1;
        }
        h
    };
    let (hb, ha) = (count(before), count(after));
    let ymax = hb.iter().chain(&ha).copied().max().unwrap_or(1).max(1) as f64 * 1.1;
    let mut c = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 16))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(50)
        .build_cartesian_2d(lo..hi, 0.0..ymax)?;
    c.configure_mesh()
        .x_desc("conductance (µS)")
        .y_desc("cells")
        .draw()?;
    for (k, (h, name)) in [(&hb, "before training"), (&ha, "after training")]
        .into_iter()
        .enumerate()
    {
        let col = COLORS[k];
        c.draw_series(h.iter().enumerate().map(|(i, &v)| {
            let x0 = lo + i as f64 * width;
            Rectangle::new([(x0, 0.0), (x0 + width, v as f64)], col.mix(0.4).filled())
        }))?
        .label(name)
        .legend(move |(x, y)| Rectangle::new([(x, y - 4), (x + 12, y + 4)], col.mix(0.4).filled()));
    }
    c.configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE)
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

/// Every plot of the papers in `papers` for which runs exist; returns the PNG and SVG paths.
pub fn all(
    dir: &Path,
    papers: &[Paper],
    records: &[RunRecord],
) -> Result<Vec<PathBuf>, ReproduceError> {
    let mut out = Vec::new();
    let mut push = |stem: &str| {
        out.push(dir.join(format!("{stem}.png")));
        out.push(dir.join(format!("{stem}.svg")));
    };
    let of = |p: Paper| -> Vec<&RunRecord> { records.iter().filter(|r| r.paper == p).collect() };
    for &p in papers {
        let recs = of(p);
        match p {
            Paper::S1 | Paper::S2 => {
                // one seed's curves (the first): more would only overlay noise on noise
                let first = recs
                    .iter()
                    .filter(|r| !r.batches.is_empty())
                    .map(|r| r.seed)
                    .min();
                let runs: Vec<(&str, &RunRecord)> = recs
                    .iter()
                    .filter(|r| !r.batches.is_empty() && Some(r.seed) == first)
                    .map(|r| {
                        let name = if r.kind == "noise" {
                            "σ = 10 µS"
                        } else {
                            "noise-free"
                        };
                        (name, *r)
                    })
                    .collect();
                if !runs.is_empty() {
                    let stem = format!("{}_inbatch", p.id());
                    let title = p.id().to_uppercase();
                    render(
                        dir,
                        &stem,
                        (1100, 420),
                        |a| inbatch(a, &title, &runs),
                        |a| inbatch(a, &title, &runs),
                    )
                    .map_err(|e| plot_err(dir, e))?;
                    push(&stem);
                }
            }
            Paper::S3 => {
                if recs.iter().any(|r| r.fraction.is_some()) {
                    let stem = "s3_stuck_sweep";
                    render(
                        dir,
                        stem,
                        (800, 500),
                        |a| sweep(a, &recs),
                        |a| sweep(a, &recs),
                    )
                    .map_err(|e| plot_err(dir, e))?;
                    push(stem);
                }
            }
            Paper::S5 => {
                let c = |k: &str, f: fn(&RunRecord) -> Option<f64>| stat(&recs, k, None, f).mean;
                let bars = [
                    (
                        "software",
                        97.99,
                        c("chain", |r| r.software.map(|a| a.test)),
                    ),
                    (
                        "quantised",
                        96.92,
                        c("chain", |r| r.quantised.map(|a| a.test)),
                    ),
                    (
                        "transferred",
                        95.07,
                        c("chain", |r| r.transferred.map(|a| a.test)),
                    ),
                    ("FC in situ", 96.19, c("chain", |r| Some(r.chip_final.test))),
                    (
                        "mis-written",
                        80.66,
                        c("miswrite", |r| r.transferred.map(|a| a.test)),
                    ),
                    (
                        "+ hybrid",
                        94.40,
                        c("miswrite", |r| Some(r.chip_final.test)),
                    ),
                    (
                        "3 conv.",
                        93.86,
                        c("replicas", |r| r.transferred.map(|a| a.test)),
                    ),
                    (
                        "+ hybrid",
                        95.83,
                        c("replicas", |r| Some(r.chip_final.test)),
                    ),
                ];
                if bars.iter().any(|b| b.2.is_finite()) {
                    let stem = "s5_chain";
                    render(
                        dir,
                        stem,
                        (1000, 450),
                        |a| chain(a, &bars),
                        |a| chain(a, &bars),
                    )
                    .map_err(|e| plot_err(dir, e))?;
                    push(stem);
                }
            }
            Paper::S4 => {}
        }
        for r in &recs {
            if r.g_before_siemens.is_empty() || r.g_after_siemens.is_empty() {
                continue;
            }
            let stem = format!("{}_conductance", r.id);
            let title = format!("{}: conductances before / after training", r.id);
            render(
                dir,
                &stem,
                (800, 450),
                |a| hist(a, &title, &r.g_before_siemens, &r.g_after_siemens),
                |a| hist(a, &title, &r.g_before_siemens, &r.g_after_siemens),
            )
            .map_err(|e| plot_err(dir, e))?;
            push(&stem);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moving_average() {
        assert_eq!(smooth(&[1.0, 3.0, 5.0, 7.0], 2), vec![1.0, 2.0, 4.0, 6.0]);
        assert_eq!(smooth(&[2.0, 4.0], 1), vec![2.0, 4.0]);
        assert!(smooth(&[], 5).is_empty());
    }
}
