//! `imagepipeline-operator run`: flags, start-up checks, the watches and the controller loop.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{Api, ListParams};
use kube::runtime::controller::{Config, Controller};
use kube::runtime::events::{Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::controller::context::Context;
use crate::controller::error::ControllerError;
use crate::controller::inputs::credentials::{AmbientPolicy, CredentialsResolver};
use crate::controller::inputs::source::{PipelineSource, SHARE_WINDOW, SharedListings};
use crate::controller::mirror;
use crate::controller::mirror::cache::{CacheFeeder, MirrorCache};
pub use crate::controller::mirror::ownership::MAIN_SHARD;
use crate::controller::mirror::ownership::{shard_field_manager, shard_label_key};
use crate::controller::mirror::view::{NamespaceLocks, RecentWrites};
use crate::controller::reconcile::{error_policy, reconcile};
use crate::controller::report::observer::SyncObserver;
use crate::controller::sync::let_go_of_moved;
use crate::controller::write::writer::{DEFAULT_WRITE_CONCURRENCY, Writer};
use crate::crd::{ImagePipeline, ImagePipelineQuery};
use crate::ecs::SharedProvider;
use crate::readiness::Readiness;

/// ImagePipelines per page of the watch's (re-)list, when the API server refuses streaming lists.
const PIPELINE_PAGE_SIZE: u32 = 100;

/// How often what is remembered of queries that no longer exist is dropped (besides at once,
/// on their watch's delete event).
const SWEEP_INTERVAL: Duration = Duration::from_secs(60);

/// The shortest time between two reconciles of one query triggered by changes of its mirrored
/// objects (the first change triggers at once; the ones within this time after it, once, at
/// its end).
const TRIGGER_SPACING: Duration = Duration::from_secs(1);

/// `triggers` with each query at most once per `spacing`: the first trigger passes at once,
/// later ones within `spacing` of it are folded into one that passes when `spacing` is over. A
/// storm of object events (the garbage collector patching thousands of objects) costs each
/// query one drift check per `spacing`, and no query waits longer than `spacing`. Nothing is
/// kept for a query once its spacing is over, and with nothing kept no timer runs.
pub fn coalesce<K>(
    mut triggers: impl futures::Stream<Item = K> + Unpin + Send + 'static,
    spacing: Duration,
) -> impl futures::Stream<Item = K> + Send + 'static
where
    K: Clone + Eq + std::hash::Hash + Send + Sync + 'static,
{
    async_stream(
        move |tx: futures::channel::mpsc::UnboundedSender<K>| async move {
            let mut last: HashMap<K, tokio::time::Instant> = HashMap::new();
            let mut pending: std::collections::HashSet<K> = std::collections::HashSet::new();
            let mut tick = tokio::time::interval(spacing / 4);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    next = triggers.next() => {
                        let Some(key) = next else { return };
                        let now = tokio::time::Instant::now();
                        match last.get(&key) {
                            Some(at) if now.duration_since(*at) < spacing => {
                                pending.insert(key);
                            }
                            _ => {
                                last.insert(key.clone(), now);
                                if tx.unbounded_send(key).is_err() {
                                    return;
                                }
                            }
                        }
                    }
                    // Idle (nothing pending, no spacing running) the task sleeps until the
                    // next trigger instead of waking four times per `spacing` for nothing.
                    _ = tick.tick(), if !pending.is_empty() || !last.is_empty() => {
                        let now = tokio::time::Instant::now();
                        let due: Vec<K> = pending
                            .iter()
                            .filter(|k| last.get(*k).is_none_or(|at| now.duration_since(*at) >= spacing))
                            .cloned()
                            .collect();
                        for key in due {
                            pending.remove(&key);
                            last.insert(key.clone(), now);
                            if tx.unbounded_send(key).is_err() {
                                return;
                            }
                        }
                        last.retain(|k, at| pending.contains(k) || now.duration_since(*at) < spacing);
                        if last.capacity() > 64 && last.len() < last.capacity() / 4 {
                            last.shrink_to_fit();
                        }
                    }
                }
            }
        },
    )
}

/// A stream fed by `producer` in a task of its own; the task ends when the stream is dropped.
fn async_stream<K, F, Fut>(producer: F) -> impl futures::Stream<Item = K> + Send + 'static
where
    K: Send + 'static,
    F: FnOnce(futures::channel::mpsc::UnboundedSender<K>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = futures::channel::mpsc::unbounded();
    let task = AbortOnDrop(tokio::spawn(producer(tx)));
    rx.map(move |k| {
        // The stream owns the producing task: dropping the stream aborts it.
        let _keep = &task;
        k
    })
}

/// A spawned task that ends when this is dropped: the tasks a controller starts live exactly
/// as long as the controller (which is dropped the moment the lease is lost).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Forgets each query whose delete event arrives on `deleted` (by UID), and every
/// `SWEEP_INTERVAL` whatever is remembered of queries the store no longer has, so nothing is
/// kept for queries that are gone.
async fn forget_deleted(
    ctx: Arc<Context>,
    mut deleted: futures::channel::mpsc::UnboundedReceiver<String>,
    mut queries_ready: watch::Receiver<bool>,
) {
    let mut sweep = tokio::time::interval(SWEEP_INTERVAL);
    sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            uid = deleted.next() => match uid {
                Some(uid) => {
                    ctx.forget(&uid);
                    tracing::debug!(%uid, "forgot a deleted query");
                }
                None => return,
            },
            _ = sweep.tick() => {
                // Only a store that has listed everything tells which queries are gone.
                if *queries_ready.borrow_and_update() {
                    ctx.forget_all_but(&ctx.queries);
                }
            }
        }
    }
}

/// How often a controller looks for queries that moved to another shard (see
/// [`let_go_of_moved`]).
const LET_GO_INTERVAL: Duration = Duration::from_secs(10);

/// Lets go, every [`LET_GO_INTERVAL`] while leading and once the queries have been listed, of
/// the queries another shard has adopted.
async fn let_go_of_moved_queries(ctx: Arc<Context>, mut queries_ready: watch::Receiver<bool>) {
    if queries_ready.wait_for(|r| *r).await.is_err() {
        return;
    }
    let mut tick = tokio::time::interval(LET_GO_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if !ctx.writer.is_leading() || !*ctx.pipelines_ready.borrow() {
            continue;
        }
        match let_go_of_moved(&ctx).await {
            Ok(0) => {}
            Ok(n) => info!(objects = n, "let go of queries another shard now serves"),
            Err(e) => warn!(error = %e, "letting go of moved queries failed; retrying"),
        }
    }
}

/// The flags of `imagepipeline-operator run`; each can also be set by environment variable.
#[derive(clap::Args, Debug, Clone, PartialEq)]
pub struct RunArgs {
    /// Watch only this namespace (repeat the flag, or separate with commas). Default: all
    /// namespaces.
    #[arg(long = "namespace", env = "WATCH_NAMESPACES", value_delimiter = ',')]
    pub namespaces: Vec<String>,

    /// How many queries are reconciled at the same time.
    #[arg(long, env = "CONCURRENCY", default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    pub concurrency: u16,

    /// How many ImagePipeline writes of one sync are in flight at the same time (each object
    /// still has one writer at a time; 429 answers are retried after their Retry-After).
    #[arg(long, env = "WRITE_CONCURRENCY", default_value_t = DEFAULT_WRITE_CONCURRENCY as u16, value_parser = clap::value_parser!(u16).range(1..))]
    pub write_concurrency: u16,

    /// Namespaces whose queries may omit spec.credentials and use the operator's own (ambient)
    /// credentials. Default: none.
    #[arg(long, env = "AMBIENT_CREDENTIALS_NAMESPACES", value_delimiter = ',')]
    pub ambient_credentials_namespaces: Vec<String>,

    /// Also allow ambient credentials in namespaces whose labels match this selector (e.g.
    /// `ecs.mirror.io/ambient-credentials=true`).
    #[arg(long, env = "AMBIENT_CREDENTIALS_NAMESPACE_SELECTOR")]
    pub ambient_credentials_namespace_selector: Option<String>,

    /// The ECS endpoint URL (default: https://ecs.<region>.aliyuncs.com).
    #[arg(long, env = "ECS_ENDPOINT")]
    pub ecs_endpoint: Option<String>,

    /// Most ECS API calls per second per AccessKey ID, for the whole process (every query
    /// and retry shares it).
    #[arg(long, env = "ECS_RATE_LIMIT", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    pub ecs_rate_limit: u32,

    /// Run leader election on a coordination.k8s.io Lease: only the holder reconciles and
    /// writes, the other replicas stand by and take over within the lease duration.
    #[arg(long, env = "LEADER_ELECTION")]
    pub leader_election: bool,

    /// Name of the leader-election Lease.
    #[arg(
        long,
        env = "LEASE_NAME",
        default_value = "imagepipeline-operator-leader"
    )]
    pub lease_name: String,

    /// Namespace of the leader-election Lease (default: the pod's namespace, `POD_NAMESPACE`).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    pub lease_namespace: String,

    /// How long the Lease is valid after its last renewal; a standby replica takes over
    /// within this time after the leader dies.
    #[arg(long, env = "LEASE_DURATION", default_value = "15s", value_parser = humantime::parse_duration)]
    pub lease_duration: Duration,

    /// Threads the operator runs its work on. One is enough for most fleets: the work is
    /// mostly waiting on the ECS API and the Kubernetes API, and a second thread costs CPU in
    /// hand-overs between the two (about 10% of an unchanged refresh). Two converge a first
    /// sync of 100,000 pipelines somewhat sooner where a second core is free (BENCHMARKS.md,
    /// "One worker thread"). In a Pod with a CPU limit of one core, more threads cannot run at
    /// once anyway.
    #[arg(long, env = "WORKER_THREADS", default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub worker_threads: u16,

    /// Address of the admin listener serving /metrics, /healthz and /readyz.
    #[arg(long, env = "ADMIN_ADDR", default_value = "0.0.0.0:8080")]
    pub admin_addr: std::net::SocketAddr,

    /// STS endpoint for RRSA ambient credentials (default: https://sts.aliyuncs.com, or the
    /// regional endpoint from ALIBABA_CLOUD_STS_REGION).
    #[arg(long, env = "ALIBABA_CLOUD_STS_ENDPOINT")]
    pub sts_endpoint: Option<String>,

    /// ECS instance metadata endpoint for RAM-role ambient credentials (default:
    /// http://100.100.100.200).
    #[arg(long, env = "ALIBABA_CLOUD_IMDS_ENDPOINT")]
    pub imds_endpoint: Option<String>,

    /// Serve only the ImagePipelineQueries whose labels match this selector, as Flux's
    /// controllers do: a shard takes `sharding.fluxcd.io/key=shard1`, the main instance
    /// `!sharding.fluxcd.io/key`. Default: every query.
    #[arg(long, env = "WATCH_LABEL_SELECTOR")]
    pub watch_label_selector: Option<String>,

    /// The shard this instance serves (a DNS label such as `shard1`). It names the field
    /// manager of its writes (`imagepipeline-operator-<shard>`), its Lease
    /// (`<lease-name>-<shard>`), the `shard` label of its metrics, the source of its Events and
    /// `status.shard` of its queries. Default: none, the main instance (`main` in status and
    /// metrics).
    #[arg(long, env = "SHARD", value_parser = parse_shard)]
    pub shard: Option<String>,
}

/// A shard name: a DNS label, and not [`MAIN_SHARD`] (the instance without `--shard`).
fn parse_shard(name: &str) -> Result<String, String> {
    let valid = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if !valid {
        return Err(format!(
            "{name:?} is not a shard name: use 1-63 lowercase letters, digits and '-', \
             starting and ending with a letter or digit"
        ));
    }
    if name == MAIN_SHARD {
        return Err(format!(
            "{MAIN_SHARD:?} names the instance without --shard; leave the flag out for it"
        ));
    }
    Ok(name.to_string())
}

/// What `run` reports to and draws from besides its flags.
#[derive(Clone)]
pub struct RunHooks {
    /// The operator's own credentials, for namespaces allowed to use them.
    pub ambient: Option<SharedProvider>,
    /// Metrics.
    pub observer: Arc<dyn SyncObserver>,
    /// Told when every watch has listed once.
    pub readiness: Option<Arc<Readiness>>,
    /// The writer's gate (leader election sets it): while `false`, every write is refused.
    /// `None`: always write.
    pub may_write: Option<Arc<AtomicBool>>,
}

impl RunArgs {
    /// Which namespaces may use ambient credentials.
    pub fn ambient_policy(&self) -> AmbientPolicy {
        AmbientPolicy {
            namespaces: self
                .ambient_credentials_namespaces
                .iter()
                .map(|n| n.trim().to_string())
                .filter(|n| !n.is_empty())
                .collect(),
            selector: self
                .ambient_credentials_namespace_selector
                .clone()
                .filter(|s| !s.trim().is_empty()),
        }
    }

    /// The shard's name as status and metrics show it: `--shard`, or `main`.
    pub fn shard_name(&self) -> &str {
        self.shard.as_deref().unwrap_or(MAIN_SHARD)
    }

    /// The field manager of this instance's writes.
    pub fn field_manager(&self) -> String {
        shard_field_manager(self.shard.as_deref())
    }

    /// The leader-election Lease of this instance: `--lease-name`, suffixed with the shard.
    pub fn shard_lease_name(&self) -> String {
        match &self.shard {
            Some(shard) => format!("{}-{shard}", self.lease_name),
            None => self.lease_name.clone(),
        }
    }

    /// The label this instance puts on the objects it mirrors and selects its ImagePipeline
    /// watch by, `shard.ecs.mirror.io/<shard>` (`.../main` for the main instance): set for an
    /// instance that serves a part of the queries (`--shard` or `--watch-label-selector`), so
    /// that it holds only its share of the objects in memory. An instance serving every query
    /// labels nothing and watches every object.
    pub fn object_label(&self) -> Option<String> {
        (self.shard.is_some() || self.query_selector().is_some())
            .then(|| shard_label_key(self.shard_name()))
    }

    /// The label selector of the queries this instance serves, if any.
    pub fn query_selector(&self) -> Option<&str> {
        self.watch_label_selector
            .as_deref()
            .map(str::trim)
            .filter(|s| !s.is_empty())
    }

    /// The watched namespaces; empty means all.
    pub fn watched_namespaces(&self) -> Vec<String> {
        let mut namespaces: Vec<String> = self
            .namespaces
            .iter()
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .collect();
        namespaces.sort();
        namespaces.dedup();
        namespaces
    }
}

fn api<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

/// Fails with a clear message when a CRD is not installed (probing the resources themselves,
/// which needs no permission on CustomResourceDefinitions).
pub async fn check_crds(client: &Client, namespace: Option<&str>) -> Result<(), ControllerError> {
    let probe = ListParams::default().limit(1);
    api::<ImagePipelineQuery>(client, namespace)
        .list_metadata(&probe)
        .await
        .map_err(|source| ControllerError::CrdMissing {
            crd: "imagepipelinequeries.ecs.mirror.io".into(),
            source,
        })?;

    api::<ImagePipeline>(client, namespace)
        .list_metadata(&probe)
        .await
        .map_err(|source| ControllerError::CrdMissing {
            crd: "imagepipelines.ecs.mirror.io".into(),
            source,
        })?;
    Ok(())
}

/// The watch scopes of `args`: one per watched namespace, or one for all namespaces.
pub fn scopes(args: &RunArgs) -> Vec<Option<String>> {
    let namespaces = args.watched_namespaces();
    if namespaces.is_empty() {
        vec![None]
    } else {
        namespaces.into_iter().map(Some).collect()
    }
}

/// Runs the controller with `hooks` until SIGTERM or SIGINT. One controller per watched
/// namespace (or one for all), sharing listings and credentials.
pub async fn run_with(
    client: Client,
    args: RunArgs,
    source: Arc<dyn PipelineSource>,
    hooks: RunHooks,
) -> Result<(), ControllerError> {
    let scopes = scopes(&args);
    for scope in &scopes {
        check_crds(&client, scope.as_deref()).await?;
    }
    let policy = args.ambient_policy();
    if let Some(selector) = &policy.selector {
        Api::<Namespace>::all(client.clone())
            .list_metadata(&ListParams::default().labels(selector).limit(1))
            .await
            .map_err(|e| {
                ControllerError::Config(format!(
                    "--ambient-credentials-namespace-selector {selector:?} was refused: {e}"
                ))
            })?;
    }
    // The API server, not a parser of our own, decides what a selector means: a selector it
    // refuses stops the start with its message instead of a watch that retries forever.
    if let Some(selector) = args.query_selector() {
        for scope in &scopes {
            api::<ImagePipelineQuery>(&client, scope.as_deref())
                .list_metadata(&ListParams::default().labels(selector).limit(1))
                .await
                .map_err(|e| {
                    ControllerError::Config(format!(
                        "--watch-label-selector {selector:?} was refused: {e}"
                    ))
                })?;
        }
    }
    let manager = args.field_manager();
    let shared = Shared {
        client: client.clone(),
        query_selector: args.query_selector().map(str::to_string),
        shard: args.shard_name().into(),
        manager: manager.clone(),
        object_label: args.object_label(),
        writer: {
            let writer = Writer::new(client.clone())
                .with_field_manager(&manager)
                .with_concurrency(usize::from(args.write_concurrency));
            match hooks.may_write {
                Some(gate) => writer.with_gate(gate),
                None => writer,
            }
        },
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: manager.clone(),
                instance: std::env::var("POD_NAME").ok(),
            },
        ),
        listings: Arc::new(SharedListings::new(source, SHARE_WINDOW)),
        credentials: Arc::new(CredentialsResolver::new(hooks.ambient, policy)),
        observer: hooks.observer,
        concurrency: args.concurrency,
        unsynced: Arc::new(AtomicUsize::new(scopes.len())),
        readiness: hooks.readiness,
    };
    info!(
        namespaces = ?scopes,
        concurrency = args.concurrency,
        shard = args.shard_name(),
        selector = args.query_selector().unwrap_or(""),
        "starting the ImagePipelineQuery controller"
    );
    futures::future::join_all(scopes.iter().map(|s| shared.controller(s.as_deref()))).await;
    info!("controller stopped");
    Ok(())
}

/// What the per-namespace controllers share.
struct Shared {
    client: Client,
    /// The label selector of the queries this instance serves.
    query_selector: Option<String>,
    /// The shard's name, as status shows it.
    shard: Arc<str>,
    /// The field manager of this instance's writes.
    manager: String,
    /// A shard's own label on the objects it mirrors, which its ImagePipeline watch selects.
    object_label: Option<String>,
    writer: Writer,
    recorder: Recorder,
    listings: Arc<SharedListings>,
    credentials: Arc<CredentialsResolver>,
    observer: Arc<dyn SyncObserver>,
    concurrency: u16,
    /// Scopes whose watches have not listed everything yet.
    unsynced: Arc<AtomicUsize>,
    readiness: Option<Arc<Readiness>>,
}

impl Shared {
    async fn controller(&self, namespace: Option<&str>) {
        let wc = watcher::Config::default();
        // One watch of the ImagePipelines: each object is reduced to its record on arrival, and
        // its owner queries are triggered from the same stream (no second watch).
        let pipelines_api: Api<ImagePipeline> = api(&self.client, namespace);
        let pipelines = MirrorCache::default();
        let (pipelines_ready_tx, pipelines_ready) = watch::channel(false);
        let (trigger_tx, trigger_rx) = futures::channel::mpsc::unbounded();
        let recent = RecentWrites::tracking(pipelines.clone());
        let cache = {
            let mut feeder = CacheFeeder::new(pipelines.clone())
                .with_field_manager(self.manager.clone())
                .with_listener(recent.clone());
            // A streaming list where the API server serves one; else small pages: a page of
            // full objects (managed fields and all) is decoded at once before it is reduced, so
            // the page size bounds that transient memory.
            // An instance serving a part of the queries watches only the objects it labelled.
            let pipelines_wc = match &self.object_label {
                Some(key) => wc.clone().labels(key),
                None => wc.clone(),
            };
            mirror::watch::events(pipelines_api, pipelines_wc.page_size(PIPELINE_PAGE_SIZE))
                .default_backoff()
                .for_each(move |event| {
                    match event {
                        Ok(event) => {
                            let done = matches!(event, watcher::Event::InitDone);
                            for query in feeder.on_event(event) {
                                let _ = trigger_tx.unbounded_send(query);
                            }
                            if done {
                                pipelines_ready_tx.send_replace(true);
                            }
                        }
                        Err(e) => warn!(error = %e, "ImagePipeline watch failed; retrying"),
                    }
                    futures::future::ready(())
                })
        };
        let _cache = AbortOnDrop(tokio::spawn(cache));

        let (queries, queries_writer) = reflector::store();
        let (queries_ready_tx, mut queries_ready) = watch::channel(false);
        let sweep_ready = queries_ready.clone();
        let (deleted_tx, deleted_rx) = futures::channel::mpsc::unbounded();
        let observer = self.observer.clone();
        let query_stream = reflector::reflector(
            queries_writer,
            watcher(
                api::<ImagePipelineQuery>(&self.client, namespace),
                match &self.query_selector {
                    Some(selector) => wc.clone().labels(selector),
                    None => wc.clone(),
                },
            ),
        )
        .default_backoff()
        .inspect(move |event| match event {
            Ok(watcher::Event::InitDone) => {
                queries_ready_tx.send_replace(true);
            }
            Ok(watcher::Event::Delete(query)) => {
                observer.query_deleted(&query.namespace().unwrap_or_default(), &query.name_any());
                if let Some(uid) = query.uid() {
                    let _ = deleted_tx.unbounded_send(uid);
                }
            }
            _ => {}
        })
        .touched_objects();
        let controller = Controller::for_stream(query_stream, queries.clone()).with_config(
            // No debounce: kube's trailing-edge debounce keeps delaying a query as long as events
            // keep coming (the garbage collector patching a thousand shared objects starved a
            // sync for 90 s); the mirrored objects' triggers are spaced by `coalesce` instead.
            Config::default().concurrency(self.concurrency),
        );
        let _synced = {
            let mut pipelines_ready = pipelines_ready.clone();
            let (unsynced, readiness) = (self.unsynced.clone(), self.readiness.clone());
            AbortOnDrop(tokio::spawn(async move {
                if queries_ready.wait_for(|r| *r).await.is_ok()
                    && pipelines_ready.wait_for(|r| *r).await.is_ok()
                    && unsynced.fetch_sub(1, Ordering::SeqCst) == 1
                {
                    info!("watches synced");
                    if let Some(r) = readiness {
                        r.set_watches_synced(true);
                    }
                }
            }))
        };
        let ctx = Arc::new(Context {
            client: self.client.clone(),
            writer: self.writer.clone(),
            recorder: self.recorder.clone(),
            pipelines,
            pipelines_ready,
            queries: queries.clone(),
            listings: self.listings.clone(),
            credentials: self.credentials.clone(),
            recent,
            locks: NamespaceLocks::default(),
            memory: Mutex::new(HashMap::new()),
            observer: self.observer.clone(),
            shard: self.shard.clone(),
            object_label: self.object_label.clone(),
        });
        let _let_go = AbortOnDrop(tokio::spawn(let_go_of_moved_queries(
            ctx.clone(),
            sweep_ready.clone(),
        )));
        let _forget = AbortOnDrop(tokio::spawn(forget_deleted(
            ctx.clone(),
            deleted_rx,
            sweep_ready,
        )));
        controller
            .reconcile_on(coalesce(
                // Owners that are not (or no longer) among the watched queries (deleted, or in
                // another scope) have nothing to reconcile.
                trigger_rx.filter({
                    let queries = queries.clone();
                    move |r| futures::future::ready(queries.get(r).is_some())
                }),
                TRIGGER_SPACING,
            ))
            .watches(api::<Secret>(&self.client, namespace), wc, {
                let credentials = self.credentials.clone();
                move |secret| {
                    credentials
                        .forget_secret(&secret.namespace().unwrap_or_default(), &secret.name_any());
                    queries_using_secret(&queries, &secret)
                }
            })
            .shutdown_on_signal()
            .run(reconcile, error_policy, ctx)
            .for_each(|result| {
                if let Err(e) = result {
                    warn!(error = %e, "reconcile request failed");
                }
                futures::future::ready(())
            })
            .await;
        if let Some(r) = &self.readiness {
            r.set_watches_synced(false);
        }
    }
}

/// The queries in the Secret's namespace that name it in `spec.credentials.secretRef`.
pub fn queries_using_secret(
    queries: &Store<ImagePipelineQuery>,
    secret: &Secret,
) -> Vec<ObjectRef<ImagePipelineQuery>> {
    let namespace = secret.namespace();
    let name = secret.name_any();
    queries
        .state()
        .iter()
        .filter(|q| q.namespace() == namespace)
        .filter(|q| {
            q.spec
                .credentials
                .as_ref()
                .is_some_and(|c| c.secret_ref.name == name)
        })
        .map(|q| ObjectRef::from_obj(q.as_ref()))
        .collect()
}

#[cfg(test)]
mod coalesce_tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_storm_of_triggers_reaches_each_query_at_once_and_then_once_per_spacing() {
        let (tx, rx) = futures::channel::mpsc::unbounded::<&str>();
        let mut out = coalesce(rx, Duration::from_secs(1));
        for _ in 0..50 {
            tx.unbounded_send("a").unwrap();
        }
        tx.unbounded_send("b").unwrap();
        let first = tokio::time::timeout(Duration::from_millis(10), out.next()).await;
        assert_eq!(
            first.unwrap(),
            Some("a"),
            "the first trigger passes at once"
        );
        let second = tokio::time::timeout(Duration::from_millis(10), out.next()).await;
        assert_eq!(second.unwrap(), Some("b"), "another query is not held up");
        assert!(
            tokio::time::timeout(Duration::from_millis(500), out.next())
                .await
                .is_err(),
            "the other 49 wait for the spacing"
        );
        let folded = tokio::time::timeout(Duration::from_secs(1), out.next()).await;
        assert_eq!(
            folded.unwrap(),
            Some("a"),
            "folded into one at the end of the spacing"
        );
        assert!(
            tokio::time::timeout(Duration::from_secs(5), out.next())
                .await
                .is_err(),
            "and nothing more"
        );
        drop(tx);
        assert_eq!(out.next().await, None);
    }

    #[tokio::test(start_paused = true)]
    async fn after_a_quiet_time_triggers_are_spaced_as_before() {
        let (tx, rx) = futures::channel::mpsc::unbounded::<&str>();
        let mut out = coalesce(rx, Duration::from_secs(1));
        tx.unbounded_send("a").unwrap();
        assert_eq!(out.next().await, Some("a"));
        // Long enough for the spacing to end and the coalescing to go idle.
        tokio::time::sleep(Duration::from_secs(30)).await;
        tx.unbounded_send("a").unwrap();
        tx.unbounded_send("a").unwrap();
        let first = tokio::time::timeout(Duration::from_millis(10), out.next()).await;
        assert_eq!(first.unwrap(), Some("a"), "the first passes at once");
        assert!(
            tokio::time::timeout(Duration::from_millis(500), out.next())
                .await
                .is_err(),
            "the second waits for the spacing"
        );
        let folded = tokio::time::timeout(Duration::from_secs(1), out.next()).await;
        assert_eq!(folded.unwrap(), Some("a"), "and then passes");
    }
}
