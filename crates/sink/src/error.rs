//! The sink's errors. A transient one ([`SinkError::is_transient`]) sends
//! the sink back to reading the log's tail after a backoff; any other
//! stops it, and the observer goes on without it.

use dagstream_observer::ObserverError;
use dagstream_store::StoreError;
use dagstream_types::CommitIndex;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("invalid sink setting {setting}: {reason}")]
    Config {
        setting: &'static str,
        reason: String,
    },
    #[error("the log at {url} is unavailable: {reason}")]
    Unavailable { url: String, reason: String },
    #[error("the log refused commit {index}: {reason}")]
    Rejected { index: CommitIndex, reason: String },
    #[error("stream {stream} does not take subject {subject} (its subjects: {subjects:?})")]
    StreamMismatch {
        stream: String,
        subject: String,
        subjects: Vec<String>,
    },
    #[error(
        "stream {stream} holds other messages than subject {subject}'s (its last is sequence \
         {sequence}): give the sink a stream of its own"
    )]
    SharedStream {
        stream: String,
        subject: String,
        sequence: u64,
    },
    #[error("the log's last message {message_id:?} is not a commit of chain {chain}")]
    WrongChain { chain: String, message_id: String },
    #[error(
        "{log} was last written by another observer (writer {holder}; this one is {writer}): \
         stop the other, or start this one with --sink-takeover"
    )]
    AnotherWriter {
        log: String,
        holder: String,
        writer: String,
    },
    #[error(
        "the log holds commits up to {log}, past this store's last commit {store}: it belongs \
         to another data dir"
    )]
    Ahead {
        log: CommitIndex,
        store: CommitIndex,
    },
    #[error(transparent)]
    Observer(#[from] ObserverError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl SinkError {
    /// Whether trying again later may succeed: the log was unreachable, or
    /// refused an append (an ack lost, a restarted server), which reading
    /// its tail again resolves.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            SinkError::Unavailable { .. } | SinkError::Rejected { .. }
        )
    }

    /// A short, stable name for metrics labels.
    pub fn name(&self) -> &'static str {
        match self {
            SinkError::Config { .. } => "config",
            SinkError::Unavailable { .. } => "unavailable",
            SinkError::Rejected { .. } => "rejected",
            SinkError::StreamMismatch { .. } => "stream_mismatch",
            SinkError::SharedStream { .. } => "shared_stream",
            SinkError::WrongChain { .. } => "wrong_chain",
            SinkError::AnotherWriter { .. } => "another_writer",
            SinkError::Ahead { .. } => "ahead",
            SinkError::Observer(_) | SinkError::Store(_) => "store",
        }
    }
}

pub type Result<T, E = SinkError> = std::result::Result<T, E>;
