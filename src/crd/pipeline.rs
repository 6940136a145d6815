//! `ImagePipeline`: the read-only mirror of one ECS image pipeline (image template).

// Repeated `printcolumn(type_ = ...)` keys are separate columns, not duplicates.
#![allow(clippy::duplicated_attributes)]

use kube::CustomResource;
use kube::api::ObjectMeta;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ecs::model::ImagePipelineItem;

/// A tag on the mirrored pipeline.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, PartialOrd, Ord, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PipelineTagSpec {
    /// The tag key (`TagKey` in the API).
    pub tag_key: String,
    /// The tag value (`TagValue` in the API).
    #[serde(default)]
    pub tag_value: String,
}

/// An Alibaba Cloud ECS image pipeline (image template), mirrored from the `DescribeImagePipelines`
/// API by an ImagePipelineQuery in the same namespace. Read-only: edit the query, or the pipeline in
/// the cloud; the operator overwrites any other change. The object is named by the pipeline ID.
// clippy mistakes the repeated `printcolumn(type_ = ...)` keys for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, PartialEq, Default, JsonSchema)]
#[kube(
    group = "ecs.mirror.io",
    version = "v1alpha1",
    kind = "ImagePipeline",
    namespaced,
    shortname = "ipl",
    category = "imagepipeline-mirror",
    derive = "PartialEq",
    doc = "A read-only mirror of one Alibaba Cloud ECS image pipeline (image template), written by the imagepipeline-operator for the ImagePipelineQuery objects that match it.",
    printcolumn(name = "ID", type_ = "string", json_path = ".spec.imagePipelineId"),
    printcolumn(name = "Name", type_ = "string", json_path = ".spec.name"),
    printcolumn(name = "Base Image", type_ = "string", json_path = ".spec.baseImage"),
    printcolumn(
        name = "Instance Type",
        type_ = "string",
        json_path = ".spec.instanceType"
    ),
    printcolumn(name = "Region", type_ = "string", json_path = ".spec.regionId"),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    selectable = ".spec.regionId",
    selectable = ".spec.name"
)]
#[serde(rename_all = "camelCase")]
pub struct ImagePipelineSpec {
    /// The ID of the image template, e.g. `ip-2ze5tsl5bp6nf2b3`. Also the object's name.
    pub image_pipeline_id: String,
    /// The region the image template lives in, e.g. `cn-hangzhou`.
    pub region_id: String,
    /// The name of the image template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The description of the image template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The source image: a custom image ID when baseImageType is IMAGE, an image family name when
    /// it is IMAGE_FAMILY.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_image: Option<String>,
    /// The type of the source image: IMAGE or IMAGE_FAMILY.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_image_type: Option<String>,
    /// The build content (the template's commands, e.g. `FROM IMAGE:m-...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub build_content: Option<String>,
    /// The content of the image test template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test_content: Option<String>,
    /// The repair mode of the image template, e.g. Standard.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repair_mode: Option<String>,
    /// The name prefix of the images built from the template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_name: Option<String>,
    /// The image family of the images built from the template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_family: Option<String>,
    /// The instance type of the intermediate build instance, e.g. ecs.g6.large.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_type: Option<String>,
    /// The system disk size of the intermediate instance, in GiB.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_disk_size: Option<i64>,
    /// The outbound public bandwidth of the intermediate instance, in Mbit/s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub internet_max_bandwidth_out: Option<i64>,
    /// The vSwitch of the intermediate instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub v_switch_id: Option<String>,
    /// Whether the intermediate instance is released when the build fails.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delete_instance_on_failure: Option<bool>,
    /// The resource group of the image template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_group_id: Option<String>,
    /// When the image template was created, as the API reports it (UTC, e.g. 2020-11-24T06:00:00Z).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creation_time: Option<String>,
    /// The tags of the image template.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<PipelineTagSpec>,
    /// The regions the built image is distributed to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to_region_ids: Vec<String>,
    /// The Alibaba Cloud accounts the built image is shared with.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add_accounts: Vec<String>,
    /// When the operator last wrote this object's content (RFC 3339). It moves only when the
    /// pipeline changed: a refresh that finds nothing new writes nothing. The query's
    /// status.lastSyncTime tells when the pipeline was last confirmed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<String>,
}

impl ImagePipelineSpec {
    /// The mirrored content of an API item in `region_id`, without `lastSyncTime`.
    pub fn from_item(item: &ImagePipelineItem, region_id: &str) -> Self {
        Self::from_owned_item(item.clone(), region_id)
    }

    /// [`Self::from_item`], taking the item's texts instead of copying them.
    pub fn from_owned_item(item: ImagePipelineItem, region_id: &str) -> Self {
        Self {
            image_pipeline_id: item.image_pipeline_id,
            region_id: region_id.to_string(),
            name: item.name,
            description: item.description,
            base_image: item.base_image,
            base_image_type: item.base_image_type,
            build_content: item.build_content,
            test_content: item.test_content,
            repair_mode: item.repair_mode,
            image_name: item.image_name,
            image_family: item.image_family,
            instance_type: item.instance_type,
            system_disk_size: item.system_disk_size,
            internet_max_bandwidth_out: item.internet_max_bandwidth_out,
            v_switch_id: item.v_switch_id,
            delete_instance_on_failure: item.delete_instance_on_failure,
            resource_group_id: item.resource_group_id,
            creation_time: item.creation_time,
            tags: item
                .tags
                .into_iter()
                .map(|t| PipelineTagSpec {
                    tag_key: t.key,
                    tag_value: t.value,
                })
                .collect(),
            to_region_ids: item.to_region_ids,
            add_accounts: item.add_accounts,
            last_sync_time: None,
        }
    }
}

/// Whether `name` is a valid object name: a DNS-1123 subdomain as the API server checks it (at
/// most 253 characters; dot-separated parts of lowercase letters, digits and '-', each
/// non-empty and starting and ending with a letter or digit).
pub fn is_object_name(name: &str) -> bool {
    let part = |p: &str| {
        let b = p.as_bytes();
        !b.is_empty()
            && b.iter()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
            && b[0] != b'-'
            && b[b.len() - 1] != b'-'
    };
    name.len() <= 253 && name.split('.').all(part)
}

/// The object name of a pipeline: its ID when that is a valid Kubernetes object name (the API's
/// lowercase `ip-...` IDs always are); otherwise `None` and the item cannot be mirrored.
pub fn object_name(pipeline_id: &str) -> Option<String> {
    is_object_name(pipeline_id).then(|| pipeline_id.to_string())
}

/// The ImagePipeline the operator would write for `item` in `namespace` (no owners; the
/// controller adds them), stamped with `last_sync_time`.
pub fn mirror_object(
    item: &ImagePipelineItem,
    region_id: &str,
    namespace: &str,
    last_sync_time: &str,
) -> Option<ImagePipeline> {
    object_name(&item.image_pipeline_id)?;
    mirror_owned_item(item.clone(), region_id, namespace, last_sync_time)
}

/// [`mirror_object`], taking the item instead of copying its texts.
pub fn mirror_owned_item(
    item: ImagePipelineItem,
    region_id: &str,
    namespace: &str,
    last_sync_time: &str,
) -> Option<ImagePipeline> {
    let name = object_name(&item.image_pipeline_id)?;
    let mut spec = ImagePipelineSpec::from_owned_item(item, region_id);
    spec.last_sync_time = Some(last_sync_time.to_string());
    Some(ImagePipeline {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: Some(namespace.to_string()),
            ..ObjectMeta::default()
        },
        spec,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ecs::model::PipelineTag;

    fn item() -> ImagePipelineItem {
        ImagePipelineItem {
            image_pipeline_id: "ip-abc123".into(),
            name: Some("golden".into()),
            system_disk_size: Some(40),
            tags: vec![PipelineTag {
                key: "team".into(),
                value: "pay".into(),
            }],
            to_region_ids: vec!["cn-beijing".into()],
            ..ImagePipelineItem::default()
        }
    }

    #[test]
    fn an_item_becomes_a_camel_case_object_named_by_its_id() {
        let obj = mirror_object(&item(), "cn-hangzhou", "team-a", "2026-01-01T00:00:00Z").unwrap();
        assert_eq!(obj.metadata.name.as_deref(), Some("ip-abc123"));
        let json = serde_json::to_value(&obj).unwrap();
        assert_eq!(json["apiVersion"], "ecs.mirror.io/v1alpha1");
        assert_eq!(json["kind"], "ImagePipeline");
        assert_eq!(json["spec"]["imagePipelineId"], "ip-abc123");
        assert_eq!(json["spec"]["regionId"], "cn-hangzhou");
        assert_eq!(json["spec"]["systemDiskSize"], 40);
        assert_eq!(json["spec"]["tags"][0]["tagKey"], "team");
        assert_eq!(json["spec"]["toRegionIds"][0], "cn-beijing");
        assert_eq!(json["spec"]["lastSyncTime"], "2026-01-01T00:00:00Z");
        assert!(json["spec"].get("description").is_none());
    }

    #[test]
    fn ids_that_are_not_kubernetes_names_are_not_mirrored() {
        assert_eq!(object_name("ip-abc"), Some("ip-abc".into()));
        assert_eq!(object_name("ip-ABC"), None);
        assert_eq!(object_name("ip-2ze5tsl5bp6nf2b3****"), None);
        assert_eq!(object_name(""), None);
        // What the API server refuses: empty, leading or trailing parts around a dot.
        assert_eq!(object_name("ip-ap002..x"), None);
        assert_eq!(object_name("ip-a.-b"), None);
        assert_eq!(object_name(".ip-a"), None);
        assert_eq!(object_name("ip-a."), None);
        assert_eq!(object_name("ip-a_b"), None);
        assert_eq!(object_name(&format!("ip-{}", "a".repeat(251))), None);
        assert_eq!(object_name("ip-a.b-c.d1"), Some("ip-a.b-c.d1".into()));
        assert!(object_name(&format!("ip-{}", "a".repeat(250))).is_some());
    }
}
