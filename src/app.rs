//! The long-running exporter: log sources, the poll loop and the HTTP server, under one
//! cancellation token. SIGTERM/SIGINT cancel it: the poll in progress is abandoned (its requests
//! dropped), the HTTP server drains open requests, the state of the last finished round is
//! written to the state file, log sources drain what they read.
//! SIGHUP and `POST /-/reload` reload the configuration between two polls (see [`reload`]).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, WebConfig, parse_listen_address};
use crate::domain::PathPattern;
use crate::exposition::View;
use crate::exposition::cache::CachedMetrics;
use crate::exposition::hot_regions::HotRegionsCache;
use crate::exposition::http::{Endpoints, ReloadTrigger, handler};
use crate::exposition::metrics::BuildInfo;
use crate::http_server::tracker::open_files_limit;
use crate::http_server::{Limits, ServeOptions};
use crate::logs::docker::DockerSource;
use crate::logs::file_source::FileSource;
use crate::logs::glob_source::GlobSource;
use crate::logs::ingest::EventHistory;
use crate::logs::source::{LogRegistry, SourceContext, SourceHandle, store_directory};
use crate::notifier::Notifier;
use crate::poller::Poller;
use crate::snapshot::{Published, Snapshot};
use crate::web_config::WebConfigSource;

/// How long open HTTP requests and log sources get to finish at shutdown.
const DRAIN: Duration = Duration::from_secs(5);

/// Resolves when SIGTERM or SIGINT arrives.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

/// Cancels `cancel` when SIGTERM or SIGINT arrives.
pub fn cancel_on_signal(cancel: &CancellationToken) {
    let cancel = cancel.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = shutdown_signal() => cancel.cancel(),
            _ = cancel.cancelled() => {}
        }
    });
}

/// Reads the configuration again for a reload: the file with the flags applied, validated.
pub type Loader = Box<dyn Fn() -> anyhow::Result<Config> + Send + Sync>;

/// A reload request: where to answer with its outcome.
type ReloadRequest = tokio::sync::oneshot::Sender<Result<(), String>>;

/// Runs the exporter until `cancel` (see [`cancel_on_signal`]); SIGHUP and `POST /-/reload`
/// apply what `loader` reads.
pub async fn run(cfg: Config, loader: Loader, cancel: CancellationToken) -> anyhow::Result<()> {
    run_inner(cfg, Some(loader), cancel, |_, _| {}).await
}

/// Like [`run`] without reloads, calling `observe` with the view and the new snapshot after
/// every poll.
pub async fn run_observed(
    cfg: Config,
    cancel: CancellationToken,
    observe: impl Fn(&View, &Snapshot),
) -> anyhow::Result<()> {
    run_inner(cfg, None, cancel, observe).await
}

/// Sends a reload request to the poll loop and waits for its outcome.
fn reload_trigger(tx: tokio::sync::mpsc::Sender<ReloadRequest>) -> ReloadTrigger {
    Arc::new(move || {
        let tx = tx.clone();
        Box::pin(async move {
            const GONE: &str = "the exporter is shutting down";
            let (reply, outcome) = tokio::sync::oneshot::channel();
            tx.send(reply).await.map_err(|_| GONE.to_owned())?;
            outcome.await.map_err(|_| GONE.to_owned())?
        })
    })
}

/// Triggers a reload at every SIGHUP until `cancel` (its outcome is logged by [`reload`]).
fn reload_on_sighup(trigger: ReloadTrigger, cancel: CancellationToken) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let mut hup = signal(SignalKind::hangup()).context("cannot handle SIGHUP")?;
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = cancel.cancelled() => break,
                    Some(()) = hup.recv() => {
                        crate::log::info("SIGHUP: reloading the configuration");
                        let _ = trigger().await;
                    }
                }
            }
        });
    }
    #[cfg(not(unix))]
    let _ = (trigger, cancel);
    Ok(())
}

/// Settings a reload cannot change in a running process, by config key.
fn restart_only(cfg: &Config) -> [(&'static str, String); 5] {
    [
        ("cluster_name", format!("{:?}", cfg.cluster_name)),
        ("alerting", format!("{:?}", cfg.alerting)),
        ("web", format!("{:?}", cfg.web)),
        ("logs", format!("{:?}", cfg.logs)),
        ("state_file", format!("{:?}", cfg.state_file)),
    ]
}

/// Applies a reloaded configuration to the poller: on success `running` becomes the new
/// configuration (with its restart-only settings kept, each change of one logged); on error
/// the old configuration keeps running and the error is logged and returned.
fn reload(loader: &Loader, poller: &mut Poller, running: &mut Config) -> Result<(), String> {
    let outcome = loader().map_err(|e| format!("{e:#}")).and_then(|new| {
        poller.reconfigure(&new).map_err(|e| e.to_string())?;
        Ok(new)
    });
    let mut new = match outcome {
        Ok(new) => new,
        Err(e) => {
            crate::log::error(&format!(
                "reload failed, the previous configuration keeps running: {e}"
            ));
            return Err(e);
        }
    };
    for ((key, old), (_, wanted)) in restart_only(running).iter().zip(restart_only(&new)) {
        if *old != wanted {
            crate::log::warn(&format!(
                "reload: {key} changed; that takes a restart, the running value is kept"
            ));
        }
    }
    new.cluster_name = running.cluster_name.clone();
    new.alerting = running.alerting.clone();
    new.web = running.web.clone();
    new.logs = running.logs.clone();
    new.state_file = running.state_file.clone();
    crate::log::info(&format!(
        "configuration reloaded; polling PD {} every {}; {} invariants",
        new.pd.endpoints.join(","),
        new.poll_interval,
        poller.definitions().len()
    ));
    *running = new;
    Ok(())
}

/// The HTTP server's options from `web` (the cap derived from the open-file limit when not
/// set; a cap at or above that limit is logged: accepts then fail before the cap is reached).
fn web_options(web: &WebConfig) -> ServeOptions {
    let files = open_files_limit();
    let max_connections = web
        .max_connections
        .unwrap_or_else(|| Limits::default_max_connections(files));
    if let Some(files) = files
        && max_connections as u64 >= files
    {
        crate::log::warn(&format!(
            "web.max_connections {max_connections} is not below the open-file limit {files}: at that limit accepts fail, and the exporter closes the connection idle the longest to take a new one"
        ));
    }
    ServeOptions {
        drain: DRAIN,
        limits: Limits {
            header_read_timeout: web.header_read_timeout.0,
            idle_timeout: web.idle_timeout.0,
            max_connections,
        },
        stats: Arc::default(),
        tls: None,
    }
}

async fn run_inner(
    mut cfg: Config,
    loader: Option<Loader>,
    cancel: CancellationToken,
    observe: impl Fn(&View, &Snapshot),
) -> anyhow::Result<()> {
    // SIGHUP is handled from the start (one during startup is a reload once the loop runs,
    // never the default action, which ends the process).
    let (reload_tx, mut reload_rx) = tokio::sync::mpsc::channel::<ReloadRequest>(4);
    let reload_http = match &loader {
        Some(_) => {
            let trigger = reload_trigger(reload_tx);
            reload_on_sighup(trigger.clone(), cancel.clone())?;
            Some(trigger)
        }
        None => None,
    };
    let addr = parse_listen_address(&cfg.web.listen_address)
        .map_err(|e| anyhow::anyhow!("web.listen_address: {e}"))?;
    let web_file = match &cfg.web.config_file {
        Some(p) => Some(Arc::new(
            WebConfigSource::open(p).context("web.config_file")?,
        )),
        None => None,
    };
    let listeners = crate::http_server::bind(&addr)
        .await
        .map_err(|e| anyhow::anyhow!("web.listen_address: {e}"))?;
    let listening: Vec<String> = listeners
        .iter()
        .filter_map(|l| l.local_addr().ok())
        .map(|a| a.to_string())
        .collect();
    let mut serve_opts = web_options(&cfg.web);
    let mut poller = Poller::new(&cfg)?;
    let hot_regions = Arc::new(HotRegionsCache::new());
    hot_regions.set_client(poller.pd_client());
    let (store_publisher, store_lookup) = store_directory();
    // The delivery tasks stop last: alerts queued by the last poll still go out while the
    // HTTP server and the log sources drain.
    let notifier_cancel = CancellationToken::new();
    // The watched cluster is a property of the alerts too (as of the series).
    let mut alerting = cfg.alerting.clone();
    if let Some(c) = &cfg.cluster_name {
        alerting.external_labels.insert("cluster".into(), c.clone());
    }
    let mut notifier = Notifier::spawn(&alerting, cfg.poll_interval.0, &notifier_cancel)
        .context("alerting.alertmanagers")?;
    let view = Arc::new(View {
        published: Arc::new(Published::new()),
        logs: Arc::new(LogRegistry::new()),
        history: Arc::new(EventHistory::new(cfg.logs.history_size)),
        notifier: notifier.as_ref().map(Notifier::stats).unwrap_or_default(),
        http: serve_opts.stats.clone(),
    });
    // Violations restored from the state file are served (unknown) from the first scrape on,
    // even while PD does not answer; the notifier takes their alerts as already sent.
    if let Some(restored) = poller.restored_snapshot() {
        if let Some(n) = &mut notifier {
            n.restore(&restored);
        }
        view.published.preload(restored);
    }
    let sources_cancel = CancellationToken::new();
    let ctx = SourceContext {
        registry: view.logs.clone(),
        history: view.history.clone(),
        stores: store_lookup,
        max_line_bytes: cfg.logs.max_line_bytes,
        cancel: sources_cancel.clone(),
    };
    let mut sources: Vec<SourceHandle> = Vec::new();
    for (i, f) in cfg.logs.files.iter().enumerate() {
        let spawned = if f.is_pattern() {
            let pattern =
                PathPattern::parse(&f.path).with_context(|| format!("logs.files[{i}].path"))?;
            GlobSource {
                pattern,
                path: f.path.clone(),
                label: f.source_label(),
                store: f.store.clone(),
                from_start: f.from_start,
                poll_interval: cfg.logs.poll_interval.0,
            }
            .spawn(ctx.clone())
        } else {
            FileSource {
                path: f.path.clone(),
                label: f.source_label(),
                store: f.store.clone().unwrap_or_default(),
                from_start: f.from_start,
                poll_interval: cfg.logs.poll_interval.0,
            }
            .spawn(ctx.clone())
        };
        sources.push(spawned.context("cannot start a log file thread")?);
    }
    if cfg.logs.docker.enabled {
        sources.push(DockerSource::new(&cfg.logs.docker).spawn(ctx.clone()));
    }
    let http = Arc::new(Endpoints {
        view: view.clone(),
        metrics: CachedMetrics::new(
            view.clone(),
            BuildInfo::current(),
            cfg.cluster_name.as_deref(),
        ),
        telemetry_path: cfg.web.telemetry_path.clone(),
        openmetrics: cfg.web.openmetrics,
        reload: reload_http,
        hot_regions: hot_regions.clone(),
    });
    let prerender = http.clone();
    let http_cancel = CancellationToken::new();
    let (handler, tls) = match &web_file {
        Some(w) => {
            let settings = w.current();
            crate::log::info(&format!(
                "web config file {}: {}",
                w.path().display(),
                settings.summary()
            ));
            if settings.basic_auth() && !settings.tls_enabled() {
                crate::log::warn(
                    "basic auth without TLS: passwords cross the network in clear text",
                );
            }
            (
                crate::web_config::protect(handler(http), w.clone()),
                crate::web_config::acceptor(w),
            )
        }
        None => (handler(http), None),
    };
    serve_opts.tls = tls;
    let server = tokio::spawn(crate::http_server::serve(
        listeners,
        handler,
        http_cancel.clone(),
        serve_opts,
    ));
    crate::log::info(&format!(
        "listening on {}; polling PD {} every {}; {} invariants; {} log files{}{}",
        listening.join(","),
        cfg.pd.endpoints.join(","),
        cfg.poll_interval,
        poller.definitions().len(),
        cfg.logs.files.len(),
        if cfg.logs.docker.enabled {
            "; following Docker containers"
        } else {
            ""
        },
        notifier.as_ref().map_or(String::new(), |n| format!(
            "; sending alerts to {} every {} (resolved by Alertmanager {}s after the last send)",
            n.stats()
                .alertmanagers
                .iter()
                .map(|d| d.name.as_str())
                .collect::<Vec<_>>()
                .join(","),
            cfg.alerting.resend_interval,
            n.valid_for()
        ))
    ));

    let mut tick = tokio::time::interval(cfg.poll_interval.0);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            biased;
            _ = cancel.cancelled() => break,
            _ = tick.tick() => {
                // Cancellation abandons the round in progress (it may wait on a slow PD for
                // its whole timeout); the state of the last finished round is written below.
                let started = std::time::Instant::now();
                let snap = tokio::select! {
                    biased;
                    _ = cancel.cancelled() => break,
                    snap = poller.poll() => snap,
                };
                if tracing::enabled!(tracing::Level::DEBUG) {
                    crate::log::debug(&format!(
                        "poll done in {:.3}s: {} stores, {} invariant series",
                        started.elapsed().as_secs_f64(),
                        snap.stores.len(),
                        snap.invariants.len()
                    ));
                }
                store_publisher.publish(poller.stores());
                view.published.publish(snap);
                let endpoints = prerender.clone();
                tokio::task::spawn_blocking(move || endpoints.metrics.prepare());
                let published = view.published.snapshot();
                if let Some(n) = &mut notifier {
                    n.notify(&published, published.taken_at);
                }
                observe(&view, &published);
            }
            Some(reply) = reload_rx.recv() => {
                let Some(loader) = &loader else { continue };
                let interval = cfg.poll_interval;
                let outcome = reload(loader, &mut poller, &mut cfg);
                if outcome.is_ok() {
                    hot_regions.set_client(poller.pd_client());
                }
                // A new configuration is evaluated (and published) at once, then every
                // (new) poll_interval.
                if outcome.is_ok() {
                    if cfg.poll_interval != interval {
                        tick = tokio::time::interval(cfg.poll_interval.0);
                        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    } else {
                        tick.reset_immediately();
                    }
                }
                let _ = reply.send(outcome);
            }
        }
    }
    crate::log::info("shutting down");
    http_cancel.cancel();
    let _ = server.await;
    poller.flush_state();
    sources_cancel.cancel();
    for s in sources {
        s.join(DRAIN).await;
    }
    notifier_cancel.cancel();
    Ok(())
}
