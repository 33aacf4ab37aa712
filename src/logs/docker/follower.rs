//! The followers: one task per selected container name. It inspects the container, asks the
//! sink where to resume, and streams `logs?follow&stdout&stderr&timestamps&since=..` frames to
//! the sink in batches; after the stream ends it re-attaches, waits for a new engine
//! connection or container, or backs off after a failure.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bollard::Docker;
use bollard::container::LogOutput;
use bollard::query_parameters::{InspectContainerOptions, LogsOptionsBuilder};
use futures_util::{FutureExt, StreamExt};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::Shared;
use super::engine::{Backoff, is_not_found};
use super::mapping::container_addresses;
use super::sink::SinkMsg;
use crate::logs::ingest::SourceStats;

/// Payload bytes handed to the sink at once, at most.
const BATCH_BYTES: usize = 256 * 1024;
/// Frames handed to the sink at once, at most.
const BATCH_FRAMES: usize = 4096;
/// How long frames wait for more before they are handed to the sink.
const LINGER: Duration = Duration::from_millis(2);

/// How one attachment ended, and so what the follower does next.
enum Outcome {
    /// The follow stream of a running container ended: look again at once.
    Reattach,
    /// The container is not running and its log was read to the end.
    Stopped,
    /// The container no longer exists.
    Gone,
    /// The engine connection changed (lost, or replaced after a reconnect).
    EngineChanged,
    /// The target changed to another container.
    Retarget,
    /// A request failed; retry after a backoff.
    Failed(String),
    /// Nothing to follow (no engine or no container yet).
    Idle,
    /// The source is shutting down.
    Shutdown,
}

/// Frames collected for one hand-over to the sink.
#[derive(Default)]
struct FrameBatch {
    /// The frames, in the order they were read.
    frames: Vec<LogOutput>,
    /// Their payload bytes.
    bytes: usize,
}

impl FrameBatch {
    /// Adds a frame.
    fn push(&mut self, f: LogOutput) {
        self.bytes += f.as_ref().len();
        self.frames.push(f);
    }

    /// At the size or count limit: hand it over now.
    fn full(&self) -> bool {
        self.bytes >= BATCH_BYTES || self.frames.len() >= BATCH_FRAMES
    }

    /// Empties the batch, returning its frames.
    fn take(&mut self) -> Vec<LogOutput> {
        self.bytes = 0;
        std::mem::take(&mut self.frames)
    }
}

/// Follows the container currently known under one name.
struct Follower {
    /// What the supervisor and every follower share.
    shared: Arc<Shared>,
    /// The container name.
    name: Arc<str>,
    /// Id of the container to follow, set by the supervisor.
    target: watch::Receiver<Option<String>>,
    /// The current engine connection (none while disconnected).
    engine: watch::Receiver<Option<Docker>>,
    /// Set while a running container's log is being followed.
    attached: Arc<AtomicBool>,
    /// The container's counters, once attached.
    stats: Option<Arc<SourceStats>>,
}

impl Follower {
    /// Attaches, re-attaches and waits as the outcomes say, until shutdown.
    async fn run(mut self) {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
        let mut last_error = String::new();
        loop {
            let docker = self.engine.borrow_and_update().clone();
            let id = self.target.borrow_and_update().clone();
            let started = Instant::now();
            let outcome = match (docker, id) {
                (Some(d), Some(id)) => AssertUnwindSafe(self.attach_once(&d, &id))
                    .catch_unwind()
                    .await
                    .unwrap_or_else(|_| {
                        Outcome::Failed("panic while reading the log stream".into())
                    }),
                _ => Outcome::Idle,
            };
            self.attached.store(false, Ordering::Relaxed);
            if let Some(s) = &self.stats {
                s.set_up(false);
            }
            match outcome {
                Outcome::Shutdown => return,
                Outcome::EngineChanged | Outcome::Retarget => continue,
                Outcome::Reattach => {
                    if started.elapsed() < Duration::from_secs(1) {
                        tokio::time::sleep(backoff.next()).await;
                    } else {
                        backoff.reset();
                    }
                    continue;
                }
                Outcome::Failed(e) => {
                    if e != last_error {
                        crate::log::warn(&format!("log source docker:{}: {e}", self.name));
                        last_error = e;
                    }
                    let pause = backoff.next();
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        r = self.engine.changed() => if r.is_err() { return },
                        r = self.target.changed() => if r.is_err() { return },
                    }
                    continue;
                }
                Outcome::Stopped | Outcome::Gone | Outcome::Idle => {
                    backoff.reset();
                    last_error.clear();
                }
            }
            tokio::select! {
                r = self.engine.changed() => if r.is_err() { return },
                r = self.target.changed() => if r.is_err() { return },
            }
        }
    }

    /// Inspects container `id`, asks the sink where to resume, and streams its log to the
    /// sink until the stream ends, the engine or target changes, or a request fails.
    async fn attach_once(&mut self, d: &Docker, id: &str) -> Outcome {
        let info = tokio::select! {
            r = d.inspect_container(id, None::<InspectContainerOptions>) => r,
            r = self.engine.changed() => return if r.is_err() { Outcome::Shutdown } else { Outcome::EngineChanged },
        };
        let info = match info {
            Ok(i) => i,
            Err(e) if is_not_found(&e) => return Outcome::Gone,
            Err(e) => return Outcome::Failed(format!("inspect: {e}")),
        };
        let running = info.state.as_ref().and_then(|s| s.running).unwrap_or(false);
        let store = self
            .shared
            .store_for(&self.name, &container_addresses(&self.name, &info));
        let Some((since, stats)) = self.shared.attach(&self.name, id, store).await else {
            return Outcome::Shutdown;
        };
        self.stats = Some(stats.clone());
        let opts = LogsOptionsBuilder::default()
            .follow(running)
            .stdout(true)
            .stderr(true)
            .timestamps(true)
            .since(since)
            .build();
        let mut stream = std::pin::pin!(d.logs(id, Some(opts)));
        if running {
            stats.set_up(true);
            self.attached.store(true, Ordering::Relaxed);
        }
        // Frames are collected for up to LINGER (or a full batch) before they go to the
        // sink: under a flood each socket read holds a frame or two, and one hand-over per
        // frame would cost more than the parsing.
        let mut batch = FrameBatch::default();
        let mut flush_at: Option<tokio::time::Instant> = None;
        let end = loop {
            if batch.full() {
                if !self.hand_over(&mut batch).await {
                    return Outcome::Shutdown;
                }
                flush_at = None;
            }
            let linger = async {
                match flush_at {
                    Some(t) => tokio::time::sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                r = self.engine.changed() => {
                    // What was read is real: count it; the re-attach drops its replay.
                    if r.is_err() || !self.hand_over(&mut batch).await {
                        return Outcome::Shutdown;
                    }
                    return Outcome::EngineChanged;
                }
                r = self.target.changed() => {
                    if r.is_err() || !self.hand_over(&mut batch).await {
                        return Outcome::Shutdown;
                    }
                    if self.target.borrow_and_update().as_deref() != Some(id) {
                        return Outcome::Retarget;
                    }
                }
                () = linger => {
                    if !self.hand_over(&mut batch).await {
                        return Outcome::Shutdown;
                    }
                    flush_at = None;
                }
                item = stream.next() => match item {
                    Some(Ok(f)) => {
                        batch.push(f);
                        flush_at.get_or_insert_with(|| tokio::time::Instant::now() + LINGER);
                    }
                    None => break Ok(()),
                    Some(Err(e)) => break Err(e),
                },
            }
        };
        if !self.hand_over(&mut batch).await {
            return Outcome::Shutdown;
        }
        match end {
            Ok(()) if running => Outcome::Reattach,
            Ok(()) => Outcome::Stopped,
            Err(e) if is_not_found(&e) => Outcome::Gone,
            Err(e) => Outcome::Failed(format!("logs: {e}")),
        }
    }

    /// Sends the collected frames to the sink (waiting while its queue is full); false when
    /// the sink is gone.
    async fn hand_over(&self, batch: &mut FrameBatch) -> bool {
        if batch.frames.is_empty() {
            return true;
        }
        let msg = SinkMsg::Frames {
            name: self.name.clone(),
            frames: batch.take(),
        };
        self.shared.tx.send(msg).await.is_ok()
    }
}

/// The supervisor's end of one follower.
pub(crate) struct FollowerHandle {
    /// Where the follower is told which container to follow.
    target: watch::Sender<Option<String>>,
    /// Set while the follower follows a running container.
    attached: Arc<AtomicBool>,
    /// The follower's task.
    task: JoinHandle<()>,
}

impl FollowerHandle {
    /// Starts a follower for the container name `name`, following nothing yet.
    pub(crate) fn spawn(shared: &Arc<Shared>, name: &str) -> Self {
        let (target, rx) = watch::channel(None);
        let attached = Arc::new(AtomicBool::new(false));
        let follower = Follower {
            shared: shared.clone(),
            name: name.into(),
            target: rx,
            engine: shared.engine.clone(),
            attached: attached.clone(),
            stats: None,
        };
        let task = tokio::spawn(follower.run());
        FollowerHandle {
            target,
            attached,
            task,
        }
    }

    /// Whether the follower's task has ended.
    pub(crate) fn is_finished(&self) -> bool {
        self.task.is_finished()
    }

    /// Points the follower at container `id`; with `force`, or when it is not attached, it
    /// looks at the container again.
    pub(crate) fn retarget(&self, id: &str, force: bool) {
        let same = self.target.borrow().as_deref() == Some(id);
        if force || !same || !self.attached.load(Ordering::Relaxed) {
            self.target.send_modify(|t| *t = Some(id.to_owned()));
        }
    }

    /// Stops the follower and waits for its task to end.
    pub(crate) async fn stop(self) {
        self.task.abort();
        let _ = self.task.await;
    }
}
