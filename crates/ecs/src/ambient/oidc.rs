//! RRSA: a Kubernetes service-account token exchanged for STS credentials with
//! `AssumeRoleWithOIDC` (STS API version 2015-04-01, an unsigned call).

use std::path::PathBuf;
use std::time::Duration;

use futures::future::BoxFuture;
use jiff::Timestamp;
use serde_json::Value;

use super::refresh::{Expiring, Fetch};
use super::{Lookup, http_client, service_error};
use crate::credentials::{Credentials, CredentialsError};
use crate::retry::Backoff;

/// The role to assume.
pub const ENV_ROLE_ARN: &str = "ALIBABA_CLOUD_ROLE_ARN";
/// The OIDC provider of the cluster.
pub const ENV_OIDC_PROVIDER_ARN: &str = "ALIBABA_CLOUD_OIDC_PROVIDER_ARN";
/// The projected service-account token file (rotated by the kubelet).
pub const ENV_OIDC_TOKEN_FILE: &str = "ALIBABA_CLOUD_OIDC_TOKEN_FILE";
/// Optional session name.
pub const ENV_ROLE_SESSION_NAME: &str = "ALIBABA_CLOUD_ROLE_SESSION_NAME";
/// Region of the STS endpoint (`sts.<region>.aliyuncs.com`).
pub const ENV_STS_REGION: &str = "ALIBABA_CLOUD_STS_REGION";
/// `true` selects the VPC STS endpoint (`sts-vpc.<region>.aliyuncs.com`).
pub const ENV_VPC_ENDPOINT_ENABLED: &str = "ALIBABA_CLOUD_VPC_ENDPOINT_ENABLED";
/// An explicit STS endpoint (also `--sts-endpoint`).
pub const ENV_STS_ENDPOINT: &str = "ALIBABA_CLOUD_STS_ENDPOINT";

/// Requested lifetime of the STS credentials.
pub const DEFAULT_DURATION_SECONDS: u64 = 3600;
/// The smallest lifetime STS grants.
pub const MIN_DURATION_SECONDS: u64 = 900;

/// Settings of the RRSA provider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcSettings {
    /// `RoleArn`.
    pub role_arn: String,
    /// `OIDCProviderArn`.
    pub oidc_provider_arn: String,
    /// File holding the OIDC token; re-read on every refresh.
    pub token_file: PathBuf,
    /// `RoleSessionName`.
    pub role_session_name: String,
    /// `DurationSeconds`, at least 900.
    pub duration_seconds: u64,
    /// Base URL of STS, e.g. `https://sts.aliyuncs.com`.
    pub sts_endpoint: String,
}

/// Turns `host` or `http(s)://host[:port]` into a base URL without a trailing slash.
pub fn base_url(endpoint: &str) -> String {
    let trimmed = endpoint.trim().trim_end_matches('/');
    if trimmed.starts_with("http://") || trimmed.starts_with("https://") {
        trimmed.to_string()
    } else {
        format!("https://{trimmed}")
    }
}

/// The STS endpoint the official SDKs pick: explicit override, else regional (VPC when
/// enabled), else the global `sts.aliyuncs.com`.
pub fn sts_endpoint(explicit: Option<&str>, lookup: &Lookup) -> String {
    if let Some(e) = explicit.filter(|e| !e.trim().is_empty()) {
        return base_url(e);
    }
    if let Some(e) = lookup(ENV_STS_ENDPOINT).filter(|e| !e.trim().is_empty()) {
        return base_url(&e);
    }
    let vpc =
        lookup(ENV_VPC_ENDPOINT_ENABLED).is_some_and(|v| v.trim().eq_ignore_ascii_case("true"));
    match lookup(ENV_STS_REGION).filter(|r| !r.trim().is_empty()) {
        Some(region) if vpc => format!("https://sts-vpc.{}.aliyuncs.com", region.trim()),
        Some(region) => format!("https://sts.{}.aliyuncs.com", region.trim()),
        None => "https://sts.aliyuncs.com".into(),
    }
}

impl OidcSettings {
    /// The settings from the environment, or `None` when RRSA is not configured (any of the
    /// three variables missing).
    pub fn from_env(lookup: &Lookup, sts_override: Option<&str>) -> Option<Self> {
        let get = |k: &str| lookup(k).filter(|v| !v.trim().is_empty());
        let role_arn = get(ENV_ROLE_ARN)?;
        let oidc_provider_arn = get(ENV_OIDC_PROVIDER_ARN)?;
        let token_file = get(ENV_OIDC_TOKEN_FILE)?;
        Some(Self {
            role_arn,
            oidc_provider_arn,
            token_file: PathBuf::from(token_file),
            role_session_name: get(ENV_ROLE_SESSION_NAME)
                .unwrap_or_else(|| "imagepipeline-operator".into()),
            duration_seconds: DEFAULT_DURATION_SECONDS,
            sts_endpoint: sts_endpoint(sts_override, lookup),
        })
    }
}

/// Fetches STS credentials with `AssumeRoleWithOIDC`.
#[derive(Debug, Clone)]
pub struct OidcFetcher {
    settings: OidcSettings,
    http: reqwest::Client,
    attempts: u32,
}

impl OidcFetcher {
    /// A fetcher for `settings`.
    pub fn new(settings: OidcSettings) -> Result<Self, CredentialsError> {
        Ok(Self {
            settings,
            http: http_client(Duration::from_secs(5), Duration::from_secs(10))?,
            attempts: 3,
        })
    }

    async fn read_token(&self) -> Result<String, CredentialsError> {
        let path = &self.settings.token_file;
        let token = tokio::fs::read_to_string(path).await.map_err(|e| {
            CredentialsError::Missing(format!(
                "cannot read the OIDC token file {} ({ENV_OIDC_TOKEN_FILE}): {e}",
                path.display()
            ))
        })?;
        let token = token.trim().to_string();
        if token.is_empty() {
            return Err(CredentialsError::Invalid(format!(
                "the OIDC token file {} is empty",
                path.display()
            )));
        }
        Ok(token)
    }

    async fn call_once(&self, token: &str) -> Result<Expiring, (CredentialsError, bool)> {
        let s = &self.settings;
        let timestamp = Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
        let duration = s.duration_seconds.max(MIN_DURATION_SECONDS).to_string();
        let form = [
            ("RoleArn", s.role_arn.as_str()),
            ("OIDCProviderArn", s.oidc_provider_arn.as_str()),
            ("OIDCToken", token),
            ("RoleSessionName", s.role_session_name.as_str()),
            ("DurationSeconds", duration.as_str()),
        ];
        let response = self
            .http
            .post(format!("{}/", s.sts_endpoint))
            .query(&[
                ("Action", "AssumeRoleWithOIDC"),
                ("Format", "JSON"),
                ("Version", "2015-04-01"),
                ("Timestamp", timestamp.as_str()),
            ])
            .form(&form)
            .send()
            .await
            .map_err(|e| {
                (
                    service_error(
                        "sts",
                        format!(
                            "AssumeRoleWithOIDC at {} failed: {}",
                            s.sts_endpoint,
                            without_url(&e)
                        ),
                    ),
                    true,
                )
            })?;
        let status = response.status().as_u16();
        let body = response.bytes().await.map_err(|e| {
            (
                service_error(
                    "sts",
                    format!("reading the AssumeRoleWithOIDC answer: {}", without_url(&e)),
                ),
                true,
            )
        })?;
        parse_assume_role(status, &body).map_err(|e| (e, status >= 500))
    }
}

/// A reqwest error's text without the URL (which carries no secret here, but is noise).
fn without_url(e: &reqwest::Error) -> String {
    let mut msg = e.to_string();
    if e.is_timeout() {
        msg = format!("timed out: {msg}");
    }
    msg
}

/// Parses an STS answer into expiring credentials.
pub fn parse_assume_role(status: u16, body: &[u8]) -> Result<Expiring, CredentialsError> {
    let json: Value = serde_json::from_slice(body).map_err(|_| {
        service_error(
            "sts",
            format!(
                "AssumeRoleWithOIDC answered HTTP {status} with a body that is not JSON: {:?}",
                String::from_utf8_lossy(&body[..body.len().min(120)])
            ),
        )
    })?;
    if !(200..300).contains(&status) || json.get("Credentials").is_none() {
        let field = |k: &str| {
            json.get(k)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        return Err(service_error(
            "sts",
            format!(
                "AssumeRoleWithOIDC failed (HTTP {status}): {}: {} [RequestId {}]",
                field("Code"),
                field("Message"),
                field("RequestId")
            ),
        ));
    }
    parse_credentials(&json["Credentials"], "sts")
}

/// Reads `{AccessKeyId, AccessKeySecret, SecurityToken, Expiration}`.
pub fn parse_credentials(c: &Value, provider: &str) -> Result<Expiring, CredentialsError> {
    let field = |k: &str| {
        c.get(k)
            .and_then(Value::as_str)
            .filter(|v| !v.is_empty())
            .map(str::to_string)
            .ok_or_else(|| service_error(provider, format!("the answer has no {k}")))
    };
    let expiration_text = field("Expiration")?;
    let expiration = expiration_text.parse::<Timestamp>().map_err(|_| {
        service_error(
            provider,
            format!("unreadable Expiration {expiration_text:?}"),
        )
    })?;
    Ok(Expiring {
        credentials: Credentials::new(field("AccessKeyId")?, field("AccessKeySecret")?)
            .with_security_token(field("SecurityToken")?),
        expiration,
    })
}

impl Fetch for OidcFetcher {
    fn fetch(&self) -> BoxFuture<'_, Result<Expiring, CredentialsError>> {
        Box::pin(async move {
            let backoff = Backoff {
                base: Duration::from_millis(200),
                max: Duration::from_secs(5),
            };
            let mut attempt = 1;
            loop {
                // Re-read every time: the kubelet rotates the projected token.
                let token = self.read_token().await?;
                match self.call_once(&token).await {
                    Ok(fresh) => return Ok(fresh),
                    Err((e, transient)) if transient && attempt < self.attempts => {
                        tracing::warn!(error = %e, attempt, "STS call failed; retrying");
                        // Half the ceiling at least: STS is a single endpoint every replica shares.
                        let ceiling = backoff.ceiling(attempt - 1);
                        let jitter = ceiling.mul_f64(rand::random::<f64>());
                        tokio::time::sleep(ceiling / 2 + jitter).await;
                        attempt += 1;
                    }
                    Err((e, _)) => return Err(e),
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ambient::lookup_from as env;

    #[test]
    fn sts_endpoint_follows_the_sdk_rules() {
        assert_eq!(sts_endpoint(None, &env(&[])), "https://sts.aliyuncs.com");
        assert_eq!(
            sts_endpoint(None, &env(&[(ENV_STS_REGION, "cn-beijing")])),
            "https://sts.cn-beijing.aliyuncs.com"
        );
        assert_eq!(
            sts_endpoint(
                None,
                &env(&[
                    (ENV_STS_REGION, "cn-beijing"),
                    (ENV_VPC_ENDPOINT_ENABLED, "true")
                ])
            ),
            "https://sts-vpc.cn-beijing.aliyuncs.com"
        );
        assert_eq!(
            sts_endpoint(Some("http://127.0.0.1:9/"), &env(&[(ENV_STS_REGION, "x")])),
            "http://127.0.0.1:9"
        );
        assert_eq!(
            sts_endpoint(None, &env(&[(ENV_STS_ENDPOINT, "sts.example.com")])),
            "https://sts.example.com"
        );
    }

    #[test]
    fn rrsa_is_configured_only_with_all_three_variables() {
        let full = [
            (ENV_ROLE_ARN, "acs:ram::1:role/r"),
            (ENV_OIDC_PROVIDER_ARN, "acs:ram::1:oidc-provider/p"),
            (ENV_OIDC_TOKEN_FILE, "/var/run/token"),
        ];
        let s = OidcSettings::from_env(&env(&full), None).unwrap();
        assert_eq!(s.role_arn, "acs:ram::1:role/r");
        assert_eq!(s.duration_seconds, 3600);
        assert!(OidcSettings::from_env(&env(&full[..2]), None).is_none());
    }

    #[test]
    fn sts_errors_name_sts_with_code_and_request_id() {
        let body = br#"{"RequestId":"R1","Code":"AuthenticationFail.OIDCToken.Invalid","Message":"bad token"}"#;
        let e = parse_assume_role(400, body).unwrap_err().to_string();
        assert!(e.starts_with("sts:"), "{e}");
        assert!(
            e.contains("AuthenticationFail.OIDCToken.Invalid") && e.contains("R1"),
            "{e}"
        );
        let e = parse_assume_role(502, b"<html>bad gateway</html>")
            .unwrap_err()
            .to_string();
        assert!(e.contains("not JSON") && e.contains("502"), "{e}");
    }

    #[test]
    fn sts_credentials_are_parsed_with_expiration() {
        let body = br#"{"RequestId":"R","Credentials":{"AccessKeyId":"STS.id","AccessKeySecret":"sec","SecurityToken":"tok","Expiration":"2030-01-01T00:00:00Z"}}"#;
        let e = parse_assume_role(200, body).unwrap();
        assert_eq!(e.credentials.access_key_id, "STS.id");
        assert_eq!(e.credentials.security_token.as_deref(), Some("tok"));
        assert_eq!(e.expiration.to_string(), "2030-01-01T00:00:00Z");
    }
}
