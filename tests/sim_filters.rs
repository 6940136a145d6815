//! Filters of `DescribeImagePipelines` in the simulator, and the request styles the official
//! SDKs send (GET with query, POST form, both merged, Tea v2 `+` for spaces, V3).

mod sim_support;

use reqwest::Method;
use serde_json::{Value, json};
use sim_support::*;

fn item(id: &str, region: &str, rg: &str, name: &str, tags: &[(&str, &str)]) -> Value {
    let tags: Vec<Value> = tags
        .iter()
        .map(|(k, v)| json!({"TagKey": k, "TagValue": v}))
        .collect();
    json!({
        "ImagePipelineId": id, "RegionId": region, "ResourceGroupId": rg, "Name": name,
        "InstanceType": "ecs.g7.large", "Tags": {"Tag": tags},
        "ToRegionIds": {"ToRegionId": [region]}, "AddAccounts": {"AddAccount": []},
    })
}

/// Tag values with every character that trips up encoders.
const ODD: &[&str] = &[
    "pay ments",
    "a+b",
    "x/y",
    "k=v",
    "this&that",
    "st*r",
    "ti~lde",
    "支付 チーム",
];

fn fixture() -> Vec<Value> {
    let mut items = vec![
        item(
            "ip-a1",
            "cn-hangzhou",
            "rg-one",
            "golden-base",
            &[("team", "payments"), ("env", "prod")],
        ),
        item(
            "ip-a2",
            "cn-hangzhou",
            "rg-two",
            "golden-gpu",
            &[("team", "payments"), ("env", "dev")],
        ),
        item(
            "ip-a3",
            "cn-hangzhou",
            "rg-one",
            "search-base",
            &[("team", "search")],
        ),
        item(
            "ip-b1",
            "cn-shanghai",
            "rg-one",
            "golden-base",
            &[("team", "payments")],
        ),
    ];
    for (i, v) in ODD.iter().enumerate() {
        items.push(item(
            &format!("ip-odd{i}"),
            "cn-hangzhou",
            "rg-odd",
            "odd",
            &[("label", v)],
        ));
    }
    items
}

async fn ids(url: &str, filter: &[(&str, &str)]) -> Vec<String> {
    let (ids, _) = list_all(url, &params(filter), 500).await;
    ids
}

const HZ: (&str, &str) = ("RegionId", "cn-hangzhou");

#[tokio::test]
async fn each_filter_narrows_the_listing() {
    let sim = sim_with(fixture()).await;
    let url = sim.url();
    assert_eq!(ids(&url, &[("RegionId", "cn-shanghai")]).await, ["ip-b1"]);
    assert_eq!(
        ids(&url, &[("RegionId", "eu-central-1")]).await,
        Vec::<String>::new()
    );
    assert_eq!(
        ids(&url, &[HZ, ("ResourceGroupId", "rg-two")]).await,
        ["ip-a2"]
    );
    assert_eq!(ids(&url, &[HZ, ("Name", "golden-base")]).await, ["ip-a1"]);
    assert_eq!(
        ids(&url, &[HZ, ("Name", "golden")]).await,
        Vec::<String>::new()
    );
    assert_eq!(
        ids(
            &url,
            &[
                HZ,
                ("ImagePipelineId.1", "ip-a3"),
                ("ImagePipelineId.2", "ip-a1")
            ]
        )
        .await,
        ["ip-a1", "ip-a3"]
    );
    assert_eq!(
        ids(&url, &[HZ, ("ImagePipelineId.1", "ip-b1")]).await,
        Vec::<String>::new()
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn all_tags_must_match_and_a_key_alone_matches_any_value() {
    let sim = sim_with(fixture()).await;
    let url = sim.url();
    assert_eq!(
        ids(
            &url,
            &[HZ, ("Tag.1.Key", "team"), ("Tag.1.Value", "payments")]
        )
        .await,
        ["ip-a1", "ip-a2"]
    );
    assert_eq!(
        ids(
            &url,
            &[
                HZ,
                ("Tag.1.Key", "team"),
                ("Tag.1.Value", "payments"),
                ("Tag.2.Key", "env"),
                ("Tag.2.Value", "prod")
            ]
        )
        .await,
        ["ip-a1"]
    );
    assert_eq!(
        ids(&url, &[HZ, ("Tag.1.Key", "env")]).await,
        ["ip-a1", "ip-a2"]
    );
    assert_eq!(
        ids(&url, &[HZ, ("Tag.1.Key", "team"), ("Tag.2.Key", "nope")]).await,
        Vec::<String>::new()
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn tag_values_with_special_and_non_ascii_characters_match_exactly() {
    let sim = sim_with(fixture()).await;
    for (i, v) in ODD.iter().enumerate() {
        let f = [HZ, ("Tag.1.Key", "label"), ("Tag.1.Value", v)];
        // Legacy SDK style: POST form.
        assert_eq!(ids(&sim.url(), &f).await, [format!("ip-odd{i}")], "{v}");
        // GET with everything in the query.
        let a = get_query(&sim.url(), &signed_v1("GET", &params(&f), &default_cred())).await;
        assert_eq!(a.status, 200, "{v}: {}", a.text);
        let got = &a.json()["ImagePipeline"]["ImagePipelineSet"];
        assert_eq!(got[0]["ImagePipelineId"], format!("ip-odd{i}"), "{v}");
        assert_eq!(got.as_array().map(Vec::len), Some(1));
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn parameters_split_between_query_and_body_are_merged() {
    let sim = sim_with(fixture()).await;
    let all = signed_v1(
        "POST",
        &params(&[HZ, ("Tag.1.Key", "label"), ("Tag.1.Value", "pay ments")]),
        &default_cred(),
    );
    // Common parameters in the query, action parameters in the body.
    let (query, form): (Params, Params) = all
        .into_iter()
        .partition(|(k, _)| !(k == "RegionId" || k.starts_with("Tag.")));
    let a = post_form(&sim.url(), &query, &form).await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(
        a.json()["ImagePipeline"]["ImagePipelineSet"][0]["ImagePipelineId"],
        "ip-odd0"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn tea_v2_style_post_with_plus_for_spaces_in_the_query_verifies() {
    let sim = sim_with(fixture()).await;
    let mut p = params(&[
        HZ,
        ("Tag.1.Key", "label"),
        ("Tag.1.Value", "pay ments"),
        ("Format", "json"),
    ]);
    p.insert("Timestamp".into(), now());
    let signed = signed_v1("POST", &p, &default_cred());
    let url = format!("{}/?{}", sim.url(), encode_plus(&signed));
    assert!(url.contains("pay+ments"));
    let resp = client().post(url).send().await.expect("send");
    assert_eq!(resp.status().as_u16(), 200);
    let body: Value = serde_json::from_str(&resp.text().await.expect("body")).expect("json");
    assert_eq!(
        body["ImagePipeline"]["ImagePipelineSet"][0]["ImagePipelineId"],
        "ip-odd0"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn v3_signed_requests_list_with_filters() {
    let sim = sim_with(fixture()).await;
    let q = params(&[
        HZ,
        ("Tag.1.Key", "label"),
        ("Tag.1.Value", "a+b"),
        ("MaxResults", "10"),
    ]);
    for method in [Method::POST, Method::GET] {
        let a = send(v3_request(
            method.clone(),
            &sim.url(),
            &q,
            "",
            &default_cred(),
        ))
        .await;
        assert_eq!(a.status, 200, "{method}: {}", a.text);
        assert!(
            a.headers["content-type"]
                .to_str()
                .expect("ascii")
                .starts_with("application/json")
        );
        assert_eq!(
            a.json()["ImagePipeline"]["ImagePipelineSet"][0]["ImagePipelineId"],
            "ip-odd1"
        );
    }
    // Action parameters in a form body are hashed into x-acs-content-sha256 and still read.
    let body = encode(&params(&[HZ, ("Name", "golden-gpu")]));
    let a = send(v3_request(
        Method::POST,
        &sim.url(),
        &Params::new(),
        &body,
        &default_cred(),
    ))
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    assert_eq!(
        a.json()["ImagePipeline"]["ImagePipelineSet"][0]["ImagePipelineId"],
        "ip-a2"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn format_xml_and_the_default_answer_xml() {
    let sim = sim_with(fixture()).await;
    for format in [Some("XML"), None] {
        let mut p = params(&[("RegionId", "cn-shanghai")]);
        if let Some(f) = format {
            p.insert("Format".into(), f.into());
        } else {
            p.insert("Format".into(), String::new());
        }
        let mut signed = signed_v1("GET", &p, &default_cred());
        if format.is_none() {
            signed.remove("Format");
            signed.remove("Signature");
            let sig = imagepipeline_operator::ecs::sign::sign_params(
                "GET",
                &signed,
                &default_cred().access_key_secret,
            );
            signed.insert("Signature".into(), sig);
        }
        let a = get_query(&sim.url(), &signed).await;
        assert_eq!(a.status, 200, "{}", a.text);
        assert!(
            a.text.contains("<DescribeImagePipelinesResponse>"),
            "{}",
            a.text
        );
        assert!(a.text.contains("<ImagePipeline><ImagePipelineSet>"));
        assert!(a.text.contains("<ImagePipelineId>ip-b1</ImagePipelineId>"));
        assert!(a.text.contains("<Tags><Tag><TagKey>team</TagKey>"));
        assert!(a.text.contains("<TotalCount>1</TotalCount>"));
    }
    sim.shutdown().await;
}
