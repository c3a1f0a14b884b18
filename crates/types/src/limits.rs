//! Size limits applied when decoding untrusted blocks.

use serde::{Deserialize, Serialize};

/// Limits on one block, checked before and while decoding it.
///
/// They bound what one peer can make a node allocate or hash per block. They
/// are node configuration, not consensus rules: a producer must stay within the
/// limits of every node that will receive its blocks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BlockLimits {
    /// Most transactions in one block. 10,000 is 20x the densest simulated
    /// profile (`stress`: 75 per block), leaving room for bursts while keeping
    /// per-block bookkeeping bounded.
    pub max_transactions_per_block: usize,
    /// Most bytes of one serialized `SignedBlock`. 2 MiB keeps one block well
    /// under a stream batch (4 MiB) and under gRPC message limits, so that a
    /// single maximal block can always be sent.
    pub max_block_bytes: usize,
    /// Most system messages in one block. An authority carries one
    /// checkpoint signature per checkpoint closed since its previous block:
    /// a few. 256 of about 110 bytes each stay under 30 KiB.
    pub max_system_messages_per_block: usize,
}

impl Default for BlockLimits {
    fn default() -> Self {
        BlockLimits {
            max_transactions_per_block: 10_000,
            max_block_bytes: 2 * 1024 * 1024,
            max_system_messages_per_block: 256,
        }
    }
}
