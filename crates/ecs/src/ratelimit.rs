//! A process-wide token bucket per AccessKeyId, so that many queries sharing one credential do
//! not storm the API. Every HTTP attempt, retries included, takes a token.
//!
//! Built on `governor`'s keyed limiter with a clock that reads tokio's time, so the limiter
//! follows `tokio::time::pause()` in tests and waits with `tokio::time::sleep`.
//!
//! Calls that had to wait for a token are counted process-wide ([`wait_totals`]), so `/metrics`
//! can show when the limit, rather than the API, is what slows syncs down.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::Clock;
use governor::nanos::Nanos;
use governor::{Quota, RateLimiter};

use super::error::EcsError;

/// governor's clock, read from tokio's (pausable) time.
#[derive(Debug, Clone)]
struct TokioClock {
    origin: tokio::time::Instant,
}

impl Clock for TokioClock {
    type Instant = Nanos;

    fn now(&self) -> Nanos {
        Nanos::from(self.origin.elapsed())
    }
}

type Keyed = RateLimiter<
    String,
    governor::state::keyed::HashMapStateStore<String>,
    TokioClock,
    governor::middleware::NoOpMiddleware<Nanos>,
>;

// Process-wide rather than per limiter: the metrics read them at scrape time without a handle
// on the client that owns the limiter (a process runs one client).
static WAITS: AtomicU64 = AtomicU64::new(0);
static WAITED_MICROS: AtomicU64 = AtomicU64::new(0);

/// How many calls waited for a rate-limit token, and for how long in total, since the process
/// started (every limiter of the process together).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WaitTotals {
    /// Calls that found their bucket empty and waited.
    pub waits: u64,
    /// Time those calls spent waiting.
    pub waited: Duration,
}

/// The process-wide [`WaitTotals`].
pub fn wait_totals() -> WaitTotals {
    WaitTotals {
        waits: WAITS.load(Ordering::Relaxed),
        waited: Duration::from_micros(WAITED_MICROS.load(Ordering::Relaxed)),
    }
}

fn record_wait(waited: Duration) {
    WAITED_MICROS.fetch_add(
        u64::try_from(waited.as_micros()).unwrap_or(u64::MAX),
        Ordering::Relaxed,
    );
    WAITS.fetch_add(1, Ordering::Relaxed);
}

/// The largest burst [`burst_for`] gives.
pub const MAX_BURST: u32 = 10;

/// The burst that goes with a rate of `qps` calls per second, for the programs' flags: a
/// second's worth of calls, at least 1 and at most [`MAX_BURST`].
pub fn burst_for(qps: u32) -> u32 {
    qps.clamp(1, MAX_BURST)
}

/// Limits calls per key (the AccessKeyId) to `qps` per second with bursts of `burst`.
#[derive(Debug)]
pub struct KeyedRateLimiter {
    limiter: Keyed,
    clock: TokioClock,
    checks: AtomicU32,
}

/// Every this many checks, buckets that are full again (idle keys) are forgotten, so rotated
/// AccessKeyIds do not accumulate.
const RETAIN_EVERY: u32 = 1024;

impl KeyedRateLimiter {
    /// A limiter allowing `qps` calls per second per key, `burst` of them at once.
    /// Both must be at least 1.
    #[allow(clippy::result_large_err)] // EcsError is the boundary's fixed error type.
    pub fn new(qps: u32, burst: u32) -> Result<Self, EcsError> {
        let qps = NonZeroU32::new(qps)
            .ok_or_else(|| EcsError::Config("rate_limit_qps must be at least 1".into()))?;
        let burst = NonZeroU32::new(burst)
            .ok_or_else(|| EcsError::Config("rate_limit_burst must be at least 1".into()))?;
        let clock = TokioClock {
            origin: tokio::time::Instant::now(),
        };
        let quota = Quota::per_second(qps).allow_burst(burst);
        Ok(Self {
            limiter: RateLimiter::hashmap_with_clock(quota, clock.clone()),
            clock,
            checks: AtomicU32::new(0),
        })
    }

    /// Takes a token for `key` now if one is available; otherwise how long until one is.
    pub fn try_acquire(&self, key: &str) -> Result<(), Duration> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % RETAIN_EVERY == RETAIN_EVERY - 1 {
            self.limiter.retain_recent();
        }
        self.limiter
            .check_key(&key.to_string())
            .map(|_| ())
            .map_err(|not_until| not_until.wait_time_from(self.clock.now()))
    }

    /// Waits until a token for `key` is available and takes it; a wait is counted in
    /// [`wait_totals`].
    pub async fn acquire(&self, key: &str) {
        let mut waiting_since = None;
        loop {
            match self.try_acquire(key) {
                Ok(()) => break,
                Err(wait) => {
                    waiting_since.get_or_insert_with(tokio::time::Instant::now);
                    tokio::time::sleep(wait.max(Duration::from_millis(1))).await;
                }
            }
        }
        if let Some(since) = waiting_since {
            record_wait(since.elapsed());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_burst_is_a_seconds_calls_between_one_and_ten() {
        assert_eq!(burst_for(0), 1);
        assert_eq!(burst_for(1), 1);
        assert_eq!(burst_for(7), 7);
        assert_eq!(burst_for(10), 10);
        assert_eq!(burst_for(500), MAX_BURST);
    }

    #[tokio::test(start_paused = true)]
    async fn calls_beyond_the_burst_wait_for_the_rate() {
        let limiter = KeyedRateLimiter::new(2, 1).expect("valid quota");
        let start = tokio::time::Instant::now();
        for _ in 0..5 {
            limiter.acquire("LTAIkey").await;
        }
        // One token at once, then one per 500 ms.
        assert!(
            start.elapsed() >= Duration::from_millis(2000),
            "{:?}",
            start.elapsed()
        );
        assert!(
            start.elapsed() < Duration::from_millis(2600),
            "{:?}",
            start.elapsed()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn calls_that_wait_are_counted_with_their_waiting_time() {
        let limiter = KeyedRateLimiter::new(2, 1).expect("valid quota");
        // Other tests of this process may wait at the same time: the totals only grow.
        limiter.acquire("counted").await;
        let before = wait_totals();
        for _ in 0..3 {
            limiter.acquire("counted").await;
        }
        let after = wait_totals();
        assert!(after.waits >= before.waits + 3, "{before:?} -> {after:?}");
        assert!(
            after.waited >= before.waited + Duration::from_millis(1400),
            "three waits of about 500 ms: {before:?} -> {after:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn burst_is_granted_at_once_then_refused() {
        let limiter = KeyedRateLimiter::new(10, 3).expect("valid quota");
        for _ in 0..3 {
            assert_eq!(limiter.try_acquire("k"), Ok(()));
        }
        let wait = limiter.try_acquire("k").expect_err("bucket is empty");
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(100),
            "{wait:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn keys_have_separate_buckets() {
        let limiter = KeyedRateLimiter::new(1, 1).expect("valid quota");
        assert_eq!(limiter.try_acquire("team-a"), Ok(()));
        assert!(limiter.try_acquire("team-a").is_err());
        assert_eq!(limiter.try_acquire("team-b"), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn idle_keys_are_forgotten() {
        let limiter = KeyedRateLimiter::new(100, 1).expect("valid quota");
        for i in 0..10 {
            assert_eq!(limiter.try_acquire(&format!("old-{i}")), Ok(()));
        }
        tokio::time::advance(Duration::from_secs(1)).await;
        for _ in 0..RETAIN_EVERY {
            let _ = limiter.try_acquire("current");
        }
        assert_eq!(limiter.limiter.len(), 1);
    }

    #[test]
    fn zero_rates_are_refused() {
        assert!(matches!(
            KeyedRateLimiter::new(0, 1),
            Err(EcsError::Config(_))
        ));
        assert!(matches!(
            KeyedRateLimiter::new(1, 0),
            Err(EcsError::Config(_))
        ));
    }
}
