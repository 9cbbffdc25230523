//! The raw system calls the benches use for their peers and their child processes.

#![allow(dead_code)]

/// Forks a child that runs `body` and exits 0 when it returns true, 1 otherwise; returns the
/// pid. The benches fork while single-threaded (or only use plain memory and weft in the child).
pub fn fork_child(body: impl FnOnce() -> bool) -> libc::pid_t {
    // SAFETY: the child runs `body` and ends with _exit, never returning into the bench.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        let ok = body();
        // SAFETY: ending the child without running the parent's exit handlers.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    pid
}

/// Waits for child `pid`, which must have exited 0.
pub fn reap(pid: libc::pid_t) {
    let mut status = 0;
    // SAFETY: waiting for our own child.
    assert_eq!(unsafe { libc::waitpid(pid, &mut status, 0) }, pid);
    assert_eq!(status, 0, "bench child failed");
}

/// Reads exactly `buf.len()` bytes; false on end of file or an error.
#[must_use]
pub fn read_exact(fd: i32, buf: &mut [u8]) -> bool {
    let mut got = 0;
    while got < buf.len() {
        // SAFETY: reading into the unfilled part of `buf`.
        let r = unsafe { libc::read(fd, buf[got..].as_mut_ptr().cast(), buf.len() - got) };
        if r <= 0 {
            return false;
        }
        got += r as usize;
    }
    true
}

/// Writes all of `buf`; panics on an error.
pub fn write_all(fd: i32, buf: &[u8]) {
    let mut put = 0;
    while put < buf.len() {
        // SAFETY: writing from the unsent part of `buf`.
        let r = unsafe { libc::write(fd, buf[put..].as_ptr().cast(), buf.len() - put) };
        assert!(r > 0, "write failed");
        put += r as usize;
    }
}

/// Closes each distinct descriptor of `fds` once.
pub fn close_all(fds: &[i32]) {
    let mut v = fds.to_vec();
    v.sort();
    v.dedup();
    for f in v {
        // SAFETY: closing descriptors the bench opened.
        unsafe { libc::close(f) };
    }
}
