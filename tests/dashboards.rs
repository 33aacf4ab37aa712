//! The Grafana dashboard `dashboards/tikv-health-exporter.json` and the provisioning files under
//! `dashboards/provisioning/`.
//!
//! - Structure: importable through the UI (`__inputs`/`__requires`) and provisionable from a file
//!   (every panel and variable query uses the `${datasource}` variable, never `${DS_PROMETHEUS}`,
//!   grafana/grafana#10786), stable uid, unique panel ids, every query filtered by `$job` (and
//!   `$store` where the metric has a store), only `$__rate_interval`/`$__range` windows; the
//!   `cluster` variable narrowed by a hidden `tidb_cluster` text box, so links from TiDB's
//!   dashboards (`var-tidb_cluster=...`) open on their cluster (checked against real series).
//! - Data: the real exporter (fake PD with 3 stores, a followed log file, its Prometheus-based
//!   invariants reading a fake TiKV from the same Prometheus) scraped by a real Prometheus; every panel query, with the template variables substituted the way Grafana
//!   does, must parse and return a non-empty result, and every variable query must list values.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::time::Duration;

use serde_json::{Value, json};
use support::exporter::Exporter;
use support::fake_pd::{FakePd, StoreSpec};
use support::fake_tikv::FakeTikv;
use support::prometheus::{RealPrometheus, render_config};
use support::wait::PATIENCE;

const DASHBOARD: &str = include_str!("../dashboards/tikv-health-exporter.json");
const DATASOURCE_YML: &str = include_str!("../dashboards/provisioning/datasources/prometheus.yml");
const PROVIDER_YML: &str =
    include_str!("../dashboards/provisioning/dashboards/tikv-health-exporter.yml");

/// The Prometheus job name the e2e test scrapes the exporter under.
const JOB: &str = "tikv-health-exporter";
const CLUSTER: &str = "basic";

/// The values the data test gives Grafana's macros (a 1 s scrape interval).
const MACRO_VALUES: [(&str, &str); 6] = [
    ("__rate_interval", "15s"),
    ("__interval", "1s"),
    ("__interval_ms", "1000"),
    ("__range", "1m"),
    ("__range_s", "60"),
    ("__range_ms", "60000"),
];

/// Variables Grafana itself defines (interval and range macros).
const BUILTINS: [&str; 6] = [
    "__rate_interval",
    "__interval",
    "__interval_ms",
    "__range",
    "__range_s",
    "__range_ms",
];

fn dashboard() -> Value {
    serde_json::from_str(DASHBOARD).expect("dashboard is valid JSON")
}

/// Every panel, rows included, with the panels nested in collapsed rows.
fn all_panels(d: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().expect("panels") {
        out.push(p);
        if let Some(nested) = p["panels"].as_array() {
            out.extend(nested);
        }
    }
    out
}

/// Panels that query data (everything but rows).
fn query_panels(d: &Value) -> Vec<&Value> {
    all_panels(d)
        .into_iter()
        .filter(|p| p["type"] != "row")
        .collect()
}

fn targets(p: &Value) -> &[Value] {
    p["targets"].as_array().map_or(&[], Vec::as_slice)
}

fn title(p: &Value) -> &str {
    p["title"].as_str().unwrap_or("?")
}

fn variables(d: &Value) -> &[Value] {
    d["templating"]["list"].as_array().expect("templating.list")
}

fn variable<'a>(d: &'a Value, name: &str) -> &'a Value {
    variables(d)
        .iter()
        .find(|v| v["name"] == name)
        .unwrap_or_else(|| panic!("no template variable `{name}`"))
}

/// The query of a query variable: `query.query` (Grafana 10 object form) or a plain string.
fn variable_query(v: &Value) -> &str {
    v["query"]["query"]
        .as_str()
        .or_else(|| v["query"].as_str())
        .expect("variable query")
}

/// `$name` / `${name}` / `${name:format}` references in `text`.
fn var_refs(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(i) = rest.find('$') {
        rest = &rest[i + 1..];
        let name: String = if let Some(braced) = rest.strip_prefix('{') {
            braced
                .split(['}', ':'])
                .next()
                .unwrap_or_default()
                .to_owned()
        } else {
            rest.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        };
        if !name.is_empty() {
            out.insert(name);
        }
    }
    out
}

/// Label selectors `metric{...}` in a PromQL expression: (metric name, matchers).
fn selectors(expr: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut rest = expr;
    while let Some(open) = rest.find('{') {
        let metric: String = rest[..open]
            .chars()
            .rev()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == ':')
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        let close = rest[open..].find('}').expect("unbalanced braces") + open;
        out.push((metric, rest[open + 1..close].to_owned()));
        rest = &rest[close + 1..];
    }
    out
}

/// Range-vector windows `[...]` in a PromQL expression.
fn windows(expr: &str) -> Vec<&str> {
    expr.split('[')
        .skip(1)
        .map(|s| s.split(']').next().unwrap_or_default())
        .collect()
}

#[test]
fn dashboard_is_importable_and_provisionable() {
    let d = dashboard();
    assert_eq!(d["uid"], "tikv-health-exporter");
    assert_eq!(d["title"], "TiKV Health (tikv-health-exporter)");
    assert_eq!(d["schemaVersion"], 39);
    assert!(d["id"].is_null(), "id must be null so import creates it");

    // UI import: the data source input and what the dashboard requires.
    let inputs = d["__inputs"].as_array().expect("__inputs");
    assert!(
        inputs.iter().any(|i| i["name"] == "DS_PROMETHEUS"
            && i["type"] == "datasource"
            && i["pluginId"] == "prometheus"),
        "__inputs lacks DS_PROMETHEUS: {inputs:?}"
    );
    let requires = d["__requires"].as_array().expect("__requires");
    let required = |ty: &str, id: &str| requires.iter().any(|r| r["type"] == ty && r["id"] == id);
    assert!(required("grafana", "grafana"));
    assert!(required("datasource", "prometheus"));
    for p in query_panels(&d) {
        let ty = p["type"].as_str().unwrap();
        assert!(required("panel", ty), "__requires lacks panel type {ty}");
    }

    // File provisioning: `${DS_PROMETHEUS}` is only resolved by the import UI/API, so it may
    // appear in `__inputs` and as the datasource variable's initial value (import sets it to the
    // chosen data source; provisioning falls back to the data source named like its text, else
    // the first one), nowhere else.
    let mut stripped = d.clone();
    stripped.as_object_mut().unwrap().remove("__inputs");
    for v in stripped["templating"]["list"].as_array_mut().unwrap() {
        if v["type"] == "datasource" {
            v.as_object_mut().unwrap().remove("current");
        }
    }
    assert!(
        !stripped.to_string().contains("DS_PROMETHEUS"),
        "DS_PROMETHEUS outside __inputs breaks file provisioning (grafana#10786)"
    );
    let ds = variable(&d, "datasource");
    assert_eq!(ds["type"], "datasource");
    assert_eq!(ds["query"], "prometheus");
    let want_ds = json!({"type": "prometheus", "uid": "${datasource}"});

    // Panels: unique ids, sane grid, the datasource variable everywhere, one query at least.
    let mut ids = BTreeSet::new();
    for p in all_panels(&d) {
        let id = p["id"]
            .as_u64()
            .unwrap_or_else(|| panic!("panel {:?} has no numeric id", title(p)));
        assert!(ids.insert(id), "duplicate panel id {id} ({})", title(p));
        let g = &p["gridPos"];
        let (x, w, h) = (
            g["x"].as_u64().unwrap(),
            g["w"].as_u64().unwrap(),
            g["h"].as_u64().unwrap(),
        );
        assert!(
            w > 0 && h > 0 && x + w <= 24,
            "bad gridPos {g} ({})",
            title(p)
        );
    }
    let defined: BTreeSet<String> = variables(&d)
        .iter()
        .map(|v| v["name"].as_str().unwrap().to_owned())
        .chain(BUILTINS.iter().map(|s| s.to_string()))
        .collect();
    for p in query_panels(&d) {
        let t = title(p);
        assert_eq!(p["datasource"], want_ds, "panel {t:?}");
        assert!(!targets(p).is_empty(), "panel {t:?} has no query");
        let mut refs = BTreeSet::new();
        for tg in targets(p) {
            assert_eq!(tg["datasource"], want_ds, "a target of {t:?}");
            assert!(
                refs.insert(tg["refId"].as_str().unwrap()),
                "refId twice in {t:?}"
            );
            let expr = tg["expr"].as_str().unwrap_or_default();
            assert!(!expr.trim().is_empty(), "empty expr in {t:?}");
            for v in var_refs(expr).into_iter().chain(var_refs(t)) {
                assert!(defined.contains(&v), "{t:?} uses undefined ${v}: {expr}");
            }
            // The one fixed window: which exporters watch the cluster, over the last hour.
            let cluster_join = expr.contains("last_over_time(tikv_health_exporter_build_info{");
            for w in windows(expr) {
                assert!(
                    w == "$__rate_interval" || w == "$__range" || (w == "1h" && cluster_join),
                    "{t:?}: use $__rate_interval (or $__range), not [{w}]: {expr}"
                );
            }
            let sels = selectors(expr);
            assert!(!sels.is_empty(), "{t:?}: unfiltered query {expr}");
            // Series Prometheus makes for the target have no `cluster` (a label of the
            // exporter's own series): they are kept to the cluster's exporters by a join
            // with its build_info of the last hour (also while the scrape fails).
            let target_series = ["up", "scrape_duration_seconds", "scrape_samples_scraped"];
            for (metric, matchers) in sels {
                if target_series.contains(&metric.as_str()) {
                    assert!(
                        matchers == r#"job=~"$job""#
                            && expr.contains(
                                r#" and on(instance, job) last_over_time(tikv_health_exporter_build_info{job=~"$job",cluster=~"$cluster"}[1h])"#
                            ),
                        "{t:?}: {metric} not kept to the cluster's exporters: {expr}"
                    );
                    continue;
                }
                assert!(
                    matchers.contains(r#"job=~"$job",cluster=~"$cluster""#),
                    "{t:?}: {metric} not filtered by job and cluster: {expr}"
                );
                let per_store = [
                    "tikv_store_",
                    "tikv_invariant_",
                    "tikv_leadership_",
                    "tikv_log_",
                    "tikv_min_resolved_ts_",
                ]
                .iter()
                .any(|p| metric.starts_with(p));
                if per_store {
                    assert!(
                        matchers.contains(r#"store=~"$store"#),
                        "{t:?}: {metric} not filtered by store: {expr}"
                    );
                }
            }
        }
        if let Some(rep) = p["repeat"].as_str() {
            assert!(defined.contains(rep), "{t:?} repeats over undefined ${rep}");
        }
    }

    // Variables: data source first, the others query through it.
    assert_eq!(variables(&d)[0]["name"], "datasource");
    for v in variables(&d).iter().filter(|v| v["type"] == "query") {
        assert_eq!(v["datasource"], want_ds, "variable {}", v["name"]);
        for r in var_refs(variable_query(v)) {
            assert!(defined.contains(&r), "variable {} uses ${r}", v["name"]);
        }
    }
    assert_eq!(
        variable_query(variable(&d, "job")),
        "label_values(tikv_health_exporter_build_info, job)"
    );
    let cluster = variable(&d, "cluster");
    assert_eq!(
        variable_query(cluster),
        r#"label_values(tikv_health_exporter_build_info{job=~"$job",cluster=~"$tidb_cluster"}, cluster)"#
    );
    // TiDB's dashboards call the cluster `tidb_cluster`: their links set it in the URL
    // (var-tidb_cluster=...), which a hidden, URL-synced text box takes; every cluster by default.
    let tidb = variable(&d, "tidb_cluster");
    assert_eq!(tidb["type"], "textbox");
    assert_eq!(tidb["hide"], 2, "hidden");
    assert_eq!(tidb["skipUrlSync"], false, "set from the URL");
    assert_eq!(tidb["query"], ".*");
    assert_eq!(tidb["current"]["value"], ".*");
    // One cluster at a time: store ids of different clusters overlap.
    assert_eq!(cluster["multi"], false);
    assert_eq!(cluster["includeAll"], false);
    let store = variable(&d, "store");
    assert_eq!(
        variable_query(store),
        r#"label_values(tikv_store_info{job=~"$job",cluster=~"$cluster"}, store)"#
    );
    assert_eq!(store["multi"], true);
    assert_eq!(store["includeAll"], true);
    assert_eq!(store["allValue"], ".*", "All must also match new stores");
}

#[test]
fn provisioning_files_are_grafana_provisioning() {
    let ds: Value = serde_saphyr::from_str(DATASOURCE_YML).expect("datasource YAML");
    assert_eq!(ds["apiVersion"], 1);
    let list = ds["datasources"].as_array().expect("datasources");
    assert_eq!(list.len(), 1);
    let p = &list[0];
    assert_eq!(p["type"], "prometheus");
    assert_eq!(
        p["uid"], "prometheus",
        "a fixed uid binds deterministically"
    );
    assert_eq!(p["url"], "http://prometheus:9090");
    assert_eq!(p["access"], "proxy");
    assert_eq!(p["isDefault"], true);

    let prov: Value = serde_saphyr::from_str(PROVIDER_YML).expect("dashboard provider YAML");
    assert_eq!(prov["apiVersion"], 1);
    let providers = prov["providers"].as_array().expect("providers");
    assert_eq!(providers.len(), 1);
    let p = &providers[0];
    assert_eq!(p["type"], "file");
    let path = p["options"]["path"].as_str().expect("options.path");
    assert!(path.starts_with('/'), "{path}");
    // The mount that puts the JSON there is documented next to it.
    assert!(
        PROVIDER_YML.lines().any(|l| l.trim_start().starts_with('#')
            && l.contains(path)
            && l.contains("./dashboards")),
        "document the volume mount for {path} in a comment"
    );
    if p["options"]["foldersFromFilesStructure"] == true {
        assert!(p["folder"].is_null() && p["folderUid"].is_null());
    }
}

/// The hidden `tidb_cluster` text box's value when no link sets it.
fn tidb_cluster_default(d: &Value) -> String {
    variable(d, "tidb_cluster")["query"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Grafana's interpolation of `expr` with `vars` (name → already formatted value).
fn interpolate(expr: &str, vars: &BTreeMap<&str, String>) -> String {
    let mut names: Vec<&&str> = vars.keys().collect();
    names.sort_by_key(|n| std::cmp::Reverse(n.len()));
    let mut out = expr.to_owned();
    for n in names {
        out = out
            .replace(&format!("${{{n}}}"), &vars[*n])
            .replace(&format!("${n}"), &vars[*n]);
    }
    out
}

/// A Prometheus HTTP API GET with URL-encoded parameters; the JSON answer.
fn api(prom: &RealPrometheus, path: &str, params: &[(&str, &str)]) -> Value {
    let url = reqwest::Url::parse_with_params(&format!("http://x{path}"), params).unwrap();
    let full = format!("{}?{}", url.path(), url.query().unwrap_or(""));
    let (status, body) = prom.get(&full);
    serde_json::from_str(&body)
        .unwrap_or_else(|e| panic!("GET {full}: HTTP {status}, not JSON ({e}): {body}"))
}

/// `None` when the answer is a success with at least one series of finite values, else why not.
fn check_answer(v: &Value) -> Option<String> {
    if v["status"] != "success" {
        return Some(format!("status {}: {}", v["status"], v["error"]));
    }
    let result = &v["data"]["result"];
    let series = match v["data"]["resultType"].as_str() {
        Some("scalar") => return None,
        _ => result.as_array().map_or(&[][..], Vec::as_slice),
    };
    if series.is_empty() {
        return Some("empty result".into());
    }
    for s in series {
        let values: Vec<&Value> = match (s.get("value"), s.get("values")) {
            (Some(one), _) => vec![&one[1]],
            (_, Some(many)) => many.as_array().unwrap().iter().map(|p| &p[1]).collect(),
            _ => return Some(format!("odd series {s}")),
        };
        if values.is_empty() {
            return Some(format!("series without samples: {}", s["metric"]));
        }
        for val in values {
            let f: f64 = val
                .as_str()
                .and_then(|x| x.parse().ok())
                .unwrap_or(f64::NAN);
            if !f.is_finite() {
                return Some(format!("non-finite value {val} in {}", s["metric"]));
            }
        }
    }
    None
}

/// `label_values(selector, label)` → (selector, label).
fn parse_label_values(q: &str) -> (String, String) {
    let inner = q
        .trim()
        .strip_prefix("label_values(")
        .and_then(|s| s.strip_suffix(')'))
        .unwrap_or_else(|| panic!("not label_values(...): {q}"));
    let (sel, label) = inner
        .rsplit_once(',')
        .expect("label_values(selector, label)");
    (sel.trim().to_owned(), label.trim().to_owned())
}

/// The time (Unix seconds) of the latest scrape of `job` that succeeded. Queries evaluated
/// then see every series of the target: a later scrape that failed (on a loaded machine one
/// can miss the 1 s scrape timeout) writes staleness markers, and instant queries evaluated
/// after it answer nothing for the target until the next good scrape.
fn last_good_scrape(prom: &RealPrometheus, job: &str) -> f64 {
    let range = format!(r#"up{{job="{job}"}}[1m]"#);
    let answer = api(prom, "/api/v1/query", &[("query", &range)]);
    answer["data"]["result"][0]["values"]
        .as_array()
        .and_then(|samples| {
            samples
                .iter()
                .rev()
                .find(|s| s[1] == "1")
                .and_then(|s| s[0].as_f64())
        })
        .unwrap_or_else(|| panic!("no successful scrape of {job} in the last minute: {answer}"))
}

#[test]
fn every_panel_query_returns_data_from_a_real_prometheus() {
    let d = dashboard();
    let fixture = include_str!("data/tikv-pd-real-lines.log");
    let lines: Vec<&str> = fixture.lines().collect();
    let (first, second) = lines.split_at(lines.len() / 2);

    // One Prometheus scrapes a fake TiKV (store 1) for the exporter's Prometheus-based
    // invariants and the exporter itself for the dashboard.
    let tikv = FakeTikv::start();
    tikv.set_write_latency(100.0, 0.005);
    tikv.set_cpu_busy_cores(1.0);
    let pd = FakePd::with_live_stores(&[
        StoreSpec {
            status_address: tikv.instance(),
            ..StoreSpec::tikv(1)
        },
        StoreSpec::tikv(2),
        StoreSpec::tikv(3),
        // Being removed: offline_store_stuck has a series for the scale-in panel.
        StoreSpec {
            state_name: "Offline".into(),
            ..StoreSpec::tikv(4)
        },
    ]);
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("tikv.log");
    std::fs::write(&log, "").unwrap();
    // Prometheus first (the exporter needs its URL), then the exporter on a port of its own,
    // then Prometheus told to scrape it too.
    let prom = RealPrometheus::start(&[("tikv", vec![tikv.addr()])], Duration::from_secs(1));
    // PD's cluster-wide sources every second: pd_etcd has a value from the second read on.
    let cfg = dir.path().join("config.yml");
    std::fs::write(&cfg, "pd:\n  health_interval: 1s\n").unwrap();
    let exporter = Exporter::start(&[
        "--config.file".into(),
        cfg.display().to_string(),
        "--pd.endpoints".into(),
        pd.url(),
        "--poll-interval".into(),
        "200ms".into(),
        "--prometheus.url".into(),
        prom.url(),
        "--logs.file".into(),
        format!("{}=1", log.display()),
        "--cluster.name".into(),
        CLUSTER.into(),
    ]);
    exporter.wait_ready();
    exporter.wait_metrics("pd_etcd known", PATIENCE, |m| {
        support::exporter::sample(
            m,
            "tikv_invariant_observed_value",
            &[("name", "pd_etcd"), ("store", "")],
        )
        .is_some()
    });
    // Store 4 loses a region once the exporter has seen it: offline_store_stuck has a value.
    let stuck = [("name", "offline_store_stuck"), ("store", "4")];
    exporter.wait_metrics("store 4 seen Offline", PATIENCE, |m| {
        let unknown = support::exporter::inv("offline_store_stuck", "4", "warning");
        support::exporter::sample(m, "tikv_invariant_unknown", &unknown).is_some()
    });
    pd.set_region_count(4, 59);
    exporter.wait_metrics("store 4 measured", PATIENCE, |m| {
        support::exporter::sample(m, "tikv_invariant_observed_value", &stuck).is_some()
    });
    // The file source opens the file at its end: append once it has.
    exporter.wait_source_up("file:tikv.log", 1.0);
    let append = |part: &[&str]| {
        let mut f = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        for l in part {
            writeln!(f, "{l}").unwrap();
        }
        f.flush().unwrap();
    };
    append(first);
    std::fs::write(
        prom.dir().join("prometheus.yml"),
        render_config(
            &[(JOB, vec![exporter.addr()]), ("tikv", vec![tikv.addr()])],
            Duration::from_secs(1),
            &[],
        ),
    )
    .unwrap();
    prom.reload();

    // First scrape (Prometheus 2.42 takes ~5 s), then more lines so rates are not all zero,
    // then at least 3 scrapes in all, the last one after the exporter counted every line.
    let scrapes = format!(r#"sum_over_time(up{{job="{JOB}"}}[10m])"#);
    let at_least = |n: f64| {
        move |v: &Value| {
            v["data"]["result"][0]["value"][1]
                .as_str()
                .and_then(|s| s.parse::<f64>().ok())
                .is_some_and(|x| x >= n)
        }
    };
    prom.wait_for(&scrapes, at_least(1.0), PATIENCE);
    append(second);
    exporter.wait_metrics("every fixture line counted", PATIENCE, |m| {
        let log = [
            ("source", "file:tikv.log"),
            ("store", "1"),
            ("cluster", CLUSTER),
        ];
        support::exporter::sample(m, "tikv_log_malformed_lines_total", &log) == Some(2.0)
            && m.contains(r#"event="pd_leader_changed"} 7"#)
    });
    let counted = r#"sum(tikv_log_lines_total) + sum(tikv_log_malformed_lines_total)"#;
    prom.wait_for(counted, at_least(lines.len() as f64 - 0.5), PATIENCE);
    prom.wait_for(&scrapes, at_least(3.0), PATIENCE);
    // Let a few scrapes with the second half land so every [$__rate_interval] window is full.
    let scraped = prom.wait_for(&scrapes, at_least(5.0), PATIENCE);
    eprintln!(
        "scrapes so far: {}",
        scraped["data"]["result"][0]["value"][1]
    );

    let mut failures = Vec::new();
    let mut checked = 0usize;

    // Template variable queries, as Grafana runs label_values(): the label values API.
    let mut var_values: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let base: BTreeMap<&str, String> = [
        ("job", JOB.to_owned()),
        ("cluster", CLUSTER.to_owned()),
        ("tidb_cluster", tidb_cluster_default(&d)),
    ]
    .into();
    for v in variables(&d).iter().filter(|v| v["type"] == "query") {
        let name = v["name"].as_str().unwrap();
        let q = interpolate(variable_query(v), &base);
        let (sel, label) = parse_label_values(&q);
        let answer = api(
            &prom,
            &format!("/api/v1/label/{label}/values"),
            &[("match[]", &sel)],
        );
        checked += 1;
        let values: Vec<String> = answer["data"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        if answer["status"] != "success" || values.is_empty() {
            failures.push(format!("variable ${name}: {q}\n    -> {answer}"));
        }
        var_values.insert(name.to_owned(), values);
    }
    assert!(var_values["job"].iter().any(|j| j == JOB), "{var_values:?}");
    assert_eq!(var_values["cluster"], [CLUSTER], "{var_values:?}");
    assert_eq!(var_values["store"], ["1", "2", "3", "4"], "{var_values:?}");
    assert_eq!(
        var_values["invariant"],
        [
            "cpu_usage",
            "disk_low_space",
            "disk_usage",
            "gc_safepoint_lag",
            "leader_imbalance",
            "offline_store_stuck",
            "pd_etcd",
            "pd_leader",
            "region_down_peers",
            "region_miss_peers",
            "region_offline_peers",
            "region_pending_peers",
            "resolved_ts_lag",
            "store_down",
            "store_restarted",
            "store_slow",
            "write_latency_p99"
        ],
        "{var_values:?}"
    );

    // Panel queries under the selections a user makes: All (the allValue `.*`), and several
    // values picked (Grafana's `(a|b)` regex form).
    let multi = |name: &str| format!("({})", var_values[name].join("|"));
    let scenarios: Vec<(&str, BTreeMap<&str, String>)> = vec![
        (
            "All selected",
            [
                ("job", JOB.to_owned()),
                ("cluster", CLUSTER.to_owned()),
                ("store", ".*".to_owned()),
                ("invariant", multi("invariant")),
            ]
            .into(),
        ),
        (
            "stores 1,2,3 picked",
            [
                ("job", JOB.to_owned()),
                ("cluster", CLUSTER.to_owned()),
                ("store", multi("store")),
                ("invariant", multi("invariant")),
            ]
            .into(),
        ),
    ];
    let end = last_good_scrape(&prom, JOB);
    let (start_s, end_s) = (format!("{:.3}", end - 20.0), format!("{end:.3}"));
    for p in query_panels(&d) {
        let t = title(p);
        for (scenario, vars) in &scenarios {
            let mut vars = vars.clone();
            vars.extend(MACRO_VALUES.iter().map(|(k, v)| (*k, v.to_string())));
            // A repeated panel is drawn once per value of its variable.
            let repeats: Vec<String> = match p["repeat"].as_str() {
                Some(r) => var_values[r].clone(),
                None => vec![String::new()],
            };
            for value in &repeats {
                if let Some(r) = p["repeat"].as_str() {
                    vars.insert(r, value.clone());
                }
                for tg in targets(p) {
                    let raw = tg["expr"].as_str().unwrap();
                    let expr = interpolate(raw, &vars);
                    let what = format!(
                        "panel {t:?} [{scenario}{}] target {}:\n    {expr}",
                        if value.is_empty() {
                            String::new()
                        } else {
                            format!(", ${}={value}", p["repeat"].as_str().unwrap())
                        },
                        tg["refId"]
                    );
                    if expr.contains('$') {
                        failures.push(format!("{what}\n    -> uninterpolated variable"));
                        continue;
                    }
                    let instant = api(
                        &prom,
                        "/api/v1/query",
                        &[("query", &expr), ("time", &end_s)],
                    );
                    checked += 1;
                    if let Some(why) = check_answer(&instant) {
                        failures.push(format!("{what}\n    -> instant query: {why}: {instant}"));
                    }
                    if tg["range"] == true {
                        let range = api(
                            &prom,
                            "/api/v1/query_range",
                            &[
                                ("query", &expr),
                                ("start", &start_s),
                                ("end", &end_s),
                                ("step", "1"),
                            ],
                        );
                        checked += 1;
                        if let Some(why) = check_answer(&range) {
                            failures.push(format!("{what}\n    -> range query: {why}: {range}"));
                        }
                    }
                }
            }
        }
    }
    eprintln!("{checked} queries checked");
    assert!(
        failures.is_empty(),
        "{} of {checked} dashboard queries failed:\n{}\nexporter /metrics:\n{}",
        failures.len(),
        failures.join("\n"),
        exporter.metrics()
    );
}

/// Two clusters, one Prometheus: two exporters (`--cluster.name a` and `b`) of two fake PDs
/// whose store ids overlap (1, 2, 3 each), scraped under one job with the shipped rules.
/// Store 2 of cluster `a` is down; cluster `b` is healthy. The alert names cluster `a`'s store
/// and never cluster `b`; every dashboard query filtered by a cluster returns only that
/// cluster's series; the store and cluster variables list per cluster.
#[test]
fn two_clusters_with_overlapping_store_ids_stay_apart_in_alerts_and_dashboard() {
    let d = dashboard();
    let pd_a = FakePd::with_live_stores(&support::fake_pd::cluster(3));
    let pd_b = FakePd::with_live_stores(&support::fake_pd::cluster(3));
    pd_a.set_heartbeat_age(2, Duration::from_secs(600));
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("exporter.yml");
    // No grace: the test is about which cluster the alert names, not about timing.
    std::fs::write(&cfg, "invariants:\n  store_down:\n    grace: 0s\n").unwrap();
    let start = |pd: &FakePd, name: &str| {
        Exporter::start(&[
            "--pd.endpoints".into(),
            pd.url(),
            "--poll-interval".into(),
            "200ms".into(),
            "--config.file".into(),
            cfg.display().to_string(),
            "--cluster.name".into(),
            name.into(),
        ])
    };
    let (a, b) = (start(&pd_a, "a"), start(&pd_b, "b"));
    a.wait_ready();
    b.wait_ready();
    let rules = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("alerts/tikv-health-exporter.rules.yml");
    let prom = RealPrometheus::launch_config(
        &render_config(
            &[(JOB, vec![a.addr(), b.addr()])],
            Duration::from_secs(1),
            &[rules],
        ),
        &[],
        "",
    );
    // Cluster a's store 2 fires in Prometheus.
    let alerts = r#"ALERTS{alertname="TiKVStoreDown",alertstate="firing"}"#;
    let firing = prom.wait_for(
        alerts,
        |v| {
            v["data"]["result"]
                .as_array()
                .is_some_and(|r| !r.is_empty())
        },
        PATIENCE,
    );
    let fired: Vec<(String, String)> = firing["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let m = &s["metric"];
            (
                m["cluster"].as_str().unwrap_or_default().to_owned(),
                m["store"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect();
    assert_eq!(fired, [("a".to_owned(), "2".to_owned())], "{firing}");
    // Both exporters scraped at least twice since, so every series of both is in.
    let scrapes = format!(r#"min(sum_over_time(up{{job="{JOB}"}}[10m]))"#);
    prom.wait_for(
        &scrapes,
        |v| {
            v["data"]["result"][0]["value"][1]
                .as_str()
                .and_then(|s| s.parse::<f64>().ok())
                .is_some_and(|x| x >= 3.0)
        },
        PATIENCE,
    );

    // Variables: the cluster variable lists both; the store variable lists per cluster.
    let label_values = |q: &str, vars: &BTreeMap<&str, String>| -> Vec<String> {
        let (sel, label) = parse_label_values(&interpolate(q, vars));
        let answer = api(
            &prom,
            &format!("/api/v1/label/{label}/values"),
            &[("match[]", &sel)],
        );
        answer["data"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    };
    let job_only: BTreeMap<&str, String> = [
        ("job", JOB.to_owned()),
        ("tidb_cluster", tidb_cluster_default(&d)),
    ]
    .into();
    let cluster_query = variable_query(variable(&d, "cluster"));
    assert_eq!(label_values(cluster_query, &job_only), ["a", "b"]);
    // Opened from a TiDB dashboard's link with var-tidb_cluster=b: only cluster b is offered,
    // so Grafana selects it; a cluster no exporter watches offers none.
    let mut linked = job_only.clone();
    linked.insert("tidb_cluster", "b".into());
    assert_eq!(label_values(cluster_query, &linked), ["b"]);
    linked.insert("tidb_cluster", "tidb-cluster-c".into());
    assert!(label_values(cluster_query, &linked).is_empty());
    let invariants: Vec<String> = {
        let mut v = job_only.clone();
        v.insert("cluster", "a".into());
        label_values(variable_query(variable(&d, "invariant")), &v)
    };
    let mut checked = 0;
    let mut failures = Vec::new();
    let end = last_good_scrape(&prom, JOB);
    let end_s = format!("{end:.3}");
    for cluster in ["a", "b"] {
        let mut vars: BTreeMap<&str, String> = [
            ("job", JOB.to_owned()),
            ("cluster", cluster.to_owned()),
            ("store", ".*".to_owned()),
            ("invariant", format!("({})", invariants.join("|"))),
        ]
        .into();
        vars.extend(MACRO_VALUES.iter().map(|(k, v)| (*k, v.to_string())));
        assert_eq!(
            label_values(variable_query(variable(&d, "store")), &vars),
            ["1", "2", "3"],
            "stores of cluster {cluster}"
        );
        for p in query_panels(&d) {
            for tg in targets(p) {
                let mut vars = vars.clone();
                if let Some(r) = p["repeat"].as_str() {
                    vars.insert(r, invariants[0].clone());
                }
                let expr = interpolate(tg["expr"].as_str().unwrap(), &vars);
                let answer = api(
                    &prom,
                    "/api/v1/query",
                    &[("query", &expr), ("time", &end_s)],
                );
                checked += 1;
                for s in answer["data"]["result"].as_array().into_iter().flatten() {
                    if let Some(c) = s["metric"]["cluster"].as_str()
                        && c != cluster
                    {
                        failures.push(format!(
                            "panel {:?} for cluster {cluster} returned cluster {c}: {expr}",
                            title(p)
                        ));
                    }
                }
            }
        }
        // The overview's violation count: cluster a's down store only.
        let violations = api(
            &prom,
            "/api/v1/query",
            &[
                (
                    "query",
                    &format!(
                        r#"sum(tikv_invariant_violation{{job="{JOB}",cluster="{cluster}",name="store_down"}})"#
                    ),
                ),
                ("time", &end_s),
            ],
        );
        let want = if cluster == "a" { "1" } else { "0" };
        assert_eq!(
            violations["data"]["result"][0]["value"][1], want,
            "{violations}"
        );
    }
    eprintln!("{checked} queries checked");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
