//! Unsigned admin endpoints under `/_sim/` so tests and demos can steer a running simulator:
//!
//! - `PUT /_sim/items` (JSON array) replaces the pipelines, `GET /_sim/items` lists them;
//! - `GET /_sim/stats`: calls in total, by action and by answered code; STS calls and the
//!   fingerprints of the OIDC tokens received; the metadata service's counters;
//! - `PUT /_sim/faults` / `GET /_sim/faults`: the injected faults (camelCase JSON).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::response::Response;
use axum::routing::get;
use http::{HeaderValue, StatusCode};
use serde_json::{Value, json};

use super::faults::Faults;
use super::state::SimState;
use super::sts::token_fingerprint;

/// Largest body the admin endpoints read (axum's default is 2 MB): a generated pipeline is
/// about 1 KiB of JSON, so this takes a data set of well over 100,000 pipelines in one
/// `PUT /_sim/items`. Larger bodies answer 413.
pub const ADMIN_MAX_BODY: usize = 512 * 1024 * 1024;

/// The admin routes.
pub fn routes() -> Router<Arc<SimState>> {
    Router::new()
        .route("/_sim/items", get(get_items).put(put_items))
        .route("/_sim/stats", get(stats))
        .route("/_sim/faults", get(get_faults).put(put_faults))
        .layer(DefaultBodyLimit::max(ADMIN_MAX_BODY))
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    let mut r = Response::new(Body::from(serde_json::to_vec(body).unwrap_or_default()));
    *r.status_mut() = status;
    r.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/json"));
    r
}

fn bad_request(message: String) -> Response {
    json_response(StatusCode::BAD_REQUEST, &json!({ "error": message }))
}

async fn get_items(State(state): State<Arc<SimState>>) -> Response {
    let items = state.store.snapshot();
    json_response(StatusCode::OK, &Value::Array(items.as_ref().clone()))
}

async fn put_items(State(state): State<Arc<SimState>>, body: Bytes) -> Response {
    match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Array(items)) if items.iter().all(Value::is_object) => {
            let count = items.len();
            state.store.set(items);
            json_response(StatusCode::OK, &json!({ "items": count }))
        }
        Ok(_) => bad_request("expected a JSON array of pipeline objects".into()),
        Err(e) => bad_request(format!("invalid JSON: {e}")),
    }
}

async fn stats(State(state): State<Arc<SimState>>) -> Response {
    let mut by_action: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_code: BTreeMap<String, u64> = BTreeMap::new();
    for entry in state.log.entries() {
        let action = entry.action.unwrap_or_default();
        *by_action.entry(action).or_default() += 1;
        let code = entry.code.unwrap_or_else(|| "OK".to_string());
        *by_code.entry(code).or_default() += 1;
    }
    json_response(
        StatusCode::OK,
        &json!({
            "calls": state.calls.load(Ordering::SeqCst),
            "byAction": by_action,
            "byCode": by_code,
            "items": state.store.snapshot().len(),
            "sts": {
                "calls": state.sts.calls(),
                "oidcTokens": state.sts.tokens().iter().map(|t| token_fingerprint(t)).collect::<Vec<_>>(),
            },
            "imds": state.imds.stats(),
        }),
    )
}

async fn get_faults(State(state): State<Arc<SimState>>) -> Response {
    json_response(
        StatusCode::OK,
        &serde_json::to_value(state.faults()).unwrap_or_default(),
    )
}

async fn put_faults(State(state): State<Arc<SimState>>, body: Bytes) -> Response {
    match serde_json::from_slice::<Faults>(&body) {
        Ok(faults) => {
            state.set_faults(faults.clone());
            json_response(
                StatusCode::OK,
                &serde_json::to_value(faults).unwrap_or_default(),
            )
        }
        Err(e) => bad_request(format!("invalid faults: {e}")),
    }
}
