//! The watch of the mirrored ImagePipelines: a streaming list where the API server serves one,
//! a paginated list otherwise.
//!
//! Why: with a streaming list (`sendInitialEvents`, Kubernetes' WatchList) the objects that
//! already exist arrive one by one on the watch, each decoded and reduced to its record before
//! the next; a paginated list decodes a page of full objects (managed fields and all) at a
//! time. After a restart at 100,000 objects, the glibc build held 72.3-72.5 MiB once the index
//! was filled from pages of 100 and 63.5-63.6 MiB from a streaming list (its allocator keeps the
//! holes the pages leave between the records), and the first sync came 26-27 s after the start
//! instead of 42-52 s (BENCHMARKS.md, "Streaming lists for the watch").
//!
//! API servers older than 1.27, and those whose WatchList feature gate is off (1.27-1.31 and
//! 1.33 by default), refuse the streaming list's parameters (`400`/`422`); an API server, or a
//! proxy in front of it, that ignores them sends no initial events at all. Either way the watch
//! lists page by page from then on.

use std::fmt::Debug;
use std::time::Duration;

use futures::stream::{self, BoxStream};
use futures::{Stream, StreamExt};
use kube::Api;
use kube::runtime::watcher::{self, Event, watcher};
use serde::de::DeserializeOwned;
use tracing::info;

/// How long a streaming list's initial events may pause before the watch takes the API server
/// for one that ignores streaming lists (it would never mark their end) and lists instead.
pub const INITIAL_EVENTS_WAIT: Duration = Duration::from_secs(30);

type Events<K> = BoxStream<'static, watcher::Result<Event<K>>>;

/// Where the watch stands: asking for streaming lists, or listing page by page since the API
/// server refused them.
enum Strategy<K: 'static> {
    Streaming {
        events: Events<K>,
        /// Starts the paginated watch, should the API server refuse streaming lists.
        listing: Box<dyn FnOnce() -> Events<K> + Send>,
        /// Whether the initial events (of the first list or a re-list) have not ended yet.
        initial: bool,
    },
    Listing(Events<K>),
}

/// The events of `api`'s objects selected by `config`: as [`watcher`] with streaming lists,
/// switching for good to `config`'s own paginated list (its `page_size`) the first time the
/// API server refuses a streaming list, or its initial events pause for
/// [`INITIAL_EVENTS_WAIT`]. The refusal itself is not passed on: the listing's `Init` follows.
pub fn events<K>(
    api: Api<K>,
    config: watcher::Config,
) -> impl Stream<Item = watcher::Result<Event<K>>> + Send
where
    K: kube::Resource + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let streaming = Strategy::Streaming {
        events: watcher(api.clone(), config.clone().streaming_lists()).boxed(),
        listing: Box::new(move || watcher(api, config).boxed()),
        initial: true,
    };
    stream::unfold(streaming, |strategy| async move {
        match strategy {
            Strategy::Streaming {
                mut events,
                listing,
                mut initial,
            } => {
                let next = if initial {
                    match tokio::time::timeout(INITIAL_EVENTS_WAIT, events.next()).await {
                        Ok(next) => next,
                        Err(_) => {
                            info!(
                                "the API server sent no initial events for {}s; listing page by page",
                                INITIAL_EVENTS_WAIT.as_secs()
                            );
                            return list_instead(listing).await;
                        }
                    }
                } else {
                    events.next().await
                };
                let event = next?;
                match &event {
                    Err(refusal) if refuses_streaming_lists(refusal) => {
                        info!(
                            error = %refusal,
                            "the API server does not serve streaming lists; listing page by page"
                        );
                        return list_instead(listing).await;
                    }
                    Ok(Event::Init) => initial = true,
                    Ok(Event::InitDone) => initial = false,
                    _ => {}
                }
                Some((
                    event,
                    Strategy::Streaming {
                        events,
                        listing,
                        initial,
                    },
                ))
            }
            Strategy::Listing(mut events) => {
                let event = events.next().await?;
                Some((event, Strategy::Listing(events)))
            }
        }
    })
}

/// Starts the paginated watch in place of the streaming one; its first event.
async fn list_instead<K: 'static>(
    listing: Box<dyn FnOnce() -> Events<K> + Send>,
) -> Option<(watcher::Result<Event<K>>, Strategy<K>)> {
    let mut events = listing();
    let event = events.next().await?;
    Some((event, Strategy::Listing(events)))
}

/// Whether `error` is the API server refusing the streaming list's parameters (an invalid or
/// bad request), rather than a failure worth retrying the same way (no permission, throttled,
/// unavailable, expired).
fn refuses_streaming_lists(error: &watcher::Error) -> bool {
    let code = match error {
        watcher::Error::WatchStartFailed(kube::Error::Api(status)) => status.code,
        watcher::Error::WatchError(status) => status.code,
        _ => return false,
    };
    matches!(code, 400 | 422)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::ImagePipeline;
    use http::{Request, Response, StatusCode};
    use kube::client::Body;
    use serde_json::{Value, json};
    use std::sync::{Arc, Mutex};
    use tower_test::mock;

    const BASE: &str = "/apis/ecs.mirror.io/v1alpha1/namespaces/ns/imagepipelines";

    fn pipeline(name: &str, version: &str) -> Value {
        json!({
            "apiVersion": "ecs.mirror.io/v1alpha1", "kind": "ImagePipeline",
            "metadata": {"name": name, "namespace": "ns", "resourceVersion": version},
            "spec": {"imagePipelineId": name, "regionId": "cn-hangzhou"},
        })
    }

    fn reply(status: StatusCode, body: Vec<u8>) -> Response<Body> {
        Response::builder()
            .status(status)
            .body(Body::from(body))
            .expect("a response")
    }

    /// An API server's `Status` answer for a failed request.
    fn failure(status: StatusCode, reason: &str, message: &str) -> Response<Body> {
        let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
            "reason": reason, "code": status.as_u16(), "message": message});
        reply(status, serde_json::to_vec(&body).expect("json"))
    }

    /// The bookmark that ends a streaming list's initial events.
    fn initial_events_end() -> Value {
        json!({"type": "BOOKMARK", "object": {
            "apiVersion": "ecs.mirror.io/v1alpha1", "kind": "ImagePipeline",
            "metadata": {"resourceVersion": "12",
                "annotations": {"k8s.io/initial-events-end": "true"}}}})
    }

    fn watch_lines(events: &[Value]) -> Vec<u8> {
        events
            .iter()
            .flat_map(|e| {
                let mut line = serde_json::to_vec(e).expect("json");
                line.push(b'\n');
                line
            })
            .collect()
    }

    /// A client answering with `answer(path and query)` (`None`: never), recording each
    /// request's URI.
    fn client(
        answer: impl Fn(&str) -> Option<Response<Body>> + Send + 'static,
    ) -> (Api<ImagePipeline>, Arc<Mutex<Vec<String>>>) {
        let (service, mut handle) = mock::pair::<Request<Body>, Response<Body>>();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        tokio::spawn(async move {
            let mut unanswered = Vec::new();
            while let Some((request, respond)) = handle.next_request().await {
                let uri = request.uri().to_string();
                record.lock().expect("lock").push(uri.clone());
                match answer(&uri) {
                    Some(response) => respond.send_response(response),
                    None => unanswered.push(respond),
                }
            }
        });
        let client = kube::Client::new(service, "ns");
        (Api::namespaced(client, "ns"), seen)
    }

    /// A paginated list's answers: one page holding `ip-a`, then a silent watch.
    fn paginated(uri: &str) -> Response<Body> {
        if uri.contains("watch=true") {
            return reply(StatusCode::OK, Vec::new());
        }
        let list = json!({"apiVersion": "ecs.mirror.io/v1alpha1",
            "kind": "ImagePipelineList", "metadata": {"resourceVersion": "7"},
            "items": [pipeline("ip-a", "5")]});
        reply(StatusCode::OK, serde_json::to_vec(&list).expect("json"))
    }

    /// The first `n` events, names only.
    async fn first_events(
        api: Api<ImagePipeline>,
        config: watcher::Config,
        n: usize,
    ) -> Vec<String> {
        events(api, config)
            .take(n)
            .map(|event| match event {
                Ok(Event::Init) => "Init".to_string(),
                Ok(Event::InitApply(o)) => format!("InitApply {}", o.metadata.name.unwrap()),
                Ok(Event::InitDone) => "InitDone".to_string(),
                Ok(Event::Apply(o)) => format!("Apply {}", o.metadata.name.unwrap()),
                Ok(Event::Delete(o)) => format!("Delete {}", o.metadata.name.unwrap()),
                Err(e) => format!("Err {e}"),
            })
            .collect()
            .await
    }

    #[tokio::test]
    async fn existing_objects_come_from_a_streaming_list_when_the_server_serves_one() {
        let (api, seen) = client(|uri| {
            if uri.contains("sendInitialEvents=true") {
                let added = |name| json!({"type": "ADDED", "object": pipeline(name, "11")});
                Some(reply(
                    StatusCode::OK,
                    watch_lines(&[added("ip-a"), added("ip-b"), initial_events_end()]),
                ))
            } else {
                Some(reply(StatusCode::OK, Vec::new()))
            }
        });
        let config = watcher::Config::default().page_size(100);
        let got = first_events(api, config, 4).await;
        assert_eq!(
            got,
            ["Init", "InitApply ip-a", "InitApply ip-b", "InitDone"]
        );
        let seen = seen.lock().unwrap().clone();
        assert!(seen[0].starts_with(BASE), "{seen:?}");
        assert!(
            seen[0].contains("watch=true") && seen[0].contains("resourceVersionMatch=NotOlderThan"),
            "{seen:?}"
        );
        assert!(
            !seen.iter().any(|u| u.contains("limit=")),
            "no paginated list: {seen:?}"
        );
    }

    #[tokio::test]
    async fn a_server_refusing_streaming_lists_is_listed_page_by_page_from_then_on() {
        let (api, seen) = client(|uri| {
            if uri.contains("sendInitialEvents=true") {
                Some(failure(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "Invalid",
                    "sendInitialEvents is forbidden for watch unless the WatchList feature gate is enabled",
                ))
            } else {
                Some(paginated(uri))
            }
        });
        let config = watcher::Config::default().page_size(100);
        let got = first_events(api, config, 3).await;
        assert_eq!(
            got,
            ["Init", "InitApply ip-a", "InitDone"],
            "no error passed on"
        );
        let seen = seen.lock().unwrap().clone();
        assert!(seen[0].contains("sendInitialEvents=true"), "{seen:?}");
        assert!(
            seen[1].contains("limit=100") && !seen[1].contains("watch=true"),
            "{seen:?}"
        );
        assert_eq!(
            seen.iter()
                .filter(|u| u.contains("sendInitialEvents"))
                .count(),
            1,
            "asked once: {seen:?}"
        );
    }

    #[tokio::test]
    async fn other_failures_are_passed_on_and_retried_as_streaming_lists() {
        let (api, seen) =
            client(|_| Some(failure(StatusCode::FORBIDDEN, "Forbidden", "forbidden")));
        let got = first_events(api, watcher::Config::default(), 2).await;
        assert!(
            got.iter()
                .all(|e| e.starts_with("Err ") && e.contains("forbidden")),
            "{got:?}"
        );
        let seen = seen.lock().unwrap().clone();
        assert!(
            seen.iter().all(|u| u.contains("sendInitialEvents=true")),
            "{seen:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_server_ignoring_streaming_lists_is_listed_page_by_page_after_the_wait() {
        // It never answers the streaming list (as one that ignored it would never mark the end
        // of its initial events).
        let (api, seen) =
            client(|uri| (!uri.contains("sendInitialEvents=true")).then(|| paginated(uri)));
        let started = tokio::time::Instant::now();
        let config = watcher::Config::default().page_size(100);
        let got = tokio::time::timeout(INITIAL_EVENTS_WAIT * 3, first_events(api, config, 3))
            .await
            .expect("listed instead of waiting for ever");
        assert_eq!(got, ["Init", "InitApply ip-a", "InitDone"]);
        assert!(
            started.elapsed() >= INITIAL_EVENTS_WAIT,
            "{:?}",
            started.elapsed()
        );
        let seen = seen.lock().unwrap().clone();
        assert!(seen[0].contains("sendInitialEvents=true"), "{seen:?}");
        assert!(seen[1].contains("limit=100"), "{seen:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_watch_after_the_initial_events_is_no_reason_to_list() {
        let (api, seen) = client(|uri| {
            // The streaming list ends its initial events, then stays silent (never answered
            // again: a watch with nothing to tell).
            uri.contains("sendInitialEvents=true")
                .then(|| reply(StatusCode::OK, watch_lines(&[initial_events_end()])))
        });
        let mut events = Box::pin(events(api, watcher::Config::default()));
        assert!(matches!(events.next().await, Some(Ok(Event::Init))));
        assert!(matches!(events.next().await, Some(Ok(Event::InitDone))));
        let quiet = tokio::time::timeout(INITIAL_EVENTS_WAIT * 4, events.next()).await;
        assert!(quiet.is_err(), "nothing happened: {quiet:?}");
        let seen = seen.lock().unwrap().clone();
        assert!(!seen.iter().any(|u| u.contains("limit=")), "{seen:?}");
    }
}
