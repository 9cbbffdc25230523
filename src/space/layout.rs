//! The on-segment layout of a space: a [`Segment`] formatted with a header, an allocator, a
//! directory of named objects and a table of participants.
//!
//! # Layout (version 1)
//!
//! Offset 0 of the segment holds one `#[repr(C)]` header (all offsets are from the start of
//! the segment, all integers native-endian):
//!
//! | field          | type              | meaning                                              |
//! | -------------- | ----------------- | ---------------------------------------------------- |
//! | `magic`        | u64               | `b"weftspc1"` read as a little-endian u64            |
//! | `version`      | u32               | layout version, 1                                    |
//! | `header_size`  | u32               | size of this header in bytes                         |
//! | `total_size`   | u64               | size of the segment in bytes                         |
//! | `ready`        | u32               | 0 while the creator formats, 1 once usable (Release) |
//! | `flags`        | u32               | bit 0: the name was unlinked by a sweep              |
//! | `lock`         | `RobustLock`      | guards everything below                              |
//! | `next`         | u64               | bump pointer: first never-allocated byte             |
//! | `uid`          | u64               | random identity of the space (tokens name it)        |
//! | `serial`       | u64               | last object serial number handed out                 |
//! | `free`         | 34 × u64          | free-list heads, one per size class (0: empty)       |
//! | `directory`    | 64 entries        | named objects (see below)                            |
//! | `participants` | 64 slots          | processes using the space (see below)                |
//!
//! A directory entry is `in_use: u32` (0 or 1), `kind: u32` (the object's kind), `offset: u64`
//! (of the object's block), `size: u64` (its payload size) and `name: [u8; 64]` (1 to 63
//! bytes, NUL-padded, no NUL inside). Objects and their 64-byte headers are described in
//! `object.rs`.
//! A participant slot is `in_use: u32` (0 or 1) and an [`Identity`] (`id: u32`,
//! `start_time: u64`). The data area starts at the header's size rounded up to 64 bytes and
//! runs to the end of the segment.
//!
//! # Allocation
//!
//! Blocks come in size classes of 64 × 2^k bytes (k = 0..33). [`Space::alloc`] pops the free
//! list of the class, or else carves a fresh block at `next` aligned to its size (at most 4096);
//! [`Space::free`] pushes the block back. A free block's first 8 bytes hold the offset of the
//! next free block of its class. Each push or pop is one store of a list head, so a holder that
//! dies in the middle loses at most that one block, never the list (see `alloc.rs`).
//!
//! # Trust and validation
//!
//! Every process mapping the segment can write anything into it. [`Space::attach`] therefore
//! validates everything it reads once: the fixed fields, then — under the lock — `next`, every
//! directory entry (flag, name, range inside the allocated part of the data area, no duplicate
//! names) and every participant flag; a failure is `WEFT_CORRUPTED` with a message naming the
//! field. Entries are checked again each time they are used, so a peer that scribbles on the
//! header later gets `WEFT_CORRUPTED` answers, never an out-of-bounds access. All header fields
//! are accessed as atomics, so a misbehaving peer cannot cause undefined behaviour in this
//! process either.
//!
//! # Recovery after a holder's death
//!
//! Every update takes the header's [`RobustLock`]. Updates are ordered so that a holder that
//! dies at any point leaves a state that is still valid: an entry or a participant slot is
//! filled before its `in_use` flag is set (with Release) and its flag is cleared first when
//! it is removed; `next` only grows (a death between the bump and the directory write leaks
//! the block, nothing worse). So when acquiring the lock reports `WEFT_OWNER_DEAD`, the new
//! holder re-validates `next`, the directory and the participants (the same checks as
//! `attach`) and marks the lock consistent. If that validation fails, the state was not left
//! by a crash but damaged: the lock is released without being marked consistent, the call
//! returns `WEFT_CORRUPTED`, and every later locked call on the space returns
//! `WEFT_NOT_RECOVERABLE`.
//!
//! Taking the lock waits at most 10 s; a live holder that keeps it longer gives `WEFT_TIMEOUT`.

use super::liveness::{self, Identity};
use super::Segment;
use crate::futex::Interrupt;
use crate::status::{
    Error, Result, WEFT_CORRUPTED, WEFT_INVALID_STATE, WEFT_NO_MEMORY, WEFT_OWNER_DEAD,
};
use crate::sync::robust::RobustLock;
use crate::time::Deadline;
use std::mem::size_of;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicU32, AtomicU64};

/// `b"weftspc1"` as the header's first word.
pub(crate) const MAGIC: u64 = u64::from_le_bytes(*b"weftspc1");
/// The layout version this code writes and accepts.
pub(crate) const LAYOUT_VERSION: u32 = 1;
/// Entries in the directory of named objects.
pub(crate) const DIRECTORY_CAPACITY: usize = 64;
/// Slots in the participants table.
pub(crate) const PARTICIPANT_CAPACITY: usize = 64;
/// Bytes of a stored name, including at least one terminating NUL.
pub(crate) const NAME_CAPACITY: usize = 64;
/// The largest alignment [`Space::alloc`] accepts (the segment's base is page-aligned).
pub(crate) const MAX_ALIGN: u64 = 4096;
/// Alignment of the start of the data area.
pub(crate) const DATA_ALIGN: u64 = 64;
/// Number of block size classes: 64 B to 512 GiB.
pub(crate) const SIZE_CLASSES: usize = 34;
/// Header `flags` bit: a sweep unlinked the space's name; it must not be joined any more.
pub(crate) const FLAG_UNLINKED: u32 = 1;
/// How long a call waits for the header's lock.
const LOCK_TIMEOUT_NS: u64 = 10_000_000_000;

pub(super) const NAME_WORDS: usize = NAME_CAPACITY / 8;

/// One named object. Filled before `in_use` is set; `in_use` cleared first on removal.
#[repr(C)]
struct DirEntry {
    in_use: AtomicU32,
    kind: AtomicU32,
    offset: AtomicU64,
    size: AtomicU64,
    /// The name's bytes, NUL-padded, packed native-endian into words.
    name: [AtomicU64; NAME_WORDS],
}

/// One participant: a process identity.
#[repr(C)]
struct Slot {
    in_use: AtomicU32,
    id: AtomicU32,
    start_time: AtomicU64,
}

/// The header at offset 0. Every field is an atomic or the lock (itself atomics), so any bit
/// pattern is a valid value and concurrent access by peers is never a data race.
#[repr(C)]
pub(super) struct Header {
    magic: AtomicU64,
    version: AtomicU32,
    header_size: AtomicU32,
    total_size: AtomicU64,
    ready: AtomicU32,
    pub(super) flags: AtomicU32,
    pub(super) lock: RobustLock,
    pub(super) next: AtomicU64,
    pub(super) uid: AtomicU64,
    pub(super) serial: AtomicU64,
    pub(super) free: [AtomicU64; SIZE_CLASSES],
    directory: [DirEntry; DIRECTORY_CAPACITY],
    participants: [Slot; PARTICIPANT_CAPACITY],
}

// The layout is shared with other processes (possibly built from other versions of weft):
// pin it down.
const _: () = assert!(size_of::<DirEntry>() == 88);
const _: () = assert!(size_of::<Slot>() == 16);
const _: () = assert!(size_of::<RobustLock>() == 16);
const _: () = assert!(size_of::<Header>() == 72 + 8 * SIZE_CLASSES + 88 * DIRECTORY_CAPACITY + 16 * PARTICIPANT_CAPACITY);
const _: () = assert!(std::mem::align_of::<Header>() == 8);
const _: () = assert!(std::mem::offset_of!(Header, lock) == 32 && std::mem::offset_of!(Header, next) == 48);
const _: () = assert!(std::mem::offset_of!(Header, free) == 72);

pub(super) const HEADER_SIZE: u64 = size_of::<Header>() as u64;
/// First byte of the data area.
pub(super) const DATA_START: u64 = HEADER_SIZE.div_ceil(DATA_ALIGN) * DATA_ALIGN;

/// A random 64-bit identity for a new space (never 0).
fn random_uid() -> Result<u64> {
    let mut v = 0u64;
    loop {
        // SAFETY: getrandom writes at most 8 bytes into `v`, which is 8 bytes long.
        let n = unsafe { libc::getrandom(std::ptr::addr_of_mut!(v).cast(), 8, 0) };
        if n == 8 && v != 0 {
            return Ok(v);
        }
        if n < 0 && std::io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return Err(Error::last_os("getrandom"));
        }
    }
}

pub(super) fn corrupted(message: String) -> Error {
    Error::new(WEFT_CORRUPTED, message)
}

/// Checks a caller's object name and packs it NUL-padded into words.
pub(super) fn pack_name(name: &str) -> Result<[u64; NAME_WORDS]> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes.len() >= NAME_CAPACITY {
        return Err(Error::invalid(format!(
            "object name must be 1 to {} bytes long, got {} bytes",
            NAME_CAPACITY - 1,
            bytes.len()
        )));
    }
    if bytes.contains(&0) {
        return Err(Error::invalid("object name must not contain a NUL byte"));
    }
    let mut buf = [0u8; NAME_CAPACITY];
    buf[..bytes.len()].copy_from_slice(bytes);
    let mut words = [0u64; NAME_WORDS];
    for (w, chunk) in words.iter_mut().zip(buf.chunks_exact(8)) {
        *w = u64::from_ne_bytes(chunk.try_into().expect("chunks of 8"));
    }
    Ok(words)
}

/// Checks a stored name: 1..=63 non-NUL bytes followed only by NULs.
fn check_stored_name(words: &[u64; NAME_WORDS]) -> std::result::Result<(), &'static str> {
    let mut buf = [0u8; NAME_CAPACITY];
    for (chunk, w) in buf.chunks_exact_mut(8).zip(words) {
        chunk.copy_from_slice(&w.to_ne_bytes());
    }
    let len = buf.iter().position(|&b| b == 0).ok_or("is not NUL-terminated")?;
    if len == 0 {
        return Err("is empty");
    }
    if buf[len..].iter().any(|&b| b != 0) {
        return Err("has bytes after its terminating NUL");
    }
    Ok(())
}

/// Holds the header's lock; releases it when dropped.
pub(super) struct Guard<'a>(&'a RobustLock);

impl Drop for Guard<'_> {
    fn drop(&mut self) {
        let _ = self.0.release();
    }
}

/// A formatted space: a [`Segment`] with the layout described in the module documentation.
///
/// Owns its segment (get it back with [`into_segment`](Self::into_segment)). Offsets returned
/// by [`alloc`](Self::alloc) and [`create_object`](Self::create_object) are relative to the
/// start of the segment, so they mean the same in every process, whatever address it maps the
/// segment at; turn them into pointers with [`ptr`](Self::ptr).
///
/// Thread safety: `Send + Sync`; every method may be called concurrently from any thread of
/// any process that maps the segment (updates are serialised by the header's robust lock).
#[derive(Debug)]
pub struct Space {
    segment: Segment,
}

/// What a segment holds, judged from its first header fields without validating the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentState {
    /// Not a weft space (no magic): a raw segment, or a creator that died before writing it.
    NotASpace,
    /// A space whose creator has not finished formatting it (or died doing so).
    Formatting,
    /// A formatted space.
    Ready,
}

/// Classifies `segment` (see [`SegmentState`]).
pub fn state(segment: &Segment) -> SegmentState {
    if (segment.len() as u64) <= DATA_START {
        return SegmentState::NotASpace;
    }
    // SAFETY: the segment holds at least a header; its base is page-aligned; the fields are
    // read atomically through a shared reference to an all-atomics struct.
    let h = unsafe { &*(segment.as_ptr() as *const Header) };
    if h.magic.load(Acquire) != MAGIC {
        SegmentState::NotASpace
    } else if h.ready.load(Acquire) == 1 {
        SegmentState::Ready
    } else {
        SegmentState::Formatting
    }
}

impl Space {
    pub(super) fn header(&self) -> &Header {
        // SAFETY: both constructors checked that the segment holds at least HEADER_SIZE bytes;
        // its base is page-aligned, so aligned for Header (align 8); the mapping lives as long
        // as `self.segment`, which outlives the returned borrow. Every field of Header is an
        // atomic integer or a RobustLock (atomic integers), for which every bit pattern is
        // valid and which permit shared mutation through `&`.
        unsafe { &*(self.segment.as_ptr() as *const Header) }
    }

    /// Formats `segment` as a new, empty space and returns it: writes the header (magic,
    /// version, sizes, a free lock, an empty directory and participants table, the bump
    /// pointer at the start of the data area) and sets `ready` last, with Release ordering.
    ///
    /// The caller must be the segment's only user while this runs (a freshly created
    /// segment, before it is shared): the lock is overwritten non-atomically. The data area's
    /// contents are left as they are (zero for a fresh segment).
    ///
    /// Errors: `WEFT_INVALID_ARGUMENT` when the segment is too small for the header (about
    /// 6.7 KiB) plus at least one byte of data. The segment is dropped on failure.
    /// Thread safety: callable from any thread.
    pub fn format(segment: Segment) -> Result<Space> {
        let len = segment.len() as u64;
        if len <= DATA_START {
            return Err(Error::invalid(format!(
                "a segment of {len} bytes is too small for a space: the header alone takes {DATA_START} bytes"
            )));
        }
        let p = segment.slice(0, HEADER_SIZE)? as *mut Header;
        // SAFETY: `p` is in bounds (slice checked), aligned (page-aligned base) and, by this
        // function's contract, not used by anyone else while it runs. The write only replaces
        // the lock's atomic integers.
        unsafe { std::ptr::addr_of_mut!((*p).lock).write(RobustLock::new()) };
        let space = Space { segment };
        let h = space.header();
        h.ready.store(0, Release);
        h.magic.store(MAGIC, Release);
        h.version.store(LAYOUT_VERSION, Relaxed);
        h.header_size.store(HEADER_SIZE as u32, Relaxed);
        h.total_size.store(len, Relaxed);
        h.flags.store(0, Relaxed);
        h.next.store(DATA_START, Relaxed);
        h.uid.store(random_uid()?, Relaxed);
        h.serial.store(0, Relaxed);
        h.free.iter().for_each(|f| f.store(0, Relaxed));
        for e in &h.directory {
            e.in_use.store(0, Relaxed);
            e.kind.store(0, Relaxed);
            e.offset.store(0, Relaxed);
            e.size.store(0, Relaxed);
            e.name.iter().for_each(|w| w.store(0, Relaxed));
        }
        for s in &h.participants {
            s.in_use.store(0, Relaxed);
            s.id.store(0, Relaxed);
            s.start_time.store(0, Relaxed);
        }
        h.ready.store(1, Release);
        Ok(space)
    }

    /// Opens a space that another process (or this one) formatted in `segment`, validating
    /// the header: magic, `ready == 1`, version, header size, total size equal to the
    /// segment's length; then, under the lock, the bump pointer, every directory entry and
    /// every participant flag (see the module documentation). A named segment's size is
    /// checked against truncation first.
    ///
    /// Blocks while another thread or process holds the space's lock, at most 10 s.
    ///
    /// Errors: `WEFT_CORRUPTED` when any check fails, including a space that is not (yet)
    /// initialised; the message names the field. `WEFT_NOT_RECOVERABLE` when an earlier
    /// recovery found the space damaged; `WEFT_TIMEOUT` when the lock stays held;
    /// `WEFT_OS_ERROR` when the size check or reading the caller's identity fails. The
    /// segment is dropped on failure.
    /// Thread safety: callable from any thread.
    pub fn attach(segment: Segment) -> Result<Space> {
        segment.check_size()?;
        let len = segment.len() as u64;
        if len <= DATA_START {
            return Err(corrupted(format!(
                "a segment of {len} bytes is too small to hold a space (header: {DATA_START} bytes)"
            )));
        }
        let space = Space { segment };
        let h = space.header();
        let magic = h.magic.load(Relaxed);
        if magic != MAGIC {
            return Err(corrupted(format!("space header field `magic` is {magic:#018x}: not a weft space")));
        }
        let ready = h.ready.load(Acquire);
        if ready != 1 {
            return Err(corrupted(format!("space header field `ready` is {ready}: the space is not initialised")));
        }
        let version = h.version.load(Relaxed);
        if version != LAYOUT_VERSION {
            return Err(corrupted(format!(
                "space header field `version` is {version}; this weft supports layout version {LAYOUT_VERSION}"
            )));
        }
        let header_size = h.header_size.load(Relaxed);
        if u64::from(header_size) != HEADER_SIZE {
            return Err(corrupted(format!(
                "space header field `header_size` is {header_size}, expected {HEADER_SIZE}"
            )));
        }
        let total = h.total_size.load(Relaxed);
        if total != len {
            return Err(corrupted(format!(
                "space header field `total_size` is {total} but the segment is {len} bytes long"
            )));
        }
        let guard = space.lock()?;
        space.validate_state()?;
        drop(guard);
        Ok(space)
    }

    /// The segment the space lives in.
    /// Thread safety: callable from any thread.
    pub fn segment(&self) -> &Segment {
        &self.segment
    }

    /// Gives the segment back (the space's contents stay in it).
    pub fn into_segment(self) -> Segment {
        self.segment
    }

    /// Takes the header's lock, recovering the state after a dead holder.
    pub(super) fn lock(&self) -> Result<Guard<'_>> {
        // A named segment truncated under us would turn the next header access into SIGBUS:
        // check first (an fstat; anonymous segments are sealed and skip it).
        self.segment.check_size()?;
        let lock = &self.header().lock;
        match lock.acquire(Deadline::from_timeout_ns(LOCK_TIMEOUT_NS), Interrupt::Uninterruptible) {
            Ok(()) => Ok(Guard(lock)),
            Err(e) if e.code == WEFT_OWNER_DEAD => {
                // We hold the lock; the dead holder may have been mid-update. See "Recovery".
                if let Err(e) = self.validate_state() {
                    let _ = lock.release(); // not marked consistent: not recoverable
                    return Err(Error::new(
                        e.code,
                        format!("the space's lock holder died and its state failed validation: {}", e.message),
                    ));
                }
                if lock.mark_consistent().is_err() {
                    // The lock's own state word was garbage (neither consistent nor awaiting
                    // recovery).
                    let _ = lock.release();
                    return Err(corrupted("the space's lock is in an invalid state".into()));
                }
                Ok(Guard(lock))
            }
            Err(e) => Err(e),
        }
    }

    pub(super) fn len(&self) -> u64 {
        self.segment.len() as u64
    }

    /// Reads `next` and checks it lies in the data area.
    pub(super) fn next(&self) -> Result<u64> {
        let next = self.header().next.load(Relaxed);
        if next < DATA_START || next > self.len() {
            return Err(corrupted(format!(
                "space header field `next` is {next}, outside the data area [{DATA_START}, {}]",
                self.len()
            )));
        }
        Ok(next)
    }

    /// Reads directory entry `i` (which must be in use) and checks it: (name words, kind,
    /// offset, size).
    pub(super) fn read_entry(&self, i: usize, next: u64) -> Result<([u64; NAME_WORDS], u32, u64, u64)> {
        let e = &self.header().directory[i];
        let name: [u64; NAME_WORDS] = std::array::from_fn(|k| e.name[k].load(Relaxed));
        if let Err(why) = check_stored_name(&name) {
            return Err(corrupted(format!("space directory entry {i}: field `name` {why}")));
        }
        let (kind, offset, size) = (e.kind.load(Relaxed), e.offset.load(Relaxed), e.size.load(Relaxed));
        let end = offset.checked_add(super::object::OBJECT_HEADER).and_then(|o| o.checked_add(size));
        if offset < DATA_START || offset % DATA_ALIGN != 0 || size == 0 || end.map_or(true, |end| end > next) {
            return Err(corrupted(format!(
                "space directory entry {i}: fields `offset` {offset} and `size` {size} do not lie inside the \
                 allocated data area [{DATA_START}, {next})"
            )));
        }
        Ok((name, kind, offset, size))
    }

    /// The `in_use` flag of directory entry `i`, checked to be 0 or 1.
    pub(super) fn entry_in_use(&self, i: usize) -> Result<bool> {
        match self.header().directory[i].in_use.load(Acquire) {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(corrupted(format!("space directory entry {i}: field `in_use` is {v}, not 0 or 1"))),
        }
    }

    /// The `in_use` flag of participant slot `i`, checked to be 0 or 1.
    fn slot_in_use(&self, i: usize) -> Result<bool> {
        match self.header().participants[i].in_use.load(Acquire) {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(corrupted(format!("space participant slot {i}: field `in_use` is {v}, not 0 or 1"))),
        }
    }

    /// Validates the mutable state: `next`, the directory, the participant flags. Called with
    /// the lock held.
    fn validate_state(&self) -> Result<()> {
        let next = self.next()?;
        let mut names = [[0u64; NAME_WORDS]; DIRECTORY_CAPACITY];
        let mut n = 0;
        for i in 0..DIRECTORY_CAPACITY {
            if self.entry_in_use(i)? {
                let (name, ..) = self.read_entry(i, next)?;
                if names[..n].contains(&name) {
                    return Err(corrupted(format!("space directory entry {i}: field `name` is a duplicate")));
                }
                names[n] = name;
                n += 1;
            }
        }
        for i in 0..PARTICIPANT_CAPACITY {
            self.slot_in_use(i)?;
        }
        self.validate_free_lists(next)?;
        self.validate_objects(next)
    }

    /// Index of the in-use entry called `name`. Lock held.
    pub(super) fn find(&self, name: &[u64; NAME_WORDS]) -> Result<Option<usize>> {
        let next = self.next()?;
        for i in 0..DIRECTORY_CAPACITY {
            if self.entry_in_use(i)? && self.read_entry(i, next)?.0 == *name {
                return Ok(Some(i));
            }
        }
        Ok(None)
    }

    /// A pointer to `len` bytes at `offset` of the segment, after a bounds check
    /// ([`Segment::slice`]). Valid while `self` lives; accesses through it are the caller's
    /// to synchronise. For a named segment, call `segment().check_size()` first when a peer
    /// may have truncated it.
    ///
    /// Errors: `WEFT_CORRUPTED` when the range does not lie inside the segment.
    /// Thread safety: callable from any thread.
    pub fn ptr(&self, offset: u64, len: u64) -> Result<*mut u8> {
        self.segment.slice(offset, len)
    }

    /// Fills directory entry `i` and then marks it in use (lock held).
    pub(super) fn publish_entry(&self, i: usize, kind: u32, offset: u64, size: u64, name: &[u64; NAME_WORDS]) {
        let e = &self.header().directory[i];
        e.kind.store(kind, Relaxed);
        e.offset.store(offset, Relaxed);
        e.size.store(size, Relaxed);
        for (w, v) in e.name.iter().zip(name) {
            w.store(*v, Relaxed);
        }
        e.in_use.store(1, Release);
    }

    /// Marks directory entry `i` free, then clears its name (lock held).
    pub(super) fn clear_entry(&self, i: usize) {
        let e = &self.header().directory[i];
        e.in_use.store(0, Release);
        e.name.iter().for_each(|w| w.store(0, Relaxed));
    }

    /// Clears the slots of participants that are no longer alive. Lock held.
    fn sweep(&self) -> Result<usize> {
        let mut live = 0;
        for (i, s) in self.header().participants.iter().enumerate() {
            if self.slot_in_use(i)? {
                let who = Identity { id: s.id.load(Relaxed), start_time: s.start_time.load(Relaxed) };
                if liveness::is_process_alive(&who) {
                    live += 1;
                } else {
                    s.in_use.store(0, Release);
                }
            }
        }
        Ok(live)
    }

    /// Records the calling process as a participant of the space and returns its slot (for
    /// [`leave`](Self::leave)). When the table is full, slots of dead processes are cleared
    /// first. A process may join more than once (it then holds several slots).
    ///
    /// Errors: `WEFT_NO_MEMORY` when all 64 slots belong to live processes; errors reading the
    /// caller's identity (`WEFT_UNSUPPORTED` without `/proc`, `WEFT_OS_ERROR`);
    /// `WEFT_CORRUPTED` and the lock's errors as [`alloc`](Self::alloc).
    /// Thread safety: callable from any thread of any process using the space.
    pub fn join(&self) -> Result<usize> {
        let me = liveness::current_process()?;
        let _g = self.lock()?;
        if self.header().flags.load(Relaxed) & FLAG_UNLINKED != 0 {
            return Err(Error::new(
                crate::status::WEFT_NOT_FOUND,
                "the space was removed by a sweep (all its participants had died); it cannot be joined",
            ));
        }
        for attempt in 0..2 {
            for i in 0..PARTICIPANT_CAPACITY {
                if !self.slot_in_use(i)? {
                    let s = &self.header().participants[i];
                    s.id.store(me.id, Relaxed);
                    s.start_time.store(me.start_time, Relaxed);
                    s.in_use.store(1, Release);
                    return Ok(i);
                }
            }
            if attempt == 0 {
                self.sweep()?;
            }
        }
        Err(Error::new(
            WEFT_NO_MEMORY,
            format!("the space's participants table is full ({PARTICIPANT_CAPACITY} live participants)"),
        ))
    }

    /// The space's random 64-bit identity, chosen when it was formatted.
    pub fn uid(&self) -> u64 {
        self.header().uid.load(Relaxed)
    }

    /// Bytes never allocated yet (the free lists are not counted).
    pub fn unused(&self) -> u64 {
        self.len().saturating_sub(self.header().next.load(Relaxed))
    }

    /// For a sweep: when no participant is alive, marks the space as removed and calls `unlink`
    /// while still holding the lock (so that no process can join between the check and the
    /// removal) and returns true; returns false, doing nothing, when a participant lives.
    ///
    /// Errors: `WEFT_CORRUPTED`, the lock's errors, and `unlink`'s.
    pub fn retire_if_abandoned(&self, unlink: &mut dyn FnMut() -> Result<()>) -> Result<bool> {
        let _g = self.lock()?;
        if self.sweep()? != 0 {
            return Ok(false);
        }
        self.header().flags.fetch_or(FLAG_UNLINKED, Relaxed);
        unlink()?;
        Ok(true)
    }

    /// Clears participant slot `slot` (as returned by [`join`](Self::join)).
    ///
    /// Errors: `WEFT_INVALID_ARGUMENT` when `slot` is not below 64; `WEFT_INVALID_STATE` when
    /// the slot is not in use; `WEFT_CORRUPTED` and the lock's errors as
    /// [`alloc`](Self::alloc).
    /// Thread safety: callable from any thread of any process using the space.
    pub fn leave(&self, slot: usize) -> Result<()> {
        if slot >= PARTICIPANT_CAPACITY {
            return Err(Error::invalid(format!("participant slot must be below {PARTICIPANT_CAPACITY}, got {slot}")));
        }
        let _g = self.lock()?;
        if !self.slot_in_use(slot)? {
            return Err(Error::new(WEFT_INVALID_STATE, format!("participant slot {slot} is not in use")));
        }
        self.header().participants[slot].in_use.store(0, Release);
        Ok(())
    }

    /// Counts the participants whose process is still alive (PID reuse cannot fool it, see
    /// [`liveness`]), clearing the slots of dead ones. A process killed a moment ago may still
    /// count until the kernel has torn it down.
    ///
    /// Errors: `WEFT_CORRUPTED` and the lock's errors as [`alloc`](Self::alloc).
    /// Thread safety: callable from any thread of any process using the space.
    pub fn live_participants(&self) -> Result<usize> {
        let _g = self.lock()?;
        self.sweep()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{WEFT_INVALID_ARGUMENT, WEFT_NOT_RECOVERABLE};
    use crate::test_support::{fork_child, XorShift};

    const SIZE: usize = 64 * 1024;

    fn new_space() -> Space {
        Space::format(Segment::anonymous(SIZE).unwrap()).unwrap()
    }

    #[test]
    fn format_attach_round_trip() {
        let space = new_space();
        let r = space.create_object(7, 100, Some("queue"), &mut |_| Ok(())).unwrap();
        let seg = Segment::from_fd(space.segment().fd().try_clone_to_owned().unwrap()).unwrap();
        let other = Space::attach(seg).unwrap();
        assert_eq!(other.lookup("queue").unwrap(), (7, r.offset, 100));
        assert_eq!(other.header().uid.load(Relaxed), space.header().uid.load(Relaxed));
        assert_ne!(space.header().uid.load(Relaxed), new_space().header().uid.load(Relaxed));
        // Both mappings see the same bytes.
        let p = space.payload(&r).unwrap();
        // SAFETY: in bounds (payload checked), nobody else touches this object.
        unsafe { *p = 42 };
        // SAFETY: as above, through the second mapping.
        assert_eq!(unsafe { *other.payload(&r).unwrap() }, 42);
        assert_eq!(space.ptr(SIZE as u64 - 1, 2).unwrap_err().code, WEFT_CORRUPTED);
        // Re-attaching the space's own segment works too.
        let again = Space::attach(space.into_segment()).unwrap();
        assert_eq!(again.lookup("queue").unwrap().1, r.offset);
    }

    #[test]
    fn attach_rejects_unformatted_and_bad_fields() {
        let e = Space::attach(Segment::anonymous(SIZE).unwrap()).unwrap_err();
        assert_eq!(e.code, WEFT_CORRUPTED);
        assert!(e.message.contains("magic"), "{}", e.message);
        let small = Segment::anonymous(100).unwrap();
        assert_eq!(Space::attach(small).unwrap_err().code, WEFT_CORRUPTED);
        assert_eq!(Space::format(Segment::anonymous(100).unwrap()).unwrap_err().code, WEFT_INVALID_ARGUMENT);

        type Damage = fn(&Header);
        let cases: [(&str, Damage); 6] = [
            ("ready", |h| h.ready.store(0, Relaxed)),
            ("version", |h| h.version.store(2, Relaxed)),
            ("header_size", |h| h.header_size.store(8, Relaxed)),
            ("total_size", |h| h.total_size.store(1 << 40, Relaxed)),
            ("next", |h| h.next.store(1 << 40, Relaxed)),
            ("in_use", |h| h.participants[3].in_use.store(9, Relaxed)),
        ];
        for (field, damage) in cases {
            let space = new_space();
            damage(space.header());
            let e = Space::attach(space.into_segment()).unwrap_err();
            assert_eq!(e.code, WEFT_CORRUPTED, "{field}");
            assert!(e.message.contains(field), "{field}: {}", e.message);
        }
        // Directory entries: range beyond `next`, bad name, duplicate.
        let entry_cases: [fn(&DirEntry); 3] = [
            |e| e.size.store(1 << 20, Relaxed),
            |e| e.name[7].store(u64::MAX, Relaxed),
            |e| e.name[0].store(0, Relaxed),
        ];
        for damage in entry_cases {
            let space = new_space();
            space.create_object(1, 8, Some("a"), &mut |_| Ok(())).unwrap();
            damage(&space.header().directory[0]);
            assert_eq!(space.lookup("b").unwrap_err().code, WEFT_CORRUPTED, "rejected on use");
            assert_eq!(Space::attach(space.into_segment()).unwrap_err().code, WEFT_CORRUPTED);
        }
        let space = new_space();
        space.create_object(1, 8, Some("a"), &mut |_| Ok(())).unwrap();
        let h = space.header();
        let name: [u64; NAME_WORDS] = std::array::from_fn(|k| h.directory[0].name[k].load(Relaxed));
        for (w, v) in h.directory[5].name.iter().zip(name) {
            w.store(v, Relaxed);
        }
        h.directory[5].offset.store(h.directory[0].offset.load(Relaxed), Relaxed);
        h.directory[5].size.store(h.directory[0].size.load(Relaxed), Relaxed);
        h.directory[5].in_use.store(1, Relaxed);
        let e = Space::attach(space.into_segment()).unwrap_err();
        assert!(e.message.contains("duplicate"), "{}", e.message);
    }

    #[test]
    fn attach_of_garbage_never_crashes() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        let mut successes = 0;
        for iter in 0..200 {
            let space = new_space();
            space.create_object(1, 64, Some("one"), &mut |_| Ok(())).unwrap();
            space.create_object(2, 128, Some("two"), &mut |_| Ok(())).unwrap();
            space.join().unwrap();
            let base = space.segment().as_ptr();
            // Even iterations: garbage over the whole header; odd ones: a few random bytes.
            // The lock's bytes (offsets 32..48) are spared on odd iterations so that a random
            // live "holder" cannot make attach wait; even ones hit magic almost surely.
            if iter % 2 == 0 {
                for i in 0..HEADER_SIZE as usize {
                    // SAFETY: i < HEADER_SIZE <= segment length; nobody else uses the segment.
                    unsafe { *base.add(i) = rng.next() as u8 };
                }
            } else {
                for _ in 0..1 + rng.next() % 8 {
                    let i = (rng.next() % HEADER_SIZE) as usize;
                    if !(32..48).contains(&i) {
                        // SAFETY: as above.
                        unsafe { *base.add(i) = rng.next() as u8 };
                    }
                }
            }
            match Space::attach(space.into_segment()) {
                Err(e) => assert!(
                    e.code == WEFT_CORRUPTED || e.code == WEFT_NOT_RECOVERABLE,
                    "iteration {iter}: unexpected {}: {}",
                    e.code,
                    e.message
                ),
                Ok(s) => {
                    successes += 1;
                    let next = s.next().unwrap();
                    for i in 0..DIRECTORY_CAPACITY {
                        if s.entry_in_use(i).unwrap() {
                            let (_, _, off, size) = s.read_entry(i, next).unwrap();
                            assert!(off >= DATA_START && off + size <= SIZE as u64);
                            assert!(s.ptr(off, size).is_ok());
                        }
                    }
                    match s.alloc(1, 1) {
                        Ok(off) => assert!(off >= DATA_START && off < SIZE as u64),
                        Err(e) => assert_eq!(e.code, WEFT_NO_MEMORY),
                    }
                }
            }
        }
        assert!(successes < 200, "some garbage must be rejected");
    }

    #[test]
    fn killed_participant_is_swept() {
        let space = new_space();
        let mine = space.join().unwrap();
        assert_eq!(space.live_participants().unwrap(), 1);
        let pid = fork_child(|| {
            if space.join().is_err() {
                return false;
            }
            loop {
                // SAFETY: sleeps until killed.
                unsafe { libc::pause() };
            }
        });
        let t0 = std::time::Instant::now();
        while space.live_participants().unwrap() != 2 {
            assert!(t0.elapsed().as_secs() < 10, "child never joined");
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        // SAFETY: kills our own child.
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let st = crate::test_support::wait_child(pid);
        assert!(libc::WIFSIGNALED(st));
        assert_eq!(space.live_participants().unwrap(), 1);
        space.leave(mine).unwrap();
        assert_eq!(space.leave(mine).unwrap_err().code, WEFT_INVALID_STATE);
        assert_eq!(space.leave(64).unwrap_err().code, WEFT_INVALID_ARGUMENT);
        assert_eq!(space.live_participants().unwrap(), 0);
    }

    #[test]
    fn dead_lock_holder_is_recovered_or_reported() {
        // A holder that dies with a valid state: the next call recovers and succeeds.
        let space = new_space();
        space.create_object(1, 8, Some("kept"), &mut |_| Ok(())).unwrap();
        let pid = fork_child(|| {
            let g = space.lock();
            std::mem::forget(g);
            // SAFETY: dies holding the lock.
            unsafe { libc::raise(libc::SIGKILL) };
            false
        });
        assert!(libc::WIFSIGNALED(crate::test_support::wait_child(pid)));
        assert!(space.header().lock.locked());
        assert_eq!(space.lookup("kept").unwrap().0, 1);
        space.alloc(8, 8).unwrap();

        // A holder that dies after damaging the state: WEFT_CORRUPTED, then not recoverable.
        let pid = fork_child(|| {
            std::mem::forget(space.lock());
            space.header().next.store(3, Relaxed);
            // SAFETY: dies holding the lock.
            unsafe { libc::raise(libc::SIGKILL) };
            false
        });
        assert!(libc::WIFSIGNALED(crate::test_support::wait_child(pid)));
        assert_eq!(space.alloc(8, 8).unwrap_err().code, WEFT_CORRUPTED);
        assert_eq!(space.alloc(8, 8).unwrap_err().code, WEFT_NOT_RECOVERABLE);
    }
}
