//! Opaque `NextToken`s: base64 of the offset and an HMAC binding it to the filter set, so a
//! token is refused (`Invalid.NextToken`) when replayed with other filters or forged.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use sha2::Sha256;

const MAC_LEN: usize = 12;

/// Signs and checks page tokens with a per-simulator random key.
#[derive(Debug, Clone)]
pub struct TokenKey([u8; 32]);

impl TokenKey {
    /// A fresh random key.
    pub fn random() -> Self {
        Self(rand::random())
    }

    /// The token for the page starting at `offset` of the listing `fingerprint`. Its 20 bytes
    /// encode to 28 base64 characters ending in `=`, often with `+` or `/`.
    pub fn encode(&self, offset: u64, fingerprint: &str) -> String {
        let mut raw = offset.to_be_bytes().to_vec();
        raw.extend_from_slice(&self.mac(offset, fingerprint));
        base64::engine::general_purpose::STANDARD.encode(raw)
    }

    /// The offset of a token issued for `fingerprint`, or `None` for anything else.
    pub fn decode(&self, token: &str, fingerprint: &str) -> Option<u64> {
        let raw = base64::engine::general_purpose::STANDARD
            .decode(token.trim())
            .ok()?;
        if raw.len() != 8 + MAC_LEN {
            return None;
        }
        let (offset_bytes, mac) = raw.split_at(8);
        let offset = u64::from_be_bytes(offset_bytes.try_into().ok()?);
        let expected = self.mac(offset, fingerprint);
        super::v1::constant_time_eq(&expected, mac).then_some(offset)
    }

    fn mac(&self, offset: u64, fingerprint: &str) -> Vec<u8> {
        match Hmac::<Sha256>::new_from_slice(&self.0) {
            Ok(mut mac) => {
                mac.update(&offset.to_be_bytes());
                mac.update(fingerprint.as_bytes());
                let full = mac.finalize().into_bytes();
                full.iter().take(MAC_LEN).copied().collect()
            }
            Err(_) => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_round_trip_only_for_their_filter() {
        let key = TokenKey::random();
        let t = key.encode(500, "f1");
        assert_eq!(key.decode(&t, "f1"), Some(500));
        assert_eq!(key.decode(&t, "f2"), None);
        assert_eq!(TokenKey::random().decode(&t, "f1"), None);
        for junk in ["", "AAAA", "not base64!", "AAAAAdDWBF2****"] {
            assert_eq!(key.decode(junk, "f1"), None, "{junk}");
        }
    }

    #[test]
    fn tokens_exercise_url_encoding() {
        let key = TokenKey::random();
        let tokens: Vec<String> = (0..200).map(|o| key.encode(o, "f")).collect();
        assert!(tokens.iter().all(|t| t.ends_with('=')));
        assert!(tokens.iter().any(|t| t.contains('+') || t.contains('/')));
    }
}
