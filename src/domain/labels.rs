//! A sample's label set, stored compactly: at 1000 stores one round's Prometheus answers hold
//! tens of thousands of samples with a few labels each, where a `BTreeMap` would allocate a
//! 500-byte node per sample.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};

/// Label names and values, sorted by name, each name once (the last value given wins, as in
/// a map).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Labels(Box<[(Box<str>, Box<str>)]>);

impl Labels {
    /// The value of label `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(k, _)| (**k).cmp(name))
            .ok()
            .map(|i| &*self.0[i].1)
    }

    /// The labels, by name.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (&**k, &**v))
    }

    /// How many labels there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The labels as a map (for JSON and messages).
    pub fn to_map(&self) -> BTreeMap<String, String> {
        self.iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    fn from_pairs(mut pairs: Vec<(Box<str>, Box<str>)>) -> Labels {
        // Stable: among equal names the last given stays last, and `dedup_by` keeps the first
        // of a run, so reverse first to keep the last value.
        pairs.reverse();
        pairs.sort_by(|a, b| a.0.cmp(&b.0));
        pairs.dedup_by(|a, b| a.0 == b.0);
        Labels(pairs.into_boxed_slice())
    }
}

impl<K: Into<Box<str>>, V: Into<Box<str>>> FromIterator<(K, V)> for Labels {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Labels {
        Labels::from_pairs(
            iter.into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        )
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<'de> Deserialize<'de> for Labels {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Labels, D::Error> {
        struct LabelsVisitor;
        impl<'de> Visitor<'de> for LabelsVisitor {
            type Value = Labels;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of label names to string values")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Labels, A::Error> {
                let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(4));
                while let Some((k, v)) = map.next_entry::<String, String>()? {
                    pairs.push((k.into_boxed_str(), v.into_boxed_str()));
                }
                Ok(Labels::from_pairs(pairs))
            }
        }
        d.deserialize_map(LabelsVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_unique_and_looked_up_by_name() {
        let l: Labels = [("job", "tikv"), ("instance", "a:20180"), ("job", "tikv-2")]
            .into_iter()
            .collect();
        assert_eq!(l.get("instance"), Some("a:20180"));
        assert_eq!(l.get("job"), Some("tikv-2"), "the last value wins");
        assert_eq!(l.get("pod"), None);
        assert_eq!(
            l.iter().collect::<Vec<_>>(),
            [("instance", "a:20180"), ("job", "tikv-2")]
        );
        assert_eq!(l.len(), 2);
        assert_eq!(
            format!("{l:?}"),
            r#"{"instance": "a:20180", "job": "tikv-2"}"#
        );
    }

    #[test]
    fn decodes_a_json_object_like_a_map_and_refuses_other_shapes() {
        let l: Labels =
            serde_json::from_str(r#"{"pool":"apply","instance":"b","pool":"grpc"}"#).unwrap();
        let m: BTreeMap<String, String> =
            serde_json::from_str(r#"{"pool":"apply","instance":"b","pool":"grpc"}"#).unwrap();
        assert_eq!(l.to_map(), m);
        assert!(serde_json::from_str::<Labels>("{}").unwrap().is_empty());
        assert!(serde_json::from_str::<Labels>(r#"{"a":1}"#).is_err());
        assert!(serde_json::from_str::<Labels>(r#"["a"]"#).is_err());
    }
}
