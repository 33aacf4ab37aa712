//! The shipped alerting kit under `alerts/`: the rule files pass `promtool check rules`, their unit
//! tests pass `promtool test rules`, the Alertmanager example passes `amtool check-config`, routes
//! by severity and inhibits as documented (checked against a real Alertmanager), and the rules
//! reference only metrics of the exporter's contract (README's metric table and
//! `src/exposition/metrics.rs`), so renaming a metric breaks this test rather than the alerts.
//!
//! Needs Debian's `prometheus` (promtool) and `prometheus-alertmanager` (amtool,
//! prometheus-alertmanager); `scripts/test-all.sh` installs both. `PROMTOOL_BIN`, `AMTOOL_BIN`
//! and `ALERTMANAGER_BIN` override the binaries.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize;
use support::alertmanager::RealAlertmanager;
use support::cmd::{run_ok, show};
use support::wait;

const RULES: &str = "alerts/tikv-health-exporter.rules.yml";
const RULE_TESTS: &str = "alerts/tikv-health-exporter.rules.test.yml";
const ALERTMANAGER_CONFIG: &str = "alerts/alertmanager.yml";
const RUNBOOK: &str = "alerts/runbook.md";
const RUNBOOK_BASE: &str =
    "https://github.com/tikv-health-exporter/tikv-health-exporter/blob/main/alerts/runbook.md#";

/// Metrics the rules may use that the exporter does not export (Prometheus' own).
const NOT_FROM_THE_EXPORTER: [&str; 1] = ["up"];

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(rel: &str) -> String {
    std::fs::read_to_string(root().join(rel)).unwrap_or_else(|e| panic!("read {rel}: {e}"))
}

/// `$env` or `name` from `PATH`; a missing tool fails the test with how to get it.
fn tool(env: &str, name: &str, package: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env) {
        return PathBuf::from(p);
    }
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "`{name}` not found in PATH: run scripts/test-all.sh (it installs Debian's \
             `{package}`; CI does), or `apt-get install -y --no-install-recommends {package}`, \
             or set {env}"
        )
    })
}

fn promtool() -> PathBuf {
    tool("PROMTOOL_BIN", "promtool", "prometheus")
}

fn amtool() -> PathBuf {
    tool("AMTOOL_BIN", "amtool", "prometheus-alertmanager")
}

/// Every rule file shipped in `alerts/` (`*.rules.yml`, `*.recording.yml`).
fn rule_files() -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(root().join("alerts"))
        .expect("alerts/")
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".rules.yml") || n.ends_with(".recording.yml"))
        .map(|n| format!("alerts/{n}"))
        .collect();
    files.sort();
    assert!(
        files.iter().any(|f| f == RULES),
        "{RULES} missing: {files:?}"
    );
    files
}

#[test]
fn promtool_check_rules() {
    let mut cmd = Command::new(promtool());
    cmd.args(["check", "rules"]).args(rule_files());
    let out = run_ok(cmd, "promtool check rules");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("SUCCESS"), "{}", show(&out));
}

#[test]
fn promtool_test_rules() {
    let mut cmd = Command::new(promtool());
    cmd.args(["test", "rules", RULE_TESTS]);
    let out = run_ok(cmd, "promtool test rules");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("SUCCESS") && !text.contains("FAILED"),
        "{}",
        show(&out)
    );
}

#[test]
fn amtool_check_config() {
    let mut cmd = Command::new(amtool());
    cmd.args(["check-config", ALERTMANAGER_CONFIG]);
    let out = run_ok(cmd, "amtool check-config");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("SUCCESS"),
        "{}",
        show(&out)
    );
}

#[test]
fn alertmanager_routes_by_severity() {
    let cases: [(&[&str], &str); 6] = [
        (
            &["alertname=TiKVStoreDown", "severity=critical", "store=1"],
            "pager",
        ),
        (
            &["alertname=TiKVStoreSlow", "severity=warning", "store=1"],
            "ticket",
        ),
        (&["alertname=Watchdog", "severity=none"], "deadmansswitch"),
        (
            &["alertname=TiKVInvariantViolated", "severity=info"],
            "blackhole",
        ),
        // a severity nobody routes still reaches a human
        (
            &["alertname=TiKVInvariantViolated", "severity=page"],
            "ticket",
        ),
        (&["alertname=Unlabelled"], "ticket"),
    ];
    for (labels, receiver) in cases {
        let mut cmd = Command::new(amtool());
        cmd.args(["config", "routes", "test"])
            .arg(format!("--config.file={ALERTMANAGER_CONFIG}"))
            .arg(format!("--verify.receivers={receiver}"))
            .args(labels);
        run_ok(cmd, &format!("route of {labels:?} to {receiver}"));
    }
}

#[test]
fn alertmanager_inhibits_warnings_of_a_down_store_and_duplicate_pages_only() {
    let am = RealAlertmanager::start(&read(ALERTMANAGER_CONFIG));
    let alerts = r#"[
      {"labels":{"alertname":"TiKVStoreDown","name":"store_down","store":"1","severity":"critical","instance":"e:19180","job":"tikv-health-exporter"}},
      {"labels":{"alertname":"TiKVStoreSlow","name":"store_slow","store":"1","severity":"warning","instance":"e:19180","job":"tikv-health-exporter"}},
      {"labels":{"alertname":"TiKVInvariantUnknown","name":"write_latency_p99","store":"1","severity":"warning","invariant_severity":"warning","instance":"e:19180","job":"tikv-health-exporter"}},
      {"labels":{"alertname":"TiKVStoreSlow","name":"store_slow","store":"2","severity":"warning","instance":"e:19180","job":"tikv-health-exporter"}},
      {"labels":{"alertname":"TiKVLeadershipChurn","severity":"warning","instance":"e:19180","job":"tikv-health-exporter"}},
      {"labels":{"alertname":"TiKVInvariantViolated","name":"leader_missing","store":"1","severity":"critical","instance":"e:19180","job":"tikv-health-exporter"}},
      {"labels":{"alertname":"TiKVHealthExporterSourceDown","source":"prometheus","severity":"warning","instance":"e:19180","job":"tikv-health-exporter"}},
      {"labels":{"alertname":"TiKVInvariantUnknown","name":"cpu_usage","store":"3","severity":"warning","invariant_severity":"warning","instance":"e:19180","job":"tikv-health-exporter"}},
      {"labels":{"alertname":"TiKVInvariantUnknown","name":"cpu_usage","store":"3","severity":"warning","invariant_severity":"warning","instance":"other:19180","job":"tikv-health-exporter"}},
      {"labels":{"alertname":"TiKVDiskLowSpace","name":"disk_low_space","store":"4","severity":"critical","instance":"e:19180","job":"tikv-health-exporter"}},
      {"labels":{"alertname":"TiKVDiskUsageHigh","name":"disk_usage","store":"4","severity":"warning","instance":"e:19180","job":"tikv-health-exporter"}},
      {"labels":{"alertname":"TiKVDiskUsageHigh","name":"disk_usage","store":"5","severity":"warning","instance":"e:19180","job":"tikv-health-exporter"}},
      {"labels":{"alertname":"PDLeaderUnhealthy","name":"pd_leader","severity":"critical","instance":"e:19180","job":"tikv-health-exporter"}},
      {"labels":{"alertname":"TiKVHealthExporterSourceDown","source":"pd","severity":"critical","instance":"e:19180","job":"tikv-health-exporter"}},
      {"labels":{"alertname":"TiKVHealthExporterSourceDown","source":"pd","severity":"critical","instance":"third:19180","job":"tikv-health-exporter"}},
      {"labels":{"alertname":"TiKVHealthExporterSourceDown","source":"pd:metrics","severity":"warning","instance":"e:19180","job":"tikv-health-exporter"}},
      {"labels":{"alertname":"TiKVHealthExporterSourceDown","source":"pd:gc_safepoint","severity":"warning","instance":"fourth:19180","job":"tikv-health-exporter"}},
      {"labels":{"alertname":"TiKVStoreDown","name":"store_down","store":"7","cluster":"a","severity":"critical","instance":"ea:19180","job":"tikv-health-exporter"}},
      {"labels":{"alertname":"TiKVStoreSlow","name":"store_slow","store":"7","cluster":"a","severity":"warning","instance":"ea:19180","job":"tikv-health-exporter"}},
      {"labels":{"alertname":"TiKVStoreSlow","name":"store_slow","store":"7","cluster":"b","severity":"warning","instance":"eb:19180","job":"tikv-health-exporter"}},
      {"labels":{"alertname":"TiKVHealthExporterDown","cluster":"c","severity":"critical","instance":"ec:19180","job":"tikv-health-exporter"}},
      {"labels":{"alertname":"TiKVHealthExporterClusterUnwatched","cluster":"c","severity":"critical"}},
      {"labels":{"alertname":"TiKVHealthExporterClusterUnwatched","cluster":"d","severity":"critical"}}
    ]"#;
    let (status, body) = am.http("POST", "/api/v2/alerts", alerts).unwrap();
    assert_eq!(status, 200, "{body}\n{}", am.log());
    let inhibited = || {
        let mut inhibited = BTreeMap::new();
        for a in &am.alerts() {
            let l = &a["labels"];
            let key = format!(
                "{}{} store={} instance={}{}",
                l["alertname"].as_str().unwrap(),
                l["source"]
                    .as_str()
                    .map_or(String::new(), |s| format!("/{s}")),
                l["store"].as_str().unwrap_or(""),
                l["instance"].as_str().unwrap_or(""),
                l["cluster"]
                    .as_str()
                    .map_or(String::new(), |c| format!(" cluster={c}")),
            );
            let by = a["status"]["inhibitedBy"].as_array().map_or(0, Vec::len);
            assert!(inhibited.insert(key, by > 0).is_none());
        }
        inhibited
    };
    let want: BTreeMap<String, bool> = [
        ("TiKVStoreDown store=1 instance=e:19180", false),
        // warnings about the down store
        ("TiKVStoreSlow store=1 instance=e:19180", true),
        ("TiKVInvariantUnknown store=1 instance=e:19180", true),
        // other stores, cluster-wide warnings and critical alerts stay
        ("TiKVStoreSlow store=2 instance=e:19180", false),
        ("TiKVLeadershipChurn store= instance=e:19180", false),
        ("TiKVInvariantViolated store=1 instance=e:19180", false),
        // an unreachable source mutes the unknowns of its own exporter
        (
            "TiKVHealthExporterSourceDown/prometheus store= instance=e:19180",
            false,
        ),
        ("TiKVInvariantUnknown store=3 instance=e:19180", true),
        ("TiKVInvariantUnknown store=3 instance=other:19180", false),
        // low space: one disk alert per store, the critical one
        ("TiKVDiskLowSpace store=4 instance=e:19180", false),
        ("TiKVDiskUsageHigh store=4 instance=e:19180", true),
        ("TiKVDiskUsageHigh store=5 instance=e:19180", false),
        // PD without a leader also reads as "PD down" from the same exporter: one page
        ("PDLeaderUnhealthy store= instance=e:19180", false),
        (
            "TiKVHealthExporterSourceDown/pd store= instance=e:19180",
            true,
        ),
        (
            "TiKVHealthExporterSourceDown/pd store= instance=third:19180",
            false,
        ),
        // PD down: its cluster-wide sources are not asked either; PD's alert is the one.
        (
            "TiKVHealthExporterSourceDown/pd:metrics store= instance=e:19180",
            true,
        ),
        (
            "TiKVHealthExporterSourceDown/pd:gc_safepoint store= instance=fourth:19180",
            false,
        ),
        // Store ids overlap between clusters: a down store mutes only its own cluster's store.
        ("TiKVStoreDown store=7 instance=ea:19180 cluster=a", false),
        ("TiKVStoreSlow store=7 instance=ea:19180 cluster=a", true),
        ("TiKVStoreSlow store=7 instance=eb:19180 cluster=b", false),
        // A down exporter is the one page for its unwatched cluster.
        (
            "TiKVHealthExporterDown store= instance=ec:19180 cluster=c",
            false,
        ),
        (
            "TiKVHealthExporterClusterUnwatched store= instance= cluster=c",
            true,
        ),
        (
            "TiKVHealthExporterClusterUnwatched store= instance= cluster=d",
            false,
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect();
    // The POST stores the alerts at once, but the inhibitor learns the source alerts from an
    // asynchronous subscription: until it has, an alert reads as not inhibited. Once the
    // inhibitions of every rule show, every source alert is in and the answer is final.
    let got = wait::until("every inhibit rule to apply", wait::PATIENCE, || {
        let got = inhibited();
        let applied = |k: &str| got.get(k) == Some(&true);
        if applied("TiKVStoreSlow store=1 instance=e:19180")
            && applied("TiKVInvariantUnknown store=3 instance=e:19180")
            && applied("TiKVDiskUsageHigh store=4 instance=e:19180")
            && applied("TiKVHealthExporterSourceDown/pd store= instance=e:19180")
            && applied("TiKVHealthExporterSourceDown/pd:metrics store= instance=e:19180")
            && applied("TiKVStoreSlow store=7 instance=ea:19180 cluster=a")
            && applied("TiKVHealthExporterClusterUnwatched store= instance= cluster=c")
        {
            Ok(got)
        } else {
            Err(format!("{got:#?}\n{}", am.log()))
        }
    });
    assert_eq!(got, want, "inhibited (true) per alert");
}

// ---------------------------------------------------------------------------------------------
// The rule files themselves

#[derive(Deserialize)]
struct RuleFile {
    groups: Vec<Group>,
}

#[derive(Deserialize)]
struct Group {
    name: String,
    rules: Vec<Rule>,
}

#[derive(Deserialize)]
struct Rule {
    #[serde(default)]
    alert: Option<String>,
    #[serde(default)]
    record: Option<String>,
    expr: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
}

fn parse_rules(rel: &str) -> RuleFile {
    serde_saphyr::from_str(&read(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// (group, rule) for every rule of every shipped rule file.
fn all_rules() -> Vec<(String, Rule)> {
    rule_files()
        .iter()
        .flat_map(|f| parse_rules(f).groups)
        .flat_map(|g| {
            let name = g.name;
            g.rules.into_iter().map(move |r| (name.clone(), r))
        })
        .collect()
}

/// A label matcher in a selector: `name op "value"`.
#[derive(Debug)]
struct Matcher {
    label: String,
    op: String,
    value: String,
}

const KEYWORDS: [&str; 14] = [
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "atan2",
    "inf",
    "nan",
];

/// The metric names (selectors) and label matchers of a PromQL expression: identifiers that are
/// neither functions (followed by `(`), keywords, label lists of `by`/`on`/... nor inside
/// strings, `{...}` or `[...]`.
fn promql_selectors(expr: &str) -> (Vec<String>, Vec<Matcher>) {
    let c: Vec<char> = expr.chars().collect();
    let (mut names, mut matchers) = (Vec::new(), Vec::new());
    let ident_start = |ch: char| ch.is_ascii_alphabetic() || ch == '_' || ch == ':';
    let ident_char = |ch: char| ch.is_ascii_alphanumeric() || ch == '_' || ch == ':';
    let skip_ws = |mut i: usize| {
        while i < c.len() && c[i].is_whitespace() {
            i += 1;
        }
        i
    };
    // A quoted string starting at `i`: (contents, index after it).
    let string = |i: usize| {
        let q = c[i];
        let mut j = i + 1;
        let mut s = String::new();
        while j < c.len() && c[j] != q {
            if c[j] == '\\' && q != '`' && j + 1 < c.len() {
                j += 1;
            }
            s.push(c[j]);
            j += 1;
        }
        (s, j + 1)
    };
    let mut i = 0;
    while i < c.len() {
        let ch = c[i];
        if ch == '"' || ch == '\'' || ch == '`' {
            i = string(i).1;
        } else if ch == '#' {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if ch == '[' {
            while i < c.len() && c[i] != ']' {
                i += 1;
            }
            i += 1;
        } else if ch == '{' {
            i += 1;
            loop {
                i = skip_ws(i);
                if i >= c.len() || c[i] == '}' {
                    i += 1;
                    break;
                }
                if c[i] == ',' {
                    i += 1;
                    continue;
                }
                let start = i;
                while i < c.len() && ident_char(c[i]) {
                    i += 1;
                }
                let label: String = c[start..i].iter().collect();
                i = skip_ws(i);
                let op_start = i;
                while i < c.len() && "=!~".contains(c[i]) {
                    i += 1;
                }
                let op: String = c[op_start..i].iter().collect();
                i = skip_ws(i);
                assert!(
                    i < c.len() && "\"'`".contains(c[i]) && !label.is_empty(),
                    "cannot parse the label matchers in {expr:?}"
                );
                let (value, next) = string(i);
                i = next;
                matchers.push(Matcher { label, op, value });
            }
        } else if ch.is_ascii_digit()
            || (ch == '.' && c.get(i + 1).is_some_and(char::is_ascii_digit))
        {
            while i < c.len() && (c[i].is_ascii_alphanumeric() || c[i] == '.') {
                i += 1;
            }
        } else if ident_start(ch) {
            let start = i;
            while i < c.len() && ident_char(c[i]) {
                i += 1;
            }
            let word: String = c[start..i].iter().collect();
            let next = skip_ws(i);
            let followed_by = |kw: &str| {
                let w: Vec<char> = kw.chars().collect();
                c.get(next..next + w.len()) == Some(&w[..])
                    && !c.get(next + w.len()).is_some_and(|&ch| ident_char(ch))
            };
            // A function call, or an aggregation written `sum by (x) (...)`.
            let is_call =
                next < c.len() && c[next] == '(' || followed_by("by") || followed_by("without");
            if KEYWORDS.contains(&word.as_str()) {
                if is_call {
                    // `by (a, b)`, `on(x)`, `group_left(y)`: a label list
                    i = next;
                    while i < c.len() && c[i] != ')' {
                        i += 1;
                    }
                    i += 1;
                }
            } else if !is_call {
                names.push(word);
            }
        } else {
            i += 1;
        }
    }
    (names, matchers)
}

#[test]
fn selector_parser_finds_metrics_and_matchers() {
    let (names, m) = promql_selectors(
        r#"sum without (source, event) (rate(tikv_leadership_changes_total{event=~"a|b", x="}"}[5m])) > 1
           unless on(instance) group_left(name) up{job!="x"} == 0 and absent(foo:bar offset 5m) * 1e3"#,
    );
    assert_eq!(names, ["tikv_leadership_changes_total", "up", "foo:bar"]);
    let m: Vec<_> = m
        .iter()
        .map(|m| format!("{}{}{}", m.label, m.op, m.value))
        .collect();
    assert_eq!(m, ["event=~a|b", "x=}", "job!=x"]);
}

/// Names exported by `src/exposition/metrics.rs`: its `"tikv_..."` literals, counters also with
/// the `_total` suffix the encoder appends.
fn exposition_names() -> BTreeSet<String> {
    let src = read("src/exposition/metrics.rs");
    let mut names = BTreeSet::new();
    for (i, _) in src.match_indices("\"tikv_") {
        let rest = &src[i + 1..];
        let name = &rest[..rest.find('"').unwrap()];
        if name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            names.insert(name.to_owned());
        }
    }
    // Counters are registered without `_total`; find them by the call that registers them.
    for (i, _) in src.match_indices("counters(") {
        if src[..i].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let rest = &src[i..];
        let Some(q) = rest.find('"') else { continue };
        let name = &rest[q + 1..];
        let name = &name[..name.find('"').unwrap()];
        names.insert(format!("{name}_total"));
    }
    assert!(
        names.contains("tikv_invariant_violation")
            && names.contains("tikv_leadership_changes_total"),
        "src/exposition/metrics.rs no longer looks as this test expects: {names:?}"
    );
    names
}

/// Names in README's metric table (the documented contract).
fn readme_names() -> BTreeSet<String> {
    let readme = read("README.md");
    let after = readme
        .split_once("**Metrics**")
        .expect("README.md: no **Metrics** table")
        .1;
    let mut names = BTreeSet::new();
    let mut in_table = false;
    for line in after.lines() {
        if line.starts_with('|') {
            in_table = true;
            let first_cell = line.split('|').nth(1).unwrap_or("");
            for (k, part) in first_cell.split('`').enumerate() {
                if k % 2 == 1 && part.starts_with("tikv_") {
                    names.insert(part.to_owned());
                }
            }
        } else if in_table {
            break;
        }
    }
    assert!(
        names.contains("tikv_invariant_violation"),
        "README.md metric table not found or changed shape: {names:?}"
    );
    names
}

/// `tikv_...` names mentioned in a template (the `query` lookups of the annotations).
fn template_names(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find("tikv_") {
        let before_ok = !rest[..i].ends_with(|c: char| c.is_ascii_alphanumeric() || c == '_');
        let end = rest[i..]
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
            .map_or(rest.len(), |e| i + e);
        if before_ok {
            out.push(rest[i..end].to_owned());
        }
        rest = &rest[end..];
    }
    out
}

#[test]
fn rules_reference_only_contract_metrics() {
    let exposition = exposition_names();
    let readme = readme_names();
    let rules = all_rules();
    let recorded: BTreeSet<String> = rules.iter().filter_map(|(_, r)| r.record.clone()).collect();
    let mut problems = Vec::new();
    let mut used = BTreeSet::new();
    for (group, rule) in &rules {
        let id = format!(
            "{group}/{}",
            rule.alert
                .as_deref()
                .or(rule.record.as_deref())
                .unwrap_or("?")
        );
        let (names, matchers) = promql_selectors(&rule.expr);
        assert!(
            !names.is_empty() || rule.expr.contains("vector("),
            "{id}: no metric found in {:?}",
            rule.expr
        );
        let mut check = |name: &str, place: &str| {
            used.insert(name.to_owned());
            if NOT_FROM_THE_EXPORTER.contains(&name) || recorded.contains(name) {
                return;
            }
            if !exposition.contains(name) {
                problems.push(format!(
                    "{id}: {place} uses `{name}`, which src/exposition/metrics.rs does not export"
                ));
            }
            if !readme.contains(name) {
                problems.push(format!(
                    "{id}: {place} uses `{name}`, which is not in README's metric table"
                ));
            }
        };
        for n in &names {
            check(n, "expr");
        }
        for (key, text) in &rule.annotations {
            for n in template_names(text) {
                check(&n, &format!("annotation {key}"));
            }
        }
        // Official rules' defect (TiKV_thread_apply_worker_cpu_seconds: `name="apply_.*"`): a
        // regex after `=` is a literal and matches nothing.
        for m in &matchers {
            if (m.op == "=" || m.op == "!=") && m.value.contains(['|', '*', '+', '?', '[', '(']) {
                problems.push(format!(
                    "{id}: `{}{}\"{}\"` is a regex: use =~ / !~",
                    m.label, m.op, m.value
                ));
            }
        }
        // Official rules' defect: scaling inside histogram_quantile changes nothing.
        if rule.expr.contains("histogram_quantile") {
            problems.push(format!(
                "{id}: histogram_quantile: the exporter already computes quantiles (use its gauges)"
            ));
        }
    }
    for core in [
        "tikv_invariant_violation",
        "tikv_invariant_unknown",
        "tikv_health_exporter_source_up",
        "tikv_leadership_changes_total",
        "up",
    ] {
        if !used.contains(core) {
            problems.push(format!("no rule uses `{core}`"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The alerts the issue asks for, by name.
const EXPECTED_ALERTS: [&str; 30] = [
    "TiKVStoreDown",
    "TiKVWriteLatencyHigh",
    "TiKVDiskUsageHigh",
    "TiKVDiskLowSpace",
    "TiKVCPUUsageHigh",
    "TiKVStoreSlow",
    "PDLeaderUnhealthy",
    "PDRegionDownPeers",
    "PDRegionMissPeers",
    "PDRegionPendingPeers",
    "PDRegionOfflinePeers",
    "PDEtcdUnhealthy",
    "TiKVGCStuck",
    "TiKVResolvedTsLagging",
    "TiKVStoreRestarted",
    // PD draining stores (issue #12).
    "TiKVLeaderImbalance",
    "TiKVOfflineStoreStuck",
    "TiKVInvariantViolated",
    "TiKVInvariantUnknown",
    "TiKVHealthExporterSourceDown",
    "TiKVHealthExporterStalled",
    "TiKVHealthExporterUnmappedSamples",
    "TiKVHealthExporterPDStoresRejected",
    "TiKVHealthExporterStateFileWriteFailing",
    "TiKVHealthExporterDown",
    "TiKVHealthExporterAbsent",
    "TiKVHealthExporterClusterUnwatched",
    "TiKVLeadershipChurn",
    "PDLeaderChurn",
    "Watchdog",
];

#[test]
fn alerts_have_severity_annotations_and_runbook_sections() {
    let runbook = read(RUNBOOK);
    let headings: BTreeSet<&str> = runbook
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(str::trim)
        .collect();
    let mut names = BTreeSet::new();
    let mut problems = Vec::new();
    for (_, rule) in all_rules() {
        let Some(alert) = rule.alert else { continue };
        names.insert(alert.clone());
        let on_invariant_gauge = promql_selectors(&rule.expr)
            .0
            .iter()
            .any(|n| n == "tikv_invariant_violation");
        // The gauge's configurable `severity` must pass through: a rule label would override it.
        match (on_invariant_gauge, rule.labels.get("severity")) {
            (true, Some(s)) => problems.push(format!(
                "{alert}: sets severity {s:?}, overriding the invariant's configured severity"
            )),
            (false, None) => problems.push(format!("{alert}: no severity label")),
            (false, Some(s)) if !["critical", "warning", "info", "none"].contains(&s.as_str()) => {
                problems.push(format!("{alert}: unknown severity {s:?}"))
            }
            _ => {}
        }
        for key in ["summary", "description", "runbook_url"] {
            if rule
                .annotations
                .get(key)
                .is_none_or(|v| v.trim().is_empty())
            {
                problems.push(format!("{alert}: no `{key}` annotation"));
            }
        }
        let want_url = format!("{RUNBOOK_BASE}{}", alert.to_lowercase());
        if rule.annotations.get("runbook_url") != Some(&want_url) {
            problems.push(format!("{alert}: runbook_url is not {want_url}"));
        }
        if !headings.contains(alert.as_str()) {
            problems.push(format!("{RUNBOOK} has no `## {alert}` section"));
        }
    }
    let expected: BTreeSet<String> = EXPECTED_ALERTS.iter().map(|s| s.to_string()).collect();
    assert_eq!(names, expected, "alert names");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[derive(Deserialize)]
struct TestFile {
    tests: Vec<TestGroup>,
}

#[derive(Deserialize)]
struct TestGroup {
    #[serde(default)]
    alert_rule_test: Vec<AlertTest>,
}

#[derive(Deserialize)]
struct AlertTest {
    alertname: String,
    #[serde(default)]
    exp_alerts: Vec<serde_json::Value>,
}

#[test]
fn every_alert_is_unit_tested_firing_and_not_firing() {
    let tests: TestFile =
        serde_saphyr::from_str(&read(RULE_TESTS)).unwrap_or_else(|e| panic!("{RULE_TESTS}: {e}"));
    let mut fired = BTreeSet::new();
    let mut quiet = BTreeSet::new();
    for t in tests.tests.iter().flat_map(|g| &g.alert_rule_test) {
        if t.exp_alerts.is_empty() {
            quiet.insert(t.alertname.as_str());
        } else {
            fired.insert(t.alertname.as_str());
        }
    }
    let mut missing = Vec::new();
    for alert in EXPECTED_ALERTS {
        if !fired.contains(alert) {
            missing.push(format!("{alert}: no firing case"));
        }
        // Watchdog always fires.
        if alert != "Watchdog" && !quiet.contains(alert) {
            missing.push(format!("{alert}: no not-firing case"));
        }
    }
    assert!(missing.is_empty(), "{RULE_TESTS}:\n{}", missing.join("\n"));
}
