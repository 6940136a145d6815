//! The service's error answers: `{RequestId, HostId, Code, Message, Recommend}` with the HTTP
//! status and message texts the real ECS endpoint uses.

use serde_json::{Value, json};

/// Everything that can go wrong starting or running the simulator itself.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// Why binding failed.
        source: std::io::Error,
    },
    /// The `--data` file is unreadable or not a JSON array of objects.
    #[error("data file {path}: {message}")]
    Data {
        /// The file.
        path: String,
        /// What is wrong with it.
        message: String,
    },
    /// A `--credential` is not `AK:SECRET[:SECURITYTOKEN]`.
    #[error("invalid credential {0:?}: expected AK:SECRET[:SECURITYTOKEN]")]
    Credential(String),
    /// The request log file cannot be opened.
    #[error("log file {path}: {source}")]
    Log {
        /// The file.
        path: String,
        /// Why it cannot be opened.
        source: std::io::Error,
    },
    /// Writing to stdout or serving failed.
    #[error("i/o: {0}")]
    Io(#[from] std::io::Error),
}

/// One error answer of the simulated service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiFailure {
    /// HTTP status.
    pub status: u16,
    /// `Code`, e.g. `Throttling.User`.
    pub code: String,
    /// `Message`.
    pub message: String,
}

impl ApiFailure {
    /// An answer with any status, code and message.
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_string(),
            message: message.into(),
        }
    }

    /// 400 `MissingParameter` naming the parameter.
    pub fn missing_parameter(name: &str) -> Self {
        Self::new(
            400,
            "MissingParameter",
            format!(
                "The input parameter \"{name}\" that is mandatory for processing this request is not supplied."
            ),
        )
    }

    /// 400 `MissingRegionId`.
    pub fn missing_region() -> Self {
        Self::new(
            400,
            "MissingRegionId",
            "RegionId is mandatory for this action.",
        )
    }

    /// 400 `InvalidParameter` naming the parameter.
    pub fn invalid_parameter(name: &str) -> Self {
        Self::new(
            400,
            "InvalidParameter",
            format!("The specified parameter \"{name}\" is not valid."),
        )
    }

    /// 400 `SignatureDoesNotMatch` quoting the server's string to sign.
    pub fn signature_mismatch(string_to_sign: &str) -> Self {
        Self::new(
            400,
            "SignatureDoesNotMatch",
            format!(
                "Specified signature is not matched with our calculation. server string to sign is:{string_to_sign}"
            ),
        )
    }

    /// 400 `IncompleteSignature`: an `Authorization` header the server cannot read.
    pub fn incomplete_signature(detail: &str) -> Self {
        Self::new(
            400,
            "IncompleteSignature",
            format!("The request signature does not conform to Aliyun standards. {detail}"),
        )
    }

    /// 400 `InvalidSignatureMethod`.
    pub fn invalid_signature_method() -> Self {
        Self::new(
            400,
            "InvalidSignatureMethod",
            "Specified signature method is not valid.",
        )
    }

    /// 404 `InvalidAccessKeyId.NotFound`.
    pub fn access_key_not_found() -> Self {
        Self::new(
            404,
            "InvalidAccessKeyId.NotFound",
            "Specified access key is not found.",
        )
    }

    /// 400 `SignatureNonceUsed`.
    pub fn nonce_used() -> Self {
        Self::new(
            400,
            "SignatureNonceUsed",
            "Specified signature nonce was used already.",
        )
    }

    /// 400 `InvalidTimeStamp.Expired`.
    pub fn timestamp_expired() -> Self {
        Self::new(
            400,
            "InvalidTimeStamp.Expired",
            "Specified time stamp or date value is expired.",
        )
    }

    /// 400 `InvalidTimeStamp.Format`.
    pub fn timestamp_format() -> Self {
        Self::new(
            400,
            "InvalidTimeStamp.Format",
            "Specified time stamp or date value is not well formatted.",
        )
    }

    /// 400 `MissingSecurityToken`: an STS AccessKey without its token.
    pub fn missing_security_token() -> Self {
        Self::new(
            400,
            "MissingSecurityToken",
            "SecurityToken is mandatory for this action.",
        )
    }

    /// 403 `InvalidSecurityToken.Expired`.
    pub fn security_token_expired() -> Self {
        Self::new(
            403,
            "InvalidSecurityToken.Expired",
            "Specified SecurityToken is expired.",
        )
    }

    /// 400 `InvalidSecurityToken.MismatchWithAccessKey`.
    pub fn security_token_mismatch() -> Self {
        Self::new(
            400,
            "InvalidSecurityToken.MismatchWithAccessKey",
            "Specified SecurityToken mismatch with the AccessKey.",
        )
    }

    /// 400 `InvalidSecurityToken.Malformed`.
    pub fn security_token_malformed() -> Self {
        Self::new(
            400,
            "InvalidSecurityToken.Malformed",
            "Specified SecurityToken is malformed.",
        )
    }

    /// 404 `InvalidAction.NotFound`.
    pub fn action_not_found() -> Self {
        Self::new(
            404,
            "InvalidAction.NotFound",
            "Specified api is not found, please check your url and method.",
        )
    }

    /// 400 `InvalidVersion`.
    pub fn invalid_version() -> Self {
        Self::new(
            400,
            "InvalidVersion",
            "Specified parameter Version is not valid.",
        )
    }

    /// 400 `InvalidImagePipelineIdSize.ExceededMaxNumber`.
    pub fn too_many_pipeline_ids() -> Self {
        Self::new(
            400,
            "InvalidImagePipelineIdSize.ExceededMaxNumber",
            "The specified parameter ImagePipelineId.N exceeds the maximum number of 20.",
        )
    }

    /// 400 `InvalidName.Malformed`.
    pub fn name_malformed() -> Self {
        Self::new(
            400,
            "InvalidName.Malformed",
            "Specified image template name is not valid.",
        )
    }

    /// 403 `Invalid.NextToken`.
    pub fn invalid_next_token() -> Self {
        Self::new(
            403,
            "Invalid.NextToken",
            "The specified NextToken is not valid.",
        )
    }

    /// 400 `Throttling.User`.
    pub fn throttling() -> Self {
        Self::new(
            400,
            "Throttling.User",
            "Request was denied due to user flow control.",
        )
    }

    /// 500 `InternalError`.
    pub fn internal_error() -> Self {
        Self::new(
            500,
            "InternalError",
            "The request processing has failed due to some unknown error, exception or failure.",
        )
    }

    /// 413 `RequestEntityTooLarge` for bodies over the limit.
    pub fn body_too_large() -> Self {
        Self::new(
            413,
            "RequestEntityTooLarge",
            "The request body exceeds the maximum allowed size.",
        )
    }

    /// The JSON body of this error.
    pub fn body(&self, request_id: &str, host_id: &str) -> Value {
        json!({
            "RequestId": request_id,
            "HostId": host_id,
            "Code": self.code,
            "Message": self.message,
            "Recommend": format!(
                "https://api.aliyun.com/troubleshoot?q={}&product=Ecs&requestId={request_id}",
                self.code
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_carry_every_documented_field() {
        let body = ApiFailure::throttling().body("RID", "ecs.aliyuncs.com");
        for key in ["RequestId", "HostId", "Code", "Message", "Recommend"] {
            assert!(body.get(key).is_some(), "{key}");
        }
        assert_eq!(body["Code"], "Throttling.User");
    }
}
