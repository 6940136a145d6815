//! Step 4: plan. From a complete listing and the ImagePipelines of the namespace, decide which
//! objects to create, update, release (drop this query's owner reference) or delete. Pure: no
//! client, no clock. The plan holds no built objects: each write names its listing item, owners
//! and template, and the object is built only when it is applied ([`Write::object`]).

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::ObjectMeta;

use crate::controller::mirror::mirrored::{Listed, Mirrored};
use crate::controller::mirror::ownership::{FieldSet, LIST_FIELDS, SHARD_LABEL_VALUE};
use crate::controller::planning::desired::{
    Owners, build_object, merged_template, owner_reference, owner_references, up_to_date,
    up_to_date_but_owners,
};
use crate::crd::pipeline::is_object_name;
use crate::crd::query::TemplateMetadata;
use crate::crd::{ImagePipeline, ImagePipelineSpec};
use crate::ecs::ImagePipelineItem;

/// Everything the plan depends on.
#[derive(Debug)]
pub struct PlanInput<'a, 'i, I = ImagePipelineItem> {
    /// The query's name.
    pub query_name: &'a str,
    /// The query's UID.
    pub query_uid: &'a str,
    /// The namespace of the query and its objects.
    pub namespace: &'a str,
    /// The region the listing covers.
    pub region_id: &'a str,
    /// Every pipeline of the complete listing (full items, or the remembered digest).
    pub items: &'i [I],
    /// The ImagePipelines of the namespace, by name, as last seen.
    pub existing: &'a BTreeMap<String, Arc<Mirrored>>,
    /// The queries of the namespace (including this one), for the merged templates.
    pub owners: &'a Owners,
    /// Whether objects no query matches any more are deleted.
    pub prune: bool,
    /// Objects other queries of the namespace matched in their last complete listing (object
    /// name → their UIDs), as this process remembers them. An object this query stops matching
    /// is handed over to them instead of being deleted, so it is deleted only when no query
    /// matches it, whichever query syncs first.
    pub claims: &'a BTreeMap<String, Vec<String>>,
    /// Whether other active queries of the namespace have no complete listing this process
    /// knows of yet (just created, or not synced since a restart): any of them may match an
    /// object this query lets go of, so deletions wait for them instead of deleting an object
    /// that would be created again.
    pub awaiting_listings: bool,
    /// The time stamped on objects whose content changes (RFC 3339).
    pub now: &'a str,
    /// A shard's own label
    /// ([`shard_label_key`](crate::controller::mirror::ownership::shard_label_key)), put on
    /// every object it keeps an owner reference on; `None` for the main instance.
    pub instance_label: Option<&'a str>,
}

/// Why an object is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    /// The object does not exist yet.
    Create,
    /// Its content, labels, annotations or owners changed.
    Update,
    /// This query no longer matches it; the object stays for its other owners, or because
    /// `prune` is false, without this query's owner reference.
    Release,
}

/// A write to an ImagePipeline as failures, status and metrics name it: the write kinds and
/// the deletion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WriteAction {
    /// A create (server-side apply of a new object).
    Create,
    /// An update.
    Update,
    /// A release (this query's owner reference removed).
    Release,
    /// A deletion.
    Delete,
}

impl WriteAction {
    /// Every action, for metric series known in advance.
    pub const ALL: [WriteAction; 4] = [Self::Create, Self::Update, Self::Release, Self::Delete];

    /// The verb: `create`, `update`, `release` or `delete`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Create => "create",
            Self::Update => "update",
            Self::Release => "release",
            Self::Delete => "delete",
        }
    }
}

impl From<WriteKind> for WriteAction {
    fn from(kind: WriteKind) -> Self {
        match kind {
            WriteKind::Create => Self::Create,
            WriteKind::Update => Self::Update,
            WriteKind::Release => Self::Release,
        }
    }
}

impl std::fmt::Display for WriteAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One server-side apply, built when it is applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Write<'a> {
    /// Why.
    pub kind: WriteKind,
    /// The object name.
    pub name: String,
    /// The namespace.
    pub namespace: Arc<str>,
    /// The region of the content.
    pub region_id: Arc<str>,
    /// The listing item with the content; `None` for a release (the object keeps the content
    /// it has on the server) and for a plan from a remembered digest (nothing to build).
    pub item: Option<&'a ImagePipelineItem>,
    /// `spec.lastSyncTime` to write.
    pub last_sync_time: Option<String>,
    /// Every query owner reference of the object.
    pub owners: Vec<OwnerReference>,
    /// The labels and annotations merged from those owners' templates.
    pub template: TemplateMetadata,
    /// For existing objects, the `resourceVersion` it was planned from (a conflict if it
    /// changed since).
    pub resource_version: Option<String>,
    /// Spec fields someone else set: applied as `null` (lists as `[]`) when the content does
    /// not have them, which takes them over and so removes the foreign values.
    pub clear: FieldSet,
    /// Whether query owner references that someone else added are removed after the apply
    /// (server-side apply cannot remove what it does not own).
    pub strip_foreign_owners: bool,
    /// UIDs of the query owner references other operator instances (other shards) set, which
    /// that removal keeps.
    pub other_instances_owners: Vec<String>,
    /// Whether this instance keeps no claim on the object, which stays for other instances:
    /// the apply names nothing, so this instance's field manager gives up every field it set
    /// (content, labels, references) and what the others set is all that is left.
    pub relinquish: bool,
}

impl Write<'_> {
    /// The object name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The object to apply with `spec` as its content.
    pub fn object_with(&self, spec: ImagePipelineSpec) -> ImagePipeline {
        build_object(
            &self.name,
            &self.namespace,
            spec,
            self.owners.clone(),
            self.template.clone(),
            self.resource_version.clone(),
        )
    }

    /// The complete object to apply, when the write carries its content (creates and updates
    /// planned from a full listing).
    pub fn object(&self) -> Option<ImagePipeline> {
        let item = self.item?;
        let mut spec = ImagePipelineSpec::from_item(item, &self.region_id);
        spec.last_sync_time = self.last_sync_time.clone();
        Some(self.object_with(spec))
    }

    /// The metadata the write applies.
    pub fn metadata(&self) -> ObjectMeta {
        self.object_with(ImagePipelineSpec::default()).metadata
    }

    /// The body of the apply of `object`: the object, plus `null` (lists: `[]`) for each field
    /// of [`Write::clear`] it does not have, so the apply takes those fields over from whoever
    /// set them.
    pub fn apply_body(
        &self,
        object: &ImagePipeline,
    ) -> Result<serde_json::Value, serde_json::Error> {
        let mut body = serde_json::to_value(object)?;
        if let Some(spec) = body
            .get_mut("spec")
            .and_then(serde_json::Value::as_object_mut)
        {
            for field in self.clear.names() {
                if !spec.contains_key(field) {
                    let cleared = if LIST_FIELDS.contains(&field) {
                        serde_json::Value::Array(Vec::new())
                    } else {
                        serde_json::Value::Null
                    };
                    spec.insert(field.to_string(), cleared);
                }
            }
        }
        Ok(body)
    }
}

/// One deletion, with the preconditions that keep it from deleting an object that was
/// re-created or re-claimed since it was read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deletion {
    /// The object name.
    pub name: String,
    /// The UID it had when planned.
    pub uid: Option<String>,
    /// The resourceVersion it had when planned.
    pub resource_version: Option<String>,
}

/// Counts of what the plan does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PlanCounts {
    /// Objects created.
    pub created: u32,
    /// Objects updated.
    pub updated: u32,
    /// Objects deleted.
    pub deleted: u32,
    /// Objects released.
    pub released: u32,
    /// Objects already up to date.
    pub unchanged: u32,
    /// Deletions held back until the other queries of the namespace have listed.
    pub deferred: u32,
}

/// The writes of one sync.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Plan<'a> {
    /// Applies, in name order.
    pub writes: Vec<Write<'a>>,
    /// Deletions, in name order.
    pub deletions: Vec<Deletion>,
    /// Counts.
    pub counts: PlanCounts,
    /// Pipelines of the listing that are mirrored.
    pub matched: u32,
    /// IDs of the listing that cannot be object names, and are not mirrored.
    pub unmirrorable: Vec<String>,
}

impl Plan<'_> {
    /// Whether the plan writes nothing.
    pub fn is_empty(&self) -> bool {
        self.writes.is_empty() && self.deletions.is_empty()
    }
}

impl Plan<'_> {
    /// The same plan without deletions and releases: what a sync may do when the listing had
    /// items it could not read (no ID), since one of them may be a pipeline that is mirrored.
    /// Creates and updates stay; nothing already mirrored is removed.
    pub fn without_removals(mut self) -> Self {
        let removed = self.counts.deleted + self.counts.released;
        self.deletions.clear();
        self.writes.retain(|w| w.kind != WriteKind::Release);
        self.counts.deleted = 0;
        self.counts.released = 0;
        self.counts.unchanged += removed;
        self
    }
}

/// The template without the keys other operator instances set first (see
/// [`Mirrored::claimed_labels`]): whichever shard set a key first keeps it, so two shards with
/// different values for one key never take it from each other in turn.
fn unclaimed(mut template: TemplateMetadata, existing: Option<&Mirrored>) -> TemplateMetadata {
    if let Some(e) = existing {
        template
            .labels
            .retain(|k, _| !e.claimed_labels().contains(k));
        template
            .annotations
            .retain(|k, _| !e.claimed_annotations().contains(k));
    }
    template
}

/// A release of `obj`: it keeps the content it has on the server and gets `owners` and
/// `template`; nothing else is removed or given up.
fn release<'a>(
    obj: &Mirrored,
    namespace: &Arc<str>,
    region_id: &Arc<str>,
    owners: Vec<OwnerReference>,
    template: TemplateMetadata,
) -> Write<'a> {
    Write {
        kind: WriteKind::Release,
        name: obj.name.clone(),
        namespace: namespace.clone(),
        region_id: region_id.clone(),
        item: None,
        last_sync_time: obj.last_sync_text(),
        owners,
        template,
        resource_version: obj.version(),
        clear: FieldSet::default(),
        strip_foreign_owners: false,
        other_instances_owners: Vec::new(),
        relinquish: false,
    }
}

/// The template with the shard's own label, when this instance is a shard.
fn with_instance_label(mut template: TemplateMetadata, label: Option<&str>) -> TemplateMetadata {
    if let Some(key) = label {
        template
            .labels
            .insert(key.to_string(), SHARD_LABEL_VALUE.to_string());
    }
    template
}

/// UIDs of the query references other operator instances set on `obj`, but `except`.
fn other_uids(obj: &Mirrored, except: Option<&str>) -> Vec<String> {
    obj.other_owners()
        .iter()
        .filter(|r| Some(r.uid.as_str()) != except)
        .map(|r| r.uid.clone())
        .collect()
}

/// The releases with which this instance lets go of what other instances now serve, on
/// `objects` (records of `namespace`):
/// - the references this instance set to queries it no longer serves (not in `served`) that
///   the new shard has already set too (a moved query; the object is never left without them);
/// - for an instance that labels its objects (`instance_label`), an object that carries its
///   label but none of its references any more while other instances' references remain (its
///   query was deleted and the garbage collector removed the reference).
///
/// Only this instance's claim goes: the object and what others set stay. When no reference of
/// its own is left, the write relinquishes the object ([`Write::relinquish`]).
pub fn let_go<'a>(
    namespace: &str,
    objects: &[Arc<Mirrored>],
    served: &Owners,
    instance_label: Option<&str>,
) -> Plan<'a> {
    let mut out = Plan::default();
    let namespace: Arc<str> = namespace.into();
    let moved = |obj: &Mirrored, uid: &str| {
        obj.co_owned().iter().any(|u| u == uid) && !served.contains_key(uid)
    };
    let labelled_without_claim = |obj: &Mirrored| {
        obj.owners.is_empty()
            && !obj.other_owners().is_empty()
            && instance_label.is_some_and(|key| obj.labels.iter().any(|(k, _)| k == key))
    };
    for obj in objects.iter().filter(|o| !o.terminating) {
        let has_moved = obj.owners.iter().any(|r| moved(obj, &r.uid));
        if !has_moved && !labelled_without_claim(obj) {
            continue;
        }
        let remaining = owner_references(obj.owners.iter().filter(|r| !moved(obj, &r.uid)), served);
        let template = if remaining.is_empty() {
            TemplateMetadata::default()
        } else {
            with_instance_label(
                unclaimed(
                    merged_template(remaining.iter().map(|r| r.uid.as_str()), served),
                    Some(obj),
                ),
                instance_label,
            )
        };
        out.counts.released += 1;
        let relinquish = remaining.is_empty();
        out.writes.push(Write {
            relinquish,
            ..release(obj, &namespace, &Arc::from(""), remaining, template)
        });
    }
    out.writes.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// Owner references of the other queries that matched `name` in their last listing.
fn claimants<I>(input: &PlanInput<'_, '_, I>, name: &str) -> Vec<OwnerReference> {
    input
        .claims
        .get(name)
        .into_iter()
        .flatten()
        .filter(|uid| *uid != input.query_uid)
        .filter_map(|uid| input.owners.get(uid))
        .map(|o| owner_reference(&o.name, &o.uid))
        .collect()
}

/// Plans the writes that make the namespace mirror `input.items` for this query.
pub fn plan<'i, I: Listed>(input: &PlanInput<'_, 'i, I>) -> Plan<'i> {
    let (mut out, matched) = plan_listed(input);
    plan_unlisted(input, |name| matched.contains(name), &mut out);
    out.writes.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// The usual case, checked without building anything: an object only this query owns (and only
/// this instance writes), already mirroring the pipeline with this query's template.
#[derive(Debug)]
pub struct SoleOwner {
    reference: OwnerReference,
    template: TemplateMetadata,
}

impl SoleOwner {
    /// The check for the query of `input`.
    pub fn of<I>(input: &PlanInput<'_, '_, I>) -> Self {
        Self {
            reference: owner_reference(input.query_name, input.query_uid),
            template: with_instance_label(
                merged_template([input.query_uid], input.owners),
                input.instance_label,
            ),
        }
    }

    /// Whether `existing` is up to date as far as the full check would tell (a `false` means
    /// only "check fully").
    pub fn is_up_to_date(&self, existing: &Mirrored, hash: u64) -> bool {
        existing.others.is_none()
            && existing.owners.len() == 1
            && existing.owners[0] == self.reference
            && up_to_date_but_owners(existing, hash, &self.template)
    }
}

/// The creates and updates of [`plan`] alone: what makes the objects of `input.items` mirror
/// them (one page of a listing), and the names of the objects they match. Removes nothing.
pub fn plan_listed<'i, I: Listed>(
    input: &PlanInput<'_, 'i, I>,
) -> (Plan<'i>, HashSet<&'i str, foldhash::fast::RandomState>) {
    let mut out = Plan::default();
    let mut matched = HashSet::with_capacity_and_hasher(input.items.len(), Default::default());
    let namespace: Arc<str> = input.namespace.into();
    let region_id: Arc<str> = input.region_id.into();
    let solo = SoleOwner::of(input);
    for item in input.items {
        let name = item.id();
        if !is_object_name(name) {
            out.unmirrorable.push(name.to_string());
            continue;
        }
        if !matched.insert(name) {
            continue;
        }
        let existing = input.existing.get(name);
        if existing.is_some_and(|e| e.terminating) {
            // Being deleted: recreated once it is gone (its deletion triggers a sync).
            out.counts.unchanged += 1;
            continue;
        }
        let hash = item.content_hash(input.region_id);
        if existing.is_some_and(|e| solo.is_up_to_date(e, hash)) {
            out.counts.unchanged += 1;
            continue;
        }
        let name = name.to_string();
        let hash = item.content_hash(input.region_id);
        // This instance's references, plus those another shard set for queries this instance
        // serves now (a query moved here): adopted, so the object is not re-created.
        let kept = existing
            .map(|e| {
                e.owners.iter().chain(
                    e.other_owners()
                        .iter()
                        .filter(|r| input.owners.contains_key(&r.uid)),
                )
            })
            .into_iter()
            .flatten()
            .filter(|r| r.uid != input.query_uid);
        let mut owners = owner_references(kept, input.owners);
        owners.push(owner_reference(input.query_name, input.query_uid));
        let template = with_instance_label(
            unclaimed(
                merged_template(owners.iter().map(|r| r.uid.as_str()), input.owners),
                existing.map(AsRef::as_ref),
            ),
            input.instance_label,
        );
        let kind = match existing {
            None => WriteKind::Create,
            Some(e) if up_to_date(e, hash, &owners, &template) => {
                out.counts.unchanged += 1;
                continue;
            }
            Some(_) => WriteKind::Update,
        };
        let last_sync_time = match existing {
            Some(e)
                if e.content_hash == hash
                    && !e.foreign_spec.contains(FieldSet::last_sync_time()) =>
            {
                e.last_sync_text()
            }
            _ => Some(input.now.to_string()),
        };
        match kind {
            WriteKind::Create => out.counts.created += 1,
            _ => out.counts.updated += 1,
        }
        out.writes.push(Write {
            kind,
            name,
            namespace: namespace.clone(),
            region_id: region_id.clone(),
            item: item.item(),
            last_sync_time,
            owners,
            template,
            resource_version: existing.and_then(|e| e.version()),
            clear: existing.map(|e| e.foreign_spec).unwrap_or_default(),
            strip_foreign_owners: existing.is_some_and(|e| e.foreign_owners),
            other_instances_owners: existing.map(|e| other_uids(e, None)).unwrap_or_default(),
            relinquish: false,
        });
    }
    out.matched = matched.len() as u32;
    (out, matched)
}

/// The releases and deletions of [`plan`] alone, added to `out`: what happens to the objects
/// this query owns that the complete listing does not have (`listed` tells which it has).
pub fn plan_unlisted<I>(
    input: &PlanInput<'_, '_, I>,
    listed: impl Fn(&str) -> bool,
    out: &mut Plan<'_>,
) {
    let namespace: Arc<str> = input.namespace.into();
    let region_id: Arc<str> = input.region_id.into();
    for (name, obj) in input.existing {
        if listed(name) || !obj.is_owned_by(input.query_uid) || obj.terminating {
            continue;
        }
        let all: &[OwnerReference] = &obj.owners;
        let others: Vec<&OwnerReference> =
            all.iter().filter(|r| r.uid != input.query_uid).collect();
        // Queries another shard serves that own the object: never pruned from here.
        let other_shards_own = obj.other_owners().iter().any(|r| r.uid != input.query_uid);
        let pruning_owner = others
            .iter()
            .any(|r| input.owners.get(&r.uid).is_some_and(|o| o.prune));
        if !input.prune && pruning_owner {
            // `prune: false` keeps its reference while a pruning query still owns the object,
            // so that query cannot delete it: whichever of them syncs first, the object is
            // deleted only when every query that owned it prunes.
            out.counts.unchanged += 1;
            continue;
        }
        let mut remaining = owner_references(others, input.owners);
        if remaining.is_empty() {
            remaining = claimants(input, name);
        }
        if remaining.is_empty() && input.prune && !other_shards_own {
            if input.awaiting_listings {
                out.counts.deferred += 1;
                continue;
            }
            out.counts.deleted += 1;
            out.deletions.push(Deletion {
                name: name.clone(),
                uid: obj.uid_text(),
                resource_version: obj.version(),
            });
            continue;
        }
        // Keep the labels the object had when no owner is left (only the reference goes).
        let template_from: &[OwnerReference] = if remaining.is_empty() {
            all
        } else {
            &remaining
        };
        let mut template = unclaimed(
            merged_template(template_from.iter().map(|r| r.uid.as_str()), input.owners),
            Some(obj),
        );
        if !remaining.is_empty() {
            template = with_instance_label(template, input.instance_label);
        }
        // Another shard's reference to this query (set before the query moved here) goes too:
        // this instance's apply cannot remove what another manager set.
        let claimed_elsewhere = obj.other_owners().iter().any(|r| r.uid == input.query_uid)
            || obj.co_owned().iter().any(|uid| uid == input.query_uid);
        // Kept for other instances' queries with none of this instance's left: it gives the
        // object up entirely (content, labels), so nothing it set lingers.
        let relinquish = remaining.is_empty() && other_shards_own;
        if relinquish {
            template = TemplateMetadata::default();
        }
        out.counts.released += 1;
        out.writes.push(Write {
            strip_foreign_owners: obj.foreign_owners || claimed_elsewhere,
            other_instances_owners: other_uids(obj, Some(input.query_uid)),
            relinquish,
            ..release(obj, &namespace, &region_id, remaining, template)
        });
    }
}
