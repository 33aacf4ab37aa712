//! Running a tool from a test in the crate root: its output shown when it fails.

use std::path::Path;
use std::process::{Command, Output, Stdio};

/// The status, stdout and stderr of a finished command, for failure messages.
pub fn show(out: &Output) -> String {
    format!(
        "status: {}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `cmd` in the crate root with no stdin; panics (naming `what`) if it cannot start.
pub fn run(mut cmd: Command, what: &str) -> Output {
    cmd.current_dir(Path::new(env!("CARGO_MANIFEST_DIR")))
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "{what}: cannot run {cmd:?}: {e} (scripts/test-all.sh installs what the tests need)"
            )
        })
}

/// [`run`], asserting that it succeeded.
pub fn run_ok(cmd: Command, what: &str) -> Output {
    let out = run(cmd, what);
    assert!(out.status.success(), "{what} failed\n{}", show(&out));
    out
}
