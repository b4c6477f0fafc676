//! Shutdown: `/readyz` turns 503 at once, the server keeps serving for the
//! delay, in-flight requests finish, `serve` returns cleanly; and the real
//! binary does the same on SIGTERM and exits 0.

#[path = "server_support/common.rs"]
mod common;

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use rustls_pki_types::ServerName;
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

fn denied_review() -> Value {
    review("CREATE", Some(&virtual_service(&[("v1", 50), ("v9", 50)])), None)
}

async fn readyz(url: &str) -> u16 {
    // reqwest's default client needs a process-wide TLS provider, even for plain HTTP.
    routeguard::server::tls::install_default_provider();
    reqwest::get(url).await.map(|r| r.status().as_u16()).unwrap_or(0)
}

#[tokio::test]
async fn shutdown_turns_readyz_503_keeps_serving_then_drains_in_flight_requests() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = pki("test CA");
    let mut settings = settings(write_pair(dir.path(), &pki.serving));
    settings.shutdown_delay = Duration::from_millis(1500);
    let running = start(settings).await;
    let addr = running.bound.addr;
    assert_eq!(readyz(&running.admin("/readyz")).await, 200);

    // A request in flight: headers and half the body sent, on its own TLS connection.
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client_config(&[pki.ca.cert_pem()], None)));
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut tls = connector.connect(ServerName::try_from("localhost").expect("name"), tcp).await.expect("handshake");
    let body = body(&denied_review());
    let head = format!(
        "POST /validate HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).await.expect("write");
    tls.write_all(&body[..body.len() / 2]).await.expect("write");
    tls.flush().await.expect("flush");

    let admin = running.admin("/readyz");
    let Running { bound, stop, task } = running;
    let signalled = Instant::now();
    let _ = stop.expect("stop").send(());
    // readyz answers 503 at once...
    loop {
        if readyz(&admin).await == 503 {
            break;
        }
        assert!(signalled.elapsed() < Duration::from_millis(300), "readyz still 200 after the signal");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // ...while new requests are still served during the delay.
    let fresh = client(bound.addr, client_config(&[pki.ca.cert_pem()], None));
    let url = format!("https://localhost:{}/validate", bound.addr.port());
    let (status, _) = post(&fresh, &url, &denied_review()).await.expect("served during the delay");
    assert_eq!(status, 200);
    assert!(signalled.elapsed() < Duration::from_millis(1500), "that was during the delay");

    // Past the delay the server drains; the in-flight request still completes.
    tokio::time::sleep(Duration::from_millis(1500).saturating_sub(signalled.elapsed()) + Duration::from_millis(300))
        .await;
    assert!(!task.is_finished(), "serve waits for the in-flight request");
    tls.write_all(&body[body.len() / 2..]).await.expect("write the rest");
    tls.flush().await.expect("flush");
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tls.read_to_end(&mut answer)).await.expect("in time").expect("read");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.contains("\"allowed\":false"), "{answer}");

    let result = tokio::time::timeout(Duration::from_secs(5), task).await.expect("stops").expect("join");
    assert!(result.is_ok(), "{result:?}");
    assert!(tokio::net::TcpStream::connect(bound.addr).await.is_err(), "no longer listening");
}

/// Kills the server if the test fails before it exits by itself.
struct Reaper(Option<std::process::Child>);

impl Drop for Reaper {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

#[tokio::test]
async fn the_binary_generates_certificates_serves_and_exits_0_on_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let objects = dir.path().join("objects");
    std::fs::create_dir_all(&objects).expect("mkdir");
    for (i, object) in bookinfo().iter().enumerate() {
        std::fs::write(objects.join(format!("{i}.json")), object.raw.to_string()).expect("write");
    }
    let (port, admin_port) = (free_port(), free_port());
    let certs = dir.path().join("certs");
    let child = Command::new(env!("CARGO_BIN_EXE_routeguard"))
        .args(["serve", "--addr", &format!("127.0.0.1:{port}"), "--admin-addr", &format!("127.0.0.1:{admin_port}")])
        .arg("--cert-dir")
        .arg(&certs)
        .arg("--objects")
        .arg(&objects)
        .args(["--shutdown-delay", "1500ms", "--log-format", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let mut reaper = Reaper(Some(child));
    let child = reaper.0.as_mut().expect("child");
    let admin = format!("http://127.0.0.1:{admin_port}/readyz");
    let started = Instant::now();
    while readyz(&admin).await != 200 {
        assert!(started.elapsed() < Duration::from_secs(20), "the server did not become ready");
        assert!(child.try_wait().expect("wait").is_none(), "the server exited early");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ca = std::fs::read_to_string(certs.join("ca.crt")).expect("the CA was generated");
    let addr = format!("127.0.0.1:{port}").parse().expect("addr");
    let client = client(addr, client_config(&[&ca], None));
    let url = format!("https://localhost:{port}/validate");
    let (status, body) = post(&client, &url, &denied_review()).await.expect("served");
    assert_eq!((status, body["response"]["status"]["code"].as_u64()), (200, Some(403)));

    let kill = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(kill.success());
    let signalled = Instant::now();
    while readyz(&admin).await != 503 {
        assert!(signalled.elapsed() < Duration::from_millis(1000), "readyz did not turn 503");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (status, _) = post(&client, &url, &denied_review()).await.expect("still served during the delay");
    assert_eq!(status, 200);
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        assert!(signalled.elapsed() < Duration::from_secs(10), "the server did not exit");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit status {status}");
    let output = reaper.0.take().expect("child").wait_with_output().expect("output");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains(&format!("clients trust {}", certs.join("ca.crt").display())), "{stdout}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    let line = stderr
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l["message"] == "admission")
        .unwrap_or_else(|| panic!("no admission log line in {stderr}"));
    assert_eq!(line["uid"], UID);
    assert_eq!(line["kind"], "VirtualService");
    assert_eq!((line["namespace"].as_str(), line["name"].as_str()), (Some("default"), Some("reviews")));
    assert_eq!((line["operation"].as_str(), line["decision"].as_str()), (Some("CREATE"), Some("denied")));
    assert_eq!(line["codes"], "RG103");
    assert!(line["latency_us"].is_u64());
}
