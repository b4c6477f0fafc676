//! The real server over TLS: server-name verification, client certificates,
//! plain HTTP on the TLS port, and certificate reload under a live
//! keep-alive connection pool (including a Secret-style `..data` symlink swap).

#[path = "server_support/common.rs"]
mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

fn denied_review() -> Value {
    review("CREATE", Some(&virtual_service(&[("v1", 50), ("v9", 50)])), None)
}

#[tokio::test]
async fn serves_over_tls_to_clients_that_verify_the_server_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = pki("test CA");
    let running = start(settings(write_pair(dir.path(), &pki.serving))).await;
    let client = client(running.bound.addr, client_config(&[pki.ca.cert_pem()], None));
    for host in [SERVICE_NAME, "localhost"] {
        let (status, body) = post(&client, &running.url(host, "/validate"), &denied_review()).await.expect(host);
        assert_eq!(status, 200, "{host}");
        assert_eq!(body["response"]["allowed"], false, "{host}");
        assert_eq!(body["response"]["status"]["code"], 403);
    }
    // A name the certificate does not carry fails verification.
    let other = reqwest::Client::builder()
        .use_preconfigured_tls(client_config(&[pki.ca.cert_pem()], None))
        .resolve("routeguard.other.svc", running.bound.addr)
        .build()
        .expect("client");
    let url = format!("https://routeguard.other.svc:{}/validate", running.bound.addr.port());
    assert!(post(&other, &url, &denied_review()).await.is_err());
    // A client that does not trust the CA fails too.
    let another = common::pki("another CA");
    let stranger = common::client(running.bound.addr, client_config(&[another.ca.cert_pem()], None));
    assert!(post(&stranger, &running.url("localhost", "/validate"), &denied_review()).await.is_err());
    // The expiry metric is the certificate's notAfter (about a day from now).
    let not_after = metric(&running, "routeguard_tls_cert_not_after_seconds").await.expect("metric");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_secs_f64();
    assert!((not_after - now - 86_400.0).abs() < 120.0, "{not_after} vs {now}");
    running.shutdown().await.expect("clean stop");
}

#[tokio::test]
async fn client_certificates_are_required_when_a_client_ca_is_given() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = pki("server CA");
    let clients_ca = routeguard::server::certs::Authority::new("client CA").expect("ca");
    let ca_file = dir.path().join("client-ca.crt");
    std::fs::write(&ca_file, clients_ca.cert_pem()).expect("write");
    let mut settings = settings(write_pair(dir.path(), &pki.serving));
    settings.client_ca = Some(ca_file);
    let running = start(settings).await;
    let url = running.url(SERVICE_NAME, "/validate");

    let anonymous = client(running.bound.addr, client_config(&[pki.ca.cert_pem()], None));
    assert!(post(&anonymous, &url, &denied_review()).await.is_err(), "no client certificate: refused");

    let rogue_id = pki.ca.issue_client("kube-apiserver").expect("cert");
    let rogue = client(running.bound.addr, client_config(&[pki.ca.cert_pem()], Some(&rogue_id)));
    assert!(post(&rogue, &url, &denied_review()).await.is_err(), "a certificate from another CA: refused");

    let id = clients_ca.issue_client("kube-apiserver").expect("cert");
    let apiserver = client(running.bound.addr, client_config(&[pki.ca.cert_pem()], Some(&id)));
    let (status, body) = post(&apiserver, &url, &denied_review()).await.expect("accepted");
    assert_eq!((status, &body["response"]["allowed"]), (200, &json!(false)));
    running.shutdown().await.expect("clean stop");
}

#[tokio::test]
async fn plain_http_on_the_tls_port_gets_a_clear_400_and_the_server_keeps_serving() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = pki("test CA");
    let running = start(settings(write_pair(dir.path(), &pki.serving))).await;
    let mut stream = tokio::net::TcpStream::connect(running.bound.addr).await.expect("connect");
    let body = body(&denied_review());
    let head = format!(
        "POST /validate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.expect("write");
    stream.write_all(&body).await.expect("write");
    let mut answer = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut answer))
        .await
        .expect("in time")
        .expect("read");
    assert_eq!(
        answer,
        format!(
            "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{}",
            routeguard::server::accept::PLAIN_HTTP_BODY.len(),
            routeguard::server::accept::PLAIN_HTTP_BODY
        )
    );
    // Garbage that is neither TLS nor HTTP is dropped.
    let mut junk = tokio::net::TcpStream::connect(running.bound.addr).await.expect("connect");
    junk.write_all(&[0x00, 0x01, 0x02]).await.expect("write");
    let mut rest = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), junk.read_to_end(&mut rest)).await.expect("closed in time");
    assert!(rest.is_empty());

    let client = client(running.bound.addr, client_config(&[pki.ca.cert_pem()], None));
    let (status, _) = post(&client, &running.url("localhost", "/validate"), &denied_review()).await.expect("served");
    assert_eq!(status, 200);
    assert_eq!(metric(&running, "routeguard_plain_http_rejected_total").await, Some(1.0));
    running.shutdown().await.expect("clean stop");
}

/// A Secret volume: `tls.crt -> ..data/tls.crt`, `..data -> ..<timestamp>`.
fn secret_volume(dir: &Path, version: &str, issued: &routeguard::server::certs::Issued) {
    let data = dir.join(version);
    std::fs::create_dir_all(&data).expect("mkdir");
    std::fs::write(data.join("tls.crt"), &issued.cert_pem).expect("write");
    std::fs::write(data.join("tls.key"), &issued.key_pem).expect("write");
    // Swap `..data` atomically, the way the kubelet does.
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(version, &tmp).expect("symlink");
    std::fs::rename(&tmp, dir.join("..data")).expect("swap");
    for file in ["tls.crt", "tls.key"] {
        if std::fs::symlink_metadata(dir.join(file)).is_err() {
            std::os::unix::fs::symlink(format!("..data/{file}"), dir.join(file)).expect("symlink");
        }
    }
}

async fn wait_for_reloads(running: &Running, count: f64) {
    for _ in 0..200 {
        if metric(running, "routeguard_tls_cert_reloads_total").await == Some(count) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the certificate was not reloaded {count} times");
}

#[tokio::test]
async fn certificates_reload_under_a_live_connection_pool() {
    let dir = tempfile::tempdir().expect("tempdir");
    let old = pki("old CA");
    let new = pki("new CA");
    secret_volume(dir.path(), "..2026_01_01_00_00_00.1", &old.serving);
    let files =
        routeguard::server::tls::KeyPairFiles { cert: dir.path().join("tls.crt"), key: dir.path().join("tls.key") };
    let running = start(settings(files)).await;
    let addr = running.bound.addr;
    let url = running.url(SERVICE_NAME, "/validate");

    // A keep-alive pool trusting both CAs, busy for the whole test.
    let pool = client(addr, client_config(&[old.ca.cert_pem(), new.ca.cert_pem()], None));
    let stop = Arc::new(AtomicBool::new(false));
    let (sent, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (pool, url, stop, sent, failed) = (pool.clone(), url.clone(), stop.clone(), sent.clone(), failed.clone());
        workers.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match post(&pool, &url, &denied_review()).await {
                    Ok((200, body)) if body["response"]["allowed"] == json!(false) => {}
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                }
                sent.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(200)).await;

    // 1. A Secret update: the `..data` symlink swaps to a new folder.
    secret_volume(dir.path(), "..2026_02_01_00_00_00.2", &new.serving);
    wait_for_reloads(&running, 1.0).await;
    let only_new = client(addr, client_config(&[new.ca.cert_pem()], None));
    assert!(post(&only_new, &url, &denied_review()).await.is_ok(), "a new connection sees the new certificate");
    let only_old = client(addr, client_config(&[old.ca.cert_pem()], None));
    assert!(post(&only_old, &url, &denied_review()).await.is_err(), "the old certificate is gone");

    // 2. A half-written pair (certificate without its key) is refused; the current one stays.
    let third = pki("third CA");
    std::fs::write(dir.path().join("..2026_02_01_00_00_00.2/tls.crt"), &third.serving.cert_pem).expect("write");
    // `fs::write` truncates before it writes: a poll may also catch the empty
    // file, a second refused state. One refusal or two, never a reload.
    let errors = || async { metric(&running, "routeguard_tls_cert_reload_errors_total").await.unwrap_or(0.0) };
    for _ in 0..200 {
        if errors().await >= 1.0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let refused = errors().await;
    assert!((1.0..=2.0).contains(&refused), "the half-written pair is refused: {refused} reload errors");
    assert_eq!(metric(&running, "routeguard_tls_cert_reloads_total").await, Some(1.0), "and not loaded");
    let fresh = client(addr, client_config(&[new.ca.cert_pem()], None));
    assert!(post(&fresh, &url, &denied_review()).await.is_ok(), "still the new certificate");

    // 3. The key follows: a plain file rewrite reloads too.
    std::fs::write(dir.path().join("..2026_02_01_00_00_00.2/tls.key"), &third.serving.key_pem).expect("write");
    wait_for_reloads(&running, 2.0).await;
    let only_third = client(addr, client_config(&[third.ca.cert_pem()], None));
    assert!(post(&only_third, &url, &denied_review()).await.is_ok(), "the third certificate is served");

    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, Ordering::Relaxed);
    for worker in workers {
        worker.await.expect("worker");
    }
    assert!(sent.load(Ordering::Relaxed) > 20, "the pool was busy: {}", sent.load(Ordering::Relaxed));
    assert_eq!(failed.load(Ordering::Relaxed), 0, "no request failed during the reloads");
    running.shutdown().await.expect("clean stop");
}
