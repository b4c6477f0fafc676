//! An object of a watch or a re-read, decoded in one pass without the parts
//! the live index never keeps.
//!
//! kube's `DynamicObject` reads an object through two `serde(flatten)`s
//! (the whole object buffered into serde's generic tree first), types its
//! metadata (`managedFields` included) and keeps the rest as JSON, which the
//! index then copied once more before dropping most of it. A Deployment the
//! API server sends is about 4 KB, of which the index keeps a fifth: its
//! status, its managed fields and its pod spec go. [`Watched`] skips those
//! as it reads them (serde's `IgnoredAny`: nothing is built for them), and
//! keeps the rest as the JSON map it is, so a status-only update costs one
//! parse of the text and a small map.
//!
//! What is skipped, for every kind (what [`super::kinds::normalize`] and
//! [`super::kinds::to_indexed_object`] would drop; both still run over the
//! result, so the stored object is the same either way):
//! - `status`;
//! - `metadata.managedFields`, and the annotations outside
//!   [`READ_ANNOTATION_PREFIXES`](super::kinds::READ_ANNOTATION_PREFIXES);
//! - `spec.template.spec`: of the kinds routeguard watches only a
//!   Deployment has a `spec.template`, and the index keeps no pod spec.

use std::borrow::Cow;
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::{ApiResource, DynamicResourceScope, Resource};
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Number, Value};

use super::kinds::READ_ANNOTATION_PREFIXES;

/// A watched object: its identity and version typed (what kube's watcher
/// and the re-read look at), the object as JSON without what the index drops.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Watched {
    /// `name`, `namespace`, `uid` and `resourceVersion` only.
    pub metadata: ObjectMeta,
    /// The whole object (its metadata included) as read, less the skipped parts.
    pub raw: Map<String, Value>,
}

impl Resource for Watched {
    type DynamicType = ApiResource;
    type Scope = DynamicResourceScope;

    fn group(dt: &ApiResource) -> Cow<'_, str> {
        dt.group.as_str().into()
    }

    fn version(dt: &ApiResource) -> Cow<'_, str> {
        dt.version.as_str().into()
    }

    fn kind(dt: &ApiResource) -> Cow<'_, str> {
        dt.kind.as_str().into()
    }

    fn api_version(dt: &ApiResource) -> Cow<'_, str> {
        dt.api_version.as_str().into()
    }

    fn plural(dt: &ApiResource) -> Cow<'_, str> {
        dt.plural.as_str().into()
    }

    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

impl<'de> Deserialize<'de> for Watched {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Watched, D::Error> {
        match Pruned(Place::Object).deserialize(deserializer)? {
            Value::Object(raw) => {
                let text = |field: &str| raw.get("metadata")?.get(field)?.as_str().map(str::to_string);
                let metadata = ObjectMeta {
                    name: text("name"),
                    namespace: text("namespace"),
                    uid: text("uid"),
                    resource_version: text("resourceVersion"),
                    ..ObjectMeta::default()
                };
                Ok(Watched { metadata, raw })
            }
            other => Err(de::Error::custom(format!("expected an object (a map), found {other}"))),
        }
    }
}

/// Written back as the JSON it holds (kube's client never writes a watched
/// object; this serves `Debug`-like dumps and tests).
impl Serialize for Watched {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.raw.serialize(serializer)
    }
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
    fn step(self, key: &str) -> Step {
        match (self, key) {
            (Place::Object, "status") | (Place::Metadata, "managedFields") | (Place::Template, "spec") => Step::Skip,
            (Place::Object, "metadata") => Step::Read(Place::Metadata),
            (Place::Object, "spec") => Step::Read(Place::Spec),
            (Place::Metadata, "annotations") => Step::Read(Place::Annotations),
            (Place::Spec, "template") => Step::Read(Place::Template),
            (Place::Annotations, key) if !READ_ANNOTATION_PREFIXES.iter().any(|p| key.starts_with(p)) => Step::Skip,
            _ => Step::Read(Place::Other),
        }
    }
}

/// A JSON value read with the keys its place skips left out (below
/// [`Place::Other`], exactly `serde_json::Value`'s own reading).
#[derive(Debug, Clone, Copy)]
struct Pruned(Place);

impl<'de> DeserializeSeed<'de> for Pruned {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        if self.0 == Place::Other {
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
            match self.0.step(&key) {
                Step::Skip => {
                    map.next_value::<IgnoredAny>()?;
                }
                Step::Read(place) => {
                    let value = map.next_value_seed(Pruned(place))?;
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
#[path = "watched/tests.rs"]
mod tests;
