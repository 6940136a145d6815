//! Request routing. Admin endpoints live under `/_sim/`; everything else is an RPC call,
//! dispatched by `Action` (or `x-acs-action`) through [`RPC_ROUTES`] (ECS and STS); the
//! metadata service is a set of path routes of its own (`imds`).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use futures::StreamExt as _;
use http::{HeaderValue, StatusCode};
use serde_json::Value;

use super::api::{DESCRIBE_IMAGE_PIPELINES, ECS_API_VERSION};

use super::errors::ApiFailure;
use super::faults::{Fault, HTML_ERROR_PAGE, HUGE_BODY_BYTES, MalformedKind, garble, odd_types};
use super::format::Format;
use super::log::{LoggedRequest, loggable};
use super::request::RpcRequest;
use super::state::SimState;
use super::{admin, auth, imds_routes, pipelines, sts, sts_actions, v3};

/// Largest request body read; larger ones answer 413.
pub const MAX_BODY: usize = 1024 * 1024;

/// An action handler: parameters in, the answer's body (without `RequestId`) out.
pub type ActionHandler = fn(&SimState, &BTreeMap<String, String>) -> Result<Value, ApiFailure>;

/// One RPC action the simulator answers.
#[derive(Debug, Clone, Copy)]
pub struct RpcRoute {
    /// `Action`.
    pub action: &'static str,
    /// The API version the action belongs to.
    pub version: &'static str,
    /// Whether the call must be signed (STS `AssumeRoleWithOIDC` is not).
    pub signed: bool,
    /// The handler.
    pub handler: ActionHandler,
}

/// Every RPC action answered.
pub const RPC_ROUTES: &[RpcRoute] = &[
    RpcRoute {
        action: DESCRIBE_IMAGE_PIPELINES,
        version: ECS_API_VERSION,
        signed: true,
        handler: describe_image_pipelines,
    },
    RpcRoute {
        action: sts::ASSUME_ROLE_WITH_OIDC,
        version: sts::STS_API_VERSION,
        signed: false,
        handler: sts_actions::assume_role_with_oidc,
    },
];

fn describe_image_pipelines(
    state: &SimState,
    params: &BTreeMap<String, String>,
) -> Result<Value, ApiFailure> {
    pipelines::describe(&state.store, &state.tokens, params)
}

/// The whole application.
pub fn build(state: Arc<SimState>) -> Router {
    admin::routes()
        .merge(imds_routes::routes())
        .fallback(rpc_entry)
        .with_state(state)
}

async fn rpc_entry(State(state): State<Arc<SimState>>, req: Request) -> Response {
    let call = state.calls.fetch_add(1, Ordering::SeqCst).saturating_add(1);
    let request_id = new_request_id();
    let (parts, body) = req.into_parts();
    let host = parts
        .headers
        .get("host")
        .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned())
        .unwrap_or_else(|| "ecs.aliyuncs.com".to_string());
    let body = axum::body::to_bytes(body, MAX_BODY).await;
    let too_large = body.is_err();
    let rpc = RpcRequest::new(
        parts.method,
        parts.uri.path(),
        parts.uri.query(),
        parts.headers,
        body.unwrap_or_default(),
    );
    let params = rpc.params();
    let is_v3 = v3::is_v3(&rpc);
    let action = if is_v3 {
        rpc.header("x-acs-action")
    } else {
        params.get("Action").cloned()
    };
    let format = if is_v3 {
        Format::Json
    } else {
        Format::from_param(params.get("Format").map(String::as_str))
    };
    let faults = state.faults();
    let token_call = params.get("NextToken").filter(|t| !t.is_empty()).map(|_| {
        state
            .token_calls
            .fetch_add(1, Ordering::SeqCst)
            .saturating_add(1)
    });
    let delay = faults.delay_ms(call);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let fault = faults.decide(call, token_call);
    let outcome = match fault {
        _ if too_large => Err(ApiFailure::body_too_large()),
        Fault::Throttle { .. } => Err(ApiFailure::throttling()),
        Fault::Fail => Err(ApiFailure::internal_error()),
        Fault::InvalidToken => Err(ApiFailure::invalid_next_token()),
        Fault::Malformed(_) | Fault::None => {
            handle(&state, &rpc, &params, is_v3, action.as_deref())
        }
    };
    let root = format!("{}Response", action.as_deref().unwrap_or_default());
    let mut answer = match &outcome {
        Ok(body) => {
            let mut body = body.clone();
            if let Some(obj) = body.as_object_mut() {
                obj.insert("RequestId".into(), Value::String(request_id.clone()));
            }
            Answer::new(200, None, format.render(&root, &body), format)
        }
        Err(f) => Answer::new(
            f.status,
            Some(f.code.clone()),
            format.render("Error", &f.body(&request_id, &host)),
            format,
        ),
    };
    if let (Fault::Malformed(kind), Ok(page)) = (fault, &outcome) {
        answer = malformed(
            &state,
            kind,
            answer,
            page,
            &request_id,
            &host,
            &root,
            format,
        );
    }
    state.log.record(LoggedRequest {
        time: jiff::Timestamp::now().to_string(),
        method: rpc.method.to_string(),
        action,
        parameters: loggable(&params),
        status: answer.status,
        code: answer.code.clone(),
        request_id: request_id.clone(),
    });
    let mut response = Response::new(answer.body);
    *response.status_mut() = StatusCode::from_u16(answer.status).unwrap_or(StatusCode::BAD_REQUEST);
    let headers = response.headers_mut();
    headers.insert(
        "content-type",
        HeaderValue::from_static(answer.content_type),
    );
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        headers.insert("x-acs-request-id", v);
    }
    if let (Fault::Throttle { retry_after: true }, Some(ms)) = (fault, faults.retry_after_ms) {
        if !too_large {
            headers.insert("x-acs-retry-after", HeaderValue::from(ms));
        }
    }
    response
}

/// One answer before it becomes a response.
struct Answer {
    status: u16,
    code: Option<String>,
    body: Body,
    content_type: &'static str,
}

impl Answer {
    fn new(status: u16, code: Option<String>, bytes: Vec<u8>, format: Format) -> Self {
        Self {
            status,
            code,
            body: Body::from(bytes),
            content_type: format.content_type(),
        }
    }
}

/// Replaces the successful `answer` (whose body was `page`) with a malformed one of `kind`.
#[allow(clippy::too_many_arguments)]
fn malformed(
    state: &Arc<SimState>,
    kind: MalformedKind,
    answer: Answer,
    page: &Value,
    request_id: &str,
    host: &str,
    root: &str,
    format: Format,
) -> Answer {
    let with_id = |mut page: Value| {
        if let Some(obj) = page.as_object_mut() {
            obj.insert("RequestId".into(), Value::String(request_id.to_string()));
        }
        page
    };
    match kind {
        MalformedKind::Truncated => {
            let bytes = garble(&format.render(root, &with_id(page.clone())));
            Answer {
                body: Body::from(bytes),
                ..answer
            }
        }
        MalformedKind::Html => Answer {
            status: 502,
            code: None,
            body: Body::from(HTML_ERROR_PAGE),
            content_type: "text/html",
        },
        MalformedKind::Empty => Answer::new(200, None, Vec::new(), format),
        MalformedKind::WrongTypes => {
            let bytes = format.render(root, &with_id(odd_types(page)));
            Answer {
                body: Body::from(bytes),
                ..answer
            }
        }
        MalformedKind::Error200 => {
            let failure = ApiFailure::internal_error();
            let body = failure.body(request_id, host);
            Answer::new(
                200,
                Some(failure.code),
                format.render("Error", &body),
                format,
            )
        }
        MalformedKind::Huge => Answer {
            status: 200,
            code: None,
            body: huge_body(Arc::clone(state), request_id),
            content_type: "application/json;charset=utf-8",
        },
    }
}

/// A JSON page padded to [`HUGE_BODY_BYTES`] with spaces, streamed in 64 KiB chunks that are
/// counted in `huge_bytes_sent` as the connection takes them.
fn huge_body(state: Arc<SimState>, request_id: &str) -> Body {
    const CHUNK: usize = 64 * 1024;
    static SPACES: [u8; CHUNK] = [b' '; CHUNK];
    let head = format!(r#"{{"RequestId":"{request_id}","ImagePipeline":{{"ImagePipelineSet":["#);
    let tail = "]}}";
    let padding = HUGE_BODY_BYTES.saturating_sub((head.len() + tail.len()) as u64);
    let full = padding / CHUNK as u64;
    let rest = usize::try_from(padding % CHUNK as u64).unwrap_or(0);
    let chunks = std::iter::once(bytes::Bytes::from(head))
        .chain((0..full).map(|_| bytes::Bytes::from_static(&SPACES)))
        .chain(std::iter::once(bytes::Bytes::from_static(&SPACES[..rest])))
        .chain(std::iter::once(bytes::Bytes::from_static(tail.as_bytes())));
    let counted = futures::stream::iter(chunks).map(move |chunk| {
        state
            .huge_bytes_sent
            .fetch_add(chunk.len() as u64, Ordering::SeqCst);
        Ok::<_, std::convert::Infallible>(chunk)
    });
    Body::from_stream(counted)
}

/// Routing, version check, authentication and the action itself.
fn handle(
    state: &SimState,
    rpc: &RpcRequest,
    params: &BTreeMap<String, String>,
    is_v3: bool,
    action: Option<&str>,
) -> Result<Value, ApiFailure> {
    let action = action
        .filter(|a| !a.is_empty())
        .ok_or_else(|| ApiFailure::missing_parameter("Action"))?;
    let route = RPC_ROUTES
        .iter()
        .find(|r| r.action == action)
        .ok_or_else(ApiFailure::action_not_found)?;
    let version = if is_v3 {
        rpc.header("x-acs-version")
    } else {
        params.get("Version").cloned()
    };
    match version.filter(|v| !v.is_empty()) {
        None => return Err(ApiFailure::missing_parameter("Version")),
        Some(v) if v != route.version => return Err(ApiFailure::invalid_version()),
        Some(_) => {}
    }
    if route.signed {
        auth::authenticate(
            rpc,
            &state.credentials,
            &state.nonces,
            jiff::Timestamp::now(),
        )?;
    }
    (route.handler)(state, params)
}

/// A fresh `RequestId` shaped like the service's: `473469C7-AA6F-4DC5-B3DB-A3DC0DE3C83E`.
pub fn new_request_id() -> String {
    let hex = format!("{:032X}", rand::random::<u128>());
    let part = |a: usize, b: usize| hex.get(a..b).unwrap_or_default().to_string();
    format!(
        "{}-{}-{}-{}-{}",
        part(0, 8),
        part(8, 12),
        part(12, 16),
        part(16, 20),
        part(20, 32)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_look_like_the_services() {
        let id = new_request_id();
        let lens: Vec<usize> = id.split('-').map(str::len).collect();
        assert_eq!(lens, vec![8, 4, 4, 4, 12]);
        assert!(
            id.chars()
                .all(|c| c == '-' || c.is_ascii_digit() || c.is_ascii_uppercase())
        );
        assert_ne!(id, new_request_id());
    }
}
