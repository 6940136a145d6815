//! The simulator rejects like the service: each error code with its HTTP status and the
//! `{RequestId, HostId, Code, Message, Recommend}` body.

mod sim_support;

use imagepipeline_operator::ecs::sign::sign_params;
use imagepipeline_operator::sim::{Credential, generate};
use reqwest::Method;
use sim_support::*;

const HZ: (&str, &str) = ("RegionId", "cn-hangzhou");

async fn expect(a: Answer, status: u16, code: &str) -> Answer {
    assert_eq!((a.status, a.code().as_str()), (status, code), "{}", a.text);
    let body = a.json();
    for key in ["RequestId", "HostId", "Code", "Message", "Recommend"] {
        assert!(body.get(key).is_some(), "{key} missing in {}", a.text);
    }
    a
}

fn resign(p: &mut Params, secret: &str) {
    p.remove("Signature");
    let sig = sign_params("POST", p, secret);
    p.insert("Signature".into(), sig);
}

#[tokio::test]
async fn a_wrong_signature_quotes_the_servers_string_to_sign() {
    let sim = sim_with(generate(5, 1)).await;
    let mut p = signed_v1("POST", &params(&[HZ]), &default_cred());
    resign(&mut p, "wrong-secret");
    let a = expect(
        post_form(&sim.url(), &Params::new(), &p).await,
        400,
        "SignatureDoesNotMatch",
    )
    .await;
    let msg = a.json()["Message"].as_str().expect("message").to_string();
    assert!(msg.starts_with("Specified signature is not matched with our calculation. server string to sign is:POST&%2F&AccessKeyId%3D"), "{msg}");
    // The method is part of what is signed.
    let p = signed_v1("GET", &params(&[HZ]), &default_cred());
    expect(
        post_form(&sim.url(), &Params::new(), &p).await,
        400,
        "SignatureDoesNotMatch",
    )
    .await;
    sim.shutdown().await;
}

#[tokio::test]
async fn unknown_access_keys_are_not_found() {
    let sim = sim_with(vec![]).await;
    let p = signed_v1("POST", &params(&[HZ]), &Credential::new("LTAInobody", "x"));
    expect(
        post_form(&sim.url(), &Params::new(), &p).await,
        404,
        "InvalidAccessKeyId.NotFound",
    )
    .await;
    sim.shutdown().await;
}

#[tokio::test]
async fn a_replayed_nonce_is_refused() {
    let sim = sim_with(vec![]).await;
    let p = signed_v1("POST", &params(&[HZ]), &default_cred());
    assert_eq!(post_form(&sim.url(), &Params::new(), &p).await.status, 200);
    expect(
        post_form(&sim.url(), &Params::new(), &p).await,
        400,
        "SignatureNonceUsed",
    )
    .await;
    sim.shutdown().await;
}

#[tokio::test]
async fn timestamps_more_than_fifteen_minutes_off_are_expired() {
    let sim = sim_with(vec![]).await;
    for minutes in [-16i64, 16] {
        let ts = jiff::Timestamp::now()
            .checked_add(jiff::SignedDuration::from_mins(minutes))
            .expect("in range")
            .strftime("%Y-%m-%dT%H:%M:%SZ")
            .to_string();
        let p = signed_v1("POST", &params(&[HZ, ("Timestamp", &ts)]), &default_cred());
        expect(
            post_form(&sim.url(), &Params::new(), &p).await,
            400,
            "InvalidTimeStamp.Expired",
        )
        .await;
    }
    let ok_ts = jiff::Timestamp::now()
        .checked_sub(jiff::SignedDuration::from_mins(10))
        .expect("in range")
        .to_string();
    let p = signed_v1(
        "POST",
        &params(&[HZ, ("Timestamp", &ok_ts)]),
        &default_cred(),
    );
    assert_eq!(post_form(&sim.url(), &Params::new(), &p).await.status, 200);
    sim.shutdown().await;
}

#[tokio::test]
async fn parameter_errors_answer_their_codes() {
    let sim = sim_with(vec![]).await;
    let url = sim.url();
    expect(call(&url, &Params::new()).await, 400, "MissingRegionId").await;
    for bad in ["0", "501", "abc"] {
        expect(
            call(&url, &params(&[HZ, ("MaxResults", bad)])).await,
            400,
            "InvalidParameter",
        )
        .await;
    }
    let ids: Vec<(String, String)> = (1..=21)
        .map(|i| (format!("ImagePipelineId.{i}"), format!("ip-{i}")))
        .collect();
    let mut p = params(&[HZ]);
    p.extend(ids);
    expect(
        call(&url, &p).await,
        400,
        "InvalidImagePipelineIdSize.ExceededMaxNumber",
    )
    .await;
    expect(
        call(&url, &params(&[HZ, ("Name", "https://x")])).await,
        400,
        "InvalidName.Malformed",
    )
    .await;
    sim.shutdown().await;
}

#[tokio::test]
async fn unknown_actions_and_versions_are_refused() {
    let sim = sim_with(vec![]).await;
    let p = signed_v1(
        "POST",
        &params(&[HZ, ("Action", "DescribeInstancesX")]),
        &default_cred(),
    );
    expect(
        post_form(&sim.url(), &Params::new(), &p).await,
        404,
        "InvalidAction.NotFound",
    )
    .await;
    let p = signed_v1(
        "POST",
        &params(&[HZ, ("Version", "2016-03-14")]),
        &default_cred(),
    );
    expect(
        post_form(&sim.url(), &Params::new(), &p).await,
        400,
        "InvalidVersion",
    )
    .await;
    let mut p = signed_v1("POST", &params(&[HZ]), &default_cred());
    p.remove("SignatureNonce");
    expect(
        post_form(&sim.url(), &Params::new(), &p).await,
        400,
        "MissingParameter",
    )
    .await;
    sim.shutdown().await;
}

#[tokio::test]
async fn sts_credentials_need_their_own_unexpired_token() {
    let sim = sim_with(vec![]).await;
    let live = Credential::new("STS.live", "s1").with_security_token("token-live");
    let other = Credential::new("STS.other", "s2").with_security_token("token-other");
    let expired = Credential::new("STS.old", "s3")
        .with_security_token("token-old")
        .expiring_at(
            jiff::Timestamp::now()
                .checked_sub(jiff::SignedDuration::from_secs(1))
                .expect("ok"),
        );
    for c in [&live, &other, &expired] {
        sim.add_credential(c.clone());
    }
    let send_as = |c: Credential| {
        let url = sim.url();
        async move { post_form(&url, &Params::new(), &signed_v1("POST", &params(&[HZ]), &c)).await }
    };
    assert_eq!(send_as(live.clone()).await.status, 200);
    expect(
        send_as(expired.clone()).await,
        403,
        "InvalidSecurityToken.Expired",
    )
    .await;
    let wrong = Credential {
        security_token: Some("token-other".into()),
        ..live.clone()
    };
    expect(
        send_as(wrong).await,
        400,
        "InvalidSecurityToken.MismatchWithAccessKey",
    )
    .await;
    let garbage = Credential {
        security_token: Some("garbage".into()),
        ..live.clone()
    };
    expect(
        send_as(garbage).await,
        400,
        "InvalidSecurityToken.Malformed",
    )
    .await;
    let missing = Credential {
        security_token: None,
        ..live.clone()
    };
    expect(send_as(missing).await, 400, "MissingSecurityToken").await;
    // V3 carries the token in x-acs-security-token.
    let a = send(v3_request(
        Method::POST,
        &sim.url(),
        &params(&[HZ]),
        "",
        &live,
    ))
    .await;
    assert_eq!(a.status, 200, "{}", a.text);
    let a = send(v3_request(
        Method::POST,
        &sim.url(),
        &params(&[HZ]),
        "",
        &expired,
    ))
    .await;
    expect(a, 403, "InvalidSecurityToken.Expired").await;
    sim.shutdown().await;
}

#[tokio::test]
async fn v3_requests_with_a_wrong_secret_or_a_replayed_nonce_are_refused() {
    let sim = sim_with(vec![]).await;
    let wrong = Credential::new(default_cred().access_key_id, "not-the-secret");
    let a = send(v3_request(
        Method::POST,
        &sim.url(),
        &params(&[HZ]),
        "",
        &wrong,
    ))
    .await;
    let a = expect(a, 400, "SignatureDoesNotMatch").await;
    assert!(
        a.json()["Message"]
            .as_str()
            .expect("msg")
            .contains("ACS3-HMAC-SHA256\n")
    );
    let req = v3_request(
        Method::POST,
        &sim.url(),
        &params(&[HZ]),
        "",
        &default_cred(),
    );
    let replay = req.try_clone().expect("clonable");
    assert_eq!(send(req).await.status, 200);
    expect(send(replay).await, 400, "SignatureNonceUsed").await;
    let unsigned = client()
        .post(format!("{}/?RegionId=cn-hangzhou", sim.url()))
        .header("x-acs-action", "DescribeImagePipelines")
        .header("x-acs-version", "2014-05-26")
        .header("authorization", "ACS3-HMAC-SHA256 Credential=x");
    expect(send(unsigned).await, 400, "IncompleteSignature").await;
    sim.shutdown().await;
}

#[tokio::test]
async fn garbage_requests_get_error_answers_and_never_crash_the_simulator() {
    let sim = sim_with(generate(3, 1)).await;
    let url = sim.url();
    let huge = "x".repeat(200_000);
    let cases: Vec<reqwest::RequestBuilder> = vec![
        client().get(format!("{url}/")),
        client().get(format!("{url}/?%FF%FE=%C3%28&Action=%E0%80")),
        client()
            .post(format!("{url}/"))
            .body(vec![0xFFu8, 0x00, 0xFE, b'=', b'&', b'&']),
        client()
            .post(format!("{url}/?Action=DescribeImagePipelines"))
            .body(format!("RegionId={huge}")),
        client()
            .post(format!("{url}/"))
            .body(vec![b'a'; 2 * 1024 * 1024]),
        client().get(format!(
            "{url}/?Action=DescribeImagePipelines&Version=2014-05-26&AccessKeyId=x&Signature="
        )),
        client()
            .put(format!("{url}/deep/path?Action="))
            .header("authorization", "ACS3-HMAC-SHA256 "),
    ];
    for req in cases {
        let a = send(req).await;
        assert!((400..500).contains(&a.status), "{} {}", a.status, a.text);
    }
    // Still serving.
    assert_eq!(
        call(&url, &params(&[("RegionId", "cn-hangzhou")]))
            .await
            .status,
        200
    );
    sim.shutdown().await;
}
