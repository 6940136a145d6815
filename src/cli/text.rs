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

/// Appends `n` in decimal, as `{n}` prints it, without `core::fmt`.
pub fn int(out: &mut Vec<u8>, n: i64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    let mut rest = n.unsigned_abs();
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    if n < 0 {
        out.push(b'-');
    }
    append(out, &digits[at..]);
}

/// Whether `bytes` holds no byte that JSON escapes (`"`, `\`, control characters), checked
/// eight bytes at a time: the byte-by-byte check was a twentieth of an export's CPU.
#[inline]
pub fn json_clean(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    // Whether any byte of `word` is below `n` (at most 0x80); exact for the word as a whole.
    let any_below = |word: u64, n: u8| word.wrapping_sub(ONES * u64::from(n)) & !word & HIGH != 0;
    let any_equal = |word: u64, b: u8| any_below(word ^ (ONES * u64::from(b)), 1);
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let Ok(word) = <[u8; 8]>::try_from(word).map(u64::from_ne_bytes) else {
            return false;
        };
        if any_below(word, 0x20) || any_equal(word, b'"') || any_equal(word, b'\\') {
            return false;
        }
    }
    words
        .remainder()
        .iter()
        .all(|&b| b >= 0x20 && b != b'"' && b != b'\\')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_clean_finds_every_byte_json_escapes_at_every_place() {
        let clean = "abcdefghijklmnopqrstuvwxyz é\u{7f}~".as_bytes();
        assert!(json_clean(clean));
        assert!(json_clean(b""));
        for bad in (0u8..0x20).chain([b'"', b'\\']) {
            for at in 0..clean.len() {
                let mut text = clean.to_vec();
                text[at] = bad;
                assert!(!json_clean(&text), "byte {bad:#x} at {at}");
                assert!(!json_clean(&text[at..]), "byte {bad:#x} first");
            }
        }
        // Bytes just above the escaped ones, and non-ASCII, are never taken for them.
        let near: Vec<u8> = [0x20u8, 0x21, 0x23, 0x5b, 0x5d, 0x80, 0xa2, 0xdc, 0xff]
            .iter()
            .copied()
            .cycle()
            .take(40)
            .collect();
        assert!(json_clean(&near));
    }

    #[test]
    fn integers_print_as_display_prints_them() {
        let mut samples = vec![0, 1, -1, 9, 10, -10, 99, 100, i64::MAX, i64::MIN];
        samples.extend((0..60).map(|p| 1i64 << p).flat_map(|n| [n - 1, n, -n]));
        for n in samples {
            let mut out = b"x".to_vec();
            int(&mut out, n);
            assert_eq!(out, format!("x{n}").into_bytes(), "{n}");
        }
    }

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
