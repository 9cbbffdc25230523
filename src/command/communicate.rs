//! Python's `Popen.communicate`: feed the child's stdin while reading its stdout and stderr,
//! in one poll loop on the calling thread (no helper threads), so that neither side can
//! block the other however much flows each way.
//!
//! A call that stops early (timeout, cancellation) keeps what was read and the input not yet
//! written; the next call continues from there. Writing to a child that stopped reading is
//! not an error: the rest of the input is dropped and stdin closed (Python ignores the
//! BrokenPipeError), and the SIGPIPE of that write never reaches the caller's process.

use crate::fd;
use crate::status::{Error, Result, WEFT_INVALID_STATE};
use crate::time::Deadline;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicI32, Ordering};

/// Bytes asked of one read (the pipe holds 64 KiB by default).
const READ_CHUNK: usize = 64 * 1024;
/// Bytes offered to one non-blocking write (the kernel takes what fits).
const WRITE_CHUNK: usize = 1024 * 1024;

/// weft's ends of the child's pipes and the state of communication with it.
#[derive(Default)]
pub(super) struct Io {
    /// stdin (write end), stdout and stderr (read ends); None when not a pipe or closed.
    pub pipes: [Option<OwnedFd>; 3],
    /// True once `communicate` was called.
    started: bool,
    /// Input a previous call had not written yet.
    input: Vec<u8>,
    /// Output read so far.
    out: [Vec<u8>; 2],
}

/// The output of a finished communication: None for a stream that is not a pipe.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Output {
    /// What the child wrote to its stdout.
    pub stdout: Option<Vec<u8>>,
    /// What the child wrote to its stderr.
    pub stderr: Option<Vec<u8>>,
}

impl Io {
    /// The state of a child just started with these pipes.
    pub(super) fn new(pipes: [Option<OwnedFd>; 3]) -> Io {
        Io { pipes, ..Io::default() }
    }

    /// Closes pipe `i` and clears its published number in `raw`.
    pub(super) fn close(&mut self, i: usize, raw: &[AtomicI32; 3]) {
        raw[i].store(-1, Ordering::Release);
        self.pipes[i] = None;
    }

    /// Moves data until stdin is written (or refused) and stdout and stderr reached end of
    /// file. `input` is only taken by the first call. Returns at the deadline with a timeout
    /// (would-block for `Deadline::Now`), keeping everything for the next call.
    pub(super) fn exchange(&mut self, input: &[u8], piped: [bool; 3], raw: &[AtomicI32; 3], deadline: Deadline) -> Result<()> {
        let saved;
        let src: &[u8] = if !self.started {
            if !input.is_empty() && self.pipes[0].is_none() {
                let why = if piped[0] { "stdin was closed" } else { "stdin is not a pipe" };
                return Err(Error::new(WEFT_INVALID_STATE, format!("cannot send input: {why}")));
            }
            self.started = true;
            input
        } else {
            if !input.is_empty() {
                return Err(Error::new(
                    WEFT_INVALID_STATE,
                    "input can only be given to the first communicate call; later calls continue with its unsent rest",
                ));
            }
            saved = std::mem::take(&mut self.input);
            &saved
        };
        if src.is_empty() && self.pipes[0].is_some() {
            self.close(0, raw);
        }
        let mut pos = 0;
        let result = self.pump(src, &mut pos, raw, deadline);
        if self.pipes[0].is_some() {
            self.input = src[pos..].to_vec();
        }
        result
    }

    /// The poll loop.
    fn pump(&mut self, src: &[u8], pos: &mut usize, raw: &[AtomicI32; 3], deadline: Deadline) -> Result<()> {
        let writing = self.pipes[0].as_ref().map(|p| p.as_raw_fd());
        let _sigpipe = writing.map(|_| SigpipeGuard::new());
        if let Some(w) = writing {
            fd::set_nonblocking(w, true)?;
        }
        let result = self.pump_nonblocking(src, pos, raw, deadline);
        if let Some(p) = &self.pipes[0] {
            // The user may write to the descriptor after a timeout: give it back blocking.
            let _ = fd::set_nonblocking(p.as_raw_fd(), false);
        }
        result
    }

    fn pump_nonblocking(&mut self, src: &[u8], pos: &mut usize, raw: &[AtomicI32; 3], deadline: Deadline) -> Result<()> {
        loop {
            let mut polled = [libc::pollfd { fd: -1, events: 0, revents: 0 }; 3];
            for (i, p) in polled.iter_mut().enumerate() {
                if let Some(fd) = &self.pipes[i] {
                    *p = libc::pollfd { fd: fd.as_raw_fd(), events: if i == 0 { libc::POLLOUT } else { libc::POLLIN }, revents: 0 };
                }
            }
            if polled.iter().all(|p| p.fd < 0) {
                return Ok(());
            }
            // poll ignores entries with a negative descriptor.
            if fd::poll(&mut polled, deadline)? == 0 {
                return Err(stopped(deadline));
            }
            if polled[0].revents != 0 {
                self.write_some(src, pos, raw)?;
            }
            for (i, p) in polled.iter().enumerate().skip(1) {
                if p.revents != 0 {
                    self.read_some(i, raw)?;
                }
            }
        }
    }

    /// One non-blocking write of the input; closes stdin when all is written or the child
    /// stopped reading.
    fn write_some(&mut self, src: &[u8], pos: &mut usize, raw: &[AtomicI32; 3]) -> Result<()> {
        let Some(fd) = &self.pipes[0] else { return Ok(()) };
        let chunk = &src[*pos..src.len().min(*pos + WRITE_CHUNK)];
        // SAFETY: writes from a live slice.
        let n = unsafe { libc::write(fd.as_raw_fd(), chunk.as_ptr().cast(), chunk.len()) };
        if n >= 0 {
            *pos += n as usize;
        } else {
            match std::io::Error::last_os_error().raw_os_error().unwrap_or(0) {
                libc::EINTR | libc::EAGAIN => return Ok(()),
                libc::EPIPE => *pos = src.len(),
                e => return Err(Error::os("write (command stdin)", e)),
            }
        }
        if *pos == src.len() {
            self.close(0, raw);
        }
        Ok(())
    }

    /// One read of stdout (`i == 1`) or stderr (2); closes it at end of file.
    fn read_some(&mut self, i: usize, raw: &[AtomicI32; 3]) -> Result<()> {
        let Some(fd) = &self.pipes[i] else { return Ok(()) };
        let buf = &mut self.out[i - 1];
        buf.reserve(READ_CHUNK);
        let room = buf.capacity() - buf.len();
        // SAFETY: reads into the vector's spare capacity, `room` bytes of it.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().add(buf.len()).cast(), room) };
        if n > 0 {
            // SAFETY: the kernel initialised `n <= room` bytes after the old length.
            unsafe { buf.set_len(buf.len() + n as usize) };
            return Ok(());
        }
        if n < 0 {
            match std::io::Error::last_os_error().raw_os_error().unwrap_or(0) {
                libc::EINTR | libc::EAGAIN => return Ok(()),
                e => return Err(Error::os("read (command output)", e)),
            }
        }
        self.close(i, raw);
        Ok(())
    }

    /// Hands out the output collected so far (a stream that is not a pipe gives None).
    pub(super) fn take_output(&mut self, piped: [bool; 3]) -> Output {
        let [out, err] = &mut self.out;
        Output { stdout: piped[1].then(|| std::mem::take(out)), stderr: piped[2].then(|| std::mem::take(err)) }
    }
}

/// The error of a loop that reached its deadline.
fn stopped(deadline: Deadline) -> Error {
    if deadline == Deadline::Now {
        Error::would_block("the command has not finished; nothing more can be done without blocking")
    } else {
        Error::timeout("timed out communicating with the command")
    }
}

/// Blocks SIGPIPE on the calling thread while it writes to a child's stdin, and discards the
/// SIGPIPE a write to a child that stopped reading raised (it is directed at this thread).
struct SigpipeGuard {
    old_mask: libc::sigset_t,
    was_pending: bool,
}

fn sigpipe_set() -> libc::sigset_t {
    // SAFETY: initialises a local sigset.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
        set
    }
}

fn sigpipe_pending() -> bool {
    // SAFETY: reads the pending set into a local.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigpending(&mut set);
        libc::sigismember(&set, libc::SIGPIPE) == 1
    }
}

impl SigpipeGuard {
    fn new() -> SigpipeGuard {
        let block = sigpipe_set();
        // SAFETY: a zeroed sigset is valid storage for the old mask.
        let mut old_mask: libc::sigset_t = unsafe { std::mem::zeroed() };
        // SAFETY: changes the calling thread's mask; both sets are valid.
        unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &block, &mut old_mask) };
        SigpipeGuard { old_mask, was_pending: sigpipe_pending() }
    }
}

impl Drop for SigpipeGuard {
    fn drop(&mut self) {
        if !self.was_pending && sigpipe_pending() {
            let set = sigpipe_set();
            let zero = libc::timespec { tv_sec: 0, tv_nsec: 0 };
            // SAFETY: takes the pending SIGPIPE (ours) without waiting.
            unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &zero) };
        }
        // SAFETY: restores the mask saved in `new`.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.old_mask, std::ptr::null_mut()) };
    }
}
