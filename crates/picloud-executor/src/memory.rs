//! Memory an execution holds, counted where it is allocated.
//!
//! Rhai bounds the size of one string, array or map, not what a script holds in all: map keys,
//! curried arguments, closure captures and many values each under the limits added up to 1 GB for
//! one request. So every process that runs scripts allocates through jemalloc (this crate sets it
//! as the global allocator, so no binary or test can run scripts without it), whose per-thread
//! counters of bytes ever allocated and ever freed are read through a pointer: two loads, no call.
//! A run starts with a [`Meter`] at the thread's current net count; `on_progress` asks it after
//! every operation whether the run has grown past its budget.
//!
//! What is counted is what this thread allocated less what it freed since the run began: the
//! values a script builds, the JSON it parses, the strings it formats. Freed memory comes off, so
//! a script that builds and drops values in a loop stays within a small budget.
//!
//! Counting per thread has one blind spot: memory that crosses threads. What a data call sends
//! is freed by the store's threads, so it would stay on the run's books for good; what it
//! receives was allocated elsewhere and freeing it here would count as the run giving memory
//! back, so a value read from the store would cost nothing. So a data call runs off the books
//! ([`crate::context::off_the_books`]) and the run is charged for the value it gets, measured by
//! [`estimate`].
//!
//! One native call still allocates before the next check. The functions that could build far
//! more than they are given measure first ([`crate::bounded`]); the rest build at most a few
//! times what they are given (`s + s`), so a run overshoots its budget by at most about that.

use std::cell::OnceCell;

use rhai::{Array, Blob, Dynamic, ImmutableString, Map};
use tikv_jemalloc_ctl::thread::{allocatedp, deallocatedp, ThreadLocal};

/// jemalloc rather than glibc's allocator: a request allocates and frees many small values on
/// several threads (the HTTP task, the executor, the outbox writer), where glibc's arenas took
/// ~14 % of the server's CPU under load. Measured on hello at 32 connections: ~7 % more
/// requests per second, and a smaller idle RSS (24 MiB against 39 MiB). mimalloc was as fast
/// but doubled the idle RSS. And its per-thread counters are what [`Meter`] reads.
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

struct Counters {
    allocated: ThreadLocal<u64>,
    deallocated: ThreadLocal<u64>,
}

thread_local! {
    static COUNTERS: OnceCell<Option<Counters>> = const { OnceCell::new() };
}

/// Bytes this thread allocated less bytes it freed, over its whole life (wrapping: only
/// differences mean anything). `None` if jemalloc's counters cannot be read.
fn net() -> Option<u64> {
    COUNTERS.with(|cell| {
        cell.get_or_init(|| {
            Some(Counters {
                allocated: allocatedp::read().ok()?,
                deallocated: deallocatedp::read().ok()?,
            })
        })
        .as_ref()
        .map(|counters| {
            counters
                .allocated
                .get()
                .wrapping_sub(counters.deallocated.get())
        })
    })
}

/// The memory one run on this thread may grow by.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Meter {
    start: u64,
    budget: u64,
}

impl Meter {
    /// A meter starting now on this thread, allowing `budget` bytes. Where the counters cannot be
    /// read (never, with jemalloc as the allocator) nothing is counted.
    pub(crate) fn start(budget: u64) -> Self {
        Self {
            start: net().unwrap_or(0),
            budget,
        }
    }

    /// Bytes the run holds now, beyond what the thread held when it started (0 if it freed more).
    pub(crate) fn used(&self) -> u64 {
        net().map_or(0, |now| {
            let grown = now.wrapping_sub(self.start);
            // A wrapped difference is a shrink: the run freed what was allocated before it.
            if grown > u64::MAX / 2 {
                0
            } else {
                grown
            }
        })
    }

    /// Whether the run holds more than its budget.
    pub(crate) fn over(&self) -> bool {
        self.used() > self.budget
    }

    /// Takes what the thread's count moved by from `before` to now off the run's books.
    pub(crate) fn forgive(&mut self, before: u64) {
        let moved = net().unwrap_or(0).wrapping_sub(before);
        self.start = self.start.wrapping_add(moved);
    }

    /// Puts `bytes` on the run's books.
    pub(crate) fn charge(&mut self, bytes: u64) {
        self.start = self.start.wrapping_sub(bytes);
    }
}

/// The thread's count now (see [`Meter::forgive`]).
pub(crate) fn now() -> u64 {
    net().unwrap_or(0)
}

/// About what `value` takes in memory: its strings and BLOBs, and a value's slot for each item
/// and entry (map keys too). A lower bound, which is what charging a run for it needs.
pub(crate) fn estimate(value: &Dynamic) -> u64 {
    const SLOT: u64 = 16;
    let inner = if let Some(array) = value.read_lock::<Array>() {
        array.iter().map(estimate).sum()
    } else if let Some(map) = value.read_lock::<Map>() {
        map.iter()
            .map(|(key, value)| key.len() as u64 + estimate(value))
            .sum()
    } else if let Some(blob) = value.read_lock::<Blob>() {
        blob.len() as u64
    } else if let Some(text) = value.read_lock::<ImmutableString>() {
        text.len() as u64
    } else {
        0
    };
    SLOT + inner
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_meter_counts_what_this_thread_holds_and_forgets_what_it_freed() {
        let meter = Meter::start(1024 * 1024);
        assert!(!meter.over(), "nothing is held yet");
        let held = vec![1u8; 4 * 1024 * 1024];
        assert!(
            meter.used() >= 4 * 1024 * 1024,
            "a 4 MiB buffer is counted: {}",
            meter.used()
        );
        assert!(meter.over(), "and is over a 1 MiB budget");
        drop(held);
        assert!(
            meter.used() < 64 * 1024,
            "freed memory comes off: {}",
            meter.used()
        );
        assert!(!meter.over());
    }

    #[test]
    fn memory_another_thread_allocates_is_not_this_runs() {
        let meter = Meter::start(1024 * 1024);
        let elsewhere = std::thread::spawn(|| vec![1u8; 8 * 1024 * 1024])
            .join()
            .expect("the thread allocates");
        assert!(
            meter.used() < 1024 * 1024,
            "another thread's allocation is not counted: {}",
            meter.used()
        );
        drop(elsewhere);
    }
}
