//! Build identity for `--version` and `tikv_health_exporter_build_info`: the git revision (the
//! `GIT_REVISION` environment variable if set, as in the Dockerfile's build argument, else
//! `git rev-parse HEAD` of the checkout, else `unknown`), the rustc version and the target.

use std::process::Command;

fn output(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    let s = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (out.status.success() && !s.is_empty()).then_some(s)
}

fn main() {
    println!("cargo:rerun-if-env-changed=GIT_REVISION");
    let from_env = std::env::var("GIT_REVISION")
        .ok()
        .map(|r| r.trim().to_owned())
        .filter(|r| !r.is_empty() && r != "unknown");
    let revision = from_env.or_else(|| {
        // Rebuild when HEAD moves: HEAD itself (a branch switch), the branch's ref and
        // packed-refs (a commit). `--git-path` resolves them in worktrees too. Only paths that
        // exist are named: cargo reruns a build script on every build while a path it names
        // is missing. A branch ref not yet written as a file (a fresh clone keeps it in
        // packed-refs) is watched through its folder, where the next commit writes it.
        // (packed-refs, when missing, is not: its folder is the whole git directory.)
        let watch = |path: &str, or_folder: bool| {
            let Some(p) = output("git", &["rev-parse", "--git-path", path]) else {
                return;
            };
            let p = std::path::PathBuf::from(p);
            let existing = if p.exists() {
                Some(p.as_path())
            } else if or_folder {
                p.parent().filter(|f| f.exists())
            } else {
                None
            };
            if let Some(e) = existing {
                println!("cargo:rerun-if-changed={}", e.display());
            }
        };
        watch("HEAD", false);
        watch("packed-refs", false);
        if let Some(branch) = output("git", &["symbolic-ref", "-q", "HEAD"]) {
            watch(&branch, true);
        }
        output("git", &["rev-parse", "HEAD"])
    });
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let rustc_version = output(&rustc, &["--version"]).unwrap_or_else(|| "unknown".to_owned());
    println!(
        "cargo:rustc-env=BUILD_GIT_REVISION={}",
        revision.as_deref().unwrap_or("unknown")
    );
    println!("cargo:rustc-env=BUILD_RUSTC_VERSION={rustc_version}");
    println!(
        "cargo:rustc-env=BUILD_TARGET={}",
        std::env::var("TARGET").unwrap_or_default()
    );
    println!("cargo:rerun-if-changed=build.rs");
}
