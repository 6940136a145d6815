//! Planning a sync of N pipelines against N existing objects, as the controller does on every
//! refresh: build the namespace view from the operator's cache of records, then the pure plan.
//!
//! `cargo bench --bench plan` prints the median of `BENCH_RUNS` (default 11) timings per
//! scenario after one warm-up. Environment: `BENCH_SIZES` (default `1000,10000,50000`),
//! `BENCH_RUNS`.

mod support;

use std::hint::black_box;
use std::time::Instant;

use imagepipeline_operator::controller::plan::{Plan, PlanInput, plan};
use imagepipeline_operator::controller::view::RecentWrites;

use imagepipeline_operator::controller::cache::MirrorCache;
use imagepipeline_operator::ecs::ImagePipelineItem;
use support::{NAMESPACE, NOW, QUERY, QUERY_UID, REGION};

/// What the listing looks like compared with the objects.
#[derive(Clone, Copy)]
enum Scenario {
    Unchanged,
    OnePercentChanged,
    TenPercentVanished,
}

impl Scenario {
    fn label(self) -> &'static str {
        match self {
            Scenario::Unchanged => "all unchanged",
            Scenario::OnePercentChanged => "1% changed",
            Scenario::TenPercentVanished => "10% vanished",
        }
    }

    fn listing(self, items: &[ImagePipelineItem]) -> Vec<ImagePipelineItem> {
        match self {
            Scenario::Unchanged => items.to_vec(),
            Scenario::OnePercentChanged => items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    let mut item = item.clone();
                    if i % 100 == 0 {
                        item.description = Some(format!("rebuilt: {i}"));
                    }
                    item
                })
                .collect(),
            Scenario::TenPercentVanished => items
                .iter()
                .enumerate()
                .filter(|(i, _)| i % 10 != 0)
                .map(|(_, item)| item.clone())
                .collect(),
        }
    }

    /// (writes, deletions) the plan must come to.
    fn expected(self, n: usize) -> (usize, usize) {
        match self {
            Scenario::Unchanged => (0, 0),
            Scenario::OnePercentChanged => (n.div_ceil(100), 0),
            Scenario::TenPercentVanished => (0, n.div_ceil(10)),
        }
    }
}

fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> (f64, f64) {
    black_box(f());
    let samples: Vec<f64> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            black_box(f());
            start.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    let min = samples.iter().copied().fold(f64::INFINITY, f64::min);
    (support::median(samples), min)
}

fn main() {
    if !support::started_by_cargo_bench() {
        println!("benchmarks run with `cargo bench --bench plan`");
        return;
    }
    let runs = support::runs(11);
    let owners = support::owners();
    println!("## Plan of one sync against N existing objects (median of {runs} runs)\n");
    println!(
        "| pipelines | scenario | writes | deletions | view from store (ms) | plan (ms) | view + plan (ms) | µs per pipeline |"
    );
    println!("|---:|---|---:|---:|---:|---:|---:|---:|");
    for n in support::env_list("BENCH_SIZES", "1000,10000,50000") {
        let items = support::items(n);
        let objects = support::stored_objects(&items);
        let store = MirrorCache::from_objects(objects.iter().cloned());
        let recent = RecentWrites::default();
        let existing = recent.namespace_view(&store, NAMESPACE);
        assert_eq!(existing.len(), n);
        let (view_ms, _) = time(runs, || recent.namespace_view(&store, NAMESPACE));
        for scenario in [
            Scenario::Unchanged,
            Scenario::OnePercentChanged,
            Scenario::TenPercentVanished,
        ] {
            let listing = scenario.listing(&items);
            let run = || -> Plan {
                plan(&PlanInput {
                    query_name: QUERY,
                    query_uid: QUERY_UID,
                    namespace: NAMESPACE,
                    region_id: REGION,
                    items: &listing,
                    existing: &existing,
                    owners: &owners,
                    prune: true,
                    claims: &std::collections::BTreeMap::new(),
                    awaiting_listings: false,
                    now: NOW,
                    instance_label: None,
                })
            };
            let result = run();
            assert_eq!(
                (result.writes.len(), result.deletions.len()),
                scenario.expected(n),
                "{} of {n}",
                scenario.label()
            );
            let (plan_ms, _) = time(runs, run);
            println!(
                "| {n} | {} | {} | {} | {view_ms:.1} | {plan_ms:.1} | {:.1} | {:.2} |",
                scenario.label(),
                result.writes.len(),
                result.deletions.len(),
                view_ms + plan_ms,
                (view_ms + plan_ms) * 1000.0 / n as f64,
            );
        }
    }
    println!();
}
