//! The observer node: the I/O shell around the state machine, the
//! verifiers, the consensus core and the store.
//!
//! One task owns all state. Reader tasks forward each upstream stream's
//! responses to it over bounded channels. The task:
//! - evaluates the [`SubscriberStateMachine`] every interval and sends its
//!   commands;
//! - verifies block batches off the runtime (in parallel chunks, kept in
//!   order) and feeds them to the same [`DagConsensus`] validators run, to
//!   derive commits;
//! - verifies commit batches against its own chain;
//! - sequences both: the next commit is persisted with its blocks in one
//!   atomic write, a commit seen again must have the same digest;
//! - delivers persisted commits to the consumer in order, exactly once.
//!
//! A slow consumer stops the task from processing input, so the block queue
//! grows and the state machine pauses blocks: nothing is dropped.

use crate::checkpoint::{Checkpoint, Checkpointer};
use crate::metrics::ObserverMetrics;
use crate::state_machine::{Command, Mode, Observation, SubscriberConfig, SubscriberStateMachine};
use crate::verify::verify_commit_batch;
use crate::{ObserverError, Result};
use bytes::Bytes;
use dagstream_dag::{DagConfig, DagConsensus};
use dagstream_proto::v1::block_stream_service_client::BlockStreamServiceClient;
use dagstream_proto::v1::chain_info_service_client::ChainInfoServiceClient;
use dagstream_proto::v1::commit_stream_service_client::CommitStreamServiceClient;
use dagstream_proto::v1::{
    block_stream_request, commit_stream_request, BlockStreamRequest, CommitStreamRequest,
    CommitStreamResponse, GetChainInfoRequest, StartBlockStream, StartCommitStream,
    StopBlockStream, StopCommitStream,
};
use dagstream_publisher::StoreSource;
use dagstream_store::recovery::load_consensus_state;
use dagstream_store::{Store, WriteBatch};
use dagstream_types::{
    BlockLimits, CommitIndex, CommittedSubDag, Committee, Digest, TrustedCommit, VerifiedBlock,
};
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch, Semaphore};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;
use tracing::{error, info, warn};

/// Meta key of the open checkpoint.
const CHECKPOINT_KEY: &str = "observer/checkpoint";

/// Everything tunable about an observer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ObserverConfig {
    /// The design's thresholds.
    pub subscriber: SubscriberConfig,
    /// An upstream that sends nothing, not even a heartbeat, for this long
    /// is abandoned. 5 s is five missed heartbeats.
    pub stall_timeout_ms: u64,
    /// Received blocks held before the reader stops reading (and the
    /// publisher's flow control takes over). Twice the pause threshold, so
    /// that a pause takes effect well before the queue is full.
    pub block_queue_capacity: usize,
    /// Persisted commits not yet taken by the consumer before the observer
    /// stops processing input. 256 commits keep a consumer busy for seconds
    /// while bounding memory.
    pub output_queue_len: usize,
    /// Checkpoint interval of the design's certification context.
    pub min_checkpoint_interval_ms: u64,
    /// Reconnections tried at once after a failure, before backing off.
    pub immediate_retries: u32,
    /// First backoff delay; it doubles on each failure.
    pub backoff_initial_ms: u64,
    /// Longest backoff delay.
    pub backoff_max_ms: u64,
    /// How long an upstream that sent unverifiable data is avoided.
    pub faulty_cooldown_ms: u64,
    /// Limits on received blocks.
    pub block_limits: BlockLimits,
    /// In CommitsOnly, a lag that has not improved for this long means the
    /// observer cannot keep up with this upstream: disconnect, back off,
    /// try the next one (the design's graceful degradation). 30 s rides
    /// out a burst.
    pub degrade_after_ms: u64,
    /// How often every upstream is probed for its highest commit and
    /// connection latency.
    pub probe_interval_ms: u64,
    /// Leave the active upstream when another one is this many commits
    /// ahead of it. 50 commits are a few seconds: more than probe noise,
    /// less than a real fall-behind.
    pub max_upstream_lag: u64,
}

impl Default for ObserverConfig {
    fn default() -> Self {
        ObserverConfig {
            subscriber: SubscriberConfig::default(),
            stall_timeout_ms: 5_000,
            block_queue_capacity: 1_000,
            output_queue_len: 256,
            min_checkpoint_interval_ms: 200,
            immediate_retries: 3,
            backoff_initial_ms: 100,
            backoff_max_ms: 10_000,
            faulty_cooldown_ms: 60_000,
            block_limits: BlockLimits::default(),
            degrade_after_ms: 30_000,
            probe_interval_ms: 2_000,
            max_upstream_lag: 50,
        }
    }
}

impl ObserverConfig {
    pub fn validate(&self) -> Result<()> {
        self.subscriber
            .validate()
            .map_err(|err| ObserverError::InvalidConfig { reason: err.reason })?;
        let invalid = |reason: String| Err(ObserverError::InvalidConfig { reason });
        if self.block_queue_capacity <= self.subscriber.pause_blocks_queue_size {
            return invalid(format!(
                "block_queue_capacity ({}) must exceed subscriber.pause_blocks_queue_size ({})",
                self.block_queue_capacity, self.subscriber.pause_blocks_queue_size
            ));
        }
        if self.output_queue_len == 0 || self.stall_timeout_ms == 0 {
            return invalid("output_queue_len and stall_timeout_ms must be positive".into());
        }
        if self.degrade_after_ms == 0 || self.probe_interval_ms == 0 {
            return invalid("degrade_after_ms and probe_interval_ms must be positive".into());
        }
        if self.backoff_initial_ms == 0 || self.backoff_max_ms < self.backoff_initial_ms {
            return invalid(
                "backoff_initial_ms must be positive and at most backoff_max_ms".into(),
            );
        }
        Ok(())
    }
}

/// What the observer is doing, for operators and tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ObserverStatus {
    pub mode: Option<Mode>,
    pub paused: bool,
    /// Highest persisted commit.
    pub local_highest_commit: CommitIndex,
    /// The active upstream's latest `highest_commit_index`.
    pub upstream_highest_commit: Option<CommitIndex>,
    pub active_upstream: Option<String>,
    /// Every mode entered, in order (pauses included), bounded to the last
    /// 1,000.
    pub mode_trace: Vec<(Mode, bool)>,
    /// The open checkpoint's sequence number.
    pub checkpoint: Option<u64>,
    /// The newest closed (complete and persisted) checkpoint.
    pub last_closed_checkpoint: Option<u64>,
    /// Local highest commit equals the upstream's, and every checkpoint
    /// before the open one is closed and persisted (a checkpoint closes
    /// when the first commit of the next one arrives).
    pub caught_up: bool,
    /// The last integrity error, if any: its name (a metric label), the
    /// upstream, and what was wrong.
    pub last_fault: Option<String>,
    /// Upstream sessions opened so far.
    pub connections: u64,
}

/// Most mode changes kept in [`ObserverStatus::mode_trace`].
const MODE_TRACE_LEN: usize = 1_000;

/// A running observer.
pub struct ObserverHandle {
    status: watch::Receiver<ObserverStatus>,
    shutdown: watch::Sender<bool>,
    task: JoinHandle<Result<()>>,
    source: Arc<StoreSource>,
}

impl ObserverHandle {
    pub fn status(&self) -> ObserverStatus {
        self.status.borrow().clone()
    }

    pub fn watch_status(&self) -> watch::Receiver<ObserverStatus> {
        self.status.clone()
    }

    /// What the observer persisted, as a publisher source: serve it with
    /// [`dagstream_publisher::Publisher`] to relay to other observers.
    pub fn source(&self) -> Arc<StoreSource> {
        self.source.clone()
    }

    /// Stops the observer and waits for it. Everything delivered to the
    /// consumer is persisted.
    pub async fn stop(self) -> Result<()> {
        let _ = self.shutdown.send(true);
        self.task
            .await
            .unwrap_or_else(|err| std::panic::resume_unwind(err.into_panic()))
    }

    /// Waits for the observer to end on its own (a fatal error).
    pub async fn join(self) -> Result<()> {
        self.task
            .await
            .unwrap_or_else(|err| std::panic::resume_unwind(err.into_panic()))
    }
}

/// Starts an observer over `store`, following `upstreams` (gRPC endpoints,
/// `http://host:port`).
///
/// The consumer contract: the returned receiver yields every commit after
/// `resume_after`, in order, each once, and only after it is persisted. A
/// consumer that persists the index of each commit it has processed and
/// passes it as `resume_after` after a restart sees every commit exactly
/// once across restarts. The receiver has backpressure: a consumer that
/// does not read slows the observer down; nothing is dropped.
pub fn start(
    committee: Arc<Committee>,
    store: Arc<dyn Store>,
    upstreams: Vec<String>,
    config: ObserverConfig,
    resume_after: CommitIndex,
) -> Result<(ObserverHandle, mpsc::Receiver<CommittedSubDag>)> {
    let metrics = ObserverMetrics::unregistered().map_err(|err| ObserverError::InvalidConfig {
        reason: format!("metrics: {err}"),
    })?;
    start_with_metrics(committee, store, upstreams, config, resume_after, metrics)
}

/// [`start`], exporting [`ObserverMetrics`] (made with
/// [`ObserverMetrics::new`] on the node's registry).
pub fn start_with_metrics(
    committee: Arc<Committee>,
    store: Arc<dyn Store>,
    upstreams: Vec<String>,
    config: ObserverConfig,
    resume_after: CommitIndex,
    metrics: ObserverMetrics,
) -> Result<(ObserverHandle, mpsc::Receiver<CommittedSubDag>)> {
    config.validate()?;
    if upstreams.is_empty() {
        return Err(ObserverError::InvalidConfig {
            reason: "no upstream given".into(),
        });
    }
    let source = Arc::new(
        StoreSource::new(store.clone(), committee.clone()).map_err(|err| {
            ObserverError::InvalidConfig {
                reason: format!("cannot open the store as a source: {err}"),
            }
        })?,
    );
    let mut node = Node::new(
        committee,
        store,
        source.clone(),
        config,
        resume_after,
        metrics,
    )?;
    let (status_tx, status) = watch::channel(ObserverStatus::default());
    let (shutdown, shutdown_rx) = watch::channel(false);
    // The observer buffers up to `output_queue_len` itself; the channel
    // only hands commits over.
    let (consumer, commits) = mpsc::channel(1);
    let task = tokio::spawn(async move {
        let result = node.run(upstreams, consumer, status_tx, shutdown_rx).await;
        if let Err(err) = &result {
            error!(cause = %err, "observer stopped");
        }
        result
    });
    Ok((
        ObserverHandle {
            status,
            shutdown,
            task,
            source,
        },
        commits,
    ))
}

/// How a session with one upstream ended.
enum SessionEnd {
    Shutdown,
    /// The upstream failed, stalled or closed: try again, maybe elsewhere.
    Failed(String),
    /// The upstream sent data that does not verify.
    Faulty(ObserverError),
    /// The observer cannot keep up with this upstream: back off.
    Degraded(String),
}

/// The shared counters of one upstream connection.
struct Link {
    last_message_ms: AtomicU64,
    /// `highest_commit_index` + 1 of the latest response; 0 before any.
    upstream_highest: AtomicU64,
}

/// One upstream session: command senders and response receivers.
struct Connection {
    upstream: String,
    block_commands: mpsc::Sender<BlockStreamRequest>,
    commit_commands: mpsc::Sender<CommitStreamRequest>,
    blocks: mpsc::Receiver<Vec<Bytes>>,
    block_slots: Arc<Semaphore>,
    commits: mpsc::Receiver<CommitStreamResponse>,
    ended: mpsc::Receiver<String>,
    link: Arc<Link>,
    readers: Vec<JoinHandle<()>>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        for reader in &self.readers {
            reader.abort();
        }
    }
}

/// Commit-stream responses queued from the reader: the observer verifies
/// one at a time, so a few keep it busy.
const COMMIT_QUEUE_LEN: usize = 4;
/// Commands queued per stream: the state machine sends at most two per
/// evaluation.
const COMMAND_QUEUE_LEN: usize = 8;
/// Most parallel chunks a block batch is verified in.
const VERIFY_CHUNKS: usize = 4;

/// How long the chain check on connect may take.
const CHAIN_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// Asks the upstream which chain it serves. `Ok(None)`: it does not say
/// (a publisher without the extension), and verification alone protects.
async fn served_chain(
    channel: tonic::transport::Channel,
) -> std::result::Result<Option<Vec<u8>>, String> {
    let mut client = ChainInfoServiceClient::new(channel);
    match tokio::time::timeout(
        CHAIN_CHECK_TIMEOUT,
        client.get_chain_info(GetChainInfoRequest {}),
    )
    .await
    {
        Ok(Ok(info)) => Ok(Some(info.into_inner().committee_digest.to_vec())),
        Ok(Err(status)) if status.code() == tonic::Code::Unimplemented => Ok(None),
        Ok(Err(status)) => Err(format!("chain info: {status}")),
        Err(_) => Err("chain info: no answer".into()),
    }
}

/// Why connecting failed.
enum ConnectError {
    /// Unreachable or refusing: try again, maybe elsewhere.
    Unreachable(String),
    /// It serves another chain: fatal.
    WrongChain(ObserverError),
}

impl From<String> for ConnectError {
    fn from(reason: String) -> Self {
        ConnectError::Unreachable(reason)
    }
}

fn hex_string(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn connect(
    upstream: &str,
    chain: Digest,
    config: &ObserverConfig,
    epoch: Instant,
) -> std::result::Result<Connection, ConnectError> {
    let channel = tonic::transport::Endpoint::from_shared(upstream.to_string())
        .map_err(|err| format!("bad upstream address {upstream}: {err}"))?
        .connect_timeout(Duration::from_millis(config.stall_timeout_ms))
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(20))
        .connect()
        .await
        .map_err(|err| {
            format!("cannot connect to {upstream}: {err} (is it running? check --upstream)")
        })?;
    if let Some(served) = served_chain(channel.clone()).await? {
        if served.as_slice() != chain.as_bytes() {
            return Err(ConnectError::WrongChain(ObserverError::WrongChain {
                upstream: upstream.to_string(),
                served: hex_string(&served),
                ours: chain,
            }));
        }
    }
    let (block_commands, block_rx) = mpsc::channel(COMMAND_QUEUE_LEN);
    let (commit_commands, commit_rx) = mpsc::channel(COMMAND_QUEUE_LEN);
    let mut block_stream = BlockStreamServiceClient::new(channel.clone())
        .max_decoding_message_size(dagstream_proto::MAX_MESSAGE_BYTES)
        .stream_blocks(ReceiverStream::new(block_rx))
        .await
        .map_err(|status| format!("{upstream} refused the block stream: {status}"))?
        .into_inner();
    let mut commit_stream = CommitStreamServiceClient::new(channel)
        .max_decoding_message_size(dagstream_proto::MAX_MESSAGE_BYTES)
        .stream_commits(ReceiverStream::new(commit_rx))
        .await
        .map_err(|status| format!("{upstream} refused the commit stream: {status}"))?
        .into_inner();

    let link = Arc::new(Link {
        last_message_ms: AtomicU64::new(epoch.elapsed().as_millis() as u64),
        upstream_highest: AtomicU64::new(0),
    });
    let (ended_tx, ended) = mpsc::channel(2);
    let block_slots = Arc::new(Semaphore::new(config.block_queue_capacity));
    let (blocks_tx, blocks) = mpsc::channel(config.block_queue_capacity);
    let (commits_tx, commits) = mpsc::channel(COMMIT_QUEUE_LEN);
    let seen = move |link: &Link, highest: u64| {
        link.last_message_ms
            .store(epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
        link.upstream_highest.store(highest + 1, Ordering::Relaxed);
    };
    let block_reader = tokio::spawn({
        let (link, slots, ended) = (link.clone(), block_slots.clone(), ended_tx.clone());
        let capacity = config.block_queue_capacity;
        async move {
            let reason = loop {
                match block_stream.message().await {
                    Ok(Some(response)) => {
                        seen(&link, response.highest_commit_index);
                        if response.blocks.is_empty() {
                            continue;
                        }
                        let count = response.blocks.len().min(capacity) as u32;
                        let Ok(permits) = slots.acquire_many(count).await else {
                            return;
                        };
                        permits.forget();
                        if blocks_tx.send(response.blocks).await.is_err() {
                            return;
                        }
                    }
                    Ok(None) => break "the block stream ended".to_string(),
                    Err(status) => break format!("block stream: {status}"),
                }
            };
            let _ = ended.send(reason).await;
        }
    });
    let commit_reader = tokio::spawn({
        let link = link.clone();
        async move {
            let reason = loop {
                match commit_stream.message().await {
                    Ok(Some(response)) => {
                        seen(&link, response.highest_commit_index);
                        if !response.commits.is_empty() && commits_tx.send(response).await.is_err()
                        {
                            return;
                        }
                    }
                    Ok(None) => break "the commit stream ended".to_string(),
                    Err(status) => break format!("commit stream: {status}"),
                }
            };
            let _ = ended_tx.send(reason).await;
        }
    });
    Ok(Connection {
        upstream: upstream.to_string(),
        block_commands,
        commit_commands,
        blocks,
        block_slots,
        commits,
        ended,
        link,
        readers: vec![block_reader, commit_reader],
    })
}

/// What a probe learned of one upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Probe {
    highest_commit: CommitIndex,
    latency: Duration,
}

/// The latest probe of each upstream, shared with the prober task.
type Probes = Arc<std::sync::Mutex<Vec<Option<Probe>>>>;

/// Which upstream to try next, and when.
struct Upstreams {
    addresses: Vec<String>,
    next: usize,
    failures: u32,
    faulty_until: Vec<Option<Instant>>,
    probes: Probes,
}

impl Upstreams {
    fn new(addresses: Vec<String>) -> Self {
        let faulty_until = vec![None; addresses.len()];
        let probes = Arc::new(std::sync::Mutex::new(vec![None; addresses.len()]));
        Upstreams {
            addresses,
            next: 0,
            failures: 0,
            faulty_until,
            probes,
        }
    }

    /// The best upstream not in cool-down (or the one whose cool-down ends
    /// first), and how long to wait before trying it. Best is the highest
    /// probed commit, then the lowest latency; unprobed upstreams come
    /// after probed ones; ties go round-robin from the last one tried.
    fn pick(&mut self, now: Instant, config: &ObserverConfig) -> (usize, Duration) {
        let n = self.addresses.len();
        let probes = self.probes.lock().expect("probe lock poisoned").clone();
        let candidate = (0..n)
            .map(|i| (self.next + i) % n)
            .min_by_key(|&i| {
                let probe = probes[i].map(|p| (std::cmp::Reverse(p.highest_commit), p.latency));
                (
                    self.faulty_until[i].filter(|t| *t > now),
                    probe.is_none(),
                    probe,
                    (i + n - self.next) % n,
                )
            })
            .expect("at least one upstream");
        self.next = (candidate + 1) % n;
        let mut wait = self.faulty_until[candidate]
            .map_or(Duration::ZERO, |until| until.saturating_duration_since(now));
        if self.failures > config.immediate_retries {
            let exponent = (self.failures - config.immediate_retries - 1).min(16);
            let backoff = config
                .backoff_initial_ms
                .saturating_mul(1 << exponent)
                .min(config.backoff_max_ms);
            // Jitter of up to a quarter, so that observers that lost the
            // same upstream do not reconnect in lockstep.
            let entropy = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.subsec_nanos() as u64);
            let jitter = entropy % (backoff / 4 + 1);
            wait = wait.max(Duration::from_millis(backoff - jitter));
        }
        (candidate, wait)
    }

    fn failed(&mut self) {
        self.failures = self.failures.saturating_add(1);
    }

    fn faulty(&mut self, index: usize, now: Instant, config: &ObserverConfig) {
        self.failures = self.failures.saturating_add(1);
        self.faulty_until[index] = Some(now + Duration::from_millis(config.faulty_cooldown_ms));
    }

    fn progressed(&mut self) {
        self.failures = 0;
    }

    /// How far the best other upstream (not in cool-down) is ahead of
    /// `active`, by the latest probes.
    fn lead_over(&self, active: usize, active_highest: CommitIndex, now: Instant) -> u64 {
        let probes = self.probes.lock().expect("probe lock poisoned");
        probes
            .iter()
            .enumerate()
            .filter(|(i, _)| *i != active && self.faulty_until[*i].is_none_or(|t| t <= now))
            .filter_map(|(_, p)| p.map(|p| p.highest_commit.saturating_sub(active_highest)))
            .max()
            .unwrap_or(0)
    }
}

/// How long a probe waits for an upstream's first heartbeat.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Probes every upstream, forever: connection latency, and the highest
/// commit from the first heartbeat of a commit stream that is never
/// started (it costs the publisher nothing but a heartbeat).
async fn probe_forever(addresses: Vec<String>, probes: Probes, interval: Duration) {
    loop {
        let rounds = addresses.iter().map(|address| async move {
            let started = Instant::now();
            let channel = tonic::transport::Endpoint::from_shared(address.clone())
                .ok()?
                .connect_timeout(PROBE_TIMEOUT)
                .connect()
                .await
                .ok()?;
            let latency = started.elapsed();
            let (_commands, rx) = mpsc::channel::<CommitStreamRequest>(1);
            let mut stream = CommitStreamServiceClient::new(channel)
                .stream_commits(ReceiverStream::new(rx))
                .await
                .ok()?
                .into_inner();
            let first = tokio::time::timeout(PROBE_TIMEOUT, stream.message())
                .await
                .ok()?;
            let highest_commit = first.ok()??.highest_commit_index;
            Some(Probe {
                highest_commit,
                latency,
            })
        });
        let results = futures::future::join_all(rounds).await;
        *probes.lock().expect("probe lock poisoned") = results;
        tokio::time::sleep(interval).await;
    }
}

/// The design's graceful degradation, free of I/O: in CommitsOnly, a lag
/// that has not improved for a window means the observer cannot keep up.
#[derive(Clone, Debug)]
pub(crate) struct Degradation {
    window_ms: u64,
    /// The best lag seen in this CommitsOnly phase, and since when.
    best: Option<(u64, u64)>,
}

impl Degradation {
    pub(crate) fn new(window_ms: u64) -> Self {
        Degradation {
            window_ms,
            best: None,
        }
    }

    /// Whether the observer has been failing to catch up for the window.
    pub(crate) fn observe(&mut self, now_ms: u64, mode: Mode, lag: Option<u64>) -> bool {
        let (Mode::CommitsOnly, Some(lag)) = (mode, lag) else {
            self.best = None;
            return false;
        };
        match self.best {
            Some((best, _)) if lag >= best => {}
            _ => self.best = Some((lag, now_ms)),
        }
        self.best
            .is_some_and(|(_, since)| now_ms.saturating_sub(since) >= self.window_ms)
    }
}

struct Node {
    committee: Arc<Committee>,
    store: Arc<dyn Store>,
    source: Arc<StoreSource>,
    config: ObserverConfig,
    machine: SubscriberStateMachine,
    consensus: DagConsensus,
    /// The highest persisted commit.
    tip: Option<TrustedCommit>,
    /// The highest commit handed to the consumer.
    delivered: CommitIndex,
    /// Recently persisted sub-DAGs not yet delivered, in index order.
    recent: VecDeque<CommittedSubDag>,
    checkpointer: Checkpointer,
    last_closed_checkpoint: Option<Checkpoint>,
    status: ObserverStatus,
    metrics: ObserverMetrics,
    epoch: Instant,
}

impl Node {
    fn new(
        committee: Arc<Committee>,
        store: Arc<dyn Store>,
        source: Arc<StoreSource>,
        config: ObserverConfig,
        resume_after: CommitIndex,
        metrics: ObserverMetrics,
    ) -> Result<Node> {
        let consensus = recover_consensus(&committee, store.as_ref())?;
        let tip = store.last_commit()?;
        let open = store
            .read_meta(CHECKPOINT_KEY)?
            .and_then(|bytes| Checkpointer::decode(&bytes));
        let machine = SubscriberStateMachine::new(config.subscriber.clone())
            .map_err(|err| ObserverError::InvalidConfig { reason: err.reason })?;
        let local = tip.as_ref().map_or(0, |c| c.index());
        Ok(Node {
            checkpointer: Checkpointer::new(config.min_checkpoint_interval_ms, open),
            committee,
            store,
            source,
            machine,
            consensus,
            delivered: resume_after.min(local),
            tip,
            recent: VecDeque::new(),
            last_closed_checkpoint: None,
            status: ObserverStatus {
                local_highest_commit: local,
                checkpoint: open.map(|o| o.sequence),
                ..ObserverStatus::default()
            },
            config,
            metrics,
            epoch: Instant::now(),
        })
    }

    fn tip_index(&self) -> CommitIndex {
        self.tip.as_ref().map_or(0, |c| c.index())
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    async fn run(
        &mut self,
        upstreams: Vec<String>,
        consumer: mpsc::Sender<CommittedSubDag>,
        status: watch::Sender<ObserverStatus>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<()> {
        let mut upstreams = Upstreams::new(upstreams);
        let prober = tokio::spawn(probe_forever(
            upstreams.addresses.clone(),
            upstreams.probes.clone(),
            Duration::from_millis(self.config.probe_interval_ms),
        ));
        let _stop_prober = AbortOnDrop(prober);
        loop {
            let (index, wait) = upstreams.pick(Instant::now(), &self.config);
            if !wait.is_zero() {
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.changed() => return Ok(()),
                }
            }
            let address = upstreams.addresses[index].clone();
            let chain = self.committee.digest();
            let connection = tokio::select! {
                connection = connect(&address, chain, &self.config, self.epoch) => connection,
                _ = shutdown.changed() => return Ok(()),
            };
            let mut connection = match connection {
                Ok(connection) => connection,
                Err(ConnectError::Unreachable(reason)) => {
                    warn!(upstream = %address, reason, "upstream unreachable");
                    upstreams.failed();
                    continue;
                }
                // Following another chain is never right: refuse, loudly.
                Err(ConnectError::WrongChain(err)) => return Err(err),
            };
            info!(upstream = %address, "following upstream");
            self.status.active_upstream = Some(address.clone());
            self.status.connections += 1;
            self.metrics.connections.inc();
            let before = self.tip_index();
            let end = self
                .session(
                    index,
                    &upstreams,
                    &mut connection,
                    &consumer,
                    &status,
                    &mut shutdown,
                )
                .await?;
            self.status.active_upstream = None;
            self.status.upstream_highest_commit = None;
            let _ = status.send(self.status.clone());
            if self.tip_index() > before && !matches!(end, SessionEnd::Degraded(_)) {
                upstreams.progressed();
            }
            match end {
                SessionEnd::Shutdown => return Ok(()),
                SessionEnd::Degraded(reason) => {
                    self.metrics
                        .session_ends
                        .with_label_values(&["degraded"])
                        .inc();
                    warn!(upstream = %address, reason, "cannot keep up; backing off");
                    upstreams.failed();
                }
                SessionEnd::Failed(reason) => {
                    self.metrics
                        .session_ends
                        .with_label_values(&["failed"])
                        .inc();
                    warn!(upstream = %address, reason, "upstream lost; failing over");
                    upstreams.failed();
                }
                SessionEnd::Faulty(err) => {
                    self.metrics
                        .session_ends
                        .with_label_values(&["faulty"])
                        .inc();
                    self.metrics.faults.with_label_values(&[err.name()]).inc();
                    error!(upstream = %address, cause = %err, "upstream sent unverifiable data");
                    self.status.last_fault = Some(format!("{}: {address}: {err}", err.name()));
                    upstreams.faulty(index, Instant::now(), &self.config);
                }
            }
        }
    }

    /// Follows one upstream until it fails, misbehaves, or shutdown.
    /// Errors are fatal for the observer.
    async fn session(
        &mut self,
        active: usize,
        upstreams: &Upstreams,
        connection: &mut Connection,
        consumer: &mpsc::Sender<CommittedSubDag>,
        status: &watch::Sender<ObserverStatus>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<SessionEnd> {
        let interval = Duration::from_millis(self.config.subscriber.evaluation_interval_ms);
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut degradation = Degradation::new(self.config.degrade_after_ms);
        let start = self.machine.start(self.now_ms());
        if let Some(end) = self.apply(start, connection).await? {
            return Ok(end);
        }
        self.record_mode();
        loop {
            let room = self.tip_index() - self.delivered < self.config.output_queue_len as u64;
            let undelivered = self.delivered < self.tip_index();
            tokio::select! {
                biased;
                _ = shutdown.changed() => return Ok(SessionEnd::Shutdown),
                permit = consumer.reserve(), if undelivered => {
                    let Ok(permit) = permit else { return Ok(SessionEnd::Shutdown) };
                    let next = self.next_to_deliver()?;
                    permit.send(next);
                    self.delivered += 1;
                }
                _ = ticks.tick() => {
                    let now = self.now_ms();
                    let silent = now.saturating_sub(connection.link.last_message_ms.load(Ordering::Relaxed));
                    if silent > self.config.stall_timeout_ms {
                        return Ok(SessionEnd::Failed(format!("no message for {silent} ms")));
                    }
                    let highest = connection.link.upstream_highest.load(Ordering::Relaxed);
                    let observation = Observation {
                        upstream_highest_commit: highest.checked_sub(1),
                        local_highest_commit: self.tip_index(),
                        block_queue_len: self.config.block_queue_capacity
                            - connection.block_slots.available_permits(),
                    };
                    if let Some(highest) = observation.upstream_highest_commit {
                        let lead = upstreams.lead_over(active, highest, Instant::now());
                        if lead > self.config.max_upstream_lag {
                            return Ok(SessionEnd::Failed(format!(
                                "another upstream is {lead} commits ahead"
                            )));
                        }
                    }
                    let lag = observation
                        .upstream_highest_commit
                        .map(|h| h.saturating_sub(self.tip_index()));
                    if degradation.observe(now, self.machine.mode(), lag) {
                        return Ok(SessionEnd::Degraded(format!(
                            "the lag has not improved for {} ms",
                            self.config.degrade_after_ms
                        )));
                    }
                    let commands = self.machine.evaluate(now, observation);
                    if let Some(end) = self.apply(commands, connection).await? {
                        return Ok(end);
                    }
                    self.record_mode();
                    self.status.upstream_highest_commit = observation.upstream_highest_commit;
                    if let Some(upstream) = observation.upstream_highest_commit {
                        self.metrics.upstream_highest_commit.set(upstream as i64);
                        self.metrics
                            .commit_lag
                            .set(upstream.saturating_sub(self.tip_index()) as i64);
                    }
                    self.status.local_highest_commit = self.tip_index();
                    self.status.caught_up = observation.upstream_highest_commit
                        == Some(self.tip_index())
                        && self.last_closed_checkpoint.is_some();
                    self.status.last_closed_checkpoint = self.last_closed_checkpoint.map(|c| c.sequence);
                    let _ = status.send(self.status.clone());
                }
                Some(batch) = connection.blocks.recv(), if room => {
                    let count = batch.len().min(self.config.block_queue_capacity);
                    let outcome = self.on_blocks(batch).await;
                    connection.block_slots.add_permits(count);
                    if let Some(end) = outcome? {
                        return Ok(end);
                    }
                }
                Some(response) = connection.commits.recv(), if room => {
                    if let Some(end) = self.on_commits(response).await? {
                        return Ok(end);
                    }
                }
                Some(reason) = connection.ended.recv() => return Ok(SessionEnd::Failed(reason)),
            }
        }
    }

    fn record_mode(&mut self) {
        let now = (self.machine.mode(), self.machine.paused());
        self.metrics.set_mode(now.0, now.1);
        self.status.mode = Some(now.0);
        self.status.paused = now.1;
        if self.status.mode_trace.last() != Some(&now) {
            if self.status.mode_trace.len() == MODE_TRACE_LEN {
                self.status.mode_trace.remove(0);
            }
            self.status.mode_trace.push(now);
        }
    }

    /// Sends the state machine's commands. A Start for blocks first makes
    /// the consensus core continue from the persisted chain, which the
    /// commit stream may have advanced past it.
    async fn apply(
        &mut self,
        commands: Vec<Command>,
        connection: &Connection,
    ) -> Result<Option<SessionEnd>> {
        for command in commands {
            let sent = match command {
                Command::StartBlocks => {
                    let last = self.consensus.last_commit().map_or(0, |c| c.index());
                    if last != self.tip_index() {
                        self.consensus = recover_consensus(&self.committee, self.store.as_ref())?;
                    }
                    let mut highest = vec![0; self.committee.size()];
                    for block in self.consensus.dag().blocks() {
                        let slot = &mut highest[block.author() as usize];
                        *slot = (*slot).max(block.round());
                    }
                    let start = block_stream_request::Command::Start(StartBlockStream {
                        highest_round_per_authority: highest,
                        preferred_batch_size: 0,
                    });
                    connection
                        .block_commands
                        .send(BlockStreamRequest {
                            command: Some(start),
                        })
                        .await
                        .is_ok()
                }
                Command::StopBlocks => {
                    let stop = block_stream_request::Command::Stop(StopBlockStream {});
                    connection
                        .block_commands
                        .send(BlockStreamRequest {
                            command: Some(stop),
                        })
                        .await
                        .is_ok()
                }
                Command::StartCommits => {
                    let start = commit_stream_request::Command::Start(StartCommitStream {
                        last_commit_index: self.tip_index(),
                        preferred_batch_size: 0,
                    });
                    connection
                        .commit_commands
                        .send(CommitStreamRequest {
                            command: Some(start),
                        })
                        .await
                        .is_ok()
                }
                Command::StopCommits => {
                    let stop = commit_stream_request::Command::Stop(StopCommitStream {});
                    connection
                        .commit_commands
                        .send(CommitStreamRequest {
                            command: Some(stop),
                        })
                        .await
                        .is_ok()
                }
            };
            if !sent {
                return Ok(Some(SessionEnd::Failed(format!(
                    "{} closed its request stream",
                    connection.upstream
                ))));
            }
        }
        Ok(None)
    }

    /// Verifies a batch of blocks off the runtime, in parallel chunks kept
    /// in order, then adds them to the consensus core.
    async fn on_blocks(&mut self, batch: Vec<Bytes>) -> Result<Option<SessionEnd>> {
        let chunk_len = batch.len().div_ceil(VERIFY_CHUNKS).max(1);
        let tasks: Vec<_> = batch
            .chunks(chunk_len)
            .map(|chunk| {
                let chunk = chunk.to_vec();
                let committee = self.committee.clone();
                let limits = self.config.block_limits;
                tokio::task::spawn_blocking(move || {
                    chunk
                        .into_iter()
                        .map(|bytes| VerifiedBlock::verify(bytes, &committee, &limits))
                        .collect::<std::result::Result<Vec<_>, _>>()
                })
            })
            .collect();
        let mut verified = Vec::with_capacity(batch.len());
        for task in tasks {
            match task.await.expect("block verification does not panic") {
                Ok(blocks) => verified.extend(blocks),
                Err(source) => {
                    return Ok(Some(SessionEnd::Faulty(ObserverError::BadBlock { source })))
                }
            }
        }
        self.metrics.blocks_verified.inc_by(verified.len() as u64);
        let output = match self.consensus.add_blocks(verified) {
            Ok(output) => output,
            Err(err @ dagstream_dag::DagError::TooManyPendingBlocks { .. }) => {
                // Blocks from before a gap in this observer's history: the
                // commit stream will fill it, and the core restarts then.
                warn!(cause = %err, "dropping blocks whose history is missing");
                return Ok(None);
            }
            Err(err) => return Err(err.into()),
        };
        self.sequence(output.commits)?;
        Ok(None)
    }

    /// Verifies a commit batch against the persisted chain, then sequences
    /// its commits.
    async fn on_commits(&mut self, response: CommitStreamResponse) -> Result<Option<SessionEnd>> {
        let Some(first) = response.commits.first().map(|c| c.commit_index) else {
            return Ok(None);
        };
        let previous = match first.checked_sub(1) {
            Some(0) | None => None,
            Some(index) if index == self.tip_index() => self.tip.clone(),
            Some(index) if index < self.tip_index() => self.store.read_commit(index)?,
            Some(_) => {
                return Ok(Some(SessionEnd::Faulty(ObserverError::BrokenChain {
                    expected_after: self.tip_index(),
                    got: first,
                })))
            }
        };
        let committee = self.committee.clone();
        let limits = self.config.block_limits;
        let verified = tokio::task::spawn_blocking(move || {
            verify_commit_batch(&committee, &limits, previous.as_ref(), &response)
        })
        .await
        .expect("commit verification does not panic");
        let sub_dags = match verified {
            Ok(sub_dags) => sub_dags,
            Err(err) => return Ok(Some(SessionEnd::Faulty(err))),
        };
        self.sequence(sub_dags)?;
        Ok(None)
    }

    /// The one place commits enter the chain; see [`decide`]. The commits
    /// to persist are written together, in one atomic and durable write.
    fn sequence(&mut self, sub_dags: Vec<CommittedSubDag>) -> Result<()> {
        let stored_tip = self.tip_index();
        let mut tip = stored_tip;
        let mut to_persist: Vec<CommittedSubDag> = Vec::new();
        for sub_dag in sub_dags {
            let index = sub_dag.index();
            let persisted = if index <= stored_tip {
                self.store.read_commit(index)?.map(|c| c.digest())
            } else if index <= tip {
                // Earlier in this same batch.
                to_persist
                    .get((index - stored_tip - 1) as usize)
                    .map(|c| c.commit.digest())
            } else {
                None
            };
            match decide(tip, index, sub_dag.commit.digest(), persisted) {
                Sequencing::Persist => {
                    tip = index;
                    to_persist.push(sub_dag);
                }
                Sequencing::AlreadyPersisted | Sequencing::Ahead => {}
                Sequencing::Conflict { persisted } => {
                    return Err(ObserverError::Conflict {
                        index,
                        persisted,
                        received: sub_dag.commit.digest(),
                    })
                }
            }
        }
        if !to_persist.is_empty() {
            self.persist(to_persist)?;
        }
        Ok(())
    }

    /// Writes consecutive commits, their blocks and the checkpoint state in
    /// one atomic write, then announces them for relaying.
    fn persist(&mut self, sub_dags: Vec<CommittedSubDag>) -> Result<()> {
        let mut checkpointer = self.checkpointer.clone();
        let mut last_closed = None;
        let mut batch = WriteBatch::new();
        for sub_dag in &sub_dags {
            let (_, closed) = checkpointer.place(sub_dag.index(), sub_dag.commit.timestamp_ms());
            for block in &sub_dag.blocks {
                batch.add_block(block);
            }
            batch.add_commit(sub_dag.commit.clone());
            if let Some(closed) = closed {
                let mut range = closed.first_commit.to_le_bytes().to_vec();
                range.extend_from_slice(&closed.last_commit.to_le_bytes());
                batch.put_meta(format!("checkpoint/{:020}", closed.sequence), range);
                last_closed = Some(closed);
            }
        }
        if let Some(open) = checkpointer.open() {
            batch.put_meta(CHECKPOINT_KEY, Checkpointer::encode(&open));
        }
        self.store.write(batch)?;
        self.metrics.commits_persisted.inc_by(sub_dags.len() as u64);
        self.status.checkpoint = checkpointer.open().map(|o| o.sequence);
        self.checkpointer = checkpointer;
        if last_closed.is_some() {
            self.last_closed_checkpoint = last_closed;
        }
        for sub_dag in sub_dags {
            self.source
                .publish(&sub_dag.blocks, std::slice::from_ref(&sub_dag.commit));
            self.tip = Some(sub_dag.commit.clone());
            self.recent.push_back(sub_dag);
        }
        self.metrics.highest_commit.set(self.tip_index() as i64);
        while self.recent.len() > self.config.output_queue_len {
            self.recent.pop_front();
        }
        Ok(())
    }

    /// The commit after `delivered`: from memory if recent, else from the
    /// store (a consumer resuming from an older index).
    fn next_to_deliver(&mut self) -> Result<CommittedSubDag> {
        let index = self.delivered + 1;
        while self.recent.front().is_some_and(|c| c.index() < index) {
            self.recent.pop_front();
        }
        if let Some(front) = self.recent.front().filter(|c| c.index() == index) {
            return Ok(front.clone());
        }
        load_sub_dag(self.store.as_ref(), index)
    }
}

/// What the sequencer does with a commit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sequencing {
    /// The next commit: persist it.
    Persist,
    /// Seen before, with the same digest: nothing to do.
    AlreadyPersisted,
    /// Seen before with another digest: an integrity error.
    Conflict { persisted: Digest },
    /// Past the next one: a core that is behind catches up on its own, so
    /// it is ignored.
    Ahead,
}

/// The sequencer's rule, free of I/O: `persisted` is the digest stored for
/// `index` when `index <= tip` (`None` if it was pruned).
pub(crate) fn decide(
    tip: CommitIndex,
    index: CommitIndex,
    digest: Digest,
    persisted: Option<Digest>,
) -> Sequencing {
    if index == tip + 1 {
        Sequencing::Persist
    } else if index > tip {
        Sequencing::Ahead
    } else {
        match persisted {
            Some(persisted) if persisted != digest => Sequencing::Conflict { persisted },
            _ => Sequencing::AlreadyPersisted,
        }
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A persisted commit with its blocks.
fn load_sub_dag(store: &dyn Store, index: CommitIndex) -> Result<CommittedSubDag> {
    let corrupt = |reason: String| {
        ObserverError::Store(dagstream_store::StoreError::Corrupt {
            what: "persisted commit",
            reason,
        })
    };
    let commit = store
        .read_commit(index)?
        .ok_or_else(|| corrupt(format!("commit {index} is missing")))?;
    let blocks = commit
        .commit()
        .blocks
        .iter()
        .map(|reference| {
            let bytes = store.read_block(reference)?.ok_or_else(|| {
                corrupt(format!("block {reference:?} of commit {index} is missing"))
            })?;
            VerifiedBlock::decode_trusted(bytes).map_err(|err| corrupt(err.to_string()))
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(CommittedSubDag { commit, blocks })
}

/// The consensus core continuing after the store's last commit.
fn recover_consensus(committee: &Arc<Committee>, store: &dyn Store) -> Result<DagConsensus> {
    let state = load_consensus_state(store, committee.gc_depth_rounds(), u64::MAX)?;
    Ok(DagConsensus::recover(
        committee.clone(),
        DagConfig::default(),
        state.last_commit,
        state.blocks,
        state.committed,
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn upstreams(n: usize) -> Upstreams {
        Upstreams::new(
            (0..n)
                .map(|i| format!("http://127.0.0.1:{}", 7000 + i))
                .collect(),
        )
    }

    #[test]
    fn retries_rotate_at_once_then_back_off_up_to_the_cap() {
        // Without probes, upstreams are tried in turn.
        let config = ObserverConfig::default();
        let now = Instant::now();
        let mut up = upstreams(2);
        let mut picks = Vec::new();
        let mut waits = Vec::new();
        for _ in 0..12 {
            let (index, wait) = up.pick(now, &config);
            picks.push(index);
            waits.push(wait);
            up.failed();
        }
        assert_eq!(picks, vec![0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1]);
        // The first tries (failures 0..=3) are immediate.
        assert!(waits[..4].iter().all(|w| w.is_zero()), "{waits:?}");
        // Then 100 ms doubling (minus up to a quarter of jitter) to 10 s.
        for (i, wait) in waits[4..].iter().enumerate() {
            let full = (100u64 << i).min(10_000);
            let ms = wait.as_millis() as u64;
            assert!(
                ms <= full && ms >= full - full / 4,
                "try {i}: {ms} ms, expected ~{full}"
            );
        }
        up.progressed();
        assert!(
            up.pick(now, &config).1.is_zero(),
            "progress resets the backoff"
        );
    }

    #[test]
    fn a_faulty_upstream_is_avoided_during_its_cool_down() {
        let config = ObserverConfig::default();
        let now = Instant::now();
        let mut up = upstreams(3);
        assert_eq!(up.pick(now, &config).0, 0);
        up.faulty(0, now, &config);
        up.progressed();
        let next: Vec<usize> = (0..4).map(|_| up.pick(now, &config).0).collect();
        assert_eq!(next, vec![1, 2, 1, 2]);
        // When every upstream is faulty, the one whose cool-down ends first
        // is tried once it ends.
        up.faulty(1, now + Duration::from_secs(1), &config);
        up.faulty(2, now + Duration::from_secs(2), &config);
        up.progressed();
        let (index, wait) = up.pick(now, &config);
        assert_eq!(index, 0);
        assert_eq!(wait, Duration::from_millis(config.faulty_cooldown_ms));
        // Once its cool-down is over, it is available again at once.
        let later = now + Duration::from_millis(config.faulty_cooldown_ms);
        assert_eq!(up.pick(later, &config), (0, Duration::ZERO));
    }

    #[test]
    fn the_best_probed_upstream_is_preferred() {
        let config = ObserverConfig::default();
        let now = Instant::now();
        let mut up = upstreams(3);
        let probe = |highest_commit, ms| {
            Some(Probe {
                highest_commit,
                latency: Duration::from_millis(ms),
            })
        };
        *up.probes.lock().unwrap() = vec![probe(90, 1), probe(100, 9), probe(100, 3)];
        assert_eq!(up.pick(now, &config).0, 2, "highest commit, then latency");
        assert_eq!(up.lead_over(0, 90, now), 10);
        assert_eq!(up.lead_over(2, 100, now), 0);
        // A faulty upstream is not preferred, nor counted as ahead.
        up.faulty(2, now, &config);
        assert_eq!(up.pick(now, &config).0, 1);
        assert_eq!(up.lead_over(1, 100, now), 0);
        // Unprobed upstreams come after probed ones.
        let mut up = upstreams(2);
        *up.probes.lock().unwrap() = vec![None, probe(5, 50)];
        assert_eq!(up.pick(now, &config).0, 1);
    }

    #[test]
    fn degradation_is_a_commits_only_lag_that_stops_improving() {
        let mut d = Degradation::new(1_000);
        assert!(!d.observe(0, Mode::CommitsOnly, Some(500)));
        assert!(!d.observe(400, Mode::CommitsOnly, Some(450)), "improving");
        assert!(!d.observe(1_300, Mode::CommitsOnly, Some(470)));
        assert!(
            d.observe(1_400, Mode::CommitsOnly, Some(520)),
            "no better than 450 for 1 s"
        );
        // Leaving CommitsOnly resets the watch.
        assert!(!d.observe(1_500, Mode::Overlap, Some(5)));
        assert!(!d.observe(1_600, Mode::CommitsOnly, Some(900)));
        assert!(!d.observe(2_500, Mode::CommitsOnly, Some(900)));
        assert!(d.observe(2_600, Mode::CommitsOnly, Some(901)));
        // An unknown lag is no evidence.
        assert!(!d.observe(9_000, Mode::CommitsOnly, None));
    }

    #[test]
    fn the_sequencer_persists_the_next_ignores_repeats_and_refuses_conflicts() {
        let (a, b) = (Digest([1; 32]), Digest([2; 32]));
        assert_eq!(decide(0, 1, a, None), Sequencing::Persist);
        assert_eq!(decide(7, 8, a, None), Sequencing::Persist);
        assert_eq!(decide(7, 9, a, None), Sequencing::Ahead);
        assert_eq!(decide(7, 7, a, Some(a)), Sequencing::AlreadyPersisted);
        assert_eq!(decide(7, 3, a, Some(a)), Sequencing::AlreadyPersisted);
        assert_eq!(
            decide(7, 3, a, Some(b)),
            Sequencing::Conflict { persisted: b }
        );
        // A pruned commit cannot be compared.
        assert_eq!(decide(7, 3, a, None), Sequencing::AlreadyPersisted);
    }

    #[test]
    fn config_needs_room_above_the_pause_threshold() {
        let config = ObserverConfig {
            block_queue_capacity: 500,
            ..ObserverConfig::default()
        };
        assert!(matches!(
            config.validate(),
            Err(ObserverError::InvalidConfig { .. })
        ));
        ObserverConfig::default().validate().unwrap();
    }
}
