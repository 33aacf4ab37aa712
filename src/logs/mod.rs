//! The log half of the exporter: log lines → parser → events → counters and history.

pub mod batch;
pub(crate) mod docker;
pub mod events;
pub mod file;
pub mod file_source;
pub mod ingest;
pub mod parse;
pub mod reader;
pub mod source;
pub(crate) mod timestamp;
