//! The certificates routeguard makes, in one place: a CA, serving
//! certificates signed by it, and client certificates (for tests and the
//! load harness). Both the files of `serve`/`certs generate`
//! ([`crate::server::certs`]) and the Secret of `--tls-secret` mode
//! ([`crate::cluster::ca`]) are made here, so they cannot drift apart.

use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use time::OffsetDateTime;

/// The CA's common name.
pub const CA_NAME: &str = "routeguard webhook CA";
/// The CA lasts ten years.
pub const CA_LIFETIME: Duration = Duration::from_secs(10 * 365 * 86_400);
/// Serving and client certificates last a year.
pub const LEAF_LIFETIME: Duration = Duration::from_secs(365 * 86_400);
/// Certificates start this long before they are made, for clocks that are behind.
pub const SLACK: Duration = Duration::from_secs(3600);

/// `O=routeguard, CN=<common_name>`.
pub fn subject(common_name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "routeguard");
    dn.push(DnType::CommonName, common_name);
    dn
}

/// The parameters of a CA named `common_name`, valid from `not_before` for `lifetime`.
/// The same inputs give the same subject, so a CA can be loaded back as an issuer.
pub fn ca_params(
    common_name: &str,
    not_before: OffsetDateTime,
    lifetime: Duration,
) -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = subject(common_name);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    params.not_before = not_before;
    params.not_after = not_before + lifetime;
    Ok(params)
}

/// The parameters of a serving certificate for `names` (DNS names or IP addresses).
pub fn serving_params(
    names: &[String],
    not_before: OffsetDateTime,
    lifetime: Duration,
) -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(names.to_vec())?;
    params.distinguished_name = subject(names.first().map_or("routeguard", String::as_str));
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::KeyEncipherment];
    params.not_before = not_before;
    params.not_after = not_before + lifetime;
    Ok(params)
}

/// The parameters of a client certificate for `common_name`.
pub fn client_params(
    common_name: &str,
    not_before: OffsetDateTime,
    lifetime: Duration,
) -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.distinguished_name = subject(common_name);
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.not_before = not_before;
    params.not_after = not_before + lifetime;
    Ok(params)
}

/// A new key and a self-signed CA certificate from `params`: the issuer and the certificate's PEM.
pub fn new_ca(params: CertificateParams) -> Result<(Issuer<'static, KeyPair>, String, String), rcgen::Error> {
    let key = KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    let key_pem = key.serialize_pem();
    Ok((Issuer::new(params, key), cert.pem(), key_pem))
}

/// A new key and a certificate from `params` signed by `issuer`: (certificate PEM, key PEM).
pub fn sign(params: &CertificateParams, issuer: &Issuer<'_, KeyPair>) -> Result<(String, String), rcgen::Error> {
    let key = KeyPair::generate()?;
    let cert = params.signed_by(&key, issuer)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// The names the API server reaches the webhook Service by.
pub fn service_names(service: &str, namespace: &str) -> Vec<String> {
    vec![service.to_string(), format!("{service}.{namespace}"), format!("{service}.{namespace}.svc")]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ca_loaded_back_from_its_params_and_key_signs_for_the_same_subject() {
        let start = OffsetDateTime::now_utc() - SLACK;
        let (issuer, ca_pem, key_pem) = new_ca(ca_params(CA_NAME, start, CA_LIFETIME).expect("params")).expect("ca");
        assert!(ca_pem.starts_with("-----BEGIN CERTIFICATE-----"));
        let names = service_names("routeguard", "rg");
        assert_eq!(names, ["routeguard", "routeguard.rg", "routeguard.rg.svc"]);
        let (cert, key) = sign(&serving_params(&names, start, LEAF_LIFETIME).expect("params"), &issuer).expect("leaf");
        assert!(cert.contains("BEGIN CERTIFICATE") && key.contains("PRIVATE KEY"));
        // The same params and the saved key make an issuer with the same subject.
        let again = Issuer::new(
            ca_params(CA_NAME, start, CA_LIFETIME).expect("params"),
            KeyPair::from_pem(&key_pem).expect("key"),
        );
        sign(&client_params("apiserver", start, LEAF_LIFETIME).expect("params"), &again).expect("client");
    }
}
