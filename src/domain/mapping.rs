//! Which PD store a Prometheus sample, a container or a pod belongs to: one set of rules, built
//! from PD's store list, shared by the Prometheus-based invariants, the Docker log source and
//! the Kubernetes log sources.
//!
//! Every store answers to these keys (see `cluster-signals.md` §10 for the deployments):
//!
//! * **addresses** (`host:port`): its `status_address` (unless its host is unspecified,
//!   `0.0.0.0`/`::`/empty — TiDB Operator without `advertise-status-addr` reports
//!   `0.0.0.0:20180`), its `address`, and `<address host>:<status port>` (the port of
//!   `status_address`, or TiKV's default 20180 when PD reports none). TiUP's `instance` is
//!   `host:status_port`, which is the first or the last of these.
//! * **names**: the host of `address` and of `status_address`, and the first DNS label of each
//!   (`basic-tikv-0.basic-tikv-peer.tidb.svc:20160` → `basic-tikv-0`, the pod name that
//!   TidbMonitor and Prometheus Operator put in `instance`, `kubernetes_pod_name` or `pod`).
//!
//! A key claimed by two stores is ambiguous and matches neither. Keys compare case-insensitively
//! (DNS names do). A TiDB Operator address (second DNS label `<cluster>-tikv-peer` or any
//! `-peer` headless service) also gives the store's namespace (the third label): a sample whose
//! `kubernetes_namespace` or `namespace` label names another namespace is not that store's.
//!
//! A sample maps by, in order: its `store` label (a store id); the configured [`MappingRule`]
//! (label + regex); `instance` as an address, then as a name; `kubernetes_pod_name`, then `pod`
//! as a name. The first rule that names exactly one store wins.

use std::collections::HashMap;

use super::labels::Labels;
use super::store::{Store, host_of};

/// TiKV's default status port, assumed when PD reports no `status_address`.
pub const DEFAULT_STATUS_PORT: u16 = 20180;

/// The sample labels the built-in rules read (queries keep them when they aggregate).
pub const MAPPING_LABELS: [&str; 6] = [
    "instance",
    "kubernetes_pod_name",
    "pod",
    "kubernetes_namespace",
    "namespace",
    "store",
];

/// The documented override: the value of `label`, matched in full by `regex`, names a store by
/// its first capture group (the whole match without one): an id, an address or a name.
#[derive(Clone, Debug)]
pub struct MappingRule {
    /// The sample label to read.
    pub label: String,
    /// Anchored at both ends when built with [`MappingRule::new`].
    pub regex: regex::Regex,
}

impl MappingRule {
    /// A rule matching `pattern` against the whole value of `label` (like Prometheus relabeling).
    pub fn new(label: &str, pattern: &str) -> Result<MappingRule, regex::Error> {
        Ok(MappingRule {
            label: label.to_owned(),
            regex: regex::Regex::new(&format!("^(?:{pattern})$"))?,
        })
    }

    /// The key this rule extracts from a sample's labels.
    fn key<'a>(&self, labels: &'a Labels) -> Option<&'a str> {
        let value = labels.get(&self.label)?;
        let caps = self.regex.captures(value)?;
        caps.get(1).or_else(|| caps.get(0)).map(|m| m.as_str())
    }
}

/// Who claims a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Slot {
    One(u64),
    Ambiguous,
}

/// Lookup of PD stores by id, address and name; rebuilt from each store list.
#[derive(Clone, Debug, Default)]
pub struct StoreMatcher {
    ids: HashMap<String, u64>,
    addresses: HashMap<String, Slot>,
    names: HashMap<String, Slot>,
    namespaces: HashMap<u64, String>,
    rule: Option<MappingRule>,
}

/// Whether a host is a listen-on-everything address, which identifies no store.
fn unspecified(host: &str) -> bool {
    matches!(host, "" | "0.0.0.0" | "::" | "[::]")
}

/// The port of `host:port` (bracketed IPv6 too).
fn port_of(addr: &str) -> Option<u16> {
    let (_, port) = addr.rsplit_once(':')?;
    port.parse().ok()
}

/// The DNS labels of a host name; none for an IP address.
fn dns_labels(host: &str) -> Vec<&str> {
    if host.parse::<std::net::IpAddr>().is_ok() {
        return Vec::new();
    }
    host.split('.').filter(|l| !l.is_empty()).collect()
}

fn claim(map: &mut HashMap<String, Slot>, key: &str, id: u64) {
    if key.is_empty() {
        return;
    }
    let slot = map.entry(key.to_ascii_lowercase()).or_insert(Slot::One(id));
    if *slot != Slot::One(id) {
        *slot = Slot::Ambiguous;
    }
}

fn lookup(map: &HashMap<String, Slot>, key: &str) -> Option<u64> {
    match map.get(&key.to_ascii_lowercase())? {
        Slot::One(id) => Some(*id),
        Slot::Ambiguous => None,
    }
}

impl StoreMatcher {
    /// The keys of these stores, with an optional override rule.
    pub fn new(stores: &[Store], rule: Option<MappingRule>) -> StoreMatcher {
        let mut m = StoreMatcher {
            rule,
            ..StoreMatcher::default()
        };
        for s in stores {
            m.ids.insert(s.id.to_string(), s.id);
            let addr_host = host_of(&s.address);
            let status_host = host_of(&s.status_address);
            if !unspecified(status_host) {
                claim(&mut m.addresses, &s.status_address, s.id);
            }
            claim(&mut m.addresses, &s.address, s.id);
            if !unspecified(addr_host) {
                let port = port_of(&s.status_address)
                    .filter(|_| !s.status_address.is_empty())
                    .unwrap_or(DEFAULT_STATUS_PORT);
                let host = if addr_host.contains(':') {
                    format!("[{addr_host}]")
                } else {
                    addr_host.to_owned()
                };
                claim(&mut m.addresses, &format!("{host}:{port}"), s.id);
            }
            for host in [addr_host, status_host] {
                if unspecified(host) {
                    continue;
                }
                claim(&mut m.names, host, s.id);
                let labels = dns_labels(host);
                if let Some(first) = labels.first() {
                    claim(&mut m.names, first, s.id);
                }
                if labels.len() >= 3 && labels[1].ends_with("-peer") {
                    m.namespaces.insert(s.id, labels[2].to_ascii_lowercase());
                }
            }
        }
        m
    }

    /// The sample labels the rules read, the override's label included.
    pub fn labels(&self) -> Vec<String> {
        let mut v: Vec<String> = MAPPING_LABELS.iter().map(|s| (*s).to_owned()).collect();
        if let Some(r) = &self.rule
            && !v.contains(&r.label)
        {
            v.push(r.label.clone());
        }
        v
    }

    /// The store a key names: an id, an address, or a name.
    fn by_key(&self, key: &str) -> Option<u64> {
        self.ids
            .get(key)
            .copied()
            .or_else(|| lookup(&self.addresses, key))
            .or_else(|| lookup(&self.names, key))
    }

    /// Whether the sample's namespace label (if any) allows store `id`.
    fn same_namespace(&self, id: u64, labels: &Labels) -> bool {
        let Some(ns) = self.namespaces.get(&id) else {
            return true;
        };
        ["kubernetes_namespace", "namespace"]
            .iter()
            .filter_map(|k| labels.get(k))
            .all(|v| v.eq_ignore_ascii_case(ns))
    }

    /// The store a Prometheus sample belongs to (see the module documentation for the rules).
    pub fn store_of_sample(&self, labels: &Labels) -> Option<u64> {
        if let Some(id) = labels.get("store").and_then(|s| self.ids.get(s)) {
            return Some(*id);
        }
        if let Some(id) = self
            .rule
            .as_ref()
            .and_then(|r| r.key(labels))
            .and_then(|k| self.by_key(k))
        {
            return Some(id);
        }
        let instance = labels.get("instance");
        let candidates = [
            instance.and_then(|i| lookup(&self.addresses, i)),
            instance.and_then(|i| lookup(&self.names, i)),
            labels
                .get("kubernetes_pod_name")
                .and_then(|p| lookup(&self.names, p)),
            labels.get("pod").and_then(|p| lookup(&self.names, p)),
        ];
        candidates
            .into_iter()
            .flatten()
            .find(|&id| self.same_namespace(id, labels))
    }

    /// The one store answering to any of `names` (a container's name, hostname, aliases and
    /// IPs); `None` when none or several do.
    pub fn store_of_names(&self, names: &[String]) -> Option<u64> {
        let mut found: Option<u64> = None;
        for n in names {
            let Some(id) = lookup(&self.addresses, n).or_else(|| lookup(&self.names, n)) else {
                continue;
            };
            match found {
                Some(f) if f != id => return None,
                _ => found = Some(id),
            }
        }
        found
    }

    /// The store running in pod `pod` of `namespace` (when known).
    pub fn store_of_pod(&self, pod: &str, namespace: Option<&str>) -> Option<u64> {
        let id = lookup(&self.names, pod)?;
        match (self.namespaces.get(&id), namespace) {
            (Some(ns), Some(want)) if !ns.eq_ignore_ascii_case(want) => None,
            _ => Some(id),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(id: u64, address: &str, status: &str) -> Store {
        Store::at(id, address, status)
    }

    fn labels(kv: &[(&str, &str)]) -> Labels {
        kv.iter().copied().collect()
    }

    #[test]
    fn tiup_instances_are_status_addresses() {
        // cluster-signals.md §10.1: instance = host:status_port = PD's status_address.
        let m = StoreMatcher::new(
            &[
                store(1, "10.0.1.1:20160", "10.0.1.1:20180"),
                store(2, "10.0.1.1:20161", "10.0.1.1:20181"),
            ],
            None,
        );
        let s = |i| m.store_of_sample(&labels(&[("instance", i), ("job", "tikv")]));
        assert_eq!(s("10.0.1.1:20180"), Some(1));
        assert_eq!(s("10.0.1.1:20181"), Some(2));
        // The host alone is shared by both stores: ambiguous, and node_exporter's port is no store.
        assert_eq!(s("10.0.1.1"), None);
        assert_eq!(s("10.0.1.1:9100"), None);
    }

    #[test]
    fn tidb_operator_pod_names_and_unspecified_status_addresses() {
        // §10.2: TidbMonitor sets instance = pod name; PD shows status_address 0.0.0.0:20180.
        let m = StoreMatcher::new(
            &[
                store(
                    1,
                    "basic-tikv-0.basic-tikv-peer.tidb.svc:20160",
                    "0.0.0.0:20180",
                ),
                store(
                    2,
                    "basic-tikv-1.basic-tikv-peer.tidb.svc:20160",
                    "0.0.0.0:20180",
                ),
                store(3, "basic-tikv-2.basic-tikv-peer.tidb.svc:20160", ""),
            ],
            None,
        );
        let s = |kv: &[(&str, &str)]| m.store_of_sample(&labels(kv));
        assert_eq!(s(&[("instance", "basic-tikv-0")]), Some(1));
        assert_eq!(
            s(&[
                ("instance", "basic-tikv-1"),
                ("kubernetes_namespace", "tidb")
            ]),
            Some(2)
        );
        // Prometheus Operator: instance is the pod IP, the pod label names the pod.
        assert_eq!(
            s(&[("instance", "10.244.1.7:20180"), ("pod", "basic-tikv-2")]),
            Some(3)
        );
        assert_eq!(s(&[("kubernetes_pod_name", "basic-tikv-2")]), Some(3));
        // Address host + status port (from 0.0.0.0:20180, or TiKV's default without one).
        assert_eq!(
            s(&[("instance", "basic-tikv-0.basic-tikv-peer.tidb.svc:20180")]),
            Some(1)
        );
        assert_eq!(
            s(&[("instance", "basic-tikv-2.basic-tikv-peer.tidb.svc:20180")]),
            Some(3)
        );
        // 0.0.0.0:20180 is every store's: it names none.
        assert_eq!(s(&[("instance", "0.0.0.0:20180")]), None);
        // The same pod name in another namespace is another cluster's.
        assert_eq!(
            s(&[
                ("instance", "basic-tikv-0"),
                ("kubernetes_namespace", "other")
            ]),
            None
        );
        assert_eq!(m.store_of_pod("basic-tikv-1", Some("tidb")), Some(2));
        assert_eq!(m.store_of_pod("basic-tikv-1", Some("prod")), None);
        assert_eq!(m.store_of_pod("basic-pd-0", None), None);
    }

    #[test]
    fn explicit_store_label_and_the_override_rule() {
        let rule = MappingRule::new("node", r"tikv-node-(\d+)\.example").unwrap();
        let m = StoreMatcher::new(
            &[
                store(4, "10.0.0.4:20160", "10.0.0.4:20180"),
                store(5, "10.0.0.5:20160", "10.0.0.5:20180"),
            ],
            Some(rule),
        );
        let s = |kv: &[(&str, &str)]| m.store_of_sample(&labels(kv));
        assert_eq!(
            s(&[("store", "5"), ("instance", "10.0.0.4:20180")]),
            Some(5)
        );
        // An unknown store id falls through to the other rules.
        assert_eq!(
            s(&[("store", "9"), ("instance", "10.0.0.4:20180")]),
            Some(4)
        );
        // The rule's capture group is an id here; anchored: a partial match is no match.
        assert_eq!(s(&[("node", "tikv-node-4.example")]), Some(4));
        assert_eq!(s(&[("node", "x-tikv-node-4.example")]), None);
        assert!(m.labels().contains(&"node".to_owned()));
        assert!(MappingRule::new("x", "(").is_err());
    }

    #[test]
    fn containers_match_by_any_of_their_names() {
        let m = StoreMatcher::new(
            &[
                store(1, "tikv0:20160", "tikv0:20180"),
                store(2, "172.18.0.7:20160", "172.18.0.7:20180"),
                store(5, "127.0.0.1:20160", ""),
                store(6, "127.0.0.1:20161", ""),
            ],
            None,
        );
        let n =
            |v: &[&str]| m.store_of_names(&v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>());
        assert_eq!(n(&["tikv0"]), Some(1));
        assert_eq!(n(&["c", "172.18.0.7"]), Some(2));
        assert_eq!(n(&["TIKV0"]), Some(1), "DNS names are case-insensitive");
        assert_eq!(n(&["127.0.0.1"]), None, "shared by two stores");
        assert_eq!(n(&["tikv0", "172.18.0.7"]), None, "names two stores");
        assert_eq!(n(&["y"]), None);
    }
}
