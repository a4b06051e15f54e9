//! Agents and the threads that run them.
//!
//! Everything long-running in tern is an [`Agent`]: a duty cycle that does a bounded amount of
//! work and says how much. An agent runs on its own thread under an [`IdleStrategy`]
//! ([`AgentRunner`]), is composed with others onto one thread ([`CompositeAgent`]: the driver's
//! *shared* and *shared-network* modes), or is invoked by the application on its own thread.
//! The clock is read once per duty cycle and handed to the agent, which never reads it itself.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A unit of work run in a loop.
pub trait Agent: Send {
    /// Does at most a bounded amount of work at `now_ns` (a monotonic clock) and returns how
    /// much: 0 tells the idle strategy there was nothing to do.
    fn do_work(&mut self, now_ns: i64) -> usize;

    /// A name for threads and logs.
    fn role_name(&self) -> &str;

    /// Called once when the agent stops.
    fn on_close(&mut self) {}
}

/// Several agents on one thread, each given every duty cycle.
pub struct CompositeAgent {
    agents: Vec<Box<dyn Agent>>,
    name: String,
}

impl CompositeAgent {
    /// Composes `agents` in order.
    pub fn new(agents: Vec<Box<dyn Agent>>) -> Self {
        let name = agents
            .iter()
            .map(|agent| agent.role_name())
            .collect::<Vec<_>>()
            .join("+");
        Self { agents, name }
    }
}

impl Agent for CompositeAgent {
    fn do_work(&mut self, now_ns: i64) -> usize {
        self.agents
            .iter_mut()
            .map(|agent| agent.do_work(now_ns))
            .sum()
    }

    fn role_name(&self) -> &str {
        &self.name
    }

    fn on_close(&mut self) {
        for agent in &mut self.agents {
            agent.on_close();
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

    /// `busy-spin`, `yield`, `backoff`, or `sleep-<duration>` such as `sleep-1ms`.
    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "busy-spin" | "spin" | "noop" => Ok(Self::BusySpin),
            "yield" => Ok(Self::Yield),
            "backoff" => Ok(Self::default()),
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
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
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

/// An agent running on its own thread until closed.
pub struct AgentRunner {
    running: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl AgentRunner {
    /// Starts `agent` on a thread named after its role.
    pub fn start(mut agent: Box<dyn Agent>, strategy: IdleStrategy) -> std::io::Result<Self> {
        let running = Arc::new(AtomicBool::new(true));
        let flag = Arc::clone(&running);
        let name = agent.role_name().to_owned();
        let thread = std::thread::Builder::new().name(name).spawn(move || {
            let mut idler = Idler::new(strategy);
            while flag.load(Ordering::Acquire) {
                let work = agent.do_work(nano_time());
                idler.idle(work);
            }
            agent.on_close();
        })?;
        Ok(Self {
            running,
            thread: Some(thread),
        })
    }

    /// Whether the agent's thread is still running.
    pub fn is_running(&self) -> bool {
        self.thread
            .as_ref()
            .is_some_and(|thread| !thread.is_finished())
    }

    /// Stops the agent after its current duty cycle and waits for its thread.
    pub fn close(&mut self) {
        self.running.store(false, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            // A panic in the agent has already been reported on its thread.
            let _ = thread.join();
        }
    }
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
        fn do_work(&mut self, _now_ns: i64) -> usize {
            self.0.fetch_add(1, Ordering::Relaxed);
            0
        }

        fn role_name(&self) -> &str {
            "counting"
        }
    }

    #[test]
    fn runner_runs_composes_and_stops() {
        let count = Arc::new(AtomicUsize::new(0));
        let composite = CompositeAgent::new(vec![
            Box::new(Counting(Arc::clone(&count))),
            Box::new(Counting(Arc::clone(&count))),
        ]);
        assert_eq!(composite.role_name(), "counting+counting");
        let mut runner = AgentRunner::start(Box::new(composite), IdleStrategy::default()).unwrap();
        while count.load(Ordering::Relaxed) < 100 {
            std::thread::yield_now();
        }
        runner.close();
        assert!(!runner.is_running());
        let stopped_at = count.load(Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(count.load(Ordering::Relaxed), stopped_at);
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
        let mut idler = Idler::new(IdleStrategy::default());
        for _ in 0..40 {
            idler.idle(0);
        }
        idler.idle(1);
        assert_eq!(idler.spins, 0);
    }
}
