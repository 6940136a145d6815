//! The simulated STS's actions over the simulator's state: `AssumeRoleWithOIDC`, and issuing
//! temporary credentials (also for the metadata service).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use base64::Engine as _;
use jiff::Timestamp;
use serde_json::{Value, json};

use super::credential::Credential;
use super::errors::ApiFailure;
use super::state::SimState;
use super::sts::{
    DEFAULT_DURATION_SECONDS, MAX_DURATION_SECONDS, MIN_DURATION_SECONDS, credentials_json,
    iso8601, random_alnum,
};

/// Issues temporary credentials living `lifetime` (whole seconds, at least 1) from `now` and
/// registers them with the simulator.
pub fn issue_temporary(state: &SimState, now: Timestamp, lifetime: Duration) -> Credential {
    let seconds = i64::try_from(lifetime.as_secs().max(1)).unwrap_or(i64::MAX / 2);
    let expires_at =
        Timestamp::from_second(now.as_second().saturating_add(seconds)).unwrap_or(Timestamp::MAX);
    let credential = Credential::new(format!("STS.NU{}", random_alnum(22)), random_alnum(44))
        .with_security_token(format!("CAIS{}", random_alnum(300)))
        .expiring_at(expires_at);
    state.credentials.add(credential.clone());
    credential
}

fn missing(code: &str, name: &str) -> ApiFailure {
    ApiFailure::new(400, code, format!("{name} is mandatory for this action."))
}

fn service_unavailable() -> ApiFailure {
    ApiFailure::new(
        503,
        "ServiceUnavailable",
        "The request has failed due to a temporary failure of the server.",
    )
}

/// `acs:ram::<account>:role/<name>` split into account and role name.
fn parse_role_arn(arn: &str) -> Option<(&str, &str)> {
    let rest = arn.strip_prefix("acs:ram::")?;
    let (account, role) = rest.split_once(":role/")?;
    let valid = !account.is_empty()
        && account.chars().all(|c| c.is_ascii_digit())
        && !role.is_empty()
        && !role.contains(char::is_whitespace);
    valid.then_some((account, role))
}

fn valid_session_name(name: &str) -> bool {
    (2..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '@' | '_' | '-'))
}

fn duration_seconds(params: &BTreeMap<String, String>) -> Result<u64, ApiFailure> {
    let Some(raw) = params.get("DurationSeconds").filter(|v| !v.is_empty()) else {
        return Ok(DEFAULT_DURATION_SECONDS);
    };
    raw.trim()
        .parse::<u64>()
        .ok()
        .filter(|d| (MIN_DURATION_SECONDS..=MAX_DURATION_SECONDS).contains(d))
        .ok_or_else(|| {
            ApiFailure::new(
                400,
                "InvalidParameter.DurationSeconds",
                "The Min/Max value of DurationSeconds is 15min/12hr.",
            )
        })
}

/// The claims of a JWT, when the token is one (the simulator also accepts opaque tokens).
fn jwt_claims(token: &str) -> Option<Value> {
    let mut parts = token.split('.');
    let (_, payload, _) = (parts.next()?, parts.next()?, parts.next()?);
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice::<Value>(&bytes)
        .ok()
        .filter(Value::is_object)
}

fn token_info(claims: &Value) -> Value {
    let text = |k: &str| claims.get(k).and_then(Value::as_str).unwrap_or_default();
    let client_ids = match claims.get("aud") {
        Some(Value::String(a)) => a.clone(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(","),
        _ => String::new(),
    };
    let time = |k: &str| {
        claims
            .get(k)
            .and_then(Value::as_i64)
            .and_then(|s| Timestamp::from_second(s).ok())
            .map(iso8601)
            .unwrap_or_default()
    };
    json!({
        "Subject": text("sub"),
        "Issuer": text("iss"),
        "ClientIds": client_ids,
        "IssuanceTime": time("iat"),
        "ExpirationTime": time("exp"),
    })
}

/// Answers `AssumeRoleWithOIDC` from the query and form parameters.
pub fn assume_role_with_oidc(
    state: &SimState,
    params: &BTreeMap<String, String>,
) -> Result<Value, ApiFailure> {
    let sts = &state.sts;
    let call = sts.calls.fetch_add(1, Ordering::SeqCst).saturating_add(1);
    if let Some(token) = params.get("OIDCToken") {
        sts.remember(token);
    }
    let every = state.faults().sts_fail_every;
    if every > 0 && call % every == 0 {
        return Err(service_unavailable());
    }
    let config = &sts.config;
    let get = |k: &str| params.get(k).map(String::as_str);
    let role_arn = get("RoleArn")
        .filter(|v| !v.is_empty())
        .ok_or_else(|| missing("MissingRoleArn", "RoleArn"))?;
    let provider_arn = get("OIDCProviderArn")
        .filter(|v| !v.is_empty())
        .ok_or_else(|| missing("MissingOIDCProviderArn", "OIDCProviderArn"))?;
    let token = get("OIDCToken").ok_or_else(|| missing("MissingOIDCToken", "OIDCToken"))?;
    let (account, role_name) = parse_role_arn(role_arn).ok_or_else(|| {
        ApiFailure::new(
            400,
            "InvalidParameter.RoleArn",
            "The parameter RoleArn is wrongly formed.",
        )
    })?;
    let session = match get("RoleSessionName").filter(|v| !v.is_empty()) {
        Some(name) if !valid_session_name(name) => {
            return Err(ApiFailure::new(
                400,
                "InvalidParameter.RoleSessionName",
                "The parameter RoleSessionName is wrongly formed.",
            ));
        }
        Some(name) => name.to_string(),
        None => format!("oidc-{}", random_alnum(8)),
    };
    let duration = duration_seconds(params)?;
    if token.trim().is_empty() {
        return Err(ApiFailure::new(
            401,
            "AuthenticationFail.OIDCToken.Invalid",
            "The OIDCToken can not empty.",
        ));
    }
    if !config.oidc_provider_arns.is_empty()
        && !config.oidc_provider_arns.iter().any(|a| a == provider_arn)
    {
        return Err(ApiFailure::new(
            401,
            "AuthenticationFail.NoPermission",
            "No such OIDC Provider registered.",
        ));
    }
    if config
        .oidc_token
        .as_deref()
        .is_some_and(|want| want != token)
    {
        return Err(ApiFailure::new(
            401,
            "AuthenticationFail.OIDCToken.InvalidSignature",
            "OIDC token validate failed: invalid signature.",
        ));
    }
    if !config.role_arns.is_empty() && !config.role_arns.iter().any(|a| a == role_arn) {
        return Err(ApiFailure::new(
            404,
            "EntityNotExist.Role",
            format!("The specified Role not exists: {role_arn}"),
        ));
    }
    let lifetime = config.lifetime.unwrap_or(Duration::from_secs(duration));
    let issued = issue_temporary(state, Timestamp::now(), lifetime);
    let mut body = json!({
        "AssumedRoleUser": {
            "Arn": format!("acs:ram::{account}:role/{}/{session}", role_name.to_ascii_lowercase()),
            "AssumedRoleId": format!("3{}:{session}", rand::random_range(10_u64.pow(16)..10_u64.pow(17))),
        },
        "Credentials": credentials_json(&issued),
    });
    if let Some(claims) = jwt_claims(token) {
        body["OIDCTokenInfo"] = token_info(&claims);
    }
    if let Some(source) = get("SourceIdentity").filter(|v| !v.is_empty()) {
        body["SourceIdentity"] = json!(source);
    }
    Ok(body)
}
