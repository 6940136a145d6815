//! Appending text to a buffer, for the printers of `export`.

/// Appends `bytes` to `out`. Short texts, most of what is appended here, are copied in 8-byte
/// words rather than by a call to the C library's `memcpy`: musl's (the image's build) starts
/// every copy with `rep movsq` and copies the odd bytes one at a time, which made it a sixth of
/// an export's CPU. The odd bytes after the last whole word go as one more word, the last eight
/// bytes, written over the end of what was copied (the same bytes again).
#[inline]
pub fn append(out: &mut Vec<u8>, bytes: &[u8]) {
    if bytes.len() > 64 {
        out.extend_from_slice(bytes);
        return;
    }
    out.reserve(bytes.len());
    if bytes.len() < 8 {
        for &byte in bytes {
            out.push(byte);
        }
    } else {
        append_words(out, bytes, |_| true);
    }
}

/// Appends `bytes`, at least eight of them, in whole words, then the last eight bytes over the
/// end of what was copied when the length is not a multiple of eight, each word passed to
/// `word_ok` before it is written. Answers whether every word passed; the words before one that
/// did not are left written. `out` has room for `bytes` already.
#[inline]
fn append_words(out: &mut Vec<u8>, bytes: &[u8], word_ok: impl Fn([u8; 8]) -> bool) -> bool {
    let mut at = 0;
    while let Some(word) = word_at(bytes, at) {
        if !word_ok(word) {
            return false;
        }
        out.extend_from_slice(&word);
        at += 8;
    }
    let last = (at < bytes.len())
        .then(|| word_at(bytes, bytes.len().checked_sub(8)?))
        .flatten();
    match last {
        Some(last) if !word_ok(last) => false,
        Some(last) => {
            out.truncate(out.len() - (at + 8 - bytes.len()));
            out.extend_from_slice(&last);
            true
        }
        None => true,
    }
}

/// The eight bytes of `bytes` from `at`, if there are as many.
#[inline]
fn word_at(bytes: &[u8], at: usize) -> Option<[u8; 8]> {
    bytes.get(at..at.checked_add(8)?)?.try_into().ok()
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

/// Appends `bytes` as they are when they hold no byte that JSON escapes (`"`, `\\`, control
/// characters), and answers `true`; otherwise leaves `out` as it was and answers `false`. The
/// check and the copy go together, eight bytes at a time, as [`append`] copies: checking first
/// and copying after read every text twice, about a tenth of an export's CPU.
#[inline]
pub fn append_json_clean(out: &mut Vec<u8>, bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);
    // Whether any byte of `word` is below `n` (at most 0x80); exact for the word as a whole.
    let any_below = |word: u64, n: u8| word.wrapping_sub(ONES * u64::from(n)) & !word & HIGH != 0;
    let any_equal = |word: u64, b: u8| any_below(word ^ (ONES * u64::from(b)), 1);
    let escapes = |word: [u8; 8]| {
        let word = u64::from_ne_bytes(word);
        any_below(word, 0x20) || any_equal(word, b'"') || any_equal(word, b'\\')
    };
    let start = out.len();
    out.reserve(bytes.len());
    let clean = if bytes.len() < 8 {
        bytes.iter().all(|&byte| {
            let clean = byte >= 0x20 && byte != b'"' && byte != b'\\';
            if clean {
                out.push(byte);
            }
            clean
        })
    } else {
        append_words(out, bytes, |word| !escapes(word))
    };
    if !clean {
        out.truncate(start);
    }
    clean
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `append_json_clean` as a check alone: whether it took `bytes`, and that it left the
    /// head alone and appended exactly `bytes` or nothing.
    fn json_clean(bytes: &[u8]) -> bool {
        let mut out = b"head".to_vec();
        let clean = append_json_clean(&mut out, bytes);
        assert_eq!(&out[..4], b"head");
        assert_eq!(&out[4..], if clean { bytes } else { &[][..] });
        clean
    }

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
                // Every length up to the bad byte and past it, so that it falls in every place
                // of a whole word, of the last word written over, and of a short text.
                for end in 0..=text.len() {
                    assert_eq!(
                        json_clean(&text[..end]),
                        end <= at,
                        "byte {bad:#x} at {at} of {end}"
                    );
                }
            }
        }
        // Bytes just above the escaped ones, and non-ASCII, are never taken for them.
        let near: Vec<u8> = [0x20u8, 0x21, 0x23, 0x5b, 0x5d, 0x80, 0xa2, 0xdc, 0xff]
            .iter()
            .copied()
            .cycle()
            .take(100)
            .collect();
        for end in 0..=near.len() {
            assert!(json_clean(&near[..end]), "{end} bytes");
        }
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
