//! The ECS instance RAM role: credentials from the instance metadata service, IMDSv2 (session
//! token) first, IMDSv1 as a fallback unless disabled.

use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::Value;

use super::oidc::{base_url, parse_credentials};
use super::refresh::{Expiring, Fetch};
use super::{Lookup, http_client, service_error};
use crate::credentials::CredentialsError;

/// Names the RAM role instead of asking the metadata service for it.
pub const ENV_ECS_METADATA: &str = "ALIBABA_CLOUD_ECS_METADATA";
/// `true` skips the metadata service altogether.
pub const ENV_ECS_METADATA_DISABLED: &str = "ALIBABA_CLOUD_ECS_METADATA_DISABLED";
/// `true` forbids the IMDSv1 fallback.
pub const ENV_IMDSV1_DISABLED: &str = "ALIBABA_CLOUD_IMDSV1_DISABLED";
/// An explicit metadata endpoint (also `--imds-endpoint`).
pub const ENV_IMDS_ENDPOINT: &str = "ALIBABA_CLOUD_IMDS_ENDPOINT";
/// The metadata service of every ECS instance.
pub const DEFAULT_IMDS_ENDPOINT: &str = "http://100.100.100.200";
/// Lifetime requested for the IMDSv2 session token.
pub const TOKEN_TTL_SECONDS: u32 = 21_600;

const CREDENTIALS_PATH: &str = "/latest/meta-data/ram/security-credentials/";

/// Settings of the RAM-role provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImdsSettings {
    /// Base URL of the metadata service.
    pub endpoint: String,
    /// The role name, when configured; otherwise asked from the service.
    pub role_name: Option<String>,
    /// Whether the IMDSv1 fallback is forbidden.
    pub v1_disabled: bool,
}

fn is_true(lookup: &Lookup, name: &str) -> bool {
    lookup(name).is_some_and(|v| v.trim().eq_ignore_ascii_case("true"))
}

impl ImdsSettings {
    /// The settings from the environment; `None` when the provider is disabled.
    pub fn from_env(lookup: &Lookup, endpoint_override: Option<&str>) -> Option<Self> {
        if is_true(lookup, ENV_ECS_METADATA_DISABLED) {
            return None;
        }
        let endpoint = endpoint_override
            .map(str::to_string)
            .or_else(|| lookup(ENV_IMDS_ENDPOINT))
            .filter(|e| !e.trim().is_empty())
            .map_or_else(
                || DEFAULT_IMDS_ENDPOINT.to_string(),
                |e| {
                    if e.starts_with("http") {
                        base_url(&e)
                    } else {
                        format!("http://{}", e.trim())
                    }
                },
            );
        Some(Self {
            endpoint,
            role_name: lookup(ENV_ECS_METADATA)
                .map(|r| r.trim().to_string())
                .filter(|r| !r.is_empty()),
            v1_disabled: is_true(lookup, ENV_IMDSV1_DISABLED),
        })
    }
}

/// Fetches the instance RAM role's credentials.
#[derive(Debug, Clone)]
pub struct ImdsFetcher {
    settings: ImdsSettings,
    http: reqwest::Client,
}

impl ImdsFetcher {
    /// A fetcher with 1 s connect and read timeouts, as the SDKs use.
    pub fn new(settings: ImdsSettings) -> Result<Self, CredentialsError> {
        Ok(Self {
            settings,
            http: http_client(Duration::from_secs(1), Duration::from_secs(1))?,
        })
    }

    fn err(message: String) -> CredentialsError {
        service_error("ecs-ram-role", message)
    }

    /// The IMDSv2 session token, or `None` when the fallback to IMDSv1 is allowed.
    async fn session_token(&self) -> Result<Option<String>, CredentialsError> {
        let answer = self
            .http
            .put(format!("{}/latest/api/token", self.settings.endpoint))
            .header(
                "X-aliyun-ecs-metadata-token-ttl-seconds",
                TOKEN_TTL_SECONDS.to_string(),
            )
            .send()
            .await;
        let failure = match answer {
            Ok(r) if r.status().is_success() => match r.text().await {
                Ok(t) if !t.trim().is_empty() => return Ok(Some(t.trim().to_string())),
                Ok(_) => "an empty token".to_string(),
                Err(e) => e.to_string(),
            },
            Ok(r) => format!("HTTP {}", r.status().as_u16()),
            Err(e) => e.to_string(),
        };
        if self.settings.v1_disabled {
            return Err(Self::err(format!(
                "the IMDSv2 token request to {} failed ({failure}) and {ENV_IMDSV1_DISABLED}=true forbids IMDSv1",
                self.settings.endpoint
            )));
        }
        tracing::debug!(%failure, "IMDSv2 token refused; falling back to IMDSv1");
        Ok(None)
    }

    async fn get_text(&self, path: &str, token: Option<&str>) -> Result<String, CredentialsError> {
        let mut request = self.http.get(format!("{}{path}", self.settings.endpoint));
        if let Some(token) = token {
            request = request.header("X-aliyun-ecs-metadata-token", token);
        }
        let response = request.send().await.map_err(|e| {
            Self::err(format!(
                "metadata service {} unreachable: {e}",
                self.settings.endpoint
            ))
        })?;
        let status = response.status();
        let text = response
            .text()
            .await
            .map_err(|e| Self::err(format!("reading {path}: {e}")))?;
        if !status.is_success() {
            return Err(Self::err(format!(
                "GET {path} answered HTTP {}",
                status.as_u16()
            )));
        }
        Ok(text)
    }
}

impl Fetch for ImdsFetcher {
    fn fetch(&self) -> BoxFuture<'_, Result<Expiring, CredentialsError>> {
        Box::pin(async move {
            let token = self.session_token().await?;
            let role = match &self.settings.role_name {
                Some(role) => role.clone(),
                None => {
                    let listed = self.get_text(CREDENTIALS_PATH, token.as_deref()).await?;
                    listed
                        .lines()
                        .map(str::trim)
                        .find(|l| !l.is_empty())
                        .map(str::to_string)
                        .ok_or_else(|| {
                            Self::err("no RAM role is attached to this instance".into())
                        })?
                }
            };
            let body = self
                .get_text(&format!("{CREDENTIALS_PATH}{role}"), token.as_deref())
                .await?;
            let json: Value = serde_json::from_str(&body)
                .map_err(|_| Self::err(format!("the credentials of role {role} are not JSON")))?;
            let code = json.get("Code").and_then(Value::as_str).unwrap_or("");
            if code != "Success" {
                return Err(Self::err(format!(
                    "the metadata service answered Code {code:?} for role {role}"
                )));
            }
            parse_credentials(&json, "ecs-ram-role")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ambient::lookup_from as env;

    #[test]
    fn settings_follow_the_environment() {
        let s = ImdsSettings::from_env(&env(&[]), None).unwrap();
        assert_eq!(s.endpoint, DEFAULT_IMDS_ENDPOINT);
        assert_eq!(s.role_name, None);
        assert!(!s.v1_disabled);
        assert!(
            ImdsSettings::from_env(&env(&[(ENV_ECS_METADATA_DISABLED, "true")]), None).is_none()
        );
        let s = ImdsSettings::from_env(
            &env(&[
                (ENV_ECS_METADATA, " node-role\n"),
                (ENV_IMDSV1_DISABLED, "TRUE"),
            ]),
            Some("http://127.0.0.1:1234/"),
        )
        .unwrap();
        assert_eq!(s.endpoint, "http://127.0.0.1:1234");
        assert_eq!(s.role_name.as_deref(), Some("node-role"));
        assert!(s.v1_disabled);
    }
}
