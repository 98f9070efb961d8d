//! The local tier: decoded entries in process memory (moka), invalidated over the bus.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use crate::entry::Entry;

type Fields = Arc<[(Box<str>, Arc<Entry>)]>;

#[derive(Debug)]
pub(crate) struct L1 {
    groups: moka::sync::Cache<String, Fields>,
    /// Fills take it shared, invalidations exclusively: a fill that read the store before an
    /// invalidation can never land after it.
    gate: RwLock<()>,
    epoch: AtomicU64,
    /// Whether invalidations are being received; the tier is bypassed otherwise.
    healthy: AtomicBool,
}

impl L1 {
    pub(crate) fn new(max_bytes: u64, ttl: Duration, healthy: bool) -> Self {
        Self {
            groups: moka::sync::Cache::builder()
                .max_capacity(max_bytes)
                .weigher(|k: &String, v: &Fields| {
                    let size: usize = v
                        .iter()
                        .map(|(f, e)| f.len() + entry_size(e))
                        .sum::<usize>()
                        + k.len();
                    u32::try_from(size).unwrap_or(u32::MAX)
                })
                .time_to_live(ttl)
                .build(),
            gate: RwLock::new(()),
            epoch: AtomicU64::new(0),
            healthy: AtomicBool::new(healthy),
        }
    }

    pub(crate) fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Acquire)
    }

    pub(crate) fn get(&self, group: &str, field: &str) -> Option<Arc<Entry>> {
        if !self.is_healthy() {
            return None;
        }
        let fields = self.groups.get(group)?;
        fields
            .iter()
            .find(|(f, _)| &**f == field)
            .map(|(_, e)| Arc::clone(e))
    }

    /// The epoch to pass to [`L1::fill`], read before reading the store.
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// Keeps `entry` unless an invalidation arrived since `epoch` was read.
    pub(crate) fn fill(&self, group: &str, field: &str, entry: &Arc<Entry>, epoch: u64) {
        let _gate = self.gate.read().unwrap_or_else(PoisonError::into_inner);
        if !self.is_healthy() || self.epoch.load(Ordering::Acquire) != epoch {
            return;
        }
        self.groups.entry_by_ref(group).and_upsert_with(|old| {
            let mut fields: Vec<(Box<str>, Arc<Entry>)> = match old {
                Some(old) => old
                    .into_value()
                    .iter()
                    .filter(|(f, _)| &**f != field)
                    .cloned()
                    .collect(),
                None => Vec::with_capacity(1),
            };
            fields.push((field.into(), Arc::clone(entry)));
            fields.into()
        });
    }

    /// Drops groups (or everything) and moves the epoch.
    pub(crate) fn invalidate(&self, groups: Option<&[String]>) {
        let _gate = self.gate.write().unwrap_or_else(PoisonError::into_inner);
        self.epoch.fetch_add(1, Ordering::AcqRel);
        match groups {
            Some(groups) => groups.iter().for_each(|g| self.groups.invalidate(g)),
            None => self.groups.invalidate_all(),
        }
    }

    /// Marks the tier usable or not; becoming unusable drops everything. Called by the Redis
    /// invalidation bus, as it loses and regains its subscription.
    #[cfg_attr(not(feature = "redis"), allow(dead_code))]
    pub(crate) fn set_healthy(&self, healthy: bool) {
        if healthy {
            self.healthy.store(true, Ordering::Release);
        } else {
            let _gate = self.gate.write().unwrap_or_else(PoisonError::into_inner);
            self.healthy.store(false, Ordering::Release);
            self.epoch.fetch_add(1, Ordering::AcqRel);
            self.groups.invalidate_all();
        }
    }
}

fn entry_size(e: &Entry) -> usize {
    use crate::entry::EntryBody;
    64 + match &e.body {
        EntryBody::Response(r) => {
            r.body.len()
                + r.headers
                    .iter()
                    .map(|(n, v)| n.as_str().len() + v.len() + 16)
                    .sum::<usize>()
        }
        EntryBody::Vary(n) => n.len() * 16,
        EntryBody::Value(v) => v.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::EntryBody;
    use bytes::Bytes;

    fn entry() -> Arc<Entry> {
        Arc::new(Entry {
            stored_at: 0,
            ttl_ms: 1000,
            swr_ms: 0,
            sie_ms: 0,
            body: EntryBody::Value(Bytes::from_static(b"1")),
        })
    }

    #[test]
    fn a_fill_that_raced_an_invalidation_is_dropped() {
        let l1 = L1::new(1 << 20, Duration::from_secs(60), true);
        let before = l1.epoch();
        l1.invalidate(Some(&["g".to_owned()]));
        l1.fill("g", "f", &entry(), before);
        assert!(l1.get("g", "f").is_none());
        l1.fill("g", "f", &entry(), l1.epoch());
        l1.fill("g", "f2", &entry(), l1.epoch());
        assert!(l1.get("g", "f").is_some() && l1.get("g", "f2").is_some());
        l1.invalidate(Some(&["g".to_owned()]));
        assert!(l1.get("g", "f").is_none() && l1.get("g", "f2").is_none());
    }

    #[test]
    fn an_unhealthy_tier_serves_and_keeps_nothing() {
        let l1 = L1::new(1 << 20, Duration::from_secs(60), true);
        l1.fill("g", "f", &entry(), l1.epoch());
        l1.set_healthy(false);
        assert!(l1.get("g", "f").is_none());
        l1.fill("g", "f", &entry(), l1.epoch());
        l1.set_healthy(true);
        assert!(
            l1.get("g", "f").is_none(),
            "dropped on the way down, not filled while down"
        );
    }
}
