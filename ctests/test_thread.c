/* Conformance tests for weft threads: start, join, results and failures, options (name,
 * daemon, stack size), identity (ident, native_id, current, main, dummy threads), enumeration,
 * fork, and stress. Cancellation, thread-locals, the failure hook and shutdown have their own
 * files (test_thread_cancel.c, test_thread_local.c, test_thread_hook.c, test_shutdown.c). */
#define _GNU_SOURCE
#include "runner.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

/* ---- helpers ---------------------------------------------------------------------------- */

/* A task that reports it started, then waits for `go`, then returns "gated". */
typedef struct {
    weft_event *started;
    weft_event *go;
} gate;

static void gate_init(gate *g) {
    ASSERT_OK(weft_event_new(&g->started));
    ASSERT_OK(weft_event_new(&g->go));
}

static void gate_free(gate *g) {
    weft_event_free(g->started);
    weft_event_free(g->go);
}

static weft_status task_gate(weft_call *call) {
    gate *g = call_ptr(call);
    ASSERT_OK(weft_event_set(g->started));
    weft_status s = weft_event_wait(g->go, WEFT_FOREVER);
    if (s != WEFT_OK) {
        weft_call_set_error(call, "gate wait failed");
        return s;
    }
    return weft_call_set_result(call, "gated", 5);
}

static weft_thread *start_gated(gate *g, const weft_thread_options *o) {
    weft_thread *t = NULL;
    ASSERT_OK(start_ptr(task_gate, g, o, &t));
    ASSERT_OK(weft_event_wait(g->started, 5 * SEC));
    return t;
}

/* Joins and checks the gated result. */
static void join_gated(weft_thread *t) {
    weft_bytes *r = NULL;
    ASSERT_OK(weft_thread_join(t, WEFT_FOREVER, &r));
    ASSERT_EQ(weft_bytes_len(r), 5);
    ASSERT(memcmp(weft_bytes_data(r), "gated", 5) == 0);
    weft_bytes_free(r);
}

/* Result = the argument bytes. */
static weft_status task_echo(weft_call *call) {
    const void *data = NULL;
    size_t len = 0;
    weft_status s = weft_call_arg(call, &data, &len);
    if (s != WEFT_OK) return s;
    return weft_call_set_result(call, data, len);
}

/* Fails with WEFT_NOT_FOUND and a message naming its argument. */
static weft_status task_fail(weft_call *call) {
    const void *data = NULL;
    size_t len = 0;
    ASSERT_OK(weft_call_arg(call, &data, &len));
    char msg[128];
    snprintf(msg, sizeof msg, "no such widget: %.*s", (int)len, (const char *)data);
    ASSERT_OK(weft_call_set_error(call, msg));
    return WEFT_NOT_FOUND;
}

/* Fails without setting a message. */
static weft_status task_fail_silently(weft_call *call) {
    (void)call;
    return WEFT_UNSUPPORTED;
}

/* Result = gettid() of the thread running the task. */
static weft_status task_tid(weft_call *call) {
    uint32_t tid = my_tid();
    return weft_call_set_result(call, &tid, sizeof tid);
}

static void read_comm(uint32_t tid, char *buf, size_t n) {
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%u/comm", tid);
    FILE *f = fopen(path, "r");
    ASSERT_NOT_NULL(f);
    ASSERT_NOT_NULL(fgets(buf, (int)n, f));
    fclose(f);
    size_t l = strlen(buf);
    if (l > 0 && buf[l - 1] == '\n') buf[l - 1] = '\0';
}

static uint64_t main_ident(void) {
    weft_thread *m = NULL;
    ASSERT_OK(weft_thread_main(&m));
    uint64_t id = weft_thread_ident(m);
    weft_thread_free(m);
    return id;
}

/* ---- start and join --------------------------------------------------------------------- */

TEST_TIMEOUT(thread_start_null_arguments, 5000) {
    weft_thread *sentinel = (weft_thread *)(uintptr_t)0x1234;
    weft_thread *t = sentinel;
    ASSERT_STATUS(weft_thread_start(NULL, NULL, 0, NULL, &t), WEFT_NULL_ARGUMENT);
    ASSERT_PTR_EQ(t, sentinel);
    ASSERT(strlen(weft_last_error_message()) > 0);
    ASSERT_STATUS(weft_thread_start(task_nothing, NULL, 0, NULL, NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_thread_start(task_nothing, NULL, 5, NULL, &t), WEFT_NULL_ARGUMENT);
    ASSERT_PTR_EQ(t, sentinel);
    /* Nothing was started by the failed calls. */
    ASSERT_EQ(weft_thread_active_count(), 1);

    /* NULL with length 0 is an empty argument. */
    ASSERT_OK(weft_thread_start(task_echo, NULL, 0, NULL, &t));
    weft_bytes *r = NULL;
    ASSERT_OK(weft_thread_join(t, WEFT_FOREVER, &r));
    ASSERT_NOT_NULL(r);
    ASSERT_EQ(weft_bytes_len(r), 0);
    weft_bytes_free(r);
    weft_thread_free(t);

    /* The other calls refuse NULL handles. */
    weft_status st = 0;
    uint32_t tid = 0;
    ASSERT_STATUS(weft_thread_join(NULL, 0, NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_thread_task_status(NULL, &st), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_thread_native_id(NULL, &tid), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_thread_cancel(NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_thread_current(NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_thread_main(NULL), WEFT_NULL_ARGUMENT);
    ASSERT(!weft_thread_is_alive(NULL));
    ASSERT(!weft_thread_is_daemon(NULL));
    ASSERT_UEQ(weft_thread_ident(NULL), 0);
    ASSERT_NULL(weft_thread_name(NULL));
    weft_thread_free(NULL);
}

/* Waits for `go` and only then reads its argument bytes. */
typedef struct {
    weft_event *go;
    char text[32];
} late_arg;

static weft_status task_late_echo(weft_call *call) {
    const void *data = NULL;
    size_t len = 0;
    ASSERT_OK(weft_call_arg(call, &data, &len));
    ASSERT_EQ(len, sizeof(late_arg));
    late_arg a;
    memcpy(&a, data, sizeof a);
    ASSERT_OK(weft_event_wait(a.go, WEFT_FOREVER));
    /* Read the argument again after the caller overwrote its own buffer. */
    memcpy(&a, data, sizeof a);
    return weft_call_set_result(call, a.text, strlen(a.text));
}

TEST_TIMEOUT(thread_arg_copied_before_start_returns, 5000) {
    weft_event *go = NULL;
    ASSERT_OK(weft_event_new(&go));
    late_arg a;
    memset(&a, 0, sizeof a);
    a.go = go;
    strcpy(a.text, "original argument");
    weft_thread *t = NULL;
    ASSERT_OK(weft_thread_start(task_late_echo, &a, sizeof a, NULL, &t));
    memset(a.text, 'X', sizeof a.text - 1);
    a.text[sizeof a.text - 1] = '\0';
    ASSERT_OK(weft_event_set(go));
    weft_bytes *r = NULL;
    ASSERT_OK(weft_thread_join(t, WEFT_FOREVER, &r));
    ASSERT_EQ(weft_bytes_len(r), strlen("original argument"));
    ASSERT(memcmp(weft_bytes_data(r), "original argument", weft_bytes_len(r)) == 0);
    weft_bytes_free(r);
    weft_thread_free(t);
    weft_event_free(go);
}

TEST_TIMEOUT(thread_join_returns_result_bytes, 5000) {
    const unsigned char payload[] = {0, 1, 2, 255, 'w', 'e', 'f', 't', 0};
    weft_thread *t = NULL;
    ASSERT_OK(weft_thread_start(task_echo, payload, sizeof payload, NULL, &t));
    weft_bytes *r = NULL;
    ASSERT_OK(weft_thread_join(t, WEFT_FOREVER, &r));
    ASSERT_NOT_NULL(r);
    ASSERT_EQ(weft_bytes_len(r), sizeof payload);
    ASSERT(memcmp(weft_bytes_data(r), payload, sizeof payload) == 0);
    weft_bytes_free(r);

    /* A second join returns the same bytes in a new buffer; NULL result is allowed. */
    weft_bytes *r2 = NULL;
    ASSERT_OK(weft_thread_join(t, WEFT_FOREVER, &r2));
    ASSERT_EQ(weft_bytes_len(r2), sizeof payload);
    ASSERT(memcmp(weft_bytes_data(r2), payload, sizeof payload) == 0);
    weft_bytes_free(r2);
    ASSERT_OK(weft_thread_join(t, 0, NULL));
    weft_status st = -1;
    ASSERT_OK(weft_thread_task_status(t, &st));
    ASSERT_EQ(st, WEFT_OK);
    weft_thread_free(t);

    /* A task that sets no result gives an empty buffer. */
    ASSERT_OK(weft_thread_start(task_nothing, NULL, 0, NULL, &t));
    r = NULL;
    ASSERT_OK(weft_thread_join(t, WEFT_FOREVER, &r));
    ASSERT_NOT_NULL(r);
    ASSERT_EQ(weft_bytes_len(r), 0);
    weft_bytes_free(r);
    weft_thread_free(t);
}

TEST_TIMEOUT(thread_task_failure_reported_by_join, 5000) {
    weft_thread *t = NULL;
    ASSERT_OK(weft_thread_start(task_fail, "sprocket", 8, NULL, &t));
    weft_bytes *sentinel = (weft_bytes *)(uintptr_t)0x5678;
    weft_bytes *r = sentinel;
    ASSERT_STATUS(weft_thread_join(t, WEFT_FOREVER, &r), WEFT_TASK_FAILED);
    ASSERT_PTR_EQ(r, sentinel);
    ASSERT_CONTAINS(weft_last_error_message(), "no such widget: sprocket");
    ASSERT_CONTAINS(weft_last_error_message(), "WEFT_NOT_FOUND");
    weft_status st = -1;
    ASSERT_OK(weft_thread_task_status(t, &st));
    ASSERT_EQ(st, WEFT_NOT_FOUND);
    /* Joining again reports the same failure. */
    ASSERT_STATUS(weft_thread_join(t, 0, &r), WEFT_TASK_FAILED);
    ASSERT_CONTAINS(weft_last_error_message(), "no such widget: sprocket");
    ASSERT_PTR_EQ(r, sentinel);
    weft_thread_free(t);

    /* Without a message, the failure still names the status. */
    ASSERT_OK(weft_thread_start(task_fail_silently, NULL, 0, NULL, &t));
    ASSERT_STATUS(weft_thread_join(t, WEFT_FOREVER, NULL), WEFT_TASK_FAILED);
    ASSERT_CONTAINS(weft_last_error_message(), "WEFT_UNSUPPORTED");
    ASSERT_OK(weft_thread_task_status(t, &st));
    ASSERT_EQ(st, WEFT_UNSUPPORTED);
    weft_thread_free(t);
}

TEST_TIMEOUT(thread_task_status_while_running, 5000) {
    gate g;
    gate_init(&g);
    weft_thread *t = start_gated(&g, NULL);
    weft_status st = 12345;
    ASSERT_STATUS(weft_thread_task_status(t, &st), WEFT_INVALID_STATE);
    ASSERT_EQ(st, 12345);
    ASSERT_STATUS(weft_thread_task_status(t, NULL), WEFT_NULL_ARGUMENT);
    ASSERT_OK(weft_event_set(g.go));
    join_gated(t);
    ASSERT_OK(weft_thread_task_status(t, &st));
    ASSERT_EQ(st, WEFT_OK);
    weft_thread_free(t);
    gate_free(&g);
}

TEST_TIMEOUT(thread_join_timeout_zero_would_block, 5000) {
    gate g;
    gate_init(&g);
    weft_thread *t = start_gated(&g, NULL);
    weft_bytes *sentinel = (weft_bytes *)(uintptr_t)0x5678;
    weft_bytes *r = sentinel;
    ASSERT_STATUS(weft_thread_join(t, 0, &r), WEFT_WOULD_BLOCK);
    ASSERT_PTR_EQ(r, sentinel);
    ASSERT(weft_thread_is_alive(t));
    ASSERT_OK(weft_event_set(g.go));
    join_gated(t);
    weft_thread_free(t);
    gate_free(&g);
}

TEST_TIMEOUT(thread_join_timeout_not_before_deadline, 5000) {
    gate g;
    gate_init(&g);
    weft_thread *t = start_gated(&g, NULL);
    for (int i = 0; i < 3; i++) {
        uint64_t timeout = (uint64_t)(20 + 15 * i) * MS;
        uint64_t t0 = runner_now_ns();
        ASSERT_STATUS(weft_thread_join(t, timeout, NULL), WEFT_TIMEOUT);
        ASSERT_UGE(runner_now_ns() - t0, timeout);
        ASSERT(weft_thread_is_alive(t));
    }
    ASSERT_OK(weft_event_set(g.go));
    join_gated(t);
    weft_thread_free(t);
    gate_free(&g);
}

/* Several joiners of one thread: weft threads (with and without a timeout) and a plain
 * pthread. */
typedef struct {
    weft_thread *target;
    uint64_t timeout;
    atomic_int *finished;
    weft_status status;
    char result[8];
} joiner;

static weft_status task_joiner(weft_call *call) {
    joiner *j = call_ptr(call);
    weft_bytes *r = NULL;
    j->status = weft_thread_join(j->target, j->timeout, &r);
    if (j->status == WEFT_OK) {
        size_t n = weft_bytes_len(r);
        if (n < sizeof j->result) memcpy(j->result, weft_bytes_data(r), n);
        weft_bytes_free(r);
    }
    atomic_fetch_add(j->finished, 1);
    return WEFT_OK;
}

static void *pthread_joiner(void *p) {
    joiner *j = p;
    weft_bytes *r = NULL;
    j->status = weft_thread_join(j->target, j->timeout, &r);
    if (j->status == WEFT_OK) {
        size_t n = weft_bytes_len(r);
        if (n < sizeof j->result) memcpy(j->result, weft_bytes_data(r), n);
        weft_bytes_free(r);
    }
    atomic_fetch_add(j->finished, 1);
    return NULL;
}

TEST_TIMEOUT(thread_join_by_several_threads, 5000) {
    gate g;
    gate_init(&g);
    weft_thread *target = start_gated(&g, NULL);
    atomic_int finished = 0;
    enum { N = 5 };
    joiner js[N];
    memset(js, 0, sizeof js);
    weft_thread *jt[N] = {0};
    pthread_t pt[2];
    for (int i = 0; i < N; i++) {
        js[i].target = target;
        js[i].timeout = (i % 2) ? 10 * SEC : WEFT_FOREVER;
        js[i].finished = &finished;
        js[i].status = -1;
    }
    for (int i = 0; i < 3; i++) ASSERT_OK(start_ptr(task_joiner, &js[i], NULL, &jt[i]));
    for (int i = 3; i < N; i++) ASSERT_EQ(pthread_create(&pt[i - 3], NULL, pthread_joiner, &js[i]), 0);
    runner_sleep_ms(50);
    ASSERT_EQ(atomic_load(&finished), 0);
    ASSERT_OK(weft_event_set(g.go));
    /* The main thread joins too. */
    join_gated(target);
    for (int i = 0; i < 3; i++) {
        ASSERT_OK(weft_thread_join(jt[i], WEFT_FOREVER, NULL));
        weft_thread_free(jt[i]);
    }
    for (int i = 3; i < N; i++) ASSERT_EQ(pthread_join(pt[i - 3], NULL), 0);
    ASSERT_EQ(atomic_load(&finished), N);
    for (int i = 0; i < N; i++) {
        ASSERT_STATUS(js[i].status, WEFT_OK);
        ASSERT_STR_EQ(js[i].result, "gated");
    }
    weft_thread_free(target);
    gate_free(&g);
}

static weft_status task_join_self(weft_call *call) {
    weft_thread *me = NULL;
    ASSERT_OK(weft_thread_current(&me));
    ASSERT_STATUS(weft_thread_join(me, WEFT_FOREVER, NULL), WEFT_INVALID_STATE);
    ASSERT_STATUS(weft_thread_join(me, 0, NULL), WEFT_INVALID_STATE);
    ASSERT_STATUS(weft_thread_join(me, 50 * MS, NULL), WEFT_INVALID_STATE);
    weft_thread_free(me);
    return weft_call_set_result(call, "ok", 2);
}

TEST_TIMEOUT(thread_join_self_is_invalid_state, 5000) {
    weft_thread *t = NULL;
    ASSERT_OK(weft_thread_start(task_join_self, NULL, 0, NULL, &t));
    weft_bytes *r = NULL;
    ASSERT_OK(weft_thread_join(t, WEFT_FOREVER, &r));
    ASSERT_EQ(weft_bytes_len(r), 2);
    weft_bytes_free(r);
    weft_thread_free(t);
}

TEST_TIMEOUT(thread_join_current_main_is_invalid_state, 5000) {
    weft_thread *me = NULL;
    ASSERT_OK(weft_thread_current(&me));
    ASSERT_STATUS(weft_thread_join(me, 100 * MS, NULL), WEFT_INVALID_STATE);
    ASSERT_STATUS(weft_thread_join(me, 0, NULL), WEFT_INVALID_STATE);
    weft_thread_free(me);
}

/* The main thread joining its own record obtained with weft_thread_main (never having asked
 * for weft_thread_current) is joining the calling thread as well. */
TEST_TIMEOUT(thread_join_main_handle_from_main_is_invalid_state, 5000) {
    weft_thread *m = NULL;
    ASSERT_OK(weft_thread_main(&m));
    ASSERT_STATUS(weft_thread_join(m, 100 * MS, NULL), WEFT_INVALID_STATE);
    ASSERT_STATUS(weft_thread_join(m, 0, NULL), WEFT_INVALID_STATE);
    weft_thread_free(m);
}

TEST_TIMEOUT(thread_join_after_finish, 5000) {
    weft_thread *t = NULL;
    ASSERT_OK(weft_thread_start(task_echo, "done", 4, NULL, &t));
    wait_dead(t);
    weft_bytes *r = NULL;
    ASSERT_OK(weft_thread_join(t, 0, &r));
    ASSERT_EQ(weft_bytes_len(r), 4);
    ASSERT(memcmp(weft_bytes_data(r), "done", 4) == 0);
    weft_bytes_free(r);
    r = NULL;
    ASSERT_OK(weft_thread_join(t, WEFT_FOREVER, &r));
    ASSERT_EQ(weft_bytes_len(r), 4);
    weft_bytes_free(r);
    weft_thread_free(t);
}

TEST_TIMEOUT(thread_free_does_not_stop_thread, 5000) {
    gate g;
    gate_init(&g);
    weft_thread *t = start_gated(&g, NULL);
    uint64_t id = weft_thread_ident(t);
    weft_thread_free(t);
    /* Still running: it is listed, and finishes when told to. */
    size_t before = weft_thread_active_count();
    ASSERT_EQ(before, 2);
    weft_thread *all[4] = {0};
    size_t n = 0;
    ASSERT_OK(weft_thread_enumerate(all, 4, &n));
    ASSERT_EQ(n, 2);
    ASSERT_UEQ(weft_thread_ident(all[1]), id);
    ASSERT_OK(weft_event_set(g.go));
    join_gated(all[1]);
    ASSERT_EQ(weft_thread_active_count(), 1);
    for (size_t i = 0; i < n; i++) weft_thread_free(all[i]);
    gate_free(&g);
}

/* ---- options ---------------------------------------------------------------------------- */

static void check_os_name(const char *name, const char *expect_comm) {
    gate g;
    gate_init(&g);
    weft_thread_options o = {0};
    o.name = name;
    weft_thread *t = start_gated(&g, &o);
    uint32_t tid = 0;
    ASSERT_OK(weft_thread_native_id(t, &tid));
    char comm[64];
    read_comm(tid, comm, sizeof comm);
    ASSERT_STR_EQ(comm, expect_comm);
    ASSERT_STR_EQ(weft_thread_name(t), name);
    ASSERT_OK(weft_event_set(g.go));
    join_gated(t);
    /* The name outlives the thread, for as long as the handle does. */
    ASSERT_STR_EQ(weft_thread_name(t), name);
    weft_thread_free(t);
    gate_free(&g);
}

TEST_TIMEOUT(thread_name_is_os_name, 5000) {
    check_os_name("worker-7", "worker-7");
}

TEST_TIMEOUT(thread_long_name_truncated_to_15_bytes, 5000) {
    check_os_name("a-very-long-thread-name-0123456789", "a-very-long-thr");
    check_os_name("exactly-15-byte", "exactly-15-byte");
    check_os_name("sixteen-bytes-xy", "sixteen-bytes-x");
}

TEST_TIMEOUT(thread_utf8_name_truncated_at_char_boundary, 5000) {
    /* "ab" + six 3-byte characters = 20 bytes; byte 15 falls inside the fifth character, so
     * the OS name keeps "ab" and four characters (14 bytes). */
    check_os_name("ab\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae\xe5\x90\x8d\xe5\x89\x8d",
                  "ab\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae");
    /* Nine 2-byte characters (18 bytes) keep seven (14 bytes). */
    check_os_name("\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9",
                  "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9");
    /* A 4-byte character straddling the limit: 12 ASCII bytes + U+1F600 (16 bytes). */
    check_os_name("abcdefghijkl\xf0\x9f\x98\x80", "abcdefghijkl");
}

TEST_TIMEOUT(thread_name_invalid_utf8_rejected, 5000) {
    weft_thread_options o = {0};
    o.name = "bad\xff\xfename";
    weft_thread *sentinel = (weft_thread *)(uintptr_t)0x1234;
    weft_thread *t = sentinel;
    ASSERT_STATUS(weft_thread_start(task_nothing, NULL, 0, &o, &t), WEFT_INVALID_ARGUMENT);
    ASSERT_PTR_EQ(t, sentinel);
    ASSERT_EQ(weft_thread_active_count(), 1);
}

static long default_number(const char *name) {
    ASSERT_NOT_NULL(name);
    ASSERT(strncmp(name, "Thread-", 7) == 0);
    char *end = NULL;
    long n = strtol(name + 7, &end, 10);
    ASSERT(end != name + 7 && *end == '\0');
    ASSERT_GT(n, 0);
    return n;
}

TEST_TIMEOUT(thread_default_name, 5000) {
    weft_thread *a = NULL, *b = NULL;
    ASSERT_OK(weft_thread_start(task_nothing, NULL, 0, NULL, &a));
    weft_thread_options o = {0}; /* NULL name in options: the default as well */
    ASSERT_OK(weft_thread_start(task_nothing, NULL, 0, &o, &b));
    long na = default_number(weft_thread_name(a));
    long nb = default_number(weft_thread_name(b));
    ASSERT_GT(nb, na);
    ASSERT_OK(weft_thread_join(a, WEFT_FOREVER, NULL));
    ASSERT_OK(weft_thread_join(b, WEFT_FOREVER, NULL));
    weft_thread_free(a);
    weft_thread_free(b);
}

TEST_TIMEOUT(thread_daemon_flag, 5000) {
    weft_thread *a = NULL, *b = NULL;
    ASSERT_OK(weft_thread_start(task_nothing, NULL, 0, NULL, &a));
    weft_thread_options o = {0};
    o.daemon = true;
    ASSERT_OK(weft_thread_start(task_nothing, NULL, 0, &o, &b));
    ASSERT(!weft_thread_is_daemon(a));
    ASSERT(weft_thread_is_daemon(b));
    ASSERT_OK(weft_thread_join(a, WEFT_FOREVER, NULL));
    ASSERT_OK(weft_thread_join(b, WEFT_FOREVER, NULL));
    /* The flag stays readable after the thread ended. */
    ASSERT(!weft_thread_is_daemon(a));
    ASSERT(weft_thread_is_daemon(b));
    weft_thread_free(a);
    weft_thread_free(b);
}

/* Reports its stack size and uses `arg` bytes of it. */
static weft_status task_stack(weft_call *call) {
    const void *data = NULL;
    size_t len = 0;
    ASSERT_OK(weft_call_arg(call, &data, &len));
    size_t use = 0;
    memcpy(&use, data, sizeof use);
    pthread_attr_t attr;
    ASSERT_EQ(pthread_getattr_np(pthread_self(), &attr), 0);
    size_t size = 0;
    ASSERT_EQ(pthread_attr_getstacksize(&attr, &size), 0);
    pthread_attr_destroy(&attr);
    /* Touch `use` bytes of stack. */
    volatile unsigned char *buf = __builtin_alloca(use);
    for (size_t i = 0; i < use; i += 64) buf[i] = (unsigned char)i;
    unsigned sum = 0;
    for (size_t i = 0; i < use; i += 64) sum += buf[i];
    (void)sum;
    return weft_call_set_result(call, &size, sizeof size);
}

static size_t run_with_stack(size_t stack, size_t use) {
    weft_thread_options o = {0};
    o.stack_size = stack;
    weft_thread *t = NULL;
    ASSERT_OK(weft_thread_start(task_stack, &use, sizeof use, &o, &t));
    weft_bytes *r = NULL;
    ASSERT_OK(weft_thread_join(t, WEFT_FOREVER, &r));
    ASSERT_EQ(weft_bytes_len(r), sizeof(size_t));
    size_t got = 0;
    memcpy(&got, weft_bytes_data(r), sizeof got);
    weft_bytes_free(r);
    weft_thread_free(t);
    return got;
}

TEST_TIMEOUT(thread_stack_size_applied, 5000) {
    /* glibc may hand a thread a cached stack up to 4 times larger than asked for, so the
     * upper bounds are 4x; they still tell the request from the default (8 MiB). Smallest
     * first, so that no larger cached stack exists yet. */
    /* 64 KiB with a small task. */
    size_t got = run_with_stack(64 * 1024, 8 * 1024);
    ASSERT_UGE(got, 64 * 1024);
    ASSERT_CMP_UINT(got, <=, 4 * 64 * 1024);
    /* 256 KiB, of which the task uses 160 KiB. */
    got = run_with_stack(256 * 1024, 160 * 1024);
    ASSERT_UGE(got, 256 * 1024);
    ASSERT_CMP_UINT(got, <=, 4 * 256 * 1024);
    /* 1 MiB, of which the task uses 768 KiB. */
    got = run_with_stack(1024 * 1024, 768 * 1024);
    ASSERT_UGE(got, 1024 * 1024);
    ASSERT_CMP_UINT(got, <=, 4 * 1024 * 1024);
}

TEST_TIMEOUT(thread_stack_size_too_small_rejected, 5000) {
    size_t bad[] = {1, 4096, 16383};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        weft_thread_options o = {0};
        o.stack_size = bad[i];
        weft_thread *sentinel = (weft_thread *)(uintptr_t)0x1234;
        weft_thread *t = sentinel;
        ASSERT_STATUS(weft_thread_start(task_nothing, NULL, 0, &o, &t), WEFT_INVALID_ARGUMENT);
        ASSERT_PTR_EQ(t, sentinel);
        ASSERT(strlen(weft_last_error_message()) > 0);
    }
    ASSERT_EQ(weft_thread_active_count(), 1);
}

TEST_TIMEOUT(thread_stack_size_odd_and_huge, 5000) {
    /* Sizes above the minimum that are not page multiples are accepted. */
    ASSERT_UGE(run_with_stack(100000, 4096), 16384);
    ASSERT_UGE(run_with_stack(16384 + 1, 1024), 16384);
    /* An impossible size fails cleanly: nothing is left registered. */
    size_t huge[] = {SIZE_MAX, (size_t)1 << 46};
    for (int i = 0; i < 2; i++) {
        weft_thread_options o = {0};
        o.stack_size = huge[i];
        weft_thread *sentinel = (weft_thread *)(uintptr_t)0x1234;
        weft_thread *t = sentinel;
        weft_status st = weft_thread_start(task_nothing, NULL, 0, &o, &t);
        if (st != WEFT_OS_ERROR && st != WEFT_INVALID_ARGUMENT && st != WEFT_NO_MEMORY)
            FAIL_AT("stack size %zu gave %s", huge[i], weft_status_name(st));
        ASSERT_PTR_EQ(t, sentinel);
        ASSERT_EQ(weft_thread_active_count(), 1);
    }
}

TEST_TIMEOUT(thread_options_reserved_must_be_zero, 5000) {
    for (int i = 0; i < 4; i++) {
        weft_thread_options o = {0};
        o.reserved[i] = 1;
        weft_thread *sentinel = (weft_thread *)(uintptr_t)0x1234;
        weft_thread *t = sentinel;
        ASSERT_STATUS(weft_thread_start(task_nothing, NULL, 0, &o, &t), WEFT_INVALID_ARGUMENT);
        ASSERT_PTR_EQ(t, sentinel);
    }
    ASSERT_EQ(weft_thread_active_count(), 1);
}

/* ---- identity --------------------------------------------------------------------------- */

TEST_TIMEOUT(thread_is_alive_before_and_after, 5000) {
    gate g;
    gate_init(&g);
    weft_thread *t = start_gated(&g, NULL);
    ASSERT(weft_thread_is_alive(t));
    runner_sleep_ms(10);
    ASSERT(weft_thread_is_alive(t));
    ASSERT_OK(weft_event_set(g.go));
    join_gated(t);
    ASSERT(!weft_thread_is_alive(t));
    weft_thread_free(t);
    gate_free(&g);
}

TEST_TIMEOUT(thread_ident_unique_and_nonzero, 5000) {
    enum { N = 10 };
    gate g;
    gate_init(&g);
    weft_thread *t[N];
    uint64_t ids[N + 1];
    for (int i = 0; i < N; i++) {
        ASSERT_OK(start_ptr(task_gate, &g, NULL, &t[i]));
        ids[i] = weft_thread_ident(t[i]);
    }
    ids[N] = main_ident();
    for (int i = 0; i <= N; i++) {
        ASSERT_CMP_UINT(ids[i], !=, 0);
        for (int j = 0; j < i; j++) ASSERT_CMP_UINT(ids[i], !=, ids[j]);
    }
    ASSERT_OK(weft_event_set(g.go));
    for (int i = 0; i < N; i++) {
        join_gated(t[i]);
        /* Stable after the thread ended. */
        ASSERT_UEQ(weft_thread_ident(t[i]), ids[i]);
        weft_thread_free(t[i]);
    }
    /* Never reused by later threads. */
    for (int k = 0; k < 20; k++) {
        weft_thread *u = NULL;
        ASSERT_OK(weft_thread_start(task_nothing, NULL, 0, NULL, &u));
        uint64_t id = weft_thread_ident(u);
        for (int i = 0; i <= N; i++) ASSERT_CMP_UINT(id, !=, ids[i]);
        ASSERT_OK(weft_thread_join(u, WEFT_FOREVER, NULL));
        weft_thread_free(u);
    }
    gate_free(&g);
}

TEST_TIMEOUT(thread_native_id_is_gettid, 5000) {
    weft_thread *t = NULL;
    ASSERT_OK(weft_thread_start(task_tid, NULL, 0, NULL, &t));
    uint32_t tid = 0;
    ASSERT_OK(weft_thread_native_id(t, &tid));
    ASSERT_STATUS(weft_thread_native_id(t, NULL), WEFT_NULL_ARGUMENT);
    weft_bytes *r = NULL;
    ASSERT_OK(weft_thread_join(t, WEFT_FOREVER, &r));
    uint32_t inside = 0;
    ASSERT_EQ(weft_bytes_len(r), sizeof inside);
    memcpy(&inside, weft_bytes_data(r), sizeof inside);
    weft_bytes_free(r);
    ASSERT_UEQ(tid, inside);
    ASSERT_CMP_UINT(tid, !=, (uint32_t)getpid());
    /* Still readable after the thread ended. */
    uint32_t again = 0;
    ASSERT_OK(weft_thread_native_id(t, &again));
    ASSERT_UEQ(again, inside);
    weft_thread_free(t);
}

/* Inside a weft thread, current() is that thread; reports ident, alive flag, name. */
typedef struct {
    uint64_t ident;
    uint64_t main_ident;
    uint32_t native;
    uint32_t tid;
    bool alive;
    char name[32];
} current_info;

static weft_status task_current(weft_call *call) {
    current_info ci;
    memset(&ci, 0, sizeof ci);
    weft_thread *me = NULL;
    ASSERT_OK(weft_thread_current(&me));
    ci.ident = weft_thread_ident(me);
    ci.alive = weft_thread_is_alive(me);
    ASSERT_OK(weft_thread_native_id(me, &ci.native));
    ci.tid = my_tid();
    snprintf(ci.name, sizeof ci.name, "%s", weft_thread_name(me));
    weft_thread_free(me);
    ci.main_ident = main_ident();
    return weft_call_set_result(call, &ci, sizeof ci);
}

TEST_TIMEOUT(thread_current_inside_weft_thread, 5000) {
    weft_thread_options o = {0};
    o.name = "whoami";
    weft_thread *t = NULL;
    ASSERT_OK(weft_thread_start(task_current, NULL, 0, &o, &t));
    weft_bytes *r = NULL;
    ASSERT_OK(weft_thread_join(t, WEFT_FOREVER, &r));
    current_info ci;
    ASSERT_EQ(weft_bytes_len(r), sizeof ci);
    memcpy(&ci, weft_bytes_data(r), sizeof ci);
    weft_bytes_free(r);
    ASSERT_UEQ(ci.ident, weft_thread_ident(t));
    ASSERT(ci.alive);
    ASSERT_UEQ(ci.native, ci.tid);
    ASSERT_STR_EQ(ci.name, "whoami");
    ASSERT_UEQ(ci.main_ident, main_ident());
    weft_thread_free(t);
}

TEST_TIMEOUT(thread_main_thread_record, 5000) {
    weft_thread *m = NULL;
    ASSERT_OK(weft_thread_main(&m));
    ASSERT_STR_EQ(weft_thread_name(m), "MainThread");
    ASSERT(weft_thread_is_alive(m));
    ASSERT(!weft_thread_is_daemon(m));
    ASSERT_CMP_UINT(weft_thread_ident(m), !=, 0);
    uint32_t tid = 0;
    ASSERT_OK(weft_thread_native_id(m, &tid));
    ASSERT_UEQ(tid, (uint32_t)getpid());
    weft_status st = 0;
    ASSERT_STATUS(weft_thread_task_status(m, &st), WEFT_INVALID_STATE);

    weft_thread *c = NULL;
    ASSERT_OK(weft_thread_current(&c));
    ASSERT_UEQ(weft_thread_ident(c), weft_thread_ident(m));
    ASSERT_STR_EQ(weft_thread_name(c), "MainThread");
    /* Two handles to one thread are independent. */
    weft_thread *m2 = NULL;
    ASSERT_OK(weft_thread_main(&m2));
    ASSERT(m2 != m);
    ASSERT_UEQ(weft_thread_ident(m2), weft_thread_ident(m));
    weft_thread_free(m);
    ASSERT_STR_EQ(weft_thread_name(m2), "MainThread");
    weft_thread_free(m2);
    weft_thread_free(c);
}

/* A plain pthread asking for its record. */
typedef struct {
    weft_thread *self;
    weft_event *ready;
    weft_event *go;
    uint32_t tid;
    uint64_t ident_again;
    weft_status join_self;
    weft_status cancel_self;
} dummy_ctx;

static void *dummy_main(void *p) {
    dummy_ctx *d = p;
    d->tid = my_tid();
    ASSERT_OK(weft_thread_current(&d->self));
    weft_thread *again = NULL;
    ASSERT_OK(weft_thread_current(&again));
    d->ident_again = weft_thread_ident(again);
    weft_thread_free(again);
    d->join_self = weft_thread_join(d->self, 20 * MS, NULL);
    ASSERT_OK(weft_event_set(d->ready));
    ASSERT_OK(weft_event_wait(d->go, WEFT_FOREVER));
    return NULL;
}

TEST_TIMEOUT(thread_current_in_foreign_pthread_is_dummy, 5000) {
    size_t base = weft_thread_active_count();
    ASSERT_EQ(base, 1);
    dummy_ctx d;
    memset(&d, 0, sizeof d);
    ASSERT_OK(weft_event_new(&d.ready));
    ASSERT_OK(weft_event_new(&d.go));
    pthread_t pt;
    ASSERT_EQ(pthread_create(&pt, NULL, dummy_main, &d), 0);
    ASSERT_OK(weft_event_wait(d.ready, 5 * SEC));

    const char *name = weft_thread_name(d.self);
    ASSERT_NOT_NULL(name);
    ASSERT(strncmp(name, "Dummy-", 6) == 0);
    ASSERT(strlen(name) > 6);
    ASSERT(weft_thread_is_alive(d.self));
    ASSERT(weft_thread_is_daemon(d.self));
    uint64_t id = weft_thread_ident(d.self);
    ASSERT_CMP_UINT(id, !=, 0);
    ASSERT_CMP_UINT(id, !=, main_ident());
    ASSERT_UEQ(d.ident_again, id);
    ASSERT_STATUS(d.join_self, WEFT_INVALID_STATE);
    uint32_t tid = 0;
    ASSERT_OK(weft_thread_native_id(d.self, &tid));
    ASSERT_UEQ(tid, d.tid);
    /* Counted and listed while it lives. */
    ASSERT_EQ(weft_thread_active_count(), base + 1);
    weft_thread *all[8] = {0};
    size_t n = 0;
    ASSERT_OK(weft_thread_enumerate(all, 8, &n));
    ASSERT_EQ(n, base + 1);
    bool listed = false;
    for (size_t i = 0; i < n; i++) {
        if (weft_thread_ident(all[i]) == id) listed = true;
        weft_thread_free(all[i]);
    }
    ASSERT(listed);
    /* Not started by weft: cannot be cancelled. */
    ASSERT_STATUS(weft_thread_cancel(d.self), WEFT_INVALID_ARGUMENT);
    ASSERT_STATUS(weft_thread_join(d.self, 0, NULL), WEFT_WOULD_BLOCK);

    ASSERT_OK(weft_event_set(d.go));
    ASSERT_EQ(pthread_join(pt, NULL), 0);
    ASSERT(!weft_thread_is_alive(d.self));
    ASSERT_EQ(weft_thread_active_count(), base);
    ASSERT_OK(weft_thread_join(d.self, 0, NULL));
    weft_thread_free(d.self);
    weft_event_free(d.ready);
    weft_event_free(d.go);
}

/* Threads started by weft threads and by plain pthreads. */
static weft_status task_start_child(weft_call *call) {
    weft_thread *t = NULL;
    weft_status s = weft_thread_start(task_echo, "grandchild", 10, NULL, &t);
    if (s != WEFT_OK) return s;
    weft_bytes *r = NULL;
    s = weft_thread_join(t, WEFT_FOREVER, &r);
    weft_thread_free(t);
    if (s != WEFT_OK) return s;
    s = weft_call_set_result(call, weft_bytes_data(r), weft_bytes_len(r));
    weft_bytes_free(r);
    return s;
}

static void *pthread_start_child(void *p) {
    weft_status *out = p;
    weft_thread *t = NULL;
    *out = weft_thread_start(task_start_child, NULL, 0, NULL, &t);
    if (*out != WEFT_OK) return NULL;
    weft_bytes *r = NULL;
    *out = weft_thread_join(t, WEFT_FOREVER, &r);
    if (*out == WEFT_OK && (weft_bytes_len(r) != 10 || memcmp(weft_bytes_data(r), "grandchild", 10) != 0))
        *out = WEFT_CORRUPTED;
    weft_bytes_free(r);
    weft_thread_free(t);
    return NULL;
}

TEST_TIMEOUT(thread_start_from_other_threads, 5000) {
    weft_status st = -1;
    pthread_t pt;
    ASSERT_EQ(pthread_create(&pt, NULL, pthread_start_child, &st), 0);
    ASSERT_EQ(pthread_join(pt, NULL), 0);
    ASSERT_STATUS(st, WEFT_OK);
    ASSERT_EQ(weft_thread_active_count(), 1);
}

/* ---- active_count and enumerate --------------------------------------------------------- */

TEST_TIMEOUT(thread_active_count_and_enumerate, 5000) {
    ASSERT_EQ(weft_thread_active_count(), 1);
    size_t n = 99;
    weft_thread *one[1] = {0};
    ASSERT_OK(weft_thread_enumerate(one, 1, &n));
    ASSERT_EQ(n, 1);
    ASSERT_STR_EQ(weft_thread_name(one[0]), "MainThread");
    weft_thread_free(one[0]);

    enum { N = 3 };
    gate g;
    gate_init(&g);
    weft_thread *t[N];
    for (int i = 0; i < N; i++) {
        /* Counted as soon as start returns. */
        ASSERT_OK(start_ptr(task_gate, &g, NULL, &t[i]));
        ASSERT_EQ(weft_thread_active_count(), 2 + i);
    }
    ASSERT_EQ(weft_thread_active_count(), 1 + N);

    weft_thread *all[16];
    for (int i = 0; i < 16; i++) all[i] = NULL;
    n = 0;
    ASSERT_OK(weft_thread_enumerate(all, 16, &n));
    ASSERT_EQ(n, 1 + N);
    ASSERT_UEQ(weft_thread_ident(all[0]), main_ident());
    ASSERT_STR_EQ(weft_thread_name(all[0]), "MainThread");
    for (int i = 0; i < N; i++) {
        bool found = false;
        for (size_t k = 1; k < n; k++)
            if (weft_thread_ident(all[k]) == weft_thread_ident(t[i])) found = true;
        ASSERT(found);
    }
    for (size_t k = n; k < 16; k++) ASSERT_NULL(all[k]);
    for (size_t k = 0; k < n; k++) weft_thread_free(all[k]);

    /* Capacity too small: the first ones are written, the total is reported. */
    weft_thread *few[3] = {NULL, NULL, (weft_thread *)(uintptr_t)0x1234};
    n = 0;
    ASSERT_STATUS(weft_thread_enumerate(few, 2, &n), WEFT_BUFFER_TOO_SMALL);
    ASSERT_EQ(n, 1 + N);
    ASSERT_NOT_NULL(few[0]);
    ASSERT_NOT_NULL(few[1]);
    ASSERT_PTR_EQ(few[2], (weft_thread *)(uintptr_t)0x1234);
    ASSERT_STR_EQ(weft_thread_name(few[0]), "MainThread");
    weft_thread_free(few[0]);
    weft_thread_free(few[1]);
    n = 0;
    ASSERT_STATUS(weft_thread_enumerate(NULL, 0, &n), WEFT_BUFFER_TOO_SMALL);
    ASSERT_EQ(n, 1 + N);
    ASSERT_STATUS(weft_thread_enumerate(all, 16, NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_thread_enumerate(NULL, 4, &n), WEFT_NULL_ARGUMENT);

    ASSERT_OK(weft_event_set(g.go));
    for (int i = 0; i < N; i++) {
        join_gated(t[i]);
        weft_thread_free(t[i]);
    }
    ASSERT_EQ(weft_thread_active_count(), 1);
    n = 0;
    ASSERT_OK(weft_thread_enumerate(all, 16, &n));
    ASSERT_EQ(n, 1);
    weft_thread_free(all[0]);
    gate_free(&g);
}

/* ---- fork -------------------------------------------------------------------------------- */

/* Runs `check` in a forked child; the child's exit code names the failed step. */
static void in_child(int (*check)(void *), void *ctx) {
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) _exit(check(ctx));
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    ASSERT(WIFEXITED(status));
    ASSERT_EQ(WEXITSTATUS(status), 0);
}

#define CHILD_CHECK(cond, code)                                                           \
    do {                                                                                  \
        if (!(cond)) {                                                                    \
            fprintf(stderr, "child: check failed: %s\n", #cond);                          \
            return (code);                                                                \
        }                                                                                 \
    } while (0)

typedef struct {
    weft_thread *other;
    uint64_t main_ident;
} fork_ctx;

static int fork_child_checks(void *p) {
    fork_ctx *f = p;
    CHILD_CHECK(weft_thread_active_count() == 1, 10);
    weft_thread *all[4] = {0};
    size_t n = 0;
    CHILD_CHECK(weft_thread_enumerate(all, 4, &n) == WEFT_OK, 11);
    CHILD_CHECK(n == 1, 12);
    CHILD_CHECK(weft_thread_ident(all[0]) == f->main_ident, 13);
    weft_thread_free(all[0]);
    /* The parent's other thread does not exist here. */
    CHILD_CHECK(!weft_thread_is_alive(f->other), 14);
    weft_thread *c = NULL;
    CHILD_CHECK(weft_thread_current(&c) == WEFT_OK, 15);
    CHILD_CHECK(weft_thread_ident(c) == f->main_ident, 16);
    weft_thread_free(c);
    /* New threads work. */
    weft_thread *t = NULL;
    CHILD_CHECK(weft_thread_start(task_echo, "kid", 3, NULL, &t) == WEFT_OK, 17);
    weft_bytes *r = NULL;
    CHILD_CHECK(weft_thread_join(t, 5 * SEC, &r) == WEFT_OK, 18);
    CHILD_CHECK(weft_bytes_len(r) == 3 && memcmp(weft_bytes_data(r), "kid", 3) == 0, 19);
    weft_bytes_free(r);
    weft_thread_free(t);
    CHILD_CHECK(weft_thread_active_count() == 1, 20);
    return 0;
}

TEST_TIMEOUT(thread_fork_child_forgets_other_threads, 5000) {
    gate g;
    gate_init(&g);
    weft_thread *t = start_gated(&g, NULL);
    fork_ctx f = {t, main_ident()};
    in_child(fork_child_checks, &f);
    ASSERT(weft_thread_is_alive(t));
    ASSERT_OK(weft_event_set(g.go));
    join_gated(t);
    weft_thread_free(t);
    gate_free(&g);
}

static int fork_child_main_native_id(void *p) {
    (void)p;
    weft_thread *m = NULL;
    CHILD_CHECK(weft_thread_main(&m) == WEFT_OK, 10);
    uint32_t tid = 0;
    CHILD_CHECK(weft_thread_native_id(m, &tid) == WEFT_OK, 11);
    if (tid != (uint32_t)getpid()) {
        fprintf(stderr, "child: main native_id %u, getpid() %u\n", tid, (unsigned)getpid());
        return 12;
    }
    weft_thread_free(m);
    weft_thread *c = NULL;
    CHILD_CHECK(weft_thread_current(&c) == WEFT_OK, 13);
    CHILD_CHECK(weft_thread_native_id(c, &tid) == WEFT_OK, 14);
    CHILD_CHECK(tid == (uint32_t)getpid(), 15);
    weft_thread_free(c);
    return 0;
}

/* In a forked child, the thread that forked is the main thread, and its native id is the
 * child's own (Python's threading updates it after fork). */
TEST_TIMEOUT(thread_fork_child_main_native_id, 5000) {
    weft_thread *m = NULL;
    ASSERT_OK(weft_thread_main(&m));
    uint32_t tid = 0;
    ASSERT_OK(weft_thread_native_id(m, &tid));
    ASSERT_UEQ(tid, (uint32_t)getpid());
    weft_thread *c = NULL;
    ASSERT_OK(weft_thread_current(&c));
    /* A started thread installs weft's fork handlers. */
    weft_thread *t = NULL;
    ASSERT_OK(weft_thread_start(task_nothing, NULL, 0, NULL, &t));
    ASSERT_OK(weft_thread_join(t, WEFT_FOREVER, NULL));
    weft_thread_free(t);
    in_child(fork_child_main_native_id, NULL);
    weft_thread_free(c);
    weft_thread_free(m);
}

static int fork_child_current_is_main(void *p) {
    uint64_t main_id = *(uint64_t *)p;
    weft_thread *c = NULL;
    CHILD_CHECK(weft_thread_current(&c) == WEFT_OK, 10);
    if (strcmp(weft_thread_name(c), "MainThread") != 0 || weft_thread_ident(c) != main_id) {
        fprintf(stderr, "child: current() is \"%s\" (ident %" PRIu64 "), expected MainThread (%" PRIu64 ")\n",
                weft_thread_name(c), weft_thread_ident(c), main_id);
        return 11;
    }
    CHILD_CHECK(weft_thread_active_count() == 1, 12);
    weft_thread_free(c);
    return 0;
}

/* The parent used weft (an RLock, which identifies threads) but never started a thread nor
 * asked for current(); in the child, current() must still be the main thread. */
TEST_TIMEOUT(thread_fork_child_current_is_main_without_started_threads, 5000) {
    weft_rlock *rl = NULL;
    ASSERT_OK(weft_rlock_new(&rl));
    ASSERT_OK(weft_rlock_acquire(rl, 0));
    ASSERT_OK(weft_rlock_release(rl));
    weft_rlock_free(rl);
    uint64_t id = main_ident();
    in_child(fork_child_current_is_main, &id);
}

/* ---- stress ------------------------------------------------------------------------------ */

TEST_TIMEOUT(thread_stress_2000_sequential, 20000) {
    for (uint32_t i = 0; i < 2000; i++) {
        weft_thread *t = NULL;
        ASSERT_OK(weft_thread_start(task_echo, &i, sizeof i, NULL, &t));
        weft_bytes *r = NULL;
        ASSERT_OK(weft_thread_join(t, WEFT_FOREVER, &r));
        uint32_t got = 0;
        ASSERT_EQ(weft_bytes_len(r), sizeof got);
        memcpy(&got, weft_bytes_data(r), sizeof got);
        ASSERT_UEQ(got, i);
        weft_bytes_free(r);
        weft_thread_free(t);
    }
    ASSERT_EQ(weft_thread_active_count(), 1);
}

static weft_status task_distinct(weft_call *call) {
    const void *data = NULL;
    size_t len = 0;
    ASSERT_OK(weft_call_arg(call, &data, &len));
    uint32_t i = 0;
    ASSERT_EQ(len, sizeof i);
    memcpy(&i, data, sizeof i);
    char buf[64];
    int n = snprintf(buf, sizeof buf, "result of thread %u/%u", i, i * 7919u);
    return weft_call_set_result(call, buf, (size_t)n);
}

TEST_TIMEOUT(thread_stress_64_concurrent, 20000) {
    enum { N = 64 };
    weft_thread *t[N];
    for (uint32_t i = 0; i < N; i++) ASSERT_OK(weft_thread_start(task_distinct, &i, sizeof i, NULL, &t[i]));
    ASSERT_UGE(weft_thread_active_count(), 1);
    for (uint32_t i = 0; i < N; i++) {
        weft_bytes *r = NULL;
        ASSERT_OK(weft_thread_join(t[i], WEFT_FOREVER, &r));
        char expect[64];
        int n = snprintf(expect, sizeof expect, "result of thread %u/%u", i, i * 7919u);
        ASSERT_EQ(weft_bytes_len(r), n);
        ASSERT(memcmp(weft_bytes_data(r), expect, (size_t)n) == 0);
        weft_bytes_free(r);
        weft_thread_free(t[i]);
    }
    ASSERT_EQ(weft_thread_active_count(), 1);
}
