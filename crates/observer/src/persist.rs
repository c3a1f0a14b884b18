//! Persistence behind verification: a sequenced batch is written on the
//! blocking pool (or where [`Offload`] says) while the node verifies the
//! next one.
//!
//! At most one write is in flight. The node hands each batch over
//! ([`Persister::start`]) only after the previous one is durable
//! ([`Persister::finish`]), so batches reach the store in sequence order,
//! and the sequencer's rule (write a batch before sequencing the next)
//! holds. What a write made durable goes to the consumer only once it is.
//! The cost of overlapping is one batch of memory, which the sequencer
//! already bounds.

use crate::delivery::DeliveredSubDag;
use crate::sequencer::Sequenced;
use crate::Result;
use dagstream_publisher::{Offload, StoreSource};
use dagstream_types::CommitIndex;
use std::sync::Arc;
use tokio::task::JoinHandle;

/// Writes sequenced batches through the relay source, one at a time.
pub(crate) struct Persister {
    source: Arc<StoreSource>,
    offload: Offload,
    in_flight: Option<InFlight>,
}

struct InFlight {
    write: JoinHandle<Result<()>>,
    sub_dags: Vec<DeliveredSubDag>,
}

impl Persister {
    pub fn new(source: Arc<StoreSource>, offload: Offload) -> Persister {
        Persister {
            source,
            offload,
            in_flight: None,
        }
    }

    /// Whether a write is in flight.
    pub fn busy(&self) -> bool {
        self.in_flight.is_some()
    }

    /// The first commit of the write in flight, if any.
    pub fn writing_from(&self) -> Option<CommitIndex> {
        let in_flight = self.in_flight.as_ref()?;
        in_flight.sub_dags.first().map(|c| c.index())
    }

    /// Starts writing `sequenced`. The previous write must be finished.
    pub fn start(&mut self, sequenced: Sequenced) {
        debug_assert!(self.in_flight.is_none(), "one write at a time");
        let source = self.source.clone();
        let batch = sequenced.batch;
        let write = self.offload.spawn(move || Ok(source.write(batch)?));
        self.in_flight = Some(InFlight {
            write,
            sub_dags: sequenced.sub_dags,
        });
    }

    /// Waits for the write in flight, if any, and returns the commits it
    /// made durable. Cancel-safe: if the wait is dropped, the write stays in
    /// flight and the next call waits for it again.
    pub async fn finish(&mut self) -> Result<Vec<DeliveredSubDag>> {
        let Some(in_flight) = self.in_flight.as_mut() else {
            return Ok(Vec::new());
        };
        let written = (&mut in_flight.write)
            .await
            .expect("store writes do not panic");
        let in_flight = self.in_flight.take().expect("checked above");
        written.map(|()| in_flight.sub_dags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sequencer::Sequencer;
    use dagstream_sim::SimConfig;
    use dagstream_store::Store;
    use dagstream_test_utils::store::{HookedStore, StoreHooks};
    use dagstream_test_utils::TestCommittee;
    use futures::FutureExt;
    use std::sync::mpsc;
    use std::sync::Mutex;

    /// Holds each write until the test gives a go-ahead.
    struct Gate(Mutex<mpsc::Receiver<()>>);

    impl StoreHooks for Gate {
        fn before_write(&self) {
            let _ = self.0.lock().unwrap().recv();
        }
    }

    #[tokio::test]
    async fn commits_are_handed_back_only_once_durable() {
        let fixture = TestCommittee::new(4, 5);
        let mut sim = fixture.simulator(SimConfig::default());
        let commits: Vec<_> = (0..10)
            .flat_map(|_| sim.produce_round().unwrap().commits)
            .collect();
        assert!(!commits.is_empty());
        let (go, gate) = mpsc::channel();
        let store = Arc::new(HookedStore::new(Gate(Mutex::new(gate))));
        let source = Arc::new(StoreSource::new(store.clone(), fixture.committee.clone()).unwrap());
        let mut sequencer =
            Sequencer::recover(store.as_ref(), fixture.committee.clone(), None).unwrap();
        let mut persister = Persister::new(source, Offload::default());
        assert!(persister.finish().await.unwrap().is_empty());

        let sequenced = sequencer.sequence(commits.clone(), store.as_ref());
        persister.start(sequenced.unwrap().unwrap());
        assert!(persister.busy());
        assert_eq!(persister.writing_from(), Some(commits[0].index()));
        // The write waits at the gate: nothing is durable, nothing comes back.
        assert!(persister.finish().now_or_never().is_none());
        assert_eq!(store.last_commit_index().unwrap(), 0);

        go.send(()).unwrap();
        let written = persister.finish().await.unwrap();
        assert!(!persister.busy());
        assert_eq!(persister.writing_from(), None);
        let indexes: Vec<_> = written.iter().map(|c| c.index()).collect();
        let expected: Vec<_> = commits.iter().map(|c| c.index()).collect();
        assert_eq!(indexes, expected);
        assert_eq!(
            store.last_commit_index().unwrap(),
            *expected.last().unwrap()
        );
    }
}
