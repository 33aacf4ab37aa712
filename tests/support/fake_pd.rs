//! A fake PD (placement driver) HTTP API for integration tests, built on [`super::http`].
//!
//! It serves the real JSON shapes of `/pd/api/v1/{stores,store/<id>,members,leader,health,
//! config/schedule,gc/safepoint,min-resolved-ts}` (see [`samples`] and [`coverage`]) and each
//! member's own `/metrics` (region counts, role gauges, etcd), lets a test change the cluster while it runs (store
//! state, heartbeat, sizes, slow score, PD health and leader), inject faults (HTTP errors, garbage
//! bodies, delays, per-path responses, stop/restart on the same port) and records every request,
//! so tests can count requests and check that `/pd/api/v1/regions` is never asked for.
//!
//! Each server is one PD member ([`FakePd::member_name`]; the first is the samples' leader
//! `basic-53pe89`); [`FakePd::peer`] starts another member sharing the same cluster. Without a
//! leader ([`FakePd::set_leader`]`(None)`) the members behave like PD's redirector
//! (cluster-signals.md §1): requests without `PD-Allow-follower-handle` get 503 with the body of
//! the [`PdVersion`] (`no leader` up to v8.1.0, `[PD:apiutil:ErrRedirectNoLeader]redirect finds no
//! leader` from v8.1.1; from v8.5.5 `/pd/api/v1/health` is still served locally); with the
//! header a member answers from its own state: `/members` without `leader`, `/leader` `null`,
//! `/health` (every member unhealthy before v8.5.5, whose probe is redirected too), and
//! `/stores` 500 `ErrNotBootstrapped` (only a leader has the cluster). A follower asked with the
//! header while a leader exists answers the same way, except that `/members` names the leader.
//!
//! ```ignore
//! let pd = FakePd::with_stores(&fake_pd::cluster(1000));
//! pd.set_store_state(3, "Disconnected");
//! // ... point the code under test at pd.url() ...
//! assert!(!pd.regions_requested());
//! ```

#![allow(dead_code)]

use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value, json};

use super::http::{Acceptor, ReadWrite, Request, Response, TestServer};

pub mod coverage;
pub mod hotspot;
pub mod schedulers;

pub use coverage::ServiceSafePoint;

/// Real PD response bodies, copied from /work/shared/reference/pd-api.md (§ numbers refer to it).
pub mod samples {
    /// §3.1 `GET /stores`, PD v8.1.0: one TiKV (id 4) and one TiFlash (id 20). The reference
    /// shows two of the fixture's four stores with its `count: 4`; PD always sets `count` to the
    /// length of the list (`server/api/store.go` `GetAllStores`), so the abridged body says 2.
    pub const V81_STORES: &str = r##"{
  "count": 2,
  "stores": [
    {
      "store": {
        "id": 4,
        "address": "basic-tikv-5gzwgj.basic-tikv-peer.default:20160",
        "version": "8.1.0",
        "peer_address": "basic-tikv-5gzwgj.basic-tikv-peer.default:20160",
        "status_address": "basic-tikv-5gzwgj.basic-tikv-peer.default:20180",
        "git_hash": "ba73b0d92d94463d74543550d0efe61fa6a6f416",
        "start_timestamp": 1735095903,
        "deploy_path": "/",
        "last_heartbeat": 1735098083480549971,
        "node_state": 1,
        "state_name": "Up"
      },
      "status": {
        "capacity": "311.7GiB",
        "available": "222.1GiB",
        "used_size": "290.7MiB",
        "leader_count": 17,
        "leader_weight": 1,
        "leader_score": 17,
        "leader_size": 17,
        "region_count": 60,
        "region_weight": 1,
        "region_score": 127.38727094442186,
        "region_size": 60,
        "slow_score": 1,
        "slow_trend": {
          "cause_value": 250054.47306397307,
          "cause_rate": 0,
          "result_value": 10,
          "result_rate": 0
        },
        "start_ts": "2024-12-25T03:05:03Z",
        "last_heartbeat_ts": "2024-12-25T03:41:23.480549971Z",
        "uptime": "36m20.480549971s"
      }
    },
    {
      "store": {
        "id": 20,
        "address": "basic-tiflash-tphn85.basic-tiflash-peer.default:3930",
        "labels": [
          {
            "key": "engine",
            "value": "tiflash"
          }
        ],
        "version": "v8.1.0",
        "peer_address": "basic-tiflash-tphn85.basic-tiflash-peer.default:20170",
        "status_address": "basic-tiflash-tphn85.basic-tiflash-peer.default:20292",
        "git_hash": "c1838001167c8ba83af759085a71ad61e6c2a5af",
        "start_timestamp": 1735095904,
        "deploy_path": "/tiflash",
        "last_heartbeat": 1735098074657264947,
        "node_state": 1,
        "state_name": "Up"
      },
      "status": {
        "capacity": "311.7GiB",
        "available": "222.1GiB",
        "used_size": "1B",
        "leader_count": 0,
        "leader_weight": 1,
        "leader_score": 0,
        "leader_size": 0,
        "region_count": 0,
        "region_weight": 1,
        "region_score": 0,
        "region_size": 0,
        "slow_score": 1,
        "slow_trend": {
          "cause_value": 250039.13468013468,
          "cause_rate": 0,
          "result_value": 0,
          "result_rate": 0
        },
        "start_ts": "2024-12-25T03:05:04Z",
        "last_heartbeat_ts": "2024-12-25T03:41:14.657264947Z",
        "uptime": "36m10.657264947s"
      }
    }
  ]
}"##;

    /// §3.5 `GET /store/5`, PD v5.2.1: an Offline store (`"state": 1`) with `"0B"` sizes and `slow_score` 0.
    pub const V521_OFFLINE_STORE: &str = r##"{
  "store": {
    "id": 5,
    "address": "xxxx:20160",
    "state": 1,
    "version": "5.2.1",
    "status_address": "xxxxx:20180",
    "git_hash": "2c99f317d4ba125b772a8b94a6c3c0eb9d07ac59",
    "start_timestamp": 1648465247,
    "deploy_path": "/data/deploy/bin",
    "last_heartbeat": 1648517045511041818,
    "state_name": "Offline"
  },
  "status": {
    "capacity": "0B",
    "available": "0B",
    "used_size": "0B",
    "leader_count": 0,
    "leader_weight": 1,
    "leader_score": 0,
    "leader_size": 0,
    "region_count": 0,
    "region_weight": 1,
    "region_score": 0,
    "region_size": 0,
    "slow_score": 0,
    "start_ts": "2022-03-28T19:00:47+08:00",
    "last_heartbeat_ts": "2022-03-29T09:24:05.511041818+08:00",
    "uptime": "14h23m18.511041818s"
  }
}"##;

    /// §3.7 `GET /stores`, PD v3.0.0-beta: spaced sizes (`"20 GiB"`), no `last_heartbeat`, no `status_address`, no `used_size`. The doc's `#` comments are removed and its missing final `}` added.
    pub const V30_STORES: &str = r##"{
  "count": 1,
  "stores": [
    {
      "store": {
        "id": 1,
        "address": "127.0.0.1:20160",
        "version": "3.0.0-beta",
        "state_name": "Up"
      },
      "status": {
        "capacity": "20 GiB",
        "available": "16 GiB",
        "leader_count": 17,
        "leader_weight": 1,
        "leader_score": 17,
        "leader_size": 17,
        "region_count": 17,
        "region_weight": 1,
        "region_score": 17,
        "region_size": 17,
        "start_ts": "2019-03-21T14:09:32+08:00",
        "last_heartbeat_ts": "2019-03-21T14:14:22.961171958+08:00",
        "uptime": "4m50.961171958s"
      }
    }
  ]
}"##;

    /// §3.8 `GET /health`: three members, one `member_id` above `i64::MAX`.
    pub const HEALTH: &str = r##"[
  {
    "name": "basic-7axwci",
    "member_id": 1428427862495950874,
    "client_urls": [
      "http://basic-pd-7axwci.basic-pd-peer.default:2379"
    ],
    "health": true
  },
  {
    "name": "basic-53pe89",
    "member_id": 2548954049902922308,
    "client_urls": [
      "http://basic-pd-53pe89.basic-pd-peer.default:2379"
    ],
    "health": true
  },
  {
    "name": "basic-0qt9e9",
    "member_id": 12818309996638325969,
    "client_urls": [
      "http://basic-pd-0qt9e9.basic-pd-peer.default:2379"
    ],
    "health": true
  }
]"##;

    /// §3.9 `GET /members`: three members, leader and etcd leader `basic-53pe89`.
    pub const MEMBERS: &str = r##"{
  "header": {
    "cluster_id": 7452180154224557728
  },
  "members": [
    {
      "name": "basic-7axwci",
      "member_id": 1428427862495950874,
      "peer_urls": [
        "http://basic-pd-7axwci.basic-pd-peer.default:2380"
      ],
      "client_urls": [
        "http://basic-pd-7axwci.basic-pd-peer.default:2379"
      ],
      "deploy_path": "/",
      "binary_version": "v8.1.0",
      "git_hash": "fca469ca33eb5d8b5e0891b507c87709a00b0e81"
    },
    {
      "name": "basic-53pe89",
      "member_id": 2548954049902922308,
      "peer_urls": [
        "http://basic-pd-53pe89.basic-pd-peer.default:2380"
      ],
      "client_urls": [
        "http://basic-pd-53pe89.basic-pd-peer.default:2379"
      ],
      "deploy_path": "/",
      "binary_version": "v8.1.0",
      "git_hash": "fca469ca33eb5d8b5e0891b507c87709a00b0e81"
    },
    {
      "name": "basic-0qt9e9",
      "member_id": 12818309996638325969,
      "peer_urls": [
        "http://basic-pd-0qt9e9.basic-pd-peer.default:2380"
      ],
      "client_urls": [
        "http://basic-pd-0qt9e9.basic-pd-peer.default:2379"
      ],
      "deploy_path": "/",
      "binary_version": "v8.1.0",
      "git_hash": "fca469ca33eb5d8b5e0891b507c87709a00b0e81"
    }
  ],
  "leader": {
    "name": "basic-53pe89",
    "member_id": 2548954049902922308,
    "peer_urls": [
      "http://basic-pd-53pe89.basic-pd-peer.default:2380"
    ],
    "client_urls": [
      "http://basic-pd-53pe89.basic-pd-peer.default:2379"
    ],
    "deploy_path": "/",
    "binary_version": "v8.1.0",
    "git_hash": "fca469ca33eb5d8b5e0891b507c87709a00b0e81"
  },
  "etcd_leader": {
    "name": "basic-53pe89",
    "member_id": 2548954049902922308,
    "peer_urls": [
      "http://basic-pd-53pe89.basic-pd-peer.default:2380"
    ],
    "client_urls": [
      "http://basic-pd-53pe89.basic-pd-peer.default:2379"
    ],
    "deploy_path": "/",
    "binary_version": "v8.1.0",
    "git_hash": "fca469ca33eb5d8b5e0891b507c87709a00b0e81"
  }
}"##;

    /// §3.10 `GET /leader`.
    pub const LEADER: &str = r##"{
  "name": "basic-53pe89",
  "member_id": 2548954049902922308,
  "peer_urls": [
    "http://basic-pd-53pe89.basic-pd-peer.default:2380"
  ],
  "client_urls": [
    "http://basic-pd-53pe89.basic-pd-peer.default:2379"
  ]
}"##;

    /// `GET /config/schedule`: not a verbatim sample; built from the values §8 saw in a real v6.1.0
    /// `pd config show` (`max-store-down-time` as a Go duration string, as PD renders it).
    pub const CONFIG_SCHEDULE: &str = r##"{
  "max-store-down-time": "30m0s",
  "leader-schedule-limit": 4,
  "max-pending-peer-count": 64,
  "low-space-ratio": 0.8,
  "high-space-ratio": 0.7
}"##;

    /// The message PD v8.1.1+ (any member) answers with HTTP 503 while there is no PD leader
    /// (cluster-signals.md §1.2, `http.Error` with a trailing newline).
    pub const NO_LEADER: &str = "[PD:apiutil:ErrRedirectNoLeader]redirect finds no leader";

    /// The 503 body of PD up to v8.1.0 (all 4.x–7.x) without a leader (cluster-signals.md §1.1).
    pub const NO_LEADER_OLD: &str = "no leader";

    /// What a follower asked with the follower-handle header answers for cluster data
    /// (`/stores`, ...): HTTP 500 with this JSON string (cluster-signals.md §1.1).
    pub const NOT_BOOTSTRAPPED: &str =
        "[PD:cluster:ErrNotBootstrapped]TiKV cluster not bootstrapped, please start TiKV first";

    /// §3.5's Offline store wrapped as a `GET /stores` body.
    pub fn v521_offline_stores() -> String {
        format!("{{\"count\": 1, \"stores\": [{V521_OFFLINE_STORE}]}}")
    }
}

/// How a PD member behaves without a leader (cluster-signals.md §0, §1.2), and which
/// cluster-wide endpoints and metrics it has (see [`coverage`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PdVersion {
    /// PD v4.0: no `/gc/safepoint`, no `/min-resolved-ts` (404), no `service_member_role`,
    /// followers without `pd_regions_status`; leaderless as v8.1.0.
    V4_0_0,
    /// PD v6.0–v7.1: `/gc/safepoint` without `min_service_gc_safe_point`, `/min-resolved-ts`
    /// without the store map and with persistence off (the default before v6.3); no
    /// `service_member_role`; leaderless as v8.1.0.
    V6_1_0,
    /// PD ≤ v8.1.0 (and 6.x/7.x ≤ v7.5.5): 503 `no leader` at once; the health probe is
    /// redirected, so `/health` reports every member unhealthy. Every cluster-wide endpoint
    /// and metric in its v8 shape.
    V8_1_0,
    /// PD v8.1.1–v8.5.4: 503 `[PD:apiutil:ErrRedirectNoLeader]redirect finds no leader` (after
    /// waiting up to 3 s for a leader; the fake answers at once); probe redirected as above.
    V8_1_1,
    /// PD v8.5.5+: as v8.1.1, but `/pd/api/v1/health` (and `/ping`, `/status`, `/version`) are
    /// served locally without the header, and the probe is local (health is real).
    V8_5_5,
}

/// The header that makes a PD follower answer from its own state (any non-empty value).
pub const FOLLOWER_HEADER: &str = "PD-Allow-follower-handle";

// ---------------------------------------------------------------------------------------------
// Building stores

/// Parameters of one store, rendered in PD v8.1's `/stores` shape by [`StoreSpec::to_json`].
///
/// Start from [`StoreSpec::tikv`] or [`StoreSpec::tiflash`] and override fields with struct
/// update syntax: `StoreSpec { state_name: "Offline".into(), ..StoreSpec::tikv(5) }`.
#[derive(Clone, Debug, PartialEq)]
pub struct StoreSpec {
    /// Store id.
    pub id: u64,
    /// `address` (also used as `peer_address`).
    pub address: String,
    /// `status_address`.
    pub status_address: String,
    /// `version` (TiKV `8.1.0`, TiFlash `v8.1.0`).
    pub version: String,
    /// `state_name`; `"Offline"`/`"Tombstone"` also set the metapb `state` int as PD does.
    pub state_name: String,
    /// `last_heartbeat` (unix ns); `last_heartbeat_ts` and `uptime` are derived from it.
    pub last_heartbeat_ns: Option<u64>,
    /// `start_timestamp` (unix s); `start_ts` is derived from it.
    pub start_timestamp: Option<u64>,
    /// Size strings exactly as PD prints them (`"311.7GiB"`); `None` omits the field.
    pub capacity: Option<String>,
    /// `available` size string.
    pub available: Option<String>,
    /// `used_size` size string.
    pub used_size: Option<String>,
    /// `leader_count` (also `leader_score`/`leader_size`).
    pub leader_count: Option<u64>,
    /// `region_count` (also `region_score`/`region_size`).
    pub region_count: Option<u64>,
    /// PD's slow score (an integer in PD; 1 = healthy, >= 80 = slow).
    pub slow_score: Option<u64>,
    /// Store labels, e.g. `("engine", "tiflash")`, `("zone", "z1")`.
    pub labels: Vec<(String, String)>,
}

impl StoreSpec {
    /// An Up TiKV store `tikv-<id>:20160` that heartbeated just now.
    pub fn tikv(id: u64) -> Self {
        let now = now_ns();
        StoreSpec {
            id,
            address: format!("tikv-{id}:20160"),
            status_address: format!("tikv-{id}:20180"),
            version: "8.1.0".into(),
            state_name: "Up".into(),
            last_heartbeat_ns: Some(now),
            start_timestamp: Some(now / 1_000_000_000 - 3600),
            capacity: Some("311.7GiB".into()),
            available: Some("222.1GiB".into()),
            used_size: Some("290.7MiB".into()),
            leader_count: Some(17),
            region_count: Some(60),
            slow_score: Some(1),
            labels: Vec::new(),
        }
    }

    /// An Up TiFlash store `tiflash-<id>:3930` (label `engine=tiflash`, version with `v`).
    pub fn tiflash(id: u64) -> Self {
        StoreSpec {
            address: format!("tiflash-{id}:3930"),
            status_address: format!("tiflash-{id}:20292"),
            version: "v8.1.0".into(),
            used_size: Some("1B".into()),
            leader_count: Some(0),
            region_count: Some(0),
            labels: vec![("engine".into(), "tiflash".into())],
            ..StoreSpec::tikv(id)
        }
    }

    /// The `{"store": {...}, "status": {...}}` object PD v8.1 lists in `/stores`.
    pub fn to_json(&self) -> Value {
        let mut store = Map::new();
        store.insert("id".into(), json!(self.id));
        store.insert("address".into(), json!(self.address));
        if !self.labels.is_empty() {
            let labels: Vec<Value> = self
                .labels
                .iter()
                .map(|(k, v)| json!({"key": k, "value": v}))
                .collect();
            store.insert("labels".into(), Value::Array(labels));
        }
        store.insert("version".into(), json!(self.version));
        store.insert("peer_address".into(), json!(self.address));
        store.insert("status_address".into(), json!(self.status_address));
        store.insert(
            "git_hash".into(),
            json!("ba73b0d92d94463d74543550d0efe61fa6a6f416"),
        );
        if let Some(s) = self.start_timestamp {
            store.insert("start_timestamp".into(), json!(s));
        }
        store.insert("deploy_path".into(), json!("/"));
        if let Some(hb) = self.last_heartbeat_ns {
            store.insert("last_heartbeat".into(), json!(hb));
        }
        store.insert("node_state".into(), json!(1));
        store.insert("state_name".into(), json!(self.state_name));
        set_state_int(&mut store, &self.state_name);

        let mut status = Map::new();
        for (k, v) in [
            ("capacity", &self.capacity),
            ("available", &self.available),
            ("used_size", &self.used_size),
        ] {
            if let Some(v) = v {
                status.insert(k.into(), json!(v));
            }
        }
        if let Some(n) = self.leader_count {
            status.insert("leader_count".into(), json!(n));
            status.insert("leader_weight".into(), json!(1));
            status.insert("leader_score".into(), json!(n));
            status.insert("leader_size".into(), json!(n));
        }
        if let Some(n) = self.region_count {
            status.insert("region_count".into(), json!(n));
            status.insert("region_weight".into(), json!(1));
            status.insert(
                "region_score".into(),
                json!(n as f64 * 2.123_145_182_407_031),
            );
            status.insert("region_size".into(), json!(n));
        }
        if let Some(s) = self.slow_score {
            status.insert("slow_score".into(), json!(s));
            status.insert(
                "slow_trend".into(),
                json!({"cause_value": 250054.47306397307, "cause_rate": 0,
                       "result_value": 10, "result_rate": 0}),
            );
        }
        let mut obj = json!({"store": Value::Object(store), "status": Value::Object(status)});
        refresh_timestamps(&mut obj);
        obj
    }
}

/// `n` Up TiKV stores with ids `1..=n`.
pub fn cluster(n: u64) -> Vec<StoreSpec> {
    (1..=n).map(StoreSpec::tikv).collect()
}

/// A `GET /stores` body for these stores (`count` = number of stores).
pub fn stores_body(specs: &[StoreSpec]) -> String {
    let stores: Vec<Value> = specs.iter().map(StoreSpec::to_json).collect();
    json!({"count": stores.len(), "stores": stores}).to_string()
}

/// Now as unix nanoseconds.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos() as u64
}

/// PD sets the metapb `state` int only for non-Up stores (it is omitted when 0).
fn set_state_int(store: &mut Map<String, Value>, state_name: &str) {
    match state_name {
        "Offline" => store.insert("state".into(), json!(1)),
        "Tombstone" => store.insert("state".into(), json!(2)),
        _ => store.remove("state"),
    };
}

/// Re-derives `start_ts`, `last_heartbeat_ts` and `uptime` from the integer fields, as PD does.
fn refresh_timestamps(obj: &mut Value) {
    let start = obj["store"]["start_timestamp"].as_u64();
    let hb = obj["store"]["last_heartbeat"].as_u64();
    let Some(status) = obj.get_mut("status").and_then(Value::as_object_mut) else {
        return;
    };
    match start {
        Some(s) => status.insert("start_ts".into(), json!(rfc3339(s * 1_000_000_000))),
        None => status.remove("start_ts"),
    };
    match hb {
        Some(h) => status.insert("last_heartbeat_ts".into(), json!(rfc3339(h))),
        None => status.remove("last_heartbeat_ts"),
    };
    match (start, hb) {
        (Some(s), Some(h)) if h > s * 1_000_000_000 => {
            status.insert("uptime".into(), json!(go_duration(h - s * 1_000_000_000)))
        }
        _ => status.remove("uptime"),
    };
}

/// RFC 3339 with nanoseconds in UTC, like Go's `time.RFC3339Nano` (trailing zeros trimmed).
fn rfc3339(ns: u64) -> String {
    let t = chrono::DateTime::from_timestamp_nanos(ns as i64);
    let s = t.format("%Y-%m-%dT%H:%M:%S%.9f").to_string();
    let s = s.trim_end_matches('0').trim_end_matches('.');
    format!("{s}Z")
}

/// A Go `time.Duration.String()` for durations of at least one second: `36m20.480549971s`.
fn go_duration(ns: u64) -> String {
    let (h, rem) = (ns / 3_600_000_000_000, ns % 3_600_000_000_000);
    let (m, rem) = (rem / 60_000_000_000, rem % 60_000_000_000);
    let (s, frac) = (rem / 1_000_000_000, rem % 1_000_000_000);
    let secs = if frac == 0 {
        format!("{s}s")
    } else {
        let f = format!("{frac:09}");
        format!("{s}.{}s", f.trim_end_matches('0'))
    };
    if h > 0 {
        format!("{h}h{m}m{secs}")
    } else if m > 0 {
        format!("{m}m{secs}")
    } else {
        secs
    }
}

// ---------------------------------------------------------------------------------------------
// The fake

struct State {
    /// Leaderless behaviour.
    version: PdVersion,
    /// Up stores report a heartbeat of "now" on every `/stores` (like live TiKVs).
    live_heartbeats: bool,
    /// `count` as overridden by [`FakePd::set_count`]; `None`: the number of listed stores,
    /// as PD renders it.
    count: Option<i64>,
    stores: Vec<Value>,
    members: Vec<Value>,
    header: Value,
    leader: Option<String>,
    etcd_leader: Option<String>,
    health: Vec<Value>,
    schedule: Map<String, Value>,
    failure: Option<Response>,
    garbage: bool,
    delay: Option<Duration>,
    overrides: HashMap<String, Response>,
    /// Store lists the next `/stores` answers use (front first), before the live ones again.
    next_stores: VecDeque<Vec<Value>>,
    /// Region counts, etcd, GC and resolved ts.
    coverage: coverage::Coverage,
    /// Hot peers (`pd_hotspot_status`, `/hotspot/regions/*`).
    hotspot: hotspot::Hotspot,
    /// Leader-evicting schedulers and removal progress.
    schedulers: schedulers::Schedulers,
    /// (member, path without query) of every request, for per-member counts.
    served: Vec<(String, String)>,
    requests: Vec<Request>,
}

/// A running fake PD member on an ephemeral loopback port; stops on drop.
pub struct FakePd {
    server: Option<TestServer>,
    addr: SocketAddr,
    tls: bool,
    state: Arc<Mutex<State>>,
    me: String,
}

/// The member the first server of a fake cluster plays: the samples' leader.
const FIRST_MEMBER: &str = "basic-53pe89";

impl FakePd {
    /// Plain HTTP, serving the v8.1 samples (TiKV store 4 + TiFlash store 20, `count` 4).
    pub fn start() -> Self {
        Self::with_stores_json(samples::V81_STORES)
    }

    /// Plain HTTP, serving these stores (plus the sample members/health/schedule).
    pub fn with_stores(specs: &[StoreSpec]) -> Self {
        Self::with_stores_json(&stores_body(specs))
    }

    /// [`with_stores`](Self::with_stores) with [`live_heartbeats`](Self::live_heartbeats): for
    /// a test that does not control heartbeats. Otherwise a store's heartbeat ages with the
    /// test, and once a loaded machine makes the test last longer than `store_down`'s 60 s
    /// heartbeat threshold, every Up store reads as down.
    pub fn with_live_stores(specs: &[StoreSpec]) -> Self {
        let pd = Self::with_stores(specs);
        pd.live_heartbeats();
        pd
    }

    /// Plain HTTP, serving this `GET /stores` body (kept as-is but editable by the setters).
    pub fn with_stores_json(body: &str) -> Self {
        let state = Arc::new(Mutex::new(State::new(body)));
        let server = TestServer::start(handler(state.clone(), FIRST_MEMBER));
        FakePd {
            addr: server.addr(),
            server: Some(server),
            tls: false,
            state,
            me: FIRST_MEMBER.to_owned(),
        }
    }

    /// Another member (`name`, one of the sample members `basic-7axwci`, `basic-53pe89`,
    /// `basic-0qt9e9`) of the same cluster, on its own port, sharing this fake's state.
    pub fn peer(&self, name: &str) -> FakePd {
        assert!(
            self.lock().members.iter().any(|m| m["name"] == name),
            "fake PD has no member {name}"
        );
        let server = TestServer::start(handler(self.state.clone(), name));
        FakePd {
            addr: server.addr(),
            server: Some(server),
            tls: false,
            state: self.state.clone(),
            me: name.to_owned(),
        }
    }

    /// The PD member this server plays.
    pub fn member_name(&self) -> &str {
        &self.me
    }

    /// How members behave without a leader (default [`PdVersion::V8_1_0`], the samples' version).
    pub fn set_version(&self, v: PdVersion) {
        self.lock().version = v;
    }

    /// Plain HTTP on `addr` (port 0: any free port), serving these stores. For clients that
    /// cannot reach loopback, e.g. containers: bind the Docker network's gateway address.
    pub fn with_stores_on(addr: SocketAddr, specs: &[StoreSpec]) -> Self {
        let state = Arc::new(Mutex::new(State::new(&stores_body(specs))));
        let server = TestServer::start_on(addr, handler(state.clone(), FIRST_MEMBER));
        FakePd {
            addr: server.addr(),
            server: Some(server),
            tls: false,
            state,
            me: FIRST_MEMBER.to_owned(),
        }
    }

    /// Over TLS: `acceptor` wraps each connection (see [`tls::Pki::server_acceptor`]).
    pub fn start_tls(acceptor: Arc<Acceptor>) -> Self {
        let state = Arc::new(Mutex::new(State::new(samples::V81_STORES)));
        let server = TestServer::start_with(acceptor, handler(state.clone(), FIRST_MEMBER));
        FakePd {
            addr: server.addr(),
            server: Some(server),
            tls: true,
            state,
            me: FIRST_MEMBER.to_owned(),
        }
    }

    /// `http://127.0.0.1:PORT` (or `https://` for a TLS fake).
    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops listening (connections are then refused); the cluster state is kept.
    pub fn stop(&mut self) {
        self.server = None;
    }

    /// Listens again on the same port with the same state (plain HTTP fakes only).
    pub fn restart(&mut self) {
        assert!(!self.tls, "restart is only supported for plain-HTTP fakes");
        if self.server.is_none() {
            self.server = Some(TestServer::start_on(
                self.addr,
                handler(self.state.clone(), &self.me),
            ));
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Edits the JSON objects of the stores (see [`store_json_mut`]) in one step: no answer sees
    /// only part of the edit.
    pub fn edit_stores(&self, f: impl FnOnce(&mut Vec<Value>)) {
        f(&mut self.lock().stores);
    }

    /// Edits the JSON object of store `id` (panics if there is none).
    pub fn edit_store(&self, id: u64, f: impl FnOnce(&mut Value)) {
        f(store_json_mut(&mut self.lock().stores, id));
    }

    fn set_status_field(&self, id: u64, key: &str, value: Value) {
        self.edit_store(id, |s| {
            if !s["status"].is_object() {
                s["status"] = json!({});
            }
            s["status"][key] = value;
        });
    }

    /// Sets `state_name` (any string, e.g. `"Disconnected"`, `"Removing"`) and PD's `state` int.
    pub fn set_store_state(&self, id: u64, state_name: &str) {
        self.edit_store(id, |s| {
            s["store"]["state_name"] = json!(state_name);
            if let Some(store) = s["store"].as_object_mut() {
                set_state_int(store, state_name);
            }
        });
    }

    /// Sets `last_heartbeat` (unix ns) and re-derives `last_heartbeat_ts` and `uptime`.
    pub fn set_last_heartbeat(&self, id: u64, ns: u64) {
        self.edit_store(id, |s| {
            s["store"]["last_heartbeat"] = json!(ns);
            refresh_timestamps(s);
        });
    }

    /// The store's last heartbeat was `ago` ago, and `state_name` follows as PD derives it for
    /// a store in state Up (pd-api.md §2.3): `Up` within 20 s, `Disconnected` after, `Down`
    /// after `max-store-down-time` (30 min). A store being removed stays `Offline`.
    pub fn set_heartbeat_age(&self, id: u64, ago: Duration) {
        let ns = now_ns() - ago.as_nanos() as u64;
        let state = if ago > Duration::from_secs(1800) {
            "Down"
        } else if ago > Duration::from_secs(20) {
            "Disconnected"
        } else {
            "Up"
        };
        self.edit_store(id, |s| {
            s["store"]["last_heartbeat"] = json!(ns);
            refresh_timestamps(s);
            if s["store"]["state_name"] != "Offline" {
                s["store"]["state_name"] = json!(state);
            }
        });
    }

    /// Makes Up stores heartbeat: each `/stores` answer reports them as heard from just now,
    /// so long tests do not drift past the exporter's heartbeat threshold.
    pub fn live_heartbeats(&self) {
        self.lock().live_heartbeats = true;
    }

    /// Sets `slow_score`.
    pub fn set_slow_score(&self, id: u64, score: u64) {
        self.set_status_field(id, "slow_score", json!(score));
    }

    /// Sets `capacity` to this size string (any string, e.g. `"1.5TiB"` or garbage).
    pub fn set_capacity(&self, id: u64, size: &str) {
        self.set_status_field(id, "capacity", json!(size));
    }

    /// Sets `available` to this size string.
    pub fn set_available(&self, id: u64, size: &str) {
        self.set_status_field(id, "available", json!(size));
    }

    /// Sets `used_size` to this size string.
    pub fn set_used_size(&self, id: u64, size: &str) {
        self.set_status_field(id, "used_size", json!(size));
    }

    /// Sets `leader_count` (and `leader_score`/`leader_size` like PD).
    pub fn set_leader_count(&self, id: u64, n: u64) {
        self.edit_store(id, |s| {
            for k in ["leader_count", "leader_score", "leader_size"] {
                s["status"][k] = json!(n);
            }
        });
    }

    /// Sets `region_count` (and `region_size`).
    pub fn set_region_count(&self, id: u64, n: u64) {
        self.edit_store(id, |s| {
            for k in ["region_count", "region_size"] {
                s["status"][k] = json!(n);
            }
        });
    }

    /// Sets the store's labels.
    pub fn set_labels(&self, id: u64, labels: &[(&str, &str)]) {
        let labels: Vec<Value> = labels
            .iter()
            .map(|(k, v)| json!({"key": k, "value": v}))
            .collect();
        self.edit_store(id, |s| s["store"]["labels"] = Value::Array(labels));
    }

    /// Adds (or replaces, by id) a store.
    pub fn add_store(&self, spec: &StoreSpec) {
        self.remove_store(spec.id);
        self.lock().stores.push(spec.to_json());
    }

    /// Removes store `id` from the list (no-op if absent).
    pub fn remove_store(&self, id: u64) {
        self.lock()
            .stores
            .retain(|s| s["store"]["id"].as_u64() != Some(id));
    }

    /// Replaces the listed stores with those of this `/stores` body (`count` is rendered as
    /// PD does; to serve a body verbatim use [`FakePd::respond_with`]).
    pub fn set_stores_json(&self, body: &str) {
        let fresh = State::new(body);
        self.lock().stores = fresh.stores;
    }

    /// Overrides `count` (`None`: the number of listed stores, as PD renders it).
    pub fn set_count(&self, count: Option<i64>) {
        self.lock().count = count;
    }

    /// Ids of the listed stores, in order.
    pub fn store_ids(&self) -> Vec<u64> {
        self.lock()
            .stores
            .iter()
            .filter_map(|s| s["store"]["id"].as_u64())
            .collect()
    }

    /// Sets `health` of the PD member `name` in `/health` (panics if unknown).
    pub fn set_health(&self, name: &str, healthy: bool) {
        let mut st = self.lock();
        let m = st
            .health
            .iter_mut()
            .find(|m| m["name"] == name)
            .unwrap_or_else(|| panic!("fake PD has no member {name}"));
        m["health"] = json!(healthy);
    }

    /// Sets the PD leader and etcd leader by member name; `None`: PD has lost its leader (and
    /// etcd its raft leader): members answer as PD's redirector does (see the module docs).
    pub fn set_leader(&self, name: Option<&str>) {
        self.set_leaders(name, name);
    }

    /// Sets the PD leader and the etcd leader separately (they differ during elections and
    /// leader transfers; §1.3).
    pub fn set_leaders(&self, pd_leader: Option<&str>, etcd_leader: Option<&str>) {
        let mut st = self.lock();
        for n in [pd_leader, etcd_leader].into_iter().flatten() {
            assert!(
                st.members.iter().any(|m| m["name"] == n),
                "fake PD has no member {n}"
            );
        }
        st.leader = pd_leader.map(str::to_owned);
        st.etcd_leader = etcd_leader.map(str::to_owned);
    }

    /// Sets `high-space-ratio` and `low-space-ratio` in `/config/schedule` (PD defaults 0.7, 0.8).
    pub fn set_space_ratios(&self, high: f64, low: f64) {
        let mut st = self.lock();
        st.schedule.insert("high-space-ratio".into(), json!(high));
        st.schedule.insert("low-space-ratio".into(), json!(low));
    }

    /// Sets `max-store-down-time` in `/config/schedule` (`None` removes the key).
    pub fn set_max_store_down_time(&self, value: Option<&str>) {
        let mut st = self.lock();
        match value {
            Some(v) => st.schedule.insert("max-store-down-time".into(), json!(v)),
            None => st.schedule.remove("max-store-down-time"),
        };
    }

    /// This member advertises its real URL in `/members` and `/health` (instead of the
    /// samples' TiDB Operator names, which do not resolve here), as a TiUP-deployed PD does.
    pub fn advertise_own_url(&self) {
        let url = self.url();
        let mut guard = self.lock();
        let st = &mut *guard;
        for list in [&mut st.members, &mut st.health] {
            for m in list.iter_mut().filter(|m| m["name"] == self.me.as_str()) {
                m["client_urls"] = json!([url]);
            }
        }
    }

    /// Sets store `id`'s `start_timestamp` (unix s): what TiKV reports when it (re)starts.
    pub fn set_start_timestamp(&self, id: u64, secs: u64) {
        self.edit_store(id, |s| {
            s["store"]["start_timestamp"] = json!(secs);
            refresh_timestamps(s);
        });
    }

    /// Changes the hot peers (both `pd_hotspot_status` and `/hotspot/regions/*` follow).
    pub fn edit_hotspot(&self, f: impl FnOnce(&mut hotspot::Hotspot)) {
        f(&mut self.lock().hotspot);
    }

    /// Sets a `pd_regions_status` count of the leader (`ty` in PD's spelling, e.g.
    /// `down-peer-region-count`); `None` removes the type (a PD that does not count it).
    pub fn set_region_status(&self, ty: &str, n: Option<f64>) {
        self.lock().coverage.set_region_count(ty, n);
    }

    /// Removes the whole `pd_regions_status` family from every member (a leader that has not
    /// collected region statistics yet).
    pub fn clear_region_status(&self) {
        self.lock().coverage.regions.clear();
    }

    /// Before each `/metrics` answer, `n` WAL fsyncs of `seconds` each are added to etcd's
    /// histogram (default 10 of 2 ms: a p99 of 2 ms).
    pub fn set_wal_fsync_per_read(&self, seconds: f64, n: u64) {
        self.lock().coverage.fsync_per_read = (seconds, n);
    }

    /// Adds `n` WAL fsyncs of `seconds` each to every member's etcd histogram.
    pub fn observe_wal_fsync(&self, seconds: f64, n: u64) {
        self.lock().coverage.observe_fsync(seconds, n);
    }

    /// Sets etcd's database size and `quota-backend-bytes`.
    pub fn set_etcd_db(&self, size_bytes: f64, quota_bytes: f64) {
        let mut st = self.lock();
        st.coverage.db_size_bytes = size_bytes;
        st.coverage.quota_bytes = quota_bytes;
    }

    /// Sets the GC safe point's age (`None`: 0, GC never ran) and the service safe points.
    pub fn set_gc_safepoint(&self, age: Option<Duration>, services: Vec<ServiceSafePoint>) {
        let mut st = self.lock();
        st.coverage.gc_age = age;
        st.coverage.services = services;
    }

    /// Sets how far the min resolved ts lags: the cluster's (`store` `None`) or one store's;
    /// a lag of `None` is PD's `u64::MAX` (no data).
    pub fn set_resolved_ts_lag(&self, store: Option<u64>, lag: Option<Duration>) {
        let mut st = self.lock();
        match store {
            None => st.coverage.resolved_cluster_age = lag,
            Some(id) => {
                st.coverage.resolved_stores.retain(|(i, _)| *i != id);
                st.coverage.resolved_stores.push((id, lag));
            }
        }
    }

    /// Sets `min-resolved-ts-persistence-interval` (`"0s"`: off, the value is frozen).
    pub fn set_resolved_ts_persist_interval(&self, interval: &'static str) {
        self.lock().coverage.persist_interval = Some(interval);
    }

    /// Changes the leader-evicting schedulers and removal progress.
    pub fn edit_schedulers(&self, f: impl FnOnce(&mut schedulers::Schedulers)) {
        f(&mut self.lock().schedulers);
    }

    /// Every request answers `status` with this raw body (e.g. a JSON string like PD's errors).
    pub fn fail_with(&self, status: u16, body: &str) {
        self.lock().failure = Some(Response::json(body).status(status));
    }

    /// Every request answers `status` with `message` rendered as PD does (a JSON string).
    pub fn fail_with_pd_error(&self, status: u16, message: &str) {
        self.fail_with(status, &json!(message).to_string());
    }

    /// Every request answers 200 with a body that is not JSON.
    pub fn respond_garbage(&self) {
        self.lock().garbage = true;
    }

    /// Every answer is delayed by `d`.
    pub fn delay(&self, d: Duration) {
        self.lock().delay = Some(d);
    }

    /// Requests to exactly this path (without query) get `response` (before faults and routes).
    pub fn respond_with(&self, path: &str, response: Response) {
        self.lock().overrides.insert(path.to_owned(), response);
    }

    /// Removes failures, garbage, delay and per-path responses.
    pub fn heal(&self) {
        let mut st = self.lock();
        st.failure = None;
        st.garbage = false;
        st.delay = None;
        st.overrides.clear();
    }

    /// Every request received so far (method, path with query, headers).
    pub fn requests(&self) -> Vec<Request> {
        self.lock().requests.clone()
    }

    /// Paths (with query) of every request received so far.
    pub fn paths(&self) -> Vec<String> {
        self.lock()
            .requests
            .iter()
            .map(|r| r.path.clone())
            .collect()
    }

    /// Number of requests received so far.
    pub fn request_count(&self) -> usize {
        self.lock().requests.len()
    }

    /// Number of requests to exactly this path (query ignored).
    pub fn requests_to(&self, path: &str) -> usize {
        self.lock()
            .requests
            .iter()
            .filter(|r| r.path_only() == path)
            .count()
    }

    /// Number of requests to exactly this path (query ignored) that this member answered
    /// (the other counts are over every member of the fake cluster).
    pub fn member_requests_to(&self, path: &str) -> usize {
        self.lock()
            .served
            .iter()
            .filter(|(m, p)| *m == self.me && p == path)
            .count()
    }

    /// Whether any `/pd/api/v1/regions...` path was requested.
    pub fn regions_requested(&self) -> bool {
        self.lock()
            .requests
            .iter()
            .any(|r| r.path_only().starts_with("/pd/api/v1/regions"))
    }

    /// The next `n` answers to `/stores` list the current stores with `edit` applied to their
    /// JSON (see [`store_json_mut`]), also while failures or garbage are set (those apply after
    /// them); later answers are the live ones again. So exactly `n` polls see the edited
    /// cluster, however fast or slow they come.
    pub fn answer_next_stores(&self, n: usize, edit: impl FnOnce(&mut Vec<Value>)) {
        let mut st = self.lock();
        let mut stores = st.stores.clone();
        edit(&mut stores);
        st.next_stores = std::iter::repeat_n(stores, n).collect();
    }

    /// Waits (bounded) until at least `n` requests to `path` (query ignored) have arrived.
    pub fn wait_requests_to(&self, path: &str, n: usize) {
        super::wait::until(
            &format!("{n} requests to {path} at the fake PD"),
            super::wait::PATIENCE,
            || match self.requests_to(path) {
                have if have >= n => Ok(()),
                have => Err(format!("{have} so far")),
            },
        )
    }

    /// Waits until the code polling `/pd/api/v1/stores` has sent two more requests: the first
    /// was answered with what this fake serves now, and a poller that asks once per poll has
    /// finished (and published) that poll before sending the second.
    pub fn wait_next_poll(&self) {
        let n = self.requests_to("/pd/api/v1/stores");
        self.wait_requests_to("/pd/api/v1/stores", n + 2);
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        let mut st = self.lock();
        st.requests.clear();
        st.served.clear();
    }
}

impl State {
    fn new(stores_body: &str) -> State {
        let doc: Value = serde_json::from_str(stores_body).expect("stores body is JSON");
        let stores = match &doc["stores"] {
            Value::Array(a) => a.clone(),
            _ => Vec::new(),
        };
        let members: Value = serde_json::from_str(samples::MEMBERS).expect("members sample");
        let leader = members["leader"]["name"].as_str().map(str::to_owned);
        let etcd_leader = members["etcd_leader"]["name"].as_str().map(str::to_owned);
        let Value::Object(schedule) =
            serde_json::from_str(samples::CONFIG_SCHEDULE).expect("schedule sample")
        else {
            unreachable!("schedule sample is an object")
        };
        let Value::Array(health) = serde_json::from_str(samples::HEALTH).expect("health sample")
        else {
            unreachable!("health sample is an array")
        };
        State {
            version: PdVersion::V8_1_0,
            count: None,
            stores,
            members: members["members"].as_array().cloned().unwrap_or_default(),
            header: members["header"].clone(),
            leader,
            etcd_leader,
            health,
            schedule,
            failure: None,
            garbage: false,
            live_heartbeats: false,
            delay: None,
            overrides: HashMap::new(),
            next_stores: VecDeque::new(),
            coverage: coverage::Coverage::default(),
            hotspot: hotspot::Hotspot::default(),
            schedulers: schedulers::Schedulers::default(),
            served: Vec::new(),
            requests: Vec::new(),
        }
    }

    fn member(&self, name: &Option<String>) -> Option<Value> {
        let name = name.as_deref()?;
        self.members.iter().find(|m| m["name"] == name).cloned()
    }

    fn route(&self, req: &Request) -> Response {
        if req.method != "GET" {
            return Response::text(405, "405 method not allowed\n");
        }
        let path = req.path_only();
        match path {
            "/pd/api/v1/stores" => {
                let count = self.count.unwrap_or(self.stores.len() as i64);
                Response::json(json!({"count": count, "stores": self.stores}).to_string())
            }
            "/pd/api/v1/members" => {
                let mut m = json!({"header": self.header, "members": self.members});
                if let Some(l) = self.member(&self.leader) {
                    m["leader"] = l;
                }
                if let Some(l) = self.member(&self.etcd_leader) {
                    m["etcd_leader"] = l;
                }
                Response::json(m.to_string())
            }
            "/pd/api/v1/leader" => match self.member(&self.leader) {
                Some(l) => {
                    let l = json!({"name": l["name"], "member_id": l["member_id"],
                                   "peer_urls": l["peer_urls"], "client_urls": l["client_urls"]});
                    Response::json(l.to_string())
                }
                None => Response::json(json!(samples::NO_LEADER).to_string()).status(503),
            },
            "/pd/api/v1/health" | "/health" => {
                Response::json(Value::Array(self.health.clone()).to_string())
            }
            "/pd/api/v1/config/schedule" => {
                Response::json(Value::Object(self.schedule.clone()).to_string())
            }
            "/pd/api/v1/ping" => Response::json("").status(200),
            "/pd/api/v1/gc/safepoint" => match self.coverage.gc_safepoint(self.version) {
                Some(body) => Response::json(body),
                None => Response::text(404, "404 page not found\n"),
            },
            "/pd/api/v1/min-resolved-ts" => {
                match self.coverage.min_resolved_ts(self.version, &self.stores) {
                    Some(body) => Response::json(body),
                    None => Response::text(404, "404 page not found\n"),
                }
            }
            "/pd/api/v1/hotspot/regions/write" => {
                Response::json(self.hotspot.regions(hotspot::Kind::Write, &self.stores))
            }
            "/pd/api/v1/hotspot/regions/read" => {
                Response::json(self.hotspot.regions(hotspot::Kind::Read, &self.stores))
            }
            "/pd/api/v1/schedulers" => {
                Response::json(self.schedulers.names(self.version, self.requests.len()))
            }
            "/pd/api/v1/scheduler-config/evict-leader-scheduler/list" => {
                match self.schedulers.evict_leader_list(self.version) {
                    Some(body) => Response::json(body),
                    None => Response::text(404, "404 page not found\n"),
                }
            }
            "/pd/api/v1/scheduler-config/evict-slow-store-scheduler/list" => {
                match self.schedulers.evict_slow_store_list(self.version) {
                    Some((body, true)) => Response::json(body),
                    Some((text, false)) => Response::text(200, text),
                    None => Response::text(404, "404 page not found\n"),
                }
            }
            p if p.starts_with("/pd/api/v1/regions") => {
                Response::json(r#"{"count":0,"regions":[]}"#)
            }
            p if p.starts_with("/pd/api/v1/store/") => {
                let id = p.trim_start_matches("/pd/api/v1/store/");
                let found = id.parse::<u64>().ok().and_then(|id| {
                    self.stores
                        .iter()
                        .find(|s| s["store"]["id"].as_u64() == Some(id))
                });
                match found {
                    Some(s) => Response::json(s.to_string()),
                    None => Response::json(
                        json!(format!("[PD:core:ErrStoreNotFound]store {id} not found"))
                            .to_string(),
                    )
                    .status(404),
                }
            }
            _ => Response::text(404, "404 page not found\n"),
        }
    }
}

/// The JSON object of store `id` in a `/stores` list (panics if there is none).
pub fn store_json_mut(stores: &mut [Value], id: u64) -> &mut Value {
    stores
        .iter_mut()
        .find(|s| s["store"]["id"].as_u64() == Some(id))
        .unwrap_or_else(|| panic!("fake PD has no store {id}"))
}

/// Paths only a PD leader can answer (the "cluster router"; cluster-signals.md §1.1).
fn needs_cluster(path: &str) -> bool {
    [
        "/pd/api/v1/stores",
        "/pd/api/v1/store/",
        "/pd/api/v1/regions",
        "/pd/api/v1/region/",
        "/pd/api/v1/min-resolved-ts",
        "/pd/api/v1/schedulers",
        "/pd/api/v1/scheduler-config/",
    ]
    .iter()
    .any(|p| path.starts_with(p))
}

/// Paths PD v8.5.5+ serves locally whatever the leader (cluster-signals.md §1.1, item 1).
fn served_locally(path: &str) -> bool {
    [
        "/pd/api/v1/health",
        "/pd/api/v1/ping",
        "/pd/api/v1/status",
        "/pd/api/v1/version",
    ]
    .iter()
    .any(|p| path.starts_with(p))
}

impl State {
    /// What member `me` answers, as PD's redirector decides (cluster-signals.md §1.1–1.2).
    fn redirect(&self, req: &Request, me: &str) -> Response {
        let path = req.path_only();
        let follower_handle = req.header(FOLLOWER_HEADER).is_some_and(|v| !v.is_empty());
        let is_leader = self.leader.as_deref() == Some(me);
        if path == "/metrics" {
            let etcd = self.etcd_leader.as_deref() == Some(me);
            let mut page = self.coverage.metrics(self.version, is_leader, etcd);
            // Leader-only (reset when a member loses leadership; cluster-signals.md §8).
            if is_leader {
                page.push_str(&self.hotspot.metrics(&self.stores));
                page.push_str(&self.schedulers.progress_metrics(self.version));
            }
            return Response::text(200, page);
        }
        if !path.starts_with("/pd/") || is_leader {
            return self.route(req);
        }
        if follower_handle {
            return self.local(req);
        }
        match &self.leader {
            // Proxied to the leader: the same cluster state answers.
            Some(_) => self.route(req),
            None if self.version >= PdVersion::V8_5_5 && served_locally(path) => self.local(req),
            None => {
                let body = if self.version <= PdVersion::V8_1_0 {
                    samples::NO_LEADER_OLD
                } else {
                    samples::NO_LEADER
                };
                Response::text(503, format!("{body}\n"))
            }
        }
    }

    /// A follower answering from its own state.
    fn local(&self, req: &Request) -> Response {
        let path = req.path_only();
        if needs_cluster(path) {
            return Response::json(json!(samples::NOT_BOOTSTRAPPED).to_string()).status(500);
        }
        match path {
            "/pd/api/v1/leader" if self.leader.is_none() => Response::json("null"),
            "/pd/api/v1/health" if self.leader.is_none() && self.version < PdVersion::V8_5_5 => {
                // The probe of each member's /ping is redirected too and fails.
                let all_down: Vec<Value> = self
                    .health
                    .iter()
                    .map(|m| {
                        let mut m = m.clone();
                        m["health"] = json!(false);
                        m
                    })
                    .collect();
                Response::json(Value::Array(all_down).to_string())
            }
            _ => self.route(req),
        }
    }
}

fn handler(
    state: Arc<Mutex<State>>,
    me: &str,
) -> impl Fn(&Request) -> Response + Send + Sync + 'static {
    let me = me.to_owned();
    move |req: &Request| {
        let mut st = state.lock().unwrap_or_else(|e| e.into_inner());
        st.requests.push(req.clone());
        st.served.push((me.clone(), req.path_only().to_owned()));
        if req.path_only() == "/metrics" {
            st.coverage.tick();
        }
        let scripted = if req.path_only() == "/pd/api/v1/stores" {
            st.next_stores.pop_front()
        } else {
            None
        };
        let resp = if let Some(r) = st.overrides.get(req.path_only()) {
            r.clone()
        } else if let Some(stores) = scripted {
            let count = st.count.unwrap_or(stores.len() as i64);
            Response::json(json!({"count": count, "stores": stores}).to_string())
        } else if let Some(r) = &st.failure {
            r.clone()
        } else if st.garbage {
            Response::text(200, "<html><body>502 Bad Gateway</body></html>\n")
        } else {
            if st.live_heartbeats && req.path_only() == "/pd/api/v1/stores" {
                let now = now_ns();
                for s in st
                    .stores
                    .iter_mut()
                    .filter(|s| s["store"]["state_name"] == "Up")
                {
                    s["store"]["last_heartbeat"] = json!(now);
                    refresh_timestamps(s);
                }
            }
            st.redirect(req, &me)
        };
        match st.delay {
            Some(d) => resp.delayed(d),
            None => resp,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// TLS

/// Test certificates and a rustls acceptor for TLS fakes.
pub mod tls {
    use super::*;
    pub use rcgen::ExtendedKeyUsagePurpose;
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use rustls::server::WebPkiClientVerifier;
    use rustls::{RootCertStore, ServerConfig, ServerConnection, StreamOwned};

    /// A CA with a server certificate for `127.0.0.1`/`localhost` and a client certificate.
    pub struct Pki {
        /// The CA certificate.
        pub ca_pem: String,
        /// Server certificate for `127.0.0.1` and `localhost`.
        pub server_cert_pem: String,
        /// The server certificate's key (PKCS#8).
        pub server_key_pem: String,
        /// Client certificate (CN `tikv-health-exporter`, clientAuth).
        pub client_cert_pem: String,
        /// The client certificate's key (PKCS#8).
        pub client_key_pem: String,
    }

    /// Paths of a [`Pki`] written to a directory.
    pub struct PkiFiles {
        /// `ca.pem`.
        pub ca: PathBuf,
        /// `server.pem`.
        pub server_cert: PathBuf,
        /// `server-key.pem`.
        pub server_key: PathBuf,
        /// `client.pem`.
        pub client_cert: PathBuf,
        /// `client-key.pem`.
        pub client_key: PathBuf,
    }

    /// A test CA that signs leaf certificates (for servers and clients, valid or expired).
    pub struct Ca {
        issuer: CertifiedIssuer<'static, KeyPair>,
    }

    /// A leaf certificate and its key (PKCS#8), PEM.
    pub struct Leaf {
        /// The certificate.
        pub cert_pem: String,
        /// Its key.
        pub key_pem: String,
    }

    impl Leaf {
        /// The certificate's DER (what a TLS peer presents).
        pub fn der(&self) -> Vec<u8> {
            CertificateDer::from_pem_slice(self.cert_pem.as_bytes())
                .unwrap()
                .to_vec()
        }
    }

    impl Ca {
        /// A fresh self-signed CA named `cn`.
        pub fn new(cn: &str) -> Ca {
            let ca_key = KeyPair::generate().unwrap();
            let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
            ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            ca_params.distinguished_name.push(DnType::CommonName, cn);
            ca_params.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            Ca {
                issuer: CertifiedIssuer::self_signed(ca_params, ca_key).unwrap(),
            }
        }

        /// The CA certificate.
        pub fn pem(&self) -> String {
            self.issuer.pem()
        }

        /// A server (`serverAuth`) certificate for `sans` (IP addresses or DNS names).
        pub fn server(&self, cn: &str, sans: &[&str]) -> Leaf {
            self.leaf(cn, sans, ExtendedKeyUsagePurpose::ServerAuth, false)
        }

        /// A client (`clientAuth`) certificate for `sans`.
        pub fn client(&self, cn: &str, sans: &[&str]) -> Leaf {
            self.leaf(cn, sans, ExtendedKeyUsagePurpose::ClientAuth, false)
        }

        /// A certificate for `sans` with usage `eku`; `expired`: valid only in 2020.
        pub fn leaf(
            &self,
            cn: &str,
            sans: &[&str],
            eku: ExtendedKeyUsagePurpose,
            expired: bool,
        ) -> Leaf {
            let key = KeyPair::generate().unwrap();
            let sans: Vec<String> = sans.iter().map(|s| s.to_string()).collect();
            let mut p = CertificateParams::new(sans).unwrap();
            p.distinguished_name.push(DnType::CommonName, cn);
            p.extended_key_usages = vec![eku];
            if expired {
                p.not_before = rcgen::date_time_ymd(2020, 1, 1);
                p.not_after = rcgen::date_time_ymd(2021, 1, 1);
            }
            let cert = p.signed_by(&key, &self.issuer).unwrap();
            Leaf {
                cert_pem: cert.pem(),
                key_pem: key.serialize_pem(),
            }
        }
    }

    impl Pki {
        /// Generates a fresh CA (named `cn`) and leaf certificates signed by it.
        pub fn generate(cn: &str) -> Pki {
            let ca = Ca::new(cn);
            let server = ca.server("fake-pd", &["127.0.0.1", "localhost"]);
            let client = ca.client("tikv-health-exporter", &["tikv-health-exporter"]);
            Pki {
                ca_pem: ca.pem(),
                server_cert_pem: server.cert_pem,
                server_key_pem: server.key_pem,
                client_cert_pem: client.cert_pem,
                client_key_pem: client.key_pem,
            }
        }

        /// Writes the PEM files into `dir`.
        pub fn write_to(&self, dir: &Path) -> PkiFiles {
            let write = |name: &str, pem: &str| {
                let p = dir.join(name);
                std::fs::write(&p, pem).unwrap();
                p
            };
            PkiFiles {
                ca: write("ca.pem", &self.ca_pem),
                server_cert: write("server.pem", &self.server_cert_pem),
                server_key: write("server-key.pem", &self.server_key_pem),
                client_cert: write("client.pem", &self.client_cert_pem),
                client_key: write("client-key.pem", &self.client_key_pem),
            }
        }

        /// A server acceptor presenting the server certificate and requiring a client
        /// certificate signed by this CA (mutual TLS, like PD with `cert-allowed-cn` unset).
        pub fn server_acceptor(&self) -> Arc<Acceptor> {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut roots = RootCertStore::empty();
            for c in CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
                roots.add(c.unwrap()).unwrap();
            }
            let verifier =
                WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .unwrap();
            let certs: Vec<CertificateDer<'static>> =
                CertificateDer::pem_slice_iter(self.server_cert_pem.as_bytes())
                    .map(Result::unwrap)
                    .collect();
            let key = PrivateKeyDer::from_pem_slice(self.server_key_pem.as_bytes()).unwrap();
            let config = Arc::new(
                ServerConfig::builder_with_provider(provider)
                    .with_safe_default_protocol_versions()
                    .unwrap()
                    .with_client_cert_verifier(verifier)
                    .with_single_cert(certs, key)
                    .unwrap(),
            );
            Arc::new(move |tcp: TcpStream| {
                let conn = ServerConnection::new(config.clone()).ok()?;
                let mut tls = StreamOwned::new(conn, tcp);
                while tls.conn.is_handshaking() {
                    // A failed handshake (no or untrusted client certificate) drops the connection
                    // after rustls has sent its alert.
                    tls.conn.complete_io(&mut tls.sock).ok()?;
                }
                Some(Box::new(TlsStream(tls)) as Box<dyn ReadWrite>)
            })
        }
    }

    /// A server TLS stream that sends close_notify when dropped.
    struct TlsStream(StreamOwned<ServerConnection, TcpStream>);

    impl Read for TlsStream {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            self.0.read(buf)
        }
    }

    impl Write for TlsStream {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.write(buf)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            self.0.flush()
        }
    }

    impl Drop for TlsStream {
        fn drop(&mut self) {
            self.0.conn.send_close_notify();
            while self.0.conn.wants_write() {
                if self.0.conn.write_tls(&mut self.0.sock).is_err() {
                    break;
                }
            }
        }
    }
}
