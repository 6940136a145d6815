//! The plan step, without an API server: what a sync writes for new, changed, unchanged,
//! vanished and shared pipelines, with and without pruning, and with template metadata.

use std::collections::BTreeMap;
use std::sync::Arc;

use imagepipeline_operator::controller::desired::{OwnerInfo, Owners};
use imagepipeline_operator::controller::mirrored::Mirrored;
use imagepipeline_operator::controller::plan::{
    Deletion, Plan, PlanCounts, PlanInput, WriteKind, plan,
};
use imagepipeline_operator::crd::ImagePipeline;
use imagepipeline_operator::crd::query::TemplateMetadata;
use imagepipeline_operator::ecs::ImagePipelineItem;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ManagedFieldsEntry, Time};

const NOW: &str = "2026-03-01T12:00:00Z";
const EARLIER: &str = "2026-03-01T11:00:00Z";

fn item(id: &str) -> ImagePipelineItem {
    ImagePipelineItem {
        image_pipeline_id: id.into(),
        name: Some(format!("{id}-name")),
        instance_type: Some("ecs.g6.large".into()),
        ..ImagePipelineItem::default()
    }
}

fn owner(name: &str, labels: &[(&str, &str)]) -> OwnerInfo {
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

/// One planned apply with the object it applies: built from the listing item, or for a
/// release, from the content the object has on the server (as the writer reads it).
#[derive(Debug)]
struct Applied {
    kind: WriteKind,
    object: ImagePipeline,
}

/// A plan with every object built.
#[derive(Debug)]
struct Planned {
    writes: Vec<Applied>,
    deletions: Vec<Deletion>,
    counts: PlanCounts,
    matched: u32,
    unmirrorable: Vec<String>,
}

impl Planned {
    fn of(p: Plan<'_>, existing: &BTreeMap<String, Arc<ImagePipeline>>) -> Self {
        let writes = p
            .writes
            .iter()
            .map(|w| Applied {
                kind: w.kind,
                object: w
                    .object()
                    .unwrap_or_else(|| w.object_with(existing[w.name()].spec.clone())),
            })
            .collect();
        Self {
            writes,
            deletions: p.deletions,
            counts: p.counts,
            matched: p.matched,
            unmirrorable: p.unmirrorable,
        }
    }

    fn is_empty(&self) -> bool {
        self.writes.is_empty() && self.deletions.is_empty()
    }
}

/// A scenario: the queries of namespace `ns`, the objects in it, and one query syncing.
struct Scenario {
    owners: Owners,
    existing: BTreeMap<String, Arc<ImagePipeline>>,
    prune: bool,
    claims: BTreeMap<String, Vec<String>>,
    awaiting_listings: bool,
}

impl Scenario {
    fn new() -> Self {
        let mut s = Self {
            owners: Owners::new(),
            existing: BTreeMap::new(),
            prune: true,
            claims: BTreeMap::new(),
            awaiting_listings: false,
        };
        s = s.with_query(owner("a", &[]));
        s
    }

    fn with_query(mut self, info: OwnerInfo) -> Self {
        self.owners.insert(info.uid.clone(), info);
        self
    }

    /// `query`'s last listing (remembered by the process) contained `name`.
    fn claimed_by(mut self, query: &str, name: &str) -> Self {
        self.claims
            .entry(name.into())
            .or_default()
            .push(format!("uid-{query}"));
        self
    }

    /// The same scenario with the syncing query's `prune`.
    fn clone_with_prune(&self, prune: bool) -> Self {
        Self {
            owners: self.owners.clone(),
            existing: self.existing.clone(),
            prune,
            claims: self.claims.clone(),
            awaiting_listings: self.awaiting_listings,
        }
    }

    fn no_prune(mut self) -> Self {
        self.prune = false;
        self
    }

    /// Stores what `query` would write for `items` at `EARLIER`, as the server would keep it.
    fn mirrored_by(mut self, query: &str, items: &[ImagePipelineItem]) -> Self {
        let p = self.plan_as(query, items, EARLIER);
        for w in p.writes {
            let mut obj = w.object;
            let name = obj.metadata.name.clone().unwrap();
            obj.metadata.uid = Some(format!("obj-uid-{name}"));
            let rv = self
                .existing
                .get(&name)
                .and_then(|o| o.metadata.resource_version.clone())
                .map_or(1, |rv| rv.parse::<u32>().unwrap() + 1);
            obj.metadata.resource_version = Some(rv.to_string());
            obj.metadata.managed_fields = Some(vec![managed_entry(&obj)]);
            self.existing.insert(name, Arc::new(obj));
        }
        self
    }

    fn edit(mut self, name: &str, f: impl FnOnce(&mut ImagePipeline)) -> Self {
        let mut obj = (*self.existing[name]).clone();
        f(&mut obj);
        self.existing.insert(name.into(), Arc::new(obj));
        self
    }

    fn plan_as(&self, query: &str, items: &[ImagePipelineItem], now: &str) -> Planned {
        self.plan_then(query, items, now, |p| p)
    }

    /// Plans as `query`, changes the plan with `f`, and builds its objects.
    fn plan_then(
        &self,
        query: &str,
        items: &[ImagePipelineItem],
        now: &str,
        f: impl FnOnce(Plan<'_>) -> Plan<'_>,
    ) -> Planned {
        let uid = format!("uid-{query}");
        // The operator plans from its records of the objects.
        let existing: BTreeMap<String, Arc<Mirrored>> = self
            .existing
            .iter()
            .map(|(k, v)| (k.clone(), Arc::new(Mirrored::of(v))))
            .collect();
        let p = plan(&PlanInput {
            query_name: query,
            query_uid: &uid,
            namespace: "ns",
            region_id: "cn-hangzhou",
            items,
            existing: &existing,
            owners: &self.owners,
            prune: self.prune,
            claims: &self.claims,
            awaiting_listings: self.awaiting_listings,
            now,
            instance_label: None,
        });
        Planned::of(f(p), &self.existing)
    }
}

/// The managed-fields entry the API server would record for an apply of `obj` by the operator.
fn managed_entry(obj: &ImagePipeline) -> ManagedFieldsEntry {
    imagepipeline_operator::controller::ownership::apply_entry(obj)
}

fn owner_uids(obj: &ImagePipeline) -> Vec<String> {
    let mut uids: Vec<String> = obj
        .metadata
        .owner_references
        .iter()
        .flatten()
        .map(|r| r.uid.clone())
        .collect();
    uids.sort();
    uids
}

#[test]
fn a_new_pipeline_is_created_with_this_query_as_a_non_controller_owner() {
    let p = Scenario::new().plan_as("a", &[item("ip-new")], NOW);
    assert_eq!(p.counts.created, 1);
    assert_eq!(p.writes.len(), 1);
    let w = &p.writes[0];
    assert_eq!(w.kind, WriteKind::Create);
    assert_eq!(w.object.metadata.name.as_deref(), Some("ip-new"));
    assert_eq!(w.object.metadata.namespace.as_deref(), Some("ns"));
    assert_eq!(w.object.metadata.resource_version, None);
    assert_eq!(w.object.spec.region_id, "cn-hangzhou");
    assert_eq!(w.object.spec.last_sync_time.as_deref(), Some(NOW));
    let refs = w.object.metadata.owner_references.as_ref().unwrap();
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0].kind, "ImagePipelineQuery");
    assert_eq!(refs[0].api_version, "ecs.mirror.io/v1alpha1");
    assert_eq!(refs[0].uid, "uid-a");
    assert_eq!(refs[0].controller, Some(false));
    assert_eq!(refs[0].block_owner_deletion, Some(false));
    assert_eq!(p.matched, 1);
}

#[test]
fn an_unchanged_pipeline_is_not_written() {
    let items = [item("ip-a1"), item("ip-a2")];
    let p = Scenario::new()
        .mirrored_by("a", &items)
        .plan_as("a", &items, NOW);
    assert!(p.is_empty(), "{p:?}");
    assert_eq!(p.counts.unchanged, 2);
    assert_eq!(p.matched, 2);
}

#[test]
fn a_changed_pipeline_is_updated_from_the_version_it_was_planned_from() {
    let mut changed = item("ip-a1");
    changed.instance_type = Some("ecs.g7.xlarge".into());
    let p = Scenario::new()
        .mirrored_by("a", &[item("ip-a1")])
        .plan_as("a", &[changed], NOW);
    assert_eq!(p.counts.updated, 1);
    let w = &p.writes[0];
    assert_eq!(w.kind, WriteKind::Update);
    assert_eq!(
        w.object.spec.instance_type.as_deref(),
        Some("ecs.g7.xlarge")
    );
    assert_eq!(w.object.spec.last_sync_time.as_deref(), Some(NOW));
    assert_eq!(w.object.metadata.resource_version.as_deref(), Some("1"));
}

#[test]
fn an_object_edited_by_someone_else_is_restored() {
    let p = Scenario::new()
        .mirrored_by("a", &[item("ip-a1")])
        .edit("ip-a1", |o| o.spec.name = Some("hijacked".into()))
        .plan_as("a", &[item("ip-a1")], NOW);
    assert_eq!(p.counts.updated, 1);
    assert_eq!(p.writes[0].object.spec.name.as_deref(), Some("ip-a1-name"));
}

#[test]
fn a_vanished_pipeline_is_deleted_with_uid_and_resource_version_preconditions() {
    let p = Scenario::new()
        .mirrored_by("a", &[item("ip-a1"), item("ip-gone")])
        .plan_as("a", &[item("ip-a1")], NOW);
    assert!(p.writes.is_empty());
    assert_eq!(p.counts.deleted, 1);
    assert_eq!(p.counts.unchanged, 1);
    let d = &p.deletions[0];
    assert_eq!(d.name, "ip-gone");
    assert_eq!(d.uid.as_deref(), Some("obj-uid-ip-gone"));
    assert_eq!(d.resource_version.as_deref(), Some("1"));
}

#[test]
fn a_deletion_waits_while_another_query_of_the_namespace_has_not_listed_yet() {
    let mut s = Scenario::new().mirrored_by("a", &[item("ip-a1"), item("ip-gone")]);
    s.awaiting_listings = true;
    let p = s.plan_as("a", &[item("ip-a1")], NOW);
    assert!(p.is_empty(), "nothing deleted: {p:?}");
    assert_eq!(p.counts.deferred, 1);
    // A release (another owner keeps it) does not wait: nothing is deleted by it.
    let mut shared = Scenario::new()
        .with_query(owner("b", &[]))
        .mirrored_by("b", &[item("ip-shared")])
        .mirrored_by("a", &[item("ip-shared")]);
    shared.awaiting_listings = true;
    let p = shared.plan_as("a", &[], NOW);
    assert_eq!((p.counts.released, p.counts.deferred), (1, 0));
}

#[test]
fn an_owner_reference_someone_edited_is_put_back_whole() {
    let s = Scenario::new()
        .mirrored_by("a", &[item("ip-a1")])
        .edit("ip-a1", |o| {
            let refs = o.metadata.owner_references.as_mut().unwrap();
            refs[0].name = "renamed".into();
            refs[0].block_owner_deletion = Some(true);
        });
    let p = s.plan_as("a", &[item("ip-a1")], NOW);
    assert_eq!(p.counts.updated, 1, "{p:?}");
    let refs = p.writes[0]
        .object
        .metadata
        .owner_references
        .clone()
        .unwrap();
    assert_eq!(refs[0].name, "a");
    assert_eq!(refs[0].block_owner_deletion, Some(false));
}

#[test]
fn with_mixed_prune_the_object_is_deleted_only_when_every_owner_prunes() {
    // b keeps its objects (`prune: false`); a prunes.
    let mut b = owner("b", &[]);
    b.prune = false;
    let both = Scenario::new()
        .with_query(b)
        .mirrored_by("a", &[item("ip-x")])
        .mirrored_by("b", &[item("ip-x")]);
    // b syncs first without the pipeline: it keeps its reference while a (pruning) owns it.
    let p = both.clone_with_prune(false).plan_as("b", &[], NOW);
    assert!(p.is_empty(), "b keeps its reference: {p:?}");
    // a syncs (first or after b): it releases, leaving b as the last owner.
    let p = both.plan_as("a", &[], NOW);
    assert_eq!((p.counts.released, p.counts.deleted), (1, 0));
}

#[test]
fn objects_of_other_queries_are_left_alone() {
    let p = Scenario::new()
        .with_query(owner("b", &[]))
        .mirrored_by("b", &[item("ip-b1")])
        .plan_as("a", &[], NOW);
    assert!(p.is_empty(), "{p:?}");
}

#[test]
fn a_pipeline_matched_by_two_queries_carries_both_owner_references() {
    let s = Scenario::new()
        .with_query(owner("b", &[]))
        .mirrored_by("b", &[item("ip-shared")]);
    let p = s.plan_as("a", &[item("ip-shared")], NOW);
    assert_eq!(p.counts.updated, 1);
    let obj = &p.writes[0].object;
    assert_eq!(owner_uids(obj), ["uid-a", "uid-b"]);
    // Content did not change: the stamp is kept.
    assert_eq!(obj.spec.last_sync_time.as_deref(), Some(EARLIER));
    assert_eq!(obj.metadata.resource_version.as_deref(), Some("1"));
}

#[test]
fn a_shared_pipeline_only_loses_the_reference_of_the_query_that_stopped_matching() {
    let s = Scenario::new()
        .with_query(owner("b", &[]))
        .mirrored_by("b", &[item("ip-shared")])
        .mirrored_by("a", &[item("ip-shared")]);
    assert_eq!(owner_uids(&s.existing["ip-shared"]), ["uid-a", "uid-b"]);
    let p = s.plan_as("a", &[], NOW);
    assert!(p.deletions.is_empty(), "a shared object is never deleted");
    assert_eq!(p.counts.released, 1);
    let w = &p.writes[0];
    assert_eq!(w.kind, WriteKind::Release);
    assert_eq!(owner_uids(&w.object), ["uid-b"]);
    assert_eq!(w.object.spec, s.existing["ip-shared"].spec);
    assert_eq!(w.object.metadata.resource_version.as_deref(), Some("2"));
}

#[test]
fn without_prune_a_vanished_pipeline_keeps_its_object_and_labels_but_loses_the_reference() {
    let s = Scenario::new()
        .with_query(owner("a", &[("team", "payments")]))
        .no_prune()
        .mirrored_by("a", &[item("ip-old")]);
    let p = s.plan_as("a", &[], NOW);
    assert!(p.deletions.is_empty());
    assert_eq!(p.counts.released, 1);
    let obj = &p.writes[0].object;
    assert_eq!(obj.metadata.owner_references, None);
    assert_eq!(
        obj.metadata
            .labels
            .as_ref()
            .unwrap()
            .get("team")
            .map(String::as_str),
        Some("payments")
    );
}

#[test]
fn template_labels_and_annotations_are_put_on_every_object() {
    let mut a = owner("a", &[("team", "payments")]);
    a.template
        .annotations
        .insert("example.com/contact".into(), "pay@example.com".into());
    let p = Scenario::new()
        .with_query(a)
        .plan_as("a", &[item("ip-1"), item("ip-2")], NOW);
    for w in &p.writes {
        let m = &w.object.metadata;
        assert_eq!(m.labels.as_ref().unwrap()["team"], "payments");
        assert_eq!(
            m.annotations.as_ref().unwrap()["example.com/contact"],
            "pay@example.com"
        );
    }
}

#[test]
fn a_changed_template_rewrites_objects_and_drops_labels_it_no_longer_has() {
    let s = Scenario::new()
        .with_query(owner("a", &[("team", "payments"), ("tier", "gold")]))
        .mirrored_by("a", &[item("ip-1")])
        .with_query(owner("a", &[("team", "payments")]));
    let p = s.plan_as("a", &[item("ip-1")], NOW);
    assert_eq!(p.counts.updated, 1);
    let labels = p.writes[0].object.metadata.labels.clone().unwrap();
    assert_eq!(labels.len(), 1);
    assert_eq!(labels["team"], "payments");
}

#[test]
fn labels_someone_else_added_do_not_make_an_object_stale() {
    let p = Scenario::new()
        .with_query(owner("a", &[("team", "payments")]))
        .mirrored_by("a", &[item("ip-1")])
        .edit("ip-1", |o| {
            o.metadata
                .labels
                .get_or_insert_default()
                .insert("argocd.argoproj.io/instance".into(), "x".into());
        })
        .plan_as("a", &[item("ip-1")], NOW);
    assert!(p.is_empty(), "{p:?}");
}

#[test]
fn shared_objects_merge_templates_and_the_first_query_by_name_wins_a_conflict() {
    let s = Scenario::new()
        .with_query(owner("a", &[("team", "a-team"), ("a-only", "1")]))
        .with_query(owner("b", &[("team", "b-team"), ("b-only", "1")]))
        .mirrored_by("b", &[item("ip-shared")]);
    let p = s.plan_as("a", &[item("ip-shared")], NOW);
    let labels = p.writes[0].object.metadata.labels.clone().unwrap();
    assert_eq!(labels["team"], "a-team");
    assert_eq!(labels["a-only"], "1");
    assert_eq!(labels["b-only"], "1");
    // And b, planning next, computes the same object: no flapping.
    let s2 = Scenario {
        existing: {
            let mut e = s.existing.clone();
            let mut obj = p.writes[0].object.clone();
            obj.metadata.resource_version = Some("2".into());
            obj.metadata.managed_fields = Some(vec![managed_entry(&obj)]);
            e.insert("ip-shared".into(), Arc::new(obj));
            e
        },
        owners: s.owners.clone(),
        prune: true,
        claims: BTreeMap::new(),
        awaiting_listings: false,
    };
    assert!(s2.plan_as("b", &[item("ip-shared")], NOW).is_empty());
}

#[test]
fn objects_being_deleted_are_neither_written_nor_deleted_again() {
    let p = Scenario::new()
        .mirrored_by("a", &[item("ip-1"), item("ip-2")])
        .edit("ip-1", |o| {
            o.metadata.deletion_timestamp = Some(Time("2026-03-01T11:30:00Z".parse().unwrap()))
        })
        .edit("ip-2", |o| {
            o.metadata.deletion_timestamp = Some(Time("2026-03-01T11:30:00Z".parse().unwrap()))
        })
        .plan_as("a", &[item("ip-1")], NOW);
    assert!(p.is_empty(), "{p:?}");
}

#[test]
fn ids_that_cannot_be_object_names_are_reported_and_skipped() {
    let p = Scenario::new().plan_as("a", &[item("ip-OK"), item("ip-fine")], NOW);
    assert_eq!(p.unmirrorable, ["ip-OK"]);
    assert_eq!(p.matched, 1);
    assert_eq!(p.writes.len(), 1);
}

#[test]
fn a_pipeline_that_moved_to_another_query_is_handed_over_not_deleted() {
    // ip-moved left query a's filter and entered query b's; b listed it but has not written yet.
    let s = Scenario::new()
        .with_query(owner("b", &[("team", "b")]))
        .mirrored_by("a", &[item("ip-moved")])
        .claimed_by("b", "ip-moved");
    let p = s.plan_as("a", &[], NOW);
    assert!(
        p.deletions.is_empty(),
        "an object another query matches is never deleted"
    );
    assert_eq!(p.counts.released, 1);
    let w = &p.writes[0];
    assert_eq!(w.kind, WriteKind::Release);
    assert_eq!(owner_uids(&w.object), ["uid-b"]);
    assert_eq!(
        w.object
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get("team"))
            .map(String::as_str),
        Some("b"),
        "the new owner's template applies"
    );
}

#[test]
fn a_claim_by_the_syncing_query_itself_or_an_unknown_query_changes_nothing() {
    let p = Scenario::new()
        .mirrored_by("a", &[item("ip-gone")])
        .claimed_by("a", "ip-gone")
        .claimed_by("deleted-query", "ip-gone")
        .plan_as("a", &[], NOW);
    assert_eq!(p.counts.deleted, 1);
}

#[test]
fn a_listing_with_unreadable_items_removes_nothing() {
    let s = Scenario::new()
        .with_query(owner("b", &[]))
        .mirrored_by("b", &[item("ip-shared")])
        .mirrored_by("a", &[item("ip-kept"), item("ip-shared"), item("ip-old")]);
    let listing = [item("ip-kept"), item("ip-new")];
    let full = s.plan_as("a", &listing, NOW);
    assert_eq!((full.counts.deleted, full.counts.released), (1, 1));
    let kept = s.plan_then("a", &listing, NOW, |p| p.without_removals());
    assert!(kept.deletions.is_empty());
    assert!(kept.writes.iter().all(|w| w.kind != WriteKind::Release));
    assert_eq!(kept.counts.created, 1, "new pipelines are still mirrored");
    assert_eq!((kept.counts.deleted, kept.counts.released), (0, 0));
}

#[test]
fn the_record_of_an_object_keeps_what_the_plan_reads() {
    use imagepipeline_operator::controller::desired::managed_metadata_keys;
    let s = Scenario::new()
        .with_query(owner("a", &[("team", "a")]))
        .mirrored_by("a", &[item("ip-a1")]);
    let mut obj = (*s.existing["ip-a1"]).clone();
    // Another manager's entry and label are not the operator's business.
    let mut other = managed_entry(&obj);
    other.manager = Some("kubectl-edit".into());
    if let Some(fields) = other.fields_v1.as_mut() {
        fields.0 = serde_json::json!({"f:metadata": {"f:labels": {"f:x": {}}}});
    }
    obj.metadata
        .managed_fields
        .get_or_insert_default()
        .push(other);
    obj.metadata
        .labels
        .get_or_insert_default()
        .insert("x".into(), "1".into());
    let record = Mirrored::of(&obj);
    let (labels, annotations) = managed_metadata_keys(&obj);
    assert_eq!(
        record
            .labels
            .iter()
            .map(|(k, _)| k.clone())
            .collect::<Vec<_>>(),
        labels.into_iter().collect::<Vec<_>>()
    );
    assert_eq!(
        &*record.labels,
        [("team".to_string(), Some("a".to_string()))]
    );
    assert!(annotations.is_empty() && record.annotations.is_empty());
    assert_eq!(
        record.owners.to_vec(),
        obj.metadata.owner_references.clone().unwrap()
    );
    assert_eq!(record.version(), obj.metadata.resource_version);
    assert_eq!(record.uid_text(), obj.metadata.uid);
    assert_eq!(record.last_sync_time.as_deref(), Some(EARLIER));
    // The record plans exactly like the full object: unchanged, then changed content.
    let mut with_other = s;
    with_other.existing.insert("ip-a1".into(), Arc::new(obj));
    assert!(with_other.plan_as("a", &[item("ip-a1")], NOW).is_empty());
    let mut changed = item("ip-a1");
    changed.description = Some("new".into());
    assert_eq!(with_other.plan_as("a", &[changed], NOW).counts.updated, 1);
}
