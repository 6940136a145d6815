//! Fault proofs of the controller (issue 6), through the real reconcile, the real ECS client and
//! the simulator, with the Kubernetes API mocked:
//!
//! - a page that keeps failing after the client's retries changes no mirrored object, and the
//!   status says which page failed and why;
//! - the values of a credentials Secret appear in no log line (TRACE), no request body sent to
//!   the API server, and no metric, on success and on failure (a signature mismatch whose
//!   message quotes the server's string to sign);
//! - one hundred queries sharing one credential, all due at once, list once, and the calls of
//!   one hundred different listings stay within the rate limit at the simulator;
//! - an operator killed in the middle of applying a plan converges after a restart (a property
//!   over random listings and every crash point, with the pure `plan` and an in-memory store).

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use base64::Engine;
use imagepipeline_operator::controller::desired::{OwnerInfo, Owners};
use imagepipeline_operator::controller::mirrored::Mirrored;
use imagepipeline_operator::controller::plan::{Deletion, PlanInput, Write, plan};
use imagepipeline_operator::controller::status::Outcome;
use imagepipeline_operator::controller::validate::validate;
use imagepipeline_operator::controller::{Context, SHARE_WINDOW, reconcile, sync};
use imagepipeline_operator::crd::query::TemplateMetadata;
use imagepipeline_operator::crd::{
    ImagePipeline, ImagePipelineQuery, ImagePipelineQueryStatus, ImagePipelineSpec,
};
use imagepipeline_operator::ecs::{CallObserver, EcsClient, ImagePipelineItem};
use imagepipeline_operator::metrics::Metrics;
use imagepipeline_operator::sim::{Credential, Faults, SimConfig};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ManagedFieldsEntry;
use proptest::prelude::*;
use serde_json::{Value, json};
use support::context::{NS, context, context_with_window, ecs_client, mirrored, query};
use support::mock_api::{Recorded, Requests, pipeline_writes};
use support::sim::{Sim, pipelines};

fn status_of(r: &Recorded) -> ImagePipelineQueryStatus {
    serde_json::from_value(r.json()["status"].clone()).expect("status body")
}

fn ready(status: &ImagePipelineQueryStatus) -> (String, String) {
    let c = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .expect("Ready condition");
    (c.status.clone(), c.reason.clone())
}

// ------------------------------------------------------------------ streamed syncs

/// One reconcile of query `q` (with `page_size`) listing through `ecs`, with `existing`
/// mirrored before; the requests the API server saw.
async fn reconcile_q(
    ecs: EcsClient,
    page_size: u32,
    existing: Vec<ImagePipeline>,
) -> Vec<Recorded> {
    let (client, requests) = support::mock_api::client(None);
    let q = query("q", json!({ "pageSize": page_size }));
    let ctx = context(
        client,
        Arc::new(ecs),
        Arc::new(Metrics::new()),
        vec![q.clone()],
        existing,
    );
    reconcile(Arc::new(q), ctx).await.expect("reconcile");
    support::mock_api::settle().await;
    requests.all()
}

#[tokio::test]
async fn more_stale_objects_than_a_sync_holds_are_updated_by_a_second_listing_after_a_complete_first()
 {
    let n = imagepipeline_operator::controller::HELD_UPDATES + 10;
    let sim = Sim::start(SimConfig {
        items: pipelines("payments", n),
        ..SimConfig::default()
    })
    .await;
    let ecs = ecs_client(&sim.handle.url(), 1000, 100, None);
    // Every object is mirrored with content the listing no longer has, plus one not listed.
    let mut existing: Vec<ImagePipeline> = (0..n)
        .map(|i| mirrored(&format!("ip-payments{i:04}"), "an old name"))
        .collect();
    existing.push(mirrored("ip-vanished0001", "vanished"));
    let requests = reconcile_q(ecs, 100, existing).await;

    let pages = n.div_ceil(100);
    assert_eq!(
        sim.handle.call_count(),
        2 * pages,
        "one listing to find the updates, a second to make those it could not hold"
    );
    let writes = pipeline_writes(&requests);
    let updated: BTreeSet<&str> = writes
        .iter()
        .filter(|(m, _)| m == "PATCH")
        .map(|(_, name)| name.as_str())
        .collect();
    assert_eq!(updated.len(), n, "every stale object updated once");
    assert!(!updated.contains("ip-vanished0001"));
    assert_eq!(
        writes.iter().filter(|(m, _)| m == "PATCH").count(),
        n,
        "no object written twice: {} writes",
        writes.len()
    );
    assert_eq!(
        writes.last().map(|(m, n)| (m.as_str(), n.as_str())),
        Some(("DELETE", "ip-vanished0001")),
        "the prune comes last"
    );
}

// ------------------------------------------------------------------ a failing page

/// Turns the simulator's failures on after the first successful call: page 1 answers, every
/// attempt at page 2 fails.
#[derive(Debug)]
struct FailAfterFirstPage(Arc<Sim>);

impl CallObserver for FailAfterFirstPage {
    fn on_call(&self, _action: &str, code: &str) {
        if code == "Success" {
            self.0.handle.set_faults(Faults {
                fail_every: 1,
                ..Faults::default()
            });
        }
    }
    fn on_retry(&self, _action: &str, _code: &str) {}
}

#[tokio::test]
async fn a_page_that_keeps_failing_changes_nothing_mirrored_and_the_status_names_page_and_cause() {
    let sim = Arc::new(
        Sim::start(SimConfig {
            items: pipelines("payments", 6),
            ..SimConfig::default()
        })
        .await,
    );
    let ecs = ecs_client(
        &sim.handle.url(),
        100,
        10,
        Some(Arc::new(FailAfterFirstPage(sim.clone()))),
    );
    // Mirrored before: one with stale content (an update if the listing completed), one that
    // is no longer listed (a deletion if it completed).
    let existing = vec![
        mirrored("ip-payments0000", "an old name"),
        mirrored("ip-vanished0001", "vanished"),
    ];
    let requests = reconcile_q(ecs, 3, existing).await;

    // The sync streams: page 1's new pipelines are created as it is read, but nothing already
    // mirrored is changed (the stale name) or removed (the unlisted one) by a failed listing.
    let touched = pipeline_writes(&requests);
    assert!(
        touched.iter().all(|(method, _)| method == "PATCH"),
        "only creates (applies): {touched:?}"
    );
    let names: Vec<&str> = touched.iter().map(|(_, name)| name.as_str()).collect();
    assert_eq!(
        names,
        ["ip-payments0001", "ip-payments0002"],
        "only the new pipelines of page 1 are created: {touched:?}"
    );
    assert_eq!(
        sim.handle.call_count(),
        1 + 4,
        "page 1, then 4 attempts at page 2"
    );

    let patch = requests
        .iter()
        .find(|r| r.is_status_patch())
        .expect("a status patch");
    let status = status_of(patch);
    assert_eq!(ready(&status), ("False".into(), "ApiError".into()));
    let err = status.last_error.expect("lastError");
    assert_eq!(err.code, "InternalError");
    assert_eq!(err.page, Some(2), "the failing page");
    assert!(err.message.contains("InternalError"), "{}", err.message);
    let request_id = err.request_id.expect("the RequestId of the failed call");
    assert!(
        sim.handle
            .requests()
            .iter()
            .any(|r| r.request_id == request_id && r.code.as_deref() == Some("InternalError")),
        "the RequestId is the simulator's"
    );
    let condition = status
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .unwrap();
    assert!(
        condition
            .message
            .contains("nothing already mirrored was changed")
            && condition.message.contains("page 2"),
        "{}",
        condition.message
    );
    let event = requests.iter().find(|r| r.is_event()).expect("an Event");
    let event = event.json();
    assert_eq!(event["type"], "Warning");
    assert_eq!(event["reason"], "SyncFailed");
    assert!(event["note"].as_str().unwrap().contains("InternalError"));
}

// ------------------------------------------------------------------ secrets never leak

const AK_ID: &str = "LTAIcanaryKeyId0001";
const SECRET: &str = "S3CR3T-canary-7f1e";
const TOKEN: &str = "TOK3N-canary-99";

fn secret_object() -> Value {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "team-ak", "namespace": NS, "resourceVersion": "3"},
        "data": {
            "accessKeyId": b64(AK_ID),
            "accessKeySecret": b64(SECRET),
            "securityToken": b64(TOKEN),
        },
    })
}

/// Runs one reconcile of a query using the canary Secret against a simulator that accepts
/// `accepted`; returns the status and everything the operator said: every log line of this
/// test binary so far (TRACE), every request sent to the API server, and the metrics.
async fn run_with_canary_secret(accepted: Credential) -> (ImagePipelineQueryStatus, String) {
    let logs = support::logs::global();
    let sim = Sim::start(SimConfig {
        items: pipelines("payments", 3),
        credentials: vec![accepted],
        ..SimConfig::default()
    })
    .await;
    let metrics = Arc::new(Metrics::new());
    let ecs = ecs_client(&sim.handle.url(), 100, 10, Some(metrics.clone()));
    let (client, requests) = support::mock_api::client(Some(secret_object()));
    let q = query(
        "q",
        json!({"credentials": {"secretRef": {"name": "team-ak"}}}),
    );
    let ctx = context(
        client,
        Arc::new(ecs),
        metrics.clone(),
        vec![q.clone()],
        vec![],
    );
    let action = reconcile(Arc::new(q), ctx.clone()).await;
    tracing::info!(?action, "reconcile returned");
    support::mock_api::settle().await;

    let requests = requests.all();
    let status = status_of(
        requests
            .iter()
            .find(|r| r.is_status_patch())
            .expect("a status patch"),
    );
    let mut everything = logs.text();
    for r in &requests {
        everything.push_str(&format!("\n{} {}\n{}", r.method, r.uri, r.body));
    }
    everything.push_str(&metrics.encode(jiff::Timestamp::now()));
    (status, everything)
}

fn assert_no_canary(everything: &str) {
    // Raw, and as it would look percent-encoded once or twice (a string to sign).
    for canary in [SECRET, TOKEN, "S3CR3T", "TOK3N"] {
        let hits: Vec<&str> = everything.lines().filter(|l| l.contains(canary)).collect();
        assert!(
            hits.is_empty(),
            "{canary:?} leaked in:\n{}",
            hits.join("\n")
        );
    }
}

#[tokio::test]
async fn secret_values_appear_in_no_log_request_body_or_metric_after_a_successful_sync() {
    let (status, everything) =
        run_with_canary_secret(Credential::new(AK_ID, SECRET).with_security_token(TOKEN)).await;
    assert_eq!(ready(&status), ("True".into(), "Synced".into()));
    assert!(everything.contains(AK_ID), "the key ID may be shown");
    assert!(everything.contains("imagepipelines/ip-payments0000"));
    assert_no_canary(&everything);
}

#[tokio::test]
async fn secret_values_appear_nowhere_when_the_signature_does_not_match() {
    // The simulator knows the key with another secret: SignatureDoesNotMatch, whose message
    // quotes the server's string to sign (which includes the SecurityToken parameter).
    let (status, everything) = run_with_canary_secret(
        Credential::new(AK_ID, "the-secret-the-server-has").with_security_token(TOKEN),
    )
    .await;
    assert_eq!(ready(&status), ("False".into(), "ApiError".into()));
    let err = status.last_error.expect("lastError");
    assert_eq!(err.code, "SignatureDoesNotMatch");
    assert!(err.request_id.is_some());
    assert!(everything.contains("SignatureDoesNotMatch"));
    assert_no_canary(&everything);
}

#[tokio::test]
async fn secret_values_appear_nowhere_when_the_security_token_is_refused() {
    let (status, everything) =
        run_with_canary_secret(Credential::new(AK_ID, SECRET).with_security_token("another-token"))
            .await;
    assert_eq!(ready(&status).0, "False");
    assert_no_canary(&everything);
}

// ------------------------------------------------------------------ 100 queries at once

/// The time of every call the simulator answered, in seconds since the first.
fn call_times(sim: &Sim) -> Vec<f64> {
    let times: Vec<jiff::Timestamp> = sim
        .handle
        .requests()
        .iter()
        .map(|r| r.time.parse().expect("RFC 3339 time"))
        .collect();
    let first = times.iter().min().copied().expect("calls");
    let mut secs: Vec<f64> = times
        .iter()
        .map(|t| t.duration_since(first).as_secs_f64())
        .collect();
    secs.sort_by(f64::total_cmp);
    secs
}

/// The calls beyond `QPS + BURST` a one-second window at the simulator may see: the limiter
/// spaces calls as the client sends them, and a call released just before a window may be
/// answered inside it when a loaded machine delays it (up to 100 ms: two calls at 20/s).
const IN_TRANSIT: usize = 2;

/// The most calls answered within any one second.
fn most_calls_in_one_second(times: &[f64]) -> usize {
    let mut most = 0;
    let mut start = 0;
    for end in 0..times.len() {
        while times[end] - times[start] >= 1.0 {
            start += 1;
        }
        most = most.max(end - start + 1);
    }
    most
}

const QPS: u32 = 20;
const BURST: u32 = 5;

/// A simulator of 10 `payments` pipelines, and a context of `queries` listing from it at
/// [`QPS`] with bursts of [`BURST`], sharing listings within [`SHARE_WINDOW`], against the mock
/// API (whose requests come back too).
async fn ten_pipelines_shared(queries: Vec<ImagePipelineQuery>) -> (Sim, Arc<Context>, Requests) {
    let sim = Sim::start(SimConfig {
        items: pipelines("payments", 10),
        ..SimConfig::default()
    })
    .await;
    let ecs = ecs_client(&sim.handle.url(), QPS, BURST, None);
    let (client, requests) = support::mock_api::client(None);
    let ctx = context_with_window(
        client,
        Arc::new(ecs),
        Arc::new(Metrics::new()),
        queries,
        vec![],
        SHARE_WINDOW,
    );
    (sim, ctx, requests)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_queries_sharing_a_credential_and_due_together_list_once_within_the_rate() {
    // 10 pipelines, 2 per page: one listing is 5 calls.
    let queries: Vec<_> = (0..100)
        .map(|i| query(&format!("q{i:03}"), json!({"pageSize": 2})))
        .collect();
    let (sim, ctx, requests) = ten_pipelines_shared(queries.clone()).await;
    let results = futures::future::join_all(
        queries
            .iter()
            .map(|q| tokio::spawn(reconcile(Arc::new(q.clone()), ctx.clone()))),
    )
    .await;
    for r in results {
        r.expect("task").expect("reconcile");
    }
    support::mock_api::settle().await;

    assert_eq!(
        sim.handle.call_count(),
        5,
        "one listing (5 pages) for all 100 queries"
    );
    let most = most_calls_in_one_second(&call_times(&sim));
    assert!(
        most <= (QPS + BURST) as usize + IN_TRANSIT,
        "{most} calls in one second"
    );

    let requests = requests.all();
    let synced = requests
        .iter()
        .filter(|r| r.is_status_patch())
        .map(status_of)
        .filter(|s| ready(s).1 == "Synced" && s.matched_count == Some(10))
        .count();
    assert_eq!(synced, 100, "every query synced all 10 pipelines");
    // Each object ends up owned by all 100 queries (the last apply of each carries them all).
    let mut last_owners: BTreeMap<String, usize> = BTreeMap::new();
    for r in requests.iter().filter(|r| r.is_pipeline_request()) {
        let body = r.json();
        let name = body["metadata"]["name"].as_str().unwrap().to_string();
        let owners = body["metadata"]["ownerReferences"]
            .as_array()
            .map_or(0, Vec::len);
        last_owners.insert(name, owners);
    }
    assert_eq!(last_owners.len(), 10);
    assert!(last_owners.values().all(|n| *n == 100), "{last_owners:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_alone_lists_for_itself_and_queries_listing_alike_share() {
    // 10 pipelines: 5 calls per listing of 2 per page, 2 calls of 5 per page.
    let alike = [
        query("alike-a", json!({"pageSize": 2})),
        query("alike-b", json!({"pageSize": 2})),
    ];
    let lone = query("lone", json!({"pageSize": 5}));
    let mut queries = alike.to_vec();
    queries.push(lone.clone());
    let (sim, ctx, _requests) = ten_pipelines_shared(queries).await;
    let resolved = ctx
        .credentials
        .resolve(&ctx.client, NS, None)
        .await
        .expect("ambient credentials");
    let attempt = |q: ImagePipelineQuery| {
        let (ctx, resolved) = (ctx.clone(), resolved.clone());
        async move {
            let valid = validate(&q.spec).expect("valid");
            let now = jiff::Timestamp::now().to_string();
            sync::attempt(&ctx, &q, &valid, Ok(&resolved), None, &now)
                .await
                .expect("sync")
        }
    };

    // One after the other, within the window: the second reuses the first's listing.
    for q in &alike {
        assert!(matches!(attempt(q.clone()).await, Outcome::Synced { .. }));
    }
    assert_eq!(sim.handle.call_count(), 5, "one listing for both");
    // The lone query's listing is offered to nobody, not even to its own next sync.
    for _ in 0..2 {
        assert!(matches!(
            attempt(lone.clone()).await,
            Outcome::Synced { .. }
        ));
    }
    assert_eq!(
        sim.handle.call_count(),
        5 + 2 * 2,
        "a listing of its own each time"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_different_listings_due_together_stay_within_the_rate_limit() {
    let sim = Sim::start(SimConfig {
        items: pipelines("payments", 100),
        ..SimConfig::default()
    })
    .await;
    let ecs = ecs_client(&sim.handle.url(), QPS, BURST, None);
    let (client, _requests) = support::mock_api::client(None);
    let queries: Vec<_> = (0..100)
        .map(|i| {
            query(
                &format!("q{i:03}"),
                json!({"imagePipelineIds": [format!("ip-payments{i:04}")]}),
            )
        })
        .collect();
    let ctx = context_with_window(
        client,
        Arc::new(ecs),
        Arc::new(Metrics::new()),
        queries.clone(),
        vec![],
        SHARE_WINDOW,
    );
    let results = futures::future::join_all(
        queries
            .iter()
            .map(|q| tokio::spawn(reconcile(Arc::new(q.clone()), ctx.clone()))),
    )
    .await;
    for r in results {
        r.expect("task").expect("reconcile");
    }
    assert_eq!(sim.handle.call_count(), 100, "one call per listing");
    let times = call_times(&sim);
    let most = most_calls_in_one_second(&times);
    assert!(
        most <= (QPS + BURST) as usize + IN_TRANSIT,
        "{most} calls in one second (limit {QPS}/s, burst {BURST})"
    );
    // The limiter really held them back: 100 calls at 20/s after a burst of 5 take ~4.75 s.
    let span = times.last().copied().unwrap_or_default();
    assert!(span >= 3.0, "100 calls answered within {span:.2}s");
}

// ------------------------------------------------------------------ restart mid-sync

/// An in-memory API server for ImagePipelines: server-side apply by the one field manager
/// (the applied labels, annotations and owner references replace the previous ones), deletion
/// with UID and resourceVersion preconditions.
#[derive(Debug, Clone, Default)]
struct Cluster {
    objects: BTreeMap<String, ImagePipeline>,
    version: u64,
    deleted: Vec<String>,
}

impl Cluster {
    /// What a freshly started operator's cache shows.
    fn view(&self) -> BTreeMap<String, Arc<Mirrored>> {
        self.objects
            .iter()
            .map(|(k, v)| (k.clone(), Arc::new(Mirrored::of(v))))
            .collect()
    }

    fn apply(&mut self, write: &Write) {
        let name = write.name().to_string();
        let existing = self.objects.get(&name);
        if let Some(rv) = &write.resource_version {
            let current = existing.and_then(|e| e.metadata.resource_version.as_ref());
            assert_eq!(Some(rv), current, "conflict applying {name}");
        }
        self.version += 1;
        // A release keeps the content on the server, as the writer reads it before applying.
        let mut obj = write.object().unwrap_or_else(|| {
            write.object_with(
                existing
                    .expect("a release of an existing object")
                    .spec
                    .clone(),
            )
        });
        obj.metadata.managed_fields = Some(vec![managed_entry(&obj)]);
        obj.metadata.uid = existing
            .and_then(|e| e.metadata.uid.clone())
            .or_else(|| Some(format!("uid-{name}-{}", self.version)));
        obj.metadata.resource_version = Some(self.version.to_string());
        self.objects.insert(name, obj);
    }

    fn delete(&mut self, deletion: &Deletion) {
        let Some(current) = self.objects.get(&deletion.name) else {
            return;
        };
        assert_eq!(current.metadata.uid, deletion.uid, "uid precondition");
        assert_eq!(
            current.metadata.resource_version, deletion.resource_version,
            "resourceVersion precondition"
        );
        self.objects.remove(&deletion.name);
        self.deleted.push(deletion.name.clone());
    }
}

/// The managed-fields entry the API server records for an apply by the operator: the label and
/// annotation keys it set.
fn managed_entry(obj: &ImagePipeline) -> ManagedFieldsEntry {
    imagepipeline_operator::controller::ownership::apply_entry(obj)
}

/// One query of the model: its listing of this round, and `prune`.
#[derive(Debug, Clone)]
struct ModelQuery {
    name: &'static str,
    listing: BTreeSet<usize>,
    prune: bool,
}

fn owners() -> Owners {
    let info = |name: &str, labels: &[(&str, &str)]| OwnerInfo {
        name: name.into(),
        uid: format!("uid-{name}"),
        template: TemplateMetadata {
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..TemplateMetadata::default()
        },
        prune: true,
    };
    [
        info("q1", &[("team", "a")]),
        info("q2", &[("team", "b"), ("tier", "gold")]),
    ]
    .into_iter()
    .map(|o| (o.uid.clone(), o))
    .collect()
}

fn id(i: usize) -> String {
    format!("ip-{i:02}")
}

/// The items of a listing; `versions` is the content version of every pipeline this round.
fn items(listing: &BTreeSet<usize>, versions: &[u8]) -> Vec<ImagePipelineItem> {
    listing
        .iter()
        .map(|&i| ImagePipelineItem {
            image_pipeline_id: id(i),
            name: Some(format!("{}-v{}", id(i), versions[i])),
            ..ImagePipelineItem::default()
        })
        .collect()
}

struct Crashed;

/// Syncs every query in turn until a round writes nothing (a `prune: false` query lets go of an
/// object only once it is the last owner, which can take a second round); at most 3 rounds.
fn run_to_convergence(
    cluster: &mut Cluster,
    queries: &[ModelQuery],
    versions: &[u8],
    now: &str,
) -> usize {
    let mut total = 0;
    for _ in 0..3 {
        let ops = run(cluster, queries, versions, now, None).unwrap_or_default();
        total += ops;
        if ops == 0 {
            break;
        }
    }
    total
}

/// Reconciles every query in turn, each planned from what the cluster holds (a cache that has
/// caught up), applying writes then deletions as the writer does. With `budget`, the operator
/// dies after that many operations.
fn run(
    cluster: &mut Cluster,
    queries: &[ModelQuery],
    versions: &[u8],
    now: &str,
    mut budget: Option<usize>,
) -> Result<usize, Crashed> {
    let mut owners = owners();
    for q in queries {
        if let Some(o) = owners.get_mut(&format!("uid-{}", q.name)) {
            o.prune = q.prune;
        }
    }
    let mut ops = 0;
    for q in queries {
        let existing = cluster.view();
        let uid = format!("uid-{}", q.name);
        let items = items(&q.listing, versions);
        let plan = plan(&PlanInput {
            query_name: q.name,
            query_uid: &uid,
            namespace: NS,
            region_id: "cn-hangzhou",
            items: &items,
            existing: &existing,
            owners: &owners,
            prune: q.prune,
            // No memory survives the crash: the restarted operator knows no other listing.
            claims: &BTreeMap::new(),
            awaiting_listings: false,
            now,
            instance_label: None,
        });
        let mut step = |cluster: &mut Cluster, op: &dyn Fn(&mut Cluster)| {
            if let Some(b) = budget.as_mut() {
                if *b == 0 {
                    return Err(Crashed);
                }
                *b -= 1;
            }
            op(cluster);
            ops += 1;
            Ok(())
        };
        for w in &plan.writes {
            step(cluster, &|c: &mut Cluster| c.apply(w))?;
        }
        for d in &plan.deletions {
            step(cluster, &|c: &mut Cluster| c.delete(d))?;
        }
    }
    Ok(ops)
}

/// What matters of an object: content (without the sync time), owners, labels.
type Essence = (
    ImagePipelineSpec,
    BTreeSet<String>,
    Option<BTreeMap<String, String>>,
);

fn essence(cluster: &Cluster) -> BTreeMap<String, Essence> {
    cluster
        .objects
        .iter()
        .map(|(name, o)| {
            let mut spec = o.spec.clone();
            spec.last_sync_time = None;
            let owners = Mirrored::of(o)
                .owners
                .iter()
                .map(|r| r.uid.clone())
                .collect();
            (name.clone(), (spec, owners, o.metadata.labels.clone()))
        })
        .collect()
}

const UNIVERSE: usize = 8;

fn listing() -> impl Strategy<Value = BTreeSet<usize>> {
    prop::collection::btree_set(0..UNIVERSE, 0..=UNIVERSE)
}

fn versions() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(0u8..3, UNIVERSE)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn an_operator_killed_mid_sync_converges_after_a_restart_at_every_crash_point(
        old in (listing(), listing(), versions()),
        new in (listing(), listing(), versions()),
        prune in (any::<bool>(), any::<bool>()),
    ) {
        let round = |l1: &BTreeSet<usize>, l2: &BTreeSet<usize>| vec![
            ModelQuery { name: "q1", listing: l1.clone(), prune: prune.0 },
            ModelQuery { name: "q2", listing: l2.clone(), prune: prune.1 },
        ];
        // What an earlier, complete sync left behind.
        let mut before = Cluster::default();
        let _ = run_to_convergence(&mut before, &round(&old.0, &old.1), &old.2, "2026-01-01T00:00:00Z");
        let owned_before = essence(&before);
        let queries = round(&new.0, &new.1);

        let mut uninterrupted = before.clone();
        uninterrupted.deleted.clear();
        // The first round's operations: the crash points.
        let total = run(&mut uninterrupted, &queries, &new.2, "2026-01-02T00:00:00Z", None)
            .unwrap_or_default();
        run_to_convergence(&mut uninterrupted, &queries, &new.2, "2026-01-02T00:00:00Z");
        let expected = essence(&uninterrupted);

        // The expected end state itself: every listed ID once, owned by the queries listing it
        // and at most by the `prune: false` queries that owned it before (one keeps its
        // reference while a pruning query shares the object), with this round's content.
        for (i, _) in new.2.iter().enumerate() {
            let listed_by: BTreeSet<String> = queries
                .iter()
                .filter(|q| q.listing.contains(&i))
                .map(|q| format!("uid-{}", q.name))
                .collect();
            let mut may_own = listed_by.clone();
            if queries.iter().any(|q| q.prune && q.listing.contains(&i)) {
                may_own.extend(
                    queries
                        .iter()
                        .filter(|q| !q.prune)
                        .map(|q| format!("uid-{}", q.name))
                        .filter(|uid| owned_before.get(&id(i)).is_some_and(|(_, o, _)| o.contains(uid))),
                );
            }
            match expected.get(&id(i)) {
                Some((spec, owners, _)) => {
                    prop_assert!(
                        listed_by.is_subset(owners) && owners.is_subset(&may_own),
                        "owners of {}: {:?}, listed by {:?}, may own {:?}", id(i), owners, listed_by, may_own
                    );
                    if !listed_by.is_empty() {
                        prop_assert_eq!(spec.name.clone(), Some(format!("{}-v{}", id(i), new.2[i])));
                    }
                }
                None => prop_assert!(listed_by.is_empty(), "{} listed but missing", id(i)),
            }
        }

        for crash_at in 0..=total {
            let mut cluster = before.clone();
            cluster.deleted.clear();
            let crashed = run(&mut cluster, &queries, &new.2, "2026-01-02T00:00:00Z", Some(crash_at));
            prop_assert!(crashed.is_err() || crash_at == total);
            // Restart: a new process, its cache rebuilt from the cluster, the same listings.
            run_to_convergence(&mut cluster, &queries, &new.2, "2026-01-02T00:05:00Z");
            prop_assert_eq!(&essence(&cluster), &expected, "crash after {} of {} operations", crash_at, total);
            // Nothing deleted that the uninterrupted run kept, nothing deleted twice.
            let deleted: BTreeSet<&String> = cluster.deleted.iter().collect();
            prop_assert_eq!(deleted.len(), cluster.deleted.len(), "deleted twice: {:?}", cluster.deleted);
            for name in deleted {
                prop_assert!(
                    uninterrupted.deleted.contains(name),
                    "{} was deleted only because of the crash", name
                );
            }
            // Converged: a further sync writes nothing.
            let mut again = cluster.clone();
            let more = run(&mut again, &queries, &new.2, "2026-01-02T00:10:00Z", None).unwrap_or_default();
            prop_assert_eq!(more, 0, "a converged namespace needs no writes");
        }
    }
}
