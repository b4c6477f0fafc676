//! The server in live cluster mode against a fake API server: the certificate
//! from the TLS Secret, `/readyz` until the first sync, a refusal turned
//! around by a re-read over real HTTPS, live metrics, the Lease released on
//! shutdown.

mod cluster_fake;
#[path = "server_support/openmetrics.rs"]
mod openmetrics;

use std::sync::Arc;
use std::time::Duration;

use axum::http::Method;
use cluster_fake::{Fake, Override, rules, service, services};
use routeguard::admission::Admission;
use routeguard::cluster::audit::AuditSettings;
use routeguard::cluster::live::{Live, LiveSettings};
use routeguard::cluster::selftls::{SelfTls, SelfTlsSettings};
use routeguard::policy::Engine;
use routeguard::server::tls::KeyPairFiles;
use routeguard::server::{Bound, ClusterParts, Settings, serve_with};
use serde_json::{Value, json};

const WAIT: Duration = Duration::from_secs(5);

fn rule(subsets: &[&str]) -> Value {
    let subsets: Vec<_> = subsets.iter().map(|s| json!({"name": s, "labels": {"version": s}})).collect();
    json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": {"name": "reviews"},
           "spec": {"host": "reviews", "subsets": subsets}})
}

fn review(subset: &str) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {
            "uid": "u-7",
            "kind": {"group": "networking.istio.io", "version": "v1", "kind": "VirtualService"},
            "resource": {"group": "networking.istio.io", "version": "v1", "resource": "virtualservices"},
            "name": format!("reviews-{subset}"), "namespace": "shop", "operation": "CREATE", "userInfo": {"username": "dev"},
            // One object per subset: the re-read is rate-limited per object.
            "object": {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
                       "metadata": {"name": format!("reviews-{subset}"), "namespace": "shop"},
                       "spec": {"hosts": ["reviews"], "http": [{"route": [{"destination": {"host": "reviews", "subset": subset}}]}]}}
        }
    })
}

fn https_client(ca: &str, addr: std::net::SocketAddr) -> reqwest::Client {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca.as_bytes()) {
        roots.add(cert.expect("ca")).expect("root");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .resolve("routeguard.rg.svc", addr)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

#[tokio::test]
async fn serves_live_mode_end_to_end() {
    routeguard::server::tls::install_default_provider();
    let fake = Fake::start().await;
    fake.serve_all();
    fake.put(&services("shop"), service("reviews", "shop", "reviews"));
    fake.put(&rules("shop"), rule(&["v1"]));
    // VirtualServices cannot be listed yet (RBAC being fixed): not ready.
    fake.add_override(Override::status(Method::GET, "/apis/networking.istio.io/v1/virtualservices", 403, "Forbidden"));

    let tls = SelfTls::new(
        fake.client(),
        SelfTlsSettings {
            namespace: "rg".into(),
            secret: "routeguard-tls".into(),
            service: "routeguard".into(),
            mutating_webhook: "routeguard".into(),
            validating_webhook: "routeguard".into(),
            check_every: Duration::from_millis(200),
        },
    );
    let bundle = tls.ensure().await.expect("bundle");
    let (updates, certificate) = tokio::sync::watch::channel(bundle.clone());
    let renewals = tokio::spawn(tls.run(bundle.clone(), updates));

    let mut live = LiveSettings::new("routeguard", "rg");
    live.identity = "me".into();
    live.audit = Some(AuditSettings::default());
    let engine = Engine::default();
    let cluster = Arc::new(Live::start(fake.client(), Arc::new(engine.clone()), live));
    let settings = Settings {
        admission: Admission::new(engine, cluster.source()),
        addr: "127.0.0.1:0".parse().expect("addr"),
        admin_addr: "127.0.0.1:0".parse().expect("addr"),
        tls: KeyPairFiles {
            cert: "secret rg/routeguard-tls tls.crt".into(),
            key: "secret rg/routeguard-tls tls.key".into(),
        },
        client_ca: None,
        reload_interval: Duration::from_secs(10),
        shutdown_delay: Duration::from_millis(100),
        drain_timeout: Duration::from_secs(2),
    };
    let parts = ClusterParts { cluster: Some(cluster.clone()), certificate: Some(certificate), tasks: Vec::new() };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (bound_tx, bound_rx) = tokio::sync::oneshot::channel::<Bound>();
    let server = tokio::spawn(serve_with(
        settings,
        parts,
        async {
            let _ = stopped.await;
        },
        move |bound| {
            let _ = bound_tx.send(bound);
        },
    ));
    let bound = bound_rx.await.expect("bound");
    let admin = format!("http://{}", bound.admin_addr);

    // One supervisor watches live mode's tasks and the server's.
    let running = cluster.supervisor().running();
    for task in ["index writer", "watch Deployment", "watch HTTPRoute", "leader election", "generator controller"] {
        assert!(running.iter().any(|r| r == task), "{task} not supervised: {running:?}");
    }
    assert!(running.iter().any(|r| r == "certificate reload"), "{running:?}");

    let readyz = || async { reqwest::get(format!("{admin}/readyz")).await.expect("readyz").status().as_u16() };
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(readyz().await, 503, "not synced");
    fake.clear_overrides();
    let mut ready = false;
    for _ in 0..100 {
        if readyz().await == 200 {
            ready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready, "ready after the first sync");

    // HTTPS with the CA from the Secret; the DestinationRule's v2 is not in the index yet.
    fake.put_silent(&rules("shop"), rule(&["v1", "v2"]));
    let client = https_client(&bundle.ca_bundle, bound.addr);
    let url = format!("https://routeguard.rg.svc:{}/validate", bound.addr.port());
    let post = |subset: &'static str| {
        let request = client.post(&url).header("content-type", "application/json").body(review(subset).to_string());
        async move {
            let bytes = request.send().await.expect("response").bytes().await.expect("body");
            serde_json::from_slice::<Value>(&bytes).expect("json")
        }
    };
    let body = post("v2").await;
    assert_eq!(body["response"]["allowed"], true, "{body}");
    let body = post("v7").await;
    assert_eq!(body["response"]["allowed"], false, "{body}");

    // The audit found the rule's subset that selects no Deployment (RG203): its gauge has a series.
    assert!(fake.eventually(WAIT, || cluster.status().audits() >= 1).await, "audited");
    // A family with no series yet is left out of the exposition: one 404 gives the rejections one.
    assert_eq!(reqwest::get(format!("{admin}/nowhere")).await.expect("404").status().as_u16(), 404);
    let response = reqwest::get(format!("{admin}/metrics")).await.expect("metrics");
    let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_string);
    assert_eq!(content_type.as_deref(), Some("application/openmetrics-text; version=1.0.0; charset=utf-8"));
    let metrics = response.text().await.expect("text");
    // The server's registry and live mode's in one exposition, with one # EOF.
    let families = openmetrics::parse(&metrics);
    openmetrics::assert_families(&families, &openmetrics::SERVER_FAMILIES);
    openmetrics::assert_families(&families, &openmetrics::CLUSTER_FAMILIES);
    let value = |series: &str| openmetrics::value(&families, series);
    assert_eq!(value("routeguard_cluster_synced"), Some(1.0), "{metrics}");
    assert_eq!(value("routeguard_cluster_rereads_total"), Some(2.0), "{metrics}");
    assert_eq!(value("routeguard_ready"), Some(1.0), "{metrics}");
    assert_eq!(value("routeguard_http_rejected_total{status=\"404\",reason=\"NotFound\"}"), Some(1.0));
    assert_eq!(
        value("routeguard_cluster_kind_state{kind=\"VirtualService\",state=\"synced\"}"),
        Some(1.0),
        "{metrics}"
    );

    // The leader releases the Lease when shutdown starts.
    assert!(fake.eventually(WAIT, || cluster.status().is_leader()).await);
    let _ = stop.send(());
    let served = tokio::time::timeout(Duration::from_secs(10), server).await;
    assert!(matches!(served, Ok(Ok(Ok(())))), "{served:?}");
    let lease = fake.get("/apis/coordination.k8s.io/v1/namespaces/rg/leases", "routeguard").expect("lease");
    assert!(lease["spec"]["holderIdentity"].is_null(), "{lease}");
    renewals.abort();
}
