//! Rendering mirrored objects the way `kubectl` prints them.

use std::fmt::Write as _;

use jiff::Timestamp;

use crate::crd::ImagePipeline;

/// Output formats of `export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// A multi-document YAML stream, one document per object.
    Yaml,
    /// A `v1` `List`, as `kubectl get -o json` prints it.
    Json,
}

/// Why rendering failed (serialization of our own types; not expected in practice).
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// YAML serialization failed.
    #[error("rendering YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
    /// JSON serialization failed.
    #[error("rendering JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// Renders `objects` in `format`.
pub fn render(objects: &[ImagePipeline], format: Format) -> Result<String, RenderError> {
    match format {
        Format::Yaml => {
            let mut out = String::new();
            for obj in objects {
                out.push_str("---\n");
                out.push_str(&serde_yaml::to_string(obj)?);
            }
            Ok(out)
        }
        Format::Json => {
            let list = serde_json::json!({
                "apiVersion": "v1",
                "kind": "List",
                "metadata": { "resourceVersion": "" },
                "items": objects,
            });
            let mut s = serde_json::to_string_pretty(&list)?;
            s.push('\n');
            Ok(s)
        }
    }
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
