//! A block-style YAML writer for JSON values: what `export -o yaml` prints. Written here
//! because `serde_yaml`'s emitter was most of the CPU of an export (BENCHMARKS.md, "export").
//!
//! Output looks like `kubectl get -o yaml`: keys in sorted order (as `serde_json::Value` keeps
//! them), sequences under a key at the key's indentation, text plain when it cannot be read as
//! anything else, a literal block (`|-`) for multi-line text, double quotes otherwise (so a
//! YAML 1.1 reader sees no booleans, numbers or timestamps that were text).

use std::io::{self, Write};

use serde_json::{Map, Value};

use super::text::{append, append_yaml_plain, append_yaml_quoted_clean, is_plain_byte};

/// Writes `value` as one YAML document body (no `---`), ending with a newline.
pub fn write_document(out: &mut impl Write, value: &Value) -> io::Result<()> {
    match value {
        Value::Object(map) if !map.is_empty() => write_map(out, map, 0, false),
        Value::Array(items) if !items.is_empty() => write_seq(out, items, 0),
        // A block's lines must be indented, even at the top.
        scalar => {
            write_scalar(out, scalar, 2)?;
            out.write_all(b"\n")
        }
    }
}

/// Spaces for indentation, written a slice of these at a time.
const SPACES: &[u8; 64] = &[b' '; 64];

fn pad(out: &mut impl Write, indent: usize) -> io::Result<()> {
    let mut left = indent;
    while left > 0 {
        let n = left.min(SPACES.len());
        out.write_all(&SPACES[..n])?;
        left -= n;
    }
    Ok(())
}

/// [`pad`] into memory, with the short-copy [`append`].
fn pad_into(out: &mut Vec<u8>, indent: usize) {
    let mut left = indent;
    while left > 0 {
        let n = left.min(SPACES.len());
        append(out, &SPACES[..n]);
        left -= n;
    }
}

/// A map's entries at `indent`; with `inline_first` the first entry continues the current line
/// (after a sequence's `- `).
fn write_map(
    out: &mut impl Write,
    map: &Map<String, Value>,
    indent: usize,
    inline_first: bool,
) -> io::Result<()> {
    for (i, (key, value)) in map.iter().enumerate() {
        if i > 0 || !inline_first {
            pad(out, indent)?;
        }
        // A key is one line: plain or double-quoted, never a block; readers refuse implicit
        // keys longer than 1024 characters (no key the operator writes comes near that).
        if is_plain(key) && key.len() <= MAX_KEY_LEN {
            out.write_all(key.as_bytes())?;
        } else {
            let mut quoted = Vec::with_capacity(key.len() + 2);
            double_quoted_into(&mut quoted, key);
            if quoted.len() > MAX_KEY_LEN {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("a key of {} bytes is longer than YAML allows", key.len()),
                ));
            }
            out.write_all(&quoted)?;
        }
        out.write_all(b":")?;
        match value {
            Value::Object(inner) if !inner.is_empty() => {
                out.write_all(b"\n")?;
                write_map(out, inner, indent + 2, false)?;
            }
            Value::Array(items) if !items.is_empty() => {
                out.write_all(b"\n")?;
                write_seq(out, items, indent)?;
            }
            scalar => {
                out.write_all(b" ")?;
                write_scalar(out, scalar, indent + 2)?;
                out.write_all(b"\n")?;
            }
        }
    }
    Ok(())
}

/// A sequence's items at `indent`, each starting with `- `.
fn write_seq(out: &mut impl Write, items: &[Value], indent: usize) -> io::Result<()> {
    for item in items {
        pad(out, indent)?;
        match item {
            Value::Object(map) if !map.is_empty() => {
                out.write_all(b"- ")?;
                write_map(out, map, indent + 2, true)?;
            }
            Value::Array(inner) if !inner.is_empty() => {
                out.write_all(b"-\n")?;
                write_seq(out, inner, indent + 2)?;
            }
            scalar => {
                out.write_all(b"- ")?;
                write_scalar(out, scalar, indent + 2)?;
                out.write_all(b"\n")?;
            }
        }
    }
    Ok(())
}

/// The longest key readers take in the implicit form (1024 characters), as written.
const MAX_KEY_LEN: usize = 1024;

/// A scalar or an empty collection; a multi-line text's lines go at `indent`.
fn write_scalar(out: &mut impl Write, value: &Value, indent: usize) -> io::Result<()> {
    match value {
        Value::Null => out.write_all(b"null"),
        Value::Bool(b) => out.write_all(if *b { b"true" } else { b"false" }),
        Value::Number(n) if n.is_f64() => out.write_all(yaml_float(&n.to_string()).as_bytes()),
        Value::Number(n) => write!(out, "{n}"),
        Value::String(s) => write_text(out, s, indent),
        Value::Array(_) => out.write_all(b"[]"),
        Value::Object(_) => out.write_all(b"{}"),
    }
}

/// A float as YAML 1.1 readers (PyYAML) take it: a `.` in the mantissa and a signed exponent
/// (`1e300` would read back as text there; `1.0e+300` is a float everywhere).
fn yaml_float(text: &str) -> String {
    let (mantissa, exponent) = match text.split_once(['e', 'E']) {
        Some((m, e)) => (m, Some(e)),
        None => (text, None),
    };
    let mut out = mantissa.to_string();
    if !out.contains('.') {
        out.push_str(".0");
    }
    if let Some(e) = exponent {
        out.push('e');
        if !e.starts_with(['+', '-']) {
            out.push('+');
        }
        out.push_str(e);
    }
    out
}

/// [`write_text`] into memory, which cannot fail.
pub(super) fn text_into(out: &mut Vec<u8>, s: &str, indent: usize) {
    // The bytes are checked as they are copied (see [`append_yaml_plain`]).
    if !(may_be_plain(s) && append_yaml_plain(out, s.as_bytes())) {
        text_not_plain_into(out, s, indent);
    }
}

/// Text: plain, a literal block, or double-quoted, whichever reads back as exactly `s`.
fn write_text(out: &mut impl Write, s: &str, indent: usize) -> io::Result<()> {
    if is_plain(s) {
        return out.write_all(s.as_bytes());
    }
    let mut text = Vec::with_capacity(s.len() + 8);
    text_not_plain_into(&mut text, s, indent);
    out.write_all(&text)
}

/// Text that cannot be plain, as a literal block or double-quoted. Into memory, where short
/// pieces are appended without a call to `memcpy` (see [`append`]).
fn text_not_plain_into(out: &mut Vec<u8>, s: &str, indent: usize) {
    if !fits_literal_block(s) {
        return double_quoted_into(out, s);
    }
    append(out, b"|-");
    for line in s.as_bytes().split(|&b| b == b'\n') {
        out.push(b'\n');
        if !line.is_empty() {
            pad_into(out, indent);
            append(out, line);
        }
    }
}

/// Words YAML 1.1 readers take for booleans or null in any case.
const KEYWORDS: &[&str] = &[
    "y", "n", "yes", "no", "on", "off", "true", "false", "null", "~",
];

/// The length of the longest of [`KEYWORDS`].
const LONGEST_KEYWORD: usize = {
    let (mut longest, mut i) = (0, 0);
    while i < KEYWORDS.len() {
        if KEYWORDS[i].len() > longest {
            longest = KEYWORDS[i].len();
        }
        i += 1;
    }
    longest
};

/// Plain text that no YAML reader can take for anything else: it starts with a letter (so no
/// number, timestamp, indicator or `.inf`), holds only letters, digits and `._/@+-` and inner
/// spaces (no `: ` or ` #`; see [`is_plain_byte`]), and is no boolean or null keyword.
fn is_plain(s: &str) -> bool {
    may_be_plain(s) && s.bytes().all(is_plain_byte)
}

/// [`is_plain`] but for the bytes after the first: `s` starts with a letter, does not end with
/// a space and is no keyword.
fn may_be_plain(s: &str) -> bool {
    let Some(first) = s.bytes().next() else {
        return false;
    };
    first.is_ascii_alphabetic()
        && !s.ends_with(' ')
        && (s.len() > LONGEST_KEYWORD || !KEYWORDS.iter().any(|k| s.eq_ignore_ascii_case(k)))
}

/// Multi-line text a `|-` block holds exactly: it does not end with a line break, no line
/// starts with a blank (the block's indentation is read from its first non-empty line, and
/// readers refuse tabs there), and every character is printable. ASCII text is checked byte by
/// byte in one pass.
fn fits_literal_block(s: &str) -> bool {
    let bytes = s.as_bytes();
    if !bytes.contains(&b'\n') || bytes.ends_with(b"\n") {
        return false;
    }
    if s.is_ascii() {
        let mut line_start = true;
        return bytes.iter().all(|&b| {
            let fits = !(line_start && (b == b' ' || b == b'\t'))
                && (b == b'\n' || b == b'\t' || (0x20..=0x7e).contains(&b));
            line_start = b == b'\n';
            fits
        });
    }
    s.split('\n').all(|line| !line.starts_with([' ', '\t']))
        && s.chars()
            .all(|c| c == '\n' || (c != '\r' && is_printable(c)))
}

/// YAML's printable characters (`c-printable`), without the line breaks other than `\n` that
/// YAML 1.1 readers would fold.
fn is_printable(c: char) -> bool {
    matches!(c, '\t' | '\u{20}'..='\u{7e}' | '\u{a0}'..='\u{2027}' | '\u{202a}'..='\u{d7ff}' | '\u{e000}'..='\u{fefe}' | '\u{ff00}'..='\u{fffd}' | '\u{10000}'..='\u{10ffff}')
}

/// `s` double-quoted: `"`, `\`, line breaks and tabs escaped by name, other characters that
/// are not printable as `\u` or `\U` escapes. Runs of ASCII that need no escape are copied
/// whole.
fn double_quoted_into(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    // Most quoted text (times, numbers as text) has nothing to escape: taken whole.
    if append_yaml_quoted_clean(out, s.as_bytes()) {
        out.push(b'"');
        return;
    }
    let bytes = s.as_bytes();
    let (mut start, mut at) = (0, 0);
    while at < bytes.len() {
        let b = bytes[at];
        let escaped: Option<&[u8]> = match b {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            b'\n' => Some(b"\\n"),
            b'\t' => Some(b"\\t"),
            b'\r' => Some(b"\\r"),
            0x20..=0x7e => {
                at += 1;
                continue;
            }
            _ => None,
        };
        // Another character: a control character, DEL, or the start of a non-ASCII one (`at`
        // is always at a character's start, as it moves by whole characters).
        let c = s[at..]
            .chars()
            .next()
            .unwrap_or(char::REPLACEMENT_CHARACTER);
        let next = at + c.len_utf8();
        if escaped.is_none() && is_printable(c) {
            at = next;
            continue;
        }
        append(out, &bytes[start..at]);
        match escaped {
            Some(e) => append(out, e),
            // Writes into a `Vec` do not fail.
            None if u32::from(c) <= 0xffff => {
                let _ = write!(out, "\\u{:04X}", u32::from(c));
            }
            None => {
                let _ = write!(out, "\\U{:08X}", u32::from(c));
            }
        }
        (start, at) = (next, next);
    }
    append(out, &bytes[start..]);
    out.push(b'"');
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn yaml(value: &Value) -> String {
        let mut out = Vec::new();
        write_document(&mut out, value).unwrap();
        String::from_utf8(out).unwrap()
    }

    fn reads_back(value: &Value) {
        let text = yaml(value);
        let back: Value = serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{e}:\n{text}"));
        assert_eq!(&back, value, "{text}");
    }

    #[test]
    fn objects_look_like_kubectl_output() {
        let obj = json!({
            "apiVersion": "ecs.mirror.io/v1alpha1",
            "kind": "ImagePipeline",
            "metadata": {"name": "ip-a", "labels": {"team": "payments"}},
            "spec": {
                "buildContent": "RUN yum update -y\nRUN yum install -y nginx",
                "creationTime": "2024-08-19T08:00:00Z",
                "systemDiskSize": 40,
                "deleteInstanceOnFailure": true,
                "tags": [{"key": "team", "value": "payments"}],
                "toRegionIds": ["cn-shanghai", "cn-beijing"],
                "addAccounts": [],
            },
        });
        assert_eq!(
            yaml(&obj),
            "apiVersion: ecs.mirror.io/v1alpha1\n\
             kind: ImagePipeline\n\
             metadata:\n  labels:\n    team: payments\n  name: ip-a\n\
             spec:\n  addAccounts: []\n  buildContent: |-\n    RUN yum update -y\n    RUN yum install -y nginx\n  \
             creationTime: \"2024-08-19T08:00:00Z\"\n  deleteInstanceOnFailure: true\n  systemDiskSize: 40\n  \
             tags:\n  - key: team\n    value: payments\n  toRegionIds:\n  - cn-shanghai\n  - cn-beijing\n"
        );
        reads_back(&obj);
    }

    #[test]
    fn text_a_reader_would_take_for_something_else_is_quoted() {
        for s in [
            "",
            "true",
            "No",
            "ON",
            "~",
            "null",
            "0x1F",
            "1_000",
            "1:20",
            "2024-08-19",
            ".inf",
            "-",
            "- a",
            "a: b",
            "a #b",
            "#x",
            "'q'",
            "\"q\"",
            "a ",
            " a",
            "@x",
            "*x",
            "&x",
            "!x",
            "%x",
            "|",
            ">",
            "[a]",
            "{a}",
            "a\u{85}b",
            "a\u{2028}b",
            "\u{feff}a",
            "a\r\nb",
            "a\n",
            "\na",
            "  a\nb",
            "a\n  \nb",
            "tab\there",
            "\u{7f}",
            "\u{1f}",
        ] {
            reads_back(&json!({ "k": s, s: "key" }));
        }
        assert_eq!(yaml(&json!({"k": "yes"})), "k: \"yes\"\n");
        assert_eq!(yaml(&json!({"k": "a\u{2028}b"})), "k: \"a\\u2028b\"\n");
    }

    #[test]
    fn floats_have_a_point_and_a_signed_exponent_and_read_back() {
        assert_eq!(yaml(&json!({"k": 1e300})), "k: 1.0e+300\n");
        assert_eq!(yaml(&json!({"k": 1e-7})), "k: 1.0e-7\n");
        assert_eq!(yaml(&json!({"k": 0.5})), "k: 0.5\n");
        for f in [
            1e300,
            1e-7,
            1.5e300,
            -0.0,
            0.1,
            123.0,
            f64::MAX,
            f64::MIN_POSITIVE,
        ] {
            reads_back(&json!({ "k": f }));
        }
    }

    #[test]
    fn text_alone_reads_back_even_on_several_lines() {
        reads_back(&json!("a\nb"));
        reads_back(&json!("---\n..."));
        assert_eq!(yaml(&json!("a\nb")), "|-\n  a\n  b\n");
    }

    #[test]
    fn a_key_too_long_for_yaml_is_an_error_not_broken_output() {
        let mut out = Vec::new();
        let long = "k".repeat(MAX_KEY_LEN + 1);
        assert!(write_document(&mut out, &json!({ long: 1 })).is_err());
        // Escapes count: 400 tabs are 800 bytes quoted.
        assert!(write_document(&mut out, &json!({ "\t".repeat(600): 1 })).is_err());
        reads_back(&json!({ "k".repeat(MAX_KEY_LEN): 1 }));
        reads_back(&json!({ "\t".repeat(400): 1 }));
    }

    #[test]
    fn nested_and_empty_collections_read_back() {
        reads_back(&json!([[1, [2, {}]], {"a": [[], {"b": null}]}, []]));
        reads_back(&json!({}));
        reads_back(&json!("scalar"));
        reads_back(&json!({"a": {"b": {"c": [{"d": [1, 2]}, "x\ny"]}}}));
    }

    proptest! {
        #[test]
        fn any_text_reads_back_exactly(s in any::<String>(), key in "\\PC{0,8}") {
            let value = json!({ "spec": { "k": s.clone(), "list": [s.clone(), {key: s}] } });
            let text = yaml(&value);
            let back: Value = serde_yaml::from_str(&text).map_err(|e| TestCaseError::fail(format!("{e}:\n{text}")))?;
            prop_assert_eq!(back, value);
        }

        #[test]
        fn multi_line_text_reads_back_exactly(lines in proptest::collection::vec("[ a-z\t#:'\"-]{0,6}", 1..5)) {
            let value = json!({ "k": lines.join("\n") });
            let text = yaml(&value);
            let back: Value = serde_yaml::from_str(&text).map_err(|e| TestCaseError::fail(format!("{e}:\n{text}")))?;
            prop_assert_eq!(back, value);
        }
    }
}
