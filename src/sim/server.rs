//! Starting and stopping a simulator, and the handle tests use to steer it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

use serde_json::Value;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::auth::NonceCache;
use super::credential::{Credential, CredentialStore};
use super::errors::SimError;
use super::faults::Faults;
use super::imds::{ImdsConfig, ImdsState, ImdsStats};
use super::log::{LoggedRequest, RequestLog};
use super::paging::TokenKey;
use super::router;
use super::store::Store;
use super::sts::{StsConfig, StsState};

/// How to start a simulator.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Where to listen; port 0 picks a free one. Default `127.0.0.1:0`.
    pub listen: SocketAddr,
    /// The pipelines served (API item shape plus `RegionId`).
    pub items: Vec<Value>,
    /// The AccessKeys accepted. Default: [`Credential::default_test`].
    pub credentials: Vec<Credential>,
    /// Faults injected from the start.
    pub faults: Faults,
    /// Also write the request log to this file, one JSON line per request.
    pub log_file: Option<PathBuf>,
    /// The STS `AssumeRoleWithOIDC` answered on the same listener.
    pub sts: StsConfig,
    /// The instance metadata service answered on the same listener.
    pub imds: ImdsConfig,
}

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            items: Vec::new(),
            credentials: vec![Credential::default_test()],
            faults: Faults::default(),
            log_file: None,
            sts: StsConfig::default(),
            imds: ImdsConfig::default(),
        }
    }
}

/// Everything the request handlers share.
#[derive(Debug)]
pub struct SimState {
    /// The pipelines.
    pub store: Store,
    /// Accepted AccessKeys.
    pub credentials: CredentialStore,
    /// Nonces seen recently.
    pub nonces: NonceCache,
    /// Current faults.
    pub faults: RwLock<Faults>,
    /// RPC calls received (admin calls excluded).
    pub calls: AtomicU64,
    /// RPC calls received that carried a non-empty `NextToken`.
    pub token_calls: AtomicU64,
    /// Body bytes of `huge` malformed answers handed to connections so far.
    pub huge_bytes_sent: AtomicU64,
    /// The request log.
    pub log: RequestLog,
    /// Signs `NextToken`s.
    pub tokens: TokenKey,
    /// The simulated STS.
    pub sts: StsState,
    /// The simulated metadata service.
    pub imds: ImdsState,
}

impl SimState {
    /// Builds the shared state of `config`.
    pub fn new(config: &SimConfig) -> Result<Self, SimError> {
        Ok(Self {
            store: Store::new(config.items.clone()),
            credentials: CredentialStore::new(config.credentials.iter().cloned()),
            nonces: NonceCache::default(),
            faults: RwLock::new(config.faults.clone()),
            calls: AtomicU64::new(0),
            token_calls: AtomicU64::new(0),
            huge_bytes_sent: AtomicU64::new(0),
            log: RequestLog::open(config.log_file.as_deref())?,
            tokens: TokenKey::random(),
            sts: StsState::new(config.sts.clone()),
            imds: ImdsState::new(config.imds.clone()),
        })
    }

    /// The current faults.
    pub fn faults(&self) -> Faults {
        self.faults.read().map(|f| f.clone()).unwrap_or_default()
    }

    /// Replaces the faults.
    pub fn set_faults(&self, faults: Faults) {
        if let Ok(mut f) = self.faults.write() {
            *f = faults;
        }
    }
}

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
