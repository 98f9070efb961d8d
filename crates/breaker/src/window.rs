//! The sliding windows: the last N calls ([`CountWindow`], lock-free) or the last N seconds
//! ([`TimeWindow`], one-second buckets).

use std::sync::Mutex;
use std::sync::atomic::{AtomicI32, AtomicU8, AtomicU64, Ordering};

use crate::config::SlidingWindow;

/// The window of one breaker.
pub(crate) enum Window {
    Count(CountWindow),
    Time(Mutex<TimeWindow>),
}

impl Window {
    pub(crate) fn new(window: SlidingWindow) -> Self {
        match window {
            SlidingWindow::Count { size } => Self::Count(CountWindow::new(size as usize)),
            SlidingWindow::Time { seconds } => {
                Self::Time(Mutex::new(TimeWindow::new(seconds as usize)))
            }
        }
    }

    /// Records an outcome (`now`: the breaker's clock, read for a time window only);
    /// returns the new counts when they changed.
    #[inline]
    pub(crate) fn record(
        &self,
        now: impl FnOnce() -> u64,
        failed: bool,
        slow: bool,
    ) -> Option<(u32, u32, u32)> {
        match self {
            Self::Count(w) => w.record(failed, slow).then(|| w.counts()),
            Self::Time(w) => {
                let now = now();
                let mut w = w.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                w.record(now, failed, slow);
                Some(w.counts(now))
            }
        }
    }

    #[inline]
    pub(crate) fn counts(&self, now: u64) -> (u32, u32, u32) {
        match self {
            Self::Count(w) => w.counts(),
            Self::Time(w) => w
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .counts(now),
        }
    }

    pub(crate) fn reset(&self) {
        match self {
            Self::Count(w) => w.reset(),
            Self::Time(w) => w
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .reset(),
        }
    }
}

/// The last `size` outcomes in a ring of one byte each, with running totals; recording is a
/// `fetch_add`, a `swap` and up to three counter updates, no lock.
pub(crate) struct CountWindow {
    slots: Box<[AtomicU8]>,
    next: AtomicU64,
    calls: AtomicI32,
    failures: AtomicI32,
    slow: AtomicI32,
}

const RECORDED: u8 = 1;
const FAILED: u8 = 2;
const SLOW: u8 = 4;

impl CountWindow {
    fn new(size: usize) -> Self {
        Self {
            slots: (0..size).map(|_| AtomicU8::new(0)).collect(),
            next: AtomicU64::new(0),
            calls: AtomicI32::new(0),
            failures: AtomicI32::new(0),
            slow: AtomicI32::new(0),
        }
    }

    /// Records an outcome; returns whether the counts changed.
    #[inline]
    fn record(&self, failed: bool, slow: bool) -> bool {
        let i = (self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len() as u64) as usize;
        let new = RECORDED | if failed { FAILED } else { 0 } | if slow { SLOW } else { 0 };
        let slot = &self.slots[i];
        // Same outcome as the one it replaces: nothing to write, and the slot's cache line
        // stays shared between cores instead of bouncing.
        if slot.load(Ordering::Acquire) == new {
            return false;
        }
        let old = slot.swap(new, Ordering::AcqRel);
        if old == new {
            return false;
        }
        let delta = |bit: u8| i32::from(new & bit != 0) - i32::from(old & bit != 0);
        for (counter, bit) in [
            (&self.calls, RECORDED),
            (&self.failures, FAILED),
            (&self.slow, SLOW),
        ] {
            let d = delta(bit);
            if d != 0 {
                counter.fetch_add(d, Ordering::AcqRel);
            }
        }
        true
    }

    #[inline]
    fn counts(&self) -> (u32, u32, u32) {
        let read = |c: &AtomicI32| u32::try_from(c.load(Ordering::Acquire)).unwrap_or(0);
        (read(&self.calls), read(&self.failures), read(&self.slow))
    }

    fn reset(&self) {
        for slot in &self.slots {
            let old = slot.swap(0, Ordering::AcqRel);
            for (counter, bit) in [
                (&self.calls, RECORDED),
                (&self.failures, FAILED),
                (&self.slow, SLOW),
            ] {
                if old & bit != 0 {
                    counter.fetch_sub(1, Ordering::AcqRel);
                }
            }
        }
    }
}

/// One bucket per second of the window.
pub(crate) struct TimeWindow {
    buckets: Vec<Bucket>,
}

#[derive(Clone, Copy, Default)]
struct Bucket {
    second: u64,
    calls: u32,
    failures: u32,
    slow: u32,
}

const SECOND: u64 = 1_000_000_000;

impl TimeWindow {
    fn new(seconds: usize) -> Self {
        Self {
            buckets: vec![Bucket::default(); seconds],
        }
    }

    fn record(&mut self, now: u64, failed: bool, slow: bool) {
        // Seconds are counted from 1 so that an empty bucket (second 0) never matches.
        let second = now / SECOND + 1;
        let n = self.buckets.len() as u64;
        let bucket = &mut self.buckets[(second % n) as usize];
        if bucket.second != second {
            *bucket = Bucket {
                second,
                ..Bucket::default()
            };
        }
        bucket.calls += 1;
        bucket.failures += u32::from(failed);
        bucket.slow += u32::from(slow);
    }

    fn counts(&self, now: u64) -> (u32, u32, u32) {
        let second = now / SECOND + 1;
        let n = self.buckets.len() as u64;
        self.buckets
            .iter()
            .filter(|b| b.second != 0 && b.second + n > second)
            .fold((0, 0, 0), |(c, f, s), b| {
                (c + b.calls, f + b.failures, s + b.slow)
            })
    }

    fn reset(&mut self) {
        self.buckets.fill(Bucket::default());
    }
}
