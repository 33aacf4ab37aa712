//! The configured invariants: the built-ins of the [`catalog`] with the overrides of
//! `invariants.<name>` applied, plus the `custom_invariants`. [`build`] is the one validation of
//! both against the catalog (the run and `check-config` use it alike).

use std::time::Duration;

use super::catalog::{self, BUILTINS, Builtin, Data, ThresholdKind};
use super::engine::{Input, Rule};
use super::evaluate::{self, Evaluator};
use crate::config::{Config, ConfigError, CustomInvariant, InvariantOverride};
use crate::domain::Scope;
use crate::observations::Observations;

pub use catalog::{CPU_USAGE_QUERY, WRITE_LATENCY_P99_QUERY};

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
    /// One-line description for users.
    pub description: String,
    evaluate: Evaluator,
}

impl PartialEq for Definition {
    fn eq(&self, other: &Self) -> bool {
        self.rule == other.rule
            && self.scope == other.scope
            && self.query == other.query
            && self.description == other.description
            && self.builtin.map(|b| b.name) == other.builtin.map(|b| b.name)
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
        out.push(builtin(b, o));
    }
    out.extend(cfg.custom_invariants.iter().map(custom));
    Ok(out)
}

fn builtin(b: &'static Builtin, o: &InvariantOverride) -> Definition {
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
            name: b.name.to_owned(),
            severity: o.severity.unwrap_or(b.severity),
            op: b.op,
            threshold,
            clear_threshold,
            grace: secs(o.grace.map_or(b.grace, |g| g.0)),
            clear_grace: o.clear_grace.map_or(0.0, |g| secs(g.0)),
        },
        scope: b.scope,
        query: b
            .default_query()
            .map(|q| o.query.as_deref().unwrap_or(q).to_owned()),
        builtin: Some(b),
        description: b.description.to_owned(),
        evaluate: b.evaluate,
    }
}

fn custom(c: &CustomInvariant) -> Definition {
    Definition {
        rule: Rule {
            name: c.name.clone(),
            severity: c.severity,
            op: c.op,
            threshold: c.threshold,
            clear_threshold: c.clear_threshold,
            grace: secs(c.grace.0),
            clear_grace: secs(c.clear_grace.0),
        },
        scope: c.scope,
        query: Some(c.query.clone()),
        builtin: None,
        description: format!("custom: {} {} {}", c.query, c.op.as_str(), c.threshold),
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
        ];
        for (yaml, key, line) in cases {
            let e = load(yaml).unwrap_err();
            assert_eq!(e.key, key, "{yaml}");
            assert_eq!(e.line, line, "{yaml}: {e}");
        }
        let e = load("invariants:\n  store_down:\n    query: up\n").unwrap_err();
        assert_eq!(
            e.message,
            "store_down does not take query (only write_latency_p99, cpu_usage do)"
        );
    }

    #[test]
    fn defaults_come_from_the_catalog() {
        let defs = load("").unwrap();
        let names: Vec<&str> = defs.iter().map(|d| d.rule.name.as_str()).collect();
        // Without prometheus.url the Prometheus-based built-ins are off.
        assert_eq!(
            names,
            ["store_down", "disk_usage", "store_slow", "pd_leader"]
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
        let cpu = defs.iter().find(|d| d.rule.name == "cpu_usage").unwrap();
        assert_eq!(cpu.query(), Some(CPU_USAGE_QUERY));
        assert!(cpu.is_builtin_prometheus());
    }

    #[test]
    fn overrides_apply_and_percentages_become_ratios() {
        let defs = load(
            "prometheus:\n  url: http://p:9090\ninvariants:\n  disk_usage:\n    threshold_percent: 85\n    clear_threshold: 80\n    severity: critical\n    grace: 1m\n    clear_grace: 30s\n  cpu_usage:\n    query: my_cpu\n  store_slow:\n    enabled: false\ncustom_invariants:\n  - name: raft_lag\n    query: lag\n    op: \">=\"\n    threshold: 5\n    scope: cluster\n",
        )
        .unwrap();
        let disk = defs.iter().find(|d| d.rule.name == "disk_usage").unwrap();
        assert_eq!(disk.rule.threshold, 0.85);
        assert_eq!(disk.rule.clear_threshold, Some(0.8));
        assert_eq!(disk.rule.severity, crate::domain::Severity::Critical);
        assert_eq!((disk.rule.grace, disk.rule.clear_grace), (60.0, 30.0));
        let cpu = defs.iter().find(|d| d.rule.name == "cpu_usage").unwrap();
        assert_eq!(cpu.query(), Some("my_cpu"));
        assert!(defs.iter().all(|d| d.rule.name != "store_slow"));
        let lag = defs.last().unwrap();
        assert_eq!(lag.rule.name, "raft_lag");
        assert_eq!(lag.scope, Scope::Cluster);
        assert_eq!(lag.query(), Some("lag"));
        assert!(lag.builtin.is_none() && !lag.is_builtin_prometheus());
    }
}
