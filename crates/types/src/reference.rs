//! The names of blocks and commits: what blocks, commits and votes refer
//! to each other by. Below both, so that neither depends on the other.

use crate::{AuthorityIndex, Digest, Round};
use serde::{Deserialize, Serialize};
use std::fmt;

/// Names one block. Orders by `(round, author, digest)`: ancestors sort before
/// descendants.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct BlockRef {
    pub round: Round,
    pub author: AuthorityIndex,
    pub digest: Digest,
}

impl BlockRef {
    /// The smallest ref of a round, for range scans.
    pub const fn round_start(round: Round) -> BlockRef {
        BlockRef {
            round,
            author: 0,
            digest: Digest::MIN,
        }
    }

    /// The smallest ref greater than this one, for resuming a scan right
    /// after a key.
    pub fn successor(&self) -> BlockRef {
        let mut digest = self.digest.0;
        for byte in digest.iter_mut().rev() {
            let (next, overflow) = byte.overflowing_add(1);
            *byte = next;
            if !overflow {
                return BlockRef {
                    digest: Digest(digest),
                    ..*self
                };
            }
        }
        // The digest was all ones: the next author, or the next round.
        match self.author.checked_add(1) {
            Some(author) => BlockRef {
                author,
                digest: Digest::MIN,
                ..*self
            },
            None => BlockRef::round_start(self.round + 1),
        }
    }

    /// The largest ref of a round, for inclusive range scans.
    pub const fn round_end(round: Round) -> BlockRef {
        BlockRef {
            round,
            author: AuthorityIndex::MAX,
            digest: Digest::MAX,
        }
    }
}

impl fmt::Debug for BlockRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "B{}({},{:?})", self.round, self.author, self.digest)
    }
}

/// The hasher of maps and sets keyed by [`BlockRef`]s, which consensus
/// hashes on every step: foldhash, several times faster than std's SipHash
/// (about a tenth of an observer's CPU following a live chain). It is seeded
/// per process, so digests ground by a Byzantine author cannot be aimed at
/// its collisions.
pub type RefHasher = foldhash::fast::RandomState;
/// A set of [`BlockRef`]s with [`RefHasher`].
pub type RefSet = std::collections::HashSet<BlockRef, RefHasher>;
/// A map keyed by [`BlockRef`]s with [`RefHasher`].
pub type RefMap<V> = std::collections::HashMap<BlockRef, V, RefHasher>;

/// Position in the commit sequence. The first commit has index 1.
pub type CommitIndex = u64;

/// Names one commit.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct CommitRef {
    pub index: CommitIndex,
    pub digest: Digest,
}

impl fmt::Debug for CommitRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "C{}({:?})", self.index, self.digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn successor_is_the_next_ref() {
        let r = |round, author, digest| BlockRef {
            round,
            author,
            digest: Digest(digest),
        };
        let mut last_byte = [7u8; 32];
        last_byte[31] = 0xff;
        let mut carried = [7u8; 32];
        carried[30] = 8;
        carried[31] = 0;
        assert_eq!(r(3, 1, last_byte).successor(), r(3, 1, carried));
        assert_eq!(r(3, 1, [0xff; 32]).successor(), r(3, 2, [0; 32]));
        assert_eq!(r(3, u32::MAX, [0xff; 32]).successor(), r(4, 0, [0; 32]));
        assert!(r(3, 1, last_byte).successor() > r(3, 1, last_byte));
    }
}
