//! Sharding, in the plan step: several operator instances (each with its own field manager)
//! mirror into one namespace. Each object here carries the managed fields the API server
//! records for each instance's apply, and each instance plans from its own view of it.

use std::collections::BTreeMap;
use std::sync::Arc;

use imagepipeline_operator::controller::desired::{OwnerInfo, Owners, owner_reference};
use imagepipeline_operator::controller::mirrored::Mirrored;
use imagepipeline_operator::controller::ownership::{
    applied_fields, shard_field_manager, shard_label_key,
};
use imagepipeline_operator::controller::plan::{Plan, PlanInput, WriteKind, let_go, plan};
use imagepipeline_operator::crd::query::TemplateMetadata;
use imagepipeline_operator::crd::{ImagePipeline, ImagePipelineSpec};
use imagepipeline_operator::ecs::ImagePipelineItem;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};
use serde_json::json;

const NOW: &str = "2026-03-01T12:00:00Z";
const REGION: &str = "cn-hangzhou";

fn main_manager() -> String {
    shard_field_manager(None)
}

fn shard1() -> String {
    shard_field_manager(Some("shard1"))
}

fn item(id: &str) -> ImagePipelineItem {
    ImagePipelineItem {
        image_pipeline_id: id.into(),
        name: Some(format!("{id}-name")),
        instance_type: Some("ecs.g6.large".into()),
        ..ImagePipelineItem::default()
    }
}

fn query(name: &str, labels: &[(&str, &str)]) -> OwnerInfo {
    OwnerInfo {
        name: name.into(),
        uid: format!("uid-{name}"),
        template: TemplateMetadata {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            annotations: BTreeMap::new(),
        },
        prune: true,
    }
}

fn served(queries: &[&OwnerInfo]) -> Owners {
    queries
        .iter()
        .map(|q| (q.uid.clone(), (*q).clone()))
        .collect()
}

/// One instance's apply of an object: its manager, the queries it names, its labels.
struct Apply<'a> {
    manager: String,
    queries: Vec<&'a OwnerInfo>,
    labels: Vec<(String, String)>,
}

/// The shard's own label, for a shard's manager.
fn instance_label(manager: &str) -> Option<String> {
    manager
        .strip_prefix("imagepipeline-operator-")
        .map(shard_label_key)
}

/// An instance's apply naming `queries`; a shard's carries its own label while it names any.
fn apply<'a>(manager: &str, queries: &[&'a OwnerInfo]) -> Apply<'a> {
    let labels = match instance_label(manager) {
        Some(key) if !queries.is_empty() => vec![(key, "true".to_string())],
        _ => Vec::new(),
    };
    Apply {
        manager: manager.to_string(),
        queries: queries.to_vec(),
        labels,
    }
}

/// The object as the server stores it after `applies` (each owning what it applied; the
/// object shows the union, the last apply's label value winning).
fn stored(item: &ImagePipelineItem, applies: &[Apply<'_>]) -> ImagePipeline {
    let mut spec = ImagePipelineSpec::from_item(item, REGION);
    spec.last_sync_time = Some("2026-03-01T11:00:00Z".into());
    let mut obj = ImagePipeline::new(&item.image_pipeline_id, spec);
    obj.metadata.namespace = Some("ns".into());
    obj.metadata.uid = Some(format!("objuid-{}", item.image_pipeline_id));
    obj.metadata.resource_version = Some("7".into());
    let mut refs = Vec::new();
    let mut labels = BTreeMap::new();
    let mut managed = Vec::new();
    for a in applies {
        let own: Vec<_> = a
            .queries
            .iter()
            .map(|q| owner_reference(&q.name, &q.uid))
            .collect();
        for r in &own {
            if !refs.iter().any(
                |x: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference| x.uid == r.uid,
            ) {
                refs.push(r.clone());
            }
        }
        let own_labels: BTreeMap<String, String> = a
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        labels.extend(own_labels.clone());
        let body = json!({
            "metadata": {"ownerReferences": own, "labels": own_labels},
            "spec": obj.spec,
        });
        managed.push(ManagedFieldsEntry {
            manager: Some(a.manager.clone()),
            operation: Some("Apply".into()),
            fields_v1: Some(FieldsV1(applied_fields(&body))),
            ..ManagedFieldsEntry::default()
        });
    }
    obj.metadata.owner_references = Some(refs);
    obj.metadata.labels = (!labels.is_empty()).then_some(labels);
    obj.metadata.managed_fields = Some(managed);
    obj
}

/// What the instance applying as `manager`, serving `owners`, plans for `query` listing
/// `items` over `objects`.
fn plan_as<'i>(
    manager: &str,
    owners: &Owners,
    query: &OwnerInfo,
    items: &'i [ImagePipelineItem],
    objects: &[&ImagePipeline],
) -> Plan<'i> {
    let existing: BTreeMap<String, Arc<Mirrored>> = objects
        .iter()
        .map(|o| {
            (
                o.metadata.name.clone().unwrap_or_default(),
                Arc::new(Mirrored::of_as(o, manager)),
            )
        })
        .collect();
    let label = instance_label(manager);
    plan(&PlanInput {
        query_name: &query.name,
        query_uid: &query.uid,
        namespace: "ns",
        region_id: REGION,
        items,
        existing: &existing,
        owners,
        prune: true,
        claims: &BTreeMap::new(),
        awaiting_listings: false,
        now: NOW,
        instance_label: label.as_deref(),
    })
}

fn uids<'w>(w: &'w imagepipeline_operator::controller::plan::Write<'_>) -> Vec<&'w str> {
    w.owners.iter().map(|r| r.uid.as_str()).collect()
}

#[test]
fn overlapping_queries_in_two_shards_share_an_object_without_writes() {
    let (a, b) = (query("a", &[]), query("b", &[]));
    let items = [item("ip-1")];
    let obj = stored(
        &items[0],
        &[apply(&main_manager(), &[&a]), apply(&shard1(), &[&b])],
    );
    let from_main = plan_as(&main_manager(), &served(&[&a]), &a, &items, &[&obj]);
    assert!(from_main.is_empty(), "{from_main:?}");
    let from_shard = plan_as(&shard1(), &served(&[&b]), &b, &items, &[&obj]);
    assert!(from_shard.is_empty(), "{from_shard:?}");
}

#[test]
fn a_query_that_stops_matching_releases_the_object_another_shard_still_owns() {
    let (a, b) = (query("a", &[]), query("b", &[]));
    let obj = stored(
        &item("ip-1"),
        &[apply(&main_manager(), &[&a]), apply(&shard1(), &[&b])],
    );
    let p = plan_as(&main_manager(), &served(&[&a]), &a, &[], &[&obj]);
    assert!(
        p.deletions.is_empty(),
        "never prunes what another shard owns"
    );
    assert_eq!(p.writes.len(), 1);
    let w = &p.writes[0];
    assert_eq!(w.kind, WriteKind::Release);
    assert!(uids(w).is_empty(), "only this instance's reference goes");
    assert!(
        w.relinquish,
        "nothing of this instance's stays on the object"
    );
    assert_eq!(w.other_instances_owners, ["uid-b"]);
    // The object as it stands after that release: the other shard still sees its own
    // reference and has nothing to write.
    let after = stored(
        &item("ip-1"),
        &[apply(&main_manager(), &[]), apply(&shard1(), &[&b])],
    );
    let items = [item("ip-1")];
    let from_shard = plan_as(&shard1(), &served(&[&b]), &b, &items, &[&after]);
    assert!(from_shard.is_empty(), "{from_shard:?}");
}

#[test]
fn the_last_owner_across_shards_deletes() {
    let a = query("a", &[]);
    let obj = stored(&item("ip-1"), &[apply(&main_manager(), &[&a])]);
    let p = plan_as(&main_manager(), &served(&[&a]), &a, &[], &[&obj]);
    assert_eq!(p.deletions.len(), 1);
    assert_eq!(p.deletions[0].uid.as_deref(), Some("objuid-ip-1"));
}

#[test]
fn a_moved_query_is_adopted_by_its_new_shard_without_re_creating_objects() {
    let q = query("q", &[]);
    let items = [item("ip-1")];
    // Written by the main instance; the query now carries shard1's label.
    let obj = stored(&items[0], &[apply(&main_manager(), &[&q])]);
    let p = plan_as(&shard1(), &served(&[&q]), &q, &items, &[&obj]);
    assert_eq!(p.counts.created, 0);
    assert_eq!(p.writes.len(), 1);
    let w = &p.writes[0];
    assert_eq!(w.kind, WriteKind::Update, "adopted in place, same object");
    assert_eq!(uids(w), ["uid-q"]);
    assert_eq!(w.resource_version.as_deref(), Some("7"));

    // Once both have set the reference, the old instance lets go of it.
    let adopted = stored(
        &items[0],
        &[apply(&main_manager(), &[&q]), apply(&shard1(), &[&q])],
    );
    let record = Arc::new(Mirrored::of_as(&adopted, &main_manager()));
    let release = let_go("ns", &[record], &Owners::new(), None);
    assert_eq!(release.writes.len(), 1);
    assert_eq!(release.writes[0].kind, WriteKind::Release);
    assert!(uids(&release.writes[0]).is_empty());
    assert!(
        release.writes[0].relinquish,
        "the old instance gives the object up entirely"
    );
    assert!(release.deletions.is_empty());

    // The new shard keeps its claim; the old one, not yet adopted elsewhere, keeps its own.
    let new_view = Arc::new(Mirrored::of_as(&adopted, &shard1()));
    assert!(
        let_go(
            "ns",
            &[new_view],
            &served(&[&q]),
            instance_label(&shard1()).as_deref()
        )
        .is_empty()
    );
    let not_adopted = Arc::new(Mirrored::of_as(&obj, &main_manager()));
    assert!(let_go("ns", &[not_adopted], &Owners::new(), None).is_empty());
}

#[test]
fn after_the_move_the_new_shard_has_nothing_more_to_write() {
    let q = query("q", &[]);
    let items = [item("ip-1")];
    let adopted = stored(
        &items[0],
        &[apply(&shard1(), &[&q]), apply(&main_manager(), &[])],
    );
    assert!(plan_as(&shard1(), &served(&[&q]), &q, &items, &[&adopted]).is_empty());
}

#[test]
fn a_label_key_another_shard_set_first_is_left_to_it() {
    let a = query("a", &[("team", "blue")]);
    let b = query("b", &[("team", "red")]);
    let items = [item("ip-1")];
    let mut first = apply(&shard1(), &[&b]);
    first.labels.push(("team".into(), "red".into()));
    let ours = apply(&main_manager(), &[&a]);
    let obj = stored(&items[0], &[first, ours]);
    let p = plan_as(&main_manager(), &served(&[&a]), &a, &items, &[&obj]);
    assert!(p.is_empty(), "no fight over the key: {p:?}");
}

#[test]
fn what_another_shard_wrote_in_the_spec_is_not_foreign() {
    let (a, b) = (query("a", &[]), query("b", &[]));
    let items = [item("ip-1")];
    // shard1 took `lastSyncTime` and the content over with its forced apply last.
    let obj = stored(
        &items[0],
        &[apply(&shard1(), &[&b]), apply(&main_manager(), &[&a])],
    );
    let mut record = Mirrored::of_as(&obj, &main_manager());
    assert!(record.foreign_spec.is_empty());
    record = Mirrored::of_as(&obj, &shard1());
    assert!(record.foreign_spec.is_empty());
    assert!(!record.foreign_owners);
}

#[test]
fn a_stale_claim_of_another_shard_on_a_query_this_one_serves_is_removed_when_it_lets_go() {
    let q = query("q", &[]);
    // Both set the reference (moved here); now q no longer lists the pipeline.
    let obj = stored(
        &item("ip-1"),
        &[apply(&main_manager(), &[&q]), apply(&shard1(), &[&q])],
    );
    let p = plan_as(&shard1(), &served(&[&q]), &q, &[], &[&obj]);
    assert_eq!(p.deletions.len(), 1, "q was the only owner: {p:?}");
    // With another query of another shard owning it too, only q's reference goes, including
    // the copy the other instance set.
    let o = query("o", &[]);
    let shared = stored(
        &item("ip-1"),
        &[apply(&main_manager(), &[&q, &o]), apply(&shard1(), &[&q])],
    );
    let p = plan_as(&shard1(), &served(&[&q]), &q, &[], &[&shared]);
    assert!(p.deletions.is_empty());
    let w = &p.writes[0];
    assert!(w.strip_foreign_owners);
    assert_eq!(w.other_instances_owners, ["uid-o"]);
    assert!(uids(w).is_empty());
}

#[test]
fn a_shard_labels_what_it_mirrors_and_takes_its_label_off_what_it_lets_go() {
    let (a, b) = (query("a", &[]), query("b", &[]));
    let key = shard_label_key("shard1");
    let items = [item("ip-1")];
    // A create by shard1 carries its label (its watch selects it).
    let p = plan_as(&shard1(), &served(&[&b]), &b, &items, &[]);
    assert_eq!(p.writes[0].kind, WriteKind::Create);
    assert_eq!(
        p.writes[0].template.labels.get(&key).map(String::as_str),
        Some("true")
    );
    // The main instance puts no label.
    let p = plan_as(&main_manager(), &served(&[&a]), &a, &items, &[]);
    assert!(p.writes[0].template.labels.is_empty());
    // Released with no reference of its own left: the label goes too (the object leaves the
    // shard's watch); another shard's reference keeps the object.
    let obj = stored(
        &items[0],
        &[apply(&shard1(), &[&b]), apply(&main_manager(), &[&a])],
    );
    let p = plan_as(&shard1(), &served(&[&b]), &b, &[], &[&obj]);
    assert!(p.deletions.is_empty());
    assert_eq!(p.writes[0].kind, WriteKind::Release);
    assert!(!p.writes[0].template.labels.contains_key(&key));
}

#[test]
fn an_object_only_one_instance_writes_keeps_no_record_of_other_instances() {
    let a = query("a", &[]);
    let obj = stored(&item("ip-1"), &[apply(&main_manager(), &[&a])]);
    assert!(Mirrored::of_as(&obj, &main_manager()).others.is_none());
    let b = query("b", &[]);
    let shared = stored(
        &item("ip-1"),
        &[apply(&main_manager(), &[&a]), apply(&shard1(), &[&b])],
    );
    let record = Mirrored::of_as(&shared, &main_manager());
    assert_eq!(record.other_owners().len(), 1);
    assert_eq!(record.claimed_labels(), [shard_label_key("shard1")]);
}

#[test]
fn a_shard_whose_query_was_deleted_gives_up_what_it_set_on_an_object_another_shard_keeps() {
    let (a, b) = (query("a", &[]), query("b", &[("team", "red")]));
    // b (shard1) was deleted; the garbage collector removed its reference, but shard1's label
    // and b's template label are still shard1's.
    let mut leftover = apply(&shard1(), &[]);
    leftover.labels = vec![
        (shard_label_key("shard1"), "true".into()),
        ("team".into(), "red".into()),
    ];
    let obj = stored(&item("ip-1"), &[apply(&main_manager(), &[&a]), leftover]);
    let label = instance_label(&shard1());
    let record = Arc::new(Mirrored::of_as(&obj, &shard1()));
    let p = let_go("ns", &[record], &Owners::new(), label.as_deref());
    assert_eq!(p.writes.len(), 1);
    assert!(p.writes[0].relinquish);
    assert!(p.deletions.is_empty());
    // The main instance (no label of its own) has nothing to give up there.
    let main_view = Arc::new(Mirrored::of_as(&obj, &main_manager()));
    assert!(let_go("ns", &[main_view], &served(&[&a]), None).is_empty());
    let _ = b;
}
