//! What the simulator reads from an HTTP request: the decoded query and form parameters, the
//! headers and the raw body. Nothing here can fail: bad escapes and bad UTF-8 are decoded
//! lossily, so that the signature check (not a parser) is what rejects garbage.

use std::collections::BTreeMap;

use http::{HeaderMap, Method};

/// A request as the RPC endpoint sees it.
#[derive(Debug, Clone)]
pub struct RpcRequest {
    /// `GET`, `POST`, ...
    pub method: Method,
    /// The raw (still percent-encoded) path, e.g. `/`.
    pub path: String,
    /// Parameters of the query string, decoded, in their order.
    pub query: Vec<(String, String)>,
    /// Parameters of an `application/x-www-form-urlencoded` body, decoded.
    pub form: Vec<(String, String)>,
    /// The request headers.
    pub headers: HeaderMap,
    /// The raw body.
    pub body: bytes::Bytes,
}

impl RpcRequest {
    /// Builds the view of a request; the form body is read when the content type is a form or
    /// missing (the legacy SDKs always send it, curl users sometimes do not).
    pub fn new(
        method: Method,
        path: &str,
        raw_query: Option<&str>,
        headers: HeaderMap,
        body: bytes::Bytes,
    ) -> Self {
        let query = raw_query
            .map(|q| parse_pairs(q.as_bytes()))
            .unwrap_or_default();
        let content_type = header(&headers, "content-type").unwrap_or_default();
        let is_form = content_type.is_empty()
            || content_type
                .to_ascii_lowercase()
                .starts_with("application/x-www-form-urlencoded");
        let form = if is_form && !body.is_empty() {
            parse_pairs(&body)
        } else {
            Vec::new()
        };
        Self {
            method,
            path: path.to_string(),
            query,
            form,
            headers,
            body,
        }
    }

    /// Query and form parameters merged (a body value wins over a query value of the same name).
    pub fn params(&self) -> BTreeMap<String, String> {
        self.query
            .iter()
            .chain(self.form.iter())
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// A header's first value, lossily decoded.
    pub fn header(&self, name: &str) -> Option<String> {
        header(&self.headers, name)
    }
}

/// A header's first value, lossily decoded.
pub fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

/// Splits `a=1&b=2` into decoded pairs. `+` means space (as in HTML forms and in the URLs the
/// Tea SDKs build), `%XX` is a byte, malformed escapes stay literal, empty segments are skipped.
pub fn parse_pairs(raw: &[u8]) -> Vec<(String, String)> {
    raw.split(|b| *b == b'&')
        .filter(|seg| !seg.is_empty())
        .map(|seg| {
            let (k, v) = match seg.iter().position(|b| *b == b'=') {
                Some(i) => (&seg[..i], &seg[i + 1..]),
                None => (seg, &[][..]),
            };
            (decode(k), decode(v))
        })
        .collect()
}

/// Decodes one form component: `+` to space, then percent escapes, then UTF-8 (lossily).
pub fn decode(raw: &[u8]) -> String {
    let plus_as_space: Vec<u8> = raw
        .iter()
        .map(|b| if *b == b'+' { b' ' } else { *b })
        .collect();
    let bytes: Vec<u8> = percent_encoding::percent_decode(&plus_as_space).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plus_decodes_to_space_and_escaped_plus_to_plus() {
        let pairs = parse_pairs(b"Tag.1.Value=a+b%2Bc%20d&Empty=&Flag");
        assert_eq!(
            pairs,
            vec![
                ("Tag.1.Value".to_string(), "a b+c d".to_string()),
                ("Empty".to_string(), String::new()),
                ("Flag".to_string(), String::new()),
            ]
        );
    }

    #[test]
    fn bad_escapes_and_bad_utf8_never_fail() {
        let pairs = parse_pairs(b"a=%ZZ%&b=%FF%FE&&=x");
        assert_eq!(pairs.len(), 3);
        assert_eq!(pairs[0].1, "%ZZ%");
        assert!(pairs[1].1.contains('\u{FFFD}'));
    }

    #[test]
    fn body_parameters_override_query_parameters() {
        let mut headers = HeaderMap::new();
        headers.insert(
            "content-type",
            http::HeaderValue::from_static("application/x-www-form-urlencoded; charset=utf-8"),
        );
        let req = RpcRequest::new(
            Method::POST,
            "/",
            Some("A=1&B=query"),
            headers,
            bytes::Bytes::from_static(b"B=body&C=3"),
        );
        let p = req.params();
        assert_eq!(p.get("A").map(String::as_str), Some("1"));
        assert_eq!(p.get("B").map(String::as_str), Some("body"));
        assert_eq!(p.get("C").map(String::as_str), Some("3"));
    }
}
