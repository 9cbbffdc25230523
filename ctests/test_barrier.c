/* weft_barrier: Python's threading.Barrier, call by call (pthreads for concurrency). */
#define _GNU_SOURCE
#include "runner.h"

#include <pthread.h>
#include <stdatomic.h>

#include "helpers.h"

/* Waits until `n` threads wait in the barrier (n_waiting). */
static void br_wait_n_waiting(weft_barrier *b, uint32_t n) {
    uint64_t deadline = runner_now_ns() + 10 * SEC;
    while (weft_barrier_n_waiting(b) != n) {
        if (runner_now_ns() > deadline) FAIL_AT("n_waiting is %u, wanted %u", weft_barrier_n_waiting(b), n);
        runner_sleep_ms(1);
    }
}

struct br_thread {
    weft_barrier *b;
    uint64_t timeout;
    weft_status status;
    uint32_t index;
    uint64_t elapsed;
    atomic_int done;
};

static void *br_wait_thread(void *arg) {
    struct br_thread *t = arg;
    t->index = UINT32_MAX;
    uint64_t t0 = runner_now_ns();
    t->status = weft_barrier_wait(t->b, t->timeout, &t->index);
    t->elapsed = runner_now_ns() - t0;
    atomic_store(&t->done, 1);
    return NULL;
}

static void br_start(struct br_thread *t, pthread_t *tid, weft_barrier *b, uint64_t timeout) {
    memset(t, 0, sizeof *t);
    t->b = b;
    t->timeout = timeout;
    *tid = spawn(br_wait_thread, t);
}

/* --- arguments -------------------------------------------------------------------------- */

TEST(barrier_new_arguments) {
    weft_barrier *b = (weft_barrier *)(uintptr_t)0x77;
    ASSERT_STATUS(weft_barrier_new(0, NULL, NULL, &b), WEFT_INVALID_ARGUMENT);
    ASSERT(strstr(weft_last_error_message(), "parties") != NULL);
    ASSERT_PTR_EQ(b, (weft_barrier *)(uintptr_t)0x77);
    ASSERT_STATUS(weft_barrier_new(2, NULL, NULL, NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_barrier_new(0, NULL, NULL, NULL), WEFT_NULL_ARGUMENT);
    b = new_barrier(UINT32_MAX, NULL, NULL);
    ASSERT_UEQ(weft_barrier_parties(b), UINT32_MAX);
    weft_barrier_free(b);
}

TEST(barrier_null_arguments) {
    ASSERT_STATUS(weft_barrier_wait(NULL, 0, NULL), WEFT_NULL_ARGUMENT);
    uint32_t index = 5;
    ASSERT_STATUS(weft_barrier_wait(NULL, WEFT_FOREVER, &index), WEFT_NULL_ARGUMENT);
    ASSERT_UEQ(index, 5);
    ASSERT_STATUS(weft_barrier_reset(NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_barrier_abort(NULL), WEFT_NULL_ARGUMENT);
    ASSERT_UEQ(weft_barrier_parties(NULL), 0);
    ASSERT_UEQ(weft_barrier_n_waiting(NULL), 0);
    ASSERT(!weft_barrier_broken(NULL));
    weft_barrier_free(NULL);
}

TEST(barrier_queries_on_new_barrier) {
    weft_barrier *b = new_barrier(4, NULL, NULL);
    ASSERT_UEQ(weft_barrier_parties(b), 4);
    ASSERT_UEQ(weft_barrier_n_waiting(b), 0);
    ASSERT(!weft_barrier_broken(b));
    weft_barrier_free(b);
}

/* --- rounds ----------------------------------------------------------------------------- */

static weft_status count_action(void *ctx) {
    atomic_fetch_add((atomic_int *)ctx, 1);
    return WEFT_OK;
}

TEST(barrier_single_party_never_blocks) {
    atomic_int runs = 0;
    weft_barrier *b = new_barrier(1, count_action, &runs);
    for (int i = 0; i < 5; i++) {
        uint32_t index = 99;
        ASSERT_OK(weft_barrier_wait(b, (i % 2) ? 0 : WEFT_FOREVER, &index));
        ASSERT_UEQ(index, 0);
        ASSERT_EQ(atomic_load(&runs), i + 1);
    }
    ASSERT_OK(weft_barrier_wait(b, 0, NULL)); /* index may be NULL */
    ASSERT_EQ(atomic_load(&runs), 6);
    ASSERT(!weft_barrier_broken(b));
    weft_barrier_free(b);
}

TEST(barrier_n_waiting_counts_arrivals) {
    enum { N = 4 };
    weft_barrier *b = new_barrier(N, NULL, NULL);
    struct br_thread t[N];
    pthread_t tid[N];
    for (int i = 0; i < N - 1; i++) {
        br_start(&t[i], &tid[i], b, WEFT_FOREVER);
        br_wait_n_waiting(b, (uint32_t)i + 1);
        ASSERT_UEQ(weft_barrier_parties(b), N);
        ASSERT(!weft_barrier_broken(b));
    }
    runner_sleep_ms(10);
    for (int i = 0; i < N - 1; i++) ASSERT_EQ(atomic_load(&t[i].done), 0); /* nobody passed early */
    uint32_t index = 99;
    ASSERT_OK(weft_barrier_wait(b, WEFT_FOREVER, &index)); /* the last party releases all */
    ASSERT_UEQ(index, N - 1);
    int seen[N] = {0};
    seen[index]++;
    for (int i = 0; i < N - 1; i++) {
        pthread_join(tid[i], NULL);
        ASSERT_OK(t[i].status);
        ASSERT_LT(t[i].index, N);
        seen[t[i].index]++;
    }
    for (int i = 0; i < N; i++) ASSERT_EQ(seen[i], 1);
    ASSERT_UEQ(weft_barrier_n_waiting(b), 0);
    weft_barrier_free(b);
}

/* Arrival index, action and round bookkeeping, shared by several tests. */
enum { MAX_PARTIES = 8, MAX_ROUNDS = 200 };

struct rounds {
    weft_barrier *b;
    uint32_t parties;
    int rounds;
    atomic_int action_runs;
    atomic_int passed[MAX_ROUNDS];                      /* threads out of round r */
    atomic_int index_seen[MAX_ROUNDS][MAX_PARTIES];     /* index i returned in round r */
    _Atomic(pthread_t *) action_thread_slot;
    pthread_t action_thread[MAX_ROUNDS];
    atomic_int failures;
    atomic_int current_round;
};

static weft_status rounds_action(void *ctx) {
    struct rounds *r = ctx;
    int round = atomic_load(&r->action_runs);
    if (round >= r->rounds) {
        atomic_fetch_add(&r->failures, 1);
        return WEFT_OK;
    }
    /* Before anyone is released: nobody has left this round yet. */
    if (atomic_load(&r->passed[round]) != 0) atomic_fetch_add(&r->failures, 1);
    r->action_thread[round] = pthread_self();
    atomic_fetch_add(&r->action_runs, 1);
    return WEFT_OK;
}

static void *rounds_worker(void *arg) {
    struct rounds *r = arg;
    for (int round = 0; round < r->rounds; round++) {
        uint32_t index = UINT32_MAX;
        weft_status st = weft_barrier_wait(r->b, WEFT_FOREVER, &index);
        if (st != WEFT_OK || index >= r->parties) {
            atomic_fetch_add(&r->failures, 1);
            continue;
        }
        atomic_fetch_add(&r->index_seen[round][index], 1);
        /* The action of this round ran before we were released, exactly once so far. */
        if (atomic_load(&r->action_runs) < round + 1) atomic_fetch_add(&r->failures, 1);
        /* The action ran on the thread that got the last index. */
        if (index == r->parties - 1 && !pthread_equal(r->action_thread[round], pthread_self()))
            atomic_fetch_add(&r->failures, 1);
        atomic_fetch_add(&r->passed[round], 1);
    }
    return NULL;
}

static void run_rounds(struct rounds *r) {
    pthread_t t[MAX_PARTIES];
    ASSERT_LE(r->parties, MAX_PARTIES);
    ASSERT_LE(r->rounds, MAX_ROUNDS);
    r->b = new_barrier(r->parties, rounds_action, r);
    for (uint32_t i = 0; i < r->parties; i++) t[i] = spawn(rounds_worker, r);
    for (uint32_t i = 0; i < r->parties; i++) pthread_join(t[i], NULL);
    ASSERT_EQ(atomic_load(&r->failures), 0);
    ASSERT_EQ(atomic_load(&r->action_runs), r->rounds);
    for (int round = 0; round < r->rounds; round++) {
        ASSERT_EQ(atomic_load(&r->passed[round]), (int)r->parties);
        /* The indices of a round are a permutation of 0..parties-1. */
        for (uint32_t i = 0; i < r->parties; i++)
            if (atomic_load(&r->index_seen[round][i]) != 1)
                FAIL_AT("round %d: index %u returned %d times", round, i, atomic_load(&r->index_seen[round][i]));
    }
    ASSERT(!weft_barrier_broken(r->b));
    ASSERT_UEQ(weft_barrier_n_waiting(r->b), 0);
    weft_barrier_free(r->b);
}

TEST(barrier_indices_and_action_per_round) {
    static struct rounds r;
    memset(&r, 0, sizeof r);
    r.parties = 5;
    r.rounds = 20;
    run_rounds(&r);
}

TEST(barrier_action_gets_its_context) {
    atomic_int runs = 0;
    weft_barrier *b = new_barrier(2, count_action, &runs);
    struct br_thread t;
    pthread_t tid;
    br_start(&t, &tid, b, WEFT_FOREVER);
    br_wait_n_waiting(b, 1);
    ASSERT_EQ(atomic_load(&runs), 0); /* not before the last party arrives */
    ASSERT_OK(weft_barrier_wait(b, WEFT_FOREVER, NULL));
    pthread_join(tid, NULL);
    ASSERT_OK(t.status);
    ASSERT_EQ(atomic_load(&runs), 1);
    weft_barrier_free(b);
}

/* --- broken barriers -------------------------------------------------------------------- */

static weft_status failing_action(void *ctx) {
    atomic_int *runs = ctx;
    /* Fail the first time only. */
    return atomic_fetch_add(runs, 1) == 0 ? WEFT_TASK_FAILED : WEFT_OK;
}

TEST(barrier_failing_action_breaks_it) {
    enum { N = 3 };
    atomic_int runs = 0;
    weft_barrier *b = new_barrier(N, failing_action, &runs);
    struct br_thread t[N - 1];
    pthread_t tid[N - 1];
    for (int i = 0; i < N - 1; i++) br_start(&t[i], &tid[i], b, WEFT_FOREVER);
    br_wait_n_waiting(b, N - 1);
    uint32_t index = 4242;
    /* The last party runs the action and gets its status; the others get WEFT_BROKEN. */
    ASSERT_STATUS(weft_barrier_wait(b, WEFT_FOREVER, &index), WEFT_TASK_FAILED);
    ASSERT_GT(strlen(weft_last_error_message()), 0);
    ASSERT_UEQ(index, 4242);
    for (int i = 0; i < N - 1; i++) {
        pthread_join(tid[i], NULL);
        ASSERT_STATUS(t[i].status, WEFT_BROKEN);
        ASSERT_UEQ(t[i].index, UINT32_MAX);
    }
    ASSERT_EQ(atomic_load(&runs), 1);
    ASSERT(weft_barrier_broken(b));
    /* Broken until reset. */
    ASSERT_STATUS(weft_barrier_wait(b, WEFT_FOREVER, NULL), WEFT_BROKEN);
    ASSERT_STATUS(weft_barrier_wait(b, 0, NULL), WEFT_BROKEN);
    ASSERT_OK(weft_barrier_reset(b));
    ASSERT(!weft_barrier_broken(b));
    for (int i = 0; i < N - 1; i++) br_start(&t[i], &tid[i], b, WEFT_FOREVER);
    ASSERT_OK(weft_barrier_wait(b, WEFT_FOREVER, NULL));
    for (int i = 0; i < N - 1; i++) {
        pthread_join(tid[i], NULL);
        ASSERT_OK(t[i].status);
    }
    ASSERT_EQ(atomic_load(&runs), 2);
    weft_barrier_free(b);
}

TEST(barrier_timeout_breaks_it) {
    enum { N = 3 };
    weft_barrier *b = new_barrier(N, NULL, NULL);
    struct br_thread forever, timed;
    pthread_t tf, tt;
    br_start(&forever, &tf, b, WEFT_FOREVER);
    br_wait_n_waiting(b, 1);
    br_start(&timed, &tt, b, 50 * MS);
    pthread_join(tt, NULL);
    pthread_join(tf, NULL);
    ASSERT_STATUS(timed.status, WEFT_TIMEOUT);
    ASSERT_UGE(timed.elapsed, 50 * MS);
    ASSERT_UEQ(timed.index, UINT32_MAX);
    ASSERT_STATUS(forever.status, WEFT_BROKEN);
    ASSERT(weft_barrier_broken(b));
    ASSERT_UEQ(weft_barrier_n_waiting(b), 0);
    ASSERT_STATUS(weft_barrier_wait(b, 10 * MS, NULL), WEFT_BROKEN);
    ASSERT_OK(weft_barrier_reset(b));
    ASSERT(!weft_barrier_broken(b));
    weft_barrier_free(b);
}

TEST(barrier_timeout_from_main_thread_not_early) {
    weft_barrier *b = new_barrier(2, NULL, NULL);
    const uint64_t timeouts[] = {1, 1 * MS, 30 * MS};
    for (size_t i = 0; i < sizeof timeouts / sizeof timeouts[0]; i++) {
        uint64_t t0 = runner_now_ns();
        ASSERT_STATUS(weft_barrier_wait(b, timeouts[i], NULL), WEFT_TIMEOUT);
        ASSERT_UGE(runner_now_ns() - t0, timeouts[i]);
        ASSERT(weft_barrier_broken(b));
        ASSERT_OK(weft_barrier_reset(b));
        ASSERT(!weft_barrier_broken(b));
    }
    weft_barrier_free(b);
}

/* Python: a waiter whose timeout passes while the last party runs a slow action still passes,
 * because the round completed before it could act on its timeout (the action runs under the
 * barrier's lock, and the waiter re-checks the state after it gets the lock back). */
static weft_status slow_action(void *ctx) {
    (void)ctx;
    runner_sleep_ms(200);
    return WEFT_OK;
}

TEST(barrier_timeout_during_action_still_passes) {
    weft_barrier *b = new_barrier(2, slow_action, NULL);
    for (int attempt = 0;; attempt++) {
        struct br_thread t;
        pthread_t tid;
        br_start(&t, &tid, b, 80 * MS);
        br_wait_n_waiting(b, 1);
        weft_status mine = weft_barrier_wait(b, WEFT_FOREVER, NULL);
        pthread_join(tid, NULL);
        if (t.status == WEFT_TIMEOUT && mine == WEFT_BROKEN && attempt < 5) {
            /* We arrived after its 80 ms were over (a loaded machine): that is a plain
             * timeout, not what this test is about. Try again. */
            ASSERT_OK(weft_barrier_reset(b));
            continue;
        }
        ASSERT_OK(mine);
        ASSERT_OK(t.status);
        ASSERT_UGE(t.elapsed, 80 * MS); /* its deadline passed while the action ran */
        break;
    }
    ASSERT(!weft_barrier_broken(b));
    weft_barrier_free(b);
}

/* timeout 0: the last party passes at once; any other party cannot, and (as in Python, where a
 * zero timeout breaks the barrier) reports WEFT_TIMEOUT, which the header documents. */
TEST(barrier_zero_timeout) {
    weft_barrier *b = new_barrier(2, NULL, NULL);
    struct br_thread t;
    pthread_t tid;
    br_start(&t, &tid, b, WEFT_FOREVER);
    br_wait_n_waiting(b, 1);
    uint32_t index = 9;
    ASSERT_OK(weft_barrier_wait(b, 0, &index));
    ASSERT_UEQ(index, 1);
    pthread_join(tid, NULL);
    ASSERT_OK(t.status);
    ASSERT_UEQ(t.index, 0);

    ASSERT_STATUS(weft_barrier_wait(b, 0, &index), WEFT_TIMEOUT);
    ASSERT(weft_barrier_broken(b));
    weft_barrier_free(b);
}

TEST(barrier_abort_breaks_current_and_later_waiters) {
    enum { N = 4 };
    weft_barrier *b = new_barrier(N, NULL, NULL);
    struct br_thread t[N - 1];
    pthread_t tid[N - 1];
    for (int i = 0; i < N - 1; i++) br_start(&t[i], &tid[i], b, WEFT_FOREVER);
    br_wait_n_waiting(b, N - 1);
    ASSERT_OK(weft_barrier_abort(b));
    for (int i = 0; i < N - 1; i++) {
        pthread_join(tid[i], NULL);
        ASSERT_STATUS(t[i].status, WEFT_BROKEN);
    }
    ASSERT(weft_barrier_broken(b));
    ASSERT_UEQ(weft_barrier_n_waiting(b), 0);
    ASSERT_STATUS(weft_barrier_wait(b, WEFT_FOREVER, NULL), WEFT_BROKEN);
    ASSERT_STATUS(weft_barrier_wait(b, 0, NULL), WEFT_BROKEN);
    ASSERT_OK(weft_barrier_abort(b)); /* aborting again is harmless */
    ASSERT(weft_barrier_broken(b));
    ASSERT_OK(weft_barrier_reset(b));
    ASSERT(!weft_barrier_broken(b));
    /* Usable again. */
    for (int i = 0; i < N - 1; i++) br_start(&t[i], &tid[i], b, WEFT_FOREVER);
    ASSERT_OK(weft_barrier_wait(b, WEFT_FOREVER, NULL));
    for (int i = 0; i < N - 1; i++) {
        pthread_join(tid[i], NULL);
        ASSERT_OK(t[i].status);
    }
    weft_barrier_free(b);
}

TEST(barrier_abort_without_waiters) {
    weft_barrier *b = new_barrier(2, NULL, NULL);
    ASSERT_OK(weft_barrier_abort(b));
    ASSERT(weft_barrier_broken(b));
    ASSERT_STATUS(weft_barrier_wait(b, WEFT_FOREVER, NULL), WEFT_BROKEN);
    ASSERT_OK(weft_barrier_reset(b));
    ASSERT(!weft_barrier_broken(b));
    ASSERT_OK(weft_barrier_reset(b)); /* resetting a fresh barrier is harmless */
    ASSERT(!weft_barrier_broken(b));
    ASSERT_UEQ(weft_barrier_n_waiting(b), 0);
    weft_barrier_free(b);
}

TEST(barrier_reset_while_waiting) {
    enum { N = 3 };
    weft_barrier *b = new_barrier(N, NULL, NULL);
    struct br_thread t[N];
    pthread_t tid[N];
    for (int i = 0; i < N - 1; i++) br_start(&t[i], &tid[i], b, WEFT_FOREVER);
    br_wait_n_waiting(b, N - 1);
    ASSERT_OK(weft_barrier_reset(b));
    for (int i = 0; i < N - 1; i++) {
        pthread_join(tid[i], NULL);
        ASSERT_STATUS(t[i].status, WEFT_BROKEN);
    }
    /* After the reset the barrier is not broken, and full rounds work again. */
    ASSERT(!weft_barrier_broken(b));
    ASSERT_UEQ(weft_barrier_n_waiting(b), 0);
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < N; i++) br_start(&t[i], &tid[i], b, 30 * SEC);
        int seen[N] = {0};
        for (int i = 0; i < N; i++) {
            pthread_join(tid[i], NULL);
            ASSERT_OK(t[i].status);
            ASSERT_LT(t[i].index, N);
            seen[t[i].index]++;
        }
        for (int i = 0; i < N; i++) ASSERT_EQ(seen[i], 1);
    }
    weft_barrier_free(b);
}

/* Threads arriving right after a reset, while the old waiters are still leaving, wait for the
 * reset to finish and then fill a fresh round: they never see WEFT_BROKEN. */
TEST(barrier_arrivals_during_reset_join_a_fresh_round) {
    enum { N = 3 };
    weft_barrier *b = new_barrier(N, NULL, NULL);
    for (int round = 0; round < 5; round++) {
        struct br_thread old[N - 1], fresh[N];
        pthread_t told[N - 1], tfresh[N];
        for (int i = 0; i < N - 1; i++) br_start(&old[i], &told[i], b, WEFT_FOREVER);
        br_wait_n_waiting(b, N - 1);
        ASSERT_OK(weft_barrier_reset(b));
        for (int i = 0; i < N; i++) br_start(&fresh[i], &tfresh[i], b, 30 * SEC);
        int seen[N] = {0};
        for (int i = 0; i < N; i++) {
            pthread_join(tfresh[i], NULL);
            ASSERT_OK(fresh[i].status);
            ASSERT_LT(fresh[i].index, N);
            seen[fresh[i].index]++;
        }
        for (int i = 0; i < N; i++) ASSERT_EQ(seen[i], 1);
        for (int i = 0; i < N - 1; i++) {
            pthread_join(told[i], NULL);
            ASSERT_STATUS(old[i].status, WEFT_BROKEN);
        }
        ASSERT(!weft_barrier_broken(b));
    }
    weft_barrier_free(b);
}

/* Python allows the action to look at the barrier (n_waiting, broken, parties). */
struct peek {
    weft_barrier *b;
    uint32_t parties, n_waiting;
    int broken;
    atomic_int ran;
};

static weft_status peek_action(void *ctx) {
    struct peek *p = ctx;
    p->parties = weft_barrier_parties(p->b);
    p->broken = weft_barrier_broken(p->b);
    p->n_waiting = weft_barrier_n_waiting(p->b);
    atomic_store(&p->ran, 1);
    return WEFT_OK;
}

TEST_TIMEOUT(barrier_action_may_query_the_barrier, 10000) {
    /* The action runs under the barrier's internal lock: a query that takes that lock (as
     * weft_barrier_n_waiting once did) deadlocks here. Fail fast instead of hanging. */
    struct peek p = {0};
    p.b = new_barrier(2, peek_action, &p);
    struct br_thread t[2];
    pthread_t tid[2];
    br_start(&t[0], &tid[0], p.b, WEFT_FOREVER);
    br_wait_n_waiting(p.b, 1);
    br_start(&t[1], &tid[1], p.b, WEFT_FOREVER);
    uint64_t deadline = runner_now_ns() + 3 * SEC;
    while (!(atomic_load(&t[0].done) && atomic_load(&t[1].done))) {
        if (runner_now_ns() > deadline)
            FAIL_AT("the barrier did not complete: the action %s",
                    atomic_load(&p.ran) ? "returned" : "never returned (deadlock inside the action?)");
        runner_sleep_ms(1);
    }
    for (int i = 0; i < 2; i++) {
        pthread_join(tid[i], NULL);
        ASSERT_OK(t[i].status);
    }
    ASSERT_UEQ(p.parties, 2);
    ASSERT_EQ(p.broken, 0);
    /* Python counts the arriving party too (2); "the other one" (1) would be fine as well. */
    ASSERT(p.n_waiting == 1 || p.n_waiting == 2);
    weft_barrier_free(p.b);
}

/* --- signals: waits survive EINTR and never return early --------------------------------- */

struct br_later {
    weft_barrier *b;
    atomic_int arrived;
    weft_status status;
};

static void *arrive_later(void *arg) {
    struct br_later *l = arg;
    runner_sleep_ms(60);
    atomic_store(&l->arrived, 1);
    l->status = weft_barrier_wait(l->b, WEFT_FOREVER, NULL);
    return NULL;
}

TEST(barrier_waits_survive_signals) {
    struct br_later later = {.b = new_barrier(2, NULL, NULL)};
    pester p;
    pester_start(&p);
    uint64_t t0 = runner_now_ns();
    ASSERT_STATUS(weft_barrier_wait(later.b, 80 * MS, NULL), WEFT_TIMEOUT);
    ASSERT_UGE(runner_now_ns() - t0, 80 * MS);
    ASSERT_OK(weft_barrier_reset(later.b));
    pthread_t t = spawn(arrive_later, &later);
    uint32_t index = 7;
    ASSERT_OK(weft_barrier_wait(later.b, WEFT_FOREVER, &index));
    ASSERT_EQ(atomic_load(&later.arrived), 1);
    ASSERT_UEQ(index, 0);
    pester_stop(&p);
    pthread_join(t, NULL);
    ASSERT_OK(later.status);
    weft_barrier_free(later.b);
}

/* --- stress ----------------------------------------------------------------------------- */

TEST_TIMEOUT(barrier_stress_100_rounds_then_timeout_round, 120000) {
    enum { N = 4 };
    static struct rounds r;
    memset(&r, 0, sizeof r);
    r.parties = N;
    r.rounds = 100;
    pthread_t t[N];
    r.b = new_barrier(N, rounds_action, &r);
    for (int i = 0; i < N; i++) t[i] = spawn(rounds_worker, &r);
    for (int i = 0; i < N; i++) pthread_join(t[i], NULL);
    ASSERT_EQ(atomic_load(&r.failures), 0);
    ASSERT_EQ(atomic_load(&r.action_runs), 100);
    for (int round = 0; round < 100; round++)
        for (int i = 0; i < N; i++) ASSERT_EQ(atomic_load(&r.index_seen[round][i]), 1);
    ASSERT(!weft_barrier_broken(r.b));

    /* A round that cannot fill (one party never comes): the thread with the short timeout gets
     * WEFT_TIMEOUT, the others WEFT_BROKEN; the late party then finds it broken. */
    struct br_thread w[N];
    pthread_t wt[N];
    br_start(&w[0], &wt[0], r.b, WEFT_FOREVER);
    br_start(&w[1], &wt[1], r.b, 30 * SEC);
    br_wait_n_waiting(r.b, 2);
    br_start(&w[2], &wt[2], r.b, 30 * MS);
    for (int i = 0; i < 3; i++) pthread_join(wt[i], NULL);
    ASSERT_STATUS(w[2].status, WEFT_TIMEOUT);
    ASSERT_UGE(w[2].elapsed, 30 * MS);
    ASSERT_STATUS(w[0].status, WEFT_BROKEN);
    ASSERT_STATUS(w[1].status, WEFT_BROKEN);
    br_start(&w[3], &wt[3], r.b, WEFT_FOREVER);
    pthread_join(wt[3], NULL);
    ASSERT_STATUS(w[3].status, WEFT_BROKEN);
    ASSERT(weft_barrier_broken(r.b));
    ASSERT_EQ(atomic_load(&r.action_runs), 100); /* no action for a broken round */
    weft_barrier_free(r.b);
}

/* Threads run many rounds back to back: a fast thread re-entering for the next round while
 * others still leave the previous one must wait for the drain, not join the old round. */
TEST_TIMEOUT(barrier_stress_back_to_back_rounds, 120000) {
    static struct rounds r;
    memset(&r, 0, sizeof r);
    r.parties = 3;
    r.rounds = MAX_ROUNDS;
    run_rounds(&r);
}
