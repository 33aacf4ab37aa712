//! Clients for the systems the exporter observes (PD, Prometheus).

pub mod pd;
pub mod prometheus;
