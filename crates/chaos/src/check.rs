//! The invariants, checked as the simulation runs: each consumer's output
//! against the chain the simulated committee makes, and each observer's
//! queues against their bounds.
//!
//! The chain is a pure function of the genesis and the simulator config,
//! so the [`Reference`] makes it again, outside the simulated network, as
//! far as the checks need.

use dagstream_observer::{ObserverConfig, ObserverStatus};
use dagstream_sim::Simulator;
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
}

impl Reference {
    pub fn new(sim: Simulator) -> Self {
        Reference {
            sim,
            commits: Vec::new(),
            decided_by_round: Vec::new(),
        }
    }

    fn produce_through_round(&mut self, round: Round) {
        while (self.decided_by_round.len() as Round) < round {
            let output = self
                .sim
                .produce_round()
                .expect("the reference simulator produces what the validators did");
            self.commits
                .extend(output.commits.iter().map(|c| c.reference()));
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
    reference: Reference,
    pub outputs: Vec<Output>,
    pub violations: Vec<Violation>,
    block_queue_capacity: usize,
    max_backlog: u64,
}

impl Checker {
    pub fn new(reference: Reference, observers: usize, config: &ObserverConfig) -> Shared {
        Rc::new(RefCell::new(Checker {
            reference,
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

    /// The consumer of `observer` saw `status`: its queues must be within
    /// their bounds.
    pub fn status(&mut self, at_ms: u64, observer: usize, status: ObserverStatus) {
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

    /// The commits certified once round `round` is produced.
    pub fn certified_at_round(&mut self, round: Round) -> CommitIndex {
        self.reference.certified_at_round(round)
    }
}
