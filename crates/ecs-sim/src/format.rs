//! Response formats. RPC answers XML unless `Format=JSON` (any case) is asked for, as the
//! service does; V3 requests always get JSON.

use serde_json::Value;

/// The body format of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `application/json`.
    Json,
    /// `text/xml`, the service's default for v1 requests without `Format`.
    Xml,
}

impl Format {
    /// The format a v1 request asks for with its `Format` parameter.
    pub fn from_param(value: Option<&str>) -> Self {
        match value {
            Some(v) if v.eq_ignore_ascii_case("json") => Format::Json,
            _ => Format::Xml,
        }
    }

    /// The `Content-Type` of this format.
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json;charset=utf-8",
            Format::Xml => "text/xml;charset=utf-8",
        }
    }

    /// Renders `body` with `root` as the XML root element (`<Action>Response` or `Error`).
    pub fn render(self, root: &str, body: &Value) -> Vec<u8> {
        match self {
            Format::Json => serde_json::to_vec(body).unwrap_or_default(),
            Format::Xml => {
                let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>");
                element(root, body, &mut out);
                out.into_bytes()
            }
        }
    }
}

/// Alibaba's JSON-to-XML mapping: an object is an element with children, an array under `K`
/// is `K` repeated, scalars are text.
fn element(name: &str, value: &Value, out: &mut String) {
    match value {
        Value::Array(items) => {
            for item in items {
                element(name, item, out);
            }
        }
        Value::Object(map) => {
            out.push_str(&format!("<{name}>"));
            for (k, v) in map {
                element(k, v, out);
            }
            out.push_str(&format!("</{name}>"));
        }
        Value::Null => out.push_str(&format!("<{name}/>")),
        Value::String(s) => out.push_str(&format!("<{name}>{}</{name}>", escape(s))),
        other => out.push_str(&format!("<{name}>{other}</{name}>")),
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn format_defaults_to_xml_and_accepts_json_in_any_case() {
        assert_eq!(Format::from_param(None), Format::Xml);
        assert_eq!(Format::from_param(Some("XML")), Format::Xml);
        assert_eq!(Format::from_param(Some("JSON")), Format::Json);
        assert_eq!(Format::from_param(Some("json")), Format::Json);
    }

    #[test]
    fn xml_repeats_array_elements_and_escapes_text() {
        let body = json!({"A": {"Set": [{"N": "x<y"}, {"N": 2}]}, "Z": true});
        let xml = String::from_utf8(Format::Xml.render("R", &body)).expect("utf8");
        assert!(
            xml.ends_with("<R><A><Set><N>x&lt;y</N></Set><Set><N>2</N></Set></A><Z>true</Z></R>")
        );
    }
}
