//! The operator's one view of the ImagePipelines it mirrors: a single watch, reduced at event
//! time to [`Mirrored`] records by namespace and name, and the owner queries each event must
//! trigger (so the controller needs no second watch of the same objects).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use kube::ResourceExt;
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;

use crate::controller::mirror::mirrored::{Mirrored, OwnerSets};
use crate::controller::mirror::ownership::FIELD_MANAGER;
use crate::crd::{ImagePipeline, ImagePipelineQuery};

type Namespaces = HashMap<String, BTreeMap<String, Arc<Mirrored>>>;

/// The mirrored objects by namespace and name; cheap to clone (shared).
#[derive(Debug, Clone)]
pub struct MirrorCache {
    inner: Arc<RwLock<Namespaces>>,
    changes: Arc<Mutex<Changes>>,
    /// How many records carry another instance's references or fields (changed only under
    /// `inner`'s write lock): while none does, the periodic look for them has nothing to scan.
    with_others: Arc<AtomicUsize>,
}

impl Default for MirrorCache {
    fn default() -> Self {
        static CACHES: AtomicU64 = AtomicU64::new(0);
        Self {
            inner: Arc::default(),
            changes: Arc::new(Mutex::new(Changes {
                cache: CACHES.fetch_add(1, Ordering::Relaxed),
                ..Changes::default()
            })),
            with_others: Arc::default(),
        }
    }
}

/// A reading of how often a namespace's records changed: two equal readings of one cache mean
/// nothing in the namespace changed in between (a reading taken before a look at the records
/// is safe to compare later, as the count moves after each change).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Generation {
    cache: u64,
    relists: u64,
    changes: u64,
}

/// The change counts of a cache: re-lists, and the changes of each namespace since the last.
#[derive(Debug, Default)]
struct Changes {
    /// Which cache (readings of two caches never compare equal).
    cache: u64,
    relists: u64,
    by_namespace: HashMap<String, u64>,
}

impl MirrorCache {
    /// The namespace's [`Generation`] now.
    pub fn generation(&self, namespace: &str) -> Generation {
        let changes = self.changes.lock().unwrap_or_else(|e| e.into_inner());
        Generation {
            cache: changes.cache,
            relists: changes.relists,
            changes: changes.by_namespace.get(namespace).copied().unwrap_or(0),
        }
    }

    /// Counts `record`, just added, if it carries other instances' data; called under
    /// `inner`'s write lock.
    fn count_added(&self, record: &Mirrored) {
        if record.others.is_some() {
            self.with_others.fetch_add(1, Ordering::AcqRel);
        }
    }

    /// Uncounts `record`, just removed or replaced; called under `inner`'s write lock.
    fn count_removed(&self, record: &Mirrored) {
        if record.others.is_some() {
            self.with_others.fetch_sub(1, Ordering::AcqRel);
        }
    }

    /// Counts a change of `namespace`'s records (made before this call).
    fn changed(&self, namespace: &str) {
        let mut changes = self.changes.lock().unwrap_or_else(|e| e.into_inner());
        *changes
            .by_namespace
            .entry(namespace.to_string())
            .or_default() += 1;
    }

    /// Counts a re-list (made before this call): every namespace may have changed.
    fn relisted(&self) {
        let mut changes = self.changes.lock().unwrap_or_else(|e| e.into_inner());
        changes.relists += 1;
        changes.by_namespace = HashMap::new();
    }

    /// A cache holding `objects` (tests, benchmarks).
    pub fn from_objects(objects: impl IntoIterator<Item = ImagePipeline>) -> Self {
        let cache = Self::default();
        let mut feeder = CacheFeeder::new(cache.clone());
        feeder.on_event(watcher::Event::Init);
        for o in objects {
            feeder.on_event(watcher::Event::InitApply(o));
        }
        feeder.on_event(watcher::Event::InitDone);
        cache
    }

    /// The records of `namespace`, by name.
    pub fn namespace(&self, namespace: &str) -> BTreeMap<String, Arc<Mirrored>> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner.get(namespace).cloned().unwrap_or_default()
    }

    /// The records, by namespace, that satisfy `pred` (looked at in place, nothing copied for
    /// the others).
    pub fn matching(
        &self,
        mut pred: impl FnMut(&Mirrored) -> bool,
    ) -> BTreeMap<String, Vec<Arc<Mirrored>>> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let mut found: BTreeMap<String, Vec<Arc<Mirrored>>> = BTreeMap::new();
        for (ns, objects) in inner.iter() {
            for m in objects.values().filter(|m| pred(m)) {
                found.entry(ns.clone()).or_default().push(m.clone());
            }
        }
        found
    }

    /// Whether any record carries another operator instance's references or fields (see
    /// [`Mirrored::others`]); without one, [`matching`](Self::matching) on those finds nothing.
    pub fn any_with_others(&self) -> bool {
        self.with_others.load(Ordering::Acquire) > 0
    }

    /// The names of the records of `namespace` that satisfy `pred` (looked at in place).
    pub fn names_in(
        &self,
        namespace: &str,
        mut pred: impl FnMut(&Mirrored) -> bool,
    ) -> Vec<String> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner
            .get(namespace)
            .into_iter()
            .flat_map(|objects| objects.iter())
            .filter(|(_, m)| pred(m))
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// The records of `names` in `namespace` (`None` for those it does not have), looked up
    /// under one lock.
    pub fn get_all<'n>(
        &self,
        namespace: &str,
        names: impl IntoIterator<Item = &'n str>,
    ) -> Vec<(&'n str, Option<Arc<Mirrored>>)> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        let objects = inner.get(namespace);
        names
            .into_iter()
            .map(|name| (name, objects.and_then(|o| o.get(name)).cloned()))
            .collect()
    }

    /// The record of one object.
    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<Mirrored>> {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner.get(namespace).and_then(|ns| ns.get(name)).cloned()
    }

    /// How many objects it holds.
    pub fn len(&self) -> usize {
        let inner = self.inner.read().unwrap_or_else(|e| e.into_inner());
        inner.values().map(BTreeMap::len).sum()
    }

    /// Whether it holds nothing.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The owner queries of a record, as controller triggers.
fn owner_refs(
    namespace: &str,
    m: &Mirrored,
) -> impl Iterator<Item = ObjectRef<ImagePipelineQuery>> {
    let namespace = namespace.to_string();
    // Other shards' references too: one may name a query that moved here.
    m.owners
        .iter()
        .chain(m.other_owners().iter())
        .map(move |r| ObjectRef::new(&r.name).within(&namespace))
        .collect::<Vec<_>>()
        .into_iter()
}

/// Told, after each event, what the cache now shows of an object (its resourceVersion, `None`
/// when gone): the view of recent writes drops what the cache has caught up with.
pub trait CacheListener: Send + Sync + 'static {
    /// The cache now shows `namespace/name` at `resource_version`.
    fn observed(&self, namespace: &str, name: &str, resource_version: Option<&str>);
}

/// Applies watch events to a [`MirrorCache`]: every object is reduced to its record on arrival
/// (a listing page is dropped as soon as it is reduced), and a re-list replaces the cache's
/// content at its end.
pub struct CacheFeeder {
    cache: MirrorCache,
    manager: String,
    relisting: Option<Namespaces>,
    owner_sets: OwnerSets,
    listener: Option<Box<dyn CacheListener>>,
}

impl CacheFeeder {
    /// Feeds `cache`, recording objects as the main instance ([`FIELD_MANAGER`]) sees them.
    pub fn new(cache: MirrorCache) -> Self {
        Self {
            cache,
            manager: FIELD_MANAGER.to_string(),
            relisting: None,
            owner_sets: OwnerSets::default(),
            listener: None,
        }
    }

    /// The same feeder, recording objects as the instance applying under `manager` (a
    /// shard's) sees them.
    pub fn with_field_manager(mut self, manager: impl Into<String>) -> Self {
        self.manager = manager.into();
        self
    }

    /// Also tells `listener` what the cache now shows after each event (so recent writes the
    /// cache has caught up with are forgotten at once).
    pub fn with_listener(mut self, listener: impl CacheListener) -> Self {
        self.listener = Some(Box::new(listener));
        self
    }

    /// The cached record of `obj` when the cache has it at the same resourceVersion.
    fn unchanged(&self, namespace: &str, obj: &ImagePipeline) -> Option<Arc<Mirrored>> {
        let version = obj.metadata.resource_version.as_deref()?;
        let name = obj.metadata.name.as_deref()?;
        let inner = self.cache.inner.read().unwrap_or_else(|e| e.into_inner());
        inner
            .get(namespace)
            .and_then(|objects| objects.get(name))
            .filter(|m| m.resource_version.as_ref().is_some_and(|v| v.is(version)))
            .cloned()
    }

    fn observed(&self, namespace: &str, name: &str, resource_version: Option<&str>) {
        if let Some(listener) = &self.listener {
            listener.observed(namespace, name, resource_version);
        }
    }

    /// Applies one event; returns the queries to reconcile because of it: the owners (before
    /// and after) of a changed or deleted object, and after a (re-)list the owners of every
    /// object that changed meanwhile.
    pub fn on_event(
        &mut self,
        event: watcher::Event<ImagePipeline>,
    ) -> HashSet<ObjectRef<ImagePipelineQuery>> {
        let mut triggers = HashSet::new();
        match event {
            watcher::Event::Init => self.relisting = Some(Namespaces::new()),
            watcher::Event::InitApply(obj) => {
                if self.relisting.is_none() {
                    return triggers;
                }
                let namespace = obj.namespace().unwrap_or_default();
                // An object the cache already has at this resourceVersion keeps its record: a
                // re-list (a watch that expired, an API server restart) then costs the new map,
                // not a second copy of every record.
                let record = self.unchanged(&namespace, &obj).unwrap_or_else(|| {
                    Arc::new(Mirrored::interned(
                        &obj,
                        &self.manager,
                        &mut self.owner_sets,
                    ))
                });
                if let Some(next) = self.relisting.as_mut() {
                    next.entry(namespace)
                        .or_default()
                        .insert(record.name.clone(), record);
                }
            }
            watcher::Event::InitDone => {
                let next = self.relisting.take().unwrap_or_default();
                let mut inner = self.cache.inner.write().unwrap_or_else(|e| e.into_inner());
                let mut with_others = 0;
                for (ns, objects) in &next {
                    let old = inner.get(ns);
                    for (name, m) in objects {
                        if old.and_then(|o| o.get(name)) != Some(m) {
                            triggers.extend(owner_refs(ns, m));
                        }
                        with_others += usize::from(m.others.is_some());
                    }
                }
                for (ns, objects) in inner.iter() {
                    let new = next.get(ns);
                    for (name, m) in objects {
                        if new.and_then(|n| n.get(name)).is_none() {
                            triggers.extend(owner_refs(ns, m));
                        }
                    }
                }
                *inner = next;
                self.cache.with_others.store(with_others, Ordering::Release);
                drop(inner);
                self.cache.relisted();
            }
            watcher::Event::Apply(obj) => {
                let namespace = obj.namespace().unwrap_or_default();
                let record = Arc::new(Mirrored::interned(
                    &obj,
                    &self.manager,
                    &mut self.owner_sets,
                ));
                drop(obj);
                triggers.extend(owner_refs(&namespace, &record));
                let (name, rv) = (record.name.clone(), record.resource_version.clone());
                let mut inner = self.cache.inner.write().unwrap_or_else(|e| e.into_inner());
                self.cache.count_added(&record);
                let old = inner
                    .entry(namespace.clone())
                    .or_default()
                    .insert(record.name.clone(), record);
                if let Some(old) = &old {
                    self.cache.count_removed(old);
                }
                drop(inner);
                self.cache.changed(&namespace);
                if let Some(old) = old {
                    triggers.extend(owner_refs(&namespace, &old));
                }
                self.observed(&namespace, &name, rv.map(|v| v.to_string()).as_deref());
            }
            watcher::Event::Delete(obj) => {
                let namespace = obj.namespace().unwrap_or_default();
                let name = obj.name_any();
                triggers.extend(owner_refs(
                    &namespace,
                    &Mirrored::of_as(&obj, &self.manager),
                ));
                let mut inner = self.cache.inner.write().unwrap_or_else(|e| e.into_inner());
                if let Some(ns) = inner.get_mut(&namespace) {
                    if let Some(old) = ns.remove(&name) {
                        self.cache.count_removed(&old);
                        triggers.extend(owner_refs(&namespace, &old));
                    }
                    if ns.is_empty() {
                        inner.remove(&namespace);
                    }
                }
                drop(inner);
                self.cache.changed(&namespace);
                self.observed(&namespace, &name, None);
            }
        }
        triggers
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::desired::owner_reference;
    use crate::crd::ImagePipelineSpec;

    fn obj(name: &str, rv: &str, owner: &str) -> ImagePipeline {
        let mut o = ImagePipeline::new(name, ImagePipelineSpec::default());
        o.metadata.namespace = Some("ns".into());
        o.metadata.resource_version = Some(rv.into());
        o.metadata.owner_references = Some(vec![owner_reference(owner, &format!("uid-{owner}"))]);
        o
    }

    fn names(t: &HashSet<ObjectRef<ImagePipelineQuery>>) -> Vec<String> {
        let mut names: Vec<String> = t.iter().map(|r| r.name.clone()).collect();
        names.sort();
        names
    }

    /// `obj` as the main instance's apply left it: its fields (the owner reference included)
    /// managed by [`FIELD_MANAGER`].
    fn applied_by_main(mut o: ImagePipeline) -> ImagePipeline {
        o.metadata.managed_fields =
            Some(vec![crate::controller::mirror::ownership::apply_entry(&o)]);
        o
    }

    #[test]
    fn the_cache_tells_whether_any_record_carries_another_instances_data() {
        let cache = MirrorCache::default();
        // Seen from a shard, the main instance's references are another instance's.
        let mut feeder =
            CacheFeeder::new(cache.clone()).with_field_manager(format!("{FIELD_MANAGER}-1"));
        feeder.on_event(watcher::Event::Init);
        feeder.on_event(watcher::Event::InitApply(obj("plain", "1", "q")));
        feeder.on_event(watcher::Event::InitDone);
        assert!(!cache.any_with_others(), "only untracked objects");

        feeder.on_event(watcher::Event::Apply(applied_by_main(obj(
            "shared", "2", "q",
        ))));
        assert!(cache.any_with_others());
        assert_eq!(cache.matching(|m| m.others.is_some()).len(), 1);

        feeder.on_event(watcher::Event::Apply(obj("shared", "3", "q")));
        assert!(!cache.any_with_others(), "replaced by a record without");

        feeder.on_event(watcher::Event::Apply(applied_by_main(obj(
            "shared", "4", "q",
        ))));
        feeder.on_event(watcher::Event::Apply(applied_by_main(obj(
            "other", "5", "q",
        ))));
        feeder.on_event(watcher::Event::Delete(obj("shared", "6", "q")));
        assert!(cache.any_with_others(), "one left");
        feeder.on_event(watcher::Event::Delete(obj("other", "7", "q")));
        assert!(!cache.any_with_others(), "both deleted");

        feeder.on_event(watcher::Event::Init);
        feeder.on_event(watcher::Event::InitApply(applied_by_main(obj(
            "a", "8", "q",
        ))));
        feeder.on_event(watcher::Event::InitApply(applied_by_main(obj(
            "b", "9", "q",
        ))));
        feeder.on_event(watcher::Event::InitDone);
        feeder.on_event(watcher::Event::Delete(obj("a", "10", "q")));
        assert!(cache.any_with_others(), "counted at the re-list's end");
        feeder.on_event(watcher::Event::Init);
        feeder.on_event(watcher::Event::InitDone);
        assert!(!cache.any_with_others(), "an empty re-list");
    }

    #[test]
    fn a_relist_keeps_the_records_of_unchanged_objects_and_triggers_nothing_for_them() {
        let cache = MirrorCache::default();
        let mut feeder = CacheFeeder::new(cache.clone());
        feeder.on_event(watcher::Event::Init);
        feeder.on_event(watcher::Event::InitApply(obj("ip-a", "1", "a")));
        feeder.on_event(watcher::Event::InitApply(obj("ip-b", "1", "b")));
        feeder.on_event(watcher::Event::InitDone);
        let (a, b) = (
            cache.get("ns", "ip-a").unwrap(),
            cache.get("ns", "ip-b").unwrap(),
        );
        // The watch expired: everything is listed again, ip-b changed meanwhile.
        feeder.on_event(watcher::Event::Init);
        feeder.on_event(watcher::Event::InitApply(obj("ip-a", "1", "a")));
        feeder.on_event(watcher::Event::InitApply(obj("ip-b", "2", "c")));
        let t = feeder.on_event(watcher::Event::InitDone);
        assert_eq!(names(&t), ["c"], "only the changed object's owner looks");
        assert!(
            Arc::ptr_eq(&a, &cache.get("ns", "ip-a").unwrap()),
            "the same record"
        );
        let b2 = cache.get("ns", "ip-b").unwrap();
        assert!(!Arc::ptr_eq(&b, &b2));
        assert_eq!(b2.version().as_deref(), Some("2"));
    }

    #[test]
    fn changes_and_deletions_trigger_the_owners_before_and_after() {
        let cache = MirrorCache::default();
        let mut feeder = CacheFeeder::new(cache.clone());
        feeder.on_event(watcher::Event::Init);
        feeder.on_event(watcher::Event::InitApply(obj("ip-a", "1", "a")));
        assert!(cache.is_empty(), "a listing shows only once complete");
        assert_eq!(names(&feeder.on_event(watcher::Event::InitDone)), ["a"]);
        assert_eq!(cache.len(), 1);
        // Someone moved the object to another owner: both queries must look.
        let t = feeder.on_event(watcher::Event::Apply(obj("ip-a", "2", "b")));
        assert_eq!(names(&t), ["a", "b"]);
        assert_eq!(
            cache.get("ns", "ip-a").unwrap().version().as_deref(),
            Some("2")
        );
        let t = feeder.on_event(watcher::Event::Delete(obj("ip-a", "3", "b")));
        assert_eq!(names(&t), ["b"]);
        assert!(cache.get("ns", "ip-a").is_none());
    }

    #[test]
    fn a_namespace_generation_moves_with_each_change_there_and_each_relist_only() {
        let cache = MirrorCache::default();
        let mut feeder = CacheFeeder::new(cache.clone());
        let before = cache.generation("ns");
        assert_eq!(cache.generation("ns"), before, "nothing changed");
        feeder.on_event(watcher::Event::Apply(obj("ip-a", "1", "a")));
        let applied = cache.generation("ns");
        assert_ne!(applied, before);
        let mut elsewhere = obj("ip-b", "2", "a");
        elsewhere.metadata.namespace = Some("other".into());
        feeder.on_event(watcher::Event::Apply(elsewhere));
        assert_eq!(
            cache.generation("ns"),
            applied,
            "another namespace's change"
        );
        feeder.on_event(watcher::Event::Delete(obj("ip-a", "3", "a")));
        let deleted = cache.generation("ns");
        assert_ne!(deleted, applied);
        feeder.on_event(watcher::Event::Init);
        feeder.on_event(watcher::Event::InitDone);
        assert_ne!(
            cache.generation("ns"),
            deleted,
            "a re-list may change anything"
        );
        assert_ne!(
            MirrorCache::default().generation("ns"),
            cache.generation("ns"),
            "readings of two caches never match"
        );
    }

    #[test]
    fn a_relist_triggers_the_owners_of_what_changed_while_the_watch_was_down() {
        let cache = MirrorCache::default();
        let mut feeder = CacheFeeder::new(cache.clone());
        feeder.on_event(watcher::Event::Init);
        for o in [
            obj("ip-a", "1", "a"),
            obj("ip-b", "1", "b"),
            obj("ip-c", "1", "c"),
        ] {
            feeder.on_event(watcher::Event::InitApply(o));
        }
        feeder.on_event(watcher::Event::InitDone);
        feeder.on_event(watcher::Event::Init);
        // ip-a unchanged, ip-b edited, ip-c deleted.
        feeder.on_event(watcher::Event::InitApply(obj("ip-a", "1", "a")));
        feeder.on_event(watcher::Event::InitApply(obj("ip-b", "5", "b")));
        assert_eq!(
            cache.len(),
            3,
            "the old picture stays until the re-list is complete"
        );
        let t = feeder.on_event(watcher::Event::InitDone);
        assert_eq!(names(&t), ["b", "c"]);
        assert_eq!(cache.len(), 2);
    }
}
