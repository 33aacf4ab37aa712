//! The PD leader's own `/metrics` (Prometheus text, served by every member locally, not under
//! `/pd/`, so never redirected): region health counts (`pd_regions_status`, computed only by the
//! leader; PD ≥ v7.1 exports zeros on followers), each store's hot write and read traffic
//! (`pd_hotspot_status`, leader-only, a store's series deleted while it has no load statistics),
//! the embedded etcd's WAL fsync histogram and database size and quota, and the scale-in
//! progress of each store being removed (`pd_cluster_progress`/`_speed`/`_eta{action=
//! "removing"}`, PD ≥ v6.1; §7). cluster-signals.md §8.
//!
//! The page is big (tens of thousands of series at 1000 stores): it is streamed line by line
//! within `pd.max_response_bytes`, and only the few families needed are parsed, by a small
//! parser that skips every other line after looking at its first bytes.
//!
//! Which member is the leader comes from `/members`; the page is asked of the member that
//! served the leader's page last, then of the leader's advertised client URLs, then of the
//! configured endpoints, until a page says it is the leader's (`service_member_role{service=
//! "PD"} 1`, or `etcd_server_is_leader 1` on PD < v7.5). Normally that is one request; after a
//! leader change at most one per member. A page that is not PD's (neither gauge) is a failure.

use std::collections::BTreeMap;

use super::{EndpointFailure, PdClient, PdError};
use crate::domain::{Histogram, Member, PdLeaderMetrics, StoreHotspot, region_status_type};

/// The path of the metrics page.
const METRICS: &str = "/metrics";

/// Lines longer than this are skipped unread (the families read here have short lines).
const MAX_LINE: usize = 4096;

impl PdClient {
    /// The PD leader's `/metrics` (see the module docs), with the endpoint that served it.
    pub async fn leader_metrics(
        &self,
        leader: &Member,
    ) -> Result<(String, PdLeaderMetrics), PdError> {
        let mut candidates: Vec<String> = Vec::new();
        let mut add = |ep: String| {
            if !candidates.contains(&ep) {
                candidates.push(ep);
            }
        };
        if let Some(last) = self.last_metrics_endpoint() {
            add(last);
        }
        for url in &leader.client_urls {
            if let Ok(ep) = super::http::normalize_endpoint(url, self.inner.tls) {
                add(ep);
            }
        }
        for ep in self.endpoints() {
            add(ep.clone());
        }
        let mut failures = Vec::new();
        for ep in candidates {
            match self.metrics_at(&ep).await {
                Ok(m) if m.says_leader() == Some(true) => {
                    self.set_last_metrics_endpoint(&ep);
                    return Ok((ep, m));
                }
                Ok(_) => failures.push(EndpointFailure {
                    endpoint: ep,
                    status: None,
                    message: format!(
                        "not the PD leader {} (its /metrics says it is a follower)",
                        leader.name
                    ),
                }),
                Err(f) => failures.push(f),
            }
        }
        Err(PdError::AllFailed {
            path: METRICS.to_owned(),
            failures,
        })
    }

    /// The parsed `/metrics` page of the member at `endpoint`.
    async fn metrics_at(&self, endpoint: &str) -> Result<PdLeaderMetrics, EndpointFailure> {
        let http = &self.inner.http;
        let req = http
            .get(format!("{endpoint}{METRICS}"))
            .header(reqwest::header::ACCEPT, "text/plain; version=0.0.4");
        let mut page = Page::default();
        let fail = |status, message| EndpointFailure {
            endpoint: endpoint.to_owned(),
            status,
            message,
        };
        http.fetch_ok_lines(req, self.inner.max_response_bytes, MAX_LINE, |l| {
            page.line(l)
        })
        .await
        .map_err(|e| fail(e.status(), e.to_string()))?;
        page.finish()
            .map_err(|why| fail(None, format!("unusable reply to {METRICS}: {why}")))
    }
}

/// The families of one page as they are read.
#[derive(Debug, Default)]
pub(super) struct Page {
    metrics: PdLeaderMetrics,
    regions: Option<BTreeMap<&'static str, f64>>,
    hotspot: Option<BTreeMap<u64, StoreHotspot>>,
    fsync_buckets: Vec<(f64, f64)>,
    fsync_count: Option<f64>,
}

impl Page {
    /// Takes one line of the page (comments and other families are skipped).
    pub(super) fn line(&mut self, line: &[u8]) {
        // Every family read here starts with `e`, `p` or `s`: most lines stop here.
        if !matches!(line.first(), Some(b'e' | b'p' | b's')) {
            return;
        }
        let Ok(line) = std::str::from_utf8(line) else {
            return;
        };
        let Some(s) = Sample::parse(line) else {
            return;
        };
        let m = &mut self.metrics;
        match s.name {
            "pd_regions_status" => {
                let regions = self.regions.get_or_insert_with(BTreeMap::new);
                if let Some(t) = s.label("type").as_deref().and_then(region_status_type) {
                    regions.insert(t, s.value);
                }
            }
            "pd_hotspot_status" => {
                let hot = self.hotspot.get_or_insert_with(BTreeMap::new);
                // `store` is the id PD formats with `strconv.FormatUint`; anything else names
                // no store and is skipped.
                if let (Some(id), Some(ty)) = (
                    s.label("store").and_then(|v| v.parse::<u64>().ok()),
                    s.label("type"),
                ) && s.value.is_finite()
                {
                    hot.entry(id).or_default().set(&ty, s.value);
                }
            }
            "service_member_role" if s.label("service").as_deref() == Some("PD") => {
                m.service_member_role = Some(s.value);
            }
            "etcd_server_is_leader" => m.etcd_is_leader = Some(s.value),
            "etcd_mvcc_db_total_size_in_bytes" => m.db_total_size_bytes = Some(s.value),
            "etcd_server_quota_backend_bytes" => m.quota_backend_bytes = Some(s.value),
            "etcd_disk_wal_fsync_duration_seconds_bucket" => {
                if let Some(le) = s.label("le").and_then(|l| parse_value(&l)) {
                    self.fsync_buckets.push((le, s.value));
                }
            }
            "etcd_disk_wal_fsync_duration_seconds_count" => self.fsync_count = Some(s.value),
            "pd_cluster_progress" | "pd_cluster_speed" | "pd_cluster_eta" => {
                self.removal(&s);
            }
            _ => {}
        }
    }

    /// One `pd_cluster_{progress,speed,eta}` sample of a store being removed (other actions,
    /// `preparing`, and samples without a store id are skipped).
    fn removal(&mut self, s: &Sample<'_>) {
        if s.label("action").as_deref() != Some("removing") {
            return;
        }
        let Some(id) = s.label("store").and_then(|v| v.parse::<u64>().ok()) else {
            return;
        };
        let p = self.metrics.removal.entry(id).or_default();
        let v = Some(s.value).filter(|v| !v.is_nan());
        match s.name {
            "pd_cluster_progress" => p.progress = v,
            "pd_cluster_speed" => p.speed = v,
            _ => p.eta = v,
        }
    }

    /// The families read; `Err` when the page is not a PD member's (neither role gauge).
    pub(super) fn finish(mut self) -> Result<PdLeaderMetrics, String> {
        if self.metrics.says_leader().is_none() {
            return Err(
                "neither service_member_role{service=\"PD\"} nor etcd_server_is_leader: not a PD metrics page"
                    .into(),
            );
        }
        self.fsync_buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        self.fsync_buckets.dedup_by(|a, b| a.0 == b.0);
        self.metrics.wal_fsync = match self.fsync_buckets.last() {
            Some(&(le, n)) if le == f64::INFINITY => Some(Histogram {
                count: self.fsync_count.unwrap_or(n),
                buckets: self.fsync_buckets,
            }),
            // Without its +Inf bucket a histogram has no quantiles (Prometheus says NaN).
            _ => None,
        };
        self.metrics.region_status = self.regions;
        // A family whose samples name no store id (PD v3.x labelled `store="store-1"`) says
        // nothing of any store: no hot traffic at all rather than zeros for every store.
        self.metrics.hotspot = self.hotspot.filter(|h| !h.is_empty());
        Ok(self.metrics)
    }
}

/// One sample line: `name{labels} value [timestamp]`.
struct Sample<'a> {
    name: &'a str,
    labels: &'a str,
    value: f64,
}

impl<'a> Sample<'a> {
    fn parse(line: &'a str) -> Option<Sample<'a>> {
        let name_end = line.find(['{', ' ', '\t'])?;
        let name = &line[..name_end];
        let (labels, rest) = if line[name_end..].starts_with('{') {
            let close = name_end + labels_end(&line[name_end..])?;
            (&line[name_end + 1..close], &line[close + 1..])
        } else {
            ("", &line[name_end..])
        };
        let value = parse_value(rest.split_whitespace().next()?)?;
        Some(Sample {
            name,
            labels,
            value,
        })
    }

    /// The (unescaped) value of label `key`.
    fn label(&self, key: &str) -> Option<String> {
        let mut rest = self.labels;
        loop {
            rest = rest.trim_start_matches([',', ' ']);
            if rest.is_empty() {
                return None;
            }
            let eq = rest.find('=')?;
            let k = rest[..eq].trim();
            let after = rest[eq + 1..].trim_start().strip_prefix('"')?;
            let mut value = String::new();
            let mut chars = after.char_indices();
            let end = loop {
                match chars.next()? {
                    (i, '"') => break i,
                    (_, '\\') => match chars.next()?.1 {
                        'n' => value.push('\n'),
                        c => value.push(c),
                    },
                    (_, c) => value.push(c),
                }
            };
            if k == key {
                return Some(value);
            }
            rest = &after[end + 1..];
        }
    }
}

/// The offset of the `}` closing the label set that `text` starts with (quotes respected).
fn labels_end(text: &str) -> Option<usize> {
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            '}' if !in_quotes => return Some(i),
            _ => {}
        }
    }
    None
}

/// A sample value as Go writes it (`1.2e+09`, `+Inf`, `-Inf`, `NaN`).
fn parse_value(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        t => t.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::HotFlow;

    fn page(text: &str) -> Result<PdLeaderMetrics, String> {
        let mut p = Page::default();
        for l in text.lines() {
            p.line(l.as_bytes());
        }
        p.finish()
    }

    /// The sample exposition of cluster-signals.md §8 (PD v8.5.4 labels, values invented).
    const LEADER_PAGE: &str = r#"# HELP etcd_server_is_leader Whether or not this member is a leader. 1 if is, 0 otherwise.
# TYPE etcd_server_is_leader gauge
etcd_server_is_leader 1
# TYPE etcd_server_quota_backend_bytes gauge
etcd_server_quota_backend_bytes 8.589934592e+09
# TYPE etcd_mvcc_db_total_size_in_bytes gauge
etcd_mvcc_db_total_size_in_bytes 2.1336064e+08
# HELP etcd_disk_wal_fsync_duration_seconds The latency distributions of fsync called by WAL.
# TYPE etcd_disk_wal_fsync_duration_seconds histogram
etcd_disk_wal_fsync_duration_seconds_bucket{le="0.001"} 40312
etcd_disk_wal_fsync_duration_seconds_bucket{le="8.192"} 53390
etcd_disk_wal_fsync_duration_seconds_bucket{le="+Inf"} 53390
etcd_disk_wal_fsync_duration_seconds_sum 61.52
etcd_disk_wal_fsync_duration_seconds_count 53390
# HELP service_member_role The leader/primary of services
# TYPE service_member_role gauge
service_member_role{service="PD"} 1
# HELP pd_cluster_status Status of the cluster.
# TYPE pd_cluster_status gauge
pd_cluster_status{type="leader_count"} 33345
pd_cluster_status{type="store_down_count"} 1
# HELP pd_regions_status Status of the regions.
# TYPE pd_regions_status gauge
pd_regions_status{type="down-peer-region-count"} 33345
pd_regions_status{type="miss-peer-region-count"} 33345
pd_regions_status{type="pending-peer-region-count"} 12
# HELP pd_scheduler_store_status Store status for schedule
# TYPE pd_scheduler_store_status gauge
pd_scheduler_store_status{address="10.0.1.1:20160",store="1",type="leader_count"} 16672
# HELP pd_hotspot_status Status of the hotspot.
# TYPE pd_hotspot_status gauge
pd_hotspot_status{address="10.0.1.1:20160",store="1",type="hot_write_region_as_leader"} 12
pd_hotspot_status{address="10.0.1.1:20160",store="1",type="hot_write_region_as_peer"} 30
pd_hotspot_status{address="10.0.1.1:20160",store="1",type="total_write_bytes_as_peer"} 2.09715201e+07
pd_hotspot_status{address="10.0.1.1:20160",store="1",type="total_write_keys_as_peer"} 65536
pd_hotspot_status{address="10.0.1.1:20160",store="1",type="total_write_query_as_peer"} 1200
pd_hotspot_status{address="10.0.1.1:20160",store="1",type="hot_read_region_as_peer"} 2
pd_hotspot_status{address="10.0.1.1:20160",store="1",type="total_read_bytes_as_peer"} 1.048576e+06
pd_hotspot_status{address="10.0.1.1:20160",store="1",type="total_read_keys_as_peer"} 2048
pd_hotspot_status{address="10.0.1.4:20160",store="4",type="hot_write_region_as_peer"} 0
pd_hotspot_status{address="10.0.1.4:20160",store="4",type="total_write_bytes_as_peer"} 0
pd_hotspot_status{address="x",store="store-9",type="hot_write_region_as_peer"} 5
"#;

    #[test]
    fn the_leader_page_gives_region_counts_and_etcd_state() {
        let m = page(LEADER_PAGE).unwrap();
        assert_eq!(m.says_leader(), Some(true));
        let r = m.region_status.as_ref().unwrap();
        assert_eq!(r.get("down-peer-region-count"), Some(&33345.0));
        assert_eq!(r.get("pending-peer-region-count"), Some(&12.0));
        assert_eq!(r.get("offline-peer-region-count"), None);
        assert_eq!(m.quota_backend_bytes, Some(8_589_934_592.0));
        assert_eq!(m.db_total_size_bytes, Some(213_360_640.0));
        let h = m.wal_fsync.unwrap();
        assert_eq!(
            h.buckets,
            [(0.001, 40312.0), (8.192, 53390.0), (f64::INFINITY, 53390.0)]
        );
        assert_eq!(h.count, 53390.0);
        // `_as_peer` for both directions; `_as_leader` and `_query` are not read; a store
        // label that is not an id names no store.
        let hot = m.hotspot.unwrap();
        assert_eq!(hot.keys().copied().collect::<Vec<_>>(), [1, 4]);
        let s1 = hot[&1];
        assert_eq!(
            s1.write,
            HotFlow {
                regions: 30.0,
                bytes_per_second: 20_971_520.1,
                keys_per_second: 65536.0
            }
        );
        assert_eq!(
            s1.read,
            HotFlow {
                regions: 2.0,
                bytes_per_second: 1_048_576.0,
                keys_per_second: 2048.0
            }
        );
        assert_eq!(hot[&4], StoreHotspot::default());
    }

    #[test]
    fn a_page_without_the_hotspot_family_has_no_hotspot_map() {
        let m =
            page("etcd_server_is_leader 1\npd_regions_status{type=\"down-peer-region-count\"} 0\n")
                .unwrap();
        assert_eq!(m.hotspot, None);
        let old = page("etcd_server_is_leader 1\npd_hotspot_status{store=\"store-1\",type=\"hot_write_region_as_peer\"} 3\n")
            .unwrap();
        assert_eq!(old.hotspot, None);
    }

    #[test]
    fn removal_progress_is_read_per_store_being_removed() {
        // cluster-signals.md §7/§8: labels {address, store, action}; ETA MaxFloat64 when stalled;
        // HEAD/v26.3 leaves `address` empty.
        let m = page(concat!(
            "etcd_server_is_leader 1\n",
            "# HELP pd_cluster_eta The ETA of corresponding action\n",
            "# TYPE pd_cluster_eta gauge\n",
            "pd_cluster_eta{action=\"removing\",address=\"10.0.1.5:20160\",store=\"5\"} 1.7976931348623157e+308\n",
            "pd_cluster_progress{action=\"removing\",address=\"10.0.1.5:20160\",store=\"5\"} 0.4321\n",
            "pd_cluster_speed{action=\"removing\",address=\"10.0.1.5:20160\",store=\"5\"} 0\n",
            "pd_cluster_progress{action=\"removing\",address=\"\",store=\"6\"} 0.9\n",
            "pd_cluster_progress{action=\"preparing\",address=\"\",store=\"7\"} 0.1\n",
            "pd_cluster_progress{action=\"removing\",address=\"\",store=\"x\"} 0.1\n",
        ))
        .unwrap();
        let ids: Vec<u64> = m.removal.keys().copied().collect();
        assert_eq!(ids, [5, 6]);
        let five = m.removal[&5];
        assert_eq!(
            (five.progress, five.speed, five.eta),
            (Some(0.4321), Some(0.0), Some(f64::MAX))
        );
        assert!(five.stalled());
        assert_eq!(
            (m.removal[&6].progress, m.removal[&6].speed),
            (Some(0.9), None)
        );
        assert!(
            page("etcd_server_is_leader 1\n")
                .unwrap()
                .removal
                .is_empty()
        );
    }

    #[test]
    fn followers_and_old_pds_say_so_and_other_pages_are_refused() {
        // PD ≥ v7.1 follower: zeros for the region counts, role 0.
        let f = page("service_member_role{service=\"PD\"} 0\netcd_server_is_leader 0\npd_regions_status{type=\"down-peer-region-count\"} 0\n").unwrap();
        assert_eq!(f.says_leader(), Some(false));
        // PD < v7.5 has no service_member_role: etcd's role decides; pre-v3.1 type spelling.
        let old =
            page("etcd_server_is_leader 1\npd_regions_status{type=\"miss_peer_region_count\"} 4\n")
                .unwrap();
        assert_eq!(old.says_leader(), Some(true));
        assert_eq!(
            old.region_status.unwrap().get("miss-peer-region-count"),
            Some(&4.0)
        );
        // Another service's role gauge does not count; neither gauge: not PD's page.
        let e = page("service_member_role{service=\"TSO\"} 1\nup 1\n").unwrap_err();
        assert!(e.contains("not a PD metrics page"), "{e}");
        assert!(page("<html>502</html>").is_err());
        // No pd_regions_status family at all: None, not zeros.
        assert_eq!(
            page("etcd_server_is_leader 1\n").unwrap().region_status,
            None
        );
    }

    #[test]
    fn sample_lines_are_parsed_as_the_text_format_writes_them() {
        let s = Sample::parse(r#"x{a="1",b="q\"uo}te\\",le="+Inf"} -Inf 1700000000000"#).unwrap();
        assert_eq!((s.name, s.value), ("x", f64::NEG_INFINITY));
        assert_eq!(s.label("b").as_deref(), Some("q\"uo}te\\"));
        assert_eq!(
            s.label("le").and_then(|l| parse_value(&l)),
            Some(f64::INFINITY)
        );
        assert_eq!(s.label("c"), None);
        assert!(Sample::parse("y NaN").unwrap().value.is_nan());
        assert_eq!(Sample::parse("z 1.5e+03").unwrap().value, 1500.0);
        assert!(Sample::parse("broken{a=\"1\" 3").is_none());
        assert!(Sample::parse("novalue").is_none());
        // A histogram without +Inf has no quantiles: no histogram.
        let m = page("etcd_server_is_leader 1\netcd_disk_wal_fsync_duration_seconds_bucket{le=\"0.001\"} 3\n").unwrap();
        assert_eq!(m.wal_fsync, None);
    }
}
