//! The current process: its name and parent as weft knows them, the names of its children, the
//! number of CPUs it may use, and how many threads it has (for the fork warning).

use std::ffi::{CStr, CString};
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::Mutex;

static NAME: Mutex<Option<&'static std::ffi::CStr>> = Mutex::new(None);
static IDENTITY: Mutex<&'static str> = Mutex::new("");
static PARENT: AtomicI32 = AtomicI32::new(0);
static CHILDREN: AtomicU64 = AtomicU64::new(0);

/// This process's name: `"MainProcess"`, or the name its parent gave it. The string lives as
/// long as the process (a child's name is set once and kept).
pub fn name() -> &'static std::ffi::CStr {
    NAME.lock().unwrap_or_else(|e| e.into_inner()).unwrap_or(c"MainProcess")
}

/// The pid of the process that started this one through weft (not the fork server), or
/// `getppid()` for a process weft did not start.
pub fn parent_pid() -> i32 {
    match PARENT.load(Ordering::Relaxed) {
        // SAFETY: getppid has no preconditions.
        0 => unsafe { libc::getppid() },
        p => p,
    }
}

/// Records what a child learns from its parent: its name, identity path and parent. The
/// child-counter restarts (Python's rule: a child's first child is `Process-<id>:1`).
pub fn become_child(name: &str, identity: &str, parent: i32) {
    // Leaked on purpose: callers hold the name for the life of the process.
    let name: &'static CStr = Box::leak(CString::new(name.replace('\0', "?")).unwrap_or_default().into_boxed_c_str());
    let identity: &'static str = String::leak(identity.to_owned());
    // SAFETY: both strings are leaked, so they live as long as the process.
    unsafe { Identity { name, identity, parent }.install() };
}

/// A forked child's identity, made in the parent from strings the parent owns, so that the
/// child only stores two pointers (no allocation in the child, and none to free in the
/// parent: both would touch copy-on-write pages while the child runs).
pub struct Identity<'a> {
    name: &'a CStr,
    identity: &'a str,
    parent: i32,
}

impl<'a> Identity<'a> {
    /// The identity a child will take.
    pub fn new(name: &'a CStr, identity: &'a str, parent: i32) -> Identity<'a> {
        Identity { name, identity, parent }
    }
    /// Makes it this process's identity (in the child).
    ///
    /// # Safety
    /// The strings must stay valid for the rest of the process: in a forked child, its copy of
    /// the parent's strings qualifies when the child never returns into code that frees them
    /// (it ends with `_exit`).
    pub unsafe fn install(self) {
        // SAFETY: per the contract, the strings outlive every reader.
        let (name, identity): (&'static CStr, &'static str) = unsafe { (&*(self.name as *const CStr), &*(self.identity as *const str)) };
        *NAME.lock().unwrap_or_else(|e| e.into_inner()) = Some(name);
        *IDENTITY.lock().unwrap_or_else(|e| e.into_inner()) = identity;
        PARENT.store(self.parent, Ordering::Relaxed);
        CHILDREN.store(0, Ordering::Relaxed);
    }
}

/// The identity path and default name of the next child: `("1", "Process-1")` in the main
/// process, `("1:2", "Process-1:2")` in process 1.
pub fn next_child() -> (String, String) {
    let n = CHILDREN.fetch_add(1, Ordering::Relaxed) + 1;
    let mine = *IDENTITY.lock().unwrap_or_else(|e| e.into_inner());
    let identity = if mine.is_empty() { n.to_string() } else { format!("{mine}:{n}") };
    let name = format!("Process-{identity}");
    (identity, name)
}

/// The CPUs this process may use: those of its affinity mask, further limited by a cgroup v2
/// CPU quota (`cpu.max` of its cgroup and every ancestor, rounded up), at least 1.
pub fn cpu_count() -> u32 {
    let affinity = affinity_count().unwrap_or_else(online_count);
    let quota = cgroup_quota().unwrap_or(u32::MAX);
    affinity.min(quota).max(1)
}

fn online_count() -> u32 {
    // SAFETY: sysconf has no preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    if n > 0 { n as u32 } else { 1 }
}

fn affinity_count() -> Option<u32> {
    // SAFETY: a zeroed cpu_set_t is valid; sched_getaffinity fills it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a writable cpu_set_t of the size passed.
    if unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) } != 0 {
        return None;
    }
    // SAFETY: CPU_COUNT reads the set.
    Some(unsafe { libc::CPU_COUNT(&set) } as u32)
}

/// The tightest `cpu.max` quota along this process's cgroup v2 path, in whole CPUs.
fn cgroup_quota() -> Option<u32> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let path = text.lines().find_map(|l| l.strip_prefix("0::"))?.trim().to_owned();
    let mut dir = std::path::PathBuf::from("/sys/fs/cgroup");
    dir.push(path.trim_start_matches('/'));
    let mut best: Option<u32> = None;
    loop {
        if let Some(q) = std::fs::read_to_string(dir.join("cpu.max")).ok().and_then(|t| parse_cpu_max(&t)) {
            best = Some(best.map_or(q, |b| b.min(q)));
        }
        if dir == std::path::Path::new("/sys/fs/cgroup") || !dir.pop() {
            break;
        }
    }
    best
}

/// `"max 100000"` → None; `"150000 100000"` → 2.
fn parse_cpu_max(text: &str) -> Option<u32> {
    let mut it = text.split_whitespace();
    let quota: u64 = it.next()?.parse().ok()?;
    let period: u64 = it.next()?.parse().ok()?;
    if period == 0 {
        return None;
    }
    Some(quota.div_ceil(period).clamp(1, u32::MAX as u64) as u32)
}

/// glibc's `__libc_single_threaded` (glibc 2.32+): non-zero while the process has never had a
/// second thread. Looked up at run time, so other C libraries simply take the slow path.
fn libc_single_threaded() -> bool {
    static FLAG: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    let addr = *FLAG.get_or_init(|| {
        // SAFETY: dlsym with a NUL-terminated name; the result is only compared and read below.
        unsafe { libc::dlsym(libc::RTLD_DEFAULT, c"__libc_single_threaded".as_ptr()) as usize }
    });
    // SAFETY: a non-null result is the address of glibc's `char __libc_single_threaded`, which
    // lives as long as libc; it is read as an atomic byte (glibc writes it before starting a
    // thread, so a reader that sees non-zero is the only thread).
    addr != 0 && unsafe { (*(addr as *const std::sync::atomic::AtomicU8)).load(Ordering::Relaxed) } != 0
}

/// The number of threads of this process, or 0 when unknown: 1 at once when glibc says the
/// process never had another thread, else from `/proc/self/stat`.
pub fn thread_count() -> u32 {
    if libc_single_threaded() {
        return 1;
    }
    let mut buf = [0u8; 1024];
    // SAFETY: open/read/close on a stack buffer of the size passed.
    let n = unsafe {
        let fd = libc::open(c"/proc/self/stat".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return 0;
        }
        let n = libc::read(fd, buf.as_mut_ptr().cast(), buf.len());
        libc::close(fd);
        n
    };
    if n <= 0 {
        return 0;
    }
    let stat = &buf[..n as usize];
    // Field 20 (num_threads); the command name (field 2) may hold spaces: count after ')'.
    let Some(close) = stat.iter().rposition(|&b| b == b')') else { return 0 };
    let rest = String::from_utf8_lossy(&stat[close + 1..]);
    rest.split_whitespace().nth(17).and_then(|f| f.parse().ok()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_max_parsing() {
        assert_eq!(parse_cpu_max("max 100000\n"), None);
        assert_eq!(parse_cpu_max("150000 100000\n"), Some(2));
        assert_eq!(parse_cpu_max("50000 100000"), Some(1));
        assert_eq!(parse_cpu_max("garbage"), None);
    }

    #[test]
    fn cpu_count_is_within_the_affinity_mask() {
        let n = cpu_count();
        assert!(n >= 1 && n <= affinity_count().unwrap());
    }

    #[test]
    fn thread_count_sees_this_thread() {
        assert!(thread_count() >= 1);
    }
}
