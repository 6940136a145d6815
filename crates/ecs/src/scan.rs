//! A page read by hand, byte by byte, for the one shape the service sends. Reading the pages
//! was the largest part of a listing's CPU: about a third of `export -o json` at 100,000
//! pipelines through serde's visitors (BENCHMARKS.md), about half that through this scanner.
//!
//! It reads a strict subset of what [`crate::fast::visit_body_into`], the serde pass, reads: keys
//! without escapes; where an item has a number, a count (no sign, fraction or exponent, at most
//! 18 digits); elsewhere numbers serde can never find out of range; the simple escapes and `\u`
//! escapes outside the surrogates; at most [`MAX_DEPTH`] levels of nesting. Whatever it reads,
//! it reads exactly as that pass does (the same members, the same items, each text borrowed
//! from the body unless it has escapes); anything outside the subset, or anything that pass
//! would refuse, makes it give up, and the serde pass reads the body instead. The property
//! tests below hold the two to that, and to the scanner reading every usual page.

use std::borrow::Cow;

use serde_json::{Map, Value};

use crate::fast::{LIST, Member, Slot, member, text};
use crate::view::{ItemSink, TagView};

/// Deeper than this, the scanner gives up (serde's own limit is 128).
const MAX_DEPTH: u32 = 64;

/// At most this many strings of items read are kept for the next items' texts with escapes.
const SPARE_TEXTS: usize = 32;

/// Reads `text` as a page: its members other than the list as values, its items given to
/// `sink`. `None` when it is not a page in the usual shape within the subset; the sink has
/// then been told to drop any item it was given.
pub(crate) fn body_into(text: &str, sink: &mut dyn ItemSink) -> Option<Map<String, Value>> {
    let mut given = false;
    let read = Scanner::new(text).body(sink, &mut given);
    if read.is_none() && given {
        sink.drop_page();
    }
    read
}

/// A position in the text being read. Every method that reads something skips the whitespace
/// before it, and answers `None` when the text is not what it expects.
struct Scanner<'a> {
    text: &'a str,
    at: usize,
    /// Strings of the items read before, each text with escapes unescaped into one of them
    /// instead of a string allocated and freed for every item (each build script has line
    /// breaks).
    spare: Vec<String>,
}

impl<'a> Scanner<'a> {
    fn new(text: &'a str) -> Self {
        Scanner {
            text,
            at: 0,
            spare: Vec::new(),
        }
    }

    fn bytes(&self) -> &'a [u8] {
        self.text.as_bytes()
    }

    /// The next byte that is not JSON whitespace, not taken.
    fn peek(&mut self) -> Option<u8> {
        while let Some(&b) = self.bytes().get(self.at) {
            if !matches!(b, b' ' | b'\t' | b'\n' | b'\r') {
                return Some(b);
            }
            self.at += 1;
        }
        None
    }

    /// Takes the next byte that is not whitespace.
    fn next(&mut self) -> Option<u8> {
        let b = self.peek()?;
        self.at += 1;
        Some(b)
    }

    fn expect(&mut self, byte: u8) -> Option<()> {
        (self.next()? == byte).then_some(())
    }

    fn literal(&mut self, word: &[u8]) -> Option<()> {
        self.peek()?;
        let end = self.at + word.len();
        (self.bytes().get(self.at..end)? == word).then(|| self.at = end)
    }

    /// Takes a `null` if one comes next.
    fn null(&mut self) -> Option<bool> {
        if self.peek()? != b'n' {
            return Some(false);
        }
        self.literal(b"null").map(|()| true)
    }

    /// The whole body: one object, nothing after it but whitespace.
    fn body(mut self, sink: &mut dyn ItemSink, given: &mut bool) -> Option<Map<String, Value>> {
        let mut members = Map::new();
        let mut lists = 0;
        self.object(|s, key| {
            if key == LIST {
                lists += 1;
                return if lists > 1 { None } else { s.list(sink, given) };
            }
            let start = s.at;
            s.skip_value(2)?;
            // The few small members are parsed by serde itself: exactly as it reads them.
            let value = serde_json::from_str(s.text.get(start..s.at)?).ok()?;
            members.insert(key.to_string(), value);
            Some(())
        })?;
        (lists == 1 && self.peek().is_none()).then_some(members)
    }

    /// The list member: `null`, or an object whose `ImagePipelineSet` is `null` or an array of
    /// items (once).
    fn list(&mut self, sink: &mut dyn ItemSink, given: &mut bool) -> Option<()> {
        if self.null()? {
            return Some(());
        }
        let mut sets = 0;
        self.object(|s, key| {
            if key != "ImagePipelineSet" {
                return s.skip_value(3);
            }
            sets += 1;
            if sets > 1 || s.null()? {
                return (sets == 1).then_some(());
            }
            // Every item is read into the same slot: its lists into the same few allocations.
            let mut slot = Slot::default();
            s.array(|s| {
                s.item(&mut slot)?;
                sink.item(slot.view()?);
                *given = true;
                Some(())
            })
        })
    }

    /// One item, read into `slot` (emptied first): the members [`Slot`] keeps, each at most
    /// once and strictly typed; any other member skipped.
    fn item(&mut self, slot: &mut Slot<'a>) -> Option<()> {
        slot.view.release_owned(&mut self.spare, SPARE_TEXTS);
        slot.clear();
        let Slot {
            view, has_id, seen, ..
        } = slot;
        self.object(|s, key| {
            let Some((place, member)) = member(key, view) else {
                return s.skip_value(5);
            };
            once(&mut seen[place])?;
            match member {
                Member::Id(id) => {
                    let read = text(s.optional_text()?);
                    *has_id = read.is_some();
                    *id = read.unwrap_or_default();
                }
                Member::Text(field) => *field = text(s.optional_text()?),
                Member::Number(field) => *field = s.optional_count()?,
                Member::Flag(field) => *field = s.optional_bool()?,
                Member::Tags(inner, tags) => s.wrapped(inner, |s| s.tag(&mut *tags))?,
                Member::Texts(inner, texts) => s.wrapped(inner, |s| s.text_element(&mut *texts))?,
            }
            Some(())
        })
    }

    /// A wrapped list, `null` or `{Inner: [...]}` whose inner member is `null` or an array
    /// (once); `element` reads each element.
    fn wrapped(
        &mut self,
        inner: &str,
        mut element: impl FnMut(&mut Self) -> Option<()>,
    ) -> Option<()> {
        if self.null()? {
            return Some(());
        }
        let mut seen = false;
        self.object(|s, key| {
            if key != inner {
                return s.skip_value(6);
            }
            once(&mut seen)?;
            if s.null()? {
                return Some(());
            }
            s.array(&mut element)
        })
    }

    /// A text element (a string or `null`): kept unless `""` or `"null"`. One that is a JSON
    /// array inside a string is left to the lenient decoder, which unpacks those.
    fn text_element(&mut self, texts: &mut Vec<Cow<'a, str>>) -> Option<()> {
        let Some(t) = self.optional_text()? else {
            return Some(());
        };
        if t != "null" && t.trim_start().starts_with('[') {
            return None;
        }
        texts.extend(text(Some(t)));
        Some(())
    }

    /// A tag element (`null`, or an object with `TagKey` and `TagValue` each a string or
    /// `null`, at most once): kept when its key is a text.
    fn tag(&mut self, tags: &mut Vec<TagView<'a>>) -> Option<()> {
        if self.null()? {
            return Some(());
        }
        let (mut key, mut value) = (None, None);
        self.object(|s, name| {
            let slot = match name {
                "TagKey" => &mut key,
                "TagValue" => &mut value,
                _ => return s.skip_value(8),
            };
            if slot.is_some() {
                return None;
            }
            *slot = Some(s.optional_text()?);
            Some(())
        })?;
        if let Some(key) = text(key.flatten()) {
            tags.push(TagView {
                key,
                value: text(value.flatten()).unwrap_or_default(),
            });
        }
        Some(())
    }

    /// An object's members, `member` reading each value after its key.
    fn object(&mut self, mut member: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        self.expect(b'{')?;
        if self.peek()? == b'}' {
            self.at += 1;
            return Some(());
        }
        loop {
            let key = self.key()?;
            member(self, key)?;
            match self.next()? {
                b',' => {}
                b'}' => return Some(()),
                _ => return None,
            }
        }
    }

    /// An array's elements, each read by `element`.
    fn array(&mut self, mut element: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.expect(b'[')?;
        if self.peek()? == b']' {
            self.at += 1;
            return Some(());
        }
        loop {
            element(self)?;
            match self.next()? {
                b',' => {}
                b']' => return Some(()),
                _ => return None,
            }
        }
    }

    /// A member's key (without escapes) and the colon after it.
    fn key(&mut self) -> Option<&'a str> {
        let Cow::Borrowed(key) = self.string()? else {
            return None;
        };
        self.expect(b':')?;
        Some(key)
    }

    /// `null` or a string.
    fn optional_text(&mut self) -> Option<Option<Cow<'a, str>>> {
        if self.null()? {
            return Some(None);
        }
        self.string().map(Some)
    }

    /// `null`, `true` or `false`.
    fn optional_bool(&mut self) -> Option<Option<bool>> {
        match self.peek()? {
            b'n' => self.literal(b"null").map(|()| None),
            b't' => self.literal(b"true").map(|()| Some(true)),
            b'f' => self.literal(b"false").map(|()| Some(false)),
            _ => None,
        }
    }

    /// `null` or a whole non-negative number of at most 18 digits.
    fn optional_count(&mut self) -> Option<Option<i64>> {
        if self.null()? {
            return Some(None);
        }
        let start = self.at;
        if !self.number()? {
            return None;
        }
        // No sign: `-0` is a float to serde.
        self.text.get(start..self.at)?.parse().ok().map(Some)
    }

    /// A number, `Some(true)` when it is a count (no sign, fraction or exponent). Only numbers
    /// serde can never find out of range: at most 18 digits before and after the point, an
    /// exponent of at most two digits.
    fn number(&mut self) -> Option<bool> {
        self.peek()?;
        let negative = self.bytes().get(self.at) == Some(&b'-');
        self.at += usize::from(negative);
        let start = self.at;
        let digits = self.digits(18)?;
        if digits > 1 && self.bytes().get(start) == Some(&b'0') {
            return None;
        }
        let mut whole = !negative;
        if self.bytes().get(self.at) == Some(&b'.') {
            self.at += 1;
            self.digits(18)?;
            whole = false;
        }
        if matches!(self.bytes().get(self.at), Some(b'e' | b'E')) {
            self.at += 1;
            if matches!(self.bytes().get(self.at), Some(b'+' | b'-')) {
                self.at += 1;
            }
            self.digits(2)?;
            whole = false;
        }
        Some(whole)
    }

    /// Takes a run of 1 to `most` decimal digits, answering its length.
    fn digits(&mut self, most: usize) -> Option<usize> {
        let count = self
            .bytes()
            .get(self.at..)
            .unwrap_or_default()
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        self.at += count;
        (1..=most).contains(&count).then_some(count)
    }

    /// Any value, checked but not kept (`depth`: the levels it is nested in).
    fn skip_value(&mut self, depth: u32) -> Option<()> {
        if depth > MAX_DEPTH {
            return None;
        }
        match self.peek()? {
            b'"' => self.string().map(drop),
            b'{' => self.object(|s, _| s.skip_value(depth + 1)),
            b'[' => self.array(|s| s.skip_value(depth + 1)),
            b't' => self.literal(b"true"),
            b'f' => self.literal(b"false"),
            b'n' => self.literal(b"null"),
            b'-' | b'0'..=b'9' => self.number().map(drop),
            _ => None,
        }
    }

    /// A string: borrowed from the text when it has no escapes, else unescaped.
    fn string(&mut self) -> Option<Cow<'a, str>> {
        self.expect(b'"')?;
        let start = self.at;
        let end = plain_run(self.bytes(), start);
        if self.bytes().get(end) == Some(&b'"') {
            self.at = end + 1;
            return self.text.get(start..end).map(Cow::Borrowed);
        }
        let mut owned = self.spare.pop().unwrap_or_default();
        owned.clear();
        owned.push_str(self.text.get(start..end)?);
        self.at = end;
        let read = loop {
            match self.bytes().get(self.at) {
                Some(b'"') => {
                    self.at += 1;
                    break Some(());
                }
                Some(b'\\') => match self.escape() {
                    Some(c) => owned.push(c),
                    None => break None,
                },
                // A control character, which JSON wants escaped, or the end of the text.
                _ => break None,
            }
            let end = plain_run(self.bytes(), self.at);
            match self.text.get(self.at..end) {
                Some(run) => owned.push_str(run),
                None => break None,
            }
            self.at = end;
        };
        match read {
            Some(()) => Some(Cow::Owned(owned)),
            None => {
                self.spare.push(owned);
                None
            }
        }
    }

    /// The character of the escape at the scanner (its `\`); `None` for a surrogate, which
    /// serde reads only in a valid pair.
    fn escape(&mut self) -> Option<char> {
        let c = match *self.bytes().get(self.at + 1)? {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let hex = self.bytes().get(self.at + 2..self.at + 6)?;
                if !hex.iter().all(u8::is_ascii_hexdigit) {
                    return None;
                }
                let code = u32::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
                self.at += 4;
                char::from_u32(code)?
            }
            _ => return None,
        };
        self.at += 2;
        Some(c)
    }
}

/// `Some` the first time a member is seen, `None` (give up) the second time: serde's pass
/// refuses duplicates, for the lenient decoder to keep the last one.
fn once(seen: &mut bool) -> Option<()> {
    (!std::mem::replace(seen, true)).then_some(())
}

/// Where the run of string bytes that need no attention, from `from`, ends: at the first `"`,
/// `\` or control character, or at the end. Eight bytes at a time.
fn plain_run(bytes: &[u8], from: usize) -> usize {
    const ONES: u64 = u64::from_le_bytes([0x01; 8]);
    const HIGH: u64 = u64::from_le_bytes([0x80; 8]);
    // The high bit of each byte below `n`: exact up to the first such byte, which is all
    // that is read of it.
    let below = |word: u64, n: u8| word.wrapping_sub(ONES * u64::from(n)) & !word & HIGH;
    let mut at = from;
    while let Some(chunk) = bytes.get(at..at + 8) {
        let Ok(chunk) = <[u8; 8]>::try_from(chunk) else {
            break;
        };
        let word = u64::from_le_bytes(chunk);
        let found = below(word, 0x20)
            | below(word ^ (ONES * u64::from(b'"')), 1)
            | below(word ^ (ONES * u64::from(b'\\')), 1);
        if found != 0 {
            return at + (found.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    at + bytes[at.min(bytes.len())..]
        .iter()
        .take_while(|&&b| b >= 0x20 && b != b'"' && b != b'\\')
        .count()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::fast::visit_body_into;
    use crate::view::ItemView;

    /// What a sink is left with: each item's fields, and whether its ID and name were borrowed
    /// from the body.
    #[derive(Default, Debug, PartialEq)]
    struct Kept(Vec<String>);

    impl ItemSink for Kept {
        fn item(&mut self, item: &ItemView<'_>) {
            let borrowed = |t: Option<&Cow<'_, str>>| matches!(t, Some(Cow::Borrowed(_)));
            self.0.push(format!(
                "{item:?} id borrowed {} name borrowed {}",
                borrowed(Some(&item.image_pipeline_id)),
                borrowed(item.name.as_ref())
            ));
        }
        fn drop_page(&mut self) {
            self.0.clear();
        }
    }

    /// A reading: the members and what the sink kept.
    type Reading = Option<(Map<String, Value>, Kept)>;

    /// The scanner's reading of `text` (`None` when it gives up), and serde's.
    fn both(text: &str) -> (Reading, Reading) {
        let mut scanned = Kept::default();
        let scan = body_into(text, &mut scanned).map(|m| (m, scanned));
        let mut visited = Kept::default();
        let visit = visit_body_into(text, &mut visited).map(|m| (m, visited));
        (scan, visit)
    }

    /// The scanner reads `text` as serde does.
    fn reads_alike(text: &str) -> Kept {
        let (scan, visit) = both(text);
        let scan = scan.unwrap_or_else(|| panic!("the scanner gave up on {text}"));
        assert_eq!(Some(&scan), visit.as_ref(), "{text}");
        scan.1
    }

    /// The scanner gives up on `text`, leaving its sink empty.
    fn gives_up(text: &str) {
        let mut sink = Kept::default();
        assert!(body_into(text, &mut sink).is_none(), "{text}");
        assert_eq!(sink, Kept::default(), "{text}");
    }

    fn page(items: &str) -> String {
        format!(
            r#"{{"RequestId":"r-1","TotalCount":2,"NextToken":"t","ImagePipeline":{{"ImagePipelineSet":[{items}]}}}}"#
        )
    }

    #[test]
    fn texts_with_escapes_reuse_the_strings_of_the_items_before() {
        /// Each item's build script, and the capacity of the string it was unescaped into.
        #[derive(Default)]
        struct Scripts(Vec<(String, usize)>);
        impl ItemSink for Scripts {
            fn item(&mut self, item: &ItemView<'_>) {
                match item.build_content.as_ref().expect("a build script") {
                    Cow::Owned(script) => self.0.push((script.clone(), script.capacity())),
                    Cow::Borrowed(script) => panic!("{script:?} has escapes, yet was borrowed"),
                }
            }
            fn drop_page(&mut self) {
                self.0.clear();
            }
        }
        // The first script is the longest: a string of its own for each item would be no
        // larger than its own script.
        let scripts: Vec<String> = (0..5)
            .map(|i| format!("RUN {}\\nRUN \\\"x\\\"", "y".repeat(200 - 40 * i)))
            .collect();
        let items: Vec<String> = scripts
            .iter()
            .enumerate()
            .map(|(i, script)| {
                format!(r#"{{"ImagePipelineId":"ip-{i}","BuildContent":"{script}"}}"#)
            })
            .collect();
        let text = page(&items.join(","));
        let mut read = Scripts::default();
        assert!(body_into(&text, &mut read).is_some());
        let unescaped: Vec<String> = scripts
            .iter()
            .map(|s| s.replace("\\n", "\n").replace("\\\"", "\""))
            .collect();
        let texts: Vec<&str> = read.0.iter().map(|(s, _)| s.as_str()).collect();
        assert_eq!(texts, unescaped);
        let first = read.0[0].0.len();
        for (script, capacity) in &read.0[1..] {
            assert!(
                *capacity >= first,
                "{script:?} in a string of {capacity} bytes, not the first item's ({first})"
            );
        }
        reads_alike(&text);
    }

    #[test]
    fn the_usual_page_is_read_with_its_texts_in_place() {
        let text = page(concat!(
            r#"{"ImagePipelineId":"ip-a","Name":"n","Description":"RUN a\nRUN \"b\" \u00e9\/",
                "SystemDiskSize":40,"InternetMaxBandwidthOut":0,"DeleteInstanceOnFailure":false,
                "RegionId":"cn-hangzhou","Extra":{"x":[1.5e-3,-2,true,null,{}]},"Empty":[],
                "Tags":{"Tag":[{"TagKey":"k","TagValue":"v"},null,{"TagKey":""},{"TagKey":"j"}]},
                "ToRegionIds":{"ToRegionId":["cn-a","","null",null]},"AddAccounts":null},"#,
            "\n  { \"ImagePipelineId\" : \"ip-\\u0062\" , \"Name\" : null , \"中文\" : \"名\" }"
        ));
        let kept = reads_alike(&text);
        assert_eq!(kept.0.len(), 2);
        assert!(
            kept.0[0].contains(r#"description: Some("RUN a\nRUN \"b\" é/")"#),
            "{}",
            kept.0[0]
        );
        assert!(kept.0[0].ends_with("id borrowed true name borrowed true"));
        assert!(
            kept.0[0].contains(r#"to_region_ids: ["cn-a"]"#),
            "{}",
            kept.0[0]
        );
        assert!(
            kept.0[1].contains(r#"image_pipeline_id: "ip-b""#),
            "{}",
            kept.0[1]
        );
        assert!(kept.0[1].ends_with("id borrowed false name borrowed false"));
        // No items, no list body, whitespace around it all.
        reads_alike(" \r\n\t{\"ImagePipeline\":null} \n");
        reads_alike(r#"{"ImagePipeline":{"ImagePipelineSet":null,"X":[[]]},"Page":{"a":1}}"#);
        reads_alike(r#"{"ImagePipeline":{}}"#);
    }

    #[test]
    fn anything_outside_the_subset_is_left_to_serde() {
        for item in [
            // Numbers serde reads some other way, or may find out of range.
            r#"{"ImagePipelineId":"ip-a","SystemDiskSize":-1}"#,
            r#"{"ImagePipelineId":"ip-a","SystemDiskSize":1.0}"#,
            r#"{"ImagePipelineId":"ip-a","SystemDiskSize":1234567890123456789}"#,
            r#"{"ImagePipelineId":"ip-a","X":1e400}"#,
            r#"{"ImagePipelineId":"ip-a","X":1.0000000000000000000001}"#,
            // A key with an escape, a surrogate pair, a duplicate member.
            r#"{"ImagePipelineId":"ip-a","N\u0061me":"x"}"#,
            r#"{"ImagePipelineId":"ip-a","Name":"\ud83d\ude00"}"#,
            r#"{"ImagePipelineId":"ip-a","Name":"x","Name":"y"}"#,
            r#"{"ImagePipelineId":"ip-a","Tags":{"Tag":[{"TagKey":"k","TagKey":null}]}}"#,
            r#"{"ImagePipelineId":"ip-a","Tags":{"Tag":[],"Tag":[]}}"#,
            // Shapes the lenient decoder reads: a list in a string, a lone value, no ID.
            r#"{"ImagePipelineId":"ip-a","ToRegionIds":{"ToRegionId":[" [\"x\"]"]}}"#,
            r#"{"ImagePipelineId":"ip-a","ToRegionIds":{"ToRegionId":"x"}}"#,
            r#"{"ImagePipelineId":"ip-a","Tags":[]}"#,
            r#"{"ImagePipelineId":"ip-a","Name":7}"#,
            r#"{"ImagePipelineId":""}"#,
            r#"{"Name":"x"}"#,
            r#"null"#,
        ] {
            // The first item is usual: the sink is told to drop it.
            gives_up(&page(&format!(r#"{{"ImagePipelineId":"ip-0"}},{item}"#)));
        }
        let deep = format!("{}{}", "[".repeat(70), "]".repeat(70));
        gives_up(&page(&format!(
            r#"{{"ImagePipelineId":"ip-a","X":{deep}}}"#
        )));
        for body in [
            r#"{"ImagePipeline":null,"ImagePipeline":null}"#,
            r#"{"ImagePipeline":{"ImagePipelineSet":[],"ImagePipelineSet":[]}}"#,
            r#"{"ImagePipeline":{"ImagePipelineSet":{}}}"#,
            r#"{"ImagePipeline":[]}"#,
            r#"{"RequestId":"r"}"#,
            r#"{"ImagePipeline":null} x"#,
            r#"{"ImagePipeline":null,}"#,
            r#"{"ImagePipeline":nul}"#,
            r#"{"ImagePipeline":null"#,
            "{\"RequestId\":\"a\tb\",\"ImagePipeline\":null}",
            r#"{"RequestId":"\x","ImagePipeline":null}"#,
            r#"{"RequestId":"\u12","ImagePipeline":null}"#,
            r#"{"RequestId":01,"ImagePipeline":null}"#,
            r#"{"RequestId":-,"ImagePipeline":null}"#,
            r#"{"RequestId":1.,"ImagePipeline":null}"#,
            r#"{"RequestId":1e,"ImagePipeline":null}"#,
            "",
        ] {
            gives_up(body);
        }
    }

    /// JSON values as text: mostly ones the scanner reads, some it leaves to serde.
    fn snippet() -> impl Strategy<Value = String> {
        let read = prop::sample::select(vec![
            "null",
            "true",
            "false",
            r#""""#,
            r#""null""#,
            r#""a\"b\\c\/d\b\f\n\r\te""#,
            r#""\u00e9\u4e2d\u0000\u001F\uFFFF""#,
            "\"é中\u{7f}\"",
            "0",
            "123456789012345678",
            "-12",
            "1.5",
            "2E-5",
            "[]",
            r#"{"Tag":[{"TagKey":"k","TagValue":null},null,{"TagKey":"\n"}]}"#,
            r#"{"ToRegionId":["a",null,"null","\t"],"x":{}}"#,
            r#"{"AddAccount":null,"x":1}"#,
        ]);
        let left = prop::sample::select(vec![
            r#""\ud800""#,
            r#""\uD83D\uDE00""#,
            r#"" [\"x\"]""#,
            "-0",
            "007",
            "9223372036854775807",
            "1e308",
            r#"{"ToRegionId":"a"}"#,
        ]);
        prop_oneof![
            6 => read.prop_map(str::to_string),
            2 => "\"[a-zA-Z0-9 ._-]{0,12}\"",
            2 => (0u64..100_000).prop_map(|n| n.to_string()),
            1 => left.prop_map(str::to_string),
        ]
    }

    /// Member names of an item, the known ones often.
    fn name() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => prop::sample::select(vec![
                "ImagePipelineId", "Name", "Description", "BaseImage", "BuildContent",
                "SystemDiskSize", "InternetMaxBandwidthOut", "DeleteInstanceOnFailure",
                "CreationTime", "Tags", "ToRegionIds", "AddAccounts", "RegionId",
            ])
            .prop_map(str::to_string),
            1 => "[A-Za-z]{1,6}",
            1 => Just(r"Na\u006de".to_string()),
        ]
    }

    fn item() -> impl Strategy<Value = String> {
        (
            "\"ip-[a-z0-9]{1,6}\"",
            prop::collection::vec((name(), snippet()), 0..6),
        )
            .prop_map(|(id, members)| {
                let mut text = format!(r#"{{"ImagePipelineId":{id}"#);
                for (name, value) in members {
                    text.push_str(&format!(r#", "{name}": {value}"#));
                }
                text.push('}');
                text
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

        /// Whatever the scanner reads, serde reads alike; on a usual page it never gives up.
        #[test]
        fn the_scanner_reads_as_serde_or_gives_up(
            items in prop::collection::vec(item(), 0..4),
            cut in any::<prop::sample::Index>(),
            byte in prop::sample::select(b" ,:{}[]\"\\-0en".to_vec()),
            garble in 0u8..4,
        ) {
            let mut text = page(&items.join(","));
            // A quarter of the bodies get a byte taken out or put in somewhere.
            let at = cut.index(text.len());
            if text.is_char_boundary(at) {
                match garble {
                    0 => { text.remove(at); }
                    1 => text.insert(at, char::from(byte)),
                    _ => {}
                }
            }
            let (scan, visit) = both(&text);
            if let Some(scan) = scan {
                prop_assert_eq!(Some(scan), visit, "{}", text);
            }
        }

        /// Pages of usual items (texts with escapes, any known member in any order) are all
        /// read by the scanner.
        #[test]
        fn usual_pages_are_the_scanners(
            ids in prop::collection::vec("[a-z0-9]{1,8}", 0..5),
            text in any::<String>().prop_map(|t| format!("{t}\u{8}\u{c}\n\r\t\"\\/\u{0}\u{1f}é")),
            count in 0u32..100_000,
        ) {
            let items: Vec<String> = ids.iter().map(|id| {
                serde_json::json!({
                    "ImagePipelineId": format!("ip-{id}"),
                    "Name": text,
                    "BuildContent": text,
                    "SystemDiskSize": count,
                    "DeleteInstanceOnFailure": true,
                    "Tags": {"Tag": [{"TagKey": text, "TagValue": text}]},
                    // A list element that reads as a JSON array is the lenient decoder's.
                    "AddAccounts": {"AddAccount": [format!("account {text}")]},
                }).to_string()
            }).collect();
            let body = page(&items.join(","));
            // Lone surrogates cannot be in a `String`; escapes serde writes are the simple ones.
            prop_assert_eq!(reads_alike(&body).0.len(), ids.len());
        }
    }
}
