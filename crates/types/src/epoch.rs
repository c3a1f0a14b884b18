//! Epoch change: how one committee hands the chain to the next.
//!
//! An epoch is one committee's stretch of the chain. It ends in three
//! steps, each a function of the committed chain, so that every node places
//! the boundary at the same commit:
//! 1. Its authorities put [`SystemMessage::EndOfPublish`] in their blocks
//!    once they want the epoch over (the simulated committee: after a set
//!    number of rounds).
//! 2. The first commit that brings such messages of 2f+1 stake into the
//!    committed chain is the epoch's last ([`EndOfPublishTally`]). It
//!    closes its checkpoint at once
//!    ([`CheckpointBuilder::end_epoch`](crate::CheckpointBuilder::end_epoch)).
//! 3. The epoch's final checkpoint follows
//!    ([`CheckpointSummary::end_of_epoch`]): its one commit is the epoch's
//!    last, and its content digest is the digest of the [`NextEpoch`], the
//!    next committee with the round its DAG starts after. The ending
//!    committee signs and certifies it like any checkpoint; with the
//!    next epoch it makes an [`EpochChange`], the proof a node needs to
//!    trust the next committee.
//!
//! Commit indexes, the commit digest chain and checkpoint sequences
//! continue across the boundary: the next epoch's first commit chains to
//! the last commit of the one before. Rounds continue too (the next
//! committee's genesis blocks sit at [`NextEpoch::genesis_round`], above
//! every round of the ending epoch), so blocks of all epochs are stored,
//! streamed and pruned in one round order. Blocks carry their epoch, and a
//! committee refuses blocks of another
//! ([`TypesError::WrongEpoch`]).
//!
//! A node that trusts only the genesis committee follows the chain by
//! folding [`EpochChange::verify`] forward: each step trusts nothing but
//! the committee it already has.
//!
//! ```
//! use dagstream_types::epoch::{EpochChange, NextEpoch};
//! use dagstream_types::*;
//! use ed25519_dalek::SigningKey;
//!
//! let keys: Vec<SigningKey> = (0..4u8).map(|i| SigningKey::from_bytes(&[i + 1; 32])).collect();
//! let genesis = |epoch, keys: &[SigningKey]| Genesis {
//!     epoch,
//!     genesis_time_ms: 1_700_000_000_000,
//!     round_interval_ms: 100,
//!     gc_depth_rounds: DEFAULT_GC_DEPTH_ROUNDS,
//!     authorities: keys.iter().enumerate().map(|(i, key)| Authority {
//!         index: i as u32,
//!         stake: 1,
//!         public_key: PublicKey::from_signing_key(key),
//!     }).collect(),
//!     randomness: None,
//! };
//! let committee = Committee::new(genesis(0, &keys)).unwrap();
//! // The epoch's last checkpoint closed at its last commit, 40.
//! let last = CheckpointSummary {
//!     epoch: 0,
//!     sequence: 11,
//!     first_commit: 38,
//!     last_commit: 40,
//!     content_digest: Digest::of(b"contents"),
//!     previous_digest: Digest::of(b"checkpoint 10"),
//!     timestamp_ms: 1_700_000_004_000,
//!     kind: CheckpointKind::Regular,
//! };
//! let next_keys: Vec<SigningKey> = (5..9u8).map(|i| SigningKey::from_bytes(&[i; 32])).collect();
//! let next = NextEpoch { genesis_round: 60, committee: genesis(1, &next_keys) };
//! let summary = CheckpointSummary::end_of_epoch(&last, next.digest());
//! let certificate = CertifiedCheckpoint {
//!     summary,
//!     signatures: (0..3).map(|i| (i as u32, summary.sign(&keys[i]))).collect(),
//! };
//! let change = EpochChange { certificate, next };
//! let next_committee = change.verify(&committee, &last).unwrap();
//! assert_eq!((next_committee.epoch(), next_committee.genesis_round()), (1, 60));
//! ```

use crate::error::{bcs_decode, bcs_encode};
use crate::{
    AuthorityIndex, CertifiedCheckpoint, CheckpointKind, CheckpointSummary, Committee, Digest,
    Genesis, Result, Round, StakeAggregator, SystemMessage, TypesError, VerifiedBlock,
};
use serde::{Deserialize, Serialize};

/// What an epoch's final checkpoint hands the chain to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NextEpoch {
    /// The round of the next committee's genesis blocks; its first blocks
    /// are one round later. Above every round of the ending epoch.
    pub genesis_round: Round,
    /// The next committee: a genesis of the next epoch, whose
    /// `genesis_time_ms` is when its genesis round is scheduled.
    pub committee: Genesis,
}

impl NextEpoch {
    pub fn encode(&self) -> Vec<u8> {
        bcs_encode(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        bcs_decode("next epoch", bytes)
    }

    /// BLAKE3 of its BCS encoding: the content digest of the final
    /// checkpoint that hands it over.
    pub fn digest(&self) -> Digest {
        Digest::of(&self.encode())
    }

    /// The committee, validated.
    pub fn committee(&self) -> Result<Committee> {
        Committee::starting_at(self.committee.clone(), self.genesis_round)
    }
}

impl CheckpointSummary {
    /// The final checkpoint of an epoch whose last checkpoint is `last`
    /// (closed at the epoch's last commit), handing over the [`NextEpoch`]
    /// whose digest is `next`: the next sequence, chained to `last`, its
    /// one commit the epoch's last, at that commit's time.
    pub fn end_of_epoch(last: &CheckpointSummary, next: Digest) -> CheckpointSummary {
        CheckpointSummary {
            epoch: last.epoch,
            sequence: last.sequence + 1,
            first_commit: last.last_commit,
            last_commit: last.last_commit,
            content_digest: next,
            previous_digest: last.digest(),
            timestamp_ms: last.timestamp_ms,
            kind: CheckpointKind::EndOfEpoch,
        }
    }
}

/// The proof of one hand-off: an epoch's final checkpoint, certified by
/// 2f+1 of the ending committee's stake, and the next epoch it commits to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochChange {
    pub certificate: CertifiedCheckpoint,
    pub next: NextEpoch,
}

impl EpochChange {
    pub fn encode(&self) -> Vec<u8> {
        bcs_encode(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        bcs_decode("epoch change", bytes)
    }

    /// The epoch this hands over from.
    pub fn epoch(&self) -> crate::Epoch {
        self.certificate.summary.epoch
    }

    /// Checks the hand-off with the committee that ends (the only one the
    /// verifier trusts) and `last`, the verifier's own last checkpoint of
    /// that epoch, and returns the next committee.
    ///
    /// In order: an end-of-epoch checkpoint, of `current`'s epoch, handing
    /// over to the very next epoch, committing to the committee sent with
    /// it, following `last` exactly (so the boundary is the verifier's
    /// own last commit), starting above `current`'s genesis round, signed
    /// by 2f+1 of `current`'s stake, and a valid committee.
    pub fn verify(&self, current: &Committee, last: &CheckpointSummary) -> Result<Committee> {
        let summary = &self.certificate.summary;
        let sequence = summary.sequence;
        if summary.kind != CheckpointKind::EndOfEpoch {
            return Err(TypesError::NotEndOfEpoch { sequence });
        }
        if summary.epoch != current.epoch() {
            return Err(TypesError::WrongEpoch {
                expected: current.epoch(),
                got: summary.epoch,
            });
        }
        let to = self.next.committee.epoch;
        if Some(to) != current.epoch().checked_add(1) {
            return Err(TypesError::EpochSkipped {
                from: current.epoch(),
                to,
            });
        }
        let next_digest = self.next.digest();
        if summary.content_digest != next_digest {
            return Err(TypesError::NextCommitteeMismatch { sequence });
        }
        if *summary != CheckpointSummary::end_of_epoch(last, next_digest) {
            return Err(TypesError::FinalCheckpointMismatch {
                sequence,
                last: last.sequence,
            });
        }
        if self.next.genesis_round <= current.genesis_round() {
            return Err(TypesError::EpochStartsBack {
                genesis_round: self.next.genesis_round,
                ending: current.genesis_round(),
            });
        }
        self.certificate.verify(current)?;
        self.next.committee()
    }
}

/// Counts the [`SystemMessage::EndOfPublish`] messages of committed
/// blocks, each author once: the epoch's last commit is the first at which
/// they reach 2f+1 stake. What a node persists with its commits to
/// continue the rule after a restart.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EndOfPublishTally {
    /// Authors whose end-of-publish is committed, ascending.
    authors: Vec<AuthorityIndex>,
}

impl EndOfPublishTally {
    pub fn encode(&self) -> Vec<u8> {
        bcs_encode(self)
    }

    pub fn decode(bytes: &[u8]) -> Result<Self> {
        bcs_decode("end-of-publish tally", bytes)
    }

    /// The authors counted so far.
    pub fn authors(&self) -> &[AuthorityIndex] {
        &self.authors
    }

    /// Counts the blocks of the next commit. Returns whether that commit is
    /// the epoch's last: the one at which the count first reaches a quorum
    /// (after it, the epoch has no more commits to count).
    pub fn on_commit(&mut self, blocks: &[VerifiedBlock], committee: &Committee) -> bool {
        let mut stake = StakeAggregator::new(committee);
        for author in &self.authors {
            stake.add(*author, committee);
        }
        if stake.reached_quorum(committee) {
            return false;
        }
        for block in blocks {
            let author = block.author();
            let ends = block
                .system_messages()
                .iter()
                .any(|m| matches!(m, SystemMessage::EndOfPublish));
            if ends && committee.is_valid_index(author) {
                if let Err(at) = self.authors.binary_search(&author) {
                    self.authors.insert(at, author);
                    stake.add(author, committee);
                }
            }
        }
        stake.reached_quorum(committee)
    }
}
