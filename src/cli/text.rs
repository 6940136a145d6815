//! Appending text to a buffer, for the printers of `export`.

/// Appends `bytes` to `out`. Short texts, most of what is appended here, are copied in 8-byte
/// words rather than by a call to the C library's `memcpy`: musl's (the image's build) starts
/// every copy with `rep movsq` and copies the odd bytes one at a time, which made it a sixth of
/// an export's CPU.
#[inline]
pub fn append(out: &mut Vec<u8>, bytes: &[u8]) {
    if bytes.len() > 64 {
        out.extend_from_slice(bytes);
        return;
    }
    out.reserve(bytes.len());
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        if let Ok(word) = <[u8; 8]>::try_from(word) {
            out.extend_from_slice(&word);
        }
    }
    for &byte in words.remainder() {
        out.push(byte);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_every_byte_in_order_at_every_length() {
        let source: Vec<u8> = (0..=200u8).collect();
        for len in 0..source.len() {
            let mut out = b"head".to_vec();
            append(&mut out, &source[..len]);
            assert_eq!(&out[..4], b"head");
            assert_eq!(&out[4..], &source[..len], "{len} bytes");
        }
    }
}
