//! Plumbing shared by both streams: the response queue, slow-subscriber
//! detection, and ending a stream with an error.

use futures::Stream;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;
use tonic::Status;

/// Why a stream's task ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// The subscriber closed its request stream or went away.
    ClientClosed,
    /// The subscriber did not drain its stream in time.
    TooSlow,
    /// A command was invalid.
    InvalidArgument,
    /// A commit-stream Start asked for pruned commits.
    OutOfRange,
    /// Commands came faster than the configured rate.
    RateLimited,
    /// The publisher failed to read its source.
    Internal,
    /// The publisher is shutting down.
    Shutdown,
}

impl EndReason {
    /// Metric label.
    pub fn name(self) -> &'static str {
        match self {
            EndReason::ClientClosed => "client_closed",
            EndReason::TooSlow => "too_slow",
            EndReason::InvalidArgument => "invalid_argument",
            EndReason::OutOfRange => "out_of_range",
            EndReason::RateLimited => "rate_limited",
            EndReason::Internal => "internal",
            EndReason::Shutdown => "shutdown",
        }
    }
}

/// The response stream handed to tonic: the queued responses, unless the
/// session ended with an error, which is then delivered at once, ahead of
/// (and instead of) whatever is still queued.
pub struct ResponseStream<T> {
    responses: mpsc::Receiver<T>,
    failure: Option<oneshot::Receiver<Status>>,
}

impl<T> Stream for ResponseStream<T> {
    type Item = Result<T, Status>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
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
        self.responses.poll_recv(cx).map(|item| item.map(Ok))
    }
}

use std::future::Future;

/// The session's side of a [`ResponseStream`].
pub struct Outbox<T> {
    responses: mpsc::Sender<T>,
    failure: Option<oneshot::Sender<Status>>,
    slow_timeout: Duration,
    last_sent: Instant,
}

pub fn channel<T>(queue_len: usize, slow_timeout: Duration) -> (Outbox<T>, ResponseStream<T>) {
    let (tx, rx) = mpsc::channel(queue_len);
    let (fail_tx, fail_rx) = oneshot::channel();
    (
        Outbox {
            responses: tx,
            failure: Some(fail_tx),
            slow_timeout,
            last_sent: Instant::now(),
        },
        ResponseStream {
            responses: rx,
            failure: Some(fail_rx),
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
                permit.send(response);
                Ok(())
            }
            Ok(Err(_)) => Err(EndReason::ClientClosed),
            Err(_) => Err(EndReason::TooSlow),
        };
        match outcome {
            Ok(()) => self.last_sent = Instant::now(),
            Err(EndReason::TooSlow) => self.fail(Status::resource_exhausted("subscriber too slow")),
            Err(_) => {}
        }
        outcome
    }

    /// Ends the stream with `status`, dropping anything still queued.
    pub fn fail(&mut self, status: Status) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    #[tokio::test]
    async fn failure_overtakes_queued_responses() {
        let (mut outbox, mut stream) = channel::<u32>(4, Duration::from_secs(1));
        outbox.send(1).await.unwrap();
        outbox.send(2).await.unwrap();
        outbox.fail(Status::resource_exhausted("subscriber too slow"));
        let first = stream.next().await.unwrap().unwrap_err();
        assert_eq!(first.code(), tonic::Code::ResourceExhausted);
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
