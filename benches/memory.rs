//! Operator memory with N mirrored objects in its caches. Every run is a fresh child process
//! (this executable re-invoked with `BENCH_CHILD` set) that runs the real controller
//! (`controller::run_with`, the code behind `imagepipeline-operator run`, without the admin
//! listener and leader election) against a fake Kubernetes API server in the parent process.
//! The fake server answers the paginated LIST of N realistic ImagePipelines (as the API server
//! stores them, managed fields included), empty LISTs of queries and Secrets, and holds every
//! WATCH open. Once every watch has listed, the child reports VmRSS and VmHWM.
//!
//! `cargo bench --bench memory`; environment: `BENCH_SIZES` (default `0,1000,10000,50000`),
//! `BENCH_RUNS` (default 5).

mod support;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::response::Response;
use futures::future::BoxFuture;
use imagepipeline_operator::controller::{
    NoopObserver, PipelineSource, RunArgs, RunHooks, run_with,
};
use imagepipeline_operator::ecs::{Listing, ListingError, PipelineFilter, SharedProvider};
use serde_json::{Value, json};

/// The stored objects, serialized once, and what the fake server has been asked.
struct FakeApi {
    objects: Vec<String>,
    /// Requests by "list|watch resource".
    seen: Mutex<BTreeMap<String, u32>>,
}

fn param<'a>(query: &'a str, key: &str) -> Option<&'a str> {
    query
        .split('&')
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
}

async fn handle(State(api): State<Arc<FakeApi>>, request: Request) -> Response {
    let path = request.uri().path().to_string();
    let query = request.uri().query().unwrap_or("").to_string();
    let resource = path.rsplit('/').next().unwrap_or("").to_string();
    let watch = matches!(param(&query, "watch"), Some("true" | "1"));
    *api.seen
        .lock()
        .unwrap()
        .entry(format!(
            "{} {resource}",
            if watch { "watch" } else { "list" }
        ))
        .or_default() += 1;
    if watch {
        // Nothing changes: the watch stays open and silent.
        let pending = futures::stream::pending::<Result<Bytes, Infallible>>();
        return Response::new(Body::from_stream(pending));
    }
    let all: &[String] = if resource == "imagepipelines" {
        &api.objects
    } else {
        &[]
    };
    let limit = param(&query, "limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(usize::MAX);
    let offset = param(&query, "continue")
        .and_then(|c| c.parse::<usize>().ok())
        .unwrap_or(0)
        .min(all.len());
    let end = offset.saturating_add(limit).min(all.len());
    let next = if end < all.len() {
        end.to_string()
    } else {
        String::new()
    };
    let body = format!(
        r#"{{"apiVersion":"v1","kind":"List","metadata":{{"resourceVersion":"900000","continue":"{next}"}},"items":[{}]}}"#,
        all[offset..end].join(",")
    );
    Response::builder()
        .header("content-type", "application/json")
        .body(Body::from(body))
        .expect("response")
}

/// Starts the fake API server on a thread of its own; returns its URL and state.
fn start_fake_api(n: usize, managed_fields: bool) -> (String, Arc<FakeApi>) {
    let items = support::items(n);
    let objects = support::stored_objects(&items)
        .into_iter()
        .map(|mut o| {
            if !managed_fields {
                o.metadata.managed_fields = None;
            }
            serde_json::to_string(&o).expect("json")
        })
        .collect();
    let api = Arc::new(FakeApi {
        objects,
        seen: Mutex::default(),
    });
    let state = api.clone();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            tx.send(listener.local_addr().expect("addr")).expect("send");
            let app = Router::new().fallback(handle).with_state(state);
            axum::serve(listener, app).await.expect("serve");
        });
    });
    let addr = rx.recv().expect("fake API address");
    (format!("http://{addr}"), api)
}

/// Never asked: no query exists.
struct NoSource;

impl PipelineSource for NoSource {
    fn list(
        &self,
        _filter: PipelineFilter,
        _provider: SharedProvider,
    ) -> BoxFuture<'static, Result<Listing, ListingError>> {
        Box::pin(futures::future::ready(Ok(Listing::default())))
    }
}

/// The operator process: runs the controller until the parent says every watch has listed
/// (each watcher starts its WATCH only after its LIST is complete and applied to its store),
/// then prints its memory as a JSON line.
fn child(url: &str) {
    let started = Instant::now();
    if std::env::var_os("RUST_LOG").is_some() {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .init();
    }
    // No readiness hook: the parent sees from the requests when every watch has listed.
    let hooks = RunHooks {
        ambient: None,
        observer: Arc::new(NoopObserver),
        readiness: None,
        may_write: None,
    };
    let args = RunArgs {
        namespaces: vec![support::NAMESPACE.into()],
        concurrency: 4,
        write_concurrency: 16,
        ambient_credentials_namespaces: vec![],
        ambient_credentials_namespace_selector: None,
        ecs_endpoint: None,
        ecs_rate_limit: 10,
        leader_election: false,
        lease_name: "imagepipeline-operator-leader".into(),
        lease_namespace: "default".into(),
        lease_duration: Duration::from_secs(15),
        worker_threads: 1,
        admin_addr: "127.0.0.1:0".parse().expect("addr"),
        sts_endpoint: None,
        imds_endpoint: None,
        watch_label_selector: None,
        shard: None,
    };
    let config = kube::Config::new(url.parse().expect("url"));
    let url = url.to_string();
    // The same runtime as `#[tokio::main]` in the operator's main.rs.
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let client = kube::Client::try_from(config).expect("client");
            if let Err(e) = run_with(client, args, Arc::new(NoSource), hooks).await {
                eprintln!("controller against {url} failed: {e}");
                std::process::exit(2);
            }
        });
    });
    let mut line = String::new();
    if std::io::stdin().read_line(&mut line).unwrap_or(0) == 0 {
        // The parent is gone.
        std::process::exit(1);
    }
    let synced = started.elapsed().as_secs_f64();
    // Let the last pages be dropped and the runtime go idle.
    std::thread::sleep(Duration::from_millis(500));
    println!(
        "{}",
        json!({
            "rss": support::status_mib("VmRSS"),
            "hwm": support::peak_rss_mib(),
            "synced": synced,
            "cpu": support::cpu_seconds(),
        })
    );
    let _ = std::io::stdout().flush();
    std::process::exit(0);
}

fn run_child(url: &str, api: &FakeApi) -> Value {
    api.seen.lock().unwrap().clear();
    let mut child = Command::new(std::env::current_exe().expect("exe"))
        .env("BENCH_CHILD", url)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run child");
    // Every watch has listed once: the ImagePipeline cache and the controller's owner watch
    // both watch ImagePipelines, plus the queries and Secrets.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let seen = api.seen.lock().unwrap().clone();
        let count = |k: &str| seen.get(k).copied().unwrap_or(0);
        if count("watch imagepipelines") >= 2
            && count("watch imagepipelinequeries") >= 1
            && count("watch secrets") >= 1
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the operator did not start every watch: {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut stdin = child.stdin.take().expect("stdin");
    writeln!(stdin).expect("tell the child");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("read");
    let _ = child.wait();
    serde_json::from_str(&line).unwrap_or_else(|_| panic!("child said {line:?}"))
}

fn main() {
    if let Ok(url) = std::env::var("BENCH_CHILD") {
        child(&url);
        return;
    }
    if !support::started_by_cargo_bench() {
        println!("benchmarks run with `cargo bench --bench memory`");
        return;
    }
    let runs = support::runs(5);
    println!(
        "## Operator memory with N ImagePipelines in its caches (fake API server; median of {runs} runs)\n"
    );
    println!(
        "| objects | managedFields | LIST size (MiB) | RSS after sync (MiB) | peak RSS (MiB) | RSS per object above empty (KiB) | start to synced (ms) | target < 40 MiB at 10k |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---|");
    let mut empty = None;
    let sizes = support::env_list("BENCH_SIZES", "0,1000,10000,50000");
    // As the API server sends them, then without managed fields (what a cache that drops them
    // on the way in would hold).
    for (n, managed_fields) in sizes
        .iter()
        .map(|&n| (n, true))
        .chain(sizes.iter().filter(|&&n| n > 0).map(|&n| (n, false)))
    {
        let (url, api) = start_fake_api(n, managed_fields);
        let list_mib = api.objects.iter().map(|o| o.len() + 1).sum::<usize>() as f64 / 1048576.0;
        let results: Vec<Value> = (0..runs).map(|_| run_child(&url, &api)).collect();
        let f = |k: &str| support::median(results.iter().filter_map(|r| r[k].as_f64()).collect());
        let rss = f("rss");
        if n == 0 {
            empty = Some(rss);
        }
        let per_object = match (empty, n) {
            (Some(base), n) if n > 0 => format!("{:.2}", (rss - base) * 1024.0 / n as f64),
            _ => "–".into(),
        };
        let verdict = match (n, managed_fields) {
            (10_000, true) if rss < 40.0 => "pass",
            (10_000, true) => "FAIL",
            _ => "",
        };
        let kept = if managed_fields { "kept" } else { "dropped" };
        println!(
            "| {n} | {kept} | {list_mib:.1} | {rss:.1} | {:.1} | {per_object} | {:.0} | {verdict} |",
            f("hwm"),
            f("synced") * 1000.0,
        );
        let _ = std::io::stdout().flush();
    }
    println!();
}
