//! The pipeline IDs an export has seen, kept in one text with a table of where each one is: an
//! ID costs its bytes and a table slot instead of an allocation of its own (at 100,000 IDs
//! about half the memory of a set of strings, and no `malloc` per item).

use std::hash::BuildHasher;

use hashbrown::HashTable;

/// IDs seen, in two parts: the kept ones, and the pending ones of the page being read, which
/// [`SeenIds::forget_pending`] forgets (the page comes again) and [`SeenIds::keep_pending`]
/// keeps.
#[derive(Default)]
pub struct SeenIds {
    /// Every ID, one after the other.
    text: String,
    /// Each ID's start and end in `text`.
    table: HashTable<(usize, usize)>,
    /// Where the pending IDs start in `text`.
    pending_from: usize,
    /// How many IDs are kept.
    kept: usize,
    hasher: foldhash::fast::RandomState,
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
        let at = |&(start, end): &(usize, usize)| text.get(start..end);
        // One probe finds the ID or the slot for it.
        let entry = table.entry(
            hasher.hash_one(id),
            |span| at(span) == Some(id),
            |span| hasher.hash_one(at(span).unwrap_or_default()),
        );
        let hashbrown::hash_table::Entry::Vacant(slot) = entry else {
            return false;
        };
        let start = text.len();
        slot.insert((start, start + id.len()));
        text.push_str(id);
        true
    }

    /// Forgets the pending IDs.
    pub fn forget_pending(&mut self) {
        let from = self.pending_from;
        self.table.retain(|&mut (start, _)| start < from);
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
