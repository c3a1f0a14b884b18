//! An observer that reaches its upstream over a transport of the
//! embedder's: here, in-memory pipes into the validator's publisher. The
//! seam a simulated network plugs into.

mod common;

use common::{committee_and_keys, consume, validator};
use dagstream_observer::upstream::transport::Io;
use dagstream_observer::{start_with_transport, ObserverConfig, ObserverMetrics, Transport};
use dagstream_store::MemStore;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_observer_follows_over_in_memory_pipes() {
    let validator = validator(120).await;
    // Each connection the observer opens is a new pipe, whose other end
    // goes to the publisher.
    let (accepted, incoming) = mpsc::channel::<std::io::Result<tokio::io::DuplexStream>>(16);
    let publisher = validator.handle.publisher().clone();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = tokio::spawn(async move {
        publisher
            .serve_incoming(ReceiverStream::new(incoming), async {
                let _ = stopped.await;
            })
            .await
    });
    let connector: dagstream_observer::Connector = Arc::new(move |_uri| {
        let accepted = accepted.clone();
        Box::pin(async move {
            let (client, server) = tokio::io::duplex(1 << 20);
            accepted
                .send(Ok(server))
                .await
                .map_err(std::io::Error::other)?;
            Ok(Box::new(client) as Box<dyn Io>)
        })
    });
    let (committee, _) = committee_and_keys();
    let (observer, mut commits) = start_with_transport(
        committee,
        Arc::new(MemStore::new()),
        vec!["http://validator.in-memory:1".to_string()],
        ObserverConfig::default(),
        0,
        ObserverMetrics::unregistered().unwrap(),
        Transport::Custom(connector),
    )
    .unwrap();
    let received = consume(&mut commits, 0, 150).await;
    assert_eq!(received, validator.commits(150).await);
    assert_eq!(observer.status().connections, 1);
    observer.stop().await.unwrap();
    let _ = stop.send(());
    serving.await.unwrap().unwrap();
    validator.stop().await;
}
