//! Helpers for the crate's own unit tests.

/// Waits for child `pid` and returns its wait status; kills it and fails the test when it has
/// not ended within 30 s, so that a child stuck after `fork` cannot hang the test run.
pub(crate) fn wait_child(pid: libc::pid_t) -> i32 {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let mut status = 0;
        // SAFETY: polls our own child without blocking.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            return status;
        }
        assert!(r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::EINTR), "waitpid failed");
        if std::time::Instant::now() > deadline {
            // SAFETY: kills and reaps our own child.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            panic!("child {pid} did not finish within 30 s");
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// A `T` in an anonymous `MAP_SHARED` mapping: a forked child shares it with the parent.
pub(crate) struct SharedMap<T> {
    p: *mut T,
}

impl<T> SharedMap<T> {
    /// Maps a fresh region and moves `value` into it.
    pub(crate) fn new(value: T) -> SharedMap<T> {
        // SAFETY: an anonymous shared mapping of T's size, checked below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                std::mem::size_of::<T>(),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        let p = p as *mut T;
        // SAFETY: fresh, page-aligned and large enough; written before any sharing.
        unsafe { p.write(value) };
        SharedMap { p }
    }

    /// The shared value.
    pub(crate) fn get(&self) -> &T {
        // SAFETY: the mapping lives as long as `self` and holds an initialised T.
        unsafe { &*self.p }
    }

    /// Raw pointer to the value, for fields a test mutates under its own lock.
    pub(crate) fn as_ptr(&self) -> *mut T {
        self.p
    }
}

impl<T> Drop for SharedMap<T> {
    fn drop(&mut self) {
        // SAFETY: unmaps what `new` mapped; no reference outlives `self`. T is not dropped:
        // the tests only map plain atomics and integers.
        unsafe { libc::munmap(self.p as *mut libc::c_void, std::mem::size_of::<T>()) };
    }
}

/// Forks a child that runs `f` and exits 0 when it returns true, 1 when it returns false or
/// panics (a panic never unwinds into the copy of the test harness); returns the pid.
pub(crate) fn fork_child(f: impl FnOnce() -> bool) -> libc::pid_t {
    // SAFETY: the child runs only `f` (which must not depend on locks other threads of the
    // test process may hold) and leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0);
    if pid == 0 {
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(false);
        // SAFETY: ends the child without running the test harness's teardown.
        unsafe { libc::_exit(if ok { 0 } else { 1 }) };
    }
    pid
}

/// xorshift64: a small deterministic pseudo-random sequence for tests (seed non-zero).
pub(crate) struct XorShift(pub(crate) u64);

impl XorShift {
    /// The next number of the sequence.
    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}
