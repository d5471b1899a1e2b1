//! Bounded fuzzing (issue 13): seeded random mutations of the bundled netlists, `.net` files,
//! IDX data, weights and model files, and of command lines, fed to the front ends and the
//! binary. The property is the same everywhere: a bad input gives an error value (or a right
//! result), never a panic, an abort or a signal. Same seed, same inputs; the whole file runs in
//! well under a minute. An input that crashes is written to the test's temporary directory and
//! named in the failure; it then belongs under `tests/regressions/`, which
//! `regressions_replay` re-runs (every file there once crashed a front end).

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Fragments that drive parsers to their edges: huge and odd numbers, nesting, separators.
const TOKENS: &[&str] = &[
    "{",
    "}",
    "(",
    ")",
    "'",
    "\"",
    ";",
    "=",
    "+",
    "*",
    "/",
    "^",
    "x",
    " ",
    "\n",
    "\r",
    "\t",
    "\0",
    ".",
    ",",
    "-",
    "0",
    "1e308",
    "1e-320",
    "NaN",
    "inf",
    "99999999999999999999",
    "4294967295",
    "100000",
    "65536",
    ".include",
    ".subckt",
    ".ends",
    "V(",
    "I(",
    "exp(",
    "include",
    "network",
    "dense",
    "units",
    "padding",
    "arrays",
    "µ",
    "é",
    "\u{feff}",
];

fn mutate(rng: &mut ChaCha8Rng, input: &[u8]) -> Vec<u8> {
    let mut b = input.to_vec();
    for _ in 0..rng.gen_range(1..=4) {
        let at = if b.is_empty() {
            0
        } else {
            rng.gen_range(0..b.len())
        };
        match rng.gen_range(0..6) {
            0 if !b.is_empty() => b[at] = rng.gen(),
            1 => {
                let t = TOKENS.choose(rng).unwrap().as_bytes();
                b.splice(at..at, t.iter().copied());
            }
            2 if !b.is_empty() => {
                let end = (at + rng.gen_range(1..64)).min(b.len());
                b.drain(at..end);
            }
            3 if !b.is_empty() => {
                // repeat a piece (nesting, long lists)
                let end = (at + rng.gen_range(1..16)).min(b.len());
                let piece = b[at..end].to_vec();
                let times = rng.gen_range(2..200);
                for _ in 0..times {
                    b.splice(at..at, piece.iter().copied());
                }
            }
            4 => b.truncate(at),
            _ => {
                let t = TOKENS.choose(rng).unwrap().as_bytes();
                b.extend_from_slice(t);
            }
        }
    }
    b
}

fn files(dir: &str, ext: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .map(|p| {
            let b = std::fs::read(&p).unwrap();
            (p, b)
        })
        .collect();
    v.sort();
    v
}

/// Run `f` on `n` mutations of the corpus; on a panic keep the input and fail. For a longer
/// hunt: `NETC_FUZZ_SEED=7 NETC_FUZZ_SCALE=20 cargo test --test it fuzz::` (a different seed, 20
/// times the mutations).
fn fuzz(name: &str, seed: u64, n: usize, corpus: &[Vec<u8>], f: impl Fn(&[u8])) {
    let env = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
    let seed = env("NETC_FUZZ_SEED").unwrap_or(seed);
    let n = n * env("NETC_FUZZ_SCALE").unwrap_or(1) as usize;
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for i in 0..n {
        let base = corpus.choose(&mut rng).unwrap();
        let input = mutate(&mut rng, base);
        let run = || netc::limits::with_max_memory(256 << 20, || f(&input));
        if catch_unwind(AssertUnwindSafe(run)).is_err() {
            let keep = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{seed}-{i}"));
            std::fs::write(&keep, &input).unwrap();
            panic!(
                "{name}: mutation {i} panicked; input kept in {}",
                keep.display()
            );
        }
    }
}

#[test]
fn spice_front_end_and_solver() {
    let corpus: Vec<Vec<u8>> = files("netlists/verify", "cir")
        .into_iter()
        .map(|f| f.1)
        .collect();
    fuzz("spice", 13, 2000, &corpus, |b| {
        let text = String::from_utf8_lossy(b);
        if let Ok(mut nl) = netc::spice::parse_str(&text, "fuzz.cir") {
            // solve the operating point of what parsed (sweeps may be long: not here)
            nl.analyses
                .retain(|a| matches!(a, netc::netlist::Analysis::Op { .. }));
            let _ = netc::solver::run(&nl);
        }
    });
}

#[test]
fn net_front_end_and_lowering() {
    let corpus: Vec<Vec<u8>> = files("netlists", "net").into_iter().map(|f| f.1).collect();
    fuzz("net", 13, 2000, &corpus, |b| {
        let text = String::from_utf8_lossy(b);
        if let Ok((file, ir)) = netc::net::load_str(&text, "fuzz.net", Path::new("netlists")) {
            let _ = netc::mapping::lower(&file, &ir);
            let _ = netc::nn::from_net::model_spec(
                &file,
                &ir,
                netc::nn::loss::LossSpec::SoftmaxCrossEntropy,
            );
        }
    });
}

fn small_idx() -> (Vec<u8>, Vec<u8>) {
    // 3 images of 4×4 and their labels, as IDX, and gzipped
    let mut img = vec![0, 0, 8, 3, 0, 0, 0, 3, 0, 0, 0, 4, 0, 0, 0, 4];
    img.extend((0..48).map(|i| (i * 5) as u8));
    let lab = vec![0, 0, 8, 1, 0, 0, 0, 3, 7, 1, 4];
    (img, lab)
}

fn gz(b: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

#[test]
fn idx_reader() {
    let (img, lab) = small_idx();
    let corpus = vec![img.clone(), lab.clone(), gz(&img), gz(&lab)];
    fuzz("idx", 13, 5000, &corpus, |b| {
        let _ = netc::data::idx::parse_images(b.to_vec(), "fuzz");
        let _ = netc::data::idx::parse_labels(b.to_vec(), "fuzz");
        // gzipped mutations reach the inflater's header handling too
        let _ = netc::data::idx::parse_images(gz(b), "fuzz.gz");
    });
}

#[test]
fn weights_and_model_readers() {
    let (file, ir) = netc::net::load(Path::new("netlists/mlp_passive.net")).unwrap();
    let lowering = netc::mapping::lower(&file, &ir).unwrap();
    let w = netc::mapping::WeightsFile::init(&ir, 1);
    let compiler = serde_json::to_vec(&w).unwrap();
    let spec =
        netc::nn::from_net::model_spec(&file, &ir, netc::nn::loss::LossSpec::SoftmaxCrossEntropy)
            .unwrap();
    let mut model = netc::nn::model::Model::new(spec).unwrap();
    model.init(&mut ChaCha8Rng::seed_from_u64(1));
    let trainer = serde_json::to_vec(&model.to_weights_file()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("w.json");
    fuzz("weights", 13, 2000, &[compiler, trainer], |b| {
        std::fs::write(&path, b).unwrap();
        if let Ok(w) = netc::mapping::WeightsFile::load(&path) {
            if w.check(&ir, "w.json").is_ok() {
                let _ = netc::mapping::weights::program(
                    &lowering,
                    &file.hardware,
                    file.mapping.weight_scale,
                    &w,
                );
            }
        }
        if let Ok(wf) = serde_json::from_slice::<netc::nn::model::WeightsFile>(b) {
            let _ = netc::nn::model::Model::from_weights_file(&wf);
        }
        if let Ok(ck) = serde_json::from_slice::<netc::nn::train::Checkpoint>(b) {
            let _ = netc::nn::model::Model::from_weights_file(&ck.weights);
        }
    });
}

/// Command lines: valid ones with a flag value swapped for a hostile one, a flag dropped or
/// doubled. The binary must exit 0 or 1 (or 2, clap's usage error) — never 101 or a signal.
#[test]
fn cli_flag_surface() {
    // runs in a temporary directory: a mutated `-o` value writes there, not into the sources
    let out = tempfile::tempdir().unwrap();
    let o = out.path().to_str().unwrap();
    let root = env!("CARGO_MANIFEST_DIR");
    let ladder = format!("{root}/netlists/verify/ladder.cir");
    let mlp = format!("{root}/netlists/mlp_passive.net");
    let bases: Vec<Vec<&str>> = vec![
        vec![
            "xbar",
            "--rows",
            "4",
            "--cols",
            "3",
            "--g-uniform",
            "1e-5",
            "--rw",
            "1",
        ],
        vec![
            "xbar",
            "--rows",
            "4",
            "--cols",
            "4",
            "--g-random",
            "1e-6,1e-4",
            "--op",
            "read",
            "--at",
            "1,2",
            "--scheme",
            "v/2",
        ],
        vec![
            "xbar",
            "--rows",
            "3",
            "--cols",
            "3",
            "--g-uniform",
            "1e-5",
            "--cell",
            "sinh",
            "--k",
            "2",
            "--vectors",
            "2",
        ],
        vec!["solve", &ladder, "--json"],
        vec!["compile", &mlp, "-o", o, "--quiet"],
        vec!["data", "info"],
    ];
    let values = [
        "0",
        "-1",
        "1e308",
        "-1e308",
        "NaN",
        "inf",
        "-inf",
        "1e-320",
        "18446744073709551616",
        "99999999",
        "",
        ",",
        "1,",
        "a",
        "\u{7f}",
        "../..",
        "/dev/null",
        "-",
    ];
    let mut rng = ChaCha8Rng::seed_from_u64(13);
    let mut slow = 0;
    for i in 0..60 {
        let mut args: Vec<String> = bases
            .choose(&mut rng)
            .unwrap()
            .iter()
            .map(|s| s.to_string())
            .collect();
        for _ in 0..rng.gen_range(1..=2) {
            if args.len() < 2 {
                break;
            }
            let k = rng.gen_range(1..args.len());
            match rng.gen_range(0..4) {
                0 | 1 => args[k] = values.choose(&mut rng).unwrap().to_string(),
                2 => {
                    args.remove(k);
                }
                _ => {
                    let a = args[k].clone();
                    args.insert(k, a);
                }
            }
        }
        args.extend(["--max-memory".to_string(), "512M".to_string()]);
        let mut child = Command::new(env!("CARGO_BIN_EXE_netc"))
            .args(&args)
            .current_dir(out.path())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let t0 = Instant::now();
        let status = loop {
            if let Some(s) = child.try_wait().unwrap() {
                break Some(s);
            }
            if t0.elapsed() > Duration::from_secs(60) {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let Some(status) = status else {
            // a long computation is not a crash (the machine may be loaded); note it
            eprintln!("cli run {i} still running after 60 s, stopped: {args:?}");
            slow += 1;
            continue;
        };
        let mut err = String::new();
        use std::io::Read;
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .unwrap();
        assert!(
            matches!(status.code(), Some(0..=2)),
            "netc {args:?} ended with {status:?}:\n{err}"
        );
        assert!(!err.contains("panicked"), "netc {args:?}:\n{err}");
    }
    assert!(slow < 10, "{slow} runs did not finish");
}

/// Every input that once crashed a front end, replayed.
#[test]
fn regressions_replay() {
    netc::limits::with_max_memory(256 << 20, replay);
}

fn replay() {
    let root = Path::new("tests/regressions");
    for (p, b) in files(root.join("spice").to_str().unwrap(), "cir") {
        let text = String::from_utf8_lossy(&b);
        if let Ok(mut nl) = netc::spice::parse_str(&text, &p.display().to_string()) {
            nl.analyses
                .retain(|a| matches!(a, netc::netlist::Analysis::Op { .. }));
            let _ = netc::solver::run(&nl);
        }
    }
    for (p, b) in files(root.join("net").to_str().unwrap(), "net") {
        let text = String::from_utf8_lossy(&b);
        if let Ok((file, ir)) =
            netc::net::load_str(&text, &p.display().to_string(), Path::new("netlists"))
        {
            let _ = netc::mapping::lower(&file, &ir);
        }
    }
    for (_, b) in files(root.join("idx").to_str().unwrap(), "idx") {
        let _ = netc::data::idx::parse_images(b.clone(), "r");
        let _ = netc::data::idx::parse_labels(b, "r");
    }
}
