/* Conformance tests for weft_thread_set_failure_hook (Python's threading.excepthook): which
 * failures are reported, when, how often, with what, and the default printer. */
#define _GNU_SOURCE
#include "runner.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

#include "helpers.h"

/* ---- a recording hook -------------------------------------------------------------------- */

typedef struct {
    pthread_mutex_t mu;
    int calls;
    weft_status status;
    char message[128];
    char name[64];
    uint64_t ident;
    uint32_t tid; /* thread the hook ran on */
    void *ctx;
} record;

static record rec = {.mu = PTHREAD_MUTEX_INITIALIZER};

static void recording_hook(const weft_thread *thread, weft_status status, const char *message, void *ctx) {
    pthread_mutex_lock(&rec.mu);
    rec.calls++;
    rec.status = status;
    snprintf(rec.message, sizeof rec.message, "%s", message ? message : "(null)");
    const char *name = weft_thread_name(thread);
    snprintf(rec.name, sizeof rec.name, "%s", name ? name : "(null)");
    rec.ident = weft_thread_ident(thread);
    rec.tid = my_tid();
    rec.ctx = ctx;
    pthread_mutex_unlock(&rec.mu);
}

static int calls(void) {
    pthread_mutex_lock(&rec.mu);
    int n = rec.calls;
    pthread_mutex_unlock(&rec.mu);
    return n;
}

/* Waits up to 3 s for `n` calls, then a little longer to catch extra ones. */
static void wait_calls(int n) {
    uint64_t deadline = runner_now_ns() + 3 * SEC;
    while (calls() < n) {
        if (runner_now_ns() > deadline) FAIL_AT("hook called %d times, expected %d", calls(), n);
        runner_sleep_ms(1);
    }
    runner_sleep_ms(30);
    ASSERT_EQ(calls(), n);
}

static int ctx_marker;

static void install(void) { ASSERT_OK(weft_thread_set_failure_hook(recording_hook, &ctx_marker)); }

/* ---- tasks ------------------------------------------------------------------------------- */

/* Waits for `go` (passed by pointer), then fails with WEFT_NOT_FOUND, or succeeds when `ok`. */
typedef struct {
    weft_event *go;
    bool ok;
    atomic_uint tid;
} failing;

static weft_status task_fail_later(weft_call *call) {
    const void *data = NULL;
    size_t len = 0;
    ASSERT_OK(weft_call_arg(call, &data, &len));
    failing *f;
    memcpy(&f, data, sizeof f);
    atomic_store(&f->tid, my_tid());
    ASSERT_OK(weft_event_wait(f->go, WEFT_FOREVER));
    if (f->ok) return WEFT_OK;
    weft_call_set_error(call, "the widget broke");
    return WEFT_NOT_FOUND;
}

static weft_thread *start_failing(failing *f, const char *name) {
    ASSERT_OK(weft_event_new(&f->go));
    weft_thread_options o = {0};
    o.name = name;
    weft_thread *t = NULL;
    ASSERT_OK(weft_thread_start(task_fail_later, &f, sizeof f, &o, &t));
    return t;
}

/* ---- tests ------------------------------------------------------------------------------- */

TEST_TIMEOUT(thread_hook_reports_failure_of_freed_thread_once, 5000) {
    install();
    failing f = {0};
    weft_thread *t = start_failing(&f, "failing-worker");
    uint64_t id = weft_thread_ident(t);
    weft_thread_free(t);
    ASSERT_EQ(calls(), 0);
    ASSERT_OK(weft_event_set(f.go));
    wait_calls(1);
    ASSERT_STATUS(rec.status, WEFT_NOT_FOUND);
    ASSERT_STR_EQ(rec.message, "the widget broke");
    ASSERT_STR_EQ(rec.name, "failing-worker");
    ASSERT_UEQ(rec.ident, id);
    ASSERT_PTR_EQ(rec.ctx, &ctx_marker);
    /* Reported on the failing thread itself. */
    ASSERT_UEQ(rec.tid, atomic_load(&f.tid));
    /* Nothing more later, e.g. when the thread is reaped. */
    runner_sleep_ms(50);
    ASSERT_EQ(calls(), 1);
    ASSERT_EQ(weft_thread_active_count(), 1);
    weft_event_free(f.go);
}

TEST_TIMEOUT(thread_hook_not_called_for_joined_failure, 5000) {
    install();
    failing f = {0};
    weft_thread *t = start_failing(&f, "joined");
    ASSERT_OK(weft_event_set(f.go));
    ASSERT_STATUS(weft_thread_join(t, WEFT_FOREVER, NULL), WEFT_TASK_FAILED);
    weft_thread_free(t);
    runner_sleep_ms(50);
    ASSERT_EQ(calls(), 0);
    weft_event_free(f.go);
}

TEST_TIMEOUT(thread_hook_not_called_for_success, 5000) {
    install();
    failing f = {.ok = true};
    weft_thread *t = start_failing(&f, "fine");
    weft_thread_free(t);
    ASSERT_OK(weft_event_set(f.go));
    /* Wait until it has ended (it leaves the thread list). */
    uint64_t deadline = runner_now_ns() + 3 * SEC;
    while (weft_thread_active_count() > 1) {
        ASSERT(runner_now_ns() < deadline);
        runner_sleep_ms(1);
    }
    runner_sleep_ms(30);
    ASSERT_EQ(calls(), 0);

    failing g = {.ok = true};
    t = start_failing(&g, "fine-too");
    ASSERT_OK(weft_event_set(g.go));
    wait_dead(t);
    weft_thread_free(t);
    ASSERT_EQ(calls(), 0);
    weft_event_free(f.go);
    weft_event_free(g.go);
}

TEST_TIMEOUT(thread_hook_reports_at_free_without_join, 5000) {
    install();
    failing f = {0};
    weft_thread *t = start_failing(&f, "freed-later");
    uint64_t id = weft_thread_ident(t);
    ASSERT_OK(weft_event_set(f.go));
    wait_dead(t);
    /* Ended with a handle still held: not reported yet. */
    runner_sleep_ms(30);
    ASSERT_EQ(calls(), 0);
    weft_thread_free(t);
    /* Reported by the free itself, on the freeing thread. */
    ASSERT_EQ(calls(), 1);
    ASSERT_STATUS(rec.status, WEFT_NOT_FOUND);
    ASSERT_STR_EQ(rec.message, "the widget broke");
    ASSERT_STR_EQ(rec.name, "freed-later");
    ASSERT_UEQ(rec.ident, id);
    ASSERT_UEQ(rec.tid, my_tid());
    runner_sleep_ms(30);
    ASSERT_EQ(calls(), 1);
    weft_event_free(f.go);
}

/* Every handle counts: the report waits for the last one. */
TEST_TIMEOUT(thread_hook_waits_for_last_handle, 5000) {
    install();
    failing f = {0};
    weft_thread *t = start_failing(&f, "two-handles");
    weft_thread *all[4] = {0};
    size_t n = 0;
    ASSERT_OK(weft_thread_enumerate(all, 4, &n));
    ASSERT_EQ(n, 2);
    weft_thread *other = all[1];
    ASSERT_UEQ(weft_thread_ident(other), weft_thread_ident(t));
    weft_thread_free(all[0]);
    weft_thread_free(t);
    ASSERT_OK(weft_event_set(f.go));
    wait_dead(other);
    runner_sleep_ms(30);
    ASSERT_EQ(calls(), 0);
    weft_thread_free(other);
    ASSERT_EQ(calls(), 1);
    ASSERT_STR_EQ(rec.name, "two-handles");
    weft_event_free(f.go);
}

/* A join through any handle counts as having seen the failure. */
TEST_TIMEOUT(thread_hook_join_through_other_handle, 5000) {
    install();
    failing f = {0};
    weft_thread *t = start_failing(&f, "joined-elsewhere");
    weft_thread *all[4] = {0};
    size_t n = 0;
    ASSERT_OK(weft_thread_enumerate(all, 4, &n));
    ASSERT_EQ(n, 2);
    weft_thread_free(all[0]);
    ASSERT_OK(weft_event_set(f.go));
    ASSERT_STATUS(weft_thread_join(all[1], WEFT_FOREVER, NULL), WEFT_TASK_FAILED);
    weft_thread_free(all[1]);
    weft_thread_free(t);
    runner_sleep_ms(30);
    ASSERT_EQ(calls(), 0);
    weft_event_free(f.go);
}

/* A cancelled task that nobody joins is a failure too. */
static weft_status task_wait_then_cancelled(weft_call *call) {
    const void *data = NULL;
    size_t len = 0;
    ASSERT_OK(weft_call_arg(call, &data, &len));
    weft_event *e;
    memcpy(&e, data, sizeof e);
    weft_status s = weft_event_wait(e, WEFT_FOREVER);
    if (s == WEFT_CANCELLED) weft_call_set_error(call, "gave up");
    return s;
}

TEST_TIMEOUT(thread_hook_reports_unjoined_cancelled_task, 5000) {
    install();
    weft_event *e = NULL;
    ASSERT_OK(weft_event_new(&e));
    weft_thread_options o = {0};
    o.name = "cancelled-one";
    weft_thread *t = NULL;
    ASSERT_OK(weft_thread_start(task_wait_then_cancelled, &e, sizeof e, &o, &t));
    ASSERT_OK(weft_thread_cancel(t));
    weft_thread_free(t);
    wait_calls(1);
    ASSERT_STATUS(rec.status, WEFT_CANCELLED);
    ASSERT_STR_EQ(rec.message, "gave up");
    ASSERT_STR_EQ(rec.name, "cancelled-one");
    weft_event_free(e);
}

TEST_TIMEOUT(thread_hook_replaced_and_restored, 5000) {
    /* The hook in force when the failure is reported is the one called. */
    install();
    ASSERT_OK(weft_thread_set_failure_hook(NULL, NULL));
    ASSERT_OK(weft_thread_set_failure_hook(recording_hook, NULL));
    failing f = {0};
    weft_thread *t = start_failing(&f, "ctx-null");
    ASSERT_OK(weft_event_set(f.go));
    wait_dead(t);
    weft_thread_free(t);
    ASSERT_EQ(calls(), 1);
    ASSERT_NULL(rec.ctx);
    weft_event_free(f.go);
}

/* With no hook, weft prints "Exception in thread NAME: STATUS: message" to stderr. */
TEST_TIMEOUT(thread_hook_default_prints_to_stderr, 5000) {
    install();
    ASSERT_OK(weft_thread_set_failure_hook(NULL, NULL));
    char path[] = "/tmp/weft-hook-XXXXXX";
    int fd = mkstemp(path);
    ASSERT(fd >= 0);
    unlink(path);
    fflush(stderr);
    int saved = dup(2);
    ASSERT(saved >= 0);
    ASSERT(dup2(fd, 2) == 2);

    failing f = {0};
    weft_thread *t = start_failing(&f, "noisy");
    ASSERT_OK(weft_event_set(f.go));
    wait_dead(t);
    weft_thread_free(t); /* reports now, on this thread */
    /* And a second one that reports from its own thread at its end. */
    failing g = {0};
    t = start_failing(&g, "noisy-2");
    weft_thread_free(t);
    ASSERT_OK(weft_event_set(g.go));
    char buf[1024];
    uint64_t deadline = runner_now_ns() + 3 * SEC;
    for (;;) {
        ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
        buf[n > 0 ? n : 0] = '\0';
        if (strstr(buf, "noisy-2")) break;
        if (runner_now_ns() > deadline) break;
        runner_sleep_ms(2);
    }
    runner_sleep_ms(30);
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    buf[n > 0 ? n : 0] = '\0';
    fflush(stderr);
    ASSERT(dup2(saved, 2) == 2);
    close(saved);
    close(fd);

    ASSERT_CONTAINS(buf, "Exception in thread noisy: WEFT_NOT_FOUND: the widget broke\n");
    ASSERT_CONTAINS(buf, "Exception in thread noisy-2: WEFT_NOT_FOUND: the widget broke\n");
    /* Each exactly once. */
    const char *first = strstr(buf, "thread noisy:");
    ASSERT_NULL(strstr(first + 1, "thread noisy:"));
    const char *second = strstr(buf, "thread noisy-2:");
    ASSERT_NULL(strstr(second + 1, "thread noisy-2:"));
    ASSERT_EQ(calls(), 0);
    weft_event_free(f.go);
    weft_event_free(g.go);
}

/* Failing threads with no hook joined and freed print nothing. */
TEST_TIMEOUT(thread_hook_default_silent_when_joined, 5000) {
    ASSERT_OK(weft_thread_set_failure_hook(NULL, NULL));
    char path[] = "/tmp/weft-hook-XXXXXX";
    int fd = mkstemp(path);
    ASSERT(fd >= 0);
    unlink(path);
    fflush(stderr);
    int saved = dup(2);
    ASSERT(dup2(fd, 2) == 2);
    failing f = {0};
    weft_thread *t = start_failing(&f, "quiet");
    ASSERT_OK(weft_event_set(f.go));
    weft_status st = weft_thread_join(t, WEFT_FOREVER, NULL);
    weft_thread_free(t);
    runner_sleep_ms(30);
    char buf[256];
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    buf[n > 0 ? n : 0] = '\0';
    ASSERT(dup2(saved, 2) == 2);
    close(saved);
    close(fd);
    ASSERT_STATUS(st, WEFT_TASK_FAILED);
    ASSERT_STR_EQ(buf, "");
    weft_event_free(f.go);
}

/* A task that fails at once, possibly before weft_thread_start has returned its handle: the
 * caller holds a handle from the start, joins it, and nothing is reported. */
static weft_status task_fail_now(weft_call *call) {
    weft_call_set_error(call, "failed at once");
    return WEFT_NOT_FOUND;
}

TEST_TIMEOUT(thread_hook_not_called_for_fast_failure_joined, 10000) {
    install();
    for (int i = 0; i < 2000; i++) {
        weft_thread *t = NULL;
        ASSERT_OK(weft_thread_start(task_fail_now, NULL, 0, NULL, &t));
        ASSERT_STATUS(weft_thread_join(t, WEFT_FOREVER, NULL), WEFT_TASK_FAILED);
        weft_thread_free(t);
        if (calls() != 0)
            FAIL_AT("iteration %d: hook reported \"%s\" (%s) of a thread whose handle was held and joined", i,
                    rec.message, rec.name);
    }
}
