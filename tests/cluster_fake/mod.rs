//! An in-process fake of the few Kubernetes API endpoints routeguard uses:
//! discovery, list, watch, get, create, replace, patch (apply, JSON Patch,
//! merge) and delete, over plain HTTP on 127.0.0.1. List and watch honour a
//! `fieldSelector` of `metadata.name=<name>`. Every request is recorded
//! so tests can assert the exact method, path, query and body; overrides
//! inject errors (403, 404, 409), delays and expired watches.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header::CONTENT_TYPE};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::broadcast;

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
    pub content_type: String,
    pub body: Value,
}

impl Recorded {
    /// The query's `key=value` pairs, sorted (the order kube writes them in is not part of the contract).
    pub fn query_pairs(&self) -> Vec<String> {
        let mut pairs: Vec<String> = self.query.split('&').filter(|p| !p.is_empty()).map(str::to_string).collect();
        pairs.sort();
        pairs
    }
}

/// An injected answer.
#[derive(Debug, Clone)]
pub struct Override {
    pub method: Method,
    /// The request path must equal this (or start with it, with `prefix`).
    pub path: String,
    pub prefix: bool,
    /// The query must contain this.
    pub query_contains: String,
    pub status: u16,
    pub reason: String,
    /// Wait this long before answering (the status is then ignored when 0).
    pub delay: Duration,
    /// How many requests it answers (then it is dropped); `None`: forever.
    pub times: Option<u32>,
}

impl Override {
    pub fn status(method: Method, path: &str, status: u16, reason: &str) -> Override {
        Override {
            method,
            path: path.to_string(),
            prefix: false,
            query_contains: String::new(),
            status,
            reason: reason.to_string(),
            delay: Duration::ZERO,
            times: None,
        }
    }

    pub fn times(mut self, n: u32) -> Override {
        self.times = Some(n);
        self
    }

    pub fn delay(mut self, delay: Duration) -> Override {
        self.delay = delay;
        self
    }

    /// Matches every path that starts with `path`.
    pub fn prefix(mut self) -> Override {
        self.prefix = true;
        self
    }

    pub fn query(mut self, contains: &str) -> Override {
        self.query_contains = contains.to_string();
        self
    }
}

/// A stored object's address: group version prefix (`api/v1`, `apis/g/v`), plural, namespace, name.
type Address = (String, String, String, String);

#[derive(Default)]
struct State_ {
    objects: BTreeMap<Address, Value>,
    rv: u64,
    uid: u64,
    requests: Vec<Recorded>,
    /// Served group versions (`networking.istio.io/v1`) and their plurals.
    discovery: BTreeMap<String, BTreeSet<String>>,
    overrides: Vec<Override>,
    /// The resource (plural) whose next watch is answered 410 Gone.
    expire_next_watch: Option<String>,
    /// Server-side applies being answered now, and the most ever at once.
    writes_in_flight: usize,
    peak_writes_in_flight: usize,
    /// Resources (plurals) whose changes reach no watcher, as if every watch of them lagged.
    muted: BTreeSet<String>,
}

/// Counts a write as in flight until it is answered.
struct InFlight(Arc<Mutex<State_>>);

impl InFlight {
    fn start(state: &Arc<Mutex<State_>>) -> InFlight {
        let mut s = lock(state);
        s.writes_in_flight += 1;
        s.peak_writes_in_flight = s.peak_writes_in_flight.max(s.writes_in_flight);
        InFlight(state.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        lock(&self.0).writes_in_flight -= 1;
    }
}

/// The `metadata.name` a request's `fieldSelector=metadata.name=<name>` asks for, if any.
fn name_selector(query: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let value = percent_decode(pair.strip_prefix("fieldSelector=")?);
        value.strip_prefix("metadata.name=").map(str::to_string)
    })
}

/// Decodes `%XX` escapes and `+` of a query value.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok().and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A watch event for everyone watching a collection.
#[derive(Debug, Clone)]
enum Note {
    Event { prefix: String, plural: String, namespace: String, event: Value },
    Close,
}

/// The fake API server.
#[derive(Clone)]
pub struct Fake {
    pub url: String,
    state: Arc<Mutex<State_>>,
    notes: broadcast::Sender<Note>,
}

fn lock(state: &Mutex<State_>) -> std::sync::MutexGuard<'_, State_> {
    match state.lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

impl Fake {
    /// Starts the fake; core `v1` and `apps/v1` are always served.
    pub async fn start() -> Fake {
        let (notes, _) = broadcast::channel(1024);
        let state = Arc::new(Mutex::new(State_::default()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let url = format!("http://{}", listener.local_addr().expect("addr"));
        let fake = Fake { url, state, notes };
        let app = Router::new().fallback(handle).with_state(fake.clone());
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        fake
    }

    /// A kube client for the fake.
    pub fn client(&self) -> kube::Client {
        let config = kube::Config::new(self.url.parse().expect("url"));
        routeguard::cluster::client_for(config).expect("client")
    }

    /// Serves `group/version` with these plurals.
    pub fn serve(&self, group_version: &str, plurals: &[&str]) {
        let mut state = lock(&self.state);
        state.discovery.entry(group_version.to_string()).or_default().extend(plurals.iter().map(|p| p.to_string()));
    }

    /// Stops serving `group/version` (its CRD was deleted).
    pub fn unserve(&self, group_version: &str) {
        lock(&self.state).discovery.remove(group_version);
    }

    /// Serves Istio networking v1 and Gateway API v1 (with ReferenceGrant in v1beta1).
    pub fn serve_all(&self) {
        self.serve("networking.istio.io/v1", &["virtualservices", "destinationrules", "serviceentries"]);
        self.serve("gateway.networking.k8s.io/v1", &["httproutes", "gateways"]);
        self.serve("gateway.networking.k8s.io/v1beta1", &["httproutes", "referencegrants"]);
    }

    pub fn add_override(&self, o: Override) {
        lock(&self.state).overrides.push(o);
    }

    pub fn clear_overrides(&self) {
        lock(&self.state).overrides.clear();
    }

    /// The next watch request of `plural` gets a 410 Gone ERROR event (forcing a relist).
    /// It names the resource because every kind's watcher reconnects after
    /// `close_watches`, and whichever came first would otherwise take the expiry.
    pub fn expire_next_watch(&self, plural: &str) {
        lock(&self.state).expire_next_watch = Some(plural.to_string());
    }

    /// Ends every open watch.
    pub fn close_watches(&self) {
        let _ = self.notes.send(Note::Close);
    }

    /// Every request so far.
    /// The most server-side applies the fake was answering at once.
    pub fn peak_writes_in_flight(&self) -> usize {
        lock(&self.state).peak_writes_in_flight
    }

    pub fn requests(&self) -> Vec<Recorded> {
        lock(&self.state).requests.clone()
    }

    /// Requests other than reads (GET) and events.
    pub fn writes(&self) -> Vec<Recorded> {
        self.requests().into_iter().filter(|r| r.method != "GET" && !r.path.contains("/events")).collect()
    }

    pub fn clear_requests(&self) {
        lock(&self.state).requests.clear();
    }

    /// Stores an object at `path` (the collection path with namespace, e.g.
    /// `/api/v1/namespaces/shop/services`) as if created, notifying watchers.
    pub fn put(&self, collection: &str, object: Value) -> Value {
        let (prefix, plural, namespace, _) = parse(collection).expect("collection path");
        let name = object["metadata"]["name"].as_str().expect("name").to_string();
        self.store(&prefix, &plural, &namespace, &name, object)
    }

    /// Stores an object without telling watchers (as if the watch lagged).
    pub fn put_silent(&self, collection: &str, mut object: Value) {
        let (prefix, plural, namespace, _) = parse(collection).expect("collection path");
        let name = object["metadata"]["name"].as_str().expect("name").to_string();
        let mut state = lock(&self.state);
        state.rv += 1;
        object["metadata"]["resourceVersion"] = json!(state.rv.to_string());
        object["metadata"]["namespace"] = json!(namespace);
        state.objects.insert((prefix, plural, namespace, name), object);
    }

    /// From now on, changes of `plural` (by requests or by [`Fake::put`]) are
    /// stored but reach no watcher: the watch lags behind every write.
    /// Lists still see them.
    pub fn mute_watch(&self, plural: &str) {
        lock(&self.state).muted.insert(plural.to_string());
    }

    /// Removes an object; `silent`: no watch event (as if missed).
    pub fn remove(&self, collection: &str, name: &str, silent: bool) {
        let (prefix, plural, namespace, _) = parse(collection).expect("collection path");
        let removed =
            lock(&self.state).objects.remove(&(prefix.clone(), plural.clone(), namespace.clone(), name.to_string()));
        if let (Some(object), false) = (removed, silent) {
            let event = json!({"type": "DELETED", "object": object});
            let _ = self.notes.send(Note::Event { prefix, plural, namespace, event });
        }
    }

    /// How many stored objects of a resource (`services`, any namespace) `matching` accepts.
    pub fn count(&self, plural: &str, matching: impl Fn(&Value) -> bool) -> usize {
        lock(&self.state).objects.iter().filter(|((_, p, _, _), object)| p == plural && matching(object)).count()
    }

    /// The stored object, if any.
    pub fn get(&self, collection: &str, name: &str) -> Option<Value> {
        let (prefix, plural, namespace, _) = parse(collection)?;
        lock(&self.state).objects.get(&(prefix, plural, namespace, name.to_string())).cloned()
    }

    fn store(&self, prefix: &str, plural: &str, namespace: &str, name: &str, mut object: Value) -> Value {
        let mut state = lock(&self.state);
        state.rv += 1;
        let rv = state.rv.to_string();
        let address = (prefix.to_string(), plural.to_string(), namespace.to_string(), name.to_string());
        let existed = state.objects.get(&address).cloned();
        if object.get("metadata").is_none() {
            object["metadata"] = json!({});
        }
        object["metadata"]["resourceVersion"] = json!(rv);
        object["metadata"]["name"] = json!(name);
        if !namespace.is_empty() {
            object["metadata"]["namespace"] = json!(namespace);
        }
        let uid = match existed.as_ref().and_then(|e| e["metadata"]["uid"].as_str()) {
            Some(uid) => uid.to_string(),
            None => {
                state.uid += 1;
                format!("uid-{}", state.uid)
            }
        };
        object["metadata"]["uid"] = json!(uid);
        state.objects.insert(address, object.clone());
        let muted = state.muted.contains(plural);
        drop(state);
        if muted {
            return object;
        }
        let kind = if existed.is_some() { "MODIFIED" } else { "ADDED" };
        let event = json!({"type": kind, "object": object});
        let _ = self.notes.send(Note::Event {
            prefix: prefix.to_string(),
            plural: plural.to_string(),
            namespace: namespace.to_string(),
            event,
        });
        object
    }

    /// Waits until `check` holds (polling every 10 ms) or `timeout` passes; returns whether it held.
    pub async fn eventually(&self, timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
        let until = tokio::time::Instant::now() + timeout;
        loop {
            if check() {
                return true;
            }
            if tokio::time::Instant::now() >= until {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// Splits `/api/v1/namespaces/ns/services/name` into (prefix, plural, namespace, name).
fn parse(path: &str) -> Option<(String, String, String, String)> {
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    let (prefix, rest) = match parts.first() {
        Some(&"api") if parts.len() >= 2 => (format!("api/{}", parts[1]), &parts[2..]),
        Some(&"apis") if parts.len() >= 3 => (format!("apis/{}/{}", parts[1], parts[2]), &parts[3..]),
        _ => return None,
    };
    let (namespace, rest) = match rest {
        ["namespaces", ns, rest @ ..] if !rest.is_empty() => (ns.to_string(), rest),
        _ => (String::new(), rest),
    };
    match rest {
        [plural] => Some((prefix, plural.to_string(), namespace, String::new())),
        [plural, name] => Some((prefix, plural.to_string(), namespace, name.to_string())),
        _ => None,
    }
}

fn status(code: u16, reason: &str, message: &str) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                      "message": message, "reason": reason, "code": code});
    let mut response =
        (StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), body.to_string()).into_response();
    response.headers_mut().insert(CONTENT_TYPE, "application/json".parse().expect("header"));
    response
}

fn ok(body: Value) -> Response {
    let mut response = (StatusCode::OK, body.to_string()).into_response();
    response.headers_mut().insert(CONTENT_TYPE, "application/json".parse().expect("header"));
    response
}

/// Deep merge for apply and merge patches: maps merge, anything else replaces; null deletes.
fn merge(target: &mut Value, patch: &Value) {
    match (target.as_object_mut(), patch.as_object()) {
        (Some(t), Some(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    t.remove(k);
                } else {
                    merge(t.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        _ => *target = patch.clone(),
    }
}

async fn handle(State(fake): State<Fake>, request: Request) -> Response {
    let method = request.method().clone();
    let applying = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| t.starts_with("application/apply-patch"));
    let _in_flight = applying.then(|| InFlight::start(&fake.state));
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or_default().to_string();
    let content_type =
        request.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let bytes: Bytes = axum::body::to_bytes(request.into_body(), 16 << 20).await.unwrap_or_default();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let injected = {
        let mut state = lock(&fake.state);
        state.requests.push(Recorded {
            method: method.to_string(),
            path: path.clone(),
            query: query.clone(),
            content_type: content_type.clone(),
            body: body.clone(),
        });
        let at = state.overrides.iter().position(|o| {
            o.method == method
                && (o.path == path || (o.prefix && path.starts_with(&o.path)))
                && query.contains(&o.query_contains)
        });
        at.map(|i| {
            let o = state.overrides[i].clone();
            match o.times {
                Some(1) => {
                    state.overrides.remove(i);
                }
                Some(n) => state.overrides[i].times = Some(n - 1),
                None => {}
            }
            o
        })
    };
    if let Some(o) = injected {
        tokio::time::sleep(o.delay).await;
        if o.status != 0 {
            return status(o.status, &o.reason, &format!("injected {}", o.status));
        }
    }

    // Discovery: GET /apis/<group>/<version>.
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    if method == Method::GET && segments.len() == 3 && segments[0] == "apis" {
        let gv = format!("{}/{}", segments[1], segments[2]);
        let served = lock(&fake.state).discovery.get(&gv).cloned();
        return match served {
            Some(plurals) => {
                let resources: Vec<Value> = plurals
                    .iter()
                    .map(|p| json!({"name": p, "singularName": "", "namespaced": true, "kind": p, "verbs": ["get", "list", "watch"]}))
                    .collect();
                ok(json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}))
            }
            None => status(404, "NotFound", "the server could not find the requested resource"),
        };
    }

    let Some((prefix, plural, namespace, name)) = parse(&path) else {
        return status(404, "NotFound", "no such path");
    };
    // Resources of an unserved group version do not exist.
    if let Some(gv) = prefix.strip_prefix("apis/") {
        let served = lock(&fake.state).discovery.get(gv).is_some_and(|p| p.contains(&plural));
        let builtin = gv.starts_with("apps/")
            || gv.starts_with("coordination.k8s.io/")
            || gv.starts_with("events.k8s.io/")
            || gv.starts_with("admissionregistration.k8s.io/");
        if !served && !builtin {
            return status(404, "NotFound", "the server could not find the requested resource");
        }
    }
    let address = (prefix.clone(), plural.clone(), namespace.clone(), name.clone());
    let api_version = prefix.trim_start_matches("apis/").trim_start_matches("api/").to_string();

    match (method.clone(), name.is_empty()) {
        (Method::GET, true) if query.split('&').any(|p| p == "watch=true" || p == "watch=1") => {
            watch(fake, prefix, plural, namespace, name_selector(&query)).await
        }
        (Method::GET, true) => {
            let only = name_selector(&query);
            // Pages as a real API server cuts them: `limit` items, then a
            // `continue` token (here: how many items came before).
            let param = |name: &str| query.split('&').find_map(|p| p.strip_prefix(name)?.strip_prefix('='));
            let limit = param("limit").and_then(|v| v.parse::<usize>().ok()).filter(|n| *n > 0);
            let skip = param("continue").and_then(|v| percent_decode(v).parse::<usize>().ok()).unwrap_or(0);
            let state = lock(&fake.state);
            // The store is ordered by (prefix, plural, namespace, name): a
            // list reads its own range, as a real API server's watch cache
            // does not scan every kind either.
            let from = (prefix.clone(), plural.clone(), namespace.clone(), String::new());
            let all: Vec<Value> = state
                .objects
                .range(from..)
                .take_while(|((p, pl, ns, _), _)| {
                    *p == prefix && *pl == plural && (namespace.is_empty() || *ns == namespace)
                })
                .filter(|((_, _, _, n), _)| only.as_ref().is_none_or(|o| o == n))
                .map(|(_, v)| {
                    // List items carry no apiVersion and kind, as from a real API server.
                    let mut v = v.clone();
                    if let Some(map) = v.as_object_mut() {
                        map.remove("apiVersion");
                        map.remove("kind");
                    }
                    v
                })
                .collect();
            let total = all.len();
            let items: Vec<Value> = all.into_iter().skip(skip).take(limit.unwrap_or(usize::MAX)).collect();
            let mut metadata = json!({"resourceVersion": state.rv.to_string()});
            if skip + items.len() < total {
                metadata["continue"] = json!((skip + items.len()).to_string());
            }
            ok(json!({"kind": "List", "apiVersion": api_version, "metadata": metadata, "items": items}))
        }
        (Method::GET, false) => match lock(&fake.state).objects.get(&address).cloned() {
            Some(object) => ok(object),
            None => status(404, "NotFound", &format!("{plural} \"{name}\" not found")),
        },
        (Method::POST, true) => {
            let Some(name) = body["metadata"]["name"].as_str().map(str::to_string) else {
                return status(422, "Invalid", "metadata.name is required");
            };
            let exists = lock(&fake.state).objects.contains_key(&(
                prefix.clone(),
                plural.clone(),
                namespace.clone(),
                name.clone(),
            ));
            if exists && !plural.eq("events") {
                return status(409, "AlreadyExists", &format!("{plural} \"{name}\" already exists"));
            }
            ok(fake.store(&prefix, &plural, &namespace, &name, body))
        }
        (Method::PUT, false) => {
            let current = lock(&fake.state).objects.get(&address).cloned();
            let Some(current) = current else { return status(404, "NotFound", "not found") };
            let sent = body["metadata"]["resourceVersion"].as_str();
            if sent.is_some_and(|rv| Some(rv) != current["metadata"]["resourceVersion"].as_str()) {
                return status(
                    409,
                    "Conflict",
                    "the object has been modified; please apply your changes to the latest version and try again",
                );
            }
            ok(fake.store(&prefix, &plural, &namespace, &name, body))
        }
        (Method::PATCH, false) => {
            let current = lock(&fake.state).objects.get(&address).cloned();
            let patched = if content_type.starts_with("application/apply-patch") {
                let mut object = current.unwrap_or(json!({}));
                merge(&mut object, &body);
                object
            } else if content_type.starts_with("application/json-patch") {
                let Some(mut object) = current else { return status(404, "NotFound", "not found") };
                let Ok(patch) = serde_json::from_value::<json_patch::Patch>(body.clone()) else {
                    return status(400, "BadRequest", "not a JSON Patch");
                };
                if let Err(e) = json_patch::patch(&mut object, &patch) {
                    return status(422, "Invalid", &e.to_string());
                }
                object
            } else {
                let Some(mut object) = current else { return status(404, "NotFound", "not found") };
                merge(&mut object, &body);
                object
            };
            ok(fake.store(&prefix, &plural, &namespace, &name, patched))
        }
        (Method::DELETE, false) => {
            let current = lock(&fake.state).objects.get(&address).cloned();
            let Some(current) = current else { return status(404, "NotFound", "not found") };
            let pre = &body["preconditions"];
            let mismatch =
                |field: &str| pre[field].as_str().is_some_and(|v| Some(v) != current["metadata"][field].as_str());
            if mismatch("uid") || mismatch("resourceVersion") {
                return status(409, "Conflict", "Precondition failed");
            }
            fake.remove(&format!("/{prefix}/namespaces/{namespace}/{plural}"), &name, false);
            ok(json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "metadata": {}}))
        }
        _ => status(405, "MethodNotAllowed", "method not allowed"),
    }
}

async fn watch(fake: Fake, prefix: String, plural: String, namespace: String, only: Option<String>) -> Response {
    let expire = {
        let mut state = lock(&fake.state);
        let hit = state.expire_next_watch.as_deref() == Some(plural.as_str());
        if hit {
            state.expire_next_watch = None;
        }
        hit
    };
    if expire {
        let gone = json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": "too old resource version", "reason": "Expired", "code": 410}});
        return ok_stream(Body::from(format!("{gone}\n")));
    }
    let receiver = fake.notes.subscribe();
    let stream = futures::stream::unfold((receiver, false), move |(mut rx, done)| {
        let (prefix, plural, namespace, only) = (prefix.clone(), plural.clone(), namespace.clone(), only.clone());
        async move {
            if done {
                return None;
            }
            loop {
                match rx.recv().await {
                    Ok(Note::Event { prefix: p, plural: pl, namespace: ns, event })
                        if p == prefix
                            && pl == plural
                            && (namespace.is_empty() || ns == namespace)
                            && only.as_ref().is_none_or(|o| event["object"]["metadata"]["name"] == o.as_str()) =>
                    {
                        let line = Bytes::from(format!("{event}\n"));
                        return Some((Ok::<Bytes, Infallible>(line), (rx, false)));
                    }
                    Ok(Note::Event { .. }) => continue,
                    Ok(Note::Close) | Err(broadcast::error::RecvError::Closed) => return None,
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                }
            }
        }
    });
    ok_stream(Body::from_stream(stream))
}

fn ok_stream(body: Body) -> Response {
    let mut response = Response::new(body);
    response.headers_mut().insert(CONTENT_TYPE, "application/json".parse().expect("header"));
    response
}

/// JSON of a Service with a selector.
pub fn service(name: &str, namespace: &str, app: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": namespace},
           "spec": {"selector": {"app": app}, "ports": [{"name": "http", "port": 9080, "targetPort": 9080}]}})
}

/// JSON of a Deployment of one version.
pub fn deployment(name: &str, namespace: &str, app: &str, version: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": namespace},
           "spec": {"selector": {"matchLabels": {"app": app, "version": version}},
                    "template": {"metadata": {"labels": {"app": app, "version": version}},
                                 "spec": {"containers": [{"name": "app", "image": format!("example/{app}:{version}")}]}}}})
}

/// Collection paths.
pub fn services(ns: &str) -> String {
    format!("/api/v1/namespaces/{ns}/services")
}
pub fn deployments(ns: &str) -> String {
    format!("/apis/apps/v1/namespaces/{ns}/deployments")
}
pub fn rules(ns: &str) -> String {
    format!("/apis/networking.istio.io/v1/namespaces/{ns}/destinationrules")
}
pub fn virtual_services(ns: &str) -> String {
    format!("/apis/networking.istio.io/v1/namespaces/{ns}/virtualservices")
}
