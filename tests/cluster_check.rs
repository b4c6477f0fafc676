//! `routeguard check --cluster`, run as a real process against the fake API
//! server through a kubeconfig: the cluster read once (in pages), files
//! judged on top of it as the creates and updates they are, `--context`,
//! `--namespace` as a scope, RBAC limits and an unreachable cluster.

mod cluster_fake;

use std::path::Path;
use std::process::Output;

use axum::http::Method;
use cluster_fake::{Fake, Override, deployment, deployments, rules, service, services, virtual_services};
use serde_json::{Value, json};

fn destination_rule(name: &str, host: &str, subsets: &[&str]) -> Value {
    let subsets: Vec<Value> = subsets.iter().map(|s| json!({"name": s, "labels": {"version": s}})).collect();
    json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": {"name": name},
           "spec": {"host": host, "subsets": subsets}})
}

fn virtual_service(name: &str, host: &str, routes: &[(&str, i64)]) -> Value {
    let route: Vec<Value> = routes
        .iter()
        .map(|(subset, weight)| json!({"destination": {"host": host, "subset": subset}, "weight": weight}))
        .collect();
    json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": name},
           "spec": {"hosts": [host], "http": [{"route": route}]}})
}

/// A cluster with a healthy canary of reviews in shop, and one route in web
/// that is already broken (subset v9 does not exist).
async fn cluster() -> Fake {
    let fake = Fake::start().await;
    fake.serve_all();
    fake.put(&services("shop"), service("reviews", "shop", "reviews"));
    fake.put(&deployments("shop"), deployment("reviews-v1", "shop", "reviews", "v1"));
    fake.put(&deployments("shop"), deployment("reviews-v2", "shop", "reviews", "v2"));
    fake.put(&rules("shop"), destination_rule("reviews", "reviews", &["v1", "v2"]));
    fake.put(&virtual_services("shop"), virtual_service("reviews", "reviews", &[("v1", 80), ("v2", 20)]));
    fake.put(&services("web"), service("ratings", "web", "ratings"));
    fake.put(&deployments("web"), deployment("ratings-v1", "web", "ratings", "v1"));
    fake.put(&rules("web"), destination_rule("ratings", "ratings", &["v1"]));
    fake.put(&virtual_services("web"), virtual_service("ratings", "ratings", &[("v9", 100)]));
    fake
}

/// A kubeconfig whose current context points at nothing; `fake` points at the fake.
fn kubeconfig(dir: &Path, fake: &Fake) -> std::path::PathBuf {
    let text = format!(
        "apiVersion: v1\nkind: Config\ncurrent-context: dead\n\
         clusters:\n- name: dead\n  cluster: {{server: 'http://127.0.0.1:9'}}\n\
         - name: fake\n  cluster: {{server: '{}'}}\n\
         contexts:\n- name: dead\n  context: {{cluster: dead, user: nobody}}\n\
         - name: fake\n  context: {{cluster: fake, user: nobody}}\n\
         users:\n- name: nobody\n  user: {{}}\n",
        fake.url
    );
    let path = dir.join("kubeconfig");
    std::fs::write(&path, text).expect("kubeconfig");
    path
}

/// Runs `routeguard <args>` in `dir` with that kubeconfig, off the runtime that serves the fake.
async fn run(dir: &Path, kubeconfig: &Path, args: &[&str]) -> Output {
    let (dir, kubeconfig) = (dir.to_path_buf(), kubeconfig.to_path_buf());
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        std::process::Command::new(env!("CARGO_BIN_EXE_routeguard"))
            .args(&args)
            .current_dir(&dir)
            .env("KUBECONFIG", &kubeconfig)
            .env_remove("ROUTEGUARD_NAMESPACE")
            .env_remove("ROUTEGUARD_CONTEXT")
            .output()
            .expect("run routeguard")
    })
    .await
    .expect("join")
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn lines_with<'a>(text: &'a str, needle: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.contains(needle)).collect()
}

#[tokio::test]
async fn without_files_it_audits_the_whole_cluster_or_one_namespace() {
    let fake = cluster().await;
    let dir = tempfile::tempdir().expect("dir");
    let config = kubeconfig(dir.path(), &fake);

    let out = run(dir.path(), &config, &["check", "--cluster", "--context", "fake"]).await;
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}{}", stderr(&out));
    let broken = lines_with(&text, "RG103");
    assert_eq!(broken.len(), 1, "{text}");
    assert!(
        broken[0]
            .starts_with("error RG103 VirtualService web/ratings (cluster) spec.http[0].route[0].destination.subset: "),
        "{text}"
    );
    assert!(text.ends_with("errors, 0 warnings, 0 infos\n"), "{text}");
    // 2 Services, 3 Deployments, 2 DestinationRules, 2 VirtualServices.
    assert!(text.contains("9 objects checked: 1 errors"), "{text}");

    // Given on the command line, --namespace is the scope: shop is clean.
    let out = run(dir.path(), &config, &["check", "--cluster", "--context", "fake", "-n", "shop"]).await;
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("objects checked: 0 errors, 0 warnings, 0 infos"), "{}", stdout(&out));

    // The same findings as JSON, with where each comes from.
    let out = run(dir.path(), &config, &["check", "--cluster", "--context", "fake", "-o", "json"]).await;
    let findings: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(findings[0]["code"], "RG103");
    assert_eq!(findings[0]["origin"], "cluster");
    assert_eq!(findings[0]["file"], Value::Null);
}

#[tokio::test]
async fn files_are_judged_as_the_changes_they_would_make() {
    let fake = cluster().await;
    let dir = tempfile::tempdir().expect("dir");
    let config = kubeconfig(dir.path(), &fake);

    // Dropping v2 from the DestinationRule: an update that removes a subset
    // the live route sends 20% to (RG201 at the file's line), and the live
    // route now points at a subset that is gone (RG103, on the cluster object).
    let rule = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: reviews\n  namespace: shop\n\
                spec:\n  host: reviews\n  subsets:\n  - name: v1\n    labels: {version: v1}\n";
    std::fs::write(dir.path().join("rule.yaml"), rule).expect("write");
    let out = run(dir.path(), &config, &["check", "--cluster", "--context", "fake", "rule.yaml"]).await;
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}{}", stderr(&out));
    let removal = lines_with(&text, "RG201");
    assert_eq!(removal.len(), 1, "{text}");
    assert!(removal[0].starts_with("error RG201 DestinationRule shop/reviews (rule.yaml:"), "{text}");
    let dangling = lines_with(&text, "RG103");
    assert_eq!(dangling.len(), 1, "the web route's old finding is not shown again: {text}");
    assert!(dangling[0].starts_with("error RG103 VirtualService shop/reviews (cluster) "), "{text}");
    assert!(text.contains("1 finding(s) the cluster already has are not shown"), "{text}");

    // A new route to subsets that exist: nothing to say, whatever web has.
    let route = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: reviews-mobile\n  namespace: shop\n\
                 spec:\n  hosts: [reviews-mobile.example.com]\n  gateways: [mesh]\n  http:\n  - route:\n    \
                 - destination: {host: reviews, subset: v2}\n";
    std::fs::write(dir.path().join("route.yaml"), route).expect("write");
    let out = run(dir.path(), &config, &["check", "--cluster", "--context", "fake", "route.yaml"]).await;
    assert_eq!(out.status.code(), Some(0), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).contains("0 errors"), "{}", stdout(&out));

    // The same route to a subset the cluster does not have: refused at its line.
    std::fs::write(dir.path().join("route.yaml"), route.replace("subset: v2", "subset: v3")).expect("write");
    let out = run(dir.path(), &config, &["check", "--cluster", "--context", "fake", "route.yaml"]).await;
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert!(stdout(&out).contains("error RG103 VirtualService shop/reviews-mobile (route.yaml:"), "{}", stdout(&out));
}

#[tokio::test]
async fn a_big_cluster_is_read_in_pages() {
    let fake = cluster().await;
    for i in 0..1_100 {
        fake.put(&services("bulk"), service(&format!("s{i}"), "bulk", &format!("s{i}")));
    }
    fake.clear_requests();
    let dir = tempfile::tempdir().expect("dir");
    let config = kubeconfig(dir.path(), &fake);
    let out = run(dir.path(), &config, &["check", "--cluster", "--context", "fake"]).await;
    assert!(stdout(&out).contains("1109 objects checked"), "{}{}", stdout(&out), stderr(&out));
    let pages: Vec<String> =
        fake.requests().into_iter().filter(|r| r.path == "/api/v1/services").map(|r| r.query).collect();
    assert_eq!(pages.len(), 3, "{pages:?}");
    assert!(pages.iter().all(|q| q.contains("limit=500")), "{pages:?}");
    assert!(pages[1].contains("continue=500") && pages[2].contains("continue=1000"), "{pages:?}");
}

#[tokio::test]
async fn what_rbac_forbids_is_said_or_refused() {
    let fake = cluster().await;
    fake.add_override(Override::status(Method::GET, "/apis/networking.istio.io/v1/virtualservices", 403, "Forbidden"));
    let dir = tempfile::tempdir().expect("dir");
    let config = kubeconfig(dir.path(), &fake);

    // Judging a cluster without its routes would pass what is broken: exit 2.
    let out = run(dir.path(), &config, &["check", "--cluster", "--context", "fake"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    assert!(stderr(&out).contains("list virtualservices: the API server answered 403"), "{}", stderr(&out));
    assert_eq!(stdout(&out), "");

    // With a namespace, its own routes are read, and the output says what was not.
    let out = run(dir.path(), &config, &["check", "--cluster", "--context", "fake", "-n", "web"]).await;
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(1), "{text}{}", stderr(&out));
    assert!(text.contains("warning cannot list virtualservices in every namespace (forbidden)"), "{text}");
    assert!(text.contains("error RG103 VirtualService web/ratings (cluster)"), "{text}");
}

#[tokio::test]
async fn an_unreachable_cluster_is_a_usage_error() {
    let fake = cluster().await;
    let dir = tempfile::tempdir().expect("dir");
    let config = kubeconfig(dir.path(), &fake);
    // The current context points at a closed port.
    let out = run(dir.path(), &config, &["check", "--cluster"]).await;
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let said = stderr(&out);
    assert!(said.starts_with("routeguard: reading the cluster at http://127.0.0.1:9/: "), "{said}");
    assert!(said.contains("Connect"), "{said}");
    // An unknown context is named.
    let out = run(dir.path(), &config, &["check", "--cluster", "--context", "nope"]).await;
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("nope"), "{}", stderr(&out));
    // Without --cluster, files stay required.
    let out = run(dir.path(), &config, &["check"]).await;
    assert_eq!(out.status.code(), Some(2));
}
