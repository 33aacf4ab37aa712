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

#[test]
fn demo_goes_pending_firing_resolved_within_a_minute() {
    let addr: std::net::SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let mut child = Command::new(binary())
        .args(["demo", "--web.listen-address", &addr.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _guard = Kill(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
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
