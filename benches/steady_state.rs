//! The controller at steady state against a mocked API server (`tower_test`): the requests one
//! scheduled refresh of a query sends with N mirrored objects in the cache, by method and
//! resource, and how long the reconcile takes. The refresh is the real `reconcile` of a query
//! this process synced before (so the drift check runs too) whose `nextSyncTime` has passed.
//!
//! `cargo bench --bench steady_state`; environment: `BENCH_SIZES` (default
//! `1000,10000,50000`), `BENCH_RUNS` (default 5).

mod support;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use http::{Method, Request, Response, StatusCode};
use imagepipeline_operator::controller::view::{NamespaceLocks, RecentWrites};
use imagepipeline_operator::controller::{
    AmbientPolicy, Context, CredentialsResolver, NoopObserver, PipelineSource, SharedListings,
    Writer, reconcile,
};
use imagepipeline_operator::crd::{
    ImagePipeline, ImagePipelineQuery, ImagePipelineQuerySpec, ImagePipelineQueryStatus,
};
use imagepipeline_operator::ecs::credentials::{Credentials, StaticProvider};
use imagepipeline_operator::ecs::{
    ImagePipelineItem, Listing, ListingError, PipelineFilter, SharedProvider,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::client::Body;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use serde_json::{Value, json};
use support::{NAMESPACE, QUERY, QUERY_UID, REGION};
use tower_test::mock::{self, Handle};

/// A listing source whose answer the bench swaps between reconciles.
struct FixedSource(Mutex<Listing>);

impl PipelineSource for FixedSource {
    fn list(
        &self,
        _filter: PipelineFilter,
        _provider: SharedProvider,
    ) -> BoxFuture<'static, Result<Listing, ListingError>> {
        let listing = self.0.lock().unwrap().clone();
        Box::pin(futures::future::ready(Ok(listing)))
    }
}

fn listing(items: Vec<ImagePipelineItem>) -> Listing {
    let pages = items.len().div_ceil(500).max(1) as u32;
    Listing {
        items,
        pages,
        calls: pages,
        ..Listing::default()
    }
}

fn store_of<K>(objects: impl IntoIterator<Item = K>) -> Store<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    let (store, mut writer) = reflector::store();
    writer.apply_watcher_event(&watcher::Event::Init);
    for o in objects {
        writer.apply_watcher_event(&watcher::Event::InitApply(o));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
    store
}

fn query() -> ImagePipelineQuery {
    let spec: ImagePipelineQuerySpec = serde_json::from_value(json!({
        "regionId": REGION,
        "template": {"metadata": {"labels": {
            "team": "payments", "app.kubernetes.io/managed-by": "imagepipeline-operator"}}}
    }))
    .expect("query spec");
    let mut q = ImagePipelineQuery::new(QUERY, spec);
    q.metadata.namespace = Some(NAMESPACE.into());
    q.metadata.uid = Some(QUERY_UID.into());
    q.metadata.generation = Some(1);
    q.metadata.resource_version = Some("100".into());
    q
}

/// Requests by "METHOD resource", and the last status the controller applied.
#[derive(Default)]
struct Seen {
    requests: BTreeMap<String, u32>,
    status: Option<ImagePipelineQueryStatus>,
}

/// Answers every request the way the API server would, counting them.
async fn api_server(mut handle: Handle<Request<Body>, Response<Body>>, seen: Arc<Mutex<Seen>>) {
    let mut rv = 500_000u64;
    while let Some((request, respond)) = handle.next_request().await {
        let (parts, body) = request.into_parts();
        let bytes = body.collect_bytes().await.unwrap_or_default();
        let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        let path = parts.uri.path().to_string();
        let resource = if path.ends_with("/status") {
            "imagepipelinequeries/status"
        } else if path.contains("/imagepipelines/") {
            "imagepipelines"
        } else if path.contains("/events") {
            "events"
        } else {
            "other"
        };
        *seen
            .lock()
            .unwrap()
            .requests
            .entry(format!("{} {resource}", parts.method))
            .or_default() += 1;
        rv += 1;
        let (status, answer) = match (parts.method.clone(), resource) {
            (Method::PATCH, "imagepipelinequeries/status") => {
                let status: ImagePipelineQueryStatus =
                    serde_json::from_value(body["status"].clone()).expect("status body");
                let mut q = query();
                q.status = Some(status.clone());
                seen.lock().unwrap().status = Some(status);
                (StatusCode::OK, serde_json::to_value(&q).expect("query"))
            }
            (Method::PATCH, "imagepipelines") => {
                let mut obj = body;
                obj["metadata"]["resourceVersion"] = json!(rv.to_string());
                (StatusCode::OK, obj)
            }
            (Method::DELETE, _) => (
                StatusCode::OK,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
            ),
            (Method::POST, "events") => (StatusCode::CREATED, body),
            // A repeated Event is a patch of the first (an event series).
            (Method::PATCH, "events") => (StatusCode::OK, body),
            _ => (
                StatusCode::NOT_FOUND,
                json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": 404, "reason": "NotFound", "message": "not found"}),
            ),
        };
        respond.send_response(
            Response::builder()
                .status(status)
                .body(Body::from(serde_json::to_vec(&answer).expect("json")))
                .expect("response"),
        );
    }
}

struct Fixture {
    ctx: Arc<Context>,
    source: Arc<FixedSource>,
    seen: Arc<Mutex<Seen>>,
}

fn fixture(items: &[ImagePipelineItem], objects: &[ImagePipeline]) -> Fixture {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    let seen = Arc::new(Mutex::new(Seen::default()));
    tokio::spawn(api_server(handle, seen.clone()));
    let source = Arc::new(FixedSource(Mutex::new(listing(items.to_vec()))));
    let ambient: SharedProvider =
        Arc::new(StaticProvider::new("env", Credentials::new("AK", "SK")));
    let policy = AmbientPolicy {
        namespaces: [NAMESPACE.to_string()].into(),
        selector: None,
    };
    let ctx = Context {
        client: client.clone(),
        writer: Writer::new(client.clone()),
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "imagepipeline-operator".into(),
                instance: None,
            },
        ),
        pipelines: imagepipeline_operator::controller::cache::MirrorCache::from_objects(
            objects.iter().cloned(),
        ),
        pipelines_ready: tokio::sync::watch::channel(true).1,
        queries: store_of([query()]),
        listings: Arc::new(SharedListings::new(source.clone(), Duration::ZERO)),
        credentials: Arc::new(CredentialsResolver::new(Some(ambient), policy)),
        recent: RecentWrites::default(),
        locks: NamespaceLocks::default(),
        memory: Mutex::new(HashMap::new()),
        observer: Arc::new(NoopObserver),
        shard: "main".into(),
        object_label: None,
    };
    Fixture {
        ctx: Arc::new(ctx),
        source,
        seen,
    }
}

/// One measured reconcile: the requests it sent and its wall time.
struct Measured {
    requests: BTreeMap<String, u32>,
    ms: f64,
}

async fn measure(f: &Fixture, q: ImagePipelineQuery) -> Measured {
    f.seen.lock().unwrap().requests.clear();
    let start = Instant::now();
    reconcile(Arc::new(q), f.ctx.clone())
        .await
        .expect("reconcile");
    let ms = start.elapsed().as_secs_f64() * 1000.0;
    // Every request was answered before reconcile returned; nothing runs in the background.
    Measured {
        requests: f.seen.lock().unwrap().requests.clone(),
        ms,
    }
}

/// The listing of one refresh, and the ImagePipeline writes it must cause.
fn scenario(label: &str, items: &[ImagePipelineItem]) -> (Vec<ImagePipelineItem>, usize) {
    match label {
        "1% changed" => {
            let changed = items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    let mut item = item.clone();
                    if i % 100 == 0 {
                        item.instance_type = Some("ecs.g7.xlarge".into());
                    }
                    item
                })
                .collect();
            (changed, items.len().div_ceil(100))
        }
        "10% vanished" => {
            let kept = items
                .iter()
                .enumerate()
                .filter(|(i, _)| i % 10 != 0)
                .map(|(_, item)| item.clone())
                .collect();
            (kept, items.len().div_ceil(10))
        }
        _ => (items.to_vec(), 0),
    }
}

fn format_requests(requests: &BTreeMap<String, u32>) -> String {
    if requests.is_empty() {
        return "none".into();
    }
    requests
        .iter()
        .map(|(k, v)| format!("{v} × {k}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn pipeline_writes(requests: &BTreeMap<String, u32>) -> u32 {
    requests
        .iter()
        .filter(|(k, _)| k.ends_with(" imagepipelines"))
        .map(|(_, v)| v)
        .sum()
}

async fn bench(runs: usize) {
    println!(
        "## Controller steady state against a mocked API server (requests of one reconcile; median time of {runs} runs)\n"
    );
    println!(
        "| objects | reconcile | ImagePipeline writes | expected | all requests | reconcile (ms) |"
    );
    println!("|---:|---|---:|---:|---|---:|");
    for n in support::env_list("BENCH_SIZES", "1000,10000,50000") {
        let items = support::items(n);
        let objects = support::stored_objects(&items);
        for label in [
            "first sync after start, all unchanged",
            "refresh, all unchanged",
            "refresh, 1% changed",
            "refresh, 10% vanished",
            "settled (not due)",
        ] {
            let mut results = Vec::new();
            for _ in 0..runs {
                let f = fixture(&items, &objects);
                // The first sync of this process: the objects already exist and are unchanged.
                let first = measure(&f, query()).await;
                if label.starts_with("first sync") {
                    results.push((first, 0));
                    continue;
                }
                let mut settled = query();
                let mut status = f.seen.lock().unwrap().status.clone().expect("status");
                if label.starts_with("refresh") {
                    // The refresh interval has passed.
                    status.next_sync_time = Some(Time("2020-01-01T00:00:00Z".parse().unwrap()));
                }
                settled.status = Some(status);
                let (listing_items, expected) =
                    scenario(label.trim_start_matches("refresh, "), &items);
                *f.source.0.lock().unwrap() = listing(listing_items);
                results.push((measure(&f, settled).await, expected));
            }
            let (first, expected) = &results[0];
            let writes = pipeline_writes(&first.requests);
            assert!(
                results.iter().all(|(r, _)| r.requests == first.requests),
                "the same reconcile sent different requests in different runs"
            );
            assert_eq!(writes as usize, *expected, "{label} with {n} objects");
            let ms = support::median(results.iter().map(|(r, _)| r.ms).collect());
            println!(
                "| {n} | {label} | {writes} | {expected} | {} | {ms:.1} |",
                format_requests(&first.requests)
            );
        }
    }
    println!();
}

fn main() {
    if !support::started_by_cargo_bench() {
        println!("benchmarks run with `cargo bench --bench steady_state`");
        return;
    }
    let runs = support::runs(5);
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(bench(runs));
}
