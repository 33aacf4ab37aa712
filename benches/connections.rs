//! Scrape latency of a fresh scraper while the exporter holds many idle and slowloris
//! connections: the real (release) binary against the fake PD (100 stores), clients from
//! `tests/support/load.rs`. Printed; recorded in BENCHMARKS.md.
//!
//! Scenarios: no load (the baseline); 2000 idle + 50 slowloris connections all held (the cap
//! and both timeouts raised above what the run needs, so none is closed); the same clients
//! against the default limits (cap 512, header timeout 10 s), reconnecting whenever closed.
//! The shell's `ulimit -n` must exceed 2200 (the exporter inherits it).

use std::time::{Duration, Instant};

#[path = "../tests/support/mod.rs"]
mod support;

use support::exporter::{Exporter, Launch, http_get, sample};
use support::fake_pd::{FakePd, cluster};
use support::load::{Load, LoadSpec, cpu_seconds};

const IDLE: usize = 2000;
const SLOWLORIS: usize = 50;
const SCRAPES_FOR: Duration = Duration::from_secs(20);

fn start(pd: &FakePd, dir: &tempfile::TempDir, yaml: &str) -> Exporter {
    let e = Exporter::with_config(&pd.url(), dir, yaml, Launch::default());
    e.wait_ready();
    e
}

fn gauge(m: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    sample(m, name, labels).unwrap_or(f64::NAN)
}

/// Scrapes `/metrics` on a fresh connection every 100 ms for [`SCRAPES_FOR`]; prints the
/// latency quantiles, the exporter's CPU and its connection gauges.
fn measure(what: &str, e: &Exporter) {
    let cpu0 = cpu_seconds(e.pid());
    let t0 = Instant::now();
    let mut took = Vec::new();
    let mut last = String::new();
    while t0.elapsed() < SCRAPES_FOR {
        let t = Instant::now();
        let (status, _, body) = http_get(e.addr(), "/metrics").expect("scrape answered");
        assert_eq!(status, 200);
        let dt = t.elapsed();
        took.push(dt);
        last = body;
        std::thread::sleep(Duration::from_millis(100).saturating_sub(dt));
    }
    let cpu = (cpu_seconds(e.pid()) - cpu0) / t0.elapsed().as_secs_f64();
    took.sort();
    let q = |p: f64| took[((took.len() as f64 * p) as usize).min(took.len() - 1)];
    let shed = |r| {
        gauge(
            &last,
            "tikv_health_exporter_http_connections_shed_total",
            &[("reason", r)],
        )
    };
    println!(
        "{what}: {} scrapes of {} bytes: p50 {:.2?}, p99 {:.2?}, max {:.2?}; exporter CPU {:.1} % of a core; open {}, shed header_timeout {} max_connections {} fd_limit {}",
        took.len(),
        last.len(),
        q(0.5),
        q(0.99),
        took[took.len() - 1],
        cpu * 100.0,
        gauge(&last, "tikv_health_exporter_http_connections_open", &[]),
        shed("header_timeout"),
        shed("max_connections"),
        shed("fd_limit"),
    );
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to filter here.
    let pd = FakePd::with_live_stores(&cluster(100));
    let dir = tempfile::tempdir().unwrap();

    let e = start(&pd, &dir, "");
    measure("no load", &e);
    drop(e);

    let held = format!(
        "web:\n  max_connections: {}\n  header_read_timeout: 10m\n  idle_timeout: 10m\n",
        IDLE + SLOWLORIS + 100
    );
    let e = start(&pd, &dir, &held);
    let load = Load::start(
        e.addr(),
        LoadSpec {
            idle: IDLE,
            slowloris: SLOWLORIS,
            ..LoadSpec::default()
        },
    );
    load.wait_started();
    support::wait::until("every connection accepted", support::wait::PATIENCE, || {
        let m = e.metrics();
        match gauge(&m, "tikv_health_exporter_http_connections_open", &[]) {
            n if n > (IDLE + SLOWLORIS) as f64 => Ok(()),
            n => Err(format!("open {n}")),
        }
    });
    measure(&format!("{IDLE} idle + {SLOWLORIS} slowloris held"), &e);
    drop(load);
    drop(e);

    let e = start(&pd, &dir, "");
    let load = Load::start(
        e.addr(),
        LoadSpec {
            idle: IDLE,
            slowloris: SLOWLORIS,
            reconnect: true,
            ..LoadSpec::default()
        },
    );
    load.wait_started();
    measure(
        &format!("{IDLE} idle + {SLOWLORIS} slowloris reconnecting, default limits"),
        &e,
    );
    println!(
        "  clients closed by the exporter meanwhile: idle {}, slowloris {}",
        load.idle.closed(),
        load.slowloris.closed()
    );
}
