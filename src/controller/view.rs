//! The ImagePipelines the plan sees: the reflector's cache, corrected by the writes this process
//! made that the cache has not caught up with yet, and a lock per namespace so two queries of
//! one namespace never plan from the same stale picture.
//!
//! Why: several queries may own one object, and one field manager applies the complete owner
//! list. Query B must therefore plan from a picture that includes query A's write of a moment
//! ago, or B's apply would drop A's owner reference. Writes of one namespace are serialized by
//! [`NamespaceLocks`], and [`RecentWrites`] makes each write visible to the next plan at once.
//! Updates also carry the `resourceVersion` they were planned from, so a write by anyone else
//! in between (another replica during a leader hand-over, the garbage collector) is a conflict
//! and a retry, never a silent overwrite.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use kube::ResourceExt;
use kube::runtime::reflector::Store;

use crate::crd::ImagePipeline;

/// One write of this process: the resourceVersion it replaced (`None` for a create) and the
/// object the API server answered with (`None` for a deletion).
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    /// The resourceVersion the write was based on.
    pub base_resource_version: Option<String>,
    /// The object after the write.
    pub after: Option<Arc<ImagePipeline>>,
}

/// The object to plan from: the cached one, unless the cache still shows the version a write
/// of ours replaced, in which case the write's result.
pub fn effective(
    cached: Option<Arc<ImagePipeline>>,
    written: Option<&Written>,
) -> Option<Arc<ImagePipeline>> {
    match written {
        Some(w)
            if cached.as_ref().and_then(|c| c.resource_version()) == w.base_resource_version =>
        {
            w.after.clone()
        }
        _ => cached,
    }
}

/// Writes this process made, by namespace and name, until the cache shows something newer.
#[derive(Debug, Default)]
pub struct RecentWrites {
    entries: Mutex<HashMap<(String, String), Written>>,
}

impl RecentWrites {
    /// Records a write.
    pub fn record(&self, namespace: &str, name: &str, written: Written) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.insert((namespace.to_string(), name.to_string()), written);
    }

    /// The ImagePipelines of `namespace` to plan from, by name.
    pub fn namespace_view(
        &self,
        store: &Store<ImagePipeline>,
        namespace: &str,
    ) -> BTreeMap<String, Arc<ImagePipeline>> {
        let mut view: BTreeMap<String, Arc<ImagePipeline>> = store
            .state()
            .into_iter()
            .filter(|o| o.namespace().as_deref() == Some(namespace))
            .map(|o| (o.name_any(), o))
            .collect();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|(ns, name), written| {
            if ns != namespace {
                return true;
            }
            let cached = view.get(name).cloned();
            let stale =
                cached.as_ref().and_then(|c| c.resource_version()) == written.base_resource_version;
            match effective(cached, Some(written)) {
                Some(obj) => view.insert(name.clone(), obj),
                None => view.remove(name),
            };
            // Once the cache moved past the write, the entry has served its purpose.
            stale
        });
        view
    }
}

/// One async lock per namespace: plans and writes of one namespace happen one at a time.
#[derive(Debug, Default)]
pub struct NamespaceLocks {
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl NamespaceLocks {
    /// The lock of `namespace`.
    pub fn of(&self, namespace: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.entry(namespace.to_string()).or_default().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::ImagePipelineSpec;

    fn obj(rv: &str) -> Arc<ImagePipeline> {
        let mut o = ImagePipeline::new("ip-a", ImagePipelineSpec::default());
        o.metadata.namespace = Some("ns".into());
        o.metadata.resource_version = Some(rv.into());
        Arc::new(o)
    }

    #[test]
    fn a_cache_that_lags_behind_our_write_is_corrected_by_it() {
        let write = Written {
            base_resource_version: Some("1".into()),
            after: Some(obj("2")),
        };
        let seen = effective(Some(obj("1")), Some(&write)).unwrap();
        assert_eq!(seen.resource_version().as_deref(), Some("2"));
        let created = Written {
            base_resource_version: None,
            after: Some(obj("5")),
        };
        assert!(effective(None, Some(&created)).is_some());
        let deleted = Written {
            base_resource_version: Some("3".into()),
            after: None,
        };
        assert!(effective(Some(obj("3")), Some(&deleted)).is_none());
    }

    #[test]
    fn a_cache_that_moved_past_our_write_wins() {
        let write = Written {
            base_resource_version: Some("1".into()),
            after: Some(obj("2")),
        };
        let seen = effective(Some(obj("7")), Some(&write)).unwrap();
        assert_eq!(seen.resource_version().as_deref(), Some("7"));
        let deleted = Written {
            base_resource_version: Some("3".into()),
            after: None,
        };
        assert!(effective(None, Some(&deleted)).is_none());
    }
}
