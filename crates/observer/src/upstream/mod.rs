//! The observer's upstreams: [`connection`] (one gRPC session, and probes)
//! and [`selection`] (which upstream to follow, and when to retry).

pub mod connection;
pub mod selection;

pub use connection::{connect, ConnectError, Connection, Inbound, Positions, Received};
pub use selection::{probe_forever, Upstreams};
