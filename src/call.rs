//! The call context every task receives: argument bytes in, result bytes or a failure
//! message out, and "was I asked to cancel?". The same context serves threads now and pools
//! and processes later; capabilities are added here, never to the task signature.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

/// What a task produced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Outcome {
    /// `WEFT_OK`, or the failure status the task returned.
    pub status: crate::status::weft_status,
    /// Result bytes (successful tasks).
    pub result: Vec<u8>,
    /// Failure message (failed tasks).
    pub message: String,
}

/// The context of one running task. Not thread-safe: it belongs to the thread running the
/// task, for the duration of the call.
pub struct Call<'a> {
    arg: &'a [u8],
    result: Option<Vec<u8>>,
    message: Option<String>,
    cancel: &'a AtomicU32,
    fds: &'a [i32],
    /// A cancel ticket another process may mark (see [`Call::with_ticket`]).
    ticket: Option<(&'a AtomicU64, u64)>,
}

impl<'a> Call<'a> {
    /// A context over `arg`, watching `cancel` (non-zero once cancellation is requested).
    pub fn new(arg: &'a [u8], cancel: &'a AtomicU32) -> Self {
        Call { arg, result: None, message: None, cancel, fds: &[], ticket: None }
    }
    /// The same context also cancelled once `ticket` holds `id << 1 | 1`: a process-pool worker
    /// stores `id << 1` before running task `id`, and the parent marks the low bit with a
    /// compare-and-swap that fails once the worker has moved on to another task.
    pub fn with_ticket(mut self, ticket: &'a AtomicU64, id: u64) -> Self {
        self.ticket = Some((ticket, id));
        self
    }
    /// The same context handing the task the descriptors `fds` (a child process's passed
    /// descriptors, in the order the parent gave them).
    pub fn with_fds(mut self, fds: &'a [i32]) -> Self {
        self.fds = fds;
        self
    }
    /// The descriptors passed to the task (empty on threads).
    pub fn fds(&self) -> &[i32] {
        self.fds
    }
    /// The argument bytes.
    pub fn arg(&self) -> &[u8] {
        self.arg
    }
    /// Sets (replaces) the result bytes.
    pub fn set_result(&mut self, bytes: &[u8]) {
        self.result = Some(bytes.to_vec());
    }
    /// Sets (replaces) the failure message.
    pub fn set_message(&mut self, message: String) {
        self.message = Some(message);
    }
    /// True once somebody asked this task to cancel.
    pub fn cancelled(&self) -> bool {
        self.cancel.load(Ordering::Acquire) != 0
            || self.ticket.is_some_and(|(t, id)| t.load(Ordering::Acquire) == id << 1 | 1)
    }
    /// Turns the task's return status and what it set into an outcome.
    pub fn finish(self, status: crate::status::weft_status) -> Outcome {
        if status == crate::status::WEFT_OK {
            Outcome { status, result: self.result.unwrap_or_default(), message: String::new() }
        } else {
            let name = crate::status::name(status).to_string_lossy();
            let message = self.message.unwrap_or_else(|| format!("task returned {name}"));
            Outcome { status, result: Vec::new(), message }
        }
    }
}
