//! The poller: one round queries PD (`/stores` every poll, health less often) and Prometheus
//! (one query per invariant, whatever the number of stores), builds [`Observations`], runs the
//! invariant engine and returns the [`Snapshot`] to publish. A failing source marks itself
//! down, keeps its last good data, and makes what depends on it unknown.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::clock::unix_now;
use crate::config::{Config, TiflashMode};
use crate::domain::{PdHealth, Store, StoreState};
use crate::invariants::definitions::{self, Definition, Kind};
use crate::invariants::engine::{Engine, Persisted};
use crate::invariants::state_file;
use crate::observations::Observations;
use crate::snapshot::{InvariantView, Snapshot, SourceHealth, StoreView};
use crate::sources::pd::{PdClient, PdClientConfig, PdTls};
use crate::sources::prometheus::PromClient;

/// Polls the sources and evaluates the invariants.
pub struct Poller {
    pd: PdClient,
    prom: Option<Arc<PromClient>>,
    defs: Vec<Definition>,
    engine: Engine,
    tiflash: TiflashMode,
    health_interval: Duration,
    prometheus_warmup: Duration,
    prometheus_started: Option<f64>,
    prometheus_warm_until: f64,
    stores: Vec<Store>,
    pd_health: Result<PdHealth, String>,
    last_health: Option<Instant>,
    max_store_down_time: Option<Duration>,
    sources: BTreeMap<String, SourceHealth>,
    state_file: Option<PathBuf>,
    saved: Vec<Persisted>,
}

impl Poller {
    /// Builds the clients and definitions and restores the state file, if configured.
    pub fn new(cfg: &Config) -> anyhow::Result<Poller> {
        let pd = PdClient::new(PdClientConfig {
            endpoints: cfg.pd.endpoints.clone(),
            timeout: cfg.pd.timeout.0,
            tls: cfg.pd.tls.as_ref().map(|t| PdTls {
                ca_file: t.ca_file.clone(),
                cert_file: t.cert_file.clone(),
                key_file: t.key_file.clone(),
            }),
            max_response_bytes: cfg.pd.max_response_bytes,
        })
        .map_err(|e| anyhow::anyhow!("pd: {e}"))?;
        let prom = match &cfg.prometheus.url {
            Some(u) => Some(Arc::new(
                PromClient::new(u, cfg.prometheus.timeout.0)
                    .map_err(|e| anyhow::anyhow!("prometheus.url: {e}"))?,
            )),
            None => None,
        };
        let mut engine = Engine::new();
        let mut saved = Vec::new();
        if let Some(p) = &cfg.state_file {
            saved = state_file::load(p, unix_now()).map_err(|e| anyhow::anyhow!(e))?;
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
            defs: definitions::build(cfg),
            engine,
            tiflash: cfg.pd.tiflash,
            health_interval: cfg.pd.health_interval.0,
            prometheus_warmup: cfg.prometheus.warmup.0,
            prometheus_started: None,
            prometheus_warm_until: 0.0,
            stores: Vec::new(),
            pd_health: Err("PD health not polled yet".into()),
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

    /// PD requests and response bytes so far (for benchmarks).
    pub fn pd_traffic(&self) -> (u64, u64) {
        (self.pd.requests_total(), self.pd.response_bytes_total())
    }

    fn record(&mut self, source: &str, started: Instant, result: Result<(), String>) {
        let h = self.sources.entry(source.to_owned()).or_default();
        h.last_duration = Some(started.elapsed().as_secs_f64());
        match result {
            Ok(()) => {
                h.up = true;
                h.last_success = Some(unix_now());
                h.last_error = None;
            }
            Err(e) => {
                h.up = false;
                h.last_error = Some(e);
            }
        }
    }

    async fn poll_pd(&mut self) -> Option<String> {
        let t = Instant::now();
        let result = self.pd.stores().await;
        let err = match result {
            Ok(list) => {
                self.stores = list
                    .into_iter()
                    .filter(|s| s.state != StoreState::Tombstone)
                    .filter(|s| !(self.tiflash == TiflashMode::Exclude && s.is_tiflash()))
                    .collect();
                self.stores.sort_by_key(|s| s.id);
                None
            }
            Err(e) => Some(e.to_string()),
        };
        let due = self
            .last_health
            .is_none_or(|t| t.elapsed() >= self.health_interval)
            || self.pd_health.is_err();
        if err.is_none() && due {
            self.pd_health = self.poll_pd_health().await;
            self.last_health = Some(Instant::now());
        } else if let Some(e) = &err {
            self.pd_health = Err(format!("PD unavailable: {e}"));
        }
        self.record("pd", t, err.clone().map_or(Ok(()), Err));
        err
    }

    async fn poll_pd_health(&mut self) -> Result<PdHealth, String> {
        let members = self.pd.members().await.map_err(|e| e.to_string())?;
        let health = self.pd.health().await.map_err(|e| e.to_string())?;
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

    async fn poll_prometheus(
        &mut self,
    ) -> BTreeMap<String, Result<Vec<crate::sources::prometheus::Sample>, String>> {
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
                let r = prom.query(&q).await.map_err(|e| e.to_string());
                (q, r)
            });
        }
        while let Some(done) = set.join_next().await {
            if let Ok((q, r)) = done {
                out.insert(q, r);
            }
        }
        let failed: Vec<&String> = out.values().filter_map(|r| r.as_ref().err()).collect();
        let result = if !failed.is_empty() && failed.len() == out.len() {
            Err(failed[0].clone())
        } else {
            Ok(())
        };
        self.record("prometheus", t, result);
        // A Prometheus seen restarting has a gap in its rate windows and reads low until they
        // refill: the built-in rate queries are unknown for `prometheus.warmup` after a restart.
        let warmup = self.prometheus_warmup.as_secs_f64();
        if warmup > 0.0 {
            if let Ok(started) = prom.start_time().await {
                if self
                    .prometheus_started
                    .is_some_and(|prev| started > prev + 1.0)
                {
                    self.prometheus_warm_until = started + warmup;
                }
                self.prometheus_started = Some(started);
            }
            let left = self.prometheus_warm_until - unix_now();
            if left > 0.0 {
                for d in &self.defs {
                    if let (Kind::TikvQuery(q), Some(Ok(_))) =
                        (&d.kind, d.query().and_then(|q| out.get(q)))
                    {
                        out.insert(
                            q.clone(),
                            Err(format!(
                                "Prometheus restarted; its rate windows have a gap for {left:.0}s more (prometheus.warmup)"
                            )),
                        );
                    }
                }
            }
        }
        out
    }

    /// One round: poll, evaluate, persist, and return the snapshot to publish.
    pub async fn poll(&mut self) -> Snapshot {
        let (pd_error, prom) = {
            let pd_error = self.poll_pd().await;
            let prom = self.poll_prometheus().await;
            (pd_error, prom)
        };
        let obs = Observations {
            now: unix_now(),
            stores: self.stores.clone(),
            pd_error: pd_error.clone(),
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
            if let Err(e) = state_file::save(path, &active, unix_now()) {
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
