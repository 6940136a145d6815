//! The one error type of the ECS boundary.

use super::credentials::CredentialsError;
use super::filter::FilterError;

/// An error answered by the service: `{RequestId, HostId, Code, Message, Recommend}` plus the
/// HTTP status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status code of the answer.
    pub status: u16,
    /// `Code`, e.g. `Throttling.User`.
    pub code: String,
    /// `Message`.
    pub message: String,
    /// `RequestId`, to quote to Alibaba Cloud support.
    pub request_id: Option<String>,
    /// `HostId`.
    pub host_id: Option<String>,
    /// `Recommend`: a diagnosis link.
    pub recommend: Option<String>,
}

/// Everything that can go wrong listing image pipelines.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EcsError {
    /// The filter was refused before any call.
    #[error("invalid filter: {0}")]
    Filter(#[from] FilterError),
    /// Credentials could not be obtained.
    #[error("credentials: {0}")]
    Credentials(#[from] CredentialsError),
    /// The service answered with an error.
    #[error("{} (HTTP {}): {}{}", .0.code, .0.status, .0.message,
        .0.request_id.as_deref().map(|r| format!(" [RequestId {r}]")).unwrap_or_default())]
    Api(ApiError),
    /// No answer: connection refused or reset, DNS, TLS, or a timeout.
    #[error("transport: {message}")]
    Transport {
        /// What failed, e.g. `timed out reading the response`.
        message: String,
        /// Whether it was a timeout.
        timeout: bool,
    },
    /// An answer that is not a JSON object, with the first bytes of the body.
    #[error("undecodable response (HTTP {status}): {snippet:?}")]
    Decode {
        /// HTTP status of the answer.
        status: u16,
        /// The first bytes of the body, lossily decoded.
        snippet: String,
    },
    /// An answer larger than the client accepts.
    #[error("response body exceeds {limit} bytes")]
    BodyTooLarge {
        /// The limit in bytes.
        limit: usize,
    },
    /// The endpoint URL is unusable, or the HTTP client could not be built.
    #[error("configuration: {0}")]
    Config(String),
    /// The service paginated nonsensically: a `NextToken` came back twice, or the listing
    /// exceeded the client's page limit.
    #[error("pagination: {0}")]
    Pagination(String),
}

impl EcsError {
    /// Whether retrying the same call later may succeed: throttling, service unavailability,
    /// internal errors, any 5xx, timeouts, connection errors and garbled bodies. Signature,
    /// credential and parameter errors are never retried.
    pub fn is_transient(&self) -> bool {
        match self {
            EcsError::Api(e) => {
                e.status >= 500
                    || e.code.starts_with("Throttling")
                    || e.code == "ServiceUnavailable"
                    || e.code == "InternalError"
                    || e.code.starts_with("ServiceUnavailable")
            }
            EcsError::Transport { .. } | EcsError::Decode { .. } => true,
            EcsError::Filter(_)
            | EcsError::Credentials(_)
            | EcsError::BodyTooLarge { .. }
            | EcsError::Config(_)
            | EcsError::Pagination(_) => false,
        }
    }

    /// Whether the service throttled the call.
    pub fn is_throttling(&self) -> bool {
        matches!(self, EcsError::Api(e) if e.code.starts_with("Throttling"))
    }

    /// The API error code, or a stable name of the local failure (`Transport`, `Decode`, ...).
    pub fn code(&self) -> String {
        match self {
            EcsError::Api(e) => e.code.clone(),
            other => other.metric_label().to_string(),
        }
    }

    /// The `RequestId` of a service error.
    pub fn request_id(&self) -> Option<&str> {
        match self {
            EcsError::Api(e) => e.request_id.as_deref(),
            _ => None,
        }
    }

    /// A low-cardinality name for metrics and event reasons.
    pub fn metric_label(&self) -> &'static str {
        match self {
            EcsError::Filter(_) => "InvalidFilter",
            EcsError::Credentials(_) => "CredentialsError",
            EcsError::Api(e) if e.code.starts_with("Throttling") => "Throttled",
            EcsError::Api(_) => "ApiError",
            EcsError::Transport { timeout: true, .. } => "Timeout",
            EcsError::Transport { .. } => "Transport",
            EcsError::Decode { .. } => "Decode",
            EcsError::BodyTooLarge { .. } => "BodyTooLarge",
            EcsError::Config(_) => "Config",
            EcsError::Pagination(_) => "Pagination",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16, code: &str) -> EcsError {
        EcsError::Api(ApiError {
            status,
            code: code.into(),
            message: "m".into(),
            request_id: Some("RID".into()),
            host_id: None,
            recommend: None,
        })
    }

    #[test]
    fn transient_errors_are_the_documented_ones() {
        for e in [
            api(400, "Throttling.User"),
            api(503, "ServiceUnavailable"),
            api(500, "InternalError"),
            api(502, "Whatever"),
            EcsError::Transport {
                message: "t".into(),
                timeout: true,
            },
        ] {
            assert!(e.is_transient(), "{e}");
        }
        for e in [
            api(400, "SignatureDoesNotMatch"),
            api(404, "InvalidAccessKeyId.NotFound"),
            api(400, "MissingRegionId"),
            api(403, "Invalid.NextToken"),
        ] {
            assert!(!e.is_transient(), "{e}");
        }
    }

    #[test]
    fn api_errors_display_code_status_and_request_id() {
        assert_eq!(
            api(400, "Throttling.User").to_string(),
            "Throttling.User (HTTP 400): m [RequestId RID]"
        );
    }
}
