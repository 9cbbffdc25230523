//! Finding a task function again in another process image (start methods forkserver and
//! spawn). A function pointer is resolved to the object file that holds it — the main
//! executable or a shared library — and its offset from that object's load address, plus its
//! dynamic symbol name when it has one. The child loads the object (`dlopen`) and computes the
//! address again; it checks that the file is still the one the parent resolved (device, inode,
//! size, modification time) and, when there is a symbol, that `dlsym` agrees.
//!
//! Works for any function with a fixed address in a loaded object, exported or `static`. A
//! function that exists only at run time (a JIT, a closure trampoline such as a ctypes
//! `CFUNCTYPE` of a Python function) cannot be found: use the fork start method for those.

use crate::status::{Error, Result, WEFT_INVALID_ARGUMENT, WEFT_NOT_FOUND};
use std::ffi::{c_char, c_void, CStr, CString};

/// `dladdr1` flag asking for the object's `link_map`.
const RTLD_DL_LINKMAP: libc::c_int = 2;

/// The head of glibc's `struct link_map` (the public part of `<link.h>`).
#[repr(C)]
struct LinkMap {
    l_addr: usize,
    l_name: *const c_char,
    l_ld: *mut c_void,
    l_next: *mut LinkMap,
    l_prev: *mut LinkMap,
}

/// A function located in a loaded object, in a form another process can resolve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Located {
    /// Absolute path of the object; empty for the main executable.
    pub object: String,
    /// Offset of the function from the object's load bias.
    pub offset: u64,
    /// The dynamic symbol naming exactly this address, when there is one.
    pub symbol: Option<String>,
    /// (device, inode, size, modification time in ns) of the object file when resolved.
    pub identity: [u64; 4],
}

/// The identity of the file at `path` (see [`Located::identity`]).
fn identity(path: &str) -> Result<[u64; 4]> {
    let c = CString::new(path).map_err(|_| Error::invalid("object path holds a NUL byte"))?;
    // SAFETY: a zeroed stat is a valid out-buffer; `c` is NUL-terminated.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::stat(c.as_ptr(), &mut st) } != 0 {
        return Err(Error::last_os(&format!("stat({path})")));
    }
    let mtime = (st.st_mtime as u64).wrapping_mul(1_000_000_000).wrapping_add(st.st_mtime_nsec as u64);
    Ok([st.st_dev, st.st_ino, st.st_size as u64, mtime])
}

/// The path the main executable was loaded from.
fn main_executable() -> String {
    std::fs::read_link("/proc/self/exe").map(|p| p.to_string_lossy().into_owned()).unwrap_or_default()
}

/// Resolves `addr` (a function pointer of this process) to a [`Located`].
///
/// Errors: `WEFT_INVALID_ARGUMENT` when the address is in no loaded object (a run-time
/// generated function).
pub fn locate(addr: usize) -> Result<Located> {
    // SAFETY: a zeroed Dl_info is a valid out-buffer; `map` receives a pointer.
    let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
    let mut map: *mut LinkMap = std::ptr::null_mut();
    // SAFETY: dladdr1 only reads the loader's tables for `addr` and writes the two outputs.
    let ok = unsafe { libc::dladdr1(addr as *const c_void, &mut info, (&mut map as *mut *mut LinkMap).cast(), RTLD_DL_LINKMAP) };
    if ok == 0 || map.is_null() {
        return Err(Error::new(
            WEFT_INVALID_ARGUMENT,
            format!("the task function {addr:#x} is not in any loaded object (generated at run time?); use the fork start method"),
        ));
    }
    // SAFETY: `map` is the loader's live link_map for the object holding `addr`; its name is a
    // NUL-terminated string ("" for the main program) that lives while the object is loaded.
    let (bias, name) = unsafe { ((*map).l_addr, CStr::from_ptr((*map).l_name).to_string_lossy().into_owned()) };
    let symbol = if !info.dli_sname.is_null() && info.dli_saddr as usize == addr {
        // SAFETY: dladdr1 set a NUL-terminated symbol name owned by the loader.
        Some(unsafe { CStr::from_ptr(info.dli_sname) }.to_string_lossy().into_owned())
    } else {
        None
    };
    let (object, path) = if name.is_empty() {
        (String::new(), main_executable())
    } else {
        let abs = std::fs::canonicalize(&name).map(|p| p.to_string_lossy().into_owned()).unwrap_or(name);
        (abs.clone(), abs)
    };
    Ok(Located { object, offset: (addr - bias) as u64, symbol, identity: identity(&path)? })
}

/// Finds the function `located` describes in this process, loading its object if needed.
///
/// Errors: `WEFT_NOT_FOUND` when the object cannot be loaded, has changed since the parent
/// resolved it, or its symbol disagrees with the recorded offset.
pub fn resolve(located: &Located) -> Result<usize> {
    let path = if located.object.is_empty() { main_executable() } else { located.object.clone() };
    let now = identity(&path).map_err(|e| Error::new(WEFT_NOT_FOUND, format!("task object {path}: {}", e.message)))?;
    if now != located.identity {
        return Err(Error::new(WEFT_NOT_FOUND, format!("task object {path} changed on disk since the parent resolved the task")));
    }
    let handle = if located.object.is_empty() {
        // SAFETY: dlopen(NULL) returns the main program's handle; no other effect.
        unsafe { libc::dlopen(std::ptr::null(), libc::RTLD_NOW) }
    } else {
        let c = CString::new(path.as_str()).map_err(|_| Error::invalid("object path holds a NUL byte"))?;
        // SAFETY: `c` is NUL-terminated; loading a library runs its constructors, which is the
        // point (the same library the parent had loaded).
        unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW) }
    };
    if handle.is_null() {
        // SAFETY: dlerror returns NULL or a NUL-terminated message owned by the loader.
        let why = unsafe { libc::dlerror() };
        let why = if why.is_null() { "unknown error".into() } else { unsafe { CStr::from_ptr(why) }.to_string_lossy() };
        return Err(Error::new(WEFT_NOT_FOUND, format!("cannot load task object {path}: {why}")));
    }
    let mut map: *mut LinkMap = std::ptr::null_mut();
    // SAFETY: `handle` is a live dlopen handle; RTLD_DI_LINKMAP writes one pointer.
    if unsafe { libc::dlinfo(handle, libc::RTLD_DI_LINKMAP, (&mut map as *mut *mut LinkMap).cast()) } != 0 || map.is_null() {
        return Err(Error::new(WEFT_NOT_FOUND, format!("cannot find the load address of {path}")));
    }
    // SAFETY: `map` is the live link_map of the loaded object.
    let addr = unsafe { (*map).l_addr } + located.offset as usize;
    if let Some(sym) = &located.symbol {
        let c = CString::new(sym.as_str()).map_err(|_| Error::invalid("symbol holds a NUL byte"))?;
        // SAFETY: `handle` is live and `c` NUL-terminated.
        let found = unsafe { libc::dlsym(handle, c.as_ptr()) } as usize;
        if found != 0 && found != addr {
            return Err(Error::new(WEFT_NOT_FOUND, format!("symbol {sym} of {path} is not where the parent found it")));
        }
    }
    // The handle stays open: the task's object must stay loaded while it runs.
    Ok(addr)
}

/// Finds `symbol` in the library at `library` (NULL-equivalent `None`: the main program and
/// everything loaded with it), for callers that name a task instead of passing a pointer.
pub fn lookup(library: Option<&str>, symbol: &str) -> Result<usize> {
    let handle = match library {
        None => std::ptr::null_mut::<c_void>(),
        Some(lib) => {
            let c = CString::new(lib).map_err(|_| Error::invalid("library path holds a NUL byte"))?;
            // SAFETY: `c` is NUL-terminated.
            let h = unsafe { libc::dlopen(c.as_ptr(), libc::RTLD_NOW) };
            if h.is_null() {
                // SAFETY: dlerror returns NULL or a loader-owned message.
                let why = unsafe { libc::dlerror() };
                let why = if why.is_null() { "unknown error".into() } else { unsafe { CStr::from_ptr(why) }.to_string_lossy() };
                return Err(Error::new(WEFT_NOT_FOUND, format!("cannot load {lib}: {why}")));
            }
            h
        }
    };
    let c = CString::new(symbol).map_err(|_| Error::invalid("symbol holds a NUL byte"))?;
    // SAFETY: RTLD_DEFAULT (null) or a live handle; `c` NUL-terminated.
    let addr = unsafe { libc::dlsym(if handle.is_null() { libc::RTLD_DEFAULT } else { handle }, c.as_ptr()) } as usize;
    if addr == 0 {
        return Err(Error::new(WEFT_NOT_FOUND, format!("symbol {symbol} not found in {}", library.unwrap_or("the program"))));
    }
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[no_mangle]
    extern "C" fn weft_test_target_exported() -> i32 {
        7
    }

    fn private_target() -> i32 {
        11
    }

    #[test]
    fn locates_and_resolves_functions_with_and_without_symbols() {
        for f in [weft_test_target_exported as *const () as usize, private_target as *const () as usize, libc::getpid as *const () as usize] {
            let l = locate(f).unwrap();
            assert_eq!(resolve(&l).unwrap(), f, "{l:?}");
        }
        let l = locate(libc::getpid as *const () as usize).unwrap();
        assert!(l.object.contains("libc"), "{l:?}");
        assert!(l.symbol.as_deref().is_some_and(|s| s.contains("getpid")), "{l:?}");
    }

    #[test]
    fn a_changed_object_is_refused() {
        let mut l = locate(private_target as *const () as usize).unwrap();
        l.identity[3] ^= 1;
        assert_eq!(resolve(&l).unwrap_err().code, WEFT_NOT_FOUND);
    }

    #[test]
    fn heap_addresses_are_not_tasks() {
        let b = Box::new(5u64);
        assert_eq!(locate(&*b as *const u64 as usize).unwrap_err().code, WEFT_INVALID_ARGUMENT);
    }
}
