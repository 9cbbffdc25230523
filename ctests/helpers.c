/* Helpers shared by the test files of the C conformance suite: see helpers.h. */
#define _GNU_SOURCE
#include "helpers.h"

#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

/* ---- threads of this process ------------------------------------------------------------ */

uint32_t my_tid(void) {
    return (uint32_t)syscall(SYS_gettid);
}

/* Waits until thread `tid` is in state S, failing at `deadline` (runner_now_ns). */
static void wait_sleeping(uint32_t tid, uint64_t deadline) {
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%u/stat", tid);
    for (;;) {
        char buf[512] = "";
        FILE *f = fopen(path, "r");
        if (!f) FAIL_AT("thread %u: cannot read %s", tid, path);
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = '\0';
        /* The state follows the command name in parentheses (which may itself hold a ")"). */
        const char *p = strrchr(buf, ')');
        ASSERT_NOT_NULL(p);
        if (p[1] == ' ' && p[2] == 'S') return;
        if (runner_now_ns() > deadline) FAIL_AT("thread %u never blocked (stat: %s)", tid, buf);
        runner_sleep_ms(1);
    }
}

void wait_until_blocked(uint32_t tid) {
    wait_sleeping(tid, runner_now_ns() + 3 * SEC);
}

void wait_blocked(atomic_uint *tid) {
    uint64_t deadline = runner_now_ns() + 10 * SEC;
    while (atomic_load(tid) == 0) {
        if (runner_now_ns() > deadline) FAIL_AT("thread never published its id, never blocked");
        runner_sleep_ms(1);
    }
    wait_sleeping(atomic_load(tid), deadline);
}

pthread_t spawn(void *(*fn)(void *), void *arg) {
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, fn, arg), 0);
    return t;
}

/* ---- weft objects ----------------------------------------------------------------------- */

weft_lock *new_lock(void) {
    weft_lock *l = NULL;
    ASSERT_OK(weft_lock_new(&l));
    ASSERT_NOT_NULL(l);
    return l;
}

weft_rlock *new_rlock(void) {
    weft_rlock *r = NULL;
    ASSERT_OK(weft_rlock_new(&r));
    ASSERT_NOT_NULL(r);
    return r;
}

weft_event *new_event(void) {
    weft_event *e = NULL;
    ASSERT_OK(weft_event_new(&e));
    ASSERT_NOT_NULL(e);
    return e;
}

weft_semaphore *new_sem(uint32_t value, int bounded) {
    weft_semaphore *s = NULL;
    if (bounded)
        ASSERT_OK(weft_semaphore_new_bounded(value, &s));
    else
        ASSERT_OK(weft_semaphore_new(value, &s));
    ASSERT_NOT_NULL(s);
    return s;
}

weft_barrier *new_barrier(uint32_t parties, weft_barrier_action action, void *ctx) {
    weft_barrier *b = NULL;
    ASSERT_OK(weft_barrier_new(parties, action, ctx, &b));
    ASSERT_NOT_NULL(b);
    return b;
}

/* ---- weft threads ----------------------------------------------------------------------- */

weft_status start_ptr(weft_task_fn fn, void *p, const weft_thread_options *o, weft_thread **out) {
    return weft_thread_start(fn, &p, sizeof p, o, out);
}

void *call_ptr(weft_call *call) {
    const void *data = NULL;
    size_t len = 0;
    ASSERT_OK(weft_call_arg(call, &data, &len));
    ASSERT_EQ(len, sizeof(void *));
    void *p;
    memcpy(&p, data, sizeof p);
    return p;
}

weft_status task_nothing(weft_call *call) {
    (void)call;
    return WEFT_OK;
}

weft_status task_wait_event(weft_call *call) {
    weft_event *e = call_ptr(call);
    return weft_event_wait(e, WEFT_FOREVER);
}

void wait_dead(weft_thread *t) {
    uint64_t deadline = runner_now_ns() + 3 * SEC;
    while (weft_thread_is_alive(t)) {
        ASSERT(runner_now_ns() < deadline);
        runner_sleep_ms(1);
    }
}

/* ---- signals ---------------------------------------------------------------------------- */

/* Signals delivered since the last pester_start. */
static atomic_int pester_signals;

static void pester_on_signal(int sig) {
    (void)sig;
    atomic_fetch_add(&pester_signals, 1);
}

static void *pester_main(void *arg) {
    pester *p = arg;
    while (!atomic_load(&p->stop)) {
        pthread_kill(p->target, SIGUSR1);
        runner_sleep_ms(1);
    }
    return NULL;
}

void pester_start(pester *p) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = pester_on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;
    ASSERT_EQ(sigaction(SIGUSR1, &sa, NULL), 0);
    atomic_store(&pester_signals, 0);
    atomic_store(&p->stop, 0);
    p->target = pthread_self();
    ASSERT_EQ(pthread_create(&p->thread, NULL, pester_main, p), 0);
}

void pester_stop(pester *p) {
    atomic_store(&p->stop, 1);
    pthread_join(p->thread, NULL);
    ASSERT_GT(atomic_load(&pester_signals), 0); /* the wait really was interrupted */
}
