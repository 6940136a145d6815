//! Listing and decoding benchmarks against `ecs-sim` on loopback.
//!
//! `cargo bench --bench listing` prints one table row per scenario with the median of
//! `BENCH_RUNS` (default 5) runs. Every run is a fresh child process (this same executable
//! re-invoked with `BENCH_CHILD` set), so peak RSS and CPU time are the client's own: the
//! simulator runs as a separate `imagepipeline-operator ecs-sim` process.
//!
//! Environment: `BENCH_SIZES` (default `1000,10000,50000`), `BENCH_PAGE_SIZES` (default `50,500`),
//! `BENCH_RUNS` (default 5).

mod support;

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::Instant;

use imagepipeline_operator::ecs::credentials::{Credentials, SharedProvider, StaticProvider};
use imagepipeline_operator::ecs::model::decode_page;
use imagepipeline_operator::ecs::{ClientConfig, EcsClient, PipelineFilter};
use imagepipeline_operator::sim;
use serde_json::{Value, json};
use support::{REGION, cpu_seconds, env_list, median, peak_rss_mib};

/// One listing in this (child) process; prints a JSON line.
fn child_listing(url: &str, page_size: u32) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let client = EcsClient::new(ClientConfig {
        endpoint: Some(url.to_string()),
        // The benchmark measures the client, not the production rate limit.
        rate_limit_qps: 100_000,
        rate_limit_burst: 1_000,
        ..ClientConfig::default()
    })
    .expect("client");
    let provider: SharedProvider = Arc::new(StaticProvider::new(
        "bench",
        Credentials::new(sim::DEFAULT_ACCESS_KEY_ID, sim::DEFAULT_ACCESS_KEY_SECRET),
    ));
    let mut filter = PipelineFilter::region(REGION);
    filter.page_size = page_size;
    let cpu0 = cpu_seconds();
    let start = Instant::now();
    let listing = runtime
        .block_on(client.list_all(&filter, &provider))
        .expect("listing");
    let wall = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu0;
    println!(
        "{}",
        json!({"items": listing.items.len(), "calls": listing.calls, "wall": wall, "cpu": cpu, "rss": peak_rss_mib()})
    );
}

struct Sim {
    child: Child,
    url: String,
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_sim(n: usize, dir: &std::path::Path) -> Sim {
    let items = support::api_items(n);
    let path = dir.join(format!("items-{n}.json"));
    std::fs::write(&path, serde_json::to_vec(&items).expect("json")).expect("write data");
    let mut child = Command::new(env!("CARGO_BIN_EXE_imagepipeline-operator"))
        .args(["ecs-sim", "--listen", "127.0.0.1:0", "--data"])
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start ecs-sim");
    let mut line = String::new();
    let stdout = child.stdout.take().expect("stdout");
    BufReader::new(stdout).read_line(&mut line).expect("read");
    let url = line.trim().trim_start_matches("listening on ").to_string();
    Sim { child, url }
}

fn run_child(url: &str, page_size: u32) -> Value {
    let out = Command::new(std::env::current_exe().expect("exe"))
        .env("BENCH_CHILD", format!("{url} {page_size}"))
        .output()
        .expect("run child");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .rev()
        .find_map(|l| serde_json::from_str(l).ok())
        .unwrap_or_else(|| panic!("child failed: {}", String::from_utf8_lossy(&out.stderr)))
}

fn bench_listing(runs: usize) {
    let dir = tempfile::tempdir().expect("tempdir");
    println!("## Full listing from ecs-sim over loopback (median of {runs} runs)\n");
    println!(
        "| pipelines | MaxResults | calls | expected calls | wall (ms) | pipelines/s | client CPU (ms) | peak RSS (MiB) |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    for n in env_list("BENCH_SIZES", "1000,10000,50000") {
        let sim = start_sim(n, dir.path());
        for page in env_list("BENCH_PAGE_SIZES", "50,500") {
            let results: Vec<Value> = (0..runs)
                .map(|_| run_child(&sim.url, page as u32))
                .collect();
            let calls = results[0]["calls"].as_u64().unwrap_or(0);
            let items = results[0]["items"].as_u64().unwrap_or(0);
            assert_eq!(
                items as usize, n,
                "listing returned the wrong number of pipelines"
            );
            assert_eq!(
                calls as usize,
                n.div_ceil(page),
                "one ECS call per page, no more"
            );
            let f = |k: &str| median(results.iter().filter_map(|r| r[k].as_f64()).collect());
            let wall = f("wall");
            println!(
                "| {n} | {page} | {calls} | {} | {:.1} | {:.0} | {:.1} | {:.1} |",
                n.div_ceil(page),
                wall * 1000.0,
                n as f64 / wall,
                f("cpu") * 1000.0,
                f("rss"),
            );
            let _ = std::io::stdout().flush();
        }
    }
    println!();
}

fn bench_decode(runs: usize) {
    // One full page of 500 realistic items, as the service sends it.
    let items: Vec<Value> = sim::generate(500, 7)
        .into_iter()
        .map(|mut i| {
            if let Some(o) = i.as_object_mut() {
                o.remove("RegionId");
            }
            i
        })
        .collect();
    let body = serde_json::to_vec(&json!({
        "RequestId": "473469C7-AA6F-4DC5-B3DB-A3DC0DE3C83E", "TotalCount": 500, "MaxResults": 500,
        "NextToken": "", "ImagePipeline": {"ImagePipelineSet": items}
    }))
    .expect("json");
    let rounds = 200;
    let mut rates = Vec::new();
    for _ in 0..runs {
        let start = Instant::now();
        let mut decoded = 0;
        for _ in 0..rounds {
            let value: Value = serde_json::from_slice(&body).expect("parse");
            decoded += decode_page(&value).items.len();
        }
        let secs = start.elapsed().as_secs_f64();
        assert_eq!(decoded, 500 * rounds);
        rates.push((body.len() * rounds) as f64 / secs / 1e6);
    }
    println!("## Response decoding (parse + lenient decode), median of {runs} runs\n");
    println!("| page | body size | MB/s | pages/s |");
    println!("|---|---:|---:|---:|");
    let mbps = median(rates);
    println!(
        "| 500 items | {:.0} KiB | {mbps:.0} | {:.0} |\n",
        body.len() as f64 / 1024.0,
        mbps * 1e6 / body.len() as f64
    );
}

fn main() {
    if let Ok(spec) = std::env::var("BENCH_CHILD") {
        let (url, page) = spec.split_once(' ').expect("BENCH_CHILD is 'URL PAGE'");
        child_listing(url, page.parse().expect("page size"));
        return;
    }
    // `cargo test --benches` runs this with `--bench` absent; keep that path quick.
    if !support::started_by_cargo_bench() {
        println!("benchmarks run with `cargo bench --bench listing`");
        return;
    }
    let runs = support::runs(5);
    bench_decode(runs);
    bench_listing(runs);
}
