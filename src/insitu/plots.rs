//! Pictures of a run: in-batch accuracy and loss of every in-situ update (S1 Fig. 2b,c) and the
//! conductance distributions of the used cells before and after in-situ training (Fig. 2d–f).

use std::path::Path;

use plotters::prelude::*;

use super::RunResult;

type PlotResult = Result<(), Box<dyn std::error::Error>>;

/// `batch_curve.png` (when there were in-situ updates) and `conductance_histogram.png`.
pub fn all(dir: &Path, r: &RunResult) -> PlotResult {
    if !r.batches.is_empty() {
        batch_curve(&dir.join("batch_curve.png"), r)?;
    }
    if !r.g_before_siemens.is_empty() {
        histograms(&dir.join("conductance_histogram.png"), r)?;
    }
    Ok(())
}

fn batch_curve(path: &Path, r: &RunResult) -> PlotResult {
    crate::atomic::write_via(path, |t| -> PlotResult {
        let area = BitMapBackend::new(t, (1000, 420)).into_drawing_area();
        area.fill(&WHITE)?;
        let (left, right) = area.split_horizontally(500);
        let n = r.batches.len().max(2) as f64;
        {
            let mut ch = ChartBuilder::on(&left)
                .caption(
                    format!("{}: in-batch accuracy ({})", r.network, mode_name(r)),
                    ("sans-serif", 18),
                )
                .margin(10)
                .x_label_area_size(35)
                .y_label_area_size(45)
                .build_cartesian_2d(0.0..n, 0.0..100.0)?;
            ch.configure_mesh()
                .x_desc("update (mini-batch)")
                .y_desc("accuracy (%)")
                .draw()?;
            ch.draw_series(LineSeries::new(
                r.batches
                    .iter()
                    .map(|b| (b.update as f64, 100.0 * b.batch_acc)),
                &BLUE,
            ))?;
        }
        {
            let top = r
                .batches
                .iter()
                .map(|b| b.loss)
                .fold(0.0f64, f64::max)
                .max(1e-6)
                * 1.05;
            let mut ch = ChartBuilder::on(&right)
                .caption("in-batch loss", ("sans-serif", 18))
                .margin(10)
                .x_label_area_size(35)
                .y_label_area_size(45)
                .build_cartesian_2d(0.0..n, 0.0..top)?;
            ch.configure_mesh()
                .x_desc("update (mini-batch)")
                .y_desc("loss")
                .draw()?;
            ch.draw_series(LineSeries::new(
                r.batches.iter().map(|b| (b.update as f64, b.loss)),
                &RED,
            ))?;
        }
        area.present()?;
        Ok(())
    })?;
    Ok(())
}

fn mode_name(r: &RunResult) -> &'static str {
    match r.mode {
        super::TrainMode::Exsitu => "ex situ",
        super::TrainMode::Insitu => "in situ",
        super::TrainMode::Hybrid => "hybrid",
    }
}

fn histograms(path: &Path, r: &RunResult) -> PlotResult {
    let us = 1e6;
    let all = r.g_before_siemens.iter().chain(&r.g_after_siemens);
    let lo = all.clone().cloned().fold(f64::INFINITY, f64::min) * us;
    let hi = all.cloned().fold(f64::NEG_INFINITY, f64::max) * us;
    let (lo, hi) = if hi > lo {
        (lo, hi)
    } else {
        (lo - 1.0, lo + 1.0)
    };
    let bins = 50usize;
    let w = (hi - lo) / bins as f64;
    let count = |g: &[f64]| {
        let mut c = vec![0usize; bins];
        for v in g {
            let b = (((v * us - lo) / w) as usize).min(bins - 1);
            c[b] += 1;
        }
        c
    };
    let before = count(&r.g_before_siemens);
    let after = count(&r.g_after_siemens);
    let top = before
        .iter()
        .chain(&after)
        .cloned()
        .max()
        .unwrap_or(1)
        .max(1) as f64
        * 1.1;
    crate::atomic::write_via(path, |t| -> PlotResult {
        let area = BitMapBackend::new(t, (1000, 420)).into_drawing_area();
        area.fill(&WHITE)?;
        let (left, right) = area.split_horizontally(500);
        for (a, counts, title, color) in [
            (&left, &before, "before training", BLUE),
            (&right, &after, "after training", RED),
        ] {
            let mut ch = ChartBuilder::on(a)
                .caption(
                    format!("{}: conductances {title}", r.network),
                    ("sans-serif", 18),
                )
                .margin(10)
                .x_label_area_size(35)
                .y_label_area_size(50)
                .build_cartesian_2d(lo..hi, 0.0..top)?;
            ch.configure_mesh()
                .x_desc("G (µS)")
                .y_desc("cells")
                .draw()?;
            ch.draw_series(counts.iter().enumerate().map(|(b, n)| {
                let x0 = lo + b as f64 * w;
                Rectangle::new([(x0, 0.0), (x0 + w, *n as f64)], color.mix(0.6).filled())
            }))?;
        }
        area.present()?;
        Ok(())
    })?;
    Ok(())
}
