//! Hostile subscribers, with a well-behaved one alongside that must keep
//! its exact commit sequence: streams that never read, command loops,
//! extreme positions, garbage messages and oversized requests. Each abuse
//! gets its specific status, and the publisher never panics.

mod common;

use bytes::{Buf, BufMut, Bytes};
use common::{start_validator, test_config, BlockStream, CommitStream, TestValidator};
use dagstream_proto::v1::chain_info_service_client::ChainInfoServiceClient;
use dagstream_proto::v1::{
    block_stream_request, BlockStreamRequest, GetChainInfoRequest, StopBlockStream,
};
use dagstream_publisher::PublisherConfig;
use std::time::Duration;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Status};

/// The well-behaved subscriber: a commit stream from commit 1, whose
/// indexes must go 1, 2, 3, … with no gap and no repeat.
struct GoodSubscriber {
    stream: CommitStream,
    next: u64,
}

impl GoodSubscriber {
    /// Opens the stream and reads what `validator` has certified so far.
    async fn follow(validator: &TestValidator) -> GoodSubscriber {
        let stream = CommitStream::open(validator.channel().await).await.unwrap();
        stream.start(0, 0).await;
        let mut good = GoodSubscriber { stream, next: 1 };
        good.keep_up(validator).await;
        good
    }

    /// Reads until the last commit `validator` has certified.
    async fn keep_up(&mut self, validator: &TestValidator) {
        while self.next <= validator.chain.certified() {
            let response = self.stream.next().await.unwrap();
            for commit in &response.commits {
                assert_eq!(commit.commit_index, self.next, "the sequence broke");
                self.next += 1;
            }
        }
    }
}

async fn connection(validator: &TestValidator) -> Channel {
    Endpoint::from_shared(validator.endpoint())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// 1,000 streams that never read their responses, and a subscriber looping
/// Start/Stop, while a well-behaved subscriber follows the chain.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_streams_and_command_loops_do_not_disturb_a_good_subscriber() {
    let config = PublisherConfig {
        max_subscribers: 50,
        ..test_config()
    };
    let mut validator = start_validator(30, config).await;
    validator.wait_certified().await;
    let mut good = GoodSubscriber::follow(&validator).await;

    // 1,000 streams over 10 connections, started and never read. The first
    // 49 more take the remaining slots; the rest are turned away.
    let mut idle = Vec::new();
    let mut refused = 0;
    for _ in 0..10 {
        let channel = connection(&validator).await;
        for _ in 0..100 {
            match CommitStream::open(channel.clone()).await {
                Ok(stream) => {
                    stream.start(0, 0).await;
                    idle.push(stream);
                }
                Err(status) => {
                    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
                    refused += 1;
                }
            }
        }
    }
    // Admission is decided when a stream opens: exactly the slots left.
    assert_eq!(idle.len() + refused, 1_000);
    assert_eq!(idle.len(), 49, "{refused} refused");
    assert_eq!(validator.publisher().open_streams(), 50);

    // A command loop is cut by the rate limit.
    let mut looping = BlockStream::open(validator.channel().await).await.unwrap();
    // Until the publisher cuts it, which closes the request side.
    let stop = BlockStreamRequest {
        command: Some(block_stream_request::Command::Stop(StopBlockStream {})),
    };
    for _ in 0..100 {
        if looping.commands.send(stop.clone()).await.is_err() {
            break;
        }
    }
    let status = loop {
        match looping.next().await {
            Ok(_) => continue,
            Err(status) => break status,
        }
    };
    assert_eq!(status.code(), Code::ResourceExhausted);

    // Meanwhile the chain goes on, and the good subscriber keeps up.
    validator.chain.produce(40);
    good.keep_up(&validator).await;
    assert_eq!(good.next, validator.chain.certified() + 1);
    drop(idle);
    validator.stop().await;
}

/// Positions at the ends of their ranges, and hints at the ends of theirs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn extreme_positions_get_defined_answers() {
    let mut validator = start_validator(20, test_config()).await;
    validator.wait_certified().await;

    // "I have everything up to round u64::MAX": nothing to send, only
    // heartbeats; and u32::MAX per batch is just "as much as allowed".
    let mut blocks = BlockStream::open(validator.channel().await).await.unwrap();
    blocks.start(vec![u64::MAX; 4], u32::MAX).await;
    validator.chain.produce(5);
    for _ in 0..3 {
        let response = blocks.next().await.unwrap();
        assert!(response.blocks.is_empty());
    }

    // A commit index at the end of the range is far in the future.
    let mut commits = CommitStream::open(validator.channel().await).await.unwrap();
    commits.start(u64::MAX, u32::MAX).await;
    let status = commits.next().await.unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument);
    assert!(
        status.message().contains("past the highest commit"),
        "{status:?}"
    );

    // The last commit index before that is fine: everything after it.
    let mut commits = CommitStream::open(validator.channel().await).await.unwrap();
    let certified = validator.chain.certified();
    commits.start(certified - 1, u32::MAX).await;
    let response = commits.next().await.unwrap();
    assert_eq!(response.commits[0].commit_index, certified);
    validator.stop().await;
}

/// Sends whatever bytes it is given as the request message.
#[derive(Clone, Default)]
struct RawCodec;

impl Codec for RawCodec {
    type Encode = Bytes;
    type Decode = Bytes;
    type Encoder = RawCodec;
    type Decoder = RawCodec;
    fn encoder(&mut self) -> RawCodec {
        RawCodec
    }
    fn decoder(&mut self) -> RawCodec {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Bytes;
    type Error = Status;
    fn encode(&mut self, item: Bytes, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = Bytes;
    type Error = Status;
    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<Bytes>, Status> {
        Ok(Some(src.copy_to_bytes(src.remaining())))
    }
}

const COMMITS: &str = "/dagstream.v1.CommitStreamService/StreamCommits";
const BLOCKS: &str = "/dagstream.v1.BlockStreamService/StreamBlocks";

/// One raw call of stream method `path` with `message` as its only
/// request: the first response (data or a heartbeat), or the status that
/// ended the stream.
async fn raw_call(channel: Channel, path: &'static str, message: Bytes) -> Result<Bytes, Status> {
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let path = tonic::codegen::http::uri::PathAndQuery::from_static(path);
    let request = tonic::Request::new(tokio_stream::iter([message]));
    let mut responses = grpc.streaming(request, path, RawCodec).await?.into_inner();
    match tokio::time::timeout(Duration::from_secs(30), responses.message()).await {
        Ok(Ok(Some(first))) => Ok(first),
        Ok(Ok(None)) => panic!("the stream ended without an error"),
        Ok(Err(status)) => Err(status),
        Err(_) => panic!("no answer to a request"),
    }
}

/// Arbitrary bytes as a request of either stream: a response (the bytes
/// happened to make a valid command) or one of the documented refusals,
/// never an internal error.
#[test]
fn arbitrary_requests_get_a_response_or_a_specific_refusal() {
    use proptest::prelude::*;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let validator = runtime.block_on(async {
        let validator = start_validator(10, test_config()).await;
        validator.wait_certified().await;
        validator
    });
    let channel = runtime.block_on(validator.channel());
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(96));
    let requests = (any::<bool>(), proptest::collection::vec(any::<u8>(), 0..48));
    runner
        .run(&requests, |(blocks, bytes)| {
            let path = if blocks { BLOCKS } else { COMMITS };
            let answer = runtime.block_on(raw_call(channel.clone(), path, Bytes::from(bytes)));
            if let Err(status) = answer {
                prop_assert!(
                    matches!(status.code(), Code::InvalidArgument | Code::OutOfRange),
                    "{:?}",
                    status
                );
            }
            Ok(())
        })
        .unwrap();
    runtime.block_on(validator.stop());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_and_oversized_requests_are_refused() {
    let mut validator = start_validator(20, test_config()).await;
    validator.wait_certified().await;
    let mut good = GoodSubscriber::follow(&validator).await;

    // Bytes that are not a protobuf message.
    let garbage = Bytes::from_static(&[0xff; 64]);
    let status = raw_call(validator.channel().await, COMMITS, garbage)
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::InvalidArgument, "{status:?}");
    assert!(
        status.message().starts_with("malformed request"),
        "{status:?}"
    );

    // A request over the 1 MiB limit: a Start of the block stream with 2
    // MiB of positions, sent as the commit stream's message (the size is
    // checked before anything decodes it).
    let mut oversized = bytes::BytesMut::new();
    oversized.put_u8(0x0a);
    let body = vec![0u8; 2 << 20];
    let mut len = body.len() as u64;
    while len >= 0x80 {
        oversized.put_u8((len as u8) | 0x80);
        len >>= 7;
    }
    oversized.put_u8(len as u8);
    oversized.put_slice(&body);
    let status = raw_call(validator.channel().await, COMMITS, oversized.freeze())
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::OutOfRange, "{status:?}");

    // Neither disturbed anyone else.
    validator.chain.produce(10);
    good.keep_up(&validator).await;
    let info = ChainInfoServiceClient::new(validator.channel().await)
        .get_chain_info(GetChainInfoRequest {})
        .await
        .unwrap();
    assert_eq!(info.into_inner().committee_digest.len(), 32);
    validator.stop().await;
}

/// Raw TCP abuse: connections that send garbage, and connections that send
/// the HTTP/2 preface and then nothing, while a good subscriber follows the
/// chain. The garbage ones are closed by the publisher.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_connections_are_closed_and_silent_ones_harm_no_one() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut validator = start_validator(20, test_config()).await;
    validator.wait_certified().await;
    let mut good = GoodSubscriber::follow(&validator).await;

    let mut garbage = Vec::new();
    let mut silent = Vec::new();
    for i in 0..200u32 {
        let mut socket = tokio::net::TcpStream::connect(validator.addr())
            .await
            .unwrap();
        if i % 2 == 0 {
            let noise: Vec<u8> = (0..512u32)
                .map(|b| (b.wrapping_mul(31) ^ i) as u8)
                .collect();
            socket.write_all(&noise).await.unwrap();
            garbage.push(socket);
        } else {
            socket
                .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
                .await
                .unwrap();
            silent.push(socket);
        }
    }
    validator.chain.produce(10);
    good.keep_up(&validator).await;
    // Each garbage connection is answered with at most an error, then closed.
    for mut socket in garbage {
        let mut sink = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(30), socket.read_to_end(&mut sink))
            .await
            .expect("the publisher closes a garbage connection");
        assert!(read.is_err() || sink.len() < 4096, "{} bytes", sink.len());
    }
    drop(silent);
    validator.stop().await;
}
