//! Code shared by the benches.

pub mod harness;
