//! The observer node: the loop that wires the stages together.
//!
//! One task owns all state. It follows one upstream at a time
//! ([`upstream::selection`](crate::upstream::selection) picks it,
//! [`upstream::connection`](crate::upstream::connection) speaks to it),
//! and in each session:
//! - evaluates the [`SubscriberStateMachine`] every interval and sends its
//!   commands;
//! - verifies received blocks ([`verify_blocks`](crate::verify::verify_blocks))
//!   and derives commits from them ([`Deriver`]);
//! - verifies commit batches against its own chain
//!   ([`verify_commit_batch`](crate::verify::verify_commit_batch)) (the
//!   receive path, in `node/receive.rs`);
//! - collects the checkpoint signatures in every verified block, of either
//!   stream ([`Certifier`]);
//! - sequences both ([`Sequencer`]), certifies the checkpoints they close,
//!   and writes each batch atomically through the relay source
//!   ([`Persister`]) while it verifies the next (the write path, in
//!   `node/write.rs`);
//! - queues the commits each write made durable for the consumer
//!   ([`Delivery`]);
//! - at an epoch's end, verifies the hand-off that either stream brings,
//!   records it, and switches every stage to the next committee
//!   (`node/epoch.rs`).
//!
//! Before its first session, with `--bootstrap-from`, it takes the
//! history after its own chain from an archive, each bundle through the
//! same receive path as a commit batch (`node/bootstrap.rs`).
//!
//! A slow consumer stops the task from taking input, so the block queue
//! grows and the state machine pauses blocks: nothing is dropped.

mod bootstrap;
mod epoch;
mod receive;
mod write;

use crate::certify::Certifier;
use crate::config::ObserverConfig;
use crate::delivery::{DeliveredSubDag, Delivery};
use crate::derive::Deriver;
use crate::metrics::{ObserverMetrics, VerifyStamps};
use crate::persist::Persister;
use crate::sequencer::Sequencer;
use crate::state_machine::{Command, Degradation, Observation, SubscriberStateMachine};
use crate::status::ObserverStatus;
use crate::upstream::{
    self, ConnectError, Connection, Credentials, Inbound, Positions, Transport, Upstreams,
};
use crate::{ObserverError, Result};
use dagstream_archive::ArchiveProgress;
use dagstream_publisher::epochs::Epochs;
use dagstream_publisher::{ConsensusSource, StoreSource};
use dagstream_store::Store;
use dagstream_types::{CommitIndex, VerifiedBlock};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
// Every decision (stall, state machine, backoff, cool-down) is timed by
// the runtime's clock, so that a simulation in virtual time replays them.
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::{error, info, warn};

/// Most received blocks verified in one step. Two rounds of a
/// 100-authority committee: enough to keep every verifying core busy, few
/// enough that a step stays a few milliseconds and the consumer and the
/// state machine are served between steps.
const MAX_BLOCKS_PER_STEP: usize = 256;

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

/// Turns an error of a received item into the session's end if it is the
/// upstream's fault; other errors are the observer's own, and fatal.
fn faulty(err: ObserverError) -> Result<Option<SessionEnd>> {
    if err.is_integrity() {
        Ok(Some(SessionEnd::Faulty(err)))
    } else {
        Err(err)
    }
}

pub(crate) struct Node {
    store: Arc<dyn Store>,
    /// What the persister writes through (and relays serve from).
    source: Arc<StoreSource>,
    config: ObserverConfig,
    machine: SubscriberStateMachine,
    deriver: Deriver,
    sequencer: Sequencer,
    certifier: Certifier,
    persister: Persister,
    delivery: Delivery,
    status: ObserverStatus,
    metrics: ObserverMetrics,
    stamps: VerifyStamps,
    /// Every block verified from the block stream, as soon as it is.
    verified: broadcast::Sender<VerifiedBlock>,
    /// What this observer presents to its upstreams.
    credentials: Credentials,
    /// How it connects to them.
    transport: Transport,
    /// The origin of the node's clock.
    clock_origin: Instant,
    /// The chain's epochs so far: each committee, and how it handed over.
    /// The last is the committee this observer trusts now.
    epochs: Epochs,
    /// The block stream runs ahead of this observer's chain, past an
    /// epoch's end it has not reached: its blocks are dropped until the
    /// chain gets there, and the stream then starts again.
    blocks_ahead: bool,
    /// The block stream must start again at the new epoch's positions.
    restart_blocks: bool,
    /// When the last hand-off was verified, until the next epoch's first
    /// block is.
    handed_over_at: Option<Instant>,
    /// Once the epoch's last commit is sequenced: blocks that vote for it,
    /// written with the next write. At most one per author.
    epoch_votes: Vec<VerifiedBlock>,
    /// The archive writer's progress, with `--archive`.
    archive: Option<watch::Receiver<ArchiveProgress>>,
}

impl Node {
    /// A node of the chain of `source` (its genesis committee), continuing
    /// in the epoch its store has reached.
    pub(crate) fn new(
        store: Arc<dyn Store>,
        source: Arc<StoreSource>,
        config: ObserverConfig,
        resume_after: CommitIndex,
        metrics: ObserverMetrics,
        verified: broadcast::Sender<VerifiedBlock>,
    ) -> Result<Node> {
        // The relay source read the epochs from the store already.
        let epochs = Epochs::clone(&source.epochs());
        epoch::check_waypoints(&epochs, &config.waypoints)?;
        let committee = epochs.current().clone();
        let handed_over = epoch::final_checkpoint(&epochs, committee.epoch())?;
        let deriver = Deriver::recover(committee.clone(), store.as_ref())?;
        let sequencer =
            Sequencer::recover(store.as_ref(), committee.clone(), handed_over.as_ref())?;
        let certifier = Certifier::recover(committee.clone(), store.as_ref())?;
        let machine = SubscriberStateMachine::new(config.subscriber.clone())?;
        let tip = sequencer.tip_index();
        let credentials = Credentials::load(&config.tls, config.auth_token_path.as_deref())?;
        Ok(Node {
            delivery: Delivery::new(resume_after, config.output_queue_len),
            status: ObserverStatus {
                epoch: committee.epoch(),
                local_highest_commit: tip,
                checkpoint: sequencer.open_checkpoint().map(|o| o.sequence),
                highest_certified_checkpoint: certifier.highest_certified(),
                ..ObserverStatus::default()
            },
            store,
            persister: Persister::new(source.clone(), config.offload),
            source,
            config,
            machine,
            deriver,
            sequencer,
            certifier,
            metrics,
            stamps: VerifyStamps::default(),
            verified,
            credentials,
            transport: Transport::Tcp,
            clock_origin: Instant::now(),
            epochs,
            blocks_ahead: false,
            restart_blocks: false,
            handed_over_at: None,
            epoch_votes: Vec::new(),
            archive: None,
        })
    }

    /// Shows the archive writer's progress in the status.
    pub(crate) fn watch_archive(&mut self, progress: watch::Receiver<ArchiveProgress>) {
        self.archive = Some(progress);
    }

    /// Reaches the upstreams over `transport` instead of TCP.
    pub(crate) fn use_transport(&mut self, transport: Transport) {
        self.transport = transport;
    }

    fn tip_index(&self) -> CommitIndex {
        self.sequencer.tip_index()
    }

    /// The highest commit the store holds: the sequencer's tip, or the one
    /// before the batch in flight.
    fn persisted(&self) -> CommitIndex {
        self.persister
            .writing_from()
            .map_or(self.tip_index(), |first| first - 1)
    }

    fn now_ms(&self) -> u64 {
        self.clock_origin.elapsed().as_millis() as u64
    }

    /// Follows the best upstream, failing over between them, until
    /// shutdown or a fatal error.
    pub(crate) async fn run(
        &mut self,
        upstreams: Vec<String>,
        consumer: mpsc::Sender<DeliveredSubDag>,
        status: watch::Sender<ObserverStatus>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<()> {
        if self.credentials.has_token() {
            for plain in upstreams.iter().filter(|a| !a.starts_with("https://")) {
                warn!(upstream = %plain, "the bearer token goes to this upstream in clear: use https");
            }
        }
        let mut upstreams = Upstreams::new(upstreams);
        let prober = tokio::spawn(upstream::probe_forever(
            upstreams.addresses.clone(),
            self.credentials.clone(),
            self.transport.clone(),
            upstreams.probes.clone(),
            Duration::from_millis(self.config.probe_interval_ms),
        ));
        let _stop_prober = AbortOnDrop(prober);
        if let Some(url) = self.config.archive.bootstrap_from.clone() {
            let bootstrapped = self
                .bootstrap(&url, &consumer, &status, &mut shutdown)
                .await?;
            if let bootstrap::Bootstrapped::Shutdown = bootstrapped {
                return self.finish().await;
            }
        }
        loop {
            let (index, wait) = upstreams.pick(Instant::now(), &self.config);
            if !wait.is_zero() {
                let waited = self
                    .between_sessions(tokio::time::sleep(wait), &consumer, &status, &mut shutdown)
                    .await?;
                if waited.is_none() {
                    return self.finish().await;
                }
            }
            let address = upstreams.addresses[index].clone();
            let (credentials, transport) = (self.credentials.clone(), self.transport.clone());
            let connecting = upstream::connect(
                &address,
                &credentials,
                &transport,
                self.epochs.genesis().digest(),
                Duration::from_millis(self.config.stall_timeout_ms),
                self.config.block_queue_capacity,
                self.clock_origin,
            );
            let connection = self
                .between_sessions(connecting, &consumer, &status, &mut shutdown)
                .await?;
            let Some(connection) = connection else {
                return self.finish().await;
            };
            let mut connection = match connection {
                Ok(connection) => connection,
                Err(ConnectError::Unreachable(reason)) => {
                    warn!(upstream = %address, reason, "upstream unreachable");
                    self.metrics.connect_failures.inc();
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
            let label = match end {
                // What was sequenced is made durable before the node stops.
                SessionEnd::Shutdown => return self.finish().await,
                SessionEnd::Degraded(reason) => {
                    warn!(upstream = %address, reason, "cannot keep up; backing off");
                    self.status.last_upstream_error = Some(format!("{address}: {reason}"));
                    upstreams.failed();
                    "degraded"
                }
                SessionEnd::Failed(reason) => {
                    warn!(upstream = %address, reason, "upstream lost; failing over");
                    self.status.last_upstream_error = Some(format!("{address}: {reason}"));
                    upstreams.failed();
                    "failed"
                }
                SessionEnd::Faulty(err) => {
                    self.metrics.faults.with_label_values(&[err.name()]).inc();
                    error!(upstream = %address, cause = %err, "upstream sent unverifiable data");
                    self.status.last_fault = Some(format!("{}: {address}: {err}", err.name()));
                    upstreams.faulty(index, Instant::now(), &self.config);
                    "faulty"
                }
            };
            self.metrics.session_ends.with_label_values(&[label]).inc();
        }
    }

    /// Waits for `wait` (a backoff, a connection) while the node carries
    /// on without an upstream: the write in flight finishes and what is
    /// persisted goes to the consumer, so that the output never waits for
    /// an upstream to come back. `None`: shutdown.
    async fn between_sessions<T>(
        &mut self,
        wait: impl Future<Output = T>,
        consumer: &mpsc::Sender<DeliveredSubDag>,
        status: &watch::Sender<ObserverStatus>,
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Option<T>> {
        let mut wait = std::pin::pin!(wait);
        loop {
            let undelivered = self.delivery.pending(self.persisted());
            let writing = self.persister.busy();
            tokio::select! {
                biased;
                _ = shutdown.changed() => return Ok(None),
                written = self.persister.finish(), if writing => {
                    self.on_persisted_shown(written?, status);
                }
                permit = consumer.reserve(), if undelivered => {
                    let Ok(permit) = permit else { return Ok(None) };
                    self.deliver(permit)?;
                }
                done = &mut wait => return Ok(Some(done)),
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
        consumer: &mpsc::Sender<DeliveredSubDag>,
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
        let mut received = Vec::with_capacity(MAX_BLOCKS_PER_STEP);
        loop {
            let room = self.delivery.has_room(self.tip_index());
            let undelivered = self.delivery.pending(self.persisted());
            let writing = self.persister.busy();
            let end = tokio::select! {
                biased;
                _ = shutdown.changed() => return Ok(SessionEnd::Shutdown),
                written = self.persister.finish(), if writing => {
                    self.on_persisted(written?);
                    None
                }
                permit = consumer.reserve(), if undelivered => {
                    let Ok(permit) = permit else { return Ok(SessionEnd::Shutdown) };
                    self.deliver(permit)?;
                    None
                }
                _ = ticks.tick() => {
                    self.evaluate(active, upstreams, connection, &mut degradation, status).await?
                }
                count = connection.blocks.recv_many(&mut received, MAX_BLOCKS_PER_STEP), if room => {
                    if count == 0 {
                        return Ok(SessionEnd::Failed("the block reader stopped".into()));
                    }
                    self.on_blocks(&mut received).await?
                }
                response = connection.commits.recv(), if room => match response {
                    Some(Inbound::Item(response)) => self.on_commits(response).await?,
                    // The commit reader hands hand-offs over in responses.
                    Some(Inbound::HandOff(_)) => None,
                    Some(Inbound::Ended(reason)) => Some(SessionEnd::Failed(reason)),
                    None => Some(SessionEnd::Failed("the commit reader stopped".into())),
                },
            };
            if let Some(end) = end {
                return Ok(end);
            }
            if let Some(end) = self.restart_blocks(connection).await? {
                return Ok(end);
            }
        }
    }

    /// One evaluation: stall and lead checks, degradation, the state
    /// machine's commands, status and metrics.
    async fn evaluate(
        &mut self,
        active: usize,
        upstreams: &Upstreams,
        connection: &Connection,
        degradation: &mut Degradation,
        status: &watch::Sender<ObserverStatus>,
    ) -> Result<Option<SessionEnd>> {
        let now = self.now_ms();
        let link = *connection.link.borrow();
        let silent = now.saturating_sub(link.last_message_ms);
        if silent > self.config.stall_timeout_ms {
            return Ok(Some(SessionEnd::Failed(format!(
                "no message for {silent} ms"
            ))));
        }
        let observation = Observation {
            upstream_highest_commit: link.upstream_highest,
            local_highest_commit: self.tip_index(),
            block_queue_len: connection.blocks.len(),
        };
        if let Some(highest) = observation.upstream_highest_commit {
            let lead = upstreams.lead_over(active, highest, Instant::now());
            if lead > self.config.max_upstream_lag {
                return Ok(Some(SessionEnd::Failed(format!(
                    "another upstream is {lead} commits ahead"
                ))));
            }
        }
        let lag = observation
            .upstream_highest_commit
            .map(|h| h.saturating_sub(self.tip_index()));
        if degradation.observe(now, self.machine.mode(), lag) {
            return Ok(Some(SessionEnd::Degraded(format!(
                "the lag has not improved for {} ms",
                self.config.degrade_after_ms
            ))));
        }
        let commands = self.machine.evaluate(now, observation);
        if let Some(end) = self.apply(commands, connection).await? {
            return Ok(Some(end));
        }
        self.record_mode();
        self.status.upstream_highest_commit = observation.upstream_highest_commit;
        if let (Some(upstream), Some(lag)) = (observation.upstream_highest_commit, lag) {
            self.metrics.upstream_highest_commit.set(upstream as i64);
            self.metrics.commit_lag.set(lag as i64);
        }
        let last_closed = self.sequencer.last_closed_checkpoint();
        self.status.local_highest_commit = self.persisted();
        self.status.block_queue_len = observation.block_queue_len;
        self.status.output_backlog = self.persisted().saturating_sub(self.delivery.delivered());
        // Caught up: at the upstream's tip, every checkpoint before the open
        // one closed, and certified as far as the upstream says it is.
        let certified = self.certifier.highest_certified();
        self.status.upstream_certified_checkpoint = link.upstream_certified;
        self.status.caught_up = observation.upstream_highest_commit == Some(self.persisted())
            && last_closed.is_some()
            && certified >= link.upstream_certified;
        self.status.last_closed_checkpoint = last_closed.map(|c| c.sequence);
        self.status.highest_certified_checkpoint = certified;
        if let Some(archive) = &self.archive {
            let progress = archive.borrow();
            self.status.archived_checkpoint = progress.archived_checkpoint;
            self.status.archive_error = progress.last_error.clone();
        }
        let _ = status.send(self.status.clone());
        Ok(None)
    }

    fn record_mode(&mut self) {
        let (mode, paused) = (self.machine.mode(), self.machine.paused());
        self.metrics.set_mode(mode, paused);
        self.status.record_mode(mode, paused);
    }

    /// Sends the state machine's commands. Before a Start for blocks, the
    /// block path resyncs with the persisted chain, which the commit
    /// stream may have advanced past it.
    async fn apply(
        &mut self,
        commands: Vec<Command>,
        connection: &Connection,
    ) -> Result<Option<SessionEnd>> {
        for command in commands {
            if command == Command::StartBlocks {
                // The resync reads the chain back from the store.
                self.settle().await?;
                self.deriver.resync(self.tip_index(), self.store.as_ref())?;
            }
            let positions = Positions {
                epoch: self.epochs.current().epoch(),
                highest_round_per_authority: match command {
                    Command::StartBlocks => self.deriver.highest_rounds(),
                    _ => vec![],
                },
                last_commit_index: self.tip_index(),
            };
            if !connection.send(command, &positions).await {
                return Ok(Some(SessionEnd::Failed(format!(
                    "{} closed its request stream",
                    connection.upstream
                ))));
            }
        }
        Ok(None)
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}
