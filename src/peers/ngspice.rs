//! Run ngspice in batch mode on a netlist file and read back every analysis at full precision
//! (ASCII raw file), with names mapped to netc's conventions (`v(x1.mid)`, `i(x1.vs)`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

#[derive(Debug, thiserror::Error)]
pub enum NgspiceError {
    #[error("ngspice is not installed (apt-get install -y ngspice)")]
    NotInstalled,
    #[error("could not run ngspice: {0}")]
    Io(#[from] std::io::Error),
    #[error("ngspice failed on {file}: {log}")]
    Failed { file: String, log: String },
    #[error("could not read ngspice's raw file: {0}")]
    Raw(String),
}

/// One ngspice plot (analysis result).
#[derive(Debug, Clone, PartialEq)]
pub struct NgPlot {
    /// `"op"` or `"dc"`.
    pub kind: String,
    /// Variable names in netc's convention; for `dc` the first is the sweep (`sweep`).
    pub vars: Vec<String>,
    /// One row per point, values in the order of `vars`.
    pub points: Vec<Vec<f64>>,
}

impl NgPlot {
    /// The values of one point as a name → value map.
    pub fn point_map(&self, k: usize) -> BTreeMap<String, f64> {
        self.vars
            .iter()
            .cloned()
            .zip(self.points[k].iter().copied())
            .collect()
    }
}

/// Path of the ngspice executable, if installed.
pub fn find() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join("ngspice"))
        .find(|p| p.is_file())
}

/// For tests: ngspice's path, or `None` (test skipped with a message) — but under `CI=true` a missing
/// ngspice is a failure.
pub fn require_for_test() -> Option<PathBuf> {
    match find() {
        Some(p) => Some(p),
        None => {
            if std::env::var("CI").map(|v| v == "true").unwrap_or(false) {
                panic!("ngspice is required under CI=true but was not found");
            }
            eprintln!("ngspice not found: skipping comparison");
            None
        }
    }
}

/// Map an ngspice vector name to netc's: `i(v.x1.vs)` → `i(x1.vs)`, `v(v-sweep)` → `sweep`.
pub fn normalize_name(name: &str) -> String {
    let n = name.to_ascii_lowercase();
    if n == "v(v-sweep)" || n == "i(i-sweep)" || n == "v-sweep" || n == "i-sweep" {
        return "sweep".into();
    }
    if let Some(inner) = n.strip_prefix("i(").and_then(|s| s.strip_suffix(')')) {
        // ngspice names a subcircuit member `v.x1.vs`: type letter, then path.
        if let Some(rest) = inner.strip_prefix("v.") {
            return format!("i({rest})");
        }
        return format!("i({inner})");
    }
    if let Some(inner) = n.strip_suffix("#branch") {
        let inner = inner.strip_prefix("v.").unwrap_or(inner);
        return format!("i({inner})");
    }
    n
}

/// Run `ngspice -b` on `file` and return its plots in the order ngspice wrote them.
pub fn run(file: &Path) -> Result<Vec<NgPlot>, NgspiceError> {
    let exe = find().ok_or(NgspiceError::NotInstalled)?;
    let dir = tempfile::tempdir()?;
    let raw = dir.path().join("out.raw");
    let out = Command::new(exe)
        .arg("-b")
        .arg("-r")
        .arg(&raw)
        .arg(file)
        .env("SPICE_ASCIIRAWFILE", "1")
        .current_dir(file.parent().unwrap_or(Path::new(".")))
        .output()?;
    let log = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(&raw).map_err(|_| NgspiceError::Failed {
        file: file.display().to_string(),
        log: tail(&log),
    })?;
    let plots = parse_raw(&text)?;
    if plots.is_empty() || log.contains("Error") && log.to_lowercase().contains("fatal") {
        return Err(NgspiceError::Failed {
            file: file.display().to_string(),
            log: tail(&log),
        });
    }
    Ok(plots)
}

fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(20)..].join("\n")
}

/// Parse an ASCII raw file holding one or more plots.
pub fn parse_raw(text: &str) -> Result<Vec<NgPlot>, NgspiceError> {
    let mut plots = Vec::new();
    let mut lines = text.lines().peekable();
    let bad = |m: &str| NgspiceError::Raw(m.to_string());
    while let Some(line) = lines.next() {
        let Some(name) = line.strip_prefix("Plotname:") else {
            continue;
        };
        let name = name.trim().to_ascii_lowercase();
        let kind = if name.starts_with("operating point") {
            "op"
        } else if name.starts_with("dc transfer") {
            "dc"
        } else {
            "other"
        };
        let mut nvars = 0usize;
        let mut npoints = 0usize;
        for l in lines.by_ref() {
            if let Some(v) = l.strip_prefix("No. Variables:") {
                nvars = v.trim().parse().map_err(|_| bad("variable count"))?;
            } else if let Some(v) = l.strip_prefix("No. Points:") {
                npoints = v.trim().parse().map_err(|_| bad("point count"))?;
            } else if l.starts_with("Variables:") {
                break;
            }
        }
        let mut vars = Vec::with_capacity(nvars);
        for _ in 0..nvars {
            let l = lines.next().ok_or_else(|| bad("truncated variable list"))?;
            let mut it = l.split_whitespace();
            it.next();
            let n = it.next().ok_or_else(|| bad("variable name"))?;
            vars.push(normalize_name(n));
        }
        match lines.next() {
            Some(l) if l.starts_with("Values:") => {}
            _ => return Err(bad("missing Values:")),
        }
        let mut points = Vec::with_capacity(npoints);
        for _ in 0..npoints {
            let mut row = Vec::with_capacity(nvars);
            while row.len() < nvars {
                let l = lines.next().ok_or_else(|| bad("truncated values"))?;
                let mut toks = l.split_whitespace().collect::<Vec<_>>();
                if row.is_empty() && toks.len() == 2 {
                    toks.remove(0); // point index
                }
                for t in toks {
                    row.push(t.parse::<f64>().map_err(|_| bad("number"))?);
                }
            }
            points.push(row);
        }
        plots.push(NgPlot {
            kind: kind.to_string(),
            vars,
            points,
        });
    }
    Ok(plots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_mapped() {
        assert_eq!(normalize_name("i(v.x1.vs)"), "i(x1.vs)");
        assert_eq!(normalize_name("I(V1)"), "i(v1)");
        assert_eq!(normalize_name("v(x1.m)"), "v(x1.m)");
        assert_eq!(normalize_name("v(v-sweep)"), "sweep");
    }

    #[test]
    fn raw_file_is_parsed() {
        let raw = "Title: t\nPlotname: Operating Point\nFlags: real\nNo. Variables: 2\nNo. Points: 1\nVariables:\n\t0\tv(in)\tvoltage\n\t1\ti(v1)\tcurrent\nValues:\n0\t\t1.0e+00\n\t-2.5e-04\n";
        let p = parse_raw(raw).unwrap();
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].kind, "op");
        assert_eq!(p[0].points[0], vec![1.0, -2.5e-4]);
    }
}
