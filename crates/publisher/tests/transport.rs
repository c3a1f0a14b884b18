//! The publisher over a transport other than TCP: an in-memory pipe, as a
//! simulated network or an embedder's own sockets would give it.

mod common;

use common::{start_validator, test_config, CommitStream};
use hyper_util::rt::TokioIo;
use std::sync::{Arc, Mutex};
use tonic::transport::{Endpoint, Uri};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_streams_work_over_an_in_memory_pipe() {
    let validator = start_validator(40, test_config()).await;
    validator.wait_certified().await;
    let (client, server) = tokio::io::duplex(1 << 20);
    let publisher = validator.publisher().clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(async move {
        // One connection, then none: an incoming stream that ended would
        // end the server.
        let incoming = tokio_stream::StreamExt::chain(
            tokio_stream::iter([Ok::<_, std::io::Error>(server)]),
            tokio_stream::pending(),
        );
        publisher
            .serve_incoming(incoming, async {
                let _ = stopped.await;
            })
            .await
    });
    // One connection, handed to the client's connector once.
    let client = Arc::new(Mutex::new(Some(client)));
    let channel = Endpoint::from_static("http://in-memory")
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let pipe = client.lock().unwrap().take();
            async move {
                pipe.map(TokioIo::new)
                    .ok_or_else(|| std::io::Error::other("the pipe was used"))
            }
        }))
        .await
        .unwrap();
    let mut stream = CommitStream::open(channel).await.unwrap();
    stream.start(0, 0).await;
    let mut next = 1;
    while next <= validator.chain.certified() {
        for commit in stream.next().await.unwrap().commits {
            assert_eq!(commit.commit_index, next);
            next += 1;
        }
    }
    drop(stream);
    let _ = stop.send(());
    serving.await.unwrap().unwrap();
    validator.stop().await;
}
