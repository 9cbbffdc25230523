//! Tests of private queues: both engines (the ring for bounded FIFO, the locked containers for
//! the rest), every operation, blocking, deadlines, shutdown, the descriptor, and many threads.

use super::*;
use crate::futex::{raise_cancel, set_cancel_word};
use crate::status::{WEFT_CANCELLED, WEFT_CLOSED, WEFT_INVALID_ARGUMENT, WEFT_TIMEOUT, WEFT_WOULD_BLOCK};
use crate::time::now_ns;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::SeqCst};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

fn opts(kind: Kind, maxsize: usize, joinable: bool) -> Options {
    Options { kind, maxsize, max_bytes: 0, joinable }
}

fn queue(kind: Kind, maxsize: usize, joinable: bool) -> Arc<PrivateQueue> {
    Arc::new(PrivateQueue::new(opts(kind, maxsize, joinable)).unwrap())
}

fn is_ring(q: &PrivateQueue) -> bool {
    matches!(q.engine, Engine::Ring(_))
}

/// Bounded queues of both engines: a ring FIFO and a locked LIFO (and a FIFO above the ring's
/// limit, which is locked).
fn bounded(maxsize: usize, joinable: bool) -> Vec<Arc<PrivateQueue>> {
    vec![queue(Kind::Fifo, maxsize, joinable), queue(Kind::Lifo, maxsize, joinable), queue(Kind::Priority, maxsize, joinable)]
}

/// One queue of every kind and engine, unbounded where the kind allows.
fn all_kinds(joinable: bool) -> Vec<Arc<PrivateQueue>> {
    let mut v = vec![
        queue(Kind::Fifo, 4, joinable),
        queue(Kind::Fifo, 0, joinable),
        queue(Kind::Fifo, RING_MAX + 1, joinable),
        queue(Kind::Lifo, 0, joinable),
        queue(Kind::Priority, 0, joinable),
    ];
    if !joinable {
        v.push(queue(Kind::Simple, 0, false));
    }
    v
}

const NOW: Deadline = Deadline::Now;
const NEVER: Deadline = Deadline::Never;

fn ms(n: u64) -> Deadline {
    Deadline::from_timeout_ns(n * 1_000_000)
}

/// Runs `f` on a thread and returns its handle and a flag raised when `f` has returned.
fn background<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> (thread::JoinHandle<T>, Arc<AtomicBool>) {
    let done = Arc::new(AtomicBool::new(false));
    let d = done.clone();
    let h = thread::spawn(move || {
        let r = f();
        d.store(true, SeqCst);
        r
    });
    (h, done)
}

/// Gives a background thread time to block (a sleep is enough: the assertion that it is
/// still blocked can only fail, never pass, by accident of timing).
fn settle() {
    thread::sleep(Duration::from_millis(50));
}

#[test]
fn queue_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<PrivateQueue>();
}

#[test]
fn engines_are_chosen_by_kind_and_bound() {
    assert!(is_ring(&queue(Kind::Fifo, 1, false)));
    assert!(is_ring(&queue(Kind::Fifo, RING_MAX, true)));
    assert!(!is_ring(&queue(Kind::Fifo, RING_MAX + 1, false)));
    assert!(!is_ring(&queue(Kind::Fifo, 0, false)));
    assert!(!is_ring(&queue(Kind::Lifo, 8, false)));
    assert!(!is_ring(&queue(Kind::Simple, 0, false)));
    let o = opts(Kind::Priority, 3, true);
    assert_eq!(PrivateQueue::new(o).unwrap().options(), o);
}

#[test]
fn bad_options_are_refused() {
    for o in [opts(Kind::Simple, 4, false), opts(Kind::Simple, 0, true)] {
        assert_eq!(PrivateQueue::new(o).err().unwrap().code, WEFT_INVALID_ARGUMENT);
    }
}

#[test]
fn fifo_order() {
    let fifos = [queue(Kind::Fifo, 4, false), queue(Kind::Fifo, 0, false), queue(Kind::Fifo, RING_MAX + 1, false), queue(Kind::Simple, 0, false)];
    for q in fifos {
        for i in 0..4u8 {
            q.put(&[i], 0, NOW).unwrap();
        }
        let got: Vec<_> = (0..4).map(|_| q.get(NOW).unwrap()[0]).collect();
        assert_eq!(got, [0, 1, 2, 3]);
    }
}

#[test]
fn lifo_order() {
    let q = queue(Kind::Lifo, 0, false);
    for i in 0..4u8 {
        q.put(&[i], 0, NOW).unwrap();
    }
    let got: Vec<_> = (0..4).map(|_| q.get(NOW).unwrap()[0]).collect();
    assert_eq!(got, [3, 2, 1, 0]);
}

#[test]
fn priority_order_lowest_first_fifo_among_equals() {
    let q = queue(Kind::Priority, 0, false);
    let puts: [(i64, &[u8]); 7] = [(5, b"e1"), (1, b"a1"), (5, b"e2"), (-3, b"neg"), (1, b"a2"), (i64::MAX, b"max"), (1, b"a3")];
    for (p, item) in puts {
        q.put(item, p, NOW).unwrap();
    }
    let got: Vec<_> = (0..7).map(|_| q.get(NOW).unwrap()).collect();
    let want: Vec<&[u8]> = vec![b"neg", b"a1", b"a2", b"a3", b"e1", b"e2", b"max"];
    assert_eq!(got, want);
}

#[test]
fn items_of_every_size_round_trip() {
    let sizes = [0usize, 1, 7, 8, 9, 100, 70_000];
    for q in all_kinds(false) {
        for (round, &n) in sizes.iter().cycle().take(20).enumerate() {
            let item: Vec<u8> = (0..n).map(|i| (i * 7 + round) as u8).collect();
            q.put(&item, 0, NOW).unwrap();
            assert_eq!(q.get(NOW).unwrap(), item, "size {n}");
            q.put(&item, 0, NOW).unwrap();
            let mut buf = vec![0xAA; n + 3];
            assert_eq!(q.get_into(&mut buf, NOW).unwrap(), Filled::Item(n));
            assert_eq!(&buf[..n], &item[..]);
            assert_eq!(buf[n..], [0xAA; 3], "nothing written past the item");
        }
        assert!(q.empty());
    }
}

#[test]
fn ring_wraps_around_many_laps_with_odd_capacity() {
    let q = queue(Kind::Fifo, 3, false);
    assert!(is_ring(&q));
    let mut next_out = 0usize;
    for i in 0..1000usize {
        q.put_word(i, 0, NOW).unwrap();
        if i % 3 == 2 {
            assert!(q.full());
            assert_eq!(q.put_word(0, 0, NOW).unwrap_err().code, WEFT_WOULD_BLOCK);
            while !q.empty() {
                assert_eq!(q.get_word(NOW).unwrap(), next_out);
                next_out += 1;
            }
        }
    }
    assert_eq!(q.qsize(), 1);
    assert_eq!(q.get_word(NOW).unwrap(), 999);
}

#[test]
fn words_round_trip_and_are_8_bytes() {
    for q in all_kinds(false) {
        q.put_word(usize::MAX - 5, 0, NOW).unwrap();
        q.put_word(42, 0, NOW).unwrap();
        let mut seen = [q.get_word(NOW).unwrap(), 0];
        seen[1] = usize::from_ne_bytes(q.get(NOW).unwrap().try_into().unwrap());
        seen.sort();
        assert_eq!(seen, [42, usize::MAX - 5]);
    }
}

#[test]
fn qsize_empty_full() {
    for q in bounded(3, false) {
        assert!(q.empty() && !q.full());
        assert_eq!(q.qsize(), 0);
        q.put(b"x", 0, NOW).unwrap();
        assert!(!q.empty() && !q.full());
        q.put(b"y", 0, NOW).unwrap();
        q.put(b"z", 0, NOW).unwrap();
        assert_eq!(q.qsize(), 3);
        assert!(q.full());
        q.get(NOW).unwrap();
        assert_eq!(q.qsize(), 2);
        assert!(!q.full());
    }
    let q = queue(Kind::Fifo, 0, false);
    for i in 0..1000 {
        q.put_word(i, 0, NOW).unwrap();
    }
    assert_eq!(q.qsize(), 1000);
    assert!(!q.full(), "an unbounded queue is never full");
}

#[test]
fn now_gives_would_block() {
    for q in bounded(1, false) {
        assert_eq!(q.get(NOW).unwrap_err().code, WEFT_WOULD_BLOCK);
        assert_eq!(q.get_word(NOW).unwrap_err().code, WEFT_WOULD_BLOCK);
        assert_eq!(q.get_into(&mut [0; 8], NOW).unwrap_err().code, WEFT_WOULD_BLOCK);
        assert_eq!(q.get_many(3, NOW).unwrap_err().code, WEFT_WOULD_BLOCK);
        q.put(b"a", 0, NOW).unwrap();
        assert_eq!(q.put(b"b", 0, NOW).unwrap_err().code, WEFT_WOULD_BLOCK);
        assert_eq!(q.put_word(1, 0, NOW).unwrap_err().code, WEFT_WOULD_BLOCK);
        assert_eq!(q.get(NOW).unwrap(), b"a", "the refused put left the queue as it was");
    }
}

#[test]
fn timeouts_are_reported_after_the_deadline() {
    for q in bounded(1, false) {
        let start = now_ns();
        assert_eq!(q.get(ms(30)).unwrap_err().code, WEFT_TIMEOUT);
        assert!(now_ns() - start >= 30_000_000);
        q.put(b"a", 0, NOW).unwrap();
        let start = now_ns();
        assert_eq!(q.put(b"b", 0, ms(30)).unwrap_err().code, WEFT_TIMEOUT);
        assert!(now_ns() - start >= 30_000_000);
        // A deadline already passed is a timeout, not a would-block.
        assert_eq!(q.put(b"b", 0, Deadline::At(1)).unwrap_err().code, WEFT_TIMEOUT);
        assert_eq!(q.get(NOW).unwrap(), b"a");
        assert_eq!(q.get(Deadline::At(1)).unwrap_err().code, WEFT_TIMEOUT);
    }
}

#[test]
fn blocked_putter_waits_for_room() {
    for q in bounded(2, false) {
        q.put_word(1, 0, NOW).unwrap();
        q.put_word(2, 0, NOW).unwrap();
        let q2 = q.clone();
        let (h, done) = background(move || q2.put_word(3, 0, NEVER));
        settle();
        assert!(!done.load(SeqCst), "the putter waits while the queue is full");
        assert_eq!(q.qsize(), 2);
        let first = q.get_word(NEVER).unwrap();
        h.join().unwrap().unwrap();
        assert_eq!(q.qsize(), 2);
        let rest = [q.get_word(NOW).unwrap(), q.get_word(NOW).unwrap()];
        let mut all = [first, rest[0], rest[1]];
        all.sort();
        assert_eq!(all, [1, 2, 3]);
        if q.options().kind == Kind::Fifo {
            assert_eq!((first, rest), (1, [2, 3]));
        }
    }
}

#[test]
fn blocked_getter_waits_for_an_item() {
    for q in all_kinds(false) {
        let q2 = q.clone();
        let (h, done) = background(move || q2.get(NEVER));
        settle();
        assert!(!done.load(SeqCst), "the getter waits while the queue is empty");
        q.put(b"hello", 0, NOW).unwrap();
        assert_eq!(h.join().unwrap().unwrap(), b"hello");
        assert!(q.empty());
    }
}

/// Several sleeping getters and a burst of puts: the puts after the first find a wake-up in
/// flight and make no call; the woken getter passes it on, so every getter gets an item.
#[test]
fn a_burst_of_puts_wakes_every_sleeping_getter() {
    for q in [queue(Kind::Fifo, 8, false), queue(Kind::Lifo, 0, false)] {
        let getters: Vec<_> = (0..3)
            .map(|_| {
                let q = q.clone();
                thread::spawn(move || q.get_word(NEVER))
            })
            .collect();
        settle();
        for i in 0..3 {
            q.put_word(i, 0, NOW).unwrap();
        }
        let mut got: Vec<usize> = getters.into_iter().map(|g| g.join().unwrap().unwrap()).collect();
        got.sort();
        assert_eq!(got, [0, 1, 2]);
    }
}

#[test]
fn timed_get_succeeds_when_an_item_comes_in_time() {
    for q in all_kinds(false) {
        let q2 = q.clone();
        let (h, _) = background(move || q2.get_word(ms(10_000)));
        settle();
        q.put_word(77, 0, NOW).unwrap();
        assert_eq!(h.join().unwrap().unwrap(), 77);
    }
}

#[test]
fn put_many_stops_at_the_first_failure() {
    for q in bounded(2, false) {
        let items: [&[u8]; 3] = [b"a", b"bb", b"ccc"];
        let (n, r) = q.put_many(&items, 0, NOW);
        assert_eq!(n, 2);
        assert_eq!(r.unwrap_err().code, WEFT_WOULD_BLOCK);
        assert_eq!(q.qsize(), 2);
        q.get(NOW).unwrap();
        q.get(NOW).unwrap();
        let (n, r) = q.put_many(&items[..2], 0, NOW);
        assert_eq!((n, r), (2, Ok(())));
        q.shutdown(false);
        let (n, r) = q.put_many(&items, 0, NOW);
        assert_eq!(n, 0);
        assert_eq!(r.unwrap_err().code, WEFT_CLOSED);
    }
    let q = queue(Kind::Fifo, 0, false);
    assert_eq!(q.put_many(&[], 0, NOW), (0, Ok(())));
}

#[test]
fn put_many_waits_for_room_between_items() {
    let q = queue(Kind::Fifo, 1, false);
    let q2 = q.clone();
    let (h, _) = background(move || q2.put_many(&[b"1", b"2", b"3"], 0, NEVER));
    let got: Vec<_> = (0..3).map(|_| q.get(NEVER).unwrap()).collect();
    assert_eq!(h.join().unwrap(), (3, Ok(())));
    assert_eq!(got, [b"1", b"2", b"3"]);
}

#[test]
fn get_many_takes_what_is_there() {
    for q in all_kinds(false) {
        assert_eq!(q.get_many(0, NOW).unwrap_err().code, WEFT_INVALID_ARGUMENT);
        for i in 0..3u8 {
            q.put(&[i; 9], i as i64, NOW).unwrap();
        }
        let two = q.get_many(2, NOW).unwrap();
        assert_eq!(two.len(), 2);
        let rest = q.get_many(5, NOW).unwrap();
        assert_eq!(rest.len(), 1, "takes what is there without waiting for more");
        let mut all: Vec<u8> = two.iter().chain(&rest).map(|v| v[0]).collect();
        if q.options().kind != Kind::Lifo {
            assert_eq!(all, [0, 1, 2]);
        }
        all.sort();
        assert_eq!(all, [0, 1, 2]);
        assert_eq!(q.get_many(1, ms(1)).unwrap_err().code, WEFT_TIMEOUT);
    }
}

#[test]
fn get_many_waits_for_the_first_item() {
    for q in all_kinds(false) {
        let q2 = q.clone();
        let (h, done) = background(move || q2.get_many(10, NEVER));
        settle();
        assert!(!done.load(SeqCst));
        q.put(b"only", 0, NOW).unwrap();
        let got = h.join().unwrap().unwrap();
        assert!(!got.is_empty() && got.len() <= 10);
        assert_eq!(got[0], b"only");
    }
}

#[test]
fn get_into_too_small_keeps_the_item() {
    for q in all_kinds(false) {
        for item in [&b"0123456789"[..], b"abc"] {
            q.put(item, 0, NOW).unwrap();
            let mut small = [0u8; 2];
            assert_eq!(q.get_into(&mut small, NOW).unwrap(), Filled::TooSmall(item.len()));
            assert_eq!(small, [0, 0], "nothing written");
            assert_eq!(q.qsize(), 1);
            let mut buf = [0u8; 10];
            assert_eq!(q.get_into(&mut buf, NOW).unwrap(), Filled::Item(item.len()));
            assert_eq!(&buf[..item.len()], item);
            assert!(q.empty());
        }
        q.put(b"", 0, NOW).unwrap();
        assert_eq!(q.get_into(&mut [], NOW).unwrap(), Filled::Item(0));
    }
}

#[test]
fn get_word_of_another_size_keeps_the_item() {
    for q in all_kinds(false) {
        for item in [&b"abc"[..], b"123456789", b""] {
            q.put(item, 0, NOW).unwrap();
            let e = q.get_word(NEVER).unwrap_err();
            assert_eq!(e.code, WEFT_INVALID_STATE);
            assert_eq!(q.qsize(), 1, "the item stays");
            assert_eq!(q.get(NOW).unwrap(), item);
        }
    }
}

#[test]
fn blocked_get_word_refuses_an_arriving_item_of_another_size() {
    let q = queue(Kind::Fifo, 4, false);
    let q2 = q.clone();
    let (h, _) = background(move || q2.get_word(NEVER));
    settle();
    q.put(b"short", 0, NOW).unwrap();
    assert_eq!(h.join().unwrap().unwrap_err().code, WEFT_INVALID_STATE);
    assert_eq!(q.get(NOW).unwrap(), b"short");
}

#[test]
fn task_done_and_join_need_a_joinable_queue() {
    for q in all_kinds(false) {
        assert_eq!(q.task_done().unwrap_err().code, WEFT_INVALID_STATE);
        assert_eq!(q.join(NOW).unwrap_err().code, WEFT_INVALID_STATE);
        q.put(b"x", 0, NOW).unwrap();
        assert_eq!(q.unfinished(), 0);
    }
}

#[test]
fn join_waits_for_every_task_done() {
    for q in all_kinds(true) {
        q.join(NOW).unwrap();
        q.put(b"a", 0, NOW).unwrap();
        q.put_word(2, 0, NOW).unwrap();
        assert_eq!(q.unfinished(), 2);
        assert_eq!(q.join(NOW).unwrap_err().code, WEFT_WOULD_BLOCK);
        let start = now_ns();
        assert_eq!(q.join(ms(20)).unwrap_err().code, WEFT_TIMEOUT);
        assert!(now_ns() - start >= 20_000_000);
        let q2 = q.clone();
        let (h, done) = background(move || q2.join(NEVER));
        q.get(NOW).unwrap();
        q.task_done().unwrap();
        q.get(NOW).unwrap();
        settle();
        assert!(!done.load(SeqCst), "one task is still unfinished");
        assert_eq!(q.unfinished(), 1);
        q.task_done().unwrap();
        h.join().unwrap().unwrap();
        assert_eq!(q.unfinished(), 0);
        assert_eq!(q.task_done().unwrap_err().code, WEFT_INVALID_STATE, "one too many");
        assert_eq!(q.unfinished(), 0);
    }
}

#[test]
fn failed_puts_do_not_count_as_tasks() {
    for q in bounded(1, true) {
        q.put(b"a", 0, NOW).unwrap();
        assert!(q.put(b"b", 0, NOW).is_err());
        assert_eq!(q.unfinished(), 1);
        q.shutdown(false);
        assert!(q.put(b"c", 0, NOW).is_err());
        assert_eq!(q.unfinished(), 1);
    }
}

#[test]
fn shutdown_wakes_blocked_putters_and_getters() {
    for q in bounded(1, true) {
        // A blocked putter on a full queue.
        q.put(b"kept", 0, NOW).unwrap();
        let q2 = q.clone();
        let (putter, _) = background(move || q2.put(b"late", 0, NEVER));
        // A blocked joiner (one unfinished task).
        let q3 = q.clone();
        let (joiner, joined) = background(move || q3.join(NEVER));
        settle();
        assert!(!q.is_shut_down());
        q.shutdown(false);
        assert!(q.is_shut_down());
        assert_eq!(putter.join().unwrap().unwrap_err().code, WEFT_CLOSED);
        assert_eq!(q.put(b"after", 0, NOW).unwrap_err().code, WEFT_CLOSED);
        assert_eq!(q.put(b"after", 0, NEVER).unwrap_err().code, WEFT_CLOSED);
        // Gets drain what is left, then report the shutdown.
        assert_eq!(q.get(NEVER).unwrap(), b"kept");
        assert_eq!(q.get(NEVER).unwrap_err().code, WEFT_CLOSED);
        assert_eq!(q.get(NOW).unwrap_err().code, WEFT_CLOSED);
        assert_eq!(q.get_many(4, NEVER).unwrap_err().code, WEFT_CLOSED);
        // A plain shutdown leaves the joiner to the task count.
        settle();
        assert!(!joined.load(SeqCst));
        q.task_done().unwrap();
        joiner.join().unwrap().unwrap();
    }
    for q in all_kinds(false) {
        let q2 = q.clone();
        let (getter, _) = background(move || q2.get(NEVER));
        settle();
        q.shutdown(false);
        assert_eq!(getter.join().unwrap().unwrap_err().code, WEFT_CLOSED);
        q.shutdown(false);
        assert!(q.is_shut_down());
    }
}

#[test]
fn immediate_shutdown_discards_and_releases_joiners() {
    for q in all_kinds(true) {
        for i in 0..3u8 {
            q.put(&[i; 20], 0, NOW).unwrap();
        }
        q.get(NOW).unwrap(); // taken, not yet done
        assert_eq!((q.qsize(), q.unfinished()), (2, 3));
        let q2 = q.clone();
        let (joiner, joined) = background(move || q2.join(NEVER));
        settle();
        q.shutdown(true);
        assert_eq!((q.qsize(), q.unfinished()), (0, 1), "two items discarded and counted done");
        assert_eq!(q.get(NOW).unwrap_err().code, WEFT_CLOSED);
        settle();
        assert!(!joined.load(SeqCst), "the task taken before the shutdown is not done yet");
        q.task_done().unwrap();
        joiner.join().unwrap().unwrap();
    }
    // The count never goes below zero: tasks marked done before their items were taken.
    for q in all_kinds(true) {
        q.put(b"a", 0, NOW).unwrap();
        q.put(b"b", 0, NOW).unwrap();
        q.task_done().unwrap();
        q.task_done().unwrap();
        q.shutdown(true);
        assert_eq!((q.qsize(), q.unfinished()), (0, 0));
        q.join(NOW).unwrap();
    }
}

#[test]
fn immediate_shutdown_wakes_a_joiner_when_the_count_reaches_zero() {
    for q in all_kinds(true) {
        q.put(b"a", 0, NOW).unwrap();
        q.put(b"b", 0, NOW).unwrap();
        let q2 = q.clone();
        let (joiner, joined) = background(move || q2.join(NEVER));
        settle();
        assert!(!joined.load(SeqCst));
        q.shutdown(true);
        joiner.join().unwrap().unwrap();
        assert_eq!(q.unfinished(), 0);
    }
}

#[test]
fn cancel_request_ends_a_blocked_get_and_put() {
    for q in bounded(1, false) {
        for put in [false, true] {
            if put {
                q.put(b"full", 0, NOW).unwrap();
            }
            let cancel = Arc::new(AtomicU32::new(0));
            let (c2, q2) = (cancel.clone(), q.clone());
            let h = thread::spawn(move || {
                set_cancel_word(&*c2);
                let r = if put { q2.put(b"x", 0, NEVER) } else { q2.get(NEVER).map(|_| ()) };
                set_cancel_word(std::ptr::null());
                r
            });
            settle();
            raise_cancel(&cancel);
            assert_eq!(h.join().unwrap().unwrap_err().code, WEFT_CANCELLED);
            if put {
                assert_eq!(q.get(NOW).unwrap(), b"full");
            }
            assert!(q.empty());
        }
    }
}

fn readable(fd: RawFd) -> bool {
    let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    // SAFETY: one valid pollfd on the stack; timeout 0 does not block.
    let r = unsafe { libc::poll(&mut p, 1, 0) };
    assert!(r >= 0);
    r == 1 && p.revents & libc::POLLIN != 0
}

#[test]
fn fd_is_readable_exactly_while_non_empty() {
    for q in all_kinds(false) {
        q.put(b"before", 0, NOW).unwrap();
        let fd = q.fd().unwrap();
        assert_eq!(q.fd().unwrap(), fd, "one descriptor per queue");
        assert!(readable(fd), "an item put before the descriptor existed counts");
        q.get(NOW).unwrap();
        assert!(!readable(fd));
        q.put_word(1, 0, NOW).unwrap();
        assert!(readable(fd));
        q.put(b"two", 0, NOW).unwrap();
        assert!(readable(fd));
        q.get(NOW).unwrap();
        assert!(readable(fd));
        assert_eq!(q.get_into(&mut [0; 1], NOW).unwrap(), Filled::TooSmall(if q.options().kind == Kind::Lifo { 8 } else { 3 }));
        assert!(readable(fd), "a refused get changes nothing");
        q.get(NOW).unwrap();
        assert!(!readable(fd));
        q.put_many(&[b"a", b"b"], 0, NOW).1.unwrap();
        assert!(readable(fd));
        assert_eq!(q.get_many(5, NOW).unwrap().len(), 2);
        assert!(!readable(fd));
        q.shutdown(false);
        assert!(readable(fd), "a shut-down queue stays readable");
        // The descriptor is close-on-exec and non-blocking.
        // SAFETY: fcntl on our live descriptor.
        unsafe {
            assert_ne!(libc::fcntl(fd, libc::F_GETFD) & libc::FD_CLOEXEC, 0);
            assert_ne!(libc::fcntl(fd, libc::F_GETFL) & libc::O_NONBLOCK, 0);
        }
    }
}

#[test]
fn fd_level_is_right_after_concurrent_traffic() {
    for q in [queue(Kind::Fifo, 16, false), queue(Kind::Fifo, 0, false)] {
        let fd = q.fd().unwrap();
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let q = q.clone();
                thread::spawn(move || {
                    for i in 0..2000 {
                        if (i + t) % 2 == 0 {
                            let _ = q.put_word(i, 0, NOW);
                        } else {
                            let _ = q.get_word(NOW);
                        }
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(readable(fd), !q.empty());
        while q.get_word(NOW).is_ok() {}
        assert!(!readable(fd));
    }
}

/// Whether descriptors `a` and `b` of this process refer to the same open file (kcmp).
fn same_file(a: RawFd, b: RawFd) -> bool {
    // SAFETY: kcmp compares two descriptors of our own process; it takes no pointers.
    let r = unsafe { libc::syscall(libc::SYS_kcmp, libc::getpid(), libc::getpid(), 0 /* KCMP_FILE */, a, b) };
    assert!(r >= 0, "kcmp failed");
    r == 0
}

#[test]
fn fd_is_closed_when_the_queue_is_dropped() {
    let q = PrivateQueue::new(opts(Kind::Fifo, 4, false)).unwrap();
    let fd = q.fd().unwrap();
    // SAFETY: dup of our live descriptor; the copy is closed below.
    let copy = unsafe { libc::dup(fd) };
    assert!(copy >= 0);
    assert!(same_file(fd, copy));
    drop(q);
    // The number may already have been reused by another test's descriptor, but not for the
    // eventfd, which the copy keeps alive.
    // SAFETY: fcntl on a descriptor number only asks whether it is open.
    let open = unsafe { libc::fcntl(fd, libc::F_GETFD) } >= 0;
    assert!(!open || !same_file(fd, copy), "the queue's descriptor was closed");
    // SAFETY: closes our own copy.
    unsafe { libc::close(copy) };
}

#[test]
fn dropping_a_queue_frees_its_items() {
    // Leak-checked under sanitizers/valgrind; here: items of every size left in every kind,
    // including a ring that wrapped, are dropped without fault.
    for q in all_kinds(true) {
        for i in 0..3usize {
            q.put(&vec![i as u8; i * 10], 0, NOW).unwrap();
        }
        q.get(NOW).unwrap();
        q.put(&[9; 100], 0, NOW).unwrap();
        assert_eq!(q.qsize(), 3);
        drop(Arc::into_inner(q).expect("the only handle"));
    }
}

/// Producers × consumers through a small ring: every item delivered exactly once, and each
/// consumer sees each producer's items in the order they were put.
fn mpmc(q: Arc<PrivateQueue>, producers: usize, consumers: usize, per_producer: usize, big: bool) {
    let fifo = q.options().kind == Kind::Fifo;
    let prods: Vec<_> = (0..producers)
        .map(|p| {
            let q = q.clone();
            thread::spawn(move || {
                for i in 0..per_producer {
                    let v = (p << 32) | i;
                    if big {
                        let mut item = [0u8; 24];
                        item[..8].copy_from_slice(&v.to_ne_bytes());
                        item[8..16].copy_from_slice(&(!v).to_ne_bytes());
                        q.put(&item, 0, NEVER).unwrap();
                    } else {
                        q.put_word(v, 0, NEVER).unwrap();
                    }
                }
            })
        })
        .collect();
    let cons: Vec<_> = (0..consumers)
        .map(|_| {
            let q = q.clone();
            thread::spawn(move || {
                let mut got = Vec::new();
                let mut last = vec![None::<usize>; producers];
                loop {
                    let v = if big {
                        match q.get(NEVER) {
                            Ok(item) => {
                                let v = usize::from_ne_bytes(item[..8].try_into().unwrap());
                                assert_eq!(usize::from_ne_bytes(item[8..16].try_into().unwrap()), !v, "item intact");
                                v
                            }
                            Err(e) => {
                                assert_eq!(e.code, WEFT_CLOSED);
                                break;
                            }
                        }
                    } else {
                        match q.get_word(NEVER) {
                            Ok(v) => v,
                            Err(e) => {
                                assert_eq!(e.code, WEFT_CLOSED);
                                break;
                            }
                        }
                    };
                    let (p, i) = (v >> 32, v & 0xffff_ffff);
                    if fifo {
                        assert!(last[p].map_or(true, |l| l < i), "producer {p}: {i} after {:?}", last[p]);
                    }
                    last[p] = Some(i);
                    got.push(v);
                }
                got
            })
        })
        .collect();
    for p in prods {
        p.join().unwrap();
    }
    q.shutdown(false);
    let mut all: Vec<usize> = cons.into_iter().flat_map(|c| c.join().unwrap()).collect();
    assert_eq!(all.len(), producers * per_producer);
    all.sort_unstable();
    let want: Vec<usize> = (0..producers).flat_map(|p| (0..per_producer).map(move |i| (p << 32) | i)).collect();
    assert_eq!(all, want, "every item exactly once");
}

#[test]
fn mpmc_ring_exact_delivery() {
    let q = queue(Kind::Fifo, 64, false);
    assert!(is_ring(&q));
    mpmc(q, 4, 4, 100_000, false);
}

#[test]
fn mpmc_ring_exact_delivery_heap_items() {
    mpmc(queue(Kind::Fifo, 7, true), 3, 3, 20_000, true);
}

#[test]
fn mpmc_locked_exact_delivery() {
    mpmc(queue(Kind::Fifo, 0, false), 3, 3, 20_000, false);
    mpmc(queue(Kind::Lifo, 16, false), 3, 3, 10_000, false);
    mpmc(queue(Kind::Priority, 16, false), 2, 2, 10_000, true);
}

/// 1 producer, 1 consumer, blocking `put_word`/`get_word` through a bounded FIFO of 1024
/// against crossbeam-channel's `bounded(1024)`. Run with
/// `cargo test --release --lib queue::private::tests::throughput -- --ignored --nocapture`.
#[test]
#[ignore]
fn throughput_against_crossbeam() {
    const N: usize = 20_000_000;
    let weft = || {
        let q = queue(Kind::Fifo, 1024, false);
        let q2 = q.clone();
        let start = std::time::Instant::now();
        let consumer = thread::spawn(move || {
            let mut sum = 0usize;
            for _ in 0..N {
                sum = sum.wrapping_add(q2.get_word(NEVER).unwrap());
            }
            sum
        });
        for i in 0..N {
            q.put_word(i, 0, NEVER).unwrap();
        }
        assert_eq!(consumer.join().unwrap(), N * (N - 1) / 2);
        N as f64 / start.elapsed().as_secs_f64()
    };
    let crossbeam = || {
        let (tx, rx) = crossbeam_channel::bounded::<usize>(1024);
        let start = std::time::Instant::now();
        let consumer = thread::spawn(move || {
            let mut sum = 0usize;
            for _ in 0..N {
                sum = sum.wrapping_add(rx.recv().unwrap());
            }
            sum
        });
        for i in 0..N {
            tx.send(i).unwrap();
        }
        assert_eq!(consumer.join().unwrap(), N * (N - 1) / 2);
        N as f64 / start.elapsed().as_secs_f64()
    };
    for round in 0..5 {
        let (w, c) = (weft(), crossbeam());
        println!("round {round}: weft {:.1} M items/s, crossbeam {:.1} M items/s, ratio {:.2}", w / 1e6, c / 1e6, w / c);
    }
}

#[test]
fn a_forked_child_syncs_a_descriptor_of_its_own() {
    use crate::test_support::{fork_child, wait_child};
    for q in all_kinds(false) {
        q.put(b"x", 0, NOW).unwrap();
        let fd = q.fd().unwrap();
        assert!(readable(fd));
        // The child empties its copy of the queue: its descriptor (same number) drains, the
        // parent's must not.
        let pid = fork_child(|| {
            q.get(NOW).is_ok() && !readable(fd) && q.fd().ok() == Some(fd) && q.put(b"y", 0, NOW).is_ok() && readable(fd)
        });
        let status = wait_child(pid);
        assert!(libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0, "child status {status:#x}");
        assert!(readable(fd), "the parent's descriptor still shows its item");
        assert_eq!(q.get(NOW).unwrap(), b"x");
        assert!(!readable(fd));
    }
}
