"""weft.multiprocessing's Lock, RLock, Semaphore, BoundedSemaphore, Event, Condition and
Barrier across real fork children: the same assertions against Python's multiprocessing (fork
context) and weft (the ``mp`` fixture), then what only weft does: owner death, dead barrier
parties, objects sent through a Queue or Pipe."""

import os
import signal
import time

import pytest

import weft
import weft.multiprocessing as wmp
from weft._native import CONSTANTS
from _mp_support import CTX, JOIN_TIMEOUT, children, mp, no_shm_leaks  # noqa: F401

pytestmark = pytest.mark.usefixtures("no_shm_leaks")


def _wait_until(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.005)


# --- behaviour shared with multiprocessing --------------------------------------------------


def test_lock_acquire_release(mp):
    lock = mp.Lock()
    assert lock.acquire() is True
    assert lock.acquire(False) is False
    assert lock.acquire(block=False, timeout=10) is False  # timeout ignored when not blocking
    t0 = time.monotonic()
    assert lock.acquire(timeout=0.05) is False
    assert time.monotonic() - t0 >= 0.05
    assert lock.acquire(True, -1) is False  # a negative timeout tries once
    lock.release()
    with pytest.raises(ValueError, match="released too many times"):
        lock.release()
    with lock:
        assert lock.acquire(False) is False
    assert lock.acquire(False) is True
    lock.release()


def test_lock_counter_from_four_processes(mp, children):
    lock = mp.Lock()
    total = mp.Value("i", 0, lock=False)

    def work():
        for _ in range(2000):
            with lock:
                total.value += 1

    children.run(work, n=4)
    assert total.value == 8000


def test_lock_released_by_another_process(mp, children):
    lock = mp.Lock()
    lock.acquire()
    children.run(lock.release)
    assert lock.acquire(timeout=5) is True
    lock.release()


def test_rlock(mp, children):
    rlock = mp.RLock()
    assert rlock.acquire() and rlock.acquire(timeout=1)
    rlock.release()

    def contend():
        assert rlock.acquire(timeout=0.05) is False  # the parent holds it
        with pytest.raises(AssertionError):
            rlock.release()  # not the owner

    children.run(contend)
    rlock.release()
    with pytest.raises(AssertionError, match="not owned"):
        rlock.release()

    def take():
        with rlock:
            with rlock:
                pass

    children.run(take)


def test_semaphore_blocks_across_processes(mp, children):
    sem = mp.Semaphore(2)
    assert sem.acquire() and sem.acquire()
    assert sem.acquire(False) is False
    assert sem.acquire(timeout=0.02) is False
    assert sem.get_value() == 0
    got = mp.Event()

    def take():
        assert sem.acquire(timeout=JOIN_TIMEOUT)
        got.set()

    p = children.start(take)
    assert not got.wait(0.1)  # blocked: no permit
    sem.release()
    assert got.wait(JOIN_TIMEOUT)
    assert children.join(p) == [0]
    assert sem.get_value() == 0
    sem.release()
    with sem:
        assert sem.get_value() == 0
    assert sem.get_value() == 1


def test_bounded_semaphore(mp):
    sem = mp.BoundedSemaphore(2)
    sem.acquire()
    sem.release()
    with pytest.raises(ValueError, match="released too many times"):
        sem.release()
    assert sem.get_value() == 2


def test_event_across_processes(mp, children):
    go = mp.Event()
    done = mp.Event()
    assert go.wait(0.01) is False
    assert not go.is_set()

    def child():
        assert go.wait(JOIN_TIMEOUT)
        done.set()

    p = children.start(child)
    assert not done.wait(0.05)
    go.set()
    assert done.wait(JOIN_TIMEOUT)
    assert children.join(p) == [0]
    go.clear()
    assert not go.is_set()


def test_condition_requires_the_lock(mp):
    cond = mp.Condition()
    with pytest.raises(AssertionError):
        cond.wait(0.01)
    with pytest.raises(AssertionError):
        cond.notify()
    with pytest.raises(AssertionError):
        cond.notify_all()
    with cond:
        assert cond.wait(0.01) is False
        assert cond.wait_for(lambda: False, timeout=0.02) is False
        assert cond.wait_for(lambda: 42, timeout=0) == 42


@pytest.mark.parametrize("kind", ["RLock", "Lock"])
def test_condition_notify_one_then_all(mp, children, kind):
    cond = mp.Condition(getattr(mp, kind)())
    ready = mp.Value("i", 0, lock=False)
    woken = mp.Value("i", 0, lock=False)

    def waiter():
        with cond:
            ready.value += 1
            assert cond.wait(JOIN_TIMEOUT)
            woken.value += 1

    procs = children.start(waiter, n=3)

    def all_waiting():
        with cond:
            return ready.value == 3  # each registered under the lock, then wait() released it

    _wait_until(all_waiting)
    with cond:
        cond.notify()
    _wait_until(lambda: woken.value >= 1)
    time.sleep(0.1)
    assert woken.value == 1
    with cond:
        cond.notify_all()
    assert children.join(procs) == [0, 0, 0]
    assert woken.value == 3


def test_condition_wait_for_across_processes(mp, children):
    cond = mp.Condition()
    state = mp.Value("i", 0, lock=False)

    def producer():
        for i in range(1, 6):
            time.sleep(0.01)
            with cond:
                state.value = i
                cond.notify_all()

    p = children.start(producer)
    with cond:
        assert cond.wait_for(lambda: state.value == 5, timeout=JOIN_TIMEOUT)
    assert children.join(p) == [0]


def test_barrier_across_processes(mp, children):
    trips = mp.Value("i", 0)
    indexes = mp.Array("i", 4 * 3)

    def action():
        trips.value += 1

    barrier = mp.Barrier(4, action=action, timeout=JOIN_TIMEOUT)
    assert barrier.parties == 4 and not barrier.broken

    def party(slot):
        for r in range(3):
            indexes[r * 4 + slot] = barrier.wait()

    procs = [children.start(party, i) for i in range(3)]
    party(3)
    assert children.join(procs) == [0, 0, 0]
    assert trips.value == 3
    for r in range(3):
        assert sorted(indexes[r * 4 : r * 4 + 4]) == [0, 1, 2, 3]


def test_barrier_abort_reset_n_waiting(mp, children):
    barrier = mp.Barrier(2)

    def child():
        with pytest.raises(weft.BrokenBarrierError):
            barrier.wait(JOIN_TIMEOUT)

    p = children.start(child)
    _wait_until(lambda: barrier.n_waiting == 1)
    barrier.abort()
    assert children.join(p) == [0]
    assert barrier.broken
    with pytest.raises(weft.BrokenBarrierError):
        barrier.wait(1)
    barrier.reset()
    assert not barrier.broken

    def ok():
        barrier.wait(JOIN_TIMEOUT)

    p = children.start(ok)
    barrier.wait(JOIN_TIMEOUT)
    assert children.join(p) == [0]


def test_barrier_timeout_breaks_it(mp):
    barrier = mp.Barrier(2)
    with pytest.raises(weft.BrokenBarrierError):
        barrier.wait(0.05)
    assert barrier.broken


# --- owner death ----------------------------------------------------------------------------


def _die_holding(*locks):
    for lock in locks:
        lock.acquire()
    os.kill(os.getpid(), signal.SIGKILL)


def test_lock_owner_killed(children):
    lock = wmp.Lock()
    p = children.start(_die_holding, lock)
    assert children.join(p) == [-signal.SIGKILL]
    with pytest.raises(weft.OwnerDeadError) as info:
        lock.acquire(timeout=JOIN_TIMEOUT)
    assert isinstance(info.value, RuntimeError)
    assert info.value.status == CONSTANTS["WEFT_OWNER_DEAD"]
    assert info.value.name == "WEFT_OWNER_DEAD"
    assert lock.locked()  # the survivor holds it
    lock.mark_consistent()
    lock.release()
    assert lock.acquire(timeout=1)
    lock.release()
    with pytest.raises(RuntimeError):
        lock.mark_consistent()  # nothing to recover


def test_lock_owner_killed_wakes_a_blocked_waiter(children):
    lock = wmp.Lock()
    holding = wmp.Event()

    def child():
        lock.acquire()
        holding.set()
        time.sleep(0.2)
        os.kill(os.getpid(), signal.SIGKILL)

    p = children.start(child)
    assert holding.wait(JOIN_TIMEOUT)
    t0 = time.monotonic()
    with pytest.raises(weft.OwnerDeadError):
        lock.acquire(timeout=JOIN_TIMEOUT)  # blocked when the holder dies
    assert time.monotonic() - t0 < JOIN_TIMEOUT / 2
    lock.mark_consistent()
    lock.release()
    assert children.join(p) == [-signal.SIGKILL]


def test_lock_not_recoverable_without_mark_consistent(children):
    lock = wmp.Lock()
    children.start(_die_holding, lock)
    children.join()
    with pytest.raises(weft.OwnerDeadError):
        lock.acquire()
    lock.release()  # abandons the recovery
    with pytest.raises(weft.NotRecoverableError):
        lock.acquire(timeout=1)
    with pytest.raises(weft.NotRecoverableError):
        lock.acquire(False)


def test_rlock_owner_killed(children):
    rlock = wmp.RLock()
    children.start(_die_holding, rlock, rlock)  # depth 2
    children.join()
    with pytest.raises(weft.OwnerDeadError):
        rlock.acquire(timeout=JOIN_TIMEOUT)
    assert rlock._is_mine() and rlock._count() == 1
    rlock.mark_consistent()
    rlock.release()
    assert not rlock._is_mine()
    with rlock:
        pass


def test_condition_lock_owner_killed_during_wait(children):
    cond = wmp.Condition(wmp.Lock())

    def child():
        cond.acquire()  # the parent released it by waiting
        cond.notify()  # wakes the parent, which then needs the lock back
        os.kill(os.getpid(), signal.SIGKILL)

    with cond:
        children.start(child)
        with pytest.raises(weft.OwnerDeadError):
            cond.wait(JOIN_TIMEOUT)
        cond.mark_consistent()  # the waiter holds the lock again
    assert children.join() == [-signal.SIGKILL]
    with cond:
        assert cond.wait(0.01) is False


def test_value_lock_owner_killed(children):
    value = wmp.Value("q", 7)
    children.start(_die_holding, value.get_lock())
    children.join()
    with pytest.raises(weft.OwnerDeadError):
        value.get_lock().acquire(timeout=JOIN_TIMEOUT)
    value.mark_consistent()
    value.value += 1
    value.get_lock().release()
    assert value.value == 8


def test_value_operations_survive_a_killed_lock_holder(children):
    # Without an explicit get_lock(), the value's own operations recover silently: each item
    # is written whole, so there is nothing to repair.
    value = wmp.Value("i", 1)
    children.start(_die_holding, value.get_lock())
    children.join()
    value.value += 1
    assert value.value == 2


# --- barrier parties that exit or die -------------------------------------------------------


def test_barrier_children_that_exit_normally_do_not_break_it(children):
    barrier = wmp.Barrier(2, timeout=JOIN_TIMEOUT)

    def party():
        time.sleep(0.15)  # the parent waits long enough to check the other parties
        barrier.wait()

    for _ in range(3):  # each round with a new child; the previous one has exited
        p = children.start(party)
        barrier.wait()
        assert children.join(p) == [0]
    assert not barrier.broken


def test_barrier_breaks_when_a_party_is_killed(children):
    barrier = wmp.Barrier(2)

    def party():
        barrier.wait(JOIN_TIMEOUT)
        os.kill(os.getpid(), signal.SIGKILL)

    p = children.start(party)
    barrier.wait(JOIN_TIMEOUT)
    assert children.join(p) == [-signal.SIGKILL]
    t0 = time.monotonic()
    with pytest.raises(weft.BrokenBarrierError):
        barrier.wait(JOIN_TIMEOUT)
    assert time.monotonic() - t0 < JOIN_TIMEOUT / 2
    assert barrier.broken


# --- passing objects to a forked child through a Queue or a Pipe -----------------------------


def _use_received(queue, results):
    lock, rlock, sem, event, cond, barrier, value, array, state = queue.get(timeout=JOIN_TIMEOUT)
    assert isinstance(lock, wmp.Lock) and isinstance(sem, wmp.BoundedSemaphore)
    with lock, rlock, rlock:
        value.value += 10
        array[1] = 5
    sem.acquire()
    barrier.wait(JOIN_TIMEOUT)
    with cond:
        state.value = 1
        cond.notify_all()
    assert event.wait(JOIN_TIMEOUT)
    results.put("ok")


def test_objects_sent_through_a_queue(children):
    queue = CTX.Queue()
    results = CTX.Queue()
    p = children.start(_use_received, queue, results)
    # Created after the fork: the child can only reach them through their tokens.
    lock, rlock = wmp.Lock(), wmp.RLock()
    sem = wmp.BoundedSemaphore(1)
    event = wmp.Event()
    cond = wmp.Condition()
    barrier = wmp.Barrier(2)
    value = wmp.Value("i", 1)
    array = wmp.Array("d", 3)
    state = wmp.Value("i", 0, lock=False)
    queue.put((lock, rlock, sem, event, cond, barrier, value, array, state))
    barrier.wait(JOIN_TIMEOUT)
    with cond:
        assert cond.wait_for(lambda: state.value == 1, JOIN_TIMEOUT)
    event.set()
    assert results.get(timeout=JOIN_TIMEOUT) == "ok"
    assert children.join(p) == [0]
    assert value.value == 11 and array[:] == [0.0, 5.0, 0.0]
    assert sem.get_value() == 0
    assert not lock.locked()


def test_objects_sent_through_a_pipe(children):
    parent_end, child_end = CTX.Pipe()

    def child():
        lock, value = child_end.recv()
        for _ in range(500):
            with lock:
                value.value += 1
        child_end.send("done")

    p = children.start(child)
    lock = wmp.Lock()
    value = wmp.Value("i", 0, lock=False)
    parent_end.send((lock, value))
    for _ in range(500):
        with lock:
            value.value += 1
    assert parent_end.poll(JOIN_TIMEOUT) and parent_end.recv() == "done"
    assert children.join(p) == [0]
    assert value.value == 1000


def test_tokens_round_trip():
    lock = wmp.Lock()
    token = lock.token()
    assert isinstance(token, bytes) and 0 < len(token) <= 240
    other = wmp.Lock.from_token(token)
    with lock:
        assert other.locked()
    with pytest.raises(ValueError):
        wmp.Event.from_token(token)  # a lock's token is not an event's
    with pytest.raises(ValueError):
        wmp.Lock.from_token(b"not a token")
    sem = wmp.Semaphore(3)
    assert wmp.Semaphore.from_token(sem.token()).get_value() == 3


def test_repr():
    assert "unlocked" in repr(wmp.Lock())
    assert "value=2" in repr(wmp.Semaphore(2))
    assert "0/2" in repr(wmp.Barrier(2))
    assert "unset" in repr(wmp.Event())


@pytest.mark.parametrize(
    "kind, factory",
    [("mp_lock", wmp.Lock), ("mp_rlock", wmp.RLock), ("mp_semaphore", wmp.Semaphore), ("mp_event", wmp.Event),
     ("mp_condition", wmp.Condition), ("mp_barrier", lambda: wmp.Barrier(2, action=print)),
     ("mp_array", lambda: wmp.Value("i")), ("mp_array", lambda: wmp.Array("d", 3)), ("mp_dict", wmp.Dict),
     ("mp_list", wmp.List)],
)
def test_handles_freed_without_a_collection(kind, factory):
    # No reference cycles: dropping the last reference frees the C handle at once.
    from weft import _native

    before = _native.live_handles().get(kind, 0)
    objs = [factory() for _ in range(100)]
    assert _native.live_handles()[kind] == before + 100
    token = objs[0].token()
    del objs
    assert _native.live_handles()[kind] == before
    with pytest.raises(FileNotFoundError):
        type(factory()).from_token(token)  # the object went with its last handle


def test_array_lock_pickles():
    import pickle

    v = wmp.Value("i", 0)
    lock = pickle.loads(pickle.dumps(v.get_lock()))
    with lock:
        v.value += 1
    assert v.value == 1


# --- every shared object reaches children of every start method ------------------------------


def _use_everything(lock, rlock, sem, event, cond, barrier, value, array, vlock, shared_dict, shared_list, done):
    with lock, rlock, vlock:
        value.value += 1
        array[1] = 42
    sem.release()
    event.set()
    with cond:
        cond.notify_all()
    shared_dict["child"] = os.getpid()
    shared_list.append("from the child")
    barrier.wait(JOIN_TIMEOUT)
    done.put("done")


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_objects_in_the_default_space_reach_every_start_method(method):
    """Objects in the default space (an anonymous mapping) given to a spawn or forkserver child
    bring the space's descriptor with them, as queues do."""
    import multiprocessing

    ctx = multiprocessing.get_context(method)
    value = wmp.Value("i", 1)
    array = wmp.Array("i", 3)
    objs = (wmp.Lock(), wmp.RLock(), wmp.Semaphore(0), wmp.Event(), wmp.Condition(), wmp.Barrier(2),
            value, array, value.get_lock(), wmp.Dict(), wmp.List(), wmp.Queue())
    p = ctx.Process(target=_use_everything, args=objs)
    p.start()
    try:
        assert objs[5].wait(JOIN_TIMEOUT) in (0, 1)
        assert objs[-1].get(timeout=JOIN_TIMEOUT) == "done"
        p.join(JOIN_TIMEOUT)
        assert p.exitcode == 0
        assert value.value == 2 and array[1] == 42
        assert objs[2].acquire(timeout=0) and objs[3].is_set()
        assert objs[9]["child"] == p.pid and list(objs[10]) == ["from the child"]
    finally:
        if p.exitcode is None:
            p.kill()
            p.join(JOIN_TIMEOUT)
