//! Authentication as the service does it, for both signature styles: the AccessKey must be
//! known, the STS token must belong to it and be unexpired, the time stamp must be within 15
//! minutes, the signature must match, and a nonce may be used once per 15 minutes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::claims::Claims;
use super::credential::{Credential, CredentialStore};
use super::errors::ApiFailure;
use super::request::RpcRequest;
use super::{v1, v3};

/// How far a request's time stamp may be from the server's clock, and how long a nonce is
/// remembered.
pub const MAX_SKEW: Duration = Duration::from_secs(15 * 60);

/// Nonces seen in the last [`MAX_SKEW`], per AccessKey.
#[derive(Debug, Default)]
pub struct NonceCache {
    seen: Mutex<HashMap<(String, String), Instant>>,
}

impl NonceCache {
    /// Records the nonce; `false` when it was already used within the window.
    pub fn record(&self, access_key_id: &str, nonce: &str) -> bool {
        let Ok(mut seen) = self.seen.lock() else {
            return true;
        };
        let now = Instant::now();
        if seen.len() > 10_000 {
            seen.retain(|_, at| now.duration_since(*at) < MAX_SKEW);
        }
        let key = (access_key_id.to_string(), nonce.to_string());
        match seen.get(&key) {
            Some(at) if now.duration_since(*at) < MAX_SKEW => false,
            _ => {
                seen.insert(key, now);
                true
            }
        }
    }
}

/// Authenticates `req` (v1 when it has no `ACS3-` Authorization header) and returns the
/// credential it was signed with.
pub fn authenticate(
    req: &RpcRequest,
    creds: &CredentialStore,
    nonces: &NonceCache,
    now: jiff::Timestamp,
) -> Result<Credential, ApiFailure> {
    if v3::is_v3(req) {
        let auth = v3::parse_authorization(&req.header("authorization").unwrap_or_default())?;
        let claims = v3::claims(req, &auth)?;
        let cred = check_claims(&claims, creds, now)?;
        v3::verify(req, &auth, &cred.access_key_secret)?;
        finish(&claims, nonces)?;
        Ok(cred)
    } else {
        let params = req.params();
        let claims = v1::claims(&params)?;
        let cred = check_claims(&claims, creds, now)?;
        v1::verify(req.method.as_str(), &params, &cred.access_key_secret)?;
        finish(&claims, nonces)?;
        Ok(cred)
    }
}

fn check_claims(
    claims: &Claims,
    creds: &CredentialStore,
    now: jiff::Timestamp,
) -> Result<Credential, ApiFailure> {
    let cred = creds
        .get(&claims.access_key_id)
        .ok_or_else(ApiFailure::access_key_not_found)?;
    check_timestamp(&claims.timestamp, now)?;
    let given = claims.security_token.as_deref().filter(|t| !t.is_empty());
    match (cred.security_token.as_deref(), given) {
        (None, None) => {}
        (None, Some(_)) => return Err(ApiFailure::security_token_mismatch()),
        (Some(_), None) => return Err(ApiFailure::missing_security_token()),
        (Some(expected), Some(given)) if expected != given => {
            return Err(
                if creds.token_belongs_to_another_key(&claims.access_key_id, given) {
                    ApiFailure::security_token_mismatch()
                } else {
                    ApiFailure::security_token_malformed()
                },
            );
        }
        (Some(_), Some(_)) => {}
    }
    if cred.expires_at.is_some_and(|exp| exp <= now) {
        return Err(ApiFailure::security_token_expired());
    }
    Ok(cred)
}

fn finish(claims: &Claims, nonces: &NonceCache) -> Result<(), ApiFailure> {
    if nonces.record(&claims.access_key_id, &claims.nonce) {
        Ok(())
    } else {
        Err(ApiFailure::nonce_used())
    }
}

/// Parses the SDKs' time stamp formats (`2024-01-02T03:04:05Z`, with or without fractional
/// seconds or an offset) and rejects a skew over [`MAX_SKEW`].
pub fn check_timestamp(value: &str, now: jiff::Timestamp) -> Result<(), ApiFailure> {
    let ts: jiff::Timestamp = value.parse().map_err(|_| ApiFailure::timestamp_format())?;
    let skew = now.duration_since(ts).unsigned_abs();
    if skew > MAX_SKEW {
        Err(ApiFailure::timestamp_expired())
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> jiff::Timestamp {
        "2024-05-01T12:00:00Z".parse().expect("valid")
    }

    #[test]
    fn timestamps_within_fifteen_minutes_pass() {
        for ok in [
            "2024-05-01T12:00:00Z",
            "2024-05-01T11:46:00Z",
            "2024-05-01T12:14:59.123Z",
            "2024-05-01T20:00:00+08:00",
        ] {
            assert_eq!(check_timestamp(ok, now()), Ok(()), "{ok}");
        }
    }

    #[test]
    fn skewed_or_garbled_timestamps_fail_with_their_codes() {
        let late = check_timestamp("2024-05-01T11:44:00Z", now()).expect_err("old");
        assert_eq!(late.code, "InvalidTimeStamp.Expired");
        let bad = check_timestamp("yesterday", now()).expect_err("garbled");
        assert_eq!(bad.code, "InvalidTimeStamp.Format");
    }

    #[test]
    fn a_nonce_is_accepted_once_per_access_key() {
        let cache = NonceCache::default();
        assert!(cache.record("AK", "n1"));
        assert!(!cache.record("AK", "n1"));
        assert!(cache.record("AK2", "n1"));
    }

    #[test]
    fn sts_tokens_are_checked_against_their_key() {
        let store = CredentialStore::new([
            Credential::new("STS.a", "s").with_security_token("tok-a"),
            Credential::new("STS.b", "s").with_security_token("tok-b"),
            Credential::new("STS.old", "s")
                .with_security_token("tok-old")
                .expiring_at("2024-05-01T11:00:00Z".parse().expect("valid")),
        ]);
        let claims = |ak: &str, tok: Option<&str>| Claims {
            access_key_id: ak.into(),
            nonce: "n".into(),
            timestamp: "2024-05-01T12:00:00Z".into(),
            security_token: tok.map(str::to_string),
        };
        let code = |c: Claims| check_claims(&c, &store, now()).map_err(|e| e.code);
        assert!(code(claims("STS.a", Some("tok-a"))).is_ok());
        assert_eq!(
            code(claims("STS.a", Some("tok-b"))).err().as_deref(),
            Some("InvalidSecurityToken.MismatchWithAccessKey")
        );
        assert_eq!(
            code(claims("STS.a", Some("garbage"))).err().as_deref(),
            Some("InvalidSecurityToken.Malformed")
        );
        assert_eq!(
            code(claims("STS.a", None)).err().as_deref(),
            Some("MissingSecurityToken")
        );
        assert_eq!(
            code(claims("STS.old", Some("tok-old"))).err().as_deref(),
            Some("InvalidSecurityToken.Expired")
        );
        assert_eq!(
            code(claims("nobody", None)).err().as_deref(),
            Some("InvalidAccessKeyId.NotFound")
        );
    }
}
