//! One listing's pages, fetched once and read by every sync that joined it.
//!
//! Why: a sync works page by page (decode, compare, write, let go), so that its memory does not
//! grow with the listing; and identical listings due together are fetched once. A feed keeps
//! the pages it has fetched while they fit in a small budget, so that syncs joining late, or
//! within the share window after the end, read the same pages. Once the listing outgrows the
//! budget the feed streams: nobody else may join, each page is let go as soon as every reader
//! has passed it, and the fetching waits for the slowest reader (a page or two ahead of it).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use futures::StreamExt;
use futures::stream::BoxStream;
use tokio::sync::watch;

use crate::ecs::{ImagePipelineItem, ListingError, PageEvent};

/// What a reader gets: the next page (or restart) of the listing, or the error that ended it.
pub type FeedItem = Result<Arc<PageEvent>, ListingError>;

/// How many bytes of pages a feed keeps for readers that may still join (about 4,000
/// pipelines); past it the feed streams.
pub const KEEP_BUDGET: usize = 4 * 1024 * 1024;

/// How many pages the fetching may run ahead of the slowest reader once the feed streams: the
/// next page is on its way while the current one is written.
const LOOKAHEAD: usize = 2;

#[derive(Debug, Default)]
struct State {
    /// Items from `first` on; the earlier ones have been let go.
    items: VecDeque<FeedItem>,
    /// The position of `items[0]` in the listing.
    first: usize,
    /// Whether the listing has ended (after its last page or its error).
    ended: bool,
    /// Estimated bytes of the kept pages.
    kept_bytes: usize,
    /// Whether the listing outgrew the budget: no joining, pages let go once read.
    streaming: bool,
    /// Each reader's position (the next item it reads); `None` for a slot of a reader gone.
    readers: Vec<Option<usize>>,
}

impl State {
    fn end(&self) -> usize {
        self.first + self.items.len()
    }

    fn slowest_reader(&self) -> Option<usize> {
        self.readers.iter().flatten().copied().min()
    }

    fn has_readers(&self) -> bool {
        self.readers.iter().any(Option::is_some)
    }

    /// Lets go of the items every reader has passed, once streaming.
    fn let_go_of_read(&mut self) {
        if !self.streaming {
            return;
        }
        let keep_from = self.slowest_reader().unwrap_or(self.end());
        while self.first < keep_from {
            if let Some(item) = self.items.pop_front() {
                self.kept_bytes = self.kept_bytes.saturating_sub(weight(&item));
            }
            self.first += 1;
        }
    }
}

/// A listing being fetched (or fetched), shared by its readers.
#[derive(Debug)]
pub struct Feed {
    state: Mutex<State>,
    /// Bumped when an item arrives or the listing ends (fetching → readers).
    arrived: watch::Sender<()>,
    /// Bumped when a reader moves on or goes (readers → fetching).
    progressed: watch::Sender<()>,
    budget: usize,
}

impl Feed {
    /// Starts fetching `events` in a task of its own, keeping up to `budget` bytes of pages for
    /// readers that join later; returns the feed and its first reader.
    pub fn start(
        events: BoxStream<'static, Result<PageEvent, ListingError>>,
        budget: usize,
    ) -> (Arc<Self>, FeedReader) {
        let feed = Arc::new(Self {
            state: Mutex::new(State {
                readers: vec![Some(0)],
                ..State::default()
            }),
            arrived: watch::channel(()).0,
            progressed: watch::channel(()).0,
            budget,
        });
        let reader = FeedReader {
            feed: feed.clone(),
            slot: 0,
            arrived: feed.arrived.subscribe(),
        };
        tokio::spawn(fetch(Arc::downgrade(&feed), events));
        (feed, reader)
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A reader from the first page, unless the feed streams (it has let go of pages already).
    pub fn join(self: &Arc<Self>) -> Option<FeedReader> {
        let mut state = self.state();
        if state.streaming || state.first > 0 {
            return None;
        }
        let slot = match state.readers.iter().position(Option::is_none) {
            Some(free) => {
                state.readers[free] = Some(0);
                free
            }
            None => {
                state.readers.push(Some(0));
                state.readers.len() - 1
            }
        };
        Some(FeedReader {
            feed: self.clone(),
            slot,
            arrived: self.arrived.subscribe(),
        })
    }

    /// Whether the listing has ended.
    pub fn has_ended(&self) -> bool {
        self.state().ended
    }

    /// Whether the feed streams (outgrew its budget): it can be neither joined nor reused.
    pub fn is_streaming(&self) -> bool {
        self.state().streaming
    }

    /// Estimated bytes of the pages it keeps.
    pub fn kept_bytes(&self) -> usize {
        self.state().kept_bytes
    }
}

/// Fetches every event into the feed, waiting for the readers once it streams. Stops early
/// when the feed is gone, or streams and nobody reads it any more.
async fn fetch(
    feed: std::sync::Weak<Feed>,
    mut events: BoxStream<'static, Result<PageEvent, ListingError>>,
) {
    loop {
        let Some(strong) = feed.upgrade() else {
            return;
        };
        let mut progressed = strong.progressed.subscribe();
        drop(strong);
        // Wait for room: at most LOOKAHEAD items ahead of the slowest reader once streaming.
        loop {
            let Some(strong) = feed.upgrade() else {
                return;
            };
            {
                let state = strong.state();
                if state.streaming && !state.has_readers() {
                    return;
                }
                let ahead = state.end() - state.slowest_reader().unwrap_or(state.end());
                if !state.streaming || ahead < LOOKAHEAD {
                    break;
                }
            }
            drop(strong);
            if progressed.changed().await.is_err() {
                return;
            }
        }
        let next = events.next().await;
        let Some(strong) = feed.upgrade() else {
            return;
        };
        {
            let mut state = strong.state();
            match next {
                Some(item) => {
                    let item = item.map(Arc::new);
                    let failed = item.is_err();
                    state.kept_bytes += weight(&item);
                    state.items.push_back(item);
                    if state.kept_bytes > strong.budget {
                        state.streaming = true;
                    }
                    state.let_go_of_read();
                    state.ended = failed;
                }
                None => state.ended = true,
            }
        }
        strong.arrived.send_replace(());
        if strong.has_ended() {
            return;
        }
    }
}

/// One sync's place in a feed.
#[derive(Debug)]
pub struct FeedReader {
    feed: Arc<Feed>,
    slot: usize,
    arrived: watch::Receiver<()>,
}

impl FeedReader {
    /// The feed it reads (tests look at it).
    #[cfg(test)]
    pub fn feed(&self) -> &Arc<Feed> {
        &self.feed
    }

    /// The next item, in order; `None` after the last page (or after an error, which is always
    /// the last item).
    pub async fn next(&mut self) -> Option<FeedItem> {
        loop {
            self.arrived.borrow_and_update();
            {
                let mut state = self.feed.state();
                let position = state.readers[self.slot]?;
                if position < state.end() {
                    // Items before `first` are let go only once every reader passed them.
                    let item = state.items.get(position - state.first).cloned();
                    state.readers[self.slot] = Some(position + 1);
                    state.let_go_of_read();
                    drop(state);
                    self.feed.progressed.send_replace(());
                    return item;
                }
                if state.ended {
                    return None;
                }
            }
            if self.arrived.changed().await.is_err() {
                return None;
            }
        }
    }
}

impl Drop for FeedReader {
    fn drop(&mut self) {
        let mut state = self.feed.state();
        state.readers[self.slot] = None;
        state.let_go_of_read();
        drop(state);
        self.feed.progressed.send_replace(());
    }
}

/// An estimate of the bytes an item holds.
fn weight(item: &FeedItem) -> usize {
    match item.as_deref() {
        Ok(PageEvent::Page(page)) => {
            let undecoded = page.undecoded.as_ref().map_or(0, |body| body.len());
            page.items.iter().map(item_weight).sum::<usize>() + undecoded + 64
        }
        _ => 64,
    }
}

fn item_weight(item: &ImagePipelineItem) -> usize {
    let texts = [
        &item.name,
        &item.description,
        &item.base_image,
        &item.base_image_type,
        &item.build_content,
        &item.test_content,
        &item.repair_mode,
        &item.image_name,
        &item.image_family,
        &item.instance_type,
        &item.v_switch_id,
        &item.resource_group_id,
        &item.creation_time,
    ];
    std::mem::size_of::<ImagePipelineItem>()
        + item.image_pipeline_id.len()
        + texts
            .iter()
            .flat_map(|t| t.as_ref())
            .map(String::len)
            .sum::<usize>()
        + item
            .tags
            .iter()
            .map(|t| t.key.len() + t.value.len() + 48)
            .sum::<usize>()
        + item
            .to_region_ids
            .iter()
            .chain(&item.add_accounts)
            .map(|s| s.len() + 24)
            .sum::<usize>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ecs::PipelinePage;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    fn page(n: usize, from: usize) -> PageEvent {
        PageEvent::Page(PipelinePage {
            items: (from..from + n)
                .map(|i| ImagePipelineItem {
                    image_pipeline_id: format!("ip-{i}"),
                    build_content: Some("x".repeat(1000)),
                    ..ImagePipelineItem::default()
                })
                .collect(),
            ..PipelinePage::default()
        })
    }

    /// `pages` pages of 10 items, counting how many were fetched.
    fn pages(
        pages: usize,
        fetched: Arc<AtomicUsize>,
    ) -> BoxStream<'static, Result<PageEvent, ListingError>> {
        futures::stream::iter(0..pages)
            .then(move |p| {
                let fetched = fetched.clone();
                async move {
                    tokio::task::yield_now().await;
                    fetched.fetch_add(1, Ordering::SeqCst);
                    Ok(page(10, p * 10))
                }
            })
            .boxed()
    }

    fn ids(item: &FeedItem) -> Vec<String> {
        match item.as_deref() {
            Ok(PageEvent::Page(p)) => p
                .items
                .iter()
                .map(|i| i.image_pipeline_id.clone())
                .collect(),
            _ => Vec::new(),
        }
    }

    #[tokio::test]
    async fn a_small_listing_is_kept_whole_for_readers_who_join_after_its_end() {
        let fetched = Arc::new(AtomicUsize::new(0));
        let (feed, mut first) = Feed::start(pages(3, fetched.clone()), KEEP_BUDGET);
        let mut read = 0;
        while let Some(item) = first.next().await {
            assert_eq!(ids(&item).len(), 10);
            read += 1;
        }
        assert_eq!(read, 3);
        assert!(feed.has_ended() && !feed.is_streaming());
        let mut late = feed.join().expect("a kept listing can be joined");
        let mut again = Vec::new();
        while let Some(item) = late.next().await {
            again.extend(ids(&item));
        }
        assert_eq!(again.len(), 30);
        assert_eq!(again[0], "ip-0");
        assert_eq!(fetched.load(Ordering::SeqCst), 3, "fetched once");
    }

    #[tokio::test]
    async fn a_big_listing_streams_keeping_no_more_than_a_few_pages_for_a_slow_reader() {
        let fetched = Arc::new(AtomicUsize::new(0));
        // A budget of about two pages: the feed streams from the third.
        let (feed, mut reader) = Feed::start(pages(50, fetched.clone()), 25_000);
        let mut seen = Vec::new();
        let mut most_kept = 0;
        while let Some(item) = reader.next().await {
            seen.extend(ids(&item));
            // A slow reader: the fetching must wait for it.
            tokio::time::sleep(Duration::from_millis(1)).await;
            most_kept = most_kept.max(feed.kept_bytes());
        }
        assert_eq!(seen.len(), 500);
        assert_eq!(seen[499], "ip-499");
        assert!(feed.is_streaming());
        assert!(feed.join().is_none(), "a streaming feed cannot be joined");
        assert!(
            most_kept <= 25_000 + (LOOKAHEAD + 1) * 11_000,
            "kept {most_kept} bytes"
        );
    }

    #[tokio::test]
    async fn a_streaming_feed_nobody_reads_stops_fetching() {
        let fetched = Arc::new(AtomicUsize::new(0));
        let (_feed, mut reader) = Feed::start(pages(1000, fetched.clone()), 25_000);
        for _ in 0..5 {
            reader.next().await.unwrap().unwrap();
        }
        drop(reader);
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            fetched.load(Ordering::SeqCst) < 20,
            "fetched {} pages for nobody",
            fetched.load(Ordering::SeqCst)
        );
    }

    #[tokio::test]
    async fn an_error_is_the_last_item_every_reader_gets() {
        let events = futures::stream::iter(vec![
            Ok(page(1, 0)),
            Err(ListingError {
                page: 2,
                calls: 2,
                error: crate::ecs::EcsError::Pagination("loop".into()),
            }),
            Ok(page(1, 1)),
        ])
        .boxed();
        let (feed, mut a) = Feed::start(events, KEEP_BUDGET);
        let mut b = feed.join().unwrap();
        for reader in [&mut a, &mut b] {
            assert!(reader.next().await.unwrap().is_ok());
            assert_eq!(reader.next().await.unwrap().unwrap_err().page, 2);
            assert!(reader.next().await.is_none());
        }
    }
}
