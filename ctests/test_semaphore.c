/* weft_semaphore: Python's threading.Semaphore and BoundedSemaphore, call by call. */
#define _GNU_SOURCE
#include "runner.h"

#include <pthread.h>
#include <stdatomic.h>

#include "helpers.h"

TEST(semaphore_null_arguments) {
    ASSERT_STATUS(weft_semaphore_new(1, NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_semaphore_new_bounded(1, NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_semaphore_acquire(NULL, 0), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_semaphore_acquire(NULL, WEFT_FOREVER), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_semaphore_release(NULL, 1), WEFT_NULL_ARGUMENT);
    ASSERT_UEQ(weft_semaphore_value(NULL), 0);
    ASSERT(!weft_semaphore_is_bounded(NULL));
    weft_semaphore_free(NULL);
}

TEST(semaphore_initial_value_and_kind) {
    weft_semaphore *s = new_sem(3, 0), *b = new_sem(2, 1), *z = new_sem(0, 0);
    weft_semaphore *big = new_sem(UINT32_MAX, 0);
    ASSERT_UEQ(weft_semaphore_value(s), 3);
    ASSERT(!weft_semaphore_is_bounded(s));
    ASSERT_UEQ(weft_semaphore_value(b), 2);
    ASSERT(weft_semaphore_is_bounded(b));
    ASSERT_UEQ(weft_semaphore_value(z), 0);
    ASSERT(!weft_semaphore_is_bounded(z));
    ASSERT_UEQ(weft_semaphore_value(big), UINT32_MAX);
    weft_semaphore_free(s);
    weft_semaphore_free(b);
    weft_semaphore_free(z);
    weft_semaphore_free(big);
}

TEST(semaphore_acquire_to_zero_then_would_block_and_timeout) {
    for (int bounded = 0; bounded <= 1; bounded++) {
        weft_semaphore *s = new_sem(3, bounded);
        ASSERT_OK(weft_semaphore_acquire(s, 0));
        ASSERT_UEQ(weft_semaphore_value(s), 2);
        ASSERT_OK(weft_semaphore_acquire(s, WEFT_FOREVER));
        ASSERT_UEQ(weft_semaphore_value(s), 1);
        ASSERT_OK(weft_semaphore_acquire(s, 10 * MS));
        ASSERT_UEQ(weft_semaphore_value(s), 0);
        ASSERT_STATUS(weft_semaphore_acquire(s, 0), WEFT_WOULD_BLOCK);
        ASSERT_GT(strlen(weft_last_error_message()), 0);
        const uint64_t timeouts[] = {1, 1 * MS, 40 * MS};
        for (size_t i = 0; i < sizeof timeouts / sizeof timeouts[0]; i++) {
            uint64_t t0 = runner_now_ns();
            ASSERT_STATUS(weft_semaphore_acquire(s, timeouts[i]), WEFT_TIMEOUT);
            ASSERT_UGE(runner_now_ns() - t0, timeouts[i]);
        }
        ASSERT_UEQ(weft_semaphore_value(s), 0);
        ASSERT_OK(weft_semaphore_release(s, 1));
        ASSERT_UEQ(weft_semaphore_value(s), 1);
        ASSERT_OK(weft_semaphore_acquire(s, 0));
        weft_semaphore_free(s);
    }
}

TEST(semaphore_release_zero_is_invalid_argument) {
    for (int bounded = 0; bounded <= 1; bounded++) {
        weft_semaphore *s = new_sem(2, bounded);
        ASSERT_OK(weft_semaphore_acquire(s, 0));
        ASSERT_STATUS(weft_semaphore_release(s, 0), WEFT_INVALID_ARGUMENT);
        ASSERT_GT(strlen(weft_last_error_message()), 0);
        ASSERT_UEQ(weft_semaphore_value(s), 1);
        weft_semaphore_free(s);
    }
}

TEST(semaphore_bounded_over_release_is_invalid_state) {
    weft_semaphore *s = new_sem(2, 1);
    ASSERT_STATUS(weft_semaphore_release(s, 1), WEFT_INVALID_STATE);
    ASSERT_GT(strlen(weft_last_error_message()), 0);
    ASSERT_UEQ(weft_semaphore_value(s), 2);
    ASSERT_OK(weft_semaphore_acquire(s, 0));
    ASSERT_UEQ(weft_semaphore_value(s), 1);
    /* release(2) would reach 3 > 2: nothing is added (Python raises ValueError). */
    ASSERT_STATUS(weft_semaphore_release(s, 2), WEFT_INVALID_STATE);
    ASSERT_UEQ(weft_semaphore_value(s), 1);
    /* Both documented errors apply here (over the bound, and past 2^32 - 1): either is fine,
     * but nothing may be added. */
    weft_status st = weft_semaphore_release(s, UINT32_MAX);
    ASSERT(st == WEFT_INVALID_STATE || st == WEFT_INVALID_ARGUMENT);
    ASSERT_UEQ(weft_semaphore_value(s), 1);
    ASSERT_OK(weft_semaphore_release(s, 1));
    ASSERT_UEQ(weft_semaphore_value(s), 2);
    ASSERT_OK(weft_semaphore_acquire(s, 0));
    ASSERT_OK(weft_semaphore_acquire(s, 0));
    ASSERT_OK(weft_semaphore_release(s, 2)); /* back to exactly the bound */
    ASSERT_UEQ(weft_semaphore_value(s), 2);
    weft_semaphore_free(s);

    weft_semaphore *z = new_sem(0, 1);
    ASSERT_STATUS(weft_semaphore_release(z, 1), WEFT_INVALID_STATE);
    ASSERT_UEQ(weft_semaphore_value(z), 0);
    ASSERT_STATUS(weft_semaphore_acquire(z, 0), WEFT_WOULD_BLOCK);
    weft_semaphore_free(z);
}

TEST(semaphore_unbounded_release_above_initial) {
    weft_semaphore *s = new_sem(1, 0);
    ASSERT_OK(weft_semaphore_release(s, 1));
    ASSERT_UEQ(weft_semaphore_value(s), 2);
    ASSERT_OK(weft_semaphore_release(s, 5));
    ASSERT_UEQ(weft_semaphore_value(s), 7);
    for (int i = 0; i < 7; i++) ASSERT_OK(weft_semaphore_acquire(s, 0));
    ASSERT_STATUS(weft_semaphore_acquire(s, 0), WEFT_WOULD_BLOCK);
    weft_semaphore_free(s);
}

TEST(semaphore_overflow_is_invalid_argument) {
    weft_semaphore *s = new_sem(UINT32_MAX - 1, 0);
    ASSERT_OK(weft_semaphore_release(s, 1));
    ASSERT_UEQ(weft_semaphore_value(s), UINT32_MAX);
    ASSERT_STATUS(weft_semaphore_release(s, 1), WEFT_INVALID_ARGUMENT);
    ASSERT_UEQ(weft_semaphore_value(s), UINT32_MAX);
    weft_semaphore_free(s);
    s = new_sem(0, 0);
    ASSERT_OK(weft_semaphore_release(s, UINT32_MAX));
    ASSERT_UEQ(weft_semaphore_value(s), UINT32_MAX);
    ASSERT_OK(weft_semaphore_acquire(s, 0));
    ASSERT_STATUS(weft_semaphore_release(s, 2), WEFT_INVALID_ARGUMENT);
    ASSERT_UEQ(weft_semaphore_value(s), UINT32_MAX - 1);
    weft_semaphore_free(s);
}

/* --- waiters ---------------------------------------------------------------------------- */

struct sm_waiter {
    weft_semaphore *s;
    atomic_uint tid;
    atomic_int *acquired;
    uint64_t timeout;
    weft_status status;
};

static void *sm_acquirer(void *arg) {
    struct sm_waiter *w = arg;
    atomic_store(&w->tid, my_tid());
    w->status = weft_semaphore_acquire(w->s, w->timeout);
    if (w->status == WEFT_OK) atomic_fetch_add(w->acquired, 1);
    return NULL;
}

static void sm_wait_count(atomic_int *n, int want) {
    uint64_t deadline = runner_now_ns() + 10 * SEC;
    while (atomic_load(n) < want) {
        if (runner_now_ns() > deadline) FAIL_AT("only %d of %d waiters acquired", atomic_load(n), want);
        runner_sleep_ms(1);
    }
}

TEST(semaphore_release_n_wakes_exactly_n) {
    enum { N = 6 };
    for (int bounded = 0; bounded <= 1; bounded++) {
        /* A bounded semaphore created with 6 permits, all taken, so releases fit the bound. */
        weft_semaphore *s = new_sem(bounded ? N : 0, bounded);
        for (int i = 0; bounded && i < N; i++) ASSERT_OK(weft_semaphore_acquire(s, 0));
        atomic_int acquired = 0;
        struct sm_waiter w[N];
        pthread_t t[N];
        for (int i = 0; i < N; i++) {
            memset(&w[i], 0, sizeof w[i]);
            w[i].s = s;
            w[i].acquired = &acquired;
            w[i].timeout = WEFT_FOREVER;
            t[i] = spawn(sm_acquirer, &w[i]);
        }
        for (int i = 0; i < N; i++) wait_blocked(&w[i].tid);
        ASSERT_EQ(atomic_load(&acquired), 0);

        ASSERT_OK(weft_semaphore_release(s, 4));
        sm_wait_count(&acquired, 4);
        runner_sleep_ms(50); /* settle: nobody else may get through */
        ASSERT_EQ(atomic_load(&acquired), 4);
        ASSERT_UEQ(weft_semaphore_value(s), 0);

        ASSERT_OK(weft_semaphore_release(s, 1));
        sm_wait_count(&acquired, 5);
        runner_sleep_ms(20);
        ASSERT_EQ(atomic_load(&acquired), 5);
        ASSERT_UEQ(weft_semaphore_value(s), 0);

        /* Three permits for the last waiter: it takes one, two remain. */
        if (bounded) {
            ASSERT_OK(weft_semaphore_release(s, 1));
        } else {
            ASSERT_OK(weft_semaphore_release(s, 3));
        }
        for (int i = 0; i < N; i++) {
            pthread_join(t[i], NULL);
            ASSERT_OK(w[i].status);
        }
        ASSERT_EQ(atomic_load(&acquired), N);
        ASSERT_UEQ(weft_semaphore_value(s), bounded ? 0 : 2);
        weft_semaphore_free(s);
    }
}

TEST(semaphore_timed_waiter_gets_permit_released_in_time) {
    weft_semaphore *s = new_sem(0, 0);
    atomic_int acquired = 0;
    struct sm_waiter w = {.s = s, .acquired = &acquired, .timeout = 20 * SEC};
    pthread_t t = spawn(sm_acquirer, &w);
    wait_blocked(&w.tid);
    ASSERT_OK(weft_semaphore_release(s, 1));
    pthread_join(t, NULL);
    ASSERT_OK(w.status);
    ASSERT_UEQ(weft_semaphore_value(s), 0);
    weft_semaphore_free(s);
}

TEST(semaphore_overflowing_timeout_waits) {
    weft_semaphore *s = new_sem(0, 0);
    atomic_int acquired = 0;
    struct sm_waiter w = {.s = s, .acquired = &acquired, .timeout = WEFT_FOREVER - 1};
    pthread_t t = spawn(sm_acquirer, &w);
    wait_blocked(&w.tid);
    runner_sleep_ms(20);
    ASSERT_EQ(atomic_load(&acquired), 0);
    ASSERT_OK(weft_semaphore_release(s, 1));
    pthread_join(t, NULL);
    ASSERT_OK(w.status);
    weft_semaphore_free(s);
}

TEST(semaphore_waiter_times_out_not_early) {
    weft_semaphore *s = new_sem(0, 0);
    atomic_int acquired = 0;
    struct sm_waiter w[3];
    pthread_t t[3];
    for (int i = 0; i < 3; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].s = s;
        w[i].acquired = &acquired;
        w[i].timeout = 30 * MS;
    }
    uint64_t t0 = runner_now_ns();
    for (int i = 0; i < 3; i++) t[i] = spawn(sm_acquirer, &w[i]);
    for (int i = 0; i < 3; i++) {
        pthread_join(t[i], NULL);
        ASSERT_STATUS(w[i].status, WEFT_TIMEOUT);
    }
    ASSERT_UGE(runner_now_ns() - t0, 30 * MS);
    ASSERT_EQ(atomic_load(&acquired), 0);
    /* Timed-out waiters do not swallow later permits. */
    ASSERT_OK(weft_semaphore_release(s, 2));
    ASSERT_UEQ(weft_semaphore_value(s), 2);
    weft_semaphore_free(s);
}

static void *sm_release_one(void *arg) {
    struct sm_waiter *w = arg;
    w->status = weft_semaphore_release(w->s, 1);
    return NULL;
}

/* A semaphore has no owner: a thread that never acquired it may release it. */
TEST(semaphore_any_thread_may_release) {
    weft_semaphore *s = new_sem(1, 1);
    ASSERT_OK(weft_semaphore_acquire(s, 0));
    struct sm_waiter w = {.s = s};
    pthread_join(spawn(sm_release_one, &w), NULL);
    ASSERT_OK(w.status);
    ASSERT_UEQ(weft_semaphore_value(s), 1);
    pthread_join(spawn(sm_release_one, &w), NULL);
    ASSERT_STATUS(w.status, WEFT_INVALID_STATE);
    weft_semaphore_free(s);
}

/* --- signals: waits survive EINTR and never return early --------------------------------- */

struct sm_later {
    weft_semaphore *s;
    atomic_int released;
};

static void *sm_release_later(void *arg) {
    struct sm_later *l = arg;
    runner_sleep_ms(60);
    atomic_store(&l->released, 1);
    ASSERT_OK(weft_semaphore_release(l->s, 1));
    return NULL;
}

TEST(semaphore_waits_survive_signals) {
    struct sm_later later = {.s = new_sem(0, 0)};
    pester p;
    pester_start(&p);
    uint64_t t0 = runner_now_ns();
    ASSERT_STATUS(weft_semaphore_acquire(later.s, 80 * MS), WEFT_TIMEOUT);
    ASSERT_UGE(runner_now_ns() - t0, 80 * MS);
    pthread_t t = spawn(sm_release_later, &later);
    ASSERT_OK(weft_semaphore_acquire(later.s, WEFT_FOREVER));
    ASSERT_EQ(atomic_load(&later.released), 1);
    ASSERT_UEQ(weft_semaphore_value(later.s), 0);
    pester_stop(&p);
    pthread_join(t, NULL);
    weft_semaphore_free(later.s);
}

/* --- stress ----------------------------------------------------------------------------- */

struct sm_gate {
    weft_semaphore *s;
    atomic_int inside;
    atomic_int max_inside;
    atomic_int failures;
    atomic_long passes;
};

static void *gate_worker(void *arg) {
    struct sm_gate *g = arg;
    for (int i = 0; i < 20000; i++) {
        weft_status st = weft_semaphore_acquire(g->s, (i & 1) ? WEFT_FOREVER : 5 * SEC);
        if (st != WEFT_OK) {
            atomic_fetch_add(&g->failures, 1);
            continue;
        }
        int in = atomic_fetch_add(&g->inside, 1) + 1;
        int m = atomic_load(&g->max_inside);
        while (in > m && !atomic_compare_exchange_weak(&g->max_inside, &m, in)) {
        }
        atomic_fetch_add(&g->passes, 1);
        atomic_fetch_sub(&g->inside, 1);
        if (weft_semaphore_release(g->s, 1) != WEFT_OK) atomic_fetch_add(&g->failures, 1);
    }
    return NULL;
}

TEST_TIMEOUT(semaphore_stress_bounded_gate, 120000) {
    enum { N = 8 };
    struct sm_gate g = {.s = new_sem(3, 1)};
    pthread_t t[N];
    for (int i = 0; i < N; i++) t[i] = spawn(gate_worker, &g);
    for (int i = 0; i < N; i++) pthread_join(t[i], NULL);
    ASSERT_EQ(atomic_load(&g.failures), 0);
    ASSERT_EQ(atomic_load(&g.passes), (long)N * 20000);
    ASSERT_LE(atomic_load(&g.max_inside), 3);
    ASSERT_GE(atomic_load(&g.max_inside), 1);
    ASSERT_UEQ(weft_semaphore_value(g.s), 3);
    weft_semaphore_free(g.s);
}

struct sm_pc {
    weft_semaphore *items;
    atomic_long produced, consumed;
    atomic_int failures;
};

enum { PC_PER_THREAD = 50000 };

static void *sm_producer(void *arg) {
    struct sm_pc *p = arg;
    for (int i = 0; i < PC_PER_THREAD; i++) {
        /* Per four items: release(1), release(1), release(2), nothing. */
        if (i % 4 == 3) continue;
        uint32_t n = (i % 4 == 2) ? 2 : 1;
        if (weft_semaphore_release(p->items, n) != WEFT_OK) atomic_fetch_add(&p->failures, 1);
        atomic_fetch_add(&p->produced, n);
    }
    return NULL;
}

static void *sm_consumer(void *arg) {
    struct sm_pc *p = arg;
    for (int i = 0; i < PC_PER_THREAD; i++) {
        if (weft_semaphore_acquire(p->items, WEFT_FOREVER) != WEFT_OK) atomic_fetch_add(&p->failures, 1);
        atomic_fetch_add(&p->consumed, 1);
    }
    return NULL;
}

TEST_TIMEOUT(semaphore_stress_producers_consumers, 120000) {
    enum { P = 4, C = 4 };
    struct sm_pc p = {.items = new_sem(0, 0)};
    pthread_t t[P + C];
    for (int i = 0; i < C; i++) t[i] = spawn(sm_consumer, &p);
    for (int i = 0; i < P; i++) t[C + i] = spawn(sm_producer, &p);
    for (int i = 0; i < P + C; i++) pthread_join(t[i], NULL);
    ASSERT_EQ(atomic_load(&p.failures), 0);
    ASSERT_EQ(atomic_load(&p.produced), (long)P * PC_PER_THREAD);
    ASSERT_EQ(atomic_load(&p.consumed), (long)C * PC_PER_THREAD);
    ASSERT_UEQ(weft_semaphore_value(p.items), 0);
    weft_semaphore_free(p.items);
}
