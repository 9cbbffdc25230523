/* Process pools that survive crashed workers: in repeated runs a worker is SIGKILLed,
 * segfaults, aborts or exits at a random point of a random task; exactly the affected futures
 * fail with WEFT_WORKER_DIED, every other task succeeds, the pool stays usable, nothing hangs
 * (each test runs under the runner's watchdog), and no worker process is left behind. Also:
 * every start method, retries, and workers that die with a SIGKILLed parent.
 */
#define _GNU_SOURCE
#include "helpers.h"

#include <dirent.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

/* The argument: a task number and how the task ends. */
typedef struct {
    int64_t n;
    int32_t how; /* 0 normally, 'k' SIGKILL, 's' segfault, 'a' abort, 'e' exit(3) */
    int32_t spin; /* microseconds of work before ending */
} crash_arg;

/* Result: n * 2 and the worker's pid. */
weft_status pool_crash_task(weft_call *call);
weft_status pool_crash_task(weft_call *call) {
    const void *d;
    size_t n;
    ASSERT_OK(weft_call_arg(call, &d, &n));
    crash_arg a;
    ASSERT_UEQ(n, sizeof a);
    memcpy(&a, d, sizeof a);
    if (a.spin > 0) usleep((useconds_t)a.spin);
    switch (a.how) {
    case 'k': kill(getpid(), SIGKILL); break;
    case 's': *(volatile int *)(uintptr_t)8 = 1; break;
    case 'a': abort();
    case 'e': _exit(3);
    default: break;
    }
    int64_t r[2] = {a.n * 2, (int64_t)getpid()};
    return weft_call_set_result(call, r, sizeof r);
}

static weft_pool *process_pool(uint32_t method, uint32_t workers, uint32_t retries) {
    weft_pool_options o;
    memset(&o, 0, sizeof o);
    o.kind = WEFT_POOL_PROCESSES;
    o.start_method = method;
    o.workers = workers;
    o.retries = retries;
    weft_pool *p = NULL;
    ASSERT_OK(weft_pool_new(&o, &p));
    return p;
}

TEST_TIMEOUT(pool_process_every_start_method, 60000) {
    uint32_t methods[] = {WEFT_START_FORK, WEFT_START_FORKSERVER, WEFT_START_SPAWN};
    for (size_t m = 0; m < 3; m++) {
        weft_pool *p = process_pool(methods[m], 2, 0);
        weft_future *f[50];
        for (int i = 0; i < 50; i++) {
            crash_arg a = {i, 0, 0};
            ASSERT_OK(weft_pool_submit(p, pool_crash_task, &a, sizeof a, &f[i]));
        }
        for (int i = 0; i < 50; i++) {
            const void *r;
            size_t n;
            ASSERT_OK(weft_future_result(f[i], WEFT_FOREVER, &r, &n));
            ASSERT_UEQ(n, 16);
            int64_t v[2];
            memcpy(v, r, sizeof v);
            ASSERT_EQ(v[0], 2 * i);
            ASSERT_NE(v[1], (int64_t)getpid());
            weft_future_free(f[i]);
        }
        ASSERT_OK(weft_pool_shutdown(p, true, false, WEFT_FOREVER));
        weft_pool_free(p);
    }
}

TEST_TIMEOUT(pool_process_random_crashes_fail_exactly_the_affected_tasks, 120000) {
    const char hows[] = {'k', 's', 'a', 'e'};
    uint64_t seed = 0x9e3779b97f4a7c15ull ^ (uint64_t)getpid();
    weft_pool *p = process_pool(WEFT_START_FORK, 2, 0);
    for (int round = 0; round < 20; round++) {
        enum { N = 60 };
        weft_future *f[N];
        bool victim[N] = {false};
        int victims = 1 + (int)(xp_rand(&seed) % 3);
        for (int v = 0; v < victims; v++) victim[xp_rand(&seed) % N] = true;
        for (int i = 0; i < N; i++) {
            crash_arg a = {i, victim[i] ? hows[xp_rand(&seed) % 4] : 0, (int32_t)(xp_rand(&seed) % 300)};
            ASSERT_OK(weft_pool_submit(p, pool_crash_task, &a, sizeof a, &f[i]));
        }
        for (int i = 0; i < N; i++) {
            const void *r;
            size_t n;
            weft_status st = weft_future_result(f[i], WEFT_FOREVER, &r, &n);
            if (victim[i]) {
                ASSERT_EQ(st, WEFT_WORKER_DIED);
                ASSERT_CONTAINS(weft_last_error_message(), "worker process");
            } else {
                ASSERT_OK(st);
                int64_t v[2];
                memcpy(v, r, sizeof v);
                ASSERT_EQ(v[0], 2 * i);
            }
            weft_future_free(f[i]);
        }
    }
    size_t workers = 0;
    ASSERT_OK(weft_pool_workers(p, &workers));
    ASSERT_UEQ(workers, 2);
    ASSERT_OK(weft_pool_shutdown(p, true, false, WEFT_FOREVER));
    weft_pool_free(p);
    /* Every worker, dead or retired, was reaped. */
    ASSERT_EQ(zombie_children(), 0);
}

TEST_TIMEOUT(pool_process_retries_run_the_task_again, 60000) {
    /* A task that always kills its worker fails after 1 + retries runs; the others pass. */
    weft_pool *p = process_pool(WEFT_START_FORK, 2, 2);
    crash_arg bad = {7, 'k', 0}, good = {8, 0, 0};
    weft_future *fb, *fg;
    ASSERT_OK(weft_pool_submit(p, pool_crash_task, &bad, sizeof bad, &fb));
    ASSERT_OK(weft_pool_submit(p, pool_crash_task, &good, sizeof good, &fg));
    ASSERT_STATUS(weft_future_result(fb, WEFT_FOREVER, NULL, NULL), WEFT_WORKER_DIED);
    ASSERT_OK(weft_future_result(fg, WEFT_FOREVER, NULL, NULL));
    weft_future_free(fb);
    weft_future_free(fg);
    ASSERT_OK(weft_pool_shutdown(p, true, false, WEFT_FOREVER));
    weft_pool_free(p);
}

/* The child: a pool whose worker pids go to `shared`, then the child waits to be killed. */
static void pool_owner(void *shared) {
    int64_t *pids = shared;
    weft_pool *p = process_pool(WEFT_START_FORK, 2, 0);
    for (int i = 0; i < 2;) {
        crash_arg a = {i, 0, 20000}; /* 20 ms each: both workers take one */
        weft_future *f[2];
        ASSERT_OK(weft_pool_submit(p, pool_crash_task, &a, sizeof a, &f[0]));
        ASSERT_OK(weft_pool_submit(p, pool_crash_task, &a, sizeof a, &f[1]));
        for (int k = 0; k < 2; k++) {
            const void *r;
            size_t n;
            ASSERT_OK(weft_future_result(f[k], WEFT_FOREVER, &r, &n));
            int64_t v[2];
            memcpy(v, r, sizeof v);
            if (i < 2 && (i == 0 || pids[0] != v[1])) pids[i++] = v[1];
            weft_future_free(f[k]);
        }
    }
    atomic_store((atomic_int *)&pids[2], 1);
    for (;;) pause();
}

TEST_TIMEOUT(pool_process_workers_die_with_a_killed_parent, 60000) {
    int64_t *shared = xp_shared(4096);
    pid_t owner = xp_fork(pool_owner, shared);
    xp_wait_count((atomic_int *)&shared[2], 1);
    ASSERT_NE(shared[0], shared[1]);
    xp_kill(owner);
    for (int k = 0; k < 2; k++) {
        /* The worker is the owner's child, not ours: poll until its pid is gone. */
        int waited = 0;
        /* (Reaped here when the runner adopted it as a subreaper; a zombie still answers kill.) */
        while (waitpid((pid_t)shared[k], NULL, WNOHANG) == 0 || kill((pid_t)shared[k], 0) == 0) {
            ASSERT_LT(waited, 10000);
            runner_sleep_ms(10);
            waited += 10;
        }
    }
}

/* One pool's life with violent ends: a worker SIGKILLed in the middle of a task (healed), then
 * the pool terminated while both workers are inside long tasks. */
static void violent_pool_life(void) {
    weft_pool *p = process_pool(WEFT_START_FORKSERVER, 2, 0);
    weft_future *f[8];
    for (int i = 0; i < 8; i++) {
        crash_arg a = {i, i == 3 ? 'k' : 0, 100};
        ASSERT_OK(weft_pool_submit(p, pool_crash_task, &a, sizeof a, &f[i]));
    }
    for (int i = 0; i < 8; i++) {
        const void *r;
        size_t n;
        ASSERT_EQ(weft_future_result(f[i], WEFT_FOREVER, &r, &n), i == 3 ? WEFT_WORKER_DIED : WEFT_OK);
        weft_future_free(f[i]);
    }
    weft_future *busy[2];
    for (int i = 0; i < 2; i++) {
        crash_arg a = {i, 0, 30 * 1000 * 1000}; /* 30 s: ended by terminate */
        ASSERT_OK(weft_pool_submit(p, pool_crash_task, &a, sizeof a, &busy[i]));
    }
    for (int i = 0; i < 2; i++)
        while (weft_future_state(busy[i]) == WEFT_FUTURE_PENDING) runner_sleep_ms(1);
    runner_sleep_ms(20); /* inside the tasks */
    ASSERT_OK(weft_pool_terminate(p, WEFT_FOREVER));
    for (int i = 0; i < 2; i++) {
        const void *r;
        size_t n;
        ASSERT_EQ(weft_future_result(busy[i], WEFT_FOREVER, &r, &n), WEFT_CANCELLED);
        weft_future_free(busy[i]);
    }
    weft_pool_free(p);
}

/* Killed workers leave nothing behind in the shared-memory space: the space's never-used bytes
 * stay the same over repeated pool lives with killed workers and terminated busy pools (each
 * life takes about 6 MiB of queues, which a leak would never give back). */
TEST_TIMEOUT(pool_process_killed_workers_leak_no_shared_memory, 60000) {
    weft_space *space = NULL;
    ASSERT_OK(weft_space_default(&space));
    violent_pool_life(); /* the first life allocates the blocks the next ones reuse */
    size_t before = 0, after = 0;
    ASSERT_OK(weft_space_usage(space, NULL, &before));
    for (int life = 0; life < 12; life++) violent_pool_life();
    ASSERT_OK(weft_space_usage(space, NULL, &after));
    ASSERT_UEQ(after, before);
    ASSERT_EQ(zombie_children(), 0);
    weft_space_free(space);
}
