//! Steering a running simulator: fault injection, data swaps, stats and the request log.

mod sim_support;

use std::time::{Duration, Instant};

use imagepipeline_operator::sim::{Faults, SimConfig, generate, sample_items, start};
use serde_json::{Value, json};
use sim_support::*;

const HZ: (&str, &str) = ("RegionId", "cn-hangzhou");

async fn codes(url: &str, n: usize) -> Vec<(u16, String)> {
    let mut out = Vec::new();
    for _ in 0..n {
        let a = call(url, &params(&[HZ])).await;
        let code = serde_json::from_str::<Value>(&a.text)
            .ok()
            .and_then(|v| v["Code"].as_str().map(str::to_string))
            .unwrap_or_default();
        out.push((a.status, code));
    }
    out
}

#[tokio::test]
async fn every_nth_call_is_throttled_with_a_retry_after_header() {
    let sim = start(SimConfig {
        faults: Faults {
            throttle_every: 3,
            retry_after_ms: Some(1500),
            ..Faults::default()
        },
        ..SimConfig::default()
    })
    .await
    .expect("start");
    let mut seen = Vec::new();
    for _ in 0..6 {
        let a = call(&sim.url(), &params(&[HZ])).await;
        if a.status == 400 {
            assert_eq!(a.code(), "Throttling.User");
            assert_eq!(
                a.json()["Message"],
                "Request was denied due to user flow control."
            );
            assert_eq!(a.headers["x-acs-retry-after"], "1500");
        } else {
            assert!(a.headers.get("x-acs-retry-after").is_none());
        }
        seen.push(a.status);
    }
    assert_eq!(seen, vec![200, 200, 400, 200, 200, 400]);
    sim.shutdown().await;
}

#[tokio::test]
async fn fail_every_answers_internal_errors() {
    let sim = sim_with(vec![]).await;
    sim.set_faults(Faults {
        fail_every: 2,
        ..Faults::default()
    });
    assert_eq!(
        codes(&sim.url(), 4).await,
        vec![
            (200, String::new()),
            (500, "InternalError".into()),
            (200, String::new()),
            (500, "InternalError".into())
        ]
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn malformed_every_garbles_successful_bodies() {
    let sim = sim_with(sample_items()).await;
    sim.set_faults(Faults {
        malformed_every: 2,
        ..Faults::default()
    });
    let ok = call(&sim.url(), &params(&[HZ])).await;
    assert!(serde_json::from_str::<Value>(&ok.text).is_ok());
    let bad = call(&sim.url(), &params(&[HZ])).await;
    assert_eq!(bad.status, 200);
    assert!(
        serde_json::from_str::<Value>(&bad.text).is_err(),
        "{}",
        bad.text
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn latency_delays_every_answer() {
    let sim = sim_with(vec![]).await;
    sim.set_faults(Faults {
        latency_ms: 150,
        ..Faults::default()
    });
    let started = Instant::now();
    call(&sim.url(), &params(&[HZ])).await;
    assert!(started.elapsed() >= Duration::from_millis(150));
    sim.shutdown().await;
}

#[tokio::test]
async fn faults_can_be_set_through_the_admin_endpoint() {
    let sim = sim_with(vec![]).await;
    let resp = client()
        .put(format!("{}/_sim/faults", sim.url()))
        .body(r#"{"throttleEvery":1}"#)
        .send()
        .await
        .expect("send");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(sim.faults().throttle_every, 1);
    assert_eq!(codes(&sim.url(), 1).await[0].1, "Throttling.User");
    sim.shutdown().await;
}

#[tokio::test]
async fn pipelines_appear_and_vanish_through_the_admin_endpoint() {
    let sim = sim_with(generate(10, 3)).await;
    let count = |url: String| async move {
        call(&url, &params(&[HZ])).await.json()["TotalCount"]
            .as_u64()
            .expect("count")
    };
    let before = count(sim.url()).await;
    assert!(before > 0);
    let new_items = json!([
        {"ImagePipelineId": "ip-new1", "Name": "fresh", "RegionId": "cn-hangzhou"},
        {"ImagePipelineId": "ip-new2", "Name": "fresh2", "RegionId": "cn-beijing"}
    ]);
    let put = client()
        .put(format!("{}/_sim/items", sim.url()))
        .body(new_items.to_string())
        .send()
        .await
        .expect("send");
    assert_eq!(put.status().as_u16(), 200);
    let body = call(&sim.url(), &params(&[HZ])).await.json();
    assert_eq!(body["TotalCount"], 1);
    assert_eq!(
        body["ImagePipeline"]["ImagePipelineSet"][0]["ImagePipelineId"],
        "ip-new1"
    );
    let bad = client()
        .put(format!("{}/_sim/items", sim.url()))
        .body("{\"not\":\"an array\"}")
        .send()
        .await
        .expect("send");
    assert_eq!(bad.status().as_u16(), 400);
    sim.set_items(vec![]);
    assert_eq!(count(sim.url()).await, 0);
    sim.shutdown().await;
}

/// Benchmarks load their fleets through the admin API: 100,000 generated pipelines (about
/// 100 MB of JSON) in one `PUT /_sim/items` are accepted and served, not refused with 413.
#[tokio::test]
async fn a_data_set_of_100k_pipelines_is_accepted_through_the_admin_endpoint() {
    let sim = sim_with(vec![]).await;
    let items = generate(100_000, 11);
    let body = Value::Array(items).to_string();
    assert!(body.len() > 2_000_000, "bigger than axum's default limit");
    let put = client()
        .put(format!("{}/_sim/items", sim.url()))
        .body(body)
        .send()
        .await
        .expect("send");
    assert_eq!(put.status().as_u16(), 200);
    let answer: Value = serde_json::from_str(&put.text().await.expect("body")).expect("json");
    assert_eq!(answer["items"], 100_000);
    let total = call(&sim.url(), &params(&[("RegionId", "cn-hangzhou")]))
        .await
        .json()["TotalCount"]
        .as_u64()
        .expect("count");
    assert!(total > 0, "the new set is served");
    sim.shutdown().await;
}

#[tokio::test]
async fn stats_and_the_request_log_count_every_call() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("requests.jsonl");
    let sim = start(SimConfig {
        log_file: Some(log.clone()),
        ..SimConfig::default()
    })
    .await
    .expect("start");
    call(&sim.url(), &params(&[HZ])).await;
    call(&sim.url(), &Params::new()).await;
    assert_eq!(sim.call_count(), 2);
    let requests = sim.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[0].status, 200);
    assert_eq!(requests[1].code.as_deref(), Some("MissingRegionId"));
    assert!(!requests[0].parameters.contains_key("Signature"));
    let stats: Value = serde_json::from_str(
        &client()
            .get(format!("{}/_sim/stats", sim.url()))
            .send()
            .await
            .expect("send")
            .text()
            .await
            .expect("body"),
    )
    .expect("json");
    assert_eq!(stats["calls"], 2);
    assert_eq!(stats["byAction"]["DescribeImagePipelines"], 2);
    assert_eq!(stats["byCode"]["MissingRegionId"], 1);
    sim.shutdown().await;
    let lines: Vec<Value> = std::fs::read_to_string(&log)
        .expect("log")
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0]["action"], "DescribeImagePipelines");
    assert_eq!(lines[1]["code"], "MissingRegionId");
    assert!(lines[0]["time"].is_string());
}
