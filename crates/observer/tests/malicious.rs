//! A malicious upstream: every kind of forgery is rejected with its own
//! error, the upstream is marked faulty, and the observer fails over to an
//! honest one with its sequence intact.

mod common;

use bytes::Bytes;
use common::{committee_and_keys, consume, fresh_observer, validator, wait_status};
use dagstream_observer::ObserverConfig;
use dagstream_proto::v1::block_stream_service_server::{
    BlockStreamService, BlockStreamServiceServer,
};
use dagstream_proto::v1::commit_stream_service_client::CommitStreamServiceClient;
use dagstream_proto::v1::commit_stream_service_server::{
    CommitStreamService, CommitStreamServiceServer,
};
use dagstream_proto::v1::{
    commit_stream_request, BlockStreamRequest, BlockStreamResponse, CommitStreamRequest,
    CommitStreamResponse, StartCommitStream,
};
use dagstream_types::VerifiedBlock;
use std::pin::Pin;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// Claimed by the fake publisher so that the observer switches to commits.
const CLAIMED_HIGHEST: u64 = 100_000;

#[derive(Clone)]
struct Fake {
    /// Sent once on the block stream, if any.
    block: Option<Bytes>,
    /// Sent once on the commit stream.
    batch: CommitStreamResponse,
}

type Out<T> = Pin<Box<dyn futures::Stream<Item = Result<T, Status>> + Send>>;

/// Sends `first` (if any), then heartbeats claiming a far tip, until the
/// client goes away.
fn feed<T: Send + 'static>(first: Option<T>, heartbeat: impl Fn() -> T + Send + 'static) -> Out<T> {
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        if let Some(first) = first {
            if tx.send(Ok(first)).await.is_err() {
                return;
            }
        }
        loop {
            if tx.send(Ok(heartbeat())).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    Box::pin(ReceiverStream::new(rx))
}

#[tonic::async_trait]
impl BlockStreamService for Fake {
    type StreamBlocksStream = Out<BlockStreamResponse>;

    async fn stream_blocks(
        &self,
        _request: Request<Streaming<BlockStreamRequest>>,
    ) -> Result<Response<Self::StreamBlocksStream>, Status> {
        let first = self.block.clone().map(|block| BlockStreamResponse {
            blocks: vec![block],
            highest_commit_index: CLAIMED_HIGHEST,
            highest_certified_checkpoint: None,
            epoch_changes: vec![],
        });
        Ok(Response::new(feed(first, || BlockStreamResponse {
            blocks: vec![],
            highest_commit_index: CLAIMED_HIGHEST,
            highest_certified_checkpoint: None,
            epoch_changes: vec![],
        })))
    }
}

#[tonic::async_trait]
impl CommitStreamService for Fake {
    type StreamCommitsStream = Out<CommitStreamResponse>;

    async fn stream_commits(
        &self,
        request: Request<Streaming<CommitStreamRequest>>,
    ) -> Result<Response<Self::StreamCommitsStream>, Status> {
        // Send the batch once the observer starts the stream.
        let mut requests = request.into_inner();
        let batch = self.batch.clone();
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            while let Ok(Some(request)) = requests.message().await {
                if matches!(
                    request.command,
                    Some(commit_stream_request::Command::Start(_))
                ) {
                    let _ = tx.send(Ok(batch.clone())).await;
                }
            }
        });
        let heartbeats = feed(None, || CommitStreamResponse {
            commits: vec![],
            highest_commit_index: CLAIMED_HIGHEST,
            highest_certified_checkpoint: None,
            certifier_blocks: vec![],
            epoch_changes: vec![],
        });
        Ok(Response::new(Box::pin(futures::stream::select(
            ReceiverStream::new(rx),
            heartbeats,
        ))))
    }
}

/// An honest batch of commits 1 to 5 with its certificate, from `endpoint`.
async fn honest_batch(endpoint: &str) -> CommitStreamResponse {
    let (tx, rx) = mpsc::channel(1);
    tx.send(CommitStreamRequest {
        command: Some(commit_stream_request::Command::Start(StartCommitStream {
            last_commit_index: 0,
            preferred_batch_size: 5,
        })),
    })
    .await
    .unwrap();
    let mut stream = CommitStreamServiceClient::connect(endpoint.to_string())
        .await
        .unwrap()
        .stream_commits(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    loop {
        let response = stream.message().await.unwrap().unwrap();
        if !response.commits.is_empty() {
            assert_eq!(response.commits.len(), 5);
            return response;
        }
    }
}

fn flip_last_byte(bytes: &Bytes) -> Bytes {
    let mut bytes = bytes.to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    bytes.into()
}

/// Serves `fake` on a loopback port: its endpoint and its server task.
async fn serve(
    fake: Fake,
) -> (
    String,
    tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(BlockStreamServiceServer::new(fake.clone()))
            .add_service(CommitStreamServiceServer::new(fake))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    (endpoint, server)
}

/// An upstream that sends an equivocation: a second block, validly signed
/// by its author, for a slot that already has one. Equivocation is a
/// Byzantine authority's act, not a forgery: the block is valid, no
/// upstream is blamed, and the commit sequence is the chain's, unchanged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_equivocating_block_changes_nothing_in_the_sequence() {
    let validator = validator(120).await;
    let honest = honest_batch(&validator.endpoint()).await;
    let (_, keys) = committee_and_keys();
    // The last block of commit 3's sub-DAG, signed again with one byte of
    // its timestamp changed: same author, same round, another digest.
    let original =
        VerifiedBlock::decode_trusted(honest.commits[2].blocks.last().unwrap().clone()).unwrap();
    let mut twin = original.block().clone();
    twin.timestamp_ms += 1;
    let twin = VerifiedBlock::sign(twin, &keys.keys()[original.author() as usize]);
    assert_eq!(twin.round(), original.round());
    assert_ne!(twin.reference(), original.reference());

    let (fake_endpoint, server) = serve(Fake {
        block: Some(twin.serialized().clone()),
        batch: honest,
    })
    .await;
    let config = ObserverConfig {
        // The fake sends nothing after its batch: leave it soon.
        degrade_after_ms: 1_000,
        ..ObserverConfig::default()
    };
    let (observer, mut commits) = fresh_observer(vec![fake_endpoint, validator.endpoint()], config);
    // Subscribed before the node can have connected: it sees every block
    // verified from the block stream.
    let mut verified = observer.subscribe_verified();
    let received = consume(&mut commits, 0, 60).await;
    assert_eq!(received, validator.commits(60).await);
    assert_eq!(observer.status().last_fault, None);
    let mut twin_verified = false;
    loop {
        match verified.try_recv() {
            Ok(block) => twin_verified |= block.reference() == twin.reference(),
            Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_)) => continue,
            Err(_) => break,
        }
    }
    assert!(twin_verified, "the equivocating block reached the DAG");
    observer.stop().await.unwrap();
    server.abort();
    validator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_forgery_is_rejected_and_the_observer_fails_over() {
    let validator = validator(120).await;
    let honest = honest_batch(&validator.endpoint()).await;

    // A forged signature on a streamed block.
    let forged_block = flip_last_byte(&honest.commits[1].blocks[0]);
    // A tampered block inside a commit: one byte of its payload.
    let mut tampered = honest.clone();
    let position = tampered
        .commits
        .iter()
        .position(|c| c.blocks.len() > 1)
        .unwrap();
    let mut block = tampered.commits[position].blocks[0].to_vec();
    let payload = block.len() - 64 - 40 - 2;
    block[payload] ^= 1;
    tampered.commits[position].blocks[0] = block.into();
    // A broken chain: commit 2 left out.
    let mut broken = honest.clone();
    broken.commits.remove(1);
    // Certifiers without quorum.
    let mut unquorate = honest.clone();
    unquorate.certifier_blocks.truncate(2);
    // Certifiers validly signed by the committee's own keys, for the next
    // epoch: votes of another committee do not certify this chain.
    let (_, keys) = committee_and_keys();
    let mut other_epoch = honest.clone();
    other_epoch.certifier_blocks = honest
        .certifier_blocks
        .iter()
        .map(|bytes| {
            let block = VerifiedBlock::decode_trusted(bytes.clone()).unwrap();
            let mut moved = block.block().clone();
            moved.epoch += 1;
            VerifiedBlock::sign(moved, &keys.keys()[block.author() as usize])
                .serialized()
                .clone()
        })
        .collect();

    let cases = [
        (
            "bad_block",
            Fake {
                block: Some(forged_block),
                batch: honest.clone(),
            },
        ),
        (
            "digest_mismatch",
            Fake {
                block: None,
                batch: tampered,
            },
        ),
        (
            "broken_chain",
            Fake {
                block: None,
                batch: broken,
            },
        ),
        (
            "missing_quorum",
            Fake {
                block: None,
                batch: unquorate,
            },
        ),
        (
            "bad_certifier",
            Fake {
                block: None,
                batch: other_epoch,
            },
        ),
    ];
    for (expected, fake) in cases {
        let (fake_endpoint, server) = serve(fake).await;
        let (observer, mut commits) = fresh_observer(
            vec![fake_endpoint.clone(), validator.endpoint()],
            ObserverConfig::default(),
        );
        wait_status(&observer, expected, |s| s.last_fault.is_some()).await;
        let fault = observer.status().last_fault.unwrap();
        assert!(
            fault.starts_with(&format!("{expected}: {fake_endpoint}")),
            "expected {expected}, got {fault}"
        );
        // Nothing of the forged data was delivered or persisted: the
        // sequence comes from the honest validator, from commit 1.
        let received = consume(&mut commits, 0, 60).await;
        assert_eq!(received, validator.commits(60).await);
        assert_eq!(
            observer.status().active_upstream,
            Some(validator.endpoint())
        );
        observer.stop().await.unwrap();
        server.abort();
    }
    validator.stop().await;
}
