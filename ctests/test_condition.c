/* weft_condition: Python's threading.Condition over a Lock, over an RLock, and with a lock of
 * its own, call by call (pthreads for concurrency). */
#define _GNU_SOURCE
#include "runner.h"

#include <pthread.h>
#include <stdatomic.h>

#include "helpers.h"

enum kind { OVER_LOCK, OVER_RLOCK, OWN_LOCK, N_KINDS };
static const char *const KIND_NAME[] = {"lock", "rlock", "own"};

struct cv {
    enum kind kind;
    weft_lock *lock;   /* OVER_LOCK */
    weft_rlock *rlock; /* OVER_RLOCK */
    weft_condition *c;
};

static struct cv cv_make(enum kind kind) {
    struct cv v = {.kind = kind};
    switch (kind) {
    case OVER_LOCK:
        ASSERT_OK(weft_lock_new(&v.lock));
        ASSERT_OK(weft_condition_new_with_lock(v.lock, &v.c));
        break;
    case OVER_RLOCK:
        ASSERT_OK(weft_rlock_new(&v.rlock));
        ASSERT_OK(weft_condition_new_with_rlock(v.rlock, &v.c));
        break;
    default:
        ASSERT_OK(weft_condition_new(&v.c));
        break;
    }
    ASSERT_NOT_NULL(v.c);
    return v;
}

static void cv_free(struct cv *v) {
    weft_condition_free(v->c);
    weft_lock_free(v->lock);
    weft_rlock_free(v->rlock);
}

/* True when the caller may wait/notify: notify(0) wakes nobody and fails only for that. */
static int cv_may_notify(struct cv *v) {
    weft_status st = weft_condition_notify(v->c, 0);
    if (st != WEFT_OK && st != WEFT_NOT_OWNER) FAIL_AT("notify(0) returned %s", weft_status_name(st));
    return st == WEFT_OK;
}

/* Reads an int under the condition's lock. */
static int cv_read(struct cv *v, int *p) {
    ASSERT_OK(weft_condition_acquire(v->c, WEFT_FOREVER));
    int x = *p;
    ASSERT_OK(weft_condition_release(v->c));
    return x;
}

/* Waits (polling under the lock) until *p >= want. */
static void cv_wait_value(struct cv *v, int *p, int want, const char *what) {
    uint64_t deadline = runner_now_ns() + 10 * SEC;
    while (cv_read(v, p) < want) {
        if (runner_now_ns() > deadline)
            FAIL_AT("%s (condition over %s): %d, wanted %d", what, KIND_NAME[v->kind], cv_read(v, p), want);
        runner_sleep_ms(1);
    }
}

/* --- arguments -------------------------------------------------------------------------- */

static bool pred_true(void *ctx) {
    (void)ctx;
    return true;
}

TEST(condition_null_arguments) {
    ASSERT_STATUS(weft_condition_new(NULL), WEFT_NULL_ARGUMENT);
    weft_condition *c = (weft_condition *)(uintptr_t)0x99;
    ASSERT_STATUS(weft_condition_new_with_lock(NULL, &c), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_condition_new_with_rlock(NULL, &c), WEFT_NULL_ARGUMENT);
    ASSERT_PTR_EQ(c, (weft_condition *)(uintptr_t)0x99);
    ASSERT_STATUS(weft_condition_acquire(NULL, 0), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_condition_acquire(NULL, WEFT_FOREVER), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_condition_release(NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_condition_wait(NULL, 0), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_condition_wait(NULL, WEFT_FOREVER), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_condition_wait_for(NULL, pred_true, NULL, WEFT_FOREVER), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_condition_notify(NULL, 1), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_condition_notify_all(NULL), WEFT_NULL_ARGUMENT);
    weft_condition_free(NULL);
}

TEST(condition_wait_for_null_predicate) {
    for (int k = 0; k < N_KINDS; k++) {
        struct cv v = cv_make((enum kind)k);
        ASSERT_OK(weft_condition_acquire(v.c, 0));
        ASSERT_STATUS(weft_condition_wait_for(v.c, NULL, NULL, 0), WEFT_NULL_ARGUMENT);
        ASSERT_STATUS(weft_condition_wait_for(v.c, NULL, NULL, WEFT_FOREVER), WEFT_NULL_ARGUMENT);
        ASSERT(strstr(weft_last_error_message(), "predicate") != NULL);
        ASSERT(cv_may_notify(&v)); /* the lock is still held */
        ASSERT_OK(weft_condition_release(v.c));
        cv_free(&v);
    }
}

/* --- the condition's lock --------------------------------------------------------------- */

TEST(condition_acquire_release_each_kind) {
    for (int k = 0; k < N_KINDS; k++) {
        struct cv v = cv_make((enum kind)k);
        ASSERT(!cv_may_notify(&v));
        ASSERT_OK(weft_condition_acquire(v.c, 0));
        ASSERT(cv_may_notify(&v));
        if (k == OVER_LOCK) {
            /* A Lock is not re-entrant. */
            ASSERT(weft_lock_locked(v.lock));
            ASSERT_STATUS(weft_condition_acquire(v.c, 0), WEFT_WOULD_BLOCK);
            uint64_t t0 = runner_now_ns();
            ASSERT_STATUS(weft_condition_acquire(v.c, 20 * MS), WEFT_TIMEOUT);
            ASSERT_UGE(runner_now_ns() - t0, 20 * MS);
            ASSERT_OK(weft_condition_release(v.c));
            ASSERT(!weft_lock_locked(v.lock));
            ASSERT_STATUS(weft_condition_release(v.c), WEFT_INVALID_STATE);
        } else {
            /* Python's Condition() uses an RLock: re-entrant. */
            ASSERT_OK(weft_condition_acquire(v.c, 0));
            ASSERT_OK(weft_condition_acquire(v.c, WEFT_FOREVER));
            if (k == OVER_RLOCK) ASSERT_UEQ(weft_rlock_depth(v.rlock), 3);
            ASSERT_OK(weft_condition_release(v.c));
            ASSERT_OK(weft_condition_release(v.c));
            ASSERT(cv_may_notify(&v));
            ASSERT_OK(weft_condition_release(v.c));
            ASSERT(!cv_may_notify(&v));
            ASSERT_STATUS(weft_condition_release(v.c), WEFT_NOT_OWNER);
        }
        cv_free(&v);
    }
}

/* The lock handed to the condition is the same lock: using it directly is seen by the
 * condition and vice versa. */
TEST(condition_shares_the_given_lock) {
    struct cv v = cv_make(OVER_LOCK);
    ASSERT_OK(weft_lock_acquire(v.lock, 0));
    ASSERT(cv_may_notify(&v));
    ASSERT_STATUS(weft_condition_acquire(v.c, 0), WEFT_WOULD_BLOCK);
    ASSERT_OK(weft_condition_release(v.c));
    ASSERT(!weft_lock_locked(v.lock));
    cv_free(&v);

    struct cv r = cv_make(OVER_RLOCK);
    ASSERT_OK(weft_rlock_acquire(r.rlock, 0));
    ASSERT(cv_may_notify(&r));
    ASSERT_OK(weft_condition_acquire(r.c, 0));
    ASSERT_UEQ(weft_rlock_depth(r.rlock), 2);
    ASSERT_OK(weft_condition_release(r.c));
    ASSERT_OK(weft_rlock_release(r.rlock));
    ASSERT(!weft_rlock_is_owned(r.rlock));
    cv_free(&r);
}

/* The condition keeps its lock alive after the caller freed the lock's handle. */
TEST(condition_keeps_lock_alive) {
    weft_lock *l = NULL;
    weft_rlock *r = NULL;
    weft_condition *cl = NULL, *cr = NULL;
    ASSERT_OK(weft_lock_new(&l));
    ASSERT_OK(weft_rlock_new(&r));
    ASSERT_OK(weft_condition_new_with_lock(l, &cl));
    ASSERT_OK(weft_condition_new_with_rlock(r, &cr));
    weft_lock_free(l);
    weft_rlock_free(r);
    weft_condition *conds[2] = {cl, cr};
    for (int i = 0; i < 2; i++) {
        ASSERT_OK(weft_condition_acquire(conds[i], 0));
        ASSERT_OK(weft_condition_notify_all(conds[i]));
        uint64_t t0 = runner_now_ns();
        ASSERT_STATUS(weft_condition_wait(conds[i], 10 * MS), WEFT_TIMEOUT);
        ASSERT_UGE(runner_now_ns() - t0, 10 * MS);
        ASSERT_OK(weft_condition_release(conds[i]));
        weft_condition_free(conds[i]);
    }
}

/* --- ownership rules -------------------------------------------------------------------- */

static void expect_not_owner(struct cv *v) {
    ASSERT_STATUS(weft_condition_wait(v->c, 0), WEFT_NOT_OWNER);
    ASSERT_GT(strlen(weft_last_error_message()), 0);
    ASSERT_STATUS(weft_condition_wait(v->c, 10 * MS), WEFT_NOT_OWNER);
    ASSERT_STATUS(weft_condition_wait(v->c, WEFT_FOREVER), WEFT_NOT_OWNER);
    ASSERT_STATUS(weft_condition_wait_for(v->c, pred_true, NULL, 0), WEFT_NOT_OWNER);
    ASSERT_STATUS(weft_condition_wait_for(v->c, pred_true, NULL, WEFT_FOREVER), WEFT_NOT_OWNER);
    ASSERT_STATUS(weft_condition_notify(v->c, 1), WEFT_NOT_OWNER);
    ASSERT_STATUS(weft_condition_notify(v->c, 0), WEFT_NOT_OWNER);
    ASSERT_STATUS(weft_condition_notify_all(v->c), WEFT_NOT_OWNER);
}

TEST(condition_not_owner_without_lock) {
    for (int k = 0; k < N_KINDS; k++) {
        struct cv v = cv_make((enum kind)k);
        expect_not_owner(&v);
        /* Nothing changed: the lock is free and usable. */
        ASSERT_OK(weft_condition_acquire(v.c, 0));
        ASSERT_OK(weft_condition_notify_all(v.c));
        ASSERT_OK(weft_condition_release(v.c));
        expect_not_owner(&v);
        cv_free(&v);
    }
}

struct other {
    struct cv *v;
    weft_status notify_status, wait_status, acquire_status;
};

static void *use_from_other_thread(void *arg) {
    struct other *o = arg;
    o->notify_status = weft_condition_notify_all(o->v->c);
    o->wait_status = weft_condition_wait(o->v->c, 0);
    o->acquire_status = weft_condition_acquire(o->v->c, 0);
    return NULL;
}

/* Held by another thread: an RLock's owner is that thread, so this one may not use the
 * condition; a Lock has no owner and Python only asks that it be locked. */
TEST(condition_lock_held_by_another_thread) {
    for (int k = 0; k < N_KINDS; k++) {
        struct cv v = cv_make((enum kind)k);
        ASSERT_OK(weft_condition_acquire(v.c, 0));
        struct other o = {.v = &v};
        pthread_join(spawn(use_from_other_thread, &o), NULL);
        ASSERT_STATUS(o.acquire_status, WEFT_WOULD_BLOCK);
        if (k == OVER_LOCK) {
            ASSERT_OK(o.notify_status);
            /* ... and its wait(0) releases and re-takes the lock: still locked afterwards. */
            ASSERT_STATUS(o.wait_status, WEFT_WOULD_BLOCK);
            ASSERT(weft_lock_locked(v.lock));
        } else {
            ASSERT_STATUS(o.notify_status, WEFT_NOT_OWNER);
            ASSERT_STATUS(o.wait_status, WEFT_NOT_OWNER);
        }
        ASSERT(cv_may_notify(&v));
        ASSERT_OK(weft_condition_release(v.c));
        cv_free(&v);
    }
}

/* --- wait with a timeout ---------------------------------------------------------------- */

static void *try_acquire_other(void *arg) {
    struct other *o = arg;
    o->acquire_status = weft_condition_acquire(o->v->c, 0);
    if (o->acquire_status == WEFT_OK) weft_condition_release(o->v->c);
    return NULL;
}

/* The lock is held again after a wait returns, whatever the outcome. */
static void expect_held_after_wait(struct cv *v, uint32_t depth) {
    ASSERT(cv_may_notify(v));
    if (v->kind == OVER_LOCK) ASSERT(weft_lock_locked(v->lock));
    if (v->kind == OVER_RLOCK) {
        ASSERT(weft_rlock_is_owned(v->rlock));
        ASSERT_UEQ(weft_rlock_depth(v->rlock), depth);
    }
    struct other o = {.v = v};
    pthread_join(spawn(try_acquire_other, &o), NULL);
    ASSERT_STATUS(o.acquire_status, WEFT_WOULD_BLOCK);
}

TEST(condition_wait_timeout_not_early_and_lock_held) {
    for (int k = 0; k < N_KINDS; k++) {
        struct cv v = cv_make((enum kind)k);
        uint32_t depth = (k == OVER_LOCK) ? 1 : 3;
        for (uint32_t i = 0; i < depth; i++) ASSERT_OK(weft_condition_acquire(v.c, 0));
        ASSERT_STATUS(weft_condition_wait(v.c, 0), WEFT_WOULD_BLOCK);
        expect_held_after_wait(&v, depth);
        const uint64_t timeouts[] = {1, 1 * MS, 30 * MS};
        for (size_t i = 0; i < sizeof timeouts / sizeof timeouts[0]; i++) {
            uint64_t t0 = runner_now_ns();
            ASSERT_STATUS(weft_condition_wait(v.c, timeouts[i]), WEFT_TIMEOUT);
            ASSERT_UGE(runner_now_ns() - t0, timeouts[i]);
            ASSERT_GT(strlen(weft_last_error_message()), 0);
            expect_held_after_wait(&v, depth);
        }
        for (uint32_t i = 0; i < depth; i++) ASSERT_OK(weft_condition_release(v.c));
        ASSERT(!cv_may_notify(&v));
        cv_free(&v);
    }
}

/* Notifications are not remembered: a notify with nobody waiting is lost. */
TEST(condition_notify_without_waiters_is_lost) {
    for (int k = 0; k < N_KINDS; k++) {
        struct cv v = cv_make((enum kind)k);
        ASSERT_OK(weft_condition_acquire(v.c, 0));
        ASSERT_OK(weft_condition_notify(v.c, 1));
        ASSERT_OK(weft_condition_notify(v.c, 1000));
        ASSERT_OK(weft_condition_notify(v.c, SIZE_MAX));
        ASSERT_OK(weft_condition_notify_all(v.c));
        uint64_t t0 = runner_now_ns();
        ASSERT_STATUS(weft_condition_wait(v.c, 20 * MS), WEFT_TIMEOUT);
        ASSERT_UGE(runner_now_ns() - t0, 20 * MS);
        ASSERT_OK(weft_condition_release(v.c));
        cv_free(&v);
    }
}

/* --- waiters and notifications ---------------------------------------------------------- */

struct room {
    struct cv *v;
    int ready;    /* waiters queued (under the lock) */
    int woken;    /* waiters returned (under the lock) */
    int order[16];
    int flag;     /* for predicates (under the lock) */
    int pred_calls;
    int pred_unlocked; /* predicate found the lock not held */
};

struct waiter {
    struct room *room;
    int id;
    uint32_t depth; /* levels to hold while waiting (RLock kinds) */
    uint64_t timeout;
    weft_status status;
    uint32_t depth_after;
    int returned;
};

static void *waiter_thread(void *arg) {
    struct waiter *w = arg;
    struct room *r = w->room;
    uint32_t depth = w->depth ? w->depth : 1;
    for (uint32_t i = 0; i < depth; i++) ASSERT_OK(weft_condition_acquire(r->v->c, WEFT_FOREVER));
    r->ready++;
    w->status = weft_condition_wait(r->v->c, w->timeout);
    /* Returned with the lock held: record the order of wake-ups. */
    if (!cv_may_notify(r->v)) FAIL_AT("waiter %d returned without the lock", w->id);
    if (r->v->kind == OVER_RLOCK) w->depth_after = weft_rlock_depth(r->v->rlock);
    r->order[r->woken++] = w->id;
    w->returned = 1;
    for (uint32_t i = 0; i < depth; i++) ASSERT_OK(weft_condition_release(r->v->c));
    return NULL;
}

static void notify_locked(struct cv *v, size_t n) {
    ASSERT_OK(weft_condition_acquire(v->c, WEFT_FOREVER));
    if (n == SIZE_MAX)
        ASSERT_OK(weft_condition_notify_all(v->c));
    else
        ASSERT_OK(weft_condition_notify(v->c, n));
    ASSERT_OK(weft_condition_release(v->c));
}

/* Starts `n` waiters one after the other, each queued before the next starts. */
static void start_waiters(struct room *r, struct waiter *w, pthread_t *t, int n, uint64_t timeout) {
    for (int i = 0; i < n; i++) {
        memset(&w[i], 0, sizeof w[i]);
        w[i].room = r;
        w[i].id = i;
        w[i].timeout = timeout;
        w[i].depth = (r->v->kind == OVER_LOCK) ? 1 : (uint32_t)(1 + i % 3);
        t[i] = spawn(waiter_thread, &w[i]);
        cv_wait_value(r->v, &r->ready, i + 1, "waiters queued");
    }
}

enum { SETTLE_MS = 30 };

TEST(condition_notify_wakes_exactly_n) {
    enum { N = 6 };
    for (int k = 0; k < N_KINDS; k++) {
        struct cv v = cv_make((enum kind)k);
        struct room r = {.v = &v};
        struct waiter w[N];
        pthread_t t[N];
        start_waiters(&r, w, t, N, WEFT_FOREVER);

        notify_locked(&v, 0);
        runner_sleep_ms(SETTLE_MS);
        ASSERT_EQ(cv_read(&v, &r.woken), 0);

        notify_locked(&v, 1);
        cv_wait_value(&v, &r.woken, 1, "woken after notify(1)");
        runner_sleep_ms(SETTLE_MS);
        ASSERT_EQ(cv_read(&v, &r.woken), 1);

        notify_locked(&v, 2);
        cv_wait_value(&v, &r.woken, 3, "woken after notify(2)");
        runner_sleep_ms(SETTLE_MS);
        ASSERT_EQ(cv_read(&v, &r.woken), 3);

        notify_locked(&v, SIZE_MAX); /* notify_all: the other three */
        for (int i = 0; i < N; i++) {
            pthread_join(t[i], NULL);
            ASSERT_OK(w[i].status);
            if (k == OVER_RLOCK) ASSERT_UEQ(w[i].depth_after, w[i].depth);
        }
        ASSERT_EQ(r.woken, N);
        cv_free(&v);
    }
}

/* A timeout so large that now + timeout overflows means "forever". */
TEST(condition_overflowing_timeout_waits) {
    for (int k = 0; k < N_KINDS; k++) {
        struct cv v = cv_make((enum kind)k);
        struct room r = {.v = &v};
        struct waiter w[1];
        pthread_t t[1];
        start_waiters(&r, w, t, 1, WEFT_FOREVER - 1);
        runner_sleep_ms(20);
        ASSERT_EQ(cv_read(&v, &r.woken), 0);
        notify_locked(&v, 1);
        pthread_join(t[0], NULL);
        ASSERT_OK(w[0].status);
        cv_free(&v);
    }
}

TEST(condition_notify_more_than_waiting) {
    for (int k = 0; k < N_KINDS; k++) {
        struct cv v = cv_make((enum kind)k);
        struct room r = {.v = &v};
        struct waiter w[2];
        pthread_t t[2];
        start_waiters(&r, w, t, 2, WEFT_FOREVER);
        notify_locked(&v, 100);
        for (int i = 0; i < 2; i++) {
            pthread_join(t[i], NULL);
            ASSERT_OK(w[i].status);
        }
        cv_free(&v);
    }
}

TEST(condition_notify_all_wakes_all) {
    enum { N = 10 };
    for (int k = 0; k < N_KINDS; k++) {
        struct cv v = cv_make((enum kind)k);
        struct room r = {.v = &v};
        struct waiter w[N];
        pthread_t t[N];
        start_waiters(&r, w, t, N, 30 * SEC);
        notify_locked(&v, SIZE_MAX);
        for (int i = 0; i < N; i++) {
            pthread_join(t[i], NULL);
            ASSERT_OK(w[i].status);
        }
        ASSERT_EQ(r.woken, N);
        cv_free(&v);
    }
}

/* notify wakes the longest-waiting thread first. */
TEST(condition_notify_is_fifo) {
    enum { N = 6 };
    for (int k = 0; k < N_KINDS; k++) {
        struct cv v = cv_make((enum kind)k);
        struct room r = {.v = &v};
        struct waiter w[N];
        pthread_t t[N];
        start_waiters(&r, w, t, N, WEFT_FOREVER);
        for (int i = 0; i < N; i++) {
            notify_locked(&v, 1);
            cv_wait_value(&v, &r.woken, i + 1, "woken in order");
            ASSERT_EQ(cv_read(&v, &r.order[i]), i);
        }
        for (int i = 0; i < N; i++) pthread_join(t[i], NULL);
        cv_free(&v);
    }
}

/* A notified waiter does not return before the notifier releases the lock. */
TEST(condition_woken_waiter_reacquires_lock_first) {
    for (int k = 0; k < N_KINDS; k++) {
        struct cv v = cv_make((enum kind)k);
        struct room r = {.v = &v};
        struct waiter w[1];
        pthread_t t[1];
        start_waiters(&r, w, t, 1, WEFT_FOREVER);
        ASSERT_OK(weft_condition_acquire(v.c, WEFT_FOREVER));
        ASSERT_OK(weft_condition_notify(v.c, 1));
        runner_sleep_ms(SETTLE_MS);
        ASSERT_EQ(r.woken, 0); /* read under the lock we hold */
        ASSERT_OK(weft_condition_release(v.c));
        pthread_join(t[0], NULL);
        ASSERT_OK(w[0].status);
        ASSERT_EQ(r.woken, 1);
        cv_free(&v);
    }
}

/* While one thread waits, others can take the lock (every level of an RLock is released). */
struct helper {
    struct room *room;
    weft_status acquire_status;
    uint32_t depth_seen;
};

static void *acquire_and_notify(void *arg) {
    struct helper *h = arg;
    struct cv *v = h->room->v;
    h->acquire_status = weft_condition_acquire(v->c, 10 * SEC);
    if (h->acquire_status != WEFT_OK) return NULL;
    if (v->kind == OVER_RLOCK) h->depth_seen = weft_rlock_depth(v->rlock);
    ASSERT_OK(weft_condition_notify(v->c, 1));
    ASSERT_OK(weft_condition_release(v->c));
    return NULL;
}

TEST(condition_wait_releases_every_level) {
    for (int k = 0; k < N_KINDS; k++) {
        struct cv v = cv_make((enum kind)k);
        struct room r = {.v = &v};
        uint32_t depth = (k == OVER_LOCK) ? 1 : 4;
        for (uint32_t i = 0; i < depth; i++) ASSERT_OK(weft_condition_acquire(v.c, 0));
        struct helper h = {.room = &r};
        pthread_t t = spawn(acquire_and_notify, &h);
        ASSERT_OK(weft_condition_wait(v.c, 30 * SEC));
        pthread_join(t, NULL);
        ASSERT_OK(h.acquire_status);
        if (k == OVER_RLOCK) ASSERT_UEQ(h.depth_seen, 1);
        expect_held_after_wait(&v, depth);
        for (uint32_t i = 0; i < depth; i++) ASSERT_OK(weft_condition_release(v.c));
        ASSERT(!cv_may_notify(&v));
        cv_free(&v);
    }
}

/* --- wait_for --------------------------------------------------------------------------- */

static bool flag_pred(void *ctx) {
    struct room *r = ctx;
    r->pred_calls++;
    if (weft_condition_notify(r->v->c, 0) != WEFT_OK) r->pred_unlocked++;
    return r->flag != 0;
}

TEST(condition_wait_for_true_at_once) {
    for (int k = 0; k < N_KINDS; k++) {
        struct cv v = cv_make((enum kind)k);
        struct room r = {.v = &v, .flag = 1};
        ASSERT_OK(weft_condition_acquire(v.c, 0));
        ASSERT_OK(weft_condition_wait_for(v.c, flag_pred, &r, 0));
        ASSERT_EQ(r.pred_calls, 1);
        ASSERT_OK(weft_condition_wait_for(v.c, flag_pred, &r, WEFT_FOREVER));
        ASSERT_OK(weft_condition_wait_for(v.c, flag_pred, &r, 10 * SEC));
        ASSERT_EQ(r.pred_calls, 3);
        ASSERT_EQ(r.pred_unlocked, 0);
        ASSERT_OK(weft_condition_release(v.c));
        cv_free(&v);
    }
}

TEST(condition_wait_for_times_out) {
    for (int k = 0; k < N_KINDS; k++) {
        struct cv v = cv_make((enum kind)k);
        struct room r = {.v = &v};
        uint32_t depth = (k == OVER_LOCK) ? 1 : 2;
        for (uint32_t i = 0; i < depth; i++) ASSERT_OK(weft_condition_acquire(v.c, 0));
        ASSERT_STATUS(weft_condition_wait_for(v.c, flag_pred, &r, 0), WEFT_WOULD_BLOCK);
        ASSERT_GE(r.pred_calls, 1);
        expect_held_after_wait(&v, depth);
        int before = r.pred_calls;
        uint64_t t0 = runner_now_ns();
        ASSERT_STATUS(weft_condition_wait_for(v.c, flag_pred, &r, 40 * MS), WEFT_TIMEOUT);
        ASSERT_UGE(runner_now_ns() - t0, 40 * MS);
        ASSERT_GT(r.pred_calls, before);
        ASSERT_EQ(r.pred_unlocked, 0);
        expect_held_after_wait(&v, depth);
        for (uint32_t i = 0; i < depth; i++) ASSERT_OK(weft_condition_release(v.c));
        cv_free(&v);
    }
}

struct pred_waiter {
    struct room *room;
    uint64_t timeout;
    weft_status status;
    int returned; /* under the lock */
    int waiting;  /* under the lock: set just before wait_for */
};

static void *wait_for_thread(void *arg) {
    struct pred_waiter *p = arg;
    struct cv *v = p->room->v;
    ASSERT_OK(weft_condition_acquire(v->c, WEFT_FOREVER));
    p->waiting = 1;
    p->status = weft_condition_wait_for(v->c, flag_pred, p->room, p->timeout);
    p->returned = 1;
    ASSERT_OK(weft_condition_release(v->c));
    return NULL;
}

TEST(condition_wait_for_becomes_true) {
    for (int k = 0; k < N_KINDS; k++) {
        struct cv v = cv_make((enum kind)k);
        struct room r = {.v = &v};
        struct pred_waiter p = {.room = &r, .timeout = (k == OWN_LOCK) ? 30 * SEC : WEFT_FOREVER};
        pthread_t t = spawn(wait_for_thread, &p);
        cv_wait_value(&v, &p.waiting, 1, "wait_for started");
        cv_wait_value(&v, &r.pred_calls, 1, "predicate evaluated");
        /* A notification without the predicate becoming true: it checks and waits again. */
        notify_locked(&v, SIZE_MAX);
        cv_wait_value(&v, &r.pred_calls, 2, "predicate re-evaluated after notify");
        runner_sleep_ms(SETTLE_MS);
        ASSERT_EQ(cv_read(&v, &p.returned), 0);
        /* Now make it true. */
        ASSERT_OK(weft_condition_acquire(v.c, WEFT_FOREVER));
        r.flag = 1;
        ASSERT_OK(weft_condition_notify(v.c, 1));
        ASSERT_OK(weft_condition_release(v.c));
        pthread_join(t, NULL);
        ASSERT_OK(p.status);
        ASSERT_EQ(p.returned, 1);
        ASSERT_GE(r.pred_calls, 3);
        ASSERT_EQ(r.pred_unlocked, 0);
        cv_free(&v);
    }
}

/* --- signals: waits survive EINTR and never return early --------------------------------- */

struct cv_later {
    struct cv *v;
    atomic_int notified;
};

static void *notify_later(void *arg) {
    struct cv_later *l = arg;
    runner_sleep_ms(60);
    ASSERT_OK(weft_condition_acquire(l->v->c, WEFT_FOREVER));
    atomic_store(&l->notified, 1);
    ASSERT_OK(weft_condition_notify(l->v->c, 1));
    ASSERT_OK(weft_condition_release(l->v->c));
    return NULL;
}

TEST(condition_waits_survive_signals) {
    for (int k = 0; k < N_KINDS; k++) {
        struct cv v = cv_make((enum kind)k);
        struct cv_later later = {.v = &v};
        ASSERT_OK(weft_condition_acquire(v.c, 0));
        pester p;
        pester_start(&p);
        uint64_t t0 = runner_now_ns();
        ASSERT_STATUS(weft_condition_wait(v.c, 60 * MS), WEFT_TIMEOUT);
        ASSERT_UGE(runner_now_ns() - t0, 60 * MS);
        pthread_t t = spawn(notify_later, &later);
        ASSERT_OK(weft_condition_wait(v.c, WEFT_FOREVER));
        ASSERT_EQ(atomic_load(&later.notified), 1);
        ASSERT(cv_may_notify(&v));
        pester_stop(&p);
        ASSERT_OK(weft_condition_release(v.c));
        pthread_join(t, NULL);
        cv_free(&v);
    }
}

/* --- producer / consumer ---------------------------------------------------------------- */

enum { PC_CAP = 8 };

struct pc {
    weft_condition *not_full, *not_empty; /* may be the same condition */
    int all; /* one condition: notify_all instead of notify(1) */
    int buf[PC_CAP];
    int head, count;
    int produced_total; /* items each producer makes */
    int taken, total;
    unsigned char *seen;
    atomic_int failures;
};

struct pc_arg {
    struct pc *pc;
    int base;
};

static bool pc_has_room(void *ctx) {
    struct pc *p = ctx;
    return p->count < PC_CAP;
}

static void pc_fail(struct pc *p, weft_status st) {
    if (st != WEFT_OK) atomic_fetch_add(&p->failures, 1);
}

static void *pc_producer(void *arg) {
    struct pc_arg *a = arg;
    struct pc *p = a->pc;
    for (int i = 0; i < p->produced_total; i++) {
        pc_fail(p, weft_condition_acquire(p->not_full, WEFT_FOREVER));
        pc_fail(p, weft_condition_wait_for(p->not_full, pc_has_room, p, WEFT_FOREVER));
        p->buf[(p->head + p->count) % PC_CAP] = a->base + i;
        p->count++;
        pc_fail(p, p->all ? weft_condition_notify_all(p->not_empty) : weft_condition_notify(p->not_empty, 1));
        pc_fail(p, weft_condition_release(p->not_full));
    }
    return NULL;
}

static void *pc_consumer(void *arg) {
    struct pc_arg *a = arg;
    struct pc *p = a->pc;
    for (;;) {
        pc_fail(p, weft_condition_acquire(p->not_empty, WEFT_FOREVER));
        while (p->count == 0 && p->taken < p->total) pc_fail(p, weft_condition_wait(p->not_empty, WEFT_FOREVER));
        if (p->count == 0) { /* everything was taken */
            pc_fail(p, weft_condition_release(p->not_empty));
            return NULL;
        }
        int item = p->buf[p->head];
        p->head = (p->head + 1) % PC_CAP;
        p->count--;
        p->taken++;
        if (item < 0 || item >= p->total || p->seen[item]++) atomic_fetch_add(&p->failures, 1);
        if (p->taken == p->total) {
            /* Wake the other consumers so that they see the end. */
            pc_fail(p, weft_condition_notify_all(p->not_empty));
        }
        pc_fail(p, p->all ? weft_condition_notify_all(p->not_full) : weft_condition_notify(p->not_full, 1));
        pc_fail(p, weft_condition_release(p->not_empty));
    }
}

static void run_pc(struct pc *p, int producers, int consumers) {
    p->total = producers * p->produced_total;
    p->seen = calloc((size_t)p->total, 1);
    ASSERT_NOT_NULL(p->seen);
    pthread_t t[8];
    struct pc_arg args[8];
    ASSERT_LE(producers + consumers, 8);
    for (int i = 0; i < consumers; i++) {
        args[i] = (struct pc_arg){p, 0};
        t[i] = spawn(pc_consumer, &args[i]);
    }
    for (int i = 0; i < producers; i++) {
        args[consumers + i] = (struct pc_arg){p, i * p->produced_total};
        t[consumers + i] = spawn(pc_producer, &args[consumers + i]);
    }
    for (int i = 0; i < producers + consumers; i++) pthread_join(t[i], NULL);
    ASSERT_EQ(atomic_load(&p->failures), 0);
    ASSERT_EQ(p->taken, p->total);
    ASSERT_EQ(p->count, 0);
    for (int i = 0; i < p->total; i++)
        if (p->seen[i] != 1) FAIL_AT("item %d delivered %d times", i, p->seen[i]);
    free(p->seen);
}

TEST_TIMEOUT(condition_producer_consumer_over_lock_100000, 120000) {
    weft_lock *l = NULL;
    ASSERT_OK(weft_lock_new(&l));
    struct pc p = {.produced_total = 50000};
    ASSERT_OK(weft_condition_new_with_lock(l, &p.not_full));
    ASSERT_OK(weft_condition_new_with_lock(l, &p.not_empty));
    run_pc(&p, 2, 2);
    ASSERT(!weft_lock_locked(l));
    weft_condition_free(p.not_full);
    weft_condition_free(p.not_empty);
    weft_lock_free(l);
}

TEST_TIMEOUT(condition_producer_consumer_over_rlock, 120000) {
    weft_rlock *r = NULL;
    ASSERT_OK(weft_rlock_new(&r));
    struct pc p = {.produced_total = 10000};
    ASSERT_OK(weft_condition_new_with_rlock(r, &p.not_full));
    ASSERT_OK(weft_condition_new_with_rlock(r, &p.not_empty));
    run_pc(&p, 3, 3);
    weft_condition_free(p.not_full);
    weft_condition_free(p.not_empty);
    weft_rlock_free(r);
}

TEST_TIMEOUT(condition_producer_consumer_one_condition, 120000) {
    struct pc p = {.produced_total = 10000, .all = 1};
    ASSERT_OK(weft_condition_new(&p.not_full));
    p.not_empty = p.not_full;
    run_pc(&p, 2, 3);
    weft_condition_free(p.not_full);
}

/* Waiters that time out while others are notified: every notification reaches a waiter
 * that is still waiting, none is lost, and the timed-out ones say TIMEOUT. */
TEST(condition_timeouts_and_notifies_mixed) {
    enum { N = 6 };
    struct cv v = cv_make(OVER_LOCK);
    struct room r = {.v = &v};
    struct waiter w[N];
    pthread_t t[N];
    start_waiters(&r, w, t, N, WEFT_FOREVER);
    /* Three more that time out soon. */
    struct room r2 = {.v = &v};
    struct waiter w2[3];
    pthread_t t2[3];
    start_waiters(&r2, w2, t2, 3, 20 * MS);
    for (int i = 0; i < 3; i++) {
        pthread_join(t2[i], NULL);
        ASSERT_STATUS(w2[i].status, WEFT_TIMEOUT);
    }
    /* The timed-out waiters left the queue: notify(N) reaches all the others. */
    notify_locked(&v, N);
    for (int i = 0; i < N; i++) {
        pthread_join(t[i], NULL);
        ASSERT_OK(w[i].status);
    }
    cv_free(&v);
}
