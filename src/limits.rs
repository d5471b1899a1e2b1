//! The memory budget: every command estimates what a request needs before it takes the memory,
//! and refuses with an error naming the quantity and the limit when the estimate exceeds it.
//!
//! The limit is, in order: the value set with [`set_max_memory`] (the CLI's global
//! `--max-memory`), the environment variable `NETC_MAX_MEMORY`, or the memory the kernel reports
//! as available (`MemAvailable` in `/proc/meminfo`, lowered to the process's address-space limit
//! when that is smaller), or 4 GiB where neither is known. Estimates are deliberately simple
//! (the dominant buffers of a request, in bytes); they exist to turn "killed at 4 GiB" or
//! "memory allocation of … bytes failed" into a located error, not to account for every byte.

use std::sync::atomic::{AtomicU64, Ordering};

/// Default when the system tells nothing (not Linux, no /proc).
const FALLBACK_BYTES: u64 = 4 << 30;

/// 0 = not set.
static OVERRIDE_BYTES: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// A limit for this thread only (0 = not set): see [`with_max_memory`].
    static THREAD_BYTES: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Run `f` with a limit that holds on this thread only (tests and fuzzing share a process
/// with other work; checks made on other threads keep the process-wide limit).
pub fn with_max_memory<T>(bytes: u64, f: impl FnOnce() -> T) -> T {
    let old = THREAD_BYTES.with(|c| c.replace(bytes));
    struct Restore(u64);
    impl Drop for Restore {
        fn drop(&mut self) {
            THREAD_BYTES.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(old);
    f()
}

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LimitError {
    #[error(
        "{what} needs about {} but the memory limit is {} ({source_of_limit}); \
         use a smaller size or raise it with --max-memory",
        human(*need_bytes),
        human(*limit_bytes)
    )]
    TooLarge {
        what: String,
        need_bytes: u128,
        limit_bytes: u64,
        source_of_limit: &'static str,
    },
    #[error("invalid memory size {0:?} (e.g. 512M, 8G, 1.5T or a number of bytes)")]
    BadSize(String),
}

/// Bytes as `1.5 GiB`.
pub fn human(bytes: impl Into<u128>) -> String {
    let b = bytes.into() as f64;
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = b;
    let mut u = 0;
    while v >= 1024.0 && u + 1 < UNITS.len() {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{b} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

/// Parse `512M`, `8G`, `8GiB`, `1.5T`, `4096` (bytes); binary multiples.
pub fn parse_size(text: &str) -> Result<u64, LimitError> {
    let bad = || LimitError::BadSize(text.to_string());
    let t = text.trim();
    let split = t
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let v: f64 = num.parse().map_err(|_| bad())?;
    let mult: f64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1.0,
        "k" | "kb" | "kib" => 1024.0,
        "m" | "mb" | "mib" => 1024f64.powi(2),
        "g" | "gb" | "gib" => 1024f64.powi(3),
        "t" | "tb" | "tib" => 1024f64.powi(4),
        _ => return Err(bad()),
    };
    let bytes = v * mult;
    if !(bytes.is_finite() && bytes >= 1.0 && bytes < u64::MAX as f64) {
        return Err(bad());
    }
    Ok(bytes as u64)
}

/// Set the limit for this process (the CLI's `--max-memory`).
pub fn set_max_memory(bytes: u64) {
    OVERRIDE_BYTES.store(bytes, Ordering::Relaxed);
}

/// The limit in bytes and where it comes from.
pub fn max_memory() -> (u64, &'static str) {
    let t = THREAD_BYTES.with(|c| c.get());
    if t > 0 {
        return (t, "this thread's limit");
    }
    let o = OVERRIDE_BYTES.load(Ordering::Relaxed);
    if o > 0 {
        return (o, "--max-memory");
    }
    if let Some(b) = std::env::var("NETC_MAX_MEMORY")
        .ok()
        .and_then(|s| parse_size(&s).ok())
    {
        return (b, "NETC_MAX_MEMORY");
    }
    let avail = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| meminfo_available(&s));
    let as_limit = address_space_limit();
    match (avail, as_limit) {
        (Some(a), Some(l)) if l < a => (l, "the process's address-space limit"),
        (Some(a), _) => (a, "available memory"),
        (None, Some(l)) => (l, "the process's address-space limit"),
        (None, None) => (FALLBACK_BYTES, "default"),
    }
}

/// `MemAvailable` (kB) from the text of /proc/meminfo, in bytes.
fn meminfo_available(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    kb.checked_mul(1024)
}

/// RLIMIT_AS when finite (a `prlimit --as` or `ulimit -v` cap).
fn address_space_limit() -> Option<u64> {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the rlimit struct we own; the resource id is valid.
        let ok = unsafe { libc::getrlimit(libc::RLIMIT_AS, &mut r) } == 0;
        if ok && r.rlim_cur != libc::RLIM_INFINITY {
            return Some(r.rlim_cur);
        }
        None
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        None
    }
}

/// Refuse `what` when `need_bytes` exceeds the limit.
pub fn check(what: impl FnOnce() -> String, need_bytes: u128) -> Result<(), LimitError> {
    let (limit_bytes, source_of_limit) = max_memory();
    if need_bytes > limit_bytes as u128 {
        return Err(LimitError::TooLarge {
            what: what(),
            need_bytes,
            limit_bytes,
            source_of_limit,
        });
    }
    Ok(())
}

/// Bytes of `n` values of `elem_bytes` each, saturating (an estimate, never an overflow).
pub fn bytes_of(n: u128, elem_bytes: u128) -> u128 {
    n.saturating_mul(elem_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_as_binary_multiples() {
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert_eq!(parse_size("512M").unwrap(), 512 << 20);
        assert_eq!(parse_size("8GiB").unwrap(), 8 << 30);
        assert_eq!(parse_size("1.5k").unwrap(), 1536);
        assert!(parse_size("-1G").is_err());
        assert!(parse_size("lots").is_err());
        assert!(parse_size("0").is_err());
    }

    #[test]
    fn meminfo_reads_mem_available() {
        let t = "MemTotal: 100 kB\nMemFree: 10 kB\nMemAvailable:   2048 kB\n";
        assert_eq!(meminfo_available(t), Some(2048 * 1024));
        assert_eq!(meminfo_available("MemTotal: 1 kB\n"), None);
    }

    #[test]
    fn check_names_quantity_and_limit() {
        let e = check(|| "a 2x2 thing".into(), u128::MAX).unwrap_err();
        let s = e.to_string();
        assert!(s.starts_with("a 2x2 thing needs about"), "{s}");
        assert!(s.contains("memory limit"), "{s}");
        check(|| unreachable!(), 1).unwrap();
        let e = with_max_memory(1000, || check(|| "x".into(), 1001)).unwrap_err();
        assert!(
            e.to_string().contains("1000 B (this thread's limit)"),
            "{e}"
        );
        check(|| unreachable!(), 1001).unwrap();
    }
}
