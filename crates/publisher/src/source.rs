//! The seam between consensus and the publisher.
//!
//! A [`ConsensusSource`] is anything that can serve the streams: a validator
//! (the simulated committee writing to its store), an observer relaying what
//! it verified, or a real consensus engine. It gives blocks by ref and in
//! `(round, author)` order, commits by index, the highest commit index, and
//! a live feed of newly accepted blocks.

use crate::epochs::Epochs;
use crate::error::Result;
use bytes::Bytes;
use dagstream_store::{
    randomness_key, Store, WriteBatch, EPOCH_CHANGE_PREFIX, HIGHEST_CERTIFIED_CHECKPOINT_KEY,
};
use dagstream_types::{BlockRef, CommitIndex, Committee, Round, TrustedCommit, VerifiedBlock};
use std::collections::{BTreeMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Instant;
use tokio::sync::broadcast;

/// What the publisher needs from consensus.
///
/// Contract: a block is readable through the getters before it is sent on
/// the feed, and an author's blocks are accepted in round order (each
/// references its author's previous block). Together these let a stream
/// subscribe to the feed, then read the store, and miss nothing. Commits
/// have no feed: the streams follow them through the certifier, which
/// counts the votes in the blocks.
pub trait ConsensusSource: Send + Sync + 'static {
    /// The genesis committee: the chain's identity.
    fn committee(&self) -> &Arc<Committee>;

    /// The epochs so far, each committee with the hand-off that ended it.
    /// A hand-off is in it before any block or commit of the next epoch is
    /// readable.
    fn epochs(&self) -> Arc<Epochs>;

    /// The exact `SignedBlock` bytes of a block.
    fn block(&self, reference: &BlockRef) -> Result<Option<Bytes>>;

    /// The bytes of each of `references`, in their order: a commit's blocks
    /// at once.
    fn blocks(&self, references: &[BlockRef]) -> Result<Vec<Option<Bytes>>> {
        references.iter().map(|r| self.block(r)).collect()
    }

    /// Blocks with ref `>= from` and round `<= to_round`, in `(round,
    /// author, digest)` order, at most `limit`.
    fn scan_blocks(
        &self,
        from: BlockRef,
        to_round: Round,
        limit: usize,
    ) -> Result<Vec<(BlockRef, Bytes)>>;

    fn commit(&self, index: CommitIndex) -> Result<Option<TrustedCommit>>;

    /// The randomness rounds commit `index` generated, as stored (BCS of a
    /// `Vec<RandomnessOutput>`); `None` if it generated none.
    fn randomness(&self, index: CommitIndex) -> Result<Option<Bytes>>;

    /// The lowest commit index still retained (1 when nothing was pruned).
    fn lowest_commit_index(&self) -> Result<CommitIndex>;

    /// The highest commit decided so far; 0 before the first.
    fn highest_commit_index(&self) -> CommitIndex;

    /// The highest checkpoint certified so far, if any.
    fn highest_certified_checkpoint(&self) -> Option<u64>;

    /// The highest round of any accepted block.
    fn highest_round(&self) -> Round;

    /// A receiver of every block accepted after this call.
    fn subscribe(&self) -> broadcast::Receiver<Accepted>;
}

/// A block on the feed, with the moment the source accepted it (made it
/// durable and announced it): live latency is measured from there.
#[derive(Clone, Debug)]
pub struct Accepted {
    pub block: VerifiedBlock,
    pub at: Instant,
}

/// The stored highest certified checkpoint, plus one (0: none, or a value
/// of the wrong size, which only a foreign writer makes: the source then
/// reports none rather than guess).
fn certified_after(stored: Option<&[u8]>) -> u64 {
    stored
        .and_then(|bytes| <[u8; 8]>::try_from(bytes).ok())
        .map_or(0, |bytes| u64::from_le_bytes(bytes).saturating_add(1))
}

/// Feed blocks buffered before the slowest receiver lags (and falls back
/// to reading the store). While any receiver lags, the ring keeps this many
/// blocks alive, so it bounds the feed's memory: 4,096 blocks are about
/// 80 MB at the mainnet profile (160 MB at stress), and 40 rounds of a
/// 100-authority committee, seconds of slack for a receiver.
const FEED_CAPACITY: usize = 4_096;

/// Blocks read per store scan while warming the cache: bounds one read.
const WARM_UP_CHUNK: usize = 1_000;

/// A [`ConsensusSource`] over a [`Store`], for nodes that persist what they
/// accept: the validator and relaying observers.
///
/// The node hands each batch to [`StoreSource::write`], which makes it
/// durable and then announces it. The last `cache_rounds` rounds of blocks and
/// the last `cache_commits` commits stay in memory, so the live tail is
/// served to every subscriber from one shared copy, without store reads.
pub struct StoreSource {
    store: Arc<dyn Store>,
    committee: Arc<Committee>,
    epochs: RwLock<Arc<Epochs>>,
    /// The committee of a hand-off about to be written, as its writer
    /// validated it ([`StoreSource::expect_epoch`]).
    expected_epoch: std::sync::Mutex<Option<Arc<Committee>>>,
    feed: broadcast::Sender<Accepted>,
    cache: RwLock<Cache>,
    cache_rounds: Round,
    cache_commits: usize,
    highest_commit: AtomicU64,
    highest_round: AtomicU64,
    /// The highest certified checkpoint plus one; 0 for none.
    certified_after: AtomicU64,
}

struct Cache {
    blocks: BTreeMap<BlockRef, Bytes>,
    /// Every block the store holds of rounds `>= complete_from` is in
    /// `blocks`: loaded at creation or published since, and not evicted.
    complete_from: Round,
    commits: VecDeque<TrustedCommit>,
}

impl StoreSource {
    /// Default rounds of blocks cached: the tail that live subscribers and
    /// Starts near the tip read. 50 rounds of a 100-authority mainnet
    /// profile are about 25 MB.
    pub const DEFAULT_CACHE_ROUNDS: Round = 50;
    /// Default commits cached: about as many as 50 rounds decide.
    pub const DEFAULT_CACHE_COMMITS: usize = 64;

    pub fn new(store: Arc<dyn Store>, committee: Arc<Committee>) -> Result<Self> {
        Self::with_cache(
            store,
            committee,
            Self::DEFAULT_CACHE_ROUNDS,
            Self::DEFAULT_CACHE_COMMITS,
        )
    }

    pub fn with_cache(
        store: Arc<dyn Store>,
        committee: Arc<Committee>,
        cache_rounds: Round,
        cache_commits: usize,
    ) -> Result<Self> {
        let highest_commit = store.last_commit_index()?;
        let highest_round = store.highest_block_round()?.unwrap_or(0);
        let epochs = Epochs::load(store.as_ref(), committee.clone())?;
        let certified = certified_after(
            store
                .read_meta(HIGHEST_CERTIFIED_CHECKPOINT_KEY)?
                .as_deref(),
        );
        // Warm the cache with the recent tail, so that a restarted node
        // serves it from memory at once.
        let keep_from = highest_round.saturating_sub(cache_rounds) + 1;
        let mut blocks = BTreeMap::new();
        let mut from = BlockRef::round_start(keep_from);
        loop {
            let chunk = store.scan_blocks(from, highest_round, WARM_UP_CHUNK)?;
            let full = chunk.len() == WARM_UP_CHUNK;
            let Some((last, _)) = chunk.last() else { break };
            from = last.successor();
            blocks.extend(chunk);
            if !full {
                break;
            }
        }
        let first_commit = (highest_commit + 1)
            .saturating_sub(cache_commits as u64)
            .max(1);
        let commits: VecDeque<TrustedCommit> =
            store.scan_commits(first_commit, cache_commits)?.into();
        let (feed, _) = broadcast::channel(FEED_CAPACITY);
        Ok(StoreSource {
            store,
            committee,
            epochs: RwLock::new(Arc::new(epochs)),
            expected_epoch: std::sync::Mutex::new(None),
            feed,
            cache: RwLock::new(Cache {
                blocks,
                complete_from: keep_from,
                commits,
            }),
            cache_rounds,
            cache_commits,
            highest_commit: AtomicU64::new(highest_commit),
            highest_round: AtomicU64::new(highest_round),
            certified_after: AtomicU64::new(certified),
        })
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// The next write holds a hand-off to `committee`, which its writer
    /// validated: the source takes it as it is instead of validating it
    /// again.
    pub fn expect_epoch(&self, committee: Arc<Committee>) {
        *self.expected_epoch.lock().expect("lock poisoned") = Some(committee);
    }

    /// Blocks and commits held in the tail cache: at most `cache_rounds`
    /// rounds of blocks and `cache_commits` commits, whatever the chain's
    /// length.
    pub fn cached(&self) -> (usize, usize) {
        let cache = self.cache.read().expect("cache lock poisoned");
        (cache.blocks.len(), cache.commits.len())
    }

    /// Writes `batch` to the store atomically, then announces exactly what
    /// it holds (caches the tail, sends the blocks on the feed): nothing is
    /// announced before it is durable, and nothing durable goes
    /// unannounced. Blocks must come in acceptance order, from one writer at
    /// a time; a block the store already held is announced again, which
    /// streams and the certifier ignore.
    pub fn write(&self, batch: WriteBatch) -> Result<()> {
        // Cheap: blocks and commits share their contents.
        let blocks = batch.blocks().to_vec();
        let commits = batch.commits().to_vec();
        let certified = batch
            .meta()
            .iter()
            .find(|(key, _)| key == HIGHEST_CERTIFIED_CHECKPOINT_KEY)
            .map(|(_, value)| certified_after(Some(value)));
        let hand_offs: Vec<Bytes> = batch
            .meta()
            .iter()
            .filter(|(key, _)| key.starts_with(EPOCH_CHANGE_PREFIX))
            .map(|(_, value)| value.clone())
            .collect();
        self.store.write(batch)?;
        // The next epoch's committee is known before any of its blocks is
        // announced.
        if !hand_offs.is_empty() {
            let expected = self.expected_epoch.lock().expect("lock poisoned").take();
            let mut epochs = self.epochs.write().expect("epochs lock poisoned");
            let mut next = Epochs::clone(&epochs);
            for bytes in hand_offs {
                next.push_validated(bytes, expected.clone())?;
            }
            *epochs = Arc::new(next);
        }
        self.publish(&blocks, &commits);
        if let Some(certified) = certified {
            self.certified_after.fetch_max(certified, Ordering::AcqRel);
        }
        Ok(())
    }

    /// Announces blocks and commits that are already durable in the store:
    /// caches them, advances the highest round and commit, and sends the
    /// blocks on the feed. Blocks must come in acceptance order. Only
    /// [`StoreSource::write`] calls it, so that nothing is announced before
    /// the store has it.
    fn publish(&self, blocks: &[VerifiedBlock], commits: &[TrustedCommit]) {
        {
            let mut cache = self.cache.write().expect("cache lock poisoned");
            for block in blocks {
                cache
                    .blocks
                    .insert(block.reference(), block.serialized().clone());
            }
            if let Some(highest) = blocks.iter().map(|b| b.round()).max() {
                let keep_from = highest.saturating_sub(self.cache_rounds) + 1;
                if keep_from > cache.complete_from {
                    cache.blocks = cache.blocks.split_off(&BlockRef::round_start(keep_from));
                    cache.complete_from = keep_from;
                }
            }
            for commit in commits {
                cache.commits.push_back(commit.clone());
                if cache.commits.len() > self.cache_commits {
                    cache.commits.pop_front();
                }
            }
        }
        if let Some(highest) = blocks.iter().map(|b| b.round()).max() {
            self.highest_round.fetch_max(highest, Ordering::AcqRel);
        }
        if let Some(last) = commits.last() {
            self.highest_commit
                .fetch_max(last.index(), Ordering::AcqRel);
        }
        // No receiver is not an error: nobody is subscribed right now.
        let at = Instant::now();
        for block in blocks {
            let _ = self.feed.send(Accepted {
                block: block.clone(),
                at,
            });
        }
    }
}

impl ConsensusSource for StoreSource {
    fn committee(&self) -> &Arc<Committee> {
        &self.committee
    }

    fn epochs(&self) -> Arc<Epochs> {
        self.epochs.read().expect("epochs lock poisoned").clone()
    }

    fn block(&self, reference: &BlockRef) -> Result<Option<Bytes>> {
        if let Some(bytes) = self
            .cache
            .read()
            .expect("cache lock poisoned")
            .blocks
            .get(reference)
        {
            return Ok(Some(bytes.clone()));
        }
        Ok(self.store.read_block(reference)?)
    }

    fn blocks(&self, references: &[BlockRef]) -> Result<Vec<Option<Bytes>>> {
        let mut out: Vec<Option<Bytes>> = {
            let cache = self.cache.read().expect("cache lock poisoned");
            references
                .iter()
                .map(|r| cache.blocks.get(r).cloned())
                .collect()
        };
        // The rest in one store read: a commit's blocks were written
        // together, so they lie together.
        let missing: Vec<usize> = (0..out.len()).filter(|&i| out[i].is_none()).collect();
        if !missing.is_empty() {
            let refs: Vec<BlockRef> = missing.iter().map(|&i| references[i]).collect();
            for (i, bytes) in missing.into_iter().zip(self.store.read_blocks(&refs)?) {
                out[i] = bytes;
            }
        }
        Ok(out)
    }

    fn scan_blocks(
        &self,
        from: BlockRef,
        to_round: Round,
        limit: usize,
    ) -> Result<Vec<(BlockRef, Bytes)>> {
        if from.round > to_round {
            return Ok(Vec::new());
        }
        {
            let cache = self.cache.read().expect("cache lock poisoned");
            if from.round >= cache.complete_from {
                return Ok(cache
                    .blocks
                    .range(from..=BlockRef::round_end(to_round))
                    .take(limit)
                    .map(|(r, b)| (*r, b.clone()))
                    .collect());
            }
        }
        Ok(self.store.scan_blocks(from, to_round, limit)?)
    }

    fn commit(&self, index: CommitIndex) -> Result<Option<TrustedCommit>> {
        {
            let cache = self.cache.read().expect("cache lock poisoned");
            if let Some(first) = cache.commits.front() {
                if index >= first.index() {
                    if let Some(commit) = cache.commits.get((index - first.index()) as usize) {
                        return Ok(Some(commit.clone()));
                    }
                }
            }
        }
        Ok(self.store.read_commit(index)?)
    }

    fn randomness(&self, index: CommitIndex) -> Result<Option<Bytes>> {
        Ok(self.store.read_meta(&randomness_key(index))?)
    }

    fn lowest_commit_index(&self) -> Result<CommitIndex> {
        Ok(match self.store.commit_range()? {
            Some((lowest, _)) => lowest,
            None => self.store.last_commit_index()? + 1,
        })
    }

    fn highest_commit_index(&self) -> CommitIndex {
        self.highest_commit.load(Ordering::Acquire)
    }

    fn highest_certified_checkpoint(&self) -> Option<u64> {
        self.certified_after.load(Ordering::Acquire).checked_sub(1)
    }

    fn highest_round(&self) -> Round {
        self.highest_round.load(Ordering::Acquire)
    }

    fn subscribe(&self) -> broadcast::Receiver<Accepted> {
        self.feed.subscribe()
    }
}
