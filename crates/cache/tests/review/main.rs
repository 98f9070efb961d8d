//! Regression tests of the security review (issue 21), each named after the attack it stops,
//! against the memory store and a real redis-server where the store matters.

#[path = "../support/mod.rs"]
mod support;

mod connection;
mod fill;
mod host_key;
mod if_none_match;
mod ignored_params;
mod long_header;
mod private_mark;
mod unsafe_methods;
