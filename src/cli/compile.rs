//! `netc compile NET [-o DIR] [--weights FILE] [--whole]`.

use crate::mapping::{self, emit, floorplan, MappingError, MappingReport, WeightsFile};
use crate::net;
use serde::Serialize;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, clap::Args)]
pub struct CompileArgs {
    /// The `.net` network description.
    pub net: PathBuf,
    /// Output directory (default: `out/<network name>`).
    #[arg(short = 'o', long = "out")]
    pub out: Option<PathBuf>,
    /// Weights (JSON, format `netc-weights/1`); default: seeded initialisation (`mapping { seed }`).
    #[arg(long)]
    pub weights: Option<PathBuf>,
    /// Also write the whole network (an MLP) as one circuit with op-amp neurons: `network.cir`.
    #[arg(long)]
    pub whole: bool,
    /// Do not print the report table.
    #[arg(long)]
    pub quiet: bool,
}

/// Everything `mapping.json` holds.
#[derive(Serialize)]
struct MappingJson<'a> {
    report: &'a MappingReport,
    network: &'a net::NetworkIr,
    hardware: &'a net::HardwareSpec,
    mapping: &'a net::MappingSpec,
    training: &'a Option<net::TrainingSpec>,
    lowering: &'a mapping::Lowering,
    encoders: &'a [mapping::Encoder],
    clipped_weights: usize,
    netlists: Vec<String>,
}

/// The outcome of a compilation (for tests and callers).
pub struct Compiled {
    pub file: net::NetFile,
    pub ir: net::NetworkIr,
    pub lowering: mapping::Lowering,
    pub report: MappingReport,
    pub weights: WeightsFile,
    pub programmed: mapping::Programmed,
    pub out_dir: PathBuf,
    pub netlists: Vec<PathBuf>,
}

/// Compile without writing anything.
pub fn compile_in_memory(
    net_path: &Path,
    weights: Option<&Path>,
) -> Result<
    (
        net::NetFile,
        net::NetworkIr,
        mapping::Lowering,
        WeightsFile,
        mapping::Programmed,
    ),
    MappingError,
> {
    let (file, ir) = net::load(net_path)?;
    let lowering = mapping::lower(&file, &ir)?;
    let w = match weights {
        Some(p) => {
            let w = WeightsFile::load(p)?;
            w.check(&ir, &p.display().to_string())?;
            w
        }
        None => WeightsFile::init(&ir, file.mapping.seed),
    };
    let prog = mapping::weights::program(&lowering, &file.hardware, file.mapping.weight_scale, &w)?;
    Ok((file, ir, lowering, w, prog))
}

/// The seeded input voltages of the `--whole` circuit (one per network input, in `v_in`).
pub fn whole_inputs(file: &net::NetFile, ir: &net::NetworkIr) -> Vec<f64> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(file.mapping.seed ^ 0x77686f6c);
    let hw = &file.hardware;
    (0..ir.input.len())
        .map(|_| rng.gen_range(hw.v_in_v[0]..=hw.v_in_v[1]))
        .collect()
}

/// Everything `mapping.json` holds (report, network, hardware, mapping, lowering, encoders, …;
/// `netlists` by file name), as the value `netc compile` writes and the Python `netc.compile` returns.
pub fn mapping_json(
    file: &net::NetFile,
    ir: &net::NetworkIr,
    lowering: &mapping::Lowering,
    report: &MappingReport,
    programmed: &mapping::Programmed,
    netlists: &[PathBuf],
) -> Result<serde_json::Value, MappingError> {
    let json = MappingJson {
        report,
        network: ir,
        hardware: &file.hardware,
        mapping: &file.mapping,
        training: &file.training,
        lowering,
        encoders: &programmed.encoders,
        clipped_weights: programmed.clipped,
        netlists: netlists
            .iter()
            .map(|p| {
                p.file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_default()
            })
            .collect(),
    };
    serde_json::to_value(&json).map_err(|e| MappingError::Io {
        path: "mapping.json".into(),
        message: e.to_string(),
    })
}

/// Compile without writing anything and return what `mapping.json` would hold (no netlists).
pub fn mapping_in_memory(
    net_path: &Path,
    weights: Option<&Path>,
) -> Result<serde_json::Value, MappingError> {
    let (file, ir, lowering, _, programmed) = compile_in_memory(net_path, weights)?;
    let report = MappingReport::new(&file, &ir, &lowering);
    mapping_json(&file, &ir, &lowering, &report, &programmed, &[])
}

/// Compile and write the report, `mapping.json`, the floorplan and the netlists.
pub fn compile(args: &CompileArgs) -> Result<Compiled, MappingError> {
    let (file, ir, lowering, weights, programmed) =
        compile_in_memory(&args.net, args.weights.as_deref())?;
    let report = MappingReport::new(&file, &ir, &lowering);
    let out_dir = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("out").join(&ir.name));
    std::fs::create_dir_all(&out_dir).map_err(|e| MappingError::Io {
        path: out_dir.display().to_string(),
        message: e.to_string(),
    })?;
    // Everything is rendered in memory first: a step that fails (a `--whole` network that is
    // not an MLP, …) fails before any file is written.
    let mut texts: Vec<(PathBuf, String)> = Vec::new();
    let rows = emit::demo_rows(&lowering, &file.hardware, file.mapping.seed);
    for a in lowering.arrays_used() {
        let text = emit::array_netlist(&file, &programmed.arrays[a], &rows[a])?;
        texts.push((out_dir.join(format!("array{a}.cir")), text));
    }
    if args.whole {
        let x = whole_inputs(&file, &ir);
        let text = emit::whole_netlist(&file, &ir, &lowering, &programmed, &x)?;
        texts.push((out_dir.join("network.cir"), text));
    }
    let netlists: Vec<PathBuf> = texts.iter().map(|(p, _)| p.clone()).collect();
    let json = mapping_json(&file, &ir, &lowering, &report, &programmed, &netlists)?;
    let text = serde_json::to_string_pretty(&json).map_err(|e| MappingError::Io {
        path: "mapping.json".into(),
        message: e.to_string(),
    })?;
    crate::data::remove_stale_temps(&out_dir);
    remove_stale_netlists(&out_dir, &netlists);
    for (p, t) in &texts {
        mapping::write_atomic(p, t.as_bytes())?;
    }
    mapping::write_atomic(&out_dir.join("mapping.json"), text.as_bytes())?;
    floorplan::write(
        &lowering,
        &format!(
            "{} on {} x {}x{}",
            ir.name, lowering.arrays, lowering.rows, lowering.cols
        ),
        &out_dir,
    )?;
    Ok(Compiled {
        file,
        ir,
        lowering,
        report,
        weights,
        programmed,
        out_dir,
        netlists,
    })
}

/// Remove the netlists (`array<N>.cir`, `network.cir`) a previous compile left in `dir` that
/// this one does not write: the directory then describes the current network only.
fn remove_stale_netlists(dir: &Path, keep: &[PathBuf]) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        let ours = name == "network.cir"
            || name
                .strip_prefix("array")
                .and_then(|r| r.strip_suffix(".cir"))
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        if ours && !keep.iter().any(|k| k.file_name() == Some(&e.file_name())) {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// The command: compile, print the report table and where things went.
pub fn run(args: &CompileArgs) -> Result<(), MappingError> {
    let c = compile(args)?;
    if !args.quiet {
        let io = |e: std::io::Error| MappingError::Io {
            path: "<stdout>".into(),
            message: e.to_string(),
        };
        super::with_stdout(|o| {
            write!(o, "{}", c.report.table())?;
            if c.programmed.clipped > 0 {
                writeln!(
                    o,
                    "warning: {} weight(s) clipped to the conductance window",
                    c.programmed.clipped
                )?;
            }
            writeln!(
                o,
                "wrote {}: mapping.json, floorplan.png, floorplan.svg, {}",
                c.out_dir.display(),
                c.netlists
                    .iter()
                    .filter_map(|p| p.file_name().map(|f| f.to_string_lossy().into_owned()))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
        .map_err(io)?;
    }
    Ok(())
}
