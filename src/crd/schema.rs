//! Schema adjustments for the API server: the integer formats schemars derives from Rust types
//! (`uint32`, ...) are not OpenAPI formats the API server knows, and it warns about each on
//! every `kubectl apply` of the CRDs. They become the nearest known format (`int32` or `int64`);
//! the bounds (`minimum`, `maximum`) stay, so nothing is accepted that was refused before.

use schemars::Schema;
use serde_json::Value;

/// The OpenAPI format the API server knows for a schemars integer format, if it differs.
fn known_integer_format(format: &str) -> Option<&'static str> {
    match format {
        "int8" | "int16" | "uint8" | "uint16" => Some("int32"),
        "uint32" | "uint64" | "uint" | "int" => Some("int64"),
        _ => None,
    }
}

fn rewrite(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(format)) = map.get_mut("format")
                && let Some(known) = known_integer_format(format)
            {
                *format = known.to_string();
            }
            map.values_mut().for_each(rewrite);
        }
        Value::Array(items) => items.iter_mut().for_each(rewrite),
        _ => {}
    }
}

/// A schemars `transform`: every integer format in `schema` and its subschemas becomes one the
/// API server knows.
pub fn api_server_formats(schema: &mut Schema) {
    if let Some(object) = schema.as_object_mut() {
        object.values_mut().for_each(rewrite);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn unsigned_formats_become_formats_the_api_server_knows_and_bounds_stay() {
        let mut schema: Schema = json!({
            "type": "object",
            "properties": {
                "a": {"type": "integer", "format": "uint32", "minimum": 0},
                "b": {"type": "integer", "format": "uint16"},
                "c": {"type": "array", "items": {"type": "integer", "format": "uint64"}},
                "d": {"type": "string", "format": "date-time"},
                "e": {"type": "integer", "format": "int64"},
            }
        })
        .try_into()
        .unwrap();
        api_server_formats(&mut schema);
        assert_eq!(
            schema.as_value()["properties"],
            json!({
                "a": {"type": "integer", "format": "int64", "minimum": 0},
                "b": {"type": "integer", "format": "int32"},
                "c": {"type": "array", "items": {"type": "integer", "format": "int64"}},
                "d": {"type": "string", "format": "date-time"},
                "e": {"type": "integer", "format": "int64"},
            })
        );
    }
}
