//! Kubernetes labels and annotations as a compact sorted list.
//!
//! The snapshot holds one or more of these per object (a Service's selector,
//! a pod template's labels, each subset's labels), usually with one to three
//! pairs. A `BTreeMap<String, String>` allocates a whole node for eleven pairs
//! even for one, which made label maps the largest single part of a 10,000
//! object snapshot; a boxed slice of boxed strings is sized to what it holds.

use std::fmt;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Labels or annotations, sorted by key, each key once.
#[derive(Clone, Default, PartialEq, Eq, Hash)]
pub struct Labels(Box<[(Box<str>, Box<str>)]>);

impl Labels {
    /// No labels.
    pub fn new() -> Labels {
        Labels::default()
    }

    /// The value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.find(key).ok().map(|i| &*self.0[i].1)
    }

    /// True when `key` is set.
    pub fn contains_key(&self, key: &str) -> bool {
        self.find(key).is_ok()
    }

    /// The pairs, sorted by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> + Clone + '_ {
        self.into_iter()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Sets `key` to `value`, replacing an earlier value.
    pub fn insert(&mut self, key: impl Into<Box<str>>, value: impl Into<Box<str>>) {
        let (key, value) = (key.into(), value.into());
        match self.find(&key) {
            Ok(i) => self.0[i].1 = value,
            Err(i) => {
                let mut pairs = std::mem::take(&mut self.0).into_vec();
                pairs.insert(i, (key, value));
                self.0 = pairs.into_boxed_slice();
            }
        }
    }

    fn find(&self, key: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| (**k).cmp(key))
    }

    /// Sorts by key and keeps the last value of a key given twice (as a map
    /// built by inserting them in order would).
    fn from_pairs(mut pairs: Vec<(Box<str>, Box<str>)>) -> Labels {
        if !pairs.is_sorted_by(|a, b| a.0 < b.0) {
            // Reversed, a stable sort puts the last of a repeated key first,
            // and `dedup_by` keeps the first.
            pairs.reverse();
            pairs.sort_by(|a, b| a.0.cmp(&b.0));
            pairs.dedup_by(|a, b| a.0 == b.0);
        }
        Labels(pairs.into_boxed_slice())
    }
}

impl fmt::Debug for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl<K: Into<Box<str>>, V: Into<Box<str>>> FromIterator<(K, V)> for Labels {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Labels {
        Labels::from_pairs(iter.into_iter().map(|(k, v)| (k.into(), v.into())).collect())
    }
}

impl<K: Into<Box<str>>, V: Into<Box<str>>, const N: usize> From<[(K, V); N]> for Labels {
    fn from(pairs: [(K, V); N]) -> Labels {
        pairs.into_iter().collect()
    }
}

impl<'a> IntoIterator for &'a Labels {
    type Item = (&'a str, &'a str);
    type IntoIter =
        std::iter::Map<std::slice::Iter<'a, (Box<str>, Box<str>)>, fn(&'a (Box<str>, Box<str>)) -> (&'a str, &'a str)>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.iter().map(|(k, v)| (&**k, &**v))
    }
}

impl Serialize for Labels {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.iter())
    }
}

impl<'de> Deserialize<'de> for Labels {
    /// A map of strings to strings, like `BTreeMap<String, String>`: a value
    /// that is not a string is an error.
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Labels, D::Error> {
        struct Pairs;
        impl<'de> Visitor<'de> for Pairs {
            type Value = Labels;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of strings")
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Labels, A::Error> {
                let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(0).min(64));
                while let Some((key, value)) = map.next_entry::<String, String>()? {
                    pairs.push((key.into_boxed_str(), value.into_boxed_str()));
                }
                Ok(Labels::from_pairs(pairs))
            }
        }
        deserializer.deserialize_map(Pairs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_pairs_sorted_and_the_last_of_a_repeated_key() {
        let labels: Labels = [("b", "1"), ("a", "2"), ("b", "3")].into();
        assert_eq!(labels.iter().collect::<Vec<_>>(), vec![("a", "2"), ("b", "3")]);
        assert_eq!(labels.get("b"), Some("3"));
        assert_eq!(labels.get("c"), None);
        assert!(labels.contains_key("a"));
        assert_eq!(labels.len(), 2);
    }

    #[test]
    fn insert_replaces_or_adds_in_order() {
        let mut labels = Labels::new();
        labels.insert("version", "v1");
        labels.insert("app", "reviews");
        labels.insert("version", "v2");
        assert_eq!(labels.iter().collect::<Vec<_>>(), vec![("app", "reviews"), ("version", "v2")]);
    }

    #[test]
    fn reads_and_writes_a_json_map() {
        let labels: Labels = serde_json::from_str(r#"{"version":"v1","app":"a","app":"b"}"#).expect("labels");
        assert_eq!(labels.iter().collect::<Vec<_>>(), vec![("app", "b"), ("version", "v1")]);
        assert_eq!(serde_json::to_string(&labels).expect("json"), r#"{"app":"b","version":"v1"}"#);
        assert!(serde_json::from_str::<Labels>(r#"{"app":1}"#).is_err());
        assert!(serde_json::from_str::<Labels>(r#"["app"]"#).is_err());
    }
}
