//! The AdmissionReview as it comes over the wire: borrowed types of the
//! fields routeguard reads, and the one-pass reading of a request with its
//! objects.
//!
//! [`WireRequest`]'s derive keeps `object` and `oldObject` as text
//! ([`Sent::Text`]), to be read once the kind and operation say whether they
//! are: two passes over the objects, the scan that finds their end and the
//! reading. [`Eager`] reads the same request in one pass: the API server
//! sends `resource` and `operation` before the objects, so by the time an
//! object comes it is already known whether it is read ([`Sent::Read`]) or
//! only checked as JSON ([`Sent::Unread`]). Whatever [`Eager`] accepts, the
//! derive accepts the same way; what it refuses (a field twice, an object
//! nested beyond serde_json's limit) is read again with the derive, which
//! gives the answer and the error it always gave.

use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use kube::core::admission::Operation as WireOperation;
use serde::Deserialize;
use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::Value;
use serde_json::value::RawValue;

use crate::model::pruned::{Pruned, Pruning};

/// The envelope alone, its request as text: what a refusal reads first.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Envelope<'a> {
    #[serde(default)]
    pub api_version: Option<String>,
    #[serde(default)]
    pub kind: Option<String>,
    #[serde(default, borrow)]
    pub request: Option<&'a RawValue>,
}

/// The envelope and its request (a [`WireRequest`] or an [`Eager`]) read in one pass.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct Review<'a, R> {
    #[serde(default, borrow)]
    pub api_version: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub kind: Option<Cow<'a, str>>,
    #[serde(default = "none")]
    pub request: Option<R>,
}

// `Option<R>::default()` without the `R: Default` bound a plain `default` puts on `R`.
fn none<R>() -> Option<R> {
    None
}

/// The request's fields routeguard reads; strings borrowed from the body
/// where they hold no escapes, the rest of the request skipped unread.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct WireRequest<'a> {
    #[serde(borrow)]
    pub uid: Cow<'a, str>,
    #[serde(borrow)]
    pub kind: WireGroupVersionKind<'a>,
    #[serde(borrow)]
    pub resource: WireGroupVersionResource<'a>,
    #[serde(default, borrow)]
    pub sub_resource: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub name: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub namespace: Option<Cow<'a, str>>,
    pub operation: WireOperation,
    #[serde(default, borrow)]
    pub user_info: Option<WireUser<'a>>,
    /// Kept as text by the derive ([`Sent::Text`]); read or only checked by [`Eager`].
    #[serde(default, borrow)]
    pub object: Option<Sent<'a>>,
    #[serde(default, borrow)]
    pub old_object: Option<Sent<'a>>,
    #[serde(default)]
    pub dry_run: Option<bool>,
}

// Named as kube's types are, so that a type error reads as it did with them.
#[derive(Deserialize)]
#[serde(rename = "GroupVersionKind")]
pub(super) struct WireGroupVersionKind<'a> {
    #[serde(borrow)]
    pub group: Cow<'a, str>,
    #[serde(borrow)]
    pub version: Cow<'a, str>,
    #[serde(borrow)]
    pub kind: Cow<'a, str>,
}

#[derive(Deserialize)]
#[serde(rename = "GroupVersionResource")]
pub(super) struct WireGroupVersionResource<'a> {
    #[serde(borrow)]
    pub group: Cow<'a, str>,
    /// Required, as kube's type has it; not read.
    #[serde(rename = "version")]
    _version: IgnoredAny,
    #[serde(borrow)]
    pub resource: Cow<'a, str>,
}

/// `userInfo`: only the username (for `exemptUsers`); groups and extras
/// skipped unread (so, unlike with kube's type, not checked either).
#[derive(Deserialize)]
#[serde(rename = "UserInfo")]
pub(super) struct WireUser<'a> {
    #[serde(default, borrow)]
    pub username: Option<Cow<'a, str>>,
}

/// An `object` or `oldObject` the request carries (a JSON `null` is none).
#[derive(Debug)]
pub(super) enum Sent<'a> {
    /// As text, read when the kind and operation say it is.
    Text(&'a RawValue),
    /// Read as the request was, without what [`Pruning::Admission`] leaves out.
    Read(Value),
    /// Checked as JSON and not kept: the kind and operation say it is not read.
    Unread,
}

impl<'de: 'a, 'a> Deserialize<'de> for Sent<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Sent<'a>, D::Error> {
        <&'a RawValue>::deserialize(deserializer).map(Sent::Text)
    }
}

/// A [`WireRequest`] read in one pass, each object read or only checked as
/// it comes, as [`reads`](super::reads) says for the request's resource and
/// operation. An object that comes before those two is kept as text, as the
/// derive keeps it.
pub(super) struct Eager<'a>(pub WireRequest<'a>);

impl<'de: 'a, 'a> Deserialize<'de> for Eager<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Eager<'a>, D::Error> {
        deserializer.deserialize_map(ReadRequest(PhantomData)).map(Eager)
    }
}

/// The field names of [`WireRequest`], matched exactly as its derive does.
#[derive(Deserialize)]
#[serde(field_identifier, rename_all = "camelCase")]
enum Field {
    Uid,
    Kind,
    Resource,
    SubResource,
    Name,
    Namespace,
    Operation,
    UserInfo,
    Object,
    OldObject,
    DryRun,
    #[serde(other)]
    Other,
}

/// A borrowed string, as the derive reads a `#[serde(borrow)] Cow<str>`.
#[derive(Deserialize)]
#[serde(transparent)]
struct Text<'a>(#[serde(borrow)] Cow<'a, str>);

/// The visitor of [`Eager`].
struct ReadRequest<'a>(PhantomData<&'a ()>);

/// Sets a field read once; a second time is an error, as with the derive.
fn once<T, E: de::Error>(slot: &mut Option<T>, value: T, field: &'static str) -> Result<(), E> {
    if slot.is_some() {
        return Err(E::duplicate_field(field));
    }
    *slot = Some(value);
    Ok(())
}

impl<'de: 'a, 'a> Visitor<'de> for ReadRequest<'a> {
    type Value = WireRequest<'a>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("struct AdmissionRequest")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<WireRequest<'a>, A::Error> {
        let (mut uid, mut kind, mut resource, mut sub_resource) = (None, None, None, None);
        let (mut name, mut namespace, mut operation, mut user_info) = (None, None, None, None);
        let (mut object, mut old_object, mut dry_run) = (None, None, None);
        while let Some(field) = map.next_key::<Field>()? {
            match field {
                Field::Uid => once(&mut uid, map.next_value::<Text<'a>>()?.0, "uid")?,
                Field::Kind => once(&mut kind, map.next_value()?, "kind")?,
                Field::Resource => once(&mut resource, map.next_value()?, "resource")?,
                Field::SubResource => once(&mut sub_resource, map.next_value::<Option<Text<'a>>>()?, "subResource")?,
                Field::Name => once(&mut name, map.next_value::<Option<Text<'a>>>()?, "name")?,
                Field::Namespace => once(&mut namespace, map.next_value::<Option<Text<'a>>>()?, "namespace")?,
                Field::Operation => once(&mut operation, map.next_value()?, "operation")?,
                Field::UserInfo => once(&mut user_info, map.next_value()?, "userInfo")?,
                Field::Object | Field::OldObject => {
                    let reads = resource.as_ref().zip(operation.as_ref()).map(|(r, o)| super::reads(r, o));
                    let (slot, label, read) = match field {
                        Field::Object => (&mut object, "object", reads.map(|r| r.0)),
                        _ => (&mut old_object, "oldObject", reads.map(|r| r.1)),
                    };
                    once(slot, map.next_value_seed(ReadObject(read, PhantomData))?, label)?;
                }
                Field::DryRun => once(&mut dry_run, map.next_value()?, "dryRun")?,
                Field::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        let text = |t: Option<Option<Text<'a>>>| t.flatten().map(|t| t.0);
        Ok(WireRequest {
            uid: uid.ok_or_else(|| de::Error::missing_field("uid"))?,
            kind: kind.ok_or_else(|| de::Error::missing_field("kind"))?,
            resource: resource.ok_or_else(|| de::Error::missing_field("resource"))?,
            sub_resource: text(sub_resource),
            name: text(name),
            namespace: text(namespace),
            operation: operation.ok_or_else(|| de::Error::missing_field("operation"))?,
            user_info: user_info.flatten(),
            object: object.flatten(),
            old_object: old_object.flatten(),
            dry_run: dry_run.flatten(),
        })
    }
}

/// The reader of one object: read (`Some(true)`), only checked
/// (`Some(false)`) or kept as text (`None`: not yet known).
struct ReadObject<'a>(Option<bool>, PhantomData<&'a ()>);

impl<'de: 'a, 'a> DeserializeSeed<'de> for ReadObject<'a> {
    type Value = Option<Sent<'a>>;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<Sent<'a>>, D::Error> {
        deserializer.deserialize_option(self)
    }
}

impl<'de: 'a, 'a> Visitor<'de> for ReadObject<'a> {
    type Value = Option<Sent<'a>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object")
    }

    fn visit_none<E>(self) -> Result<Option<Sent<'a>>, E> {
        Ok(None)
    }

    fn visit_unit<E>(self) -> Result<Option<Sent<'a>>, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Option<Sent<'a>>, D::Error> {
        match self.0 {
            Some(true) => Pruned::object(Pruning::Admission).deserialize(deserializer).map(Sent::Read),
            Some(false) => IgnoredAny::deserialize(deserializer).map(|_| Sent::Unread),
            None => Sent::deserialize(deserializer),
        }
        .map(Some)
    }
}
