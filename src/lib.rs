//! netc — circuit-level simulator and compiler for memristor crossbar neural networks.
pub mod atomic;
pub mod circuit;
pub mod cli;
pub mod data;
pub mod device;
pub mod expr;
pub mod fastmath;
pub mod insitu;
pub mod limits;
pub mod mapping;
pub mod net;
pub mod netlist;
pub mod nn;
pub mod peers;
pub mod reproduce;
pub mod solver;
pub mod span;
pub mod spice;
pub mod sweep;
pub mod xbar;

/// Memory the process frees is kept for reuse instead of returned to the kernel at once.
///
/// Solving builds and drops many arrays of a few hundred kB to a few MB (networks, plans, factors,
/// output batches). glibc serves allocations above its mmap threshold (128 kB at start, adapting
/// upwards) with fresh mappings and gives them back on free, and trims the heap top beyond twice
/// that; every reuse then faults in zeroed pages again, which on a virtual machine costs about a
/// microsecond per 4 kB page and spreads timings by milliseconds. This sets the mmap threshold to
/// 32 MiB (glibc's own upper bound for its adaptive threshold) and the trim threshold to 512 MiB,
/// so freed memory up to that size stays with the process. The netc binary and the benchmarks
/// call it first thing; library users may. Only on glibc; elsewhere it does nothing. Returns
/// whether the allocator accepted both settings.
pub fn retain_freed_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const MMAP_THRESHOLD_BYTES: libc::c_int = 32 << 20;
        const TRIM_THRESHOLD_BYTES: libc::c_int = 512 << 20;
        // SAFETY: mallopt only changes allocator parameters; it is called with valid options.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}
