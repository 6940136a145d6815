//! The paging ECS client against a scripted in-test HTTP server that checks every request's
//! bytes: the form encoding, the signature and the freshness of nonces.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use futures::StreamExt;
use futures::future::BoxFuture;
use imagepipeline_operator::ecs::credentials::StaticProvider;
use imagepipeline_operator::ecs::{
    CallObserver, ClientConfig, Credentials, CredentialsError, CredentialsProvider, EcsClient,
    EcsError, Listing, PageEvent, PipelineFilter, SharedProvider, TagFilter, sign,
};
use serde_json::json;

const KEY_ID: &str = "LTAItestkey";
const SECRET: &str = "test-secret/with+chars=";

/// What the server answers to one request.
#[derive(Clone)]
struct Reply {
    status: u16,
    body: String,
    headers: Vec<(&'static str, String)>,
    delay: Duration,
    endless: bool,
}

impl Reply {
    fn json(status: u16, body: serde_json::Value) -> Self {
        Self {
            status,
            body: body.to_string(),
            headers: vec![("content-type", "application/json".into())],
            delay: Duration::ZERO,
            endless: false,
        }
    }

    fn page(ids: &[&str], next: Option<&str>) -> Self {
        let items: Vec<_> = ids
            .iter()
            .map(|id| json!({"ImagePipelineId": id, "Name": format!("name-{id}")}))
            .collect();
        let mut body = json!({
            "RequestId": "REQ-PAGE",
            "TotalCount": 99,
            "MaxResults": 500,
            "ImagePipeline": {"ImagePipelineSet": items},
        });
        if let Some(next) = next {
            body["NextToken"] = json!(next);
        }
        Self::json(200, body)
    }

    fn error(status: u16, code: &str) -> Self {
        Self::json(
            status,
            json!({
                "RequestId": format!("REQ-{code}"),
                "HostId": "ecs.aliyuncs.com",
                "Code": code,
                "Message": format!("message of {code}"),
                "Recommend": "https://api.aliyun.com/troubleshoot",
            }),
        )
    }

    fn text(status: u16, body: &str) -> Self {
        Self {
            status,
            body: body.into(),
            headers: vec![("content-type", "text/html".into())],
            delay: Duration::ZERO,
            endless: false,
        }
    }

    fn with_header(mut self, name: &'static str, value: &str) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    fn delayed(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }

    fn endless() -> Self {
        Self {
            endless: true,
            ..Self::text(200, "")
        }
    }
}

/// One request as the server received it.
#[derive(Debug, Clone)]
struct Received {
    content_type: String,
    raw: String,
    params: BTreeMap<String, String>,
    signature_ok: bool,
}

#[derive(Default)]
struct Script {
    replies: Mutex<VecDeque<Reply>>,
    received: Mutex<Vec<Received>>,
}

impl Script {
    fn received(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }
}

/// Decodes a form body strictly: `%XX` escapes only, as the RPC encoding produces.
fn decode_form(raw: &str) -> BTreeMap<String, String> {
    raw.split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').expect("name=value");
            let dec = |s: &str| {
                percent_encoding::percent_decode_str(s)
                    .decode_utf8()
                    .expect("utf-8")
                    .into_owned()
            };
            (dec(k), dec(v))
        })
        .collect()
}

async fn handle(State(script): State<Arc<Script>>, headers: HeaderMap, body: Bytes) -> Response {
    let raw = String::from_utf8(body.to_vec()).expect("utf-8 body");
    let mut params = decode_form(&raw);
    let signature = params.remove("Signature").unwrap_or_default();
    let signature_ok = sign::sign_params("POST", &params, SECRET) == signature;
    params.insert("Signature".into(), signature);
    script.received.lock().expect("lock").push(Received {
        content_type: headers
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .into(),
        raw,
        params,
        signature_ok,
    });
    let reply = script
        .replies
        .lock()
        .expect("lock")
        .pop_front()
        .unwrap_or_else(|| Reply::error(500, "ScriptExhausted"));
    tokio::time::sleep(reply.delay).await;
    let body = if reply.endless {
        Body::from_stream(futures::stream::repeat_with(|| {
            Ok::<_, std::io::Error>(Bytes::from(vec![b'x'; 64 * 1024]))
        }))
    } else {
        Body::from(reply.body)
    };
    let mut response = Response::new(body);
    *response.status_mut() = StatusCode::from_u16(reply.status).expect("status");
    for (name, value) in reply.headers {
        response
            .headers_mut()
            .insert(name, value.parse().expect("header value"));
    }
    response
}

/// Starts a server answering `replies` in order; returns it and its base URL.
async fn serve(replies: Vec<Reply>) -> (Arc<Script>, String) {
    let script = Arc::new(Script {
        replies: Mutex::new(replies.into()),
        ..Script::default()
    });
    let app = axum::Router::new()
        .route("/", axum::routing::post(handle))
        .with_state(script.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (script, format!("http://{addr}"))
}

fn config(endpoint: &str) -> ClientConfig {
    ClientConfig {
        endpoint: Some(endpoint.into()),
        read_timeout: Duration::from_secs(5),
        base_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(5),
        rate_limit_qps: 1000,
        rate_limit_burst: 1000,
        ..ClientConfig::default()
    }
}

fn client(config: ClientConfig) -> EcsClient {
    EcsClient::new(config).expect("valid config")
}

fn provider(credentials: Credentials) -> SharedProvider {
    Arc::new(StaticProvider::new("test", credentials))
}

fn static_provider() -> SharedProvider {
    provider(Credentials::new(KEY_ID, SECRET))
}

fn filter() -> PipelineFilter {
    PipelineFilter::region("cn-hangzhou")
}

fn ids(listing: &Listing) -> Vec<&str> {
    listing
        .items
        .iter()
        .map(|i| i.image_pipeline_id.as_str())
        .collect()
}

#[derive(Debug, Default)]
struct RecordingObserver {
    calls: Mutex<Vec<String>>,
    retries: Mutex<Vec<String>>,
}

impl CallObserver for RecordingObserver {
    fn on_call(&self, action: &str, code: &str) {
        assert_eq!(action, "DescribeImagePipelines");
        self.calls.lock().expect("lock").push(code.into());
    }

    fn on_retry(&self, _action: &str, code: &str) {
        self.retries.lock().expect("lock").push(code.into());
    }
}

fn assert_all_signed_with_fresh_nonces(received: &[Received]) {
    let mut nonces = HashSet::new();
    for r in received {
        assert!(r.signature_ok, "bad signature in {:?}", r.raw);
        assert!(
            nonces.insert(r.params["SignatureNonce"].clone()),
            "nonce reused"
        );
    }
}

#[tokio::test]
async fn a_listing_follows_next_tokens_containing_plus_slash_and_equals() {
    let t1 = "AAAAAdDW+BF2/x==";
    let t2 = "b+/=c d&e";
    let (script, url) = serve(vec![
        Reply::page(&["ip-1", "ip-2"], Some(t1)),
        Reply::page(&["ip-3"], Some(t2)),
        Reply::page(&["ip-4"], None),
    ])
    .await;
    let listing = client(config(&url))
        .list_all(&filter(), &static_provider())
        .await
        .expect("listing");
    assert_eq!(ids(&listing), ["ip-1", "ip-2", "ip-3", "ip-4"]);
    assert_eq!((listing.pages, listing.calls, listing.retries), (3, 3, 0));
    assert_eq!(listing.last_request_id.as_deref(), Some("REQ-PAGE"));
    let sent: Vec<Option<String>> = script
        .received()
        .iter()
        .map(|r| r.params.get("NextToken").cloned())
        .collect();
    assert_eq!(sent, [None, Some(t1.into()), Some(t2.into())]);
    assert_all_signed_with_fresh_nonces(&script.received());
}

#[tokio::test]
async fn the_stream_yields_pages_as_they_arrive_and_ends() {
    let (_script, url) = serve(vec![
        Reply::page(&["ip-1"], Some("t1")),
        Reply::page(&["ip-2"], None),
    ])
    .await;
    let events: Vec<_> = client(config(&url))
        .pages(filter(), static_provider())
        .collect()
        .await;
    let pages: Vec<Vec<String>> = events
        .into_iter()
        .map(|e| match e.expect("page") {
            PageEvent::Page(p) => p.items.into_iter().map(|i| i.image_pipeline_id).collect(),
            PageEvent::Restarted => panic!("no restart expected"),
        })
        .collect();
    assert_eq!(pages, [vec!["ip-1".to_string()], vec!["ip-2".to_string()]]);
}

#[tokio::test]
async fn the_form_body_carries_every_common_parameter_and_a_valid_signature() {
    let (script, url) = serve(vec![Reply::page(&[], None)]).await;
    let mut f = filter();
    f.page_size = 100;
    client(config(&url))
        .list_all(&f, &static_provider())
        .await
        .expect("listing");
    let received = script.received();
    let r = &received[0];
    assert_eq!(r.content_type, "application/x-www-form-urlencoded");
    assert!(r.signature_ok);
    let p = &r.params;
    for (k, v) in [
        ("Action", "DescribeImagePipelines"),
        ("Version", "2014-05-26"),
        ("Format", "JSON"),
        ("AccessKeyId", KEY_ID),
        ("SignatureMethod", "HMAC-SHA1"),
        ("SignatureVersion", "1.0"),
        ("RegionId", "cn-hangzhou"),
        ("MaxResults", "100"),
    ] {
        assert_eq!(p.get(k).map(String::as_str), Some(v), "{k}");
    }
    let nonce = &p["SignatureNonce"];
    assert!(nonce.len() == 32 && nonce.bytes().all(|b| b.is_ascii_hexdigit()));
    let ts: jiff::Timestamp = p["Timestamp"].parse().expect("RFC 3339 timestamp");
    assert!(p["Timestamp"].ends_with('Z') && p["Timestamp"].len() == 20);
    assert!((jiff::Timestamp::now() - ts).get_seconds().abs() < 60);
    assert!(!p.contains_key("SecurityToken"));
    assert!(!p.contains_key("NextToken"));
    let expected: BTreeMap<&str, ()> = [
        "AccessKeyId",
        "Action",
        "Format",
        "MaxResults",
        "RegionId",
        "Signature",
        "SignatureMethod",
        "SignatureNonce",
        "SignatureVersion",
        "Timestamp",
        "Version",
    ]
    .into_iter()
    .map(|k| (k, ()))
    .collect();
    assert_eq!(
        p.keys().map(String::as_str).collect::<Vec<_>>(),
        expected.keys().copied().collect::<Vec<_>>()
    );
}

#[tokio::test]
async fn sts_credentials_send_their_security_token() {
    let (script, url) = serve(vec![Reply::page(&[], None)]).await;
    let sts = provider(Credentials::new(KEY_ID, SECRET).with_security_token("CAIS+tok/en=="));
    client(config(&url))
        .list_all(&filter(), &sts)
        .await
        .expect("listing");
    let r = &script.received()[0];
    assert!(r.signature_ok);
    assert_eq!(r.params["SecurityToken"], "CAIS+tok/en==");
}

#[tokio::test]
async fn tag_values_with_reserved_and_non_ascii_characters_round_trip() {
    let (script, url) = serve(vec![Reply::page(&[], None)]).await;
    let value = "a b+c/d=e&f*g~h 中文";
    let mut f = filter();
    f.tags = vec![
        TagFilter {
            key: "team & co".into(),
            value: Some(value.into()),
        },
        TagFilter {
            key: "env".into(),
            value: None,
        },
    ];
    f.image_pipeline_ids = vec!["ip-abc123".into()];
    client(config(&url))
        .list_all(&f, &static_provider())
        .await
        .expect("listing");
    let r = &script.received()[0];
    assert!(r.signature_ok);
    assert_eq!(r.params["Tag.1.Key"], "team & co");
    assert_eq!(r.params["Tag.1.Value"], value);
    assert_eq!(r.params["Tag.2.Key"], "env");
    assert!(!r.params.contains_key("Tag.2.Value"));
    assert_eq!(r.params["ImagePipelineId.1"], "ip-abc123");
    // The RPC encoding: %20 for space, %2A for '*', '~' verbatim, never '+' or a raw space.
    assert!(
        r.raw
            .contains("Tag.1.Value=a%20b%2Bc%2Fd%3De%26f%2Ag~h%20%E4%B8%AD%E6%96%87"),
        "{}",
        r.raw
    );
    assert!(!r.raw.contains('+') && !r.raw.contains(' '));
}

#[tokio::test]
async fn throttling_and_server_errors_are_retried_with_fresh_signatures_until_success() {
    let (script, url) = serve(vec![
        Reply::error(400, "Throttling.User"),
        Reply::error(500, "InternalError"),
        Reply::error(503, "ServiceUnavailable"),
        Reply::page(&["ip-1"], None),
    ])
    .await;
    let observer = Arc::new(RecordingObserver::default());
    let listing = client(ClientConfig {
        observer: Some(observer.clone()),
        ..config(&url)
    })
    .list_all(&filter(), &static_provider())
    .await
    .expect("converges");
    assert_eq!(ids(&listing), ["ip-1"]);
    assert_eq!((listing.calls, listing.retries), (4, 3));
    let received = script.received();
    assert_all_signed_with_fresh_nonces(&received);
    assert_eq!(
        *observer.calls.lock().expect("lock"),
        [
            "Throttling.User",
            "InternalError",
            "ServiceUnavailable",
            "Success"
        ]
    );
    assert_eq!(
        *observer.retries.lock().expect("lock"),
        ["Throttling.User", "InternalError", "ServiceUnavailable"]
    );
}

#[tokio::test]
async fn retries_stop_after_max_attempts() {
    let (script, url) = serve(vec![Reply::error(503, "ServiceUnavailable"); 5]).await;
    let err = client(ClientConfig {
        max_attempts: 3,
        ..config(&url)
    })
    .list_all(&filter(), &static_provider())
    .await
    .expect_err("gives up");
    assert_eq!((err.page, err.calls), (1, 3));
    assert_eq!(err.error.code(), "ServiceUnavailable");
    assert_eq!(script.received().len(), 3);
}

#[tokio::test]
async fn retry_after_header_delays_the_retry_at_least_that_long() {
    let (_script, url) = serve(vec![
        Reply::error(400, "Throttling.User").with_header("x-acs-retry-after", "300"),
        Reply::page(&["ip-1"], None),
    ])
    .await;
    let start = Instant::now();
    let listing = client(config(&url))
        .list_all(&filter(), &static_provider())
        .await
        .expect("converges");
    // A lower bound only: the backoff alone would wait at most 5 ms.
    assert!(
        start.elapsed() >= Duration::from_millis(300),
        "{:?}",
        start.elapsed()
    );
    assert_eq!(listing.retries, 1);
}

#[tokio::test]
async fn signature_and_parameter_errors_are_never_retried() {
    for code in [
        "SignatureDoesNotMatch",
        "InvalidAccessKeyId.NotFound",
        "InvalidName.Malformed",
    ] {
        let (script, url) = serve(vec![Reply::error(400, code), Reply::page(&[], None)]).await;
        let err = client(config(&url))
            .list_all(&filter(), &static_provider())
            .await
            .expect_err("permanent");
        let EcsError::Api(api) = &err.error else {
            panic!("expected an API error, got {err}");
        };
        assert_eq!(api.code, code);
        assert_eq!(api.status, 400);
        assert_eq!(
            api.request_id.as_deref(),
            Some(format!("REQ-{code}").as_str())
        );
        assert_eq!(api.host_id.as_deref(), Some("ecs.aliyuncs.com"));
        assert!(api.recommend.is_some());
        assert_eq!(script.received().len(), 1, "{code} was retried");
    }
}

#[tokio::test]
async fn invalid_next_token_restarts_the_listing_from_the_first_page() {
    let (script, url) = serve(vec![
        Reply::page(&["ip-old"], Some("t1")),
        Reply::error(403, "Invalid.NextToken"),
        Reply::page(&["ip-1"], Some("t1b")),
        Reply::page(&["ip-2"], None),
    ])
    .await;
    let c = client(config(&url));
    let events: Vec<_> = c
        .pages(filter(), static_provider())
        .map(|e| match e.expect("event") {
            PageEvent::Page(p) => p.items[0].image_pipeline_id.clone(),
            PageEvent::Restarted => "RESTART".into(),
        })
        .collect()
        .await;
    assert_eq!(events, ["ip-old", "RESTART", "ip-1", "ip-2"]);
    let sent: Vec<Option<String>> = script
        .received()
        .iter()
        .map(|r| r.params.get("NextToken").cloned())
        .collect();
    assert_eq!(sent, [None, Some("t1".into()), None, Some("t1b".into())]);
}

#[tokio::test]
async fn a_restarted_listing_keeps_only_the_last_run() {
    let (_script, url) = serve(vec![
        Reply::page(&["ip-old"], Some("t1")),
        Reply::error(403, "Invalid.NextToken"),
        Reply::page(&["ip-1"], Some("t2")),
        Reply::page(&["ip-2"], None),
    ])
    .await;
    let listing = client(config(&url))
        .list_all(&filter(), &static_provider())
        .await
        .expect("listing");
    assert_eq!(ids(&listing), ["ip-1", "ip-2"]);
    assert_eq!((listing.pages, listing.calls, listing.restarts), (2, 4, 1));
}

#[tokio::test]
async fn invalid_next_token_gives_up_after_the_restart_bound() {
    let mut replies = Vec::new();
    for _ in 0..3 {
        replies.push(Reply::page(&["ip-1"], Some("t1")));
        replies.push(Reply::error(403, "Invalid.NextToken"));
    }
    let (script, url) = serve(replies).await;
    let err = client(ClientConfig {
        max_token_restarts: 2,
        ..config(&url)
    })
    .list_all(&filter(), &static_provider())
    .await
    .expect_err("gives up");
    assert_eq!(err.error.code(), "Invalid.NextToken");
    assert_eq!((err.page, err.calls), (2, 6));
    assert_eq!(script.received().len(), 6);
}

#[tokio::test]
async fn a_non_json_body_is_a_decode_error_with_status_and_snippet() {
    let html = format!("<html><body>Bad Gateway{}</body></html>", "!".repeat(400));
    let (_script, url) = serve(vec![Reply::text(502, &html)]).await;
    let err = client(ClientConfig {
        max_attempts: 1,
        ..config(&url)
    })
    .list_all(&filter(), &static_provider())
    .await
    .expect_err("undecodable");
    let EcsError::Decode { status, snippet } = err.error else {
        panic!("expected Decode, got {}", err.error);
    };
    assert_eq!(status, 502);
    assert!(snippet.starts_with("<html><body>Bad Gateway"), "{snippet}");
    assert!(snippet.len() <= 200);
}

#[tokio::test]
async fn an_undecodable_body_is_retried_like_any_transient_failure() {
    let (_script, url) = serve(vec![
        Reply::text(200, "garbage"),
        Reply::page(&["ip-1"], None),
    ])
    .await;
    let listing = client(config(&url))
        .list_all(&filter(), &static_provider())
        .await
        .expect("converges");
    assert_eq!((ids(&listing), listing.retries), (vec!["ip-1"], 1));
}

#[tokio::test]
async fn a_200_error_object_is_an_error() {
    let (_script, url) = serve(vec![Reply::json(
        200,
        json!({"RequestId": "R", "Code": "Forbidden.RAM", "Message": "no"}),
    )])
    .await;
    let err = client(config(&url))
        .list_all(&filter(), &static_provider())
        .await
        .expect_err("an error");
    assert_eq!(err.error.code(), "Forbidden.RAM");
    assert_eq!(err.error.request_id(), Some("R"));
}

#[tokio::test]
async fn an_endless_body_is_refused_past_the_limit_without_retry() {
    let (script, url) = serve(vec![Reply::endless(), Reply::page(&[], None)]).await;
    let err = client(ClientConfig {
        max_body_bytes: 256 * 1024,
        ..config(&url)
    })
    .list_all(&filter(), &static_provider())
    .await
    .expect_err("too large");
    assert_eq!(err.error, EcsError::BodyTooLarge { limit: 256 * 1024 });
    assert_eq!(script.received().len(), 1);
}

#[tokio::test]
async fn a_body_declared_too_large_is_refused() {
    let (_script, url) = serve(vec![Reply::text(200, &"x".repeat(10_000))]).await;
    let err = client(ClientConfig {
        max_body_bytes: 1000,
        ..config(&url)
    })
    .list_all(&filter(), &static_provider())
    .await
    .expect_err("too large");
    assert_eq!(err.error, EcsError::BodyTooLarge { limit: 1000 });
}

#[tokio::test]
async fn a_read_timeout_is_a_transport_timeout() {
    let (_script, url) = serve(vec![Reply::page(&[], None).delayed(Duration::from_secs(3))]).await;
    let err = client(ClientConfig {
        read_timeout: Duration::from_millis(150),
        max_attempts: 1,
        ..config(&url)
    })
    .list_all(&filter(), &static_provider())
    .await
    .expect_err("times out");
    assert!(
        matches!(&err.error, EcsError::Transport { timeout: true, .. }),
        "{}",
        err.error
    );
    assert!(!err.error.to_string().contains(&url), "{}", err.error);
    assert_eq!(err.error.code(), "Timeout");
}

#[tokio::test]
async fn a_read_timeout_is_retried() {
    let (script, url) = serve(vec![
        Reply::page(&["ip-slow"], None).delayed(Duration::from_secs(3)),
        Reply::page(&["ip-1"], None),
    ])
    .await;
    let observer = Arc::new(RecordingObserver::default());
    let listing = client(ClientConfig {
        read_timeout: Duration::from_millis(150),
        observer: Some(observer.clone()),
        ..config(&url)
    })
    .list_all(&filter(), &static_provider())
    .await
    .expect("converges");
    assert_eq!(ids(&listing), ["ip-1"]);
    assert_eq!(
        *observer.calls.lock().expect("lock"),
        ["Timeout", "Success"]
    );
    assert_all_signed_with_fresh_nonces(&script.received());
}

#[tokio::test]
async fn a_refused_connection_is_a_transport_error_and_retried() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    drop(listener);
    let err = client(ClientConfig {
        max_attempts: 2,
        ..config(&url)
    })
    .list_all(&filter(), &static_provider())
    .await
    .expect_err("nobody listens");
    assert!(
        matches!(&err.error, EcsError::Transport { timeout: false, .. }),
        "{}",
        err.error
    );
    assert_eq!(err.calls, 2);
}

#[tokio::test]
async fn an_invalid_filter_is_refused_before_any_call() {
    let (script, url) = serve(vec![]).await;
    let mut f = filter();
    f.page_size = 501;
    let err = client(config(&url))
        .list_all(&f, &static_provider())
        .await
        .expect_err("refused");
    assert!(matches!(err.error, EcsError::Filter(_)), "{}", err.error);
    assert_eq!((err.page, err.calls), (1, 0));
    assert!(script.received().is_empty());
}

#[tokio::test]
async fn a_repeated_next_token_is_a_pagination_error() {
    let (script, url) = serve(vec![
        Reply::page(&["ip-1"], Some("same")),
        Reply::page(&["ip-2"], Some("same")),
        Reply::page(&["ip-3"], Some("same")),
    ])
    .await;
    let err = client(config(&url))
        .list_all(&filter(), &static_provider())
        .await
        .expect_err("loop detected");
    assert!(
        matches!(err.error, EcsError::Pagination(_)),
        "{}",
        err.error
    );
    assert_eq!(script.received().len(), 2);
}

#[tokio::test]
async fn listings_longer_than_max_pages_are_abandoned() {
    let (script, url) = serve(vec![
        Reply::page(&["ip-1"], Some("t1")),
        Reply::page(&["ip-2"], Some("t2")),
        Reply::page(&["ip-3"], None),
    ])
    .await;
    let err = client(ClientConfig {
        max_pages: 2,
        ..config(&url)
    })
    .list_all(&filter(), &static_provider())
    .await
    .expect_err("too many pages");
    assert!(
        matches!(err.error, EcsError::Pagination(_)),
        "{}",
        err.error
    );
    assert_eq!(script.received().len(), 2);
}

#[tokio::test]
async fn duplicate_ids_across_pages_are_listed_once() {
    let (_script, url) = serve(vec![
        Reply::page(&["ip-1", "ip-2"], Some("t1")),
        Reply::page(&["ip-2", "ip-3"], None),
    ])
    .await;
    let listing = client(config(&url))
        .list_all(&filter(), &static_provider())
        .await
        .expect("listing");
    assert_eq!(ids(&listing), ["ip-1", "ip-2", "ip-3"]);
}

#[tokio::test]
async fn the_rate_limit_spaces_calls_of_one_access_key_across_clones() {
    let (_script, url) = serve(vec![Reply::page(&[], None); 4]).await;
    let c = client(ClientConfig {
        rate_limit_qps: 5,
        rate_limit_burst: 1,
        ..config(&url)
    });
    let start = Instant::now();
    for _ in 0..2 {
        for shared in [c.clone(), c.clone()] {
            shared
                .list_all(&filter(), &static_provider())
                .await
                .expect("listing");
        }
    }
    // One call at once, then one per 200 ms: a lower bound, so never flaky.
    assert!(
        start.elapsed() >= Duration::from_millis(600),
        "{:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn a_zero_rate_is_no_pacing_of_the_clients_own() {
    let (script, url) = serve(vec![
        Reply::page(&["ip-1"], Some("t1")),
        Reply::page(&["ip-2"], Some("t2")),
        Reply::page(&["ip-3"], None),
    ])
    .await;
    // No limiter is built: a burst of 0 would be refused with any rate.
    let listing = client(ClientConfig {
        rate_limit_qps: 0,
        rate_limit_burst: 0,
        ..config(&url)
    })
    .list_all(&filter(), &static_provider())
    .await
    .expect("listing");
    assert_eq!(ids(&listing), ["ip-1", "ip-2", "ip-3"]);
    assert_eq!(script.received().len(), 3);
}

#[tokio::test]
async fn retries_take_rate_limit_tokens_too() {
    let (_script, url) = serve(vec![
        Reply::error(503, "ServiceUnavailable"),
        Reply::error(503, "ServiceUnavailable"),
        Reply::page(&[], None),
    ])
    .await;
    let start = Instant::now();
    client(ClientConfig {
        rate_limit_qps: 5,
        rate_limit_burst: 1,
        ..config(&url)
    })
    .list_all(&filter(), &static_provider())
    .await
    .expect("converges");
    assert!(
        start.elapsed() >= Duration::from_millis(400),
        "{:?}",
        start.elapsed()
    );
}

/// Hands out STS credentials with a new token on every request, like a refreshing provider.
#[derive(Debug, Default)]
struct RotatingProvider {
    asked: std::sync::atomic::AtomicU32,
}

impl CredentialsProvider for RotatingProvider {
    fn name(&self) -> String {
        "rotating".into()
    }

    fn credentials(&self) -> BoxFuture<'_, Result<Credentials, CredentialsError>> {
        let n = self.asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let creds = Credentials::new(KEY_ID, SECRET).with_security_token(format!("token-{n}"));
        Box::pin(futures::future::ready(Ok(creds)))
    }
}

#[tokio::test]
async fn credentials_are_asked_for_before_every_attempt() {
    let (script, url) = serve(vec![
        Reply::error(503, "ServiceUnavailable"),
        Reply::page(&["ip-1"], Some("t1")),
        Reply::page(&["ip-2"], None),
    ])
    .await;
    let rotating: SharedProvider = Arc::new(RotatingProvider::default());
    client(config(&url))
        .list_all(&filter(), &rotating)
        .await
        .expect("listing");
    let tokens: Vec<String> = script
        .received()
        .iter()
        .map(|r| r.params["SecurityToken"].clone())
        .collect();
    assert_eq!(tokens, ["token-0", "token-1", "token-2"]);
    assert_all_signed_with_fresh_nonces(&script.received());
}

#[derive(Debug)]
struct FailingProvider;

impl CredentialsProvider for FailingProvider {
    fn name(&self) -> String {
        "failing".into()
    }

    fn credentials(&self) -> BoxFuture<'_, Result<Credentials, CredentialsError>> {
        Box::pin(futures::future::ready(Err(CredentialsError::Missing(
            "no key".into(),
        ))))
    }
}

#[tokio::test]
async fn a_credentials_failure_makes_no_call() {
    let (script, url) = serve(vec![Reply::page(&[], None)]).await;
    let failing: SharedProvider = Arc::new(FailingProvider);
    let err = client(config(&url))
        .list_all(&filter(), &failing)
        .await
        .expect_err("no credentials");
    assert!(
        matches!(err.error, EcsError::Credentials(_)),
        "{}",
        err.error
    );
    assert_eq!(err.calls, 0);
    assert!(script.received().is_empty());
}
