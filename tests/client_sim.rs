//! Our ECS client against the simulator over HTTP: paging at every page size, every filter
//! (tag values with reserved and non-ASCII characters included), throttling and 5xx storms,
//! `x-acs-retry-after`, `Invalid.NextToken` restarts, malformed bodies and timeouts.

mod client_sim_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use client_sim_support::*;
use futures::StreamExt as _;
use imagepipeline_operator::ecs::{
    ClientConfig, EcsError, PageEvent, PipelineFilter, SharedObserver, TagFilter,
};
use imagepipeline_operator::sim::{Faults, generate};
use serde_json::{Value, json};

const N: usize = 1234;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_size_lists_every_pipeline_exactly_once_in_the_fewest_calls() {
    let items = items_in(HANGZHOU, N, 42);
    let sim = sim(items.clone(), Faults::default()).await;
    let ecs = client(fast_config(&sim));
    let expected = ids_where(&items, |_| true);
    for size in [1u32, 7, 50, 500] {
        let before = sim.call_count();
        let filter = PipelineFilter {
            page_size: size,
            ..PipelineFilter::region(HANGZHOU)
        };
        // The stream shows every page as served, duplicates included.
        let mut streamed = Vec::new();
        let mut pages = 0u32;
        let mut stream = Box::pin(ecs.pages(filter.clone(), provider()));
        while let Some(event) = stream.next().await {
            match event.expect("page") {
                PageEvent::Page(page) => {
                    pages += 1;
                    assert!(page.items.len() <= size as usize);
                    assert_eq!(page.total_count, Some(N as u64));
                    streamed.extend(page.items.into_iter().map(|i| i.image_pipeline_id));
                }
                PageEvent::Restarted => panic!("no restart without faults"),
            }
        }
        let want_pages = N.div_ceil(size as usize) as u32;
        assert_eq!(
            streamed, expected,
            "page size {size}: every ID once, in order"
        );
        assert_eq!(pages, want_pages, "page size {size}");
        assert_eq!(sim.call_count() - before, want_pages as usize);

        if size == 1 {
            continue; // 1,234 calls once are enough; the listing's accounting is checked below
        }
        let listing = ecs.list_all(&filter, &provider()).await.expect("listing");
        assert_eq!(ids(&listing), expected, "page size {size}");
        assert_eq!(listing.pages, want_pages);
        assert_eq!(listing.calls, want_pages, "calls = pages without faults");
        assert_eq!((listing.retries, listing.restarts), (0, 0));
        assert!(listing.last_request_id.is_some());
    }
    let log = sim.requests();
    assert!(log.iter().all(|r| r.status == 200), "every call verified");
    sim.shutdown().await;
}

/// Tag values that need every kind of escaping on the way to the service and back.
const ODD_VALUES: [&str; 10] = [
    "a b",
    "a+b",
    "a/b",
    "a=b",
    "a&b",
    "a*b",
    "a~b",
    "中文 ✓",
    "ünï+ /=&*~%20",
    "100%",
];

/// Generated pipelines over four regions plus hand-made ones in Hangzhou whose tags carry
/// the odd values (and an odd key).
fn filter_fixture() -> Vec<Value> {
    let mut items = generate(240, 7);
    for (i, value) in ODD_VALUES.iter().enumerate() {
        items.push(json!({
            "ImagePipelineId": format!("ip-odd{i}"),
            "Name": format!("odd-{i}"),
            "ResourceGroupId": "rg-acfmodd",
            "RegionId": HANGZHOU,
            "Tags": {"Tag": [
                {"TagKey": "odd", "TagValue": value},
                {"TagKey": "cost/center=a&b ü", "TagValue": format!("v{}", i % 2)},
            ]},
        }));
    }
    items
}

fn tag_of<'a>(item: &'a Value, key: &str) -> Option<&'a str> {
    item["Tags"]["Tag"]
        .as_array()?
        .iter()
        .find(|t| t["TagKey"] == key)
        .and_then(|t| t["TagValue"].as_str())
}

fn tag(key: &str, value: Option<&str>) -> TagFilter {
    TagFilter {
        key: key.into(),
        value: value.map(str::to_string),
    }
}

#[tokio::test]
async fn every_filter_lists_exactly_the_matching_pipelines() {
    let items = filter_fixture();
    let sim = sim(items.clone(), Faults::default()).await;
    let ecs = client(fast_config(&sim));
    let region = |r: &'static str| move |i: &Value| i["RegionId"] == r;
    let some_name = items[9]["Name"].as_str().expect("name").to_string();
    let some_ids: Vec<String> = items
        .iter()
        .step_by(13)
        .take(19)
        .map(|i| i["ImagePipelineId"].as_str().expect("id").to_string())
        .chain(["ip-doesnotexist".to_string()])
        .collect();
    let in_hz =
        |f: &dyn Fn(&Value) -> bool| ids_where(&items, |i| i["RegionId"] == HANGZHOU && f(i));
    let base = PipelineFilter {
        page_size: 3, // several pages per filter, so every NextToken carries the filter too
        ..PipelineFilter::region(HANGZHOU)
    };

    let mut cases: Vec<(String, PipelineFilter, Vec<String>)> = Vec::new();
    for r in ["cn-hangzhou", "cn-shanghai", "cn-beijing", "ap-southeast-1"] {
        cases.push((
            format!("region {r}"),
            PipelineFilter {
                page_size: 50,
                ..PipelineFilter::region(r)
            },
            ids_where(&items, region(r)),
        ));
    }
    cases.push((
        "resource group".into(),
        PipelineFilter {
            resource_group_id: Some("rg-acfmpayments01".into()),
            ..base.clone()
        },
        in_hz(&|i| i["ResourceGroupId"] == "rg-acfmpayments01"),
    ));
    let name_region = items[9]["RegionId"].as_str().expect("region").to_string();
    cases.push((
        "name".into(),
        PipelineFilter {
            name: Some(some_name.clone()),
            ..PipelineFilter::region(name_region.clone())
        },
        ids_where(&items, |i| {
            i["Name"] == some_name.as_str() && i["RegionId"] == name_region.as_str()
        }),
    ));
    cases.push((
        "twenty IDs, some elsewhere, one unknown".into(),
        PipelineFilter {
            image_pipeline_ids: some_ids.clone(),
            ..base.clone()
        },
        in_hz(&|i| {
            some_ids
                .iter()
                .any(|id| i["ImagePipelineId"] == id.as_str())
        }),
    ));
    cases.push((
        "tag key alone".into(),
        PipelineFilter {
            tags: vec![tag("odd", None)],
            ..base.clone()
        },
        in_hz(&|i| tag_of(i, "odd").is_some()),
    ));
    cases.push((
        "tag value with a space".into(),
        PipelineFilter {
            tags: vec![tag("team", Some("data science"))],
            ..base.clone()
        },
        in_hz(&|i| tag_of(i, "team") == Some("data science")),
    ));
    cases.push((
        "two tags".into(),
        PipelineFilter {
            tags: vec![tag("team", Some("payments")), tag("env", Some("prod"))],
            ..base.clone()
        },
        in_hz(&|i| tag_of(i, "team") == Some("payments") && tag_of(i, "env") == Some("prod")),
    ));
    cases.push((
        "odd key".into(),
        PipelineFilter {
            tags: vec![tag("cost/center=a&b ü", Some("v1"))],
            ..base.clone()
        },
        in_hz(&|i| tag_of(i, "cost/center=a&b ü") == Some("v1")),
    ));
    for value in ODD_VALUES {
        cases.push((
            format!("tag value {value:?}"),
            PipelineFilter {
                tags: vec![tag("odd", Some(value))],
                ..base.clone()
            },
            in_hz(&|i| tag_of(i, "odd") == Some(value)),
        ));
    }
    cases.push((
        "everything at once".into(),
        PipelineFilter {
            resource_group_id: Some("rg-acfmodd".into()),
            image_pipeline_ids: vec!["ip-odd1".into(), "ip-odd2".into(), "ip-odd3".into()],
            tags: vec![tag("cost/center=a&b ü", Some("v1")), tag("odd", None)],
            page_size: 1,
            ..PipelineFilter::region(HANGZHOU)
        },
        vec!["ip-odd1".into(), "ip-odd3".into()],
    ));

    for (what, filter, want) in cases {
        assert!(!want.is_empty(), "{what}: the fixture must match something");
        let listing = ecs.list_all(&filter, &provider()).await.expect(&what);
        assert_eq!(ids(&listing), want, "{what}");
        assert_eq!(
            listing.pages as usize,
            want.len().div_ceil(filter.page_size as usize).max(1),
            "{what}"
        );
        assert_eq!(listing.calls, listing.pages, "{what}: no call refused");
    }
    // Each odd value matched only its own pipeline: nothing was decoded as something else.
    assert!(sim.requests().iter().all(|r| r.status == 200));
    sim.shutdown().await;
}

#[tokio::test]
async fn throttling_and_server_error_storms_still_converge() {
    let items = items_in(HANGZHOU, 300, 3);
    // Two calls in three fail (every 2nd throttled, every 3rd an internal error): at most
    // three failures in a row, fewer than the attempts a call gets.
    let sim = sim(
        items.clone(),
        Faults {
            throttle_every: 2,
            fail_every: 3,
            ..Faults::default()
        },
    )
    .await;
    let recorder = Arc::new(Recorder::default());
    let ecs = client(ClientConfig {
        observer: Some(recorder.clone() as SharedObserver),
        ..fast_config(&sim)
    });
    let filter = PipelineFilter {
        page_size: 20,
        ..PipelineFilter::region(HANGZHOU)
    };
    let listing = ecs.list_all(&filter, &provider()).await.expect("converges");
    assert_eq!(ids(&listing), ids_where(&items, |_| true));
    assert_eq!(listing.pages, 15);
    let log = sim.requests();
    let throttled = answered(&log, "Throttling.User");
    let failed = answered(&log, "InternalError");
    assert!(throttled > 0 && failed > 0);
    assert_eq!(listing.retries as usize, throttled + failed);
    assert_eq!(listing.calls, listing.pages + listing.retries);
    assert_eq!(listing.calls as usize, log.len());
    assert_eq!(recorder.retries().len(), throttled + failed);
    sim.shutdown().await;
}

#[tokio::test]
async fn x_acs_retry_after_delays_each_retry_at_least_that_long() {
    let items = items_in(HANGZHOU, 30, 4);
    let sim = sim(
        items.clone(),
        Faults {
            throttle_every: 2,
            retry_after_ms: Some(300),
            ..Faults::default()
        },
    )
    .await;
    // Backoff alone would retry within a millisecond.
    let ecs = client(fast_config(&sim));
    let filter = PipelineFilter {
        page_size: 10,
        ..PipelineFilter::region(HANGZHOU)
    };
    let started = Instant::now();
    let listing = ecs.list_all(&filter, &provider()).await.expect("converges");
    let elapsed = started.elapsed();
    assert_eq!(ids(&listing), ids_where(&items, |_| true));
    // Calls: ok, throttled, ok, throttled, ok: two retries, each after at least 300 ms.
    assert_eq!((listing.calls, listing.retries), (5, 2));
    assert!(elapsed >= Duration::from_millis(600), "{elapsed:?}");
    let log = sim.requests();
    let times: Vec<jiff::Timestamp> = log
        .iter()
        .map(|r| r.time.parse().expect("RFC 3339"))
        .collect();
    for (i, r) in log.iter().enumerate() {
        if r.code.as_deref() == Some("Throttling.User") {
            let gap = times[i + 1].duration_since(times[i]);
            assert!(gap >= jiff::SignedDuration::from_millis(300), "{gap:?}");
        }
    }
    sim.shutdown().await;
}

#[tokio::test]
async fn invalid_next_token_restarts_from_the_first_page_and_lists_the_exact_set() {
    let items = items_in(HANGZHOU, 95, 5);
    // The 3rd call carrying a NextToken is refused: the 4th page of the first run.
    let sim = Arc::new(
        sim(
            items.clone(),
            Faults {
                invalid_token_every: 3,
                ..Faults::default()
            },
        )
        .await,
    );
    let ecs = client(fast_config(&sim));
    let filter = PipelineFilter {
        page_size: 10,
        ..PipelineFilter::region(HANGZHOU)
    };
    let mut stream = Box::pin(ecs.pages(filter, provider()));
    let mut events = Vec::new();
    let mut kept = Vec::new();
    while let Some(event) = stream.next().await {
        match event.expect("no error") {
            PageEvent::Restarted => {
                events.push("restart".to_string());
                kept.clear();
                // The token expired once; the next run goes through.
                sim.set_faults(Faults::default());
            }
            PageEvent::Page(page) => {
                events.push("page".to_string());
                kept.extend(page.items.into_iter().map(|i| i.image_pipeline_id));
            }
        }
    }
    let mut want_events = vec!["page"; 3];
    want_events.push("restart");
    want_events.extend(["page"; 10]);
    assert_eq!(events, want_events);
    assert_eq!(kept, ids_where(&items, |_| true));
    let log = sim.requests();
    assert_eq!(answered(&log, "Invalid.NextToken"), 1);
    let first_pages = log
        .iter()
        .filter(|r| !r.parameters.contains_key("NextToken"))
        .count();
    assert_eq!(first_pages, 2, "the restart began again without a token");
}

#[tokio::test]
async fn truncated_bodies_are_retried_until_a_page_decodes() {
    let items = items_in(HANGZHOU, 100, 6);
    let sim = sim(
        items.clone(),
        Faults {
            malformed_every: 3,
            ..Faults::default()
        },
    )
    .await;
    let recorder = Arc::new(Recorder::default());
    let ecs = client(ClientConfig {
        observer: Some(recorder.clone() as SharedObserver),
        ..fast_config(&sim)
    });
    let filter = PipelineFilter {
        page_size: 10,
        ..PipelineFilter::region(HANGZHOU)
    };
    let listing = ecs.list_all(&filter, &provider()).await.expect("converges");
    assert_eq!(ids(&listing), ids_where(&items, |_| true));
    // Calls 3, 6, 9, ... were garbled: 10 pages need 14 calls.
    assert_eq!((listing.calls, listing.retries), (14, 4));
    assert_eq!(recorder.count("Decode"), 4);
    sim.shutdown().await;
}

#[tokio::test]
async fn an_endpoint_slower_than_the_read_timeout_fails_as_a_timeout_after_every_attempt() {
    let sim = sim(
        items_in(HANGZHOU, 5, 7),
        Faults {
            latency_ms: 3_000,
            ..Faults::default()
        },
    )
    .await;
    let ecs = client(ClientConfig {
        read_timeout: Duration::from_millis(200),
        max_attempts: 3,
        ..fast_config(&sim)
    });
    let started = Instant::now();
    let err = ecs
        .list_all(&PipelineFilter::region(HANGZHOU), &provider())
        .await
        .expect_err("every attempt times out");
    let elapsed = started.elapsed();
    assert!(
        matches!(err.error, EcsError::Transport { timeout: true, .. }),
        "{err}"
    );
    assert_eq!((err.page, err.calls), (1, 3));
    assert_eq!(sim.call_count(), 3, "the simulator saw every attempt");
    // Three read timeouts of 200 ms and millisecond backoffs; far below the 3 s latency.
    assert!(elapsed >= Duration::from_millis(600), "{elapsed:?}");
    assert!(elapsed < Duration::from_secs(30), "{elapsed:?}");
}

/// Every page of one listing of `filter`, with `known` as the pages already known.
async fn pages_of(
    ecs: &imagepipeline_operator::ecs::EcsClient,
    filter: &PipelineFilter,
    known: imagepipeline_operator::ecs::KnownLists,
) -> Vec<imagepipeline_operator::ecs::PipelinePage> {
    let stream = ecs.pages_known(filter.clone(), provider(), Some(known));
    stream
        .map(|event| match event.expect("page") {
            PageEvent::Page(page) => page,
            PageEvent::Restarted => panic!("no restart without faults"),
        })
        .collect()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_a_caller_knows_come_back_undecoded_and_decode_to_what_they_were() {
    known_pages_come_back_undecoded(items_in(HANGZHOU, 250, 9)).await;
}

/// The same with pages of about 460 KiB, each read from the socket in more than one piece (the
/// HTTP client reads at most about 408 KiB at a time).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn big_pages_a_caller_knows_come_back_undecoded_and_decode_to_what_they_were() {
    let mut items = items_in(HANGZHOU, 250, 9);
    for (i, item) in items.iter_mut().enumerate() {
        item["Description"] = json!(format!("{i:04}-{}", "golden image ".repeat(300)));
    }
    known_pages_come_back_undecoded(items).await;
}

/// Lists `items` (250) in pages of 100 three times: as they are, with every page known (each
/// comes back undecoded and decodes to what it was), and with one pipeline changed (its page
/// alone is decoded).
async fn known_pages_come_back_undecoded(mut items: Vec<Value>) {
    use imagepipeline_operator::ecs::KnownLists;
    let sim = sim(items.clone(), Faults::default()).await;
    let ecs = client(fast_config(&sim));
    let filter = PipelineFilter {
        page_size: 100,
        ..PipelineFilter::region(HANGZHOU)
    };
    let first = pages_of(&ecs, &filter, KnownLists::default()).await;
    assert_eq!(first.len(), 3);
    assert!(
        first
            .iter()
            .all(|p| p.undecoded.is_none() && p.list_hash.is_some())
    );
    let hashes: Vec<u64> = first.iter().filter_map(|p| p.list_hash).collect();
    assert_eq!(
        hashes
            .iter()
            .collect::<std::collections::HashSet<_>>()
            .len(),
        3,
        "each page's list hashes differently"
    );
    let known = || {
        KnownLists::new(
            first
                .iter()
                .map(|p| (p.list_hash.expect("hash"), p.list_len.expect("length"))),
        )
    };

    let again = pages_of(&ecs, &filter, known()).await;
    assert_eq!(again.len(), 3);
    for (before, page) in first.iter().zip(&again) {
        assert!(page.items.is_empty() && page.undecoded.is_some());
        assert_eq!(page.list_hash, before.list_hash);
        assert_eq!(
            page.next_token, before.next_token,
            "paging goes on as usual"
        );
        let decoded = page.decoded().expect("decodes").into_owned();
        assert_eq!(decoded.items, before.items);
        assert_eq!(decoded.undecoded, None);
    }

    // One pipeline changes: its page alone is decoded.
    items[150]["Name"] = json!("renamed");
    let id = items[150]["ImagePipelineId"]
        .as_str()
        .expect("id")
        .to_string();
    let on = first
        .iter()
        .position(|p| p.items.iter().any(|i| i.image_pipeline_id == id))
        .expect("listed");
    sim.set_items(items);
    let changed = pages_of(&ecs, &filter, known()).await;
    let undecoded: Vec<bool> = changed.iter().map(|p| p.undecoded.is_some()).collect();
    let expected: Vec<bool> = (0..3).map(|i| i != on).collect();
    assert_eq!(undecoded, expected);
    assert!(
        changed[on]
            .items
            .iter()
            .any(|i| i.name.as_deref() == Some("renamed"))
    );
    assert_ne!(changed[on].list_hash, first[on].list_hash);
}

/// What an [`ItemSink`] was given: the items of the page being read, every drop, and the pages
/// whose event came (the test moves them there).
#[derive(Default)]
struct Given {
    reading: Vec<String>,
    drops: usize,
}

struct Recording(Arc<std::sync::Mutex<Given>>);

impl imagepipeline_operator::ecs::ItemSink for Recording {
    fn item(&mut self, item: &imagepipeline_operator::ecs::ItemView<'_>) {
        let mut given = self.0.lock().expect("not poisoned");
        given.reading.push(item.image_pipeline_id.to_string());
    }
    fn drop_page(&mut self) {
        let mut given = self.0.lock().expect("not poisoned");
        given.reading.clear();
        given.drops += 1;
    }
}

/// Lists 95 pipelines in pages of 10 through a sink under `faults`, checking that each page's
/// items were given before its event and nothing for a refused page; the IDs listed, the
/// restarts and the pages the sink was told to drop.
async fn list_into_a_sink(faults: Faults) -> (Vec<String>, Vec<String>, usize, usize) {
    let items = items_in(HANGZHOU, 95, 7);
    let sim = sim(items.clone(), faults).await;
    let ecs = client(fast_config(&sim));
    let filter = PipelineFilter {
        page_size: 10,
        ..PipelineFilter::region(HANGZHOU)
    };
    let given = Arc::new(std::sync::Mutex::new(Given::default()));
    let mut stream =
        Box::pin(ecs.pages_into(filter, provider(), Box::new(Recording(given.clone()))));
    let (mut listed, mut restarts) = (Vec::new(), 0);
    while let Some(event) = stream.next().await {
        let mut given = given.lock().expect("not poisoned");
        match event.expect("converges") {
            PageEvent::Page(page) => {
                assert!(page.items.is_empty(), "the items went to the sink");
                assert!(!given.reading.is_empty(), "every page has items here");
                listed.append(&mut given.reading);
            }
            PageEvent::Restarted => {
                assert!(given.reading.is_empty(), "a refused page gives nothing");
                listed.clear();
                restarts += 1;
                // The token expired once; the next run goes through.
                sim.set_faults(Faults::default());
            }
        }
    }
    let drops = given.lock().expect("not poisoned").drops;
    sim.shutdown().await;
    (listed, ids_where(&items, |_| true), restarts, drops)
}

#[tokio::test]
async fn items_given_to_a_sink_are_each_page_before_its_event_through_garbled_bodies_and_restarts()
{
    // A truncated body is cut in the middle of its list: its first items were given, then
    // dropped, and the retried page gives them all.
    let (listed, expected, restarts, drops) = list_into_a_sink(Faults {
        malformed_every: 4,
        throttle_every: 5,
        ..Faults::default()
    })
    .await;
    assert_eq!(listed, expected);
    assert_eq!(restarts, 0);
    assert!(drops > 0);
    // A refused NextToken restarts the listing: the pages before it come again.
    let (listed, expected, restarts, _) = list_into_a_sink(Faults {
        invalid_token_every: 3,
        ..Faults::default()
    })
    .await;
    assert_eq!(listed, expected);
    assert!(restarts > 0);
}
