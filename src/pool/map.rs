//! `map`: Python's `Pool.map` / `map_async` / `Executor.map` — one task function over many
//! items, the results in item order.
//!
//! The items are cut into chunks (`chunk.rs`), one job each, all queued under one lock hold;
//! a gathering future completes when the last chunk does. Its result is every item's result,
//! packed as `weft_queue_get_many` packs items (for each, its length as a native-endian
//! `u64`, then its bytes). When an item fails, the gathering future fails with that item's
//! status and a message naming the item (the first failed item, in item order), as Python's
//! `map` raises the first failure. Cancelling the gathering future cancels the chunks not yet
//! started.

use super::chunk;
use super::job::{Arg, Job};
use super::Pool;
use crate::future::Future;
use crate::process::child::TaskFn;
use crate::status::{Error, Result, WEFT_CANCELLED, WEFT_NO_MEMORY, WEFT_OK};
use std::sync::atomic::{AtomicUsize, Ordering::AcqRel};
use std::sync::Arc;

/// A chunk is cut when its packed items reach this many bytes, whatever the chunk size says,
/// so that a chunk always fits a process worker's task queue.
pub(crate) const MAX_CHUNK_BYTES: usize = 256 << 10;

/// Python's chunk size for `count` items over `workers` workers: about four chunks per
/// worker (`divmod(len, workers * 4)`, rounded up), at least 1.
pub fn auto_chunksize(count: usize, workers: usize) -> usize {
    let per = workers.max(1) * 4;
    (count / per + usize::from(count % per != 0)).max(1)
}

/// The chunks and the gathering future of one map.
struct Gather {
    chunks: Vec<Future>,
    left: AtomicUsize,
    out: Future,
}

impl Gather {
    /// Called by each chunk's completion; the last one assembles the result.
    fn chunk_done(&self) {
        if self.left.fetch_sub(1, AcqRel) != 1 {
            return;
        }
        let _ = match self.assemble() {
            Ok(packed) => self.out.set_result_vec(packed),
            Err(e) => self.out.set_failure(e.code, e.message.into_owned()),
        };
    }

    fn assemble(&self) -> Result<Vec<u8>> {
        let mut size = 0usize;
        for c in &self.chunks {
            match c.result(crate::time::Deadline::Now) {
                Ok(r) => size += r.len(),
                Err(e) if e.code == WEFT_CANCELLED => return Err(Error::new(WEFT_CANCELLED, "the map was cancelled")),
                Err(e) => return Err(e),
            }
        }
        let mut packed = Vec::new();
        packed.try_reserve_exact(size).map_err(|_| Error::new(WEFT_NO_MEMORY, "cannot hold the map's results"))?;
        let mut index = 0usize;
        for c in &self.chunks {
            let r = c.result(crate::time::Deadline::Now)?;
            for o in chunk::outcomes(r) {
                let o = o?;
                if o.status != WEFT_OK {
                    let why = String::from_utf8_lossy(o.bytes);
                    return Err(Error::new(o.status, format!("item {index} failed: {why}")));
                }
                packed.extend_from_slice(&(o.bytes.len() as u64).to_ne_bytes());
                packed.extend_from_slice(o.bytes);
                index += 1;
            }
        }
        Ok(packed)
    }
}

impl Pool {
    /// Python's `map_async`: runs `func` on every item (`chunksize` items per job; 0 chooses,
    /// see [`auto_chunksize`]) and returns the gathering future (see the module documentation).
    /// Errors: as [`Pool::submit`].
    pub fn map_async<'a, I>(&self, func: TaskFn, items: I, chunksize: usize) -> Result<Future>
    where
        I: IntoIterator<Item = &'a [u8]>,
        I::IntoIter: ExactSizeIterator,
    {
        let items = items.into_iter();
        let count = items.len();
        let chunksize = if chunksize == 0 { auto_chunksize(count, self.workers()) } else { chunksize };
        let out = Future::new();
        if count == 0 {
            out.set_result_vec(Vec::new())?;
            return Ok(out);
        }
        let mut jobs = Vec::with_capacity(count.div_ceil(chunksize));
        let mut packed = Vec::new();
        let mut in_chunk = 0;
        for item in items {
            chunk::pack_item(&mut packed, item);
            in_chunk += 1;
            if in_chunk == chunksize || packed.len() >= MAX_CHUNK_BYTES {
                jobs.push(Job { func, arg: Arg::new(&packed), chunk: true, future: Future::new() });
                packed.clear();
                in_chunk = 0;
            }
        }
        if in_chunk != 0 {
            jobs.push(Job { func, arg: Arg::new(&packed), chunk: true, future: Future::new() });
        }
        let gather = Arc::new(Gather {
            chunks: jobs.iter().map(|j| j.future.clone()).collect(),
            left: AtomicUsize::new(jobs.len()),
            out: out.clone(),
        });
        for c in &gather.chunks {
            let g = gather.clone();
            c.add_done_callback(move |_| g.chunk_done());
        }
        // Cancelling the map cancels the chunks (those running finish; the result is dropped).
        let chunks = gather.chunks.clone();
        out.add_done_callback(move |f| {
            if f.state() == crate::future::State::Cancelled {
                for c in &chunks {
                    c.cancel();
                }
            }
        });
        if let Err(e) = self.submit_jobs(jobs) {
            // Nothing was queued: release the gathering callbacks.
            for c in &gather.chunks {
                c.cancel();
            }
            return Err(e);
        }
        Ok(out)
    }

    /// Python's `map`: [`map_async`](Self::map_async), then the packed results (waiting up to
    /// `deadline`; a timeout leaves the map running).
    pub fn map<'a, I>(&self, func: TaskFn, items: I, chunksize: usize, deadline: crate::time::Deadline) -> Result<Vec<u8>>
    where
        I: IntoIterator<Item = &'a [u8]>,
        I::IntoIter: ExactSizeIterator,
    {
        let f = self.map_async(func, items, chunksize)?;
        f.result(deadline).map(|r| r.to_vec())
    }
}
