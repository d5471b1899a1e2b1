//! write → parse round trip, and robustness against mutated and random input.

use netc::netlist::Netlist;
use netc::span::Span;
use netc::spice::{parse_str, write_netlist};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const RICH: &str = "round trip\n\
.param g=2m vsat=1.5 neg=-0.25\n\
.options reltol=1e-5 abstol=1e-13 itl2=77\n\
.model nch nmos (level=1 vto=0.45 kp=123.456u lambda=0.02 gamma=0.3 phi=0.7 ld=0.05u)\n\
.subckt cell wl bl params: gc=1m\n\
.model lnch nmos (vto={gc*100} kp=1e-4)\n\
R1 wl mid {1/gc}\n\
M1 mid g bl 0 lnch w=1u l=0.5u\n\
Vg g 0 1.8\n\
Bm mid bl I = gc*sinh(3*V(mid,bl))/3 + neg*I(vg)\n\
.ends cell\n\
.subckt neuron p n o\n\
Bo o 0 V=vsat*tanh(4*(V(p)-V(n))/vsat)\n\
.ends\n\
V1 in 0 DC 0.3333333333333333\n\
I1 0 in 1.234e-7\n\
X1 in col cell gc=0.7m\n\
X2 in col cell\n\
Vsense col 0 0\n\
E1 e 0 in 0 3.5\n\
G1 e 0 in col -0.001\n\
F1 f 0 vsense 0.1\n\
H1 h 0 vsense 1e5\n\
Rf f 0 1k\n\
Rh h 0 1k\n\
M5 e in 0 0 nch W=3.3u L=1.1u\n\
X3 e 0 out neuron\n\
Ro out 0 12.5meg\n\
.op\n\
.dc v1 -1 1 0.125\n\
.end\n";

/// Corners of the dialect whose meaning ngspice decides (checked through the cross-check below).
const CORNERS: &str = "dialect corners\n\
.param fb={fa*2} fa=3 neg={-2^2} odd={(-2)^3} chain='2^3^2' pw={pow(2,0.5)} lg={log(10)}\n\
.global vdd\n\
.subckt inner a b params: k=1\n\
R1 a b {k*w*100}\n\
R2 b vdd 10MEG\n\
.ends inner\n\
.subckt outer in out params: w=2\n\
X2 in out inner k=3\n\
.ends\n\
Vdd vdd GND 1.5V\n\
Vin in 0 pulse(0.7 1 1u 1u 1u 1u 1u)\n\
X1 in 0 outer w=5\n\
Va a 0 {neg}\n\
Ra a 0 {fb*1k}\n\
Rb a b 0\n\
Rc b 0 '1e3*chain'\n\
Vc c 0 {odd}\n\
Rd c d 1mil\n\
+ ; continued value above\n\
Re d 0 {pw*lg*1MEG}\n\
Bx x 0 V=neg*V(in)+pw $ comment\n\
Rx x 0 2.2k\n\
Ix 0 x dc=1uA\n\
.op\n";

/// Netlists compare equal once spans and warnings are cleared.
fn normalise(mut n: Netlist) -> Netlist {
    for e in &mut n.elements {
        e.span = Span::default();
    }
    for a in &mut n.analyses {
        match a {
            netc::netlist::Analysis::Op { span } | netc::netlist::Analysis::Dc { span, .. } => {
                *span = Span::default()
            }
        }
    }
    n.warnings.clear();
    n
}

#[test]
fn write_then_parse_gives_the_same_netlist() {
    let a = parse_str(RICH, "rich.cir").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(a.elements.len(), 20);
    assert!(a.elements.iter().any(|e| e.name == "x2.bm"));
    let text = write_netlist(&a);
    assert!(text.contains("\nb.x1.bm x1.mid col i="), "{text}");
    assert!(
        text.contains("\nm.x2.m1 x2.mid x2.g col 0 x2.lnch "),
        "{text}"
    );
    let b = parse_str(&text, "written.cir").unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(normalise(a.clone()), normalise(b.clone()), "{text}");
    // And once more: the text is a fixed point.
    assert_eq!(write_netlist(&b), text);
}

/// Random mutations of valid netlists and random byte soup: Ok or Err, never a panic.
#[test]
fn mutated_and_random_input_never_panics() {
    let seeds = [RICH, "t\nR1 a b {1k*(2+3)}\n+ ; c\nV1 a 0 dc 1 $ x\n.subckt s a b\nX1 a b s2\n.ends\n.subckt s2 a b\nR1 a b 1\n.ends\nX9 1 2 s\n.op\n"];
    let mut rng = ChaCha8Rng::seed_from_u64(20240611);
    let specials: Vec<char> = "(){}'\"=,;$+-*/^. \t\n*xXvV0123456789.ekKmMgG_:#\u{e9}"
        .chars()
        .collect();
    let mut n_ok = 0;
    let mut n_err = 0;
    for round in 0..3000 {
        let base: Vec<char> = seeds[round % seeds.len()].chars().collect();
        let mut s = base.clone();
        let n_mut = rng.gen_range(1..6);
        for _ in 0..n_mut {
            if s.is_empty() {
                break;
            }
            let i = rng.gen_range(0..s.len());
            match rng.gen_range(0..5) {
                0 => {
                    s.truncate(i);
                }
                1 => {
                    s.remove(i);
                }
                2 => s.insert(i, specials[rng.gen_range(0..specials.len())]),
                3 => s[i] = specials[rng.gen_range(0..specials.len())],
                _ => {
                    // Duplicate a slice (e.g. repeat a line).
                    let j = rng.gen_range(i..s.len().min(i + 40));
                    let piece: Vec<char> = s[i..j].to_vec();
                    for (k, c) in piece.into_iter().enumerate() {
                        s.insert(j + k, c);
                    }
                }
            }
        }
        let text: String = s.into_iter().collect();
        match parse_str(&text, "fuzz.cir") {
            Ok(n) => {
                n_ok += 1;
                // What parses must also write and parse back.
                let w = write_netlist(&n);
                let back = parse_str(&w, "w.cir")
                    .unwrap_or_else(|e| panic!("{e}\nfrom\n{text}\nwritten\n{w}"));
                assert_eq!(normalise(n), normalise(back), "{text}");
            }
            Err(e) => {
                n_err += 1;
                let _ = e.to_string();
            }
        }
    }
    assert!(n_ok > 100 && n_err > 100, "ok {n_ok}, err {n_err}");
    for _ in 0..1000 {
        let len = rng.gen_range(0..300);
        let bytes: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        let text = String::from_utf8_lossy(&bytes);
        if let Err(e) = parse_str(&text, "soup.cir") {
            let _ = e.to_string();
        }
    }
    // Pathological nesting and long lines.
    for src in [
        format!("t\nB1 a 0 V={}1{}\n", "(".repeat(5000), ")".repeat(5000)),
        format!("t\nB1 a 0 V={}\n", vec!["1"; 20000].join("^")),
        format!("t\nR1 a 0 {}1\n", "-".repeat(100000)),
        format!("t\nR1 a 0 {{{}}}\n", "{".repeat(3000)),
    ] {
        let _ = parse_str(&src, "deep.cir").map_err(|e| e.to_string());
    }
}

/// Run ngspice on a netlist (a `.control` block with `op` / `print all` is appended) and return
/// its `name = value` lines. `None` when ngspice is not installed (a failure under `CI=true`).
fn ngspice_op(netlist: &str) -> Option<std::collections::BTreeMap<String, f64>> {
    let dir = tempfile::tempdir().ok()?;
    // Only the operating point: `.dc` cards are dropped (ngspice would also run them).
    let body: Vec<&str> = netlist
        .trim_end()
        .trim_end_matches(".end")
        .lines()
        .filter(|l| !l.to_lowercase().starts_with(".dc"))
        .collect();
    let body = body.join("\n");
    let file = dir.path().join("deck.cir");
    std::fs::write(
        &file,
        format!("{body}\n.control\nset numdgt=15\nop\nprint all\n.endc\n.end\n"),
    )
    .ok()?;
    let out = match std::process::Command::new("ngspice")
        .arg("-b")
        .arg(&file)
        .output()
    {
        Ok(o) => o,
        Err(_) => {
            assert!(
                std::env::var("CI").as_deref() != Ok("true"),
                "ngspice missing under CI"
            );
            return None;
        }
    };
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ngspice failed:\n{text}");
    assert!(
        !text
            .lines()
            .any(|l| l.trim_start().to_lowercase().starts_with("error")),
        "ngspice reported an error:\n{text}"
    );
    let mut m = std::collections::BTreeMap::new();
    let start = text
        .find("No. of Data Rows")
        .expect("ngspice printed no data");
    for line in text[start..].lines().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        if !line.contains(" = ") {
            break;
        }
        let mut parts = line.split(" = ");
        if let (Some(k), Some(v), None) = (parts.next(), parts.next(), parts.next()) {
            if let Ok(x) = v.trim().parse::<f64>() {
                m.insert(k.trim().to_string(), x);
            }
        }
    }
    Some(m)
}

/// ngspice gives the same operating point for the original hierarchical netlist and for the flat
/// netlist netc writes from it, under the same names (`x1.mid`, `v.x1.vg#branch`).
/// Since netc's flat netlist carries netc's reading of every value, this checks that netc reads
/// the original as ngspice does.
#[test]
fn ngspice_agrees_on_original_and_written_netlist() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("netlists/verify");
    let mut decks = vec![("rich", RICH.to_string()), ("corners", CORNERS.to_string())];
    for f in ["ladder.cir", "subckt_params.cir"] {
        decks.push((f, std::fs::read_to_string(dir.join(f)).unwrap()));
    }
    for (name, deck) in decks {
        let a = parse_str(&deck, name).unwrap_or_else(|e| panic!("{e}"));
        let written = write_netlist(&a);
        let Some(orig) = ngspice_op(&deck) else {
            return;
        };
        let Some(flat) = ngspice_op(&written) else {
            return;
        };
        assert!(orig.len() > 5, "{name}: {orig:?}");
        assert_eq!(
            orig.keys().collect::<Vec<_>>(),
            flat.keys().collect::<Vec<_>>(),
            "{name}"
        );
        for (k, v) in &orig {
            let w = flat[k];
            assert!(
                (v - w).abs() <= 1e-9 * v.abs().max(w.abs()) + 1e-15,
                "{name}: {k}: {v} vs {w}\n{written}"
            );
        }
        if name == "rich" {
            assert!(
                orig.contains_key("x1.mid") && orig.contains_key("v.x2.vg#branch"),
                "{orig:?}"
            );
        }
    }
}

/// A passive N×N crossbar netlist with 2.5 Ω wire segments (the layout of docs/crossbar.md): drivers
/// `vin{i}`, word-line segments `rd{i}`/`rw{i}_{j}`, bit-line segments `rb{i}_{j}`/`rs{j}`, sense
/// sources `vs{j}`, cells `rc{i}_{j}`. 3N² + 2N elements.
fn crossbar_netlist(n: usize) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(40 * (3 * n * n + 2 * n));
    let _ = writeln!(s, "crossbar {n}x{n}");
    for i in 0..n {
        let _ = writeln!(s, "vin{i} in{i} 0 dc 0.{}", i % 10);
        let _ = writeln!(s, "rd{i} in{i} w{i}_0 2.5");
        for j in 1..n {
            let _ = writeln!(s, "rw{i}_{j} w{i}_{} w{i}_{j} 2.5", j - 1);
        }
    }
    for j in 0..n {
        for i in 0..n - 1 {
            let _ = writeln!(s, "rb{i}_{j} b{i}_{j} b{}_{j} 2.5", i + 1);
        }
        let _ = writeln!(s, "rs{j} b{}_{j} out{j} 2.5", n - 1);
        let _ = writeln!(s, "vs{j} out{j} 0 0");
    }
    for i in 0..n {
        for j in 0..n {
            let _ = writeln!(s, "rc{i}_{j} w{i}_{j} b{i}_{j} {}k", 10 + (i * 7 + j) % 90);
        }
    }
    let _ = writeln!(s, ".op\n.end");
    s
}

#[test]
fn crossbar_netlist_parses_and_round_trips() {
    let n = 8;
    let a = parse_str(&crossbar_netlist(n), "xbar.cir").unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(a.elements.len(), 3 * n * n + 2 * n);
    let cell = a.elements.iter().find(|e| e.name == "rc3_5").unwrap();
    assert!(matches!(
        &cell.kind,
        netc::netlist::ElementKind::Resistor { n, r_ohm } if n[0] == "w3_5" && n[1] == "b3_5" && *r_ohm == 36e3
    ));
    let b = parse_str(&write_netlist(&a), "w.cir").unwrap();
    assert_eq!(normalise(a), normalise(b));
}

/// Parse time of a big crossbar netlist, by hand only:
/// `NETC_XBAR_N=512 cargo test --release --test spice_roundtrip -- --ignored --nocapture`.
#[test]
#[ignore]
fn crossbar_parse_time() {
    let n: usize = std::env::var("NETC_XBAR_N")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(512);
    let text = crossbar_netlist(n);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("xbar.cir");
    std::fs::write(&path, &text).unwrap();
    let t = std::time::Instant::now();
    let net = netc::spice::parse_file(&path).unwrap();
    println!(
        "{n}x{n}: {} elements, {} bytes, parse_file {:.3} s",
        net.elements.len(),
        text.len(),
        t.elapsed().as_secs_f64()
    );
}
