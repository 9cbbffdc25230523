//! Unit tests of commands: start, wait, signals, communicate, run, and who collects children.

use super::*;
use crate::status::{WEFT_NOT_FOUND, WEFT_PERMISSION_DENIED, WEFT_TIMEOUT, WEFT_WOULD_BLOCK};

fn argv(v: &[&str]) -> Vec<CString> {
    v.iter().map(|s| CString::new(*s).unwrap()).collect()
}

fn sh(script: &str) -> Vec<CString> {
    argv(&["sh", "-c", script])
}

fn piped(stdin: Stdio, stdout: Stdio, stderr: Stdio) -> Options {
    Options { stdio: [stdin, stdout, stderr], ..Options::default() }
}

#[test]
fn return_codes() {
    assert_eq!(Child::start(&argv(&["true"]), &Options::default()).unwrap().wait(Deadline::Never).unwrap(), 0);
    assert_eq!(Child::start(&sh("exit 3"), &Options::default()).unwrap().wait(Deadline::Never).unwrap(), 3);
    let c = Child::start(&argv(&["sleep", "100"]), &Options::default()).unwrap();
    assert_eq!(c.wait(Deadline::Now).unwrap_err().code, WEFT_WOULD_BLOCK);
    assert_eq!(c.wait(Deadline::from_timeout_ns(10_000_000)).unwrap_err().code, WEFT_TIMEOUT);
    c.terminate().unwrap();
    assert_eq!(c.wait(Deadline::Never).unwrap(), -libc::SIGTERM);
    assert_eq!(c.returncode(), Some(-libc::SIGTERM));
    c.kill().unwrap(); // after collection: nothing happens
    assert_eq!(c.send_signal(-1).unwrap_err().code, WEFT_INVALID_ARGUMENT);
}

#[test]
fn exec_failures_are_errors_with_errno() {
    let e = Child::start(&argv(&["no-such-program-weft"]), &Options::default()).err().unwrap();
    assert_eq!((e.code, e.errno), (WEFT_NOT_FOUND, libc::ENOENT));
    assert!(e.message.contains("no-such-program-weft"), "{}", e.message);
    let e = Child::start(&argv(&["/etc/passwd"]), &Options::default()).err().unwrap();
    assert_eq!((e.code, e.errno), (WEFT_PERMISSION_DENIED, libc::EACCES));
    let e = Child::start(&[], &Options::default()).err().unwrap();
    assert_eq!(e.code, WEFT_INVALID_ARGUMENT);
}

#[test]
fn two_threads_waiting_both_see_the_return_code() {
    let c = Child::start(&sh("read x; exit 7"), &piped(Stdio::Pipe, Stdio::Inherit, Stdio::Inherit)).unwrap();
    std::thread::scope(|s| {
        let a = s.spawn(|| c.wait(Deadline::Never));
        let b = s.spawn(|| c.wait(Deadline::Never));
        c.close_stdin().unwrap();
        assert_eq!(a.join().unwrap().unwrap(), 7);
        assert_eq!(b.join().unwrap().unwrap(), 7);
    });
    assert_eq!(c.pipe_fd(0), -1);
}

#[test]
fn communicate_both_ways_at_once() {
    let input: Vec<u8> = (0..8u32 << 20).map(|i| (i * 7 + (i >> 13)) as u8).collect();
    let c = Child::start(&sh("tee /dev/stderr"), &piped(Stdio::Pipe, Stdio::Pipe, Stdio::Pipe)).unwrap();
    let out = c.communicate(&input, Deadline::Never).unwrap();
    assert!(out.stdout.as_deref() == Some(&input[..]));
    assert!(out.stderr.as_deref() == Some(&input[..]));
    assert_eq!(c.returncode(), Some(0));
    assert_eq!((c.pipe_fd(0), c.pipe_fd(1), c.pipe_fd(2)), (-1, -1, -1));
}

#[test]
fn communicate_continues_after_a_timeout() {
    let c = Child::start(&argv(&["cat"]), &piped(Stdio::Pipe, Stdio::Pipe, Stdio::Inherit)).unwrap();
    c.send_signal(libc::SIGSTOP).unwrap();
    // SAFETY: waits for our own child to stop (consumes only the stop notification).
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    assert_eq!(unsafe { libc::waitid(libc::P_PID, c.pid() as libc::id_t, &mut info, libc::WSTOPPED) }, 0);
    let input = vec![b'x'; 1 << 20];
    assert_eq!(c.communicate(&input, Deadline::from_timeout_ns(20_000_000)).unwrap_err().code, WEFT_TIMEOUT);
    assert_eq!(c.communicate(b"more", Deadline::Now).unwrap_err().code, WEFT_INVALID_STATE);
    c.send_signal(libc::SIGCONT).unwrap();
    let out = c.communicate(b"", Deadline::Never).unwrap();
    assert_eq!(out.stdout.unwrap().len(), input.len());
    assert_eq!(out.stderr, None);
}

#[test]
fn input_needs_a_stdin_pipe_and_a_closed_reader_is_no_error() {
    let c = Child::start(&argv(&["true"]), &Options::default()).unwrap();
    assert_eq!(c.communicate(b"x", Deadline::Never).unwrap_err().code, WEFT_INVALID_STATE);
    assert_eq!(c.close_stdin().unwrap_err().code, WEFT_INVALID_STATE);
    c.wait(Deadline::Never).unwrap();
    let c = Child::start(&argv(&["true"]), &piped(Stdio::Pipe, Stdio::Inherit, Stdio::Inherit)).unwrap();
    assert_eq!(c.communicate(&vec![0u8; 4 << 20], Deadline::Never).unwrap(), Output::default());
}

#[test]
fn another_waitpid_is_reported_not_guessed() {
    let c = Child::start(&argv(&["true"]), &Options::default()).unwrap();
    let st = crate::test_support::wait_child(c.pid());
    assert!(libc::WIFEXITED(st));
    for _ in 0..2 {
        let e = c.wait(Deadline::Never).unwrap_err();
        assert_eq!((e.code, e.errno), (WEFT_OS_ERROR, libc::ECHILD));
        assert!(e.message.contains("another waitpid"), "{}", e.message);
    }
}

#[test]
fn a_dropped_running_child_is_collected_later() {
    let c = Child::start(&argv(&["sleep", "100"]), &Options::default()).unwrap();
    let pid = c.pid();
    drop(c);
    // SAFETY: signals and observes (without collecting) our own child.
    unsafe {
        assert_eq!(libc::kill(pid, libc::SIGKILL), 0);
        let mut info: libc::siginfo_t = std::mem::zeroed();
        // Waits for the death without collecting it; ECHILD means a child started by a test
        // running in parallel already collected the orphan (what this test checks for).
        let r = libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, libc::WEXITED | libc::WNOWAIT);
        assert!(r == 0 || std::io::Error::last_os_error().raw_os_error() == Some(libc::ECHILD));
    }
    drop(Child::start(&argv(&["true"]), &Options::default()).unwrap());
    // SAFETY: as above.
    let r = unsafe {
        let mut info: libc::siginfo_t = std::mem::zeroed();
        libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, libc::WEXITED | libc::WNOHANG | libc::WNOWAIT)
    };
    assert_eq!((r, std::io::Error::last_os_error().raw_os_error()), (-1, Some(libc::ECHILD)), "the orphan was collected");
}

#[test]
fn run_captures_checks_and_kills_at_the_deadline() {
    let opts = Options { env: Some(argv(&["A=1", "B=two"])), cwd: Some(CString::new("/").unwrap()), ..Options::default() };
    let done = run(&sh("echo $A$B; pwd -P; echo oops >&2; exit 4"), &opts, None, [true, true], Deadline::Never).unwrap();
    assert_eq!(done.returncode, 4);
    assert_eq!(done.output.stdout.as_deref(), Some(&b"1two\n/\n"[..]));
    assert_eq!(done.output.stderr.as_deref(), Some(&b"oops\n"[..]));
    let e = check_returncode("sh", done.returncode).unwrap_err();
    assert_eq!(e.code, WEFT_TASK_FAILED);
    assert!(e.message.contains("'sh'") && e.message.contains('4'), "{}", e.message);
    assert!(check_returncode("x", -9).unwrap_err().message.contains("signal 9"));

    let done = run(&argv(&["cat"]), &Options::default(), Some(b"hi"), [true, false], Deadline::Never).unwrap();
    assert_eq!((done.returncode, done.output.stdout.as_deref(), done.output.stderr), (0, Some(&b"hi"[..]), None));

    let e = run(&argv(&["sleep", "100"]), &Options::default(), None, [false, false], Deadline::from_timeout_ns(10_000_000));
    assert_eq!(e.unwrap_err().code, WEFT_TIMEOUT);

    let null_in = Options { stdio: [Stdio::Null, Stdio::Inherit, Stdio::Inherit], ..Options::default() };
    assert_eq!(run(&argv(&["cat"]), &null_in, Some(b"x"), [false, false], Deadline::Never).unwrap_err().code, WEFT_INVALID_ARGUMENT);
}

#[test]
fn stdio_null_fd_and_merged() {
    let (r, w) = crate::fd::pipe().unwrap();
    let opts = piped(Stdio::Null, Stdio::Fd(w.as_raw_fd()), Stdio::Stdout);
    let c = Child::start(&sh("cat; echo out; echo err >&2"), &opts).unwrap();
    assert_eq!(c.wait(Deadline::Never).unwrap(), 0);
    drop(w);
    let mut buf = [0u8; 64];
    let n = crate::fd::read(r.as_raw_fd(), &mut buf).unwrap();
    assert_eq!(&buf[..n], b"out\nerr\n");
}
