//! Cross-process tests of the LIFO and priority kinds of the shared queue: a child killed at
//! every step of every operation (the crash hook), forked producers and consumers, and
//! processes killed at random moments with a ledger of what was committed.

use super::journal;
use super::process_tests::{drain, message, mix, verify, Shm, BIG};
use super::*;
use crate::status::WEFT_WOULD_BLOCK;
use crate::test_support::{fork_child, wait_child, XorShift};

const NEVER: Deadline = Deadline::Never;
const NOW: Deadline = Deadline::Now;
const KINDS: [Kind; 2] = [Kind::Lifo, Kind::Priority];

/// What crashed runs showed: how many were killed inside an update (journal valid) that was
/// then rolled back, or kept because it had committed.
#[derive(Default)]
struct Seen {
    rolled_back: u32,
    kept: u32,
}

/// A step of an operation that puts or gets several items, which commit one by one.
type Part<'a> = &'a dyn Fn(&SharedQueue);

/// Runs `op` on a fresh queue of `kind` prepared by `setup` in children killed at its step 1,
/// 2, ... until one completes. After each, the next locker recovers; the queue passes the
/// census, holds exactly (in delivery order) what it held before `op`, or what `op` leaves, or
/// — for an operation of n items, whose first n - 1 are given as `parts` — what a prefix of
/// them leaves, never going back to an earlier state once a later one was seen; it works, and
/// has every chunk back when drained. Returns the number of steps.
fn crash_at_every_step(
    kind: Kind,
    what: &str,
    seen: &mut Seen,
    setup: &dyn Fn(&SharedQueue),
    op: &dyn Fn(&SharedQueue) -> Result<()>,
    parts: &[Part],
) -> u32 {
    const ARENA: u64 = 4096;
    let what = format!("{kind:?} {what}");
    let space = SpaceHandle::anonymous(4 << 20).unwrap();
    let fresh = || {
        let q = SharedQueue::create(space.clone(), None, Options { kind, max_bytes: ARENA, ..Options::default() }).unwrap();
        setup(&q);
        q
    };
    let after = {
        let q = fresh();
        op(&q).unwrap();
        drain(&q, &what)
    };
    let mut states = vec![drain(&fresh(), &what)];
    for k in 1..=parts.len() {
        let q = fresh();
        parts[..k].iter().for_each(|p| p(&q));
        states.push(drain(&q, &what));
    }
    states.push(after);
    assert_ne!(states[0], states[states.len() - 1], "{what}");
    let (mut crashed_first, mut crashed_last, mut reached) = (false, false, 0);
    for n in 1.. {
        let q = fresh();
        let pid = fork_child(|| {
            crate::space::dict::crash::arm(n);
            op(&q).is_ok()
        });
        let st = wait_child(pid);
        let crashed = libc::WIFSIGNALED(st) && libc::WTERMSIG(st) == libc::SIGKILL;
        assert!(crashed || (libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0), "{what}, step {n}: status {st:#x}");
        let interrupted = journal::in_progress(&q);
        let (items, _) = q.check_ordered().unwrap_or_else(|e| panic!("{what}, step {n}: {e:?}"));
        assert!(!journal::in_progress(&q), "{what}, step {n}: recovered");
        let discarded = q.header().shutdown.load(Relaxed) == SHUT_NOW;
        let now = drain(&q, &what);
        if !discarded {
            assert_eq!(items as usize, now.1.len(), "{what}, step {n}");
        }
        let Some(i) = states.iter().position(|s| *s == now) else {
            panic!("{what}, step {n}: not a state the operation goes through: {now:?}");
        };
        assert!(i >= reached, "{what}, step {n}: back to state {i} after state {reached}");
        if interrupted {
            // Killed inside an update: rolled back, or kept when it had committed.
            if i == reached {
                seen.rolled_back += 1;
            } else {
                seen.kept += 1;
            }
        }
        reached = i;
        crashed_first |= crashed && i == 0;
        crashed_last |= crashed && i == states.len() - 1;
        if !discarded {
            assert_eq!(q.check_ordered().unwrap(), (0, ARENA / 64), "{what}, step {n}: every chunk free");
            let biggest = vec![3u8; (ARENA - 24) as usize];
            if !now.0 {
                q.put(&biggest, 0, NOW).unwrap();
                assert_eq!(q.get(NOW).unwrap(), biggest, "{what}, step {n}");
            }
        }
        if !crashed {
            assert!(crashed_first && crashed_last, "{what}: crashes both before and after the commit");
            return n - 1;
        }
    }
    unreachable!()
}

#[test]
fn killed_at_every_step_of_every_operation() {
    let a = vec![b'a'; 100];
    let c = vec![b'c'; 1000];
    let d = vec![b'd'; 10];
    // 15 items of priorities 10..24 (a heap of 4 levels), some of several chunks; two taken,
    // so that the free list is not in order.
    let items = |q: &SharedQueue| {
        for i in 0..15u32 {
            q.put(&vec![i as u8; (i as usize * 37) % 130], 10 + i64::from(i * 7 % 15), NOW).unwrap();
        }
        q.get(NOW).unwrap();
        q.get(NOW).unwrap();
        q.put(&a, 5, NOW).unwrap();
    };
    let mut seen = Seen::default();
    for kind in KINDS {
        // Steps of a put: locked | head written | bytes (one step per chunk) | journal written |
        // journal valid | each word changed | committed | unlocked.
        let s = &mut seen;
        assert!(crash_at_every_step(kind, "put", s, &items, &|q| q.put(&d, 0, NEVER), &[]) >= 10);
        // A sift from the bottom to the root of the heap, of an item of 16 chunks.
        assert!(crash_at_every_step(kind, "put big", s, &items, &|q| q.put(&c, -1, NEVER), &[]) >= 25);
        // A put that stays at the bottom.
        crash_at_every_step(kind, "put last", s, &items, &|q| q.put(&d, 99, NEVER), &[]);
        let many = |q: &SharedQueue| {
            let (n, r) = q.put_many(&[&c, &d, &a], 7, NEVER);
            assert_eq!(n, 3);
            r
        };
        let pc = |q: &SharedQueue| q.put(&c, 7, NOW).unwrap();
        let pd = |q: &SharedQueue| q.put(&d, 7, NOW).unwrap();
        crash_at_every_step(kind, "put_many", s, &items, &many, &[&pc, &pd]);
        // A get: the root (priority 5: `a`) or the top of the stack (`a` too), then a sift down.
        let get = |q: &SharedQueue| q.get(NEVER).map(|m| assert_eq!(m, a));
        assert!(crash_at_every_step(kind, "get", s, &items, &get, &[]) >= 8);
        let take = |q: &SharedQueue| {
            q.get(NOW).unwrap();
        };
        let get_many = |q: &SharedQueue| q.get_many(4, NEVER).map(|m| assert_eq!(m.len(), 4));
        crash_at_every_step(kind, "get_many", s, &items, &get_many, &[&take, &take, &take]);
        let with_c = |q: &SharedQueue| {
            items(q);
            q.put(&c, -3, NOW).unwrap();
        };
        let into = |q: &SharedQueue| {
            let mut buf = [0u8; 2000];
            let f = q.get_into(&mut buf, NEVER)?;
            assert!(f == Filled::Item(1000) && buf[..1000] == c[..]);
            Ok(())
        };
        crash_at_every_step(kind, "get_into", s, &with_c, &into, &[]);
        crash_at_every_step(kind, "shutdown(immediate)", s, &items, &|q| q.shutdown(true), &[]);
    }
    assert!(seen.rolled_back > 20 && seen.kept > 5, "updates interrupted: {} rolled back, {} kept", seen.rolled_back, seen.kept);
}

/// The priority of message `seq` of producer `p` in the tests below.
fn priority_of(p: u32, seq: u32) -> i64 {
    (mix(u64::from(p) << 40 | u64::from(seq)) % 9) as i64 - 4
}

#[test]
fn a_child_puts_and_the_parent_gets_in_order() {
    for kind in KINDS {
        let space = SpaceHandle::anonymous(4 << 20).unwrap();
        let q = SharedQueue::create(space, None, Options { kind, ..Options::default() }).unwrap();
        let token = q.token();
        let pid = fork_child(|| {
            let Ok(q) = SharedQueue::from_token(&token) else { return false };
            (0..200u32).all(|i| q.put(&i.to_le_bytes(), priority_of(0, i), NEVER).is_ok())
        });
        assert!(libc::WIFEXITED(wait_child(pid)));
        let mut want: Vec<u32> = (0..200).collect();
        if kind == Kind::Lifo {
            want.reverse();
        } else {
            want.sort_by_key(|&i| (priority_of(0, i), i));
        }
        let got: Vec<u32> = (0..200).map(|_| u32::from_le_bytes(q.get(NOW).unwrap().try_into().unwrap())).collect();
        assert_eq!(got, want, "{kind:?}");
    }
}

#[test]
fn processes_exchange_checksummed_messages_exactly_once() {
    const PRODUCERS: u32 = 2;
    const N: u32 = 1500;
    for kind in KINDS {
        let space = SpaceHandle::anonymous(16 << 20).unwrap();
        let q = SharedQueue::create(space, None, Options { kind, maxsize: 50, max_bytes: 300 << 10, ..Options::default() })
            .unwrap();
        let token = q.token();
        let delivered = Shm::new((PRODUCERS * N) as usize);
        let mut consumers = Vec::new();
        for _ in 0..2 {
            consumers.push(fork_child(|| {
                let Ok(q) = SharedQueue::from_token(&token) else { return false };
                let (mut buf, mut scratch) = (vec![0u8; BIG], Vec::new());
                loop {
                    match q.get_into(&mut buf, NEVER) {
                        Ok(Filled::Item(n)) => match verify(&buf[..n], &mut scratch) {
                            Some((p, seq)) if p < PRODUCERS && seq < N => {
                                delivered.u8((p * N + seq) as usize).fetch_add(1, SeqCst);
                            }
                            _ => return false,
                        },
                        Err(e) if e.code == WEFT_CLOSED => return true,
                        _ => return false,
                    }
                }
            }));
        }
        let mut producers = Vec::new();
        for p in 0..PRODUCERS {
            let q = &q;
            producers.push(fork_child(move || {
                let mut m = Vec::new();
                (0..N).all(|seq| {
                    message(p, seq, &mut m);
                    q.put(&m, priority_of(p, seq), NEVER).is_ok()
                })
            }));
        }
        for pid in producers {
            let st = wait_child(pid);
            assert!(libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0, "{kind:?} producer: status {st:#x}");
        }
        q.shutdown(false).unwrap();
        for pid in consumers {
            let st = wait_child(pid);
            assert!(libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0, "{kind:?} consumer: status {st:#x}");
        }
        for i in 0..(PRODUCERS * N) as usize {
            assert_eq!(delivered.u8(i).load(SeqCst), 1, "{kind:?}: message {i} delivered once");
        }
        assert_eq!(q.check_ordered().unwrap(), (0, (300 << 10) / 64));
    }
}

/// Rounds of two producer and two consumer processes killed with SIGKILL at random moments,
/// busy with messages of up to 64 KiB and random priorities; after each round the parent drains
/// the queue and checks the ledger: nothing delivered twice or torn, nothing delivered that no
/// put attempted, every put that returned delivered — except at most what killed consumers
/// took between their get's commit and their ledger entry — and the queue still works with no
/// chunk lost.
#[test]
fn processes_killed_at_random_moments_lose_nothing_committed() {
    const ROUNDS: usize = 6;
    const PRODUCERS: usize = 2;
    const CONSUMERS: usize = 2;
    const MAX_SEQ: usize = 1 << 16;
    let arena = 256u64 << 10;
    for kind in KINDS {
        let space = SpaceHandle::anonymous(16 << 20).unwrap();
        let q = SharedQueue::create(space, None, Options { kind, maxsize: 200, max_bytes: arena, ..Options::default() }).unwrap();
        let ids = ROUNDS * PRODUCERS;
        let counters = Shm::new(8 * (2 * ids + 1));
        let (attempted, committed, bad) = (|p: usize| counters.u64(p), |p: usize| counters.u64(ids + p), counters.u64(2 * ids));
        let delivered = Shm::new(ids * MAX_SEQ);
        let slot = |p: u32, seq: u32| p as usize * MAX_SEQ + seq as usize;
        let seed = now_ns() | 1;
        let mut rng = XorShift(seed);
        let mut in_put_kills = 0;
        for round in 0..ROUNDS {
            let first = (round * PRODUCERS) as u32;
            let enter = |m: &[u8]| {
                let id = |r: std::ops::Range<usize>| m.get(r).map_or(u32::MAX, |b| u32::from_le_bytes(b.try_into().unwrap()));
                let (p, seq) = (id(0..4), id(4..8));
                let known = (p as usize) < ids && (seq as usize) < MAX_SEQ;
                if known {
                    delivered.u8(slot(p, seq)).fetch_add(1, SeqCst);
                }
                known
            };
            let check = |m: &[u8], scratch: &mut Vec<u8>| {
                let ok = verify(m, scratch).is_some();
                if !ok {
                    bad.fetch_add(1, SeqCst);
                }
                ok
            };
            let mut children = Vec::new();
            for c in 0..CONSUMERS {
                let q = &q;
                children.push(fork_child(|| {
                    let (mut buf, mut scratch) = (vec![0u8; BIG], Vec::new());
                    loop {
                        let ok = if c == 0 {
                            match q.get_into(&mut buf, NEVER) {
                                Ok(Filled::Item(n)) => enter(&buf[..n]) && check(&buf[..n], &mut scratch),
                                _ => false,
                            }
                        } else {
                            match q.get_many(3, NEVER) {
                                Ok(ms) => ms.iter().all(|m| enter(m)) && ms.iter().all(|m| check(m, &mut scratch)),
                                Err(_) => false,
                            }
                        };
                        if !ok {
                            return false;
                        }
                    }
                }));
            }
            for i in 0..PRODUCERS {
                let (q, p) = (&q, first + i as u32);
                children.push(fork_child(move || {
                    let mut m = Vec::new();
                    for seq in 0..MAX_SEQ as u32 {
                        message(p, seq, &mut m);
                        attempted(p as usize).store(u64::from(seq) + 1, SeqCst);
                        if q.put(&m, priority_of(p, seq), NEVER).is_err() {
                            return false;
                        }
                        committed(p as usize).store(u64::from(seq) + 1, SeqCst);
                    }
                    true
                }));
            }
            std::thread::sleep(std::time::Duration::from_micros(3_000 + rng.next() % 25_000));
            while !children.is_empty() {
                let pid = children.swap_remove((rng.next() % children.len() as u64) as usize);
                // SAFETY: kills our own child.
                unsafe { libc::kill(pid, libc::SIGKILL) };
                let st = wait_child(pid);
                assert!(
                    libc::WIFSIGNALED(st) || (libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0),
                    "{kind:?} round {round}: a child failed (status {st:#x}), seed {seed:#x}"
                );
                std::thread::sleep(std::time::Duration::from_micros(rng.next() % 2_000));
            }
            // Drain: every child is dead; the first locker recovers.
            let (mut buf, mut scratch) = (vec![0u8; BIG], Vec::new());
            loop {
                match q.get_into(&mut buf, NOW) {
                    Ok(Filled::Item(n)) => {
                        let m = &buf[..n];
                        assert!(enter(m) && check(m, &mut scratch), "{kind:?} round {round}: bad message, seed {seed:#x}");
                    }
                    Err(e) if e.code == WEFT_WOULD_BLOCK => break,
                    r => panic!("{kind:?} round {round}: {r:?}, seed {seed:#x}"),
                }
            }
            assert_eq!(bad.load(SeqCst), 0, "{kind:?} round {round}: torn or unknown messages, seed {seed:#x}");
            let mut missing = 0;
            for p in first..first + PRODUCERS as u32 {
                let (a, c) = (attempted(p as usize).load(SeqCst) as u32, committed(p as usize).load(SeqCst) as u32);
                assert!(c <= a && a as usize <= MAX_SEQ);
                in_put_kills += usize::from(a > c);
                for seq in 0..MAX_SEQ as u32 {
                    let d = delivered.u8(slot(p, seq)).load(SeqCst);
                    assert!(d <= 1, "{kind:?} round {round}: message ({p}, {seq}) delivered {d} times, seed {seed:#x}");
                    assert!(d == 0 || seq < a, "{kind:?} round {round}: ({p}, {seq}) delivered, never put, seed {seed:#x}");
                    missing += usize::from(d == 0 && seq < c);
                }
            }
            // At most 1 for the get_into consumer, 3 for get_many (see process_tests.rs).
            assert!(missing <= 1 + 3, "{kind:?} round {round}: {missing} committed messages lost, seed {seed:#x}");
            assert_eq!(q.check_ordered().unwrap(), (0, arena / 64), "{kind:?} round {round}: no chunk lost");
            let biggest = vec![0x5a; (arena - 24) as usize];
            q.put(&biggest, 0, NOW).unwrap();
            assert_eq!(q.get(NOW).unwrap(), biggest);
            assert!(q.empty());
        }
        assert!(in_put_kills > 0, "{kind:?}: some producer was killed inside a put");
    }
}
