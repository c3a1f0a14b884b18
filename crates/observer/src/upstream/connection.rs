//! One session with one upstream: the only place that speaks gRPC.
//!
//! [`connect`] checks the chain the upstream serves, opens both streams and
//! spawns a reader per stream. Each reader forwards what it receives, in
//! order, into a bounded queue, ending with [`Inbound::Ended`]; when a queue
//! is full the reader stops reading and HTTP/2 flow control pushes back on
//! the publisher (the commit reader first joins the commit batches that
//! follow each other, up to a bound: [`super::coalesce`]).
//! [`Connection::send`] turns the state machine's commands into requests.
//! [`probe`] asks an upstream how far it is with one unary call, over a
//! connection kept for probing.

use super::coalesce::{coalesce, MAX_COALESCED_BYTES};
use super::credentials::{Credentials, Upstream};
use super::transport::Transport;
use crate::state_machine::Command;
use crate::ObserverError;
use bytes::Bytes;
use dagstream_proto::v1::block_stream_service_client::BlockStreamServiceClient;
use dagstream_proto::v1::chain_info_service_client::ChainInfoServiceClient;
use dagstream_proto::v1::commit_stream_service_client::CommitStreamServiceClient;
use dagstream_proto::v1::{
    block_stream_request, commit_stream_request, BlockStreamRequest, CommitStreamRequest,
    CommitStreamResponse, GetChainInfoRequest, StartBlockStream, StartCommitStream,
    StopBlockStream, StopCommitStream,
};
use dagstream_types::{CommitIndex, Digest, Epoch, Round};
use std::time::Duration;
// The runtime's clock: real time in production, virtual time in a
// simulation, where a stall timeout must fire by the simulated clock.
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;

/// Commit-stream responses queued from the reader: the observer verifies
/// one at a time, so a few keep it busy.
const COMMIT_QUEUE_LEN: usize = 4;
/// Commands queued per stream: the state machine sends at most two per
/// evaluation.
const COMMAND_QUEUE_LEN: usize = 8;
/// How long the chain check on connect may take: a live upstream answers
/// in a round trip; five seconds is the stall timeout's default.
const CHAIN_CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a probe waits to connect, then for its answer: three seconds
/// tell a slow upstream from a dead one without holding a probe round up
/// for long.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);
/// HTTP/2 receive windows of a session's connection: how much the
/// upstream may send before this observer acknowledges it. A live round at
/// the mainnet profile is about 600 KB, sent at once; with HTTP/2's default
/// 64 KB it waited for ten window updates, a few milliseconds of p99 at the
/// subscriber (`docs/benchmarks.md`). 4 MB is one full batch
/// (`max_batch_bytes`); the connection's window covers both streams. Memory
/// stays bounded: past the block queue, at most these bytes wait in the
/// connection's buffers, and the upstream holds the rest.
pub const STREAM_WINDOW_BYTES: u32 = 4 << 20;
/// The connection's window: both streams' at once (see
/// [`STREAM_WINDOW_BYTES`]).
pub const CONNECTION_WINDOW_BYTES: u32 = 8 << 20;
/// HTTP/2 pings on an idle connection, and how long one may go unanswered.
/// The publisher's keepalive defaults: a dead peer is found within half a
/// minute even behind a NAT that drops idle flows silently.
const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(20);

/// What a reader hands the node, in stream order.
#[derive(Debug)]
pub enum Inbound<T> {
    Item(T),
    /// A certified hand-off (BCS `EpochChange`), before the items of the
    /// epoch it leads to: the block stream sends it in a response's
    /// `epoch_changes`.
    HandOff(Bytes),
    /// The stream ended (or failed), and why. Nothing follows.
    Ended(String),
}

/// A received block and when it arrived: where the observer's live
/// latency is measured from.
#[derive(Debug)]
pub struct Received {
    pub bytes: Bytes,
    pub at: Instant,
}

/// What the readers last heard from the upstream.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkState {
    /// When the last message of either stream arrived, in ms of the node's
    /// clock.
    pub last_message_ms: u64,
    /// The upstream's latest `highest_commit_index`; `None` before any.
    pub upstream_highest: Option<CommitIndex>,
    /// The upstream's latest `highest_certified_checkpoint`; `None` before
    /// any, or from an upstream that does not report it.
    pub upstream_certified: Option<u64>,
}

/// An open session with one upstream.
pub struct Connection {
    pub upstream: String,
    block_commands: mpsc::Sender<BlockStreamRequest>,
    commit_commands: mpsc::Sender<CommitStreamRequest>,
    /// Received blocks, one per item; its length is the block queue the
    /// state machine watches.
    pub blocks: mpsc::Receiver<Inbound<Received>>,
    pub commits: mpsc::Receiver<Inbound<CommitStreamResponse>>,
    pub link: watch::Receiver<LinkState>,
    readers: [JoinHandle<()>; 2],
}

impl Drop for Connection {
    fn drop(&mut self) {
        for reader in &self.readers {
            reader.abort();
        }
    }
}

/// Where a Start resumes: the observer's own position.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Positions {
    /// The epoch of the committee the rounds are indexed by.
    pub epoch: Epoch,
    /// The highest round the observer holds of each authority.
    pub highest_round_per_authority: Vec<Round>,
    /// The highest persisted commit.
    pub last_commit_index: CommitIndex,
}

impl Connection {
    /// Sends one command. `false`: the upstream closed its request stream.
    pub async fn send(&self, command: Command, positions: &Positions) -> bool {
        let blocks = |command| BlockStreamRequest {
            command: Some(command),
        };
        let commits = |command| CommitStreamRequest {
            command: Some(command),
        };
        match command {
            Command::StartBlocks => {
                let start = block_stream_request::Command::Start(StartBlockStream {
                    highest_round_per_authority: positions.highest_round_per_authority.clone(),
                    preferred_batch_size: 0,
                    epoch: Some(positions.epoch),
                });
                self.block_commands.send(blocks(start)).await.is_ok()
            }
            Command::StopBlocks => {
                let stop = block_stream_request::Command::Stop(StopBlockStream {});
                self.block_commands.send(blocks(stop)).await.is_ok()
            }
            Command::StartCommits => {
                let start = commit_stream_request::Command::Start(StartCommitStream {
                    last_commit_index: positions.last_commit_index,
                    preferred_batch_size: 0,
                });
                self.commit_commands.send(commits(start)).await.is_ok()
            }
            Command::StopCommits => {
                let stop = commit_stream_request::Command::Stop(StopCommitStream {});
                self.commit_commands.send(commits(stop)).await.is_ok()
            }
        }
    }
}

/// Why connecting failed.
pub enum ConnectError {
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

/// Connects to `upstream`, checks that it serves `chain`, and opens both
/// streams (nothing started). `epoch` is the node's clock; at most
/// `block_queue_capacity` received blocks wait for the node.
pub async fn connect(
    upstream: &str,
    credentials: &Credentials,
    transport: &Transport,
    chain: Digest,
    connect_timeout: Duration,
    block_queue_capacity: usize,
    epoch: Instant,
) -> Result<Connection, ConnectError> {
    let endpoint = credentials
        .endpoint(upstream)?
        .connect_timeout(connect_timeout)
        .initial_stream_window_size(Some(STREAM_WINDOW_BYTES))
        .initial_connection_window_size(Some(CONNECTION_WINDOW_BYTES))
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT);
    let channel = transport.connect(endpoint).await.map_err(|err| {
        // The cause (refused, TLS) is in the error's sources.
        let mut reason = format!("cannot connect to {upstream}: {err}");
        let mut source = std::error::Error::source(&err);
        while let Some(cause) = source {
            reason.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        reason + " (is it running? check --upstream)"
    })?;
    let channel = credentials.wrap(channel);
    if let Some(served) = served_chain(channel.clone()).await? {
        if served.as_slice() != chain.as_bytes() {
            return Err(ConnectError::WrongChain(ObserverError::WrongChain {
                upstream: upstream.to_string(),
                served: hex::encode(&served),
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

    let now_ms = move || epoch.elapsed().as_millis() as u64;
    let (link_tx, link) = watch::channel(LinkState {
        last_message_ms: now_ms(),
        upstream_highest: None,
        upstream_certified: None,
    });
    let seen = move |link: &watch::Sender<LinkState>, highest: CommitIndex, certified| {
        link.send_replace(LinkState {
            last_message_ms: now_ms(),
            upstream_highest: Some(highest),
            upstream_certified: certified,
        });
    };
    let (blocks_tx, blocks) = mpsc::channel(block_queue_capacity);
    let (commits_tx, commits) = mpsc::channel(COMMIT_QUEUE_LEN);
    let block_reader = tokio::spawn({
        let link = link_tx.clone();
        async move {
            let reason = loop {
                match block_stream.message().await {
                    Ok(Some(response)) => {
                        let at = Instant::now();
                        let certified = response.highest_certified_checkpoint;
                        seen(&link, response.highest_commit_index, certified);
                        for hand_off in response.epoch_changes {
                            if blocks_tx.send(Inbound::HandOff(hand_off)).await.is_err() {
                                return;
                            }
                        }
                        for bytes in response.blocks {
                            let block = Inbound::Item(Received { bytes, at });
                            if blocks_tx.send(block).await.is_err() {
                                return;
                            }
                        }
                    }
                    Ok(None) => break "the block stream ended".to_string(),
                    Err(status) => break format!("block stream: {status}"),
                }
            };
            let _ = blocks_tx.send(Inbound::Ended(reason)).await;
        }
    });
    let commit_reader = tokio::spawn(async move {
        // A response read while the queue was full, joined with those that
        // follow it until there is room (`coalesce`).
        let mut held: Option<CommitStreamResponse> = None;
        let reason = loop {
            tokio::select! {
                // Room first: at the tip a response is never held back.
                biased;
                permit = commits_tx.reserve(), if held.is_some() => {
                    let Ok(permit) = permit else { return };
                    permit.send(Inbound::Item(held.take().expect("held")));
                }
                message = commit_stream.message() => match message {
                    Ok(Some(response)) => {
                        let certified = response.highest_certified_checkpoint;
                        seen(&link_tx, response.highest_commit_index, certified);
                        if response.commits.is_empty() {
                            continue;
                        }
                        let Some(joined) = held.as_mut() else {
                            held = Some(response);
                            continue;
                        };
                        if let Err(response) = coalesce(joined, response, MAX_COALESCED_BYTES) {
                            let first = held.replace(response).expect("held");
                            if commits_tx.send(Inbound::Item(first)).await.is_err() {
                                return;
                            }
                        }
                    }
                    Ok(None) => break "the commit stream ended".to_string(),
                    Err(status) => break format!("commit stream: {status}"),
                },
            }
        };
        if let Some(last) = held {
            if commits_tx.send(Inbound::Item(last)).await.is_err() {
                return;
            }
        }
        let _ = commits_tx.send(Inbound::Ended(reason)).await;
    });
    Ok(Connection {
        upstream: upstream.to_string(),
        block_commands,
        commit_commands,
        blocks,
        commits,
        link,
        readers: [block_reader, commit_reader],
    })
}

/// Asks the upstream which chain it serves. `Ok(None)`: it does not say
/// (a publisher without the extension), and verification alone protects.
async fn served_chain(channel: Upstream) -> Result<Option<Vec<u8>>, String> {
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

/// What a probe learned of one upstream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Probe {
    pub highest_commit: CommitIndex,
    pub latency: Duration,
}

/// A channel for probing `address`: it connects on first use, and again
/// after a failure, so that probes reuse one connection. `None`: the
/// address is malformed.
pub fn probe_channel(
    address: &str,
    credentials: &Credentials,
    transport: &Transport,
) -> Option<Upstream> {
    let endpoint = credentials
        .endpoint(address)
        .ok()?
        .connect_timeout(PROBE_TIMEOUT)
        .timeout(PROBE_TIMEOUT);
    Some(credentials.wrap(transport.connect_lazy(endpoint)))
}

/// Probes one upstream over `channel`: its highest commit, from one unary
/// `GetChainInfo` call, and that call's round trip. A publisher that
/// predates the field is asked through the first heartbeat of a commit
/// stream that is never started instead. `None`: unreachable or silent.
pub async fn probe(channel: Upstream) -> Option<Probe> {
    let started = Instant::now();
    let info = ChainInfoServiceClient::new(channel.clone())
        .get_chain_info(GetChainInfoRequest {})
        .await
        .ok()?
        .into_inner();
    let latency = started.elapsed();
    let highest_commit = match info.highest_commit_index {
        Some(highest) => highest,
        None => probe_by_heartbeat(channel).await?,
    };
    Some(Probe {
        highest_commit,
        latency,
    })
}

/// The highest commit from the first heartbeat of a commit stream that is
/// never started: it costs the publisher nothing but a heartbeat.
async fn probe_by_heartbeat(channel: Upstream) -> Option<CommitIndex> {
    let (_commands, rx) = mpsc::channel::<CommitStreamRequest>(1);
    let mut stream = CommitStreamServiceClient::new(channel)
        .stream_commits(ReceiverStream::new(rx))
        .await
        .ok()?
        .into_inner();
    let first = tokio::time::timeout(PROBE_TIMEOUT, stream.message())
        .await
        .ok()?;
    Some(first.ok()??.highest_commit_index)
}
