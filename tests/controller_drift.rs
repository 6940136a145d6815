//! The drift check that runs after every status change of a query: in place in the index when
//! everything is as the query's last listing left it, and a full plan as soon as anything is
//! not (someone else's edit or deletion, an object the listing no longer has).

mod support;

use std::sync::Arc;

use imagepipeline_operator::controller::mirrored::ListedDigest;
use imagepipeline_operator::controller::sync::drifted;
use imagepipeline_operator::controller::validate::validate;
use imagepipeline_operator::controller::{Context, NoopObserver};
use imagepipeline_operator::crd::{ImagePipeline, ImagePipelineQuery};
use imagepipeline_operator::ecs::{ImagePipelineItem, Listing};
use serde_json::json;
use support::context::{context, ecs_client, mirrored, query};

/// 50 pipelines, all named `golden`.
fn listed() -> Vec<ImagePipelineItem> {
    (0..50)
        .map(|i| ImagePipelineItem {
            image_pipeline_id: format!("ip-{i:03}"),
            name: Some("golden".into()),
            ..ImagePipelineItem::default()
        })
        .collect()
}

/// The objects the operator wrote for `items`, owned by query `q`.
fn mirrored_all(items: &[ImagePipelineItem]) -> Vec<ImagePipeline> {
    items
        .iter()
        .map(|i| mirrored(&i.image_pipeline_id, "golden"))
        .collect()
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
    let digest = Arc::new(ListedDigest::of(
        &Listing {
            items: listed.to_vec(),
            ..Listing::default()
        },
        "cn-hangzhou",
    ));
    drifted(&ctx, &q, &valid, &digest, "2026-01-02T00:00:00Z").expect("check")
}

#[tokio::test]
async fn objects_as_the_last_listing_left_them_have_not_drifted() {
    let items = listed();
    assert!(!check(mirrored_all(&items), &items));
}

#[tokio::test]
async fn a_deleted_object_has_drifted() {
    let items = listed();
    let mut objects = mirrored_all(&items);
    objects.remove(0);
    assert!(check(objects, &items));
}

#[tokio::test]
async fn an_object_whose_content_someone_changed_has_drifted() {
    let items = listed();
    let mut objects = mirrored_all(&items);
    objects[7].spec.name = Some("edited".into());
    assert!(check(objects, &items));
}

#[tokio::test]
async fn an_owned_object_the_listing_no_longer_has_has_drifted() {
    let items = listed();
    let mut objects = mirrored_all(&items);
    objects.push(mirrored("ip-gone", "golden"));
    assert!(check(objects, &items));
}
