//! Triggers and pacing: whether a reconcile is a sync, when the next one is due, and how long
//! to back off after a failure. Pure functions of the query, the clock and a random source.

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use rand::Rng;

/// Setting this annotation on a query to a new value (e.g. the current time) syncs it at once.
pub const REQUESTED_AT_ANNOTATION: &str = "ecs.mirror.io/requested-at";

/// Why a reconcile lists the query again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncReason {
    /// This operator process has not synced the query yet (creation, or a restart).
    FirstSeen,
    /// `metadata.generation` moved past `status.observedGeneration`.
    SpecChanged,
    /// The `ecs.mirror.io/requested-at` annotation has a value not handled yet.
    Requested,
    /// `status.nextSyncTime` has passed.
    Scheduled,
    /// The credentials changed (the Secret was edited, created or deleted).
    CredentialsChanged,
    /// A mirrored ImagePipeline differs from what the last listing says it should be.
    Drift,
    /// The previous reconcile failed with a Kubernetes API error.
    Retry,
}

impl SyncReason {
    /// A short name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            SyncReason::FirstSeen => "first_seen",
            SyncReason::SpecChanged => "spec_changed",
            SyncReason::Requested => "requested",
            SyncReason::Scheduled => "scheduled",
            SyncReason::CredentialsChanged => "credentials_changed",
            SyncReason::Drift => "drift",
            SyncReason::Retry => "retry",
        }
    }

    /// Whether the reason comes from watching other objects; such syncs are spaced by
    /// [`MIN_TRIGGERED_SPACING`] so a flapping object cannot make the controller hot-loop.
    pub fn is_watch_triggered(self) -> bool {
        matches!(self, SyncReason::CredentialsChanged | SyncReason::Drift)
    }
}

/// The earliest start of a listing that a sync for `reason` may use (`None`: any listing in the
/// share window). A sync triggered by a change at `now` (a refresh request, a new spec, new
/// credentials, drift) must see the cloud as it is after the trigger; a new query, what is there
/// since it was created (`created`, when known). Scheduled refreshes and retries share freely,
/// which is what lets queries due at the same moment list once.
pub fn listing_not_before(
    reason: SyncReason,
    now: Timestamp,
    created: Option<Timestamp>,
) -> Option<Timestamp> {
    match reason {
        SyncReason::SpecChanged
        | SyncReason::Requested
        | SyncReason::CredentialsChanged
        | SyncReason::Drift => Some(now),
        // creationTimestamp has whole seconds: the query may have been created up to a second
        // after it, so only a listing started a second later surely started after the creation
        // (or one started now, when that is sooner).
        SyncReason::FirstSeen => created.map(|c| add(c, Duration::from_secs(1)).min(now)),
        SyncReason::Scheduled | SyncReason::Retry => None,
    }
}

/// The shortest time between two syncs of a query caused by watched objects.
pub const MIN_TRIGGERED_SPACING: Duration = Duration::from_secs(10);

/// What the due check looks at.
#[derive(Debug, Clone, Default)]
pub struct DueInput<'a> {
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// `status.observedGeneration`.
    pub observed_generation: Option<i64>,
    /// The value of the requested-at annotation.
    pub requested_at: Option<&'a str>,
    /// `status.lastHandledRequestedAt`.
    pub last_handled_requested_at: Option<&'a str>,
    /// `status.nextSyncTime`.
    pub next_sync_time: Option<Timestamp>,
    /// Whether this process remembers a sync of the query.
    pub remembered: bool,
    /// Whether the credentials differ from those of the remembered sync.
    pub credentials_changed: bool,
    /// Whether a mirrored object drifted from the remembered listing.
    pub drifted: bool,
    /// Whether the previous reconcile failed with a Kubernetes API error.
    pub retry: bool,
}

/// Why the query is due now, or `None` when it is not.
pub fn due(input: &DueInput<'_>, now: Timestamp) -> Option<SyncReason> {
    if !input.remembered {
        return Some(SyncReason::FirstSeen);
    }
    if input.generation.is_some() && input.generation != input.observed_generation {
        return Some(SyncReason::SpecChanged);
    }
    if input.requested_at.is_some() && input.requested_at != input.last_handled_requested_at {
        return Some(SyncReason::Requested);
    }
    if input.retry {
        return Some(SyncReason::Retry);
    }
    if input.next_sync_time.is_none_or(|next| now >= next) {
        return Some(SyncReason::Scheduled);
    }
    if input.credentials_changed {
        return Some(SyncReason::CredentialsChanged);
    }
    if input.drifted {
        return Some(SyncReason::Drift);
    }
    None
}

/// `interval` scaled by a random factor in [0.9, 1.1].
pub fn jittered(interval: Duration, rng: &mut impl Rng) -> Duration {
    interval.mul_f64(rng.random_range(0.9..=1.1))
}

/// The time of the next refresh after a sync at `now`.
pub fn next_sync_time(now: Timestamp, interval: Duration, rng: &mut impl Rng) -> Timestamp {
    add(now, jittered(interval, rng))
}

/// `t + d`, saturating at the end of time.
pub fn add(t: Timestamp, d: Duration) -> Timestamp {
    SignedDuration::try_from(d)
        .ok()
        .and_then(|d| t.checked_add(d).ok())
        .unwrap_or(Timestamp::MAX)
}

/// How long until `at`, zero if it has passed.
pub fn until(now: Timestamp, at: Timestamp) -> Duration {
    Duration::try_from(at.duration_since(now)).unwrap_or(Duration::ZERO)
}

/// First retry delay after a transient failure (throttling, 5xx, timeouts).
pub const TRANSIENT_BASE: Duration = Duration::from_secs(5);
/// Longest retry delay after transient failures.
pub const TRANSIENT_CAP: Duration = Duration::from_secs(300);
/// First retry delay after a permanent failure (bad credentials or parameters).
pub const PERMANENT_BASE: Duration = Duration::from_secs(120);
/// Longest retry delay after permanent failures.
pub const PERMANENT_CAP: Duration = Duration::from_secs(1800);

/// Exponential backoff with jitter after `failures` consecutive failures (1 for the first):
/// the delay doubles from the base up to the cap, and a random half of it is taken off.
pub fn backoff(failures: u32, permanent: bool, rng: &mut impl Rng) -> Duration {
    let (base, cap) = if permanent {
        (PERMANENT_BASE, PERMANENT_CAP)
    } else {
        (TRANSIENT_BASE, TRANSIENT_CAP)
    };
    let exp = failures.saturating_sub(1).min(16);
    let full = base.saturating_mul(1 << exp).min(cap);
    full.mul_f64(rng.random_range(0.5..=1.0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    fn t(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn settled() -> DueInput<'static> {
        DueInput {
            generation: Some(2),
            observed_generation: Some(2),
            requested_at: Some("a"),
            last_handled_requested_at: Some("a"),
            next_sync_time: Some(t("2026-01-01T00:10:00Z")),
            remembered: true,
            credentials_changed: false,
            drifted: false,
            retry: false,
        }
    }

    #[test]
    fn a_settled_query_is_not_due_until_its_next_sync_time() {
        assert_eq!(due(&settled(), t("2026-01-01T00:09:59Z")), None);
        assert_eq!(
            due(&settled(), t("2026-01-01T00:10:00Z")),
            Some(SyncReason::Scheduled)
        );
    }

    #[test]
    fn spec_changes_requests_credentials_and_drift_make_a_query_due() {
        let now = t("2026-01-01T00:00:00Z");
        let mut i = settled();
        i.generation = Some(3);
        assert_eq!(due(&i, now), Some(SyncReason::SpecChanged));
        let mut i = settled();
        i.requested_at = Some("b");
        assert_eq!(due(&i, now), Some(SyncReason::Requested));
        let mut i = settled();
        i.credentials_changed = true;
        assert_eq!(due(&i, now), Some(SyncReason::CredentialsChanged));
        let mut i = settled();
        i.drifted = true;
        assert_eq!(due(&i, now), Some(SyncReason::Drift));
        let mut i = settled();
        i.retry = true;
        assert_eq!(due(&i, now), Some(SyncReason::Retry));
        let mut i = settled();
        i.remembered = false;
        assert_eq!(due(&i, now), Some(SyncReason::FirstSeen));
    }

    #[test]
    fn only_scheduled_refreshes_and_retries_share_a_listing_that_started_earlier() {
        let now = t("2026-01-01T00:10:00Z");
        let created = t("2026-01-01T00:09:58Z");
        for reason in [
            SyncReason::SpecChanged,
            SyncReason::Requested,
            SyncReason::CredentialsChanged,
            SyncReason::Drift,
        ] {
            assert_eq!(
                listing_not_before(reason, now, Some(created)),
                Some(now),
                "{reason:?}"
            );
        }
        // A creation stamped 00:09:58 happened before 00:09:59.
        assert_eq!(
            listing_not_before(SyncReason::FirstSeen, now, Some(created)),
            Some(t("2026-01-01T00:09:59Z"))
        );
        // Reconciled within the creation's second: only a listing started now is surely later.
        let just_after = t("2026-01-01T00:09:58.400Z");
        assert_eq!(
            listing_not_before(SyncReason::FirstSeen, just_after, Some(created)),
            Some(just_after)
        );
        assert_eq!(listing_not_before(SyncReason::FirstSeen, now, None), None);
        assert_eq!(
            listing_not_before(SyncReason::Scheduled, now, Some(created)),
            None
        );
        assert_eq!(
            listing_not_before(SyncReason::Retry, now, Some(created)),
            None
        );
    }

    #[test]
    fn refreshes_are_jittered_by_at_most_ten_percent() {
        let mut rng = StdRng::seed_from_u64(1);
        let now = t("2026-01-01T00:00:00Z");
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let next = next_sync_time(now, Duration::from_secs(600), &mut rng);
            let secs = until(now, next).as_secs();
            assert!((540..=660).contains(&secs), "{secs}");
            seen.insert(secs);
        }
        assert!(seen.len() > 10, "jitter spreads refreshes: {seen:?}");
    }

    #[test]
    fn backoff_grows_exponentially_and_permanent_failures_retry_slowly() {
        let mut rng = StdRng::seed_from_u64(2);
        let first = backoff(1, false, &mut rng);
        assert!(first >= Duration::from_millis(2500) && first <= TRANSIENT_BASE);
        let fourth = backoff(4, false, &mut rng);
        assert!(fourth >= Duration::from_secs(20) && fourth <= Duration::from_secs(40));
        assert!(backoff(30, false, &mut rng) <= TRANSIENT_CAP);
        assert!(backoff(1, true, &mut rng) >= Duration::from_secs(60));
        assert!(backoff(30, true, &mut rng) <= PERMANENT_CAP);
    }
}
