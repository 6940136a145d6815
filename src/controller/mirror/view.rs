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

use crate::controller::mirror::cache::{CacheListener, MirrorCache};
use crate::controller::mirror::mirrored::Mirrored;

/// One write of this process: the resourceVersion it replaced (`None` for a create) and the
/// record of the object the API server answered with (`None` for a deletion); only the record,
/// never the whole answer, is kept until the cache catches up.
#[derive(Debug, Clone, PartialEq)]
pub struct Written {
    /// The resourceVersion the write was based on.
    pub base_resource_version: Option<String>,
    /// The object after the write.
    pub after: Option<Arc<Mirrored>>,
}

/// The object to plan from: the cached one, unless the cache still shows the version a write
/// of ours replaced, in which case the write's result.
pub fn effective(
    cached: Option<Arc<Mirrored>>,
    written: Option<&Written>,
) -> Option<Arc<Mirrored>> {
    match written {
        Some(w) if cached.as_ref().and_then(|c| c.version()) == w.base_resource_version => {
            w.after.clone()
        }
        _ => cached,
    }
}

/// One recorded write, with every version of the object this process's successive writes
/// replaced since the cache last caught up (a create followed by updates, before the cache has
/// seen any of them, replaced "absent" and each intermediate version).
#[derive(Debug, Clone)]
struct Entry {
    written: Written,
    superseded: Vec<Option<String>>,
}

impl Entry {
    /// Whether a cache showing `cached` is still behind this write (it shows a version the
    /// write, or an earlier one of its chain, replaced).
    fn is_ahead_of(&self, cached: Option<&Mirrored>) -> bool {
        self.superseded
            .contains(&cached.and_then(Mirrored::version))
    }
}

/// Writes this process made, by namespace and name, until the cache shows something newer.
/// Cheap to clone (shared).
#[derive(Debug, Default, Clone)]
pub struct RecentWrites {
    entries: Arc<Mutex<HashMap<(String, String), Entry>>>,
    /// The cache the writes are compared with as they are recorded, so a write the cache has
    /// already seen is not kept (a first sync writes every object).
    cache: Option<MirrorCache>,
}

impl RecentWrites {
    /// Recent writes compared with `cache` as they are recorded and as the cache changes
    /// (see [`RecentWrites::observed`]): an entry lives only while the cache is behind it.
    pub fn tracking(cache: MirrorCache) -> Self {
        Self {
            entries: Arc::default(),
            cache: Some(cache),
        }
    }

    /// The cache now shows `name` at `resource_version` (`None`: gone): an entry the cache is
    /// no longer behind is dropped.
    pub fn observed(&self, namespace: &str, name: &str, resource_version: Option<&str>) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let key = (namespace.to_string(), name.to_string());
        let behind = entries.get(&key).is_some_and(|e| {
            e.superseded
                .iter()
                .any(|s| s.as_deref() == resource_version)
        });
        if !behind {
            entries.remove(&key);
        }
    }

    /// Records a write. A write based on the result of the previous recorded write of the same
    /// object continues its chain: a cache still showing any version the chain replaced is
    /// behind it.
    pub fn record(&self, namespace: &str, name: &str, written: Written) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let key = (namespace.to_string(), name.to_string());
        let mut superseded = match entries.get(&key) {
            Some(prev)
                if prev.written.after.as_ref().and_then(|a| a.version())
                    == written.base_resource_version =>
            {
                prev.superseded.clone()
            }
            _ => Vec::new(),
        };
        superseded.push(written.base_resource_version.clone());
        if let Some(cache) = &self.cache {
            let cached = cache.get(namespace, name).and_then(|c| c.version());
            if !superseded.contains(&cached) {
                // The cache has already seen this write (or something newer).
                entries.remove(&key);
                return;
            }
        }
        entries.insert(
            key,
            Entry {
                written,
                superseded,
            },
        );
    }

    /// The ImagePipelines of `namespace` to plan from, by name.
    pub fn namespace_view(
        &self,
        cache: &MirrorCache,
        namespace: &str,
    ) -> BTreeMap<String, Arc<Mirrored>> {
        let mut view = cache.namespace(namespace);
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        entries.retain(|(ns, name), entry| {
            if ns != namespace {
                return true;
            }
            let stale = entry.is_ahead_of(view.get(name).map(AsRef::as_ref));
            if stale {
                match &entry.written.after {
                    Some(obj) => view.insert(name.clone(), obj.clone()),
                    None => view.remove(name),
                };
            }
            // Once the cache moved past the write, the entry has served its purpose.
            stale
        });
        view
    }

    /// The objects named `names` in `namespace` to plan from (those that exist), as
    /// [`RecentWrites::namespace_view`] shows them: what one page of a listing is compared
    /// with, without copying the rest of the namespace.
    pub fn names_view<'n>(
        &self,
        cache: &MirrorCache,
        namespace: &str,
        names: impl IntoIterator<Item = &'n str>,
    ) -> BTreeMap<String, Arc<Mirrored>> {
        self.effective_of(cache, namespace, names)
            .into_iter()
            .filter_map(|(name, object)| Some((name.to_string(), object?)))
            .collect()
    }

    /// Each of `names` in `namespace` as the plan would see it (`None`: no such object), in
    /// the order given, without building a map of names.
    pub fn effective_of<'n>(
        &self,
        cache: &MirrorCache,
        namespace: &str,
        names: impl IntoIterator<Item = &'n str>,
    ) -> Vec<(&'n str, Option<Arc<Mirrored>>)> {
        let mut cached = cache.get_all(namespace, names);
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if entries.is_empty() {
            return cached;
        }
        let mut key = (namespace.to_string(), String::new());
        for (name, object) in &mut cached {
            name.clone_into(&mut key.1);
            if let Some(entry) = entries.get(&key) {
                if entry.is_ahead_of(object.as_deref()) {
                    *object = entry.written.after.clone();
                }
            }
        }
        cached
    }
}

impl CacheListener for RecentWrites {
    fn observed(&self, namespace: &str, name: &str, resource_version: Option<&str>) {
        RecentWrites::observed(self, namespace, name, resource_version);
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

    /// Drops the locks nobody holds or waits for (they are made again when needed).
    pub fn sweep(&self) {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        locks.retain(|_, lock| Arc::strong_count(lock) > 1);
        locks.shrink_to_fit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{ImagePipeline, ImagePipelineSpec};

    fn full(rv: &str) -> ImagePipeline {
        let mut o = ImagePipeline::new("ip-a", ImagePipelineSpec::default());
        o.metadata.namespace = Some("ns".into());
        o.metadata.resource_version = Some(rv.into());
        o
    }

    fn obj(rv: &str) -> Arc<Mirrored> {
        Arc::new(Mirrored::of(&full(rv)))
    }

    #[test]
    fn a_cache_that_lags_behind_our_write_is_corrected_by_it() {
        let write = Written {
            base_resource_version: Some("1".into()),
            after: Some(obj("2")),
        };
        let seen = effective(Some(obj("1")), Some(&write)).unwrap();
        assert_eq!(seen.version().as_deref(), Some("2"));
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
        assert_eq!(seen.version().as_deref(), Some("7"));
        let deleted = Written {
            base_resource_version: Some("3".into()),
            after: None,
        };
        assert!(effective(None, Some(&deleted)).is_none());
    }

    fn store_of(objects: Vec<ImagePipeline>) -> MirrorCache {
        MirrorCache::from_objects(objects)
    }

    #[test]
    fn a_cache_that_has_not_seen_our_create_yet_shows_our_latest_update() {
        let recent = RecentWrites::default();
        let empty = store_of(vec![]);
        // Created (absent → 1), then updated twice (1 → 2 → 3) before the cache saw anything.
        recent.record(
            "ns",
            "ip-a",
            Written {
                base_resource_version: None,
                after: Some(obj("1")),
            },
        );
        for (base, after) in [("1", "2"), ("2", "3")] {
            let view = recent.namespace_view(&empty, "ns");
            assert_eq!(view["ip-a"].version().as_deref(), Some(base));
            recent.record(
                "ns",
                "ip-a",
                Written {
                    base_resource_version: Some(base.into()),
                    after: Some(obj(after)),
                },
            );
        }
        let view = recent.namespace_view(&empty, "ns");
        assert_eq!(view["ip-a"].version().as_deref(), Some("3"));
        // A cache that caught up with an intermediate version is still behind.
        let view = recent.namespace_view(&store_of(vec![full("2")]), "ns");
        assert_eq!(view["ip-a"].version().as_deref(), Some("3"));
        // Once the cache shows a version the chain did not replace, it wins.
        let view = recent.namespace_view(&store_of(vec![full("3")]), "ns");
        assert_eq!(view["ip-a"].version().as_deref(), Some("3"));
        let view = recent.namespace_view(&empty, "ns");
        assert!(
            !view.contains_key("ip-a"),
            "the entry was dropped once caught up"
        );
    }

    #[test]
    fn a_tracking_record_lives_only_while_the_cache_is_behind_it() {
        let created = || Written {
            base_resource_version: None,
            after: Some(obj("1")),
        };
        let empty = MirrorCache::default();
        let recent = RecentWrites::tracking(empty.clone());
        recent.record("ns", "ip-a", created());
        let view = recent.namespace_view(&empty, "ns");
        assert_eq!(view["ip-a"].version().as_deref(), Some("1"));
        // The watch delivered our create: the entry goes at once.
        recent.observed("ns", "ip-a", Some("1"));
        assert!(recent.namespace_view(&empty, "ns").is_empty());
        // A write the cache has already seen is not kept at all.
        let seen = store_of(vec![full("1")]);
        let recent = RecentWrites::tracking(seen.clone());
        recent.record("ns", "ip-a", created());
        assert!(recent.namespace_view(&empty, "ns").is_empty());
        // An event of a version the write replaced keeps it.
        let recent = RecentWrites::tracking(seen.clone());
        recent.record(
            "ns",
            "ip-a",
            Written {
                base_resource_version: Some("1".into()),
                after: Some(obj("2")),
            },
        );
        recent.observed("ns", "ip-a", Some("1"));
        let view = recent.namespace_view(&seen, "ns");
        assert_eq!(view["ip-a"].version().as_deref(), Some("2"));
    }
}
