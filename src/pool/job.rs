//! A job: one task function, its argument bytes and the future it completes; and running one
//! on the calling thread.

use crate::call::{Call, Outcome};
use crate::capi::call::run_c_task;
use crate::future::Future;
use crate::process::child::TaskFn;
use std::sync::atomic::AtomicU32;

/// Argument bytes; up to [`INLINE`] of them are kept in the job itself, with no allocation.
pub(crate) enum Arg {
    Inline { len: u8, bytes: [u8; INLINE] },
    Heap(Box<[u8]>),
}

/// Longest argument kept inline.
pub(crate) const INLINE: usize = 32;

impl Arg {
    /// A copy of `bytes`.
    pub(crate) fn new(bytes: &[u8]) -> Arg {
        if bytes.len() <= INLINE {
            let mut inline = [0u8; INLINE];
            inline[..bytes.len()].copy_from_slice(bytes);
            Arg::Inline { len: bytes.len() as u8, bytes: inline }
        } else {
            Arg::Heap(bytes.into())
        }
    }

    /// The bytes.
    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            Arg::Inline { len, bytes } => &bytes[..*len as usize],
            Arg::Heap(b) => b,
        }
    }
}

/// One submitted task: a call of `func` on `arg`, or with `chunk`, one call of `func` per item
/// packed in `arg` (see `chunk.rs`).
pub(crate) struct Job {
    pub(crate) func: TaskFn,
    pub(crate) arg: Arg,
    pub(crate) chunk: bool,
    pub(crate) future: Future,
}

impl Job {
    /// Runs the job on this thread unless its future was cancelled first, and completes the
    /// future. `own_cancel` is the running thread's own cancel word, put back afterwards.
    /// Returns false when the job was cancelled before it ran.
    pub(crate) fn run(self, own_cancel: *const AtomicU32) -> bool {
        if !self.future.set_running().unwrap_or(false) {
            return false;
        }
        let outcome = if self.chunk {
            crate::futex::set_cancel_word(self.future.cancel_word());
            let r = super::chunk::run(self.func, self.arg.as_slice(), self.future.cancel_word());
            crate::futex::set_cancel_word(own_cancel);
            match r {
                Ok(result) => Outcome { status: crate::status::WEFT_OK, result, message: String::new() },
                Err(e) => Outcome { status: e.code, result: Vec::new(), message: e.message.into_owned() },
            }
        } else {
            run_task(self.func, self.arg.as_slice(), self.future.cancel_word(), own_cancel)
        };
        let _ = self.future.complete(outcome);
        true
    }
}

/// Runs `func` on `arg` with `cancel` as the cancel word that the task's `weft_call` and the
/// weft waits inside it watch; `own_cancel` is the thread's word, put back afterwards.
pub(crate) fn run_task(func: TaskFn, arg: &[u8], cancel: &AtomicU32, own_cancel: *const AtomicU32) -> Outcome {
    crate::futex::set_cancel_word(cancel);
    let mut call = Call::new(arg, cancel);
    let status = run_c_task(func, &mut call);
    crate::futex::set_cancel_word(own_cancel);
    call.finish(status)
}
