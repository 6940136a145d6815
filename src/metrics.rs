//! Prometheus metrics (`prometheus-client`), prefixed `imagepipeline_`, plus the standard
//! `process_resident_memory_bytes`. The chart's Grafana dashboard and PrometheusRule use these
//! names; `tests/observability.rs` fails when one of theirs is not exported.

mod process;

use std::borrow::Cow;
use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry};

use crate::controller::plan::WriteAction;
use crate::ecs::CallObserver;

/// Labels naming one query.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueryLabels {
    /// Namespace of the ImagePipelineQuery.
    pub namespace: String,
    /// Name of the ImagePipelineQuery.
    pub query: String,
}

/// Labels of a query's `Ready` condition.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReadyLabels {
    /// Namespace of the ImagePipelineQuery.
    pub namespace: String,
    /// Name of the ImagePipelineQuery.
    pub query: String,
    /// The condition's reason (`Synced`, `ApiError`, `Suspended`, ...).
    pub reason: String,
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

/// Label of a listed page.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PageLabels {
    /// `reused` (the same page as the query's last listing, taken without decoding it) or
    /// `decoded`.
    pub path: String,
}

/// Label of a refused object write.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FailureLabels {
    /// `create`, `update`, `release` or `delete`.
    pub action: String,
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
    /// Pages of listings a sync read, by how (`reused` or `decoded`).
    pub listing_pages: Family<PageLabels, Counter>,
    /// ImagePipeline writes the API server refused, by action.
    pub object_write_failures: Family<FailureLabels, Counter>,
    /// Per query, items of its last listing that could not be mirrored.
    pub query_skipped_items: Family<QueryLabels, Gauge>,
    /// Seconds since each query's last successful sync, computed at scrape time.
    pub seconds_since_success: Family<QueryLabels, Gauge>,
    /// 1 while this replica holds the leader lease (or leader election is off).
    pub leader: Gauge,
    /// 1 for the ambient credentials provider in use.
    pub credentials_provider: Family<ProviderLabels, Gauge>,
    /// Per query, one series labelled with its `Ready` reason: 1 when Ready, 0 when not.
    pub query_ready: Family<ReadyLabels, Gauge>,
    /// Per query, when its `Ready` status last changed in this process (Unix seconds).
    pub query_ready_transition: Family<QueryLabels, Gauge>,
    /// Per query, its `refreshInterval` in seconds.
    pub query_refresh_interval: Family<QueryLabels, Gauge<f64, AtomicU64>>,
    /// ECS calls that waited for a rate-limit token (read from the limiter at scrape time).
    pub rate_limit_waits: Counter,
    /// Seconds ECS calls spent waiting for rate-limit tokens.
    pub rate_limit_wait_seconds: Counter<f64, AtomicU64>,
    /// Resident memory of the process (`process_resident_memory_bytes`), read at scrape time.
    pub resident_memory: Gauge,
    /// The container's cgroup memory limit, 0 when there is none; read at scrape time.
    pub memory_limit: Gauge,
    queries: Mutex<HashMap<QueryLabels, QueryState>>,
    families: Vec<String>,
}

/// The `path` label values of `listing_pages`.
const PAGE_PATHS: [&str; 2] = ["reused", "decoded"];

/// The `operation` label values of `objects_written`.
const WRITE_OPERATIONS: [&str; 4] = ["created", "updated", "released", "deleted"];

/// A metric whose `# HELP` and `# TYPE` lines are exposed even before its first series exists
/// (`prometheus-client` leaves out an empty family otherwise).
#[derive(Debug)]
struct Declared(Box<dyn Metric>);

impl EncodeMetric for Declared {
    fn encode(&self, encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        self.0.encode(encoder)
    }

    fn metric_type(&self) -> MetricType {
        self.0.metric_type()
    }

    fn is_empty(&self) -> bool {
        false
    }
}

/// What the metrics remember of one query.
#[derive(Debug, Default)]
struct QueryState {
    last_success: Option<i64>,
    /// The reason and readiness last reported.
    ready: Option<(String, bool)>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric registered, its series without a `shard` label.
    pub fn new() -> Self {
        Self::with_root(Registry::default())
    }

    /// A registry with every metric registered, every series labelled `shard="<shard>"`
    /// (`main` for the instance without `--shard`), so the instances of a sharded installation
    /// tell themselves apart on any dashboard.
    pub fn for_shard(shard: &str) -> Self {
        Self::with_root(Registry::with_labels(
            [(Cow::Borrowed("shard"), Cow::Owned(shard.to_string()))].into_iter(),
        ))
    }

    fn with_root(mut root: Registry) -> Self {
        let m = Self {
            registry: Mutex::new(Registry::default()),
            syncs: Family::default(),
            sync_duration: Histogram::new(exponential_buckets(0.01, 2.0, 14)),
            ecs_calls: Family::default(),
            ecs_retries: Family::default(),
            ecs_throttled: Family::default(),
            pipelines_mirrored: Family::default(),
            objects_written: Family::default(),
            listing_pages: Family::default(),
            object_write_failures: Family::default(),
            query_skipped_items: Family::default(),
            seconds_since_success: Family::default(),
            leader: Gauge::default(),
            credentials_provider: Family::default(),
            query_ready: Family::default(),
            query_ready_transition: Family::default(),
            query_refresh_interval: Family::default(),
            rate_limit_waits: Counter::default(),
            rate_limit_wait_seconds: Counter::default(),
            resident_memory: Gauge::default(),
            memory_limit: Gauge::default(),
            queries: Mutex::default(),
            families: Vec::new(),
        };
        root.register(
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            m.resident_memory.clone(),
        );
        let mut families = vec!["process_resident_memory_bytes".to_string()];
        let registry = root.sub_registry_with_prefix("imagepipeline");
        let mut register = |name: &str, help: &str, metric: Box<dyn Metric>| {
            families.push(format!("imagepipeline_{name}"));
            registry.register(name, help, Declared(metric));
        };
        register(
            "syncs",
            "Syncs of ImagePipelineQuery objects by result",
            Box::new(m.syncs.clone()),
        );
        register(
            "sync_duration_seconds",
            "Duration of a sync (listing, writes and status)",
            Box::new(m.sync_duration.clone()),
        );
        register(
            "ecs_calls",
            "ECS API calls by action and result code",
            Box::new(m.ecs_calls.clone()),
        );
        register(
            "ecs_retries",
            "ECS API calls retried after a transient failure",
            Box::new(m.ecs_retries.clone()),
        );
        register(
            "ecs_throttled",
            "ECS API calls answered with a throttling code",
            Box::new(m.ecs_throttled.clone()),
        );
        register(
            "pipelines_mirrored",
            "Pipelines matched by each query at its last successful sync",
            Box::new(m.pipelines_mirrored.clone()),
        );
        register(
            "objects_written",
            "ImagePipeline objects created, updated or deleted",
            Box::new(m.objects_written.clone()),
        );
        register(
            "listing_pages",
            "Pages of listings a sync read: reused (the same as the query's last listing, not decoded again) or decoded",
            Box::new(m.listing_pages.clone()),
        );
        register(
            "object_write_failures",
            "ImagePipeline writes the API server refused (quota, admission, invalid object, conflict), by action",
            Box::new(m.object_write_failures.clone()),
        );
        register(
            "query_skipped_items",
            "Items of each query's last listing that could not be mirrored (no readable ID, or an ID that is not an object name)",
            Box::new(m.query_skipped_items.clone()),
        );
        register(
            "seconds_since_last_successful_sync",
            "Seconds since each query last synced successfully",
            Box::new(m.seconds_since_success.clone()),
        );
        register(
            "leader",
            "1 while this replica is the leader",
            Box::new(m.leader.clone()),
        );
        register(
            "credentials_provider",
            "1 for the ambient credentials provider in use",
            Box::new(m.credentials_provider.clone()),
        );
        register(
            "query_ready",
            "Per query and Ready reason: 1 when the query is Ready, 0 when not",
            Box::new(m.query_ready.clone()),
        );
        register(
            "query_ready_last_transition_timestamp_seconds",
            "When each query's Ready status last changed in this process (Unix seconds)",
            Box::new(m.query_ready_transition.clone()),
        );
        register(
            "query_refresh_interval_seconds",
            "Each query's refreshInterval in seconds",
            Box::new(m.query_refresh_interval.clone()),
        );
        register(
            "ecs_rate_limit_waits",
            "ECS API calls that waited for a rate-limit token",
            Box::new(m.rate_limit_waits.clone()),
        );
        register(
            "ecs_rate_limit_wait_seconds",
            "Seconds ECS API calls spent waiting for rate-limit tokens",
            Box::new(m.rate_limit_wait_seconds.clone()),
        );
        register(
            "container_memory_limit_bytes",
            "Memory limit of the operator's container (cgroup), 0 when unlimited",
            Box::new(m.memory_limit.clone()),
        );
        *m.registry.lock().unwrap_or_else(|p| p.into_inner()) = root;
        m.initialise_known_series();
        Metrics { families, ..m }
    }

    /// The name of every metric family this registry defines, as exposed (with its prefix,
    /// without the `_total` suffix of counters).
    pub fn family_names(&self) -> &[String] {
        &self.families
    }

    /// Creates, at 0, the series whose label values are known before anything happens: syncs by
    /// every `Ready` reason, writes by every operation, and successful ECS calls; so that
    /// dashboards and alerts see a 0 rather than a missing series.
    fn initialise_known_series(&self) {
        use crate::controller::status::reason;
        for result in [
            reason::SYNCED,
            reason::INVALID_SPEC,
            reason::CREDENTIALS_ERROR,
            reason::API_ERROR,
            reason::THROTTLED,
            reason::SUSPENDED,
            reason::PARTIALLY_SYNCED,
            reason::WRITE_FAILED,
        ] {
            let _ = self.syncs.get_or_create(&ResultLabels {
                result: result.into(),
            });
        }
        for operation in WRITE_OPERATIONS {
            let _ = self.objects_written.get_or_create(&WriteLabels {
                operation: operation.into(),
            });
        }
        for path in PAGE_PATHS {
            let _ = self
                .listing_pages
                .get_or_create(&PageLabels { path: path.into() });
        }
        for action in WriteAction::ALL {
            let _ = self.object_write_failures.get_or_create(&FailureLabels {
                action: action.as_str().into(),
            });
        }
        let _ = self.ecs_calls.get_or_create(&CallLabels {
            action: crate::ecs::DESCRIBE_IMAGE_PIPELINES.into(),
            code: "Success".into(),
        });
    }

    fn queries(&self) -> std::sync::MutexGuard<'_, HashMap<QueryLabels, QueryState>> {
        self.queries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records a successful sync of a query at `at`.
    pub fn record_success(&self, query: QueryLabels, matched: usize, at: Timestamp) {
        self.pipelines_mirrored
            .get_or_create(&query)
            .set(i64::try_from(matched).unwrap_or(i64::MAX));
        self.queries().entry(query).or_default().last_success = Some(at.as_second());
    }

    /// Records the `Ready` reason of a query at `at`: `Synced` and `PartiallySynced` are Ready,
    /// every other reason is not. The transition time moves only when readiness changes, not
    /// the reason.
    pub fn record_ready(&self, query: QueryLabels, reason: &str, at: Timestamp) {
        use crate::controller::status::reason::{PARTIALLY_SYNCED, SYNCED};
        let ready = reason == SYNCED || reason == PARTIALLY_SYNCED;
        let mut queries = self.queries();
        let state = queries.entry(query.clone()).or_default();
        let previous = state.ready.replace((reason.to_string(), ready));
        if let Some((old_reason, _)) = &previous {
            if old_reason != reason {
                self.query_ready.remove(&ready_labels(&query, old_reason));
            }
        }
        self.query_ready
            .get_or_create(&ready_labels(&query, reason))
            .set(i64::from(ready));
        if previous.is_none_or(|(_, was_ready)| was_ready != ready) {
            self.query_ready_transition
                .get_or_create(&query)
                .set(at.as_second());
        }
    }

    /// Records a query's refresh interval.
    pub fn record_interval(&self, query: &QueryLabels, interval: Duration) {
        self.query_refresh_interval
            .get_or_create(query)
            .set(interval.as_secs_f64());
    }

    /// Forgets a deleted query: none of its series is exported any more.
    pub fn forget_query(&self, query: &QueryLabels) {
        self.pipelines_mirrored.remove(query);
        self.seconds_since_success.remove(query);
        self.query_ready_transition.remove(query);
        self.query_refresh_interval.remove(query);
        self.query_skipped_items.remove(query);
        if let Some(state) = self.queries().remove(query) {
            if let Some((reason, _)) = state.ready {
                self.query_ready.remove(&ready_labels(query, &reason));
            }
        }
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
        for (query, state) in self.queries().iter() {
            if let Some(at) = state.last_success {
                self.seconds_since_success
                    .get_or_create(query)
                    .set(now.as_second() - at);
            }
        }
        // Held while the scrape-time values are brought up to date, so that two concurrent
        // scrapes cannot add the same rate-limit waits twice.
        let registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        let waits = crate::ecs::ratelimit::wait_totals();
        self.rate_limit_waits
            .inc_by(waits.waits.saturating_sub(self.rate_limit_waits.get()));
        let waited = waits.waited.as_secs_f64() - self.rate_limit_wait_seconds.get();
        if waited > 0.0 {
            self.rate_limit_wait_seconds.inc_by(waited);
        }
        let bytes = |b: Option<u64>| b.map_or(0, |b| i64::try_from(b).unwrap_or(i64::MAX));
        self.resident_memory
            .set(bytes(process::resident_memory_bytes()));
        self.memory_limit.set(bytes(process::memory_limit_bytes()));
        let mut out = String::new();
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
        let query = query_labels(namespace, name);
        let now = Timestamp::now();
        self.record_ready(query.clone(), reason, now);
        if let Some(matched) = matched {
            self.record_success(query, matched as usize, now);
        }
    }

    fn refresh_interval(&self, namespace: &str, name: &str, interval: Duration) {
        self.record_interval(&query_labels(namespace, name), interval);
    }

    fn query_deleted(&self, namespace: &str, name: &str) {
        self.forget_query(&query_labels(namespace, name));
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

    fn page_read(&self, reused: bool) {
        let path = PAGE_PATHS[usize::from(!reused)];
        self.listing_pages
            .get_or_create(&PageLabels { path: path.into() })
            .inc();
    }

    fn object_deleted(&self) {
        self.objects_written
            .get_or_create(&WriteLabels {
                operation: "deleted".into(),
            })
            .inc();
    }

    fn write_failed(&self, action: WriteAction) {
        self.object_write_failures
            .get_or_create(&FailureLabels {
                action: action.as_str().into(),
            })
            .inc();
    }

    fn items_skipped(&self, namespace: &str, name: &str, count: u32) {
        self.query_skipped_items
            .get_or_create(&query_labels(namespace, name))
            .set(i64::from(count));
    }
}

fn query_labels(namespace: &str, name: &str) -> QueryLabels {
    QueryLabels {
        namespace: namespace.into(),
        query: name.into(),
    }
}

fn ready_labels(query: &QueryLabels, reason: &str) -> ReadyLabels {
    ReadyLabels {
        namespace: query.namespace.clone(),
        query: query.query.clone(),
        reason: reason.to_string(),
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

    fn labels(query: &str) -> QueryLabels {
        QueryLabels {
            namespace: "ns".into(),
            query: query.into(),
        }
    }

    fn at(second: i64) -> Timestamp {
        Timestamp::from_second(second).expect("valid")
    }

    #[test]
    fn ready_keeps_one_series_per_query_and_moves_its_transition_only_on_a_change() {
        let m = Metrics::new();
        m.record_ready(labels("q"), "Synced", at(1000));
        m.record_ready(labels("q"), "ApiError", at(2000));
        m.record_ready(labels("q"), "Throttled", at(3000));
        let text = m.encode(at(3500));
        assert!(
            text.contains(
                r#"imagepipeline_query_ready{namespace="ns",query="q",reason="Throttled"} 0"#
            ),
            "{text}"
        );
        assert!(!text.contains(r#"reason="ApiError""#), "{text}");
        assert!(!text.contains(r#"reason="Synced""#), "{text}");
        assert!(
            text.contains(r#"imagepipeline_query_ready_last_transition_timestamp_seconds{namespace="ns",query="q"} 2000"#),
            "not Ready since the first failure: {text}"
        );
        m.record_ready(labels("q"), "Synced", at(4000));
        let text = m.encode(at(4000));
        assert!(
            text.contains(
                r#"imagepipeline_query_ready{namespace="ns",query="q",reason="Synced"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains(
            r#"imagepipeline_query_ready_last_transition_timestamp_seconds{namespace="ns",query="q"} 4000"#
        ));
    }

    #[test]
    fn sync_observer_records_readiness_success_and_the_interval_and_forgets_a_deleted_query() {
        use crate::controller::SyncObserver;
        let m = Metrics::new();
        m.refresh_interval("ns", "q", Duration::from_secs(600));
        m.sync_finished("ns", "q", "Synced", Duration::from_millis(20), Some(4));
        m.sync_finished("ns", "other", "InvalidSpec", Duration::ZERO, None);
        let text = m.encode(Timestamp::now());
        for series in [
            r#"imagepipeline_query_refresh_interval_seconds{namespace="ns",query="q"} 600.0"#,
            r#"imagepipeline_query_ready{namespace="ns",query="q",reason="Synced"} 1"#,
            r#"imagepipeline_query_ready{namespace="ns",query="other",reason="InvalidSpec"} 0"#,
            r#"imagepipeline_pipelines_mirrored{namespace="ns",query="q"} 4"#,
            r#"imagepipeline_seconds_since_last_successful_sync{namespace="ns",query="q"} "#,
        ] {
            assert!(text.contains(series), "{series} missing:\n{text}");
        }
        m.query_deleted("ns", "q");
        let text = m.encode(Timestamp::now());
        assert!(!text.contains(r#"query="q""#), "{text}");
        assert!(text.contains(r#"query="other""#), "{text}");
    }

    #[test]
    fn refused_writes_and_skipped_items_are_counted_and_a_partial_sync_is_ready() {
        use crate::controller::SyncObserver;
        let m = Metrics::new();
        m.write_failed(WriteAction::Create);
        m.write_failed(WriteAction::Create);
        m.write_failed(WriteAction::Delete);
        m.items_skipped("ns", "q", 2);
        m.sync_finished("ns", "q", "PartiallySynced", Duration::ZERO, Some(6));
        let text = m.encode(Timestamp::now());
        for series in [
            r#"imagepipeline_object_write_failures_total{action="create"} 2"#,
            r#"imagepipeline_object_write_failures_total{action="delete"} 1"#,
            r#"imagepipeline_query_skipped_items{namespace="ns",query="q"} 2"#,
            r#"imagepipeline_query_ready{namespace="ns",query="q",reason="PartiallySynced"} 1"#,
        ] {
            assert!(text.contains(series), "{series} missing:\n{text}");
        }
        m.query_deleted("ns", "q");
        let text = m.encode(Timestamp::now());
        assert!(!text.contains(r#"query="q""#), "{text}");
    }

    #[test]
    fn a_fresh_registry_exposes_every_family_and_the_known_series_at_zero() {
        let m = Metrics::new();
        let text = m.encode(Timestamp::now());
        // One family per metric field of `Metrics`.
        assert_eq!(m.family_names().len(), 20, "{:?}", m.family_names());
        for family in m.family_names() {
            assert!(
                text.contains(&format!("# TYPE {family} ")),
                "{family}:\n{text}"
            );
            assert!(
                text.contains(&format!("# HELP {family} ")),
                "{family}:\n{text}"
            );
        }
        for series in [
            r#"imagepipeline_syncs_total{result="Throttled"} 0"#,
            r#"imagepipeline_syncs_total{result="Synced"} 0"#,
            r#"imagepipeline_objects_written_total{operation="released"} 0"#,
            r#"imagepipeline_listing_pages_total{path="reused"} 0"#,
            r#"imagepipeline_listing_pages_total{path="decoded"} 0"#,
            r#"imagepipeline_ecs_calls_total{action="DescribeImagePipelines",code="Success"} 0"#,
        ] {
            assert!(text.contains(series), "{series} missing:\n{text}");
        }
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn process_memory_is_exported_without_the_prefix() {
        let text = Metrics::new().encode(Timestamp::now());
        let rss = text
            .lines()
            .find_map(|l| l.strip_prefix("process_resident_memory_bytes "))
            .and_then(|v| v.parse::<u64>().ok())
            .expect("process_resident_memory_bytes sample");
        assert!(rss > 1 << 20, "{rss}");
        assert!(text.contains("\nimagepipeline_container_memory_limit_bytes "));
        assert!(text.contains("\nimagepipeline_ecs_rate_limit_waits_total "));
        assert!(text.contains("\nimagepipeline_ecs_rate_limit_wait_seconds_total "));
    }

    #[test]
    fn a_shard_labels_every_series_with_its_name() {
        let m = Metrics::for_shard("shard1");
        m.record_writes(1, 0, 0);
        let text = m.encode(Timestamp::now());
        let samples: Vec<&str> = text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
            .collect();
        assert!(samples.len() > 10, "{text}");
        for line in samples {
            assert!(line.contains("shard=\"shard1\""), "{line}");
        }
    }
}
