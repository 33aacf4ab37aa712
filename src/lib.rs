//! tikv-health-exporter: a Prometheus exporter and alert sidecar for TiKV clusters.
//!
//! Data flows one way: log lines → [`logs::parse`] → [`logs::events`] → [`logs::ingest`]
//! (counters and history), fed by sources such as [`logs::file`]. The [`cli`] module wires the
//! command line onto these layers.

pub mod app;
pub mod cli;
pub mod clock;
pub mod config;
pub mod demo;
pub mod domain;
pub mod exposition;
pub mod http_server;
pub mod invariants;
pub mod log;
pub mod logs;
pub mod observations;
pub mod poller;
pub mod snapshot;
pub mod sources;
