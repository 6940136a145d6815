//! Our ECS client against an in-process `ecs-sim` over HTTP: fixtures shared by `client_sim`
//! and `faults_ecs`, and the listing helpers of the binaries that script a server of their own
//! (`ecs_http1`, `ecs_tls`, `ecs_proxy`).
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use imagepipeline_operator::ecs::credentials::StaticProvider;
use imagepipeline_operator::ecs::{
    CallObserver, ClientConfig, Credentials, EcsClient, EcsError, Listing, PipelineFilter,
    SharedProvider,
};
use imagepipeline_operator::sim::{
    DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET, Faults, LoggedRequest, SimConfig, SimHandle,
    generate, start,
};
use serde_json::{Value, json};

pub const HANGZHOU: &str = "cn-hangzhou";

/// `n` generated pipelines, all in `region` (the generator spreads them over four).
pub fn items_in(region: &str, n: usize, seed: u64) -> Vec<Value> {
    generate(n, seed)
        .into_iter()
        .map(|mut item| {
            item["RegionId"] = json!(region);
            item
        })
        .collect()
}

/// A simulator serving `items` with `faults` from the first call.
pub async fn sim(items: Vec<Value>, faults: Faults) -> SimHandle {
    start(SimConfig {
        items,
        faults,
        ..SimConfig::default()
    })
    .await
    .expect("simulator starts")
}

/// A client for `sim` that never waits long: no effective rate limit, millisecond backoff.
pub fn fast_config(sim: &SimHandle) -> ClientConfig {
    ClientConfig {
        endpoint: Some(sim.url()),
        connect_timeout: Duration::from_secs(5),
        read_timeout: Duration::from_secs(10),
        base_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(10),
        rate_limit_qps: 100_000,
        rate_limit_burst: 100_000,
        ..ClientConfig::default()
    }
}

pub fn client(config: ClientConfig) -> EcsClient {
    EcsClient::new(config).expect("valid client config")
}

/// The simulator's default AccessKey.
pub fn provider() -> SharedProvider {
    Arc::new(StaticProvider::new(
        "sim",
        Credentials::new(DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET),
    ))
}

/// Every pipeline of [`HANGZHOU`] listed with [`provider`]'s AccessKey; the listing's error as
/// the client reported it.
pub async fn list(client: &EcsClient) -> Result<Listing, EcsError> {
    client
        .list_all(&PipelineFilter::region(HANGZHOU), &provider())
        .await
        .map_err(|e| e.error)
}

/// Reads one HTTP/1.1 request, head and `Content-Length` body, for a server a test scripts;
/// `None` when the connection ends first.
pub fn read_request(stream: &mut impl Read) -> std::io::Result<Option<Vec<u8>>> {
    let mut request = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(at) = request.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(None);
        }
        request.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&request[..head_end]).to_ascii_lowercase();
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    while request.len() < head_end + length {
        let n = stream.read(&mut chunk)?;
        if n == 0 {
            return Ok(None);
        }
        request.extend_from_slice(&chunk[..n]);
    }
    Ok(Some(request))
}

/// The listed IDs in listing order.
pub fn ids(listing: &Listing) -> Vec<String> {
    listing
        .items
        .iter()
        .map(|i| i.image_pipeline_id.clone())
        .collect()
}

/// The IDs of `items` that pass `keep`, in the simulator's order.
pub fn ids_where(items: &[Value], keep: impl Fn(&Value) -> bool) -> Vec<String> {
    items
        .iter()
        .filter(|i| keep(i))
        .map(|i| i["ImagePipelineId"].as_str().expect("id").to_string())
        .collect()
}

pub fn id_set(ids: &[String]) -> BTreeSet<String> {
    ids.iter().cloned().collect()
}

/// How many logged calls answered `code`.
pub fn answered(log: &[LoggedRequest], code: &str) -> usize {
    log.iter()
        .filter(|r| r.code.as_deref() == Some(code))
        .count()
}

/// Records the code of every attempt and retry, and runs a hook after each attempt (to steer
/// the simulator at an exact point of a listing).
#[derive(Default)]
pub struct Recorder {
    pub calls: Mutex<Vec<String>>,
    pub retries: Mutex<Vec<String>>,
    #[allow(clippy::type_complexity)]
    pub hook: Option<Box<dyn Fn(&str, usize) + Send + Sync>>,
}

impl std::fmt::Debug for Recorder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recorder").finish_non_exhaustive()
    }
}

impl Recorder {
    /// A recorder calling `hook(code, attempt_number)` after every attempt (1-based).
    pub fn with_hook(hook: impl Fn(&str, usize) + Send + Sync + 'static) -> Self {
        Self {
            hook: Some(Box::new(hook)),
            ..Self::default()
        }
    }

    pub fn calls(&self) -> Vec<String> {
        self.calls.lock().expect("lock").clone()
    }

    pub fn retries(&self) -> Vec<String> {
        self.retries.lock().expect("lock").clone()
    }

    pub fn count(&self, code: &str) -> usize {
        self.calls().iter().filter(|c| *c == code).count()
    }
}

impl CallObserver for Recorder {
    fn on_call(&self, action: &str, code: &str) {
        assert_eq!(action, "DescribeImagePipelines");
        let n = {
            let mut calls = self.calls.lock().expect("lock");
            calls.push(code.to_string());
            calls.len()
        };
        if let Some(hook) = &self.hook {
            hook(code, n);
        }
    }

    fn on_retry(&self, _action: &str, code: &str) {
        self.retries.lock().expect("lock").push(code.to_string());
    }
}
