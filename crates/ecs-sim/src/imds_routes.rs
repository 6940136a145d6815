//! The HTTP side of the simulated instance metadata service: its routes and handlers, over the
//! state in [`crate::imds`].

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::response::Response;
use axum::routing::{get, put};
use http::{HeaderMap, HeaderValue, StatusCode};
use serde_json::json;

use super::imds::{Counter, MAX_TOKEN_TTL, TTL_HEADER};
use super::request::header;
use super::state::SimState;
use super::sts::{credentials_json, iso8601};
use super::sts_actions::issue_temporary;

/// The metadata routes.
pub fn routes() -> Router<Arc<SimState>> {
    Router::new()
        .route("/latest/api/token", put(token))
        .route("/latest/meta-data/ram/security-credentials", get(role_list))
        .route(
            "/latest/meta-data/ram/security-credentials/",
            get(role_list),
        )
        .route(
            "/latest/meta-data/ram/security-credentials/{role}",
            get(role_credentials),
        )
}

fn text(status: StatusCode, body: &str) -> Response {
    let mut r = Response::new(Body::from(body.to_string()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("text/plain"));
    r
}

async fn token(State(state): State<Arc<SimState>>, headers: HeaderMap) -> Response {
    let imds = &state.imds;
    let refuse = |status: StatusCode, why: &str| {
        imds.bump(Counter::TokensRefused);
        text(status, why)
    };
    if imds.config.v2_disabled {
        return refuse(StatusCode::NOT_FOUND, "Not Found");
    }
    // The service refuses token requests that went through a proxy.
    if headers.contains_key("x-forwarded-for") {
        return refuse(StatusCode::FORBIDDEN, "Forbidden");
    }
    let ttl = header(&headers, TTL_HEADER)
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|t| (1..=MAX_TOKEN_TTL).contains(t));
    let Some(ttl) = ttl else {
        return refuse(StatusCode::BAD_REQUEST, "Bad Request");
    };
    imds.bump(Counter::TokensIssued);
    text(StatusCode::OK, &imds.issue_token(Duration::from_secs(ttl)))
}

async fn role_list(State(state): State<Arc<SimState>>, headers: HeaderMap) -> Response {
    let imds = &state.imds;
    if !imds.authorize(&headers) {
        return text(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    imds.bump(Counter::RoleLists);
    if imds.config.role_name.is_empty() {
        return text(StatusCode::NOT_FOUND, "Not Found");
    }
    text(StatusCode::OK, &imds.config.role_name)
}

async fn role_credentials(
    State(state): State<Arc<SimState>>,
    Path(role): Path<String>,
    headers: HeaderMap,
) -> Response {
    let imds = &state.imds;
    if !imds.authorize(&headers) {
        return text(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    if imds.config.role_name.is_empty() || role != imds.config.role_name {
        return text(StatusCode::NOT_FOUND, "Not Found");
    }
    let now = jiff::Timestamp::now();
    let issued = issue_temporary(&state, now, imds.config.lifetime);
    imds.bump(Counter::CredentialsIssued);
    let mut body = credentials_json(&issued);
    body["LastUpdated"] = json!(iso8601(now));
    body["Code"] = json!("Success");
    let mut r = Response::new(Body::from(body.to_string()));
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("text/plain"));
    r
}
