//! Certificates: generating a CA and serving certificate (so the webhook runs
//! with no cluster), reading PEM files, and reading a certificate's expiry.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use time::OffsetDateTime;

/// Why certificates could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum CertError {
    #[error("cannot generate a certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Pem { path: String, message: String },
}

/// A PEM certificate and its PEM private key.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A certificate authority that issues serving and client certificates.
pub struct Authority {
    issuer: Issuer<'static, KeyPair>,
    cert_pem: String,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority").finish_non_exhaustive()
    }
}

impl Authority {
    /// A new self-signed CA valid for ten years.
    pub fn new(common_name: &str) -> Result<Authority, CertError> {
        let key = KeyPair::generate()?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = name(common_name);
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages =
            vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        validity(&mut params, Duration::from_secs(10 * 365 * 86_400));
        let cert = params.self_signed(&key)?;
        Ok(Authority { issuer: Issuer::new(params, key), cert_pem: cert.pem() })
    }

    /// The CA certificate (PEM), for a client's trust store or a webhook's `caBundle`.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A serving certificate for `names` (DNS names or IP addresses), valid for `valid_for`.
    pub fn issue_server(&self, names: &[String], valid_for: Duration) -> Result<Issued, CertError> {
        let mut params = CertificateParams::new(names.to_vec())?;
        params.distinguished_name = name(names.first().map_or("routeguard", String::as_str));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
        validity(&mut params, valid_for);
        self.issue(&params)
    }

    /// A client certificate for `common_name` (the API server's, say).
    pub fn issue_client(&self, common_name: &str) -> Result<Issued, CertError> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.distinguished_name = name(common_name);
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        validity(&mut params, Duration::from_secs(365 * 86_400));
        self.issue(&params)
    }

    fn issue(&self, params: &CertificateParams) -> Result<Issued, CertError> {
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued { cert_pem: cert.pem(), key_pem: key.serialize_pem() })
    }
}

fn name(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "routeguard");
    dn.push(DnType::CommonName, common_name);
    dn
}

fn validity(params: &mut CertificateParams, valid_for: Duration) {
    let now = OffsetDateTime::now_utc();
    // A little slack for clocks that are behind.
    params.not_before = now - Duration::from_secs(3600);
    params.not_after = now + valid_for;
}

/// The files [`generate_into`] wrote.
#[derive(Debug, Clone)]
pub struct Generated {
    /// The CA certificate clients trust (`ca.crt`).
    pub ca: PathBuf,
    /// The serving certificate (`tls.crt`).
    pub cert: PathBuf,
    /// The serving key (`tls.key`, mode 0600).
    pub key: PathBuf,
}

/// The SANs of a generated serving certificate: `localhost`, `127.0.0.1` and
/// the Service's names as the API server dials them.
pub fn serving_names(service: &str, namespace: &str) -> Vec<String> {
    vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        service.to_string(),
        format!("{service}.{namespace}"),
        format!("{service}.{namespace}.svc"),
    ]
}

/// Generates a CA and a one-year serving certificate for [`serving_names`]
/// into `dir` (`ca.crt`, `tls.crt`, `tls.key`).
pub fn generate_into(dir: &Path, service: &str, namespace: &str) -> Result<Generated, CertError> {
    let ca = Authority::new("routeguard webhook CA")?;
    let serving = ca.issue_server(&serving_names(service, namespace), Duration::from_secs(365 * 86_400))?;
    std::fs::create_dir_all(dir).map_err(|source| io_error(dir, source))?;
    let files = Generated { ca: dir.join("ca.crt"), cert: dir.join("tls.crt"), key: dir.join("tls.key") };
    write_atomically(&files.key, serving.key_pem.as_bytes(), true)?;
    write_atomically(&files.cert, serving.cert_pem.as_bytes(), false)?;
    write_atomically(&files.ca, ca.cert_pem().as_bytes(), false)?;
    Ok(files)
}

/// Writes a file through a temporary file and a rename, so a reader never sees half of it.
pub fn write_atomically(path: &Path, contents: &[u8], private: bool) -> Result<(), CertError> {
    let tmp = path.with_extension("tmp");
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if private {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = private;
    let write = || -> std::io::Result<()> {
        use std::io::Write as _;
        let mut file = options.open(&tmp)?;
        file.write_all(contents)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|source| io_error(path, source))
}

fn io_error(path: &Path, source: std::io::Error) -> CertError {
    CertError::Io { path: path.display().to_string(), source }
}

/// Every certificate in a PEM file's contents (`path` names it in errors).
pub fn parse_certs(path: &str, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, CertError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| CertError::Pem { path: path.to_string(), message: e.to_string() })?;
    if certs.is_empty() {
        return Err(CertError::Pem { path: path.to_string(), message: "no CERTIFICATE block".to_string() });
    }
    Ok(certs)
}

/// The private key in a PEM file's contents (PKCS#8, PKCS#1 or SEC1).
pub fn parse_key(path: &str, pem: &[u8]) -> Result<PrivateKeyDer<'static>, CertError> {
    PrivateKeyDer::from_pem_slice(pem).map_err(|e| CertError::Pem { path: path.to_string(), message: e.to_string() })
}

/// Reads a file, naming it in the error.
pub fn read(path: &Path) -> Result<Vec<u8>, CertError> {
    std::fs::read(path).map_err(|source| io_error(path, source))
}

/// A certificate's `notAfter`, in seconds since the Unix epoch; `None` when
/// the DER is not an X.509 certificate.
pub fn not_after(der: &[u8]) -> Option<i64> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(cert.validity().not_after.timestamp())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cert_expiring(year: i32) -> Vec<u8> {
        let key = KeyPair::generate().expect("key");
        let mut params = CertificateParams::new(vec!["localhost".to_string()]).expect("params");
        params.not_after = rcgen::date_time_ymd(year, 3, 1);
        params.self_signed(&key).expect("cert").der().to_vec()
    }

    #[test]
    fn reads_not_after_in_utc_and_generalized_time() {
        // 2030-03-01 and 2060-03-01 at midnight UTC (UTCTime before 2050, GeneralizedTime after).
        assert_eq!(not_after(&cert_expiring(2030)), Some(1_898_553_600));
        assert_eq!(not_after(&cert_expiring(2060)), Some(2_845_324_800));
        assert_eq!(not_after(b"not a certificate"), None);
        assert_eq!(not_after(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]), None);
        assert_eq!(not_after(&[]), None);
    }

    #[test]
    fn generates_a_ca_and_a_serving_certificate() {
        let dir = tempfile::tempdir().expect("tempdir");
        let files = generate_into(dir.path(), "routeguard", "routeguard").expect("generate");
        let cert = parse_certs("tls.crt", &read(&files.cert).expect("read")).expect("certs");
        assert_eq!(cert.len(), 1);
        parse_key("tls.key", &read(&files.key).expect("read")).expect("key");
        let left = not_after(&cert[0]).expect("expiry") - OffsetDateTime::now_utc().unix_timestamp();
        assert!((364 * 86_400..=366 * 86_400).contains(&left), "{left}");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&files.key).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert!(parse_certs("x", b"").is_err());
        assert!(parse_key("x", b"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n").is_err());
    }
}
