//! Fault injection: every Nth call (or a seeded share of calls) throttled, failed, garbled,
//! slowed down or refused its `NextToken`, plus latency.
//!
//! Every decision is a pure function of the call number and the configuration, so a run with
//! the same faults and the same call order sees the same faults.

use serde::{Deserialize, Serialize};

/// Size of the body a [`MalformedKind::Huge`] answer streams: 50 MiB.
pub const HUGE_BODY_BYTES: u64 = 50 * 1024 * 1024;

/// The faults a simulator injects; `0` (or `None`) turns a fault off. Changeable at runtime
/// with `SimHandle::set_faults` or `PUT /_sim/faults`.
///
/// When several faults hit one call, the first in this order wins: `throttle_every`,
/// `fail_every`, `throttle_percent`, `fail_percent`, `malformed_every`, `invalid_token_every`.
/// Latency (`latency_ms`, `slow_every`) adds to whatever is answered.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Faults {
    /// Every Nth call answers 400 `Throttling.User`.
    pub throttle_every: u64,
    /// Every Nth call answers 500 `InternalError`.
    pub fail_every: u64,
    /// Every Nth call that would have succeeded answers a malformed body of `malformed_kind`.
    pub malformed_every: u64,
    /// What `malformed_every` answers (default: a truncated body).
    pub malformed_kind: MalformedKind,
    /// Delay before every answer, in milliseconds.
    pub latency_ms: u64,
    /// Adds `x-acs-retry-after: <ms>` to throttling answers.
    pub retry_after_ms: Option<u64>,
    /// Of the throttling answers, the share in percent (drawn with `seed`) that carries
    /// `x-acs-retry-after`; `None`: all of them.
    pub retry_after_percent: Option<u8>,
    /// Share of calls in percent (0..=100, drawn with `seed`) answering 400 `Throttling.User`.
    pub throttle_percent: u8,
    /// Share of calls in percent (0..=100, drawn with `seed`) answering 500 `InternalError`,
    /// disjoint from `throttle_percent` (the two together cover at most every call).
    pub fail_percent: u8,
    /// Seed of the percentage draws: the same seed gives the same faults to the same call
    /// numbers.
    pub seed: u64,
    /// Every Nth call carrying a non-empty `NextToken` (counted on their own) answers 403
    /// `Invalid.NextToken`, as the service does for an expired token; `1`: always.
    pub invalid_token_every: u64,
    /// Every Nth call waits `slow_ms` more before answering (e.g. past a client's read timeout).
    pub slow_every: u64,
    /// The extra delay of `slow_every` calls, in milliseconds.
    pub slow_ms: u64,
    /// Every Nth STS `AssumeRoleWithOIDC` call (counted on its own) answers 503
    /// `ServiceUnavailable`; `1` makes STS fail every time.
    pub sts_fail_every: u64,
}

/// The malformed answers `malformed_every` can send in place of a successful page.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum MalformedKind {
    /// 200 with the page cut in half and a stray NUL: never valid JSON (or XML).
    #[default]
    Truncated,
    /// 502 with an HTML error page, as a load balancer in front of the service sends.
    Html,
    /// 200 with an empty body.
    Empty,
    /// 200 with the right page but odd types everywhere: numbers and booleans as strings,
    /// one-element lists as bare values, IDs as numbers where they are numeric, extra fields.
    WrongTypes,
    /// 200 whose body is an `InternalError` error object.
    Error200,
    /// 200 with a 50 MiB body (valid JSON padded with spaces), streamed without a
    /// `Content-Length`; the bytes actually handed to the connection are counted.
    Huge,
}

/// What to do with one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answer normally.
    None,
    /// 400 `Throttling.User`, with `x-acs-retry-after` when `retry_after` (and configured).
    Throttle {
        /// Whether this answer carries the retry-after header.
        retry_after: bool,
    },
    /// 500 `InternalError`.
    Fail,
    /// A malformed answer in place of a successful one.
    Malformed(MalformedKind),
    /// 403 `Invalid.NextToken`.
    InvalidToken,
}

/// A uniform draw in `0..100` for `call` from `seed`, independent per `stream`.
fn percent_draw(seed: u64, call: u64, stream: u64) -> u64 {
    // splitmix64 of a mix of the three: stable across versions of everything.
    let mut z = seed
        ^ call.wrapping_mul(0x9E37_79B9_7F4A_7C15)
        ^ stream.wrapping_mul(0xD1B5_4A32_D192_ED03);
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) % 100
}

impl Faults {
    /// The fault for the `call`-th call (1-based). `token_call` is the number of this call
    /// among the calls carrying a `NextToken` (1-based), when it carries one.
    pub fn decide(&self, call: u64, token_call: Option<u64>) -> Fault {
        let hits = |every: u64, n: u64| every > 0 && n % every == 0;
        let throttle = Fault::Throttle {
            retry_after: self
                .retry_after_percent
                .is_none_or(|p| percent_draw(self.seed, call, 2) < u64::from(p)),
        };
        let draw = percent_draw(self.seed, call, 1);
        let throttle_share = u64::from(self.throttle_percent.min(100));
        let fail_share = u64::from(self.fail_percent.min(100));
        if hits(self.throttle_every, call) {
            throttle
        } else if hits(self.fail_every, call) {
            Fault::Fail
        } else if draw < throttle_share {
            throttle
        } else if draw < throttle_share + fail_share {
            Fault::Fail
        } else if hits(self.malformed_every, call) {
            Fault::Malformed(self.malformed_kind)
        } else if token_call.is_some_and(|n| hits(self.invalid_token_every, n)) {
            Fault::InvalidToken
        } else {
            Fault::None
        }
    }

    /// How long the `call`-th call waits before it is answered, in milliseconds.
    pub fn delay_ms(&self, call: u64) -> u64 {
        let slow = if self.slow_every > 0 && call % self.slow_every == 0 {
            self.slow_ms
        } else {
            0
        };
        self.latency_ms.saturating_add(slow)
    }
}

/// A body cut in half and never valid JSON (or XML).
pub fn garble(body: &[u8]) -> Vec<u8> {
    let mut out: Vec<u8> = body.iter().take(body.len() / 2).copied().collect();
    out.extend_from_slice(b"\x00<!-- truncated");
    out
}

/// The HTML page a gateway answers instead of the service.
pub const HTML_ERROR_PAGE: &str = "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n\
    <body>\r\n<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>Tengine</center>\r\n\
    </body>\r\n</html>\r\n";

/// The same page with odd but decodable types everywhere: numbers and booleans as strings,
/// numeric strings as numbers, one-element lists as bare values, unknown fields of every type.
/// `NextToken` and `RequestId` stay strings (a client must echo the token exactly).
pub fn odd_types(page: &serde_json::Value) -> serde_json::Value {
    use serde_json::{Value, json};
    fn scalar(v: &Value) -> Value {
        match v {
            Value::Number(n) => Value::String(n.to_string()),
            Value::Bool(b) => Value::String(b.to_string()),
            Value::String(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => s
                .parse::<u64>()
                .map(Value::from)
                .unwrap_or_else(|_| v.clone()),
            other => other.clone(),
        }
    }
    /// `{Inner: [x]}` becomes `{Inner: x}`; longer lists stay.
    fn unwrap_single(v: &Value) -> Value {
        match v {
            Value::Object(o) => Value::Object(
                o.iter()
                    .map(|(k, inner)| {
                        let inner = match inner {
                            Value::Array(a) if a.len() == 1 => a[0].clone(),
                            other => other.clone(),
                        };
                        (k.clone(), inner)
                    })
                    .collect(),
            ),
            other => other.clone(),
        }
    }
    let Some(obj) = page.as_object() else {
        return page.clone();
    };
    let mut out = serde_json::Map::new();
    for (k, v) in obj {
        let v = match k.as_str() {
            "RequestId" | "NextToken" => v.clone(),
            "ImagePipeline" => {
                let set = v.get("ImagePipelineSet").and_then(Value::as_array);
                let items: Vec<Value> = set
                    .into_iter()
                    .flatten()
                    .map(|item| {
                        let Some(item) = item.as_object() else {
                            return item.clone();
                        };
                        let mut odd: serde_json::Map<String, Value> = item
                            .iter()
                            .map(|(k, v)| {
                                let v = match k.as_str() {
                                    "Tags" | "ToRegionIds" | "AddAccounts" => unwrap_single(v),
                                    _ => scalar(v),
                                };
                                (k.clone(), v)
                            })
                            .collect();
                        odd.insert("UnknownNull".into(), Value::Null);
                        odd.insert("UnknownObject".into(), json!({"Nested": [1, "two"]}));
                        Value::Object(odd)
                    })
                    .collect();
                match <[Value; 1]>::try_from(items) {
                    Ok([single]) => json!({ "ImagePipelineSet": single }),
                    Err(items) => json!({ "ImagePipelineSet": items }),
                }
            }
            _ => scalar(v),
        };
        out.insert(k.clone(), v);
    }
    out.insert("UnknownList".into(), json!([null, 1.5, {"x": true}]));
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_nth_call_gets_its_fault() {
        let f = Faults {
            throttle_every: 3,
            fail_every: 5,
            malformed_every: 2,
            ..Faults::default()
        };
        let got: Vec<Fault> = (1..=6).map(|c| f.decide(c, None)).collect();
        let throttle = Fault::Throttle { retry_after: true };
        let garbled = Fault::Malformed(MalformedKind::Truncated);
        assert_eq!(
            got,
            vec![
                Fault::None,
                garbled,
                throttle,
                garbled,
                Fault::Fail,
                throttle
            ]
        );
        assert_eq!(Faults::default().decide(7, Some(1)), Fault::None);
    }

    #[test]
    fn percentages_are_seeded_disjoint_and_close_to_their_share() {
        let f = Faults {
            throttle_percent: 30,
            fail_percent: 10,
            retry_after_percent: Some(50),
            seed: 7,
            ..Faults::default()
        };
        let got: Vec<Fault> = (1..=10_000).map(|c| f.decide(c, None)).collect();
        let again: Vec<Fault> = (1..=10_000).map(|c| f.decide(c, None)).collect();
        assert_eq!(got, again);
        let count = |want: &dyn Fn(&Fault) -> bool| got.iter().filter(|f| want(f)).count();
        let throttled = count(&|f| matches!(f, Fault::Throttle { .. }));
        let hinted = count(&|f| *f == Fault::Throttle { retry_after: true });
        let failed = count(&|f| *f == Fault::Fail);
        assert!((2_700..3_300).contains(&throttled), "{throttled}");
        assert!((900..1_100).contains(&failed), "{failed}");
        assert!(
            (throttled * 4 / 10..throttled * 6 / 10).contains(&hinted),
            "{hinted}"
        );
        let other_seed = Faults { seed: 8, ..f };
        assert_ne!(
            (1..=100)
                .map(|c| other_seed.decide(c, None))
                .collect::<Vec<_>>(),
            got[..100]
        );
        let all = Faults {
            throttle_percent: 100,
            fail_percent: 100,
            ..Faults::default()
        };
        assert!((1..100).all(|c| matches!(all.decide(c, None), Fault::Throttle { .. })));
    }

    #[test]
    fn token_faults_count_only_calls_carrying_a_token() {
        let f = Faults {
            invalid_token_every: 2,
            ..Faults::default()
        };
        assert_eq!(f.decide(2, None), Fault::None);
        assert_eq!(f.decide(3, Some(1)), Fault::None);
        assert_eq!(f.decide(4, Some(2)), Fault::InvalidToken);
        let throttled = Faults {
            throttle_every: 4,
            ..f
        };
        assert!(matches!(
            throttled.decide(4, Some(2)),
            Fault::Throttle { .. }
        ));
    }

    #[test]
    fn slow_calls_wait_on_top_of_the_latency() {
        let f = Faults {
            latency_ms: 10,
            slow_every: 3,
            slow_ms: 500,
            ..Faults::default()
        };
        let delays: Vec<u64> = (1..=4).map(|c| f.delay_ms(c)).collect();
        assert_eq!(delays, vec![10, 10, 510, 10]);
    }

    #[test]
    fn garbled_bodies_do_not_parse() {
        let body = br#"{"RequestId":"X","TotalCount":1}"#;
        assert!(serde_json::from_slice::<serde_json::Value>(&garble(body)).is_err());
        assert!(serde_json::from_slice::<serde_json::Value>(&garble(b"")).is_err());
    }

    #[test]
    fn odd_types_keep_the_content_and_change_the_shapes() {
        let page = json!({
            "RequestId": "R", "TotalCount": 1, "MaxResults": 50, "NextToken": "123",
            "ImagePipeline": {"ImagePipelineSet": [{
                "ImagePipelineId": "ip-1", "SystemDiskSize": 40, "DeleteInstanceOnFailure": true,
                "Tags": {"Tag": [{"TagKey": "k", "TagValue": "v"}]},
                "ToRegionIds": {"ToRegionId": ["cn-hangzhou"]},
            }]},
        });
        let odd = odd_types(&page);
        assert_eq!(odd["TotalCount"], "1");
        assert_eq!(odd["NextToken"], "123");
        let item = &odd["ImagePipeline"]["ImagePipelineSet"];
        assert!(item.is_object(), "{odd}");
        assert_eq!(item["SystemDiskSize"], "40");
        assert_eq!(item["DeleteInstanceOnFailure"], "true");
        assert_eq!(item["Tags"]["Tag"]["TagKey"], "k");
        assert_eq!(item["ToRegionIds"]["ToRegionId"], "cn-hangzhou");
        assert!(item["UnknownNull"].is_null());
    }

    #[test]
    fn malformed_kinds_have_kebab_case_names() {
        let f: Faults =
            serde_json::from_value(json!({"malformedKind": "wrong-types", "throttlePercent": 30}))
                .expect("faults");
        assert_eq!(f.malformed_kind, MalformedKind::WrongTypes);
        assert_eq!(f.throttle_percent, 30);
        assert_eq!(
            serde_json::to_value(MalformedKind::Error200).expect("json"),
            "error200"
        );
    }
}
