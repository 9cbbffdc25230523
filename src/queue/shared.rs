//! Shared (cross-process) queues in a space.
