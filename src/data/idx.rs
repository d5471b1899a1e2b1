//! IDX reader (gzipped or raw, detected by the gzip magic bytes) and the
//! standard MNIST-style file sets.

use super::DataError;
use std::io::Read;
use std::path::{Path, PathBuf};

/// 8-bit grey images with their labels.
#[derive(Debug, Clone, PartialEq)]
pub struct RawImages {
    pub rows: usize,
    pub cols: usize,
    /// `n · rows · cols` pixels, image after image, row-major.
    pub pixels: Vec<u8>,
    pub labels: Vec<u8>,
}

impl RawImages {
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
    pub fn image(&self, i: usize) -> &[u8] {
        let l = self.rows * self.cols;
        &self.pixels[i * l..(i + 1) * l]
    }
    /// Images `range` as a new set.
    pub fn slice(&self, range: std::ops::Range<usize>) -> RawImages {
        let l = self.rows * self.cols;
        RawImages {
            rows: self.rows,
            cols: self.cols,
            pixels: self.pixels[range.start * l..range.end * l].to_vec(),
            labels: self.labels[range].to_vec(),
        }
    }
}

pub const IMAGES_MAGIC: u32 = 0x0000_0803;
pub const LABELS_MAGIC: u32 = 0x0000_0801;

/// Memory planned per byte of IDX data: the byte, and the f64 it becomes in a dataset (with a
/// preprocessed copy).
pub const BYTES_PER_IDX_BYTE: u128 = 17;

/// Undo gzip if the data starts with the gzip magic `1f 8b`. The header is inflated first and
/// the body only up to the size it promises (checked against the memory budget): a small file
/// that inflates to gigabytes of zeros is refused or cut, never inflated whole.
pub fn maybe_gunzip(bytes: Vec<u8>, name: &str) -> Result<Vec<u8>, DataError> {
    if !(bytes.len() >= 2 && bytes[0] == 0x1f && bytes[1] == 0x8b) {
        return Ok(bytes);
    }
    let gz = |e: std::io::Error| DataError::Gzip {
        path: name.into(),
        msg: e.to_string(),
    };
    let mut dec = flate2::read::MultiGzDecoder::new(&bytes[..]);
    let mut out = Vec::new();
    (&mut dec).take(4).read_to_end(&mut out).map_err(gz)?;
    if out.len() < 4 {
        return Ok(out); // the header check reports the truncation
    }
    let ndim = out[3] as u64;
    (&mut dec)
        .take(4 * ndim)
        .read_to_end(&mut out)
        .map_err(gz)?;
    let hlen = 4 + 4 * ndim as usize;
    if out.len() < hlen {
        return Ok(out);
    }
    let body = (0..ndim as usize).fold(1u128, |a, d| {
        a.saturating_mul(be32(&out, 4 + 4 * d) as u128)
    });
    let expected = (hlen as u128).saturating_add(body);
    crate::limits::check(
        || format!("the {body} bytes of data its IDX header promises (inflated)"),
        expected.saturating_mul(BYTES_PER_IDX_BYTE),
    )
    .map_err(|e| DataError::Header {
        path: name.into(),
        msg: e.to_string(),
    })?;
    let rest = (expected - hlen as u128) as u64;
    // one byte more than promised tells a longer stream from an exact one
    (&mut dec)
        .take(rest.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(gz)?;
    if out.len() as u128 > expected {
        return Err(DataError::Header {
            path: name.into(),
            msg: format!(
                "the inflated data is longer than the {expected} bytes its IDX header promises"
            ),
        });
    }
    Ok(out)
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn header(b: &[u8], name: &str, what: &'static str, magic: u32) -> Result<Vec<usize>, DataError> {
    if b.len() < 4 {
        return Err(DataError::Truncated {
            path: name.into(),
            what,
            expected: 4,
            found: b.len(),
        });
    }
    let found = be32(b, 0);
    if found != magic {
        return Err(DataError::Magic {
            path: name.into(),
            what,
            expected: magic,
            found,
        });
    }
    let ndim = (magic & 0xff) as usize;
    let hlen = 4 + 4 * ndim;
    if b.len() < hlen {
        return Err(DataError::Truncated {
            path: name.into(),
            what,
            expected: hlen,
            found: b.len(),
        });
    }
    let dims: Vec<usize> = (0..ndim).map(|d| be32(b, 4 + 4 * d) as usize).collect();
    let body = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| DataError::Header {
            path: name.into(),
            msg: format!("dimensions {dims:?} overflow"),
        })?;
    let expected = hlen + body;
    if b.len() < expected {
        return Err(DataError::Truncated {
            path: name.into(),
            what,
            expected,
            found: b.len(),
        });
    }
    if b.len() > expected {
        return Err(DataError::Header {
            path: name.into(),
            msg: format!(
                "{} trailing bytes after the {what} promised by the header",
                b.len() - expected
            ),
        });
    }
    Ok(dims)
}

/// Parse an IDX image file (magic 0x00000803, u8, n × rows × cols).
pub fn parse_images(bytes: Vec<u8>, name: &str) -> Result<(usize, usize, Vec<u8>), DataError> {
    let b = maybe_gunzip(bytes, name)?;
    let dims = header(&b, name, "images", IMAGES_MAGIC)?;
    if dims[1] == 0 || dims[2] == 0 {
        return Err(DataError::Header {
            path: name.into(),
            msg: format!("empty image size {}x{}", dims[1], dims[2]),
        });
    }
    Ok((dims[1], dims[2], b[16..].to_vec()))
}

/// Parse an IDX label file (magic 0x00000801, u8, n).
pub fn parse_labels(bytes: Vec<u8>, name: &str) -> Result<Vec<u8>, DataError> {
    let b = maybe_gunzip(bytes, name)?;
    header(&b, name, "labels", LABELS_MAGIC)?;
    Ok(b[8..].to_vec())
}

/// Combine parsed images and labels (counts must agree).
pub fn combine(
    rows: usize,
    cols: usize,
    pixels: Vec<u8>,
    labels: Vec<u8>,
) -> Result<RawImages, DataError> {
    let images = pixels.len() / (rows * cols);
    if images != labels.len() {
        return Err(DataError::Count {
            images,
            labels: labels.len(),
        });
    }
    Ok(RawImages {
        rows,
        cols,
        pixels,
        labels,
    })
}

fn read(path: &Path) -> Result<Vec<u8>, DataError> {
    if let Ok(m) = std::fs::metadata(path) {
        crate::limits::check(
            || format!("the file of {} bytes", m.len()),
            (m.len() as u128).saturating_mul(BYTES_PER_IDX_BYTE),
        )
        .map_err(|e| DataError::Header {
            path: path.display().to_string(),
            msg: e.to_string(),
        })?;
    }
    std::fs::read(path).map_err(|source| DataError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Read an image file and a label file.
pub fn read_pair(images: &Path, labels: &Path) -> Result<RawImages, DataError> {
    let (r, c, px) = parse_images(read(images)?, &images.display().to_string())?;
    let lb = parse_labels(read(labels)?, &labels.display().to_string())?;
    // the counts disagree between two files: name both
    combine(r, c, px, lb).map_err(|e| match e {
        DataError::Count { .. } => DataError::Header {
            path: format!("{} and {}", images.display(), labels.display()),
            msg: e.to_string(),
        },
        e => e,
    })
}

const BUNDLED_IMAGES: &[u8] = include_bytes!("../../data/mnist10k-images-idx3-ubyte.gz");
const BUNDLED_LABELS: &[u8] = include_bytes!("../../data/mnist10k-labels-idx1-ubyte.gz");
/// Training images of the bundled subset (the rest is the test split).
pub const BUNDLED_TRAIN: usize = 8000;

/// The bundled 10k MNIST subset (compiled into the binary): (train 8,000, test 2,000).
pub fn bundled_mnist() -> Result<(RawImages, RawImages), DataError> {
    let (r, c, px) = parse_images(BUNDLED_IMAGES.to_vec(), "bundled mnist10k images")?;
    let lb = parse_labels(BUNDLED_LABELS.to_vec(), "bundled mnist10k labels")?;
    let all = combine(r, c, px, lb)?;
    if all.len() < BUNDLED_TRAIN {
        return Err(DataError::Invalid(
            "bundled MNIST subset is too small".into(),
        ));
    }
    Ok((
        all.slice(0..BUNDLED_TRAIN),
        all.slice(BUNDLED_TRAIN..all.len()),
    ))
}

fn find(dir: &Path, stem: &str, what: &'static str) -> Result<PathBuf, DataError> {
    let cands = [
        stem.to_string(),
        format!("{stem}.gz"),
        stem.replacen("-idx", ".idx", 1),
        format!("{}.gz", stem.replacen("-idx", ".idx", 1)),
    ];
    for c in &cands {
        let p = dir.join(c);
        if p.is_file() {
            return Ok(p);
        }
    }
    Err(DataError::Missing {
        dir: dir.to_path_buf(),
        what,
        tried: cands.join(", "),
    })
}

/// A directory holding the four standard files `train-images-idx3-ubyte[.gz]`,
/// `train-labels-idx1-ubyte[.gz]`, `t10k-images-idx3-ubyte[.gz]`,
/// `t10k-labels-idx1-ubyte[.gz]` (MNIST, Fashion-MNIST): (train, test).
pub fn read_dir(dir: &Path) -> Result<(RawImages, RawImages), DataError> {
    let tr = read_pair(
        &find(dir, "train-images-idx3-ubyte", "training images")?,
        &find(dir, "train-labels-idx1-ubyte", "training labels")?,
    )?;
    let te = read_pair(
        &find(dir, "t10k-images-idx3-ubyte", "test images")?,
        &find(dir, "t10k-labels-idx1-ubyte", "test labels")?,
    )?;
    if tr.rows != te.rows || tr.cols != te.cols {
        return Err(DataError::Invalid(format!(
            "{}: training images are {}x{}, test images {}x{}",
            dir.display(),
            tr.rows,
            tr.cols,
            te.rows,
            te.cols
        )));
    }
    Ok((tr, te))
}

/// Where Debian's `dataset-fashion-mnist` package installs Fashion-MNIST.
pub const FASHION_MNIST_DIR: &str = "/usr/share/datasets/fashion-mnist";
