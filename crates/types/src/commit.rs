//! Commits: the output of consensus, one per committed leader.

use crate::error::{bcs_decode, bcs_encode};
use crate::{BlockRef, Digest, Result, VerifiedBlock};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

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
