//! A fake TiKV status endpoint (`GET /metrics`, Prometheus text format 0.0.4) whose values the
//! test sets while it runs. Counters (`process_cpu_seconds_total` and the latency histograms)
//! are advanced from wall-clock time at every scrape, at the rates last set, so `rate(...)` over
//! real Prometheus scrapes gives the configured per-second values. [`FakeTikv::history`]
//! additionally produces a backfillable past at the current settings, so `[1m]` windows are
//! full from the first scrape.
//!
//! Two histograms, with TiKV's real names, labels and buckets (tikv-metrics-and-rules.md §2,
//! cluster-signals.md §9.2):
//! * `tikv_grpc_msg_duration_seconds{priority, type}`, `exponential_buckets(5e-5, 2.0, 22)`
//!   ("50us ~ 104s"): what clients wait for. Like TiKV's static metrics every write type exists
//!   from the start (zero counts, `priority="unknown"`); `kv_get` (50/s at 1 ms) and
//!   `kv_pessimistic_lock` (5/s at 3 s: waiting for other transactions' locks) run all the time,
//!   so the write-type filter matters.
//! * `tikv_storage_engine_async_request_duration_seconds{type}`,
//!   `exponential_buckets(0.00001, 2.0, 32)` ("10us ~ 42949s"): recorded after the scheduler's
//!   flow-control sleep, so [`FakeTikv::set_flow_control_delay`] does not show in it.
//!
//! Thread pools, flow-control signals and memory: see `fake_tikv_saturation.rs`.

#![allow(dead_code)]

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::http::{Response, TestServer};

#[path = "fake_tikv_saturation.rs"]
mod saturation;
use saturation::Saturation;

/// Number of finite buckets of TiKV's async-request histogram.
pub const BUCKETS: usize = 32;

/// Number of finite buckets of TiKV's gRPC duration histogram.
pub const GRPC_BUCKETS: usize = 22;

/// The gRPC write types TiKV exports (transactional and raw), zero until written.
pub const WRITE_TYPES: [&str; 9] = [
    "kv_prewrite",
    "kv_commit",
    "kv_pessimistic_lock",
    "raw_put",
    "raw_batch_put",
    "raw_delete",
    "raw_batch_delete",
    "raw_delete_range",
    "raw_compare_and_swap",
];

/// `exponential_buckets(start, 2.0, n)` as rust-prometheus computes it.
fn exponential(start: f64, n: usize) -> Vec<f64> {
    let mut v = Vec::with_capacity(n);
    let mut next = start;
    for _ in 0..n {
        v.push(next);
        next *= 2.0;
    }
    v
}

/// TiKV's async-request bounds, `exponential_buckets(0.00001, 2.0, 32)`.
pub fn bucket_bounds() -> Vec<f64> {
    exponential(0.00001, BUCKETS)
}

/// TiKV's gRPC duration bounds, `exponential_buckets(5e-5, 2.0, 22)`.
pub fn grpc_bucket_bounds() -> Vec<f64> {
    exponential(0.00005, GRPC_BUCKETS)
}

/// The value Prometheus's `histogram_quantile(q, rate(...))` gives for a steady mix of
/// `(requests_per_sec, latency_secs)` observed into buckets `bounds` (linear interpolation
/// inside the bucket holding the rank; the first bucket's lower bound is 0).
pub fn quantile_in(bounds: &[f64], q: f64, mix: &[(f64, f64)]) -> f64 {
    let n = bounds.len();
    let mut counts = vec![0.0; n + 1];
    for &(rps, latency) in mix {
        counts[bucket_index(bounds, latency)] += rps;
    }
    let total: f64 = counts.iter().sum();
    if total == 0.0 {
        return f64::NAN;
    }
    let rank = q * total;
    let mut cum = 0.0;
    for (i, c) in counts.iter().enumerate() {
        if cum + c >= rank && *c > 0.0 {
            if i == n {
                // Prometheus returns the highest finite bound for the +Inf bucket.
                return bounds[n - 1];
            }
            let lo = if i == 0 { 0.0 } else { bounds[i - 1] };
            return lo + (bounds[i] - lo) * (rank - cum) / c;
        }
        cum += c;
    }
    bounds[n - 1]
}

/// [`quantile_in`] for the gRPC histogram (what `write_latency_p99` reads).
pub fn expected_quantile(q: f64, mix: &[(f64, f64)]) -> f64 {
    quantile_in(&grpc_bucket_bounds(), q, mix)
}

/// [`quantile_in`] for the async-request histogram.
pub fn expected_async_quantile(q: f64, mix: &[(f64, f64)]) -> f64 {
    quantile_in(&bucket_bounds(), q, mix)
}

fn bucket_index(bounds: &[f64], v: f64) -> usize {
    bounds
        .iter()
        .position(|&le| v <= le)
        .unwrap_or(bounds.len())
}

/// A steadily growing histogram: per-bucket (non-cumulative) counts, sum and count.
#[derive(Clone, Debug)]
struct Histogram {
    /// Labels besides `le`, in exposition order.
    labels: Vec<(String, String)>,
    /// `(requests_per_sec, latency_secs)` currently being observed.
    mix: Vec<(f64, f64)>,
    /// Non-cumulative counts per bucket; the last entry is the +Inf-only bucket.
    counts: Vec<f64>,
    sum: f64,
}

impl Histogram {
    fn new(labels: &[(&str, &str)], buckets: usize, mix: Vec<(f64, f64)>) -> Self {
        Histogram {
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            mix,
            counts: vec![0.0; buckets + 1],
            sum: 0.0,
        }
    }

    fn advance(&mut self, bounds: &[f64], secs: f64) {
        for &(rps, latency) in &self.mix {
            let n = rps * secs;
            self.counts[bucket_index(bounds, latency)] += n;
            self.sum += n * latency;
        }
    }
}

/// One histogram family: its name, help, bounds and series.
#[derive(Clone, Debug)]
struct Family {
    name: &'static str,
    help: &'static str,
    bounds: Vec<f64>,
    series: Vec<Histogram>,
}

impl Family {
    fn series_mut(&mut self, labels: &[(&str, &str)]) -> &mut Histogram {
        let want: Vec<(String, String)> = labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        if let Some(i) = self.series.iter().position(|h| h.labels == want) {
            return &mut self.series[i];
        }
        let n = self.bounds.len();
        self.series.push(Histogram::new(labels, n, Vec::new()));
        self.series.last_mut().unwrap()
    }

    fn advance(&mut self, secs: f64) {
        for h in &mut self.series {
            h.advance(&self.bounds, secs);
        }
    }
}

/// Everything the fake reports; changed through [`FakeTikv`]'s setters.
#[derive(Clone, Debug)]
struct State {
    last_advance: Instant,
    /// `tikv_storage_engine_async_request_duration_seconds` then `tikv_grpc_msg_duration_seconds`.
    families: Vec<Family>,
    /// The write load last set: `(requests_per_sec, latency_secs)`.
    write: Option<(f64, f64)>,
    /// Flow-control sleep added to gRPC writes only.
    flow_control_delay: f64,
    /// Expose the gRPC histogram at all (TiKV that is not scraped, or hides it).
    grpc: bool,
    cpu_busy_cores: f64,
    cpu_seconds: f64,
    cpu_quota: f64,
    capacity: u64,
    available: u64,
    used: u64,
    leaders: u64,
    regions: u64,
    start_time: f64,
    /// Answer `/metrics` with this HTTP status instead (simulates a broken TiKV).
    fail_with: Option<u16>,
    /// Appended verbatim to the exposition (extra series for later tests).
    extra: String,
    /// Thread pools, flow-control signals, memory.
    saturation: Saturation,
}

/// One exposed series: family metadata, full sample name, labels and value.
#[derive(Clone, Debug)]
struct Series {
    family: &'static str,
    help: &'static str,
    kind: &'static str,
    name: String,
    labels: Vec<(String, String)>,
    value: f64,
}

impl Series {
    fn new(family: &'static str, help: &'static str, kind: &'static str, suffix: &str) -> Self {
        Series {
            family,
            help,
            kind,
            name: format!("{family}{suffix}"),
            labels: Vec::new(),
            value: 0.0,
        }
    }

    fn label(mut self, k: &str, v: &str) -> Self {
        self.labels.push((k.to_owned(), v.to_owned()));
        self
    }

    fn value(mut self, v: f64) -> Self {
        self.value = v;
        self
    }

    /// `name{k="v",...}` (label values here never need escaping).
    fn selector(&self, extra: &[(&str, &str)]) -> String {
        let mut parts: Vec<String> = extra.iter().map(|(k, v)| format!("{k}=\"{v}\"")).collect();
        parts.extend(self.labels.iter().map(|(k, v)| format!("{k}=\"{v}\"")));
        if parts.is_empty() {
            self.name.clone()
        } else {
            format!("{}{{{}}}", self.name, parts.join(","))
        }
    }
}

const ASYNC: &str = "tikv_storage_engine_async_request_duration_seconds";
const GRPC: &str = "tikv_grpc_msg_duration_seconds";

impl State {
    fn advance(&mut self, now: Instant) {
        let secs = now
            .saturating_duration_since(self.last_advance)
            .as_secs_f64();
        self.last_advance = now;
        self.advance_secs(secs);
    }

    fn advance_secs(&mut self, secs: f64) {
        for f in &mut self.families {
            f.advance(secs);
        }
        self.cpu_seconds += self.cpu_busy_cores * secs;
        self.saturation.advance(secs);
    }

    fn family_mut(&mut self, name: &str) -> &mut Family {
        self.families
            .iter_mut()
            .find(|f| f.name == name)
            .expect("known family")
    }

    /// Applies the write load and flow-control delay to both histograms: half the writes are
    /// `kv_prewrite` (priority `unknown`), half `kv_commit` (priority `high`), so queries must
    /// sum over `type` and `priority`.
    fn apply_write(&mut self) {
        let (rps, latency) = self.write.unwrap_or((0.0, 0.0));
        let mix = |l: f64| {
            if rps > 0.0 {
                vec![(rps / 2.0, l)]
            } else {
                Vec::new()
            }
        };
        let async_mix = if rps > 0.0 {
            vec![(rps, latency)]
        } else {
            Vec::new()
        };
        self.family_mut(ASYNC).series_mut(&[("type", "write")]).mix = async_mix;
        let grpc_latency = latency + self.flow_control_delay;
        let g = self.family_mut(GRPC);
        g.series_mut(&[("priority", "unknown"), ("type", "kv_prewrite")])
            .mix = mix(grpc_latency);
        g.series_mut(&[("priority", "high"), ("type", "kv_commit")])
            .mix = mix(grpc_latency);
    }

    /// Every series the fake exposes, in exposition order (families contiguous).
    fn series(&self) -> Vec<Series> {
        let mut out = Vec::with_capacity(600);
        for f in &self.families {
            if f.name == GRPC && !self.grpc {
                continue;
            }
            for h in &f.series {
                let mut cum = 0.0;
                let bucket = |le: &str, v: f64| {
                    let mut s = Series::new(f.name, f.help, "histogram", "_bucket");
                    for (k, v) in &h.labels {
                        s = s.label(k, v);
                    }
                    s.label("le", le).value(v)
                };
                for (le, c) in f.bounds.iter().zip(&h.counts) {
                    cum += c;
                    out.push(bucket(&le.to_string(), cum));
                }
                cum += h.counts[f.bounds.len()];
                out.push(bucket("+Inf", cum));
                for (suffix, v) in [("_sum", h.sum), ("_count", cum)] {
                    let mut s = Series::new(f.name, f.help, "histogram", suffix);
                    for (k, v) in &h.labels {
                        s = s.label(k, v);
                    }
                    out.push(s.value(v));
                }
            }
        }
        out.push(
            Series::new(
                "process_cpu_seconds_total",
                "Total user and system CPU time spent in seconds.",
                "counter",
                "",
            )
            .value(self.cpu_seconds),
        );
        out.push(
            Series::new(
                "process_start_time_seconds",
                "Start time of the process since unix epoch in seconds.",
                "gauge",
                "",
            )
            .value(self.start_time),
        );
        out.push(
            Series::new(
                "tikv_server_cpu_cores_quota",
                "Total CPU cores quota for TiKV server",
                "gauge",
                "",
            )
            .value(self.cpu_quota),
        );
        for (ty, v) in [
            ("available", self.available),
            ("capacity", self.capacity),
            ("used", self.used),
        ] {
            out.push(
                Series::new("tikv_store_size_bytes", "Size of storage.", "gauge", "")
                    .label("type", ty)
                    .value(v as f64),
            );
        }
        for (ty, v) in [("leader", self.leaders), ("region", self.regions)] {
            out.push(
                Series::new(
                    "tikv_raftstore_region_count",
                    "Number of regions collected in region_collection_observer",
                    "gauge",
                    "",
                )
                .label("type", ty)
                .value(v as f64),
            );
        }
        self.saturation.series(&mut out);
        out
    }

    /// Prometheus text format 0.0.4.
    fn render(&self) -> String {
        let mut out = String::with_capacity(64 * 1024);
        let mut family = "";
        for s in self.series() {
            if s.family != family {
                family = s.family;
                let _ = writeln!(out, "# HELP {} {}", s.family, s.help);
                let _ = writeln!(out, "# TYPE {} {}", s.family, s.kind);
            }
            let _ = writeln!(out, "{} {}", s.selector(&[]), s.value);
        }
        out.push_str(&self.extra);
        if !out.ends_with('\n') {
            out.push('\n');
        }
        out
    }
}

/// A running fake TiKV status server on `127.0.0.1:<ephemeral>`; stops on drop.
pub struct FakeTikv {
    server: TestServer,
    state: Arc<Mutex<State>>,
}

impl FakeTikv {
    /// Starts an idle fake: no writes (every write type at zero), no CPU, quota 8 cores,
    /// 1 TiB capacity half used, 100 regions of which 50 leaders. Also serves 50 snapshot
    /// requests/s at 1 ms in the async histogram, and the reads and lock waits described in
    /// the module docs in the gRPC one, so the queries' type filters matter.
    pub fn start() -> Self {
        let async_family = Family {
            name: ASYNC,
            help: "Bucketed histogram of processing successful asynchronous requests.",
            bounds: bucket_bounds(),
            series: vec![
                Histogram::new(&[("type", "write")], BUCKETS, Vec::new()),
                Histogram::new(&[("type", "snapshot")], BUCKETS, vec![(50.0, 0.001)]),
            ],
        };
        let mut grpc_series: Vec<Histogram> = WRITE_TYPES
            .iter()
            .map(|t| {
                Histogram::new(
                    &[("priority", "unknown"), ("type", t)],
                    GRPC_BUCKETS,
                    Vec::new(),
                )
            })
            .collect();
        grpc_series.push(Histogram::new(
            &[("priority", "unknown"), ("type", "kv_get")],
            GRPC_BUCKETS,
            vec![(50.0, 0.001)],
        ));
        grpc_series[2].mix = vec![(5.0, 3.0)]; // kv_pessimistic_lock: lock waits
        let grpc_family = Family {
            name: GRPC,
            help: "Bucketed histogram of grpc server messages",
            bounds: grpc_bucket_bounds(),
            series: grpc_series,
        };
        let state = Arc::new(Mutex::new(State {
            last_advance: Instant::now(),
            families: vec![async_family, grpc_family],
            write: None,
            flow_control_delay: 0.0,
            grpc: true,
            cpu_busy_cores: 0.0,
            cpu_seconds: 0.0,
            cpu_quota: 8.0,
            capacity: 1 << 40,
            available: 1 << 39,
            used: 1 << 39,
            leaders: 50,
            regions: 100,
            start_time: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .unwrap()
                .as_secs_f64()
                .floor(),
            fail_with: None,
            extra: String::new(),
            saturation: Saturation::new(),
        }));
        let st = state.clone();
        let server = TestServer::start(move |req| {
            if req.path_only() != "/metrics" {
                return Response::text(404, "not found\n");
            }
            let mut s = st.lock().unwrap();
            if let Some(code) = s.fail_with {
                return Response::text(code, "fake TiKV failure\n");
            }
            s.advance(Instant::now());
            Response::text(200, s.render())
        });
        FakeTikv { server, state }
    }

    /// The listening address; Prometheus's `instance` label for it is `"127.0.0.1:PORT"`.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `"127.0.0.1:PORT"`, the `instance` label Prometheus gives this target.
    pub fn instance(&self) -> String {
        self.server.addr().to_string()
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        self.server.url()
    }

    fn with<R>(&self, f: impl FnOnce(&mut State) -> R) -> R {
        let mut s = self.state.lock().unwrap();
        // Accrue at the old rates up to now, so a change applies from this moment on.
        s.advance(Instant::now());
        f(&mut s)
    }

    /// From now on, serve `requests_per_sec` write requests each taking `latency` seconds
    /// (plus the flow-control delay in the gRPC histogram); `0` requests: idle.
    pub fn set_write_latency(&self, requests_per_sec: f64, latency: f64) {
        self.with(|s| {
            s.write = Some((requests_per_sec, latency));
            s.apply_write();
        });
    }

    /// From now on, the scheduler's flow control delays every write by `secs` before it is
    /// processed: clients (gRPC) wait for it, the async-request histogram does not see it.
    pub fn set_flow_control_delay(&self, secs: f64) {
        self.with(|s| {
            s.flow_control_delay = secs;
            s.apply_write();
        });
    }

    /// From now on, observe this `(requests_per_sec, latency_secs)` mix in the async-request
    /// histogram for `type=ty`.
    pub fn set_latency_mix(&self, ty: &str, mix: &[(f64, f64)]) {
        self.with(|s| s.family_mut(ASYNC).series_mut(&[("type", ty)]).mix = mix.to_vec());
    }

    /// From now on, observe this mix in the gRPC histogram for `type=ty, priority=priority`.
    pub fn set_grpc_mix(&self, ty: &str, priority: &str, mix: &[(f64, f64)]) {
        self.with(|s| {
            s.family_mut(GRPC)
                .series_mut(&[("priority", priority), ("type", ty)])
                .mix = mix.to_vec()
        });
    }

    /// Stops (or resumes) exposing the gRPC histogram: its series go missing.
    pub fn set_grpc_exposed(&self, exposed: bool) {
        self.with(|s| s.grpc = exposed);
    }

    /// From now on, `process_cpu_seconds_total` grows by `cores` per second.
    pub fn set_cpu_busy_cores(&self, cores: f64) {
        self.with(|s| s.cpu_busy_cores = cores);
    }

    /// Sets the `tikv_server_cpu_cores_quota` gauge.
    pub fn set_cpu_quota(&self, cores: f64) {
        self.with(|s| s.cpu_quota = cores);
    }

    /// Sets `tikv_store_size_bytes{type="capacity|available|used"}`.
    pub fn set_store_size(&self, capacity: u64, available: u64, used: u64) {
        self.with(|s| {
            s.capacity = capacity;
            s.available = available;
            s.used = used;
        });
    }

    /// Sets `tikv_raftstore_region_count{type="leader|region"}`.
    pub fn set_region_count(&self, leaders: u64, regions: u64) {
        self.with(|s| {
            s.leaders = leaders;
            s.regions = regions;
        });
    }

    /// From now on, every thread of pool `key` (`raftstore`, `apply`, `sched`, `grpc`,
    /// `unified_read`, ..., see `fake_tikv_saturation.rs`) uses `cores` of CPU.
    pub fn set_pool_busy(&self, key: &str, cores: f64) {
        self.with(|s| s.saturation.set_pool_busy(key, cores));
    }

    /// Pretends to be TiKV <= 6.1 (truncated thread names, no memory quota metric), or not.
    pub fn set_old_version(&self, old: bool) {
        self.with(|s| s.saturation.old_version = old);
    }

    /// Sets the flow-control discard ratio (0..1) and the ServerIsBusy answers per second.
    pub fn set_back_pressure(&self, discard_ratio: f64, too_busy_per_sec: f64) {
        self.with(|s| {
            s.saturation.discard_ratio = discard_ratio;
            s.saturation.too_busy_per_sec = too_busy_per_sec;
        });
    }

    /// Sets `process_resident_memory_bytes` and `tikv_server_memory_quota_bytes`.
    pub fn set_memory(&self, rss_bytes: f64, quota_bytes: f64) {
        self.with(|s| {
            s.saturation.rss_bytes = rss_bytes;
            s.saturation.memory_quota_bytes = quota_bytes;
        });
    }

    /// Answers scrapes with this HTTP status (`Some(503)`) or normally again (`None`).
    pub fn set_failing(&self, status: Option<u16>) {
        self.with(|s| s.fail_with = status);
    }

    /// Appends raw exposition text (complete lines, with `# TYPE` if wanted) to every scrape.
    pub fn set_extra(&self, text: &str) {
        self.with(|s| s.extra = text.to_owned());
    }

    /// Pretends this fake has already been running at its current settings for `history`:
    /// returns timestamped sample lines (`name{job=..,instance=..,..} value unix_secs`, one set
    /// every `step`, ending now) for [`RealPrometheus::start_with_history`], and moves the
    /// counters forward by what that past accrued, so later scrapes continue the same series.
    /// Text from [`set_extra`](Self::set_extra) is not part of the history.
    ///
    /// `rate(...[1m])` over scrapes alone reads low until a full minute has been scraped
    /// (Prometheus divides by the window length and barely extrapolates towards its start);
    /// with at least a minute of history it is right from the first scrape.
    ///
    /// [`RealPrometheus::start_with_history`]: super::prometheus::RealPrometheus::start_with_history
    pub fn history(&self, job: &str, history: Duration, step: Duration) -> String {
        let instance = self.instance();
        self.history_labelled(
            &[("job", job), ("instance", instance.as_str())],
            history,
            step,
        )
    }

    /// [`history`](Self::history) with these target labels on every sample (e.g. what a
    /// TidbMonitor relabeling gives: `instance` = pod name, `tidb_cluster`, ...).
    pub fn history_labelled(
        &self,
        target_labels: &[(&str, &str)],
        history: Duration,
        step: Duration,
    ) -> String {
        assert!(!step.is_zero(), "history step must be positive");
        let extra = target_labels;
        let mut s = self.state.lock().unwrap();
        let now = Instant::now();
        s.advance(now);
        let now_unix = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        let steps = (history.as_secs_f64() / step.as_secs_f64()).floor() as u64;
        let rest = history.as_secs_f64() - steps as f64 * step.as_secs_f64();
        // `past` starts `history` ago with today's counter values as its baseline.
        let mut past = s.clone();
        let mut per_series: Vec<Vec<String>> = Vec::new();
        for k in 0..=steps {
            if k > 0 {
                past.advance_secs(step.as_secs_f64());
            }
            let t = now_unix - history.as_secs_f64() + k as f64 * step.as_secs_f64();
            for (i, series) in past.series().into_iter().enumerate() {
                if per_series.len() <= i {
                    per_series.push(Vec::new());
                }
                per_series[i].push(format!(
                    "{} {} {t:.3}",
                    series.selector(extra),
                    series.value
                ));
            }
        }
        past.advance_secs(rest);
        past.last_advance = now;
        *s = past;
        let mut out = String::new();
        for lines in per_series {
            for l in lines {
                out.push_str(&l);
                out.push('\n');
            }
        }
        out
    }

    /// The exposition the fake would serve now (advances counters like a scrape).
    pub fn render_now(&self) -> String {
        self.with(|s| s.render())
    }

    /// Total CPU seconds reported so far (advanced to now).
    pub fn cpu_seconds(&self) -> f64 {
        self.with(|s| s.cpu_seconds)
    }
}
