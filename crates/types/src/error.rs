//! The one error type of this crate.

use crate::{AuthorityIndex, Epoch, Round, Stake};

pub type Result<T, E = TypesError> = std::result::Result<T, E>;

/// Everything that can be wrong with bytes or a genesis handed to this crate.
///
/// Decoding never panics: each rejection is one of these, with the values that
/// caused it, so that a peer's misbehaviour can be logged and counted exactly.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum TypesError {
    #[error("{what} is {size} bytes, over the limit of {max}")]
    TooLarge {
        what: &'static str,
        size: usize,
        max: usize,
    },
    #[error("malformed {what}: {reason}")]
    Malformed { what: &'static str, reason: String },
    #[error("{what} has trailing bytes after its encoding")]
    TrailingBytes { what: &'static str },
    #[error("epoch {got} is not the committee's epoch {expected}")]
    WrongEpoch { expected: Epoch, got: Epoch },
    #[error("authority {author} is not in the committee of {committee_size}")]
    UnknownAuthority {
        author: AuthorityIndex,
        committee_size: usize,
    },
    #[error(
        "block by authority {author} has round {round}, not above its committee's genesis round {genesis_round}"
    )]
    GenesisRound {
        author: AuthorityIndex,
        round: Round,
        genesis_round: Round,
    },
    #[error("block has {count} transactions, over the limit of {max}")]
    TooManyTransactions { count: usize, max: usize },
    #[error("ancestor at round {ancestor_round} is not below the block's round {round}")]
    AncestorNotLowerRound { round: Round, ancestor_round: Round },
    #[error("ancestors name authority {author} more than once")]
    DuplicateAncestorAuthor { author: AuthorityIndex },
    #[error("block by authority {author} does not include its own previous block")]
    MissingOwnPreviousBlock { author: AuthorityIndex },
    #[error("ancestors from round {parent_round} carry stake {stake}, below the quorum {quorum}")]
    InsufficientParentStake {
        parent_round: Round,
        stake: Stake,
        quorum: Stake,
    },
    #[error("invalid signature on block by authority {author} at round {round}")]
    InvalidSignature {
        author: AuthorityIndex,
        round: Round,
    },
    #[error("invalid committee: {reason}")]
    InvalidCommittee { reason: String },
    #[error("cannot read genesis {path}: {reason}")]
    GenesisFile { path: String, reason: String },
    #[error("commit {got} does not follow commit {expected_after}")]
    CommitGap { expected_after: u64, got: u64 },
    #[error("commit {index} does not chain to the digest of commit {}", index - 1)]
    CommitNotChained { index: u64 },
    #[error("commit {index} goes back in time")]
    CommitTimeGoesBack { index: u64 },
    #[error("commit {index} lists its blocks out of commit order, or not with its leader last")]
    CommitBlocksUnordered { index: u64 },
    #[error("block has {count} system messages, over the limit of {max}")]
    TooManySystemMessages { count: usize, max: usize },
    #[error("invalid signature by authority {author} on checkpoint {sequence}")]
    InvalidCheckpointSignature {
        sequence: u64,
        author: AuthorityIndex,
    },
    #[error("the certificate of checkpoint {sequence} lists its signers out of order or twice")]
    CertificateSigners { sequence: u64 },
    #[error(
        "the certificate of checkpoint {sequence} carries stake {stake}, below the quorum {quorum}"
    )]
    CertificateBelowQuorum {
        sequence: u64,
        stake: Stake,
        quorum: Stake,
    },
    #[error("the randomness of round {round} is not the group's signature")]
    InvalidRandomness { round: u64 },
    #[error("checkpoint {sequence} hands over no epoch: it is not an end-of-epoch checkpoint")]
    NotEndOfEpoch { sequence: u64 },
    #[error("the hand-off of epoch {from} names a committee of epoch {to}, not {}", from + 1)]
    EpochSkipped { from: Epoch, to: Epoch },
    #[error("end-of-epoch checkpoint {sequence} does not commit to the committee sent with it")]
    NextCommitteeMismatch { sequence: u64 },
    #[error("end-of-epoch checkpoint {sequence} does not follow this node's checkpoint {last}")]
    FinalCheckpointMismatch { sequence: u64, last: u64 },
    #[error(
        "the next committee starts at round {genesis_round}, not above the ending one's {ending}"
    )]
    EpochStartsBack { genesis_round: Round, ending: Round },
}

impl TypesError {
    /// A short, static name for each kind of error: a metric label.
    pub fn name(&self) -> &'static str {
        match self {
            TypesError::TooLarge { .. } => "too_large",
            TypesError::Malformed { .. } => "malformed",
            TypesError::TrailingBytes { .. } => "trailing_bytes",
            TypesError::WrongEpoch { .. } => "wrong_epoch",
            TypesError::UnknownAuthority { .. } => "unknown_authority",
            TypesError::GenesisRound { .. } => "genesis_round",
            TypesError::TooManyTransactions { .. } => "too_many_transactions",
            TypesError::AncestorNotLowerRound { .. } => "ancestor_not_lower_round",
            TypesError::DuplicateAncestorAuthor { .. } => "duplicate_ancestor_author",
            TypesError::MissingOwnPreviousBlock { .. } => "missing_own_previous_block",
            TypesError::InsufficientParentStake { .. } => "insufficient_parent_stake",
            TypesError::InvalidSignature { .. } => "invalid_signature",
            TypesError::InvalidCommittee { .. } => "invalid_committee",
            TypesError::GenesisFile { .. } => "genesis_file",
            TypesError::CommitGap { .. } => "commit_gap",
            TypesError::CommitNotChained { .. } => "commit_not_chained",
            TypesError::CommitTimeGoesBack { .. } => "commit_time_goes_back",
            TypesError::CommitBlocksUnordered { .. } => "commit_blocks_unordered",
            TypesError::TooManySystemMessages { .. } => "too_many_system_messages",
            TypesError::InvalidCheckpointSignature { .. } => "invalid_checkpoint_signature",
            TypesError::CertificateSigners { .. } => "certificate_signers",
            TypesError::CertificateBelowQuorum { .. } => "certificate_below_quorum",
            TypesError::InvalidRandomness { .. } => "invalid_randomness",
            TypesError::NotEndOfEpoch { .. } => "not_end_of_epoch",
            TypesError::EpochSkipped { .. } => "epoch_skipped",
            TypesError::NextCommitteeMismatch { .. } => "next_committee_mismatch",
            TypesError::FinalCheckpointMismatch { .. } => "final_checkpoint_mismatch",
            TypesError::EpochStartsBack { .. } => "epoch_starts_back",
        }
    }
}

/// Decodes exactly one BCS value from `bytes`, mapping trailing bytes to their
/// own error.
pub(crate) fn bcs_decode<'a, T: serde::Deserialize<'a>>(
    what: &'static str,
    bytes: &'a [u8],
) -> Result<T> {
    bcs::from_bytes(bytes).map_err(|err| bcs_error(what, err))
}

/// The error of decoding `what` that `bcs` refused with `err`.
pub(crate) fn bcs_error(what: &'static str, err: bcs::Error) -> TypesError {
    match err {
        bcs::Error::RemainingInput => TypesError::TrailingBytes { what },
        other => TypesError::Malformed {
            what,
            reason: other.to_string(),
        },
    }
}

/// BCS-encodes a value of the data model. The encoding only fails for
/// sequences longer than 2^31 or nesting deeper than 500 levels, which no
/// value of this data model can reach, so failure is a bug, not an input error.
pub(crate) fn bcs_encode<T: serde::Serialize>(value: &T) -> Vec<u8> {
    bcs::to_bytes(value).expect("data model values always have a BCS encoding")
}
