//! SharedBarrier: Python's `Barrier` for shared memory, which breaks when a participating
//! process dies instead of leaving the others waiting for it.
//!
//! The state machine is the one of [`Barrier`](crate::sync::Barrier) (filling, draining,
//! resetting, broken; a wait returns the arrival index; a wait timeout breaks the barrier), kept
//! in atomics guarded by an internal [`RobustLock`]. The action is not stored in the barrier
//! (a closure is per-process): each caller of [`SharedBarrier::wait`] passes its own, and the
//! last to arrive runs the one it passed.
//!
//! # Death detection
//!
//! A table of `BARRIER_PARTICIPANTS` (64) process identities records who uses the barrier:
//! a process registers on its first arrival (or with [`SharedBarrier::register`]) and removes
//! itself with [`SharedBarrier::leave`] when it closes its handle. Each entry also counts the
//! threads of that process currently inside the barrier. Waiters sleep in slices of
//! `CHECK_SLICE_NS` (50 ms); about every 50 ms one of them checks the registered processes.
//! When one is dead, its entry is removed, its threads are taken out of the count, and the
//! barrier breaks: every waiter gets `WEFT_BROKEN`, as after an abort, and so does every later
//! wait until [`SharedBarrier::reset`]. A process that used the barrier and ended without
//! closing its handle counts as dead. When the table is full, a newly arriving process is
//! simply not tracked: its death is not detected (its waits work normally).
//!
//! # Shared memory and peer faults
//!
//! `#[repr(C)]`, only atomics, futex words and a [`RobustLock`]: any bit pattern is a valid
//! value. Every field read under the lock is range-checked (state, `count <= parties`,
//! `parties >= 1`, per-process counts); a value a peer scribbled gives `WEFT_CORRUPTED`, never a
//! panic. The count always equals the per-process counts plus the count of untracked threads,
//! so when the internal lock's holder died mid-update, the next caller recomputes the count
//! from them, validates everything, breaks the barrier (a participant died mid-update) and
//! marks the lock consistent; if validation fails it returns `WEFT_CORRUPTED` and the barrier
//! stays unusable (`WEFT_NOT_RECOVERABLE`).

use crate::futex::{Interrupt, SharedWord, Wait, Word};
use crate::space::liveness::{self, Identity};
use crate::status::{Error, Result, WEFT_BROKEN, WEFT_CORRUPTED, WEFT_OWNER_DEAD, WEFT_TIMEOUT, WEFT_WOULD_BLOCK};
use crate::sync::robust::{RobustLock, CHECK_SLICE_NS};
use crate::time::{now_ns, Deadline};
use std::fmt;
use std::mem::{align_of, size_of};
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicU32, AtomicU64};

/// Entries in a [`SharedBarrier`]'s table of participating processes.
pub(crate) const BARRIER_PARTICIPANTS: usize = 64;

const FILLING: u32 = 0;
const DRAINING: u32 = 1;
const RESETTING: u32 = 2;
const BROKEN: u32 = 3;

/// One participating process. `id == 0`: free entry. Filled (`start_time`, `inside`) before
/// `id` is set; `id` is cleared first on removal.
#[repr(C)]
struct Participant {
    id: AtomicU32,
    /// Threads of this process counted in the barrier's `count`.
    inside: AtomicU32,
    start_time: AtomicU64,
}

impl Participant {
    fn new() -> Self {
        Participant { id: AtomicU32::new(0), inside: AtomicU32::new(0), start_time: AtomicU64::new(0) }
    }

    fn identity(&self) -> Identity {
        Identity { id: self.id.load(Acquire), start_time: self.start_time.load(Relaxed) }
    }
}

/// A barrier for a fixed number of parties, in shared memory, that breaks when a participating
/// process dies.
///
/// Thread-safe and process-safe: every method may be called at the same time from any thread
/// of any process that maps it (`W = SharedWord`); the parties may be threads of one process,
/// processes, or both. `#[repr(C)]`, no pointers; create it with [`new`](Self::new) and move it
/// into fresh shared memory.
#[repr(C)]
pub struct SharedBarrier<W: Word = SharedWord> {
    lock: RobustLock<W>,
    /// Bumped (and woken) at every state change; waiters sleep on it.
    changed: W,
    state: AtomicU32,
    /// Threads inside the current round (arrived and not yet left).
    count: AtomicU32,
    parties: AtomicU32,
    /// Threads inside the round whose process has no entry in `participants`.
    untracked: AtomicU32,
    reserved: AtomicU32,
    /// `CLOCK_MONOTONIC` time of the last liveness check of the participants.
    last_check: AtomicU64,
    participants: [Participant; BARRIER_PARTICIPANTS],
}

// Shared with other processes (possibly other builds of weft): pin the layout down.
const _: () = assert!(size_of::<Participant>() == 16);
const _: () = assert!(size_of::<SharedBarrier<SharedWord>>() == 48 + 16 * BARRIER_PARTICIPANTS);
const _: () = assert!(size_of::<SharedBarrier<SharedWord>>() == 1072);
const _: () = assert!(align_of::<SharedBarrier<SharedWord>>() == 8);

fn corrupted(message: String) -> Error {
    Error::new(WEFT_CORRUPTED, format!("shared barrier: {message}"))
}

fn broken() -> Error {
    Error::new(WEFT_BROKEN, "the barrier is broken")
}

/// The slice to sleep for: `deadline`, capped at the liveness-check interval.
fn slice(deadline: Deadline) -> (Deadline, bool) {
    if deadline == Deadline::Now {
        (Deadline::Now, false)
    } else {
        deadline.capped(CHECK_SLICE_NS)
    }
}

impl<W: Word> fmt::Debug for SharedBarrier<W> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedBarrier")
            .field("parties", &self.parties())
            .field("n_waiting", &self.n_waiting())
            .field("broken", &self.broken())
            .finish_non_exhaustive()
    }
}

impl<W: Word> SharedBarrier<W> {
    /// A barrier for `parties` threads (at least 1), to be moved into fresh shared memory
    /// (`ptr.write(barrier)`) before any other process can see it.
    ///
    /// Error: `WEFT_INVALID_ARGUMENT` when `parties` is 0.
    pub fn new(parties: u32) -> Result<Self> {
        if parties == 0 {
            return Err(Error::invalid("parties must be at least 1"));
        }
        Ok(SharedBarrier {
            lock: RobustLock::new(),
            changed: W::new(0),
            state: AtomicU32::new(FILLING),
            count: AtomicU32::new(0),
            parties: AtomicU32::new(parties),
            untracked: AtomicU32::new(0),
            reserved: AtomicU32::new(0),
            last_check: AtomicU64::new(0),
            participants: std::array::from_fn(|_| Participant::new()),
        })
    }

    /// Takes the internal lock and validates the fields. After a holder's death: recovers
    /// (see the module documentation) or, when the fields are invalid, returns
    /// `WEFT_CORRUPTED` leaving the lock released unrepaired. Not held on error.
    fn lock(&self) -> Result<()> {
        match self.lock.acquire(Deadline::Never, Interrupt::Uninterruptible) {
            Ok(()) => {}
            Err(e) if e.code == WEFT_OWNER_DEAD => {
                if let Err(e) = self.recover() {
                    self.unlock();
                    return Err(Error::new(
                        e.code,
                        format!("{} (after a process died holding its internal lock; the barrier is unusable)", e.message),
                    ));
                }
                if let Err(e) = self.lock.mark_consistent() {
                    self.unlock();
                    return Err(e);
                }
            }
            Err(e) => return Err(e),
        }
        if let Err(e) = self.validate() {
            self.unlock();
            return Err(e);
        }
        Ok(())
    }

    fn unlock(&self) {
        let _ = self.lock.release();
    }

    /// After the internal lock's holder died: rebuilds `count` from the per-process counts and
    /// breaks the barrier.
    fn recover(&self) -> Result<()> {
        let parties = self.parties.load(Relaxed);
        if parties == 0 {
            return Err(corrupted("`parties` is 0".into()));
        }
        let state = self.state.load(Relaxed);
        if state > BROKEN {
            return Err(corrupted(format!("`state` is {state} (expected 0 to 3)")));
        }
        let mut sum = u64::from(self.untracked.load(Relaxed));
        for (i, p) in self.participants.iter().enumerate() {
            if p.id.load(Acquire) != 0 {
                sum += u64::from(p.inside.load(Relaxed));
                if sum > u64::from(parties) {
                    return Err(corrupted(format!("participant {i}: more threads inside than the {parties} parties")));
                }
            }
        }
        if sum > u64::from(parties) {
            return Err(corrupted(format!("{sum} untracked threads inside, more than the {parties} parties")));
        }
        self.count.store(sum as u32, Relaxed);
        self.break_barrier();
        Ok(())
    }

    /// Range checks of the fields every operation relies on.
    fn validate(&self) -> Result<()> {
        let parties = self.parties.load(Relaxed);
        let state = self.state.load(Relaxed);
        let count = self.count.load(Relaxed);
        if parties == 0 {
            return Err(corrupted("`parties` is 0".into()));
        }
        if state > BROKEN {
            return Err(corrupted(format!("`state` is {state} (expected 0 to 3)")));
        }
        if count > parties || (state == FILLING && count == parties) {
            return Err(corrupted(format!("`count` is {count} with {parties} parties in state {state}")));
        }
        Ok(())
    }

    fn notify_all(&self) {
        self.changed.fetch_add(1, Release);
        self.changed.wake(u32::MAX);
    }

    fn state(&self) -> u32 {
        self.state.load(Relaxed)
    }

    fn set_state(&self, s: u32) {
        self.state.store(s, Relaxed);
    }

    fn break_barrier(&self) {
        self.set_state(BROKEN);
        self.notify_all();
    }

    /// The entry of process `me`, registering it when there is a free one. Lock held.
    fn register_locked(&self, me: &Identity) -> Option<usize> {
        let mut free = None;
        for (i, p) in self.participants.iter().enumerate() {
            if p.identity() == *me {
                return Some(i);
            }
            if free.is_none() && p.id.load(Relaxed) == 0 {
                free = Some(i);
            }
        }
        let p = &self.participants[free?];
        p.start_time.store(me.start_time, Relaxed);
        p.inside.store(0, Relaxed);
        p.id.store(me.id, Release);
        free
    }

    fn find(&self, me: &Identity) -> Option<&Participant> {
        self.participants.iter().find(|p| p.identity() == *me)
    }

    /// Removes the entries of dead processes (other than `me`), taking their threads out of
    /// the count. True when one was removed. Lock held.
    fn remove_dead(&self, me: &Identity) -> Result<bool> {
        let mut found = false;
        for (i, p) in self.participants.iter().enumerate() {
            let who = p.identity();
            if who.id == 0 || who == *me || liveness::is_process_alive(&who) {
                continue;
            }
            let inside = p.inside.load(Relaxed);
            let count = self.count.load(Relaxed);
            if inside > count {
                return Err(corrupted(format!(
                    "participant {i} counts {inside} threads inside, more than the barrier's count {count}"
                )));
            }
            // A death between these two stores is repaired by `recover`, which recounts.
            self.count.store(count - inside, Relaxed);
            p.id.store(0, Release);
            found = true;
        }
        Ok(found)
    }

    /// Checks the participants when nobody did for a slice; breaks the barrier when one is
    /// dead. Lock held.
    fn check_if_due(&self, me: &Identity) -> Result<()> {
        let now = now_ns();
        let last = self.last_check.load(Relaxed);
        if last <= now && now - last < CHECK_SLICE_NS {
            return Ok(());
        }
        self.last_check.store(now, Relaxed);
        if self.remove_dead(me)? {
            self.break_barrier();
        }
        Ok(())
    }

    /// Sleeps (lock released) until the state changes, a slice or the deadline passes; returns
    /// with the lock held again (`*held` false when re-locking failed: the error is returned)
    /// and the fields validated. A slice's end is `Woken`. When `blocked` still holds after
    /// re-locking, the participants are checked (only then: a process that left a released
    /// round and exited must not break the round it completed).
    fn wait_changed(
        &self,
        me: &Identity,
        deadline: Deadline,
        interrupt: Interrupt,
        held: &mut bool,
        blocked: fn(u32) -> bool,
    ) -> Result<Wait> {
        let seen = self.changed.load(Acquire);
        self.unlock();
        *held = false;
        let (until, is_slice) = slice(deadline);
        let w = self.changed.wait(seen, until, interrupt);
        self.lock()?;
        *held = true;
        if blocked(self.state()) {
            self.check_if_due(me)?;
        }
        Ok(match w {
            Wait::TimedOut if is_slice => Wait::Woken,
            w => w,
        })
    }

    /// Registers the calling process in the participants table (idempotent; a wait does it
    /// too, on arrival), so that its death breaks the barrier. Returns false when the table is
    /// full: the process is then not tracked (its death goes unnoticed).
    ///
    /// Errors: `WEFT_CORRUPTED`, `WEFT_NOT_RECOVERABLE`, an error reading the caller's
    /// identity. Thread- and process-safe.
    pub fn register(&self) -> Result<bool> {
        let me = liveness::current_process()?;
        self.lock()?;
        let r = self.register_locked(&me).is_some();
        self.unlock();
        Ok(r)
    }

    /// Removes the calling process from the participants table: call it when the process
    /// closes its handle normally, so that its later exit does not break the barrier. Does
    /// nothing while threads of the process are inside the barrier, or when the barrier's lock
    /// cannot be taken (corrupted, not recoverable). Thread- and process-safe.
    pub fn leave(&self) {
        let Ok(me) = liveness::current_process() else { return };
        if self.lock().is_err() {
            return;
        }
        if let Some(p) = self.find(&me) {
            if p.inside.load(Relaxed) == 0 {
                p.id.store(0, Release);
            }
        }
        self.unlock();
    }

    /// Waits until `parties` threads have called `wait`. Returns this thread's arrival index:
    /// 0 for the first to arrive, `parties - 1` for the last, which runs its `action` (if any)
    /// before releasing the others. Waits while a previous round drains or a reset completes.
    ///
    /// Errors: `WEFT_BROKEN` — the barrier is or becomes broken (aborted, reset while waited
    /// on, another wait timed out, an action failed, or a participating process died);
    /// `WEFT_TIMEOUT` — the deadline passed (also for `Deadline::Now`); the barrier is now
    /// broken for everyone; `WEFT_CANCELLED` (also breaks it); the action's error (the barrier
    /// is broken; a panic in it is `WEFT_PANIC`); `WEFT_CORRUPTED` — a field failed
    /// validation; `WEFT_NOT_RECOVERABLE`; an error reading the caller's identity.
    ///
    /// The calling process is registered on arrival (see [`register`](Self::register)).
    /// Thread- and process-safe.
    pub fn wait(&self, deadline: Deadline, interrupt: Interrupt, action: Option<&dyn Fn() -> Result<()>>) -> Result<u32> {
        let me = liveness::current_process()?;
        self.lock()?;
        let mut held = true;
        let r = self.wait_locked(&me, deadline, interrupt, action, &mut held);
        if held {
            self.unlock();
        }
        r
    }

    fn wait_locked(
        &self,
        me: &Identity,
        deadline: Deadline,
        interrupt: Interrupt,
        action: Option<&dyn Fn() -> Result<()>>,
        held: &mut bool,
    ) -> Result<u32> {
        // Wait while a previous round drains or a reset completes.
        while matches!(self.state(), DRAINING | RESETTING) {
            match self.wait_changed(me, deadline, interrupt, held, |s| matches!(s, DRAINING | RESETTING))? {
                Wait::Woken => {}
                w => return Err(Error::from_wait(w, deadline, "timed out waiting for the barrier to drain")),
            }
        }
        if self.state() == BROKEN {
            return Err(broken());
        }
        // Validated under the lock, but re-checked here: a peer may scribble at any time.
        let parties = self.parties.load(Relaxed);
        let index = self.count.load(Relaxed);
        if index >= parties {
            return Err(corrupted(format!("`count` is {index} with {parties} parties at an arrival")));
        }
        match self.register_locked(me) {
            Some(i) => {
                let p = &self.participants[i];
                p.inside.store(p.inside.load(Relaxed).saturating_add(1), Relaxed);
            }
            None => {
                self.untracked.store(self.untracked.load(Relaxed).saturating_add(1), Relaxed);
            }
        }
        self.count.store(index + 1, Relaxed);
        let result = if index + 1 == parties {
            self.release_round(action).map(|_| index)
        } else {
            self.wait_round(me, deadline, interrupt, held).map(|_| index)
        };
        if !*held {
            return result;
        }
        // Leave: the last one out of a draining or resetting round refills the barrier.
        match self.find(me).filter(|p| p.inside.load(Relaxed) > 0) {
            Some(p) => p.inside.store(p.inside.load(Relaxed).saturating_sub(1), Relaxed),
            None => self.untracked.store(self.untracked.load(Relaxed).saturating_sub(1), Relaxed),
        }
        let count = self.count.load(Relaxed);
        if count == 0 {
            return Err(corrupted("`count` is 0 while a thread leaves the barrier".into()));
        }
        self.count.store(count - 1, Relaxed);
        if count == 1 && matches!(self.state(), DRAINING | RESETTING) {
            self.set_state(FILLING);
            self.notify_all();
        }
        result
    }

    fn release_round(&self, action: Option<&dyn Fn() -> Result<()>>) -> Result<()> {
        if let Some(action) = action {
            if let Err(e) = crate::status::catch(action) {
                self.break_barrier();
                return Err(e);
            }
        }
        self.set_state(DRAINING);
        self.notify_all();
        Ok(())
    }

    fn wait_round(&self, me: &Identity, deadline: Deadline, interrupt: Interrupt, held: &mut bool) -> Result<()> {
        while self.state() == FILLING {
            match self.wait_changed(me, deadline, interrupt, held, |s| s == FILLING)? {
                Wait::Woken => {}
                w => {
                    if self.state() != FILLING {
                        break;
                    }
                    self.break_barrier();
                    let e = Error::from_wait(w, deadline, "timed out at the barrier; it is now broken");
                    let code = if e.code == WEFT_WOULD_BLOCK { WEFT_TIMEOUT } else { e.code };
                    return Err(Error::new(code, e.message));
                }
            }
        }
        if matches!(self.state(), BROKEN | RESETTING) {
            return Err(broken());
        }
        Ok(())
    }

    /// Returns the barrier to its initial state, as Python's `reset`: threads waiting on it
    /// get `WEFT_BROKEN`; once they have left, the barrier fills again. Entries of dead
    /// processes are removed first (so a barrier broken by a death is usable again).
    ///
    /// Errors: `WEFT_CORRUPTED`, `WEFT_NOT_RECOVERABLE`, an error reading the caller's
    /// identity. Thread- and process-safe.
    pub fn reset(&self) -> Result<()> {
        let me = liveness::current_process()?;
        self.lock()?;
        let r = self.remove_dead(&me).map(|_| {
            if self.count.load(Relaxed) > 0 {
                if matches!(self.state(), FILLING | BROKEN) {
                    self.set_state(RESETTING);
                }
            } else {
                self.set_state(FILLING);
            }
            self.notify_all();
        });
        self.unlock();
        r
    }

    /// Breaks the barrier: current and future waiters get `WEFT_BROKEN` until
    /// [`reset`](Self::reset). Errors: `WEFT_CORRUPTED`, `WEFT_NOT_RECOVERABLE`. Thread- and
    /// process-safe.
    pub fn abort(&self) -> Result<()> {
        self.lock()?;
        self.break_barrier();
        self.unlock();
        Ok(())
    }

    /// Number of parties (as stored: a corrupted barrier may report 0). Takes no lock.
    pub fn parties(&self) -> u32 {
        self.parties.load(Relaxed)
    }

    /// Threads currently waiting in the filling phase. Takes no lock (as in Python), so an
    /// action may call it. Thread- and process-safe.
    pub fn n_waiting(&self) -> u32 {
        if self.state() == FILLING {
            self.count.load(Relaxed).min(self.parties())
        } else {
            0
        }
    }

    /// True when the barrier is broken. Takes no lock. Thread- and process-safe.
    pub fn broken(&self) -> bool {
        self.state() == BROKEN
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{WEFT_INVALID_ARGUMENT, WEFT_INVALID_STATE, WEFT_NOT_RECOVERABLE};
    use crate::test_support::{fork_child, wait_child, SharedMap};
    use std::time::{Duration, Instant};

    const LONG_NS: u64 = 20_000_000_000;
    const CYCLES: usize = 5;
    const PROCS: usize = 4;

    #[repr(C)]
    struct Shared {
        barrier: SharedBarrier,
        actions: AtomicU32,
        index: [[AtomicU32; PROCS]; CYCLES],
    }

    fn mapped(parties: u32) -> SharedMap<Shared> {
        SharedMap::new(Shared {
            barrier: SharedBarrier::new(parties).unwrap(),
            actions: AtomicU32::new(0),
            index: std::array::from_fn(|_| std::array::from_fn(|_| AtomicU32::new(u32::MAX))),
        })
    }

    fn until(what: &str, mut cond: impl FnMut() -> bool) {
        let end = Instant::now() + Duration::from_secs(10);
        while !cond() {
            assert!(Instant::now() < end, "gave up waiting for: {what}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    fn exited_ok(pid: libc::pid_t) -> bool {
        let st = wait_child(pid);
        libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0
    }

    fn long() -> Deadline {
        Deadline::from_timeout_ns(LONG_NS)
    }

    fn code(r: Result<u32>) -> i32 {
        r.map_or_else(|e| e.code, |_| 0)
    }

    /// A child whose wait must end with `expected` (0: success).
    fn child_expecting(b: &SharedBarrier, expected: i32) -> libc::pid_t {
        fork_child(move || code(b.wait(long(), Interrupt::Uninterruptible, None)) == expected)
    }

    #[test]
    fn new_rejects_zero_parties() {
        assert_eq!(SharedBarrier::<SharedWord>::new(0).unwrap_err().code, WEFT_INVALID_ARGUMENT);
    }

    #[test]
    fn processes_pass_cycles_with_distinct_indices_and_one_action_each() {
        let m = mapped(PROCS as u32);
        let s = m.get();
        let run = |p: usize| {
            let action = || {
                s.actions.fetch_add(1, Relaxed);
                Ok(())
            };
            for c in 0..CYCLES {
                let i = s.barrier.wait(long(), Interrupt::Uninterruptible, Some(&action)).unwrap();
                s.index[c][p].store(i, Relaxed);
            }
            true
        };
        let pids: Vec<_> = (1..PROCS).map(|p| fork_child(move || run(p))).collect();
        run(0);
        for pid in pids {
            assert!(exited_ok(pid));
        }
        for c in 0..CYCLES {
            let mut got: Vec<u32> = s.index[c].iter().map(|a| a.load(Relaxed)).collect();
            got.sort_unstable();
            assert_eq!(got, (0..PROCS as u32).collect::<Vec<_>>(), "cycle {c}");
        }
        assert_eq!(s.actions.load(Relaxed), CYCLES as u32, "one action per cycle");
        assert!(!s.barrier.broken());
        assert_eq!(s.barrier.n_waiting(), 0);
        assert_eq!(s.barrier.count.load(Relaxed), 0);
    }

    #[test]
    fn timeout_breaks_it_for_everyone() {
        let m = mapped(3);
        let s = m.get();
        let child = child_expecting(&s.barrier, WEFT_BROKEN);
        until("the child waits", || s.barrier.n_waiting() == 1);
        let d = Deadline::from_timeout_ns(100_000_000);
        let e = s.barrier.wait(d, Interrupt::Uninterruptible, None).unwrap_err();
        assert_eq!(e.code, WEFT_TIMEOUT);
        assert!(d.expired(), "did not return before the deadline");
        assert!(s.barrier.broken());
        assert!(exited_ok(child), "the other waiter got WEFT_BROKEN");
        assert_eq!(code(s.barrier.wait(long(), Interrupt::Uninterruptible, None)), WEFT_BROKEN);
        // Deadline::Now at a filling barrier is a timeout too (and breaks it).
        s.barrier.reset().unwrap();
        assert_eq!(code(s.barrier.wait(Deadline::Now, Interrupt::Uninterruptible, None)), WEFT_TIMEOUT);
        assert!(s.barrier.broken());
    }

    #[test]
    fn abort_reset_and_action_errors() {
        let m = mapped(2);
        let s = m.get();
        let child = child_expecting(&s.barrier, WEFT_BROKEN);
        until("the child waits", || s.barrier.n_waiting() == 1);
        s.barrier.abort().unwrap();
        assert!(exited_ok(child));
        assert_eq!(code(s.barrier.wait(Deadline::Now, Interrupt::Uninterruptible, None)), WEFT_BROKEN);
        s.barrier.reset().unwrap();
        assert!(!s.barrier.broken());
        // Usable again.
        let child = fork_child(|| s.barrier.wait(long(), Interrupt::Uninterruptible, None).is_ok_and(|i| i <= 1));
        assert!(s.barrier.wait(long(), Interrupt::Uninterruptible, None).unwrap() <= 1);
        assert!(exited_ok(child));
        // Reset while a thread waits: it gets WEFT_BROKEN; then the barrier fills again.
        let child = child_expecting(&s.barrier, WEFT_BROKEN);
        until("the child waits", || s.barrier.n_waiting() == 1);
        s.barrier.reset().unwrap();
        assert!(exited_ok(child));
        until("the round drained", || s.barrier.state() == FILLING);
        // An action error breaks the barrier: its runner gets the error, the others BROKEN.
        let child = child_expecting(&s.barrier, WEFT_BROKEN);
        until("the child waits", || s.barrier.n_waiting() == 1);
        let failing = || -> Result<()> { Err(Error::new(WEFT_INVALID_STATE, "action failed")) };
        let e = s.barrier.wait(long(), Interrupt::Uninterruptible, Some(&failing)).unwrap_err();
        assert_eq!(e.code, WEFT_INVALID_STATE);
        assert!(exited_ok(child));
        assert!(s.barrier.broken());
        s.barrier.reset().unwrap();
        assert_eq!(s.barrier.count.load(Relaxed), 0);
    }

    #[test]
    fn participant_killed_before_arriving_breaks_the_barrier() {
        let m = mapped(3);
        let s = m.get();
        // Round 1: three processes pass, so all are registered.
        let a = fork_child(|| {
            s.barrier.wait(long(), Interrupt::Uninterruptible, None).is_ok()
                && code(s.barrier.wait(long(), Interrupt::Uninterruptible, None)) == WEFT_BROKEN
        });
        let x = fork_child(|| {
            s.barrier.wait(long(), Interrupt::Uninterruptible, None).unwrap();
            // SAFETY: dies before arriving at round 2.
            unsafe { libc::raise(libc::SIGKILL) };
            false
        });
        s.barrier.wait(long(), Interrupt::Uninterruptible, None).unwrap();
        // Round 2: x never arrives. The waits have 20 s deadlines; they must end BROKEN.
        let e = s.barrier.wait(long(), Interrupt::Uninterruptible, None).unwrap_err();
        assert_eq!(e.code, WEFT_BROKEN, "the death broke the barrier (not a timeout)");
        assert!(exited_ok(a), "the other waiter got WEFT_BROKEN too");
        assert!(libc::WIFSIGNALED(wait_child(x)));
        // Reset: usable again with new processes.
        s.barrier.reset().unwrap();
        assert!(!s.barrier.broken());
        let kids: Vec<_> = (0..2).map(|_| child_expecting(&s.barrier, 0)).collect();
        s.barrier.wait(long(), Interrupt::Uninterruptible, None).unwrap();
        for k in kids {
            assert!(exited_ok(k));
        }
        assert!(!s.barrier.broken());
    }

    #[test]
    fn participant_killed_while_waiting_breaks_the_barrier() {
        let m = mapped(3);
        let s = m.get();
        let victim = fork_child(|| {
            let _ = s.barrier.wait(long(), Interrupt::Uninterruptible, None);
            false
        });
        until("the victim waits", || s.barrier.n_waiting() == 1);
        // SAFETY: kills our own child while it waits.
        unsafe { libc::kill(victim, libc::SIGKILL) };
        let e = s.barrier.wait(long(), Interrupt::Uninterruptible, None).unwrap_err();
        assert_eq!(e.code, WEFT_BROKEN);
        assert!(libc::WIFSIGNALED(wait_child(victim)));
        assert_eq!(s.barrier.count.load(Relaxed), 0, "the dead waiter was taken out of the count");
        s.barrier.reset().unwrap();
        assert_eq!(s.barrier.state(), FILLING);
    }

    #[test]
    fn a_process_that_left_does_not_break_it_one_that_did_not_does() {
        let m = mapped(2);
        let s = m.get();
        let polite = fork_child(|| {
            let ok = s.barrier.wait(long(), Interrupt::Uninterruptible, None).is_ok();
            s.barrier.leave();
            ok
        });
        s.barrier.wait(long(), Interrupt::Uninterruptible, None).unwrap();
        assert!(exited_ok(polite));
        let me = liveness::current_process().unwrap();
        assert!(s.barrier.participants.iter().all(|p| p.id.load(Relaxed) == 0 || p.identity() == me));
        // The parent waits across several liveness checks before the next child arrives.
        let late = fork_child(|| {
            std::thread::sleep(Duration::from_millis(300));
            s.barrier.wait(long(), Interrupt::Uninterruptible, None).is_ok()
        });
        s.barrier.wait(long(), Interrupt::Uninterruptible, None).unwrap();
        assert!(exited_ok(late), "late left without calling leave");
        // `late` exited without leaving: it counts as dead.
        let e = s.barrier.wait(long(), Interrupt::Uninterruptible, None).unwrap_err();
        assert_eq!(e.code, WEFT_BROKEN);
        s.barrier.reset().unwrap();
        assert!(s.barrier.register().unwrap());
    }

    #[test]
    fn internal_lock_holder_death_breaks_and_reset_recovers() {
        let m = mapped(2);
        let s = m.get();
        let pid = fork_child(|| {
            s.barrier.lock.acquire(Deadline::Never, Interrupt::Uninterruptible).unwrap();
            // SAFETY: dies holding the internal lock.
            unsafe { libc::raise(libc::SIGKILL) };
            false
        });
        assert!(libc::WIFSIGNALED(wait_child(pid)));
        assert_eq!(code(s.barrier.wait(long(), Interrupt::Uninterruptible, None)), WEFT_BROKEN);
        s.barrier.reset().unwrap();
        let child = child_expecting(&s.barrier, 0);
        s.barrier.wait(long(), Interrupt::Uninterruptible, None).unwrap();
        assert!(exited_ok(child));
    }

    #[test]
    fn garbage_in_the_fields_is_corrupted_not_a_panic() {
        let m = mapped(2);
        let b = &m.get().barrier;
        let now = || Deadline::Now;
        b.state.store(9, Relaxed);
        assert_eq!(code(b.wait(now(), Interrupt::Uninterruptible, None)), WEFT_CORRUPTED);
        assert_eq!(b.abort().unwrap_err().code, WEFT_CORRUPTED);
        assert_eq!(b.reset().unwrap_err().code, WEFT_CORRUPTED);
        assert_eq!(b.register().unwrap_err().code, WEFT_CORRUPTED);
        b.leave();
        assert!(!b.broken() && b.n_waiting() == 0);
        b.state.store(FILLING, Relaxed);
        b.count.store(1000, Relaxed);
        assert_eq!(code(b.wait(now(), Interrupt::Uninterruptible, None)), WEFT_CORRUPTED);
        assert_eq!(b.n_waiting(), 2);
        b.count.store(2, Relaxed);
        assert_eq!(code(b.wait(now(), Interrupt::Uninterruptible, None)), WEFT_CORRUPTED);
        b.count.store(0, Relaxed);
        b.parties.store(0, Relaxed);
        assert_eq!(code(b.wait(now(), Interrupt::Uninterruptible, None)), WEFT_CORRUPTED);
        b.parties.store(2, Relaxed);
        // A dead participant claiming more threads inside than the count.
        let pid = fork_child(|| true);
        assert!(exited_ok(pid));
        let p = &b.participants[5];
        p.start_time.store(1, Relaxed);
        p.inside.store(50, Relaxed);
        p.id.store(pid as u32, Relaxed);
        assert_eq!(code(b.wait(now(), Interrupt::Uninterruptible, None)), WEFT_CORRUPTED);
        p.id.store(0, Relaxed);
        // Garbage left by a process that died holding the internal lock: unrecoverable.
        b.count.store(0, Relaxed);
        b.state.store(FILLING, Relaxed);
        b.reset().unwrap();
        let pid = fork_child(|| {
            b.lock.acquire(Deadline::Never, Interrupt::Uninterruptible).unwrap();
            b.untracked.store(77, Relaxed);
            // SAFETY: dies holding the internal lock.
            unsafe { libc::raise(libc::SIGKILL) };
            false
        });
        assert!(libc::WIFSIGNALED(wait_child(pid)));
        assert_eq!(code(b.wait(now(), Interrupt::Uninterruptible, None)), WEFT_CORRUPTED);
        assert_eq!(code(b.wait(now(), Interrupt::Uninterruptible, None)), WEFT_NOT_RECOVERABLE);
    }
}
