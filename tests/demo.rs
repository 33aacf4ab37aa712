//! `demo`: the real exporter against the built-in simulated cluster shows pending → firing →
//! resolved within a minute, with the live status on stdout.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::exporter::{binary, http_get, inv, sample};
use support::http::free_port;

/// A named condition on the `/metrics` text.
type Check = Box<dyn Fn(&str) -> bool>;

struct Kill(std::process::Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `demo` with `extra` args on a free port; returns its address, a guard that kills it,
/// and its stdout lines as they arrive.
fn start_demo(extra: &[&str]) -> (std::net::SocketAddr, Kill, mpsc::Receiver<String>) {
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut child = Command::new(binary())
        .args(["demo", "--web.listen-address", &addr.to_string()])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (addr, Kill(child), rx)
}

#[test]
fn demo_goes_pending_firing_resolved_within_a_minute() {
    let (addr, _guard, rx) = start_demo(&[]);
    let start = Instant::now();
    let metrics = || http_get(addr, "/metrics").map(|r| r.2).unwrap_or_default();
    let disk = inv("disk_usage", "3", "warning");
    let mut seen = Vec::new();
    // (what, predicate on /metrics) in the order the scenario produces them.
    let steps: Vec<(&str, Check)> = vec![
        (
            "store_down firing",
            Box::new(|m: &str| {
                sample(
                    m,
                    "tikv_invariant_violation",
                    &inv("store_down", "2", "critical"),
                ) == Some(1.0)
            }),
        ),
        (
            "disk pending",
            Box::new(move |m: &str| sample(m, "tikv_invariant_pending", &disk) == Some(1.0)),
        ),
        (
            "disk firing",
            Box::new(move |m: &str| sample(m, "tikv_invariant_violation", &disk) == Some(1.0)),
        ),
        (
            "store_down resolved",
            Box::new(|m: &str| {
                sample(
                    m,
                    "tikv_invariant_violation",
                    &inv("store_down", "2", "critical"),
                ) == Some(0.0)
            }),
        ),
        (
            "leadership events counted",
            Box::new(|m: &str| {
                sample(
                    m,
                    "tikv_leadership_changes_total",
                    &[
                        ("source", "file:demo"),
                        ("store", ""),
                        ("event", "transfer_leader"),
                    ],
                )
                .is_some_and(|v| v >= 13.0)
            }),
        ),
        (
            "disk resolved",
            Box::new(move |m: &str| {
                sample(m, "tikv_invariant_violation", &disk) == Some(0.0)
                    && sample(m, "tikv_invariant_pending", &disk) == Some(0.0)
            }),
        ),
    ];
    for (what, pred) in steps {
        loop {
            if pred(&metrics()) {
                seen.push((what, start.elapsed()));
                break;
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{what} not seen within a minute; seen {seen:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let out: Vec<String> = rx.try_iter().collect();
    let text = out.join("\n");
    assert!(
        text.contains("scenario: store 2 stopped heartbeating"),
        "{text}"
    );
    assert!(text.contains("firing: store_down/2"), "{text}");
    assert!(
        text.contains("pending: disk_usage/3") || text.contains("pending: store_down"),
        "{text}"
    );
    assert!(text.contains("firing: store_down/2 disk_usage/3"), "{text}");
}

/// With a Prometheus, the demo serves per-store TiKV metrics (targets printed at start) and the
/// Prometheus-based invariants run on them: store 1's write p99 and CPU go high in the scenario.
#[test]
fn demo_with_prometheus_runs_the_prometheus_invariants() {
    use support::prometheus::{RealPrometheus, render_config};
    let prom = RealPrometheus::start(&[], Duration::from_secs(1));
    let (addr, _guard, rx) = start_demo(&["--prometheus.url", &prom.url()]);
    // "Prometheus must scrape the simulated TiKVs: ... targets: ['127.0.0.1:P1', ...]"
    let deadline = Instant::now() + Duration::from_secs(15);
    let targets: Vec<std::net::SocketAddr> = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(15))
            .expect("demo printed its targets");
        if let Some(rest) = line.split("targets: [").nth(1) {
            break rest
                .trim_end_matches("]}]")
                .split(", ")
                .map(|t| t.trim_matches('\'').parse().unwrap())
                .collect();
        }
        assert!(Instant::now() < deadline, "no targets line");
    };
    assert_eq!(targets.len(), 3);
    std::fs::write(
        prom.dir().join("prometheus.yml"),
        render_config(&[("tikv", targets)], Duration::from_secs(1), &[]),
    )
    .unwrap();
    prom.reload();
    let metrics = || http_get(addr, "/metrics").map(|r| r.2).unwrap_or_default();
    let start = Instant::now();
    // Known values for every store once Prometheus has two scrapes of each.
    loop {
        let m = metrics();
        let known = ["1", "2", "3"].iter().all(|s| {
            sample(
                &m,
                "tikv_invariant_unknown",
                &inv("write_latency_p99", s, "warning"),
            ) == Some(0.0)
                && sample(
                    &m,
                    "tikv_invariant_unknown",
                    &inv("cpu_usage", s, "warning"),
                ) == Some(0.0)
        });
        if known {
            let p99 = sample(
                &m,
                "tikv_invariant_observed_value",
                &[("name", "write_latency_p99"), ("store", "2")],
            )
            .unwrap();
            assert!(p99 < 0.1, "store 2 writes fast: {p99}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "Prometheus invariants stayed unknown:\n{m}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // At t=30 s of each 40 s cycle store 1 turns slow (writes take 300 ms, CPU 7 of 8 cores for
    // 6 s): more than 1 % of the last minute's writes are slow for about a minute, so the 1m p99
    // fires after its 5 s grace; the 1m CPU rate rises but stays under 70 % (6 s of 60). The
    // wait covers two full cycles after Prometheus scrapes the stores, however late that was.
    let mut cpu_peak: f64 = 0.0;
    loop {
        let m = metrics();
        if let Some(c) = sample(
            &m,
            "tikv_invariant_observed_value",
            &[("name", "cpu_usage"), ("store", "1")],
        ) {
            cpu_peak = cpu_peak.max(c);
        }
        if sample(
            &m,
            "tikv_invariant_violation",
            &inv("write_latency_p99", "1", "warning"),
        ) == Some(1.0)
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(60 + 2 * 40 + 30),
            "store 1 never fired:\n{m}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(cpu_peak > 0.0, "cpu_usage observed for store 1: {cpu_peak}");
}
