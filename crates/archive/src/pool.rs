//! Buffers for bundles, reused across a bootstrap.
//!
//! A bundle is decompressed into one buffer of some 16 MB, which its
//! blocks then share, uncopied, until the observer has written and
//! delivered them. A fresh buffer of that size is fresh pages, which the
//! kernel zeroes on first touch: 7% of a bootstrap's CPU in a profile,
//! more than zstd itself, and half as much again for the buffers bundles
//! are read into. When the last block of a bundle is dropped, its buffer
//! comes back here instead, pages and all, for a later bundle.

use bytes::Bytes;
use std::sync::{Arc, Mutex, Weak};

/// Buffers kept for reuse at most. A bootstrap has about this many
/// bundles alive at once (fetched ahead, verified, being written); more
/// would only hold memory after a burst.
const MAX_POOLED: usize = 4;

/// A new buffer gets 1/`HEADROOM` more than asked: bundles vary in size
/// around the writer's target, and a buffer a little too small for the next
/// one would not be reused.
const HEADROOM: usize = 8;

type Shelf = Mutex<Vec<Vec<u8>>>;

/// A bounded pool of buffers. Cheap to clone: clones share the pool. When
/// every clone is dropped, buffers still in use are freed, not returned.
#[derive(Clone, Debug, Default)]
pub struct BufferPool {
    shelf: Arc<Shelf>,
}

impl BufferPool {
    /// An empty buffer of at least `capacity` bytes: a pooled one large
    /// enough, or a new one with room to spare ([`HEADROOM`]). Growing a
    /// pooled buffer would copy it into fresh pages, so a pool without
    /// one large enough gives up its smallest instead.
    pub fn take(&self, capacity: usize) -> Vec<u8> {
        let mut shelf = lock(&self.shelf);
        if let Some(fits) = shelf.iter().position(|b| b.capacity() >= capacity) {
            let mut buffer = shelf.swap_remove(fits);
            buffer.clear();
            return buffer;
        }
        if let Some(smallest) = (0..shelf.len()).min_by_key(|&i| shelf[i].capacity()) {
            shelf.swap_remove(smallest);
        }
        drop(shelf);
        Vec::with_capacity(capacity.saturating_add(capacity / HEADROOM))
    }

    /// `buffer` as [`Bytes`] that return it to the pool once the last
    /// slice of them is dropped.
    pub fn share(&self, buffer: Vec<u8>) -> Bytes {
        Bytes::from_owner(Pooled {
            buffer,
            shelf: Arc::downgrade(&self.shelf),
        })
    }

    /// Buffers waiting for reuse.
    pub fn pooled(&self) -> usize {
        lock(&self.shelf).len()
    }
}

/// A poisoned lock only means a panic elsewhere while pushing or popping
/// a `Vec`: the shelf is still a valid list of buffers.
fn lock(shelf: &Shelf) -> std::sync::MutexGuard<'_, Vec<Vec<u8>>> {
    shelf
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The owner behind pooled [`Bytes`].
struct Pooled {
    buffer: Vec<u8>,
    shelf: Weak<Shelf>,
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        &self.buffer
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        let Some(shelf) = self.shelf.upgrade() else {
            return;
        };
        let mut shelf = lock(&shelf);
        if shelf.len() < MAX_POOLED {
            shelf.push(std::mem::take(&mut self.buffer));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_comes_back_when_its_last_slice_is_dropped() {
        let pool = BufferPool::default();
        let mut buffer = pool.take(1 << 20);
        buffer.extend_from_slice(&[7; 1000]);
        let address = buffer.as_ptr();
        let bytes = pool.share(buffer);
        let slice = bytes.slice(10..20);
        drop(bytes);
        assert_eq!(pool.pooled(), 0, "a slice still holds it");
        assert_eq!(&slice[..], &[7; 10]);
        drop(slice);
        assert_eq!(pool.pooled(), 1);
        let reused = pool.take(1 << 20);
        assert_eq!(reused.as_ptr(), address, "the same allocation");
        assert!(reused.is_empty() && reused.capacity() >= 1 << 20);
    }

    #[test]
    fn a_buffer_too_small_is_never_grown_and_a_larger_one_fits_later_sizes() {
        let pool = BufferPool::default();
        drop(pool.share(pool.take(1000)));
        let larger = pool.take(2000);
        assert!(larger.capacity() >= 2000 + 2000 / HEADROOM);
        assert_eq!(pool.pooled(), 0, "the small one was given up");
        let address = larger.as_ptr();
        drop(pool.share(larger));
        // A bundle a little larger than the last still fits.
        let reused = pool.take(2100);
        assert_eq!(reused.as_ptr(), address);
    }

    #[test]
    fn the_pool_keeps_a_bounded_number_and_frees_the_rest() {
        let pool = BufferPool::default();
        let shared: Vec<Bytes> = (0..MAX_POOLED + 3)
            .map(|_| pool.share(pool.take(64)))
            .collect();
        drop(shared);
        assert_eq!(pool.pooled(), MAX_POOLED);
    }

    #[test]
    fn buffers_outliving_their_pool_are_freed() {
        let pool = BufferPool::default();
        let bytes = pool.share(vec![1, 2, 3]);
        drop(pool);
        assert_eq!(&bytes[..], &[1, 2, 3]);
        drop(bytes);
    }
}
