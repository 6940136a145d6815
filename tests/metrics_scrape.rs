//! `/metrics` after real syncs: a query reconciled through the real ECS client against the
//! simulator (the Kubernetes side mocked), with one `Metrics` as both the client's call observer
//! and the controller's sync observer, then scraped over HTTP from the admin listener. Also
//! `/healthz` and `/readyz` following `Readiness`.

mod support;

use std::sync::Arc;

use imagepipeline_operator::admin::{self, AdminState, Readiness};
use imagepipeline_operator::controller::reconcile;
use imagepipeline_operator::metrics::Metrics;
use imagepipeline_operator::sim::{Faults, SimConfig};
use serde_json::json;
use support::context::{NS, context, ecs_client, query};
use support::sim::{Sim, pipelines};

struct Admin {
    url: String,
    http: reqwest::Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Admin {
    async fn start(metrics: Arc<Metrics>, readiness: Arc<Readiness>) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let state = AdminState { metrics, readiness };
        tokio::spawn(admin::serve(listener, state, async {
            let _ = stopped.await;
        }));
        Self {
            url,
            http: reqwest::Client::new(),
            stop: Some(stop),
        }
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let r = self
            .http
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }
}

impl Drop for Admin {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

/// The value of the sample `name{labels}` in the exposition, if present.
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
}

#[tokio::test]
async fn a_sync_moves_the_sync_call_write_and_mirrored_metrics() {
    // 7 pipelines of team payments, listed 3 per page: 3 pages.
    let mut items = pipelines("payments", 7);
    items.extend(pipelines("search", 2));
    let sim = Sim::start(SimConfig {
        items,
        ..SimConfig::default()
    })
    .await;
    let metrics = Arc::new(Metrics::new());
    let ecs = ecs_client(&sim.handle.url(), 100, 10, Some(metrics.clone()));
    let (client, requests) = support::mock_api::client(None);
    let q = query(
        "payments",
        json!({"pageSize": 3, "tags": [{"key": "team", "value": "payments"}]}),
    );
    let ctx = context(
        client,
        Arc::new(ecs),
        metrics.clone(),
        vec![q.clone()],
        vec![],
    );
    reconcile(Arc::new(q.clone()), ctx.clone())
        .await
        .expect("reconcile");
    support::mock_api::settle().await;
    assert_eq!(
        requests
            .all()
            .iter()
            .filter(|r| r.is_pipeline_request())
            .count(),
        7,
        "one apply per pipeline"
    );
    assert_eq!(sim.handle.call_count(), 3);

    let readiness = Arc::new(Readiness::new(false));
    let admin = Admin::start(metrics.clone(), readiness.clone()).await;
    let (code, text) = admin.get("/metrics").await;
    assert_eq!(code, 200);
    assert_eq!(
        sample(&text, r#"imagepipeline_syncs_total{result="Synced"}"#),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"imagepipeline_ecs_calls_total{action="DescribeImagePipelines",code="Success"}"#
        ),
        Some(3.0),
        "one call per page"
    );
    assert_eq!(
        sample(
            &text,
            r#"imagepipeline_objects_written_total{operation="created"}"#
        ),
        Some(7.0)
    );
    assert_eq!(
        sample(
            &text,
            &format!(r#"imagepipeline_pipelines_mirrored{{namespace="{NS}",query="payments"}}"#)
        ),
        Some(7.0)
    );
    assert_eq!(
        sample(&text, "imagepipeline_sync_duration_seconds_count"),
        Some(1.0)
    );
    let since = sample(
        &text,
        &format!(
            r#"imagepipeline_seconds_since_last_successful_sync{{namespace="{NS}",query="payments"}}"#
        ),
    )
    .expect("seconds since the last successful sync");
    assert!((0.0..60.0).contains(&since), "{since}");
    assert!(!text.contains("imagepipeline_ecs_retries_total{"), "{text}");

    // A second query while the service throttles every other call: retried, then synced.
    sim.handle.set_faults(Faults {
        throttle_every: 2,
        ..Faults::default()
    });
    let search = query(
        "search",
        json!({"pageSize": 1, "tags": [{"key": "team", "value": "search"}]}),
    );
    reconcile(Arc::new(search), ctx.clone())
        .await
        .expect("reconcile");
    let (_, text) = admin.get("/metrics").await;
    let throttled = r#"{action="DescribeImagePipelines",code="Throttling.User"}"#;
    let retries = sample(
        &text,
        &format!("imagepipeline_ecs_retries_total{throttled}"),
    )
    .expect("retries counted");
    assert!(retries >= 1.0, "{text}");
    assert_eq!(
        sample(
            &text,
            &format!("imagepipeline_ecs_throttled_total{throttled}")
        ),
        Some(retries),
        "every throttled call was retried"
    );
    assert_eq!(
        sample(&text, &format!("imagepipeline_ecs_calls_total{throttled}")),
        Some(retries)
    );
    assert_eq!(
        sample(&text, r#"imagepipeline_syncs_total{result="Synced"}"#),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &text,
            &format!(r#"imagepipeline_pipelines_mirrored{{namespace="{NS}",query="search"}}"#)
        ),
        Some(2.0)
    );
    assert_eq!(
        sample(&text, "imagepipeline_sync_duration_seconds_count"),
        Some(2.0)
    );
}

#[tokio::test]
async fn a_failed_sync_is_counted_by_its_reason_and_the_failing_code() {
    let sim = Sim::start(SimConfig {
        items: pipelines("payments", 3),
        faults: Faults {
            fail_every: 1,
            ..Faults::default()
        },
        ..SimConfig::default()
    })
    .await;
    let metrics = Arc::new(Metrics::new());
    let ecs = ecs_client(&sim.handle.url(), 100, 10, Some(metrics.clone()));
    let (client, _requests) = support::mock_api::client(None);
    let q = query("payments", json!({}));
    let ctx = context(
        client,
        Arc::new(ecs),
        metrics.clone(),
        vec![q.clone()],
        vec![],
    );
    reconcile(Arc::new(q), ctx).await.expect("reconcile");
    let text = metrics.encode(jiff::Timestamp::now());
    assert_eq!(
        sample(&text, r#"imagepipeline_syncs_total{result="ApiError"}"#),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            r#"imagepipeline_ecs_calls_total{action="DescribeImagePipelines",code="InternalError"}"#
        ),
        Some(4.0),
        "every attempt counted"
    );
    assert_eq!(
        sample(
            &text,
            r#"imagepipeline_ecs_retries_total{action="DescribeImagePipelines",code="InternalError"}"#
        ),
        Some(3.0)
    );
    assert!(
        !text.contains("imagepipeline_pipelines_mirrored{"),
        "{text}"
    );
    assert!(
        !text.contains("imagepipeline_objects_written_total{"),
        "{text}"
    );
}

#[tokio::test]
async fn healthz_is_always_ok_and_readyz_follows_readiness() {
    let readiness = Arc::new(Readiness::new(false));
    let admin = Admin::start(Arc::new(Metrics::new()), readiness.clone()).await;
    assert_eq!(admin.get("/healthz").await.0, 200);
    assert_eq!(admin.get("/readyz").await.0, 503, "watches not synced yet");
    readiness.set_watches_synced(true);
    assert_eq!(admin.get("/readyz").await.0, 200);
    readiness.set_watches_synced(false);
    assert_eq!(admin.get("/readyz").await.0, 503, "watches stopped");

    // With leader election: a follower whose lease manager runs is ready; a fresh leader only
    // once its watches synced.
    let readiness = Arc::new(Readiness::new(true));
    let admin = Admin::start(Arc::new(Metrics::new()), readiness.clone()).await;
    assert_eq!(admin.get("/readyz").await.0, 503);
    readiness.set_lease_manager_running(true);
    assert_eq!(admin.get("/readyz").await.0, 200, "follower");
    readiness.set_leading(true);
    assert_eq!(
        admin.get("/readyz").await.0,
        503,
        "leader before its watches"
    );
    readiness.set_watches_synced(true);
    assert_eq!(admin.get("/readyz").await.0, 200);
    assert_eq!(admin.get("/healthz").await.0, 200);
}
