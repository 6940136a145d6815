//! What the benchmarks share: process measurements from `/proc/self`, medians, environment
//! lists, and fixtures of realistic pipelines and of the ImagePipelines the API server would
//! store for them.
//!
//! Each bench includes this module and uses a different part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;

use imagepipeline_operator::controller::FIELD_MANAGER;
use imagepipeline_operator::controller::desired::{OwnerInfo, Owners};
use imagepipeline_operator::controller::mirrored::Mirrored;
use imagepipeline_operator::controller::ownership::applied_fields;
use imagepipeline_operator::controller::plan::{PlanInput, plan};
use imagepipeline_operator::crd::ImagePipeline;
use imagepipeline_operator::ecs::ImagePipelineItem;
use imagepipeline_operator::ecs::model::decode_page;
use imagepipeline_operator::sim;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry, Time};
use serde_json::{Value, json};

/// The region every fixture pipeline lives in.
pub const REGION: &str = "cn-hangzhou";
/// The namespace of the fixture query and its objects.
pub const NAMESPACE: &str = "payments";
/// The fixture query's name and UID.
pub const QUERY: &str = "golden-images";
/// The fixture query's UID.
pub const QUERY_UID: &str = "6f1c2b7e-1d2a-4c55-9b1e-0a3f5c9d2e10";
/// When the fixture objects were written.
pub const EARLIER: &str = "2026-03-01T11:00:00Z";
/// When the benchmarked sync runs.
pub const NOW: &str = "2026-03-01T12:00:00Z";

/// Process CPU time (user + system) in seconds, all threads, from `/proc/self/stat`.
pub fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // USER_HZ is 100 on Linux for every architecture's user-space ABI.
    (ticks(11) + ticks(12)) / 100.0
}

/// A `/proc/self/status` value in MiB (`VmRSS`, `VmHWM`, ...).
pub fn status_mib(key: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// Peak resident set size of this process in MiB (`VmHWM`).
pub fn peak_rss_mib() -> f64 {
    status_mib("VmHWM")
}

/// The median of `v` (the upper one for an even count); 0 when empty.
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// A comma-separated list of numbers from the environment.
pub fn env_list(name: &str, default: &str) -> Vec<usize> {
    std::env::var(name)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect()
}

/// `BENCH_RUNS` (at least 1).
pub fn runs(default: usize) -> usize {
    env_list("BENCH_RUNS", &default.to_string())
        .first()
        .copied()
        .unwrap_or(default)
        .max(1)
}

/// Whether the executable was started by `cargo bench` (which passes `--bench`); `cargo test
/// --benches` does not, and the heavy work is skipped then.
pub fn started_by_cargo_bench() -> bool {
    std::env::args().any(|a| a == "--bench")
}

/// `n` realistic pipelines of [`REGION`] as the ECS API sends them (the simulator's generator),
/// with the region filled in.
pub fn api_items(n: usize) -> Vec<Value> {
    sim::generate(n, 42)
        .into_iter()
        .map(|mut item| {
            item["RegionId"] = json!(REGION);
            item
        })
        .collect()
}

/// `n` realistic pipelines as the client decodes them.
pub fn items(n: usize) -> Vec<ImagePipelineItem> {
    let body = json!({"ImagePipeline": {"ImagePipelineSet": api_items(n)}});
    let page = decode_page(&body);
    assert_eq!(page.items.len(), n, "every generated item decodes");
    page.items
}

/// The fixture query as a plan owner, with the labels its template puts on every object.
pub fn owners() -> Owners {
    let info = OwnerInfo {
        name: QUERY.into(),
        uid: QUERY_UID.into(),
        template: imagepipeline_operator::crd::query::TemplateMetadata {
            labels: [
                ("team".to_string(), "payments".to_string()),
                ("app.kubernetes.io/managed-by".into(), FIELD_MANAGER.into()),
            ]
            .into(),
            annotations: BTreeMap::new(),
        },
        prune: true,
    };
    [(info.uid.clone(), info)].into()
}

/// The ImagePipelines the API server stores after the fixture query mirrored `items` at
/// [`EARLIER`]: the applied objects plus uid, resourceVersion, generation, creationTimestamp and
/// the operator's managed-fields entry, as a LIST returns them.
pub fn stored_objects(items: &[ImagePipelineItem]) -> Vec<ImagePipeline> {
    let empty = BTreeMap::new();
    let owners = owners();
    let planned = plan(&PlanInput {
        query_name: QUERY,
        query_uid: QUERY_UID,
        namespace: NAMESPACE,
        region_id: REGION,
        items,
        existing: &empty,
        owners: &owners,
        prune: true,
        claims: &std::collections::BTreeMap::new(),
        awaiting_listings: false,
        now: EARLIER,
        instance_label: None,
    });
    let created: Time = Time(EARLIER.parse().expect("timestamp"));
    planned
        .writes
        .into_iter()
        .enumerate()
        .map(|(i, w)| {
            let mut obj = w.object().expect("a create carries its content");
            let applied = serde_json::to_value(&obj).expect("serialize");
            obj.metadata.uid = Some(format!("{:08x}-5c1e-4b7a-9d3f-{:012x}", i, i * 7919));
            obj.metadata.resource_version = Some((100_000 + i).to_string());
            obj.metadata.generation = Some(1);
            obj.metadata.creation_timestamp = Some(created.clone());
            obj.metadata.managed_fields = Some(vec![ManagedFieldsEntry {
                api_version: Some("ecs.mirror.io/v1alpha1".into()),
                fields_type: Some("FieldsV1".into()),
                fields_v1: Some(FieldsV1(applied_fields(&applied))),
                manager: Some(FIELD_MANAGER.into()),
                operation: Some("Apply".into()),
                subresource: None,
                time: Some(created.clone()),
            }]);
            obj
        })
        .collect()
}

/// The objects by name, as the plan takes them (the operator's records of them).
pub fn by_name(objects: &[ImagePipeline]) -> BTreeMap<String, Arc<Mirrored>> {
    objects
        .iter()
        .map(|o| {
            (
                o.metadata.name.clone().unwrap_or_default(),
                Arc::new(Mirrored::of(o)),
            )
        })
        .collect()
}
