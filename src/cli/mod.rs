//! Command implementations: thin argument structs (clap) and a `run` per command; the work
//! lives in the library modules.
pub mod compile;
pub mod data;
pub mod eval;
pub mod program;
pub mod reproduce;
pub mod solve;
pub mod sweep;
pub mod train;
pub mod xbar;
pub mod xbar_write;

/// Default SIGPIPE disposition, so that writing into a closed pipe ends the process quietly (as
/// `cat` or `grep` do) instead of an EPIPE error or a panic in `println!`.
pub fn restore_sigpipe() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: resetting a signal's disposition to its default is async-signal-safe and happens
    // before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// An error and its causes joined by `: `, skipping a cause whose text the message above it
/// already contains (a `#[error("…: {0}")]` wrapper over its `#[source]` would otherwise print
/// the cause twice: `X: X`).
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        let t = c.to_string();
        if !out.contains(&t) {
            out.push_str(": ");
            out.push_str(&t);
        }
        cur = c.source();
    }
    out
}

/// Write to stdout through a closure; a write error (a full disk, a closed descriptor) becomes
/// an error the command returns, never a panic as in `println!`.
pub fn with_stdout(
    f: impl FnOnce(&mut dyn std::io::Write) -> std::io::Result<()>,
) -> std::io::Result<()> {
    use std::io::Write;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    f(&mut out)?;
    out.flush()
}
