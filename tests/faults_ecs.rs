//! Fault suite, ECS side: our client against `ecs-sim` while it throttles, fails, garbles,
//! stalls and refuses tokens. Every listing either converges to the exact set or fails with an
//! error that names the page, the calls spent and the service's code and RequestId; the shared
//! rate limit holds under a storm; no response is read past `max_body_bytes`.

mod client_sim_support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use client_sim_support::*;
use imagepipeline_operator::ecs::{
    ClientConfig, EcsError, ListingError, PipelineFilter, SharedObserver, TagFilter,
};
use imagepipeline_operator::sim::{Faults, HUGE_BODY_BYTES, MalformedKind, SimHandle};
use serde_json::Value;

fn pages_of(size: u32) -> PipelineFilter {
    PipelineFilter {
        page_size: size,
        ..PipelineFilter::region(HANGZHOU)
    }
}

fn all_ids(items: &[Value]) -> Vec<String> {
    ids_where(items, |_| true)
}

fn has_tag(item: &Value, key: &str, value: &str) -> bool {
    item["Tags"]["Tag"].as_array().is_some_and(|tags| {
        tags.iter()
            .any(|t| t["TagKey"] == key && t["TagValue"] == value)
    })
}

/// The most calls the simulator answered within any one second.
fn busiest_second(sim: &SimHandle) -> usize {
    let mut times: Vec<jiff::Timestamp> = sim
        .requests()
        .iter()
        .map(|r| r.time.parse().expect("RFC 3339"))
        .collect();
    times.sort();
    let second = jiff::SignedDuration::from_secs(1);
    (0..times.len())
        .map(|i| {
            times[i..]
                .iter()
                .take_while(|t| t.duration_since(times[i]) < second)
                .count()
        })
        .max()
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttling_storm_converges_without_exceeding_the_shared_rate_limit() {
    // Low enough that the check has a whole 100 ms interval of slack against scheduling noise:
    // a limiter with burst B lets at most QPS + B - 1 calls into any one second.
    const QPS: u32 = 10;
    const BURST: u32 = 2;
    let items = items_in(HANGZHOU, 240, 11);
    // 30% Throttling.User (half of them with x-acs-retry-after), 10% InternalError.
    let sim = sim(
        items.clone(),
        Faults {
            throttle_percent: 30,
            fail_percent: 10,
            retry_after_ms: Some(40),
            retry_after_percent: Some(50),
            seed: 2024,
            ..Faults::default()
        },
    )
    .await;
    let recorder = Arc::new(Recorder::default());
    // One client (one process-wide limiter), one AccessKeyId, four listings at once.
    let ecs = client(ClientConfig {
        rate_limit_qps: QPS,
        rate_limit_burst: BURST,
        max_attempts: 15,
        base_backoff: Duration::from_millis(5),
        max_backoff: Duration::from_millis(40),
        observer: Some(recorder.clone() as SharedObserver),
        ..fast_config(&sim)
    });
    let tag = |k: &str, v: &str| TagFilter {
        key: k.into(),
        value: Some(v.into()),
    };
    let listings: Vec<(PipelineFilter, Vec<String>)> = vec![
        (pages_of(30), all_ids(&items)),
        (
            PipelineFilter {
                tags: vec![tag("team", "payments")],
                ..pages_of(10)
            },
            ids_where(&items, |i| has_tag(i, "team", "payments")),
        ),
        (
            PipelineFilter {
                tags: vec![tag("env", "prod")],
                ..pages_of(15)
            },
            ids_where(&items, |i| has_tag(i, "env", "prod")),
        ),
        (
            PipelineFilter {
                resource_group_id: Some("rg-acfmsearch0002".into()),
                ..pages_of(15)
            },
            ids_where(&items, |i| i["ResourceGroupId"] == "rg-acfmsearch0002"),
        ),
    ];
    let runs = listings.iter().map(|(filter, _)| {
        let ecs = ecs.clone();
        let filter = filter.clone();
        tokio::spawn(async move { ecs.list_all(&filter, &provider()).await })
    });
    let results = futures::future::join_all(runs).await;
    for ((filter, want), result) in listings.iter().zip(results) {
        let listing = result.expect("task").expect("the storm is weathered");
        assert_eq!(ids(&listing), *want, "{filter:?}");
    }
    let log = sim.requests();
    let throttled = answered(&log, "Throttling.User");
    let failed = answered(&log, "InternalError");
    assert!(
        log.len() > (QPS + BURST) as usize,
        "enough calls to test the limit"
    );
    assert!(
        (log.len() * 15 / 100..log.len() * 45 / 100).contains(&throttled),
        "{throttled} of {}",
        log.len()
    );
    assert!(failed > 0, "{failed}");
    assert_eq!(recorder.retries().len(), throttled + failed);
    let busiest = busiest_second(&sim);
    assert!(
        busiest <= (QPS + BURST) as usize,
        "{busiest} calls within one second"
    );
    sim.shutdown().await;
}

#[tokio::test]
async fn a_page_that_keeps_failing_is_named_with_the_calls_spent_and_the_request_id() {
    let items = items_in(HANGZHOU, 50, 12);
    let sim = Arc::new(sim(items, Faults::default()).await);
    // After two good pages, the service fails for good.
    let steer = Arc::clone(&sim);
    let recorder = Arc::new(Recorder::with_hook(move |_, n| {
        if n == 2 {
            steer.set_faults(Faults {
                fail_every: 1,
                ..Faults::default()
            });
        }
    }));
    let ecs = client(ClientConfig {
        max_attempts: 4,
        observer: Some(recorder.clone() as SharedObserver),
        ..fast_config(&sim)
    });
    let err: ListingError = ecs
        .list_all(&pages_of(10), &provider())
        .await
        .expect_err("page 3 never succeeds");
    assert_eq!(err.page, 3);
    assert_eq!(err.calls, 2 + 4, "two pages, then every attempt of page 3");
    let EcsError::Api(api) = &err.error else {
        panic!("expected an API error, got {err}");
    };
    assert_eq!((api.status, api.code.as_str()), (500, "InternalError"));
    let last = sim.requests().last().cloned().expect("logged");
    assert_eq!(api.request_id.as_deref(), Some(last.request_id.as_str()));
    assert!(api.host_id.is_some() && api.recommend.is_some());
    let text = err.to_string();
    assert!(
        text.contains("page 3") && text.contains(&last.request_id),
        "{text}"
    );
    assert_eq!(recorder.count("InternalError"), 4);
}

async fn listing_with_malformed(
    kind: MalformedKind,
    every: u64,
) -> (SimHandle, Result<Vec<String>, ListingError>) {
    let items = items_in(HANGZHOU, 40, 13);
    let sim = sim(
        items,
        Faults {
            malformed_every: every,
            malformed_kind: kind,
            ..Faults::default()
        },
    )
    .await;
    let ecs = client(ClientConfig {
        max_attempts: 3,
        ..fast_config(&sim)
    });
    let result = ecs.list_all(&pages_of(10), &provider()).await;
    (sim, result.map(|l| ids(&l)))
}

#[tokio::test]
async fn garbled_html_and_empty_bodies_are_decode_errors_retried_then_reported() {
    for (kind, status, quoted) in [
        (MalformedKind::Truncated, 200, "ImagePipeline"),
        (MalformedKind::Html, 502, "502 Bad Gateway"),
        (MalformedKind::Empty, 200, ""),
    ] {
        let (sim, result) = listing_with_malformed(kind, 1).await;
        let err = result.expect_err("never a page");
        let EcsError::Decode {
            status: got,
            snippet,
        } = &err.error
        else {
            panic!("{kind:?}: expected a decode error, got {err}");
        };
        assert_eq!(*got, status, "{kind:?}");
        assert!(snippet.contains(quoted), "{kind:?}: {snippet:?}");
        assert_eq!(
            (err.page, err.calls),
            (1, 3),
            "{kind:?}: retried like any transient"
        );
        assert_eq!(sim.call_count(), 3);
        sim.shutdown().await;

        let (sim, result) = listing_with_malformed(kind, 2).await;
        let want = all_ids(&sim.items());
        assert_eq!(
            result.expect("every other call garbled: converges"),
            want,
            "{kind:?}"
        );
        sim.shutdown().await;
    }
}

#[tokio::test]
async fn a_200_with_an_error_body_is_the_services_error_not_an_empty_page() {
    let (sim, result) = listing_with_malformed(MalformedKind::Error200, 1).await;
    let err = result.expect_err("an error object is no page");
    let EcsError::Api(api) = &err.error else {
        panic!("expected an API error, got {err}");
    };
    assert_eq!((api.status, api.code.as_str()), (200, "InternalError"));
    assert!(api.request_id.is_some());
    assert_eq!(
        err.calls, 3,
        "InternalError is transient, so it was retried"
    );
    sim.shutdown().await;

    let (sim, result) = listing_with_malformed(MalformedKind::Error200, 3).await;
    assert_eq!(result.expect("converges"), all_ids(&sim.items()));
    sim.shutdown().await;
}

#[tokio::test]
async fn pages_with_odd_types_everywhere_decode_to_the_same_pipelines() {
    let items = items_in(HANGZHOU, 25, 14);
    let sim = sim(items.clone(), Faults::default()).await;
    let ecs = client(fast_config(&sim));
    // Page size 1 also sends every set as a bare object instead of a one-element list.
    for size in [1, 10] {
        sim.set_faults(Faults::default());
        let clean = ecs
            .list_all(&pages_of(size), &provider())
            .await
            .expect("clean");
        sim.set_faults(Faults {
            malformed_every: 1,
            malformed_kind: MalformedKind::WrongTypes,
            ..Faults::default()
        });
        let odd = ecs
            .list_all(&pages_of(size), &provider())
            .await
            .expect("lenient");
        assert_eq!(odd.items, clean.items, "page size {size}");
        assert_eq!(odd.skipped_items, 0);
        assert_eq!(odd.pages, clean.pages);
        assert_eq!(ids(&odd), all_ids(&items));
    }
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_50_mib_body_is_refused_at_max_body_bytes_without_reading_the_rest() {
    let sim = sim(
        items_in(HANGZHOU, 3, 15),
        Faults {
            malformed_every: 1,
            malformed_kind: MalformedKind::Huge,
            ..Faults::default()
        },
    )
    .await;
    let config = fast_config(&sim);
    let limit = config.max_body_bytes;
    assert_eq!(limit, 16 * 1024 * 1024, "the default limit");
    let ecs = client(config);
    let err = ecs
        .list_all(&PipelineFilter::region(HANGZHOU), &provider())
        .await
        .expect_err("too large");
    assert_eq!(err.error, EcsError::BodyTooLarge { limit });
    assert_eq!(err.calls, 1, "a body too large is not retried");
    // Wait until the simulator has noticed the closed connection and stopped sending.
    let mut sent = sim.huge_bytes_sent();
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = sim.huge_bytes_sent();
        if now == sent {
            break;
        }
        sent = now;
    }
    assert!(
        sent > limit as u64,
        "the client read up to the limit: {sent}"
    );
    assert!(
        sent < HUGE_BODY_BYTES * 3 / 4,
        "{sent} of {HUGE_BODY_BYTES} bytes sent: the client hung up early"
    );
    sim.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_calls_time_out_and_are_retried_until_the_listing_converges() {
    let items = items_in(HANGZHOU, 50, 16);
    // Every third call stalls far beyond the read timeout.
    let sim = sim(
        items.clone(),
        Faults {
            slow_every: 3,
            slow_ms: 5_000,
            ..Faults::default()
        },
    )
    .await;
    let recorder = Arc::new(Recorder::default());
    let ecs = client(ClientConfig {
        read_timeout: Duration::from_millis(250),
        observer: Some(recorder.clone() as SharedObserver),
        ..fast_config(&sim)
    });
    let listing = ecs
        .list_all(&pages_of(10), &provider())
        .await
        .expect("converges");
    assert_eq!(ids(&listing), all_ids(&items));
    // Calls 1 2 [3] 4 5 [6] 7: five pages, two timeouts.
    assert_eq!((listing.calls, listing.retries), (7, 2));
    assert_eq!(recorder.count("Timeout"), 2);
    assert_eq!(recorder.retries(), ["Timeout", "Timeout"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_always_stalls_ends_the_listing_after_max_attempts() {
    let sim = sim(
        items_in(HANGZHOU, 5, 17),
        Faults {
            latency_ms: 10_000,
            ..Faults::default()
        },
    )
    .await;
    // Worst case: 4 attempts x 250 ms plus three backoffs under 50 ms each: about 1.2 s.
    let ecs = client(ClientConfig {
        read_timeout: Duration::from_millis(250),
        max_attempts: 4,
        base_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        ..fast_config(&sim)
    });
    let started = Instant::now();
    let err = ecs
        .list_all(&pages_of(10), &provider())
        .await
        .expect_err("every attempt times out");
    let elapsed = started.elapsed();
    assert!(
        matches!(err.error, EcsError::Transport { timeout: true, .. }),
        "{err}"
    );
    assert_eq!((err.page, err.calls), (1, 4));
    assert_eq!(sim.call_count(), 4);
    assert!(elapsed < Duration::from_secs(30), "bounded: {elapsed:?}");
}

#[tokio::test]
async fn an_expired_next_token_mid_listing_restarts_it_once_and_lists_the_exact_set() {
    let items = items_in(HANGZHOU, 50, 18);
    let sim = Arc::new(
        sim(
            items.clone(),
            Faults {
                invalid_token_every: 2,
                ..Faults::default()
            },
        )
        .await,
    );
    // The token expires once: the fault is lifted as soon as the client has seen it.
    let steer = Arc::clone(&sim);
    let recorder = Arc::new(Recorder::with_hook(move |code, _| {
        if code == "Invalid.NextToken" {
            steer.set_faults(Faults::default());
        }
    }));
    let ecs = client(ClientConfig {
        observer: Some(recorder.clone() as SharedObserver),
        ..fast_config(&sim)
    });
    let listing = ecs
        .list_all(&pages_of(10), &provider())
        .await
        .expect("restarted");
    assert_eq!(
        ids(&listing),
        all_ids(&items),
        "exactly the set, no duplicates"
    );
    assert_eq!(listing.restarts, 1);
    // Pages 1 and 2, the refused page 3, then pages 1 to 5 again.
    assert_eq!((listing.pages, listing.calls, listing.retries), (5, 8, 0));
    let log = sim.requests();
    assert_eq!(answered(&log, "Invalid.NextToken"), 1);
}

#[tokio::test]
async fn a_next_token_refused_every_time_fails_after_the_restart_bound() {
    let sim = sim(
        items_in(HANGZHOU, 50, 19),
        Faults {
            invalid_token_every: 1,
            ..Faults::default()
        },
    )
    .await;
    let ecs = client(ClientConfig {
        max_token_restarts: 2,
        ..fast_config(&sim)
    });
    let err = ecs
        .list_all(&pages_of(10), &provider())
        .await
        .expect_err("never gets past page 2");
    let EcsError::Api(api) = &err.error else {
        panic!("expected an API error, got {err}");
    };
    assert_eq!((api.status, api.code.as_str()), (403, "Invalid.NextToken"));
    assert!(api.request_id.is_some());
    // Three runs (the first and two restarts) of page 1 and the refused page 2.
    assert_eq!((err.page, err.calls), (2, 6));
    let log = sim.requests();
    let first_pages = log
        .iter()
        .filter(|r| !r.parameters.contains_key("NextToken"))
        .count();
    assert_eq!(first_pages, 3);
    assert_eq!(answered(&log, "Invalid.NextToken"), 3);
    sim.shutdown().await;
}
