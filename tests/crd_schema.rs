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
    assert!(p["refreshInterval"]["pattern"].is_string());
    assert!(rules(&p["refreshInterval"])[0].contains("duration(self) >= duration('30s')"));
    assert_eq!(p["prune"]["default"], true);
    let secret_name = &p["credentials"]["properties"]["secretRef"]["properties"]["name"];
    assert_eq!(secret_name["maxLength"], 253);
    assert_eq!(rules(secret_name).len(), 1);
    let metadata = &p["template"]["properties"]["metadata"]["properties"];
    assert_eq!(metadata["labels"]["maxProperties"], 8);
    assert_eq!(metadata["annotations"]["maxProperties"], 8);
    assert_eq!(metadata["labels"]["additionalProperties"]["maxLength"], 63);
    assert_eq!(
        metadata["labels"]["additionalProperties"]["pattern"],
        "^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$",
        "label value syntax"
    );
    assert_eq!(
        rules(&metadata["labels"]).len(),
        2,
        "key syntax, prefix length"
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
