//! One block stream: Start/Stop commands in, batches of blocks out.
//!
//! After a Start, the stream first reads the backlog from the source in
//! `(round, author)` order, then follows the live feed. It subscribes to the
//! feed *before* reading, so every block is in one or the other, and it
//! keeps the highest round sent per author, so a block seen in both is sent
//! once. An author's blocks are accepted in round order (each references the
//! previous), so that filter never drops a block that was not sent. If the
//! feed lags, the stream reads the source again instead of skipping.
//!
//! The per-author rounds are indexed by the committee of the stream's
//! epoch: the one the Start names, or the publisher's current one. A
//! response holds blocks of one epoch; before the first block of a later
//! epoch the stream ends the response, and the next one carries the
//! hand-offs that lead there, then that epoch's blocks. Blocks of an epoch
//! the subscriber has left are never sent.

use crate::batching::{batch_size, ByteBudget};
use crate::context::Context;
use crate::end_reason::EndReason;
use crate::epochs::Epochs;
use crate::error::Result;
use crate::metrics::{self, PublisherMetrics};
use crate::session::{Batch, Command, Heads, StreamKind};
use crate::source::Accepted;
use bytes::Bytes;
use dagstream_proto::v1::{
    block_stream_request, BlockStreamRequest, BlockStreamResponse, StartBlockStream,
};
use dagstream_types::{BlockRef, Epoch, Round};
use prometheus::IntCounterVec;
use std::sync::Arc;
use std::time::Instant;
use tokio::sync::broadcast::{self, error::TryRecvError};
use tonic::Status;

/// Most blocks examined per backlog read: bounds the work and memory of one
/// store read, whatever the batch size.
const SCAN_CHUNK: usize = 512;

/// Where a started stream is.
pub(crate) struct Cursor {
    /// The epoch of the blocks sent (or held by the subscriber), whose
    /// committee indexes `sent`.
    epoch: Epoch,
    /// Highest round sent (or already held by the subscriber) per author.
    sent: Vec<Round>,
    /// Hand-offs that go with the next batch, before its blocks.
    hand_offs: Vec<Bytes>,
    /// While reading the backlog: the next ref to read from the source.
    backlog: Option<BlockRef>,
    feed: broadcast::Receiver<Accepted>,
    preferred: u32,
}

impl Cursor {
    fn start(shared: &Context, start: StartBlockStream) -> Result<Cursor, Status> {
        let epochs = shared.source.epochs();
        let current = epochs.current().epoch();
        let epoch = start.epoch.unwrap_or(current);
        let Some(committee) = epochs.committee(epoch) else {
            return Err(Status::invalid_argument(format!(
                "epoch {epoch} is not one this publisher has (its current epoch is {current})"
            )));
        };
        let size = committee.size();
        let got = start.highest_round_per_authority.len();
        if got != size {
            return Err(Status::invalid_argument(format!(
                "highest_round_per_authority has {got} entries, but the committee of epoch \
                 {epoch} has {size} authorities"
            )));
        }
        // Subscribe before reading the store: nothing accepted from now on
        // can be missed.
        let feed = shared.source.subscribe();
        let floor = shared
            .source
            .highest_round()
            .saturating_sub(shared.config.block_backlog_rounds);
        let sent: Vec<Round> = start
            .highest_round_per_authority
            .iter()
            .map(|&round| round.max(floor).max(committee.genesis_round()))
            .collect();
        let mut cursor = Cursor {
            epoch,
            sent,
            hand_offs: Vec::new(),
            backlog: None,
            feed,
            preferred: start.preferred_batch_size,
        };
        cursor.rewind(floor);
        Ok(cursor)
    }

    /// Reads the source again from the lowest round the subscriber may lack.
    fn rewind(&mut self, floor: Round) {
        let lowest = self.sent.iter().copied().min().unwrap_or(0).max(floor);
        // A subscriber that has every round up to u64::MAX lacks nothing.
        self.backlog = lowest.checked_add(1).map(BlockRef::round_start);
    }

    /// Whether the subscriber needs `reference`, a block of `epoch`, in the
    /// batch being built (empty: `first`). A block of a later epoch moves
    /// the stream there, with the hand-offs that lead there, but only as a
    /// batch's first block.
    fn admits(
        &mut self,
        epochs: &Epochs,
        epoch: Epoch,
        reference: &BlockRef,
        first: bool,
    ) -> Result<Admission> {
        if epoch < self.epoch {
            return Ok(Admission::Held);
        }
        if epoch > self.epoch {
            if !first {
                return Ok(Admission::NextBatch);
            }
            let committee = epochs
                .committee(epoch)
                .ok_or(crate::error::PublisherError::MissingHandOff { epoch: self.epoch })?;
            self.hand_offs.extend(epochs.hand_offs(self.epoch, epoch)?);
            self.sent = vec![committee.genesis_round(); committee.size()];
            self.epoch = epoch;
        }
        let held = self
            .sent
            .get(reference.author as usize)
            .is_none_or(|s| reference.round <= *s);
        Ok(if held {
            Admission::Held
        } else {
            Admission::Send
        })
    }

    /// Takes `block` if the subscriber does not have it yet.
    fn admit(&mut self, reference: &BlockRef) -> bool {
        match self.sent.get_mut(reference.author as usize) {
            Some(sent) if reference.round > *sent => {
                *sent = reference.round;
                true
            }
            _ => false,
        }
    }

    /// The next batch: from the backlog while there is one, then from the
    /// feed, waiting for it. Cancel-safe: it awaits only while holding
    /// nothing.
    async fn next_batch(&mut self, shared: &Context) -> Result<Taken> {
        loop {
            if let Some(from) = self.backlog {
                let batch = self.read_backlog(shared, from)?;
                if !batch.blocks.is_empty() {
                    return Ok(batch);
                }
                continue;
            }
            let first = match self.feed.recv().await {
                Ok(accepted) => accepted,
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    self.rewind(self.window_floor(shared));
                    continue;
                }
                Err(broadcast::error::RecvError::Closed) => {
                    // The source is gone: nothing more will come.
                    std::future::pending::<()>().await;
                    unreachable!("pending never resolves")
                }
            };
            let pending = self.feed.len() as u64 + 1;
            let max_items = live_batch_size(pending, self.preferred);
            let mut budget = ByteBudget::new(shared.config.max_batch_bytes);
            let mut batch = Vec::new();
            let epochs = shared.source.epochs();
            // Feed blocks come in acceptance order: the first is the oldest.
            let live_since = first.at;
            let mut next = Some(first);
            while let Some(accepted) = next.take() {
                if !self.take(&epochs, &accepted, &mut budget, &mut batch)? {
                    // Over the byte cap, or of the next epoch: this block
                    // goes first next time.
                    self.backlog = Some(accepted.block.reference());
                    break;
                }
                if batch.len() >= max_items {
                    break;
                }
                next = match self.feed.try_recv() {
                    Ok(accepted) => Some(accepted),
                    Err(TryRecvError::Lagged(_)) => {
                        self.rewind(self.window_floor(shared));
                        None
                    }
                    Err(TryRecvError::Empty | TryRecvError::Closed) => None,
                };
            }
            if !batch.is_empty() {
                return Ok(Taken {
                    blocks: batch,
                    pending,
                    live_since: Some(live_since),
                    hand_offs: std::mem::take(&mut self.hand_offs),
                });
            }
        }
    }

    /// Adds a feed block to `batch` unless the subscriber has it; false if
    /// it must wait for the next batch (over the byte cap, or of the next
    /// epoch).
    fn take(
        &mut self,
        epochs: &Epochs,
        accepted: &Accepted,
        budget: &mut ByteBudget,
        batch: &mut Vec<Bytes>,
    ) -> Result<bool> {
        let block = &accepted.block;
        let reference = block.reference();
        match self.admits(epochs, block.epoch(), &reference, batch.is_empty())? {
            Admission::Held => return Ok(true),
            Admission::NextBatch => return Ok(false),
            Admission::Send => {}
        }
        if !budget.take(block.serialized().len()) {
            return Ok(false);
        }
        self.admit(&reference);
        batch.push(block.serialized().clone());
        Ok(true)
    }

    fn window_floor(&self, shared: &Context) -> Round {
        shared
            .source
            .highest_round()
            .saturating_sub(shared.config.block_backlog_rounds)
    }

    /// One batch from the source, starting at `from`. Ends the backlog when
    /// the source has nothing more.
    fn read_backlog(&mut self, shared: &Context, mut from: BlockRef) -> Result<Taken> {
        let highest = shared.source.highest_round();
        let size = self.sent.len() as u64;
        let pending = (highest + 1).saturating_sub(from.round) * size;
        let epochs = shared.source.epochs();
        let max_items = batch_size(pending, self.preferred);
        let mut budget = ByteBudget::new(shared.config.max_batch_bytes);
        let mut batch = Vec::new();
        while batch.len() < max_items {
            let chunk = shared.source.scan_blocks(from, highest, SCAN_CHUNK)?;
            let exhausted = chunk.len() < SCAN_CHUNK;
            for (reference, bytes) in chunk {
                let epoch = epochs.of_round(reference.round);
                match self.admits(&epochs, epoch, &reference, batch.is_empty())? {
                    Admission::Held => {}
                    Admission::NextBatch => {
                        self.backlog = Some(reference);
                        return Ok(self.history(batch, pending));
                    }
                    Admission::Send => {
                        if batch.len() >= max_items || !budget.take(bytes.len()) {
                            self.backlog = Some(reference);
                            return Ok(self.history(batch, pending));
                        }
                        self.admit(&reference);
                        batch.push(bytes);
                    }
                }
                from = reference.successor();
            }
            if exhausted {
                self.backlog = None;
                return Ok(self.history(batch, pending));
            }
        }
        self.backlog = Some(from);
        Ok(self.history(batch, pending))
    }

    /// A batch read from the source, with the hand-offs owed once it has
    /// blocks.
    fn history(&mut self, blocks: Vec<Bytes>, pending: u64) -> Taken {
        let hand_offs = if blocks.is_empty() {
            Vec::new()
        } else {
            std::mem::take(&mut self.hand_offs)
        };
        Taken {
            blocks,
            pending,
            live_since: None,
            hand_offs,
        }
    }
}

/// What a block stream does with a block.
enum Admission {
    /// The subscriber has it, or has left its epoch.
    Held,
    /// It goes in this batch.
    Send,
    /// It is of a later epoch: it starts the next batch.
    NextBatch,
}

/// Most blocks in one live batch: the lag rule's largest batch.
const MAX_LIVE_BATCH: usize = 100;

/// How many of the `pending` feed blocks go in the next response: all of
/// them, up to [`MAX_LIVE_BATCH`] and the subscriber's hint. They were all
/// accepted already (a round arrives at once), so splitting them by the lag
/// rule would only hold the last ones back behind the responses before
/// them: at the mainnet profile, a round went out in about 25 responses,
/// and the per-response work of 20 subscribers delayed its last blocks by
/// milliseconds (`docs/benchmarks.md`). The lag rule still sizes backlog
/// reads.
fn live_batch_size(pending: u64, preferred: u32) -> usize {
    let all = usize::try_from(pending)
        .unwrap_or(usize::MAX)
        .min(MAX_LIVE_BATCH);
    if preferred == 0 {
        all
    } else {
        all.min(preferred as usize)
    }
}

/// One batch of blocks, with what the metrics need.
struct Taken {
    blocks: Vec<Bytes>,
    /// Blocks the subscriber was behind before this batch.
    pending: u64,
    /// When the oldest block was accepted, for blocks from the live feed.
    live_since: Option<Instant>,
    /// The hand-offs the subscriber needs before these blocks.
    hand_offs: Vec<Bytes>,
}

/// The block stream, for [`session::run`](crate::session::run).
pub(crate) struct BlockStream;

impl StreamKind for BlockStream {
    const SERVICE: &'static str = metrics::BLOCKS;
    type Request = BlockStreamRequest;
    type Response = BlockStreamResponse;
    type Start = StartBlockStream;
    type Cursor = Cursor;

    fn command(request: BlockStreamRequest) -> Option<Command<StartBlockStream>> {
        match request.command? {
            block_stream_request::Command::Start(start) => Some(Command::Start(start)),
            block_stream_request::Command::Stop(_) => Some(Command::Stop),
        }
    }

    fn start(shared: &Context, start: StartBlockStream) -> Result<Cursor, (Status, EndReason)> {
        Cursor::start(shared, start).map_err(|status| (status, EndReason::InvalidArgument))
    }

    async fn next_batch(
        cursor: &mut Cursor,
        shared: &Arc<Context>,
    ) -> Result<Batch<BlockStreamResponse>> {
        let Taken {
            blocks,
            pending,
            live_since,
            hand_offs,
        } = cursor.next_batch(shared).await?;
        Ok(Batch {
            items: blocks.len(),
            bytes: blocks.iter().chain(&hand_offs).map(|b| b.len()).sum(),
            lag: pending,
            live_since,
            // The session sets the heads.
            response: BlockStreamResponse {
                blocks,
                epoch_changes: hand_offs,
                ..BlockStreamResponse::default()
            },
        })
    }

    fn set_highest(response: &mut BlockStreamResponse, heads: Heads) {
        response.highest_commit_index = heads.highest_commit_index;
        response.highest_certified_checkpoint = heads.highest_certified_checkpoint;
    }

    fn heartbeat(heads: Heads) -> BlockStreamResponse {
        let mut response = BlockStreamResponse::default();
        Self::set_highest(&mut response, heads);
        response
    }

    fn items_sent(metrics: &PublisherMetrics) -> &IntCounterVec {
        &metrics.blocks_sent
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::certifier::Certifier;
    use crate::config::PublisherConfig;
    use crate::source::StoreSource;
    use crate::ConsensusSource;
    use dagstream_sim::{generate, GenesisParams, Profile, Simulator};
    use dagstream_store::MemStore;
    use dagstream_types::{BlockLimits, Committee};
    use std::time::Duration;
    use tokio::sync::watch;

    /// Serialize once: every subscriber on the live tail is sent the very
    /// bytes the validator signed, shared, not a copy or a re-encoding.
    #[tokio::test]
    async fn every_live_subscriber_is_sent_the_signed_bytes_themselves() {
        let (genesis, keys) = generate(&GenesisParams {
            authorities: 4,
            round_interval_ms: 100,
            genesis_time_ms: 0,
            gc_depth_rounds: 50,
            seed: 5,
        });
        let committee = Arc::new(Committee::new(genesis).unwrap());
        let mut sim = Simulator::new(
            committee.clone(),
            keys,
            Profile::Small.sim_config(5),
            &BlockLimits::default(),
        )
        .unwrap();
        let source = Arc::new(StoreSource::new(Arc::new(MemStore::new()), committee).unwrap());
        let dyn_source: Arc<dyn ConsensusSource> = source.clone();
        let config = PublisherConfig::default();
        let shared = Context::new(
            dyn_source.clone(),
            config.clone(),
            PublisherMetrics::new(&prometheus::Registry::new()).unwrap(),
            Arc::new(Certifier::new(dyn_source, &config)),
            watch::channel(false).1,
            None,
        );
        let start = || StartBlockStream {
            highest_round_per_authority: vec![0; 4],
            preferred_batch_size: 0,
            epoch: None,
        };
        let mut cursors = [start(), start()].map(|s| Cursor::start(&shared, s).unwrap());
        for cursor in &mut cursors {
            // Reads the (empty) backlog, then waits on the feed.
            let waiting = tokio::time::timeout(Duration::ZERO, cursor.next_batch(&shared)).await;
            assert!(waiting.is_err(), "nothing to send before the round");
        }
        let output = sim.produce_round().unwrap();
        source.write(sim.batch_for(&output)).unwrap();
        for cursor in &mut cursors {
            let taken = cursor.next_batch(&shared).await.unwrap();
            assert!(taken.live_since.is_some(), "from the live feed");
            assert_eq!(taken.blocks.len(), output.blocks.len());
            for (sent, signed) in taken.blocks.iter().zip(&output.blocks) {
                assert_eq!(sent.as_ptr(), signed.serialized().as_ptr());
                assert_eq!(sent.len(), signed.serialized().len());
            }
        }
    }

    #[test]
    fn a_live_batch_takes_what_is_pending_up_to_the_cap_and_the_hint() {
        assert_eq!(live_batch_size(1, 0), 1);
        assert_eq!(live_batch_size(37, 0), 37);
        assert_eq!(live_batch_size(100, 0), 100);
        assert_eq!(live_batch_size(4_096, 0), MAX_LIVE_BATCH);
        assert_eq!(live_batch_size(37, 7), 7);
        assert_eq!(live_batch_size(3, 7), 3);
    }
}
