//! The validator node: dagstream's stand-in for a real validator.
//!
//! It runs the simulated committee against a clock, makes each block
//! durable in its store and announces it to the publisher's source
//! ([`StoreSource::write`]), and serves the block and commit streams.
//!
//! # Data flow
//! ```text
//! clock ─now_ms─▶ Simulator::produce_round_with ─each block, then the round's end─▶
//!     writer queue ─▶ group write: StoreSource::write (Store::write, then the feed)
//!     ─▶ Publisher ─▶ gRPC
//! └─ producer thread ─┘   └─ writer thread ─┘                  └ runtime ┘
//! ```
//! The producer's synchronous work (signing, the commit rule) runs on a
//! thread of its own, so the publisher's tasks never wait behind it. Each
//! block goes to the [`writer`] as soon as it is signed, which makes the
//! blocks queued so far durable in one write while the producer signs the
//! next: a block is published a signature and a sync after its round
//! starts, not after the whole round's work. A node restarted on the same
//! store continues the same chain, whatever part of a round it had
//! written.
//!
//! With a [`retention`] window, a third thread, the pruner, deletes the
//! history older than it.

use dagstream_publisher::{
    ConsensusSource, Publisher, PublisherConfig, PublisherError, PublisherHandle, StoreSource,
};
use dagstream_sim::{CommitteeKeys, RoundOutput, SimConfig, SimError, Simulator};
use dagstream_store::{Store, StoreError, WriteBatch};
use dagstream_types::{BlockLimits, CommitIndex, Committee};
use retention::ValidatorConfig;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;
use tokio::net::TcpListener;
use writer::Writer;

pub mod retention;
pub mod writer;

/// A source of the current time in Unix milliseconds. The system clock in
/// production; tests pass a clock they move.
pub type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

/// The system clock.
pub fn system_clock() -> Clock {
    Arc::new(dagstream_types::unix_time_ms)
}

/// Rounds produced per step while catching up on a schedule in the past:
/// bounds how much one step writes, and how long a stop waits.
const MAX_ROUNDS_PER_STEP: usize = 64;

/// Longest wait between two looks at the clock: a test clock may jump.
const MAX_IDLE_MS: u64 = 20;

#[derive(Debug, thiserror::Error)]
pub enum ValidatorError {
    #[error(transparent)]
    Sim(#[from] SimError),
    #[error(transparent)]
    Publisher(#[from] PublisherError),
    #[error("cannot start a validator thread: {reason}")]
    Thread { reason: String },
    #[error("the writer thread stopped")]
    WriterStopped,
    #[error("invalid validator config: {field} {reason}")]
    InvalidConfig { field: &'static str, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("commit {index} is within the retained range but missing from the store")]
    MissingCommit { index: CommitIndex },
}

/// The simulated committee bound to its source, and through it its store.
pub struct Producer {
    sim: Simulator,
    source: Arc<StoreSource>,
}

impl Producer {
    /// Continues the chain in `store`, or starts it.
    pub fn new(
        committee: Arc<Committee>,
        keys: CommitteeKeys,
        config: SimConfig,
        limits: &BlockLimits,
        store: Arc<dyn Store>,
    ) -> Result<Self, ValidatorError> {
        let source = Arc::new(StoreSource::new(store, committee.clone())?);
        Self::with_source(committee, keys, config, limits, source)
    }

    /// Continues the chain in `source`'s store, or starts it, announcing
    /// each round through `source` (for a source with its own cache sizes).
    pub fn with_source(
        committee: Arc<Committee>,
        keys: CommitteeKeys,
        config: SimConfig,
        limits: &BlockLimits,
        source: Arc<StoreSource>,
    ) -> Result<Self, ValidatorError> {
        let sim = Simulator::recover(committee, keys, config, limits, source.store().as_ref())?;
        Ok(Producer { sim, source })
    }

    pub fn source(&self) -> &Arc<StoreSource> {
        &self.source
    }

    pub fn simulator(&self) -> &Simulator {
        &self.sim
    }

    /// Produces, persists and publishes the next round, whatever the time,
    /// and returns it.
    pub fn produce_round(&mut self) -> Result<RoundOutput, ValidatorError> {
        let output = self.sim.produce_round()?;
        self.source.write(self.sim.batch_for(&output))?;
        Ok(output)
    }

    /// Produces the next round, handing each block to `writer` as soon as it
    /// is signed and the round's end after its last block.
    fn produce_round_into(&mut self, writer: &Writer) -> Result<(), ValidatorError> {
        // A send fails only once the writer has stopped on an error, which
        // `Writer::finish` reports: finish the round, then stop.
        let mut queued = Ok(());
        let output = self.sim.produce_round_with(|block| {
            if queued.is_ok() {
                let mut piece = WriteBatch::new();
                piece.add_block(block);
                queued = writer.send(piece);
            }
        })?;
        queued?;
        writer.send(self.sim.round_end_batch(&output))
    }

    /// Produces the rounds due at `now_ms`, at most a bounded number, each
    /// written at once.
    pub fn step(&mut self, now_ms: u64) -> Result<usize, ValidatorError> {
        self.step_by(now_ms, Self::produce_round)
    }

    fn step_by<T>(
        &mut self,
        now_ms: u64,
        mut produce: impl FnMut(&mut Self) -> Result<T, ValidatorError>,
    ) -> Result<usize, ValidatorError> {
        let mut produced = 0;
        while produced < MAX_ROUNDS_PER_STEP && self.sim.next_round_time_ms() <= now_ms {
            produce(self)?;
            produced += 1;
        }
        Ok(produced)
    }

    pub fn last_commit_index(&self) -> CommitIndex {
        self.sim.last_commit_index()
    }
}

/// A running validator: producer and writer threads, and the publisher.
pub struct ValidatorHandle {
    pub addr: SocketAddr,
    pub source: Arc<StoreSource>,
    publisher: PublisherHandle,
    stop_producer: Arc<AtomicBool>,
    producer: std::thread::JoinHandle<Result<Producer, ValidatorError>>,
    /// The pruner thread, and the sender whose drop stops it.
    pruner: Option<(mpsc::Sender<()>, std::thread::JoinHandle<()>)>,
}

impl ValidatorHandle {
    pub fn publisher(&self) -> &Publisher {
        self.publisher.publisher()
    }

    /// Stops serving and producing; returns the producer once everything it
    /// made is durable, so that a test can inspect the chain or continue
    /// it.
    pub async fn stop(self) -> Result<Producer, ValidatorError> {
        self.publisher.stop().await;
        self.stop_producer.store(true, Ordering::Release);
        let producer = self.producer;
        let pruner = self.pruner;
        tokio::task::spawn_blocking(move || {
            if let Some((stop, pruner)) = pruner {
                drop(stop);
                pruner
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            }
            producer.join()
        })
        .await
        .expect("joining the producer and pruner threads does not panic")
        .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
    }
}

/// The producer thread's name.
pub const PRODUCER_THREAD: &str = "dagstream-producer";

/// The producer thread: rounds as they fall due, each block queued for the
/// writer as soon as it is signed. On a stop or an error, it waits for the
/// writer to write what is queued; the writer's error, the first that
/// happened, wins over the producer's.
fn produce(
    mut producer: Producer,
    clock: Clock,
    stop: &AtomicBool,
) -> Result<Producer, ValidatorError> {
    let writer = Writer::start(producer.source.clone())?;
    let mut produced = Ok(());
    while produced.is_ok() && !stop.load(Ordering::Acquire) {
        produced = producer
            .step_by(clock(), |p| p.produce_round_into(&writer))
            .map(|count| {
                if count == 0 {
                    let wait = producer.sim.next_round_time_ms().saturating_sub(clock());
                    std::thread::sleep(Duration::from_millis(wait.clamp(1, MAX_IDLE_MS)));
                }
            });
    }
    writer.finish()?;
    produced.map(|()| producer)
}

/// Starts producing by `clock` and serving on `listener`, and pruning as
/// `validator` says.
///
/// The producer runs on a thread of its own: a round's signatures, commit
/// rule and durable write take milliseconds of synchronous work, which on
/// a runtime worker would hold up the publisher's tasks queued behind it
/// on that worker, and with them every subscriber's live latency.
pub fn start(
    producer: Producer,
    clock: Clock,
    listener: TcpListener,
    config: PublisherConfig,
    validator: &ValidatorConfig,
    registry: &prometheus::Registry,
) -> Result<ValidatorHandle, ValidatorError> {
    validator.validate()?;
    let source = producer.source.clone();
    let mut publisher = Publisher::start(source.clone(), config, registry)?;
    let addr = publisher.spawn_server(listener)?;
    let stop_producer = Arc::new(AtomicBool::new(false));
    let stopped = stop_producer.clone();
    let producer = std::thread::Builder::new()
        .name(PRODUCER_THREAD.into())
        .spawn(move || produce(producer, clock, &stopped))
        .map_err(|err| ValidatorError::Thread {
            reason: err.to_string(),
        })?;
    let pruner = match validator.retain_commits {
        0 => None,
        keep => {
            let (stop, stopped) = mpsc::channel();
            let source = source.clone();
            let thread = std::thread::Builder::new()
                .name(retention::PRUNER_THREAD.into())
                .spawn(move || {
                    let gc_depth = || source.epochs().current().gc_depth_rounds();
                    retention::run_pruner(source.store().as_ref(), keep, gc_depth, &stopped)
                })
                .map_err(|err| ValidatorError::Thread {
                    reason: err.to_string(),
                })?;
            Some((stop, thread))
        }
    };
    Ok(ValidatorHandle {
        addr,
        source,
        publisher,
        stop_producer,
        producer,
        pruner,
    })
}
