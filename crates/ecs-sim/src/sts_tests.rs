//! Unit tests of the simulated STS `AssumeRoleWithOIDC`.

use std::collections::BTreeMap;
use std::time::Duration;

use base64::Engine as _;
use jiff::Timestamp;
use serde_json::json;

use super::state::{SimConfig, SimState};
use super::sts::*;
use super::sts_actions::*;

const ROLE: &str = "acs:ram::1234567890123456:role/imagepipeline-reader";
const PROVIDER: &str = "acs:ram::1234567890123456:oidc-provider/ack-rrsa-c1";

fn state(sts: StsConfig) -> SimState {
    SimState::new(&SimConfig {
        sts,
        ..SimConfig::default()
    })
    .expect("state")
}

fn params(extra: &[(&str, &str)]) -> BTreeMap<String, String> {
    let mut p: BTreeMap<String, String> = [
        ("RoleArn", ROLE),
        ("OIDCProviderArn", PROVIDER),
        ("OIDCToken", "token-1"),
        ("RoleSessionName", "operator"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in extra {
        if v.is_empty() {
            p.remove(*k);
        } else {
            p.insert(k.to_string(), v.to_string());
        }
    }
    p
}

fn code(state: &SimState, extra: &[(&str, &str)]) -> String {
    assume_role_with_oidc(state, &params(extra))
        .map(|_| "OK".to_string())
        .unwrap_or_else(|e| e.code)
}

#[test]
fn issued_credentials_are_registered_with_their_token_and_expiry() {
    let s = state(StsConfig::default());
    let body = assume_role_with_oidc(&s, &params(&[("DurationSeconds", "900")])).expect("ok");
    let creds = &body["Credentials"];
    let id = creds["AccessKeyId"].as_str().expect("id");
    assert!(id.starts_with("STS."), "{id}");
    let registered = s.credentials.get(id).expect("registered");
    assert_eq!(
        registered.security_token.as_deref(),
        creds["SecurityToken"].as_str()
    );
    let expiration: Timestamp = creds["Expiration"]
        .as_str()
        .expect("exp")
        .parse()
        .expect("ts");
    assert_eq!(registered.expires_at, Some(expiration));
    let lifetime = expiration.as_second() - Timestamp::now().as_second();
    assert!((899..=900).contains(&lifetime), "{lifetime}");
    assert!(creds["Expiration"].as_str().expect("exp").ends_with('Z'));
    assert_eq!(
        body["AssumedRoleUser"]["Arn"],
        "acs:ram::1234567890123456:role/imagepipeline-reader/operator"
    );
    assert_eq!(s.sts.tokens(), ["token-1"]);
}

#[test]
fn a_configured_lifetime_overrides_duration_seconds() {
    let s = state(StsConfig {
        lifetime: Some(Duration::from_secs(5)),
        ..StsConfig::default()
    });
    let body = assume_role_with_oidc(&s, &params(&[])).expect("ok");
    let exp: Timestamp = body["Credentials"]["Expiration"]
        .as_str()
        .expect("exp")
        .parse()
        .expect("ts");
    assert!(exp.as_second() - Timestamp::now().as_second() <= 5);
}

#[test]
fn missing_and_invalid_parameters_get_the_services_codes() {
    let s = state(StsConfig::default());
    assert_eq!(code(&s, &[("RoleArn", "")]), "MissingRoleArn");
    assert_eq!(
        code(&s, &[("OIDCProviderArn", "")]),
        "MissingOIDCProviderArn"
    );
    assert_eq!(code(&s, &[("OIDCToken", "")]), "MissingOIDCToken");
    assert_eq!(
        code(&s, &[("OIDCToken", "  ")]),
        "AuthenticationFail.OIDCToken.Invalid"
    );
    assert_eq!(
        code(&s, &[("RoleArn", "role/x")]),
        "InvalidParameter.RoleArn"
    );
    assert_eq!(
        code(&s, &[("RoleSessionName", "a*b")]),
        "InvalidParameter.RoleSessionName"
    );
    for bad in ["899", "43201", "ten", "-1"] {
        assert_eq!(
            code(&s, &[("DurationSeconds", bad)]),
            "InvalidParameter.DurationSeconds",
            "{bad}"
        );
    }
    assert_eq!(code(&s, &[("DurationSeconds", "43200")]), "OK");
}

#[test]
fn only_configured_roles_providers_and_tokens_are_accepted() {
    let s = state(StsConfig {
        role_arns: vec![ROLE.into()],
        oidc_provider_arns: vec![PROVIDER.into()],
        oidc_token: Some("token-1".into()),
        lifetime: None,
    });
    assert_eq!(code(&s, &[]), "OK");
    assert_eq!(
        code(&s, &[("RoleArn", "acs:ram::1234567890123456:role/other")]),
        "EntityNotExist.Role"
    );
    assert_eq!(
        code(&s, &[("OIDCProviderArn", "acs:ram::1:oidc-provider/x")]),
        "AuthenticationFail.NoPermission"
    );
    assert_eq!(
        code(&s, &[("OIDCToken", "token-2")]),
        "AuthenticationFail.OIDCToken.InvalidSignature"
    );
    assert_eq!(s.sts.tokens(), ["token-1", "token-1", "token-1", "token-2"]);
    assert_eq!(s.sts.calls(), 4);
}

#[test]
fn jwt_tokens_are_described_in_the_answer() {
    let claims = json!({"sub": "system:serviceaccount:ns:sa", "iss": "https://oidc", "aud": ["sts.aliyuncs.com"], "iat": 1_700_000_000, "exp": 1_700_003_600});
    let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string());
    let token = format!("eyJhbGciOiJSUzI1NiJ9.{payload}.sig");
    let s = state(StsConfig::default());
    let body = assume_role_with_oidc(&s, &params(&[("OIDCToken", &token)])).expect("ok");
    assert_eq!(
        body["OIDCTokenInfo"]["Subject"],
        "system:serviceaccount:ns:sa"
    );
    assert_eq!(body["OIDCTokenInfo"]["ClientIds"], "sts.aliyuncs.com");
    assert_eq!(
        body["OIDCTokenInfo"]["IssuanceTime"],
        "2023-11-14T22:13:20Z"
    );
    let opaque = assume_role_with_oidc(&s, &params(&[])).expect("ok");
    assert!(opaque.get("OIDCTokenInfo").is_none());
}

#[test]
fn sts_fail_every_answers_service_unavailable() {
    let s = state(StsConfig::default());
    s.set_faults(crate::Faults {
        sts_fail_every: 2,
        ..Default::default()
    });
    assert_eq!(code(&s, &[]), "OK");
    assert_eq!(code(&s, &[]), "ServiceUnavailable");
    let e = assume_role_with_oidc(&s, &params(&[])).map(|_| ());
    assert_eq!(e, Ok(()));
}

#[test]
fn fingerprints_are_stable_and_short() {
    assert_eq!(token_fingerprint("a"), token_fingerprint("a"));
    assert_ne!(token_fingerprint("a"), token_fingerprint("b"));
    assert_eq!(token_fingerprint("a").len(), "sha256:".len() + 16);
}
