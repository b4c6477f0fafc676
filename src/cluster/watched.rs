//! An object of a watch or a re-read, decoded in one pass without the parts
//! the live index never keeps.
//!
//! kube's `DynamicObject` reads an object through two `serde(flatten)`s
//! (the whole object buffered into serde's generic tree first), types its
//! metadata (`managedFields` included) and keeps the rest as JSON, which the
//! index then copied once more before dropping most of it. A Deployment the
//! API server sends is about 4 KB, of which the index keeps a fifth: its
//! status, its managed fields and its pod spec go. [`Watched`] skips those
//! as it reads them ([`Pruned`] with [`Pruning::Index`], the reader admission
//! shares), and keeps the rest as the JSON map it is, so a status-only update
//! costs one parse of the text and a small map.
//!
//! What is skipped is what [`super::kinds::normalize`] and
//! [`super::kinds::to_indexed_object`] would drop (both still run over the
//! result, so the stored object is the same either way): `status`,
//! `metadata.managedFields`, the annotations routeguard does not read, and
//! a Deployment's pod spec.

use std::borrow::Cow;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::core::{ApiResource, DynamicResourceScope, Resource};
use serde::de::{self, DeserializeSeed, Deserializer};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::model::pruned::{Pruned, Pruning};

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
        match Pruned::object(Pruning::Index).deserialize(deserializer)? {
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

#[cfg(test)]
#[path = "watched/tests.rs"]
mod tests;
