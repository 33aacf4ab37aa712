//! Unit tests of the built-in invariant catalog (`catalog.rs`).

use super::*;

#[test]
fn names_are_unique_and_label_safe() {
    let mut seen = std::collections::BTreeSet::new();
    for b in &BUILTINS {
        assert!(seen.insert(b.name), "{} twice", b.name);
        assert!(
            b.name
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_'),
            "{}",
            b.name
        );
        assert!(b.threshold.is_finite());
    }
}

#[test]
fn keys_follow_the_threshold_kind_and_the_data() {
    for b in &BUILTINS {
        assert_eq!(
            b.accepts("threshold_percent"),
            b.threshold_kind == ThresholdKind::Ratio,
            "{}",
            b.name
        );
        assert_eq!(
            b.accepts("query"),
            matches!(b.data, Data::Prometheus(_)),
            "{}",
            b.name
        );
        assert!(b.accepts("grace") && b.accepts("enabled"));
    }
    assert_eq!(
        accepting("threshold_percent"),
        "disk_usage, disk_low_space, cpu_usage, thread_pool_cpu, memory_usage, leader_imbalance"
    );
    assert!(find("store_down").is_some() && find("nope").is_none());
}

/// The shipped rule file's alerts: name, expression and annotations.
fn shipped_rules() -> Vec<(String, String, std::collections::BTreeMap<String, String>)> {
    #[derive(serde::Deserialize)]
    struct File {
        groups: Vec<Group>,
    }
    #[derive(serde::Deserialize)]
    struct Group {
        rules: Vec<Rule>,
    }
    #[derive(serde::Deserialize)]
    struct Rule {
        alert: String,
        expr: String,
        #[serde(default)]
        annotations: std::collections::BTreeMap<String, String>,
    }
    let text = include_str!("../../alerts/tikv-health-exporter.rules.yml");
    let file: File = serde_saphyr::from_str(text).unwrap();
    file.groups
        .into_iter()
        .flat_map(|g| g.rules)
        .map(|r| (r.alert, r.expr, r.annotations))
        .collect()
}

#[test]
fn every_alert_is_the_shipped_rules_alert_for_its_invariant() {
    let rules = shipped_rules();
    let runbook = include_str!("../../alerts/runbook.md");
    for b in &BUILTINS {
        let selector = format!("tikv_invariant_violation{{name=\"{}\"}}", b.name);
        let rule = rules
            .iter()
            .find(|(alert, expr, _)| alert == b.alert.name && expr.contains(&selector))
            .unwrap_or_else(|| panic!("no rule {} on {selector}", b.alert.name));
        assert_eq!(rule.2["summary"], b.alert.summary, "{}", b.name);
        assert_eq!(rule.2["runbook_url"], b.alert.runbook_url(), "{}", b.name);
        assert_eq!(alert_for(b.name).name, b.alert.name);
    }
    let custom = rules
        .iter()
        .find(|(alert, _, _)| alert == CUSTOM_ALERT.name)
        .expect("the catch-all rule");
    assert_eq!(custom.2["summary"], CUSTOM_ALERT.summary);
    assert_eq!(custom.2["runbook_url"], CUSTOM_ALERT.runbook_url());
    for b in &BUILTINS {
        assert!(custom.1.contains(b.name), "catch-all excludes {}", b.name);
    }
    assert_eq!(alert_for("my_custom").name, "TiKVInvariantViolated");
    for a in BUILTINS.iter().map(|b| &b.alert).chain([&CUSTOM_ALERT]) {
        assert!(
            runbook.contains(&format!("\n## {}\n", a.name)),
            "runbook anchor for {}",
            a.name
        );
        assert!(a.detail.contains("{value}"), "{}", a.name);
    }
}
