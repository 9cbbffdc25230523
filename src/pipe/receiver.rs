//! The receiving half of a connection: a user-space read buffer and the state of a message
//! that has only partly arrived.
//!
//! Small messages (header and payload within [`BUF_SIZE`]) are read into the buffer, usually
//! header and payload in one system call, together with whatever follows them. Larger
//! payloads are read straight into their destination (the caller's buffer, or a vector that
//! grows as bytes arrive, never sized from the untrusted header alone). A receive that
//! times out, or is cancelled, keeps what it has read: the buffer, or [`Partial`] for a large
//! message whose header was consumed; the next receive continues where it stopped. A message
//! cut off by end of file is dropped, never delivered.

use super::frame::{self, Header, HEADER_LEN};
use super::sys::{self, PassedFds};
use crate::status::{Error, Result, WEFT_CLOSED, WEFT_CORRUPTED, WEFT_INVALID_STATE, WEFT_NO_MEMORY, WEFT_OS_ERROR};
use crate::time::Deadline;
use std::os::fd::{OwnedFd, RawFd};

/// Size of the per-connection read buffer.
pub const BUF_SIZE: usize = 64 * 1024;

/// The most a receive reserves before bytes have arrived: a header claiming more only gets
/// memory as the payload really comes.
const EAGER_RESERVE: usize = 4 << 20;

/// The outcome of receiving into a caller's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Filled {
    /// The next message (this many bytes) was written to the buffer.
    Message(usize),
    /// The next message needs this many bytes; it stays unread.
    TooSmall(usize),
}

/// A large message whose header has been consumed: `data` holds its first bytes.
struct Partial {
    data: Vec<u8>,
    total: usize,
}

/// Receive state; one per connection, used under the connection's receive lock.
#[derive(Default)]
pub(super) struct Receiver {
    /// Empty until first used, then `BUF_SIZE` bytes; `buf[start..end]` is unread.
    buf: Vec<u8>,
    start: usize,
    end: usize,
    partial: Option<Partial>,
    fds: PassedFds,
    eof: bool,
    /// Set when the stream lost its framing (memory ran out while saving a partial message).
    broken: bool,
}

fn no_memory(len: usize) -> Error {
    Error::new(WEFT_NO_MEMORY, format!("cannot allocate memory for a message of {len} bytes"))
}

fn cut_off(have: usize, total: Option<usize>) -> Error {
    let of = total.map_or_else(|| "its header".to_owned(), |t| format!("{} bytes", t + HEADER_LEN));
    Error::new(WEFT_CLOSED, format!("the peer closed the connection in the middle of a message ({have} of {of} arrived); the partial message was dropped"))
}

impl Receiver {
    fn buffered(&self) -> usize {
        self.end - self.start
    }

    fn consume(&mut self, n: usize) {
        self.start += n;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
    }

    fn compact(&mut self) {
        self.buf.copy_within(self.start..self.end, 0);
        self.end -= self.start;
        self.start = 0;
    }

    /// Reads once into the free end of the buffer; end of file sets `eof`.
    fn fill(&mut self, fd: RawFd, deadline: Deadline) -> Result<()> {
        if self.buf.is_empty() {
            let mut b = Vec::new();
            b.try_reserve_exact(BUF_SIZE).map_err(|_| no_memory(BUF_SIZE))?;
            b.resize(BUF_SIZE, 0);
            self.buf = b;
        }
        // Keep room for a good read: move what is left to the front once the tail is short.
        if self.start > 0 && self.buf.len() - self.end < BUF_SIZE / 2 {
            self.compact();
        }
        // Callers only fill while a header or a message that fits is incomplete, so there is room.
        debug_assert!(self.end < self.buf.len());
        let n = sys::recv_buffered(fd, &mut self.buf[self.end..], deadline, &mut self.fds)?;
        if n == 0 {
            self.eof = true;
        }
        self.end += n;
        Ok(())
    }

    /// At end of file: `WEFT_CLOSED`, dropping any incomplete message.
    fn closed(&mut self) -> Error {
        let have = self.buffered();
        self.start = 0;
        self.end = 0;
        if have == 0 {
            Error::new(WEFT_CLOSED, "the peer closed the connection")
        } else {
            cut_off(have, None)
        }
    }

    fn check_usable(&self) -> Result<()> {
        if self.broken {
            return Err(Error::new(WEFT_CORRUPTED, "the connection lost its message framing after running out of memory"));
        }
        Ok(())
    }

    /// The next frame's header, reading until it is complete.
    fn header(&mut self, fd: RawFd, deadline: Deadline) -> Result<Header> {
        self.check_usable()?;
        if let Some(p) = &self.partial {
            return Ok(Header::Data(p.total as u64));
        }
        while self.buffered() < HEADER_LEN {
            if self.eof {
                return Err(self.closed());
            }
            self.fill(fd, deadline)?;
        }
        let mut h = [0u8; HEADER_LEN];
        h.copy_from_slice(&self.buf[self.start..self.start + HEADER_LEN]);
        Ok(frame::decode(h))
    }

    /// The length of the next message, which must be a byte message.
    fn data_len(&mut self, fd: RawFd, deadline: Deadline) -> Result<usize> {
        match self.header(fd, deadline)? {
            Header::Descriptor => Err(Error::new(
                WEFT_INVALID_STATE,
                "the next message carries a descriptor: receive it with weft_connection_recv_fd",
            )),
            Header::Data(len) => usize::try_from(len).map_err(|_| Error::new(WEFT_NO_MEMORY, format!("a message of {len} bytes cannot be held in memory"))),
        }
    }

    /// True when a message of `len` bytes goes through the buffer.
    fn fits(len: usize) -> bool {
        len <= BUF_SIZE - HEADER_LEN
    }

    /// Reads until the whole small message of `len` bytes at `start` is buffered.
    fn buffer_whole(&mut self, fd: RawFd, len: usize, deadline: Deadline) -> Result<()> {
        while self.buffered() < HEADER_LEN + len {
            if self.eof {
                let have = self.buffered();
                self.start = 0;
                self.end = 0;
                return Err(cut_off(have, Some(len)));
            }
            if self.start + HEADER_LEN + len > self.buf.len() {
                self.compact();
            }
            self.fill(fd, deadline)?;
        }
        Ok(())
    }

    /// Receives the next byte message into a new vector.
    pub(super) fn recv(&mut self, fd: RawFd, deadline: Deadline) -> Result<Vec<u8>> {
        let len = self.data_len(fd, deadline)?;
        if self.partial.is_none() {
            if Self::fits(len) {
                self.buffer_whole(fd, len, deadline)?;
                let mut v = Vec::new();
                v.try_reserve_exact(len).map_err(|_| no_memory(len))?;
                let at = self.start + HEADER_LEN;
                v.extend_from_slice(&self.buf[at..at + len]);
                self.consume(HEADER_LEN + len);
                return Ok(v);
            }
            self.begin_partial(len)?;
        }
        self.finish_partial(fd, deadline)
    }

    /// Consumes the header of a large message and moves its buffered first bytes into a
    /// [`Partial`].
    fn begin_partial(&mut self, len: usize) -> Result<()> {
        let mut data = Vec::new();
        data.try_reserve_exact(len.min(EAGER_RESERVE)).map_err(|_| no_memory(len))?;
        let have = (self.buffered() - HEADER_LEN).min(len);
        let at = self.start + HEADER_LEN;
        data.extend_from_slice(&self.buf[at..at + have]);
        self.consume(HEADER_LEN + have);
        self.partial = Some(Partial { data, total: len });
        Ok(())
    }

    /// Reads the rest of the partial message straight into its vector, growing it as bytes
    /// arrive.
    fn finish_partial(&mut self, fd: RawFd, deadline: Deadline) -> Result<Vec<u8>> {
        loop {
            let p = self.partial.as_mut().expect("a partial message is in progress");
            let (len, total) = (p.data.len(), p.total);
            if len == total {
                return Ok(self.partial.take().map(|p| p.data).unwrap_or_default());
            }
            if len == p.data.capacity() {
                let more = (total - len).min(len.max(BUF_SIZE));
                p.data.try_reserve_exact(more).map_err(|_| no_memory(total))?;
            }
            let room = (p.data.capacity() - len).min(total - len);
            let n = sys::recv_direct(fd, &mut p.data.spare_capacity_mut()[..room], deadline)?;
            if n == 0 {
                self.eof = true;
                self.partial = None;
                return Err(cut_off(HEADER_LEN + len, Some(total)));
            }
            // SAFETY: the kernel initialised `n <= room` bytes of the spare capacity.
            unsafe { p.data.set_len(len + n) };
        }
    }

    /// Receives the next byte message into `dst`. A message larger than `dst` stays unread
    /// ([`Filled::TooSmall`]).
    pub(super) fn recv_into(&mut self, fd: RawFd, dst: &mut [u8], deadline: Deadline) -> Result<Filled> {
        let len = self.data_len(fd, deadline)?;
        if len > dst.len() {
            return Ok(Filled::TooSmall(len));
        }
        if self.partial.is_none() && Self::fits(len) {
            self.buffer_whole(fd, len, deadline)?;
            let at = self.start + HEADER_LEN;
            dst[..len].copy_from_slice(&self.buf[at..at + len]);
            self.consume(HEADER_LEN + len);
            return Ok(Filled::Message(len));
        }
        let mut got = match self.partial.take() {
            Some(p) => {
                dst[..p.data.len()].copy_from_slice(&p.data);
                p.data.len()
            }
            None => {
                let have = (self.buffered() - HEADER_LEN).min(len);
                let at = self.start + HEADER_LEN;
                dst[..have].copy_from_slice(&self.buf[at..at + have]);
                self.consume(HEADER_LEN + have);
                have
            }
        };
        while got < len {
            match sys::recv_direct(fd, sys::as_uninit(&mut dst[got..len]), deadline) {
                Ok(0) => {
                    self.eof = true;
                    return Err(cut_off(HEADER_LEN + got, Some(len)));
                }
                Ok(n) => got += n,
                Err(e) => {
                    self.save_partial(&dst[..got], len);
                    return Err(e);
                }
            }
        }
        Ok(Filled::Message(len))
    }

    /// Keeps the first bytes of a large message that a caller's buffer received, for the
    /// next receive to continue.
    fn save_partial(&mut self, have: &[u8], total: usize) {
        let mut data = Vec::new();
        if data.try_reserve_exact(have.len()).is_err() {
            self.broken = true;
            return;
        }
        data.extend_from_slice(have);
        self.partial = Some(Partial { data, total });
    }

    /// Receives the next message, which must be a descriptor message.
    pub(super) fn recv_fd(&mut self, fd: RawFd, deadline: Deadline) -> Result<OwnedFd> {
        if self.header(fd, deadline)? != Header::Descriptor {
            return Err(Error::new(WEFT_INVALID_STATE, "the next message is a byte message, not a descriptor"));
        }
        self.consume(HEADER_LEN);
        match self.fds.pop_front() {
            Some(Some(fd)) => Ok(fd),
            Some(None) => Err(Error::new(
                WEFT_OS_ERROR,
                "the passed descriptor was lost (this process may be at its descriptor limit)",
            )),
            None => Err(Error::new(WEFT_CORRUPTED, "a descriptor message arrived without a descriptor")),
        }
    }

    /// True when a receive would not block on the socket: a whole message is buffered, or
    /// end of file (or a broken stream) was seen.
    pub(super) fn ready(&self) -> bool {
        if self.eof || self.broken {
            return true;
        }
        if self.partial.is_some() || self.buffered() < HEADER_LEN {
            return false;
        }
        let mut h = [0u8; HEADER_LEN];
        h.copy_from_slice(&self.buf[self.start..self.start + HEADER_LEN]);
        match frame::decode(h) {
            Header::Descriptor => true,
            Header::Data(len) => len <= (self.buffered() - HEADER_LEN) as u64,
        }
    }

    /// Forgets everything buffered and closes descriptors that were never claimed.
    pub(super) fn clear(&mut self) {
        *self = Receiver::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fd::{raw, send_all, socketpair};
    use crate::status::{WEFT_TIMEOUT, WEFT_WOULD_BLOCK};

    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut v = frame::data_header(payload.len()).to_vec();
        v.extend_from_slice(payload);
        v
    }

    fn soon() -> Deadline {
        Deadline::from_timeout_ns(20_000_000)
    }

    #[test]
    fn several_small_messages_from_one_read() {
        let (a, b) = socketpair(libc::SOCK_STREAM).unwrap();
        let mut bytes = frame(b"one");
        bytes.extend(frame(b""));
        bytes.extend(frame(b"three"));
        send_all(raw(&a), &[&bytes], Deadline::Never).unwrap();
        let mut r = Receiver::default();
        assert_eq!(r.recv(raw(&b), Deadline::Never).unwrap(), b"one");
        assert!(r.ready(), "the rest is buffered");
        assert_eq!(r.recv(raw(&b), Deadline::Now).unwrap(), b"");
        assert_eq!(r.recv(raw(&b), Deadline::Now).unwrap(), b"three");
        assert!(!r.ready());
        assert_eq!(r.recv(raw(&b), Deadline::Now).unwrap_err().code, WEFT_WOULD_BLOCK);
    }

    #[test]
    fn header_and_payload_split_across_writes() {
        let (a, b) = socketpair(libc::SOCK_STREAM).unwrap();
        let bytes = frame(b"hello world");
        let mut r = Receiver::default();
        for cut in [3, 8, 12] {
            let (first, rest) = bytes.split_at(cut);
            send_all(raw(&a), &[first], Deadline::Never).unwrap();
            assert_eq!(r.recv(raw(&b), soon()).unwrap_err().code, WEFT_TIMEOUT, "cut at {cut}");
            assert!(!r.ready());
            send_all(raw(&a), &[rest], Deadline::Never).unwrap();
            assert_eq!(r.recv(raw(&b), soon()).unwrap(), b"hello world");
        }
    }

    #[test]
    fn too_small_buffer_leaves_the_message() {
        let (a, b) = socketpair(libc::SOCK_STREAM).unwrap();
        send_all(raw(&a), &[&frame(b"0123456789")], Deadline::Never).unwrap();
        let mut r = Receiver::default();
        let mut small = [0u8; 4];
        assert_eq!(r.recv_into(raw(&b), &mut small, Deadline::Now).unwrap(), Filled::TooSmall(10));
        assert_eq!(r.recv_into(raw(&b), &mut small, Deadline::Now).unwrap(), Filled::TooSmall(10));
        let mut big = [0u8; 10];
        assert_eq!(r.recv_into(raw(&b), &mut big, Deadline::Now).unwrap(), Filled::Message(10));
        assert_eq!(&big, b"0123456789");
    }

    fn pattern(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 + i / 251) as u8).collect()
    }

    #[test]
    fn large_message_timeout_midway_then_continues() {
        let (a, b) = socketpair(libc::SOCK_STREAM).unwrap();
        let payload = pattern(300_000);
        let bytes = frame(&payload);
        let mut r = Receiver::default();
        // Into a vector: a third, then time out, then the rest.
        send_all(raw(&a), &[&bytes[..100_000]], Deadline::Never).unwrap();
        assert_eq!(r.recv(raw(&b), soon()).unwrap_err().code, WEFT_TIMEOUT);
        assert!(!r.ready());
        send_all(raw(&a), &[&bytes[100_000..200_000]], Deadline::Never).unwrap();
        // Switch to a caller's buffer midway: the partial vector is carried over.
        let mut dst = vec![0u8; 400_000];
        assert_eq!(r.recv_into(raw(&b), &mut dst, soon()).unwrap_err().code, WEFT_TIMEOUT);
        send_all(raw(&a), &[&bytes[200_000..]], Deadline::Never).unwrap();
        assert_eq!(r.recv_into(raw(&b), &mut dst, soon()).unwrap(), Filled::Message(payload.len()));
        assert!(dst[..payload.len()] == payload[..]);
        // And back: buffer first, then a vector.
        send_all(raw(&a), &[&bytes[..150_000]], Deadline::Never).unwrap();
        assert_eq!(r.recv_into(raw(&b), &mut dst, soon()).unwrap_err().code, WEFT_TIMEOUT);
        send_all(raw(&a), &[&bytes[150_000..]], Deadline::Never).unwrap();
        assert!(r.recv(raw(&b), soon()).unwrap() == payload);
    }

    #[test]
    fn eof_mid_frame_is_closed_never_a_partial_message() {
        for (sent, big) in [(4, false), (20, false), (100, true)] {
            let (a, b) = socketpair(libc::SOCK_STREAM).unwrap();
            let payload = pattern(if big { 200_000 } else { 50 });
            let mut bytes = frame(b"whole");
            bytes.extend(frame(&payload));
            send_all(raw(&a), &[&bytes[..13 + sent]], Deadline::Never).unwrap();
            drop(a);
            let mut r = Receiver::default();
            assert_eq!(r.recv(raw(&b), Deadline::Never).unwrap(), b"whole");
            let e = r.recv(raw(&b), Deadline::Never).unwrap_err();
            assert_eq!(e.code, WEFT_CLOSED, "{e}");
            assert!(e.message.contains("middle"), "{e}");
            assert!(r.ready());
            assert_eq!(r.recv(raw(&b), Deadline::Never).unwrap_err().code, WEFT_CLOSED);
            let mut dst = [0u8; 8];
            assert_eq!(r.recv_into(raw(&b), &mut dst, Deadline::Never).unwrap_err().code, WEFT_CLOSED);
        }
    }

    #[test]
    fn eof_mid_frame_into_a_caller_buffer() {
        let (a, b) = socketpair(libc::SOCK_STREAM).unwrap();
        let bytes = frame(&pattern(200_000));
        send_all(raw(&a), &[&bytes[..150_000]], Deadline::Never).unwrap();
        drop(a);
        let mut r = Receiver::default();
        let mut dst = vec![0u8; 200_000];
        assert_eq!(r.recv_into(raw(&b), &mut dst, Deadline::Never).unwrap_err().code, WEFT_CLOSED);
        assert_eq!(r.recv_into(raw(&b), &mut dst, Deadline::Never).unwrap_err().code, WEFT_CLOSED);
    }

    #[test]
    fn bogus_huge_header_does_not_allocate_it() {
        let (a, b) = socketpair(libc::SOCK_STREAM).unwrap();
        let mut bytes = (1u64 << 60).to_le_bytes().to_vec();
        bytes.extend_from_slice(&[1, 2, 3]);
        send_all(raw(&a), &[&bytes], Deadline::Never).unwrap();
        let mut r = Receiver::default();
        let mut dst = [0u8; 16];
        assert_eq!(r.recv_into(raw(&b), &mut dst, Deadline::Now).unwrap(), Filled::TooSmall(1 << 60));
        assert_eq!(r.recv(raw(&b), soon()).unwrap_err().code, WEFT_TIMEOUT);
        assert!(r.partial.as_ref().unwrap().data.capacity() <= EAGER_RESERVE);
        drop(a);
        assert_eq!(r.recv(raw(&b), Deadline::Never).unwrap_err().code, WEFT_CLOSED);
    }

    #[test]
    fn descriptor_messages_are_kept_apart_from_byte_messages() {
        let (a, b) = socketpair(libc::SOCK_STREAM).unwrap();
        let (pr, pw) = crate::fd::pipe().unwrap();
        send_all(raw(&a), &[&frame(b"before")], Deadline::Never).unwrap();
        crate::fd::send_with_fds(raw(&a), &frame::descriptor_header(), &[raw(&pw)], Deadline::Never).unwrap();
        send_all(raw(&a), &[&frame(b"after")], Deadline::Never).unwrap();
        drop(pw);
        let mut r = Receiver::default();
        assert_eq!(r.recv_fd(raw(&b), Deadline::Never).unwrap_err().code, WEFT_INVALID_STATE);
        assert_eq!(r.recv(raw(&b), Deadline::Never).unwrap(), b"before");
        assert_eq!(r.recv(raw(&b), Deadline::Never).unwrap_err().code, WEFT_INVALID_STATE);
        assert!(r.ready());
        let w = r.recv_fd(raw(&b), Deadline::Never).unwrap();
        assert_eq!(r.recv(raw(&b), Deadline::Never).unwrap(), b"after");
        // SAFETY: writes one byte from a live buffer to the received pipe end.
        assert_eq!(unsafe { libc::write(raw(&w), b"z".as_ptr().cast(), 1) }, 1);
        let mut one = [0u8; 1];
        assert_eq!(crate::fd::read(raw(&pr), &mut one).unwrap(), 1);
    }
}
