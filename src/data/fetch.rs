//! `netc data fetch mnist`: download the four standard MNIST files into a
//! cache directory, verifying their SHA-256 checksums (never used by tests).

use super::{write_atomic, DataError};
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::{Path, PathBuf};

/// File name and SHA-256 of the four MNIST archives.
pub const MNIST_FILES: [(&str, &str); 4] = [
    (
        "train-images-idx3-ubyte.gz",
        "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
    ),
    (
        "train-labels-idx1-ubyte.gz",
        "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
    ),
    (
        "t10k-images-idx3-ubyte.gz",
        "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
    ),
    (
        "t10k-labels-idx1-ubyte.gz",
        "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
    ),
];

/// Mirrors tried in order.
pub const MNIST_MIRRORS: [&str; 2] = [
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
];

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Default cache directory: `$XDG_CACHE_HOME/netc/mnist` or `~/.cache/netc/mnist`.
pub fn default_cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("."));
    base.join("netc").join("mnist")
}

fn download(url: &str) -> Result<Vec<u8>, DataError> {
    let err = |msg: String| DataError::Fetch {
        url: url.into(),
        msg,
    };
    let resp = ureq::get(url).call().map_err(|e| err(e.to_string()))?;
    let mut buf = Vec::new();
    resp.into_reader()
        .take(64 << 20)
        .read_to_end(&mut buf)
        .map_err(|e| err(e.to_string()))?;
    Ok(buf)
}

/// Fetch every missing (or corrupt) file into `dir`; files already present
/// with the right checksum are kept. Returns the paths; `log` gets one line
/// per file.
pub fn fetch_mnist(dir: &Path, mut log: impl FnMut(&str)) -> Result<Vec<PathBuf>, DataError> {
    let mut out = vec![];
    for (name, sum) in MNIST_FILES {
        let path = dir.join(name);
        if let Ok(b) = std::fs::read(&path) {
            if sha256_hex(&b) == sum {
                log(&format!("{}: cached, checksum ok", path.display()));
                out.push(path);
                continue;
            }
        }
        let mut last = None;
        for m in MNIST_MIRRORS {
            let url = format!("{m}{name}");
            match download(&url) {
                Ok(b) => {
                    let got = sha256_hex(&b);
                    if got != sum {
                        last = Some(DataError::Checksum {
                            file: url,
                            expected: sum.into(),
                            found: got,
                        });
                        continue;
                    }
                    write_atomic(&path, &b)?;
                    log(&format!(
                        "{}: downloaded {} bytes from {url}, checksum ok",
                        path.display(),
                        b.len()
                    ));
                    last = None;
                    break;
                }
                Err(e) => last = Some(e),
            }
        }
        if let Some(e) = last {
            return Err(e);
        }
        out.push(path);
    }
    Ok(out)
}
