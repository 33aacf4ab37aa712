//! Which PD store a container belongs to: the explicit `logs.docker.stores` entry, else the
//! one store whose address is one of the container's names or addresses (the shared rules of
//! [`StoreMatcher`], as for Prometheus samples).

use std::collections::BTreeMap;

use bollard::models::ContainerInspectResponse;

use crate::domain::{Store, StoreMatcher};

/// Every name and address a container answers to: its name, hostname, network aliases and
/// DNS names, and IP addresses.
pub(crate) fn container_addresses(name: &str, info: &ContainerInspectResponse) -> Vec<String> {
    let mut out = vec![name.to_owned()];
    if let Some(h) = info.config.as_ref().and_then(|c| c.hostname.clone()) {
        out.push(h);
    }
    let networks = info
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.as_ref());
    for ep in networks.into_iter().flat_map(|n| n.values()) {
        out.extend(ep.aliases.iter().flatten().cloned());
        out.extend(ep.dns_names.iter().flatten().cloned());
        out.extend(ep.ip_address.clone());
        out.extend(ep.global_ipv6_address.clone());
    }
    out.retain(|a| !a.is_empty());
    out.sort();
    out.dedup();
    out
}

/// The PD store a container belongs to: the explicit mapping, else the one store whose
/// address or status address (or its host, or a fully qualified host's first label) is one of
/// the container's names or addresses; `""` when none or several match.
pub(crate) fn map_store(
    name: &str,
    addresses: &[String],
    explicit: &BTreeMap<String, String>,
    stores: &[Store],
) -> String {
    if let Some(s) = explicit.get(name) {
        return s.clone();
    }
    StoreMatcher::new(stores, None)
        .store_of_names(addresses)
        .map_or_else(String::new, |id| id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::host_of;

    fn store(id: u64, address: &str, status: &str) -> Store {
        Store::at(id, address, status)
    }

    #[test]
    fn containers_map_to_stores_by_host() {
        assert_eq!(host_of("tikv-1:20160"), "tikv-1");
        assert_eq!(host_of("http://[::1]:20180/x"), "::1");
        assert_eq!(host_of("10.0.0.5:20160"), "10.0.0.5");
        assert_eq!(host_of("tikv-1"), "tikv-1");
        let stores = [
            store(1, "tikv0:20160", "tikv0:20180"),
            store(2, "172.18.0.7:20160", "172.18.0.7:20180"),
            store(4, "tikv-2.tikv-peer.ns.svc:20160", ""),
            store(5, "127.0.0.1:20160", ""),
            store(6, "127.0.0.1:20161", ""),
        ];
        let none = BTreeMap::new();
        let addrs = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(map_store("tikv0", &addrs(&["tikv0"]), &none, &stores), "1");
        assert_eq!(
            map_store("c", &addrs(&["c", "172.18.0.7"]), &none, &stores),
            "2"
        );
        assert_eq!(
            map_store("tikv-2", &addrs(&["tikv-2"]), &none, &stores),
            "4"
        );
        // Several stores behind one address: ambiguous, so unmapped.
        assert_eq!(map_store("x", &addrs(&["127.0.0.1"]), &none, &stores), "");
        assert_eq!(map_store("y", &addrs(&["y"]), &none, &stores), "");
        let explicit = BTreeMap::from([("y".to_owned(), "9".to_owned())]);
        assert_eq!(map_store("y", &addrs(&["y"]), &explicit, &stores), "9");
    }
}
