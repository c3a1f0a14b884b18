//! The observer's upstreams: [`connection`] (one gRPC session, and probes),
//! [`selection`] (which upstream to follow, and when to retry) and
//! [`credentials`] (TLS and the token it presents).

pub mod connection;
pub mod credentials;
pub mod selection;

pub use connection::{connect, ConnectError, Connection, Inbound, Positions, Received};
pub use credentials::Credentials;
pub use selection::{probe_forever, Upstreams};
