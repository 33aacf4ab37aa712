//! Unit tests of the metric contract (`metrics.rs`), and the views other tests of the
//! exposition build on.

use super::*;
use crate::domain::{HotFlow, Op, Severity};
use crate::logs::ingest::{EventHistory, FileState};
use crate::logs::source::LogRegistry;
use crate::notifier::NotifierStats;
use crate::notifier::delivery::Delivery;
use crate::snapshot::{
    InvariantView, Published, Snapshot, SourceHealth, StateFileHealth, StoreView, UnmappedView,
};

#[test]
fn a_pattern_with_several_store_series_has_one_source_up() {
    let reg = LogRegistry::new();
    let (a, b) = (reg.series("file:tikv", ""), reg.series("file:tikv", "1"));
    reg.register("file:pd.log", "").set_up(true);
    assert!(
        Arc::ptr_eq(&b, &reg.series("file:tikv", "1")),
        "one entry per store"
    );
    a.set_up(true);
    b.set_up(true);
    let list = reg.list();
    assert_eq!(list.len(), 3);
    assert_eq!(
        log_sources_up(&list),
        [("file:tikv", true), ("file:pd.log", true)]
    );
    b.set_up(false);
    assert_eq!(log_sources_up(&list)[0], ("file:tikv", false));
    reg.remove("file:tikv", "1");
    assert_eq!(reg.list().len(), 2);
}

/// A view with a series in every family the exporter has: gauges, counters (log, PD,
/// state file, notifier, process), the notifier's histogram, the build info.
/// A view with one store, one firing invariant, log sources, an Alertmanager.
pub(crate) fn full_view() -> Arc<View> {
    let logs = Arc::new(LogRegistry::new());
    let file = logs.register("file:tikv.log", "1");
    file.set_file_state(&FileState {
        deleted: true,
        gaps: [2; GapReason::ALL.len()],
    });
    logs.register("docker:tikv-2", "2");
    let am = Arc::new(Delivery::new("am-0", 10));
    am.latency().observe(0.012);
    let view = Arc::new(View {
        published: Arc::new(Published::new()),
        logs,
        history: Arc::new(EventHistory::new(10)),
        notifier: Arc::new(NotifierStats {
            alertmanagers: vec![am],
        }),
        http: Default::default(),
    });
    let invariant = InvariantView {
        name: "store_down".into(),
        store: "1".into(),
        severity: Severity::Critical,
        state: Phase::Firing,
        unknown: false,
        since: Some(1.7e9),
        value: Some(120.0),
        op: Op::Gt,
        threshold: 60.0,
        clear_threshold: None,
        grace_seconds: 60.0,
        message: "".into(),
        description: "".into(),
    };
    let store = StoreView {
        id: "1".into(),
        address: "tikv-1:20160".into(),
        status_address: "tikv-1:20180".into(),
        version: "8.1.0".into(),
        engine: "tikv".into(),
        state: "Disconnected".into(),
        last_heartbeat: Some(1.7e9),
        leader_count: Some(3),
        region_count: Some(9),
        capacity_bytes: Some(1 << 40),
        available_bytes: Some(1 << 39),
        slow_score: Some(1.0),
        start_timestamp: Some(1.6e9),
        hot_write: Some(HotFlow {
            regions: 3.0,
            bytes_per_second: 1024.0,
            keys_per_second: 16.0,
        }),
        hot_read: Some(HotFlow::default()),
    };
    let health = SourceHealth {
        up: true,
        last_success: Some(1.7e9),
        last_duration: Some(0.05),
        last_error: None,
    };
    view.published.publish(Snapshot {
        invariants: vec![invariant],
        stores: vec![store],
        sources: [("pd".to_owned(), health)].into(),
        taken_at: 1.7e9,
        max_store_down_time: Some(1800.0),
        pd_leader_changes: 4,
        unmapped: [("cpu_usage".to_owned(), UnmappedView::default())].into(),
        rejected_stores: Default::default(),
        state_file: Some(StateFileHealth {
            corrupt: 1,
            write_failures: 0,
        }),
        pd_cluster: Default::default(),
        ..Snapshot::default()
    });
    view
}

/// A fixed build identity.
pub(crate) fn build() -> BuildInfo {
    BuildInfo {
        version: "0.1.0".into(),
        revision: "abc".into(),
        rustc_version: "rustc 1.95.0".into(),
    }
}

/// The family a sample line belongs to under the text format's rules, given the TYPE.
fn belongs(sample: &str, family: &str, kind: &str) -> bool {
    let name = sample.split(['{', ' ']).next().unwrap();
    match kind {
        "histogram" => ["_bucket", "_sum", "_count"]
            .iter()
            .any(|s| name.strip_prefix(family) == Some(s)),
        _ => name == family,
    }
}

#[test]
fn the_text_format_names_every_family_by_its_samples() {
    let reg = registry(full_view(), build(), Some("c1"));
    let om = render(&reg);
    // Converted from the same render: process_* and the heartbeat age move between two.
    let text = super::super::format::to_text(&om);
    assert!(render_text(&reg).starts_with("# HELP tikv_invariant_violation "));
    assert!(om.ends_with("# EOF\n"));
    assert!(!text.contains("# EOF") && !text.contains("# UNIT"));
    let lines: Vec<&str> = text.lines().collect();
    let mut family = ("", "");
    let mut kinds = std::collections::BTreeMap::new();
    for (i, l) in lines.iter().enumerate() {
        if let Some(t) = l.strip_prefix("# TYPE ") {
            let (name, kind) = t.split_once(' ').unwrap();
            assert!(
                lines[i - 1].starts_with(&format!("# HELP {name} ")),
                "HELP before {l}"
            );
            family = (name, kind);
            kinds.insert(name, kind);
        } else if !l.starts_with('#') {
            assert!(belongs(l, family.0, family.1), "{l} under {family:?}");
            assert!(l.contains("cluster=\"c1\""), "{l}");
        }
    }
    // Every counter on its _total name; the notifier's histogram; gauges for the rest.
    for (name, kind) in &kinds {
        assert_eq!(
            *kind == "counter",
            name.ends_with("_total"),
            "{name} {kind}"
        );
        assert!(["counter", "gauge", "histogram"].contains(kind), "{name}");
    }
    for name in [
        "tikv_leadership_changes_total",
        "tikv_log_lines_total",
        "tikv_log_malformed_lines_total",
        "tikv_log_gaps_total",
        "tikv_pd_leader_changes_total",
        "tikv_health_exporter_state_file_corrupt_total",
        "tikv_health_exporter_state_file_write_failures_total",
        "tikv_health_exporter_notifications_total",
        "process_cpu_seconds_total",
    ] {
        assert_eq!(kinds.get(name), Some(&"counter"), "{name}");
    }
    assert_eq!(
        kinds.get("tikv_health_exporter_notification_latency_seconds"),
        Some(&"histogram")
    );
    assert_eq!(kinds.get("tikv_health_exporter_build_info"), Some(&"gauge"));
    assert_eq!(kinds.get("tikv_store_state"), Some(&"gauge"));
    assert!(text.contains(
        "# HELP tikv_leadership_changes_total Leadership events found in the logs, by source, store and event\n\
         # TYPE tikv_leadership_changes_total counter\n"
    ));
    assert!(text.contains("tikv_pd_leader_changes_total{cluster=\"c1\"} 4\n"));
    // The same samples, byte for byte, in both formats.
    let samples = |s: &str| {
        let mut v: Vec<String> = s
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(str::to_owned)
            .collect();
        v.sort();
        v
    };
    assert_eq!(samples(&om), samples(&text));
    assert!(samples(&text).iter().any(|l| l.starts_with(
        "tikv_health_exporter_notification_latency_seconds_bucket{cluster=\"c1\",le=\"0.02\",alertmanager=\"am-0\"} 1"
    )), "{text}");
}
