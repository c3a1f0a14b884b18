//! The one error type of this crate.

use dagstream_dag::DagError;
use dagstream_store::StoreError;
use dagstream_types::{AuthorityIndex, Stake, TypesError};

pub type Result<T, E = SimError> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("authority {authority} is named in {option} but the committee has {committee_size}")]
    UnknownAuthority {
        option: &'static str,
        authority: AuthorityIndex,
        committee_size: usize,
    },
    #[error(
        "authorities that are neither crashed nor slow hold stake {stake}, below the quorum \
         {quorum}: the simulated chain could never make progress"
    )]
    NoLiveQuorum { stake: Stake, quorum: Stake },
    #[error("{got} keys given for a committee of {expected}")]
    WrongKeyCount { expected: usize, got: usize },
    #[error("key {authority} does not match the committee's public key")]
    KeyMismatch { authority: AuthorityIndex },
    #[error("the keys deal other randomness shares than the genesis holds the keys of")]
    RandomnessMismatch,
    #[error(
        "{tps} TPS of {tx_size_bytes}-byte transactions make blocks of about {block_bytes} \
         bytes, over the block limit of {max_block_bytes}; lower --tps or --tx-size"
    )]
    BlocksTooLarge {
        tps: u64,
        tx_size_bytes: usize,
        block_bytes: u64,
        max_block_bytes: usize,
    },
    #[error(
        "{tps} TPS make about {per_block} transactions per block, over the limit of {max}; \
         lower --tps"
    )]
    TooManyTransactions {
        tps: u64,
        per_block: u64,
        max: usize,
    },
    #[error("cannot use committee keys file {path}: {reason}")]
    KeysFile { path: String, reason: String },
    #[error("invalid simulator config: {reason}")]
    InvalidConfig { reason: String },
    #[error(
        "the store holds a chain made by another genesis or simulator config \
         (stored {stored}, this one {expected}); use a fresh data directory"
    )]
    DifferentChain { stored: String, expected: String },
    #[error("simulator state in the store is corrupt: {reason}")]
    CorruptState { reason: String },
    #[error(transparent)]
    Dag(#[from] DagError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Types(#[from] TypesError),
}

impl SimError {
    /// A short, static name for each kind of error: a metric label.
    pub fn name(&self) -> &'static str {
        match self {
            SimError::UnknownAuthority { .. } => "unknown_authority",
            SimError::NoLiveQuorum { .. } => "no_live_quorum",
            SimError::WrongKeyCount { .. } => "wrong_key_count",
            SimError::KeyMismatch { .. } => "key_mismatch",
            SimError::RandomnessMismatch => "randomness_mismatch",
            SimError::BlocksTooLarge { .. } => "blocks_too_large",
            SimError::TooManyTransactions { .. } => "too_many_transactions",
            SimError::InvalidConfig { .. } => "invalid_config",
            SimError::KeysFile { .. } => "keys_file",
            SimError::DifferentChain { .. } => "different_chain",
            SimError::CorruptState { .. } => "corrupt_state",
            SimError::Dag(err) => err.name(),
            SimError::Store(err) => err.name(),
            SimError::Types(err) => err.name(),
        }
    }
}
