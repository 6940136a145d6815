//! A refresh of a listing that has not changed: the pages the query's last listing had are
//! taken as they were (not decoded again) as long as their objects are up to date in place,
//! and a page whose items or objects changed is decoded and planned as always.

mod support;

use std::sync::Arc;

use imagepipeline_operator::controller::cache::CacheFeeder;
use imagepipeline_operator::controller::sync::drifted;
use imagepipeline_operator::controller::validate::validate;
use imagepipeline_operator::controller::{Context, reconcile};
use imagepipeline_operator::crd::{ImagePipeline, ImagePipelineQuery};
use imagepipeline_operator::metrics::{Metrics, PageLabels};
use imagepipeline_operator::sim::SimConfig;
use kube::runtime::watcher;
use serde_json::{Value, json};
use support::context::{context, ecs_client, mirrored, query};
use support::sim::Sim;

const N: usize = 250;
const PAGE: u32 = 100;

/// `N` pipelines named `golden`, as `mirrored` writes them.
fn items() -> Vec<Value> {
    (0..N)
        .map(|i| json!({"ImagePipelineId": id(i), "Name": "golden", "RegionId": "cn-hangzhou"}))
        .collect()
}

fn id(i: usize) -> String {
    format!("ip-{i:04}")
}

/// The objects a sync of `items()` leaves.
fn objects() -> Vec<ImagePipeline> {
    (0..N).map(|i| mirrored(&id(i), "golden")).collect()
}

struct Fixture {
    sim: Sim,
    query: ImagePipelineQuery,
}

impl Fixture {
    async fn start() -> Self {
        let sim = Sim::start(SimConfig {
            items: items(),
            ..SimConfig::default()
        })
        .await;
        Self {
            sim,
            query: query("q", json!({ "pageSize": PAGE })),
        }
    }

    /// A fresh process: its own cache of `objects`, its own metrics.
    fn context(&self, objects: Vec<ImagePipeline>) -> (Arc<Context>, Arc<Metrics>, Requests) {
        let (client, requests) = support::mock_api::client(None);
        let metrics = Arc::new(Metrics::new());
        let ecs = ecs_client(&self.sim.handle.url(), 1000, 100, None);
        let ctx = context(
            client,
            Arc::new(ecs),
            metrics.clone(),
            vec![self.query.clone()],
            objects,
        );
        (ctx, metrics, Requests(requests))
    }

    async fn sync(&self, ctx: &Arc<Context>) {
        reconcile(Arc::new(self.query.clone()), ctx.clone())
            .await
            .expect("reconcile");
        support::mock_api::settle().await;
    }
}

struct Requests(support::mock_api::Requests);

impl Requests {
    /// The ImagePipeline writes so far, as (method, name).
    fn pipeline_writes(&self) -> Vec<(String, String)> {
        support::mock_api::pipeline_writes(&self.0.all())
    }
}

/// Pages read so far: (reused, decoded).
fn pages(metrics: &Metrics) -> (u64, u64) {
    let count = |path: &str| {
        metrics
            .listing_pages
            .get_or_create(&PageLabels { path: path.into() })
            .get()
    };
    (count("reused"), count("decoded"))
}

#[tokio::test]
async fn an_unchanged_refresh_reuses_every_page_and_writes_nothing() {
    let f = Fixture::start().await;
    let (ctx, metrics, requests) = f.context(objects());
    f.sync(&ctx).await;
    assert_eq!(
        pages(&metrics),
        (0, 3),
        "the first listing decodes every page"
    );
    assert_eq!(requests.pipeline_writes(), []);

    f.sync(&ctx).await;
    assert_eq!(pages(&metrics), (3, 3), "the refresh decodes nothing");
    assert_eq!(requests.pipeline_writes(), [], "and writes nothing");
    assert_eq!(f.sim.handle.call_count(), 6, "each sync lists");
}

#[tokio::test]
async fn an_object_someone_edited_is_repaired_though_its_page_did_not_change() {
    let f = Fixture::start().await;
    let (first, _, _) = f.context(objects());
    f.sync(&first).await;

    // Another process, with the same memory of the listing, finds one object edited.
    let mut edited = objects();
    edited[123].spec.name = Some("edited by hand".into());
    edited.remove(7);
    let (ctx, metrics, requests) = f.context(edited);
    let memory = first.remembered("uid-q").expect("remembered");
    ctx.remember("uid-q", |m| *m = memory);
    f.sync(&ctx).await;

    let writes = requests.pipeline_writes();
    assert_eq!(
        writes,
        [("PATCH".to_string(), id(7)), ("PATCH".to_string(), id(123))],
        "the deleted object is re-created, the edited one repaired"
    );
    assert_eq!(
        pages(&metrics),
        (1, 2),
        "their pages were decoded, the third reused"
    );
}

#[tokio::test]
async fn a_changed_pipeline_is_decoded_and_updated_and_its_page_remembered_anew() {
    let f = Fixture::start().await;
    let (ctx, metrics, requests) = f.context(objects());
    f.sync(&ctx).await;

    let mut changed = items();
    changed[201]["Name"] = json!("renamed");
    f.sim.handle.set_items(changed);
    f.sync(&ctx).await;
    assert_eq!(requests.pipeline_writes(), [("PATCH".to_string(), id(201))]);
    assert_eq!(
        pages(&metrics),
        (2, 4),
        "only the changed page was decoded again"
    );

    // The next refresh finds the renamed object as written: every page is reused.
    f.sync(&ctx).await;
    assert_eq!(
        requests.pipeline_writes().len(),
        1,
        "no write after the update"
    );
    assert_eq!(pages(&metrics), (5, 4));
}

#[tokio::test]
async fn an_edit_the_watch_delivers_after_the_namespace_settled_is_still_repaired() {
    let f = Fixture::start().await;
    let (ctx, metrics, requests) = f.context(objects());
    let valid = validate(&f.query.spec).expect("valid");
    let now = "2026-01-02T00:00:00Z";
    let digest = || {
        ctx.remembered("uid-q")
            .and_then(|m| m.listing)
            .expect("listing")
    };
    f.sync(&ctx).await;
    // The check after the status change finds everything in place: the namespace settled.
    assert!(!drifted(&ctx, &f.query, &valid, &digest(), now).expect("check"));
    f.sync(&ctx).await;
    assert_eq!(pages(&metrics), (3, 3));
    assert!(!drifted(&ctx, &f.query, &valid, &digest(), now).expect("check"));
    assert_eq!(requests.pipeline_writes(), []);

    // Someone edits an object; the watch delivers it.
    let mut edited = mirrored(&id(42), "edited by hand");
    edited.metadata.resource_version = Some("8".into());
    CacheFeeder::new(ctx.pipelines.clone()).on_event(watcher::Event::Apply(edited));
    assert!(drifted(&ctx, &f.query, &valid, &digest(), now).expect("check"));
    f.sync(&ctx).await;
    assert_eq!(requests.pipeline_writes(), [("PATCH".to_string(), id(42))]);
    assert_eq!(pages(&metrics), (5, 4), "the edited object's page decoded");
}

#[tokio::test]
async fn pages_taken_on_a_settled_namespace_still_count_when_a_later_page_changed() {
    let f = Fixture::start().await;
    let (ctx, metrics, requests) = f.context(objects());
    let valid = validate(&f.query.spec).expect("valid");
    let digest = || {
        ctx.remembered("uid-q")
            .and_then(|m| m.listing)
            .expect("listing")
    };
    f.sync(&ctx).await;
    assert!(!drifted(&ctx, &f.query, &valid, &digest(), "2026-01-02T00:00:00Z").expect("check"));

    // The last page changes: the two before it were taken without copying anything, and are
    // part of the new listing all the same (nothing of theirs is pruned).
    let mut changed = items();
    changed[N - 1]["Name"] = json!("renamed");
    f.sim.handle.set_items(changed);
    f.sync(&ctx).await;
    assert_eq!(pages(&metrics), (2, 4));
    assert_eq!(
        requests.pipeline_writes(),
        [("PATCH".to_string(), id(N - 1))],
        "one update, no deletion"
    );
    let listing = digest();
    assert_eq!(listing.entries.len(), N);
    assert!((0..N).all(|i| listing.lists(&id(i))));
    assert_eq!(
        listing.pages.len(),
        3,
        "every page remembered for the next refresh"
    );
}
