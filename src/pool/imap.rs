//! `imap` / `imap_unordered`: Python's lazy maps. Items come from a source the caller gives
//! (an iterator, or a C callback), are cut into chunks as they are needed, and at most
//! `max_chunks` chunks are in flight: the source is not read further until the caller has
//! taken results, so an endless source works and memory stays bounded.
//!
//! The source is read on the thread that calls [`Imap::next`] (never on a worker), so a C
//! callback needs no locking. Ordered results come in item order; unordered ones chunk by
//! chunk as chunks finish (item order within a chunk). A failed item gives its own error at
//! its place and the iteration goes on, as Python's iterator raises and can be resumed. A
//! source that fails ends the input: its error comes after the results of the items before it.
//! So does a pool closed (or broken) while the input is not read to its end: the chunks
//! submitted before still deliver their results, then the submit error comes.

use super::chunk;
use super::job::{Arg, Job};
use super::Pool;
use crate::future::{wait, Future, Mode};
use crate::futex::Interrupt;
use crate::process::child::TaskFn;
use crate::status::{Error, Result, WEFT_OK};
use crate::time::Deadline;
use std::collections::VecDeque;

/// Where an `imap` takes its items: `Ok(None)` ends the input; an error ends it too.
pub type Source = Box<dyn FnMut() -> Result<Option<Vec<u8>>> + Send>;

/// A lazy map in progress. Not thread-safe for concurrent `next` calls (`&mut self`).
pub struct Imap {
    pool: Pool,
    func: TaskFn,
    source: Source,
    chunksize: usize,
    max_chunks: usize,
    ordered: bool,
    /// Chunks submitted and not yet delivered, in submission order.
    in_flight: VecDeque<Future>,
    /// Outcomes of the chunk being delivered, in order.
    ready: VecDeque<Result<Vec<u8>>>,
    /// The source ended (or failed: the error waits here).
    ended: bool,
    source_error: Option<Error>,
}

impl Pool {
    /// Starts a lazy map of `func` over `source` (`chunksize` items per job, at least 1;
    /// at most `max_chunks` chunks in flight, at least 1). The first chunks are submitted by
    /// the first [`Imap::next`].
    pub fn imap(&self, func: TaskFn, source: Source, chunksize: usize, max_chunks: usize, ordered: bool) -> Imap {
        Imap {
            pool: self.clone(),
            func,
            source,
            chunksize: chunksize.max(1),
            max_chunks: max_chunks.max(1),
            ordered,
            in_flight: VecDeque::new(),
            ready: VecDeque::new(),
            ended: false,
            source_error: None,
        }
    }
}

impl Imap {
    /// Reads the source into new chunks until `max_chunks` are in flight or it ends.
    fn top_up(&mut self) -> Result<()> {
        while !self.ended && self.in_flight.len() < self.max_chunks {
            let mut packed = Vec::new();
            let mut n = 0;
            while n < self.chunksize && packed.len() < super::map::MAX_CHUNK_BYTES {
                match (self.source)() {
                    Ok(Some(item)) => {
                        chunk::pack_item(&mut packed, &item);
                        n += 1;
                    }
                    Ok(None) => {
                        self.ended = true;
                        break;
                    }
                    Err(e) => {
                        self.ended = true;
                        self.source_error = Some(e);
                        break;
                    }
                }
            }
            if n == 0 {
                break;
            }
            let future = Future::new();
            let job = Job { func: self.func, arg: Arg::new(&packed), chunk: true, future: future.clone() };
            if let Err(e) = self.pool.submit_job(job) {
                // The pool was closed (or broke) meanwhile: the chunks in flight still deliver
                // their results, then this error ends the imap, as a failed source does (the
                // items read for this chunk are lost with it).
                self.ended = true;
                self.source_error = Some(e);
                break;
            }
            self.in_flight.push_back(future);
        }
        Ok(())
    }

    /// Takes the outcomes of a finished chunk into `ready`.
    fn deliver(&mut self, chunk: Future) {
        match chunk.result(Deadline::Now) {
            Ok(r) => {
                for o in chunk::outcomes(r) {
                    self.ready.push_back(match o {
                        Ok(o) if o.status == WEFT_OK => Ok(o.bytes.to_vec()),
                        Ok(o) => Err(Error::new(o.status, String::from_utf8_lossy(o.bytes).into_owned())),
                        Err(e) => Err(e),
                    });
                }
            }
            Err(e) => self.ready.push_back(Err(e)),
        }
    }

    /// The next result: `Ok(Some(Ok(bytes)))` for an item that succeeded, `Ok(Some(Err(e)))`
    /// for an item that failed (its status and message), `Ok(None)` once everything was
    /// delivered. `Err` is this call's own failure: `WEFT_TIMEOUT` (nothing finished by the
    /// deadline; call again), `WEFT_CANCELLED`, or the source's error or a submit error (the
    /// pool was closed or broke meanwhile) — once, after the results of the chunks submitted
    /// before it; then `Ok(None)`.
    pub fn next(&mut self, deadline: Deadline) -> Result<Option<Result<Vec<u8>>>> {
        loop {
            if let Some(r) = self.ready.pop_front() {
                // Keep the pipeline full while the caller works on this result.
                self.top_up()?;
                return Ok(Some(r));
            }
            self.top_up()?;
            if self.in_flight.is_empty() {
                return match self.source_error.take() {
                    Some(e) => Err(e),
                    None => Ok(None),
                };
            }
            let index = if self.ordered {
                self.in_flight[0].wait(deadline, Interrupt::Cancellable)?;
                0
            } else {
                let (a, b) = self.in_flight.as_slices();
                let all: Vec<Future> = a.iter().chain(b).cloned().collect();
                let done = wait(&all, Mode::FirstCompleted, deadline, Interrupt::Cancellable)?;
                match done.iter().position(|d| *d) {
                    Some(i) => i,
                    None => return Err(Error::timeout("no result of the map came in time")),
                }
            };
            if let Some(chunk) = self.in_flight.remove(index) {
                self.deliver(chunk);
            }
        }
    }

    /// Cancels the chunks not yet started (a running one finishes; its results are dropped)
    /// and ends the iteration: later `next` calls give `Ok(None)`.
    pub fn cancel(&mut self) {
        for f in self.in_flight.drain(..) {
            f.cancel();
        }
        self.ready.clear();
        self.ended = true;
        self.source_error = None;
    }
}

impl Drop for Imap {
    fn drop(&mut self) {
        self.cancel();
    }
}
