//! Fast elementwise math shared by the trainer and the crossbar kernels: the cleanup of the
//! vector register state that the product kernels leave behind ([`clear_upper_vector_state`]),
//! and branch-free, vectorisable `exp` (whole range, and [`exp_normal`] for arguments whose
//! result is a normal number: the 1T1R junction of `xbar::kernel`), `tanh` and logistic sigmoid
//! with slice forms (ConvLSTM gates).
//!
//! # Why the gate nonlinearities cost ~200 ns per call
//! faer's x86-64 matrix kernels (`private-gemm-x86`) are hand-written AVX-512 microkernels entered
//! through inline `asm!("call …")`; they return with the upper halves of the `zmm` registers
//! dirty and without a `vzeroupper` (the compiler inserts none after inline assembly). glibc's
//! `tanh` and the `exp` wrapper are legacy-SSE code that call VEX-encoded `__expm1_fma` /
//! `__ieee754_exp_fma`: with the upper state dirty, every switch between the two encodings pays
//! the SSE/AVX transition penalty. `perf annotate` of `netc train --preset s2` (release) put
//! 76–97 % of the samples of each of these four libm functions on the first instruction after
//! such a switch; one `vzeroupper` after the products made S2's epoch 3–6× faster with
//! bit-identical results.

/// Zero the upper halves of the vector registers (`vzeroupper`) when the CPU has AVX: call it after
/// foreign SIMD code (faer's kernels) and before scalar libm calls on the same thread.
#[inline]
pub fn clear_upper_vector_state() {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx") {
            // SAFETY: AVX is present (checked just above), so `vzeroupper` is a valid instruction;
            // it only zeroes bits 128 and up of ymm/zmm 0–15, which hold no live value of this
            // (non-AVX) code between statements — the compiler models the intrinsic as clobbering them.
            unsafe { std::arch::x86_64::_mm256_zeroupper() };
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Branch-free exp, expm1-based tanh and the logistic sigmoid in f64.
//
// `exp`: `x = n·ln2 + r` (Cody–Waite: `ln2` split in a high part with 21 trailing zero bits, so
// `n·LN2_HI` is exact), `|r| ≤ ln2/2`, `exp(r)` by its Taylor polynomial to degree 13 (truncation
// < 0.05 ulp), then `2ⁿ` applied as two power-of-two factors so that overflow gives `+∞` and the
// subnormal range rounds once. Only `+ − × ÷`, comparisons and integer bit operations: no
// branches, no calls, so loops over slices vectorise (SSE2 pairs on the baseline target), and
// the result does not depend on the CPU. Against `f64::exp` / `f64::tanh` (glibc) the largest
// differences found by the tests are stated there (≤ 4 ulp asserted over the whole range,
// including ±0, subnormals, overflow, ±∞ and NaN).
// ---------------------------------------------------------------------------------------------

const LOG2E: f64 = std::f64::consts::LOG2_E;
/// High part of ln 2 (fdlibm's `ln2_hi`, 0x3fe62e42fee00000: its low 21 bits are zero).
const LN2_HI: f64 = f64::from_bits(0x3fe6_2e42_fee0_0000);
/// `ln 2 − LN2_HI` (fdlibm's `ln2_lo`, 1.9082149292705877e-10).
const LN2_LO: f64 = f64::from_bits(0x3dea_39ef_3579_3c76);
/// `1.5·2⁵²`: adding it rounds a value of magnitude < 2⁵¹ to an integer held in the low bits.
const SHIFT: f64 = 6_755_399_441_055_744.0;

/// `1/k!` for k = 13 down to 2 (Horner order).
const INV_FACT: [f64; 12] = [
    1.0 / 6_227_020_800.0,
    1.0 / 479_001_600.0,
    1.0 / 39_916_800.0,
    1.0 / 3_628_800.0,
    1.0 / 362_880.0,
    1.0 / 40_320.0,
    1.0 / 5_040.0,
    1.0 / 720.0,
    1.0 / 120.0,
    1.0 / 24.0,
    1.0 / 6.0,
    1.0 / 2.0,
];

/// `(n, r)` with `x = n·ln2 + r`, `|r| ≤ ln2/2 (+ rounding)`, `n` as an integer and as a float;
/// `|x|` must be below ~2⁵⁰ (callers clamp).
#[inline(always)]
fn reduce(x: f64) -> (i64, f64, f64) {
    let t = x * LOG2E + SHIFT;
    let nf = t - SHIFT;
    let n = (t.to_bits() as i64).wrapping_sub(SHIFT.to_bits() as i64);
    let r = (x - nf * LN2_HI) - nf * LN2_LO;
    (n, nf, r)
}

/// `expm1(r) / r`'s Horner tail: returns `q` with `expm1(r) = r·q` (`q = 1 + r/2 + r²/6 + …`).
#[inline(always)]
fn expm1_over_r(r: f64) -> f64 {
    let mut q = INV_FACT[0];
    for c in &INV_FACT[1..] {
        q = q * r + c;
    }
    q * r + 1.0
}

/// `2ⁿ` for `n` in [−1022, 1023].
#[inline(always)]
fn pow2(n: i64) -> f64 {
    // wrapping: a NaN argument gives a garbage `n`, and a NaN result whatever it is
    f64::from_bits((n.wrapping_add(1023) as u64) << 52)
}

/// `eˣ` (see the module notes for the accuracy).
#[inline(always)]
pub fn exp(x: f64) -> f64 {
    // beyond these the result is +∞ or 0 anyway; NaN stays NaN (comparisons are false)
    let xc = x.clamp(-746.0, 710.0);
    let (n, _, r) = reduce(xc);
    let p = r * expm1_over_r(r) + 1.0;
    // n in [−1077, 1025]: two factors 2^n1·2^n2, each a normal number
    let n1 = ((n.wrapping_add(2048) as u64) >> 1) as i64 - 1024;
    let n2 = n.wrapping_sub(n1);
    p * pow2(n1) * pow2(n2)
}

/// `eˣ` for `x ∈ [−708, 709]` (the result a normal number): [`exp`] without its clamp and its
/// split of `2ⁿ` into two factors — one multiplication less on the hot path of the 1T1R cell
/// kernel, the same value there. Outside that range the result is wrong (no clamp).
#[inline(always)]
pub fn exp_normal(x: f64) -> f64 {
    let (n, _, r) = reduce(x);
    (r * expm1_over_r(r) + 1.0) * pow2(n)
}

/// `tanh x = expm1(2|x|) / (expm1(2|x|) + 2)` with the sign of `x`; `|x| ≥ 20` gives ±1 exactly
/// (as the rounded true value).
#[inline(always)]
pub fn tanh(x: f64) -> f64 {
    let a = x.abs();
    let a = if a > 20.0 { 20.0 } else { a };
    let y = a + a;
    let (n, _, r) = reduce(y);
    // expm1(y) = 2ⁿ·expm1(r) + (2ⁿ − 1), n in [0, 58]
    let s = pow2(n);
    let e = s * (r * expm1_over_r(r)) + (s - 1.0);
    (e / (e + 2.0)).copysign(x)
}

/// Logistic sigmoid `1 / (1 + e^{−x})` (the same formula as `layers::sigmoid`, with [`exp`]).
#[inline(always)]
pub fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + exp(-x))
}

/// [`sigmoid`] of every element, in place.
pub fn sigmoid_in_place(v: &mut [f64]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is present (checked just above).
        return unsafe { avx2::sigmoid_in_place(v) };
    }
    generic::sigmoid_in_place(v)
}

/// [`tanh`] of every element, in place.
pub fn tanh_in_place(v: &mut [f64]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is present (checked just above).
        return unsafe { avx2::tanh_in_place(v) };
    }
    generic::tanh_in_place(v)
}

/// `out[k] = tanh(src[k])` (the shorter slice bounds the loop).
pub fn tanh_into(src: &[f64], out: &mut [f64]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: AVX2 is present (checked just above).
        return unsafe { avx2::tanh_into(src, out) };
    }
    generic::tanh_into(src, out)
}

/// The slice loops, instantiated for the baseline target and (x86-64) for AVX2: the same
/// IEEE operations in the same order (no FMA contraction), so both give bit-identical results;
/// AVX2 only widens the vectors from 2 to 4 lanes.
macro_rules! slice_loops {
    ($($attr:meta)?; $($kw:tt)?) => {
        $(#[$attr])?
        pub(super) $($kw)? fn sigmoid_in_place(v: &mut [f64]) {
            for x in v {
                *x = super::sigmoid(*x);
            }
        }
        $(#[$attr])?
        pub(super) $($kw)? fn tanh_in_place(v: &mut [f64]) {
            for x in v {
                *x = super::tanh(*x);
            }
        }
        $(#[$attr])?
        pub(super) $($kw)? fn tanh_into(src: &[f64], out: &mut [f64]) {
            for (o, &x) in out.iter_mut().zip(src) {
                *o = super::tanh(x);
            }
        }
    };
}

mod generic {
    slice_loops!(;);
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    // callers check `is_x86_feature_detected!("avx2")` first
    slice_loops!(target_feature(enable = "avx2"); unsafe);
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// [`exp_normal`] against libm's over the 1T1R junction's range (`xbar::kernel`; random and
    /// edge points): within 4 ulp.
    #[test]
    fn exp_normal_equals_libm_over_the_junction_range() {
        let mut rng = ChaCha8Rng::seed_from_u64(17);
        let mut xs: Vec<f64> = (0..200_000).map(|_| rng.gen_range(-3.0..3.0)).collect();
        xs.extend((0..50_000).map(|_| rng.gen_range(-700.0..709.0)));
        xs.extend([
            -700.0,
            -3.0,
            -1e-300,
            0.0,
            1e-300,
            0.5 * std::f64::consts::LN_2,
            1.0,
            709.0,
        ]);
        for x in xs {
            let (a, b) = (exp_normal(x), x.exp());
            assert!(
                (a - b).abs() <= 4.0 * f64::EPSILON * b,
                "exp({x}): {a} vs {b}"
            );
        }
    }

    /// Distance in units in the last place (0 for equal values incl. both NaN or ±0 pairs).
    fn ulps(a: f64, b: f64) -> u64 {
        if a.is_nan() || b.is_nan() {
            return if a.is_nan() && b.is_nan() {
                0
            } else {
                u64::MAX
            };
        }
        if a == b {
            return 0;
        }
        // map the bit patterns onto a monotonic integer line
        let key = |v: f64| {
            let b = v.to_bits() as i64;
            if b < 0 {
                i64::MIN - b
            } else {
                b
            }
        };
        key(a).abs_diff(key(b))
    }

    /// Test points: special values, ±powers of two over the whole exponent range, their
    /// neighbours, and random values (uniform on [−800, 800] and log-uniform magnitudes).
    fn points() -> Vec<f64> {
        let mut v = vec![
            0.0,
            -0.0,
            f64::INFINITY,
            f64::NEG_INFINITY,
            f64::NAN,
            f64::MIN_POSITIVE,
            -f64::MIN_POSITIVE,
            5e-324,
            -5e-324,
            f64::MAX,
            f64::MIN,
            709.782712893384,
            709.7827128933841,
            -708.3964185322641,
            -745.1332191019411,
            -745.1332191019412,
            19.0,
            20.0,
            22.0,
            0.5 * std::f64::consts::LN_2,
        ];
        for e in -1074..1024 {
            let p = 2f64.powi(e);
            for x in [p, p.next_up(), p.next_down()] {
                v.push(x);
                v.push(-x);
            }
        }
        let mut rng = ChaCha8Rng::seed_from_u64(16);
        for _ in 0..200_000 {
            v.push(rng.gen_range(-800.0..800.0));
            v.push(rng.gen_range(-40.0..40.0));
            let m = 10f64.powf(rng.gen_range(-320.0..3.0));
            v.push(if rng.gen() { m } else { -m });
        }
        v
    }

    fn worst(f: impl Fn(f64) -> f64, reference: impl Fn(f64) -> f64) -> (u64, f64) {
        points()
            .into_iter()
            .map(|x| (ulps(f(x), reference(x)), x))
            .max_by_key(|&(u, _)| u)
            .unwrap()
    }

    #[test]
    fn exp_within_4_ulp_of_std_over_the_whole_range() {
        let (u, x) = worst(exp, f64::exp);
        eprintln!("exp: worst {u} ulp at x = {x:e}");
        assert!(u <= 4, "exp({x:e}) is {u} ulp from f64::exp");
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(f64::INFINITY), f64::INFINITY);
        assert_eq!(exp(f64::NEG_INFINITY), 0.0);
        assert_eq!(exp(710.0), f64::INFINITY);
        assert!(exp(f64::NAN).is_nan());
        assert!(exp(-740.0) > 0.0 && exp(-740.0) < f64::MIN_POSITIVE);
    }

    #[test]
    fn tanh_within_4_ulp_of_std_over_the_whole_range() {
        let (u, x) = worst(tanh, f64::tanh);
        eprintln!("tanh: worst {u} ulp at x = {x:e}");
        assert!(u <= 4, "tanh({x:e}) is {u} ulp from f64::tanh");
        assert_eq!(tanh(f64::INFINITY), 1.0);
        assert_eq!(tanh(f64::NEG_INFINITY), -1.0);
        assert_eq!(tanh(-0.0).to_bits(), (-0.0f64).to_bits());
        assert_eq!(tanh(5e-324), 5e-324);
        assert!(tanh(f64::NAN).is_nan());
    }

    #[test]
    fn sigmoid_within_4_ulp_of_the_std_formula() {
        let (u, x) = worst(sigmoid, |x| 1.0 / (1.0 + (-x).exp()));
        eprintln!("sigmoid: worst {u} ulp at x = {x:e}");
        assert!(u <= 4, "sigmoid({x:e}) is {u} ulp from 1/(1+exp(-x))");
        assert_eq!(sigmoid(f64::INFINITY), 1.0);
        assert_eq!(sigmoid(f64::NEG_INFINITY), 0.0);
        assert_eq!(sigmoid(0.0), 0.5);
    }

    /// The dispatched slice loops (AVX2 on this machine if it has it) equal the scalar functions
    /// bit for bit.
    #[test]
    fn slice_forms_equal_the_scalar_ones() {
        let x: Vec<f64> = (0..1001).map(|k| (k as f64 - 500.0) * 0.037).collect();
        let mut s = x.clone();
        sigmoid_in_place(&mut s);
        let mut t = x.clone();
        tanh_in_place(&mut t);
        let mut u = vec![0.0; x.len()];
        tanh_into(&x, &mut u);
        for k in 0..x.len() {
            assert_eq!(s[k].to_bits(), sigmoid(x[k]).to_bits());
            assert_eq!(t[k].to_bits(), tanh(x[k]).to_bits());
            assert_eq!(u[k].to_bits(), t[k].to_bits());
        }
    }
}
