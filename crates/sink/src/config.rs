//! `[sink]` in the node's configuration file, and the `--sink` flags.

use crate::error::{Result, SinkError};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Where and how to deliver the commit sequence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SinkConfig {
    /// `nats://HOST:PORT` (or `tls://HOST:PORT`; a user and password, or a
    /// token, may be given in the URL as NATS clients take them), several
    /// comma-separated for a cluster. Absent: no sink.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The subject every commit is published to.
    pub subject: String,
    /// The JetStream stream that keeps the subject: created if absent, with
    /// only that subject; an existing one must take it and nothing else
    /// must be published to it.
    pub stream: String,
    /// A NATS credentials file (JWT and NKey seed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub credentials: Option<PathBuf>,
    /// Root certificates (PEM) to verify the server with; TLS is then
    /// required.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_ca: Option<PathBuf>,
    /// A client certificate and its key (PEM), for servers that ask for one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<PathBuf>,
    /// Commits read from the store and appended at a time. Each is a JSON
    /// line of under a kilobyte: 256 bound a batch to a few hundred KB.
    pub batch: usize,
    /// Publishes awaiting the server's acknowledgement at most. One at a
    /// time would cost a round trip per commit; 256 in flight keep a link
    /// of a few milliseconds busy, and what a failure can leave
    /// unacknowledged stays small (each is resent or skipped by its id).
    pub window: usize,
    /// Accept a subject last written by another observer (a replaced
    /// node). Without it such a subject is refused.
    pub takeover: bool,
}

impl SinkConfig {
    pub const DEFAULT_SUBJECT: &'static str = "dagstream.commits";
    pub const DEFAULT_STREAM: &'static str = "DAGSTREAM";
    /// Most of either bound: more holds memory without speeding up.
    const MAX_BATCH: usize = 4096;

    /// Checks the settings; the URL's scheme among them.
    pub fn validate(&self) -> Result<()> {
        let invalid = |setting, reason: &str| {
            Err(SinkError::Config {
                setting,
                reason: reason.into(),
            })
        };
        if let Some(url) = &self.url {
            let schemes = url.split(',').map(|server| server.trim().split_once("://"));
            if !schemes
                .into_iter()
                .all(|s| matches!(s, Some(("nats" | "tls", _))))
            {
                return invalid(
                    "sink.url",
                    "use nats://HOST:PORT or tls://HOST:PORT, comma-separated for a cluster",
                );
            }
        }
        if self.subject.is_empty()
            || self.subject.contains(['*', '>', ' '])
            || self.subject.split('.').any(str::is_empty)
        {
            return invalid(
                "sink.subject",
                "a subject without wildcards, like dagstream.commits",
            );
        }
        if self.stream.is_empty() || self.stream.contains(['.', '*', '>', ' ', '/', '\\']) {
            return invalid("sink.stream", "a stream name without . * > / \\ or spaces");
        }
        if !(1..=Self::MAX_BATCH).contains(&self.batch) {
            return invalid("sink.batch", "between 1 and 4096");
        }
        if !(1..=Self::MAX_BATCH).contains(&self.window) {
            return invalid("sink.window", "between 1 and 4096");
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return invalid("sink.tls_cert", "give tls_cert and tls_key together");
        }
        Ok(())
    }
}

impl Default for SinkConfig {
    fn default() -> Self {
        SinkConfig {
            url: None,
            subject: Self::DEFAULT_SUBJECT.into(),
            stream: Self::DEFAULT_STREAM.into(),
            credentials: None,
            tls_ca: None,
            tls_cert: None,
            tls_key: None,
            batch: 256,
            window: 256,
            takeover: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A change that spoils a valid configuration.
    type Spoil = fn(&mut SinkConfig);

    #[test]
    fn bad_settings_are_named() {
        let cases: [(&str, Spoil); 7] = [
            ("sink.url", |c| c.url = Some("http://localhost:4222".into())),
            ("sink.url", |c| c.url = Some("nats://a:4222,b:4222".into())),
            ("sink.subject", |c| c.subject = "dagstream.>".into()),
            ("sink.subject", |c| c.subject = "dagstream..commits".into()),
            ("sink.stream", |c| c.stream = "A.B".into()),
            ("sink.window", |c| c.window = 0),
            ("sink.tls_cert", |c| c.tls_cert = Some("cert.pem".into())),
        ];
        for (setting, spoil) in cases {
            let mut config = SinkConfig {
                url: Some("nats://127.0.0.1:4222".into()),
                ..SinkConfig::default()
            };
            config.validate().unwrap();
            spoil(&mut config);
            match config.validate() {
                Err(SinkError::Config { setting: named, .. }) => assert_eq!(named, setting),
                other => panic!("{setting}: {other:?}"),
            }
        }
    }
}
