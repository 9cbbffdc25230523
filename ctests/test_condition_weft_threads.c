/* Condition waits made by weft threads. Their waits watch the thread's cancel word too
 * (futex_waitv), and notify moves sleeping waiters onto the lock instead of waking them
 * (FUTEX_CMP_REQUEUE): these tests check that such waiters are woken by notify, notify(n) and
 * notify_all, once the notifier releases the lock, and that a cancel still reaches a waiter
 * that was moved onto the lock. */
#define _GNU_SOURCE
#include "helpers.h"

typedef struct {
    weft_lock *lock;
    weft_condition *cond;
    atomic_uint tids[4];
    atomic_int woken;
    int turn; /* guarded by lock */
} shared;

static weft_status waiter_task(weft_call *call) {
    shared *s = call_ptr(call);
    ASSERT_OK(weft_lock_acquire(s->lock, WEFT_FOREVER));
    unsigned slot = 0;
    while (atomic_load(&s->tids[slot]) != 0) slot++;
    atomic_store(&s->tids[slot], my_tid());
    weft_status rc = weft_condition_wait(s->cond, WEFT_FOREVER);
    /* The lock is held again whatever the outcome. */
    ASSERT(weft_lock_locked(s->lock));
    if (rc == WEFT_OK) atomic_fetch_add(&s->woken, 1);
    ASSERT_OK(weft_lock_release(s->lock));
    return rc;
}

static void setup(shared *s) {
    memset(s, 0, sizeof *s);
    s->lock = new_lock();
    ASSERT_OK(weft_condition_new_with_lock(s->lock, &s->cond));
}

static void teardown(shared *s) {
    weft_condition_free(s->cond);
    weft_lock_free(s->lock);
}

/* Starts `n` waiter threads and waits until all of them sleep inside the condition wait. */
static void start_waiters(shared *s, weft_thread **t, int n) {
    for (int i = 0; i < n; i++) {
        ASSERT_OK(start_ptr(waiter_task, s, NULL, &t[i]));
        while (atomic_load(&s->tids[i]) == 0) runner_sleep_ms(1);
    }
    for (int i = 0; i < n; i++) wait_until_blocked(atomic_load(&s->tids[i]));
}

TEST(condition_weft_thread_waiters_notify_one_at_a_time) {
    shared s;
    setup(&s);
    weft_thread *t[3];
    start_waiters(&s, t, 3);
    for (int round = 1; round <= 3; round++) {
        ASSERT_OK(weft_lock_acquire(s.lock, WEFT_FOREVER));
        ASSERT_OK(weft_condition_notify(s.cond, 1));
        /* Still holding the lock: the notified waiter cannot have returned yet. */
        runner_sleep_ms(20);
        ASSERT_EQ(atomic_load(&s.woken), round - 1);
        ASSERT_OK(weft_lock_release(s.lock));
        uint64_t deadline = runner_now_ns() + 5 * SEC;
        while (atomic_load(&s.woken) < round) {
            ASSERT(runner_now_ns() < deadline);
            runner_sleep_ms(1);
        }
        runner_sleep_ms(20);
        ASSERT_EQ(atomic_load(&s.woken), round); /* exactly one per notify(1) */
    }
    for (int i = 0; i < 3; i++) {
        ASSERT_OK(weft_thread_join(t[i], WEFT_FOREVER, NULL));
        weft_thread_free(t[i]);
    }
    teardown(&s);
}

TEST(condition_weft_thread_waiters_notify_all) {
    shared s;
    setup(&s);
    weft_thread *t[4];
    start_waiters(&s, t, 4);
    ASSERT_OK(weft_lock_acquire(s.lock, WEFT_FOREVER));
    ASSERT_OK(weft_condition_notify_all(s.cond));
    ASSERT_OK(weft_lock_release(s.lock));
    for (int i = 0; i < 4; i++) {
        ASSERT_OK(weft_thread_join(t[i], WEFT_FOREVER, NULL));
        weft_thread_free(t[i]);
    }
    ASSERT_EQ(atomic_load(&s.woken), 4);
    teardown(&s);
}

/* A waiter moved onto the lock by notify, while the notifier keeps holding the lock, is
 * cancelled: it still gets the lock back and reports the notification (it was notified). */
TEST(condition_weft_thread_notified_then_cancelled_keeps_notification) {
    shared s;
    setup(&s);
    weft_thread *t[1];
    start_waiters(&s, t, 1);
    ASSERT_OK(weft_lock_acquire(s.lock, WEFT_FOREVER));
    ASSERT_OK(weft_condition_notify(s.cond, 1));
    ASSERT_OK(weft_thread_cancel(t[0]));
    runner_sleep_ms(20);
    ASSERT_EQ(atomic_load(&s.woken), 0); /* cannot return before the lock is released */
    ASSERT_OK(weft_lock_release(s.lock));
    ASSERT_OK(weft_thread_join(t[0], WEFT_FOREVER, NULL));
    ASSERT_EQ(atomic_load(&s.woken), 1);
    weft_thread_free(t[0]);
    teardown(&s);
}

static weft_status pinger(weft_call *call) {
    shared *s = call_ptr(call);
    for (int i = 0; i < 2000; i++) {
        ASSERT_OK(weft_lock_acquire(s->lock, WEFT_FOREVER));
        while (s->turn != 0) ASSERT_OK(weft_condition_wait(s->cond, WEFT_FOREVER));
        s->turn = 1;
        ASSERT_OK(weft_condition_notify(s->cond, 1));
        ASSERT_OK(weft_lock_release(s->lock));
    }
    return WEFT_OK;
}

static weft_status ponger(weft_call *call) {
    shared *s = call_ptr(call);
    for (int i = 0; i < 2000; i++) {
        ASSERT_OK(weft_lock_acquire(s->lock, WEFT_FOREVER));
        while (s->turn != 1) ASSERT_OK(weft_condition_wait(s->cond, WEFT_FOREVER));
        s->turn = 0;
        ASSERT_OK(weft_condition_notify(s->cond, 1));
        ASSERT_OK(weft_lock_release(s->lock));
    }
    return WEFT_OK;
}

TEST_TIMEOUT(condition_weft_thread_ping_pong_2000, 20000) {
    shared s;
    setup(&s);
    weft_thread *a, *b;
    ASSERT_OK(start_ptr(pinger, &s, NULL, &a));
    ASSERT_OK(start_ptr(ponger, &s, NULL, &b));
    ASSERT_OK(weft_thread_join(a, WEFT_FOREVER, NULL));
    ASSERT_OK(weft_thread_join(b, WEFT_FOREVER, NULL));
    ASSERT_EQ(s.turn, 0);
    weft_thread_free(a);
    weft_thread_free(b);
    teardown(&s);
}
