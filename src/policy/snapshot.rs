//! The read-only cluster snapshot the rules look things up in.
//!
//! Objects are indexed on insert so that every lookup a rule makes costs a
//! hash lookup, not a scan; inserting or removing one object costs that object
//! only, so the live index can keep a snapshot current event by event.

use std::collections::BTreeSet;
use std::sync::Arc;

use imbl::{HashMap, OrdSet, Vector};

use crate::model::core::ServiceSpec;
use crate::model::gateway::{BackendRef, HttpRouteSpec};
use crate::model::istio::{DestinationRuleSpec, Subset, VirtualServiceSpec};
use crate::model::{Kind, Labels, Object, ObjectKey, Spec, selects};

mod entry;

pub use entry::{BOOKKEEPING, Entry, SERVICE_EXPORT_ANNOTATION, version_of};

use super::config::Policy;
use super::{hosts, visibility};

/// An entry in an index set, ordered and compared by its key, so index hits
/// need no second lookup and a set of one or two costs a few words.
#[derive(Debug, Clone)]
struct ByKey(Entry);

impl PartialEq for ByKey {
    fn eq(&self, other: &Self) -> bool {
        self.0.key() == other.0.key()
    }
}

impl Eq for ByKey {}

impl PartialOrd for ByKey {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ByKey {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.0.key().cmp(other.0.key())
    }
}

impl std::hash::Hash for ByKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.key().hash(state);
    }
}

impl std::borrow::Borrow<ObjectKey> for ByKey {
    fn borrow(&self) -> &ObjectKey {
        self.0.key()
    }
}

/// A set of entries ordered by key.
type Keys = OrdSet<ByKey>;

/// DestinationRules of one namespace, by host.
#[derive(Debug, Clone, Default)]
struct NamespaceRules {
    exact: HashMap<String, Keys>,
    wildcard: HashMap<String, Keys>,
}

/// A DestinationRule as it will be after a pending change: replaced by
/// `replacement`, or gone when `replacement` is `None`.
#[derive(Debug, Clone, Copy)]
pub struct RuleChange<'a> {
    pub key: &'a ObjectKey,
    pub replacement: Option<&'a DestinationRuleSpec>,
}

/// The DestinationRules that apply to one host as seen from one namespace.
#[derive(Debug, Clone)]
pub struct Resolution<'a> {
    /// The namespace whose DestinationRules won.
    pub namespace: &'a str,
    /// The DestinationRules merged for the host, oldest name first.
    pub rules: Vec<(&'a ObjectKey, &'a DestinationRuleSpec)>,
}

impl<'a> Resolution<'a> {
    /// Every subset the merged DestinationRules define.
    pub fn subsets(&self) -> impl Iterator<Item = &'a Subset> + '_ {
        self.rules.iter().flat_map(|(_, spec)| spec.subsets.iter())
    }

    /// The subset called `name`, if any DestinationRule defines it.
    pub fn subset(&self, name: &str) -> Option<&'a Subset> {
        self.subsets().find(|s| s.name == name)
    }
}

/// An index of the objects routeguard reads.
#[derive(Debug, Clone)]
pub struct Snapshot {
    domain: String,
    root_namespace: String,
    /// Every entry, found by its key (a set keyed by the entry's own key:
    /// a map from a cloned `ObjectKey` held a second copy of every key).
    entries: HashMap<ByKey, ()>,
    services: HashMap<String, Entry>,
    entry_hosts: HashMap<String, Keys>,
    entry_wildcards: HashMap<String, Keys>,
    rules: HashMap<String, NamespaceRules>,
    /// Every DestinationRule by its qualified host, exact hosts and wildcards
    /// apart, whatever its namespace: the namespaces a host's subsets may
    /// resolve differently in, and the rules a refusal may name.
    all_rules: NamespaceRules,
    by_namespace: HashMap<(Kind, String), Keys>,
    routes: HashMap<String, Keys>,
    /// VirtualServices bound to the mesh, by each qualified host they bind
    /// (`spec.hosts`), for RG111.
    bound_hosts: HashMap<String, Keys>,
    /// Deployments by `<namespace>/<key>=<value>` of each pod template label.
    templates: HashMap<String, Keys>,
    /// The keys of the latest changes noted ([`Snapshot::note_change`]), oldest first.
    log: Vector<ObjectKey>,
    /// The revision of `log[0]`.
    log_start: u64,
    /// The labels of each Namespace, by name (the enforcement mode is one).
    namespace_labels: HashMap<String, Arc<Labels>>,
}

/// The most changes the log keeps; a consumer further behind starts over.
const LOG_CAPACITY: usize = 8192;

/// One index slot an object occupies.
enum Term {
    Service(String),
    EntryHost(String),
    Rule(String),
    Route(String),
    /// A qualified host a mesh-bound VirtualService binds.
    BoundHost(String),
    TemplateLabel(String),
}

/// The `templates` index key of one pod template label.
fn template_slot(namespace: &str, key: &str, value: &str) -> String {
    format!("{namespace}/{key}={value}")
}

impl Snapshot {
    /// An empty snapshot for a cluster domain and mesh root namespace.
    pub fn new(domain: &str, root_namespace: &str) -> Snapshot {
        Snapshot {
            domain: domain.to_string(),
            root_namespace: root_namespace.to_string(),
            entries: HashMap::new(),
            services: HashMap::new(),
            entry_hosts: HashMap::new(),
            entry_wildcards: HashMap::new(),
            rules: HashMap::new(),
            all_rules: NamespaceRules::default(),
            by_namespace: HashMap::new(),
            routes: HashMap::new(),
            bound_hosts: HashMap::new(),
            templates: HashMap::new(),
            log: Vector::new(),
            log_start: 0,
            namespace_labels: HashMap::new(),
        }
    }

    /// An empty snapshot with the policy's cluster domain and root namespace.
    pub fn for_policy(policy: &Policy) -> Snapshot {
        Snapshot::new(&policy.cluster_domain, &policy.mesh_root_namespace)
    }

    /// A snapshot of these objects (later objects replace earlier ones of the same key).
    pub fn from_objects(policy: &Policy, objects: impl IntoIterator<Item = Object>) -> Snapshot {
        let mut snapshot = Snapshot::for_policy(policy);
        for object in objects {
            snapshot.upsert_from(&object);
        }
        snapshot
    }

    pub fn domain(&self) -> &str {
        &self.domain
    }

    pub fn root_namespace(&self) -> &str {
        &self.root_namespace
    }

    /// Number of objects.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Number of objects of one kind.
    pub fn count(&self, kind: Kind) -> usize {
        self.by_namespace.iter().filter(|((k, _), _)| *k == kind).map(|(_, keys)| keys.len()).sum()
    }

    /// Inserts or replaces an object, returning the entry it replaced.
    pub fn upsert(&mut self, object: Object) -> Option<Entry> {
        self.upsert_from(&object)
    }

    /// Inserts or replaces a copy of an object, returning the entry it replaced.
    pub fn upsert_from(&mut self, object: &Object) -> Option<Entry> {
        self.insert(Entry::new(object))
    }

    /// Inserts or replaces an entry, returning the entry it replaced.
    pub fn insert(&mut self, entry: Entry) -> Option<Entry> {
        let old = self.remove(entry.key());
        for term in self.terms(&entry) {
            self.index(&entry, term, true);
        }
        let key = entry.key();
        if key.kind == Kind::Namespace {
            // Namespaces are few; their labels are read on every admission.
            self.namespace_labels.insert(key.name.clone(), Arc::new(entry.object().labels()));
        }
        self.by_namespace.entry((key.kind, key.namespace.clone())).or_default().insert(ByKey(entry.clone()));
        self.entries.insert(ByKey(entry), ());
        old
    }

    /// Replaces an entry by one that differs from it only in [`BOOKKEEPING`]
    /// metadata (a status update, once the live index dropped `status`): the
    /// indexes name the same hosts and labels for both, so the new entry takes
    /// the old one's place in each and none is removed or added. Any other
    /// entry is stored as [`Snapshot::insert`] stores it.
    pub fn refresh(&mut self, entry: Entry) -> Option<Entry> {
        let old = match self.get(entry.key()) {
            Some(current) if current.is_same_content(&entry) => current.clone(),
            _ => return self.insert(entry),
        };
        // Every map below replaces the element of an equal key, the key included.
        for term in self.terms(&entry) {
            self.index(&entry, term, true);
        }
        let key = entry.key();
        self.by_namespace.entry((key.kind, key.namespace.clone())).or_default().insert(ByKey(entry.clone()));
        self.entries.insert(ByKey(entry), ());
        Some(old)
    }

    /// Removes an object, returning its entry.
    pub fn remove(&mut self, key: &ObjectKey) -> Option<Entry> {
        let (ByKey(entry), ()) = self.entries.remove_with_key(key)?;
        if key.kind == Kind::Namespace {
            self.namespace_labels.remove(&key.name);
        }
        for term in self.terms(&entry) {
            self.index(&entry, term, false);
        }
        let slot = (key.kind, key.namespace.clone());
        if let Some(keys) = self.by_namespace.get_mut(&slot) {
            keys.remove(key);
            if keys.is_empty() {
                self.by_namespace.remove(&slot);
            }
        }
        Some(entry)
    }

    pub fn get(&self, key: &ObjectKey) -> Option<&Entry> {
        self.entries.get_key_value(key).map(|(found, ())| &found.0)
    }

    /// The labels of the Namespace called `name`; `None` when the snapshot
    /// does not hold it (not watched, not in the manifests).
    pub fn namespace_labels(&self, name: &str) -> Option<&Labels> {
        self.namespace_labels.get(name).map(|labels| &**labels)
    }

    /// Every object, in no particular order.
    pub fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.entries.keys().map(|found| &found.0)
    }

    /// Objects of one kind in one namespace, ordered by name.
    pub fn in_namespace(&self, kind: Kind, namespace: &str) -> impl Iterator<Item = &Entry> {
        self.by_namespace.get(&(kind, namespace.to_string())).into_iter().flatten().map(|e| &e.0)
    }

    /// Objects of one kind in all namespaces, ordered by namespace and name.
    pub fn of_kind(&self, kind: Kind) -> Vec<&Entry> {
        let mut entries: Vec<&Entry> = self
            .by_namespace
            .iter()
            .filter(|((k, _), _)| *k == kind)
            .flat_map(|(_, keys)| keys)
            .map(|e| &e.0)
            .collect();
        entries.sort_by(|a, b| a.key().cmp(b.key()));
        entries
    }

    /// The Service whose FQDN is `host`.
    pub fn service(&self, host: &str) -> Option<&Entry> {
        self.services.get(host)
    }

    /// The Services and ServiceEntries that declare `host`, wherever they are exported.
    pub fn host_owners<'a>(&'a self, host: &'a str) -> impl Iterator<Item = &'a Entry> + 'a {
        let service = self.services.get(host);
        let exact = self.entry_hosts.get(host).into_iter().flatten().map(|e| &e.0);
        let wild = self.entry_wildcards.iter().filter(move |(p, _)| hosts::covers(p, host)).flat_map(|(_, k)| k);
        service.into_iter().chain(exact).chain(wild.map(|e| &e.0))
    }

    /// True when a Service or a ServiceEntry declares `host`, visible to proxies in
    /// namespace `from` (Istio's `exportTo`: a Service's annotation
    /// `networking.istio.io/exportTo`, a ServiceEntry's `spec.exportTo`).
    pub fn host_visible(&self, host: &str, from: &str) -> bool {
        self.host_owners(host).any(|e| e.exported_to(from))
    }

    /// Every DestinationRule, in any namespace, whose host covers `host`, ordered by key.
    pub fn rules_for_host<'a>(&'a self, host: &'a str) -> Vec<&'a Entry> {
        let mut rules: Vec<&Entry> = self.rules_covering(host).collect();
        rules.sort_by(|a, b| a.key().cmp(b.key()));
        rules
    }

    /// [`Snapshot::rules_for_host`] in no particular order, without collecting them.
    pub fn rules_covering<'a>(&'a self, host: &'a str) -> impl Iterator<Item = &'a Entry> + 'a {
        let all = &self.all_rules;
        let exact = all.exact.get(host).into_iter().flatten();
        let wild = all.wildcard.iter().filter(move |(p, _)| hosts::covers(p, host)).flat_map(|(_, k)| k);
        exact.chain(wild).map(|e| &e.0)
    }

    /// The namespaces that own `host`: the Service's namespace for a
    /// cluster-local host, else the namespaces of ServiceEntries declaring it.
    fn host_namespaces<'a>(&'a self, host: &'a str) -> BTreeSet<&'a str> {
        if let Some((_, namespace)) = hosts::split_service_host(host, &self.domain) {
            return BTreeSet::from([namespace]);
        }
        let exact = self.entry_hosts.get(host).into_iter().flatten();
        let wild = self.entry_wildcards.iter().filter(|(p, _)| hosts::covers(p, host)).flat_map(|(_, k)| k);
        exact.chain(wild).map(|e| e.0.namespace()).collect()
    }

    /// Routes (VirtualServices, HTTPRoutes) that send traffic or mirrors to `host`.
    pub fn routes_to(&self, host: &str) -> impl Iterator<Item = &Entry> {
        self.routes.get(host).into_iter().flatten().map(|e| &e.0)
    }

    /// VirtualServices bound to the mesh (not delegates: they have `spec.hosts`)
    /// whose qualified hosts include exactly `host`, ordered by key.
    pub fn virtual_services_binding(&self, host: &str) -> impl Iterator<Item = &Entry> {
        self.bound_hosts.get(host).into_iter().flatten().map(|e| &e.0)
    }

    /// Hosts that some route sends traffic to, covered by `pattern`.
    pub fn routed_hosts_covered_by<'a>(&'a self, pattern: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.routes.keys().filter(move |h| hosts::covers(pattern, h)).map(String::as_str)
    }

    /// The DestinationRules a route in namespace `from` sees for `host`, as
    /// Istio resolves them: the route's namespace first, then the host's own
    /// namespace (if exported to `from`), then the mesh root namespace. Several
    /// DestinationRules for the same host in the winning namespace merge.
    /// `change` applies a pending update or deletion of one DestinationRule.
    pub fn destination_rules<'a>(
        &'a self,
        from: &'a str,
        host: &'a str,
        change: Option<RuleChange<'a>>,
    ) -> Option<Resolution<'a>> {
        // A cluster-local host has one namespace: look there without building the order.
        if let Some((_, namespace)) = hosts::split_service_host(host, &self.domain) {
            let order = [from, namespace, self.root_namespace.as_str()];
            return (0..order.len())
                .filter(|&i| !order[..i].contains(&order[i]))
                .find_map(|i| self.rules_in(order[i], from, host, change));
        }
        self.lookup_order(from, host).into_iter().find_map(|namespace| self.rules_in(namespace, from, host, change))
    }

    /// The namespaces a proxy in `from` looks in for the DestinationRules of
    /// `host`, in order: its own, the host's, the mesh root namespace.
    pub fn lookup_order<'a>(&'a self, from: &'a str, host: &'a str) -> Vec<&'a str> {
        let mut order: Vec<&str> = vec![from];
        for namespace in self.host_namespaces(host) {
            if !order.contains(&namespace) {
                order.push(namespace);
            }
        }
        if !order.contains(&self.root_namespace.as_str()) {
            order.push(&self.root_namespace);
        }
        order
    }

    /// The DestinationRules of one namespace that apply to `host` and are visible from `from`.
    fn rules_in<'a>(
        &'a self,
        namespace: &'a str,
        from: &str,
        host: &str,
        change: Option<RuleChange<'a>>,
    ) -> Option<Resolution<'a>> {
        // Candidates as (host pattern, key, spec), with the pending change applied.
        let mut candidates: Vec<(&str, &'a ObjectKey, &'a DestinationRuleSpec)> = Vec::new();
        // A DestinationRule is always visible in its own namespace.
        let visible =
            |spec: &DestinationRuleSpec| namespace == from || hosts::exported_to(&spec.export_to, namespace, from);
        let skip = change.map(|c| c.key);
        if let Some(rules) = self.rules.get(namespace) {
            let exact = rules.exact.get_key_value(host).into_iter();
            let wild = rules.wildcard.iter().filter(|(p, _)| hosts::covers(p, host));
            for (pattern, keys) in exact.chain(wild) {
                for entry in keys.iter().map(|e| &e.0).filter(|e| Some(e.key()) != skip) {
                    if let Some(spec) = entry.destination_rule().filter(|s| visible(s)) {
                        candidates.push((pattern.as_str(), entry.key(), spec));
                    }
                }
            }
        }
        let replacement_pattern = match change {
            Some(RuleChange { key, replacement: Some(spec) }) if key.namespace == namespace => {
                Some((hosts::qualify(&spec.host, namespace, &self.domain), key, spec))
            }
            _ => None,
        };
        if let Some((pattern, key, spec)) = &replacement_pattern
            && hosts::covers(pattern, host)
            && visible(spec)
        {
            candidates.push((pattern.as_str(), key, spec));
        }
        // Exact hosts win over wildcards; among wildcards the most specific wins.
        let specificity = |pattern: &str| if pattern.starts_with('*') { pattern.len() } else { usize::MAX };
        let top = candidates.iter().map(|(p, _, _)| specificity(p)).max()?;
        let mut rules: Vec<(&ObjectKey, &DestinationRuleSpec)> =
            candidates.into_iter().filter(|(p, _, _)| specificity(p) == top).map(|(_, k, s)| (k, s)).collect();
        rules.sort_by(|a, b| a.0.cmp(b.0));
        Some(Resolution { namespace, rules })
    }

    /// Notes that the object of `key` changed in a way the rules or the
    /// generator read, so that a consumer holding an older copy can find out
    /// what changed since ([`Snapshot::changes_since`]) instead of starting over.
    pub fn note_change(&mut self, key: ObjectKey) {
        self.log.push_back(key);
        if self.log.len() > LOG_CAPACITY {
            let drop = LOG_CAPACITY / 2;
            self.log = self.log.skip(drop);
            self.log_start += drop as u64;
        }
    }

    /// The number of changes noted so far.
    pub fn revision(&self) -> u64 {
        self.log_start + self.log.len() as u64
    }

    /// The keys noted as changed since `revision` (maybe repeated), or `None`
    /// when the log no longer reaches back that far (or `revision` is not of
    /// this snapshot's history).
    pub fn changes_since(&self, revision: u64) -> Option<impl Iterator<Item = &ObjectKey>> {
        if revision < self.log_start || revision > self.revision() {
            return None;
        }
        let skip = usize::try_from(revision - self.log_start).ok()?;
        Some(self.log.iter().skip(skip))
    }

    /// Deployments of a namespace, ordered by name.
    pub fn deployments(&self, namespace: &str) -> impl Iterator<Item = &Entry> {
        self.in_namespace(Kind::Deployment, namespace)
    }

    /// The Services of `namespace` whose selector selects pods labelled
    /// `labels` (an empty selector selects nothing), with their specs.
    pub fn services_selecting<'a>(
        &'a self,
        namespace: &'a str,
        labels: &'a Labels,
    ) -> impl Iterator<Item = (&'a Entry, &'a ServiceSpec)> + 'a {
        self.in_namespace(Kind::Service, namespace).filter_map(move |service| match service.spec() {
            Some(Spec::Service(spec)) if selects(&spec.selector, labels) => Some((service, spec)),
            _ => None,
        })
    }

    /// Deployments of a namespace whose pod template labels contain every
    /// pair of `selector` (none for an empty selector), ordered by name. A
    /// lookup of the rarest pair, not a scan of the namespace.
    pub fn deployments_selected(&self, namespace: &str, selector: &Labels) -> Vec<&Entry> {
        let postings: Option<Vec<&Keys>> =
            selector.iter().map(|(k, v)| self.templates.get(&template_slot(namespace, k, v))).collect();
        let Some(rarest) = postings.and_then(|p| p.into_iter().min_by_key(|keys| keys.len())) else {
            return Vec::new();
        };
        rarest
            .iter()
            .map(|e| &e.0)
            .filter(|e| e.deployment().is_some_and(|d| selects(selector, &d.template.metadata.labels)))
            .collect()
    }

    /// The index slots an entry occupies.
    fn terms(&self, entry: &Entry) -> Vec<Term> {
        let key = entry.key();
        let ns = key.namespace.as_str();
        let domain = self.domain.as_str();
        match (key.kind, entry.spec()) {
            (Kind::Service, _) => vec![Term::Service(hosts::service_host(&key.name, ns, domain))],
            (_, Some(Spec::Deployment(d))) => {
                d.template.metadata.labels.iter().map(|(k, v)| Term::TemplateLabel(template_slot(ns, k, v))).collect()
            }
            // Istio refuses a ServiceEntry for host `*`: it declares nothing.
            (_, Some(Spec::ServiceEntry(se))) => {
                se.hosts.iter().filter(|h| *h != "*").map(|h| Term::EntryHost(h.to_ascii_lowercase())).collect()
            }
            (_, Some(Spec::DestinationRule(dr))) => vec![Term::Rule(hosts::qualify(&dr.host, ns, domain))],
            (_, Some(Spec::VirtualService(vs))) => {
                let routes = virtual_service_hosts(vs).map(|h| Term::Route(hosts::qualify(h, ns, domain)));
                let bound = if visibility::binds_mesh(vs) { vs.hosts.as_slice() } else { &[] };
                let bound = bound.iter().filter(|h| !h.is_empty());
                routes.chain(bound.map(|h| Term::BoundHost(hosts::qualify(h, ns, domain)))).collect()
            }
            (_, Some(Spec::HttpRoute(route))) => http_route_backends(route)
                .filter(|b| b.is_service() && !b.name.is_empty())
                .map(|b| Term::Route(hosts::service_host(&b.name, b.namespace.as_deref().unwrap_or(ns), domain)))
                .collect(),
            _ => Vec::new(),
        }
    }

    fn index(&mut self, entry: &Entry, term: Term, add: bool) {
        let key = entry.key();
        match term {
            Term::Service(host) => {
                if add {
                    self.services.insert(host, entry.clone());
                } else if self.services.get(&host).map(Entry::key) == Some(key) {
                    self.services.remove(&host);
                }
            }
            Term::EntryHost(host) => {
                let map = if host.starts_with('*') { &mut self.entry_wildcards } else { &mut self.entry_hosts };
                update(map, host, entry, add);
            }
            Term::Route(host) => update(&mut self.routes, host, entry, add),
            Term::BoundHost(host) => update(&mut self.bound_hosts, host, entry, add),
            Term::TemplateLabel(slot) => update(&mut self.templates, slot, entry, add),
            Term::Rule(host) => {
                let all = &mut self.all_rules;
                let map = if host.starts_with('*') { &mut all.wildcard } else { &mut all.exact };
                update(map, host.clone(), entry, add);
                let rules = self.rules.entry(key.namespace.clone()).or_default();
                let map = if host.starts_with('*') { &mut rules.wildcard } else { &mut rules.exact };
                update(map, host, entry, add);
                if rules.exact.is_empty() && rules.wildcard.is_empty() {
                    self.rules.remove(&key.namespace);
                }
            }
        }
    }
}

/// Adds `key` to, or removes it from, the set of objects that name `host`.
fn update(map: &mut HashMap<String, Keys>, host: String, entry: &Entry, add: bool) {
    if add {
        map.entry(host).or_default().insert(ByKey(entry.clone()));
    } else if let Some(keys) = map.get_mut(&host) {
        keys.remove(entry.key());
        if keys.is_empty() {
            map.remove(&host);
        }
    }
}

/// Every destination and mirror host a VirtualService names, as written.
pub fn virtual_service_hosts(vs: &VirtualServiceSpec) -> impl Iterator<Item = &str> {
    vs.uses().map(|u| u.destination.host.as_str()).filter(|h| !h.is_empty())
}

/// Every backendRef an HTTPRoute names: rule backends and mirror targets.
pub fn http_route_backends(route: &HttpRouteSpec) -> impl Iterator<Item = &BackendRef> {
    route.rules.iter().flat_map(|rule| {
        let filters = rule.filters.iter().chain(rule.backend_refs.iter().flat_map(|b| b.filters.iter()));
        let mirrors = filters.filter_map(|f| f.request_mirror.as_ref().and_then(|m| m.backend_ref.as_ref()));
        rule.backend_refs.iter().chain(mirrors)
    })
}

#[cfg(test)]
#[path = "snapshot/tests.rs"]
mod tests;
