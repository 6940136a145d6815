//! What a mirrored object should look like: its owner references (every query in the namespace
//! that matches it), the labels and annotations merged from those queries' templates, and the
//! comparison that decides whether the object on the server needs a write.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, OwnerReference};
use kube::api::ObjectMeta;

use super::FIELD_MANAGER;
use super::mirrored::{ManagedEntry, Mirrored};
use crate::crd::query::TemplateMetadata;
use crate::crd::{GROUP, ImagePipeline, ImagePipelineSpec, VERSION};

/// The kind of the owners.
pub const OWNER_KIND: &str = "ImagePipelineQuery";

/// A query that may own mirrored objects: what the plan needs to know about it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OwnerInfo {
    /// The query's name.
    pub name: String,
    /// The query's UID.
    pub uid: String,
    /// The labels and annotations it puts on the objects it owns.
    pub template: TemplateMetadata,
}

/// The queries of one namespace, by UID.
pub type Owners = BTreeMap<String, OwnerInfo>;

/// The owner reference of a query: not a controller reference (several queries may own one
/// object), and not blocking the owner's deletion.
pub fn owner_reference(name: &str, uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: format!("{GROUP}/{VERSION}"),
        kind: OWNER_KIND.to_string(),
        name: name.to_string(),
        uid: uid.to_string(),
        controller: Some(false),
        block_owner_deletion: Some(false),
    }
}

/// Whether `r` points at an ImagePipelineQuery.
pub fn is_query_ref(r: &OwnerReference) -> bool {
    r.kind == OWNER_KIND
        && r.api_version
            .split_once('/')
            .is_some_and(|(group, _)| group == GROUP)
}

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

fn is_our_apply(m: &ManagedFieldsEntry) -> bool {
    m.manager.as_deref() == Some(FIELD_MANAGER)
        && m.operation.as_deref() == Some("Apply")
        && m.subresource.as_deref().unwrap_or("").is_empty()
}

/// The label and annotation keys the operator's field manager owns on `obj`, read from its
/// managed fields: the keys a previous apply set, which an apply without them removes.
pub fn managed_metadata_keys(obj: &ImagePipeline) -> (BTreeSet<String>, BTreeSet<String>) {
    let mut labels = BTreeSet::new();
    let mut annotations = BTreeSet::new();
    let ours = obj
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter(|m| is_our_apply(m));
    for entry in ours {
        let Some(fields) = &entry.fields_v1 else {
            continue;
        };
        let metadata = &fields.0["f:metadata"];
        for (set, key) in [
            (&mut labels, "f:labels"),
            (&mut annotations, "f:annotations"),
        ] {
            if let Some(map) = metadata[key].as_object() {
                set.extend(
                    map.keys()
                        .filter_map(|k| k.strip_prefix("f:"))
                        .map(str::to_string),
                );
            }
        }
    }
    (labels, annotations)
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
/// same query owners (by UID), every desired label and annotation present, and none the
/// operator set before but no longer wants. Labels and annotations others added are not the
/// operator's business.
pub fn up_to_date(
    existing: &Mirrored,
    content_hash: u64,
    owners: &[OwnerReference],
    template: &TemplateMetadata,
) -> bool {
    let uids = |refs: &[OwnerReference]| -> BTreeSet<String> {
        refs.iter().map(|r| r.uid.clone()).collect()
    };
    existing.content_hash == content_hash
        && uids(&existing.owners) == uids(owners)
        && map_matches(&existing.labels, &template.labels)
        && map_matches(&existing.annotations, &template.annotations)
}
