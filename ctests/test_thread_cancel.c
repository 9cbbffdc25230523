/* Conformance tests for weft_thread_cancel: the cooperative flag, and every kind of weft wait
 * (lock, rlock, semaphore, event, condition, barrier, join) giving up with WEFT_CANCELLED. */
#define _GNU_SOURCE
#include "runner.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "helpers.h"

/* A task that parks forever in one kind of weft wait. */
enum kind {
    K_LOCK,
    K_LOCK_TIMED,
    K_RLOCK,
    K_SEMAPHORE,
    K_EVENT,
    K_COND_RLOCK,
    K_COND_LOCK,
    K_COND_WAIT_FOR,
    K_BARRIER,
    K_JOIN,
};

typedef struct {
    enum kind kind;
    weft_lock *lock;
    weft_rlock *rlock;
    weft_semaphore *sem;
    weft_event *event;
    weft_condition *cond;
    weft_barrier *barrier;
    weft_thread *other;
    weft_event *ready;
    atomic_uint tid;
    weft_status got;
    bool held_after;     /* condition: the lock is held again after the wait */
    uint32_t depth_after; /* condition over an rlock: levels held after the wait */
    bool owned_after;    /* rlock: the task owns the rlock it failed to take */
} blocker;

static bool never(void *ctx) {
    (void)ctx;
    return false;
}

static weft_status task_block(weft_call *call) {
    blocker *b = call_ptr(call);
    atomic_store(&b->tid, my_tid());
    switch (b->kind) {
    case K_COND_RLOCK:
        ASSERT_OK(weft_rlock_acquire(b->rlock, WEFT_FOREVER));
        ASSERT_OK(weft_rlock_acquire(b->rlock, WEFT_FOREVER));
        break;
    case K_COND_LOCK:
    case K_COND_WAIT_FOR:
        ASSERT_OK(weft_condition_acquire(b->cond, WEFT_FOREVER));
        break;
    default:
        break;
    }
    ASSERT_OK(weft_event_set(b->ready));
    switch (b->kind) {
    case K_LOCK: b->got = weft_lock_acquire(b->lock, WEFT_FOREVER); break;
    case K_LOCK_TIMED: b->got = weft_lock_acquire(b->lock, 30 * SEC); break;
    case K_RLOCK:
        b->got = weft_rlock_acquire(b->rlock, WEFT_FOREVER);
        b->owned_after = weft_rlock_is_owned(b->rlock);
        break;
    case K_SEMAPHORE: b->got = weft_semaphore_acquire(b->sem, WEFT_FOREVER); break;
    case K_EVENT: b->got = weft_event_wait(b->event, WEFT_FOREVER); break;
    case K_COND_RLOCK:
        b->got = weft_condition_wait(b->cond, WEFT_FOREVER);
        b->held_after = weft_rlock_is_owned(b->rlock);
        b->depth_after = weft_rlock_depth(b->rlock);
        while (weft_rlock_depth(b->rlock) > 0) ASSERT_OK(weft_rlock_release(b->rlock));
        break;
    case K_COND_LOCK:
        b->got = weft_condition_wait(b->cond, WEFT_FOREVER);
        b->held_after = weft_lock_locked(b->lock);
        /* Releasing succeeds only if the lock is locked. */
        if (b->held_after) ASSERT_OK(weft_condition_release(b->cond));
        break;
    case K_COND_WAIT_FOR:
        b->got = weft_condition_wait_for(b->cond, never, NULL, WEFT_FOREVER);
        b->held_after = weft_lock_locked(b->lock);
        if (b->held_after) ASSERT_OK(weft_condition_release(b->cond));
        break;
    case K_BARRIER: b->got = weft_barrier_wait(b->barrier, WEFT_FOREVER, NULL); break;
    case K_JOIN: b->got = weft_thread_join(b->other, WEFT_FOREVER, NULL); break;
    }
    if (b->got == WEFT_CANCELLED) {
        weft_call_set_error(call, "cancelled while blocked");
        return WEFT_CANCELLED;
    }
    return WEFT_OK;
}

/* Starts the blocker, waits until it sleeps, cancels it and checks that it gave up with
 * WEFT_CANCELLED, that join reports TASK_FAILED, and that the task status is CANCELLED. */
static void run_cancel_case(blocker *b) {
    ASSERT_OK(weft_event_new(&b->ready));
    atomic_store(&b->tid, 0);
    b->got = -1;
    weft_thread *t = NULL;
    ASSERT_OK(start_ptr(task_block, b, NULL, &t));
    ASSERT_OK(weft_event_wait(b->ready, 5 * SEC));
    wait_until_blocked(atomic_load(&b->tid));
    runner_sleep_ms(5);
    ASSERT(weft_thread_is_alive(t));
    ASSERT_OK(weft_thread_cancel(t));
    /* Promptly: well before this generous limit, which a missed wake-up would hit. */
    ASSERT_STATUS(weft_thread_join(t, 3 * SEC, NULL), WEFT_TASK_FAILED);
    ASSERT_CONTAINS(weft_last_error_message(), "cancelled while blocked");
    ASSERT_CONTAINS(weft_last_error_message(), "WEFT_CANCELLED");
    weft_status st = -1;
    ASSERT_OK(weft_thread_task_status(t, &st));
    ASSERT_STATUS(st, WEFT_CANCELLED);
    ASSERT_STATUS(b->got, WEFT_CANCELLED);
    weft_thread_free(t);
    weft_event_free(b->ready);
}

TEST_TIMEOUT(thread_cancel_lock_acquire, 5000) {
    blocker b = {.kind = K_LOCK};
    ASSERT_OK(weft_lock_new(&b.lock));
    ASSERT_OK(weft_lock_acquire(b.lock, 0));
    run_cancel_case(&b);
    /* The cancelled acquire took nothing: the lock is still the main thread's. */
    ASSERT(weft_lock_locked(b.lock));
    ASSERT_OK(weft_lock_release(b.lock));
    ASSERT(!weft_lock_locked(b.lock));
    weft_lock_free(b.lock);
}

TEST_TIMEOUT(thread_cancel_lock_acquire_with_timeout, 5000) {
    blocker b = {.kind = K_LOCK_TIMED};
    ASSERT_OK(weft_lock_new(&b.lock));
    ASSERT_OK(weft_lock_acquire(b.lock, 0));
    run_cancel_case(&b);
    ASSERT_OK(weft_lock_release(b.lock));
    weft_lock_free(b.lock);
}

TEST_TIMEOUT(thread_cancel_rlock_acquire, 5000) {
    blocker b = {.kind = K_RLOCK};
    ASSERT_OK(weft_rlock_new(&b.rlock));
    ASSERT_OK(weft_rlock_acquire(b.rlock, 0));
    run_cancel_case(&b);
    ASSERT(!b.owned_after);
    ASSERT(weft_rlock_is_owned(b.rlock));
    ASSERT_EQ(weft_rlock_depth(b.rlock), 1);
    ASSERT_OK(weft_rlock_release(b.rlock));
    weft_rlock_free(b.rlock);
}

TEST_TIMEOUT(thread_cancel_semaphore_acquire, 5000) {
    blocker b = {.kind = K_SEMAPHORE};
    ASSERT_OK(weft_semaphore_new(0, &b.sem));
    run_cancel_case(&b);
    ASSERT_EQ(weft_semaphore_value(b.sem), 0);
    /* A permit released now is still there: the cancelled waiter did not consume it. */
    ASSERT_OK(weft_semaphore_release(b.sem, 1));
    ASSERT_OK(weft_semaphore_acquire(b.sem, 0));
    weft_semaphore_free(b.sem);
}

TEST_TIMEOUT(thread_cancel_event_wait, 5000) {
    blocker b = {.kind = K_EVENT};
    ASSERT_OK(weft_event_new(&b.event));
    run_cancel_case(&b);
    ASSERT(!weft_event_is_set(b.event));
    weft_event_free(b.event);
}

TEST_TIMEOUT(thread_cancel_condition_wait_rlock_reheld, 5000) {
    blocker b = {.kind = K_COND_RLOCK};
    ASSERT_OK(weft_rlock_new(&b.rlock));
    ASSERT_OK(weft_condition_new_with_rlock(b.rlock, &b.cond));
    run_cancel_case(&b);
    ASSERT(b.held_after);
    ASSERT_EQ(b.depth_after, 2);
    /* The task released both levels: the main thread can take it. */
    ASSERT_OK(weft_rlock_acquire(b.rlock, 0));
    ASSERT_OK(weft_rlock_release(b.rlock));
    weft_condition_free(b.cond);
    weft_rlock_free(b.rlock);
}

TEST_TIMEOUT(thread_cancel_condition_wait_lock_reheld, 5000) {
    blocker b = {.kind = K_COND_LOCK};
    ASSERT_OK(weft_lock_new(&b.lock));
    ASSERT_OK(weft_condition_new_with_lock(b.lock, &b.cond));
    run_cancel_case(&b);
    ASSERT(b.held_after);
    ASSERT(!weft_lock_locked(b.lock));
    weft_condition_free(b.cond);
    weft_lock_free(b.lock);
}

TEST_TIMEOUT(thread_cancel_condition_wait_for, 5000) {
    blocker b = {.kind = K_COND_WAIT_FOR};
    ASSERT_OK(weft_lock_new(&b.lock));
    ASSERT_OK(weft_condition_new_with_lock(b.lock, &b.cond));
    run_cancel_case(&b);
    ASSERT(b.held_after);
    ASSERT(!weft_lock_locked(b.lock));
    weft_condition_free(b.cond);
    weft_lock_free(b.lock);
}

TEST_TIMEOUT(thread_cancel_barrier_wait, 5000) {
    blocker b = {.kind = K_BARRIER};
    ASSERT_OK(weft_barrier_new(2, NULL, NULL, &b.barrier));
    run_cancel_case(&b);
    /* A cancelled wait breaks the barrier, as a timeout does. */
    ASSERT(weft_barrier_broken(b.barrier));
    ASSERT_STATUS(weft_barrier_wait(b.barrier, 0, NULL), WEFT_BROKEN);
    weft_barrier_free(b.barrier);
}

TEST_TIMEOUT(thread_cancel_join, 5000) {
    weft_event *go = NULL;
    ASSERT_OK(weft_event_new(&go));
    blocker b = {.kind = K_JOIN};
    ASSERT_OK(start_ptr(task_wait_event, go, NULL, &b.other));
    run_cancel_case(&b);
    /* Only the joiner was cancelled. */
    ASSERT(weft_thread_is_alive(b.other));
    ASSERT_OK(weft_event_set(go));
    ASSERT_OK(weft_thread_join(b.other, WEFT_FOREVER, NULL));
    weft_thread_free(b.other);
    weft_event_free(go);
}

/* The main thread holds the condition's lock when the waiter is cancelled: the waiter cannot
 * return before it gets the lock back. */
TEST_TIMEOUT(thread_cancel_condition_waits_for_lock_before_returning, 5000) {
    blocker b = {.kind = K_COND_LOCK};
    ASSERT_OK(weft_lock_new(&b.lock));
    ASSERT_OK(weft_condition_new_with_lock(b.lock, &b.cond));
    ASSERT_OK(weft_event_new(&b.ready));
    b.got = -1;
    weft_thread *t = NULL;
    ASSERT_OK(start_ptr(task_block, &b, NULL, &t));
    ASSERT_OK(weft_event_wait(b.ready, 5 * SEC));
    wait_until_blocked(atomic_load(&b.tid));
    /* The waiter released the lock while waiting; take it. */
    ASSERT_OK(weft_condition_acquire(b.cond, 5 * SEC));
    ASSERT_OK(weft_thread_cancel(t));
    uint64_t t0 = runner_now_ns();
    ASSERT_STATUS(weft_thread_join(t, 100 * MS, NULL), WEFT_TIMEOUT);
    ASSERT_UGE(runner_now_ns() - t0, 100 * MS);
    ASSERT(weft_thread_is_alive(t));
    ASSERT_OK(weft_condition_release(b.cond));
    ASSERT_STATUS(weft_thread_join(t, 3 * SEC, NULL), WEFT_TASK_FAILED);
    ASSERT_STATUS(b.got, WEFT_CANCELLED);
    ASSERT(b.held_after);
    ASSERT(!weft_lock_locked(b.lock));
    weft_thread_free(t);
    weft_event_free(b.ready);
    weft_condition_free(b.cond);
    weft_lock_free(b.lock);
}

/* ---- the cooperative flag --------------------------------------------------------------- */

typedef struct {
    weft_event *ready;
    bool initially;
    bool ignore;
} poller;

static weft_status task_poll_cancel(weft_call *call) {
    poller *p = call_ptr(call);
    p->initially = weft_call_cancelled(call);
    ASSERT_OK(weft_event_set(p->ready));
    uint64_t deadline = runner_now_ns() + 3 * SEC;
    while (!weft_call_cancelled(call)) {
        if (runner_now_ns() > deadline) return weft_call_set_result(call, "never cancelled", 15);
        runner_sleep_ms(1);
    }
    if (p->ignore) return weft_call_set_result(call, "finished anyway", 15);
    weft_call_set_error(call, "stopped on request");
    return WEFT_CANCELLED;
}

TEST_TIMEOUT(thread_cancel_sets_call_cancelled, 5000) {
    poller p = {0};
    ASSERT_OK(weft_event_new(&p.ready));
    weft_thread *t = NULL;
    ASSERT_OK(start_ptr(task_poll_cancel, &p, NULL, &t));
    ASSERT_OK(weft_event_wait(p.ready, 5 * SEC));
    ASSERT_OK(weft_thread_cancel(t));
    /* A second request is harmless. */
    ASSERT_OK(weft_thread_cancel(t));
    ASSERT_STATUS(weft_thread_join(t, WEFT_FOREVER, NULL), WEFT_TASK_FAILED);
    ASSERT_CONTAINS(weft_last_error_message(), "stopped on request");
    weft_status st = -1;
    ASSERT_OK(weft_thread_task_status(t, &st));
    ASSERT_STATUS(st, WEFT_CANCELLED);
    ASSERT(!p.initially);
    ASSERT(!weft_call_cancelled(NULL));
    weft_thread_free(t);
    weft_event_free(p.ready);
}

TEST_TIMEOUT(thread_cancel_is_cooperative, 5000) {
    poller p = {.ignore = true};
    ASSERT_OK(weft_event_new(&p.ready));
    weft_thread *t = NULL;
    ASSERT_OK(start_ptr(task_poll_cancel, &p, NULL, &t));
    ASSERT_OK(weft_event_wait(p.ready, 5 * SEC));
    ASSERT_OK(weft_thread_cancel(t));
    /* The task saw the request but chose to finish normally. */
    weft_bytes *r = NULL;
    ASSERT_OK(weft_thread_join(t, WEFT_FOREVER, &r));
    ASSERT_EQ(weft_bytes_len(r), 15);
    ASSERT(memcmp(weft_bytes_data(r), "finished anyway", 15) == 0);
    weft_bytes_free(r);
    weft_thread_free(t);
    weft_event_free(p.ready);
}

/* A cancel request made before the task waits: later blocking waits give up at once, while
 * attempts that succeed immediately still succeed. */
typedef struct {
    atomic_int go;
    weft_lock *held;
    weft_lock *free_lock;
    weft_semaphore *empty;
    weft_semaphore *full;
    weft_event *unset;
    weft_event *set;
    weft_thread *running;
    weft_thread *finished;
    weft_status st[9];
} later;

static weft_status task_later(weft_call *call) {
    later *l = call_ptr(call);
    while (!atomic_load(&l->go)) runner_sleep_ms(1);
    l->st[0] = weft_lock_acquire(l->held, WEFT_FOREVER);
    l->st[1] = weft_semaphore_acquire(l->empty, WEFT_FOREVER);
    l->st[2] = weft_event_wait(l->unset, WEFT_FOREVER);
    l->st[3] = weft_thread_join(l->running, WEFT_FOREVER, NULL);
    l->st[4] = weft_lock_acquire(l->free_lock, 0);
    l->st[5] = weft_semaphore_acquire(l->full, 0);
    l->st[6] = weft_event_wait(l->set, 0);
    l->st[7] = weft_thread_join(l->finished, 0, NULL);
    l->st[8] = weft_lock_acquire(l->held, 10 * SEC);
    return WEFT_OK;
}

TEST_TIMEOUT(thread_cancel_before_waiting, 5000) {
    later l;
    memset(&l, 0, sizeof l);
    ASSERT_OK(weft_lock_new(&l.held));
    ASSERT_OK(weft_lock_acquire(l.held, 0));
    ASSERT_OK(weft_lock_new(&l.free_lock));
    ASSERT_OK(weft_semaphore_new(0, &l.empty));
    ASSERT_OK(weft_semaphore_new(1, &l.full));
    ASSERT_OK(weft_event_new(&l.unset));
    ASSERT_OK(weft_event_new(&l.set));
    ASSERT_OK(weft_event_set(l.set));
    ASSERT_OK(start_ptr(task_wait_event, l.unset, NULL, &l.running));
    ASSERT_OK(start_ptr(task_wait_event, l.set, NULL, &l.finished));
    ASSERT_OK(weft_thread_join(l.finished, WEFT_FOREVER, NULL));

    weft_thread *t = NULL;
    ASSERT_OK(start_ptr(task_later, &l, NULL, &t));
    ASSERT_OK(weft_thread_cancel(t));
    atomic_store(&l.go, 1);
    ASSERT_OK(weft_thread_join(t, 3 * SEC, NULL));
    ASSERT_STATUS(l.st[0], WEFT_CANCELLED);
    ASSERT_STATUS(l.st[1], WEFT_CANCELLED);
    ASSERT_STATUS(l.st[2], WEFT_CANCELLED);
    ASSERT_STATUS(l.st[3], WEFT_CANCELLED);
    ASSERT_STATUS(l.st[4], WEFT_OK);
    ASSERT_STATUS(l.st[5], WEFT_OK);
    ASSERT_STATUS(l.st[6], WEFT_OK);
    ASSERT_STATUS(l.st[7], WEFT_OK);
    ASSERT_STATUS(l.st[8], WEFT_CANCELLED);
    ASSERT(weft_lock_locked(l.free_lock));
    ASSERT_EQ(weft_semaphore_value(l.full), 0);

    ASSERT(weft_thread_is_alive(l.running));
    ASSERT_OK(weft_event_set(l.unset));
    ASSERT_OK(weft_thread_join(l.running, WEFT_FOREVER, NULL));
    weft_thread_free(l.running);
    weft_thread_free(l.finished);
    weft_thread_free(t);
    weft_lock_free(l.held);
    weft_lock_free(l.free_lock);
    weft_semaphore_free(l.empty);
    weft_semaphore_free(l.full);
    weft_event_free(l.unset);
    weft_event_free(l.set);
}

/* Cancelling one waiter leaves the others of the same event waiting. */
TEST_TIMEOUT(thread_cancel_only_the_target, 5000) {
    weft_event *e = NULL;
    ASSERT_OK(weft_event_new(&e));
    weft_thread *a = NULL, *b = NULL;
    ASSERT_OK(start_ptr(task_wait_event, e, NULL, &a));
    ASSERT_OK(start_ptr(task_wait_event, e, NULL, &b));
    uint32_t ta = 0, tb = 0;
    ASSERT_OK(weft_thread_native_id(a, &ta));
    ASSERT_OK(weft_thread_native_id(b, &tb));
    wait_until_blocked(ta);
    wait_until_blocked(tb);
    ASSERT_OK(weft_thread_cancel(a));
    ASSERT_STATUS(weft_thread_join(a, 3 * SEC, NULL), WEFT_TASK_FAILED);
    weft_status st = -1;
    ASSERT_OK(weft_thread_task_status(a, &st));
    ASSERT_STATUS(st, WEFT_CANCELLED);
    ASSERT_STATUS(weft_thread_join(b, 50 * MS, NULL), WEFT_TIMEOUT);
    ASSERT(weft_thread_is_alive(b));
    ASSERT_OK(weft_event_set(e));
    ASSERT_OK(weft_thread_join(b, WEFT_FOREVER, NULL));
    weft_thread_free(a);
    weft_thread_free(b);
    weft_event_free(e);
}

TEST_TIMEOUT(thread_cancel_finished_thread, 5000) {
    weft_event *e = NULL;
    ASSERT_OK(weft_event_new(&e));
    ASSERT_OK(weft_event_set(e));
    weft_thread *t = NULL;
    ASSERT_OK(start_ptr(task_wait_event, e, NULL, &t));
    ASSERT_OK(weft_thread_join(t, WEFT_FOREVER, NULL));
    ASSERT_OK(weft_thread_cancel(t));
    ASSERT_OK(weft_thread_join(t, 0, NULL));
    weft_status st = -1;
    ASSERT_OK(weft_thread_task_status(t, &st));
    ASSERT_EQ(st, WEFT_OK);
    weft_thread_free(t);
    weft_event_free(e);
}

/* ---- threads weft did not start ---------------------------------------------------------- */

static void *pthread_cancel_self(void *p) {
    weft_status *out = p;
    weft_thread *me = NULL;
    ASSERT_OK(weft_thread_current(&me));
    *out = weft_thread_cancel(me);
    weft_thread_free(me);
    return NULL;
}

TEST_TIMEOUT(thread_cancel_non_weft_thread_invalid, 5000) {
    weft_thread *m = NULL;
    ASSERT_OK(weft_thread_main(&m));
    ASSERT_STATUS(weft_thread_cancel(m), WEFT_INVALID_ARGUMENT);
    ASSERT(strlen(weft_last_error_message()) > 0);
    weft_thread_free(m);
    weft_thread *c = NULL;
    ASSERT_OK(weft_thread_current(&c));
    ASSERT_STATUS(weft_thread_cancel(c), WEFT_INVALID_ARGUMENT);
    weft_thread_free(c);
    /* The main thread's waits are unaffected. */
    weft_lock *l = NULL;
    ASSERT_OK(weft_lock_new(&l));
    ASSERT_OK(weft_lock_acquire(l, WEFT_FOREVER));
    ASSERT_STATUS(weft_lock_acquire(l, 10 * MS), WEFT_TIMEOUT);
    ASSERT_OK(weft_lock_release(l));
    weft_lock_free(l);

    weft_status st = -1;
    pthread_t pt;
    ASSERT_EQ(pthread_create(&pt, NULL, pthread_cancel_self, &st), 0);
    ASSERT_EQ(pthread_join(pt, NULL), 0);
    ASSERT_STATUS(st, WEFT_INVALID_ARGUMENT);
}
