//! Ordering races on the admission path: `kubectl apply -f dir/` sends the
//! VirtualService a moment after the DestinationRule it needs, and the watch
//! lags by milliseconds. Before refusing for a missing subset, host, backend
//! or gateway (RG103, RG104, RG107, RG114), the objects involved are re-read
//! from the API server (one short deadline for all), laid over the snapshot (a copy
//! that shares all it does not change), and the request judged again; it is refused only if still missing. This
//! module plans and performs the reads; [`super::admit`] is admission's
//! second look that uses them.
//!
//! And a subset routeguard is about to generate (its Deployment exists, the
//! controller runs) counts as present: the RG103 error becomes a warning.
//!
//! The re-read objects only serve this judgement; the index itself is
//! updated by the watch alone (so a stale read can never overwrite it).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use json_patch::jsonptr::PointerBuf;
use kube::Api;
use kube::api::ListParams;
use serde_json::Value;

use crate::model::gateway::ParentRef;
use crate::model::{FieldPath, Kind, Lookup as _, Object, ObjectKey};
use crate::policy::snapshot::{version_of, virtual_service_hosts};
use crate::policy::{Code, Entry, Finding, Severity, Snapshot, gateways, hosts};

use super::index::{self, Op, Scope};
use super::kinds::{self, Served};
use super::metrics::{ClusterStatus, KindState};
use super::watched::Watched;
use super::{ClusterError, within};

/// The default deadline for all re-reads of one request.
pub const REREAD_TIMEOUT: Duration = Duration::from_millis(500);

/// The codes whose refusal is worth a re-read.
pub const CODES: [Code; 4] = [Code::RG103, Code::RG104, Code::RG107, Code::RG114];

/// One read.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Read {
    /// One object by name.
    Get(ObjectKey),
    /// Every object of a kind in a namespace.
    List { kind: Kind, namespace: String },
}

/// True when the findings refuse the request for one of [`CODES`].
pub fn worth_rereading(findings: &[Finding]) -> bool {
    findings.iter().any(|f| f.is_error() && CODES.contains(&f.code))
}

/// The reads that could turn the missing-object errors among `findings` about `object` around.
pub fn plan(object: &Object, findings: &[Finding], snapshot: &Snapshot) -> BTreeSet<Read> {
    let mut reads = BTreeSet::new();
    let ns = object.namespace();
    let domain = snapshot.domain();
    let list = |kind, namespace: &str| Read::List { kind, namespace: namespace.to_string() };
    for finding in findings.iter().filter(|f| f.is_error() && CODES.contains(&f.code)) {
        match (object.kind(), finding.code) {
            (Kind::VirtualService, Code::RG103 | Code::RG104) => {
                let at = destination_at(object, &finding.path);
                let hosts: Vec<String> = match at.as_ref().and_then(|d| d.get("host")).and_then(Value::as_str) {
                    Some(host) => vec![host.to_string()],
                    None => object
                        .spec()
                        .map(|vs| virtual_service_hosts(&vs).map(str::to_string).collect())
                        .unwrap_or_default(),
                };
                for host in hosts {
                    let host = hosts::qualify(&host, ns, domain);
                    let service = hosts::split_service_host(&host, domain);
                    if finding.code == Code::RG103 {
                        reads.insert(list(Kind::DestinationRule, ns));
                        reads.insert(list(Kind::DestinationRule, snapshot.root_namespace()));
                        if let Some((_, service_ns)) = service {
                            reads.insert(list(Kind::DestinationRule, service_ns));
                            // For a subset about to be generated: the Service and its Deployments.
                            reads.insert(list(Kind::Deployment, service_ns));
                        }
                    } else {
                        reads.insert(list(Kind::ServiceEntry, ns));
                        reads.insert(list(Kind::ServiceEntry, snapshot.root_namespace()));
                    }
                    if let Some((name, service_ns)) = service {
                        reads.insert(Read::Get(ObjectKey {
                            kind: Kind::Service,
                            namespace: service_ns.into(),
                            name: name.into(),
                        }));
                        if finding.code == Code::RG104 {
                            reads.insert(list(Kind::ServiceEntry, service_ns));
                        }
                    }
                }
            }
            (Kind::HttpRoute, Code::RG107) => {
                let mut at = finding.path.clone();
                if at.as_str().ends_with(".name") {
                    at = at.parent().unwrap_or(at);
                }
                let Some(backend) = pointer(&at).and_then(|p| object.raw.lookup(&p).cloned()) else { continue };
                let Some(name) = backend.get("name").and_then(Value::as_str).filter(|n| !n.is_empty()) else {
                    continue;
                };
                let target = backend.get("namespace").and_then(Value::as_str).filter(|n| !n.is_empty()).unwrap_or(ns);
                reads.insert(Read::Get(ObjectKey { kind: Kind::Service, namespace: target.into(), name: name.into() }));
                if target != ns {
                    reads.insert(list(Kind::ReferenceGrant, target));
                }
            }
            // The Istio Gateway a `gateways` entry names (the finding's path is the entry).
            (Kind::VirtualService, Code::RG114) => {
                let at = pointer(&finding.path).and_then(|p| object.raw.lookup(&p));
                let Some(written) = at.and_then(Value::as_str) else { continue };
                if let Some((namespace, name)) = gateways::istio_gateway_ref(written, ns) {
                    let key = ObjectKey { kind: Kind::IstioGateway, namespace: namespace.into(), name: name.into() };
                    reads.insert(Read::Get(key));
                }
            }
            // The Gateway or Service a parentRef names (the finding's path is its `.name`).
            (Kind::HttpRoute, Code::RG114) => {
                let at = finding.path.parent().and_then(|p| pointer(&p)).and_then(|p| object.raw.lookup(&p));
                let Some(parent) = at.and_then(|v| serde_json::from_value::<ParentRef>(v.clone()).ok()) else {
                    continue;
                };
                if let Some(key) = gateways::parent_key(&parent, ns) {
                    reads.insert(Read::Get(key));
                }
            }
            _ => {}
        }
    }
    reads
}

/// The destination object around a finding's path (`...destination.subset` -> `...destination`).
fn destination_at(object: &Object, path: &FieldPath) -> Option<Value> {
    let parent = path.parent()?;
    object.raw.lookup(&pointer(&parent)?).cloned()
}

/// A field path of plain keys and indexes as a JSON pointer (`spec.http[0]` -> `/spec/http/0`).
pub fn pointer(path: &FieldPath) -> Option<String> {
    let text = path.as_str();
    if text.contains('"') {
        return None;
    }
    let mut tokens: Vec<&str> = Vec::new();
    for part in text.split('.') {
        let (key, indexes) = part.split_once('[').map_or((part, ""), |(k, rest)| (k, rest));
        if !key.is_empty() {
            tokens.push(key);
        }
        for index in indexes.split('[').filter(|s| !s.is_empty()) {
            let index = index.strip_suffix(']')?;
            index.parse::<usize>().ok()?;
            tokens.push(index);
        }
    }
    Some(PointerBuf::from_tokens(tokens).to_string())
}

/// What one read found.
#[derive(Debug, Clone)]
pub enum Found {
    /// The object, or `None` when it does not exist.
    Got(ObjectKey, Option<Object>),
    /// The object as the snapshot holds it: read back with the same resourceVersion.
    Held,
    /// The objects of a kind in a namespace: those that differ from the
    /// snapshot's copy, and the keys of those it holds in the very version
    /// listed (not converted again: the watch nearly always brought them already).
    Listed { scope: Scope, changed: Vec<Object>, held: Vec<ObjectKey> },
}

/// `snapshot` with what the reads found laid over it. The copy shares every
/// part of the index the reads do not change (persistent maps), and an object
/// the snapshot holds already (but for its resourceVersion) is not stored
/// again, so this costs the objects that changed, not the snapshot.
pub fn with_found(snapshot: &Snapshot, found: Vec<Found>) -> Snapshot {
    let mut copy = snapshot.clone();
    for item in found {
        let op = match item {
            Found::Got(_, Some(object)) => Op::upsert(&object),
            Found::Got(key, None) => Op::Delete(key),
            Found::Held => continue,
            Found::Listed { scope, changed, held } => {
                let mut entries: Vec<Entry> = held.iter().filter_map(|key| snapshot.get(key).cloned()).collect();
                entries.extend(changed.iter().map(Entry::new));
                Op::Replace { scope, entries }
            }
        };
        let _ = index::overlay(&mut copy, &op);
    }
    copy
}

/// True when `snapshot` holds `key` in the version `object` was read in.
fn is_held(snapshot: &Snapshot, key: &ObjectKey, object: &Watched) -> bool {
    let read = version_of(object.metadata.resource_version.as_deref());
    read.is_some() && snapshot.get(key).and_then(Entry::version) == read
}

/// The host of the destination an RG103 error about `object` points at, qualified.
fn missing_subset_host(object: &Object, finding: &Finding, domain: &str) -> Option<(String, String)> {
    if finding.code != Code::RG103 || !finding.is_error() || object.kind() != Kind::VirtualService {
        return None;
    }
    let destination = destination_at(object, &finding.path)?;
    let host = destination.get("host").and_then(Value::as_str).unwrap_or_default();
    let subset = destination.get("subset").and_then(Value::as_str).unwrap_or_default();
    Some((hosts::qualify(host, object.namespace(), domain), subset.to_string()))
}

/// The Services whose generated subsets could turn the RG103 errors among
/// `findings` around: all that [`pending_subsets`] needs generated.
pub fn subset_sources<'a>(findings: &[Finding], object: &Object, snapshot: &'a Snapshot) -> Vec<&'a Entry> {
    let mut services: Vec<&Entry> = findings
        .iter()
        .filter_map(|f| missing_subset_host(object, f, snapshot.domain()))
        .filter_map(|(host, _)| snapshot.service(&host))
        .collect();
    services.sort_by(|a, b| a.key().cmp(b.key()));
    services.dedup_by(|a, b| a.key() == b.key());
    services
}

/// Turns RG103 errors for subsets that routeguard is about to generate into warnings.
/// `desired` is what the engine generates for the snapshot (or for the
/// [`subset_sources`] of the findings).
pub fn pending_subsets(
    findings: Vec<Finding>,
    object: &Object,
    snapshot: &Snapshot,
    desired: &[Object],
) -> Vec<Finding> {
    findings
        .into_iter()
        .map(|finding| {
            let Some((host, subset)) = missing_subset_host(object, &finding, snapshot.domain()) else {
                return finding;
            };
            let subset = subset.as_str();
            let generated = desired.iter().any(|o| {
                o.kind() == Kind::DestinationRule
                    && o.raw
                        .lookup("/spec/host")
                        .and_then(Value::as_str)
                        .map(|h| hosts::qualify(h, o.namespace(), snapshot.domain()))
                        == Some(host.clone())
                    && o.raw
                        .lookup("/spec/subsets")
                        .and_then(Value::as_array)
                        .is_some_and(|list| list.iter().any(|s| s.get("name").and_then(Value::as_str) == Some(subset)))
            });
            if !generated {
                return finding;
            }
            let mut finding = finding.with_severity(Severity::Warning);
            finding.message =
                format!("subset \"{subset}\" of host {host} is not defined yet; routeguard is generating it");
            finding
        })
        .collect()
}

/// Reads objects from the API server for the admission path.
#[derive(Clone)]
pub struct Rereader {
    client: kube::Client,
    status: Arc<ClusterStatus>,
    timeout: Duration,
}

impl std::fmt::Debug for Rereader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Rereader").field("timeout", &self.timeout).finish_non_exhaustive()
    }
}

impl Rereader {
    /// Reads with `client`, in the versions `status` says the kinds are served in, all within `timeout`.
    pub fn new(client: kube::Client, status: Arc<ClusterStatus>, timeout: Duration) -> Rereader {
        Rereader { client, status, timeout }
    }

    fn served(&self, kind: Kind) -> Option<Served> {
        if self.status.state(kind) == KindState::Absent {
            return None;
        }
        let version = self.status.version(kind)?;
        Some(Served::new(kind, version.rsplit('/').next().unwrap_or("v1")))
    }

    /// Runs the reads at once; the ones that fail or miss the deadline are
    /// left out. What `snapshot` holds in the version read is only named, not converted.
    pub async fn fetch(&self, reads: &BTreeSet<Read>, snapshot: &Snapshot) -> (Vec<Found>, usize) {
        let calls = reads.iter().filter_map(|read| {
            let kind = match read {
                Read::Get(key) => key.kind,
                Read::List { kind, .. } => *kind,
            };
            let served = self.served(kind)?;
            Some(self.read(served, read.clone(), snapshot))
        });
        let results = futures::future::join_all(calls).await;
        let failed = results.iter().filter(|r| r.is_err()).count();
        for e in results.iter().filter_map(|r| r.as_ref().err()) {
            tracing::warn!(error = %e, "re-read failed; judging without it");
        }
        self.status.reread(failed > 0);
        (results.into_iter().filter_map(Result::ok).collect(), failed)
    }

    async fn read(&self, served: Served, read: Read, snapshot: &Snapshot) -> Result<Found, ClusterError> {
        match read {
            Read::Get(key) => {
                let api: Api<Watched> = Api::namespaced_with(self.client.clone(), &key.namespace, &served.resource);
                let got = within(&format!("re-read {key}"), self.timeout, api.get_opt(&key.name)).await?;
                got_found(snapshot, &served, key, got)
            }
            Read::List { kind, namespace } => {
                let api: Api<Watched> = Api::namespaced_with(self.client.clone(), &namespace, &served.resource);
                let what = format!("re-read {kind} in {namespace}");
                let list = within(&what, self.timeout, api.list(&ListParams::default())).await?;
                Ok(listed_found(snapshot, &served, namespace, list.items))
            }
        }
    }
}

/// What a Get of `key` found: [`Found::Held`] when `snapshot` holds the object
/// in the version read, otherwise the object as the watch would store it.
fn got_found(
    snapshot: &Snapshot,
    served: &Served,
    key: ObjectKey,
    got: Option<Watched>,
) -> Result<Found, ClusterError> {
    if got.as_ref().is_some_and(|o| is_held(snapshot, &key, o)) {
        return Ok(Found::Held);
    }
    let object = got
        .map(|o| kinds::to_indexed_object(served, o))
        .transpose()
        .map_err(|e| ClusterError::Invalid { what: format!("re-read {key}"), message: e.to_string() })?;
    Ok(Found::Got(key, object))
}

/// What a list of `served`'s kind in `namespace` found: the keys of the
/// objects `snapshot` holds in the version listed, and the others converted
/// as the watch converts them (an object that cannot be read is left out).
fn listed_found(snapshot: &Snapshot, served: &Served, namespace: String, items: Vec<Watched>) -> Found {
    let kind = served.kind;
    let (mut changed, mut held) = (Vec::new(), Vec::new());
    for item in items {
        let name = item.metadata.name.clone().unwrap_or_default();
        let key = ObjectKey { kind, namespace: namespace.clone(), name };
        if is_held(snapshot, &key, &item) {
            held.push(key);
        } else if let Ok(object) = kinds::to_indexed_object(served, item) {
            changed.push(object);
        }
    }
    Found::Listed { scope: Scope { kind, namespace: Some(namespace) }, changed, held }
}

#[cfg(test)]
#[path = "reread/tests.rs"]
mod tests;
