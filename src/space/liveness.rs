//! Liveness of processes and threads, immune to PID/TID reuse.
//!
//! A shared-memory space records who uses it (participants) and who holds its locks as
//! [`Identity`] values: a process or thread id together with the start time the kernel gives
//! that task (field 22 of `/proc/<id>/stat`, in clock ticks since boot). An id alone is not
//! enough: once a process dies and is reaped, the kernel may hand its pid to an unrelated new
//! process. The start time tells them apart, so [`is_alive`] never mistakes a newcomer for the
//! task recorded earlier.
//!
//! # Guarantees and limits
//!
//! - **Never a false "dead" for a live task** that this process can see in `/proc`: a task is
//!   reported dead only when its `/proc/<id>/stat` is gone, shows another start time, or shows
//!   it as a zombie (`Z`) or dead (`X`). When the file cannot be read for another reason (out of
//!   descriptors, out of memory), the answer is "alive": a sweep waits rather than deleting what
//!   a live process uses.
//! - **Death is eventually reported, not instantly.** A process killed with `SIGKILL` is alive
//!   until the kernel delivers the signal; a thread whose `join` just returned can still show as
//!   running for a moment (the kernel wakes joiners before it finishes tearing the thread down).
//!   Callers that wait for a death must poll.
//! - **Reuse within one clock tick** (10 ms at the usual `CLK_TCK` of 100) would go unnoticed;
//!   that needs the pid counter to wrap around within 10 ms, which the kernel cannot do.
//! - **Same pid namespace and visibility.** Ids are those of the pid namespace of the `/proc`
//!   mount. Processes in different pid namespaces, or `/proc` mounted with `hidepid=` for
//!   processes of other users, cannot judge each other. Named spaces are owner-only, so their
//!   participants run as one user; they must also share a pid namespace.
//! - **A thread-group leader that exited while its other threads run** shows as a zombie: it is
//!   dead as a thread ([`is_alive`]) but its process is alive ([`is_process_alive`]). Use
//!   [`is_process_alive`] for process participants and [`is_alive`] for lock holders.
//!
//! Linux-only (it reads `/proc`). Nothing here allocates: paths and file contents live in stack
//! buffers.

use crate::status::{Error, Result, WEFT_CORRUPTED};
use std::cell::Cell;

/// A process or thread, identified so that a later task reusing the same id is a different
/// `Identity`.
///
/// Plain data (`#[repr(C)]`, no pointers), so it can be stored in shared memory and compared by
/// any process. Two identities are the same task exactly when both fields are equal.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Identity {
    /// Process id (for a process) or thread id (for a thread), as in `/proc/<id>`.
    pub id: u32,
    /// Start time of the task: field 22 of `/proc/<id>/stat`, clock ticks since boot.
    pub start_time: u64,
}

/// What `/proc/<id>/stat` says about one task.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stat {
    /// Field 3: `R`, `S`, `D`, `T`, `t`, `Z`, `X`, ...
    state: u8,
    /// Field 20: threads in the task's thread group (0 once the group is being released).
    num_threads: i64,
    /// Field 22: start time in clock ticks since boot.
    start_time: u64,
}

impl Stat {
    /// The task itself has exited (zombie or being reaped).
    fn exited(&self) -> bool {
        matches!(self.state, b'Z' | b'X' | b'x')
    }
}

/// Size of the stack buffer for `/proc/<id>/stat`. The fields up to 22 take at most about 500
/// bytes (a comm of up to 64 bytes, 20 numbers of up to 20 digits).
const STAT_BUF: usize = 1024;

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

/// Writes `"/proc/<id>/stat\0"` into `buf`, returning the length including the NUL.
fn stat_path(id: u32, buf: &mut [u8; 32]) -> usize {
    let mut digits = [0u8; 10];
    let mut n = 0;
    let mut v = id;
    loop {
        digits[n] = b'0' + (v % 10) as u8;
        n += 1;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    let mut len = 0;
    let mut put = |b: u8| {
        buf[len] = b;
        len += 1;
    };
    b"/proc/".iter().for_each(|&b| put(b));
    digits[..n].iter().rev().for_each(|&b| put(b));
    b"/stat\0".iter().for_each(|&b| put(b));
    len
}

/// Parses the contents of `/proc/<id>/stat`. The comm field (2) is in parentheses and may
/// contain spaces and parentheses itself, so the fixed fields start after the LAST `)`.
fn parse_stat(id: u32, data: &[u8]) -> Result<Stat> {
    let bad = |what: &str| {
        Error::new(WEFT_CORRUPTED, format!("cannot parse /proc/{id}/stat: {what}"))
    };
    let open = data.iter().position(|&b| b == b'(').ok_or_else(|| bad("no '('"))?;
    let close = data.iter().rposition(|&b| b == b')').ok_or_else(|| bad("no ')'"))?;
    if close < open {
        return Err(bad("')' before '('"));
    }
    let pid = std::str::from_utf8(&data[..open]).ok().map(str::trim).and_then(|s| s.parse::<u32>().ok());
    if pid != Some(id) {
        return Err(bad("pid field does not match"));
    }
    // Fields 3.. are separated by spaces; the last field we need (22) must be followed by a
    // separator inside `data`, or it might have been cut off by the buffer's end.
    let rest = &data[close + 1..];
    let (mut state, mut num_threads, mut start_time) = (None, None, None);
    let mut terminated = false;
    let mut pos = 0;
    for field in 3..=22 {
        while rest.get(pos) == Some(&b' ') {
            pos += 1;
        }
        let start = pos;
        while rest.get(pos).is_some_and(|b| !b.is_ascii_whitespace()) {
            pos += 1;
        }
        let f = &rest[start..pos];
        let text = std::str::from_utf8(f).ok();
        match field {
            3 if f.len() == 1 => state = Some(f[0]),
            20 => num_threads = text.and_then(|s| s.parse::<i64>().ok()),
            22 => {
                start_time = text.and_then(|s| s.parse::<u64>().ok());
                terminated = pos < rest.len();
            }
            _ => {}
        }
    }
    match (state, num_threads, start_time) {
        (Some(state), Some(num_threads), Some(start_time)) if terminated => {
            Ok(Stat { state, num_threads, start_time })
        }
        _ => Err(bad("missing or malformed fields 3, 20 or 22")),
    }
}

/// Reads `/proc/<id>/stat`: `Ok(None)` when no such task exists.
fn read_stat(id: u32) -> Result<Option<Stat>> {
    let mut path = [0u8; 32];
    stat_path(id, &mut path);
    let fd = loop {
        // SAFETY: `path` is NUL-terminated (stat_path writes the NUL); no other memory passed.
        let fd = unsafe { libc::open(path.as_ptr().cast(), libc::O_RDONLY | libc::O_CLOEXEC) };
        if fd >= 0 {
            break fd;
        }
        match errno() {
            libc::EINTR => continue,
            libc::ENOENT | libc::ESRCH => return Ok(None),
            e => return Err(Error::os("open /proc/<id>/stat", e)),
        }
    };
    let mut buf = [0u8; STAT_BUF];
    let mut len = 0;
    let result = loop {
        if len == buf.len() {
            break Ok(());
        }
        // SAFETY: reads into the unused tail of `buf`, which is writable for that many bytes;
        // `fd` is open until the close below.
        let n = unsafe { libc::read(fd, buf[len..].as_mut_ptr().cast(), buf.len() - len) };
        if n > 0 {
            len += n as usize;
        } else if n == 0 {
            break Ok(());
        } else {
            match errno() {
                libc::EINTR => continue,
                e => break Err(e),
            }
        }
    };
    // SAFETY: `fd` was opened above and is closed exactly once.
    unsafe { libc::close(fd) };
    match result {
        // The task was reaped between open and read.
        Err(libc::ESRCH) | Err(libc::ENOENT) => Ok(None),
        Err(e) => Err(Error::os("read /proc/<id>/stat", e)),
        Ok(()) if len == 0 => Ok(None),
        Ok(()) => parse_stat(id, &buf[..len]).map(Some),
    }
}

fn getpid() -> u32 {
    // SAFETY: getpid has no preconditions.
    unsafe { libc::getpid() as u32 }
}

fn gettid() -> u32 {
    // SAFETY: the gettid syscall takes no arguments and cannot fail.
    unsafe { libc::syscall(libc::SYS_gettid) as u32 }
}

/// Identity of a task that must exist (the caller itself).
fn own(id: u32, what: &str) -> Result<Identity> {
    match read_stat(id)? {
        Some(st) => Ok(Identity { id, start_time: st.start_time }),
        None => Err(Error::new(
            crate::status::WEFT_UNSUPPORTED,
            format!("/proc/{id}/stat of the current {what} is missing (is /proc mounted?)"),
        )),
    }
}

/// Per-thread cache: (fork generation when computed, process identity, thread identity).
/// Keyed by the fork generation, which a `pthread_atfork` child handler bumps, so that the copy
/// a forked child inherits is recomputed (the child has a new pid and tid) without a `getpid`
/// system call on every lookup.
#[derive(Clone, Copy)]
struct Cached {
    generation: u32,
    process: Option<Identity>,
    thread: Option<Identity>,
}

thread_local! {
    static CACHE: Cell<Cached> = const { Cell::new(Cached { generation: 0, process: None, thread: None }) };
}

/// Bumped in every forked child.
static FORK_GENERATION: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);

extern "C" fn after_fork_child() {
    FORK_GENERATION.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// Installs the fork handler when the library is loaded: registering it lazily could leave a
/// forked child stuck on a half-run `Once` copied from another thread.
#[used]
#[link_section = ".init_array"]
static INSTALL_AT_LOAD: extern "C" fn() = install_at_load;

extern "C" fn install_at_load() {
    // SAFETY: registers a plain extern "C" function that lives as long as the library.
    unsafe { libc::pthread_atfork(None, None, Some(after_fork_child)) };
}

/// The current fork generation (bit 31 set, so a zeroed cache never matches): it changes in
/// a forked child, so a value recorded in the parent tells the child that the record is not
/// its own.
pub(crate) fn generation() -> u32 {
    FORK_GENERATION.load(std::sync::atomic::Ordering::Relaxed) | 1 << 31
}

/// Looks up (or computes and caches) one of the calling thread's identities.
fn cached(
    get: fn(&Cached) -> Option<Identity>,
    set: fn(&mut Cached, Identity),
    compute: impl FnOnce() -> Result<Identity>,
) -> Result<Identity> {
    let gen = generation();
    // try_with: during thread teardown the slot may be gone; then compute without caching.
    let hit = CACHE.try_with(|c| {
        let v = c.get();
        if v.generation == gen { get(&v) } else { None }
    });
    if let Ok(Some(who)) = hit {
        return Ok(who);
    }
    let who = compute()?;
    let _ = CACHE.try_with(|c| {
        let mut v = c.get();
        if v.generation != gen {
            v = Cached { generation: gen, process: None, thread: None };
        }
        set(&mut v, who);
        c.set(v);
    });
    Ok(who)
}

/// The [`Identity`] of the calling process (its pid and start time).
///
/// Thread-safe. Cached per thread after the first call and recomputed in a forked child.
///
/// # Errors
/// `WEFT_UNSUPPORTED` when `/proc` is not mounted; `WEFT_OS_ERROR` when `/proc/<pid>/stat`
/// cannot be read (for instance out of file descriptors); `WEFT_CORRUPTED` when it cannot be
/// parsed.
pub fn current_process() -> Result<Identity> {
    cached(|c| c.process, |c, w| c.process = Some(w), || own(getpid(), "process"))
}

/// The [`Identity`] of the calling thread (its kernel thread id, from `gettid`, and its start
/// time). For the main thread it equals [`current_process`].
///
/// Thread-safe. Cached per thread after the first call and recomputed in a forked child.
///
/// # Errors
/// As [`current_process`].
pub fn current_thread() -> Result<Identity> {
    cached(|c| c.thread, |c, w| c.thread = Some(w), || own(gettid(), "thread"))
}

/// The current [`Identity`] of the process or thread `id`, read from `/proc/<id>/stat` (which
/// exists for every thread id, not only for thread-group leaders); `Ok(None)` when no task has
/// that id. A zombie still has an identity (check it with [`is_alive`]).
///
/// Thread-safe; never cached (each call reads `/proc`).
///
/// # Errors
/// `WEFT_OS_ERROR` when the file exists but cannot be opened or read for another reason than
/// the task's absence; `WEFT_CORRUPTED` when its contents cannot be parsed.
pub fn of(id: u32) -> Result<Option<Identity>> {
    Ok(read_stat(id)?.map(|st| Identity { id, start_time: st.start_time }))
}

/// Whether the task `who` (a thread, or a process's main thread) still runs: `false` when
/// `/proc/<id>/stat` is gone, when it shows another start time (the id was reused), or when the
/// task is a zombie (`Z`) or dead (`X`); `true` otherwise — including when `/proc` cannot be
/// read for another reason (out of descriptors), so that nothing live is ever swept.
///
/// Use it for lock holders (thread identities). For process participants use
/// [`is_process_alive`], which also covers a process whose main thread exited before its other
/// threads. Death is reported eventually, not at the instant of death (see the module docs).
///
/// Thread-safe; does not allocate; reads `/proc` on every call.
pub fn is_alive(who: &Identity) -> bool {
    match read_stat(who.id) {
        Ok(Some(st)) => st.start_time == who.start_time && !st.exited(),
        Ok(None) => false,
        Err(_) => true,
    }
}

/// Whether the process `who` (an identity from [`current_process`]) still runs: like
/// [`is_alive`], except that a main thread that exited while other threads of its process still
/// run (a zombie leader of a thread group with more than one thread) counts as alive.
///
/// Thread-safe; does not allocate; reads `/proc` on every call.
pub fn is_process_alive(who: &Identity) -> bool {
    match read_stat(who.id) {
        Ok(Some(st)) => st.start_time == who.start_time && (!st.exited() || st.num_threads > 1),
        Ok(None) => false,
        Err(_) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::{Duration, Instant};

    /// Polls `cond` for up to 10 s.
    fn eventually(mut cond: impl FnMut() -> bool) -> bool {
        let end = Instant::now() + Duration::from_secs(10);
        while Instant::now() < end {
            if cond() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        cond()
    }

    fn fork_pausing_child() -> u32 {
        // SAFETY: the child only calls pause() (async-signal-safe) until it is killed.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            loop {
                // SAFETY: async-signal-safe, no arguments.
                unsafe { libc::pause() };
            }
        }
        pid as u32
    }

    fn kill_and_reap(pid: u32) {
        // SAFETY: signals and reaps our own child.
        unsafe {
            libc::kill(pid as i32, libc::SIGKILL);
            libc::waitpid(pid as i32, std::ptr::null_mut(), 0);
        }
    }

    #[test]
    fn path_and_parse() {
        let mut b = [0u8; 32];
        let n = stat_path(0, &mut b);
        assert_eq!(&b[..n], b"/proc/0/stat\0");
        let n = stat_path(u32::MAX, &mut b);
        assert_eq!(&b[..n], b"/proc/4294967295/stat\0");

        let line = b"42 (a) (b ) c) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 3 18 123456 20 21\n";
        let st = parse_stat(42, line).unwrap();
        assert_eq!(st, Stat { state: b'S', num_threads: 3, start_time: 123456 });
        assert_eq!(parse_stat(43, line).unwrap_err().code, WEFT_CORRUPTED);
        // Field 22 cut off by the end of the buffer: refused, not misread.
        let cut = b"42 (x) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 3 18 1234";
        assert_eq!(parse_stat(42, cut).unwrap_err().code, WEFT_CORRUPTED);
        assert!(parse_stat(42, b"42 x S 1").is_err());
        assert!(parse_stat(42, b"").is_err());
    }

    #[test]
    fn current_process_and_thread_are_alive() {
        let p = current_process().unwrap();
        assert_eq!(p.id, getpid());
        assert_eq!(of(p.id).unwrap(), Some(p));
        assert!(is_alive(&p) && is_process_alive(&p));
        let t = current_thread().unwrap();
        assert_eq!(t.id, gettid());
        assert_eq!(current_thread().unwrap(), t); // cached, same answer
        assert!(is_alive(&t));
        assert!(t.start_time >= p.start_time);
    }

    #[test]
    fn missing_id_is_dead() {
        assert_eq!(of(0).unwrap(), None);
        assert_eq!(of(u32::MAX).unwrap(), None);
        assert!(!is_alive(&Identity { id: u32::MAX, start_time: 0 }));
        assert!(!is_process_alive(&Identity { id: 0, start_time: 0 }));
    }

    #[test]
    fn reused_id_is_dead() {
        let p = current_process().unwrap();
        let fake = Identity { id: p.id, start_time: p.start_time + 1 };
        assert!(!is_alive(&fake) && !is_process_alive(&fake));
        let fake = Identity { id: p.id, start_time: p.start_time.wrapping_sub(1) };
        assert!(!is_alive(&fake));
    }

    #[test]
    fn killed_child_is_dead_as_zombie_and_after_reaping() {
        let pid = fork_pausing_child();
        let child = of(pid).unwrap().expect("child exists");
        assert!(is_alive(&child) && is_process_alive(&child));
        // SAFETY: signals our own child.
        assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGKILL) }, 0);
        // Not yet reaped: the task is a zombie and must be reported dead.
        assert!(eventually(|| !is_alive(&child)));
        assert_eq!(read_stat(pid).unwrap().map(|s| s.state), Some(b'Z'));
        assert!(!is_process_alive(&child));
        assert_eq!(of(pid).unwrap(), Some(child)); // the zombie keeps its identity
        let mut status = 0;
        // SAFETY: reaps our own child.
        assert_eq!(unsafe { libc::waitpid(pid as i32, &mut status, 0) }, pid as i32);
        assert!(libc::WIFSIGNALED(status) && libc::WTERMSIG(status) == libc::SIGKILL);
        assert!(!is_alive(&child) && !is_process_alive(&child));
    }

    #[test]
    fn forked_child_has_its_own_identity() {
        let parent = (current_process().unwrap(), current_thread().unwrap());
        let mut fds = [0i32; 2];
        // SAFETY: `fds` has room for the two descriptors.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: the child computes its identities, writes them to the pipe and _exit()s.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            let ok = match (current_process(), current_thread()) {
                (Ok(p), Ok(t)) => {
                    p.id == getpid() && t.id == gettid() && p != parent.0 && t != parent.1 && p == t
                }
                _ => false,
            };
            let b = [ok as u8];
            // SAFETY: writes one byte from `b`, then leaves without running the harness.
            unsafe {
                libc::write(fds[1], b.as_ptr().cast(), 1);
                libc::_exit(0);
            }
        }
        let mut b = [0u8; 1];
        // SAFETY: reads one byte into `b`; closes our pipe ends and reaps our own child.
        unsafe {
            libc::close(fds[1]);
            assert_eq!(libc::read(fds[0], b.as_mut_ptr().cast(), 1), 1);
            libc::close(fds[0]);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
        assert_eq!(b[0], 1, "the child's cached identities were not recomputed");
    }

    #[test]
    fn thread_alive_while_running_dead_after_join() {
        let (tx, rx) = mpsc::channel();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let h = std::thread::spawn(move || {
            tx.send(current_thread().unwrap()).unwrap();
            stop_rx.recv().unwrap();
        });
        let t = rx.recv().unwrap();
        assert_ne!(t, current_thread().unwrap());
        assert_eq!(of(t.id).unwrap(), Some(t));
        assert!(is_alive(&t));
        stop_tx.send(()).unwrap();
        h.join().unwrap();
        // The kernel wakes joiners slightly before the thread is gone: poll.
        assert!(eventually(|| !is_alive(&t)));
    }

    #[test]
    fn weird_comm_parses() {
        let (tx, rx) = mpsc::channel();
        let (stop_tx, stop_rx) = mpsc::channel::<()>();
        let h = std::thread::spawn(move || {
            // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes.
            let rc = unsafe { libc::prctl(libc::PR_SET_NAME, c"a) b (c) ".as_ptr()) };
            assert_eq!(rc, 0);
            tx.send(gettid()).unwrap();
            stop_rx.recv().unwrap();
        });
        let tid = rx.recv().unwrap();
        let mut path = [0u8; 32];
        let n = stat_path(tid, &mut path);
        let p = std::str::from_utf8(&path[..n - 1]).unwrap();
        let comm = std::fs::read_to_string(p.replace("/stat", "/comm")).unwrap();
        assert_eq!(comm, "a) b (c) \n");
        let first = of(tid).unwrap().expect("thread exists");
        let second = of(tid).unwrap().expect("thread exists");
        assert_eq!(first, second);
        assert!(first.start_time > 0);
        let st = read_stat(tid).unwrap().unwrap();
        assert!(matches!(st.state, b'S' | b'R'), "state {}", st.state as char);
        assert!(st.num_threads >= 2);
        assert!(is_alive(&first));
        stop_tx.send(()).unwrap();
        h.join().unwrap();
        assert!(eventually(|| !is_alive(&first)));
    }

    extern "C" fn pause_forever(_: *mut libc::c_void) -> *mut libc::c_void {
        loop {
            // SAFETY: no arguments; just waits for a signal.
            unsafe { libc::pause() };
        }
    }

    #[test]
    fn process_whose_main_thread_exited_is_alive() {
        let mut fds = [0i32; 2];
        // SAFETY: `fds` has room for the two descriptors.
        assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
        // SAFETY: the child starts one raw pthread that pauses, tells the parent, then ends only
        // its own (main) thread with the exit syscall: no unwinding, no harness teardown.
        let pid = unsafe { libc::fork() };
        assert!(pid >= 0);
        if pid == 0 {
            // SAFETY: see above; `t` is written by pthread_create.
            unsafe {
                let mut t: libc::pthread_t = 0;
                let rc = libc::pthread_create(&mut t, std::ptr::null(), pause_forever, std::ptr::null_mut());
                let b = [(rc == 0) as u8];
                libc::write(fds[1], b.as_ptr().cast(), 1);
                libc::syscall(libc::SYS_exit, 0);
                libc::_exit(1);
            }
        }
        let mut b = [0u8; 1];
        // SAFETY: closes our write end and reads one byte into `b`.
        unsafe {
            libc::close(fds[1]);
            assert_eq!(libc::read(fds[0], b.as_mut_ptr().cast(), 1), 1);
            libc::close(fds[0]);
        }
        let pid = pid as u32;
        let child = of(pid).unwrap().expect("child exists");
        if b[0] != 1 {
            kill_and_reap(pid);
            panic!("pthread_create failed in the child");
        }
        // The main thread becomes a zombie; the process runs on in its other thread.
        let leader_gone = eventually(|| !is_alive(&child));
        let process_alive = is_process_alive(&child);
        // SAFETY: signals our own child.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        let process_died = eventually(|| !is_process_alive(&child));
        kill_and_reap(pid);
        assert!(leader_gone, "the exited main thread is still reported alive");
        assert!(process_alive, "a process with a running thread was reported dead");
        assert!(process_died, "the killed process is still reported alive");
        assert!(!is_process_alive(&child));
    }

    #[test]
    fn unrelated_process_lifecycle() {
        // A pausing child is alive; after reaping, its pid no longer matches its identity.
        let pid = fork_pausing_child();
        let child = of(pid).unwrap().unwrap();
        assert!(is_process_alive(&child));
        kill_and_reap(pid);
        assert!(!is_alive(&child) && !is_process_alive(&child));
    }
}
