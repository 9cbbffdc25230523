//! weft: Python's concurrency toolbox — threads, locks, conditions, events, semaphores,
//! barriers and more — as a native library with a C ABI (`include/weft.h`).
//!
//! Module map (see DESIGN.md §1):
//! - [`status`]: status codes, last-error message, the FFI panic boundary
//! - [`time`]: timeouts to monotonic deadlines
//! - [`futex`]: the one place that waits and wakes
//! - [`sync`]: Lock, RLock, Semaphore, Event, Condition, Barrier
//! - [`space`]: shared-memory spaces (so far: segments, anonymous memfd or named /dev/shm)
//! - [`thread`]: threads, names, daemon flag, thread-locals, cancellation, failure hook
//! - [`call`]: the context a task receives
//! - [`fd`]: descriptors: pipes, socket pairs, polling with deadlines, descriptor passing
//! - [`future`]: futures, done callbacks, wait, as_completed, task groups
//! - [`pool`]: thread pools: submit, map, imap, close/join/terminate, resizing
//! - [`process`]: child processes (fork, forkserver, spawn), tracked by pidfd
//! - [`pipe`]: connections: framed messages over sockets, listener and client
//! - [`command`]: running external programs (subprocess)
//! - [`queue`]: queues (FIFO, LIFO, priority, simple), private or in a space
//! - [`reap`]: collecting children by pidfd, and those whose handles were dropped
//! - `capi`: every `extern "C"` function

pub mod call;
pub mod command;
pub mod fd;
pub mod futex;
pub mod future;
pub mod pipe;
pub mod pool;
pub mod process;
pub mod queue;
pub mod reap;
pub mod space;
pub mod status;
pub mod sync;
pub mod thread;
pub mod time;

pub mod capi;

#[cfg(test)]
mod test_support;
