//! dagstream-sink: an observer's persisted commit sequence, delivered
//! exactly once into an external log that many services read: NATS
//! JetStream today, behind a small trait ([`CommitLog`]) that a Kafka sink
//! can implement.
//!
//! # Data flow
//! ```text
//! delivered commits, encoded ──feed (bounded)──┐
//! observer store ──read what the feed missed──▶ Sink ──▶ CommitLog::append ──▶ JetStream subject
//!        ▲                                       │
//!  persisted tip (watch)                         └─▶ progress (sink_commit), metrics
//! ```
//! The sink reads the node's store and nothing else of the node, so a slow
//! or unreachable log never holds the observer up: the sink lags (the
//! `sink_commit` status field and metrics say by how much) and catches up.
//! While it keeps up it takes the commits as they are delivered, already
//! encoded, from a bounded feed, and reads the store only for what the
//! feed missed. It only ever sends persisted commits, as `--output` does.
//!
//! # Exactly once, with no side store
//! The log itself says where to resume. On start, and after any failed
//! append, the sink reads the log's last message: its id names the chain
//! and the commit (`<genesis committee digest>:<index>`), and a header the
//! writer. Each append carries its commit's id (the log's deduplication
//! drops a resend) and the position of the message it must follow (the log
//! refuses it if anything else came last). So a commit is never appended
//! twice, and never after a gap, whatever fails in between: the sink, the
//! log's server, a window of unacknowledged appends. A log last written
//! by another writer is refused, not interleaved with.

mod config;
mod error;
mod log;
mod metrics;
pub mod nats;
mod sink;

pub use config::SinkConfig;
pub use error::{Result, SinkError};
pub use log::{message_id, parse_message_id, CommitLog, Record, Tail};
pub use metrics::SinkMetrics;
pub use sink::{writer_id, Encoder, Sink, SinkProgress, FEED_CAPACITY};
