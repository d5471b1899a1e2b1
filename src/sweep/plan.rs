//! Points of a sweep and its manifest: every point has a stable id (a hash of what it runs) and a
//! seed derived from the point itself, so neither depends on its position in the sweep or on
//! which subset of points a Slurm task happens to run.

use super::file::{Combine, Seeds, SweepSpec, MAX_POINTS};
use super::{write_atomic, SweepError};
use serde_json::{json, Value as Json};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::Path;

/// One point of the sweep.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Point {
    /// Position in the manifest (for display and `--index`; never used for seeds or ids).
    pub index: usize,
    /// 16 hex digits of SHA-256 over the job kind, the base file's contents, the fixed job
    /// options, the parameter values and the replicate (or explicit seed).
    pub id: String,
    /// Parameter values by path, in the sweep file's order.
    pub params: serde_json::Map<String, Json>,
    /// Replicate number when seeds are derived (`seeds = N`).
    pub replicate: Option<usize>,
    pub seed: u64,
}

/// What `plan` writes: `DIR/manifest.json`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Manifest {
    pub format: String,
    pub netc_version: String,
    /// SHA-256 of the spec and points (hex, 16 digits): stamped into every result.
    pub hash: String,
    pub spec: SweepSpec,
    pub points: Vec<Point>,
}

pub const MANIFEST_FILE: &str = "manifest.json";
pub const MANIFEST_FORMAT: &str = "netc-sweep/1";

fn hex16(bytes: &[u8]) -> String {
    bytes[..8].iter().map(|b| format!("{b:02x}")).collect()
}

fn sha(v: &Json) -> [u8; 32] {
    // serde_json keeps insertion order (preserve_order); every map hashed here is built in a
    // fixed order (BTreeMap or the sweep file's order), so the text is canonical
    Sha256::digest(v.to_string().as_bytes()).into()
}

/// The value combinations of the parameters, in order.
fn combinations(spec: &SweepSpec) -> Result<Vec<serde_json::Map<String, Json>>, SweepError> {
    let ps = &spec.params;
    if ps.is_empty() {
        return Ok(vec![serde_json::Map::new()]);
    }
    match spec.combine {
        Combine::Zip => Ok((0..ps[0].values.len())
            .map(|i| {
                ps.iter()
                    .map(|p| (p.path.clone(), p.values[i].clone()))
                    .collect()
            })
            .collect()),
        Combine::Grid => {
            let total = ps
                .iter()
                .try_fold(1usize, |acc, p| acc.checked_mul(p.values.len()))
                .filter(|&n| n <= MAX_POINTS)
                .ok_or_else(|| SweepError::Invalid {
                    span: ps[0].span.clone(),
                    message: format!("the grid has more than {MAX_POINTS} points"),
                })?;
            let mut out = Vec::with_capacity(total);
            for k in 0..total {
                // first parameter slowest
                let mut rem = k;
                let mut idx = vec![0; ps.len()];
                for (j, p) in ps.iter().enumerate().rev() {
                    idx[j] = rem % p.values.len();
                    rem /= p.values.len();
                }
                out.push(
                    ps.iter()
                        .zip(&idx)
                        .map(|(p, &i)| (p.path.clone(), p.values[i].clone()))
                        .collect(),
                );
            }
            Ok(out)
        }
    }
}

/// Every point of the sweep, with ids and seeds. Points are checked (`.net` overrides loaded and
/// validated, xbar flags parsed) so a bad value is reported before anything runs.
pub fn plan(spec: &SweepSpec) -> Result<Manifest, SweepError> {
    let base_hash = match &spec.base {
        Some(p) => {
            let bytes = std::fs::read(p).map_err(|e| SweepError::Io {
                path: p.display().to_string(),
                message: e.to_string(),
            })?;
            hex16(&Sha256::digest(&bytes))
        }
        None => String::new(),
    };
    let job: BTreeMap<_, _> = spec.job.clone();
    let combos = combinations(spec)?;
    let replicates: Vec<(Option<usize>, Option<u64>)> = match &spec.seeds {
        Seeds::Derived(n) => (0..*n).map(|r| (Some(r), None)).collect(),
        Seeds::List(v) => v.iter().map(|s| (None, Some(*s))).collect(),
    };
    if combos.len() * replicates.len() > MAX_POINTS {
        return Err(SweepError::Usage(format!(
            "{} points (at most {MAX_POINTS})",
            combos.len() * replicates.len()
        )));
    }
    let mut points = Vec::new();
    let mut seen = BTreeMap::new();
    for params in combos {
        for (rep, explicit) in &replicates {
            let what = json!({
                "kind": spec.kind.name(), "base": base_hash, "job": job, "params": params,
                "replicate": rep, "seed": explicit,
            });
            let id = hex16(&sha(&what));
            let seed = match explicit {
                Some(s) => *s,
                None => {
                    let h = sha(&json!({"seed-of": what}));
                    // 31 bits: every seed field of the languages and CLIs takes it
                    u64::from_le_bytes(h[..8].try_into().expect("8 bytes")) >> 33
                }
            };
            let point = Point {
                index: points.len(),
                id: id.clone(),
                params: params.clone(),
                replicate: *rep,
                seed,
            };
            if let Some(first) = seen.insert(id.clone(), point.index) {
                return Err(SweepError::Usage(format!(
                    "points {first} and {} are the same run (a parameter lists a value twice)",
                    point.index
                )));
            }
            points.push(point);
        }
    }
    // check each distinct parameter combination once (replicates differ only by seed)
    for p in points.iter().filter(|p| p.replicate.unwrap_or(0) == 0) {
        if let Err(message) = spec.kind.check_point(spec, p) {
            let span = spec.params.first().map(|q| q.span.clone());
            let values = p
                .params
                .iter()
                .map(|(k, v)| format!("{k} = {v}"))
                .collect::<Vec<_>>()
                .join(", ");
            let text = format!("point {} ({values}) is invalid: {message}", p.index);
            return Err(match span {
                Some(span) => SweepError::Invalid {
                    span,
                    message: text,
                },
                None => SweepError::Usage(text),
            });
        }
    }
    let hash = hex16(&sha(&json!({"spec": spec, "points": points})));
    Ok(Manifest {
        format: MANIFEST_FORMAT.into(),
        netc_version: env!("CARGO_PKG_VERSION").into(),
        hash,
        spec: spec.clone(),
        points,
    })
}

impl Manifest {
    pub fn write(&self, dir: &Path) -> Result<(), SweepError> {
        std::fs::create_dir_all(dir).map_err(|e| SweepError::Io {
            path: dir.display().to_string(),
            message: e.to_string(),
        })?;
        let text = serde_json::to_string_pretty(self).expect("manifest serialises");
        write_atomic(&dir.join(MANIFEST_FILE), text.as_bytes())
    }

    pub fn read(dir: &Path) -> Result<Manifest, SweepError> {
        let p = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&p).map_err(|e| SweepError::Io {
            path: p.display().to_string(),
            message: format!("{e} (run `netc sweep plan` first)"),
        })?;
        let m: Manifest = serde_json::from_str(&text).map_err(|e| SweepError::Io {
            path: p.display().to_string(),
            message: format!("invalid manifest: {e}"),
        })?;
        if m.format != MANIFEST_FORMAT {
            return Err(SweepError::Io {
                path: p.display().to_string(),
                message: format!(
                    "manifest format {} (this netc reads {MANIFEST_FORMAT})",
                    m.format
                ),
            });
        }
        Ok(m)
    }

    pub fn point(&self, id: &str) -> Option<&Point> {
        self.points.iter().find(|p| p.id == id)
    }
}
