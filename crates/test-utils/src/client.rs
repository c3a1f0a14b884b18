//! Stream clients for tests and benches: one open block or commit stream,
//! commands in, responses out.

use dagstream_proto::v1::block_stream_service_client::BlockStreamServiceClient;
use dagstream_proto::v1::commit_stream_service_client::CommitStreamServiceClient;
use dagstream_proto::v1::{
    block_stream_request, commit_stream_request, BlockStreamRequest, BlockStreamResponse,
    CommitStreamRequest, CommitStreamResponse, StartBlockStream, StartCommitStream,
    StopBlockStream, StopCommitStream,
};
use std::future::Future;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Channel;
use tonic::Streaming;

/// Commands a test may queue ahead of the publisher reading them: more than
/// any test sends at once.
const COMMAND_QUEUE_LEN: usize = 16;

/// A new connection to `endpoint` (`http://host:port`).
pub async fn connect(endpoint: &str) -> Channel {
    Channel::from_shared(endpoint.to_string())
        .expect("a valid endpoint")
        .connect()
        .await
        .expect("the publisher accepts connections")
}

/// How long a test waits for something that must happen, such as a
/// response or a metric value. Generous: tests run on loaded 2-core
/// machines; reaching it means a bug, not slowness.
pub const PATIENCE: Duration = Duration::from_secs(30);

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
        let (commands, rx) = mpsc::channel(COMMAND_QUEUE_LEN);
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
        self.start_in(None, highest_round_per_authority, preferred_batch_size)
            .await;
    }

    /// A Start whose rounds are of `epoch`'s committee (`None`: the
    /// publisher's current epoch).
    pub async fn start_in(
        &self,
        epoch: Option<u64>,
        highest_round_per_authority: Vec<u64>,
        preferred_batch_size: u32,
    ) {
        let command = block_stream_request::Command::Start(StartBlockStream {
            highest_round_per_authority,
            preferred_batch_size,
            epoch,
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
        let (commands, rx) = mpsc::channel(COMMAND_QUEUE_LEN);
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
