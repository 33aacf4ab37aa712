//! `PromClient` against canned Prometheus API answers (TestServer) and against a real
//! Prometheus 2.x scraping fake TiKV status endpoints.

mod support;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::fake_tikv::{FakeTikv, expected_quantile};
use support::http::{Request, Response, TestServer};
use support::listen::refused_url;
use support::prometheus::RealPrometheus;
use tikv_health_exporter::domain::Labels;
use tikv_health_exporter::sources::prometheus::{
    MAX_RESPONSE_BYTES, PromClient, PromError, Sample,
};

/// The client's timeout where a test expects an answer: long, so a loaded machine answers
/// late rather than fails (the timeout itself is tested with 300 ms against a 60 s delay).
const T: Duration = support::wait::PATIENCE;

/// A server answering every request with `resp`, recording request paths.
fn canned(resp: Response) -> (TestServer, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let server = TestServer::start(move |req: &Request| {
        s2.lock().unwrap().push(req.path.clone());
        resp.clone()
    });
    (server, seen)
}

fn labels(pairs: &[(&str, &str)]) -> Labels {
    pairs.iter().copied().collect()
}

async fn query_json(body: &str) -> Result<Vec<Sample>, PromError> {
    query_with(Response::json(body)).await
}

async fn query_with(resp: Response) -> Result<Vec<Sample>, PromError> {
    let (server, _) = canned(resp);
    let client = PromClient::new(&server.url(), T).unwrap();
    client.query("up").await
}

#[tokio::test]
async fn vector_samples_keep_labels_and_special_values() {
    let body = r#"{"status":"success","data":{"resultType":"vector","result":[
        {"metric":{"instance":"a:20180","job":"tikv"},"value":[1700000000.123,"1.5"]},
        {"metric":{"instance":"b:20180"},"value":[1700000000.123,"NaN"]},
        {"metric":{"instance":"c:20180"},"value":[1700000000,"+Inf"]},
        {"metric":{"instance":"d:20180"},"value":[1700000000,"-Inf"]},
        {"metric":{},"value":[1700000000,"1e+06"]}
    ]},"warnings":["PromQL info: something"]}"#;
    let got = query_json(body).await.unwrap();
    assert_eq!(got.len(), 5);
    assert_eq!(
        got[0].labels,
        labels(&[("instance", "a:20180"), ("job", "tikv")])
    );
    assert_eq!(got[0].value, 1.5);
    assert_eq!(got[1].labels, labels(&[("instance", "b:20180")]));
    assert!(got[1].value.is_nan());
    assert_eq!(got[2].value, f64::INFINITY);
    assert_eq!(got[3].value, f64::NEG_INFINITY);
    assert!(got[4].labels.is_empty());
    assert_eq!(got[4].value, 1e6);
}

#[tokio::test]
async fn scalar_is_one_unlabelled_sample() {
    let got = query_json(
        r#"{"status":"success","data":{"resultType":"scalar","result":[1700000000.5,"42"]}}"#,
    )
    .await
    .unwrap();
    assert_eq!(
        got,
        vec![Sample {
            labels: Labels::default(),
            value: 42.0
        }]
    );
}

#[tokio::test]
async fn empty_vector_is_ok_and_empty() {
    let got = query_json(r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#)
        .await
        .unwrap();
    assert!(got.is_empty());
}

#[tokio::test]
async fn error_status_carries_error_type_and_text() {
    for (status, error_type, error) in [
        (
            400,
            "bad_data",
            r#"invalid parameter \"query\": 1:5: parse error: unclosed left parenthesis"#,
        ),
        (
            422,
            "execution",
            "query processing would load too many samples into memory",
        ),
        (503, "timeout", "query timed out in expression evaluation"),
    ] {
        let body = format!(r#"{{"status":"error","errorType":"{error_type}","error":"{error}"}}"#);
        let (server, _) = canned(Response::json(body).status(status));
        let client = PromClient::new(&server.url(), T).unwrap();
        let err = client.query("sum(up").await.unwrap_err();
        match &err {
            PromError::Api {
                status: s,
                error_type: et,
                error: e,
                ..
            } => {
                assert_eq!(*s, status);
                assert_eq!(et, error_type);
                assert_eq!(*e, error.replace("\\\"", "\""));
            }
            other => panic!("expected Api error, got {other:?}"),
        }
        let msg = err.to_string();
        assert!(msg.contains(error_type), "{msg}");
        assert!(msg.contains(&status.to_string()), "{msg}");
        assert!(msg.contains("sum(up"), "{msg}");
        assert!(
            msg.contains(&format!("{}/api/v1/query", server.url())),
            "{msg}"
        );
    }
}

#[tokio::test]
async fn matrix_and_string_results_are_rejected() {
    for (ty, result) in [
        ("matrix", r#"[{"metric":{},"values":[[1,"1"],[2,"2"]]}]"#),
        ("string", r#"[1700000000,"hello"]"#),
    ] {
        let body =
            format!(r#"{{"status":"success","data":{{"resultType":"{ty}","result":{result}}}}}"#);
        let err = query_json(&body).await.unwrap_err();
        assert!(matches!(err, PromError::InvalidResponse { .. }), "{err:?}");
        assert!(err.to_string().contains("unexpected result type"), "{err}");
        assert!(err.to_string().contains(ty), "{err}");
    }
}

#[tokio::test]
async fn garbage_bodies_are_errors() {
    // 200 with HTML, truncated JSON, a bad value, a missing data field.
    for body in [
        "<html>proxy says hi</html>",
        r#"{"status":"success","data":{"resultType":"vector","result":["#,
        r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"fast"]}]}}"#,
        r#"{"status":"success"}"#,
        "",
    ] {
        let err = query_json(body).await.unwrap_err();
        assert!(
            matches!(err, PromError::InvalidResponse { .. }),
            "{body:?}: {err:?}"
        );
    }
    // A non-JSON error page keeps its status and the start of the body.
    let err = query_with(Response::text(502, "Bad Gateway from nginx"))
        .await
        .unwrap_err();
    assert!(
        matches!(err, PromError::Status { status: 502, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("Bad Gateway from nginx"), "{err}");
}

#[tokio::test]
async fn oversized_response_is_refused() {
    let big = format!(
        r#"{{"status":"success","data":{{"resultType":"vector","result":[]}},"pad":"{}"}}"#,
        "x".repeat(MAX_RESPONSE_BYTES)
    );
    let err = query_json(&big).await.unwrap_err();
    assert!(matches!(err, PromError::TooLarge { .. }), "{err:?}");
}

#[tokio::test]
async fn slow_server_times_out() {
    // The answer would take a minute: returning well before it means the timeout worked,
    // however loaded the machine is.
    let answer_after = Duration::from_secs(60);
    let (server, _) = canned(
        Response::json(r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#)
            .delayed(answer_after),
    );
    let client = PromClient::new(&server.url(), Duration::from_millis(300)).unwrap();
    let start = Instant::now();
    let err = client.query("up").await.unwrap_err();
    assert!(matches!(err, PromError::Timeout { .. }), "{err:?}");
    assert!(start.elapsed() < answer_after / 2, "{:?}", start.elapsed());
    assert!(err.to_string().contains("300ms"), "{err}");
}

#[tokio::test]
async fn connection_refused_names_url_and_cause() {
    let url = refused_url();
    let client = PromClient::new(&url, T).unwrap();
    let err = client.query("up").await.unwrap_err();
    assert!(matches!(err, PromError::Request { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&url), "{msg}");
    assert!(msg.to_lowercase().contains("refused"), "{msg}");
}

#[tokio::test]
async fn base_url_path_prefix_is_kept() {
    let ok = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
    for suffix in ["/prom", "/prom/"] {
        let (server, seen) = canned(Response::json(ok));
        let client = PromClient::new(&format!("{}{suffix}", server.url()), T).unwrap();
        client.query("up").await.unwrap();
        let path = seen.lock().unwrap()[0].clone();
        assert_eq!(path, "/prom/api/v1/query?query=up");
    }
}

#[tokio::test]
async fn query_is_url_encoded() {
    let ok = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
    let (server, seen) = canned(Response::json(ok));
    let client = PromClient::new(&server.url(), T).unwrap();
    let promql = r#"sum by (instance) (rate(x{type="write", a=~"b+c&d=e"}[1m])) + 1"#;
    client.query(promql).await.unwrap();
    let path = seen.lock().unwrap()[0].clone();
    let (p, q) = path.split_once('?').unwrap();
    assert_eq!(p, "/api/v1/query");
    for raw in ['{', '"', ' ', '&', '[', '+'] {
        // '+' may only appear as the encoding of a space; a literal plus must be %2B.
        if raw == '+' {
            assert!(q.contains("%2B"), "{q}");
            continue;
        }
        let after_key = q.strip_prefix("query=").unwrap();
        assert!(!after_key.contains(raw), "{raw:?} not encoded in {q}");
    }
    assert_eq!(q.matches('=').count(), 1, "{q}");
    let url = reqwest::Url::parse(&format!("http://x{path}")).unwrap();
    let pairs: Vec<(String, String)> = url.query_pairs().into_owned().collect();
    assert_eq!(pairs, vec![("query".to_owned(), promql.to_owned())]);
}

#[tokio::test]
async fn requests_are_counted() {
    let ok = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;
    let (server, _) = canned(Response::json(ok));
    let client = Arc::new(PromClient::new(&server.url(), T).unwrap());
    assert_eq!(client.requests_total(), 0);
    client.query("up").await.unwrap();
    let c2 = client.clone();
    tokio::spawn(async move { c2.query("up").await })
        .await
        .unwrap()
        .unwrap();
    assert_eq!(client.requests_total(), 2);
    // Failed requests count too.
    let dead = PromClient::new(&refused_url(), T).unwrap();
    let _ = dead.query("up").await;
    assert_eq!(dead.requests_total(), 1);
}

#[test]
fn invalid_base_urls_are_rejected() {
    for bad in [
        "not a url",
        "localhost:9090",
        "unix:///tmp/x",
        "http://h/?a=b",
    ] {
        let err = PromClient::new(bad, T).unwrap_err();
        assert!(
            matches!(err, PromError::InvalidUrl { .. }),
            "{bad}: {err:?}"
        );
        assert!(err.to_string().contains(bad), "{err}");
    }
}

// ---------------------------------------------------------------------------------------------
// Real Prometheus.

/// TiKV's async-request write p99, as the official rule writes it (NaN when idle).
const ASYNC_WRITE_P99: &str = r#"histogram_quantile(0.99, sum by (le, instance) (rate(tikv_storage_engine_async_request_duration_seconds_bucket{type="write"}[1m])))"#;

/// A built-in query as the exporter asks it.
fn builtin(name: &str) -> String {
    tikv_health_exporter::invariants::definitions::default_query(name).unwrap()
}

/// `instance` → value; panics on a sample without `instance` or with other labels.
fn by_instance(samples: &[Sample]) -> BTreeMap<String, f64> {
    samples
        .iter()
        .map(|s| {
            assert_eq!(s.labels.len(), 1, "unexpected labels {:?}", s.labels);
            (s.labels.get("instance").unwrap().to_owned(), s.value)
        })
        .collect()
}

/// Polls both queries until `ok` accepts the per-instance values or `timeout` passes; returns the last values.
async fn poll_until(
    client: &PromClient,
    timeout: Duration,
    ok: impl Fn(&BTreeMap<String, f64>, &BTreeMap<String, f64>) -> bool,
) -> (BTreeMap<String, f64>, BTreeMap<String, f64>) {
    let deadline = Instant::now() + timeout;
    loop {
        let p99 = by_instance(&client.query(&builtin("write_latency_p99")).await.unwrap());
        let cpu = by_instance(&client.query(&builtin("cpu_usage")).await.unwrap());
        if ok(&p99, &cpu) || Instant::now() >= deadline {
            return (p99, cpu);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn real_prometheus_builtin_queries_per_instance() {
    let started = Instant::now();
    let a = FakeTikv::start();
    a.set_write_latency(300.0, 0.005);
    a.set_cpu_busy_cores(1.0);
    a.set_cpu_quota(8.0);
    let b = FakeTikv::start();
    b.set_write_latency(300.0, 0.2);
    b.set_cpu_busy_cores(6.0);
    b.set_cpu_quota(8.0);
    // `rate(...[1m])` divides by the whole minute, so with fewer than 60 s of scrapes it reads
    // low (after 30 s: about half). Backfill 70 s of past at the same settings instead of
    // waiting a minute; the scrapes then continue those series.
    let mut history = a.history("tikv", Duration::from_secs(70), Duration::from_secs(1));
    history.push_str(&b.history("tikv", Duration::from_secs(70), Duration::from_secs(1)));
    let prom = RealPrometheus::start_with_history(
        &[("tikv", vec![a.addr(), b.addr()])],
        Duration::from_secs(1),
        &history,
    );
    let ready = started.elapsed();
    let client = PromClient::new(&prom.url(), T).unwrap();
    let (ia, ib) = (a.instance(), b.instance());

    let want_a = expected_quantile(0.99, &[(300.0, 0.005)]);
    let want_b = expected_quantile(0.99, &[(300.0, 0.2)]);
    // Bucket interpolation in TiKV's gRPC buckets (50 µs · 2^k): 5 ms lies in (3.2 ms, 6.4 ms],
    // 200 ms in (102.4 ms, 204.8 ms].
    assert!((want_a - 0.006368).abs() < 1e-6, "{want_a}");
    assert!((want_b - 0.203776).abs() < 1e-6, "{want_b}");
    let close = |got: Option<&f64>, want: f64, tol: f64| {
        got.is_some_and(|g| (g - want).abs() <= tol * want)
    };
    let all_close = |p99: &BTreeMap<String, f64>, cpu: &BTreeMap<String, f64>| {
        close(p99.get(&ia), want_a, 0.02)
            && close(p99.get(&ib), want_b, 0.02)
            && close(cpu.get(&ia), 0.125, 0.05)
            && close(cpu.get(&ib), 0.75, 0.05)
    };
    // The backfilled minute alone may already give the values; require real scrapes in the
    // window too, so a seam between history and scrapes (a counter jump or reset) would show.
    prom.wait_for(
        r#"min(count_over_time(up{job="tikv"}[1m])) >= 3"#,
        |v| {
            v["data"]["result"]
                .as_array()
                .is_some_and(|r| !r.is_empty())
        },
        support::wait::PATIENCE,
    );
    let (p99, cpu) = poll_until(&client, support::wait::PATIENCE, all_close).await;
    let settled = started.elapsed();
    eprintln!(
        "prometheus ready after {ready:?}, values settled after {settled:?}: p99={p99:?} cpu={cpu:?}"
    );

    assert_eq!(p99.len(), 2, "{p99:?}");
    assert_eq!(cpu.len(), 2, "{cpu:?}");
    let (pa, pb) = (p99[&ia], p99[&ib]);
    assert!(pa < 0.1 && pb > 0.1, "A {pa}, B {pb}");
    assert!(pa > 0.002 && pa < 0.011, "A p99 {pa}");
    assert!(pb > 0.16 && pb < 0.33, "B p99 {pb}");
    assert!(close(Some(&pa), want_a, 0.02), "A p99 {pa} vs {want_a}");
    assert!(close(Some(&pb), want_b, 0.02), "B p99 {pb} vs {want_b}");
    assert!(close(cpu.get(&ia), 0.125, 0.05), "A cpu {:?}", cpu.get(&ia));
    assert!(close(cpu.get(&ib), 0.75, 0.05), "B cpu {:?}", cpu.get(&ib));
    assert_eq!(client.requests_total() % 2, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn real_prometheus_answer_shapes() {
    let a = FakeTikv::start();
    a.set_store_size(1000, 150, 850);
    a.set_region_count(7, 21);
    let prom = RealPrometheus::start(&[("tikv", vec![a.addr()])], Duration::from_secs(1));
    let client = PromClient::new(&prom.url(), T).unwrap();
    let ia = a.instance();

    prom.wait_for(
        "up",
        |v| {
            v["data"]["result"]
                .as_array()
                .is_some_and(|r| !r.is_empty())
        },
        support::wait::PATIENCE,
    );
    let up = client.query("up").await.unwrap();
    assert_eq!(
        up,
        vec![Sample {
            labels: labels(&[("__name__", "up"), ("instance", &ia), ("job", "tikv")]),
            value: 1.0
        }]
    );
    let ratio = client
        .query(r#"sum by (instance) (tikv_store_size_bytes{type="available"}) / sum by (instance) (tikv_store_size_bytes{type="capacity"})"#)
        .await
        .unwrap();
    assert_eq!(
        ratio,
        vec![Sample {
            labels: labels(&[("instance", &ia)]),
            value: 0.15
        }]
    );
    let leaders = client
        .query(r#"sum by (instance) (tikv_raftstore_region_count{type="leader"})"#)
        .await
        .unwrap();
    assert_eq!(leaders[0].value, 7.0);

    // Scalars, including Go's spellings of NaN and infinities.
    let one = client.query("scalar(vector(1.5))").await.unwrap();
    assert_eq!(
        one,
        vec![Sample {
            labels: Labels::default(),
            value: 1.5
        }]
    );
    assert!(client.query("0/0").await.unwrap()[0].value.is_nan());
    assert_eq!(client.query("1/0").await.unwrap()[0].value, f64::INFINITY);
    assert_eq!(
        client.query("-1/0").await.unwrap()[0].value,
        f64::NEG_INFINITY
    );
    // An idle histogram gives NaN per instance (0/0 inside histogram_quantile); the built-in
    // query turns "series present, no requests" into 0. A rate needs two scrapes.
    prom.wait_for(
        "count_over_time(up[1m]) >= 2",
        |v| {
            v["data"]["result"]
                .as_array()
                .is_some_and(|r| !r.is_empty())
        },
        Duration::from_secs(20),
    );
    let idle = client.query(ASYNC_WRITE_P99).await.unwrap();
    assert!(
        !idle.is_empty() && idle.iter().all(|s| s.value.is_nan()),
        "{idle:?}"
    );
    let idle = client.query(&builtin("write_latency_p99")).await.unwrap();
    assert!(
        !idle.is_empty() && idle.iter().all(|s| s.value == 0.0),
        "{idle:?}"
    );
    // Nothing matches.
    assert!(client.query("no_such_metric").await.unwrap().is_empty());

    // Real error answers.
    let err = client.query("sum(up").await.unwrap_err();
    match &err {
        PromError::Api {
            status, error_type, ..
        } => {
            assert_eq!(*status, 400);
            assert_eq!(error_type, "bad_data");
        }
        other => panic!("expected Api error, got {other:?}"),
    }
    assert!(err.to_string().contains("parse error"), "{err}");
    let err = client.query("up[1m]").await.unwrap_err();
    assert!(
        err.to_string()
            .contains("unexpected result type \"matrix\""),
        "{err}"
    );
    let err = client.query(r#""text""#).await.unwrap_err();
    assert!(
        err.to_string()
            .contains("unexpected result type \"string\""),
        "{err}"
    );

    // Drop kills the process (its listening socket goes with it) and removes its directory.
    // (Not checked by connecting: once closed, the port is free for any other process.)
    let (port, dir) = (prom.addr().port(), prom.dir().to_path_buf());
    let pid = prom.pid();
    assert!(
        support::listen::listening(pid)
            .iter()
            .any(|a| a.port() == port)
    );
    drop(prom);
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "Prometheus (pid {pid}) still exists"
    );
    assert!(!dir.exists());
}

#[test]
fn real_prometheus_startup_failure_shows_its_log() {
    let flag = vec!["--no-such-flag".to_owned()];
    let panic = std::panic::catch_unwind(|| {
        RealPrometheus::start_with(&[], Duration::from_secs(1), &flag, &[]);
    })
    .unwrap_err();
    let msg = panic.downcast_ref::<String>().cloned().unwrap_or_default();
    assert!(msg.contains("did not become ready"), "{msg}");
    assert!(msg.contains("no-such-flag"), "{msg}");
}

// ---------------------------------------------------------------------------------------------
// The fake TiKV itself.

#[test]
fn fake_tikv_exposition_passes_promtool() {
    use std::io::Write as _;
    use std::process::{Command, Stdio};
    let a = FakeTikv::start();
    a.set_write_latency(100.0, 0.005);
    a.set_cpu_busy_cores(2.0);
    std::thread::sleep(Duration::from_millis(20));
    let text = a.render_now();
    for needle in [
        "tikv_storage_engine_async_request_duration_seconds_bucket{type=\"write\",le=\"0.00001\"} 0",
        "tikv_storage_engine_async_request_duration_seconds_bucket{type=\"write\",le=\"21474.83648\"}",
        "tikv_storage_engine_async_request_duration_seconds_bucket{type=\"write\",le=\"+Inf\"}",
        "tikv_storage_engine_async_request_duration_seconds_count{type=\"write\"}",
        "tikv_server_cpu_cores_quota 8",
        "tikv_store_size_bytes{type=\"capacity\"}",
        "tikv_raftstore_region_count{type=\"leader\"} 50",
        "tikv_thread_cpu_seconds_total{name=\"raftstore_1_0\",tid=\"3100\"} 0",
        "tikv_thread_cpu_seconds_total{name=\"unified_read_pool_3\",tid=",
        "tikv_scheduler_discard_ratio 0",
        "tikv_engine_write_stall{db=\"raft\",type=\"write_stall_max\"} 0",
        "process_resident_memory_bytes 8589934592",
        "tikv_server_memory_quota_bytes 34359738368",
    ] {
        assert!(text.contains(needle), "{needle} missing from\n{text}");
    }
    let bucket_lines = text
        .lines()
        .filter(|l| l.contains("_bucket{type=\"write\""))
        .count();
    assert_eq!(bucket_lines, 33);
    // ServerIsBusy is registered on first use: absent while the fake is not busy.
    assert!(!text.contains("tikv_scheduler_too_busy_total"), "{text}");
    // TiKV <= 6.1: truncated thread names, one series per thread; no memory quota.
    a.set_old_version(true);
    let old = a.render_now();
    assert_eq!(old.matches("{name=\"unified_read_po\",tid=").count(), 4);
    assert!(!old.contains("tikv_server_memory_quota_bytes"), "{old}");
    let mut child = Command::new(support::prometheus::promtool_bin())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool (apt-get install prometheus)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    // Exit 1 = unparseable; 3 = lint findings. The only accepted findings are TiKV's own names
    // `tikv_raftstore_region_count` (a gauge ending in "_count") and
    // `tikv_thread_cpu_seconds_total` (a gauge ending in "_total", cluster-signals.md §9.1),
    // which the fake must keep.
    let findings = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let only_known = findings.lines().filter(|l| !l.trim().is_empty()).all(|l| {
        l.starts_with("tikv_raftstore_region_count ")
            || l.starts_with("tikv_thread_cpu_seconds_total ")
    });
    assert!(
        out.status.success() || (out.status.code() == Some(3) && only_known),
        "promtool check metrics: {}\n{findings}",
        out.status
    );
}

#[test]
fn fake_tikv_history_moves_counters_forward() {
    let a = FakeTikv::start();
    a.set_cpu_busy_cores(3.0);
    let t0 = Instant::now();
    let before = a.cpu_seconds();
    let history = a.history("tikv", Duration::from_secs(10), Duration::from_secs(1));
    let after = a.cpu_seconds();
    let wall = t0.elapsed().as_secs_f64();
    // 10 s of history at 3 cores, plus 3 cores for the wall-clock time in between (at most
    // `wall`, however long a loaded machine took).
    let extra = after - before - 30.0;
    assert!(
        (-1e-9..=3.0 * wall + 1e-9).contains(&extra),
        "{before} -> {after} over {wall} s"
    );
    let cpu: Vec<&str> = history
        .lines()
        .filter(|l| l.starts_with("process_cpu_seconds_total{"))
        .collect();
    assert_eq!(cpu.len(), 11, "{history}");
    let instance = format!("instance=\"{}\"", a.instance());
    assert!(
        cpu.iter()
            .all(|l| l.contains("job=\"tikv\"") && l.contains(&instance))
    );
    let values: Vec<f64> = cpu
        .iter()
        .map(|l| l.split(' ').nth(1).unwrap().parse().unwrap())
        .collect();
    assert!(
        values.windows(2).all(|w| (w[1] - w[0] - 3.0).abs() < 1e-9),
        "{values:?}"
    );
}

/// `prometheus.http_config` parsed the way the configuration file is.
fn http_config(yaml: &str) -> tikv_health_exporter::config::HttpClientConfig {
    let text = format!("prometheus:\n  url: http://127.0.0.1:9\n  http_config:\n{yaml}");
    tikv_health_exporter::config::Config::from_yaml(&text)
        .unwrap_or_else(|e| panic!("{e}\n{text}"))
        .prometheus
        .http_config
}

/// What a small local listener sees: the `Authorization` of `authorization` (from a file,
/// re-read at every request, so a rotated token is used at once), every `http_headers` value
/// (literal, secret, from a file), e.g. the `X-Scope-OrgID` a Mimir/Cortex/Thanos tenant needs.
#[tokio::test]
async fn http_config_headers_and_credentials_reach_the_server() {
    let seen: Arc<Mutex<Vec<Request>>> = Arc::default();
    let s2 = seen.clone();
    let server = TestServer::start(move |req: &Request| {
        s2.lock().unwrap().push(req.clone());
        Response::json(r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#)
    });
    let dir = tempfile::tempdir().unwrap();
    let token = dir.path().join("token");
    let tenant = dir.path().join("tenant");
    std::fs::write(&token, "tok-1\n").unwrap();
    std::fs::write(&tenant, " tenant-from-file \n").unwrap();
    let cfg = http_config(&format!(
        "    authorization:\n      credentials_file: {}\n    http_headers:\n      X-Scope-OrgID:\n        values: [tenant-1]\n      X-Extra:\n        values: [a]\n        secrets: [hidden-b]\n        files: [{}]\n",
        token.display(),
        tenant.display()
    ));
    let debug = format!("{cfg:?}");
    assert!(
        !debug.contains("hidden-b") && debug.contains("<secret>"),
        "{debug}"
    );
    let client = PromClient::with_http_config(&server.url(), T, &cfg).unwrap();
    client.query("up").await.unwrap();
    std::fs::write(&token, "tok-2").unwrap();
    client.query("up").await.unwrap();
    let reqs = seen.lock().unwrap().clone();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].header("authorization"), Some("Bearer tok-1"));
    assert_eq!(
        reqs[1].header("authorization"),
        Some("Bearer tok-2"),
        "rotated"
    );
    assert_eq!(reqs[0].header("x-scope-orgid"), Some("tenant-1"));
    let extra: Vec<&str> = reqs[0]
        .headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("x-extra"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert_eq!(extra, ["a", "hidden-b", "tenant-from-file"]);

    // A credentials file that disappears: the query fails naming the file, never the token.
    std::fs::remove_file(&token).unwrap();
    let e = client.query("up").await.unwrap_err().to_string();
    assert!(
        e.contains("authorization.credentials_file") && e.contains(&token.display().to_string()),
        "{e}"
    );
    assert!(!e.contains("tok-"), "{e}");
    assert_eq!(
        seen.lock().unwrap().len(),
        2,
        "nothing sent without credentials"
    );
    // ... and one missing when the client is built fails at once.
    let e = PromClient::with_http_config(&server.url(), T, &cfg)
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("credentials_file"), "{e}");

    // basic_auth with a password from the configuration, a custom authorization type.
    let cfg = http_config("    basic_auth:\n      username: tikv\n      password: pa55\n");
    PromClient::with_http_config(&server.url(), T, &cfg)
        .unwrap()
        .query("up")
        .await
        .unwrap();
    let cfg = http_config("    authorization:\n      type: Token\n      credentials: abc\n");
    PromClient::with_http_config(&server.url(), T, &cfg)
        .unwrap()
        .query("up")
        .await
        .unwrap();
    let reqs = seen.lock().unwrap().clone();
    // base64("tikv:pa55")
    assert_eq!(reqs[2].header("authorization"), Some("Basic dGlrdjpwYTU1"));
    assert_eq!(reqs[3].header("authorization"), Some("Token abc"));
}

/// Combinations Prometheus refuses are refused with the key named (and nothing secret shown).
#[test]
fn http_config_is_validated_like_prometheus_does() {
    for (yaml, key) in [
        (
            "    basic_auth: {username: a, password: topsecret}\n    authorization: {credentials: x}\n",
            "prometheus.http_config.authorization",
        ),
        (
            "    basic_auth: {password: topsecret, password_file: /p}\n",
            "prometheus.http_config.basic_auth.password_file",
        ),
        (
            "    authorization: {type: Basic, credentials: topsecret}\n",
            "prometheus.http_config.authorization.type",
        ),
        (
            "    http_headers:\n      Authorization:\n        secrets: [topsecret]\n",
            "prometheus.http_config.http_headers.Authorization",
        ),
        (
            "    http_headers:\n      X-Empty: {}\n",
            "prometheus.http_config.http_headers.X-Empty",
        ),
        (
            "    tls_config: {cert_file: /c.pem}\n",
            "prometheus.http_config.tls_config",
        ),
        (
            "    oauth2: {client_id: x}\n",
            "prometheus.http_config.oauth2",
        ),
        (
            "    authorization: {credentials: \"top\\u0001secret\"}\n",
            "prometheus.http_config.authorization.credentials",
        ),
        (
            "    http_headers:\n      X-A:\n        secrets: [\"topsecret\\r\\nX-B: 1\"]\n",
            "prometheus.http_config.http_headers.X-A",
        ),
    ] {
        let text = format!("prometheus:\n  url: http://127.0.0.1:9\n  http_config:\n{yaml}");
        let e = tikv_health_exporter::config::Config::from_yaml(&text).unwrap_err();
        assert_eq!(e.key, key, "{yaml}: {e}");
        assert!(!e.to_string().contains("topsecret"), "{e}");
    }
}
