//! Shared helpers for integration tests (each test binary uses what it needs).

#![allow(dead_code)]

pub mod alertmanager;
pub mod cmd;
pub mod delay_proxy;
pub mod docker;
pub mod exporter;
pub mod fake_pd;
pub mod fake_tikv;
pub mod http;
pub mod https;
pub mod kubelet;
pub mod listen;
pub mod load;
pub mod prometheus;
pub mod tikv_fleet;
pub mod wait;
