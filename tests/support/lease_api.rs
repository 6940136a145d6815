//! A tiny in-memory fake of the `coordination.k8s.io/v1` Lease API, just enough for
//! `kube-lease-manager` 0.13: GET, POST (create), and PATCH as server-side apply (with field
//! ownership conflicts, which is how two replicas racing for an orphaned lease are told apart)
//! or as strategic merge (renewals, and releases that null fields out). Every write bumps the
//! `resourceVersion`; a write carrying a stale one is a 409 Conflict.
//!
//! Each replica gets its own [`Endpoint`] (its own port) onto the same store, so one replica can
//! be cut off from the "API server" while the others still reach it.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::Response;
use http::{HeaderMap, Method, StatusCode, Uri};
use serde_json::{Map, Value, json};

/// One stored Lease and who owns which of its spec fields.
#[derive(Debug, Clone)]
struct Entry {
    uid: String,
    resource_version: u64,
    spec: Map<String, Value>,
    /// Spec field → the field manager that last set it.
    owners: BTreeMap<String, String>,
}

#[derive(Debug, Default)]
struct Store {
    leases: HashMap<(String, String), Entry>,
    next_version: u64,
    /// `METHOD path [fieldManager]` of every request, oldest first.
    requests: Vec<String>,
}

/// The shared fake; [`FakeLeaseApi::endpoint`] opens a port onto it.
#[derive(Debug, Clone, Default)]
pub struct FakeLeaseApi {
    store: Arc<Mutex<Store>>,
}

/// One port onto the fake, with a switch that cuts it off (every request answers 500).
#[derive(Debug)]
pub struct Endpoint {
    pub addr: SocketAddr,
    cut_off: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Endpoint {
    /// A kube client talking to this endpoint.
    pub fn client(&self) -> kube::Client {
        let url: http::Uri = format!("http://{}", self.addr).parse().expect("url");
        let mut config = kube::Config::new(url);
        config.default_namespace = "default".into();
        kube::Client::try_from(config).expect("kube client")
    }

    /// Cuts this endpoint off from the store (`true`) or reconnects it.
    pub fn cut_off(&self, cut: bool) {
        self.cut_off.store(cut, Ordering::SeqCst);
    }
}

impl Drop for Endpoint {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[derive(Clone)]
struct EndpointState {
    store: Arc<Mutex<Store>>,
    cut_off: Arc<AtomicBool>,
}

/// The holder of a lease as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holder {
    pub identity: Option<String>,
    pub transitions: i64,
}

impl FakeLeaseApi {
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves the fake on a fresh port of 127.0.0.1.
    pub async fn endpoint(&self) -> Endpoint {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let cut_off = Arc::new(AtomicBool::new(false));
        let state = EndpointState {
            store: self.store.clone(),
            cut_off: cut_off.clone(),
        };
        let app = Router::new().fallback(handle).with_state(state);
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        Endpoint {
            addr,
            cut_off,
            task,
        }
    }

    /// The holder of lease `ns/name`, if the lease exists.
    pub fn holder(&self, ns: &str, name: &str) -> Option<Holder> {
        let store = self.store.lock().unwrap();
        store
            .leases
            .get(&(ns.to_string(), name.to_string()))
            .map(|e| Holder {
                identity: e
                    .spec
                    .get("holderIdentity")
                    .and_then(Value::as_str)
                    .map(str::to_string),
                transitions: e
                    .spec
                    .get("leaseTransitions")
                    .and_then(Value::as_i64)
                    .unwrap_or(0),
            })
    }

    /// Every request seen so far.
    pub fn requests(&self) -> Vec<String> {
        self.store.lock().unwrap().requests.clone()
    }
}

fn respond(status: StatusCode, body: &Value) -> Response {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(body).unwrap()))
        .unwrap()
}

fn status(code: StatusCode, reason: &str, message: String) -> Response {
    respond(
        code,
        &json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": message, "reason": reason, "code": code.as_u16(),
        }),
    )
}

fn lease_json(ns: &str, name: &str, e: &Entry) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": name,
            "namespace": ns,
            "uid": e.uid,
            "resourceVersion": e.resource_version.to_string(),
        },
        "spec": e.spec,
    })
}

fn query_param(uri: &Uri, key: &str) -> Option<String> {
    uri.query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| v.to_string())
    })
}

/// `(namespace, name)` of `/apis/coordination.k8s.io/v1/namespaces/{ns}/leases[/{name}]`.
fn parse_path(path: &str) -> Option<(String, Option<String>)> {
    let rest = path.strip_prefix("/apis/coordination.k8s.io/v1/namespaces/")?;
    let mut parts = rest.split('/');
    let ns = parts.next()?.to_string();
    if parts.next()? != "leases" {
        return None;
    }
    let name = parts.next().filter(|n| !n.is_empty()).map(str::to_string);
    Some((ns, name))
}

async fn handle(
    State(state): State<EndpointState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if state.cut_off.load(Ordering::SeqCst) {
        return status(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalError",
            "cut off".into(),
        );
    }
    let Some((ns, name)) = parse_path(uri.path()) else {
        return status(StatusCode::NOT_FOUND, "NotFound", uri.path().to_string());
    };
    let manager = query_param(&uri, "fieldManager").unwrap_or_default();
    let force = query_param(&uri, "force").as_deref() == Some("true");
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut store = state.store.lock().unwrap();
    store
        .requests
        .push(format!("{method} {} {manager}", uri.path()));
    store.next_version += 1;
    let version = store.next_version;

    match (method, name) {
        (Method::GET, Some(name)) => match store.leases.get(&(ns.clone(), name.clone())) {
            Some(e) => respond(StatusCode::OK, &lease_json(&ns, &name, e)),
            None => status(
                StatusCode::NOT_FOUND,
                "NotFound",
                format!("leases.coordination.k8s.io \"{name}\" not found"),
            ),
        },
        (Method::POST, None) => {
            let name = body["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let key = (ns.clone(), name.clone());
            if store.leases.contains_key(&key) {
                return status(
                    StatusCode::CONFLICT,
                    "AlreadyExists",
                    format!("leases.coordination.k8s.io \"{name}\" already exists"),
                );
            }
            let spec = body["spec"].as_object().cloned().unwrap_or_default();
            let owners = spec.keys().map(|k| (k.clone(), manager.clone())).collect();
            let entry = Entry {
                uid: format!("lease-uid-{version}"),
                resource_version: version,
                spec,
                owners,
            };
            let answer = lease_json(&ns, &name, &entry);
            store.leases.insert(key, entry);
            respond(StatusCode::CREATED, &answer)
        }
        (Method::PATCH, Some(name)) => {
            let key = (ns.clone(), name.clone());
            let apply = content_type.starts_with("application/apply-patch");
            let strategic = content_type.starts_with("application/strategic-merge-patch");
            if !apply && !strategic {
                return status(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "UnsupportedMediaType",
                    content_type,
                );
            }
            let mut entry = match store.leases.get(&key) {
                Some(e) => e.clone(),
                None if apply => Entry {
                    uid: format!("lease-uid-{version}"),
                    resource_version: 0,
                    spec: Map::new(),
                    owners: BTreeMap::new(),
                },
                None => {
                    return status(
                        StatusCode::NOT_FOUND,
                        "NotFound",
                        format!("leases.coordination.k8s.io \"{name}\" not found"),
                    );
                }
            };
            let stale = body["metadata"]["resourceVersion"]
                .as_str()
                .is_some_and(|rv| rv != entry.resource_version.to_string());
            if stale {
                return status(
                    StatusCode::CONFLICT,
                    "Conflict",
                    "the object has been modified; please apply your changes to the latest version and try again".into(),
                );
            }
            let patch = body["spec"].as_object().cloned().unwrap_or_default();
            if apply && !force {
                let conflicts: Vec<String> = patch
                    .iter()
                    .filter(|(k, v)| {
                        entry.spec.get(*k).is_some_and(|cur| cur != *v)
                            && entry.owners.get(*k).is_some_and(|m| *m != manager)
                    })
                    .map(|(k, _)| format!(".spec.{k}"))
                    .collect();
                if !conflicts.is_empty() {
                    return status(
                        StatusCode::CONFLICT,
                        "Conflict",
                        format!("Apply failed with conflicts: {}", conflicts.join(", ")),
                    );
                }
            }
            for (k, v) in patch {
                if v.is_null() {
                    entry.spec.remove(&k);
                    entry.owners.remove(&k);
                } else {
                    entry.spec.insert(k.clone(), v);
                    entry.owners.insert(k, manager.clone());
                }
            }
            entry.resource_version = version;
            let answer = lease_json(&ns, &name, &entry);
            store.leases.insert(key, entry);
            respond(StatusCode::OK, &answer)
        }
        (m, _) => status(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            format!("{m} is not served by the fake"),
        ),
    }
}
