//! 1T1R cells a row at a time, in a layout the compiler vectorises: the cells of one word line
//! (same gate voltage) as structure-of-arrays slices, the level-1 drain current evaluated
//! branch-free (both channel directions, regions and junction branches computed and selected,
//! [`AccessNmos::drain_select`]), so that the loop over the row becomes SIMD code.
//!
//! The build targets baseline x86-64 (SSE2: two `f64` lanes). Every kernel here is one
//! `#[inline(always)]` body compiled twice: as is (the fallback), and inside a
//! `#[target_feature(enable = "avx2,fma")]` copy (four lanes) that runs only when the CPU reports
//! both features ([`Simd::detect`]). Rust never contracts `a·b + c` into a fused multiply–add on
//! its own, so both copies perform the same IEEE operations in the same order: their answers are
//! bit-identical, and identical to the scalar branchy kernel ([`AccessNmos::drain`],
//! [`AccessNmos::cell_current`]) — checked in the tests. `NETC_XBAR_SIMD=sse2` forces the fallback
//! (a measurement switch, read once per process).
#![allow(clippy::needless_range_loop)] // parallel arrays indexed together
#![allow(clippy::too_many_arguments)] // the structure-of-arrays row

use super::kernel::AccessNmos;

/// Which copy of the row kernels runs. Only [`Simd::detect`] can return the AVX2 level, and only
/// after the CPU reported AVX2 and FMA, which is what makes the `unsafe` calls of the AVX2 copies
/// sound (the field is private: no other constructor exists).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Simd(Level);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Level {
    Baseline,
    #[cfg(target_arch = "x86_64")]
    Avx2Fma,
}

impl Simd {
    /// The baseline copy (SSE2 on x86-64).
    pub fn baseline() -> Simd {
        Simd(Level::Baseline)
    }

    /// The widest copy this CPU runs (AVX2 + FMA when detected), unless `NETC_XBAR_SIMD=sse2`.
    pub fn detect() -> Simd {
        static LEVEL: std::sync::OnceLock<Simd> = std::sync::OnceLock::new();
        *LEVEL.get_or_init(|| {
            if std::env::var("NETC_XBAR_SIMD").is_ok_and(|v| v == "sse2") {
                return Simd::baseline();
            }
            #[cfg(target_arch = "x86_64")]
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Simd(Level::Avx2Fma);
            }
            Simd::baseline()
        })
    }

    /// Whether this is the AVX2 + FMA copy.
    pub fn is_avx2(self) -> bool {
        self.0 != Level::Baseline
    }
}

/// One row of 1T1R cells for one Newton pass of [`super::lines`]: inputs (memristor `g`, word
/// and bit node voltages, present cell currents `i_a`) and outputs (internal node after one
/// Newton step, its sensitivities `dmw`, `dmb` to the line voltages, the derivatives `a`, `b` of
/// the cell current, and `rhs = f − i_a`).
pub struct NewtonRow<'a> {
    pub g: &'a [f64],
    pub vw: &'a [f64],
    pub vb: &'a [f64],
    pub i_a: &'a [f64],
    pub vm: &'a mut [f64],
    pub dmw: &'a mut [f64],
    pub dmb: &'a mut [f64],
    pub a: &'a mut [f64],
    pub b: &'a mut [f64],
    pub rhs: &'a mut [f64],
}

/// One Newton pass over a row at gate voltage `vg`; false when a value is not finite.
pub fn newton_row(simd: Simd, mos: &AccessNmos, vg: f64, row: NewtonRow<'_>) -> bool {
    // without body effect the threshold's terms are skipped (`drain_select_as::<false>`)
    let body = mos.has_body_effect();
    match simd.0 {
        Level::Baseline if body => newton_row_body::<true>(mos, vg, row),
        Level::Baseline => newton_row_body::<false>(mos, vg, row),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Level::Avx2Fma` is only constructed by `Simd::detect` after
        // `is_x86_feature_detected!` reported both "avx2" and "fma" on this CPU.
        Level::Avx2Fma if body => unsafe { newton_row_avx2::<true>(mos, vg, row) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: as above.
        Level::Avx2Fma => unsafe { newton_row_avx2::<false>(mos, vg, row) },
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn newton_row_avx2<const BODY: bool>(mos: &AccessNmos, vg: f64, row: NewtonRow<'_>) -> bool {
    newton_row_body::<BODY>(mos, vg, row)
}

#[inline(always)]
fn newton_row_body<const BODY: bool>(mos: &AccessNmos, vg: f64, row: NewtonRow<'_>) -> bool {
    let n = row.g.len();
    let (g, vw, vb, i_a) = (row.g, &row.vw[..n], &row.vb[..n], &row.i_a[..n]);
    let (vm, dmw_o, dmb_o) = (&mut row.vm[..n], &mut row.dmw[..n], &mut row.dmb[..n]);
    let (a_o, b_o, rhs_o) = (&mut row.a[..n], &mut row.b[..n], &mut row.rhs[..n]);
    let mut bad = 0u64;
    for k in 0..n {
        let gk = g[k];
        let (vwk, vbk, vmk) = (vw[k], vb[k], vm[k]);
        let (id, gdd, gdb) = mos.drain_select_as::<BODY>(vmk, vg, vbk);
        let fv = gk * (vwk - vmk) - id;
        let inv = 1.0 / (gk + gdd);
        let vm1 = vmk + fv * inv;
        let dmw = gk * inv;
        let dmb = -gdb * inv;
        let f = gk * (vwk - vm1);
        vm[k] = vm1;
        dmw_o[k] = dmw;
        dmb_o[k] = dmb;
        a_o[k] = gk * (1.0 - dmw);
        b_o[k] = gk * dmb;
        rhs_o[k] = f - i_a[k];
        bad |= (!(f.is_finite() & dmw.is_finite() & dmb.is_finite())) as u64;
    }
    bad == 0
}

/// Per-cell state of [`converge_row`].
const RUNNING: u64 = 0;
const DONE: u64 = 1;
const FAILED: u64 = 2;

/// Scratch of [`converge_row`] (one row).
#[derive(Debug, Clone, Default)]
pub struct ConvergeScratch {
    v: Vec<f64>,
    state: Vec<u64>,
}

/// Converge every cell of a row (gate `vg`) to the test of [`AccessNmos::cell_current`], whose
/// answers these are bit for bit: Newton steps on the internal node from `vm`, at most
/// [`super::kernel::CELL_NEWTON_STEPS`], all cells of the row in lockstep (a settled cell keeps
/// its value). On return `ok[k]` tells whether cell k settled; then `i[k]` is its current and
/// `vm[k]` its internal node, otherwise both are untouched (the caller takes the bracketed
/// fallback, as after `cell_current` returned `None`).
pub fn converge_row(
    simd: Simd,
    mos: &AccessNmos,
    vg: f64,
    g: &[f64],
    vw: &[f64],
    vb: &[f64],
    vm: &mut [f64],
    i: &mut [f64],
    ok: &mut [bool],
    s: &mut ConvergeScratch,
) {
    let n = g.len();
    s.v.clear();
    s.v.extend_from_slice(&vm[..n]);
    s.state.clear();
    s.state.extend(
        s.v.iter()
            .map(|v| if v.is_finite() { RUNNING } else { FAILED }),
    );
    let body = mos.has_body_effect();
    for _ in 0..super::kernel::CELL_NEWTON_STEPS {
        let (v, st) = (&mut s.v, &mut s.state);
        let running = match simd.0 {
            Level::Baseline if body => converge_pass_body::<true>(mos, vg, g, vw, vb, vm, i, v, st),
            Level::Baseline => converge_pass_body::<false>(mos, vg, g, vw, vb, vm, i, v, st),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Level::Avx2Fma` is only constructed by `Simd::detect` after
            // `is_x86_feature_detected!` reported both "avx2" and "fma" on this CPU.
            Level::Avx2Fma if body => unsafe {
                converge_pass_avx2::<true>(mos, vg, g, vw, vb, vm, i, v, st)
            },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as above.
            Level::Avx2Fma => unsafe {
                converge_pass_avx2::<false>(mos, vg, g, vw, vb, vm, i, v, st)
            },
        };
        if running == 0 {
            break;
        }
    }
    for (o, st) in ok[..n].iter_mut().zip(&s.state) {
        *o = *st == DONE;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn converge_pass_avx2<const BODY: bool>(
    mos: &AccessNmos,
    vg: f64,
    g: &[f64],
    vw: &[f64],
    vb: &[f64],
    vm: &mut [f64],
    i: &mut [f64],
    v: &mut [f64],
    state: &mut [u64],
) -> u64 {
    converge_pass_body::<BODY>(mos, vg, g, vw, vb, vm, i, v, state)
}

/// One lockstep Newton iteration of [`converge_row`]: for every running cell the test of
/// `cell_current` at its present point (settled: record it), else the step (failed when the
/// step is not finite). Returns the number of cells still running.
#[inline(always)]
fn converge_pass_body<const BODY: bool>(
    mos: &AccessNmos,
    vg: f64,
    g: &[f64],
    vw: &[f64],
    vb: &[f64],
    vm: &mut [f64],
    i: &mut [f64],
    v: &mut [f64],
    state: &mut [u64],
) -> u64 {
    let n = g.len();
    let (vw, vb, vm, i) = (&vw[..n], &vb[..n], &mut vm[..n], &mut i[..n]);
    let (v, state) = (&mut v[..n], &mut state[..n]);
    let mut running = 0u64;
    for k in 0..n {
        let (gk, vwk, vk, st) = (g[k], vw[k], v[k], state[k]);
        let (id, gdd, _) = mos.drain_select_as::<BODY>(vk, vg, vb[k]);
        let fv = gk * (vwk - vk) - id;
        let dfv = -gk - gdd;
        let conv = fv.abs() <= 1e-14 * (1.0 + vk.abs()) * dfv.abs();
        let step = fv / dfv;
        let run = st == RUNNING;
        let settle = run & conv;
        let fail = run & !conv & !step.is_finite();
        let go = run & !conv & step.is_finite();
        let cur = gk * (vwk - vk);
        i[k] = if settle { cur } else { i[k] };
        vm[k] = if settle { vk } else { vm[k] };
        v[k] = if go { vk - step } else { vk };
        state[k] = if settle {
            DONE
        } else if fail {
            FAILED
        } else {
            st
        };
        running += go as u64;
    }
    running
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::super::array::default_access_mos;
    use super::super::kernel::AccessNmos;
    use super::*;

    /// Rows of random operating points over every region (both channel directions, cutoff,
    /// triode, saturation, the junction on and off, body effect on and off).
    fn rows(seed: u64) -> Vec<(AccessNmos, f64, Vec<[f64; 5]>)> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut out = Vec::new();
        for gamma in [0.0, 0.45] {
            let mut mos = default_access_mos();
            mos.model.gamma_sqrt_v = gamma;
            let k = AccessNmos::new(&mos, 1e-12).expect("nmos");
            for _ in 0..400 {
                let vg = rng.gen_range(0.0..5.0);
                // odd lengths: the vector loops' remainders too
                let n = rng.gen_range(1..70);
                let cells = (0..n)
                    .map(|_| {
                        let g = rng.gen_range(1e-6..1e-3);
                        let vw = rng.gen_range(-3.0..3.0);
                        let vb = rng.gen_range(-0.5..0.5);
                        let vm = match rng.gen_range(0..4) {
                            0 => 0.5 * (vw + vb),
                            1 => vb,
                            2 => rng.gen_range(-0.2..0.2),
                            _ => vw,
                        };
                        [g, vw, vb, vm, rng.gen_range(-1e-4..1e-4)]
                    })
                    .collect();
                out.push((k, vg, cells));
            }
        }
        out
    }

    fn levels() -> Vec<Simd> {
        let mut l = vec![Simd::baseline()];
        if Simd::detect().is_avx2() {
            l.push(Simd::detect());
        } else {
            eprintln!("rows: no AVX2 + FMA on this CPU (or NETC_XBAR_SIMD=sse2): baseline only");
        }
        l
    }

    /// The branch-free drain equals the branchy one bit for bit at every region.
    #[test]
    fn drain_select_equals_drain() {
        for (mos, vg, cells) in rows(5) {
            for c in cells {
                let (a, b) = (mos.drain(c[3], vg, c[2]), mos.drain_select(c[3], vg, c[2]));
                if !mos.has_body_effect() {
                    assert_eq!(b, mos.drain_select_as::<false>(c[3], vg, c[2]));
                }
                assert_eq!(
                    [a.0.to_bits(), a.1.to_bits(), a.2.to_bits()],
                    [b.0.to_bits(), b.1.to_bits(), b.2.to_bits()],
                    "{c:?} vg {vg}: {a:?} vs {b:?}"
                );
            }
        }
    }

    /// The row pass (baseline and AVX2 copies) equals the scalar pass of the line solver
    /// written with the branchy kernel, bit for bit.
    #[test]
    fn newton_row_equals_scalar_pass() {
        for simd in levels() {
            for (mos, vg, cells) in rows(6) {
                let n = cells.len();
                let col = |q: usize| cells.iter().map(|c| c[q]).collect::<Vec<f64>>();
                let (g, vw, vb, i_a) = (col(0), col(1), col(2), col(4));
                let mut vm = col(3);
                let mut o = vec![vec![0.0; n]; 5];
                let [dmw, dmb, a, b, rhs] = &mut o[..] else {
                    unreachable!()
                };
                let fin = newton_row(
                    simd,
                    &mos,
                    vg,
                    NewtonRow {
                        g: &g,
                        vw: &vw,
                        vb: &vb,
                        i_a: &i_a,
                        vm: &mut vm,
                        dmw,
                        dmb,
                        a,
                        b,
                        rhs,
                    },
                );
                let mut fin0 = true;
                for k in 0..n {
                    let (id, gdd, gdb) = mos.drain(cells[k][3], vg, vb[k]);
                    let fv = g[k] * (vw[k] - cells[k][3]) - id;
                    let inv = 1.0 / (g[k] + gdd);
                    let vm1 = cells[k][3] + fv * inv;
                    let (dw, db) = (g[k] * inv, -gdb * inv);
                    let f = g[k] * (vw[k] - vm1);
                    fin0 &= f.is_finite() && dw.is_finite() && db.is_finite();
                    let want = [vm1, dw, db, g[k] * (1.0 - dw), g[k] * db, f - i_a[k]];
                    let got = [vm[k], o[0][k], o[1][k], o[2][k], o[3][k], o[4][k]];
                    for (w, h) in want.iter().zip(&got) {
                        assert_eq!(w.to_bits(), h.to_bits(), "{simd:?} cell {k}: {w} vs {h}");
                    }
                }
                assert_eq!(fin, fin0);
            }
        }
    }

    /// The lockstep row convergence (baseline and AVX2 copies) equals `cell_current` cell by
    /// cell: same cells settled, same currents and internal nodes bit for bit.
    #[test]
    fn converge_row_equals_cell_current() {
        let mut settled = 0;
        let mut unsettled = 0;
        for simd in levels() {
            let mut s = ConvergeScratch::default();
            for (mos, vg, cells) in rows(7) {
                let n = cells.len();
                let col = |q: usize| cells.iter().map(|c| c[q]).collect::<Vec<f64>>();
                let (g, vw, vb) = (col(0), col(1), col(2));
                let mut vm = col(3);
                let mut i = vec![f64::NAN; n];
                let mut ok = vec![false; n];
                converge_row(
                    simd, &mos, vg, &g, &vw, &vb, &mut vm, &mut i, &mut ok, &mut s,
                );
                for k in 0..n {
                    let mut m = cells[k][3];
                    match mos.cell_current(g[k], vw[k], vb[k], vg, &mut m) {
                        Some(want) => {
                            settled += 1;
                            assert!(ok[k], "{simd:?} cell {k} did not settle");
                            assert_eq!(want.to_bits(), i[k].to_bits(), "{want} vs {}", i[k]);
                            assert_eq!(m.to_bits(), vm[k].to_bits());
                        }
                        None => {
                            unsettled += 1;
                            assert!(!ok[k], "{simd:?} cell {k} settled, cell_current did not");
                            assert_eq!(vm[k].to_bits(), cells[k][3].to_bits());
                            assert!(i[k].is_nan());
                        }
                    }
                }
            }
        }
        // both outcomes occur in the sample (the test covers the fallback branch too)
        assert!(settled > 1000 && unsettled > 0, "{settled} / {unsettled}");
    }
}
