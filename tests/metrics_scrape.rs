//! `/metrics` after real syncs: a query reconciled through the real ECS client against the
//! simulator (the Kubernetes side mocked), with one `Metrics` as both the client's call observer
//! and the controller's sync observer, then scraped over HTTP from the admin listener. Also
//! `/healthz` and `/readyz` following `Readiness`, and the chart's Grafana dashboard and alert
//! rules: every expression parses as PromQL and every metric it reads is in a real scrape.

mod support;

use std::collections::BTreeSet;
use std::path::PathBuf;
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
    // The write counters exist from the start, at 0: a failed sync leaves them there.
    let written: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("imagepipeline_objects_written_total{"))
        .collect();
    assert!(!written.is_empty(), "{text}");
    assert!(
        written.iter().all(|l| l.ends_with(" 0")),
        "nothing written: {written:?}"
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

// ---------------------------------------------------------------------------------------------
// The chart's dashboard and alerts against a real scrape

const DASHBOARD: &str =
    "charts/imagepipeline-operator/files/dashboards/imagepipeline-operator.json";
const ALERTS: &str = "charts/imagepipeline-operator/files/alerts/rules.yaml";

fn read(path: &str) -> String {
    let full = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// Every `expr` of the dashboard's panels, with Grafana's variables replaced by what Grafana
/// would put there, so that the result is PromQL.
fn dashboard_exprs() -> Vec<(String, String)> {
    fn collect(value: &serde_json::Value, title: &str, out: &mut Vec<(String, String)>) {
        match value {
            serde_json::Value::Object(map) => {
                let title = map.get("title").and_then(|t| t.as_str()).unwrap_or(title);
                if let Some(expr) = map.get("expr").and_then(|e| e.as_str()) {
                    out.push((title.to_string(), expr.to_string()));
                }
                for v in map.values() {
                    collect(v, title, out);
                }
            }
            serde_json::Value::Array(items) => {
                for v in items {
                    collect(v, title, out);
                }
            }
            _ => {}
        }
    }
    let dashboard: serde_json::Value =
        serde_json::from_str(&read(DASHBOARD)).expect("the dashboard is JSON");
    let mut out = Vec::new();
    collect(&dashboard["panels"], "", &mut out);
    out.into_iter()
        .map(|(title, expr)| {
            let expr = expr
                .replace("$__rate_interval", "5m")
                .replace("$__interval", "1m")
                .replace("$__range", "1h");
            (title, expr)
        })
        .collect()
}

/// Every alert of the rules file with its expression.
fn alert_exprs() -> Vec<(String, String)> {
    let rules: serde_yaml::Value = serde_yaml::from_str(&read(ALERTS)).expect("the rules are YAML");
    let mut out = Vec::new();
    for group in rules["groups"].as_sequence().expect("groups") {
        for rule in group["rules"].as_sequence().expect("rules") {
            let name = rule["alert"].as_str().expect("every rule is an alert");
            let expr = rule["expr"].as_str().expect("every alert has an expr");
            out.push((name.to_string(), expr.to_string()));
        }
    }
    out
}

/// The metric names a PromQL expression reads, after parsing it as Prometheus would.
fn metric_names(expr: &str) -> Result<BTreeSet<String>, String> {
    use promql_parser::parser::{self, Expr};
    use promql_parser::util::{ExprVisitor, walk_expr};
    struct Names(BTreeSet<String>);
    impl ExprVisitor for Names {
        type Error = String;
        fn pre_visit(&mut self, expr: &Expr) -> Result<bool, String> {
            let selector = match expr {
                Expr::VectorSelector(vs) => Some(vs),
                Expr::MatrixSelector(ms) => Some(&ms.vs),
                _ => None,
            };
            if let Some(vs) = selector {
                let name = vs
                    .name
                    .clone()
                    .ok_or_else(|| format!("a selector without a metric name: {vs}"))?;
                self.0.insert(name);
            }
            Ok(true)
        }
    }
    let ast = parser::parse(expr)?;
    let mut names = Names(BTreeSet::new());
    walk_expr(&mut names, &ast)?;
    Ok(names.0)
}

/// The metric names of the samples in a Prometheus text exposition.
fn exported_names(exposition: &str) -> BTreeSet<String> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| l.split(['{', ' ']).next())
        .map(str::to_string)
        .collect()
}

#[test]
fn the_name_check_reads_every_selector_and_refuses_what_prometheus_would() {
    assert_eq!(
        metric_names("sum by (code) (rate(a_total{job=~\"x\"}[5m])) / on() group_left() b > 0")
            .expect("valid PromQL"),
        BTreeSet::from(["a_total".to_string(), "b".to_string()])
    );
    assert!(metric_names("sum(rate(a_total[5m])").is_err(), "unclosed");
    assert!(
        metric_names("rate(a_total)").is_err(),
        "rate of an instant vector"
    );
    assert!(metric_names("{job=\"x\"}").is_err(), "no metric name");
    assert_eq!(
        exported_names("# HELP a x\na_total{b=\"c\"} 1\nd 2\n"),
        BTreeSet::from(["a_total".to_string(), "d".to_string()])
    );
}

#[test]
fn every_dashboard_and_alert_expression_is_valid_promql() {
    let panels = dashboard_exprs();
    let alerts = alert_exprs();
    let titles: BTreeSet<&str> = panels.iter().map(|(t, _)| t.as_str()).collect();
    for wanted in [
        "Queries by Ready reason",
        "Sync age against the refresh interval",
        "ECS calls by code",
        "Rate-limit waits",
        "Objects mirrored per namespace",
        "Writes per sync",
        "Leader",
        "Process memory",
    ] {
        assert!(titles.contains(wanted), "no panel {wanted:?}: {titles:?}");
    }
    let names: BTreeSet<&str> = alerts.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        BTreeSet::from([
            "ImagePipelineQueryNotReady",
            "ImagePipelineSyncStale",
            "ImagePipelineEcsThrottled",
            "ImagePipelineOperatorNoLeader",
            "ImagePipelineOperatorMemoryNearLimit",
        ])
    );
    for (what, expr) in panels.iter().chain(&alerts) {
        let used = metric_names(expr).unwrap_or_else(|e| panic!("{what}: {e}\n{expr}"));
        assert!(!used.is_empty(), "{what} reads no metric");
    }
}

#[tokio::test]
async fn every_metric_the_dashboard_and_alerts_use_is_in_a_real_scrape() {
    // One query listed a page at a time while the service throttles every other call and the
    // operator's own limit (5/s, no burst) makes calls wait: syncs, calls, throttling, retries,
    // rate-limit waits and writes all move.
    let sim = Sim::start(SimConfig {
        items: pipelines("payments", 4),
        faults: Faults {
            throttle_every: 2,
            ..Faults::default()
        },
        ..SimConfig::default()
    })
    .await;
    let metrics = Arc::new(Metrics::new());
    let ecs = ecs_client(&sim.handle.url(), 5, 1, Some(metrics.clone()));
    let (client, _requests) = support::mock_api::client(None);
    let q = query(
        "payments",
        json!({"pageSize": 1, "refreshInterval": "5m", "tags": [{"key": "team", "value": "payments"}]}),
    );
    let ctx = context(
        client,
        Arc::new(ecs),
        metrics.clone(),
        vec![q.clone()],
        vec![],
    );
    // What `run` does when this replica starts leading.
    metrics.leader.set(1);
    reconcile(Arc::new(q), ctx.clone())
        .await
        .expect("reconcile");
    support::mock_api::settle().await;

    let admin = Admin::start(metrics.clone(), Arc::new(Readiness::new(false))).await;
    let (code, text) = admin.get("/metrics").await;
    assert_eq!(code, 200);
    let exported = exported_names(&text);
    let mut missing = Vec::new();
    for (what, expr) in dashboard_exprs().iter().chain(&alert_exprs()) {
        for name in metric_names(expr).expect("valid PromQL") {
            if !exported.contains(&name) {
                missing.push(format!("{name} (used by {what})"));
            }
        }
    }
    assert!(
        missing.is_empty(),
        "not exported: {missing:?}\nscrape:\n{text}"
    );

    // The new series carry what happened.
    let series = |s: &str| sample(&text, &s.replace("NS", NS));
    assert_eq!(
        series(r#"imagepipeline_query_ready{namespace="NS",query="payments",reason="Synced"}"#),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        series(r#"imagepipeline_query_refresh_interval_seconds{namespace="NS",query="payments"}"#),
        Some(300.0)
    );
    let transition = series(
        r#"imagepipeline_query_ready_last_transition_timestamp_seconds{namespace="NS",query="payments"}"#,
    )
    .expect("transition time");
    let now = jiff::Timestamp::now().as_second() as f64;
    assert!((now - 60.0..=now).contains(&transition), "{transition}");
    assert!(
        sample(&text, "imagepipeline_ecs_rate_limit_waits_total").is_some_and(|w| w >= 1.0),
        "4 pages and their retries at 5/s without burst wait: {text}"
    );
    assert!(
        sample(&text, "imagepipeline_ecs_rate_limit_wait_seconds_total").is_some_and(|s| s > 0.1),
        "{text}"
    );
    assert!(
        sample(&text, "process_resident_memory_bytes").is_some_and(|b| b > 1e6),
        "{text}"
    );
}
