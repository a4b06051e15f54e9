//! Where threads run: pinning a thread to a CPU, and a probe of how far apart two CPUs are.
//!
//! Latency between two spinning threads depends on whether their cores share a cache: on a
//! shared VM the same two vCPUs can be "near" (tens of ns per cache-line round trip) in one run
//! and "far" (hundreds) in the next. Benchmarks bracket every run with
//! [`cache_line_round_trip`] so that only runs whose probes agree are compared.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

/// Pins the calling thread to `cpu`. Linux only; elsewhere an `Unsupported` error.
pub fn pin_current_thread(cpu: usize) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: the set is a plain bit mask on the stack, fully initialised by CPU_ZERO, and
        // sched_setaffinity only reads it.
        let result = unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_ZERO(&mut set);
            libc::CPU_SET(cpu, &mut set);
            libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set)
        };
        if result != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = cpu;
        Err(std::io::Error::from(std::io::ErrorKind::Unsupported))
    }
}

/// Pins the calling thread to `cpus[index]` when the list names one; otherwise leaves it.
pub fn pin_by_index(cpus: &[usize], index: usize) {
    if let Some(cpu) = cpus.get(index) {
        // A benchmark asked for placement: failing to get it is worth saying, not stopping for.
        if let Err(error) = pin_current_thread(*cpu) {
            eprintln!("could not pin to CPU {cpu}: {error}");
        }
    }
}

/// The median and 90th percentile of a cache-line round trip between two threads, in ns.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Probe {
    /// The median of the samples.
    pub median_ns: f64,
    /// The 90th percentile of the samples.
    pub p90_ns: f64,
}

#[repr(align(128))]
struct Line(AtomicU64);

/// Two threads (pinned to `cpus[0]` and `cpus[1]` when given) pass a counter back and forth
/// through two cache lines; each of 200 samples times 1000 round trips.
pub fn cache_line_round_trip(cpus: &[usize]) -> Probe {
    const ROUND_TRIPS: u64 = 1000;
    const SAMPLES: usize = 200;
    let ping = Arc::new(Line(AtomicU64::new(0)));
    let pong = Arc::new(Line(AtomicU64::new(0)));
    let total = ROUND_TRIPS * SAMPLES as u64;
    let echo = {
        let (ping, pong) = (Arc::clone(&ping), Arc::clone(&pong));
        let cpus = cpus.to_vec();
        std::thread::spawn(move || {
            pin_by_index(&cpus, 1);
            for value in 1..=total {
                while ping.0.load(Ordering::Acquire) != value {
                    std::hint::spin_loop();
                }
                pong.0.store(value, Ordering::Release);
            }
        })
    };
    let mut samples = Vec::with_capacity(SAMPLES);
    let mut value = 0;
    for _ in 0..SAMPLES {
        let start = Instant::now();
        for _ in 0..ROUND_TRIPS {
            value += 1;
            ping.0.store(value, Ordering::Release);
            while pong.0.load(Ordering::Acquire) != value {
                std::hint::spin_loop();
            }
        }
        // Nanoseconds of a millisecond-scale sample: far below f64's exact range.
        #[allow(clippy::cast_precision_loss)]
        samples.push(start.elapsed().as_nanos() as f64 / ROUND_TRIPS as f64);
    }
    let _ = echo.join();
    samples.sort_by(f64::total_cmp);
    Probe {
        median_ns: samples[SAMPLES / 2],
        p90_ns: samples[SAMPLES * 9 / 10],
    }
}
