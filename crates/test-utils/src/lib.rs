//! Fixtures for dagstream's tests and examples: the committee, seeded
//! randomness, and validators that make and serve a chain.
//!
//! For tests and examples only (`publish = false`, a dev-dependency). Its
//! types are those of the normal libraries, so an integration test or an
//! example of a crate may use it; a `#[cfg(test)]` unit test of a crate this
//! one depends on may not, as it would see a second copy of that crate's
//! types.
//!
//! # Layout
//! - [`committee`]: [`TestCommittee`], a committee and keys from a size and
//!   a seed.
//! - [`seed`]: [`test_seed`], from `DAGSTREAM_TEST_SEED` or fresh, printed
//!   so that a failure can be replayed.
//! - [`chain`]: [`TestChain`], the simulated committee writing each round
//!   through `StoreSource::write`, remembering what it made.
//! - [`clock`]: [`TestClock`], a validator clock the test moves.
//! - [`client`]: one open block or commit stream, for tests and benches.
//! - [`baseline`]: raw loopback TCP, the same-run baseline of benchmarks.
//! - [`proxy`]: [`FaultProxy`](proxy::FaultProxy), a TCP proxy that delays,
//!   throttles, cuts or black-holes a connection on the test's command.
//! - [`s3`]: [`S3Server`](s3::S3Server), a real S3-protocol server
//!   process (moto's) on a loopback port.
//! - [`store`]: [`HookedStore`](store::HookedStore), an in-memory store
//!   whose writes and block reads a test can watch or hold, and
//!   [`damage_pages`](store::damage_pages), a disk fault on a store's file.
//! - [`validator`]: [`TestValidator`], a publisher serving a [`TestChain`]
//!   on a loopback port while the test produces rounds, and
//!   [`ClockedValidator`], the validator node producing by a [`TestClock`].
//!
//! # Data flow
//! ```text
//! TestCommittee ─▶ TestChain::produce ─▶ Simulator ─batch─▶ StoreSource::write
//!                      │                                      (store, then feed)
//!                      ├─▶ TestValidator::start ─▶ Publisher on 127.0.0.1:0
//!                      └─▶ TestChain::start_clocked(TestClock)
//!                            ─▶ dagstream_validator::start on 127.0.0.1:0
//! ```
//!
//! ```
//! use dagstream_test_utils::{TestChain, TestCommittee};
//!
//! let mut chain = TestChain::in_memory(&TestCommittee::new(4, 1));
//! chain.produce(10);
//! assert_eq!(chain.blocks().len(), 40);
//! assert!(chain.certified() > 0 && chain.certified() < chain.last_commit_index());
//! ```

pub mod baseline;
pub mod chain;
pub mod client;
pub mod clock;
pub mod committee;
pub mod proxy;
pub mod s3;
pub mod seed;
pub mod store;
pub mod validator;

pub use chain::TestChain;
pub use client::PATIENCE;
pub use clock::{TestClock, Ticker};
pub use committee::{TestCommittee, ROUND_INTERVAL_MS};
pub use seed::{test_seed, SEED_ENV};
pub use validator::{ClockedValidator, TestValidator};
