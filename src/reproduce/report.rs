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

#[cfg(test)]
mod tests {
    use super::super::experiments::{plan, AccRec, BatchRec, DriftRec, RunRecord};
    use super::super::tables;
    use super::*;

    /// Records shaped like the trainer's (numbers made up for the layout only).
    fn fake(spec: &super::super::RunSpec, k: f64) -> RunRecord {
        let acc = AccRec {
            train: 0.9 - 0.01 * k,
            test: 0.85 - 0.01 * k,
        };
        RunRecord {
            id: spec.id.clone(),
            paper: spec.paper,
            kind: spec.kind.clone(),
            fraction: spec.fraction,
            seed: spec.seed,
            label: spec.label.clone(),
            net: spec.net.display().to_string(),
            scale: spec.scale,
            settings: super::super::experiments::settings_of(spec),
            mode: "insitu".into(),
            software: Some(acc),
            quantised: Some(acc),
            transferred: Some(acc),
            chip_final: acc,
            batches: (1..=30)
                .map(|u| BatchRec {
                    update: u,
                    loss: 2.0 / u as f64,
                    batch_acc: 1.0 - 1.0 / u as f64,
                })
                .collect(),
            g_before_siemens: if spec.keep_curves {
                (0..100).map(|i| 1e-5 + 1e-7 * i as f64).collect()
            } else {
                vec![]
            },
            g_after_siemens: if spec.keep_curves {
                (0..100).map(|i| 2e-5 + 2e-7 * i as f64).collect()
            } else {
                vec![]
            },
            drift: spec
                .drift_ages_seconds
                .iter()
                .map(|&a| DriftRec {
                    age_seconds: a,
                    acc,
                })
                .collect(),
            updates: 30,
            cells_written: 0,
            pulses: 0,
            seconds: 0.0,
        }
    }

    #[test]
    fn every_file_is_written_and_every_row_is_in_the_markdown() {
        let netlists = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("netlists");
        let dir = tempfile::tempdir().unwrap();
        let mut recs = Vec::new();
        for p in Paper::ALL {
            for (k, s) in plan(p, Scale::Quick, &netlists, dir.path())
                .unwrap()
                .iter()
                .enumerate()
            {
                recs.push(fake(s, k as f64));
            }
        }
        let tabs: Vec<PaperTable> = Paper::ALL
            .iter()
            .map(|&p| {
                let r: Vec<&RunRecord> = recs.iter().filter(|r| r.paper == p).collect();
                tables::build(p, Scale::Quick, &r)
            })
            .collect();
        let files = write_all(dir.path(), Scale::Quick, &tabs, &recs).unwrap();
        for f in [
            "s1_inbatch.png",
            "s2_inbatch.svg",
            "s3_stuck_sweep.png",
            "s5_chain.png",
            "s1_noise_seed1_conductance.png",
            "results.md",
            "results.json",
        ] {
            assert!(dir.path().join(f).is_file(), "{f}");
            assert!(files.contains(&dir.path().join(f)), "{f} not listed");
        }
        let md = std::fs::read_to_string(dir.path().join("results.md")).unwrap();
        for t in &tabs {
            assert!(md.contains(&t.title));
            for r in &t.rows {
                assert!(md.contains(&cell(&r.experiment)), "{}", r.experiment);
                assert!(r.netc_number.is_finite(), "{}", r.experiment);
            }
        }
        assert!(md.contains("![s3_stuck_sweep.png](s3_stuck_sweep.png)"));
        // no temporary files left behind
        for e in std::fs::read_dir(dir.path()).unwrap() {
            let n = e.unwrap().file_name().to_string_lossy().into_owned();
            assert!(!n.contains(".tmp"), "{n}");
        }
    }
}
