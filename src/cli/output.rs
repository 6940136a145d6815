//! Rendering mirrored objects the way `kubectl` prints them.

use std::fmt::Write as _;

use jiff::Timestamp;

use super::manifest::{Mirroring, Printer};
use crate::crd::ImagePipeline;
use crate::ecs::ItemView;

/// Output formats of `export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A multi-document YAML stream, one document per object.
    Yaml,
    /// A `v1` `List`, as `kubectl get -o json` prints it.
    Json,
}

/// Why rendering failed: serialization of our own types (not expected in practice) or the
/// output could not be written (a closed pipe, a full disk).
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// JSON serialization failed.
    #[error("rendering JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// Writing the output failed.
    #[error("writing the output: {0}")]
    Io(#[from] std::io::Error),
}

/// Writes objects one at a time as they become available, so printing N objects holds one
/// object's text, not N: a YAML stream gets one document per object, a JSON `List` is opened
/// before the first item and closed by [`ManifestWriter::finish`], byte for byte what
/// `serde_json::to_string_pretty` prints for the whole list (each object's fields in the
/// order of its type, as the API server returns them).
pub struct ManifestWriter<W: std::io::Write> {
    out: W,
    format: Format,
    written: usize,
    /// One object's text, reused: small writes into a `Vec` are far cheaper than into `out`.
    scratch: Vec<u8>,
    /// Prints an API item's object without building it.
    printer: Printer,
}

/// The JSON `List`'s fields after `items`, as `to_string_pretty` prints them (keys sorted).
const JSON_LIST_TAIL: &str =
    "  \"kind\": \"List\",\n  \"metadata\": {\n    \"resourceVersion\": \"\"\n  }\n}\n";

/// How deep a `List`'s items sit.
const ITEM_INDENT: &[u8] = b"    ";

impl<W: std::io::Write> ManifestWriter<W> {
    /// A writer of `format` into `out`; nothing is written until the first object (YAML) or
    /// the list's opening (JSON) is.
    pub fn new(out: W, format: Format) -> Self {
        Self {
            out,
            format,
            written: 0,
            scratch: Vec::new(),
            printer: Printer::default(),
        }
    }

    /// The format it writes.
    pub fn format(&self) -> Format {
        self.format
    }

    /// Writes one object.
    pub fn write(&mut self, obj: &ImagePipeline) -> Result<(), RenderError> {
        match self.format {
            Format::Yaml => {
                self.scratch.clear();
                self.scratch.extend_from_slice(b"---\n");
                super::yaml::write_document(&mut self.scratch, &serde_json::to_value(obj)?)?;
                self.out.write_all(&self.scratch)?;
            }
            Format::Json => {
                self.scratch.clear();
                serde_json::to_writer_pretty(&mut self.scratch, obj)?;
                self.out.write_all(item_opening(self.written))?;
                // JSON strings escape their line breaks: every `\n` here is structure.
                for (i, line) in self.scratch.split(|b| *b == b'\n').enumerate() {
                    if i > 0 {
                        self.out.write_all(b"\n")?;
                    }
                    self.out.write_all(ITEM_INDENT)?;
                    self.out.write_all(line)?;
                }
            }
        }
        self.written += 1;
        Ok(())
    }

    /// The writer the text goes to.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.out
    }

    /// Forgets the objects written after the first `written` of them, whose text the caller
    /// has taken back from the writer.
    pub fn rewind_to(&mut self, written: usize) {
        self.written = self.written.min(written);
    }

    /// Objects written so far.
    pub fn written(&self) -> usize {
        self.written
    }

    /// Closes the JSON `List` (an empty one if nothing was written), flushes, and returns the
    /// inner writer.
    pub fn finish(mut self) -> Result<W, RenderError> {
        if self.format == Format::Json {
            let closing: &[u8] = if self.written == 0 {
                b"{\n  \"apiVersion\": \"v1\",\n  \"items\": [],\n"
            } else {
                b"\n  ],\n"
            };
            self.out.write_all(closing)?;
            self.out.write_all(JSON_LIST_TAIL.as_bytes())?;
        }
        self.out.flush()?;
        Ok(self.out)
    }
}

impl ManifestWriter<Vec<u8>> {
    /// Appends the object mirroring `item`: the same text as [`ManifestWriter::write`] of the
    /// object the controller builds from it, printed straight from the item into the text so
    /// far.
    pub fn append_item(&mut self, item: &ItemView<'_>, mirroring: &Mirroring<'_>) {
        match self.format {
            Format::Yaml => {
                self.out.extend_from_slice(b"---\n");
                self.printer.yaml(&mut self.out, item, mirroring);
            }
            Format::Json => {
                self.out.extend_from_slice(item_opening(self.written));
                self.out.extend_from_slice(ITEM_INDENT);
                self.printer.json(&mut self.out, item, mirroring);
            }
        }
        self.written += 1;
    }
}

/// What goes before the item of a JSON `List` that has `written` items before it: the list's
/// opening, or the comma after the item before.
fn item_opening(written: usize) -> &'static [u8] {
    if written == 0 {
        b"{\n  \"apiVersion\": \"v1\",\n  \"items\": [\n"
    } else {
        b",\n"
    }
}

/// Renders `objects` in `format` into one string.
pub fn render(objects: &[ImagePipeline], format: Format) -> Result<String, RenderError> {
    let mut writer = ManifestWriter::new(Vec::new(), format);
    for obj in objects {
        writer.write(obj)?;
    }
    let bytes = writer.finish()?;
    // Both serializers produce UTF-8.
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// A `kubectl get imagepipelines`-style table (the printer columns of the CRD). AGE is the
/// pipeline's cloud creation time, since the objects do not exist in a cluster yet.
pub fn table(objects: &[ImagePipeline], now: Timestamp) -> String {
    let header = [
        "NAME",
        "ID",
        "PIPELINE NAME",
        "BASE IMAGE",
        "INSTANCE TYPE",
        "REGION",
        "AGE",
    ];
    let rows: Vec<[String; 7]> = objects
        .iter()
        .map(|o| {
            let s = &o.spec;
            let dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "<none>".into());
            [
                o.metadata.name.clone().unwrap_or_default(),
                s.image_pipeline_id.clone(),
                dash(&s.name),
                dash(&s.base_image),
                dash(&s.instance_type),
                s.region_id.clone(),
                s.creation_time
                    .as_deref()
                    .and_then(|t| t.parse::<Timestamp>().ok())
                    .map_or_else(|| "<unknown>".into(), |t| human_age(now, t)),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, (cell, w)) in cells.iter().zip(widths).enumerate() {
            if i + 1 == cells.len() {
                l.push_str(cell);
            } else {
                let _ = write!(l, "{cell:<w$}   ");
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header.to_vec());
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
    out
}

/// Age as kubectl shows it: `45s`, `12m`, `5h`, `3d`, `2y`.
pub fn human_age(now: Timestamp, then: Timestamp) -> String {
    let secs = now.as_second().saturating_sub(then.as_second()).max(0);
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7_200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3_600),
        s if s < 365 * 86_400 * 2 => format!("{}d", s / 86_400),
        s => format!("{}y", s / (365 * 86_400)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::pipeline::mirror_object;
    use crate::ecs::ImagePipelineItem;

    fn objects() -> Vec<ImagePipeline> {
        ["ip-aaa", "ip-bbb"]
            .iter()
            .map(|id| {
                let item = ImagePipelineItem {
                    image_pipeline_id: id.to_string(),
                    name: Some(format!("name-{id}")),
                    creation_time: Some("2026-11-27T10:00:00Z".into()),
                    ..Default::default()
                };
                mirror_object(&item, "cn-hangzhou", "default", "2026-11-28T10:00:00Z").unwrap()
            })
            .collect()
    }

    #[test]
    fn yaml_is_one_document_per_object() {
        let yaml = render(&objects(), Format::Yaml).unwrap();
        let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&yaml)
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .collect();
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1]["metadata"]["name"], "ip-bbb");
        assert_eq!(docs[0]["kind"], "ImagePipeline");
    }

    #[test]
    fn json_is_a_kubectl_style_list() {
        let json: serde_json::Value =
            serde_json::from_str(&render(&objects(), Format::Json).unwrap()).unwrap();
        assert_eq!(json["apiVersion"], "v1");
        assert_eq!(json["kind"], "List");
        assert_eq!(json["items"].as_array().unwrap().len(), 2);
        assert_eq!(json["items"][0]["spec"]["imagePipelineId"], "ip-aaa");
    }

    /// The whole list serialized at once.
    fn json_oracle(objects: &[ImagePipeline]) -> String {
        #[derive(serde::Serialize)]
        struct List<'a> {
            #[serde(rename = "apiVersion")]
            api_version: &'a str,
            items: &'a [ImagePipeline],
            kind: &'a str,
            metadata: serde_json::Value,
        }
        let list = List {
            api_version: "v1",
            items: objects,
            kind: "List",
            metadata: serde_json::json!({ "resourceVersion": "" }),
        };
        serde_json::to_string_pretty(&list).unwrap() + "\n"
    }

    #[test]
    fn streamed_json_is_byte_for_byte_the_pretty_printed_list() {
        let all = objects();
        for n in 0..=all.len() {
            let streamed = render(&all[..n], Format::Json).unwrap();
            assert_eq!(streamed, json_oracle(&all[..n]), "{n} objects");
        }
    }

    #[test]
    fn streamed_yaml_is_each_object_as_its_own_document() {
        let all = objects();
        let text = render(&all, Format::Yaml).unwrap();
        let docs: Vec<serde_json::Value> = serde_yaml::Deserializer::from_str(&text)
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .collect();
        let expected: Vec<serde_json::Value> = all
            .iter()
            .map(|o| serde_json::to_value(o).unwrap())
            .collect();
        assert_eq!(docs, expected);
        assert_eq!(text.matches("---\n").count(), all.len());
        assert_eq!(render(&[], Format::Yaml).unwrap(), "");
    }

    #[test]
    fn a_failing_output_is_an_error_not_a_panic() {
        struct Closed;
        impl std::io::Write for Closed {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(std::io::ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        for format in [Format::Json, Format::Yaml] {
            let mut w = ManifestWriter::new(Closed, format);
            assert!(matches!(w.write(&objects()[0]), Err(RenderError::Io(_))));
        }
    }

    #[test]
    fn the_table_has_the_printer_columns_and_ages() {
        let now: Timestamp = "2026-11-28T10:00:00Z".parse().unwrap();
        let t = table(&objects(), now);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("NAME"));
        assert!(lines[0].contains("BASE IMAGE") && lines[0].contains("INSTANCE TYPE"));
        assert!(
            lines[1].starts_with("ip-aaa") && lines[1].ends_with("24h"),
            "{}",
            lines[1]
        );
        assert_eq!(lines.len(), 3);
    }

    #[test]
    fn ages_use_kubectl_units() {
        let now: Timestamp = "2026-11-28T10:00:00Z".parse().unwrap();
        let ago = |s: i64| human_age(now, Timestamp::from_second(now.as_second() - s).unwrap());
        assert_eq!(ago(5), "5s");
        assert_eq!(ago(600), "10m");
        assert_eq!(ago(3 * 86_400), "3d");
    }
}
