//! The AccessKeys the simulator accepts, with optional STS token and expiry.

use std::collections::HashMap;
use std::fmt;
use std::str::FromStr;
use std::sync::RwLock;

use super::errors::SimError;

/// The AccessKey ID of the built-in test credential (documented; not a real key).
pub const DEFAULT_ACCESS_KEY_ID: &str = "LTAI5tSimulatorTestKey01";
/// The AccessKey secret of the built-in test credential.
pub const DEFAULT_ACCESS_KEY_SECRET: &str = "SimulatorTestSecretDoNotUseInProd";

/// One AccessKey the simulator accepts.
#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    /// `AccessKeyId`.
    pub access_key_id: String,
    /// `AccessKeySecret`.
    pub access_key_secret: String,
    /// The STS `SecurityToken` a request must carry with this key, if it is temporary.
    pub security_token: Option<String>,
    /// When a temporary key stops working (`InvalidSecurityToken.Expired` afterwards).
    pub expires_at: Option<jiff::Timestamp>,
}

impl Credential {
    /// A long-lived AccessKey.
    pub fn new(access_key_id: impl Into<String>, access_key_secret: impl Into<String>) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            access_key_secret: access_key_secret.into(),
            security_token: None,
            expires_at: None,
        }
    }

    /// The documented test credential every simulator accepts unless told otherwise.
    pub fn default_test() -> Self {
        Self::new(DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET)
    }

    /// The same key as a temporary STS credential.
    pub fn with_security_token(mut self, token: impl Into<String>) -> Self {
        self.security_token = Some(token.into());
        self
    }

    /// The same key expiring at `at`.
    pub fn expiring_at(mut self, at: jiff::Timestamp) -> Self {
        self.expires_at = Some(at);
        self
    }
}

impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("access_key_id", &self.access_key_id)
            .field("access_key_secret", &"<redacted>")
            .field(
                "security_token",
                &self.security_token.as_ref().map(|_| "<redacted>"),
            )
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl FromStr for Credential {
    type Err = SimError;

    /// `AK:SECRET` or `AK:SECRET:SECURITYTOKEN`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.splitn(3, ':');
        let ak = parts.next().unwrap_or_default();
        let secret = parts.next().unwrap_or_default();
        if ak.is_empty() || secret.is_empty() {
            // Never echo the secret back: only the key ID is shown.
            return Err(SimError::Credential(format!("{ak}:<secret>")));
        }
        let mut cred = Credential::new(ak, secret);
        if let Some(token) = parts.next().filter(|t| !t.is_empty()) {
            cred = cred.with_security_token(token);
        }
        Ok(cred)
    }
}

/// The credentials known to a running simulator, changeable at runtime.
#[derive(Debug, Default)]
pub struct CredentialStore {
    by_id: RwLock<HashMap<String, Credential>>,
}

impl CredentialStore {
    /// A store holding `creds`.
    pub fn new(creds: impl IntoIterator<Item = Credential>) -> Self {
        let store = Self::default();
        for c in creds {
            store.add(c);
        }
        store
    }

    /// Adds or replaces a credential.
    pub fn add(&self, cred: Credential) {
        if let Ok(mut map) = self.by_id.write() {
            map.insert(cred.access_key_id.clone(), cred);
        }
    }

    /// The credential of `access_key_id`.
    pub fn get(&self, access_key_id: &str) -> Option<Credential> {
        self.by_id
            .read()
            .ok()
            .and_then(|m| m.get(access_key_id).cloned())
    }

    /// Whether `token` is the STS token of some other known AccessKey.
    pub fn token_belongs_to_another_key(&self, access_key_id: &str, token: &str) -> bool {
        self.by_id.read().is_ok_and(|m| {
            m.values().any(|c| {
                c.access_key_id != access_key_id && c.security_token.as_deref() == Some(token)
            })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_parse_with_and_without_token() {
        let c: Credential = "AK:SK".parse().expect("valid");
        assert_eq!(c, Credential::new("AK", "SK"));
        let c: Credential = "AK:SK:tok:en".parse().expect("valid");
        assert_eq!(c.security_token.as_deref(), Some("tok:en"));
        assert!("AK".parse::<Credential>().is_err());
        assert!(":SK".parse::<Credential>().is_err());
    }

    #[test]
    fn debug_never_shows_secrets() {
        let c = Credential::new("AK", "topsecret").with_security_token("tok");
        let shown = format!("{c:?}");
        assert!(!shown.contains("topsecret") && !shown.contains("tok\""));
    }
}
