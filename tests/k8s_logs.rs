//! Kubernetes container logs by pattern: the real exporter follows
//! `<pods>/*_basic-tikv-*_*/tikv/*.log` (kubelet's `/var/log/pods` layout) while the test writes
//! the files the way kubelet and containerd do (`support::kubelet`: CRI records with `P`/`F`
//! pieces and stdout between them, rotation by rename with later gzip, container restarts,
//! garbage collection, pods deleted and re-created with a new uid). A fake PD lists the stores at
//! TiDB Operator addresses (`basic-tikv-<n>.basic-tikv-peer.tidb-cluster.svc:20160`), so each
//! file maps to a store through the pod name in its path.
//!
//! The shipped node agent (`deploy/kubernetes/node-logs`) runs with its own config and its
//! PodMonitor's relabeling against a real Prometheus, next to a cluster watcher.
//!
//! What is written is counted exactly once per store (lines by level, malformed lines,
//! leadership events: never lost, never doubled, nothing from a `.gz`), and the series stay one
//! per (pattern, store) over any pod churn.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use support::docker::leader_line;
use support::exporter::{Exporter, sample, samples};
use support::fake_pd::{FakePd, StoreSpec};
use support::kubelet::{ContainerLog, PodLogs};
use support::prometheus::{RealPrometheus, render_config_jobs};
use support::wait::PATIENCE;

const NS: &str = "tidb-cluster";
const SOURCE: &str = "file:tikv";
const WARN: &str =
    r#"[2026/12/01 10:00:00.000 +00:00] [WARN] [store.rs:1] ["disk io is slow"] [duration=1.5s]"#;
/// The operator's start script echoes its command to stdout: not a log line (malformed).
const SHELL: &str = "+ exec /tikv-server --pd=http://basic-pd:2379 --config=/etc/tikv/tikv.toml";

/// What one store's series count: lines by level, malformed lines, `became_leader` events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Tally {
    info: u64,
    warn: u64,
    malformed: u64,
    leaders: u64,
}

/// A store at the address TiDB Operator v1 gives pod `basic-tikv-<ordinal>`.
fn operator_store(id: u64, ordinal: u64) -> StoreSpec {
    let host = format!("basic-tikv-{ordinal}.basic-tikv-peer.{NS}.svc");
    StoreSpec {
        address: format!("{host}:20160"),
        status_address: format!("{host}:20180"),
        ..StoreSpec::tikv(id)
    }
}

/// The exporter following the pattern under `pods` (PD polled every 200 ms).
fn start(pd: &FakePd, pods: &Path, dir: &Path) -> Exporter {
    let cfg = dir.join("exporter.yml");
    std::fs::write(
        &cfg,
        format!(
            "logs:\n  poll_interval: 50ms\n  files:\n    - path: '{}/*_basic-tikv-*_*/tikv/*.log'\n      name: tikv\n",
            pods.display()
        ),
    )
    .unwrap();
    Exporter::start(&[
        "--pd.endpoints".into(),
        pd.url(),
        "--poll-interval".into(),
        "200ms".into(),
        "--config.file".into(),
        cfg.display().to_string(),
    ])
}

/// Writes `n` lines as TiKV under containerd: every fourth a long leader line split into `P`
/// pieces with the start script's stdout line between its first two, the others a warning, a
/// leader line and a stdout line. Adds what they count to `want`.
fn write_batch(log: &mut ContainerLog, n: u64, want: &mut Tally) {
    for i in 0..n {
        match i % 4 {
            0 => {
                let line = leader_line(i, " [tag=split-into-pieces]");
                let (first, rest) = line.split_at(40);
                log.record("stderr", true, first);
                log.record("stdout", false, SHELL);
                log.line("stderr", rest, 30);
                want.info += 1;
                want.leaders += 1;
                want.malformed += 1;
            }
            1 => {
                log.line("stderr", WARN, 16 * 1024);
                want.warn += 1;
            }
            2 => {
                log.line("stderr", &leader_line(i, ""), 16 * 1024);
                want.info += 1;
                want.leaders += 1;
            }
            _ => {
                log.line("stdout", SHELL, 16 * 1024);
                want.malformed += 1;
            }
        }
    }
}

/// What the exporter counts for `store`.
fn exported(m: &str, store: &str) -> Tally {
    let get = |name: &str, extra: &[(&str, &str)]| {
        let mut labels = vec![("source", SOURCE), ("store", store)];
        labels.extend_from_slice(extra);
        sample(m, name, &labels).unwrap_or(0.0) as u64
    };
    Tally {
        info: get("tikv_log_lines_total", &[("level", "INFO")]),
        warn: get("tikv_log_lines_total", &[("level", "WARN")]),
        malformed: get("tikv_log_malformed_lines_total", &[]),
        leaders: get(
            "tikv_leadership_changes_total",
            &[("event", "became_leader")],
        ),
    }
}

/// The `store` labels of the pattern's series of `metric`.
fn stores_of(m: &str, metric: &str) -> BTreeSet<String> {
    samples(m)
        .into_iter()
        .filter(|(n, l, _)| n == metric && l.iter().any(|(k, v)| k == "source" && v == SOURCE))
        .filter_map(|(_, l, _)| l.into_iter().find(|(k, _)| k == "store").map(|(_, v)| v))
        .collect()
}

fn followed(m: &str, store: &str) -> Option<f64> {
    sample(
        m,
        "tikv_log_followed_files",
        &[("source", SOURCE), ("store", store)],
    )
}

/// Waits until every store counts exactly what was written for it.
fn wait_counts(e: &Exporter, want: &BTreeMap<&str, Tally>, what: &str) -> String {
    e.wait_metrics(what, PATIENCE, |m| {
        want.iter().all(|(store, t)| exported(m, store) == *t)
    })
}

#[test]
fn pods_that_come_go_rotate_and_restart_are_counted_once_per_store() {
    let tmp = tempfile::tempdir().unwrap();
    let pods = PodLogs::new(&tmp.path().join("pods"));
    // Before the exporter starts, pod 0 has logged already: files found at the start are read
    // from their end, like a single followed file.
    let p0 = pods.start_pod(NS, "basic-tikv-0");
    let mut c0 = p0.container("tikv");
    write_batch(&mut c0, 8, &mut Tally::default());
    // Another namespace's pod of the same name is no store of this cluster: store "".
    let other = pods.start_pod("other", "basic-tikv-0");
    let mut co = other.container("tikv");
    // Neither PD's pod nor another container of a TiKV pod match the pattern.
    let mut pd_log = pods.start_pod(NS, "basic-pd-0").container("pd");
    let mut sidecar = p0.container("slowlog");
    let pd = FakePd::with_live_stores(&[
        operator_store(1, 0),
        operator_store(2, 1),
        operator_store(3, 2),
    ]);
    let e = start(&pd, &pods.root, tmp.path());
    e.wait_metrics("pod 0 and the other pod followed", PATIENCE, |m| {
        followed(m, "1") == Some(1.0) && followed(m, "") == Some(1.0)
    });

    let mut want: BTreeMap<&str, Tally> = [
        ("", Tally::default()),
        ("1", Tally::default()),
        ("2", Tally::default()),
        ("3", Tally::default()),
    ]
    .into();
    let mut ignored = Tally::default();
    write_batch(&mut c0, 20, want.get_mut("1").unwrap());
    write_batch(&mut co, 4, want.get_mut("").unwrap());
    write_batch(&mut pd_log, 8, &mut ignored);
    write_batch(&mut sidecar, 8, &mut ignored);
    // A pod that starts later is read from its first line.
    let p1 = pods.start_pod(NS, "basic-tikv-1");
    let mut c1 = p1.container("tikv");
    write_batch(&mut c1, 12, want.get_mut("2").unwrap());
    wait_counts(&e, &want, "the first lines of pods 0, 1 and the other pod");

    // Kubelet rotates pod 0's log three times; a line straddles the first rotation (its P piece
    // in the renamed file, its F in the new one); each later rotation gzips the file the one
    // before renamed. Kubelet looks at most every containerLogMonitorInterval (10 s): the
    // exporter has read each file by the next rotation, here as soon as it counted it all.
    write_batch(&mut c0, 10, want.get_mut("1").unwrap());
    let straddling = leader_line(1000, " [tag=straddles-the-rotation]");
    let (first, rest) = straddling.split_at(50);
    c0.rotate(Some(("stderr", first, rest)));
    want.get_mut("1").unwrap().info += 1;
    want.get_mut("1").unwrap().leaders += 1;
    for round in 0..3 {
        write_batch(&mut c0, 10, want.get_mut("1").unwrap());
        wait_counts(
            &e,
            &want,
            &format!("pod 0's lines after rotation {}", round + 1),
        );
        if round < 2 {
            c0.rotate(None);
        }
    }
    let names: Vec<String> = std::fs::read_dir(p0.dir.join("tikv"))
        .unwrap()
        .map(|d| d.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        names.iter().filter(|n| n.ends_with(".gz")).count() >= 1
            && names.iter().any(|n| n.starts_with("0.log.2026")),
        "rotated and gzipped files: {names:?}"
    );

    // Pod 1's container dies in the middle of a line (no newline: a P record no F follows) and
    // restarts into 1.log: the same store's series goes on. The unfinished line is counted
    // once its file is closed: when container GC removes 0.log.
    c1.record("stderr", true, &leader_line(2000, " [tag=last-words]"));
    c1.restart();
    assert_eq!(c1.restart_count(), 1);
    write_batch(&mut c1, 12, want.get_mut("2").unwrap());
    wait_counts(&e, &want, "pod 1 after its container restarted");
    c1.remove_run(0);
    want.get_mut("2").unwrap().info += 1;
    want.get_mut("2").unwrap().leaders += 1;

    // Pod 2 starts, is deleted right after its last lines and is re-created (new uid, a new
    // directory, restart count 0 again): one series for store 3 throughout.
    let p2 = pods.start_pod(NS, "basic-tikv-2");
    let mut c2 = p2.container("tikv");
    write_batch(&mut c2, 8, want.get_mut("3").unwrap());
    wait_counts(
        &e,
        &want,
        "pod 2 followed (and pod 1's last line once 0.log is closed)",
    );
    write_batch(&mut c2, 4, want.get_mut("3").unwrap());
    p2.delete();
    let p2 = pods.start_pod(NS, "basic-tikv-2");
    let mut c2 = p2.container("tikv");
    write_batch(&mut c2, 8, want.get_mut("3").unwrap());
    wait_counts(
        &e,
        &want,
        "pod 2's lines before its deletion and after its re-creation",
    );

    // Files that no longer match are closed after their grace: one live file per pod is left.
    let m = e.wait_metrics("one followed file per pod", PATIENCE, |m| {
        ["", "1", "2", "3"]
            .iter()
            .all(|s| followed(m, s) == Some(1.0))
    });
    for (store, t) in &want {
        assert_eq!(exported(&m, store), *t, "store {store:?}");
    }
    let all: BTreeSet<String> = ["", "1", "2", "3"].iter().map(|s| s.to_string()).collect();
    for metric in [
        "tikv_log_lines_total",
        "tikv_log_malformed_lines_total",
        "tikv_leadership_changes_total",
        "tikv_log_gaps_total",
        "tikv_log_followed_files",
    ] {
        assert_eq!(stores_of(&m, metric), all, "{metric}");
    }
    assert!(
        samples(&m)
            .iter()
            .filter(|(n, _, _)| n == "tikv_log_gaps_total")
            .all(|(_, _, v)| *v == 0.0),
        "nothing lost: {m}"
    );
    assert_eq!(
        sample(&m, "tikv_health_exporter_source_up", &[("source", SOURCE)]),
        Some(1.0)
    );
    let log = e.stderr();
    assert!(
        log.contains("no longer matches; read to its end and closed"),
        "{log}"
    );
}

#[test]
fn a_pod_maps_once_pd_lists_its_store_and_a_gone_store_leaves_no_series() {
    let tmp = tempfile::tempdir().unwrap();
    let pods = PodLogs::new(&tmp.path().join("pods"));
    let pd = FakePd::with_live_stores(&[operator_store(1, 0)]);
    let e = start(&pd, &pods.root, tmp.path());
    e.wait_metrics(
        "the pattern's unmapped series, no file yet",
        PATIENCE,
        |m| {
            followed(m, "") == Some(0.0)
                && sample(m, "tikv_health_exporter_source_up", &[("source", SOURCE)]) == Some(1.0)
        },
    );
    let mut want: BTreeMap<&str, Tally> = [("", Tally::default())].into();

    // A scaled-out TiKV logs before PD lists its store: store "" until then, store 7 after.
    let p3 = pods.start_pod(NS, "basic-tikv-3");
    let mut c3 = p3.container("tikv");
    write_batch(&mut c3, 8, want.get_mut("").unwrap());
    wait_counts(&e, &want, "the new pod's lines, unmapped");
    pd.edit_stores(|s| s.push(operator_store(7, 3).to_json()));
    e.wait_metrics("the pod remapped to store 7", PATIENCE, |m| {
        followed(m, "7") == Some(1.0) && followed(m, "") == Some(0.0)
    });
    want.insert("7", Tally::default());
    write_batch(&mut c3, 8, want.get_mut("7").unwrap());
    wait_counts(&e, &want, "the pod's lines under store 7");

    // Pods of stores PD does not know come and go: they add no series.
    let churn: Vec<_> = (10..14)
        .map(|n| {
            let p = pods.start_pod(NS, &format!("basic-tikv-{n}"));
            write_batch(&mut p.container("tikv"), 4, want.get_mut("").unwrap());
            p
        })
        .collect();
    wait_counts(&e, &want, "the churning pods' lines, unmapped");
    for p in churn {
        p.delete();
    }
    // Store 7 is removed: its pod is deleted and PD no longer lists it.
    p3.delete();
    pd.edit_stores(|s| s.retain(|v| v["store"]["id"] != 7));
    let m = e.wait_metrics("store 7's series dropped, no file left", PATIENCE, |m| {
        followed(m, "") == Some(0.0) && !stores_of(m, "tikv_log_lines_total").contains("7")
    });
    assert_eq!(exported(&m, ""), want[""]);
    for metric in [
        "tikv_log_lines_total",
        "tikv_leadership_changes_total",
        "tikv_log_followed_files",
    ] {
        assert_eq!(
            stores_of(&m, metric),
            BTreeSet::from([String::new()]),
            "{metric}"
        );
    }
}

/// The shipped node agent (`deploy/kubernetes/node-logs`: its config, its PodMonitor's job and
/// metric relabeling) next to a cluster watcher, both scraped by a real Prometheus the way the
/// Prometheus Operator renders the PodMonitor: the agent's per-store log counters join the
/// watcher's store series on (cluster, store) under one job, and only log series come from
/// the agent (a second `tikv_store_info` per store would make the join fail).
#[test]
fn the_shipped_node_agent_joins_the_watchers_store_series_in_prometheus() {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/kubernetes/node-logs");
    let read = |name: &str| std::fs::read_to_string(shipped.join(name)).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let pods = PodLogs::new(&tmp.path().join("pods"));
    let mut c0 = pods.start_pod(NS, "basic-tikv-0").container("tikv");
    let mut c1 = pods.start_pod(NS, "basic-tikv-1").container("tikv");
    let pd = FakePd::with_live_stores(&[operator_store(1, 0), operator_store(2, 1)]);

    // The shipped config, pointed at the fake PD and this node's pod log directory.
    let shipped_config = read("config.yml");
    let config = shipped_config
        .replace("http://basic-pd.tidb-cluster.svc:2379", &pd.url())
        .replace("/var/log/pods/", &format!("{}/", pods.root.display()));
    assert_eq!(config.matches(&pd.url()).count(), 1, "{config}");
    assert!(config.contains(&format!("path: {}/", pods.root.display())));
    let agent_cfg = tmp.path().join("agent.yml");
    std::fs::write(&agent_cfg, &config).unwrap();
    let common = |extra: &[String]| -> Vec<String> {
        let mut v: Vec<String> = ["--cluster.name", "basic", "--poll-interval", "200ms"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        v.extend_from_slice(extra);
        v
    };
    let agent = Exporter::start(&common(&[
        "--config.file".into(),
        agent_cfg.display().to_string(),
    ]));
    let watcher = Exporter::start(&common(&["--pd.endpoints".into(), pd.url()]));
    agent.wait_metrics("the agent follows both pods", PATIENCE, |m| {
        followed(m, "1") == Some(1.0) && followed(m, "2") == Some(1.0)
    });
    let mut want: BTreeMap<&str, Tally> = [("1", Tally::default()), ("2", Tally::default())].into();
    write_batch(&mut c0, 12, want.get_mut("1").unwrap());
    write_batch(&mut c1, 8, want.get_mut("2").unwrap());
    let m = wait_counts(&agent, &want, "the agent's counts per store");
    assert!(
        !m.contains("tikv_invariant_"),
        "the agent evaluates no invariant:\n{m}"
    );

    // The PodMonitor as the Prometheus Operator renders it: job from the pods' jobLabel
    // label, its metricRelabelings as metric_relabel_configs.
    let monitor: serde_json::Value = serde_saphyr::from_str(&read("podmonitor.yaml")).unwrap();
    let daemonset: serde_json::Value = serde_saphyr::from_str(&read("daemonset.yaml")).unwrap();
    let job_label = monitor["spec"]["jobLabel"].as_str().unwrap();
    let job = daemonset["spec"]["template"]["metadata"]["labels"][job_label]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        job, "tikv-health-exporter",
        "the watcher's job (its Service name)"
    );
    let mut relabel = String::new();
    for r in monitor["spec"]["podMetricsEndpoints"][0]["metricRelabelings"]
        .as_array()
        .unwrap()
    {
        let obj = r.as_object().unwrap();
        relabel += "      - action: ";
        relabel += &serde_json::to_string(&obj["action"]).unwrap();
        relabel += "\n";
        for (from, to) in [
            ("sourceLabels", "source_labels"),
            ("regex", "regex"),
            ("separator", "separator"),
            ("targetLabel", "target_label"),
            ("replacement", "replacement"),
        ] {
            if let Some(v) = obj.get(from) {
                relabel += &format!("        {to}: {}\n", serde_json::to_string(v).unwrap());
            }
        }
    }
    let watcher_job = format!(
        "  - job_name: {job:?}\n    static_configs:\n      - targets: [\"{}\"]\n",
        watcher.addr()
    );
    let agent_job = format!(
        "  - job_name: node-logs\n    static_configs:\n      - targets: [\"{}\"]\n    relabel_configs:\n      - target_label: job\n        replacement: {job:?}\n    metric_relabel_configs:\n{relabel}",
        agent.addr()
    );
    let prom = RealPrometheus::launch_config(
        &render_config_jobs(&[watcher_job, agent_job], Duration::from_secs(1), &[]),
        &[],
        "",
    );

    // One query joins the agent's log counters to the watcher's stores.
    let join = format!(
        r#"tikv_log_lines_total{{job="{job}",level="INFO",source="file:tikv"}} * on(cluster, store) group_left(address) tikv_store_info{{job="{job}"}}"#
    );
    let joined = prom.wait_for(
        &join,
        |v| v["data"]["result"].as_array().is_some_and(|r| r.len() == 2),
        PATIENCE,
    );
    let mut by_store: Vec<(String, String, String, String)> = joined["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let l = &s["metric"];
            let text = |k: &str| l[k].as_str().unwrap_or_default().to_owned();
            (
                text("store"),
                text("address"),
                text("cluster"),
                s["value"][1].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    by_store.sort();
    assert_eq!(
        by_store,
        [
            (
                "1".to_owned(),
                format!("basic-tikv-0.basic-tikv-peer.{NS}.svc:20160"),
                "basic".to_owned(),
                want["1"].info.to_string()
            ),
            (
                "2".to_owned(),
                format!("basic-tikv-1.basic-tikv-peer.{NS}.svc:20160"),
                "basic".to_owned(),
                want["2"].info.to_string()
            ),
        ],
        "{joined}"
    );
    // What the agent's target holds: its log series and its file source's health, nothing of
    // the cluster's (Prometheus' own scrape series apart).
    let names = prom.query_blocking(&format!(
        r#"count by (__name__, source) ({{instance="{}"}})"#,
        agent.addr()
    ));
    let kept: BTreeSet<(String, String)> = names["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let l = &s["metric"];
            let text = |k: &str| l[k].as_str().unwrap_or_default().to_owned();
            (text("__name__"), text("source"))
        })
        .collect();
    assert!(
        kept.contains(&("tikv_log_lines_total".into(), SOURCE.into())),
        "{kept:?}"
    );
    assert!(
        kept.contains(&("tikv_health_exporter_source_up".into(), SOURCE.into())),
        "{kept:?}"
    );
    for (name, source) in &kept {
        let log_series = name.starts_with("tikv_log_") || name == "tikv_leadership_changes_total";
        let file_health = name == "tikv_health_exporter_source_up" && source == SOURCE;
        let scrape = name == "up" || name.starts_with("scrape_");
        assert!(
            log_series || file_health || scrape,
            "kept from the agent: {name} {source:?}"
        );
    }
}
