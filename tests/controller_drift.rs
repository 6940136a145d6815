//! The drift check that runs after every status change of a query: in place in the index when
//! everything is as the query's last listing left it, and a full plan as soon as anything is
//! not (someone else's edit or deletion, an object the listing no longer has).

mod support;

use std::sync::Arc;

use imagepipeline_operator::controller::desired::owner_reference;
use imagepipeline_operator::controller::mirrored::ListedDigest;
use imagepipeline_operator::controller::sync::drifted;
use imagepipeline_operator::controller::validate::validate;
use imagepipeline_operator::controller::{Context, NoopObserver};
use imagepipeline_operator::crd::{ImagePipeline, ImagePipelineQuery, ImagePipelineSpec};
use imagepipeline_operator::ecs::{ImagePipelineItem, Listing};
use serde_json::json;
use support::context::{NS, context, ecs_client, query};

fn item(id: &str, name: &str) -> ImagePipelineItem {
    ImagePipelineItem {
        image_pipeline_id: id.into(),
        name: Some(name.into()),
        ..ImagePipelineItem::default()
    }
}

/// The object the operator wrote for `item`, owned by query `q`.
fn mirrored(item: &ImagePipelineItem) -> ImagePipeline {
    let mut spec = ImagePipelineSpec::from_item(item, "cn-hangzhou");
    spec.last_sync_time = Some("2026-01-01T00:00:00Z".into());
    let id = &item.image_pipeline_id;
    let mut obj = ImagePipeline::new(id, spec);
    obj.metadata.namespace = Some(NS.into());
    obj.metadata.uid = Some(format!("obj-{id}"));
    obj.metadata.resource_version = Some("7".into());
    obj.metadata.owner_references = Some(vec![owner_reference("q", "uid-q")]);
    obj
}

fn fixture(objects: Vec<ImagePipeline>) -> (Arc<Context>, ImagePipelineQuery) {
    let q = query("q", json!({}));
    let (client, _requests) = support::mock_api::client(None);
    let ecs = ecs_client("http://127.0.0.1:9", 100, 10, None);
    let ctx = context(
        client,
        Arc::new(ecs),
        Arc::new(NoopObserver),
        vec![q.clone()],
        objects,
    );
    (ctx, q)
}

fn check(objects: Vec<ImagePipeline>, listed: &[ImagePipelineItem]) -> bool {
    let (ctx, q) = fixture(objects);
    let valid = validate(&q.spec).expect("valid spec");
    let digest = ListedDigest::of(
        &Listing {
            items: listed.to_vec(),
            ..Listing::default()
        },
        "cn-hangzhou",
    );
    drifted(&ctx, &q, &valid, &digest, "2026-01-02T00:00:00Z").expect("check")
}

#[tokio::test]
async fn objects_as_the_last_listing_left_them_have_not_drifted() {
    let items: Vec<_> = (0..50)
        .map(|i| item(&format!("ip-{i:03}"), "golden"))
        .collect();
    assert!(!check(items.iter().map(mirrored).collect(), &items));
}

#[tokio::test]
async fn a_deleted_object_has_drifted() {
    let items: Vec<_> = (0..50)
        .map(|i| item(&format!("ip-{i:03}"), "golden"))
        .collect();
    let objects = items.iter().skip(1).map(mirrored).collect();
    assert!(check(objects, &items));
}

#[tokio::test]
async fn an_object_whose_content_someone_changed_has_drifted() {
    let items: Vec<_> = (0..50)
        .map(|i| item(&format!("ip-{i:03}"), "golden"))
        .collect();
    let mut objects: Vec<ImagePipeline> = items.iter().map(mirrored).collect();
    objects[7].spec.name = Some("edited".into());
    assert!(check(objects, &items));
}

#[tokio::test]
async fn an_owned_object_the_listing_no_longer_has_has_drifted() {
    let items: Vec<_> = (0..50)
        .map(|i| item(&format!("ip-{i:03}"), "golden"))
        .collect();
    let mut objects: Vec<ImagePipeline> = items.iter().map(mirrored).collect();
    objects.push(mirrored(&item("ip-gone", "golden")));
    assert!(check(objects, &items));
}
