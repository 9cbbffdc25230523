//! Typed shared data: Python's `multiprocessing.Value` and `Array` — a fixed number of items of
//! one of Python's type codes, in a space, with an optional re-entrant lock and lock-free
//! atomic operations on integer items.
//!
//! # Payload layout
//!
//! | offset | field                                                          |
//! | ------ | -------------------------------------------------------------- |
//! | 0      | `RobustRLock` (24 bytes): the optional lock                    |
//! | 24     | `typecode: u32` (the ASCII code, e.g. `b'd'`)                  |
//! | 28     | `flags: u32` (bit 0: the lock is in use)                       |
//! | 32     | `len: u64` (items)                                             |
//! | 40..64 | reserved                                                       |
//! | 64     | the items, native-endian, packed                               |
//!
//! The header is read and checked once when the array is opened (type code known, length
//! times item size equal to the payload), and the handle keeps what it checked, so later
//! scribbles on the header cannot make it access memory outside the object.
//!
//! # Tearing and a dead writer
//!
//! Single items are read and written with one atomic access of their width, so an item is
//! never torn, whether or not the lock is used. A slice is copied item by item; a writer that
//! dies in the middle leaves every item either old or new. The operations that take the lock
//! themselves therefore recover a dead holder's lock silently (marking it consistent); an
//! explicit [`SharedArray::lock`] reports `WEFT_OWNER_DEAD` to its caller, whose own
//! multi-item invariants may be broken.

use super::handle::SpaceHandle;
use super::object::KIND_ARRAY;
use super::shared::SharedRef;
use crate::futex::{Interrupt, SharedWord};
use crate::status::{Error, Result, WEFT_CORRUPTED, WEFT_INVALID_ARGUMENT, WEFT_INVALID_STATE, WEFT_OWNER_DEAD};
use crate::sync::RobustRLock;
use crate::time::Deadline;
use std::sync::atomic::Ordering::{Relaxed, SeqCst};
use std::sync::atomic::{AtomicI16, AtomicI32, AtomicI64, AtomicI8, AtomicU32, AtomicU64};
use std::sync::Arc;

/// Offset of the items in the payload.
const DATA_OFFSET: usize = 64;
const FLAG_LOCK: u32 = 1;

#[repr(C)]
struct ArrayHeader {
    lock: RobustRLock<SharedWord>,
    typecode: AtomicU32,
    flags: AtomicU32,
    len: AtomicU64,
    reserved: [AtomicU64; 3],
}

const _: () = assert!(std::mem::size_of::<ArrayHeader>() == DATA_OFFSET);

/// One of Python's `array`/`ctypes` type codes that weft supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TypeCode {
    /// `b`: signed char.
    I8,
    /// `B`: unsigned char.
    U8,
    /// `h`: short.
    I16,
    /// `H`: unsigned short.
    U16,
    /// `i`: int.
    I32,
    /// `I`: unsigned int.
    U32,
    /// `l` / `q`: long (64-bit on Linux) / long long.
    I64,
    /// `L` / `Q`: unsigned long / unsigned long long.
    U64,
    /// `f`: float.
    F32,
    /// `d`: double.
    F64,
}

impl TypeCode {
    /// The type of a Python type code character.
    ///
    /// Errors: `WEFT_INVALID_ARGUMENT` for any other character.
    pub fn from_char(c: u8) -> Result<TypeCode> {
        Ok(match c {
            b'b' => TypeCode::I8,
            b'B' => TypeCode::U8,
            b'h' => TypeCode::I16,
            b'H' => TypeCode::U16,
            b'i' => TypeCode::I32,
            b'I' => TypeCode::U32,
            b'l' | b'q' => TypeCode::I64,
            b'L' | b'Q' => TypeCode::U64,
            b'f' => TypeCode::F32,
            b'd' => TypeCode::F64,
            _ => {
                return Err(Error::new(
                    WEFT_INVALID_ARGUMENT,
                    format!("type code {:?} is not one of b B h H i I l L q Q f d", c as char),
                ))
            }
        })
    }

    /// Bytes per item.
    pub fn size(self) -> usize {
        match self {
            TypeCode::I8 | TypeCode::U8 => 1,
            TypeCode::I16 | TypeCode::U16 => 2,
            TypeCode::I32 | TypeCode::U32 | TypeCode::F32 => 4,
            TypeCode::I64 | TypeCode::U64 | TypeCode::F64 => 8,
        }
    }

    /// True for the integer codes (those with atomic operations).
    pub fn is_integer(self) -> bool {
        !matches!(self, TypeCode::F32 | TypeCode::F64)
    }
}

/// A typed array (or, with one item, a value) in a space. See the module documentation.
///
/// Thread safety: `Send + Sync`; process-safe.
#[derive(Debug)]
pub struct SharedArray {
    r: SharedRef,
    code: TypeCode,
    char_code: u8,
    len: usize,
    locked: bool,
}

impl SharedArray {
    fn header(&self) -> &ArrayHeader {
        // SAFETY: `from_ref` checked that the payload holds the 64-byte header; the payload is
        // 64-aligned; ArrayHeader is all atomics (any bit pattern valid); the mapping lives as
        // long as `self.r`.
        unsafe { &*(self.r.payload() as *const ArrayHeader) }
    }

    fn from_ref(r: SharedRef) -> Result<SharedArray> {
        let size = r.object().size;
        if size < DATA_OFFSET as u64 {
            return Err(Error::new(WEFT_CORRUPTED, format!("shared array payload of {size} bytes has no room for its header")));
        }
        // SAFETY: as in `header`, the size was just checked.
        let h = unsafe { &*(r.payload() as *const ArrayHeader) };
        let raw = h.typecode.load(Relaxed);
        let char_code = u8::try_from(raw).map_err(|_| Error::new(WEFT_CORRUPTED, format!("shared array type code {raw} is invalid")))?;
        let code = TypeCode::from_char(char_code)
            .map_err(|e| Error::new(WEFT_CORRUPTED, format!("shared array header: {}", e.message)))?;
        let len = h.len.load(Relaxed);
        let fits = len.checked_mul(code.size() as u64).and_then(|b| b.checked_add(DATA_OFFSET as u64)) == Some(size);
        if !fits {
            return Err(Error::new(
                WEFT_CORRUPTED,
                format!("shared array header: {len} items of {} bytes do not match its payload of {size} bytes", code.size()),
            ));
        }
        let locked = h.flags.load(Relaxed) & FLAG_LOCK != 0;
        Ok(SharedArray { r, code, char_code, len: len as usize, locked })
    }

    /// Creates an array of `len` items of type `code` (a Python type code character) in the
    /// space, named `name` (or unnamed), with the items copied from `init` (`len * item size`
    /// bytes) or zero, and with a lock when `lock` is true.
    ///
    /// Errors: `WEFT_INVALID_ARGUMENT` (bad type code, `init` of the wrong size, a length of 0 or
    /// too large); those of [`SharedRef::create`].
    pub fn create(
        handle: Arc<SpaceHandle>,
        name: Option<&str>,
        code: u8,
        len: usize,
        init: Option<&[u8]>,
        lock: bool,
    ) -> Result<SharedArray> {
        let tc = TypeCode::from_char(code)?;
        if len == 0 {
            return Err(Error::invalid("an array needs at least one item"));
        }
        let bytes = len
            .checked_mul(tc.size())
            .filter(|&b| b <= isize::MAX as usize - DATA_OFFSET)
            .ok_or_else(|| Error::invalid(format!("{len} items of {} bytes are too many", tc.size())))?;
        if let Some(init) = init {
            if init.len() != bytes {
                return Err(Error::invalid(format!(
                    "initial contents are {} bytes; {len} items of type {:?} need {bytes}",
                    init.len(),
                    code as char
                )));
            }
        }
        let mut write = |p: *mut u8| {
            let h = ArrayHeader {
                lock: RobustRLock::new(),
                typecode: AtomicU32::new(u32::from(code)),
                flags: AtomicU32::new(if lock { FLAG_LOCK } else { 0 }),
                len: AtomicU64::new(len as u64),
                reserved: Default::default(),
            };
            // SAFETY: `p` is a fresh, 64-aligned payload of DATA_OFFSET + bytes bytes that no
            // other thread or process can reach yet.
            unsafe {
                (p as *mut ArrayHeader).write(h);
                if let Some(init) = init {
                    std::ptr::copy_nonoverlapping(init.as_ptr(), p.add(DATA_OFFSET), bytes);
                }
            }
            Ok(())
        };
        let r = SharedRef::create(handle, KIND_ARRAY, (DATA_OFFSET + bytes) as u64, name, &mut write)?;
        SharedArray::from_ref(r)
    }

    /// Opens the array named `name` in the space.
    ///
    /// Errors: those of [`SharedRef::open`]; `WEFT_CORRUPTED` when its header is invalid.
    pub fn open(handle: Arc<SpaceHandle>, name: &str) -> Result<SharedArray> {
        SharedArray::from_ref(SharedRef::open(handle, name, KIND_ARRAY, None)?)
    }

    /// Opens the array a token designates.
    ///
    /// Errors: those of [`SharedRef::from_token`]; `WEFT_CORRUPTED` when its header is invalid.
    pub fn from_token(token: &[u8]) -> Result<SharedArray> {
        SharedArray::from_ref(SharedRef::from_token(token, KIND_ARRAY, None)?)
    }

    /// Opens the array a token designates without a reference of its own (see
    /// `SharedRef::from_token_borrowed`): whoever holds the token's array must outlive this
    /// handle.
    pub(crate) fn from_token_borrowed(token: &[u8]) -> Result<SharedArray> {
        SharedArray::from_ref(SharedRef::from_token_borrowed(token, KIND_ARRAY, None)?)
    }

    /// The reference (for tokens).
    pub fn shared(&self) -> &SharedRef {
        &self.r
    }

    /// Number of items.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: arrays have at least one item.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The item type.
    pub fn type_code(&self) -> TypeCode {
        self.code
    }

    /// The type code character the array was created with.
    pub fn type_char(&self) -> u8 {
        self.char_code
    }

    /// True when the array was created with a lock.
    pub fn has_lock(&self) -> bool {
        self.locked
    }

    /// Address of the first item in this process (valid while `self` lives).
    pub fn data(&self) -> *mut u8 {
        // SAFETY: the payload holds DATA_OFFSET + len * size bytes (checked by from_ref).
        unsafe { self.r.payload().add(DATA_OFFSET) }
    }

    fn check_range(&self, start: usize, count: usize) -> Result<()> {
        if start.checked_add(count).map_or(true, |end| end > self.len) {
            return Err(Error::new(
                WEFT_INVALID_ARGUMENT,
                format!("items [{start}, {start}+{count}) are out of range for an array of {}", self.len),
            ));
        }
        Ok(())
    }

    /// Takes the lock for an internal operation (when there is one), recovering a dead
    /// holder's lock: items are never torn (see the module documentation).
    fn internal_lock(&self) -> Result<Option<InternalGuard<'_>>> {
        if !self.locked {
            return Ok(None);
        }
        let lock = &self.header().lock;
        match lock.acquire(Deadline::Never, Interrupt::Cancellable) {
            Ok(()) => {}
            Err(e) if e.code == WEFT_OWNER_DEAD => lock.mark_consistent()?,
            Err(e) => return Err(e),
        }
        Ok(Some(InternalGuard(lock)))
    }

    /// Copies item `index` into `out` (item-size bytes), under the lock when there is one.
    ///
    /// Errors: `WEFT_INVALID_ARGUMENT` (index out of range, wrong buffer size), the lock's
    /// errors (`WEFT_CANCELLED`, `WEFT_NOT_RECOVERABLE`).
    pub fn get(&self, index: usize, out: &mut [u8]) -> Result<()> {
        self.check_item(index, out.len())?;
        let _g = self.internal_lock()?;
        let v = self.load_bits(index);
        out.copy_from_slice(&v.to_ne_bytes()[..self.code.size()]);
        Ok(())
    }

    /// Stores `item` (item-size bytes) at `index`, under the lock when there is one.
    ///
    /// Errors: as [`get`](Self::get).
    pub fn set(&self, index: usize, item: &[u8]) -> Result<()> {
        self.check_item(index, item.len())?;
        let _g = self.internal_lock()?;
        let mut buf = [0u8; 8];
        buf[..item.len()].copy_from_slice(item);
        self.store_bits(index, u64::from_ne_bytes(buf));
        Ok(())
    }

    fn check_item(&self, index: usize, size: usize) -> Result<()> {
        self.check_range(index, 1)?;
        if size != self.code.size() {
            return Err(Error::invalid(format!("an item is {} bytes, the buffer {size}", self.code.size())));
        }
        Ok(())
    }

    /// Copies items `[start, start + count)` into `out` (`count` × item size bytes), under the
    /// lock when there is one.
    ///
    /// Errors: as [`get`](Self::get).
    pub fn read(&self, start: usize, count: usize, out: &mut [u8]) -> Result<()> {
        self.check_slice(start, count, out.len())?;
        let _g = self.internal_lock()?;
        for (i, chunk) in out.chunks_exact_mut(self.code.size()).enumerate() {
            chunk.copy_from_slice(&self.load_bits(start + i).to_ne_bytes()[..self.code.size()]);
        }
        Ok(())
    }

    /// Stores items `[start, start + count)` from `items`, under the lock when there is one.
    ///
    /// Errors: as [`get`](Self::get).
    pub fn write(&self, start: usize, count: usize, items: &[u8]) -> Result<()> {
        self.check_slice(start, count, items.len())?;
        let _g = self.internal_lock()?;
        for (i, chunk) in items.chunks_exact(self.code.size()).enumerate() {
            let mut buf = [0u8; 8];
            buf[..chunk.len()].copy_from_slice(chunk);
            self.store_bits(start + i, u64::from_ne_bytes(buf));
        }
        Ok(())
    }

    fn check_slice(&self, start: usize, count: usize, bytes: usize) -> Result<()> {
        self.check_range(start, count)?;
        if Some(bytes) != count.checked_mul(self.code.size()) {
            return Err(Error::invalid(format!("{count} items are {} bytes each; the buffer has {bytes}", self.code.size())));
        }
        Ok(())
    }

    fn ptr(&self, index: usize) -> *mut u8 {
        // SAFETY: callers checked index < len; the items area holds len * size bytes.
        unsafe { self.data().add(index * self.code.size()) }
    }

    /// The raw bits of item `index` (zero-extended), read with one atomic access.
    fn load_bits(&self, index: usize) -> u64 {
        let p = self.ptr(index);
        // SAFETY: `p` is in bounds and aligned for its width (the items start 64-aligned and
        // are packed by their own size); atomics of that width accept any bits.
        unsafe {
            match self.code.size() {
                1 => (*(p as *const AtomicI8)).load(SeqCst) as u8 as u64,
                2 => (*(p as *const AtomicI16)).load(SeqCst) as u16 as u64,
                4 => (*(p as *const AtomicI32)).load(SeqCst) as u32 as u64,
                _ => (*(p as *const AtomicI64)).load(SeqCst) as u64,
            }
        }
    }

    fn store_bits(&self, index: usize, bits: u64) {
        let p = self.ptr(index);
        // SAFETY: as in `load_bits`.
        unsafe {
            match self.code.size() {
                1 => (*(p as *const AtomicI8)).store(bits as i8, SeqCst),
                2 => (*(p as *const AtomicI16)).store(bits as i16, SeqCst),
                4 => (*(p as *const AtomicI32)).store(bits as i32, SeqCst),
                _ => (*(p as *const AtomicI64)).store(bits as i64, SeqCst),
            }
        }
    }

    /// Widens raw item bits to an i64 as the type says (sign- or zero-extension).
    fn widen(&self, bits: u64) -> i64 {
        match self.code {
            TypeCode::I8 => bits as u8 as i8 as i64,
            TypeCode::I16 => bits as u16 as i16 as i64,
            TypeCode::I32 => bits as u32 as i32 as i64,
            _ => bits as i64,
        }
    }

    fn check_atomic(&self, index: usize) -> Result<()> {
        self.check_range(index, 1)?;
        if !self.code.is_integer() {
            return Err(Error::invalid(format!(
                "atomic operations need an integer type code; this array holds {:?}",
                self.char_code as char
            )));
        }
        Ok(())
    }

    /// Atomically reads integer item `index`, widened to 64 bits (unsigned 64-bit items are
    /// returned as their bit pattern). Lock-free: never takes the lock.
    ///
    /// Errors: `WEFT_INVALID_ARGUMENT` (index out of range, a float type).
    pub fn load(&self, index: usize) -> Result<i64> {
        self.check_atomic(index)?;
        Ok(self.widen(self.load_bits(index)))
    }

    /// Atomically stores the low bits of `value` into integer item `index`. Lock-free.
    ///
    /// Errors: as [`load`](Self::load).
    pub fn store(&self, index: usize, value: i64) -> Result<()> {
        self.check_atomic(index)?;
        self.store_bits(index, value as u64);
        Ok(())
    }

    /// Atomically adds `delta` to integer item `index` (wrapping at the item's width) and returns
    /// the previous value. Lock-free.
    ///
    /// Errors: as [`load`](Self::load).
    pub fn fetch_add(&self, index: usize, delta: i64) -> Result<i64> {
        self.check_atomic(index)?;
        let p = self.ptr(index);
        // SAFETY: as in `load_bits`.
        let old = unsafe {
            match self.code.size() {
                1 => (*(p as *const AtomicI8)).fetch_add(delta as i8, SeqCst) as u8 as u64,
                2 => (*(p as *const AtomicI16)).fetch_add(delta as i16, SeqCst) as u16 as u64,
                4 => (*(p as *const AtomicI32)).fetch_add(delta as i32, SeqCst) as u32 as u64,
                _ => (*(p as *const AtomicI64)).fetch_add(delta, SeqCst) as u64,
            }
        };
        Ok(self.widen(old))
    }

    /// Atomically replaces integer item `index` with `desired` if it equals `expected` (compared
    /// at the item's width); returns `Ok(previous)` — the swap happened when `previous ==
    /// expected` after widening. Lock-free.
    ///
    /// Errors: as [`load`](Self::load).
    pub fn compare_exchange(&self, index: usize, expected: i64, desired: i64) -> Result<(bool, i64)> {
        self.check_atomic(index)?;
        let p = self.ptr(index);
        // SAFETY: as in `load_bits`.
        let (ok, old) = unsafe {
            match self.code.size() {
                1 => match (*(p as *const AtomicI8)).compare_exchange(expected as i8, desired as i8, SeqCst, SeqCst) {
                    Ok(v) => (true, v as u8 as u64),
                    Err(v) => (false, v as u8 as u64),
                },
                2 => match (*(p as *const AtomicI16)).compare_exchange(expected as i16, desired as i16, SeqCst, SeqCst) {
                    Ok(v) => (true, v as u16 as u64),
                    Err(v) => (false, v as u16 as u64),
                },
                4 => match (*(p as *const AtomicI32)).compare_exchange(expected as i32, desired as i32, SeqCst, SeqCst) {
                    Ok(v) => (true, v as u32 as u64),
                    Err(v) => (false, v as u32 as u64),
                },
                _ => match (*(p as *const AtomicI64)).compare_exchange(expected, desired, SeqCst, SeqCst) {
                    Ok(v) => (true, v as u64),
                    Err(v) => (false, v as u64),
                },
            }
        };
        Ok((ok, self.widen(old)))
    }

    fn lock_ref(&self) -> Result<&RobustRLock<SharedWord>> {
        if !self.locked {
            return Err(Error::new(WEFT_INVALID_STATE, "the array was created without a lock"));
        }
        Ok(&self.header().lock)
    }

    /// Acquires the array's re-entrant lock (Python's `get_lock().acquire()`), to make several
    /// operations atomic together; the array's own operations re-enter it.
    ///
    /// Errors: `WEFT_INVALID_STATE` (no lock); the errors of `RobustRLock::acquire`, including
    /// `WEFT_OWNER_DEAD` (held now; call [`mark_consistent`](Self::mark_consistent)).
    pub fn lock(&self, deadline: Deadline, interrupt: Interrupt) -> Result<()> {
        self.lock_ref()?.acquire(deadline, interrupt)
    }

    /// Releases one level of the array's lock.
    ///
    /// Errors: `WEFT_INVALID_STATE` (no lock), `WEFT_NOT_OWNER`.
    pub fn unlock(&self) -> Result<()> {
        self.lock_ref()?.release()
    }

    /// Marks the array's lock consistent after `WEFT_OWNER_DEAD`.
    ///
    /// Errors: `WEFT_INVALID_STATE`, `WEFT_NOT_OWNER`.
    pub fn mark_consistent(&self) -> Result<()> {
        self.lock_ref()?.mark_consistent()
    }
}

struct InternalGuard<'a>(&'a RobustRLock<SharedWord>);

impl Drop for InternalGuard<'_> {
    fn drop(&mut self) {
        let _ = self.0.release();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::handle::default_space;
    use crate::test_support::{fork_child, wait_child};

    #[test]
    fn codes_sizes_and_item_access() {
        let d = default_space().unwrap();
        for (c, size) in [(b'b', 1), (b'B', 1), (b'h', 2), (b'H', 2), (b'i', 4), (b'I', 4), (b'l', 8), (b'L', 8), (b'q', 8), (b'Q', 8), (b'f', 4), (b'd', 8)] {
            let a = SharedArray::create(d.clone(), None, c, 3, None, true).unwrap();
            assert_eq!(a.type_code().size(), size);
            assert_eq!(a.type_char(), c);
            let item = vec![0x7fu8; size];
            a.set(2, &item).unwrap();
            let mut out = vec![0u8; size];
            a.get(2, &mut out).unwrap();
            assert_eq!(out, item);
            a.get(0, &mut out).unwrap();
            assert!(out.iter().all(|&b| b == 0));
            assert_eq!(a.get(3, &mut out).unwrap_err().code, WEFT_INVALID_ARGUMENT);
            assert_eq!(a.set(0, &[0u8; 16][..size + 1]).unwrap_err().code, WEFT_INVALID_ARGUMENT);
        }
        assert_eq!(SharedArray::create(d.clone(), None, b'x', 3, None, true).unwrap_err().code, WEFT_INVALID_ARGUMENT);
        assert_eq!(SharedArray::create(d.clone(), None, b'i', 0, None, true).unwrap_err().code, WEFT_INVALID_ARGUMENT);
        assert_eq!(SharedArray::create(d, None, b'i', 2, Some(&[0; 7]), true).unwrap_err().code, WEFT_INVALID_ARGUMENT);
    }

    #[test]
    fn slices_and_atomics_with_widths() {
        let d = default_space().unwrap();
        let init: Vec<u8> = [1i16, -2, 3, -4].iter().flat_map(|v| v.to_ne_bytes()).collect();
        let a = SharedArray::create(d.clone(), None, b'h', 4, Some(&init), false).unwrap();
        let mut out = vec![0u8; 4];
        a.read(1, 2, &mut out).unwrap();
        assert_eq!(out, init[2..6]);
        assert_eq!(a.load(1).unwrap(), -2);
        assert_eq!(a.fetch_add(3, i64::from(i16::MAX) + 10).unwrap(), -4);
        assert_eq!(a.load(3).unwrap(), (-4i16).wrapping_add(i16::MAX).wrapping_add(10) as i64);
        assert_eq!(a.compare_exchange(0, 1, 100).unwrap(), (true, 1));
        assert_eq!(a.compare_exchange(0, 1, 5).unwrap(), (false, 100));
        let u = SharedArray::create(d.clone(), None, b'B', 1, None, false).unwrap();
        u.store(0, 255).unwrap();
        assert_eq!(u.load(0).unwrap(), 255, "unsigned bytes are zero-extended");
        let f = SharedArray::create(d, None, b'd', 1, None, true).unwrap();
        assert_eq!(f.load(0).unwrap_err().code, WEFT_INVALID_ARGUMENT);
        assert_eq!(a.lock(Deadline::Now, Interrupt::Uninterruptible).unwrap_err().code, WEFT_INVALID_STATE);
        assert_eq!(a.read(3, 2, &mut out).unwrap_err().code, WEFT_INVALID_ARGUMENT);
    }

    #[test]
    fn atomic_increments_from_two_processes() {
        let d = default_space().unwrap();
        let a = SharedArray::create(d, None, b'q', 1, None, true).unwrap();
        let t = a.shared().token();
        let add = |arr: &SharedArray| (0..10_000).all(|_| arr.fetch_add(0, 1).is_ok());
        let pid = fork_child(|| SharedArray::from_token(&t).is_ok_and(|c| add(&c)));
        assert!(add(&a));
        let st = wait_child(pid);
        assert!(libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0);
        assert_eq!(a.load(0).unwrap(), 20_000);
    }

    #[test]
    fn dead_lock_holder_is_recovered_by_get_and_reported_by_lock() {
        let d = default_space().unwrap();
        let a = SharedArray::create(d, None, b'i', 2, None, true).unwrap();
        let pid = fork_child(|| {
            let _ = a.lock(Deadline::Never, Interrupt::Uninterruptible);
            let _ = a.set(0, &7i32.to_ne_bytes());
            // SAFETY: dies holding the array's lock.
            unsafe { libc::raise(libc::SIGKILL) };
            false
        });
        assert!(libc::WIFSIGNALED(wait_child(pid)));
        let mut out = [0u8; 4];
        a.get(0, &mut out).unwrap();
        assert_eq!(i32::from_ne_bytes(out), 7);
        // A second death: the explicit lock reports it.
        let pid = fork_child(|| {
            let _ = a.lock(Deadline::Never, Interrupt::Uninterruptible);
            // SAFETY: as above.
            unsafe { libc::raise(libc::SIGKILL) };
            false
        });
        assert!(libc::WIFSIGNALED(wait_child(pid)));
        assert_eq!(a.lock(Deadline::Never, Interrupt::Uninterruptible).unwrap_err().code, WEFT_OWNER_DEAD);
        a.mark_consistent().unwrap();
        a.unlock().unwrap();
        a.set(1, &9i32.to_ne_bytes()).unwrap();
    }

    #[test]
    fn damaged_header_is_refused_on_open() {
        let d = default_space().unwrap();
        let a = SharedArray::create(d.clone(), Some("damaged-array-test"), b'i', 4, None, false).unwrap();
        a.header().len.store(1 << 40, Relaxed);
        assert_eq!(SharedArray::open(d.clone(), "damaged-array-test").unwrap_err().code, WEFT_CORRUPTED);
        a.header().len.store(4, Relaxed);
        a.header().typecode.store(u32::from(b'z'), Relaxed);
        assert_eq!(SharedArray::open(d.clone(), "damaged-array-test").unwrap_err().code, WEFT_CORRUPTED);
        a.header().typecode.store(u32::from(b'i'), Relaxed);
        assert_eq!(SharedArray::open(d.clone(), "damaged-array-test").unwrap().len(), 4);
        d.space().remove("damaged-array-test").unwrap();
    }
}
