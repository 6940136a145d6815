//! Response body buffers, reused from page to page. A listing reads pages of a few hundred KiB
//! one after another; a fresh buffer for each costs the kernel's page faults every time (musl's
//! `malloc` maps and unmaps every large block), more than reading a page that is not decoded.
//! The pool keeps as many bytes of buffers as a listing holds at once (the pages a feed keeps
//! for late joiners plus the ones being read), so that a refresh maps no new buffer.

use std::sync::{Arc, Mutex};

use bytes::Bytes;

/// How many bytes of free buffers (their capacity) are kept: a feed's budget of kept pages
/// (4 MiB) plus a page being read and one being fetched.
const KEPT_BYTES: usize = 5 * 1024 * 1024;

/// Buffers are sized in multiples of this many bytes.
const GRAIN: usize = 64 * 1024;

/// The largest buffer kept, in bytes.
const LARGEST: usize = 2 * 1024 * 1024;

/// A few free body buffers; clones share them.
#[derive(Debug, Clone, Default)]
pub struct BodyPool {
    free: Arc<Mutex<Vec<Vec<u8>>>>,
}

impl BodyPool {
    /// An empty buffer with room for at least `capacity` bytes: a kept one when there is one,
    /// one large enough if any is.
    pub fn take(&self, capacity: usize) -> Vec<u8> {
        let kept = {
            let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
            match free.iter().position(|b| b.capacity() >= capacity) {
                Some(at) => Some(free.swap_remove(at)),
                None => free.pop(),
            }
        };
        let mut buffer = kept.unwrap_or_default();
        buffer.clear();
        if buffer.capacity() < capacity {
            // Rounded up, so that a buffer fits the next page too: pages differ by a few
            // bytes, and one byte more than the kept buffer holds would map a new one.
            let rounded = capacity.checked_next_multiple_of(GRAIN).unwrap_or(capacity);
            buffer.reserve_exact(rounded);
        }
        buffer
    }

    /// Gives `buffer` back, to be kept if there is room and it is not too big.
    pub fn give(&self, buffer: Vec<u8>) {
        if buffer.capacity() > LARGEST {
            return;
        }
        let mut free = self.free.lock().unwrap_or_else(|e| e.into_inner());
        let kept_bytes: usize = free.iter().map(Vec::capacity).sum();
        if kept_bytes + buffer.capacity() <= KEPT_BYTES {
            free.push(buffer);
        }
    }

    /// `buffer` as shared bytes, given back once the last of them is dropped.
    pub fn share(&self, buffer: Vec<u8>) -> Bytes {
        Bytes::from_owner(Returning {
            buffer,
            pool: self.clone(),
        })
    }

    /// How many free buffers are kept now.
    pub fn kept(&self) -> usize {
        self.free.lock().unwrap_or_else(|e| e.into_inner()).len()
    }
}

/// A buffer that goes back to its pool when dropped.
struct Returning {
    buffer: Vec<u8>,
    pool: BodyPool,
}

impl AsRef<[u8]> for Returning {
    fn as_ref(&self) -> &[u8] {
        &self.buffer
    }
}

impl Drop for Returning {
    fn drop(&mut self) {
        self.pool.give(std::mem::take(&mut self.buffer));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_when_given_or_when_their_bytes_are_dropped() {
        let pool = BodyPool::default();
        let mut buffer = pool.take(1000);
        assert!(buffer.capacity() >= 1000);
        buffer.extend_from_slice(b"page one");
        let bytes = pool.share(buffer);
        let copy = bytes.clone();
        drop(bytes);
        assert_eq!(pool.kept(), 0, "still shared");
        assert_eq!(&copy[..], b"page one");
        drop(copy);
        assert_eq!(pool.kept(), 1);
        let again = pool.take(10);
        assert!(
            again.is_empty() && again.capacity() >= 1000,
            "the same buffer, emptied"
        );
        pool.give(again);
        let pool = BodyPool::default();
        for _ in 0..4 {
            pool.give(Vec::with_capacity(KEPT_BYTES / 3));
        }
        assert_eq!(pool.kept(), 3, "at most {KEPT_BYTES} bytes kept");
        let pool = BodyPool::default();
        pool.give(Vec::with_capacity(LARGEST + 1));
        assert_eq!(pool.kept(), 0, "a buffer too big is let go");
    }

    #[test]
    fn a_kept_buffer_serves_pages_of_slightly_different_lengths() {
        let pool = BodyPool::default();
        let first = pool.take(390_561);
        assert_eq!(first.capacity() % GRAIN, 0, "rounded up to the grain");
        let at = first.as_ptr();
        pool.give(first);
        let second = pool.take(390_628);
        assert_eq!(second.as_ptr(), at, "the same buffer, not a new one");
        pool.give(second);

        pool.give(Vec::with_capacity(1000));
        let big = pool.take(200_000);
        assert!(big.capacity() >= 200_000);
        assert_eq!(big.as_ptr(), at, "the kept buffer large enough is chosen");
    }
}
