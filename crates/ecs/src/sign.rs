//! Alibaba Cloud RPC signature version 1 (HMAC-SHA1), as the official SDKs compute it.
//!
//! The published vectors in the tests pin it to the SDKs. The simulator (`ecs-sim`) verifies
//! signatures with code of its own, pinned to the same vectors, so a mistake here is caught
//! there rather than shared.

use std::collections::BTreeMap;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

/// Everything but `A-Z a-z 0-9 - _ . ~` is escaped (RFC 3986 unreserved), as the SDKs do:
/// space becomes `%20`, `*` becomes `%2A`, `~` stays.
const RPC_ENCODE_SET: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes the UTF-8 bytes of `value` with the RPC signature rules.
pub fn percent_encode(value: &str) -> String {
    utf8_percent_encode(value, RPC_ENCODE_SET).to_string()
}

/// The canonicalized query string: parameters sorted by name (byte order), each name and value
/// percent-encoded, joined as `name=value` pairs with `&`. `Signature` itself must not be in
/// `params`.
pub fn canonical_query(params: &BTreeMap<String, String>) -> String {
    // Encoded straight into one text: a string per name and value was most of a request's
    // allocations.
    let unencoded: usize = params.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
    let mut out = String::with_capacity(unencoded + unencoded / 4);
    for (name, value) in params {
        if !out.is_empty() {
            out.push('&');
        }
        out.extend(utf8_percent_encode(name, RPC_ENCODE_SET));
        out.push('=');
        out.extend(utf8_percent_encode(value, RPC_ENCODE_SET));
    }
    out
}

/// `METHOD & %2F & enc(canonical query)`: the text that is signed.
pub fn string_to_sign(method: &str, params: &BTreeMap<String, String>) -> String {
    let query = canonical_query(params);
    let mut out = String::with_capacity(method.len() + 5 + query.len() + query.len() / 4);
    out.push_str(method);
    out.push('&');
    out.extend(utf8_percent_encode("/", RPC_ENCODE_SET));
    out.push('&');
    out.extend(utf8_percent_encode(&query, RPC_ENCODE_SET));
    out
}

/// Base64(HMAC-SHA1(key = secret + "&", string_to_sign)).
pub fn signature(string_to_sign: &str, access_key_secret: &str) -> String {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(format!("{access_key_secret}&").as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(string_to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// Signs `params` for `method` and returns the `Signature` value to add to them.
pub fn sign_params(method: &str, params: &BTreeMap<String, String>, secret: &str) -> String {
    signature(&string_to_sign(method, params), secret)
}

/// Parameters from `(name, value)` pairs, for tests.
#[cfg(test)]
pub(crate) fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn encoding_matches_the_sdk_vector() {
        assert_eq!(
            percent_encode("123abc!@#$%^&*()-=_+ ~|\\/"),
            "123abc%21%40%23%24%25%5E%26%2A%28%29-%3D_%2B%20~%7C%5C%2F"
        );
    }

    #[test]
    fn encoding_escapes_utf8_bytes() {
        assert_eq!(percent_encode("中"), "%E4%B8%AD");
    }

    #[test]
    fn signature_matches_the_sdk_vector_with_empty_method() {
        let p = params(&[("test", "ok")]);
        let sts = string_to_sign("", &p);
        assert_eq!(sts, "&%2F&test%3Dok");
        assert_eq!(
            signature(&sts, "accessKeySecret"),
            "jHx/oHoHNrbVfhncHEvPdHXZwHU="
        );
    }

    #[test]
    fn signature_matches_the_describe_regions_vector() {
        let p = params(&[
            ("AccessKeyId", "testid"),
            ("Action", "DescribeRegions"),
            ("Format", "XML"),
            ("RegionId", "region1"),
            ("SignatureMethod", "HMAC-SHA1"),
            ("SignatureNonce", "NwDAxvLU6tFE0DVb"),
            ("SignatureVersion", "1.0"),
            ("TimeStamp", "2012-12-26T10:33:56Z"),
            ("Version", "2013-01-10"),
        ]);
        let sts = string_to_sign("GET", &p);
        assert_eq!(
            sts,
            "GET&%2F&AccessKeyId%3Dtestid%26Action%3DDescribeRegions%26Format%3DXML%26RegionId%3Dregion1%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3DNwDAxvLU6tFE0DVb%26SignatureVersion%3D1.0%26TimeStamp%3D2012-12-26T10%253A33%253A56Z%26Version%3D2013-01-10"
        );
        assert_eq!(
            signature(&sts, "testsecret"),
            "axE3FUHgDyfm9/+Iep0HpZXrRwE="
        );
    }

    #[test]
    fn parameters_sort_by_byte_order() {
        let p = params(&[("b", "1"), ("B", "2"), ("a", "3")]);
        assert_eq!(canonical_query(&p), "B=2&a=3&b=1");
    }

    proptest! {
        #[test]
        fn encoding_round_trips_and_leaves_only_unreserved(s in "\\PC*") {
            let enc = percent_encode(&s);
            prop_assert!(enc.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.~%".contains(&b)));
            let back = percent_encoding::percent_decode_str(&enc).decode_utf8().unwrap();
            prop_assert_eq!(back, s);
        }

        #[test]
        fn signing_verifies_and_any_change_breaks_it(
            pairs in proptest::collection::btree_map("[A-Za-z.0-9]{1,12}", "\\PC{0,20}", 1..8),
            secret in "[A-Za-z0-9]{8,30}",
        ) {
            let sig = sign_params("POST", &pairs, &secret);
            prop_assert_eq!(&sig, &sign_params("POST", &pairs, &secret));
            let mut tampered = pairs.clone();
            let first = tampered.keys().next().cloned().unwrap();
            tampered.get_mut(&first).unwrap().push('x');
            prop_assert_ne!(&sig, &sign_params("POST", &tampered, &secret));
            prop_assert_ne!(&sig, &sign_params("GET", &pairs, &secret));
        }
    }
}
