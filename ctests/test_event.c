/* weft_event: Python's threading.Event, call by call (pthreads for concurrency). */
#define _GNU_SOURCE
#include "runner.h"

#include <pthread.h>
#include <stdatomic.h>

#include "helpers.h"

TEST(event_null_arguments) {
    ASSERT_STATUS(weft_event_new(NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_event_set(NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_event_clear(NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_event_wait(NULL, 0), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_event_wait(NULL, WEFT_FOREVER), WEFT_NULL_ARGUMENT);
    ASSERT(!weft_event_is_set(NULL));
    weft_event_free(NULL);
}

TEST(event_set_clear_is_set) {
    weft_event *e = new_event();
    ASSERT(!weft_event_is_set(e));
    ASSERT_OK(weft_event_clear(e)); /* clearing a clear event is fine */
    ASSERT(!weft_event_is_set(e));
    ASSERT_OK(weft_event_set(e));
    ASSERT(weft_event_is_set(e));
    ASSERT_OK(weft_event_set(e)); /* idempotent */
    ASSERT(weft_event_is_set(e));
    ASSERT_OK(weft_event_clear(e));
    ASSERT(!weft_event_is_set(e));
    ASSERT_OK(weft_event_clear(e));
    ASSERT(!weft_event_is_set(e));
    weft_event_free(e);
}

TEST(event_wait_on_set_returns_at_once) {
    weft_event *e = new_event();
    ASSERT_OK(weft_event_set(e));
    ASSERT_OK(weft_event_wait(e, 0));
    ASSERT_OK(weft_event_wait(e, 1));
    ASSERT_OK(weft_event_wait(e, 10 * SEC));
    ASSERT_OK(weft_event_wait(e, WEFT_FOREVER));
    ASSERT(weft_event_is_set(e)); /* waiting does not consume the flag */
    weft_event_free(e);
}

TEST(event_wait_timeout_not_early) {
    weft_event *e = new_event();
    ASSERT_STATUS(weft_event_wait(e, 0), WEFT_WOULD_BLOCK);
    ASSERT_GT(strlen(weft_last_error_message()), 0);
    const uint64_t timeouts[] = {1, 1000, 1 * MS, 40 * MS};
    for (size_t i = 0; i < sizeof timeouts / sizeof timeouts[0]; i++) {
        uint64_t t0 = runner_now_ns();
        ASSERT_STATUS(weft_event_wait(e, timeouts[i]), WEFT_TIMEOUT);
        ASSERT_UGE(runner_now_ns() - t0, timeouts[i]);
    }
    /* After set and clear, the event is as if never set for a new waiter. */
    ASSERT_OK(weft_event_set(e));
    ASSERT_OK(weft_event_clear(e));
    ASSERT_STATUS(weft_event_wait(e, 0), WEFT_WOULD_BLOCK);
    uint64_t t0 = runner_now_ns();
    ASSERT_STATUS(weft_event_wait(e, 20 * MS), WEFT_TIMEOUT);
    ASSERT_UGE(runner_now_ns() - t0, 20 * MS);
    weft_event_free(e);
}

struct ev_waiter {
    weft_event *e;
    atomic_uint tid;
    atomic_int *returned;
    uint64_t timeout;
    weft_status status;
    uint64_t elapsed;
};

static void *ev_wait_thread(void *arg) {
    struct ev_waiter *w = arg;
    atomic_store(&w->tid, my_tid());
    uint64_t t0 = runner_now_ns();
    w->status = weft_event_wait(w->e, w->timeout);
    w->elapsed = runner_now_ns() - t0;
    atomic_fetch_add(w->returned, 1);
    return NULL;
}

enum { EV_N = 8 };

static void start_waiters(weft_event *e, struct ev_waiter *w, pthread_t *t, int n, atomic_int *returned,
                          uint64_t timeout) {
    for (int i = 0; i < n; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].e = e;
        w[i].returned = returned;
        w[i].timeout = timeout;
        t[i] = spawn(ev_wait_thread, &w[i]);
    }
    for (int i = 0; i < n; i++) wait_blocked(&w[i].tid);
}

TEST(event_set_wakes_all_waiters) {
    weft_event *e = new_event();
    atomic_int returned = 0;
    struct ev_waiter w[EV_N];
    pthread_t t[EV_N];
    /* Half wait forever, half with a long timeout. */
    start_waiters(e, w, t, EV_N / 2, &returned, WEFT_FOREVER);
    start_waiters(e, w + EV_N / 2, t + EV_N / 2, EV_N / 2, &returned, 30 * SEC);
    runner_sleep_ms(10);
    ASSERT_EQ(atomic_load(&returned), 0);
    ASSERT_OK(weft_event_set(e));
    for (int i = 0; i < EV_N; i++) {
        pthread_join(t[i], NULL);
        ASSERT_OK(w[i].status);
    }
    ASSERT_EQ(atomic_load(&returned), EV_N);
    ASSERT(weft_event_is_set(e));
    weft_event_free(e);
}

/* Python: a waiter woken by set() returns True even if clear() follows at once. */
TEST(event_set_then_clear_still_releases_waiters) {
    weft_event *e = new_event();
    atomic_int returned = 0;
    struct ev_waiter w[EV_N];
    pthread_t t[EV_N];
    start_waiters(e, w, t, EV_N, &returned, 20 * SEC);
    ASSERT_OK(weft_event_set(e));
    ASSERT_OK(weft_event_clear(e));
    ASSERT(!weft_event_is_set(e));
    for (int i = 0; i < EV_N; i++) {
        pthread_join(t[i], NULL);
        ASSERT_OK(w[i].status); /* woken by set (its own timeout would say WEFT_TIMEOUT) */
    }
    /* And the event stays clear for new waiters. */
    ASSERT_STATUS(weft_event_wait(e, 0), WEFT_WOULD_BLOCK);
    weft_event_free(e);
}

TEST(event_waiters_time_out_not_early) {
    weft_event *e = new_event();
    atomic_int returned = 0;
    struct ev_waiter w[4];
    pthread_t t[4];
    for (int i = 0; i < 4; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].e = e;
        w[i].returned = &returned;
        w[i].timeout = (uint64_t)(i + 1) * 15 * MS;
        t[i] = spawn(ev_wait_thread, &w[i]);
    }
    for (int i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
        ASSERT_STATUS(w[i].status, WEFT_TIMEOUT);
        ASSERT_UGE(w[i].elapsed, w[i].timeout);
    }
    ASSERT(!weft_event_is_set(e));
    weft_event_free(e);
}

TEST(event_timed_waiter_released_by_set) {
    weft_event *e = new_event();
    atomic_int returned = 0;
    struct ev_waiter w[1];
    pthread_t t[1];
    start_waiters(e, w, t, 1, &returned, 20 * SEC);
    ASSERT_OK(weft_event_set(e));
    pthread_join(t[0], NULL);
    ASSERT_OK(w[0].status);
    weft_event_free(e);
}

/* A timeout so large that now + timeout overflows means "forever", not "already expired". */
TEST(event_overflowing_timeout_waits) {
    weft_event *e = new_event();
    atomic_int returned = 0;
    struct ev_waiter w[1];
    pthread_t t[1];
    start_waiters(e, w, t, 1, &returned, WEFT_FOREVER - 1);
    runner_sleep_ms(20);
    ASSERT_EQ(atomic_load(&returned), 0);
    ASSERT_OK(weft_event_set(e));
    pthread_join(t[0], NULL);
    ASSERT_OK(w[0].status);
    weft_event_free(e);
}

/* Huge timeouts (deadlines far beyond any clock, or overflowing ones meaning forever) sleep in
 * the kernel like any other wait: no error, no busy loop, no early return. */
TEST(event_huge_timeouts_sleep) {
    const uint64_t timeouts[] = {(uint64_t)1 << 40, (uint64_t)1 << 62, (uint64_t)1 << 63,
                                 ((uint64_t)1 << 63) + 12345, WEFT_FOREVER - 2};
    for (size_t i = 0; i < sizeof timeouts / sizeof timeouts[0]; i++) {
        weft_event *e = new_event();
        atomic_int returned = 0;
        struct ev_waiter w[1];
        pthread_t t[1];
        start_waiters(e, w, t, 1, &returned, timeouts[i]); /* asleep in the kernel */
        runner_sleep_ms(10);
        ASSERT_EQ(atomic_load(&returned), 0);
        wait_blocked(&w[0].tid); /* still asleep, not spinning */
        ASSERT_OK(weft_event_set(e));
        pthread_join(t[0], NULL);
        ASSERT_OK(w[0].status);
        weft_event_free(e);
    }
}

/* A waiter that arrives after a set that was cleared again must wait for the next set. */
TEST(event_set_clear_before_wait_does_not_count) {
    weft_event *e = new_event();
    ASSERT_OK(weft_event_set(e));
    ASSERT_OK(weft_event_clear(e));
    atomic_int returned = 0;
    struct ev_waiter w[1];
    pthread_t t[1];
    start_waiters(e, w, t, 1, &returned, WEFT_FOREVER);
    runner_sleep_ms(20);
    ASSERT_EQ(atomic_load(&returned), 0);
    ASSERT_OK(weft_event_set(e));
    pthread_join(t[0], NULL);
    ASSERT_OK(w[0].status);
    weft_event_free(e);
}

/* --- signals: waits survive EINTR and never return early --------------------------------- */

struct ev_later {
    weft_event *e;
    atomic_int set;
};

static void *set_later(void *arg) {
    struct ev_later *l = arg;
    runner_sleep_ms(60);
    atomic_store(&l->set, 1);
    ASSERT_OK(weft_event_set(l->e));
    return NULL;
}

TEST(event_waits_survive_signals) {
    struct ev_later later = {.e = new_event()};
    pester p;
    pester_start(&p);
    uint64_t t0 = runner_now_ns();
    ASSERT_STATUS(weft_event_wait(later.e, 80 * MS), WEFT_TIMEOUT);
    ASSERT_UGE(runner_now_ns() - t0, 80 * MS);
    pthread_t t = spawn(set_later, &later);
    ASSERT_OK(weft_event_wait(later.e, WEFT_FOREVER));
    ASSERT_EQ(atomic_load(&later.set), 1);
    pester_stop(&p);
    pthread_join(t, NULL);
    weft_event_free(later.e);
}

/* --- stress: ping-pong between two threads, no wake-up may be lost ---------------------- */

enum { PINGS = 5000 };

struct pingpong {
    weft_event *ping, *pong;
    atomic_int failures;
    long rounds;
};

static void *ponger(void *arg) {
    struct pingpong *p = arg;
    for (int i = 0; i < PINGS; i++) {
        if (weft_event_wait(p->ping, WEFT_FOREVER) != WEFT_OK) atomic_fetch_add(&p->failures, 1);
        if (weft_event_clear(p->ping) != WEFT_OK) atomic_fetch_add(&p->failures, 1);
        p->rounds++;
        if (weft_event_set(p->pong) != WEFT_OK) atomic_fetch_add(&p->failures, 1);
    }
    return NULL;
}

TEST_TIMEOUT(event_stress_ping_pong, 120000) {
    struct pingpong p = {.ping = new_event(), .pong = new_event()};
    pthread_t t = spawn(ponger, &p);
    for (int i = 0; i < PINGS; i++) {
        ASSERT_OK(weft_event_set(p.ping));
        ASSERT_OK(weft_event_wait(p.pong, WEFT_FOREVER));
        ASSERT_OK(weft_event_clear(p.pong));
        ASSERT_EQ(p.rounds, i + 1);
    }
    pthread_join(t, NULL);
    ASSERT_EQ(atomic_load(&p.failures), 0);
    ASSERT_EQ(p.rounds, PINGS);
    weft_event_free(p.ping);
    weft_event_free(p.pong);
}

struct storm {
    weft_event *e;
    atomic_int stop;
    atomic_long ok;
    atomic_int final_ok;
    atomic_int failures;
};

static void *storm_waiter(void *arg) {
    struct storm *s = arg;
    while (!atomic_load(&s->stop)) {
        weft_status st = weft_event_wait(s->e, 200 * 1000);
        if (st == WEFT_OK)
            atomic_fetch_add(&s->ok, 1);
        else if (st != WEFT_TIMEOUT)
            atomic_fetch_add(&s->failures, 1);
    }
    /* The flag was set for good before `stop`: waits succeed at once now. */
    if (weft_event_wait(s->e, 0) == WEFT_OK && weft_event_wait(s->e, WEFT_FOREVER) == WEFT_OK)
        atomic_fetch_add(&s->final_ok, 1);
    return NULL;
}

/* Many waiters with short timeouts while the flag flips: only OK or TIMEOUT, and after a final
 * set every wait succeeds. */
TEST_TIMEOUT(event_stress_flipping, 120000) {
    enum { N = 6 };
    struct storm s = {.e = new_event()};
    pthread_t t[N];
    for (int i = 0; i < N; i++) t[i] = spawn(storm_waiter, &s);
    for (int i = 0; i < 20000; i++) {
        ASSERT_OK(weft_event_set(s.e));
        ASSERT_OK(weft_event_clear(s.e));
    }
    ASSERT_OK(weft_event_set(s.e));
    atomic_store(&s.stop, 1);
    for (int i = 0; i < N; i++) pthread_join(t[i], NULL);
    ASSERT_EQ(atomic_load(&s.failures), 0);
    ASSERT_EQ(atomic_load(&s.final_ok), N);
    ASSERT(weft_event_is_set(s.e));
    weft_event_free(s.e);
}
