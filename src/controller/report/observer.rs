//! The hooks a sync reports through (metrics implement them).

use std::time::Duration;

use crate::controller::planning::plan::{WriteAction, WriteKind};

/// Hooks for metrics; every method has an empty default.
pub trait SyncObserver: Send + Sync + 'static {
    /// A reconcile ended with a `Ready` reason (`Synced`, `ApiError`, ...) after `elapsed`;
    /// `matched` is set after a successful sync.
    fn sync_finished(
        &self,
        namespace: &str,
        name: &str,
        reason: &str,
        elapsed: Duration,
        matched: Option<u32>,
    ) {
        let _ = (namespace, name, reason, elapsed, matched);
    }
    /// An ImagePipeline was applied.
    fn object_written(&self, kind: WriteKind) {
        let _ = kind;
    }
    /// A sync read a page of its listing: `reused` (the same page as the query's last listing,
    /// taken without decoding it) or decoded.
    fn page_read(&self, reused: bool) {
        let _ = reused;
    }
    /// An ImagePipeline was deleted.
    fn object_deleted(&self) {}
    /// The API server refused a write.
    fn write_failed(&self, action: WriteAction) {
        let _ = action;
    }
    /// A sync left `count` items of the query's listing unmirrored (0 once all are).
    fn items_skipped(&self, namespace: &str, name: &str, count: u32) {
        let _ = (namespace, name, count);
    }
    /// A reconcile failed with a controller error (its `metric_label`).
    fn reconcile_failed(&self, label: &str) {
        let _ = label;
    }
    /// The query's `refreshInterval`, once its spec validated (metrics compare the time since
    /// its last successful sync with it).
    fn refresh_interval(&self, namespace: &str, name: &str, interval: Duration) {
        let _ = (namespace, name, interval);
    }
    /// The query was deleted: what is recorded about it is no longer true.
    fn query_deleted(&self, namespace: &str, name: &str) {
        let _ = (namespace, name);
    }
}

/// An observer that observes nothing.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoopObserver;

impl SyncObserver for NoopObserver {}
