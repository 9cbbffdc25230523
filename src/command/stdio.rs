//! The child's stdin, stdout and stderr: which descriptor each becomes, the pipes weft keeps
//! the other end of, and the descriptors that must stay open until the child has exec'd.

use super::spawn::Slot;
use super::Stdio;
use crate::fd;
use crate::status::{Error, Result};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

/// The descriptors of a child about to start.
pub(super) struct Setup {
    /// What the child does with its 0, 1 and 2.
    pub slots: [Slot; 3],
    /// weft's ends of the pipes (None where the stream is not a pipe).
    pub ours: [Option<OwnedFd>; 3],
    /// Descriptors the child copies from; closed once it has started.
    pub child_ends: Vec<OwnedFd>,
}

const NAMES: [&str; 3] = ["stdin", "stdout", "stderr"];

/// Prepares the three streams. All descriptors created here are close-on-exec.
pub(super) fn setup(streams: [Stdio; 3]) -> Result<Setup> {
    let mut s = Setup { slots: [Slot::Keep; 3], ours: [None, None, None], child_ends: Vec::new() };
    let mut dev_null: Option<RawFd> = None;
    for (target, stream) in (0..3).zip(streams) {
        let source = match stream {
            Stdio::Inherit => continue,
            Stdio::Stdout if target == 2 => {
                s.slots[2] = Slot::Stdout;
                continue;
            }
            Stdio::Stdout => return Err(Error::invalid(format!("{} cannot be merged into stdout", NAMES[target as usize]))),
            Stdio::Pipe => {
                let (read, write) = fd::pipe()?;
                let (theirs, ours) = if target == 0 { (read, write) } else { (write, read) };
                s.ours[target as usize] = Some(ours);
                keep(&mut s.child_ends, theirs)
            }
            Stdio::Null => match dev_null {
                Some(fd) => fd,
                None => {
                    let fd = keep(&mut s.child_ends, open_dev_null()?);
                    dev_null = Some(fd);
                    fd
                }
            },
            Stdio::Fd(fd) => {
                if !fd::is_open(fd) {
                    return Err(Error::invalid(format!("{}_fd {fd} is not an open descriptor", NAMES[target as usize])));
                }
                fd
            }
        };
        s.slots[target as usize] = if source == target {
            Slot::Inherit
        } else if source < 3 {
            // The child sets up 0, 1, 2 in order: a low source could be replaced before it
            // is copied, so the child copies a duplicate numbered 3 or above instead.
            let copy = fd::dup(source)?;
            Slot::Copy(keep(&mut s.child_ends, copy))
        } else {
            Slot::Copy(source)
        };
    }
    Ok(s)
}

/// Keeps `fd` open until the child has started and returns its number.
fn keep(list: &mut Vec<OwnedFd>, fd: OwnedFd) -> RawFd {
    let raw = fd.as_raw_fd();
    list.push(fd);
    raw
}

fn open_dev_null() -> Result<OwnedFd> {
    // SAFETY: opens a path from a static C string.
    let fd = unsafe { libc::open(c"/dev/null".as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(Error::last_os("open(/dev/null)"));
    }
    // SAFETY: a descriptor the kernel just returned to us.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_for_each_kind() {
        let s = setup([Stdio::Pipe, Stdio::Null, Stdio::Stdout]).unwrap();
        assert!(s.ours[0].is_some() && s.ours[1].is_none() && s.ours[2].is_none());
        assert!(matches!(s.slots[0], Slot::Copy(fd) if fd >= 3));
        assert!(matches!(s.slots[1], Slot::Copy(fd) if fd >= 3));
        assert_eq!(s.slots[2], Slot::Stdout);

        let s = setup([Stdio::Inherit, Stdio::Fd(1), Stdio::Fd(1)]).unwrap();
        assert_eq!(s.slots[0], Slot::Keep);
        assert_eq!(s.slots[1], Slot::Inherit);
        assert!(matches!(s.slots[2], Slot::Copy(fd) if fd >= 3), "a low source is duplicated high");
    }

    #[test]
    fn bad_requests() {
        assert!(setup([Stdio::Stdout, Stdio::Inherit, Stdio::Inherit]).is_err());
        assert!(setup([Stdio::Fd(987_654), Stdio::Inherit, Stdio::Inherit]).is_err());
    }
}
