//! Prometheus metrics (`prometheus-client`), all prefixed `imagepipeline_`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use jiff::Timestamp;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::ecs::CallObserver;

/// Labels naming one query.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueryLabels {
    /// Namespace of the ImagePipelineQuery.
    pub namespace: String,
    /// Name of the ImagePipelineQuery.
    pub query: String,
}

/// Label of a sync's outcome.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// `Synced`, or the failure reason (`ApiError`, `Throttled`, `CredentialsError`, ...).
    pub result: String,
}

/// Labels of one ECS call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    /// The API action, e.g. `DescribeImagePipelines`.
    pub action: String,
    /// `Success`, the API error code, or a local failure name.
    pub code: String,
}

/// Label of an object write.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WriteLabels {
    /// `created`, `updated`, `released` (this query's owner reference removed) or `deleted`.
    pub operation: String,
}

/// Label naming a credentials provider.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ProviderLabels {
    /// e.g. `ambient/rrsa`.
    pub provider: String,
}

/// Every metric of the operator.
#[derive(Debug)]
pub struct Metrics {
    registry: Mutex<Registry>,
    /// Syncs by result.
    pub syncs: Family<ResultLabels, Counter>,
    /// Sync duration in seconds.
    pub sync_duration: Histogram,
    /// ECS calls by action and result code (every attempt).
    pub ecs_calls: Family<CallLabels, Counter>,
    /// ECS calls retried, by action and the code that caused the retry.
    pub ecs_retries: Family<CallLabels, Counter>,
    /// ECS calls answered with a throttling code.
    pub ecs_throttled: Family<CallLabels, Counter>,
    /// Pipelines matched by each query at its last successful sync.
    pub pipelines_mirrored: Family<QueryLabels, Gauge>,
    /// ImagePipeline writes by operation.
    pub objects_written: Family<WriteLabels, Counter>,
    /// Seconds since each query's last successful sync, computed at scrape time.
    pub seconds_since_success: Family<QueryLabels, Gauge>,
    /// 1 while this replica holds the leader lease (or leader election is off).
    pub leader: Gauge,
    /// 1 for the ambient credentials provider in use.
    pub credentials_provider: Family<ProviderLabels, Gauge>,
    last_success: Mutex<HashMap<QueryLabels, i64>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("imagepipeline");
        let m = Self {
            registry: Mutex::new(Registry::default()),
            syncs: Family::default(),
            sync_duration: Histogram::new(exponential_buckets(0.01, 2.0, 14)),
            ecs_calls: Family::default(),
            ecs_retries: Family::default(),
            ecs_throttled: Family::default(),
            pipelines_mirrored: Family::default(),
            objects_written: Family::default(),
            seconds_since_success: Family::default(),
            leader: Gauge::default(),
            credentials_provider: Family::default(),
            last_success: Mutex::default(),
        };
        registry.register(
            "syncs",
            "Syncs of ImagePipelineQuery objects by result",
            m.syncs.clone(),
        );
        registry.register(
            "sync_duration_seconds",
            "Duration of a sync (listing, writes and status)",
            m.sync_duration.clone(),
        );
        registry.register(
            "ecs_calls",
            "ECS API calls by action and result code",
            m.ecs_calls.clone(),
        );
        registry.register(
            "ecs_retries",
            "ECS API calls retried after a transient failure",
            m.ecs_retries.clone(),
        );
        registry.register(
            "ecs_throttled",
            "ECS API calls answered with a throttling code",
            m.ecs_throttled.clone(),
        );
        registry.register(
            "pipelines_mirrored",
            "Pipelines matched by each query at its last successful sync",
            m.pipelines_mirrored.clone(),
        );
        registry.register(
            "objects_written",
            "ImagePipeline objects created, updated or deleted",
            m.objects_written.clone(),
        );
        registry.register(
            "seconds_since_last_successful_sync",
            "Seconds since each query last synced successfully",
            m.seconds_since_success.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica is the leader",
            m.leader.clone(),
        );
        registry.register(
            "credentials_provider",
            "1 for the ambient credentials provider in use",
            m.credentials_provider.clone(),
        );
        *m.registry.lock().unwrap_or_else(|p| p.into_inner()) = registry;
        m
    }

    /// Records a successful sync of a query at `at`.
    pub fn record_success(&self, query: QueryLabels, matched: usize, at: Timestamp) {
        self.pipelines_mirrored
            .get_or_create(&query)
            .set(i64::try_from(matched).unwrap_or(i64::MAX));
        self.last_success
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(query, at.as_second());
    }

    /// Forgets a deleted query.
    pub fn forget_query(&self, query: &QueryLabels) {
        self.pipelines_mirrored.remove(query);
        self.seconds_since_success.remove(query);
        self.last_success
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(query);
    }

    /// Counts a sync by result and records its duration.
    pub fn record_sync(&self, result: &str, seconds: f64) {
        self.syncs
            .get_or_create(&ResultLabels {
                result: result.to_string(),
            })
            .inc();
        self.sync_duration.observe(seconds);
    }

    /// Counts object writes.
    pub fn record_writes(&self, created: u64, updated: u64, deleted: u64) {
        for (operation, n) in [
            ("created", created),
            ("updated", updated),
            ("deleted", deleted),
        ] {
            if n > 0 {
                self.objects_written
                    .get_or_create(&WriteLabels {
                        operation: operation.into(),
                    })
                    .inc_by(n);
            }
        }
    }

    /// The Prometheus text exposition at `now`.
    pub fn encode(&self, now: Timestamp) -> String {
        for (query, at) in self
            .last_success
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            self.seconds_since_success
                .get_or_create(query)
                .set(now.as_second() - at);
        }
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}

impl CallObserver for Metrics {
    fn on_call(&self, action: &str, code: &str) {
        let labels = CallLabels {
            action: action.into(),
            code: code.into(),
        };
        self.ecs_calls.get_or_create(&labels).inc();
        if code.starts_with("Throttling") || code == "Throttled" {
            self.ecs_throttled.get_or_create(&labels).inc();
        }
    }

    fn on_retry(&self, action: &str, code: &str) {
        self.ecs_retries
            .get_or_create(&CallLabels {
                action: action.into(),
                code: code.into(),
            })
            .inc();
    }
}

impl crate::controller::SyncObserver for Metrics {
    fn sync_finished(
        &self,
        namespace: &str,
        name: &str,
        reason: &str,
        elapsed: std::time::Duration,
        matched: Option<u32>,
    ) {
        self.record_sync(reason, elapsed.as_secs_f64());
        if let Some(matched) = matched {
            let query = QueryLabels {
                namespace: namespace.into(),
                query: name.into(),
            };
            self.record_success(query, matched as usize, Timestamp::now());
        }
    }

    fn object_written(&self, kind: crate::controller::plan::WriteKind) {
        use crate::controller::plan::WriteKind;
        let operation = match kind {
            WriteKind::Create => "created",
            WriteKind::Update => "updated",
            WriteKind::Release => "released",
        };
        self.objects_written
            .get_or_create(&WriteLabels {
                operation: operation.into(),
            })
            .inc();
    }

    fn object_deleted(&self) {
        self.objects_written
            .get_or_create(&WriteLabels {
                operation: "deleted".into(),
            })
            .inc();
    }
}

/// A shared metrics handle.
pub type SharedMetrics = Arc<Metrics>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calls_retries_and_syncs_appear_in_the_exposition() {
        let m = Metrics::new();
        m.on_call("DescribeImagePipelines", "Success");
        m.on_call("DescribeImagePipelines", "Throttling.User");
        m.on_retry("DescribeImagePipelines", "Throttling.User");
        m.record_sync("Synced", 0.2);
        m.record_writes(3, 0, 1);
        let q = QueryLabels {
            namespace: "ns".into(),
            query: "q".into(),
        };
        let now = Timestamp::now();
        m.record_success(q, 7, Timestamp::from_second(now.as_second() - 42).unwrap());
        let text = m.encode(now);
        assert!(
            text.contains(
                r#"imagepipeline_ecs_calls_total{action="DescribeImagePipelines",code="Success"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"imagepipeline_ecs_throttled_total{action="DescribeImagePipelines",code="Throttling.User"} 1"#));
        assert!(text.contains(r#"imagepipeline_ecs_retries_total{action="DescribeImagePipelines",code="Throttling.User"} 1"#));
        assert!(text.contains(r#"imagepipeline_syncs_total{result="Synced"} 1"#));
        assert!(text.contains(r#"imagepipeline_objects_written_total{operation="created"} 3"#));
        assert!(text.contains(r#"imagepipeline_pipelines_mirrored{namespace="ns",query="q"} 7"#));
        assert!(text.contains(
            r#"imagepipeline_seconds_since_last_successful_sync{namespace="ns",query="q"} 42"#
        ));
        assert!(text.contains("imagepipeline_sync_duration_seconds_count 1"));
    }
}
