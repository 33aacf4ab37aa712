//! tikv-health-exporter: a Prometheus exporter and alert sidecar for TiKV clusters.
//!
//! Data flows one way: log lines → [`logs::parse`] → [`logs::events`] → [`logs::ingest`]
//! (counters and history), fed by sources such as [`logs::file`]. The [`cli`] module wires the
//! command line onto these layers.

pub mod cli;
pub mod logs;
