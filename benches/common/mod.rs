//! Code shared by the benches.

pub mod harness;
pub mod pypeer;
pub mod os;
