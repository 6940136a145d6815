//! Fault injection: every Nth call throttled, failed or garbled, plus latency.

use serde::{Deserialize, Serialize};

/// The faults a simulator injects; `0` (or `None`) turns a fault off. Changeable at runtime
/// with `SimHandle::set_faults` or `PUT /_sim/faults`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Faults {
    /// Every Nth call answers 400 `Throttling.User`.
    pub throttle_every: u64,
    /// Every Nth call answers 500 `InternalError`.
    pub fail_every: u64,
    /// Every Nth call answers 200 with a truncated body.
    pub malformed_every: u64,
    /// Delay before every answer, in milliseconds.
    pub latency_ms: u64,
    /// Adds `x-acs-retry-after: <ms>` to throttling answers.
    pub retry_after_ms: Option<u64>,
    /// Every Nth STS `AssumeRoleWithOIDC` call (counted on its own) answers 503
    /// `ServiceUnavailable`; `1` makes STS fail every time.
    pub sts_fail_every: u64,
}

/// What to do with one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answer normally.
    None,
    /// 400 `Throttling.User`.
    Throttle,
    /// 500 `InternalError`.
    Fail,
    /// 200 with a garbled body.
    Malformed,
}

impl Faults {
    /// The fault for the `call`-th call (1-based). Throttling wins over failing, failing over
    /// garbling, when several counters hit the same call.
    pub fn decide(&self, call: u64) -> Fault {
        let hits = |every: u64| every > 0 && call % every == 0;
        if hits(self.throttle_every) {
            Fault::Throttle
        } else if hits(self.fail_every) {
            Fault::Fail
        } else if hits(self.malformed_every) {
            Fault::Malformed
        } else {
            Fault::None
        }
    }
}

/// A body cut in half and never valid JSON (or XML).
pub fn garble(body: &[u8]) -> Vec<u8> {
    let mut out: Vec<u8> = body.iter().take(body.len() / 2).copied().collect();
    out.extend_from_slice(b"\x00<!-- truncated");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_nth_call_gets_its_fault() {
        let f = Faults {
            throttle_every: 3,
            fail_every: 5,
            malformed_every: 2,
            ..Faults::default()
        };
        let got: Vec<Fault> = (1..=6).map(|c| f.decide(c)).collect();
        assert_eq!(
            got,
            vec![
                Fault::None,
                Fault::Malformed,
                Fault::Throttle,
                Fault::Malformed,
                Fault::Fail,
                Fault::Throttle
            ]
        );
        assert_eq!(Faults::default().decide(7), Fault::None);
    }

    #[test]
    fn garbled_bodies_do_not_parse() {
        let body = br#"{"RequestId":"X","TotalCount":1}"#;
        assert!(serde_json::from_slice::<serde_json::Value>(&garble(body)).is_err());
        assert!(serde_json::from_slice::<serde_json::Value>(&garble(b"")).is_err());
    }
}
