/* The seven primitives shared between processes (Python's multiprocessing.Lock, RLock,
 * Semaphore, BoundedSemaphore, Event, Condition, Barrier): real forked children, objects in the
 * default space (inherited, or reached by token) and in a named space (opened by name). Death of
 * a process is tested in test_shared_robust.c.
 */
#define _GNU_SOURCE
#include "helpers.h"

#include <sched.h>
#include <signal.h>
#include <unistd.h>

#define WAIT_LIMIT (10 * SEC) /* a wait that should succeed at once; never reached */

/* ---- Lock ---------------------------------------------------------------------------------- */

typedef struct {
    weft_lock *lock;
    char space[64];     /* empty: use `lock` (inherited); else open the space and "L" by name */
    volatile int64_t counter;
    int iterations;
    atomic_int started;
} lock_job;

static void lock_worker(void *arg) {
    lock_job *j = arg;
    weft_lock *l = j->lock;
    weft_space *s = NULL;
    if (j->space[0]) {
        ASSERT_OK(weft_space_open(j->space, &s));
        l = NULL;
        ASSERT_OK(weft_lock_open(s, "L", &l));
    }
    atomic_fetch_add(&j->started, 1);
    for (int i = 0; i < j->iterations; i++) {
        ASSERT_OK(weft_lock_acquire(l, WAIT_LIMIT));
        ASSERT(weft_lock_locked(l));
        int64_t v = j->counter;
        if ((i & 31) == 0) sched_yield(); /* let the others try while we hold it */
        j->counter = v + 1;
        ASSERT_OK(weft_lock_release(l));
    }
    if (s) {
        weft_lock_free(l);
        weft_space_free(s);
    }
}

static void run_lock_job(lock_job *j, int children) {
    pid_t pids[8];
    for (int i = 0; i < children; i++) pids[i] = xp_fork(lock_worker, j);
    lock_worker(j); /* the parent is one of the processes */
    for (int i = 0; i < children; i++) xp_wait_ok(pids[i]);
    ASSERT_EQ(j->counter, (int64_t)j->iterations * (children + 1));
    ASSERT(!weft_lock_locked(j->lock));
}

TEST_TIMEOUT(shared_lock_mutual_exclusion_across_processes, 30000) {
    xp_guard g;
    xp_begin(&g);
    lock_job *j = xp_shared(sizeof *j);
    ASSERT_OK(weft_lock_new_in(NULL, NULL, &j->lock));
    j->iterations = 5000;
    run_lock_job(j, 3);

    weft_lock_free(j->lock);

    /* A named space: every child opens the space and the lock by name. */
    char name[64];
    xp_name(name, sizeof name, "locks");
    weft_space *s = NULL;
    ASSERT_OK(weft_space_create(name, 256 * 1024, &s));
    memset(j, 0, sizeof *j);
    snprintf(j->space, sizeof j->space, "%s", name);
    j->iterations = 3000;
    ASSERT_OK(weft_lock_new_in(s, "L", &j->lock));
    run_lock_job(j, 2);
    ASSERT_EQ(xp_participants(s), 1);
    ASSERT_OK(weft_space_unlink(name));
    weft_lock_free(j->lock);
    weft_space_free(s);
    xp_end(&g);
}

static void child_releases_lock(void *arg) {
    weft_lock *l = arg;
    ASSERT(weft_lock_locked(l));
    ASSERT_STATUS(weft_lock_acquire(l, 0), WEFT_WOULD_BLOCK);
    ASSERT_STATUS(weft_lock_acquire(l, 20 * MS), WEFT_TIMEOUT);
    ASSERT_OK(weft_lock_release(l)); /* a Lock has no owner */
    ASSERT_STATUS(weft_lock_release(l), WEFT_INVALID_STATE);
    ASSERT_STATUS(weft_lock_mark_consistent(l), WEFT_INVALID_STATE); /* nothing to recover */
}

static void child_waits_for_lock(void *arg) {
    weft_lock *l = arg;
    ASSERT_OK(weft_lock_acquire(l, WAIT_LIMIT)); /* woken by the parent's release */
    ASSERT_OK(weft_lock_release(l));
}

TEST_TIMEOUT(shared_lock_held_released_and_woken_across_processes, 20000) {
    xp_guard g;
    xp_begin(&g);
    weft_lock *l = NULL;
    ASSERT_OK(weft_lock_new_in(NULL, NULL, &l));
    ASSERT_OK(weft_lock_acquire(l, 0));
    xp_wait_ok(xp_fork(child_releases_lock, l));
    ASSERT(!weft_lock_locked(l));

    ASSERT_OK(weft_lock_acquire(l, 0));
    pid_t waiter = xp_fork(child_waits_for_lock, l);
    xp_wait_sleeping(waiter);
    ASSERT_OK(weft_lock_release(l));
    xp_wait_ok(waiter);
    ASSERT(!weft_lock_locked(l));
    weft_lock_free(l);
    xp_end(&g);
}

/* ---- RLock --------------------------------------------------------------------------------- */

typedef struct {
    weft_rlock *rlock;
    volatile int64_t counter;
    int iterations;
} rlock_job;

static void rlock_worker(void *arg) {
    rlock_job *j = arg;
    for (int i = 0; i < j->iterations; i++) {
        ASSERT_OK(weft_rlock_acquire(j->rlock, WAIT_LIMIT));
        ASSERT_OK(weft_rlock_acquire(j->rlock, 0)); /* re-entry never blocks */
        ASSERT_EQ(weft_rlock_depth(j->rlock), 2);
        ASSERT(weft_rlock_is_owned(j->rlock));
        int64_t v = j->counter;
        if ((i & 31) == 0) sched_yield();
        j->counter = v + 1;
        ASSERT_OK(weft_rlock_release(j->rlock));
        ASSERT_EQ(weft_rlock_depth(j->rlock), 1);
        ASSERT_OK(weft_rlock_release(j->rlock));
        ASSERT(!weft_rlock_is_owned(j->rlock));
    }
}

static void child_checks_foreign_rlock(void *arg) {
    weft_rlock *r = arg;
    /* The parent owns it: this process does not. */
    ASSERT(!weft_rlock_is_owned(r));
    ASSERT_EQ(weft_rlock_depth(r), 0);
    ASSERT_STATUS(weft_rlock_release(r), WEFT_NOT_OWNER);
    ASSERT_STATUS(weft_rlock_acquire(r, 0), WEFT_WOULD_BLOCK);
    ASSERT_STATUS(weft_rlock_acquire(r, 20 * MS), WEFT_TIMEOUT);
    ASSERT(weft_rlock_mark_consistent(r) != WEFT_OK);
}

TEST_TIMEOUT(shared_rlock_across_processes, 30000) {
    xp_guard g;
    xp_begin(&g);
    rlock_job *j = xp_shared(sizeof *j);
    ASSERT_OK(weft_rlock_new_in(NULL, NULL, &j->rlock));
    j->iterations = 3000;
    pid_t pids[2];
    for (int i = 0; i < 2; i++) pids[i] = xp_fork(rlock_worker, j);
    rlock_worker(j);
    for (int i = 0; i < 2; i++) xp_wait_ok(pids[i]);
    ASSERT_EQ(j->counter, 3 * 3000);

    ASSERT_OK(weft_rlock_acquire(j->rlock, 0));
    ASSERT_OK(weft_rlock_acquire(j->rlock, 0));
    xp_wait_ok(xp_fork(child_checks_foreign_rlock, j->rlock));
    ASSERT_EQ(weft_rlock_depth(j->rlock), 2);
    ASSERT_OK(weft_rlock_release(j->rlock));
    ASSERT_OK(weft_rlock_release(j->rlock));
    ASSERT_STATUS(weft_rlock_release(j->rlock), WEFT_NOT_OWNER);
    weft_rlock_free(j->rlock);
    xp_end(&g);
}

/* ---- Semaphore ----------------------------------------------------------------------------- */

typedef struct {
    weft_semaphore *sem;
    atomic_int inside, max_inside, rounds;
    int iterations;
} sem_job;

static void sem_worker(void *arg) {
    sem_job *j = arg;
    for (int i = 0; i < j->iterations; i++) {
        ASSERT_OK(weft_semaphore_acquire(j->sem, WAIT_LIMIT));
        int now = atomic_fetch_add(&j->inside, 1) + 1;
        ASSERT_LE(now, 2);
        int m = atomic_load(&j->max_inside);
        while (now > m && !atomic_compare_exchange_weak(&j->max_inside, &m, now)) {
        }
        runner_sleep_ms(0);
        sched_yield();
        atomic_fetch_sub(&j->inside, 1);
        atomic_fetch_add(&j->rounds, 1);
        ASSERT_OK(weft_semaphore_release(j->sem, 1));
    }
}

static void child_releases_sem_when_parent_sleeps(void *arg) {
    weft_semaphore *s = arg;
    xp_wait_sleeping(getppid());
    ASSERT_OK(weft_semaphore_release(s, 1));
}

static void child_checks_bounded(void *arg) {
    weft_semaphore *s = arg;
    ASSERT(weft_semaphore_is_bounded(s));
    ASSERT_EQ(weft_semaphore_value(s), 0); /* the parent took the one permit */
    ASSERT_STATUS(weft_semaphore_acquire(s, 0), WEFT_WOULD_BLOCK);
    ASSERT_OK(weft_semaphore_release(s, 1)); /* no owner: any process may release */
    ASSERT_STATUS(weft_semaphore_release(s, 1), WEFT_INVALID_STATE);
    ASSERT_EQ(weft_semaphore_value(s), 1);
}

static void child_takes_permit_and_dies(void *arg) {
    ASSERT_OK(weft_semaphore_acquire((weft_semaphore *)arg, 0));
    raise(SIGKILL);
}

TEST_TIMEOUT(shared_semaphore_across_processes, 30000) {
    xp_guard g;
    xp_begin(&g);
    sem_job *j = xp_shared(sizeof *j);
    ASSERT_OK(weft_semaphore_new_in(NULL, NULL, 2, false, &j->sem));
    ASSERT(!weft_semaphore_is_bounded(j->sem));
    j->iterations = 300;
    pid_t pids[4];
    for (int i = 0; i < 4; i++) pids[i] = xp_fork(sem_worker, j);
    for (int i = 0; i < 4; i++) xp_wait_ok(pids[i]);
    ASSERT_EQ(atomic_load(&j->rounds), 4 * 300);
    ASSERT_LE(atomic_load(&j->max_inside), 2);
    ASSERT_GE(atomic_load(&j->max_inside), 1);
    ASSERT_EQ(weft_semaphore_value(j->sem), 2);

    /* A waiter here is woken by a release there. */
    ASSERT_OK(weft_semaphore_acquire(j->sem, 0));
    ASSERT_OK(weft_semaphore_acquire(j->sem, 0));
    pid_t releaser = xp_fork(child_releases_sem_when_parent_sleeps, j->sem);
    ASSERT_OK(weft_semaphore_acquire(j->sem, WAIT_LIMIT));
    xp_wait_ok(releaser);
    ASSERT_EQ(weft_semaphore_value(j->sem), 0);

    /* A process that dies holding a permit keeps it taken (as Python's and POSIX's do). */
    ASSERT_OK(weft_semaphore_release(j->sem, 1));
    xp_wait_killed(xp_fork(child_takes_permit_and_dies, j->sem));
    ASSERT_EQ(weft_semaphore_value(j->sem), 0);
    ASSERT_OK(weft_semaphore_release(j->sem, 2));
    ASSERT_EQ(weft_semaphore_value(j->sem), 2);
    weft_semaphore_free(j->sem);

    /* Bounded. */
    weft_semaphore *b = NULL;
    ASSERT_OK(weft_semaphore_new_in(NULL, NULL, 1, true, &b));
    ASSERT_OK(weft_semaphore_acquire(b, 0));
    xp_wait_ok(xp_fork(child_checks_bounded, b));
    ASSERT_EQ(weft_semaphore_value(b), 1);
    ASSERT_STATUS(weft_semaphore_release(b, 1), WEFT_INVALID_STATE);
    ASSERT_OK(weft_semaphore_acquire(b, 0));
    ASSERT_OK(weft_semaphore_release(b, 1));
    weft_semaphore_free(b);
    xp_end(&g);
}

/* ---- Event --------------------------------------------------------------------------------- */

typedef struct {
    weft_event *event;
    atomic_int waiting;
} event_job;

static void event_waiter(void *arg) {
    event_job *j = arg;
    atomic_fetch_add(&j->waiting, 1);
    ASSERT_OK(weft_event_wait(j->event, WAIT_LIMIT));
    ASSERT(weft_event_is_set(j->event));
}

static void event_timeout_and_clear(void *arg) {
    event_job *j = arg;
    ASSERT(weft_event_is_set(j->event));
    ASSERT_OK(weft_event_clear(j->event));
    uint64_t t0 = runner_now_ns();
    ASSERT_STATUS(weft_event_wait(j->event, 30 * MS), WEFT_TIMEOUT);
    ASSERT_UGE(runner_now_ns() - t0, 30 * MS); /* not before its deadline */
    ASSERT_STATUS(weft_event_wait(j->event, 0), WEFT_WOULD_BLOCK);
}

TEST_TIMEOUT(shared_event_across_processes, 20000) {
    xp_guard g;
    xp_begin(&g);
    event_job *j = xp_shared(sizeof *j);
    ASSERT_OK(weft_event_new_in(NULL, NULL, &j->event));
    pid_t pids[3];
    for (int i = 0; i < 3; i++) pids[i] = xp_fork(event_waiter, j);
    xp_wait_count(&j->waiting, 3);
    for (int i = 0; i < 3; i++) xp_wait_sleeping(pids[i]);
    ASSERT_OK(weft_event_set(j->event));
    for (int i = 0; i < 3; i++) xp_wait_ok(pids[i]);
    xp_wait_ok(xp_fork(event_timeout_and_clear, j));
    ASSERT(!weft_event_is_set(j->event));
    weft_event_free(j->event);
    xp_end(&g);
}

/* ---- Condition ----------------------------------------------------------------------------- */

typedef struct {
    weft_condition *cond;
    atomic_int waiting, returns, done;
    int tickets; /* under the condition's lock */
} cond_job;

static void cond_waiter(void *arg) {
    cond_job *j = arg;
    ASSERT_OK(weft_condition_acquire(j->cond, WAIT_LIMIT));
    atomic_fetch_add(&j->waiting, 1);
    while (j->tickets == 0) {
        ASSERT_OK(weft_condition_wait(j->cond, WAIT_LIMIT));
        atomic_fetch_add(&j->returns, 1);
    }
    j->tickets--;
    atomic_fetch_add(&j->done, 1);
    ASSERT_OK(weft_condition_release(j->cond));
}

/* Starts `n` waiters and returns once all of them wait in the condition (each released the lock
 * in its wait, which the parent's acquire proves). */
static void start_cond_waiters(cond_job *j, pid_t *pids, int n) {
    for (int i = 0; i < n; i++) pids[i] = xp_fork(cond_waiter, j);
    xp_wait_count(&j->waiting, n);
    ASSERT_OK(weft_condition_acquire(j->cond, WAIT_LIMIT));
    ASSERT_OK(weft_condition_release(j->cond));
}

static void run_condition(weft_condition *c) {
    cond_job *j = xp_shared(sizeof *j);
    j->cond = c;
    pid_t pids[3];
    start_cond_waiters(j, pids, 3);

    /* notify(1): one waiter returns, the others keep waiting. */
    ASSERT_OK(weft_condition_acquire(c, WAIT_LIMIT));
    j->tickets = 1;
    ASSERT_OK(weft_condition_notify(c, 1));
    ASSERT_OK(weft_condition_release(c));
    xp_wait_count(&j->done, 1);
    runner_sleep_ms(50);
    ASSERT_EQ(atomic_load(&j->returns), 1);
    ASSERT_EQ(atomic_load(&j->done), 1);

    /* notify_all: the other two. */
    ASSERT_OK(weft_condition_acquire(c, WAIT_LIMIT));
    j->tickets = 2;
    ASSERT_OK(weft_condition_notify_all(c));
    ASSERT_OK(weft_condition_release(c));
    for (int i = 0; i < 3; i++) xp_wait_ok(pids[i]);
    ASSERT_EQ(atomic_load(&j->done), 3);
    ASSERT_EQ(j->tickets, 0);

    /* Notifying needs the lock. */
    ASSERT_STATUS(weft_condition_notify(c, 1), WEFT_NOT_OWNER);
    ASSERT_STATUS(weft_condition_notify_all(c), WEFT_NOT_OWNER);
    ASSERT_STATUS(weft_condition_wait(c, 0), WEFT_NOT_OWNER);
}

TEST_TIMEOUT(shared_condition_over_a_shared_lock_across_processes, 20000) {
    xp_guard g;
    xp_begin(&g);
    weft_lock *l = NULL;
    ASSERT_OK(weft_lock_new_in(NULL, NULL, &l));
    weft_condition *c = NULL;
    ASSERT_OK(weft_condition_new_with_lock(l, &c)); /* shared, since the lock is */
    uint8_t tok[WEFT_TOKEN_MAX];
    size_t len = 0;
    ASSERT_OK(weft_condition_token(c, tok, sizeof tok, &len));
    run_condition(c);
    weft_condition_free(c);
    weft_lock_free(l);

    /* A condition with a shared RLock of its own (Python's Condition()). */
    ASSERT_OK(weft_condition_new_in(NULL, NULL, NULL, NULL, &c));
    run_condition(c);
    weft_condition_free(c);
    xp_end(&g);
}

typedef struct {
    char space[64];
    atomic_int waiting, flag;
} named_cond_job;

static void named_cond_child(void *arg) {
    named_cond_job *j = arg;
    weft_space *s = NULL;
    ASSERT_OK(weft_space_open(j->space, &s));
    weft_condition *c = NULL;
    weft_rlock *r = NULL;
    ASSERT_OK(weft_condition_open(s, "C", &c));
    ASSERT_OK(weft_rlock_open(s, "R", &r));
    /* Two levels, through the rlock's own handle: the condition's lock is the same rlock. */
    ASSERT_OK(weft_rlock_acquire(r, WAIT_LIMIT));
    ASSERT_OK(weft_condition_acquire(c, 0));
    ASSERT_EQ(weft_rlock_depth(r), 2);
    atomic_store(&j->waiting, 1);
    while (!atomic_load(&j->flag)) ASSERT_OK(weft_condition_wait(c, WAIT_LIMIT));
    ASSERT_EQ(weft_rlock_depth(r), 2); /* every level restored */
    ASSERT_OK(weft_rlock_release(r));
    ASSERT_OK(weft_condition_release(c));
    ASSERT(!weft_rlock_is_owned(r));
    weft_condition_free(c);
    weft_rlock_free(r);
    weft_space_free(s);
}

TEST_TIMEOUT(shared_condition_over_a_named_rlock_opened_by_name, 20000) {
    xp_guard g;
    xp_begin(&g);
    named_cond_job *j = xp_shared(sizeof *j);
    xp_name(j->space, sizeof j->space, "cond");
    weft_space *s = NULL;
    ASSERT_OK(weft_space_create(j->space, 256 * 1024, &s));
    weft_rlock *r = NULL;
    ASSERT_OK(weft_rlock_new_in(s, "R", &r));
    weft_condition *c = NULL;
    ASSERT_OK(weft_condition_new_in(s, "C", NULL, r, &c));
    pid_t pid = xp_fork(named_cond_child, j);
    xp_wait_count(&j->waiting, 1);
    /* The child's wait released both of its levels. */
    ASSERT_OK(weft_rlock_acquire(r, WAIT_LIMIT));
    atomic_store(&j->flag, 1);
    ASSERT_OK(weft_condition_notify_all(c)); /* owned through the rlock's handle */
    ASSERT_OK(weft_rlock_release(r));
    xp_wait_ok(pid);
    ASSERT_EQ(xp_participants(s), 1);
    ASSERT_OK(weft_space_unlink(j->space));
    weft_condition_free(c);
    weft_rlock_free(r);
    weft_space_free(s);
    xp_end(&g);
}

/* ---- Barrier ------------------------------------------------------------------------------- */

#define ROUNDS 10

typedef struct {
    weft_barrier *barrier;
    uint8_t token[WEFT_TOKEN_MAX];
    size_t token_len;
    int index[ROUNDS][3];   /* arrival index of process p in round r */
    pid_t pid[3];           /* process p */
    pid_t actor[ROUNDS];    /* who ran the action in round r */
    atomic_int actions;
} barrier_job;

static weft_status record_action(void *ctx) {
    barrier_job *j = ctx;
    int r = atomic_fetch_add(&j->actions, 1);
    if (r < ROUNDS) j->actor[r] = getpid();
    return WEFT_OK;
}

static void barrier_party(barrier_job *j, int p, weft_barrier *b) {
    j->pid[p] = getpid();
    for (int r = 0; r < ROUNDS; r++) {
        uint32_t idx = 99;
        ASSERT_OK(weft_barrier_wait(b, WAIT_LIMIT, &idx));
        ASSERT_LT(idx, 3);
        j->index[r][p] = (int)idx;
    }
}

static void barrier_child_inherited(void *arg) {
    barrier_job *j = arg;
    barrier_party(j, 1, j->barrier);
    weft_barrier_free(j->barrier); /* leaves the barrier: its _exit is not a death */
}

static void barrier_child_by_token(void *arg) {
    barrier_job *j = arg;
    weft_barrier *b = NULL;
    ASSERT_OK(weft_barrier_from_token(j->token, j->token_len, record_action, j, &b));
    ASSERT_EQ(weft_barrier_parties(b), 3);
    barrier_party(j, 2, b);
    weft_barrier_free(b);
}

TEST_TIMEOUT(shared_barrier_rounds_across_processes, 20000) {
    xp_guard g;
    xp_begin(&g);
    barrier_job *j = xp_shared(sizeof *j);
    ASSERT_OK(weft_barrier_new_in(NULL, NULL, 3, record_action, j, &j->barrier));
    ASSERT_OK(weft_barrier_token(j->barrier, j->token, sizeof j->token, &j->token_len));
    pid_t a = xp_fork(barrier_child_inherited, j);
    pid_t b = xp_fork(barrier_child_by_token, j);
    barrier_party(j, 0, j->barrier);
    xp_wait_ok(a);
    xp_wait_ok(b);
    ASSERT_EQ(atomic_load(&j->actions), ROUNDS);
    for (int r = 0; r < ROUNDS; r++) {
        int seen = 0, last = -1;
        for (int p = 0; p < 3; p++) {
            seen |= 1 << j->index[r][p];
            if (j->index[r][p] == 2) last = p;
        }
        if (seen != 7) FAIL_AT("round %d: indices %d %d %d", r, j->index[r][0], j->index[r][1], j->index[r][2]);
        ASSERT_EQ(j->actor[r], j->pid[last]); /* the last to arrive ran (its own) action */
    }
    ASSERT(!weft_barrier_broken(j->barrier));
    ASSERT_EQ(weft_barrier_n_waiting(j->barrier), 0);
    weft_barrier_free(j->barrier);
    xp_end(&g);
}

/* ---- every kind, by name, in a named space, from a child ------------------------------------ */

typedef struct {
    char space[64];
} named_job;

static void named_child(void *arg) {
    named_job *j = arg;
    weft_space *s = NULL;
    ASSERT_OK(weft_space_open(j->space, &s));
    weft_lock *l = NULL;
    weft_rlock *r = NULL;
    weft_semaphore *sem = NULL;
    weft_event *e = NULL;
    weft_condition *c = NULL;
    weft_barrier *b = NULL;
    weft_array *a = NULL;
    ASSERT_OK(weft_lock_open(s, "L", &l));
    ASSERT_OK(weft_rlock_open(s, "R", &r));
    ASSERT_OK(weft_semaphore_open(s, "S", &sem));
    ASSERT_OK(weft_event_open(s, "E", &e));
    ASSERT_OK(weft_condition_open(s, "C", &c));
    ASSERT_OK(weft_barrier_open(s, "B", NULL, NULL, &b));
    ASSERT_OK(weft_array_open(s, "A", &a));

    ASSERT(weft_lock_locked(l)); /* the parent holds it... */
    ASSERT_STATUS(weft_lock_acquire(l, 0), WEFT_WOULD_BLOCK);
    ASSERT_STATUS(weft_condition_acquire(c, 0), WEFT_WOULD_BLOCK); /* ...and it is C's lock */
    ASSERT_OK(weft_rlock_acquire(r, 0));
    ASSERT_OK(weft_rlock_release(r));
    ASSERT(weft_semaphore_is_bounded(sem));
    ASSERT_OK(weft_semaphore_release(sem, 2));
    ASSERT_EQ(weft_array_len(a), 4);
    ASSERT_EQ(weft_array_typecode(a), 'i');
    int v = 42;
    ASSERT_OK(weft_array_set(a, 1, &v, sizeof v));
    ASSERT_EQ(weft_barrier_parties(b), 2);
    ASSERT_OK(weft_event_set(e));
    uint32_t idx = 0;
    ASSERT_OK(weft_barrier_wait(b, WAIT_LIMIT, &idx));

    weft_array_free(a);
    weft_barrier_free(b);
    weft_condition_free(c);
    weft_event_free(e);
    weft_semaphore_free(sem);
    weft_rlock_free(r);
    weft_lock_free(l);
    weft_space_free(s);
}

TEST_TIMEOUT(shared_objects_opened_by_name_from_a_child, 20000) {
    xp_guard g;
    xp_begin(&g);
    named_job *j = xp_shared(sizeof *j);
    xp_name(j->space, sizeof j->space, "named");
    weft_space *s = NULL;
    ASSERT_OK(weft_space_create(j->space, 256 * 1024, &s));
    weft_lock *l = NULL;
    weft_rlock *r = NULL;
    weft_semaphore *sem = NULL;
    weft_event *e = NULL;
    weft_condition *c = NULL;
    weft_barrier *b = NULL;
    weft_array *a = NULL;
    ASSERT_OK(weft_lock_new_in(s, "L", &l));
    ASSERT_OK(weft_rlock_new_in(s, "R", &r));
    ASSERT_OK(weft_semaphore_new_in(s, "S", 2, true, &sem));
    ASSERT_OK(weft_event_new_in(s, "E", &e));
    ASSERT_OK(weft_condition_new_in(s, "C", l, NULL, &c));
    ASSERT_OK(weft_barrier_new_in(s, "B", 2, NULL, NULL, &b));
    ASSERT_OK(weft_array_new_in(s, "A", 'i', 4, NULL, true, &a));
    ASSERT_OK(weft_semaphore_acquire(sem, 0));
    ASSERT_OK(weft_semaphore_acquire(sem, 0));
    ASSERT_OK(weft_lock_acquire(l, 0));

    pid_t pid = xp_fork(named_child, j);
    uint32_t idx = 0;
    ASSERT_OK(weft_barrier_wait(b, WAIT_LIMIT, &idx));
    xp_wait_ok(pid);
    ASSERT(weft_event_is_set(e));
    ASSERT_EQ(weft_semaphore_value(sem), 2);
    int v = 0;
    ASSERT_OK(weft_array_get(a, 1, &v, sizeof v));
    ASSERT_EQ(v, 42);
    ASSERT_OK(weft_lock_release(l));
    ASSERT_EQ(xp_participants(s), 1);

    ASSERT_OK(weft_space_unlink(j->space));
    weft_array_free(a);
    weft_barrier_free(b);
    weft_condition_free(c);
    weft_event_free(e);
    weft_semaphore_free(sem);
    weft_rlock_free(r);
    weft_lock_free(l);
    weft_space_free(s);
    xp_end(&g);
}
