//! Step 2: credentials. A query's Secret (in its own namespace), or the operator's ambient
//! credentials where the operator allows them. Secret-derived providers are cached per Secret
//! `resourceVersion`, and a Secret read a moment ago is not read again: the sync's own status
//! patch comes back as a watch event, and its reconcile would read the Secret a second time
//! for each refresh. Any watch event of a Secret forgets what was cached of it, so a change is
//! always read. No message ever contains a secret value.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, ListParams};
use kube::{Client, ResourceExt};

use crate::ecs::SharedProvider;
use crate::ecs::credentials::{Credentials, StaticProvider};

/// The Secret key holding the AccessKey ID.
pub const KEY_ACCESS_KEY_ID: &str = "accessKeyId";
/// The Secret key holding the AccessKey secret.
pub const KEY_ACCESS_KEY_SECRET: &str = "accessKeySecret";
/// The optional Secret key holding an STS token.
pub const KEY_SECURITY_TOKEN: &str = "securityToken";

/// Why a query has no usable credentials.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    /// The Secret does not exist.
    #[error(
        "Secret {name:?} (spec.credentials.secretRef.name) was not found in namespace {namespace:?}"
    )]
    SecretNotFound {
        /// The query's namespace.
        namespace: String,
        /// The Secret name.
        name: String,
    },
    /// A required key is missing or empty.
    #[error(
        "Secret {name:?} has no {key:?} key (expected {KEY_ACCESS_KEY_ID}, {KEY_ACCESS_KEY_SECRET} and optionally {KEY_SECURITY_TOKEN})"
    )]
    SecretKeyMissing {
        /// The Secret name.
        name: String,
        /// The missing key.
        key: &'static str,
    },
    /// A key is not UTF-8.
    #[error("Secret {name:?} key {key:?} is not UTF-8 text")]
    SecretKeyInvalid {
        /// The Secret name.
        name: String,
        /// The key.
        key: &'static str,
    },
    /// The query has no Secret and its namespace may not use the ambient credentials.
    #[error(
        "namespace {namespace:?} is not allowed to use the operator's ambient credentials: set spec.credentials.secretRef to a Secret with {KEY_ACCESS_KEY_ID} and {KEY_ACCESS_KEY_SECRET}, or allow the namespace with the operator flag --ambient-credentials-namespaces (env AMBIENT_CREDENTIALS_NAMESPACES) or --ambient-credentials-namespace-selector"
    )]
    AmbientNotAllowed {
        /// The query's namespace.
        namespace: String,
    },
    /// The operator has no ambient credentials.
    #[error(
        "the operator has no ambient credentials configured: set spec.credentials.secretRef to a Secret with {KEY_ACCESS_KEY_ID} and {KEY_ACCESS_KEY_SECRET}"
    )]
    AmbientUnavailable,
    /// The Kubernetes API failed while reading the Secret or Namespace (retried, not reported as
    /// a credentials problem).
    #[error("reading credentials from the Kubernetes API: {0}")]
    Kube(#[source] kube::Error),
}

/// Credentials ready for a listing.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The provider to sign with.
    pub provider: SharedProvider,
    /// What shares listings: `secret/<namespace>/<name>@<resourceVersion>`, or `ambient` for the
    /// operator's own credentials (one chain per process, whichever provider it settles on).
    pub identity: String,
    /// Where the credentials come from.
    pub origin: Origin,
}

/// Where a query's credentials come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The Secret with this name, in the query's namespace.
    Secret(String),
    /// The operator's ambient credentials.
    Ambient,
}

impl Resolved {
    /// What the status shows: `secret/<name>`, or `ambient/<provider>` once the ambient chain
    /// has found a provider that works (`ambient` before). Ask after the listing: the chain
    /// settles on a provider while it lists.
    pub fn display(&self) -> String {
        match &self.origin {
            Origin::Secret(name) => format!("secret/{name}"),
            Origin::Ambient => ambient_display(&self.provider.name()),
        }
    }
}

/// `ambient/<provider>` for an ambient provider's name. The ambient chain already names itself
/// `ambient` or `ambient/<provider>`; a single provider (`env`, `rrsa`, ...) gets the prefix.
pub fn ambient_display(provider_name: &str) -> String {
    if provider_name == AMBIENT || provider_name.starts_with("ambient/") {
        provider_name.to_string()
    } else {
        format!("{AMBIENT}/{provider_name}")
    }
}

/// The listing identity of the operator's ambient credentials.
pub const AMBIENT: &str = "ambient";

/// Reads the credentials of Secret `name` from its data.
pub fn credentials_from_secret(
    name: &str,
    data: Option<&BTreeMap<String, ByteString>>,
) -> Result<Credentials, ResolveError> {
    let get = |key: &'static str| -> Result<Option<String>, ResolveError> {
        match data.and_then(|d| d.get(key)) {
            None => Ok(None),
            Some(bytes) => String::from_utf8(bytes.0.clone())
                .map(|s| Some(s.trim().to_string()).filter(|s| !s.is_empty()))
                .map_err(|_| ResolveError::SecretKeyInvalid {
                    name: name.to_string(),
                    key,
                }),
        }
    };
    let required = |key: &'static str| {
        get(key)?.ok_or_else(|| ResolveError::SecretKeyMissing {
            name: name.to_string(),
            key,
        })
    };
    let creds = Credentials::new(
        required(KEY_ACCESS_KEY_ID)?,
        required(KEY_ACCESS_KEY_SECRET)?,
    );
    Ok(match get(KEY_SECURITY_TOKEN)? {
        Some(token) => creds.with_security_token(token),
        None => creds,
    })
}

/// Which namespaces may use the operator's ambient credentials.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AmbientPolicy {
    /// Namespaces allowed by name.
    pub namespaces: BTreeSet<String>,
    /// A label selector on Namespace objects; matching namespaces are allowed too.
    pub selector: Option<String>,
}

/// How long a Secret just read is taken as it was without reading it again, unless a watch
/// event of it came meanwhile.
pub const SECRET_FRESH_FOR: Duration = Duration::from_secs(5);

/// Resolves credentials for queries.
#[derive(Debug)]
pub struct CredentialsResolver {
    ambient: Option<SharedProvider>,
    policy: AmbientPolicy,
    cache: Mutex<HashMap<(String, String), CachedSecret>>,
    /// Counts [`CredentialsResolver::forget_secret`] calls: a read that saw it change may
    /// have raced a change of the Secret, and is not taken as fresh.
    forgotten: AtomicU64,
}

/// What was read of a Secret: its version, the provider made from it, and when a read last
/// found it so (`None`: read it again before using it).
#[derive(Debug)]
struct CachedSecret {
    resource_version: String,
    provider: SharedProvider,
    read_at: Option<Instant>,
}

impl CredentialsResolver {
    /// A resolver with the operator's `ambient` provider, allowed by `policy`.
    pub fn new(ambient: Option<SharedProvider>, policy: AmbientPolicy) -> Self {
        Self {
            ambient,
            policy,
            cache: Mutex::new(HashMap::new()),
            forgotten: AtomicU64::new(0),
        }
    }

    /// Forgets what was read of Secret `name` in `namespace` (the Secret watch calls this for
    /// every event): the next query that names it reads it again.
    pub fn forget_secret(&self, namespace: &str, name: &str) {
        self.forgotten.fetch_add(1, Ordering::SeqCst);
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.remove(&(namespace.to_string(), name.to_string()));
    }

    /// How many Secrets' readings are cached (tests look at it).
    pub fn cached_secrets(&self) -> usize {
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// The credentials of a query in `namespace` naming `secret` (or none).
    pub async fn resolve(
        &self,
        client: &Client,
        namespace: &str,
        secret: Option<&str>,
    ) -> Result<Resolved, ResolveError> {
        match secret {
            Some(name) => self.secret_credentials(client, namespace, name).await,
            None => self.ambient(client, namespace).await,
        }
    }

    async fn secret_credentials(
        &self,
        client: &Client,
        namespace: &str,
        name: &str,
    ) -> Result<Resolved, ResolveError> {
        let key = (namespace.to_string(), name.to_string());
        let resolved = |resource_version: &str, provider: SharedProvider| Resolved {
            provider,
            identity: format!("secret/{namespace}/{name}@{resource_version}"),
            origin: Origin::Secret(name.to_string()),
        };
        let fresh = {
            let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            cache
                .get(&key)
                .filter(|c| c.read_at.is_some_and(|t| t.elapsed() < SECRET_FRESH_FOR))
                .map(|c| resolved(&c.resource_version, c.provider.clone()))
        };
        if let Some(fresh) = fresh {
            return Ok(fresh);
        }
        let forgotten = self.forgotten.load(Ordering::SeqCst);
        let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
        let secret = api
            .get_opt(name)
            .await
            .map_err(ResolveError::Kube)?
            .ok_or_else(|| ResolveError::SecretNotFound {
                namespace: namespace.to_string(),
                name: name.to_string(),
            })?;
        let rv = secret.resource_version().unwrap_or_default();
        let read_at = (self.forgotten.load(Ordering::SeqCst) == forgotten).then(Instant::now);
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let provider = match cache.get_mut(&key).filter(|c| c.resource_version == rv) {
            Some(cached) => {
                cached.read_at = read_at;
                cached.provider.clone()
            }
            None => {
                let creds = credentials_from_secret(name, secret.data.as_ref())?;
                let provider: SharedProvider =
                    Arc::new(StaticProvider::new(format!("secret/{name}"), creds));
                cache.insert(
                    key,
                    CachedSecret {
                        resource_version: rv.clone(),
                        provider: provider.clone(),
                        read_at,
                    },
                );
                provider
            }
        };
        Ok(resolved(&rv, provider))
    }

    async fn ambient(&self, client: &Client, namespace: &str) -> Result<Resolved, ResolveError> {
        if !self.ambient_allowed(client, namespace).await? {
            return Err(ResolveError::AmbientNotAllowed {
                namespace: namespace.to_string(),
            });
        }
        let provider = self
            .ambient
            .clone()
            .ok_or(ResolveError::AmbientUnavailable)?;
        Ok(Resolved {
            provider,
            identity: AMBIENT.to_string(),
            origin: Origin::Ambient,
        })
    }

    async fn ambient_allowed(
        &self,
        client: &Client,
        namespace: &str,
    ) -> Result<bool, ResolveError> {
        if self.policy.namespaces.contains(namespace) {
            return Ok(true);
        }
        let Some(selector) = &self.policy.selector else {
            return Ok(false);
        };
        let api: Api<Namespace> = Api::all(client.clone());
        let params = ListParams::default()
            .fields(&format!("metadata.name={namespace}"))
            .labels(selector);
        let found = api
            .list_metadata(&params)
            .await
            .map_err(ResolveError::Kube)?;
        Ok(!found.items.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ambient_credentials_are_shown_with_one_prefix() {
        assert_eq!(ambient_display("ambient/env"), "ambient/env");
        assert_eq!(ambient_display("ambient"), "ambient");
        assert_eq!(ambient_display("rrsa"), "ambient/rrsa");
        // A provider whose own name merely starts with the word is still prefixed.
        assert_eq!(ambient_display("ambientish"), "ambient/ambientish");
    }

    fn data(pairs: &[(&str, &[u8])]) -> BTreeMap<String, ByteString> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
            .collect()
    }

    #[test]
    fn a_secret_with_both_keys_gives_credentials_and_an_optional_token() {
        let d = data(&[
            (KEY_ACCESS_KEY_ID, b"LTAIid"),
            (KEY_ACCESS_KEY_SECRET, b"s3cr3t\n"),
        ]);
        assert_eq!(
            credentials_from_secret("ak", Some(&d)).unwrap(),
            Credentials::new("LTAIid", "s3cr3t")
        );
        let d = data(&[
            (KEY_ACCESS_KEY_ID, b"id"),
            (KEY_ACCESS_KEY_SECRET, b"s"),
            (KEY_SECURITY_TOKEN, b"tok"),
        ]);
        assert_eq!(
            credentials_from_secret("ak", Some(&d))
                .unwrap()
                .security_token
                .as_deref(),
            Some("tok")
        );
    }

    #[test]
    fn a_missing_key_is_named_and_no_value_is_shown() {
        let d = data(&[
            (KEY_ACCESS_KEY_ID, b"LTAIid"),
            (KEY_ACCESS_KEY_SECRET, b"  "),
        ]);
        let err = credentials_from_secret("team-ak", Some(&d)).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("\"team-ak\"") && msg.contains("\"accessKeySecret\""),
            "{msg}"
        );
        assert!(!msg.contains("LTAIid"), "{msg}");
        let err = credentials_from_secret("team-ak", None).unwrap_err();
        assert!(err.to_string().contains("accessKeyId"), "{err}");
    }

    #[test]
    fn the_ambient_refusal_says_how_to_allow_the_namespace() {
        let msg = ResolveError::AmbientNotAllowed {
            namespace: "team-a".into(),
        }
        .to_string();
        assert!(msg.contains("team-a"));
        assert!(msg.contains("--ambient-credentials-namespaces"));
        assert!(msg.contains("secretRef"));
    }
}
