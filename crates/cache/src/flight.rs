//! In-process single-flight: concurrent misses on one key wait for one leader.

use std::any::Any;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::watch;

/// What a leader hands to its followers.
pub(crate) type Outcome = Arc<dyn Any + Send + Sync>;

type Slot = (u64, watch::Receiver<Option<Outcome>>);

#[derive(Debug, Default)]
pub(crate) struct Flights {
    map: Mutex<HashMap<String, Slot>>,
    next: AtomicU64,
    /// Flights ended so far (see [`Flights::mark`]).
    ended: AtomicU64,
}

pub(crate) enum Join {
    Leader(Leader),
    Follower(Follower),
}

/// The one caller doing the work; dropping it without [`Leader::finish`] lets the followers
/// elect a new leader.
pub(crate) struct Leader {
    flights: Arc<Flights>,
    key: String,
    id: u64,
    tx: watch::Sender<Option<Outcome>>,
}

pub(crate) struct Follower {
    rx: watch::Receiver<Option<Outcome>>,
}

impl Flights {
    pub(crate) fn join(self: &Arc<Self>, key: String) -> Join {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, rx)) = map.get(&key) {
            crate::names::flight_join();
            return Join::Follower(Follower { rx: rx.clone() });
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = watch::channel(None);
        map.insert(key.clone(), (id, rx));
        Join::Leader(Leader {
            flights: Arc::clone(self),
            key,
            id,
            tx,
        })
    }

    /// A mark to take before reading the store for a key: a leader elected after that read
    /// tells with [`Leader::ended_since`] whether a flight ended in between, and may have
    /// stored the entry that the read missed.
    pub(crate) fn mark(&self) -> u64 {
        self.ended.load(Ordering::Acquire)
    }

    /// Flights in progress (for tests).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

impl Leader {
    /// Whether a flight (of any key) ended since [`Flights::mark`] returned `mark`.
    pub(crate) fn ended_since(&self, mark: u64) -> bool {
        self.flights.ended.load(Ordering::Acquire) != mark
    }

    /// Hands the outcome to every follower and ends the flight.
    pub(crate) fn finish(self, outcome: Outcome) {
        self.tx.send_replace(Some(outcome));
        // Drop removes the flight.
    }
}

impl Drop for Leader {
    fn drop(&mut self) {
        let mut map = self
            .flights
            .map
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if map.get(&self.key).is_some_and(|(id, _)| *id == self.id) {
            map.remove(&self.key);
            // Under the map's lock: a caller that joins after this removal sees the count.
            self.flights.ended.fetch_add(1, Ordering::Release);
        }
    }
}

impl Follower {
    /// The leader's outcome, or `None` when the leader went away without one.
    pub(crate) async fn wait(mut self) -> Option<Outcome> {
        match self.rx.wait_for(Option::is_some).await {
            Ok(v) => v.clone(),
            Err(_) => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn followers_get_the_leaders_outcome_and_a_dropped_leader_is_replaced() {
        let flights = Arc::new(Flights::default());
        let Join::Leader(leader) = flights.join("k".into()) else {
            panic!("first caller leads")
        };
        let Join::Follower(f1) = flights.join("k".into()) else {
            panic!("second caller follows")
        };
        let waiting = tokio::spawn(f1.wait());
        leader.finish(Arc::new(7u32));
        let got = waiting.await.unwrap().unwrap();
        assert_eq!(got.downcast_ref::<u32>(), Some(&7));
        assert_eq!(flights.len(), 0);

        let Join::Leader(leader) = flights.join("k".into()) else {
            panic!()
        };
        let Join::Follower(f2) = flights.join("k".into()) else {
            panic!()
        };
        drop(leader);
        assert!(
            f2.wait().await.is_none(),
            "a vanished leader wakes followers empty-handed"
        );
        assert!(matches!(flights.join("k".into()), Join::Leader(_)));
    }

    #[test]
    fn a_leader_tells_whether_a_flight_ended_since_a_mark() {
        let flights = Arc::new(Flights::default());
        let mark = flights.mark();
        let Join::Leader(first) = flights.join("k".into()) else {
            panic!("first caller leads")
        };
        assert!(!first.ended_since(mark));
        first.finish(Arc::new(1u32));
        let Join::Leader(second) = flights.join("k".into()) else {
            panic!("the flight ended: the next caller leads")
        };
        assert!(
            second.ended_since(mark),
            "the first flight ended after the mark"
        );
        assert!(!second.ended_since(flights.mark()));
    }
}
