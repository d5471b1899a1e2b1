//! The example netlists under `netlists/verify/` parse to the hand-derived flat element lists.

use std::path::Path;

use netc::netlist::{Analysis, ElementKind, Netlist};
use netc::spice::{parse_file, parse_str, SpiceError};

fn load(name: &str) -> Netlist {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("netlists/verify")
        .join(name);
    parse_file(&p).unwrap_or_else(|e| panic!("{e}"))
}

/// (name, node+, node-, value) of every two-terminal R / V element.
fn two_terminal(n: &Netlist) -> Vec<(String, String, String, f64)> {
    n.elements
        .iter()
        .map(|e| match &e.kind {
            ElementKind::Resistor { n, r_ohm } => {
                (e.name.clone(), n[0].clone(), n[1].clone(), *r_ohm)
            }
            ElementKind::VSource { n, dc_v } => (e.name.clone(), n[0].clone(), n[1].clone(), *dc_v),
            k => panic!("unexpected {k:?}"),
        })
        .collect()
}

fn t(name: &str, a: &str, b: &str, v: f64) -> (String, String, String, f64) {
    (name.into(), a.into(), b.into(), v)
}

#[test]
fn ladder() {
    let n = load("ladder.cir");
    assert_eq!(
        n.title,
        "Resistor ladder with SI suffixes, comments and continuations"
    );
    let want = vec![
        t("vin", "in", "0", 1.2),
        t("r1", "in", "n1", 1e3),
        t("r2", "n1", "0", 2e3),
        t("r3", "n1", "n2", 1e3),
        t("r4", "n2", "0", 2e3),
        t("r5", "n2", "n3", 1e3),
        t("r6", "n3", "0", 2e3),
        t("r7", "n3", "n4", 1e3),
        t("r8", "n4", "0", 2e3),
        t("r9", "n4", "n5", 1e3),
        t("r10", "n5", "0", 2e3),
        t("r11", "n5", "n6", 1e3),
        t("r12", "n6", "0", 1e3),
    ];
    assert_eq!(two_terminal(&n), want);
    assert!(matches!(n.analyses.as_slice(), [Analysis::Op { .. }]));
    assert!(n.warnings.is_empty(), "{:?}", n.warnings);
}

#[test]
fn subckt_params() {
    let n = load("subckt_params.cir");
    // xa: ratio=3, rload=5k; xb: ratio=2 (default), rload=2*rbase=20k; divider r = rbase/10 = 1k.
    let want = vec![
        t("vin", "in", "0", 2.5),
        t("xa.x1.ra", "in", "xa.x1.t", 500.0),
        t("xa.x1.rc", "xa.x1.t", "xa.mid", 500.0),
        t("xa.x1.rb", "xa.mid", "0", 3e3),
        t("xa.vs", "xa.mid", "oa", 0.0),
        t("xa.rl", "oa", "0", 5e3),
        t("xb.x1.ra", "in", "xb.x1.t", 500.0),
        t("xb.x1.rc", "xb.x1.t", "xb.mid", 500.0),
        t("xb.x1.rb", "xb.mid", "0", 2e3),
        t("xb.vs", "xb.mid", "ob", 0.0),
        t("xb.rl", "ob", "0", 20e3),
        t("rx", "oa", "ob", 4.7e3),
    ];
    assert_eq!(two_terminal(&n), want);
}

#[test]
fn nested_definitions_are_lexically_scoped() {
    let src = "nested\n\
        .subckt outer a b\n\
        .subckt inner p q\n\
        R1 p q 1k\n\
        .ends inner\n\
        X1 a m inner\n\
        X2 m b inner\n\
        .ends outer\n\
        X0 1 0 outer\n";
    let n = parse_str(src, "n.cir").unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<_> = n.elements.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["x0.x1.r1", "x0.x2.r1"]);
    // `inner` is not visible at the top level.
    let e = parse_str(&format!("{src}X5 1 0 inner\n"), "n.cir").unwrap_err();
    assert!(matches!(e, SpiceError::UnknownSubckt { .. }), "{e}");
    // An instance value for an undeclared parameter is an error.
    let e = parse_str(&format!("{src}X6 1 0 outer k=1\n"), "n.cir").unwrap_err();
    assert!(matches!(e, SpiceError::UnknownParam { .. }), "{e}");
    assert_eq!(e.span().map(|s| (s.line, s.col)), Some((10, 14)));
}

#[test]
fn duplicate_inside_a_subcircuit_points_at_both_cards() {
    let e = parse_str(
        "t\n.subckt s a\nR1 a 0 1\nr1 a 0 2\n.ends\nX1 n s\n",
        "d.cir",
    )
    .unwrap_err();
    let SpiceError::Duplicate { name, first, span } = &e else {
        panic!("{e}")
    };
    assert_eq!(name, "r1");
    assert_eq!((first.line, span.line, span.col), (3, 4, 1));
}

/// A chain of distinct subcircuits `s0 → s1 → …`, `depth` levels deep.
fn chain(depth: usize) -> String {
    let mut s = String::from("deep\n");
    for k in 0..depth {
        s.push_str(&format!(".subckt s{k} a b\nR1 a m 1\n"));
        if k + 1 < depth {
            s.push_str(&format!("X1 m b s{}\n", k + 1));
        } else {
            s.push_str("R2 m b 1\n");
        }
        s.push_str(".ends\n");
    }
    s.push_str("X0 in 0 s0\n");
    s
}

#[test]
fn deep_hierarchies_elaborate_or_fail_cleanly() {
    let n = parse_str(&chain(199), "c.cir").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(n.elements.len(), 200);
    let deepest = &n.elements.last().unwrap().name;
    assert_eq!(deepest.matches("x1.").count(), 198);
    let e = parse_str(&chain(400), "c.cir").unwrap_err();
    assert!(matches!(e, SpiceError::Unsupported { .. }), "{e}");
}

#[test]
fn suffix_after_braces_is_rejected_like_ngspice() {
    let e = parse_str("t\n.param a=2\nR1 x 0 {a}k\n", "s.cir").unwrap_err();
    assert!(matches!(e, SpiceError::Syntax { .. }), "{e}");
    assert_eq!(e.span().map(|s| (s.line, s.col)), Some((3, 11)));
}
