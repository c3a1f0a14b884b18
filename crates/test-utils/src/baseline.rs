//! The baseline of the throughput benchmarks: the same bytes over one bare
//! loopback TCP socket, measured in the same run.

use bytes::Bytes;
use std::time::Instant;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Seconds to carry `chunks` from one loopback socket to another, with a
/// 1 MiB read buffer and no framing: what the machine's loopback can do.
pub async fn loopback_tcp_seconds(chunks: Vec<Bytes>) -> f64 {
    let total: u64 = chunks.iter().map(|c| c.len() as u64).sum();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("a loopback port");
    let address = listener.local_addr().expect("a bound address");
    let sender = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.expect("the receiver connects");
        for chunk in chunks {
            socket.write_all(&chunk).await.expect("the receiver reads");
        }
    });
    let started = Instant::now();
    let mut socket = tokio::net::TcpStream::connect(address)
        .await
        .expect("the sender listens");
    let mut buffer = vec![0u8; 1 << 20];
    let mut received = 0u64;
    while received < total {
        let read = socket.read(&mut buffer).await.expect("the sender writes");
        assert!(
            read > 0,
            "the sender stopped after {received} of {total} bytes"
        );
        received += read as u64;
    }
    let seconds = started.elapsed().as_secs_f64();
    sender.await.expect("the sender does not panic");
    seconds
}
