//! The fault plan: what goes wrong, where and when, as a pure function of
//! the seed. Nothing here touches the network: the run loop (`run.rs`) applies it.

use dagstream_sim::rng::SeededStream;
use std::fmt;

/// The shape of a simulated deployment and of its trouble.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shape {
    /// Honest validators, each with its own store and publisher, all
    /// producing the same chain.
    pub honest_upstreams: usize,
    /// Observers, each following every upstream (the Byzantine one too).
    pub observers: usize,
    /// Faults in one plan, at least and at most.
    pub faults: (usize, usize),
    /// Faults start in `[1 s, fault_window_ms)`.
    pub fault_window_ms: u64,
    /// A fault lasts at most this long; every fault has healed by
    /// `fault_window_ms + max_fault_ms`.
    pub max_fault_ms: u64,
}

impl Default for Shape {
    /// Two honest validators and a Byzantine one, two observers, and four
    /// to eight faults in the first 12 s, each healed within 4 s.
    fn default() -> Self {
        Shape {
            honest_upstreams: 2,
            observers: 2,
            faults: (4, 8),
            fault_window_ms: 12_000,
            max_fault_ms: 4_000,
        }
    }
}

/// One kind of trouble. Upstream and observer numbers index the honest
/// upstreams and the observers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Every packet between the two is dropped: open connections die (the
    /// observer notices by its stall timeout), new ones cannot be made.
    Partition { observer: usize, upstream: usize },
    /// Every packet between the two takes this long.
    LatencySpike {
        observer: usize,
        upstream: usize,
        latency_ms: u64,
    },
    /// The validator's process dies; it restarts on its store when the
    /// fault ends.
    CrashUpstream { upstream: usize },
    /// The observer's process dies; it restarts on its store, and its
    /// consumer resumes from its own durable output, when the fault ends.
    CrashObserver { observer: usize },
    /// The observer's consumer stops reading.
    StallConsumer { observer: usize },
}

/// A fault from `at_ms` (simulated time) for `lasts_ms`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    pub at_ms: u64,
    pub lasts_ms: u64,
    pub fault: Fault,
}

impl Event {
    pub fn ends_ms(&self) -> u64 {
        self.at_ms + self.lasts_ms
    }
}

/// Every fault of one seed, by start time, and the latency of each link.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plan {
    pub seed: u64,
    pub events: Vec<Event>,
    /// The latency of each link between an observer and an honest
    /// upstream, `[observer][upstream]`, outside a spike. Fixed per link:
    /// latencies drawn per packet would be drawn in the order packets are
    /// sent, and a crash sends its resets in the order the runtime drops
    /// its tasks, which no seed decides.
    pub link_latency_ms: Vec<Vec<u64>>,
    /// The chain's epoch length in rounds ([`SimConfig::epoch_rounds`],
    /// 0: one epoch): committee hand-offs happen under the faults.
    ///
    /// [`SimConfig::epoch_rounds`]: dagstream_sim::SimConfig::epoch_rounds
    pub epoch_rounds: u64,
}

/// The kinds of fault, drawn with equal weight.
const KINDS: u64 = 5;

/// The shortest fault: shorter ones would rarely outlast a round.
const MIN_FAULT_MS: u64 = 200;

/// Latency of a link outside a spike, at least and at most: one data
/// centre to a neighbouring one.
pub const LINK_MS: (u64, u64) = (1, 5);

/// Latency of a spike, at least and at most: from a slow link to one past
/// the observer's stall timeout.
const SPIKE_MS: (u64, u64) = (50, 2_500);

/// Epoch lengths a plan draws from, in rounds: none, or from a hand-off
/// every 2 s of the chain (100 ms rounds) to one every 4.5 s, so that a
/// run of some 12 s or more crosses at least two, faults or not.
const EPOCH_ROUNDS: [u64; 4] = [0, 20, 30, 45];

impl Plan {
    /// The plan of `seed` for `shape`: the same arguments give the same
    /// plan on any machine.
    pub fn generate(seed: u64, shape: &Shape) -> Plan {
        let mut rng = SeededStream::new(seed, "chaos-plan", 0, 0);
        let (least, most) = shape.faults;
        let count = least + rng.below((most - least + 1) as u64) as usize;
        let mut events: Vec<Event> = (0..count)
            .map(|_| {
                let at_ms = 1_000 + rng.below(shape.fault_window_ms.saturating_sub(1_000).max(1));
                let lasts_ms = MIN_FAULT_MS + rng.below(shape.max_fault_ms - MIN_FAULT_MS + 1);
                let observer = rng.below(shape.observers as u64) as usize;
                let upstream = rng.below(shape.honest_upstreams as u64) as usize;
                let fault = match rng.below(KINDS) {
                    0 => Fault::Partition { observer, upstream },
                    1 => Fault::LatencySpike {
                        observer,
                        upstream,
                        latency_ms: SPIKE_MS.0 + rng.below(SPIKE_MS.1 - SPIKE_MS.0 + 1),
                    },
                    2 => Fault::CrashUpstream { upstream },
                    3 => Fault::CrashObserver { observer },
                    _ => Fault::StallConsumer { observer },
                };
                Event {
                    at_ms,
                    lasts_ms,
                    fault,
                }
            })
            .collect();
        events.sort_by_key(|e| e.at_ms);
        let link_latency_ms = (0..shape.observers)
            .map(|_| {
                (0..shape.honest_upstreams)
                    .map(|_| LINK_MS.0 + rng.below(LINK_MS.1 - LINK_MS.0 + 1))
                    .collect()
            })
            .collect();
        // Drawn last, so that the faults of a seed are those it had before
        // epochs were drawn.
        let epoch_rounds = EPOCH_ROUNDS[rng.below(EPOCH_ROUNDS.len() as u64) as usize];
        Plan {
            seed,
            events,
            link_latency_ms,
            epoch_rounds,
        }
    }

    /// When the last fault ends: from then on nothing is wrong but the
    /// Byzantine upstream.
    pub fn healed_ms(&self) -> u64 {
        self.events.iter().map(Event::ends_ms).max().unwrap_or(0)
    }
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "plan of seed {}:", self.seed)?;
        writeln!(
            f,
            "  link latencies (ms, observer by upstream): {:?}",
            self.link_latency_ms
        )?;
        match self.epoch_rounds {
            0 => writeln!(f, "  one epoch")?,
            rounds => writeln!(f, "  an epoch every {rounds} rounds")?,
        }
        for event in &self.events {
            writeln!(
                f,
                "  {:>6} ms for {:>5} ms: {:?}",
                event.at_ms, event.lasts_ms, event.fault
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_seed_gives_one_plan_and_seeds_differ() {
        let shape = Shape::default();
        assert_eq!(Plan::generate(7, &shape), Plan::generate(7, &shape));
        assert_ne!(Plan::generate(7, &shape), Plan::generate(8, &shape));
    }

    #[test]
    fn plans_stay_in_their_shape() {
        let shape = Shape::default();
        for seed in 0..200 {
            let plan = Plan::generate(seed, &shape);
            let count = plan.events.len();
            assert!((shape.faults.0..=shape.faults.1).contains(&count), "{plan}");
            assert!(plan.events.windows(2).all(|w| w[0].at_ms <= w[1].at_ms));
            for event in &plan.events {
                assert!((1_000..shape.fault_window_ms).contains(&event.at_ms));
                assert!((MIN_FAULT_MS..=shape.max_fault_ms).contains(&event.lasts_ms));
                let (observer, upstream) = match event.fault {
                    Fault::Partition { observer, upstream }
                    | Fault::LatencySpike {
                        observer, upstream, ..
                    } => (observer, upstream),
                    Fault::CrashUpstream { upstream } => (0, upstream),
                    Fault::CrashObserver { observer } | Fault::StallConsumer { observer } => {
                        (observer, 0)
                    }
                };
                assert!(observer < shape.observers && upstream < shape.honest_upstreams);
            }
            assert!(plan.healed_ms() <= shape.fault_window_ms + shape.max_fault_ms);
            assert_eq!(plan.link_latency_ms.len(), shape.observers);
            for links in &plan.link_latency_ms {
                assert_eq!(links.len(), shape.honest_upstreams);
                assert!(links.iter().all(|ms| (LINK_MS.0..=LINK_MS.1).contains(ms)));
            }
        }
    }

    /// The first 50 seeds, which CI runs, meet every kind of fault, each
    /// more than once.
    #[test]
    fn the_ci_seeds_cover_every_kind_of_fault() {
        let shape = Shape::default();
        let mut counts = [0usize; KINDS as usize];
        for seed in 0..50 {
            for event in Plan::generate(seed, &shape).events {
                let kind = match event.fault {
                    Fault::Partition { .. } => 0,
                    Fault::LatencySpike { .. } => 1,
                    Fault::CrashUpstream { .. } => 2,
                    Fault::CrashObserver { .. } => 3,
                    Fault::StallConsumer { .. } => 4,
                };
                counts[kind] += 1;
            }
        }
        assert!(counts.iter().all(|&n| n >= 20), "{counts:?}");
    }

    /// Most of the CI seeds change epochs, at every length drawn.
    #[test]
    fn the_ci_seeds_change_epochs() {
        let shape = Shape::default();
        let lengths: Vec<u64> = (0..50)
            .map(|seed| Plan::generate(seed, &shape).epoch_rounds)
            .collect();
        for length in EPOCH_ROUNDS {
            assert!(lengths.contains(&length), "{lengths:?}");
        }
        assert!(
            lengths.iter().filter(|&&l| l > 0).count() >= 30,
            "{lengths:?}"
        );
    }
}
