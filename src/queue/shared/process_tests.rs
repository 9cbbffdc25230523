//! Cross-process tests of the shared queue: forked producers and consumers, processes killed
//! at random moments, and (ignored) the throughput and latency measurements. The message
//! helpers serve the LIFO and priority kinds' tests too (`ordered_process_tests.rs`).

use super::*;
use crate::status::WEFT_WOULD_BLOCK;
use crate::test_support::{fork_child, wait_child};
use crate::test_support::XorShift;
use std::sync::atomic::AtomicU8;

const NEVER: Deadline = Deadline::Never;

/// Zeroed memory in an anonymous `MAP_SHARED` mapping, seen by forked children.
pub(super) struct Shm {
    p: *mut u8,
    len: usize,
}

impl Shm {
    pub(super) fn new(len: usize) -> Shm {
        // SAFETY: an anonymous shared mapping of `len` bytes, checked below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        assert_ne!(p, libc::MAP_FAILED);
        Shm { p: p as *mut u8, len }
    }

    pub(super) fn u64(&self, i: usize) -> &AtomicU64 {
        assert!(8 * i + 8 <= self.len);
        // SAFETY: in bounds (checked), 8-aligned (page-aligned base), zero-initialised;
        // AtomicU64 accepts any bits and shared mutation.
        unsafe { &*(self.p.add(8 * i) as *const AtomicU64) }
    }

    pub(super) fn u8(&self, i: usize) -> &AtomicU8 {
        assert!(i < self.len);
        // SAFETY: in bounds (checked); AtomicU8 accepts any bits and shared mutation.
        unsafe { &*(self.p.add(i) as *const AtomicU8) }
    }
}

impl Drop for Shm {
    fn drop(&mut self) {
        // SAFETY: unmaps what `new` mapped; no view outlives `self`.
        unsafe { libc::munmap(self.p as *mut libc::c_void, self.len) };
    }
}

pub(super) fn mix(mut x: u64) -> u64 {
    x ^= x >> 33;
    x = x.wrapping_mul(0xff51_afd7_ed55_8ccd);
    x ^= x >> 33;
    x = x.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    x ^ (x >> 33)
}

/// Bytes before a message's payload: producer u32, seq u32, length u32, 0 u32, checksum u64.
const MSG_HEAD: usize = 24;
pub(super) const BIG: usize = 64 << 10;

/// The size of message `seq` of producer `p`: mostly small, some of a few KiB, one in 16 of
/// 64 KiB.
pub(super) fn msg_len(p: u32, seq: u32) -> usize {
    let x = mix(u64::from(p) << 32 | u64::from(seq));
    MSG_HEAD
        + match x % 16 {
            0 => BIG - MSG_HEAD,
            1..=3 => 1000 + (x >> 8) as usize % 3000,
            _ => (x >> 8) as usize % 200,
        }
}

fn checksum(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3))
}

/// Writes message `seq` of producer `p` into `out`.
pub(super) fn message(p: u32, seq: u32, out: &mut Vec<u8>) {
    let len = msg_len(p, seq);
    out.clear();
    out.resize(len, 0);
    let mut x = mix(u64::from(p) << 32 | u64::from(seq) | 1 << 63);
    for chunk in out[MSG_HEAD..].chunks_mut(8) {
        x = mix(x);
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    let sum = checksum(&out[MSG_HEAD..]);
    out[0..4].copy_from_slice(&p.to_le_bytes());
    out[4..8].copy_from_slice(&seq.to_le_bytes());
    out[8..12].copy_from_slice(&(len as u32).to_le_bytes());
    out[16..24].copy_from_slice(&sum.to_le_bytes());
}

/// Checks a received message completely (header, checksum, every byte); its (p, seq).
pub(super) fn verify(m: &[u8], scratch: &mut Vec<u8>) -> Option<(u32, u32)> {
    if m.len() < MSG_HEAD {
        return None;
    }
    let p = u32::from_le_bytes(m[0..4].try_into().ok()?);
    let seq = u32::from_le_bytes(m[4..8].try_into().ok()?);
    let sum = u64::from_le_bytes(m[16..24].try_into().ok()?);
    if p > 1 << 16 || seq > 1 << 24 || m.len() != msg_len(p, seq) || checksum(&m[MSG_HEAD..]) != sum {
        return None;
    }
    message(p, seq, scratch);
    (scratch[..] == *m).then_some((p, seq))
}

#[test]
fn processes_exchange_checksummed_messages_exactly_once() {
    const PRODUCERS: u32 = 2;
    const CONSUMERS: usize = 2;
    const N: u32 = 4000;
    let space = SpaceHandle::anonymous(16 << 20).unwrap();
    let q = SharedQueue::create(space, None, Options { maxsize: 50, max_bytes: 300 << 10, ..Options::default() }).unwrap();
    let token = q.token();
    let delivered = Shm::new(PRODUCERS as usize * N as usize);
    let bad = Shm::new(8);
    let mut consumers = Vec::new();
    for _ in 0..CONSUMERS {
        consumers.push(fork_child(|| {
            // A child opens the queue from its token.
            let Ok(q) = SharedQueue::from_token(&token) else { return false };
            let (mut buf, mut scratch) = (vec![0u8; BIG], Vec::new());
            let mut last = [-1i64; PRODUCERS as usize];
            loop {
                match q.get_into(&mut buf, NEVER) {
                    Ok(Filled::Item(n)) => match verify(&buf[..n], &mut scratch) {
                        Some((p, seq)) if p < PRODUCERS && seq < N && i64::from(seq) > last[p as usize] => {
                            last[p as usize] = i64::from(seq);
                            delivered.u8((p * N + seq) as usize).fetch_add(1, SeqCst);
                        }
                        _ => {
                            bad.u64(0).fetch_add(1, SeqCst);
                            return false;
                        }
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
                q.put(&m, 0, NEVER).is_ok()
            })
        }));
    }
    for pid in producers {
        let st = wait_child(pid);
        assert!(libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0, "producer: status {st:#x}");
    }
    q.shutdown(false).unwrap();
    for pid in consumers {
        let st = wait_child(pid);
        assert!(libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0, "consumer: status {st:#x}");
    }
    assert_eq!(bad.u64(0).load(SeqCst), 0);
    for i in 0..(PRODUCERS * N) as usize {
        assert_eq!(delivered.u8(i).load(SeqCst), 1, "message {i} delivered once");
    }
    assert!(q.empty());
}

/// The queue's items (drained) and whether it is shut down.
pub(super) fn drain(q: &SharedQueue, what: &str) -> (bool, Vec<Vec<u8>>) {
    let shut = q.is_shut_down();
    let mut items = Vec::new();
    loop {
        match q.get(Deadline::Now) {
            Ok(m) => items.push(m),
            Err(e) if e.code == WEFT_WOULD_BLOCK || e.code == WEFT_CLOSED => return (shut, items),
            Err(e) => panic!("{what}: {e:?}"),
        }
    }
}

/// Runs `op` on a fresh queue prepared by `setup` in children killed at its step 1, 2, ...
/// until one completes. After each, the queue holds exactly what it held before `op` or what
/// `op` leaves (and once the latter, never the former again), works, and has all its capacity.
/// Returns the number of steps.
fn crash_at_every_step(what: &str, setup: &dyn Fn(&SharedQueue), op: &dyn Fn(&SharedQueue) -> Result<()>) -> u32 {
    const RING: u64 = 4096;
    let space = SpaceHandle::anonymous(4 << 20).unwrap();
    let fresh = || {
        let q = SharedQueue::create(space.clone(), None, Options { max_bytes: RING, ..Options::default() }).unwrap();
        setup(&q);
        q
    };
    let before = drain(&fresh(), what);
    let after = {
        let q = fresh();
        op(&q).unwrap();
        drain(&q, what)
    };
    assert_ne!(before, after, "{what}");
    let (mut crashed_before, mut crashed_after) = (false, false);
    for n in 1.. {
        let q = fresh();
        let pid = fork_child(|| {
            crate::space::dict::crash::arm(n);
            op(&q).is_ok()
        });
        let st = wait_child(pid);
        let crashed = libc::WIFSIGNALED(st) && libc::WTERMSIG(st) == libc::SIGKILL;
        assert!(crashed || (libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0), "{what}, step {n}: status {st:#x}");
        let now = drain(&q, what);
        if now == after {
            crashed_after |= crashed;
        } else {
            assert_eq!(now, before, "{what}, step {n}: neither the state before nor the state after");
            assert!(!crashed_after, "{what}, step {n}: the old state after the new one was committed");
            crashed_before = true;
        }
        if !now.0 {
            let biggest = vec![3u8; (RING - 8) as usize];
            q.put(&biggest, 0, Deadline::Now).unwrap();
            assert_eq!(q.get(Deadline::Now).unwrap(), biggest, "{what}, step {n}");
        }
        if !crashed {
            assert!(crashed_before && crashed_after, "{what}: crashes both before and after the commit");
            return n - 1;
        }
    }
    unreachable!()
}

#[test]
fn killed_at_every_step_of_every_operation() {
    // The tail ends up 488 bytes before the end of the 4096-byte ring: `c` wraps around it.
    let a = vec![b'a'; 100];
    let c = vec![b'c'; 1000];
    let d = vec![b'd'; 10];
    let with_a = |q: &SharedQueue| {
        q.put(&[0; 3500], 0, Deadline::Now).unwrap();
        q.get(Deadline::Now).unwrap();
        q.put(&a, 0, Deadline::Now).unwrap();
    };
    let with_a_c = |q: &SharedQueue| {
        with_a(q);
        q.put(&c, 0, Deadline::Now).unwrap();
    };
    // Steps of a put: locked | record head written | first half copied | second half copied |
    // committed | unlocked.
    assert!(crash_at_every_step("put", &with_a, &|q| q.put(&c, 0, NEVER)) >= 6);
    let steps = crash_at_every_step("put_many", &with_a, &|q| {
        let (n, r) = q.put_many(&[&c, &d], 0, NEVER);
        assert_eq!(n, 2);
        r
    });
    assert!(steps >= 9);
    assert!(crash_at_every_step("get", &with_a_c, &|q| q.get(NEVER).map(|m| assert_eq!(m, a))) >= 5);
    let steps = crash_at_every_step("get_many", &with_a_c, &|q| q.get_many(5, NEVER).map(|m| assert_eq!(m, [a.clone(), c.clone()])));
    assert!(steps >= 7);
    let only_c = |q: &SharedQueue| {
        with_a_c(q);
        q.get(Deadline::Now).unwrap();
    };
    let into = |q: &SharedQueue| {
        let mut buf = [0u8; 2000];
        let f = q.get_into(&mut buf, NEVER)?;
        assert!(f == Filled::Item(1000) && buf[..1000] == c[..]);
        Ok(())
    };
    assert!(crash_at_every_step("get_into", &only_c, &into) >= 5);
    assert!(crash_at_every_step("shutdown(immediate)", &with_a_c, &|q| q.shutdown(true)) >= 4);
}

/// Rounds of two producer and two consumer processes killed with SIGKILL at random moments,
/// busy with messages of up to 64 KiB; after each round the parent drains the queue and checks
/// the ledger: nothing delivered twice or torn, nothing delivered that no put attempted, every
/// put that returned delivered — except at most one message per killed consumer (the one it
/// held between its `get` returning and its ledger entry) — and the queue still works with no
/// capacity lost.
#[test]
fn processes_killed_at_random_moments_lose_nothing_committed() {
    const ROUNDS: usize = 10;
    const PRODUCERS: usize = 2;
    const CONSUMERS: usize = 2;
    const MAX_SEQ: usize = 1 << 17;
    let ring = 256u64 << 10;
    let space = SpaceHandle::anonymous(16 << 20).unwrap();
    let q = SharedQueue::create(space, None, Options { maxsize: 200, max_bytes: ring, ..Options::default() }).unwrap();
    let ids = ROUNDS * PRODUCERS;
    // attempted[p], committed[p]: puts started / returned by producer p; then a counter of
    // bad messages.
    let counters = Shm::new(8 * (2 * ids + 1));
    let (attempted, committed, bad) = (|p: usize| counters.u64(p), |p: usize| counters.u64(ids + p), counters.u64(2 * ids));
    let delivered = Shm::new(ids * MAX_SEQ);
    let slot = |p: u32, seq: u32| p as usize * MAX_SEQ + seq as usize;
    let seed = now_ns() | 1;
    let mut rng = XorShift(seed);
    let (mut in_put_kills, mut big_in_put_kills, mut total_missing) = (0, 0, 0);
    for round in 0..ROUNDS {
        let first = (round * PRODUCERS) as u32;
        // Messages are entered in the ledger first and verified next: a consumer killed while
        // verifying loses nothing from the ledger (only a kill right after its receive
        // returned can).
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
        let record = |m: &[u8], scratch: &mut Vec<u8>| enter(m) && check(m, scratch);
        let mut children = Vec::new();
        for c in 0..CONSUMERS {
            let q = &q;
            let pid = fork_child(|| {
                let (mut buf, mut scratch) = (vec![0u8; BIG], Vec::new());
                loop {
                    // Alternate the receive paths.
                    let ok = if c == 0 {
                        match q.get_into(&mut buf, NEVER) {
                            Ok(Filled::Item(n)) => record(&buf[..n], &mut scratch),
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
            });
            children.push((pid, false));
        }
        for i in 0..PRODUCERS {
            let (q, p) = (&q, first + i as u32);
            let pid = fork_child(move || {
                let mut m = Vec::new();
                for seq in 0..MAX_SEQ as u32 {
                    message(p, seq, &mut m);
                    attempted(p as usize).store(u64::from(seq) + 1, SeqCst);
                    if q.put(&m, 0, NEVER).is_err() {
                        return false;
                    }
                    committed(p as usize).store(u64::from(seq) + 1, SeqCst);
                }
                true
            });
            children.push((pid, true));
        }
        std::thread::sleep(std::time::Duration::from_micros(3_000 + rng.next() % 25_000));
        // Kill them one by one, in a random order, at random moments.
        while !children.is_empty() {
            let (pid, _) = children.swap_remove((rng.next() % children.len() as u64) as usize);
            // SAFETY: kills our own child.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            let st = wait_child(pid);
            assert!(
                libc::WIFSIGNALED(st) || (libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0),
                "round {round}: a child failed (status {st:#x}), seed {seed:#x}"
            );
            std::thread::sleep(std::time::Duration::from_micros(rng.next() % 2_000));
        }
        // Drain: every child is dead; a lock a dead child held is taken over at once.
        let (mut buf, mut scratch) = (vec![0u8; BIG], Vec::new());
        loop {
            match q.get_into(&mut buf, Deadline::Now) {
                Ok(Filled::Item(n)) => assert!(record(&buf[..n], &mut scratch), "round {round}: bad message, seed {seed:#x}"),
                Err(e) if e.code == WEFT_WOULD_BLOCK => break,
                r => panic!("round {round}: {r:?}, seed {seed:#x}"),
            }
        }
        assert_eq!(bad.load(SeqCst), 0, "round {round}: torn or unknown messages, seed {seed:#x}");
        // The ledger of this round's producers.
        let mut missing = 0;
        for p in first..first + PRODUCERS as u32 {
            let (a, c) = (attempted(p as usize).load(SeqCst) as u32, committed(p as usize).load(SeqCst) as u32);
            assert!(c <= a && a as usize <= MAX_SEQ);
            if a > c {
                in_put_kills += 1;
                big_in_put_kills += usize::from(msg_len(p, a - 1) == BIG);
            }
            for seq in 0..MAX_SEQ as u32 {
                let d = delivered.u8(slot(p, seq)).load(SeqCst);
                assert!(d <= 1, "round {round}: message ({p}, {seq}) delivered {d} times, seed {seed:#x}");
                assert!(d == 0 || seq < a, "round {round}: message ({p}, {seq}) delivered, never put, seed {seed:#x}");
                missing += usize::from(d == 0 && seq < c);
            }
        }
        // A consumer killed after its receive committed and before its ledger entry takes what
        // it received with it: at most 1 for the get_into consumer, 3 for get_many. (Not
        // rare: a consumer that wakes a sleeping producer right after its commit is often
        // preempted by it there.)
        assert!(missing <= 1 + 3, "round {round}: {missing} committed messages lost, seed {seed:#x}");
        total_missing += missing;
        // The queue still works, and no capacity leaked: the largest item fits.
        assert_eq!(q.qsize(), 0);
        let biggest = vec![0x5a; (ring - 8) as usize];
        q.put(&biggest, 0, Deadline::Now).unwrap();
        assert_eq!(q.qsize(), 1);
        assert_eq!(q.get(Deadline::Now).unwrap(), biggest);
        assert!(q.empty());
    }
    assert!(in_put_kills > 0, "some producer was killed inside a put");
    eprintln!(
        "crash test: {in_put_kills} of {} producers killed inside a put ({big_in_put_kills} in a 64 KiB put), \
         {total_missing} messages lost with killed consumers, seed {seed:#x}",
        ROUNDS * PRODUCERS
    );
    // And a clean exchange with a new child afterwards.
    let pid = fork_child(|| (0..1000usize).all(|i| q.put_word(i, 0, NEVER).is_ok()));
    for i in 0..1000 {
        assert_eq!(q.get_word(NEVER).unwrap(), i);
    }
    assert!(libc::WIFEXITED(wait_child(pid)));
}

/// Pins the calling thread to `cpu` when `WEFT_BENCH_PIN` is set.
fn pin(cpu: usize) {
    if std::env::var_os("WEFT_BENCH_PIN").is_some() {
        // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes inside it;
        // sched_setaffinity reads it.
        unsafe {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu, &mut set);
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
        }
    }
}

/// Measures (run with `cargo test --release --lib measure_throughput -- --ignored --nocapture`,
/// with `WEFT_BENCH_PIN=1` to pin the two processes to CPUs 0 and 1): 64-byte messages from
/// one producer process to one consumer process with blocking put/get; and the round trip of
/// a word over two queues between two processes, against the round trip of a byte over two
/// pipes.
#[test]
#[ignore]
fn measure_throughput_and_handoff_latency() {
    pin(0);
    let space = SpaceHandle::anonymous(64 << 20).unwrap();
    let q = SharedQueue::create(space.clone(), None, Options::default()).unwrap();
    let end = Shm::new(8);
    let n: usize = 4_000_000;
    for mode in ["get_into", "get"] {
        for _ in 0..3 {
            let pid = fork_child(|| {
                pin(1);
                let mut buf = [0u8; 64];
                for i in 0..n {
                    let ok = if mode == "get" {
                        q.get(NEVER).is_ok_and(|m| m.len() == 64 && m[0] == i as u8)
                    } else {
                        q.get_into(&mut buf, NEVER) == Ok(Filled::Item(64)) && buf[0] == i as u8
                    };
                    if !ok {
                        return false;
                    }
                }
                end.u64(0).store(now_ns(), SeqCst);
                true
            });
            let mut msg = [7u8; 64];
            let t0 = now_ns();
            for i in 0..n {
                msg[0] = i as u8;
                q.put(&msg, 0, NEVER).unwrap();
            }
            let st = wait_child(pid);
            assert!(libc::WIFEXITED(st) && libc::WEXITSTATUS(st) == 0);
            let secs = (end.u64(0).load(SeqCst) - t0) as f64 / 1e9;
            eprintln!("throughput, 64-byte messages, put -> {mode}: {:.2} M messages/s", n as f64 / secs / 1e6);
        }
    }
    // Ping-pong over two queues.
    let a = SharedQueue::create(space.clone(), None, Options::default()).unwrap();
    let b = SharedQueue::create(space, None, Options::default()).unwrap();
    let rounds = 100_000;
    for _ in 0..3 {
        let pid = fork_child(|| {
            pin(1);
            (0..rounds).all(|_| a.get_word(NEVER).and_then(|w| b.put_word(w + 1, 0, NEVER)).is_ok())
        });
        let t0 = now_ns();
        for i in 0..rounds {
            a.put_word(i, 0, NEVER).unwrap();
            assert_eq!(b.get_word(NEVER).unwrap(), i + 1);
        }
        let queues = (now_ns() - t0) as f64 / rounds as f64;
        assert!(libc::WIFEXITED(wait_child(pid)));
        // The same over two pipes.
        let (mut p1, mut p2) = ([0; 2], [0; 2]);
        // SAFETY: creates two pipes into valid arrays.
        unsafe {
            assert_eq!(libc::pipe(p1.as_mut_ptr()), 0);
            assert_eq!(libc::pipe(p2.as_mut_ptr()), 0);
        }
        let pid = fork_child(|| {
            pin(1);
            let mut c = [0u8; 1];
            (0..rounds).all(|_| {
                // SAFETY: reads and writes one byte through valid descriptors and buffers.
                unsafe {
                    libc::read(p1[0], c.as_mut_ptr().cast(), 1) == 1 && libc::write(p2[1], c.as_ptr().cast(), 1) == 1
                }
            })
        });
        let t0 = now_ns();
        let mut c = [0u8; 1];
        for _ in 0..rounds {
            // SAFETY: as above.
            unsafe {
                assert_eq!(libc::write(p1[1], c.as_ptr().cast(), 1), 1);
                assert_eq!(libc::read(p2[0], c.as_mut_ptr().cast(), 1), 1);
            }
        }
        let pipes = (now_ns() - t0) as f64 / rounds as f64;
        assert!(libc::WIFEXITED(wait_child(pid)));
        for fd in p1.into_iter().chain(p2) {
            // SAFETY: closes our own descriptors.
            unsafe { libc::close(fd) };
        }
        eprintln!(
            "hand-off round trip: queues {:.0} ns, pipes {:.0} ns, ratio {:.2}",
            queues,
            pipes,
            queues / pipes
        );
    }
}

/// Measures the cost of a put and a get_into with no other process or thread (run as above).
#[test]
#[ignore]
fn measure_single_thread_cost() {
    let space = SpaceHandle::anonymous(64 << 20).unwrap();
    let q = SharedQueue::create(space, None, Options::default()).unwrap();
    let msg = [7u8; 64];
    let mut buf = [0u8; 64];
    for _ in 0..3 {
        let t0 = now_ns();
        for _ in 0..4000 {
            for _ in 0..1000 {
                q.put(&msg, 0, NEVER).unwrap();
            }
            for _ in 0..1000 {
                q.get_into(&mut buf, NEVER).unwrap();
            }
        }
        eprintln!("one thread: put + get_into {:.1} ns per message", (now_ns() - t0) as f64 / 4e6);
    }
}
