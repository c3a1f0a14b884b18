//! The durable-write stage: group commit between the producer and the
//! source.
//!
//! The producer hands over each block as soon as it is signed, and each
//! round's end (its commits and progress marker) after its last block. The
//! writer thread makes them durable in arrival order: it takes everything
//! queued, up to [`MAX_GROUP_BLOCKS`], as one atomic store write (one
//! fsync), and announces it. While the disk syncs one group, the producer
//! signs the next blocks: the first blocks of a round go out after one
//! signature and one sync instead of after the whole round's work.
//!
//! ```text
//! producer ─block, block, …, round end─▶ queue (bounded) ─▶ writer thread:
//!     recv + drain ─▶ WriteBatch::append ─▶ StoreSource::write (durable, then feed)
//! ```

use crate::ValidatorError;
use dagstream_publisher::StoreSource;
use dagstream_store::WriteBatch;
use std::sync::mpsc::{self, Receiver, SyncSender, TryRecvError};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Pieces (a block, or a round's end) queued for the writer. A full queue
/// makes the producer wait for the disk, so this bounds what a stalled disk
/// holds in memory: 1,024 pieces are about 10 rounds of a 100-authority
/// committee, some 6 MB at the mainnet profile, and 0.75 s of slack for a
/// sync that takes long.
pub const WRITE_QUEUE: usize = 1_024;

/// Most blocks in one group write: bounds one write's size (about 1.2 MB
/// at the mainnet profile) and how long the first of them waits for the
/// rest. Two rounds of a 100-authority committee.
pub const MAX_GROUP_BLOCKS: usize = 200;

/// The writer thread's name.
pub const WRITER_THREAD: &str = "dagstream-writer";

/// The producer's end of the writer: queues pieces for the writer thread.
pub(crate) struct Writer {
    queue: SyncSender<WriteBatch>,
    thread: JoinHandle<Result<(), ValidatorError>>,
}

impl Writer {
    pub(crate) fn start(source: Arc<StoreSource>) -> Result<Writer, ValidatorError> {
        let (queue, pieces) = mpsc::sync_channel(WRITE_QUEUE);
        let thread = std::thread::Builder::new()
            .name(WRITER_THREAD.into())
            .spawn(move || write_groups(&source, &pieces))
            .map_err(|err| ValidatorError::Thread {
                reason: err.to_string(),
            })?;
        Ok(Writer { queue, thread })
    }

    /// Queues `piece`, waiting while the queue is full. Fails when the
    /// writer has stopped, on an error that [`Writer::finish`] returns.
    pub(crate) fn send(&self, piece: WriteBatch) -> Result<(), ValidatorError> {
        self.queue
            .send(piece)
            .map_err(|_| ValidatorError::WriterStopped)
    }

    /// Writes what is queued, stops the thread, and returns its error if it
    /// failed.
    pub(crate) fn finish(self) -> Result<(), ValidatorError> {
        drop(self.queue);
        self.thread
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

/// The writer thread: until the producer hangs up, one group write per
/// wake-up. A failed write stops it, and the producer with it: what follows
/// a block that is not durable must not be announced.
fn write_groups(source: &StoreSource, pieces: &Receiver<WriteBatch>) -> Result<(), ValidatorError> {
    while let Ok(mut group) = pieces.recv() {
        while group.blocks().len() < MAX_GROUP_BLOCKS {
            match pieces.try_recv() {
                Ok(piece) => {
                    group.append(piece);
                }
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
            }
        }
        source.write(group)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use dagstream_publisher::ConsensusSource;
    use dagstream_sim::{generate, GenesisParams, Profile, Simulator};
    use dagstream_store::{MemStore, Store};
    use dagstream_types::{BlockLimits, Committee};

    /// Pieces queued one by one come out of the source's feed in the same
    /// order, each durable before it is announced, and the round's end
    /// (its commits) lands too.
    #[test]
    fn pieces_are_written_and_announced_in_order() {
        let (genesis, keys) = generate(&GenesisParams {
            authorities: 4,
            round_interval_ms: 100,
            genesis_time_ms: 0,
            gc_depth_rounds: 50,
            seed: 3,
        });
        let committee = Arc::new(Committee::new(genesis).unwrap());
        let store: Arc<dyn Store> = Arc::new(MemStore::new());
        let source = Arc::new(StoreSource::new(store.clone(), committee.clone()).unwrap());
        let mut feed = source.subscribe();
        let mut sim = Simulator::new(
            committee,
            keys,
            Profile::Small.sim_config(3),
            &BlockLimits::default(),
        )
        .unwrap();
        let writer = Writer::start(source.clone()).unwrap();
        let mut sent = Vec::new();
        for _ in 0..12 {
            let mut pieces = Vec::new();
            let output = sim
                .produce_round_with(|block| {
                    let mut piece = WriteBatch::new();
                    piece.add_block(block);
                    pieces.push(piece);
                    sent.push(block.clone());
                })
                .unwrap();
            pieces.push(sim.round_end_batch(&output));
            for piece in pieces {
                writer.send(piece).unwrap();
            }
        }
        writer.finish().unwrap();

        let announced: Vec<_> = std::iter::from_fn(|| feed.try_recv().ok())
            .map(|accepted| accepted.block.reference())
            .collect();
        let sent_refs: Vec<_> = sent.iter().map(|b| b.reference()).collect();
        assert_eq!(announced, sent_refs);
        for block in &sent {
            assert_eq!(
                store.read_block(&block.reference()).unwrap().as_ref(),
                Some(block.serialized())
            );
        }
        assert_eq!(store.last_commit_index().unwrap(), sim.last_commit_index());
        assert!(sim.last_commit_index() > 0);
    }
}
