//! Private (one process) queues.
