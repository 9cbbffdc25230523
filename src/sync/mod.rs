//! The seven synchronisation primitives of Python's `threading`, one implementation each.
//!
//! Every primitive keeps its state in [`Word`](crate::futex::Word)s and blocks only through
//! [`Word::wait`](crate::futex::Word::wait), so the same state machines run on private words
//! now, on process-shared words inside a shared-memory space, and on loom's atomics in the
//! model-checking tests (`sync/models.rs`).

pub mod barrier;
pub mod condition;
pub mod event;
pub mod lock;
pub mod rlock;
pub mod robust;
pub mod semaphore;
pub mod shared_barrier;
pub mod shared_condition;

#[cfg(test)]
pub(crate) mod models;

pub use barrier::Barrier;
pub use condition::{CondLock, Condition};
pub use event::Event;
pub use lock::Lock;
pub use rlock::RLock;
pub use robust::{RobustLock, RobustRLock};
pub use semaphore::Semaphore;
pub use shared_barrier::SharedBarrier;
pub use shared_condition::{RobustCondLock, SharedCondition};
