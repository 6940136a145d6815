//! Alibaba Cloud credentials and the providers that produce them.
//!
//! A provider is asked for credentials before every signed call, so providers that hold
//! short-lived STS credentials (RRSA/OIDC, the ECS RAM role) can refresh them behind this trait.

use std::fmt;
use std::sync::Arc;

use futures::future::BoxFuture;

/// An AccessKey pair, with the STS token when the pair is temporary.
///
/// `Debug` never prints the secret or the token.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// `AccessKeyId`: not secret; used for rate limiting and in logs.
    pub access_key_id: String,
    /// `AccessKeySecret`: signs requests. Never logged.
    pub access_key_secret: String,
    /// `SecurityToken` of STS credentials. Never logged.
    pub security_token: Option<String>,
}

impl Credentials {
    /// Long-lived AccessKey credentials.
    pub fn new(access_key_id: impl Into<String>, access_key_secret: impl Into<String>) -> Self {
        Self {
            access_key_id: access_key_id.into(),
            access_key_secret: access_key_secret.into(),
            security_token: None,
        }
    }

    /// The same credentials carrying an STS security token.
    pub fn with_security_token(mut self, token: impl Into<String>) -> Self {
        self.security_token = Some(token.into());
        self
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("access_key_id", &self.access_key_id)
            .field("access_key_secret", &"<redacted>")
            .field(
                "security_token",
                &self.security_token.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// Why credentials could not be produced. Messages never contain secret values.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialsError {
    /// A required setting (environment variable, Secret key, file) is missing.
    #[error("{0}")]
    Missing(String),
    /// A value is present but unusable (empty, not UTF-8, malformed).
    #[error("{0}")]
    Invalid(String),
    /// A credential service (STS, the metadata service) failed.
    #[error("{provider}: {message}")]
    Service {
        /// Which provider failed, e.g. `sts` or `ecs-ram-role`.
        provider: String,
        /// What went wrong, without secrets.
        message: String,
    },
}

/// Something that hands out credentials, possibly refreshing them.
pub trait CredentialsProvider: Send + Sync + fmt::Debug {
    /// A short stable name for status, logs and metrics, e.g. `env` or `secret/team-ak`.
    fn name(&self) -> String;

    /// Current credentials, valid for at least the next call.
    fn credentials(&self) -> BoxFuture<'_, Result<Credentials, CredentialsError>>;
}

/// A shared provider.
pub type SharedProvider = Arc<dyn CredentialsProvider>;

/// Fixed credentials (from a Secret or flags).
#[derive(Debug, Clone)]
pub struct StaticProvider {
    name: String,
    credentials: Credentials,
}

impl StaticProvider {
    /// A provider that always returns `credentials`, reported as `name`.
    pub fn new(name: impl Into<String>, credentials: Credentials) -> Self {
        Self {
            name: name.into(),
            credentials,
        }
    }
}

impl CredentialsProvider for StaticProvider {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn credentials(&self) -> BoxFuture<'_, Result<Credentials, CredentialsError>> {
        Box::pin(futures::future::ready(Ok(self.credentials.clone())))
    }
}

/// The environment variable holding the AccessKey ID.
pub const ENV_ACCESS_KEY_ID: &str = "ALIBABA_CLOUD_ACCESS_KEY_ID";
/// The environment variable holding the AccessKey secret.
pub const ENV_ACCESS_KEY_SECRET: &str = "ALIBABA_CLOUD_ACCESS_KEY_SECRET";
/// The environment variable holding an STS security token.
pub const ENV_SECURITY_TOKEN: &str = "ALIBABA_CLOUD_SECURITY_TOKEN";

/// Reads `ALIBABA_CLOUD_ACCESS_KEY_ID`, `ALIBABA_CLOUD_ACCESS_KEY_SECRET` and the optional
/// `ALIBABA_CLOUD_SECURITY_TOKEN` through `lookup` (the process environment in production).
pub fn credentials_from_env(
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Option<Credentials>, CredentialsError> {
    let non_empty = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
    match (
        non_empty(ENV_ACCESS_KEY_ID),
        non_empty(ENV_ACCESS_KEY_SECRET),
    ) {
        (None, None) => Ok(None),
        (Some(_), None) => Err(CredentialsError::Missing(format!(
            "{ENV_ACCESS_KEY_ID} is set but {ENV_ACCESS_KEY_SECRET} is not"
        ))),
        (None, Some(_)) => Err(CredentialsError::Missing(format!(
            "{ENV_ACCESS_KEY_SECRET} is set but {ENV_ACCESS_KEY_ID} is not"
        ))),
        (Some(id), Some(secret)) => {
            let creds = Credentials::new(id.trim(), secret.trim());
            Ok(Some(match non_empty(ENV_SECURITY_TOKEN) {
                Some(token) => creds.with_security_token(token.trim()),
                None => creds,
            }))
        }
    }
}

/// Like [`credentials_from_env`], but absent variables are an error naming them.
pub fn required_credentials_from_env(
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<Credentials, CredentialsError> {
    credentials_from_env(lookup)?.ok_or_else(|| {
        CredentialsError::Missing(format!(
            "{ENV_ACCESS_KEY_ID} and {ENV_ACCESS_KEY_SECRET} are not set"
        ))
    })
}

/// Credentials from the process environment, read on every call so a rotated value is seen.
#[derive(Debug, Clone, Default)]
pub struct EnvProvider;

impl CredentialsProvider for EnvProvider {
    fn name(&self) -> String {
        "env".into()
    }

    fn credentials(&self) -> BoxFuture<'_, Result<Credentials, CredentialsError>> {
        let result = required_credentials_from_env(|k| std::env::var(k).ok());
        Box::pin(futures::future::ready(result))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn debug_never_shows_the_secret_or_token() {
        let c = Credentials::new("LTAIid", "s3cr3t-value").with_security_token("tok-value");
        let shown = format!("{c:?}");
        assert!(shown.contains("LTAIid"));
        assert!(!shown.contains("s3cr3t-value"));
        assert!(!shown.contains("tok-value"));
    }

    #[test]
    fn environment_credentials_are_read_with_optional_token() {
        let c = credentials_from_env(env(&[
            (ENV_ACCESS_KEY_ID, "id"),
            (ENV_ACCESS_KEY_SECRET, "secret"),
            (ENV_SECURITY_TOKEN, "token"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(
            c,
            Credentials::new("id", "secret").with_security_token("token")
        );
        assert_eq!(credentials_from_env(env(&[])).unwrap(), None);
    }

    #[test]
    fn half_set_environment_credentials_are_an_error_naming_the_missing_variable() {
        let err = credentials_from_env(env(&[(ENV_ACCESS_KEY_ID, "id")])).unwrap_err();
        assert!(err.to_string().contains(ENV_ACCESS_KEY_SECRET), "{err}");
    }
}
