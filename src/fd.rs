//! File descriptors, the layer under pipes, processes and commands: close-on-exec pipes and
//! socket pairs, waiting for readiness against a deadline (cancellable on weft threads),
//! sending without SIGPIPE, and passing descriptors between processes (`SCM_RIGHTS`).
//!
//! Every descriptor weft creates is close-on-exec; a descriptor meant for a child is made
//! inheritable only in that child.

use crate::status::{Error, Result, WEFT_CLOSED};
use crate::time::Deadline;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// How long a poll waits before re-checking its weft thread's cancel flag.
const CANCEL_SLICE_NS: u64 = 50_000_000;

/// Most descriptors one message may carry (the kernel's `SCM_MAX_FD` is 253).
pub const MAX_FDS_PER_MESSAGE: usize = 253;

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Takes ownership of a descriptor a system call just returned (`-1` gives the OS error).
fn owned(fd: RawFd, call: &str) -> Result<OwnedFd> {
    if fd < 0 {
        return Err(Error::last_os(call));
    }
    // SAFETY: `fd` was just returned by the kernel to this thread and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// A close-on-exec pipe: (read end, write end).
pub fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    pipe_with(0)
}

/// A close-on-exec pipe `(read end, write end)` with the extra `pipe2` `flags` (`O_NONBLOCK`).
pub fn pipe_with(flags: libc::c_int) -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` is a writable array of two ints.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | flags) } != 0 {
        return Err(Error::last_os("pipe2"));
    }
    Ok((owned(fds[0], "pipe2")?, owned(fds[1], "pipe2")?))
}

/// Writes all of `data` to `fd` (a pipe or a socket, blocking or not) without ever raising
/// SIGPIPE: a socket is written with `MSG_NOSIGNAL`; anything else with SIGPIPE blocked for
/// the calling thread, a SIGPIPE the write raised taken back before the mask is restored. A
/// vanished reader gives `WEFT_CLOSED`.
pub fn write_all_nosignal(fd: RawFd, data: &[u8], deadline: Deadline) -> Result<()> {
    match send_all(fd, &[data], deadline) {
        Err(e) if e.errno == libc::ENOTSOCK => {}
        other => return other,
    }
    // SAFETY: the sets are initialised by sigemptyset before use; pthread_sigmask and
    // sigtimedwait only read `pipe_only` and write `old`/`info`.
    let (pipe_only, old) = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGPIPE);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old);
        (set, old)
    };
    let mut done = 0;
    let mut result = Ok(());
    while done < data.len() {
        // SAFETY: writes from the live remainder of `data`.
        let n = unsafe { libc::write(fd, data[done..].as_ptr().cast(), data.len() - done) };
        if n >= 0 {
            done += n as usize;
            continue;
        }
        match errno() {
            libc::EINTR => {}
            libc::EAGAIN => {
                if let Err(e) = wait_ready(fd, libc::POLLOUT, deadline, "timed out writing") {
                    result = Err(e);
                    break;
                }
            }
            libc::EPIPE => {
                result = Err(Error::new(WEFT_CLOSED, "the reader closed its end"));
                // SAFETY: as above; a zero timeout only collects a pending SIGPIPE. Only when
                // it was not blocked before: a SIGPIPE the caller kept pending stays theirs.
                unsafe {
                    if libc::sigismember(&old, libc::SIGPIPE) == 0 {
                        let zero = libc::timespec { tv_sec: 0, tv_nsec: 0 };
                        let mut info: libc::siginfo_t = std::mem::zeroed();
                        libc::sigtimedwait(&pipe_only, &mut info, &zero);
                    }
                }
                break;
            }
            e => {
                result = Err(Error::os("write", e));
                break;
            }
        }
    }
    // SAFETY: restores the mask read above.
    unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut()) };
    result
}

/// A close-on-exec Unix-domain socket pair of `kind` (`SOCK_STREAM`, `SOCK_SEQPACKET`).
pub fn socketpair(kind: libc::c_int) -> Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` is a writable array of two ints.
    if unsafe { libc::socketpair(libc::AF_UNIX, kind | libc::SOCK_CLOEXEC, 0, fds.as_mut_ptr()) } != 0 {
        return Err(Error::last_os("socketpair"));
    }
    Ok((owned(fds[0], "socketpair")?, owned(fds[1], "socketpair")?))
}

/// Duplicates `fd` as a new close-on-exec descriptor.
pub fn dup(fd: RawFd) -> Result<OwnedFd> {
    // SAFETY: F_DUPFD_CLOEXEC has no memory effects; a bad `fd` gives EBADF.
    owned(unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) }, "fcntl(F_DUPFD_CLOEXEC)")
}

/// Sets or clears `O_NONBLOCK`.
pub fn set_nonblocking(fd: RawFd, on: bool) -> Result<()> {
    // SAFETY: F_GETFL/F_SETFL have no memory effects.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFL);
        if flags < 0 {
            return Err(Error::last_os("fcntl(F_GETFL)"));
        }
        let new = if on { flags | libc::O_NONBLOCK } else { flags & !libc::O_NONBLOCK };
        if new != flags && libc::fcntl(fd, libc::F_SETFL, new) < 0 {
            return Err(Error::last_os("fcntl(F_SETFL)"));
        }
    }
    Ok(())
}

/// Sets or clears `FD_CLOEXEC`.
pub fn set_cloexec(fd: RawFd, on: bool) -> Result<()> {
    // SAFETY: F_GETFD/F_SETFD have no memory effects.
    unsafe {
        let flags = libc::fcntl(fd, libc::F_GETFD);
        if flags < 0 {
            return Err(Error::last_os("fcntl(F_GETFD)"));
        }
        let new = if on { flags | libc::FD_CLOEXEC } else { flags & !libc::FD_CLOEXEC };
        if new != flags && libc::fcntl(fd, libc::F_SETFD, new) < 0 {
            return Err(Error::last_os("fcntl(F_SETFD)"));
        }
    }
    Ok(())
}

/// True when `fd` is an open descriptor of this process.
pub fn is_open(fd: RawFd) -> bool {
    // SAFETY: F_GETFD has no memory effects.
    fd >= 0 && unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0
}

/// Waits until one of `fds` reports an event or the deadline passes. Returns the number of
/// ready entries (their `revents` set); `Deadline::Now` polls once and may return 0. A
/// timeout gives `Ok(0)`; a weft thread asked to cancel gets `WEFT_CANCELLED`. EINTR is retried
/// with the time that is left.
pub fn poll(fds: &mut [libc::pollfd], deadline: Deadline) -> Result<usize> {
    let check_cancel = crate::futex::cancellable_thread();
    loop {
        if check_cancel && crate::futex::cancel_requested() {
            return Err(Error::cancelled());
        }
        let (d, _) = if check_cancel { deadline.capped(CANCEL_SLICE_NS) } else { (deadline, false) };
        let ms: libc::c_int = match d.remaining_ns() {
            None => -1,
            // Round up so a wait never ends before its deadline.
            Some(ns) => ns.div_ceil(1_000_000).min(i32::MAX as u64) as libc::c_int,
        };
        // SAFETY: `fds` is a valid, writable slice of pollfd for the duration of the call.
        let r = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if r > 0 {
            return Ok(r as usize);
        }
        if r < 0 && errno() != libc::EINTR {
            return Err(Error::last_os("poll"));
        }
        if deadline.expired() {
            return Ok(0);
        }
    }
}

/// Waits until `fd` reports one of `events` (or an error/hang-up). Returns the `revents`;
/// `WEFT_TIMEOUT` at the deadline, `WEFT_WOULD_BLOCK` for `Deadline::Now` when not ready,
/// `WEFT_CANCELLED` on a cancelled weft thread.
pub fn wait_ready(fd: RawFd, events: libc::c_short, deadline: Deadline, what: &'static str) -> Result<libc::c_short> {
    let mut p = [libc::pollfd { fd, events, revents: 0 }];
    if poll(&mut p, deadline)? == 0 {
        return Err(if deadline == Deadline::Now { Error::would_block(what) } else { Error::timeout(what) });
    }
    Ok(p[0].revents)
}

/// Reads into `buf` once (retrying EINTR). `Ok(0)` is end of file; EAGAIN is returned as an
/// error with errno EAGAIN for non-blocking descriptors.
pub fn read(fd: RawFd, buf: &mut [u8]) -> Result<usize> {
    loop {
        // SAFETY: `buf` is a valid writable region of `buf.len()` bytes.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), buf.len()) };
        if n >= 0 {
            return Ok(n as usize);
        }
        if errno() != libc::EINTR {
            return Err(Error::last_os("read"));
        }
    }
}

/// Writes all of `bufs` to the socket `fd` with `MSG_NOSIGNAL` (a vanished reader gives
/// `WEFT_CLOSED`, never SIGPIPE). Waits for room until `deadline` when the socket is
/// non-blocking or full.
pub fn send_all(fd: RawFd, bufs: &[&[u8]], deadline: Deadline) -> Result<()> {
    let mut iov: Vec<libc::iovec> =
        bufs.iter().filter(|b| !b.is_empty()).map(|b| libc::iovec { iov_base: b.as_ptr() as *mut _, iov_len: b.len() }).collect();
    let mut first = 0;
    while first < iov.len() {
        // SAFETY: a zeroed msghdr is valid; the iovec entries point into `bufs`, alive here.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = iov[first..].as_mut_ptr();
        msg.msg_iovlen = (iov.len() - first).min(1024) as _;
        // SAFETY: `msg` describes valid readable buffers.
        let n = unsafe { libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL) };
        if n < 0 {
            match errno() {
                libc::EINTR => continue,
                libc::EAGAIN => {
                    wait_ready(fd, libc::POLLOUT, deadline, "timed out sending")?;
                    continue;
                }
                libc::EPIPE | libc::ECONNRESET => return Err(Error::new(WEFT_CLOSED, "the peer closed the connection")),
                e => return Err(Error::os("sendmsg", e)),
            }
        }
        let mut n = n as usize;
        while n > 0 && first < iov.len() {
            let e = &mut iov[first];
            if n >= e.iov_len {
                n -= e.iov_len;
                first += 1;
            } else {
                // SAFETY: advancing within the same buffer, `n < iov_len`.
                e.iov_base = unsafe { (e.iov_base as *mut u8).add(n) }.cast();
                e.iov_len -= n;
                n = 0;
            }
        }
    }
    Ok(())
}

/// Sends `data` (at least one byte) with `fds` attached (`SCM_RIGHTS`) on the Unix socket
/// `fd`, then the rest of `data` if the first send was partial. The descriptors stay open here.
pub fn send_with_fds(fd: RawFd, data: &[u8], fds: &[RawFd], deadline: Deadline) -> Result<()> {
    if data.is_empty() {
        return Err(Error::invalid("descriptors travel with at least one byte of data"));
    }
    if fds.len() > MAX_FDS_PER_MESSAGE {
        return Err(Error::invalid(format!("at most {MAX_FDS_PER_MESSAGE} descriptors per message, got {}", fds.len())));
    }
    if fds.is_empty() {
        return send_all(fd, &[data], deadline);
    }
    let space = cmsg_space(fds.len());
    let mut control = vec![0u8; space];
    let mut iov = libc::iovec { iov_base: data.as_ptr() as *mut _, iov_len: data.len() };
    loop {
        // SAFETY: a zeroed msghdr is valid; we fill its pointers with live buffers below.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: `control` has room for one cmsghdr with `fds.len()` ints (cmsg_space), so
        // CMSG_FIRSTHDR is non-null and CMSG_DATA has room for the copy.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of_val(fds) as u32) as _;
            std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(c).cast::<RawFd>(), fds.len());
        }
        // SAFETY: `msg` describes valid buffers.
        let n = unsafe { libc::sendmsg(fd, &msg, libc::MSG_NOSIGNAL) };
        if n < 0 {
            match errno() {
                libc::EINTR => continue,
                libc::EAGAIN => {
                    wait_ready(fd, libc::POLLOUT, deadline, "timed out sending")?;
                    continue;
                }
                libc::EPIPE | libc::ECONNRESET => return Err(Error::new(WEFT_CLOSED, "the peer closed the connection")),
                e => return Err(Error::os("sendmsg(SCM_RIGHTS)", e)),
            }
        }
        let n = n as usize;
        return if n < data.len() { send_all(fd, &[&data[n..]], deadline) } else { Ok(()) };
    }
}

fn cmsg_space(nfds: usize) -> usize {
    // SAFETY: CMSG_SPACE is a pure computation.
    unsafe { libc::CMSG_SPACE((nfds * std::mem::size_of::<RawFd>()) as u32) as usize }
}

/// Receives once from the Unix socket `fd` into `buf`, collecting up to `max_fds` passed
/// descriptors (close-on-exec). `Ok((0, _))` is end of file. Descriptors beyond `max_fds` (and
/// any that arrived truncated) are closed, and the call fails with `WEFT_INVALID_ARGUMENT`.
/// Blocks as the descriptor does (EINTR retried).
pub fn recv_with_fds(fd: RawFd, buf: &mut [u8], max_fds: usize) -> Result<(usize, Vec<OwnedFd>)> {
    let space = cmsg_space(max_fds.clamp(1, MAX_FDS_PER_MESSAGE));
    let mut control = vec![0u8; space];
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    loop {
        // SAFETY: a zeroed msghdr is valid; its pointers are set to live buffers.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: `msg` describes valid writable buffers.
        let n = unsafe { libc::recvmsg(fd, &mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n < 0 {
            if errno() == libc::EINTR {
                continue;
            }
            return Err(Error::last_os("recvmsg"));
        }
        let mut got = Vec::new();
        // SAFETY: the kernel filled `control` up to msg_controllen; the CMSG_* walkers stay
        // within it, and each SCM_RIGHTS payload holds whole ints it transferred to us.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                    let bytes = (*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                    let data = libc::CMSG_DATA(c).cast::<RawFd>();
                    for i in 0..bytes / std::mem::size_of::<RawFd>() {
                        got.push(OwnedFd::from_raw_fd(data.add(i).read_unaligned()));
                    }
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
        }
        if msg.msg_flags & libc::MSG_CTRUNC != 0 || got.len() > max_fds {
            return Err(Error::invalid(format!("more descriptors arrived than the {max_fds} expected; they were closed")));
        }
        return Ok((n as usize, got));
    }
}

/// A pidfd for `pid` (Linux 5.3+).
pub fn pidfd_open(pid: libc::pid_t) -> Result<OwnedFd> {
    // SAFETY: pidfd_open takes a pid and flags and has no memory effects.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    owned(r as RawFd, "pidfd_open")
}

/// Sends `sig` to the process behind `pidfd`. A process that has already exited (and may not
/// even be reaped) is not an error.
pub fn pidfd_send_signal(pidfd: RawFd, sig: libc::c_int) -> Result<()> {
    // SAFETY: no info struct (NULL), flags 0; no memory effects.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_send_signal, pidfd, sig, std::ptr::null::<libc::siginfo_t>(), 0) };
    if r != 0 && errno() != libc::ESRCH {
        return Err(Error::last_os("pidfd_send_signal"));
    }
    Ok(())
}

/// The raw descriptor of an owned one (shorthand).
pub fn raw(fd: &OwnedFd) -> RawFd {
    std::os::fd::AsRawFd::as_raw_fd(fd)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsRawFd;

    fn sigpipe_pending() -> bool {
        // SAFETY: sigpending fills a zeroed set; sigismember reads it.
        unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigpending(&mut set);
            libc::sigismember(&set, libc::SIGPIPE) == 1
        }
    }

    thread_local! {
        static SIGPIPES: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    }

    extern "C" fn count_sigpipe(_: libc::c_int) {
        SIGPIPES.with(|c| c.set(c.get() + 1));
    }

    #[test]
    fn writes_to_a_pipe_without_reader_give_closed_not_sigpipe() {
        // The test runtime ignores SIGPIPE, which would hide one: count deliveries instead. A
        // pipe's SIGPIPE goes to the writing thread, so the count is this thread's.
        // SAFETY: installs a handler that only touches a const-initialised thread-local.
        let before = unsafe {
            let mut act: libc::sigaction = std::mem::zeroed();
            act.sa_sigaction = count_sigpipe as *const () as usize;
            let mut old: libc::sigaction = std::mem::zeroed();
            libc::sigaction(libc::SIGPIPE, &act, &mut old);
            old
        };
        let (r, w) = pipe_with(libc::O_NONBLOCK).unwrap();
        write_all_nosignal(w.as_raw_fd(), b"first", Deadline::Never).unwrap();
        let mut buf = [0u8; 8];
        assert_eq!(read(r.as_raw_fd(), &mut buf).unwrap(), 5);
        // More than a pipe holds: the write waits for room, which a reader thread makes.
        let big = vec![7u8; 1 << 20];
        let reader = std::thread::spawn(move || {
            let mut got = 0;
            let mut chunk = vec![0u8; 65536];
            while got < 1 << 20 {
                match read(r.as_raw_fd(), &mut chunk) {
                    Ok(n) => got += n,
                    Err(_) => {
                        wait_ready(r.as_raw_fd(), libc::POLLIN, Deadline::Never, "").unwrap();
                    }
                }
            }
            drop(r);
            got
        });
        write_all_nosignal(w.as_raw_fd(), &big, Deadline::Never).unwrap();
        assert_eq!(reader.join().unwrap(), 1 << 20);
        let e = write_all_nosignal(w.as_raw_fd(), b"nobody reads", Deadline::Never).unwrap_err();
        assert_eq!(e.code, WEFT_CLOSED);
        assert!(!sigpipe_pending(), "the SIGPIPE the write raised was taken back");
        assert_eq!(SIGPIPES.with(|c| c.get()), 0, "no SIGPIPE reached the thread");
        // SAFETY: puts the runtime's disposition back.
        unsafe { libc::sigaction(libc::SIGPIPE, &before, std::ptr::null_mut()) };
        // Sockets take the MSG_NOSIGNAL path.
        let (a, b) = socketpair(libc::SOCK_STREAM).unwrap();
        write_all_nosignal(a.as_raw_fd(), b"x", Deadline::Never).unwrap();
        drop(b);
        assert_eq!(write_all_nosignal(a.as_raw_fd(), b"y", Deadline::Never).unwrap_err().code, WEFT_CLOSED);
    }

    #[test]
    fn passes_descriptors_and_data() {
        let (a, b) = socketpair(libc::SOCK_STREAM).unwrap();
        let (r, w) = pipe().unwrap();
        send_with_fds(a.as_raw_fd(), b"hello", &[r.as_raw_fd(), w.as_raw_fd()], Deadline::Never).unwrap();
        let mut buf = [0u8; 16];
        let (n, fds) = recv_with_fds(b.as_raw_fd(), &mut buf, 4).unwrap();
        assert_eq!(&buf[..n], b"hello");
        assert_eq!(fds.len(), 2);
        // The received write end feeds the original read end.
        send_all(a.as_raw_fd(), &[b"x"], Deadline::Never).unwrap();
        // SAFETY: writing one byte from a live buffer.
        assert_eq!(unsafe { libc::write(fds[1].as_raw_fd(), b"z".as_ptr().cast(), 1) }, 1);
        let mut one = [0u8; 1];
        assert_eq!(read(r.as_raw_fd(), &mut one).unwrap(), 1);
        assert_eq!(&one, b"z");
    }

    #[test]
    fn too_many_descriptors_are_closed_and_reported() {
        let (a, b) = socketpair(libc::SOCK_STREAM).unwrap();
        let (r, w) = pipe().unwrap();
        send_with_fds(a.as_raw_fd(), b"x", &[r.as_raw_fd(), w.as_raw_fd()], Deadline::Never).unwrap();
        let mut buf = [0u8; 4];
        let e = recv_with_fds(b.as_raw_fd(), &mut buf, 1).unwrap_err();
        assert_eq!(e.code, crate::status::WEFT_INVALID_ARGUMENT);
    }

    #[test]
    fn send_to_a_closed_peer_is_closed_not_sigpipe() {
        let (a, b) = socketpair(libc::SOCK_STREAM).unwrap();
        drop(b);
        let e = send_all(a.as_raw_fd(), &[b"data"], Deadline::Never).unwrap_err();
        assert_eq!(e.code, WEFT_CLOSED);
    }

    #[test]
    fn wait_ready_times_out_and_polls() {
        let (r, w) = pipe().unwrap();
        let e = wait_ready(r.as_raw_fd(), libc::POLLIN, Deadline::Now, "empty").unwrap_err();
        assert_eq!(e.code, crate::status::WEFT_WOULD_BLOCK);
        let e = wait_ready(r.as_raw_fd(), libc::POLLIN, Deadline::from_timeout_ns(5_000_000), "empty").unwrap_err();
        assert_eq!(e.code, crate::status::WEFT_TIMEOUT);
        drop(w);
        let rev = wait_ready(r.as_raw_fd(), libc::POLLIN, Deadline::Never, "eof").unwrap();
        assert_ne!(rev & libc::POLLHUP, 0);
    }
}
