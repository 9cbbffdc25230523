//! In-process tests of the LIFO and priority kinds of the shared queue: order (against a model),
//! options and sizes, bounds by count and bytes, blocking with threads, joinable, shutdown, the
//! pollable descriptor, and validation of damaged state.

use super::*;
use crate::status::{WEFT_NOT_FOUND, WEFT_WOULD_BLOCK};
use crate::test_support::{fork_child, wait_child, XorShift};
use std::collections::BTreeMap;
use std::thread;
use std::time::Duration;

const NEVER: Deadline = Deadline::Never;
const NOW: Deadline = Deadline::Now;
const KINDS: [Kind; 2] = [Kind::Lifo, Kind::Priority];

// The documented layout (ordered.rs): state words, journal, index.
const COUNT: u64 = 512;
const FREE_HEAD: u64 = 520;
const FREE_COUNT: u64 = 528;
const NEXT_SEQ: u64 = 536;
const J_LEN: u64 = 576;
const J_COMMIT: u64 = 584;
const J_BEFORE: u64 = 592;
const J_ENTRIES: u64 = 608;
const INDEX: u64 = 1536;

fn space() -> Arc<SpaceHandle> {
    SpaceHandle::anonymous(16 << 20).unwrap()
}

fn opts(kind: Kind, maxsize: usize, max_bytes: u64, joinable: bool) -> Options {
    Options { kind, maxsize, max_bytes, joinable }
}

fn make(kind: Kind, maxsize: usize, max_bytes: u64) -> Arc<SharedQueue> {
    Arc::new(SharedQueue::create(space(), None, opts(kind, maxsize, max_bytes, false)).unwrap())
}

fn ms(n: u64) -> Deadline {
    Deadline::from_timeout_ns(n * 1_000_000)
}

/// A recognisable item of `len` bytes.
fn item(tag: u32, len: usize) -> Vec<u8> {
    (0..len).map(|i| (i as u32).wrapping_mul(31).wrapping_add(tag.wrapping_mul(7919)) as u8).collect()
}

/// Chunks an item of `len` bytes takes (the documented rule).
fn chunks(len: usize) -> u64 {
    1 + (len as u64).saturating_sub(40).div_ceil(64)
}

fn pad(x: u64) -> u64 {
    x.div_ceil(64) * 64
}

/// Offsets of the links and of the arena of `q`.
fn links_at(q: &SharedQueue) -> u64 {
    INDEX + pad(u64::from(q.cap) * 4)
}

fn arena_at(q: &SharedQueue) -> u64 {
    links_at(q) + pad(q.ring / 64 * 4)
}

/// Asserts that `t` is still blocked 30 ms later.
fn still_blocked<T>(t: &thread::JoinHandle<T>) {
    thread::sleep(Duration::from_millis(30));
    assert!(!t.is_finished(), "the thread should still be blocked");
}

/// Takes every item with `Deadline::Now`.
fn drain(q: &SharedQueue) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        match q.get(NOW) {
            Ok(m) => out.push(m),
            Err(e) if e.code == WEFT_WOULD_BLOCK => return out,
            Err(e) => panic!("{e:?}"),
        }
    }
}

#[test]
fn lifo_delivers_the_last_put_first() {
    let q = make(Kind::Lifo, 0, 0);
    for i in 0..50u32 {
        q.put(&item(i, i as usize * 7), i64::from(i) * 3 - 70, NOW).unwrap(); // priority ignored
    }
    q.put_word(0xfeed, 0, NOW).unwrap();
    assert_eq!(q.qsize(), 51);
    assert_eq!(q.get_word(NOW).unwrap(), 0xfeed);
    assert_eq!(q.get_many(3, NOW).unwrap(), [item(49, 343), item(48, 336), item(47, 329)]);
    for i in (0..47u32).rev() {
        assert_eq!(q.get(NOW).unwrap(), item(i, i as usize * 7));
    }
    assert!(q.empty());
    // Interleaved.
    q.put(b"a", 0, NOW).unwrap();
    q.put(b"b", 0, NOW).unwrap();
    assert_eq!(q.get(NOW).unwrap(), b"b");
    q.put(b"c", 0, NOW).unwrap();
    assert_eq!(q.get(NOW).unwrap(), b"c");
    assert_eq!(q.put_many(&[b"x", b"yy", b"zzz"], 0, NOW), (3, Ok(())));
    assert_eq!(q.get_many(10, NOW).unwrap(), [b"zzz".to_vec(), b"yy".to_vec(), b"x".to_vec(), b"a".to_vec()]);
    assert_eq!(q.get(NOW).unwrap_err().code, WEFT_WOULD_BLOCK);
    q.check_ordered().unwrap();
}

#[test]
fn priority_delivers_the_lowest_first_and_ties_in_put_order() {
    let q = make(Kind::Priority, 0, 0);
    let prios = [5, -3, 0, i64::MAX, -3, i64::MIN, 5, 0, 7, -1, i64::MIN, 0, 5, -3, 2, i64::MAX, -100];
    let mut want: Vec<(i64, usize)> = Vec::new();
    for (i, &p) in prios.iter().enumerate() {
        q.put(&item(i as u32, 10 + i * 11), p, NOW).unwrap();
        want.push((p, i));
    }
    // put_many: one priority for all, in order among themselves and after the earlier equals.
    let many: Vec<Vec<u8>> = (100..104).map(|i| item(i, 3)).collect();
    let refs: Vec<&[u8]> = many.iter().map(Vec::as_slice).collect();
    assert_eq!(q.put_many(&refs, 0, NOW), (4, Ok(())));
    want.extend((0..4).map(|k| (0, 100 + k)));
    want.sort(); // stable on (priority, insertion)
    let body = |i: usize| if i >= 100 { item(i as u32, 3) } else { item(i as u32, 10 + i * 11) };
    assert_eq!(q.get_many(2, NOW).unwrap(), [body(want[0].1), body(want[1].1)]);
    for &(p, i) in &want[2..] {
        assert_eq!(q.get(NOW).unwrap(), body(i), "priority {p}, item {i}");
    }
    assert!(q.empty());
    q.check_ordered().unwrap();
}

/// The items of a model queue: LIFO a stack, priority a map on (priority, insertion number).
enum Model {
    Lifo(Vec<Vec<u8>>),
    Priority(BTreeMap<(i64, u64), Vec<u8>>, u64),
}

impl Model {
    fn put(&mut self, m: Vec<u8>, p: i64) {
        match self {
            Model::Lifo(v) => v.push(m),
            Model::Priority(h, seq) => {
                h.insert((p, *seq), m);
                *seq += 1;
            }
        }
    }
    fn get(&mut self) -> Option<Vec<u8>> {
        match self {
            Model::Lifo(v) => v.pop(),
            Model::Priority(h, _) => h.pop_first().map(|e| e.1),
        }
    }
    fn items(&self) -> Vec<&Vec<u8>> {
        match self {
            Model::Lifo(v) => v.iter().collect(),
            Model::Priority(h, _) => h.values().collect(),
        }
    }
}

#[test]
fn random_operations_match_a_model_and_never_leak_chunks() {
    for kind in KINDS {
        const ARENA: u64 = 4096;
        let q = make(kind, 40, ARENA);
        let mut model = if kind == Kind::Lifo { Model::Lifo(Vec::new()) } else { Model::Priority(BTreeMap::new(), 0) };
        let mut rng = XorShift(0x5eed_0bad_cafe_f00d);
        let total = ARENA / 64;
        for step in 0..6000u32 {
            let items = model.items();
            let used: u64 = items.iter().map(|m| chunks(m.len())).sum();
            let n = items.len();
            let size = if rng.next() % 8 == 0 { (rng.next() % 700) as usize } else { (rng.next() % 60) as usize };
            let prio = (rng.next() % 7) as i64 - 3;
            match rng.next() % 5 {
                0 | 1 => {
                    let m = item(step, size);
                    match q.put(&m, prio, NOW) {
                        Ok(()) => model.put(m, prio),
                        Err(e) => {
                            assert_eq!(e.code, WEFT_WOULD_BLOCK, "{kind:?} step {step}");
                            assert!(n == 40 || used + chunks(size) > total, "{kind:?} step {step}: full with {n} items, {used} chunks");
                        }
                    }
                }
                2 => {
                    let ms: Vec<Vec<u8>> = (0..3).map(|k| item(step * 4 + k, size / 3)).collect();
                    let refs: Vec<&[u8]> = ms.iter().map(Vec::as_slice).collect();
                    let (done, r) = q.put_many(&refs, prio, NOW);
                    assert!(r.is_ok() || r.as_ref().unwrap_err().code == WEFT_WOULD_BLOCK, "{r:?}");
                    for m in ms.into_iter().take(done) {
                        model.put(m, prio);
                    }
                }
                3 => {
                    let mut want = Vec::new();
                    while want.len() < 3 {
                        match model.get() {
                            Some(m) => want.push(m),
                            None => break,
                        }
                    }
                    match q.get_many(3, NOW) {
                        Ok(got) => assert_eq!(got, want, "{kind:?} step {step}"),
                        Err(e) => assert!(e.code == WEFT_WOULD_BLOCK && want.is_empty(), "{kind:?} step {step}: {e:?}"),
                    }
                }
                _ => match (q.get(NOW), model.get()) {
                    (Ok(got), Some(want)) => assert_eq!(got, want, "{kind:?} step {step}"),
                    (Err(e), None) => assert_eq!(e.code, WEFT_WOULD_BLOCK),
                    (got, want) => panic!("{kind:?} step {step}: got {got:?}, the model has {want:?}"),
                },
            }
            if step % 50 == 0 {
                let used: u64 = model.items().iter().map(|m| chunks(m.len())).sum();
                let census = q.check_ordered().unwrap();
                assert_eq!(census, (model.items().len() as u64, total - used), "{kind:?} step {step}");
            }
        }
        while let Some(want) = model.get() {
            assert_eq!(q.get(NOW).unwrap(), want);
        }
        assert_eq!(q.check_ordered().unwrap(), (0, total), "{kind:?}: every chunk free again");
    }
}

#[test]
fn options_sizes_names_and_tokens() {
    let s = space();
    for kind in KINDS {
        let q = SharedQueue::create(s.clone(), None, opts(kind, 5, 100, true)).unwrap();
        assert_eq!(q.options(), opts(kind, 5, 128, true), "the arena is rounded up to 64-byte chunks");
        let d = SharedQueue::create(s.clone(), None, opts(kind, 0, 0, false)).unwrap();
        let block = d.shared().object().size + OBJECT_HEADER;
        assert!(block <= 1 << 20 && block > (1 << 20) - 512, "the default queue fills a 1 MiB block: {block}");
        assert!(d.options().max_bytes > 900 << 10, "{:?}", d.options());
        for bad in [1, 8, 56, MAX_RING + 1, u64::MAX] {
            let e = SharedQueue::create(s.clone(), None, opts(kind, 0, bad, false)).unwrap_err();
            assert_eq!(e.code, WEFT_INVALID_ARGUMENT, "{kind:?} {bad}");
        }
        let name = format!("{kind:?}");
        let a = SharedQueue::create(s.clone(), Some(&name), opts(kind, 3, 4096, true)).unwrap();
        let b = SharedQueue::open(s.clone(), &name).unwrap();
        let c = SharedQueue::from_token(&a.token()).unwrap();
        assert_eq!((b.options(), c.options()), (a.options(), a.options()));
        a.put(b"1", 2, NOW).unwrap();
        b.put(b"2", 1, NOW).unwrap();
        c.put(b"3", 3, NOW).unwrap();
        let want: [&[u8]; 3] = if kind == Kind::Lifo { [b"3", b"2", b"1"] } else { [b"2", b"1", b"3"] };
        assert_eq!(b.get(NOW).unwrap(), want[0]);
        assert_eq!(c.get(NOW).unwrap(), want[1]);
        assert_eq!(a.get(NOW).unwrap(), want[2]);
        assert_eq!(c.unfinished(), 3);
        assert!(format!("{a:?}").contains("SharedQueue"));
        s.space().remove(&name).unwrap();
        assert_eq!(SharedQueue::open(s.clone(), &name).unwrap_err().code, WEFT_NOT_FOUND);
    }
}

#[test]
fn bounds_by_count_and_by_bytes() {
    for kind in KINDS {
        let q = make(kind, 3, 0);
        for i in 0..3 {
            q.put(&item(i, 5), 0, NOW).unwrap();
        }
        assert!(q.full());
        assert_eq!(q.put(b"x", 0, NOW).unwrap_err().code, WEFT_WOULD_BLOCK);
        q.get(NOW).unwrap();
        assert!(!q.full());
        q.put(b"x", 0, NOW).unwrap();
        // One chunk: an item of up to 40 bytes, one at a time.
        let one = make(kind, 0, 64);
        let e = one.put(&[1; 41], 0, NEVER).unwrap_err();
        assert_eq!(e.code, WEFT_INVALID_ARGUMENT, "never fits: refused at once");
        assert!(e.message.contains("64"), "{}", e.message);
        one.put(&[1; 40], 0, NOW).unwrap();
        assert_eq!(one.put(b"", 0, NOW).unwrap_err().code, WEFT_WOULD_BLOCK);
        assert_eq!(one.get(NOW).unwrap(), [1; 40]);
        one.put(b"", 0, NOW).unwrap();
        assert_eq!(one.get(NOW).unwrap(), b"");
        // Four chunks: the largest item (232 bytes) fills them; then 2 + 2 chunks.
        let four = make(kind, 0, 256);
        four.put(&[2; 232], 0, NOW).unwrap();
        assert_eq!(four.put(b"", 0, NOW).unwrap_err().code, WEFT_WOULD_BLOCK);
        assert_eq!(four.get(NOW).unwrap(), [2; 232]);
        assert_eq!(four.put_many(&[&[3; 100], &[4; 104], &[5; 1]], 0, NOW).0, 2);
        assert_eq!(four.qsize(), 2);
        let (done, r) = four.put_many(&[&[6; 1], &[7; 300]], 0, NOW);
        assert_eq!((done, r.unwrap_err().code), (0, WEFT_INVALID_ARGUMENT), "refused before anything is put");
        assert_eq!(four.qsize(), 2);
        assert_eq!(four.check_ordered().unwrap(), (2, 0));
        drain(&four);
        assert_eq!(four.check_ordered().unwrap(), (0, 4));
    }
}

#[test]
fn nowait_timeouts_and_blocked_threads() {
    for kind in KINDS {
        let q = make(kind, 2, 0);
        assert_eq!(q.get(NOW).unwrap_err().code, WEFT_WOULD_BLOCK);
        let t0 = now_ns();
        assert_eq!(q.get(ms(30)).unwrap_err().code, WEFT_TIMEOUT);
        assert!(now_ns() - t0 >= 30_000_000, "timed out early");
        assert_eq!(q.get(Deadline::At(now_ns() - 1)).unwrap_err().code, WEFT_TIMEOUT);
        q.put(b"1", 0, NOW).unwrap();
        q.put(b"2", 0, NOW).unwrap();
        let t0 = now_ns();
        assert_eq!(q.put(b"3", 0, ms(30)).unwrap_err().code, WEFT_TIMEOUT);
        assert!(now_ns() - t0 >= 30_000_000, "timed out early");
        // A putter blocked on a full queue (by count) is woken by a get.
        let q2 = q.clone();
        let putter = thread::spawn(move || q2.put(b"3", -5, NEVER));
        still_blocked(&putter);
        let first = q.get(NOW).unwrap();
        assert_eq!(first, if kind == Kind::Lifo { b"2" } else { b"1" });
        putter.join().unwrap().unwrap();
        assert_eq!(q.get(NOW).unwrap(), b"3", "the newest, and the lowest priority");
        q.get(NOW).unwrap();
        // A getter blocked on an empty queue is woken by a put.
        let q2 = q.clone();
        let getter = thread::spawn(move || q2.get(NEVER));
        still_blocked(&getter);
        q.put(b"wake", 0, NOW).unwrap();
        assert_eq!(getter.join().unwrap().unwrap(), b"wake");
        // A putter blocked on a full queue by bytes.
        let b = make(kind, 0, 128);
        b.put(&[1; 80], 0, NOW).unwrap();
        let b2 = b.clone();
        let putter = thread::spawn(move || b2.put(&[2; 80], 0, NEVER));
        still_blocked(&putter);
        assert_eq!(b.get(NOW).unwrap(), [1; 80]);
        putter.join().unwrap().unwrap();
        assert_eq!(b.get(NOW).unwrap(), [2; 80]);
    }
}

#[test]
fn threads_hand_over_every_item_exactly_once() {
    for kind in KINDS {
        for (maxsize, bytes) in [(2, 0), (0, 256)] {
            let q = make(kind, maxsize, bytes);
            let n = 1500u32;
            let mut producers = Vec::new();
            for p in 0..2u32 {
                let q = q.clone();
                producers.push(thread::spawn(move || {
                    for i in 0..n {
                        let mut m = (p * n + i).to_le_bytes().to_vec();
                        m.extend_from_slice(&item(i, (i % 90) as usize));
                        q.put(&m, i64::from(i % 5), NEVER).unwrap();
                    }
                }));
            }
            let mut consumers = Vec::new();
            for _ in 0..2 {
                let q = q.clone();
                consumers.push(thread::spawn(move || {
                    let mut got = Vec::new();
                    loop {
                        match q.get(NEVER) {
                            Ok(m) => {
                                let id = u32::from_le_bytes(m[..4].try_into().unwrap());
                                assert_eq!(m[4..], item(id % n, ((id % n) % 90) as usize));
                                got.push(id);
                            }
                            Err(e) if e.code == WEFT_CLOSED => return got,
                            Err(e) => panic!("{e:?}"),
                        }
                    }
                }));
            }
            for p in producers {
                p.join().unwrap();
            }
            q.shutdown(false).unwrap();
            let mut all: Vec<u32> = consumers.into_iter().flat_map(|c| c.join().unwrap()).collect();
            all.sort_unstable();
            assert_eq!(all, (0..2 * n).collect::<Vec<_>>(), "{kind:?}, maxsize {maxsize}, {bytes} bytes");
            assert_eq!(q.check_ordered().unwrap().0, 0);
        }
    }
}

#[test]
fn get_into_too_small_and_get_word_leave_the_item() {
    for kind in KINDS {
        let q = make(kind, 0, 0);
        q.put(b"later", 9, NOW).unwrap();
        q.put(b"hello world", 1, NOW).unwrap();
        let mut small = [0u8; 4];
        assert_eq!(q.get_into(&mut small, NOW).unwrap(), Filled::TooSmall(11));
        assert_eq!(small, [0; 4], "nothing written");
        assert_eq!(q.get_word(NOW).unwrap_err().code, WEFT_INVALID_STATE);
        assert_eq!(q.qsize(), 2);
        let mut buf = [0u8; 200];
        assert_eq!(q.get_into(&mut buf, NOW).unwrap(), Filled::Item(11));
        assert_eq!(&buf[..11], b"hello world");
        let big = item(7, 150);
        q.put(&big, -1, NOW).unwrap();
        assert_eq!(q.get_into(&mut buf[..149], NOW).unwrap(), Filled::TooSmall(150));
        assert_eq!(q.get_into(&mut buf, NOW).unwrap(), Filled::Item(150));
        assert_eq!(buf[..150], big[..]);
        q.put_word(usize::MAX - 5, -2, NOW).unwrap();
        assert_eq!(q.get_word(NOW).unwrap(), usize::MAX - 5);
        assert_eq!(q.get(NOW).unwrap(), b"later");
        q.check_ordered().unwrap();
    }
}

#[test]
fn joinable_task_done_and_join() {
    for kind in KINDS {
        let q = Arc::new(SharedQueue::create(space(), None, opts(kind, 0, 0, true)).unwrap());
        for i in 0..3 {
            q.put(&item(i, 4), i64::from(i), NOW).unwrap();
        }
        assert_eq!(q.unfinished(), 3);
        q.get(NOW).unwrap();
        q.get(NOW).unwrap();
        q.task_done().unwrap();
        q.task_done().unwrap();
        assert_eq!(q.join(NOW).unwrap_err().code, WEFT_WOULD_BLOCK);
        let q2 = q.clone();
        let joiner = thread::spawn(move || q2.join(NEVER));
        still_blocked(&joiner);
        q.get(NOW).unwrap();
        still_blocked(&joiner);
        q.task_done().unwrap();
        joiner.join().unwrap().unwrap();
        assert_eq!(q.task_done().unwrap_err().code, WEFT_INVALID_STATE);
        let plain = make(kind, 0, 0);
        assert_eq!(plain.task_done().unwrap_err().code, WEFT_INVALID_STATE);
        assert_eq!(plain.join(NOW).unwrap_err().code, WEFT_INVALID_STATE);
    }
}

#[test]
fn shutdown_drains_in_order_then_closes_and_wakes_everyone() {
    for kind in KINDS {
        let q = make(kind, 2, 0);
        q.put(b"a", 2, NOW).unwrap();
        q.put(b"b", 1, NOW).unwrap();
        let q2 = q.clone();
        let putter = thread::spawn(move || q2.put(b"c", 0, NEVER));
        let empty = make(kind, 0, 0);
        let e2 = empty.clone();
        let getter = thread::spawn(move || e2.get(NEVER));
        still_blocked(&putter);
        still_blocked(&getter);
        q.shutdown(false).unwrap();
        empty.shutdown(false).unwrap();
        assert_eq!(putter.join().unwrap().unwrap_err().code, WEFT_CLOSED);
        assert_eq!(getter.join().unwrap().unwrap_err().code, WEFT_CLOSED);
        assert_eq!(q.put(b"d", 0, NOW).unwrap_err().code, WEFT_CLOSED);
        assert_eq!(q.qsize(), 2);
        assert_eq!(q.get(NOW).unwrap(), b"b", "LIFO: the last; priority: the lowest");
        assert_eq!(q.get(NEVER).unwrap(), b"a");
        assert_eq!(q.get(NEVER).unwrap_err().code, WEFT_CLOSED);
        // Immediate: the items are discarded, counted as done, every waiter released.
        let j = Arc::new(SharedQueue::create(space(), None, opts(kind, 3, 0, true)).unwrap());
        for i in 0..3 {
            j.put(&item(i, 9), 0, NOW).unwrap();
        }
        j.get(NOW).unwrap(); // taken, not done
        j.put(b"x", 0, NOW).unwrap();
        let j2 = j.clone();
        let putter = thread::spawn(move || j2.put(b"blocked", 0, NEVER));
        let j3 = j.clone();
        let joiner = thread::spawn(move || j3.join(NEVER));
        let other = make(kind, 0, 0);
        let o2 = other.clone();
        let getter = thread::spawn(move || o2.get(NEVER));
        still_blocked(&putter);
        still_blocked(&joiner);
        still_blocked(&getter);
        j.shutdown(true).unwrap();
        other.shutdown(true).unwrap();
        assert_eq!(putter.join().unwrap().unwrap_err().code, WEFT_CLOSED);
        assert_eq!(getter.join().unwrap().unwrap_err().code, WEFT_CLOSED);
        assert_eq!((j.qsize(), j.empty(), j.full()), (0, true, false));
        assert_eq!(j.get(NOW).unwrap_err().code, WEFT_CLOSED);
        assert_eq!(j.unfinished(), 1, "discarded items count as done; the taken one does not");
        still_blocked(&joiner);
        j.task_done().unwrap();
        joiner.join().unwrap().unwrap();
        j.check_ordered().unwrap();
    }
}

#[test]
fn the_descriptor_follows_the_queue() {
    let readable = |fd: i32, ms: i32| {
        let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut p, 1, ms) == 1 }
    };
    for kind in KINDS {
        let q = make(kind, 0, 0);
        let fd = q.fd().unwrap();
        assert!(!readable(fd, 0));
        q.put(b"x", 0, NOW).unwrap();
        assert!(readable(fd, 5000), "readable once an item is in");
        q.get(NOW).unwrap();
        let end = now_ns() + 5_000_000_000;
        while readable(fd, 0) {
            assert!(now_ns() < end, "unreadable once empty");
            thread::sleep(Duration::from_millis(1));
        }
        q.shutdown(false).unwrap();
        assert!(readable(fd, 5000), "readable once shut down");
    }
}

#[test]
fn damaged_headers_are_refused_on_open() {
    let s = space();
    let q = SharedQueue::create(s.clone(), Some("dmg"), opts(Kind::Priority, 8, 4096, false)).unwrap();
    let check = |offset: u64, bad: u64, wide: bool| {
        let w = q.word(offset & !7);
        let shift = if wide { 0 } else { 8 * (offset % 8) };
        let mask = if wide { u64::MAX } else { 0xffff_ffff << shift };
        let old = w.load(Relaxed);
        w.store((old & !mask) | (bad << shift & mask), Relaxed);
        let e = SharedQueue::open(s.clone(), "dmg").unwrap_err();
        assert_eq!(e.code, WEFT_CORRUPTED, "offset {offset}: {e:?}");
        w.store(old, Relaxed);
        SharedQueue::open(s.clone(), "dmg").unwrap();
    };
    check(8, 0, false); // kind: FIFO (another layout)
    check(8, 3, false); // simple
    check(8, 9, false);
    check(16, 100, true); // maxsize: another index size
    check(24, 8192, true); // arena vs payload size
    check(24, 4000, true); // not whole chunks
    check(24, 0, true);
}

/// A fresh priority queue of 16 chunks with three items: one of 150 bytes (3 chunks, first in
/// the heap), two of one chunk.
fn damaged() -> Arc<SharedQueue> {
    let q = make(Kind::Priority, 6, 1024);
    q.put(&item(1, 150), 1, NOW).unwrap();
    q.put(&item(2, 10), 2, NOW).unwrap();
    q.put(&item(3, 20), 3, NOW).unwrap();
    q
}

/// Applies `damage` to the word at `off` of `damaged()`, expects WEFT_CORRUPTED from a get and
/// from the census, restores the word and expects the queue to be whole and to work.
fn corrupt_and_restore(off: &dyn Fn(&SharedQueue) -> u64, damage: &dyn Fn(u64) -> u64, what: &str) {
    let q = damaged();
    let off = off(&q);
    let old = q.word(off).load(Relaxed);
    q.word(off).store(damage(old), Relaxed);
    let mut buf = [0u8; 256];
    assert_eq!(q.get_into(&mut buf, NOW).unwrap_err().code, WEFT_CORRUPTED, "{what}: get");
    assert_eq!(q.check_ordered().unwrap_err().code, WEFT_CORRUPTED, "{what}: census");
    q.word(off).store(old, Relaxed);
    assert_eq!(q.check_ordered().unwrap(), (3, 16 - 5), "{what}: restored");
    assert_eq!(q.get(NOW).unwrap(), item(1, 150), "{what}");
}

#[test]
fn damaged_state_index_items_and_links_give_corrupted() {
    let at = |off: u64| move |_: &SharedQueue| off;
    corrupt_and_restore(&at(COUNT), &|_| 4, "count above the cursors");
    corrupt_and_restore(&at(COUNT), &|_| 99, "count above the capacity");
    corrupt_and_restore(&at(FREE_COUNT), &|_| 17, "more free chunks than chunks");
    corrupt_and_restore(&at(FREE_HEAD), &|_| 16, "free list head beyond the chunks");
    corrupt_and_restore(&at(192), &|_| 3 << 32 | 8, "tail with an offset");
    // The root is item 1's first chunk, 0; its chain is 0, 1, 2.
    corrupt_and_restore(&at(INDEX), &|w| w & !0xffff_ffff | 1000, "index entry beyond the chunks");
    corrupt_and_restore(&at(INDEX), &|w| w & !0xffff_ffff | 1, "index entry naming a second chunk");
    let head = |q: &SharedQueue| arena_at(q);
    corrupt_and_restore(&head, &|w| w ^ 1 << 40, "a tag");
    corrupt_and_restore(&head, &|w| w & !0xffff_ffff | 5000, "a length beyond the chunks in use");
    corrupt_and_restore(&head, &|w| w & !0xffff_ffff | 200, "a length longer than the chain");
    corrupt_and_restore(&|q| arena_at(q) + 16, &|_| 12345, "an insertion number");
    corrupt_and_restore(&|q| links_at(q), &|w| w | 0xffff_ff00, "a link beyond the chunks");
    corrupt_and_restore(&|q| links_at(q) + 8, &|w| w & !0xffff_ffff | 3, "a chain that goes on");
    // Damage only the census sees: a free count that leaves a chunk nowhere; a heap out of
    // order.
    let q = damaged();
    q.word(FREE_COUNT).fetch_sub(1, Relaxed);
    assert_eq!(q.check_ordered().unwrap_err().code, WEFT_CORRUPTED);
    q.word(FREE_COUNT).fetch_add(1, Relaxed);
    let w = q.word(INDEX).load(Relaxed);
    q.word(INDEX).store(w.rotate_left(32), Relaxed);
    assert_eq!(q.check_ordered().unwrap_err().code, WEFT_CORRUPTED, "not a heap");
    q.word(INDEX).store(w, Relaxed);
    // The free list's links: a put walks them.
    let fw = links_at(&q) + 8 * (q.word(FREE_HEAD).load(Relaxed) / 2);
    let old = q.word(fw).swap(u64::MAX - 1, Relaxed);
    assert_eq!(q.put(&[0; 100], 0, NOW).unwrap_err().code, WEFT_CORRUPTED);
    q.word(fw).store(old, Relaxed);
    q.put(&[0; 100], 0, NOW).unwrap();
    assert_eq!(q.check_ordered().unwrap(), (4, 16 - 7));
    // The shutdown field.
    q.word(32).store(7, Relaxed);
    assert_eq!(q.put(b"", 0, NOW).unwrap_err().code, WEFT_CORRUPTED);
    assert_eq!(q.get(NOW).unwrap_err().code, WEFT_CORRUPTED);
}

/// Makes a forked child take the queue's lock and die holding it, so that the next locker
/// recovers.
fn die_holding_the_lock(q: &SharedQueue) {
    let pid = fork_child(|| {
        let _ = q.header().p_lock.acquire(NEVER, crate::futex::Interrupt::Uninterruptible);
        // SAFETY: dies holding the lock.
        unsafe { libc::raise(libc::SIGKILL) };
        false
    });
    assert!(libc::WIFSIGNALED(wait_child(pid)));
}

#[test]
fn damaged_journals_give_corrupted_and_restore_nothing() {
    // A journal naming a word no update changes (here: the lock), or too long, or committed
    // by a word that is no cursor.
    for (len, commit, entry) in [(1, 192, 128), (1, 192, 1 << 40), (500, 192, COUNT), (1, 200, COUNT)] {
        let q = damaged();
        let before = q.word(192).load(Relaxed);
        q.word(J_ENTRIES).store(entry, Relaxed);
        q.word(J_ENTRIES + 8).store(0xdead, Relaxed);
        q.word(J_COMMIT).store(commit, Relaxed);
        q.word(J_BEFORE).store(before, Relaxed);
        q.word(J_LEN).store(len, Relaxed);
        die_holding_the_lock(&q);
        assert_eq!(q.get(NOW).unwrap_err().code, WEFT_CORRUPTED, "journal ({len}, {commit}, {entry:#x})");
        assert_ne!(q.word(128).load(Relaxed), 0xdead, "nothing restored");
    }
    // A valid journal of a committed update is retired, one of an uncommitted one rolled back.
    let q = damaged();
    let count = q.word(COUNT).load(Relaxed);
    q.word(J_ENTRIES).store(NEXT_SEQ, Relaxed);
    q.word(J_ENTRIES + 8).store(q.word(NEXT_SEQ).load(Relaxed), Relaxed);
    q.word(NEXT_SEQ).fetch_add(5, Relaxed); // "applied"
    q.word(J_COMMIT).store(192, Relaxed);
    q.word(J_BEFORE).store(q.word(192).load(Relaxed), Relaxed);
    q.word(J_LEN).store(1, Relaxed);
    die_holding_the_lock(&q);
    assert_eq!(q.check_ordered().unwrap(), (count, 16 - 5));
    assert_eq!(q.word(NEXT_SEQ).load(Relaxed), 3, "rolled back");
    assert!(!super::journal::in_progress(&q));
}

#[test]
fn garbage_gives_corrupted_never_a_crash_or_hang() {
    let mut rng = XorShift(0x0dd_ba11_5eed_1234);
    let allowed = [WEFT_CORRUPTED, WEFT_WOULD_BLOCK, WEFT_TIMEOUT, WEFT_CLOSED, WEFT_INVALID_STATE];
    let s = space();
    let mut detected = 0;
    for iter in 0..400 {
        let kind = KINDS[iter % 2];
        let q = SharedQueue::create(s.clone(), None, opts(kind, 6, 1024, true)).unwrap();
        for i in 0..4 {
            q.put(&item(i, (i * 37) as usize), i64::from(i % 3), NOW).unwrap();
        }
        q.get(NOW).unwrap();
        let (links, arena) = (links_at(&q), arena_at(&q));
        for _ in 0..1 + rng.next() % 3 {
            let word = |r: &mut XorShift| match r.next() % 5 {
                0 => r.next(),
                1 => r.next() % 32,
                2 => ((r.next() % 20) << 32) | (r.next() % 20),
                3 => u64::from(u32::MAX) << (32 * (r.next() % 2)),
                _ => 1 << (r.next() % 64),
            };
            let off = match rng.next() % 5 {
                0 => [32, 192, 320][(rng.next() % 3) as usize],
                1 => COUNT + 8 * (rng.next() % 4),
                2 => INDEX + 8 * (rng.next() % 3),
                3 => links + 8 * (rng.next() % 8),
                _ => arena + 8 * (rng.next() % 128),
            };
            q.word(off).store(word(&mut rng), Relaxed);
        }
        if rng.next() % 4 == 0 {
            // A journal of garbage, and a dead lock holder to make the next locker recover.
            q.word(J_LEN).store(rng.next() % 4, Relaxed);
            q.word(J_ENTRIES + 16 * (rng.next() % 3)).store(word_at(&mut rng, links), Relaxed);
            q.word(J_COMMIT).store([192, 320, 7][(rng.next() % 3) as usize], Relaxed);
            die_holding_the_lock(&q);
        }
        let mut d = super::tests::Damaged { allowed: &allowed, iter, corrupted: false };
        d.use_every_operation(&q, &mut rng, 300, 1);
        d.check(q.check_ordered().map(|_| ()), "census");
        let _ = (q.qsize(), q.empty(), q.full(), q.unfinished(), q.is_shut_down());
        d.check(q.shutdown(rng.next() % 2 == 0), "shutdown");
        detected += usize::from(d.corrupted);
    }
    assert!(detected > 100, "damage is detected: {detected}");
}

/// An offset a journal entry might name: mostly plausible ones.
fn word_at(rng: &mut XorShift, links: u64) -> u64 {
    match rng.next() % 4 {
        0 => COUNT + 8 * (rng.next() % 4),
        1 => links + 8 * (rng.next() % 4),
        2 => rng.next() % 4096,
        _ => rng.next(),
    }
}
