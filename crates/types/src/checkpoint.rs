//! Checkpoints: consecutive commits grouped by time, summarized, signed by
//! each authority and certified by 2f+1 stake.
//!
//! Checkpoint 0 starts at commit 1. A new checkpoint starts at the first
//! commit whose timestamp is at least [`MIN_CHECKPOINT_INTERVAL_MS`] after
//! the first commit of the current one, which that commit closes. The
//! grouping depends on commit timestamps only, so every node of a chain
//! forms the same checkpoints, and [`CheckpointBuilder`] is the one place
//! that forms them.
//!
//! A closed checkpoint is a [`CheckpointSummary`]. Its content digest
//! accumulates the digests of its commits, so the builder keeps 32 bytes
//! whatever the checkpoint's size; its previous digest chains it to the
//! checkpoint before. Authorities sign the summary's digest under the
//! `DAGSTREAM_CHECKPOINT_V1` domain and carry the signature in their next
//! block ([`SystemMessage::CheckpointSignature`]); signatures of 2f+1 stake
//! over the same summary make a [`CertifiedCheckpoint`].
//!
//! ```
//! use dagstream_types::checkpoint::{CheckpointBuilder, MIN_CHECKPOINT_INTERVAL_MS};
//! use dagstream_types::Digest;
//!
//! let mut builder = CheckpointBuilder::new(0);
//! let start = 1_700_000_000_000;
//! let first = builder.place(1, Digest::of(b"commit 1"), start);
//! assert_eq!((first.sequence, first.closed), (0, None));
//! builder.place(2, Digest::of(b"commit 2"), start + 75);
//! let third = builder.place(3, Digest::of(b"commit 3"), start + MIN_CHECKPOINT_INTERVAL_MS);
//! let closed = third.closed.unwrap();
//! assert_eq!((closed.sequence, closed.first_commit, closed.last_commit), (0, 1, 2));
//! assert_eq!(third.sequence, 1);
//! ```

use crate::crypto::{sign_checkpoint_digest, verify_checkpoint_digest, SignatureBatch};
use crate::error::bcs_encode;
use crate::{
    AuthorityIndex, BlsSignature, CommitIndex, Committee, Digest, Epoch, RandomnessRound, Result,
    Signature, StakeAggregator, TypesError,
};
use ed25519_dalek::SigningKey;
use serde::{Deserialize, Serialize};

/// The shortest span of commit time a checkpoint covers: a protocol
/// constant, since every signer must form the same checkpoints. With
/// commits about every 75 ms, about three make a checkpoint.
pub const MIN_CHECKPOINT_INTERVAL_MS: u64 = 200;

/// The domain separator of the content accumulator.
pub const CHECKPOINT_CONTENTS_DOMAIN: &[u8] = b"DAGSTREAM_CHECKPOINT_CONTENTS_V1";

/// A closed checkpoint, as signed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointSummary {
    pub epoch: Epoch,
    pub sequence: u64,
    pub first_commit: CommitIndex,
    pub last_commit: CommitIndex,
    /// The content accumulator after the last commit (see
    /// [`extend_contents`]).
    pub content_digest: Digest,
    /// The digest of checkpoint `sequence - 1`; all zeros for checkpoint 0.
    pub previous_digest: Digest,
    /// The last commit's timestamp.
    pub timestamp_ms: u64,
}

impl CheckpointSummary {
    /// BLAKE3 of the summary's BCS encoding: what authorities sign.
    pub fn digest(&self) -> Digest {
        Digest::of(&bcs_encode(self))
    }

    pub fn encode(&self) -> Vec<u8> {
        bcs_encode(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        crate::error::bcs_decode("checkpoint summary", bytes)
    }

    /// `key`'s signature over this summary.
    pub fn sign(&self, key: &SigningKey) -> Signature {
        sign_checkpoint_digest(key, &self.digest())
    }

    /// The message that carries `key`'s signature in a block.
    pub fn signature_message(&self, key: &SigningKey) -> SystemMessage {
        let summary_digest = self.digest();
        SystemMessage::CheckpointSignature {
            sequence: self.sequence,
            summary_digest,
            signature: sign_checkpoint_digest(key, &summary_digest),
        }
    }

    /// Whether `signature` is `author`'s over this summary (its digest
    /// `digest`, computed once by the caller).
    pub fn verify_signature(
        digest: &Digest,
        author: AuthorityIndex,
        signature: &Signature,
        committee: &Committee,
    ) -> bool {
        committee
            .verifying_key(author)
            .is_some_and(|key| verify_checkpoint_digest(key, digest, signature))
    }

    /// [`verify_signature`](Self::verify_signature) for many signatures,
    /// each `(summary digest, author, signature)`, checked in one
    /// [`SignatureBatch`] and one by one only if the batch fails: the same
    /// answers, at a third of the cost when all are valid.
    pub fn verify_signatures(
        signatures: &[(Digest, AuthorityIndex, Signature)],
        committee: &Committee,
    ) -> Vec<bool> {
        let mut batch = SignatureBatch::new();
        let mut known = true;
        for (digest, author, signature) in signatures {
            match committee.verifying_key(*author) {
                Some(key) => batch.add_checkpoint(key, digest, signature),
                None => known = false,
            }
        }
        if known && batch.verify() {
            return vec![true; signatures.len()];
        }
        signatures
            .iter()
            .map(|(digest, author, signature)| {
                Self::verify_signature(digest, *author, signature, committee)
            })
            .collect()
    }
}

/// What an authority adds to a block besides transactions and votes: the
/// consensus system's own messages, signed by the block's author.
///
/// A block's validity does not depend on them: a receiver checks each one
/// where it is used and ignores those that are wrong.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SystemMessage {
    /// The author's signature over its checkpoint summary `sequence`.
    CheckpointSignature {
        sequence: u64,
        summary_digest: Digest,
        signature: Signature,
    },
    /// The author's partial signatures on randomness round `round`, one
    /// per share it holds, in share order
    /// ([`randomness`](crate::randomness)).
    RandomnessPartial {
        round: RandomnessRound,
        shares: Vec<BlsSignature>,
    },
}

/// `acc_k = BLAKE3("DAGSTREAM_CHECKPOINT_CONTENTS_V1" || acc_{k-1} ||
/// digest of commit k)`, starting from all zeros before a checkpoint's
/// first commit.
pub fn extend_contents(accumulator: &Digest, commit_digest: &Digest) -> Digest {
    let mut hasher = blake3::Hasher::new();
    hasher.update(CHECKPOINT_CONTENTS_DOMAIN);
    hasher.update(accumulator.as_bytes());
    hasher.update(commit_digest.as_bytes());
    Digest(*hasher.finalize().as_bytes())
}

/// The checkpoint that the next commits join.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenCheckpoint {
    pub sequence: u64,
    pub first_commit: CommitIndex,
    pub first_timestamp_ms: u64,
    pub last_commit: CommitIndex,
    pub last_timestamp_ms: u64,
    pub content_digest: Digest,
    pub previous_digest: Digest,
}

impl OpenCheckpoint {
    /// Its fixed-size BCS encoding (104 bytes), which nodes persist.
    pub fn encode(&self) -> Vec<u8> {
        bcs_encode(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        crate::error::bcs_decode("open checkpoint", bytes)
    }

    fn start(
        sequence: u64,
        index: CommitIndex,
        digest: &Digest,
        timestamp_ms: u64,
        previous_digest: Digest,
    ) -> Self {
        OpenCheckpoint {
            sequence,
            first_commit: index,
            first_timestamp_ms: timestamp_ms,
            last_commit: index,
            last_timestamp_ms: timestamp_ms,
            content_digest: extend_contents(&Digest::ZERO, digest),
            previous_digest,
        }
    }
}

/// Where [`CheckpointBuilder::place`] put a commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placed {
    /// The checkpoint that holds the commit.
    pub sequence: u64,
    /// The checkpoint the commit closed, if any.
    pub closed: Option<CheckpointSummary>,
}

/// Forms checkpoints from commits, one commit at a time, in order. Pure:
/// its whole state is the open checkpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CheckpointBuilder {
    epoch: Epoch,
    open: Option<OpenCheckpoint>,
}

impl CheckpointBuilder {
    /// Before commit 1.
    pub fn new(epoch: Epoch) -> Self {
        CheckpointBuilder { epoch, open: None }
    }

    /// Continues after the persisted `open` checkpoint (`None`: before
    /// commit 1).
    pub fn resume(epoch: Epoch, open: Option<OpenCheckpoint>) -> Self {
        CheckpointBuilder { epoch, open }
    }

    pub fn open(&self) -> Option<&OpenCheckpoint> {
        self.open.as_ref()
    }

    /// Places the next commit, `index` with `digest` and `timestamp_ms`.
    /// The caller feeds commits in index order, each once.
    pub fn place(&mut self, index: CommitIndex, digest: Digest, timestamp_ms: u64) -> Placed {
        let Some(open) = self.open.as_mut() else {
            self.open = Some(OpenCheckpoint::start(
                0,
                index,
                &digest,
                timestamp_ms,
                Digest::ZERO,
            ));
            return Placed {
                sequence: 0,
                closed: None,
            };
        };
        debug_assert_eq!(index, open.last_commit + 1, "commits in order");
        if timestamp_ms
            < open
                .first_timestamp_ms
                .saturating_add(MIN_CHECKPOINT_INTERVAL_MS)
        {
            open.last_commit = index;
            open.last_timestamp_ms = timestamp_ms;
            open.content_digest = extend_contents(&open.content_digest, &digest);
            return Placed {
                sequence: open.sequence,
                closed: None,
            };
        }
        let closed = CheckpointSummary {
            epoch: self.epoch,
            sequence: open.sequence,
            first_commit: open.first_commit,
            last_commit: open.last_commit,
            content_digest: open.content_digest,
            previous_digest: open.previous_digest,
            timestamp_ms: open.last_timestamp_ms,
        };
        *open = OpenCheckpoint::start(
            closed.sequence + 1,
            index,
            &digest,
            timestamp_ms,
            closed.digest(),
        );
        Placed {
            sequence: open.sequence,
            closed: Some(closed),
        }
    }
}

/// A summary with signatures of 2f+1 stake over it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertifiedCheckpoint {
    pub summary: CheckpointSummary,
    /// By ascending authority, each once.
    pub signatures: Vec<(AuthorityIndex, Signature)>,
}

impl CertifiedCheckpoint {
    pub fn encode(&self) -> Vec<u8> {
        bcs_encode(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        crate::error::bcs_decode("certified checkpoint", bytes)
    }

    /// Checks the certificate alone: the committee's epoch, signers in
    /// the committee in ascending order with none twice, every signature,
    /// and a quorum of stake.
    pub fn verify(&self, committee: &Committee) -> Result<()> {
        let summary = &self.summary;
        let sequence = summary.sequence;
        if summary.epoch != committee.epoch() {
            return Err(TypesError::WrongEpoch {
                expected: committee.epoch(),
                got: summary.epoch,
            });
        }
        let digest = summary.digest();
        let mut stake = StakeAggregator::new(committee);
        let mut previous: Option<AuthorityIndex> = None;
        for (author, signature) in &self.signatures {
            if !committee.is_valid_index(*author) {
                return Err(TypesError::UnknownAuthority {
                    author: *author,
                    committee_size: committee.size(),
                });
            }
            if previous.is_some_and(|p| p >= *author) {
                return Err(TypesError::CertificateSigners { sequence });
            }
            previous = Some(*author);
            if !CheckpointSummary::verify_signature(&digest, *author, signature, committee) {
                return Err(TypesError::InvalidCheckpointSignature {
                    sequence,
                    author: *author,
                });
            }
            stake.add(*author, committee);
        }
        if !stake.reached_quorum(committee) {
            return Err(TypesError::CertificateBelowQuorum {
                sequence,
                stake: stake.stake(),
                quorum: committee.quorum_threshold(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place_all(builder: &mut CheckpointBuilder, timestamps: &[u64], from: u64) -> Vec<Placed> {
        timestamps
            .iter()
            .enumerate()
            .map(|(i, ts)| {
                let index = from + i as u64;
                builder.place(index, Digest::of(&index.to_le_bytes()), *ts)
            })
            .collect()
    }

    #[test]
    fn commits_group_by_interval_from_each_checkpoint_start() {
        let mut builder = CheckpointBuilder::new(3);
        let timestamps = [1_000, 1_075, 1_150, 1_199, 1_200, 1_390, 1_401, 5_000];
        let placed = place_all(&mut builder, &timestamps, 1);
        let sequences: Vec<u64> = placed.iter().map(|p| p.sequence).collect();
        assert_eq!(sequences, vec![0, 0, 0, 0, 1, 1, 2, 3]);
        let closed: Vec<CheckpointSummary> = placed.iter().filter_map(|p| p.closed).collect();
        let ranges: Vec<(u64, u64, u64, u64)> = closed
            .iter()
            .map(|c| (c.sequence, c.first_commit, c.last_commit, c.timestamp_ms))
            .collect();
        assert_eq!(
            ranges,
            vec![(0, 1, 4, 1_199), (1, 5, 6, 1_390), (2, 7, 7, 1_401)]
        );
        // Each summary chains to the one before and accumulates exactly
        // its own commits.
        assert_eq!(closed[0].previous_digest, Digest::ZERO);
        assert_eq!(closed[1].previous_digest, closed[0].digest());
        assert_eq!(closed[2].previous_digest, closed[1].digest());
        let contents = (5..=6u64).fold(Digest::ZERO, |acc, i| {
            extend_contents(&acc, &Digest::of(&i.to_le_bytes()))
        });
        assert_eq!(closed[1].content_digest, contents);
        assert!(closed.iter().all(|c| c.epoch == 3));
    }

    #[test]
    fn resuming_from_the_persisted_open_checkpoint_gives_the_same_summaries() {
        let timestamps: Vec<u64> = (0..50).map(|i| 1_000 + i * 37).collect();
        let mut whole = CheckpointBuilder::new(0);
        let expected = place_all(&mut whole, &timestamps, 1);
        let mut first = CheckpointBuilder::new(0);
        let mut got = place_all(&mut first, &timestamps[..20], 1);
        let saved = first.open().unwrap().encode();
        assert_eq!(saved.len(), 104);
        let open = OpenCheckpoint::decode(&saved).unwrap();
        let mut resumed = CheckpointBuilder::resume(0, Some(open));
        got.extend(place_all(&mut resumed, &timestamps[20..], 21));
        assert_eq!(got, expected);
        assert!(OpenCheckpoint::decode(&saved[..103]).is_err());
    }
}
