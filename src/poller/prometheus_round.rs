//! The poller's Prometheus half: a round's queries run as one batch on their own task, so a
//! slow Prometheus holds back neither the PD round nor the PD-based invariants; the round
//! takes the batch's answers when they come in time, else each query's last answer; query
//! failures and recoveries are logged per invariant, and a Prometheus seen restarting holds the
//! built-in rate queries unknown for `prometheus.warmup`.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::Poller;
use crate::observations::{QueryResults, Unavailable};

/// A round's Prometheus queries, running on their own task (aborted when dropped).
pub(super) struct PromBatch(tokio::task::JoinHandle<PromAnswers>);

impl Drop for PromBatch {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What a batch of Prometheus queries brings back.
pub(super) struct PromAnswers {
    /// Each query's result.
    results: QueryResults,
    /// How long the queries took.
    took: Duration,
    /// Prometheus' start time (asked only when `prometheus.warmup` is set).
    start_time: Option<f64>,
}

impl Poller {
    /// The query texts of the configured invariants.
    pub(super) fn queries(&self) -> BTreeSet<String> {
        self.defs
            .iter()
            .filter_map(|d| d.query().map(str::to_owned))
            .collect()
    }

    /// Starts this round's Prometheus queries, unless the last round's are still running.
    pub(super) fn start_prometheus(&mut self) {
        let Some(prom) = self.prom.clone() else {
            return;
        };
        let queries = self.queries();
        if queries.is_empty() || self.prometheus_batch.is_some() {
            return;
        }
        let warmup = self.prometheus_warmup > 0.0;
        let task = tokio::spawn(async move {
            let t = Instant::now();
            let answers = async {
                let mut set = tokio::task::JoinSet::new();
                for q in queries {
                    let prom = prom.clone();
                    set.spawn(async move {
                        let r = prom
                            .query(&q)
                            .await
                            .map_err(|e| Unavailable::new(e.to_string()));
                        (q, r)
                    });
                }
                let mut results = QueryResults::new();
                while let Some(done) = set.join_next().await {
                    if let Ok((q, r)) = done {
                        results.insert(q, r);
                    }
                }
                (results, t.elapsed())
            };
            let start_time = async {
                match warmup {
                    true => prom.start_time().await.ok(),
                    false => None,
                }
            };
            let ((results, took), start_time) = tokio::join!(answers, start_time);
            PromAnswers {
                results,
                took,
                start_time,
            }
        });
        self.prometheus_batch = Some(PromBatch(task));
    }

    /// This round's Prometheus results: the running queries' answers if they come before
    /// `deadline` (or, while some configured query has never been answered, within the
    /// queries' own timeout), otherwise each query's last answer. A slow Prometheus so delays
    /// only the Prometheus-based invariants, by at most `prometheus.timeout`, after which its
    /// queries fail and their invariants are unknown.
    pub(super) async fn prometheus_round(
        &mut self,
        deadline: tokio::time::Instant,
    ) -> QueryResults {
        let unanswered = self
            .queries()
            .iter()
            .any(|q| !self.prometheus_last.contains_key(q));
        if let Some(batch) = &mut self.prometheus_batch {
            let done = if unanswered {
                Some((&mut batch.0).await)
            } else {
                tokio::time::timeout_at(deadline, &mut batch.0).await.ok()
            };
            if let Some(done) = done {
                self.prometheus_batch = None;
                if let Ok(answers) = done {
                    self.take_answers(answers);
                }
            }
        }
        std::mem::take(&mut self.prometheus_last)
    }

    /// Records a finished batch of queries: source health, per-query transitions, restarts.
    fn take_answers(&mut self, answers: PromAnswers) {
        let PromAnswers {
            results,
            took,
            start_time,
        } = answers;
        let failed: Vec<&Unavailable> = results.values().filter_map(|r| r.as_ref().err()).collect();
        let all_failed = !failed.is_empty() && failed.len() == results.len();
        let result = if all_failed {
            Err(failed[0].clone())
        } else {
            Ok(())
        };
        if !all_failed {
            self.report_queries(&results);
        }
        let started = Instant::now()
            .checked_sub(took)
            .unwrap_or_else(Instant::now);
        self.record("prometheus", started, result);
        if let Some(t) = start_time {
            self.prometheus_started_at(t);
        }
        self.prometheus_last = results;
    }

    /// Logs each invariant's query failing or answering again (Prometheus itself answers).
    fn report_queries(&mut self, results: &QueryResults) {
        for d in &self.defs {
            let Some(r) = d.query().and_then(|q| results.get(q)) else {
                continue;
            };
            let why = r.as_ref().err().map(Unavailable::to_string);
            self.reported.failing.log(
                &format!("Prometheus query of {}", d.rule.name),
                why.as_deref(),
                "fails",
                "answers again",
            );
        }
    }

    /// Notes Prometheus' start time; a restart begins a warm-up period.
    pub(super) fn prometheus_started_at(&mut self, started: f64) {
        if self
            .prometheus_started
            .is_some_and(|prev| started > prev + 1.0)
        {
            self.prometheus_warm_until = started + self.prometheus_warmup;
        }
        self.prometheus_started = Some(started);
    }

    /// A Prometheus seen restarting has a gap in its rate windows and reads low until they
    /// refill: the built-in rate queries are unknown for `prometheus.warmup` after a restart.
    /// Returns the answers it held, to be used again once the warm-up is over.
    pub(super) fn hold_during_warmup(&self, out: &mut QueryResults) -> QueryResults {
        let mut held = QueryResults::new();
        let left = self.prometheus_warm_until - self.clock.now();
        if left <= 0.0 {
            return held;
        }
        for d in self.defs.iter().filter(|d| d.is_builtin_prometheus()) {
            if let Some(q) = d.query()
                && let Some(Ok(_)) = out.get(q)
            {
                let answer = out.insert(
                    q.to_owned(),
                    Err(Unavailable::new(format!(
                        "Prometheus restarted; its rate windows have a gap for {left:.0}s more (prometheus.warmup)"
                    ))),
                );
                held.extend(answer.map(|a| (q.to_owned(), a)));
            }
        }
        held
    }
}
