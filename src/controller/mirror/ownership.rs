//! Who wrote what on a mirrored ImagePipeline, read from its `managedFields`: the labels,
//! annotations, owner references and spec fields the operator's apply owns, and those that
//! other field managers set.
//!
//! Why: server-side apply only removes what the applier owns. A field someone else set on an
//! object (a `description` the pipeline does not have, an owner reference to another query, an
//! edited `lastSyncTime`) survives the operator's applies unless the operator knows about it and
//! takes it back explicitly. Objects without managed fields (built in tests, or from a server
//! that does not report them) count as entirely the operator's.

use std::collections::BTreeSet;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, OwnerReference};
use serde_json::Value;

use crate::crd::{GROUP, ImagePipeline, VERSION};

/// The field manager of the main (unsharded) instance, and the prefix of every shard's.
pub const FIELD_MANAGER: &str = "imagepipeline-operator";

/// The name the main instance (no `--shard`) goes by in status and metrics.
pub const MAIN_SHARD: &str = "main";

/// The field manager of an instance serving `shard` (`None`: the main instance). Each shard
/// applies under its own manager, so that server-side apply keeps what each shard set (its
/// owner references, labels and annotations) apart, and one shard's apply never removes what
/// another set.
pub fn shard_field_manager(shard: Option<&str>) -> String {
    match shard {
        Some(shard) => format!("{FIELD_MANAGER}-{shard}"),
        None => FIELD_MANAGER.to_string(),
    }
}

/// The label a shard puts on every object it has an owner reference on,
/// `shard.ecs.mirror.io/<shard>: "true"`: its watch of ImagePipelines selects it, so a shard
/// holds in memory only the objects it mirrors, not those of every other shard.
pub fn shard_label_key(shard: &str) -> String {
    format!("shard.{GROUP}/{shard}")
}

/// The value of [`shard_label_key`].
pub const SHARD_LABEL_VALUE: &str = "true";

/// Whether `manager` is another operator instance's (another shard, or the main instance
/// seen from a shard): a manager named [`FIELD_MANAGER`] or `FIELD_MANAGER-<shard>` other
/// than `ours`.
pub fn is_sibling_manager(manager: &str, ours: &str) -> bool {
    manager != ours
        && manager
            .strip_prefix(FIELD_MANAGER)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('-'))
}

/// The kind of the owners.
pub const OWNER_KIND: &str = "ImagePipelineQuery";

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

/// The label and annotation keys the operator's field manager owns on `obj`: the keys a
/// previous apply set, which an apply without them removes.
pub fn managed_metadata_keys(obj: &ImagePipeline) -> (BTreeSet<String>, BTreeSet<String>) {
    let ours = Ownership::of(obj).ours;
    (ours.labels, ours.annotations)
}

/// The spec fields of an ImagePipeline, by their JSON names; a field's bit in a [`FieldSet`] is
/// its index here.
pub const SPEC_FIELDS: [&str; 22] = [
    "imagePipelineId",
    "regionId",
    "name",
    "description",
    "baseImage",
    "baseImageType",
    "buildContent",
    "testContent",
    "repairMode",
    "imageName",
    "imageFamily",
    "instanceType",
    "systemDiskSize",
    "internetMaxBandwidthOut",
    "vSwitchId",
    "deleteInstanceOnFailure",
    "resourceGroupId",
    "creationTime",
    "tags",
    "toRegionIds",
    "addAccounts",
    "lastSyncTime",
];

/// The spec fields that are lists: cleared as `[]` (the schema does not allow `null` there).
pub const LIST_FIELDS: [&str; 3] = ["tags", "toRegionIds", "addAccounts"];

/// A set of spec fields, one bit per entry of [`SPEC_FIELDS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct FieldSet(pub u32);

impl FieldSet {
    /// The set holding only `field`, if it is a spec field.
    pub fn of(field: &str) -> Option<Self> {
        SPEC_FIELDS
            .iter()
            .position(|f| *f == field)
            .map(|i| Self(1 << i))
    }

    /// `spec.lastSyncTime`.
    pub fn last_sync_time() -> Self {
        Self::of("lastSyncTime").unwrap_or_default()
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Whether it holds every field of `other`.
    pub fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }

    /// The fields of `self` that are not in `other`.
    pub fn without(self, other: Self) -> Self {
        Self(self.0 & !other.0)
    }

    /// The JSON names of its fields.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        SPEC_FIELDS
            .iter()
            .enumerate()
            .filter(move |(i, _)| self.0 & (1 << i) != 0)
            .map(|(_, f)| *f)
    }
}

/// What one side (the operator's apply, or everyone else together) owns on an object.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Owned {
    /// Label keys.
    pub labels: BTreeSet<String>,
    /// Annotation keys.
    pub annotations: BTreeSet<String>,
    /// UIDs of owner references.
    pub owner_uids: BTreeSet<String>,
    /// Spec fields.
    pub spec: FieldSet,
}

impl Owned {
    fn add(&mut self, fields: &Value) {
        let metadata = &fields["f:metadata"];
        for (set, key) in [
            (&mut self.labels, "f:labels"),
            (&mut self.annotations, "f:annotations"),
        ] {
            if let Some(map) = metadata[key].as_object() {
                set.extend(
                    map.keys()
                        .filter_map(|k| k.strip_prefix("f:"))
                        .map(str::to_string),
                );
            }
        }
        if let Some(refs) = metadata["f:ownerReferences"].as_object() {
            self.owner_uids
                .extend(refs.keys().filter_map(|k| owner_reference_uid(k)));
        }
        if let Some(spec) = fields["f:spec"].as_object() {
            for field in spec.keys().filter_map(|k| k.strip_prefix("f:")) {
                if let Some(bit) = FieldSet::of(field) {
                    self.spec.0 |= bit.0;
                }
            }
        }
    }
}

/// The UID in a managed-fields key of an owner reference, `k:{"uid":"..."}`.
fn owner_reference_uid(key: &str) -> Option<String> {
    let json = key.strip_prefix("k:")?;
    let value: Value = serde_json::from_str(json).ok()?;
    value["uid"].as_str().map(str::to_string)
}

/// Who made a managed-fields entry, as seen from the instance applying as `ours`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Writer {
    /// This instance's apply.
    Us,
    /// Another operator instance's apply (another shard).
    Sibling,
    /// Anyone else, or an operator instance through another operation than apply.
    Someone,
}

fn writer_of(m: &ManagedFieldsEntry, ours: &str) -> Writer {
    let manager = m.manager.as_deref().unwrap_or("");
    if m.operation.as_deref() != Some("Apply") {
        Writer::Someone
    } else if manager == ours {
        Writer::Us
    } else if is_sibling_manager(manager, ours) {
        Writer::Sibling
    } else {
        Writer::Someone
    }
}

/// The ownership of one object's fields.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ownership {
    /// Whether the object reports managed fields at all; without them everything counts as the
    /// operator's.
    pub tracked: bool,
    /// What this instance's apply owns.
    pub ours: Owned,
    /// What other operator instances' applies (other shards) own.
    pub siblings: Owned,
    /// What any other field manager (or the operator through another operation) owns.
    pub theirs: Owned,
}

impl Ownership {
    /// The ownership recorded in `obj`'s managed fields, for the main instance
    /// ([`FIELD_MANAGER`]).
    pub fn of(obj: &ImagePipeline) -> Self {
        Self::of_as(obj, FIELD_MANAGER)
    }

    /// The ownership recorded in `obj`'s managed fields, for the instance applying as
    /// `manager`.
    pub fn of_as(obj: &ImagePipeline, manager: &str) -> Self {
        let mut ownership = Self::default();
        for entry in obj.metadata.managed_fields.iter().flatten() {
            if !entry.subresource.as_deref().unwrap_or("").is_empty() {
                continue;
            }
            ownership.tracked = true;
            let Some(fields) = &entry.fields_v1 else {
                continue;
            };
            match writer_of(entry, manager) {
                Writer::Us => ownership.ours.add(&fields.0),
                Writer::Sibling => ownership.siblings.add(&fields.0),
                Writer::Someone => ownership.theirs.add(&fields.0),
            }
        }
        ownership
    }

    /// Spec fields someone else set that no operator instance's apply owns (shared ownership
    /// of the same value is not foreign, and neither is what another shard wrote).
    pub fn foreign_spec(&self) -> FieldSet {
        self.theirs
            .spec
            .without(self.ours.spec)
            .without(self.siblings.spec)
    }

    /// Whether the owner reference with `uid` was added by someone else alone (not by any
    /// operator instance).
    pub fn is_foreign_owner(&self, uid: &str) -> bool {
        self.tracked
            && !self.ours.owner_uids.contains(uid)
            && !self.siblings.owner_uids.contains(uid)
    }

    /// Whether the owner reference with `uid` was set by other operator instances and not by
    /// this one.
    pub fn is_sibling_owner(&self, uid: &str) -> bool {
        self.tracked
            && !self.ours.owner_uids.contains(uid)
            && self.siblings.owner_uids.contains(uid)
    }

    /// Whether the owner reference with `uid` was set by this instance and by another one.
    pub fn is_co_owned(&self, uid: &str) -> bool {
        self.ours.owner_uids.contains(uid) && self.siblings.owner_uids.contains(uid)
    }

    /// Label and annotation keys other operator instances set and this one does not: under
    /// the first-writer rule, this instance leaves them to the shard that set them.
    pub fn sibling_only_keys(&self) -> (BTreeSet<String>, BTreeSet<String>) {
        (
            self.siblings
                .labels
                .difference(&self.ours.labels)
                .cloned()
                .collect(),
            self.siblings
                .annotations
                .difference(&self.ours.annotations)
                .cloned()
                .collect(),
        )
    }
}

/// The `fieldsV1` set the API server records for an apply of `applied`: every field the apply
/// sets, with owner references keyed by UID and other lists atomic (as the CRD's schema
/// declares them). Tests and benchmarks use it to build objects as the server stores them.
pub fn applied_fields(applied: &Value) -> Value {
    use serde_json::{Map, json};
    let mut root = Map::new();
    if let Some(meta) = applied["metadata"].as_object() {
        let mut m = Map::new();
        for key in ["labels", "annotations"] {
            if let Some(map) = meta.get(key).and_then(Value::as_object) {
                let keys: Map<String, Value> =
                    map.keys().map(|k| (format!("f:{k}"), json!({}))).collect();
                m.insert(format!("f:{key}"), Value::Object(keys));
            }
        }
        if let Some(refs) = meta.get("ownerReferences").and_then(Value::as_array) {
            let keyed: Map<String, Value> = refs
                .iter()
                .map(|r| {
                    let fields: Map<String, Value> = r
                        .as_object()
                        .into_iter()
                        .flatten()
                        .map(|(k, _)| (format!("f:{k}"), json!({})))
                        .chain([(".".to_string(), json!({}))])
                        .collect();
                    (format!("k:{{\"uid\":{}}}", r["uid"]), Value::Object(fields))
                })
                .collect();
            m.insert("f:ownerReferences".into(), Value::Object(keyed));
        }
        root.insert("f:metadata".into(), Value::Object(m));
    }
    if let Some(spec) = applied["spec"].as_object() {
        let fields: Map<String, Value> =
            spec.keys().map(|k| (format!("f:{k}"), json!({}))).collect();
        root.insert("f:spec".into(), Value::Object(fields));
    }
    Value::Object(root)
}

/// The managed-fields entry the API server records for the operator's apply of `obj`.
pub fn apply_entry(obj: &ImagePipeline) -> ManagedFieldsEntry {
    let applied = serde_json::to_value(obj).unwrap_or_default();
    ManagedFieldsEntry {
        manager: Some(FIELD_MANAGER.into()),
        operation: Some("Apply".into()),
        api_version: Some(format!("{GROUP}/{VERSION}")),
        fields_type: Some("FieldsV1".into()),
        fields_v1: Some(k8s_openapi::apimachinery::pkg::apis::meta::v1::FieldsV1(
            applied_fields(&applied),
        )),
        subresource: None,
        time: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{ImagePipelineSpec, PipelineTagSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::FieldsV1;
    use serde_json::json;

    #[test]
    fn spec_fields_name_every_field_of_the_spec_in_order() {
        let full = ImagePipelineSpec {
            image_pipeline_id: "ip-a".into(),
            region_id: "r".into(),
            name: Some(String::new()),
            description: Some(String::new()),
            base_image: Some(String::new()),
            base_image_type: Some(String::new()),
            build_content: Some(String::new()),
            test_content: Some(String::new()),
            repair_mode: Some(String::new()),
            image_name: Some(String::new()),
            image_family: Some(String::new()),
            instance_type: Some(String::new()),
            system_disk_size: Some(1),
            internet_max_bandwidth_out: Some(1),
            v_switch_id: Some(String::new()),
            delete_instance_on_failure: Some(true),
            resource_group_id: Some(String::new()),
            creation_time: Some(String::new()),
            tags: vec![PipelineTagSpec {
                tag_key: "k".into(),
                tag_value: "v".into(),
            }],
            to_region_ids: vec!["r".into()],
            add_accounts: vec!["1".into()],
            last_sync_time: Some(String::new()),
        };
        let value = serde_json::to_value(&full).unwrap();
        let keys: Vec<&str> = value
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        let mut expected: Vec<&str> = SPEC_FIELDS.to_vec();
        expected.sort_unstable();
        let mut keys_sorted = keys.clone();
        keys_sorted.sort_unstable();
        assert_eq!(keys_sorted, expected);
        for list in LIST_FIELDS {
            assert!(value[list].is_array(), "{list} is a list");
        }
    }

    fn entry(manager: &str, operation: &str, fields: Value) -> ManagedFieldsEntry {
        ManagedFieldsEntry {
            manager: Some(manager.into()),
            operation: Some(operation.into()),
            fields_v1: Some(FieldsV1(fields)),
            ..ManagedFieldsEntry::default()
        }
    }

    #[test]
    fn what_others_set_is_told_apart_from_what_the_operator_applies() {
        let mut obj = ImagePipeline::new("ip-a", ImagePipelineSpec::default());
        obj.metadata.managed_fields = Some(vec![
            entry(
                FIELD_MANAGER,
                "Apply",
                json!({
                    "f:metadata": {
                        "f:labels": {"f:team": {}},
                        "f:ownerReferences": {"k:{\"uid\":\"uid-a\"}": {".": {}, "f:name": {}}},
                    },
                    "f:spec": {"f:name": {}, "f:lastSyncTime": {}, "f:imagePipelineId": {}},
                }),
            ),
            entry(
                "kubectl-edit",
                "Update",
                json!({
                    "f:metadata": {
                        "f:ownerReferences": {"k:{\"uid\":\"uid-b\"}": {".": {}}},
                    },
                    "f:spec": {"f:description": {}, "f:name": {}, "f:tags": {}},
                }),
            ),
        ]);
        let o = Ownership::of(&obj);
        assert!(o.tracked);
        assert_eq!(
            o.foreign_spec().names().collect::<Vec<_>>(),
            ["description", "tags"]
        );
        assert!(!o.is_foreign_owner("uid-a"));
        assert!(o.is_foreign_owner("uid-b"));
        assert!(o.ours.labels.contains("team"));
    }

    #[test]
    fn an_object_without_managed_fields_is_all_the_operator_s() {
        let obj = ImagePipeline::new("ip-a", ImagePipelineSpec::default());
        let o = Ownership::of(&obj);
        assert!(!o.tracked);
        assert!(o.foreign_spec().is_empty());
        assert!(!o.is_foreign_owner("uid-b"));
    }
}
