//! Step 3: list. The seam to the ECS client, and the single-flight map that shares identical
//! listings due in the same moment.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use jiff::Timestamp;
use tokio::time::Instant;

use crate::ecs::{Listing, ListingError, PipelineFilter, SharedProvider};

/// Where listings come from: the paging ECS client in production, a fake in tests.
pub trait PipelineSource: Send + Sync + 'static {
    /// Lists every page of `filter` with the credentials of `provider`. The result is either
    /// complete or an error; nothing of a failed listing may be acted on.
    fn list(
        &self,
        filter: PipelineFilter,
        provider: SharedProvider,
    ) -> BoxFuture<'static, Result<Listing, ListingError>>;
}

/// How long a finished listing is handed to other queries asking the same question.
pub const SHARE_WINDOW: Duration = Duration::from_secs(5);

/// What makes two listings identical: whose credentials, and the normalized filter (region,
/// filters, page size).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ListingKey {
    /// The credentials identity, e.g. `secret/team-a/ak@1234` or `ambient/env`. Secret-based
    /// identities include the namespace, so listings are never shared across tenants' Secrets.
    pub identity: String,
    /// The filter in canonical order.
    pub filter: PipelineFilter,
}

impl ListingKey {
    /// The key of `filter` listed as `identity`.
    pub fn new(identity: impl Into<String>, filter: &PipelineFilter) -> Self {
        Self {
            identity: identity.into(),
            filter: filter.normalized(),
        }
    }
}

/// The outcome of a shared listing.
pub type SharedResult = Result<Arc<Listing>, ListingError>;

struct Flight {
    /// When it started, for the share window (the runtime's clock).
    started: Instant,
    /// When it started, for the triggers' "not before" (the wall clock, as triggers are dated).
    started_at: Timestamp,
    result: Shared<BoxFuture<'static, SharedResult>>,
}

/// A single-flight map over a [`PipelineSource`]: a listing already in flight for the same key is
/// joined, and a finished one is reused for [`SHARE_WINDOW`] after it started, but never by a
/// sync that needs a listing started after some moment (see [`SharedListings::list`]).
pub struct SharedListings {
    source: Arc<dyn PipelineSource>,
    window: Duration,
    flights: Arc<Mutex<HashMap<ListingKey, Flight>>>,
}

impl SharedListings {
    /// Shares the listings of `source` within `window`.
    pub fn new(source: Arc<dyn PipelineSource>, window: Duration) -> Self {
        Self {
            source,
            window,
            flights: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The listing for `key`, fetched with `provider` unless an identical one is in flight or
    /// fresh. With `not_before`, only a listing that started at or after that moment is joined
    /// or reused: a sync triggered by a change (a refresh request, a new spec, new credentials,
    /// drift) must see the cloud as it is after the trigger, not a listing already under way.
    // `ListingError` is the client's error type, returned as the seam defines it.
    #[allow(clippy::result_large_err)]
    pub async fn list(
        &self,
        key: ListingKey,
        provider: SharedProvider,
        not_before: Option<Timestamp>,
    ) -> SharedResult {
        let shared = {
            let mut flights = self.flights.lock().unwrap_or_else(|e| e.into_inner());
            let now = Instant::now();
            let window = self.window;
            flights.retain(|_, f| f.result.peek().is_none() || now - f.started < window);
            let usable = flights
                .get(&key)
                .filter(|f| not_before.is_none_or(|t| f.started_at >= t));
            match usable {
                Some(flight) => flight.result.clone(),
                None => {
                    let fut = self
                        .source
                        .list(key.filter.clone(), provider)
                        .map(|r| r.map(Arc::new))
                        .boxed()
                        .shared();
                    // An older flight for the key keeps serving those who already joined it.
                    flights.insert(
                        key.clone(),
                        Flight {
                            started: now,
                            started_at: Timestamp::now(),
                            result: fut.clone(),
                        },
                    );
                    self.forget_after_window(key, now);
                    fut
                }
            }
        };
        shared.await
    }
}

impl SharedListings {
    /// Drops the flight of `key` started at `started` once it has finished and its window has
    /// passed, so a finished listing (every item of it) is not kept until the next listing.
    fn forget_after_window(&self, key: ListingKey, started: Instant) {
        let flights = Arc::downgrade(&self.flights);
        let window = self.window;
        tokio::spawn(async move {
            tokio::time::sleep_until(started + window).await;
            // Still in flight: look again one window (at least a second) later.
            while still_in_flight(&flights, &key, started) {
                tokio::time::sleep(window.max(Duration::from_secs(1))).await;
            }
        });
    }
}

/// Whether the flight of `key` started at `started` is still running; a finished one is
/// removed.
fn still_in_flight(
    flights: &std::sync::Weak<Mutex<HashMap<ListingKey, Flight>>>,
    key: &ListingKey,
    started: Instant,
) -> bool {
    let Some(flights) = flights.upgrade() else {
        return false;
    };
    let mut flights = flights.lock().unwrap_or_else(|e| e.into_inner());
    match flights.get(key) {
        Some(f) if f.started == started && f.result.peek().is_none() => true,
        Some(f) if f.started == started => {
            flights.remove(key);
            false
        }
        _ => false,
    }
}

impl PipelineSource for crate::ecs::EcsClient {
    fn list(
        &self,
        filter: PipelineFilter,
        provider: SharedProvider,
    ) -> BoxFuture<'static, Result<Listing, ListingError>> {
        let client = self.clone();
        Box::pin(async move { client.list_all(&filter, &provider).await })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ecs::credentials::{Credentials, StaticProvider};
    use std::sync::atomic::{AtomicU32, Ordering};

    #[derive(Default)]
    struct Counting(AtomicU32);

    impl PipelineSource for Arc<Counting> {
        fn list(
            &self,
            _filter: PipelineFilter,
            _provider: SharedProvider,
        ) -> BoxFuture<'static, Result<Listing, ListingError>> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Box::pin(async {
                tokio::time::sleep(Duration::from_millis(100)).await;
                Ok(Listing::default())
            })
        }
    }

    fn provider() -> SharedProvider {
        Arc::new(StaticProvider::new("test", Credentials::new("id", "s")))
    }

    #[tokio::test(start_paused = true)]
    async fn identical_listings_due_together_are_fetched_once() {
        let counting = Arc::new(Counting::default());
        let shared = SharedListings::new(Arc::new(counting.clone()), SHARE_WINDOW);
        let mut a = PipelineFilter::region("cn-hangzhou");
        a.image_pipeline_ids = vec!["ip-b".into(), "ip-a".into()];
        let mut b = a.clone();
        b.image_pipeline_ids.reverse();
        let (ra, rb) = tokio::join!(
            shared.list(ListingKey::new("ambient", &a), provider(), None),
            shared.list(ListingKey::new("ambient", &b), provider(), None),
        );
        assert!(ra.is_ok() && rb.is_ok());
        assert_eq!(counting.0.load(Ordering::SeqCst), 1);
        // Within the window, a finished listing is reused.
        shared
            .list(ListingKey::new("ambient", &a), provider(), None)
            .await
            .unwrap();
        assert_eq!(counting.0.load(Ordering::SeqCst), 1);
        // After it, a new one is fetched.
        tokio::time::sleep(SHARE_WINDOW).await;
        shared
            .list(ListingKey::new("ambient", &a), provider(), None)
            .await
            .unwrap();
        assert_eq!(counting.0.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn listings_with_other_credentials_or_page_size_are_not_shared() {
        let counting = Arc::new(Counting::default());
        let shared = SharedListings::new(Arc::new(counting.clone()), SHARE_WINDOW);
        let a = PipelineFilter::region("cn-hangzhou");
        let mut small = a.clone();
        small.page_size = 10;
        let _ = tokio::join!(
            shared.list(ListingKey::new("secret/ns1/ak@1", &a), provider(), None),
            shared.list(ListingKey::new("secret/ns2/ak@1", &a), provider(), None),
            shared.list(ListingKey::new("secret/ns1/ak@1", &small), provider(), None),
        );
        assert_eq!(counting.0.load(Ordering::SeqCst), 3);
    }

    /// A wall-clock moment after every listing started so far, once it has come (the runtime's
    /// paused clock does not move the wall clock).
    fn a_moment_later() -> Timestamp {
        let later = Timestamp::now() + jiff::SignedDuration::from_millis(1);
        while Timestamp::now() < later {
            std::thread::sleep(Duration::from_millis(1));
        }
        later
    }

    #[tokio::test(start_paused = true)]
    async fn a_triggered_sync_never_uses_a_listing_that_started_before_its_trigger() {
        let counting = Arc::new(Counting::default());
        let shared = Arc::new(SharedListings::new(
            Arc::new(counting.clone()),
            SHARE_WINDOW,
        ));
        let key = || ListingKey::new("ambient", &PipelineFilter::region("cn-hangzhou"));
        // A scheduled listing is under way...
        let scheduled = {
            let shared = shared.clone();
            tokio::spawn(async move { shared.list(key(), provider(), None).await })
        };
        tokio::task::yield_now().await;
        assert_eq!(counting.0.load(Ordering::SeqCst), 1);
        // ...when a refresh is requested: it lists again instead of joining.
        let trigger = a_moment_later();
        shared.list(key(), provider(), Some(trigger)).await.unwrap();
        assert_eq!(counting.0.load(Ordering::SeqCst), 2);
        scheduled.await.unwrap().unwrap();
        // The fresh listing is shared with whatever comes after the trigger.
        shared.list(key(), provider(), Some(trigger)).await.unwrap();
        shared.list(key(), provider(), None).await.unwrap();
        assert_eq!(counting.0.load(Ordering::SeqCst), 2);
        // A finished listing within the window is not reused by a later trigger either.
        let later = a_moment_later();
        shared.list(key(), provider(), Some(later)).await.unwrap();
        assert_eq!(counting.0.load(Ordering::SeqCst), 3);
    }
}
