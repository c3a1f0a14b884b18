//! Retention: the validator keeps its newest commits, and the blocks they
//! need, and deletes older history in bounded steps.
//!
//! A chain's history belongs in its archive (`docs/archive.md`); a
//! validator serving the live tail need not keep all of it. With
//! `retain_commits = N`, the pruner thread deletes every commit below the
//! newest N, with their randomness, and every block no retained commit can
//! name. A subscriber that asks for a pruned commit is answered
//! `OUT_OF_RANGE`, naming the lowest retained commit and the archive, if
//! one is configured.
//!
//! ```text
//! pruner thread, every PRUNE_INTERVAL:
//!     prune_step (≤ MAX_PRUNE_COMMITS per store transaction) until caught up
//! ```
//!
//! Which blocks a retained commit can name follows from the commit rule:
//! the sub-DAG of commit `k` holds only blocks above `leader_round(k - 1) -
//! gc_depth` (`dagstream_dag::Linearizer`), and leader rounds only grow. So
//! when commit `c` is the lowest one kept, every block below
//! `leader_round(c - 1) - gc_depth` can go. Epoch hand-offs, checkpoint
//! certificates and the chain's progress live in the store's metadata and
//! are never pruned: a restarted validator and the publisher need them.

use crate::ValidatorError;
use dagstream_store::{PruneStats, Store};
use dagstream_types::{CommitIndex, Round};
use serde::{Deserialize, Serialize};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::Duration;

/// Fewest commits a pruning validator keeps. The commits not certified
/// yet, the certifier's search at start (64 commits) and the simulator's
/// recovery of its pending votes all read the newest few dozen commits; a
/// window of 100 keeps all of them with room to spare.
pub const MIN_RETAIN_COMMITS: u64 = 100;

/// Most commits deleted in one store transaction. At the mainnet profile a
/// commit holds about 100 blocks: 1,000 commits are some 100,000 blocks
/// and 600 MB, deleted while the writer thread waits for the store's write
/// lock, so one step must stay short.
pub const MAX_PRUNE_COMMITS: u64 = 1_000;

/// How often the pruner looks at the store. A second of chain is a handful
/// of commits: pruning more often only makes smaller transactions.
pub const PRUNE_INTERVAL: Duration = Duration::from_secs(1);

/// The pruner thread's name.
pub const PRUNER_THREAD: &str = "dagstream-pruner";

/// `[validator]` in the node's config file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ValidatorConfig {
    /// How many of the newest commits the validator keeps; older commits,
    /// and the blocks only they name, are deleted. 0, the default, keeps
    /// everything. Otherwise at least [`MIN_RETAIN_COMMITS`]. Observers
    /// that need older history bootstrap from an archive
    /// (`publisher.history_archive` names it to them).
    pub retain_commits: u64,
}

impl ValidatorConfig {
    pub fn validate(&self) -> Result<(), ValidatorError> {
        if self.retain_commits != 0 && self.retain_commits < MIN_RETAIN_COMMITS {
            return Err(ValidatorError::InvalidConfig {
                field: "retain_commits",
                reason: format!(
                    "is {}; it must be 0 (keep everything) or at least {MIN_RETAIN_COMMITS}",
                    self.retain_commits
                ),
            });
        }
        Ok(())
    }
}

/// What one [`prune_step`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PruneStep {
    /// The lowest commit kept after the step.
    pub lowest_commit: CommitIndex,
    /// Blocks below this round were deleted.
    pub below_round: Round,
    pub deleted: PruneStats,
}

/// Deletes, in one transaction of at most [`MAX_PRUNE_COMMITS`] commits,
/// history older than the newest `keep` commits. `None` when there is
/// nothing to delete.
pub fn prune_step(
    store: &dyn Store,
    keep: u64,
    gc_depth: Round,
) -> Result<Option<PruneStep>, ValidatorError> {
    let Some((lowest, highest)) = store.commit_range()? else {
        return Ok(None);
    };
    let target = (highest + 1).saturating_sub(keep.max(1));
    if target <= lowest {
        return Ok(None);
    }
    let below_commit = target.min(lowest + MAX_PRUNE_COMMITS);
    // Commit `below_commit - 1` is retained until this step deletes it.
    let before = store
        .read_commit(below_commit - 1)?
        .ok_or(ValidatorError::MissingCommit {
            index: below_commit - 1,
        })?;
    let below_round = before.leader().round.saturating_sub(gc_depth);
    let deleted = store.prune(below_commit, below_round)?;
    Ok(Some(PruneStep {
        lowest_commit: below_commit,
        below_round,
        deleted,
    }))
}

/// The pruner thread: steps until caught up, then waits
/// [`PRUNE_INTERVAL`], until `stop` is dropped. A failed step is logged and
/// tried again later: the chain goes on, only the disk holds more.
pub(crate) fn run_pruner(
    store: &dyn Store,
    keep: u64,
    gc_depth: impl Fn() -> Round,
    stop: &Receiver<()>,
) {
    loop {
        loop {
            match prune_step(store, keep, gc_depth()) {
                Ok(Some(step)) => tracing::debug!(
                    lowest_commit = step.lowest_commit,
                    below_round = step.below_round,
                    commits = step.deleted.commits,
                    blocks = step.deleted.blocks,
                    "pruned"
                ),
                Ok(None) => break,
                Err(err) => {
                    tracing::warn!(cause = %err, "pruning failed; will try again");
                    break;
                }
            }
        }
        match stop.recv_timeout(PRUNE_INTERVAL) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Producer;
    use dagstream_sim::{generate, CommitteeKeys, GenesisParams, Profile};
    use dagstream_store::MemStore;
    use dagstream_types::{BlockLimits, BlockRef, CommitRef, Committee};
    use std::sync::Arc;

    fn committee() -> (Arc<Committee>, CommitteeKeys) {
        let (genesis, keys) = generate(&GenesisParams {
            authorities: 4,
            round_interval_ms: 100,
            genesis_time_ms: 0,
            gc_depth_rounds: 20,
            seed: 5,
        });
        (Arc::new(Committee::new(genesis).unwrap()), keys)
    }

    /// A producer on `store`: a new chain, or the one the store holds.
    fn producer(store: &Arc<dyn Store>) -> Producer {
        let (committee, keys) = committee();
        Producer::new(
            committee,
            keys,
            Profile::Small.sim_config(5),
            &BlockLimits::default(),
            store.clone(),
        )
        .unwrap()
    }

    fn chain(rounds: usize) -> Arc<dyn Store> {
        let store: Arc<dyn Store> = Arc::new(MemStore::new());
        let mut producer = producer(&store);
        for _ in 0..rounds {
            producer.produce_round().unwrap();
        }
        store
    }

    /// The commits a producer recovered on `store` makes in `rounds` more
    /// rounds.
    fn continue_chain(store: &Arc<dyn Store>, rounds: usize) -> Vec<CommitRef> {
        let mut producer = producer(store);
        let from = producer.last_commit_index() + 1;
        for _ in 0..rounds {
            producer.produce_round().unwrap();
        }
        store
            .scan_commits(from, usize::MAX)
            .unwrap()
            .iter()
            .map(|c| c.reference())
            .collect()
    }

    /// Pruning keeps exactly the newest commits and every block they name,
    /// deletes older blocks, and leaves a store on which the chain
    /// continues exactly as on one never pruned.
    #[test]
    fn pruning_keeps_what_the_chain_needs_and_nothing_older() {
        let pruned = chain(400);
        let full = chain(400);
        let highest = pruned.last_commit_index().unwrap();
        let keep = MIN_RETAIN_COMMITS;
        assert!(highest > keep + 100, "{highest} commits");
        let blocks_before = pruned
            .scan_blocks(BlockRef::round_start(0), Round::MAX, usize::MAX)
            .unwrap();

        let mut steps = Vec::new();
        while let Some(step) = prune_step(pruned.as_ref(), keep, 20).unwrap() {
            steps.push(step);
        }
        let lowest = highest + 1 - keep;
        assert_eq!(pruned.commit_range().unwrap(), Some((lowest, highest)));
        assert_eq!(steps.last().unwrap().lowest_commit, lowest);
        let deleted: u64 = steps.iter().map(|s| s.deleted.commits).sum();
        assert_eq!(deleted, lowest - 1);

        // Every retained commit's blocks are all there; every block left
        // is at or above the last step's bound, and nothing above it went.
        for commit in pruned.scan_commits(1, usize::MAX).unwrap() {
            for block in &commit.commit().blocks {
                assert!(pruned.contains_block(block).unwrap(), "{block:?}");
            }
        }
        let bound = steps.last().unwrap().below_round;
        let kept = pruned
            .scan_blocks(BlockRef::round_start(0), Round::MAX, usize::MAX)
            .unwrap();
        let expected: Vec<_> = blocks_before
            .into_iter()
            .filter(|(block, _)| block.round >= bound)
            .collect();
        assert_eq!(kept, expected);
        assert!(bound > 0);

        // Nothing more to do until the chain grows.
        assert_eq!(prune_step(pruned.as_ref(), keep, 20).unwrap(), None);
        assert_eq!(continue_chain(&pruned, 30), continue_chain(&full, 30));
    }

    #[test]
    fn one_step_deletes_a_bounded_number_of_commits() {
        let store = chain(1_400);
        let (lowest, highest) = store.commit_range().unwrap().unwrap();
        assert!(
            highest > MAX_PRUNE_COMMITS + MIN_RETAIN_COMMITS,
            "{highest}"
        );
        let step = prune_step(store.as_ref(), MIN_RETAIN_COMMITS, 20)
            .unwrap()
            .unwrap();
        assert_eq!(step.lowest_commit, lowest + MAX_PRUNE_COMMITS);
        assert_eq!(step.deleted.commits, MAX_PRUNE_COMMITS);
    }

    #[test]
    fn a_window_too_small_to_serve_is_refused_by_name() {
        let config = ValidatorConfig { retain_commits: 99 };
        let err = config.validate().unwrap_err();
        assert!(
            matches!(
                err,
                ValidatorError::InvalidConfig {
                    field: "retain_commits",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("at least 100"), "{err}");
        for retain_commits in [0, MIN_RETAIN_COMMITS] {
            ValidatorConfig { retain_commits }.validate().unwrap();
        }
    }
}
