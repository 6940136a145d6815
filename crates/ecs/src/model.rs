//! The response of `DescribeImagePipelines`, decoded leniently.
//!
//! The service is not strict about its own shapes: numbers arrive as strings, a one-element
//! array arrives as a bare value, wrappers go missing, and the documented sample even sends the
//! literal string `"null"` and JSON arrays encoded inside strings. Decoding therefore walks a
//! `serde_json::Value` by hand: one odd field or item never fails the page.

use serde_json::{Map, Value};

/// A tag on a pipeline, as the response spells it (`TagKey` / `TagValue`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct PipelineTag {
    /// `TagKey`.
    pub key: String,
    /// `TagValue` (empty when the service sends none).
    pub value: String,
}

/// One `ImagePipelineSet` item: an image template.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImagePipelineItem {
    /// `ImagePipelineId`, e.g. `ip-2ze5tsl5bp6nf2b3`. Always non-empty.
    pub image_pipeline_id: String,
    /// `Name`.
    pub name: Option<String>,
    /// `Description`.
    pub description: Option<String>,
    /// `BaseImage`: an image ID or an image family name.
    pub base_image: Option<String>,
    /// `BaseImageType`: `IMAGE` or `IMAGE_FAMILY`.
    pub base_image_type: Option<String>,
    /// `BuildContent`.
    pub build_content: Option<String>,
    /// `TestContent`.
    pub test_content: Option<String>,
    /// `RepairMode`.
    pub repair_mode: Option<String>,
    /// `ImageName`.
    pub image_name: Option<String>,
    /// `ImageFamily`.
    pub image_family: Option<String>,
    /// `InstanceType`.
    pub instance_type: Option<String>,
    /// `SystemDiskSize` in GiB.
    pub system_disk_size: Option<i64>,
    /// `InternetMaxBandwidthOut` in Mbit/s.
    pub internet_max_bandwidth_out: Option<i64>,
    /// `VSwitchId`.
    pub v_switch_id: Option<String>,
    /// `DeleteInstanceOnFailure`.
    pub delete_instance_on_failure: Option<bool>,
    /// `ResourceGroupId`.
    pub resource_group_id: Option<String>,
    /// `CreationTime`, as the service formats it.
    pub creation_time: Option<String>,
    /// `Tags.Tag[]`.
    pub tags: Vec<PipelineTag>,
    /// `ToRegionIds.ToRegionId[]`.
    pub to_region_ids: Vec<String>,
    /// `AddAccounts.AddAccount[]`.
    pub add_accounts: Vec<String>,
}

/// One decoded page.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PipelinePage {
    /// `RequestId`, for support tickets and error reports.
    pub request_id: Option<String>,
    /// `TotalCount` as the service reported it.
    pub total_count: Option<u64>,
    /// `MaxResults` echoed back.
    pub max_results: Option<u64>,
    /// `NextToken`; `None` when absent or empty (the last page).
    pub next_token: Option<String>,
    /// The items that could be decoded.
    pub items: Vec<ImagePipelineItem>,
    /// Items that were skipped because they had no usable `ImagePipelineId`.
    pub skipped_items: usize,
    /// The [`list_hash`](crate::list_hash) of the list member's text, when the page was read
    /// for a caller that remembers pages ([`crate::EcsClient::pages_known`]).
    pub list_hash: Option<u64>,
    /// The length in bytes of that text, with `list_hash`.
    pub list_len: Option<usize>,
    /// The whole body, when the list was one the caller knew and its items were left
    /// undecoded (`items` is then empty); [`PipelinePage::decoded`] reads them.
    pub undecoded: Option<bytes::Bytes>,
}

/// Decodes a page from a parsed JSON body. Never fails: missing parts are empty. The client
/// decodes from the bytes instead (the same result, see `fast.rs`); this is the reference.
pub fn decode_page(body: &Value) -> PipelinePage {
    let Some(obj) = body.as_object() else {
        return PipelinePage::default();
    };
    let mut page = decode_page_fields(obj);
    for raw in wrapped_list(obj.get("ImagePipeline"), "ImagePipelineSet") {
        match decode_item(raw) {
            Some(item) => page.items.push(item),
            None => page.skipped_items += 1,
        }
    }
    page
}

/// The page's own fields (everything but the items) from the body's top level.
pub(crate) fn decode_page_fields(obj: &Map<String, Value>) -> PipelinePage {
    PipelinePage {
        request_id: string_field(obj, "RequestId"),
        total_count: int_field(obj, "TotalCount").and_then(|n| u64::try_from(n).ok()),
        max_results: int_field(obj, "MaxResults").and_then(|n| u64::try_from(n).ok()),
        next_token: string_field(obj, "NextToken"),
        ..PipelinePage::default()
    }
}

/// Decodes one `ImagePipelineSet` item; `None` when it has no pipeline ID.
pub fn decode_item(raw: &Value) -> Option<ImagePipelineItem> {
    let obj = raw.as_object()?;
    Some(ImagePipelineItem {
        image_pipeline_id: string_field(obj, "ImagePipelineId")?,
        name: string_field(obj, "Name"),
        description: string_field(obj, "Description"),
        base_image: string_field(obj, "BaseImage"),
        base_image_type: string_field(obj, "BaseImageType"),
        build_content: string_field(obj, "BuildContent"),
        test_content: string_field(obj, "TestContent"),
        repair_mode: string_field(obj, "RepairMode"),
        image_name: string_field(obj, "ImageName"),
        image_family: string_field(obj, "ImageFamily"),
        instance_type: string_field(obj, "InstanceType"),
        system_disk_size: int_field(obj, "SystemDiskSize"),
        internet_max_bandwidth_out: int_field(obj, "InternetMaxBandwidthOut"),
        v_switch_id: string_field(obj, "VSwitchId"),
        delete_instance_on_failure: bool_field(obj, "DeleteInstanceOnFailure"),
        resource_group_id: string_field(obj, "ResourceGroupId"),
        creation_time: string_field(obj, "CreationTime"),
        tags: wrapped_list(obj.get("Tags"), "Tag")
            .filter_map(|t| {
                let t = t.as_object()?;
                Some(PipelineTag {
                    key: string_field(t, "TagKey")?,
                    value: string_field(t, "TagValue").unwrap_or_default(),
                })
            })
            .collect(),
        to_region_ids: string_list(obj.get("ToRegionIds"), "ToRegionId"),
        add_accounts: string_list(obj.get("AddAccounts"), "AddAccount"),
    })
}

/// A scalar as text: strings as they are (but `""` and `"null"` are absent), numbers and bools
/// printed.
fn scalar_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if s.is_empty() || s == "null" => None,
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn string_field(obj: &Map<String, Value>, name: &str) -> Option<String> {
    obj.get(name).and_then(scalar_string)
}

fn int_field(obj: &Map<String, Value>, name: &str) -> Option<i64> {
    match obj.get(name)? {
        Value::Number(n) => n.as_i64().or_else(|| n.as_f64().map(|f| f as i64)),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn bool_field(obj: &Map<String, Value>, name: &str) -> Option<bool> {
    match obj.get(name)? {
        Value::Bool(b) => Some(*b),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" => Some(true),
            "false" => Some(false),
            _ => None,
        },
        Value::Number(n) => n.as_i64().map(|n| n != 0),
        _ => None,
    }
}

/// The elements of `{Inner: [...]}`, accepting a bare array, a bare object for a one-element
/// list, and a missing wrapper.
fn wrapped_list<'a>(outer: Option<&'a Value>, inner: &str) -> impl Iterator<Item = &'a Value> {
    let list: &'a [Value] = match outer {
        Some(Value::Object(o)) => match o.get(inner) {
            Some(Value::Array(a)) => a.as_slice(),
            // A lone value is a one-element list (an odd one is then counted as skipped);
            // `null` is no list at all.
            Some(v @ (Value::Object(_) | Value::String(_) | Value::Number(_) | Value::Bool(_))) => {
                std::slice::from_ref(v)
            }
            _ => &[],
        },
        Some(Value::Array(a)) => a.as_slice(),
        _ => &[],
    };
    list.iter()
}

/// A list of strings, flattening elements that are themselves JSON arrays encoded as text
/// (the documented sample sends `["[\"cn-hangzhou\"]"]`).
fn string_list(outer: Option<&Value>, inner: &str) -> Vec<String> {
    let mut out = Vec::new();
    let values: Vec<&Value> = match outer {
        Some(v @ Value::String(_)) => vec![v],
        other => wrapped_list(other, inner).collect(),
    };
    for v in values {
        let Some(s) = scalar_string(v) else { continue };
        let trimmed = s.trim();
        if trimmed.starts_with('[') {
            if let Ok(Value::Array(inner)) = serde_json::from_str::<Value>(trimmed) {
                out.extend(inner.iter().filter_map(scalar_string));
                continue;
            }
        }
        out.push(s);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_documented_sample_decodes() {
        let body = json!({
          "NextToken": "AAAAAdDWBF2****",
          "RequestId": "473469C7-AA6F-4DC5-B3DB-A3DC0DE3C83E",
          "TotalCount": 1,
          "MaxResults": 50,
          "ImagePipeline": { "ImagePipelineSet": [ {
            "CreationTime": "2020-11-24T06:00:00Z",
            "DeleteInstanceOnFailure": true,
            "InstanceType": "ecs.g6.large",
            "InternetMaxBandwidthOut": 0,
            "ImagePipelineId": "ip-2ze5tsl5bp6nf2b3****",
            "VSwitchId": "vsw-bp67acfmxazb4p****",
            "SystemDiskSize": 40,
            "Description": "This is description.",
            "BaseImage": "m-bp67acfmxazb4p****",
            "ResourceGroupId": "rg-bp67acfmxazb4p****",
            "ImageName": "testImageName",
            "BaseImageType": "IMAGE",
            "Name": "testImagePipeline",
            "BuildContent": "FROM IMAGE:m-bp67acfmxazb4p****",
            "Tags": { "Tag": [ { "TagValue": "TestValue", "TagKey": "TestKey" } ] },
            "ToRegionIds": { "ToRegionId": [ "[\"cn-hangzhou\"]" ] },
            "AddAccounts": { "AddAccount": [ "[\"1234567890\"]" ] },
            "RepairMode": "null",
            "TestContent": "null",
            "ImageFamily": "null"
          } ] }
        });
        let page = decode_page(&body);
        assert_eq!(page.next_token.as_deref(), Some("AAAAAdDWBF2****"));
        assert_eq!(page.total_count, Some(1));
        assert_eq!(page.items.len(), 1);
        let item = &page.items[0];
        assert_eq!(item.image_pipeline_id, "ip-2ze5tsl5bp6nf2b3****");
        assert_eq!(item.system_disk_size, Some(40));
        assert_eq!(item.internet_max_bandwidth_out, Some(0));
        assert_eq!(item.delete_instance_on_failure, Some(true));
        assert_eq!(
            item.tags,
            vec![PipelineTag {
                key: "TestKey".into(),
                value: "TestValue".into()
            }]
        );
        assert_eq!(item.to_region_ids, vec!["cn-hangzhou"]);
        assert_eq!(item.add_accounts, vec!["1234567890"]);
        assert_eq!(item.repair_mode, None);
        assert_eq!(item.test_content, None);
    }

    #[test]
    fn wrong_types_and_missing_wrappers_never_fail_the_page() {
        let body = json!({
          "TotalCount": "3",
          "NextToken": "",
          "ImagePipeline": { "ImagePipelineSet": [
            { "ImagePipelineId": "ip-a", "SystemDiskSize": "40", "DeleteInstanceOnFailure": "false",
              "Tags": { "Tag": { "TagKey": "k", "TagValue": 7 } }, "ToRegionIds": { "ToRegionId": "cn-beijing" },
              "AddAccounts": null, "Unknown": { "x": 1 } },
            { "Name": "no id" },
            "not an object",
            { "ImagePipelineId": "ip-b", "SystemDiskSize": {"x":1}, "Tags": [] }
          ] }
        });
        let page = decode_page(&body);
        assert_eq!(page.total_count, Some(3));
        assert_eq!(page.next_token, None);
        assert_eq!(page.skipped_items, 2);
        let ids: Vec<_> = page
            .items
            .iter()
            .map(|i| i.image_pipeline_id.as_str())
            .collect();
        assert_eq!(ids, ["ip-a", "ip-b"]);
        let a = &page.items[0];
        assert_eq!(a.system_disk_size, Some(40));
        assert_eq!(a.delete_instance_on_failure, Some(false));
        assert_eq!(
            a.tags,
            vec![PipelineTag {
                key: "k".into(),
                value: "7".into()
            }]
        );
        assert_eq!(a.to_region_ids, vec!["cn-beijing"]);
        assert!(a.add_accounts.is_empty());
        assert_eq!(page.items[1].system_disk_size, None);
    }

    #[test]
    fn a_lone_odd_value_is_a_skipped_item_and_null_is_no_item() {
        let page = |set: Value| decode_page(&json!({"ImagePipeline": {"ImagePipelineSet": set}}));
        assert_eq!(page(json!(true)).skipped_items, 1);
        assert_eq!(page(json!("x")).skipped_items, 1);
        assert_eq!(page(Value::Null).skipped_items, 0);
        assert_eq!(page(json!({"ImagePipelineId": "ip-a"})).items.len(), 1);
    }

    #[test]
    fn a_body_without_the_list_is_an_empty_page() {
        assert_eq!(decode_page(&json!({"RequestId": "r"})).items.len(), 0);
        assert_eq!(decode_page(&json!([1, 2])).items.len(), 0);
        assert_eq!(decode_page(&json!({"ImagePipeline": "x"})).items.len(), 0);
    }
}
