//! Appending text to a buffer, for the printers of `export`.

/// Appends `bytes` to `out`. Short texts, most of what is appended here, are copied in 8-byte
/// words rather than by a call to the C library's `memcpy`: musl's (the image's build) starts
/// every copy with `rep movsq` and copies the odd bytes one at a time, which made it a sixth of
/// an export's CPU. The odd bytes after the last whole word go as one more word, the last eight
/// bytes, written over the end of what was copied (the same bytes again). Always inlined: most
/// callers append a few bytes, for which the call cost about what the copy did (3% of an
/// export's instructions).
#[inline(always)]
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

const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);

/// Whether any byte of `word` is below `n` (at most 0x80). (Which bytes are is not exact past
/// the first one, which is never asked.)
#[inline]
fn any_below(word: u64, n: u8) -> bool {
    word.wrapping_sub(ONES * u64::from(n)) & !word & HIGH != 0
}

/// Whether any byte of `word` is `b`.
#[inline]
fn any_equal(word: u64, b: u8) -> bool {
    any_below(word ^ (ONES * u64::from(b)), 1)
}

/// Whether a word holds a byte JSON escapes: `"`, `\\`, a control character.
#[inline]
fn json_escapes(word: u64) -> bool {
    any_below(word, 0x20) || any_equal(word, b'"') || any_equal(word, b'\\')
}

/// Appends `bytes` as they are when each byte passes `byte_ok` (and each 8-byte word
/// `word_ok`, which must agree with it), and answers `true`; otherwise leaves `out` as it was
/// and answers `false`. The check and the copy go together, eight bytes at a time, as
/// [`append`] copies: checking first and copying after read every text twice, about a tenth
/// of an export's CPU.
#[inline]
fn append_if_all(
    out: &mut Vec<u8>,
    bytes: &[u8],
    word_ok: impl Fn(u64) -> bool,
    byte_ok: impl Fn(u8) -> bool,
) -> bool {
    let start = out.len();
    out.reserve(bytes.len());
    let all = if bytes.len() < 8 {
        bytes.iter().all(|&byte| {
            let ok = byte_ok(byte);
            if ok {
                out.push(byte);
            }
            ok
        })
    } else {
        append_words(out, bytes, |word| word_ok(u64::from_ne_bytes(word)))
    };
    if !all {
        out.truncate(start);
    }
    all
}

/// Appends `bytes` as they are when they hold no byte that JSON escapes (`"`, `\\`, control
/// characters), and answers `true`; otherwise leaves `out` as it was and answers `false`.
#[inline]
pub fn append_json_clean(out: &mut Vec<u8>, bytes: &[u8]) -> bool {
    append_if_all(
        out,
        bytes,
        |word| !json_escapes(word),
        |byte| byte >= 0x20 && byte != b'"' && byte != b'\\',
    )
}

/// Appends `bytes` as they are when each is printable ASCII (`0x20..=0x7e`) other than `"` and
/// `\\`: text that goes between double quotes in YAML unchanged. Answers whether it did;
/// otherwise `out` is left as it was.
#[inline]
pub fn append_yaml_quoted_clean(out: &mut Vec<u8>, bytes: &[u8]) -> bool {
    append_if_all(
        out,
        bytes,
        |word| word & HIGH == 0 && !json_escapes(word) && !any_equal(word, 0x7f),
        |byte| (0x20..=0x7e).contains(&byte) && byte != b'"' && byte != b'\\',
    )
}

/// Whether `byte` may be in plain YAML text as this project prints it: a letter, a digit, one
/// of `._/@+-`, or a space.
#[inline]
pub fn is_plain_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'/' | b'@' | b'+' | b'-' | b' ')
}

/// Whether every byte of `word` [`is_plain_byte`], eight at a time: each byte, being ASCII, is
/// compared against the ranges by adding to it (a byte's high bit is set once it reaches a
/// bound, and no byte below 0x80 carries into the next).
#[inline]
fn is_plain_word(word: u64) -> bool {
    if word & HIGH != 0 {
        return false;
    }
    // The high bit of each byte that is at least `n` (1 to 0x80), for ASCII bytes.
    let at_least = |w: u64, n: u8| w.wrapping_add(ONES * u64::from(0x80 - n)) & HIGH;
    let equal = |w: u64, b: u8| !at_least(w ^ (ONES * u64::from(b)), 1) & HIGH;
    let lower = word | (ONES * 0x20);
    let letter = at_least(lower, b'a') & !at_least(lower, b'z' + 1);
    // `-`, `.`, `/` and the digits are one run, 0x2d to 0x39.
    let digit_dash_dot_slash = at_least(word, b'-') & !at_least(word, b'9' + 1);
    let plain = letter
        | digit_dash_dot_slash
        | equal(word, b' ')
        | equal(word, b'+')
        | equal(word, b'@')
        | equal(word, b'_');
    plain == HIGH
}

/// Appends `bytes` when every byte [`is_plain_byte`], and answers `true`; otherwise leaves
/// `out` as it was and answers `false`.
#[inline]
pub fn append_yaml_plain(out: &mut Vec<u8>, bytes: &[u8]) -> bool {
    append_if_all(out, bytes, is_plain_word, is_plain_byte)
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

    /// A fused check-and-append against the byte check it stands for: for every byte value at
    /// every place of texts of every length up to 40 (whole words, the last word written over,
    /// short texts), it takes the text exactly when every byte passes `byte_ok`, and leaves the
    /// head alone.
    fn agrees_with_bytes(append: fn(&mut Vec<u8>, &[u8]) -> bool, byte_ok: fn(u8) -> bool) {
        let base: Vec<u8> = (0..40).map(|i| b"abcXYZ019 -./@+_"[i % 16]).collect();
        for bad in 0..=255u8 {
            for len in 0..=base.len() {
                for at in 0..len.max(1) {
                    let mut text = base[..len].to_vec();
                    if len > 0 {
                        text[at] = bad;
                    }
                    let mut out = b"head".to_vec();
                    let took = append(&mut out, &text);
                    let expected = text.iter().all(|&b| byte_ok(b));
                    assert_eq!(took, expected, "byte {bad:#x} at {at} of {len}");
                    assert_eq!(&out[..4], b"head");
                    assert_eq!(&out[4..], if took { &text[..] } else { &[][..] });
                }
            }
        }
    }

    #[test]
    fn plain_yaml_text_is_exactly_the_plain_bytes() {
        agrees_with_bytes(append_yaml_plain, is_plain_byte);
        // The class itself, spelled out.
        let plain: Vec<u8> = (0..=255u8).filter(|&b| is_plain_byte(b)).collect();
        let mut expected: Vec<u8> = b" +-./0123456789@ABCDEFGHIJKLMNOPQRSTUVWXYZ_".to_vec();
        expected.extend(b'a'..=b'z');
        assert_eq!(plain, expected);
    }

    #[test]
    fn quoted_yaml_text_taken_whole_is_printable_ascii_but_quote_and_backslash() {
        agrees_with_bytes(append_yaml_quoted_clean, |b| {
            (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\'
        });
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
