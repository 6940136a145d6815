//! RPC signature version 1 (HMAC-SHA1) as the service verifies it: the parameters of the query
//! string and of a form body, merged, minus `Signature`, sorted by name, each name and value
//! percent-encoded, joined with `&` and `=`; the string to sign is `METHOD&%2F&` and that text
//! encoded once more; the signature is Base64(HMAC-SHA1(secret + "&", string to sign)). The
//! simulator computes it with its own code (see [`crate::encoding`]), not the client's.

use std::collections::BTreeMap;

use base64::Engine as _;
use hmac::{Hmac, Mac};

use super::claims::Claims;
use super::encoding::percent_encode;
use super::errors::ApiFailure;

/// The text the service signs for `method` and `params` (without `Signature`).
pub fn string_to_sign(method: &str, params: &BTreeMap<String, String>) -> String {
    let query = params
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect::<Vec<_>>()
        .join("&");
    format!("{method}&%2F&{}", percent_encode(&query))
}

/// Base64(HMAC-SHA1(key = `secret` + "&", `string_to_sign`)).
pub fn signature(string_to_sign: &str, secret: &str) -> String {
    let key = format!("{secret}&");
    let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(key.as_bytes()) else {
        // HMAC takes keys of any length; this branch cannot be reached.
        return String::new();
    };
    mac.update(string_to_sign.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// The common parameters of a v1-signed request.
pub fn claims(params: &BTreeMap<String, String>) -> Result<Claims, ApiFailure> {
    let required = |name: &str| {
        params
            .get(name)
            .filter(|v| !v.is_empty())
            .cloned()
            .ok_or_else(|| ApiFailure::missing_parameter(name))
    };
    let access_key_id = required("AccessKeyId")?;
    required("Signature")?;
    if required("SignatureMethod")? != "HMAC-SHA1" {
        return Err(ApiFailure::invalid_signature_method());
    }
    if required("SignatureVersion")? != "1.0" {
        return Err(ApiFailure::invalid_parameter("SignatureVersion"));
    }
    let nonce = required("SignatureNonce")?;
    // `TimeStamp` is what some old documentation vectors spell; every SDK sends `Timestamp`.
    let timestamp = params
        .get("Timestamp")
        .or_else(|| params.get("TimeStamp"))
        .filter(|v| !v.is_empty())
        .cloned()
        .ok_or_else(|| ApiFailure::missing_parameter("Timestamp"))?;
    Ok(Claims {
        access_key_id,
        nonce,
        timestamp,
        security_token: params.get("SecurityToken").cloned(),
    })
}

/// Checks `Signature` against the server's own calculation.
pub fn verify(
    method: &str,
    params: &BTreeMap<String, String>,
    secret: &str,
) -> Result<(), ApiFailure> {
    let mut signed = params.clone();
    let given = signed.remove("Signature").unwrap_or_default();
    let sts = string_to_sign(method, &signed);
    if constant_time_eq(signature(&sts, secret).as_bytes(), given.as_bytes()) {
        Ok(())
    } else {
        Err(ApiFailure::signature_mismatch(&sts))
    }
}

/// Compares two byte strings without an early exit.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_python_sdk_vector_verifies() {
        // alibabacloud_openapi_util test_get_rpc_signature: GET, secret "secret".
        let p = params(&[
            ("query", "test"),
            ("body", "test"),
            ("Signature", "XlUyV4sXjOuX5FnjUz9IF9tm5rU="),
        ]);
        assert_eq!(verify("GET", &p, "secret"), Ok(()));
    }

    #[test]
    fn the_describe_regions_vector_verifies_with_time_stamp_spelling() {
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
            ("Signature", "axE3FUHgDyfm9/+Iep0HpZXrRwE="),
        ]);
        assert_eq!(verify("GET", &p, "testsecret"), Ok(()));
        let c = claims(&p).expect("complete");
        assert_eq!(c.timestamp, "2012-12-26T10:33:56Z");
        let err = verify("POST", &p, "testsecret").expect_err("method is signed");
        assert_eq!(err.code, "SignatureDoesNotMatch");
        assert!(err.message.ends_with("server string to sign is:POST&%2F&AccessKeyId%3Dtestid%26Action%3DDescribeRegions%26Format%3DXML%26RegionId%3Dregion1%26SignatureMethod%3DHMAC-SHA1%26SignatureNonce%3DNwDAxvLU6tFE0DVb%26SignatureVersion%3D1.0%26TimeStamp%3D2012-12-26T10%253A33%253A56Z%26Version%3D2013-01-10"));
    }

    #[test]
    fn missing_common_parameters_are_named() {
        let err = claims(&params(&[("Signature", "x")])).expect_err("incomplete");
        assert_eq!(err.code, "MissingParameter");
        assert!(err.message.contains("\"AccessKeyId\""));
    }
}
