//! [`Sink`]: reads persisted commits from the observer's store, after the
//! log's tail, and appends them in batches; after a failure it reads the
//! tail again, so that it resumes exactly where the log ends.

use crate::config::SinkConfig;
use crate::error::{Result, SinkError};
use crate::log::{CommitLog, Record};
use crate::metrics::SinkMetrics;
use bytes::Bytes;
use dagstream_observer::delivery::Delivery;
use dagstream_observer::{DeliveredSubDag, ObserverStatus};
use dagstream_store::Store;
use dagstream_types::CommitIndex;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use tracing::{info, warn};

/// Meta key, in the observer's store, of its sink writer id.
pub const WRITER_ID_KEY: &str = "sink/writer";

/// Backoff after a failure: from 100 ms, doubling, to 10 s.
const BACKOFF_INITIAL: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// Commits a feed holds at most ([`Sink::fed_by`]), and the sink keeps
/// taken from it: encoded commits are about a kilobyte, so a few MB; five
/// minutes of the chain live at the mainnet profile, seconds of catch-up.
pub const FEED_CAPACITY: usize = 4096;

/// How long the sink waits for a persisted commit to come through the
/// feed before it reads it from the store: commits are delivered right
/// after they persist, unless the consumer stalls (and a stalled consumer
/// soon stalls the node, whose queue for it is bounded).
const FEED_GRACE: Duration = Duration::from_secs(1);

/// Turns a delivered commit into the bytes the log keeps (the binary's:
/// the JSON object of an `--output` line).
pub type Encoder = Arc<dyn Fn(&DeliveredSubDag) -> Vec<u8> + Send + Sync>;

/// This observer's writer id, kept in its store: the same across restarts,
/// another for another data dir.
pub fn writer_id(store: &dyn Store) -> Result<String> {
    Ok(dagstream_store::kept_id(store, WRITER_ID_KEY)?)
}

/// How far the sink is, for `/status`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SinkProgress {
    /// The last commit the log has (`None` until its tail is read).
    pub commit: Option<CommitIndex>,
    /// The last failure, until an append succeeds again.
    pub error: Option<String>,
}

/// Delivers an observer's persisted commits into a [`CommitLog`].
pub struct Sink<L> {
    log: L,
    store: Arc<dyn Store>,
    encode: Encoder,
    writer: String,
    batch: usize,
    takeover: bool,
    metrics: SinkMetrics,
    /// Commits as they were delivered, already encoded ([`Sink::fed_by`]).
    feed: Option<mpsc::Receiver<Record>>,
    /// Taken from the feed, not appended yet; in index order.
    fed: VecDeque<Record>,
}

impl<L: CommitLog> Sink<L> {
    pub fn new(
        log: L,
        store: Arc<dyn Store>,
        encode: Encoder,
        writer: String,
        config: &SinkConfig,
        metrics: SinkMetrics,
    ) -> Self {
        Sink {
            log,
            store,
            encode,
            writer,
            batch: config.batch.max(1),
            takeover: config.takeover,
            metrics,
            feed: None,
            fed: VecDeque::new(),
        }
    }

    /// Takes commits as the observer delivers them, encoded, from `feed`:
    /// a sink that keeps up then appends them without reading the store.
    /// Whatever the feed misses (it is bounded: a sender drops what does
    /// not fit) is read from the store. A commit delivered is persisted.
    pub fn fed_by(mut self, feed: mpsc::Receiver<Record>) -> Self {
        self.feed = Some(feed);
        self
    }

    /// Appends every commit persisted (as `status` says), in order, until
    /// `shutdown`. Transient failures are retried with a backoff; any other
    /// ends the sink with it.
    pub async fn run(
        mut self,
        mut status: watch::Receiver<ObserverStatus>,
        progress: watch::Sender<SinkProgress>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<()> {
        let mut backoff = BACKOFF_INITIAL;
        loop {
            let session = tokio::select! {
                _ = shutdown.changed() => return Ok(()),
                ended = self.session(&mut status, &progress) => ended,
            };
            let err = match session {
                Ok(()) => return Ok(()),
                Err(err) => err,
            };
            self.metrics.errors.with_label_values(&[err.name()]).inc();
            progress.send_modify(|p| p.error = Some(err.to_string()));
            if !err.is_transient() {
                return Err(err);
            }
            warn!(cause = %err, retry_in = ?backoff, "the sink's log failed; reading its tail again");
            tokio::select! {
                _ = shutdown.changed() => return Ok(()),
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(BACKOFF_MAX);
        }
    }

    /// Reads the log's tail, then appends from there until an append fails
    /// (or the observer stops: `Ok`).
    async fn session(
        &mut self,
        status: &mut watch::Receiver<ObserverStatus>,
        progress: &watch::Sender<SinkProgress>,
    ) -> Result<()> {
        let after = match self.log.tail().await? {
            None => 0,
            Some(tail) if tail.writer == self.writer => tail.index,
            Some(tail) if self.takeover => {
                info!(holder = %tail.writer, commit = tail.index, "taking the sink's subject over");
                tail.index
            }
            Some(tail) => {
                return Err(SinkError::AnotherWriter {
                    log: self.log.name(),
                    holder: tail.writer,
                    writer: self.writer.clone(),
                })
            }
        };
        // Taken over once: from now on the log's last writer is this one.
        self.takeover = false;
        let stored = self.store.last_commit_index()?;
        if after > stored {
            return Err(SinkError::Ahead {
                log: after,
                store: stored,
            });
        }
        self.acknowledged(after, progress);
        let mut position = after;
        let mut delivery = Delivery::new(after, 0);
        loop {
            let next = position + 1;
            let fed_tip = self.fed.back().map_or(0, |r| r.index);
            let persisted = status.borrow_and_update().local_highest_commit.max(fed_tip);
            self.metrics
                .lag
                .set(persisted.saturating_sub(position) as i64);
            if persisted < next {
                let feed = self.feed.as_mut();
                tokio::select! {
                    changed = status.changed() => if changed.is_err() {
                        // The observer has stopped: nothing more will persist.
                        return Ok(());
                    },
                    Some(record) = async { feed?.recv().await } => keep_fed(&mut self.fed, record, next),
                }
                continue;
            }
            let count = (persisted - next + 1).min(self.batch as u64) as usize;
            let mut records = self.take_fed(next, count);
            if records.is_empty() && self.fed.is_empty() {
                // Persisted, and not delivered yet: it comes through the
                // feed, unless the consumer is stalled.
                if let Some(feed) = self.feed.as_mut() {
                    match tokio::time::timeout(FEED_GRACE, feed.recv()).await {
                        Ok(Some(record)) => {
                            keep_fed(&mut self.fed, record, next);
                            continue;
                        }
                        Ok(None) => self.feed = None,
                        Err(_) => {}
                    }
                }
            }
            if records.is_empty() {
                // The feed missed these (or there is none): from the store,
                // up to the first commit the feed has.
                let missed = self.fed.front().map_or(count as u64, |r| r.index - next);
                if delivery.delivered() != position {
                    delivery = Delivery::new(position, 0);
                }
                let read_count = (count as u64).min(missed) as usize;
                let (read, taken) = read(&self.store, &self.encode, delivery, read_count).await?;
                records = read;
                delivery = taken;
            }
            self.log.append(&records).await?;
            self.metrics.appended.inc_by(records.len() as u64);
            position = records.last().map_or(position, |r| r.index);
            self.acknowledged(position, progress);
        }
    }

    /// Up to `count` consecutive fed commits from `next` on; older ones are
    /// dropped, and a later one stays for its turn.
    fn take_fed(&mut self, next: CommitIndex, count: usize) -> Vec<Record> {
        if let Some(feed) = self.feed.as_mut() {
            // Bounded: what does not fit stays in the channel (whose sender
            // then drops what does not fit there), and is read from the
            // store in its turn.
            let mut drained = 0;
            while drained < FEED_CAPACITY {
                let Ok(record) = feed.try_recv() else { break };
                drained += 1;
                keep_fed(&mut self.fed, record, next);
            }
        }
        while self.fed.front().is_some_and(|r| r.index < next) {
            self.fed.pop_front();
        }
        let mut taken = Vec::with_capacity(count);
        while taken.len() < count
            && self
                .fed
                .front()
                .is_some_and(|r| r.index == next + taken.len() as u64)
        {
            taken.extend(self.fed.pop_front());
        }
        taken
    }

    fn acknowledged(&self, commit: CommitIndex, progress: &watch::Sender<SinkProgress>) {
        self.metrics.commit.set(commit as i64);
        progress.send_modify(|p| {
            p.commit = Some(commit);
            p.error = None;
        });
    }
}

/// Keeps a fed commit for its turn: not one already appended (a consumer
/// that resumed from further back), nor one past [`FEED_CAPACITY`] (read
/// from the store in its turn).
fn keep_fed(fed: &mut VecDeque<Record>, record: Record, next: CommitIndex) {
    let in_order = fed.back().is_none_or(|last| record.index > last.index);
    if record.index >= next && in_order && fed.len() < FEED_CAPACITY {
        fed.push_back(record);
    }
}

/// The next `count` persisted commits after `delivery`'s, encoded, read
/// off the runtime.
async fn read(
    store: &Arc<dyn Store>,
    encode: &Encoder,
    mut delivery: Delivery,
    count: usize,
) -> Result<(Vec<Record>, Delivery)> {
    let (store, encode) = (store.clone(), encode.clone());
    tokio::task::spawn_blocking(move || {
        let mut records = Vec::with_capacity(count);
        for _ in 0..count {
            let delivered = delivery.take_next(store.as_ref())?;
            records.push(Record {
                index: delivered.index(),
                payload: Bytes::from(encode(&delivered)),
            });
        }
        Ok((records, delivery))
    })
    .await
    .expect("reading the store does not panic")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_feed_keeps_only_commits_to_come_in_order_and_at_most_its_capacity() {
        let record = |index| Record {
            index,
            payload: Bytes::new(),
        };
        let mut fed = VecDeque::new();
        for index in [4, 5, 5, 7, 6] {
            keep_fed(&mut fed, record(index), 5);
        }
        // 4 was appended already, the second 5 repeats, 6 comes after 7;
        // the gap before 7 is the store's to fill.
        let kept: Vec<CommitIndex> = fed.iter().map(|r| r.index).collect();
        assert_eq!(kept, [5, 7]);
        for index in 8..8 + FEED_CAPACITY as u64 {
            keep_fed(&mut fed, record(index), 5);
        }
        assert_eq!(fed.len(), FEED_CAPACITY);
        assert_eq!(fed.back().unwrap().index, FEED_CAPACITY as u64 + 5);
    }
}
