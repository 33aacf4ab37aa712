//! Which containers are followed: name patterns (exact or `*`/`?` globs) and labels.

use std::collections::HashMap;

use crate::domain::glob_match;

/// Which containers to follow: any name pattern (none given: any name) and every label.
#[derive(Clone, Debug, Default)]
pub(crate) struct Selector {
    /// Name patterns, any of which may match (none: any name).
    names: Vec<String>,
    /// Labels every followed container carries: key, and the value unless any will do.
    labels: Vec<(String, Option<String>)>,
}

impl Selector {
    /// From `logs.docker.containers` and `logs.docker.labels` (`key=value` or `key`).
    pub(crate) fn new(containers: &[String], labels: &[String]) -> Self {
        Selector {
            names: containers.iter().map(|c| c.trim().to_owned()).collect(),
            labels: labels
                .iter()
                .map(|l| match l.split_once('=') {
                    Some((k, v)) => (k.trim().to_owned(), Some(v.to_owned())),
                    None => (l.trim().to_owned(), None),
                })
                .collect(),
        }
    }

    /// Whether the container `name` (without Docker's leading `/`) with `labels` is followed.
    pub(crate) fn matches(&self, name: &str, labels: &HashMap<String, String>) -> bool {
        (self.names.is_empty() || self.names.iter().any(|p| glob_match(p, name)))
            && self.labels.iter().all(|(k, v)| {
                labels
                    .get(k)
                    .is_some_and(|have| v.as_ref().is_none_or(|v| v == have))
            })
    }

    /// Patterns without wildcards: containers known by name before they exist.
    pub(crate) fn exact_names(&self) -> impl Iterator<Item = &str> {
        self.names
            .iter()
            .filter(|n| !n.contains(['*', '?']))
            .map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selector_combines_names_and_labels() {
        let labels: HashMap<String, String> = [
            ("com.docker.compose.service".to_owned(), "tikv".to_owned()),
            ("tier".to_owned(), "db".to_owned()),
        ]
        .into();
        let s = Selector::new(
            &[],
            &["com.docker.compose.service=tikv".into(), "tier".into()],
        );
        assert!(s.matches("anything", &labels));
        assert!(!s.matches("anything", &HashMap::new()));
        let s = Selector::new(&["pd-*".into(), "tikv0".into()], &["tier=db".into()]);
        assert!(s.matches("tikv0", &labels));
        assert!(!s.matches("tikv1", &labels));
        assert!(!s.matches("pd-0", &HashMap::new()));
        assert_eq!(s.exact_names().collect::<Vec<_>>(), ["tikv0"]);
    }
}
