//! PD's raw JSON shapes, parsed leniently: unknown fields are ignored, every field is optional,
//! and a value of an unexpected type becomes `None` (see the `lenient_*` visitors). What makes a
//! reply useless is rejected: a body of the wrong overall shape fails the request (`parse_*`
//! return the reason), and a `/stores` entry that identifies no store is rejected on its own.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, Visitor};
use serde_json::value::RawValue;

use super::units::{parse_byte_size, parse_go_duration, rfc3339_to_unix_ns, rfc3339_to_unix_secs};
use super::{RejectReason, RejectedStore, StoreList};
use crate::domain::{Member, MemberHealth, Members, ScheduleConfig, Store, StoreState};

/// `GET /stores`: `{"count": n, "stores": [...]}`; PD sets `count` to the length of the list
/// (`server/api/store.go` `GetAllStores`: `StoresInfo.Count = len(StoresInfo.Stores)`), so a
/// disagreement means the body is not what PD sent.
///
/// Each entry is kept as its text and decoded on its own (no `Value` tree of the whole list:
/// at 1000 stores the body is 766 KB), so one bad entry is rejected alone.
#[derive(Deserialize)]
struct RawStores<'a> {
    #[serde(default)]
    count: Option<serde_json::Value>,
    #[serde(default, borrow)]
    stores: Option<Vec<&'a RawValue>>,
}

/// Just an entry's `store.id`, for naming a rejected entry.
#[derive(Deserialize)]
struct IdProbe {
    #[serde(default)]
    store: Option<IdOnly>,
}

/// See [`IdProbe`].
#[derive(Deserialize)]
struct IdOnly {
    #[serde(default)]
    id: Option<serde_json::Value>,
}

/// Parses a `/stores` body: the identified stores plus the entries rejected one by one (no
/// usable id, a duplicated id, not a store object); `Err` when the body has the wrong shape
/// (not an object, no `stores` list, `count` disagreeing with the list).
pub(super) fn parse_stores(body: &[u8]) -> Result<StoreList, String> {
    let raw: RawStores =
        serde_json::from_slice(body).map_err(|e| format!("not a store list: {e}"))?;
    let entries = raw
        .stores
        .ok_or_else(|| "no `stores` list in the reply".to_owned())?;
    if let Some(count) = &raw.count
        && count.as_u64() != Some(entries.len() as u64)
    {
        return Err(format!(
            "`count` is {count} but {} stores are listed",
            entries.len()
        ));
    }
    let mut stores = Vec::with_capacity(entries.len());
    let mut rejected = Vec::new();
    for entry in entries {
        let id_text = serde_json::from_str::<IdProbe>(entry.get())
            .ok()
            .and_then(|p| p.store?.id)
            .map_or_else(|| "none".to_owned(), |v| v.to_string());
        match serde_json::from_str::<RawStoreInfo>(entry.get()) {
            Ok(info) => match info.into_store() {
                Ok(s) => stores.push(s),
                Err(reason) => rejected.push(RejectedStore {
                    reason,
                    id: None,
                    detail: format!("store id {id_text}"),
                }),
            },
            Err(e) => rejected.push(RejectedStore {
                reason: RejectReason::Malformed,
                id: None,
                detail: format!("entry with store id {id_text}: {e}"),
            }),
        }
    }
    let mut seen: BTreeMap<u64, usize> = BTreeMap::new();
    for s in &stores {
        *seen.entry(s.id).or_default() += 1;
    }
    stores.retain(|s| {
        let n = seen[&s.id];
        if n > 1 {
            rejected.push(RejectedStore {
                reason: RejectReason::DuplicateId,
                id: Some(s.id),
                detail: format!("store {} is listed {n} times", s.id),
            });
        }
        n == 1
    });
    Ok(StoreList { stores, rejected })
}

/// Parses a `/members` body; `Err` without a non-empty `members` list (every PD has itself).
pub(super) fn parse_members(body: &[u8]) -> Result<Members, String> {
    let raw: RawMembers =
        serde_json::from_slice(body).map_err(|e| format!("not a member list: {e}"))?;
    let members = raw.into_members();
    if members.members.is_empty() {
        return Err("no `members` in the reply".into());
    }
    Ok(members)
}

/// Parses a `/health` body; `Err` unless it is a non-empty array.
pub(super) fn parse_health(body: &[u8]) -> Result<Vec<MemberHealth>, String> {
    let raw: Vec<RawHealth> =
        serde_json::from_slice(body).map_err(|e| format!("not a health list: {e}"))?;
    if raw.is_empty() {
        return Err("an empty health list".into());
    }
    Ok(raw.into_iter().map(RawHealth::into_health).collect())
}

/// Parses a `/leader` body: a member, or `null` (a follower asked with the header while PD has
/// no leader, cluster-signals.md §1.2).
pub(super) fn parse_leader(body: &[u8]) -> Result<Option<Member>, String> {
    let raw: Option<RawMember> =
        serde_json::from_slice(body).map_err(|e| format!("not a member: {e}"))?;
    Ok(raw.and_then(RawMember::into_member))
}

/// Parses a `/config/schedule` body (an object); unusable values become `None`. The space
/// ratios are kept only if PD's own rule `0 <= high < low <= 1` holds.
pub(super) fn parse_schedule(body: &[u8]) -> Result<ScheduleConfig, String> {
    let raw: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(body).map_err(|e| format!("not a schedule config: {e}"))?;
    let ratio = |k: &str| raw.get(k).and_then(serde_json::Value::as_f64);
    let (high, low) = match (ratio("high-space-ratio"), ratio("low-space-ratio")) {
        (Some(h), Some(l)) if 0.0 <= h && h < l && l <= 1.0 => (Some(h), Some(l)),
        _ => (None, None),
    };
    Ok(ScheduleConfig {
        max_store_down_time: raw
            .get("max-store-down-time")
            .and_then(|v| v.as_str())
            .and_then(parse_go_duration),
        high_space_ratio: high,
        low_space_ratio: low,
    })
}

/// One entry of `stores`: the store's meta and its status.
#[derive(Deserialize)]
struct RawStoreInfo {
    #[serde(default)]
    store: Option<RawMeta>,
    #[serde(default)]
    status: Option<RawStatus>,
}

/// `store`: identity, addresses, version, state and labels.
#[derive(Deserialize, Default)]
#[serde(default)]
struct RawMeta {
    #[serde(deserialize_with = "lenient_u64")]
    id: Option<u64>,
    #[serde(deserialize_with = "lenient_string")]
    address: Option<String>,
    #[serde(deserialize_with = "lenient_string")]
    status_address: Option<String>,
    #[serde(deserialize_with = "lenient_string")]
    version: Option<String>,
    #[serde(deserialize_with = "lenient_string")]
    state_name: Option<String>,
    #[serde(deserialize_with = "lenient_u64")]
    state: Option<u64>,
    labels: Option<Vec<RawLabel>>,
    #[serde(deserialize_with = "lenient_u64")]
    last_heartbeat: Option<u64>,
    #[serde(deserialize_with = "lenient_u64")]
    start_timestamp: Option<u64>,
}

/// One store label.
#[derive(Deserialize, Default)]
#[serde(default)]
struct RawLabel {
    #[serde(deserialize_with = "lenient_string")]
    key: Option<String>,
    #[serde(deserialize_with = "lenient_string")]
    value: Option<String>,
}

/// `status`: sizes, counts, slow score and heartbeat/start times.
#[derive(Deserialize, Default)]
#[serde(default)]
struct RawStatus {
    #[serde(deserialize_with = "lenient_string")]
    capacity: Option<String>,
    #[serde(deserialize_with = "lenient_string")]
    available: Option<String>,
    #[serde(deserialize_with = "lenient_string")]
    used_size: Option<String>,
    #[serde(deserialize_with = "lenient_u64")]
    leader_count: Option<u64>,
    #[serde(deserialize_with = "lenient_u64")]
    region_count: Option<u64>,
    #[serde(deserialize_with = "lenient_f64")]
    slow_score: Option<f64>,
    #[serde(deserialize_with = "lenient_string")]
    start_ts: Option<String>,
    #[serde(deserialize_with = "lenient_string")]
    last_heartbeat_ts: Option<String>,
}

impl RawStoreInfo {
    /// The store, or why the entry identifies none: no `store` object, or an id that is
    /// missing, not an integer, 0 or at least 2^64.
    fn into_store(self) -> Result<Store, RejectReason> {
        let meta = self.store.ok_or(RejectReason::Malformed)?;
        let id = meta
            .id
            .filter(|&id| id > 0)
            .ok_or(RejectReason::InvalidId)?;
        let status = self.status.unwrap_or_default();
        let state_inferred = meta.state_name.as_deref().is_none_or(str::is_empty);
        let state = match meta.state_name.as_deref() {
            Some(name) if !name.is_empty() => StoreState::from_name(name),
            // Very old PD without `state_name`: the metapb enum (omitted when 0 = Up).
            _ => match meta.state {
                Some(1) => StoreState::Offline,
                Some(2) => StoreState::Tombstone,
                Some(0) | None => StoreState::Up,
                Some(n) => StoreState::Other(n.to_string()),
            },
        };
        let last_heartbeat_ns = meta.last_heartbeat.filter(|&ns| ns > 0).or_else(|| {
            status
                .last_heartbeat_ts
                .as_deref()
                .and_then(rfc3339_to_unix_ns)
        });
        let start_timestamp = meta
            .start_timestamp
            .filter(|&s| s > 0)
            .or_else(|| status.start_ts.as_deref().and_then(rfc3339_to_unix_secs));
        let size = |s: &Option<String>| s.as_deref().and_then(parse_byte_size);
        Ok(Store {
            id,
            address: meta.address.unwrap_or_default(),
            status_address: meta.status_address.unwrap_or_default(),
            version: meta.version.unwrap_or_default(),
            state,
            state_inferred,
            labels: meta
                .labels
                .unwrap_or_default()
                .into_iter()
                .map(|l| (l.key.unwrap_or_default(), l.value.unwrap_or_default()))
                .collect(),
            last_heartbeat_ns,
            start_timestamp,
            capacity_bytes: size(&status.capacity),
            available_bytes: size(&status.available),
            used_bytes: size(&status.used_size),
            leader_count: status.leader_count,
            region_count: status.region_count,
            slow_score: status.slow_score,
        })
    }
}

/// `GET /members`: every member, the leader and the etcd leader.
#[derive(Deserialize)]
struct RawMembers {
    #[serde(default)]
    members: Option<Vec<RawMember>>,
    #[serde(default)]
    leader: Option<RawMember>,
    #[serde(default)]
    etcd_leader: Option<RawMember>,
}

impl RawMembers {
    /// The members, leader and etcd leader; empty member objects are dropped.
    fn into_members(self) -> Members {
        Members {
            members: self
                .members
                .unwrap_or_default()
                .into_iter()
                .filter_map(RawMember::into_member)
                .collect(),
            leader: self.leader.and_then(RawMember::into_member),
            etcd_leader: self.etcd_leader.and_then(RawMember::into_member),
        }
    }
}

/// One PD member (also the whole body of `GET /leader`).
#[derive(Deserialize, Default)]
#[serde(default)]
struct RawMember {
    #[serde(deserialize_with = "lenient_string")]
    name: Option<String>,
    #[serde(deserialize_with = "lenient_u64")]
    member_id: Option<u64>,
    client_urls: Option<Vec<String>>,
}

impl RawMember {
    /// `None` for an empty member object (`{}`), which is how "no leader" can look.
    fn into_member(self) -> Option<Member> {
        let name = self.name.unwrap_or_default();
        let member_id = self.member_id.unwrap_or(0);
        if name.is_empty() && member_id == 0 {
            return None;
        }
        Some(Member {
            name,
            member_id,
            client_urls: self.client_urls.unwrap_or_default(),
        })
    }
}

/// One entry of `GET /health`.
#[derive(Deserialize, Default)]
#[serde(default)]
struct RawHealth {
    #[serde(deserialize_with = "lenient_string")]
    name: Option<String>,
    #[serde(deserialize_with = "lenient_u64")]
    member_id: Option<u64>,
    health: Option<bool>,
}

impl RawHealth {
    /// Missing fields become empty, 0 and unhealthy.
    fn into_health(self) -> MemberHealth {
        MemberHealth {
            name: self.name.unwrap_or_default(),
            member_id: self.member_id.unwrap_or(0),
            health: self.health.unwrap_or(false),
        }
    }
}

/// Drains and ignores a sequence.
fn drain_seq<'de, A: de::SeqAccess<'de>>(mut seq: A) -> Result<(), A::Error> {
    while seq.next_element::<IgnoredAny>()?.is_some() {}
    Ok(())
}

/// Drains and ignores a map.
fn drain_map<'de, A: de::MapAccess<'de>>(mut map: A) -> Result<(), A::Error> {
    while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
    Ok(())
}

/// Defines a visitor that yields `Option<$t>`, mapping values of any unexpected type to `None`.
macro_rules! lenient_visitor {
    ($fn_name:ident, $visitor:ident, $t:ty, $expecting:literal,
     u64: $from_u64:expr, i64: $from_i64:expr, f64: $from_f64:expr, str: $from_str:expr) => {
        struct $visitor;

        impl<'de> Visitor<'de> for $visitor {
            type Value = Option<$t>;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str($expecting)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(($from_u64)(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(($from_i64)(v))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(($from_f64)(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(($from_str)(v))
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
                Ok(None)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
                d.deserialize_any(self)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
                drain_seq(seq).map(|_| None)
            }
            fn visit_map<A: de::MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                drain_map(map).map(|_| None)
            }
        }

        fn $fn_name<'de, D: Deserializer<'de>>(d: D) -> Result<Option<$t>, D::Error> {
            d.deserialize_any($visitor)
        }
    };
}

lenient_visitor!(
    lenient_u64, LenientU64, u64, "an unsigned integer",
    u64: Some,
    i64: |v: i64| u64::try_from(v).ok(),
    f64: |v: f64| (v.is_finite() && v >= 0.0 && v.fract() == 0.0 && v < 1.8e19).then_some(v as u64),
    str: |v: &str| v.trim().parse::<u64>().ok()
);

lenient_visitor!(
    lenient_f64, LenientF64, f64, "a number",
    u64: |v: u64| Some(v as f64),
    i64: |v: i64| Some(v as f64),
    f64: |v: f64| v.is_finite().then_some(v),
    str: |v: &str| v.trim().parse::<f64>().ok().filter(|f| f.is_finite())
);

lenient_visitor!(
    lenient_string, LenientString, String, "a string",
    u64: |_| None,
    i64: |_| None,
    f64: |_| None,
    str: |v: &str| Some(v.to_owned())
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lenient_fields_become_none() {
        let list = parse_stores(
            br#"{"stores":[{"store":{"id":"7","labels":[{"key":"zone"}],"last_heartbeat":-1},
                "status":{"capacity":12,"leader_count":-3,"region_count":4.0,"slow_score":"x"}}]}"#,
        )
        .unwrap();
        let s = &list.stores[0];
        assert_eq!(s.id, 7);
        assert_eq!(s.labels, vec![("zone".to_owned(), String::new())]);
        assert_eq!(s.last_heartbeat_ns, None);
        assert_eq!(s.capacity_bytes, None);
        assert_eq!(s.leader_count, None);
        assert_eq!(s.region_count, Some(4));
        assert_eq!(s.slow_score, None);
        assert_eq!(s.state, StoreState::Up);
        assert!(s.state_inferred, "no state_name");
        assert!(list.rejected.is_empty());
    }

    #[test]
    fn wrong_shapes_are_errors_and_bad_entries_are_rejected_alone() {
        for bad in [
            &b"{}"[..],
            br#"{"count":3}"#,
            br#"{"count":3,"stores":null}"#,
            br#"{"count":2,"stores":[{"store":{"id":1}}]}"#,
            br#"{"count":"1","stores":[{"store":{"id":1}}]}"#,
            br#"[]"#,
            br#""[PD:cluster:ErrNotBootstrapped]TiKV cluster not bootstrapped""#,
        ] {
            assert!(
                parse_stores(bad).is_err(),
                "{} accepted",
                String::from_utf8_lossy(bad)
            );
        }
        let empty = parse_stores(br#"{"count":0,"stores":[]}"#).unwrap();
        assert!(empty.stores.is_empty() && empty.rejected.is_empty());
        let list = parse_stores(
            br#"{"count":7,"stores":[
                {"store":{"id":18446744073709551616,"state_name":"Up"}},
                {"store":{"address":"no-id:20160","state_name":"Up"}},
                {"store":{"id":0}},
                {"store":{"id":3,"address":"a"}},
                {"store":{"id":3,"address":"b"}},
                {"status":{}},
                {"store":{"id":5,"state_name":"Disconnected"}}]}"#,
        )
        .unwrap();
        let ids: Vec<u64> = list.stores.iter().map(|s| s.id).collect();
        assert_eq!(ids, [5]);
        let reasons: Vec<(RejectReason, Option<u64>)> =
            list.rejected.iter().map(|r| (r.reason, r.id)).collect();
        assert_eq!(
            reasons,
            [
                (RejectReason::InvalidId, None),
                (RejectReason::InvalidId, None),
                (RejectReason::InvalidId, None),
                (RejectReason::Malformed, None),
                (RejectReason::DuplicateId, Some(3)),
                (RejectReason::DuplicateId, Some(3)),
            ]
        );
        assert!(
            list.rejected[0].detail.starts_with("store id 1.8"),
            "{:?}",
            list.rejected[0]
        );
        assert_eq!(list.rejected[1].detail, "store id none");
    }

    #[test]
    fn member_and_health_lists_must_not_be_empty() {
        for bad in [
            &b"{}"[..],
            br#"{"members":[]}"#,
            br#"{"members":null}"#,
            b"[]",
        ] {
            assert!(parse_members(bad).is_err());
        }
        let m = parse_members(br#"{"members":[{"name":"pd-0","member_id":1}]}"#).unwrap();
        assert_eq!((m.members.len(), m.leader.is_none()), (1, true));
        for bad in [&b"[]"[..], b"null", b"{}"] {
            assert!(parse_health(bad).is_err());
        }
        assert_eq!(parse_leader(b"null").unwrap(), None);
    }

    #[test]
    fn schedule_ratios_follow_pds_own_validation() {
        let s = parse_schedule(
            br#"{"max-store-down-time":"1h0m0s","high-space-ratio":0.6,"low-space-ratio":0.9}"#,
        )
        .unwrap();
        assert_eq!(
            s.max_store_down_time,
            Some(std::time::Duration::from_secs(3600))
        );
        assert_eq!(
            (s.high_space_ratio, s.low_space_ratio),
            (Some(0.6), Some(0.9))
        );
        let s = parse_schedule(br#"{"high-space-ratio":0.9,"low-space-ratio":0.8}"#).unwrap();
        assert_eq!((s.high_space_ratio, s.low_space_ratio), (None, None));
        assert!(parse_schedule(b"[]").is_err());
    }
}
