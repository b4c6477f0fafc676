//! Reading an object's JSON in one pass without the parts routeguard never
//! reads.
//!
//! What the API server sends carries a great deal that no rule, mutation,
//! generation or reconcile looks at. In the recorded reviews
//! (`tests/fixtures/admission-reviews/`) `metadata.managedFields` is a sixth
//! to a half of each object, the `kubectl.kubernetes.io/last-applied-configuration`
//! annotation, where there is one, an eighth to a third, and a Deployment's
//! `status` another 500 bytes. [`Pruned`] skips them as it reads them (serde's `IgnoredAny`:
//! nothing is built for them, the text is only checked), which saves both
//! building those parts of the tree and dropping them again.
//!
//! Skipped, at every [`Pruning`]:
//! - the top-level `status`;
//! - `metadata.managedFields`;
//! - the annotations outside [`READ_ANNOTATION_PREFIXES`]. The `annotations`
//!   map itself stays, even when nothing is left in it: a JSON Patch computed
//!   against the pruned object adds its annotation under the existing map
//!   instead of writing a new map over the one the API server holds.
//!
//! [`Pruning::Index`] also skips `spec.template.spec`: of the kinds routeguard
//! reads only a Deployment has a `spec.template`, and the live index keeps no
//! pod spec (admission does read it: the version can come from an image tag).

use std::fmt;

use serde::Deserialize;
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// The annotation prefixes routeguard reads (its own, and Istio's
/// `networking.istio.io/exportTo`); no other annotation is kept.
pub const READ_ANNOTATION_PREFIXES: [&str; 2] = ["routeguard.io/", "networking.istio.io/"];

/// Which parts of an object a reading leaves out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pruning {
    /// What admission never reads: the status, the managed fields and the
    /// annotations of others.
    Admission,
    /// What the live index never keeps: the same, and a Deployment's pod spec.
    Index,
}

/// Where in the object a map is being read: it says which keys to skip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Place {
    /// The object itself.
    Object,
    Metadata,
    Annotations,
    Spec,
    /// `spec.template`.
    Template,
    /// Anywhere below: nothing skipped.
    Other,
}

/// What to do with one key of a map at a [`Place`].
enum Step {
    Skip,
    Read(Place),
}

impl Place {
    fn step(self, key: &str, pruning: Pruning) -> Step {
        match (self, key) {
            (Place::Object, "status") | (Place::Metadata, "managedFields") => Step::Skip,
            (Place::Template, "spec") if pruning == Pruning::Index => Step::Skip,
            (Place::Object, "metadata") => Step::Read(Place::Metadata),
            (Place::Object, "spec") => Step::Read(Place::Spec),
            (Place::Metadata, "annotations") => Step::Read(Place::Annotations),
            (Place::Spec, "template") => Step::Read(Place::Template),
            (Place::Annotations, key) if !READ_ANNOTATION_PREFIXES.iter().any(|p| key.starts_with(p)) => Step::Skip,
            _ => Step::Read(Place::Other),
        }
    }
}

/// A whole object read as a JSON value with what its [`Pruning`] skips left
/// out; anything that is not a map where a map is expected is read as it is.
/// A `DeserializeSeed`, so that it reads from any serde deserializer (a watch
/// event's `object`, a list's items) as well as from text ([`read`]).
#[derive(Debug, Clone, Copy)]
pub struct Pruned {
    pruning: Pruning,
    place: Place,
}

impl Pruned {
    /// A reader of a whole object.
    pub fn object(pruning: Pruning) -> Pruned {
        Pruned { pruning, place: Place::Object }
    }
}

/// Reads one object from JSON text, pruned; the text must hold that value
/// and nothing more (as `serde_json::from_str`).
pub fn read(text: &str, pruning: Pruning) -> Result<Value, serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let value = Pruned::object(pruning).deserialize(&mut deserializer)?;
    deserializer.end()?;
    Ok(value)
}

impl<'de> DeserializeSeed<'de> for Pruned {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        if self.place == Place::Other {
            return Value::deserialize(deserializer);
        }
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Pruned {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut kept = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            match self.place.step(&key, self.pruning) {
                Step::Skip => {
                    map.next_value::<IgnoredAny>()?;
                }
                Step::Read(place) => {
                    let value = map.next_value_seed(Pruned { place, ..self })?;
                    kept.insert(key, value);
                }
            }
        }
        Ok(Value::Object(kept))
    }

    // A place that holds no map here (a malformed object): the value as it is.
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Value>()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_string()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
}

#[cfg(test)]
#[path = "pruned/tests.rs"]
mod tests;
