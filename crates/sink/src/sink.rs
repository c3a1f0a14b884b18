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
use dagstream_store::{Store, WriteBatch};
use dagstream_types::CommitIndex;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tracing::{info, warn};

/// Meta key, in the observer's store, of its sink writer id.
pub const WRITER_ID_KEY: &str = "sink/writer";

/// Backoff after a failure: from 100 ms, doubling, to 10 s.
const BACKOFF_INITIAL: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// Turns a delivered commit into the bytes the log keeps (the binary's:
/// the JSON object of an `--output` line).
pub type Encoder = Arc<dyn Fn(&DeliveredSubDag) -> Vec<u8> + Send + Sync>;

/// This observer's writer id, kept in its store: the same across restarts,
/// another for another data dir.
pub fn writer_id(store: &dyn Store) -> Result<String> {
    if let Some(id) = store.read_meta(WRITER_ID_KEY)? {
        return Ok(String::from_utf8_lossy(&id).into_owned());
    }
    let id = hex::encode(rand::random::<[u8; 16]>());
    let mut batch = WriteBatch::new();
    batch.put_meta(WRITER_ID_KEY, Bytes::from(id.clone()));
    store.write(batch)?;
    Ok(id)
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
        }
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
        let mut delivery = Delivery::new(after, 0);
        loop {
            let next = delivery.delivered() + 1;
            let persisted = status.borrow_and_update().local_highest_commit;
            self.metrics
                .lag
                .set(persisted.saturating_sub(next - 1) as i64);
            if persisted < next {
                if status.changed().await.is_err() {
                    // The observer has stopped: nothing more will persist.
                    return Ok(());
                }
                continue;
            }
            let count = (persisted - next + 1).min(self.batch as u64) as usize;
            let (records, taken) = read(&self.store, &self.encode, delivery, count).await?;
            delivery = taken;
            self.log.append(&records).await?;
            self.metrics.appended.inc_by(records.len() as u64);
            self.acknowledged(delivery.delivered(), progress);
        }
    }

    fn acknowledged(&self, commit: CommitIndex, progress: &watch::Sender<SinkProgress>) {
        self.metrics.commit.set(commit as i64);
        progress.send_modify(|p| {
            p.commit = Some(commit);
            p.error = None;
        });
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
