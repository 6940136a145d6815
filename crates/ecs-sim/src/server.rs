//! Starting and stopping a simulator, and the handle tests use to steer it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::credential::Credential;
use super::errors::SimError;
use super::faults::Faults;
use super::imds::ImdsStats;
use super::log::LoggedRequest;
use super::router;
use super::state::{SimConfig, SimState};

/// A running simulator. Dropping it without [`SimHandle::shutdown`] stops it too.
#[derive(Debug)]
pub struct SimHandle {
    addr: SocketAddr,
    state: Arc<SimState>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

/// Binds `config.listen` and serves until the handle is shut down or dropped.
pub async fn start(config: SimConfig) -> Result<SimHandle, SimError> {
    let state = Arc::new(SimState::new(&config)?);
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|source| SimError::Bind {
            addr: config.listen.to_string(),
            source,
        })?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let app = router::build(Arc::clone(&state));
    let task = tokio::spawn(async move {
        let serve = axum::serve(listener, app).with_graceful_shutdown(async {
            let _ = stopped.await;
        });
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "ecs-sim stopped serving");
        }
    });
    Ok(SimHandle {
        addr,
        state,
        stop: Some(stop),
        task,
    })
}

impl SimHandle {
    /// `http://127.0.0.1:PORT`: the endpoint to point a client at.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Replaces every pipeline (they appear and vanish for the next call).
    pub fn set_items(&self, items: Vec<Value>) {
        self.state.store.set(items);
    }

    /// A function that replaces the items from another task (e.g. a SIGHUP reloader).
    pub fn item_setter(&self) -> impl Fn(Vec<Value>) + Send + Sync + 'static {
        let state = Arc::clone(&self.state);
        move |items| state.store.set(items)
    }

    /// The pipelines currently served.
    pub fn items(&self) -> Vec<Value> {
        self.state.store.snapshot().as_ref().clone()
    }

    /// Every RPC call answered so far, oldest first.
    pub fn requests(&self) -> Vec<LoggedRequest> {
        self.state.log.entries()
    }

    /// How many RPC calls were received (including rejected and faulted ones).
    pub fn call_count(&self) -> usize {
        usize::try_from(self.state.calls.load(Ordering::SeqCst)).unwrap_or(usize::MAX)
    }

    /// How many body bytes of `huge` malformed answers the simulator handed to its connections:
    /// a client that stops reading early makes this stop well short of the 50 MiB.
    pub fn huge_bytes_sent(&self) -> u64 {
        self.state.huge_bytes_sent.load(Ordering::SeqCst)
    }

    /// Replaces the injected faults; the call counter keeps counting.
    pub fn set_faults(&self, faults: Faults) {
        self.state.set_faults(faults);
    }

    /// The injected faults.
    pub fn faults(&self) -> Faults {
        self.state.faults()
    }

    /// Accepts one more AccessKey (or replaces one with the same ID), e.g. STS credentials
    /// with a token and an expiry.
    pub fn add_credential(&self, credential: Credential) {
        self.state.credentials.add(credential);
    }

    /// Every `OIDCToken` STS received, oldest first (refused calls included).
    pub fn oidc_tokens(&self) -> Vec<String> {
        self.state.sts.tokens()
    }

    /// STS `AssumeRoleWithOIDC` calls received (faulted and refused ones included).
    pub fn sts_calls(&self) -> u64 {
        self.state.sts.calls()
    }

    /// What the metadata service was asked so far.
    pub fn imds_stats(&self) -> ImdsStats {
        self.state.imds.stats()
    }

    /// Stops accepting connections and waits for the server task.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        // Idle keep-alive connections close promptly; a stuck one must not hang a test.
        if tokio::time::timeout(std::time::Duration::from_secs(5), &mut self.task)
            .await
            .is_err()
        {
            self.task.abort();
        }
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}
