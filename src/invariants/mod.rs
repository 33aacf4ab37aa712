//! Health invariants: definitions (what is checked, from which observations) and the engine
//! (grace periods, hysteresis, unknown handling, persistence).

pub mod definitions;
pub mod engine;
pub mod state_file;
