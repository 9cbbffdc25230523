//! Shared-memory spaces: regions of memory shared between processes, in which weft objects live
//! (DESIGN.md §1, issue 3).
//!
//! Layers, bottom up:
//! - [`Segment`] (`segment.rs`): one shared-memory file mapped into the process, anonymous (a
//!   sealed memfd, inherited by forked children or handed over by descriptor) or named
//!   (`/dev/shm/weft.<name>`, created exclusively and owner-only, checked on open).
//! - [`layout::Space`] (`layout.rs`, `alloc.rs`, `object.rs`): the on-segment format — a
//!   validated header, a size-class allocator, reference-counted objects, a directory of named
//!   objects, the participants table — all of it robust to a process dying mid-update.
//! - [`liveness`]: process and thread identities immune to pid reuse.
//! - [`handle`]: a process's handles on spaces — the default space, named spaces, participation,
//!   the sweep of abandoned named spaces.
//! - [`shared`]: references to objects and the tokens that carry them to other processes.
//!
//! Linux-only for now: `memfd_create` with seals, `shm_open` on `/dev/shm`, `fallocate`. The OS
//! calls stay inside this module so that other back ends can be added here (DESIGN.md §7).

mod alloc;
pub mod array;
pub mod dict;
mod name;
mod segment;
pub mod handle;
pub mod layout;
pub mod list;
pub mod liveness;
pub mod object;
pub mod shared;

pub use name::validate_name;
pub use segment::Segment;
pub use liveness::Identity;
