//! Leader election between two replicas, against an in-memory fake of the Lease API (the real
//! `kube-lease-manager` wire traffic: GET, create, server-side apply with field-ownership
//! conflicts, strategic-merge renewals and releases). Each replica runs `Leadership::elect` and
//! drives a stand-in controller through `run_while_leading` that counts its writes.
//!
//! What is proven: only the holder writes, a follower writes nothing until it holds the lease,
//! a follower takes over within about one lease duration after the leader dies, a leader cut off
//! from the API server stops writing before anyone else can take over, and a leader's writes
//! stop the moment its channel turns false.

mod support;

use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use imagepipeline_operator::leader::{Leadership, LeaseSettings, run_while_leading};
use support::lease_api::{Endpoint, FakeLeaseApi};
use tokio::time::Instant;

const NS: &str = "operators";
const LEASE: &str = "imagepipeline-operator-leader";
const DURATION: Duration = Duration::from_secs(2);
const GRACE: Duration = Duration::from_secs(1);
/// Generous upper bound for anything that should happen within about one lease duration.
const WITHIN: Duration = Duration::from_secs(15);

/// How many stand-in controllers run right now, and the most that ever ran at once.
#[derive(Default)]
struct Exclusive {
    running: AtomicI32,
    most: AtomicI32,
}

/// One replica: its lease endpoint, its leadership, its stand-in controller and what it did.
struct Replica {
    name: &'static str,
    endpoint: Endpoint,
    leadership: Option<Leadership>,
    controller: tokio::task::JoinHandle<()>,
    writes: Arc<AtomicU64>,
    leading: Arc<AtomicBool>,
    /// Writes counted when the channel last turned false, and when.
    stopped_at: Arc<Mutex<Option<(u64, Instant)>>>,
    /// When the channel last turned true.
    started_at: Arc<Mutex<Option<Instant>>>,
}

impl Replica {
    async fn start(api: &FakeLeaseApi, name: &'static str, exclusive: Arc<Exclusive>) -> Self {
        let endpoint = api.endpoint().await;
        let settings = LeaseSettings {
            name: LEASE.into(),
            namespace: NS.into(),
            identity: name.into(),
            duration: DURATION,
            grace: GRACE,
        };
        let leadership = Leadership::elect(endpoint.client(), &settings)
            .await
            .expect("lease manager starts");
        let writes = Arc::new(AtomicU64::new(0));
        let leading = Arc::new(AtomicBool::new(false));
        let stopped_at = Arc::new(Mutex::new(None));
        let started_at = Arc::new(Mutex::new(None));
        let start = {
            let (writes, exclusive) = (writes.clone(), exclusive.clone());
            move || {
                let (writes, exclusive) = (writes.clone(), exclusive.clone());
                async move {
                    struct Running(Arc<Exclusive>);
                    impl Drop for Running {
                        fn drop(&mut self) {
                            self.0.running.fetch_sub(1, Ordering::SeqCst);
                        }
                    }
                    let now = exclusive.running.fetch_add(1, Ordering::SeqCst) + 1;
                    exclusive.most.fetch_max(now, Ordering::SeqCst);
                    let _running = Running(exclusive);
                    loop {
                        writes.fetch_add(1, Ordering::SeqCst);
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                }
            }
        };
        let on_change = {
            let (writes, leading, stopped_at, started_at) = (
                writes.clone(),
                leading.clone(),
                stopped_at.clone(),
                started_at.clone(),
            );
            move |now: bool| {
                leading.store(now, Ordering::SeqCst);
                if now {
                    *started_at.lock().unwrap() = Some(Instant::now());
                } else {
                    *stopped_at.lock().unwrap() =
                        Some((writes.load(Ordering::SeqCst), Instant::now()));
                }
            }
        };
        let controller = tokio::spawn(run_while_leading(
            leadership.leading.clone(),
            start,
            on_change,
        ));
        Self {
            name,
            endpoint,
            leadership: Some(leadership),
            controller,
            writes,
            leading,
            stopped_at,
            started_at,
        }
    }

    fn writes(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }

    fn is_leading(&self) -> bool {
        self.leading.load(Ordering::SeqCst)
    }

    fn started_at(&self) -> Option<Instant> {
        *self.started_at.lock().unwrap()
    }

    fn stopped_at(&self) -> Option<(u64, Instant)> {
        *self.stopped_at.lock().unwrap()
    }

    /// The process dies: it can no longer reach the API server (so it releases nothing) and
    /// everything it ran is gone.
    fn die(&mut self) {
        self.endpoint.cut_off(true);
        self.controller.abort();
        self.leadership.take();
    }
}

async fn wait_until(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < limit, "{what}: not within {limit:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    start.elapsed()
}

/// Asserts that `replica` made no write after its channel turned false.
async fn assert_writes_stopped(replica: &Replica) {
    let (at_stop, _) = replica
        .stopped_at()
        .unwrap_or_else(|| panic!("{} never stopped leading", replica.name));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        replica.writes(),
        at_stop,
        "{} wrote after losing the lease",
        replica.name
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_holder_writes_and_a_follower_takes_over_when_the_leader_dies() {
    let api = FakeLeaseApi::new();
    let exclusive = Arc::new(Exclusive::default());
    let mut a = Replica::start(&api, "replica-a", exclusive.clone()).await;
    wait_until("replica-a leads", WITHIN, || a.is_leading()).await;
    let b = Replica::start(&api, "replica-b", exclusive.clone()).await;

    // Several renewals of A's lease: B follows and writes nothing.
    tokio::time::sleep(DURATION * 2 + GRACE).await;
    assert!(!b.is_leading(), "the follower must not lead");
    assert_eq!(b.writes(), 0, "the follower must not write");
    assert!(b.started_at().is_none());
    assert!(a.is_leading() && a.writes() > 0);
    assert_eq!(
        api.holder(NS, LEASE).unwrap().identity.as_deref(),
        Some("replica-a")
    );

    // A dies without releasing the lease; B takes over once it expires.
    let died = Instant::now();
    a.die();
    let frozen = a.writes();
    wait_until("replica-b takes over", WITHIN, || b.is_leading()).await;
    let took = died.elapsed();
    assert!(
        took <= DURATION + Duration::from_secs(4),
        "takeover took {took:?}, the lease lasts {DURATION:?}"
    );
    wait_until("replica-b writes", WITHIN, || b.writes() > 0).await;
    assert_eq!(a.writes(), frozen, "a dead leader writes nothing");
    assert_eq!(
        api.holder(NS, LEASE).unwrap().identity.as_deref(),
        Some("replica-b")
    );
    assert_eq!(
        exclusive.most.load(Ordering::SeqCst),
        1,
        "two controllers ran at once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_cut_off_from_the_api_server_stops_writing_before_another_takes_over() {
    let api = FakeLeaseApi::new();
    let exclusive = Arc::new(Exclusive::default());
    let a = Replica::start(&api, "replica-a", exclusive.clone()).await;
    wait_until("replica-a leads", WITHIN, || a.is_leading()).await;
    let b = Replica::start(&api, "replica-b", exclusive.clone()).await;
    tokio::time::sleep(DURATION).await;
    assert_eq!(b.writes(), 0);

    // A can no longer renew. It keeps running, but must step down by the time its lease
    // expires, because B takes the lease then.
    a.endpoint.cut_off(true);
    wait_until("replica-b takes over", WITHIN, || b.is_leading()).await;
    let (_, a_stopped) = a
        .stopped_at()
        .expect("the cut-off leader must stop leading");
    let b_started = b.started_at().unwrap();
    assert!(
        a_stopped <= b_started,
        "replica-a still led when replica-b took over"
    );
    assert!(!a.is_leading());
    assert_writes_stopped(&a).await;
    assert_eq!(
        exclusive.most.load(Ordering::SeqCst),
        1,
        "two controllers ran at once"
    );

    // Reconnected, A stays a follower: the lease is B's.
    a.endpoint.cut_off(false);
    tokio::time::sleep(DURATION * 2).await;
    assert!(!a.is_leading() && b.is_leading());
    assert_eq!(
        api.holder(NS, LEASE).unwrap().identity.as_deref(),
        Some("replica-b")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_shuts_down_releases_the_lease_and_the_follower_takes_over_at_once() {
    let api = FakeLeaseApi::new();
    let exclusive = Arc::new(Exclusive::default());
    let mut a = Replica::start(&api, "replica-a", exclusive.clone()).await;
    wait_until("replica-a leads", WITHIN, || a.is_leading()).await;
    let b = Replica::start(&api, "replica-b", exclusive.clone()).await;
    tokio::time::sleep(GRACE).await;
    assert_eq!(b.writes(), 0);

    // Graceful shutdown: the controller ends, the leadership is dropped, the lease released.
    let stopped = Instant::now();
    a.controller.abort();
    a.leadership.take();
    wait_until("replica-a releases the lease", WITHIN, || {
        api.holder(NS, LEASE).unwrap().identity.as_deref() != Some("replica-a")
    })
    .await;
    wait_until("replica-b takes over", WITHIN, || b.is_leading()).await;
    // A released lease is free at once (B only waits for its own next look at the lease, at
    // most one lease duration), not after the expiry of a dead leader's lease.
    assert!(stopped.elapsed() <= DURATION + Duration::from_secs(3));
    assert_eq!(exclusive.most.load(Ordering::SeqCst), 1);
}
