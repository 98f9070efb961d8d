//! Metrics of a group of keyed breakers: how many of its breakers are in each state, under one
//! label for the whole group, so that the number of series does not grow with the keys.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use crate::state::State;

/// A breaker not counted yet.
const UNCOUNTED: u8 = u8::MAX;
/// A breaker evicted from its group: no longer counted, whatever it does next.
const RETIRED: u8 = u8::MAX - 1;

/// Where a breaker reports its metrics.
pub(crate) enum Metrics {
    /// Its own series, labelled with its name.
    Own,
    /// Its group's counts; `counted` is the state it is counted in (or [`UNCOUNTED`],
    /// [`RETIRED`]), changed only under the group's lock.
    Group {
        group: Arc<Group>,
        counted: AtomicU8,
    },
}

impl Metrics {
    pub(crate) fn in_group(group: Arc<Group>) -> Self {
        Self::Group {
            group,
            counted: AtomicU8::new(UNCOUNTED),
        }
    }
}

/// The per-state counts of a group of breakers.
pub(crate) struct Group {
    name: Arc<str>,
    counts: Mutex<[u64; State::ALL.len()]>,
}

impl Group {
    pub(crate) fn new(name: Arc<str>) -> Self {
        Self {
            name,
            counts: Mutex::new([0; State::ALL.len()]),
        }
    }

    /// The group's name, the `breaker` label of its metrics.
    pub(crate) fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// A breaker counted in `counted` is now in `to` (`None`: it left the group for good).
    pub(crate) fn moved(&self, counted: &AtomicU8, to: Option<State>) {
        let mut counts = self
            .counts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let from = counted.load(Ordering::Acquire);
        if from == RETIRED {
            return;
        }
        if let Some(from) = State::ALL.get(usize::from(from)) {
            self.set(&mut counts, *from, |n| n.saturating_sub(1));
        }
        match to {
            Some(to) => {
                self.set(&mut counts, to, |n| n + 1);
                counted.store(to.code(), Ordering::Release);
            }
            None => counted.store(RETIRED, Ordering::Release),
        }
    }

    fn set(&self, counts: &mut [u64; State::ALL.len()], state: State, f: impl Fn(u64) -> u64) {
        let n = &mut counts[usize::from(state.code())];
        *n = f(*n);
        #[allow(clippy::cast_precision_loss)] // a count of breakers, far below 2^52
        metrics::gauge!(crate::names::BREAKER_KEYS.name, "breaker" => self.name.to_string(), "state" => state.as_str())
            .set(*n as f64);
    }
}
