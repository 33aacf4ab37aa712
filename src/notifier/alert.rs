//! Which alerts to send after a poll, and what they say: one alert per firing invariant, in
//! Alertmanager's API v2 shape (`postableAlert` in Alertmanager's `api/v2/openapi.yaml`:
//! `labels`, `annotations`, `startsAt`, `endsAt`).
//!
//! A firing alert is sent when it starts firing and then every resend interval, each time with
//! `endsAt` 4 intervals ahead (Prometheus' notifier does the same, `ValidUntil`), so that
//! Alertmanager resolves it by itself when the exporter stops sending. `startsAt` is the start
//! of the violation, which the state file keeps across restarts. A resolved invariant is sent
//! once more with `endsAt` = now. Pending is never sent. Unknown follows the engine's hold rule:
//! while held, a firing invariant is still firing and re-sent; once the hold ends it is dropped
//! without a resolution (it was not seen to recover), and lapses at its last `endsAt`.

use std::collections::BTreeMap;

use serde::{Serialize, Serializer};

use crate::invariants::catalog::{self, ThresholdKind};
use crate::invariants::engine::Phase;
use crate::snapshot::{InvariantView, Snapshot};

/// One alert as posted to `POST /api/v2/alerts`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Alert {
    /// `alertname`, `name`, `store`, `severity` and the external labels.
    pub labels: BTreeMap<String, String>,
    /// `summary`, `description`, `runbook_url`.
    pub annotations: BTreeMap<String, String>,
    /// Start of the violation (Unix seconds; RFC 3339 on the wire).
    #[serde(serialize_with = "rfc3339")]
    pub starts_at: f64,
    /// Until when Alertmanager holds it firing; now for a resolution.
    #[serde(serialize_with = "rfc3339")]
    pub ends_at: f64,
}

/// Unix seconds as RFC 3339 with milliseconds, UTC.
fn rfc3339<S: Serializer>(t: &f64, s: S) -> Result<S::Ok, S::Error> {
    let ms = (t * 1000.0).round() as i64;
    let dt = chrono::DateTime::from_timestamp_millis(ms).unwrap_or_default();
    s.serialize_str(&dt.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// What an alert of one firing series was last sent as.
#[derive(Clone, Debug)]
struct Sent {
    labels: BTreeMap<String, String>,
    starts_at: f64,
    /// When it was last sent; `None`: restored from the state file, not sent by this process.
    at: Option<f64>,
}

/// The firing series this process has sent (or restored), and when they are due again.
#[derive(Debug)]
pub struct Tracker {
    /// Seconds between two sends of a firing alert.
    resend: f64,
    /// How far ahead `endsAt` lies.
    valid_for: f64,
    external_labels: BTreeMap<String, String>,
    active: BTreeMap<(String, String), Sent>,
}

impl Tracker {
    /// Resends every `resend` seconds with `endsAt` 4 × max(`resend`, `poll`) ahead (a poll
    /// slower than the resend interval is the real interval); `external_labels` go on every
    /// alert.
    pub fn new(resend: f64, poll: f64, external_labels: BTreeMap<String, String>) -> Self {
        Tracker {
            resend,
            valid_for: 4.0 * resend.max(poll),
            external_labels,
            active: BTreeMap::new(),
        }
    }

    /// Seconds after the last send at which Alertmanager resolves an alert by itself.
    pub fn valid_for(&self) -> f64 {
        self.valid_for
    }

    /// Takes the firing series restored from the state file as already sent (by the previous
    /// process), so that one that turns out resolved at the first poll is sent as resolved,
    /// and one still firing keeps its `startsAt`.
    pub fn restore(&mut self, snap: &Snapshot) {
        for v in snap.invariants.iter().filter(|v| v.state == Phase::Firing) {
            let Some(starts_at) = v.since else { continue };
            self.active.insert(
                (v.name.to_string(), v.store.clone()),
                Sent {
                    labels: self.labels(v),
                    starts_at,
                    at: None,
                },
            );
        }
    }

    /// The alerts to send now for `snap`: new and due firing alerts, and resolutions.
    pub fn due(&mut self, snap: &Snapshot, now: f64) -> Vec<Alert> {
        let mut out = Vec::new();
        let mut firing = std::collections::BTreeSet::new();
        for v in snap.invariants.iter().filter(|v| v.state == Phase::Firing) {
            let key = (v.name.to_string(), v.store.clone());
            let starts_at = v.since.unwrap_or(now).min(now);
            let labels = self.labels(v);
            firing.insert(key.clone());
            let previous = self.active.get(&key);
            if let Some(p) = previous
                && p.labels != labels
            {
                // A relabelled alert (its severity changed) is another alert: end the old one.
                out.push(self.resolution(p, v, snap, now));
            }
            let send = match previous {
                Some(p) => {
                    p.labels != labels
                        || p.starts_at != starts_at
                        || p.at.is_none_or(|at| now - at >= self.resend)
                }
                None => true,
            };
            if send {
                out.push(Alert {
                    annotations: annotations(v, snap),
                    labels: labels.clone(),
                    starts_at,
                    ends_at: now + self.valid_for,
                });
                self.active.insert(
                    key,
                    Sent {
                        labels,
                        starts_at,
                        at: Some(now),
                    },
                );
            }
        }
        let gone: Vec<(String, String)> = self
            .active
            .keys()
            .filter(|k| !firing.contains(*k))
            .cloned()
            .collect();
        for key in gone {
            let Some(sent) = self.active.remove(&key) else {
                continue;
            };
            let view = snap
                .invariants
                .iter()
                .find(|v| *v.name == key.0 && v.store == key.1);
            match view {
                // No longer held while unknown: not seen to recover, never sent as resolved.
                Some(v) if v.unknown => {}
                Some(v) => out.push(self.resolution(&sent, v, snap, now)),
                // The series is gone (its store left PD's list, the invariant was removed).
                None => out.push(Alert {
                    labels: sent.labels,
                    annotations: BTreeMap::new(),
                    starts_at: sent.starts_at,
                    ends_at: now,
                }),
            }
        }
        out
    }

    /// The resolution of `sent`, worded from `v`.
    fn resolution(&self, sent: &Sent, v: &InvariantView, snap: &Snapshot, now: f64) -> Alert {
        Alert {
            labels: sent.labels.clone(),
            annotations: annotations(v, snap),
            starts_at: sent.starts_at,
            ends_at: now.max(sent.starts_at),
        }
    }

    /// The alert's labels: the external labels, then the invariant's own.
    fn labels(&self, v: &InvariantView) -> BTreeMap<String, String> {
        let mut l = self.external_labels.clone();
        l.insert(
            "alertname".into(),
            catalog::alert_for(&v.name).name.to_owned(),
        );
        l.insert("name".into(), v.name.to_string());
        l.insert("store".into(), v.store.clone());
        l.insert("severity".into(), v.severity.as_str().to_owned());
        l.retain(|_, value| !value.is_empty());
        l
    }
}

/// `summary`, `description` (with the store, its address, the value and the threshold) and
/// `runbook_url`, worded as the shipped rules word them.
fn annotations(v: &InvariantView, snap: &Snapshot) -> BTreeMap<String, String> {
    let text = catalog::alert_for(&v.name);
    let kind = catalog::find(&v.name).map_or(ThresholdKind::Number, |b| b.threshold_kind);
    let subject = if v.store.is_empty() {
        if catalog::find(&v.name).is_some() {
            "PD".to_owned()
        } else {
            format!("Invariant {} (cluster-wide)", v.name)
        }
    } else {
        let address = snap
            .stores
            .iter()
            .find(|s| s.id == v.store)
            .map(|s| format!(" ({})", s.address))
            .unwrap_or_default();
        if catalog::find(&v.name).is_some() {
            format!("TiKV store {}{address}", v.store)
        } else {
            format!("Invariant {} on TiKV store {}{address}", v.name, v.store)
        }
    };
    let detail = text
        .detail
        .replace(
            "{value}",
            &v.value.map_or("unknown".into(), |x| human(x, kind)),
        )
        .replace("{threshold}", &human(v.threshold, kind));
    BTreeMap::from([
        ("summary".to_owned(), text.summary.to_owned()),
        ("description".to_owned(), format!("{subject} {detail}")),
        ("runbook_url".to_owned(), text.runbook_url()),
    ])
}

/// A value in its unit, the way the rules' `humanizeDuration`, `humanizePercentage` and
/// `humanize` write it (`1m 30s`, `75.3%`, `80`).
pub fn human(x: f64, kind: ThresholdKind) -> String {
    if !x.is_finite() {
        return x.to_string();
    }
    match kind {
        ThresholdKind::Ratio => format!("{}%", round4(x * 100.0)),
        ThresholdKind::Number => round4(x),
        ThresholdKind::Seconds if x.abs() < 1.0 => format!("{}ms", round4(x * 1000.0)),
        ThresholdKind::Seconds => {
            let total = x.round() as u64;
            let (d, h, m, s) = (
                total / 86400,
                total / 3600 % 24,
                total / 60 % 60,
                total % 60,
            );
            let parts: Vec<String> = [(d, "d"), (h, "h"), (m, "m"), (s, "s")]
                .iter()
                .skip_while(|(n, _)| *n == 0)
                .filter(|(n, _)| *n != 0)
                .map(|(n, u)| format!("{n}{u}"))
                .collect();
            if parts.is_empty() {
                "0s".into()
            } else {
                parts.join(" ")
            }
        }
    }
}

/// At most 4 significant digits, no trailing zeros (`0.1`, `80`, `75.33`).
fn round4(x: f64) -> String {
    if x == 0.0 {
        return "0".into();
    }
    let digits = (3 - x.abs().log10().floor() as i32).max(0) as usize;
    let s = format!("{x:.digits$}");
    if s.contains('.') {
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Op, Severity};
    use crate::snapshot::StoreView;

    const T0: f64 = 1_700_000_000.0;

    fn view(name: &str, store: &str, state: Phase, unknown: bool) -> InvariantView {
        InvariantView {
            name: name.into(),
            store: store.into(),
            severity: Severity::Critical,
            state,
            unknown,
            since: (state != Phase::Ok).then_some(T0),
            value: Some(95.0),
            op: Op::Gt,
            threshold: 60.0,
            clear_threshold: None,
            grace_seconds: 60.0,
            message: "".into(),
            description: "".into(),
        }
    }

    fn snap(views: Vec<InvariantView>) -> Snapshot {
        Snapshot {
            invariants: views,
            stores: vec![StoreView {
                id: "1".into(),
                address: "tikv-1:20160".into(),
                status_address: String::new(),
                version: String::new(),
                engine: "tikv".into(),
                state: "Disconnected".into(),
                last_heartbeat: None,
                leader_count: None,
                region_count: None,
                capacity_bytes: None,
                available_bytes: None,
                slow_score: None,
                start_timestamp: None,
                hot_write: None,
                hot_read: None,
            }],
            ..Snapshot::default()
        }
    }

    fn tracker() -> Tracker {
        Tracker::new(
            60.0,
            10.0,
            BTreeMap::from([("cluster".to_owned(), "prod".to_owned())]),
        )
    }

    #[test]
    fn firing_is_sent_then_resent_each_interval_and_resolved_once() {
        let mut t = tracker();
        let pending = snap(vec![view("store_down", "1", Phase::Pending, false)]);
        assert!(
            t.due(&pending, T0 + 10.0).is_empty(),
            "pending is never sent"
        );
        let firing = snap(vec![view("store_down", "1", Phase::Firing, false)]);
        let sent = t.due(&firing, T0 + 60.0);
        assert_eq!(sent.len(), 1);
        let a = &sent[0];
        let labels: Vec<(&str, &str)> = a
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            labels,
            [
                ("alertname", "TiKVStoreDown"),
                ("cluster", "prod"),
                ("name", "store_down"),
                ("severity", "critical"),
                ("store", "1"),
            ]
        );
        assert_eq!(a.annotations["summary"], "TiKV store is down.");
        assert_eq!(
            a.annotations["description"],
            "TiKV store 1 (tikv-1:20160) is down: last heartbeat 1m 35s ago (threshold 1m)."
        );
        assert_eq!(
            a.annotations["runbook_url"],
            "https://github.com/tikv-health-exporter/tikv-health-exporter/blob/main/alerts/runbook.md#tikvstoredown"
        );
        assert_eq!((a.starts_at, a.ends_at), (T0, T0 + 60.0 + 240.0));
        assert!(t.due(&firing, T0 + 70.0).is_empty(), "not due yet");
        assert!(t.due(&firing, T0 + 119.0).is_empty(), "not due yet");
        let again = t.due(&firing, T0 + 120.0);
        assert_eq!(again.len(), 1);
        assert_eq!((again[0].starts_at, again[0].ends_at), (T0, T0 + 360.0));
        let ok = snap(vec![view("store_down", "1", Phase::Ok, false)]);
        let resolved = t.due(&ok, T0 + 130.0);
        assert_eq!(resolved.len(), 1);
        assert_eq!(resolved[0].labels, a.labels);
        assert_eq!(
            (resolved[0].starts_at, resolved[0].ends_at),
            (T0, T0 + 130.0)
        );
        assert!(t.due(&ok, T0 + 200.0).is_empty(), "resolved once");
    }

    #[test]
    fn unknown_is_held_then_dropped_and_never_resolved() {
        let mut t = tracker();
        let firing = snap(vec![view("store_down", "1", Phase::Firing, false)]);
        assert_eq!(t.due(&firing, T0 + 60.0).len(), 1);
        // Inputs missing, still held: re-sent as firing.
        let held = snap(vec![view("store_down", "1", Phase::Firing, true)]);
        let resent = t.due(&held, T0 + 120.0);
        assert_eq!(resent.len(), 1);
        assert!(resent[0].ends_at > T0 + 120.0);
        // The hold ended (ok, still unknown): nothing sent, not even a resolution.
        let expired = snap(vec![view("store_down", "1", Phase::Ok, true)]);
        assert!(t.due(&expired, T0 + 400.0).is_empty());
        // It comes back firing: a new alert (the old one lapsed).
        assert_eq!(t.due(&firing, T0 + 410.0).len(), 1);
    }

    #[test]
    fn restored_alerts_keep_starts_at_and_resolve_if_the_first_poll_says_so() {
        let restored = snap(vec![
            view("store_down", "1", Phase::Firing, true),
            view("disk_usage", "1", Phase::Firing, true),
        ]);
        let mut t = tracker();
        t.restore(&restored);
        let mut first = snap(vec![
            view("store_down", "1", Phase::Firing, false),
            view("disk_usage", "1", Phase::Ok, false),
        ]);
        first.invariants[1].since = None;
        let sent = t.due(&first, T0 + 500.0);
        assert_eq!(sent.len(), 2, "{sent:#?}");
        let by_name = |n: &str| sent.iter().find(|a| a.labels["name"] == n).unwrap();
        assert_eq!(by_name("store_down").starts_at, T0);
        assert!(by_name("store_down").ends_at > T0 + 500.0);
        assert_eq!(by_name("disk_usage").ends_at, T0 + 500.0, "resolved");
        assert_eq!(
            by_name("disk_usage").labels["alertname"],
            "TiKVDiskUsageHigh"
        );
    }

    #[test]
    fn a_vanished_series_and_a_severity_change_end_the_old_alert() {
        let mut t = tracker();
        let firing = snap(vec![view("store_down", "1", Phase::Firing, false)]);
        t.due(&firing, T0 + 60.0);
        let mut warning = firing.clone();
        warning.invariants[0].severity = Severity::Warning;
        let sent = t.due(&warning, T0 + 70.0);
        assert_eq!(sent.len(), 2);
        assert_eq!(
            (sent[0].labels["severity"].as_str(), sent[0].ends_at),
            ("critical", T0 + 70.0)
        );
        assert_eq!(sent[1].labels["severity"], "warning");
        let gone = t.due(&snap(vec![]), T0 + 80.0);
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].ends_at, T0 + 80.0);
    }

    #[test]
    fn custom_and_cluster_invariants_are_worded_like_the_rules() {
        let mut t = tracker();
        let mut custom = view("raft_io_stall", "1", Phase::Firing, false);
        custom.value = Some(3.0);
        custom.threshold = 2.0;
        let mut pd = view("pd_leader", "", Phase::Firing, false);
        pd.value = Some(1.0);
        let sent = t.due(&snap(vec![custom, pd]), T0 + 1.0);
        assert_eq!(sent[0].labels["alertname"], "TiKVInvariantViolated");
        assert_eq!(
            sent[0].annotations["description"],
            "Invariant raft_io_stall on TiKV store 1 (tikv-1:20160) violates the invariant: observed 3 (threshold 2)."
        );
        assert_eq!(sent[1].labels["alertname"], "PDLeaderUnhealthy");
        assert!(
            !sent[1].labels.contains_key("store"),
            "an empty label is no label"
        );
        assert!(sent[1].annotations["description"].starts_with("PD has 1 problem(s)"));
    }

    #[test]
    fn the_wire_shape_is_alertmanagers_postable_alert() {
        let a = Alert {
            labels: BTreeMap::from([("alertname".to_owned(), "X".to_owned())]),
            annotations: BTreeMap::new(),
            starts_at: T0,
            ends_at: T0 + 0.25,
        };
        assert_eq!(
            serde_json::to_value(&a).unwrap(),
            serde_json::json!({
                "labels": {"alertname": "X"},
                "annotations": {},
                "startsAt": "2023-11-14T22:13:20.000Z",
                "endsAt": "2023-11-14T22:13:20.250Z",
            })
        );
    }

    #[test]
    fn values_are_written_in_their_unit() {
        assert_eq!(human(95.0, ThresholdKind::Seconds), "1m 35s");
        assert_eq!(human(3600.0, ThresholdKind::Seconds), "1h");
        assert_eq!(human(0.1, ThresholdKind::Seconds), "100ms");
        assert_eq!(human(0.7532, ThresholdKind::Ratio), "75.32%");
        assert_eq!(human(0.7, ThresholdKind::Ratio), "70%");
        assert_eq!(human(80.0, ThresholdKind::Number), "80");
        assert_eq!(human(0.0, ThresholdKind::Number), "0");
    }
}
