//! Health invariants: the catalog of built-ins, their evaluators, the configured definitions
//! (what is checked, from which observations), the engine (grace periods, hysteresis, unknown
//! handling) and its persistence.

pub mod catalog;
pub mod definitions;
pub mod engine;
pub mod evaluate;
pub mod queries;
pub mod state_file;
