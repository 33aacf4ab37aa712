//! The fake PD's hot peers and the two shapes they are served in (cluster-signals.md §5, §8):
//! the leader's `pd_hotspot_status{address,store,type}` gauges (`server/cluster` `collectHotMetrics`:
//! per store the `_as_leader` and `_as_peer` series, deleted while the store has no load
//! statistics) and `GET /pd/api/v1/hotspot/regions/{write,read}` (`server/api/hot_status.go`,
//! the v6.5–v8.5.6 field set, indented with a trailing newline as PD renders it). Both are
//! derived from the same list of hot peers, so they agree.

use serde_json::{Map, Value, json};

/// Write or read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Write,
    Read,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Write => "write",
            Kind::Read => "read",
        }
    }
}

/// One hot peer (`statistics[]` entry).
#[derive(Clone, Debug)]
pub struct HotPeer {
    pub kind: Kind,
    pub region_id: u64,
    pub store_id: u64,
    pub is_leader: bool,
    pub flow_bytes: f64,
    pub flow_keys: f64,
}

/// A hot peer moving `flow_bytes` a second, one key per KiB.
pub fn peer(
    kind: Kind,
    region_id: u64,
    store_id: u64,
    is_leader: bool,
    flow_bytes: f64,
) -> HotPeer {
    HotPeer {
        kind,
        region_id,
        store_id,
        is_leader,
        flow_bytes,
        flow_keys: flow_bytes / 1024.0,
    }
}

/// The hot-region statistics of the fake cluster.
#[derive(Clone, Debug)]
pub struct Hotspot {
    /// `false`: the leader exports no `pd_hotspot_status` at all (no collection yet).
    pub family: bool,
    /// Stores without load statistics (just restarted): no series, absent from the JSON.
    pub absent: Vec<u64>,
    pub peers: Vec<HotPeer>,
}

impl Default for Hotspot {
    fn default() -> Self {
        Hotspot {
            family: true,
            absent: Vec::new(),
            peers: Vec::new(),
        }
    }
}

/// (id, address) of every listed store.
/// The sum of `flows` as PD's Go code adds them up, from +0 (Rust's `f64` sum of nothing is
/// -0, which PD never prints).
fn total(flows: impl Iterator<Item = f64>) -> f64 {
    flows.fold(0.0, |a, b| a + b)
}

fn ids(stores: &[Value]) -> Vec<(u64, String)> {
    stores
        .iter()
        .filter_map(|s| {
            Some((
                s["store"]["id"].as_u64()?,
                s["store"]["address"].as_str().unwrap_or("").to_owned(),
            ))
        })
        .collect()
}

impl Hotspot {
    fn on(&self, kind: Kind, store: u64, leader_only: bool) -> Vec<&HotPeer> {
        self.peers
            .iter()
            .filter(|p| p.kind == kind && p.store_id == store && (p.is_leader || !leader_only))
            .collect()
    }

    /// The leader's `pd_hotspot_status` lines for these `/stores` entries.
    pub fn metrics(&self, stores: &[Value]) -> String {
        if !self.family {
            return String::new();
        }
        let mut out = String::from(
            "# HELP pd_hotspot_status Status of the hotspot.\n# TYPE pd_hotspot_status gauge\n",
        );
        for (id, addr) in ids(stores) {
            if self.absent.contains(&id) {
                continue;
            }
            for kind in [Kind::Write, Kind::Read] {
                for (role, leader_only) in [("leader", true), ("peer", false)] {
                    let peers = self.on(kind, id, leader_only);
                    let k = kind.as_str();
                    let rows = [
                        (
                            format!("total_{k}_bytes_as_{role}"),
                            total(peers.iter().map(|p| p.flow_bytes)),
                        ),
                        (
                            format!("total_{k}_keys_as_{role}"),
                            total(peers.iter().map(|p| p.flow_keys)),
                        ),
                        (format!("total_{k}_query_as_{role}"), 0.0),
                        (format!("hot_{k}_region_as_{role}"), peers.len() as f64),
                    ];
                    for (t, v) in rows {
                        out.push_str(&format!(
                            "pd_hotspot_status{{address=\"{addr}\",store=\"{id}\",type=\"{t}\"}} {v:e}\n"
                        ));
                    }
                }
            }
        }
        out
    }

    /// The `/hotspot/regions/{write,read}` body for these `/stores` entries.
    pub fn regions(&self, kind: Kind, stores: &[Value]) -> String {
        let mut body = Map::new();
        for (key, leader_only) in [("as_peer", false), ("as_leader", true)] {
            let mut per_store = Map::new();
            for (id, _) in ids(stores) {
                if self.absent.contains(&id) {
                    continue;
                }
                let peers = self.on(kind, id, leader_only);
                let stats: Vec<Value> = peers
                    .iter()
                    .map(|p| {
                        let replicas: Vec<u64> = self
                            .peers
                            .iter()
                            .filter(|q| q.kind == kind && q.region_id == p.region_id)
                            .map(|q| q.store_id)
                            .collect();
                        json!({
                            "store_id": p.store_id,
                            "stores": replicas,
                            "is_leader": p.is_leader,
                            "is_learner": false,
                            "region_id": p.region_id,
                            "hot_degree": 15,
                            "flow_bytes": p.flow_bytes,
                            "flow_keys": p.flow_keys,
                            "flow_query": 0,
                            "anti_count": 2,
                            "last_update_time": "2024-12-25T03:41:23.480549971Z"
                        })
                    })
                    .collect();
                let bytes = total(peers.iter().map(|p| p.flow_bytes));
                let keys = total(peers.iter().map(|p| p.flow_keys));
                per_store.insert(
                    id.to_string(),
                    json!({
                        "store_bytes": bytes * 1.5,
                        "store_keys": keys * 1.5,
                        "store_query": 0,
                        "total_flow_bytes": bytes,
                        "total_flow_keys": keys,
                        "total_flow_query": 0,
                        "regions_count": stats.len(),
                        "statistics": stats,
                    }),
                );
            }
            body.insert(key.into(), Value::Object(per_store));
        }
        serde_json::to_string_pretty(&Value::Object(body)).unwrap() + "\n"
    }
}
