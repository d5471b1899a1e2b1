//! Every cell kind, sense kind and biasing scheme of the crossbar engine cross-checked on the
//! emitted netlist against netc's general SPICE solver and against ngspice (the ngspice part is
//! skipped when ngspice is missing, a failure under CI=true).

use std::collections::BTreeMap;

use netc::peers::ngspice;
use netc::xbar::emit::{bit_node, word_node};
use netc::xbar::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn random_g(r: usize, c: usize, seed: u64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..r * c).map(|_| rng.gen_range(1e-5..1e-3)).collect()
}

fn random_v(n: usize, seed: u64, lo: f64, hi: f64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.gen_range(lo..hi)).collect()
}

/// The operating point of the netlist from every available peer: netc's general solver, ngspice.
fn peers(netlist: &str) -> Vec<(&'static str, BTreeMap<String, f64>)> {
    let nl = netc::spice::parse_str(netlist, "xbar.cir").unwrap_or_else(|e| {
        panic!("the general parser rejects the emitted netlist: {e:?}\n{netlist}")
    });
    let res = netc::solver::run(&nl).unwrap_or_else(|e| panic!("general solver failed: {e:?}"));
    let op = res
        .into_iter()
        .find_map(|a| match a {
            netc::solver::AnalysisResult::Op { values } => Some(values),
            _ => None,
        })
        .expect("an op result");
    let mut out = vec![("general solver", op)];
    if let Some(ng) = run_ngspice(netlist) {
        out.push(("ngspice", ng));
    }
    out
}

fn run_ngspice(netlist: &str) -> Option<BTreeMap<String, f64>> {
    ngspice::require_for_test()?;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.cir");
    std::fs::write(&path, netlist).unwrap();
    let plots = ngspice::run(&path).unwrap_or_else(|e| panic!("ngspice failed: {e}\n{netlist}"));
    let op = plots.iter().find(|p| p.kind == "op").expect("an op plot");
    Some(op.point_map(0))
}

fn close(a: f64, b: f64, rel: f64, abs: f64) -> bool {
    (a - b).abs() <= rel * a.abs().max(b.abs()) + abs
}

/// Compare every word/bit node voltage, every column-source current and every amplifier output.
fn compare(
    xb: &Crossbar,
    topo: &Topology,
    s: &Solved,
    ng: &BTreeMap<String, f64>,
    rel: f64,
    what: &str,
) {
    let (r, c) = (xb.rows, xb.cols);
    let get = |name: &str| -> Option<f64> {
        if name.starts_with("in_") {
            return None; // a source node: fixed
        }
        Some(
            *ng.get(&format!("v({name})"))
                .unwrap_or_else(|| panic!("{what}: ngspice has no v({name})")),
        )
    };
    let mut vmax: f64 = 1e-3;
    for v in s.v_word.iter().chain(&s.v_bit) {
        vmax = vmax.max(v.abs());
    }
    for i in 0..r {
        for j in 0..c {
            let k = i * c + j;
            if let Some(v) = get(&word_node(xb, topo, i, j)) {
                assert!(
                    close(s.v_word[k], v, rel, 1e-12 * vmax),
                    "{what}: word ({i},{j}) netc {} ngspice {v}",
                    s.v_word[k]
                );
            }
            let bn = bit_node(xb, topo, i, j);
            if bn.starts_with("s_") && s.v_tia_sense[j].is_none() {
                continue; // a 0 V source node
            }
            if let Some(v) = get(&bn) {
                assert!(
                    close(s.v_bit[k], v, rel, 1e-12 * vmax),
                    "{what}: bit ({i},{j}) netc {} ngspice {v}",
                    s.v_bit[k]
                );
            }
        }
    }
    let mut imax: f64 = 0.0;
    for i in s.i_col.iter().flatten() {
        imax = imax.max(i.abs());
    }
    for j in 0..c {
        if let Some(i) = s.i_col[j] {
            let want = ng[&format!("i(vs_{j})")];
            assert!(
                close(i, want, rel, 1e-12 * imax),
                "{what}: column {j} current netc {i} ngspice {want}"
            );
        }
        if let Some(v) = s.v_tia_out[j] {
            let want = ng[&format!("v(o_{j})")];
            assert!(
                close(v, want, rel, 1e-12),
                "{what}: amplifier {j} output netc {v} ngspice {want}"
            );
        }
    }
}

fn check_inference(xb: &Crossbar, v: &[f64], rel: f64, what: &str) {
    let mut eng = Engine::new(xb, SolveOptions::default()).unwrap();
    let s = eng.solve_detailed(v).unwrap();
    // The batch path agrees with the detailed one.
    let out = eng
        .infer(faer::MatRef::from_row_major_slice(v, 1, v.len()))
        .unwrap();
    for (j, o) in s.outputs().iter().enumerate() {
        assert!(
            close(out[(0, j)], *o, 1e-10, 1e-18),
            "{what}: batch vs detailed output {j}"
        );
    }
    let topo = Topology::inference(xb);
    for (peer, ng) in peers(&xb.emit(v).unwrap()) {
        compare(xb, &topo, &s, &ng, rel, &format!("{what} vs {peer}"));
    }
}

fn passive(r: usize, c: usize, seed: u64) -> Crossbar {
    Crossbar::passive(r, c, random_g(r, c, seed), 2.5).unwrap()
}

#[test]
fn passive_with_all_parasitics_matches_ngspice() {
    let mut xb = passive(5, 4, 1);
    xb.r_word_ohm = 3.0;
    xb.r_bit_ohm = 1.5;
    xb.r_driver_ohm = 20.0;
    xb.r_sense_ohm = 7.0;
    check_inference(&xb, &random_v(5, 2, -0.5, 0.5), 1e-6, "passive parasitics");
    let xb = passive(4, 6, 3);
    check_inference(&xb, &random_v(4, 4, 0.0, 1.0), 1e-6, "passive 4x6");
}

#[test]
fn merged_lines_match_ngspice() {
    // r_word = 0 with a driver resistance, r_bit > 0; and r_bit = 0 with a sense resistance.
    let mut xb = passive(3, 4, 5);
    xb.r_word_ohm = 0.0;
    xb.r_driver_ohm = 50.0;
    check_inference(&xb, &random_v(3, 6, 0.0, 1.0), 1e-6, "merged word lines");
    let mut xb = passive(4, 3, 7);
    xb.r_bit_ohm = 0.0;
    xb.r_sense_ohm = 30.0;
    check_inference(&xb, &random_v(4, 8, 0.0, 1.0), 1e-6, "merged bit lines");
}

#[test]
fn sinh_cells_match_ngspice() {
    let mut xb = passive(4, 5, 9);
    xb.cell = CellKind::Sinh { k_per_v: 3.0 };
    xb.r_driver_ohm = 10.0;
    check_inference(&xb, &random_v(4, 10, -0.8, 0.8), 1e-5, "sinh");
}

#[test]
fn one_t1r_cells_match_ngspice() {
    let mut xb = passive(4, 3, 11);
    let mos = default_access_mos();
    xb.cell = CellKind::OneT1R {
        mos,
        v_gate_v: vec![3.0, 2.0, 1.2, 0.3],
    };
    check_inference(&xb, &random_v(4, 12, 0.0, 1.0), 1e-5, "1t1r");
    // Body effect and larger inputs (saturating transistors).
    let mut mos = default_access_mos();
    mos.model.gamma_sqrt_v = 0.4;
    mos.model.lambda_per_v = 0.05;
    xb.cell = CellKind::OneT1R {
        mos,
        v_gate_v: vec![1.5; 4],
    };
    xb.g_siemens = vec![1e-3; 12];
    check_inference(&xb, &random_v(4, 13, 0.5, 2.0), 1e-5, "1t1r saturating");
}

#[test]
fn transimpedance_amplifiers_match_ngspice_and_saturate() {
    let mut xb = passive(3, 4, 15);
    xb.sense = SenseKind::Tia {
        gain: 1e4,
        r_f_ohm: 1e3,
        vsat_v: 1.0,
    };
    // Small inputs: linear region, output ≈ −R_f·I.
    let v = random_v(3, 16, 0.0, 0.3);
    check_inference(&xb, &v, 1e-5, "tia linear");
    // Large inputs: the amplifiers saturate and lose their virtual ground.
    let v = vec![5.0, 5.0, 5.0];
    check_inference(&xb, &v, 1e-5, "tia saturated");
    let mut eng = Engine::new(&xb, SolveOptions::default()).unwrap();
    let s = eng.solve_detailed(&v).unwrap();
    for j in 0..4 {
        let vo = s.v_tia_out[j].unwrap();
        let vs = s.v_tia_sense[j].unwrap();
        assert!(vo < -0.99, "output saturates at −vsat: {vo}");
        assert!(vs > 0.05, "the sense node leaves virtual ground: {vs}");
    }
}

#[test]
fn reads_in_every_scheme_match_ngspice() {
    for (cell, rel) in [
        (CellKind::Linear, 1e-6),
        (CellKind::Sinh { k_per_v: 2.0 }, 1e-5),
    ] {
        let mut xb = passive(4, 4, 17);
        xb.cell = cell;
        for scheme in [
            Scheme::Floating,
            Scheme::Grounded,
            Scheme::Half,
            Scheme::Third,
        ] {
            let opts = SolveOptions::default();
            let (res, s) = read(&xb, 1, 2, 0.3, scheme, &opts).unwrap();
            assert!((res.measured_a - res.cell_a - res.sneak_a).abs() < 1e-18);
            let (topo, vr, vc) = select_bias(&xb, 1, 2, 0.3, scheme);
            let mut net = emit_with(&xb, &topo, &vr, &vc).unwrap();
            if scheme == Scheme::Floating {
                // The solver ties floating nodes to ground with gmin = 1e-12 S; so does the netlist.
                net = add_gmin(&xb, &topo, &net);
            }
            for (peer, ng) in peers(&net) {
                compare(
                    &xb,
                    &topo,
                    &s,
                    &ng,
                    rel,
                    &format!("read {scheme:?} vs {peer}"),
                );
            }
        }
    }
}

/// Add 1 TΩ from every floating-line node to ground (what gmin does in the solver).
fn add_gmin(xb: &Crossbar, topo: &Topology, net: &str) -> String {
    let mut extra = String::new();
    let mut seen = std::collections::BTreeSet::new();
    for i in 0..xb.rows {
        for j in 0..xb.cols {
            for n in [word_node(xb, topo, i, j), bit_node(xb, topo, i, j)] {
                if !n.starts_with("in_") && !n.starts_with("s_") && seen.insert(n.clone()) {
                    extra.push_str(&format!("rgmin_{n} {n} 0 1e12\n"));
                }
            }
        }
    }
    net.replace(".op\n", &format!("{extra}.op\n"))
}

#[test]
fn programming_disturb_maps_match_ngspice() {
    let mut xb = passive(4, 5, 19);
    xb.r_driver_ohm = 5.0;
    for scheme in [Scheme::Half, Scheme::Third] {
        let res = program_against_peers(&xb, (2, 1), 2.0, scheme, 1e-6, "program");
        // Half-select: unselected cells see about V/2 (V/3) — a little more or less with IR drop —
        // and the selected one nearly V.
        let bound = if scheme == Scheme::Half {
            1.0
        } else {
            2.0 / 3.0
        };
        assert!(
            (res.v_disturb_max_v - bound).abs() <= 0.05 * bound,
            "{scheme:?}: {}",
            res.v_disturb_max_v
        );
        assert!(res.v_selected_v > 1.8 && res.v_selected_v <= 2.0);
    }
    // 1T1R programming also goes through Newton.
    let mut xb = passive(3, 3, 21);
    xb.cell = CellKind::OneT1R {
        mos: default_access_mos(),
        v_gate_v: vec![2.5, 0.0, 0.0],
    };
    program_against_peers(&xb, (0, 1), 1.5, Scheme::Third, 1e-5, "program 1t1r");
}

/// A programming pulse on `at` solved by netc and compared node by node with every peer on the
/// emitted netlist.
fn program_against_peers(
    xb: &Crossbar,
    (i, j): (usize, usize),
    v: f64,
    scheme: Scheme,
    tol: f64,
    what: &str,
) -> ProgramResult {
    let (res, s) = program(xb, i, j, v, scheme, &SolveOptions::default()).unwrap();
    let (topo, vr, vc) = select_bias(xb, i, j, v, scheme);
    for (peer, ng) in peers(&emit_with(xb, &topo, &vr, &vc).unwrap()) {
        compare(
            xb,
            &topo,
            &s,
            &ng,
            tol,
            &format!("{what} {scheme:?} vs {peer}"),
        );
    }
    res
}
