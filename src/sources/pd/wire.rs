//! PD's raw JSON shapes, parsed leniently: unknown fields are ignored, every field is optional,
//! and a value of an unexpected type becomes `None` (see the `lenient_*` visitors).

use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, Visitor};

use super::units::{parse_byte_size, rfc3339_to_unix_ns, rfc3339_to_unix_secs};
use crate::domain::{Member, MemberHealth, Members, Store, StoreState};

/// `GET /stores`: `{"count": n, "stores": [...]}` (the list is trusted, not `count`).
#[derive(Deserialize)]
pub(super) struct RawStores {
    #[serde(default)]
    stores: Option<Vec<RawStoreInfo>>,
}

impl RawStores {
    /// The listed stores; entries without a `store` object are dropped.
    pub(super) fn into_stores(self) -> Vec<Store> {
        self.stores
            .unwrap_or_default()
            .into_iter()
            .filter_map(RawStoreInfo::into_store)
            .collect()
    }
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
    /// `None` for an entry without a `store` object (nothing to identify it by).
    fn into_store(self) -> Option<Store> {
        let meta = self.store?;
        let status = self.status.unwrap_or_default();
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
        Some(Store {
            id: meta.id.unwrap_or(0),
            address: meta.address.unwrap_or_default(),
            status_address: meta.status_address.unwrap_or_default(),
            version: meta.version.unwrap_or_default(),
            state,
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
pub(super) struct RawMembers {
    #[serde(default)]
    members: Option<Vec<RawMember>>,
    #[serde(default)]
    leader: Option<RawMember>,
    #[serde(default)]
    etcd_leader: Option<RawMember>,
}

impl RawMembers {
    /// The members, leader and etcd leader; empty member objects are dropped.
    pub(super) fn into_members(self) -> Members {
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
pub(super) struct RawMember {
    #[serde(deserialize_with = "lenient_string")]
    name: Option<String>,
    #[serde(deserialize_with = "lenient_u64")]
    member_id: Option<u64>,
    client_urls: Option<Vec<String>>,
}

impl RawMember {
    /// `None` for an empty member object (`{}`), which is how "no leader" can look.
    pub(super) fn into_member(self) -> Option<Member> {
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
pub(super) struct RawHealth {
    #[serde(deserialize_with = "lenient_string")]
    name: Option<String>,
    #[serde(deserialize_with = "lenient_u64")]
    member_id: Option<u64>,
    health: Option<bool>,
}

impl RawHealth {
    /// Missing fields become empty, 0 and unhealthy.
    pub(super) fn into_health(self) -> MemberHealth {
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
        let raw: RawStores = serde_json::from_str(
            r#"{"stores":[{"store":{"id":"7","labels":[{"key":"zone"}],"last_heartbeat":-1},
                "status":{"capacity":12,"leader_count":-3,"region_count":4.0,"slow_score":"x"}}]}"#,
        )
        .unwrap();
        let s = raw.stores.unwrap().remove(0).into_store().unwrap();
        assert_eq!(s.id, 7);
        assert_eq!(s.labels, vec![("zone".to_owned(), String::new())]);
        assert_eq!(s.last_heartbeat_ns, None);
        assert_eq!(s.capacity_bytes, None);
        assert_eq!(s.leader_count, None);
        assert_eq!(s.region_count, Some(4));
        assert_eq!(s.slow_score, None);
        assert_eq!(s.state, StoreState::Up);
    }
}
