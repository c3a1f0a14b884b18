//! How the observer opens its connections: TCP by default, or a connector
//! the embedder gives (a simulated network, an in-memory pipe, a socket
//! type of its own). Everything above the connection (HTTP/2, TLS, gRPC)
//! is the same either way.

use futures::future::BoxFuture;
use hyper_util::rt::TokioIo;
use std::sync::Arc;
use tokio::io::{AsyncRead, AsyncWrite};
use tonic::codegen::Service;
use tonic::transport::{Channel, Endpoint, Uri};

/// A connection of a custom transport.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// Opens a connection to an upstream's URI.
pub type Connector =
    Arc<dyn Fn(Uri) -> BoxFuture<'static, std::io::Result<Box<dyn Io>>> + Send + Sync>;

/// How the observer reaches its upstreams.
#[derive(Clone, Default)]
pub enum Transport {
    /// TCP to the host and port of each upstream's URI.
    #[default]
    Tcp,
    /// Connections from the embedder's connector.
    Custom(Connector),
}

impl std::fmt::Debug for Transport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Transport::Tcp => f.write_str("Tcp"),
            Transport::Custom(_) => f.write_str("Custom"),
        }
    }
}

impl Transport {
    /// Connects `endpoint` now.
    pub async fn connect(&self, endpoint: Endpoint) -> Result<Channel, tonic::transport::Error> {
        match self {
            Transport::Tcp => endpoint.connect().await,
            Transport::Custom(connector) => {
                endpoint
                    .connect_with_connector(ConnectorService(connector.clone()))
                    .await
            }
        }
    }

    /// A channel to `endpoint` that connects on first use, and again after
    /// a failure.
    pub fn connect_lazy(&self, endpoint: Endpoint) -> Channel {
        match self {
            Transport::Tcp => endpoint.connect_lazy(),
            Transport::Custom(connector) => {
                endpoint.connect_with_connector_lazy(ConnectorService(connector.clone()))
            }
        }
    }
}

/// A [`Connector`] as the service tonic connects through.
#[derive(Clone)]
struct ConnectorService(Connector);

impl Service<Uri> for ConnectorService {
    type Response = TokioIo<Box<dyn Io>>;
    type Error = std::io::Error;
    type Future = BoxFuture<'static, std::io::Result<TokioIo<Box<dyn Io>>>>;

    fn poll_ready(
        &mut self,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let connecting = (self.0)(uri);
        Box::pin(async move { connecting.await.map(TokioIo::new) })
    }
}
