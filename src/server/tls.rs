//! The TLS side: a rustls server configuration (ring provider, TLS 1.2 and
//! 1.3, optional client certificates) whose certificate can be swapped while
//! connections come and go.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{RootCertStore, ServerConfig};

use super::certs::{self, CertError};

/// Why the TLS configuration could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(transparent)]
    Cert(#[from] CertError),
    #[error("{path}: {source}")]
    Rustls {
        path: String,
        #[source]
        source: rustls::Error,
    },
    #[error("{path}: the certificate is not a readable X.509 certificate")]
    Unreadable { path: String },
    #[error("client CA {path}: {message}")]
    ClientCa { path: String, message: String },
    #[error("TLS configuration: {0}")]
    Config(#[from] rustls::Error),
}

/// The ring provider: the only one routeguard builds with.
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Makes ring the process-wide default provider (harmless when already done).
pub fn install_default_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The serving certificate and key files.
#[derive(Debug, Clone)]
pub struct KeyPairFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A loaded certificate and what it was loaded from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub key: Arc<CertifiedKey>,
    /// `notAfter` of the leaf, seconds since the Unix epoch.
    pub not_after: i64,
    /// The file contents, to tell when they change.
    pub cert_pem: Vec<u8>,
    pub key_pem: Vec<u8>,
}

/// Parses a certificate chain and key from PEM contents; the key must match the leaf.
pub fn load_pem(files: &KeyPairFiles, cert_pem: Vec<u8>, key_pem: Vec<u8>) -> Result<Loaded, TlsError> {
    let cert_path = files.cert.display().to_string();
    let chain = certs::parse_certs(&cert_path, &cert_pem)?;
    let not_after = certs::not_after(&chain[0]).ok_or_else(|| TlsError::Unreadable { path: cert_path.clone() })?;
    let key = certs::parse_key(&files.key.display().to_string(), &key_pem)?;
    let certified = CertifiedKey::from_der(chain, key, &provider())
        .map_err(|source| TlsError::Rustls { path: cert_path, source })?;
    Ok(Loaded { key: Arc::new(certified), not_after, cert_pem, key_pem })
}

/// Reads and parses the certificate and key files.
pub fn load_files(files: &KeyPairFiles) -> Result<Loaded, TlsError> {
    load_pem(files, certs::read(&files.cert)?, certs::read(&files.key)?)
}

/// Hands every handshake the current certificate; [`Reloadable::store`] swaps it.
#[derive(Debug)]
pub struct Reloadable {
    current: ArcSwap<CertifiedKey>,
}

impl Reloadable {
    /// A resolver serving `key`.
    pub fn new(key: Arc<CertifiedKey>) -> Reloadable {
        Reloadable { current: ArcSwap::new(key) }
    }

    /// Serves `key` to every handshake from now on; live connections keep theirs.
    pub fn store(&self, key: Arc<CertifiedKey>) {
        self.current.store(key);
    }
}

impl ResolvesServerCert for Reloadable {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// The server configuration: TLS 1.3 and 1.2, h2 and http/1.1, the reloadable
/// certificate, and client certificates required when `client_ca` is given.
pub fn server_config(resolver: Arc<Reloadable>, client_ca: Option<&Path>) -> Result<ServerConfig, TlsError> {
    let provider = provider();
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
    let builder = match client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let roots = client_roots(path)?;
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::ClientCa { path: path.display().to_string(), message: e.to_string() })?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let mut config = builder.with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

fn client_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let name = path.display().to_string();
    let mut roots = RootCertStore::empty();
    for cert in certs::parse_certs(&name, &certs::read(path)?)? {
        roots.add(cert).map_err(|e| TlsError::ClientCa { path: name.clone(), message: e.to_string() })?;
    }
    Ok(roots)
}
