//! Items: byte strings of at most 8 bytes held inline, longer ones in an owned heap block; and
//! the takers that turn the next item into what a `get` variant returns.

use crate::queue::Filled;
use crate::status::{Error, Result, WEFT_INVALID_STATE, WEFT_NO_MEMORY};
use std::alloc::{self, Layout};
use std::mem::ManuallyDrop;
use std::ptr::NonNull;

/// Items of at most this many bytes are stored inline.
pub(crate) const INLINE: usize = 8;
/// The length of a word item (`put_word` / `get_word`).
pub(crate) const WORD: usize = 8;

/// An item's payload: the bytes themselves (length ≤ [`INLINE`]) or the address of its heap
/// block (longer). Which one is told by the length kept next to it.
#[derive(Clone, Copy)]
pub(crate) union Data {
    inline: [u8; INLINE],
    heap: NonNull<u8>,
}

impl Data {
    /// An inline payload of zeros (the content of an empty slot; never read).
    pub(crate) const ZERO: Data = Data { inline: [0; INLINE] };
}

/// An owned item: `len` bytes, inline or in a heap block of exactly `len` bytes allocated with
/// the global allocator (alignment 1), freed on drop.
pub(crate) struct Item {
    len: usize,
    data: Data,
}

// SAFETY: an Item exclusively owns its heap block (no other handle to it exists), so it may move
// to and be used from another thread.
unsafe impl Send for Item {}

#[cold]
fn no_memory(len: usize) -> Error {
    Error::new(WEFT_NO_MEMORY, format!("cannot allocate {len} bytes for a queue item"))
}

impl Item {
    /// A copy of `bytes`. Errors: `WEFT_INVALID_ARGUMENT` above `u32::MAX` bytes,
    /// `WEFT_NO_MEMORY`.
    pub(crate) fn copy_of(bytes: &[u8]) -> Result<Item> {
        let len = bytes.len();
        if len <= INLINE {
            let mut inline = [0; INLINE];
            inline[..len].copy_from_slice(bytes);
            return Ok(Item { len, data: Data { inline } });
        }
        if len > u32::MAX as usize {
            return Err(Error::invalid(format!("a queue item holds at most {} bytes, not {len}", u32::MAX)));
        }
        let layout = Layout::array::<u8>(len).map_err(|_| no_memory(len))?;
        // SAFETY: `layout` has a non-zero size (len > INLINE).
        let p = NonNull::new(unsafe { alloc::alloc(layout) }).ok_or_else(|| no_memory(len))?;
        // SAFETY: `p` is a fresh block of `len` bytes that cannot overlap `bytes`.
        unsafe { p.as_ptr().copy_from_nonoverlapping(bytes.as_ptr(), len) };
        Ok(Item { len, data: Data { heap: p } })
    }

    /// The 8 native-endian bytes of `word`.
    #[inline]
    pub(crate) fn word(word: usize) -> Item {
        Item { len: WORD, data: Data { inline: (word as u64).to_ne_bytes() } }
    }

    /// The number of bytes.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        if self.len <= INLINE {
            // SAFETY: lengths up to INLINE mean the inline variant.
            unsafe { &self.data.inline[..self.len] }
        } else {
            // SAFETY: longer lengths mean a live heap block of exactly `len` bytes, owned by self.
            unsafe { std::slice::from_raw_parts(self.data.heap.as_ptr(), self.len) }
        }
    }

    /// A copy of the payload (inline bytes or the heap address); ownership stays with `self`
    /// until it is forgotten.
    #[inline]
    pub(crate) fn data(&self) -> Data {
        self.data
    }

    /// Gives up ownership: the length and payload.
    #[inline]
    fn into_raw(self) -> (usize, Data) {
        let me = ManuallyDrop::new(self);
        (me.len, me.data)
    }

    /// Takes ownership back.
    ///
    /// # Safety
    /// `(len, data)` are the length and payload of an Item that was forgotten, and are turned
    /// back into an Item only once.
    #[inline]
    pub(crate) unsafe fn from_raw(len: usize, data: Data) -> Item {
        Item { len, data }
    }

    /// The item as a word (only for 8-byte items).
    #[inline]
    fn into_word(self) -> usize {
        debug_assert_eq!(self.len, WORD);
        let (_, data) = self.into_raw();
        // SAFETY: an 8-byte item is inline (nothing to free).
        u64::from_ne_bytes(unsafe { data.inline }) as usize
    }

    /// The item as a vector; `spare` has room for an inline item's bytes (see [`IntoVec`]).
    fn into_vec(self, mut spare: Vec<u8>) -> Vec<u8> {
        if self.len <= INLINE {
            spare.clear();
            spare.extend_from_slice(self.bytes());
            return spare;
        }
        let (len, data) = self.into_raw();
        // SAFETY: the block was allocated by the global allocator with the layout of `[u8; len]`,
        // which is what a Vec of capacity `len` uses; ownership passes to the Vec.
        unsafe { Vec::from_raw_parts(data.heap.as_ptr(), len, len) }
    }
}

impl Drop for Item {
    #[inline]
    fn drop(&mut self) {
        if self.len > INLINE {
            self.free();
        }
    }
}

impl Item {
    #[cold]
    fn free(&mut self) {
        // SAFETY: a heap item owns a block allocated in `copy_of` with this layout; `drop` calls
        // this once.
        unsafe { alloc::dealloc(self.data.heap.as_ptr(), Layout::from_size_align_unchecked(self.len, 1)) };
    }
}

/// What a `get` variant does with the next item: it looks at the length first, and may refuse
/// the item, which then stays in the queue.
pub(crate) trait Taker {
    /// What the get returns.
    type Out;
    /// Called with the next item's length before the item is removed. `Some(r)` leaves the
    /// item in the queue and ends the get with `r`; `None` takes it. May run several times
    /// (once per attempt).
    fn check(&mut self, len: usize) -> Option<Result<Self::Out>>;
    /// Receives the removed item (which `check` accepted).
    fn take(&mut self, item: Item) -> Self::Out;
}

/// `get`: the item as a `Vec`. An inline item's vector is allocated in `check`, before the
/// item is removed, so that an allocation failure leaves it in the queue.
#[derive(Default)]
pub(crate) struct IntoVec {
    spare: Vec<u8>,
}

impl Taker for IntoVec {
    type Out = Vec<u8>;
    fn check(&mut self, len: usize) -> Option<Result<Vec<u8>>> {
        if len <= INLINE && self.spare.capacity() < len && self.spare.try_reserve_exact(len).is_err() {
            return Some(Err(no_memory(len)));
        }
        None
    }
    fn take(&mut self, item: Item) -> Vec<u8> {
        item.into_vec(std::mem::take(&mut self.spare))
    }
}

/// `get_word`: the next item must be exactly 8 bytes.
pub(crate) struct AsWord;

impl Taker for AsWord {
    type Out = usize;
    #[inline]
    fn check(&mut self, len: usize) -> Option<Result<usize>> {
        if len == WORD {
            None
        } else {
            Some(Err(not_a_word(len)))
        }
    }
    #[inline]
    fn take(&mut self, item: Item) -> usize {
        item.into_word()
    }
}

#[cold]
#[inline(never)]
fn not_a_word(len: usize) -> Error {
    Error::new(WEFT_INVALID_STATE, format!("the next item is {len} bytes, not a word ({WORD} bytes); it stays in the queue"))
}

/// `get_into`: copies into the caller's buffer; too small a buffer leaves the item.
pub(crate) struct IntoBuf<'a> {
    pub(crate) buf: &'a mut [u8],
}

impl Taker for IntoBuf<'_> {
    type Out = Filled;
    fn check(&mut self, len: usize) -> Option<Result<Filled>> {
        (len > self.buf.len()).then_some(Ok(Filled::TooSmall(len)))
    }
    fn take(&mut self, item: Item) -> Filled {
        let n = item.len();
        self.buf[..n].copy_from_slice(item.bytes());
        Filled::Item(n)
    }
}
