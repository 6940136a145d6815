//! What every reconcile shares: the client, the writer, the caches, the shared listings, the
//! credentials resolver, what this process remembers of each query, and the hooks for metrics.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use kube::Client;
use kube::runtime::events::Recorder;
use kube::runtime::reflector::Store;
use tokio::time::Instant;

use crate::controller::inputs::credentials::CredentialsResolver;
use crate::controller::inputs::source::SharedListings;
use crate::controller::mirror::cache::{Generation, MirrorCache};
use crate::controller::mirror::mirrored::ListedDigest;
use crate::controller::mirror::view::{NamespaceLocks, RecentWrites};
use crate::controller::report::observer::SyncObserver;
use crate::controller::write::writer::Writer;
use crate::crd::ImagePipelineQuery;

/// What this process remembers of one query (by UID) between reconciles.
#[derive(Debug, Clone, Default)]
pub struct QueryMemory {
    /// The credentials identity (or error) of the last attempt.
    pub credentials: Option<String>,
    /// The IDs and content hashes of the last complete listing, to notice drift of the
    /// mirrored objects and to hand objects over between queries.
    pub listing: Option<Arc<ListedDigest>>,
    /// Consecutive attempts that ended in a listing or credentials failure.
    pub failures: u32,
    /// Consecutive reconciles that failed with a Kubernetes API error.
    pub errors: u32,
    /// When the last attempt started.
    pub last_attempt: Option<Instant>,
    /// When the namespace was last seen mirroring `listing` for the query.
    pub settled: Option<Settled>,
}

/// The last time this process saw the namespace mirror a listing for a query in place: every
/// listed object there and up to date, nothing unlisted still owned. While nothing of the
/// namespace's ImagePipelines and nothing of the query's spec has changed since, that still
/// holds, and need not be looked at again.
#[derive(Debug, Clone)]
pub struct Settled {
    /// The listing (weak: a newer listing is another one, and this does not keep it).
    pub listing: Weak<ListedDigest>,
    /// The namespace's generation, read before the look.
    pub namespace: Generation,
    /// The query's `metadata.generation` then.
    pub query: Option<i64>,
}

impl Settled {
    /// Whether it still holds for `listing`, the namespace at `namespace` and the query at
    /// generation `query`.
    pub fn holds(
        &self,
        listing: &Arc<ListedDigest>,
        namespace: Generation,
        query: Option<i64>,
    ) -> bool {
        std::ptr::eq(self.listing.as_ptr(), Arc::as_ptr(listing))
            && self.namespace == namespace
            && self.query == query
    }
}

/// The controller's shared state.
pub struct Context {
    /// The Kubernetes client (reads).
    pub client: Client,
    /// The only writer.
    pub writer: Writer,
    /// Publishes Events.
    pub recorder: Recorder,
    /// The records of the ImagePipelines of the watched namespaces.
    pub pipelines: MirrorCache,
    /// Turns true once the ImagePipeline cache has listed everything; many reconciles may wait
    /// on it at once (unlike `Store::wait_until_ready`, which wakes only its last waiter).
    pub pipelines_ready: tokio::sync::watch::Receiver<bool>,
    /// The ImagePipelineQueries of the watched namespaces.
    pub queries: Store<ImagePipelineQuery>,
    /// Listings, shared between identical queries (of every watched namespace).
    pub listings: Arc<SharedListings>,
    /// Credentials of queries.
    pub credentials: Arc<CredentialsResolver>,
    /// Writes the caches have not caught up with yet.
    pub recent: RecentWrites,
    /// One writer at a time per namespace.
    pub locks: NamespaceLocks,
    /// What this process remembers of each query.
    pub memory: Mutex<HashMap<String, QueryMemory>>,
    /// Metrics hooks.
    pub observer: Arc<dyn SyncObserver>,
    /// The shard this instance serves, as status names it (`main` without `--shard`).
    pub shard: Arc<str>,
    /// The label this instance puts on the objects it mirrors, which its ImagePipeline watch
    /// selects (`shard.ecs.mirror.io/<shard>`); `None` for an instance serving every query,
    /// which watches every object.
    pub object_label: Option<String>,
}

impl Context {
    /// What is remembered of the query with `uid`.
    pub fn remembered(&self, uid: &str) -> Option<QueryMemory> {
        let memory = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        memory.get(uid).cloned()
    }

    /// Changes what is remembered of the query with `uid`.
    pub fn remember(&self, uid: &str, update: impl FnOnce(&mut QueryMemory)) {
        let mut memory = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        update(memory.entry(uid.to_string()).or_default());
    }

    /// Forgets the query with `uid` (it was deleted).
    pub fn forget(&self, uid: &str) {
        let mut memory = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        memory.remove(uid);
    }

    /// Forgets every query `queries` no longer holds, and the locks of namespaces nobody is
    /// writing in.
    pub fn forget_all_but(&self, queries: &Store<ImagePipelineQuery>) {
        let live: std::collections::HashSet<String> = queries
            .state()
            .iter()
            .filter_map(|q| q.metadata.uid.clone())
            .collect();
        let mut memory = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        memory.retain(|uid, _| live.contains(uid));
        memory.shrink_to_fit();
        drop(memory);
        self.locks.sweep();
    }
}
