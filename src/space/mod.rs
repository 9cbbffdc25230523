//! Shared-memory spaces: regions of memory shared between processes, in which weft objects live
//! (DESIGN.md §1, issue 3).
//!
//! So far this holds the lowest layer, [`Segment`]: one shared-memory file mapped into the
//! process, either anonymous (a sealed memfd, inherited by forked children or handed over by its
//! descriptor) or named (`/dev/shm/weft.<name>`, opened by unrelated processes in any language,
//! created exclusively and owner-only, checked on open). The allocator, the named-object
//! directory, tokens and liveness will be built on it.
//!
//! Linux-only for now: `memfd_create` with seals, `shm_open` on `/dev/shm`, `fallocate`. The OS
//! calls stay inside this module so that other back ends can be added here (DESIGN.md §7).

mod name;
mod segment;
pub mod layout;
pub mod liveness;

pub use name::validate_name;
pub use segment::Segment;
pub use liveness::Identity;
