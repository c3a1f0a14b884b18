//! Forged hand-offs, each sent by an upstream in place of the real one:
//! every one is refused with its own error, and nothing of the next epoch
//! is written.

mod common;

use common::{committee_and_keys, consume, fresh_observer, wait_status};
use dagstream_observer::{ObserverConfig, ObserverHandle, Waypoint};
use dagstream_proto::v1::block_stream_service_server::{
    BlockStreamService, BlockStreamServiceServer,
};
use dagstream_proto::v1::commit_stream_service_server::{
    CommitStreamService, CommitStreamServiceServer,
};
use dagstream_proto::v1::{
    commit_stream_request, BlockStreamRequest, BlockStreamResponse, CommitStreamRequest,
    CommitStreamResponse,
};
use dagstream_publisher::PublisherConfig;
use dagstream_sim::{Profile, SimConfig};
use dagstream_store::{epoch_change_key, MemStore};
use dagstream_test_utils::client::CommitStream;
use dagstream_test_utils::{TestChain, TestCommittee, TestValidator};
use dagstream_types::{CertifiedCheckpoint, CheckpointSummary, EpochChange, TypesError};
use ed25519_dalek::SigningKey;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

/// Claimed by the fake publisher so that the observer reads commits.
const CLAIMED_HIGHEST: u64 = 100_000;
const SEED: u64 = 9;

/// An upstream that sends `responses` on the commit stream at each Start,
/// then heartbeats; its block stream sends heartbeats only.
#[derive(Clone)]
struct Fake {
    responses: Vec<CommitStreamResponse>,
}

type Out<T> = Pin<Box<dyn futures::Stream<Item = Result<T, Status>> + Send>>;

fn heartbeats<T: Send + 'static>(heartbeat: impl Fn() -> T + Send + 'static) -> Out<T> {
    let (tx, rx) = mpsc::channel(4);
    tokio::spawn(async move {
        while tx.send(Ok(heartbeat())).await.is_ok() {
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
        Ok(Response::new(heartbeats(|| BlockStreamResponse {
            highest_commit_index: CLAIMED_HIGHEST,
            ..BlockStreamResponse::default()
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
        let mut requests = request.into_inner();
        let responses = self.responses.clone();
        let (tx, rx) = mpsc::channel(4);
        tokio::spawn(async move {
            while let Ok(Some(request)) = requests.message().await {
                if matches!(
                    request.command,
                    Some(commit_stream_request::Command::Start(_))
                ) {
                    for response in &responses {
                        if tx.send(Ok(response.clone())).await.is_err() {
                            return;
                        }
                    }
                }
            }
        });
        let beats = heartbeats(|| CommitStreamResponse {
            highest_commit_index: CLAIMED_HIGHEST,
            ..CommitStreamResponse::default()
        });
        Ok(Response::new(Box::pin(futures::stream::select(
            ReceiverStream::new(rx),
            beats,
        ))))
    }
}

/// Serves a [`Fake`] sending `responses` on a loopback port: its endpoint
/// and its server task.
async fn serve(
    responses: Vec<CommitStreamResponse>,
) -> (
    String,
    tokio::task::JoinHandle<Result<(), tonic::transport::Error>>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let fake = Fake { responses };
    let server = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(BlockStreamServiceServer::new(fake.clone()))
            .add_service(CommitStreamServiceServer::new(fake))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    (endpoint, server)
}

fn sim_config() -> SimConfig {
    SimConfig {
        epoch_rounds: 12,
        ..Profile::Small.sim_config(SEED)
    }
}

/// The honest commit stream from commit 0 up to and including the first
/// response that hands over (epoch 0 to 1), from a real validator.
async fn honest_responses() -> Vec<CommitStreamResponse> {
    let committee = TestCommittee::new(4, SEED);
    let mut chain = TestChain::new(&committee, sim_config(), Arc::new(MemStore::new()));
    chain.produce(40);
    let validator = TestValidator::start(chain, PublisherConfig::default()).await;
    validator.wait_certified().await;
    let mut stream = CommitStream::open(validator.channel().await).await.unwrap();
    stream.start(0, 0).await;
    let mut responses = Vec::new();
    loop {
        let response = stream.next().await.unwrap();
        if response.commits.is_empty() {
            continue;
        }
        let hands_over = !response.epoch_changes.is_empty();
        responses.push(response);
        if hands_over {
            return responses;
        }
    }
}

/// The last response with its hand-off replaced by `forge`'s.
fn forged(
    honest: &[CommitStreamResponse],
    forge: impl FnOnce(EpochChange) -> EpochChange,
) -> Vec<CommitStreamResponse> {
    let mut responses = honest.to_vec();
    let last = responses.last_mut().unwrap();
    let change = EpochChange::decode(&last.epoch_changes[0]).unwrap();
    last.epoch_changes = vec![forge(change).encode().into()];
    responses
}

/// `summary` signed by `signers`, each with `key(signer)`.
fn certificate(
    summary: CheckpointSummary,
    signers: &[u32],
    key: impl Fn(u32) -> SigningKey,
) -> CertifiedCheckpoint {
    CertifiedCheckpoint {
        summary,
        signatures: signers
            .iter()
            .map(|&i| (i, summary.sign(&key(i))))
            .collect(),
    }
}

/// Follows a fake upstream that sends `responses`, until it is found
/// faulty with `error` (its name, then its message): epoch 0's commits are
/// delivered and stored, and nothing after them.
async fn refused(responses: Vec<CommitStreamResponse>, name: &str, error: &str) {
    refused_pinned(responses, name, error, vec![]).await
}

/// [`refused`], by an observer with `waypoints`.
async fn refused_pinned(
    responses: Vec<CommitStreamResponse>,
    name: &str,
    error: &str,
    waypoints: Vec<Waypoint>,
) {
    let last_of_epoch = responses[responses.len() - 2]
        .commits
        .last()
        .unwrap()
        .commit_index;
    let (endpoint, server) = serve(responses).await;
    let config = ObserverConfig {
        // The status shows the fault once the next session starts.
        faulty_cooldown_ms: 200,
        waypoints,
        ..ObserverConfig::default()
    };
    let (observer, mut commits): (ObserverHandle, _) = fresh_observer(vec![endpoint], config);
    consume(&mut commits, 0, last_of_epoch).await;
    wait_status(&observer, name, |s| {
        s.last_fault
            .as_deref()
            .is_some_and(|f| f.starts_with(&format!("{name}: ")) && f.ends_with(error))
    })
    .await;
    let store = observer.source().store().clone();
    observer.stop().await.unwrap();
    assert_eq!(store.last_commit_index().unwrap(), last_of_epoch);
    assert_eq!(store.read_meta(&epoch_change_key(0)).unwrap(), None);
    assert!(
        commits.try_recv().is_err(),
        "nothing delivered after the epoch"
    );
    server.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_hand_offs_are_refused_and_nothing_after_them_is_written() {
    let honest = honest_responses().await;
    let (committee, keys) = committee_and_keys();
    let key = |i: u32| keys.keys()[i as usize].clone();
    let real = EpochChange::decode(&honest.last().unwrap().epoch_changes[0]).unwrap();
    let sequence = real.certificate.summary.sequence;

    // Signed by less than a quorum of the ending committee: 2 of 4.
    let below = forged(&honest, |mut change| {
        change.certificate.signatures.truncate(2);
        change
    });
    let error = TypesError::CertificateBelowQuorum {
        sequence,
        stake: 2,
        quorum: 3,
    };
    refused(below, "bad_hand_off", &error.to_string()).await;

    // Signed only by the next committee itself, with its own keys.
    let (next, next_keys) =
        dagstream_sim::epochs::next_epoch(&committee, &keys, SEED, &[], real.next.genesis_round);
    assert_eq!(next, real.next, "the committee the chain hands over to");
    let by_itself = forged(&honest, |mut change| {
        change.certificate = certificate(change.certificate.summary, &[0, 1, 2, 3], |i| {
            next_keys.keys()[i as usize].clone()
        });
        change
    });
    let error = TypesError::InvalidCheckpointSignature {
        sequence,
        author: 0,
    };
    refused(by_itself, "bad_hand_off", &error.to_string()).await;

    // A final checkpoint that skips an epoch, signed by a quorum of the
    // ending committee all the same.
    let skipping = forged(&honest, |mut change| {
        change.next.committee.epoch = 2;
        let mut summary = change.certificate.summary;
        summary.content_digest = change.next.digest();
        change.certificate = certificate(summary, &[0, 1, 2], key);
        change
    });
    let error = TypesError::EpochSkipped { from: 0, to: 2 };
    refused(skipping, "bad_hand_off", &error.to_string()).await;

    // The next epoch's commits before the final checkpoint is certified:
    // its certifiers are blocks of epoch 1, which epoch 0 refuses.
    let mut early = honest.clone();
    early.last_mut().unwrap().epoch_changes.clear();
    let error = TypesError::WrongEpoch {
        expected: 0,
        got: 1,
    };
    refused(early, "bad_certifier", &error.to_string()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_waypoint_pins_the_hand_off_of_its_epoch() {
    let honest = honest_responses().await;
    let real = EpochChange::decode(&honest.last().unwrap().epoch_changes[0]).unwrap();
    let digest = real.certificate.summary.digest();
    // Pinned to another checkpoint: the real hand-off is refused.
    let other = dagstream_types::Digest::of(b"another chain's checkpoint");
    let pinned = Waypoint {
        epoch: 0,
        checkpoint_digest: other,
    };
    let error = format!(
        "the hand-off of epoch 0 is certified over checkpoint {digest}, but the operator \
         pinned {other} (a waypoint)"
    );
    refused_pinned(honest.clone(), "waypoint_mismatch", &error, vec![pinned]).await;

    // Pinned to the real one (written as the command line takes it): the
    // observer crosses into epoch 1.
    let pinned: Waypoint = format!("0:{digest}").parse().unwrap();
    let (endpoint, server) = serve(honest).await;
    let config = ObserverConfig {
        waypoints: vec![pinned],
        ..ObserverConfig::default()
    };
    let (observer, _commits) = fresh_observer(vec![endpoint], config);
    wait_status(&observer, "epoch 1", |s| {
        s.epoch == 1 && s.last_fault.is_none()
    })
    .await;
    observer.stop().await.unwrap();
    server.abort();
    assert!("0".parse::<Waypoint>().is_err());
    assert!("x:00".parse::<Waypoint>().is_err());
}
