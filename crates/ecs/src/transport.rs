//! One HTTP attempt: the endpoint, the signed form body, the bounded response read and its
//! interpretation as a page or an error.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use super::credentials::Credentials;
use super::error::{ApiError, EcsError};

use super::buffers::BodyPool;
use super::fast;
use super::known::{KnownLists, list_hash};
use super::model::PipelinePage;
use super::retry::{RETRY_AFTER_HEADER, parse_retry_after};
use super::scan;
use super::sign;
use super::view::ItemSink;

/// How many bytes of an undecodable body are quoted in [`EcsError::Decode`].
pub const SNIPPET_BYTES: usize = 200;

/// The default public endpoint of a region.
pub fn default_endpoint(region_id: &str) -> String {
    format!("https://ecs.{region_id}.aliyuncs.com")
}

/// Checks an endpoint override: an `http` or `https` URL with a host, optionally a port, and
/// nothing else (no credentials, path, query or fragment). Returns it without a trailing `/`.
#[allow(clippy::result_large_err)] // EcsError is the boundary's fixed error type.
pub fn validate_endpoint(raw: &str) -> Result<String, EcsError> {
    let bad = |why: &str| EcsError::Config(format!("endpoint {raw:?} is invalid: {why}"));
    let url = reqwest::Url::parse(raw.trim()).map_err(|e| bad(&e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("the scheme must be http or https"));
    }
    let Some(host) = url.host_str() else {
        return Err(bad("a host is required"));
    };
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("user information is not allowed"));
    }
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(bad("only scheme, host and port are allowed"));
    }
    Ok(match url.port() {
        Some(port) => format!("{}://{host}:{port}", url.scheme()),
        None => format!("{}://{host}", url.scheme()),
    })
}

/// The common RPC parameters of one attempt. `nonce` and `timestamp` must be fresh per attempt.
pub fn common_params(
    credentials: &Credentials,
    action: &str,
    version: &str,
    nonce: &str,
    timestamp: &str,
) -> BTreeMap<String, String> {
    let mut params = BTreeMap::new();
    let mut put = |k: &str, v: &str| {
        params.insert(k.to_string(), v.to_string());
    };
    put("Action", action);
    put("Version", version);
    put("Format", "JSON");
    put("AccessKeyId", &credentials.access_key_id);
    put("SignatureMethod", "HMAC-SHA1");
    put("SignatureVersion", "1.0");
    put("SignatureNonce", nonce);
    put("Timestamp", timestamp);
    if let Some(token) = &credentials.security_token {
        put("SecurityToken", token);
    }
    params
}

/// Signs `params` for a POST with `secret` and encodes them, `Signature` included, as an
/// `application/x-www-form-urlencoded` body with the RPC percent-encoding (space as `%20`).
pub fn signed_form_body(params: &BTreeMap<String, String>, secret: &str) -> String {
    let signature = sign::sign_params("POST", params, secret);
    let mut body = sign::canonical_query(params);
    if !body.is_empty() {
        body.push('&');
    }
    body.push_str("Signature=");
    body.push_str(&sign::percent_encode(&signature));
    body
}

/// A fresh `SignatureNonce`: 32 random hex digits.
pub fn fresh_nonce() -> String {
    format!("{:032x}", rand::random::<u128>())
}

/// The current time as the RPC `Timestamp` wants it: `YYYY-MM-DDThh:mm:ssZ` in UTC.
pub fn timestamp_now() -> String {
    jiff::Timestamp::now()
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

/// The answer to one attempt: the page or error, plus the service's retry hint.
#[derive(Debug)]
pub struct Attempt {
    /// The decoded page, or why the attempt failed.
    pub result: Result<PipelinePage, EcsError>,
    /// `x-acs-retry-after`, when the service sent one.
    pub retry_after: Option<Duration>,
}

/// The `User-Agent` of every call.
const USER_AGENT: &str = concat!("imagepipeline-operator/", env!("CARGO_PKG_VERSION"));

/// The environment variables that name a proxy for reqwest (upper and lower case).
const PROXY_VARIABLES: [&str; 6] = [
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// How calls reach the API: the crate's own HTTP/1.1 connections ([`crate::http1`]), or
/// reqwest, which knows proxies, when the environment names one.
#[derive(Debug)]
pub(crate) enum Http {
    /// Direct connections, the body read straight into a pooled buffer.
    Direct(crate::http1::Client),
    /// reqwest, through the proxy the environment names (`NO_PROXY` honoured).
    Proxied(reqwest::Client),
}

impl Http {
    /// The client for this environment: reqwest when any of `HTTPS_PROXY`, `HTTP_PROXY` or
    /// `ALL_PROXY` (or their lower-case forms) is set, direct connections otherwise.
    #[allow(clippy::result_large_err)] // EcsError is the boundary's fixed error type.
    pub fn from_env(connect_timeout: Duration, read_timeout: Duration) -> Result<Self, EcsError> {
        let proxied = PROXY_VARIABLES
            .iter()
            .any(|v| std::env::var_os(v).is_some_and(|value| !value.is_empty()));
        if proxied {
            return http_client(connect_timeout, read_timeout).map(Http::Proxied);
        }
        let tls = crate::tls::client_config()
            .map_err(|e| EcsError::Config(format!("cannot set up TLS: {e}")))?;
        Ok(Http::Direct(crate::http1::Client::new(
            tls,
            connect_timeout,
            read_timeout,
            USER_AGENT,
        )))
    }

    /// Whether calls go through reqwest and the environment's proxy.
    pub fn is_proxied(&self) -> bool {
        matches!(self, Http::Proxied(_))
    }
}

/// Builds the reqwest client used behind a proxy: rustls with the ring provider and the
/// platform's roots, read at the first TLS handshake ([`crate::tls`]), connect and read
/// timeouts.
#[allow(clippy::result_large_err)] // EcsError is the boundary's fixed error type.
pub fn http_client(
    connect_timeout: Duration,
    read_timeout: Duration,
) -> Result<reqwest::Client, EcsError> {
    let tls = crate::tls::client_config()
        .map_err(|e| EcsError::Config(format!("cannot set up TLS: {e}")))?;
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .connect_timeout(connect_timeout)
        .read_timeout(read_timeout)
        .user_agent(USER_AGENT)
        .build()
        .map_err(|e| EcsError::Config(format!("cannot build the HTTP client: {}", chain(&e))))
}

/// An answer read whole: status, the service's retry hint and the body, in a buffer of the
/// pool.
struct Answer {
    status: u16,
    retry_after: Option<Duration>,
    body: Vec<u8>,
}

/// POSTs `body` to `url` and interprets the answer, reading at most `max_body_bytes` into
/// a buffer of `pool`; with `known`, as [`decode_response_known`] does.
pub(crate) async fn post_form(
    http: &Http,
    url: &reqwest::Url,
    body: String,
    max_body_bytes: usize,
    known: Option<(&KnownLists, usize)>,
    sink: Option<&mut (dyn ItemSink + 'static)>,
    pool: &BodyPool,
) -> Attempt {
    let answer = match http {
        Http::Direct(client) => match crate::http1::Origin::of(url) {
            Ok(origin) => client
                .post(&origin, body.as_bytes(), max_body_bytes, pool)
                .await
                .map(|a| Answer {
                    status: a.status,
                    retry_after: a.retry_after.as_deref().and_then(parse_retry_after),
                    body: a.body,
                }),
            Err(e) => Err(e),
        },
        Http::Proxied(client) => post_reqwest(client, url, body, max_body_bytes, pool).await,
    };
    let Answer {
        status,
        retry_after,
        body,
    } = match answer {
        Ok(answer) => answer,
        Err(e) => {
            return Attempt {
                result: Err(e),
                retry_after: None,
            };
        }
    };
    let result = match sink {
        Some(sink) => {
            let decoded = decode_response_into(status, &body, sink);
            pool.give(body);
            decoded
        }
        None => decode_pooled(status, body, known, pool),
    };
    Attempt {
        result,
        retry_after,
    }
}

/// The answer to a POST through reqwest.
async fn post_reqwest(
    http: &reqwest::Client,
    url: &reqwest::Url,
    body: String,
    max_body_bytes: usize,
    pool: &BodyPool,
) -> Result<Answer, EcsError> {
    let mut response = http
        .post(url.clone())
        .header(
            http::header::CONTENT_TYPE,
            "application/x-www-form-urlencoded",
        )
        .header(http::header::ACCEPT, "application/json")
        .body(body)
        .send()
        .await
        .map_err(|e| transport_error(&e))?;
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get(RETRY_AFTER_HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(parse_retry_after);
    // The header values are slices of hyper's read buffer: while they live, every read of the
    // body needs a fresh buffer (a few hundred KiB, mapped and faulted in page by page).
    drop(std::mem::take(response.headers_mut()));
    let body = read_bounded(&mut response, max_body_bytes, pool).await?;
    Ok(Answer {
        status,
        retry_after,
        body,
    })
}

/// Reads the body chunk by chunk, failing as soon as it grows past `limit`.
async fn read_bounded(
    response: &mut reqwest::Response,
    limit: usize,
    pool: &BodyPool,
) -> Result<Vec<u8>, EcsError> {
    if response
        .content_length()
        .is_some_and(|len| len > limit as u64)
    {
        return Err(EcsError::BodyTooLarge { limit });
    }
    // Sized once when the length is announced: growing by doubling copies the body again and
    // again, a good part of the cost of a page that is not decoded.
    let announced = response.content_length().unwrap_or(0);
    let mut body = pool.take(usize::try_from(announced).unwrap_or(0).min(limit));
    loop {
        let chunk = match response.chunk().await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => return Ok(body),
            Err(e) => {
                pool.give(body);
                return Err(transport_error(&e));
            }
        };
        if body.len() + chunk.len() > limit {
            pool.give(body);
            return Err(EcsError::BodyTooLarge { limit });
        }
        body.extend_from_slice(&chunk);
    }
}

/// Maps a reqwest error to [`EcsError::Transport`], without the URL.
fn transport_error(e: &reqwest::Error) -> EcsError {
    let timeout = e.is_timeout();
    let mut message = chain(e);
    if timeout && !message.contains("timed out") {
        message.push_str(" (timed out)");
    }
    EcsError::Transport { message, timeout }
}

/// An error and its sources, `: `-separated. reqwest's own message carries the URL, which is
/// dropped: the URL is only the endpoint (the parameters travel in the body), but the message
/// reads better without it.
fn chain(e: &reqwest::Error) -> String {
    let mut out = e.to_string();
    if let Some(url) = e.url() {
        out = out.replace(&format!(" for url ({url})"), "");
    }
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

/// Interprets a complete answer. A JSON object with `Code` is an error (even with HTTP 200,
/// unless it also carries pipelines); any other non-2xx is an error named `HTTP<status>`; a
/// 2xx must look like a page (`RequestId`, `ImagePipeline`, `TotalCount` or `NextToken`),
/// because mistaking garbage for an empty last page would prune everything mirrored.
#[allow(clippy::result_large_err)] // EcsError is the boundary's fixed error type.
pub fn decode_response(status: u16, body: &[u8]) -> Result<PipelinePage, EcsError> {
    decode(status, body, None).map(|(page, _)| page)
}

/// [`decode_response`] for a caller that remembers pages: the page carries its
/// [`list_hash`], and a page whose list is `known` comes back with its items undecoded (its
/// `undecoded` holds the body). Every other answer decodes exactly as [`decode_response`]
/// decodes it.
#[allow(clippy::result_large_err)] // EcsError is the boundary's fixed error type.
pub fn decode_response_known(
    status: u16,
    body: Vec<u8>,
    known: &KnownLists,
    index: usize,
) -> Result<PipelinePage, EcsError> {
    decode_pooled(status, body, Some((known, index)), &BodyPool::default())
}

/// Decodes a body read into a buffer of `pool` (with `known`, as [`decode_response_known`]
/// does): a page left undecoded keeps the buffer, shared until its last reader drops it; any
/// other answer gives it back.
#[allow(clippy::result_large_err)] // EcsError is the boundary's fixed error type.
fn decode_pooled(
    status: u16,
    body: Vec<u8>,
    known: Option<(&KnownLists, usize)>,
    pool: &BodyPool,
) -> Result<PipelinePage, EcsError> {
    match decode(status, &body, known) {
        Ok((mut page, true)) => {
            page.undecoded = Some(pool.share(body));
            Ok(page)
        }
        other => {
            pool.give(body);
            other.map(|(page, _)| page)
        }
    }
}

/// [`decode_response`] for a caller that takes the items through `sink`: the page comes back
/// with `items` empty and each item given to `sink`, in order, only when the whole answer is
/// a page (an error or an unreadable body gives nothing). Pages in the usual shape are read in
/// one strict pass with the items borrowed from `body`; any other answer is decoded exactly as
/// [`decode_response`] decodes it, and its items given from there.
#[allow(clippy::result_large_err)] // EcsError is the boundary's fixed error type.
pub fn decode_response_into(
    status: u16,
    body: &[u8],
    sink: &mut dyn ItemSink,
) -> Result<PipelinePage, EcsError> {
    if let Some(members) = body_into(body, sink) {
        // An error answer gives no items; it takes the usual path, which tells which it is.
        if check_answer(status, &members, true).is_ok() {
            return Ok(crate::model::decode_page_fields(&members));
        }
        sink.drop_page();
    }
    let (mut page, _) = decode(status, body, None)?;
    for item in std::mem::take(&mut page.items) {
        sink.item(&item.view());
    }
    Ok(page)
}

/// The members of a page in the usual shape, its items given to `sink` as views of `body`:
/// read by the hand-written scanner, or by serde's visitors when the scanner gives up (see
/// [`fast::visit_body_into`] for when that is `None`).
fn body_into(body: &[u8], sink: &mut dyn ItemSink) -> Option<serde_json::Map<String, Value>> {
    // Checked once as a whole, the texts need no check each (a body that is not UTF-8 is not
    // JSON either: the usual path tells what is wrong with it).
    let Ok(text) = std::str::from_utf8(body) else {
        sink.drop_page();
        return None;
    };
    scan::body_into(text, sink).or_else(|| fast::visit_body_into(text, sink))
}

/// Decodes an answer; with `known`, hashes the list and leaves a known one undecoded (the
/// `bool`; `index`: the page's, from 0). A known list's text is one that decoded before: it
/// needs no second look, and where it is can be told without reading it (see
/// [`fast::known_list`]).
#[allow(clippy::result_large_err)] // EcsError is the boundary's fixed error type.
fn decode(
    status: u16,
    body: &[u8],
    known: Option<(&KnownLists, usize)>,
) -> Result<(PipelinePage, bool), EcsError> {
    let found = known.and_then(|(k, index)| fast::known_list(body, k, index));
    if let Some((members, hash, length)) = found {
        check_answer(status, &members, true)?;
        let mut page = crate::model::decode_page_fields(&members);
        page.list_hash = Some(hash);
        page.list_len = Some(length);
        return Ok((page, true));
    }
    let known = known.map(|(known, _)| known);
    let decode_error = || EcsError::Decode {
        status,
        snippet: String::from_utf8_lossy(&body[..body.len().min(SNIPPET_BYTES)]).into_owned(),
    };
    // The top level in one pass, the list left as text.
    let top = fast::top_level(body).ok_or_else(decode_error)?;
    let list_hash = known.and(top.list).map(|raw| list_hash(raw.get()));
    let list_len = known.and(top.list).map(|raw| raw.get().len());
    let is_known =
        top.lists == 1 && list_hash.is_some_and(|h| known.is_some_and(|known| known.contains(h)));
    if !is_known && !fast::is_valid(body) {
        return Err(decode_error());
    }
    let obj = &top.members;
    check_answer(status, obj, top.list.is_some())?;
    if is_known {
        let mut page = crate::model::decode_page_fields(obj);
        page.list_hash = list_hash;
        page.list_len = list_len;
        return Ok((page, true));
    }
    let looks_like_page = top.list.is_some()
        || ["RequestId", "TotalCount", "NextToken"]
            .iter()
            .any(|k| obj.contains_key(*k));
    let list = match top.list {
        Some(raw) => Some(fast::list_of(raw).ok_or_else(decode_error)?),
        None => None,
    };
    // A list that is there but is not a list cannot be read as "no pipelines": that would make
    // a garbled answer look like an empty last page and prune everything mirrored.
    let garbled_list = matches!(list, Some(fast::List::Scalar));
    if !looks_like_page || garbled_list {
        return Err(decode_error());
    }
    let mut page = fast::decode_page(obj, list, body).ok_or_else(decode_error)?;
    page.list_hash = list_hash;
    page.list_len = list_len;
    Ok((page, false))
}

/// The error an answer with these top-level `members` is (`has_list`: it has a pipeline
/// list): one with a `Code` (even with HTTP 200, unless it also carries pipelines), or any
/// other non-2xx.
#[allow(clippy::result_large_err)] // EcsError is the boundary's fixed error type.
fn check_answer(
    status: u16,
    members: &serde_json::Map<String, Value>,
    has_list: bool,
) -> Result<(), EcsError> {
    let text = |k: &str| members.get(k).and_then(Value::as_str).map(str::to_string);
    let success = (200..300).contains(&status);
    let has_code = text("Code").is_some_and(|c| !c.is_empty());
    if has_code && !(success && has_list) {
        return Err(EcsError::Api(ApiError {
            status,
            code: text("Code").unwrap_or_default(),
            message: text("Message").unwrap_or_default(),
            request_id: text("RequestId"),
            host_id: text("HostId"),
            recommend: text("Recommend"),
        }));
    }
    if !success {
        return Err(EcsError::Api(ApiError {
            status,
            code: format!("HTTP{status}"),
            message: text("Message").unwrap_or_else(|| "error answer without a Code".into()),
            request_id: text("RequestId"),
            host_id: text("HostId"),
            recommend: text("Recommend"),
        }));
    }
    Ok(())
}

impl PipelinePage {
    /// The page with its items decoded: itself, or (when left undecoded) its body decoded in
    /// full, with the same checks as any other page.
    #[allow(clippy::result_large_err)] // EcsError is the boundary's fixed error type.
    pub fn decoded(&self) -> Result<std::borrow::Cow<'_, PipelinePage>, EcsError> {
        use std::borrow::Cow;
        let Some(body) = &self.undecoded else {
            return Ok(Cow::Borrowed(self));
        };
        let mut page = decode_response(200, body)?;
        page.list_hash = self.list_hash;
        page.list_len = self.list_len;
        Ok(Cow::Owned(page))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KNOWN_BODY: &str = r#"{"RequestId":"R1","NextToken":"t2","ImagePipeline":{"ImagePipelineSet":[{"ImagePipelineId":"ip-a","Name":"a"},{"Name":"no id"}]}}"#;
    const KNOWN_LIST: &str =
        r#"{"ImagePipelineSet":[{"ImagePipelineId":"ip-a","Name":"a"},{"Name":"no id"}]}"#;

    #[test]
    fn a_known_list_is_left_undecoded_and_decodes_later_to_what_it_would_have_been() {
        let known = KnownLists::new([(list_hash(KNOWN_LIST), KNOWN_LIST.len())]);
        let page = decode_response_known(200, KNOWN_BODY.as_bytes().to_vec(), &known, 0).unwrap();
        assert!(page.items.is_empty());
        assert_eq!(page.undecoded.as_deref(), Some(KNOWN_BODY.as_bytes()));
        assert_eq!(page.list_hash, Some(list_hash(KNOWN_LIST)));
        assert_eq!(page.request_id.as_deref(), Some("R1"));
        assert_eq!(page.next_token.as_deref(), Some("t2"));
        let decoded = page.decoded().unwrap().into_owned();
        let mut expected = decode_response(200, KNOWN_BODY.as_bytes()).unwrap();
        assert_eq!((expected.items.len(), expected.skipped_items), (1, 1));
        expected.list_hash = page.list_hash;
        expected.list_len = Some(KNOWN_LIST.len());
        assert_eq!(decoded, expected);
    }

    #[test]
    fn a_known_list_is_found_wherever_it_is_in_the_body_and_at_a_neighbours_length() {
        let other = r#"{"ImagePipelineSet":[]}"#;
        let known = KnownLists::new([
            (list_hash(other), other.len()),
            (list_hash(KNOWN_LIST), KNOWN_LIST.len()),
        ]);
        for body in [
            format!(
                r#"{{"TotalCount":3, "ImagePipeline" :  {KNOWN_LIST} ,"NextToken":"t2","RequestId":"R1"}}"#
            ),
            format!(r#"{{"RequestId":"R1","NextToken":"t2","ImagePipeline":{KNOWN_LIST}}}"#),
            format!(
                "{{\n \"ImagePipeline\":\n{KNOWN_LIST}\n,\"RequestId\":\"R1\",\"NextToken\":\"t2\"}}"
            ),
        ] {
            for index in [0, 1, 2] {
                let page = decode_response_known(200, body.clone().into_bytes(), &known, index)
                    .unwrap_or_else(|e| panic!("{body}: {e}"));
                assert!(page.undecoded.is_some(), "{body} at {index}");
                assert_eq!(page.list_hash, Some(list_hash(KNOWN_LIST)));
                assert_eq!(page.request_id.as_deref(), Some("R1"));
                assert_eq!(page.next_token.as_deref(), Some("t2"));
                let decoded = page.decoded().unwrap();
                assert_eq!(decoded.items.len(), 1, "{body}");
            }
        }
    }

    #[test]
    fn an_unknown_list_decodes_as_always_and_carries_its_hash() {
        let known = KnownLists::new([(list_hash("something else"), KNOWN_LIST.len())]);
        let page = decode_response_known(200, KNOWN_BODY.as_bytes().to_vec(), &known, 0).unwrap();
        assert_eq!(page.undecoded, None);
        assert_eq!(page.list_hash, Some(list_hash(KNOWN_LIST)));
        let mut expected = decode_response(200, KNOWN_BODY.as_bytes()).unwrap();
        expected.list_hash = page.list_hash;
        expected.list_len = Some(KNOWN_LIST.len());
        assert_eq!(page, expected);
        assert_eq!(page.decoded().unwrap().into_owned(), page);
    }

    #[test]
    fn a_known_list_does_not_excuse_the_rest_of_the_body() {
        let known = KnownLists::new([(list_hash(KNOWN_LIST), KNOWN_LIST.len())]);
        for body in [
            // Another member the reference cannot read.
            format!(r#"{{"RequestId":"R","X":1e400,"ImagePipeline":{KNOWN_LIST}}}"#),
            // A second list member: the known one is the last, the first is garbled.
            format!(r#"{{"RequestId":"R","ImagePipeline":[1e400],"ImagePipeline":{KNOWN_LIST}}}"#),
            // ... or the known one is the first.
            format!(r#"{{"RequestId":"R","ImagePipeline":{KNOWN_LIST},"ImagePipeline":[1e400]}}"#),
            // A known list followed by more than its text.
            format!(r#"{{"RequestId":"R","ImagePipeline":{KNOWN_LIST}]}}"#),
        ] {
            assert!(
                matches!(
                    decode_response_known(200, body.clone().into_bytes(), &known, 0),
                    Err(EcsError::Decode { .. })
                ),
                "{body}"
            );
        }
        let error =
            format!(r#"{{"RequestId":"R","Code":"Throttling","ImagePipeline":{KNOWN_LIST}}}"#);
        let page = decode_response_known(503, error.into_bytes(), &known, 0);
        assert!(matches!(page, Err(EcsError::Api(e)) if e.code == "Throttling"));
    }

    #[test]
    fn a_page_whose_list_is_a_scalar_is_undecodable_not_empty() {
        for body in [
            br#"{"RequestId":"R","ImagePipeline":"oops"}"#.as_slice(),
            br#"{"RequestId":"R","ImagePipeline":42}"#.as_slice(),
        ] {
            assert!(
                matches!(
                    decode_response(200, body),
                    Err(EcsError::Decode { status: 200, .. })
                ),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
        let empty = decode_response(200, br#"{"RequestId":"R","ImagePipeline":{}}"#);
        assert_eq!(empty.map(|p| p.items.len()).ok(), Some(0));
    }

    #[test]
    fn endpoint_overrides_keep_scheme_host_and_port_only() {
        assert_eq!(
            validate_endpoint("http://127.0.0.1:8080/").as_deref(),
            Ok("http://127.0.0.1:8080")
        );
        assert_eq!(
            validate_endpoint("https://ecs-vpc.cn-hangzhou.aliyuncs.com").as_deref(),
            Ok("https://ecs-vpc.cn-hangzhou.aliyuncs.com")
        );
        for bad in [
            "",
            "ecs.cn-hangzhou.aliyuncs.com",
            "ftp://host",
            "http://user:pw@host",
            "http://host/path",
            "http://host/?q=1",
            "http://",
        ] {
            assert!(
                matches!(validate_endpoint(bad), Err(EcsError::Config(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_form_body_is_the_signed_canonical_query() {
        let creds = Credentials::new("id", "secret");
        let mut p = common_params(&creds, "A", "V", "n", "2024-01-01T00:00:00Z");
        p.insert("Tag.1.Value".into(), "a b+c".into());
        let body = signed_form_body(&p, "secret");
        let sig = sign::sign_params("POST", &p, "secret");
        assert!(body.starts_with("AccessKeyId=id&Action=A&"), "{body}");
        assert!(body.contains("Tag.1.Value=a%20b%2Bc"), "{body}");
        assert!(body.ends_with(&format!("&Signature={}", sign::percent_encode(&sig))));
        assert!(!p.contains_key("SecurityToken"));
    }

    #[test]
    fn nonces_are_32_hex_digits_and_fresh() {
        let a = fresh_nonce();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_ne!(a, fresh_nonce());
    }

    #[test]
    fn timestamps_are_utc_seconds() {
        let t = timestamp_now();
        assert_eq!(t.len(), 20, "{t}");
        assert!(t.ends_with('Z') && t.as_bytes()[10] == b'T', "{t}");
    }

    #[test]
    fn error_objects_are_api_errors_even_with_http_200() {
        let body = br#"{"RequestId":"R","HostId":"ecs.aliyuncs.com","Code":"InvalidName.Malformed","Message":"bad","Recommend":"https://diag"}"#;
        for status in [200, 400] {
            let Err(EcsError::Api(e)) = decode_response(status, body) else {
                panic!("expected an API error");
            };
            assert_eq!(e.status, status);
            assert_eq!(e.code, "InvalidName.Malformed");
            assert_eq!(e.message, "bad");
            assert_eq!(e.request_id.as_deref(), Some("R"));
            assert_eq!(e.host_id.as_deref(), Some("ecs.aliyuncs.com"));
            assert_eq!(e.recommend.as_deref(), Some("https://diag"));
        }
    }

    #[test]
    fn error_statuses_without_a_code_are_named_after_the_status() {
        let Err(EcsError::Api(e)) = decode_response(502, br#"{"RequestId":"R"}"#) else {
            panic!("expected an API error");
        };
        assert_eq!(e.code, "HTTP502");
        assert!(EcsError::Api(e).is_transient());
    }

    #[test]
    fn pages_decode_and_non_pages_do_not() {
        let page = decode_response(
            200,
            br#"{"RequestId":"R","NextToken":"a+b/c=","ImagePipeline":{"ImagePipelineSet":[{"ImagePipelineId":"ip-1"}]}}"#,
        )
        .expect("a page");
        assert_eq!(page.next_token.as_deref(), Some("a+b/c="));
        assert_eq!(page.items.len(), 1);
        for body in [&b"{}"[..], b"[1]", b"<html>busy</html>"] {
            assert!(
                matches!(
                    decode_response(200, body),
                    Err(EcsError::Decode { status: 200, .. })
                ),
                "{body:?}"
            );
        }
    }

    #[test]
    fn undecodable_bodies_quote_their_first_bytes() {
        let body = format!("<html>{}</html>", "x".repeat(500));
        let Err(EcsError::Decode { status, snippet }) = decode_response(503, body.as_bytes())
        else {
            panic!("expected a decode error");
        };
        assert_eq!(status, 503);
        assert_eq!(snippet.len(), SNIPPET_BYTES);
        assert!(snippet.starts_with("<html>xxx"));
    }
}
