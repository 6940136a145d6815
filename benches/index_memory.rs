//! Where the steady memory per mirrored object goes: the bytes the operator's index (one
//! compact record per ImagePipeline, what the watch keeps) and a query's remembered listing
//! (the digest of IDs and content hashes) hold per object, counted by a global allocator that
//! tracks every live allocation (requested bytes, and the chunks glibc's malloc hands out for
//! them: 8 bytes of header, rounded up to 16, at least 32).
//!
//! `cargo bench --bench index_memory`; environment: `BENCH_SIZES` (default `10000,100000`).

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use imagepipeline_operator::controller::cache::MirrorCache;
use imagepipeline_operator::controller::mirrored::ListedDigest;
use imagepipeline_operator::ecs::Listing;

struct Counting;

static REQUESTED: AtomicUsize = AtomicUsize::new(0);
static CHUNKS: AtomicUsize = AtomicUsize::new(0);

fn chunk(size: usize) -> usize {
    (size + 8).div_ceil(16).max(2) * 16
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        REQUESTED.fetch_add(layout.size(), Ordering::Relaxed);
        CHUNKS.fetch_add(chunk(layout.size()), Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        REQUESTED.fetch_sub(layout.size(), Ordering::Relaxed);
        CHUNKS.fetch_sub(chunk(layout.size()), Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> (usize, usize) {
    (
        REQUESTED.load(Ordering::Relaxed),
        CHUNKS.load(Ordering::Relaxed),
    )
}

fn per_object(before: (usize, usize), after: (usize, usize), n: usize) -> (f64, f64) {
    (
        (after.0 - before.0) as f64 / n as f64,
        (after.1 - before.1) as f64 / n as f64,
    )
}

fn main() {
    if !support::started_by_cargo_bench() {
        return;
    }
    println!("| objects | what | bytes requested per object | malloc chunks per object |");
    println!("|---:|---|---:|---:|");
    for n in support::env_list("BENCH_SIZES", "10000,100000") {
        let items = support::items(n);
        let before = live();
        let cache = {
            let objects = support::stored_objects(&items);
            MirrorCache::from_objects(objects)
        };
        let after = live();
        assert_eq!(cache.len(), n);
        let (req, chunks) = per_object(before, after, n);
        println!("| {n} | index record (what the watch keeps) | {req:.0} | {chunks:.0} |");

        let listing = Listing {
            items,
            ..Listing::default()
        };
        let before = live();
        let digest = ListedDigest::of(&listing, support::REGION);
        let after = live();
        assert_eq!(digest.entries.len(), n);
        let (req, chunks) = per_object(before, after, n);
        println!("| {n} | remembered listing (digest entry) | {req:.0} | {chunks:.0} |");
        drop(digest);
        drop(cache);
    }
}
