//! [`JetStreamLog`]: a [`CommitLog`] on a NATS JetStream subject.
//!
//! Each commit is one message on the subject. Its `Nats-Msg-Id` is the
//! commit's id ([`message_id`]), which the stream's deduplication uses to
//! drop a resend; `Dagstream-Writer` names the observer that published it.
//! Each publish also carries `Nats-Expected-Last-Sequence`: the server
//! stores it only if the stream's last message is the one this writer put
//! there before it. The stream holds the sink's subject alone, so the
//! sequences of a batch are known in advance (each message one past the
//! one before): a window of publishes can be in flight, each guarded, and
//! a lost one fails every later one. (The guard on the last message's id,
//! `Nats-Expected-Last-Msg-Id`, would do the same while the server
//! remembers that id; a restarted server forgets it once the message is
//! older than the deduplication window, and then refuses every publish.)
//!
//! An existing stream whose last message is of another subject is refused:
//! the sink's guard would be on someone else's messages.

use crate::config::SinkConfig;
use crate::error::{Result, SinkError};
use crate::log::{message_id, parse_message_id, CommitLog, Record, Tail};
use async_nats::jetstream::context::{Context, PublishErrorKind};
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::stream::{Config, LastRawMessageErrorKind, Stream};
use async_nats::jetstream::{self, ErrorCode};
use async_nats::{ConnectOptions, ServerAddr};
use dagstream_types::Digest;
use std::collections::VecDeque;
use std::time::Duration;

/// The header that names the observer a message came from.
pub const WRITER_HEADER: &str = "Dagstream-Writer";

/// How long a connection attempt, and a request, may take before it counts
/// as failed (and is retried after a backoff).
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The stream's deduplication window when the sink creates it: a resend
/// comes within seconds of the original (an ack lost, a reconnect).
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// A NATS JetStream subject as a [`CommitLog`].
pub struct JetStreamLog {
    context: Context,
    url: String,
    subject: String,
    stream: String,
    chain: Digest,
    writer: String,
    window: usize,
    /// The stream's last sequence, as this writer knows it: read by `tail`,
    /// advanced by each publish sent; `None` after a failure.
    last: Option<u64>,
}

impl JetStreamLog {
    /// A client of the server at `config.url`, which it keeps connecting to
    /// in the background: an unreachable server fails requests (retried by
    /// the sink), it does not fail the start.
    pub async fn connect(config: &SinkConfig, chain: Digest, writer: String) -> Result<Self> {
        let url = config.url.clone().ok_or(SinkError::Config {
            setting: "sink.url",
            reason: "no URL".into(),
        })?;
        let mut options = ConnectOptions::new()
            .name("dagstream-sink")
            .connection_timeout(REQUEST_TIMEOUT)
            .retry_on_initial_connect();
        if let Some(path) = &config.credentials {
            options = options
                .credentials_file(path)
                .await
                .map_err(|err| SinkError::Config {
                    setting: "sink.credentials",
                    reason: format!("{}: {err}", path.display()),
                })?;
        }
        if let Some(ca) = &config.tls_ca {
            options = options.add_root_certificates(ca.clone()).require_tls(true);
        }
        if let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) {
            options = options.add_client_certificate(cert.clone(), key.clone());
        }
        // A cluster's servers, comma-separated, as NATS clients take them.
        let servers = url
            .split(',')
            .map(|server| server.trim().parse::<ServerAddr>())
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|err| SinkError::Config {
                setting: "sink.url",
                reason: err.to_string(),
            })?;
        let client = options
            .connect(servers)
            .await
            .map_err(|err| SinkError::Config {
                setting: "sink.url",
                reason: err.to_string(),
            })?;
        let mut context = jetstream::new(client);
        context.set_timeout(REQUEST_TIMEOUT);
        Ok(JetStreamLog {
            context,
            url,
            subject: config.subject.clone(),
            stream: config.stream.clone(),
            chain,
            writer,
            window: config.window.max(1),
            last: None,
        })
    }

    fn unavailable(&self, err: impl std::fmt::Display) -> SinkError {
        SinkError::Unavailable {
            url: self.url.clone(),
            reason: err.to_string(),
        }
    }

    /// The stream, created with the subject alone if absent; an existing
    /// one must take the subject.
    async fn stream(&self) -> Result<Stream> {
        let stream = match self.context.get_stream(&self.stream).await {
            Ok(stream) => stream,
            Err(err) if is_not_found(&err) => self
                .context
                .create_stream(Config {
                    name: self.stream.clone(),
                    subjects: vec![self.subject.clone()],
                    duplicate_window: DUPLICATE_WINDOW,
                    ..Config::default()
                })
                .await
                .map_err(|err| self.unavailable(err))?,
            Err(err) => return Err(self.unavailable(err)),
        };
        let subjects = &stream.cached_info().config.subjects;
        if !subjects.iter().any(|s| covers(s, &self.subject)) {
            return Err(SinkError::StreamMismatch {
                stream: self.stream.clone(),
                subject: self.subject.clone(),
                subjects: subjects.clone(),
            });
        }
        Ok(stream)
    }

    fn rejected(&mut self, index: u64, reason: impl std::fmt::Display) -> SinkError {
        self.last = None;
        SinkError::Rejected {
            index,
            reason: reason.to_string(),
        }
    }
}

impl CommitLog for JetStreamLog {
    fn name(&self) -> String {
        format!("{} subject {}", self.url, self.subject)
    }

    async fn tail(&mut self) -> Result<Option<Tail>> {
        self.last = None;
        let mut stream = self.stream().await?;
        let state = stream
            .info()
            .await
            .map_err(|err| self.unavailable(err))?
            .state
            .clone();
        if state.messages == 0 {
            // Empty (or purged: its last sequence goes on from there).
            self.last = Some(state.last_sequence);
            return Ok(None);
        }
        let shared = || SinkError::SharedStream {
            stream: self.stream.clone(),
            subject: self.subject.clone(),
            sequence: state.last_sequence,
        };
        let message = match stream.get_last_raw_message_by_subject(&self.subject).await {
            Ok(message) => message,
            Err(err) if matches!(err.kind(), LastRawMessageErrorKind::NoMessageFound) => {
                return Err(shared())
            }
            Err(err) => return Err(self.unavailable(err)),
        };
        if message.sequence != state.last_sequence {
            return Err(shared());
        }
        let header = |name: &str| {
            message
                .headers
                .get(name)
                .map(|value| value.as_str().to_string())
        };
        let id = header(async_nats::header::NATS_MESSAGE_ID.as_ref()).unwrap_or_default();
        let chain = self.chain.to_string();
        let index = match parse_message_id(&id) {
            Some((of, index)) if of == chain => index,
            _ => {
                return Err(SinkError::WrongChain {
                    chain,
                    message_id: id,
                })
            }
        };
        self.last = Some(message.sequence);
        Ok(Some(Tail {
            index,
            writer: header(WRITER_HEADER).unwrap_or_default(),
        }))
    }

    async fn append(&mut self, records: &[Record]) -> Result<()> {
        let mut in_flight = VecDeque::with_capacity(self.window.min(records.len()));
        for record in records {
            let Some(last) = self.last else {
                return Err(self.rejected(record.index, "the stream's tail is not known"));
            };
            let publish = PublishMessage::build()
                .payload(record.payload.clone())
                .message_id(message_id(&self.chain, record.index))
                .header(WRITER_HEADER, self.writer.as_str())
                .expected_last_sequence(last);
            let sent = self
                .context
                .send_publish(self.subject.clone(), publish)
                .await;
            match sent {
                Ok(ack) => in_flight.push_back((record.index, ack)),
                Err(err) => return Err(self.publish_failed(record.index, err)),
            }
            self.last = Some(last + 1);
            if in_flight.len() >= self.window {
                let (index, ack) = in_flight.pop_front().expect("a full window");
                if let Err(err) = ack.await {
                    return Err(self.publish_failed(index, err));
                }
            }
        }
        while let Some((index, ack)) = in_flight.pop_front() {
            if let Err(err) = ack.await {
                return Err(self.publish_failed(index, err));
            }
        }
        Ok(())
    }
}

impl JetStreamLog {
    /// A publish that failed: refused by its guard (another message came
    /// last), or lost with the connection. Either way the tail must be
    /// read again.
    fn publish_failed(
        &mut self,
        index: u64,
        err: async_nats::jetstream::context::PublishError,
    ) -> SinkError {
        match err.kind() {
            PublishErrorKind::WrongLastMessageId | PublishErrorKind::WrongLastSequence => {
                self.rejected(index, err)
            }
            _ => {
                self.last = None;
                self.unavailable(format!("publishing commit {index}: {err}"))
            }
        }
    }
}

fn is_not_found(err: &async_nats::jetstream::context::GetStreamError) -> bool {
    use async_nats::jetstream::context::GetStreamErrorKind;
    matches!(err.kind(), GetStreamErrorKind::JetStream(e) if e.error_code() == ErrorCode::STREAM_NOT_FOUND)
}

/// Whether NATS subject `pattern` (with `*` for a token, `>` for the rest)
/// takes `subject`.
fn covers(pattern: &str, subject: &str) -> bool {
    let mut tokens = subject.split('.');
    for part in pattern.split('.') {
        match (part, tokens.next()) {
            (">", Some(_)) => return true,
            ("*", Some(_)) => {}
            (part, Some(token)) if part == token => {}
            _ => return false,
        }
    }
    tokens.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::covers;

    #[test]
    fn subject_patterns_match_as_nats_matches_them() {
        for (pattern, subject, expected) in [
            ("dagstream.commits", "dagstream.commits", true),
            ("dagstream.*", "dagstream.commits", true),
            ("dagstream.>", "dagstream.commits", true),
            (">", "dagstream.commits", true),
            ("*", "dagstream.commits", false),
            ("dagstream.commits.*", "dagstream.commits", false),
            ("dagstream.blocks", "dagstream.commits", false),
            ("dagstream", "dagstream.commits", false),
            ("dagstream.commits", "dagstream", false),
        ] {
            assert_eq!(covers(pattern, subject), expected, "{pattern} {subject}");
        }
    }
}
