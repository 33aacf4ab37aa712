//! Direct delivery of alerts to Alertmanager (API v2), fed by the invariant state after each
//! poll: [`alert`] decides what to send (one alert per firing invariant, re-sent with an
//! `endsAt` ahead, resolutions once), [`delivery`] queues it per Alertmanager (bounded, oldest
//! dropped) and sends it in batches with retries, [`alertmanager`] is the client on the one
//! HTTP layer. The poll loop only hands over the snapshot ([`Notifier::notify`]): it never
//! waits for an Alertmanager.

pub(crate) mod alert;
pub(crate) mod alertmanager;
pub(crate) mod delivery;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::config::AlertingConfig;
use crate::snapshot::Snapshot;
use alert::Tracker;
use alertmanager::{AlertmanagerClient, AlertmanagerError};
use delivery::{Delivery, MAX_BACKOFF};

/// The per-Alertmanager queues and counters (empty when direct delivery is off), for the
/// exposition.
#[derive(Debug, Default)]
pub struct NotifierStats {
    /// One per configured Alertmanager, in configuration order.
    pub alertmanagers: Vec<Arc<Delivery>>,
}

/// The notifier: the tracker of sent alerts and the delivery tasks.
#[derive(Debug)]
pub(crate) struct Notifier {
    tracker: Tracker,
    stats: Arc<NotifierStats>,
}

impl Notifier {
    /// Builds a client per configured Alertmanager (checking URLs and TLS files) and spawns
    /// its delivery task, stopped by `cancel`; `None` when none is configured. `poll` is the
    /// poll interval (the real resend interval when it is the longer one).
    pub fn spawn(
        cfg: &AlertingConfig,
        poll: Duration,
        cancel: &CancellationToken,
    ) -> Result<Option<Notifier>, AlertmanagerError> {
        if cfg.alertmanagers.is_empty() {
            return Ok(None);
        }
        let clients = cfg
            .alertmanagers
            .iter()
            .map(AlertmanagerClient::new)
            .collect::<Result<Vec<_>, _>>()?;
        let max_backoff = MAX_BACKOFF.min(cfg.resend_interval.0);
        let mut alertmanagers = Vec::new();
        for client in clients {
            let d = Arc::new(Delivery::new(client.name(), cfg.queue_capacity));
            tokio::spawn(delivery::run(
                client,
                d.clone(),
                max_backoff,
                cancel.clone(),
            ));
            alertmanagers.push(d);
        }
        Ok(Some(Notifier {
            tracker: Tracker::new(
                cfg.resend_interval.0.as_secs_f64(),
                poll.as_secs_f64(),
                cfg.external_labels.clone(),
            ),
            stats: Arc::new(NotifierStats { alertmanagers }),
        }))
    }

    /// The queues and counters.
    pub fn stats(&self) -> Arc<NotifierStats> {
        self.stats.clone()
    }

    /// Seconds after the last send at which Alertmanager resolves an alert by itself.
    pub fn valid_for(&self) -> f64 {
        self.tracker.valid_for()
    }

    /// Takes the firing series restored from the state file as sent by the previous process.
    pub fn restore(&mut self, snap: &Snapshot) {
        self.tracker.restore(snap);
    }

    /// Queues what `snap` makes due at `now` (Unix seconds) for every Alertmanager; never waits.
    pub fn notify(&mut self, snap: &Snapshot, now: f64) {
        let due = self.tracker.due(snap, now);
        for d in &self.stats.alertmanagers {
            d.push(&due);
        }
    }
}
