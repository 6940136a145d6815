//! Step 3: list. The seam to the ECS client, and the single-flight map that shares identical
//! listings due in the same moment, page by page (see [`feed`](super::feed)).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use jiff::Timestamp;
use tokio::time::Instant;

use super::feed::{Feed, FeedReader, KEEP_BUDGET};
use crate::ecs::{
    KnownLists, Listing, ListingError, PageEvent, PipelineFilter, PipelinePage, SharedProvider,
    list_hash,
};

/// Where listings come from: the paging ECS client in production, a fake in tests.
pub trait PipelineSource: Send + Sync + 'static {
    /// Lists every page of `filter` with the credentials of `provider`. The result is either
    /// complete or an error; nothing of a failed listing may be acted on.
    fn list(
        &self,
        filter: PipelineFilter,
        provider: SharedProvider,
    ) -> BoxFuture<'static, Result<Listing, ListingError>>;

    /// The same listing page by page, as the pages arrive; the stream ends after the last page
    /// or with the first error. By default the complete [`list`](Self::list) cut into pages of
    /// the filter's page size (fakes); the ECS client streams.
    fn pages(
        &self,
        filter: PipelineFilter,
        provider: SharedProvider,
    ) -> BoxStream<'static, Result<PageEvent, ListingError>> {
        let page_size = usize::try_from(filter.page_size).unwrap_or(1).max(1);
        self.list(filter, provider)
            .into_stream()
            .flat_map(move |result| {
                let events: Vec<_> = match result {
                    Ok(listing) => pages_of(listing, page_size).into_iter().map(Ok).collect(),
                    Err(e) => vec![Err(e)],
                };
                futures::stream::iter(events)
            })
            .boxed()
    }

    /// [`pages`](Self::pages) for a sync that remembers pages (`known`: the list hashes of the
    /// pages it remembers; see [`crate::ecs::EcsClient::pages_known`]): every page carries a
    /// list hash. By default (fakes) the hash of the page's items, and no page is left
    /// undecoded; the ECS client hashes the list's text and leaves known pages undecoded.
    fn pages_known(
        &self,
        filter: PipelineFilter,
        provider: SharedProvider,
        known: Option<KnownLists>,
    ) -> BoxStream<'static, Result<PageEvent, ListingError>> {
        let pages = self.pages(filter, provider);
        match known {
            Some(_) => pages.map(with_items_hash).boxed(),
            None => pages,
        }
    }
}

/// `event` with, when it is a page without a list hash, the hash of its items.
#[allow(clippy::result_large_err)] // ListingError carries EcsError, the boundary's fixed type.
fn with_items_hash(mut event: Result<PageEvent, ListingError>) -> Result<PageEvent, ListingError> {
    if let Ok(PageEvent::Page(page)) = &mut event {
        if page.list_hash.is_none() {
            let text = format!("{:?} {}", page.items, page.skipped_items);
            page.list_hash = Some(list_hash(&text));
            page.list_len = Some(text.len());
        }
    }
    event
}

/// A complete listing as pages of `page_size` (at least one page).
fn pages_of(listing: Listing, page_size: usize) -> Vec<PageEvent> {
    let mut items = listing.items.into_iter().peekable();
    let mut pages = Vec::new();
    let mut skipped = listing.skipped_items;
    while pages.is_empty() || items.peek().is_some() {
        pages.push(PageEvent::Page(PipelinePage {
            items: items.by_ref().take(page_size).collect(),
            skipped_items: std::mem::take(&mut skipped),
            request_id: listing.last_request_id.clone(),
            ..PipelinePage::default()
        }));
    }
    pages
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

/// Whether a listing is offered to other syncs: only a sync of another query listing alike
/// can join one, so a query alone with its filter lists without keeping pages for others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sharing {
    /// Joined by syncs of the same key in flight, reused within the window, its pages kept
    /// for them up to the budget.
    Offered,
    /// Neither joined nor reused: its pages are let go as soon as they are read.
    Alone,
}

struct Flight {
    /// When it started, for the share window (the runtime's clock).
    started: Instant,
    /// When it started, for the triggers' "not before" (the wall clock, as triggers are dated).
    started_at: Timestamp,
    feed: Arc<Feed>,
}

impl Flight {
    /// Whether it may still be joined at `now`: its pages are all kept, and it is in flight or
    /// finished within the window.
    fn is_joinable(&self, now: Instant, window: Duration) -> bool {
        !self.feed.is_streaming() && (!self.feed.has_ended() || now - self.started < window)
    }
}

/// A single-flight map over a [`PipelineSource`]: a listing already in flight for the same key is
/// joined, and a finished one is reused for [`SHARE_WINDOW`] after it started, but never by a
/// sync that needs a listing started after some moment (see [`SharedListings::list`]). A
/// listing too big to keep ([`KEEP_BUDGET`]) is read page by page by the syncs that joined it
/// before it outgrew the budget; later ones list for themselves.
pub struct SharedListings {
    source: Arc<dyn PipelineSource>,
    window: Duration,
    budget: usize,
    flights: Arc<Mutex<HashMap<ListingKey, Flight>>>,
}

impl SharedListings {
    /// Shares the listings of `source` within `window`.
    pub fn new(source: Arc<dyn PipelineSource>, window: Duration) -> Self {
        Self::with_budget(source, window, KEEP_BUDGET)
    }

    /// Shares the listings of `source` within `window`, keeping up to `budget` bytes of each
    /// listing's pages for syncs that join late.
    pub fn with_budget(source: Arc<dyn PipelineSource>, window: Duration, budget: usize) -> Self {
        Self {
            source,
            window,
            budget,
            flights: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// The pages of the listing for `key`, fetched with `provider` unless an identical one is
    /// in flight or fresh (and still kept whole). With `not_before`, only a listing that started
    /// at or after that moment is joined or reused: a sync triggered by a change (a refresh
    /// request, a new spec, new credentials, drift) must see the cloud as it is after the
    /// trigger, not a listing already under way. With `known` (the list hashes of the pages
    /// the caller remembers), a listing it starts carries list hashes and leaves those pages
    /// undecoded ([`PipelineSource::pages_known`]); a listing it joins is as its starter asked.
    /// [`Sharing::Alone`] neither joins nor offers: the listing is the caller's own, each page
    /// let go once read.
    pub fn list(
        &self,
        key: ListingKey,
        provider: SharedProvider,
        not_before: Option<Timestamp>,
        known: Option<KnownLists>,
        sharing: Sharing,
    ) -> FeedReader {
        if sharing == Sharing::Alone {
            let pages = self.source.pages_known(key.filter, provider, known);
            return Feed::start(pages, 0).1;
        }
        let mut flights = self.flights.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let window = self.window;
        flights.retain(|_, f| f.is_joinable(now, window));
        let joined = flights
            .get(&key)
            .filter(|f| not_before.is_none_or(|t| f.started_at >= t))
            .and_then(|f| f.feed.join());
        if let Some(reader) = joined {
            return reader;
        }
        let pages = self.source.pages_known(key.filter.clone(), provider, known);
        let (feed, reader) = Feed::start(pages, self.budget);
        // An older flight for the key keeps serving those who already joined it.
        flights.insert(
            key.clone(),
            Flight {
                started: now,
                started_at: Timestamp::now(),
                feed: feed.clone(),
            },
        );
        self.forget_after_window(key, now);
        reader
    }
}

impl SharedListings {
    /// Drops the flight of `key` started at `started` once it has finished and its window has
    /// passed, so a finished listing (every page kept of it) is not kept until the next
    /// listing.
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
        Some(f) if f.started == started && !f.feed.has_ended() && !f.feed.is_streaming() => true,
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

    fn pages(
        &self,
        filter: PipelineFilter,
        provider: SharedProvider,
    ) -> BoxStream<'static, Result<PageEvent, ListingError>> {
        crate::ecs::EcsClient::pages(self, filter, provider).boxed()
    }

    fn pages_known(
        &self,
        filter: PipelineFilter,
        provider: SharedProvider,
        known: Option<KnownLists>,
    ) -> BoxStream<'static, Result<PageEvent, ListingError>> {
        crate::ecs::EcsClient::pages_known(self, filter, provider, known).boxed()
    }
}

/// Reads a feed to its end: the pages (after the last restart), or the error that ended it.
#[cfg(test)]
async fn read_all(mut reader: FeedReader) -> Result<Vec<Arc<PageEvent>>, ListingError> {
    let mut pages = Vec::new();
    while let Some(item) = reader.next().await {
        let event = item?;
        if matches!(*event, PageEvent::Restarted) {
            pages.clear();
        } else {
            pages.push(event);
        }
    }
    Ok(pages)
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

    /// Every page of `key`'s listing for a sync without a trigger or known pages.
    async fn list_untriggered(
        shared: &SharedListings,
        key: ListingKey,
        sharing: Sharing,
    ) -> Result<Vec<Arc<PageEvent>>, ListingError> {
        read_all(shared.list(key, provider(), None, None, sharing)).await
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
            list_untriggered(&shared, ListingKey::new("ambient", &a), Sharing::Offered),
            list_untriggered(&shared, ListingKey::new("ambient", &b), Sharing::Offered),
        );
        assert!(ra.is_ok() && rb.is_ok());
        assert_eq!(counting.0.load(Ordering::SeqCst), 1);
        // Within the window, a finished listing is reused.
        list_untriggered(&shared, ListingKey::new("ambient", &a), Sharing::Offered)
            .await
            .unwrap();
        assert_eq!(counting.0.load(Ordering::SeqCst), 1);
        // After it, a new one is fetched.
        tokio::time::sleep(SHARE_WINDOW).await;
        list_untriggered(&shared, ListingKey::new("ambient", &a), Sharing::Offered)
            .await
            .unwrap();
        assert_eq!(counting.0.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_listing_alone_neither_joins_nor_is_joined() {
        let counting = Arc::new(Counting::default());
        let shared = SharedListings::new(Arc::new(counting.clone()), SHARE_WINDOW);
        let a = PipelineFilter::region("cn-hangzhou");
        let key = || ListingKey::new("ambient", &a);
        let (offered, alone) = tokio::join!(
            list_untriggered(&shared, key(), Sharing::Offered),
            list_untriggered(&shared, key(), Sharing::Alone),
        );
        assert!(offered.is_ok() && alone.is_ok());
        assert_eq!(
            counting.0.load(Ordering::SeqCst),
            2,
            "alone lists for itself"
        );
        list_untriggered(&shared, key(), Sharing::Alone)
            .await
            .unwrap();
        assert_eq!(
            counting.0.load(Ordering::SeqCst),
            3,
            "nor reuses a finished one"
        );
        list_untriggered(&shared, key(), Sharing::Offered)
            .await
            .unwrap();
        assert_eq!(
            counting.0.load(Ordering::SeqCst),
            3,
            "an offered one is reused as before"
        );
        let mut reader = shared.list(key(), provider(), None, None, Sharing::Alone);
        let first = reader.next().await;
        assert!(matches!(first, Some(Ok(_))));
        assert!(reader.feed().is_streaming(), "nothing kept for others");
    }

    #[tokio::test(start_paused = true)]
    async fn listings_with_other_credentials_or_page_size_are_not_shared() {
        let counting = Arc::new(Counting::default());
        let shared = SharedListings::new(Arc::new(counting.clone()), SHARE_WINDOW);
        let a = PipelineFilter::region("cn-hangzhou");
        let mut small = a.clone();
        small.page_size = 10;
        let _ = tokio::join!(
            list_untriggered(
                &shared,
                ListingKey::new("secret/ns1/ak@1", &a),
                Sharing::Offered
            ),
            list_untriggered(
                &shared,
                ListingKey::new("secret/ns2/ak@1", &a),
                Sharing::Offered
            ),
            list_untriggered(
                &shared,
                ListingKey::new("secret/ns1/ak@1", &small),
                Sharing::Offered
            ),
        );
        assert_eq!(counting.0.load(Ordering::SeqCst), 3);
    }

    /// A source whose listings have `n` pipelines with a kilobyte of content each.
    struct Big {
        n: usize,
        calls: AtomicU32,
    }

    impl PipelineSource for Arc<Big> {
        fn list(
            &self,
            _filter: PipelineFilter,
            _provider: SharedProvider,
        ) -> BoxFuture<'static, Result<Listing, ListingError>> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            let items = (0..self.n)
                .map(|i| crate::ecs::ImagePipelineItem {
                    image_pipeline_id: format!("ip-{i}"),
                    build_content: Some("x".repeat(1024)),
                    ..Default::default()
                })
                .collect();
            Box::pin(futures::future::ready(Ok(Listing {
                items,
                ..Listing::default()
            })))
        }
    }

    #[tokio::test]
    async fn a_listing_bigger_than_the_budget_streams_and_is_not_kept_for_later_syncs() {
        let big = Arc::new(Big {
            n: 2_000,
            calls: AtomicU32::new(0),
        });
        // About 2 MiB of pages against a budget of 256 KiB.
        let shared = SharedListings::with_budget(Arc::new(big.clone()), SHARE_WINDOW, 256 * 1024);
        let key = || ListingKey::new("ambient", &PipelineFilter::region("cn-hangzhou"));
        let pages = list_untriggered(&shared, key(), Sharing::Offered)
            .await
            .unwrap();
        let items: usize = pages
            .iter()
            .map(|p| match &**p {
                PageEvent::Page(page) => page.items.len(),
                PageEvent::Restarted => 0,
            })
            .sum();
        assert_eq!(
            items, 2_000,
            "every page read, in pages of the filter's size"
        );
        assert!(pages.len() >= 4);
        // Within the window, a small listing would be reused; this one was let go.
        list_untriggered(&shared, key(), Sharing::Offered)
            .await
            .unwrap();
        assert_eq!(big.calls.load(Ordering::SeqCst), 2);
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
            tokio::spawn(async move { list_untriggered(&shared, key(), Sharing::Offered).await })
        };
        tokio::task::yield_now().await;
        assert_eq!(counting.0.load(Ordering::SeqCst), 1);
        // ...when a refresh is requested: it lists again instead of joining.
        let trigger = a_moment_later();
        read_all(shared.list(key(), provider(), Some(trigger), None, Sharing::Offered))
            .await
            .unwrap();
        assert_eq!(counting.0.load(Ordering::SeqCst), 2);
        scheduled.await.unwrap().unwrap();
        // The fresh listing is shared with whatever comes after the trigger.
        read_all(shared.list(key(), provider(), Some(trigger), None, Sharing::Offered))
            .await
            .unwrap();
        list_untriggered(&shared, key(), Sharing::Offered)
            .await
            .unwrap();
        assert_eq!(counting.0.load(Ordering::SeqCst), 2);
        // A finished listing within the window is not reused by a later trigger either.
        let later = a_moment_later();
        read_all(shared.list(key(), provider(), Some(later), None, Sharing::Offered))
            .await
            .unwrap();
        assert_eq!(counting.0.load(Ordering::SeqCst), 3);
    }
}
