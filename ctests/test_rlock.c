/* weft_rlock: Python's threading.RLock, call by call (pthreads for concurrency). */
#define _GNU_SOURCE
#include "runner.h"

#include <pthread.h>
#include <stdatomic.h>

#include "helpers.h"

TEST(rlock_null_arguments) {
    ASSERT_STATUS(weft_rlock_new(NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_rlock_acquire(NULL, 0), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_rlock_acquire(NULL, WEFT_FOREVER), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_rlock_release(NULL), WEFT_NULL_ARGUMENT);
    ASSERT(!weft_rlock_is_owned(NULL));
    ASSERT_UEQ(weft_rlock_depth(NULL), 0);
    weft_rlock_free(NULL);
}

TEST(rlock_acquire_release) {
    weft_rlock *r = new_rlock();
    ASSERT(!weft_rlock_is_owned(r));
    ASSERT_UEQ(weft_rlock_depth(r), 0);
    ASSERT_OK(weft_rlock_acquire(r, WEFT_FOREVER));
    ASSERT(weft_rlock_is_owned(r));
    ASSERT_UEQ(weft_rlock_depth(r), 1);
    ASSERT_OK(weft_rlock_release(r));
    ASSERT(!weft_rlock_is_owned(r));
    ASSERT_UEQ(weft_rlock_depth(r), 0);
    ASSERT_OK(weft_rlock_acquire(r, 0));
    ASSERT_OK(weft_rlock_release(r));
    weft_rlock_free(r);
}

TEST(rlock_release_unowned_is_not_owner) {
    weft_rlock *r = new_rlock();
    ASSERT_STATUS(weft_rlock_release(r), WEFT_NOT_OWNER);
    ASSERT_GT(strlen(weft_last_error_message()), 0);
    ASSERT_OK(weft_rlock_acquire(r, 0));
    ASSERT_OK(weft_rlock_release(r));
    ASSERT_STATUS(weft_rlock_release(r), WEFT_NOT_OWNER);
    ASSERT_UEQ(weft_rlock_depth(r), 0);
    ASSERT_OK(weft_rlock_acquire(r, 0)); /* still usable */
    ASSERT_UEQ(weft_rlock_depth(r), 1);
    ASSERT_OK(weft_rlock_release(r));
    weft_rlock_free(r);
}

TEST(rlock_recursion_depth_10000) {
    enum { DEPTH = 10000 };
    weft_rlock *r = new_rlock();
    for (uint32_t i = 1; i <= DEPTH; i++) {
        /* A re-entrant acquire never blocks: even a try (timeout 0) succeeds. */
        ASSERT_OK(weft_rlock_acquire(r, (i % 3 == 0) ? 0 : (i % 3 == 1) ? WEFT_FOREVER : 1));
        ASSERT_UEQ(weft_rlock_depth(r), i);
    }
    ASSERT(weft_rlock_is_owned(r));
    for (uint32_t i = DEPTH; i >= 1; i--) {
        ASSERT_UEQ(weft_rlock_depth(r), i);
        ASSERT(weft_rlock_is_owned(r));
        ASSERT_OK(weft_rlock_release(r));
    }
    ASSERT(!weft_rlock_is_owned(r));
    ASSERT_UEQ(weft_rlock_depth(r), 0);
    ASSERT_STATUS(weft_rlock_release(r), WEFT_NOT_OWNER);
    weft_rlock_free(r);
}

struct rl_ctx {
    weft_rlock *r;
    atomic_uint tid;
    atomic_int acquired;
    atomic_int go_release;
    uint64_t timeout;
    weft_status st_release, st_try, st_timed, st_acquire;
    uint64_t timed_elapsed;
    int owned_seen;
    uint32_t depth_seen;
};

static void *non_owner(void *arg) {
    struct rl_ctx *c = arg;
    c->owned_seen = weft_rlock_is_owned(c->r);
    c->depth_seen = weft_rlock_depth(c->r);
    c->st_release = weft_rlock_release(c->r);
    c->st_try = weft_rlock_acquire(c->r, 0);
    uint64_t t0 = runner_now_ns();
    c->st_timed = weft_rlock_acquire(c->r, 30 * MS);
    c->timed_elapsed = runner_now_ns() - t0;
    return NULL;
}

TEST(rlock_non_owner_cannot_release_or_enter) {
    struct rl_ctx c = {.r = new_rlock()};
    for (int i = 0; i < 3; i++) ASSERT_OK(weft_rlock_acquire(c.r, 0));
    pthread_join(spawn(non_owner, &c), NULL);
    ASSERT_EQ(c.owned_seen, 0);
    ASSERT_UEQ(c.depth_seen, 0);
    ASSERT_STATUS(c.st_release, WEFT_NOT_OWNER);
    ASSERT_STATUS(c.st_try, WEFT_WOULD_BLOCK);
    ASSERT_STATUS(c.st_timed, WEFT_TIMEOUT);
    ASSERT_UGE(c.timed_elapsed, 30 * MS);
    /* The owner's state is untouched. */
    ASSERT(weft_rlock_is_owned(c.r));
    ASSERT_UEQ(weft_rlock_depth(c.r), 3);
    for (int i = 0; i < 3; i++) ASSERT_OK(weft_rlock_release(c.r));
    weft_rlock_free(c.r);
}

static void *holder(void *arg) {
    struct rl_ctx *c = arg;
    c->st_acquire = weft_rlock_acquire(c->r, WEFT_FOREVER);
    atomic_store(&c->acquired, 1);
    while (!atomic_load(&c->go_release)) runner_sleep_ms(1);
    c->st_release = weft_rlock_release(c->r);
    return NULL;
}

TEST(rlock_timed_acquire_not_early) {
    struct rl_ctx c = {.r = new_rlock()};
    pthread_t t = spawn(holder, &c);
    while (!atomic_load(&c.acquired)) runner_sleep_ms(1);
    ASSERT_OK(c.st_acquire);
    ASSERT_STATUS(weft_rlock_acquire(c.r, 0), WEFT_WOULD_BLOCK);
    const uint64_t timeouts[] = {1, 1000, 1 * MS, 50 * MS};
    for (size_t i = 0; i < sizeof timeouts / sizeof timeouts[0]; i++) {
        uint64_t t0 = runner_now_ns();
        ASSERT_STATUS(weft_rlock_acquire(c.r, timeouts[i]), WEFT_TIMEOUT);
        ASSERT_UGE(runner_now_ns() - t0, timeouts[i]);
        ASSERT(!weft_rlock_is_owned(c.r));
        ASSERT_UEQ(weft_rlock_depth(c.r), 0);
    }
    atomic_store(&c.go_release, 1);
    pthread_join(t, NULL);
    ASSERT_OK(c.st_release);
    ASSERT_OK(weft_rlock_acquire(c.r, 0));
    ASSERT_OK(weft_rlock_release(c.r));
    weft_rlock_free(c.r);
}

static void *waiting_acquirer(void *arg) {
    struct rl_ctx *c = arg;
    atomic_store(&c->tid, my_tid());
    c->st_acquire = weft_rlock_acquire(c->r, c->timeout);
    c->owned_seen = weft_rlock_is_owned(c->r);
    c->depth_seen = weft_rlock_depth(c->r);
    atomic_store(&c->acquired, 1);
    while (!atomic_load(&c->go_release)) runner_sleep_ms(1);
    c->st_release = weft_rlock_release(c->r);
    return NULL;
}

TEST(rlock_other_thread_blocks_until_fully_released) {
    struct rl_ctx c = {.r = new_rlock(), .timeout = WEFT_FOREVER};
    for (int i = 0; i < 3; i++) ASSERT_OK(weft_rlock_acquire(c.r, 0));
    pthread_t t = spawn(waiting_acquirer, &c);
    wait_blocked(&c.tid);
    for (int level = 3; level >= 2; level--) {
        ASSERT_OK(weft_rlock_release(c.r));
        ASSERT_UEQ(weft_rlock_depth(c.r), (uint32_t)level - 1);
        runner_sleep_ms(20);
        ASSERT_EQ(atomic_load(&c.acquired), 0); /* still held: the other thread waits */
    }
    ASSERT_OK(weft_rlock_release(c.r));
    ASSERT(!weft_rlock_is_owned(c.r));
    uint64_t deadline = runner_now_ns() + 10 * SEC;
    while (!atomic_load(&c.acquired)) {
        if (runner_now_ns() > deadline) FAIL_AT("waiter never acquired the released rlock");
        runner_sleep_ms(1);
    }
    ASSERT_OK(c.st_acquire);
    ASSERT_EQ(c.owned_seen, 1);
    ASSERT_UEQ(c.depth_seen, 1);
    /* Now the other thread owns it: we are the non-owner. */
    ASSERT(!weft_rlock_is_owned(c.r));
    ASSERT_UEQ(weft_rlock_depth(c.r), 0);
    ASSERT_STATUS(weft_rlock_release(c.r), WEFT_NOT_OWNER);
    ASSERT_STATUS(weft_rlock_acquire(c.r, 0), WEFT_WOULD_BLOCK);
    atomic_store(&c.go_release, 1);
    pthread_join(t, NULL);
    ASSERT_OK(c.st_release);
    ASSERT_OK(weft_rlock_acquire(c.r, 0));
    ASSERT_UEQ(weft_rlock_depth(c.r), 1);
    ASSERT_OK(weft_rlock_release(c.r));
    weft_rlock_free(c.r);
}

TEST(rlock_timed_waiter_gets_it_when_released) {
    struct rl_ctx c = {.r = new_rlock(), .timeout = 20 * SEC, .go_release = 1};
    ASSERT_OK(weft_rlock_acquire(c.r, 0));
    ASSERT_OK(weft_rlock_acquire(c.r, 0));
    pthread_t t = spawn(waiting_acquirer, &c);
    wait_blocked(&c.tid);
    ASSERT_OK(weft_rlock_release(c.r));
    ASSERT_OK(weft_rlock_release(c.r));
    pthread_join(t, NULL);
    ASSERT_OK(c.st_acquire);
    ASSERT_UEQ(c.depth_seen, 1);
    ASSERT_OK(c.st_release);
    ASSERT_OK(weft_rlock_acquire(c.r, 0));
    ASSERT_OK(weft_rlock_release(c.r));
    weft_rlock_free(c.r);
}

/* --- signals: waits survive EINTR and never return early --------------------------------- */

struct rl_later {
    weft_rlock *r;
    atomic_int held;
    atomic_int released;
};

static void *hold_then_release(void *arg) {
    struct rl_later *l = arg;
    ASSERT_OK(weft_rlock_acquire(l->r, 0));
    ASSERT_OK(weft_rlock_acquire(l->r, 0));
    atomic_store(&l->held, 1);
    runner_sleep_ms(150);
    atomic_store(&l->released, 1);
    ASSERT_OK(weft_rlock_release(l->r));
    ASSERT_OK(weft_rlock_release(l->r));
    return NULL;
}

TEST(rlock_waits_survive_signals) {
    struct rl_later later = {.r = new_rlock()};
    pthread_t t = spawn(hold_then_release, &later);
    while (!atomic_load(&later.held)) runner_sleep_ms(1);
    pester p;
    pester_start(&p);
    uint64_t t0 = runner_now_ns();
    ASSERT_STATUS(weft_rlock_acquire(later.r, 50 * MS), WEFT_TIMEOUT);
    ASSERT_UGE(runner_now_ns() - t0, 50 * MS);
    ASSERT_OK(weft_rlock_acquire(later.r, WEFT_FOREVER));
    ASSERT_EQ(atomic_load(&later.released), 1);
    ASSERT_UEQ(weft_rlock_depth(later.r), 1);
    pester_stop(&p);
    pthread_join(t, NULL);
    ASSERT_OK(weft_rlock_release(later.r));
    weft_rlock_free(later.r);
}

/* --- stress ----------------------------------------------------------------------------- */

struct rl_stress {
    weft_rlock *r;
    long counter;
    atomic_int failures;
};

static void *rl_stress_worker(void *arg) {
    struct rl_stress *s = arg;
    for (int i = 0; i < 100000; i++) {
        /* Two nested levels around the increment, a third for every 16th. */
        int levels = (i % 16 == 0) ? 3 : 2;
        for (int k = 0; k < levels; k++)
            if (weft_rlock_acquire(s->r, WEFT_FOREVER) != WEFT_OK) atomic_fetch_add(&s->failures, 1);
        if (weft_rlock_depth(s->r) != (uint32_t)levels) atomic_fetch_add(&s->failures, 1);
        s->counter++;
        for (int k = 0; k < levels; k++)
            if (weft_rlock_release(s->r) != WEFT_OK) atomic_fetch_add(&s->failures, 1);
        if (weft_rlock_is_owned(s->r)) atomic_fetch_add(&s->failures, 1);
    }
    return NULL;
}

TEST_TIMEOUT(rlock_stress_nested_counter, 120000) {
    enum { N = 6 };
    struct rl_stress s = {.r = new_rlock()};
    pthread_t t[N];
    for (int i = 0; i < N; i++) t[i] = spawn(rl_stress_worker, &s);
    for (int i = 0; i < N; i++) pthread_join(t[i], NULL);
    ASSERT_EQ(atomic_load(&s.failures), 0);
    ASSERT_EQ(s.counter, (long)N * 100000);
    ASSERT_OK(weft_rlock_acquire(s.r, 0));
    ASSERT_OK(weft_rlock_release(s.r));
    weft_rlock_free(s.r);
}
