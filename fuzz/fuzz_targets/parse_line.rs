//! Fuzzes the unified-log parser, the classifier and the line reader with one input.
//!
//! The checks live in `fuzz/exercise.rs`, shared with `tests/fuzz_corpus.rs`, which replays the
//! corpus in the normal test suite.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../exercise.rs"]
mod exercise;

fuzz_target!(|data: &[u8]| exercise::exercise(data));
