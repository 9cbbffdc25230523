/* Conformance tests for weft_shutdown and the join of non-daemon threads at process exit. */
#define _GNU_SOURCE
#include "runner.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

/* Sleeps `ms`, then sets `*flag`. */
typedef struct {
    unsigned ms;
    atomic_int *flag;
} sleeper;

static weft_status task_sleep_then_flag(weft_call *call) {
    sleeper *s = call_ptr(call);
    runner_sleep_ms(s->ms);
    atomic_store(s->flag, 1);
    return WEFT_OK;
}

static weft_thread *start_waiter(weft_event *e, bool daemon) {
    weft_thread_options o = {0};
    o.daemon = daemon;
    weft_thread *t = NULL;
    ASSERT_OK(start_ptr(task_wait_event, e, &o, &t));
    return t;
}

TEST_TIMEOUT(shutdown_joins_non_daemon_threads, 5000) {
    enum { N = 4 };
    atomic_int flags[N];
    sleeper s[N];
    for (int i = 0; i < N; i++) {
        atomic_store(&flags[i], 0);
        s[i] = (sleeper){.ms = 30 + 10 * (unsigned)i, .flag = &flags[i]};
        weft_thread *t = NULL;
        ASSERT_OK(start_ptr(task_sleep_then_flag, &s[i], NULL, &t));
        weft_thread_free(t); /* nobody joins them but shutdown */
    }
    ASSERT_OK(weft_shutdown(WEFT_FOREVER));
    for (int i = 0; i < N; i++) ASSERT_EQ(atomic_load(&flags[i]), 1);
    ASSERT_EQ(weft_thread_active_count(), 1);
}

TEST_TIMEOUT(shutdown_does_not_wait_for_daemon_threads, 5000) {
    weft_event *never = NULL;
    ASSERT_OK(weft_event_new(&never));
    weft_thread *d = start_waiter(never, true);
    atomic_int flag = 0;
    sleeper s = {.ms = 20, .flag = &flag};
    weft_thread *t = NULL;
    ASSERT_OK(start_ptr(task_sleep_then_flag, &s, NULL, &t));
    /* The daemon never ends, so a shutdown that waited for it would time out. */
    ASSERT_OK(weft_shutdown(2 * SEC));
    ASSERT_EQ(atomic_load(&flag), 1);
    ASSERT(!weft_thread_is_alive(t));
    ASSERT(weft_thread_is_alive(d));
    weft_thread_free(t);
    weft_thread_free(d);
    /* `never` stays allocated: the daemon still waits on it when the test process ends. */
}

TEST_TIMEOUT(shutdown_timeout, 5000) {
    weft_event *go = NULL;
    ASSERT_OK(weft_event_new(&go));
    weft_thread *t = start_waiter(go, false);
    ASSERT_STATUS(weft_shutdown(0), WEFT_WOULD_BLOCK);
    uint64_t t0 = runner_now_ns();
    ASSERT_STATUS(weft_shutdown(60 * MS), WEFT_TIMEOUT);
    ASSERT_UGE(runner_now_ns() - t0, 60 * MS);
    ASSERT(weft_thread_is_alive(t));
    ASSERT_OK(weft_event_set(go));
    ASSERT_OK(weft_shutdown(WEFT_FOREVER));
    ASSERT(!weft_thread_is_alive(t));
    ASSERT_OK(weft_thread_join(t, 0, NULL));
    weft_thread_free(t);
    weft_event_free(go);
}

TEST_TIMEOUT(shutdown_with_nothing_to_join, 5000) {
    ASSERT_OK(weft_shutdown(0));
    ASSERT_OK(weft_shutdown(WEFT_FOREVER));
}

TEST_TIMEOUT(shutdown_then_start_is_closed, 5000) {
    weft_thread *t = NULL;
    ASSERT_OK(weft_thread_start(task_nothing, NULL, 0, NULL, &t));
    ASSERT_OK(weft_thread_join(t, WEFT_FOREVER, NULL));
    weft_thread_free(t);
    ASSERT_OK(weft_shutdown(WEFT_FOREVER));
    weft_thread *sentinel = (weft_thread *)(uintptr_t)0x1234;
    t = sentinel;
    ASSERT_STATUS(weft_thread_start(task_nothing, NULL, 0, NULL, &t), WEFT_CLOSED);
    ASSERT_PTR_EQ(t, sentinel);
    ASSERT(strlen(weft_last_error_message()) > 0);
    weft_thread_options o = {0};
    o.daemon = true;
    ASSERT_STATUS(weft_thread_start(task_nothing, NULL, 0, &o, &t), WEFT_CLOSED);
    ASSERT_EQ(weft_thread_active_count(), 1);
}

TEST_TIMEOUT(shutdown_after_timeout_still_closed, 5000) {
    weft_event *go = NULL;
    ASSERT_OK(weft_event_new(&go));
    weft_thread *t = start_waiter(go, false);
    ASSERT_STATUS(weft_shutdown(10 * MS), WEFT_TIMEOUT);
    weft_thread *u = NULL;
    ASSERT_STATUS(weft_thread_start(task_nothing, NULL, 0, NULL, &u), WEFT_CLOSED);
    ASSERT_OK(weft_event_set(go));
    ASSERT_OK(weft_thread_join(t, WEFT_FOREVER, NULL));
    weft_thread_free(t);
    weft_event_free(go);
}

/* A weft thread may call weft_shutdown: it joins the others, not itself; when cancelled it
 * gives up with WEFT_CANCELLED. */
typedef struct {
    weft_event *ready;
    uint64_t timeout;
    weft_status got;
} shutter;

static weft_status task_shutdown(weft_call *call) {
    shutter *s = call_ptr(call);
    ASSERT_OK(weft_event_set(s->ready));
    s->got = weft_shutdown(s->timeout);
    return WEFT_OK;
}

TEST_TIMEOUT(shutdown_from_weft_thread_skips_caller, 5000) {
    atomic_int flag = 0;
    sleeper sl = {.ms = 30, .flag = &flag};
    weft_thread *other = NULL;
    ASSERT_OK(start_ptr(task_sleep_then_flag, &sl, NULL, &other));
    shutter s = {.timeout = 3 * SEC, .got = -1};
    ASSERT_OK(weft_event_new(&s.ready));
    weft_thread *t = NULL;
    ASSERT_OK(start_ptr(task_shutdown, &s, NULL, &t));
    ASSERT_OK(weft_thread_join(t, WEFT_FOREVER, NULL));
    ASSERT_STATUS(s.got, WEFT_OK);
    ASSERT_EQ(atomic_load(&flag), 1);
    ASSERT_OK(weft_thread_join(other, WEFT_FOREVER, NULL));
    weft_thread_free(other);
    weft_thread_free(t);
    weft_event_free(s.ready);
}

TEST_TIMEOUT(shutdown_cancelled, 5000) {
    weft_event *go = NULL;
    ASSERT_OK(weft_event_new(&go));
    weft_thread *blocked = start_waiter(go, false);
    shutter s = {.timeout = WEFT_FOREVER, .got = -1};
    ASSERT_OK(weft_event_new(&s.ready));
    weft_thread *t = NULL;
    ASSERT_OK(start_ptr(task_shutdown, &s, NULL, &t));
    ASSERT_OK(weft_event_wait(s.ready, 5 * SEC));
    runner_sleep_ms(20);
    ASSERT_OK(weft_thread_cancel(t));
    ASSERT_OK(weft_thread_join(t, 3 * SEC, NULL));
    ASSERT_STATUS(s.got, WEFT_CANCELLED);
    ASSERT(weft_thread_is_alive(blocked));
    ASSERT_OK(weft_event_set(go));
    ASSERT_OK(weft_thread_join(blocked, WEFT_FOREVER, NULL));
    weft_thread_free(blocked);
    weft_thread_free(t);
    weft_event_free(s.ready);
    weft_event_free(go);
}

/* ---- at process exit ---------------------------------------------------------------------- */

typedef struct {
    int fd;
    unsigned ms;
    bool daemon;
    const char *text;
} writer;

static weft_status task_write_later(weft_call *call) {
    const void *data = NULL;
    size_t len = 0;
    ASSERT_OK(weft_call_arg(call, &data, &len));
    writer w;
    memcpy(&w, data, sizeof w);
    runner_sleep_ms(w.ms);
    size_t n = strlen(w.text);
    if (write(w.fd, w.text, n) != (ssize_t)n) return WEFT_OS_ERROR;
    return WEFT_OK;
}

/* Forks a child that runs `child(fd, ctx)`, which must not return, with `fd` the write end of
 * a pipe; returns everything written to the pipe and the child's wait status. */
static void run_child(void (*child)(int fd, const void *ctx), const void *ctx, char *out, size_t cap,
                      int *wstatus) {
    int p[2];
    ASSERT_EQ(pipe(p), 0);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        close(p[0]);
        child(p[1], ctx);
        _exit(127); /* not reached */
    }
    close(p[1]);
    size_t used = 0;
    for (;;) {
        ssize_t r = read(p[0], out + used, cap - 1 - used);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) break;
        used += (size_t)r;
        if (used == cap - 1) break;
    }
    out[used] = '\0';
    close(p[0]);
    ASSERT_EQ(waitpid(pid, wstatus, 0), pid);
}

typedef struct {
    const writer *ws;
    int n;
} writers;

/* In the child: start the writers, then leave through exit(0) as a program returning from
 * main would. */
static void child_exits_with_threads(int fd, const void *ctx) {
    const writers *all = ctx;
    for (int i = 0; i < all->n; i++) {
        writer w = all->ws[i];
        w.fd = fd;
        weft_thread_options o = {0};
        o.daemon = w.daemon;
        weft_thread *t = NULL;
        if (weft_thread_start(task_write_later, &w, sizeof w, &o, &t) != WEFT_OK) _exit(20);
        weft_thread_free(t);
    }
    exit(0);
}

/* Forks a child that runs `ws` then exits; returns everything the threads wrote. */
static void run_exit_child(const writer *ws, int n, char *out, size_t cap, int *wstatus) {
    writers all = {ws, n};
    run_child(child_exits_with_threads, &all, out, cap, wstatus);
}

TEST_TIMEOUT(shutdown_at_exit_joins_non_daemon_thread, 5000) {
    writer ws[] = {{.ms = 100, .text = "non-daemon done;"}};
    char out[256];
    int status = 0;
    run_exit_child(ws, 1, out, sizeof out, &status);
    ASSERT_STR_EQ(out, "non-daemon done;");
    ASSERT(WIFEXITED(status));
    ASSERT_EQ(WEXITSTATUS(status), 0);
}

TEST_TIMEOUT(shutdown_at_exit_does_not_wait_for_daemon, 5000) {
    /* The non-daemon thread ends after 50 ms, the process then; the daemon would write after
     * 1 s and never gets to. */
    writer ws[] = {{.ms = 1000, .daemon = true, .text = "daemon wrote;"}, {.ms = 50, .text = "worker wrote;"}};
    char out[256];
    int status = 0;
    run_exit_child(ws, 2, out, sizeof out, &status);
    ASSERT_STR_EQ(out, "worker wrote;");
    ASSERT(WIFEXITED(status));
    ASSERT_EQ(WEXITSTATUS(status), 0);
}

/* exit() called by a weft thread: the other non-daemon threads are joined, the caller is not
 * waited for (it could never finish). */
static weft_status task_exit(weft_call *call) {
    (void)call;
    runner_sleep_ms(10);
    exit(0);
}

/* In the child: a writer, then exit() from a weft thread the main thread joins. */
static void child_exits_from_weft_thread(int fd, const void *ctx) {
    (void)ctx;
    writer w = {.fd = fd, .ms = 100, .text = "joined at exit;"};
    weft_thread *t = NULL;
    if (weft_thread_start(task_write_later, &w, sizeof w, NULL, &t) != WEFT_OK) _exit(20);
    weft_thread_free(t);
    weft_thread *e = NULL;
    if (weft_thread_start(task_exit, NULL, 0, NULL, &e) != WEFT_OK) _exit(21);
    /* The main thread waits for the exiting thread, which never returns. */
    weft_thread_join(e, WEFT_FOREVER, NULL);
    _exit(22);
}

TEST_TIMEOUT(shutdown_at_exit_called_from_weft_thread, 3000) {
    char out[64];
    int status = 0;
    run_child(child_exits_from_weft_thread, NULL, out, sizeof out, &status);
    ASSERT_STR_EQ(out, "joined at exit;");
    ASSERT(WIFEXITED(status));
    ASSERT_EQ(WEXITSTATUS(status), 0);
}
