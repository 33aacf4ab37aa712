//! Clients for the systems the exporter observes (PD, Prometheus), on one HTTP layer (`http`).

pub(crate) mod http;
pub mod pd;
pub mod prometheus;
