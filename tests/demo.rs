//! `demo`: the real exporter against the built-in simulated cluster shows pending → firing →
//! resolved within a minute, with the live status on stdout.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use support::exporter::{binary, http_get, inv, sample};
use support::listen;
use support::wait::PATIENCE;
use tikv_health_exporter::invariants::catalog::BUILTINS;

/// A named condition on the `/metrics` text.
type Check = Box<dyn Fn(&str) -> bool>;

struct Kill(std::process::Child);
impl Drop for Kill {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A started demo: where it serves, a guard that kills it, the stdout lines read so far (its
/// header) and the rest as they arrive.
struct Demo {
    addr: std::net::SocketAddr,
    _guard: Kill,
    header: Vec<String>,
    rx: mpsc::Receiver<String>,
}

/// Starts `demo` with `extra` args on loopback port 0. The header it prints names its other
/// ports (the simulated PD and, with a Prometheus, the TiKV targets) before the exporter
/// listens; the exporter's port is the remaining one, read from `/proc`.
fn start_demo(extra: &[&str]) -> Demo {
    let mut child = Command::new(binary())
        .args(["demo", "--web.listen-address", "127.0.0.1:0"])
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
    let with_targets = extra.contains(&"--prometheus.url");
    let mut header: Vec<String> = Vec::new();
    let has = |header: &[String], what: &str| header.iter().any(|l| l.contains(what));
    while !has(&header, "behind a simulated PD at") || with_targets && !has(&header, "targets: [") {
        let line = rx
            .recv_timeout(PATIENCE)
            .unwrap_or_else(|e| panic!("demo header: {e}; so far {header:?}"));
        header.push(line);
    }
    let other_ports: Vec<u16> = header
        .iter()
        .flat_map(|l| l.split("127.0.0.1:").skip(1))
        .filter_map(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect();
    let addr = listen::wait_listening(&mut child, &other_ports)
        .unwrap_or_else(|why| panic!("demo {why}; header {header:?}"));
    Demo {
        addr,
        _guard: Kill(child),
        header,
        rx,
    }
}

/// The lists of a status line `[  12s] firing: a b | pending: c | unknown: - | ...`: the
/// demo's clock in seconds, firing and pending.
fn status(line: &str) -> Option<(f64, Vec<String>, Vec<String>)> {
    let (secs, rest) = line.trim_start_matches('[').split_once("s] firing: ")?;
    let mut parts = rest.split(" | ");
    let list = |p: Option<&str>, key: &str| -> Option<Vec<String>> {
        let l = p?.strip_prefix(key)?;
        Some(if l == "-" {
            Vec::new()
        } else {
            l.split(' ').map(str::to_owned).collect()
        })
    };
    let firing = list(parts.next(), "")?;
    let pending = list(parts.next(), "pending: ")?;
    Some((secs.trim().parse().ok()?, firing, pending))
}

#[test]
fn demo_goes_pending_firing_resolved_within_a_minute() {
    let demo = start_demo(&[]);
    let addr = demo.addr;
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
        (
            "region health firing",
            Box::new(|m: &str| {
                sample(
                    m,
                    "tikv_invariant_violation",
                    &inv("region_down_peers", "", "warning"),
                ) == Some(1.0)
                    && sample(
                        m,
                        "tikv_region_status",
                        &[("type", "down-peer-region-count")],
                    ) == Some(5.0)
            }),
        ),
        (
            "region health resolved",
            Box::new(|m: &str| {
                sample(
                    m,
                    "tikv_invariant_violation",
                    &inv("region_down_peers", "", "warning"),
                ) == Some(0.0)
            }),
        ),
    ];
    // /metrics shows each step in order. The scenario repeats every 40 s, so a step missed
    // while this test was not scheduled comes again: the bound allows a second cycle.
    let bound = Duration::from_secs(60 + 40) + PATIENCE;
    for (what, pred) in steps {
        loop {
            if pred(&metrics()) {
                seen.push((what, start.elapsed()));
                break;
            }
            assert!(
                start.elapsed() < bound,
                "{what} not seen within {bound:?}; seen {seen:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let mut out = demo.header.clone();
    out.extend(demo.rx.try_iter());
    let text = out.join("\n");
    // Within a minute of the demo's own clock (its status line after every change): store 2
    // fires, store 3's disk goes pending then firing, both resolve.
    type Step = (&'static str, fn(&[String], &[String]) -> bool);
    let timeline: Vec<(f64, Vec<String>, Vec<String>)> =
        out.iter().filter_map(|l| status(l)).collect();
    let order: [Step; 5] = [
        ("store_down firing", |f, _| {
            f.iter().any(|i| i == "store_down/2")
        }),
        ("disk pending", |_, p| p.iter().any(|i| i == "disk_usage/3")),
        ("disk firing", |f, _| f.iter().any(|i| i == "disk_usage/3")),
        ("store_down resolved", |f, _| {
            !f.iter().any(|i| i == "store_down/2")
        }),
        ("disk resolved", |f, p| {
            !f.iter().chain(p).any(|i| i == "disk_usage/3")
        }),
    ];
    let mut at = 0;
    for (what, holds) in order {
        at += timeline[at..]
            .iter()
            .position(|(_, f, p)| holds(f, p))
            .unwrap_or_else(|| panic!("{what}: not in the status lines after {at}:\n{text}"));
        let secs = timeline[at].0;
        assert!(secs <= 60.0, "{what} at {secs} s of the demo:\n{text}");
    }
    assert!(
        text.contains("scenario: store 2 stopped heartbeating"),
        "{text}"
    );
    // A slow GC safe point, leader imbalance and region health, each told by the scenario and
    // firing then resolved in the status lines within the first minute of the demo's clock.
    for story in [
        "scenario: a stuck TiCDC changefeed holds GC: PD's GC safe point is 25h old",
        "scenario: store 1 loses its leaders",
        "scenario: 5 regions have a down peer and miss a replica",
    ] {
        assert!(text.contains(story), "{story}:\n{text}");
    }
    for (series, pending_first) in [
        ("gc_safepoint_lag", false),
        ("leader_imbalance/1", true),
        ("region_down_peers", true),
        ("region_miss_peers", true),
    ] {
        let fired = timeline
            .iter()
            .position(|(_, f, _)| f.iter().any(|i| i == series))
            .unwrap_or_else(|| panic!("{series} never firing:\n{text}"));
        assert!(
            timeline[fired].0 <= 60.0,
            "{series} at {}:\n{text}",
            timeline[fired].0
        );
        if pending_first {
            assert!(
                timeline[..fired]
                    .iter()
                    .any(|(_, _, p)| p.iter().any(|i| i == series)),
                "{series} pending before firing:\n{text}"
            );
        }
        assert!(
            timeline[fired..]
                .iter()
                .any(|(_, f, p)| !f.iter().chain(p).any(|i| i == series)),
            "{series} resolved:\n{text}"
        );
    }
    assert!(text.contains("firing: store_down/2"), "{text}");
    assert!(
        text.contains("pending: disk_usage/3") || text.contains("pending: store_down"),
        "{text}"
    );
    assert!(text.contains("firing: store_down/2 disk_usage/3"), "{text}");
    // The simulated PD serves its cluster-wide state and schedulers too: nothing of it is
    // unknown, and what the scenario does not touch never fires (store 2's resolved ts stops
    // while it is away, for less than the 1m threshold). No store is Offline: no series.
    let m = metrics();
    for (name, store, sev, fires) in [
        ("region_down_peers", "", "warning", true),
        ("region_miss_peers", "", "warning", true),
        ("pd_etcd", "", "critical", false),
        ("gc_safepoint_lag", "", "warning", true),
        ("resolved_ts_lag", "", "warning", false),
        ("resolved_ts_lag", "2", "warning", false),
        ("store_restarted", "2", "info", false),
        ("leader_imbalance", "1", "warning", true),
        ("leader_imbalance", "2", "warning", false),
        ("leader_imbalance", "3", "warning", false),
    ] {
        let mut metrics = vec!["tikv_invariant_unknown"];
        if !fires {
            metrics.push("tikv_invariant_violation");
        }
        for metric in metrics {
            assert_eq!(
                sample(&m, metric, &inv(name, store, sev)),
                Some(0.0),
                "{metric} {name}/{store}:\n{m}"
            );
        }
    }
    assert!(!m.contains("name=\"offline_store_stuck\""), "{m}");
    assert_eq!(
        sample(
            &m,
            "tikv_health_exporter_source_up",
            &[("source", "pd:schedulers")]
        ),
        Some(1.0)
    );
    // Its hot-region statistics: store 1 writes 256 KiB/s through region 1001.
    assert_eq!(
        sample(
            &m,
            "tikv_store_hot_write_bytes_per_second",
            &[("store", "1")]
        ),
        Some(262144.0)
    );
    let (code, _, hot) = http_get(addr, "/api/v1/hot-regions?type=write").unwrap();
    let hot: serde_json::Value = serde_json::from_str(&hot).unwrap();
    assert_eq!(code, 200, "{hot}");
    assert_eq!(hot["stores"][0]["regions"][0]["region_id"], 1001, "{hot}");
    let status_lines: Vec<&String> = out.iter().filter(|l| status(l).is_some()).collect();
    assert!(
        status_lines
            .iter()
            .skip(1)
            .all(|l| l.contains("| unknown: - |")),
        "{text}"
    );
}

/// With a Prometheus, the demo serves per-store TiKV metrics (targets printed at start) and the
/// Prometheus-based invariants run on them: store 1's write p99 and CPU go high in the scenario.
#[test]
fn demo_with_prometheus_runs_the_prometheus_invariants() {
    use support::prometheus::{RealPrometheus, render_config};
    let prom = RealPrometheus::start(&[], Duration::from_secs(1));
    let demo = start_demo(&["--prometheus.url", &prom.url()]);
    let addr = demo.addr;
    // "Prometheus must scrape the simulated TiKVs: ... targets: ['127.0.0.1:P1', ...]"
    let targets: Vec<std::net::SocketAddr> = demo
        .header
        .iter()
        .find_map(|line| line.split("targets: [").nth(1))
        .expect("demo printed its targets")
        .trim_end_matches("]}]")
        .split(", ")
        .map(|t| t.trim_matches('\'').parse().unwrap())
        .collect();
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
        // Every Prometheus-based built-in: the simulated TiKVs serve their metrics.
        let known = ["1", "2", "3"].iter().all(|s| {
            BUILTINS
                .iter()
                .filter(|b| b.default_query().is_some())
                .all(|b| {
                    sample(
                        &m,
                        "tikv_invariant_unknown",
                        &inv(b.name, s, b.severity.as_str()),
                    ) == Some(0.0)
                })
        });
        if known {
            let p99 = sample(
                &m,
                "tikv_invariant_observed_value",
                &[("name", "write_latency_p99"), ("store", "2")],
            )
            .unwrap();
            assert!(p99 < 0.1, "store 2 writes fast: {p99}");
            let observed = |n: &str| {
                sample(
                    &m,
                    "tikv_invariant_observed_value",
                    &[("name", n), ("store", "2")],
                )
                .unwrap()
            };
            assert_eq!(observed("memory_usage"), 0.25);
            assert_eq!(observed("write_flow_control"), 0.0);
            let read = observed("read_latency_p99");
            // 1 ms falls in the bucket (0.8 ms, 1.6 ms]: the p99 interpolates inside it.
            assert!(
                read > 0.0008 && read <= 0.0016,
                "store 2 reads at 1 ms: {read}"
            );
            break;
        }
        assert!(
            start.elapsed() < PATIENCE,
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
            start.elapsed() < PATIENCE + Duration::from_secs(2 * 40 + 30),
            "store 1 never fired:\n{m}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(cpu_peak > 0.0, "cpu_usage observed for store 1: {cpu_peak}");
}
