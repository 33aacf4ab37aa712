//! Delivery to one Alertmanager: a bounded queue (the oldest alert is dropped when it is full,
//! and counted), and the task that sends it in batches, retrying with exponential backoff and
//! jitter. Each Alertmanager has its own queue and task, so a slow or dead one delays no other,
//! and nothing here ever blocks the poll loop (a push takes a mutex for a copy) or a scrape
//! (counters are atomics, the queue length a mutex read).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::alert::Alert;
use super::alertmanager::AlertmanagerClient;
use crate::transitions::Failing;

/// Most alerts in one POST.
pub const MAX_BATCH: usize = 64;

/// First wait after a failed POST; doubles up to the retry cap.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

/// The longest wait between two attempts, unless the resend interval is shorter (a resend
/// brings fresh alerts by then anyway).
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// What became of the alerts queued for one Alertmanager.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Accepted by Alertmanager.
    pub sent: u64,
    /// In attempts that failed (and are retried).
    pub failed: u64,
    /// Refused by Alertmanager as invalid (HTTP 400; not retried).
    pub rejected: u64,
    /// Pushed out of the full queue.
    pub dropped: u64,
}

/// The queue and the counters of one Alertmanager; shared by the poll loop (pushes), its
/// delivery task (takes) and the exposition (reads).
#[derive(Debug)]
pub struct Delivery {
    /// The alerts endpoint (the `alertmanager` label).
    pub name: String,
    capacity: usize,
    queue: Mutex<VecDeque<Alert>>,
    /// Alerts taken from the queue, not yet delivered.
    in_flight: AtomicUsize,
    wake: Notify,
    sent: AtomicU64,
    failed: AtomicU64,
    rejected: AtomicU64,
    dropped: AtomicU64,
    latency: Histogram,
}

impl Delivery {
    /// An empty queue of `capacity` alerts for the Alertmanager `name`.
    pub fn new(name: &str, capacity: usize) -> Self {
        Delivery {
            name: name.to_owned(),
            capacity,
            queue: Mutex::new(VecDeque::new()),
            in_flight: AtomicUsize::new(0),
            wake: Notify::new(),
            sent: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            // 5 ms .. ~20 s
            latency: Histogram::new(exponential_buckets(0.005, 2.0, 13)),
        }
    }

    /// Queues `alerts`, dropping the oldest queued ones beyond the capacity; never waits.
    pub fn push(&self, alerts: &[Alert]) {
        if alerts.is_empty() {
            return;
        }
        let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
        q.extend(alerts.iter().cloned());
        let excess = q.len().saturating_sub(self.capacity);
        q.drain(..excess);
        drop(q);
        self.dropped.fetch_add(excess as u64, Ordering::Relaxed);
        self.wake.notify_one();
    }

    /// Alerts waiting or being sent.
    pub fn queue_length(&self) -> usize {
        self.queue.lock().unwrap_or_else(|p| p.into_inner()).len()
            + self.in_flight.load(Ordering::Relaxed)
    }

    /// The queue's capacity.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Alerts delivered, in failed attempts (retried), rejected by Alertmanager (HTTP 400, not
    /// retried), dropped from the full queue.
    pub fn counts(&self) -> Counts {
        Counts {
            sent: self.sent.load(Ordering::Relaxed),
            failed: self.failed.load(Ordering::Relaxed),
            rejected: self.rejected.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
        }
    }

    /// Seconds per POST (successful or not).
    pub fn latency(&self) -> &Histogram {
        &self.latency
    }

    /// Everything queued, merged into `hand` (one alert per label set, the newest; the oldest
    /// dropped beyond the capacity).
    fn take_into(&self, hand: &mut Vec<Alert>) {
        let fresh: Vec<Alert> = self
            .queue
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
            .collect();
        if !fresh.is_empty() {
            hand.extend(fresh);
            // Keep the newest alert of each label set, in order.
            let mut seen = std::collections::BTreeSet::new();
            let mut kept: Vec<Alert> = hand
                .drain(..)
                .rev()
                .filter(|a| seen.insert(a.labels.clone()))
                .collect();
            kept.reverse();
            *hand = kept;
        }
        let excess = hand.len().saturating_sub(self.capacity);
        hand.drain(..excess);
        self.dropped.fetch_add(excess as u64, Ordering::Relaxed);
        self.in_flight.store(hand.len(), Ordering::Relaxed);
    }
}

/// Delivers `delivery`'s queue to `client` until `cancel`, waiting at most `max_backoff`
/// between two attempts.
pub async fn run(
    client: AlertmanagerClient,
    delivery: Arc<Delivery>,
    max_backoff: Duration,
    cancel: CancellationToken,
) {
    let mut hand: Vec<Alert> = Vec::new();
    let mut failing = Failing::default();
    let first = FIRST_BACKOFF.min(max_backoff);
    let mut backoff = first;
    let mut attempt: u64 = 0;
    loop {
        if hand.is_empty() {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = delivery.wake.notified() => {}
            }
        }
        delivery.take_into(&mut hand);
        let mut error = None;
        while !hand.is_empty() {
            let n = hand.len().min(MAX_BATCH);
            let started = Instant::now();
            let result = tokio::select! {
                _ = cancel.cancelled() => return,
                r = client.post(&hand[..n]) => r,
            };
            delivery.latency.observe(started.elapsed().as_secs_f64());
            match result {
                Ok(()) => {
                    delivery.sent.fetch_add(n as u64, Ordering::Relaxed);
                    hand.drain(..n);
                    delivery.in_flight.store(hand.len(), Ordering::Relaxed);
                }
                Err(e) if e.is_rejection() => {
                    // Retrying the same alerts cannot help; fresh copies come with the resend.
                    delivery.rejected.fetch_add(n as u64, Ordering::Relaxed);
                    hand.drain(..n);
                    delivery.in_flight.store(hand.len(), Ordering::Relaxed);
                    crate::log::warn(&format!(
                        "Alertmanager {} rejected {n} alerts (not retried): {e}",
                        delivery.name
                    ));
                }
                Err(e) => {
                    delivery.failed.fetch_add(n as u64, Ordering::Relaxed);
                    error = Some(e.to_string());
                    break;
                }
            }
        }
        failing.log(
            &format!("Alertmanager {}", delivery.name),
            error.as_deref(),
            "cannot take alerts (retrying with backoff)",
            "takes alerts again",
        );
        if error.is_none() {
            backoff = first;
            continue;
        }
        attempt += 1;
        let wait = jittered(backoff, attempt);
        backoff = (backoff * 2).min(max_backoff);
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// `base` scaled by a factor in [0.5, 1.0), so that exporters retrying at the same moment
/// spread out; the factor comes from the clock and the attempt (no randomness crate needed).
fn jittered(base: Duration, attempt: u64) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos() as u64);
    // splitmix64 finaliser over the clock and the attempt.
    let mut z = nanos ^ attempt.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let factor = 0.5 + (z % 1000) as f64 / 2000.0;
    base.mul_f64(factor)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn alert(name: &str, ends_at: f64) -> Alert {
        Alert {
            labels: BTreeMap::from([("alertname".to_owned(), name.to_owned())]),
            annotations: BTreeMap::new(),
            starts_at: 0.0,
            ends_at,
        }
    }

    #[test]
    fn a_full_queue_drops_the_oldest_and_counts_them() {
        let d = Delivery::new("am", 3);
        d.push(&[alert("a", 1.0), alert("b", 1.0)]);
        d.push(&[alert("c", 1.0), alert("d", 1.0), alert("e", 1.0)]);
        assert_eq!(d.queue_length(), 3);
        assert_eq!(
            d.counts(),
            Counts {
                dropped: 2,
                ..Counts::default()
            }
        );
        let mut hand = Vec::new();
        d.take_into(&mut hand);
        let names: Vec<&str> = hand
            .iter()
            .map(|a| a.labels["alertname"].as_str())
            .collect();
        assert_eq!(names, ["c", "d", "e"]);
        assert_eq!(d.queue_length(), 3, "in flight counts as queued");
    }

    #[test]
    fn alerts_in_hand_are_replaced_by_newer_copies() {
        let d = Delivery::new("am", 10);
        let mut hand = vec![alert("a", 1.0), alert("b", 1.0)];
        d.push(&[alert("a", 2.0), alert("c", 2.0)]);
        d.take_into(&mut hand);
        let got: Vec<(&str, f64)> = hand
            .iter()
            .map(|a| (a.labels["alertname"].as_str(), a.ends_at))
            .collect();
        assert_eq!(got, [("b", 1.0), ("a", 2.0), ("c", 2.0)]);
    }

    #[test]
    fn backoff_jitter_stays_within_half_and_whole() {
        for attempt in 0..200 {
            let d = jittered(Duration::from_secs(2), attempt);
            assert!(
                d >= Duration::from_secs(1) && d < Duration::from_secs(2),
                "{d:?}"
            );
        }
    }
}
