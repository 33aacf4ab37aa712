//! Exactly-once resumption: what was counted recently, so that the replay after a re-attach
//! (Docker's `since` has whole seconds) drops what was already counted and nothing else.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

use super::assemble::NO_TS;
use crate::logs::timestamp::NANOS_PER_SECOND;

/// More (timestamp, hash) pairs than this in the resume window are dropped oldest first.
const MAX_WINDOW_ENTRIES: usize = 1 << 20;

/// A hasher for keys that already are hashes.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 = v;
    }
}

/// Key → how many lines with it may still be dropped.
type KeyMap = HashMap<u64, u32, BuildHasherDefault<KeyHasher>>;

/// What was counted recently, to drop it when a re-attach replays it.
///
/// `window` holds the keys of the lines counted (a hash of docker timestamp and content; 8
/// bytes each, in a plain list per second) for every second a re-attach may resume from. At a
/// re-attach the keys of the replayed seconds become a budget (a multiset): a replayed line
/// whose key is in the budget (up to its count) is dropped; anything else is new.
#[derive(Debug, Default)]
pub(crate) struct Dedupe {
    /// Newest docker timestamp counted.
    max_ts: Option<i64>,
    /// (second, keys of the lines counted in it), oldest second first.
    window: VecDeque<(i64, Vec<u64>)>,
    /// Keys in `window`.
    entries: usize,
    /// What the current replay may still drop.
    budget: KeyMap,
    /// Newest docker timestamp counted before the current replay began.
    replay_upto: i64,
    /// The size limit was hit (warned once).
    overflowed: bool,
}

impl Dedupe {
    /// True when the line (docker timestamp, key) is to be counted; false for a replay of a
    /// line already counted.
    pub(crate) fn admit(&mut self, ts: i64, key: u64) -> bool {
        if ts == NO_TS {
            return true;
        }
        if ts <= self.replay_upto
            && let Some(c) = self.budget.get_mut(&key)
            && *c > 0
        {
            *c -= 1;
            return false;
        }
        if !self.budget.is_empty()
            && ts.div_euclid(NANOS_PER_SECOND) > self.replay_upto.div_euclid(NANOS_PER_SECOND) + 1
        {
            // Well past the replayed range: nothing left to drop.
            self.budget = KeyMap::default();
        }
        let sec = ts.div_euclid(NANOS_PER_SECOND);
        let pos = self.window.iter().rposition(|(s, _)| *s <= sec);
        let bucket = match pos {
            Some(i) if self.window[i].0 == sec => &mut self.window[i].1,
            Some(i) => {
                self.window.insert(i + 1, (sec, Vec::new()));
                &mut self.window[i + 1].1
            }
            None => {
                self.window.push_front((sec, Vec::new()));
                &mut self.window[0].1
            }
        };
        bucket.push(key);
        self.entries += 1;
        self.max_ts = Some(self.max_ts.map_or(ts, |m| m.max(ts)));
        true
    }

    /// Forgets seconds before `keep_from` (and the oldest ones past the size limit).
    pub(crate) fn prune(&mut self, keep_from: i64) {
        while let Some((s, m)) = self.window.front() {
            let over = self.entries > MAX_WINDOW_ENTRIES && self.window.len() > 1;
            if *s >= keep_from && !over {
                break;
            }
            if *s >= keep_from && !self.overflowed {
                self.overflowed = true;
                crate::log::warn(
                    "docker source: over a million lines in one second; a re-attach in that second may count some lines twice",
                );
            }
            self.entries -= m.len();
            self.window.pop_front();
        }
    }

    /// The second to resume from: the newest counted one, or the one a line still in
    /// progress started in, whichever is older; `None` if nothing was counted.
    pub(crate) fn resume_second(&self, open_line: Option<i64>) -> Option<i64> {
        let newest = self.max_ts.map(|t| t.div_euclid(NANOS_PER_SECOND));
        let open = open_line.map(|t| t.div_euclid(NANOS_PER_SECOND));
        match (newest, open) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Starts a replay from second `since`: lines counted in it or later are dropped once.
    pub(crate) fn begin_replay(&mut self, since: i64) {
        self.budget.clear();
        for (s, keys) in &self.window {
            if *s >= since {
                for k in keys {
                    *self.budget.entry(*k).or_insert(0) += 1;
                }
            }
        }
        self.replay_upto = self.max_ts.unwrap_or(NO_TS);
    }

    /// Newest docker timestamp counted.
    pub(crate) fn newest(&self) -> Option<i64> {
        self.max_ts
    }

    /// Keys held.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replay_drops_exactly_what_was_counted() {
        let mut d = Dedupe::default();
        let s = 1_000 * NANOS_PER_SECOND;
        // Two identical lines (same nanosecond, same content) and others in two seconds.
        let counted = [(s - 5, 1), (s + 1, 2), (s + 1, 2), (s + 7, 3)];
        for (t, k) in counted {
            assert!(d.admit(t, k));
        }
        assert_eq!(d.resume_second(None), Some(1_000));
        assert_eq!(d.resume_second(Some(s - 5)), Some(999));
        d.prune(1_000);
        assert_eq!(d.len(), 3);
        d.begin_replay(1_000);
        // The replay repeats second 1000, then goes on with new lines.
        assert!(!d.admit(s + 1, 2));
        assert!(!d.admit(s + 1, 2));
        assert!(
            d.admit(s + 3, 9),
            "unseen line in the replayed second is new"
        );
        assert!(!d.admit(s + 7, 3));
        assert!(
            d.admit(s + 8, 3),
            "after the replayed range nothing is dropped"
        );
        assert!(d.admit(s + 1, 2), "a third copy was never counted");
        // A second re-attach replays the same second again, now with everything counted.
        d.begin_replay(1_000);
        for (t, k) in [
            (s + 1, 2),
            (s + 1, 2),
            (s + 1, 2),
            (s + 3, 9),
            (s + 7, 3),
            (s + 8, 3),
        ] {
            assert!(!d.admit(t, k), "{t} {k}");
        }
        assert!(d.admit(s + NANOS_PER_SECOND, 1));
        d.prune(1_001);
        assert_eq!(d.len(), 1);
    }
}
