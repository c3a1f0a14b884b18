//! Which commits are certified, and by which blocks.
//!
//! A commit is *certified* once blocks of quorum stake carry its
//! [`CommitRef`] in their `commit_votes`. Only certified commits are
//! streamed, each batch with the blocks that certify its last commit, so an
//! observer needs to check only those blocks' signatures: the hash chain
//! covers the rest.
//!
//! Live, the certifier tallies the votes of every block on the source's
//! feed. For older commits (after a restart, or for a subscriber catching up
//! from far behind) it searches the blocks after the commit's leader. Found
//! certificates are shared through a bounded cache of block *refs*: a
//! certificate never keeps block bytes alive, so the cache costs at most
//! `certificate_cache_len × committee size` refs whatever the block sizes,
//! and the bytes are read from the source when a batch is built.

use crate::config::PublisherConfig;
use crate::error::Result;
use crate::source::{Accepted, ConsensusSource};
use dagstream_types::{
    AuthorityIndex, BlockRef, CommitIndex, CommitRef, Committee, StakeAggregator, VerifiedBlock,
};
use lru::LruCache;
use std::collections::BTreeMap;
use std::num::NonZeroUsize;
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{broadcast, watch};
use tracing::{debug, warn};

/// The blocks that certify one commit.
#[derive(Debug)]
pub struct Certificate {
    pub commit: CommitRef,
    /// The blocks whose votes for `commit` reach a quorum, in the order
    /// they were counted.
    pub blocks: Vec<BlockRef>,
}

/// Blocks scanned per read while searching for votes: bounds memory per
/// read.
const SEARCH_CHUNK: usize = 1_000;
/// Commits below the highest for which certification is checked at start:
/// the uncertified tail is the commits of the last round or two.
const STARTUP_SEARCH_COMMITS: u64 = 64;
/// Votes for commits this far above the highest decided commit are ignored:
/// no honest block votes for a commit that was not decided, and the tally
/// must not grow without bound on such votes.
const MAX_VOTE_LEAD: u64 = 1_000;

/// Votes for one commit ref: the stake, and the blocks that carry it.
struct Tally {
    stake: StakeAggregator,
    blocks: Vec<BlockRef>,
}

impl Tally {
    fn new(committee: &Committee) -> Self {
        Tally {
            stake: StakeAggregator::new(committee),
            blocks: Vec::new(),
        }
    }

    /// Adds one block's vote; true once the quorum is reached.
    fn add(&mut self, committee: &Committee, author: AuthorityIndex, block: BlockRef) -> bool {
        if self.stake.add(author, committee) {
            self.blocks.push(block);
        }
        self.stake.reached_quorum(committee)
    }
}

pub struct Certifier {
    source: Arc<dyn ConsensusSource>,
    search_rounds: u64,
    cache: Mutex<LruCache<CommitIndex, Arc<Certificate>>>,
    /// Votes for commits not certified yet.
    pending: Mutex<BTreeMap<CommitRef, Tally>>,
    highest_certified: watch::Sender<CommitIndex>,
    /// The highest certified commit and when it was certified: a commit
    /// stream's live latency is measured from there.
    certified_at: Mutex<Option<(CommitIndex, Instant)>>,
}

impl Certifier {
    pub fn new(source: Arc<dyn ConsensusSource>, config: &PublisherConfig) -> Self {
        let cache_len =
            NonZeroUsize::new(config.certificate_cache_len).unwrap_or(NonZeroUsize::MIN);
        Certifier {
            source,
            search_rounds: config.certificate_search_rounds,
            cache: Mutex::new(LruCache::new(cache_len)),
            pending: Mutex::new(BTreeMap::new()),
            highest_certified: watch::channel(0).0,
            certified_at: Mutex::new(None),
        }
    }

    /// Follows the highest certified commit index.
    pub fn watch(&self) -> watch::Receiver<CommitIndex> {
        self.highest_certified.subscribe()
    }

    pub fn highest_certified(&self) -> CommitIndex {
        *self.highest_certified.borrow()
    }

    /// When commit `index` was certified, if it is the highest certified
    /// commit: a batch that ends there is live.
    pub fn certified_at(&self, index: CommitIndex) -> Option<Instant> {
        let latest = *self
            .certified_at
            .lock()
            .expect("certified_at lock poisoned");
        latest
            .filter(|(highest, _)| *highest == index)
            .map(|(_, at)| at)
    }

    /// Finds the highest certified commit among the latest ones, from the
    /// source's blocks. Call after subscribing to the feed, so that no vote
    /// falls between the two.
    pub fn initialize(&self) -> Result<()> {
        let highest = self.source.highest_commit_index();
        let lowest = highest.saturating_sub(STARTUP_SEARCH_COMMITS).max(1);
        for index in (lowest..=highest).rev() {
            if self.certificate(index)?.is_some() {
                self.raise(index);
                break;
            }
        }
        Ok(())
    }

    /// Tallies the votes of the feed until it closes. A lagging feed lost
    /// votes: certification is then searched for again from the source.
    pub async fn run(self: Arc<Self>, mut feed: broadcast::Receiver<Accepted>) {
        loop {
            match feed.recv().await {
                Ok(accepted) => self.on_block(&accepted.block),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    warn!(
                        missed,
                        "certifier lagged behind the feed; searching the store"
                    );
                    if let Err(err) = self.initialize() {
                        warn!(cause = %err, "certificate search failed");
                    }
                }
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    /// Counts the votes of one accepted block, for commits of its own
    /// epoch: a committee certifies only its own commits.
    pub fn on_block(&self, block: &VerifiedBlock) {
        let epochs = self.source.epochs();
        let Some(committee) = epochs.committee(block.epoch()) else {
            return;
        };
        let highest = self.source.highest_commit_index();
        let certified_now = self.highest_certified();
        let mut newly_certified = Vec::new();
        {
            let mut pending = self.pending.lock().expect("tally lock poisoned");
            for vote in block.commit_votes() {
                if vote.index <= certified_now
                    || vote.index > highest + MAX_VOTE_LEAD
                    || epochs.of_commit(vote.index) != block.epoch()
                {
                    continue;
                }
                let tally = pending
                    .entry(*vote)
                    .or_insert_with(|| Tally::new(committee));
                if tally.add(committee, block.author(), block.reference()) {
                    let tally = pending.remove(vote).expect("entry just used");
                    newly_certified.push(Certificate {
                        commit: *vote,
                        blocks: tally.blocks,
                    });
                }
            }
        }
        for certificate in newly_certified {
            // A quorum voting for a digest other than ours would mean the
            // committee and this node disagree on the chain: never stream it.
            match self.source.commit(certificate.commit.index) {
                Ok(Some(commit)) if commit.reference() == certificate.commit => {
                    let index = certificate.commit.index;
                    self.cache_insert(index, Arc::new(certificate));
                    self.raise(index);
                }
                other => warn!(
                    vote = ?certificate.commit,
                    local = ?other.map(|c| c.map(|c| c.reference())),
                    "a quorum voted for a commit this node does not have"
                ),
            }
        }
    }

    /// The certificate of commit `index`, from the cache or by searching the
    /// blocks after its leader. `None` while its votes are not all in.
    pub fn certificate(&self, index: CommitIndex) -> Result<Option<Arc<Certificate>>> {
        if let Some(found) = self.cache.lock().expect("cache lock poisoned").get(&index) {
            return Ok(Some(found.clone()));
        }
        let Some(commit) = self.source.commit(index)? else {
            return Ok(None);
        };
        let target = commit.reference();
        let epochs = self.source.epochs();
        let epoch = epochs.of_commit(index);
        let Some(committee) = epochs.committee(epoch) else {
            return Ok(None);
        };
        let first_round = commit.leader().round + 1;
        let last_round = self
            .source
            .highest_round()
            .min(commit.leader().round + self.search_rounds);
        let mut tally = Tally::new(committee);
        let mut from = BlockRef::round_start(first_round);
        while from.round <= last_round {
            let chunk = self.source.scan_blocks(from, last_round, SEARCH_CHUNK)?;
            let Some((last, _)) = chunk.last() else { break };
            from = last.successor();
            let full = chunk.len() == SEARCH_CHUNK;
            for (_, bytes) in chunk {
                let block = VerifiedBlock::decode_trusted(bytes)?;
                if block.epoch() == epoch
                    && block.commit_votes().contains(&target)
                    && tally.add(committee, block.author(), block.reference())
                {
                    let certificate = Arc::new(Certificate {
                        commit: target,
                        blocks: tally.blocks,
                    });
                    self.cache_insert(index, certificate.clone());
                    return Ok(Some(certificate));
                }
            }
            if !full {
                break;
            }
        }
        debug!(index, "no certificate yet");
        Ok(None)
    }

    /// Certificates held in the cache: at most `certificate_cache_len`.
    pub fn cached_certificates(&self) -> usize {
        self.cache.lock().expect("cache lock poisoned").len()
    }

    fn cache_insert(&self, index: CommitIndex, certificate: Arc<Certificate>) {
        self.cache
            .lock()
            .expect("cache lock poisoned")
            .put(index, certificate);
    }

    /// Raises the highest certified index, and forgets votes at or below it.
    fn raise(&self, index: CommitIndex) {
        let raised = self.highest_certified.send_if_modified(|highest| {
            if index > *highest {
                *highest = index;
                true
            } else {
                false
            }
        });
        if raised {
            *self
                .certified_at
                .lock()
                .expect("certified_at lock poisoned") = Some((index, Instant::now()));
        }
        let mut pending = self.pending.lock().expect("tally lock poisoned");
        let keep = pending.split_off(&CommitRef {
            index: index + 1,
            digest: Default::default(),
        });
        *pending = keep;
    }
}
