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

/// A read-noise stream for the forward contexts of backends without devices (nothing is drawn).
pub fn quiet_rng() -> rand_chacha::ChaCha8Rng {
    <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0)
}

/// A test-pass forward context on [`quiet_rng`]'s stream, for `&mut test_ctx!()` arguments.
macro_rules! test_ctx {
    () => {
        netc::nn::backend::ForwardCtx::new(
            &mut $crate::common::quiet_rng(),
            netc::nn::backend::Pass::Test,
        )
    };
}
