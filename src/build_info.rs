//! This binary's identity, fixed at build time by `build.rs`: version, git revision, rustc
//! version and target (shown by `--version` and exported as `tikv_health_exporter_build_info`).

/// The crate version.
pub const PKG_VERSION: &str = env!("CARGO_PKG_VERSION");
/// The git revision built (`GIT_REVISION` at build time, else the checkout's HEAD, else
/// `unknown`).
pub const REVISION: &str = env!("BUILD_GIT_REVISION");
/// `rustc --version` of the compiler that built this binary.
pub const RUSTC_VERSION: &str = env!("BUILD_RUSTC_VERSION");
/// The target triple built for.
pub const TARGET: &str = env!("BUILD_TARGET");

/// `-V`: version and revision.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (revision: ",
    env!("BUILD_GIT_REVISION"),
    ")"
);

/// `--version`: version, revision, compiler and target, one per line.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    "\n  revision: ",
    env!("BUILD_GIT_REVISION"),
    "\n  rustc version: ",
    env!("BUILD_RUSTC_VERSION"),
    "\n  target: ",
    env!("BUILD_TARGET")
);
