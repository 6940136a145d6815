//! The reconcile against a mocked API server (`tower_test`): the exact requests of a create, of
//! an unchanged object (none), of an owner-reference removal, of a deletion with preconditions,
//! of the status patch, and of a failed listing (a status and no ImagePipeline write).

// The listing seam returns the ECS client's `ListingError` by value, as production does.
#![allow(clippy::result_large_err)]

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;
use http::{Method, Request, Response, StatusCode};
use imagepipeline_operator::controller::cache::MirrorCache;
use imagepipeline_operator::controller::desired::owner_reference;
use imagepipeline_operator::controller::view::{NamespaceLocks, RecentWrites};
use imagepipeline_operator::controller::{
    AmbientPolicy, Context, CredentialsResolver, NoopObserver, PipelineSource, SharedListings,
    Writer, reconcile,
};
use imagepipeline_operator::crd::{
    ImagePipeline, ImagePipelineQuery, ImagePipelineQuerySpec, ImagePipelineQueryStatus,
    ImagePipelineSpec,
};
use imagepipeline_operator::ecs::credentials::{Credentials, StaticProvider};
use imagepipeline_operator::ecs::{
    ApiError, EcsError, ImagePipelineItem, Listing, ListingError, PipelineFilter, SharedProvider,
};
use kube::client::Body;
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use serde_json::{Value, json};
use tower_test::mock::{self, Handle};

const NS: &str = "ns";
const APPLY_QUERY: &str = "?&force=true&fieldManager=imagepipeline-operator";

// ---------------------------------------------------------------- fixtures

/// A listing source that answers with a fixed result and counts its calls.
struct FakeSource {
    result: Result<Listing, ListingError>,
    calls: Arc<AtomicU32>,
}

impl PipelineSource for FakeSource {
    fn list(
        &self,
        _filter: PipelineFilter,
        _provider: SharedProvider,
    ) -> BoxFuture<'static, Result<Listing, ListingError>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        Box::pin(futures::future::ready(self.result.clone()))
    }
}

fn listing(ids: &[&str]) -> Result<Listing, ListingError> {
    Ok(Listing {
        items: ids.iter().map(|id| item(id)).collect(),
        pages: 1,
        calls: 1,
        ..Listing::default()
    })
}

fn throttled_at_page_2() -> Result<Listing, ListingError> {
    Err(ListingError {
        page: 2,
        calls: 6,
        error: EcsError::Api(ApiError {
            status: 400,
            code: "Throttling.User".into(),
            message: "Request was denied due to user flow control.".into(),
            request_id: Some("RID-7".into()),
            host_id: None,
            recommend: None,
        }),
    })
}

fn item(id: &str) -> ImagePipelineItem {
    ImagePipelineItem {
        image_pipeline_id: id.into(),
        name: Some(format!("{id}-name")),
        ..ImagePipelineItem::default()
    }
}

fn query(spec: Value) -> ImagePipelineQuery {
    let mut body = json!({"regionId": "cn-hangzhou"});
    if let (Some(b), Some(extra)) = (body.as_object_mut(), spec.as_object()) {
        b.extend(extra.clone());
    }
    let spec: ImagePipelineQuerySpec = serde_json::from_value(body).unwrap();
    let mut q = ImagePipelineQuery::new("q", spec);
    q.metadata.namespace = Some(NS.into());
    q.metadata.uid = Some("uid-q".into());
    q.metadata.generation = Some(1);
    q.metadata.resource_version = Some("100".into());
    q
}

/// An ImagePipeline as the server stores it, owned by the queries with the given names.
fn stored(id: &str, owners: &[&str]) -> ImagePipeline {
    let mut spec = ImagePipelineSpec::from_item(&item(id), "cn-hangzhou");
    spec.last_sync_time = Some("2026-01-01T00:00:00Z".into());
    let mut obj = ImagePipeline::new(id, spec);
    obj.metadata.namespace = Some(NS.into());
    obj.metadata.uid = Some(format!("obj-{id}"));
    obj.metadata.resource_version = Some("7".into());
    obj.metadata.owner_references = Some(
        owners
            .iter()
            .map(|o| owner_reference(o, &format!("uid-{o}")))
            .collect(),
    );
    obj
}

fn store_of<K>(objects: Vec<K>) -> Store<K>
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

struct Fixture {
    ctx: Arc<Context>,
    source: Arc<FakeSource>,
    server: ApiServer,
}

impl FakeSource {
    fn calls(&self) -> u32 {
        self.calls.load(Ordering::SeqCst)
    }
}

fn fixture(
    listing: Result<Listing, ListingError>,
    pipelines: Vec<ImagePipeline>,
    queries: Vec<ImagePipelineQuery>,
    ambient_namespaces: &[&str],
) -> Fixture {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    let source = Arc::new(FakeSource {
        result: listing,
        calls: Arc::new(AtomicU32::new(0)),
    });
    let ambient: SharedProvider =
        Arc::new(StaticProvider::new("env", Credentials::new("AK", "SK")));
    let policy = AmbientPolicy {
        namespaces: ambient_namespaces.iter().map(|s| s.to_string()).collect(),
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
        pipelines: MirrorCache::from_objects(pipelines),
        pipelines_ready: tokio::sync::watch::channel(true).1,
        queries: store_of(queries),
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
        server: ApiServer(handle),
    }
}

// ---------------------------------------------------------------- the mocked API server

/// One request seen by the mocked API server.
struct Seen {
    method: Method,
    uri: String,
    content_type: Option<String>,
    body: Value,
    respond: tower_test::mock::SendResponse<Response<Body>>,
}

impl Seen {
    fn reply(self, status: StatusCode, body: &Value) {
        self.respond.send_response(
            Response::builder()
                .status(status)
                .body(Body::from(serde_json::to_vec(body).unwrap()))
                .unwrap(),
        );
    }

    /// Answers an apply with the applied object, as stored.
    fn reply_applied(self) {
        let mut obj = self.body.clone();
        obj["metadata"]["uid"] = json!("obj-new");
        obj["metadata"]["resourceVersion"] = json!("8");
        self.reply(StatusCode::OK, &obj);
    }
}

struct ApiServer(Handle<Request<Body>, Response<Body>>);

impl ApiServer {
    async fn next(&mut self) -> Seen {
        let (request, respond) =
            tokio::time::timeout(Duration::from_secs(5), self.0.next_request())
                .await
                .expect("the reconcile made no further request")
                .expect("the client was dropped");
        let (parts, body) = request.into_parts();
        let bytes = body.collect_bytes().await.unwrap();
        Seen {
            method: parts.method,
            uri: parts.uri.to_string(),
            content_type: parts
                .headers
                .get(http::header::CONTENT_TYPE)
                .map(|v| v.to_str().unwrap().to_string()),
            body: serde_json::from_slice(&bytes).unwrap_or(Value::Null),
            respond,
        }
    }

    /// Expects the status patch of query `q` and answers it; returns the applied status.
    async fn expect_status_patch(&mut self, q: &ImagePipelineQuery) -> ImagePipelineQueryStatus {
        let seen = self.next().await;
        assert_eq!(seen.method, Method::PATCH);
        assert_eq!(
            seen.uri,
            format!(
                "/apis/ecs.mirror.io/v1alpha1/namespaces/{NS}/imagepipelinequeries/q/status{APPLY_QUERY}"
            )
        );
        assert_eq!(
            seen.content_type.as_deref(),
            Some("application/apply-patch+yaml")
        );
        assert_eq!(seen.body["apiVersion"], "ecs.mirror.io/v1alpha1");
        assert_eq!(seen.body["kind"], "ImagePipelineQuery");
        let status: ImagePipelineQueryStatus =
            serde_json::from_value(seen.body["status"].clone()).unwrap();
        let mut answered = q.clone();
        answered.status = Some(status.clone());
        seen.reply(StatusCode::OK, &serde_json::to_value(&answered).unwrap());
        status
    }

    /// Expects an Event and answers it with `status`.
    async fn expect_event(&mut self, status: StatusCode) -> Value {
        let seen = self.next().await;
        assert_eq!(seen.method, Method::POST);
        assert_eq!(
            seen.uri,
            format!("/apis/events.k8s.io/v1/namespaces/{NS}/events?")
        );
        let body = seen.body.clone();
        let answer = if status.is_success() {
            body.clone()
        } else {
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": "boom", "reason": "InternalError", "code": status.as_u16()})
        };
        seen.reply(status, &answer);
        body
    }

    /// Asserts that no request is waiting.
    async fn expect_nothing_more(&mut self) {
        let more = tokio::time::timeout(Duration::from_millis(100), self.0.next_request()).await;
        assert!(
            more.is_err(),
            "unexpected request: {:?}",
            more.ok().flatten().map(|(r, _)| r.uri().to_string())
        );
    }
}

fn ready(status: &ImagePipelineQueryStatus) -> (String, String) {
    let c = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    (c.status.clone(), c.reason.clone())
}

async fn run_reconcile(
    ctx: &Arc<Context>,
    q: &ImagePipelineQuery,
) -> tokio::task::JoinHandle<
    Result<kube::runtime::controller::Action, imagepipeline_operator::controller::ControllerError>,
> {
    tokio::spawn(reconcile(Arc::new(q.clone()), ctx.clone()))
}

// ---------------------------------------------------------------- scenarios

#[tokio::test]
async fn a_new_pipeline_is_created_with_one_server_side_apply_then_status_and_an_event() {
    let q = query(json!({"template": {"metadata": {"labels": {"team": "payments"}}}}));
    let mut f = fixture(listing(&["ip-new"]), vec![], vec![q.clone()], &[NS]);
    let task = run_reconcile(&f.ctx, &q).await;

    let apply = f.server.next().await;
    assert_eq!(apply.method, Method::PATCH);
    assert_eq!(
        apply.uri,
        format!("/apis/ecs.mirror.io/v1alpha1/namespaces/{NS}/imagepipelines/ip-new{APPLY_QUERY}")
    );
    assert_eq!(
        apply.content_type.as_deref(),
        Some("application/apply-patch+yaml")
    );
    let body = apply.body.clone();
    assert_eq!(body["apiVersion"], "ecs.mirror.io/v1alpha1");
    assert_eq!(body["kind"], "ImagePipeline");
    assert_eq!(body["metadata"]["name"], "ip-new");
    assert_eq!(body["metadata"]["namespace"], NS);
    assert_eq!(body["metadata"]["labels"], json!({"team": "payments"}));
    assert_eq!(
        body["metadata"]["ownerReferences"],
        json!([{"apiVersion": "ecs.mirror.io/v1alpha1", "kind": "ImagePipelineQuery", "name": "q", "uid": "uid-q", "controller": false, "blockOwnerDeletion": false}])
    );
    assert!(
        body["metadata"].get("resourceVersion").is_none(),
        "a create has no precondition"
    );
    assert_eq!(body["spec"]["imagePipelineId"], "ip-new");
    assert_eq!(body["spec"]["regionId"], "cn-hangzhou");
    assert_eq!(body["spec"]["name"], "ip-new-name");
    assert!(body["spec"]["lastSyncTime"].is_string());
    apply.reply_applied();

    let status = f.server.expect_status_patch(&q).await;
    assert_eq!(ready(&status), ("True".into(), "Synced".into()));
    assert_eq!(status.matched_count, Some(1));
    assert_eq!(status.last_sync_result.as_ref().unwrap().created, 1);
    assert_eq!(status.credentials.as_deref(), Some("ambient/env"));
    assert!(status.next_sync_time.is_some());
    let event = f.server.expect_event(StatusCode::CREATED).await;
    assert_eq!(event["reason"], "Synced");
    assert_eq!(event["type"], "Normal");

    let action = task.await.unwrap().unwrap();
    assert_ne!(action, kube::runtime::controller::Action::await_change());
    assert_eq!(f.source.calls(), 1);
    f.server.expect_nothing_more().await;
}

#[tokio::test]
async fn an_unchanged_pipeline_gets_no_request_and_a_settled_query_none_at_all() {
    let q = query(json!({}));
    let mut f = fixture(
        listing(&["ip-same"]),
        vec![stored("ip-same", &["q"])],
        vec![q.clone()],
        &[NS],
    );
    let task = run_reconcile(&f.ctx, &q).await;
    // The first request is the status: nothing is written to the unchanged object.
    let status = f.server.expect_status_patch(&q).await;
    assert_eq!(status.last_sync_result.as_ref().unwrap().unchanged, 1);
    f.server.expect_event(StatusCode::CREATED).await;
    task.await.unwrap().unwrap();

    // The next reconcile (caused by the status write) sees nothing due: no request at all.
    let mut settled = q.clone();
    settled.status = Some(status);
    let action = reconcile(Arc::new(settled), f.ctx.clone()).await.unwrap();
    assert_ne!(action, kube::runtime::controller::Action::await_change());
    f.server.expect_nothing_more().await;
    assert_eq!(f.source.calls(), 1, "no second listing");
}

#[tokio::test]
async fn a_shared_pipeline_that_stopped_matching_only_loses_this_query_s_reference() {
    let q = query(json!({}));
    let mut f = fixture(
        listing(&[]),
        vec![stored("ip-shared", &["q", "other"])],
        vec![q.clone()],
        &[NS],
    );
    let task = run_reconcile(&f.ctx, &q).await;
    // The operator keeps no content of mirrored objects: a release reads it just before.
    let get = f.server.next().await;
    assert_eq!(get.method, Method::GET);
    assert_eq!(
        get.uri,
        format!("/apis/ecs.mirror.io/v1alpha1/namespaces/{NS}/imagepipelines/ip-shared")
    );
    let mut on_server = stored("ip-shared", &["q", "other"]);
    on_server.spec.description = Some("as on the server".into());
    get.reply(StatusCode::OK, &serde_json::to_value(&on_server).unwrap());
    let apply = f.server.next().await;
    assert_eq!(apply.method, Method::PATCH);
    assert_eq!(
        apply.uri,
        format!(
            "/apis/ecs.mirror.io/v1alpha1/namespaces/{NS}/imagepipelines/ip-shared{APPLY_QUERY}"
        )
    );
    assert_eq!(
        apply.body["spec"],
        serde_json::to_value(&on_server.spec).unwrap(),
        "the content stays as it is on the server"
    );
    let refs = apply.body["metadata"]["ownerReferences"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(refs.len(), 1);
    assert_eq!(refs[0]["uid"], "uid-other");
    assert_eq!(
        apply.body["metadata"]["resourceVersion"], "7",
        "planned from version 7"
    );
    assert_eq!(apply.body["spec"]["imagePipelineId"], "ip-shared");
    apply.reply_applied();
    let status = f.server.expect_status_patch(&q).await;
    assert_eq!(status.last_sync_result.as_ref().unwrap().released, 1);
    f.server.expect_event(StatusCode::CREATED).await;
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_vanished_pipeline_is_deleted_with_preconditions() {
    let q = query(json!({}));
    let mut f = fixture(
        listing(&[]),
        vec![stored("ip-gone", &["q"])],
        vec![q.clone()],
        &[NS],
    );
    let task = run_reconcile(&f.ctx, &q).await;
    let delete = f.server.next().await;
    assert_eq!(delete.method, Method::DELETE);
    assert_eq!(
        delete.uri,
        format!("/apis/ecs.mirror.io/v1alpha1/namespaces/{NS}/imagepipelines/ip-gone?")
    );
    assert_eq!(
        delete.body["preconditions"],
        json!({"uid": "obj-ip-gone", "resourceVersion": "7"})
    );
    delete.reply(
        StatusCode::OK,
        &json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
    );
    let status = f.server.expect_status_patch(&q).await;
    assert_eq!(status.last_sync_result.as_ref().unwrap().deleted, 1);
    assert_eq!(status.matched_count, Some(0));
    f.server.expect_event(StatusCode::CREATED).await;
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn with_prune_false_a_vanished_pipeline_is_kept_without_this_query_s_reference() {
    let q = query(json!({"prune": false}));
    let mut f = fixture(
        listing(&[]),
        vec![stored("ip-kept", &["q"])],
        vec![q.clone()],
        &[NS],
    );
    let task = run_reconcile(&f.ctx, &q).await;
    let get = f.server.next().await;
    assert_eq!(get.method, Method::GET, "no DELETE");
    get.reply(
        StatusCode::OK,
        &serde_json::to_value(stored("ip-kept", &["q"])).unwrap(),
    );
    let apply = f.server.next().await;
    assert_eq!(apply.method, Method::PATCH, "no DELETE");
    assert!(apply.body["metadata"].get("ownerReferences").is_none());
    apply.reply_applied();
    f.server.expect_status_patch(&q).await;
    f.server.expect_event(StatusCode::CREATED).await;
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_failed_listing_writes_no_pipeline_and_reports_why_even_if_the_event_fails() {
    let q = query(json!({}));
    let mut f = fixture(
        throttled_at_page_2(),
        vec![stored("ip-gone", &["q"])],
        vec![q.clone()],
        &[NS],
    );
    let task = run_reconcile(&f.ctx, &q).await;
    // The first request is the status: nothing is deleted although ip-gone is not listed.
    let status = f.server.expect_status_patch(&q).await;
    assert_eq!(ready(&status), ("False".into(), "Throttled".into()));
    let err = status.last_error.unwrap();
    assert_eq!(err.code, "Throttling.User");
    assert_eq!(err.request_id.as_deref(), Some("RID-7"));
    assert_eq!(err.page, Some(2));
    let event = f
        .server
        .expect_event(StatusCode::INTERNAL_SERVER_ERROR)
        .await;
    assert_eq!(event["reason"], "SyncFailed");
    assert_eq!(event["type"], "Warning");
    let action = task
        .await
        .unwrap()
        .expect("an Event that failed to publish does not fail the reconcile");
    assert_ne!(
        action,
        kube::runtime::controller::Action::await_change(),
        "retried with backoff"
    );
    f.server.expect_nothing_more().await;
}

#[tokio::test]
async fn an_invalid_spec_is_reported_without_any_listing() {
    let q = query(json!({"refreshInterval": "5s"}));
    let mut f = fixture(listing(&["ip-a"]), vec![], vec![q.clone()], &[NS]);
    let task = run_reconcile(&f.ctx, &q).await;
    let status = f.server.expect_status_patch(&q).await;
    assert_eq!(ready(&status), ("False".into(), "InvalidSpec".into()));
    assert!(
        status
            .last_error
            .unwrap()
            .message
            .contains("refreshInterval")
    );
    let event = f.server.expect_event(StatusCode::CREATED).await;
    assert_eq!(event["reason"], "InvalidSpec");
    let action = task.await.unwrap().unwrap();
    assert_eq!(action, kube::runtime::controller::Action::await_change());
    assert_eq!(f.source.calls(), 0);
}

#[tokio::test]
async fn a_missing_secret_is_a_credentials_error_naming_it() {
    let q = query(json!({"credentials": {"secretRef": {"name": "team-ak"}}}));
    let mut f = fixture(listing(&["ip-a"]), vec![], vec![q.clone()], &[]);
    let task = run_reconcile(&f.ctx, &q).await;
    let get = f.server.next().await;
    assert_eq!(get.method, Method::GET);
    assert_eq!(get.uri, format!("/api/v1/namespaces/{NS}/secrets/team-ak"));
    get.reply(
        StatusCode::NOT_FOUND,
        &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": "secrets \"team-ak\" not found"}),
    );
    let status = f.server.expect_status_patch(&q).await;
    assert_eq!(ready(&status), ("False".into(), "CredentialsError".into()));
    assert!(status.last_error.unwrap().message.contains("team-ak"));
    f.server.expect_event(StatusCode::CREATED).await;
    task.await.unwrap().unwrap();
    assert_eq!(f.source.calls(), 0);
}

#[tokio::test]
async fn a_secret_with_both_keys_is_used_and_shown_by_name() {
    let q = query(json!({"credentials": {"secretRef": {"name": "team-ak"}}}));
    let mut f = fixture(listing(&[]), vec![], vec![q.clone()], &[]);
    let task = run_reconcile(&f.ctx, &q).await;
    let get = f.server.next().await;
    assert_eq!(get.uri, format!("/api/v1/namespaces/{NS}/secrets/team-ak"));
    let data: BTreeMap<&str, &str> = [("accessKeyId", "QUs="), ("accessKeySecret", "U0s=")].into();
    get.reply(
        StatusCode::OK,
        &json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "team-ak", "namespace": NS, "resourceVersion": "3"}, "data": data}),
    );
    let status = f.server.expect_status_patch(&q).await;
    assert_eq!(ready(&status), ("True".into(), "Synced".into()));
    assert_eq!(status.credentials.as_deref(), Some("secret/team-ak"));
    f.server.expect_event(StatusCode::CREATED).await;
    task.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_secret_read_a_moment_ago_is_not_read_again_until_its_watch_reports_a_change() {
    let q = query(json!({}));
    let mut f = fixture(listing(&[]), vec![], vec![q.clone()], &[]);
    let secret = |rv: &str| json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "team-ak", "namespace": NS, "resourceVersion": rv}, "data": {"accessKeyId": "QUs=", "accessKeySecret": "U0s="}});
    let identity = |rv: &str| format!("secret/{NS}/team-ak@{rv}");
    let resolver = f.ctx.credentials.clone();
    let resolve = || {
        let (resolver, client) = (resolver.clone(), f.ctx.client.clone());
        tokio::spawn(async move {
            resolver
                .resolve(&client, NS, Some("team-ak"))
                .await
                .map(|r| r.identity)
                .expect("resolved")
        })
    };

    let first = resolve();
    let get = f.server.next().await;
    assert_eq!(get.uri, format!("/api/v1/namespaces/{NS}/secrets/team-ak"));
    get.reply(StatusCode::OK, &secret("3"));
    assert_eq!(first.await.unwrap(), identity("3"));

    // At once again (the reconcile of the sync's own status patch): not read again.
    let cached = tokio::time::timeout(Duration::from_secs(2), resolve())
        .await
        .expect("answered without a read");
    assert_eq!(cached.unwrap(), identity("3"));
    f.server.expect_nothing_more().await;

    // The Secret watch reported the Secret: read again.
    resolver.forget_secret(NS, "team-ak");
    assert_eq!(resolver.cached_secrets(), 0);
    let again = resolve();
    f.server.next().await.reply(StatusCode::OK, &secret("4"));
    assert_eq!(again.await.unwrap(), identity("4"));

    // A read the watch reported a change during is not taken as fresh: the next one reads.
    resolver.forget_secret(NS, "team-ak");
    let raced = resolve();
    let get = f.server.next().await;
    resolver.forget_secret(NS, "team-ak");
    get.reply(StatusCode::OK, &secret("4"));
    assert_eq!(raced.await.unwrap(), identity("4"));
    let after = resolve();
    f.server.next().await.reply(StatusCode::OK, &secret("5"));
    assert_eq!(after.await.unwrap(), identity("5"));
}

#[tokio::test]
async fn a_namespace_without_ambient_permission_is_told_how_to_get_it() {
    let q = query(json!({}));
    let mut f = fixture(listing(&["ip-a"]), vec![], vec![q.clone()], &["elsewhere"]);
    let task = run_reconcile(&f.ctx, &q).await;
    let status = f.server.expect_status_patch(&q).await;
    assert_eq!(ready(&status), ("False".into(), "CredentialsError".into()));
    let message = status.last_error.unwrap().message;
    assert!(
        message.contains("--ambient-credentials-namespaces"),
        "{message}"
    );
    f.server.expect_event(StatusCode::CREATED).await;
    task.await.unwrap().unwrap();
    assert_eq!(f.source.calls(), 0);
}

#[tokio::test]
async fn a_suspended_query_keeps_its_objects_and_does_not_list() {
    let q = query(json!({"suspend": true}));
    let mut f = fixture(
        listing(&[]),
        vec![stored("ip-kept", &["q"])],
        vec![q.clone()],
        &[NS],
    );
    let task = run_reconcile(&f.ctx, &q).await;
    let status = f.server.expect_status_patch(&q).await;
    assert_eq!(ready(&status), ("False".into(), "Suspended".into()));
    f.server.expect_event(StatusCode::CREATED).await;
    assert_eq!(
        task.await.unwrap().unwrap(),
        kube::runtime::controller::Action::await_change()
    );
    assert_eq!(f.source.calls(), 0);
    f.server.expect_nothing_more().await;
}

#[tokio::test]
async fn a_new_requested_at_annotation_syncs_a_settled_query_at_once() {
    let q = query(json!({}));
    let mut f = fixture(
        listing(&["ip-same"]),
        vec![stored("ip-same", &["q"])],
        vec![q.clone()],
        &[NS],
    );
    let task = run_reconcile(&f.ctx, &q).await;
    let status = f.server.expect_status_patch(&q).await;
    f.server.expect_event(StatusCode::CREATED).await;
    task.await.unwrap().unwrap();

    let mut requested = q.clone();
    requested.status = Some(status);
    requested
        .metadata
        .annotations
        .get_or_insert_default()
        .insert(
            "ecs.mirror.io/requested-at".into(),
            "2026-03-01T12:00:00Z".into(),
        );
    let task = run_reconcile(&f.ctx, &requested).await;
    let status = f.server.expect_status_patch(&requested).await;
    assert_eq!(
        status.last_handled_requested_at.as_deref(),
        Some("2026-03-01T12:00:00Z")
    );
    task.await.unwrap().unwrap();
    assert_eq!(f.source.calls(), 2);
    f.server.expect_nothing_more().await;
}
