//! Plumbing shared by both streams: the response queue, slow-subscriber
//! detection, and ending a stream with an error.

use crate::context::Context;
use crate::end_reason::EndReason;
use crate::error::{PublisherError, Result};
use crate::metrics;
use crate::source::ConsensusSource;
use dagstream_types::CommitIndex;
use futures::Stream;
use prometheus::Histogram;
use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::{Arc, Mutex, Weak};
use std::task::{self, Poll};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tonic::{Status, Streaming};

/// What a source has reached, as every response reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Heads {
    pub highest_commit_index: CommitIndex,
    pub highest_certified_checkpoint: Option<u64>,
}

impl Heads {
    pub fn of(source: &dyn ConsensusSource) -> Heads {
        Heads {
            highest_commit_index: source.highest_commit_index(),
            highest_certified_checkpoint: source.highest_certified_checkpoint(),
        }
    }
}

/// One queued response, which the session can take back. tonic polls the
/// response stream only when HTTP/2 has room to send, so a subscriber that
/// stopped reading would otherwise keep its whole queue alive for as long
/// as its connection stays open, long after its stream was cut.
type Slot<T> = Arc<Mutex<Option<Queued<T>>>>;

/// A response and when it was queued.
struct Queued<T> {
    response: T,
    at: std::time::Instant,
}

/// The response stream handed to tonic: the queued responses, unless the
/// session ended with an error, which is then delivered at once, ahead of
/// (and instead of) whatever is still queued.
pub struct ResponseStream<T> {
    responses: mpsc::Receiver<Slot<T>>,
    failure: Option<oneshot::Receiver<Status>>,
    /// Observes how long each response waited in the queue.
    queue_wait: Histogram,
}

impl<T> Stream for ResponseStream<T> {
    type Item = Result<T, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut task::Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(failure) = self.failure.as_mut() {
            match Pin::new(failure).poll(cx) {
                Poll::Ready(Ok(status)) => {
                    self.failure = None;
                    // Queued responses are dropped: their memory is freed now.
                    self.responses.close();
                    while self.responses.try_recv().is_ok() {}
                    return Poll::Ready(Some(Err(status)));
                }
                // The session ended without an error: drain what is queued.
                Poll::Ready(Err(_)) => self.failure = None,
                Poll::Pending => {}
            }
        }
        loop {
            match self.responses.poll_recv(cx) {
                Poll::Ready(Some(slot)) => {
                    // An empty slot was taken back by a failing session.
                    if let Some(queued) = take(&slot) {
                        self.queue_wait.observe(queued.at.elapsed().as_secs_f64());
                        return Poll::Ready(Some(Ok(queued.response)));
                    }
                }
                Poll::Ready(None) => return Poll::Ready(None),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// The answer to a request that could not be read because of what the
/// subscriber sent: bytes that do not decode (`INVALID_ARGUMENT`), or a
/// message over the size limit (`OUT_OF_RANGE`, as tonic reports it).
/// `None` for the subscriber going away (a reset, a broken connection),
/// where there is nobody to answer.
fn malformed(status: &Status) -> Option<Status> {
    match status.code() {
        tonic::Code::Internal if status.message().contains("decode") => Some(
            Status::invalid_argument(format!("malformed request: {}", status.message())),
        ),
        tonic::Code::OutOfRange => Some(status.clone()),
        _ => None,
    }
}

/// How a stream ends for a subscriber that did not make room in time.
pub(crate) fn too_slow() -> Status {
    Status::resource_exhausted("subscriber too slow")
}

fn take<T>(slot: &Mutex<Option<T>>) -> Option<T> {
    slot.lock().expect("slot lock poisoned").take()
}

use std::future::Future;

/// The session's side of a [`ResponseStream`].
pub struct Outbox<T> {
    responses: mpsc::Sender<Slot<T>>,
    /// The slots that may still be queued: at most the queue's length
    /// (older ones were received).
    queued: VecDeque<Weak<Mutex<Option<Queued<T>>>>>,
    queue_len: usize,
    failure: Option<oneshot::Sender<Status>>,
    slow_timeout: Duration,
    last_sent: Instant,
}

/// A response queue of `queue_len`, whose stream observes each response's
/// wait in `queue_wait`.
pub fn channel<T>(
    queue_len: usize,
    slow_timeout: Duration,
    queue_wait: Histogram,
) -> (Outbox<T>, ResponseStream<T>) {
    let (tx, rx) = mpsc::channel(queue_len);
    let (fail_tx, fail_rx) = oneshot::channel();
    (
        Outbox {
            responses: tx,
            queued: VecDeque::with_capacity(queue_len),
            queue_len,
            failure: Some(fail_tx),
            slow_timeout,
            last_sent: Instant::now(),
        },
        ResponseStream {
            responses: rx,
            failure: Some(fail_rx),
            queue_wait,
        },
    )
}

impl<T> Outbox<T> {
    /// Queues a response. Fails if the subscriber went away, or did not
    /// make room in the queue within the slow-subscriber timeout (the
    /// stream then ends with `RESOURCE_EXHAUSTED`).
    pub async fn send(&mut self, response: T) -> Result<(), EndReason> {
        let outcome = match tokio::time::timeout(self.slow_timeout, self.responses.reserve()).await
        {
            Ok(Ok(permit)) => {
                let slot = Arc::new(Mutex::new(Some(Queued {
                    response,
                    at: std::time::Instant::now(),
                })));
                if self.queued.len() == self.queue_len {
                    self.queued.pop_front();
                }
                self.queued.push_back(Arc::downgrade(&slot));
                permit.send(slot);
                Ok(())
            }
            Ok(Err(_)) => Err(EndReason::ClientClosed),
            Err(_) => Err(EndReason::TooSlow),
        };
        match outcome {
            Ok(()) => self.last_sent = Instant::now(),
            Err(EndReason::TooSlow) => self.fail(too_slow()),
            Err(_) => {}
        }
        outcome
    }

    /// Waits until the queue has room for one more response, so that the
    /// session builds a batch only once it can queue it: a stalled
    /// subscriber then costs its queue, not its queue and a batch. Fails as
    /// [`send`](Self::send) does; the caller ends the stream.
    pub async fn room(&self) -> Result<(), EndReason> {
        match tokio::time::timeout(self.slow_timeout, self.responses.reserve()).await {
            // Dropping the permit frees the slot again; only this session
            // sends, so it is still free when the batch is ready.
            Ok(Ok(_permit)) => Ok(()),
            Ok(Err(_)) => Err(EndReason::ClientClosed),
            Err(_) => Err(EndReason::TooSlow),
        }
    }

    /// Ends the stream with `status`, dropping anything still queued at
    /// once, whether or not tonic polls the stream again.
    pub fn fail(&mut self, status: Status) {
        for slot in self.queued.drain(..) {
            if let Some(slot) = slot.upgrade() {
                drop(take(&slot));
            }
        }
        if let Some(failure) = self.failure.take() {
            let _ = failure.send(status);
        }
    }

    /// Ends the session normally: the subscriber gets what is queued, then
    /// the end of the stream.
    pub fn finish(mut self) {
        self.failure = None;
    }

    /// When the last response was queued: heartbeats go out after a quiet
    /// interval.
    pub fn last_sent(&self) -> Instant {
        self.last_sent
    }

    /// Resolves when the subscriber has gone away.
    pub async fn closed(&self) {
        self.responses.closed().await
    }
}

impl<T> Drop for Outbox<T> {
    /// An outbox dropped without [`Outbox::finish`] or [`Outbox::fail`]
    /// means the session's task died (panicked): the subscriber must see an
    /// error, not a stream that looks complete.
    fn drop(&mut self) {
        if let Some(failure) = self.failure.take() {
            let _ = failure.send(Status::internal("the publisher's stream task failed"));
        }
    }
}

/// A subscriber's command, whichever the stream.
pub enum Command<S> {
    Start(S),
    Stop,
}

/// A batch ready to send, with what the metrics need.
pub struct Batch<R> {
    /// The response; its highest commit index is set when it is sent.
    pub response: R,
    pub items: usize,
    pub bytes: usize,
    /// Items the subscriber was behind before this batch.
    pub lag: u64,
    /// For a batch of live data, when its oldest item became ready to send
    /// (a block accepted, a commit certified); `None` for history.
    pub live_since: Option<std::time::Instant>,
}

/// What distinguishes one stream from the other; [`run`] does the rest.
pub trait StreamKind: Send + 'static {
    /// Metric label of the service.
    const SERVICE: &'static str;
    type Request: Send + 'static;
    type Response: Send + 'static;
    type Start;
    /// A started stream's position.
    type Cursor: Send;

    /// The request's command; `None` if it carries none.
    fn command(request: Self::Request) -> Option<Command<Self::Start>>;

    /// Validates a Start and positions the stream.
    fn start(shared: &Context, start: Self::Start) -> Result<Self::Cursor, (Status, EndReason)>;

    /// The next batch, waiting for data. Must be cancel-safe.
    fn next_batch<'a>(
        cursor: &'a mut Self::Cursor,
        shared: &'a Arc<Context>,
    ) -> impl std::future::Future<Output = Result<Batch<Self::Response>>> + Send + 'a;

    /// Sets the source's heads: its highest commit and certified
    /// checkpoint.
    fn set_highest(response: &mut Self::Response, heads: Heads);

    /// An empty response: a heartbeat.
    fn heartbeat(heads: Heads) -> Self::Response;

    /// The counter of items sent.
    fn items_sent(metrics: &metrics::PublisherMetrics) -> &prometheus::IntCounterVec;
}

/// Serves one stream until the subscriber leaves (cancels the call or
/// resets the stream), an error ends it, or the publisher shuts down:
/// commands in (rate-limited), batches out while started, heartbeats while
/// stopped or idle. A subscriber that half-closes its side has sent its
/// last command; the stream goes on as that command left it.
pub async fn run<K: StreamKind>(
    shared: Arc<Context>,
    mut requests: Streaming<K::Request>,
    mut outbox: Outbox<K::Response>,
    subscriber: String,
) -> EndReason {
    let service = K::SERVICE;
    let lag_gauge = shared
        .metrics
        .subscriber_lag
        .with_label_values(&[service, &subscriber]);
    // This stream's series, looked up once: a lookup hashes the labels
    // under a lock, for every batch of every subscriber.
    let metrics = &shared.metrics;
    let accept_to_queue = metrics.accept_to_queue.with_label_values(&[service]);
    let items_sent = K::items_sent(metrics).with_label_values(&[service]);
    let bytes_sent = metrics.bytes_sent.with_label_values(&[service]);
    let batch_size = metrics.batch_size.with_label_values(&[service]);
    let mut limiter = shared.command_limiter();
    let mut cursor: Option<K::Cursor> = None;
    // Until the subscriber half-closes its side.
    let mut commands_open = true;
    let mut shutdown = shared.shutdown.clone();
    let heartbeat = shared.config.heartbeat_interval();
    let reason = loop {
        let heartbeat_at = outbox.last_sent() + heartbeat;
        tokio::select! {
            biased;
            _ = shutdown.changed() => {
                outbox.fail(Status::unavailable("publisher is shutting down"));
                break EndReason::Shutdown;
            }
            message = requests.message(), if commands_open => {
                let request = match message {
                    Ok(Some(request)) => request,
                    // Half-close: no more commands, not a Stop. The stream
                    // goes on until the subscriber cancels it.
                    Ok(None) => {
                        commands_open = false;
                        continue;
                    }
                    Err(status) => match malformed(&status) {
                        Some(answer) => {
                            outbox.fail(answer);
                            break EndReason::InvalidArgument;
                        }
                        None => {
                            // Nobody to answer; the status says why, should
                            // a subscriber that is still there miss one.
                            tracing::debug!(%status, subscriber, service, "request stream failed");
                            break EndReason::ClientClosed;
                        }
                    },
                };
                if !limiter.allow(Instant::now().into_std()) {
                    outbox.fail(Status::resource_exhausted(format!(
                        "more than {} commands per second",
                        shared.config.max_commands_per_second
                    )));
                    break EndReason::RateLimited;
                }
                let command = K::command(request);
                let name = match &command {
                    Some(Command::Start(_)) => "start",
                    Some(Command::Stop) => "stop",
                    None => "none",
                };
                shared.metrics.commands.with_label_values(&[service, name]).inc();
                match command {
                    Some(Command::Start(start)) => match K::start(&shared, start) {
                        Ok(started) => cursor = Some(started),
                        Err((status, reason)) => {
                            outbox.fail(status);
                            break reason;
                        }
                    },
                    Some(Command::Stop) => cursor = None,
                    None => {
                        outbox.fail(Status::invalid_argument("request has no command"));
                        break EndReason::InvalidArgument;
                    }
                }
            }
            batch = async {
                outbox.room().await?;
                let cursor = cursor.as_mut().expect("branch enabled only when started");
                Ok(K::next_batch(cursor, &shared).await)
            }, if cursor.is_some() => {
                let batch = match batch {
                    Ok(batch) => batch,
                    Err(EndReason::TooSlow) => {
                        outbox.fail(too_slow());
                        break EndReason::TooSlow;
                    }
                    Err(reason) => break reason,
                };
                let mut batch = match batch {
                    Ok(batch) => batch,
                    Err(err @ PublisherError::Pruned { .. }) => {
                        tracing::info!(cause = %err, subscriber, service, "subscriber fell behind retention");
                        outbox.fail(err.into());
                        break EndReason::OutOfRange;
                    }
                    Err(err) => {
                        tracing::error!(cause = %err, subscriber, service, "stream failed");
                        outbox.fail(Status::internal(err.to_string()));
                        break EndReason::Internal;
                    }
                };
                lag_gauge.set(batch.lag.saturating_sub(batch.items as u64) as i64);
                K::set_highest(&mut batch.response, Heads::of(shared.source.as_ref()));
                if let Err(reason) = outbox.send(batch.response).await {
                    break reason;
                }
                if let Some(since) = batch.live_since {
                    accept_to_queue.observe(since.elapsed().as_secs_f64());
                }
                items_sent.inc_by(batch.items as u64);
                bytes_sent.inc_by(batch.bytes as u64);
                batch_size.observe(batch.items as f64);
            }
            _ = tokio::time::sleep_until(heartbeat_at) => {
                let response = K::heartbeat(Heads::of(shared.source.as_ref()));
                if let Err(reason) = outbox.send(response).await {
                    break reason;
                }
            }
            _ = outbox.closed() => break EndReason::ClientClosed,
        }
    };
    outbox.finish();
    let _ = shared
        .metrics
        .subscriber_lag
        .remove_label_values(&[service, &subscriber]);
    reason
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    fn channel<T>(queue_len: usize, slow_timeout: Duration) -> (Outbox<T>, ResponseStream<T>) {
        let wait = Histogram::with_opts(prometheus::HistogramOpts::new("wait", "wait")).unwrap();
        super::channel(queue_len, slow_timeout, wait)
    }

    #[tokio::test]
    async fn failure_overtakes_queued_responses() {
        let (mut outbox, mut stream) = channel::<u32>(4, Duration::from_secs(1));
        outbox.send(1).await.unwrap();
        outbox.send(2).await.unwrap();
        outbox.fail(too_slow());
        let first = stream.next().await.unwrap().unwrap_err();
        assert_eq!(first.code(), tonic::Code::ResourceExhausted);
        assert!(stream.next().await.is_none());
    }

    /// A cut subscriber's queue is freed at once, even if tonic never polls
    /// its stream again (its HTTP/2 window stays shut).
    #[tokio::test(start_paused = true)]
    async fn a_failure_frees_the_queue_without_a_poll() {
        let batch = Arc::new(vec![0u8; 1 << 20]);
        let (mut outbox, mut stream) = channel::<Arc<Vec<u8>>>(2, Duration::from_secs(30));
        outbox.send(batch.clone()).await.unwrap();
        outbox.send(batch.clone()).await.unwrap();
        assert_eq!(Arc::strong_count(&batch), 3);
        assert_eq!(outbox.send(batch.clone()).await, Err(EndReason::TooSlow));
        assert_eq!(Arc::strong_count(&batch), 1, "queued copies are dropped");
        let status = stream.next().await.unwrap().unwrap_err();
        assert_eq!(status.code(), tonic::Code::ResourceExhausted);
        assert!(stream.next().await.is_none());
    }

    #[tokio::test]
    async fn without_failure_everything_queued_is_delivered() {
        let (mut outbox, stream) = channel::<u32>(4, Duration::from_secs(1));
        outbox.send(1).await.unwrap();
        outbox.send(2).await.unwrap();
        outbox.finish();
        let items: Vec<_> = stream.map(|r| r.unwrap()).collect().await;
        assert_eq!(items, vec![1, 2]);
    }

    #[tokio::test]
    async fn a_session_that_dies_ends_the_stream_with_internal() {
        let (mut outbox, mut stream) = channel::<u32>(4, Duration::from_secs(1));
        outbox.send(1).await.unwrap();
        let task = tokio::spawn(async move {
            let _owned = outbox;
            panic!("session bug");
        });
        assert!(task.await.unwrap_err().is_panic());
        let status = stream.next().await.unwrap().unwrap_err();
        assert_eq!(status.code(), tonic::Code::Internal);
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_queue_times_out_as_too_slow() {
        let (mut outbox, mut stream) = channel::<u32>(1, Duration::from_secs(30));
        outbox.send(1).await.unwrap();
        // Nobody reads: after the timeout (virtual time) the session gives up.
        assert_eq!(outbox.send(2).await, Err(EndReason::TooSlow));
        let status = stream.next().await.unwrap().unwrap_err();
        assert_eq!(status.message(), "subscriber too slow");
    }

    #[tokio::test]
    async fn a_gone_subscriber_is_detected() {
        let (mut outbox, stream) = channel::<u32>(1, Duration::from_secs(30));
        drop(stream);
        assert_eq!(outbox.send(1).await, Err(EndReason::ClientClosed));
    }
}
