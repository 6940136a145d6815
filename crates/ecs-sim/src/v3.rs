//! Signature V3 (`ACS3-HMAC-SHA256`), what the current Tea SDKs send by default:
//!
//! ```text
//! Authorization: ACS3-HMAC-SHA256 Credential=AK,SignedHeaders=h1;h2,Signature=hex
//! CanonicalRequest = METHOD \n URI \n QUERY \n HEADERS \n SIGNEDHEADERS \n hex(sha256(body))
//! StringToSign     = ACS3-HMAC-SHA256 \n hex(sha256(CanonicalRequest))
//! Signature        = hex(hmac_sha256(secret, StringToSign))
//! ```
//!
//! The SDKs disagree on one detail: a query parameter with an empty value is `key=` in the
//! documentation and the Go/Java SDKs but `key` in the Python SDK; both are accepted.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use super::encoding::percent_encode;

use super::claims::Claims;
use super::errors::ApiFailure;
use super::request::{RpcRequest, decode};
use super::v1::constant_time_eq;

/// The only V3 algorithm the simulator verifies.
pub const ALGORITHM: &str = "ACS3-HMAC-SHA256";

/// The parsed `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    /// `Credential=`: the AccessKey ID.
    pub access_key_id: String,
    /// `SignedHeaders=`: lowercase header names, `;`-separated in the header.
    pub signed_headers: Vec<String>,
    /// `Signature=`: lowercase hex.
    pub signature: String,
}

/// How a query parameter with an empty value is canonicalized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmptyValue {
    /// `key=` (documentation, Go and Java SDKs).
    WithEquals,
    /// `key` (Python SDK).
    Bare,
}

/// Whether the request is V3-signed.
pub fn is_v3(req: &RpcRequest) -> bool {
    req.header("authorization")
        .is_some_and(|a| a.trim_start().starts_with("ACS3-"))
}

/// Reads `ACS3-HMAC-SHA256 Credential=..,SignedHeaders=..,Signature=..`.
pub fn parse_authorization(value: &str) -> Result<Authorization, ApiFailure> {
    let (algorithm, rest) = value
        .trim()
        .split_once(' ')
        .ok_or_else(|| ApiFailure::incomplete_signature("Authorization has no credential."))?;
    if algorithm != ALGORITHM {
        return Err(ApiFailure::invalid_signature_method());
    }
    let (mut ak, mut headers, mut sig) = (None, None, None);
    for part in rest.split(',') {
        match part.trim().split_once('=') {
            Some(("Credential", v)) => ak = Some(v.to_string()),
            Some(("SignedHeaders", v)) => headers = Some(v.to_string()),
            Some(("Signature", v)) => sig = Some(v.to_string()),
            _ => {}
        }
    }
    match (ak, headers, sig) {
        (Some(ak), Some(h), Some(s)) if !ak.is_empty() && !s.is_empty() => Ok(Authorization {
            access_key_id: ak,
            signed_headers: h
                .split(';')
                .filter(|n| !n.is_empty())
                .map(str::to_ascii_lowercase)
                .collect(),
            signature: s.to_ascii_lowercase(),
        }),
        _ => Err(ApiFailure::incomplete_signature(
            "Authorization needs Credential, SignedHeaders and Signature.",
        )),
    }
}

/// The common values of a V3 request, from its `x-acs-*` headers.
pub fn claims(req: &RpcRequest, auth: &Authorization) -> Result<Claims, ApiFailure> {
    let required = |name: &str| {
        req.header(name)
            .filter(|v| !v.is_empty())
            .ok_or_else(|| ApiFailure::missing_parameter(name))
    };
    for name in ["x-acs-action", "x-acs-version"] {
        required(name)?;
    }
    let nonce = required("x-acs-signature-nonce")?;
    let timestamp = required("x-acs-date")?;
    // Every x-acs-* header and host must be covered by the signature.
    for name in req.headers.keys().map(|n| n.as_str()) {
        let must_sign = name.starts_with("x-acs-") || name == "host";
        if must_sign && !auth.signed_headers.iter().any(|s| s == name) {
            return Err(ApiFailure::incomplete_signature(&format!(
                "Header {name} must be signed."
            )));
        }
    }
    Ok(Claims {
        access_key_id: auth.access_key_id.clone(),
        nonce,
        timestamp,
        security_token: req.header("x-acs-security-token"),
    })
}

/// The canonical request for `auth.signed_headers`.
pub fn canonical_request(req: &RpcRequest, auth: &Authorization, empty: EmptyValue) -> String {
    let mut headers = String::new();
    for name in &auth.signed_headers {
        let mut values: Vec<String> = req
            .headers
            .get_all(name.as_str())
            .iter()
            .map(|v| String::from_utf8_lossy(v.as_bytes()).trim().to_string())
            .collect();
        values.sort();
        headers.push_str(&format!("{name}:{}\n", values.join(",")));
    }
    format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        req.method.as_str(),
        canonical_uri(&req.path),
        canonical_query(&req.query, empty),
        headers,
        auth.signed_headers.join(";"),
        hex::encode(Sha256::digest(&req.body)),
    )
}

/// The path, decoded and re-encoded segment by segment (`/` stays).
pub fn canonical_uri(raw_path: &str) -> String {
    if raw_path.is_empty() {
        return "/".to_string();
    }
    raw_path
        .split('/')
        .map(|seg| percent_encode(&decode_path(seg)))
        .collect::<Vec<_>>()
        .join("/")
}

fn decode_path(seg: &str) -> String {
    // In a path `+` is a literal plus; `decode` would turn it into a space.
    decode(seg.replace('+', "%2B").as_bytes())
}

/// Sorted `enc(key)=enc(value)` pairs joined by `&`.
pub fn canonical_query(pairs: &[(String, String)], empty: EmptyValue) -> String {
    let mut sorted: Vec<&(String, String)> = pairs.iter().collect();
    sorted.sort();
    sorted
        .iter()
        .map(|(k, v)| match (v.is_empty(), empty) {
            (true, EmptyValue::Bare) => percent_encode(k),
            _ => format!("{}={}", percent_encode(k), percent_encode(v)),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// `ACS3-HMAC-SHA256 \n hex(sha256(canonical request))`.
pub fn string_to_sign(canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    )
}

/// `hex(hmac_sha256(secret, string_to_sign))`.
pub fn sign(secret: &str, string_to_sign: &str) -> String {
    match Hmac::<Sha256>::new_from_slice(secret.as_bytes()) {
        Ok(mut mac) => {
            mac.update(string_to_sign.as_bytes());
            hex::encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    }
}

/// Checks the signature, accepting either empty-value style.
pub fn verify(req: &RpcRequest, auth: &Authorization, secret: &str) -> Result<(), ApiFailure> {
    let doc_style = string_to_sign(&canonical_request(req, auth, EmptyValue::WithEquals));
    if constant_time_eq(
        sign(secret, &doc_style).as_bytes(),
        auth.signature.as_bytes(),
    ) {
        return Ok(());
    }
    if req.query.iter().any(|(_, v)| v.is_empty()) {
        let bare = string_to_sign(&canonical_request(req, auth, EmptyValue::Bare));
        if constant_time_eq(sign(secret, &bare).as_bytes(), auth.signature.as_bytes()) {
            return Ok(());
        }
    }
    Err(ApiFailure::signature_mismatch(&doc_style))
}
