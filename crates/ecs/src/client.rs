//! The paging ECS client: signs and POSTs `DescribeImagePipelines`, follows `NextToken`,
//! retries transient failures with jittered backoff, restarts on `Invalid.NextToken`, and
//! rate-limits every attempt per AccessKeyId.
//!
//! One [`EcsClient`] serves the whole process: it is cheap to clone and its rate limiter is
//! shared by every clone.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;

use super::buffers::BodyPool;
use super::credentials::SharedProvider;
use super::error::EcsError;
use super::filter::PipelineFilter;
use super::known::KnownLists;
use super::listing::{Listing, ListingError, SharedObserver};
use super::model::PipelinePage;
use super::ratelimit::KeyedRateLimiter;
use super::retry::Backoff;
use super::transport;
use super::view::ItemSink;
use super::{DESCRIBE_IMAGE_PIPELINES, ECS_API_VERSION};

/// The error code with which the service refuses an expired or unknown `NextToken`.
pub const INVALID_NEXT_TOKEN: &str = "Invalid.NextToken";

/// How the client talks to ECS.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// Base URL replacing `https://ecs.<region>.aliyuncs.com` for every region: a VPC
    /// endpoint or a simulator, `http(s)://host[:port]`.
    pub endpoint: Option<String>,
    /// Time allowed to establish a connection (TCP and TLS).
    pub connect_timeout: Duration,
    /// Time allowed between reads of the response (headers or body chunks).
    pub read_timeout: Duration,
    /// Attempts per call, the first included; at least 1.
    pub max_attempts: u32,
    /// Ceiling of the first retry's jittered delay.
    pub base_backoff: Duration,
    /// Largest ceiling of a retry's jittered delay.
    pub max_backoff: Duration,
    /// Calls per second allowed per AccessKeyId, for the whole process; 0 for no pacing of the
    /// client's own (each page then waits only for the one before it, and throttling answers
    /// are retried as always).
    pub rate_limit_qps: u32,
    /// Calls per AccessKeyId allowed at once before the rate applies; at least 1.
    pub rate_limit_burst: u32,
    /// Times a listing restarts from the first page after `Invalid.NextToken`.
    pub max_token_restarts: u32,
    /// Pages one listing may have before it is abandoned as a pagination loop.
    pub max_pages: u32,
    /// Largest response body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Told about every attempt (for metrics).
    pub observer: Option<SharedObserver>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        Self {
            endpoint: None,
            connect_timeout: Duration::from_secs(5),
            read_timeout: Duration::from_secs(30),
            max_attempts: 6,
            base_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(20),
            rate_limit_qps: 10,
            rate_limit_burst: 5,
            max_token_restarts: 3,
            max_pages: 10_000,
            max_body_bytes: 16 * 1024 * 1024,
            observer: None,
        }
    }
}

/// What a listing stream yields.
#[derive(Debug, Clone, PartialEq)]
pub enum PageEvent {
    /// The next page, in order.
    Page(PipelinePage),
    /// The service refused a `NextToken`; the listing starts again from the first page, so
    /// every page yielded before this event must be discarded.
    Restarted,
}

/// The ECS `DescribeImagePipelines` client. Clones share one HTTP pool and one rate limiter.
#[derive(Clone)]
pub struct EcsClient {
    inner: Arc<Inner>,
}

struct Inner {
    config: ClientConfig,
    /// The endpoint override as the URL requests go to (its root), parsed once.
    endpoint_url: Option<reqwest::Url>,
    http: transport::Http,
    /// None when the configuration asks for no pacing.
    limiter: Option<KeyedRateLimiter>,
    backoff: Backoff,
    bodies: BodyPool,
}

/// The URL of an endpoint (`scheme://host[:port]`) that requests are posted to: its root.
#[allow(clippy::result_large_err)] // EcsError is the boundary's fixed error type.
fn request_url(endpoint: &str) -> Result<reqwest::Url, EcsError> {
    reqwest::Url::parse(&format!("{endpoint}/"))
        .map_err(|e| EcsError::Config(format!("endpoint {endpoint:?} is invalid: {e}")))
}

impl fmt::Debug for EcsClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EcsClient")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl EcsClient {
    /// Builds a client; refuses an unusable endpoint override, zero attempts or pages, or a zero
    /// burst with a rate.
    #[allow(clippy::result_large_err)] // EcsError is the boundary's fixed error type.
    pub fn new(config: ClientConfig) -> Result<Self, EcsError> {
        let endpoint_url = config
            .endpoint
            .as_deref()
            .map(|raw| request_url(&transport::validate_endpoint(raw)?))
            .transpose()?;
        if config.max_attempts == 0 {
            return Err(EcsError::Config("max_attempts must be at least 1".into()));
        }
        if config.max_pages == 0 {
            return Err(EcsError::Config("max_pages must be at least 1".into()));
        }
        let limiter = match config.rate_limit_qps {
            0 => None,
            qps => Some(KeyedRateLimiter::new(qps, config.rate_limit_burst)?),
        };
        let http = transport::Http::from_env(config.connect_timeout, config.read_timeout)?;
        if http.is_proxied() {
            tracing::info!(
                "ECS calls go through the proxy the environment names (HTTPS_PROXY, HTTP_PROXY or ALL_PROXY)"
            );
        }
        let backoff = Backoff {
            base: config.base_backoff,
            max: config.max_backoff,
        };
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                endpoint_url,
                http,
                limiter,
                backoff,
                bodies: BodyPool::default(),
            }),
        })
    }

    /// The base URL calls for `region_id` go to: the override, or the region's public endpoint.
    pub fn endpoint_for(&self, region_id: &str) -> String {
        match &self.inner.endpoint_url {
            Some(url) => url.as_str().trim_end_matches('/').to_string(),
            None => transport::default_endpoint(region_id),
        }
    }

    /// The URL requests for `region_id` are posted to: the override's, parsed when the client
    /// was built, or the region's public endpoint's.
    #[allow(clippy::result_large_err)] // EcsError is the boundary's fixed error type.
    fn url_for(&self, region_id: &str) -> Result<reqwest::Url, EcsError> {
        match &self.inner.endpoint_url {
            Some(url) => Ok(url.clone()),
            None => request_url(&transport::default_endpoint(region_id)),
        }
    }

    /// Lists `filter` page by page, as the pages arrive. The stream ends after the last page
    /// or after the first error; on [`PageEvent::Restarted`] discard the pages seen so far.
    pub fn pages(
        &self,
        filter: PipelineFilter,
        provider: SharedProvider,
    ) -> impl Stream<Item = Result<PageEvent, ListingError>> + Send + 'static {
        self.pages_known(filter, provider, None)
    }

    /// [`EcsClient::pages`] for a caller that remembers pages: every page carries its
    /// [`list_hash`](crate::list_hash), and a page whose list is in `known` comes with its
    /// items undecoded ([`PipelinePage::undecoded`]; [`PipelinePage::decoded`] reads them).
    pub fn pages_known(
        &self,
        filter: PipelineFilter,
        provider: SharedProvider,
        known: Option<KnownLists>,
    ) -> impl Stream<Item = Result<PageEvent, ListingError>> + Send + 'static {
        let mut pager = Pager::new(self.clone(), filter, provider);
        pager.known = known;
        pager.into_events()
    }

    /// [`EcsClient::pages`] for a caller that looks at each item once: each page's items go to
    /// `sink` as they are read, borrowed from the answer's body (no copy of their texts), and
    /// the page's event follows with `items` empty. See [`ItemSink`] for what a page whose
    /// event never comes means.
    pub fn pages_into(
        &self,
        filter: PipelineFilter,
        provider: SharedProvider,
        sink: Box<dyn ItemSink>,
    ) -> impl Stream<Item = Result<PageEvent, ListingError>> + Send + 'static {
        let mut pager = Pager::new(self.clone(), filter, provider);
        pager.sink = Some(sink);
        pager.into_events()
    }

    /// Lists every page of `filter` into one [`Listing`], each pipeline ID once (first
    /// occurrence wins). Fails as a whole if any page fails.
    pub async fn list_all(
        &self,
        filter: &PipelineFilter,
        provider: &SharedProvider,
    ) -> Result<Listing, ListingError> {
        let mut pager = Pager::new(self.clone(), filter.clone(), provider.clone());
        let mut listing = Listing::default();
        let mut ids = HashSet::new();
        while let Some(event) = pager.next_event().await {
            match event? {
                PageEvent::Restarted => {
                    listing.items.clear();
                    listing.pages = 0;
                    listing.skipped_items = 0;
                    ids.clear();
                }
                PageEvent::Page(page) => {
                    listing.pages += 1;
                    listing.skipped_items += page.skipped_items;
                    listing.last_request_id = page.request_id;
                    for item in page.items {
                        if ids.insert(item.image_pipeline_id.clone()) {
                            listing.items.push(item);
                        } else {
                            tracing::debug!(
                                id = %item.image_pipeline_id,
                                "duplicate pipeline ID in listing ignored"
                            );
                        }
                    }
                }
            }
        }
        listing.calls = pager.calls;
        listing.retries = pager.retries;
        listing.restarts = pager.restarts;
        Ok(listing)
    }

    /// One page: every attempt re-asks the provider, takes a rate-limit token, signs with a
    /// fresh nonce and timestamp, and is reported to the observer.
    async fn call_page(
        &self,
        params: &[(String, String)],
        provider: &SharedProvider,
        region_id: &str,
        known: Option<(&KnownLists, usize)>,
        mut sink: Option<&mut (dyn ItemSink + 'static)>,
        counters: &mut Counters,
    ) -> Result<PipelinePage, EcsError> {
        let config = &self.inner.config;
        let url = self.url_for(region_id)?;
        let mut retry = 0u32;
        loop {
            let credentials = provider.credentials().await?;
            if let Some(limiter) = &self.inner.limiter {
                limiter.acquire(&credentials.access_key_id).await;
            }
            let mut all: BTreeMap<String, String> = transport::common_params(
                &credentials,
                DESCRIBE_IMAGE_PIPELINES,
                ECS_API_VERSION,
                &transport::fresh_nonce(),
                &transport::timestamp_now(),
            );
            all.extend(params.iter().cloned());
            let body = transport::signed_form_body(&all, &credentials.access_key_secret);
            counters.calls += 1;
            let attempt = transport::post_form(
                &self.inner.http,
                &url,
                body,
                config.max_body_bytes,
                known,
                sink.as_deref_mut(),
                &self.inner.bodies,
            )
            .await;
            let code = match &attempt.result {
                Ok(_) => "Success".to_string(),
                Err(e) => e.code(),
            };
            tracing::debug!(
                action = DESCRIBE_IMAGE_PIPELINES,
                region = region_id,
                access_key_id = %credentials.access_key_id,
                attempt = retry + 1,
                code = %code,
                request_id = attempt.result.as_ref().ok().and_then(|p| p.request_id.as_deref())
                    .or_else(|| attempt.result.as_ref().err().and_then(|e| e.request_id())),
                "ECS call"
            );
            if let Some(observer) = &config.observer {
                observer.on_call(DESCRIBE_IMAGE_PIPELINES, &code);
            }
            let error = match attempt.result {
                Ok(page) => return Ok(page),
                Err(mut e) => {
                    e.redact(&credentials);
                    e
                }
            };
            if !error.is_transient() || retry + 1 >= config.max_attempts {
                return Err(error);
            }
            let delay = self
                .inner
                .backoff
                .delay(retry, rand::random::<f64>(), attempt.retry_after);
            if let Some(observer) = &config.observer {
                observer.on_retry(DESCRIBE_IMAGE_PIPELINES, &code);
            }
            tracing::debug!(code = %code, delay_ms = delay.as_millis() as u64, "retrying ECS call");
            counters.retries += 1;
            retry += 1;
            tokio::time::sleep(delay).await;
        }
    }
}

/// Call counts of one listing.
#[derive(Debug, Default)]
struct Counters {
    calls: u32,
    retries: u32,
}

/// The state of one listing: where it is, what it has seen, what it has spent.
struct Pager {
    client: EcsClient,
    filter: PipelineFilter,
    provider: SharedProvider,
    started: bool,
    done: bool,
    /// The token for the next page; `None` before the first page of a run.
    next_token: Option<String>,
    /// Tokens received in this run, to catch a server that loops.
    seen_tokens: HashSet<String>,
    /// Pages fetched in this run (since the last restart).
    page: u32,
    /// Lists the caller knows: such pages are left undecoded.
    known: Option<KnownLists>,
    /// Where the items go instead of the pages, for [`EcsClient::pages_into`].
    sink: Option<Box<dyn ItemSink>>,
    calls: u32,
    retries: u32,
    restarts: u32,
}

impl Pager {
    fn new(client: EcsClient, filter: PipelineFilter, provider: SharedProvider) -> Self {
        Self {
            client,
            filter,
            provider,
            started: false,
            done: false,
            next_token: None,
            seen_tokens: HashSet::new(),
            page: 0,
            known: None,
            sink: None,
            calls: 0,
            retries: 0,
            restarts: 0,
        }
    }

    /// The listing's events as a stream, page by page.
    fn into_events(self) -> impl Stream<Item = Result<PageEvent, ListingError>> + Send + 'static {
        futures::stream::unfold(self, |mut pager| async move {
            let event = pager.next_event().await?;
            Some((event, pager))
        })
    }

    fn fail(&mut self, error: EcsError) -> Option<Result<PageEvent, ListingError>> {
        self.done = true;
        Some(Err(ListingError {
            page: self.page + 1,
            calls: self.calls,
            error,
        }))
    }

    async fn next_event(&mut self) -> Option<Result<PageEvent, ListingError>> {
        if self.done {
            return None;
        }
        if !self.started {
            self.started = true;
            if let Err(e) = self.filter.validate() {
                return self.fail(e.into());
            }
        } else if self.next_token.is_none() {
            self.done = true;
            return None;
        }
        let mut params = self.filter.to_params();
        if let Some(token) = &self.next_token {
            params.push(("NextToken".into(), token.clone()));
        }
        let mut counters = Counters::default();
        let result = self
            .client
            .call_page(
                &params,
                &self.provider,
                &self.filter.region_id,
                self.known.as_ref().map(|k| (k, self.page as usize)),
                self.sink.as_deref_mut(),
                &mut counters,
            )
            .await;
        self.calls += counters.calls;
        self.retries += counters.retries;
        let page = match result {
            Ok(page) => page,
            Err(EcsError::Api(e))
                if e.code == INVALID_NEXT_TOKEN
                    && self.next_token.is_some()
                    && self.restarts < self.client.inner.config.max_token_restarts =>
            {
                tracing::debug!(
                    page = self.page + 1,
                    restarts = self.restarts + 1,
                    "NextToken refused; restarting the listing"
                );
                self.restarts += 1;
                self.page = 0;
                self.next_token = None;
                self.seen_tokens.clear();
                self.started = false;
                return Some(Ok(PageEvent::Restarted));
            }
            Err(e) => return self.fail(e),
        };
        if let Some(token) = &page.next_token {
            if !self.seen_tokens.insert(token.clone()) {
                return self.fail(EcsError::Pagination(format!(
                    "the service returned the same NextToken again after page {}",
                    self.page + 1
                )));
            }
            if self.page + 1 >= self.client.inner.config.max_pages {
                return self.fail(EcsError::Pagination(format!(
                    "more than {} pages; giving up",
                    self.client.inner.config.max_pages
                )));
            }
        }
        self.page += 1;
        self.next_token = page.next_token.clone();
        Some(Ok(PageEvent::Page(page)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_endpoint_is_the_regional_public_one() {
        let client = EcsClient::new(ClientConfig::default()).expect("default config is valid");
        assert_eq!(
            client.endpoint_for("cn-hangzhou"),
            "https://ecs.cn-hangzhou.aliyuncs.com"
        );
        let url = client.url_for("cn-hangzhou").expect("a region's URL");
        assert_eq!(url.as_str(), "https://ecs.cn-hangzhou.aliyuncs.com/");
        assert!(
            matches!(client.url_for("cn hangzhou/x?"), Err(EcsError::Config(_))),
            "a region that makes no host is a configuration error"
        );
    }

    #[test]
    fn an_override_serves_every_region() {
        let client = EcsClient::new(ClientConfig {
            endpoint: Some("http://127.0.0.1:9000/".into()),
            ..ClientConfig::default()
        })
        .expect("valid override");
        assert_eq!(client.endpoint_for("cn-beijing"), "http://127.0.0.1:9000");
        for region in ["cn-beijing", "cn-hangzhou"] {
            let url = client.url_for(region).expect("the override's URL");
            assert_eq!(url.as_str(), "http://127.0.0.1:9000/");
        }
        for raw in [
            "https://ECS.Example.com:443",
            "http://[::1]:8080/",
            "http://sim",
        ] {
            let client = EcsClient::new(ClientConfig {
                endpoint: Some(raw.into()),
                ..ClientConfig::default()
            })
            .expect("valid override");
            let validated = transport::validate_endpoint(raw).expect("valid");
            assert_eq!(client.endpoint_for("cn-beijing"), validated, "{raw}");
        }
    }

    #[test]
    fn unusable_configs_are_refused() {
        for config in [
            ClientConfig {
                endpoint: Some("not a url".into()),
                ..ClientConfig::default()
            },
            ClientConfig {
                max_attempts: 0,
                ..ClientConfig::default()
            },
            ClientConfig {
                rate_limit_burst: 0,
                ..ClientConfig::default()
            },
            ClientConfig {
                max_pages: 0,
                ..ClientConfig::default()
            },
        ] {
            assert!(matches!(EcsClient::new(config), Err(EcsError::Config(_))));
        }
    }
}
