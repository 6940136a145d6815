//! The operator's own ("ambient") identity, found the way the official SDKs find it:
//! environment AccessKeys, then RRSA (OIDC token exchanged at STS), then the ECS instance RAM
//! role. The first provider that works is remembered and reported.

pub mod imds;
pub mod oidc;
pub mod refresh;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::BoxFuture;

use self::imds::{ImdsFetcher, ImdsSettings};
use self::oidc::{OidcFetcher, OidcSettings};
use self::refresh::{Fetch, REFRESH_MARGIN, Refreshing};
use crate::credentials::{
    Credentials, CredentialsError, CredentialsProvider, SharedProvider,
    required_credentials_from_env,
};

/// Reads a setting by name (the process environment in production, a map in tests).
pub type Lookup = Box<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// A [`Lookup`] over fixed `(name, value)` pairs, for tests and embedding.
pub fn lookup_from(pairs: &[(&str, &str)]) -> Lookup {
    let map: std::collections::HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    Box::new(move |k| map.get(k).cloned())
}

/// A [`Lookup`] several providers share.
type SharedLookup = Arc<dyn Fn(&str) -> Option<String> + Send + Sync>;

/// Environment AccessKeys (`ALIBABA_CLOUD_ACCESS_KEY_ID`, `..._SECRET`, optional
/// `..._SECURITY_TOKEN`) read through the chain's lookup on every call, so a rotated value is
/// seen and tests never depend on the process environment.
pub struct LookupEnvProvider {
    lookup: SharedLookup,
}

impl std::fmt::Debug for LookupEnvProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LookupEnvProvider").finish_non_exhaustive()
    }
}

impl CredentialsProvider for LookupEnvProvider {
    fn name(&self) -> String {
        "env".into()
    }

    fn credentials(&self) -> BoxFuture<'_, Result<Credentials, CredentialsError>> {
        let result = required_credentials_from_env(|k| (self.lookup)(k));
        Box::pin(futures::future::ready(result))
    }
}

/// Endpoint overrides from the command line (`--sts-endpoint`, `--imds-endpoint`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AmbientOverrides {
    /// STS base URL.
    pub sts_endpoint: Option<String>,
    /// Metadata service base URL.
    pub imds_endpoint: Option<String>,
}

pub(crate) fn service_error(provider: &str, message: String) -> CredentialsError {
    CredentialsError::Service {
        provider: provider.to_string(),
        message,
    }
}

pub(crate) fn http_client(
    connect: Duration,
    read: Duration,
) -> Result<reqwest::Client, CredentialsError> {
    let tls = crate::tls::client_config()
        .map_err(|e| CredentialsError::Invalid(format!("setting up TLS: {e}")))?;
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .connect_timeout(connect)
        .read_timeout(read)
        .timeout(connect + read + read)
        .build()
        .map_err(|e| CredentialsError::Invalid(format!("building the HTTP client: {e}")))
}

/// A [`Refreshing`] fetcher as a provider with a fixed name.
#[derive(Debug)]
pub struct RefreshingProvider<F> {
    name: &'static str,
    inner: Refreshing<F>,
}

impl<F: Fetch> RefreshingProvider<F> {
    /// Wraps `fetcher` under `name`.
    pub fn new(name: &'static str, fetcher: F) -> Self {
        Self {
            name,
            inner: Refreshing::new(fetcher, REFRESH_MARGIN),
        }
    }
}

impl<F: Fetch> CredentialsProvider for RefreshingProvider<F> {
    fn name(&self) -> String {
        self.name.to_string()
    }

    fn credentials(&self) -> BoxFuture<'_, Result<Credentials, CredentialsError>> {
        Box::pin(self.inner.get())
    }
}

/// Tries providers in order and sticks to the first that works.
#[derive(Debug)]
pub struct ChainProvider {
    providers: Vec<SharedProvider>,
    active: Mutex<Option<usize>>,
}

impl ChainProvider {
    /// A chain of `providers`, tried in this order.
    pub fn new(providers: Vec<SharedProvider>) -> Self {
        Self {
            providers,
            active: Mutex::new(None),
        }
    }

    /// The official SDKs' chain from `lookup`: environment, RRSA (when its three variables are
    /// set), ECS RAM role (unless disabled). Every provider reads its settings through `lookup`,
    /// the environment AccessKeys included.
    pub fn from_env(
        lookup: Lookup,
        overrides: &AmbientOverrides,
    ) -> Result<Self, CredentialsError> {
        let shared: SharedLookup = Arc::from(lookup);
        let lookup: Lookup = {
            let shared = Arc::clone(&shared);
            Box::new(move |k| shared(k))
        };
        let mut providers: Vec<SharedProvider> =
            vec![Arc::new(LookupEnvProvider { lookup: shared })];
        if let Some(settings) = OidcSettings::from_env(&lookup, overrides.sts_endpoint.as_deref()) {
            providers.push(Arc::new(RefreshingProvider::new(
                "rrsa",
                OidcFetcher::new(settings)?,
            )));
        }
        if let Some(settings) = ImdsSettings::from_env(&lookup, overrides.imds_endpoint.as_deref())
        {
            providers.push(Arc::new(RefreshingProvider::new(
                "ecs-ram-role",
                ImdsFetcher::new(settings)?,
            )));
        }
        Ok(Self::new(providers))
    }

    /// The names of the providers in order.
    pub fn provider_names(&self) -> Vec<String> {
        self.providers.iter().map(|p| p.name()).collect()
    }

    fn active(&self) -> Option<usize> {
        *self.active.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn resolve(&self) -> Result<Credentials, CredentialsError> {
        if let Some(i) = self.active() {
            return self.providers[i].credentials().await;
        }
        let mut failures = Vec::new();
        for (i, provider) in self.providers.iter().enumerate() {
            match provider.credentials().await {
                Ok(c) => {
                    *self.active.lock().unwrap_or_else(|p| p.into_inner()) = Some(i);
                    tracing::info!(provider = %provider.name(), "using ambient credentials");
                    return Ok(c);
                }
                Err(e) => failures.push(format!("{}: {e}", provider.name())),
            }
        }
        Err(CredentialsError::Missing(format!(
            "no ambient credentials found (tried {})",
            failures.join("; ")
        )))
    }
}

impl CredentialsProvider for ChainProvider {
    /// `ambient/<provider>` once a provider worked, `ambient` before.
    fn name(&self) -> String {
        match self.active() {
            Some(i) => format!("ambient/{}", self.providers[i].name()),
            None => "ambient".into(),
        }
    }

    fn credentials(&self) -> BoxFuture<'_, Result<Credentials, CredentialsError>> {
        Box::pin(self.resolve())
    }
}

/// The ambient chain of this process.
pub fn ambient_provider(overrides: &AmbientOverrides) -> Result<SharedProvider, CredentialsError> {
    Ok(Arc::new(ChainProvider::from_env(
        Box::new(|k| std::env::var(k).ok()),
        overrides,
    )?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::credentials::{ENV_ACCESS_KEY_ID, ENV_ACCESS_KEY_SECRET, StaticProvider};

    #[derive(Debug)]
    struct Failing(&'static str);
    impl CredentialsProvider for Failing {
        fn name(&self) -> String {
            self.0.into()
        }
        fn credentials(&self) -> BoxFuture<'_, Result<Credentials, CredentialsError>> {
            Box::pin(async { Err(CredentialsError::Missing("nothing here".into())) })
        }
    }

    #[tokio::test]
    async fn the_chain_uses_the_first_provider_that_works_and_remembers_it() {
        let chain = ChainProvider::new(vec![
            Arc::new(Failing("env")),
            Arc::new(StaticProvider::new("rrsa", Credentials::new("a", "b"))),
            Arc::new(StaticProvider::new(
                "ecs-ram-role",
                Credentials::new("c", "d"),
            )),
        ]);
        assert_eq!(chain.name(), "ambient");
        assert_eq!(chain.credentials().await.unwrap().access_key_id, "a");
        assert_eq!(chain.name(), "ambient/rrsa");
    }

    #[tokio::test]
    async fn an_empty_chain_lists_every_failure() {
        let chain = ChainProvider::new(vec![Arc::new(Failing("env")), Arc::new(Failing("rrsa"))]);
        let e = chain.credentials().await.unwrap_err().to_string();
        assert!(
            e.contains("env: nothing here") && e.contains("rrsa: nothing here"),
            "{e}"
        );
    }

    #[tokio::test]
    async fn the_env_provider_reads_the_injected_lookup_not_the_process_environment() {
        let lookup: Lookup = Box::new(|k| match k {
            ENV_ACCESS_KEY_ID => Some("LTAIinjected".into()),
            ENV_ACCESS_KEY_SECRET => Some("injected-secret".into()),
            imds::ENV_ECS_METADATA_DISABLED => Some("true".into()),
            _ => None,
        });
        let chain = ChainProvider::from_env(lookup, &AmbientOverrides::default()).unwrap();
        assert_eq!(
            chain.credentials().await.unwrap().access_key_id,
            "LTAIinjected"
        );
        assert_eq!(chain.name(), "ambient/env");

        let empty: Lookup =
            Box::new(|k| (k == imds::ENV_ECS_METADATA_DISABLED).then(|| "true".into()));
        let chain = ChainProvider::from_env(empty, &AmbientOverrides::default()).unwrap();
        let e = chain.credentials().await.unwrap_err().to_string();
        assert!(e.contains(ENV_ACCESS_KEY_ID), "{e}");
    }

    #[test]
    fn the_chain_order_is_env_then_rrsa_then_ram_role() {
        let lookup: Lookup = Box::new(|k| match k {
            oidc::ENV_ROLE_ARN => Some("acs:ram::1:role/r".into()),
            oidc::ENV_OIDC_PROVIDER_ARN => Some("acs:ram::1:oidc-provider/p".into()),
            oidc::ENV_OIDC_TOKEN_FILE => Some("/tmp/token".into()),
            _ => None,
        });
        let chain = ChainProvider::from_env(lookup, &AmbientOverrides::default()).unwrap();
        assert_eq!(chain.provider_names(), ["env", "rrsa", "ecs-ram-role"]);
        let lookup: Lookup =
            Box::new(|k| (k == imds::ENV_ECS_METADATA_DISABLED).then(|| "true".into()));
        let chain = ChainProvider::from_env(lookup, &AmbientOverrides::default()).unwrap();
        assert_eq!(chain.provider_names(), ["env"]);
    }
}
