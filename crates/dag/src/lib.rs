//! The consensus core of dagstream: from verified blocks to the commit chain,
//! with no I/O, no clock and no threads.
//!
//! Validators (the simulated committee) and observers run this same code, so
//! an observer derives exactly the validator's commits from streamed blocks.
//!
//! # Layout
//! - [`dag_state`]: [`DagState`], the blocks accepted in causal order above
//!   the GC round, and a bounded set of blocks waiting for ancestors.
//! - [`leader_schedule`]: [`LeaderSchedule`], the stake-weighted leader of
//!   each round, from the genesis alone.
//! - [`committer`]: [`Committer`], the Mysticeti-style direct and indirect
//!   decision rules.
//! - [`linearizer`]: [`Linearizer`], committed leaders to ordered sub-DAGs and
//!   the hash-chained [`Commit`](dagstream_types::Commit) sequence.
//! - [`consensus`]: [`DagConsensus`], the three wired together.
//! - `test_dag` (feature `test-utils`): `DagBuilder`, a DSL for DAG shapes.
//!
//! # Data flow
//! ```text
//! VerifiedBlock ─▶ DagState::add_block ─(causal order)─▶ Committer::try_decide
//!      ─(leaders in round order)─▶ Linearizer::commit ─▶ CommittedSubDag
//!      ─(GC round rises)─▶ DagState::set_gc_round
//! ```
//!
//! # Memory
//! Blocks at or below `last committed leader round - gc_depth_rounds` are
//! dropped, and pending blocks are bounded by [`DagConfig`], so memory stays
//! bounded over any number of rounds.

pub mod committer;
pub mod consensus;
pub mod dag_state;
mod error;
pub mod leader_schedule;
pub mod linearizer;
#[cfg(any(test, feature = "test-utils"))]
pub mod test_dag;

pub use committer::{Committer, Decision, DecisionRule};
pub use consensus::{DagConfig, DagConsensus, Output};
pub use dag_state::DagState;
pub use error::{DagError, Result};
pub use leader_schedule::LeaderSchedule;
pub use linearizer::Linearizer;

#[cfg(test)]
mod committer_tests;
#[cfg(test)]
mod randomized_tests;
