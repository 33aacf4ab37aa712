//! The supervisor: connects to the engine (with backoff), watches its events stream and
//! re-lists the running containers after every (re)connection and every 10 s, and keeps one
//! follower per selected container name pointed at the container running under it.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bollard::Docker;
use bollard::query_parameters::{
    EventsOptionsBuilder, InspectContainerOptions, ListContainersOptionsBuilder,
};
use futures_util::StreamExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::engine::{Backoff, connect};
use super::follower::FollowerHandle;
use super::sink::SinkMsg;
use crate::logs::timestamp::NANOS_PER_SECOND;

/// How often the running containers are listed again (events can be missed across reconnects).
const RESYNC_EVERY: Duration = Duration::from_secs(10);
/// Wait at most this long for the first PD poll before attaching (for the store mapping).
const READY_WAIT: Duration = Duration::from_secs(30);

/// Now, in whole Unix seconds.
fn unix_secs() -> i64 {
    crate::clock::unix_now_nanos().div_euclid(NANOS_PER_SECOND)
}

/// Keeps one follower per selected container name while the engine is reachable.
pub(crate) struct Supervisor {
    /// What the supervisor and every follower share.
    shared: Arc<Shared>,
    /// Tells the followers the current engine connection (none while disconnected).
    engine_tx: watch::Sender<Option<Docker>>,
    /// Set at shutdown.
    cancel: CancellationToken,
    /// Per container name.
    followers: HashMap<String, FollowerHandle>,
    /// Time (Unix seconds) of the newest event seen: the events stream resumes there.
    event_since: Option<i64>,
}

impl Supervisor {
    /// A supervisor with no followers yet; [`Supervisor::run`] starts it.
    pub(crate) fn new(
        shared: Arc<Shared>,
        engine_tx: watch::Sender<Option<Docker>>,
        cancel: CancellationToken,
    ) -> Self {
        Supervisor {
            shared,
            engine_tx,
            cancel,
            followers: HashMap::new(),
            event_since: None,
        }
    }

    /// Registers the exact names, then connects (again and again, with backoff) until
    /// cancelled; stops every follower at the end.
    pub(crate) async fn run(mut self) {
        let mut stores = self.shared.stores.clone();
        stores.wait_first(READY_WAIT, &self.cancel).await;
        let exact: Vec<String> = self
            .shared
            .selector
            .exact_names()
            .map(str::to_owned)
            .collect();
        for name in exact {
            let store = self.shared.store_for(&name, std::slice::from_ref(&name));
            let _ = self
                .shared
                .tx
                .send(SinkMsg::Register {
                    name: name.as_str().into(),
                    store,
                })
                .await;
        }
        let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(10));
        let mut last_error = String::new();
        while !self.cancel.is_cancelled() {
            let result = self.connected(&mut backoff).await;
            if self.engine_tx.borrow().is_some() {
                // It was connected: report the next failure even if it is the same as before.
                last_error.clear();
            }
            self.engine_tx.send_replace(None);
            match result {
                Ok(()) => break,
                Err(e) => {
                    if e != last_error {
                        crate::log::warn(&format!("docker source: {e}; retrying"));
                        last_error = e;
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff.next()) => {}
                _ = self.cancel.cancelled() => break,
            }
        }
        self.engine_tx.send_replace(None);
        for (_, f) in self.followers.drain() {
            f.stop().await;
        }
    }

    /// One engine connection: until cancelled (`Ok`) or a failure (`Err`).
    async fn connected(&mut self, backoff: &mut Backoff) -> Result<(), String> {
        let docker =
            connect(self.shared.cfg.host.as_deref()).map_err(|e| format!("connect: {e}"))?;
        let docker = tokio::time::timeout(Duration::from_secs(10), docker.negotiate_version())
            .await
            .map_err(|_| "engine did not answer /version within 10s".to_owned())?
            .map_err(|e| format!("engine unreachable: {e}"))?;
        let filters = HashMap::from([
            ("type", vec!["container"]),
            ("event", vec!["start", "rename"]),
        ]);
        // The stream is requested only when first polled, after the listing below: start it
        // a little in the past (or at the last event seen) so no start in between is missed.
        let since = self
            .event_since
            .unwrap_or_else(|| unix_secs().saturating_sub(2))
            .to_string();
        let opts = EventsOptionsBuilder::default()
            .filters(&filters)
            .since(&since)
            .build();
        let mut events = std::pin::pin!(docker.events(Some(opts)));
        self.engine_tx.send_replace(Some(docker.clone()));
        self.resync(&docker).await?;
        let v = docker.client_version();
        crate::log::info(&format!(
            "docker source: connected (API {}.{}); following {} containers",
            v.major_version,
            v.minor_version,
            self.followers.len()
        ));
        backoff.reset();
        let mut tick = tokio::time::interval(RESYNC_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = self.cancel.cancelled() => return Ok(()),
                ev = events.next() => match ev {
                    Some(Ok(ev)) => {
                        if let Some(t) = ev.time {
                            self.event_since = Some(self.event_since.map_or(t, |s| s.max(t)));
                        }
                        let id = ev.actor.and_then(|a| a.id);
                        match (ev.action.as_deref(), id) {
                            (Some("start"), Some(id)) => self.started(&docker, &id).await,
                            _ => self.resync(&docker).await?,
                        }
                    }
                    Some(Err(e)) => return Err(format!("events stream: {e}")),
                    None => return Err("events stream ended".into()),
                },
                _ = tick.tick() => {
                    tokio::time::timeout(Duration::from_secs(10), docker.ping())
                        .await
                        .map_err(|_| "engine did not answer a ping within 10s".to_owned())?
                        .map_err(|e| format!("ping: {e}"))?;
                    self.resync(&docker).await?;
                }
            }
        }
    }

    /// A container started: follow it if it is selected.
    async fn started(&mut self, docker: &Docker, id: &str) {
        let Ok(info) = docker
            .inspect_container(id, None::<InspectContainerOptions>)
            .await
        else {
            return;
        };
        let name = info
            .name
            .as_deref()
            .unwrap_or_default()
            .trim_start_matches('/')
            .to_owned();
        let labels = info
            .config
            .as_ref()
            .and_then(|c| c.labels.clone())
            .unwrap_or_default();
        if !name.is_empty() && self.shared.selector.matches(&name, &labels) {
            self.retarget(&name, id, true);
        }
    }

    /// Lists the running containers and makes sure every selected one is followed.
    async fn resync(&mut self, docker: &Docker) -> Result<(), String> {
        let opts = ListContainersOptionsBuilder::default().all(false).build();
        let list = docker
            .list_containers(Some(opts))
            .await
            .map_err(|e| format!("list containers: {e}"))?;
        for c in list {
            let (Some(id), Some(name)) = (c.id, c.names.as_ref().and_then(|n| n.first())) else {
                continue;
            };
            let name = name.trim_start_matches('/');
            if self
                .shared
                .selector
                .matches(name, c.labels.as_ref().unwrap_or(&HashMap::new()))
            {
                self.retarget(name, &id, false);
            }
        }
        Ok(())
    }

    /// Points the follower of `name` (started if there is none) at container `id`; with
    /// `force`, or when it is not attached, it looks at the container again.
    fn retarget(&mut self, name: &str, id: &str, force: bool) {
        let running = self.followers.get(name).is_some_and(|f| !f.is_finished());
        if !running {
            let follower = FollowerHandle::spawn(&self.shared, name);
            self.followers.insert(name.to_owned(), follower);
        }
        self.followers[name].retarget(id, force);
    }
}
