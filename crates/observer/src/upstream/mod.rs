//! The observer's upstreams: [`connection`] (one gRPC session, and probes),
//! [`coalesce`] (commit batches joined while the observer is busy),
//! [`selection`] (which upstream to follow, and when to retry),
//! [`credentials`] (TLS and the token it presents) and [`transport`] (TCP,
//! or the embedder's connections).

pub mod coalesce;
pub mod connection;
pub mod credentials;
pub mod selection;
pub mod transport;

pub use connection::{connect, ConnectError, Connection, Inbound, Positions, Received};
pub use credentials::Credentials;
pub use selection::{probe_forever, Upstreams};
pub use transport::{Connector, Transport};
