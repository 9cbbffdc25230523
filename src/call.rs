//! The call context every task receives: argument bytes in, result bytes or a failure
//! message out, and "was I asked to cancel?". The same context serves threads now and pools
//! and processes later; capabilities are added here, never to the task signature.

use std::sync::atomic::{AtomicU32, Ordering};

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
}

impl<'a> Call<'a> {
    /// A context over `arg`, watching the cancel word `cancel` (cancellation is requested once
    /// its bit 0 is set, see `futex::CANCEL_BIT`).
    pub fn new(arg: &'a [u8], cancel: &'a AtomicU32) -> Self {
        Call { arg, result: None, message: None, cancel, fds: &[] }
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
        self.cancel.load(Ordering::Acquire) & crate::futex::CANCEL_BIT != 0
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
