//! The records a process pool exchanges through its shared queues (all integers
//! little-endian; every record read is checked, garbage gives `WEFT_CORRUPTED`).
//!
//! Parent → worker (the worker's own task queue):
//! - task: `1, flags: u8 (bit 0: chunk), 0, 0, slot: u32, id: u64`, then the argument bytes;
//! - define: `2, how: u8 (0 address, 1 located), 0, 0, slot: u32`, then for an address
//!   `addr: u64` (fork workers: the same image), for a located function its object path,
//!   offset, symbol and file identity (`process::target::Located`).
//!
//! Worker → parent (the pool's result queue):
//! - `worker: u32, status: i32, id: u64, ns: u64, kind: u8`, then the result bytes (status OK)
//!   or the failure message; `ns` is how long the worker ran the task (the parent paces its
//!   sends by it); kind 0 is a task's outcome, kind 1 says the initializer failed, kind 2 only
//!   wakes the collector (the parent's own, after a shutdown).

use crate::process::target::Located;
use crate::status::{Error, Result, WEFT_CORRUPTED};

pub(crate) const TASK: u8 = 1;
pub(crate) const DEFINE: u8 = 2;
pub(crate) const FLAG_CHUNK: u8 = 1;
pub(crate) const RESULT_TASK: u8 = 0;
pub(crate) const RESULT_INIT_FAILED: u8 = 1;
/// A record that only wakes the collector (the pool's own, never a worker's).
pub(crate) const RESULT_NUDGE: u8 = 2;

/// Where a worker finds a task function.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Target {
    /// A fork worker: the parent's address is valid in the child.
    Address(u64),
    /// A forkserver or spawn worker: loaded again by path (see `process::target`).
    Located(Located),
}

fn bad(what: &str) -> Error {
    Error::new(WEFT_CORRUPTED, format!("malformed pool record: {what}"))
}

/// A bounds-checked reader.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        if self.0.len() < n {
            return Err(bad(what));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4, what)?.try_into().unwrap_or([0; 4])))
    }
    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8, what)?.try_into().unwrap_or([0; 8])))
    }
    fn string(&mut self, what: &str) -> Result<String> {
        let n = self.u64(what)?;
        let n = usize::try_from(n).map_err(|_| bad(what))?;
        String::from_utf8(self.take(n, what)?.to_vec()).map_err(|_| bad(what))
    }
}

fn put_string(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u64).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// A task record.
pub(crate) fn task(out: &mut Vec<u8>, slot: u32, id: u64, chunk: bool, arg: &[u8]) {
    out.clear();
    out.extend_from_slice(&[TASK, if chunk { FLAG_CHUNK } else { 0 }, 0, 0]);
    out.extend_from_slice(&slot.to_le_bytes());
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(arg);
}

/// A define record.
pub(crate) fn define(slot: u32, target: &Target) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    match target {
        Target::Address(a) => {
            out.extend_from_slice(&[DEFINE, 0, 0, 0]);
            out.extend_from_slice(&slot.to_le_bytes());
            out.extend_from_slice(&a.to_le_bytes());
        }
        Target::Located(l) => {
            out.extend_from_slice(&[DEFINE, 1, 0, 0]);
            out.extend_from_slice(&slot.to_le_bytes());
            put_string(&mut out, &l.object);
            out.extend_from_slice(&l.offset.to_le_bytes());
            put_string(&mut out, l.symbol.as_deref().unwrap_or(""));
            for v in l.identity {
                out.extend_from_slice(&v.to_le_bytes());
            }
        }
    }
    out
}

/// A record read by a worker.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Incoming<'a> {
    Task { slot: u32, id: u64, chunk: bool, arg: &'a [u8] },
    Define { slot: u32, target: Target },
}

/// Reads a parent → worker record.
pub(crate) fn read_incoming(rec: &[u8]) -> Result<Incoming<'_>> {
    let mut r = Reader(rec);
    let head = r.take(4, "head")?;
    let slot = r.u32("slot")?;
    match head[0] {
        TASK => {
            let id = r.u64("task id")?;
            Ok(Incoming::Task { slot, id, chunk: head[1] & FLAG_CHUNK != 0, arg: r.0 })
        }
        DEFINE if head[1] == 0 => Ok(Incoming::Define { slot, target: Target::Address(r.u64("address")?) }),
        DEFINE if head[1] == 1 => {
            let object = r.string("object")?;
            let offset = r.u64("offset")?;
            let symbol = r.string("symbol")?;
            let mut identity = [0u64; 4];
            for v in &mut identity {
                *v = r.u64("identity")?;
            }
            let l = Located { object, offset, symbol: (!symbol.is_empty()).then_some(symbol), identity };
            Ok(Incoming::Define { slot, target: Target::Located(l) })
        }
        _ => Err(bad("unknown record type")),
    }
}

/// A result record.
pub(crate) fn result(out: &mut Vec<u8>, worker: u32, status: i32, id: u64, ns: u64, kind: u8, bytes: &[u8]) {
    out.clear();
    out.extend_from_slice(&worker.to_le_bytes());
    out.extend_from_slice(&status.to_le_bytes());
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&ns.to_le_bytes());
    out.push(kind);
    out.extend_from_slice(bytes);
}

/// A result record as the parent reads it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Outgoing<'a> {
    pub(crate) worker: u32,
    pub(crate) status: i32,
    pub(crate) id: u64,
    /// How long the worker ran the task, in ns.
    pub(crate) ns: u64,
    pub(crate) kind: u8,
    pub(crate) bytes: &'a [u8],
}

/// Reads a worker → parent record.
pub(crate) fn read_result(rec: &[u8]) -> Result<Outgoing<'_>> {
    let mut r = Reader(rec);
    let worker = r.u32("worker")?;
    let status = r.u32("status")? as i32;
    let id = r.u64("id")?;
    let ns = r.u64("run time")?;
    let kind = r.take(1, "kind")?[0];
    if kind > RESULT_NUDGE {
        return Err(bad("unknown result kind"));
    }
    Ok(Outgoing { worker, status, id, ns, kind, bytes: r.0 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_truncations_are_caught() {
        let mut t = Vec::new();
        task(&mut t, 7, 99, true, b"arg");
        assert_eq!(read_incoming(&t).unwrap(), Incoming::Task { slot: 7, id: 99, chunk: true, arg: b"arg" });
        let l = Located { object: "/lib/x.so".into(), offset: 42, symbol: Some("f".into()), identity: [1, 2, 3, 4] };
        for target in [Target::Address(0x1234), Target::Located(l)] {
            let d = define(3, &target);
            assert_eq!(read_incoming(&d).unwrap(), Incoming::Define { slot: 3, target: target.clone() });
            for n in 0..d.len() {
                assert_eq!(read_incoming(&d[..n]).unwrap_err().code, WEFT_CORRUPTED, "cut at {n}");
            }
        }
        let mut r = Vec::new();
        result(&mut r, 2, -5, 11, 1234, RESULT_TASK, b"msg");
        assert_eq!(read_result(&r).unwrap(), Outgoing { worker: 2, status: -5, id: 11, ns: 1234, kind: 0, bytes: b"msg" });
        for n in [12, 20, 24] {
            assert_eq!(read_result(&r[..n]).unwrap_err().code, WEFT_CORRUPTED, "cut at {n}");
        }
        r[24] = 9;
        assert_eq!(read_result(&r).unwrap_err().code, WEFT_CORRUPTED);
    }
}
