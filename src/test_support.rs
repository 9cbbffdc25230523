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
