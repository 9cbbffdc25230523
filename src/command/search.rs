//! Where to look for a program: the paths `execvp` would try, computed in the parent so that
//! the child between clone and exec only makes system calls.
//!
//! Like Python's `subprocess`, a program name without a `/` is searched in the `PATH` of the
//! environment the child gets (the replacement environment when one is given, else this
//! process's), and `/bin:/usr/bin` when that has no `PATH`. An empty `PATH` element means
//! the current directory, which for a child with a working directory is the new one.

use std::ffi::{CStr, CString, OsString};
use std::os::unix::ffi::{OsStrExt, OsStringExt};

/// The search path used when the environment has no `PATH` (Python's `os.defpath`).
const DEFAULT_PATH: &[u8] = b"/bin:/usr/bin";

/// The paths to try, in order, for `program` started with `env` (None: this process's).
pub(super) fn candidates(program: &CStr, env: Option<&[CString]>) -> Vec<CString> {
    let name = program.to_bytes();
    if name.is_empty() || name.contains(&b'/') {
        return vec![program.to_owned()];
    }
    let path = search_path(env);
    path.split(|&b| b == b':')
        .map(|dir| {
            let dir = if dir.is_empty() { &b"."[..] } else { dir };
            let mut full = Vec::with_capacity(dir.len() + 1 + name.len() + 1);
            full.extend_from_slice(dir);
            full.push(b'/');
            full.extend_from_slice(name);
            // Neither part holds a NUL: both come from C strings.
            CString::new(full).unwrap_or_default()
        })
        .collect()
}

/// True when `candidates` searched a `PATH` rather than taking the program as a path.
pub(super) fn is_searched(program: &CStr) -> bool {
    let name = program.to_bytes();
    !name.is_empty() && !name.contains(&b'/')
}

/// The `PATH` value the child will have.
fn search_path(env: Option<&[CString]>) -> Vec<u8> {
    match env {
        Some(vars) => vars
            .iter()
            .find_map(|v| v.to_bytes().strip_prefix(b"PATH=").map(<[u8]>::to_vec))
            .unwrap_or_else(|| DEFAULT_PATH.to_vec()),
        None => std::env::var_os("PATH").map_or_else(|| DEFAULT_PATH.to_vec(), OsString::into_vec),
    }
}

/// The program as text for messages.
pub(super) fn display(program: &CStr) -> String {
    std::ffi::OsStr::from_bytes(program.to_bytes()).to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(v: Vec<CString>) -> Vec<String> {
        v.into_iter().map(|c| c.into_string().unwrap()).collect()
    }

    #[test]
    fn a_path_is_taken_as_is() {
        assert_eq!(strings(candidates(c"/bin/true", None)), ["/bin/true"]);
        assert_eq!(strings(candidates(c"./x", None)), ["./x"]);
        assert_eq!(strings(candidates(c"", None)), [""]);
        assert!(!is_searched(c"./x"));
    }

    #[test]
    fn a_name_is_searched_in_the_childs_path() {
        let env = [CString::new("A=1").unwrap(), CString::new("PATH=/a::/b").unwrap()];
        assert_eq!(strings(candidates(c"ls", Some(&env))), ["/a/ls", "./ls", "/b/ls"]);
        assert!(is_searched(c"ls"));
    }

    #[test]
    fn no_path_means_the_default() {
        let env = [CString::new("A=1").unwrap()];
        assert_eq!(strings(candidates(c"sh", Some(&env))), ["/bin/sh", "/usr/bin/sh"]);
    }
}
