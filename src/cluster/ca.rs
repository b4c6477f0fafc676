//! The self-managed CA and serving certificate of `--tls-secret` mode: what
//! the Secret holds, whether it is still good, and when to renew. Pure
//! (apart from key generation); [`selftls`](super::selftls) talks to the API.
//!
//! The Secret (type `kubernetes.io/tls`) holds `tls.crt`, `tls.key`,
//! `ca.crt` (the bundle clients trust: the current CA, and after a CA
//! rotation the previous one too) and `ca.key`. Validity times are recorded
//! in annotations when routeguard writes it, so no certificate has to be
//! parsed to know when to renew; the chain itself is checked with webpki.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{Issuer, KeyPair};
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use time::OffsetDateTime;

use crate::pki;

use super::ClusterError;

/// Serving certificates last a year.
pub const SERVING_LIFETIME: Duration = pki::LEAF_LIFETIME;
/// The CA lasts ten years.
pub const CA_LIFETIME: Duration = pki::CA_LIFETIME;
/// Annotation: `notBefore` of the serving certificate, Unix seconds.
pub const NOT_BEFORE: &str = "routeguard.io/not-before";
/// Annotation: `notAfter` of the serving certificate, Unix seconds.
pub const NOT_AFTER: &str = "routeguard.io/not-after";
/// Annotation: `notBefore` of the CA, Unix seconds.
pub const CA_NOT_BEFORE: &str = "routeguard.io/ca-not-before";
/// Annotation: `notAfter` of the CA, Unix seconds.
pub const CA_NOT_AFTER: &str = "routeguard.io/ca-not-after";

/// What the Secret holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bundle {
    /// The CA certificates clients trust (current first), PEM.
    pub ca_bundle: String,
    /// The current CA's key, PEM.
    pub ca_key: String,
    /// The serving certificate, PEM.
    pub cert: String,
    /// The serving key, PEM.
    pub key: String,
    /// Validity of the serving certificate and of the CA, Unix seconds.
    pub not_before: i64,
    pub not_after: i64,
    pub ca_not_before: i64,
    pub ca_not_after: i64,
}

/// What to do with the Secret as found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Renewal {
    /// Good until `renew_at` (Unix seconds).
    Fresh { renew_at: i64 },
    /// Issue a new serving certificate from the same CA.
    Serving,
    /// Make a new CA (keeping the old one in the bundle) and a serving certificate.
    Ca,
}

/// The moment 2/3 into a validity period.
pub fn renew_point(not_before: i64, not_after: i64) -> i64 {
    not_before + (not_after - not_before) * 2 / 3
}

/// Decides about a bundle at `now` for a server reached as `names[..]`.
pub fn judge(bundle: &Bundle, names: &[String], now: i64) -> Renewal {
    let ca_renew = renew_point(bundle.ca_not_before, bundle.ca_not_after);
    if now >= ca_renew || load_ca(bundle).is_err() {
        return Renewal::Ca;
    }
    let renew = renew_point(bundle.not_before, bundle.not_after);
    if now >= renew || verify(bundle, names).is_err() {
        return Renewal::Serving;
    }
    Renewal::Fresh { renew_at: renew.min(ca_renew) }
}

fn cert_error(e: impl std::fmt::Display) -> ClusterError {
    ClusterError::Cert(e.to_string())
}

/// The issuer of a bundle's CA: its key, and a subject equal to the one the CA was made with.
fn load_ca(bundle: &Bundle) -> Result<Issuer<'static, KeyPair>, ClusterError> {
    let key = KeyPair::from_pem(&bundle.ca_key).map_err(cert_error)?;
    let not_before = OffsetDateTime::from_unix_timestamp(bundle.ca_not_before).map_err(cert_error)?;
    let lifetime = Duration::from_secs(u64::try_from(bundle.ca_not_after - bundle.ca_not_before).unwrap_or(0));
    let params = pki::ca_params(pki::CA_NAME, not_before, lifetime).map_err(cert_error)?;
    Ok(Issuer::new(params, key))
}

/// The unix time of an `OffsetDateTime`, truncated to the second.
fn unix(t: OffsetDateTime) -> i64 {
    t.unix_timestamp()
}

/// A fresh CA and serving certificate for `names`, valid from `now - 1h`.
/// `previous_ca` (PEM) stays in the bundle so certificates it signed keep working during a rotation.
pub fn issue_all(names: &[String], now: OffsetDateTime, previous_ca: Option<&str>) -> Result<Bundle, ClusterError> {
    let start = now - pki::SLACK;
    let params = pki::ca_params(pki::CA_NAME, start, CA_LIFETIME).map_err(cert_error)?;
    let (issuer, mut ca_bundle, ca_key) = pki::new_ca(params).map_err(cert_error)?;
    if let Some(previous) = previous_ca.and_then(first_pem_cert) {
        ca_bundle.push_str(&previous);
    }
    let (cert, serving_key, not_before, not_after) = issue_serving(&issuer, names, now)?;
    Ok(Bundle {
        ca_bundle,
        ca_key,
        cert,
        key: serving_key,
        not_before,
        not_after,
        ca_not_before: unix(start),
        ca_not_after: unix(start + CA_LIFETIME),
    })
}

/// A new serving certificate from the bundle's CA.
pub fn renew_serving(bundle: &Bundle, names: &[String], now: OffsetDateTime) -> Result<Bundle, ClusterError> {
    let issuer = load_ca(bundle)?;
    let (cert, key, not_before, not_after) = issue_serving(&issuer, names, now)?;
    Ok(Bundle { cert, key, not_before, not_after, ..bundle.clone() })
}

/// What `renewal` calls for: a new serving certificate, or a new CA too.
pub fn renewed(
    bundle: Option<&Bundle>,
    renewal: &Renewal,
    names: &[String],
    now: OffsetDateTime,
) -> Result<Bundle, ClusterError> {
    match (bundle, renewal) {
        (Some(bundle), Renewal::Fresh { .. }) => Ok(bundle.clone()),
        (Some(bundle), Renewal::Serving) => renew_serving(bundle, names, now),
        (Some(bundle), Renewal::Ca) => issue_all(names, now, Some(&bundle.ca_bundle)),
        (None, _) => issue_all(names, now, None),
    }
}

fn issue_serving(
    issuer: &Issuer<'_, KeyPair>,
    names: &[String],
    now: OffsetDateTime,
) -> Result<(String, String, i64, i64), ClusterError> {
    let start = now - pki::SLACK;
    let params = pki::serving_params(names, start, SERVING_LIFETIME).map_err(cert_error)?;
    let (cert, key) = pki::sign(&params, issuer).map_err(cert_error)?;
    Ok((cert, key, unix(start), unix(start + SERVING_LIFETIME)))
}

fn first_pem_cert(pem: &str) -> Option<String> {
    let end = "-----END CERTIFICATE-----";
    let stop = pem.find(end)? + end.len();
    let start = pem.find("-----BEGIN CERTIFICATE-----")?;
    (start < stop).then(|| format!("{}\n", &pem[start..stop]))
}

/// Checks that the serving certificate chains to the bundle, is valid now
/// and names every one of `names`, and that the key matches it.
pub fn verify(bundle: &Bundle, names: &[String]) -> Result<(), ClusterError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(bundle.ca_bundle.as_bytes()) {
        roots.add(ca.map_err(cert_error)?).map_err(cert_error)?;
    }
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(bundle.cert.as_bytes()).collect::<Result<_, _>>().map_err(cert_error)?;
    let Some((leaf, rest)) = chain.split_first() else { return Err(cert_error("no serving certificate")) };
    let key = PrivateKeyDer::from_pem_slice(bundle.key.as_bytes()).map_err(cert_error)?;
    let certified = rustls::sign::CertifiedKey::from_der(chain.clone(), key, &provider).map_err(cert_error)?;
    certified.keys_match().map_err(cert_error)?;
    let verifier =
        WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider).build().map_err(cert_error)?;
    for name in names {
        let server = ServerName::try_from(name.clone()).map_err(cert_error)?;
        verifier.verify_server_cert(leaf, rest, &server, &[], UnixTime::now()).map_err(cert_error)?;
    }
    Ok(())
}

/// The Secret's `data` and annotations for a bundle.
pub fn to_secret(bundle: &Bundle) -> (BTreeMap<String, Vec<u8>>, BTreeMap<String, String>) {
    let data = BTreeMap::from([
        ("ca.crt".to_string(), bundle.ca_bundle.clone().into_bytes()),
        ("ca.key".to_string(), bundle.ca_key.clone().into_bytes()),
        ("tls.crt".to_string(), bundle.cert.clone().into_bytes()),
        ("tls.key".to_string(), bundle.key.clone().into_bytes()),
    ]);
    let annotations = BTreeMap::from([
        (NOT_BEFORE.to_string(), bundle.not_before.to_string()),
        (NOT_AFTER.to_string(), bundle.not_after.to_string()),
        (CA_NOT_BEFORE.to_string(), bundle.ca_not_before.to_string()),
        (CA_NOT_AFTER.to_string(), bundle.ca_not_after.to_string()),
    ]);
    (data, annotations)
}

/// Reads a bundle back from a Secret's `data` and annotations; `None` when anything is missing.
pub fn from_secret(data: &BTreeMap<String, Vec<u8>>, annotations: &BTreeMap<String, String>) -> Option<Bundle> {
    let text = |k: &str| data.get(k).and_then(|v| String::from_utf8(v.clone()).ok()).filter(|s| !s.is_empty());
    let time = |k: &str| annotations.get(k).and_then(|v| v.parse::<i64>().ok());
    Some(Bundle {
        ca_bundle: text("ca.crt")?,
        ca_key: text("ca.key")?,
        cert: text("tls.crt")?,
        key: text("tls.key")?,
        not_before: time(NOT_BEFORE)?,
        not_after: time(NOT_AFTER)?,
        ca_not_before: time(CA_NOT_BEFORE)?,
        ca_not_after: time(CA_NOT_AFTER)?,
    })
}

/// The names the API server reaches the webhook Service by.
pub use crate::pki::service_names;

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        service_names("routeguard", "rg")
    }

    #[test]
    fn issues_a_verifiable_bundle_and_reads_it_back() {
        let now = OffsetDateTime::now_utc();
        let bundle = issue_all(&names(), now, None).expect("bundle");
        verify(&bundle, &names()).expect("chain");
        assert!(verify(&bundle, &["other.rg.svc".to_string()]).is_err(), "wrong name");
        let (data, annotations) = to_secret(&bundle);
        assert_eq!(from_secret(&data, &annotations), Some(bundle.clone()));
        let mut partial = data.clone();
        partial.remove("ca.key");
        assert_eq!(from_secret(&partial, &annotations), None);

        let renew_at = renew_point(bundle.not_before, bundle.not_after);
        assert_eq!(judge(&bundle, &names(), now.unix_timestamp()), Renewal::Fresh { renew_at });
        assert_eq!(renew_at - bundle.not_before, SERVING_LIFETIME.as_secs() as i64 * 2 / 3);
        assert_eq!(judge(&bundle, &names(), renew_at), Renewal::Serving);
        let ca_due = renew_point(bundle.ca_not_before, bundle.ca_not_after);
        assert_eq!(judge(&bundle, &names(), ca_due), Renewal::Ca);
        // Another service name: a new serving certificate.
        assert_eq!(judge(&bundle, &service_names("x", "rg"), now.unix_timestamp()), Renewal::Serving);
    }

    #[test]
    fn renews_the_serving_certificate_from_the_same_ca() {
        let now = OffsetDateTime::now_utc();
        let bundle = issue_all(&names(), now, None).expect("bundle");
        let renewed = renew_serving(&bundle, &names(), now + Duration::from_secs(60)).expect("renewed");
        assert_eq!(renewed.ca_bundle, bundle.ca_bundle, "same CA: the webhooks' caBundle stays");
        assert_ne!(renewed.cert, bundle.cert);
        assert_ne!(renewed.key, bundle.key);
        verify(&renewed, &names()).expect("chains to the stored CA");
    }

    #[test]
    fn a_ca_rotation_keeps_the_old_ca_trusted() {
        let now = OffsetDateTime::now_utc();
        let old = issue_all(&names(), now, None).expect("bundle");
        let new = renewed(Some(&old), &Renewal::Ca, &names(), now).expect("rotated");
        assert!(new.ca_bundle.starts_with(&new.ca_bundle[..new.ca_bundle.find("-----END").unwrap_or(0)]));
        assert_eq!(new.ca_bundle.matches("BEGIN CERTIFICATE").count(), 2);
        assert!(new.ca_bundle.ends_with(&old.ca_bundle), "old CA kept");
        verify(&new, &names()).expect("new chain");
        // The old serving certificate still verifies against the new bundle.
        let mixed = Bundle { cert: old.cert.clone(), key: old.key.clone(), ..new.clone() };
        verify(&mixed, &names()).expect("old serving certificate still trusted");
        // A broken CA key means a new CA.
        let broken = Bundle { ca_key: "junk".into(), ..old };
        assert_eq!(judge(&broken, &names(), now.unix_timestamp()), Renewal::Ca);
    }
}
