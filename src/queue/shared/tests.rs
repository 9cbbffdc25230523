//! In-process tests of the shared queue: semantics, blocking with threads, wrap-around,
//! names and tokens, validation of damaged state.

use super::*;
use crate::test_support::XorShift;
use crate::space::object::KIND_LOCK;
use crate::status::{WEFT_CANCELLED, WEFT_EXISTS, WEFT_NOT_FOUND, WEFT_TIMEOUT, WEFT_WOULD_BLOCK};
use std::thread;
use std::time::Duration;

const NEVER: Deadline = Deadline::Never;
const NOW: Deadline = Deadline::Now;

fn space() -> Arc<SpaceHandle> {
    SpaceHandle::anonymous(8 << 20).unwrap()
}

fn opts(maxsize: usize, max_bytes: u64, joinable: bool) -> Options {
    Options { kind: Kind::Fifo, maxsize, max_bytes, joinable }
}

fn queue(maxsize: usize, max_bytes: u64) -> Arc<SharedQueue> {
    Arc::new(SharedQueue::create(space(), None, opts(maxsize, max_bytes, false)).unwrap())
}

fn joinable(maxsize: usize) -> Arc<SharedQueue> {
    Arc::new(SharedQueue::create(space(), None, opts(maxsize, 0, true)).unwrap())
}

fn ms(n: u64) -> Deadline {
    Deadline::from_timeout_ns(n * 1_000_000)
}

/// A recognisable item of `len` bytes.
fn item(tag: u32, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u32).wrapping_mul(31).wrapping_add(tag.wrapping_mul(7919)) as u8).collect()
}

/// Waits until `f` holds (a thread reached a blocking call), failing after 10 s.
fn eventually(f: impl Fn() -> bool) {
    let end = now_ns() + 10_000_000_000;
    while !f() {
        assert!(now_ns() < end, "condition not reached within 10 s");
        thread::sleep(Duration::from_millis(1));
    }
}

/// Asserts that `t` is still blocked 30 ms later.
fn still_blocked<T>(t: &thread::JoinHandle<T>) {
    thread::sleep(Duration::from_millis(30));
    assert!(!t.is_finished(), "the thread should still be blocked");
}

#[test]
fn options_kinds_and_sizes() {
    let s = space();
    for kind in [Kind::Lifo, Kind::Priority] {
        // In shared memory too (ordered_tests.rs tests them).
        let q = SharedQueue::create(s.clone(), None, Options { kind, ..Options::default() }).unwrap();
        assert_eq!(q.options().kind, kind);
    }
    let simple = Options { kind: Kind::Simple, maxsize: 3, ..Options::default() };
    assert_eq!(SharedQueue::create(s.clone(), None, simple).unwrap_err().code, WEFT_INVALID_ARGUMENT);
    for bad in [1, 8, 56, MAX_RING + 1, u64::MAX] {
        assert_eq!(SharedQueue::create(s.clone(), None, opts(0, bad, false)).unwrap_err().code, WEFT_INVALID_ARGUMENT, "{bad}");
    }
    let q = SharedQueue::create(s.clone(), None, opts(5, 100, true)).unwrap();
    assert_eq!(q.options(), opts(5, 104, true));
    let d = SharedQueue::create(s.clone(), None, Options::default()).unwrap();
    assert_eq!(d.options().max_bytes, DEFAULT_RING);
    assert_eq!(d.shared().object().size + OBJECT_HEADER, 1 << 20, "the default queue fills a 1 MiB block");
    let simple = SharedQueue::create(s, None, Options { kind: Kind::Simple, ..Options::default() }).unwrap();
    assert_eq!(simple.options().kind, Kind::Simple);
    simple.put(b"s", 0, NOW).unwrap();
    assert_eq!(simple.get(NOW).unwrap(), b"s");
    assert_eq!(simple.task_done().unwrap_err().code, WEFT_INVALID_STATE);
}

#[test]
fn fifo_order_sizes_and_state() {
    let q = queue(0, 4096);
    assert!(q.empty() && !q.full() && q.qsize() == 0);
    for i in 0..20u32 {
        q.put(&item(i, i as usize * 13), i64::from(i) * -5, NOW).unwrap();
    }
    q.put_word(0xdead_beef, 0, NOW).unwrap();
    assert_eq!(q.qsize(), 21);
    assert!(!q.empty() && !q.full(), "unbounded by count: never full");
    for i in 0..20u32 {
        assert_eq!(q.get(NOW).unwrap(), item(i, i as usize * 13), "priority is ignored: FIFO");
    }
    assert_eq!(q.get_word(NOW).unwrap(), 0xdead_beef);
    assert!(q.empty());
    let b = queue(2, 0);
    b.put(b"a", 0, NOW).unwrap();
    b.put(b"b", 0, NOW).unwrap();
    assert!(b.full());
    assert_eq!(b.qsize(), 2);
}

#[test]
fn nowait_and_timeouts_never_early() {
    let q = queue(2, 0);
    assert_eq!(q.get(NOW).unwrap_err().code, WEFT_WOULD_BLOCK);
    let t0 = now_ns();
    assert_eq!(q.get(ms(30)).unwrap_err().code, WEFT_TIMEOUT);
    assert!(now_ns() - t0 >= 30_000_000, "timed out early");
    let mut buf = [0u8; 4];
    assert_eq!(q.get_into(&mut buf, NOW).unwrap_err().code, WEFT_WOULD_BLOCK);
    assert_eq!(q.get_many(3, NOW).unwrap_err().code, WEFT_WOULD_BLOCK);
    assert_eq!(q.get(Deadline::At(now_ns() - 1)).unwrap_err().code, WEFT_TIMEOUT);
    q.put(b"1", 0, NOW).unwrap();
    q.put(b"2", 0, ms(10)).unwrap();
    assert_eq!(q.put(b"3", 0, NOW).unwrap_err().code, WEFT_WOULD_BLOCK);
    let t0 = now_ns();
    assert_eq!(q.put(b"3", 0, ms(30)).unwrap_err().code, WEFT_TIMEOUT);
    assert!(now_ns() - t0 >= 30_000_000, "timed out early");
    assert_eq!(q.put(b"3", 0, Deadline::At(now_ns() - 1)).unwrap_err().code, WEFT_TIMEOUT);
    assert_eq!(q.qsize(), 2);
    // A lock held by a live thread: waited for briefly, then WOULD_BLOCK / TIMEOUT.
    let h = q.header();
    h.c_lock.acquire(NEVER, Interrupt::Uninterruptible).unwrap();
    let t0 = now_ns();
    assert_eq!(q.get(NOW).unwrap_err().code, WEFT_WOULD_BLOCK);
    assert_eq!(q.get(ms(1)).unwrap_err().code, WEFT_TIMEOUT);
    assert!(now_ns() - t0 >= 2 * LOCK_GRACE_NS, "waited for the busy lock");
    let q2 = q.clone();
    let getter = thread::spawn(move || q2.get(NOW));
    thread::sleep(Duration::from_millis(2));
    h.c_lock.release().unwrap();
    assert_eq!(getter.join().unwrap().unwrap(), b"1", "a lock released within the grace is taken");
    q.put(b"1", 0, NOW).unwrap();
    // A full queue by bytes: a 64-byte ring holds one 56-byte item.
    let small = queue(0, 64);
    small.put(&[7; 56], 0, NOW).unwrap();
    assert_eq!(small.put(b"", 0, NOW).unwrap_err().code, WEFT_WOULD_BLOCK);
    assert_eq!(small.get(NOW).unwrap(), [7; 56]);
    small.put(b"", 0, NOW).unwrap();
}

#[test]
fn blocking_put_and_get_between_threads() {
    for (maxsize, bytes) in [(3, 0), (0, 256), (1, 64)] {
        let t0 = now_ns();
        let q = queue(maxsize, bytes);
        let n = 3000u32;
        let q2 = q.clone();
        let producer = thread::spawn(move || {
            for i in 0..n {
                q2.put(&item(i, (i % 40) as usize), 0, NEVER).unwrap();
            }
        });
        for i in 0..n {
            if i % 500 == 0 {
                thread::sleep(Duration::from_millis(2)); // let the producer block on a full queue
            }
            assert_eq!(q.get(NEVER).unwrap(), item(i, (i % 40) as usize), "maxsize {maxsize}, {bytes} bytes");
        }
        producer.join().unwrap();
        assert!(q.empty());
        // Thousands of hand-offs through sleeps take well under a second; lost wake-ups, each
        // costing a 50 ms slice, would take tens of seconds.
        assert!(now_ns() - t0 < 5_000_000_000, "maxsize {maxsize}, {bytes} bytes: wake-ups were lost");
    }
    // A getter blocked on an empty queue is woken by a put.
    let q = queue(0, 0);
    let q2 = q.clone();
    let getter = thread::spawn(move || q2.get(NEVER));
    still_blocked(&getter);
    q.put(b"wake", 0, NOW).unwrap();
    assert_eq!(getter.join().unwrap().unwrap(), b"wake");
    // A putter blocked on a full queue is woken by a get.
    let q = queue(1, 0);
    q.put(b"first", 0, NOW).unwrap();
    let q2 = q.clone();
    let putter = thread::spawn(move || q2.put(b"second", 0, NEVER));
    still_blocked(&putter);
    assert_eq!(q.get(NOW).unwrap(), b"first");
    putter.join().unwrap().unwrap();
    assert_eq!(q.get(NOW).unwrap(), b"second");
}

#[test]
fn many_producers_and_consumers_in_threads() {
    let q = queue(16, 2048);
    let (producers, consumers, n) = (3u32, 3, 4000u32);
    let mut ps = Vec::new();
    for p in 0..producers {
        let q = q.clone();
        ps.push(thread::spawn(move || {
            for i in 0..n {
                let mut m = p.to_le_bytes().to_vec();
                m.extend_from_slice(&i.to_le_bytes());
                m.extend_from_slice(&item(i, (i % 50) as usize));
                q.put(&m, 0, NEVER).unwrap();
            }
        }));
    }
    let mut hs = Vec::new();
    for _ in 0..consumers {
        let q = q.clone();
        hs.push(thread::spawn(move || {
            let mut got = Vec::new();
            let mut last = vec![-1i64; producers as usize];
            loop {
                let m = match q.get(NEVER) {
                    Ok(m) => m,
                    Err(e) if e.code == WEFT_CLOSED => return got,
                    Err(e) => panic!("{e:?}"),
                };
                let p = u32::from_le_bytes(m[0..4].try_into().unwrap());
                let i = u32::from_le_bytes(m[4..8].try_into().unwrap());
                assert_eq!(m[8..], item(i, (i % 50) as usize));
                assert!(i64::from(i) > last[p as usize], "per-producer order");
                last[p as usize] = i64::from(i);
                got.push((p, i));
            }
        }));
    }
    for h in ps {
        h.join().unwrap();
    }
    q.shutdown(false).unwrap();
    let mut all: Vec<(u32, u32)> = hs.into_iter().flat_map(|h| h.join().unwrap()).collect();
    all.sort_unstable();
    let want: Vec<(u32, u32)> = (0..producers).flat_map(|p| (0..n).map(move |i| (p, i))).collect();
    assert_eq!(all, want, "every item delivered exactly once");
}

#[test]
fn get_into_too_small_and_get_word_keep_the_item() {
    let q = queue(0, 0);
    q.put(b"hello world", 0, NOW).unwrap();
    let mut small = [0u8; 4];
    assert_eq!(q.get_into(&mut small, NOW).unwrap(), Filled::TooSmall(11));
    assert_eq!(small, [0; 4], "nothing written");
    assert_eq!(q.qsize(), 1);
    assert_eq!(q.get_word(NOW).unwrap_err().code, WEFT_INVALID_STATE);
    assert_eq!(q.qsize(), 1);
    let mut buf = [0u8; 32];
    assert_eq!(q.get_into(&mut buf, NOW).unwrap(), Filled::Item(11));
    assert_eq!(&buf[..11], b"hello world");
    q.put(b"", 0, NOW).unwrap();
    assert_eq!(q.get_into(&mut [], NOW).unwrap(), Filled::Item(0));
    q.put_word(usize::MAX - 5, 0, NOW).unwrap();
    assert_eq!(q.get_into(&mut small, NOW).unwrap(), Filled::TooSmall(8));
    assert_eq!(q.get_word(NOW).unwrap(), usize::MAX - 5);
    assert!(q.empty());
}

#[test]
fn put_many_and_get_many() {
    let q = queue(0, 1024);
    let items: Vec<Vec<u8>> = (0..10).map(|i| item(i, i as usize * 3)).collect();
    let refs: Vec<&[u8]> = items.iter().map(Vec::as_slice).collect();
    assert_eq!(q.put_many(&refs, 0, NOW), (10, Ok(())));
    assert_eq!(q.put_many(&[], 0, NOW), (0, Ok(())));
    assert_eq!(q.get_many(4, NOW).unwrap(), items[..4]);
    assert_eq!(q.get_many(100, NOW).unwrap(), items[4..]);
    assert_eq!(q.get_many(0, NOW).unwrap_err().code, WEFT_INVALID_ARGUMENT);
    // An item that never fits: nothing put.
    let big = vec![1u8; 1017];
    let (n, r) = q.put_many(&[b"a", &big], 0, NOW);
    assert_eq!((n, r.unwrap_err().code), (0, WEFT_INVALID_ARGUMENT));
    assert!(q.empty());
    // Bounded by count: a partial put_many.
    let b = queue(3, 0);
    let (n, r) = b.put_many(&refs, 0, NOW);
    assert_eq!((n, r.unwrap_err().code), (3, WEFT_WOULD_BLOCK));
    // A blocking put_many completes as a consumer makes room.
    let b2 = b.clone();
    let owned = items.clone();
    let t = thread::spawn(move || {
        let refs: Vec<&[u8]> = owned.iter().map(Vec::as_slice).collect();
        b2.put_many(&refs[3..], 0, NEVER)
    });
    let mut got = Vec::new();
    while got.len() < 10 {
        got.extend(b.get_many(2, NEVER).unwrap());
    }
    assert_eq!(t.join().unwrap(), (7, Ok(())));
    assert_eq!(got, items);
}

#[test]
fn task_done_and_join() {
    let q = joinable(0);
    q.join(NOW).unwrap();
    for i in 0..3 {
        q.put(&item(i, 5), 0, NOW).unwrap();
    }
    assert_eq!(q.unfinished(), 3);
    assert_eq!(q.join(NOW).unwrap_err().code, WEFT_WOULD_BLOCK);
    let t0 = now_ns();
    assert_eq!(q.join(ms(20)).unwrap_err().code, WEFT_TIMEOUT);
    assert!(now_ns() - t0 >= 20_000_000);
    let q2 = q.clone();
    let joiner = thread::spawn(move || q2.join(NEVER));
    still_blocked(&joiner);
    for _ in 0..3 {
        q.get(NOW).unwrap();
    }
    assert_eq!(q.unfinished(), 3, "getting does not finish a task");
    q.task_done().unwrap();
    q.task_done().unwrap();
    still_blocked(&joiner);
    q.task_done().unwrap();
    joiner.join().unwrap().unwrap();
    assert_eq!(q.task_done().unwrap_err().code, WEFT_INVALID_STATE);
    assert_eq!(q.unfinished(), 0);
    let plain = queue(0, 0);
    assert_eq!(plain.task_done().unwrap_err().code, WEFT_INVALID_STATE);
    assert_eq!(plain.join(NOW).unwrap_err().code, WEFT_INVALID_STATE);
    assert_eq!(plain.unfinished(), 0);
}

#[test]
fn shutdown_drains_then_closes_and_wakes_blocked_threads() {
    let q = queue(2, 0);
    q.put(b"a", 0, NOW).unwrap();
    q.put(b"b", 0, NOW).unwrap();
    let q2 = q.clone();
    let putter = thread::spawn(move || q2.put(b"c", 0, NEVER));
    let empty = queue(0, 0);
    let e2 = empty.clone();
    let getter = thread::spawn(move || e2.get(NEVER));
    still_blocked(&putter);
    still_blocked(&getter);
    q.shutdown(false).unwrap();
    empty.shutdown(false).unwrap();
    assert_eq!(putter.join().unwrap().unwrap_err().code, WEFT_CLOSED);
    assert_eq!(getter.join().unwrap().unwrap_err().code, WEFT_CLOSED);
    assert!(q.is_shut_down());
    assert_eq!(q.put(b"d", 0, NOW).unwrap_err().code, WEFT_CLOSED);
    assert_eq!(q.qsize(), 2);
    assert_eq!(q.get(NOW).unwrap(), b"a");
    assert_eq!(q.get(NEVER).unwrap(), b"b");
    assert_eq!(q.get(NOW).unwrap_err().code, WEFT_CLOSED);
    assert_eq!(q.get(NEVER).unwrap_err().code, WEFT_CLOSED);
    q.shutdown(false).unwrap();
    assert_eq!(q.put_many(&[b"x"], 0, NEVER).0, 0);
}

#[test]
fn immediate_shutdown_discards_counts_done_and_wakes() {
    let q = joinable(3);
    for i in 0..3 {
        q.put(&item(i, 9), 0, NOW).unwrap();
    }
    assert_eq!(q.get(NOW).unwrap(), item(0, 9)); // taken, not yet done
    q.put(b"x", 0, NOW).unwrap();
    let q2 = q.clone();
    let putter = thread::spawn(move || q2.put(b"blocked", 0, NEVER));
    let q3 = q.clone();
    let joiner = thread::spawn(move || q3.join(NEVER));
    let other = joinable(0);
    let o2 = other.clone();
    let getter = thread::spawn(move || o2.get(NEVER));
    still_blocked(&putter);
    still_blocked(&joiner);
    assert_eq!(q.unfinished(), 4);
    q.shutdown(true).unwrap();
    other.shutdown(true).unwrap();
    assert_eq!(putter.join().unwrap().unwrap_err().code, WEFT_CLOSED);
    assert_eq!(getter.join().unwrap().unwrap_err().code, WEFT_CLOSED);
    assert_eq!((q.qsize(), q.empty(), q.full()), (0, true, false));
    assert_eq!(q.get(NOW).unwrap_err().code, WEFT_CLOSED, "the items were discarded");
    assert_eq!(q.unfinished(), 1, "discarded items count as done; the taken one does not");
    still_blocked(&joiner);
    q.task_done().unwrap();
    joiner.join().unwrap().unwrap();
    assert_eq!(q.task_done().unwrap_err().code, WEFT_INVALID_STATE);
    // Normal then immediate.
    let r = queue(0, 0);
    r.put(b"1", 0, NOW).unwrap();
    r.shutdown(false).unwrap();
    r.shutdown(true).unwrap();
    assert_eq!(r.get(NOW).unwrap_err().code, WEFT_CLOSED);
}

#[test]
fn oversized_items_are_refused() {
    let q = queue(0, 128);
    let e = q.put(&[0; 121], 0, NEVER).unwrap_err();
    assert_eq!(e.code, WEFT_INVALID_ARGUMENT);
    assert!(e.message.contains("128"), "{}", e.message);
    q.put(&[3; 120], 0, NOW).unwrap(); // exactly the whole ring
    assert_eq!(q.put(b"", 0, NOW).unwrap_err().code, WEFT_WOULD_BLOCK);
    assert_eq!(q.get(NOW).unwrap(), [3; 120]);
    let d = queue(0, 0);
    assert_eq!(d.put(&vec![0; DEFAULT_RING as usize], 0, NOW).unwrap_err().code, WEFT_INVALID_ARGUMENT);
    d.put(&vec![5; DEFAULT_RING as usize - 8], 0, NOW).unwrap();
}

#[test]
fn wrap_around_every_size_at_every_offset() {
    const RING: u64 = 512;
    let q = queue(0, RING);
    let mut buf = vec![0u8; 400];
    for s in 0..=300usize {
        // The empty record advances the offset by 8: every start offset is met.
        for k in 0..(RING / 8) as u32 {
            let it = item(s as u32 ^ k, s);
            q.put(b"", 0, NOW).unwrap();
            q.put(&it, 0, NOW).unwrap();
            match k % 3 {
                0 => {
                    assert_eq!(q.get(NOW).unwrap(), b"");
                    assert_eq!(q.get(NOW).unwrap(), it, "size {s}, round {k}");
                }
                1 => assert_eq!(q.get_many(2, NOW).unwrap(), [vec![], it.clone()], "size {s}, round {k}"),
                _ => {
                    assert_eq!(q.get_into(&mut buf, NOW).unwrap(), Filled::Item(0));
                    assert_eq!(q.get_into(&mut buf, NOW).unwrap(), Filled::Item(s));
                    assert_eq!(buf[..s], it[..], "size {s}, round {k}");
                }
            }
        }
    }
    // Several records of varied sizes in flight across the end of the ring.
    let mut rng = XorShift(0x1234_5678_9abc_def1);
    let (mut put, mut got) = (0u32, 0u32);
    let size = |i: u32| (i.wrapping_mul(2_654_435_761) >> 7) as usize % 200;
    while got < 20_000 {
        if rng.next() % 2 == 0 && q.put(&item(put, size(put)), 0, NOW).is_ok() {
            put += 1;
        } else if got < put {
            assert_eq!(q.get(NOW).unwrap(), item(got, size(got)), "item {got}");
            got += 1;
        }
    }
    while got < put {
        assert_eq!(q.get(NOW).unwrap(), item(got, size(got)));
        got += 1;
    }
    // No capacity leaked: the largest item fits the empty ring, wherever the cursors are.
    q.put(&[9; RING as usize - 8], 0, NOW).unwrap();
    assert_eq!(q.get(NOW).unwrap(), [9; RING as usize - 8]);
}

#[test]
fn open_by_name_and_token_see_the_same_queue() {
    let s = space();
    let a = SharedQueue::create(s.clone(), Some("jobs"), opts(4, 0, true)).unwrap();
    assert_eq!(SharedQueue::create(s.clone(), Some("jobs"), opts(0, 0, false)).unwrap_err().code, WEFT_EXISTS);
    let b = SharedQueue::open(s.clone(), "jobs").unwrap();
    let c = SharedQueue::from_token(&a.token()).unwrap();
    assert_eq!(b.options(), a.options());
    assert_eq!(c.shared().object(), a.shared().object());
    a.put(b"1", 0, NOW).unwrap();
    b.put(b"2", 0, NOW).unwrap();
    assert_eq!(c.qsize(), 2);
    assert_eq!(c.get(NOW).unwrap(), b"1");
    assert_eq!(a.get(NOW).unwrap(), b"2");
    assert_eq!(b.unfinished(), 2);
    c.task_done().unwrap();
    a.task_done().unwrap();
    b.join(NOW).unwrap();
    assert_eq!(SharedQueue::open(s.clone(), "nope").unwrap_err().code, WEFT_NOT_FOUND);
    let lock = SharedRef::create(s.clone(), KIND_LOCK, 16, Some("a-lock"), &mut |_| Ok(())).unwrap();
    assert_eq!(SharedQueue::open(s.clone(), "a-lock").unwrap_err().code, WEFT_INVALID_ARGUMENT);
    assert_eq!(SharedQueue::from_token(&lock.token()).unwrap_err().code, WEFT_INVALID_ARGUMENT);
    // The object lives while a handle does.
    s.space().remove("jobs").unwrap();
    drop(a);
    drop(b);
    c.put(b"still", 0, NOW).unwrap();
    let t = c.token();
    drop(c);
    assert_eq!(SharedQueue::from_token(&t).unwrap_err().code, WEFT_NOT_FOUND);
}

/// A field of the header, to scribble on.
fn field<T>(q: &SharedQueue, offset: usize) -> &T {
    // SAFETY: test-only view of a 4- or 8-byte aligned header field inside the payload.
    unsafe { &*(q.shared().payload().add(offset) as *const T) }
}

#[test]
fn damaged_header_is_refused_on_open() {
    let s = space();
    let q = SharedQueue::create(s.clone(), Some("dmg"), opts(0, 256, false)).unwrap();
    let check = |offset: usize, bad: u64, wide: bool| {
        let swap = |v: u64| {
            if wide {
                field::<AtomicU64>(&q, offset).swap(v, Relaxed)
            } else {
                u64::from(field::<AtomicU32>(&q, offset).swap(v as u32, Relaxed))
            }
        };
        let old = swap(bad);
        let e = SharedQueue::open(s.clone(), "dmg").unwrap_err();
        assert_eq!(e.code, WEFT_CORRUPTED, "offset {offset}: {e:?}");
        swap(old);
        SharedQueue::open(s.clone(), "dmg").unwrap();
    };
    check(0, 0x1234, false); // magic
    check(4, 2, false); // version
    check(8, 1, false); // kind: LIFO (another layout)
    check(8, 99, false);
    check(12, 6, false); // flags
    check(24, 512, true); // ring size vs payload size
    check(24, 252, true);
    check(24, 0, true);
}

#[test]
fn damaged_cursors_records_and_flags_give_corrupted() {
    let fresh = || {
        let q = queue(4, 256);
        q.put(b"abc", 0, NOW).unwrap();
        q.put(b"defgh", 0, NOW).unwrap();
        q
    };
    let code = |r: Result<()>| r.unwrap_err().code;
    // head misaligned / outside the ring.
    for bad in [4u64, 256, 1 << 40 | 8] {
        let q = fresh();
        field::<AtomicU64>(&q, 320).store(bad, Relaxed);
        assert_eq!(code(q.get(NOW).map(|_| ())), WEFT_CORRUPTED, "head {bad:#x}");
    }
    // tail claiming more items than the queue holds.
    let q = fresh();
    field::<AtomicU64>(&q, 192).fetch_add(9 << 32, Relaxed);
    assert_eq!(code(q.put(&[0; 200], 0, NOW)), WEFT_CORRUPTED);
    assert_eq!(code(q.get(NOW).map(|_| ())), WEFT_CORRUPTED);
    // A record's length or tag.
    let q = fresh();
    q.ring_word(0).store(300, Relaxed);
    assert_eq!(code(q.get(NOW).map(|_| ())), WEFT_CORRUPTED);
    q.ring_word(0).store(3, Relaxed);
    q.ring_word(4).fetch_xor(1, Relaxed);
    assert_eq!(code(q.get_many(2, NOW).map(|_| ())), WEFT_CORRUPTED);
    q.ring_word(4).fetch_xor(1, Relaxed);
    assert_eq!(q.get_many(2, NOW).unwrap(), [b"abc".to_vec(), b"defgh".to_vec()]);
    // A record longer than the bytes up to the tail.
    let q = fresh();
    assert_eq!(q.get(NOW).unwrap(), b"abc");
    q.ring_word(16).store(12, Relaxed);
    assert_eq!(code(q.get(NOW).map(|_| ())), WEFT_CORRUPTED);
    // The shutdown flag.
    let q = fresh();
    field::<AtomicU32>(&q, 32).store(7, Relaxed);
    assert_eq!(code(q.put(b"", 0, NOW)), WEFT_CORRUPTED);
    assert_eq!(code(q.get(NOW).map(|_| ())), WEFT_CORRUPTED);
}

/// The calls on a queue whose memory a test damaged: each must succeed or fail with one of
/// `allowed`; `corrupted` records whether one reported `WEFT_CORRUPTED`.
pub(super) struct Damaged<'a> {
    pub(super) allowed: &'a [crate::status::weft_status],
    pub(super) iter: usize,
    pub(super) corrupted: bool,
}

impl Damaged<'_> {
    pub(super) fn check(&mut self, r: Result<()>, what: &str) {
        if let Err(e) = r {
            assert!(self.allowed.contains(&e.code), "iteration {}, {what}: {e:?}", self.iter);
            self.corrupted |= e.code == WEFT_CORRUPTED;
        }
    }

    /// Gets and puts of every shape (items up to `item_max` bytes, put with `priority` and
    /// put_many with `-priority`), task_done and join.
    pub(super) fn use_every_operation(&mut self, q: &SharedQueue, rng: &mut XorShift, item_max: usize, priority: i64) {
        let short = || Deadline::from_timeout_ns(200_000);
        let mut buf = vec![0u8; item_max];
        self.check(q.get(NOW).map(|_| ()), "get");
        self.check(q.get_into(&mut buf, short()).map(|_| ()), "get_into");
        self.check(q.get_many(10, NOW).map(|_| ()), "get_many");
        self.check(q.get_word(short()).map(|_| ()), "get_word");
        self.check(q.put(&buf[..(rng.next() % item_max as u64) as usize], priority, short()), "put");
        self.check(q.put_many(&[b"x", b"yy"], -priority, NOW).1, "put_many");
        self.check(q.task_done(), "task_done");
        self.check(q.join(NOW), "join");
    }
}

#[test]
fn garbage_gives_corrupted_never_a_crash_or_hang() {
    let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
    let allowed = [WEFT_CORRUPTED, WEFT_WOULD_BLOCK, WEFT_TIMEOUT, WEFT_CLOSED, WEFT_INVALID_STATE];
    let s = space();
    let mut detected = 0;
    for iter in 0..300 {
        let q = SharedQueue::create(s.clone(), None, opts(6, 256, true)).unwrap();
        for i in 0..4 {
            q.put(&item(i, (i * 17) as usize), 0, NOW).unwrap();
        }
        q.get(NOW).unwrap();
        for _ in 0..1 + rng.next() % 3 {
            let word = |r: &mut XorShift| match r.next() % 4 {
                0 => r.next(),
                1 => r.next() % 512,
                2 => ((r.next() % 16) << 32) | ((r.next() % 40) * 8),
                _ => 1 << (r.next() % 64),
            };
            match rng.next() % 3 {
                0 => {
                    // Header words, the two locks spared.
                    let spots = [32, 64, 72, 80, 144, 192, 272, 320, 384, 392, 448, 456];
                    let off = spots[(rng.next() % spots.len() as u64) as usize];
                    field::<AtomicU64>(&q, off).store(word(&mut rng), Relaxed);
                }
                1 => q.ring_word(rng.next() % 64 * 4).store(word(&mut rng) as u32, Relaxed),
                _ => {
                    let p = q.ring_ptr();
                    // SAFETY: inside the 256-byte ring; the test is its only user.
                    unsafe { *p.add((rng.next() % 256) as usize) = rng.next() as u8 };
                }
            }
        }
        let mut d = Damaged { allowed: &allowed, iter, corrupted: false };
        d.use_every_operation(&q, &mut rng, 64, 0);
        let _ = (q.qsize(), q.empty(), q.full(), q.unfinished(), q.is_shut_down());
        d.check(q.shutdown(rng.next() % 2 == 0), "shutdown");
        detected += usize::from(d.corrupted);
    }
    assert!(detected > 50, "damage is detected: {detected}");
}

#[test]
fn cancel_wakes_a_blocked_get() {
    let q = queue(0, 0);
    let cancel = Arc::new(AtomicU32::new(0));
    let (q2, c2) = (q.clone(), cancel.clone());
    let t = thread::spawn(move || {
        crate::futex::set_cancel_word(&*c2);
        let r = q2.get(NEVER);
        crate::futex::set_cancel_word(std::ptr::null());
        r
    });
    still_blocked(&t);
    crate::futex::raise_cancel(&cancel);
    assert_eq!(t.join().unwrap().unwrap_err().code, WEFT_CANCELLED);
    q.put(b"after", 0, NOW).unwrap();
    assert_eq!(q.get(NOW).unwrap(), b"after");
}

#[test]
fn a_sleeper_that_died_asleep_stops_costing_wakes() {
    let q = queue(0, 0);
    let h = q.header();
    // A sleeper whose slice ended 10 ms ago and never unregistered (it died).
    h.not_empty.register(super::ms(now_ns()).wrapping_sub(10) & EXPIRY_MASK);
    assert_eq!(Lease::unpack(h.not_empty.lease.load(Relaxed)).count, 1);
    q.put(b"1", 0, NOW).unwrap(); // wakes, and sees the lease expired
    assert_eq!(Lease::unpack(h.not_empty.lease.load(Relaxed)).count, 0, "stale sleeper dropped");
    // A live sleeper (lease in the future) is kept and woken.
    let q2 = q.clone();
    q.get(NOW).unwrap();
    let getter = thread::spawn(move || q2.get(NEVER));
    eventually(|| Lease::unpack(h.not_empty.lease.load(Relaxed)).count == 1);
    q.put(b"2", 0, NOW).unwrap();
    assert_eq!(getter.join().unwrap().unwrap(), b"2");
    // Old-epoch sleepers do not unregister from the new epoch.
    let e = h.not_full.register(super::ms(now_ns()).wrapping_sub(10) & EXPIRY_MASK);
    h.not_full.wake(1);
    let live = h.not_full.register(super::ms(now_ns()).wrapping_add(1000) & EXPIRY_MASK);
    h.not_full.unregister(e);
    assert_eq!(Lease::unpack(h.not_full.lease.load(Relaxed)).count, 1);
    h.not_full.unregister(live);
    assert_eq!(Lease::unpack(h.not_full.lease.load(Relaxed)).count, 0);
}

#[test]
fn dead_lock_holders_are_repaired_silently() {
    use crate::test_support::{fork_child, wait_child};
    let q = queue(0, 1024);
    q.put(b"kept", 0, NOW).unwrap();
    // A child takes both locks (as if killed in the middle of a put and a get) and dies.
    let pid = fork_child(|| {
        let h = q.header();
        let _ = h.p_lock.acquire(NEVER, Interrupt::Uninterruptible);
        let _ = h.c_lock.acquire(NEVER, Interrupt::Uninterruptible);
        q.copy_in(64, &[0xee; 200]); // half-written bytes past the tail
        // SAFETY: dies holding the locks.
        unsafe { libc::raise(libc::SIGKILL) };
        false
    });
    assert!(libc::WIFSIGNALED(wait_child(pid)));
    assert!(q.header().p_lock.locked() && q.header().c_lock.locked());
    assert_eq!(q.get(NOW).unwrap(), b"kept");
    q.put(b"next", 0, NOW).unwrap();
    assert_eq!(q.get(NEVER).unwrap(), b"next");
    assert!(!q.header().p_lock.locked() && !q.header().c_lock.locked());
}

/// Whether `fd` becomes readable within `ms` milliseconds.
fn readable_within(fd: std::os::fd::RawFd, ms: i32) -> bool {
    let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd on the stack.
    let r = unsafe { libc::poll(&mut p, 1, ms) };
    r == 1 && p.revents & libc::POLLIN != 0
}

#[test]
fn fd_follows_puts_from_another_handle() {
    let q = queue(0, 1024);
    let fd = q.fd().unwrap();
    assert!(!readable_within(fd, 0));
    let other = SharedQueue::from_token(&q.token()).unwrap();
    other.put(b"x", 0, NOW).unwrap();
    assert!(readable_within(fd, 10_000), "the watcher saw the put");
    other.get(NOW).unwrap();
    for _ in 0..1000 {
        if !readable_within(fd, 0) {
            break;
        }
        thread::sleep(Duration::from_millis(10));
    }
    assert!(!readable_within(fd, 0), "drained once the queue is empty");
}

#[test]
fn a_forked_child_follows_the_queue_with_its_own_watcher() {
    use crate::test_support::{fork_child, wait_child, SharedMap};
    use std::sync::atomic::AtomicU32;
    let q = queue(0, 1024);
    let fd = q.fd().unwrap();
    let keep = SharedQueue::from_token(&q.token()).unwrap();
    let gate = SharedMap::new(AtomicU32::new(0));
    let g = &gate;
    let pid = fork_child(move || {
        while g.get().load(Acquire) == 0 {
            thread::sleep(Duration::from_millis(1));
        }
        // The parent's watcher (and its descriptor) are gone; the child's own must follow.
        q.fd().ok() == Some(fd) && !readable_within(fd, 0) && q.put(b"child", 0, NOW).is_ok() && readable_within(fd, 10_000)
    });
    // The parent's only handle with a watcher is gone (dropped with the closure): its thread
    // ends within a slice and closes the parent's descriptor.
    thread::sleep(Duration::from_millis(300));
    gate.get().store(1, Release);
    let status = wait_child(pid);
    assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "child status {status:#x}");
    assert_eq!(keep.get(NOW).unwrap(), b"child");
}
