//! A controller `Context` around a (mocked) kube client and a real listing source, and query
//! fixtures.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use imagepipeline_operator::controller::cache::MirrorCache;
use imagepipeline_operator::controller::desired::owner_reference;
use imagepipeline_operator::controller::view::{NamespaceLocks, RecentWrites};
use imagepipeline_operator::controller::{
    AmbientPolicy, Context, CredentialsResolver, PipelineSource, SharedListings, SyncObserver,
    Writer,
};
use imagepipeline_operator::crd::{
    ImagePipeline, ImagePipelineQuery, ImagePipelineQuerySpec, ImagePipelineSpec,
};
use imagepipeline_operator::ecs::credentials::{Credentials, StaticProvider};
use imagepipeline_operator::ecs::{
    ClientConfig, EcsClient, ImagePipelineItem, SharedObserver, SharedProvider,
};
use imagepipeline_operator::sim::{DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher;
use serde_json::{Value, json};

pub const NS: &str = "team-a";

/// An ECS client for the simulator at `url`: quick retries, the given rate limit.
pub fn ecs_client(url: &str, qps: u32, burst: u32, observer: Option<SharedObserver>) -> EcsClient {
    let _ = rustls::crypto::ring::default_provider().install_default();
    EcsClient::new(ClientConfig {
        endpoint: Some(url.to_string()),
        base_backoff: Duration::from_millis(10),
        max_backoff: Duration::from_millis(50),
        max_attempts: 4,
        rate_limit_qps: qps,
        rate_limit_burst: burst,
        observer,
        ..ClientConfig::default()
    })
    .expect("ecs client")
}

/// The simulator's default test credential as the operator's ambient credentials.
pub fn sim_ambient() -> SharedProvider {
    Arc::new(StaticProvider::new(
        "env",
        Credentials::new(DEFAULT_ACCESS_KEY_ID, DEFAULT_ACCESS_KEY_SECRET),
    ))
}

pub fn store_of<K>(objects: Vec<K>) -> Store<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + 'static,
{
    let (store, mut writer) = reflector::store();
    writer.apply_watcher_event(&watcher::Event::Init);
    for o in objects {
        writer.apply_watcher_event(&watcher::Event::InitApply(o));
    }
    writer.apply_watcher_event(&watcher::Event::InitDone);
    store
}

/// A context over `client`, listing through `source` (not shared across time: window zero),
/// with ambient credentials allowed in [`NS`].
pub fn context(
    client: kube::Client,
    source: Arc<dyn PipelineSource>,
    observer: Arc<dyn SyncObserver>,
    queries: Vec<ImagePipelineQuery>,
    pipelines: Vec<ImagePipeline>,
) -> Arc<Context> {
    context_with_window(client, source, observer, queries, pipelines, Duration::ZERO)
}

/// [`context`], sharing finished listings for `window`.
pub fn context_with_window(
    client: kube::Client,
    source: Arc<dyn PipelineSource>,
    observer: Arc<dyn SyncObserver>,
    queries: Vec<ImagePipelineQuery>,
    pipelines: Vec<ImagePipeline>,
    window: Duration,
) -> Arc<Context> {
    let policy = AmbientPolicy {
        namespaces: [NS.to_string()].into(),
        selector: None,
    };
    Arc::new(Context {
        client: client.clone(),
        writer: Writer::new(client.clone()),
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: "imagepipeline-operator".into(),
                instance: None,
            },
        ),
        pipelines: MirrorCache::from_objects(pipelines),
        pipelines_ready: tokio::sync::watch::channel(true).1,
        queries: store_of(queries),
        listings: Arc::new(SharedListings::new(source, window)),
        credentials: Arc::new(CredentialsResolver::new(Some(sim_ambient()), policy)),
        recent: RecentWrites::default(),
        locks: NamespaceLocks::default(),
        memory: Mutex::new(HashMap::new()),
        observer,
        shard: "main".into(),
        object_label: None,
    })
}

/// A query named `name` in [`NS`] with `spec` merged over `regionId: cn-hangzhou`.
pub fn query(name: &str, spec: Value) -> ImagePipelineQuery {
    let mut body = json!({"regionId": "cn-hangzhou"});
    if let (Some(b), Some(extra)) = (body.as_object_mut(), spec.as_object()) {
        b.extend(extra.clone());
    }
    let spec: ImagePipelineQuerySpec = serde_json::from_value(body).expect("valid spec");
    let mut q = ImagePipelineQuery::new(name, spec);
    q.metadata.namespace = Some(NS.into());
    q.metadata.uid = Some(format!("uid-{name}"));
    q.metadata.generation = Some(1);
    q.metadata.resource_version = Some("1".into());
    q
}

/// An ImagePipeline already mirrored in [`NS`] for the query named `q` (see [`query`]), with
/// `name` as the pipeline's name.
pub fn mirrored(id: &str, name: &str) -> ImagePipeline {
    let item = ImagePipelineItem {
        image_pipeline_id: id.into(),
        name: Some(name.into()),
        ..ImagePipelineItem::default()
    };
    let mut spec = ImagePipelineSpec::from_item(&item, "cn-hangzhou");
    spec.last_sync_time = Some("2026-01-01T00:00:00Z".into());
    let mut obj = ImagePipeline::new(id, spec);
    obj.metadata.namespace = Some(NS.into());
    obj.metadata.uid = Some(format!("obj-{id}"));
    obj.metadata.resource_version = Some("7".into());
    obj.metadata.owner_references = Some(vec![owner_reference("q", "uid-q")]);
    obj
}
