//! Deterministic simulation: validators, a Byzantine upstream and
//! observers on a simulated network, in virtual time, under a schedule of
//! faults drawn from a seed, with the invariants checked at every step.
//!
//! The nodes run their real code. Only the clock and the sockets are
//! simulated, by [turmoil]: each host is a single-threaded runtime on a
//! paused clock, and the network between them delivers, delays or drops
//! TCP segments as the schedule says. A seconds-long run of faults takes
//! well under a second of real time.
//!
//! # Layout
//! - [`plan`]: the seed's [`Plan`]: partitions, latency spikes, validator
//!   and observer crashes, consumer stalls; a pure function of the seed.
//! - [`hosts`]: each host's software: [`Validator`](hosts::Validator)
//!   (honest, or Byzantine: signing with keys outside the genesis
//!   committee, its clock ahead, so that it claims the best tip) and
//!   [`Observer`](hosts::Observer) with its consumer.
//! - [`check`]: the invariants, against the [`Reference`](check::Reference)
//!   chain that the simulated committee makes again outside the network.
//! - [`run`](mod@run): one seed end to end: [`run()`], its [`Report`] or its
//!   [`Failure`], which prints the command that replays it.
//!
//! # Invariants, checked after every step
//! - every commit a consumer processes is the next one of the honest chain,
//!   index and digest: its output is a prefix of the chain, with nothing
//!   lost, repeated or reordered, across crashes of the observer;
//! - the observer's queues stay within their bounds (the block queue, and
//!   what waits for a stalled consumer);
//! - no host fails: an observer never stops on its own;
//! - once the last fault heals, every observer reaches the honest tip of
//!   that moment within [`CATCH_UP_MS`] (the Byzantine upstream is still
//!   there, and still the most attractive).
//!
//! # Data flow
//! ```text
//! seed ─▶ Plan ─actions by time─▶ run loop: partition, latency, crash, bounce, stall
//!                                     │ sim.step(): every host one tick (1 ms)
//!   honest-0, honest-1: Producer + Publisher ─┐
//!   byzantine: forged keys, clock ahead ──────┼─ turmoil TCP ─▶ observer-0, observer-1
//!                                             │                    │ consumer
//!                                             └────────────────────▼
//!                              Checker: output == Reference chain, queue bounds, catch-up
//! ```
//!
//! # Determinism
//! The plan, the chain, every node's clock and the network's latencies
//! come from the seed. Hosts run on one thread each, ticked in a fixed
//! order; the nodes' own `select!`s are biased, and their synchronous
//! work (signature checks, store reads and writes) runs inline
//! ([`Offload::Inline`](dagstream_publisher::Offload)) rather than on the
//! blocking pool, whose threads would finish at instants no seed decides.
//! A seed's run is then the same run every time: the same deliveries at
//! the same simulated instants (a test checks this on six seeds). What
//! is left outside the seed is the order in which libraries' own unbiased
//! `select!`s poll; no run has shown it to matter.
//!
//! ```no_run
//! let report = dagstream_chaos::run(7).unwrap_or_else(|failure| panic!("{failure}"));
//! assert!(report.delivered.iter().all(|&n| n >= report.target));
//! ```

pub mod check;
pub mod hosts;
pub mod plan;
pub mod run;

pub use plan::{Fault, Plan, Shape};
pub use run::{
    replay_command, run, run_with, Failure, Options, Report, CATCH_UP_MS, SEEDS_ENV, SEED_ENV,
};
