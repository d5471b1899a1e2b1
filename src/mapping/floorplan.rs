//! Floorplan picture: every array drawn as a grid of cells (row 0 at the top, column 0 at the
//! left next to the drivers, sense amplifiers below), each layer's tiles filled with the layer's
//! colour and labelled with the layer name (plus part and replica numbers when there are several).

use super::lower::Lowering;
use super::MappingError;
use crate::atomic::ViaError;
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;

const TITLE_H: i32 = 28;
const MARGIN: i32 = 16;
/// Tallest picture drawn: a chip of thousands of arrays shows its first arrays only (the title
/// says how many), so that the bitmap stays a few tens of MB whatever the declaration.
const MAX_HEIGHT_PX: i32 = 12_000;

struct Geometry {
    cell: i32,
    panel_w: i32,
    panel_h: i32,
    per_row: usize,
    /// Arrays drawn (the first ones; at most `low.arrays`).
    drawn: usize,
    width: u32,
    height: u32,
}

fn geometry(low: &Lowering) -> Geometry {
    let longest = low.rows.max(low.cols).max(1) as i32;
    let cell = (720 / longest).clamp(1, 24);
    let panel_w = low.cols as i32 * cell;
    let panel_h = low.rows as i32 * cell;
    let per_row = ((low.arrays as f64).sqrt().ceil() as usize)
        .max(1)
        .min(((1600 / (panel_w + 2 * MARGIN)).max(1)) as usize)
        .max(1);
    let line_h = panel_h + TITLE_H + 2 * MARGIN;
    let max_lines = ((MAX_HEIGHT_PX - TITLE_H) / line_h).max(1) as usize;
    let drawn = low.arrays.min(max_lines.saturating_mul(per_row));
    let n_lines = drawn.div_ceil(per_row) as i32;
    let width = (per_row as i32 * (panel_w + 2 * MARGIN)).max(320) as u32;
    let height = (n_lines * line_h + TITLE_H) as u32;
    Geometry {
        cell,
        panel_w,
        panel_h,
        per_row,
        drawn,
        width,
        height,
    }
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    low: &Lowering,
    title: &str,
    g: &Geometry,
) -> Result<(), String> {
    let e = |x: DrawingAreaErrorKind<DB::ErrorType>| x.to_string();
    root.fill(&WHITE).map_err(e)?;
    let font = ("sans-serif", 16).into_font();
    let title = if g.drawn < low.arrays {
        format!("{title} (first {} of {} arrays)", g.drawn, low.arrays)
    } else {
        title.to_string()
    };
    root.draw(&Text::new(title, (MARGIN, 6), font.clone()))
        .map_err(e)?;
    let label_font = ("sans-serif", 13).into_font().color(&BLACK);
    for a in 0..g.drawn {
        let (gx, gy) = ((a % g.per_row) as i32, (a / g.per_row) as i32);
        let x0 = gx * (g.panel_w + 2 * MARGIN) + MARGIN;
        let y0 = TITLE_H + gy * (g.panel_h + TITLE_H + 2 * MARGIN) + TITLE_H;
        root.draw(&Text::new(
            format!("array {a} ({}x{})", low.rows, low.cols),
            (x0, y0 - 18),
            ("sans-serif", 13).into_font(),
        ))
        .map_err(e)?;
        root.draw(&Rectangle::new(
            [(x0, y0), (x0 + g.panel_w, y0 + g.panel_h)],
            RGBColor(236, 236, 236).filled(),
        ))
        .map_err(e)?;
        let rect = |t: &super::lower::Tile| {
            let (tx, ty) = (x0 + t.col0 as i32 * g.cell, y0 + t.row0 as i32 * g.cell);
            let (tw, th) = (t.n_cols as i32 * g.cell, t.n_rows as i32 * g.cell);
            [(tx, ty), (tx + tw, ty + th)]
        };
        for (mi, m) in low.matrices.iter().enumerate() {
            let colour = Palette99::pick(mi);
            for t in m.tiles.iter().filter(|t| t.array == a) {
                root.draw(&Rectangle::new(rect(t), colour.mix(0.55).filled()))
                    .map_err(e)?;
            }
        }
        if g.cell >= 4 {
            let grid = RGBColor(205, 205, 205).mix(0.6).stroke_width(1);
            for r in 0..=low.rows as i32 {
                let y = y0 + r * g.cell;
                root.draw(&PathElement::new(vec![(x0, y), (x0 + g.panel_w, y)], grid))
                    .map_err(e)?;
            }
            for c in 0..=low.cols as i32 {
                let x = x0 + c * g.cell;
                root.draw(&PathElement::new(vec![(x, y0), (x, y0 + g.panel_h)], grid))
                    .map_err(e)?;
            }
        }
        for (mi, m) in low.matrices.iter().enumerate() {
            let colour = Palette99::pick(mi);
            for t in m.tiles.iter().filter(|t| t.array == a) {
                let r = rect(t);
                root.draw(&Rectangle::new(r, colour.stroke_width(2)))
                    .map_err(e)?;
                let mut label = m.layer.clone();
                if m.parts() > 1 {
                    label.push_str(&format!(" p{}", t.part));
                }
                if m.replicas > 1 {
                    label.push_str(&format!(" r{}", t.replica));
                }
                root.draw(&Text::new(
                    label,
                    (r[0].0 + 3, r[0].1 + 2),
                    label_font.clone(),
                ))
                .map_err(e)?;
            }
        }
        root.draw(&Rectangle::new(
            [(x0, y0), (x0 + g.panel_w, y0 + g.panel_h)],
            BLACK.stroke_width(1),
        ))
        .map_err(e)?;
    }
    root.present().map_err(e)?;
    Ok(())
}

/// The floorplan as SVG text.
pub fn svg(low: &Lowering, title: &str) -> Result<String, MappingError> {
    let g = geometry(low);
    let mut s = String::new();
    {
        let root = SVGBackend::with_string(&mut s, (g.width, g.height)).into_drawing_area();
        draw(&root, low, title, &g).map_err(MappingError::Plot)?;
    }
    Ok(s)
}

/// Write `floorplan.png` and `floorplan.svg` into `dir` (each atomically).
pub fn write(low: &Lowering, title: &str, dir: &Path) -> Result<(), MappingError> {
    let text = svg(low, title)?;
    super::write_atomic(&dir.join("floorplan.svg"), text.as_bytes())?;
    let g = geometry(low);
    let png = dir.join("floorplan.png");
    crate::atomic::write_via(&png, |t| {
        let root = BitMapBackend::new(t, (g.width, g.height)).into_drawing_area();
        draw(&root, low, title, &g)
    })
    .map_err(|e| match e {
        ViaError::Fill(msg) => MappingError::Plot(msg),
        ViaError::Io(e) => MappingError::Io {
            path: png.display().to_string(),
            message: e.to_string(),
        },
    })?;
    Ok(())
}
