//! What a driver-managed resource holds outside Rust's memory — counters in the CnC file, log
//! buffer files — is released by dropping the resource, and freed in one place.
//!
//! A resource holds its counters as [`CounterLease`]s and its files as [`FileLease`]s. Dropping
//! a lease (with the resource that holds it, on a removed link, a timed-out client, a drained
//! publication, or a command that failed half-way) queues its counter id or path here; the
//! conductor frees the queued counters and removes the queued files at the end of its duty cycle
//! ([`Reclaim::take`]), the only place the driver frees either. So no path the conductor
//! runs can leak a counter or a file, and no code path undoes by hand what another made. What
//! is released after the conductor's last cycle (at shutdown) is not freed: the CnC file goes
//! with the driver, and log buffer files are released before (`close_all`). A file that cannot
//! be removed is logged, not retried.
//!
//! Leases may be dropped on any driver thread (the sender's and receiver's resources, with
//! UDP), so the queue is behind a mutex, taken only when a lease is dropped or the queue is not
//! empty: control-plane events, never per message.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use crate::concurrent::counters::Counter;
use crate::mapped_view::MappedView;

#[derive(Debug, Default)]
struct Queued {
    counters: Vec<i32>,
    files: Vec<PathBuf>,
}

#[derive(Debug, Default)]
struct Shared {
    /// Whether anything is queued: the conductor's check each cycle, without the lock.
    pending: AtomicBool,
    queued: Mutex<Queued>,
}

/// The queue of released counters and files.
#[derive(Debug, Clone, Default)]
pub(crate) struct Reclaim(Arc<Shared>);

/// What to free now.
#[derive(Debug, Default)]
pub(crate) struct Released {
    pub(crate) counters: Vec<i32>,
    pub(crate) files: Vec<PathBuf>,
}

impl Reclaim {
    fn queue(&self, add: impl FnOnce(&mut Queued)) {
        let mut queued = self.0.queued.lock().unwrap_or_else(PoisonError::into_inner);
        add(&mut queued);
        self.0.pending.store(true, Ordering::Release);
    }

    /// Takes everything released so far (nothing, cheaply, when nothing was).
    pub(crate) fn take(&self) -> Option<Released> {
        if !self.0.pending.load(Ordering::Acquire) {
            return None;
        }
        let mut queued = self.0.queued.lock().unwrap_or_else(PoisonError::into_inner);
        self.0.pending.store(false, Ordering::Release);
        Some(Released {
            counters: std::mem::take(&mut queued.counters),
            files: std::mem::take(&mut queued.files),
        })
    }

    /// A lease on `counter`, freed when the lease is dropped.
    pub(crate) fn lease_counter(&self, counter: MappedView<Counter<'static>>) -> CounterLease {
        CounterLease {
            counter,
            reclaim: self.clone(),
        }
    }

    /// A lease on the file at `path`, removed when the lease is dropped.
    pub(crate) fn lease_file(&self, path: PathBuf) -> FileLease {
        FileLease {
            path,
            reclaim: self.clone(),
        }
    }
}

/// A counter a resource holds; freed when dropped.
#[derive(Debug)]
pub(crate) struct CounterLease {
    counter: MappedView<Counter<'static>>,
    reclaim: Reclaim,
}

impl CounterLease {
    /// The counter.
    #[inline]
    pub(crate) fn view(&self) -> &Counter<'_> {
        self.counter.view()
    }

    /// Its id.
    pub(crate) fn id(&self) -> i32 {
        self.counter.view().id()
    }
}

impl Drop for CounterLease {
    fn drop(&mut self) {
        let id = self.id();
        self.reclaim.queue(|queued| queued.counters.push(id));
    }
}

/// A file a resource made; removed when dropped.
#[derive(Debug)]
pub(crate) struct FileLease {
    path: PathBuf,
    reclaim: Reclaim,
}

impl Drop for FileLease {
    fn drop(&mut self) {
        let path = std::mem::take(&mut self.path);
        self.reclaim.queue(|queued| queued.files.push(path));
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::concurrent::atomic_buffer::AlignedBuffer;
    use crate::concurrent::counters::{CounterSpec, CountersManager};

    #[test]
    fn dropping_leases_queues_them_once_and_take_empties_the_queue() {
        let reclaim = Reclaim::default();
        assert!(reclaim.take().is_none());
        let memory = Arc::new((AlignedBuffer::new(4 * 512), AlignedBuffer::new(4 * 128)));
        let counter = MappedView::<Counter<'static>>::try_new(Arc::clone(&memory), |memory| {
            let mut manager = CountersManager::new(memory.0.buffer(), memory.1.buffer(), 0)?;
            let spec = CounterSpec {
                type_id: 1,
                key: &[],
                label: "leased",
                registration_id: 0,
                owner_id: 0,
                reference_id: 0,
            };
            manager.allocate(&spec, 0)?;
            manager.allocate(&spec, 0)?;
            manager.allocate(&spec, 0)
        })
        .unwrap();
        let lease = reclaim.lease_counter(counter);
        let file = reclaim.lease_file(PathBuf::from("/nowhere/x.logbuffer"));
        assert_eq!(lease.id(), 2);
        assert!(reclaim.take().is_none(), "nothing is released while held");
        drop((lease, file));
        let released = reclaim.take().unwrap();
        assert_eq!(released.counters, [2]);
        assert_eq!(released.files, [PathBuf::from("/nowhere/x.logbuffer")]);
        assert!(reclaim.take().is_none());
    }
}
