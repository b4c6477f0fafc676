//! Where the snapshot comes from (manifest files, or the live cluster index),
//! and the second look a source may take before a refusal stands.

use std::sync::Arc;

use arc_swap::ArcSwap;
use futures::future::BoxFuture;

use crate::policy::{Engine, Finding, Snapshot};

use super::decode::Request;

/// Hands out the current snapshot. Each admission request takes one `Arc` and
/// judges against it alone, so a swap mid-request cannot mix two states.
pub trait SnapshotSource: Send + Sync + 'static {
    /// The snapshot to judge the next request against.
    fn current(&self) -> Arc<Snapshot>;

    /// The second look this source takes before a refusal stands (live mode
    /// re-reads what the watch may not have delivered yet); none by default.
    fn second_look(&self) -> Option<&dyn SecondLook> {
        None
    }
}

/// Judges a refused request again after fetching fresher state.
pub trait SecondLook: Send + Sync {
    /// True when a refusal with these findings is worth a second look (cheap:
    /// asked of every refusal of the validating endpoint).
    fn wanted(&self, findings: &[Finding]) -> bool;

    /// The request's findings judged again against fresher state than
    /// `snapshot`; `None` when nothing could be looked at again (the first
    /// verdict stands).
    fn look_again(
        &self,
        engine: Arc<Engine>,
        snapshot: Arc<Snapshot>,
        request: Arc<Request>,
        findings: Vec<Finding>,
    ) -> BoxFuture<'static, Option<Vec<Finding>>>;
}

/// A snapshot that can be replaced atomically while requests read it.
#[derive(Debug)]
pub struct SharedSnapshot {
    inner: ArcSwap<Snapshot>,
}

impl SharedSnapshot {
    /// A source holding `snapshot`.
    pub fn new(snapshot: Snapshot) -> SharedSnapshot {
        SharedSnapshot { inner: ArcSwap::from_pointee(snapshot) }
    }

    /// Replaces the snapshot; requests already running keep the one they took.
    pub fn store(&self, snapshot: Snapshot) {
        self.inner.store(Arc::new(snapshot));
    }

    /// Replaces the snapshot and hands back the one it replaced.
    pub fn swap(&self, snapshot: Arc<Snapshot>) -> Arc<Snapshot> {
        self.inner.swap(snapshot)
    }
}

impl SnapshotSource for SharedSnapshot {
    fn current(&self) -> Arc<Snapshot> {
        self.inner.load_full()
    }
}
