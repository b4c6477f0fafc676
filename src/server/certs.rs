//! Certificates: generating a CA and serving certificate (so the webhook runs
//! with no cluster), reading PEM files, and reading a certificate's expiry.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{Issuer, KeyPair};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use time::OffsetDateTime;

use crate::pki;

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
        let params = pki::ca_params(common_name, start(), pki::CA_LIFETIME)?;
        let (issuer, cert_pem, _) = pki::new_ca(params)?;
        Ok(Authority { issuer, cert_pem })
    }

    /// The CA certificate (PEM), for a client's trust store or a webhook's `caBundle`.
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A serving certificate for `names` (DNS names or IP addresses), valid for `valid_for`.
    pub fn issue_server(&self, names: &[String], valid_for: Duration) -> Result<Issued, CertError> {
        let start = start();
        self.issue(&pki::serving_params(names, start, valid_for + pki::SLACK)?)
    }

    /// A client certificate for `common_name` (the API server's, say).
    pub fn issue_client(&self, common_name: &str) -> Result<Issued, CertError> {
        self.issue(&pki::client_params(common_name, start(), pki::LEAF_LIFETIME)?)
    }

    fn issue(&self, params: &rcgen::CertificateParams) -> Result<Issued, CertError> {
        let (cert_pem, key_pem) = pki::sign(params, &self.issuer)?;
        Ok(Issued { cert_pem, key_pem })
    }
}

/// When a certificate made now starts: a little before, for clocks that are behind.
fn start() -> OffsetDateTime {
    OffsetDateTime::now_utc() - pki::SLACK
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
///
/// `private` files (keys) are created with mode 0600 when the temporary file
/// is opened, not chmod-ed afterwards: a crash between the first byte and the
/// rename never leaves a key readable by others. The rename replaces whatever
/// was at `path` (a 0644 file from an older version, say) with the new inode
/// and its mode.
pub fn write_atomically(path: &Path, contents: &[u8], private: bool) -> Result<(), CertError> {
    let (tmp, mut file) = create_temp(path, private).map_err(|source| io_error(path, source))?;
    let mut write = || -> std::io::Result<()> {
        use std::io::Write as _;
        file.write_all(contents)?;
        file.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|source| {
        // Best effort: a leftover temporary file holds nothing newer than `path` would.
        let _ = std::fs::remove_file(&tmp);
        io_error(path, source)
    })
}

/// Creates a new temporary file next to `path` (same directory, so the rename
/// is atomic), 0600 from the start when `private`. Its name is unique to this
/// process and moment and it is opened with `create_new`, so a stale file of
/// a crashed run, whatever its mode, is never reused.
fn create_temp(path: &Path, private: bool) -> std::io::Result<(PathBuf, std::fs::File)> {
    let file_name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default().as_nanos();
    let mut last = None;
    for attempt in 0..16u32 {
        let tmp = path.with_file_name(format!(".{file_name}.{}.{nanos}.{attempt}.tmp", std::process::id()));
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        if private {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        #[cfg(not(unix))]
        let _ = private;
        match options.open(&tmp) {
            Ok(file) => return Ok((tmp, file)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| std::io::Error::other("cannot create a temporary file")))
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
        let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).expect("params");
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

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::metadata(path).expect("meta").permissions().mode() & 0o777
    }

    #[cfg(unix)]
    #[test]
    fn key_files_are_0600_from_the_first_byte() {
        let dir = tempfile::tempdir().expect("tempdir");
        // The temporary file is 0600 as soon as it exists, before anything is written.
        let target = dir.path().join("tls.key");
        let (tmp, file) = create_temp(&target, true).expect("temp");
        assert_eq!(file.metadata().expect("meta").len(), 0);
        assert_eq!(mode(&tmp), 0o600);
        assert_eq!(tmp.parent(), Some(dir.path()), "next to the target, so the rename is atomic");
        drop(file);
        // A second one is a new file, never the first reopened.
        let (other, _file) = create_temp(&target, true).expect("temp");
        assert_ne!(other, tmp);

        // An existing world-readable key is replaced by a 0600 one.
        let old = dir.path().join("old");
        std::fs::create_dir_all(&old).expect("mkdir");
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::write(old.join("tls.key"), "old key").expect("write");
            std::fs::set_permissions(old.join("tls.key"), std::fs::Permissions::from_mode(0o644)).expect("chmod");
        }
        let files = generate_into(&old, "routeguard", "routeguard").expect("generate");
        assert_eq!(mode(&files.key), 0o600);
        assert_ne!(std::fs::read(&files.key).expect("read"), b"old key");
        parse_key("tls.key", &read(&files.key).expect("read")).expect("a key");
        // Only the three files: no temporary file left behind.
        let mut names: Vec<String> = std::fs::read_dir(&old)
            .expect("ls")
            .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        assert_eq!(names, ["ca.crt", "tls.crt", "tls.key"]);

        write_atomically(&old.join("tls.key"), b"again", true).expect("rewrite");
        assert_eq!(mode(&old.join("tls.key")), 0o600);
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
        assert_eq!(mode(&files.key), 0o600);
        assert!(parse_certs("x", b"").is_err());
        assert!(parse_key("x", b"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n").is_err());
    }
}
