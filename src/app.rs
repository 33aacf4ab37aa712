//! The long-running exporter: log sources, the poll loop and the HTTP server, under one
//! cancellation token. SIGTERM/SIGINT cancel it: the poll in progress and the state-file write
//! finish first, the HTTP server drains open requests, log sources drain what they read.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio_util::sync::CancellationToken;

use crate::config::{Config, parse_listen_address};
use crate::exposition::View;
use crate::exposition::http::{Endpoints, handler};
use crate::exposition::metrics::{BuildInfo, registry};
use crate::logs::docker::DockerSource;
use crate::logs::file_source::FileSource;
use crate::logs::ingest::EventHistory;
use crate::logs::source::{LogRegistry, SourceContext, SourceHandle, store_directory};
use crate::notifier::Notifier;
use crate::poller::Poller;
use crate::snapshot::{Published, Snapshot};

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

/// Runs the exporter until `cancel` (see [`cancel_on_signal`]).
pub async fn run(cfg: Config, cancel: CancellationToken) -> anyhow::Result<()> {
    run_observed(cfg, cancel, |_, _| {}).await
}

/// Like [`run`], calling `observe` with the view and the new snapshot after every poll.
pub async fn run_observed(
    cfg: Config,
    cancel: CancellationToken,
    observe: impl Fn(&View, &Snapshot),
) -> anyhow::Result<()> {
    let addr = parse_listen_address(&cfg.web.listen_address)
        .map_err(|e| anyhow::anyhow!("web.listen_address: {e}"))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (web.listen_address)"))?;
    let mut poller = Poller::new(&cfg)?;
    let (store_publisher, store_lookup) = store_directory();
    // The delivery tasks stop last: alerts queued by the last poll still go out while the
    // HTTP server and the log sources drain.
    let notifier_cancel = CancellationToken::new();
    let mut notifier = Notifier::spawn(&cfg.alerting, cfg.poll_interval.0, &notifier_cancel)
        .context("alerting.alertmanagers")?;
    let view = Arc::new(View {
        published: Arc::new(Published::new()),
        logs: Arc::new(LogRegistry::new()),
        history: Arc::new(EventHistory::new(cfg.logs.history_size)),
        notifier: notifier.as_ref().map(Notifier::stats).unwrap_or_default(),
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
    for f in &cfg.logs.files {
        let source = FileSource {
            path: f.path.clone(),
            label: f.source_label(),
            store: f.store.clone().unwrap_or_default(),
            from_start: f.from_start,
            poll_interval: cfg.logs.poll_interval.0,
        };
        sources.push(
            source
                .spawn(ctx.clone())
                .context("cannot start a log file thread")?,
        );
    }
    if cfg.logs.docker.enabled {
        sources.push(DockerSource::new(&cfg.logs.docker).spawn(ctx.clone()));
    }
    let http = Arc::new(Endpoints {
        view: view.clone(),
        registry: registry(view.clone(), BuildInfo::current()),
        telemetry_path: cfg.web.telemetry_path.clone(),
    });
    let http_cancel = CancellationToken::new();
    let server = tokio::spawn(crate::http_server::serve(
        listener,
        handler(http),
        http_cancel.clone(),
        DRAIN,
    ));
    crate::log::info(&format!(
        "listening on {addr}; polling PD {} every {}; {} invariants; {} log files{}{}",
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
                // Cancellation during a poll is seen after it: the round and its state write finish.
                let snap = poller.poll().await;
                store_publisher.publish(poller.stores());
                view.published.publish(snap);
                let published = view.published.snapshot();
                if let Some(n) = &mut notifier {
                    n.notify(&published, published.taken_at);
                }
                observe(&view, &published);
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
