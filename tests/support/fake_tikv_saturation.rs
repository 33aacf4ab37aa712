//! The fake TiKV's saturation metrics, in their real shapes (cluster-signals.md §9):
//! * §9.1 `tikv_thread_cpu_seconds_total{name, tid}` (a gauge that only grows) for the default
//!   thread pools of an 8-core TiKV v8.5 (2 raftstore, 2 apply + 1 low-priority apply, 4
//!   scheduler + 1 high-priority, 5 gRPC, 4 unified read pool threads, 2 RocksDB), or with the
//!   15-character names of TiKV ≤ 6.1 (`sched_worker_po`, `unified_read_po`: one name, one `tid`
//!   per thread);
//! * §9.3 `tikv_scheduler_discard_ratio` (× 1e7), `tikv_engine_write_stall{db, type}` (both
//!   always there), `tikv_scheduler_too_busy_total{type}` (registered on first use: absent until
//!   the fake is made busy);
//! * §9.4 `process_resident_memory_bytes` and `tikv_server_memory_quota_bytes` (TiKV ≥ 8.0 only).

use super::Series;

/// A thread pool of the fake: (pool key used by the setters, v8.5 names, ≤ 6.1 names).
struct Pool {
    key: &'static str,
    names: Vec<String>,
    old_names: Vec<String>,
    /// CPU cores each thread of the pool uses.
    busy: f64,
}

fn pool(key: &'static str, names: Vec<String>, old_names: Vec<String>) -> Pool {
    Pool {
        key,
        names,
        old_names,
        busy: 0.0,
    }
}

fn numbered(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

/// The fake's saturation state.
#[derive(Clone, Debug)]
pub(super) struct Saturation {
    /// Thread names of TiKV ≤ 6.1 (15-character `comm`) and no memory quota metric.
    pub old_version: bool,
    /// `(pool key, thread name, old thread name, busy cores)` per thread, in tid order.
    threads: Vec<(&'static str, String, String, f64)>,
    cpu: Vec<f64>,
    pub discard_ratio: f64,
    pub too_busy_per_sec: f64,
    too_busy: f64,
    pub rss_bytes: f64,
    pub memory_quota_bytes: f64,
}

impl Saturation {
    /// Every pool idle, no back-pressure, 8 GiB resident of a 32 GiB quota.
    pub fn new() -> Self {
        let pools = [
            pool(
                "raftstore",
                numbered("raftstore_1_", 2),
                numbered("raftstore_1_", 2),
            ),
            pool("apply", numbered("apply_", 2), numbered("apply_", 2)),
            pool(
                "apply_low",
                numbered("apply_low_", 1),
                numbered("apply_low_", 1),
            ),
            pool(
                "sched",
                numbered("sched_worker_pool_", 4),
                vec!["sched_worker_po".into(); 4],
            ),
            pool(
                "sched_high",
                numbered("sched_worker_high_", 1),
                vec!["sched_worker_hi".into()],
            ),
            pool(
                "grpc",
                numbered("grpc_server_", 5),
                numbered("grpc_server_", 5),
            ),
            pool(
                "unified_read",
                numbered("unified_read_pool_", 4),
                vec!["unified_read_po".into(); 4],
            ),
            pool(
                "rocksdb",
                vec!["rocksdb:low".into(), "rocksdb:high".into()],
                vec!["rocksdb:low".into(), "rocksdb:high".into()],
            ),
        ];
        let threads: Vec<_> = pools
            .into_iter()
            .flat_map(|p| {
                p.names
                    .into_iter()
                    .zip(p.old_names)
                    .map(move |(n, o)| (p.key, n, o, p.busy))
            })
            .collect();
        let cpu = vec![0.0; threads.len()];
        Saturation {
            old_version: false,
            threads,
            cpu,
            discard_ratio: 0.0,
            too_busy_per_sec: 0.0,
            too_busy: 0.0,
            rss_bytes: 8.0 * (1u64 << 30) as f64,
            memory_quota_bytes: 32.0 * (1u64 << 30) as f64,
        }
    }

    /// Every thread of pool `key` (`raftstore`, `apply`, `apply_low`, `sched`, `sched_high`,
    /// `grpc`, `unified_read`, `rocksdb`) uses `cores` from now on.
    pub fn set_pool_busy(&mut self, key: &str, cores: f64) {
        let mut found = false;
        for t in self.threads.iter_mut().filter(|t| t.0 == key) {
            t.3 = cores;
            found = true;
        }
        assert!(found, "no pool {key}");
    }

    /// Moves the counters `secs` forward.
    pub fn advance(&mut self, secs: f64) {
        for (c, t) in self.cpu.iter_mut().zip(&self.threads) {
            *c += t.3 * secs;
        }
        self.too_busy += self.too_busy_per_sec * secs;
    }

    /// The series, in exposition order.
    pub fn series(&self, out: &mut Vec<Series>) {
        for (i, (t, c)) in self.threads.iter().zip(&self.cpu).enumerate() {
            let name = if self.old_version { &t.2 } else { &t.1 };
            out.push(
                Series::new(
                    "tikv_thread_cpu_seconds_total",
                    "Total cpu seconds of threads.",
                    "gauge",
                    "",
                )
                .label("name", name)
                .label("tid", &(3100 + i).to_string())
                .value(*c),
            );
        }
        out.push(
            Series::new(
                "tikv_scheduler_discard_ratio",
                "ratio of requests discarded by flow controller",
                "gauge",
                "",
            )
            .value((self.discard_ratio * 1e7).round()),
        );
        if self.too_busy > 0.0 {
            out.push(
                Series::new(
                    "tikv_scheduler_too_busy_total",
                    "Total count of scheduler too busy",
                    "counter",
                    "",
                )
                .label("type", "prewrite")
                .value(self.too_busy),
            );
        }
        for db in ["kv", "raft"] {
            for ty in [
                "write_stall_median",
                "write_stall_percentile95",
                "write_stall_percentile99",
                "write_stall_average",
                "write_stall_standard_deviation",
                "write_stall_max",
            ] {
                out.push(
                    Series::new(
                        "tikv_engine_write_stall",
                        "Histogram of write stall",
                        "gauge",
                        "",
                    )
                    .label("db", db)
                    .label("type", ty)
                    .value(0.0),
                );
            }
        }
        out.push(
            Series::new(
                "process_resident_memory_bytes",
                "Resident memory size in bytes.",
                "gauge",
                "",
            )
            .value(self.rss_bytes),
        );
        if !self.old_version {
            out.push(
                Series::new(
                    "tikv_server_memory_quota_bytes",
                    "Total memory bytes quota for TiKV server",
                    "gauge",
                    "",
                )
                .value(self.memory_quota_bytes),
            );
        }
    }
}
