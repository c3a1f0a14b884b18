//! [`Offload`]: where a node's synchronous work runs — signature checks,
//! batches read from the store, store writes.

use tokio::task::JoinHandle;

/// Where a node runs its synchronous work.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Offload {
    /// On tokio's blocking pool, beside the runtime's tasks: the default,
    /// so that a signature check or an fsync never holds up the streams.
    #[default]
    BlockingPool,
    /// On the runtime, as a task of its own: for a deterministic
    /// simulation on a single-threaded runtime, where work on another
    /// thread would finish at an instant that no seed decides.
    Inline,
}

impl Offload {
    /// Runs `work` where this says, and returns its handle.
    pub fn spawn<T: Send + 'static>(
        self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> JoinHandle<T> {
        match self {
            Offload::BlockingPool => tokio::task::spawn_blocking(work),
            Offload::Inline => tokio::task::spawn(async move { work() }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "current_thread")]
    async fn inline_work_runs_on_the_runtime_thread_and_pool_work_off_it() {
        let here = std::thread::current().id();
        let inline = Offload::Inline.spawn(|| std::thread::current().id());
        let pooled = Offload::BlockingPool.spawn(|| std::thread::current().id());
        assert_eq!(inline.await.unwrap(), here);
        assert_ne!(pooled.await.unwrap(), here);
    }
}
