//! The simulator's configuration and the state every request handler shares.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::RwLock;
use std::sync::atomic::AtomicU64;

use serde_json::Value;

use super::auth::NonceCache;
use super::credential::{Credential, CredentialStore};
use super::errors::SimError;
use super::faults::Faults;
use super::imds::{ImdsConfig, ImdsState};
use super::log::RequestLog;
use super::paging::TokenKey;
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
