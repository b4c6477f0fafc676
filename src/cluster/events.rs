//! Events (`events.k8s.io/v1`) about the objects routeguard writes and the
//! findings of its audit.
//!
//! The same requests as kube's `Recorder`: a create, and for a repeat of the
//! same Event (type, action, reason, reporter, object) within six minutes a
//! merge patch of its `series`. kube's recorder keeps every Event it
//! published whole (about 2.4 KB) for those six minutes and scans them all on
//! each publish: the bootstrap of 2,500 per-version Services kept 5.9 MB
//! resident. This one keeps a fingerprint of the key, the Event's name and its
//! count (under 100 bytes), and sweeps at most once a minute.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event as K8sEvent, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
pub use kube::runtime::events::{Event, EventType};
use serde_json::json;

use crate::model::{Fingerprint, ObjectKey};

/// How long a published Event is repeated as a series rather than anew (kube's choice).
const SERIES_TTL: Duration = Duration::from_secs(6 * 60);
/// The longest between two sweeps of expired entries.
const SWEEP_EVERY: Duration = Duration::from_secs(60);

/// Publishes Events as `routeguard`, from one replica (`instance`).
pub struct Recorder {
    client: kube::Client,
    instance: String,
    published: Mutex<Published>,
}

#[derive(Default)]
struct Published {
    by_key: HashMap<Fingerprint, Series>,
    swept: Option<Instant>,
}

/// What a repeat needs of an Event published earlier.
struct Series {
    namespace: Box<str>,
    name: Box<str>,
    count: i32,
    last: Instant,
}

impl Published {
    /// Drops the entries whose series has ended, at most every [`SWEEP_EVERY`].
    fn sweep(&mut self, now: Instant) {
        if self.swept.is_some_and(|at| now.saturating_duration_since(at) < SWEEP_EVERY) {
            return;
        }
        self.swept = Some(now);
        self.by_key.retain(|_, s| now.saturating_duration_since(s.last) < SERIES_TTL);
    }

    /// The Event to patch for a repeat of `key`, with its new count.
    fn repeat(&self, key: &Fingerprint, now: Instant) -> Option<(Box<str>, Box<str>, i32)> {
        let series = self.by_key.get(key).filter(|s| now.saturating_duration_since(s.last) < SERIES_TTL)?;
        Some((series.namespace.clone(), series.name.clone(), series.count.saturating_add(1)))
    }
}

fn type_name(type_: EventType) -> &'static str {
    match type_ {
        EventType::Normal => "Normal",
        EventType::Warning => "Warning",
    }
}

/// The namespace an Event about `regarding` is created in (`default` for cluster-scoped objects).
fn namespace_of(regarding: &ObjectReference) -> &str {
    regarding.namespace.as_deref().filter(|ns| !ns.is_empty()).unwrap_or("default")
}

impl Recorder {
    /// A recorder reporting as controller `routeguard`, instance `instance`.
    pub fn new(client: &kube::Client, instance: &str) -> Recorder {
        Recorder { client: client.clone(), instance: instance.to_string(), published: Mutex::default() }
    }

    /// What makes two Events one series: all but the note and the time.
    fn key(&self, event: &Event, regarding: &ObjectReference) -> Fingerprint {
        let reference = |r: &ObjectReference| {
            json!([r.api_version, r.kind, r.namespace, r.name, r.uid, r.field_path, r.resource_version])
        };
        Fingerprint::of(&json!([
            type_name(event.type_),
            event.action,
            event.reason,
            self.instance,
            reference(regarding),
            event.secondary.as_ref().map(reference),
        ]))
    }

    /// Creates the Event, or counts a repeat into the series of the one published before.
    pub async fn publish(&self, event: &Event, regarding: &ObjectReference) -> Result<(), kube::Error> {
        let key = self.key(event, regarding);
        let now = Instant::now();
        let repeat = {
            let mut published = self.published.lock().unwrap_or_else(PoisonError::into_inner);
            published.sweep(now);
            published.repeat(&key, now)
        };
        let (namespace, name, count) = match repeat {
            Some((namespace, name, count)) => {
                let api: Api<K8sEvent> = Api::namespaced(self.client.clone(), &namespace);
                let series = EventSeries { count, last_observed_time: MicroTime(Timestamp::now()) };
                let patch = json!({"series": series});
                api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch)).await?;
                (namespace, name, count)
            }
            None => {
                let created = self.create(event, regarding).await?;
                (namespace_of(regarding).into(), created.into_boxed_str(), 1)
            }
        };
        let mut published = self.published.lock().unwrap_or_else(PoisonError::into_inner);
        published.by_key.insert(key, Series { namespace, name, count, last: now });
        Ok(())
    }

    /// Creates a new Event; returns its name.
    async fn create(&self, event: &Event, regarding: &ObjectReference) -> Result<String, kube::Error> {
        let now = Timestamp::now();
        let namespace = namespace_of(regarding);
        let name = format!("{}.{:x}", regarding.name.as_deref().unwrap_or(super::FIELD_MANAGER), now.as_nanosecond());
        let body = K8sEvent {
            action: Some(event.action.clone()),
            reason: Some(event.reason.clone()),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            related: event.secondary.clone(),
            note: event.note.clone(),
            metadata: ObjectMeta {
                namespace: Some(namespace.to_string()),
                name: Some(name.clone()),
                ..ObjectMeta::default()
            },
            reporting_controller: Some(super::FIELD_MANAGER.to_string()),
            reporting_instance: Some(self.instance.clone()),
            type_: Some(type_name(event.type_).to_string()),
            ..K8sEvent::default()
        };
        let api: Api<K8sEvent> = Api::namespaced(self.client.clone(), namespace);
        api.create(&PostParams::default(), &body).await?;
        Ok(name)
    }

    /// How many Events the recorder remembers (for tests and memory accounting).
    pub fn remembered(&self) -> usize {
        self.published.lock().unwrap_or_else(PoisonError::into_inner).by_key.len()
    }
}

/// The object of an Event: `key` served as `api_version`.
pub fn object(key: &ObjectKey, api_version: String, uid: Option<String>) -> ObjectReference {
    ObjectReference {
        api_version: Some(api_version),
        kind: Some(key.kind.as_str().to_string()),
        name: Some(key.name.clone()),
        namespace: Some(key.namespace.clone()),
        uid,
        ..ObjectReference::default()
    }
}

/// `text` cut to the 1,000 bytes an Event's note may hold, on a character boundary.
pub fn note(text: &str) -> String {
    let mut end = text.len().min(1000);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn series(name: &str, count: i32, last: Instant) -> Series {
        Series { namespace: "shop".into(), name: name.into(), count, last }
    }

    #[test]
    fn a_repeat_within_the_ttl_counts_on_and_an_old_one_starts_anew() {
        let start = Instant::now();
        let (fresh, old) = (Fingerprint::of(&json!("fresh")), Fingerprint::of(&json!("old")));
        let mut published = Published::default();
        published.by_key.insert(fresh, series("a.1", 2, start));
        published.by_key.insert(old, series("b.1", 1, start));
        let later = start + SERIES_TTL - Duration::from_secs(1);
        assert_eq!(published.repeat(&fresh, later), Some(("shop".into(), "a.1".into(), 3)));
        assert_eq!(published.repeat(&old, start + SERIES_TTL), None);
        assert_eq!(published.repeat(&Fingerprint::of(&json!("never")), start), None);
    }

    #[test]
    fn sweeps_drop_ended_series_at_most_once_a_minute() {
        let start = Instant::now();
        let mut published = Published::default();
        published.by_key.insert(Fingerprint::of(&json!(1)), series("a.1", 1, start));
        published.sweep(start);
        assert_eq!(published.by_key.len(), 1, "not ended yet");
        published.by_key.insert(Fingerprint::of(&json!(2)), series("b.1", 1, start + SERIES_TTL));
        // Ended, but the last sweep was under a minute ago.
        published.sweep(start + Duration::from_secs(59));
        let ended = start + SERIES_TTL + Duration::from_secs(1);
        assert_eq!(published.by_key.len(), 2);
        published.sweep(ended);
        assert_eq!(published.by_key.len(), 1, "the first series ended");
        assert!(published.by_key.contains_key(&Fingerprint::of(&json!(2))));
    }

    #[test]
    fn notes_are_cut_on_a_character_boundary() {
        let long = "é".repeat(600);
        let cut = note(&long);
        assert_eq!(cut.len(), 1000);
        assert!(long.starts_with(&cut));
        assert_eq!(note("short"), "short");
    }
}
