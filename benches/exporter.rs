//! Exporter benchmarks at 1000 stores: scrape (exposition) cost in-process with criterion, and,
//! with the real binary against the fake PD: scrape latency, peak RSS, PD requests and bytes
//! per poll, store-down detection latency, and the scrape over TLS with basic auth
//! (`--web.config.file`). Printed as a report after the criterion run.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use tikv_health_exporter::domain::{HotFlow, Op, Severity};
use tikv_health_exporter::exposition::View;
use tikv_health_exporter::exposition::format;
use tikv_health_exporter::exposition::metrics::{BuildInfo, registry, render, render_text};
use tikv_health_exporter::exposition::process::ProcessCollector;
use tikv_health_exporter::invariants::engine::Phase;
use tikv_health_exporter::logs::ingest::EventHistory;
use tikv_health_exporter::logs::source::LogRegistry;
use tikv_health_exporter::snapshot::{InvariantView, Published, Snapshot, SourceHealth, StoreView};

#[path = "../tests/support/mod.rs"]
mod support;

use support::exporter::{Exporter, sample};
use support::fake_pd::{FakePd, cluster};
use support::https::{Https, basic};

const STORES: u64 = 1000;

fn snapshot(stores: u64) -> Snapshot {
    let mut invariants = Vec::new();
    for (name, sev) in [
        ("cpu_usage", Severity::Warning),
        ("disk_low_space", Severity::Critical),
        ("disk_usage", Severity::Warning),
        ("store_down", Severity::Critical),
        ("store_slow", Severity::Warning),
        ("write_latency_p99", Severity::Warning),
    ] {
        for id in 1..=stores {
            invariants.push(InvariantView {
                name: name.into(),
                store: id.to_string(),
                severity: sev,
                state: if id % 97 == 0 {
                    Phase::Firing
                } else {
                    Phase::Ok
                },
                unknown: false,
                since: (id % 97 == 0).then_some(1.7e9),
                value: Some(0.42),
                op: Op::Gt,
                threshold: 0.7,
                clear_threshold: None,
                grace_seconds: 60.0,
                message: "0.42 within 0.7 (threshold)".into(),
                description: String::new(),
            });
        }
    }
    let stores = (1..=stores)
        .map(|id| StoreView {
            id: id.to_string(),
            address: format!("tikv-{id}.tikv-peer.ns.svc:20160"),
            status_address: format!("tikv-{id}.tikv-peer.ns.svc:20180"),
            version: "8.1.0".into(),
            engine: "tikv".into(),
            state: "Up".into(),
            last_heartbeat: Some(1.7e9),
            leader_count: Some(1234),
            region_count: Some(3702),
            capacity_bytes: Some(1 << 40),
            available_bytes: Some(1 << 39),
            slow_score: Some(1.0),
            start_timestamp: Some(1.7e9 - 86400.0),
            hot_write: Some(HotFlow {
                regions: 60.0,
                bytes_per_second: 3.0e7,
                keys_per_second: 1.0e5,
            }),
            hot_read: Some(HotFlow::default()),
        })
        .collect();
    let mut sources = std::collections::BTreeMap::new();
    sources.insert(
        "pd".into(),
        SourceHealth {
            up: true,
            last_success: Some(1.7e9),
            last_duration: Some(0.05),
            last_error: None,
        },
    );
    Snapshot {
        invariants,
        stores,
        sources,
        taken_at: 1.7e9,
        max_store_down_time: Some(1800.0),
        ..Snapshot::default()
    }
}

fn scrape(c: &mut Criterion) {
    let logs = Arc::new(LogRegistry::new());
    for i in 1..=3 {
        logs.register(format!("file:tikv-{i}.log"), i.to_string());
    }
    let view = Arc::new(View {
        published: Arc::new(Published::new()),
        logs,
        history: Arc::new(EventHistory::new(1000)),
        notifier: Default::default(),
        http: Default::default(),
    });
    view.published.publish(snapshot(STORES));
    let reg = registry(view, BuildInfo::current(), None);
    let om = render(&reg);
    let text = render_text(&reg);
    let bytes = om.len();
    let mut g = c.benchmark_group("scrape");
    g.throughput(criterion::Throughput::Bytes(bytes as u64));
    // OpenMetrics, as prometheus-client encodes it.
    g.bench_function("render_1000_stores", |b| b.iter(|| black_box(render(&reg))));
    // The text format 0.0.4: the same render, then the conversion.
    g.bench_function("render_text_1000_stores", |b| {
        b.iter(|| black_box(render_text(&reg)))
    });
    g.bench_function("to_text_1000_stores", |b| {
        b.iter(|| black_box(format::to_text(&om)))
    });
    // What a Prometheus scrape costs: the text format, gzipped (fast level, as served).
    g.bench_function("render_text_gzip_1000_stores", |b| {
        b.iter(|| black_box(format::gzip(render_text(&reg).as_bytes())))
    });
    // The compression alone at the served level and at zlib's default (client_golang uses
    // Go's default level).
    g.bench_function("gzip_fast_1000_stores", |b| {
        b.iter(|| black_box(format::gzip(text.as_bytes())))
    });
    g.bench_function("gzip_default_level_1000_stores", |b| {
        b.iter(|| black_box(gzip_at(text.as_bytes(), flate2::Compression::default())))
    });
    // The process_* part of every scrape alone (reads /proc/self/{stat,status,limits,fd}).
    let mut process = prometheus_client::registry::Registry::default();
    process.register_collector(Box::new(ProcessCollector));
    g.bench_function("process_metrics", |b| {
        b.iter(|| black_box(render(&process)))
    });
    g.finish();
    eprintln!(
        "exposition size at {STORES} stores: OpenMetrics {bytes} bytes, text {} bytes, \
         gzip fast {} bytes, gzip default level {} bytes",
        text.len(),
        format::gzip(text.as_bytes()).len(),
        gzip_at(text.as_bytes(), flate2::Compression::default()).len()
    );
}

fn gzip_at(body: &[u8], level: flate2::Compression) -> Vec<u8> {
    use std::io::Write as _;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), level);
    enc.write_all(body).unwrap();
    enc.finish().unwrap()
}

fn rss_kib(pid: u32, field: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(field)?
                .trim()
                .strip_suffix("kB")?
                .trim()
                .parse()
                .ok()
        })
        .unwrap_or(0)
}

/// End-to-end measurements with the real binary; printed, and recorded in BENCHMARKS.md.
fn end_to_end() {
    let pd = FakePd::with_stores(&cluster(STORES));
    let poll = Duration::from_secs(1);
    let e = Exporter::start(&[
        "--pd.endpoints".into(),
        pd.url(),
        "--poll-interval".into(),
        "1s".into(),
        "--web.enable-openmetrics".into(),
    ]);
    e.wait_ready();
    // PD traffic per poll over 10 polls (health once per 30 s).
    pd.clear_requests();
    std::thread::sleep(poll * 10 + Duration::from_millis(100));
    let reqs = pd.requests();
    let stores_reqs = reqs
        .iter()
        .filter(|r| r.path_only() == "/pd/api/v1/stores")
        .count();
    let body = support::fake_pd::stores_body(&cluster(STORES)).len();
    println!(
        "PD: {} requests in 10 polls ({} /stores, others {}); /stores body {} bytes; /regions requested: {}",
        reqs.len(),
        stores_reqs,
        reqs.len() - stores_reqs,
        body,
        pd.regions_requested()
    );
    // Scrape latency through HTTP (each format and coding) and RSS.
    let prometheus_accept = "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
    for (what, headers) in [
        ("text 0.0.4", vec![]),
        ("text 0.0.4 gzip", vec![("Accept-Encoding", "gzip")]),
        ("OpenMetrics", vec![("Accept", prometheus_accept)]),
        (
            "OpenMetrics gzip",
            vec![("Accept", prometheus_accept), ("Accept-Encoding", "gzip")],
        ),
    ] {
        let mut times = Vec::new();
        let mut size = 0;
        for _ in 0..50 {
            let t = Instant::now();
            size = e.raw("GET", "/metrics", &headers).body.len();
            times.push(t.elapsed());
        }
        times.sort();
        println!(
            "scrape over HTTP at {STORES} stores, {what}: p50 {:?}, p99 {:?}, {} bytes",
            times[times.len() / 2],
            times[times.len() * 99 / 100],
            size,
        );
    }
    let pid = e.pid();
    println!(
        "RSS {} KiB, peak RSS {} KiB",
        rss_kib(pid, "VmRSS:"),
        rss_kib(pid, "VmHWM:")
    );
    tls_scrape(&pd);
    // Store-down detection latency: from PD reporting a store Disconnected past the store_down
    // grace (last heartbeat 100 s ago) to the gauge flipping.
    let mut lat = Vec::new();
    for round in 0..10u64 {
        let id = round + 1;
        std::thread::sleep(Duration::from_millis(137 * round % 1000));
        let t = Instant::now();
        pd.set_heartbeat_age(id, Duration::from_secs(100));
        let key = [
            ("name", "store_down"),
            ("store", &*id.to_string()),
            ("severity", "critical"),
        ];
        while sample(&e.metrics(), "tikv_invariant_violation", &key) != Some(1.0) {
            assert!(t.elapsed() < Duration::from_secs(10));
            std::thread::sleep(Duration::from_millis(5));
        }
        lat.push(t.elapsed());
        pd.set_heartbeat_age(id, Duration::ZERO);
    }
    lat.sort();
    println!(
        "store-down detection (poll 1s, 10 trials): min {:?}, median {:?}, max {:?} (goal <= 1.1s)",
        lat[0],
        lat[lat.len() / 2],
        lat[lat.len() - 1]
    );
}

/// p50 and p99 of 50 runs of `f`.
fn percentiles(mut f: impl FnMut()) -> (Duration, Duration) {
    let mut times: Vec<Duration> = (0..50)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    (times[times.len() / 2], times[times.len() * 99 / 100])
}

/// The same scrape through `--web.config.file` (TLS 1.3 + basic auth, bcrypt cost 10 as
/// `htpasswd -B` makes): on one kept-alive connection (as Prometheus scrapes), and with a new
/// connection (handshake) each time.
fn tls_scrape(pd: &FakePd) {
    let dir = tempfile::tempdir().unwrap();
    let ca = support::fake_pd::tls::Ca::new("bench-ca");
    let server = ca.server("exporter", &["127.0.0.1"]);
    std::fs::write(dir.path().join("server.pem"), &server.cert_pem).unwrap();
    std::fs::write(dir.path().join("server-key.pem"), &server.key_pem).unwrap();
    let web = dir.path().join("web.yml");
    let hash = bcrypt::hash("bench-pw", 10).unwrap();
    std::fs::write(
        &web,
        format!(
            "tls_server_config:\n  cert_file: server.pem\n  key_file: server-key.pem\n\
             basic_auth_users:\n  prometheus: {hash}\n"
        ),
    )
    .unwrap();
    let e = Exporter::start(&[
        "--pd.endpoints".into(),
        pd.url(),
        "--poll-interval".into(),
        "1s".into(),
        format!("--web.config.file={}", web.display()),
    ]);
    let client = Https::new(&ca.pem());
    let auth = basic("prometheus", "bench-pw");
    let headers = [("Authorization", auth.as_str())];
    // The first request with the password pays its one bcrypt; later ones hit the cache.
    let t = Instant::now();
    let first = client.get(e.addr(), "/-/healthy", &headers).unwrap();
    assert_eq!(first.status, 200);
    println!(
        "first request with the password (one bcrypt, cost 10, plus the TLS handshake): {:?}",
        t.elapsed()
    );
    support::wait::until(
        "the TLS exporter to be ready",
        support::wait::PATIENCE,
        || match client.get(e.addr(), "/-/ready", &headers) {
            Ok(a) if a.status == 200 => Ok(()),
            other => Err(format!("{other:?}\n{}", e.stderr())),
        },
    );
    let mut conn = client.connect(e.addr()).unwrap();
    let mut size = 0;
    let (p50, p99) = percentiles(|| {
        let a = conn.get("/metrics", &headers).unwrap();
        assert_eq!(a.status, 200);
        size = a.body.len();
    });
    println!(
        "scrape over TLS + basic auth at {STORES} stores, kept-alive connection: p50 {p50:?}, p99 {p99:?}, {size} bytes"
    );
    let (p50, p99) = percentiles(|| {
        let a = client.get(e.addr(), "/metrics", &headers).unwrap();
        assert_eq!(a.status, 200);
    });
    println!(
        "scrape over TLS + basic auth at {STORES} stores, new connection each: p50 {p50:?}, p99 {p99:?}"
    );
}

criterion_group!(benches, scrape);

fn main() {
    benches();
    criterion::Criterion::default()
        .configure_from_args()
        .final_summary();
    end_to_end();
}
