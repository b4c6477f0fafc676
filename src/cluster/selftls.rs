//! `--tls-secret` mode: routeguard keeps its CA and serving certificate in a
//! Secret, serves from it, and patches the CA bundle into its own webhook
//! configurations.
//!
//! Several replicas agree on one Secret: the first creates it; a replica that
//! gets 409 AlreadyExists reads the winner's. Renewal (2/3 into a lifetime,
//! see [`ca::judge`]) replaces the Secret with the resourceVersion that was
//! read, so only one replica's renewal lands; the others get 409 and read it.
//! Every replica re-reads the Secret every `check_every` and serves what it
//! holds, so all replicas converge on one certificate.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{MutatingWebhookConfiguration, ValidatingWebhookConfiguration};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::sync::watch as channel;

use super::ca::{self, Bundle, Renewal};
use super::{ClusterError, FIELD_MANAGER, within};

/// How long one call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the certificate lives and who trusts it.
#[derive(Debug, Clone)]
pub struct SelfTlsSettings {
    /// The Secret's namespace (`--service-namespace`).
    pub namespace: String,
    /// The Secret's name (`--tls-secret`).
    pub secret: String,
    /// The webhook Service's name (`--service-name`), for the certificate's names.
    pub service: String,
    /// The MutatingWebhookConfiguration to patch (empty: none).
    pub mutating_webhook: String,
    /// The ValidatingWebhookConfiguration to patch (empty: none).
    pub validating_webhook: String,
    /// How often to re-read the Secret and check the webhooks' CA bundle.
    pub check_every: Duration,
}

/// Talks to the API server for the self-managed certificate.
#[derive(Clone)]
pub struct SelfTls {
    client: kube::Client,
    settings: SelfTlsSettings,
}

impl std::fmt::Debug for SelfTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SelfTls").field("settings", &self.settings).finish_non_exhaustive()
    }
}

/// The Secret as read: its bundle (if complete) and resourceVersion.
struct Read {
    bundle: Option<Bundle>,
    resource_version: Option<String>,
}

impl SelfTls {
    /// A manager for the Secret and webhooks in `settings`.
    pub fn new(client: kube::Client, settings: SelfTlsSettings) -> SelfTls {
        SelfTls { client, settings }
    }

    fn names(&self) -> Vec<String> {
        ca::service_names(&self.settings.service, &self.settings.namespace)
    }

    fn secrets(&self) -> Api<Secret> {
        Api::namespaced(self.client.clone(), &self.settings.namespace)
    }

    async fn read(&self) -> Result<Option<Read>, ClusterError> {
        let what = format!("get secret {}/{}", self.settings.namespace, self.settings.secret);
        let Some(secret) = within(&what, CALL_TIMEOUT, self.secrets().get_opt(&self.settings.secret)).await? else {
            return Ok(None);
        };
        let data: BTreeMap<String, Vec<u8>> =
            secret.data.unwrap_or_default().into_iter().map(|(k, v)| (k, v.0)).collect();
        let annotations = secret.metadata.annotations.unwrap_or_default();
        Ok(Some(Read {
            bundle: ca::from_secret(&data, &annotations),
            resource_version: secret.metadata.resource_version,
        }))
    }

    fn secret(&self, bundle: &Bundle, resource_version: Option<String>) -> Secret {
        let (data, annotations) = ca::to_secret(bundle);
        Secret {
            metadata: ObjectMeta {
                name: Some(self.settings.secret.clone()),
                namespace: Some(self.settings.namespace.clone()),
                labels: Some(BTreeMap::from([("app.kubernetes.io/managed-by".to_string(), "routeguard".to_string())])),
                annotations: Some(annotations),
                resource_version,
                ..ObjectMeta::default()
            },
            type_: Some("kubernetes.io/tls".to_string()),
            data: Some(data.into_iter().map(|(k, v)| (k, ByteString(v))).collect()),
            ..Secret::default()
        }
    }

    /// The bundle to serve: the Secret's when it is good, else a new or renewed
    /// one written back (creating the Secret when missing). Races between
    /// replicas end with everyone on the winner's bundle.
    pub async fn ensure(&self) -> Result<Bundle, ClusterError> {
        let names = self.names();
        let mut last_conflict = None;
        for _ in 0..5 {
            let now = OffsetDateTime::now_utc();
            match self.read().await? {
                None => {
                    let bundle = ca::issue_all(&names, now, None)?;
                    let what = format!("create secret {}/{}", self.settings.namespace, self.settings.secret);
                    let (secrets, secret) = (self.secrets(), self.secret(&bundle, None));
                    match within(&what, CALL_TIMEOUT, secrets.create(&PostParams::default(), &secret)).await {
                        Ok(_) => {
                            tracing::info!(secret = %self.settings.secret, "created the webhook CA and serving certificate");
                            return Ok(bundle);
                        }
                        Err(e) if e.is_conflict() => last_conflict = Some(e),
                        Err(e) => return Err(e),
                    }
                }
                Some(read) => {
                    let renewal = match &read.bundle {
                        Some(bundle) => ca::judge(bundle, &names, now.unix_timestamp()),
                        None => Renewal::Ca,
                    };
                    if let (Renewal::Fresh { .. }, Some(bundle)) = (&renewal, read.bundle.as_ref()) {
                        return Ok(bundle.clone());
                    }
                    let bundle = ca::renewed(read.bundle.as_ref(), &renewal, &names, now)?;
                    let what = format!("renew secret {}/{}", self.settings.namespace, self.settings.secret);
                    let secret = self.secret(&bundle, read.resource_version);
                    match within(
                        &what,
                        CALL_TIMEOUT,
                        self.secrets().replace(&self.settings.secret, &PostParams::default(), &secret),
                    )
                    .await
                    {
                        Ok(_) => {
                            tracing::info!(secret = %self.settings.secret, ?renewal, "renewed the webhook certificate");
                            return Ok(bundle);
                        }
                        Err(e) if e.is_conflict() => last_conflict = Some(e),
                        Err(e) => return Err(e),
                    }
                }
            }
        }
        Err(last_conflict
            .unwrap_or(ClusterError::Invalid { what: "tls secret".into(), message: "kept conflicting".into() }))
    }

    /// Puts `ca_bundle` into every webhook of both configurations that lacks it.
    /// A configuration that does not exist (yet) is skipped.
    pub async fn patch_webhooks(&self, ca_bundle: &str) -> Result<usize, ClusterError> {
        let mutating =
            self.patch_config(&self.settings.mutating_webhook, ca_bundle, |c: MutatingWebhookConfiguration| {
                c.webhooks
                    .unwrap_or_default()
                    .into_iter()
                    .map(|w| (w.name, w.client_config.ca_bundle.map(|b| b.0)))
                    .collect()
            });
        let validating =
            self.patch_config(&self.settings.validating_webhook, ca_bundle, |c: ValidatingWebhookConfiguration| {
                c.webhooks
                    .unwrap_or_default()
                    .into_iter()
                    .map(|w| (w.name, w.client_config.ca_bundle.map(|b| b.0)))
                    .collect()
            });
        Ok(mutating.await? + validating.await?)
    }

    /// Puts `ca_bundle` into the webhooks of one configuration (none when `name` is empty).
    async fn patch_config<K>(
        &self,
        name: &str,
        ca_bundle: &str,
        webhooks: impl FnOnce(K) -> Vec<(String, Option<Vec<u8>>)>,
    ) -> Result<usize, ClusterError>
    where
        K: kube::Resource<Scope = kube::core::ClusterResourceScope>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug,
        K::DynamicType: Default,
    {
        if name.is_empty() {
            return Ok(0);
        }
        let kind = K::kind(&K::DynamicType::default()).to_string();
        let api: Api<K> = Api::all(self.client.clone());
        match within(&format!("get {}", kind.to_ascii_lowercase()), CALL_TIMEOUT, api.get_opt(name)).await? {
            Some(config) => self.patch_one(&api, name, &webhooks(config), ca_bundle).await,
            None => {
                tracing::warn!(name = %name, kind = %kind, "webhook configuration not found; CA bundle not patched yet");
                Ok(0)
            }
        }
    }

    async fn patch_one<K>(
        &self,
        api: &Api<K>,
        name: &str,
        webhooks: &[(String, Option<Vec<u8>>)],
        ca_bundle: &str,
    ) -> Result<usize, ClusterError>
    where
        K: Clone + serde::de::DeserializeOwned + std::fmt::Debug,
    {
        let Some(patch) = ca_bundle_patch(webhooks, ca_bundle) else { return Ok(0) };
        let patch: json_patch::Patch = serde_json::from_value(patch)
            .map_err(|e| ClusterError::Invalid { what: "caBundle patch".into(), message: e.to_string() })?;
        let params = PatchParams { field_manager: Some(FIELD_MANAGER.to_string()), ..PatchParams::default() };
        let what = format!("patch caBundle of {name}");
        within(&what, CALL_TIMEOUT, api.patch(name, &params, &Patch::<Value>::Json(patch))).await?;
        tracing::info!(configuration = name, "patched the CA bundle into the webhook configuration");
        Ok(1)
    }

    /// Keeps the certificate current: re-reads the Secret every `check_every`,
    /// renews when due, sends each new bundle to `updates` and keeps the
    /// webhooks' CA bundle in place. Errors are logged and retried.
    pub async fn run(self, mut current: Bundle, updates: channel::Sender<Bundle>) {
        let mut webhooks_ok = false;
        loop {
            if !webhooks_ok {
                match self.patch_webhooks(&current.ca_bundle).await {
                    Ok(_) => webhooks_ok = true,
                    Err(e) => tracing::warn!(error = %e, "cannot patch the webhook CA bundle; retrying"),
                }
            }
            tokio::time::sleep(self.settings.check_every).await;
            match self.ensure().await {
                Ok(bundle) if bundle != current => {
                    tracing::info!(not_after = bundle.not_after, "serving certificate changed; reloading");
                    if bundle.ca_bundle != current.ca_bundle {
                        webhooks_ok = false;
                    }
                    current = bundle;
                    let _ = updates.send(current.clone());
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "cannot check the TLS secret; retrying"),
            }
            // The chart (or a person) may reset the bundle: look again each round.
            if webhooks_ok {
                match self.patch_webhooks(&current.ca_bundle).await {
                    Ok(_) => {}
                    Err(e) => {
                        webhooks_ok = false;
                        tracing::warn!(error = %e, "cannot check the webhook CA bundle; retrying");
                    }
                }
            }
        }
    }
}

/// The JSON Patch that sets `clientConfig.caBundle` of every webhook whose
/// bundle differs, each guarded by a test of the webhook's name at its index;
/// `None` when all are right.
pub fn ca_bundle_patch(webhooks: &[(String, Option<Vec<u8>>)], ca_bundle: &str) -> Option<Value> {
    let want = ca_bundle.as_bytes();
    let mut ops = Vec::new();
    for (i, (name, current)) in webhooks.iter().enumerate() {
        if current.as_deref() == Some(want) {
            continue;
        }
        let encoded = serde_json::to_value(ByteString(want.to_vec())).unwrap_or(Value::Null);
        ops.push(json!({"op": "test", "path": format!("/webhooks/{i}/name"), "value": name}));
        ops.push(json!({"op": "add", "path": format!("/webhooks/{i}/clientConfig/caBundle"), "value": encoded}));
    }
    (!ops.is_empty()).then_some(Value::Array(ops))
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;

    #[test]
    fn patches_only_the_webhooks_that_lack_the_bundle() {
        let pem = "-----BEGIN CERTIFICATE-----\nabc\n-----END CERTIFICATE-----\n";
        let hooks =
            vec![("a.routeguard.io".to_string(), Some(pem.as_bytes().to_vec())), ("b.routeguard.io".to_string(), None)];
        let patch = ca_bundle_patch(&hooks, pem).expect("patch");
        let encoded = base64::engine::general_purpose::STANDARD.encode(pem);
        assert_eq!(
            patch,
            json!([
                {"op": "test", "path": "/webhooks/1/name", "value": "b.routeguard.io"},
                {"op": "add", "path": "/webhooks/1/clientConfig/caBundle", "value": encoded}
            ])
        );
        let done = vec![("a".to_string(), Some(pem.as_bytes().to_vec()))];
        assert_eq!(ca_bundle_patch(&done, pem), None);
        assert_eq!(ca_bundle_patch(&[], pem), None);
    }
}
