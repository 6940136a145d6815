//! The ECS instance metadata service, as far as the RAM-role credential provider needs it:
//!
//! - `PUT /latest/api/token` with `X-aliyun-ecs-metadata-token-ttl-seconds` (1..21600) answers
//!   an IMDSv2 session token;
//! - `GET /latest/meta-data/ram/security-credentials/` names the instance's RAM role;
//! - `GET /latest/meta-data/ram/security-credentials/<role>` answers
//!   `{Code, AccessKeyId, AccessKeySecret, SecurityToken, Expiration, LastUpdated}`, fresh
//!   credentials registered with the simulator like the ones STS hands out.
//!
//! A `X-aliyun-ecs-metadata-token` that is unknown or expired answers 401. Without a token
//! (IMDSv1) the GETs work unless the service is in IMDSv2-only (hardened) mode, which answers
//! 401 too. With IMDSv2 disabled the token `PUT` answers 404, so clients fall back to IMDSv1.
//! The real service listens on `100.100.100.200`; here it shares the simulator's listener.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, put};
use http::{HeaderMap, HeaderValue, StatusCode};
use serde::Serialize;
use serde_json::json;

use super::request::header;
use super::server::SimState;
use super::sts::{credentials_json, iso8601, issue_temporary, random_alnum};

/// The header a token request states the token's lifetime in.
pub const TTL_HEADER: &str = "x-aliyun-ecs-metadata-token-ttl-seconds";
/// The header carrying the session token on metadata reads.
pub const TOKEN_HEADER: &str = "x-aliyun-ecs-metadata-token";
/// The longest session token lifetime, in seconds.
pub const MAX_TOKEN_TTL: u64 = 21_600;
/// The RAM role attached to the simulated instance unless configured otherwise.
pub const DEFAULT_ROLE: &str = "sim-node-role";
/// Lifetime of the role credentials unless configured otherwise (the service's six hours).
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(21_600);

/// How the simulated metadata service behaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImdsConfig {
    /// The RAM role attached to the instance; empty means none (the listing answers 404).
    pub role_name: String,
    /// Hardened mode: every metadata read needs a valid session token.
    pub v2_only: bool,
    /// No IMDSv2: the token request answers 404.
    pub v2_disabled: bool,
    /// Lifetime of the credentials handed out.
    pub lifetime: Duration,
}

impl Default for ImdsConfig {
    fn default() -> Self {
        Self {
            role_name: DEFAULT_ROLE.to_string(),
            v2_only: false,
            v2_disabled: false,
            lifetime: DEFAULT_LIFETIME,
        }
    }
}

/// What the metadata service was asked, for tests and `GET /_sim/stats`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImdsStats {
    /// Session tokens issued.
    pub tokens_issued: u64,
    /// Token requests refused (IMDSv2 disabled, bad TTL, `X-Forwarded-For`).
    pub tokens_refused: u64,
    /// Metadata reads answered without a token (IMDSv1).
    pub v1_reads: u64,
    /// Metadata reads answered with a valid token (IMDSv2).
    pub v2_reads: u64,
    /// Metadata reads refused with 401.
    pub unauthorized: u64,
    /// Reads of the role listing.
    pub role_lists: u64,
    /// Role credentials handed out.
    pub credentials_issued: u64,
}

/// The metadata service of one simulator.
#[derive(Debug, Default)]
pub struct ImdsState {
    config: ImdsConfig,
    tokens: Mutex<HashMap<String, Instant>>,
    counters: [AtomicU64; 7],
}

#[derive(Clone, Copy)]
enum Counter {
    TokensIssued,
    TokensRefused,
    V1Reads,
    V2Reads,
    Unauthorized,
    RoleLists,
    CredentialsIssued,
}

impl ImdsState {
    /// A metadata service behaving as `config` says.
    pub fn new(config: ImdsConfig) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    fn bump(&self, counter: Counter) {
        self.counters[counter as usize].fetch_add(1, Ordering::SeqCst);
    }

    /// The counters so far.
    pub fn stats(&self) -> ImdsStats {
        let c = |counter: Counter| self.counters[counter as usize].load(Ordering::SeqCst);
        ImdsStats {
            tokens_issued: c(Counter::TokensIssued),
            tokens_refused: c(Counter::TokensRefused),
            v1_reads: c(Counter::V1Reads),
            v2_reads: c(Counter::V2Reads),
            unauthorized: c(Counter::Unauthorized),
            role_lists: c(Counter::RoleLists),
            credentials_issued: c(Counter::CredentialsIssued),
        }
    }

    fn issue_token(&self, ttl: Duration) -> String {
        let token = random_alnum(56);
        if let Ok(mut tokens) = self.tokens.lock() {
            let now = Instant::now();
            tokens.retain(|_, until| *until > now);
            tokens.insert(token.clone(), now + ttl);
        }
        token
    }

    fn token_valid(&self, token: &str) -> bool {
        self.tokens
            .lock()
            .is_ok_and(|t| t.get(token).is_some_and(|until| *until > Instant::now()))
    }

    /// Counts and authorizes one metadata read: `false` means answer 401.
    fn authorize(&self, headers: &HeaderMap) -> bool {
        match header(headers, TOKEN_HEADER) {
            Some(token) if self.token_valid(token.trim()) => {
                self.bump(Counter::V2Reads);
                true
            }
            None if !self.config.v2_only => {
                self.bump(Counter::V1Reads);
                true
            }
            _ => {
                self.bump(Counter::Unauthorized);
                false
            }
        }
    }
}

/// The metadata routes.
pub fn routes() -> Router<Arc<SimState>> {
    Router::new()
        .route("/latest/api/token", put(token))
        .route("/latest/meta-data/ram/security-credentials", get(role_list))
        .route(
            "/latest/meta-data/ram/security-credentials/",
            get(role_list),
        )
        .route(
            "/latest/meta-data/ram/security-credentials/{role}",
            get(role_credentials),
        )
}

fn text(status: StatusCode, body: &str) -> Response {
    let mut r = Response::new(Body::from(body.to_string()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("text/plain"));
    r
}

async fn token(State(state): State<Arc<SimState>>, headers: HeaderMap) -> Response {
    let imds = &state.imds;
    let refuse = |status: StatusCode, why: &str| {
        imds.bump(Counter::TokensRefused);
        text(status, why)
    };
    if imds.config.v2_disabled {
        return refuse(StatusCode::NOT_FOUND, "Not Found");
    }
    // The service refuses token requests that went through a proxy.
    if headers.contains_key("x-forwarded-for") {
        return refuse(StatusCode::FORBIDDEN, "Forbidden");
    }
    let ttl = header(&headers, TTL_HEADER)
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|t| (1..=MAX_TOKEN_TTL).contains(t));
    let Some(ttl) = ttl else {
        return refuse(StatusCode::BAD_REQUEST, "Bad Request");
    };
    imds.bump(Counter::TokensIssued);
    text(StatusCode::OK, &imds.issue_token(Duration::from_secs(ttl)))
}

async fn role_list(State(state): State<Arc<SimState>>, headers: HeaderMap) -> Response {
    let imds = &state.imds;
    if !imds.authorize(&headers) {
        return text(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    imds.bump(Counter::RoleLists);
    if imds.config.role_name.is_empty() {
        return text(StatusCode::NOT_FOUND, "Not Found");
    }
    text(StatusCode::OK, &imds.config.role_name)
}

async fn role_credentials(
    State(state): State<Arc<SimState>>,
    Path(role): Path<String>,
    headers: HeaderMap,
) -> Response {
    let imds = &state.imds;
    if !imds.authorize(&headers) {
        return text(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    if imds.config.role_name.is_empty() || role != imds.config.role_name {
        return text(StatusCode::NOT_FOUND, "Not Found");
    }
    let now = jiff::Timestamp::now();
    let issued = issue_temporary(&state, now, imds.config.lifetime);
    imds.bump(Counter::CredentialsIssued);
    let mut body = credentials_json(&issued);
    body["LastUpdated"] = json!(iso8601(now));
    body["Code"] = json!("Success");
    let mut r = Response::new(Body::from(body.to_string()));
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("text/plain"));
    r
}
