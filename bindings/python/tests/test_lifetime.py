"""C handles are freed exactly once, and objects the C side calls or uses stay alive."""

import gc
import threading
import weakref

import pytest

import weft
from weft import _native


def _live(kind):
    return _native.live_handles().get(kind, 0)


FACTORIES = {
    "lock": weft.Lock,
    "rlock": weft.RLock,
    "semaphore": lambda: weft.Semaphore(2),
    "event": weft.Event,
    "condition": weft.Condition,
    "barrier": lambda: weft.Barrier(2, action=lambda: None),
}


@pytest.mark.parametrize("kind", sorted(FACTORIES))
def test_handles_freed_exactly_once(kind):
    gc.collect()
    before = _live(kind)
    objs = [FACTORIES[kind]() for _ in range(500)]
    assert _live(kind) == before + 500
    refs = [weakref.ref(o) for o in objs]
    del objs
    gc.collect()
    assert all(r() is None for r in refs)
    assert _live(kind) == before  # every handle freed, none twice (the count would go below)


def test_objects_in_reference_cycles_are_freed():
    gc.collect()
    before = _native.live_handles()
    for _ in range(100):
        lock = weft.Lock()
        cond = weft.Condition(lock)
        barrier = weft.Barrier(1)
        box = [lock, cond, barrier]
        box.append(box)  # a cycle only the collector frees
        barrier._self = barrier
    del lock, cond, barrier, box
    gc.collect()
    after = _native.live_handles()
    for kind in ("lock", "condition", "barrier"):
        assert after.get(kind, 0) == before.get(kind, 0), kind


def test_condition_keeps_its_lock_alive(threads):
    cond = weft.Condition(weft.Lock())  # nobody else refers to the lock
    lock_ref = weakref.ref(cond._lock)
    gc.collect()
    assert lock_ref() is not None
    woken = []

    def waiter():
        with cond:
            woken.append("in")
            woken.append(cond.wait(10))

    threads.start(waiter)
    while True:
        with cond:
            if woken:
                cond.notify()
                break
    threads.join()
    assert woken == ["in", True]
    del cond
    gc.collect()
    assert lock_ref() is None


def test_c_condition_outlives_the_lock_handle():
    """weft_condition_new_with_lock: the condition keeps the C lock alive after the lock's own
    handle is freed."""
    lib = weft.lib
    lock = weft.Lock()
    cond = weft.Condition(lock)
    before = _live("lock")
    weft.ffi.release(lock._ptr)  # runs weft_lock_free now
    assert _live("lock") == before - 1
    assert lib.weft_condition_acquire(cond._ptr, 0) == lib.WEFT_OK
    assert lib.weft_condition_wait(cond._ptr, 1_000_000) == lib.WEFT_TIMEOUT
    assert lib.weft_condition_notify_all(cond._ptr) == lib.WEFT_OK
    assert lib.weft_condition_release(cond._ptr) == lib.WEFT_OK
    assert lib.weft_condition_release(cond._ptr) == lib.WEFT_INVALID_STATE


def test_barrier_keeps_its_action_alive():
    calls = []

    def make():
        def action():  # only the barrier refers to it
            calls.append(threading.get_ident())

        return weft.Barrier(2, action=action)

    barrier = make()
    gc.collect()
    t = threading.Thread(target=barrier.wait, args=(10,))
    t.start()
    barrier.wait(10)
    t.join(10)
    assert len(calls) == 1


def test_barrier_action_freed_with_barrier():
    class Action:
        def __call__(self):
            pass

    action = Action()
    ref = weakref.ref(action)
    barrier = weft.Barrier(1, action)
    barrier.wait()
    del action, barrier
    gc.collect()
    assert ref() is None


@pytest.mark.parametrize("kind", sorted(FACTORIES))
def test_cannot_be_pickled_or_copied(kind):
    """Like threading's primitives; a copy would share (or lose) the C handle."""
    import copy
    import pickle

    obj = FACTORIES[kind]()
    with pytest.raises(TypeError, match="cannot pickle"):
        pickle.dumps(obj)
    with pytest.raises(TypeError, match="cannot pickle"):
        copy.copy(obj)
    with pytest.raises(TypeError):
        copy.deepcopy(obj)
