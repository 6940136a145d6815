//! A mocked Kubernetes API server (`tower_test`) that answers every request the reconcile makes
//! and records it: applies of ImagePipelines (answered with the object as stored), status
//! patches, Events, and GETs of the one Secret it knows.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{Value, json};
use tower_test::mock;

/// One request the controller sent.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: Method,
    pub uri: String,
    /// The body as sent (text).
    pub body: String,
}

impl Recorded {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }

    pub fn is_pipeline_request(&self) -> bool {
        self.uri.contains("/imagepipelines")
    }

    pub fn is_status_patch(&self) -> bool {
        self.method == Method::PATCH && self.uri.contains("/imagepipelinequeries/")
    }

    pub fn is_event(&self) -> bool {
        self.method == Method::POST && self.uri.contains("/events")
    }
}

/// The requests seen so far.
#[derive(Debug, Clone, Default)]
pub struct Requests(Arc<Mutex<Vec<Recorded>>>);

impl Requests {
    pub fn all(&self) -> Vec<Recorded> {
        self.0.lock().unwrap().clone()
    }
}

fn reply(status: StatusCode, body: &Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .body(Body::from(serde_json::to_vec(body).unwrap()))
        .unwrap()
}

fn not_found(what: &str) -> Response<Body> {
    reply(
        StatusCode::NOT_FOUND,
        &json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404, "message": format!("{what} not found")}),
    )
}

/// A kube client whose requests are answered (and recorded) by a background task. `secret` is
/// the Secret answered to a GET of its name.
pub fn client(secret: Option<Value>) -> (kube::Client, Requests) {
    let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
    let client = kube::Client::new(service, "default");
    let requests = Requests::default();
    let seen = requests.clone();
    tokio::spawn(async move {
        let mut version = 100u64;
        while let Some((request, respond)) = handle.next_request().await {
            let (parts, body) = request.into_parts();
            let bytes = body.collect_bytes().await.unwrap_or_default();
            let text = String::from_utf8_lossy(&bytes).to_string();
            let uri = parts.uri.to_string();
            seen.0.lock().unwrap().push(Recorded {
                method: parts.method.clone(),
                uri: uri.clone(),
                body: text.clone(),
            });
            let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
            version += 1;
            let answer = match parts.method {
                Method::GET if uri.contains("/secrets/") => match &secret {
                    Some(s)
                        if uri
                            .split('/')
                            .next_back()
                            .is_some_and(|n| Some(n) == s["metadata"]["name"].as_str()) =>
                    {
                        reply(StatusCode::OK, s)
                    }
                    _ => not_found("secret"),
                },
                Method::PATCH => {
                    let mut obj = body.clone();
                    obj["metadata"]["uid"] = json!(format!("uid-{version}"));
                    obj["metadata"]["resourceVersion"] = json!(version.to_string());
                    if obj["metadata"]["name"].is_null() {
                        let name = uri
                            .split('?')
                            .next()
                            .unwrap_or_default()
                            .trim_end_matches("/status")
                            .rsplit('/')
                            .next()
                            .unwrap_or_default()
                            .to_string();
                        obj["metadata"]["name"] = json!(name);
                    }
                    if obj["spec"].is_null() && uri.contains("/imagepipelinequeries/") {
                        obj["spec"] = json!({"regionId": "cn-hangzhou"});
                    }
                    reply(StatusCode::OK, &obj)
                }
                Method::POST => reply(StatusCode::CREATED, &body),
                Method::DELETE => reply(
                    StatusCode::OK,
                    &json!({"kind": "Status", "apiVersion": "v1", "status": "Success"}),
                ),
                _ => not_found(&uri),
            };
            respond.send_response(answer);
        }
    });
    (client, requests)
}

/// Waits a moment for requests still in flight (the mock answers asynchronously).
pub async fn settle() {
    tokio::time::sleep(Duration::from_millis(50)).await;
}

/// The ImagePipeline requests of `requests` (method and object name), in order.
pub fn pipeline_writes(requests: &[Recorded]) -> Vec<(String, String)> {
    requests
        .iter()
        .filter(|r| r.is_pipeline_request())
        .map(|r| {
            let name = r.uri.rsplit('/').next().unwrap_or_default();
            let name = name.split('?').next().unwrap_or_default();
            (r.method.to_string(), name.to_string())
        })
        .collect()
}
