//! Errors of the `.net` front end and of the mapper: each must point at the right place.

use netc::mapping::{lower, MappingError};
use netc::net::{load_str, NetError};
use std::path::PathBuf;

fn models_dir() -> PathBuf {
    // `models/` is found from the base directory's parent (`netlists/../models`).
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("netlists")
}

const HW: &str = r#"
hardware {
  arrays 1 x 32x16;
  cell passive;
  model "al2o3_tio2_passive.cir";
  g_min 10uS; g_max 100uS;
  r_wire 1ohm;
}
"#;

fn net(body: &str) -> String {
    format!("network t {{\n{body}\n}}\n{HW}")
}

fn err(src: &str) -> NetError {
    match load_str(src, "t.net", &models_dir()) {
        Ok(_) => panic!("expected an error for:\n{src}"),
        Err(e) => e,
    }
}

/// The rendered error names `t.net:line:col` and has a caret line under the right text.
fn assert_at(e: &NetError, line: usize, col: usize, needle: &str) {
    let msg = e.to_string();
    let span = e.span().unwrap_or_else(|| panic!("no span: {msg}"));
    assert_eq!((span.line, span.col), (line, col), "{msg}");
    assert!(msg.starts_with(&format!("t.net:{line}:{col}: ")), "{msg}");
    assert!(msg.contains(needle), "`{needle}` not in:\n{msg}");
    let caret = msg.lines().last().unwrap();
    assert!(
        caret.trim_start_matches([' ', '|']).starts_with('^'),
        "{msg}"
    );
    // The caret sits under column `col` of the quoted source line.
    let src_line = msg.lines().nth(1).unwrap();
    let bar = src_line.find("| ").unwrap() + 2;
    assert_eq!(caret.find('^').unwrap() - bar, col - 1, "{msg}");
}

#[test]
fn syntax_error_with_caret() {
    let e = err(&net("input 8x8x1;\nflatten;\ndense fc { units 10 }"));
    assert!(matches!(e, NetError::Syntax { .. }), "{e}");
    // `units 10 }`: the missing `;` is found at the `}`.
    assert_at(&e, 4, 21, "syntax error");
}

#[test]
fn shape_mismatch_dense_after_maps() {
    let e = err(&net(
        "input 8x8x1;\nconv2d c1 { kernels 4; size 3x3; }\ndense fc { units 10; }",
    ));
    assert!(matches!(e, NetError::Shape { .. }), "{e}");
    assert_at(&e, 4, 1, "insert `flatten;`");
}

#[test]
fn shape_mismatch_kernel_too_large() {
    let e = err(&net("input 4x4x1;\nconv2d c1 { kernels 2; size 5x5; }"));
    assert_at(&e, 3, 1, "5x5 does not fit its 4x4 input");
}

#[test]
fn unknown_model_file() {
    let src = net("input 4;\ndense fc { units 2; }").replace("al2o3_tio2_passive.cir", "nope.cir");
    let e = err(&src);
    assert!(matches!(e, NetError::UnknownModel { .. }), "{e}");
    // line 9 of the file: `  model "nope.cir";`
    assert_at(&e, 9, 9, "unknown model file `nope.cir`");
}

#[test]
fn impossible_window() {
    let src = net("input 4;\ndense fc { units 2; }").replace("g_max 100uS", "g_max 5uS");
    let e = err(&src);
    assert!(matches!(e, NetError::Window { .. }), "{e}");
    assert_at(&e, 10, 21, "must be larger than g_min");
    let src = net("input 4;\ndense fc { units 2; }").replace("g_min 10uS", "g_min -1uS");
    let e = err(&src);
    assert_at(&e, 10, 9, "must be > 0");
}

#[test]
fn window_outside_device_card() {
    let src = net("input 4;\ndense fc { units 2; }").replace("g_max 100uS", "g_max 1mS");
    let e = err(&src);
    assert!(matches!(e, NetError::Window { .. }), "{e}");
    assert!(e.to_string().contains("outside the device window"), "{e}");
}

#[test]
fn duplicate_layer_name() {
    let e = err(&net(
        "input 4;\ndense fc { units 2; }\ndense fc { units 2; }",
    ));
    assert!(matches!(e, NetError::Duplicate { .. }), "{e}");
    assert_at(&e, 4, 1, "duplicate name `fc` (first defined at t.net:3:1)");
}

#[test]
fn duplicate_key() {
    let e = err(&net("input 4;\ndense fc { units 2; units 3; }"));
    assert_at(&e, 3, 21, "duplicate name `units`");
}

#[test]
fn unknown_layer_in_mapping() {
    let src =
        net("input 4;\ndense fc { units 2; }") + "mapping {\n  layer fcc { replicas 2; }\n}\n";
    let e = err(&src);
    assert!(matches!(e, NetError::UnknownName { .. }), "{e}");
    assert_at(&e, 14, 9, "unknown name `fcc`");
}

#[test]
fn unused_mapping_of_weightless_layer() {
    let src = net("input 4;\ndense fc { units 2; }\nrelu r;")
        + "mapping {\n  layer r { replicas 2; }\n}\n";
    let e = err(&src);
    assert!(matches!(e, NetError::Unused { .. }), "{e}");
    assert_at(&e, 15, 9, "with no weights");
}

#[test]
fn unused_transistor_on_passive_array() {
    let src = net("input 4;\ndense fc { units 2; }").replace(
        "r_wire 1ohm;",
        "r_wire 1ohm;\n  transistor \"nmos_level1.cir\";",
    );
    let e = err(&src);
    assert!(matches!(e, NetError::Unused { .. }), "{e}");
    assert_at(&e, 12, 14, "passive array has no access transistors");
}

#[test]
fn wrong_unit() {
    let src = net("input 4;\ndense fc { units 2; }").replace("r_wire 1ohm", "r_wire 1V");
    let e = err(&src);
    assert_at(&e, 11, 10, "`r_wire` is in ohms (ohm), not volts (V)");
    let src = net("input 4;\ndense fc { units 2; }").replace("r_wire 1ohm", "r_wire 1furlong");
    let e = err(&src);
    assert_at(&e, 11, 10, "unknown unit");
}

#[test]
fn unknown_key_lists_known_ones() {
    let e = err(&net("input 4;\ndense fc { unit 2; }"));
    assert_at(&e, 3, 12, "unknown key `unit`");
    assert!(e.to_string().contains("known: units, bias"), "{e}");
}

#[test]
fn include_cycle_and_missing_include() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.net"), "include \"b.net\";\n").unwrap();
    std::fs::write(dir.path().join("b.net"), "include \"a.net\";\n").unwrap();
    let e = netc::net::load(&dir.path().join("a.net")).unwrap_err();
    assert!(matches!(e, NetError::IncludeCycle { .. }), "{e}");
    assert!(e.to_string().contains("b.net:1:9"), "{e}");
    let e = load_str("include \"missing.net\";\n", "t.net", dir.path()).unwrap_err();
    assert_at(&e, 1, 9, "cannot read included file `missing.net`");
}

#[test]
fn include_splices_blocks() {
    let dir = tempfile::tempdir().unwrap();
    let models = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models");
    let hw = HW.replace(
        "\"al2o3_tio2_passive.cir\"",
        &format!("\"{}\"", models.join("al2o3_tio2_passive.cir").display()),
    );
    std::fs::write(dir.path().join("hw.net"), hw).unwrap();
    let src = "include \"hw.net\";\nnetwork t { input 4; dense fc { units 3; } }\n";
    let (file, ir) = load_str(src, "t.net", dir.path()).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(file.hardware.rows, 32);
    assert_eq!(ir.params(), 12);
}

#[test]
fn layer_does_not_fit_says_what_would() {
    // 40 inputs x 10 units x 2 columns on one 32x16 array: tiles 32x16, 32x4, 8x16, 8x4 need 3 arrays.
    let src = net("input 40;\ndense fc { units 10; }");
    let (file, ir) = load_str(&src, "t.net", &models_dir()).unwrap_or_else(|e| panic!("{e}"));
    let e = lower(&file, &ir).unwrap_err();
    assert!(matches!(e, MappingError::DoesNotFit { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.starts_with("t.net:3:1: layer `fc` does not fit"),
        "{msg}"
    );
    assert!(msg.contains("would fit on `arrays 3 x 32x16`"), "{msg}");
    assert!(msg.contains('^'), "{msg}");
}

#[test]
fn split_rows_too_large() {
    let src = net("input 40;\ndense fc { units 4; }") + "mapping { layer fc { split_rows 33; } }\n";
    let (file, ir) = load_str(&src, "t.net", &models_dir()).unwrap_or_else(|e| panic!("{e}"));
    let e = lower(&file, &ir).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("at most `split_rows 32` would fit"), "{msg}");
    assert!(msg.starts_with("t.net:13:17:"), "{msg}");
}

#[test]
fn training_block_validated() {
    let src = net("input 4;\ndense fc { units 2; }")
        + "training {\n  mode insitu;\n  optimizer rmsprop { lr 0.01; decay 1.5; }\n}\n";
    let e = err(&src);
    assert_at(&e, 15, 38, "`decay` must be in [0, 1)");
    let src = net("input 4;\ndense fc { units 2; }") + "training {\n  mode sometimes;\n}\n";
    let e = err(&src);
    assert_at(&e, 14, 8, "must be one of: exsitu, insitu, hybrid");
}

#[test]
fn training_block_typed() {
    let src = net("input 4;\ndense fc { units 2; }")
        + "training {\n  mode hybrid;\n  optimizer threshold { lr 0.1; threshold 1.5uS; }\n  epochs 3; batch 10; trainable fc;\n  dataset mnist { fraction 0.1; }\n}\n";
    let (file, _) = load_str(&src, "t.net", &models_dir()).unwrap_or_else(|e| panic!("{e}"));
    let t = file.training.unwrap();
    assert_eq!(t.mode, netc::net::TrainMode::Hybrid);
    assert_eq!(
        t.optimizer,
        netc::net::Optimizer::Threshold {
            lr: 0.1,
            threshold_siemens: 1.5e-6
        }
    );
    assert_eq!((t.epochs, t.batch), (3, 10));
    assert_eq!(t.trainable, vec!["fc".to_string()]);
    assert_eq!(t.dataset.fraction, 0.1);
}

/// A network + hardware with a training block: the keys a new user tries, one by one.
fn with_training(training: &str) -> String {
    format!(
        "{}training {{\n{training}\n}}\n",
        net("input 4x4x1;\nflatten;\ndense fc { units 4; }")
    )
}

#[test]
fn rmsprop_momentum_is_rejected_not_dropped() {
    // The trainer's RMSprop has no momentum: a non-zero value would be silently ignored.
    let src = with_training("optimizer rmsprop { lr 0.01; momentum 0.9; }");
    let e = err(&src);
    let line = src.lines().position(|l| l.contains("momentum")).unwrap() + 1;
    let col = src.lines().nth(line - 1).unwrap().find("0.9").unwrap() + 1;
    assert_at(&e, line, col, "`momentum` other than 0 is not supported");
    // 0 is what runs, so it is accepted.
    load_str(
        &with_training("optimizer rmsprop { lr 0.01; momentum 0; }"),
        "t.net",
        &models_dir(),
    )
    .unwrap();
}

#[test]
fn binarize_on_grey_images_is_rejected() {
    let src = with_training("dataset mnist;\npreprocess { binarize on; }");
    let e = err(&src);
    let line = src.lines().position(|l| l.contains("binarize")).unwrap() + 1;
    let col = src.lines().nth(line - 1).unwrap().find("on;").unwrap() + 1;
    assert_at(
        &e,
        line,
        col,
        "`binarize on` is not supported for dataset `mnist`",
    );
    // The letters are binary already: accepted there (and `off` anywhere).
    load_str(
        &with_training("dataset letters4x4;\npreprocess { binarize on; }"),
        "t.net",
        &models_dir(),
    )
    .unwrap();
    load_str(
        &with_training("dataset mnist;\npreprocess { binarize off; }"),
        "t.net",
        &models_dir(),
    )
    .unwrap();
}

#[test]
fn unknown_dataset_and_training_keys_are_located() {
    let src = with_training("dataset mnist { train 10; validation 5; }");
    let e = err(&src);
    let line = src.lines().position(|l| l.contains("validation")).unwrap() + 1;
    let col = src
        .lines()
        .nth(line - 1)
        .unwrap()
        .find("validation")
        .unwrap()
        + 1;
    assert_at(&e, line, col, "unknown key `validation` in `dataset`");
    let src = with_training("learning_rate 0.1;");
    let e = err(&src);
    let line = src
        .lines()
        .position(|l| l.contains("learning_rate"))
        .unwrap()
        + 1;
    assert_at(&e, line, 1, "unknown key `learning_rate` in training");
}

#[test]
fn insitu_keys_are_honoured_without_warnings() {
    // `mode insitu`, `noise`, `write_tolerance` and `trainable` are applied by `netc train`
    // (crate::insitu): parsed into the training spec, no "not applied" warning left.
    let src = with_training(
        "mode insitu;\nnoise 10uS;\nwrite_tolerance 0.05;\ntrainable fc;\ndataset mnist;",
    );
    let (file, _) = load_str(&src, "t.net", &models_dir()).unwrap();
    let t = file.training.unwrap();
    assert!(t.not_applied.is_empty(), "{:#?}", t.not_applied);
    assert_eq!(t.mode, netc::net::spec::TrainMode::Insitu);
    assert_eq!(t.noise_siemens, 10e-6);
    assert_eq!(t.write_tolerance, 0.05);
    assert_eq!(t.trainable, vec!["fc".to_string()]);
}

/// A card in a temporary directory next to a `.net` that names it; the load's result.
fn with_card(card: &str, hw_line: &str) -> Result<netc::net::NetFile, NetError> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("dev.cir"), card).unwrap();
    std::fs::copy(
        models_dir().join("../models/nmos_level1.cir"),
        dir.path().join("nmos.cir"),
    )
    .unwrap();
    let src = format!(
        "network t {{ input 4; dense a {{ units 2; }} }}\nhardware {{ arrays 1 x 8x4; {hw_line} g_min 10uS; g_max 100uS; }}\n"
    );
    std::fs::write(dir.path().join("t.net"), &src).unwrap();
    netc::net::load(&dir.path().join("t.net")).map(|(f, _)| f)
}

#[test]
fn model_cards_go_through_the_spice_front_end_with_their_own_locations() {
    // SPICE numbers, `.param` expressions and continuation lines as in netlists
    let f = with_card(
        "* a device\n.param nl_k=2 g_lo=5u\n+ g_hi={g_lo*30} v_set=2.5 vg_min=0.5 vg_max=2.5 r_vg=1.5e4\n",
        "cell passive; model \"dev.cir\";",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let m = f.hardware.model.as_ref().unwrap();
    assert_eq!(m.nl_k_per_v, 2.0);
    assert!((m.g_hi_siemens.unwrap() - 150e-6).abs() < 1e-18);
    assert_eq!(m.program.v_set_v, Some(2.5));
    assert_eq!(m.program.r_vg_v_per_siemens, Some(1.5e4));
    assert_eq!(m.need("vg_max", "SET").unwrap(), 2.5);
    let missing = m.need("v_reset", "RESET pulses").unwrap_err().to_string();
    assert!(
        missing.contains("v_reset") && missing.contains("dev.cir"),
        "{missing}"
    );

    // a syntax error is located in the card (line 3) and in the .net (as in ngspice, `5x` would
    // be 5: unknown letters after a number are ignored)
    let e = with_card(
        "* a device\n.param nl_k=2\n.param g_lo=5u*\n",
        "cell passive; model \"dev.cir\";",
    )
    .unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("t.net:2:"), "{msg}");
    assert!(msg.contains("dev.cir:3:"), "{msg}");

    // a typed parameter out of range points at its name in the card
    let e = with_card(
        "* a device\n.param g_lo=5u\n.param nl_k=-1\n",
        "cell passive; model \"dev.cir\";",
    )
    .unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("dev.cir:3:8") && msg.contains("nl_k"), "{msg}");
}

#[test]
fn transistor_cards_read_vt0_like_netlists() {
    // `vt0` is ngspice's alias of `vto`: the card and a netlist read it alike
    let card = "* device\n.param nl_k=0\n";
    let f = with_card(
        card,
        "cell 1t1r; model \"dev.cir\"; transistor \"nmos.cir\"; v_gate 5V;",
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let t = f.hardware.transistor.as_ref().unwrap();
    assert_eq!(t.model.vto_v, 0.5);
    assert_eq!((t.w_m, t.l_m), (10e-6, 1e-6));
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("dev.cir"), card).unwrap();
    std::fs::write(
        dir.path().join("nmos.cir"),
        "* mos\n.model nacc nmos (level=1 vt0=0.7 kp=2e-4)\n.param w=2u l=1u\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("t.net"),
        "network t { input 4; dense a { units 2; } }\nhardware { arrays 1 x 8x4; cell 1t1r; model \"dev.cir\"; transistor \"nmos.cir\"; v_gate 5V; g_min 10uS; g_max 100uS; }\n",
    )
    .unwrap();
    let (f, _) = netc::net::load(&dir.path().join("t.net")).unwrap_or_else(|e| panic!("{e}"));
    let t = f.hardware.transistor.as_ref().unwrap();
    let nl = netc::spice::parse_str(
        "t\n.model nacc nmos (level=1 vt0=0.7 kp=2e-4)\nm1 d g 0 0 nacc\nvd d 0 1\nvg g 0 1\n.op\n",
        "t.cir",
    )
    .unwrap();
    let from_netlist = nl
        .elements
        .iter()
        .find_map(|e| match &e.kind {
            netc::netlist::ElementKind::Mosfet { model, .. } => Some((**model).clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(t.model, from_netlist);
    assert_eq!((t.w_m, t.l_m), (2e-6, 1e-6));
    // an unsupported model parameter is located in the card
    std::fs::write(
        dir.path().join("nmos.cir"),
        "* mos\n.model nacc nmos (level=1 vto=0.7 bogus=1)\n",
    )
    .unwrap();
    let msg = netc::net::load(&dir.path().join("t.net"))
        .unwrap_err()
        .to_string();
    assert!(
        msg.contains("nmos.cir:2:") && msg.contains("bogus"),
        "{msg}"
    );
}
