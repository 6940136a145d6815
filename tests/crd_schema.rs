//! The ImagePipelineQuery schema carries every bound, so `kubectl apply` refuses bad input.

use imagepipeline_operator::crd::{ImagePipelineQuery, crds_yaml};
use kube::CustomResourceExt;
use serde_json::Value;

fn spec_schema() -> Value {
    let crd = serde_json::to_value(ImagePipelineQuery::crd()).unwrap();
    crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"].clone()
}

fn rules(schema: &Value) -> Vec<String> {
    schema["x-kubernetes-validations"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| r["rule"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn the_query_crd_is_namespaced_with_short_name_category_and_columns() {
    let crd = serde_json::to_value(ImagePipelineQuery::crd()).unwrap();
    assert_eq!(
        crd["metadata"]["name"],
        "imagepipelinequeries.ecs.mirror.io"
    );
    assert_eq!(crd["spec"]["scope"], "Namespaced");
    assert_eq!(crd["spec"]["names"]["shortNames"][0], "ipq");
    assert_eq!(
        crd["spec"]["names"]["categories"][0],
        "imagepipeline-mirror"
    );
    let version = &crd["spec"]["versions"][0];
    assert_eq!(version["subresources"]["status"], serde_json::json!({}));
    let columns: Vec<&str> = version["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c.get("priority").is_none())
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        columns,
        ["Ready", "Matched", "Last Sync", "Interval", "Age"]
    );
    let wide: Vec<&str> = version["additionalPrinterColumns"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c.get("priority").is_some())
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(wide, ["Reason", "Shard"], "kubectl get ipq -o wide");
}

#[test]
fn every_spec_bound_is_in_the_schema() {
    let spec = spec_schema();
    let p = &spec["properties"];
    assert_eq!(spec["required"], serde_json::json!(["regionId"]));
    assert!(rules(&p["regionId"])[0].contains("matches"));
    assert_eq!(p["imagePipelineIds"]["maxItems"], 20);
    assert_eq!(
        rules(&p["imagePipelineIds"]).len(),
        2,
        "ID syntax and uniqueness"
    );
    assert_eq!(p["tags"]["maxItems"], 20);
    assert!(rules(&p["tags"])[0].contains("exists_one"), "unique keys");
    assert_eq!(p["tags"]["items"]["properties"]["key"]["minLength"], 1);
    assert_eq!(p["pageSize"]["minimum"], 1.0);
    assert_eq!(p["pageSize"]["maximum"], 500.0);
    assert_eq!(p["pageSize"]["default"], 500);
    assert_eq!(p["refreshInterval"]["default"], "10m");
    assert!(
        rules(&p["refreshInterval"])[0].contains("self.matches("),
        "duration syntax"
    );
    assert!(rules(&p["refreshInterval"])[1].contains("duration(self) >= duration('30s')"));
    assert_eq!(p["prune"]["default"], true);
    let secret_name = &p["credentials"]["properties"]["secretRef"]["properties"]["name"];
    assert_eq!(secret_name["maxLength"], 253);
    assert_eq!(rules(secret_name).len(), 1);
    let metadata = &p["template"]["properties"]["metadata"]["properties"];
    assert_eq!(metadata["labels"]["maxProperties"], 8);
    assert_eq!(metadata["annotations"]["maxProperties"], 8);
    assert_eq!(metadata["labels"]["additionalProperties"]["maxLength"], 63);
    assert!(
        rules(&metadata["labels"])[0].contains("self[k].matches("),
        "label value syntax"
    );
    assert_eq!(
        rules(&metadata["labels"]).len(),
        3,
        "value syntax, key syntax, prefix length"
    );
    assert_eq!(rules(&metadata["annotations"]).len(), 2);
}

#[test]
fn every_cel_rule_has_a_message() {
    fn walk(v: &Value, missing: &mut Vec<String>) {
        match v {
            Value::Object(map) => {
                for rule in map
                    .get("x-kubernetes-validations")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    if rule.get("message").is_none() {
                        missing.push(rule["rule"].to_string());
                    }
                }
                map.values().for_each(|x| walk(x, missing));
            }
            Value::Array(items) => items.iter().for_each(|x| walk(x, missing)),
            _ => {}
        }
    }
    let mut missing = Vec::new();
    walk(&spec_schema(), &mut missing);
    assert!(missing.is_empty(), "rules without a message: {missing:?}");
}

/// Every schema object of both CRDs, with its JSON path.
fn every_schema(yaml: &str) -> Vec<(String, Value)> {
    fn walk(path: String, v: &Value, out: &mut Vec<(String, Value)>) {
        match v {
            Value::Object(map) => {
                out.push((path.clone(), v.clone()));
                for (k, x) in map {
                    walk(format!("{path}.{k}"), x, out);
                }
            }
            Value::Array(items) => {
                for (i, x) in items.iter().enumerate() {
                    walk(format!("{path}[{i}]"), x, out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    for doc in serde_yaml::Deserializer::from_str(yaml) {
        let doc: Value = serde::Deserialize::deserialize(doc).unwrap();
        let name = doc["metadata"]["name"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        walk(name, &doc["spec"]["versions"], &mut out);
    }
    out
}

#[test]
fn no_refusal_shows_a_raw_regular_expression() {
    // The API server reports a failed `pattern` as the bare expression; a CEL rule with a message
    // says in words which rule the field broke.
    let patterns: Vec<String> = every_schema(&crds_yaml())
        .into_iter()
        .filter(|(_, s)| s.get("pattern").is_some_and(Value::is_string))
        .map(|(path, _)| path)
        .collect();
    assert!(patterns.is_empty(), "schemas with a pattern: {patterns:?}");
}

#[test]
fn every_format_is_one_the_api_server_knows() {
    // Others make `kubectl apply` of the CRDs warn "unrecognized format".
    const KNOWN: &[&str] = &[
        "int32",
        "int64",
        "float",
        "double",
        "byte",
        "date",
        "date-time",
    ];
    let unknown: Vec<(String, Value)> = every_schema(&crds_yaml())
        .into_iter()
        .filter_map(|(path, s)| {
            let format = s.get("format").filter(|f| f.is_string())?;
            (!KNOWN.contains(&format.as_str().unwrap_or_default())).then(|| (path, format.clone()))
        })
        .collect();
    assert!(unknown.is_empty(), "unknown formats: {unknown:?}");
}

#[test]
fn conditions_are_a_map_list_keyed_by_type() {
    let crd = serde_json::to_value(ImagePipelineQuery::crd()).unwrap();
    let conditions = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["status"]
        ["properties"]["conditions"];
    assert_eq!(conditions["x-kubernetes-list-type"], "map");
    assert_eq!(
        conditions["x-kubernetes-list-map-keys"],
        serde_json::json!(["type"])
    );
}

#[test]
fn the_yaml_holds_both_crds_as_separate_documents() {
    let yaml = crds_yaml();
    let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&yaml)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect();
    let names: Vec<&str> = docs
        .iter()
        .map(|d| d["metadata"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "imagepipelines.ecs.mirror.io",
            "imagepipelinequeries.ecs.mirror.io"
        ]
    );
}
