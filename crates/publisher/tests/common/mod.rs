//! A validator on a loopback port, driven round by round by the test (from
//! `dagstream-test-utils`), and client helpers.
#![allow(dead_code)]

use dagstream_proto::v1::block_stream_service_client::BlockStreamServiceClient;
use dagstream_proto::v1::commit_stream_service_client::CommitStreamServiceClient;
use dagstream_proto::v1::{
    block_stream_request, commit_stream_request, BlockStreamRequest, BlockStreamResponse,
    CommitStreamRequest, CommitStreamResponse, StartBlockStream, StartCommitStream,
    StopBlockStream, StopCommitStream,
};
use dagstream_publisher::PublisherConfig;
use dagstream_sim::SimConfig;
use dagstream_store::{MemStore, Store};
use dagstream_test_utils::{TestChain, TestCommittee};
use std::future::Future;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::Streaming;

pub use dagstream_test_utils::{TestValidator, PATIENCE};

/// A config with short heartbeats, so that tests see them quickly.
pub fn test_config() -> PublisherConfig {
    PublisherConfig {
        heartbeat_interval_ms: 50,
        ..PublisherConfig::default()
    }
}

/// The committee of these tests: 4 authorities, seed 5.
const AUTHORITIES: usize = 4;
const COMMITTEE_SEED: u64 = 5;

/// A 4-authority committee with `history` rounds produced before the
/// publisher starts.
pub async fn start_validator(history: usize, config: PublisherConfig) -> TestValidator {
    start_validator_with(AUTHORITIES, SimConfig::default(), history, config).await
}

pub async fn start_validator_with(
    authorities: usize,
    sim_config: SimConfig,
    history: usize,
    config: PublisherConfig,
) -> TestValidator {
    start_validator_on(
        Arc::new(MemStore::new()),
        authorities,
        sim_config,
        history,
        config,
    )
    .await
}

/// A validator on `store` with `history` rounds, its publisher started as
/// on a restarted node: over a new source, warmed from the store.
pub async fn start_validator_on(
    store: Arc<dyn Store>,
    authorities: usize,
    sim_config: SimConfig,
    history: usize,
    config: PublisherConfig,
) -> TestValidator {
    let committee = TestCommittee::new(authorities, COMMITTEE_SEED);
    let mut chain = TestChain::new(&committee, sim_config, store);
    chain.produce(history);
    chain.restart();
    TestValidator::start(chain, config).await
}

/// Waits for `future`, failing the test after [`PATIENCE`].
pub async fn patiently<T>(what: &str, future: impl Future<Output = T>) -> T {
    tokio::time::timeout(PATIENCE, future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// One open block stream: send commands, receive responses.
pub struct BlockStream {
    pub commands: mpsc::Sender<BlockStreamRequest>,
    pub responses: Streaming<BlockStreamResponse>,
}

impl BlockStream {
    pub async fn open(channel: Channel) -> Result<BlockStream, tonic::Status> {
        let (commands, rx) = mpsc::channel(16);
        let responses = BlockStreamServiceClient::new(channel)
            .max_decoding_message_size(dagstream_proto::MAX_MESSAGE_BYTES)
            .stream_blocks(ReceiverStream::new(rx))
            .await?
            .into_inner();
        Ok(BlockStream {
            commands,
            responses,
        })
    }

    pub async fn start(&self, highest_round_per_authority: Vec<u64>, preferred_batch_size: u32) {
        let command = block_stream_request::Command::Start(StartBlockStream {
            highest_round_per_authority,
            preferred_batch_size,
        });
        self.commands
            .send(BlockStreamRequest {
                command: Some(command),
            })
            .await
            .unwrap();
    }

    pub async fn stop(&self) {
        let command = block_stream_request::Command::Stop(StopBlockStream {});
        self.commands
            .send(BlockStreamRequest {
                command: Some(command),
            })
            .await
            .unwrap();
    }

    pub async fn next(&mut self) -> Result<BlockStreamResponse, tonic::Status> {
        patiently("a block response", self.responses.message())
            .await
            .map(|r| r.expect("stream ended"))
    }
}

/// One open commit stream.
pub struct CommitStream {
    pub commands: mpsc::Sender<CommitStreamRequest>,
    pub responses: Streaming<CommitStreamResponse>,
}

impl CommitStream {
    pub async fn open(channel: Channel) -> Result<CommitStream, tonic::Status> {
        let (commands, rx) = mpsc::channel(16);
        let responses = CommitStreamServiceClient::new(channel)
            .max_decoding_message_size(dagstream_proto::MAX_MESSAGE_BYTES)
            .stream_commits(ReceiverStream::new(rx))
            .await?
            .into_inner();
        Ok(CommitStream {
            commands,
            responses,
        })
    }

    pub async fn start(&self, last_commit_index: u64, preferred_batch_size: u32) {
        let command = commit_stream_request::Command::Start(StartCommitStream {
            last_commit_index,
            preferred_batch_size,
        });
        self.commands
            .send(CommitStreamRequest {
                command: Some(command),
            })
            .await
            .unwrap();
    }

    pub async fn stop(&self) {
        let command = commit_stream_request::Command::Stop(StopCommitStream {});
        self.commands
            .send(CommitStreamRequest {
                command: Some(command),
            })
            .await
            .unwrap();
    }

    pub async fn next(&mut self) -> Result<CommitStreamResponse, tonic::Status> {
        patiently("a commit response", self.responses.message())
            .await
            .map(|r| r.expect("stream ended"))
    }
}
