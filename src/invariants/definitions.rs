//! The configured invariants: the built-ins of the [`catalog`] with the overrides of
//! `invariants.<name>` applied, plus the `custom_invariants`. [`build`] is the one validation of
//! both against the catalog (the run and `check-config` use it alike).

use std::borrow::Cow;
use std::sync::Arc;
use std::time::Duration;

use super::catalog::{self, BUILTINS, Builtin, Data, PdThreshold, ThresholdKind};
use super::engine::{Input, Rule};
use super::evaluate::{self, Evaluator};
use crate::config::{Config, ConfigError, CustomInvariant, InvariantOverride, parse_selector};
use crate::domain::{MAPPING_LABELS, Scope};
use crate::observations::Observations;

/// One configured invariant.
#[derive(Clone, Debug)]
pub struct Definition {
    /// Thresholds, grace periods, severity.
    pub rule: Rule,
    /// Per store or cluster-wide.
    pub scope: Scope,
    /// The PromQL it needs each poll, if any.
    pub query: Option<String>,
    /// The catalog entry of a built-in; `None` for custom invariants.
    pub builtin: Option<&'static Builtin>,
    /// One-line description for users (shared with every series' view).
    pub description: Arc<str>,
    /// The threshold comes from PD's schedule configuration (none was configured).
    pub pd_threshold: Option<PdThreshold>,
    /// `pd_etcd`'s two limits (the catalog's defaults for every other invariant).
    pub etcd: EtcdLimits,
    evaluate: Evaluator,
}

/// The limits of `pd_etcd`, which judges two numbers (`invariants.pd_etcd.wal_fsync_threshold`,
/// `invariants.pd_etcd.db_quota_ratio`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EtcdLimits {
    /// WAL fsync p99 limit, seconds.
    pub wal_fsync_p99: f64,
    /// Database size limit as a fraction of `quota-backend-bytes`.
    pub db_quota_ratio: f64,
}

impl Default for EtcdLimits {
    fn default() -> Self {
        EtcdLimits {
            wal_fsync_p99: catalog::WAL_FSYNC_P99_LIMIT,
            db_quota_ratio: catalog::DB_QUOTA_RATIO_LIMIT,
        }
    }
}

impl PartialEq for Definition {
    fn eq(&self, other: &Self) -> bool {
        self.rule == other.rule
            && self.scope == other.scope
            && self.query == other.query
            && self.description == other.description
            && self.builtin.map(|b| b.name) == other.builtin.map(|b| b.name)
            && self.etcd == other.etcd
    }
}

impl Definition {
    /// The PromQL this invariant needs each poll, if any.
    pub fn query(&self) -> Option<&str> {
        self.query.as_deref()
    }

    /// Whether this is a built-in reading TiKV's metrics through Prometheus (held unknown
    /// while Prometheus' rate windows refill after a restart).
    pub fn is_builtin_prometheus(&self) -> bool {
        self.builtin
            .is_some_and(|b| matches!(b.data, Data::Prometheus(_)))
    }

    /// The engine inputs for this round: `(store, input)` for every store (or `""` for
    /// cluster-wide invariants) this invariant applies to.
    pub fn inputs(&self, obs: &Observations) -> Vec<(String, Input)> {
        (self.evaluate)(self, obs)
    }

    /// The rule for this round: the threshold PD configures, when it comes from PD and PD
    /// reported it (the catalog's fallback otherwise).
    pub fn rule_for(&self, obs: &Observations) -> Cow<'_, Rule> {
        match self.pd_threshold.and_then(|t| t.value(&obs.schedule)) {
            Some(t) if t != self.rule.threshold => Cow::Owned(Rule {
                threshold: t,
                ..self.rule.clone()
            }),
            _ => Cow::Borrowed(&self.rule),
        }
    }
}

/// Fills a built-in query template: `{by}` the labels samples map to stores by (plus
/// `extra_label`), `{sel}` the selector's matchers after a comma, `{bare}` the selector in
/// braces (or nothing), `{types}` the gRPC write types, `{read_types}` the gRPC read types.
pub fn render_query(template: &str, selector: &[String], extra_label: Option<&str>) -> String {
    let mut by: Vec<&str> = MAPPING_LABELS.to_vec();
    if let Some(l) = extra_label
        && !by.contains(&l)
    {
        by.push(l);
    }
    let sel: String = selector.iter().map(|m| format!(",{m}")).collect();
    let bare = if selector.is_empty() {
        String::new()
    } else {
        format!("{{{}}}", selector.join(","))
    };
    template
        .replace("{by}", &by.join(", "))
        .replace("{sel}", &sel)
        .replace("{bare}", &bare)
        .replace("{types}", catalog::WRITE_REQUEST_TYPES)
        .replace("{read_types}", catalog::READ_REQUEST_TYPES)
}

/// The default query of the built-in `name` without a selector (as Prometheus is asked it).
pub fn default_query(name: &str) -> Option<String> {
    Some(render_query(
        catalog::find(name)?.default_query()?,
        &[],
        None,
    ))
}

/// Validates the configuration (`text`: the file it came from, for error lines) and builds its
/// invariants: what both the run and `check-config` do.
pub fn checked(cfg: &Config, text: &str) -> Result<Vec<Definition>, ConfigError> {
    cfg.validate_in(text)?;
    build(cfg).map_err(|e| e.located_in(text))
}

/// Validates `invariants` and `custom_invariants` against the catalog and builds every enabled
/// invariant. Prometheus-based built-ins are left out when no Prometheus URL is configured.
pub fn build(cfg: &Config) -> Result<Vec<Definition>, ConfigError> {
    for (name, o) in &cfg.invariants {
        check_override(name, o)?;
    }
    check_customs(cfg)?;
    let mut out = Vec::new();
    let none = InvariantOverride::default();
    for b in &BUILTINS {
        let o = cfg.invariants.get(b.name).unwrap_or(&none);
        if o.enabled == Some(false) {
            continue;
        }
        if matches!(b.data, Data::Prometheus(_)) && cfg.prometheus.url.is_none() {
            continue;
        }
        out.push(builtin(b, o, cfg));
    }
    let hold = secs(cfg.unknown_hold.0);
    out.extend(cfg.custom_invariants.iter().map(|c| custom(c, hold)));
    Ok(out)
}

fn builtin(b: &'static Builtin, o: &InvariantOverride, cfg: &Config) -> Definition {
    let ratio = b.threshold_kind == ThresholdKind::Ratio;
    let threshold = o
        .threshold
        .or(o.threshold_percent.map(|p| p / 100.0))
        .unwrap_or(b.threshold);
    let clear_threshold = o
        .clear_threshold
        .map(|c| if ratio && c > 1.0 { c / 100.0 } else { c });
    Definition {
        rule: Rule {
            name: b.name.into(),
            severity: o.severity.unwrap_or(b.severity),
            op: b.op,
            threshold,
            clear_threshold,
            grace: secs(o.grace.map_or(b.grace, |g| g.0)),
            clear_grace: o.clear_grace.map_or(0.0, |g| secs(g.0)),
            unknown_hold: secs(cfg.unknown_hold.0),
        },
        scope: b.scope,
        query: b.default_query().map(|template| match &o.query {
            Some(q) => q.clone(),
            None => {
                // Validated by `Config::validate`.
                let selector = cfg
                    .prometheus
                    .selector
                    .as_deref()
                    .map(|s| parse_selector(s).unwrap_or_default())
                    .unwrap_or_default();
                let label = cfg
                    .prometheus
                    .store_mapping
                    .as_ref()
                    .map(|m| m.label.as_str());
                render_query(template, &selector, label)
            }
        }),
        builtin: Some(b),
        description: b.description.into(),
        pd_threshold: b
            .pd_threshold
            .filter(|_| o.threshold.is_none() && o.threshold_percent.is_none()),
        etcd: EtcdLimits {
            wal_fsync_p99: o
                .wal_fsync_threshold
                .map_or(catalog::WAL_FSYNC_P99_LIMIT, |d| secs(d.0)),
            db_quota_ratio: o.db_quota_ratio.unwrap_or(catalog::DB_QUOTA_RATIO_LIMIT),
        },
        evaluate: b.evaluate,
    }
}

fn custom(c: &CustomInvariant, unknown_hold: f64) -> Definition {
    Definition {
        rule: Rule {
            name: c.name.as_str().into(),
            severity: c.severity,
            op: c.op,
            threshold: c.threshold,
            clear_threshold: c.clear_threshold,
            grace: secs(c.grace.0),
            clear_grace: secs(c.clear_grace.0),
            unknown_hold,
        },
        scope: c.scope,
        query: Some(c.query.clone()),
        builtin: None,
        pd_threshold: None,
        etcd: EtcdLimits::default(),
        description: format!("custom: {} {} {}", c.query, c.op.as_str(), c.threshold).into(),
        evaluate: evaluate::custom_query,
    }
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// Checks `invariants.<name>` against the catalog entry of `name`.
fn check_override(name: &str, o: &InvariantOverride) -> Result<(), ConfigError> {
    let key = |k: &str| format!("invariants.{name}.{k}");
    let Some(b) = catalog::find(name) else {
        return Err(ConfigError::new(
            format!("invariants.{name}"),
            format!(
                "unknown invariant (built-ins: {}; define others under custom_invariants)",
                catalog::names()
            ),
        ));
    };
    let set = [
        ("threshold", o.threshold.is_some()),
        ("threshold_percent", o.threshold_percent.is_some()),
        ("clear_threshold", o.clear_threshold.is_some()),
        ("query", o.query.is_some()),
        ("wal_fsync_threshold", o.wal_fsync_threshold.is_some()),
        ("db_quota_ratio", o.db_quota_ratio.is_some()),
    ];
    for (k, is_set) in set {
        if is_set && !b.accepts(k) {
            return Err(ConfigError::new(
                key(k),
                format!(
                    "{name} does not take {k} (only {} do)",
                    catalog::accepting(k)
                ),
            ));
        }
    }
    if o.threshold.is_some() && o.threshold_percent.is_some() {
        return Err(ConfigError::new(
            key("threshold_percent"),
            "give either threshold or threshold_percent",
        ));
    }
    if let Some(p) = o.threshold_percent
        && !(0.0..=100.0).contains(&p)
    {
        return Err(ConfigError::new(
            key("threshold_percent"),
            format!("{p} is not in 0..=100"),
        ));
    }
    for (k, v) in [
        ("threshold", o.threshold),
        ("clear_threshold", o.clear_threshold),
    ] {
        if v.is_some_and(|v| !v.is_finite()) {
            return Err(ConfigError::new(key(k), "must be a finite number"));
        }
    }
    if o.wal_fsync_threshold.is_some_and(|d| d.0.is_zero()) {
        return Err(ConfigError::new(
            key("wal_fsync_threshold"),
            "must be greater than 0",
        ));
    }
    if let Some(r) = o.db_quota_ratio
        && !(r > 0.0 && r <= 1.0)
    {
        return Err(ConfigError::new(
            key("db_quota_ratio"),
            format!("{r} is not in (0, 1] (a fraction of quota-backend-bytes, e.g. 0.8)"),
        ));
    }
    if o.query.as_deref().is_some_and(|q| q.trim().is_empty()) {
        return Err(ConfigError::new(key("query"), "empty query"));
    }
    Ok(())
}

/// Checks `custom_invariants`: label-safe unique names that are not built-ins, a query, finite
/// thresholds, and a Prometheus to ask.
fn check_customs(cfg: &Config) -> Result<(), ConfigError> {
    let mut seen = std::collections::BTreeSet::new();
    for (i, c) in cfg.custom_invariants.iter().enumerate() {
        let key = |k: &str| format!("custom_invariants[{i}].{k}");
        let valid = !c.name.is_empty()
            && c.name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !valid {
            return Err(ConfigError::new(
                key("name"),
                format!("`{}` must match [a-z0-9_]+", c.name),
            ));
        }
        if catalog::find(&c.name).is_some() || !seen.insert(c.name.clone()) {
            return Err(ConfigError::new(
                key("name"),
                format!("`{}` is already defined", c.name),
            ));
        }
        if c.query.trim().is_empty() {
            return Err(ConfigError::new(key("query"), "empty query"));
        }
        if !c.threshold.is_finite() || c.clear_threshold.is_some_and(|v| !v.is_finite()) {
            return Err(ConfigError::new(
                key("threshold"),
                "must be a finite number",
            ));
        }
    }
    if !cfg.custom_invariants.is_empty() && cfg.prometheus.url.is_none() {
        return Err(ConfigError::new(
            "prometheus.url",
            "custom_invariants need a Prometheus URL",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(yaml: &str) -> Result<Vec<Definition>, ConfigError> {
        checked(&Config::parse_yaml(yaml)?, yaml)
    }

    #[test]
    fn invariant_rules_name_their_key_and_line() {
        let cases = [
            (
                "invariants:\n  store_down:\n    threshold_percent: 5\n",
                "invariants.store_down.threshold_percent",
                Some(3),
            ),
            (
                "invariants:\n  disk_usage:\n    threshold: 0.5\n    threshold_percent: 50\n",
                "invariants.disk_usage.threshold_percent",
                Some(4),
            ),
            (
                "invariants:\n  disk_usage:\n    query: up\n",
                "invariants.disk_usage.query",
                Some(3),
            ),
            (
                "prometheus:\n  url: http://p:9090\ncustom_invariants:\n  - name: Bad-Name\n    query: up\n    op: \">\"\n    threshold: 1\n",
                "custom_invariants[0].name",
                Some(4),
            ),
            (
                "custom_invariants:\n  - name: x\n    query: up\n    op: \">\"\n    threshold: 1\n",
                "prometheus.url",
                None,
            ),
            (
                "invariants:\n  nope:\n    grace: 1s\n",
                "invariants.nope",
                Some(2),
            ),
            (
                "invariants:\n  pd_leader:\n    threshold: 2\n",
                "invariants.pd_leader.threshold",
                Some(3),
            ),
            (
                "invariants:\n  pd_etcd:\n    threshold: 2\n",
                "invariants.pd_etcd.threshold",
                Some(3),
            ),
            (
                "invariants:\n  gc_safepoint_lag:\n    db_quota_ratio: 0.5\n",
                "invariants.gc_safepoint_lag.db_quota_ratio",
                Some(3),
            ),
            (
                "invariants:\n  pd_etcd:\n    db_quota_ratio: 80\n",
                "invariants.pd_etcd.db_quota_ratio",
                Some(3),
            ),
            (
                "invariants:\n  pd_etcd:\n    wal_fsync_threshold: 0s\n",
                "invariants.pd_etcd.wal_fsync_threshold",
                Some(3),
            ),
            (
                "prometheus:\n  selector: 'tidb_cluster=basic'\n",
                "prometheus.selector",
                Some(2),
            ),
            (
                "prometheus:\n  store_mapping:\n    label: node\n    regex: '('\n",
                "prometheus.store_mapping.regex",
                Some(4),
            ),
        ];
        for (yaml, key, line) in cases {
            let e = load(yaml).unwrap_err();
            assert_eq!(e.key, key, "{yaml}");
            assert_eq!(e.line, line, "{yaml}: {e}");
        }
        let e = load("invariants:\n  store_down:\n    query: up\n").unwrap_err();
        assert_eq!(
            e.message,
            "store_down does not take query (only write_latency_p99, cpu_usage, thread_pool_cpu, write_flow_control, read_latency_p99, memory_usage do)"
        );
    }

    #[test]
    fn defaults_come_from_the_catalog() {
        let defs = load("").unwrap();
        let names: Vec<&str> = defs.iter().map(|d| &*d.rule.name).collect();
        // Without prometheus.url the Prometheus-based built-ins are off.
        assert_eq!(
            names,
            [
                "store_down",
                "disk_usage",
                "disk_low_space",
                "store_slow",
                "pd_leader",
                "region_down_peers",
                "region_miss_peers",
                "region_pending_peers",
                "region_offline_peers",
                "pd_etcd",
                "gc_safepoint_lag",
                "resolved_ts_lag",
                "store_restarted",
                "leader_imbalance",
                "offline_store_stuck"
            ]
        );
        for d in &defs {
            let b = catalog::find(&d.rule.name).unwrap();
            assert_eq!(d.rule.threshold, b.threshold);
            assert_eq!(d.rule.grace, b.grace.as_secs_f64());
            assert_eq!(
                (d.rule.severity, d.rule.op, d.scope),
                (b.severity, b.op, b.scope)
            );
            assert!(d.query.is_none() && d.builtin.is_some());
        }
        let defs = load("prometheus:\n  url: http://p:9090\n").unwrap();
        let cpu = defs.iter().find(|d| &*d.rule.name == "cpu_usage").unwrap();
        assert_eq!(cpu.query(), default_query("cpu_usage").as_deref());
        assert!(cpu.is_builtin_prometheus());
        assert_eq!(cpu.rule.unknown_hold, 300.0);
    }

    #[test]
    fn the_selector_lands_in_every_vector_selector_of_the_builtin_queries() {
        let defs = load(
            "prometheus:\n  url: http://p:9090\n  selector: 'tidb_cluster=\"basic\", namespace=~\"tidb|prod\"'\n  store_mapping:\n    label: node\n    regex: (.*)\n",
        )
        .unwrap();
        let q = |name: &str| {
            defs.iter()
                .find(|d| &*d.rule.name == name)
                .unwrap()
                .query()
                .unwrap()
                .to_owned()
        };
        let w = q("write_latency_p99");
        assert_eq!(
            w.matches(r#",tidb_cluster="basic",namespace=~"tidb|prod"}"#)
                .count(),
            2,
            "{w}"
        );
        assert!(w.contains("sum by (le, instance, kubernetes_pod_name, pod, kubernetes_namespace, namespace, store, node)"), "{w}");
        let c = q("cpu_usage");
        assert_eq!(
            c.matches(r#"{tidb_cluster="basic",namespace=~"tidb|prod"}"#)
                .count(),
            2,
            "{c}"
        );
        // Without a selector: no empty braces.
        let plain = default_query("cpu_usage").unwrap();
        assert!(plain.contains("process_cpu_seconds_total[1m]"), "{plain}");
        assert!(!plain.contains("{}"), "{plain}");
        // A query override is the user's own text.
        let defs = load("prometheus:\n  url: http://p:9090\n  selector: 'a=\"b\"'\ninvariants:\n  cpu_usage:\n    query: my_cpu\n").unwrap();
        assert_eq!(
            defs.iter()
                .find(|d| &*d.rule.name == "cpu_usage")
                .unwrap()
                .query(),
            Some("my_cpu")
        );
    }

    #[test]
    fn space_thresholds_come_from_pd_unless_configured() {
        let defs = load("invariants:\n  disk_low_space:\n    threshold_percent: 90\n").unwrap();
        let mut obs = Observations::new(0.0, Vec::new());
        obs.schedule.high_space_ratio = Some(0.6);
        obs.schedule.low_space_ratio = Some(0.75);
        let t = |obs: &Observations, name: &str| {
            defs.iter()
                .find(|d| &*d.rule.name == name)
                .unwrap()
                .rule_for(obs)
                .threshold
        };
        assert_eq!(t(&obs, "disk_usage"), 0.6, "PD's high-space-ratio");
        assert_eq!(t(&obs, "disk_low_space"), 0.9, "configured");
        obs.schedule = Default::default();
        assert_eq!(t(&obs, "disk_usage"), 0.7, "fallback");
    }

    #[test]
    fn pd_etcd_takes_its_two_limits() {
        let defs = load(
            "invariants:\n  pd_etcd:\n    wal_fsync_threshold: 500ms\n    db_quota_ratio: 0.9\n",
        )
        .unwrap();
        let etcd = defs.iter().find(|d| &*d.rule.name == "pd_etcd").unwrap();
        assert_eq!(
            etcd.etcd,
            EtcdLimits {
                wal_fsync_p99: 0.5,
                db_quota_ratio: 0.9
            }
        );
        let defs = load("").unwrap();
        let etcd = defs.iter().find(|d| &*d.rule.name == "pd_etcd").unwrap();
        assert_eq!(
            (etcd.etcd.wal_fsync_p99, etcd.etcd.db_quota_ratio),
            (1.0, 0.8)
        );
        let e = load("invariants:\n  store_down:\n    wal_fsync_threshold: 1s\n").unwrap_err();
        assert_eq!(
            e.message,
            "store_down does not take wal_fsync_threshold (only pd_etcd do)"
        );
    }

    #[test]
    fn overrides_apply_and_percentages_become_ratios() {
        let defs = load(
            "prometheus:\n  url: http://p:9090\ninvariants:\n  disk_usage:\n    threshold_percent: 85\n    clear_threshold: 80\n    severity: critical\n    grace: 1m\n    clear_grace: 30s\n  cpu_usage:\n    query: my_cpu\n  store_slow:\n    enabled: false\ncustom_invariants:\n  - name: raft_lag\n    query: lag\n    op: \">=\"\n    threshold: 5\n    scope: cluster\n",
        )
        .unwrap();
        let disk = defs.iter().find(|d| &*d.rule.name == "disk_usage").unwrap();
        assert_eq!(disk.rule.threshold, 0.85);
        assert_eq!(disk.rule.clear_threshold, Some(0.8));
        assert_eq!(disk.rule.severity, crate::domain::Severity::Critical);
        assert_eq!((disk.rule.grace, disk.rule.clear_grace), (60.0, 30.0));
        let cpu = defs.iter().find(|d| &*d.rule.name == "cpu_usage").unwrap();
        assert_eq!(cpu.query(), Some("my_cpu"));
        assert!(defs.iter().all(|d| &*d.rule.name != "store_slow"));
        let lag = defs.last().unwrap();
        assert_eq!(&*lag.rule.name, "raft_lag");
        assert_eq!(lag.scope, Scope::Cluster);
        assert_eq!(lag.query(), Some("lag"));
        assert!(lag.builtin.is_none() && !lag.is_builtin_prometheus());
    }
}
