//! tikv-health-exporter: a Prometheus exporter and alert sidecar for TiKV clusters.
//!
//! Two pipelines, each flowing one way (`ARCHITECTURE.md` draws them with every module):
//!
//! - **Cluster health**: [`sources`] (PD and Prometheus clients) → [`observations`] (what
//!   one poll saw) → [`invariants`] (the catalog of built-ins, their evaluators, the engine
//!   with grace periods and `unknown`, the state file) → [`snapshot`] (what the last poll
//!   published) → [`exposition`] (the metric contract and the HTTP endpoints). The poller
//!   runs one round of this every poll interval; the [`notifier`] takes each snapshot and
//!   sends its firing invariants straight to Alertmanager, when configured.
//! - **Logs**: log lines from the sources in [`logs`] (files, Docker containers) →
//!   [`logs::parse`] (the TiDB unified log format) → [`logs::events`] (leadership events) →
//!   [`logs::ingest`] (per-source counters and the bounded event history) → [`exposition`].
//!
//! [`domain`] is the vocabulary every layer shares; [`config`] is the configuration they are
//! built from; [`cli`] is the command line, which wires everything together; [`web_config`]
//! is `--web.config.file` (TLS, client certificates, basic auth) around every endpoint.

#![deny(missing_docs)]

pub(crate) mod app;
pub mod build_info;
pub mod cli;
pub(crate) mod clock;
pub mod config;
pub(crate) mod demo;
pub mod domain;
pub mod exposition;
pub mod http_server;
pub mod invariants;
pub mod log;
pub mod logs;
pub mod notifier;
pub mod observations;
pub(crate) mod pd_coverage;
pub(crate) mod poller;
pub mod snapshot;
pub mod sources;
pub(crate) mod tls_verify;
pub(crate) mod transitions;
pub mod web_config;
