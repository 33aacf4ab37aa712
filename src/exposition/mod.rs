//! Exposition: the metric contract, its formats and the HTTP endpoints that serve it.

use std::sync::Arc;

use crate::http_server::ConnectionStats;
use crate::logs::ingest::EventHistory;
use crate::logs::source::LogRegistry;
use crate::notifier::NotifierStats;
use crate::snapshot::Published;

mod api;
pub mod cache;
pub mod format;
pub mod hot_regions;
pub(crate) mod http;
pub mod metrics;
pub mod process;

/// What the exposition reads: the published snapshot, the log counters, the event history, the
/// notifier's queues and the HTTP server's connections.
#[derive(Debug)]
pub struct View {
    /// The last poll's snapshot.
    pub published: Arc<Published>,
    /// Counters of every log source.
    pub logs: Arc<LogRegistry>,
    /// Recent leadership events.
    pub history: Arc<EventHistory>,
    /// Direct delivery to Alertmanager (no entries when off).
    pub notifier: Arc<NotifierStats>,
    /// The HTTP server's connection counters.
    pub http: Arc<ConnectionStats>,
}
