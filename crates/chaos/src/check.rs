//! The invariants, checked as the simulation runs: each consumer's output
//! against the chain the simulated committee makes, and each observer's
//! queues against their bounds.
//!
//! The chain is a pure function of the genesis and the simulator config,
//! so the [`Reference`] makes it again, outside the simulated network, as
//! far as the checks need.

use dagstream_observer::{ObserverConfig, ObserverStatus};
use dagstream_sim::Simulator;
use dagstream_store::Store;
use dagstream_types::{CommitIndex, CommitRef, Round};
use std::cell::RefCell;
use std::fmt;
use std::rc::Rc;

/// What the output of an observer's consumer may pass the observer's
/// `output_queue_len` by: what one step of the node sequences before it
/// looks at the consumer again. A commit batch holds at most 100 commits
/// and a step verifies at most 256 blocks, each deciding at most one
/// leader.
pub const MAX_COMMITS_PER_STEP: u64 = 256;

/// The honest chain, made again by the same simulator.
pub struct Reference {
    sim: Simulator,
    commits: Vec<CommitRef>,
    /// The highest commit decided by the blocks of each round, from round
    /// 1: what a publisher that has round `r + 1` has certified.
    decided_by_round: Vec<CommitIndex>,
    /// The last commit of each epoch that has ended, in order.
    epoch_ends: Vec<CommitIndex>,
}

impl Reference {
    pub fn new(sim: Simulator) -> Self {
        Reference {
            sim,
            commits: Vec::new(),
            decided_by_round: Vec::new(),
            epoch_ends: Vec::new(),
        }
    }

    /// The epoch of commit `index` of the honest chain (as far as it was
    /// produced).
    pub fn epoch_of(&self, index: CommitIndex) -> u64 {
        self.epoch_ends.iter().filter(|&&last| last < index).count() as u64
    }

    fn produce_through_round(&mut self, round: Round) {
        while (self.decided_by_round.len() as Round) < round {
            let output = self
                .sim
                .produce_round()
                .expect("the reference simulator produces what the validators did");
            self.commits
                .extend(output.commits.iter().map(|c| c.reference()));
            if let Some(change) = &output.epoch_change {
                self.epoch_ends.push(change.certificate.summary.last_commit);
            }
            self.decided_by_round.push(self.sim.last_commit_index());
        }
    }

    /// Commit `index` of the honest chain.
    pub fn commit(&mut self, index: CommitIndex) -> CommitRef {
        while (self.commits.len() as u64) < index {
            let next = self.decided_by_round.len() as Round + 1;
            self.produce_through_round(next);
        }
        self.commits[index as usize - 1]
    }

    /// The highest commit certified once round `round` is produced: the
    /// commits decided by round `round - 1`, which round `round` votes for.
    pub fn certified_at_round(&mut self, round: Round) -> CommitIndex {
        if round < 2 {
            return 0;
        }
        self.produce_through_round(round - 1);
        self.decided_by_round[round as usize - 2]
    }
}

/// A broken invariant, with the simulated time it was seen at.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    pub at_ms: u64,
    pub observer: usize,
    pub what: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "at {} ms, observer {}: {}",
            self.at_ms, self.observer, self.what
        )
    }
}

/// What an observer's consumer has processed, kept across the observer's
/// crashes (its durable output, like the CLI's `--output` file).
#[derive(Debug, Default)]
pub struct Output {
    /// Every commit processed, in the order processed.
    pub commits: Vec<CommitRef>,
    /// The highest commit of the observer's store checked against the
    /// chain.
    pub persisted_checked: CommitIndex,
    /// The latest status the consumer saw, and how many it saw.
    pub status: ObserverStatus,
    pub statuses_seen: u64,
}

impl Output {
    pub fn last_index(&self) -> CommitIndex {
        self.commits.last().map_or(0, |c| c.index)
    }
}

/// Every check's state, shared by the consumers in the simulated hosts
/// and the loop that drives the simulation (one thread: `Rc<RefCell>`).
pub type Shared = Rc<RefCell<Checker>>;

pub struct Checker {
    pub reference: Reference,
    /// Every delivery and status seen, with its time: two runs of one seed
    /// that end with the same trace took the same course.
    trace: blake3::Hasher,
    pub outputs: Vec<Output>,
    pub violations: Vec<Violation>,
    block_queue_capacity: usize,
    max_backlog: u64,
}

impl Checker {
    pub fn new(reference: Reference, observers: usize, config: &ObserverConfig) -> Shared {
        Rc::new(RefCell::new(Checker {
            reference,
            trace: blake3::Hasher::new(),
            outputs: (0..observers).map(|_| Output::default()).collect(),
            violations: Vec::new(),
            block_queue_capacity: config.block_queue_capacity,
            max_backlog: config.output_queue_len as u64 + MAX_COMMITS_PER_STEP,
        }))
    }

    fn violated(&mut self, at_ms: u64, observer: usize, what: String) {
        self.violations.push(Violation {
            at_ms,
            observer,
            what,
        });
    }

    /// The consumer of `observer` processed `commit`: it must be the next
    /// commit of the honest chain, index and digest.
    pub fn delivered(&mut self, at_ms: u64, observer: usize, commit: CommitRef) {
        self.record(&[0, at_ms, observer as u64, commit.index]);
        let expected_index = self.outputs[observer].last_index() + 1;
        if commit.index != expected_index {
            let what = if commit.index < expected_index {
                format!("commit {} delivered again", commit.index)
            } else {
                format!(
                    "commit {} delivered after {}: a gap",
                    commit.index,
                    expected_index - 1
                )
            };
            self.violated(at_ms, observer, what);
        } else {
            let expected = self.reference.commit(commit.index);
            if commit != expected {
                let what = format!("delivered {commit:?}, the chain has {expected:?}");
                self.violated(at_ms, observer, what);
            }
        }
        self.outputs[observer].commits.push(commit);
    }

    /// The commits `observer` persisted since the last look must be the
    /// chain's, index and digest: its store holds a prefix of the chain.
    pub fn persisted(&mut self, at_ms: u64, observer: usize, store: &dyn Store) {
        let checked = self.outputs[observer].persisted_checked;
        let read = store.last_commit_index().and_then(|tip| {
            let new = tip.saturating_sub(checked) as usize;
            store.scan_commits(checked + 1, new)
        });
        let commits = match read {
            Ok(commits) => commits,
            Err(err) => return self.violated(at_ms, observer, format!("store: {err}")),
        };
        for commit in commits {
            let expected = self
                .reference
                .commit(self.outputs[observer].persisted_checked + 1);
            if commit.reference() != expected {
                let what = format!(
                    "persisted {:?} where the chain has {expected:?}",
                    commit.reference()
                );
                return self.violated(at_ms, observer, what);
            }
            self.outputs[observer].persisted_checked = expected.index;
        }
    }

    /// The consumer of `observer` saw `status`: its queues must be within
    /// their bounds.
    pub fn status(&mut self, at_ms: u64, observer: usize, status: ObserverStatus) {
        self.record(&[
            1,
            at_ms,
            observer as u64,
            status.local_highest_commit,
            status.connections,
            status.block_queue_len as u64,
            status.output_backlog,
        ]);
        if status.block_queue_len > self.block_queue_capacity {
            let what = format!(
                "{} blocks queued, over the capacity of {}",
                status.block_queue_len, self.block_queue_capacity
            );
            self.violated(at_ms, observer, what);
        }
        if status.output_backlog > self.max_backlog {
            let what = format!(
                "{} commits wait for the consumer, over the bound of {}",
                status.output_backlog, self.max_backlog
            );
            self.violated(at_ms, observer, what);
        }
        let output = &mut self.outputs[observer];
        output.status = status;
        output.statuses_seen += 1;
    }

    fn record(&mut self, values: &[u64]) {
        for value in values {
            self.trace.update(&value.to_le_bytes());
        }
    }

    /// The digest of everything seen so far, in order.
    pub fn trace(&self) -> String {
        self.trace.finalize().to_hex()[..16].to_string()
    }

    /// The commits certified once round `round` is produced.
    pub fn certified_at_round(&mut self, round: Round) -> CommitIndex {
        self.reference.certified_at_round(round)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dagstream_store::MemStore;
    use dagstream_test_utils::{TestChain, TestCommittee};
    use std::sync::Arc;

    fn checker() -> (Shared, Vec<CommitRef>) {
        let committee = TestCommittee::new(4, 1);
        let config = dagstream_sim::SimConfig {
            seed: 1,
            ..Default::default()
        };
        let mut reference = Reference::new(committee.simulator(config));
        let chain = (1..=5).map(|i| reference.commit(i)).collect();
        (
            Checker::new(reference, 1, &ObserverConfig::default()),
            chain,
        )
    }

    fn violations(checker: &Shared) -> Vec<String> {
        let checker = checker.borrow();
        checker.violations.iter().map(|v| v.what.clone()).collect()
    }

    #[test]
    fn the_chain_in_order_passes() {
        let (checker, chain) = checker();
        for commit in &chain {
            checker.borrow_mut().delivered(10, 0, *commit);
        }
        assert_eq!(violations(&checker), Vec::<String>::new());
        assert_eq!(checker.borrow().outputs[0].last_index(), 5);
    }

    #[test]
    fn a_repeat_a_gap_and_a_foreign_commit_are_each_caught() {
        let (checker, chain) = checker();
        let mut foreign = chain[1];
        foreign.digest = chain[0].digest;
        let delivered = [chain[0], chain[0], foreign, chain[4]];
        for commit in delivered {
            checker.borrow_mut().delivered(10, 0, commit);
        }
        assert_eq!(
            violations(&checker),
            [
                "commit 1 delivered again".to_string(),
                format!("delivered {foreign:?}, the chain has {:?}", chain[1]),
                "commit 5 delivered after 2: a gap".to_string(),
            ]
        );
    }

    #[test]
    fn queues_over_their_bounds_are_caught() {
        let (checker, _) = checker();
        let config = ObserverConfig::default();
        let within = ObserverStatus {
            block_queue_len: config.block_queue_capacity,
            output_backlog: config.output_queue_len as u64 + MAX_COMMITS_PER_STEP,
            ..ObserverStatus::default()
        };
        checker.borrow_mut().status(10, 0, within.clone());
        assert_eq!(violations(&checker), Vec::<String>::new());
        let over = ObserverStatus {
            block_queue_len: within.block_queue_len + 1,
            output_backlog: within.output_backlog + 1,
            ..within
        };
        checker.borrow_mut().status(11, 0, over);
        assert_eq!(
            violations(&checker),
            [
                "1001 blocks queued, over the capacity of 1000",
                "513 commits wait for the consumer, over the bound of 512",
            ]
        );
    }

    #[test]
    fn a_store_is_checked_against_the_chain() {
        let (checker, _) = checker();
        let config = dagstream_sim::SimConfig {
            seed: 1,
            ..Default::default()
        };
        let honest = Arc::new(MemStore::new());
        let mut chain = TestChain::new(&TestCommittee::new(4, 1), config.clone(), honest.clone());
        chain.produce(20);
        checker.borrow_mut().persisted(10, 0, honest.as_ref());
        assert_eq!(violations(&checker), Vec::<String>::new());
        assert_eq!(
            checker.borrow().outputs[0].persisted_checked,
            chain.last_commit_index()
        );
        // Another committee's chain: its first commit is not the chain's.
        let (checker, _) = self::checker();
        let forged = Arc::new(MemStore::new());
        TestChain::new(&TestCommittee::new(4, 2), config, forged.clone()).produce(20);
        checker.borrow_mut().persisted(10, 0, forged.as_ref());
        let found = violations(&checker);
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].starts_with("persisted C1("), "{found:?}");
    }

    #[test]
    fn the_certified_tip_lags_the_decided_one_by_a_round() {
        let (checker, _) = checker();
        let mut checker = checker.borrow_mut();
        assert_eq!(checker.certified_at_round(1), 0);
        let mut sim = TestCommittee::new(4, 1).simulator(dagstream_sim::SimConfig {
            seed: 1,
            ..Default::default()
        });
        for round in 2..40 {
            sim.produce_round().unwrap();
            assert_eq!(checker.certified_at_round(round), sim.last_commit_index());
        }
    }
}
