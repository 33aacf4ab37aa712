//! A fake TiKV status endpoint (`GET /metrics`, Prometheus text format 0.0.4) whose values the
//! test sets while it runs. Counters (`process_cpu_seconds_total` and the write-latency
//! histogram) are advanced from wall-clock time at every scrape, at the rates last set, so
//! `rate(...)` over real Prometheus scrapes gives the configured per-second values.
//! [`FakeTikv::history`] additionally produces a backfillable past at the current settings, so
//! `[1m]` windows are full from the first scrape.
//!
//! The histogram is TiKV's `tikv_storage_engine_async_request_duration_seconds` with TiKV's real
//! buckets (`exponential_buckets(0.00001, 2.0, 32)`, "10us ~ 42949s", plus `+Inf`).

#![allow(dead_code)]

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::http::{Response, TestServer};

/// Number of finite buckets of TiKV's async-request histogram.
pub const BUCKETS: usize = 32;

/// TiKV's finite bucket bounds, computed like rust-prometheus's `exponential_buckets(0.00001, 2.0, 32)`.
pub fn bucket_bounds() -> Vec<f64> {
    let mut v = Vec::with_capacity(BUCKETS);
    let mut next = 0.00001;
    for _ in 0..BUCKETS {
        v.push(next);
        next *= 2.0;
    }
    v
}

/// The value Prometheus's `histogram_quantile(q, rate(...))` gives for a steady mix of
/// `(requests_per_sec, latency_secs)` observed into TiKV's buckets (linear interpolation
/// inside the bucket holding the rank; the first bucket's lower bound is 0).
pub fn expected_quantile(q: f64, mix: &[(f64, f64)]) -> f64 {
    let bounds = bucket_bounds();
    let mut counts = vec![0.0; BUCKETS + 1];
    for &(rps, latency) in mix {
        counts[bucket_index(&bounds, latency)] += rps;
    }
    let total: f64 = counts.iter().sum();
    if total == 0.0 {
        return f64::NAN;
    }
    let rank = q * total;
    let mut cum = 0.0;
    for (i, c) in counts.iter().enumerate() {
        if cum + c >= rank && *c > 0.0 {
            if i == BUCKETS {
                // Prometheus returns the highest finite bound for the +Inf bucket.
                return bounds[BUCKETS - 1];
            }
            let lo = if i == 0 { 0.0 } else { bounds[i - 1] };
            return lo + (bounds[i] - lo) * (rank - cum) / c;
        }
        cum += c;
    }
    bounds[BUCKETS - 1]
}

fn bucket_index(bounds: &[f64], v: f64) -> usize {
    bounds.iter().position(|&le| v <= le).unwrap_or(BUCKETS)
}

/// A steadily growing histogram: per-bucket (non-cumulative) counts, sum and count.
#[derive(Clone, Debug)]
struct Histogram {
    /// `(requests_per_sec, latency_secs)` currently being observed.
    mix: Vec<(f64, f64)>,
    /// Non-cumulative counts per bucket; the last entry is the +Inf-only bucket.
    counts: Vec<f64>,
    sum: f64,
}

impl Histogram {
    fn new(mix: Vec<(f64, f64)>) -> Self {
        Histogram {
            mix,
            counts: vec![0.0; BUCKETS + 1],
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

/// Everything the fake reports; changed through [`FakeTikv`]'s setters.
#[derive(Clone, Debug)]
struct State {
    last_advance: Instant,
    /// Per `type` label (`write`, `snapshot`).
    histograms: Vec<(String, Histogram)>,
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

impl State {
    fn advance(&mut self, now: Instant, bounds: &[f64]) {
        let secs = now
            .saturating_duration_since(self.last_advance)
            .as_secs_f64();
        self.last_advance = now;
        self.advance_secs(secs, bounds);
    }

    fn advance_secs(&mut self, secs: f64, bounds: &[f64]) {
        for (_, h) in &mut self.histograms {
            h.advance(bounds, secs);
        }
        self.cpu_seconds += self.cpu_busy_cores * secs;
    }

    fn histogram_mut(&mut self, ty: &str) -> &mut Histogram {
        if let Some(i) = self.histograms.iter().position(|(t, _)| t == ty) {
            return &mut self.histograms[i].1;
        }
        self.histograms
            .push((ty.to_owned(), Histogram::new(Vec::new())));
        &mut self.histograms.last_mut().unwrap().1
    }

    /// Every series the fake exposes, in exposition order (families contiguous).
    fn series(&self, bounds: &[f64]) -> Vec<Series> {
        let help = "Bucketed histogram of processing successful asynchronous requests.";
        let mut out = Vec::with_capacity(40 * self.histograms.len() + 10);
        for (ty, h) in &self.histograms {
            let mut cum = 0.0;
            for (le, c) in bounds.iter().zip(&h.counts) {
                cum += c;
                out.push(
                    Series::new(ASYNC, help, "histogram", "_bucket")
                        .label("type", ty)
                        .label("le", &le.to_string())
                        .value(cum),
                );
            }
            cum += h.counts[BUCKETS];
            out.push(
                Series::new(ASYNC, help, "histogram", "_bucket")
                    .label("type", ty)
                    .label("le", "+Inf")
                    .value(cum),
            );
            out.push(
                Series::new(ASYNC, help, "histogram", "_sum")
                    .label("type", ty)
                    .value(h.sum),
            );
            out.push(
                Series::new(ASYNC, help, "histogram", "_count")
                    .label("type", ty)
                    .value(cum),
            );
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
        out
    }

    /// Prometheus text format 0.0.4.
    fn render(&self, bounds: &[f64]) -> String {
        let mut out = String::with_capacity(8192);
        let mut family = "";
        for s in self.series(bounds) {
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
    bounds: Arc<Vec<f64>>,
}

impl FakeTikv {
    /// Starts an idle fake: no requests, no CPU, quota 8 cores, 1 TiB capacity half used,
    /// 100 regions of which 50 leaders. Also writes 50 snapshot requests/s at 1 ms so the
    /// `type="write"` filter of queries matters.
    pub fn start() -> Self {
        let mut histograms = vec![("write".to_owned(), Histogram::new(Vec::new()))];
        histograms.push(("snapshot".to_owned(), Histogram::new(vec![(50.0, 0.001)])));
        let state = Arc::new(Mutex::new(State {
            last_advance: Instant::now(),
            histograms,
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
        }));
        let bounds = Arc::new(bucket_bounds());
        let (st, b) = (state.clone(), bounds.clone());
        let server = TestServer::start(move |req| {
            if req.path_only() != "/metrics" {
                return Response::text(404, "not found\n");
            }
            let mut s = st.lock().unwrap();
            if let Some(code) = s.fail_with {
                return Response::text(code, "fake TiKV failure\n");
            }
            s.advance(Instant::now(), &b);
            Response::text(200, s.render(&b))
        });
        FakeTikv {
            server,
            state,
            bounds,
        }
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
        s.advance(Instant::now(), &self.bounds);
        f(&mut s)
    }

    /// From now on, observe `requests_per_sec` write requests each taking `latency` seconds.
    pub fn set_write_latency(&self, requests_per_sec: f64, latency: f64) {
        self.set_latency_mix("write", &[(requests_per_sec, latency)]);
    }

    /// From now on, observe this `(requests_per_sec, latency_secs)` mix for `type=ty`.
    pub fn set_latency_mix(&self, ty: &str, mix: &[(f64, f64)]) {
        self.with(|s| s.histogram_mut(ty).mix = mix.to_vec());
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
        assert!(!step.is_zero(), "history step must be positive");
        let instance = self.instance();
        let extra = [("job", job), ("instance", instance.as_str())];
        let mut s = self.state.lock().unwrap();
        let now = Instant::now();
        s.advance(now, &self.bounds);
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
                past.advance_secs(step.as_secs_f64(), &self.bounds);
            }
            let t = now_unix - history.as_secs_f64() + k as f64 * step.as_secs_f64();
            for (i, series) in past.series(&self.bounds).into_iter().enumerate() {
                if per_series.len() <= i {
                    per_series.push(Vec::new());
                }
                per_series[i].push(format!(
                    "{} {} {t:.3}",
                    series.selector(&extra),
                    series.value
                ));
            }
        }
        past.advance_secs(rest, &self.bounds);
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
        self.with(|s| s.render(&self.bounds))
    }

    /// Total CPU seconds reported so far (advanced to now).
    pub fn cpu_seconds(&self) -> f64 {
        self.with(|s| s.cpu_seconds)
    }
}
