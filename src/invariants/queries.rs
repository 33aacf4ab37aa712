//! The PromQL templates of the built-in Prometheus invariants (re-exported by
//! [`super::catalog`], whose entries name them). Placeholders, filled by
//! [`super::definitions::render_query`]: `{by}` the mapping labels, `{sel}` the configured
//! selector after a comma (`,a="b"`), `{bare}` the selector in braces (or nothing), `{types}`
//! [`WRITE_REQUEST_TYPES`], `{read_types}` [`READ_REQUEST_TYPES`]. Every vector selector carries
//! `{sel}` or `{bare}` and every aggregation keeps `{by}`, so the selector and the mapping labels
//! apply. Each template is one query per poll (the performance budget: Prometheus queries per
//! poll = Prometheus-based invariants).

/// The gRPC write requests clients wait for: transactional (`kv_prewrite`, `kv_commit`) and
/// raw (RawKV without TiDB). `kv_pessimistic_lock` is left out: its duration includes waiting
/// for other transactions' locks (up to TiDB's lock-wait timeout), which is contention, not a
/// slow store. cluster-signals.md §9.2.
pub const WRITE_REQUEST_TYPES: &str = "kv_prewrite|kv_commit|raw_put|raw_batch_put|raw_delete|raw_batch_delete|raw_delete_range|raw_compare_and_swap";

/// The gRPC read requests clients wait for, transactional and raw (cluster-signals.md §9.2),
/// including the `kv_batch_get_command` / `raw_batch_get_command` types TiKV files coalesced
/// point gets under when it is loaded. `coprocessor` is left out: its duration grows with the
/// data a query scans (an analytical query or `ANALYZE` takes seconds on a healthy store), so
/// its p99 says more about the workload than about the store.
pub const READ_REQUEST_TYPES: &str = "kv_get|kv_batch_get|kv_batch_get_command|kv_scan|raw_get|raw_batch_get|raw_batch_get_command|raw_scan|raw_batch_scan";

/// The p99 of the gRPC requests of `$types` per TiKV instance: `>= 0` drops the NaN of an
/// idle histogram, and the `or` branch reports 0 for an instance whose series exist but served
/// none in the window (idle is ok, only missing series are unknown).
macro_rules! grpc_p99 {
    ($types:literal) => {
        concat!(
            "histogram_quantile(0.99, sum by (le, {by}) (rate(tikv_grpc_msg_duration_seconds_bucket{type=~\"",
            $types,
            "\"{sel}}[1m]))) >= 0 or on ({by}) 0 * group by ({by}) (tikv_grpc_msg_duration_seconds_count{type=~\"",
            $types,
            "\"{sel}})"
        )
    };
}

/// Write p99 per TiKV instance, in seconds, from `tikv_grpc_msg_duration_seconds` (measured from
/// a request's arrival until its response is sent, so flow-control delays count), summed over
/// `type` and `priority` (TiKV ≥ 7.6); 0 for an instance that served no write in the window.
pub const WRITE_LATENCY_P99_TEMPLATE: &str = grpc_p99!("{types}");

/// Read p99 per TiKV instance, in seconds: as [`WRITE_LATENCY_P99_TEMPLATE`] over
/// [`READ_REQUEST_TYPES`]; 0 for an instance that served no read in the window.
pub const READ_LATENCY_P99_TEMPLATE: &str = grpc_p99!("{read_types}");

/// CPU used per TiKV instance as a ratio of its CPU quota (only TiKV exports the quota, so
/// other processes drop out of the division).
pub const CPU_USAGE_TEMPLATE: &str = "sum by ({by}) (rate(process_cpu_seconds_total{bare}[1m])) / on ({by}) max by ({by}) (tikv_server_cpu_cores_quota{bare})";

/// `tikv_thread_cpu_seconds_total` of the watched pools' threads with a `pool` label
/// (cluster-signals.md §9.1). The `name` regex matches TiKV ≥ 6.2's full names and ≤ 6.1's
/// 15-character truncations: raftstore v1 `raftstore_<store>_<i>` (truncated still
/// `raftstore_…`) and v2 `rs_<store>_<i>`; apply `apply_<i>` (not the one low-priority
/// `apply_low_0`); the scheduler's normal pool `sched_worker_pool_<i>` (≤ 8.5), `sched_pool_<i>`
/// (master), `sched_worker_po` (≤ 6.1; its high-priority pools are left out: idle threads would
/// dilute the average); gRPC `grpc_server_<i>` (matched as `grpc_server.*`: grpcio's numbering
/// is inferred, §13); the unified read pool `unified_read_pool_<i>`,
/// `unified_read_po` (≤ 6.1). `pool` is the name's prefix from that fixed list: `raftstore`,
/// `rs`, `apply`, `sched`, `grpc`, `unified_read` — never a thread name.
macro_rules! pool_threads {
    ($($series:tt)*) => {
        concat!(
            "label_replace(",
            $($series)*,
            ", \"pool\", \"$1\", \"name\", \"(raftstore|rs|apply|sched|grpc|unified_read)_.*\")"
        )
    };
}

/// The selector of the watched pools' threads (see [`pool_threads`]).
macro_rules! thread_selector {
    () => {
        "tikv_thread_cpu_seconds_total{name=~\"(raftstore|rs)_.*|apply_[0-9]+|sched_(worker_)?pool_[0-9]+|sched_worker_po|grpc_server.*|unified_read_po.*\"{sel}}"
    };
}

/// Utilisation of each watched thread pool per TiKV instance: the CPU its threads used over 1m
/// divided by its number of threads (counted from the series: one per thread, `tid` tells
/// threads with the same truncated name apart), labelled `pool` and `threads` (that count, a
/// small number), so the evaluator can name the busiest pool. A pool at 1.0 has every thread
/// busy all the time. Idle threads give 0.
pub const THREAD_POOL_CPU_TEMPLATE: &str = concat!(
    "(sum by ({by}, pool) (",
    pool_threads!(concat!("rate(", thread_selector!(), "[1m])")),
    ") / count by ({by}, pool) (",
    pool_threads!(thread_selector!()),
    ")) * on ({by}, pool) group_left (threads) count_values by ({by}, pool) (\"threads\", count by ({by}, pool) (",
    pool_threads!(thread_selector!()),
    "))"
);

/// The write flow-control signals per TiKV instance, one sample each with a `signal` label
/// (cluster-signals.md §9.3): `discard_ratio` (the scheduler's flow-control drop probability,
/// `tikv_scheduler_discard_ratio` ÷ 1e7), `throttled` (writes/s delayed by flow control, from
/// `tikv_scheduler_throttle_duration_seconds_count`), `too_busy` (ServerIsBusy answers/s,
/// `tikv_scheduler_too_busy_total`), `channel_full` (raftstore/apply mailbox full/s,
/// `tikv_channel_full_total`) and `raft_write_stall` (the raft RocksDB's largest write stall
/// over 1m, µs, `tikv_engine_write_stall{db="raft",type="write_stall_max"}`). The kv RocksDB's
/// write stall is not read: flow control (on by default since 5.2) disables it, so it stays 0.
/// Counters TiKV registers on first use have no series until then: a missing signal is absent,
/// an idle store reads 0; only a store without any of them is unknown.
pub const WRITE_FLOW_CONTROL_TEMPLATE: &str = concat!(
    "label_replace(max by ({by}) (tikv_scheduler_discard_ratio{bare}) / 1e7, \"signal\", \"discard_ratio\", \"\", \"\")",
    " or label_replace(sum by ({by}) (rate(tikv_scheduler_throttle_duration_seconds_count{bare}[1m])), \"signal\", \"throttled\", \"\", \"\")",
    " or label_replace(sum by ({by}) (rate(tikv_scheduler_too_busy_total{bare}[1m])), \"signal\", \"too_busy\", \"\", \"\")",
    " or label_replace(sum by ({by}) (rate(tikv_channel_full_total{bare}[1m])), \"signal\", \"channel_full\", \"\", \"\")",
    " or label_replace(max by ({by}) (max_over_time(tikv_engine_write_stall{db=\"raft\",type=\"write_stall_max\"{sel}}[1m])), \"signal\", \"raft_write_stall\", \"\", \"\")"
);

/// Resident memory per TiKV instance as a ratio of its memory quota
/// (`tikv_server_memory_quota_bytes`, TiKV ≥ 8.0: the cgroup or system limit,
/// cluster-signals.md §9.4). A TiKV without the quota metric (older, or reading 0) gives a
/// sample labelled `quota="none"` instead (from `tikv_server_cpu_cores_quota`, which every
/// TiKV ≥ 5.0 exports): the evaluator gives it no series rather than unknown.
pub const MEMORY_USAGE_TEMPLATE: &str = "max by ({by}) (process_resident_memory_bytes{bare}) / on ({by}) max by ({by}) (tikv_server_memory_quota_bytes{bare} > 0) or on ({by}) label_replace(0 * group by ({by}) (tikv_server_cpu_cores_quota{bare}), \"quota\", \"none\", \"\", \"\")";
