//! The first look at a connection on the TLS port: plain HTTP gets a clear
//! 400 instead of a TLS alert it cannot read.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum_server::accept::Accept;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use super::metrics::Metrics;

/// The first byte of every TLS connection (a handshake record).
const TLS_HANDSHAKE: u8 = 0x16;

/// How long a new connection may stay silent before it is dropped.
const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(10);

/// Sets `TCP_NODELAY`, then refuses connections that do not start a TLS handshake.
#[derive(Debug, Clone)]
pub struct TlsOnly {
    metrics: Arc<Metrics>,
}

impl TlsOnly {
    /// An acceptor that counts refused plain-HTTP requests in `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> TlsOnly {
        TlsOnly { metrics }
    }
}

/// The body sent to a plain-HTTP client: a Kubernetes `Status`, like every other error.
pub const PLAIN_HTTP_BODY: &str = concat!(
    r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","#,
    r#""message":"client sent an HTTP request to an HTTPS server","reason":"BadRequest","code":400}"#
);

impl<S: Send + 'static> Accept<TcpStream, S> for TlsOnly {
    type Stream = TcpStream;
    type Service = S;
    type Future = Pin<Box<dyn Future<Output = io::Result<(TcpStream, S)>> + Send>>;

    fn accept(&self, stream: TcpStream, service: S) -> Self::Future {
        let metrics = self.metrics.clone();
        Box::pin(async move {
            let _ = stream.set_nodelay(true);
            let mut first = [0u8; 1];
            let peeked = tokio::time::timeout(FIRST_BYTE_TIMEOUT, stream.peek(&mut first))
                .await
                .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no TLS handshake in time"))??;
            if peeked == 0 || first[0] == TLS_HANDSHAKE {
                return Ok((stream, service));
            }
            if first[0].is_ascii_uppercase() {
                metrics.plain_http();
                refuse(stream).await;
                return Err(io::Error::new(io::ErrorKind::InvalidData, "plain HTTP request on the TLS port"));
            }
            Err(io::Error::new(io::ErrorKind::InvalidData, "not a TLS handshake"))
        })
    }
}

async fn refuse(mut stream: TcpStream) {
    let response = format!(
        "HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{PLAIN_HTTP_BODY}",
        PLAIN_HTTP_BODY.len()
    );
    let mut buf = [0u8; 4096];
    // Read what the client sent, so that closing does not reset the
    // connection before it has read the answer.
    let _ = tokio::time::timeout(Duration::from_millis(100), stream.read(&mut buf)).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        stream.write_all(response.as_bytes()).await?;
        stream.shutdown().await?;
        while stream.read(&mut buf).await? > 0 {}
        Ok::<(), io::Error>(())
    })
    .await;
}
