//! What a node reads back from its store to rebuild its consensus core
//! after a restart.

use crate::{Result, Store, StoreError};
pub use dagstream_types::ConsensusState;
use dagstream_types::{BlockRef, Round, VerifiedBlock};

/// Blocks read per scan while recovering: bounds memory per read.
const SCAN_CHUNK: usize = 10_000;

/// Loads the state a consensus core needs to continue after the store's
/// last commit: blocks above `last leader round - gc_depth` (up to
/// `up_to_round`), and which of them are committed. Only commits whose
/// leader is above the GC round can hold such blocks, so only those are
/// read.
pub fn load_consensus_state(
    store: &dyn Store,
    gc_depth: Round,
    up_to_round: Round,
) -> Result<ConsensusState> {
    let last_commit = store.last_commit()?;
    let gc_round = last_commit
        .as_ref()
        .map_or(0, |c| c.leader().round.saturating_sub(gc_depth));
    let corrupt = |reason: String| StoreError::Corrupt {
        what: "consensus state",
        reason,
    };

    let mut blocks = Vec::new();
    let mut from = BlockRef::round_start(gc_round + 1);
    loop {
        let chunk = store.scan_blocks(from, up_to_round, SCAN_CHUNK)?;
        let Some((last, _)) = chunk.last() else { break };
        from = last.successor();
        let full = chunk.len() == SCAN_CHUNK;
        for (_, bytes) in chunk {
            blocks.push(
                VerifiedBlock::decode_trusted(bytes).map_err(|err| corrupt(err.to_string()))?,
            );
        }
        if !full {
            break;
        }
    }

    let mut committed = Vec::new();
    let mut index = last_commit.as_ref().map_or(0, |c| c.index());
    while index > 0 {
        let Some(commit) = store.read_commit(index)? else {
            // Pruned: older commits cannot hold blocks above the GC round.
            break;
        };
        if commit.leader().round <= gc_round {
            break;
        }
        committed.extend(
            commit
                .commit()
                .blocks
                .iter()
                .filter(|b| b.round > gc_round)
                .copied(),
        );
        index -= 1;
    }
    Ok(ConsensusState {
        last_commit,
        blocks,
        committed,
    })
}
