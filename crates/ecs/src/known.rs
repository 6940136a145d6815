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
    static SEED: OnceLock<foldhash::quality::RandomState> = OnceLock::new();
    SEED.get_or_init(Default::default).hash_one(text.as_bytes())
}

/// The list hashes of pages the caller has decoded before. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct KnownLists(Arc<HashSet<u64>>);

impl KnownLists {
    /// The lists hashed to `hashes`.
    pub fn new(hashes: impl IntoIterator<Item = u64>) -> Self {
        Self(Arc::new(hashes.into_iter().collect()))
    }

    /// Whether a list with this hash is known.
    pub fn contains(&self, hash: u64) -> bool {
        self.0.contains(&hash)
    }

    /// How many lists are known.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no list is known.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_text_hashes_alike_and_another_text_does_not() {
        assert_eq!(list_hash(r#"{"a":1}"#), list_hash(r#"{"a":1}"#));
        assert_ne!(list_hash(r#"{"a":1}"#), list_hash(r#"{"a": 1}"#));
        let known = KnownLists::new([list_hash("x")]);
        assert!(known.contains(list_hash("x")));
        assert!(!known.contains(list_hash("y")));
        assert_eq!((known.len(), KnownLists::default().is_empty()), (1, true));
    }
}
