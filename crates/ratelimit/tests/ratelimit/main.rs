//! GCRA behaviour with paused time (memory), accuracy across instances on real Redis and Redis
//! Cluster, failure modes, headers: one module per topic.

#[path = "../support/mod.rs"]
mod support;

mod cluster;
mod config;
mod count_if;
mod fallback;
mod headers;
mod hybrid;
mod memory;
mod metrics;
mod redis;
mod traces;
