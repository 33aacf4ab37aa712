//! Which pod a container log file belongs to, read from the path kubelet gives it (project
//! reference `kubernetes.md` §1.4, kubelet `pkg/kubelet/kuberuntime/helpers.go`, `legacy.go`):
//!
//! - `<podLogsDir>/<namespace>_<pod>_<pod uid>/<container>/<restart count>.log`
//!   (`/var/log/pods`, the files themselves);
//! - `/var/log/containers/<pod>_<namespace>_<container>-<container id>.log` (kubelet's
//!   symlinks to them).
//!
//! Namespaces (DNS labels) and pod names (DNS subdomains) never hold `_`, so the names split
//! unambiguously. The store a pod runs is then [`crate::domain::StoreMatcher::store_of_pod`]'s
//! business (TiDB Operator pod names, as for Prometheus samples).

use std::path::Path;

/// The pod (and its namespace) of a container log file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PodRef<'a> {
    /// The pod's namespace.
    pub namespace: &'a str,
    /// The pod's name.
    pub pod: &'a str,
}

/// The pod a log file at `path` belongs to, if its path has one of kubelet's layouts.
pub fn pod_of(path: &Path) -> Option<PodRef<'_>> {
    let pod_dir = path.parent()?.parent()?.file_name()?.to_str()?;
    if let Some([namespace, pod, uid]) = split3(pod_dir)
        && dns_name(namespace)
        && dns_name(pod)
        && uid.len() >= 8
        && uid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
    {
        return Some(PodRef { namespace, pod });
    }
    let name = path.file_name()?.to_str()?.strip_suffix(".log")?;
    let [pod, namespace, container_id] = split3(name)?;
    let (container, id) = container_id.rsplit_once('-')?;
    (dns_name(namespace)
        && dns_name(pod)
        && !container.is_empty()
        && !id.is_empty()
        && id.bytes().all(|b| b.is_ascii_hexdigit()))
    .then_some(PodRef { namespace, pod })
}

/// `a_b_c` → `[a, b, c]`; anything else (more or fewer `_`) → `None`.
fn split3(s: &str) -> Option<[&str; 3]> {
    let mut it = s.split('_');
    let parts = [it.next()?, it.next()?, it.next()?];
    it.next().is_none().then_some(parts)
}

/// Lower-case letters, digits, `-` and `.`, starting and ending with a letter or digit (the
/// characters of Kubernetes object names).
fn dns_name(s: &str) -> bool {
    let ok = |b: u8| b.is_ascii_lowercase() || b.is_ascii_digit();
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 253
        && ok(b[0])
        && ok(b[b.len() - 1])
        && b.iter().all(|&c| ok(c) || c == b'-' || c == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(path: &str) -> Option<(String, String)> {
        pod_of(Path::new(path)).map(|p| (p.namespace.to_owned(), p.pod.to_owned()))
    }

    #[test]
    fn pods_come_from_kubelet_paths() {
        let want = Some(("tidb-cluster".to_owned(), "basic-tikv-0".to_owned()));
        assert_eq!(
            pod(
                "/var/log/pods/tidb-cluster_basic-tikv-0_6f1c2a8e-1b1d-4f43-9d53-3c1e2a9f0b11/tikv/0.log"
            ),
            want
        );
        // Static pods use the config hash instead of the API uid.
        assert_eq!(
            pod("/var/log/pods/tidb-cluster_basic-tikv-0_0a1b2c3d4e5f/tikv/3.log"),
            want
        );
        assert_eq!(
            pod(&format!(
                "/var/log/containers/basic-tikv-0_tidb-cluster_tikv-{}.log",
                "ab12".repeat(16)
            )),
            want
        );
        // TiDB Operator v2 pod names.
        assert_eq!(
            pod("/var/log/pods/db_tikv-tikv-ab12cd_3c1e2a9f-0b11/tikv/0.log"),
            Some(("db".to_owned(), "tikv-tikv-ab12cd".to_owned()))
        );
        for other in [
            "/var/log/tikv/tikv.log",
            "/data/my_app_logs/x/0.log",
            "/var/log/pods/Tidb_basic-tikv-0_u/tikv/0.log",
            "/var/log/pods/tidb_basic_tikv_0_u/tikv/0.log",
            "/var/log/containers/basic-tikv-0_tidb-cluster_tikv.log",
            "0.log",
        ] {
            assert_eq!(pod(other), None, "{other}");
        }
    }
}
