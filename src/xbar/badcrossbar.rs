//! The badcrossbar peer (python3 + `pip install badcrossbar`), run as a subprocess through
//! `scripts/badcrossbar_solve.py` on the same passive circuit.

use std::path::{Path, PathBuf};
use std::process::Command;

use super::XbarError;

/// The helper script shipped with the crate.
pub fn script_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/badcrossbar_solve.py")
}

/// True when `python3 -c "import badcrossbar"` works.
pub fn available() -> bool {
    Command::new("python3")
        .args(["-c", "import badcrossbar"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// For tests: whether to run the comparison; under `CI=true` a missing badcrossbar is a failure.
pub fn require_for_test() -> bool {
    if available() {
        return true;
    }
    if std::env::var("CI").map(|v| v == "true").unwrap_or(false) {
        panic!("badcrossbar is required under CI=true (pip install badcrossbar)");
    }
    eprintln!("badcrossbar not found: skipping comparison");
    false
}

fn write_f64(path: &Path, v: &[f64]) -> Result<(), XbarError> {
    let mut bytes = Vec::with_capacity(v.len() * 8);
    for x in v {
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    std::fs::write(path, bytes).map_err(|e| XbarError::Io(format!("{}: {e}", path.display())))
}

/// Files for one badcrossbar run, prepared ahead so that a benchmark times only the process.
pub struct Prepared {
    _dir: tempfile::TempDir,
    args: Vec<String>,
    out: PathBuf,
    k: usize,
    cols: usize,
}

/// Prepare the inputs: conductances `g` (R×C row-major, S), inputs `v_in` (k vectors of R, V).
pub fn prepare(
    g: &[f64],
    rows: usize,
    cols: usize,
    v_in: &[Vec<f64>],
    r_word_ohm: f64,
    r_bit_ohm: f64,
) -> Result<Prepared, XbarError> {
    let dir = tempfile::tempdir().map_err(|e| XbarError::Io(e.to_string()))?;
    let k = v_in.len();
    let gp = dir.path().join("g.bin");
    let vp = dir.path().join("v.bin");
    let out = dir.path().join("out.bin");
    write_f64(&gp, g)?;
    let mut v = vec![0.0; rows * k];
    for (t, vec) in v_in.iter().enumerate() {
        for i in 0..rows {
            v[i * k + t] = vec[i];
        }
    }
    write_f64(&vp, &v)?;
    let args = vec![
        script_path().display().to_string(),
        gp.display().to_string(),
        vp.display().to_string(),
        rows.to_string(),
        cols.to_string(),
        k.to_string(),
        format!("{r_word_ohm:e}"),
        format!("{r_bit_ohm:e}"),
        out.display().to_string(),
    ];
    Ok(Prepared {
        _dir: dir,
        args,
        out,
        k,
        cols,
    })
}

impl Prepared {
    /// The python3 arguments (script and files), for running the process yourself.
    pub fn args(&self) -> &[String] {
        &self.args
    }

    /// Run the python process; returns k output vectors of C currents (A).
    pub fn run(&self) -> Result<Vec<Vec<f64>>, XbarError> {
        let o = Command::new("python3")
            .args(&self.args)
            .output()
            .map_err(|e| XbarError::Io(format!("python3: {e}")))?;
        if !o.status.success() {
            return Err(XbarError::Io(format!(
                "badcrossbar failed: {}",
                String::from_utf8_lossy(&o.stderr)
            )));
        }
        let bytes = std::fs::read(&self.out).map_err(|e| XbarError::Io(e.to_string()))?;
        if bytes.len() != self.k * self.cols * 8 {
            return Err(XbarError::Io(
                "badcrossbar output has the wrong size".into(),
            ));
        }
        let vals: Vec<f64> = bytes
            .chunks_exact(8)
            .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")))
            .collect();
        Ok(vals.chunks(self.cols).map(|c| c.to_vec()).collect())
    }
}
