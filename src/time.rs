//! Timeouts to monotonic deadlines.
//!
//! A C caller passes `uint64_t timeout_ns`: `0` tries once, `WEFT_FOREVER` waits forever, and
//! anything else is converted once, on entry, into an absolute `CLOCK_MONOTONIC` deadline so
//! that retries after EINTR or spurious wake-ups never extend the wait.

/// Timeout meaning "wait forever".
pub const WEFT_FOREVER: u64 = u64::MAX;

/// Nanoseconds on `CLOCK_MONOTONIC`.
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime writes one timespec through a valid pointer; CLOCK_MONOTONIC
    // always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64).saturating_mul(1_000_000_000).saturating_add(ts.tv_nsec as u64)
}

/// When a blocking call must give up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deadline {
    /// Try once, never block (timeout 0).
    Now,
    /// Give up at this `CLOCK_MONOTONIC` instant, in nanoseconds.
    At(u64),
    /// Never give up.
    Never,
}

impl Deadline {
    /// Converts a caller's `timeout_ns`; an overflowing sum means forever.
    pub fn from_timeout_ns(timeout_ns: u64) -> Deadline {
        match timeout_ns {
            0 => Deadline::Now,
            WEFT_FOREVER => Deadline::Never,
            t => now_ns().checked_add(t).map_or(Deadline::Never, Deadline::At),
        }
    }

    /// Nanoseconds left (0 when passed), `None` for never.
    pub fn remaining_ns(&self) -> Option<u64> {
        match *self {
            Deadline::Now => Some(0),
            Deadline::At(t) => Some(t.saturating_sub(now_ns())),
            Deadline::Never => None,
        }
    }

    /// The remaining time as a caller-style timeout (`WEFT_FOREVER` for never).
    pub fn remaining_timeout_ns(&self) -> u64 {
        self.remaining_ns().unwrap_or(WEFT_FOREVER)
    }

    /// True when the deadline has passed (always for `Now`, never for `Never`).
    pub fn expired(&self) -> bool {
        match *self {
            Deadline::Now => true,
            Deadline::At(t) => now_ns() >= t,
            Deadline::Never => false,
        }
    }

    /// This deadline or one `slice_ns` from now, whichever comes first, and whether the slice
    /// won (for waits that wake up periodically to re-check something). `Now` stays `Now`.
    pub fn capped(&self, slice_ns: u64) -> (Deadline, bool) {
        let slice = Deadline::from_timeout_ns(slice_ns);
        match (*self, slice) {
            (Deadline::Now, _) => (Deadline::Now, false),
            (Deadline::At(a), Deadline::At(b)) if a <= b => (*self, false),
            _ => (slice, true),
        }
    }

    /// Absolute `timespec` for the kernel, `None` for never.
    pub fn as_timespec(&self) -> Option<libc::timespec> {
        let at = match *self {
            Deadline::Now => now_ns(),
            Deadline::At(t) => t,
            Deadline::Never => return None,
        };
        Some(libc::timespec {
            tv_sec: (at / 1_000_000_000) as libc::time_t,
            tv_nsec: (at % 1_000_000_000) as libc::c_long,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions() {
        assert_eq!(Deadline::from_timeout_ns(0), Deadline::Now);
        assert_eq!(Deadline::from_timeout_ns(WEFT_FOREVER), Deadline::Never);
        assert_eq!(Deadline::from_timeout_ns(WEFT_FOREVER - 1), Deadline::Never, "overflow is forever");
        let d = Deadline::from_timeout_ns(1_000_000_000);
        let left = d.remaining_ns().unwrap();
        assert!(left <= 1_000_000_000 && left > 900_000_000);
        assert!(!d.expired());
        assert!(Deadline::Now.expired());
    }
}
