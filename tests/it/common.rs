//! Helpers shared by the end-to-end CLI tests.

use std::process::Command;

/// Run the `netc` binary; returns (success, stdout, stderr).
pub fn netc(args: &[&str]) -> (bool, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_netc"))
        .args(args)
        .output()
        .expect("run netc");
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}
