//! Paging of `DescribeImagePipelines` in the simulator: every item exactly once, the right
//! number of pages, an empty `NextToken` at the end, tokens bound to their filter.

mod sim_support;

use std::collections::HashSet;

use imagepipeline_operator::sim::generate;
use serde_json::json;
use sim_support::*;

/// 1,234 items all in one region, so a region filter lists them all.
fn items_in_one_region(n: usize) -> Vec<serde_json::Value> {
    generate(n, 42)
        .into_iter()
        .map(|mut i| {
            i["RegionId"] = json!("cn-hangzhou");
            i
        })
        .collect()
}

#[tokio::test]
async fn every_page_size_lists_every_item_exactly_once() {
    let items = items_in_one_region(1234);
    let expected: Vec<String> = items
        .iter()
        .map(|i| i["ImagePipelineId"].as_str().expect("id").to_string())
        .collect();
    let sim = sim_with(items).await;
    let region = params(&[("RegionId", "cn-hangzhou")]);
    for size in [1u32, 7, 50, 500] {
        let (ids, pages) = list_all(&sim.url(), &region, size).await;
        assert_eq!(ids, expected, "page size {size}");
        assert_eq!(pages, 1234usize.div_ceil(size as usize), "page size {size}");
        let unique: HashSet<&String> = ids.iter().collect();
        assert_eq!(unique.len(), 1234);
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn pages_carry_total_count_max_results_and_the_exact_shape() {
    let sim = sim_with(items_in_one_region(120)).await;
    let first = call(
        &sim.url(),
        &params(&[("RegionId", "cn-hangzhou"), ("MaxResults", "100")]),
    )
    .await;
    assert_eq!(first.status, 200);
    let body = first.json();
    let mut keys: Vec<&str> = body
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort();
    assert_eq!(
        keys,
        vec![
            "ImagePipeline",
            "MaxResults",
            "NextToken",
            "RequestId",
            "TotalCount"
        ]
    );
    assert_eq!(body["TotalCount"], 120);
    assert_eq!(body["MaxResults"], 100);
    let item = &body["ImagePipeline"]["ImagePipelineSet"][0];
    assert!(item.get("RegionId").is_none(), "RegionId is filtering-only");
    assert!(item["Tags"]["Tag"].is_array());
    assert!(item["ToRegionIds"]["ToRegionId"].is_array());

    let token = body["NextToken"].as_str().expect("token");
    let last = call(
        &sim.url(),
        &params(&[
            ("RegionId", "cn-hangzhou"),
            ("MaxResults", "100"),
            ("NextToken", token),
        ]),
    )
    .await
    .json();
    assert_eq!(last["NextToken"], "");
    assert_eq!(last["TotalCount"], 120);
    assert_eq!(
        last["ImagePipeline"]["ImagePipelineSet"]
            .as_array()
            .expect("set")
            .len(),
        20
    );
    assert_ne!(body["RequestId"], last["RequestId"]);
    sim.shutdown().await;
}

#[tokio::test]
async fn max_results_defaults_to_fifty() {
    let sim = sim_with(items_in_one_region(60)).await;
    let body = call(&sim.url(), &params(&[("RegionId", "cn-hangzhou")]))
        .await
        .json();
    assert_eq!(body["MaxResults"], 50);
    assert_eq!(
        body["ImagePipeline"]["ImagePipelineSet"]
            .as_array()
            .expect("set")
            .len(),
        50
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn tokens_use_base64_characters_that_need_url_encoding() {
    let sim = sim_with(items_in_one_region(300)).await;
    let mut seen_special = false;
    let mut token = String::new();
    loop {
        let mut p = params(&[("RegionId", "cn-hangzhou"), ("MaxResults", "1")]);
        if !token.is_empty() {
            p.insert("NextToken".into(), token.clone());
        }
        // GET with the token in the query: '+', '/' and '=' must survive the round trip.
        let a = get_query(&sim.url(), &signed_v1("GET", &p, &default_cred())).await;
        assert_eq!(a.status, 200, "{}", a.text);
        token = a.json()["NextToken"].as_str().expect("token").to_string();
        seen_special |= token.contains('+') || token.contains('/') || token.contains('=');
        if token.is_empty() {
            break;
        }
    }
    assert!(seen_special);
    sim.shutdown().await;
}

#[tokio::test]
async fn a_next_token_only_works_with_the_filter_it_was_issued_for() {
    let sim = sim_with(items_in_one_region(30)).await;
    let first = call(
        &sim.url(),
        &params(&[("RegionId", "cn-hangzhou"), ("MaxResults", "10")]),
    )
    .await
    .json();
    let token = first["NextToken"].as_str().expect("token").to_string();
    for other in [
        params(&[("RegionId", "cn-shanghai"), ("NextToken", &token)]),
        params(&[
            ("RegionId", "cn-hangzhou"),
            ("Tag.1.Key", "team"),
            ("NextToken", &token),
        ]),
        params(&[
            ("RegionId", "cn-hangzhou"),
            ("NextToken", "AAAAAdDWBF2****"),
        ]),
    ] {
        let a = call(&sim.url(), &other).await;
        assert_eq!(a.status, 403, "{}", a.text);
        assert_eq!(a.code(), "Invalid.NextToken");
    }
    // The same filter with another page size may continue.
    let ok = call(
        &sim.url(),
        &params(&[
            ("RegionId", "cn-hangzhou"),
            ("MaxResults", "500"),
            ("NextToken", &token),
        ]),
    )
    .await;
    assert_eq!(ok.status, 200);
    assert_eq!(
        ok.json()["ImagePipeline"]["ImagePipelineSet"]
            .as_array()
            .expect("set")
            .len(),
        20
    );
    sim.shutdown().await;
}
