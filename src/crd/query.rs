//! `ImagePipelineQuery`: what a user writes to mirror the ECS image pipelines matching a filter.
//!
//! Every bound is declared twice: in the schema (patterns, sizes and CEL rules, so that
//! `kubectl apply` refuses bad input with a clear message) and in code
//! (`controller::validate`), so a spec that slipped past admission never costs an API call.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// Default `pageSize`: the API's largest page, so a listing needs the fewest calls.
pub const DEFAULT_PAGE_SIZE: u32 = 500;
/// Default `refreshInterval`.
pub const DEFAULT_REFRESH_INTERVAL: &str = "10m";
/// Shortest accepted `refreshInterval`, in seconds.
pub const MIN_REFRESH_INTERVAL_SECS: u64 = 30;
/// Most labels (and, separately, annotations) a template may carry. Eight keeps the CEL key
/// rules within the API server's cost budget; it is the bound Gateway API uses for the same rules.
pub const MAX_TEMPLATE_ENTRIES: usize = 8;

/// The Go duration syntax the API server's CEL `duration()` accepts (`30s`, `10m`, `1h30m`).
pub const DURATION_PATTERN: &str = r"^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$";

fn default_page_size() -> u32 {
    DEFAULT_PAGE_SIZE
}

fn default_refresh_interval() -> String {
    DEFAULT_REFRESH_INTERVAL.to_string()
}

fn default_prune() -> bool {
    true
}

/// Mirrors the Alibaba Cloud ECS image pipelines (image templates) that match a filter of the
/// `DescribeImagePipelines` API into ImagePipeline objects in this namespace, and keeps them
/// fresh.
// clippy mistakes the repeated `printcolumn(type_ = ...)` keys for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "ecs.mirror.io",
    version = "v1alpha1",
    kind = "ImagePipelineQuery",
    namespaced,
    shortname = "ipq",
    category = "imagepipeline-mirror",
    status = "ImagePipelineQueryStatus",
    derive = "PartialEq",
    doc = "Mirrors the Alibaba Cloud ECS image pipelines (image templates) that match a DescribeImagePipelines filter into read-only ImagePipeline objects in the same namespace, refreshed every refreshInterval.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        priority = 1,
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason"
    ),
    printcolumn(
        name = "Matched",
        type_ = "integer",
        json_path = ".status.matchedCount"
    ),
    printcolumn(name = "Last Sync", type_ = "date", json_path = ".status.lastSyncTime"),
    printcolumn(
        name = "Shard",
        type_ = "string",
        priority = 1,
        json_path = ".status.shard"
    ),
    printcolumn(
        name = "Interval",
        type_ = "string",
        json_path = ".spec.refreshInterval"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    ),
    selectable = ".spec.regionId"
)]
#[schemars(transform = super::schema::api_server_formats)]
#[serde(rename_all = "camelCase")]
pub struct ImagePipelineQuerySpec {
    /// The region to list image templates in (API `RegionId`), e.g. `cn-hangzhou`.
    #[schemars(length(max = 64))]
    #[x_kube(validation = Rule::new("self.matches('^[a-z]+(-[a-z0-9]+)+$')").message("regionId must be a region ID: lowercase words joined by '-', e.g. cn-hangzhou"))]
    pub region_id: String,

    /// Only image templates in this resource group (API `ResourceGroupId`), e.g. `rg-acfm2abc`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 67))]
    #[x_kube(validation = Rule::new("self.matches('^rg-[A-Za-z0-9]{1,64}$')").message("resourceGroupId must be a resource group ID: rg- followed by letters and digits, e.g. rg-acfm2abc"))]
    pub resource_group_id: Option<String>,

    /// Only the image template with exactly this name (API `Name`): 2 to 128 characters,
    /// starting with a letter, made of letters, digits, ':', '_', '.' and '-'.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    #[x_kube(validation = Rule::new(r"self.matches('^\\pL[\\pL\\pN:_.-]{1,127}$')").message("name must be 2 to 128 characters, start with a letter and contain only letters, digits, ':', '_', '.' and '-'"))]
    pub name: Option<String>,

    /// Only these image templates (API `ImagePipelineId.N`): at most 20 distinct IDs of the form
    /// `ip-2ze5tsl5bp6nf2b3`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20), inner(length(max = 67)))]
    #[x_kube(
        validation = Rule::new("self.all(id, id.matches('^ip-[a-z0-9]{1,64}$'))").message("imagePipelineIds must be image pipeline IDs: ip- followed by lowercase letters and digits"),
        validation = Rule::new("self.all(id, self.exists_one(other, other == id))").message("imagePipelineIds must not repeat an ID")
    )]
    pub image_pipeline_ids: Vec<String>,

    /// Only image templates carrying all of these tags (API `Tag.N.Key` / `Tag.N.Value`): at
    /// most 20, with distinct keys.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 20))]
    #[x_kube(validation = Rule::new("self.all(t, self.exists_one(other, other.key == t.key))").message("tags must not repeat a key"))]
    pub tags: Vec<QueryTag>,

    /// Image templates per API call (API `MaxResults`), 1 to 500. The default, 500, needs the
    /// fewest calls; smaller pages only help to debug paging.
    #[serde(default = "default_page_size")]
    #[schemars(range(min = 1, max = 500))]
    pub page_size: u32,

    /// How often the query is listed again, as a duration such as `30s`, `10m` or `1h`; at
    /// least `30s`. Each refresh is jittered by up to 10% so that queries created together do
    /// not fire together. Set the annotation `ecs.mirror.io/requested-at` to any new value to
    /// refresh immediately.
    #[serde(default = "default_refresh_interval")]
    #[schemars(length(max = 32))]
    #[x_kube(
        validation = Rule::new(r"self.matches('^([0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$')").message("refreshInterval must be a duration: numbers with a unit (ns, us, ms, s, m or h), e.g. 30s, 10m or 1h30m"),
        validation = Rule::new(r"!self.matches('^([0-9]+(\\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$') || duration(self) >= duration('30s')").message("refreshInterval must be at least 30s")
    )]
    pub refresh_interval: String,

    /// Stop refreshing. What is mirrored stays as it is until the query is resumed or deleted.
    #[serde(default)]
    pub suspend: bool,

    /// Delete mirrored ImagePipelines whose image template no longer matches (default true).
    /// With `false`, this query only drops its owner reference and leaves the object in place.
    /// An object another query still matches is never deleted.
    #[serde(default = "default_prune")]
    pub prune: bool,

    /// The Alibaba Cloud credentials to list with. Without it, the operator's own credentials
    /// are used, but only in namespaces the operator was configured to allow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<QueryCredentials>,

    /// What to put on every mirrored ImagePipeline besides the pipeline itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<MirrorTemplate>,
}

/// One tag condition of a query.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct QueryTag {
    /// The tag key, 1 to 128 characters.
    #[schemars(length(min = 1, max = 128))]
    #[x_kube(validation = Rule::new("size(self) >= 1").message("tag keys must not be empty"))]
    pub key: String,
    /// The tag value, at most 128 characters. Without it, any value of `key` matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 128))]
    pub value: Option<String>,
}

/// Where the query's credentials come from.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct QueryCredentials {
    /// A Secret in the query's own namespace with the keys `accessKeyId`, `accessKeySecret` and
    /// optionally `securityToken` (STS credentials).
    pub secret_ref: SecretReference,
}

/// A reference to a Secret in the query's namespace.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct SecretReference {
    /// The name of the Secret.
    #[schemars(length(min = 1, max = 253))]
    #[x_kube(validation = Rule::new(r"self.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$')").message("secretRef.name must be a Secret name: lowercase letters, digits, '-' and '.', starting and ending with a letter or digit"))]
    pub name: String,
}

/// The template of the mirrored objects.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct MirrorTemplate {
    /// Labels and annotations for every mirrored ImagePipeline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<TemplateMetadata>,
}

/// Labels and annotations of the mirrored objects. When several queries share an object, their
/// templates are merged; on a conflicting key the query whose name sorts first wins.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct TemplateMetadata {
    /// Labels (at most 8), with Kubernetes label syntax.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 8, "additionalProperties" = {"type": "string", "maxLength": 63}))]
    #[x_kube(
        validation = Rule::new(r"self.all(k, self[k].matches('^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$'))").message("label values must be empty or at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit"),
        validation = Rule::new(r"self.all(k, k.matches('^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$'))").message("label keys must be an optional DNS subdomain prefix and '/', then a name of at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit"),
        validation = Rule::new("self.all(k, !k.contains('/') || k.split('/')[0].size() <= 253)").message("label key prefixes must be at most 253 characters")
    )]
    pub labels: BTreeMap<String, String>,
    /// Annotations (at most 8); keys with Kubernetes label-key syntax.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = 8, "additionalProperties" = {"type": "string", "maxLength": 4096}))]
    #[x_kube(
        validation = Rule::new(r"self.all(k, k.matches('^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$'))").message("annotation keys must be an optional DNS subdomain prefix and '/', then a name of at most 63 letters, digits, '-', '_' and '.', starting and ending with a letter or digit"),
        validation = Rule::new("self.all(k, !k.contains('/') || k.split('/')[0].size() <= 253)").message("annotation key prefixes must be at most 253 characters")
    )]
    pub annotations: BTreeMap<String, String>,
}

/// What the operator observed and did.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[schemars(transform = super::schema::api_server_formats)]
#[serde(rename_all = "camelCase")]
pub struct ImagePipelineQueryStatus {
    /// The `metadata.generation` of the spec the status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,

    /// The operator instance that serves this query: its shard name (the instance started
    /// with `--shard`, selecting queries by `--watch-label-selector`), or `main` for the
    /// instance without one. Move a query to another shard by changing its
    /// `sharding.fluxcd.io/key` label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,

    /// `Ready` is True when the last sync mirrored a complete listing. Its reason is one of
    /// `Synced`, `InvalidSpec`, `CredentialsError`, `ApiError`, `Throttled` or `Suspended`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[x_kube(merge_strategy = ListMerge::Map(vec!["type".into()]))]
    pub conditions: Vec<Condition>,

    /// How many image templates the last complete listing matched (and this query mirrors).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matched_count: Option<u32>,

    /// When the query was last listed, successfully or not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<Time>,

    /// When a listing last completed and was mirrored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_successful_sync_time: Option<Time>,

    /// When the query is due to be listed again (absent while suspended or invalid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_sync_time: Option<Time>,

    /// Whose credentials were used: `secret/<name>` or `ambient/<provider>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credentials: Option<String>,

    /// The value of the `ecs.mirror.io/requested-at` annotation the last sync handled.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_handled_requested_at: Option<String>,

    /// The error of the last sync, when it failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<SyncErrorStatus>,

    /// What the last successful sync did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_result: Option<SyncResultStatus>,
}

/// Why the last sync failed.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[schemars(transform = super::schema::api_server_formats)]
#[serde(rename_all = "camelCase")]
pub struct SyncErrorStatus {
    /// The API error code (e.g. `Throttling.User`, `InvalidAccessKeyId.NotFound`) or the name of
    /// a local failure (`Transport`, `Timeout`, `InvalidSpec`, `CredentialsError`, ...).
    pub code: String,
    /// What went wrong, as the API or the operator said it. Never contains secrets.
    pub message: String,
    /// The API's `RequestId`, to quote to Alibaba Cloud support.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
    /// The 1-based page of the listing that failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
}

/// What a successful sync did.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[schemars(transform = super::schema::api_server_formats)]
#[serde(rename_all = "camelCase")]
pub struct SyncResultStatus {
    /// API pages fetched.
    pub pages: u32,
    /// ImagePipelines created.
    pub created: u32,
    /// ImagePipelines rewritten because their pipeline, labels, annotations or owners changed.
    pub updated: u32,
    /// ImagePipelines deleted because no query matches them any more.
    pub deleted: u32,
    /// ImagePipelines this query stopped owning but left in place, because another query still
    /// matches them or `prune` is false.
    pub released: u32,
    /// ImagePipelines that were already up to date (not written).
    pub unchanged: u32,
    /// Deletions held back until the other queries of the namespace have listed once (after a
    /// restart, or a new query), so an object one of them matches is never deleted and re-created.
    #[serde(default)]
    pub deferred: u32,
    /// Items of the listing that could not be mirrored: without a readable ImagePipelineId, or
    /// with an ID that is not a valid object name (the Ready condition's message names them).
    #[serde(default)]
    pub skipped: u32,
    /// Writes the API server refused (quota, admission, validation); the others were made.
    #[serde(default)]
    pub failed: u32,
}

impl ImagePipelineQuery {
    /// The `Ready` condition, if any.
    pub fn ready_condition(&self) -> Option<&Condition> {
        self.status
            .as_ref()?
            .conditions
            .iter()
            .find(|c| c.type_ == "Ready")
    }
}

/// Both CRDs of the project (ImagePipeline, then ImagePipelineQuery) as one multi-document YAML
/// stream, exactly as committed under `crds/` and printed by `imagepipeline-operator crds`.
pub fn crds_yaml() -> String {
    use kube::CustomResourceExt;
    [
        super::pipeline::ImagePipeline::crd(),
        ImagePipelineQuery::crd(),
    ]
    .iter()
    .map(|crd| {
        // A CRD is plain data: serializing it cannot fail.
        let body = serde_yaml::to_string(crd).unwrap_or_default();
        format!("---\n{body}")
    })
    .collect()
}
