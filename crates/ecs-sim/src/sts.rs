//! STS `AssumeRoleWithOIDC` (API version 2015-04-01, unsigned), served on the simulator's
//! listener and dispatched by `Action` like the ECS actions.
//!
//! The credentials it hands out are registered with the simulator, so ECS calls signed with
//! them (and carrying their `SecurityToken`) are accepted until `Expiration`, then answer
//! `InvalidSecurityToken.Expired`. Every `OIDCToken` received is remembered in order, so tests
//! can tell which token a client sent.

use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use jiff::Timestamp;
use rand::Rng as _;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::credential::Credential;

/// The STS API version.
pub const STS_API_VERSION: &str = "2015-04-01";
/// The action answered.
pub const ASSUME_ROLE_WITH_OIDC: &str = "AssumeRoleWithOIDC";
/// `DurationSeconds` when the request has none.
pub const DEFAULT_DURATION_SECONDS: u64 = 3600;
/// The smallest `DurationSeconds` STS accepts.
pub const MIN_DURATION_SECONDS: u64 = 900;
/// The largest `DurationSeconds` STS accepts (a role's `MaxSessionDuration` ceiling).
pub const MAX_DURATION_SECONDS: u64 = 43_200;

/// What the simulated STS accepts and how long its credentials live.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct StsConfig {
    /// Role ARNs that exist; empty accepts any well-formed ARN.
    pub role_arns: Vec<String>,
    /// OIDC provider ARNs that are registered; empty accepts any.
    pub oidc_provider_arns: Vec<String>,
    /// The only `OIDCToken` accepted; `None` accepts any non-empty token.
    pub oidc_token: Option<String>,
    /// Lifetime of the credentials issued; `None` grants `DurationSeconds`. May be shorter than
    /// STS's 900 s minimum so tests can watch credentials expire.
    pub lifetime: Option<Duration>,
}

impl fmt::Debug for StsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StsConfig")
            .field("role_arns", &self.role_arns)
            .field("oidc_provider_arns", &self.oidc_provider_arns)
            .field(
                "oidc_token",
                &self.oidc_token.as_ref().map(|_| "<redacted>"),
            )
            .field("lifetime", &self.lifetime)
            .finish()
    }
}

/// The simulated STS of one simulator: its configuration, call counter and the tokens seen.
#[derive(Debug, Default)]
pub struct StsState {
    pub(crate) config: StsConfig,
    pub(crate) calls: AtomicU64,
    tokens: Mutex<Vec<String>>,
}

impl StsState {
    /// A fresh STS answering as `config` says.
    pub fn new(config: StsConfig) -> Self {
        Self {
            config,
            ..Self::default()
        }
    }

    /// `AssumeRoleWithOIDC` calls received, faulted and refused ones included.
    pub fn calls(&self) -> u64 {
        self.calls.load(Ordering::SeqCst)
    }

    /// Every `OIDCToken` received, oldest first.
    pub fn tokens(&self) -> Vec<String> {
        self.tokens.lock().map(|t| t.clone()).unwrap_or_default()
    }

    pub(crate) fn remember(&self, token: &str) {
        if let Ok(mut tokens) = self.tokens.lock() {
            tokens.push(token.to_string());
        }
    }
}

/// A short, stable fingerprint of a token for logs: `sha256:` and 16 hex digits.
pub fn token_fingerprint(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    format!("sha256:{}", &hex::encode(digest)[..16])
}

/// `n` random ASCII letters and digits.
pub fn random_alnum(n: usize) -> String {
    rand::rng()
        .sample_iter(rand::distr::Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

/// The service's `Expiration` format: UTC, whole seconds, `Z`.
pub fn iso8601(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// `{AccessKeyId, AccessKeySecret, SecurityToken, Expiration}` of issued credentials.
pub fn credentials_json(c: &Credential) -> Value {
    json!({
        "AccessKeyId": c.access_key_id,
        "AccessKeySecret": c.access_key_secret,
        "SecurityToken": c.security_token.clone().unwrap_or_default(),
        "Expiration": c.expires_at.map(iso8601).unwrap_or_default(),
    })
}
