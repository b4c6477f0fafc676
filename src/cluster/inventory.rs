//! The cluster read once, for `routeguard check --cluster`: every kind the
//! live index watches, listed page by page into a [`Snapshot`].
//!
//! Unlike the index this keeps no watch open: `check` judges one moment of
//! the cluster, the way `istioctl analyze` does.

use std::time::Duration;

use kube::api::{Api, DynamicObject, ListParams};

use crate::model::Kind;
use crate::policy::Snapshot;

use super::kinds::{self, Served};
use super::{ClusterError, within};

/// Objects per list request: big lists arrive in pages, as `kubectl get` reads them.
const PAGE: u32 = 500;

/// How long one list request may take.
const LIST_TIMEOUT: Duration = Duration::from_secs(30);

/// What was read.
#[derive(Debug, Clone)]
pub struct Inventory {
    /// Every object read, in the form the live index keeps.
    pub snapshot: Snapshot,
    /// What the reader could not read in full, in words for the user.
    pub notices: Vec<String>,
}

/// Lists every kind the live index watches into `empty` (a snapshot made for
/// the policy). Kinds whose CRDs are not installed are skipped. A kind that
/// cannot be listed across the cluster (RBAC) is read from `namespace` alone
/// when one is given, with a notice; Namespaces that cannot be listed leave
/// every namespace at the policy's enforcement default, with a notice. Any
/// other failure is an error: judging half a cluster would pass what is broken.
pub async fn read(client: &kube::Client, empty: Snapshot, namespace: Option<&str>) -> Result<Inventory, ClusterError> {
    let mut inventory = Inventory { snapshot: empty, notices: Vec::new() };
    for kind in Kind::ALL {
        let Some(served) = kinds::discover(client, kind).await? else { continue };
        let all: Api<DynamicObject> = Api::all_with(client.clone(), &served.resource);
        let objects = match list(&all, &served).await {
            Ok(objects) => objects,
            Err(e) if e.is_forbidden() && kind == Kind::Namespace => {
                inventory.notices.push(format!(
                    "cannot list namespaces ({e}): every namespace is judged with the policy's enforcement default"
                ));
                continue;
            }
            Err(e) if e.is_forbidden() && namespace.is_some() => {
                let namespace = namespace.unwrap_or_default();
                let scoped: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &served.resource);
                let objects = list(&scoped, &served).await?;
                inventory.notices.push(format!(
                    "cannot list {} in every namespace (forbidden): read from namespace {namespace} only, so \
                     what other namespaces export to it is not seen",
                    served.resource.plural
                ));
                objects
            }
            Err(e) => return Err(e),
        };
        for object in objects {
            match kinds::to_object(&served, object) {
                Ok(object) => {
                    inventory.snapshot.upsert(object);
                }
                // The API server validated it; an object the model cannot read
                // is left out, like the live index leaves it out.
                Err(e) => tracing::debug!(kind = kind.as_str(), error = %e, "an object routeguard cannot read"),
            }
        }
    }
    Ok(inventory)
}

/// Every object of one kind that `api` sees, following the `continue` token.
async fn list(api: &Api<DynamicObject>, served: &Served) -> Result<Vec<DynamicObject>, ClusterError> {
    let what = format!("list {}", served.resource.plural);
    let mut out = Vec::new();
    let mut params = ListParams::default().limit(PAGE);
    loop {
        let page = within(&what, LIST_TIMEOUT, api.list(&params)).await?;
        out.extend(page.items);
        match page.metadata.continue_.filter(|token| !token.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(out),
        }
    }
}
