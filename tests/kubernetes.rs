//! The Kubernetes manifests under `deploy/kubernetes/`: the kustomize base renders, every core
//! object passes `kubernetes-validate --strict` (oldest and newest bundled Kubernetes), the
//! Prometheus Operator objects pass their CRD schemas (`tests/data/k8s-crds/validate.py`), the
//! PrometheusRule holds exactly the groups of `alerts/*.rules.yml` and passes `promtool check
//! rules`, the dashboard ConfigMap holds the shipped dashboard, the objects select each other,
//! the pod is hardened, and its config is one the real binary accepts. The same for the
//! optional node agents (`deploy/kubernetes/node-logs`: DaemonSet, PodMonitor), whose pods read
//! the node's `/var/log/pods` read-only and nothing else, under the watcher's job.
//!
//! Needs `kubectl` (for `kubectl kustomize`, which runs offline; part of this machine kind's
//! image), `promtool` (Debian's `prometheus`) and a Python with `kubernetes-validate`, PyYAML and
//! jsonschema: scripts/test-all.sh makes a venv for it and passes it as `K8S_TEST_PYTHON`.

mod support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use support::cmd::{run, run_ok, show};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The Python that has kubernetes-validate, PyYAML and jsonschema.
fn python() -> PathBuf {
    let p = std::env::var_os("K8S_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| "python3".into());
    let mut check = Command::new(&p);
    check.args(["-c", "import kubernetes_validate, jsonschema, yaml"]);
    let out = run(check, "python check");
    assert!(
        out.status.success(),
        "{p:?} lacks kubernetes-validate/jsonschema/PyYAML: run scripts/test-all.sh (it makes a venv \
         and sets K8S_TEST_PYTHON), or set K8S_TEST_PYTHON\n{}",
        show(&out)
    );
    p
}

/// `kubernetes-validate` of the same venv as `python`.
fn kubernetes_validate(python: &Path) -> PathBuf {
    let beside = python.parent().map(|d| d.join("kubernetes-validate"));
    match beside {
        Some(p) if p.is_file() => p,
        _ => "kubernetes-validate".into(),
    }
}

/// `kubectl kustomize dir`, written to a temp file.
fn render(dir: &Path, out_dir: &Path) -> (PathBuf, Vec<Value>) {
    let mut cmd = Command::new("kubectl");
    cmd.arg("kustomize").arg(dir);
    let out = run_ok(cmd, "kubectl kustomize");
    let text = String::from_utf8(out.stdout).unwrap();
    let file = out_dir.join("all.yaml");
    std::fs::write(&file, &text).unwrap();
    (file, documents(&text))
}

fn documents(text: &str) -> Vec<Value> {
    text.split("\n---\n")
        .filter(|d| !d.trim().is_empty())
        .map(|d| serde_saphyr::from_str(d).unwrap_or_else(|e| panic!("{e}\n{d}")))
        .collect()
}

fn find<'a>(docs: &'a [Value], kind: &str) -> &'a Value {
    let found: Vec<&Value> = docs.iter().filter(|d| d["kind"] == kind).collect();
    assert_eq!(found.len(), 1, "one {kind}: {found:?}");
    found[0]
}

fn base() -> PathBuf {
    root().join("deploy/kubernetes")
}

#[test]
fn generated_manifests_are_current() {
    let mut cmd = Command::new("python3");
    cmd.args(["deploy/kubernetes/generate.py", "--check"]);
    run_ok(
        cmd,
        "generate.py --check (run python3 deploy/kubernetes/generate.py)",
    );
}

#[test]
fn the_base_renders_to_valid_objects_for_old_and_new_kubernetes() {
    let tmp = tempfile::tempdir().unwrap();
    let (file, docs) = render(&base(), tmp.path());
    let mut kinds: Vec<String> = docs
        .iter()
        .map(|d| d["kind"].as_str().unwrap().to_owned())
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "ConfigMap",
            "ConfigMap",
            "Deployment",
            "NetworkPolicy",
            "PrometheusRule",
            "Service",
            "ServiceAccount",
            "ServiceMonitor"
        ]
    );
    let stdout = assert_valid(
        &file,
        &[
            "serviceaccount/tikv-health-exporter",
            "deployment/tikv-health-exporter",
            "service/tikv-health-exporter",
            "networkpolicy/tikv-health-exporter",
            "configmap/tikv-health-exporter-dashboard",
        ],
    );
    assert!(
        stdout.contains("ok   ") && stdout.contains("PrometheusRule/tikv-health-exporter"),
        "{stdout}"
    );
    assert!(
        stdout.contains("ServiceMonitor/tikv-health-exporter"),
        "{stdout}"
    );
    assert!(stdout.contains("2 checked, 0 invalid"), "{stdout}");
}

/// What both pods share: no service-account token, RuntimeDefault seccomp, one container
/// without privilege escalation or capabilities on a read-only root filesystem, with requests,
/// a memory limit and the readiness and health probes. Returns the container.
fn assert_locked_down(spec: &Value) -> &Value {
    assert_eq!(spec["automountServiceAccountToken"], false);
    assert_eq!(
        spec["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    let containers = spec["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 1);
    let c = &containers[0];
    let sc = &c["securityContext"];
    assert_eq!(sc["allowPrivilegeEscalation"], false);
    assert_eq!(sc["readOnlyRootFilesystem"], true);
    assert_eq!(sc["capabilities"]["drop"], serde_json::json!(["ALL"]));
    assert!(sc["capabilities"]["add"].is_null() && sc["privileged"].is_null());
    assert!(c["resources"]["requests"]["cpu"].is_string());
    assert!(c["resources"]["requests"]["memory"].is_string());
    assert!(c["resources"]["limits"]["memory"].is_string());
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/-/ready");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/-/healthy");
    c
}

/// `kubernetes-validate --strict` for the oldest and newest Kubernetes it bundles schemas for,
/// which each of `objects` (`kind/name`) must pass, then the CRD validator: both must pass.
/// Returns what the CRD validator printed.
fn assert_valid(file: &Path, objects: &[&str]) -> String {
    let py = python();
    let mut cmd = Command::new(kubernetes_validate(&py));
    cmd.args(["--strict", "-k", "1.25", "-k", "1.37"]).arg(file);
    let out = run_ok(cmd, "kubernetes-validate");
    let stdout = String::from_utf8_lossy(&out.stdout);
    for object in objects {
        for version in ["1.25", "1.37"] {
            assert!(
                stdout.contains(&format!(
                    "passed for resource {object} against version {version}"
                )),
                "{object} {version}\n{}",
                show(&out)
            );
        }
    }
    assert!(!stdout.contains("ERROR"), "{}", show(&out));
    let mut cmd = Command::new(&py);
    cmd.arg("tests/data/k8s-crds/validate.py").arg(file);
    let out = run_ok(cmd, "validate.py");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The validators are not rubber stamps: a base with a typo'd field in the Deployment and the
/// ServiceMonitor fails both.
#[test]
fn the_validators_reject_a_broken_base() {
    let tmp = tempfile::tempdir().unwrap();
    let broken = tmp.path().join("broken");
    std::fs::create_dir(&broken).unwrap();
    for entry in std::fs::read_dir(base()).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, broken.join(path.file_name().unwrap())).unwrap();
        }
    }
    let edit = |name: &str, from: &str, to: &str| {
        let p = broken.join(name);
        let text = std::fs::read_to_string(&p).unwrap();
        assert!(text.contains(from), "{name}: {from}");
        std::fs::write(&p, text.replacen(from, to, 1)).unwrap();
    };
    edit(
        "deployment.yaml",
        "readOnlyRootFilesystem: true",
        "readOnlyRootFilesytem: true",
    );
    edit("servicemonitor.yaml", "interval: 15s", "intervall: 15s");
    let (file, _) = render(&broken, tmp.path());
    let py = python();
    let mut cmd = Command::new(kubernetes_validate(&py));
    cmd.arg("--strict").arg(&file);
    let out = run(cmd, "kubernetes-validate");
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("readOnlyRootFilesytem"),
        "{}",
        show(&out)
    );
    let mut cmd = Command::new(&py);
    cmd.arg("tests/data/k8s-crds/validate.py").arg(&file);
    let out = run(cmd, "validate.py");
    assert_eq!(out.status.code(), Some(1), "{}", show(&out));
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("unknown field 'intervall'"),
        "{}",
        show(&out)
    );
}

/// The PrometheusRule holds exactly the groups of the shipped rule files, and they pass promtool.
#[test]
fn the_prometheus_rule_holds_the_shipped_rule_groups() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, docs) = render(&base(), tmp.path());
    let rule = find(&docs, "PrometheusRule");
    let mut shipped: Vec<Value> = Vec::new();
    let mut names: Vec<String> = std::fs::read_dir(root().join("alerts"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".rules.yml"))
        .collect();
    names.sort();
    assert!(!names.is_empty());
    for name in &names {
        let file: Value = serde_saphyr::from_str(&read(&format!("alerts/{name}"))).unwrap();
        shipped.extend(file["groups"].as_array().unwrap().iter().cloned());
    }
    assert_eq!(rule["spec"]["groups"].as_array().unwrap(), &shipped);
    assert!(shipped.len() >= 3, "{}", shipped.len());
    // The spec is a normal rule file.
    let spec = tmp.path().join("spec.yml");
    std::fs::write(&spec, serde_json::to_string(&rule["spec"]).unwrap()).unwrap();
    let mut cmd = Command::new("promtool");
    cmd.args(["check", "rules"]).arg(&spec);
    let out = run_ok(cmd, "promtool check rules");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("SUCCESS"),
        "{}",
        show(&out)
    );
    // The rules' own-job selector matches the Service name, which is the job under a
    // ServiceMonitor (Prometheus Operator default).
    let service = find(&docs, "Service")["metadata"]["name"]
        .as_str()
        .unwrap()
        .to_owned();
    let exprs = serde_json::to_string(&rule["spec"]).unwrap();
    assert!(
        exprs.contains(r#"job=~\".*tikv[-_]health[-_]exporter.*\""#),
        "{exprs}"
    );
    assert!(
        regex::Regex::new("^.*tikv[-_]health[-_]exporter.*$")
            .unwrap()
            .is_match(&service)
    );
}

#[test]
fn the_dashboard_config_map_holds_the_shipped_dashboard_for_the_grafana_sidecar() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, docs) = render(&base(), tmp.path());
    let cm = docs
        .iter()
        .find(|d| {
            d["kind"] == "ConfigMap" && d["metadata"]["name"] == "tikv-health-exporter-dashboard"
        })
        .expect("dashboard ConfigMap");
    assert_eq!(cm["metadata"]["labels"]["grafana_dashboard"], "1");
    let held = cm["data"]["tikv-health-exporter.json"].as_str().unwrap();
    assert_eq!(held, read("dashboards/tikv-health-exporter.json"));
    let rendered: usize = std::fs::read_to_string(tmp.path().join("all.yaml"))
        .unwrap()
        .len();
    // Client-side `kubectl apply` stores the object in an annotation limited to 256 KiB.
    assert!(held.len() < 262_144 && rendered > held.len());
}

/// Service → pods, ServiceMonitor → Service port, the hardened pod, and a config the binary accepts.
#[test]
fn the_objects_fit_together_and_the_pod_is_hardened() {
    let tmp = tempfile::tempdir().unwrap();
    let (_, docs) = render(&base(), tmp.path());
    let deployment = find(&docs, "Deployment");
    let service = find(&docs, "Service");
    let monitor = find(&docs, "ServiceMonitor");
    let pod = &deployment["spec"]["template"];
    let pod_labels = pod["metadata"]["labels"].as_object().unwrap();
    for (k, v) in service["spec"]["selector"].as_object().unwrap() {
        assert_eq!(pod_labels.get(k), Some(v), "Service selector {k}");
    }
    for (k, v) in monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap()
    {
        assert_eq!(
            service["metadata"]["labels"].get(k),
            Some(v),
            "ServiceMonitor selector {k}"
        );
    }
    let port = monitor["spec"]["endpoints"][0]["port"].as_str().unwrap();
    assert!(
        service["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == port),
        "ServiceMonitor port {port}"
    );
    assert_eq!(monitor["spec"]["endpoints"][0]["path"], "/metrics");
    assert_eq!(
        monitor["metadata"]["labels"]["release"],
        "kube-prometheus-stack"
    );

    let spec = &pod["spec"];
    let c = assert_locked_down(spec);
    assert_eq!(spec["securityContext"]["runAsNonRoot"], true);
    assert_eq!(spec["securityContext"]["runAsUser"], 65534);

    // The config volume is the generated ConfigMap (name with its content hash), mounted where
    // the args point, and its config.yml is accepted by the real binary.
    let volumes = spec["volumes"].as_array().unwrap();
    let config_volume = volumes.iter().find(|v| v["name"] == "config").unwrap();
    let cm_name = config_volume["configMap"]["name"].as_str().unwrap();
    assert!(
        cm_name.starts_with("tikv-health-exporter-config-"),
        "{cm_name}"
    );
    let cm = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == cm_name)
        .expect("config ConfigMap");
    let mount = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "config")
        .unwrap();
    assert_eq!(mount["readOnly"], true);
    let arg = format!(
        "--config.file={}/config.yml",
        mount["mountPath"].as_str().unwrap()
    );
    assert!(
        c["args"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == arg.as_str()),
        "{arg}"
    );
    let config = tmp.path().join("config.yml");
    std::fs::write(&config, cm["data"]["config.yml"].as_str().unwrap()).unwrap();
    let mut cmd = Command::new(support::exporter::binary());
    cmd.arg("check-config").arg(&config);
    let out = run_ok(cmd, "check-config");
    let effective = String::from_utf8_lossy(&out.stdout);
    assert!(
        effective.contains("http://basic-pd.tidb-cluster.svc:2379"),
        "{effective}"
    );
    assert!(
        effective.contains("/var/lib/tikv-health-exporter/state.json"),
        "{effective}"
    );
    // The state file lives on the one writable volume.
    let state = c["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "state")
        .unwrap();
    assert_eq!(state["mountPath"], "/var/lib/tikv-health-exporter");
    // Scrapes of that port are allowed in.
    let policy = find(&docs, "NetworkPolicy");
    assert_eq!(
        policy["spec"]["ingress"][0]["ports"][0]["port"],
        c["ports"][0]["name"]
    );
}

/// The optional node agents (`deploy/kubernetes/node-logs`): valid objects (core kinds for old
/// and new Kubernetes, the PodMonitor against its CRD); a DaemonSet that reads the node's
/// `/var/log/pods` read-only as UID 0 with nothing else (no capability, no writable volume);
/// a PodMonitor that selects the agents (and not the watcher) on a declared port under the
/// watcher's job; a config the binary accepts, that follows a pattern under the mount and
/// evaluates no invariant.
#[test]
fn the_node_agents_render_valid_hardened_and_under_the_watchers_job() {
    let tmp = tempfile::tempdir().unwrap();
    let (file, docs) = render(&base().join("node-logs"), tmp.path());
    let mut kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "ConfigMap",
            "DaemonSet",
            "NetworkPolicy",
            "PodMonitor",
            "ServiceAccount"
        ]
    );
    let daemonset = find(&docs, "DaemonSet");
    let cm_name = daemonset["spec"]["template"]["spec"]["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find_map(|v| v["configMap"]["name"].as_str())
        .unwrap()
        .to_owned();
    assert!(
        cm_name.starts_with("tikv-health-exporter-node-logs-config-"),
        "{cm_name}"
    );
    let stdout = assert_valid(
        &file,
        &[
            "serviceaccount/tikv-health-exporter-node-logs",
            "daemonset/tikv-health-exporter-node-logs",
            "networkpolicy/tikv-health-exporter-node-logs",
            &format!("configmap/{cm_name}"),
        ],
    );
    assert!(
        stdout.contains("PodMonitor/tikv-health-exporter-node-logs")
            && stdout.contains("1 checked, 0 invalid"),
        "{stdout}"
    );

    let pod = &daemonset["spec"]["template"];
    let spec = &pod["spec"];
    let c = assert_locked_down(spec);
    // kubelet's runtimes write the files root-owned, mode 0640: read as their owner.
    assert_eq!(spec["securityContext"]["runAsUser"], 0);
    assert!(spec["hostNetwork"].is_null() && spec["hostPID"].is_null());
    let volumes = spec["volumes"].as_array().unwrap();
    let host: Vec<&Value> = volumes
        .iter()
        .filter(|v| !v["hostPath"].is_null())
        .collect();
    assert_eq!(host.len(), 1, "{volumes:?}");
    assert_eq!(host[0]["hostPath"]["path"], "/var/log/pods");
    let mounts = c["volumeMounts"].as_array().unwrap();
    assert!(
        mounts.iter().all(|m| m["readOnly"] == true),
        "nothing writable: {mounts:?}"
    );
    let logs_mount = mounts
        .iter()
        .find(|m| m["name"] == host[0]["name"])
        .unwrap();
    assert_eq!(logs_mount["mountPath"], "/var/log/pods");

    // The PodMonitor scrapes the agents, and only them, under the watcher's job.
    let monitor = find(&docs, "PodMonitor");
    let pod_labels = pod["metadata"]["labels"].as_object().unwrap();
    let selector = monitor["spec"]["selector"]["matchLabels"]
        .as_object()
        .unwrap();
    for (k, v) in selector {
        assert_eq!(pod_labels.get(k), Some(v), "PodMonitor selector {k}");
    }
    let (watcher_docs, watcher_service) = {
        let out = tmp.path().join("base");
        std::fs::create_dir(&out).unwrap();
        let (_, d) = render(&base(), &out);
        let name = find(&d, "Service")["metadata"]["name"]
            .as_str()
            .unwrap()
            .to_owned();
        (d, name)
    };
    let watcher_pod = &find(&watcher_docs, "Deployment")["spec"]["template"]["metadata"]["labels"];
    assert!(
        selector.iter().any(|(k, v)| watcher_pod.get(k) != Some(v)),
        "the PodMonitor must not scrape the watcher twice"
    );
    let watcher_selects = find(&watcher_docs, "Service")["spec"]["selector"]
        .as_object()
        .unwrap()
        .iter()
        .all(|(k, v)| pod_labels.get(k) == Some(v));
    assert!(
        !watcher_selects,
        "the watcher's Service must not select the agents"
    );
    let job_label = monitor["spec"]["jobLabel"].as_str().unwrap();
    assert_eq!(pod_labels[job_label], watcher_service.as_str());
    let endpoint = &monitor["spec"]["podMetricsEndpoints"][0];
    assert_eq!(endpoint["port"], c["ports"][0]["name"]);
    assert_eq!(endpoint["path"], "/metrics");
    assert_eq!(
        monitor["metadata"]["labels"]["release"],
        "kube-prometheus-stack"
    );
    let policy = find(&docs, "NetworkPolicy");
    assert_eq!(
        policy["spec"]["ingress"][0]["ports"][0]["port"],
        c["ports"][0]["name"]
    );

    // Its config: accepted, a pattern under the mount, no invariant evaluated.
    let cm = docs
        .iter()
        .find(|d| d["kind"] == "ConfigMap" && d["metadata"]["name"] == cm_name.as_str())
        .unwrap();
    let config = tmp.path().join("config.yml");
    std::fs::write(&config, cm["data"]["config.yml"].as_str().unwrap()).unwrap();
    let mut cmd = Command::new(support::exporter::binary());
    cmd.arg("check-config").arg(&config);
    let out = run_ok(cmd, "check-config");
    let effective = String::from_utf8_lossy(&out.stdout);
    assert!(
        effective.contains("- path: /var/log/pods/tidb-cluster_basic-tikv-*_*/tikv/*.log"),
        "{effective}"
    );
    let (_, evaluated) = effective
        .split_once("# Effective invariants")
        .expect("check-config lists the invariants");
    assert!(!evaluated.contains("severity="), "{evaluated}");
    assert!(
        c["args"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == "--config.file=/etc/tikv-health-exporter/config.yml")
    );
}
