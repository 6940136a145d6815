//! The compact record the operator keeps of each mirrored ImagePipeline, and the content hash
//! that stands in for its spec.
//!
//! Why: the plan needs of an existing object only its identity (uid, resourceVersion), its
//! query owners, the labels and annotations the operator manages, whether it is being deleted,
//! and whether its pipeline content equals the listing's. A full cached object (spec, metadata,
//! managed fields) costs several KiB; this record costs a few hundred bytes, which is what
//! keeps the operator's memory flat in the number of mirrored pipelines. The content is
//! compared by a 64-bit hash of the mirrored fields (everything but `lastSyncTime`), computed
//! the same way from the object's spec and from the listing's item.

use std::collections::{HashMap, HashSet};
use std::hash::{BuildHasher, Hash};
use std::sync::Arc;
use std::sync::OnceLock;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

use crate::controller::mirror::ownership::{FIELD_MANAGER, FieldSet, Ownership, is_query_ref};
use crate::crd::{ImagePipeline, ImagePipelineSpec};
use crate::ecs::{ImagePipelineItem, Listing};

/// A label or annotation the operator manages on an object: its key, and its value when the
/// object has it.
pub type ManagedEntry = (String, Option<String>);

/// What the operator remembers of one mirrored ImagePipeline.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Mirrored {
    /// The object name (the pipeline ID).
    pub name: String,
    /// `metadata.uid`.
    pub uid: Option<Compact>,
    /// `metadata.resourceVersion`.
    pub resource_version: Option<Compact>,
    /// The ImagePipelineQuery owner references this instance's apply set, in the object's order
    /// (shared between the records with the same owners, see [`OwnerSets`]). References to
    /// queries that only someone else added are left out: they are not the operator's, and are
    /// removed.
    pub owners: Arc<[OwnerReference]>,
    /// What other operator instances (other shards) set on the object; `None`, and no memory
    /// spent, in the usual case of an object only this instance writes.
    pub others: Option<Box<OtherInstances>>,
    /// Whether the object has query owner references that only someone else added.
    pub foreign_owners: bool,
    /// Spec fields someone else set that the operator's apply does not own.
    pub foreign_spec: FieldSet,
    /// The labels the operator's field manager owns, with their values (shared between the
    /// records with the same ones, see [`OwnerSets`]).
    pub labels: Arc<[ManagedEntry]>,
    /// The annotations the operator's field manager owns, with their values (shared).
    pub annotations: Arc<[ManagedEntry]>,
    /// [`spec_hash`] of the object's spec.
    pub content_hash: u64,
    /// `spec.lastSyncTime` (shared: every object a sync writes has the same).
    pub last_sync_time: Option<Arc<str>>,
    /// Whether `metadata.deletionTimestamp` is set.
    pub terminating: bool,
}

/// A short text as an index record keeps it: the UUIDs and decimal numbers a real API server
/// uses for `uid` and `resourceVersion` in 16 bytes (no allocation), anything else boxed. Why:
/// these two texts alone cost about 100 bytes per mirrored object as `String`s.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Compact {
    /// A canonical lowercase UUID (`8-4-4-4-12` hex digits).
    Uuid([u8; 16]),
    /// A canonical decimal number (no sign, no leading zero).
    Number(u64),
    /// Anything else.
    Text(Box<str>),
}

impl Compact {
    /// `text`, compactly.
    pub fn new(text: &str) -> Self {
        Self::canonical(text).unwrap_or_else(|| Self::Text(text.into()))
    }

    /// `text` as a UUID or number when it is one in canonical form (so that it reads back
    /// exactly), without allocating.
    fn canonical(text: &str) -> Option<Self> {
        let b = text.as_bytes();
        if !b.is_empty()
            && b.len() <= 19
            && b.iter().all(u8::is_ascii_digit)
            && (b[0] != b'0' || b.len() == 1)
        {
            return text.parse().ok().map(Self::Number);
        }
        if b.len() == 36 {
            let mut out = [0u8; 16];
            let mut nibbles = 0;
            for (i, c) in b.iter().enumerate() {
                if matches!(i, 8 | 13 | 18 | 23) {
                    if *c != b'-' {
                        return None;
                    }
                    continue;
                }
                let v = match c {
                    b'0'..=b'9' => c - b'0',
                    b'a'..=b'f' => c - b'a' + 10,
                    _ => return None,
                };
                out[nibbles / 2] |= if nibbles % 2 == 0 { v << 4 } else { v };
                nibbles += 1;
            }
            return Some(Self::Uuid(out));
        }
        None
    }

    /// Whether it is `text`.
    pub fn is(&self, text: &str) -> bool {
        match (self, Self::canonical(text)) {
            (Self::Text(t), None) => &**t == text,
            (_, Some(other)) => *self == other,
            _ => false,
        }
    }
}

impl std::fmt::Display for Compact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Uuid(b) => {
                for (i, byte) in b.iter().enumerate() {
                    if matches!(i, 4 | 6 | 8 | 10) {
                        f.write_str("-")?;
                    }
                    write!(f, "{byte:02x}")?;
                }
                Ok(())
            }
            Self::Number(n) => write!(f, "{n}"),
            Self::Text(t) => f.write_str(t),
        }
    }
}

impl std::fmt::Debug for Compact {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}", self.to_string())
    }
}

/// Whether `a` and `b` are the same version (both absent, or equal texts).
pub fn same_version(a: Option<&Compact>, b: Option<&str>) -> bool {
    match (a, b) {
        (None, None) => true,
        (Some(a), Some(b)) => a.is(b),
        _ => false,
    }
}

/// What other operator instances set on a mirrored object, as one instance sees it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct OtherInstances {
    /// The query owner references only other instances set: theirs to keep or remove, unless
    /// they name a query this instance serves.
    pub owners: Arc<[OwnerReference]>,
    /// UIDs of the references in [`Mirrored::owners`] that another instance set too (a query
    /// that moved between shards, adopted by its new shard).
    pub co_owned: Box<[String]>,
    /// Label keys other instances set and this one does not (the first writer keeps them).
    pub claimed_labels: Box<[String]>,
    /// Annotation keys other instances set and this one does not.
    pub claimed_annotations: Box<[String]>,
}

impl OtherInstances {
    fn is_empty(&self) -> bool {
        self.owners.is_empty()
            && self.co_owned.is_empty()
            && self.claimed_labels.is_empty()
            && self.claimed_annotations.is_empty()
    }
}

fn managed(
    map: Option<&std::collections::BTreeMap<String, String>>,
    keys: std::collections::BTreeSet<String>,
) -> Vec<ManagedEntry> {
    keys.into_iter()
        .map(|k| {
            let v = map.and_then(|m| m.get(&k)).cloned();
            (k, v)
        })
        .collect()
}

impl Mirrored {
    /// The record of `obj`, as the main instance ([`FIELD_MANAGER`]) sees it.
    pub fn of(obj: &ImagePipeline) -> Self {
        Self::of_as(obj, FIELD_MANAGER)
    }

    /// The record of `obj`, as the instance applying under `manager` sees it.
    pub fn of_as(obj: &ImagePipeline, manager: &str) -> Self {
        let ownership = Ownership::of_as(obj, manager);
        let (claimed_labels, claimed_annotations) = ownership.sibling_only_keys();
        let query_refs = || {
            obj.metadata
                .owner_references
                .iter()
                .flatten()
                .filter(|r| is_query_ref(r))
        };
        Self {
            name: obj.metadata.name.clone().unwrap_or_default(),
            uid: obj.metadata.uid.as_deref().map(Compact::new),
            resource_version: obj.metadata.resource_version.as_deref().map(Compact::new),
            owners: query_refs()
                .filter(|r| !ownership.is_foreign_owner(&r.uid))
                .filter(|r| !ownership.is_sibling_owner(&r.uid))
                .cloned()
                .collect(),
            others: Some(Box::new(OtherInstances {
                owners: query_refs()
                    .filter(|r| ownership.is_sibling_owner(&r.uid))
                    .cloned()
                    .collect(),
                co_owned: query_refs()
                    .filter(|r| ownership.is_co_owned(&r.uid))
                    .map(|r| r.uid.clone())
                    .collect(),
                claimed_labels: claimed_labels.into_iter().collect(),
                claimed_annotations: claimed_annotations.into_iter().collect(),
            }))
            .filter(|o| !o.is_empty()),
            foreign_owners: query_refs().any(|r| ownership.is_foreign_owner(&r.uid)),
            foreign_spec: ownership.foreign_spec(),
            labels: managed(obj.metadata.labels.as_ref(), ownership.ours.labels).into(),
            annotations: managed(
                obj.metadata.annotations.as_ref(),
                ownership.ours.annotations,
            )
            .into(),
            content_hash: spec_hash(&obj.spec),
            last_sync_time: obj.spec.last_sync_time.as_deref().map(Arc::from),
            terminating: obj.metadata.deletion_timestamp.is_some(),
        }
    }

    /// The record of `obj` as the instance applying under `manager` sees it, its owner lists
    /// shared through `sets`.
    pub fn interned(obj: &ImagePipeline, manager: &str, sets: &mut OwnerSets) -> Self {
        let mut record = Self::of_as(obj, manager);
        record.owners = sets.intern(record.owners);
        if let Some(others) = record.others.as_mut() {
            others.owners = sets.intern(others.owners.clone());
        }
        record.labels = sets.intern_entries(record.labels);
        record.annotations = sets.intern_entries(record.annotations);
        record.last_sync_time = record.last_sync_time.map(|t| sets.intern_text(t));
        record
    }

    /// `metadata.resourceVersion` as text.
    pub fn version(&self) -> Option<String> {
        self.resource_version.as_ref().map(ToString::to_string)
    }

    /// `metadata.uid` as text.
    pub fn uid_text(&self) -> Option<String> {
        self.uid.as_ref().map(ToString::to_string)
    }

    /// `spec.lastSyncTime` as text.
    pub fn last_sync_text(&self) -> Option<String> {
        self.last_sync_time.as_deref().map(String::from)
    }

    /// The query owner references only other operator instances set.
    pub fn other_owners(&self) -> &[OwnerReference] {
        self.others.as_ref().map_or(&[], |o| &o.owners)
    }

    /// UIDs of this instance's references that another instance set too.
    pub fn co_owned(&self) -> &[String] {
        self.others.as_ref().map_or(&[], |o| &o.co_owned)
    }

    /// Label keys other operator instances set and this one does not.
    pub fn claimed_labels(&self) -> &[String] {
        self.others.as_ref().map_or(&[], |o| &o.claimed_labels)
    }

    /// Annotation keys other operator instances set and this one does not.
    pub fn claimed_annotations(&self) -> &[String] {
        self.others.as_ref().map_or(&[], |o| &o.claimed_annotations)
    }

    /// Whether the query with `uid` owns the object (by this instance's reference, or by
    /// another instance's).
    pub fn is_owned_by(&self, uid: &str) -> bool {
        self.owners
            .iter()
            .chain(self.other_owners().iter())
            .any(|r| r.uid == uid)
    }
}

/// Owner lists by content: most mirrored objects of a namespace have the same one or two
/// owners, so the records share one copy.
#[derive(Debug, Default)]
pub struct OwnerSets {
    sets: HashMap<String, Arc<[OwnerReference]>>,
    /// Label and annotation sets by content (every object of a query has the same).
    entries: HashSet<Arc<[ManagedEntry]>>,
    /// `lastSyncTime` values (every object a sync wrote has the same).
    texts: HashSet<Arc<str>>,
    /// Interns since the last sweep of sets no record uses.
    since_sweep: usize,
}

/// Interns between two sweeps of unused owner sets: queries come and go, and the sets of the
/// ones that are gone must not pile up.
const OWNER_SET_SWEEP_EVERY: usize = 1024;

impl OwnerSets {
    /// The shared copy of `owners`.
    pub fn intern(&mut self, owners: Arc<[OwnerReference]>) -> Arc<[OwnerReference]> {
        let mut key = String::new();
        for r in owners.iter() {
            for part in [r.api_version.as_str(), &r.kind, &r.name, &r.uid] {
                key.push_str(part);
                key.push('\0');
            }
            key.push(if r.controller == Some(true) { 'c' } else { '-' });
            key.push(if r.block_owner_deletion == Some(true) {
                'b'
            } else {
                '-'
            });
        }
        self.since_sweep += 1;
        if self.since_sweep >= OWNER_SET_SWEEP_EVERY || self.sets.len() > 4096 {
            // Owner sets no record uses any more.
            self.sets.retain(|_, s| Arc::strong_count(s) > 1);
            self.sets.shrink_to_fit();
            self.entries.retain(|s| Arc::strong_count(s) > 1);
            self.entries.shrink_to_fit();
            self.texts.retain(|s| Arc::strong_count(s) > 1);
            self.texts.shrink_to_fit();
            self.since_sweep = 0;
        }
        self.sets.entry(key).or_insert(owners).clone()
    }

    /// The shared copy of a label or annotation set (the empty one needs none).
    pub fn intern_entries(&mut self, entries: Arc<[ManagedEntry]>) -> Arc<[ManagedEntry]> {
        if entries.is_empty() {
            return entries;
        }
        if let Some(shared) = self.entries.get(&entries) {
            return shared.clone();
        }
        self.entries.insert(entries.clone());
        entries
    }

    /// The shared copy of a text.
    pub fn intern_text(&mut self, text: Arc<str>) -> Arc<str> {
        if let Some(shared) = self.texts.get(&text) {
            return shared.clone();
        }
        self.texts.insert(text.clone());
        text
    }
}

/// The mirrored fields, borrowed from either a spec or a listing item, hashed field by field.
#[derive(Hash)]
struct Content<'a> {
    image_pipeline_id: &'a str,
    region_id: &'a str,
    name: Option<&'a str>,
    description: Option<&'a str>,
    base_image: Option<&'a str>,
    base_image_type: Option<&'a str>,
    build_content: Option<&'a str>,
    test_content: Option<&'a str>,
    repair_mode: Option<&'a str>,
    image_name: Option<&'a str>,
    image_family: Option<&'a str>,
    instance_type: Option<&'a str>,
    system_disk_size: Option<i64>,
    internet_max_bandwidth_out: Option<i64>,
    v_switch_id: Option<&'a str>,
    delete_instance_on_failure: Option<bool>,
    resource_group_id: Option<&'a str>,
    creation_time: Option<&'a str>,
    tags: Vec<(&'a str, &'a str)>,
    to_region_ids: &'a [String],
    add_accounts: &'a [String],
}

impl Content<'_> {
    fn hash(&self) -> u64 {
        // foldhash (several times SipHash's speed on a kilobyte of text, and a refresh hashes
        // every listed item), seeded at random once per process: the same value for the same
        // content throughout the process, and no collision anyone can prepare in advance.
        static SEED: OnceLock<foldhash::quality::RandomState> = OnceLock::new();
        SEED.get_or_init(foldhash::quality::RandomState::default)
            .hash_one(self)
    }
}

/// The hash of a spec's pipeline content (everything but `lastSyncTime`).
pub fn spec_hash(spec: &ImagePipelineSpec) -> u64 {
    // Exhaustive on purpose: a new field fails to compile here until it is hashed.
    let ImagePipelineSpec {
        image_pipeline_id,
        region_id,
        name,
        description,
        base_image,
        base_image_type,
        build_content,
        test_content,
        repair_mode,
        image_name,
        image_family,
        instance_type,
        system_disk_size,
        internet_max_bandwidth_out,
        v_switch_id,
        delete_instance_on_failure,
        resource_group_id,
        creation_time,
        tags,
        to_region_ids,
        add_accounts,
        last_sync_time: _,
    } = spec;
    Content {
        image_pipeline_id,
        region_id,
        name: name.as_deref(),
        description: description.as_deref(),
        base_image: base_image.as_deref(),
        base_image_type: base_image_type.as_deref(),
        build_content: build_content.as_deref(),
        test_content: test_content.as_deref(),
        repair_mode: repair_mode.as_deref(),
        image_name: image_name.as_deref(),
        image_family: image_family.as_deref(),
        instance_type: instance_type.as_deref(),
        system_disk_size: *system_disk_size,
        internet_max_bandwidth_out: *internet_max_bandwidth_out,
        v_switch_id: v_switch_id.as_deref(),
        delete_instance_on_failure: *delete_instance_on_failure,
        resource_group_id: resource_group_id.as_deref(),
        creation_time: creation_time.as_deref(),
        tags: tags
            .iter()
            .map(|t| (t.tag_key.as_str(), t.tag_value.as_str()))
            .collect(),
        to_region_ids,
        add_accounts,
    }
    .hash()
}

/// The hash of the content `item` is mirrored as in `region_id`: equal to [`spec_hash`] of
/// `ImagePipelineSpec::from_item(item, region_id)`, without building it.
pub fn item_hash(item: &ImagePipelineItem, region_id: &str) -> u64 {
    Content {
        image_pipeline_id: &item.image_pipeline_id,
        region_id,
        name: item.name.as_deref(),
        description: item.description.as_deref(),
        base_image: item.base_image.as_deref(),
        base_image_type: item.base_image_type.as_deref(),
        build_content: item.build_content.as_deref(),
        test_content: item.test_content.as_deref(),
        repair_mode: item.repair_mode.as_deref(),
        image_name: item.image_name.as_deref(),
        image_family: item.image_family.as_deref(),
        instance_type: item.instance_type.as_deref(),
        system_disk_size: item.system_disk_size,
        internet_max_bandwidth_out: item.internet_max_bandwidth_out,
        v_switch_id: item.v_switch_id.as_deref(),
        delete_instance_on_failure: item.delete_instance_on_failure,
        resource_group_id: item.resource_group_id.as_deref(),
        creation_time: item.creation_time.as_deref(),
        tags: item
            .tags
            .iter()
            .map(|t| (t.key.as_str(), t.value.as_str()))
            .collect(),
        to_region_ids: &item.to_region_ids,
        add_accounts: &item.add_accounts,
    }
    .hash()
}

/// A pipeline of a listing, as the plan reads it: its ID and the hash of its content. A full
/// item also gives the content itself, for the objects that must be written.
pub trait Listed {
    /// The pipeline ID.
    fn id(&self) -> &str;
    /// The content hash in `region_id` (see [`item_hash`]).
    fn content_hash(&self, region_id: &str) -> u64;
    /// The full item, when this is one.
    fn item(&self) -> Option<&ImagePipelineItem>;
}

impl Listed for ImagePipelineItem {
    fn id(&self) -> &str {
        &self.image_pipeline_id
    }
    fn content_hash(&self, region_id: &str) -> u64 {
        item_hash(self, region_id)
    }
    fn item(&self) -> Option<&ImagePipelineItem> {
        Some(self)
    }
}

/// One pipeline of a remembered listing: its ID and content hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DigestEntry {
    /// The pipeline ID.
    pub id: Box<str>,
    /// The content hash in the listing's region.
    pub hash: u64,
}

impl Listed for DigestEntry {
    fn id(&self) -> &str {
        &self.id
    }
    fn content_hash(&self, _region_id: &str) -> u64 {
        self.hash
    }
    fn item(&self) -> Option<&ImagePipelineItem> {
        None
    }
}

/// What this process remembers of a query's last complete listing: enough to tell drift and to
/// hand objects over between queries, a few dozen bytes per pipeline instead of the items.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ListedDigest {
    /// Every pipeline, in listing order.
    pub entries: Vec<DigestEntry>,
    /// Items the listing skipped for want of a readable ID.
    pub skipped_items: usize,
    /// The indices of `entries`, in the order of their IDs.
    by_id: Vec<u32>,
    /// The pages whose items the next listing may take as they were, if it gets the same page.
    pub pages: Vec<PageMemo>,
}

/// A page of a complete listing, remembered so that the same page in the next listing need not
/// be decoded: the hash of its list's text, and its items' entries in the digest. Only a page
/// whose every item became an entry of its own (no duplicate, unreadable or unmirrorable ID) is
/// remembered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageMemo {
    /// [`crate::ecs::list_hash`] of the page's list text.
    pub list_hash: u64,
    /// The length of that text in bytes.
    pub list_len: u32,
    /// Where its entries start in [`ListedDigest::entries`].
    pub start: u32,
    /// How many entries it has.
    pub len: u32,
}

impl PageMemo {
    /// Its entries in `digest` (empty if they are not there).
    pub fn entries<'d>(&self, digest: &'d ListedDigest) -> &'d [DigestEntry] {
        let start = self.start as usize;
        digest
            .entries
            .get(start..start + self.len as usize)
            .unwrap_or_default()
    }
}

impl ListedDigest {
    /// The digest of `entries` in listing order, with the listing's `skipped_items` and the
    /// `pages` remembered of it.
    pub fn new(entries: Vec<DigestEntry>, skipped_items: usize, pages: Vec<PageMemo>) -> Self {
        let mut by_id: Vec<u32> = (0..entries.len())
            .map(|i| u32::try_from(i).unwrap_or(u32::MAX))
            .collect();
        let id = |i: u32| entries.get(i as usize).map_or("", |e| &*e.id);
        by_id.sort_unstable_by(|&a, &b| id(a).cmp(id(b)));
        Self {
            entries,
            skipped_items,
            by_id,
            pages,
        }
    }

    /// The digest of `listing` in `region_id` (no pages remembered).
    pub fn of(listing: &Listing, region_id: &str) -> Self {
        let entries = listing
            .items
            .iter()
            .map(|i| DigestEntry {
                id: i.image_pipeline_id.as_str().into(),
                hash: item_hash(i, region_id),
            })
            .collect();
        Self::new(entries, listing.skipped_items, Vec::new())
    }

    /// Whether it lists the pipeline mirrored as `name` (an object is named by its ID).
    pub fn lists(&self, name: &str) -> bool {
        self.by_id
            .binary_search_by(|&i| {
                let id = self.entries.get(i as usize).map_or("", |e| &*e.id);
                id.cmp(name)
            })
            .is_ok()
    }

    /// The remembered page whose list text hashes to `list_hash`, if any.
    pub fn page(&self, list_hash: u64) -> Option<&PageMemo> {
        self.pages.iter().find(|p| p.list_hash == list_hash)
    }
}

/// A listing as the plan reads it: full ([`Listing`]) or remembered ([`ListedDigest`]).
pub trait ListingView {
    /// The kind of its pipelines.
    type Item: Listed;
    /// Its pipelines.
    fn items(&self) -> &[Self::Item];
    /// Items skipped for want of a readable ID.
    fn skipped_items(&self) -> usize;
}

impl ListingView for Listing {
    type Item = ImagePipelineItem;
    fn items(&self) -> &[ImagePipelineItem] {
        &self.items
    }
    fn skipped_items(&self) -> usize {
        self.skipped_items
    }
}

impl ListingView for ListedDigest {
    type Item = DigestEntry;
    fn items(&self) -> &[DigestEntry] {
        &self.entries
    }
    fn skipped_items(&self) -> usize {
        self.skipped_items
    }
}

impl<T: ListingView> ListingView for std::sync::Arc<T> {
    type Item = T::Item;
    fn items(&self) -> &[T::Item] {
        (**self).items()
    }
    fn skipped_items(&self) -> usize {
        (**self).skipped_items()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ecs::model::PipelineTag;

    fn item() -> ImagePipelineItem {
        ImagePipelineItem {
            image_pipeline_id: "ip-a".into(),
            name: Some("golden".into()),
            build_content: Some("RUN true".into()),
            system_disk_size: Some(40),
            delete_instance_on_failure: Some(true),
            tags: vec![PipelineTag {
                key: "team".into(),
                value: "pay".into(),
            }],
            to_region_ids: vec!["cn-beijing".into()],
            ..ImagePipelineItem::default()
        }
    }

    #[test]
    fn compact_texts_read_back_exactly_and_compare_with_their_text() {
        for text in [
            "6f1c2b7e-1d2a-4c55-9b1e-0a3f5c9d2e10",
            "6F1C2B7E-1D2A-4C55-9B1E-0A3F5C9D2E10",
            "6f1c2b7e-1d2a-4c55-9b1e-0a3f5c9d2e1g",
            "6f1c2b7e+1d2a-4c55-9b1e-0a3f5c9d2e10",
            "0",
            "7",
            "007",
            "18446744073709551615",
            "18446744073709551616",
            "-1",
            "",
            "obj-ip-a",
        ] {
            let compact = Compact::new(text);
            assert_eq!(compact.to_string(), text);
            assert!(compact.is(text), "{text}");
            assert!(!compact.is(&format!("{text}0")), "{text}");
        }
        assert!(matches!(
            Compact::new("6f1c2b7e-1d2a-4c55-9b1e-0a3f5c9d2e10"),
            Compact::Uuid(_)
        ));
        assert!(matches!(
            Compact::new("1234567"),
            Compact::Number(1_234_567)
        ));
        assert!(matches!(Compact::new("007"), Compact::Text(_)));
        assert!(!Compact::new("7").is("007"));
        assert!(same_version(None, None));
        assert!(!same_version(Some(&Compact::new("1")), None));
    }

    #[test]
    fn records_share_label_sets_and_sync_times() {
        let mut sets = OwnerSets::default();
        let a = sets.intern_entries(Arc::from(vec![("team".to_string(), Some("a".to_string()))]));
        let b = sets.intern_entries(Arc::from(vec![("team".to_string(), Some("a".to_string()))]));
        assert!(Arc::ptr_eq(&a, &b));
        let t = sets.intern_text(Arc::from("2026-01-01T00:00:00Z"));
        let u = sets.intern_text(Arc::from("2026-01-01T00:00:00Z"));
        assert!(Arc::ptr_eq(&t, &u));
    }

    #[test]
    fn owner_sets_of_queries_that_are_gone_are_not_kept() {
        use crate::controller::ownership::owner_reference;
        let mut sets = OwnerSets::default();
        let kept = sets.intern(Arc::from(vec![owner_reference("kept", "uid-kept")]));
        for i in 0..5000 {
            // A query that came and went: nothing holds its set once interned.
            let set = sets.intern(Arc::from(vec![owner_reference("q", &format!("uid-{i}"))]));
            drop(set);
        }
        assert!(
            sets.sets.len() <= OWNER_SET_SWEEP_EVERY + 1,
            "{} sets kept",
            sets.sets.len()
        );
        let again = sets.intern(Arc::from(vec![owner_reference("kept", "uid-kept")]));
        assert!(Arc::ptr_eq(&kept, &again), "a set in use stays shared");
    }

    #[test]
    fn an_item_and_the_spec_built_from_it_hash_alike_whatever_the_sync_time() {
        let mut spec = ImagePipelineSpec::from_item(&item(), "cn-hangzhou");
        spec.last_sync_time = Some("2026-01-01T00:00:00Z".into());
        assert_eq!(spec_hash(&spec), item_hash(&item(), "cn-hangzhou"));
    }

    #[test]
    fn every_content_change_changes_the_hash() {
        let base = item_hash(&item(), "cn-hangzhou");
        assert_ne!(base, item_hash(&item(), "cn-beijing"));
        let changes: [fn(&mut ImagePipelineItem); 8] = [
            |i| i.name = Some("other".into()),
            |i| i.name = None,
            |i| i.description = Some("golden".into()),
            |i| i.system_disk_size = Some(41),
            |i| i.delete_instance_on_failure = Some(false),
            |i| i.tags[0].value = "search".into(),
            |i| i.to_region_ids.clear(),
            |i| i.add_accounts.push("123".into()),
        ];
        for change in changes {
            let mut changed = item();
            change(&mut changed);
            assert_ne!(base, item_hash(&changed, "cn-hangzhou"), "{changed:?}");
        }
    }
}
