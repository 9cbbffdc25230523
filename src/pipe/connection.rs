//! [`Connection`]: framed byte messages over a stream socket (Python's `Connection`), and
//! [`pipe`], a connected pair (Python's `multiprocessing.Pipe`).

use super::frame;
use super::receiver::{Filled, Receiver};
use super::sys;
use crate::fd;
use crate::status::{Error, Result, WEFT_CLOSED, WEFT_INVALID_STATE, WEFT_UNSUPPORTED};
use crate::time::Deadline;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, TryLockError};

/// One end of a connection: messages of any size over a Unix-domain or TCP stream socket.
///
/// Thread-safe: one thread may send while another receives; concurrent sends (or receives)
/// are serialised, so frames never interleave. Closing while another thread is blocked in a
/// call on the same connection is allowed: that call keeps the descriptor open until it
/// returns, and later calls give `WEFT_CLOSED`.
pub struct Connection {
    readable: bool,
    writable: bool,
    unix: bool,
    /// `None` once closed; calls in progress hold their own reference.
    socket: Mutex<Option<Arc<OwnedFd>>>,
    /// The descriptor number, -1 once closed.
    raw: AtomicI32,
    rx: Mutex<Receiver>,
    tx: Mutex<()>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Connection(fd {}, readable {}, writable {})", self.fd(), self.readable, self.writable)
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A connected pair (Python's `Pipe(duplex)`). Duplex: both ends send and receive. One-way:
/// `(reader, writer)`, the reader only receives and the writer only sends (a socket pair with
/// the unused directions shut down, so that a send to a vanished reader gives `WEFT_CLOSED`
/// rather than SIGPIPE).
pub fn pipe(duplex: bool) -> Result<(Connection, Connection)> {
    let (a, b) = fd::socketpair(libc::SOCK_STREAM)?;
    if duplex {
        return Ok((Connection::new(a, true, true, true), Connection::new(b, true, true, true)));
    }
    sys::shutdown(a.as_raw_fd(), libc::SHUT_WR)?;
    sys::shutdown(b.as_raw_fd(), libc::SHUT_RD)?;
    Ok((Connection::new(a, true, false, true), Connection::new(b, false, true, true)))
}

impl Connection {
    /// Wraps a connected stream socket this process owns.
    pub(super) fn new(socket: OwnedFd, readable: bool, writable: bool, unix: bool) -> Connection {
        Connection {
            readable,
            writable,
            unix,
            raw: AtomicI32::new(socket.as_raw_fd()),
            socket: Mutex::new(Some(Arc::new(socket))),
            rx: Mutex::new(Receiver::default()),
            tx: Mutex::new(()),
        }
    }

    /// A connection over an inherited or passed descriptor `fd`, which must be a connected
    /// stream socket (Unix-domain or TCP, not a listening one); it is made close-on-exec. `readable`/`writable`
    /// say which directions this end uses (at least one). Takes ownership of `fd` only on
    /// success. Errors: `WEFT_INVALID_ARGUMENT` (not an open stream socket, neither direction).
    ///
    /// # Safety
    /// `fd` must not be owned by anything else once this succeeds.
    pub unsafe fn from_raw_fd(fd: RawFd, readable: bool, writable: bool) -> Result<Connection> {
        if !readable && !writable {
            return Err(Error::invalid("a connection must be readable, writable or both"));
        }
        if !fd::is_open(fd) {
            return Err(Error::invalid(format!("{fd} is not an open descriptor")));
        }
        let (domain, kind) = sys::socket_kind(fd).map_err(|e| Error::invalid(format!("descriptor {fd} is not a socket ({})", e.message)))?;
        if kind != libc::SOCK_STREAM || ![libc::AF_UNIX, libc::AF_INET, libc::AF_INET6].contains(&domain) {
            return Err(Error::invalid(format!("descriptor {fd} is not a Unix-domain or TCP stream socket")));
        }
        if sys::is_listening(fd)? {
            return Err(Error::invalid(format!("descriptor {fd} is a listening socket, not a connection")));
        }
        fd::set_cloexec(fd, true)?;
        // SAFETY: `fd` is open and, per the contract, ours from here on.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        Ok(Connection::new(owned, readable, writable, domain == libc::AF_UNIX))
    }

    /// The socket, or `WEFT_CLOSED` after [`close`](Self::close).
    fn socket(&self) -> Result<Arc<OwnedFd>> {
        lock(&self.socket).clone().ok_or_else(|| Error::new(WEFT_CLOSED, "the connection was closed"))
    }

    fn check_readable(&self) -> Result<()> {
        if !self.readable {
            return Err(Error::new(WEFT_INVALID_STATE, "this end of the connection is write-only"));
        }
        Ok(())
    }

    fn check_writable(&self) -> Result<()> {
        if !self.writable {
            return Err(Error::new(WEFT_INVALID_STATE, "this end of the connection is read-only"));
        }
        Ok(())
    }

    /// True when this end receives.
    pub fn readable(&self) -> bool {
        self.readable
    }

    /// True when this end sends.
    pub fn writable(&self) -> bool {
        self.writable
    }

    /// The socket's descriptor (-1 once closed), e.g. to hand the connection to a child
    /// process. Bytes this process has already read into its user-space buffer are not
    /// visible through the descriptor: pass a connection before receiving on it.
    pub fn fd(&self) -> RawFd {
        self.raw.load(Ordering::Acquire)
    }

    /// Sends `data` as one message: one `sendmsg` of header and payload, blocking until all of
    /// it is handed to the kernel (not interrupted by weft cancellation). Errors: `WEFT_CLOSED`
    /// (closed here, or the peer is gone — never SIGPIPE), `WEFT_INVALID_STATE` (read-only end),
    /// `WEFT_OS_ERROR`.
    pub fn send(&self, data: &[u8]) -> Result<()> {
        self.check_writable()?;
        let header = frame::data_header(data.len());
        let _one_sender = lock(&self.tx);
        let socket = self.socket()?;
        fd::send_all(socket.as_raw_fd(), &[&header, data], Deadline::Never)
    }

    /// Receives the next message into a new vector. Errors: `WEFT_WOULD_BLOCK`,
    /// `WEFT_TIMEOUT`, `WEFT_CANCELLED` (nothing is lost: the next receive continues),
    /// `WEFT_CLOSED` (closed here, or end of file after every complete message — a message cut
    /// off by the peer's death is dropped), `WEFT_INVALID_STATE` (write-only end, or the next
    /// message is a descriptor), `WEFT_NO_MEMORY`, `WEFT_OS_ERROR`.
    pub fn recv(&self, deadline: Deadline) -> Result<Vec<u8>> {
        self.check_readable()?;
        let mut rx = lock(&self.rx);
        let socket = self.socket()?;
        rx.recv(socket.as_raw_fd(), deadline)
    }

    /// Receives the next message into `buf`; a message larger than `buf` stays unread and its
    /// size is reported ([`Filled::TooSmall`]). Errors as [`recv`](Self::recv).
    pub fn recv_into(&self, buf: &mut [u8], deadline: Deadline) -> Result<Filled> {
        self.check_readable()?;
        let mut rx = lock(&self.rx);
        let socket = self.socket()?;
        rx.recv_into(socket.as_raw_fd(), buf, deadline)
    }

    /// Waits until a receive would find something: a whole message already buffered, new
    /// bytes (a whole or partial message) or end of file on the socket. Errors:
    /// `WEFT_WOULD_BLOCK`, `WEFT_TIMEOUT`, `WEFT_CANCELLED`, `WEFT_CLOSED` (closed here),
    /// `WEFT_INVALID_STATE` (write-only end).
    pub fn poll(&self, deadline: Deadline) -> Result<()> {
        self.check_readable()?;
        let socket = self.socket()?;
        // A receiver blocked in another thread holds the lock; then only the socket can tell.
        let buffered = match self.rx.try_lock() {
            Ok(rx) => rx.ready(),
            Err(TryLockError::Poisoned(p)) => p.into_inner().ready(),
            Err(TryLockError::WouldBlock) => false,
        };
        if !buffered {
            fd::wait_ready(socket.as_raw_fd(), libc::POLLIN, deadline, "no message is ready")?;
        }
        Ok(())
    }

    /// Sends a duplicate of descriptor `fd` as a descriptor message (`SCM_RIGHTS`; `fd` stays
    /// open here). Errors: `WEFT_INVALID_ARGUMENT` (not an open descriptor),
    /// `WEFT_UNSUPPORTED` (a TCP connection), and those of [`send`](Self::send).
    pub fn send_fd(&self, fd: RawFd) -> Result<()> {
        self.check_writable()?;
        let _one_sender = lock(&self.tx);
        let socket = self.socket()?;
        if !fd::is_open(fd) {
            return Err(Error::invalid(format!("{fd} is not an open descriptor")));
        }
        if !self.unix {
            return Err(Error::new(WEFT_UNSUPPORTED, "descriptors can only be passed over Unix-domain connections"));
        }
        fd::send_with_fds(socket.as_raw_fd(), &frame::descriptor_header(), &[fd], Deadline::Never)
    }

    /// Receives the next message, which must be a descriptor message: a new close-on-exec
    /// descriptor. Errors as [`recv`](Self::recv) (`WEFT_INVALID_STATE` when the next message
    /// is a byte message, which stays unread), and `WEFT_OS_ERROR` when the kernel could not
    /// deliver the descriptor (at the descriptor limit).
    pub fn recv_fd(&self, deadline: Deadline) -> Result<OwnedFd> {
        self.check_readable()?;
        let mut rx = lock(&self.rx);
        let socket = self.socket()?;
        rx.recv_fd(socket.as_raw_fd(), deadline)
    }

    /// Closes the socket (once calls in progress on other threads return) and drops what was
    /// buffered. Later calls give `WEFT_CLOSED`; closing again does nothing.
    pub fn close(&self) {
        let socket = lock(&self.socket).take();
        self.raw.store(-1, Ordering::Release);
        if let Ok(mut rx) = self.rx.try_lock() {
            rx.clear();
        }
        drop(socket);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{WEFT_INVALID_ARGUMENT, WEFT_TIMEOUT, WEFT_WOULD_BLOCK};

    #[test]
    fn duplex_round_trip_and_close() {
        let (a, b) = pipe(true).unwrap();
        a.send(b"ping").unwrap();
        b.poll(Deadline::Now).unwrap();
        assert_eq!(b.recv(Deadline::Never).unwrap(), b"ping");
        b.send(b"pong").unwrap();
        assert_eq!(a.recv(Deadline::Never).unwrap(), b"pong");
        assert_eq!(a.poll(Deadline::Now).unwrap_err().code, WEFT_WOULD_BLOCK);
        assert_eq!(a.poll(Deadline::from_timeout_ns(5_000_000)).unwrap_err().code, WEFT_TIMEOUT);
        b.send(b"last").unwrap();
        b.close();
        b.close();
        assert_eq!(b.fd(), -1);
        assert_eq!(b.send(b"x").unwrap_err().code, WEFT_CLOSED);
        assert_eq!(b.recv(Deadline::Now).unwrap_err().code, WEFT_CLOSED);
        assert_eq!(b.poll(Deadline::Now).unwrap_err().code, WEFT_CLOSED);
        assert_eq!(a.recv(Deadline::Never).unwrap(), b"last");
        a.poll(Deadline::Now).unwrap(); // end of file is ready
        assert_eq!(a.recv(Deadline::Never).unwrap_err().code, WEFT_CLOSED);
        assert_eq!(a.send(b"x").unwrap_err().code, WEFT_CLOSED);
    }

    #[test]
    fn one_way_pair() {
        let (r, w) = pipe(false).unwrap();
        assert!(r.readable() && !r.writable() && !w.readable() && w.writable());
        assert_eq!(r.send(b"x").unwrap_err().code, WEFT_INVALID_STATE);
        assert_eq!(w.recv(Deadline::Now).unwrap_err().code, WEFT_INVALID_STATE);
        assert_eq!(w.poll(Deadline::Now).unwrap_err().code, WEFT_INVALID_STATE);
        assert_eq!(r.poll(Deadline::Now).unwrap_err().code, WEFT_WOULD_BLOCK);
        w.send(b"one way").unwrap();
        assert_eq!(r.recv(Deadline::Never).unwrap(), b"one way");
        drop(r);
        assert_eq!(w.send(b"x").unwrap_err().code, WEFT_CLOSED);
    }

    #[test]
    fn concurrent_senders_never_interleave() {
        let (a, b) = pipe(true).unwrap();
        let a = Arc::new(a);
        let big: Vec<u8> = vec![0xAB; 300_000];
        let senders: Vec<_> = (0..3u8)
            .map(|k| {
                let (a, mut m) = (a.clone(), big.clone());
                m[0] = k;
                std::thread::spawn(move || (0..5).for_each(|_| a.send(&m).unwrap()))
            })
            .collect();
        for _ in 0..15 {
            let m = b.recv(Deadline::Never).unwrap();
            assert_eq!(m.len(), big.len());
            assert!(m[1..].iter().all(|&x| x == 0xAB));
        }
        senders.into_iter().for_each(|t| t.join().unwrap());
    }

    #[test]
    fn from_raw_fd_checks_the_descriptor() {
        let (p, q) = fd::pipe().unwrap();
        // SAFETY: rejected descriptors are not taken over.
        let e = unsafe { Connection::from_raw_fd(p.as_raw_fd(), true, false) }.err().unwrap();
        assert_eq!(e.code, WEFT_INVALID_ARGUMENT);
        drop((p, q));
        let (s, t) = fd::socketpair(libc::SOCK_STREAM).unwrap();
        // SAFETY: as above.
        assert!(unsafe { Connection::from_raw_fd(s.as_raw_fd(), false, false) }.is_err());
        let raw = std::os::fd::IntoRawFd::into_raw_fd(s);
        // SAFETY: `raw` was released by its OwnedFd; the connection owns it now.
        let c = unsafe { Connection::from_raw_fd(raw, true, true) }.unwrap();
        let u = Connection::new(t, true, true, true);
        c.send(b"over a raw fd").unwrap();
        assert_eq!(u.recv(Deadline::Never).unwrap(), b"over a raw fd");
    }

    #[test]
    fn passes_descriptors() {
        let (a, b) = pipe(true).unwrap();
        let (r, w) = fd::pipe().unwrap();
        a.send_fd(w.as_raw_fd()).unwrap();
        a.send(b"after").unwrap();
        drop(w);
        let w2 = b.recv_fd(Deadline::Never).unwrap();
        assert_eq!(b.recv(Deadline::Never).unwrap(), b"after");
        // SAFETY: writes one byte from a live buffer.
        assert_eq!(unsafe { libc::write(w2.as_raw_fd(), b"q".as_ptr().cast(), 1) }, 1);
        let mut one = [0u8; 1];
        assert_eq!(fd::read(r.as_raw_fd(), &mut one).unwrap(), 1);
        assert_eq!(a.send_fd(-1).unwrap_err().code, WEFT_INVALID_ARGUMENT);
    }
}
