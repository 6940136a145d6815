//! Caching and early refresh of short-lived credentials.
//!
//! Credentials are refreshed in the background once less than [`REFRESH_MARGIN`] of their
//! lifetime remains, while callers keep using the still-valid ones: no ECS call ever waits on STS
//! or the metadata service at the moment of expiry. Only a cold start or credentials that
//! already expired make a caller wait.

use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use jiff::Timestamp;
use tokio::sync::Mutex;

use crate::credentials::{Credentials, CredentialsError};

/// Refresh when less than this much lifetime remains.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(180);

/// Credentials together with the moment they stop working.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expiring {
    /// The credentials.
    pub credentials: Credentials,
    /// When they expire.
    pub expiration: Timestamp,
}

/// Fetches a fresh set of expiring credentials (one STS or metadata round trip).
pub trait Fetch: Send + Sync + std::fmt::Debug + 'static {
    /// Fetches new credentials.
    fn fetch(&self) -> BoxFuture<'_, Result<Expiring, CredentialsError>>;
}

/// What to do with the cache at `now`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Use the cached credentials.
    Fresh,
    /// Use the cached credentials and refresh in the background.
    RefreshSoon,
    /// Nothing usable: fetch and wait.
    Expired,
}

/// Decides whether `cached` can be used at `now`.
pub fn freshness(cached: Option<&Expiring>, now: Timestamp, margin: Duration) -> Freshness {
    let Some(cached) = cached else {
        return Freshness::Expired;
    };
    let remaining = cached.expiration.as_second() - now.as_second();
    if remaining <= 5 {
        Freshness::Expired
    } else if remaining < i64::try_from(margin.as_secs()).unwrap_or(i64::MAX) {
        Freshness::RefreshSoon
    } else {
        Freshness::Fresh
    }
}

#[derive(Debug, Default)]
struct State {
    cached: Option<Expiring>,
    refreshing: bool,
}

/// A cache around a [`Fetch`] with background refresh.
#[derive(Debug)]
pub struct Refreshing<F> {
    fetcher: Arc<F>,
    state: Arc<std::sync::Mutex<State>>,
    fetch_lock: Arc<Mutex<()>>,
    margin: Duration,
}

// Not derived: a derive would require `F: Clone`, but only the `Arc`s are cloned.
impl<F> Clone for Refreshing<F> {
    fn clone(&self) -> Self {
        Self {
            fetcher: self.fetcher.clone(),
            state: self.state.clone(),
            fetch_lock: self.fetch_lock.clone(),
            margin: self.margin,
        }
    }
}

impl<F: Fetch> Refreshing<F> {
    /// Wraps `fetcher`, refreshing `margin` before expiry.
    pub fn new(fetcher: F, margin: Duration) -> Self {
        Self {
            fetcher: Arc::new(fetcher),
            state: Arc::default(),
            fetch_lock: Arc::default(),
            margin,
        }
    }

    fn snapshot(&self) -> Option<Expiring> {
        let state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.cached.clone()
    }

    /// Marks a background refresh as started; `false` when one already runs. One lock for the
    /// test and the set, so concurrent callers start one refresh, not one each.
    fn begin_refresh(&self) -> bool {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        !std::mem::replace(&mut state.refreshing, true)
    }

    fn store(&self, fresh: Option<Expiring>) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(fresh) = fresh {
            state.cached = Some(fresh);
        }
        state.refreshing = false;
    }

    /// Current credentials, fetching only when none are usable.
    pub async fn get(&self) -> Result<Credentials, CredentialsError> {
        if let Some(cached) = self.snapshot() {
            match freshness(Some(&cached), Timestamp::now(), self.margin) {
                Freshness::Fresh => return Ok(cached.credentials),
                Freshness::RefreshSoon => {
                    if self.begin_refresh() {
                        self.refresh_in_background();
                    }
                    return Ok(cached.credentials);
                }
                Freshness::Expired => {}
            }
        }
        let _guard = self.fetch_lock.lock().await;
        // Another caller may have fetched while this one waited for the lock.
        if let Some(cached) = self.snapshot() {
            if freshness(Some(&cached), Timestamp::now(), self.margin) != Freshness::Expired {
                return Ok(cached.credentials);
            }
        }
        let fresh = self.fetcher.fetch().await?;
        let credentials = fresh.credentials.clone();
        self.store(Some(fresh));
        Ok(credentials)
    }

    /// Fetches in a task of its own; call only after [`Self::begin_refresh`] returned `true`.
    fn refresh_in_background(&self) {
        let this = self.clone();
        tokio::spawn(async move {
            let _guard = this.fetch_lock.lock().await;
            // A caller whose credentials had expired may have fetched while this task waited.
            let current = this.snapshot();
            if freshness(current.as_ref(), Timestamp::now(), this.margin) == Freshness::Fresh {
                this.store(None);
                return;
            }
            match this.fetcher.fetch().await {
                Ok(fresh) => this.store(Some(fresh)),
                Err(e) => {
                    tracing::warn!(error = %e, "background credential refresh failed; keeping the current credentials until they expire");
                    this.store(None);
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    #[derive(Debug)]
    struct Counting {
        calls: Arc<AtomicU32>,
        lifetime: i64,
    }

    impl Fetch for Counting {
        fn fetch(&self) -> BoxFuture<'_, Result<Expiring, CredentialsError>> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            let lifetime = self.lifetime;
            Box::pin(async move {
                Ok(Expiring {
                    credentials: Credentials::new(format!("id-{n}"), "s"),
                    expiration: Timestamp::from_second(Timestamp::now().as_second() + lifetime)
                        .unwrap(),
                })
            })
        }
    }

    /// The first fetch answers at once; later ones wait until `release` is notified.
    #[derive(Debug)]
    struct Gated {
        calls: Arc<AtomicU32>,
        release: Arc<tokio::sync::Semaphore>,
    }

    impl Fetch for Gated {
        fn fetch(&self) -> BoxFuture<'_, Result<Expiring, CredentialsError>> {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            Box::pin(async move {
                if n > 1 {
                    let _permit = self.release.acquire().await;
                }
                Ok(Expiring {
                    credentials: Credentials::new(format!("id-{n}"), "s"),
                    expiration: Timestamp::from_second(Timestamp::now().as_second() + 100).unwrap(),
                })
            })
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_callers_start_one_background_refresh() {
        let calls = Arc::new(AtomicU32::new(0));
        let release = Arc::new(tokio::sync::Semaphore::new(0));
        let r = Refreshing::new(
            Gated {
                calls: calls.clone(),
                release: release.clone(),
            },
            REFRESH_MARGIN,
        );
        assert_eq!(r.get().await.unwrap().access_key_id, "id-1");
        let gets: Vec<_> = (0..32)
            .map(|_| {
                let r = r.clone();
                tokio::spawn(async move { r.get().await.unwrap().access_key_id })
            })
            .collect();
        for g in gets {
            assert_eq!(g.await.unwrap(), "id-1");
        }
        // Every caller was served from the cache while the one refresh waits.
        for _ in 0..100 {
            if calls.load(Ordering::SeqCst) >= 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        release.add_permits(1);
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + s).unwrap()
    }

    #[test]
    fn freshness_follows_the_margin() {
        let e = Expiring {
            credentials: Credentials::new("a", "b"),
            expiration: at(1_000),
        };
        let m = Duration::from_secs(180);
        assert_eq!(freshness(None, at(0), m), Freshness::Expired);
        assert_eq!(freshness(Some(&e), at(0), m), Freshness::Fresh);
        assert_eq!(freshness(Some(&e), at(900), m), Freshness::RefreshSoon);
        assert_eq!(freshness(Some(&e), at(999), m), Freshness::Expired);
    }

    #[tokio::test]
    async fn long_lived_credentials_are_fetched_once() {
        let calls = Arc::new(AtomicU32::new(0));
        let r = Refreshing::new(
            Counting {
                calls: calls.clone(),
                lifetime: 3_600,
            },
            REFRESH_MARGIN,
        );
        for _ in 0..5 {
            assert_eq!(r.get().await.unwrap().access_key_id, "id-1");
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn credentials_near_expiry_are_served_while_refreshing_in_the_background() {
        let calls = Arc::new(AtomicU32::new(0));
        // Lifetime 100 s is inside the 180 s margin: every get refreshes in the background.
        let r = Refreshing::new(
            Counting {
                calls: calls.clone(),
                lifetime: 100,
            },
            REFRESH_MARGIN,
        );
        assert_eq!(r.get().await.unwrap().access_key_id, "id-1");
        // Served from cache immediately, refresh started.
        assert_eq!(r.get().await.unwrap().access_key_id, "id-1");
        for _ in 0..50 {
            if calls.load(Ordering::SeqCst) >= 2 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(r.get().await.unwrap().access_key_id, "id-2");
    }
}
