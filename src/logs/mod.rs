//! The log half of the exporter: log lines → parser → events → counters and history.
//!
//! Lines come from log sources, each started with a [`source::SourceContext`]:
//! `file_source` follows files (`file` reads them, `rotated` names their rotated copies,
//! `file_watch` wakes it on changes), `docker`
//! follows containers. Container-runtime timestamp prefixes are read by `timestamp` alone; `cri`
//! joins Kubernetes CRI records split into pieces.

pub mod batch;
pub mod cri;
pub(crate) mod docker;
pub mod events;
pub mod file;
pub(crate) mod file_source;
pub(crate) mod file_watch;
pub(crate) mod glob;
pub(crate) mod glob_source;
pub mod ingest;
pub mod parse;
pub(crate) mod pod_path;
pub mod reader;
pub(crate) mod rotated;
pub mod source;
pub(crate) mod timestamp;
