//! Training-curve and confusion-matrix pictures (PNG + SVG, written atomically).

use super::train::EpochMetrics;
use super::NnError;
use crate::atomic::{write_via, ViaError};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

pub(crate) type DrawResult = Result<(), Box<dyn std::error::Error>>;

/// Draw `dir/stem.png` and `dir/stem.svg`, each written whole ([`crate::atomic::write_via`]).
pub(crate) fn render(
    dir: &Path,
    stem: &str,
    size: (u32, u32),
    draw: impl Fn(&DrawingArea<BitMapBackend, Shift>) -> DrawResult + Copy,
    draw_svg: impl Fn(&DrawingArea<SVGBackend, Shift>) -> DrawResult,
) -> Result<(), NnError> {
    let png = dir.join(format!("{stem}.png"));
    let svg = dir.join(format!("{stem}.svg"));
    let err = |p: &Path, e: Box<dyn std::error::Error>| NnError::Plot {
        path: p.into(),
        msg: e.to_string(),
    };
    let via = |p: &Path, e: ViaError<NnError>| match e {
        ViaError::Fill(e) => e,
        ViaError::Io(source) => NnError::Io {
            path: p.into(),
            source,
        },
    };
    write_via(&png, |t| {
        let area = BitMapBackend::new(t, size).into_drawing_area();
        draw(&area).map_err(|e| err(&png, e))?;
        area.present().map_err(|e| err(&png, Box::new(e)))
    })
    .map_err(|e| via(&png, e))?;
    write_via(&svg, |t| {
        let area = SVGBackend::new(t, size).into_drawing_area();
        draw_svg(&area).map_err(|e| err(&svg, e))?;
        area.present().map_err(|e| err(&svg, Box::new(e)))
    })
    .map_err(|e| via(&svg, e))
}

fn curve<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, m: &[EpochMetrics]) -> DrawResult
where
    DB::ErrorType: 'static,
{
    area.fill(&WHITE)?;
    let (left, right) = area.split_horizontally(area.dim_in_pixel().0 / 2);
    let n = m.len().max(1) as f64;
    let lmax = m.iter().map(|e| e.loss).fold(1e-9, f64::max) * 1.05;
    let mut c = ChartBuilder::on(&left)
        .caption("training loss", ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0.5..n + 0.5, 0.0..lmax)?;
    c.configure_mesh().x_desc("epoch").draw()?;
    c.draw_series(LineSeries::new(
        m.iter().map(|e| (e.epoch as f64, e.loss)),
        &RED,
    ))?;
    let mut c = ChartBuilder::on(&right)
        .caption("accuracy (%)", ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(50)
        .build_cartesian_2d(0.5..n + 0.5, 0.0..100.0)?;
    c.configure_mesh().x_desc("epoch").draw()?;
    c.draw_series(LineSeries::new(
        m.iter().map(|e| (e.epoch as f64, 100.0 * e.train_acc)),
        &BLUE,
    ))?
    .label("train")
    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], BLUE));
    c.draw_series(LineSeries::new(
        m.iter().map(|e| (e.epoch as f64, 100.0 * e.test_acc)),
        &GREEN,
    ))?
    .label("test")
    .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 15, y)], GREEN));
    c.configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE)
        .border_style(BLACK)
        .draw()?;
    Ok(())
}

/// `training_curve.png` / `.svg`: loss and train/test accuracy per epoch.
pub fn training_curve(dir: &Path, m: &[EpochMetrics]) -> Result<(), NnError> {
    render(
        dir,
        "training_curve",
        (900, 400),
        |a| curve(a, m),
        |a| curve(a, m),
    )
}

fn heat<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    title: &str,
    cm: &[Vec<usize>],
) -> DrawResult
where
    DB::ErrorType: 'static,
{
    area.fill(&WHITE)?;
    let k = cm.len();
    let mut c = ChartBuilder::on(area)
        .caption(title, ("sans-serif", 18))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(35)
        .build_cartesian_2d(0..k, 0..k)?;
    c.configure_mesh()
        .disable_mesh()
        .x_desc("predicted")
        .y_desc("true")
        .x_labels(k)
        .y_labels(k)
        .draw()?;
    for (t, row) in cm.iter().enumerate() {
        let total: usize = row.iter().sum::<usize>().max(1);
        for (p, &v) in row.iter().enumerate() {
            let f = v as f64 / total as f64;
            let col = RGBColor(255 - (f * 230.0) as u8, 255 - (f * 180.0) as u8, 255);
            c.draw_series(std::iter::once(Rectangle::new(
                [(p, t), (p + 1, t + 1)],
                col.filled(),
            )))?;
            if v > 0 {
                c.draw_series(std::iter::once(Text::new(
                    format!("{v}"),
                    (p, t + 1),
                    ("sans-serif", 12),
                )))?;
            }
        }
    }
    Ok(())
}

/// `<stem>.png` / `.svg`: confusion matrix heat map (rows true, columns predicted).
pub fn confusion_heatmap(
    dir: &Path,
    stem: &str,
    title: &str,
    cm: &[Vec<usize>],
) -> Result<(), NnError> {
    render(
        dir,
        stem,
        (600, 600),
        |a| heat(a, title, cm),
        |a| heat(a, title, cm),
    )
}
