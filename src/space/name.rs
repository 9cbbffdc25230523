//! Names of named segments: validation and the fixed `/weft.` prefix.
//!
//! A user gives a short name such as `jobs-42`; weft always opens `/weft.` + that name (on Linux
//! the file `/dev/shm/weft.jobs-42`). The prefix keeps weft away from every other program's
//! shared-memory names, and the restricted alphabet keeps names from escaping the shared-memory
//! directory or hiding as dot-files.

use crate::status::{Error, Result};
use std::ffi::CString;

/// What weft puts before every user-given name to form the `shm_open` name.
///
/// On Linux a named segment `jobs` is the file `/dev/shm/weft.jobs`. (Crate-private: a `pub`
/// constant would be exported into `weft.h` by cbindgen; the C API names its own.)
pub(crate) const NAME_PREFIX: &str = "/weft.";

/// The longest user part of a segment name, in bytes. (Crate-private, as above.)
pub(crate) const NAME_MAX_LEN: usize = 200;

/// Checks the user part of a segment name.
///
/// A valid name is 1 to 200 bytes of `A-Z a-z 0-9 . _ -`, not starting with `.`
/// (so it contains no `/`, cannot be `.` or `..`, and is never a hidden file).
///
/// Errors: `WEFT_INVALID_ARGUMENT`, with a message naming the rule broken.
/// Thread safety: a pure function, callable from any thread.
pub fn validate_name(name: &str) -> Result<()> {
    if name.is_empty() || name.len() > NAME_MAX_LEN {
        return Err(Error::invalid(format!(
            "segment name must be 1 to {NAME_MAX_LEN} bytes long, got {} bytes",
            name.len()
        )));
    }
    if let Some((i, c)) = name
        .char_indices()
        .find(|&(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(Error::invalid(format!(
            "segment name {name:?} has {c:?} at byte {i}: only A-Z a-z 0-9 . _ - are allowed"
        )));
    }
    if name.starts_with('.') {
        return Err(Error::invalid(format!("segment name {name:?} must not start with '.'")));
    }
    Ok(())
}

/// The `shm_open` name of a validated user name: [`NAME_PREFIX`] + `name`.
pub(crate) fn shm_name(name: &str) -> Result<CString> {
    validate_name(name)?;
    // Validation excludes NUL bytes, so this cannot fail.
    CString::new(format!("{NAME_PREFIX}{name}"))
        .map_err(|_| Error::invalid("segment name contains a NUL byte"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::WEFT_INVALID_ARGUMENT;

    #[test]
    fn valid_names_get_the_prefix() {
        assert_eq!(shm_name("jobs-42").unwrap().as_bytes(), b"/weft.jobs-42");
        assert_eq!(shm_name("A.b_c-9").unwrap().as_bytes(), b"/weft.A.b_c-9");
        assert_eq!(shm_name("x").unwrap().as_bytes(), b"/weft.x");
        assert_eq!(shm_name("a..").unwrap().as_bytes(), b"/weft.a..");
        let longest = "n".repeat(NAME_MAX_LEN);
        assert_eq!(shm_name(&longest).unwrap().as_bytes().len(), NAME_PREFIX.len() + NAME_MAX_LEN);
    }

    #[test]
    fn invalid_names_are_refused() {
        let too_long = "n".repeat(NAME_MAX_LEN + 1);
        for bad in [
            "", ".", "..", ".hidden", "a/b", "/abs", "a b", "a\0b", "caf\u{e9}", "a*", "a\n", "~x",
            too_long.as_str(),
        ] {
            let err = validate_name(bad).unwrap_err();
            assert_eq!(err.code, WEFT_INVALID_ARGUMENT, "{bad:?}");
            assert!(err.message.contains("segment name"), "{bad:?}: {}", err.message);
            assert_eq!(shm_name(bad).unwrap_err().code, WEFT_INVALID_ARGUMENT, "{bad:?}");
        }
        assert!(validate_name(".x").unwrap_err().message.contains("must not start with '.'"));
        assert!(validate_name("a/b").unwrap_err().message.contains("'/'"));
        assert!(validate_name(&too_long).unwrap_err().message.contains("201 bytes"));
    }
}
