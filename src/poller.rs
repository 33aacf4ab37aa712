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

/// A round's Prometheus queries, running on their own task (aborted when dropped).
struct PromBatch(tokio::task::JoinHandle<PromAnswers>);

impl Drop for PromBatch {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What a batch of Prometheus queries brings back.
struct PromAnswers {
    /// Each query's result.
    results: QueryResults,
    /// How long the queries took.
    took: Duration,
    /// Prometheus' start time (asked only when `prometheus.warmup` is set).
    start_time: Option<f64>,
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

    /// The query texts of the configured invariants.
    fn queries(&self) -> BTreeSet<String> {
        self.defs
            .iter()
            .filter_map(|d| d.query().map(str::to_owned))
            .collect()
    }

    /// Starts this round's Prometheus queries, unless the last round's are still running.
    fn start_prometheus(&mut self) {
        let Some(prom) = self.prom.clone() else {
            return;
        };
        let queries = self.queries();
        if queries.is_empty() || self.prometheus_batch.is_some() {
            return;
        }
        let warmup = self.prometheus_warmup > 0.0;
        let task = tokio::spawn(async move {
            let t = Instant::now();
            let answers = async {
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
                let mut results = QueryResults::new();
                while let Some(done) = set.join_next().await {
                    if let Ok((q, r)) = done {
                        results.insert(q, r);
                    }
                }
                (results, t.elapsed())
            };
            let start_time = async {
                match warmup {
                    true => prom.start_time().await.ok(),
                    false => None,
                }
            };
            let ((results, took), start_time) = tokio::join!(answers, start_time);
            PromAnswers {
                results,
                took,
                start_time,
            }
        });
        self.prometheus_batch = Some(PromBatch(task));
    }

    /// This round's Prometheus results: the running queries' answers if they come before
    /// `deadline` (or, while some configured query has never been answered, within the
    /// queries' own timeout), otherwise each query's last answer. A slow Prometheus so delays
    /// only the Prometheus-based invariants, by at most `prometheus.timeout`, after which its
    /// queries fail and their invariants are unknown.
    async fn prometheus_round(&mut self, deadline: tokio::time::Instant) -> QueryResults {
        let unanswered = self
            .queries()
            .iter()
            .any(|q| !self.prometheus_last.contains_key(q));
        if let Some(batch) = &mut self.prometheus_batch {
            let done = if unanswered {
                Some((&mut batch.0).await)
            } else {
                tokio::time::timeout_at(deadline, &mut batch.0).await.ok()
            };
            if let Some(done) = done {
                self.prometheus_batch = None;
                if let Ok(answers) = done {
                    self.take_answers(answers);
                }
            }
        }
        std::mem::take(&mut self.prometheus_last)
    }

    /// Records a finished batch of queries: source health, per-query transitions, restarts.
    fn take_answers(&mut self, answers: PromAnswers) {
        let PromAnswers {
            results,
            took,
            start_time,
        } = answers;
        let failed: Vec<&Unavailable> = results.values().filter_map(|r| r.as_ref().err()).collect();
        let all_failed = !failed.is_empty() && failed.len() == results.len();
        let result = if all_failed {
            Err(failed[0].clone())
        } else {
            Ok(())
        };
        if !all_failed {
            self.report_queries(&results);
        }
        let started = Instant::now()
            .checked_sub(took)
            .unwrap_or_else(Instant::now);
        self.record("prometheus", started, result);
        if let Some(t) = start_time {
            self.prometheus_started_at(t);
        }
        self.prometheus_last = results;
    }

    /// Logs each invariant's query failing or answering again (Prometheus itself answers).
    fn report_queries(&mut self, results: &QueryResults) {
        for d in &self.defs {
            let Some(r) = d.query().and_then(|q| results.get(q)) else {
                continue;
            };
            let why = r.as_ref().err().map(Unavailable::to_string);
            self.reported.failing.log(
                &format!("Prometheus query of {}", d.rule.name),
                why.as_deref(),
                "fails",
                "answers again",
            );
        }
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
    /// Returns the answers it held, to be used again once the warm-up is over.
    fn hold_during_warmup(&self, out: &mut QueryResults) -> QueryResults {
        let mut held = QueryResults::new();
        let left = self.prometheus_warm_until - self.clock.now();
        if left <= 0.0 {
            return held;
        }
        for d in self.defs.iter().filter(|d| d.is_builtin_prometheus()) {
            if let Some(q) = d.query()
                && let Some(Ok(_)) = out.get(q)
            {
                let answer = out.insert(
                    q.to_owned(),
                    Err(Unavailable::new(format!(
                        "Prometheus restarted; its rate windows have a gap for {left:.0}s more (prometheus.warmup)"
                    ))),
                );
                held.extend(answer.map(|a| (q.to_owned(), a)));
            }
        }
        held
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::domain::Member;
    use crate::invariants::engine::Phase;
    use crate::sources::pd::RejectedStore;
    use crate::sources::prometheus::Sample;
    use std::time::Duration;

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

    /// Store 1 whose last heartbeat was at `hb` (Unix seconds), in PD state `state`.
    fn beating(state: StoreState, hb: f64) -> Store {
        Store {
            last_heartbeat_ns: Some((hb * 1e9) as u64),
            ..store(1, state, 50)
        }
    }

    fn member(name: &str, id: u64) -> Member {
        Member {
            name: name.into(),
            member_id: id,
            client_urls: vec![],
        }
    }

    fn healthy_pd() -> PdHealth {
        PdHealth {
            leader: Some(member("pd-0", 1)),
            etcd_leader: Some(member("pd-0", 1)),
            other_leaders: vec![],
            members: 3,
            answered: 3,
            asked: 3,
            unhealthy: Some(vec![]),
        }
    }

    fn obs(now: f64, stores: Vec<Store>) -> Observations {
        let mut o = Observations::new(now, stores);
        o.pd_health = Ok(healthy_pd());
        o.schedule.max_store_down_time = Some(Duration::from_secs(1800));
        o
    }

    fn poller(yaml: &str, clock: Arc<ManualClock>) -> Poller {
        let cfg = Config::from_yaml(yaml).unwrap();
        Poller::with_clock(&cfg, clock).unwrap()
    }

    fn find<'a>(s: &'a Snapshot, name: &str, store: &str) -> Option<&'a InvariantView> {
        s.invariants
            .iter()
            .find(|i| &*i.name == name && i.store == store)
    }

    fn view<'a>(s: &'a Snapshot, name: &str, store: &str) -> &'a InvariantView {
        find(s, name, store).unwrap_or_else(|| panic!("no {name}/{store} in {:?}", s.invariants))
    }

    fn sample(labels: &[(&str, &str)], v: f64) -> Sample {
        Sample {
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            value: v,
        }
    }

    fn query(p: &Poller, name: &str) -> String {
        p.definitions()
            .iter()
            .find(|d| &*d.rule.name == name)
            .and_then(|d| d.query())
            .unwrap()
            .to_owned()
    }

    #[test]
    fn a_disk_filling_goes_pending_then_firing_after_its_grace_then_resolves() {
        let clock = Arc::new(ManualClock::at(T0));
        let mut p = poller("", clock.clone());
        let s = p.evaluate(&obs(T0, vec![store(1, StoreState::Up, 50)]));
        assert_eq!(view(&s, "disk_usage", "1").state, Phase::Ok);
        assert_eq!(view(&s, "disk_usage", "1").value, Some(0.5));
        // 75 % used: pending for the 5 m grace, firing once it has held that long.
        let s = p.evaluate(&obs(T0 + 10.0, vec![store(1, StoreState::Up, 25)]));
        let d = view(&s, "disk_usage", "1");
        assert_eq!(
            (d.state, d.since, d.unknown),
            (Phase::Pending, Some(T0 + 10.0), false)
        );
        assert_eq!(view(&s, "disk_low_space", "1").state, Phase::Ok);
        let s = p.evaluate(&obs(T0 + 309.0, vec![store(1, StoreState::Up, 25)]));
        assert_eq!(view(&s, "disk_usage", "1").state, Phase::Pending);
        let s = p.evaluate(&obs(T0 + 310.0, vec![store(1, StoreState::Up, 25)]));
        assert_eq!(view(&s, "disk_usage", "1").state, Phase::Firing);
        let s = p.evaluate(&obs(T0 + 320.0, vec![store(1, StoreState::Up, 60)]));
        let d = view(&s, "disk_usage", "1");
        assert_eq!((d.state, d.since), (Phase::Ok, None));
        assert_eq!(s.taken_at, T0 + 320.0);
    }

    #[test]
    fn space_thresholds_follow_pds_ratios_warning_at_high_critical_at_low() {
        let clock = Arc::new(ManualClock::at(T0));
        let mut p = poller(
            "invariants:\n  disk_usage:\n    grace: 0s\n  disk_low_space:\n    grace: 0s\n",
            clock,
        );
        // PD configured high-space-ratio 0.5, low-space-ratio 0.6; the store is 55 % used.
        let mut o = obs(T0, vec![store(1, StoreState::Up, 45)]);
        o.schedule.high_space_ratio = Some(0.5);
        o.schedule.low_space_ratio = Some(0.6);
        let s = p.evaluate(&o);
        let (w, c) = (view(&s, "disk_usage", "1"), view(&s, "disk_low_space", "1"));
        assert_eq!(
            (w.state, w.threshold, w.severity),
            (Phase::Firing, 0.5, crate::domain::Severity::Warning)
        );
        assert_eq!(
            (c.state, c.threshold, c.severity),
            (Phase::Ok, 0.6, crate::domain::Severity::Critical)
        );
        // 65 % used: past low-space-ratio too.
        o.stores = vec![store(1, StoreState::Up, 35)];
        let s = p.evaluate(&o);
        assert_eq!(view(&s, "disk_low_space", "1").state, Phase::Firing);
        // PD without the ratios: the documented fallback 0.7 / 0.8.
        o.schedule = ScheduleConfig::default();
        let s = p.evaluate(&o);
        assert_eq!(view(&s, "disk_usage", "1").threshold, 0.7);
        assert_eq!(view(&s, "disk_low_space", "1").threshold, 0.8);
        assert_eq!(view(&s, "disk_usage", "1").state, Phase::Ok);
    }

    #[test]
    fn a_rolling_restart_of_30s_raises_nothing_critical() {
        let clock = Arc::new(ManualClock::at(T0));
        let mut p = poller("", clock);
        // Last heartbeat at T0; PD marks the store Disconnected at T0 + 20; it is back at T0 + 30.
        let mut firing = 0;
        for t in (0..=60).step_by(5) {
            let now = T0 + t as f64;
            let st = match t {
                0..20 => beating(StoreState::Up, T0),
                20..30 => beating(StoreState::Disconnected, T0),
                _ => beating(StoreState::Up, now),
            };
            let s = p.evaluate(&obs(now, vec![st]));
            let d = view(&s, "store_down", "1");
            firing += usize::from(d.state == Phase::Firing);
            if (20..30).contains(&t) {
                assert_eq!(
                    (d.state, d.since),
                    (Phase::Pending, Some(T0 + 20.0)),
                    "t={t}"
                );
            }
        }
        assert_eq!(firing, 0);
    }

    #[test]
    fn a_restart_of_100s_is_critical_within_one_poll_after_the_grace() {
        let clock = Arc::new(ManualClock::at(T0));
        let mut p = poller("", clock);
        let down = |t: f64| obs(T0 + t, vec![beating(StoreState::Disconnected, T0)]);
        assert_eq!(
            view(&p.evaluate(&down(20.0)), "store_down", "1").state,
            Phase::Pending
        );
        assert_eq!(
            view(&p.evaluate(&down(79.0)), "store_down", "1").state,
            Phase::Pending
        );
        let s = p.evaluate(&down(80.0));
        let d = view(&s, "store_down", "1");
        assert_eq!(
            (d.state, d.since, d.severity),
            (
                Phase::Firing,
                Some(T0 + 20.0),
                crate::domain::Severity::Critical
            )
        );
        let s = p.evaluate(&obs(T0 + 100.0, vec![beating(StoreState::Up, T0 + 100.0)]));
        assert_eq!(view(&s, "store_down", "1").state, Phase::Ok);
        // The exporter starting while a store has been Disconnected for long: firing at once.
        let mut p = poller("", Arc::new(ManualClock::at(T0)));
        assert_eq!(
            view(&p.evaluate(&down(300.0)), "store_down", "1").state,
            Phase::Firing
        );
        // A configured grace applies the same way.
        let mut p = poller(
            "invariants:\n  store_down:\n    grace: 10s\n",
            Arc::new(ManualClock::at(T0)),
        );
        assert_eq!(
            view(&p.evaluate(&down(29.0)), "store_down", "1").state,
            Phase::Pending
        );
        assert_eq!(
            view(&p.evaluate(&down(30.0)), "store_down", "1").state,
            Phase::Firing
        );
    }

    #[test]
    fn down_is_critical_at_once_and_offline_stores_are_judged_by_heartbeat() {
        let clock = Arc::new(ManualClock::at(T0));
        let mut p = poller("", clock);
        let mut down = beating(StoreState::Down, T0 - 3600.0);
        down.id = 2;
        let mut down_no_hb = store(3, StoreState::Down, 50);
        down_no_hb.last_heartbeat_ns = None;
        let crashed_offline = Store {
            id: 4,
            ..beating(StoreState::Offline, T0 - 90.0)
        };
        let draining = Store {
            id: 5,
            ..beating(StoreState::Offline, T0 - 5.0)
        };
        let s = p.evaluate(&obs(T0, vec![down, down_no_hb, crashed_offline, draining]));
        assert_eq!(view(&s, "store_down", "2").state, Phase::Firing);
        assert_eq!(view(&s, "store_down", "3").state, Phase::Firing);
        let off = view(&s, "store_down", "4");
        // Heartbeat 90 s old > threshold 60 s: violated since T0 - 30, grace 60 s → pending.
        assert_eq!(
            (off.state, off.since),
            (Phase::Pending, Some(T0 - 30.0)),
            "{}",
            off.message
        );
        assert!(off.message.contains("Offline"), "{}", off.message);
        assert_eq!(view(&s, "store_down", "5").state, Phase::Ok);
        // Offline stores are not judged by the other invariants.
        assert!(find(&s, "disk_usage", "4").is_none());
    }

    #[test]
    fn a_store_without_state_name_and_heartbeat_is_unknown_never_healthy() {
        let clock = Arc::new(ManualClock::at(T0));
        let mut p = poller("", clock);
        let mut s = store(1, StoreState::Up, 50);
        s.state_inferred = true;
        s.last_heartbeat_ns = None;
        let mut with_hb = store(2, StoreState::Up, 50);
        with_hb.state_inferred = true;
        let mut said_up = store(3, StoreState::Up, 50);
        said_up.last_heartbeat_ns = None;
        let snap = p.evaluate(&obs(T0, vec![s, with_hb, said_up]));
        let d = view(&snap, "store_down", "1");
        assert!(
            d.unknown && d.message.contains("neither a state_name"),
            "{}",
            d.message
        );
        assert!(
            !view(&snap, "store_down", "2").unknown,
            "judged by its heartbeat"
        );
        assert!(!view(&snap, "store_down", "3").unknown, "PD says Up");
    }

    #[test]
    fn pd_failing_makes_store_invariants_unknown_and_keeps_firing_ones_firing() {
        let clock = Arc::new(ManualClock::at(T0));
        let mut p = poller("invariants:\n  store_down:\n    grace: 0s\n", clock.clone());
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
        assert!(find(&s, "disk_usage", "1").is_some());
        // Unknown for the 5 m hold: no longer counted as violated, still unknown.
        o.now = T0 + 310.0;
        let s = p.evaluate(&o);
        let d = view(&s, "store_down", "1");
        assert_eq!((d.state, d.unknown), (Phase::Ok, true));
    }

    /// A steady violation keeps the file fresh: after more than the outage tolerance of the
    /// same violation, a crash (no shutdown write) still restores it with its start.
    #[test]
    fn a_steady_violation_refreshes_saved_at_so_a_crash_an_hour_later_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let yaml = format!(
            "state_file: {}\ninvariants:\n  store_down:\n    grace: 0s\n",
            path.display()
        );
        let clock = Arc::new(ManualClock::at(T0));
        let mut p = poller(&yaml, clock.clone());
        let saved_at = || -> f64 {
            let v: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            v["saved_at"].as_f64().unwrap()
        };
        while clock.now() < T0 + 1.5 * state_file::OUTAGE_TOLERANCE_SECS {
            let t = clock.now();
            p.evaluate(&obs(t, vec![store(1, StoreState::Disconnected, 50)]));
            assert!(
                t - saved_at() < state_file::REFRESH_SECS,
                "saved_at {} at {t}",
                saved_at()
            );
            clock.advance(10.0);
        }
        std::mem::forget(p); // a crash: no shutdown write
        clock.advance(20.0);
        let mut p = poller(&yaml, clock.clone());
        let s = p.restored_snapshot().expect("restored after the crash");
        let d = view(&s, "store_down", "1");
        assert_eq!((d.state, d.since), (Phase::Firing, Some(T0)));
        // Without violations nothing is rewritten (the file is not touched every round).
        let quiet_dir = tempfile::tempdir().unwrap();
        let quiet = quiet_dir.path().join("state.json");
        let yaml = format!("state_file: {}\n", quiet.display());
        let mut p = poller(&yaml, Arc::new(ManualClock::at(T0)));
        for i in 0..100 {
            let t = T0 + f64::from(i) * 10.0;
            p.evaluate(&obs(t, vec![beating(StoreState::Up, t)]));
        }
        assert!(!quiet.exists(), "written without any violation");
    }

    /// Empty, truncated and non-JSON state files: the poller starts, the file is moved aside
    /// (kept for inspection, never overwritten) and counted.
    #[test]
    fn a_corrupt_state_file_is_set_aside_counted_and_the_poller_starts() {
        for bad in [
            &b""[..],
            b"{\"version\":1,\"saved_at\":17",
            b"\x00\x01garbage",
        ] {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("state.json");
            std::fs::write(&path, bad).unwrap();
            std::fs::write(dir.path().join("state.tmp"), b"").unwrap();
            let yaml = format!("state_file: {}\n", path.display());
            let mut p = poller(&yaml, Arc::new(ManualClock::at(T0)));
            let aside = dir.path().join(format!("state.json.corrupt-{}", T0 as i64));
            assert_eq!(std::fs::read(&aside).unwrap(), bad, "kept as it was");
            assert!(!path.exists());
            assert!(!dir.path().join("state.tmp").exists(), "leftover removed");
            let s = p.evaluate(&obs(T0, vec![store(1, StoreState::Up, 50)]));
            assert_eq!(
                s.state_file,
                Some(StateFileHealth {
                    corrupt: 1,
                    write_failures: 0
                })
            );
        }
        // Without a state file there are no state-file counters at all.
        let mut p = poller("", Arc::new(ManualClock::at(T0)));
        assert_eq!(p.evaluate(&obs(T0, vec![])).state_file, None);
    }

    #[test]
    fn restored_violations_are_served_unknown_with_their_since_while_pd_is_down() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let yaml = format!(
            "state_file: {}\ninvariants:\n  store_down:\n    grace: 0s\n",
            path.display()
        );
        let clock = Arc::new(ManualClock::at(T0));
        let mut p = poller(&yaml, clock.clone());
        p.evaluate(&obs(T0, vec![store(1, StoreState::Disconnected, 50)]));
        drop(p);
        clock.advance(30.0);
        let mut p = poller(&yaml, clock.clone());
        let s = p.restored_snapshot().expect("something was restored");
        let d = view(&s, "store_down", "1");
        assert_eq!(
            (d.state, d.since, d.unknown),
            (Phase::Firing, Some(T0), true)
        );
        // PD answers 503 at the first poll: still served.
        let mut o = obs(T0 + 31.0, vec![]);
        o.pd_error = Some(Unavailable::new("HTTP 503"));
        let s = p.evaluate(&o);
        let d = view(&s, "store_down", "1");
        assert_eq!(
            (d.state, d.since, d.unknown),
            (Phase::Firing, Some(T0), true)
        );
        assert!(d.message.contains("HTTP 503"), "{}", d.message);
        // Nothing restored: nothing to serve before the first poll.
        assert!(poller("", clock).restored_snapshot().is_none());
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
    fn a_duplicated_store_id_keeps_its_last_entry_and_is_unknown() {
        let clock = Arc::new(ManualClock::at(T0));
        let mut p = poller("invariants:\n  store_down:\n    grace: 0s\n", clock);
        p.set_store_list(StoreList {
            stores: vec![
                store(1, StoreState::Disconnected, 50),
                store(2, StoreState::Up, 50),
            ],
            rejected: vec![],
        });
        let o = p.observations(None, QueryResults::new());
        let s = p.evaluate(&o);
        assert_eq!(view(&s, "store_down", "1").state, Phase::Firing);
        // Store 1 listed twice (and an entry without an id): store 1 stays, firing, unknown.
        let dup = |id| RejectedStore {
            reason: RejectReason::DuplicateId,
            id: Some(id),
            detail: format!("store {id} is listed 2 times"),
        };
        p.set_store_list(StoreList {
            stores: vec![store(2, StoreState::Up, 50)],
            rejected: vec![
                dup(1),
                dup(1),
                RejectedStore {
                    reason: RejectReason::InvalidId,
                    id: None,
                    detail: "store id none".into(),
                },
            ],
        });
        let ids: Vec<u64> = p.stores().iter().map(|s| s.id).collect();
        assert_eq!(ids, [1, 2]);
        let o = p.observations(None, QueryResults::new());
        let s = p.evaluate(&o);
        let d = view(&s, "store_down", "1");
        assert_eq!((d.state, d.unknown), (Phase::Firing, true));
        assert!(d.message.contains("more than once"), "{}", d.message);
        assert!(!view(&s, "store_down", "2").unknown);
        assert_eq!(s.rejected_stores["duplicate_id"], 2);
        assert_eq!(s.rejected_stores["invalid_id"], 1);
        // Store 2 now missing while an entry has no id: kept, unknown, not resolved.
        p.set_store_list(StoreList {
            stores: vec![],
            rejected: vec![RejectedStore {
                reason: RejectReason::InvalidId,
                id: None,
                detail: "store id 18446744073709551616".into(),
            }],
        });
        let o = p.observations(None, QueryResults::new());
        let s = p.evaluate(&o);
        let d = view(&s, "store_down", "2");
        assert!(
            d.unknown && d.message.contains("without a usable id"),
            "{}",
            d.message
        );
        assert_eq!(p.stores().len(), 2);
    }

    #[test]
    fn prometheus_invariants_map_samples_to_stores_and_miss_is_unknown() {
        let clock = Arc::new(ManualClock::at(T0));
        let mut p = poller("prometheus:\n  url: http://127.0.0.1:9\n", clock.clone());
        let mut o = obs(
            T0,
            vec![store(1, StoreState::Up, 50), store(2, StoreState::Up, 50)],
        );
        o.prom.insert(
            query(&p, "cpu_usage"),
            Ok(vec![
                sample(&[("instance", "tikv-1:20180")], 0.9),
                sample(&[("instance", "pd-0:2379")], 0.1),
            ]),
        );
        o.prom.insert(
            query(&p, "write_latency_p99"),
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
        // One sample mapped to no store; the failed query has no count.
        assert_eq!(s.unmapped["cpu_usage"].samples, 1);
        assert_eq!(
            s.unmapped["cpu_usage"].example.as_deref(),
            Some(r#"{instance="pd-0:2379"}"#)
        );
        assert!(!s.unmapped.contains_key("write_latency_p99"));
    }

    #[test]
    fn the_store_mapping_override_maps_labels_the_builtin_rules_do_not_know() {
        let clock = Arc::new(ManualClock::at(T0));
        let mut p = poller(
            "prometheus:\n  url: http://127.0.0.1:9\n  store_mapping:\n    label: node\n    regex: 'kv-(\\d+)\\.example'\n",
            clock,
        );
        let q = query(&p, "cpu_usage");
        assert!(
            q.contains("node)"),
            "the override's label is kept by the query: {q}"
        );
        p.set_store_list(StoreList {
            stores: vec![store(1, StoreState::Up, 50), store(2, StoreState::Up, 50)],
            rejected: vec![],
        });
        let mut o = p.observations(None, QueryResults::new());
        o.prom.insert(
            q,
            Ok(vec![
                sample(
                    &[("instance", "10.9.9.9:9000"), ("node", "kv-2.example")],
                    0.9,
                ),
                sample(
                    &[("instance", "10.9.9.8:9000"), ("node", "db-1.example")],
                    0.9,
                ),
            ]),
        );
        let s = p.evaluate(&o);
        assert_eq!(view(&s, "cpu_usage", "2").value, Some(0.9));
        assert!(view(&s, "cpu_usage", "1").unknown);
        assert_eq!(s.unmapped["cpu_usage"].samples, 1);
    }

    #[test]
    fn an_idle_store_is_ok_a_missing_one_unknown_and_nan_never_wins() {
        let clock = Arc::new(ManualClock::at(T0));
        let mut p = poller(
            "prometheus:\n  url: http://127.0.0.1:9\ninvariants:\n  write_latency_p99:\n    grace: 0s\n",
            clock,
        );
        let mut o = obs(
            T0,
            (1..=3).map(|id| store(id, StoreState::Up, 50)).collect(),
        );
        // The built-in query reports 0 for an instance whose series exist but served no write;
        // here store 2 is idle, store 1 slow (plus a NaN sample), store 3 has no series at all.
        o.prom.insert(
            query(&p, "write_latency_p99"),
            Ok(vec![
                sample(&[("instance", "tikv-1:20180")], f64::NAN),
                sample(&[("instance", "tikv-1:20180"), ("pod", "x")], 0.5),
                sample(&[("instance", "tikv-2:20180")], 0.0),
            ]),
        );
        let s = p.evaluate(&o);
        let w1 = view(&s, "write_latency_p99", "1");
        assert_eq!((w1.state, w1.value), (Phase::Firing, Some(0.5)));
        let w2 = view(&s, "write_latency_p99", "2");
        assert_eq!(
            (w2.state, w2.value, w2.unknown),
            (Phase::Ok, Some(0.0), false)
        );
        assert!(view(&s, "write_latency_p99", "3").unknown);
    }

    #[test]
    fn custom_invariants_aggregate_the_worst_sample_for_their_op() {
        let clock = Arc::new(ManualClock::at(T0));
        let mut p = poller(
            "prometheus:\n  url: http://127.0.0.1:9\ncustom_invariants:\n  - name: free_ratio\n    query: free\n    op: \"<\"\n    threshold: 0.2\n  - name: cluster_min\n    query: lag\n    op: \"<=\"\n    threshold: 1\n    scope: cluster\n",
            clock,
        );
        let mut o = obs(T0, vec![store(1, StoreState::Up, 50)]);
        // Two disks on store 1: the emptier one decides for `<`.
        o.prom.insert(
            "free".into(),
            Ok(vec![
                sample(&[("instance", "tikv-1:20180"), ("device", "a")], 0.9),
                sample(&[("instance", "tikv-1:20180"), ("device", "b")], 0.1),
            ]),
        );
        o.prom.insert(
            "lag".into(),
            Ok(vec![sample(&[("x", "a")], 5.0), sample(&[("x", "b")], 0.5)]),
        );
        let s = p.evaluate(&o);
        let f = view(&s, "free_ratio", "1");
        assert_eq!((f.state, f.value), (Phase::Firing, Some(0.1)));
        let c = view(&s, "cluster_min", "");
        assert_eq!((c.state, c.value), (Phase::Firing, Some(0.5)));
    }

    #[test]
    fn a_reconfiguration_keeps_running_grace_periods_and_a_refused_one_changes_nothing() {
        let clock = Arc::new(ManualClock::at(T0));
        let mut p = poller("", clock);
        p.evaluate(&obs(T0, vec![store(1, StoreState::Up, 50)]));
        // 75 % used from T0 + 10: pending under the default 5 m grace.
        let s = p.evaluate(&obs(T0 + 10.0, vec![store(1, StoreState::Up, 25)]));
        assert_eq!(view(&s, "disk_usage", "1").state, Phase::Pending);
        // A 1 m grace, counted from when the violation began, not from the reload.
        let shorter = Config::from_yaml("invariants: {disk_usage: {grace: 1m}}").unwrap();
        p.reconfigure(&shorter).unwrap();
        let s = p.evaluate(&obs(T0 + 75.0, vec![store(1, StoreState::Up, 25)]));
        let d = view(&s, "disk_usage", "1");
        assert_eq!((d.state, d.since), (Phase::Firing, Some(T0 + 10.0)));
        // A configuration whose PD client cannot be built: an error, the 1 m grace stays.
        let bad = Config::from_yaml(
            "pd: {endpoints: ['ftp://pd:2379']}\ninvariants: {disk_usage: {grace: 10m}}",
        )
        .unwrap();
        assert!(p.reconfigure(&bad).is_err());
        let grace = |p: &Poller| {
            p.definitions()
                .iter()
                .find(|d| &*d.rule.name == "disk_usage")
                .map(|d| d.rule.grace)
        };
        assert_eq!(grace(&p), Some(60.0));
    }

    #[test]
    fn stores_without_a_slow_score_have_no_store_slow_series() {
        let clock = Arc::new(ManualClock::at(T0));
        let mut p = poller("", clock);
        let mut old = store(1, StoreState::Up, 50);
        old.slow_score = None;
        let mut zero = store(2, StoreState::Up, 50);
        zero.slow_score = Some(0.0);
        let mut slow = store(3, StoreState::Up, 50);
        slow.slow_score = Some(85.0);
        let s = p.evaluate(&obs(T0, vec![old, zero, slow]));
        assert!(find(&s, "store_slow", "1").is_none());
        assert!(find(&s, "store_slow", "2").is_none());
        assert_eq!(view(&s, "store_slow", "3").state, Phase::Firing);
        assert!(!view(&s, "store_down", "1").unknown);
    }

    #[test]
    fn pd_leader_fires_without_a_leader_on_a_leader_mismatch_and_on_unhealthy_members() {
        let clock = Arc::new(ManualClock::at(T0));
        let mut p = poller("", clock);
        let with = |h: PdHealth, t: f64| {
            let mut o = obs(T0 + t, vec![store(1, StoreState::Up, 50)]);
            o.pd_health = Ok(h);
            o
        };
        let s = p.evaluate(&with(healthy_pd(), 0.0));
        assert_eq!(view(&s, "pd_leader", "").state, Phase::Ok);
        let leaderless = PdHealth {
            leader: None,
            unhealthy: Some(vec!["pd-0".into(), "pd-1".into(), "pd-2".into()]),
            ..healthy_pd()
        };
        let s = p.evaluate(&with(leaderless.clone(), 10.0));
        let v = view(&s, "pd_leader", "");
        assert_eq!(v.state, Phase::Pending, "inside the 30 s grace");
        assert!(v.message.contains("no PD leader (3 of 3"), "{}", v.message);
        let s = p.evaluate(&with(leaderless, 40.0));
        assert_eq!(view(&s, "pd_leader", "").state, Phase::Firing);
        let s = p.evaluate(&with(healthy_pd(), 50.0));
        assert_eq!(view(&s, "pd_leader", "").state, Phase::Ok);
        let mismatch = PdHealth {
            etcd_leader: Some(member("pd-2", 3)),
            ..healthy_pd()
        };
        let s = p.evaluate(&with(mismatch.clone(), 60.0));
        assert!(
            view(&s, "pd_leader", "")
                .message
                .contains("not the etcd leader pd-2")
        );
        let s = p.evaluate(&with(mismatch, 90.0));
        assert_eq!(view(&s, "pd_leader", "").state, Phase::Firing);
        let sick = PdHealth {
            unhealthy: Some(vec!["pd-1".into()]),
            ..healthy_pd()
        };
        let s = p.evaluate(&with(sick, 100.0));
        let v = view(&s, "pd_leader", "");
        assert!(
            v.message.contains("unhealthy PD members: pd-1"),
            "{}",
            v.message
        );
        // Health unreadable but a leader known and agreed: unknown, not healthy.
        let unread = PdHealth {
            unhealthy: None,
            ..healthy_pd()
        };
        let s = p.evaluate(&with(unread, 110.0));
        assert!(view(&s, "pd_leader", "").unknown);
    }

    #[test]
    fn a_prometheus_restart_holds_the_builtin_rate_queries_unknown_for_the_warmup() {
        let clock = Arc::new(ManualClock::at(T0));
        let mut p = poller(
            "prometheus:\n  url: http://127.0.0.1:9\n  warmup: 60s\n",
            clock.clone(),
        );
        let cpu = query(&p, "cpu_usage");
        p.prometheus_started_at(T0 - 3600.0);
        let mut out: QueryResults = BTreeMap::new();
        out.insert(cpu.clone(), Ok(vec![]));
        assert!(p.hold_during_warmup(&mut out).is_empty());
        assert!(out[&cpu].is_ok(), "no restart seen");
        // Restarted 10 s ago: held for the 50 s left of the warm-up; the answer is given back.
        p.prometheus_started_at(T0 - 10.0);
        let held = p.hold_during_warmup(&mut out);
        assert!(held[&cpu].is_ok());
        let e = out[&cpu].as_ref().unwrap_err();
        assert!(e.to_string().contains("for 50s more"), "{e}");
        clock.advance(51.0);
        let mut out: QueryResults = BTreeMap::new();
        out.insert(cpu.clone(), Ok(vec![]));
        p.hold_during_warmup(&mut out);
        assert!(out[&cpu].is_ok(), "warm-up over");
    }

    #[test]
    fn the_state_file_carries_a_violation_across_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let yaml = format!("state_file: {}\n", path.display());
        let clock = Arc::new(ManualClock::at(T0));
        let mut p = poller(&yaml, clock.clone());
        p.evaluate(&obs(T0, vec![store(1, StoreState::Up, 25)]));
        drop(p);
        clock.advance(200.0);
        let mut p = poller(&yaml, clock.clone());
        let s = p.evaluate(&obs(T0 + 200.0, vec![store(1, StoreState::Up, 25)]));
        let d = view(&s, "disk_usage", "1");
        assert_eq!((d.state, d.since), (Phase::Pending, Some(T0)));
        let s = p.evaluate(&obs(T0 + 300.0, vec![store(1, StoreState::Up, 25)]));
        assert_eq!(view(&s, "disk_usage", "1").state, Phase::Firing);
    }

    #[test]
    fn tombstone_and_excluded_tiflash_stores_are_not_evaluated() {
        let clock = Arc::new(ManualClock::at(T0));
        let mut p = poller("pd:\n  tiflash: exclude\n", clock);
        let mut flash = store(3, StoreState::Up, 50);
        flash.labels = vec![("engine".into(), "tiflash".into())];
        p.set_store_list(StoreList {
            stores: vec![
                store(2, StoreState::Up, 50),
                store(1, StoreState::Tombstone, 50),
                flash,
            ],
            rejected: vec![],
        });
        let ids: Vec<u64> = p.stores().iter().map(|s| s.id).collect();
        assert_eq!(ids, [2]);
    }
}
