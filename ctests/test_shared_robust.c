/* Robustness of shared primitives against the death of a process (real SIGKILL): a lock or
 * RLock whose holder dies reports WEFT_OWNER_DEAD to the next acquirer (and WEFT_NOT_RECOVERABLE
 * when the recovery is abandoned), many locks under random kills stay usable (glibc's
 * tst-robust8), a waiter killed inside a condition or event wait stops nobody else, and a barrier
 * breaks when a party dies.
 */
#define _GNU_SOURCE
#include "helpers.h"

#include <errno.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#define WAIT_LIMIT (10 * SEC)

/* ---- Lock ---------------------------------------------------------------------------------- */

typedef struct {
    weft_lock *lock;
    weft_rlock *rlock;
    volatile int64_t a, b; /* an invariant a == b, broken while the holder updates */
    atomic_int held;
} robust_job;

static void hold_lock_and_die(void *arg) {
    robust_job *j = arg;
    ASSERT_OK(weft_lock_acquire(j->lock, 0));
    j->a++; /* half of the update */
    raise(SIGKILL);
}

static void hold_lock_until_killed(void *arg) {
    robust_job *j = arg;
    ASSERT_OK(weft_lock_acquire(j->lock, 0));
    j->a++;
    atomic_store(&j->held, 1);
    for (;;) pause();
}

/* A waiter already blocked when the holder dies gets the lock with WEFT_OWNER_DEAD. */
static void wait_for_dead_holder(void *arg) {
    robust_job *j = arg;
    ASSERT_STATUS(weft_lock_acquire(j->lock, 20 * SEC), WEFT_OWNER_DEAD);
    ASSERT(weft_lock_locked(j->lock));
    ASSERT_EQ(j->a, j->b + 1);
    j->b = j->a; /* repair */
    ASSERT_OK(weft_lock_mark_consistent(j->lock));
    ASSERT_OK(weft_lock_release(j->lock));
}

TEST_TIMEOUT(robust_lock_owner_dead_then_consistent, 20000) {
    xp_guard g;
    xp_begin(&g);
    robust_job *j = xp_shared(sizeof *j);
    ASSERT_OK(weft_lock_new_in(NULL, NULL, &j->lock));

    xp_wait_killed(xp_fork(hold_lock_and_die, j));
    ASSERT(weft_lock_locked(j->lock));
    ASSERT_STATUS(weft_lock_mark_consistent(j->lock), WEFT_INVALID_STATE); /* not acquired yet */
    uint64_t t0 = runner_now_ns();
    ASSERT_STATUS(weft_lock_acquire(j->lock, WAIT_LIMIT), WEFT_OWNER_DEAD);
    ASSERT(runner_now_ns() - t0 < WAIT_LIMIT); /* found dead, not timed out */
    ASSERT(weft_lock_locked(j->lock)); /* and held */
    ASSERT_EQ(j->a, 1);
    ASSERT_EQ(j->b, 0);
    j->b = j->a;
    ASSERT_OK(weft_lock_mark_consistent(j->lock));
    ASSERT_STATUS(weft_lock_mark_consistent(j->lock), WEFT_INVALID_STATE);
    ASSERT_OK(weft_lock_release(j->lock));
    /* Normal again, here and in another process. */
    ASSERT_OK(weft_lock_acquire(j->lock, 0));
    ASSERT_OK(weft_lock_release(j->lock));

    /* A timeout shorter than the holder checks' period still finds the holder dead. */
    xp_wait_killed(xp_fork(hold_lock_and_die, j));
    ASSERT_STATUS(weft_lock_acquire(j->lock, 1 * MS), WEFT_OWNER_DEAD);
    j->b = j->a;
    ASSERT_OK(weft_lock_mark_consistent(j->lock));
    ASSERT_OK(weft_lock_release(j->lock));

    /* A waiter blocked in acquire while the holder is killed. */
    pid_t holder = xp_fork(hold_lock_until_killed, j);
    xp_wait_count(&j->held, 1);
    pid_t waiter = xp_fork(wait_for_dead_holder, j);
    xp_wait_sleeping(waiter);
    xp_kill(holder);
    xp_wait_ok(waiter);
    ASSERT_EQ(j->a, 3);
    ASSERT_EQ(j->b, 3);
    ASSERT(!weft_lock_locked(j->lock));
    ASSERT_OK(weft_lock_acquire(j->lock, 0));
    ASSERT_OK(weft_lock_release(j->lock));
    weft_lock_free(j->lock);
    xp_end(&g);
}

/* POSIX's trylock of a robust mutex whose owner died returns EOWNERDEAD and takes the mutex:
 * a try-acquire (timeout 0) of a dead holder's lock takes it over too, instead of reporting it
 * busy forever to a program that only polls. */
static weft_array *try_array;

static void hold_all_and_die(void *arg) {
    robust_job *j = arg;
    ASSERT_OK(weft_lock_acquire(j->lock, 0));
    ASSERT_OK(weft_rlock_acquire(j->rlock, 0));
    ASSERT_OK(weft_rlock_acquire(j->rlock, 0));
    ASSERT_OK(weft_array_lock(try_array, 0));
    raise(SIGKILL);
}

TEST_TIMEOUT(robust_try_acquire_takes_over_a_dead_holders_lock, 20000) {
    xp_guard g;
    xp_begin(&g);
    robust_job *j = xp_shared(sizeof *j);
    ASSERT_OK(weft_lock_new_in(NULL, NULL, &j->lock));
    ASSERT_OK(weft_rlock_new_in(NULL, NULL, &j->rlock));
    ASSERT_OK(weft_array_new_in(NULL, NULL, 'i', 2, NULL, true, &try_array));
    xp_wait_killed(xp_fork(hold_all_and_die, j));
    ASSERT_STATUS(weft_lock_acquire(j->lock, 0), WEFT_OWNER_DEAD);
    ASSERT_OK(weft_lock_mark_consistent(j->lock));
    ASSERT_OK(weft_lock_release(j->lock));
    ASSERT_STATUS(weft_rlock_acquire(j->rlock, 0), WEFT_OWNER_DEAD);
    ASSERT_EQ(weft_rlock_depth(j->rlock), 1);
    ASSERT_OK(weft_rlock_mark_consistent(j->rlock));
    ASSERT_OK(weft_rlock_release(j->rlock));
    ASSERT_STATUS(weft_array_lock(try_array, 0), WEFT_OWNER_DEAD);
    ASSERT_OK(weft_array_mark_consistent(try_array));
    ASSERT_OK(weft_array_unlock(try_array));
    weft_array_free(try_array);
    weft_rlock_free(j->rlock);
    weft_lock_free(j->lock);
    xp_end(&g);
}

static void expect_not_recoverable(void *arg) {
    robust_job *j = arg;
    ASSERT_STATUS(weft_lock_acquire(j->lock, 0), WEFT_NOT_RECOVERABLE);
    ASSERT_STATUS(weft_lock_acquire(j->lock, WAIT_LIMIT), WEFT_NOT_RECOVERABLE);
}

TEST_TIMEOUT(robust_lock_release_without_mark_is_not_recoverable, 20000) {
    xp_guard g;
    xp_begin(&g);
    robust_job *j = xp_shared(sizeof *j);
    ASSERT_OK(weft_lock_new_in(NULL, NULL, &j->lock));
    uint8_t tok[WEFT_TOKEN_MAX];
    size_t len = 0;
    ASSERT_OK(weft_lock_token(j->lock, tok, sizeof tok, &len));

    xp_wait_killed(xp_fork(hold_lock_and_die, j));
    ASSERT_STATUS(weft_lock_acquire(j->lock, WAIT_LIMIT), WEFT_OWNER_DEAD);
    ASSERT_OK(weft_lock_release(j->lock)); /* recovery abandoned */
    for (int i = 0; i < 3; i++) {
        ASSERT_STATUS(weft_lock_acquire(j->lock, 0), WEFT_NOT_RECOVERABLE);
        ASSERT_STATUS(weft_lock_acquire(j->lock, 50 * MS), WEFT_NOT_RECOVERABLE);
    }
    ASSERT_STATUS(weft_lock_mark_consistent(j->lock), WEFT_INVALID_STATE);
    /* Through another handle, and in another process. */
    weft_lock *other = NULL;
    ASSERT_OK(weft_lock_from_token(tok, len, &other));
    ASSERT_STATUS(weft_lock_acquire(other, WAIT_LIMIT), WEFT_NOT_RECOVERABLE);
    weft_lock_free(other);
    xp_wait_ok(xp_fork(expect_not_recoverable, j));
    weft_lock_free(j->lock);
    xp_end(&g);
}

/* ---- RLock --------------------------------------------------------------------------------- */

static void hold_rlock_thrice_and_die(void *arg) {
    robust_job *j = arg;
    for (int i = 0; i < 3; i++) ASSERT_OK(weft_rlock_acquire(j->rlock, 0));
    ASSERT_EQ(weft_rlock_depth(j->rlock), 3);
    j->a++;
    raise(SIGKILL);
}

static void mark_foreign_rlock(void *arg) {
    robust_job *j = arg;
    /* The parent owns the lock (awaiting recovery): this process may not mark it. */
    ASSERT_STATUS(weft_rlock_mark_consistent(j->rlock), WEFT_NOT_OWNER);
    ASSERT_STATUS(weft_rlock_acquire(j->rlock, 0), WEFT_WOULD_BLOCK);
}

TEST_TIMEOUT(robust_rlock_owner_dead_at_depth_three, 20000) {
    xp_guard g;
    xp_begin(&g);
    robust_job *j = xp_shared(sizeof *j);
    ASSERT_OK(weft_rlock_new_in(NULL, NULL, &j->rlock));

    xp_wait_killed(xp_fork(hold_rlock_thrice_and_die, j));
    ASSERT(!weft_rlock_is_owned(j->rlock));
    ASSERT_STATUS(weft_rlock_acquire(j->rlock, WAIT_LIMIT), WEFT_OWNER_DEAD);
    ASSERT(weft_rlock_is_owned(j->rlock));
    ASSERT_EQ(weft_rlock_depth(j->rlock), 1); /* at depth 1, not the dead owner's 3 */
    xp_wait_ok(xp_fork(mark_foreign_rlock, j));
    j->b = j->a;
    ASSERT_OK(weft_rlock_mark_consistent(j->rlock));
    ASSERT_OK(weft_rlock_acquire(j->rlock, 0));
    ASSERT_EQ(weft_rlock_depth(j->rlock), 2);
    ASSERT_OK(weft_rlock_release(j->rlock));
    ASSERT_OK(weft_rlock_release(j->rlock));
    ASSERT_EQ(weft_rlock_depth(j->rlock), 0);
    ASSERT_STATUS(weft_rlock_release(j->rlock), WEFT_NOT_OWNER);
    ASSERT_OK(weft_rlock_acquire(j->rlock, 0));
    ASSERT_OK(weft_rlock_release(j->rlock));

    /* Abandoned recovery. */
    xp_wait_killed(xp_fork(hold_rlock_thrice_and_die, j));
    ASSERT_STATUS(weft_rlock_acquire(j->rlock, WAIT_LIMIT), WEFT_OWNER_DEAD);
    ASSERT_EQ(weft_rlock_depth(j->rlock), 1);
    ASSERT_OK(weft_rlock_release(j->rlock));
    ASSERT_STATUS(weft_rlock_acquire(j->rlock, 0), WEFT_NOT_RECOVERABLE);
    ASSERT_STATUS(weft_rlock_acquire(j->rlock, WAIT_LIMIT), WEFT_NOT_RECOVERABLE);
    ASSERT(!weft_rlock_is_owned(j->rlock));
    weft_rlock_free(j->rlock);
    xp_end(&g);
}

/* ---- many locks, random kills (glibc tst-robust8) -------------------------------------------- */

#define R8_LOCKS 12
#define R8_PROCS 5

typedef struct {
    char space[64];
    weft_lock *locks[R8_LOCKS];
    weft_array *pairs; /* 'q', 2 per lock: [2i] and [2i+1] equal outside the lock's holder */
    atomic_long sections, owner_dead, not_recoverable;
    atomic_int stop;
} r8_job;

/* Under lock i: repairs after a dead holder, checks the pair, and updates it in two steps. */
static void r8_update(r8_job *j, int i, weft_status acquired) {
    int64_t *items = weft_array_data(j->pairs);
    _Atomic int64_t *first = (_Atomic int64_t *)&items[2 * i], *second = (_Atomic int64_t *)&items[2 * i + 1];
    int64_t x = atomic_load_explicit(first, memory_order_relaxed);
    int64_t y = atomic_load_explicit(second, memory_order_relaxed);
    if (acquired == WEFT_OWNER_DEAD) {
        atomic_fetch_add(&j->owner_dead, 1);
        if (x != y && x != y + 1) FAIL_AT("lock %d after a dead holder: pair %lld %lld", i, (long long)x, (long long)y);
        atomic_store_explicit(second, x, memory_order_relaxed);
        ASSERT_OK(weft_lock_mark_consistent(j->locks[i]));
        y = x;
    }
    if (x != y) FAIL_AT("lock %d: pair %lld %lld (mutual exclusion broken)", i, (long long)x, (long long)y);
    atomic_store_explicit(first, x + 1, memory_order_relaxed);
    sched_yield(); /* a kill may land here, between the two halves */
    atomic_store_explicit(second, x + 1, memory_order_relaxed);
}

static weft_status r8_acquire(r8_job *j, int i) {
    weft_status st = weft_lock_acquire(j->locks[i], WAIT_LIMIT);
    if (st == WEFT_NOT_RECOVERABLE) atomic_fetch_add(&j->not_recoverable, 1);
    if (st != WEFT_OK && st != WEFT_OWNER_DEAD)
        FAIL_AT("acquire of lock %d returned %s (%s)", i, weft_status_name(st), weft_last_error_message());
    return st;
}

static void r8_worker(void *arg) {
    r8_job *j = arg;
    uint64_t rng = (uint64_t)getpid() * 0x9E3779B97F4A7C15ULL | 1;
    while (!atomic_load(&j->stop)) {
        /* Two distinct locks, in index order (no deadlock), held together. */
        int a = (int)(xp_rand(&rng) % R8_LOCKS), b = (int)(xp_rand(&rng) % R8_LOCKS);
        if (a == b) b = (a + 1) % R8_LOCKS;
        if (a > b) {
            int t = a;
            a = b;
            b = t;
        }
        weft_status sa = r8_acquire(j, a);
        r8_update(j, a, sa);
        weft_status sb = r8_acquire(j, b);
        r8_update(j, b, sb);
        r8_update(j, a, WEFT_OK);
        ASSERT_OK(weft_lock_release(j->locks[b]));
        ASSERT_OK(weft_lock_release(j->locks[a]));
        atomic_fetch_add(&j->sections, 1);
    }
}

TEST_TIMEOUT(robust_many_locks_random_kills, 40000) {
    xp_guard g;
    xp_begin(&g);
    r8_job *j = xp_shared(sizeof *j);
    xp_name(j->space, sizeof j->space, "robust8");
    weft_space *s = NULL;
    ASSERT_OK(weft_space_create(j->space, 1 << 20, &s));
    for (int i = 0; i < R8_LOCKS; i++) ASSERT_OK(weft_lock_new_in(s, NULL, &j->locks[i]));
    ASSERT_OK(weft_array_new_in(s, "pairs", 'q', 2 * R8_LOCKS, NULL, false, &j->pairs));

    pid_t kids[R8_PROCS];
    for (int p = 0; p < R8_PROCS; p++) kids[p] = xp_fork(r8_worker, j);
    uint64_t rng = 0xC0FFEEULL ^ (uint64_t)getpid();
    uint64_t end = runner_now_ns() + 2500 * MS;
    int kills = 0;
    while (runner_now_ns() < end) {
        runner_sleep_ms(5 + (unsigned)(xp_rand(&rng) % 30));
        /* A child that ended by itself failed (they loop until killed). */
        for (int p = 0; p < R8_PROCS; p++) {
            int st = 0;
            pid_t r = waitpid(kids[p], &st, WNOHANG);
            if (r == kids[p]) FAIL_AT("worker %d ended by itself (wait status %d)", (int)kids[p], st);
        }
        int p = (int)(xp_rand(&rng) % R8_PROCS);
        xp_kill(kids[p]);
        kills++;
        kids[p] = xp_fork(r8_worker, j);
    }
    for (int p = 0; p < R8_PROCS; p++) xp_kill(kids[p]);

    /* Every lock is usable: free, or held by a dead worker (owner dead, repaired here). */
    for (int i = 0; i < R8_LOCKS; i++) {
        weft_status st = r8_acquire(j, i);
        int64_t *items = weft_array_data(j->pairs);
        if (st == WEFT_OWNER_DEAD) {
            ASSERT(items[2 * i] == items[2 * i + 1] || items[2 * i] == items[2 * i + 1] + 1);
            items[2 * i + 1] = items[2 * i];
            atomic_fetch_add(&j->owner_dead, 1);
            ASSERT_OK(weft_lock_mark_consistent(j->locks[i]));
        }
        ASSERT_EQ(items[2 * i], items[2 * i + 1]);
        ASSERT_OK(weft_lock_release(j->locks[i]));
        ASSERT_OK(weft_lock_acquire(j->locks[i], 0));
        ASSERT_OK(weft_lock_release(j->locks[i]));
    }
    ASSERT_GE(kills, 20);
    ASSERT_GT(atomic_load(&j->sections), 100);
    ASSERT_GT(atomic_load(&j->owner_dead), 0); /* some kill hit a holder */
    ASSERT_EQ(atomic_load(&j->not_recoverable), 0);
    /* Every update that completed is counted in its pair; a killed half-update was repaired. */
    int64_t total = 0;
    int64_t *items = weft_array_data(j->pairs);
    for (int i = 0; i < R8_LOCKS; i++) total += items[2 * i];
    ASSERT_GE(total, 3 * atomic_load(&j->sections));
    ASSERT_EQ(xp_participants(s), 1);

    ASSERT_OK(weft_space_unlink(j->space));
    weft_array_free(j->pairs);
    for (int i = 0; i < R8_LOCKS; i++) weft_lock_free(j->locks[i]);
    weft_space_free(s);
    xp_end(&g);
}

/* ---- Condition: dead waiters ----------------------------------------------------------------- */

typedef struct {
    weft_condition *cond;
    atomic_int waiting; /* counted under the lock, right before the wait */
    int go;             /* under the lock */
} cond_job;

static void cond_waiter(void *arg) {
    cond_job *j = arg;
    ASSERT_OK(weft_condition_acquire(j->cond, WAIT_LIMIT));
    atomic_fetch_add(&j->waiting, 1);
    while (!j->go) ASSERT_OK(weft_condition_wait(j->cond, WAIT_LIMIT));
    j->go--;
    ASSERT_OK(weft_condition_release(j->cond));
}

/* A waiter that must be woken by one notify(1) (no predicate loop): its wait must return OK. */
static void cond_waiter_once(void *arg) {
    cond_job *j = arg;
    ASSERT_OK(weft_condition_acquire(j->cond, WAIT_LIMIT));
    atomic_fetch_add(&j->waiting, 1);
    ASSERT_OK(weft_condition_wait(j->cond, 5 * SEC));
    ASSERT_OK(weft_condition_release(j->cond));
}

/* Starts a waiter and returns once it waits (it counted itself under the lock, then released the
 * lock inside its wait: the parent's acquire proves that) and sleeps. */
static pid_t start_waiter(cond_job *j, void (*fn)(void *)) {
    int before = atomic_load(&j->waiting);
    pid_t pid = xp_fork(fn, j);
    xp_wait_count(&j->waiting, before + 1);
    ASSERT_OK(weft_condition_acquire(j->cond, WAIT_LIMIT));
    ASSERT_OK(weft_condition_release(j->cond));
    xp_wait_sleeping(pid);
    return pid;
}

static void run_dead_waiters(weft_condition *c) {
    cond_job *j = xp_shared(sizeof *j);
    j->cond = c;

    /* notify_all wakes every live waiter though one waiter died in its wait. */
    pid_t dead = start_waiter(j, cond_waiter);
    pid_t b = start_waiter(j, cond_waiter);
    pid_t c2 = start_waiter(j, cond_waiter);
    xp_kill(dead);
    ASSERT_OK(weft_condition_acquire(c, WAIT_LIMIT));
    j->go = 2;
    ASSERT_OK(weft_condition_notify_all(c));
    ASSERT_OK(weft_condition_release(c));
    xp_wait_ok(b);
    xp_wait_ok(c2);

    /* notify(1) skips the longest waiter, which is dead, and wakes the live one. */
    dead = start_waiter(j, cond_waiter_once);
    b = start_waiter(j, cond_waiter_once);
    xp_kill(dead);
    ASSERT_OK(weft_condition_acquire(c, WAIT_LIMIT));
    ASSERT_OK(weft_condition_notify(c, 1));
    ASSERT_OK(weft_condition_release(c));
    xp_wait_ok(b);

    /* Many dead waiters do not fill the table: their slots come back. */
    for (int i = 0; i < 140; i++) xp_kill(start_waiter(j, cond_waiter_once));
    b = start_waiter(j, cond_waiter_once);
    ASSERT_OK(weft_condition_acquire(c, WAIT_LIMIT));
    ASSERT_OK(weft_condition_notify(c, 1));
    ASSERT_OK(weft_condition_release(c));
    xp_wait_ok(b);
}

TEST_TIMEOUT(robust_condition_dead_waiter_does_not_swallow_notifications, 40000) {
    xp_guard g;
    xp_begin(&g);
    weft_lock *l = NULL;
    ASSERT_OK(weft_lock_new_in(NULL, NULL, &l));
    weft_condition *c = NULL;
    ASSERT_OK(weft_condition_new_with_lock(l, &c));
    run_dead_waiters(c);
    weft_condition_free(c);
    weft_lock_free(l);

    ASSERT_OK(weft_condition_new_in(NULL, NULL, NULL, NULL, &c)); /* over a shared RLock */
    run_dead_waiters(c);
    weft_condition_free(c);
    xp_end(&g);
}

typedef struct {
    weft_condition *cond;
    atomic_int waiting;
    int flag;
} cond_dead_lock_job;

static void waiter_expects_owner_dead(void *arg) {
    cond_dead_lock_job *j = arg;
    ASSERT_OK(weft_condition_acquire(j->cond, WAIT_LIMIT));
    atomic_store(&j->waiting, 1);
    weft_status st;
    do {
        st = weft_condition_wait(j->cond, 20 * SEC);
    } while (st == WEFT_OK && !j->flag);
    ASSERT_STATUS(st, WEFT_OWNER_DEAD); /* re-acquiring found the notifier dead with the lock */
    ASSERT_EQ(j->flag, 1);
    ASSERT_OK(weft_condition_mark_consistent(j->cond));
    ASSERT_OK(weft_condition_release(j->cond));
}

static void notify_and_die(void *arg) {
    cond_dead_lock_job *j = arg;
    ASSERT_OK(weft_condition_acquire(j->cond, WAIT_LIMIT));
    j->flag = 1;
    ASSERT_OK(weft_condition_notify_all(j->cond));
    raise(SIGKILL); /* with the lock */
}

TEST_TIMEOUT(robust_condition_waiter_reacquires_a_dead_holders_lock, 20000) {
    xp_guard g;
    xp_begin(&g);
    cond_dead_lock_job *j = xp_shared(sizeof *j);
    weft_lock *l = NULL;
    ASSERT_OK(weft_lock_new_in(NULL, NULL, &l));
    ASSERT_OK(weft_condition_new_with_lock(l, &j->cond));
    pid_t w = xp_fork(waiter_expects_owner_dead, j);
    xp_wait_count(&j->waiting, 1);
    ASSERT_OK(weft_condition_acquire(j->cond, WAIT_LIMIT)); /* the waiter released it */
    ASSERT_OK(weft_condition_release(j->cond));
    xp_wait_killed(xp_fork(notify_and_die, j));
    xp_wait_ok(w);
    ASSERT_OK(weft_lock_acquire(l, 0));
    ASSERT_OK(weft_lock_release(l));
    weft_condition_free(j->cond);
    weft_lock_free(l);
    xp_end(&g);
}

/* ---- Barrier: a dead party ------------------------------------------------------------------- */

typedef struct {
    weft_barrier *barrier;
    atomic_int round1;
} barrier_job;

static void party_expects_broken(void *arg) {
    barrier_job *j = arg;
    ASSERT_OK(weft_barrier_wait(j->barrier, WAIT_LIMIT, NULL));
    uint64_t t0 = runner_now_ns();
    ASSERT_STATUS(weft_barrier_wait(j->barrier, 20 * SEC, NULL), WEFT_BROKEN);
    ASSERT(runner_now_ns() - t0 < 20 * SEC);
    weft_barrier_free(j->barrier); /* leaves: its _exit is not a death */
}

static void party_dies_before_round_two(void *arg) {
    barrier_job *j = arg;
    ASSERT_OK(weft_barrier_wait(j->barrier, WAIT_LIMIT, NULL));
    raise(SIGKILL);
}

static void party_waits(void *arg) {
    barrier_job *j = arg;
    ASSERT_OK(weft_barrier_wait(j->barrier, WAIT_LIMIT, NULL));
    atomic_fetch_add(&j->round1, 1);
    weft_barrier_wait(j->barrier, WAIT_LIMIT, NULL); /* killed in here */
    FAIL_AT("the barrier's second round passed with a dead party");
}

static void party_once(void *arg) {
    barrier_job *j = arg;
    ASSERT_OK(weft_barrier_wait(j->barrier, WAIT_LIMIT, NULL));
    weft_barrier_free(j->barrier);
}

TEST_TIMEOUT(robust_barrier_breaks_when_a_party_dies, 30000) {
    xp_guard g;
    xp_begin(&g);
    barrier_job *j = xp_shared(sizeof *j);
    ASSERT_OK(weft_barrier_new_in(NULL, NULL, 3, NULL, NULL, &j->barrier));

    /* A party dies before arriving at round 2: the others get WEFT_BROKEN, not a timeout. */
    pid_t a = xp_fork(party_expects_broken, j);
    pid_t x = xp_fork(party_dies_before_round_two, j);
    ASSERT_OK(weft_barrier_wait(j->barrier, WAIT_LIMIT, NULL));
    xp_wait_killed(x);
    uint64_t t0 = runner_now_ns();
    ASSERT_STATUS(weft_barrier_wait(j->barrier, 20 * SEC, NULL), WEFT_BROKEN);
    ASSERT(runner_now_ns() - t0 < 20 * SEC);
    xp_wait_ok(a);
    ASSERT(weft_barrier_broken(j->barrier));
    ASSERT_STATUS(weft_barrier_wait(j->barrier, WAIT_LIMIT, NULL), WEFT_BROKEN);

    /* Reset: usable again by live parties. */
    ASSERT_OK(weft_barrier_reset(j->barrier));
    ASSERT(!weft_barrier_broken(j->barrier));
    pid_t p1 = xp_fork(party_once, j), p2 = xp_fork(party_once, j);
    ASSERT_OK(weft_barrier_wait(j->barrier, WAIT_LIMIT, NULL));
    xp_wait_ok(p1);
    xp_wait_ok(p2);

    /* A party killed while it waits in the barrier breaks it for the one waiting with it. */
    pid_t w1 = xp_fork(party_waits, j), w2 = xp_fork(party_expects_broken, j);
    ASSERT_OK(weft_barrier_wait(j->barrier, WAIT_LIMIT, NULL)); /* round 1 with both */
    xp_wait_count(&j->round1, 1);
    uint64_t deadline = runner_now_ns() + 10 * SEC;
    while (weft_barrier_n_waiting(j->barrier) < 2) {
        ASSERT(runner_now_ns() < deadline);
        runner_sleep_ms(1);
    }
    xp_kill(w1);
    xp_wait_ok(w2); /* got WEFT_BROKEN */
    ASSERT(weft_barrier_broken(j->barrier));
    ASSERT_STATUS(weft_barrier_wait(j->barrier, WAIT_LIMIT, NULL), WEFT_BROKEN);
    weft_barrier_free(j->barrier);
    xp_end(&g);
}

/* ---- Event: a dead waiter -------------------------------------------------------------------- */

typedef struct {
    weft_event *event;
    atomic_int waiting;
} event_job;

static void event_waiter(void *arg) {
    event_job *j = arg;
    atomic_fetch_add(&j->waiting, 1);
    ASSERT_OK(weft_event_wait(j->event, WAIT_LIMIT));
}

TEST_TIMEOUT(robust_event_dead_waiter_does_not_stop_set, 20000) {
    xp_guard g;
    xp_begin(&g);
    event_job *j = xp_shared(sizeof *j);
    ASSERT_OK(weft_event_new_in(NULL, NULL, &j->event));
    pid_t w[4];
    for (int i = 0; i < 4; i++) w[i] = xp_fork(event_waiter, j);
    xp_wait_count(&j->waiting, 4);
    for (int i = 0; i < 4; i++) xp_wait_sleeping(w[i]);
    xp_kill(w[0]);
    xp_kill(w[2]);
    ASSERT_OK(weft_event_set(j->event));
    xp_wait_ok(w[1]);
    xp_wait_ok(w[3]);
    /* And again after a clear. */
    ASSERT_OK(weft_event_clear(j->event));
    pid_t again = xp_fork(event_waiter, j);
    xp_wait_sleeping(again);
    ASSERT_OK(weft_event_set(j->event));
    xp_wait_ok(again);
    weft_event_free(j->event);
    xp_end(&g);
}

/* ---- the space's own lock: processes killed in the middle of allocating ---------------------- */

#define CHURN_PROCS 3

typedef struct {
    char space[64];
    atomic_long ops;
    struct {
        int slot;
    } slots[CHURN_PROCS];
} churn_job;

static churn_job *churn;

/* Creates, names, removes and frees objects in the space, forever: every call takes the space's
 * lock, so kills land inside the allocator, the directory and the participants table. */
static void space_churn(void *arg) {
    int slot = *(int *)arg;
    weft_space *s = NULL;
    ASSERT_OK(weft_space_open(churn->space, &s));
    char obj[16];
    snprintf(obj, sizeof obj, "n%d", slot); /* one name per slot: no two live processes share it */
    for (;;) {
        weft_event *e = NULL;
        ASSERT_OK(weft_event_new_in(s, NULL, &e));
        weft_lock *l = NULL;
        weft_status st = weft_lock_new_in(s, obj, &l);
        if (st == WEFT_EXISTS) { /* left by a killed predecessor */
            ASSERT_OK(weft_space_remove(s, obj));
            weft_event_free(e);
            continue;
        }
        ASSERT_OK(st);
        size_t live = 0;
        ASSERT_OK(weft_space_participants(s, &live));
        ASSERT_GE(live, 2);
        ASSERT_OK(weft_space_remove(s, obj));
        weft_lock_free(l);
        weft_event_free(e);
        atomic_fetch_add(&churn->ops, 1);
    }
}

TEST_TIMEOUT(robust_space_survives_kills_while_allocating, 40000) {
    xp_guard g;
    xp_begin(&g);
    churn = xp_shared(sizeof *churn);
    xp_name(churn->space, sizeof churn->space, "churn");
    weft_space *s = NULL;
    ASSERT_OK(weft_space_create(churn->space, 1 << 20, &s));
    pid_t kids[CHURN_PROCS];
    for (int p = 0; p < CHURN_PROCS; p++) {
        churn->slots[p].slot = p;
        kids[p] = xp_fork(space_churn, &churn->slots[p].slot);
    }
    uint64_t rng = 0xFEEDULL ^ (uint64_t)getpid();
    uint64_t end = runner_now_ns() + 1500 * MS;
    int kills = 0;
    while (runner_now_ns() < end) {
        runner_sleep_ms(2 + (unsigned)(xp_rand(&rng) % 20));
        for (int p = 0; p < CHURN_PROCS; p++) {
            int st = 0;
            if (waitpid(kids[p], &st, WNOHANG) == kids[p]) FAIL_AT("worker ended by itself (wait status %d)", st);
        }
        int p = (int)(xp_rand(&rng) % CHURN_PROCS);
        xp_kill(kids[p]);
        kills++;
        kids[p] = xp_fork(space_churn, &churn->slots[p].slot);
    }
    for (int p = 0; p < CHURN_PROCS; p++) xp_kill(kids[p]);
    ASSERT_GE(kills, 20);
    ASSERT_GT(atomic_load(&churn->ops), 100);

    /* The space works: dead participants gone, names reusable, room to allocate. */
    ASSERT_EQ(xp_participants(s), 1);
    weft_space *o = NULL;
    ASSERT_OK(weft_space_open(churn->space, &o));
    ASSERT_EQ(xp_participants(s), 2);
    weft_space_free(o);
    char obj[16];
    for (int p = 0; p < CHURN_PROCS; p++) {
        snprintf(obj, sizeof obj, "n%d", p);
        weft_status st = weft_space_remove(s, obj);
        ASSERT(st == WEFT_OK || st == WEFT_NOT_FOUND);
        weft_lock *l = NULL;
        ASSERT_OK(weft_lock_new_in(s, obj, &l));
        ASSERT_OK(weft_lock_acquire(l, 0));
        ASSERT_OK(weft_lock_release(l));
        weft_lock_free(l);
    }
    weft_event *events[32];
    for (int i = 0; i < 32; i++) ASSERT_OK(weft_event_new_in(s, NULL, &events[i]));
    for (int i = 0; i < 32; i++) weft_event_free(events[i]);
    size_t unused = 0;
    ASSERT_OK(weft_space_usage(s, NULL, &unused));
    ASSERT_GT(unused, 512 * 1024); /* each kill leaks at most a few small blocks */
    ASSERT_OK(weft_space_unlink(churn->space));
    weft_space_free(s);
    xp_end(&g);
}
