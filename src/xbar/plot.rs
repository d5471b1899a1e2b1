//! Array maps as pictures (PNG and SVG, plotters): one heat map per quantity over the R×C cells,
//! row 0 at the top, column 0 at the left, with a colour bar. Large arrays are block-averaged
//! down to at most 256×256 pixels of data.

use std::path::{Path, PathBuf};

use plotters::prelude::*;

use super::XbarError;
use crate::atomic::{write_via, ViaError};

const MAX_CELLS: usize = 256;

/// A map to draw.
pub struct Map<'a> {
    /// File stem (`word_voltage` → `word_voltage.png`, `word_voltage.svg`).
    pub stem: &'a str,
    pub title: String,
    /// Unit shown on the colour bar.
    pub unit: &'a str,
    pub rows: usize,
    pub cols: usize,
    /// Row-major values.
    pub data: &'a [f64],
}

fn viridis(t: f64) -> RGBColor {
    const ANCHORS: [(f64, f64, f64); 6] = [
        (68.0, 1.0, 84.0),
        (65.0, 68.0, 135.0),
        (42.0, 120.0, 142.0),
        (34.0, 168.0, 132.0),
        (122.0, 209.0, 81.0),
        (253.0, 231.0, 37.0),
    ];
    let t = if t.is_finite() {
        t.clamp(0.0, 1.0)
    } else {
        0.0
    };
    let x = t * (ANCHORS.len() - 1) as f64;
    let k = (x.floor() as usize).min(ANCHORS.len() - 2);
    let f = x - k as f64;
    let (a, b) = (ANCHORS[k], ANCHORS[k + 1]);
    let mix = |p: f64, q: f64| (p + (q - p) * f).round() as u8;
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// Block-average to at most MAX_CELLS per side.
fn downsample(m: &Map) -> (usize, usize, Vec<f64>, usize) {
    let f = m.rows.max(m.cols).div_ceil(MAX_CELLS).max(1);
    let (r, c) = (m.rows.div_ceil(f), m.cols.div_ceil(f));
    let mut sum = vec![0.0; r * c];
    let mut cnt = vec![0usize; r * c];
    for i in 0..m.rows {
        for j in 0..m.cols {
            let v = m.data[i * m.cols + j];
            if v.is_finite() {
                let k = (i / f) * c + j / f;
                sum[k] += v;
                cnt[k] += 1;
            }
        }
    }
    let d = sum
        .iter()
        .zip(&cnt)
        .map(|(s, n)| if *n > 0 { s / *n as f64 } else { f64::NAN })
        .collect();
    (r, c, d, f)
}

fn draw<DB: DrawingBackend>(
    root: DrawingArea<DB, plotters::coord::Shift>,
    m: &Map,
) -> Result<(), String>
where
    DB::ErrorType: 'static,
{
    let (r, c, d, f) = downsample(m);
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for v in d.iter().filter(|v| v.is_finite()) {
        lo = lo.min(*v);
        hi = hi.max(*v);
    }
    if !lo.is_finite() {
        lo = 0.0;
        hi = 1.0;
    }
    let span = if hi > lo { hi - lo } else { 1.0 };
    root.fill(&WHITE).map_err(|e| e.to_string())?;
    let (w, _) = root.dim_in_pixel();
    let (left, right) = root.split_horizontally(w.saturating_sub(150));
    let title = if f > 1 {
        format!("{} ({}×{} blocks)", m.title, f, f)
    } else {
        m.title.clone()
    };
    let mut chart = ChartBuilder::on(&left)
        .caption(title, ("sans-serif", 20))
        .margin(10)
        .x_label_area_size(35)
        .y_label_area_size(45)
        .build_cartesian_2d(0f64..m.cols as f64, m.rows as f64..0f64)
        .map_err(|e| e.to_string())?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc("column (bit line)")
        .y_desc("row (word line)")
        .draw()
        .map_err(|e| e.to_string())?;
    let fr = f as f64;
    chart
        .draw_series((0..r).flat_map(|i| {
            let d = &d;
            (0..c).map(move |j| {
                let v = d[i * c + j];
                let col = if v.is_finite() {
                    viridis((v - lo) / span)
                } else {
                    RGBColor(200, 200, 200)
                };
                Rectangle::new(
                    [
                        (j as f64 * fr, i as f64 * fr),
                        (
                            ((j + 1) as f64 * fr).min(m.cols as f64),
                            ((i + 1) as f64 * fr).min(m.rows as f64),
                        ),
                    ],
                    col.filled(),
                )
            })
        }))
        .map_err(|e| e.to_string())?;
    // Colour bar.
    let mut bar = ChartBuilder::on(&right)
        .margin_top(40)
        .margin_bottom(45)
        .margin_right(10)
        .y_label_area_size(95)
        .caption(m.unit, ("sans-serif", 15))
        .build_cartesian_2d(0f64..1f64, lo..(lo + span))
        .map_err(|e| e.to_string())?;
    bar.configure_mesh()
        .disable_mesh()
        .disable_x_axis()
        .y_labels(6)
        .y_label_style(("sans-serif", 13))
        .y_label_formatter(&|v| format!("{v:.3e}"))
        .draw()
        .map_err(|e| e.to_string())?;
    let steps = 100;
    bar.draw_series((0..steps).map(|s| {
        let a = lo + span * s as f64 / steps as f64;
        let b = lo + span * (s + 1) as f64 / steps as f64;
        Rectangle::new(
            [(0.0, a), (1.0, b)],
            viridis(s as f64 / (steps - 1) as f64).filled(),
        )
    }))
    .map_err(|e| e.to_string())?;
    root.present().map_err(|e| e.to_string())?;
    Ok(())
}

/// Write `dir/stem.png` and, for maps of at most 128×128 cells, `dir/stem.svg` (each atomically);
/// returns the paths written.
pub fn heatmap(dir: &Path, m: &Map) -> Result<Vec<PathBuf>, XbarError> {
    if m.data.len() != m.rows * m.cols || m.rows == 0 || m.cols == 0 {
        return Err(XbarError::Invalid(
            "map size does not match its data".into(),
        ));
    }
    std::fs::create_dir_all(dir).map_err(|e| XbarError::Io(format!("{}: {e}", dir.display())))?;
    let io = |e: ViaError<String>| {
        let e = match e {
            ViaError::Fill(e) => e,
            ViaError::Io(e) => e.to_string(),
        };
        XbarError::Io(format!("plot {}: {e}", m.stem))
    };
    let png = dir.join(format!("{}.png", m.stem));
    write_via(&png, |t| {
        draw(BitMapBackend::new(t, (900, 700)).into_drawing_area(), m)
    })
    .map_err(io)?;
    if m.rows * m.cols > 128 * 128 {
        return Ok(vec![png]);
    }
    let svg = dir.join(format!("{}.svg", m.stem));
    write_via(&svg, |t| {
        draw(SVGBackend::new(t, (900, 700)).into_drawing_area(), m)
    })
    .map_err(io)?;
    Ok(vec![png, svg])
}
