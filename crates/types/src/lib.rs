//! The dagstream data model and its wire codec.
//!
//! Everything a node exchanges or stores is defined here, with the one
//! encoding all of dagstream uses: BCS, hashed with BLAKE3-256 and signed with
//! Ed25519. `docs/wire-format.md` specifies the bytes for other languages.
//!
//! # Layout
//! - [`committee`]: `genesis.json` ([`Genesis`]) and the validated
//!   [`Committee`] with its stake arithmetic (quorum is 2f+1 by stake).
//! - [`reference`](mod@reference): [`BlockRef`] and [`CommitRef`], the
//!   names blocks and commits refer to each other by.
//! - [`block`]: [`Block`], [`SignedBlock`], and [`VerifiedBlock`], the
//!   only way in for a block received from a peer:
//!   [`VerifiedBlock::verify`] checks everything a block can prove alone.
//! - [`commit`]: [`Commit`], [`TrustedCommit`] and
//!   [`CommittedSubDag`], the output of consensus, and the invariants that
//!   link a commit to its predecessor ([`Commit::check_follows`]).
//! - [`checkpoint`]: commits grouped into [`CheckpointSummary`]s by the
//!   [`CheckpointBuilder`], the signatures authorities carry in blocks
//!   ([`SystemMessage`]) and [`CertifiedCheckpoint`]s.
//! - [`epoch`]: how a committee hands the chain to the next: the
//!   [`EndOfPublishTally`] that places the boundary, the [`NextEpoch`] and
//!   the certified [`EpochChange`] that proves it.
//! - [`randomness`](mod@randomness): BLS12-381 threshold randomness, its
//!   genesis keys, partials, interpolation and checks;
//!   [`randomness_tally`]: the [`RandomnessTally`] that places each round
//!   at a commit.
//! - [`crypto`]: keys, signatures and the signing messages.
//! - [`limits`]: size limits for untrusted input.
//! - [`stake`]: [`StakeAggregator`], the stake of distinct authorities,
//!   behind every quorum check.
//! - [`time`]: [`unix_time_ms`], the wall clock in the model's unit.
//! - [`error`]: [`TypesError`], one variant per way input can be wrong.
//!
//! # Data flow
//! A producer builds a [`Block`] and signs it with [`VerifiedBlock::sign`],
//! which keeps the exact `SignedBlock` bytes. Those bytes are stored and sent
//! as they are; a receiver turns them back into a [`VerifiedBlock`] with
//! [`VerifiedBlock::verify`]. The DAG crate turns verified blocks into
//! [`CommittedSubDag`]s.
//!
//! ```
//! use dagstream_types::*;
//! use ed25519_dalek::SigningKey;
//!
//! let keys: Vec<SigningKey> = (0..4u8).map(|i| SigningKey::from_bytes(&[i + 1; 32])).collect();
//! let genesis = Genesis {
//!     epoch: 0,
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
//! let committee = Committee::new(genesis).unwrap();
//! assert_eq!(committee.quorum_threshold(), 3);
//!
//! let parents = VerifiedBlock::genesis(&committee);
//! let block = Block {
//!     epoch: 0,
//!     round: 1,
//!     author: 2,
//!     timestamp_ms: 1_700_000_000_100,
//!     ancestors: parents.iter().map(|b| b.reference()).collect(),
//!     transactions: vec![Transaction(b"hello".to_vec().into())],
//!     commit_votes: vec![],
//!     system_messages: vec![],
//! };
//! let sent = VerifiedBlock::sign(block, &keys[2]);
//! let received =
//!     VerifiedBlock::verify(sent.serialized().clone(), &committee, &BlockLimits::default()).unwrap();
//! assert_eq!(received.reference(), sent.reference());
//! ```

pub mod block;
pub mod checkpoint;
pub mod commit;
pub mod committee;
pub mod crypto;
pub mod digest;
pub mod epoch;
pub mod error;
mod fixed_bytes;
pub mod limits;
pub mod randomness;
pub mod randomness_tally;
pub mod reference;
pub mod stake;
pub mod time;

pub use block::{Block, SignedBlock, Transaction, VerifiedBlock};
pub use bytes::Bytes;
pub use checkpoint::{
    CertifiedCheckpoint, CheckpointBuilder, CheckpointKind, CheckpointSummary, OpenCheckpoint,
    SystemMessage, MIN_CHECKPOINT_INTERVAL_MS,
};
pub use commit::{Commit, CommittedSubDag, ConsensusState, TrustedCommit};
pub use committee::{Authority, Committee, Genesis, DEFAULT_GC_DEPTH_ROUNDS};
pub use crypto::{PublicKey, Signature};
pub use digest::Digest;
pub use epoch::{EndOfPublishTally, EpochChange, NextEpoch};
pub use error::{Result, TypesError};
pub use limits::BlockLimits;
pub use randomness::{
    BlsPublicKey, BlsSignature, RandomnessKeys, RandomnessOutput, RandomnessRound,
    RandomnessVerifier,
};
pub use randomness_tally::RandomnessTally;
pub use reference::{BlockRef, CommitIndex, CommitRef, RefHasher, RefMap, RefSet};
pub use stake::StakeAggregator;
pub use time::unix_time_ms;

/// A consensus round. Round 0 holds only the genesis blocks.
pub type Round = u64;
/// Position of an authority in the committee.
pub type AuthorityIndex = u32;
/// Voting power.
pub type Stake = u64;
/// A committee's epoch.
pub type Epoch = u64;
