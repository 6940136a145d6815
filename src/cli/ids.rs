//! The pipeline IDs an export has seen, kept in one text with a table of where each one is: an
//! ID costs its bytes and a table slot instead of an allocation of its own (at 100,000 IDs
//! about half the memory of a set of strings, and no `malloc` per item). Each slot keeps the
//! ID's hash too, so that a new ID (nearly every one) is placed without reading the text of
//! the IDs it is compared with, and the table grows without hashing them again: at 100,000
//! IDs those reads were cache misses, a sixteenth of an export's CPU.

use std::hash::BuildHasher;

use hashbrown::HashTable;

/// IDs seen, in two parts: the kept ones, and the pending ones of the page being read, which
/// [`SeenIds::forget_pending`] forgets (the page comes again) and [`SeenIds::keep_pending`]
/// keeps.
#[derive(Default)]
pub struct SeenIds {
    /// Every ID, one after the other.
    text: String,
    /// Each ID's slot.
    table: HashTable<Span>,
    /// Where the pending IDs start in `text`.
    pending_from: usize,
    /// How many IDs are kept.
    kept: usize,
    hasher: foldhash::fast::RandomState,
}

/// The most IDs [`SeenIds::expect`] makes room for ahead: a count from the service is not
/// trusted with more than a few MiB (a table of this many slots holds about 9 MiB).
pub const RESERVE_AT_MOST: usize = 1 << 18;

/// Where an ID is in [`SeenIds::text`], and its hash.
#[derive(Clone, Copy)]
struct Span {
    hash: u64,
    start: u32,
    end: u32,
}

impl SeenIds {
    /// Adds `id` as pending; `false` (and nothing added) when it was seen already, kept or
    /// pending.
    pub fn insert(&mut self, id: &str) -> bool {
        let Self {
            text,
            table,
            hasher,
            ..
        } = self;
        let hash = hasher.hash_one(id);
        // One probe finds the ID or the slot for it; an ID's text is read only when its hash is
        // the same.
        let entry = table.entry(
            hash,
            |span| {
                span.hash == hash && text.get(span.start as usize..span.end as usize) == Some(id)
            },
            |span| span.hash,
        );
        let hashbrown::hash_table::Entry::Vacant(slot) = entry else {
            return false;
        };
        // 4 GiB of IDs is twenty thousand times the most a region holds; past it, an ID is
        // printed again rather than the export stopped.
        let (Ok(start), Ok(end)) = (
            u32::try_from(text.len()),
            u32::try_from(text.len() + id.len()),
        ) else {
            return true;
        };
        slot.insert(Span { hash, start, end });
        text.push_str(id);
        true
    }

    /// Makes room for `total` IDs in all (at most [`RESERVE_AT_MOST`]), so that a listing whose
    /// size is known grows the table once instead of doubling it again and again (each table
    /// freed on the way is memory given back and faulted in anew).
    pub fn expect(&mut self, total: u64) {
        let total = usize::try_from(total)
            .unwrap_or(usize::MAX)
            .min(RESERVE_AT_MOST);
        let more = total.saturating_sub(self.table.len());
        self.table.reserve(more, |span| span.hash);
    }

    /// Forgets the pending IDs.
    pub fn forget_pending(&mut self) {
        let from = self.pending_from;
        self.table.retain(|span| (span.start as usize) < from);
        self.text.truncate(from);
    }

    /// Keeps the pending IDs.
    pub fn keep_pending(&mut self) {
        self.pending_from = self.text.len();
        self.kept = self.table.len();
    }

    /// How many IDs are kept.
    pub fn kept(&self) -> usize {
        self.kept
    }
}

#[cfg(test)]
mod tests {
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
    fn room_made_ahead_keeps_every_id_and_a_count_too_large_is_capped() {
        let mut ids = SeenIds::default();
        assert!(ids.insert("ip-first"));
        ids.expect(2_000);
        assert!(ids.table.capacity() >= 2_000);
        assert!(
            !ids.insert("ip-first"),
            "an ID seen before the room was made"
        );
        for i in 0..2_000 {
            assert!(ids.insert(&format!("ip-{i}")));
        }
        assert!(!ids.insert("ip-1999"));

        let mut ids = SeenIds::default();
        ids.expect(u64::MAX);
        assert!(ids.table.capacity() >= RESERVE_AT_MOST);
        assert!(
            ids.table.capacity() < 2 * RESERVE_AT_MOST,
            "{}",
            ids.table.capacity()
        );
        assert!(ids.insert("ip-a") && !ids.insert("ip-a"));
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
}
