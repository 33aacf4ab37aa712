//! Follows the stdout and stderr of Docker containers through the engine API (bollard) and feeds
//! every line into the same [`Ingestor`](crate::logs::ingest::Ingestor) path as log files:
//! parser → events → counters.
//!
//! **Tasks.** The [`supervisor`] task connects to the engine (with backoff), watches the events
//! stream and re-lists the running containers after every (re)connection and every 10 s; which
//! containers count is decided by [`select`], which PD store each belongs to by [`mapping`].
//! Each selected container name gets one [`follower`] task that inspects the container, asks
//! the sink where to resume, and streams `logs?follow&stdout&stderr&timestamps&since=..`
//! frames into a **bounded** channel (backpressure: a slow sink stops the socket reads;
//! nothing queues without limit). One [`sink`] thread owns all per-container state: it
//! rebuilds lines from frames ([`assemble`]: per-stream buffers; Docker's 16 KiB partial
//! messages merged back; TTY output), drops lines already counted ([`dedupe`]), and ingests
//! the rest. [`engine`] holds the connection and retry helpers.
//!
//! **Exactly once.** Docker's `since` has whole seconds. The sink remembers, for the newest
//! second it counted (and any older second a half-received line started in), a multiset of
//! (docker timestamp, line hash). A re-attach resumes from that second and drops the replayed
//! lines found in the multiset, so nothing is lost or counted twice across a stream break,
//! `docker restart`, stop + start or an engine restart. A container re-created under the same
//! name (a new id) is read from its beginning.
//!
//! **Shape.** Like every log source, [`DockerSource`] gets a [`SourceContext`] (registry,
//! history, PD's stores, line limit, cancellation token) and returns a [`SourceHandle`]; the
//! token stops the supervisor, which stops the followers; the sink then drains and exits.

mod assemble;
mod dedupe;
mod engine;
mod follower;
mod mapping;
mod select;
mod sink;
mod supervisor;

use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use tokio::sync::{mpsc, oneshot, watch};

use self::mapping::map_store;
use self::select::Selector;
use self::sink::{Sink, SinkMsg};
use self::supervisor::Supervisor;
use crate::config::DockerLogsConfig;
use crate::logs::ingest::SourceStats;
use crate::logs::source::{SourceContext, SourceHandle, StoreLookup};

/// Batches in flight between the follower tasks and the sink.
const CHANNEL_BATCHES: usize = 8;
/// How long the supervisor, then the sink, get to finish after cancellation.
const STOP_WAIT: Duration = Duration::from_secs(5);

/// What the supervisor and every follower share.
struct Shared {
    /// The `logs.docker` section.
    cfg: DockerLogsConfig,
    /// Which containers are followed.
    selector: Selector,
    /// PD's stores, for the store mapping.
    stores: StoreLookup,
    /// The sink's queue.
    tx: mpsc::Sender<SinkMsg>,
    /// The current engine connection (none while disconnected).
    engine: watch::Receiver<Option<Docker>>,
}

impl Shared {
    /// Tells the sink that `name` is about to (re)attach to container `id`; returns the second
    /// to resume from and the container's counters, or `None` when the sink is gone.
    async fn attach(
        &self,
        name: &Arc<str>,
        id: &str,
        store: String,
    ) -> Option<(i32, Arc<SourceStats>)> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(SinkMsg::Attach {
                name: name.clone(),
                id: id.to_owned(),
                store,
                reply,
            })
            .await
            .ok()?;
        rx.await.ok()
    }

    /// The PD store of the container `name` answering to `addresses` (`""` when unknown).
    fn store_for(&self, name: &str, addresses: &[String]) -> String {
        map_store(name, addresses, &self.cfg.stores, &self.stores.stores())
    }
}

/// The Docker log source; see the module documentation.
#[derive(Clone, Debug)]
pub(crate) struct DockerSource {
    /// The `logs.docker` section.
    cfg: DockerLogsConfig,
}

impl DockerSource {
    /// A source following the containers `cfg` selects.
    pub(crate) fn new(cfg: &DockerLogsConfig) -> Self {
        DockerSource { cfg: cfg.clone() }
    }

    /// Starts following; the containers' counters appear in the registry as
    /// `docker:<container name>`. Must be called inside a Tokio runtime. At cancellation every
    /// task stops, then the sink finishes what it received and publishes its counts.
    pub(crate) fn spawn(self, ctx: SourceContext) -> SourceHandle {
        let cfg = self.cfg;
        let cutoff = if cfg.from_start {
            i64::MIN
        } else {
            crate::clock::unix_now_nanos()
        };
        let (tx, rx) = mpsc::channel(CHANNEL_BATCHES);
        let sink = Sink::new(
            ctx.registry.clone(),
            ctx.history.clone(),
            ctx.max_line_bytes,
            cutoff,
        );
        let (engine_tx, engine_rx) = watch::channel(None);
        let shared = Arc::new(Shared {
            selector: Selector::new(&cfg.containers, &cfg.labels),
            cfg,
            stores: ctx.stores.clone(),
            tx,
            engine: engine_rx,
        });
        let supervisor = Supervisor::new(shared, engine_tx, ctx.cancel.clone());
        SourceHandle::Task(tokio::spawn(async move {
            let sink = match std::thread::Builder::new()
                .name("docker-logs".into())
                .spawn(move || sink.run(rx))
            {
                Ok(s) => s,
                Err(e) => {
                    crate::log::warn(&format!("docker source: cannot start its thread: {e}"));
                    return;
                }
            };
            let mut supervisor = tokio::spawn(supervisor.run());
            tokio::select! {
                _ = &mut supervisor => {}
                _ = ctx.cancel.cancelled() => {
                    if tokio::time::timeout(STOP_WAIT, &mut supervisor).await.is_err() {
                        // Only reached if the supervisor ignores cancellation.
                        supervisor.abort();
                    }
                }
            }
            let join = tokio::task::spawn_blocking(move || sink.join());
            let _ = tokio::time::timeout(STOP_WAIT, join).await;
        }))
    }
}
