//! A page decoded straight from its bytes, without first building a `serde_json::Value` tree
//! of the whole body: the listing's main cost. Items in the shape the service normally sends
//! (strings, integers, booleans, wrapped lists) take this path; any item with an unusual shape
//! (a number where text belongs, a lone value for a list, a JSON array inside a string) is
//! parsed as a `Value` and decoded by [`crate::model::decode_item`], so both paths give the same
//! result for every input (a property test holds them to that).

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::known::{KnownLists, hash_bytes};
use crate::model::{ImagePipelineItem, PipelinePage, decode_item, decode_page_fields};
use crate::view::{ItemSink, ItemView, TagView};

/// The member holding the pipelines.
pub(crate) const LIST: &str = "ImagePipeline";

/// A body's top level, read in one pass: its small members as values, the pipeline list as
/// its raw text.
pub(crate) struct Top<'a> {
    /// Every member but the list (`RequestId`, `Code`, `NextToken`, ...).
    pub members: Map<String, Value>,
    /// The list member's text (the last one, as `Value` keeps it), if there is one.
    pub list: Option<&'a RawValue>,
    /// How many list members the body has (more than one only in a garbled body).
    pub lists: u32,
}

/// The shapes of the list member.
pub(crate) enum List<'a> {
    /// `null`, or an object whose `ImagePipelineSet` is missing, `null` or an array.
    Items(Vec<&'a RawValue>),
    /// An array or an object with an odd set: the lenient decoder reads the whole body.
    Odd,
    /// Text, a number or a boolean: no list at all.
    Scalar,
}

/// Parses the body's top level; `None` when it is not a JSON object. The members are read as
/// strictly as `serde_json::Value` reads them; the list's text only as far as finding its end
/// takes (see [`is_valid`]).
pub(crate) fn top_level(body: &[u8]) -> Option<Top<'_>> {
    serde_json::from_slice(body).ok()
}

/// The members of `body` and the hash of its list, when the list's text is one of `known`'s
/// (tried at the lengths known for the page at `index`), found without reading the list: the
/// text after the first `"ImagePipeline":` hashes to a known list of that length and is an
/// object (self-delimited), and the body with `null` in its place is an object whose one list
/// member is that `null`. The body is then that object with a list already read once, whole.
pub(crate) fn known_list(
    body: &[u8],
    known: &KnownLists,
    index: usize,
) -> Option<(Map<String, Value>, u64, usize)> {
    let key = format!("\"{LIST}\"");
    let mut at = memchr::memmem::find(body, key.as_bytes())? + key.len();
    at += whitespace(body.get(at..)?);
    if body.get(at) != Some(&b':') {
        return None;
    }
    let start = at + 1 + whitespace(body.get(at + 1..)?);
    for length in known.lengths_near(index) {
        let Some(text) = body.get(start..start + length) else {
            continue;
        };
        if text.first() != Some(&b'{') || text.last() != Some(&b'}') {
            continue;
        }
        let hash = hash_bytes(text);
        if !known.contains(hash) {
            continue;
        }
        let mut rest = Vec::with_capacity(body.len() - length + 4);
        rest.extend_from_slice(&body[..start]);
        rest.extend_from_slice(b"null");
        rest.extend_from_slice(&body[start + length..]);
        let top = top_level(&rest)?;
        let list = top.list?;
        let offset = (list.get().as_ptr() as usize).wrapping_sub(rest.as_ptr() as usize);
        return (top.lists == 1 && list.get() == "null" && offset == start).then_some((
            top.members,
            hash,
            length,
        ));
    }
    None
}

/// How many JSON whitespace bytes `bytes` starts with.
fn whitespace(bytes: &[u8]) -> usize {
    bytes
        .iter()
        .take_while(|b| matches!(b, b' ' | b'\t' | b'\n' | b'\r'))
        .count()
}

/// Whether `body` is a document `serde_json::Value` would read: the reference refuses the
/// others, and the passes here skip parts of the body without checking them as strictly.
pub(crate) fn is_valid(body: &[u8]) -> bool {
    serde_json::from_slice::<Validated>(body).is_ok()
}

/// The shape of a list member's text; `None` if it is not JSON (not expected once the body
/// [`is_valid`]).
pub(crate) fn list_of(raw: &RawValue) -> Option<List<'_>> {
    serde_json::from_str(raw.get()).ok()
}

/// The `Visitor` methods of every JSON scalar but `null`, each answering `$value` (the
/// visitors below care only whether a value is a scalar).
macro_rules! scalars_are {
    ($value:expr) => {
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok($value)
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<Self::Value, E> {
            Ok($value)
        }
    };
}

/// A JSON document walked the way `serde_json::Value` reads it, without building anything:
/// numbers parsed (one out of range fails), strings unescaped (a lone surrogate fails),
/// nesting limited. The faster passes skip what they do not need more leniently.
struct Validated;

impl<'de> Deserialize<'de> for Validated {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Validated;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Validated, E> {
                Ok(Validated)
            }
            scalars_are!(Validated);
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Validated, A::Error> {
                while seq.next_element::<Validated>()?.is_some() {}
                Ok(Validated)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Validated, A::Error> {
                while map.next_entry::<Validated, Validated>()?.is_some() {}
                Ok(Validated)
            }
        }
        d.deserialize_any(V)
    }
}

impl<'de> Deserialize<'de> for Top<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Top<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Top<'de>, A::Error> {
                let mut top = Top {
                    members: Map::new(),
                    list: None,
                    lists: 0,
                };
                while let Some(key) = map.next_key::<String>()? {
                    if key == LIST {
                        top.list = Some(map.next_value()?);
                        top.lists += 1;
                    } else {
                        let value = map.next_value()?;
                        top.members.insert(key, value);
                    }
                }
                Ok(top)
            }
        }
        d.deserialize_map(V)
    }
}

impl<'de> Deserialize<'de> for List<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = List<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("the pipeline list")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<List<'de>, A::Error> {
                let mut list = List::Items(Vec::new());
                while let Some(key) = next_key(&mut map)? {
                    if key == "ImagePipelineSet" {
                        list = match map.next_value::<Set<'de>>()? {
                            Set(Some(items)) => List::Items(items),
                            Set(None) => List::Odd,
                        };
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(list)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<List<'de>, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(List::Odd)
            }
            fn visit_unit<E: de::Error>(self) -> Result<List<'de>, E> {
                Ok(List::Items(Vec::new()))
            }
            scalars_are!(List::Scalar);
        }
        d.deserialize_any(V)
    }
}

/// `ImagePipelineSet`: each item's raw text when it is an array (`null` is an empty one);
/// `None` for any other shape.
struct Set<'a>(Option<Vec<&'a RawValue>>);

impl<'de> Deserialize<'de> for Set<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Set<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("the pipeline set")
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Set<'de>, A::Error> {
                let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0));
                while let Some(raw) = seq.next_element::<&'de RawValue>()? {
                    items.push(raw);
                }
                Ok(Set(Some(items)))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Set<'de>, E> {
                Ok(Set(Some(Vec::new())))
            }
            scalars_are!(Set(None));
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Set<'de>, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Set(None))
            }
        }
        d.deserialize_any(V)
    }
}

/// Decodes the page of a body already checked to be a page, from its `members` and its `list`;
/// an odd list shape is read from the whole `body` by the lenient decoder. `None` if a part
/// cannot be read as a value after all (not expected: the whole body [`is_valid`]).
pub(crate) fn decode_page(
    members: &Map<String, Value>,
    list: Option<List<'_>>,
    body: &[u8],
) -> Option<PipelinePage> {
    match list {
        Some(List::Odd) => {
            let value = serde_json::from_slice::<Value>(body).ok()?;
            Some(crate::model::decode_page(&value))
        }
        Some(List::Items(raws)) => {
            let mut page = decode_page_fields(members);
            page.items.reserve(raws.len());
            for raw in raws {
                match decode_raw_item(raw)? {
                    Some(item) => page.items.push(item),
                    None => page.skipped_items += 1,
                }
            }
            Some(page)
        }
        Some(List::Scalar) | None => Some(decode_page_fields(members)),
    }
}

/// One item (`Some(None)`: no usable ID, skipped): the direct path when its shape is the
/// usual one, else the lenient decoder; `None` when it cannot be read as a value at all.
fn decode_raw_item(raw: &RawValue) -> Option<Option<ImagePipelineItem>> {
    if raw.get().starts_with('{') {
        let mut slot = Slot::default();
        if read_item(raw.get(), &mut slot).is_ok() {
            if let Some(item) = slot.into_item() {
                return Some(Some(item));
            }
        }
    }
    let value = serde_json::from_str::<Value>(raw.get()).ok()?;
    Some(decode_item(&value))
}

/// Reads `text` (a body already found to be UTF-8) in one pass as strictly as
/// `serde_json::Value` reads it (members it does not use and nesting depth included): its
/// members other than the list as values, and the items of its list member given to `sink` as
/// views of the body. `None` when it is not a body with one list member in the usual shape (an
/// odd list or item, an item without a usable ID, two sets, not JSON): the sink has then been
/// told to drop what it was given, and the caller decodes the body the usual way, which reads
/// those or tells what is wrong. The hand-written scanner (`crate::scan`) reads a body first;
/// this pass when the scanner gives up.
pub(crate) fn visit_body_into(text: &str, sink: &mut dyn ItemSink) -> Option<Map<String, Value>> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    let read = de::DeserializeSeed::deserialize(BodySeed(&mut *sink), &mut deserializer)
        .and_then(|members| deserializer.end().map(|()| members));
    if read.is_err() {
        sink.drop_page();
    }
    read.ok()
}

/// The body: its members, its list member's items given to the sink.
struct BodySeed<'s>(&'s mut dyn ItemSink);

impl<'de> de::DeserializeSeed<'de> for BodySeed<'_> {
    type Value = Map<String, Value>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for BodySeed<'_> {
    type Value = Map<String, Value>;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut members = Map::new();
        let mut lists = 0;
        while let Some(key) = map.next_key::<String>()? {
            if key == LIST {
                // `Value` keeps the last of several; the usual path reads those.
                lists += 1;
                if lists > 1 {
                    return Err(de::Error::custom("two pipeline lists"));
                }
                map.next_value_seed(ListSeed(&mut *self.0))?;
            } else {
                let value = map.next_value()?;
                members.insert(key, value);
            }
        }
        if lists == 0 {
            return Err(de::Error::custom("no pipeline list"));
        }
        Ok(members)
    }
}

/// The list member, its items given to the sink.
struct ListSeed<'s>(&'s mut dyn ItemSink);

impl<'de> de::DeserializeSeed<'de> for ListSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

/// `ImagePipelineSet` (an array, or `null` for none), its items given to the sink.
struct SetSeed<'s>(&'s mut dyn ItemSink);

impl<'de> de::DeserializeSeed<'de> for SetSeed<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ListSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("the pipeline list in the usual shape")
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let mut sets = 0;
        while let Some(key) = next_key(&mut map)? {
            if key != "ImagePipelineSet" {
                map.next_value::<Validated>()?;
                continue;
            }
            // `Value` keeps the last of several; the usual path reads those.
            sets += 1;
            if sets > 1 {
                return Err(de::Error::custom("two pipeline sets"));
            }
            map.next_value_seed(SetSeed(&mut *self.0))?;
        }
        Ok(())
    }
}

impl<'de> Visitor<'de> for SetSeed<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array of pipelines in the usual shape")
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        // Every item is read into the same slot: its lists into the same few allocations.
        let mut slot = Slot::default();
        while seq.next_element_seed(ItemSeed(&mut slot))?.is_some() {
            let view = slot
                .view()
                .ok_or_else(|| de::Error::custom("an item in an unusual shape"))?;
            self.0.item(view);
        }
        Ok(())
    }
}

/// An item in the usual shape, read member by member into a view that the next item of the
/// page reuses. Every field is strictly typed: anything else fails this decoder and sends the
/// item to the lenient one. Members it does not use are read as strictly as `Value` reads
/// them.
#[derive(Default)]
pub(crate) struct Slot<'a> {
    /// The item's members as read so far (texts as [`text`] keeps them).
    pub view: ItemView<'a>,
    /// Whether the view's ID is a usable one.
    pub has_id: bool,
    /// A list element is a JSON array inside a string: the lenient decoder unpacks those.
    pub unpack: bool,
    /// The members seen, by their place that [`member`] gives: a second one sends the item to
    /// the lenient decoder, which keeps the last as `Value` does.
    pub seen: [bool; MEMBERS],
}

impl<'a> Slot<'a> {
    /// Empties the slot for the next item, keeping its lists' allocations.
    pub fn clear(&mut self) {
        let view = &mut self.view;
        let mut tags = std::mem::take(&mut view.tags);
        let mut to_region_ids = std::mem::take(&mut view.to_region_ids);
        let mut add_accounts = std::mem::take(&mut view.add_accounts);
        tags.clear();
        to_region_ids.clear();
        add_accounts.clear();
        *view = ItemView {
            tags,
            to_region_ids,
            add_accounts,
            ..ItemView::default()
        };
        self.has_id = false;
        self.unpack = false;
        self.seen = [false; MEMBERS];
    }

    /// Whether the item read can be taken as it is: not when it needs the lenient decoder (no
    /// usable ID, a list element that is a JSON array in a string).
    fn is_usual(&self) -> bool {
        self.has_id && !self.unpack
    }

    /// The item read, when [`Slot::is_usual`].
    pub fn view(&self) -> Option<&ItemView<'a>> {
        self.is_usual().then_some(&self.view)
    }

    /// [`Slot::view`], as an item of its own.
    fn into_item(self) -> Option<ImagePipelineItem> {
        self.is_usual().then(|| self.view.into_item())
    }
}

/// One item read from `text` (and nothing after it but whitespace) into `slot`.
fn read_item<'a>(text: &'a str, slot: &mut Slot<'a>) -> Result<(), serde_json::Error> {
    let mut deserializer = serde_json::Deserializer::from_str(text);
    de::DeserializeSeed::deserialize(ItemSeed(slot), &mut deserializer)?;
    deserializer.end()
}

/// A JSON string (only a string), borrowed from the body when it has no escapes.
struct BorrowedText<'a>(Cow<'a, str>);

impl<'de> Deserialize<'de> for BorrowedText<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = BorrowedText<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, s: &'de str) -> Result<Self::Value, E> {
                Ok(BorrowedText(Cow::Borrowed(s)))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                Ok(BorrowedText(Cow::Owned(s.to_string())))
            }
        }
        d.deserialize_str(V)
    }
}

/// The next key of an object, borrowed from the body when it has no escapes (serde's own
/// `Cow<str>` always copies).
fn next_key<'de, A: MapAccess<'de>>(map: &mut A) -> Result<Option<Cow<'de, str>>, A::Error> {
    Ok(map.next_key::<BorrowedText<'de>>()?.map(|k| k.0))
}

/// `null` or a string.
struct OptionalText<'a>(Option<Cow<'a, str>>);

impl<'de> Deserialize<'de> for OptionalText<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(OptionalText(
            Option::<BorrowedText<'de>>::deserialize(d)?.map(|t| t.0),
        ))
    }
}

/// Reads one item into the [`Slot`] given (emptied first).
struct ItemSeed<'s, 'de>(&'s mut Slot<'de>);

/// `Ok` the first time a member is seen, an error the second time (see [`Slot::seen`]).
fn first_time<E: de::Error>(seen: &mut bool) -> Result<(), E> {
    if std::mem::replace(seen, true) {
        return Err(E::custom("duplicate member"));
    }
    Ok(())
}

impl<'de> de::DeserializeSeed<'de> for ItemSeed<'_, 'de> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        self.0.clear();
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for ItemSeed<'_, 'de> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a pipeline object")
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Slot {
            view,
            has_id,
            unpack,
            seen,
        } = self.0;
        while let Some(key) = next_key(&mut map)? {
            let Some((place, member)) = member(&key, view) else {
                map.next_value::<Validated>()?;
                continue;
            };
            first_time(&mut seen[place])?;
            match member {
                Member::Id(id) => {
                    let read = text(map.next_value::<OptionalText>()?.0);
                    *has_id = read.is_some();
                    *id = read.unwrap_or_default();
                }
                Member::Text(field) => *field = text(map.next_value::<OptionalText>()?.0),
                Member::Number(field) => *field = map.next_value()?,
                Member::Flag(field) => *field = map.next_value()?,
                Member::Tags(inner, tags) => map.next_value_seed(WrappedSeed(inner, Tags(tags)))?,
                Member::Texts(inner, texts) => {
                    map.next_value_seed(WrappedSeed(inner, Texts(texts, &mut *unpack)))?
                }
            }
        }
        Ok(())
    }
}

/// How many members an item has that the direct readers keep (the size of [`Slot::seen`]).
const MEMBERS: usize = 20;

/// A member of an item that the direct readers keep: the field of the view it is read into.
pub(crate) enum Member<'v, 'a> {
    /// `ImagePipelineId`: a string or `null`.
    Id(&'v mut Cow<'a, str>),
    /// A text member: a string or `null`.
    Text(&'v mut Option<Cow<'a, str>>),
    /// A number member: an integer or `null`.
    Number(&'v mut Option<i64>),
    /// `DeleteInstanceOnFailure`: a boolean or `null`.
    Flag(&'v mut Option<bool>),
    /// `Tags`: tags wrapped in an object under the inner name given (`{"Tag": [...]}`), or
    /// `null`.
    Tags(&'static str, &'v mut Vec<TagView<'a>>),
    /// `ToRegionIds` or `AddAccounts`: texts wrapped in an object under the inner name given.
    Texts(&'static str, &'v mut Vec<Cow<'a, str>>),
}

/// The member named `key` of the item read into `view`, and its place in [`Slot::seen`];
/// `None` for a member no field keeps. Both direct readers (serde's pass and the scanner) take
/// their members from here.
pub(crate) fn member<'v, 'a>(
    key: &str,
    view: &'v mut ItemView<'a>,
) -> Option<(usize, Member<'v, 'a>)> {
    use Member::{Flag, Id, Number, Tags, Text, Texts};
    Some(match key {
        "ImagePipelineId" => (0, Id(&mut view.image_pipeline_id)),
        "Name" => (1, Text(&mut view.name)),
        "Description" => (2, Text(&mut view.description)),
        "BaseImage" => (3, Text(&mut view.base_image)),
        "BaseImageType" => (4, Text(&mut view.base_image_type)),
        "BuildContent" => (5, Text(&mut view.build_content)),
        "TestContent" => (6, Text(&mut view.test_content)),
        "RepairMode" => (7, Text(&mut view.repair_mode)),
        "ImageName" => (8, Text(&mut view.image_name)),
        "ImageFamily" => (9, Text(&mut view.image_family)),
        "InstanceType" => (10, Text(&mut view.instance_type)),
        "SystemDiskSize" => (11, Number(&mut view.system_disk_size)),
        "InternetMaxBandwidthOut" => (12, Number(&mut view.internet_max_bandwidth_out)),
        "VSwitchId" => (13, Text(&mut view.v_switch_id)),
        "DeleteInstanceOnFailure" => (14, Flag(&mut view.delete_instance_on_failure)),
        "ResourceGroupId" => (15, Text(&mut view.resource_group_id)),
        "CreationTime" => (16, Text(&mut view.creation_time)),
        "Tags" => (17, Tags("Tag", &mut view.tags)),
        "ToRegionIds" => (18, Texts("ToRegionId", &mut view.to_region_ids)),
        "AddAccounts" => (19, Texts("AddAccount", &mut view.add_accounts)),
        _ => return None,
    })
}

/// Text as the lenient decoder reads it: `""` and `"null"` are absent.
#[inline]
pub(crate) fn text(s: Option<Cow<'_, str>>) -> Option<Cow<'_, str>> {
    s.filter(|s| !s.is_empty() && s != "null")
}

/// The elements of a wrapped list, each read and kept as the lenient decoder would keep it.
trait Elements<'de> {
    /// Reads the next element; `false` at the end of the array.
    fn next<A: de::SeqAccess<'de>>(&mut self, seq: &mut A) -> Result<bool, A::Error>;
}

/// Text elements (a string or `null`): kept unless `""` or `"null"`; one that is a JSON array
/// inside a string sets the flag (the lenient decoder unpacks those).
struct Texts<'s, 'de>(&'s mut Vec<Cow<'de, str>>, &'s mut bool);

impl<'de> Elements<'de> for Texts<'_, 'de> {
    fn next<A: de::SeqAccess<'de>>(&mut self, seq: &mut A) -> Result<bool, A::Error> {
        let Some(element) = seq.next_element::<Option<BorrowedText<'de>>>()? else {
            return Ok(false);
        };
        if let Some(BorrowedText(t)) = element {
            if t != "null" && t.trim_start().starts_with('[') {
                *self.1 = true;
            } else if let Some(t) = text(Some(t)) {
                self.0.push(t);
            }
        }
        Ok(true)
    }
}

/// Tag elements (a tag object or `null`): kept when the key is a text.
struct Tags<'s, 'de>(&'s mut Vec<TagView<'de>>);

impl<'de> Elements<'de> for Tags<'_, 'de> {
    fn next<A: de::SeqAccess<'de>>(&mut self, seq: &mut A) -> Result<bool, A::Error> {
        let Some(element) = seq.next_element::<Option<FastTag<'de>>>()? else {
            return Ok(false);
        };
        if let Some(tag) = element {
            if let Some(key) = text(tag.key) {
                self.0.push(TagView {
                    key,
                    value: text(tag.value).unwrap_or_default(),
                });
            }
        }
        Ok(true)
    }
}

/// A `{TagKey, TagValue}` object (and only an object: serde would also read an array).
struct FastTag<'a> {
    key: Option<Cow<'a, str>>,
    value: Option<Cow<'a, str>>,
}

impl<'de> Deserialize<'de> for FastTag<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = FastTag<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a tag object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<FastTag<'de>, A::Error> {
                let (mut key, mut value) = (None, None);
                while let Some(k) = next_key(&mut map)? {
                    let slot = match k.as_ref() {
                        "TagKey" => &mut key,
                        "TagValue" => &mut value,
                        _ => {
                            map.next_value::<Validated>()?;
                            continue;
                        }
                    };
                    if slot.is_some() {
                        return Err(de::Error::custom("duplicate tag field"));
                    }
                    *slot = Some(map.next_value::<OptionalText>()?.0);
                }
                Ok(FastTag {
                    key: key.flatten(),
                    value: value.flatten(),
                })
            }
        }
        d.deserialize_map(V)
    }
}

/// A wrapped list member, `{Inner: [...]}` or `null` (no elements): only an object whose inner
/// member (named by the first field) is an array or `null`, once; its elements go to `E`.
struct WrappedSeed<E>(&'static str, E);

impl<'de, E: Elements<'de>> de::DeserializeSeed<'de> for WrappedSeed<E> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de, E: Elements<'de>> Visitor<'de> for WrappedSeed<E> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "an object with a {} list", self.0)
    }
    fn visit_none<Er: de::Error>(self) -> Result<(), Er> {
        Ok(())
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(WrappedObject(self.0, self.1))
    }
}

/// The object of a [`WrappedSeed`].
struct WrappedObject<E>(&'static str, E);

impl<'de, E: Elements<'de>> Visitor<'de> for WrappedObject<E> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "an object with a {} list", self.0)
    }
    fn visit_map<A: MapAccess<'de>>(mut self, mut map: A) -> Result<(), A::Error> {
        let mut seen = false;
        while let Some(k) = next_key(&mut map)? {
            if k != self.0 {
                map.next_value::<Validated>()?;
                continue;
            }
            if std::mem::replace(&mut seen, true) {
                return Err(de::Error::custom("duplicate list"));
            }
            map.next_value_seed(ElementsSeed(&mut self.1))?;
        }
        Ok(())
    }
}

/// The inner member of a wrapped list: an array (its elements to `E`) or `null`.
struct ElementsSeed<'e, E>(&'e mut E);

impl<'de, E: Elements<'de>> de::DeserializeSeed<'de> for ElementsSeed<'_, E> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_option(self)
    }
}

impl<'de, E: Elements<'de>> Visitor<'de> for ElementsSeed<'_, E> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("an array or null")
    }
    fn visit_none<Er: de::Error>(self) -> Result<(), Er> {
        Ok(())
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while self.0.next(&mut seq)? {}
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    // That both paths decode every readable body alike is a property in
    // tests/prop_decode.rs; these are the inputs found by review and the direct path itself.
    use serde_json::json;

    use std::borrow::Cow;

    use crate::model;
    use crate::transport::{decode_response, decode_response_into};
    use crate::view::{ItemSink, ItemView};

    /// The IDs a sink is given, and whether each ID and name was read in place (borrowed
    /// from the body, whose bytes are `self.1`).
    #[derive(Default)]
    struct Ids(Vec<(String, bool)>, std::ops::Range<usize>);

    impl ItemSink for Ids {
        fn item(&mut self, item: &ItemView<'_>) {
            let in_body = |t: &Cow<'_, str>| {
                matches!(t, Cow::Borrowed(_)) && self.1.contains(&(t.as_ptr() as usize))
            };
            let in_place =
                in_body(&item.image_pipeline_id) && item.name.as_ref().is_none_or(in_body);
            self.0.push((item.image_pipeline_id.to_string(), in_place));
        }
        fn drop_page(&mut self) {
            self.0.clear();
        }
    }

    fn range(body: &[u8]) -> std::ops::Range<usize> {
        body.as_ptr() as usize..body.as_ptr() as usize + body.len()
    }

    #[test]
    fn usual_pages_are_read_in_place_and_others_the_usual_way() {
        let usual = br#"{"RequestId":"r","ImagePipeline":{"Other":[1,{"a":null}],"ImagePipelineSet":[
            {"ImagePipelineId":"ip-a","Name":"n","X":{"y":[1.5,"\u00e9"]},"Tags":{"Tag":[{"TagKey":"k"}]}},
            {"ImagePipelineId":"ip-b","Name":"esc\u0061ped"}]}}"#;
        let mut sink = Ids(Vec::new(), range(usual));
        let page = decode_response_into(200, usual, &mut sink).unwrap();
        assert!(page.items.is_empty());
        assert_eq!(page.request_id.as_deref(), Some("r"));
        assert_eq!(
            sink.0,
            [("ip-a".to_string(), true), ("ip-b".to_string(), false)]
        );
        // An item without an ID, a number for a text, a lone item for the set: all read by the
        // lenient decoder, their items copied.
        for odd in [
            r#"{"RequestId":"r","ImagePipeline":{"ImagePipelineSet":[{"ImagePipelineId":"ip-a"},{"Name":"x"}]}}"#,
            r#"{"RequestId":"r","ImagePipeline":{"ImagePipelineSet":[{"ImagePipelineId":"ip-a","Name":7}]}}"#,
            r#"{"RequestId":"r","ImagePipeline":{"ImagePipelineSet":{"ImagePipelineId":"ip-a"}}}"#,
        ] {
            let mut sink = Ids(Vec::new(), range(odd.as_bytes()));
            let page = decode_response_into(200, odd.as_bytes(), &mut sink).unwrap();
            let expected = decode_response(200, odd.as_bytes()).unwrap();
            assert_eq!(page.skipped_items, expected.skipped_items, "{odd}");
            assert_eq!(sink.0, [("ip-a".to_string(), false)], "{odd}");
        }
    }

    #[test]
    fn a_body_the_reference_cannot_read_is_refused_wherever_the_odd_part_is() {
        for body in [
            r#"{"RequestId":"r","NextToken":"t","ImagePipeline":[1e400]}"#,
            r#"{"RequestId":"r","ImagePipeline":["\ud800"]}"#,
            r#"{"RequestId":"r","ImagePipeline":{"ImagePipelineSet":[{"ImagePipelineId":"ip-a","X":1e400}]}}"#,
            r#"{"RequestId":"r","ImagePipeline":{"ImagePipelineSet":[{"ImagePipelineId":"ip-a","SystemDiskSize":1e400}]}}"#,
            r#"{"RequestId":"r","ImagePipeline":{"ImagePipelineSet":[{"ImagePipelineId":"ip-a","Name":"\ud800"}]}}"#,
            r#"{"RequestId":"r","ImagePipeline":[1e400],"ImagePipeline":{}}"#,
            r#"{"RequestId":"r","Other":{"x":-1e999},"ImagePipeline":{}}"#,
        ] {
            assert!(serde_json::from_str::<serde_json::Value>(body).is_err());
            assert!(decode_response(200, body.as_bytes()).is_err(), "{body}");
            let mut sink = Ids::default();
            assert!(
                decode_response_into(200, body.as_bytes(), &mut sink).is_err(),
                "{body}"
            );
            assert!(sink.0.is_empty());
        }
        // Bytes that are not UTF-8, in an item's text, in a member the items do not use, and
        // in an item after a good one: nothing is given and the reference's error comes.
        for (before, after) in [
            (
                r#"{"RequestId":"r","ImagePipeline":{"ImagePipelineSet":[{"ImagePipelineId":"ip-a","Name":"n"#,
                r#"x"}]}}"#,
            ),
            (r#"{"RequestId":"r","Other":"x"#, r#"","ImagePipeline":{}}"#),
            (
                r#"{"RequestId":"r","ImagePipeline":{"ImagePipelineSet":[{"ImagePipelineId":"ip-a"},{"ImagePipelineId":"ip-"#,
                r#"x"}]}}"#,
            ),
        ] {
            let body = [before.as_bytes(), &[0xff, 0xfe], after.as_bytes()].concat();
            let expected = decode_response(200, &body).unwrap_err();
            let mut sink = Ids::default();
            let error = decode_response_into(200, &body, &mut sink).unwrap_err();
            assert_eq!(error.to_string(), expected.to_string(), "{before}");
            assert!(sink.0.is_empty());
        }
        let deep = format!(
            r#"{{"RequestId":"r","ImagePipeline":{}{}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        );
        assert!(decode_response(200, deep.as_bytes()).is_err());
    }

    /// Every item a sink is given, copied.
    #[derive(Default)]
    struct Items(Vec<model::ImagePipelineItem>);

    impl ItemSink for Items {
        fn item(&mut self, item: &ItemView<'_>) {
            self.0.push(item.clone().into_item());
        }
        fn drop_page(&mut self) {
            self.0.clear();
        }
    }

    #[test]
    fn odd_lists_read_alike_on_every_path_and_nothing_leaks_into_the_next_item() {
        for item in [
            r#"{"ImagePipelineId":"ip-a","Tags":null,"ToRegionIds":{"ToRegionId":null},"AddAccounts":{}}"#,
            r#"{"ImagePipelineId":"ip-a","ToRegionIds":{"ToRegionId":["","null",null,"cn-a"]}}"#,
            r#"{"ImagePipelineId":"ip-a","ToRegionIds":{"ToRegionId":["cn-a"," [\"cn-b\"]"]}}"#,
            r#"{"ImagePipelineId":"ip-a","AddAccounts":{"AddAccount":["[]"]},"Tags":{"Tag":[{"TagKey":"k"}]}}"#,
            r#"{"ImagePipelineId":"ip-a","Tags":{"Tag":[null,{"TagValue":"v"},{"TagKey":"k"},{"TagKey":"","TagValue":"x"},{"TagKey":"k2","TagValue":null}]}}"#,
            r#"{"ImagePipelineId":"ip-a","Tags":{"Tag":[]},"Tags":{"Tag":[{"TagKey":"k"}]}}"#,
            r#"{"ImagePipelineId":"ip-a","ToRegionIds":{"ToRegionId":["a"],"ToRegionId":["b"]}}"#,
            r#"{"ImagePipelineId":"ip-a","ToRegionIds":{"ToRegionId":"a"}}"#,
            r#"{"ImagePipelineId":"ip-a","ToRegionIds":{"ToRegionId":[1]}}"#,
            r#"{"ImagePipelineId":"ip-a","ToRegionIds":["a"]}"#,
            r#"{"ImagePipelineId":"ip-a","Tags":{"Tag":{"TagKey":"k"}}}"#,
            r#"{"ImagePipelineId":"ip-a","AddAccounts":{"AddAccount":["1"],"Other":[{"x":1}]}}"#,
            r#"{"Name":"no id","Tags":{"Tag":[{"TagKey":"k"}]},"ToRegionIds":{"ToRegionId":["cn-a"]}}"#,
        ] {
            // The items after the odd one have lists of their own, or none.
            let body = format!(
                r#"{{"RequestId":"r","ImagePipeline":{{"ImagePipelineSet":[{item},{{"ImagePipelineId":"ip-x","Name":"x","SystemDiskSize":5,"DeleteInstanceOnFailure":true,"Tags":{{"Tag":[{{"TagKey":"x"}}]}}}},{{"ImagePipelineId":"ip-y"}},{{"ImagePipelineId":"ip-z","Tags":{{"Tag":[{{"TagKey":"z"}}]}},"AddAccounts":{{"AddAccount":["9"]}}}}]}}}}"#
            );
            let reference = model::decode_page(&serde_json::from_str(&body).unwrap());
            let page = decode_response(200, body.as_bytes()).unwrap();
            assert_eq!(page, reference, "{item}");
            let mut sink = Items::default();
            let streamed = decode_response_into(200, body.as_bytes(), &mut sink).unwrap();
            assert_eq!(sink.0, reference.items, "{item}");
            assert_eq!(streamed.skipped_items, reference.skipped_items, "{item}");
            let last = reference.items.last().unwrap();
            assert_eq!((last.tags.len(), last.add_accounts.len()), (1, 1));
            let bare = model::ImagePipelineItem {
                image_pipeline_id: "ip-y".into(),
                ..Default::default()
            };
            assert!(sink.0.contains(&bare), "{item}");
        }
    }

    #[test]
    fn duplicate_members_keep_the_last_one_as_the_reference_does() {
        let body = br#"{"RequestId":"r","ImagePipeline":{"ImagePipelineSet":[
            {"ImagePipelineId":"ip-a","Name":"first","Name":"second",
             "Tags":{"Tag":[{"TagKey":"k","TagKey":"k2","TagValue":"v"}]}}]}}"#;
        let page = decode_response(200, body).unwrap();
        let reference = model::decode_page(&serde_json::from_slice(body).unwrap());
        assert_eq!(page, reference);
        assert_eq!(page.items[0].name.as_deref(), Some("second"));
        assert_eq!(page.items[0].tags[0].key, "k2");
    }

    #[test]
    fn a_known_list_is_told_by_its_place_and_text_and_never_by_a_look_alike() {
        use crate::known::{KnownLists, list_hash};
        let list = r#"{"ImagePipelineSet":[{"ImagePipelineId":"ip-a"}]}"#;
        let known = KnownLists::new([(list_hash(list), list.len())]);
        let found = |body: &str| super::known_list(body.as_bytes(), &known, 0);
        let body = format!(r#"{{"RequestId":"R","ImagePipeline": {list},"NextToken":"t"}}"#);
        let (members, hash, length) = found(&body).expect("known");
        assert_eq!((hash, length), (list_hash(list), list.len()));
        assert_eq!(members["NextToken"], "t");
        assert!(!members.contains_key("ImagePipeline"));
        for body in [
            // Not at the known length: the list goes on.
            format!(
                r#"{{"RequestId":"R","ImagePipeline":{{"X":1,{}}}"#,
                &list[1..]
            ),
            // The key inside a string first: the place found is not the member's.
            format!(r#"{{"Message":"\"ImagePipeline\":{list}","ImagePipeline":{list}}}"#),
            // Two list members.
            format!(r#"{{"ImagePipeline":{list},"ImagePipeline":{list}}}"#),
            // Another member the reference cannot read.
            format!(r#"{{"ImagePipeline":{list},"X":1e400}}"#),
            // Not an object around it.
            format!(r#"["ImagePipeline",{list}]"#),
            // Another text of the same length.
            format!(r#"{{"ImagePipeline":{}}}"#, list.replace("ip-a", "ip-b")),
        ] {
            assert!(found(&body).is_none(), "{body}");
        }
    }

    #[test]
    fn the_usual_shape_takes_the_direct_path() {
        let raw = serde_json::value::RawValue::from_string(
            json!({"ImagePipelineId": "ip-a", "Name": "n", "SystemDiskSize": 40,
                   "Tags": {"Tag": [{"TagKey": "k", "TagValue": "v"}]},
                   "ToRegionIds": {"ToRegionId": ["cn-a"]}, "AddAccounts": {"AddAccount": []}})
            .to_string(),
        )
        .unwrap();
        let mut slot = super::Slot::default();
        super::read_item(raw.get(), &mut slot).unwrap();
        let item = slot.into_item().unwrap();
        assert_eq!(item.system_disk_size, Some(40));
        assert_eq!(item.to_region_ids, ["cn-a"]);
    }
}
