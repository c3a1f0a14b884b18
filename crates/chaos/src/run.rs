//! One seed, end to end: build the simulated deployment, apply the seed's
//! [`Plan`], check the invariants after every step, and wait for every
//! observer to catch up once the faults have healed.

use crate::check::{Checker, Reference, Shared};
use crate::hosts::{Observer, Validator, PORT};
use crate::plan::{Event, Fault, Plan, Shape};
use dagstream_observer::ObserverConfig;
use dagstream_publisher::{Offload, PublisherConfig};
use dagstream_sim::SimConfig;
use dagstream_store::MemStore;
use dagstream_test_utils::TestCommittee;
use std::cell::Cell;
use std::fmt;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// The environment variable that [`replay_command`] sets.
pub const SEED_ENV: &str = "DAGSTREAM_SIM_SEED";

/// The environment variable of the ignored test that runs many seeds.
pub const SEEDS_ENV: &str = "DAGSTREAM_SIM_SEEDS";

/// Authorities of the simulated committee: the smallest with a Byzantine
/// third (f = 1).
const AUTHORITIES: usize = 4;

/// The seed of the genesis and of the chain: the same in every run, so
/// that only the faults vary with the seed.
const CHAIN_SEED: u64 = 1;

/// How far ahead the Byzantine validator's clock runs: 10 s, a hundred
/// rounds, so that it claims a tip past every honest one.
const BYZANTINE_AHEAD_MS: u64 = 10_000;

/// One simulated millisecond per step: the network's latency and every
/// timer resolve to it.
const TICK: Duration = Duration::from_millis(1);

/// Latency of the links the plan does not name (to the Byzantine
/// upstream, between validators): fixed, like every link's (see
/// [`Plan::link_latency_ms`]).
const OTHER_LINK_MS: u64 = 2;

/// How long after the last fault heals every observer must have caught up.
pub const CATCH_UP_MS: u64 = 20_000;

/// The command that replays `seed`.
pub fn replay_command(seed: u64) -> String {
    format!(
        "{SEED_ENV}={seed} cargo test -p dagstream-chaos --test seeds replay -- --ignored --nocapture"
    )
}

/// What a seed's run did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub seed: u64,
    pub faults: usize,
    /// When every observer had caught up, in simulated ms.
    pub caught_up_ms: u64,
    /// The honest chain's certified tip that they caught up to.
    pub target: u64,
    /// Commits each observer's consumer processed, exactly once each.
    pub delivered: Vec<u64>,
    /// Upstream sessions each observer opened (its last incarnation).
    pub connections: Vec<u64>,
    /// The epoch of the last commit each observer's consumer processed:
    /// how many hand-offs it crossed.
    pub epochs: Vec<u64>,
    /// The plan's epoch length in rounds (0: one epoch).
    pub epoch_rounds: u64,
    /// Integrity faults each observer's last incarnation blamed on an
    /// upstream, as the last one it saw.
    pub last_fault: Vec<Option<String>>,
    /// The digest of every delivery and status the checks saw, with its
    /// time: equal in two runs that took the same course.
    pub trace: String,
}

/// Why a seed failed.
#[derive(Debug)]
pub struct Failure {
    pub seed: u64,
    pub plan: Plan,
    pub reason: String,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "seed {} failed: {}", self.seed, self.reason)?;
        write!(f, "{}", self.plan)?;
        write!(f, "replay: {}", replay_command(self.seed))
    }
}

/// The observers' configuration in the simulation: the defaults, with the
/// timeouts of a seconds-long run instead of a months-long one, and the
/// synchronous work inline so that it happens at a simulated instant.
pub fn observer_config() -> ObserverConfig {
    ObserverConfig {
        offload: Offload::Inline,
        stall_timeout_ms: 2_000,
        faulty_cooldown_ms: 5_000,
        backoff_max_ms: 2_000,
        probe_interval_ms: 500,
        degrade_after_ms: 10_000,
        ..ObserverConfig::default()
    }
}

fn publisher_config() -> PublisherConfig {
    PublisherConfig {
        offload: Offload::Inline,
        // A dead connection's streams are reaped after a few seconds.
        keepalive_interval_ms: 1_000,
        keepalive_timeout_ms: 2_000,
        ..PublisherConfig::default()
    }
}

fn honest(index: usize) -> String {
    format!("honest-{index}")
}

fn observer(index: usize) -> String {
    format!("observer-{index}")
}

const BYZANTINE: &str = "byzantine";

/// How a run is set up, beyond its seed.
#[derive(Clone, Debug, Default)]
pub struct Options {
    pub shape: Shape,
    /// A consumer that restarts resumes this many commits before the last
    /// one it processed: 0, as the contract asks, unless a test checks
    /// that the repeats this causes are caught.
    pub resume_behind: u64,
}

/// Runs `seed` with the default [`Options`].
pub fn run(seed: u64) -> Result<Report, Failure> {
    run_with(seed, &Options::default())
}

/// Runs `seed` with `options`.
pub fn run_with(seed: u64, options: &Options) -> Result<Report, Failure> {
    let shape = &options.shape;
    let plan = Plan::generate(seed, shape);
    let fail = |reason: String| Failure {
        seed,
        plan: plan.clone(),
        reason,
    };
    let genesis = TestCommittee::new(AUTHORITIES, CHAIN_SEED);
    // Same size and stake, other keys: what it signs verifies under no key
    // of the genesis committee.
    let forged = TestCommittee::new(AUTHORITIES, CHAIN_SEED + 1);
    let sim_config = SimConfig {
        seed: CHAIN_SEED,
        epoch_rounds: plan.epoch_rounds,
        ..SimConfig::default()
    };
    let config = observer_config();
    let checker: Shared = Checker::new(
        Reference::new(genesis.simulator(sim_config.clone())),
        shape.observers,
        &config,
    );
    // Every run lasts the whole fault window, faults or none, so that the
    // observers have a chain to follow and the Byzantine upstream time to
    // draw them.
    let healed_ms = plan.healed_ms().max(shape.fault_window_ms);
    let mut sim = turmoil::Builder::new()
        .simulation_duration(Duration::from_millis(healed_ms + CATCH_UP_MS + 1_000))
        .tick_duration(TICK)
        .min_message_latency(Duration::from_millis(OTHER_LINK_MS))
        .max_message_latency(Duration::from_millis(OTHER_LINK_MS))
        .epoch(std::time::UNIX_EPOCH)
        .rng_seed(seed)
        .build();

    let validator = |committee: &TestCommittee, ahead_ms| Validator {
        committee: committee.committee.clone(),
        keys: committee.keys.clone(),
        served: genesis.committee.clone(),
        sim: sim_config.clone(),
        publisher: publisher_config(),
        ahead_ms,
        store: Arc::new(MemStore::new()),
    };
    for index in 0..shape.honest_upstreams {
        let host = validator(&genesis, 0);
        sim.host(honest(index), move || host.clone().run());
    }
    let byzantine = validator(&forged, BYZANTINE_AHEAD_MS);
    sim.host(BYZANTINE, move || byzantine.clone().run());

    let mut addresses: Vec<String> = (0..shape.honest_upstreams)
        .map(honest)
        .chain([BYZANTINE.to_string()])
        .map(|host| format!("http://{host}:{PORT}"))
        .collect();
    let stalls: Vec<Rc<Cell<u64>>> = (0..shape.observers)
        .map(|_| Rc::new(Cell::new(0)))
        .collect();
    let stores: Vec<Arc<MemStore>> = (0..shape.observers)
        .map(|_| Arc::new(MemStore::new()))
        .collect();
    for (index, stalled_until) in stalls.iter().enumerate() {
        let host = Observer {
            index,
            committee: genesis.committee.clone(),
            upstreams: addresses.clone(),
            config: config.clone(),
            store: stores[index].clone(),
            checker: checker.clone(),
            stalled_until: stalled_until.clone(),
            resume_behind: options.resume_behind,
        };
        sim.host(observer(index), move || host.clone().run());
        // Each observer lists the upstreams in another order.
        addresses.rotate_left(1);
    }

    // Each fault's start and end, by time; ends first at equal times.
    let mut actions: Vec<(u64, bool, Event)> = plan
        .events
        .iter()
        .flat_map(|&e| [(e.at_ms, true, e), (e.ends_ms(), false, e)])
        .collect();
    actions.sort_by_key(|&(at, starts, _)| (at, starts));
    let mut actions = actions.into_iter().peekable();
    let link = |o: usize, u: usize| Duration::from_millis(plan.link_latency_ms[o][u]);
    for o in 0..shape.observers {
        for u in 0..shape.honest_upstreams {
            sim.set_link_latency(observer(o), honest(u), link(o, u));
        }
    }
    let mut target = None;
    loop {
        let now_ms = sim.elapsed().as_millis() as u64;
        while let Some((_, starts, event)) = actions.next_if(|&(at, _, _)| at <= now_ms) {
            match (event.fault, starts) {
                (
                    Fault::Partition {
                        observer: o,
                        upstream: u,
                    },
                    true,
                ) => sim.partition(observer(o), honest(u)),
                (
                    Fault::Partition {
                        observer: o,
                        upstream: u,
                    },
                    false,
                ) => sim.repair(observer(o), honest(u)),
                (
                    Fault::LatencySpike {
                        observer: o,
                        upstream: u,
                        latency_ms,
                    },
                    true,
                ) => {
                    sim.set_link_latency(observer(o), honest(u), Duration::from_millis(latency_ms))
                }
                (
                    Fault::LatencySpike {
                        observer: o,
                        upstream: u,
                        ..
                    },
                    false,
                ) => sim.set_link_latency(observer(o), honest(u), link(o, u)),
                (Fault::CrashUpstream { upstream }, true) => sim.crash(honest(upstream)),
                (Fault::CrashUpstream { upstream }, false) => sim.bounce(honest(upstream)),
                (Fault::CrashObserver { observer: o }, true) => sim.crash(observer(o)),
                (Fault::CrashObserver { observer: o }, false) => sim.bounce(observer(o)),
                (Fault::StallConsumer { observer: o }, true) => {
                    stalls[o].set(stalls[o].get().max(event.ends_ms()))
                }
                (Fault::StallConsumer { .. }, false) => {}
            }
        }
        if let Err(err) = sim.step() {
            return Err(fail(format!("a host failed: {err}")));
        }
        let mut checker = checker.borrow_mut();
        for (index, store) in stores.iter().enumerate() {
            checker.persisted(now_ms, index, store.as_ref());
        }
        if let Some(first) = checker.violations.first() {
            return Err(fail(first.to_string()));
        }
        if now_ms < healed_ms {
            continue;
        }
        // The honest tip when the last fault healed.
        let target = *target.get_or_insert_with(|| {
            let round = healed_ms / dagstream_test_utils::ROUND_INTERVAL_MS;
            checker.certified_at_round(round)
        });
        if checker.outputs.iter().all(|o| o.last_index() >= target) {
            return Ok(Report {
                seed,
                faults: plan.events.len(),
                caught_up_ms: now_ms,
                target,
                delivered: checker.outputs.iter().map(|o| o.last_index()).collect(),
                connections: checker
                    .outputs
                    .iter()
                    .map(|o| o.status.connections)
                    .collect(),
                epochs: checker
                    .outputs
                    .iter()
                    .map(|o| checker.reference.epoch_of(o.last_index()))
                    .collect(),
                epoch_rounds: plan.epoch_rounds,
                last_fault: checker
                    .outputs
                    .iter()
                    .map(|o| o.status.last_fault.clone())
                    .collect(),
                trace: checker.trace(),
            });
        }
        if now_ms > healed_ms + CATCH_UP_MS {
            let behind: Vec<u64> = checker.outputs.iter().map(|o| o.last_index()).collect();
            return Err(fail(format!(
                "{CATCH_UP_MS} ms after the last fault healed, the observers are at {behind:?}, \
                 not yet at commit {target}"
            )));
        }
    }
}
