//! The main function of a process-pool worker (it runs in the child): open the worker's task
//! queue and the pool's result queue, run the initializer, then take records one at a time —
//! a task is taken, run and answered before the next is taken, so that when the worker dies
//! the parent knows which task it was running (see `processes.rs`).

use super::records::{self, Incoming, Target};
use crate::call::Call;
use crate::capi::call::{run_c_task, weft_call};
use crate::process::child::TaskFn;
use crate::queue::shared::SharedQueue;
use crate::status::{weft_status, Error, Result, WEFT_CLOSED, WEFT_CORRUPTED, WEFT_NOT_FOUND, WEFT_OK};
use crate::time::Deadline;
use std::sync::atomic::AtomicU32;

/// What a worker is started with (its task argument).
pub(crate) struct Boot {
    pub(crate) tasks: Vec<u8>,
    pub(crate) results: Vec<u8>,
    /// Token of the worker's cancel ticket (a one-item `I` array; see `processes.rs`).
    pub(crate) ticket: Vec<u8>,
    pub(crate) worker: u32,
    pub(crate) max_tasks: u64,
    /// The initializer's define record and argument.
    pub(crate) initializer: Option<(Vec<u8>, Vec<u8>)>,
}

/// The value a worker's cancel ticket holds while it runs task `id`: the task number's low 31
/// bits, shifted over the cancel bit (a worker is never more than a window of tasks ahead of
/// the number the parent asks about, so they cannot be confused).
pub(crate) fn ticket_of(id: u64) -> u32 {
    (id as u32) << 1
}

fn put(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u64).to_le_bytes());
    out.extend_from_slice(b);
}

fn take<'a>(r: &mut &'a [u8]) -> Result<&'a [u8]> {
    let bad = || Error::new(WEFT_CORRUPTED, "malformed pool worker argument");
    let (n, rest) = r.split_first_chunk::<8>().ok_or_else(bad)?;
    let n = usize::try_from(u64::from_le_bytes(*n)).map_err(|_| bad())?;
    if rest.len() < n {
        return Err(bad());
    }
    let (a, b) = rest.split_at(n);
    *r = b;
    Ok(a)
}

impl Boot {
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put(&mut out, &self.tasks);
        put(&mut out, &self.results);
        put(&mut out, &self.ticket);
        put(&mut out, &self.worker.to_le_bytes());
        put(&mut out, &self.max_tasks.to_le_bytes());
        if let Some((d, a)) = &self.initializer {
            put(&mut out, d);
            put(&mut out, a);
        }
        out
    }

    pub(crate) fn decode(mut r: &[u8]) -> Result<Boot> {
        let bad = || Error::new(WEFT_CORRUPTED, "malformed pool worker argument");
        let tasks = take(&mut r)?.to_vec();
        let results = take(&mut r)?.to_vec();
        let ticket = take(&mut r)?.to_vec();
        let worker = u32::from_le_bytes(take(&mut r)?.try_into().map_err(|_| bad())?);
        let max_tasks = u64::from_le_bytes(take(&mut r)?.try_into().map_err(|_| bad())?);
        let initializer = if r.is_empty() { None } else { Some((take(&mut r)?.to_vec(), take(&mut r)?.to_vec())) };
        Ok(Boot { tasks, results, ticket, worker, max_tasks, initializer })
    }
}

/// Turns a define record's target into a callable function.
fn resolve(target: &Target) -> Result<TaskFn> {
    let addr = match target {
        Target::Address(a) => *a as usize,
        Target::Located(l) => crate::process::target::resolve(l)?,
    };
    if addr == 0 {
        return Err(Error::new(WEFT_NOT_FOUND, "a null task function"));
    }
    // SAFETY: `addr` is a task function of this image: the parent's own address (fork: the
    // same image) or the address the loader gave for the function the parent located.
    Ok(unsafe { std::mem::transmute::<usize, TaskFn>(addr) })
}

/// The worker's task function (run in the child by `process::start`).
///
/// # Safety
/// `call` is the live context of this call.
pub(crate) unsafe extern "C" fn pool_worker(call: *mut weft_call) -> weft_status {
    // SAFETY: per the contract.
    let call = unsafe { &mut *(call as *mut Call) };
    match serve(call.arg()) {
        Ok(()) => WEFT_OK,
        Err(e) => {
            call.set_message(e.message.into_owned());
            e.code
        }
    }
}

fn serve(arg: &[u8]) -> Result<()> {
    let boot = Boot::decode(arg)?;
    // Borrowed: the pool holds these objects until it has seen this worker end, so a worker
    // killed at any point leaves no reference behind (nothing leaks in the space).
    let tasks = SharedQueue::from_token_borrowed(&boot.tasks)?;
    let results = SharedQueue::from_token_borrowed(&boot.results)?;
    let tickets = crate::space::array::SharedArray::from_token_borrowed(&boot.ticket)?;
    if tickets.type_char() != b'I' || tickets.is_empty() {
        return Err(Error::new(WEFT_CORRUPTED, "the pool worker's cancel ticket is not a uint32 array"));
    }
    // SAFETY: the array's data is 64-aligned, holds at least one 4-byte item, and lives as
    // long as `tickets`, which outlives every use below; it is only accessed atomically.
    let ticket = unsafe { &*(tickets.data() as *const AtomicU32) };
    let cancel = AtomicU32::new(0);
    let mut out = Vec::new();
    if let Some((define, init_arg)) = &boot.initializer {
        let failure = match records::read_incoming(define).and_then(|d| match d {
            Incoming::Define { target, .. } => resolve(&target),
            _ => Err(Error::new(WEFT_CORRUPTED, "the initializer is not a define record")),
        }) {
            Ok(f) => {
                let mut call = Call::new(init_arg, &cancel);
                let status = run_c_task(f, &mut call);
                let o = call.finish(status);
                (o.status != WEFT_OK).then_some((o.status, o.message))
            }
            Err(e) => Some((e.code, e.message.into_owned())),
        };
        if let Some((status, message)) = failure {
            records::result(&mut out, boot.worker, status, 0, 0, records::RESULT_INIT_FAILED, message.as_bytes());
            return results.put(&out, 0, Deadline::Never);
        }
    }
    let mut table: Vec<Option<std::result::Result<TaskFn, Error>>> = Vec::new();
    let mut ran = 0u64;
    loop {
        let rec = match tasks.get(Deadline::Never) {
            Ok(r) => r,
            Err(e) if e.code == WEFT_CLOSED => return Ok(()),
            Err(e) => return Err(e),
        };
        match records::read_incoming(&rec)? {
            Incoming::Define { slot, target } => {
                let slot = slot as usize;
                if table.len() <= slot {
                    table.resize_with(slot + 1, || None);
                }
                table[slot] = Some(resolve(&target));
            }
            Incoming::Task { slot, id, chunk, arg } => {
                let started = crate::time::now_ns();
                let (status, bytes) = match table.get(slot as usize) {
                    Some(Some(Ok(f))) => {
                        // The ticket is this task's cancel word: the parent sets its bit 0 (only
                        // while it still holds this task's number) and wakes weft waits in it.
                        ticket.store(ticket_of(id), std::sync::atomic::Ordering::Release);
                        crate::futex::set_shared_cancel_word(ticket);
                        let r = if chunk {
                            super::chunk::run(*f, arg, ticket).map(|r| (WEFT_OK, r))
                        } else {
                            let mut call = Call::new(arg, ticket);
                            let status = run_c_task(*f, &mut call);
                            let o = call.finish(status);
                            Ok(if o.status == WEFT_OK { (WEFT_OK, o.result) } else { (o.status, o.message.into_bytes()) })
                        };
                        crate::futex::set_cancel_word(std::ptr::null());
                        r.unwrap_or_else(|e| (e.code, e.message.into_owned().into_bytes()))
                    }
                    Some(Some(Err(e))) => (e.code, format!("the task function cannot be found in the worker: {}", e.message).into_bytes()),
                    _ => (WEFT_CORRUPTED, b"a task for an undefined function".to_vec()),
                };
                let ns = crate::time::now_ns().saturating_sub(started);
                records::result(&mut out, boot.worker, status, id, ns, records::RESULT_TASK, &bytes);
                if let Err(e) = results.put(&out, 0, Deadline::Never) {
                    // Too large for the result queue: say so instead.
                    let why = format!("the task's result could not be sent: {}", e.message);
                    records::result(&mut out, boot.worker, e.code, id, ns, records::RESULT_TASK, why.as_bytes());
                    results.put(&out, 0, Deadline::Never)?;
                }
                ran += 1;
                if boot.max_tasks != 0 && ran >= boot.max_tasks {
                    return Ok(());
                }
            }
        }
    }
}
