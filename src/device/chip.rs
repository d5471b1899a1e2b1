//! A chip: the remembered state of every array of a compiled network.
//!
//! Per array and per cell: the true conductance left by the last write (`g.npy`, S), the device's
//! own parameters drawn once (`step_gain.npy`, `g_max.npy`, `nu.npy`, `tail.npy`), its fault
//! (`fault.npy`: 0 none, 1 stuck, 2 mis-written; `g_stuck.npy`), its pulse count (`pulses.npy`) and
//! when it was last written (`t_written.npy`, seconds on the chip's clock), and the gate voltage of
//! its last one-shot SET (`v_gate.npy`, V; 0 = never set one-shot — S1's in-situ rule adds each
//! update's gate change to it; format 2, a format-1 chip loads with zeros), and the multipliers of
//! its SET and RESET switching thresholds (`th_set_gain.npy`, `th_reset_gain.npy`; format 3, older
//! chips load with 1 = the device block's thresholds). Saved as a directory
//! `array_<k>/<name>.npy` (plain little-endian `.npy` files numpy opens directly) plus a versioned
//! `chip.json` manifest; written into a temporary directory next to the target and renamed into
//! place, so a chip directory is whole or absent.

use std::io::BufWriter;

use npyz::WriterBuilder;
use std::path::Path;

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::{DeviceError, DeviceParams, DeviceSpec, Fault};

/// Manifest format version.
pub const CHIP_FORMAT: u32 = 3;
/// Oldest manifest format this netc still reads (format 1 has no `v_gate.npy`).
pub const CHIP_FORMAT_MIN: u32 = 1;

/// One array's state.
#[derive(Debug, Clone, PartialEq)]
pub struct ArrayState {
    pub rows: usize,
    pub cols: usize,
    /// Conductance programmed by the last write (S), row-major.
    pub g_siemens: Vec<f64>,
    pub params: Vec<DeviceParams>,
    pub pulses: Vec<u32>,
    /// Chip-clock time of each cell's last write (s).
    pub t_written_seconds: Vec<f64>,
    /// Gate voltage of each cell's last one-shot SET (V); 0 = never set one-shot.
    pub v_gate_v: Vec<f64>,
}

impl ArrayState {
    /// A fresh array: every device drawn from `spec` (device-to-device variation and faults) and
    /// at G_min (stuck devices at their stuck value).
    pub fn fresh<R: Rng>(spec: &DeviceSpec, rows: usize, cols: usize, rng: &mut R) -> ArrayState {
        let params: Vec<DeviceParams> = (0..rows * cols).map(|_| spec.draw(rng)).collect();
        let g_siemens = params
            .iter()
            .map(|p| match p.fault {
                Fault::Stuck { g_siemens } => g_siemens,
                _ => spec.g_min_siemens,
            })
            .collect();
        ArrayState {
            rows,
            cols,
            g_siemens,
            params,
            pulses: vec![0; rows * cols],
            t_written_seconds: vec![0.0; rows * cols],
            v_gate_v: vec![0.0; rows * cols],
        }
    }

    /// Conductances at chip time `now_seconds` (drift since each cell's last write).
    pub fn g_at(&self, spec: &DeviceSpec, now_seconds: f64) -> Vec<f64> {
        (0..self.g_siemens.len())
            .map(|k| {
                spec.drifted(
                    &self.params[k],
                    self.g_siemens[k],
                    now_seconds - self.t_written_seconds[k],
                )
            })
            .collect()
    }
}

/// The manifest `chip.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub format: u32,
    pub netc_version: String,
    pub network: String,
    /// SHA-256 of the `.net` file text the chip was programmed for.
    pub network_sha256: String,
    pub hardware: serde_json::Value,
    pub device: DeviceSpec,
    pub seed: u64,
    /// The chip's clock (s): time of the last programming operation.
    #[serde(alias = "now_s")]
    pub now_seconds: f64,
    /// `[rows, cols]` of every array.
    pub arrays: Vec<[usize; 2]>,
    /// The weights the chip's conductances are decoded with, one matrix per model slot, when
    /// they are not the weights being evaluated: an in-situ or hybrid run freezes each matrix's
    /// siemens per weight unit at its first programming (`insitu_weight_scale`, or `auto` at the
    /// initial / transferred weights), and the trained weights would give other scales. Absent
    /// for a chip programmed from the weights it is evaluated with (`netc program`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale_weights: Option<Vec<crate::nn::matrix::Matrix>>,
}

/// A chip: its manifest and every array's state.
#[derive(Debug, Clone, PartialEq)]
pub struct Chip {
    pub manifest: Manifest,
    pub arrays: Vec<ArrayState>,
}

impl Chip {
    /// Every array's conductances as read `age_seconds` seconds after the chip's last programming
    /// operation: drift from each cell's own last write time ([`ArrayState::g_at`]), then one
    /// read-noise draw per cell from a generator seeded with `read_seed` (same seed, same read).
    /// The read is taken once and held for the whole evaluation.
    pub fn read(&self, age_seconds: f64, read_seed: u64) -> Vec<Vec<f64>> {
        use rand::SeedableRng;
        self.read_with(
            age_seconds,
            &mut rand_chacha::ChaCha8Rng::seed_from_u64(read_seed),
        )
    }

    /// [`Chip::read`] with the read noise drawn from `rng` (array by array, cell by cell; a
    /// training run's read stream).
    pub fn read_with<R: Rng>(&self, age_seconds: f64, rng: &mut R) -> Vec<Vec<f64>> {
        let spec = &self.manifest.device;
        let now_seconds = self.manifest.now_seconds + age_seconds;
        self.arrays
            .iter()
            .map(|a| {
                a.g_at(spec, now_seconds)
                    .into_iter()
                    .map(|g| spec.read(g, rng))
                    .collect()
            })
            .collect()
    }
}

/// A duration such as `30d`, `2h`, `10min`, `45s` or plain seconds (`120`, `1.5e3`), in seconds;
/// finite and ≥ 0.
pub fn parse_age(text: &str) -> Result<f64, DeviceError> {
    let t = text.trim();
    let split = t
        .find(|c: char| c.is_ascii_alphabetic() && c != 'e' && c != 'E')
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.trim().is_empty() {
        return Err(DeviceError::Chip(format!(
            "age `{text}` is not a number with a unit (e.g. 30d, 2h, 10min, 45s, 120)"
        )));
    }
    let factor_seconds = match unit.trim() {
        "" | "s" => 1.0,
        "min" => 60.0,
        "h" => 3600.0,
        "d" => 86400.0,
        u => {
            return Err(DeviceError::Chip(format!(
                "age `{text}`: unknown unit `{u}` (use d, h, min, s or plain seconds)"
            )))
        }
    };
    let v: f64 = num.trim().parse().map_err(|_| {
        DeviceError::Chip(format!(
            "age `{text}`: `{}` is not a number (e.g. 30d, 2h, 10min, 45s, 120)",
            num.trim()
        ))
    })?;
    let age_seconds = v * factor_seconds;
    if !(age_seconds.is_finite() && age_seconds >= 0.0) {
        return Err(DeviceError::Chip(format!(
            "age `{text}`: must be finite and ≥ 0"
        )));
    }
    Ok(age_seconds)
}

/// SHA-256 of a network file's text, hex.
pub fn network_hash(text: &str) -> String {
    use sha2::Digest;
    let d = sha2::Sha256::digest(text.as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

fn io(path: &Path, e: impl std::fmt::Display) -> DeviceError {
    DeviceError::Io(format!("{}: {e}", path.display()))
}

fn write_npy<T: npyz::AutoSerialize + Copy>(
    path: &Path,
    shape: [usize; 2],
    data: &[T],
) -> Result<(), DeviceError> {
    let f = std::fs::File::create(path).map_err(|e| io(path, e))?;
    let mut w = npyz::WriteOptions::<T>::new()
        .default_dtype()
        .shape(&[shape[0] as u64, shape[1] as u64])
        .writer(BufWriter::new(f))
        .begin_nd()
        .map_err(|e| io(path, e))?;
    w.extend(data.iter().copied()).map_err(|e| io(path, e))?;
    w.finish().map_err(|e| io(path, e))?;
    Ok(())
}

fn read_npy<T: npyz::Deserialize>(path: &Path, shape: [usize; 2]) -> Result<Vec<T>, DeviceError> {
    let bytes = std::fs::read(path).map_err(|e| io(path, e))?;
    let f = npyz::NpyFile::new(&bytes[..]).map_err(|e| io(path, e))?;
    let want = [shape[0] as u64, shape[1] as u64];
    if f.shape() != want {
        return Err(DeviceError::Chip(format!(
            "{}: shape {:?}, the manifest says {:?}",
            path.display(),
            f.shape(),
            want
        )));
    }
    if f.order() != npyz::Order::C {
        return Err(DeviceError::Chip(format!(
            "{}: Fortran order is not supported",
            path.display()
        )));
    }
    f.into_vec::<T>().map_err(|e| io(path, e))
}

impl Chip {
    /// Save into directory `dir` (replaced whole: written beside it, then renamed into place).
    pub fn save(&self, dir: &Path) -> Result<(), DeviceError> {
        let parent = dir
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(|e| io(parent, e))?;
        let tmp = tempfile::Builder::new()
            .prefix(".chip-")
            .tempdir_in(parent)
            .map_err(|e| io(parent, e))?;
        for (k, a) in self.arrays.iter().enumerate() {
            let d = tmp.path().join(format!("array_{k}"));
            std::fs::create_dir(&d).map_err(|e| io(&d, e))?;
            let sh = [a.rows, a.cols];
            write_npy(&d.join("g.npy"), sh, &a.g_siemens)?;
            let col = |f: fn(&DeviceParams) -> f64| a.params.iter().map(f).collect::<Vec<f64>>();
            write_npy(&d.join("step_gain.npy"), sh, &col(|p| p.step_gain))?;
            write_npy(&d.join("g_max.npy"), sh, &col(|p| p.g_max_siemens))?;
            write_npy(&d.join("nu.npy"), sh, &col(|p| p.nu))?;
            write_npy(&d.join("tail.npy"), sh, &col(|p| p.tail_g_rel))?;
            write_npy(&d.join("th_set_gain.npy"), sh, &col(|p| p.th_set_gain))?;
            write_npy(&d.join("th_reset_gain.npy"), sh, &col(|p| p.th_reset_gain))?;
            let fault: Vec<u8> = a.params.iter().map(|p| p.fault.code()).collect();
            write_npy(&d.join("fault.npy"), sh, &fault)?;
            let g_stuck = col(|p| match p.fault {
                Fault::Stuck { g_siemens } => g_siemens,
                _ => 0.0,
            });
            write_npy(&d.join("g_stuck.npy"), sh, &g_stuck)?;
            write_npy(&d.join("pulses.npy"), sh, &a.pulses)?;
            write_npy(&d.join("t_written.npy"), sh, &a.t_written_seconds)?;
            write_npy(&d.join("v_gate.npy"), sh, &a.v_gate_v)?;
        }
        // always written in the current format (every array file above is present)
        let manifest = Manifest {
            format: CHIP_FORMAT,
            ..self.manifest.clone()
        };
        let json = serde_json::to_string_pretty(&manifest)
            .map_err(|e| DeviceError::Chip(e.to_string()))?;
        let mp = tmp.path().join("chip.json");
        std::fs::write(&mp, json).map_err(|e| io(&mp, e))?;
        // a created directory's mode, not the temporary directory's private 0700
        crate::atomic::publish_dir_permissions(tmp.path()).map_err(|e| io(tmp.path(), e))?;
        let kept = tmp.keep();
        if dir.exists() {
            // replace an older chip: move it aside first, then drop it once the new one is in place
            let old = parent.join(format!(".chip-old-{}", std::process::id()));
            std::fs::rename(dir, &old).map_err(|e| io(dir, e))?;
            std::fs::rename(&kept, dir).map_err(|e| io(dir, e))?;
            let _ = std::fs::remove_dir_all(&old);
        } else {
            std::fs::rename(&kept, dir).map_err(|e| io(dir, e))?;
        }
        Ok(())
    }

    /// Load a chip directory; `network_sha256` (when given) must match the manifest's: a chip
    /// programmed for another network is an error.
    pub fn load(dir: &Path, network_sha256: Option<&str>) -> Result<Chip, DeviceError> {
        let mp = dir.join("chip.json");
        let text = std::fs::read_to_string(&mp).map_err(|e| io(&mp, e))?;
        let manifest: Manifest = serde_json::from_str(&text)
            .map_err(|e| DeviceError::Chip(format!("{}: {e}", mp.display())))?;
        if !(CHIP_FORMAT_MIN..=CHIP_FORMAT).contains(&manifest.format) {
            return Err(DeviceError::Chip(format!(
                "{}: format {} (this netc reads formats {CHIP_FORMAT_MIN} to {CHIP_FORMAT})",
                mp.display(),
                manifest.format
            )));
        }
        if let Some(h) = network_sha256 {
            if h != manifest.network_sha256 {
                return Err(DeviceError::Chip(format!(
                    "{} was programmed for network `{}` (sha256 {}…), not this one (sha256 {}…)",
                    dir.display(),
                    manifest.network,
                    &manifest.network_sha256[..12.min(manifest.network_sha256.len())],
                    &h[..12.min(h.len())]
                )));
            }
        }
        manifest
            .device
            .validate()
            .map_err(|e| DeviceError::Chip(format!("{}: {e}", mp.display())))?;
        let mut arrays = Vec::with_capacity(manifest.arrays.len());
        for (k, &[rows, cols]) in manifest.arrays.iter().enumerate() {
            if rows == 0 || cols == 0 || rows.saturating_mul(cols) > 1 << 28 {
                return Err(DeviceError::Chip(format!(
                    "array {k}: implausible size {rows}×{cols}"
                )));
            }
            let d = dir.join(format!("array_{k}"));
            let sh = [rows, cols];
            let g_siemens: Vec<f64> = read_npy(&d.join("g.npy"), sh)?;
            let gain: Vec<f64> = read_npy(&d.join("step_gain.npy"), sh)?;
            let gmax: Vec<f64> = read_npy(&d.join("g_max.npy"), sh)?;
            let nu: Vec<f64> = read_npy(&d.join("nu.npy"), sh)?;
            let tail: Vec<f64> = read_npy(&d.join("tail.npy"), sh)?;
            let fault: Vec<u8> = read_npy(&d.join("fault.npy"), sh)?;
            let g_stuck: Vec<f64> = read_npy(&d.join("g_stuck.npy"), sh)?;
            let pulses: Vec<u32> = read_npy(&d.join("pulses.npy"), sh)?;
            let t_written_seconds: Vec<f64> = read_npy(&d.join("t_written.npy"), sh)?;
            let v_gate_v: Vec<f64> = if manifest.format >= 2 {
                read_npy(&d.join("v_gate.npy"), sh)?
            } else {
                vec![0.0; rows * cols]
            };
            // format 3 stores each device's threshold multipliers; older chips had nominal ones
            let (th_set, th_reset): (Vec<f64>, Vec<f64>) = if manifest.format >= 3 {
                (
                    read_npy(&d.join("th_set_gain.npy"), sh)?,
                    read_npy(&d.join("th_reset_gain.npy"), sh)?,
                )
            } else {
                (vec![1.0; rows * cols], vec![1.0; rows * cols])
            };
            let mut params = Vec::with_capacity(rows * cols);
            for c in 0..rows * cols {
                let fault = match fault[c] {
                    0 => Fault::None,
                    1 => Fault::Stuck {
                        g_siemens: g_stuck[c],
                    },
                    2 => Fault::Miswritten,
                    x => {
                        return Err(DeviceError::Chip(format!(
                            "{}: unknown fault code {x} at cell {c}",
                            d.join("fault.npy").display()
                        )))
                    }
                };
                params.push(DeviceParams {
                    step_gain: gain[c],
                    g_max_siemens: gmax[c],
                    nu: nu[c],
                    fault,
                    tail_g_rel: tail[c],
                    th_set_gain: th_set[c],
                    th_reset_gain: th_reset[c],
                });
            }
            arrays.push(ArrayState {
                rows,
                cols,
                g_siemens,
                params,
                pulses,
                t_written_seconds,
                v_gate_v,
            });
        }
        Ok(Chip { manifest, arrays })
    }
}
