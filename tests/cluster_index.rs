//! The live index against a fake API server: first sync, events, absent CRDs,
//! version fallback, namespaces, a closed or expired watch, RBAC 403.

mod cluster_fake;

use std::sync::Arc;
use std::time::Duration;

use axum::http::Method;
use cluster_fake::{Fake, Override, deployment, rules, service, services, virtual_services};
use routeguard::admission::SnapshotSource as _;
use routeguard::cluster::metrics::{ClusterStatus, KindState};
use routeguard::cluster::watch::{self, Index, WatchSettings};
use routeguard::model::{Kind, ObjectKey};
use routeguard::policy::{Policy, Snapshot};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(5);

fn start(fake: &Fake, namespaces: &[&str]) -> Index {
    let settings = WatchSettings {
        namespaces: namespaces.iter().map(|s| s.to_string()).collect(),
        rediscover_every: Duration::from_millis(200),
    };
    let status = Arc::new(ClusterStatus::new(&Kind::ALL));
    watch::start(fake.client(), Snapshot::for_policy(&Policy::default()), settings, status)
}

fn key(kind: Kind, ns: &str, name: &str) -> ObjectKey {
    ObjectKey { kind, namespace: ns.into(), name: name.into() }
}

fn has(index: &Index, kind: Kind, ns: &str, name: &str) -> bool {
    index.live.current().get(&key(kind, ns, name)).is_some()
}

#[tokio::test]
async fn syncs_then_follows_events() {
    let fake = Fake::start().await;
    fake.serve("networking.istio.io/v1", &["virtualservices", "destinationrules", "serviceentries"]);
    fake.put(&services("shop"), service("reviews", "shop", "reviews"));
    fake.put(&cluster_fake::deployments("shop"), deployment("reviews-v1", "shop", "reviews", "v1"));
    fake.put(&rules("shop"), json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
        "metadata": {"name": "reviews"}, "spec": {"host": "reviews", "subsets": [{"name": "v1", "labels": {"version": "v1"}}]}}));
    let index = start(&fake, &[]);

    assert!(fake.eventually(WAIT, || index.status.is_synced()).await, "first sync");
    let snapshot = index.live.current();
    assert_eq!(snapshot.len(), 3);
    assert!(has(&index, Kind::DestinationRule, "shop", "reviews"));
    // No Gateway API installed: skipped, and readiness does not wait for it.
    assert_eq!(index.status.state(Kind::HttpRoute), KindState::Absent);
    assert_eq!(index.status.state(Kind::ReferenceGrant), KindState::Absent);
    assert_eq!(index.status.version(Kind::VirtualService).as_deref(), Some("networking.istio.io/v1"));
    // Lists go to all namespaces.
    let paths: Vec<String> = fake.requests().iter().filter(|r| r.method == "GET").map(|r| r.path.clone()).collect();
    assert!(paths.contains(&"/api/v1/services".to_string()), "{paths:?}");
    assert!(paths.contains(&"/apis/networking.istio.io/v1/destinationrules".to_string()));

    // An event changes one object.
    fake.put(&virtual_services("shop"), json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "reviews"}, "spec": {"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "reviews", "subset": "v1"}}]}]}}));
    assert!(fake.eventually(WAIT, || has(&index, Kind::VirtualService, "shop", "reviews")).await);
    fake.remove(&services("shop"), "reviews", false);
    assert!(fake.eventually(WAIT, || !has(&index, Kind::Service, "shop", "reviews")).await);
    let vs = index.live.current();
    let entry = vs.get(&key(Kind::VirtualService, "shop", "reviews")).expect("vs");
    assert_eq!(entry.raw()["apiVersion"], "networking.istio.io/v1", "set from the served version");
    assert!(entry.spec().is_some());

    let metrics = index.status.render(&index.live.current());
    assert!(metrics.contains("routeguard_cluster_objects{kind=\"VirtualService\"} 1"), "{metrics}");
    assert!(metrics.contains("routeguard_cluster_synced 1"));
}

#[tokio::test]
async fn absent_kind_is_picked_up_when_its_crd_appears() {
    let fake = Fake::start().await;
    fake.serve("networking.istio.io/v1", &["virtualservices", "destinationrules", "serviceentries"]);
    let index = start(&fake, &[]);
    assert!(fake.eventually(WAIT, || index.status.is_synced()).await);
    assert_eq!(index.status.state(Kind::HttpRoute), KindState::Absent);

    fake.serve("gateway.networking.k8s.io/v1", &["httproutes"]);
    fake.serve("gateway.networking.k8s.io/v1beta1", &["httproutes", "referencegrants"]);
    fake.put(
        "/apis/gateway.networking.k8s.io/v1/namespaces/web/httproutes",
        json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "shop"},
        "spec": {"rules": [{"backendRefs": [{"name": "reviews", "port": 9080}]}]}}),
    );
    assert!(fake.eventually(WAIT, || has(&index, Kind::HttpRoute, "web", "shop")).await, "looked up again");
    assert!(fake.eventually(WAIT, || index.status.state(Kind::ReferenceGrant) == KindState::Synced).await);
    assert_eq!(index.status.version(Kind::ReferenceGrant).as_deref(), Some("gateway.networking.k8s.io/v1beta1"));
    assert_eq!(index.status.version(Kind::HttpRoute).as_deref(), Some("gateway.networking.k8s.io/v1"));
}

#[tokio::test]
async fn istio_falls_back_to_v1beta1() {
    let fake = Fake::start().await;
    fake.serve("networking.istio.io/v1beta1", &["virtualservices", "destinationrules", "serviceentries"]);
    fake.put(
        "/apis/networking.istio.io/v1beta1/namespaces/shop/destinationrules",
        json!({
        "metadata": {"name": "old"}, "spec": {"host": "reviews"}}),
    );
    let index = start(&fake, &[]);
    assert!(fake.eventually(WAIT, || index.status.is_synced()).await);
    let snapshot = index.live.current();
    let entry = snapshot.get(&key(Kind::DestinationRule, "shop", "old")).expect("indexed");
    assert_eq!(entry.raw()["apiVersion"], "networking.istio.io/v1beta1");
    let discovery: Vec<String> = fake
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/apis/networking.istio.io/") && r.path.matches('/').count() == 3)
        .map(|r| r.path.clone())
        .collect();
    assert!(discovery.contains(&"/apis/networking.istio.io/v1".to_string()), "{discovery:?}");
    assert!(discovery.contains(&"/apis/networking.istio.io/v1beta1".to_string()));
}

#[tokio::test]
async fn watches_only_the_given_namespaces() {
    let fake = Fake::start().await;
    fake.put(&services("shop"), service("a", "shop", "a"));
    fake.put(&services("other"), service("b", "other", "b"));
    let index = start(&fake, &["shop"]);
    assert!(fake.eventually(WAIT, || index.status.is_synced()).await);
    assert!(has(&index, Kind::Service, "shop", "a"));
    assert!(!has(&index, Kind::Service, "other", "b"));
    let lists: Vec<String> = fake
        .requests()
        .iter()
        .filter(|r| r.method == "GET" && r.path.ends_with("/services"))
        .map(|r| r.path.clone())
        .collect();
    assert!(lists.iter().all(|p| p == "/api/v1/namespaces/shop/services"), "{lists:?}");
    fake.put(&services("other"), service("c", "other", "c"));
    fake.put(&services("shop"), service("d", "shop", "d"));
    assert!(fake.eventually(WAIT, || has(&index, Kind::Service, "shop", "d")).await);
    assert!(!has(&index, Kind::Service, "other", "c"));
}

#[tokio::test]
async fn a_closed_watch_resumes_and_an_expired_one_relists() {
    let fake = Fake::start().await;
    fake.put(&services("shop"), service("a", "shop", "a"));
    fake.put(&services("shop"), service("b", "shop", "b"));
    let index = start(&fake, &[]);
    assert!(fake.eventually(WAIT, || index.status.is_synced()).await);
    let lists = |fake: &Fake| {
        fake.requests().iter().filter(|r| r.path == "/api/v1/services" && !r.query.contains("watch=")).count()
    };
    assert_eq!(lists(&fake), 1);

    // A closed watch: the watcher starts a new one and keeps following events.
    fake.close_watches();
    tokio::time::sleep(Duration::from_millis(100)).await;
    fake.put(&services("shop"), service("c", "shop", "c"));
    assert!(fake.eventually(Duration::from_secs(10), || has(&index, Kind::Service, "shop", "c")).await, "resumed");

    // b goes while nobody watches, and the next watch is too old (410): a relist drops b.
    fake.remove(&services("shop"), "b", true);
    fake.expire_next_watch("services");
    fake.close_watches();
    assert!(fake.eventually(Duration::from_secs(10), || !has(&index, Kind::Service, "shop", "b")).await, "relisted");
    assert!(has(&index, Kind::Service, "shop", "a"));
    assert!(lists(&fake) >= 2);
    assert!(index.status.is_synced(), "readiness stays during a resync");
}

#[tokio::test]
async fn forbidden_list_keeps_the_index_unready_until_allowed() {
    let fake = Fake::start().await;
    fake.serve("networking.istio.io/v1", &["virtualservices", "destinationrules", "serviceentries"]);
    fake.add_override(Override::status(Method::GET, "/apis/networking.istio.io/v1/virtualservices", 403, "Forbidden"));
    let index = start(&fake, &[]);
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!index.status.is_synced(), "a present kind that cannot be listed blocks readiness");
    assert_eq!(index.status.state(Kind::VirtualService), KindState::Syncing);
    assert_eq!(index.status.state(Kind::Service), KindState::Synced);
    let metrics = index.status.render(&index.live.current());
    assert!(!metrics.contains("routeguard_cluster_watch_errors_total{kind=\"VirtualService\"} 0"), "{metrics}");
    fake.clear_overrides();
    assert!(fake.eventually(Duration::from_secs(10), || index.status.is_synced()).await, "backs off and retries");
}

#[tokio::test]
async fn batches_many_events_into_few_publishes() {
    let fake = Fake::start().await;
    let index = start(&fake, &[]);
    assert!(fake.eventually(WAIT, || index.status.is_synced()).await);
    let before = *index.publishes.borrow();
    for i in 0..200 {
        fake.put(&services("shop"), service(&format!("s{i}"), "shop", "x"));
    }
    assert!(fake.eventually(WAIT, || index.live.current().len() == 200).await);
    let publishes = *index.publishes.borrow() - before;
    assert!(publishes < 200, "{publishes} publishes for 200 events");
}

#[tokio::test]
async fn a_removed_crd_empties_its_kind_and_is_looked_up_again() {
    let fake = Fake::start().await;
    fake.serve_all();
    fake.put(
        &rules("shop"),
        json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
        "metadata": {"name": "reviews"}, "spec": {"host": "reviews"}}),
    );
    let index = start(&fake, &[]);
    assert!(fake.eventually(WAIT, || has(&index, Kind::DestinationRule, "shop", "reviews")).await);
    fake.unserve("networking.istio.io/v1");
    fake.close_watches();
    assert!(
        fake.eventually(Duration::from_secs(15), || index.status.state(Kind::DestinationRule) == KindState::Absent)
            .await,
        "404 while watching: back to discovery"
    );
    assert!(fake.eventually(WAIT, || !has(&index, Kind::DestinationRule, "shop", "reviews")).await);
    assert!(index.status.is_synced(), "an absent kind does not block readiness");
}

#[tokio::test]
async fn status_unread_annotations_and_pod_specs_wake_no_one() {
    // A busy cluster updates Deployment statuses all the time; kubectl rewrites
    // its last-applied annotation; a rollout changes images. None changes what routeguard reads: the
    // index takes the new resourceVersion, but publishes no change (so the
    // controller does not reconcile).
    let fake = Fake::start().await;
    let mut reviews = deployment("reviews-v1", "shop", "reviews", "v1");
    fake.put(&cluster_fake::deployments("shop"), reviews.clone());
    let index = start(&fake, &[]);
    assert!(fake.eventually(WAIT, || index.status.is_synced()).await);
    assert!(fake.eventually(WAIT, || has(&index, Kind::Deployment, "shop", "reviews-v1")).await);
    let before = *index.publishes.borrow();
    let version = |index: &Index| {
        index
            .live
            .current()
            .get(&key(Kind::Deployment, "shop", "reviews-v1"))
            .map(|e| e.raw()["metadata"]["resourceVersion"].clone())
    };
    let first = version(&index);
    for i in 0..20 {
        reviews["status"] = json!({"observedGeneration": 1, "readyReplicas": i});
        // A rollout of a new image: the pod spec is not read either.
        reviews["spec"]["template"]["spec"]["containers"][0]["image"] = json!(format!("example/reviews:1.{i}"));
        reviews["metadata"]["generation"] = json!(i + 2);
        reviews["metadata"]["annotations"] =
            json!({"kubectl.kubernetes.io/last-applied-configuration": format!("{{\"n\":{i}}}")});
        fake.put(&cluster_fake::deployments("shop"), reviews.clone());
    }
    assert!(fake.eventually(WAIT, || version(&index) != first).await, "the new resourceVersion is stored");
    let stored = index.live.current().get(&key(Kind::Deployment, "shop", "reviews-v1")).expect("stored").raw();
    assert!(stored.get("status").is_none() && stored["metadata"].get("annotations").is_none(), "{stored}");
    assert!(stored["spec"]["template"].get("spec").is_none(), "no pod spec kept: {stored}");
    assert_eq!(stored["spec"]["template"]["metadata"]["labels"]["version"], "v1", "{stored}");
    assert_eq!(*index.publishes.borrow(), before, "no change published");
    // A label is read (selectors): that change is published.
    reviews["metadata"]["labels"] = json!({"app": "reviews", "tier": "web"});
    fake.put(&cluster_fake::deployments("shop"), reviews.clone());
    assert!(fake.eventually(WAIT, || *index.publishes.borrow() > before).await);
}
