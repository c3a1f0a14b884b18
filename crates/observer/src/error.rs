//! The one error type of this crate.

use dagstream_types::{CommitIndex, Digest, Epoch, Stake, TypesError};

pub type Result<T, E = ObserverError> = std::result::Result<T, E>;

/// Everything that can go wrong in the observer. The verification errors
/// (see [`ObserverError::is_integrity`]) mean an upstream sent data that
/// does not verify: it is faulty or Byzantine.
#[derive(Debug, thiserror::Error)]
pub enum ObserverError {
    #[error("commit {got} does not follow commit {expected_after}")]
    BrokenChain {
        expected_after: CommitIndex,
        got: CommitIndex,
    },
    #[error("commit {index} carries a malformed block: {source}")]
    MalformedBlock {
        index: CommitIndex,
        #[source]
        source: TypesError,
    },
    #[error("commit {index} has no blocks")]
    EmptySubDag { index: CommitIndex },
    #[error("commit {index} names a leader that is not its last block")]
    LeaderMismatch { index: CommitIndex },
    #[error("commit {index} lists its blocks out of commit order")]
    UnorderedSubDag { index: CommitIndex },
    #[error("commit {index} has timestamp {got}, the chain implies {expected}")]
    WrongTimestamp {
        index: CommitIndex,
        expected: u64,
        got: u64,
    },
    #[error("a batch ending at commit {index} came without certifier blocks")]
    MissingCertificate { index: CommitIndex },
    #[error("a certifier block is invalid: {source}")]
    BadCertifier {
        #[source]
        source: TypesError,
    },
    #[error(
        "commit {index} computes to digest {computed}, but the certifiers voted for {certified}: \
         its blocks or the chain before it were tampered with"
    )]
    DigestMismatch {
        index: CommitIndex,
        computed: Digest,
        certified: Digest,
    },
    #[error("votes for commit {index} carry stake {stake}, below the quorum {quorum}")]
    MissingQuorum {
        index: CommitIndex,
        stake: Stake,
        quorum: Stake,
    },
    #[error("commit {index} carries randomness that does not verify: {source}")]
    InvalidRandomness {
        index: CommitIndex,
        #[source]
        source: TypesError,
    },
    #[error(
        "commit {index} carries randomness for rounds {got:?}, but its blocks bring rounds \
         {expected:?} to a quorum of partials"
    )]
    RandomnessMismatch {
        index: CommitIndex,
        expected: Vec<u64>,
        got: Vec<u64>,
    },
    #[error("a received block is invalid: {source}")]
    BadBlock {
        #[source]
        source: TypesError,
    },
    #[error(
        "commit {index} follows commit {last}, the last of epoch {epoch}, before the epoch's \
         hand-off"
    )]
    CommitAfterEpochEnd {
        index: CommitIndex,
        epoch: Epoch,
        last: CommitIndex,
    },
    #[error("the hand-off of epoch {epoch} is refused: {source}")]
    BadHandOff {
        epoch: Epoch,
        #[source]
        source: TypesError,
    },
    #[error(
        "the upstream handed over epoch {epoch} where this observer's chain, in epoch \
         {current}, has not reached that epoch's last commit"
    )]
    UnexpectedHandOff { epoch: Epoch, current: Epoch },
    #[error(
        "the hand-off of epoch {epoch} is certified over checkpoint {got}, but the operator \
         pinned {pinned} (a waypoint)"
    )]
    WaypointMismatch {
        epoch: Epoch,
        pinned: Digest,
        got: Digest,
    },
    #[error(
        "INTEGRITY: commit {index} was persisted with digest {persisted}, but {received} was \
         received: an upstream is faulty or Byzantine"
    )]
    Conflict {
        index: CommitIndex,
        persisted: Digest,
        received: Digest,
    },
    #[error(
        "upstream {upstream} serves chain {served}, but this observer follows chain {ours} \
         (its genesis): refusing it; point --upstream at a node of this chain, or use the \
         other chain's genesis"
    )]
    WrongChain {
        upstream: String,
        served: String,
        ours: Digest,
    },
    #[error("invalid observer config: {field}: {reason}")]
    InvalidConfig { field: &'static str, reason: String },
    #[error("{}: {reason}", path.display())]
    Credentials {
        path: std::path::PathBuf,
        reason: String,
    },
    #[error(transparent)]
    Store(#[from] dagstream_store::StoreError),
    #[error(transparent)]
    Dag(#[from] dagstream_dag::DagError),
    /// Persisting through the relay source failed, or it cannot start.
    #[error(transparent)]
    Publisher(#[from] dagstream_publisher::PublisherError),
    /// The history archive cannot be used: another chain's, or unreadable
    /// (`docs/archive.md`).
    #[error(transparent)]
    Archive(#[from] dagstream_archive::ArchiveError),
}

/// The metric names of every integrity error: the labels of
/// `dagstream_observer_faults_total`, created at zero.
pub const INTEGRITY_ERROR_NAMES: [&str; 18] = [
    "broken_chain",
    "malformed_block",
    "empty_sub_dag",
    "leader_mismatch",
    "unordered_sub_dag",
    "wrong_timestamp",
    "missing_certificate",
    "bad_certifier",
    "digest_mismatch",
    "missing_quorum",
    "bad_block",
    "commit_after_epoch_end",
    "bad_hand_off",
    "unexpected_hand_off",
    "waypoint_mismatch",
    "invalid_randomness",
    "randomness_mismatch",
    "wrong_chain",
];

impl ObserverError {
    /// Whether the error proves an upstream sent data that does not verify.
    /// Such an upstream is marked faulty for a cool-down, never retried in
    /// a loop.
    pub fn is_integrity(&self) -> bool {
        !matches!(
            self,
            ObserverError::Conflict { .. }
                | ObserverError::WrongChain { .. }
                | ObserverError::InvalidConfig { .. }
                | ObserverError::Credentials { .. }
                | ObserverError::Store(_)
                | ObserverError::Dag(_)
                | ObserverError::Publisher(_)
                | ObserverError::Archive(_)
        )
    }

    /// A short, static name for each kind of error: a metric label.
    pub fn name(&self) -> &'static str {
        match self {
            ObserverError::BrokenChain { .. } => "broken_chain",
            ObserverError::MalformedBlock { .. } => "malformed_block",
            ObserverError::EmptySubDag { .. } => "empty_sub_dag",
            ObserverError::LeaderMismatch { .. } => "leader_mismatch",
            ObserverError::UnorderedSubDag { .. } => "unordered_sub_dag",
            ObserverError::WrongTimestamp { .. } => "wrong_timestamp",
            ObserverError::MissingCertificate { .. } => "missing_certificate",
            ObserverError::BadCertifier { .. } => "bad_certifier",
            ObserverError::DigestMismatch { .. } => "digest_mismatch",
            ObserverError::MissingQuorum { .. } => "missing_quorum",
            ObserverError::BadBlock { .. } => "bad_block",
            ObserverError::CommitAfterEpochEnd { .. } => "commit_after_epoch_end",
            ObserverError::BadHandOff { .. } => "bad_hand_off",
            ObserverError::UnexpectedHandOff { .. } => "unexpected_hand_off",
            ObserverError::WaypointMismatch { .. } => "waypoint_mismatch",
            ObserverError::InvalidRandomness { .. } => "invalid_randomness",
            ObserverError::RandomnessMismatch { .. } => "randomness_mismatch",
            ObserverError::Conflict { .. } => "conflict",
            ObserverError::InvalidConfig { .. } => "invalid_config",
            ObserverError::Credentials { .. } => "credentials",
            ObserverError::WrongChain { .. } => "wrong_chain",
            ObserverError::Store(err) => err.name(),
            ObserverError::Dag(err) => err.name(),
            ObserverError::Publisher(err) => err.name(),
            ObserverError::Archive(_) => "archive",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every integrity error has its name in [`INTEGRITY_ERROR_NAMES`].
    #[test]
    fn integrity_error_names_are_complete() {
        let types = || TypesError::GenesisRound {
            author: 0,
            round: 0,
            genesis_round: 0,
        };
        let errors = [
            ObserverError::BrokenChain {
                expected_after: 1,
                got: 3,
            },
            ObserverError::MalformedBlock {
                index: 1,
                source: types(),
            },
            ObserverError::EmptySubDag { index: 1 },
            ObserverError::LeaderMismatch { index: 1 },
            ObserverError::UnorderedSubDag { index: 1 },
            ObserverError::WrongTimestamp {
                index: 1,
                expected: 2,
                got: 3,
            },
            ObserverError::MissingCertificate { index: 1 },
            ObserverError::BadCertifier { source: types() },
            ObserverError::DigestMismatch {
                index: 1,
                computed: Digest::ZERO,
                certified: Digest::ZERO,
            },
            ObserverError::MissingQuorum {
                index: 1,
                stake: 1,
                quorum: 3,
            },
            ObserverError::BadBlock { source: types() },
            ObserverError::CommitAfterEpochEnd {
                index: 8,
                epoch: 0,
                last: 7,
            },
            ObserverError::BadHandOff {
                epoch: 0,
                source: types(),
            },
            ObserverError::UnexpectedHandOff {
                epoch: 1,
                current: 0,
            },
            ObserverError::WaypointMismatch {
                epoch: 0,
                pinned: Digest::ZERO,
                got: Digest::ZERO,
            },
            ObserverError::InvalidRandomness {
                index: 1,
                source: types(),
            },
            ObserverError::RandomnessMismatch {
                index: 1,
                expected: vec![],
                got: vec![1],
            },
            ObserverError::WrongChain {
                upstream: "u".into(),
                served: "s".into(),
                ours: Digest::ZERO,
            },
        ];
        let names: Vec<&str> = errors.iter().map(|e| e.name()).collect();
        assert_eq!(names, INTEGRITY_ERROR_NAMES);
        assert!(errors
            .iter()
            .filter(|e| !matches!(e, ObserverError::WrongChain { .. }))
            .all(|e| e.is_integrity()));
    }
}
