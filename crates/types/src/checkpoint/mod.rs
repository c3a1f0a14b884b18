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
//! A regular checkpoint whose commits generated randomness is followed by
//! a randomness checkpoint ([`CheckpointKind::Randomness`]): the next
//! sequence, the same commits, and a content digest over the rounds and
//! their group signatures. It is signed and certified like any other.
//!
//! The epoch's last commit closes its checkpoint at once, whatever the
//! time ([`CheckpointBuilder::end_epoch`]); the epoch's final checkpoint
//! ([`CheckpointKind::EndOfEpoch`]) follows and hands the chain to the next
//! committee (the `epoch` module). Sequences and the previous-digest
//! chain continue across epochs.
//!
//! ```
//! use dagstream_types::checkpoint::{CheckpointBuilder, MIN_CHECKPOINT_INTERVAL_MS};
//! use dagstream_types::Digest;
//!
//! let mut builder = CheckpointBuilder::new(0);
//! let start = 1_700_000_000_000;
//! let first = builder.place(1, Digest::of(b"commit 1"), start, &[]);
//! assert_eq!((first.sequence, first.closed), (0, vec![]));
//! builder.place(2, Digest::of(b"commit 2"), start + 75, &[]);
//! let third = builder.place(3, Digest::of(b"commit 3"), start + MIN_CHECKPOINT_INTERVAL_MS, &[]);
//! let closed = &third.closed[0];
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

/// The domain separator of a randomness checkpoint's content accumulator.
pub const RANDOMNESS_CONTENTS_DOMAIN: &[u8] = b"DAGSTREAM_RANDOMNESS_CONTENTS_V1";

mod builder;

pub use builder::{extend_contents, extend_randomness, CheckpointBuilder, OpenCheckpoint, Placed};

/// What a checkpoint holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CheckpointKind {
    /// Its commits: the content digest accumulates their digests.
    Regular,
    /// The randomness its regular checkpoint's commits generated: same
    /// commit range, the content digest accumulates the rounds and their
    /// signatures, and it chains to that regular checkpoint.
    Randomness,
    /// The last checkpoint of an epoch: its one commit is the epoch's last,
    /// and its content digest is the digest of the
    /// `NextEpoch` it hands the chain to
    /// (the `epoch` module).
    EndOfEpoch,
}

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
    pub kind: CheckpointKind,
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
    /// The author has ended its epoch: once such messages of 2f+1 stake
    /// are committed, the commit that brought them is the epoch's last
    /// (`EndOfPublishTally`).
    EndOfPublish,
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
    /// the committee in ascending order with none twice, a quorum of
    /// stake, and every signature (in one batch; one by one only to name
    /// the first that is wrong).
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
        for (author, _) in &self.signatures {
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
            stake.add(*author, committee);
        }
        if !stake.reached_quorum(committee) {
            return Err(TypesError::CertificateBelowQuorum {
                sequence,
                stake: stake.stake(),
                quorum: committee.quorum_threshold(),
            });
        }
        let signatures: Vec<_> = self
            .signatures
            .iter()
            .map(|(author, signature)| (digest, *author, *signature))
            .collect();
        let valid = CheckpointSummary::verify_signatures(&signatures, committee);
        match self.signatures.iter().zip(valid).find(|(_, valid)| !valid) {
            Some(((author, _), _)) => Err(TypesError::InvalidCheckpointSignature {
                sequence,
                author: *author,
            }),
            None => Ok(()),
        }
    }
}
