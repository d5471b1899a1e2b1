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
    assert_eq!(a.elements.len(), 19);
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
