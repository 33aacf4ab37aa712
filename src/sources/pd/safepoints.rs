//! How far behind the cluster's history lags: `GET /pd/api/v1/gc/safepoint` (GC safe point and
//! the service safe points holding it, PD ≥ v5.0) and `GET /pd/api/v1/min-resolved-ts?scope=
//! cluster` (the min resolved ts of the cluster, PD ≥ v6.0, and of each store, PD ≥ v7.2).
//! cluster-signals.md §3, §4.
//!
//! Both are one request whatever the size of the cluster (the per-store map is about 35 bytes a
//! store). A PD that lacks the endpoint answers 404: that is "not supported" (`Ok(None)`), not a
//! failure. A body of the wrong shape is a failure; entries that cannot be used (a service safe
//! point without a TSO, a store id that is not an integer) are skipped alone.

use std::collections::BTreeMap;

use serde_json::Value;

use super::{PdClient, PdError, short};
use crate::domain::{GcSafePoints, MinResolvedTs, ServiceSafePoint};

impl PdClient {
    /// `GET /pd/api/v1/gc/safepoint`; `None` when this PD does not serve it (before v5.0).
    pub async fn gc_safepoint(&self) -> Result<Option<GcSafePoints>, PdError> {
        self.get_if_served("/gc/safepoint", parse_gc_safepoint)
            .await
    }

    /// `GET /pd/api/v1/min-resolved-ts?scope=cluster`; `None` when this PD does not serve it
    /// (before v6.0).
    pub async fn min_resolved_ts(&self) -> Result<Option<MinResolvedTs>, PdError> {
        self.get_if_served("/min-resolved-ts?scope=cluster", parse_min_resolved_ts)
            .await
    }
}

/// An unsigned integer field, as PD writes `uint64`s (numbers, up to `u64::MAX`).
fn u64_field(o: &serde_json::Map<String, Value>, key: &str) -> Result<u64, String> {
    match o.get(key) {
        Some(v) => v
            .as_u64()
            .ok_or_else(|| format!("`{key}` is {v}, not an unsigned integer")),
        None => Err(format!("no `{key}` in the reply")),
    }
}

/// Parses a `/gc/safepoint` body: `{"service_gc_safe_points": [...] | null,
/// ["min_service_gc_safe_point": n,] "gc_safe_point": n}` (`server/api/service_gc_safepoint.go`).
pub(super) fn parse_gc_safepoint(body: &[u8]) -> Result<GcSafePoints, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let o = v
        .as_object()
        .ok_or_else(|| format!("not a GC safe point object: {}", short(&v)))?;
    let gc_safe_point = u64_field(o, "gc_safe_point")?;
    let services = match o.get("service_gc_safe_points") {
        Some(Value::Array(a)) => a.iter().filter_map(service_safe_point).collect(),
        Some(Value::Null) => Vec::new(),
        Some(other) => {
            return Err(format!(
                "`service_gc_safe_points` is {}, not a list",
                short(other)
            ));
        }
        None => return Err("no `service_gc_safe_points` in the reply".into()),
    };
    Ok(GcSafePoints {
        gc_safe_point,
        services,
    })
}

/// One `{service_id, expired_at, safe_point}` entry; `None` when it names no service or TSO.
fn service_safe_point(v: &Value) -> Option<ServiceSafePoint> {
    let o = v.as_object()?;
    Some(ServiceSafePoint {
        service_id: o.get("service_id")?.as_str()?.to_owned(),
        // Unix seconds; `i64::MAX` = never. A missing one cannot hold GC.
        expired_at: o.get("expired_at").and_then(Value::as_i64).unwrap_or(0),
        safe_point: o.get("safe_point")?.as_u64()?,
    })
}

/// Parses a `/min-resolved-ts?scope=cluster` body: `{["is_real_time": true,]
/// "min_resolved_ts": n, "persist_interval": "1s"[, "stores_min_resolved_ts": {"1": n, ...}]}`
/// (`server/api/min_resolved_ts.go`; `is_real_time` is omitted when false, the store map is
/// absent before v7.2).
pub(super) fn parse_min_resolved_ts(body: &[u8]) -> Result<MinResolvedTs, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    let o = v
        .as_object()
        .ok_or_else(|| format!("not a min resolved ts object: {}", short(&v)))?;
    let cluster = u64_field(o, "min_resolved_ts")?;
    let is_real_time = match o.get("is_real_time") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => return Err(format!("`is_real_time` is {}, not a bool", short(other))),
    };
    let stores = match o.get("stores_min_resolved_ts") {
        None | Some(Value::Null) => None,
        Some(Value::Object(m)) => Some(
            m.iter()
                .filter_map(|(id, ts)| Some((id.parse::<u64>().ok()?, ts.as_u64()?)))
                .collect::<BTreeMap<u64, u64>>(),
        ),
        Some(other) => {
            return Err(format!(
                "`stores_min_resolved_ts` is {}, not an object",
                short(other)
            ));
        }
    };
    Ok(MinResolvedTs {
        cluster,
        is_real_time,
        stores,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// pd-ctl `service-gc-safepoint` output seen in pingcap/tiflow#6195 (cluster-signals.md §3).
    const TIFLOW_6195: &str = r#"{
  "service_gc_safe_points": [
    {
      "service_id": "gc_worker",
      "expired_at": 9223372036854775807,
      "safe_point": 434377228242124800
    },
    {
      "service_id": "ticdc-default-1139748333935545375",
      "expired_at": 1657104704,
      "safe_point": 434377406250745856
    },
    {
      "service_id": "ticdc-default-1139748333935545375-checking-default_cf00",
      "expired_at": 1657018904,
      "safe_point": 434377406250745857
    }
  ],
  "gc_safe_point": 0
}
"#;

    #[test]
    fn gc_safe_points_parse_with_never_expiring_and_odd_entries() {
        let g = parse_gc_safepoint(TIFLOW_6195.as_bytes()).unwrap();
        assert_eq!(g.gc_safe_point, 0);
        assert_eq!(g.services.len(), 3);
        assert_eq!(g.services[0].expired_at, i64::MAX);
        assert_eq!(g.services[1].safe_point, 434_377_406_250_745_856);
        // PD ≥ v8.0 adds min_service_gc_safe_point; null list; unusable entries skipped.
        let g = parse_gc_safepoint(
            br#"{"service_gc_safe_points": [{"service_id": 3, "safe_point": 1}, {"service_id": "br", "safe_point": "x"}, {"service_id": "ok", "expired_at": 5, "safe_point": 7}], "min_service_gc_safe_point": 7, "gc_safe_point": 6}"#,
        )
        .unwrap();
        assert_eq!(g.gc_safe_point, 6);
        assert_eq!(
            g.services,
            [ServiceSafePoint {
                service_id: "ok".into(),
                expired_at: 5,
                safe_point: 7
            }]
        );
        let g =
            parse_gc_safepoint(br#"{"service_gc_safe_points": null, "gc_safe_point": 1}"#).unwrap();
        assert!(g.services.is_empty());
    }

    #[test]
    fn gc_replies_of_the_wrong_shape_are_failures() {
        for (body, why) in [
            (&br#"{}"#[..], "no `gc_safe_point`"),
            (br#"{"gc_safe_point": 1}"#, "no `service_gc_safe_points`"),
            (
                br#"{"gc_safe_point": -1, "service_gc_safe_points": []}"#,
                "not an unsigned",
            ),
            (
                br#"{"gc_safe_point": 1, "service_gc_safe_points": {}}"#,
                "not a list",
            ),
            (br#"[]"#, "not a GC safe point object"),
            (b"404 page not found", "not JSON"),
        ] {
            let e = parse_gc_safepoint(body).unwrap_err();
            assert!(e.contains(why), "{e}");
        }
    }

    #[test]
    fn min_resolved_ts_parses_each_version_shape() {
        // v7.2+ with ?scope=cluster (cluster-signals.md §4; u64::MAX for a store without data).
        let r = parse_min_resolved_ts(br#"{ "is_real_time": true, "min_resolved_ts": 454845551471493123, "persist_interval": "1s",
  "stores_min_resolved_ts": { "1": 454845551471493123, "4": 454845551733637121, "5": 18446744073709551615, "x": 3 } }"#).unwrap();
        assert!(r.is_real_time);
        assert_eq!(r.cluster, 454_845_551_471_493_123);
        let stores = r.stores.unwrap();
        assert_eq!(stores.len(), 3);
        assert_eq!(stores[&5], u64::MAX);
        // v6.0–v7.1: no store map; persistence off: is_real_time omitted.
        let r =
            parse_min_resolved_ts(br#"{"min_resolved_ts": 0, "persist_interval": "0s"}"#).unwrap();
        assert_eq!((r.is_real_time, r.stores), (false, None));
        for (body, why) in [
            (&br#"{"is_real_time": true}"#[..], "no `min_resolved_ts`"),
            (
                br#"{"min_resolved_ts": 1, "is_real_time": "yes"}"#,
                "not a bool",
            ),
            (
                br#"{"min_resolved_ts": 1, "stores_min_resolved_ts": []}"#,
                "not an object",
            ),
            (
                br#""[PD:cluster:ErrNotBootstrapped]""#,
                "not a min resolved ts object",
            ),
        ] {
            let e = parse_min_resolved_ts(body).unwrap_err();
            assert!(e.contains(why), "{e}");
        }
    }
}
