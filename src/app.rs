//! The long-running exporter: log readers, the poll loop and the HTTP server, with a graceful
//! shutdown on SIGTERM/SIGINT (the poll in progress and the state file write finish first).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::Context;
use tokio::sync::watch;

use crate::config::{Config, parse_listen_address};
use crate::exposition::http::{HttpState, serve};
use crate::exposition::metrics::{BuildInfo, registry};
use crate::logs::file::{FileFollower, FollowOptions};
use crate::logs::ingest::{EventHistory, Ingestor, SourceStats};
use crate::state::Shared;
use crate::watch::Watcher;

/// Follows one log file on its own thread until `stop` is set.
fn spawn_file_source(
    cfg: &crate::config::LogFileConfig,
    logs: &crate::config::LogsConfig,
    stats: Arc<SourceStats>,
    history: Arc<EventHistory>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    let mut follower = FileFollower::new(
        cfg.path.clone(),
        FollowOptions {
            from_start: cfg.from_start,
            max_line_bytes: logs.max_line_bytes,
            ..FollowOptions::default()
        },
    );
    let interval = logs.poll_interval.0;
    std::thread::spawn(move || {
        let mut ing = Ingestor::new(stats.clone(), Some(history));
        let mut last_error = String::new();
        while !stop.load(Ordering::Relaxed) {
            match follower.poll(|l| {
                ing.ingest(l);
            }) {
                Ok(status) => {
                    stats.set_up(status == crate::logs::file::FileStatus::Open);
                    last_error.clear();
                }
                Err(e) => {
                    stats.set_up(false);
                    let msg = format!("{}: {e}", follower.path().display());
                    if msg != last_error {
                        crate::log::warn(&format!("log source {}: {msg}", stats.source));
                        last_error = msg;
                    }
                }
            }
            ing.flush();
            std::thread::sleep(interval);
        }
        follower.finish(|l| {
            ing.ingest(l);
        });
        ing.flush();
    })
}

/// Resolves when SIGTERM or SIGINT arrives.
async fn shutdown_signal() {
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

/// Runs the exporter until a shutdown signal.
pub async fn run(cfg: Config) -> anyhow::Result<()> {
    run_observed(cfg, |_, _| {}).await
}

/// Like [`run`], calling `observe` with the shared state after every published poll.
pub async fn run_observed(
    cfg: Config,
    observe: impl Fn(&Shared, &crate::state::Snapshot),
) -> anyhow::Result<()> {
    let addr = parse_listen_address(&cfg.web.listen_address)
        .map_err(|e| anyhow::anyhow!("web.listen_address: {e}"))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr} (web.listen_address)"))?;
    let mut watcher = Watcher::new(&cfg)?;
    let history = Arc::new(EventHistory::new(cfg.logs.history_size));
    let stop = Arc::new(AtomicBool::new(false));
    let mut log_stats = Vec::new();
    let mut threads = Vec::new();
    for f in &cfg.logs.files {
        let stats = Arc::new(SourceStats::new(
            f.source_label(),
            f.store.clone().unwrap_or_default(),
        ));
        threads.push(spawn_file_source(
            f,
            &cfg.logs,
            stats.clone(),
            history.clone(),
            stop.clone(),
        ));
        log_stats.push(stats);
    }
    let shared = Arc::new(Shared::new(log_stats, history));
    let docker = cfg.logs.docker.enabled.then(|| {
        crate::logs::docker::DockerSource::spawn(
            &cfg.logs.docker,
            cfg.logs.max_line_bytes,
            shared.clone(),
        )
    });
    let http = Arc::new(HttpState {
        shared: shared.clone(),
        registry: registry(shared.clone(), BuildInfo::current()),
        telemetry_path: cfg.web.telemetry_path.clone(),
    });
    let (stop_http, stop_rx) = watch::channel(false);
    let server = tokio::spawn(serve(listener, http, stop_rx));
    crate::log::info(&format!(
        "listening on {addr}; polling PD {} every {}; {} invariants; {} log files{}",
        cfg.pd.endpoints.join(","),
        cfg.poll_interval,
        watcher.definitions().len(),
        cfg.logs.files.len(),
        if cfg.logs.docker.enabled {
            "; following Docker containers"
        } else {
            ""
        }
    ));

    let mut tick = tokio::time::interval(cfg.poll_interval.0);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let signal = shutdown_signal();
    tokio::pin!(signal);
    loop {
        tokio::select! {
            _ = &mut signal => break,
            _ = tick.tick() => {
                // A signal during a poll is handled after it: the round and its state write finish.
                let snap = watcher.poll().await;
                shared.publish(snap);
                observe(&shared, &shared.snapshot());
            }
        }
    }
    crate::log::info("shutting down");
    let _ = stop_http.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
    watcher.flush_state();
    if let Some(d) = docker {
        d.shutdown().await;
    }
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    Ok(())
}
