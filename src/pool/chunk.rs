//! Chunks: several items of a map run as one job, so that a worker pays the queue and the
//! future once per chunk instead of once per item.
//!
//! A chunk job's argument is its items packed as for `weft_queue_get_many` (for each item its
//! length as a native-endian `u64`, then its bytes). Its result holds one entry per item, in
//! order: `status: i32, len: u32` (native-endian), then `len` bytes — the item's result bytes
//! when `status` is `WEFT_OK`, else its failure message. A chunk job itself always succeeds
//! once it ran; a chunk cancelled before it ran is cancelled as a whole.

use crate::call::Call;
use crate::capi::call::run_c_task;
use crate::process::child::TaskFn;
use crate::status::{Error, Result, WEFT_CORRUPTED, WEFT_OK};
use std::sync::atomic::AtomicU32;

/// Appends `item` to packed items.
pub(crate) fn pack_item(packed: &mut Vec<u8>, item: &[u8]) {
    packed.extend_from_slice(&(item.len() as u64).to_ne_bytes());
    packed.extend_from_slice(item);
}

/// The items of packed items, in order. Errors: `WEFT_CORRUPTED` for a truncated buffer.
pub(crate) fn items(packed: &[u8]) -> impl Iterator<Item = Result<&[u8]>> {
    let mut rest = packed;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let Some((len, tail)) = rest.split_first_chunk::<8>() else {
            rest = &[];
            return Some(Err(Error::new(WEFT_CORRUPTED, "truncated chunk item length")));
        };
        let len = u64::from_ne_bytes(*len);
        if len > tail.len() as u64 {
            rest = &[];
            return Some(Err(Error::new(WEFT_CORRUPTED, "chunk item longer than the chunk")));
        }
        let (item, tail) = tail.split_at(len as usize);
        rest = tail;
        Some(Ok(item))
    })
}

/// One item's outcome inside a chunk result.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct ItemOutcome<'a> {
    pub(crate) status: i32,
    /// Result bytes (status OK) or failure message.
    pub(crate) bytes: &'a [u8],
}

/// The entries of a chunk result, in order. Errors: `WEFT_CORRUPTED` for a malformed buffer
/// (a process worker's result is checked, not trusted).
pub(crate) fn outcomes(result: &[u8]) -> impl Iterator<Item = Result<ItemOutcome<'_>>> {
    let mut rest = result;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let Some((head, tail)) = rest.split_first_chunk::<8>() else {
            rest = &[];
            return Some(Err(Error::new(WEFT_CORRUPTED, "truncated chunk result entry")));
        };
        let status = i32::from_ne_bytes([head[0], head[1], head[2], head[3]]);
        let len = u32::from_ne_bytes([head[4], head[5], head[6], head[7]]) as usize;
        if len > tail.len() {
            rest = &[];
            return Some(Err(Error::new(WEFT_CORRUPTED, "chunk result entry longer than the result")));
        }
        let (bytes, tail) = tail.split_at(len);
        rest = tail;
        Some(Ok(ItemOutcome { status, bytes }))
    })
}

/// Runs `func` on every item of `packed` in turn (each with its own `weft_call`, all watching
/// the cancel word `cancel`), and returns the chunk result. An item whose result (or message)
/// exceeds 4 GiB fails with `WEFT_INVALID_ARGUMENT`.
pub(crate) fn run(func: TaskFn, packed: &[u8], cancel: &AtomicU32) -> Result<Vec<u8>> {
    let mut out = Vec::with_capacity(packed.len());
    for item in items(packed) {
        let item = item?;
        let mut call = Call::new(item, cancel);
        let status = run_c_task(func, &mut call);
        let o = call.finish(status);
        let (status, bytes) = if o.status == WEFT_OK { (WEFT_OK, &o.result[..]) } else { (o.status, o.message.as_bytes()) };
        let (status, bytes) = if bytes.len() > u32::MAX as usize {
            (crate::status::WEFT_INVALID_ARGUMENT, &b"the item's result exceeds 4 GiB"[..])
        } else {
            (status, bytes)
        };
        out.extend_from_slice(&status.to_ne_bytes());
        out.extend_from_slice(&(bytes.len() as u32).to_ne_bytes());
        out.extend_from_slice(bytes);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_items_round_trip_and_truncation_is_caught() {
        let mut p = Vec::new();
        for it in [&b"a"[..], b"", b"xyz"] {
            pack_item(&mut p, it);
        }
        let got: Vec<&[u8]> = items(&p).map(|r| r.unwrap()).collect();
        assert_eq!(got, vec![&b"a"[..], b"", b"xyz"]);
        assert_eq!(items(&p[..p.len() - 1]).last().unwrap().unwrap_err().code, WEFT_CORRUPTED);
        assert_eq!(items(&p[..3]).next().unwrap().unwrap_err().code, WEFT_CORRUPTED);
    }

    unsafe extern "C" fn double_or_fail(call: *mut crate::capi::call::weft_call) -> i32 {
        // SAFETY: `call` is the live context of this call.
        let call = unsafe { &mut *(call as *mut Call) };
        let x = call.arg()[0];
        if x == 0 {
            call.set_message("zero".into());
            return crate::status::WEFT_INVALID_ARGUMENT;
        }
        call.set_result(&[x * 2]);
        WEFT_OK
    }

    #[test]
    fn a_chunk_reports_each_item() {
        let mut p = Vec::new();
        for x in [1u8, 0, 3] {
            pack_item(&mut p, &[x]);
        }
        let out = run(double_or_fail, &p, &AtomicU32::new(0)).unwrap();
        let got: Vec<ItemOutcome> = outcomes(&out).map(|r| r.unwrap()).collect();
        assert_eq!(got[0], ItemOutcome { status: WEFT_OK, bytes: &[2] });
        assert_eq!(got[1], ItemOutcome { status: crate::status::WEFT_INVALID_ARGUMENT, bytes: b"zero" });
        assert_eq!(got[2], ItemOutcome { status: WEFT_OK, bytes: &[6] });
        assert_eq!(outcomes(&out[..out.len() - 1]).last().unwrap().unwrap_err().code, WEFT_CORRUPTED);
    }
}
