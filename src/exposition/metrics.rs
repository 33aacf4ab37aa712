//! The metric contract, encoded in OpenMetrics text from the published snapshot and the log
//! counters ([`View`]) by prometheus-client collectors (fresh series for every snapshot:
//! vanished stores disappear); [`render_text`] gives the same in the text format 0.0.4
//! ([`super::format`]). The families split in two: those drawn from the snapshot alone
//! (`encode_snapshot`, cached per poll by [`super::cache`]) and those read live at every scrape
//! (`encode_live`).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Registry;

use super::View;
use crate::clock::unix_now;
use crate::http_server::ShedReason;
use crate::invariants::engine::Phase;
use crate::logs::events::EventKind;
use crate::logs::file::GapReason;
use crate::logs::ingest::SourceStats;
use crate::logs::parse::Level;
use crate::snapshot::{Snapshot, StoreView};

/// The `reason` values of `tikv_health_exporter_pd_rejected_stores` (always all exported).
pub const REJECT_REASONS: [&str; 3] = ["invalid_id", "duplicate_id", "malformed"];

/// Store states always exported in the `tikv_store_state` state set.
pub const STORE_STATES: [&str; 5] = ["Up", "Offline", "Disconnected", "Down", "Tombstone"];

/// Build identity exported as `tikv_health_exporter_build_info`.
#[derive(Clone, Debug)]
pub struct BuildInfo {
    /// Crate version.
    pub version: String,
    /// VCS revision, or `unknown`.
    pub revision: String,
    /// `rustc --version` of the compiler.
    pub rustc_version: String,
}

impl BuildInfo {
    /// This binary's build identity ([`crate::build_info`]).
    pub fn current() -> Self {
        BuildInfo {
            version: crate::build_info::PKG_VERSION.to_owned(),
            revision: crate::build_info::REVISION.to_owned(),
            rustc_version: crate::build_info::RUSTC_VERSION.to_owned(),
        }
    }
}

type Labels<'a> = Vec<(&'static str, &'a str)>;

/// A per-store gauge: name, help, value.
type StoreGauge = (&'static str, &'static str, fn(&StoreView) -> Option<f64>);

/// The per-store hot traffic gauges: name, help, value. From the PD leader's
/// `pd_hotspot_status` `_as_peer` series (a write counts on every replica, a read on the peer
/// that served it: leaders, and followers under follower read).
const HOT_GAUGES: [StoreGauge; 6] = [
    (
        "tikv_store_hot_write_regions",
        "Hot write peers on the store (PD leader's pd_hotspot_status hot_write_region_as_peer; 0 when PD lists none)",
        |s| s.hot_write.map(|f| f.regions),
    ),
    (
        "tikv_store_hot_write_bytes_per_second",
        "Bytes per second written by the store's hot peers, every replica counted (PD total_write_bytes_as_peer)",
        |s| s.hot_write.map(|f| f.bytes_per_second),
    ),
    (
        "tikv_store_hot_write_keys_per_second",
        "Keys per second written by the store's hot peers, every replica counted (PD total_write_keys_as_peer)",
        |s| s.hot_write.map(|f| f.keys_per_second),
    ),
    (
        "tikv_store_hot_read_regions",
        "Hot read peers on the store (PD leader's pd_hotspot_status hot_read_region_as_peer; 0 when PD lists none)",
        |s| s.hot_read.map(|f| f.regions),
    ),
    (
        "tikv_store_hot_read_bytes_per_second",
        "Bytes per second read from the store's hot peers, leaders and followers that served reads (PD total_read_bytes_as_peer)",
        |s| s.hot_read.map(|f| f.bytes_per_second),
    ),
    (
        "tikv_store_hot_read_keys_per_second",
        "Keys per second read from the store's hot peers, leaders and followers that served reads (PD total_read_keys_as_peer)",
        |s| s.hot_read.map(|f| f.keys_per_second),
    ),
];

#[derive(Debug)]
struct StateCollector {
    view: Arc<View>,
    build: BuildInfo,
}

fn family<'a, M: EncodeMetric>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    kind: MetricType,
    rows: impl IntoIterator<Item = (Labels<'a>, M)>,
) -> Result<(), std::fmt::Error> {
    let mut rows = rows.into_iter().peekable();
    if rows.peek().is_none() {
        return Ok(());
    }
    let mut me = enc.encode_descriptor(name, help, None, kind)?;
    for (labels, metric) in rows {
        metric.encode(me.encode_family(&labels)?)?;
    }
    Ok(())
}

fn gauges<'a>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (Labels<'a>, f64)>,
) -> Result<(), std::fmt::Error> {
    family(
        enc,
        name,
        help,
        MetricType::Gauge,
        rows.into_iter().map(|(l, v)| (l, ConstGauge::new(v))),
    )
}

fn counters<'a>(
    enc: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    rows: impl IntoIterator<Item = (Labels<'a>, u64)>,
) -> Result<(), std::fmt::Error> {
    family(
        enc,
        name,
        help,
        MetricType::Counter,
        rows.into_iter().map(|(l, v)| (l, ConstCounter::new(v))),
    )
}

fn b(v: bool) -> f64 {
    if v { 1.0 } else { 0.0 }
}

/// One `source_up` per log source label: a file pattern has a series per store under one
/// label, up only when all of them are.
fn log_sources_up(logs: &[Arc<SourceStats>]) -> Vec<(&str, bool)> {
    let mut out: Vec<(&str, bool)> = Vec::with_capacity(logs.len());
    for s in logs {
        match out.iter_mut().find(|(n, _)| *n == s.source) {
            Some((_, up)) => *up &= s.is_up(),
            None => out.push((&s.source, s.is_up())),
        }
    }
    out
}

/// The families drawn from one published snapshot alone (per invariant and per store: the bulk
/// of a scrape), so that [`super::cache`] renders them once per poll. Nothing here may depend on
/// the time of the scrape or on live counters.
fn encode_snapshot(snap: &Snapshot, enc: &mut DescriptorEncoder) -> Result<(), std::fmt::Error> {
    let inv = &snap.invariants;
    fn nss(i: &crate::snapshot::InvariantView) -> Labels<'_> {
        vec![
            ("name", &*i.name),
            ("store", i.store.as_str()),
            ("severity", i.severity.as_str()),
        ]
    }
    gauges(
        enc,
        "tikv_invariant_violation",
        "1 while the invariant is firing (violated past its grace period), else 0",
        inv.iter().map(|i| (nss(i), b(i.state == Phase::Firing))),
    )?;
    gauges(
        enc,
        "tikv_invariant_pending",
        "1 while the invariant is violated but inside its grace period, else 0",
        inv.iter().map(|i| (nss(i), b(i.state == Phase::Pending))),
    )?;
    gauges(
        enc,
        "tikv_invariant_unknown",
        "1 while the inputs of the invariant are missing (it neither fires nor resolves), else 0",
        inv.iter().map(|i| (nss(i), b(i.unknown))),
    )?;
    gauges(
        enc,
        "tikv_invariant_active_since_timestamp_seconds",
        "When the current violation started (while pending or firing)",
        inv.iter()
            .filter_map(|i| Some((nss(i), i.since.filter(|_| i.state != Phase::Ok)?))),
    )?;
    gauges(
        enc,
        "tikv_invariant_observed_value",
        "The last value compared with the invariant's threshold",
        inv.iter().filter_map(|i| {
            Some((
                vec![("name", &*i.name), ("store", i.store.as_str())],
                i.value?,
            ))
        }),
    )?;
    gauges(
        enc,
        "tikv_invariant_threshold",
        "The threshold of the invariant",
        inv.iter().map(|i| {
            (
                vec![("name", &*i.name), ("store", i.store.as_str())],
                i.threshold,
            )
        }),
    )?;

    let st = &snap.stores;
    gauges(
        enc,
        "tikv_store_info",
        "PD store metadata; always 1",
        st.iter().map(|s| {
            (
                vec![
                    ("store", s.id.as_str()),
                    ("address", s.address.as_str()),
                    ("status_address", s.status_address.as_str()),
                    ("version", s.version.as_str()),
                    ("engine", s.engine.as_str()),
                ],
                1.0,
            )
        }),
    )?;
    gauges(
        enc,
        "tikv_store_state",
        "PD state_name of the store as a state set (1 for the current state)",
        st.iter().flat_map(|s| {
            let own = (!STORE_STATES.contains(&s.state.as_str())).then_some(s.state.as_str());
            STORE_STATES.iter().copied().chain(own).map(move |name| {
                (
                    vec![("store", s.id.as_str()), ("state", name)],
                    b(s.state == name),
                )
            })
        }),
    )?;
    gauges(
        enc,
        "tikv_store_last_heartbeat_timestamp_seconds",
        "Time of the store's last heartbeat to PD",
        st.iter()
            .filter_map(|s| Some((vec![("store", s.id.as_str())], s.last_heartbeat?))),
    )?;
    let per_store = |f: fn(&StoreView) -> Option<f64>| {
        st.iter()
            .filter_map(move |s| Some((vec![("store", s.id.as_str())], f(s)?)))
    };
    gauges(
        enc,
        "tikv_store_leaders",
        "Region leaders on the store (PD)",
        per_store(|s| s.leader_count.map(|v| v as f64)),
    )?;
    gauges(
        enc,
        "tikv_store_regions",
        "Region peers on the store (PD)",
        per_store(|s| s.region_count.map(|v| v as f64)),
    )?;
    gauges(
        enc,
        "tikv_store_capacity_bytes",
        "Store capacity reported by PD (4 significant digits)",
        per_store(|s| s.capacity_bytes.map(|v| v as f64)),
    )?;
    gauges(
        enc,
        "tikv_store_available_bytes",
        "Store available space reported by PD (4 significant digits)",
        per_store(|s| s.available_bytes.map(|v| v as f64)),
    )?;
    gauges(
        enc,
        "tikv_store_slow_score",
        "PD slow score of the store (>= 80 is slow)",
        per_store(|s| s.slow_score),
    )?;
    gauges(
        enc,
        "tikv_store_start_timestamp_seconds",
        "When the store's process started (PD start_timestamp, from TiKV's own clock)",
        per_store(|s| s.start_timestamp),
    )?;
    // Hot traffic (see `domain::StoreHotspot`): absent, not 0, while not read.
    for (name, help, value) in HOT_GAUGES {
        gauges(enc, name, help, per_store(value))?;
    }
    let pc = &snap.pd_cluster;
    gauges(
        enc,
        "tikv_region_status",
        "Regions by health problem, as the PD leader counts them (pd_regions_status of its own /metrics)",
        pc.region_status
            .iter()
            .map(|(t, v)| (vec![("type", *t)], *v)),
    )?;
    gauges(
        enc,
        "tikv_gc_safepoint_timestamp_seconds",
        "Wall time of PD's GC safe point (versions older than it may be collected)",
        pc.gc_safepoint.map(|t| (Vec::new(), t)),
    )?;
    gauges(
        enc,
        "tikv_min_resolved_ts_timestamp_seconds",
        "Wall time of PD's min resolved ts: store=\"\" for the cluster, else per store",
        pc.min_resolved_ts
            .iter()
            .map(|(s, t)| (vec![("store", s.as_str())], *t)),
    )?;
    Ok(())
}

/// The families read live at every scrape: heartbeat ages (at scrape time), log counters,
/// sources, notifier, HTTP connections, build.
fn encode_live(
    view: &View,
    build: &BuildInfo,
    enc: &mut DescriptorEncoder,
) -> Result<(), std::fmt::Error> {
    let snap = view.published.snapshot();
    let st = &snap.stores;
    let now = unix_now();
    gauges(
        enc,
        "tikv_store_heartbeat_age_seconds",
        "Seconds since the store's last heartbeat to PD, at scrape time",
        st.iter().filter_map(|s| {
            Some((
                vec![("store", s.id.as_str())],
                (now - s.last_heartbeat?).max(0.0),
            ))
        }),
    )?;

    let logs = view.logs.list();
    let snaps: Vec<_> = logs.iter().map(|s| (s, s.snapshot())).collect();
    counters(
        enc,
        "tikv_leadership_changes",
        "Leadership events found in the logs, by source, store and event",
        snaps.iter().flat_map(|(s, sn)| {
            EventKind::ALL.iter().map(move |k| {
                (
                    vec![
                        ("source", s.source.as_str()),
                        ("store", s.store.as_str()),
                        ("event", k.as_str()),
                    ],
                    sn.events[k.index()],
                )
            })
        }),
    )?;
    counters(
        enc,
        "tikv_log_lines",
        "Well-formed log lines read, by source, store and level",
        snaps.iter().flat_map(|(s, sn)| {
            Level::ALL.iter().map(move |l| {
                (
                    vec![
                        ("source", s.source.as_str()),
                        ("store", s.store.as_str()),
                        ("level", l.as_str()),
                    ],
                    sn.lines_by_level[l.index()],
                )
            })
        }),
    )?;
    counters(
        enc,
        "tikv_log_malformed_lines",
        "Log lines that are not in the unified log format (counted and skipped)",
        snaps.iter().map(|(s, sn)| {
            (
                vec![("source", s.source.as_str()), ("store", s.store.as_str())],
                sn.malformed,
            )
        }),
    )?;
    counters(
        enc,
        "tikv_log_gaps",
        "Places in a followed log file where lines may have been lost and could not be read back, by reason",
        snaps
            .iter()
            .filter_map(|(s, _)| Some((s, s.file_state()?)))
            .flat_map(|(s, f)| {
                GapReason::ALL.iter().map(move |r| {
                    (
                        vec![
                            ("source", s.source.as_str()),
                            ("store", s.store.as_str()),
                            ("reason", r.as_str()),
                        ],
                        f.gaps[r.index()],
                    )
                })
            }),
    )?;
    gauges(
        enc,
        "tikv_log_file_deleted",
        "1 when the followed log file was deleted and nothing is at its path (it is still read)",
        snaps.iter().filter_map(|(s, _)| {
            Some((
                vec![("source", s.source.as_str()), ("store", s.store.as_str())],
                b(s.file_state()?.deleted),
            ))
        }),
    )?;
    gauges(
        enc,
        "tikv_log_followed_files",
        "File patterns: how many matching files are followed for the store",
        snaps.iter().filter_map(|(s, _)| {
            Some((
                vec![("source", s.source.as_str()), ("store", s.store.as_str())],
                s.files()? as f64,
            ))
        }),
    )?;
    gauges(
        enc,
        "tikv_log_last_line_timestamp_seconds",
        "The log time of the newest line read from the source",
        snaps.iter().filter_map(|(s, sn)| {
            Some((
                vec![("source", s.source.as_str()), ("store", s.store.as_str())],
                sn.last_line_millis? as f64 / 1000.0,
            ))
        }),
    )?;

    counters(
        enc,
        "tikv_pd_leader_changes",
        "PD leader changes seen across polls (each configured PD member asked for /members)",
        [(Vec::new(), snap.pd_leader_changes)],
    )?;
    gauges(
        enc,
        "tikv_health_exporter_unmapped_samples",
        "Samples of the last result of a store-scoped Prometheus invariant that map to no PD store",
        snap.unmapped
            .iter()
            .map(|(n, u)| (vec![("invariant", n.as_str())], u.samples as f64)),
    )?;
    gauges(
        enc,
        "tikv_health_exporter_pd_rejected_stores",
        "Entries of PD's last /stores reply rejected because they name no single store, by reason",
        REJECT_REASONS.iter().map(|r| {
            (
                vec![("reason", *r)],
                snap.rejected_stores.get(*r).copied().unwrap_or(0) as f64,
            )
        }),
    )?;
    counters(
        enc,
        "tikv_health_exporter_state_file_corrupt",
        "State files found unusable at start (empty, truncated, not JSON): set aside as <file>.corrupt-<unix seconds>",
        snap.state_file.map(|s| (Vec::new(), s.corrupt)),
    )?;
    counters(
        enc,
        "tikv_health_exporter_state_file_write_failures",
        "Writes of the state file that failed (no space left, permissions, ...)",
        snap.state_file.map(|s| (Vec::new(), s.write_failures)),
    )?;
    gauges(
        enc,
        "tikv_pd_max_store_down_time_seconds",
        "PD's max-store-down-time: how long a Disconnected store stays before PD marks it Down",
        snap.max_store_down_time.map(|v| (Vec::new(), v)),
    )?;
    let src = &snap.sources;
    gauges(
        enc,
        "tikv_health_exporter_source_up",
        "1 when the source answered at its last attempt",
        src.iter()
            .map(|(n, h)| (vec![("source", n.as_str())], b(h.up)))
            .chain(
                log_sources_up(&logs)
                    .into_iter()
                    .map(|(n, up)| (vec![("source", n)], b(up))),
            ),
    )?;
    gauges(
        enc,
        "tikv_health_exporter_poll_duration_seconds",
        "Duration of the last poll of the source",
        src.iter()
            .filter_map(|(n, h)| Some((vec![("source", n.as_str())], h.last_duration?))),
    )?;
    gauges(
        enc,
        "tikv_health_exporter_last_success_timestamp_seconds",
        "Time of the last successful poll of the source",
        src.iter()
            .filter_map(|(n, h)| Some((vec![("source", n.as_str())], h.last_success?))),
    )?;
    let ams = &view.notifier.alertmanagers;
    counters(
        enc,
        "tikv_health_exporter_notifications",
        "Alerts sent directly to the Alertmanager: sent (accepted), failed (in a failed attempt; retried), rejected (refused as invalid, HTTP 400; not retried), dropped (pushed out of the full queue)",
        ams.iter().flat_map(|d| {
            let c = d.counts();
            [
                ("sent", c.sent),
                ("failed", c.failed),
                ("rejected", c.rejected),
                ("dropped", c.dropped),
            ]
            .map(|(r, n)| (vec![("alertmanager", d.name.as_str()), ("result", r)], n))
        }),
    )?;
    gauges(
        enc,
        "tikv_health_exporter_notifications_queue_length",
        "Alerts waiting for (or in) delivery to the Alertmanager",
        ams.iter().map(|d| {
            (
                vec![("alertmanager", d.name.as_str())],
                d.queue_length() as f64,
            )
        }),
    )?;
    gauges(
        enc,
        "tikv_health_exporter_notifications_queue_capacity",
        "Alerts the queue of the Alertmanager holds before it drops the oldest",
        ams.iter()
            .map(|d| (vec![("alertmanager", d.name.as_str())], d.capacity() as f64)),
    )?;
    family(
        enc,
        "tikv_health_exporter_notification_latency_seconds",
        "Duration of each POST of alerts to the Alertmanager (failed ones included)",
        MetricType::Histogram,
        ams.iter()
            .map(|d| (vec![("alertmanager", d.name.as_str())], d.latency().clone())),
    )?;
    let http = &view.http;
    gauges(
        enc,
        "tikv_health_exporter_http_connections_open",
        "HTTP connections open now (this scrape's included)",
        [(Vec::new(), http.open() as f64)],
    )?;
    gauges(
        enc,
        "tikv_health_exporter_http_max_connections",
        "The cap on open HTTP connections (web.max_connections, or half the open-file limit)",
        [(Vec::new(), http.max_connections() as f64)],
    )?;
    counters(
        enc,
        "tikv_health_exporter_http_connections_shed",
        "HTTP connections the exporter closed without a request in flight: header_timeout (no whole request head within web.header_read_timeout), idle_timeout (no next request within web.idle_timeout), max_connections (idle the longest, closed for a new connection at the cap), fd_limit (idle the longest, closed when an accept ran out of file descriptors)",
        ShedReason::ALL
            .iter()
            .map(|r| (vec![("reason", r.as_str())], http.shed(*r))),
    )?;
    counters(
        enc,
        "tikv_health_exporter_http_accept_errors",
        "Accepts of HTTP connections that failed for the lack of file descriptors or memory (each followed by a pause)",
        [(Vec::new(), http.accept_errors())],
    )?;
    gauges(
        enc,
        "tikv_health_exporter_build_info",
        "Build of the exporter; always 1",
        [(
            vec![
                ("version", build.version.as_str()),
                ("revision", build.revision.as_str()),
                ("rustc_version", build.rustc_version.as_str()),
            ],
            1.0,
        )],
    )?;
    Ok(())
}

/// Every family, the snapshot's read at encode time (uncached: tests, benches, `check-config`).
impl Collector for StateCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        encode_snapshot(&self.view.published.snapshot(), &mut enc)?;
        encode_live(&self.view, &self.build, &mut enc)
    }
}

/// The live families only (the cached exposition's per-scrape part).
#[derive(Debug)]
struct LiveCollector {
    view: Arc<View>,
    build: BuildInfo,
}

impl Collector for LiveCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        encode_live(&self.view, &self.build, &mut enc)
    }
}

/// The snapshot families of one snapshot (the cached exposition's per-poll part).
#[derive(Debug)]
struct SnapshotCollector(Arc<Snapshot>);

impl Collector for SnapshotCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        encode_snapshot(&self.0, &mut enc)
    }
}

/// A registry exporting the published state and the log counters; with `cluster`, every
/// series carries `cluster="<name>"`.
pub fn registry(view: Arc<View>, build: BuildInfo, cluster: Option<&str>) -> Registry {
    let mut r = labelled(cluster);
    r.register_collector(Box::new(StateCollector { view, build }));
    r.register_collector(Box::new(super::process::ProcessCollector));
    r
}

/// An empty registry whose series carry `cluster="<name>"` when `cluster` is set.
fn labelled(cluster: Option<&str>) -> Registry {
    match cluster {
        Some(c) => Registry::with_labels(std::iter::once(("cluster".into(), c.to_owned().into()))),
        None => Registry::default(),
    }
}

/// The live part of [`registry`]: everything but the snapshot families, process metrics
/// included, in the same order.
pub(crate) fn live_registry(view: Arc<View>, build: BuildInfo, cluster: Option<&str>) -> Registry {
    let mut r = labelled(cluster);
    r.register_collector(Box::new(LiveCollector { view, build }));
    r.register_collector(Box::new(super::process::ProcessCollector));
    r
}

/// The snapshot families of `snap` alone, as OpenMetrics text without the closing `# EOF`
/// (the part [`registry`] renders first).
pub(crate) fn render_snapshot(snap: Arc<Snapshot>, cluster: Option<&str>) -> String {
    // Sized as the last render (6 MB at 1000 stores) rather than grown by doubling.
    static LAST_LEN: AtomicUsize = AtomicUsize::new(16 * 1024);
    let last = LAST_LEN.load(Ordering::Relaxed);
    let mut out = String::with_capacity(last + last / 32);
    if write_snapshot(snap, cluster, &mut out).is_err() {
        out.clear();
    }
    if out.ends_with(EOF) {
        out.truncate(out.len() - EOF.len());
    }
    LAST_LEN.store(out.len(), Ordering::Relaxed);
    out
}

/// Writes the snapshot families of `snap` to `out` as OpenMetrics text, ending in `# EOF`
/// (what [`render_snapshot`] returns, for a writer that never holds it whole).
pub(crate) fn write_snapshot(
    snap: Arc<Snapshot>,
    cluster: Option<&str>,
    out: &mut impl std::fmt::Write,
) -> std::fmt::Result {
    let mut r = labelled(cluster);
    r.register_collector(Box::new(SnapshotCollector(snap)));
    prometheus_client::encoding::text::encode(out, &r)
}

/// The line that closes an OpenMetrics exposition.
pub(crate) const EOF: &str = "# EOF\n";

/// Encodes the registry as the Prometheus text format 0.0.4 (converted from [`render`]).
pub fn render_text(registry: &Registry) -> String {
    super::format::to_text(&render(registry))
}

/// Encodes the registry as OpenMetrics text.
pub fn render(registry: &Registry) -> String {
    render_into(String::with_capacity(16 * 1024), registry)
}

/// Encodes the registry as OpenMetrics text into `out` (empty, with the capacity wanted);
/// a failed encoding gives an empty exposition.
fn render_into(mut out: String, registry: &Registry) -> String {
    if prometheus_client::encoding::text::encode(&mut out, registry).is_err() {
        out.clear();
        out.push_str(EOF);
    }
    out
}

#[cfg(test)]
#[path = "metrics_tests.rs"]
pub(crate) mod tests;
