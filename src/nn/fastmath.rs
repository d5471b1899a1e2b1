//! Fast elementwise math for the trainer: the cleanup of the vector register state that the
//! product kernels leave behind (see [`clear_upper_vector_state`]).
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
