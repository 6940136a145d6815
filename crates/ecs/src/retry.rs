//! The retry delay: exponential backoff with full jitter, never shorter than the service's
//! `x-acs-retry-after`.
//!
//! The policy is a pure function of the retry number, a jitter draw and the server's hint, so
//! it is tested without clocks or randomness.

use std::time::Duration;

/// The longest `x-acs-retry-after` the client honours. A larger hint is clamped, so a garbled
/// or hostile header cannot park a listing for hours; the controller retries later anyway.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// The name of the response header in which the service asks for a minimum delay (milliseconds).
pub const RETRY_AFTER_HEADER: &str = "x-acs-retry-after";

/// Exponential backoff with full jitter: before retry `n` (0-based) wait a uniformly random
/// time in `[0, min(max, base * 2^n))`, but at least the server's retry-after hint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The ceiling of the first retry's delay.
    pub base: Duration,
    /// The largest ceiling, however many retries came before.
    pub max: Duration,
}

impl Backoff {
    /// The ceiling of the delay before retry `retry` (0-based): `min(max, base * 2^retry)`.
    pub fn ceiling(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry).unwrap_or(u32::MAX);
        self.base.saturating_mul(factor).min(self.max)
    }

    /// The delay before retry `retry` (0-based). `jitter` is a uniform draw from `[0, 1)`
    /// (values outside are clamped); `retry_after` is the service's hint, honoured as a
    /// minimum up to [`MAX_RETRY_AFTER`].
    pub fn delay(&self, retry: u32, jitter: f64, retry_after: Option<Duration>) -> Duration {
        let jitter = if jitter.is_finite() {
            jitter.clamp(0.0, 1.0)
        } else {
            0.0
        };
        let jittered = self.ceiling(retry).mul_f64(jitter);
        let floor = retry_after.unwrap_or_default().min(MAX_RETRY_AFTER);
        jittered.max(floor)
    }
}

/// Parses an `x-acs-retry-after` value: a non-negative integer number of milliseconds.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    value.trim().parse::<u64>().ok().map(Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;

    const POLICY: Backoff = Backoff {
        base: Duration::from_millis(100),
        max: Duration::from_secs(5),
    };

    #[test]
    fn ceiling_doubles_per_retry_up_to_the_maximum() {
        let ceilings: Vec<u128> = (0..8).map(|n| POLICY.ceiling(n).as_millis()).collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1600, 3200, 5000, 5000]);
        assert_eq!(POLICY.ceiling(40), Duration::from_secs(5));
        assert_eq!(POLICY.ceiling(u32::MAX), Duration::from_secs(5));
    }

    #[test]
    fn full_jitter_spans_zero_to_the_ceiling() {
        assert_eq!(POLICY.delay(3, 0.0, None), Duration::ZERO);
        assert_eq!(POLICY.delay(3, 0.5, None), Duration::from_millis(400));
        assert!(POLICY.delay(3, 0.999_999, None) < Duration::from_millis(800));
        assert_eq!(POLICY.delay(3, 7.0, None), Duration::from_millis(800));
        assert_eq!(POLICY.delay(3, f64::NAN, None), Duration::ZERO);
    }

    #[test]
    fn retry_after_is_a_minimum_delay() {
        let hint = Some(Duration::from_millis(1500));
        assert_eq!(POLICY.delay(0, 0.0, hint), Duration::from_millis(1500));
        assert_eq!(POLICY.delay(0, 0.99, hint), Duration::from_millis(1500));
        // A longer jittered delay wins over a short hint.
        assert_eq!(
            POLICY.delay(6, 0.5, Some(Duration::from_millis(10))),
            Duration::from_millis(2500)
        );
    }

    #[test]
    fn huge_retry_after_is_clamped() {
        let hint = Some(Duration::from_secs(86_400));
        assert_eq!(POLICY.delay(0, 0.0, hint), MAX_RETRY_AFTER);
    }

    #[test]
    fn retry_after_header_is_milliseconds() {
        assert_eq!(parse_retry_after("250"), Some(Duration::from_millis(250)));
        assert_eq!(parse_retry_after(" 0 "), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(parse_retry_after("soon"), None);
    }
}
