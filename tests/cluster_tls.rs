//! `--tls-secret` mode against a fake API server: creating the Secret, two
//! replicas agreeing on one (409 AlreadyExists, 409 Conflict on renewal),
//! patching the CA bundle into the webhook configurations, RBAC 403; a new CA
//! served only after the webhooks trust it; a reset CA bundle re-patched
//! after a watch event.

mod cluster_fake;

use std::time::Duration;

const WAIT: Duration = Duration::from_secs(5);

use axum::http::Method;
use base64::Engine as _;
use cluster_fake::{Fake, Override};
use routeguard::cluster::ca::{self, Bundle};
use routeguard::cluster::retry::Backoff;
use routeguard::cluster::selftls::{SelfTls, SelfTlsSettings};
use serde_json::{Value, json};

const SECRETS: &str = "/api/v1/namespaces/rg/secrets";
const SECRET: &str = "/api/v1/namespaces/rg/secrets/routeguard-tls";
const MUTATING: &str = "/apis/admissionregistration.k8s.io/v1/mutatingwebhookconfigurations";
const VALIDATING: &str = "/apis/admissionregistration.k8s.io/v1/validatingwebhookconfigurations";

fn tls(fake: &Fake) -> SelfTls {
    tls_checking_every(fake, Duration::from_millis(100))
}

fn tls_checking_every(fake: &Fake, check_every: Duration) -> SelfTls {
    SelfTls::new(
        fake.client(),
        SelfTlsSettings {
            namespace: "rg".into(),
            secret: "routeguard-tls".into(),
            service: "routeguard".into(),
            mutating_webhook: "routeguard".into(),
            validating_webhook: "routeguard".into(),
            check_every,
        },
    )
}

/// A webhook configuration with one webhook, trusting `ca` (none: no caBundle).
fn config(kind: &str, name: &str, ca: Option<&str>) -> Value {
    let mut client_config = json!({"service": {"name": "routeguard", "namespace": "rg", "path": "/validate"}});
    if let Some(ca) = ca {
        client_config["caBundle"] = json!(b64(ca));
    }
    json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": kind, "metadata": {"name": name},
           "webhooks": [{"name": "hook.routeguard.io", "clientConfig": client_config,
                         "admissionReviewVersions": ["v1"], "sideEffects": "None"}]})
}

fn put_configs(fake: &Fake, ca: Option<&str>) {
    fake.put(MUTATING, config("MutatingWebhookConfiguration", "routeguard", ca));
    fake.put(VALIDATING, config("ValidatingWebhookConfiguration", "routeguard", ca));
}

/// The caBundle both configurations hold now.
fn trusted(fake: &Fake) -> [Value; 2] {
    [MUTATING, VALIDATING].map(|c| {
        fake.get(c, "routeguard").map(|o| o["webhooks"][0]["clientConfig"]["caBundle"].clone()).unwrap_or_default()
    })
}

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn secret_json(bundle: &Bundle) -> Value {
    let (data, annotations) = ca::to_secret(bundle);
    let data: serde_json::Map<String, Value> =
        data.into_iter().map(|(k, v)| (k, json!(base64::engine::general_purpose::STANDARD.encode(v)))).collect();
    json!({"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
           "metadata": {"name": "routeguard-tls", "annotations": annotations}, "data": data})
}

fn names() -> Vec<String> {
    ca::service_names("routeguard", "rg")
}

#[tokio::test]
async fn creates_the_secret_when_missing() {
    let fake = Fake::start().await;
    let bundle = tls(&fake).ensure().await.expect("bundle");
    ca::verify(&bundle, &names()).expect("valid for the Service names");
    let create = fake.requests().into_iter().find(|r| r.method == "POST").expect("create");
    assert_eq!(create.path, SECRETS);
    assert_eq!(create.body["type"], "kubernetes.io/tls");
    assert_eq!(create.body["metadata"]["name"], "routeguard-tls");
    assert_eq!(create.body["metadata"]["labels"]["app.kubernetes.io/managed-by"], "routeguard");
    let keys: Vec<&String> = create.body["data"].as_object().expect("data").keys().collect();
    assert_eq!(keys, vec!["ca.crt", "ca.key", "tls.crt", "tls.key"]);
    assert_eq!(create.body["data"]["tls.crt"], b64(&bundle.cert));
    assert_eq!(create.body["metadata"]["annotations"][ca::NOT_AFTER], bundle.not_after.to_string());

    // Read back as is: no second write.
    fake.clear_requests();
    assert_eq!(tls(&fake).ensure().await.expect("again"), bundle);
    assert!(fake.writes().is_empty(), "{:?}", fake.writes());
}

#[tokio::test]
async fn a_replica_that_loses_the_create_race_serves_the_winners() {
    let fake = Fake::start().await;
    let winner = ca::issue_all(&names(), time::OffsetDateTime::now_utc(), None).expect("winner");
    fake.put(SECRETS, secret_json(&winner));
    // This replica's first read happened before the winner wrote.
    fake.add_override(Override::status(Method::GET, SECRET, 404, "NotFound").times(1));
    let bundle = tls(&fake).ensure().await.expect("bundle");
    assert_eq!(bundle, winner);
    let posts: Vec<_> = fake.requests().into_iter().filter(|r| r.method == "POST").collect();
    assert_eq!(posts.len(), 1, "tried to create, got 409 AlreadyExists, read the winner's");
}

#[tokio::test]
async fn concurrent_renewals_end_on_one_certificate() {
    let fake = Fake::start().await;
    let now = time::OffsetDateTime::now_utc();
    let mut due = ca::issue_all(&names(), now, None).expect("bundle");
    // Recorded as issued long ago: past 2/3 of its lifetime.
    due.not_before -= 300 * 86_400;
    due.not_after -= 300 * 86_400;
    let stored = fake.put(SECRETS, secret_json(&due));
    // Both replicas read before either writes.
    fake.add_override(Override::status(Method::GET, SECRET, 0, "").delay(Duration::from_millis(300)).times(2));
    let (one, two) = (tls(&fake), tls(&fake));
    let (a, b) = tokio::join!(one.ensure(), two.ensure());
    let (a, b) = (a.expect("a"), b.expect("b"));
    assert_eq!(a, b, "both serve the renewal that won");
    assert_ne!(a.cert, due.cert);
    assert_eq!(a.ca_bundle, due.ca_bundle, "same CA");
    let puts: Vec<_> = fake.requests().into_iter().filter(|r| r.method == "PUT").collect();
    assert_eq!(puts.len(), 2);
    assert!(puts.iter().all(|p| p.path == SECRET && p.body["metadata"]["resourceVersion"] == stored["metadata"]["resourceVersion"]));
    let kept = fake.get(SECRETS, "routeguard-tls").expect("secret");
    assert_eq!(kept["data"]["tls.crt"], b64(&a.cert));
}

#[tokio::test]
async fn patches_the_ca_bundle_into_every_webhook() {
    let fake = Fake::start().await;
    let bundle = ca::issue_all(&names(), time::OffsetDateTime::now_utc(), None).expect("bundle");
    let hook = |name: &str, bundle: Option<&str>| {
        let mut config = json!({"service": {"name": "routeguard", "namespace": "rg", "path": "/validate"}});
        if let Some(b) = bundle {
            config["caBundle"] = json!(b64(b));
        }
        json!({"name": name, "clientConfig": config, "admissionReviewVersions": ["v1"], "sideEffects": "None"})
    };
    fake.put(
        MUTATING,
        json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": "routeguard"}, "webhooks": [hook("mutate.routeguard.io", None)]}),
    );
    fake.put(VALIDATING, json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": "routeguard"},
        "webhooks": [hook("validate.routeguard.io", Some(&bundle.ca_bundle)), hook("protect.routeguard.io", Some("old"))]}));

    assert_eq!(tls(&fake).patch_webhooks(&bundle.ca_bundle).await.expect("patched"), 2);
    let patches: Vec<_> = fake.requests().into_iter().filter(|r| r.method == "PATCH").collect();
    assert_eq!(patches.len(), 2);
    assert_eq!(patches[0].path, format!("{MUTATING}/routeguard"));
    assert_eq!(patches[0].content_type, "application/json-patch+json");
    assert_eq!(patches[0].query_pairs(), ["fieldManager=routeguard"]);
    assert_eq!(
        patches[0].body,
        json!([{"op": "test", "path": "/webhooks/0/name", "value": "mutate.routeguard.io"},
               {"op": "add", "path": "/webhooks/0/clientConfig/caBundle", "value": b64(&bundle.ca_bundle)}])
    );
    assert_eq!(patches[1].path, format!("{VALIDATING}/routeguard"));
    assert_eq!(
        patches[1].body,
        json!([{"op": "test", "path": "/webhooks/1/name", "value": "protect.routeguard.io"},
               {"op": "add", "path": "/webhooks/1/clientConfig/caBundle", "value": b64(&bundle.ca_bundle)}])
    );
    let stored = fake.get(VALIDATING, "routeguard").expect("stored");
    assert_eq!(stored["webhooks"][1]["clientConfig"]["caBundle"], b64(&bundle.ca_bundle));

    fake.clear_requests();
    assert_eq!(tls(&fake).patch_webhooks(&bundle.ca_bundle).await.expect("nothing to do"), 0);
    assert!(fake.writes().is_empty());
}

#[tokio::test]
async fn missing_webhook_configurations_are_skipped_and_rbac_errors_surface() {
    let fake = Fake::start().await;
    assert_eq!(tls(&fake).patch_webhooks("pem").await.expect("skipped"), 0);
    fake.add_override(Override::status(Method::GET, SECRET, 403, "Forbidden"));
    let err = tls(&fake).ensure().await.expect_err("forbidden");
    assert!(err.is_forbidden(), "{err}");
    assert!(err.to_string().contains("403"), "{err}");
}

#[tokio::test]
async fn the_renewal_loop_publishes_a_new_certificate() {
    let fake = Fake::start().await;
    let manager = tls(&fake);
    let first = manager.ensure().await.expect("bundle");
    let (tx, mut rx) = tokio::sync::watch::channel(first.clone());
    let task = tokio::spawn(manager.clone().run(first.clone(), tx));
    // Another replica renews: this one picks it up from the Secret.
    let renewed = ca::renew_serving(&first, &names(), time::OffsetDateTime::now_utc()).expect("renewed");
    fake.put(SECRETS, secret_json(&renewed));
    let got = tokio::time::timeout(Duration::from_secs(5), rx.changed()).await;
    assert!(matches!(got, Ok(Ok(()))));
    assert_eq!(*rx.borrow(), renewed);
    task.abort();
}

#[tokio::test]
async fn a_new_ca_is_served_only_after_the_webhooks_trust_it_and_a_failed_patch_keeps_the_old_one() {
    let fake = Fake::start().await;
    let mut due = ca::issue_all(&names(), time::OffsetDateTime::now_utc(), None).expect("bundle");
    // The CA was made eight years ago: past 2/3 of its ten years, so this replica rotates it.
    due.ca_not_before -= 8 * 365 * 86_400;
    due.ca_not_after -= 8 * 365 * 86_400;
    fake.put(SECRETS, secret_json(&due));
    put_configs(&fake, Some(&due.ca_bundle));
    // The API server refuses the CA bundle patch for now.
    fake.add_override(Override::status(Method::PATCH, &format!("{MUTATING}/routeguard"), 500, "InternalError"));

    let retry = Backoff { initial: Duration::from_millis(100), max: Duration::from_millis(200), jitter: 0.0 };
    let (tx, mut rx) = tokio::sync::watch::channel(due.clone());
    let task = tokio::spawn(tls(&fake).with_retry(retry).run(due.clone(), tx));
    let rotated = || fake.get(SECRETS, "routeguard-tls").is_some_and(|s| s["data"]["ca.crt"] != b64(&due.ca_bundle));
    assert!(fake.eventually(Duration::from_secs(5), rotated).await, "the renewal with a new CA is in the Secret");
    let patch_tries =
        || fake.requests().iter().filter(|r| r.method == "PATCH" && r.path == format!("{MUTATING}/routeguard")).count();
    assert!(fake.eventually(Duration::from_secs(5), || patch_tries() >= 3).await, "the patch is retried");

    // The webhooks do not trust the new CA yet: the old certificate stays in service.
    assert!(!rx.has_changed().expect("sender alive"), "nothing new was sent to the server");
    assert_eq!(*rx.borrow(), due);
    assert_eq!(trusted(&fake), [json!(b64(&due.ca_bundle)), json!(b64(&due.ca_bundle))]);

    // The patch goes through: webhooks first, then the new certificate.
    fake.clear_overrides();
    let changed = tokio::time::timeout(Duration::from_secs(5), rx.changed()).await;
    assert!(matches!(changed, Ok(Ok(()))), "the new certificate is served once the webhooks trust its CA");
    let trusted_then = trusted(&fake);
    let served = rx.borrow().clone();
    assert_ne!(served.ca_bundle, due.ca_bundle);
    assert!(served.ca_bundle.ends_with(&due.ca_bundle), "the old CA stays trusted during the rotation");
    assert_eq!(trusted_then, [json!(b64(&served.ca_bundle)), json!(b64(&served.ca_bundle))]);
    let secret = fake.get(SECRETS, "routeguard-tls").expect("secret");
    assert_eq!(secret["data"]["tls.crt"], b64(&served.cert), "the Secret's certificate");
    task.abort();
}

#[tokio::test]
async fn a_reset_ca_bundle_is_repatched_after_a_watch_event() {
    let fake = Fake::start().await;
    // Polling every hour: only the watch can notice anything during this test.
    let manager = tls_checking_every(&fake, Duration::from_secs(3600));
    let bundle = manager.ensure().await.expect("bundle");
    put_configs(&fake, None);
    fake.put(MUTATING, config("MutatingWebhookConfiguration", "someone-else", None));
    let (tx, _rx) = tokio::sync::watch::channel(bundle.clone());
    let task = tokio::spawn(manager.run(bundle.clone(), tx));
    let ca = json!(b64(&bundle.ca_bundle));
    assert!(fake.eventually(WAIT, || trusted(&fake) == [ca.clone(), ca.clone()]).await, "patched at start");

    // One watch per configuration, for its name only.
    let watch =
        |collection: &str| fake.requests().into_iter().find(|r| r.path == collection && r.query.contains("watch=true"));
    assert!(fake.eventually(WAIT, || watch(MUTATING).is_some() && watch(VALIDATING).is_some()).await);
    for collection in [MUTATING, VALIDATING] {
        let watch = watch(collection).unwrap_or_else(|| panic!("no watch of {collection}"));
        assert!(watch.query_pairs().contains(&"fieldSelector=metadata.name%3Drouteguard".to_string()), "{watch:?}");
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    fake.clear_requests();

    // `helm upgrade` puts the chart's empty caBundle back.
    fake.put(MUTATING, config("MutatingWebhookConfiguration", "routeguard", None));
    assert!(fake.eventually(WAIT, || trusted(&fake)[0] == ca).await, "re-patched after the watch event");
    let writes = fake.writes();
    assert_eq!(writes.len(), 1, "{writes:#?}");
    assert_eq!(writes[0].method, "PATCH");
    assert_eq!(writes[0].path, format!("{MUTATING}/routeguard"));
    assert_eq!(
        writes[0].body,
        json!([{"op": "test", "path": "/webhooks/0/name", "value": "hook.routeguard.io"},
               {"op": "add", "path": "/webhooks/0/clientConfig/caBundle", "value": ca}])
    );

    // Someone else's configuration is neither watched nor patched.
    fake.clear_requests();
    fake.put(MUTATING, config("MutatingWebhookConfiguration", "someone-else", Some("other")));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(fake.writes().is_empty(), "{:#?}", fake.writes());
    assert_eq!(
        fake.get(MUTATING, "someone-else").expect("stored")["webhooks"][0]["clientConfig"]["caBundle"],
        b64("other")
    );
    task.abort();
}
