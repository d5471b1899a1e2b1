//! SPICE front end: lines, spans, includes, parameters, flattening and every error variant.

use std::fs;

use netc::expr::{BinOp, Expr};
use netc::netlist::{Analysis, ElementKind};
use netc::spice::{parse_file, parse_str, SpiceError};

fn ok(src: &str) -> netc::netlist::Netlist {
    parse_str(src, "t.cir").unwrap_or_else(|e| panic!("unexpected error:\n{e}"))
}

fn err(src: &str) -> SpiceError {
    match parse_str(src, "t.cir") {
        Ok(n) => panic!("expected an error, got {n:#?}"),
        Err(e) => e,
    }
}

fn res(n: &netc::netlist::Netlist, name: &str) -> (String, String, f64) {
    let el = n
        .elements
        .iter()
        .find(|e| e.name == name)
        .unwrap_or_else(|| panic!("no element {name}"));
    match &el.kind {
        ElementKind::Resistor { n, r_ohm } => (n[0].clone(), n[1].clone(), *r_ohm),
        k => panic!("{name} is {k:?}"),
    }
}

#[test]
fn title_comments_continuations() {
    let n = ok("My Title line\n\
                * a comment\n\
                R1 a b 10kOhm ; inline comment\n\
                R2 b 0\n\
                * comment between a line and its continuation\n\
                + 2.5k $ dollar comment\n\
                \n\
                V1 a 0 DC 1.5V\n\
                R3 a 0 {1k + 1k} ; {not; a brace}\n\
                .op\n\
                .end\n\
                R9 never read 1\n");
    assert_eq!(n.title, "My Title line");
    assert_eq!(n.elements.len(), 4);
    assert_eq!(res(&n, "r1"), ("a".into(), "b".into(), 1e4));
    assert_eq!(res(&n, "r2"), ("b".into(), "0".into(), 2.5e3));
    assert_eq!(res(&n, "r3").2, 2e3);
    assert!(matches!(n.analyses.as_slice(), [Analysis::Op { .. }]));
}

#[test]
fn span_after_continuation_points_at_physical_line() {
    let e = err("title\nR1 a\n+ b\n+   1x2\n");
    let text = e.to_string();
    let sp = e.span().expect("located");
    assert_eq!((sp.line, sp.col), (4, 5), "{text}");
    assert!(text.starts_with("t.cir:4:5: bad number `1x2`"), "{text}");
    assert!(text.contains("\n 4 | +   1x2\n   |     ^^^"), "{text}");
}

#[test]
fn include_and_lib_with_spans_in_included_file() {
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("sub");
    fs::create_dir(&sub).unwrap();
    fs::write(
        sub.join("parts.inc"),
        "* no title line in included files\nR2 b 0 2k\n.include deeper.inc\n",
    )
    .unwrap();
    fs::write(sub.join("deeper.inc"), "R3 b 0 3k\n").unwrap();
    fs::write(
        sub.join("models.lib"),
        "* library\n.lib fast\nR4 b 0 4k\n.endl\n.lib slow\nR4 b 0 40k\n.lib models.lib extra\n.endl slow\n.lib extra\nR5 b 0 5k\n.endl\n",
    )
    .unwrap();
    let main = dir.path().join("main.cir");
    fs::write(
        &main,
        "main\nV1 a 0 1\nR1 a b 1k\n.include \"sub/parts.inc\"\n.lib 'sub/models.lib' slow\n.op\n.end\n",
    )
    .unwrap();
    let n = parse_file(&main).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<&str> = n.elements.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["v1", "r1", "r2", "r3", "r4", "r5"]);
    assert_eq!(res(&n, "r4").2, 40e3);
    // The span of an element from an included file names that file and line.
    let r3 = n.elements.iter().find(|e| e.name == "r3").unwrap();
    assert!(r3.span.file.ends_with("deeper.inc"), "{}", r3.span);
    assert_eq!(r3.span.line, 1);

    // An error inside an included file points into it.
    fs::write(sub.join("deeper.inc"), "R3 b 0 3k\nR6 b 0 {1 + nope}\n").unwrap();
    let e = parse_file(&main).unwrap_err();
    let text = e.to_string();
    assert!(
        matches!(e, SpiceError::UnknownParam { ref name, .. } if name == "nope"),
        "{text}"
    );
    assert!(
        text.contains("deeper.inc:2:13: unknown parameter `nope`"),
        "{text}"
    );
    assert!(
        text.ends_with(" 2 | R6 b 0 {1 + nope}\n   |             ^^^^"),
        "{text}"
    );

    // Missing include file, include cycle, missing section.
    fs::write(sub.join("deeper.inc"), ".include ../sub/parts.inc\n").unwrap();
    let e = parse_file(&main).unwrap_err();
    assert!(matches!(e, SpiceError::IncludeCycle { .. }), "{e}");
    assert!(e.to_string().contains("deeper.inc:1:10"), "{e}");
    fs::write(sub.join("deeper.inc"), ".include nothere.inc\n").unwrap();
    let e = parse_file(&main).unwrap_err();
    assert!(matches!(e, SpiceError::IncludeNotFound { .. }), "{e}");
    fs::write(sub.join("deeper.inc"), ".lib models.lib nosuch\n").unwrap();
    let e = parse_file(&main).unwrap_err();
    assert!(matches!(e, SpiceError::LibSectionNotFound { .. }), "{e}");
}

#[test]
fn subckt_flattening_with_nested_hierarchy_and_parameters() {
    let n = ok("hier\n\
        .param rbase=1k scale={2}\n\
        .global vdd\n\
        .subckt leaf a b params: r=1 k=3\n\
        R1 a mid {r*k}\n\
        R2 mid b {rbase}\n\
        R3 mid vdd 1meg\n\
        .ends leaf\n\
        .subckt pair in out params: w=1\n\
        X1 in m leaf r={w*scale}\n\
        X2 m out leaf k=5\n\
        Rp in GND {w}\n\
        .ends\n\
        Vdd vdd 0 1\n\
        Xtop a 0 pair w=7\n\
        X9 a b leaf\n\
        .op\n");
    let mut got: Vec<(String, String, String, f64)> = n
        .elements
        .iter()
        .filter_map(|e| match &e.kind {
            ElementKind::Resistor { n, r_ohm } => {
                Some((e.name.clone(), n[0].clone(), n[1].clone(), *r_ohm))
            }
            _ => None,
        })
        .collect();
    got.sort_by(|a, b| a.0.cmp(&b.0));
    let s = |x: &str| x.to_string();
    // Hand-derived: xtop has w=7, so xtop.x1 gets r=14 (k=3 default) and xtop.x2 r=1 k=5.
    let mut want = vec![
        (s("x9.r1"), s("a"), s("x9.mid"), 3.0),
        (s("x9.r2"), s("x9.mid"), s("b"), 1e3),
        (s("x9.r3"), s("x9.mid"), s("vdd"), 1e6),
        (s("xtop.rp"), s("a"), s("0"), 7.0),
        (s("xtop.x1.r1"), s("a"), s("xtop.x1.mid"), 42.0),
        (s("xtop.x1.r2"), s("xtop.x1.mid"), s("xtop.m"), 1e3),
        (s("xtop.x1.r3"), s("xtop.x1.mid"), s("vdd"), 1e6),
        (s("xtop.x2.r1"), s("xtop.m"), s("xtop.x2.mid"), 5.0),
        (s("xtop.x2.r2"), s("xtop.x2.mid"), s("0"), 1e3),
        (s("xtop.x2.r3"), s("xtop.x2.mid"), s("vdd"), 1e6),
    ];
    want.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(got, want);
    // Members point at the top-level instance line.
    let m = n.elements.iter().find(|e| e.name == "xtop.x2.r1").unwrap();
    assert_eq!((m.span.line, m.span.col), (15, 1));
}

#[test]
fn behavioural_sources_get_parameters_and_hierarchical_names() {
    let n = ok("b\n.param g=-2 a=0.5\n\
        .subckt neuron p n o params: vsat=1\n\
        Vs o s 0\n\
        B1 s 0 V = vsat*tanh(a*(V(p)-V(n))/vsat) + 0*I(vs)\n\
        .ends\n\
        X1 in 0 out neuron vsat=2\n\
        Bi out 0 I=g*V(out)^2\n\
        Vin in 0 1\n");
    let b1 = n.elements.iter().find(|e| e.name == "x1.b1").unwrap();
    let ElementKind::BVoltage { n: nodes, expr } = &b1.kind else {
        panic!("{b1:?}")
    };
    assert_eq!(nodes, &["x1.s".to_string(), "0".to_string()]);
    assert!(format!("{expr}").contains("V(in,0)") || format!("{expr}").contains("V(in)"));
    let mut refs = Vec::new();
    expr.visit(&mut |e| match e {
        Expr::V(a, b) => refs.push(format!("v:{a}:{b:?}")),
        Expr::I(v) => refs.push(format!("i:{v}")),
        Expr::Param(p) => refs.push(format!("param:{p}")),
        _ => {}
    });
    assert_eq!(refs, ["v:in:None", "v:0:None", "i:x1.vs"]);
    let bi = n.elements.iter().find(|e| e.name == "bi").unwrap();
    let ElementKind::BCurrent { expr, .. } = &bi.kind else {
        panic!()
    };
    assert_eq!(
        *expr,
        Expr::bin(
            BinOp::Mul,
            Expr::Neg(Box::new(Expr::Num(2.0))),
            Expr::bin(BinOp::Pow, Expr::V("out".into(), None), Expr::Num(2.0))
        )
    );
}

#[test]
fn sources_mosfets_options_and_dc() {
    let n = ok("m\n\
        .options reltol=1e-4 gmin=1e-13 itl1=200 method=gear\n\
        .model nch nmos (level=1 vto=0.7 kp=110u lambda=0.04 gamma=0.4 phi=0.65 cgso=1p)\n\
        .model pch PMOS level=1 vto=-0.7 kp=50u\n\
        Vg g 0 DC 1.2 AC 1 0\n\
        Vd d 0 pulse(0.3 1 1u 1u 1u 1u 1u)\n\
        Vx x 0\n\
        I1 x 0 dc=1m\n\
        M1 d g 0 0 nch W=2u L=1u\n\
        M2 d g vdd vdd pch\n\
        E1 e 0 d 0 2\n\
        G1 e 0 d 0 1m\n\
        F1 e 0 vg 3\n\
        H1 e2 0 vd 1k\n\
        .dc vg 0 1.8 0.1\n\
        .op\n");
    assert_eq!(n.options.reltol, 1e-4);
    assert_eq!(n.options.gmin_siemens, 1e-13);
    assert_eq!(n.options.itl1, 200);
    let kinds: Vec<_> = n
        .elements
        .iter()
        .map(|e| (e.name.as_str(), &e.kind))
        .collect();
    assert!(matches!(kinds[0].1, ElementKind::VSource { dc_v, .. } if *dc_v == 1.2));
    assert!(matches!(kinds[1].1, ElementKind::VSource { dc_v, .. } if *dc_v == 0.3));
    assert!(matches!(kinds[2].1, ElementKind::VSource { dc_v, .. } if *dc_v == 0.0));
    assert!(matches!(kinds[3].1, ElementKind::ISource { dc_a, .. } if *dc_a == 1e-3));
    match kinds[4].1 {
        ElementKind::Mosfet {
            model, w_m, l_m, d, ..
        } => {
            assert_eq!((*w_m, *l_m, d.as_str()), (2e-6, 1e-6, "d"));
            assert!(model.nmos);
            assert_eq!(
                (model.vto_v, model.kp_a_per_v2, model.lambda_per_v),
                (0.7, 110e-6, 0.04)
            );
            assert_eq!(
                (model.gamma_sqrt_v, model.phi_v, model.is_a),
                (0.4, 0.65, 1e-14)
            );
        }
        k => panic!("{k:?}"),
    }
    match kinds[5].1 {
        ElementKind::Mosfet {
            model, w_m, l_m, ..
        } => {
            assert_eq!((*w_m, *l_m), (100e-6, 100e-6));
            assert!(!model.nmos);
            assert_eq!(model.vto_v, -0.7);
        }
        k => panic!("{k:?}"),
    }
    assert!(
        matches!(kinds[8].1, ElementKind::Cccs { vsrc, gain, .. } if vsrc == "vg" && *gain == 3.0)
    );
    assert!(matches!(
        &n.analyses[0],
        Analysis::Dc { src, start, stop, step, .. } if src == "vg" && *start == 0.0 && *stop == 1.8 && *step == 0.1
    ));
    assert!(matches!(n.analyses[1], Analysis::Op { .. }));
    // Warnings: unknown option, AC spec, pulse spec, no value, capacitance parameter.
    let w = n.warnings.join("\n");
    for needle in [
        "option `method`",
        "AC specification",
        "`pulse` ignored",
        "no value",
        "cgso",
    ] {
        assert!(w.contains(needle), "missing warning {needle}:\n{w}");
    }
}

#[test]
fn control_block_and_ignored_directives_warn() {
    let n = ok("t\nR1 a 0 1\n.control\nset numdgt=15\nop\nprint all\n.endc\n.print dc v(a)\n.save all\nC1 a 0 1p\n");
    assert_eq!(n.elements.len(), 1);
    assert_eq!(n.warnings.len(), 4, "{:#?}", n.warnings);
    assert!(n.warnings[0].starts_with("t.cir:3:1: warning: `.control` block skipped"));
}

/// Every error variant, with its location.
#[test]
fn error_variants_are_located() {
    let cases: &[(&str, &str, (usize, usize))] = &[
        ("t\nR1 a b (1\n", "Syntax", (2, 10)),
        ("t\nR1 a b 1q2\n", "BadNumber", (2, 8)),
        ("t\nR1 a b {1/0}\n", "BadValue", (2, 8)),
        ("t\nM1 d g s b nomodel\n", "UnknownModel", (2, 12)),
        ("t\nX1 a b nosub\n", "UnknownSubckt", (2, 8)),
        ("t\nR1 a b {2*q}\n", "UnknownParam", (2, 11)),
        ("t\n.param a={b} b={a}\n", "ParamCycle", (2, 8)),
        ("t\nB1 a 0 V=foo(1)\n", "UnknownFunction", (2, 10)),
        ("t\nB1 a 0 V=max(1)\n", "BadArity", (2, 10)),
        ("t\nF1 a 0 vnone 2\n", "UnknownSource", (2, 8)),
        (
            "t\n.subckt s a b\nR1 a b 1\n.ends\nX1 a s\n",
            "PinCount",
            (5, 1),
        ),
        ("t\nR1 a 0 1\nr1 b 0 2\n", "Duplicate", (3, 1)),
        ("t\n.tran 1n 1u\n", "UnknownDirective", (2, 1)),
        (
            "t\n.include /nonexistent/x.inc\n",
            "IncludeNotFound",
            (2, 10),
        ),
        (
            "t\n.subckt s a\nX1 a s\n.ends\nX1 n s\n",
            "SubcktRecursion",
            (3, 6),
        ),
        ("t\n.subckt s a\nR1 a 0 1\n", "MissingEnds", (2, 1)),
        ("t\nD1 a 0 dmod\n", "Unsupported", (2, 1)),
        (
            "t\n.model n nmos level=3\nM1 d g s b n\n",
            "Unsupported",
            (2, 21),
        ),
        ("t\n.dc vnone 0 1 0.1\nR1 a 0 1\n", "UnknownSource", (2, 1)),
        ("t\nE1 a 0 b 2\n", "PinCount", (2, 1)),
        ("t\nM1 d g s nch\n.model nch nmos\n", "PinCount", (2, 1)),
        ("t\n.subckt s a\n.ends t\n", "Syntax", (3, 7)),
        ("t\n+ R1 a 0 1\n", "Syntax", (2, 1)),
        ("t\n.lib x.lib\nR1 a 0 1\n", "Syntax", (2, 1)),
    ];
    for (src, variant, (line, col)) in cases {
        let e = err(src);
        let dbg = format!("{e:?}");
        assert!(
            dbg.starts_with(variant),
            "{src:?}: expected {variant}, got {e}"
        );
        let sp = e.span().unwrap_or_else(|| panic!("{src:?}: no span"));
        assert_eq!((sp.line, sp.col), (*line, *col), "{src:?}:\n{e}");
        let text = e.to_string();
        assert!(text.starts_with(&format!("t.cir:{line}:{col}: ")), "{text}");
        assert!(text.contains('^'), "{text}");
    }
    // Include cycle (needs files).
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("a.inc"), "R1 a 0 1\n.include b.inc\n").unwrap();
    fs::write(dir.path().join("b.inc"), "\n.include a.inc\n").unwrap();
    let main = dir.path().join("m.cir");
    fs::write(&main, "t\n.include a.inc\n").unwrap();
    let e = parse_file(&main).unwrap_err();
    assert!(matches!(e, SpiceError::IncludeCycle { .. }), "{e}");
    assert_eq!(e.span().map(|s| (s.line, s.col)), Some((2, 10)));
    assert!(e.span().unwrap().file.ends_with("b.inc"));
    // Main file missing: an I/O error without a span.
    let e = parse_file(&dir.path().join("missing.cir")).unwrap_err();
    assert!(matches!(e, SpiceError::Io { .. }));
}

#[test]
fn ground_aliases_and_case() {
    let n = ok("t\nRONE A GND 1K\nrtwo a 0 2MEG\nvX a Gnd 1\n");
    assert_eq!(res(&n, "rone"), ("a".into(), "0".into(), 1e3));
    assert_eq!(res(&n, "rtwo").2, 2e6);
    assert!(matches!(&n.elements[2].kind, ElementKind::VSource { n, .. } if n[1] == "0"));
}

#[test]
fn forward_parameter_references_and_power_semantics() {
    // ngspice 39: a later `.param` may be used earlier; (-2)^3 = 8 (|a|^b); -2^2 = -4.
    let n = ok("t\n.param b={a*2}\n.param a=3\nR1 x 0 {b}\nR2 x 0 {(-2)^3}\nV1 x 0 {-2^2}\nR3 x 0 '2^3^2'\n");
    assert_eq!(res(&n, "r1").2, 6.0);
    assert_eq!(res(&n, "r2").2, 8.0);
    assert_eq!(res(&n, "r3").2, 64.0);
    assert!(matches!(n.elements[2].kind, ElementKind::VSource { dc_v, .. } if dc_v == -4.0));
}
