//! The socket calls under connections: receiving with a deadline (one blocking system call
//! when there is no deadline to honour), collecting passed descriptors, socket options and
//! random bytes.

use crate::fd;
use crate::status::{Error, Result};
use crate::time::Deadline;
use std::collections::VecDeque;
use std::mem::MaybeUninit;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// Descriptors waiting to be claimed by descriptor messages, in arrival order. `None` stands
/// for a descriptor the kernel could not deliver (`MSG_CTRUNC`, e.g. at the descriptor limit).
pub(super) type PassedFds = VecDeque<Option<OwnedFd>>;

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Runs one receive `call` (given the `MSG_*` flags to use) until it transfers data, reports
/// end of file (`Ok(0)`), or fails. Without a deadline on a thread that cannot be cancelled
/// the call blocks in the kernel (one system call per message); otherwise it is non-blocking
/// and waits for readiness with `fd::wait_ready`, giving `WEFT_WOULD_BLOCK`, `WEFT_TIMEOUT` or
/// `WEFT_CANCELLED`. A connection reset by the peer counts as end of file.
fn receive(fd: RawFd, deadline: Deadline, wait_all: bool, mut call: impl FnMut(libc::c_int) -> isize) -> Result<usize> {
    let blocking = deadline == Deadline::Never && !crate::futex::cancellable_thread();
    loop {
        let flags = match (blocking, wait_all) {
            (true, true) => libc::MSG_WAITALL,
            (true, false) => 0,
            (false, _) => libc::MSG_DONTWAIT,
        };
        let n = call(flags);
        if n >= 0 {
            return Ok(n as usize);
        }
        match errno() {
            libc::EINTR => {}
            libc::EAGAIN => {
                fd::wait_ready(fd, libc::POLLIN, deadline, "no complete message arrived in time")?;
            }
            libc::ECONNRESET => return Ok(0),
            e => return Err(Error::os("recvmsg", e)),
        }
    }
}

/// Receives once into `dst`, appending any descriptors that came along to `fds`. Used for
/// every read that may reach a descriptor message (the kernel ends such a read right after the
/// descriptors' bytes, so each read carries the descriptors of at most one message).
pub(super) fn recv_buffered(fd: RawFd, dst: &mut [u8], deadline: Deadline, fds: &mut PassedFds) -> Result<usize> {
    // Room for a few descriptors; 8-byte elements keep the cmsghdr aligned.
    let mut control = [0u64; 8];
    receive(fd, deadline, false, |flags| {
        let mut iov = libc::iovec { iov_base: dst.as_mut_ptr().cast(), iov_len: dst.len() };
        // SAFETY: a zeroed msghdr is valid; its pointers are set to live buffers below.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = std::mem::size_of_val(&control) as _;
        // SAFETY: `msg` describes the writable `dst` and `control` buffers.
        let n = unsafe { libc::recvmsg(fd, &mut msg, flags | libc::MSG_CMSG_CLOEXEC) };
        if n >= 0 {
            collect_fds(&msg, fds);
        }
        n
    })
}

/// Moves the descriptors of a received `msg` into `fds`.
fn collect_fds(msg: &libc::msghdr, fds: &mut PassedFds) {
    let before = fds.len();
    // SAFETY: the kernel filled the control buffer up to msg_controllen; the CMSG_* walkers stay
    // within it, and each SCM_RIGHTS payload holds whole descriptors transferred to us.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let bytes = (*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                let data = libc::CMSG_DATA(c).cast::<RawFd>();
                for i in 0..bytes / std::mem::size_of::<RawFd>() {
                    fds.push_back(Some(OwnedFd::from_raw_fd(data.add(i).read_unaligned())));
                }
            }
            c = libc::CMSG_NXTHDR(msg, c);
        }
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 && fds.len() == before {
        fds.push_back(None);
    }
}

/// Receives once straight into `dst` (the rest of a large message). Blocking receives wait for
/// all of `dst` (`MSG_WAITALL`) to save system calls.
pub(super) fn recv_direct(fd: RawFd, dst: &mut [MaybeUninit<u8>], deadline: Deadline) -> Result<usize> {
    receive(fd, deadline, true, |flags| {
        // SAFETY: `dst` is writable for its length; the kernel only stores initialised bytes.
        unsafe { libc::recv(fd, dst.as_mut_ptr().cast(), dst.len(), flags) }
    })
}

/// Views initialised bytes as possibly-uninitialised ones, for [`recv_direct`].
pub(super) fn as_uninit(bytes: &mut [u8]) -> &mut [MaybeUninit<u8>] {
    // SAFETY: same layout; the only writer through the result (the kernel via recv_direct)
    // stores initialised bytes, so `bytes` stays initialised.
    unsafe { &mut *(bytes as *mut [u8] as *mut [MaybeUninit<u8>]) }
}

/// `shutdown(2)` of one or both directions.
pub(super) fn shutdown(fd: RawFd, how: libc::c_int) -> Result<()> {
    // SAFETY: no memory effects.
    if unsafe { libc::shutdown(fd, how) } != 0 {
        return Err(Error::last_os("shutdown"));
    }
    Ok(())
}

fn getsockopt_int(fd: RawFd, level: libc::c_int, name: libc::c_int, call: &str) -> Result<libc::c_int> {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `v` and `len` are writable and sized for an int option.
    if unsafe { libc::getsockopt(fd, level, name, (&mut v as *mut libc::c_int).cast(), &mut len) } != 0 {
        return Err(Error::last_os(call));
    }
    Ok(v)
}

/// Sets an int socket option.
pub(super) fn setsockopt_int(fd: RawFd, level: libc::c_int, name: libc::c_int, v: libc::c_int, call: &str) -> Result<()> {
    // SAFETY: passes a readable int of the right size.
    let r = unsafe {
        libc::setsockopt(fd, level, name, (&v as *const libc::c_int).cast(), std::mem::size_of::<libc::c_int>() as libc::socklen_t)
    };
    if r != 0 {
        return Err(Error::last_os(call));
    }
    Ok(())
}

/// The socket's address family and type (`AF_UNIX`, `SOCK_STREAM`); an error for a descriptor
/// that is not a socket.
pub(super) fn socket_kind(fd: RawFd) -> Result<(libc::c_int, libc::c_int)> {
    let domain = getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_DOMAIN, "getsockopt(SO_DOMAIN)")?;
    let kind = getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_TYPE, "getsockopt(SO_TYPE)")?;
    Ok((domain, kind))
}

/// True for a listening socket (`SO_ACCEPTCONN`), which cannot carry messages.
pub(super) fn is_listening(fd: RawFd) -> Result<bool> {
    Ok(getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_ACCEPTCONN, "getsockopt(SO_ACCEPTCONN)")? != 0)
}

/// The pending error of a socket (`SO_ERROR`), for a non-blocking connect.
pub(super) fn socket_error(fd: RawFd) -> Result<libc::c_int> {
    getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_ERROR, "getsockopt(SO_ERROR)")
}

/// Fills `buf` from the kernel's random source (`getrandom(2)`).
pub(super) fn random_bytes(buf: &mut [u8]) -> Result<()> {
    let mut done = 0;
    while done < buf.len() {
        // SAFETY: writes at most the remaining length into `buf`.
        let n = unsafe { libc::getrandom(buf[done..].as_mut_ptr().cast(), buf.len() - done, 0) };
        if n < 0 {
            if errno() == libc::EINTR {
                continue;
            }
            return Err(Error::last_os("getrandom"));
        }
        done += n as usize;
    }
    Ok(())
}
