//! IDX reader: raw and gzipped files, header validation, directories, bundled subset.

use flate2::write::GzEncoder;
use flate2::Compression;
use netc::data::idx::{bundled_mnist, parse_images, parse_labels, read_dir, read_pair};
use netc::data::DataError;
use std::io::Write;

fn images(n: u32, r: u32, c: u32) -> Vec<u8> {
    let mut b = vec![0, 0, 8, 3];
    for d in [n, r, c] {
        b.extend_from_slice(&d.to_be_bytes());
    }
    b.extend((0..n * r * c).map(|i| (i % 251) as u8));
    b
}

fn labels(n: u32) -> Vec<u8> {
    let mut b = vec![0, 0, 8, 1];
    b.extend_from_slice(&n.to_be_bytes());
    b.extend((0..n).map(|i| (i % 10) as u8));
    b
}

fn gz(b: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

#[test]
fn raw_and_gzip_agree() {
    let raw = parse_images(images(3, 4, 5), "x").unwrap();
    let z = parse_images(gz(&images(3, 4, 5)), "x.gz").unwrap();
    assert_eq!(raw, z);
    assert_eq!((raw.0, raw.1, raw.2.len()), (4, 5, 60));
    assert_eq!(raw.2[59], 59);
    assert_eq!(
        parse_labels(gz(&labels(7)), "l").unwrap(),
        (0..7).map(|i| i as u8).collect::<Vec<_>>()
    );
}

#[test]
fn header_errors_say_what_is_wrong() {
    let e = parse_images(labels(3), "lab.idx").unwrap_err().to_string();
    assert_eq!(
        e,
        "lab.idx: expected magic 0x00000803 for images, found 0x00000801"
    );
    let e = parse_labels(images(1, 2, 2), "img")
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("expected magic 0x00000801 for labels, found 0x00000803"),
        "{e}"
    );
    let mut t = images(3, 4, 5);
    t.truncate(50);
    let e = parse_images(t, "t").unwrap_err().to_string();
    assert!(
        e.contains("truncated images: header promises 76 bytes, file has 50"),
        "{e}"
    );
    let e = parse_images(vec![0, 0, 8], "tiny").unwrap_err().to_string();
    assert!(e.contains("truncated"), "{e}");
    let mut extra = labels(2);
    extra.push(9);
    assert!(parse_labels(extra, "x")
        .unwrap_err()
        .to_string()
        .contains("trailing"));
    let mut bad_gz = gz(&images(2, 2, 2));
    bad_gz.truncate(15);
    assert!(matches!(
        parse_images(bad_gz, "g"),
        Err(DataError::Gzip { .. })
    ));
}

#[test]
fn directory_of_standard_files_and_count_mismatch() {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(
        d.path().join("train-images-idx3-ubyte.gz"),
        gz(&images(6, 3, 3)),
    )
    .unwrap();
    std::fs::write(d.path().join("train-labels-idx1-ubyte"), labels(6)).unwrap();
    std::fs::write(d.path().join("t10k-images-idx3-ubyte"), images(2, 3, 3)).unwrap();
    std::fs::write(d.path().join("t10k-labels-idx1-ubyte.gz"), gz(&labels(2))).unwrap();
    let (tr, te) = read_dir(d.path()).unwrap();
    assert_eq!((tr.len(), te.len(), tr.rows, tr.cols), (6, 2, 3, 3));
    let e = read_pair(
        &d.path().join("train-images-idx3-ubyte.gz"),
        &d.path().join("t10k-labels-idx1-ubyte.gz"),
    )
    .unwrap_err();
    // both files are named (issue 13: every error names its file)
    assert_eq!(
        e.to_string(),
        format!(
            "{} and {}: label count 2 differs from image count 6",
            d.path().join("train-images-idx3-ubyte.gz").display(),
            d.path().join("t10k-labels-idx1-ubyte.gz").display()
        )
    );
    std::fs::remove_file(d.path().join("t10k-labels-idx1-ubyte.gz")).unwrap();
    let e = read_dir(d.path()).unwrap_err().to_string();
    assert!(e.contains("no test labels file found"), "{e}");
}

#[test]
fn bundled_subset_split() {
    let (tr, te) = bundled_mnist().unwrap();
    assert_eq!((tr.len(), te.len(), tr.rows, tr.cols), (8000, 2000, 28, 28));
    for s in [&tr, &te] {
        let mut counts = [0usize; 10];
        for &l in &s.labels {
            counts[l as usize] += 1;
        }
        // every digit present in reasonable numbers (shuffled MNIST)
        assert!(counts.iter().all(|&c| c > s.len() / 20), "{counts:?}");
    }
}

#[test]
fn fashion_mnist_if_installed() {
    let dir = std::path::Path::new(netc::data::idx::FASHION_MNIST_DIR);
    if dir.is_dir() {
        let (tr, te) = read_dir(dir).unwrap();
        assert_eq!((tr.len(), te.len(), tr.rows), (60000, 10000, 28));
    }
}
