//! The pipeline IDs an export has seen, kept in one text with a table of where each one is: an
//! ID costs its bytes after a length byte and an 8-byte slot instead of an allocation of its
//! own, and no `malloc` per item.
//!
//! Why a table of its own: at 100,000 IDs the table does not stay in the caches, and placing a
//! new ID (nearly every one) cost two cache misses in a general hash table (its control bytes,
//! then its slot), about a tenth of an export's CPU. Here a slot holds part of the ID's hash and
//! where its span is, so a new ID is placed with one look at one line of the table; and that
//! line can be asked for ahead ([`SeenIds::stage`]) while the item is printed, so that placing
//! it afterwards ([`SeenIds::place_staged`]) finds the line in the cache.

use std::hash::BuildHasher;

/// IDs seen, in two parts: the kept ones, and the pending ones of the page being read, which
/// [`SeenIds::forget_pending`] forgets (the page comes again) and [`SeenIds::keep_pending`]
/// keeps. An ID may also be staged: hashed and its text added, not yet placed.
#[derive(Default)]
pub struct SeenIds {
    /// Every ID, one after the other, each after its length ([`LONG`] and four bytes for a
    /// long one); a staged one last.
    text: Vec<u8>,
    /// Open addressing with linear probing, at most half full: `0` for an empty slot, else the
    /// high 32 bits of the ID's hash above where the ID starts in `text`, plus one.
    slots: Vec<u64>,
    /// How many IDs are placed.
    placed: usize,
    /// How many IDs are kept, and where the pending ones start in `text`.
    kept: usize,
    pending_from: usize,
    /// The staged ID, if any: its hash and where it starts in `text`.
    staged: Option<Staged>,
    hasher: foldhash::fast::RandomState,
}

/// The most IDs [`SeenIds::expect`] makes room for ahead: a count from the service is not
/// trusted with more than a few MiB (a table for this many IDs holds 4 MiB).
pub const RESERVE_AT_MOST: usize = 1 << 18;

/// The length byte of an ID of this many bytes or more, whose length follows in four bytes.
const LONG: u8 = u8::MAX;

/// An ID hashed and written into the text, not yet placed.
#[derive(Clone, Copy)]
struct Staged {
    hash: u64,
    start: usize,
}

/// The fewest slots a table has once it has any.
const MIN_SLOTS: usize = 16;

impl SeenIds {
    /// Adds `id` as pending; `false` (and nothing added) when it was seen already, kept or
    /// pending. Places a staged ID first.
    pub fn insert(&mut self, id: &str) -> bool {
        self.place_staged();
        self.stage(id);
        self.place_staged().unwrap_or(true)
    }

    /// Hashes `id`, adds its text and asks for its slot's line of the table, to be placed by
    /// [`SeenIds::place_staged`] after other work; replaces (forgets) an ID already staged.
    pub fn stage(&mut self, id: &str) {
        if let Some(staged) = self.staged.take() {
            self.text.truncate(staged.start);
        }
        // 4 GiB for one ID is past any answer this reads; such an ID is cut here, at worst
        // printed twice.
        let id = &id.as_bytes()[..id.len().min(u32::MAX as usize)];
        // The bytes kept are hashed, as `resize` and `forget_pending` hash the text again.
        let hash = self.hasher.hash_one(id);
        let start = self.text.len();
        match u8::try_from(id.len()) {
            Ok(short) if short < LONG => self.text.push(short),
            _ => {
                self.text.push(LONG);
                // At most `u32::MAX`: cut above.
                self.text
                    .extend_from_slice(&(id.len() as u32).to_le_bytes());
            }
        }
        self.text.extend_from_slice(id);
        self.staged = Some(Staged { hash, start });
        if !self.slots.is_empty() {
            prefetch(&self.slots, home(hash, self.slots.len()));
        }
    }

    /// Places the staged ID as pending: `Some(true)` when it is new, `Some(false)` (and its
    /// text taken back) when it was seen already, `None` when nothing was staged.
    pub fn place_staged(&mut self) -> Option<bool> {
        let Staged { hash, start } = self.staged.take()?;
        if self.find(hash, start).is_some() {
            self.text.truncate(start);
            return Some(false);
        }
        // 4 GiB of IDs is twenty thousand times the most a region holds; past it, an ID is
        // printed again rather than the export stopped.
        if u32::try_from(start + 1).is_err() {
            self.text.truncate(start);
            return Some(true);
        }
        self.placed += 1;
        if self.placed * 2 > self.slots.len() {
            self.resize(self.placed * 2);
        } else {
            self.place(hash, start);
        }
        Some(true)
    }

    /// Makes room for `total` IDs in all (at most [`RESERVE_AT_MOST`]), so that a listing whose
    /// size is known sizes the table once instead of doubling it again and again (each table
    /// freed on the way is memory given back and faulted in anew).
    pub fn expect(&mut self, total: u64) {
        let total = usize::try_from(total)
            .unwrap_or(usize::MAX)
            .min(RESERVE_AT_MOST);
        if total * 2 > self.slots.len() {
            self.resize(total * 2);
        }
    }

    /// Forgets the pending IDs (and a staged one).
    pub fn forget_pending(&mut self) {
        let placed_end = self.placed_end();
        self.staged = None;
        let pending: Vec<usize> = Ids::new(&self.text[..placed_end], self.pending_from).collect();
        // The newest ID sits in the first slot that was empty from its home when it was
        // placed, and every ID placed after it is out already: emptying its slot undoes the
        // placing exactly (after a resize too, which places the IDs again in order).
        for &start in pending.iter().rev() {
            let hash = self.hasher.hash_one(self.id_at(start));
            if let Some(slot) = self.slot_of(hash, start) {
                self.slots[slot] = 0;
            }
        }
        self.placed -= pending.len();
        self.text.truncate(self.pending_from);
    }

    /// Keeps the pending IDs (a staged one stays staged).
    pub fn keep_pending(&mut self) {
        self.kept = self.placed;
        self.pending_from = self.placed_end();
    }

    /// How many IDs are kept.
    pub fn kept(&self) -> usize {
        self.kept
    }

    /// Where the placed IDs end in `text` (the staged one starts).
    fn placed_end(&self) -> usize {
        self.staged.map_or(self.text.len(), |s| s.start)
    }

    /// The ID that starts at `start` in `text`.
    fn id_at(&self, start: usize) -> &[u8] {
        let (from, len) = id_len_at(&self.text, start);
        self.text.get(from..from + len).unwrap_or_default()
    }

    /// The slot of the ID placed already that equals the one at `start` (whose hash is `hash`).
    fn find(&self, hash: u64, start: usize) -> Option<usize> {
        let len = self.slots.len();
        if len == 0 {
            return None;
        }
        let id = self.id_at(start);
        let mut at = home(hash, len);
        loop {
            let slot = self.slots[at];
            if slot == 0 {
                return None;
            }
            if tag(slot) == tag_of(hash) && self.id_at(offset(slot)) == id {
                return Some(at);
            }
            at = (at + 1) & (len - 1);
        }
    }

    /// The slot of the ID placed at `start` (whose hash is `hash`).
    fn slot_of(&self, hash: u64, start: usize) -> Option<usize> {
        let len = self.slots.len();
        let mut at = home(hash, len);
        for _ in 0..len {
            let slot = self.slots[at];
            if slot == 0 {
                return None;
            }
            if offset(slot) == start {
                return Some(at);
            }
            at = (at + 1) & (len - 1);
        }
        None
    }

    /// Places the ID at `start`, whose hash is `hash`.
    fn place(&mut self, hash: u64, start: usize) {
        place(&mut self.slots, hash, start);
    }

    /// A table of at least `wanted` slots (a power of two), every placed ID in it again, in
    /// the order they were placed.
    fn resize(&mut self, wanted: usize) {
        let mut slots = vec![0; wanted.max(MIN_SLOTS).next_power_of_two()];
        let placed = &self.text[..self.placed_end()];
        for start in Ids::new(placed, 0) {
            let (from, len) = id_len_at(placed, start);
            place(
                &mut slots,
                self.hasher.hash_one(&placed[from..from + len]),
                start,
            );
        }
        self.slots = slots;
    }
}

/// Places the ID at `start`, whose hash is `hash`, in the first empty one of `slots` from its
/// home.
fn place(slots: &mut [u64], hash: u64, start: usize) {
    let len = slots.len();
    let mut at = home(hash, len);
    while slots[at] != 0 {
        at = (at + 1) & (len - 1);
    }
    // `start + 1` fits in 32 bits: checked before placing.
    slots[at] = (u64::from(tag_of(hash)) << 32) | (start as u64 + 1);
}

/// Where the ID that starts at `start` of `text` has its bytes, and how many.
fn id_len_at(text: &[u8], start: usize) -> (usize, usize) {
    match text.get(start) {
        Some(&LONG) => {
            let len = text
                .get(start + 1..start + 5)
                .and_then(|b| <[u8; 4]>::try_from(b).ok())
                .map_or(0, u32::from_le_bytes);
            (start + 5, len as usize)
        }
        Some(&short) => (start + 1, usize::from(short)),
        None => (start, 0),
    }
}

/// The starts of the IDs of a text, from `from`.
struct Ids<'a> {
    text: &'a [u8],
    at: usize,
}

impl<'a> Ids<'a> {
    fn new(text: &'a [u8], from: usize) -> Self {
        Self { text, at: from }
    }
}

impl Iterator for Ids<'_> {
    type Item = usize;

    fn next(&mut self) -> Option<usize> {
        if self.at >= self.text.len() {
            return None;
        }
        let start = self.at;
        let (from, len) = id_len_at(self.text, start);
        self.at = from + len;
        Some(start)
    }
}

/// The slot a hash starts looking at in a table of `len` slots (a power of two).
fn home(hash: u64, len: usize) -> usize {
    (hash as usize) & (len - 1)
}

/// The part of a hash a slot keeps.
fn tag_of(hash: u64) -> u32 {
    (hash >> 32) as u32
}

fn tag(slot: u64) -> u32 {
    (slot >> 32) as u32
}

/// Where a slot's ID starts in the text.
fn offset(slot: u64) -> usize {
    (slot & u64::from(u32::MAX)) as usize - 1
}

/// Asks for the cache line of `slots[at]` without waiting for it.
#[allow(unsafe_code)]
fn prefetch(slots: &[u64], at: usize) {
    #[cfg(target_arch = "x86_64")]
    if let Some(slot) = slots.get(at) {
        // SAFETY: a prefetch is a hint: it reads nothing the program sees and cannot fault;
        // the address is that of a live element anyway. SSE is part of every x86_64 target.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
                std::ptr::from_ref(slot).cast(),
            );
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (slots, at);
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn an_id_is_seen_once_and_forgotten_only_while_pending() {
        let mut ids = SeenIds::default();
        assert!(ids.insert("ip-a"));
        assert!(!ids.insert("ip-a"), "pending counts as seen");
        ids.keep_pending();
        assert_eq!(ids.kept(), 1);
        assert!(ids.insert("ip-b"));
        assert!(ids.insert("ip-"), "a prefix of another ID is another ID");
        assert!(!ids.insert("ip-a"), "kept");
        ids.forget_pending();
        assert_eq!(ids.kept(), 1);
        assert!(
            !ids.insert("ip-a"),
            "still kept after forgetting the pending ones"
        );
        assert!(ids.insert("ip-b"), "forgotten");
        assert!(ids.insert("ip-"));
        ids.keep_pending();
        assert_eq!(ids.kept(), 3);
        ids.forget_pending();
        assert_eq!(ids.kept(), 3);
        for id in ["ip-a", "ip-b", "ip-"] {
            assert!(!ids.insert(id), "{id}");
        }
    }

    #[test]
    fn a_staged_id_is_placed_later_or_forgotten_with_its_page() {
        let mut ids = SeenIds::default();
        assert_eq!(ids.place_staged(), None, "nothing staged");
        ids.stage("ip-a");
        assert_eq!(ids.place_staged(), Some(true));
        ids.stage("ip-a");
        assert_eq!(ids.place_staged(), Some(false), "seen: its text taken back");
        assert_eq!(ids.text, b"\x04ip-a");
        ids.stage("ip-b");
        ids.stage("ip-c");
        assert_eq!(ids.place_staged(), Some(true), "the later stage replaces");
        assert!(ids.insert("ip-b"), "ip-b was never placed");
        ids.stage("ip-d");
        ids.forget_pending();
        assert_eq!(ids.place_staged(), None, "forgotten with the page");
        assert!(ids.text.is_empty());
        assert!(ids.insert("ip-a"));
    }

    #[test]
    fn room_made_ahead_keeps_every_id_and_a_count_too_large_is_capped() {
        let mut ids = SeenIds::default();
        assert!(ids.insert("ip-first"));
        ids.expect(2_000);
        assert!(ids.slots.len() >= 4_000);
        assert!(
            !ids.insert("ip-first"),
            "an ID seen before the room was made"
        );
        let slots = ids.slots.len();
        for i in 0..2_000 {
            assert!(ids.insert(&format!("ip-{i}")));
        }
        assert_eq!(ids.slots.len(), slots, "no growth within the room made");
        assert!(!ids.insert("ip-1999"));

        let mut ids = SeenIds::default();
        ids.expect(u64::MAX);
        assert_eq!(ids.slots.len(), 2 * RESERVE_AT_MOST);
        assert!(ids.insert("ip-a") && !ids.insert("ip-a"));
    }

    #[test]
    fn ids_of_any_length_are_told_apart() {
        let mut ids = SeenIds::default();
        let long = "i".repeat(300);
        let longer = "i".repeat(301);
        for id in ["", "i", &"i".repeat(254), &"i".repeat(255), &long, &longer] {
            assert!(ids.insert(id), "{}", id.len());
        }
        ids.keep_pending();
        assert!(ids.insert(&"i".repeat(299)));
        assert!(!ids.insert(&long) && !ids.insert(&longer) && !ids.insert(""));
        ids.forget_pending();
        assert!(ids.insert(&"i".repeat(299)), "forgotten with its page");
        assert_eq!(ids.kept(), 6);
        for i in 0..100 {
            assert!(ids.insert(&format!("ip-{i}")), "the table grows");
        }
        for id in [&"i".repeat(255), &long, &longer, &"i".repeat(299)] {
            assert!(!ids.insert(id), "{} still seen", id.len());
        }
    }

    #[test]
    fn many_ids_survive_the_table_growing() {
        let mut ids = SeenIds::default();
        for i in 0..10_000 {
            assert!(ids.insert(&format!("ip-{i}")));
        }
        ids.keep_pending();
        for i in 0..10_000 {
            assert!(!ids.insert(&format!("ip-{i}")), "ip-{i}");
        }
        assert!(ids.insert("ip-10000"));
        assert_eq!(ids.kept(), 10_000);
    }

    /// Whether `id` is placed, looked up without placing it (a staged ID is forgotten).
    fn is_seen(ids: &mut SeenIds, id: &str) -> bool {
        ids.stage(id);
        let staged = ids.staged.take().expect("staged");
        let seen = ids.find(staged.hash, staged.start).is_some();
        ids.text.truncate(staged.start);
        seen
    }

    /// What the IDs do to the set, against a model of two plain sets.
    #[derive(Debug, Clone)]
    enum Step {
        Insert(u8),
        Stage(u8),
        Place,
        Keep,
        Forget,
    }

    fn step() -> impl Strategy<Value = Step> {
        prop_oneof![
            4 => any::<u8>().prop_map(Step::Insert),
            2 => any::<u8>().prop_map(Step::Stage),
            2 => Just(Step::Place),
            1 => Just(Step::Keep),
            1 => Just(Step::Forget),
        ]
    }

    proptest! {
        #[test]
        fn behaves_as_a_set_of_kept_and_pending_ids(steps in prop::collection::vec(step(), 0..400)) {
            let mut ids = SeenIds::default();
            let (mut kept, mut pending) = (HashSet::new(), HashSet::new());
            let mut staged: Option<String> = None;
            // Few distinct IDs (and a small table) so that runs of slots collide and wrap.
            let name = |n: u8| format!("ip-{}", n % 40);
            for step in steps {
                match step {
                    Step::Insert(n) | Step::Stage(n) => {
                        if let Some(id) = staged.take() {
                            let new = !kept.contains(&id) && !pending.contains(&id);
                            if matches!(step, Step::Insert(_)) {
                                prop_assert_eq!(ids.place_staged(), Some(new));
                                if new { pending.insert(id); }
                            }
                        }
                        let id = name(n);
                        if matches!(step, Step::Insert(_)) {
                            let new = !kept.contains(&id) && !pending.contains(&id);
                            prop_assert_eq!(ids.insert(&id), new, "{}", id);
                            if new { pending.insert(id); }
                        } else {
                            ids.stage(&id);
                            staged = Some(id);
                        }
                    }
                    Step::Place => {
                        let expected = staged.take().map(|id| {
                            let new = !kept.contains(&id) && !pending.contains(&id);
                            if new { pending.insert(id); }
                            new
                        });
                        prop_assert_eq!(ids.place_staged(), expected);
                    }
                    Step::Keep => {
                        ids.keep_pending();
                        kept.extend(pending.drain());
                    }
                    Step::Forget => {
                        ids.forget_pending();
                        pending.clear();
                        staged = None;
                    }
                }
                prop_assert_eq!(ids.kept(), kept.len());
                prop_assert_eq!(ids.placed, kept.len() + pending.len());
            }
            for n in 0..40u8 {
                let id = name(n);
                let seen = kept.contains(&id) || pending.contains(&id);
                prop_assert_eq!(is_seen(&mut ids, &id), seen, "{}", id);
            }
        }
    }
}
