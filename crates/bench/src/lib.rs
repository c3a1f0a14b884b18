//! dagstream's cross-crate benchmarks: what a validator's streams cost and
//! how fast they deliver, measured side by side with peer systems on the
//! same machine in the same run.
//!
//! Two benchmarks, documented in `docs/benchmarks.md`:
//! - `bench_live` (`src/bin/bench_live.rs`): a validator at the mainnet
//!   profile with N subscribers in the same process, so that publish and
//!   receive times come from one monotonic clock;
//! - `bench_memory` (`src/bin/bench_memory.rs`): a validator's RSS over
//!   minutes, with subscribers that never read in a child process, on
//!   mimalloc or (feature `bench-system-allocator`) the system's
//!   allocator.
//!
//! # Layout
//! - [`live`]: the dagstream runs. A validator on its own runtime, its
//!   feed recording when each block is published; receive-only clients or
//!   full observers on another runtime, recording when each block arrives
//!   or is verified.
//! - [`peers`] (feature `peers`): the same payloads in the same bursts
//!   through Redis Streams and core NATS, each server started on a
//!   loopback port and stopped by PID, skipped when not installed.
//! - [`latency`]: arrivals to latency and spread percentiles, free of I/O.
//! - [`cpu`]: CPU time per runtime, from the names of its threads.
//! - [`plot`]: the latency CDF, drawn with plotters.
//!
//! # Data flow
//! ```text
//! validator runtime: producer ─▶ StoreSource ─feed─▶ publish times
//!                                     │
//!                               publisher ─gRPC─▶ subscribers (clients runtime)
//!                                                   └─▶ arrivals per subscriber
//! publish times + arrivals ─▶ latency::Report ─▶ table rows, plot::cdf
//! ```

pub mod cpu;
pub mod latency;
pub mod live;
#[cfg(feature = "peers")]
pub mod peers;
pub mod plot;

/// Why a benchmark could not run.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("cannot start {what}: {reason}")]
    Start { what: &'static str, reason: String },
    #[error("{what} failed: {reason}")]
    Run { what: &'static str, reason: String },
    #[error("cannot write {path}: {reason}")]
    Output { path: String, reason: String },
}

pub type Result<T, E = BenchError> = std::result::Result<T, E>;
