//! `results.md`, `results.json` and the plots of a reproduction, each written whole.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::experiments::RunRecord;
use super::tables::PaperTable;
use super::{Paper, ReproduceError, Scale};

#[derive(Serialize)]
struct ResultsJson<'a> {
    netc_version: &'static str,
    scale: Scale,
    tables: &'a [PaperTable],
    runs: Vec<&'a RunRecord>,
}

/// Markdown cell: no line breaks, `|` escaped.
fn cell(s: &str) -> String {
    s.replace('|', "\\|").replace('\n', " ")
}

/// `results.md`: one table per paper.
pub fn markdown(scale: Scale, tables: &[PaperTable], plots: &[PathBuf]) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# netc reproduce: the reference papers' experiments\n");
    let _ = writeln!(
        md,
        "Produced by `netc reproduce{}` (netc {}). Every row: the paper's number, netc's number, \
         the direction and size of the effect on both sides, and whether netc agrees — `yes` \
         (same direction, size within max(2 pts, 50 %) of the paper's, or inside its range), \
         `direction only` (same direction, size off), `no`, or `n/a` (the paper gives nothing to \
         compare). Differences below the row's dead band (1 pt; 0.5 pt for S5) count as `same`.\n",
        match scale {
            Scale::Full => "",
            Scale::Quick => " --quick",
            Scale::Tiny => " --quick (tiny)",
        },
        env!("CARGO_PKG_VERSION")
    );
    let total: usize = tables.iter().map(|t| t.rows.len()).sum();
    let agree = |w: &str| {
        tables
            .iter()
            .flat_map(|t| &t.rows)
            .filter(|r| r.agrees.word() == w)
            .count()
    };
    let _ = writeln!(
        md,
        "Summary: {total} rows — {} yes, {} direction only, {} no, {} n/a.\n",
        agree("yes"),
        agree("direction only"),
        agree("no"),
        agree("n/a")
    );
    for t in tables {
        let _ = writeln!(md, "## {}\n\n`{}`\n", t.title, t.net);
        let _ = writeln!(
            md,
            "| experiment | paper | netc | effect: paper | effect: netc | agrees? |"
        );
        let _ = writeln!(md, "|---|---|---|---|---|---|");
        for r in &t.rows {
            let exp = if r.note.is_empty() {
                r.experiment.clone()
            } else {
                format!("{} ({})", r.experiment, r.note)
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {} |",
                cell(&exp),
                cell(&r.paper),
                cell(&r.netc),
                cell(&r.paper_effect),
                cell(&r.netc_effect),
                r.agrees.word()
            );
        }
        md.push('\n');
        for n in &t.notes {
            let _ = writeln!(md, "- {n}");
        }
        md.push('\n');
        let stem = t.paper.id();
        for p in plots {
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned());
            if let Some(name) = name.filter(|n| n.starts_with(stem) && n.ends_with(".png")) {
                let _ = writeln!(md, "![{name}]({name})");
            }
        }
        md.push('\n');
    }
    md
}

/// Write the plots, `results.json` and `results.md`; returns the files written.
pub fn write_all(
    dir: &Path,
    scale: Scale,
    tables: &[PaperTable],
    records: &[RunRecord],
) -> Result<Vec<PathBuf>, ReproduceError> {
    let papers: Vec<Paper> = tables.iter().map(|t| t.paper).collect();
    let mut files = super::plot::all(dir, &papers, records)?;
    let mut runs: Vec<&RunRecord> = records.iter().collect();
    runs.sort_by(|a, b| a.id.cmp(&b.id));
    let json = ResultsJson {
        netc_version: env!("CARGO_PKG_VERSION"),
        scale,
        tables,
        runs,
    };
    let path = dir.join("results.json");
    let bytes = serde_json::to_vec_pretty(&json).map_err(|source| ReproduceError::Json {
        path: path.clone(),
        source,
    })?;
    crate::data::write_atomic(&path, &bytes)?;
    let md = markdown(scale, tables, &files);
    let md_path = dir.join("results.md");
    crate::data::write_atomic(&md_path, md.as_bytes())?;
    files.push(path);
    files.push(md_path);
    Ok(files)
}
