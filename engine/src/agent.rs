//! Agents and the threads that run them.
//!
//! Everything long-running in tern is an [`Agent`]: a duty cycle that does a bounded amount of
//! work and says how much. An agent runs on its own thread under an [`IdleStrategy`]
//! ([`AgentRunner`]), is composed with others onto one thread ([`CompositeAgent`]: the driver's
//! *shared* and *shared-network* modes), or is invoked by the application on its own thread.
//! The runner reads its [`Clock`] once per duty cycle and hands the reading ([`Now`]) to the
//! agent, which never reads a clock itself: tests give a [`ManualClock`] and step agents by hand.
//!
//! A panic in an agent's duty cycle is caught by its runner, handed to the agent's
//! [`Agent::on_panic`] (the driver writes it to its error log), kept for
//! [`AgentRunner::failure`], and stops that runner: a dead agent never looks alive.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// The time as one duty cycle sees it: read once by the runner, the same for every agent it runs
/// in that cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    /// A monotonic clock in nanoseconds, for timeouts and intervals.
    pub nanos: i64,
    /// Milliseconds since the Unix epoch, for timestamps people read and other processes compare
    /// (heartbeats, error log times, counter reuse deadlines).
    pub epoch_ms: i64,
}

/// Where runners read the time.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// The time now.
    fn now(&self) -> Now;
}

/// The machine's clocks: [`nano_time`] read each time, and the epoch derived from it with an
/// offset to [`epoch_ms`] that is read again every [`EPOCH_REFRESH_NS`] (so a duty cycle costs
/// one clock read, not two, and a wall clock stepped by NTP or an operator is followed within
/// the refresh).
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

/// How often [`SystemClock`] reads the wall clock again.
pub const EPOCH_REFRESH_NS: i64 = 10_000_000;

/// Epoch nanoseconds minus [`nano_time`] at the last refresh, and when the next is due. Shared
/// by every thread of the process; the two may be seen out of step, which costs at most one
/// reading with the previous offset (a refresh old).
static EPOCH_OFFSET_NS: AtomicI64 = AtomicI64::new(0);
static NEXT_EPOCH_REFRESH_NS: AtomicI64 = AtomicI64::new(i64::MIN);

impl Clock for SystemClock {
    #[inline]
    fn now(&self) -> Now {
        let nanos = nano_time();
        if nanos >= NEXT_EPOCH_REFRESH_NS.load(Ordering::Acquire) {
            refresh_epoch();
        }
        let epoch_ns = nanos.saturating_add(EPOCH_OFFSET_NS.load(Ordering::Acquire));
        Now {
            nanos,
            epoch_ms: epoch_ns / 1_000_000,
        }
    }
}

/// Reads the wall clock between two readings of the monotonic one: a pair taken close together
/// (a thread preempted between them would make the offset wrong by the pause) sets the offset;
/// otherwise the previous offset stays, and the next call tries again.
#[cold]
fn refresh_epoch() {
    /// How far apart the two monotonic readings may be.
    const CLOSE_NS: i64 = 20_000;
    let before = nano_time();
    let epoch_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_nanos()).unwrap_or(i64::MAX)
        });
    let after = nano_time();
    let first = NEXT_EPOCH_REFRESH_NS.load(Ordering::Acquire) == i64::MIN;
    if after - before > CLOSE_NS && !first {
        return;
    }
    let nanos = before + (after - before) / 2;
    EPOCH_OFFSET_NS.store(epoch_ns.saturating_sub(nanos), Ordering::Release);
    NEXT_EPOCH_REFRESH_NS.store(nanos.saturating_add(EPOCH_REFRESH_NS), Ordering::Release);
}

/// A clock that moves only when told: tests step agents through timeouts without sleeping.
/// Both readings move together (the epoch is kept in nanoseconds, so steps under a millisecond
/// add up).
#[derive(Debug)]
pub struct ManualClock {
    nanos: AtomicI64,
    epoch_ns: AtomicI64,
}

impl ManualClock {
    /// A clock at `now`.
    pub fn new(now: Now) -> Self {
        Self {
            nanos: AtomicI64::new(now.nanos),
            epoch_ns: AtomicI64::new(now.epoch_ms.saturating_mul(1_000_000)),
        }
    }

    /// A clock reading what the system clock reads now, then moving only when advanced.
    pub fn starting_now() -> Self {
        Self::new(SystemClock.now())
    }

    /// Moves both readings forward by `step`.
    pub fn advance(&self, step: Duration) {
        let nanos = i64::try_from(step.as_nanos()).unwrap_or(i64::MAX);
        self.nanos.fetch_add(nanos, Ordering::AcqRel);
        self.epoch_ns.fetch_add(nanos, Ordering::AcqRel);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Now {
        Now {
            nanos: self.nanos.load(Ordering::Acquire),
            epoch_ms: self.epoch_ns.load(Ordering::Acquire) / 1_000_000,
        }
    }
}

/// A unit of work run in a loop.
pub trait Agent: Send {
    /// Does at most a bounded amount of work at `now` and returns how much: 0 tells the idle
    /// strategy there was nothing to do.
    fn do_work(&mut self, now: Now) -> usize;

    /// A name for threads and logs.
    fn role_name(&self) -> &str;

    /// The roles of the agents this one runs: itself, or each agent of a composite.
    fn roles(&self) -> Vec<String> {
        vec![self.role_name().to_owned()]
    }

    /// Called once when the agent stops.
    fn on_close(&mut self) {}

    /// Whether the runner should time this agent's duty cycles (a second clock read per cycle)
    /// and report them to [`Agent::on_duty_cycle`].
    fn tracks_duty_cycle(&self) -> bool {
        false
    }

    /// A duty cycle starts at `now` (agents that track them only); `cycle_ns` is how long the
    /// previous one took, start to start, when it did work. One that found nothing to do is
    /// followed by the idle strategy's wait, so it is not timed (`None`): one clock read a
    /// cycle, as Aeron's duty-cycle tracker.
    fn on_duty_cycle(&mut self, cycle_ns: Option<i64>, now: Now) {
        let _ = (cycle_ns, now);
    }

    /// Called once, on the agent's thread, when its duty cycle panicked with `message`, before
    /// the runner stops: record it where operators look. The agent's state may be part-updated.
    fn on_panic(&mut self, message: &str) {
        let _ = message;
    }
}

/// Several agents on one thread, each given every duty cycle.
pub struct CompositeAgent {
    agents: Vec<Box<dyn Agent>>,
    name: String,
    /// The agent whose duty cycle runs now: the one a panic came from.
    current: usize,
}

impl CompositeAgent {
    /// Composes `agents` in order, named after them (`a+b`).
    pub fn new(agents: Vec<Box<dyn Agent>>) -> Self {
        let name = agents
            .iter()
            .map(|agent| agent.role_name())
            .collect::<Vec<_>>()
            .join("+");
        Self::named(name, agents)
    }

    /// Composes `agents` in order under `name` (the thread's name).
    pub fn named(name: impl Into<String>, agents: Vec<Box<dyn Agent>>) -> Self {
        Self {
            agents,
            name: name.into(),
            current: 0,
        }
    }
}

impl Agent for CompositeAgent {
    fn do_work(&mut self, now: Now) -> usize {
        let mut work = 0;
        for (index, agent) in self.agents.iter_mut().enumerate() {
            self.current = index;
            work += agent.do_work(now);
        }
        work
    }

    fn role_name(&self) -> &str {
        &self.name
    }

    fn roles(&self) -> Vec<String> {
        self.agents.iter().flat_map(|agent| agent.roles()).collect()
    }

    /// In reverse order of composition (the last composed was started last), each on its own:
    /// one agent's panic while closing does not keep the others from closing.
    fn on_close(&mut self) {
        for agent in self.agents.iter_mut().rev() {
            let _ = guarded(|| agent.on_close());
        }
    }

    /// Only the agent that panicked records it: one panic, counted once.
    fn on_panic(&mut self, message: &str) {
        if let Some(agent) = self.agents.get_mut(self.current) {
            agent.on_panic(message);
        }
    }

    fn tracks_duty_cycle(&self) -> bool {
        self.agents.iter().any(|agent| agent.tracks_duty_cycle())
    }

    /// Each agent that tracks duty cycles is told the whole thread's cycle: that is what delays
    /// its next turn.
    fn on_duty_cycle(&mut self, cycle_ns: Option<i64>, now: Now) {
        for (index, agent) in self.agents.iter_mut().enumerate() {
            self.current = index;
            agent.on_duty_cycle(cycle_ns, now);
        }
    }
}

/// What a thread does when its agent has no work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdleStrategy {
    /// Spin: lowest latency, a whole core.
    BusySpin,
    /// Yield the processor to other threads.
    Yield,
    /// Spin, then yield, then sleep from `min_park` doubling to `max_park`; the default, since
    /// many machines have two cores.
    Backoff {
        /// Spins before yielding.
        max_spins: u32,
        /// Yields before sleeping.
        max_yields: u32,
        /// The first sleep.
        min_park: Duration,
        /// The longest sleep.
        max_park: Duration,
    },
    /// Sleep for a fixed time.
    Sleep(Duration),
}

impl Default for IdleStrategy {
    fn default() -> Self {
        Self::Backoff {
            max_spins: 10,
            max_yields: 20,
            min_park: Duration::from_micros(1),
            max_park: Duration::from_millis(1),
        }
    }
}

impl std::str::FromStr for IdleStrategy {
    type Err = String;

    /// `busy-spin`, `yield`, `backoff`, `backoff-<longest sleep>` such as `backoff-50us`, or
    /// `sleep-<duration>` such as `sleep-1ms`.
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "busy-spin" | "spin" | "noop" => Ok(Self::BusySpin),
            "yield" => Ok(Self::Yield),
            "backoff" => Ok(Self::default()),
            other if other.starts_with("backoff-") => {
                let max_park = other
                    .strip_prefix("backoff-")
                    .and_then(crate::channel::parse_duration_ns)
                    .filter(|&ns| ns >= 1_000)
                    .ok_or_else(|| format!("idle strategy {other:?}: backoff-<longest sleep, at least 1us>"))?;
                Ok(Self::Backoff {
                    max_spins: 10,
                    max_yields: 20,
                    min_park: Duration::from_micros(1),
                    max_park: Duration::from_nanos(max_park),
                })
            }
            other => other
                .strip_prefix("sleep-")
                .and_then(crate::channel::parse_duration_ns)
                .map(|ns| Self::Sleep(Duration::from_nanos(ns)))
                .ok_or_else(|| {
                    format!("idle strategy {other:?} is not busy-spin, yield, backoff or sleep-<duration>")
                }),
        }
    }
}

/// The state of an idle strategy between duty cycles.
#[derive(Debug, Clone)]
pub struct Idler {
    strategy: IdleStrategy,
    spins: u32,
    yields: u32,
    park: Duration,
}

impl Idler {
    /// An idler following `strategy`.
    pub fn new(strategy: IdleStrategy) -> Self {
        let park = match strategy {
            IdleStrategy::Backoff { min_park, .. } => min_park,
            _ => Duration::ZERO,
        };
        Self {
            strategy,
            spins: 0,
            yields: 0,
            park,
        }
    }

    /// Idles after a duty cycle that did `work_count` work; any work resets the backoff.
    #[inline]
    pub fn idle(&mut self, work_count: usize) {
        match self.strategy {
            IdleStrategy::BusySpin => std::hint::spin_loop(),
            IdleStrategy::Yield => {
                if work_count == 0 {
                    std::thread::yield_now();
                }
            }
            IdleStrategy::Sleep(duration) => {
                if work_count == 0 {
                    std::thread::sleep(duration);
                }
            }
            IdleStrategy::Backoff {
                max_spins,
                max_yields,
                min_park,
                max_park,
            } => {
                if work_count > 0 {
                    self.spins = 0;
                    self.yields = 0;
                    self.park = min_park;
                } else if self.spins < max_spins {
                    self.spins += 1;
                    std::hint::spin_loop();
                } else if self.yields < max_yields {
                    self.yields += 1;
                    std::thread::yield_now();
                } else {
                    std::thread::sleep(self.park);
                    self.park = (self.park * 2).min(max_park);
                }
            }
        }
    }
}

/// The monotonic clock agents are given: nanoseconds since the first call in this process.
pub fn nano_time() -> i64 {
    static START: OnceLock<Instant> = OnceLock::new();
    let start = START.get_or_init(Instant::now);
    i64::try_from(start.elapsed().as_nanos()).unwrap_or(i64::MAX)
}

/// Wall-clock milliseconds since the Unix epoch, for timestamps people read.
pub fn epoch_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX)
        })
}

/// An agent running on its own thread until closed, or until it panics.
pub struct AgentRunner {
    running: Arc<AtomicBool>,
    failure: Arc<OnceLock<String>>,
    thread: Option<JoinHandle<()>>,
}

impl AgentRunner {
    /// Starts `agent` on a thread named after its role, reading `clock` once per duty cycle.
    pub fn start(
        agent: Box<dyn Agent>,
        strategy: IdleStrategy,
        clock: Arc<dyn Clock>,
    ) -> std::io::Result<Self> {
        Self::start_in_group(agent, strategy, clock, Arc::new(OnceLock::new()))
    }

    /// Starts `agent` as one of a group that shares `failure`: when any agent of the group
    /// panics, every one of them stops after its current duty cycle (a driver whose sender
    /// died stops its conductor too, so that clients see its heartbeat stop).
    pub fn start_in_group(
        agent: Box<dyn Agent>,
        strategy: IdleStrategy,
        clock: Arc<dyn Clock>,
        failure: Arc<OnceLock<String>>,
    ) -> std::io::Result<Self> {
        let running = Arc::new(AtomicBool::new(true));
        let (flag, failed) = (Arc::clone(&running), Arc::clone(&failure));
        let name = agent.role_name().to_owned();
        let thread = std::thread::Builder::new()
            .name(name)
            .spawn(move || run(agent, strategy, &*clock, &flag, &failed))?;
        Ok(Self {
            running,
            failure,
            thread: Some(thread),
        })
    }

    /// Whether the agent's thread is still running.
    pub fn is_running(&self) -> bool {
        self.thread
            .as_ref()
            .is_some_and(|thread| !thread.is_finished())
    }

    /// The panic that stopped the agent (or, in a group, the group), if one did.
    pub fn failure(&self) -> Option<&str> {
        self.failure.get().map(String::as_str)
    }

    /// Stops the agent after its current duty cycle and waits for its thread.
    pub fn close(&mut self) {
        self.running.store(false, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            // The loop catches the agent's panics; the thread itself ends normally.
            let _ = thread.join();
        }
    }
}

/// The runner's loop: duty cycles until stopped or until the agent panics.
fn run(
    mut agent: Box<dyn Agent>,
    strategy: IdleStrategy,
    clock: &dyn Clock,
    running: &AtomicBool,
    failure: &OnceLock<String>,
) {
    let mut idler = Idler::new(strategy);
    let tracks = agent.tracks_duty_cycle();
    // When the last cycle started, if it did work (then nothing idled after it).
    let mut busy_since: Option<i64> = None;
    while running.load(Ordering::Acquire) && failure.get().is_none() {
        let cycle = guarded(|| {
            let start = clock.now();
            if tracks {
                agent.on_duty_cycle(busy_since.map(|since| start.nanos - since), start);
            }
            let work = agent.do_work(start);
            busy_since = (work > 0).then_some(start.nanos);
            work
        });
        match cycle {
            Ok(work) => idler.idle(work),
            Err(message) => {
                let message = format!("agent {} panicked: {message}", agent.role_name());
                // The agent's own recording may panic too; the failure is kept either way.
                let _ = guarded(|| agent.on_panic(&message));
                let _ = failure.set(message);
                break;
            }
        }
    }
    let _ = guarded(|| agent.on_close());
}

/// Runs `work`, turning a panic into its message.
pub fn guarded<R>(work: impl FnOnce() -> R) -> Result<R, String> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).map_err(|payload| {
        payload
            .downcast_ref::<&str>()
            .map(|text| (*text).to_owned())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic without a message".to_owned())
    })
}

impl Drop for AgentRunner {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    struct Counting(Arc<AtomicUsize>);

    impl Agent for Counting {
        fn do_work(&mut self, _now: Now) -> usize {
            self.0.fetch_add(1, Ordering::Relaxed);
            0
        }

        fn role_name(&self) -> &str {
            "counting"
        }
    }

    #[test]
    fn the_system_clock_derives_the_epoch_within_a_refresh_of_the_wall_clock() {
        let wall = || {
            i64::try_from(
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_millis(),
            )
            .unwrap()
        };
        for _ in 0..1000 {
            let before = wall();
            let now = SystemClock.now();
            let after = wall();
            // The offset is at most a refresh old; the wall clock is not stepped here.
            let slack = EPOCH_REFRESH_NS / 1_000_000 + 1;
            assert!(
                now.epoch_ms >= before - slack && now.epoch_ms <= after + slack,
                "{before} <= {} <= {after}",
                now.epoch_ms
            );
        }
        let (first, second) = (SystemClock.now(), SystemClock.now());
        assert!(second.nanos >= first.nanos && second.epoch_ms >= first.epoch_ms - 1);
    }

    #[test]
    fn runner_runs_composes_and_stops() {
        let count = Arc::new(AtomicUsize::new(0));
        let composite = CompositeAgent::new(vec![
            Box::new(Counting(Arc::clone(&count))),
            Box::new(Counting(Arc::clone(&count))),
        ]);
        assert_eq!(composite.role_name(), "counting+counting");
        let mut runner = AgentRunner::start(
            Box::new(composite),
            IdleStrategy::default(),
            Arc::new(SystemClock),
        )
        .unwrap();
        while count.load(Ordering::Relaxed) < 100 {
            std::thread::yield_now();
        }
        runner.close();
        assert!(!runner.is_running());
        let stopped_at = count.load(Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(count.load(Ordering::Relaxed), stopped_at);
    }

    struct Panicking(Arc<std::sync::Mutex<Vec<String>>>);

    impl Agent for Panicking {
        fn do_work(&mut self, now: Now) -> usize {
            assert!(now.nanos < 5_000, "the clock passed 5 us");
            1
        }

        fn role_name(&self) -> &str {
            "panicking"
        }

        fn on_panic(&mut self, message: &str) {
            self.0.lock().unwrap().push(message.to_owned());
        }
    }

    /// An agent that never panics but would record one it was told of.
    struct Quiet(Arc<std::sync::Mutex<Vec<String>>>);

    impl Agent for Quiet {
        fn do_work(&mut self, _now: Now) -> usize {
            0
        }

        fn role_name(&self) -> &str {
            "quiet"
        }

        fn on_panic(&mut self, message: &str) {
            self.0.lock().unwrap().push(format!("quiet: {message}"));
        }
    }

    #[test]
    fn a_composite_reports_a_panic_to_the_agent_that_panicked_only() {
        let recorded = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut composite = CompositeAgent::named(
            "both",
            vec![
                Box::new(Quiet(Arc::clone(&recorded))),
                Box::new(Panicking(Arc::clone(&recorded))),
                Box::new(Quiet(Arc::clone(&recorded))),
            ],
        );
        let late = Now {
            nanos: 10_000,
            epoch_ms: 0,
        };
        let message = guarded(|| composite.do_work(late)).unwrap_err();
        composite.on_panic(&message);
        assert_eq!(*recorded.lock().unwrap(), [message]);
    }

    #[test]
    fn a_panicking_agent_is_recorded_and_its_runner_stops() {
        let recorded = Arc::new(std::sync::Mutex::new(Vec::new()));
        let clock = Arc::new(ManualClock::new(Now {
            nanos: 0,
            epoch_ms: 0,
        }));
        let mut runner = AgentRunner::start(
            Box::new(Panicking(Arc::clone(&recorded))),
            IdleStrategy::Yield,
            Arc::clone(&clock) as Arc<dyn Clock>,
        )
        .unwrap();
        assert!(runner.failure().is_none());
        clock.advance(Duration::from_micros(10));
        let deadline = Instant::now() + Duration::from_secs(30);
        while runner.is_running() {
            assert!(Instant::now() < deadline, "the runner did not stop");
            std::thread::yield_now();
        }
        let failure = runner.failure().unwrap().to_owned();
        assert!(
            failure.starts_with("agent panicking panicked: the clock passed 5 us"),
            "{failure}"
        );
        assert_eq!(*recorded.lock().unwrap(), [failure]);
        runner.close();
    }

    #[test]
    fn idle_strategies_parse() {
        assert_eq!(
            "busy-spin".parse::<IdleStrategy>(),
            Ok(IdleStrategy::BusySpin)
        );
        assert_eq!(
            "sleep-2ms".parse::<IdleStrategy>(),
            Ok(IdleStrategy::Sleep(Duration::from_millis(2)))
        );
        assert!("nap".parse::<IdleStrategy>().is_err());
        assert_eq!(
            "backoff-50us".parse::<IdleStrategy>(),
            Ok(IdleStrategy::Backoff {
                max_spins: 10,
                max_yields: 20,
                min_park: Duration::from_micros(1),
                max_park: Duration::from_micros(50),
            })
        );
        assert!("backoff-10ns".parse::<IdleStrategy>().is_err());
        let mut idler = Idler::new(IdleStrategy::default());
        for _ in 0..40 {
            idler.idle(0);
        }
        idler.idle(1);
        assert_eq!(idler.spins, 0);
    }
}
