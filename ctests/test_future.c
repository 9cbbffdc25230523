/* weft_future, weft_futures_wait, weft_as_completed and weft_group: Python's
 * concurrent.futures.Future / wait / as_completed and asyncio's TaskGroup, call by call. The
 * concurrent parts run on weft threads (weft_thread_start). */
#define _GNU_SOURCE
#include "runner.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <unistd.h>

#include "helpers.h"

static weft_future *new_future(void) {
    weft_future *f = NULL;
    ASSERT_OK(weft_future_new(&f));
    ASSERT_NOT_NULL(f);
    ASSERT_EQ(weft_future_state(f), WEFT_FUTURE_PENDING);
    return f;
}

static weft_group *new_group(void) {
    weft_group *g = NULL;
    ASSERT_OK(weft_group_new(&g));
    ASSERT_NOT_NULL(g);
    return g;
}

/* The result of a finished future must be exactly `want` (a string, without its NUL). */
static void assert_result(weft_future *f, const char *want) {
    const void *data = (const void *)1;
    size_t len = 12345;
    ASSERT_OK(weft_future_result(f, 0, &data, &len));
    ASSERT_EQ(len, strlen(want));
    if (len == 0)
        ASSERT_NULL(data);
    else
        ASSERT_EQ(memcmp(data, want, len), 0);
}

static bool readable(int fd, int timeout_ms) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int r;
    do r = poll(&p, 1, timeout_ms);
    while (r < 0 && errno == EINTR);
    ASSERT(r >= 0);
    return r == 1 && (p.revents & POLLIN);
}

/* ---- arguments and errors ---------------------------------------------------------------- */

static void cb_count(weft_future *f, void *ctx) {
    (void)f;
    atomic_fetch_add((atomic_int *)ctx, 1);
}

TEST(future_null_arguments) {
    weft_future *f = new_future();
    const void *data;
    size_t len;
    weft_status st;
    bool b;
    int fd;
    ASSERT_STATUS(weft_future_new(NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_future_ref(NULL), WEFT_NULL_ARGUMENT);
    ASSERT_EQ(weft_future_state(NULL), -1);
    ASSERT_CONTAINS(weft_last_error_message(), "NULL");
    ASSERT_STATUS(weft_future_set_running(NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_future_set_result(NULL, "x", 1), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_future_set_result(f, NULL, 1), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_future_set_failure(NULL, WEFT_OS_ERROR, "m"), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_future_cancel(NULL, &b), WEFT_NULL_ARGUMENT);
    ASSERT(!weft_future_cancel_requested(NULL));
    ASSERT_STATUS(weft_future_run(NULL, task_nothing, NULL, 0), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_future_run(f, NULL, NULL, 0), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_future_run(f, task_nothing, NULL, 3), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_future_result(NULL, 0, &data, &len), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_future_exception(NULL, 0, &st, NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_future_exception(f, 0, NULL, NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_future_add_done_callback(NULL, cb_count, NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_future_add_done_callback(f, NULL, NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_future_fd(NULL, &fd), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_future_fd(f, NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_futures_wait(NULL, 2, 0, WEFT_ALL_COMPLETED, NULL, NULL), WEFT_NULL_ARGUMENT);
    weft_future *with_null[2] = {f, NULL};
    ASSERT_STATUS(weft_futures_wait(with_null, 2, 0, WEFT_ALL_COMPLETED, NULL, NULL), WEFT_NULL_ARGUMENT);
    ASSERT_CONTAINS(weft_last_error_message(), "fs[1]");
    weft_as_completed *ac;
    ASSERT_STATUS(weft_as_completed_new(NULL, 1, &ac), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_as_completed_new(&f, 1, NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_as_completed_new(with_null, 2, &ac), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_as_completed_next(NULL, 0, &f), WEFT_NULL_ARGUMENT);
    weft_group *g = new_group();
    ASSERT_STATUS(weft_group_new(NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_group_add(NULL, f), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_group_add(g, NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_group_wait(NULL, 0), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_group_cancel(NULL), WEFT_NULL_ARGUMENT);
    /* Nothing above changed the future. */
    ASSERT_EQ(weft_future_state(f), WEFT_FUTURE_PENDING);
    weft_future_free(NULL);
    weft_as_completed_free(NULL);
    weft_group_free(NULL);
    weft_group_free(g);
    weft_future_free(f);
}

TEST(future_handles_of_another_type_are_refused) {
    weft_event *e = new_event();
    weft_future *fake = (weft_future *)e;
    ASSERT_EQ(weft_future_state(fake), -1);
    ASSERT_CONTAINS(weft_last_error_message(), "weft_future");
    ASSERT_STATUS(weft_future_set_result(fake, "x", 1), WEFT_INVALID_ARGUMENT);
    ASSERT_STATUS(weft_future_ref(fake), WEFT_INVALID_ARGUMENT);
    weft_future_free(fake); /* refused, not freed */
    ASSERT_CONTAINS(weft_last_error_message(), "not a live weft_future");
    ASSERT(!weft_event_is_set(e));
    weft_event_free(e);
}

TEST(future_references) {
    fd_guard guard;
    fd_begin(&guard);
    weft_future *f = new_future();
    int fd = -1;
    ASSERT_OK(weft_future_fd(f, &fd));
    ASSERT_OK(weft_future_ref(f));
    ASSERT_OK(weft_future_ref(f));
    weft_future_free(f);
    weft_future_free(f);
    /* One reference left: still fully usable, descriptor still open. */
    ASSERT_NE(fcntl(fd, F_GETFD), -1);
    ASSERT_OK(weft_future_set_result(f, "kept", 4));
    assert_result(f, "kept");
    weft_future_free(f);
    /* The last reference closed the descriptor. */
    ASSERT_EQ(fcntl(fd, F_GETFD), -1);
    ASSERT_EQ(errno, EBADF);
    fd_end(&guard);
}

/* ---- results and failures ---------------------------------------------------------------- */

TEST(future_set_result_and_result) {
    weft_future *f = new_future();
    ASSERT_OK(weft_future_set_result(f, "hello", 5));
    ASSERT_EQ(weft_future_state(f), WEFT_FUTURE_DONE);
    const void *d1, *d2;
    size_t l1, l2;
    ASSERT_OK(weft_future_result(f, 0, &d1, &l1));
    ASSERT_OK(weft_future_result(f, WEFT_FOREVER, &d2, &l2));
    ASSERT_PTR_EQ(d1, d2); /* borrowed from the future, never copied or moved */
    ASSERT_EQ(l1, 5);
    ASSERT_EQ(memcmp(d1, "hello", 5), 0);
    ASSERT_OK(weft_future_result(f, 10 * MS, NULL, NULL));
    weft_status st = 12345;
    const char *msg = NULL;
    ASSERT_OK(weft_future_exception(f, 0, &st, &msg));
    ASSERT_EQ(st, WEFT_OK);
    ASSERT_STR_EQ(msg, "");
    /* Final for good. */
    ASSERT_STATUS(weft_future_set_result(f, "again", 5), WEFT_INVALID_STATE);
    ASSERT_CONTAINS(weft_last_error_message(), "finished");
    ASSERT_STATUS(weft_future_set_failure(f, WEFT_OS_ERROR, "late"), WEFT_INVALID_STATE);
    ASSERT_STATUS(weft_future_set_running(f), WEFT_INVALID_STATE);
    ASSERT_STATUS(weft_future_run(f, task_nothing, NULL, 0), WEFT_INVALID_STATE);
    bool cancelled = true;
    ASSERT_OK(weft_future_cancel(f, &cancelled));
    ASSERT(!cancelled);
    ASSERT_EQ(weft_future_state(f), WEFT_FUTURE_DONE);
    assert_result(f, "hello");
    weft_future_free(f);

    /* An empty result: data NULL, length 0. */
    f = new_future();
    ASSERT_OK(weft_future_set_result(f, NULL, 0));
    assert_result(f, "");
    weft_future_free(f);
}

TEST(future_set_failure) {
    weft_future *f = new_future();
    ASSERT_STATUS(weft_future_set_failure(f, WEFT_OK, "not a failure"), WEFT_INVALID_ARGUMENT);
    ASSERT_CONTAINS(weft_last_error_message(), "WEFT_OK");
    ASSERT_STATUS(weft_future_set_failure(f, WEFT_OS_ERROR, "\xff\xfe"), WEFT_INVALID_ARGUMENT);
    ASSERT_EQ(weft_future_state(f), WEFT_FUTURE_PENDING);
    ASSERT_OK(weft_future_set_failure(f, WEFT_OS_ERROR, "disk on fire"));
    ASSERT_EQ(weft_future_state(f), WEFT_FUTURE_FAILED);
    const void *data = (const void *)1;
    size_t len = 7;
    ASSERT_STATUS(weft_future_result(f, WEFT_FOREVER, &data, &len), WEFT_OS_ERROR);
    ASSERT_STR_EQ(weft_last_error_message(), "disk on fire");
    ASSERT_PTR_EQ(data, (const void *)1); /* out-parameters untouched on failure */
    ASSERT_EQ(len, 7);
    weft_status st = WEFT_OK;
    const char *msg = NULL;
    ASSERT_OK(weft_future_exception(f, 0, &st, &msg));
    ASSERT_EQ(st, WEFT_OS_ERROR);
    ASSERT_STR_EQ(msg, "disk on fire");
    ASSERT_OK(weft_future_exception(f, 0, &st, NULL));
    ASSERT_STATUS(weft_future_set_result(f, "x", 1), WEFT_INVALID_STATE);
    ASSERT_STATUS(weft_future_set_failure(f, WEFT_PANIC, "x"), WEFT_INVALID_STATE);
    weft_future_free(f);

    /* No message: one naming the status. Any non-zero code is accepted. */
    f = new_future();
    ASSERT_OK(weft_future_set_failure(f, WEFT_WORKER_DIED, NULL));
    ASSERT_STATUS(weft_future_result(f, 0, NULL, NULL), WEFT_WORKER_DIED);
    ASSERT_CONTAINS(weft_last_error_message(), "WEFT_WORKER_DIED");
    weft_future_free(f);
    f = new_future();
    ASSERT_OK(weft_future_set_failure(f, -42, "user code"));
    ASSERT_STATUS(weft_future_result(f, 0, NULL, NULL), -42);
    weft_future_free(f);
}

TEST(future_result_timeout_not_early) {
    weft_future *f = new_future();
    const void *data = (const void *)1;
    weft_status st = 99;
    /* Timeout 0 checks once and, as Python's result(timeout=0), gives a timeout. */
    ASSERT_STATUS(weft_future_result(f, 0, &data, NULL), WEFT_TIMEOUT);
    ASSERT_STATUS(weft_future_exception(f, 0, &st, NULL), WEFT_TIMEOUT);
    const uint64_t timeouts[] = {1, 1000, 1 * MS, 30 * MS};
    for (size_t i = 0; i < sizeof timeouts / sizeof timeouts[0]; i++) {
        uint64_t t0 = runner_now_ns();
        ASSERT_STATUS(weft_future_result(f, timeouts[i], &data, NULL), WEFT_TIMEOUT);
        ASSERT_UGE(runner_now_ns() - t0, timeouts[i]);
        t0 = runner_now_ns();
        ASSERT_STATUS(weft_future_exception(f, timeouts[i], &st, NULL), WEFT_TIMEOUT);
        ASSERT_UGE(runner_now_ns() - t0, timeouts[i]);
    }
    ASSERT_PTR_EQ(data, (const void *)1);
    ASSERT_EQ(st, 99);
    ASSERT_EQ(weft_future_state(f), WEFT_FUTURE_PENDING);
    weft_future_free(f);
}

/* ---- completion from other threads ------------------------------------------------------- */

typedef struct {
    weft_future *f;
    unsigned delay_ms;
    int how; /* 0 result "late", 1 failure, 2 cancel */
    atomic_uint tid;
} completer;

static weft_status task_complete(weft_call *call) {
    completer *c = call_ptr(call);
    atomic_store(&c->tid, my_tid());
    runner_sleep_ms(c->delay_ms);
    switch (c->how) {
    case 0: ASSERT_OK(weft_future_set_result(c->f, "late", 4)); break;
    case 1: ASSERT_OK(weft_future_set_failure(c->f, WEFT_BROKEN, "broke")); break;
    default: {
        bool b = false;
        ASSERT_OK(weft_future_cancel(c->f, &b));
        ASSERT(b);
    }
    }
    return WEFT_OK;
}

static weft_thread *start_completer(completer *c) {
    weft_thread *t = NULL;
    ASSERT_OK(start_ptr(task_complete, c, NULL, &t));
    return t;
}

typedef struct {
    weft_future *f;
    uint64_t timeout;
    weft_status got;
    char data[16];
    atomic_uint tid;
} result_waiter;

static weft_status task_result(weft_call *call) {
    result_waiter *w = call_ptr(call);
    const void *d = NULL;
    size_t len = 0;
    atomic_store(&w->tid, my_tid());
    w->got = weft_future_result(w->f, w->timeout, &d, &len);
    if (w->got == WEFT_OK && len < sizeof w->data) memcpy(w->data, d, len);
    return WEFT_OK;
}

TEST(future_waiters_wake_on_completion) {
    for (int how = 0; how < 3; how++) {
        weft_future *f = new_future();
        enum { N = 4 };
        result_waiter w[N];
        weft_thread *t[N];
        for (int i = 0; i < N; i++) {
            memset(&w[i], 0, sizeof w[i]);
            w[i].f = f;
            w[i].timeout = i % 2 ? 30 * SEC : WEFT_FOREVER;
            ASSERT_OK(start_ptr(task_result, &w[i], NULL, &t[i]));
        }
        for (int i = 0; i < N; i++) wait_blocked(&w[i].tid);
        completer c = {.f = f, .how = how};
        weft_thread *ct = start_completer(&c);
        for (int i = 0; i < N; i++) {
            ASSERT_OK(weft_thread_join(t[i], WEFT_FOREVER, NULL));
            weft_thread_free(t[i]);
            if (how == 0) {
                ASSERT_OK(w[i].got);
                ASSERT_STR_EQ(w[i].data, "late");
            } else {
                ASSERT_STATUS(w[i].got, how == 1 ? WEFT_BROKEN : WEFT_CANCELLED);
            }
        }
        ASSERT_OK(weft_thread_join(ct, WEFT_FOREVER, NULL));
        weft_thread_free(ct);
        weft_future_free(f);
    }
}

/* ---- set_running, run, cancel ------------------------------------------------------------ */

TEST(future_set_running_rules) {
    weft_future *f = new_future();
    ASSERT_OK(weft_future_set_running(f));
    ASSERT_EQ(weft_future_state(f), WEFT_FUTURE_RUNNING);
    ASSERT_STATUS(weft_future_set_running(f), WEFT_INVALID_STATE);
    ASSERT_CONTAINS(weft_last_error_message(), "running");
    ASSERT_STATUS(weft_future_run(f, task_nothing, NULL, 0), WEFT_INVALID_STATE);
    ASSERT_OK(weft_future_set_result(f, "r", 1));
    ASSERT_STATUS(weft_future_set_running(f), WEFT_INVALID_STATE);
    weft_future_free(f);
}

static weft_status task_count_run(weft_call *call) {
    atomic_fetch_add((atomic_int *)call_ptr(call), 1);
    return WEFT_OK;
}

TEST(future_cancel_pending) {
    weft_future *f = new_future();
    atomic_int calls = 0;
    ASSERT_OK(weft_future_add_done_callback(f, cb_count, &calls));
    bool cancelled = false;
    ASSERT_OK(weft_future_cancel(f, &cancelled));
    ASSERT(cancelled);
    ASSERT_EQ(atomic_load(&calls), 1); /* callbacks run on cancel, on the cancelling thread */
    ASSERT_EQ(weft_future_state(f), WEFT_FUTURE_CANCELLED);
    ASSERT(!weft_future_cancel_requested(f));
    cancelled = false;
    ASSERT_OK(weft_future_cancel(f, &cancelled)); /* again: still true, as in Python */
    ASSERT(cancelled);
    ASSERT_OK(weft_future_cancel(f, NULL));
    ASSERT_EQ(atomic_load(&calls), 1);
    ASSERT_STATUS(weft_future_result(f, WEFT_FOREVER, NULL, NULL), WEFT_CANCELLED);
    ASSERT_CONTAINS(weft_last_error_message(), "cancelled");
    weft_status st;
    ASSERT_STATUS(weft_future_exception(f, 0, &st, NULL), WEFT_CANCELLED);
    ASSERT_STATUS(weft_future_set_running(f), WEFT_CANCELLED);
    ASSERT_STATUS(weft_future_set_result(f, "x", 1), WEFT_INVALID_STATE);
    ASSERT_STATUS(weft_future_set_failure(f, WEFT_BROKEN, "x"), WEFT_INVALID_STATE);
    atomic_int ran = 0;
    atomic_int *rp = &ran;
    ASSERT_STATUS(weft_future_run(f, task_count_run, &rp, sizeof rp), WEFT_CANCELLED);
    ASSERT_EQ(atomic_load(&ran), 0); /* the task did not run */
    ASSERT_EQ(weft_future_state(f), WEFT_FUTURE_CANCELLED);
    weft_future_free(f);
}

typedef struct {
    weft_future *f;
    weft_event *started;
    atomic_int saw_cancel;
    weft_status run_status;
} cancellable;

/* A task that runs until its call context reports a cancel request. */
static weft_status task_until_cancelled(weft_call *call) {
    cancellable *c = call_ptr(call);
    ASSERT_OK(weft_event_set(c->started));
    while (!weft_call_cancelled(call)) runner_sleep_ms(1);
    atomic_store(&c->saw_cancel, 1);
    ASSERT_OK(weft_call_set_error(call, "stopped on request"));
    return WEFT_CANCELLED;
}

/* A weft thread acting as a pool worker: runs the future's task. */
static weft_status task_runner(weft_call *call) {
    cancellable *c = call_ptr(call);
    c->run_status = weft_future_run(c->f, task_until_cancelled, &c, sizeof c);
    return WEFT_OK;
}

TEST(future_cancel_running_reaches_the_task) {
    cancellable c = {.f = new_future(), .started = new_event()};
    weft_thread *t = NULL;
    ASSERT_OK(start_ptr(task_runner, &c, NULL, &t));
    ASSERT_OK(weft_event_wait(c.started, 10 * SEC));
    ASSERT_EQ(weft_future_state(c.f), WEFT_FUTURE_RUNNING);
    ASSERT(!weft_future_cancel_requested(c.f));
    bool cancelled = true;
    ASSERT_OK(weft_future_cancel(c.f, &cancelled));
    ASSERT(!cancelled); /* a running future cannot be cancelled ... */
    ASSERT(weft_future_cancel_requested(c.f)); /* ... but its task is asked to stop */
    ASSERT_STATUS(weft_future_result(c.f, WEFT_FOREVER, NULL, NULL), WEFT_CANCELLED);
    ASSERT_EQ(weft_future_state(c.f), WEFT_FUTURE_CANCELLED); /* the task honoured it */
    ASSERT_OK(weft_thread_join(t, WEFT_FOREVER, NULL));
    ASSERT_EQ(atomic_load(&c.saw_cancel), 1);
    ASSERT_OK(c.run_status);
    weft_thread_free(t);
    weft_event_free(c.started);
    weft_future_free(c.f);
}

typedef struct {
    weft_future *f;
    weft_event *started;
} manual;

/* A runner that does not use weft_future_run: set_running, poll the request, finish anyway. */
static weft_status task_manual_runner(weft_call *call) {
    manual *m = call_ptr(call);
    ASSERT_OK(weft_future_set_running(m->f));
    ASSERT_OK(weft_event_set(m->started));
    while (!weft_future_cancel_requested(m->f)) runner_sleep_ms(1);
    ASSERT_OK(weft_future_set_result(m->f, "finished anyway", 15));
    return WEFT_OK;
}

TEST(future_cancel_running_manual_runner) {
    manual m = {.f = new_future(), .started = new_event()};
    weft_thread *t = NULL;
    ASSERT_OK(start_ptr(task_manual_runner, &m, NULL, &t));
    ASSERT_OK(weft_event_wait(m.started, 10 * SEC));
    bool cancelled = true;
    ASSERT_OK(weft_future_cancel(m.f, &cancelled));
    ASSERT(!cancelled);
    ASSERT_OK(weft_future_result(m.f, WEFT_FOREVER, NULL, NULL));
    assert_result(m.f, "finished anyway");
    ASSERT_OK(weft_thread_join(t, WEFT_FOREVER, NULL));
    weft_thread_free(t);
    weft_event_free(m.started);
    weft_future_free(m.f);
}

static weft_status task_echo(weft_call *call) {
    const void *d;
    size_t len;
    ASSERT_OK(weft_call_arg(call, &d, &len));
    ASSERT(!weft_call_cancelled(call));
    ASSERT_OK(weft_call_set_result(call, d, len));
    return WEFT_OK;
}

static weft_status task_fail(weft_call *call) {
    ASSERT_OK(weft_call_set_error(call, "bad input"));
    return WEFT_INVALID_ARGUMENT;
}

/* Returns WEFT_CANCELLED although nobody asked: a failure with that status. */
static weft_status task_cancelled_unasked(weft_call *call) {
    (void)call;
    return WEFT_CANCELLED;
}

TEST(future_run_outcomes) {
    weft_future *f = new_future();
    ASSERT_OK(weft_future_run(f, task_echo, "ping", 4));
    assert_result(f, "ping");
    ASSERT_STATUS(weft_future_run(f, task_echo, "ping", 4), WEFT_INVALID_STATE);
    weft_future_free(f);

    f = new_future();
    ASSERT_OK(weft_future_run(f, task_fail, NULL, 0)); /* it ran: the failure is the future's */
    ASSERT_EQ(weft_future_state(f), WEFT_FUTURE_FAILED);
    ASSERT_STATUS(weft_future_result(f, 0, NULL, NULL), WEFT_INVALID_ARGUMENT);
    ASSERT_STR_EQ(weft_last_error_message(), "bad input");
    weft_future_free(f);

    f = new_future();
    ASSERT_OK(weft_future_run(f, task_cancelled_unasked, NULL, 0));
    ASSERT_EQ(weft_future_state(f), WEFT_FUTURE_FAILED);
    weft_status st = WEFT_OK;
    ASSERT_OK(weft_future_exception(f, 0, &st, NULL));
    ASSERT_EQ(st, WEFT_CANCELLED);
    weft_future_free(f);
}

/* ---- done callbacks ---------------------------------------------------------------------- */

typedef struct {
    weft_future *expect;
    atomic_int calls;
    atomic_uint tid;
    atomic_int order[8];
    atomic_int n;
    weft_status seen; /* weft_future_result inside the callback */
} cb_log;

typedef struct {
    cb_log *log;
    int id;
} cb_arg;

static void cb_record(weft_future *f, void *ctx) {
    cb_arg *a = ctx;
    ASSERT_PTR_EQ(f, a->log->expect);
    ASSERT_GE(weft_future_state(f), WEFT_FUTURE_DONE); /* final before callbacks run */
    a->log->seen = weft_future_result(f, 0, NULL, NULL);
    atomic_store(&a->log->tid, my_tid());
    a->log->order[atomic_fetch_add(&a->log->n, 1)] = a->id;
    atomic_fetch_add(&a->log->calls, 1);
}

TEST(future_callback_runs_at_once_when_done) {
    weft_future *f = new_future();
    ASSERT_OK(weft_future_set_result(f, "v", 1));
    cb_log log = {.expect = f};
    cb_arg a = {&log, 7};
    ASSERT_OK(weft_future_add_done_callback(f, cb_record, &a));
    ASSERT_EQ(atomic_load(&log.calls), 1); /* before add_done_callback returned */
    ASSERT_EQ(atomic_load(&log.tid), my_tid());
    ASSERT_OK(log.seen);
    runner_sleep_ms(10);
    ASSERT_EQ(atomic_load(&log.calls), 1);
    weft_future_free(f);
}

TEST(future_callbacks_run_on_the_completing_thread) {
    for (int how = 0; how < 3; how++) {
        weft_future *f = new_future();
        cb_log log = {.expect = f};
        cb_arg a[3] = {{&log, 0}, {&log, 1}, {&log, 2}};
        for (int i = 0; i < 3; i++) ASSERT_OK(weft_future_add_done_callback(f, cb_record, &a[i]));
        runner_sleep_ms(5);
        ASSERT_EQ(atomic_load(&log.calls), 0);
        completer c = {.f = f, .how = how, .delay_ms = 5};
        weft_thread *t = start_completer(&c);
        ASSERT_OK(weft_thread_join(t, WEFT_FOREVER, NULL));
        weft_thread_free(t);
        ASSERT_EQ(atomic_load(&log.calls), 3);
        ASSERT_EQ(atomic_load(&log.tid), atomic_load(&c.tid));
        ASSERT_NE(atomic_load(&log.tid), my_tid());
        for (int i = 0; i < 3; i++) ASSERT_EQ(log.order[i], i);
        ASSERT_STATUS(log.seen, how == 0 ? WEFT_OK : how == 1 ? WEFT_BROKEN : WEFT_CANCELLED);
        weft_future_free(f);
    }
}

static void cb_keep(weft_future *f, void *ctx) {
    ASSERT_OK(weft_future_ref(f));
    *(weft_future **)ctx = f;
    /* Re-entrant: a callback added from a callback runs at once. */
    static atomic_int inner;
    ASSERT_OK(weft_future_add_done_callback(f, cb_count, &inner));
    ASSERT_GE(atomic_load(&inner), 1);
}

TEST(future_callback_may_keep_a_reference) {
    weft_future *f = new_future();
    weft_future *kept = NULL;
    ASSERT_OK(weft_future_add_done_callback(f, cb_keep, &kept));
    ASSERT_OK(weft_future_set_result(f, "k", 1));
    ASSERT_PTR_EQ(kept, f);
    weft_future_free(f);
    assert_result(kept, "k"); /* the callback's reference */
    weft_future_free(kept);
}

/* ---- the descriptor ---------------------------------------------------------------------- */

TEST(future_fd_readable_once_done) {
    fd_guard guard;
    fd_begin(&guard);
    for (int how = 0; how < 3; how++) {
        weft_future *f = new_future();
        int fd = -1, fd2 = -2;
        ASSERT_OK(weft_future_fd(f, &fd));
        ASSERT_OK(weft_future_fd(f, &fd2));
        ASSERT_EQ(fd, fd2);
        ASSERT(!readable(fd, 0));
        ASSERT(!readable(fd, 20));
        completer c = {.f = f, .how = how, .delay_ms = 10};
        weft_thread *t = start_completer(&c);
        ASSERT(readable(fd, 10000));
        ASSERT_GE(weft_future_state(f), WEFT_FUTURE_DONE);
        ASSERT(readable(fd, 0)); /* stays readable */
        ASSERT_OK(weft_thread_join(t, WEFT_FOREVER, NULL));
        weft_thread_free(t);
        weft_future_free(f);
    }
    /* Asked for after completion: readable at once. */
    weft_future *f = new_future();
    ASSERT_OK(weft_future_set_result(f, NULL, 0));
    int fd = -1;
    ASSERT_OK(weft_future_fd(f, &fd));
    ASSERT(readable(fd, 0));
    weft_future_free(f);
    fd_end(&guard); /* every descriptor closed with its future */
}

/* ---- weft_futures_wait ------------------------------------------------------------------- */

TEST(futures_wait_arguments) {
    size_t ndone = 99;
    ASSERT_OK(weft_futures_wait(NULL, 0, 0, WEFT_FIRST_COMPLETED, NULL, &ndone));
    ASSERT_EQ(ndone, 0);
    ASSERT_OK(weft_futures_wait(NULL, 0, WEFT_FOREVER, WEFT_ALL_COMPLETED, NULL, NULL));
    weft_future *f = new_future();
    ASSERT_STATUS(weft_futures_wait(&f, 1, 0, 3, NULL, NULL), WEFT_INVALID_ARGUMENT);
    ASSERT_CONTAINS(weft_last_error_message(), "mode");
    ASSERT_STATUS(weft_futures_wait(&f, 1, 0, -1, NULL, NULL), WEFT_INVALID_ARGUMENT);
    weft_future_free(f);
}

TEST(futures_wait_timeout_not_early) {
    weft_future *fs[3] = {new_future(), new_future(), new_future()};
    ASSERT_OK(weft_future_set_result(fs[0], "x", 1)); /* done, but not enough for ALL */
    const int modes[] = {WEFT_ALL_COMPLETED, WEFT_FIRST_EXCEPTION};
    for (int m = 0; m < 2; m++) {
        bool done[3] = {true, true, true};
        size_t ndone = 77;
        ASSERT_STATUS(weft_futures_wait(fs, 3, 0, modes[m], done, &ndone), WEFT_TIMEOUT);
        uint64_t t0 = runner_now_ns();
        ASSERT_STATUS(weft_futures_wait(fs, 3, 25 * MS, modes[m], done, &ndone), WEFT_TIMEOUT);
        ASSERT_UGE(runner_now_ns() - t0, 25 * MS);
        ASSERT_EQ(ndone, 77); /* nothing written on a timeout */
        ASSERT(done[1] && done[2]);
    }
    weft_future *pending[2] = {fs[1], fs[2]};
    uint64_t t0 = runner_now_ns();
    ASSERT_STATUS(weft_futures_wait(pending, 2, 25 * MS, WEFT_FIRST_COMPLETED, NULL, NULL), WEFT_TIMEOUT);
    ASSERT_UGE(runner_now_ns() - t0, 25 * MS);
    for (int i = 0; i < 3; i++) weft_future_free(fs[i]);
}

TEST(futures_wait_modes) {
    weft_future *fs[4] = {new_future(), new_future(), new_future(), new_future()};
    bool done[4];
    size_t ndone = 0;
    /* FIRST_COMPLETED: released by a completion on another thread. */
    completer c1 = {.f = fs[2], .how = 0, .delay_ms = 10};
    weft_thread *t = start_completer(&c1);
    ASSERT_OK(weft_futures_wait(fs, 4, WEFT_FOREVER, WEFT_FIRST_COMPLETED, done, &ndone));
    ASSERT_EQ(ndone, 1);
    ASSERT(!done[0] && !done[1] && done[2] && !done[3]);
    ASSERT_OK(weft_thread_join(t, WEFT_FOREVER, NULL));
    weft_thread_free(t);
    ASSERT_OK(weft_futures_wait(fs, 4, 0, WEFT_FIRST_COMPLETED, done, &ndone));
    /* FIRST_EXCEPTION: a cancel is not an exception ... */
    ASSERT_OK(weft_future_cancel(fs[0], NULL));
    ASSERT_STATUS(weft_futures_wait(fs, 4, 0, WEFT_FIRST_EXCEPTION, done, &ndone), WEFT_TIMEOUT);
    /* ... a failure is, with a future still pending. */
    completer c2 = {.f = fs[3], .how = 1, .delay_ms = 10};
    t = start_completer(&c2);
    ASSERT_OK(weft_futures_wait(fs, 4, WEFT_FOREVER, WEFT_FIRST_EXCEPTION, done, &ndone));
    ASSERT_EQ(ndone, 3);
    ASSERT(done[0] && !done[1] && done[2] && done[3]);
    ASSERT_OK(weft_thread_join(t, WEFT_FOREVER, NULL));
    weft_thread_free(t);
    /* ALL_COMPLETED: only once the last one finishes; a future may be listed twice. */
    ASSERT_STATUS(weft_futures_wait(fs, 4, 0, WEFT_ALL_COMPLETED, done, &ndone), WEFT_TIMEOUT);
    completer c3 = {.f = fs[1], .how = 0, .delay_ms = 10};
    t = start_completer(&c3);
    weft_future *twice[5] = {fs[0], fs[1], fs[2], fs[3], fs[1]};
    bool done5[5];
    ASSERT_OK(weft_futures_wait(twice, 5, WEFT_FOREVER, WEFT_ALL_COMPLETED, done5, &ndone));
    ASSERT_EQ(ndone, 5);
    for (int i = 0; i < 5; i++) ASSERT(done5[i]);
    ASSERT_OK(weft_thread_join(t, WEFT_FOREVER, NULL));
    weft_thread_free(t);
    /* With everything finished every mode returns at once. */
    ASSERT_OK(weft_futures_wait(fs, 4, 0, WEFT_FIRST_EXCEPTION, NULL, NULL));
    ASSERT_OK(weft_futures_wait(fs, 4, 0, WEFT_ALL_COMPLETED, NULL, NULL));
    for (int i = 0; i < 4; i++) weft_future_free(fs[i]);
}

/* ---- weft_as_completed ------------------------------------------------------------------- */

TEST(as_completed_order_timeout_and_end) {
    weft_future *fs[4] = {new_future(), new_future(), new_future(), new_future()};
    ASSERT_OK(weft_future_set_result(fs[3], "3", 1));
    ASSERT_OK(weft_future_set_failure(fs[1], WEFT_BROKEN, "1"));
    weft_future *given[5] = {fs[0], fs[1], fs[2], fs[3], fs[1]}; /* fs[1] twice: yielded once */
    weft_as_completed *ac = NULL;
    ASSERT_OK(weft_as_completed_new(given, 5, &ac));
    weft_future *got = NULL;
    /* Already finished first, in the order given. */
    ASSERT_OK(weft_as_completed_next(ac, 0, &got));
    ASSERT_PTR_EQ(got, fs[1]);
    weft_future_free(got);
    ASSERT_OK(weft_as_completed_next(ac, WEFT_FOREVER, &got));
    ASSERT_PTR_EQ(got, fs[3]);
    weft_future_free(got);
    got = NULL;
    ASSERT_STATUS(weft_as_completed_next(ac, 0, &got), WEFT_TIMEOUT);
    uint64_t t0 = runner_now_ns();
    ASSERT_STATUS(weft_as_completed_next(ac, 25 * MS, &got), WEFT_TIMEOUT);
    ASSERT_UGE(runner_now_ns() - t0, 25 * MS);
    ASSERT_NULL(got);
    /* Then in completion order. */
    completer c2 = {.f = fs[2], .how = 2, .delay_ms = 5};
    weft_thread *t = start_completer(&c2);
    ASSERT_OK(weft_as_completed_next(ac, WEFT_FOREVER, &got));
    ASSERT_PTR_EQ(got, fs[2]);
    ASSERT_EQ(weft_future_state(got), WEFT_FUTURE_CANCELLED);
    weft_future_free(got);
    ASSERT_OK(weft_thread_join(t, WEFT_FOREVER, NULL));
    weft_thread_free(t);
    completer c0 = {.f = fs[0], .how = 0, .delay_ms = 5};
    t = start_completer(&c0);
    ASSERT_OK(weft_as_completed_next(ac, 10 * SEC, &got));
    ASSERT_PTR_EQ(got, fs[0]);
    weft_future_free(got);
    ASSERT_OK(weft_thread_join(t, WEFT_FOREVER, NULL));
    weft_thread_free(t);
    /* Exhausted. */
    ASSERT_STATUS(weft_as_completed_next(ac, WEFT_FOREVER, &got), WEFT_CLOSED);
    ASSERT_STATUS(weft_as_completed_next(ac, 0, &got), WEFT_CLOSED);
    weft_as_completed_free(ac);
    for (int i = 0; i < 4; i++) weft_future_free(fs[i]);

    /* An empty set is exhausted at once. */
    ASSERT_OK(weft_as_completed_new(NULL, 0, &ac));
    ASSERT_STATUS(weft_as_completed_next(ac, WEFT_FOREVER, &got), WEFT_CLOSED);
    weft_as_completed_free(ac);
}

/* The iterator holds its own references: the caller may free its handles at once. */
TEST(as_completed_keeps_its_futures) {
    weft_future *f = new_future();
    weft_as_completed *ac = NULL;
    ASSERT_OK(weft_as_completed_new(&f, 1, &ac));
    ASSERT_OK(weft_future_ref(f));
    weft_future *mine = f;
    weft_future_free(f);
    ASSERT_OK(weft_future_set_result(mine, "m", 1));
    weft_future_free(mine);
    weft_future *got = NULL;
    ASSERT_OK(weft_as_completed_next(ac, 0, &got));
    assert_result(got, "m");
    weft_future_free(got);
    weft_as_completed_free(ac);
}

/* ---- groups ------------------------------------------------------------------------------ */

TEST(group_first_failure_cancels_the_rest) {
    weft_group *g = new_group();
    weft_future *pending = new_future(), *ok = new_future(), *failing = new_future();
    cancellable run = {.f = new_future(), .started = new_event()};
    weft_thread *runner = NULL;
    ASSERT_OK(start_ptr(task_runner, &run, NULL, &runner));
    ASSERT_OK(weft_event_wait(run.started, 10 * SEC));
    ASSERT_OK(weft_group_add(g, pending));
    ASSERT_OK(weft_group_add(g, ok));
    ASSERT_OK(weft_group_add(g, run.f));
    ASSERT_OK(weft_group_add(g, failing));
    ASSERT_OK(weft_group_add(g, pending)); /* again: nothing */
    ASSERT_OK(weft_future_set_result(ok, "fine", 4));
    ASSERT_STATUS(weft_group_wait(g, 0), WEFT_TIMEOUT);
    uint64_t t0 = runner_now_ns();
    ASSERT_STATUS(weft_group_wait(g, 20 * MS), WEFT_TIMEOUT);
    ASSERT_UGE(runner_now_ns() - t0, 20 * MS);
    /* The first failure, from another thread. */
    completer c = {.f = failing, .how = 1, .delay_ms = 5};
    weft_thread *t = start_completer(&c);
    ASSERT_STATUS(weft_group_wait(g, WEFT_FOREVER), WEFT_BROKEN);
    ASSERT_STR_EQ(weft_last_error_message(), "broke");
    ASSERT_EQ(weft_future_state(pending), WEFT_FUTURE_CANCELLED);
    ASSERT_EQ(weft_future_state(run.f), WEFT_FUTURE_CANCELLED); /* its task saw the request */
    ASSERT_EQ(atomic_load(&run.saw_cancel), 1);
    ASSERT_EQ(weft_future_state(ok), WEFT_FUTURE_DONE); /* finished before: untouched */
    /* Members added later are cancelled at once; a later failure is not the first. */
    weft_future *late = new_future();
    ASSERT_OK(weft_group_add(g, late));
    ASSERT_EQ(weft_future_state(late), WEFT_FUTURE_CANCELLED);
    weft_future *second = new_future();
    ASSERT_OK(weft_future_set_failure(second, WEFT_PANIC, "second"));
    ASSERT_OK(weft_group_add(g, second));
    ASSERT_STATUS(weft_group_wait(g, 0), WEFT_BROKEN);
    ASSERT_STR_EQ(weft_last_error_message(), "broke");
    ASSERT_OK(weft_thread_join(t, WEFT_FOREVER, NULL));
    ASSERT_OK(weft_thread_join(runner, WEFT_FOREVER, NULL));
    weft_thread_free(t);
    weft_thread_free(runner);
    weft_group_free(g);
    weft_future *all[] = {pending, ok, failing, run.f, late, second};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) weft_future_free(all[i]);
    weft_event_free(run.started);
}

TEST(group_success_and_cancel) {
    weft_group *g = new_group();
    ASSERT_OK(weft_group_wait(g, 0)); /* empty */
    weft_future *fs[3] = {new_future(), new_future(), new_future()};
    for (int i = 0; i < 3; i++) ASSERT_OK(weft_group_add(g, fs[i]));
    completer c[3];
    weft_thread *t[3];
    memset(c, 0, sizeof c);
    for (int i = 0; i < 3; i++) {
        c[i].f = fs[i];
        c[i].delay_ms = 5 * (unsigned)i;
        t[i] = start_completer(&c[i]);
    }
    ASSERT_OK(weft_group_wait(g, WEFT_FOREVER));
    for (int i = 0; i < 3; i++) {
        ASSERT_EQ(weft_future_state(fs[i]), WEFT_FUTURE_DONE);
        ASSERT_OK(weft_thread_join(t[i], WEFT_FOREVER, NULL));
        weft_thread_free(t[i]);
        weft_future_free(fs[i]);
    }
    weft_group_free(g);

    /* Cancelled: members now and later, and wait says so. A group freed early cancels
     * nothing. */
    g = new_group();
    weft_future *a = new_future(), *b = new_future(), *c2 = new_future();
    ASSERT_OK(weft_group_add(g, a));
    ASSERT_OK(weft_group_cancel(g));
    ASSERT_EQ(weft_future_state(a), WEFT_FUTURE_CANCELLED);
    ASSERT_OK(weft_group_add(g, b));
    ASSERT_EQ(weft_future_state(b), WEFT_FUTURE_CANCELLED);
    ASSERT_STATUS(weft_group_wait(g, WEFT_FOREVER), WEFT_CANCELLED);
    weft_group_free(g);
    g = new_group();
    ASSERT_OK(weft_group_add(g, c2));
    weft_group_free(g);
    ASSERT_EQ(weft_future_state(c2), WEFT_FUTURE_PENDING);
    ASSERT_OK(weft_future_set_failure(c2, WEFT_BROKEN, "after the group"));
    weft_future_free(a);
    weft_future_free(b);
    weft_future_free(c2);
}

/* ---- stress ------------------------------------------------------------------------------ */

enum { S_FUTURES = 3000, S_THREADS = 4 };

typedef struct {
    weft_future *fs[S_FUTURES];
    atomic_int calls[S_FUTURES];
    atomic_int ran[S_FUTURES];
    atomic_int next_runner;
    atomic_long ok_results, cancelled_results, waits_done;
    atomic_int failures;
} stress;

typedef struct {
    stress *s;
    int index;
} stress_arg;

static void cb_stress(weft_future *f, void *ctx) {
    stress_arg *a = ctx;
    if (f != a->s->fs[a->index]) atomic_fetch_add(&a->s->failures, 1);
    atomic_fetch_add(&a->s->calls[a->index], 1);
}

static weft_status task_mark(weft_call *call) {
    stress_arg *a = call_ptr(call);
    atomic_fetch_add(&a->s->ran[a->index], 1);
    int v = a->index;
    return weft_call_set_result(call, &v, sizeof v);
}

/* Runners take futures in turn and run them (racing the cancellers). */
static weft_status task_stress_runner(weft_call *call) {
    stress *s = call_ptr(call);
    static stress_arg args[S_FUTURES];
    for (;;) {
        int i = atomic_fetch_add(&s->next_runner, 1);
        if (i >= S_FUTURES) return WEFT_OK;
        args[i].s = s;
        args[i].index = i;
        stress_arg *a = &args[i];
        weft_status r = weft_future_run(s->fs[i], task_mark, &a, sizeof a);
        if (r != WEFT_OK && r != WEFT_CANCELLED) atomic_fetch_add(&s->failures, 1);
    }
}

static weft_status task_stress_canceller(weft_call *call) {
    stress *s = call_ptr(call);
    /* From the end, while the runners go from the start: they meet and race. */
    for (int i = (S_FUTURES - 1) / 3 * 3; i >= 0; i -= 3)
        if (weft_future_cancel(s->fs[i], NULL) != WEFT_OK) atomic_fetch_add(&s->failures, 1);
    return WEFT_OK;
}

static weft_status task_stress_waiter(weft_call *call) {
    stress *s = call_ptr(call);
    for (int i = 0; i < S_FUTURES; i++) {
        const void *d = NULL;
        size_t len = 0;
        weft_status r = weft_future_result(s->fs[i], WEFT_FOREVER, &d, &len);
        if (r == WEFT_OK) {
            int v;
            memcpy(&v, d, sizeof v);
            if (len != sizeof v || v != i) atomic_fetch_add(&s->failures, 1);
            atomic_fetch_add(&s->ok_results, 1);
        } else if (r == WEFT_CANCELLED) {
            atomic_fetch_add(&s->cancelled_results, 1);
        } else {
            atomic_fetch_add(&s->failures, 1);
        }
    }
    atomic_fetch_add(&s->waits_done, 1);
    return WEFT_OK;
}

/* Runners, cancellers, waiters and callback adders on thousands of futures at once: every
 * callback runs exactly once, a task runs exactly when its future ends done, every waiter
 * sees the final state. */
TEST_TIMEOUT(future_stress_concurrent, 120000) {
    static stress s;
    static stress_arg args[S_FUTURES];
    for (int i = 0; i < S_FUTURES; i++) s.fs[i] = new_future();
    weft_thread *t[2 * S_THREADS + 1];
    int nt = 0;
    for (int i = 0; i < S_THREADS; i++) ASSERT_OK(start_ptr(task_stress_waiter, &s, NULL, &t[nt++]));
    for (int i = 0; i < S_THREADS; i++) ASSERT_OK(start_ptr(task_stress_runner, &s, NULL, &t[nt++]));
    ASSERT_OK(start_ptr(task_stress_canceller, &s, NULL, &t[nt++]));
    /* Callbacks added while all that runs. */
    for (int i = 0; i < S_FUTURES; i++) {
        args[i].s = &s;
        args[i].index = i;
        ASSERT_OK(weft_future_add_done_callback(s.fs[i], cb_stress, &args[i]));
    }
    ASSERT_OK(weft_futures_wait(s.fs, S_FUTURES, WEFT_FOREVER, WEFT_ALL_COMPLETED, NULL, NULL));
    for (int i = 0; i < nt; i++) {
        ASSERT_OK(weft_thread_join(t[i], WEFT_FOREVER, NULL));
        weft_thread_free(t[i]);
    }
    ASSERT_EQ(atomic_load(&s.failures), 0);
    ASSERT_EQ(atomic_load(&s.waits_done), S_THREADS);
    long done = 0, cancelled = 0;
    for (int i = 0; i < S_FUTURES; i++) {
        ASSERT_EQ(atomic_load(&s.calls[i]), 1);
        int st = weft_future_state(s.fs[i]);
        ASSERT(st == WEFT_FUTURE_DONE || st == WEFT_FUTURE_CANCELLED);
        ASSERT_EQ(atomic_load(&s.ran[i]), st == WEFT_FUTURE_DONE ? 1 : 0);
        if (st == WEFT_FUTURE_DONE) done++;
        else cancelled++;
        if (i % 3 != 0) ASSERT_EQ(st, WEFT_FUTURE_DONE); /* never cancelled */
    }
    ASSERT_EQ(done + cancelled, S_FUTURES);
    ASSERT_EQ(atomic_load(&s.ok_results), done * S_THREADS);
    ASSERT_EQ(atomic_load(&s.cancelled_results), cancelled * S_THREADS);
    for (int i = 0; i < S_FUTURES; i++) weft_future_free(s.fs[i]);
}

typedef struct {
    weft_future **fs;
    int n;
    atomic_int *seen;
    atomic_int failures;
} ac_consumer;

/* The `n` pointers a task was started with (as weft_thread_start copied them). */
static void call_ptrs(weft_call *call, void **p, size_t n) {
    const void *d = NULL;
    size_t len = 0;
    ASSERT_OK(weft_call_arg(call, &d, &len));
    ASSERT_EQ(len, n * sizeof *p);
    memcpy(p, d, len);
}

static weft_status task_ac_consume(weft_call *call) {
    void *p[2];
    call_ptrs(call, p, 2);
    weft_as_completed *ac = p[0];
    ac_consumer *c = p[1];
    for (;;) {
        weft_future *f = NULL;
        weft_status r = weft_as_completed_next(ac, WEFT_FOREVER, &f);
        if (r == WEFT_CLOSED) return WEFT_OK;
        if (r != WEFT_OK) {
            atomic_fetch_add(&c->failures, 1);
            return WEFT_OK;
        }
        int found = 0;
        for (int i = 0; i < c->n; i++)
            if (c->fs[i] == f) {
                atomic_fetch_add(&c->seen[i], 1);
                found = 1;
            }
        if (!found) atomic_fetch_add(&c->failures, 1);
        weft_future_free(f);
    }
}

static weft_status task_complete_range(weft_call *call) {
    void *p[3];
    call_ptrs(call, p, 3);
    weft_future **fs = p[0];
    intptr_t from = (intptr_t)p[1], to = (intptr_t)p[2];
    for (intptr_t i = from; i < to; i++) ASSERT_OK(weft_future_set_result(fs[i], NULL, 0));
    return WEFT_OK;
}

/* Three consumers share one as_completed while two threads complete the futures: each future
 * is yielded exactly once, then every consumer sees WEFT_CLOSED. */
TEST_TIMEOUT(as_completed_stress_consumers, 120000) {
    enum { N = 1000 };
    static weft_future *fs[N];
    static atomic_int seen[N];
    for (int i = 0; i < N; i++) fs[i] = new_future();
    weft_as_completed *ac = NULL;
    ASSERT_OK(weft_as_completed_new(fs, N, &ac));
    ac_consumer c = {.fs = fs, .n = N, .seen = seen};
    void *cp[2] = {ac, &c};
    weft_thread *t[5];
    for (int i = 0; i < 3; i++) ASSERT_OK(weft_thread_start(task_ac_consume, cp, sizeof cp, NULL, &t[i]));
    void *r1[3] = {fs, (void *)(intptr_t)0, (void *)(intptr_t)(N / 2)};
    void *r2[3] = {fs, (void *)(intptr_t)(N / 2), (void *)(intptr_t)N};
    ASSERT_OK(weft_thread_start(task_complete_range, r1, sizeof r1, NULL, &t[3]));
    ASSERT_OK(weft_thread_start(task_complete_range, r2, sizeof r2, NULL, &t[4]));
    for (int i = 0; i < 5; i++) {
        ASSERT_OK(weft_thread_join(t[i], WEFT_FOREVER, NULL));
        weft_thread_free(t[i]);
    }
    ASSERT_EQ(atomic_load(&c.failures), 0);
    for (int i = 0; i < N; i++) ASSERT_EQ(atomic_load(&seen[i]), 1);
    weft_as_completed_free(ac);
    for (int i = 0; i < N; i++) weft_future_free(fs[i]);
}
