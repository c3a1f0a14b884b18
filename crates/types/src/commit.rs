//! Commits: the output of consensus, one per committed leader.

use crate::error::{bcs_decode, bcs_encode};
use crate::{BlockRef, CommitIndex, CommitRef, Digest, Result, TypesError, VerifiedBlock};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// One committed leader and the sub-DAG it commits, as hashed into the chain.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Commit {
    pub index: CommitIndex,
    /// Digest of commit `index - 1`; all zeros for commit 1.
    pub previous_digest: Digest,
    /// `max(leader.timestamp_ms, previous commit's timestamp_ms)`.
    pub timestamp_ms: u64,
    pub leader: BlockRef,
    /// The sub-DAG in commit order: by round, then author; the leader last.
    pub blocks: Vec<BlockRef>,
}

impl Commit {
    /// The invariants that tie a commit to the one before it (`None`: it
    /// must be commit 1): the next index, the previous digest, time that
    /// never goes back, and blocks in commit order with the leader last.
    /// Every reader of a chain (the observer's verifier, offline
    /// inspection) checks these and nothing else of the link.
    pub fn check_follows(&self, previous: Option<&TrustedCommit>) -> Result<()> {
        let index = self.index;
        let expected_after = previous.map_or(0, |c| c.index());
        if index != expected_after + 1 {
            return Err(TypesError::CommitGap {
                expected_after,
                got: index,
            });
        }
        if self.previous_digest != previous.map_or(Digest::ZERO, |c| c.digest()) {
            return Err(TypesError::CommitNotChained { index });
        }
        if self.timestamp_ms < previous.map_or(0, |c| c.timestamp_ms()) {
            return Err(TypesError::CommitTimeGoesBack { index });
        }
        if !self.blocks.windows(2).all(|w| w[0] < w[1]) || self.blocks.last() != Some(&self.leader)
        {
            return Err(TypesError::CommitBlocksUnordered { index });
        }
        Ok(())
    }
}

/// A commit with its digest and encoding computed once.
///
/// Cheap to clone.
#[derive(Clone, PartialEq, Eq)]
pub struct TrustedCommit {
    inner: Arc<CommitInner>,
}

#[derive(PartialEq, Eq)]
struct CommitInner {
    commit: Commit,
    digest: Digest,
    serialized: Bytes,
}

impl TrustedCommit {
    pub fn new(commit: Commit) -> Self {
        let serialized = Bytes::from(bcs_encode(&commit));
        Self::from_parts(commit, serialized)
    }

    /// Decodes a commit from its BCS bytes. The caller decides whether to
    /// trust it (its own store) or to check it against a chain.
    pub fn decode(bytes: Bytes) -> Result<Self> {
        let commit: Commit = bcs_decode("commit", &bytes)?;
        Ok(Self::from_parts(commit, bytes))
    }

    fn from_parts(commit: Commit, serialized: Bytes) -> Self {
        let digest = Digest::of(&serialized);
        TrustedCommit {
            inner: Arc::new(CommitInner {
                commit,
                digest,
                serialized,
            }),
        }
    }

    pub fn commit(&self) -> &Commit {
        &self.inner.commit
    }

    pub fn index(&self) -> CommitIndex {
        self.inner.commit.index
    }

    pub fn digest(&self) -> Digest {
        self.inner.digest
    }

    pub fn reference(&self) -> CommitRef {
        CommitRef {
            index: self.index(),
            digest: self.digest(),
        }
    }

    pub fn leader(&self) -> BlockRef {
        self.inner.commit.leader
    }

    pub fn timestamp_ms(&self) -> u64 {
        self.inner.commit.timestamp_ms
    }

    /// The exact `Commit` bytes, hashed into its digest.
    pub fn serialized(&self) -> &Bytes {
        &self.inner.serialized
    }
}

impl fmt::Debug for TrustedCommit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?}[leader {:?}, {} blocks]",
            self.reference(),
            self.leader(),
            self.commit().blocks.len()
        )
    }
}

/// A commit together with its blocks, in commit order: what consumers get.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommittedSubDag {
    pub commit: TrustedCommit,
    pub blocks: Vec<VerifiedBlock>,
}

impl CommittedSubDag {
    pub fn index(&self) -> CommitIndex {
        self.commit.index()
    }

    pub fn reference(&self) -> CommitRef {
        self.commit.reference()
    }

    pub fn leader(&self) -> &VerifiedBlock {
        self.blocks
            .last()
            .expect("a committed sub-DAG always holds its leader")
    }
}

/// What a consensus core needs to continue a chain after a restart, as a
/// store gives it back (`dagstream_store::recovery` loads it,
/// `DagConsensus::recover` resumes from it).
#[derive(Debug, Default)]
pub struct ConsensusState {
    /// The last commit, which the next one chains to.
    pub last_commit: Option<TrustedCommit>,
    /// Every stored block above the GC round that `last_commit` implies,
    /// in `(round, author, digest)` order.
    pub blocks: Vec<VerifiedBlock>,
    /// The refs among `blocks` that a commit holds.
    pub committed: Vec<BlockRef>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block_ref(round: u64, author: u32) -> BlockRef {
        BlockRef {
            round,
            author,
            digest: Digest([round as u8; 32]),
        }
    }

    fn commit(index: CommitIndex, previous: Option<&TrustedCommit>, timestamp_ms: u64) -> Commit {
        let leader = block_ref(index * 2, 0);
        Commit {
            index,
            previous_digest: previous.map_or(Digest::ZERO, |c| c.digest()),
            timestamp_ms,
            leader,
            blocks: vec![block_ref(index * 2 - 1, 3), leader],
        }
    }

    #[test]
    fn a_commit_follows_only_its_predecessor() {
        let first = commit(1, None, 100);
        first.check_follows(None).unwrap();
        let first = TrustedCommit::new(first);
        let second = commit(2, Some(&first), 100);
        second.check_follows(Some(&first)).unwrap();

        assert_eq!(
            second.check_follows(None),
            Err(TypesError::CommitGap {
                expected_after: 0,
                got: 2
            })
        );
        let unchained = Commit {
            previous_digest: Digest([9; 32]),
            ..second.clone()
        };
        assert_eq!(
            unchained.check_follows(Some(&first)),
            Err(TypesError::CommitNotChained { index: 2 })
        );
        let earlier = Commit {
            timestamp_ms: 99,
            ..second.clone()
        };
        assert_eq!(
            earlier.check_follows(Some(&first)),
            Err(TypesError::CommitTimeGoesBack { index: 2 })
        );
        let mut unordered = second.clone();
        unordered.blocks.reverse();
        assert_eq!(
            unordered.check_follows(Some(&first)),
            Err(TypesError::CommitBlocksUnordered { index: 2 })
        );
        let mut leader_not_last = second.clone();
        leader_not_last.blocks.pop();
        assert_eq!(
            leader_not_last.check_follows(Some(&first)),
            Err(TypesError::CommitBlocksUnordered { index: 2 })
        );
    }
}
