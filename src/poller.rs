//! The poller: one round queries PD (`/stores` every poll, health less often) and Prometheus
//! (one query per invariant, whatever the number of stores), builds [`Observations`], runs the
//! invariant engine and returns the [`Snapshot`] to publish. A failing source marks itself
//! down, keeps its last good data, and makes what depends on it unknown. Time comes from an
//! injected [`Clock`], so tests drive rounds through time with fixed observations.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::clock::{Clock, SystemClock};
use crate::config::{Config, ConfigError, TiflashMode};
use crate::domain::{PdHealth, Store, StoreState};
use crate::invariants::definitions::{self, Definition};
use crate::invariants::engine::{Engine, Persisted};
use crate::invariants::state_file::{self, StateFileError};
use crate::observations::{Observations, QueryResults, Unavailable};
use crate::snapshot::{InvariantView, Snapshot, SourceHealth, StoreView};
use crate::sources::pd::{PdClient, PdClientConfig, PdError, PdTls};
use crate::sources::prometheus::{PromClient, PromError};

/// Why the poller cannot start.
#[derive(Debug, thiserror::Error)]
pub enum PollerError {
    /// The PD client configuration is unusable.
    #[error("pd: {0}")]
    Pd(#[from] PdError),
    /// The Prometheus URL or client is unusable.
    #[error("prometheus.url: {0}")]
    Prometheus(#[from] PromError),
    /// The invariants do not validate.
    #[error("invalid configuration: {0}")]
    Config(#[from] ConfigError),
    /// The state file cannot be read.
    #[error(transparent)]
    StateFile(#[from] StateFileError),
}

/// Polls the sources and evaluates the invariants.
pub struct Poller {
    pd: PdClient,
    prom: Option<Arc<PromClient>>,
    defs: Vec<Definition>,
    engine: Engine,
    clock: Arc<dyn Clock>,
    tiflash: TiflashMode,
    health_interval: f64,
    prometheus_warmup: f64,
    prometheus_started: Option<f64>,
    prometheus_warm_until: f64,
    stores: Vec<Store>,
    pd_health: Result<PdHealth, Unavailable>,
    last_health: Option<f64>,
    max_store_down_time: Option<Duration>,
    sources: BTreeMap<String, SourceHealth>,
    state_file: Option<PathBuf>,
    saved: Vec<Persisted>,
}

impl Poller {
    /// Builds the clients and definitions and restores the state file, if configured.
    pub fn new(cfg: &Config) -> Result<Poller, PollerError> {
        Self::with_clock(cfg, Arc::new(SystemClock))
    }

    /// Like [`Poller::new`], reading time from `clock`.
    pub fn with_clock(cfg: &Config, clock: Arc<dyn Clock>) -> Result<Poller, PollerError> {
        let pd = PdClient::new(PdClientConfig {
            endpoints: cfg.pd.endpoints.clone(),
            timeout: cfg.pd.timeout.0,
            tls: cfg.pd.tls.as_ref().map(|t| PdTls {
                ca_file: t.ca_file.clone(),
                cert_file: t.cert_file.clone(),
                key_file: t.key_file.clone(),
            }),
            max_response_bytes: cfg.pd.max_response_bytes,
        })?;
        let prom = match &cfg.prometheus.url {
            Some(u) => Some(Arc::new(PromClient::new(u, cfg.prometheus.timeout.0)?)),
            None => None,
        };
        let defs = definitions::build(cfg)?;
        let mut engine = Engine::new();
        let mut saved = Vec::new();
        if let Some(p) = &cfg.state_file {
            saved = state_file::load(p, clock.now())?;
            engine.restore(&saved);
        }
        let mut sources = BTreeMap::new();
        sources.insert("pd".to_owned(), SourceHealth::default());
        if prom.is_some() {
            sources.insert("prometheus".to_owned(), SourceHealth::default());
        }
        Ok(Poller {
            pd,
            prom,
            defs,
            engine,
            clock,
            tiflash: cfg.pd.tiflash,
            health_interval: cfg.pd.health_interval.0.as_secs_f64(),
            prometheus_warmup: cfg.prometheus.warmup.0.as_secs_f64(),
            prometheus_started: None,
            prometheus_warm_until: 0.0,
            stores: Vec::new(),
            pd_health: Err(Unavailable::new("PD health not polled yet")),
            last_health: None,
            max_store_down_time: None,
            sources,
            state_file: cfg.state_file.clone(),
            saved,
        })
    }

    /// The configured invariants.
    pub fn definitions(&self) -> &[Definition] {
        &self.defs
    }

    /// The stores PD listed at the last successful poll (Tombstone and excluded ones removed).
    pub fn stores(&self) -> &[Store] {
        &self.stores
    }

    fn record(&mut self, source: &str, started: Instant, result: Result<(), Unavailable>) {
        let now = self.clock.now();
        let h = self.sources.entry(source.to_owned()).or_default();
        h.last_duration = Some(started.elapsed().as_secs_f64());
        match result {
            Ok(()) => {
                h.up = true;
                h.last_success = Some(now);
                h.last_error = None;
            }
            Err(e) => {
                h.up = false;
                h.last_error = Some(e.to_string());
            }
        }
    }

    async fn poll_pd(&mut self) -> Option<Unavailable> {
        let t = Instant::now();
        let err = match self.pd.stores().await {
            Ok(list) => {
                self.set_stores(list);
                None
            }
            Err(e) => Some(Unavailable::new(e.to_string())),
        };
        let now = self.clock.now();
        let due = self
            .last_health
            .is_none_or(|t| now - t >= self.health_interval)
            || self.pd_health.is_err();
        if err.is_none() && due {
            self.pd_health = self.poll_pd_health().await;
            self.last_health = Some(now);
        } else if let Some(e) = &err {
            self.pd_health = Err(Unavailable::new(format!("PD unavailable: {e}")));
        }
        self.record("pd", t, err.clone().map_or(Ok(()), Err));
        err
    }

    /// Keeps the stores to evaluate: Tombstone ones and, if configured, TiFlash ones removed.
    fn set_stores(&mut self, list: Vec<Store>) {
        self.stores = list
            .into_iter()
            .filter(|s| s.state != StoreState::Tombstone)
            .filter(|s| !(self.tiflash == TiflashMode::Exclude && s.is_tiflash()))
            .collect();
        self.stores.sort_by_key(|s| s.id);
    }

    async fn poll_pd_health(&mut self) -> Result<PdHealth, Unavailable> {
        let unavailable = |e: PdError| Unavailable::new(e.to_string());
        let members = self.pd.members().await.map_err(unavailable)?;
        let health = self.pd.health().await.map_err(unavailable)?;
        if let Ok(d) = self.pd.max_store_down_time().await {
            self.max_store_down_time = d;
        }
        Ok(PdHealth {
            leader: members.leader.map(|l| l.name).filter(|n| !n.is_empty()),
            unhealthy: health
                .iter()
                .filter(|h| !h.health)
                .map(|h| h.name.clone())
                .collect(),
            members: members.members.len().max(health.len()),
        })
    }

    async fn poll_prometheus(&mut self) -> QueryResults {
        let mut out = BTreeMap::new();
        let Some(prom) = self.prom.clone() else {
            return out;
        };
        let queries: std::collections::BTreeSet<String> = self
            .defs
            .iter()
            .filter_map(|d| d.query().map(str::to_owned))
            .collect();
        if queries.is_empty() {
            return out;
        }
        let t = Instant::now();
        let mut set = tokio::task::JoinSet::new();
        for q in queries {
            let prom = prom.clone();
            set.spawn(async move {
                let r = prom
                    .query(&q)
                    .await
                    .map_err(|e| Unavailable::new(e.to_string()));
                (q, r)
            });
        }
        while let Some(done) = set.join_next().await {
            if let Ok((q, r)) = done {
                out.insert(q, r);
            }
        }
        let failed: Vec<&Unavailable> = out.values().filter_map(|r| r.as_ref().err()).collect();
        let result = if !failed.is_empty() && failed.len() == out.len() {
            Err(failed[0].clone())
        } else {
            Ok(())
        };
        self.record("prometheus", t, result);
        if self.prometheus_warmup > 0.0 {
            if let Ok(started) = prom.start_time().await {
                self.prometheus_started_at(started);
            }
            self.hold_during_warmup(&mut out);
        }
        out
    }

    /// Notes Prometheus' start time; a restart begins a warm-up period.
    fn prometheus_started_at(&mut self, started: f64) {
        if self
            .prometheus_started
            .is_some_and(|prev| started > prev + 1.0)
        {
            self.prometheus_warm_until = started + self.prometheus_warmup;
        }
        self.prometheus_started = Some(started);
    }

    /// A Prometheus seen restarting has a gap in its rate windows and reads low until they
    /// refill: the built-in rate queries are unknown for `prometheus.warmup` after a restart.
    fn hold_during_warmup(&self, out: &mut QueryResults) {
        let left = self.prometheus_warm_until - self.clock.now();
        if left <= 0.0 {
            return;
        }
        for d in self.defs.iter().filter(|d| d.is_builtin_prometheus()) {
            if let Some(q) = d.query()
                && let Some(Ok(_)) = out.get(q)
            {
                out.insert(
                    q.to_owned(),
                    Err(Unavailable::new(format!(
                        "Prometheus restarted; its rate windows have a gap for {left:.0}s more (prometheus.warmup)"
                    ))),
                );
            }
        }
    }

    /// One round: poll, evaluate, persist, and return the snapshot to publish.
    pub async fn poll(&mut self) -> Snapshot {
        let pd_error = self.poll_pd().await;
        let prom = self.poll_prometheus().await;
        let obs = Observations {
            now: self.clock.now(),
            stores: self.stores.clone(),
            pd_error,
            pd_health: self.pd_health.clone(),
            max_store_down_time: self.max_store_down_time,
            prom,
        };
        self.evaluate(&obs)
    }

    /// Evaluates every invariant on `obs` and builds the snapshot (separate from polling so
    /// tests can drive time).
    pub fn evaluate(&mut self, obs: &Observations) -> Snapshot {
        let mut views = Vec::new();
        for d in &self.defs {
            let inputs = d.inputs(obs);
            if obs.pd_error.is_none() {
                // Stores PD no longer lists (e.g. Tombstone) lose their series.
                let keep: std::collections::HashSet<&str> =
                    inputs.iter().map(|(s, _)| s.as_str()).collect();
                self.engine
                    .retain_stores(&d.rule.name, &|s: &str| keep.contains(s));
            }
            for (store, input) in inputs {
                let st = self.engine.evaluate(&d.rule, &store, input, obs.now);
                views.push(InvariantView {
                    name: d.rule.name.clone(),
                    store,
                    severity: d.rule.severity,
                    state: st.phase,
                    unknown: st.unknown,
                    since: st.active_since,
                    value: st.value,
                    op: d.rule.op,
                    threshold: d.rule.threshold,
                    clear_threshold: d.rule.clear_threshold,
                    grace_seconds: d.rule.grace,
                    message: st.message.clone(),
                    description: d.description.clone(),
                });
            }
        }
        let names: Vec<&str> = self.defs.iter().map(|d| d.rule.name.as_str()).collect();
        self.engine.retain_names(&names);
        self.save_state(obs.now);
        Snapshot {
            invariants: views,
            stores: self.stores.iter().map(store_view).collect(),
            sources: self.sources.clone(),
            taken_at: obs.now,
            max_store_down_time: obs.max_store_down_time.map(|d| d.as_secs_f64()),
        }
    }

    fn save_state(&mut self, now: f64) {
        let Some(path) = &self.state_file else { return };
        let active = self.engine.persisted();
        if active == self.saved {
            return;
        }
        match state_file::save(path, &active, now) {
            Ok(()) => self.saved = active,
            Err(e) => crate::log::warn(&format!("cannot write state file {}: {e}", path.display())),
        }
    }

    /// Writes the state file unconditionally (at shutdown).
    pub fn flush_state(&mut self) {
        if let Some(path) = &self.state_file {
            let active = self.engine.persisted();
            if let Err(e) = state_file::save(path, &active, self.clock.now()) {
                crate::log::warn(&format!("cannot write state file {}: {e}", path.display()));
            }
        }
    }
}

fn store_view(s: &Store) -> StoreView {
    StoreView {
        id: s.id.to_string(),
        address: s.address.clone(),
        status_address: s.status_address.clone(),
        version: s.version.clone(),
        engine: s.engine().to_owned(),
        state: s.state.as_str().to_owned(),
        last_heartbeat: s
            .last_heartbeat_ns
            .filter(|&n| n > 0)
            .map(|n| n as f64 / 1e9),
        leader_count: s.leader_count,
        region_count: s.region_count,
        capacity_bytes: s.capacity_bytes,
        available_bytes: s.available_bytes,
        slow_score: s.slow_score,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::invariants::engine::Phase;
    use crate::sources::prometheus::Sample;

    const T0: f64 = 1_700_000_000.0;

    fn store(id: u64, state: StoreState, avail_gib: u64) -> Store {
        Store {
            address: format!("tikv-{id}:20160"),
            status_address: format!("tikv-{id}:20180"),
            capacity_bytes: Some(100 << 30),
            available_bytes: Some(avail_gib << 30),
            slow_score: Some(1.0),
            last_heartbeat_ns: Some((T0 * 1e9) as u64),
            ..Store::new(id, state)
        }
    }

    fn healthy_pd() -> PdHealth {
        PdHealth {
            leader: Some("pd-0".into()),
            unhealthy: vec![],
            members: 3,
        }
    }

    fn obs(now: f64, stores: Vec<Store>) -> Observations {
        Observations {
            now,
            stores,
            pd_error: None,
            pd_health: Ok(healthy_pd()),
            max_store_down_time: Some(Duration::from_secs(1800)),
            prom: BTreeMap::new(),
        }
    }

    fn poller(yaml: &str, clock: Arc<ManualClock>) -> Poller {
        let cfg = Config::from_yaml(yaml).unwrap();
        Poller::with_clock(&cfg, clock).unwrap()
    }

    fn view<'a>(s: &'a Snapshot, name: &str, store: &str) -> &'a InvariantView {
        s.invariants
            .iter()
            .find(|i| i.name == name && i.store == store)
            .unwrap_or_else(|| panic!("no {name}/{store} in {:?}", s.invariants))
    }

    #[test]
    fn a_disk_filling_goes_pending_then_firing_after_its_grace_then_resolves() {
        let clock = Arc::new(ManualClock::at(T0));
        let mut p = poller("", clock.clone());
        let s = p.evaluate(&obs(T0, vec![store(1, StoreState::Up, 50)]));
        assert_eq!(view(&s, "disk_usage", "1").state, Phase::Ok);
        assert_eq!(view(&s, "disk_usage", "1").value, Some(0.5));
        // 80 % used: pending for the 5 m grace, firing once it has held that long.
        let s = p.evaluate(&obs(T0 + 10.0, vec![store(1, StoreState::Up, 20)]));
        let d = view(&s, "disk_usage", "1");
        assert_eq!(
            (d.state, d.since, d.unknown),
            (Phase::Pending, Some(T0 + 10.0), false)
        );
        let s = p.evaluate(&obs(T0 + 309.0, vec![store(1, StoreState::Up, 20)]));
        assert_eq!(view(&s, "disk_usage", "1").state, Phase::Pending);
        let s = p.evaluate(&obs(T0 + 310.0, vec![store(1, StoreState::Up, 20)]));
        assert_eq!(view(&s, "disk_usage", "1").state, Phase::Firing);
        let s = p.evaluate(&obs(T0 + 320.0, vec![store(1, StoreState::Up, 60)]));
        let d = view(&s, "disk_usage", "1");
        assert_eq!((d.state, d.since), (Phase::Ok, None));
        assert_eq!(s.taken_at, T0 + 320.0);
    }

    #[test]
    fn pd_failing_makes_store_invariants_unknown_and_keeps_firing_ones_firing() {
        let clock = Arc::new(ManualClock::at(T0));
        let mut p = poller("", clock.clone());
        let s = p.evaluate(&obs(T0, vec![store(1, StoreState::Disconnected, 50)]));
        assert_eq!(view(&s, "store_down", "1").state, Phase::Firing);
        let mut o = obs(T0 + 10.0, vec![store(1, StoreState::Disconnected, 50)]);
        o.pd_error = Some(Unavailable::new("connection refused"));
        o.pd_health = Err(Unavailable::new("PD unavailable: connection refused"));
        let s = p.evaluate(&o);
        let d = view(&s, "store_down", "1");
        assert_eq!((d.state, d.unknown), (Phase::Firing, true));
        assert!(d.message.contains("connection refused"), "{}", d.message);
        let pd = view(&s, "pd_leader", "");
        assert!(pd.unknown);
        // Without a fresh store list the series are kept, not dropped.
        assert!(
            s.invariants
                .iter()
                .any(|i| i.name == "disk_usage" && i.store == "1")
        );
    }

    #[test]
    fn stores_pd_no_longer_lists_lose_their_series() {
        let clock = Arc::new(ManualClock::at(T0));
        let mut p = poller("", clock.clone());
        p.evaluate(&obs(
            T0,
            vec![store(1, StoreState::Up, 50), store(2, StoreState::Up, 50)],
        ));
        let s = p.evaluate(&obs(T0 + 1.0, vec![store(1, StoreState::Up, 50)]));
        assert!(s.invariants.iter().all(|i| i.store != "2"));
        assert_eq!(view(&s, "store_down", "1").state, Phase::Ok);
    }

    #[test]
    fn prometheus_invariants_map_samples_to_stores_and_miss_is_unknown() {
        let clock = Arc::new(ManualClock::at(T0));
        let mut p = poller("prometheus:\n  url: http://127.0.0.1:9\n", clock.clone());
        let mut o = obs(
            T0,
            vec![store(1, StoreState::Up, 50), store(2, StoreState::Up, 50)],
        );
        let sample = |instance: &str, v: f64| Sample {
            labels: [("instance".to_owned(), instance.to_owned())].into(),
            value: v,
        };
        o.prom.insert(
            definitions::CPU_USAGE_QUERY.into(),
            Ok(vec![sample("tikv-1:20180", 0.9)]),
        );
        o.prom.insert(
            definitions::WRITE_LATENCY_P99_QUERY.into(),
            Err(Unavailable::new("timeout")),
        );
        let s = p.evaluate(&o);
        let c1 = view(&s, "cpu_usage", "1");
        assert_eq!(
            (c1.state, c1.value, c1.unknown),
            (Phase::Pending, Some(0.9), false)
        );
        let c2 = view(&s, "cpu_usage", "2");
        assert!(
            c2.unknown && c2.message.contains("no sample"),
            "{}",
            c2.message
        );
        let w = view(&s, "write_latency_p99", "1");
        assert!(w.unknown && w.message.contains("timeout"), "{}", w.message);
    }

    #[test]
    fn a_prometheus_restart_holds_the_builtin_rate_queries_unknown_for_the_warmup() {
        let clock = Arc::new(ManualClock::at(T0));
        let mut p = poller(
            "prometheus:\n  url: http://127.0.0.1:9\n  warmup: 60s\n",
            clock.clone(),
        );
        p.prometheus_started_at(T0 - 3600.0);
        let mut out: QueryResults = BTreeMap::new();
        out.insert(definitions::CPU_USAGE_QUERY.into(), Ok(vec![]));
        p.hold_during_warmup(&mut out);
        assert!(out[definitions::CPU_USAGE_QUERY].is_ok(), "no restart seen");
        // Restarted 10 s ago: held for the 50 s left of the warm-up.
        p.prometheus_started_at(T0 - 10.0);
        p.hold_during_warmup(&mut out);
        let e = out[definitions::CPU_USAGE_QUERY].as_ref().unwrap_err();
        assert!(e.to_string().contains("for 50s more"), "{e}");
        clock.advance(51.0);
        let mut out: QueryResults = BTreeMap::new();
        out.insert(definitions::CPU_USAGE_QUERY.into(), Ok(vec![]));
        p.hold_during_warmup(&mut out);
        assert!(out[definitions::CPU_USAGE_QUERY].is_ok(), "warm-up over");
    }

    #[test]
    fn the_state_file_carries_a_violation_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let yaml = format!("state_file: {}\n", path.display());
        let clock = Arc::new(ManualClock::at(T0));
        let mut p = poller(&yaml, clock.clone());
        p.evaluate(&obs(T0, vec![store(1, StoreState::Up, 20)]));
        drop(p);
        clock.advance(200.0);
        let mut p = poller(&yaml, clock.clone());
        let s = p.evaluate(&obs(T0 + 200.0, vec![store(1, StoreState::Up, 20)]));
        let d = view(&s, "disk_usage", "1");
        assert_eq!((d.state, d.since), (Phase::Pending, Some(T0)));
        let s = p.evaluate(&obs(T0 + 300.0, vec![store(1, StoreState::Up, 20)]));
        assert_eq!(view(&s, "disk_usage", "1").state, Phase::Firing);
    }

    #[test]
    fn tombstone_and_excluded_tiflash_stores_are_not_evaluated() {
        let clock = Arc::new(ManualClock::at(T0));
        let mut p = poller("pd:\n  tiflash: exclude\n", clock);
        let mut flash = store(3, StoreState::Up, 50);
        flash.labels = vec![("engine".into(), "tiflash".into())];
        p.set_stores(vec![
            store(2, StoreState::Up, 50),
            store(1, StoreState::Tombstone, 50),
            flash,
        ]);
        let ids: Vec<u64> = p.stores().iter().map(|s| s.id).collect();
        assert_eq!(ids, [2]);
    }
}
