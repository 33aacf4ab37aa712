//! The poller: one round queries PD (`/stores` every poll; every member's `/members`, one
//! member's `/health` and `/config/schedule` less often, and at once while `/stores` fails or PD
//! looks unhealthy; the PD leader's `/metrics`, `/gc/safepoint` and `/min-resolved-ts` at most
//! once per `pd.health_interval`, see [`crate::pd_coverage`]) and Prometheus (one query per
//! invariant, whatever the number of stores),
//! builds [`Observations`], runs the invariant engine and returns the [`Snapshot`] to publish.
//! A failing source marks itself down, keeps its last good data, and makes what depends on it
//! unknown. Every source failure and recovery, and every invariant turning firing or resolved,
//! is logged once per transition. Time comes from an injected [`Clock`], so tests drive rounds
//! through time with fixed observations.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::clock::{Clock, SystemClock};
use crate::config::{Config, ConfigError, TiflashMode};
use crate::domain::{
    MappingRule, PdHealth, ScheduleConfig, Scope, Store, StoreHotspot, StoreMatcher, StoreState,
};
use crate::invariants::definitions::{self, Definition};
use crate::invariants::engine::{Engine, Persisted, Phase, SeriesState};
use crate::invariants::state_file::{self, StateFileError};
use crate::log::{error, info, warn};
use crate::observations::{MappedSamples, Observations, QueryResults, Unavailable};
use crate::pd_coverage::{self, Coverage};
use crate::snapshot::{
    InvariantView, Snapshot, SourceHealth, StateFileHealth, StoreView, UnmappedView,
};
use crate::sources::pd::{PdClient, PdClientConfig, PdError, PdTls, RejectReason, StoreList};
use crate::sources::prometheus::{PromClient, PromError};
use crate::transitions::Failing;
use prometheus_round::PromBatch;

/// Why the poller cannot start: a configuration it cannot build, named by its key.
pub type PollerError = ConfigError;

/// What the poller has to say once per transition (see [`crate::transitions`]).
#[derive(Debug, Default)]
struct Reported {
    /// Sources (`pd`, `prometheus`), PD members (`pd member <url>`) and queries.
    failing: Failing,
    /// The details of the `/stores` entries rejected last.
    rejected: Vec<String>,
    /// Unmapped sample counts per invariant, as last logged.
    unmapped: BTreeMap<String, u64>,
    /// Whether PD had a leader at the last members poll.
    had_leader: Option<bool>,
}

/// What a configuration builds before anything is polled: the clients (URLs checked, TLS and
/// secret files read), the invariant definitions and the mapping rule.
struct Parts {
    pd: PdClient,
    prom: Option<Arc<PromClient>>,
    defs: Vec<Definition>,
    mapping_rule: Option<MappingRule>,
}

impl Parts {
    fn build(cfg: &Config) -> Result<Parts, ConfigError> {
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
        .map_err(|e| pd_config_error(cfg, e))?;
        let prom = match &cfg.prometheus.url {
            Some(u) => Some(Arc::new(
                PromClient::with_http_config(
                    u,
                    cfg.prometheus.timeout.0,
                    &cfg.prometheus.http_config,
                )
                .map_err(prom_config_error)?,
            )),
            None => None,
        };
        let defs = definitions::build(cfg)?;
        let mapping_rule =
            match &cfg.prometheus.store_mapping {
                Some(m) => Some(MappingRule::new(&m.label, &m.regex).map_err(|e| {
                    ConfigError::new("prometheus.store_mapping.regex", e.to_string())
                })?),
                None => None,
            };
        Ok(Parts {
            pd,
            prom,
            defs,
            mapping_rule,
        })
    }
}

/// The key of the PD settings a client error is about.
fn pd_config_error(cfg: &Config, e: PdError) -> ConfigError {
    let key = match &e {
        PdError::InvalidEndpoint { endpoint, .. } => cfg
            .pd
            .endpoints
            .iter()
            .position(|x| x == endpoint)
            .map_or("pd.endpoints".to_owned(), |i| format!("pd.endpoints[{i}]")),
        PdError::TlsFile { kind, .. } => match *kind {
            "CA" => "pd.tls.ca_file",
            "certificate" => "pd.tls.cert_file",
            _ => "pd.tls.key_file",
        }
        .to_owned(),
        _ => "pd".to_owned(),
    };
    ConfigError::new(key, e.to_string())
}

/// The key of the Prometheus settings a client error is about.
fn prom_config_error(e: PromError) -> ConfigError {
    let key = match &e {
        PromError::InvalidUrl { .. } => "prometheus.url",
        _ => "prometheus.http_config",
    };
    ConfigError::new(key, e.to_string())
}

/// The one validation of a configuration, shared by the run and `check-config`: the values
/// (errors located in `text`, the file they came from), the invariants, and everything the
/// poller builds from them (endpoint URLs, TLS files), and the web configuration file (with the
/// files it names), without sending a request or touching the state file. Returns the
/// definitions.
pub fn check(cfg: &Config, text: &str) -> Result<Vec<Definition>, ConfigError> {
    definitions::checked(cfg, text)?;
    if let Some(web) = &cfg.web.config_file {
        crate::web_config::check(web)
            .map_err(|e| ConfigError::new("web.config_file", e.to_string()).located_in(text))?;
    }
    Parts::build(cfg)
        .map(|p| p.defs)
        .map_err(|e| e.located_in(text))
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
    /// How long a round waits for Prometheus once PD has answered (half the poll interval).
    prometheus_wait: Duration,
    /// The Prometheus queries still running, started by an earlier round.
    prometheus_batch: Option<PromBatch>,
    /// Each query's last answer, evaluated again by rounds Prometheus does not answer in time.
    prometheus_last: QueryResults,
    mapping_rule: Option<MappingRule>,
    stores: Vec<Store>,
    doubtful: BTreeMap<u64, Unavailable>,
    rejected: BTreeMap<String, u64>,
    pd_health: Result<PdHealth, Unavailable>,
    last_health: Option<f64>,
    schedule: ScheduleConfig,
    /// PD's cluster-wide sources (leader `/metrics`, GC safe point, min resolved ts).
    coverage: Coverage,
    leader_id: Option<u64>,
    leader_changes: u64,
    sources: BTreeMap<String, SourceHealth>,
    reported: Reported,
    state_file: Option<PathBuf>,
    saved: Vec<Persisted>,
    /// When the state file was last written by this process.
    saved_at: f64,
    state_health: StateFileHealth,
}

impl Poller {
    /// Builds the clients and definitions and restores the state file, if configured.
    pub fn new(cfg: &Config) -> Result<Poller, PollerError> {
        Self::with_clock(cfg, Arc::new(SystemClock))
    }

    /// Like [`Poller::new`], reading time from `clock`.
    pub fn with_clock(cfg: &Config, clock: Arc<dyn Clock>) -> Result<Poller, PollerError> {
        let Parts {
            pd,
            prom,
            defs,
            mapping_rule,
        } = Parts::build(cfg)?;
        let mut engine = Engine::new();
        let mut saved = Vec::new();
        let mut state_health = StateFileHealth::default();
        if let Some(p) = &cfg.state_file {
            if state_file::remove_leftover(p) {
                info(&format!(
                    "removed {}, left by a write that did not finish",
                    p.with_extension("tmp").display()
                ));
            }
            saved = match state_file::load(p, clock.now()) {
                Ok(s) => s,
                Err(e) => {
                    state_health.corrupt += 1;
                    report_unusable_state_file(p, &e, clock.now());
                    Vec::new()
                }
            };
            engine.restore(&saved, clock.now());
            if !saved.is_empty() {
                info(&format!(
                    "restored {} active violations from {}; they are unknown until PD and Prometheus answer",
                    saved.len(),
                    p.display()
                ));
            }
        }
        let mut sources = BTreeMap::new();
        sources.insert("pd".to_owned(), SourceHealth::default());
        for s in pd_coverage::SOURCES {
            sources.insert(s.to_owned(), SourceHealth::default());
        }
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
            prometheus_wait: cfg.poll_interval.0 / 2,
            prometheus_batch: None,
            prometheus_last: QueryResults::new(),
            mapping_rule,
            stores: Vec::new(),
            doubtful: BTreeMap::new(),
            rejected: BTreeMap::new(),
            pd_health: Err(Unavailable::new("PD health not polled yet")),
            last_health: None,
            schedule: ScheduleConfig::default(),
            coverage: Coverage::new(cfg.pd.health_interval.0.as_secs_f64()),
            leader_id: None,
            leader_changes: 0,
            sources,
            reported: Reported::default(),
            state_file: cfg.state_file.clone(),
            saved,
            // The file's own `saved_at` may be old: the first round with violations rewrites it.
            saved_at: f64::NEG_INFINITY,
            state_health,
        })
    }

    /// Applies a reloaded configuration: PD and Prometheus clients, invariants, store mapping
    /// and PD settings are replaced; the invariant series (active violations, running grace
    /// periods), the PD leader-change counter, the last good data and the sources' health are
    /// kept. On an error nothing changes. The state file is not reloaded.
    pub fn reconfigure(&mut self, cfg: &Config) -> Result<(), PollerError> {
        let setup = Parts::build(cfg)?;
        self.pd = setup.pd;
        self.prom = setup.prom;
        self.defs = setup.defs;
        self.mapping_rule = setup.mapping_rule;
        self.tiflash = cfg.pd.tiflash;
        self.health_interval = cfg.pd.health_interval.0.as_secs_f64();
        self.coverage.set_interval(self.health_interval);
        self.prometheus_warmup = cfg.prometheus.warmup.0.as_secs_f64();
        self.prometheus_wait = cfg.poll_interval.0 / 2;
        // Answers of the old client or queries are not used again: the next round waits for
        // the new ones, as the first round does.
        self.prometheus_batch = None;
        self.prometheus_last.clear();
        if self.prom.is_some() {
            self.sources.entry("prometheus".to_owned()).or_default();
        } else {
            self.sources.remove("prometheus");
        }
        Ok(())
    }

    /// The PD client (shared connections and counters), for requests made outside a poll.
    pub fn pd_client(&self) -> PdClient {
        self.pd.clone()
    }

    /// The configured invariants.
    pub fn definitions(&self) -> &[Definition] {
        &self.defs
    }

    /// The stores PD listed at the last successful poll (Tombstone and excluded ones removed).
    pub fn stores(&self) -> &[Store] {
        &self.stores
    }

    /// Records an attempt on `source` and logs its failure or recovery once per transition.
    fn record(&mut self, source: &str, started: Instant, result: Result<(), Unavailable>) {
        let now = self.clock.now();
        let reason = result.as_ref().err().map(Unavailable::to_string);
        self.reported
            .failing
            .log(source, reason.as_deref(), "down", "answers again");
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
        let err = match self.pd.store_list().await {
            Ok(list) => {
                self.set_store_list(list);
                self.coverage.observe_stores(&self.stores, self.clock.now());
                None
            }
            Err(e) => Some(Unavailable::new(e.to_string())),
        };
        let now = self.clock.now();
        // A PD with a problem is asked again every poll, so its recovery is seen at once.
        let looks_healthy = self.pd_health.as_ref().is_ok_and(|h| {
            let leader = h.leader.as_ref().map(|l| l.member_id);
            leader.is_some()
                && h.etcd_leader
                    .as_ref()
                    .is_none_or(|e| Some(e.member_id) == leader)
                && h.other_leaders.is_empty()
                && h.unhealthy.as_ref().is_some_and(Vec::is_empty)
        });
        let due = self
            .last_health
            .is_none_or(|t| now - t >= self.health_interval)
            || err.is_some()
            || !looks_healthy;
        if due {
            self.pd_health = self.poll_pd_health().await;
            self.last_health = Some(now);
        }
        self.record("pd", t, err.clone().map_or(Ok(()), Err));
        let attempts = self
            .coverage
            .poll(&self.pd, &self.pd_health, err.as_ref(), now)
            .await;
        for a in attempts {
            self.record(a.source, a.started, a.result);
        }
        err
    }

    /// Keeps the stores to evaluate: Tombstone ones and, if configured, TiFlash ones removed.
    /// A store whose id PD listed twice, or that is missing while some entry had no usable id,
    /// keeps its previous entry, in doubt (its invariants are unknown), rather than
    /// disappearing (which would resolve its alerts).
    fn set_store_list(&mut self, list: StoreList) {
        let mut previous: BTreeMap<u64, Store> = std::mem::take(&mut self.stores)
            .into_iter()
            .map(|s| (s.id, s))
            .collect();
        let mut stores = list.stores;
        self.doubtful.clear();
        self.rejected.clear();
        for r in &list.rejected {
            *self
                .rejected
                .entry(r.reason.as_str().to_owned())
                .or_default() += 1;
            if let (RejectReason::DuplicateId, Some(id)) = (r.reason, r.id)
                && !self.doubtful.contains_key(&id)
            {
                self.doubtful.insert(
                    id,
                    Unavailable::new(format!(
                        "PD lists store {id} more than once; which entry is right cannot be told"
                    )),
                );
                stores.extend(previous.remove(&id));
            }
        }
        // Entries without a usable id may be stores listed before: those stay, in doubt.
        let unidentified = list.rejected.iter().filter(|r| r.id.is_none()).count();
        if unidentified > 0 {
            let listed: BTreeSet<u64> = stores.iter().map(|s| s.id).collect();
            for (id, s) in std::mem::take(&mut previous) {
                if !listed.contains(&id) {
                    self.doubtful.insert(
                        id,
                        Unavailable::new(format!(
                            "PD's reply has {unidentified} entries without a usable id and no longer lists store {id}: it may be one of them"
                        )),
                    );
                    stores.push(s);
                }
            }
        }
        let details: Vec<String> = list.rejected.iter().map(|r| r.detail.clone()).collect();
        if details != self.reported.rejected {
            if details.is_empty() {
                info("PD /stores: every entry names a store again");
            } else {
                warn(&format!(
                    "PD /stores: ignored {} entries that name no single store: {}",
                    details.len(),
                    details.join("; ")
                ));
            }
            self.reported.rejected = details;
        }
        self.stores = stores
            .into_iter()
            .filter(|s| s.state != StoreState::Tombstone)
            .filter(|s| !(self.tiflash == TiflashMode::Exclude && s.is_tiflash()))
            .collect();
        self.stores.sort_by_key(|s| s.id);
    }

    /// Asks every configured member, logs member and leader transitions, counts leader
    /// changes, and refreshes the schedule settings.
    async fn poll_pd_health(&mut self) -> Result<PdHealth, Unavailable> {
        let survey = self.pd.survey().await;
        for (ep, r) in &survey.members {
            let why = r.as_ref().err().map(PdError::to_string);
            self.reported.failing.log(
                &format!("PD member {ep}"),
                why.as_deref(),
                "does not answer /members",
                "answers /members again",
            );
        }
        let health = survey.health().map_err(Unavailable::new)?;
        let has_leader = health.leader.is_some();
        if self.reported.had_leader != Some(has_leader) {
            match &health.leader {
                Some(l) => info(&format!("PD leader is {}", l.name)),
                None => warn(&format!(
                    "PD has no leader ({} of {} members answer)",
                    health.answered, health.asked
                )),
            }
            self.reported.had_leader = Some(has_leader);
        }
        if let Some(l) = &health.leader {
            if self.leader_id.is_some_and(|prev| prev != l.member_id) {
                self.leader_changes += 1;
                info(&format!("PD leader changed to {}", l.name));
            }
            self.leader_id = Some(l.member_id);
        }
        if let Ok(s) = self.pd.schedule().await {
            self.schedule = s;
        }
        Ok(health)
    }

    /// The observations of a round at `now`: the last good PD data, with `pd_error` when it is
    /// not fresh.
    fn observations(&self, pd_error: Option<Unavailable>, prom: QueryResults) -> Observations {
        let mut obs = Observations {
            now: self.clock.now(),
            stores: self.stores.clone(),
            pd_error,
            doubtful: self.doubtful.clone(),
            pd_health: self.pd_health.clone(),
            schedule: self.schedule,
            prom,
            matcher: Arc::new(StoreMatcher::new(&self.stores, self.mapping_rule.clone())),
            pd_leader_metrics: crate::observations::Polled::NotYet,
            gc_safepoint: crate::observations::Polled::NotYet,
            min_resolved_ts: crate::observations::Polled::NotYet,
            schedulers: crate::observations::Polled::NotYet,
            offline: crate::domain::OfflineHistory::default(),
        };
        self.coverage.fill(&mut obs);
        obs
    }

    /// One round: poll, evaluate, persist, and return the snapshot to publish. PD and
    /// Prometheus are asked at the same time; once PD has answered, the round waits for
    /// Prometheus until half the poll interval has passed (see [`Poller::prometheus_round`]),
    /// or not at all when the queries were started by an earlier round and are still running.
    pub async fn poll(&mut self) -> Snapshot {
        let wait_until = tokio::time::Instant::now() + self.prometheus_wait;
        // Queries an earlier round started and that are still running are late already: this
        // round takes their answers only if they are in by the time PD has answered.
        let late = self.prometheus_batch.is_some();
        self.start_prometheus();
        let pd_error = self.poll_pd().await;
        let deadline = match late {
            true => tokio::time::Instant::now(),
            false => wait_until,
        };
        let prom = self.prometheus_round(deadline).await;
        let mut obs = self.observations(pd_error, prom);
        let held = self.hold_during_warmup(&mut obs.prom);
        let snap = self.evaluate(&obs);
        self.prometheus_last = obs.prom;
        self.prometheus_last.extend(held);
        snap
    }

    /// The snapshot to serve before the first poll when the state file restored violations:
    /// each of them unknown, with its `since` (`None` when nothing was restored).
    pub fn restored_snapshot(&mut self) -> Option<Snapshot> {
        if self.saved.is_empty() {
            return None;
        }
        let mut obs = self.observations(
            Some(Unavailable::new("waiting for the first poll")),
            QueryResults::new(),
        );
        obs.pd_health = Err(Unavailable::new("waiting for the first poll"));
        Some(self.evaluate(&obs))
    }

    /// Evaluates every invariant on `obs` and builds the snapshot (separate from polling so
    /// tests can drive time).
    pub fn evaluate(&mut self, obs: &Observations) -> Snapshot {
        // About one view per series of the last round (13 000 at 1000 stores): sized once.
        let mut views = Vec::with_capacity(self.engine.states().count());
        let mut unmapped = BTreeMap::new();
        for d in &self.defs {
            let rule = d.rule_for(obs);
            let mut inputs = d.inputs(obs);
            let listed: std::collections::HashSet<String> =
                inputs.iter().map(|(s, _)| s.clone()).collect();
            match &obs.pd_error {
                // Stores PD no longer lists (e.g. Tombstone) lose their series.
                None => self
                    .engine
                    .retain_stores(&d.rule.name, &|s: &str| listed.contains(s)),
                // Without a fresh store list, series PD may still list stay, unknown (also
                // those restored from the state file before PD ever answered).
                Some(e) => {
                    let kept: Vec<String> = self
                        .engine
                        .states()
                        .filter(|((n, s), _)| **n == *d.rule.name && !listed.contains(s))
                        .map(|((_, s), _)| s.clone())
                        .collect();
                    inputs.extend(kept.into_iter().map(|s| {
                        (
                            s,
                            crate::invariants::engine::Input::Unknown(format!(
                                "PD unavailable: {e}"
                            )),
                        )
                    }));
                }
            }
            for (store, input) in inputs {
                let before = self.engine.get(&d.rule.name, &store).map(|s| s.phase);
                let st = self.engine.evaluate(&rule, &store, input, obs.now);
                report_transition(&d.rule.name, &store, d, before, st);
                views.push(InvariantView {
                    name: d.rule.name.clone(),
                    store,
                    severity: d.rule.severity,
                    state: st.phase,
                    unknown: st.unknown,
                    since: st.active_since,
                    value: st.value,
                    op: d.rule.op,
                    threshold: rule.threshold,
                    clear_threshold: d.rule.clear_threshold,
                    grace_seconds: d.rule.grace,
                    message: st.message.clone(),
                    description: d.description.clone(),
                });
            }
            if d.scope == Scope::Store
                && let Some(Ok(m)) = d.query().map(|q| obs.mapped(q))
            {
                unmapped.insert(d.rule.name.to_string(), unmapped_view(&m));
            }
        }
        self.report_unmapped(&unmapped);
        let names: Vec<&str> = self.defs.iter().map(|d| &*d.rule.name).collect();
        self.engine.retain_names(&names);
        self.save_state(obs.now);
        Snapshot {
            invariants: views,
            stores: {
                let hot = self.coverage.hotspot().ok();
                self.stores.iter().map(|s| store_view(s, hot)).collect()
            },
            sources: self.sources.clone(),
            taken_at: obs.now,
            max_store_down_time: obs.schedule.max_store_down_time.map(|d| d.as_secs_f64()),
            pd_leader_changes: self.leader_changes,
            unmapped,
            rejected_stores: self.rejected.clone(),
            state_file: self.state_file.as_ref().map(|_| self.state_health),
            pd_cluster: self.coverage.view(&self.stores),
            pd_leader: self
                .pd_health
                .as_ref()
                .ok()
                .and_then(|h| Some(h.leader.as_ref()?.name.clone())),
            pd_leader_unavailable: match &self.pd_health {
                Ok(h) if h.leader.is_some() => None,
                Ok(_) => Some("PD has no leader".to_owned()),
                Err(e) => Some(e.to_string()),
            },
        }
    }

    /// Logs an invariant's unmapped samples appearing or going away.
    fn report_unmapped(&mut self, unmapped: &BTreeMap<String, UnmappedView>) {
        for (name, u) in unmapped {
            let before = self.reported.unmapped.insert(name.clone(), u.samples);
            match (before.unwrap_or(0), u.samples) {
                (0, n) if n > 0 => warn(&format!(
                    "{name}: {n} Prometheus samples map to no PD store, e.g. {}; restrict the queries to this cluster with prometheus.selector or map them with prometheus.store_mapping",
                    u.example.as_deref().unwrap_or("?")
                )),
                (n, 0) if n > 0 => info(&format!("{name}: every sample maps to a store again")),
                _ => {}
            }
        }
    }

    /// Writes the state file when the active violations changed, and every
    /// [`state_file::REFRESH_SECS`] while some are active (so `saved_at` stays fresh).
    fn save_state(&mut self, now: f64) {
        let active = self.engine.persisted();
        let refresh = !active.is_empty() && now - self.saved_at >= state_file::REFRESH_SECS;
        if active != self.saved || refresh {
            self.write_state(active, now);
        }
    }

    /// Writes `active`; a failure is counted and logged once until a write succeeds again.
    fn write_state(&mut self, active: Vec<Persisted>, now: f64) {
        let Some(path) = &self.state_file else { return };
        let result = state_file::save(path, &active, now);
        let why = result.as_ref().err().map(|e| e.to_string());
        self.reported.failing.log(
            &format!("state file {}", path.display()),
            why.as_deref(),
            "cannot be written",
            "is written again",
        );
        match result {
            Ok(()) => {
                self.saved = active;
                self.saved_at = now;
            }
            Err(_) => self.state_health.write_failures += 1,
        }
    }

    /// Writes the state file unconditionally (at shutdown).
    pub fn flush_state(&mut self) {
        let active = self.engine.persisted();
        self.write_state(active, self.clock.now());
    }
}

/// Logs that the state file at `path` cannot be used and, when it is corrupt, sets it aside so
/// that it is kept for inspection and the exporter starts without it.
fn report_unusable_state_file(path: &std::path::Path, e: &StateFileError, now: f64) {
    let kept = match e {
        StateFileError::Corrupt { .. } => match state_file::set_aside(path, now) {
            Ok(aside) => format!("; it was moved to {}", aside.display()),
            Err(re) => format!("; it could not be moved aside ({re})"),
        },
        StateFileError::Read { .. } => String::new(),
    };
    error(&format!(
        "{e}{kept}; starting without the saved violations (their grace periods start over)"
    ));
}

/// Logs an invariant turning firing, or resolving (also by the unknown hold).
fn report_transition(
    name: &str,
    store: &str,
    d: &Definition,
    before: Option<Phase>,
    st: &SeriesState,
) {
    let at = if store.is_empty() {
        String::new()
    } else {
        format!(" store={store}")
    };
    let severity = d.rule.severity.as_str();
    match (before, st.phase) {
        (Some(Phase::Firing), Phase::Firing)
        | (_, Phase::Pending)
        | (None | Some(Phase::Ok | Phase::Pending), Phase::Ok) => {}
        (_, Phase::Firing) => warn(&format!(
            "firing: {name}{at} severity={severity}: {}",
            st.message
        )),
        (Some(Phase::Firing), Phase::Ok) if st.unknown => warn(&format!(
            "no longer counted as firing: {name}{at} severity={severity}: {}",
            st.message
        )),
        (Some(Phase::Firing), Phase::Ok) => info(&format!(
            "resolved: {name}{at} severity={severity}: {}",
            st.message
        )),
    }
}

/// The unmapped part of a query's mapping, for the snapshot.
fn unmapped_view(m: &MappedSamples) -> UnmappedView {
    UnmappedView {
        samples: m.unmapped as u64,
        example: m.example.as_ref().map(|labels| {
            let pairs: Vec<String> = labels
                .iter()
                .map(|(k, v)| format!("{k}={}", serde_json::Value::String(v.clone())))
                .collect();
            format!("{{{}}}", pairs.join(", "))
        }),
    }
}

/// A store as published; `hot` is the hot traffic of this health interval, where a store PD
/// lists without a `pd_hotspot_status` series has none (PD deletes the series then).
fn store_view(s: &Store, hot: Option<&BTreeMap<u64, StoreHotspot>>) -> StoreView {
    let flow = hot.map(|h| h.get(&s.id).copied().unwrap_or_default());
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
        start_timestamp: s.start_timestamp.filter(|&t| t > 0).map(|t| t as f64),
        hot_write: flow.map(|f| f.write),
        hot_read: flow.map(|f| f.read),
    }
}

mod prometheus_round;
#[cfg(test)]
mod tests;
