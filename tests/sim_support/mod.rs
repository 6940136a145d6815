//! Hand-made signed requests for the simulator tests: v1 with `crate::ecs::sign` (query, form,
//! both, and the Tea v2 style), V3 following the documented algorithm, independently of the
//! simulator's own verifier.
#![allow(dead_code)]

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use imagepipeline_operator::ecs::sign::{percent_encode, sign_params};
use imagepipeline_operator::sim::{
    Credential, DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET, SimConfig, SimHandle, start,
};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub type Params = BTreeMap<String, String>;

thread_local! {
    /// One client per test (each test runs on its own thread and runtime): building a client
    /// is slow, and a pooled connection must not outlive its runtime.
    static CLIENT: reqwest::Client = {
        let _ = rustls::crypto::ring::default_provider().install_default();
        reqwest::Client::builder().build().expect("client")
    };
}

/// A reqwest client with the ring provider installed.
pub fn client() -> reqwest::Client {
    CLIENT.with(Clone::clone)
}

pub async fn sim_with(items: Vec<Value>) -> SimHandle {
    start(SimConfig {
        items,
        ..SimConfig::default()
    })
    .await
    .expect("simulator starts")
}

pub fn params(pairs: &[(&str, &str)]) -> Params {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

pub fn nonce() -> String {
    format!("{:032x}", rand::random::<u128>())
}

pub fn now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

pub fn default_cred() -> Credential {
    Credential::new(DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET)
}

/// The action parameters plus every common v1 parameter, signed for `method`.
pub fn signed_v1(method: &str, action_params: &Params, cred: &Credential) -> Params {
    let mut p = action_params.clone();
    let mut common = vec![
        ("Action", "DescribeImagePipelines".to_string()),
        ("Version", "2014-05-26".to_string()),
        ("Format", "JSON".to_string()),
        ("AccessKeyId", cred.access_key_id.clone()),
        ("SignatureMethod", "HMAC-SHA1".to_string()),
        ("SignatureVersion", "1.0".to_string()),
        ("SignatureNonce", nonce()),
        ("Timestamp", now()),
    ];
    if let Some(t) = &cred.security_token {
        common.push(("SecurityToken", t.clone()));
    }
    for (k, v) in common {
        p.entry(k.to_string()).or_insert(v);
    }
    p.remove("Signature");
    let sig = sign_params(method, &p, &cred.access_key_secret);
    p.insert("Signature".into(), sig);
    p
}

/// `k=v&...` with the RPC encoding (space as `%20`).
pub fn encode(p: &Params) -> String {
    p.iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The Tea v2 URL style: spaces as `+`.
pub fn encode_plus(p: &Params) -> String {
    encode(p).replace("%20", "+")
}

pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("{e}: {}", self.text))
    }

    pub fn code(&self) -> String {
        self.json()["Code"].as_str().unwrap_or_default().to_string()
    }
}

async fn answer(resp: reqwest::Response) -> Answer {
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.expect("body");
    Answer {
        status,
        headers,
        text,
    }
}

pub async fn get_query(url: &str, p: &Params) -> Answer {
    answer(
        client()
            .get(format!("{url}/?{}", encode(p)))
            .send()
            .await
            .expect("send"),
    )
    .await
}

pub async fn post_form(url: &str, query: &Params, form: &Params) -> Answer {
    let mut req = client().post(format!("{url}/?{}", encode(query)));
    req = req
        .header("content-type", "application/x-www-form-urlencoded")
        .body(encode(form));
    answer(req.send().await.expect("send")).await
}

/// A signed POST with every parameter in the form body (what the legacy SDKs send).
pub async fn call(url: &str, action_params: &Params) -> Answer {
    let p = signed_v1("POST", action_params, &default_cred());
    post_form(url, &Params::new(), &p).await
}

/// Lists every page; returns the IDs in order and the number of pages.
pub async fn list_all(url: &str, filter: &Params, page_size: u32) -> (Vec<String>, usize) {
    let mut ids = Vec::new();
    let mut pages = 0;
    let mut token = String::new();
    loop {
        let mut p = filter.clone();
        p.insert("MaxResults".into(), page_size.to_string());
        if !token.is_empty() {
            p.insert("NextToken".into(), token.clone());
        }
        let a = call(url, &p).await;
        assert_eq!(a.status, 200, "{}", a.text);
        let body = a.json();
        pages += 1;
        let set = body["ImagePipeline"]["ImagePipelineSet"]
            .as_array()
            .expect("set")
            .clone();
        assert!(set.len() <= page_size as usize);
        ids.extend(
            set.iter()
                .map(|i| i["ImagePipelineId"].as_str().expect("id").to_string()),
        );
        token = body["NextToken"].as_str().expect("NextToken").to_string();
        if token.is_empty() {
            return (ids, pages);
        }
    }
}

fn hex_sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// A V3-signed request (`ACS3-HMAC-SHA256`) built step by step as the documentation says:
/// every parameter in the query, `x-acs-*` headers, host and content type signed.
pub fn v3_request(
    method: reqwest::Method,
    url: &str,
    query: &Params,
    body: &str,
    cred: &Credential,
) -> reqwest::RequestBuilder {
    let host = url.trim_start_matches("http://").to_string();
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    headers.insert("host".into(), host);
    headers.insert("x-acs-action".into(), "DescribeImagePipelines".into());
    headers.insert("x-acs-version".into(), "2014-05-26".into());
    headers.insert("x-acs-date".into(), now());
    headers.insert("x-acs-signature-nonce".into(), nonce());
    headers.insert("x-acs-content-sha256".into(), hex_sha256(body.as_bytes()));
    if !body.is_empty() {
        headers.insert(
            "content-type".into(),
            "application/x-www-form-urlencoded".into(),
        );
    }
    if let Some(t) = &cred.security_token {
        headers.insert("x-acs-security-token".into(), t.clone());
    }
    let canonical_query = encode(query);
    let canonical_headers: String = headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    let signed: Vec<&str> = headers.keys().map(String::as_str).collect();
    let signed = signed.join(";");
    let canonical_request = format!(
        "{}\n/\n{canonical_query}\n{canonical_headers}\n{signed}\n{}",
        method.as_str(),
        hex_sha256(body.as_bytes())
    );
    let sts = format!(
        "ACS3-HMAC-SHA256\n{}",
        hex_sha256(canonical_request.as_bytes())
    );
    let mut mac = Hmac::<Sha256>::new_from_slice(cred.access_key_secret.as_bytes()).expect("key");
    mac.update(sts.as_bytes());
    let signature = hex::encode(mac.finalize().into_bytes());
    let mut req = client().request(method, format!("{url}/?{canonical_query}"));
    for (k, v) in &headers {
        if k != "host" {
            req = req.header(k, v);
        }
    }
    req.header(
        "authorization",
        format!(
            "ACS3-HMAC-SHA256 Credential={},SignedHeaders={signed},Signature={signature}",
            cred.access_key_id
        ),
    )
    .body(body.to_string())
}

pub async fn send(req: reqwest::RequestBuilder) -> Answer {
    answer(req.send().await.expect("send")).await
}
