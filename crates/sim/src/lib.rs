//! The simulated committee: dagstream's stand-in for a real validator.
//!
//! It produces a realistic signed DAG, round by round, and runs the same
//! commit rule as observers over it. The chain is a pure function of the
//! genesis and the [`SimConfig`]: two processes started at different times,
//! on different machines, produce the same blocks and commits byte for byte.
//!
//! # Layout
//! - [`genesis`]: a new committee ([`generate`]) and its private keys
//!   ([`CommitteeKeys`], `committee-keys.json`).
//! - [`config`]: [`Profile`]s (`small`, `mainnet`, `stress`) and
//!   [`SimConfig`]: seed, load, crashed and slow authorities.
//! - [`simulator`]: [`Simulator`], which makes each round's blocks and feeds
//!   them to [`DagConsensus`](dagstream_dag::DagConsensus).
//! - [`checkpoints`]: the checkpoints the commits close, each signed by
//!   every live authority in one of its next blocks.
//! - [`epochs`]: with [`SimConfig::epoch_rounds`], each epoch's end and
//!   the next committee it hands the chain to.
//! - `persist`: [`Simulator::batch_for`] makes each round one atomic store
//!   batch (or [`Simulator::round_end_batch`] closes a round whose blocks
//!   were written one by one); [`Simulator::recover`] continues a chain from
//!   a store.
//! - [`rng`]: the seeded, portable randomness behind every choice.
//!
//! # Data flow
//! ```text
//! now_ms ─▶ Simulator::produce_due ─▶ for each due round r:
//!     each live authority: own block of r-1 + seeded quorum of r-1
//!       (+ slow authorities' blocks of r-2) + seeded transactions
//!       + votes for the commits decided after r-1
//!       + signatures of checkpoints closed at r-1 (or r-2) ─▶ sign (─▶ on_block)
//!     ─▶ DagConsensus::add_blocks ─▶ commits ─▶ CheckpointBuilder
//!                                           └─▶ RandomnessTally
//!     ─▶ RoundOutput { blocks, decisions, commits, checkpoints, randomness }
//! ```
//!
//! Round `r` is due at `genesis_time_ms + r * round_interval_ms`. A simulator
//! whose genesis lies in the past produces the missed rounds as fast as it
//! can, which is how long histories for catch-up are made.
//!
//! ```
//! use dagstream_sim::{generate, GenesisParams, Profile, Simulator};
//! use dagstream_types::{BlockLimits, Committee};
//! use std::sync::Arc;
//!
//! let (genesis, keys) = generate(&GenesisParams {
//!     authorities: 4,
//!     round_interval_ms: 100,
//!     genesis_time_ms: 0,
//!     gc_depth_rounds: 50,
//!     seed: 7,
//! });
//! let committee = Arc::new(Committee::new(genesis).unwrap());
//! let config = Profile::Small.sim_config(7);
//! let mut sim = Simulator::new(committee, keys, config, &BlockLimits::default()).unwrap();
//! // 2 seconds after genesis, rounds 1 to 20 are due.
//! let rounds = sim.produce_due(2_000, usize::MAX).unwrap();
//! assert_eq!(rounds.len(), 20);
//! assert!(rounds.iter().map(|r| r.commits.len()).sum::<usize>() > 10);
//! ```

pub mod checkpoints;
pub mod config;
pub mod epochs;
mod error;
pub mod genesis;
mod persist;
pub mod randomness;
pub mod rng;
pub mod simulator;

pub use config::{Profile, SimConfig};
pub use error::{Result, SimError};
pub use genesis::{derive_key, generate, CommitteeKeys, GenesisParams};
pub use simulator::{RoundOutput, Simulator};
