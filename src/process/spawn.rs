//! The spawn start method, and how any fresh weft process boots (the fork server is one).
//!
//! The child is a fresh image of this program (`/proc/self/exe`, started with `posix_spawn`).
//! When weft lives in a shared library that the executable does not itself need (Python loading
//! it with ctypes or cffi), `LD_PRELOAD` names it so that it loads at start-up; sanitizer
//! runtimes the process has loaded go before it, since they insist on coming first. A load-time constructor of
//! weft finds `WEFT_SPAWN_FD` in the environment, restores the environment the parent had, and
//! takes the process over before the program's `main` runs: it reads its first message on that
//! descriptor (a job, or "be the fork server"), runs it and exits. The program's `main` never
//! runs in a spawned child.
//!
//! Consequences: the main executable's own constructors (C++ static initialisers of the
//! program, not of its libraries) have not run when the task starts; a set-uid program ignores
//! `LD_PRELOAD`, so a weft loaded only at run time cannot spawn from one. A program linking
//! weft statically must keep this constructor (link weft with `--whole-archive`).

use super::{child, current, lifeline, server, target, wire};
use crate::fd;
use crate::status::{Error, Result};
use std::ffi::{c_char, CStr, CString};
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd, RawFd};
use std::sync::OnceLock;

const SPAWN_FD_ENV: &str = "WEFT_SPAWN_FD";
const SAVED_PRELOAD_ENV: &str = "WEFT_SPAWN_LD_PRELOAD";
/// Saved value meaning "LD_PRELOAD was not set".
const UNSET: &str = "\u{1}unset";

/// Starts a fresh image of this program and sends it `body` (a boot message) with `fds`.
/// Returns the child's pid, pidfd and our end of its boot socket.
pub(super) fn boot(body: &[u8], fds: &[RawFd]) -> Result<(i32, OwnedFd, OwnedFd)> {
    let (ours, theirs) = fd::socketpair(libc::SOCK_STREAM)?;
    let env = child_environment(theirs.as_raw_fd())?;
    let mut envp: Vec<*const c_char> = env.iter().map(|c| c.as_ptr()).collect();
    envp.push(std::ptr::null());
    let argv0 = CString::new("weft-child").unwrap_or_default();
    let argv = [argv0.as_ptr(), std::ptr::null()];
    let path = c"/proc/self/exe";
    let mut pid: libc::pid_t = 0;
    // SAFETY: the file-actions and attribute objects are initialised before use and destroyed
    // after; every pointer passed (path, argv, envp) is NUL-terminated and outlives the call.
    let rc = unsafe {
        let mut actions: libc::posix_spawn_file_actions_t = std::mem::zeroed();
        let mut attr: libc::posix_spawnattr_t = std::mem::zeroed();
        libc::posix_spawn_file_actions_init(&mut actions);
        libc::posix_spawnattr_init(&mut attr);
        // dup2 onto itself clears close-on-exec for this one descriptor in the child only.
        libc::posix_spawn_file_actions_adddup2(&mut actions, theirs.as_raw_fd(), theirs.as_raw_fd());
        let mut empty: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::posix_spawnattr_setsigmask(&mut attr, &empty);
        libc::posix_spawnattr_setflags(&mut attr, libc::POSIX_SPAWN_SETSIGMASK as libc::c_short);
        let rc = libc::posix_spawn(&mut pid, path.as_ptr(), &actions, &attr, argv.as_ptr() as *const *mut c_char, envp.as_ptr() as *const *mut c_char);
        libc::posix_spawn_file_actions_destroy(&mut actions);
        libc::posix_spawnattr_destroy(&mut attr);
        rc
    };
    drop(theirs);
    if rc != 0 {
        return Err(Error::os("posix_spawn(/proc/self/exe)", rc));
    }
    let pidfd = fd::pidfd_open(pid)?;
    if let Err(e) = wire::send_frame(ours.as_raw_fd(), body, fds) {
        // The child died before reading its job: do not leave it behind.
        let _ = fd::pidfd_send_signal(pidfd.as_raw_fd(), libc::SIGKILL);
        let _ = fd::wait_ready(pidfd.as_raw_fd(), libc::POLLIN, crate::time::Deadline::Never, "");
        let _ = super::try_reap(pidfd.as_raw_fd());
        return Err(e);
    }
    Ok((pid, pidfd, ours))
}

/// Starts a spawned child running the job `body` with `fds`.
pub(super) fn start(body: &[u8], fds: &[RawFd]) -> Result<(i32, OwnedFd)> {
    let (pid, pidfd, _boot) = boot(body, fds)?;
    Ok((pid, pidfd))
}

/// The path of the shared library holding weft, or None when weft is part of the executable.
fn weft_library() -> Option<&'static str> {
    static LIB: OnceLock<Option<String>> = OnceLock::new();
    LIB.get_or_init(|| {
        let here = boot as *const () as usize;
        target::locate(here).ok().map(|l| l.object).filter(|o| !o.is_empty())
    })
    .as_deref()
}

/// An entry of an ELF dynamic section (`Elf64_Dyn`).
#[repr(C)]
struct Dyn {
    d_tag: i64,
    d_un: u64,
}

/// Whether the executable itself needs `soname` (a `DT_NEEDED` entry of the main program):
/// then a fresh image loads weft at start-up without `LD_PRELOAD`.
fn executable_needs(soname: &str) -> bool {
    struct Query<'a> {
        soname: &'a str,
        found: bool,
    }
    unsafe extern "C" fn first(info: *mut libc::dl_phdr_info, _size: usize, data: *mut libc::c_void) -> libc::c_int {
        // SAFETY: `data` is the Query passed below; `info` describes the main program (the
        // first object the loader reports), whose program headers and dynamic section are
        // mapped for the life of the process.
        unsafe {
            let q = &mut *(data as *mut Query);
            let info = &*info;
            let phdrs = std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize);
            let Some(dynamic) = phdrs.iter().find(|p| p.p_type == libc::PT_DYNAMIC) else { return 1 };
            let mut d = (info.dlpi_addr as usize + dynamic.p_vaddr as usize) as *const Dyn;
            let mut strtab = 0usize;
            let mut needed = Vec::new();
            while (*d).d_tag != 0 {
                match (*d).d_tag as u64 {
                    5 => strtab = (*d).d_un as usize,  // DT_STRTAB
                    1 => needed.push((*d).d_un as usize), // DT_NEEDED
                    _ => {}
                }
                d = d.add(1);
            }
            if strtab == 0 {
                return 1;
            }
            // The loader relocates DT_STRTAB in place on most targets; an unrelocated value
            // is below the load address.
            if strtab < info.dlpi_addr as usize {
                strtab += info.dlpi_addr as usize;
            }
            q.found = needed.iter().any(|&off| CStr::from_ptr((strtab + off) as *const c_char).to_bytes() == q.soname.as_bytes());
        }
        1 // stop after the main program
    }
    let mut q = Query { soname, found: false };
    // SAFETY: the callback matches dl_iterate_phdr's contract and only reads loader data.
    unsafe { libc::dl_iterate_phdr(Some(first), (&mut q as *mut Query).cast()) };
    q.found
}

/// Sanitizer runtimes loaded in this process: they must stay first in a child's library list,
/// so they go before weft in `LD_PRELOAD`.
fn sanitizer_runtimes() -> Vec<String> {
    unsafe extern "C" fn each(info: *mut libc::dl_phdr_info, _size: usize, data: *mut libc::c_void) -> libc::c_int {
        // SAFETY: `data` is the Vec passed below; `dlpi_name` is NULL or NUL-terminated.
        unsafe {
            let out = &mut *(data as *mut Vec<String>);
            let name = (*info).dlpi_name;
            if !name.is_null() {
                let n = CStr::from_ptr(name).to_string_lossy();
                let base = n.rsplit('/').next().unwrap_or("");
                if ["libasan", "libtsan", "liblsan", "libubsan", "libhwasan", "libclang_rt."].iter().any(|p| base.starts_with(p)) {
                    out.push(n.into_owned());
                }
            }
        }
        0
    }
    let mut out: Vec<String> = Vec::new();
    // SAFETY: the callback matches dl_iterate_phdr's contract and only reads loader data.
    unsafe { libc::dl_iterate_phdr(Some(each), (&mut out as *mut Vec<String>).cast()) };
    out
}

/// What `LD_PRELOAD` must add for a fresh image to load weft first: None when weft is part of
/// the executable or one of its start-up libraries.
fn preload() -> Option<&'static str> {
    static PRELOAD: OnceLock<Option<String>> = OnceLock::new();
    PRELOAD
        .get_or_init(|| {
            let lib = weft_library()?;
            let base = lib.rsplit('/').next().unwrap_or(lib);
            if executable_needs(base) || executable_needs("libweft.so") {
                return None;
            }
            let mut list = sanitizer_runtimes();
            list.push(lib.to_owned());
            Some(list.join(":"))
        })
        .as_deref()
}

/// This process's environment plus what the child needs to boot.
fn child_environment(boot_fd: RawFd) -> Result<Vec<CString>> {
    let mut env: Vec<CString> = Vec::new();
    let mut inherited: Option<Vec<u8>> = None;
    for (k, v) in std::env::vars_os() {
        use std::os::unix::ffi::OsStrExt;
        let (k, v) = (k.as_bytes(), v.as_bytes());
        if k == SPAWN_FD_ENV.as_bytes() || k == SAVED_PRELOAD_ENV.as_bytes() {
            continue;
        }
        if k == b"LD_PRELOAD" {
            inherited = Some(v.to_vec());
            continue;
        }
        let mut kv = k.to_vec();
        kv.push(b'=');
        kv.extend_from_slice(v);
        env.extend(CString::new(kv).ok());
    }
    let text = |s: String| CString::new(s).map_err(|_| Error::invalid("environment holds a NUL byte"));
    env.push(text(format!("{SPAWN_FD_ENV}={boot_fd}"))?);
    if let Some(lib) = self::preload() {
        let saved = inherited.as_deref().map_or(UNSET.to_owned(), |p| String::from_utf8_lossy(p).into_owned());
        env.push(text(format!("{SAVED_PRELOAD_ENV}={saved}"))?);
        let value = match &inherited {
            Some(p) if !p.is_empty() => format!("{lib}:{}", String::from_utf8_lossy(p)),
            _ => lib.to_owned(),
        };
        env.push(text(format!("LD_PRELOAD={value}"))?);
    } else if let Some(p) = inherited {
        let mut kv = b"LD_PRELOAD=".to_vec();
        kv.extend_from_slice(&p);
        env.extend(CString::new(kv).ok());
    }
    Ok(env)
}

// ---- the child's side ------------------------------------------------------------------------

#[used]
#[link_section = ".init_array"]
static BOOT_AT_LOAD: extern "C" fn() = boot_at_load;

/// Runs when weft is loaded: takes over a process started by [`boot`]; returns at once in any
/// other process.
extern "C" fn boot_at_load() {
    // SAFETY: getenv at load time; the string is copied before the environment changes.
    let v = unsafe { libc::getenv(c"WEFT_SPAWN_FD".as_ptr()) };
    if v.is_null() {
        return;
    }
    // SAFETY: non-null, NUL-terminated.
    let fd: RawFd = match unsafe { CStr::from_ptr(v) }.to_str().ok().and_then(|s| s.parse().ok()) {
        Some(fd) if fd >= 0 => fd,
        _ => return,
    };
    restore_environment();
    // SAFETY: the descriptor was handed to this process for its boot message; nothing else owns it.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let _ = fd::set_cloexec(sock.as_raw_fd(), true);
    let _ = crate::status::catch(|| -> Result<()> { run_boot(sock) });
    // SAFETY: a spawned child never returns into the program.
    unsafe { libc::_exit(1) }
}

fn restore_environment() {
    std::env::remove_var(SPAWN_FD_ENV);
    if let Ok(saved) = std::env::var(SAVED_PRELOAD_ENV) {
        if saved == UNSET {
            std::env::remove_var("LD_PRELOAD");
        } else {
            std::env::set_var("LD_PRELOAD", saved);
        }
        std::env::remove_var(SAVED_PRELOAD_ENV);
    }
}

fn run_boot(sock: OwnedFd) -> Result<()> {
    let (body, fds) = wire::recv_frame(sock.as_raw_fd(), fd::MAX_FDS_PER_MESSAGE)?;
    let mut r = wire::Reader::new(&body);
    match r.u8()? {
        wire::BOOT_JOB => {
            let job = wire::Job::decode(&mut r)?;
            drop(sock);
            run_job(job, fds)
        }
        wire::BOOT_SERVER => server::serve(sock),
        t => Err(Error::invalid(format!("unknown boot message {t:#x}"))),
    }
}

/// Runs a decoded job with its descriptors (result channel, lifeline, default space, the
/// user's) in this fresh or fork-server child, and ends the process.
pub(super) fn run_job(job: wire::Job, fds: Vec<OwnedFd>) -> ! {
    if fds.len() != job.fd_count() {
        // SAFETY: a child without its descriptors cannot report; end it.
        unsafe { libc::_exit(1) };
    }
    let mut it = fds.into_iter();
    let result = it.next();
    if job.daemon {
        if let Some(l) = it.next() {
            if lifeline::arm(l.into_raw_fd()).is_err() {
                child::fail_and_exit(&Error::invalid("cannot tie the daemon to its parent"), result);
            }
        }
    }
    if job.has_space {
        if let Some(s) = it.next() {
            // The default space's descriptor stays open for the life of the process.
            let raw = s.into_raw_fd();
            std::env::set_var(crate::space::handle::DEFAULT_SPACE_FD_ENV, raw.to_string());
        }
    }
    let user: Vec<RawFd> = it.map(|f| f.into_raw_fd()).collect();
    current::become_child(&job.name, &job.identity, job.parent_pid);
    let Some(result) = result else { child::exit(1) };
    let task = match target::resolve(&job.target) {
        Ok(a) => a,
        Err(e) => child::fail_and_exit(&e, Some(result)),
    };
    // SAFETY: the parent resolved this address from a `weft_task_fn`, and `resolve` found the
    // same function in the same (unchanged) object of this process.
    let task: child::TaskFn = unsafe { std::mem::transmute::<usize, child::TaskFn>(task) };
    child::run_and_exit(task, &job.arg, &user, result)
}
