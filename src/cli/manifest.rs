//! The manifest of one listed pipeline printed straight from the API item: the text
//! `serde_json::to_string_pretty` (JSON) or [`super::yaml::write_document`] (YAML) would print
//! for the `ImagePipeline` the controller builds from it, without building that object or a
//! `serde_json::Value` of it (most of an export's CPU went there; BENCHMARKS.md, "export").
//! A property test holds both printers to the serde path for any item.

use std::borrow::Cow;

use super::text::{append, append_json_clean, int};
use crate::crd::ImagePipeline;
use crate::ecs::{ItemView, TagView};

/// What every manifest of one export shares besides its item.
#[derive(Debug, Clone, Copy)]
pub struct Mirroring<'a> {
    /// The listed region (`spec.regionId`).
    pub region_id: &'a str,
    /// The namespace written into `metadata.namespace`.
    pub namespace: &'a str,
    /// `spec.lastSyncTime`.
    pub last_sync_time: &'a str,
}

/// A value of the spec, as both printers see it.
#[derive(Clone, Copy)]
enum Field<'a> {
    Text(&'a str),
    Int(i64),
    Bool(bool),
    Texts(&'a [Cow<'a, str>]),
    Tags(&'a [TagView<'a>]),
    /// A text of the [`Mirroring`], printed once per printer ([`Mirrored`]).
    Mirrored(usize),
}

/// The places of the [`Mirroring`]'s texts in a [`Mirrored`].
const REGION_ID: usize = 0;
const NAMESPACE: usize = 1;
const LAST_SYNC_TIME: usize = 2;

/// The texts of one [`Mirroring`] and each of them printed, in JSON and in YAML: every
/// manifest of an export has the same ones.
#[derive(Debug, Clone)]
struct Mirrored {
    texts: [String; 3],
    json: [Vec<u8>; 3],
    yaml: [Vec<u8>; 3],
}

impl Mirrored {
    fn new(m: &Mirroring<'_>) -> Self {
        let texts = [m.region_id, m.namespace, m.last_sync_time];
        Self {
            texts: texts.map(str::to_string),
            json: texts.map(|t| {
                let mut out = Vec::new();
                json_str(&mut out, t);
                out
            }),
            // Each at the indentation of a spec member's value (and of `metadata.namespace`).
            yaml: texts.map(|t| {
                let mut out = Vec::new();
                super::yaml::text_into(&mut out, t, 4);
                out
            }),
        }
    }

    fn is_of(&self, m: &Mirroring<'_>) -> bool {
        let [region_id, namespace, last_sync_time] = &self.texts;
        region_id == m.region_id && namespace == m.namespace && last_sync_time == m.last_sync_time
    }
}

/// How many members the spec has.
const SPEC_FIELDS: usize = 22;

/// The spec's members in the order of `ImagePipelineSpec` (how JSON prints them), `None` where
/// the object leaves a member out.
fn spec_fields<'a>(item: &'a ItemView<'a>) -> [(&'static str, Option<Field<'a>>); SPEC_FIELDS] {
    let text = |v: &'a Option<Cow<'a, str>>| v.as_deref().map(Field::Text);
    let texts = |v: &'a [Cow<'a, str>]| (!v.is_empty()).then_some(Field::Texts(v));
    [
        (
            "imagePipelineId",
            Some(Field::Text(&item.image_pipeline_id)),
        ),
        ("regionId", Some(Field::Mirrored(REGION_ID))),
        ("name", text(&item.name)),
        ("description", text(&item.description)),
        ("baseImage", text(&item.base_image)),
        ("baseImageType", text(&item.base_image_type)),
        ("buildContent", text(&item.build_content)),
        ("testContent", text(&item.test_content)),
        ("repairMode", text(&item.repair_mode)),
        ("imageName", text(&item.image_name)),
        ("imageFamily", text(&item.image_family)),
        ("instanceType", text(&item.instance_type)),
        ("systemDiskSize", item.system_disk_size.map(Field::Int)),
        (
            "internetMaxBandwidthOut",
            item.internet_max_bandwidth_out.map(Field::Int),
        ),
        ("vSwitchId", text(&item.v_switch_id)),
        (
            "deleteInstanceOnFailure",
            item.delete_instance_on_failure.map(Field::Bool),
        ),
        ("resourceGroupId", text(&item.resource_group_id)),
        ("creationTime", text(&item.creation_time)),
        (
            "tags",
            (!item.tags.is_empty()).then_some(Field::Tags(&item.tags)),
        ),
        ("toRegionIds", texts(&item.to_region_ids)),
        ("addAccounts", texts(&item.add_accounts)),
        ("lastSyncTime", Some(Field::Mirrored(LAST_SYNC_TIME))),
    ]
}

/// [`spec_fields`]' indices in the order of their keys (how YAML prints them, as
/// `serde_json::Value` sorts an object's keys).
const SORTED: [usize; SPEC_FIELDS] = [
    20, // addAccounts
    4,  // baseImage
    5,  // baseImageType
    6,  // buildContent
    17, // creationTime
    15, // deleteInstanceOnFailure
    3,  // description
    10, // imageFamily
    9,  // imageName
    0,  // imagePipelineId
    11, // instanceType
    13, // internetMaxBandwidthOut
    21, // lastSyncTime
    2,  // name
    1,  // regionId
    8,  // repairMode
    16, // resourceGroupId
    12, // systemDiskSize
    18, // tags
    7,  // testContent
    19, // toRegionIds
    14, // vSwitchId
];

/// The `apiVersion` of the objects.
fn api_version() -> String {
    format!(
        "{}/{}",
        <ImagePipeline as kube::Resource>::group(&()),
        <ImagePipeline as kube::Resource>::version(&())
    )
}

/// Prints manifests of items, reusing what every manifest shares: the text between the
/// values is worked out once, so each member costs one copy of its prefix and one of its
/// value, and the [`Mirroring`]'s values are printed once while it stays the same.
#[derive(Debug, Clone)]
pub struct Printer {
    /// The last mirroring printed with, printed.
    mirrored: Mirrored,
    /// From the start of a YAML document to the value of `metadata.name`.
    yaml_head: Vec<u8>,
    /// Each spec member's `  key: ` in YAML, in the order of [`spec_fields`].
    yaml_keys: [Vec<u8>; SPEC_FIELDS],
    /// From `{` to the value of `metadata.name`.
    json_head: Vec<u8>,
    /// Between `metadata.name` and `metadata.namespace`.
    json_namespace: Vec<u8>,
    /// Between `metadata.namespace` and the first member of `spec`.
    json_spec: Vec<u8>,
    /// Each spec member's `,\n    "key": `, in the order of [`spec_fields`] (the first member
    /// of the spec goes without the comma).
    json_keys: [Vec<u8>; SPEC_FIELDS],
    /// A line break and the indentation of a list element (and of a tag's closing `}`).
    json_element: Vec<u8>,
    /// A line break and the indentation of a tag's members.
    json_tag_member: Vec<u8>,
    /// A line break and the indentation of a list's closing `]`.
    json_list_end: Vec<u8>,
    /// After the last spec member.
    json_tail: Vec<u8>,
}

impl Default for Printer {
    /// A printer of JSON objects that are items of a `List` (indented by 4).
    fn default() -> Self {
        Self::new(4)
    }
}

/// A line break and `spaces` spaces.
fn line(spaces: usize) -> Vec<u8> {
    let mut text = vec![b'\n'];
    text.resize(1 + spaces, b' ');
    text
}

impl Printer {
    /// A printer whose JSON lines after the first are indented by `json_indent` spaces more
    /// (the first line's own indentation is the caller's).
    pub fn new(json_indent: usize) -> Self {
        let api_version = api_version();
        let mut yaml_head = b"apiVersion: ".to_vec();
        super::yaml::text_into(&mut yaml_head, &api_version, 2);
        yaml_head.extend_from_slice(b"\nkind: ImagePipeline\nmetadata:\n  name: ");
        let at = |depth: usize| line(json_indent + 2 * depth);
        let cat = |parts: &[&[u8]]| parts.concat();
        let mut head = cat(&[b"{", &at(1), b"\"apiVersion\": "]);
        json_str(&mut head, &api_version);
        head.extend(cat(&[
            b",",
            &at(1),
            b"\"kind\": \"ImagePipeline\",",
            &at(1),
            b"\"metadata\": {",
            &at(2),
            b"\"name\": ",
        ]));
        let empty = ItemView::default();
        let fields = spec_fields(&empty);
        let keys = fields.map(|(key, _)| cat(&[b",", &at(2), b"\"", key.as_bytes(), b"\": "]));
        Self {
            mirrored: Mirrored::new(&Mirroring {
                region_id: "",
                namespace: "",
                last_sync_time: "",
            }),
            yaml_head,
            yaml_keys: fields.map(|(key, _)| cat(&[b"  ", key.as_bytes(), b": "])),
            json_head: head,
            json_namespace: cat(&[b",", &at(2), b"\"namespace\": "]),
            json_spec: cat(&[&at(1), b"},", &at(1), b"\"spec\": {"]),
            json_keys: keys,
            json_element: at(3),
            json_tag_member: at(4),
            json_list_end: at(2),
            json_tail: cat(&[&at(1), b"}", &at(0), b"}"]),
        }
    }

    /// Appends the item's object as `to_string_pretty` prints it, its lines after the first
    /// indented as [`Printer::new`] says, without a final line break.
    pub fn json(&mut self, out: &mut Vec<u8>, item: &ItemView<'_>, m: &Mirroring<'_>) {
        self.print_mirroring(m);
        let mirrored = &self.mirrored.json;
        append(out, &self.json_head);
        json_str(out, &item.image_pipeline_id);
        append(out, &self.json_namespace);
        append(out, &mirrored[NAMESPACE]);
        append(out, &self.json_spec);
        let mut first = true;
        for ((_, field), prefix) in spec_fields(item).into_iter().zip(&self.json_keys) {
            let Some(field) = field else { continue };
            // The first member has no comma before it.
            append(out, &prefix[usize::from(first)..]);
            first = false;
            match field {
                Field::Text(s) => json_str(out, s),
                Field::Int(n) => {
                    int(out, n);
                }
                Field::Bool(b) => append(out, if b { b"true" } else { b"false" }),
                Field::Mirrored(text) => append(out, &mirrored[text]),
                Field::Texts(list) => self.json_list(out, list, |out, s| json_str(out, s)),
                Field::Tags(tags) => self.json_list(out, tags, |out, tag| {
                    out.push(b'{');
                    append(out, &self.json_tag_member);
                    append(out, b"\"tagKey\": ");
                    json_str(out, &tag.key);
                    out.push(b',');
                    append(out, &self.json_tag_member);
                    append(out, b"\"tagValue\": ");
                    json_str(out, &tag.value);
                    append(out, &self.json_element);
                    out.push(b'}');
                }),
            }
        }
        append(out, &self.json_tail);
    }

    /// Appends a spec member's list: each element on its own line, printed by `element`.
    fn json_list<T>(&self, out: &mut Vec<u8>, elements: &[T], element: impl Fn(&mut Vec<u8>, &T)) {
        out.push(b'[');
        for (i, e) in elements.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            append(out, &self.json_element);
            element(out, e);
        }
        append(out, &self.json_list_end);
        out.push(b']');
    }

    /// Appends the item's object as one YAML document body (no `---`), ending with a line
    /// break.
    pub fn yaml(&mut self, out: &mut Vec<u8>, item: &ItemView<'_>, m: &Mirroring<'_>) {
        use super::yaml::text_into as write_text;
        self.print_mirroring(m);
        let mirrored = &self.mirrored.yaml;
        append(out, &self.yaml_head);
        write_text(out, &item.image_pipeline_id, 4);
        append(out, b"\n  namespace: ");
        append(out, &mirrored[NAMESPACE]);
        append(out, b"\nspec:\n");
        let fields = spec_fields(item);
        for index in SORTED {
            let Some(field) = fields[index].1 else {
                continue;
            };
            // `  key: `, the space left out before a list.
            let key = &self.yaml_keys[index];
            match field {
                Field::Text(s) => {
                    append(out, key);
                    write_text(out, s, 4);
                }
                Field::Int(n) => {
                    append(out, key);
                    int(out, n);
                }
                Field::Bool(b) => {
                    append(out, key);
                    append(out, if b { b"true" } else { b"false" });
                }
                Field::Mirrored(text) => {
                    append(out, key);
                    append(out, &mirrored[text]);
                }
                Field::Texts(list) => {
                    append(out, &key[..key.len() - 1]);
                    for s in list {
                        append(out, b"\n  - ");
                        write_text(out, s, 4);
                    }
                }
                Field::Tags(tags) => {
                    append(out, &key[..key.len() - 1]);
                    for tag in tags {
                        append(out, b"\n  - tagKey: ");
                        write_text(out, &tag.key, 6);
                        append(out, b"\n    tagValue: ");
                        write_text(out, &tag.value, 6);
                    }
                }
            }
            out.push(b'\n');
        }
    }

    /// Prints the texts of `m`, unless they are those printed last.
    fn print_mirroring(&mut self, m: &Mirroring<'_>) {
        if !self.mirrored.is_of(m) {
            self.mirrored = Mirrored::new(m);
        }
    }
}

/// A JSON string as `serde_json` writes it: `"`, `\` and control characters escaped, the rest
/// as it is.
fn json_str(out: &mut Vec<u8>, s: &str) {
    let start = out.len();
    out.push(b'"');
    if append_json_clean(out, s.as_bytes()) {
        out.push(b'"');
    } else {
        out.truncate(start);
        // Writing a `str` into a `Vec` cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;
    use crate::crd::pipeline::mirror_owned_item;
    use crate::ecs::ImagePipelineItem;
    use crate::ecs::model::PipelineTag;

    #[test]
    fn the_yaml_order_is_the_keys_sorted() {
        let item = ItemView::default();
        let keys: Vec<&str> = spec_fields(&item).iter().map(|(k, _)| *k).collect();
        let sorted: Vec<&str> = SORTED.iter().map(|&i| keys[i]).collect();
        let mut expected = keys.clone();
        expected.sort_unstable();
        assert_eq!(sorted, expected);
    }

    /// Text with what makes printers differ: escapes, line breaks, YAML keywords and
    /// indicators, numbers, non-ASCII.
    fn text() -> impl Strategy<Value = String> {
        prop_oneof![
            "[a-z][a-z0-9-]{0,12}",
            Just("yes".to_string()),
            Just("null".to_string()),
            Just("0755".to_string()),
            Just("RUN a\nRUN b".to_string()),
            Just(" lead\n trail ".to_string()),
            Just("tab\there \"q\" back\\slash".to_string()),
            Just("- item: x # c".to_string()),
            Just("中文\u{1}\u{7f}\u{2028}".to_string()),
            ".{0,20}",
        ]
    }

    prop_compose! {
        fn item()(
            id in "ip-[a-z0-9]{1,20}",
            texts in proptest::collection::vec(proptest::option::of(text()), 15),
            ints in (proptest::option::of(any::<i64>()), proptest::option::of(any::<i64>())),
            flag in proptest::option::of(any::<bool>()),
            tags in proptest::collection::vec((text(), text()), 0..3),
            to in proptest::collection::vec(text(), 0..3),
            add in proptest::collection::vec(text(), 0..3),
        ) -> ImagePipelineItem {
            let mut t = texts.into_iter();
            let mut next = || t.next().flatten();
            ImagePipelineItem {
                image_pipeline_id: id,
                name: next(),
                description: next(),
                base_image: next(),
                base_image_type: next(),
                build_content: next(),
                test_content: next(),
                repair_mode: next(),
                image_name: next(),
                image_family: next(),
                instance_type: next(),
                system_disk_size: ints.0,
                internet_max_bandwidth_out: ints.1,
                v_switch_id: next(),
                delete_instance_on_failure: flag,
                resource_group_id: next(),
                creation_time: next(),
                tags: tags.into_iter().map(|(key, value)| PipelineTag { key, value }).collect(),
                to_region_ids: to,
                add_accounts: add,
            }
        }
    }

    proptest! {
        #[test]
        fn both_printers_print_what_serde_prints_for_the_object(
            item in item(),
            mirrorings in proptest::collection::vec((text(), text(), text()), 1..4),
            indent in 0usize..6,
        ) {
            // One printer for every mirroring in turn: what it printed for one is never
            // reused for another.
            let mut printer = Printer::new(indent);
            for (region_id, namespace, last_sync_time) in &mirrorings {
                let m = Mirroring { region_id, namespace, last_sync_time };
                let obj = mirror_owned_item(item.clone(), m.region_id, m.namespace, m.last_sync_time)
                    .expect("the IDs generated are object names");

                let mut json = Vec::new();
                printer.json(&mut json, &item.view(), &m);
                let pad = format!("\n{}", " ".repeat(indent));
                let expected = serde_json::to_string_pretty(&obj).unwrap().replace('\n', &pad);
                prop_assert_eq!(String::from_utf8(json).unwrap(), expected);

                let mut yaml = Vec::new();
                printer.yaml(&mut yaml, &item.view(), &m);
                let mut expected = Vec::new();
                super::super::yaml::write_document(&mut expected, &serde_json::to_value(&obj).unwrap()).unwrap();
                prop_assert_eq!(String::from_utf8(yaml).unwrap(), String::from_utf8(expected).unwrap());
            }
        }
    }
}
