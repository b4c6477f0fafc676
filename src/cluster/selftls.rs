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
//!
//! Ordering: a bundle with a new CA is served only once both webhook
//! configurations trust it. [`SelfTls::run`] patches the CA bundle first and
//! sends the new certificate to the server only when the patch succeeded; if
//! it fails the old certificate stays in service and the patch is retried
//! with backoff. (A rotated bundle holds the new CA and the old one, so the
//! certificates of replicas not switched yet keep working meanwhile.)
//!
//! A CA bundle reset by `helm upgrade` or a GitOps tool is noticed by
//! watching the two configurations (a watcher each, `fieldSelector
//! metadata.name=<name>`) and re-patched at once, not found by polling.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::{Stream, StreamExt as _};
use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{MutatingWebhookConfiguration, ValidatingWebhookConfiguration};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Api;
use kube::api::{Patch, PatchParams, PostParams};
use kube::runtime::{WatchStreamExt as _, watcher};
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::sync::watch as channel;
use tokio::time::Instant;

use super::ca::{self, Bundle, Renewal};
use super::retry::{self, Backoff};
use super::{ClusterError, FIELD_MANAGER, within};

/// How long one call may take.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

/// The webhooks of a configuration: each one's name and `clientConfig.caBundle`.
type Webhooks = Vec<(String, Option<Vec<u8>>)>;

fn mutating_hooks(config: MutatingWebhookConfiguration) -> Webhooks {
    config.webhooks.unwrap_or_default().into_iter().map(|w| (w.name, w.client_config.ca_bundle.map(|b| b.0))).collect()
}

fn validating_hooks(config: ValidatingWebhookConfiguration) -> Webhooks {
    config.webhooks.unwrap_or_default().into_iter().map(|w| (w.name, w.client_config.ca_bundle.map(|b| b.0))).collect()
}

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
    /// How often to re-read the Secret (renewal, and other replicas' renewals).
    /// The webhooks' CA bundle is watched, not polled.
    pub check_every: Duration,
}

/// Talks to the API server for the self-managed certificate.
#[derive(Clone)]
pub struct SelfTls {
    client: kube::Client,
    settings: SelfTlsSettings,
    /// How a failed CA bundle patch is retried.
    retry: Backoff,
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
        SelfTls { client, settings, retry: Backoff::default() }
    }

    /// Retries a failed CA bundle patch with `retry` instead of the default
    /// (1 s doubling to 5 min, ±20 %).
    pub fn with_retry(mut self, retry: Backoff) -> SelfTls {
        self.retry = retry;
        self
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
        let mutating = self.patch_config(&self.settings.mutating_webhook, ca_bundle, mutating_hooks);
        let validating = self.patch_config(&self.settings.validating_webhook, ca_bundle, validating_hooks);
        Ok(mutating.await? + validating.await?)
    }

    /// Puts `ca_bundle` into the webhooks of one configuration (none when `name` is empty).
    async fn patch_config<K>(
        &self,
        name: &str,
        ca_bundle: &str,
        webhooks: impl FnOnce(K) -> Webhooks,
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

    /// Keeps the certificate current: re-reads the Secret every `check_every`
    /// (renewing when due), keeps the webhooks' CA bundle in place (watching
    /// both configurations) and sends each new bundle to `updates`, a bundle
    /// with a new CA only after both configurations were patched to trust it.
    /// Errors are logged and retried; it runs until aborted.
    pub async fn run(self, current: Bundle, updates: channel::Sender<Bundle>) {
        let mut rotation = Rotation::new(current);
        let mut seen = std::pin::pin!(self.watch_webhooks());
        let mut check = tokio::time::interval(self.settings.check_every.max(Duration::from_millis(10)));
        check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        check.tick().await;
        // The first patch is due at once (the watch may not be allowed to list).
        let mut patch_at = Some(Instant::now());
        let mut failures = 0u32;
        loop {
            let patch_due = async {
                match patch_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = check.tick() => match self.ensure().await {
                    Ok(bundle) => match rotation.read(bundle) {
                        Step::Serve(bundle) => {
                            tracing::info!(not_after = bundle.not_after, "serving certificate changed (same CA); reloading");
                            let _ = updates.send(bundle);
                        }
                        Step::PatchFirst => {
                            tracing::info!("new CA: patching the webhooks' CA bundle before serving the new certificate");
                            // A retry already waiting keeps its backoff.
                            patch_at.get_or_insert_with(Instant::now);
                        }
                        Step::Nothing => {}
                    },
                    Err(e) => tracing::warn!(error = %e, "cannot check the TLS secret; retrying"),
                },
                Some((name, webhooks)) = seen.next() => {
                    if ca_bundle_patch(&webhooks, &rotation.target().ca_bundle).is_some() {
                        tracing::info!(configuration = %name, "a webhook configuration lacks the CA bundle (reset by an upgrade?); patching it");
                        patch_at.get_or_insert_with(Instant::now);
                    }
                }
                () = patch_due => {
                    let target = rotation.target().ca_bundle.clone();
                    match self.patch_webhooks(&target).await {
                        Ok(_) => {
                            failures = 0;
                            patch_at = None;
                            if let Some(bundle) = rotation.patched(&target) {
                                tracing::info!(not_after = bundle.not_after, "webhooks trust the new CA; serving the new certificate");
                                let _ = updates.send(bundle);
                            }
                        }
                        Err(e) => {
                            failures = failures.saturating_add(1);
                            let delay = self.retry.delay(failures, retry::sample());
                            patch_at = Some(Instant::now() + delay);
                            if e.is_forbidden() {
                                tracing::error!(error = %e, retry_in = ?delay, "cannot patch the webhook CA bundle: RBAC must allow get and patch of both webhook configurations; still serving the previous certificate");
                            } else {
                                tracing::warn!(error = %e, retry_in = ?delay, "cannot patch the webhook CA bundle; still serving the previous certificate");
                            }
                        }
                    }
                }
            }
        }
    }

    /// The webhooks of both configurations each time a watch sees one
    /// (listed, added or modified), named by configuration.
    fn watch_webhooks(&self) -> impl Stream<Item = (String, Webhooks)> + Send + 'static {
        let mutating = watch_one(self.client.clone(), &self.settings.mutating_webhook, mutating_hooks);
        let validating = watch_one(self.client.clone(), &self.settings.validating_webhook, validating_hooks);
        futures::stream::select(mutating, validating)
    }
}

/// Watches one webhook configuration by name (none when `name` is empty);
/// errors are logged and the watcher backs off and resumes on its own.
fn watch_one<K>(
    client: kube::Client,
    name: &str,
    webhooks: fn(K) -> Webhooks,
) -> futures::stream::BoxStream<'static, (String, Webhooks)>
where
    K: kube::Resource<Scope = kube::core::ClusterResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + 'static,
    K::DynamicType: Default,
{
    if name.is_empty() {
        return futures::stream::empty().boxed();
    }
    let api: Api<K> = Api::all(client);
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let kind = K::kind(&K::DynamicType::default()).to_string();
    let name = name.to_string();
    watcher(api, config)
        .default_backoff()
        .filter_map(move |event| {
            let found = match event {
                Ok(watcher::Event::Apply(config) | watcher::Event::InitApply(config)) => {
                    Some((name.clone(), webhooks(config)))
                }
                Ok(_) => None,
                Err(e) => {
                    tracing::warn!(%kind, name = %name, error = %e, "watch of the webhook configuration failed; backing off");
                    None
                }
            };
            std::future::ready(found)
        })
        .boxed()
}

/// What to do after reading the Secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing changed.
    Nothing,
    /// A new certificate from the CA already trusted: serve it now.
    Serve(Bundle),
    /// A new CA: patch the webhooks first ([`Rotation::patched`] then says what to serve).
    PatchFirst,
}

/// The ordering of a renewal, pure: which bundle is served, and which one
/// waits for the webhooks to trust its CA.
#[derive(Debug, Clone)]
pub struct Rotation {
    /// What the server serves (the last bundle sent).
    serving: Bundle,
    /// A bundle with another CA, not served until the webhooks trust it.
    waiting: Option<Bundle>,
}

impl Rotation {
    /// Serving `current`, nothing waiting.
    pub fn new(current: Bundle) -> Rotation {
        Rotation { serving: current, waiting: None }
    }

    /// The bundle served now.
    pub fn serving(&self) -> &Bundle {
        &self.serving
    }

    /// The bundle whose CA the webhooks must trust: the waiting one, else the served one.
    pub fn target(&self) -> &Bundle {
        self.waiting.as_ref().unwrap_or(&self.serving)
    }

    /// The Secret holds `bundle`.
    pub fn read(&mut self, bundle: Bundle) -> Step {
        if bundle == *self.target() {
            return Step::Nothing;
        }
        if bundle.ca_bundle == self.serving.ca_bundle {
            // Same CA (a new serving certificate, or back to the served CA): nothing to patch first.
            self.waiting = None;
            self.serving = bundle.clone();
            return Step::Serve(bundle);
        }
        self.waiting = Some(bundle);
        Step::PatchFirst
    }

    /// Both configurations now hold `ca_bundle`: the bundle to serve, if one waited for it.
    pub fn patched(&mut self, ca_bundle: &str) -> Option<Bundle> {
        let waiting = self.waiting.take_if(|w| w.ca_bundle == ca_bundle)?;
        self.serving = waiting.clone();
        Some(waiting)
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

    fn bundle(ca: &str, cert: &str) -> Bundle {
        Bundle {
            ca_bundle: ca.into(),
            ca_key: format!("{ca} key"),
            cert: cert.into(),
            key: format!("{cert} key"),
            not_before: 0,
            not_after: 1,
            ca_not_before: 0,
            ca_not_after: 1,
        }
    }

    #[test]
    fn a_new_ca_is_served_only_after_the_webhooks_trust_it() {
        let mut rotation = Rotation::new(bundle("ca1", "cert1"));
        assert_eq!(rotation.read(bundle("ca1", "cert1")), Step::Nothing);
        // Same CA: served at once.
        assert_eq!(rotation.read(bundle("ca1", "cert2")), Step::Serve(bundle("ca1", "cert2")));
        assert_eq!(rotation.target().cert, "cert2");

        // New CA: patch first, keep serving the old certificate.
        assert_eq!(rotation.read(bundle("ca2+ca1", "cert3")), Step::PatchFirst);
        assert_eq!(rotation.serving().cert, "cert2");
        assert_eq!(rotation.target().ca_bundle, "ca2+ca1");
        assert_eq!(rotation.read(bundle("ca2+ca1", "cert3")), Step::Nothing, "already waiting");
        // A patch of the old bundle (it failed over to another) serves nothing.
        assert_eq!(rotation.patched("ca1"), None);
        assert_eq!(rotation.serving().cert, "cert2");
        assert_eq!(rotation.patched("ca2+ca1"), Some(bundle("ca2+ca1", "cert3")));
        assert_eq!(rotation.serving().cert, "cert3");
        assert_eq!(rotation.patched("ca2+ca1"), None, "served once");

        // Another rotation waits; the Secret goes back to the served CA: serve that, drop the wait.
        assert_eq!(rotation.read(bundle("ca3+ca2", "cert4")), Step::PatchFirst);
        assert_eq!(rotation.read(bundle("ca2+ca1", "cert5")), Step::Serve(bundle("ca2+ca1", "cert5")));
        assert_eq!(rotation.target().ca_bundle, "ca2+ca1");
    }

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
