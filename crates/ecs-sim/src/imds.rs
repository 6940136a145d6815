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
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use http::HeaderMap;
use serde::Serialize;

use super::request::header;
use super::sts::random_alnum;

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
    pub(crate) config: ImdsConfig,
    tokens: Mutex<HashMap<String, Instant>>,
    counters: [AtomicU64; 7],
}

/// What the metadata service counts.
#[derive(Clone, Copy)]
pub(crate) enum Counter {
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

    pub(crate) fn bump(&self, counter: Counter) {
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

    pub(crate) fn issue_token(&self, ttl: Duration) -> String {
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
    pub(crate) fn authorize(&self, headers: &HeaderMap) -> bool {
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
