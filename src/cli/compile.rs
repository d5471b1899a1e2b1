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
    let mut netlists = Vec::new();
    let rows = emit::demo_rows(&lowering, &file.hardware, file.mapping.seed);
    for a in lowering.arrays_used() {
        let text = emit::array_netlist(&file, &programmed.arrays[a], &rows[a])?;
        let p = out_dir.join(format!("array{a}.cir"));
        mapping::write_atomic(&p, text.as_bytes())?;
        netlists.push(p);
    }
    if args.whole {
        let x = whole_inputs(&file, &ir);
        let text = emit::whole_netlist(&file, &ir, &lowering, &programmed, &x)?;
        let p = out_dir.join("network.cir");
        mapping::write_atomic(&p, text.as_bytes())?;
        netlists.push(p);
    }
    let json = mapping_json(&file, &ir, &lowering, &report, &programmed, &netlists)?;
    let text = serde_json::to_string_pretty(&json).map_err(|e| MappingError::Io {
        path: "mapping.json".into(),
        message: e.to_string(),
    })?;
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

/// The command: compile, print the report table and where things went.
pub fn run(args: &CompileArgs) -> Result<(), MappingError> {
    let c = compile(args)?;
    if !args.quiet {
        print!("{}", c.report.table());
        if c.programmed.clipped > 0 {
            println!(
                "warning: {} weight(s) clipped to the conductance window",
                c.programmed.clipped
            );
        }
        println!(
            "wrote {}: mapping.json, floorplan.png, floorplan.svg, {}",
            c.out_dir.display(),
            c.netlists
                .iter()
                .filter_map(|p| p.file_name().map(|f| f.to_string_lossy().into_owned()))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(())
}
