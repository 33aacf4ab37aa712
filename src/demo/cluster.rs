//! A simulated TiKV cluster for `demo`: a PD-API compatible HTTP server on loopback (the v8.1
//! JSON shapes of `/stores`, `/members`, `/health`, `/config/schedule`, `/gc/safepoint`,
//! `/min-resolved-ts`, `/schedulers` with v8.1's default schedulers and the evict-slow-store
//! list (`evict-stores` always `null` before v8.5.5; no evict-leader, so its list is 404), and
//! the PD leader's own `/metrics`: region counts, etcd; cluster-signals.md §3, §6, §8), per-store TiKV metric
//! endpoints (write-latency histogram, process CPU and quota) for a Prometheus to scrape, and a
//! TiKV-format log file written as things happen.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::http_server::sync_handler;

/// One simulated store.
#[derive(Clone, Debug)]
pub struct SimStore {
    /// Store id.
    pub id: u64,
    /// PD `state_name`.
    pub state: String,
    /// Capacity in GiB.
    pub capacity_gib: f64,
    /// Available space in GiB.
    pub available_gib: f64,
    /// Leaders on the store.
    pub leaders: u64,
    /// PD slow score.
    pub slow_score: u64,
    /// Write p99 the metrics endpoint reports, in seconds.
    pub write_latency: f64,
    /// CPU cores busy (quota 8).
    pub cpu_cores: f64,
    /// Address of this store's metrics endpoint (its status address).
    pub status_addr: Option<SocketAddr>,
    /// When the last heartbeat was sent; frozen while Disconnected.
    pub last_heartbeat: std::time::SystemTime,
}

/// What the simulated PD says about the cluster beyond its stores.
#[derive(Clone, Debug, Default)]
pub struct SimPd {
    /// A TiCDC changefeed's service safe point holding GC this many seconds back (`None`: GC
    /// runs, 10 minutes of history).
    pub gc_held_secs: Option<u64>,
    /// Regions with a down peer, each also missing a replica (`pd_regions_status`).
    pub unhealthy_regions: u64,
}

/// The simulated cluster state, shared by its servers and the scenario.
pub struct SimCluster {
    stores: Mutex<Vec<SimStore>>,
    pd: Mutex<SimPd>,
    started: Instant,
    log: Mutex<std::fs::File>,
    log_path: PathBuf,
    /// Per store: write requests observed in each latency bucket, CPU seconds, and when they
    /// were last advanced (at each scrape).
    counters: Mutex<Vec<Counters>>,
    /// The simulated PD's URL (what its member advertises), once it listens.
    pd_url: Mutex<String>,
    /// WAL fsyncs the simulated PD's etcd has made (2 ms each, 20 a second).
    fsyncs: Mutex<(f64, Instant)>,
}

/// Latency buckets of the simulated gRPC histogram: 50 µs · 2^k, k < 22 (TiKV's
/// `exponential_buckets(5e-5, 2.0, 22)` for `tikv_grpc_msg_duration_seconds`).
const BUCKETS: usize = 22;

fn bucket_bound(k: usize) -> f64 {
    0.00005 * 2f64.powi(k as i32)
}

/// The simulated gRPC histogram (TiKV's `tikv_grpc_msg_duration_seconds`).
const GRPC: &str = "tikv_grpc_msg_duration_seconds";

/// Appends the `type=ty` series of the gRPC histogram with these per-bucket counts.
fn grpc_series(out: &mut String, ty: &str, counts: &[f64; BUCKETS]) {
    let labels = format!("priority=\"unknown\",type=\"{ty}\"");
    let mut cumulative = 0.0;
    let mut sum = 0.0;
    for (k, n) in counts.iter().enumerate() {
        cumulative += n;
        sum += n * bucket_bound(k);
        out.push_str(&format!(
            "{GRPC}_bucket{{{labels},le=\"{}\"}} {cumulative}\n",
            bucket_bound(k)
        ));
    }
    out.push_str(&format!(
        "{GRPC}_bucket{{{labels},le=\"+Inf\"}} {cumulative}\n\
         {GRPC}_sum{{{labels}}} {sum}\n\
         {GRPC}_count{{{labels}}} {cumulative}\n"
    ));
}

/// The write request types the simulated stores serve (half of the writes each).
const WRITE_TYPES: [&str; 2] = ["kv_prewrite", "kv_commit"];

/// What one store's metrics endpoint has counted so far.
#[derive(Clone, Debug)]
struct Counters {
    buckets: [f64; BUCKETS],
    cpu_seconds: f64,
    at: Instant,
}

fn gib(v: f64) -> String {
    format!("{v:.1}GiB")
}

impl SimCluster {
    /// Three healthy stores; the log goes to `log_path`.
    pub fn new(log_path: &Path) -> std::io::Result<Arc<SimCluster>> {
        let log = std::fs::File::create(log_path)?;
        let stores = (1..=3)
            .map(|id| SimStore {
                id,
                state: "Up".into(),
                capacity_gib: 500.0,
                available_gib: 300.0,
                leaders: 40,
                slow_score: 1,
                write_latency: 0.004,
                cpu_cores: 1.5,
                status_addr: None,
                last_heartbeat: std::time::SystemTime::now(),
            })
            .collect();
        Ok(Arc::new(SimCluster {
            stores: Mutex::new(stores),
            pd: Mutex::new(SimPd::default()),
            started: Instant::now(),
            log: Mutex::new(log),
            log_path: log_path.to_owned(),
            counters: Mutex::new(
                (0..3)
                    .map(|_| Counters {
                        buckets: [0.0; BUCKETS],
                        cpu_seconds: 0.0,
                        at: Instant::now(),
                    })
                    .collect(),
            ),
            pd_url: Mutex::new("http://pd-0:2379".into()),
            fsyncs: Mutex::new((0.0, Instant::now())),
        }))
    }

    /// The log file the simulated TiKVs write.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// Changes one store.
    pub fn update(&self, id: u64, f: impl FnOnce(&mut SimStore)) {
        let mut stores = self.stores.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = stores.iter_mut().find(|s| s.id == id) {
            f(s);
        }
    }

    /// Changes what the simulated PD says about the cluster.
    pub fn update_pd(&self, f: impl FnOnce(&mut SimPd)) {
        f(&mut self.pd.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// A copy of the simulated PD's cluster-wide state.
    fn pd_state(&self) -> SimPd {
        self.pd.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// A copy of the stores.
    pub fn stores(&self) -> Vec<SimStore> {
        self.stores
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Appends TiKV/PD-format log lines (timestamped now, in UTC).
    pub fn log(&self, lines: &[String]) {
        let ts = chrono::Utc::now().format("%Y/%m/%d %H:%M:%S%.3f +00:00");
        let mut f = self.log.lock().unwrap_or_else(|p| p.into_inner());
        for l in lines {
            let _ = writeln!(f, "[{ts}] {l}");
        }
        let _ = f.flush();
    }

    fn stores_json(&self) -> Value {
        let now = std::time::SystemTime::now();
        let mut stores = self.stores.lock().unwrap_or_else(|p| p.into_inner());
        let list: Vec<Value> = stores
            .iter_mut()
            .map(|s| {
                if s.state == "Up" {
                    s.last_heartbeat = now;
                }
                let hb = s
                    .last_heartbeat
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64);
                let status_address = s
                    .status_addr
                    .map_or(format!("tikv-{}:20180", s.id), |a| a.to_string());
                json!({
                    "store": {
                        "id": s.id,
                        "address": format!("tikv-{}:20160", s.id),
                        "version": "8.1.0",
                        "status_address": status_address,
                        "start_timestamp": hb / 1_000_000_000 - 3600,
                        "last_heartbeat": hb,
                        "node_state": 1,
                        "state_name": s.state,
                    },
                    "status": {
                        "capacity": gib(s.capacity_gib),
                        "available": gib(s.available_gib),
                        "leader_count": s.leaders,
                        "region_count": 120,
                        "slow_score": s.slow_score,
                    }
                })
            })
            .collect();
        json!({"count": list.len(), "stores": list})
    }

    fn pd_response(&self, path: &str) -> (u16, String) {
        let url = self
            .pd_url
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let member =
            |name: &str, id: u64| json!({"name": name, "member_id": id, "client_urls": [url]});
        match path {
            "/pd/api/v1/stores" => (200, self.stores_json().to_string()),
            "/pd/api/v1/members" => (
                200,
                json!({
                    "members": [member("pd-0", 1)],
                    "leader": member("pd-0", 1),
                    "etcd_leader": member("pd-0", 1),
                })
                .to_string(),
            ),
            "/pd/api/v1/health" => (
                200,
                json!([{"name": "pd-0", "member_id": 1, "client_urls": [url], "health": true}])
                    .to_string(),
            ),
            "/metrics" => (200, self.pd_metrics_text()),
            "/pd/api/v1/gc/safepoint" => {
                // TiDB's GC worker keeps 10 minutes of history, unless a changefeed holds it.
                let worker = tso_ago(600);
                let mut services = vec![json!({"service_id": "gc_worker", "expired_at": i64::MAX, "safe_point": worker})];
                let sp = match self.pd_state().gc_held_secs {
                    Some(held) => {
                        let sp = tso_ago(held);
                        let expires = unix_now() as i64 + 86400;
                        services.push(json!({"service_id": "ticdc-default-1139748333935545375",
                                             "expired_at": expires, "safe_point": sp}));
                        sp
                    }
                    None => worker,
                };
                (
                    200,
                    json!({"service_gc_safe_points": services,
                           "min_service_gc_safe_point": sp, "gc_safe_point": sp})
                    .to_string(),
                )
            }
            // v8.1's default schedulers (PD >= v8.0), in PD's random order.
            "/pd/api/v1/schedulers" => {
                let mut names = [
                    "balance-region-scheduler",
                    "balance-leader-scheduler",
                    "balance-hot-region-scheduler",
                    "evict-slow-store-scheduler",
                ];
                let turn = self.elapsed() as usize % names.len();
                names.rotate_left(turn);
                (200, json!(names).to_string())
            }
            // v7.6–v8.5.4: the targets are never listed.
            "/pd/api/v1/scheduler-config/evict-slow-store-scheduler/list" => (
                200,
                json!({"disabled": false, "recovery-duration": 1800, "evict-stores": null})
                    .to_string(),
            ),
            "/pd/api/v1/min-resolved-ts" => {
                let stores: serde_json::Map<String, Value> = self
                    .stores()
                    .iter()
                    .map(|s| {
                        // A store that stopped heartbeating stops advancing its resolved ts.
                        let hb = s
                            .last_heartbeat
                            .duration_since(std::time::UNIX_EPOCH)
                            .map_or(0.0, |d| d.as_secs_f64());
                        let ts = crate::domain::tso_from_unix_seconds(hb - 1.0);
                        (s.id.to_string(), json!(ts))
                    })
                    .collect();
                (
                    200,
                    json!({"is_real_time": true, "min_resolved_ts": tso_ago(1), "persist_interval": "1s",
                           "stores_min_resolved_ts": stores})
                    .to_string(),
                )
            }
            "/pd/api/v1/hotspot/regions/write" => (200, self.hot_regions_json(true).to_string()),
            "/pd/api/v1/hotspot/regions/read" => (200, self.hot_regions_json(false).to_string()),
            "/pd/api/v1/leader" => (200, member("pd-0", 1).to_string()),
            "/pd/api/v1/config/schedule" => (
                200,
                json!({"max-store-down-time": "30m0s", "high-space-ratio": 0.7, "low-space-ratio": 0.8})
                    .to_string(),
            ),
            _ => (404, "\"404 page not found\"".into()),
        }
    }

    /// The simulated PD leader's own metrics (the families the exporter reads): its roles, no
    /// unhealthy region, an etcd WAL fsync histogram of 2 ms fsyncs advanced with wall-clock
    /// time, and a small database well under its 8 GiB quota.
    fn pd_metrics_text(&self) -> String {
        let n = {
            let mut f = self.fsyncs.lock().unwrap_or_else(|p| p.into_inner());
            f.0 += (20.0 * f.1.elapsed().as_secs_f64()).floor();
            f.1 = Instant::now();
            f.0
        };
        let mut out = String::from(
            "# TYPE service_member_role gauge
service_member_role{service=\"PD\"} 1
             # TYPE etcd_server_is_leader gauge
etcd_server_is_leader 1
             # TYPE etcd_server_quota_backend_bytes gauge
etcd_server_quota_backend_bytes 8.589934592e+09
             # TYPE etcd_mvcc_db_total_size_in_bytes gauge
etcd_mvcc_db_total_size_in_bytes 2.1336064e+08
             # TYPE etcd_disk_wal_fsync_duration_seconds histogram
",
        );
        for k in 0..14 {
            let le = 0.001 * 2f64.powi(k);
            let c = if le >= 0.002 { n } else { 0.0 };
            out.push_str(&format!(
                "etcd_disk_wal_fsync_duration_seconds_bucket{{le=\"{le}\"}} {c}
"
            ));
        }
        out.push_str(&format!(
            "etcd_disk_wal_fsync_duration_seconds_bucket{{le=\"+Inf\"}} {n}
             etcd_disk_wal_fsync_duration_seconds_count {n}
# TYPE pd_regions_status gauge
"
        ));
        let unhealthy = self.pd_state().unhealthy_regions;
        for t in crate::domain::REGION_STATUS_TYPES {
            let n = match t {
                "down-peer-region-count" | "miss-peer-region-count" => unhealthy,
                _ => 0,
            };
            out.push_str(&format!(
                "pd_regions_status{{type=\"{t}\"}} {n}
"
            ));
        }
        out.push_str("# TYPE pd_hotspot_status gauge\n");
        for s in self.stores() {
            let (id, (bytes, keys)) = (s.id, hot_write_flow(s.id));
            for (t, v) in [
                ("hot_write_region_as_peer", 1.0),
                ("total_write_bytes_as_peer", bytes),
                ("total_write_keys_as_peer", keys),
                ("hot_read_region_as_peer", 0.0),
                ("total_read_bytes_as_peer", 0.0),
                ("total_read_keys_as_peer", 0.0),
            ] {
                out.push_str(&format!(
                    "pd_hotspot_status{{address=\"tikv-{id}:20160\",store=\"{id}\",type=\"{t}\"}} {v}\n"
                ));
            }
        }
        out
    }

    /// `/hotspot/regions/{write,read}` as PD renders it (cluster-signals.md §5): one hot
    /// written region per store (region `1000 + id`), nothing read; the same flows as
    /// `pd_hotspot_status`.
    fn hot_regions_json(&self, write: bool) -> Value {
        let mut as_peer = serde_json::Map::new();
        for s in self.stores() {
            let (bytes, keys) = if write {
                hot_write_flow(s.id)
            } else {
                (0.0, 0.0)
            };
            let stats: Vec<Value> = if write {
                vec![
                    json!({"store_id": s.id, "stores": [s.id], "is_leader": true,
                            "is_learner": false, "region_id": 1000 + s.id, "hot_degree": 5,
                            "flow_bytes": bytes, "flow_keys": keys, "flow_query": 0,
                            "anti_count": 2, "last_update_time": "2024-12-25T03:41:23Z"}),
                ]
            } else {
                Vec::new()
            };
            as_peer.insert(
                s.id.to_string(),
                json!({"store_bytes": bytes, "store_keys": keys, "store_query": 0,
                       "total_flow_bytes": bytes, "total_flow_keys": keys, "total_flow_query": 0,
                       "regions_count": stats.len(), "statistics": stats}),
            );
        }
        json!({"as_peer": as_peer, "as_leader": as_peer})
    }

    /// TiKV metrics of one store: a real cumulative gRPC duration histogram
    /// (`tikv_grpc_msg_duration_seconds{type, priority}`, 50 prewrites and 50 commits a second,
    /// each observed in the bucket of the store's current latency, and 200 gets a second at
    /// 1 ms), process CPU and the CPU quota, the CPU of its raftstore, apply and unified read
    /// pool threads (shares of the process CPU), no flow control, 4 of 16 GiB of memory;
    /// counters advanced with wall-clock time at each scrape.
    fn metrics_text(&self, id: u64) -> String {
        let Some(s) = self.stores().into_iter().find(|s| s.id == id) else {
            return String::new();
        };
        let (buckets, cpu) = {
            let mut c = self.counters.lock().unwrap_or_else(|p| p.into_inner());
            let e = &mut c[(id - 1) as usize];
            let dt = e.at.elapsed().as_secs_f64();
            let slot = (0..BUCKETS)
                .find(|&k| bucket_bound(k) >= s.write_latency)
                .unwrap_or(BUCKETS - 1);
            e.buckets[slot] += 100.0 * dt;
            e.cpu_seconds += s.cpu_cores * dt;
            e.at = Instant::now();
            (e.buckets, e.cpu_seconds)
        };
        let mut out = format!("# TYPE {GRPC} histogram\n");
        for ty in WRITE_TYPES {
            let halves = buckets.map(|n| (n / 2.0).floor());
            grpc_series(&mut out, ty, &halves);
        }
        // Reads: 200 point gets a second at 1 ms (cluster-signals.md §9.2).
        let mut reads = [0.0; BUCKETS];
        let slot = (0..BUCKETS)
            .find(|&k| bucket_bound(k) >= 0.001)
            .unwrap_or(0);
        reads[slot] = (200.0 * self.elapsed()).floor();
        grpc_series(&mut out, "kv_get", &reads);
        out.push_str(&format!(
            "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total {cpu}\n\
             # TYPE tikv_server_cpu_cores_quota gauge\ntikv_server_cpu_cores_quota 8\n"
        ));
        // Thread pools (§9.1): a quarter of the CPU in the 2 raftstore threads, 15 % in the 2
        // apply threads, a quarter in the 4 unified read pool threads.
        out.push_str("# TYPE tikv_thread_cpu_seconds_total gauge\n");
        let threads = [
            ("raftstore_{id}_", 2, 0.25),
            ("apply_", 2, 0.15),
            ("unified_read_pool_", 4, 0.25),
        ];
        let mut tid = 1000 * id;
        for (prefix, n, share) in threads {
            for i in 0..n {
                tid += 1;
                let name = prefix.replace("{id}", &id.to_string());
                out.push_str(&format!(
                    "tikv_thread_cpu_seconds_total{{name=\"{name}{i}\",tid=\"{tid}\"}} {}\n",
                    cpu * share / n as f64
                ));
            }
        }
        // Flow control (§9.3) and memory (§9.4, TiKV >= 8.0): no back-pressure, 4 of 16 GiB.
        out.push_str(
            "# TYPE tikv_scheduler_discard_ratio gauge\ntikv_scheduler_discard_ratio 0\n\
             # TYPE tikv_engine_write_stall gauge\n\
             tikv_engine_write_stall{db=\"raft\",type=\"write_stall_max\"} 0\n\
             # TYPE process_resident_memory_bytes gauge\nprocess_resident_memory_bytes 4294967296\n\
             # TYPE tikv_server_memory_quota_bytes gauge\ntikv_server_memory_quota_bytes 17179869184\n",
        );
        out
    }

    /// Seconds since the cluster started.
    pub fn elapsed(&self) -> f64 {
        self.started.elapsed().as_secs_f64()
    }
}

/// Now, Unix seconds.
fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// A TSO `secs` seconds ago.
fn tso_ago(secs: u64) -> u64 {
    crate::domain::tso_from_unix_seconds(unix_now() - secs as f64)
}

/// Answers a path with (status, body, content type).
type Answer = Arc<dyn Fn(&str) -> (u16, String, &'static str) + Send + Sync>;

/// Serves `answer` on `listener` until `cancel`.
fn serve(listener: TcpListener, answer: Answer, cancel: CancellationToken) {
    let handler = sync_handler(move |req: Request<Incoming>| {
        let (status, body, ctype) = answer(req.uri().path());
        let mut r = Response::new(Full::new(Bytes::from(body)));
        *r.status_mut() = hyper::StatusCode::from_u16(status).unwrap_or_default();
        r.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static(ctype),
        );
        r
    });
    tokio::spawn(crate::http_server::serve(
        vec![listener],
        handler,
        cancel,
        crate::http_server::ServeOptions::new(std::time::Duration::from_secs(1)),
    ));
}

/// Starts the PD API on a loopback port; returns its URL.
pub async fn start_pd(sim: Arc<SimCluster>, cancel: CancellationToken) -> std::io::Result<String> {
    let l = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", l.local_addr()?);
    *sim.pd_url.lock().unwrap_or_else(|p| p.into_inner()) = url.clone();
    serve(
        l,
        Arc::new(move |path: &str| {
            let (code, body) = sim.pd_response(path);
            let ctype = if path == "/metrics" {
                "text/plain; version=0.0.4"
            } else {
                "application/json"
            };
            (code, body, ctype)
        }),
        cancel,
    );
    Ok(url)
}

/// The simulated hot write flow of store `id`: (bytes/s, keys/s).
fn hot_write_flow(id: u64) -> (f64, f64) {
    let bytes = (id * 256 * 1024) as f64;
    (bytes, bytes / 64.0)
}

/// Starts one TiKV metrics endpoint per store (their status addresses); returns the addresses.
pub async fn start_metrics(
    sim: Arc<SimCluster>,
    cancel: CancellationToken,
) -> std::io::Result<Vec<SocketAddr>> {
    let mut addrs = Vec::new();
    for s in sim.stores() {
        let l = TcpListener::bind("127.0.0.1:0").await?;
        let addr = l.local_addr()?;
        sim.update(s.id, |st| st.status_addr = Some(addr));
        let sim2 = sim.clone();
        let id = s.id;
        serve(
            l,
            Arc::new(move |path: &str| match path {
                "/metrics" => (200, sim2.metrics_text(id), "text/plain; version=0.0.4"),
                _ => (404, "not found\n".into(), "text/plain"),
            }),
            cancel.clone(),
        );
        addrs.push(addr);
    }
    Ok(addrs)
}
