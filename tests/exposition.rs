//! The exposition formats of the real exporter binary (against the fake PD): the format each
//! `Accept` gets (Prometheus' own headers included, read off a real Prometheus scrape), gzip
//! by `Accept-Encoding`, `promtool check metrics` on the text format, HEAD, and a real
//! Prometheus scraping one exporter in each mode: from the text format 0.0.4 it files the
//! counters' HELP and type under their `_total` names, from OpenMetrics under the family
//! name without it (Prometheus 2.42's behaviour, the reason OpenMetrics is opt-in).

mod support;

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::exporter::{Exporter, RawAnswer, assert_fixture_counted, sample, samples};
use support::fake_pd::{FakePd, cluster};
use support::http::{Response, TestServer};
use support::prometheus::{RealPrometheus, promtool_bin, result, value_of};
use support::wait::PATIENCE;

const TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
const OM_1_0_0: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";
const OM_0_0_1: &str = "application/openmetrics-text; version=0.0.1; charset=utf-8";

/// What Prometheus sends, by version (`scrape/scrape.go` `acceptHeader`; 2.42 is the one
/// installed here, and the Prometheus test checks it against a real scrape).
const PROMETHEUS_2_42: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
const PROMETHEUS_2_49: &str = "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
const PROMETHEUS_3: &str = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
/// `scrape_protocols: [PrometheusText0.0.4]` (Prometheus 2.49 and later).
const PROMETHEUS_TEXT_ONLY: &str = "text/plain;version=0.0.4;q=0.6,*/*;q=0.5";

const FIXTURE_SOURCE: &str = "file:tikv.log";

/// The exporter against `pd`, polling every `poll`, with `extra` flags; ready.
fn exporter(pd: &FakePd, poll: &str, extra: &[&str]) -> Exporter {
    let mut args = vec![
        "--pd.endpoints".to_owned(),
        pd.url(),
        "--poll-interval".to_owned(),
        poll.to_owned(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    let e = Exporter::start(&args);
    e.wait_ready();
    e
}

/// The series (name and labels, no values) of an exposition.
fn series(text: &str) -> BTreeSet<(String, Vec<(String, String)>)> {
    samples(text).into_iter().map(|(n, l, _)| (n, l)).collect()
}

/// The body decoded as its `Content-Encoding` says.
fn decoded(a: &RawAnswer) -> String {
    match a.header("content-encoding") {
        Some("gzip") => {
            let mut out = String::new();
            flate2::read::GzDecoder::new(&a.body[..])
                .read_to_string(&mut out)
                .expect("a gzip body");
            out
        }
        None => String::from_utf8(a.body.clone()).unwrap(),
        Some(other) => panic!("unexpected Content-Encoding {other}"),
    }
}

/// GET /metrics with these headers; checks what every answer has.
fn scrape(e: &Exporter, headers: &[(&str, &str)]) -> RawAnswer {
    let a = e.raw("GET", "/metrics", headers);
    assert_eq!(a.status, 200, "{headers:?}");
    assert_eq!(
        a.header("vary"),
        Some("Accept, Accept-Encoding"),
        "{headers:?}"
    );
    a
}

#[test]
fn each_accept_header_gets_its_format() {
    let pd = FakePd::with_live_stores(&cluster(2));
    let text_only = exporter(&pd, "200ms", &[]);
    let with_om = exporter(&pd, "200ms", &["--web.enable-openmetrics"]);
    let cases: [(&Exporter, Option<&str>, &str); 16] = [
        // Default: the text format whatever is asked, like client_golang without
        // EnableOpenMetrics.
        (&text_only, None, TEXT),
        (&text_only, Some(PROMETHEUS_2_42), TEXT),
        (&text_only, Some(PROMETHEUS_2_49), TEXT),
        (&text_only, Some(PROMETHEUS_3), TEXT),
        (
            &text_only,
            Some("application/openmetrics-text;version=1.0.0"),
            TEXT,
        ),
        // --web.enable-openmetrics: OpenMetrics when preferred to the text format.
        (&with_om, None, TEXT),
        (&with_om, Some("*/*"), TEXT),
        (&with_om, Some("text/plain"), TEXT),
        (&with_om, Some(PROMETHEUS_2_42), OM_1_0_0),
        (&with_om, Some(PROMETHEUS_2_49), OM_1_0_0),
        (&with_om, Some(PROMETHEUS_3), OM_1_0_0),
        (&with_om, Some(PROMETHEUS_TEXT_ONLY), TEXT),
        (&with_om, Some("application/openmetrics-text"), OM_0_0_1),
        (
            &with_om,
            Some("application/openmetrics-text;version=1.0.0;q=0.2,text/plain;q=0.8"),
            TEXT,
        ),
        (
            &with_om,
            Some("application/openmetrics-text;version=1.0.0;q=0"),
            TEXT,
        ),
        (&with_om, Some("application/json, text/html"), TEXT),
    ];
    let mut bodies = Vec::new();
    for (e, accept, want) in cases {
        let headers: Vec<(&str, &str)> = accept.map(|a| ("Accept", a)).into_iter().collect();
        let a = scrape(e, &headers);
        assert_eq!(a.header("content-type"), Some(want), "{accept:?}");
        assert_eq!(a.header("content-encoding"), None, "{accept:?}");
        let body = decoded(&a);
        if want == TEXT {
            assert!(!body.contains("# EOF"), "{accept:?}");
            assert!(
                body.contains(
                    "# HELP tikv_pd_leader_changes_total PD leader changes seen across polls"
                ),
                "{accept:?}: {body}"
            );
            assert!(body.contains("# TYPE tikv_pd_leader_changes_total counter\n"));
            assert!(body.contains("# TYPE process_cpu_seconds_total counter\n"));
        } else {
            assert!(body.ends_with("# EOF\n"), "{accept:?}");
            assert!(body.contains("# TYPE tikv_pd_leader_changes counter\n"));
        }
        assert_eq!(
            sample(&body, "tikv_pd_leader_changes_total", &[]),
            Some(0.0)
        );
        bodies.push((want, body));
    }
    // Both formats carry the same series.
    let text = bodies.iter().find(|(w, _)| *w == TEXT).unwrap();
    let om = bodies.iter().find(|(w, _)| *w == OM_1_0_0).unwrap();
    assert_eq!(series(&text.1), series(&om.1));
    assert!(series(&text.1).len() > 40, "{}", text.1);
}

#[test]
fn promtool_check_metrics_is_clean_on_the_text_format() {
    let pd = FakePd::with_live_stores(&cluster(3));
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("tikv.log");
    std::fs::write(&log, "").unwrap();
    let file = format!("{}=2", log.display());
    // A log file (log counters and file gauges), an Alertmanager (the notifier's counters and
    // its latency histogram) and a cluster name: every family the exporter has.
    let e = exporter(
        &pd,
        "200ms",
        &[
            "--logs.file",
            &file,
            "--alertmanager.url",
            "http://127.0.0.1:1",
            "--cluster.name",
            "east",
        ],
    );
    let m = e.wait_metrics("PD and the log file up", PATIENCE, |m| {
        sample(m, "tikv_health_exporter_source_up", &[("source", "pd")]) == Some(1.0)
            && sample(
                m,
                "tikv_health_exporter_source_up",
                &[("source", FIXTURE_SOURCE)],
            ) == Some(1.0)
    });
    for family in [
        "# TYPE tikv_log_gaps_total counter",
        "# TYPE tikv_health_exporter_notifications_total counter",
        "# TYPE tikv_health_exporter_notification_latency_seconds histogram",
        "# TYPE tikv_health_exporter_build_info gauge",
        "# TYPE tikv_store_state gauge",
    ] {
        assert!(m.contains(family), "{family} in\n{m}");
    }
    let mut child = Command::new(promtool_bin())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {}: {e}", promtool_bin()));
    child.stdin.take().unwrap().write_all(m.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool: {said}\n{m}");
    assert_eq!(said.trim(), "", "promtool findings");
}

/// The lines of an exposition that do not move between two scrapes with no poll in between
/// (`process_*` is read at every scrape, the heartbeat age is computed at scrape time).
fn stable(text: &str) -> Vec<&str> {
    text.lines()
        .filter(|l| !l.contains("process_") && !l.contains("tikv_store_heartbeat_age_seconds"))
        .collect()
}

#[test]
fn gzip_when_accepted_and_the_same_body() {
    let pd = FakePd::with_live_stores(&cluster(3));
    // One poll, then none for the test's length: two scrapes show the same state. OpenMetrics
    // enabled by the config file's key this time.
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.yml");
    std::fs::write(&config, "web:\n  openmetrics: true\n").unwrap();
    let config = config.display().to_string();
    let e = exporter(&pd, "1h", &["--config.file", &config]);
    let plain = scrape(&e, &[]);
    assert_eq!(plain.header("content-encoding"), None);
    let plain = decoded(&plain);
    for (accept_encoding, gzipped) in [
        ("gzip", true),
        ("x-gzip", true),
        ("*", true),
        ("gzip, deflate, br", true),
        ("br;q=1.0, gzip;q=0.5", true),
        ("gzip;q=0", false),
        ("identity", false),
        ("identity;q=1, gzip;q=0.5", false),
        ("br", false),
    ] {
        let a = scrape(&e, &[("Accept-Encoding", accept_encoding)]);
        assert_eq!(a.header("content-type"), Some(TEXT));
        assert_eq!(
            a.header("content-encoding"),
            gzipped.then_some("gzip"),
            "{accept_encoding}"
        );
        let length: usize = a.header("content-length").unwrap().parse().unwrap();
        assert_eq!(length, a.body.len(), "{accept_encoding}");
        if gzipped {
            assert_eq!(&a.body[..2], &[0x1f, 0x8b], "{accept_encoding}");
            assert!(
                a.body.len() * 3 < plain.len(),
                "{accept_encoding}: {} of {} bytes",
                a.body.len(),
                plain.len()
            );
        }
        assert_eq!(stable(&decoded(&a)), stable(&plain), "{accept_encoding}");
    }
    // OpenMetrics compresses the same way.
    let om = scrape(
        &e,
        &[("Accept", PROMETHEUS_2_42), ("Accept-Encoding", "gzip")],
    );
    assert_eq!(om.header("content-type"), Some(OM_1_0_0));
    assert_eq!(om.header("content-encoding"), Some("gzip"));
    let om = decoded(&om);
    assert!(om.ends_with("# EOF\n"));
    assert_eq!(series(&om), series(&plain));
    // HEAD: the headers a GET gets, no body.
    let head = e.raw("HEAD", "/metrics", &[("Accept-Encoding", "gzip")]);
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-type"), Some(TEXT));
    assert_eq!(head.header("content-encoding"), Some("gzip"));
    assert_eq!(head.header("vary"), Some("Accept, Accept-Encoding"));
    assert!(head.body.is_empty());
}

/// The one metadata entry `job`'s targets gave for `metric`, as (type, help).
fn metadata(prom: &RealPrometheus, job: &str, metric: &str) -> Option<(String, String)> {
    let entries = prom.target_metadata(job, metric);
    assert!(entries.len() <= 1, "{entries:?}");
    let m = entries.first()?;
    Some((
        m["type"].as_str()?.to_owned(),
        m["help"].as_str()?.to_owned(),
    ))
}

#[test]
fn prometheus_files_counter_help_under_the_total_name() {
    let pd = FakePd::with_live_stores(&cluster(2));
    let dir = tempfile::tempdir().unwrap();
    let start = |name: &str, extra: &[&str]| {
        let log = dir.path().join(format!("{name}.log"));
        std::fs::write(&log, "").unwrap();
        let file = format!("{}=2", log.display());
        let mut args = vec!["--logs.file", file.as_str()];
        args.extend(extra);
        let e = exporter(&pd, "250ms", &args);
        let source = format!("file:{name}.log");
        e.wait_source_up(&source, 1.0);
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        f.write_all(include_bytes!("data/tikv-pd-real-lines.log"))
            .unwrap();
        f.flush().unwrap();
        let m = e.wait_metrics("the fixture counted", PATIENCE, |m| {
            sample(
                m,
                "tikv_leadership_changes_total",
                &[
                    ("source", &source),
                    ("store", "2"),
                    ("event", "pd_leader_changed"),
                ],
            ) == Some(7.0)
        });
        assert_fixture_counted(&m, &source, "2", 0.0);
        e
    };
    let text = start("text", &[]);
    let om = start("om", &["--web.enable-openmetrics"]);
    // A probe target records what Prometheus itself sends.
    let seen: Arc<Mutex<Vec<support::http::Request>>> = Arc::default();
    let probe = {
        let seen = seen.clone();
        TestServer::start(move |req| {
            seen.lock().unwrap().push(req.clone());
            Response::text(200, "# TYPE probe gauge\nprobe 1\n")
        })
    };
    let prom = RealPrometheus::start(
        &[
            ("text", vec![text.addr()]),
            ("openmetrics", vec![om.addr()]),
            ("probe", vec![probe.addr()]),
        ],
        Duration::from_secs(1),
    );
    let up = prom.wait_for(
        "up == 1",
        |v| result(v).len() == 3 && result(v).iter().all(|s| value_of(s) == 1.0),
        PATIENCE,
    );
    assert_eq!(result(&up).len(), 3, "{up}");

    // What this Prometheus asks for, sent again by hand: each exporter answers it as it
    // answered Prometheus.
    let asked = seen.lock().unwrap()[0].clone();
    let accept = asked.header("Accept").unwrap().to_owned();
    let accept_encoding = asked.header("Accept-Encoding").unwrap().to_owned();
    assert_eq!(
        accept, PROMETHEUS_2_42,
        "this Prometheus: {:?}",
        asked.headers
    );
    assert_eq!(accept_encoding, "gzip");
    for (e, want) in [(&text, TEXT), (&om, OM_1_0_0)] {
        let a = scrape(
            e,
            &[
                ("Accept", accept.as_str()),
                ("Accept-Encoding", accept_encoding.as_str()),
            ],
        );
        assert_eq!(a.header("content-type"), Some(want));
        assert_eq!(a.header("content-encoding"), Some("gzip"));
    }

    // From the text format, a counter's type and HELP are under the name it is queried by.
    let help = "Leadership events found in the logs, by source, store and event".to_owned();
    let got = support::wait::until("metadata from the text job", PATIENCE, || {
        metadata(&prom, "text", "tikv_leadership_changes_total").ok_or_else(|| "none".into())
    });
    assert_eq!(got, ("counter".to_owned(), help.clone()));
    assert_eq!(
        metadata(&prom, "text", "process_cpu_seconds_total"),
        Some((
            "counter".to_owned(),
            "Total user and system CPU time spent in seconds.".to_owned()
        ))
    );
    assert_eq!(metadata(&prom, "text", "tikv_leadership_changes"), None);
    // From OpenMetrics, Prometheus 2.42 files them under the family name without `_total`.
    let got = support::wait::until("metadata from the OpenMetrics job", PATIENCE, || {
        metadata(&prom, "openmetrics", "tikv_leadership_changes").ok_or_else(|| "none".into())
    });
    assert_eq!(got, ("counter".to_owned(), help));
    assert_eq!(
        metadata(&prom, "openmetrics", "tikv_leadership_changes_total"),
        None
    );

    // The values arrive, the same through both formats (and gzip).
    let q = r#"tikv_leadership_changes_total{event="pd_leader_changed",store="2"}"#;
    let v = prom.wait_for(q, |v| result(v).len() == 2, PATIENCE);
    for s in result(&v) {
        assert_eq!(value_of(s), 7.0, "{s}");
    }
    let leaders = prom.wait_for(
        r#"tikv_store_leaders{store="1"}"#,
        |v| result(v).len() == 2,
        PATIENCE,
    );
    let want = sample(&text.metrics(), "tikv_store_leaders", &[("store", "1")]).unwrap();
    for s in result(&leaders) {
        assert_eq!(value_of(s), want, "{s}");
    }
}
