//! Replays the `parse_line` fuzz corpus (`fuzz/corpus/parse_line/`) and the saved crash inputs
//! (`fuzz/regressions/`) through the fuzz target's checks, so CI covers them without cargo-fuzz
//! or a nightly toolchain.

#[path = "../fuzz/exercise.rs"]
mod exercise;

use std::fs;
use std::panic;
use std::path::{Path, PathBuf};

/// The regular files in `dir`, sorted; an empty list when the directory does not exist.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .map(|e| e.expect("readable directory entry").path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs every input and reports all failing ones at once.
fn replay(files: &[PathBuf]) {
    let mut failed = Vec::new();
    for path in files {
        let data = fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
        if panic::catch_unwind(|| exercise::exercise(&data)).is_err() {
            failed.push(path.display().to_string());
        }
    }
    assert!(
        failed.is_empty(),
        "{} of {} inputs failed:\n{}",
        failed.len(),
        files.len(),
        failed.join("\n")
    );
}

#[test]
fn corpus_replays_cleanly() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/parse_line");
    let files = inputs(&dir);
    assert!(!files.is_empty(), "no corpus in {}", dir.display());
    replay(&files);
}

#[test]
fn regressions_replay_cleanly() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    replay(&inputs(&dir));
}
