//! Exposition: the metric contract and the HTTP server that serves it.

pub mod http;
pub mod metrics;
