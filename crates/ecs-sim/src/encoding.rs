//! The service's percent-encoding for signatures, written here rather than shared with any
//! client: the simulator must catch a client that encodes wrongly, so it has its own code,
//! checked against the published vectors.
//!
//! Every byte of the UTF-8 text but the RFC 3986 unreserved `A-Z a-z 0-9 - _ . ~` becomes
//! `%XX` with upper-case hex digits: a space is `%20`, `*` is `%2A`, `/` is `%2F`.

const HEX: &[u8; 16] = b"0123456789ABCDEF";

/// Percent-encodes `value` as the service does when it computes a signature.
pub fn percent_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len() * 3);
    for &b in value.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unreserved_bytes_stay_and_escapes_are_upper_case() {
        assert_eq!(percent_encode("aZ09-_.~"), "aZ09-_.~");
        assert_eq!(percent_encode("a b*c/d+e=f&"), "a%20b%2Ac%2Fd%2Be%3Df%26");
        assert_eq!(percent_encode("中"), "%E4%B8%AD");
        assert_eq!(percent_encode("😀"), "%F0%9F%98%80");
        assert_eq!(percent_encode("%"), "%25");
    }
}
