//! What every log source (files, Docker containers, and any that come next) is given and how it
//! is run: one [`SourceContext`] with the registry its counters go into, the shared event
//! history, a read-only view of PD's stores for mapping a source to a store, the line limit and
//! the cancellation token; and one [`SourceHandle`] to wait for it at shutdown.
//!
//! Sources never look at the published state: the poller hands PD's store list to the
//! [`StorePublisher`] after every poll, and sources read it through their [`StoreLookup`].

use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::ingest::{EventHistory, SourceStats};
use crate::domain::Store;

/// The counters of every log source, in the order the sources registered. Sources may register
/// (or replace, when a container's store mapping changes) while running.
#[derive(Debug, Default)]
pub struct LogRegistry(RwLock<Vec<Arc<SourceStats>>>);

impl LogRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers new zeroed counters for `source` (label) and `store`, replacing any with the
    /// same label (so a label never appears twice in the exposition).
    pub fn register(
        &self,
        source: impl Into<String>,
        store: impl Into<String>,
    ) -> Arc<SourceStats> {
        let stats = Arc::new(SourceStats::new(source, store));
        self.upsert(stats.clone());
        stats
    }

    /// Adds `stats`, replacing the entry with the same `source` label.
    pub fn upsert(&self, stats: Arc<SourceStats>) {
        let mut v = self.0.write().unwrap_or_else(|p| p.into_inner());
        match v.iter_mut().find(|s| s.source == stats.source) {
            Some(slot) => *slot = stats,
            None => v.push(stats),
        }
    }

    /// The counters of `source` for `store`, registered (zeroed) if there are none yet. A
    /// source that spans several stores (a file pattern) has one entry per store under one
    /// label; it never uses [`LogRegistry::register`], which keeps one entry per label.
    pub fn series(&self, source: &str, store: &str) -> Arc<SourceStats> {
        let mut v = self.0.write().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = v.iter().find(|s| s.source == source && s.store == store) {
            return s.clone();
        }
        let stats = Arc::new(SourceStats::new(source, store));
        v.push(stats.clone());
        stats
    }

    /// Removes the counters of `source` for `store` (their series leave the exposition).
    pub fn remove(&self, source: &str, store: &str) {
        let mut v = self.0.write().unwrap_or_else(|p| p.into_inner());
        v.retain(|s| !(s.source == source && s.store == store));
    }

    /// A copy of the current list.
    pub fn list(&self) -> Vec<Arc<SourceStats>> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// Creates the channel through which the poller tells log sources which stores PD lists.
pub fn store_directory() -> (StorePublisher, StoreLookup) {
    let (tx, rx) = watch::channel(None);
    (StorePublisher(tx), StoreLookup(rx))
}

/// The poller's end: publishes PD's store list after every successful poll.
#[derive(Debug)]
pub struct StorePublisher(watch::Sender<Option<Arc<[Store]>>>);

impl StorePublisher {
    /// Publishes the stores PD listed last.
    pub fn publish(&self, stores: &[Store]) {
        self.0.send_replace(Some(stores.into()));
    }
}

/// A log source's end: the stores PD listed at the last poll (none before the first one).
#[derive(Clone, Debug)]
pub struct StoreLookup(watch::Receiver<Option<Arc<[Store]>>>);

impl StoreLookup {
    /// The stores known now (empty before the first poll).
    pub fn stores(&self) -> Arc<[Store]> {
        self.0.borrow().clone().unwrap_or_else(|| Arc::new([]))
    }

    /// Whether the poller published a store list yet (after its first poll; empty when PD has
    /// not answered so far).
    pub fn is_known(&self) -> bool {
        self.0.borrow().is_some()
    }

    /// Waits until the first store list is known, at most `timeout` or until `cancel`.
    pub async fn wait_first(&mut self, timeout: Duration, cancel: &CancellationToken) {
        let wait = self.0.wait_for(Option::is_some);
        tokio::select! {
            _ = tokio::time::timeout(timeout, wait) => {}
            _ = cancel.cancelled() => {}
        }
    }
}

/// Everything a log source needs from the rest of the exporter.
#[derive(Clone, Debug)]
pub struct SourceContext {
    /// Where the source registers its counters.
    pub registry: Arc<LogRegistry>,
    /// Where leadership events are recorded for `/api/v1/leadership`.
    pub history: Arc<EventHistory>,
    /// PD's stores, for mapping the source to a store.
    pub stores: StoreLookup,
    /// Longest accepted log line in bytes.
    pub max_line_bytes: usize,
    /// Set at shutdown: the source drains what it has and stops.
    pub cancel: CancellationToken,
}

/// A running log source: a thread or a task, waited for at shutdown.
#[derive(Debug)]
pub enum SourceHandle {
    /// A source on its own OS thread (blocking file reads).
    Thread(std::thread::JoinHandle<()>),
    /// A source on the Tokio runtime.
    Task(tokio::task::JoinHandle<()>),
}

impl SourceHandle {
    /// Waits (at most `timeout`) for the source to finish after its context was cancelled.
    pub async fn join(self, timeout: Duration) {
        match self {
            SourceHandle::Thread(t) => {
                let join = tokio::task::spawn_blocking(move || t.join());
                let _ = tokio::time::timeout(timeout, join).await;
            }
            SourceHandle::Task(mut t) => {
                if tokio::time::timeout(timeout, &mut t).await.is_err() {
                    t.abort();
                }
            }
        }
    }
}
