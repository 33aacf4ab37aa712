//! Log lines once per transition: a keyed set of things that are failing (a source, a PD
//! member, a query, ...) that says when one starts failing and when it recovers, never on every
//! poll in between.

use std::collections::BTreeMap;

use crate::log::{info, warn};

/// What changed for one key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// It started failing (or failed at the first attempt).
    Failed,
    /// It failed before and still fails, for another reason.
    Changed,
    /// It was failing and works again.
    Recovered,
}

/// The keys failing now, with the reason last logged.
#[derive(Debug, Default)]
pub struct Failing {
    failing: BTreeMap<String, String>,
}

impl Failing {
    /// Records `key`'s state; `Some` when that is news to log. A changed reason is news only
    /// when `report_changes` (errors that embed timings would otherwise log every poll).
    pub fn update(
        &mut self,
        key: &str,
        result: Result<(), &str>,
        report_changes: bool,
    ) -> Option<Change> {
        match result {
            Ok(()) => self.failing.remove(key).map(|_| Change::Recovered),
            Err(why) => match self.failing.insert(key.to_owned(), why.to_owned()) {
                None => Some(Change::Failed),
                Some(old) if report_changes && old != why => Some(Change::Changed),
                Some(_) => None,
            },
        }
    }
}

impl Failing {
    /// Records `key`'s latest attempt and logs a transition: `"<key> <failed>: <error>"` (warn)
    /// when it starts failing, `"<key> <recovered>"` (info) when it works again.
    pub fn log(&mut self, key: &str, error: Option<&str>, failed: &str, recovered: &str) {
        match self.update(key, error.map_or(Ok(()), Err), false) {
            Some(Change::Failed) => warn(&format!("{key} {failed}: {}", error.unwrap_or_default())),
            Some(Change::Recovered) => info(&format!("{key} {recovered}")),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_transition_is_reported_once() {
        let mut f = Failing::default();
        assert_eq!(f.update("pd", Ok(()), false), None);
        assert_eq!(f.update("pd", Err("refused"), false), Some(Change::Failed));
        assert_eq!(f.update("pd", Err("refused"), false), None);
        assert_eq!(f.update("pd", Err("timeout"), false), None);
        assert_eq!(f.update("pd", Err("503"), true), Some(Change::Changed));
        assert_eq!(f.update("pd", Ok(()), false), Some(Change::Recovered));
        assert_eq!(f.update("pd", Ok(()), false), None);
    }
}
