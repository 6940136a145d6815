//! Pages a caller already knows. A listing repeated on an interval mostly returns the same
//! pages; decoding them again is most of a refresh's cost. A caller that remembers the hash of
//! each page's list text (see [`list_hash`]) passes those hashes as [`KnownLists`], and a page
//! whose list text hashes to one of them comes back undecoded ([`PipelinePage::undecoded`]):
//! its items are the ones the caller saw before, byte for byte. Anything else decodes as
//! always.
//!
//! [`PipelinePage::undecoded`]: crate::model::PipelinePage::undecoded

use std::collections::HashSet;
use std::hash::BuildHasher;
use std::sync::{Arc, OnceLock};

/// The hash of a page's list member text (`"ImagePipeline": <text>`), the same for the same
/// text within this process (the seed is random per process, so it is never stored).
pub fn list_hash(text: &str) -> u64 {
    hash_bytes(text.as_bytes())
}

/// [`list_hash`] of text not yet checked to be UTF-8 (equal hashes: equal bytes).
pub(crate) fn hash_bytes(bytes: &[u8]) -> u64 {
    static SEED: OnceLock<foldhash::quality::RandomState> = OnceLock::new();
    SEED.get_or_init(Default::default).hash_one(bytes)
}

/// The lists of pages the caller has decoded before: each one's hash and length, in page
/// order. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct KnownLists(Arc<Known>);

#[derive(Debug, Default)]
struct Known {
    hashes: HashSet<u64>,
    lengths: Vec<usize>,
}

impl KnownLists {
    /// The lists with these `(hash, length in bytes)`, in the order of their pages.
    pub fn new(lists: impl IntoIterator<Item = (u64, usize)>) -> Self {
        let mut known = Known::default();
        for (hash, length) in lists {
            known.hashes.insert(hash);
            known.lengths.push(length);
        }
        Self(Arc::new(known))
    }

    /// Whether a list with this hash is known.
    pub fn contains(&self, hash: u64) -> bool {
        self.0.hashes.contains(&hash)
    }

    /// How many lists are known.
    pub fn len(&self) -> usize {
        self.0.lengths.len()
    }

    /// Whether no list is known.
    pub fn is_empty(&self) -> bool {
        self.0.lengths.is_empty()
    }

    /// The lengths worth trying for the list of the page at `index` (from 0): that page's,
    /// then its neighbours' (a listing that gained or lost a page's worth of items).
    pub(crate) fn lengths_near(&self, index: usize) -> impl Iterator<Item = usize> + '_ {
        [Some(index), index.checked_sub(1), index.checked_add(1)]
            .into_iter()
            .flatten()
            .filter_map(|i| self.0.lengths.get(i).copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_text_hashes_alike_and_another_text_does_not() {
        assert_eq!(list_hash(r#"{"a":1}"#), list_hash(r#"{"a":1}"#));
        assert_ne!(list_hash(r#"{"a":1}"#), list_hash(r#"{"a": 1}"#));
        let known = KnownLists::new([
            (list_hash("x"), 1),
            (list_hash("yy"), 2),
            (list_hash("zzz"), 3),
        ]);
        assert!(known.contains(list_hash("x")));
        assert!(!known.contains(list_hash("y")));
        assert_eq!((known.len(), KnownLists::default().is_empty()), (3, true));
        assert_eq!(known.lengths_near(0).collect::<Vec<_>>(), [1, 2]);
        assert_eq!(known.lengths_near(2).collect::<Vec<_>>(), [3, 2]);
        assert_eq!(known.lengths_near(7).count(), 0);
    }
}
