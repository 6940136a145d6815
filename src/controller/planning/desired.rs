//! What a mirrored object should look like: its owner references (every query in the namespace
//! that matches it), the labels and annotations merged from those queries' templates, and the
//! comparison that decides whether the object on the server needs a write.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::ObjectMeta;

use crate::controller::mirror::mirrored::{ManagedEntry, Mirrored};
use crate::controller::mirror::ownership::FieldSet;
pub use crate::controller::mirror::ownership::{
    OWNER_KIND, is_query_ref, managed_metadata_keys, owner_reference,
};
use crate::crd::query::TemplateMetadata;
use crate::crd::{ImagePipeline, ImagePipelineSpec};

/// A query that may own mirrored objects: what the plan needs to know about it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OwnerInfo {
    /// The query's name.
    pub name: String,
    /// The query's UID.
    pub uid: String,
    /// The labels and annotations it puts on the objects it owns.
    pub template: TemplateMetadata,
    /// Its `spec.prune`: whether it deletes the objects it is the last owner of once it no
    /// longer lists them.
    pub prune: bool,
}

/// The queries of one namespace, by UID.
pub type Owners = BTreeMap<String, OwnerInfo>;

/// Labels and annotations merged from the templates of the owners with the given UIDs. Owners
/// are taken in the order of their names; on a conflicting key the first one wins. UIDs of
/// queries that are not known (deleted, or not seen yet) contribute nothing.
pub fn merged_template<'a>(
    owner_uids: impl IntoIterator<Item = &'a str>,
    owners: &Owners,
) -> TemplateMetadata {
    let mut known: Vec<&OwnerInfo> = owner_uids
        .into_iter()
        .filter_map(|uid| owners.get(uid))
        .collect();
    known.sort_by(|a, b| a.name.cmp(&b.name).then(a.uid.cmp(&b.uid)));
    let mut merged = TemplateMetadata::default();
    for owner in known {
        for (k, v) in &owner.template.labels {
            merged.labels.entry(k.clone()).or_insert_with(|| v.clone());
        }
        for (k, v) in &owner.template.annotations {
            merged
                .annotations
                .entry(k.clone())
                .or_insert_with(|| v.clone());
        }
    }
    merged
}

/// The ImagePipeline to apply: `spec`, the owner references `owners` and the merged template.
/// `resource_version`, when given, makes the apply fail with a conflict if the object changed
/// since it was read.
pub fn build_object(
    name: &str,
    namespace: &str,
    spec: ImagePipelineSpec,
    owners: Vec<OwnerReference>,
    template: TemplateMetadata,
    resource_version: Option<String>,
) -> ImagePipeline {
    let non_empty = |m: BTreeMap<String, String>| (!m.is_empty()).then_some(m);
    ImagePipeline {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            labels: non_empty(template.labels),
            annotations: non_empty(template.annotations),
            owner_references: (!owners.is_empty()).then_some(owners),
            resource_version,
            ..ObjectMeta::default()
        },
        spec,
    }
}

fn map_matches(actual: &[ManagedEntry], desired: &BTreeMap<String, String>) -> bool {
    // `actual` holds only the keys the operator manages: a desired key it does not manage yet
    // is written (once) even if someone else set the same value.
    let value = |k: &str| {
        actual
            .iter()
            .find(|(key, _)| key == k)
            .and_then(|(_, v)| v.as_deref())
    };
    desired.iter().all(|(k, v)| value(k) == Some(v.as_str()))
        && actual
            .iter()
            .all(|(k, v)| v.is_none() || desired.contains_key(k))
}

/// Whether `existing` already is what the plan wants: the same pipeline content (by hash), the
/// same query owner references (compared whole, so an edited name or flag is put back), none
/// added by someone else, every desired label and annotation present, none the operator set
/// before but no longer wants, and a `lastSyncTime` that nobody else rewrote. Labels and
/// annotations others added are not the operator's business.
pub fn up_to_date(
    existing: &Mirrored,
    content_hash: u64,
    owners: &[OwnerReference],
    template: &TemplateMetadata,
) -> bool {
    let sorted = |refs: &[OwnerReference]| -> Vec<OwnerReference> {
        let mut refs = refs.to_vec();
        refs.sort_by(|a, b| a.uid.cmp(&b.uid));
        refs
    };
    sorted(&existing.owners) == sorted(owners)
        && up_to_date_but_owners(existing, content_hash, template)
}

/// [`up_to_date`] but for the owner references (which the caller has compared).
pub fn up_to_date_but_owners(
    existing: &Mirrored,
    content_hash: u64,
    template: &TemplateMetadata,
) -> bool {
    existing.content_hash == content_hash
        && !existing.foreign_owners
        && !existing.foreign_spec.contains(FieldSet::last_sync_time())
        && map_matches(&existing.labels, &template.labels)
        && map_matches(&existing.annotations, &template.annotations)
}

/// The query owner references an object should carry when `keep` (the references it has that
/// this sync leaves in place) plus, when given, the syncing query's own: each rebuilt from the
/// query it names, when that query is known, so an edited field is put back.
pub fn owner_references<'a>(
    keep: impl IntoIterator<Item = &'a OwnerReference>,
    owners: &Owners,
) -> Vec<OwnerReference> {
    keep.into_iter()
        .map(|r| match owners.get(&r.uid) {
            Some(o) => owner_reference(&o.name, &o.uid),
            None => r.clone(),
        })
        .collect()
}
