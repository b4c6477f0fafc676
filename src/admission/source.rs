//! Where the snapshot comes from: a file-backed one now, a live cluster index later.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::policy::Snapshot;

/// Hands out the current snapshot. Each admission request takes one `Arc` and
/// judges against it alone, so a swap mid-request cannot mix two states.
pub trait SnapshotSource: Send + Sync + 'static {
    /// The snapshot to judge the next request against.
    fn current(&self) -> Arc<Snapshot>;
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
}

impl SnapshotSource for SharedSnapshot {
    fn current(&self) -> Arc<Snapshot> {
        self.inner.load_full()
    }
}
