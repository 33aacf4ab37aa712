//! tikv-health-exporter: a Prometheus exporter and alert sidecar for TiKV clusters.
//!
//! Data flows one way: log lines → [`logs::parse`] → [`logs::events`] → [`logs::ingest`]
//! (counters and history), fed by sources such as [`logs::file`]. The [`cli`] module wires the
//! command line onto these layers.

pub mod app;
pub mod cli;
pub mod config;
pub mod demo;
pub mod exposition;
pub mod invariants;
pub mod log;
pub mod logs;
pub mod observations;
pub mod sources;
pub mod state;
pub mod watch;
