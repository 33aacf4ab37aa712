//! Exporter benchmarks at 1000 stores × every built-in invariant: scrape (exposition) cost
//! in-process with criterion (uncached render, conversion, gzip; the cached `/metrics`), and,
//! with the real binary against the fake PD and a real Prometheus holding 1000 TiKVs' series
//! (`tests/support/tikv_fleet.rs`): scrape latency, peak RSS, PD requests and bytes per poll,
//! Prometheus queries per poll, store-down detection latency, and the scrape over TLS with basic auth
//! (`--web.config.file`). Printed as a report after the criterion run.

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use tikv_health_exporter::domain::{HotFlow, Scope};
use tikv_health_exporter::exposition::View;
use tikv_health_exporter::exposition::cache::CachedMetrics;
use tikv_health_exporter::exposition::format::{self, Format};
use tikv_health_exporter::exposition::metrics::{BuildInfo, registry, render, render_text};
use tikv_health_exporter::exposition::process::ProcessCollector;
use tikv_health_exporter::invariants::catalog::BUILTINS;
use tikv_health_exporter::invariants::engine::Phase;
use tikv_health_exporter::logs::ingest::EventHistory;
use tikv_health_exporter::logs::source::LogRegistry;
use tikv_health_exporter::snapshot::{InvariantView, Published, Snapshot, SourceHealth, StoreView};

#[path = "../tests/support/mod.rs"]
mod support;

use support::exporter::{Exporter, sample};
use support::fake_pd::{FakePd, cluster};
use support::fake_tikv::FakeTikv;
use support::https::{Https, basic};
use support::prometheus::RealPrometheus;
use support::tikv_fleet::TikvFleet;

const STORES: u64 = 1000;

fn snapshot(stores: u64) -> Snapshot {
    // Every built-in of the catalog: the store-scoped ones once per store, the others once.
    let mut invariants = Vec::new();
    for builtin in &BUILTINS {
        let ids: Vec<String> = match builtin.scope {
            Scope::Store => (1..=stores).map(|id| id.to_string()).collect(),
            Scope::Cluster => vec![String::new()],
        };
        for (n, id) in ids.into_iter().enumerate() {
            let firing = n % 97 == 96;
            invariants.push(InvariantView {
                name: builtin.name.into(),
                store: id,
                severity: builtin.severity,
                state: if firing { Phase::Firing } else { Phase::Ok },
                unknown: false,
                since: firing.then_some(1.7e9),
                value: Some(0.42),
                op: builtin.op,
                threshold: builtin.threshold,
                clear_threshold: None,
                grace_seconds: builtin.grace.as_secs_f64(),
                message: "0.42 within 0.7 (threshold)".into(),
                description: "".into(),
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
    let cached = CachedMetrics::new(view.clone(), BuildInfo::current(), None);
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
    // What `/metrics` serves: the snapshot part rendered (and compressed) once per poll, the
    // live part at every scrape. These measure scrapes between two polls.
    g.bench_function("cached_text_1000_stores", |b| {
        b.iter(|| black_box(cached.body(Format::Text)))
    });
    g.bench_function("cached_text_gzip_1000_stores", |b| {
        b.iter(|| black_box(cached.gzipped(Format::Text)))
    });
    g.bench_function("cached_openmetrics_gzip_1000_stores", |b| {
        b.iter(|| black_box(cached.gzipped(Format::OpenMetrics1)))
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

/// A real Prometheus scraping `fleet` (1000 TiKVs behind one target) every 15 s, and the
/// moment it has two scrapes of every instance (so that `rate()` has points).
fn prometheus_over(fleet: &TikvFleet) -> RealPrometheus {
    let config = format!(
        "global:\n  scrape_interval: 15s\n  evaluation_interval: 15s\n\
         scrape_configs:\n  - job_name: tikv\n    honor_labels: true\n    scrape_timeout: 14s\n\
         \x20   static_configs:\n      - targets: ['{}']\n",
        fleet.target()
    );
    let prom = RealPrometheus::launch_config(&config, &[], "");
    // Prometheus shares this machine's cores with the exporter here (in production it runs
    // elsewhere): ingesting 1000 TiKVs' series every 15 s must not slow the exporter's polls.
    let _ = std::process::Command::new("renice")
        .args(["-n", "19", "-p", &prom.pid().to_string()])
        .output();
    let query =
        "count(count_over_time(tikv_grpc_msg_duration_seconds_count{type=\"kv_get\"}[1m]) >= 2)";
    support::wait::until(
        "Prometheus to hold two scrapes of every TiKV",
        Duration::from_secs(120),
        || {
            let answer = prom.query_blocking(query);
            match support::prometheus::result(&answer).first() {
                Some(v) if support::prometheus::value_of(v) >= STORES as f64 => Ok(()),
                _ => Err(format!("{answer}")),
            }
        },
    );
    prom
}

/// End-to-end measurements with the real binary, every built-in invariant enabled (PD-based
/// ones against the fake PD, Prometheus-based ones against a real Prometheus holding 1000
/// TiKVs' series); printed, and recorded in BENCHMARKS.md.
fn end_to_end() {
    let pd = FakePd::with_stores(&cluster(STORES));
    let tikv = FakeTikv::start();
    tikv.set_write_latency(200.0, 0.004);
    let fleet = TikvFleet::start(
        &tikv,
        cluster(STORES)
            .iter()
            .map(|s| s.status_address.clone())
            .collect(),
    );
    let prom = prometheus_over(&fleet);
    let poll = Duration::from_secs(1);
    let e = Exporter::start(&[
        "--pd.endpoints".into(),
        pd.url(),
        "--prometheus.url".into(),
        prom.url(),
        "--poll-interval".into(),
        "1s".into(),
        "--web.enable-openmetrics".into(),
    ]);
    e.wait_ready();
    // PD and Prometheus traffic per poll over 10 polls (health once per 30 s).
    pd.clear_requests();
    let queries_before = prom.instant_queries();
    std::thread::sleep(poll * 10 + Duration::from_millis(100));
    let queries = prom.instant_queries() - queries_before;
    let reqs = pd.requests();
    let mut by_path = std::collections::BTreeMap::<String, usize>::new();
    for r in &reqs {
        *by_path.entry(r.path_only().to_owned()).or_default() += 1;
    }
    let body = support::fake_pd::stores_body(&cluster(STORES)).len();
    println!(
        "PD: {} requests in 10 polls {by_path:?}; /stores body {} bytes; /regions requested: {}",
        reqs.len(),
        body,
        pd.regions_requested()
    );
    let prometheus_based = BUILTINS
        .iter()
        .filter(|b| b.default_query().is_some())
        .count();
    let polls = by_path.get("/pd/api/v1/stores").copied().unwrap_or(0);
    println!(
        "Prometheus: {queries} instant queries in {polls} polls (one /stores each); \
         {prometheus_based} Prometheus-based built-ins"
    );
    println!(
        "RSS after 10 polls, before any scrape: {} KiB, peak RSS {} KiB",
        rss_kib(e.pid(), "VmRSS:"),
        rss_kib(e.pid(), "VmHWM:")
    );
    let prometheus_accept = "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
    let pid = e.pid();
    let scrapes = |what: &str, headers: &[(&str, &str)], n: usize, every: Duration| {
        let mut times = Vec::new();
        let mut size = 0;
        for _ in 0..n {
            let t = Instant::now();
            size = e.raw("GET", "/metrics", headers).body.len();
            times.push(t.elapsed());
            std::thread::sleep(every.saturating_sub(t.elapsed()));
        }
        times.sort();
        println!(
            "scrape over HTTP at {STORES} stores, {what}: p50 {:?}, p99 {:?}, max {:?}, {} bytes ({n} scrapes, one every {every:?})",
            times[times.len() / 2],
            times[times.len() * 99 / 100],
            times[times.len() - 1],
            size,
        );
    };
    // What Prometheus asks (its Accept header, gzip), a scrape every 50 ms across 10 polls
    // (so scrapes right after a poll are counted), and the RSS it leaves: a Prometheus-scraped
    // exporter keeps only that format.
    scrapes(
        "OpenMetrics gzip (Prometheus)",
        &[("Accept", prometheus_accept), ("Accept-Encoding", "gzip")],
        200,
        Duration::from_millis(50),
    );
    println!(
        "RSS after Prometheus-style scrapes only: {} KiB, peak RSS {} KiB",
        rss_kib(pid, "VmRSS:"),
        rss_kib(pid, "VmHWM:")
    );
    let metrics = e.metrics();
    for line in metrics
        .lines()
        .filter(|l| l.starts_with("tikv_health_exporter_poll_duration_seconds{"))
    {
        println!("{line}");
    }
    let violations = metrics
        .lines()
        .filter(|l| l.starts_with("tikv_invariant_violation{"))
        .count();
    let unknown = metrics
        .lines()
        .filter(|l| l.starts_with("tikv_invariant_unknown{") && l.ends_with(" 1"))
        .count();
    println!("invariant series: {violations} (unknown: {unknown})");
    // Then every other format and coding, back to back.
    for (what, headers) in [
        ("text 0.0.4", vec![]),
        ("text 0.0.4 gzip", vec![("Accept-Encoding", "gzip")]),
        ("OpenMetrics", vec![("Accept", prometheus_accept)]),
    ] {
        scrapes(what, &headers, 50, Duration::ZERO);
    }
    println!(
        "RSS after every format and coding: {} KiB, peak RSS {} KiB",
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
/// connection (handshake) each time; kept-alive also gzipped (as Prometheus asks).
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
    let gzipped = [headers[0], ("Accept-Encoding", "gzip")];
    for (what, headers) in [("", &headers[..]), (", gzip", &gzipped[..])] {
        let mut conn = client.connect(e.addr()).unwrap();
        let mut size = 0;
        let (p50, p99) = percentiles(|| {
            let a = conn.get("/metrics", headers).unwrap();
            assert_eq!(a.status, 200);
            // The bytes on the wire (a gzipped body is not text).
            size = a
                .header("content-length")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
        });
        println!(
            "scrape over TLS + basic auth{what} at {STORES} stores, kept-alive connection: p50 {p50:?}, p99 {p99:?}, {size} bytes"
        );
    }
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
