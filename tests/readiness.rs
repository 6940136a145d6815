//! `/readyz` turns ready once the controller's watches have listed everything: the real
//! `run_with` against a fake API server that lists empty collections (paginated or streamed)
//! and holds watches open.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::Request;
use axum::response::Response;
use futures::StreamExt;
use futures::future::BoxFuture;
use imagepipeline_operator::admin::Readiness;
use imagepipeline_operator::controller::{
    NoopObserver, PipelineSource, RunArgs, RunHooks, run_with,
};
use imagepipeline_operator::ecs::{Listing, ListingError, PipelineFilter, SharedProvider};

async fn fake_api(request: Request) -> Response {
    let params: Vec<&str> = request.uri().query().unwrap_or("").split('&').collect();
    let watch = params
        .iter()
        .any(|kv| *kv == "watch=true" || *kv == "watch=1");
    if watch {
        // A streaming list ends its (no) initial events at once; then nothing ever changes:
        // the watch stays open and silent.
        let initial_events_end = params
            .contains(&"sendInitialEvents=true")
            .then(|| {
                Ok(Bytes::from_static(
                    br#"{"type":"BOOKMARK","object":{"apiVersion":"ecs.mirror.io/v1alpha1","kind":"ImagePipeline","metadata":{"resourceVersion":"7","annotations":{"k8s.io/initial-events-end":"true"}}}}
"#,
                ))
            });
        let events = futures::stream::iter(initial_events_end)
            .chain(futures::stream::pending::<Result<Bytes, Infallible>>());
        return Response::new(Body::from_stream(events));
    }
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from(
            r#"{"apiVersion":"v1","kind":"List","metadata":{"resourceVersion":"7"},"items":[]}"#,
        ))
        .expect("response")
}

struct NoListings;

impl PipelineSource for NoListings {
    fn list(
        &self,
        _filter: PipelineFilter,
        _provider: SharedProvider,
    ) -> BoxFuture<'static, Result<Listing, ListingError>> {
        Box::pin(futures::future::ready(Ok(Listing::default())))
    }
}

fn args(namespaces: &[&str]) -> RunArgs {
    RunArgs {
        namespaces: namespaces.iter().map(|n| n.to_string()).collect(),
        concurrency: 4,
        write_concurrency: 16,
        ambient_credentials_namespaces: vec![],
        ambient_credentials_namespace_selector: None,
        ecs_endpoint: None,
        ecs_rate_limit: 10,
        leader_election: false,
        lease_name: "imagepipeline-operator-leader".into(),
        lease_namespace: "default".into(),
        lease_duration: Duration::from_secs(15),
        worker_threads: 1,
        admin_addr: "127.0.0.1:0".parse().expect("addr"),
        sts_endpoint: None,
        imds_endpoint: None,
        watch_label_selector: None,
        shard: None,
    }
}

async fn becomes_ready(namespaces: &[&str]) -> bool {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, Router::new().fallback(fake_api)).await;
    });
    let client =
        kube::Client::try_from(kube::Config::new(url.parse().expect("url"))).expect("client");
    let readiness = Arc::new(Readiness::new(false));
    let hooks = RunHooks {
        ambient: None,
        observer: Arc::new(NoopObserver),
        readiness: Some(readiness.clone()),
        may_write: None,
    };
    let controller = tokio::spawn(run_with(
        client,
        args(namespaces),
        Arc::new(NoListings),
        hooks,
    ));
    let start = Instant::now();
    // Generous: the lists are empty and local; this only guards against a lost wake-up.
    while start.elapsed() < Duration::from_secs(20) {
        if readiness.is_ready() {
            controller.abort();
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    controller.abort();
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_turns_true_once_every_watch_has_listed() {
    assert!(becomes_ready(&["team-a"]).await, "never became ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_waits_for_every_watched_namespace() {
    assert!(
        becomes_ready(&["team-a", "team-b", "team-c"]).await,
        "never became ready"
    );
}
