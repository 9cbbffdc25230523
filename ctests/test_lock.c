/* weft_lock: Python's threading.Lock, call by call. Threads here are pthreads, so that this
 * file does not depend on weft's threads. */
#define _GNU_SOURCE
#include "runner.h"

#include <pthread.h>
#include <stdatomic.h>

#include "helpers.h"

TEST(lock_null_arguments) {
    ASSERT_STATUS(weft_lock_new(NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_lock_acquire(NULL, 0), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_lock_acquire(NULL, 10 * MS), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_lock_acquire(NULL, WEFT_FOREVER), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_lock_release(NULL), WEFT_NULL_ARGUMENT);
    ASSERT(!weft_lock_locked(NULL));
    weft_lock_free(NULL);
}

TEST(lock_acquire_release) {
    weft_lock *l = new_lock();
    ASSERT(!weft_lock_locked(l));
    ASSERT_OK(weft_lock_acquire(l, WEFT_FOREVER));
    ASSERT(weft_lock_locked(l));
    ASSERT_OK(weft_lock_release(l));
    ASSERT(!weft_lock_locked(l));
    ASSERT_OK(weft_lock_acquire(l, 0));
    ASSERT(weft_lock_locked(l));
    ASSERT_OK(weft_lock_release(l));
    ASSERT_OK(weft_lock_acquire(l, 50 * MS));
    ASSERT(weft_lock_locked(l));
    ASSERT_OK(weft_lock_release(l));
    ASSERT(!weft_lock_locked(l));
    weft_lock_free(l);
}

TEST(lock_locks_are_independent) {
    weft_lock *a = new_lock(), *b = new_lock();
    ASSERT_OK(weft_lock_acquire(a, 0));
    ASSERT(!weft_lock_locked(b));
    ASSERT_OK(weft_lock_acquire(b, 0));
    ASSERT_OK(weft_lock_release(a));
    ASSERT(weft_lock_locked(b));
    ASSERT_OK(weft_lock_release(b));
    weft_lock_free(a);
    weft_lock_free(b);
}

TEST(lock_try_acquire_would_block) {
    weft_lock *l = new_lock();
    ASSERT_OK(weft_lock_acquire(l, 0));
    ASSERT_STATUS(weft_lock_acquire(l, 0), WEFT_WOULD_BLOCK);
    ASSERT_GT(strlen(weft_last_error_message()), 0);
    ASSERT(weft_lock_locked(l)); /* a failed try changes nothing */
    ASSERT_OK(weft_lock_release(l));
    ASSERT(!weft_lock_locked(l));
    weft_lock_free(l);
}

TEST(lock_timed_acquire_times_out_not_early) {
    weft_lock *l = new_lock();
    ASSERT_OK(weft_lock_acquire(l, 0));
    const uint64_t timeouts[] = {1, 1000, 1 * MS, 20 * MS, 100 * MS};
    for (size_t i = 0; i < sizeof timeouts / sizeof timeouts[0]; i++) {
        uint64_t t0 = runner_now_ns();
        ASSERT_STATUS(weft_lock_acquire(l, timeouts[i]), WEFT_TIMEOUT);
        uint64_t elapsed = runner_now_ns() - t0;
        ASSERT_UGE(elapsed, timeouts[i]);
        ASSERT(weft_lock_locked(l));
    }
    ASSERT_OK(weft_lock_release(l));
    weft_lock_free(l);
}

/* Not re-entrant: a thread acquiring a lock it holds waits for itself until its timeout. */
TEST(lock_not_reentrant) {
    weft_lock *l = new_lock();
    ASSERT_OK(weft_lock_acquire(l, WEFT_FOREVER));
    ASSERT_STATUS(weft_lock_acquire(l, 0), WEFT_WOULD_BLOCK);
    uint64_t t0 = runner_now_ns();
    ASSERT_STATUS(weft_lock_acquire(l, 30 * MS), WEFT_TIMEOUT);
    ASSERT_UGE(runner_now_ns() - t0, 30 * MS);
    ASSERT_OK(weft_lock_release(l));
    weft_lock_free(l);
}

TEST(lock_release_unlocked_is_invalid_state) {
    weft_lock *l = new_lock();
    ASSERT_STATUS(weft_lock_release(l), WEFT_INVALID_STATE);
    ASSERT_GT(strlen(weft_last_error_message()), 0);
    ASSERT(!weft_lock_locked(l));
    ASSERT_OK(weft_lock_acquire(l, 0));
    ASSERT_OK(weft_lock_release(l));
    ASSERT_STATUS(weft_lock_release(l), WEFT_INVALID_STATE);
    /* The failed release did not corrupt the lock: it still works and excludes. */
    ASSERT(!weft_lock_locked(l));
    ASSERT_OK(weft_lock_acquire(l, 0));
    ASSERT_STATUS(weft_lock_acquire(l, 0), WEFT_WOULD_BLOCK);
    ASSERT_OK(weft_lock_release(l));
    weft_lock_free(l);
}

struct lk_ctx {
    weft_lock *lock;
    atomic_uint tid;
    atomic_int done;
    weft_status status;
    uint64_t timeout;
    uint64_t elapsed;
};

static void *release_it(void *arg) {
    struct lk_ctx *c = arg;
    c->status = weft_lock_release(c->lock);
    return NULL;
}

/* Python semantics: a Lock has no owner, any thread may release it. */
TEST(lock_release_by_another_thread) {
    struct lk_ctx c = {.lock = new_lock()};
    ASSERT_OK(weft_lock_acquire(c.lock, 0));
    pthread_join(spawn(release_it, &c), NULL);
    ASSERT_OK(c.status);
    ASSERT(!weft_lock_locked(c.lock));
    ASSERT_OK(weft_lock_acquire(c.lock, 0));
    /* ... and releasing an unlocked lock from another thread is refused too. */
    ASSERT_OK(weft_lock_release(c.lock));
    pthread_join(spawn(release_it, &c), NULL);
    ASSERT_STATUS(c.status, WEFT_INVALID_STATE);
    weft_lock_free(c.lock);
}

static void *acquire_it(void *arg) {
    struct lk_ctx *c = arg;
    atomic_store(&c->tid, my_tid());
    uint64_t t0 = runner_now_ns();
    c->status = weft_lock_acquire(c->lock, c->timeout);
    c->elapsed = runner_now_ns() - t0;
    atomic_store(&c->done, 1);
    return NULL;
}

TEST(lock_blocked_acquirer_wakes_on_release) {
    struct lk_ctx c = {.lock = new_lock(), .timeout = WEFT_FOREVER};
    ASSERT_OK(weft_lock_acquire(c.lock, 0));
    pthread_t t = spawn(acquire_it, &c);
    wait_blocked(&c.tid);
    ASSERT_EQ(atomic_load(&c.done), 0);
    ASSERT_OK(weft_lock_release(c.lock));
    pthread_join(t, NULL);
    ASSERT_OK(c.status);
    /* The other thread holds it now. */
    ASSERT(weft_lock_locked(c.lock));
    ASSERT_STATUS(weft_lock_acquire(c.lock, 0), WEFT_WOULD_BLOCK);
    ASSERT_OK(weft_lock_release(c.lock));
    weft_lock_free(c.lock);
}

TEST(lock_timed_acquire_succeeds_when_released_in_time) {
    struct lk_ctx c = {.lock = new_lock(), .timeout = 20 * SEC};
    ASSERT_OK(weft_lock_acquire(c.lock, 0));
    pthread_t t = spawn(acquire_it, &c);
    wait_blocked(&c.tid);
    ASSERT_OK(weft_lock_release(c.lock));
    pthread_join(t, NULL);
    ASSERT_OK(c.status);
    ASSERT(weft_lock_locked(c.lock));
    ASSERT_OK(weft_lock_release(c.lock));
    weft_lock_free(c.lock);
}

TEST(lock_contended_timeout_not_early) {
    struct lk_ctx c = {.lock = new_lock(), .timeout = 50 * MS};
    ASSERT_OK(weft_lock_acquire(c.lock, 0));
    pthread_join(spawn(acquire_it, &c), NULL);
    ASSERT_STATUS(c.status, WEFT_TIMEOUT);
    ASSERT_UGE(c.elapsed, 50 * MS);
    /* The timed-out waiter left no trace: release and re-acquire work at once. */
    ASSERT_OK(weft_lock_release(c.lock));
    ASSERT(!weft_lock_locked(c.lock));
    ASSERT_OK(weft_lock_acquire(c.lock, 0));
    ASSERT_OK(weft_lock_release(c.lock));
    weft_lock_free(c.lock);
}

/* A timeout so large that now + timeout overflows means "forever", not "already expired". */
TEST(lock_overflowing_timeout_waits) {
    struct lk_ctx c = {.lock = new_lock(), .timeout = WEFT_FOREVER - 1};
    ASSERT_OK(weft_lock_acquire(c.lock, 0));
    pthread_t t = spawn(acquire_it, &c);
    wait_blocked(&c.tid);
    runner_sleep_ms(20);
    ASSERT_EQ(atomic_load(&c.done), 0);
    ASSERT_OK(weft_lock_release(c.lock));
    pthread_join(t, NULL);
    ASSERT_OK(c.status);
    ASSERT_OK(weft_lock_release(c.lock));
    weft_lock_free(c.lock);
}

/* Several blocked acquirers: every release lets exactly one more in. */
TEST(lock_many_waiters_each_get_it_once) {
    enum { N = 6 };
    struct lk_ctx c[N];
    pthread_t t[N];
    weft_lock *l = new_lock();
    ASSERT_OK(weft_lock_acquire(l, 0));
    for (int i = 0; i < N; i++) {
        memset(&c[i], 0, sizeof c[i]);
        c[i].lock = l;
        c[i].timeout = WEFT_FOREVER;
        t[i] = spawn(acquire_it, &c[i]);
    }
    for (int i = 0; i < N; i++) wait_blocked(&c[i].tid);
    for (int round = 1; round <= N; round++) {
        ASSERT_OK(weft_lock_release(l));
        /* Exactly `round` threads have acquired it once one of them holds it. */
        uint64_t deadline = runner_now_ns() + 10 * SEC;
        int done;
        for (;;) {
            done = 0;
            for (int i = 0; i < N; i++) done += atomic_load(&c[i].done);
            if (done == round) break;
            ASSERT_LT(done, round + 1);
            if (runner_now_ns() > deadline) FAIL_AT("no waiter took the lock after a release");
            runner_sleep_ms(1);
        }
        ASSERT(weft_lock_locked(l));
        runner_sleep_ms(5);
        done = 0;
        for (int i = 0; i < N; i++) done += atomic_load(&c[i].done);
        ASSERT_EQ(done, round); /* nobody else got in while it is held */
    }
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        ASSERT_OK(c[i].status);
    }
    ASSERT_OK(weft_lock_release(l));
    ASSERT(!weft_lock_locked(l));
    weft_lock_free(l);
}

/* --- signals: waits survive EINTR and never return early --------------------------------- */

struct lk_later {
    weft_lock *lock;
    unsigned ms;
    atomic_int released;
};

static void *release_later(void *arg) {
    struct lk_later *l = arg;
    runner_sleep_ms(l->ms);
    atomic_store(&l->released, 1);
    ASSERT_OK(weft_lock_release(l->lock));
    return NULL;
}

TEST(lock_waits_survive_signals) {
    weft_lock *l = new_lock();
    ASSERT_OK(weft_lock_acquire(l, 0));
    pester p;
    pester_start(&p);
    uint64_t t0 = runner_now_ns();
    ASSERT_STATUS(weft_lock_acquire(l, 80 * MS), WEFT_TIMEOUT);
    ASSERT_UGE(runner_now_ns() - t0, 80 * MS);
    struct lk_later later = {.lock = l, .ms = 60};
    pthread_t t = spawn(release_later, &later);
    ASSERT_OK(weft_lock_acquire(l, WEFT_FOREVER));
    ASSERT_EQ(atomic_load(&later.released), 1); /* not before the release */
    pester_stop(&p);
    pthread_join(t, NULL);
    ASSERT_OK(weft_lock_release(l));
    weft_lock_free(l);
}

/* --- stress ----------------------------------------------------------------------------- */

enum { STRESS_THREADS = 8, STRESS_ITERS = 1000000 };

struct stress {
    weft_lock *lock;
    long counter; /* plain, protected only by the weft lock */
    atomic_int inside;
    atomic_int failures;
};

static void *stress_worker(void *arg) {
    struct stress *s = arg;
    for (int i = 0; i < STRESS_ITERS; i++) {
        weft_status st = weft_lock_acquire(s->lock, WEFT_FOREVER);
        if (st != WEFT_OK) {
            atomic_fetch_add(&s->failures, 1);
            continue;
        }
        s->counter++;
        if ((i & 1023) == 0) {
            /* Now and then, check exclusion explicitly. */
            if (atomic_fetch_add(&s->inside, 1) != 0) atomic_fetch_add(&s->failures, 1);
            atomic_fetch_sub(&s->inside, 1);
        }
        if (weft_lock_release(s->lock) != WEFT_OK) atomic_fetch_add(&s->failures, 1);
    }
    return NULL;
}

TEST_TIMEOUT(lock_stress_counter, 120000) {
    struct stress s = {.lock = new_lock()};
    pthread_t t[STRESS_THREADS];
    for (int i = 0; i < STRESS_THREADS; i++) t[i] = spawn(stress_worker, &s);
    for (int i = 0; i < STRESS_THREADS; i++) pthread_join(t[i], NULL);
    ASSERT_EQ(atomic_load(&s.failures), 0);
    ASSERT_EQ(s.counter, (long)STRESS_THREADS * STRESS_ITERS);
    ASSERT(!weft_lock_locked(s.lock));
    weft_lock_free(s.lock);
}

struct mixed {
    weft_lock *lock;
    long counter;
    atomic_long acquired;
    atomic_int failures;
};

/* Try-acquires, timed acquires and blocking acquires mixed: whatever succeeded is counted,
 * and the counter under the lock must match exactly. */
static void *mixed_worker(void *arg) {
    struct mixed *m = arg;
    for (int i = 0; i < 100000; i++) {
        uint64_t timeout = (i % 3 == 0) ? 0 : (i % 3 == 1) ? 100 * 1000 : WEFT_FOREVER;
        weft_status st = weft_lock_acquire(m->lock, timeout);
        if (st == WEFT_OK) {
            m->counter++;
            atomic_fetch_add(&m->acquired, 1);
            if (weft_lock_release(m->lock) != WEFT_OK) atomic_fetch_add(&m->failures, 1);
        } else if (!((timeout == 0 && st == WEFT_WOULD_BLOCK) || (timeout != 0 && timeout != WEFT_FOREVER && st == WEFT_TIMEOUT))) {
            atomic_fetch_add(&m->failures, 1);
        }
    }
    return NULL;
}

TEST_TIMEOUT(lock_stress_mixed_timeouts, 120000) {
    struct mixed m = {.lock = new_lock()};
    pthread_t t[4];
    for (int i = 0; i < 4; i++) t[i] = spawn(mixed_worker, &m);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    ASSERT_EQ(atomic_load(&m.failures), 0);
    ASSERT_EQ(m.counter, atomic_load(&m.acquired));
    ASSERT_GE(m.counter, 4 * 33333); /* at least every blocking acquire */
    ASSERT(!weft_lock_locked(m.lock));
    weft_lock_free(m.lock);
}
