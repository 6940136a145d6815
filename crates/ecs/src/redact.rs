//! Keeping credentials out of error texts.
//!
//! The service quotes its string to sign back in a `SignatureDoesNotMatch` message, and that
//! string carries the `SecurityToken` of STS credentials. The client therefore scrubs every
//! error text of the credentials it signed with before the error leaves the ECS boundary, so
//! no status, Event, log line or CLI message can show them.

use super::credentials::Credentials;
use super::error::EcsError;
use super::sign::percent_encode;

/// `text` with every occurrence of `secrets` replaced by `<redacted>`: raw, and percent-encoded
/// once or twice as they appear in a string to sign.
pub fn redact(text: &str, secrets: &[&str]) -> String {
    let mut forms: Vec<String> = Vec::new();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        let once = percent_encode(secret);
        let twice = percent_encode(&once);
        forms.extend([secret.to_string(), once, twice]);
    }
    // Longest first, so that no shorter form cuts a longer one in half.
    forms.sort_by_key(|f| std::cmp::Reverse(f.len()));
    forms.dedup();
    forms
        .iter()
        .fold(text.to_string(), |t, f| t.replace(f.as_str(), "<redacted>"))
}

impl EcsError {
    /// Removes the secret and the STS token of `credentials` from every text of the error.
    pub fn redact(&mut self, credentials: &Credentials) {
        let secrets: Vec<&str> = std::iter::once(credentials.access_key_secret.as_str())
            .chain(credentials.security_token.as_deref())
            .collect();
        let scrub = |t: &mut String| *t = redact(t, &secrets);
        match self {
            EcsError::Api(api) => {
                scrub(&mut api.message);
                if let Some(r) = api.recommend.as_mut() {
                    scrub(r);
                }
                if let Some(h) = api.host_id.as_mut() {
                    scrub(h);
                }
            }
            EcsError::Transport { message, .. } => scrub(message),
            EcsError::Decode { snippet, .. } => scrub(snippet),
            EcsError::Config(m) | EcsError::Pagination(m) => scrub(m),
            EcsError::Filter(_) | EcsError::Credentials(_) | EcsError::BodyTooLarge { .. } => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ApiError;

    #[test]
    fn secrets_are_redacted_raw_and_percent_encoded() {
        let creds = Credentials::new("LTAIid", "s3/cr+et").with_security_token("tok=en/1");
        let message = "to sign:POST&%2F&AccessKeyId%3DLTAIid%26SecurityToken%3Dtok%253Den%252F1 \
                       and tok=en/1 and s3/cr+et and s3%2Fcr%2Bet";
        let redacted = redact(message, &["s3/cr+et", "tok=en/1"]);
        assert!(!redacted.contains("tok"), "{redacted}");
        assert!(!redacted.contains("s3"), "{redacted}");
        assert!(redacted.contains("AccessKeyId%3DLTAIid"), "{redacted}");
        let mut error = EcsError::Api(ApiError {
            status: 400,
            code: "SignatureDoesNotMatch".into(),
            message: message.into(),
            request_id: Some("RID".into()),
            host_id: None,
            recommend: None,
        });
        error.redact(&creds);
        let shown = error.to_string();
        assert!(!shown.contains("tok") && !shown.contains("s3"), "{shown}");
        assert!(shown.contains("SignatureDoesNotMatch") && shown.contains("RID"));
    }
}
