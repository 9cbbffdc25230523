/* Thread pools (weft_pool_*, weft_imap_*): Python's concurrent.futures.ThreadPoolExecutor and
 * multiprocessing.dummy.Pool, call by call. Covered: argument and option errors; submit, apply,
 * map, map_async, imap and imap_unordered with exact results; item failures and failing input;
 * the imap window (an endless input is read only as results are taken); the initializer and
 * its thread-local state; max_tasks_per_worker; resizing; cancelling pending and running tasks
 * (a task blocked in a weft wait is woken); close, join, shutdown and terminate with waiters;
 * freeing a busy pool; several pools at once; a task group fed from a pool; pollable futures.
 * Process workers are tested in test_pool_process.c and test_pool_crash.c. No test asserts a
 * duration: each waits for the state it needs (events, barriers, "blocked in the kernel"). */
#define _GNU_SOURCE
#include "helpers.h"

#include <dirent.h>
#include <errno.h>
#include <poll.h>
#include <unistd.h>

/* An item whose top bit is set makes task_sq fail. */
#define BAD ((uint64_t)1 << 63)

/* ---- helpers ------------------------------------------------------------------------------- */

static weft_pool_options popts(uint32_t workers) {
    weft_pool_options o;
    memset(&o, 0, sizeof o);
    o.kind = WEFT_POOL_THREADS;
    o.workers = workers;
    return o;
}

static weft_pool *new_pool_with(const weft_pool_options *o) {
    weft_pool *p = NULL;
    ASSERT_OK(weft_pool_new(o, &p));
    ASSERT_NOT_NULL(p);
    return p;
}

static weft_pool *new_pool(uint32_t workers) {
    weft_pool_options o = popts(workers);
    return new_pool_with(&o);
}

static size_t pool_workers(const weft_pool *p) {
    size_t n = 0;
    ASSERT_OK(weft_pool_workers(p, &n));
    return n;
}

static uint64_t arg_u64(weft_call *call) {
    const void *d = NULL;
    size_t len = 0;
    ASSERT_OK(weft_call_arg(call, &d, &len));
    ASSERT_EQ(len, sizeof(uint64_t));
    uint64_t x;
    memcpy(&x, d, sizeof x);
    return x;
}

static uint64_t sq(uint64_t x) {
    return x * x + 1;
}

/* Result: x * x + 1 for a u64 argument x; fails with WEFT_NOT_FOUND ("bad item N") when the
 * BAD bit is set. */
static weft_status task_sq(weft_call *call) {
    uint64_t x = arg_u64(call);
    if (x & BAD) {
        char msg[64];
        snprintf(msg, sizeof msg, "bad item %" PRIu64, x & ~BAD);
        ASSERT_OK(weft_call_set_error(call, msg));
        return WEFT_NOT_FOUND;
    }
    uint64_t r = sq(x);
    return weft_call_set_result(call, &r, sizeof r);
}

/* The u64 result of a finished future. */
static uint64_t result_u64(weft_future *f) {
    const void *d = NULL;
    size_t len = 0;
    ASSERT_OK(weft_future_result(f, WEFT_FOREVER, &d, &len));
    ASSERT_EQ(len, sizeof(uint64_t));
    uint64_t r;
    memcpy(&r, d, sizeof r);
    return r;
}

static uint64_t bytes_u64(weft_bytes *b) {
    ASSERT_NOT_NULL(b);
    ASSERT_EQ(weft_bytes_len(b), sizeof(uint64_t));
    uint64_t r;
    memcpy(&r, weft_bytes_data(b), sizeof r);
    return r;
}

/* Checks packed map results (per item: a native u64 length, then the bytes): exactly `count`
 * u64 results, the i-th being sq(items[i]). */
static void assert_packed_sq(weft_bytes *packed, const uint64_t *items, size_t count) {
    ASSERT_NOT_NULL(packed);
    const unsigned char *p = weft_bytes_data(packed);
    size_t left = weft_bytes_len(packed);
    ASSERT_UEQ(left, count * 16);
    for (size_t i = 0; i < count; i++) {
        uint64_t len, v;
        memcpy(&len, p, 8);
        ASSERT_UEQ(len, 8);
        memcpy(&v, p + 8, 8);
        if (v != sq(items[i])) FAIL_AT("item %zu: result %" PRIu64 ", expected %" PRIu64, i, v, sq(items[i]));
        p += 16;
        left -= 16;
    }
    ASSERT_UEQ(left, 0);
}

/* A gate the tasks of a test block on, with what they report. */
typedef struct {
    weft_event *go;
    atomic_int started, finished, saw_cancel, ran;
    atomic_uint tid;          /* the last task that started */
    atomic_int wait_status;   /* what the last weft_event_wait returned */
} gate;

static void gate_init(gate *g) {
    memset(g, 0, sizeof *g);
    g->go = new_event();
    atomic_store(&g->wait_status, -1);
}

static void gate_free(gate *g) {
    weft_event_free(g->go);
}

/* Waits until `n` tasks of the gate started; fails after 10 s. */
static void wait_started(gate *g, int n) {
    xp_wait_count(&g->started, n);
}

/* Blocks (weft_event_wait, forever) until the gate opens; result "opened", or the wait's failure
 * as the task's own (WEFT_CANCELLED when the task was asked to cancel). */
static weft_status task_gate(weft_call *call) {
    gate *g = call_ptr(call);
    atomic_store(&g->tid, my_tid());
    atomic_fetch_add(&g->started, 1);
    weft_status st = weft_event_wait(g->go, WEFT_FOREVER);
    atomic_store(&g->wait_status, st);
    atomic_fetch_add(&g->finished, 1);
    if (st != WEFT_OK) {
        ASSERT_OK(weft_call_set_error(call, "the wait ended"));
        return st;
    }
    return weft_call_set_result(call, "opened", 6);
}

/* Counts that it ran; result "ran". */
static weft_status task_count(weft_call *call) {
    gate *g = call_ptr(call);
    atomic_fetch_add(&g->ran, 1);
    return weft_call_set_result(call, "ran", 3);
}

/* Runs until weft_call_cancelled, then returns WEFT_CANCELLED (cooperative cancellation). */
static weft_status task_until_cancelled(weft_call *call) {
    gate *g = call_ptr(call);
    atomic_fetch_add(&g->started, 1);
    while (!weft_call_cancelled(call)) runner_sleep_ms(1);
    atomic_fetch_add(&g->saw_cancel, 1);
    ASSERT_OK(weft_call_set_error(call, "stopped on request"));
    return WEFT_CANCELLED;
}

static void assert_cancelled(weft_future *f) {
    ASSERT_STATUS(weft_future_result(f, WEFT_FOREVER, NULL, NULL), WEFT_CANCELLED);
    ASSERT_EQ(weft_future_state(f), WEFT_FUTURE_CANCELLED);
}

static void assert_result_str(weft_future *f, const char *want) {
    const void *d = NULL;
    size_t len = 0;
    ASSERT_OK(weft_future_result(f, WEFT_FOREVER, &d, &len));
    ASSERT_UEQ(len, strlen(want));
    ASSERT_EQ(memcmp(d, want, len), 0);
}

static weft_future *submit_ptr(weft_pool *p, weft_task_fn fn, void *ptr) {
    weft_future *f = NULL;
    ASSERT_OK(weft_pool_submit(p, fn, &ptr, sizeof ptr, &f));
    ASSERT_NOT_NULL(f);
    return f;
}

static weft_future *submit_u64(weft_pool *p, weft_task_fn fn, uint64_t x) {
    weft_future *f = NULL;
    ASSERT_OK(weft_pool_submit(p, fn, &x, sizeof x, &f));
    ASSERT_NOT_NULL(f);
    return f;
}

/* ---- arguments and options ----------------------------------------------------------------- */

static weft_status src_empty(void *ctx, const void **item, size_t *len) {
    (void)ctx;
    (void)item;
    (void)len;
    return WEFT_CLOSED;
}

TEST(pool_null_arguments) {
    weft_pool *p = new_pool(1);
    weft_future *f = (weft_future *)1;
    weft_bytes *b = (weft_bytes *)1;
    weft_imap *it = (weft_imap *)1;
    size_t n = 77;
    uint64_t x = 3;
    ASSERT_STATUS(weft_pool_new(NULL, NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_pool_submit(NULL, task_sq, &x, 8, &f), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_pool_submit(p, NULL, &x, 8, &f), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_pool_submit(p, task_sq, NULL, 8, &f), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_pool_submit(p, task_sq, &x, 8, NULL), WEFT_NULL_ARGUMENT);
    ASSERT_PTR_EQ(f, (weft_future *)1); /* out-parameters are written only on success */
    ASSERT_STATUS(weft_pool_apply(NULL, task_sq, &x, 8, WEFT_FOREVER, &b), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_pool_apply(p, NULL, &x, 8, WEFT_FOREVER, &b), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_pool_apply(p, task_sq, NULL, 8, WEFT_FOREVER, &b), WEFT_NULL_ARGUMENT);
    ASSERT_PTR_EQ(b, (weft_bytes *)1);
    ASSERT_STATUS(weft_pool_map(NULL, task_sq, &x, 8, 1, 0, WEFT_FOREVER, &b), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_pool_map(p, NULL, &x, 8, 1, 0, WEFT_FOREVER, &b), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_pool_map(p, task_sq, NULL, 8, 1, 0, WEFT_FOREVER, &b), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_pool_map(p, task_sq, &x, 8, 1, 0, WEFT_FOREVER, NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_pool_map_async(NULL, task_sq, &x, 8, 1, 0, &f), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_pool_map_async(p, NULL, &x, 8, 1, 0, &f), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_pool_map_async(p, task_sq, NULL, 8, 1, 0, &f), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_pool_map_async(p, task_sq, &x, 8, 1, 0, NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_pool_imap(NULL, task_sq, src_empty, NULL, 1, 1, 0, &it), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_pool_imap(p, NULL, src_empty, NULL, 1, 1, 0, &it), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_pool_imap(p, task_sq, NULL, NULL, 1, 1, 0, &it), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_pool_imap(p, task_sq, src_empty, NULL, 1, 1, 0, NULL), WEFT_NULL_ARGUMENT);
    ASSERT_PTR_EQ(it, (weft_imap *)1);
    ASSERT_STATUS(weft_imap_next(NULL, 0, &b), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_pool_workers(NULL, &n), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_pool_workers(p, NULL), WEFT_NULL_ARGUMENT);
    ASSERT_EQ(n, 77);
    ASSERT_STATUS(weft_pool_set_workers(NULL, 2), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_pool_close(NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_pool_join(NULL, 0), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_pool_shutdown(NULL, true, true, 0), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_pool_terminate(NULL, 0), WEFT_NULL_ARGUMENT);
    weft_pool_free(NULL);
    weft_imap_free(NULL);
    /* A handle of another type is refused. */
    weft_event *e = new_event();
    ASSERT_STATUS(weft_pool_close((weft_pool *)e), WEFT_INVALID_ARGUMENT);
    ASSERT_STATUS(weft_imap_next((weft_imap *)e, 0, &b), WEFT_INVALID_ARGUMENT);
    weft_event_free(e);
    /* Bad sizes and flags. */
    ASSERT_STATUS(weft_pool_map(p, task_sq, &x, 0, 1, 0, WEFT_FOREVER, &b), WEFT_INVALID_ARGUMENT);
    ASSERT_STATUS(weft_pool_map_async(p, task_sq, &x, 0, 3, 0, &f), WEFT_INVALID_ARGUMENT);
    ASSERT_STATUS(weft_pool_map_async(p, task_sq, &x, SIZE_MAX / 2, 3, 0, &f), WEFT_INVALID_ARGUMENT);
    ASSERT_CONTAINS(weft_last_error_message(), "overflow");
    ASSERT_STATUS(weft_pool_imap(p, task_sq, src_empty, NULL, 1, 1, 2, &it), WEFT_INVALID_ARGUMENT);
    ASSERT_CONTAINS(weft_last_error_message(), "flags");
    ASSERT_PTR_EQ(f, (weft_future *)1);
    ASSERT_PTR_EQ(b, (weft_bytes *)1);
    /* The pool still works after all that. */
    weft_bytes *r = NULL;
    ASSERT_OK(weft_pool_apply(p, task_sq, &x, 8, WEFT_FOREVER, &r));
    ASSERT_UEQ(bytes_u64(r), 10);
    weft_bytes_free(r);
    weft_pool_free(p);
}

static weft_status init_nothing(weft_call *call) {
    (void)call;
    return WEFT_OK;
}

TEST(pool_bad_options) {
    weft_pool *p = (weft_pool *)1;
    weft_pool_options o = popts(2);
    o.reserved[3] = 1;
    ASSERT_STATUS(weft_pool_new(&o, &p), WEFT_INVALID_ARGUMENT);
    ASSERT_CONTAINS(weft_last_error_message(), "reserved");
    o = popts(2);
    o.kind = 7;
    ASSERT_STATUS(weft_pool_new(&o, &p), WEFT_INVALID_ARGUMENT);
    ASSERT_CONTAINS(weft_last_error_message(), "kind");
    o = popts(2);
    o.initializer_arg = "abc";
    o.initializer_arg_len = 3;
    ASSERT_STATUS(weft_pool_new(&o, &p), WEFT_INVALID_ARGUMENT);
    ASSERT_CONTAINS(weft_last_error_message(), "initializer");
    o = popts(2);
    o.initializer = init_nothing;
    o.initializer_arg = NULL;
    o.initializer_arg_len = 3;
    ASSERT_STATUS(weft_pool_new(&o, &p), WEFT_NULL_ARGUMENT);
    /* (Process pools, WEFT_POOL_PROCESSES, are tested elsewhere.) A bad option of a process
     * pool is refused the same way. */
    o = popts(2);
    o.kind = WEFT_POOL_PROCESSES;
    o.reserved[0] = 5;
    ASSERT_STATUS(weft_pool_new(&o, &p), WEFT_INVALID_ARGUMENT);
    ASSERT_PTR_EQ(p, (weft_pool *)1);
    /* NULL options and 0 workers: one worker per usable CPU. */
    ASSERT_OK(weft_pool_new(NULL, &p));
    ASSERT_UEQ(pool_workers(p), weft_cpu_count());
    weft_pool_free(p);
    o = popts(0);
    p = new_pool_with(&o);
    ASSERT_UEQ(pool_workers(p), weft_cpu_count());
    weft_pool_free(p);
    o = popts(3);
    o.initializer = init_nothing; /* an initializer with an empty argument */
    p = new_pool_with(&o);
    ASSERT_UEQ(pool_workers(p), 3);
    weft_pool_free(p);
}

/* ---- submit and apply ---------------------------------------------------------------------- */

TEST_TIMEOUT(pool_submit_ten_thousand_exact, 120000) {
    enum { N = 10000 };
    static weft_future *fs[N];
    weft_pool *p = new_pool(4);
    for (uint64_t i = 0; i < N; i++) fs[i] = submit_u64(p, task_sq, i);
    for (uint64_t i = 0; i < N; i++) {
        uint64_t r = result_u64(fs[i]);
        if (r != sq(i)) FAIL_AT("task %" PRIu64 ": %" PRIu64 " instead of %" PRIu64, i, r, sq(i));
        ASSERT_EQ(weft_future_state(fs[i]), WEFT_FUTURE_DONE);
        weft_future_free(fs[i]);
    }
    ASSERT_OK(weft_pool_shutdown(p, true, false, WEFT_FOREVER));
    weft_pool_free(p);
}

/* Returns WEFT_TIMEOUT as its own failure: not to be taken for a call that timed out. */
static weft_status task_returns_timeout(weft_call *call) {
    ASSERT_OK(weft_call_set_error(call, "my own timeout"));
    return WEFT_TIMEOUT;
}

TEST(pool_apply_success_failure_timeout) {
    weft_pool *p = new_pool(2);
    uint64_t x = 12;
    weft_bytes *r = NULL;
    ASSERT_OK(weft_pool_apply(p, task_sq, &x, 8, WEFT_FOREVER, &r));
    ASSERT_UEQ(bytes_u64(r), 145);
    weft_bytes_free(r);
    ASSERT_OK(weft_pool_apply(p, task_sq, &x, 8, WEFT_FOREVER, NULL)); /* result not wanted */
    /* A failing task: WEFT_TASK_FAILED naming the task's status and message. */
    x = 5 | BAD;
    r = (weft_bytes *)1;
    ASSERT_STATUS(weft_pool_apply(p, task_sq, &x, 8, WEFT_FOREVER, &r), WEFT_TASK_FAILED);
    ASSERT_CONTAINS(weft_last_error_message(), "WEFT_NOT_FOUND");
    ASSERT_CONTAINS(weft_last_error_message(), "bad item 5");
    ASSERT_PTR_EQ(r, (weft_bytes *)1);
    ASSERT_STATUS(weft_pool_apply(p, task_returns_timeout, NULL, 0, WEFT_FOREVER, &r), WEFT_TASK_FAILED);
    ASSERT_CONTAINS(weft_last_error_message(), "WEFT_TIMEOUT");
    ASSERT_CONTAINS(weft_last_error_message(), "my own timeout");
    /* The call's own timeout leaves the task running. */
    gate g;
    gate_init(&g);
    void *gp = &g;
    uint64_t t0 = runner_now_ns();
    ASSERT_STATUS(weft_pool_apply(p, task_gate, &gp, sizeof gp, 30 * MS, &r), WEFT_TIMEOUT);
    ASSERT_UGE(runner_now_ns() - t0, 30 * MS);
    ASSERT_STATUS(weft_pool_apply(p, task_gate, &gp, sizeof gp, 0, &r), WEFT_TIMEOUT);
    wait_started(&g, 2);
    ASSERT_EQ(atomic_load(&g.finished), 0);
    ASSERT_OK(weft_event_set(g.go));
    ASSERT_OK(weft_pool_close(p));
    ASSERT_OK(weft_pool_join(p, WEFT_FOREVER));
    ASSERT_EQ(atomic_load(&g.finished), 2); /* both ran to the end */
    ASSERT_EQ(atomic_load(&g.wait_status), WEFT_OK);
    gate_free(&g);
    weft_pool_free(p);
}

/* ---- map and map_async --------------------------------------------------------------------- */

TEST_TIMEOUT(pool_map_chunksizes, 60000) {
    enum { N = 1000 };
    static uint64_t items[N];
    for (size_t i = 0; i < N; i++) items[i] = i * 7 + 3;
    weft_pool *p = new_pool(3);
    const size_t sizes[] = {0, 1, 7, 999, 1000, 1001, SIZE_MAX};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        weft_bytes *r = NULL;
        ASSERT_OK(weft_pool_map(p, task_sq, items, 8, N, sizes[s], WEFT_FOREVER, &r));
        assert_packed_sq(r, items, N);
        weft_bytes_free(r);
        /* Fewer items than the chunk size, and one item. */
        ASSERT_OK(weft_pool_map(p, task_sq, items, 8, 5, sizes[s], WEFT_FOREVER, &r));
        assert_packed_sq(r, items, 5);
        weft_bytes_free(r);
        ASSERT_OK(weft_pool_map(p, task_sq, items + 9, 8, 1, sizes[s], WEFT_FOREVER, &r));
        assert_packed_sq(r, items + 9, 1);
        weft_bytes_free(r);
    }
    /* No items: an empty result at once (items may be NULL). */
    weft_bytes *r = NULL;
    ASSERT_OK(weft_pool_map(p, task_sq, NULL, 8, 0, 0, WEFT_FOREVER, &r));
    ASSERT_UEQ(weft_bytes_len(r), 0);
    weft_bytes_free(r);
    weft_future *f = NULL;
    ASSERT_OK(weft_pool_map_async(p, task_sq, NULL, 8, 0, 3, &f));
    ASSERT_EQ(weft_future_state(f), WEFT_FUTURE_DONE);
    weft_future_free(f);
    weft_pool_free(p);
}

TEST_TIMEOUT(pool_map_first_failing_item, 60000) {
    enum { N = 300 };
    static uint64_t items[N];
    for (size_t i = 0; i < N; i++) items[i] = i;
    items[123] |= BAD;
    items[200] |= BAD;
    items[299] |= BAD;
    weft_pool *p = new_pool(3);
    const size_t sizes[] = {0, 1, 7, SIZE_MAX};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        weft_bytes *r = (weft_bytes *)1;
        ASSERT_STATUS(weft_pool_map(p, task_sq, items, 8, N, sizes[s], WEFT_FOREVER, &r), WEFT_TASK_FAILED);
        const char *m = weft_last_error_message();
        ASSERT_CONTAINS(m, "WEFT_NOT_FOUND");
        ASSERT_CONTAINS(m, "item 123");
        ASSERT_CONTAINS(m, "bad item 123");
        ASSERT(strstr(m, "200") == NULL);
        ASSERT_PTR_EQ(r, (weft_bytes *)1);
        /* The future of map_async fails with the item's own status. */
        weft_future *f = NULL;
        ASSERT_OK(weft_pool_map_async(p, task_sq, items, 8, N, sizes[s], &f));
        ASSERT_STATUS(weft_future_result(f, WEFT_FOREVER, NULL, NULL), WEFT_NOT_FOUND);
        ASSERT_CONTAINS(weft_last_error_message(), "item 123 failed: bad item 123");
        ASSERT_EQ(weft_future_state(f), WEFT_FUTURE_FAILED);
        weft_future_free(f);
    }
    weft_pool_free(p);
}

TEST(pool_map_async_result_and_cancel) {
    enum { N = 50 };
    uint64_t items[N];
    for (size_t i = 0; i < N; i++) items[i] = i + 100;
    weft_pool *p = new_pool(1);
    weft_future *f = NULL;
    ASSERT_OK(weft_pool_map_async(p, task_sq, items, 8, N, 4, &f));
    const void *d = NULL;
    size_t len = 0;
    ASSERT_OK(weft_future_result(f, WEFT_FOREVER, &d, &len));
    ASSERT_UEQ(len, N * 16);
    for (size_t i = 0; i < N; i++) {
        uint64_t l, v;
        memcpy(&l, (const char *)d + 16 * i, 8);
        memcpy(&v, (const char *)d + 16 * i + 8, 8);
        ASSERT_UEQ(l, 8);
        ASSERT_UEQ(v, sq(items[i]));
    }
    weft_future_free(f);

    /* The only worker is busy: the map waits, and cancelling it cancels its chunks. */
    gate g;
    gate_init(&g);
    weft_future *blocker = submit_ptr(p, task_gate, &g);
    wait_started(&g, 1);
    void *ptrs[N];
    for (size_t i = 0; i < N; i++) ptrs[i] = &g;
    ASSERT_OK(weft_pool_map_async(p, task_count, ptrs, sizeof(void *), N, 3, &f));
    ASSERT_EQ(weft_future_state(f), WEFT_FUTURE_PENDING);
    ASSERT_STATUS(weft_future_result(f, 0, NULL, NULL), WEFT_TIMEOUT);
    bool cancelled = false;
    ASSERT_OK(weft_future_cancel(f, &cancelled));
    ASSERT(cancelled);
    assert_cancelled(f);
    ASSERT_OK(weft_event_set(g.go));
    assert_result_str(blocker, "opened");
    ASSERT_OK(weft_pool_shutdown(p, true, false, WEFT_FOREVER));
    ASSERT_EQ(atomic_load(&g.ran), 0); /* no chunk of the cancelled map ran */
    weft_future_free(f);
    weft_future_free(blocker);
    gate_free(&g);
    weft_pool_free(p);
}

/* ---- imap ---------------------------------------------------------------------------------- */

/* An input for imap: items 0, 1, 2, ... up to `limit` (UINT64_MAX: endless); the item `bad`
 * gets the BAD bit; at item `fail_at` the callback fails with WEFT_PERMISSION_DENIED. */
typedef struct {
    uint64_t next, limit, bad, fail_at;
    uint64_t item;
    int calls;
    uint32_t caller_tid;
} source;

static source source_of(uint64_t limit) {
    source s;
    memset(&s, 0, sizeof s);
    s.limit = limit;
    s.bad = UINT64_MAX;
    s.fail_at = UINT64_MAX;
    return s;
}

static weft_status src_next(void *ctx, const void **item, size_t *len) {
    source *s = ctx;
    s->calls++;
    if (s->caller_tid) ASSERT_EQ(my_tid(), s->caller_tid); /* only on the caller's thread */
    if (s->next == s->fail_at) return WEFT_PERMISSION_DENIED;
    if (s->next >= s->limit) return WEFT_CLOSED;
    s->item = s->next == s->bad ? s->next | BAD : s->next;
    s->next++;
    *item = &s->item;
    *len = sizeof s->item;
    return WEFT_OK;
}

static weft_imap *new_imap(weft_pool *p, source *s, size_t chunksize, size_t max_chunks, uint32_t flags) {
    weft_imap *it = NULL;
    ASSERT_OK(weft_pool_imap(p, task_sq, src_next, s, chunksize, max_chunks, flags, &it));
    ASSERT_NOT_NULL(it);
    return it;
}

static uint64_t imap_take(weft_imap *it) {
    weft_bytes *b = NULL;
    ASSERT_OK(weft_imap_next(it, WEFT_FOREVER, &b));
    uint64_t v = bytes_u64(b);
    weft_bytes_free(b);
    return v;
}

TEST(imap_endless_input_read_only_as_results_are_taken) {
    weft_pool *p = new_pool(2);
    const size_t chunksize = 3, max_chunks = 4;
    source s = source_of(UINT64_MAX);
    s.caller_tid = my_tid();
    weft_imap *it = new_imap(p, &s, chunksize, max_chunks, 0);
    ASSERT_EQ(s.calls, 0); /* nothing is read before the first next */
    for (uint64_t i = 0; i < 40; i++) {
        ASSERT_UEQ(imap_take(it), sq(i));
        /* Read at most: what was taken, the rest of the chunk being delivered, and the chunks
         * in flight. */
        ASSERT_LE(s.calls, (int)(i + 1 + chunksize - 1 + max_chunks * chunksize));
        ASSERT_GE(s.calls, (int)(i + 1));
    }
    int calls = s.calls;
    weft_imap_free(it); /* stops early: the callback is never called again */
    ASSERT_EQ(s.calls, calls);
    /* Defaults: chunksize 1, twice the workers in flight. */
    s = source_of(UINT64_MAX);
    it = new_imap(p, &s, 0, 0, 0);
    for (uint64_t i = 0; i < 10; i++) {
        ASSERT_UEQ(imap_take(it), sq(i));
        ASSERT_LE(s.calls, (int)(i + 1 + 2 * 2));
    }
    weft_imap_free(it);
    /* Unordered too. */
    s = source_of(UINT64_MAX);
    it = new_imap(p, &s, 2, 3, WEFT_IMAP_UNORDERED);
    for (int i = 0; i < 20; i++) {
        weft_bytes *b = NULL;
        ASSERT_OK(weft_imap_next(it, WEFT_FOREVER, &b));
        weft_bytes_free(b);
        ASSERT_LE(s.calls, i + 1 + 1 + 3 * 2);
    }
    weft_imap_free(it);
    ASSERT_OK(weft_pool_shutdown(p, true, false, WEFT_FOREVER));
    weft_pool_free(p);
}

TEST_TIMEOUT(imap_unordered_delivers_every_item_once, 60000) {
    enum { N = 2000 };
    static uint64_t seen[N];
    /* Results are x * x + 1: find x back by a table lookup. */
    weft_pool *p = new_pool(3);
    const size_t sizes[] = {1, 3, 64};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        memset(seen, 0, sizeof seen);
        source s = source_of(N);
        weft_imap *it = new_imap(p, &s, sizes[k], 5, WEFT_IMAP_UNORDERED);
        for (int i = 0; i < N; i++) {
            uint64_t r = imap_take(it);
            /* r = x^2 + 1 */
            uint64_t x = 0;
            while (x < N && sq(x) < r) x++;
            ASSERT(x < N && sq(x) == r);
            seen[x]++;
        }
        weft_bytes *b = (weft_bytes *)1;
        ASSERT_STATUS(weft_imap_next(it, WEFT_FOREVER, &b), WEFT_CLOSED);
        ASSERT_STATUS(weft_imap_next(it, 0, &b), WEFT_CLOSED); /* and stays so */
        ASSERT_PTR_EQ(b, (weft_bytes *)1);
        for (int x = 0; x < N; x++)
            if (seen[x] != 1) FAIL_AT("item %d delivered %" PRIu64 " times", x, seen[x]);
        weft_imap_free(it);
    }
    weft_pool_free(p);
}

TEST(imap_item_failure_then_iteration_goes_on) {
    weft_pool *p = new_pool(2);
    for (int unordered = 0; unordered < 2; unordered++) {
        source s = source_of(20);
        s.bad = 7;
        weft_imap *it = new_imap(p, &s, unordered ? 1 : 3, 4, unordered ? WEFT_IMAP_UNORDERED : 0);
        int ok = 0, failed = 0;
        uint64_t sum = 0;
        for (int i = 0; i < 20; i++) {
            weft_bytes *b = NULL;
            weft_status st = weft_imap_next(it, WEFT_FOREVER, &b);
            if (st == WEFT_TASK_FAILED) {
                ASSERT_CONTAINS(weft_last_error_message(), "WEFT_NOT_FOUND");
                ASSERT_CONTAINS(weft_last_error_message(), "bad item 7");
                if (!unordered) ASSERT_EQ(i, 7); /* at its place */
                failed++;
                continue;
            }
            ASSERT_OK(st);
            uint64_t v = bytes_u64(b);
            weft_bytes_free(b);
            if (!unordered) ASSERT_UEQ(v, sq((uint64_t)i));
            sum += v;
            ok++;
        }
        ASSERT_EQ(failed, 1);
        ASSERT_EQ(ok, 19);
        uint64_t want = 0;
        for (uint64_t x = 0; x < 20; x++)
            if (x != 7) want += sq(x);
        ASSERT_UEQ(sum, want);
        ASSERT_STATUS(weft_imap_next(it, WEFT_FOREVER, NULL), WEFT_CLOSED);
        weft_imap_free(it);
    }
    weft_pool_free(p);
}

TEST(imap_input_callback_failure) {
    weft_pool *p = new_pool(2);
    for (int unordered = 0; unordered < 2; unordered++) {
        source s = source_of(UINT64_MAX);
        s.fail_at = 5;
        weft_imap *it = new_imap(p, &s, 2, 3, unordered ? WEFT_IMAP_UNORDERED : 0);
        uint64_t sum = 0;
        for (uint64_t i = 0; i < 5; i++) {
            uint64_t v = imap_take(it);
            if (!unordered) ASSERT_UEQ(v, sq(i));
            sum += v;
        }
        ASSERT_UEQ(sum, sq(0) + sq(1) + sq(2) + sq(3) + sq(4));
        /* After the items before it: the callback's own status, once; then the end. */
        ASSERT_STATUS(weft_imap_next(it, WEFT_FOREVER, NULL), WEFT_PERMISSION_DENIED);
        ASSERT_CONTAINS(weft_last_error_message(), "input callback failed");
        ASSERT_STATUS(weft_imap_next(it, WEFT_FOREVER, NULL), WEFT_CLOSED);
        int calls = s.calls;
        ASSERT_STATUS(weft_imap_next(it, WEFT_FOREVER, NULL), WEFT_CLOSED);
        ASSERT_EQ(s.calls, calls); /* an ended input is not read again */
        weft_imap_free(it);
    }
    /* An input that fails at once. */
    source s = source_of(UINT64_MAX);
    s.fail_at = 0;
    weft_imap *it = new_imap(p, &s, 1, 1, 0);
    ASSERT_STATUS(weft_imap_next(it, WEFT_FOREVER, NULL), WEFT_PERMISSION_DENIED);
    ASSERT_STATUS(weft_imap_next(it, WEFT_FOREVER, NULL), WEFT_CLOSED);
    weft_imap_free(it);
    /* An empty input: the end at once. */
    s = source_of(0);
    it = new_imap(p, &s, 1, 1, 0);
    ASSERT_STATUS(weft_imap_next(it, WEFT_FOREVER, NULL), WEFT_CLOSED);
    weft_imap_free(it);
    weft_pool_free(p);
}

/* An imap whose items are gate pointers: each task blocks on the gate. */
typedef struct {
    gate *g;
    int left;
} gate_source;

static weft_status gate_next(void *ctx, const void **item, size_t *len) {
    gate_source *s = ctx;
    if (s->left == 0) return WEFT_CLOSED;
    s->left--;
    *item = &s->g;
    *len = sizeof s->g;
    return WEFT_OK;
}

TEST(imap_timeout_zero_would_block) {
    weft_pool *p = new_pool(2);
    for (int unordered = 0; unordered < 2; unordered++) {
        gate g;
        gate_init(&g);
        gate_source gs = {&g, 2};
        weft_imap *it = NULL;
        ASSERT_OK(weft_pool_imap(p, task_gate, gate_next, &gs, 1, 2, unordered ? WEFT_IMAP_UNORDERED : 0, &it));
        weft_bytes *b = (weft_bytes *)1;
        ASSERT_STATUS(weft_imap_next(it, 0, &b), WEFT_WOULD_BLOCK);
        uint64_t t0 = runner_now_ns();
        ASSERT_STATUS(weft_imap_next(it, 20 * MS, &b), WEFT_TIMEOUT);
        ASSERT_UGE(runner_now_ns() - t0, 20 * MS);
        ASSERT_PTR_EQ(b, (weft_bytes *)1);
        wait_started(&g, 2);
        ASSERT_OK(weft_event_set(g.go));
        for (int i = 0; i < 2; i++) {
            ASSERT_OK(weft_imap_next(it, WEFT_FOREVER, &b));
            ASSERT_UEQ(weft_bytes_len(b), 6);
            ASSERT_EQ(memcmp(weft_bytes_data(b), "opened", 6), 0);
            weft_bytes_free(b);
        }
        ASSERT_STATUS(weft_imap_next(it, 0, &b), WEFT_CLOSED);
        weft_imap_free(it);
        gate_free(&g);
    }
    weft_pool_free(p);
}

TEST(imap_pool_closed_midway_keeps_the_results_in_flight) {
    weft_pool *p = new_pool(1);
    source s = source_of(UINT64_MAX);
    weft_imap *it = new_imap(p, &s, 1, 4, 0);
    ASSERT_UEQ(imap_take(it), sq(0));
    ASSERT_UEQ(imap_take(it), sq(1));
    ASSERT_OK(weft_pool_close(p));
    /* The chunks submitted before the close still deliver their results, in order; then the
     * imap reports that it could not go on. */
    uint64_t next = 2;
    weft_status st;
    for (;;) {
        weft_bytes *b = NULL;
        st = weft_imap_next(it, WEFT_FOREVER, &b);
        if (st != WEFT_OK) break;
        ASSERT_UEQ(bytes_u64(b), sq(next));
        weft_bytes_free(b);
        next++;
    }
    ASSERT_STATUS(st, WEFT_CLOSED);
    ASSERT_GE(next, 2 + 3); /* at least the chunks in flight at the close */
    ASSERT_LE(s.calls, (int)next + 1 + 4);
    int calls = s.calls;
    ASSERT_STATUS(weft_imap_next(it, WEFT_FOREVER, NULL), WEFT_CLOSED);
    ASSERT_EQ(s.calls, calls); /* the input is not consumed any further */
    weft_imap_free(it);
    ASSERT_OK(weft_pool_join(p, WEFT_FOREVER));
    weft_pool_free(p);
}

/* ---- initializer --------------------------------------------------------------------------- */

static _Thread_local uint64_t tls_value;
static atomic_int init_runs;
static weft_thread *init_threads[64];

static weft_status init_store(weft_call *call) {
    tls_value = arg_u64(call);
    int i = atomic_fetch_add(&init_runs, 1);
    ASSERT_LT(i, 64);
    ASSERT_OK(weft_thread_current(&init_threads[i]));
    return WEFT_OK;
}

/* Result: the thread-local value the initializer left, and the weft ident of the thread. */
static weft_status task_tls(weft_call *call) {
    weft_thread *me = NULL;
    ASSERT_OK(weft_thread_current(&me));
    uint64_t out[2] = {tls_value, weft_thread_ident(me)};
    weft_thread_free(me);
    return weft_call_set_result(call, out, sizeof out);
}

static void result_pair(weft_future *f, uint64_t out[2]) {
    const void *d = NULL;
    size_t len = 0;
    ASSERT_OK(weft_future_result(f, WEFT_FOREVER, &d, &len));
    ASSERT_UEQ(len, 16);
    memcpy(out, d, 16);
}

static bool ident_is_init_thread(uint64_t ident) {
    for (int i = 0; i < atomic_load(&init_runs); i++)
        if (weft_thread_ident(init_threads[i]) == ident) return true;
    return false;
}

TEST(pool_initializer_once_per_worker_with_thread_local_state) {
    weft_pool_options o = popts(3);
    uint64_t v = 4242;
    o.initializer = init_store;
    o.initializer_arg = &v;
    o.initializer_arg_len = sizeof v;
    weft_pool *p = new_pool_with(&o);
    v = 0; /* the argument was copied */
    enum { N = 300 };
    weft_future *fs[N];
    for (int i = 0; i < N; i++) fs[i] = submit_u64(p, task_tls, 0);
    for (int i = 0; i < N; i++) {
        uint64_t r[2];
        result_pair(fs[i], r);
        ASSERT_UEQ(r[0], 4242); /* every task sees its worker's initialised state */
        ASSERT(ident_is_init_thread(r[1]));
        weft_future_free(fs[i]);
    }
    ASSERT_OK(weft_pool_close(p));
    ASSERT_OK(weft_pool_join(p, WEFT_FOREVER));
    ASSERT_EQ(atomic_load(&init_runs), 3); /* once per worker */
    for (int i = 0; i < 3; i++) weft_thread_free(init_threads[i]);
    weft_pool_free(p);
}

static weft_status init_fail(weft_call *call) {
    ASSERT_OK(weft_call_set_error(call, "cannot initialise"));
    return WEFT_PERMISSION_DENIED;
}

TEST(pool_failing_initializer_breaks_the_pool) {
    weft_pool_options o = popts(2);
    o.initializer = init_fail;
    weft_pool *p = new_pool_with(&o);
    /* A task queued before the break fails with the initializer's status; once broken, the
     * pool refuses tasks with it. */
    gate g;
    gate_init(&g);
    weft_future *f = NULL;
    void *gp = &g;
    weft_status st = weft_pool_submit(p, task_count, &gp, sizeof gp, &f);
    if (st == WEFT_OK) {
        ASSERT_STATUS(weft_future_result(f, WEFT_FOREVER, NULL, NULL), WEFT_PERMISSION_DENIED);
        ASSERT_CONTAINS(weft_last_error_message(), "initializer");
        ASSERT_CONTAINS(weft_last_error_message(), "cannot initialise");
        ASSERT_EQ(weft_future_state(f), WEFT_FUTURE_FAILED);
        weft_future_free(f);
    } else {
        ASSERT_STATUS(st, WEFT_PERMISSION_DENIED);
    }
    /* Wait for the break (the initializers run on the workers). */
    uint64_t deadline = runner_now_ns() + 10 * SEC;
    for (;;) {
        f = NULL;
        st = weft_pool_submit(p, task_count, &gp, sizeof gp, &f);
        if (st != WEFT_OK) break;
        ASSERT_STATUS(weft_future_result(f, WEFT_FOREVER, NULL, NULL), WEFT_PERMISSION_DENIED);
        weft_future_free(f);
        ASSERT(runner_now_ns() < deadline);
    }
    ASSERT_STATUS(st, WEFT_PERMISSION_DENIED);
    ASSERT_CONTAINS(weft_last_error_message(), "cannot initialise");
    uint64_t x = 2;
    ASSERT_STATUS(weft_pool_apply(p, task_sq, &x, 8, WEFT_FOREVER, NULL), WEFT_PERMISSION_DENIED);
    weft_bytes *b = NULL;
    ASSERT_STATUS(weft_pool_map(p, task_sq, &x, 8, 1, 1, WEFT_FOREVER, &b), WEFT_PERMISSION_DENIED);
    ASSERT_EQ(atomic_load(&g.ran), 0); /* no task ever ran */
    ASSERT_OK(weft_pool_close(p));
    ASSERT_OK(weft_pool_join(p, WEFT_FOREVER)); /* the workers are gone */
    gate_free(&g);
    weft_pool_free(p);
}

/* ---- max_tasks_per_worker ------------------------------------------------------------------ */

TEST(pool_max_tasks_per_worker_replaces_workers) {
    weft_pool_options o = popts(1);
    uint64_t v = 7;
    o.max_tasks_per_worker = 3;
    o.initializer = init_store;
    o.initializer_arg = &v;
    o.initializer_arg_len = sizeof v;
    weft_pool *p = new_pool_with(&o);
    enum { N = 12 };
    weft_future *fs[N];
    for (int i = 0; i < N; i++) fs[i] = submit_u64(p, task_tls, 0);
    uint64_t idents[N];
    for (int i = 0; i < N; i++) {
        uint64_t r[2];
        result_pair(fs[i], r);
        ASSERT_UEQ(r[0], 7); /* each replacement ran the initializer */
        idents[i] = r[1];
        weft_future_free(fs[i]);
    }
    /* One worker at a time, each for exactly three tasks, in order: four distinct threads. */
    for (int i = 0; i < N; i++) {
        if (i % 3 != 0) ASSERT_UEQ(idents[i], idents[i - 1]);
        for (int j = 0; j < i; j++)
            if (j / 3 != i / 3) ASSERT(idents[i] != idents[j]);
    }
    ASSERT_OK(weft_pool_close(p));
    ASSERT_OK(weft_pool_join(p, WEFT_FOREVER));
    ASSERT_GE(atomic_load(&init_runs), 4);
    ASSERT_LE(atomic_load(&init_runs), 5); /* the fifth replacement may have started */
    for (int i = 0; i < atomic_load(&init_runs); i++) weft_thread_free(init_threads[i]);
    weft_pool_free(p);
}

TEST(pool_max_tasks_per_worker_after_close_runs_every_queued_task) {
    weft_pool_options o = popts(1);
    o.max_tasks_per_worker = 1;
    weft_pool *p = new_pool_with(&o);
    gate g;
    gate_init(&g);
    weft_future *blocker = submit_ptr(p, task_gate, &g);
    wait_started(&g, 1);
    enum { N = 5 };
    weft_future *fs[N];
    for (int i = 0; i < N; i++) fs[i] = submit_ptr(p, task_count, &g);
    ASSERT_OK(weft_pool_close(p));
    ASSERT_OK(weft_event_set(g.go));
    /* Closed: queued tasks still run, although each worker retires after one task. */
    assert_result_str(blocker, "opened");
    for (int i = 0; i < N; i++) assert_result_str(fs[i], "ran");
    ASSERT_OK(weft_pool_join(p, WEFT_FOREVER));
    ASSERT_EQ(atomic_load(&g.ran), N);
    for (int i = 0; i < N; i++) weft_future_free(fs[i]);
    weft_future_free(blocker);
    gate_free(&g);
    weft_pool_free(p);
}

/* ---- resizing ------------------------------------------------------------------------------ */

typedef struct {
    weft_barrier *barrier;
    atomic_int running, max_running;
} crowd;

/* Waits on the barrier (all parties must be running at once). */
static weft_status task_barrier(weft_call *call) {
    crowd *c = call_ptr(call);
    weft_status st = weft_barrier_wait(c->barrier, 10 * SEC, NULL);
    if (st != WEFT_OK) ASSERT_OK(weft_call_set_error(call, "barrier"));
    return st;
}

/* Records how many such tasks run at once. */
static weft_status task_crowd(weft_call *call) {
    crowd *c = call_ptr(call);
    int now = atomic_fetch_add(&c->running, 1) + 1;
    int m = atomic_load(&c->max_running);
    while (now > m && !atomic_compare_exchange_weak(&c->max_running, &m, now)) {
    }
    runner_sleep_ms(3);
    atomic_fetch_sub(&c->running, 1);
    return WEFT_OK;
}

TEST(pool_set_workers_grow_and_shrink) {
    weft_pool *p = new_pool(1);
    ASSERT_UEQ(pool_workers(p), 1);
    ASSERT_OK(weft_pool_set_workers(p, 4));
    ASSERT_UEQ(pool_workers(p), 4);
    /* Four tasks that can only finish together: four workers really run. */
    crowd c;
    memset(&c, 0, sizeof c);
    c.barrier = new_barrier(4, NULL, NULL);
    weft_future *fs[16];
    for (int i = 0; i < 4; i++) fs[i] = submit_ptr(p, task_barrier, &c);
    for (int i = 0; i < 4; i++) {
        ASSERT_OK(weft_future_result(fs[i], WEFT_FOREVER, NULL, NULL));
        weft_future_free(fs[i]);
    }
    /* Shrink: surplus workers leave; from then on one task at a time. */
    ASSERT_OK(weft_pool_set_workers(p, 1));
    ASSERT_UEQ(pool_workers(p), 1);
    for (int i = 0; i < 16; i++) fs[i] = submit_ptr(p, task_crowd, &c);
    for (int i = 0; i < 16; i++) {
        ASSERT_OK(weft_future_result(fs[i], WEFT_FOREVER, NULL, NULL));
        weft_future_free(fs[i]);
    }
    ASSERT_EQ(atomic_load(&c.max_running), 1);
    /* Grow again, and 0 means the CPU count. */
    ASSERT_OK(weft_pool_set_workers(p, 0));
    ASSERT_UEQ(pool_workers(p), weft_cpu_count());
    ASSERT_OK(weft_pool_set_workers(p, 3));
    weft_barrier_free(c.barrier);
    c.barrier = new_barrier(3, NULL, NULL);
    for (int i = 0; i < 3; i++) fs[i] = submit_ptr(p, task_barrier, &c);
    for (int i = 0; i < 3; i++) {
        ASSERT_OK(weft_future_result(fs[i], WEFT_FOREVER, NULL, NULL));
        weft_future_free(fs[i]);
    }
    ASSERT_OK(weft_pool_close(p));
    ASSERT_STATUS(weft_pool_set_workers(p, 2), WEFT_CLOSED);
    ASSERT_OK(weft_pool_join(p, WEFT_FOREVER));
    weft_barrier_free(c.barrier);
    weft_pool_free(p);
}

/* ---- cancellation -------------------------------------------------------------------------- */

TEST(pool_cancel_pending_task_never_runs) {
    weft_pool *p = new_pool(1);
    gate g;
    gate_init(&g);
    weft_future *blocker = submit_ptr(p, task_gate, &g);
    wait_started(&g, 1);
    weft_future *f = submit_ptr(p, task_count, &g);
    ASSERT_EQ(weft_future_state(f), WEFT_FUTURE_PENDING);
    bool cancelled = false;
    ASSERT_OK(weft_future_cancel(f, &cancelled));
    ASSERT(cancelled);
    assert_cancelled(f);
    weft_future *after = submit_ptr(p, task_count, &g);
    ASSERT_OK(weft_event_set(g.go));
    assert_result_str(blocker, "opened");
    assert_result_str(after, "ran");
    ASSERT_OK(weft_pool_shutdown(p, true, false, WEFT_FOREVER));
    ASSERT_EQ(atomic_load(&g.ran), 1); /* only `after` */
    weft_future_free(f);
    weft_future_free(after);
    weft_future_free(blocker);
    gate_free(&g);
    weft_pool_free(p);
}

static weft_status task_check_not_cancelled(weft_call *call) {
    ASSERT(!weft_call_cancelled(call));
    /* A weft wait in a later task is not cancelled either. */
    gate *g = call_ptr(call);
    return weft_event_wait(g->go, 0) == WEFT_WOULD_BLOCK ? weft_call_set_result(call, "clean", 5) : WEFT_PANIC;
}

TEST(pool_cancel_running_task_cooperative) {
    weft_pool *p = new_pool(1);
    gate g;
    gate_init(&g);
    weft_future *f = submit_ptr(p, task_until_cancelled, &g);
    wait_started(&g, 1);
    ASSERT_EQ(weft_future_state(f), WEFT_FUTURE_RUNNING);
    bool cancelled = true;
    ASSERT_OK(weft_future_cancel(f, &cancelled));
    ASSERT(!cancelled); /* running: only a request */
    ASSERT(weft_future_cancel_requested(f));
    assert_cancelled(f); /* the task honoured it */
    ASSERT_EQ(atomic_load(&g.saw_cancel), 1);
    /* The worker goes on, its next task not cancelled. */
    weft_future *next = submit_ptr(p, task_check_not_cancelled, &g);
    assert_result_str(next, "clean");
    weft_future_free(next);
    weft_future_free(f);
    gate_free(&g);
    weft_pool_free(p);
}

TEST(pool_cancel_running_task_blocked_in_a_weft_wait) {
    weft_pool *p = new_pool(1);
    gate g;
    gate_init(&g);
    weft_future *f = submit_ptr(p, task_gate, &g);
    wait_blocked(&g.tid); /* inside weft_event_wait(WEFT_FOREVER) */
    bool cancelled = true;
    ASSERT_OK(weft_future_cancel(f, &cancelled));
    ASSERT(!cancelled);
    assert_cancelled(f);
    ASSERT_EQ(atomic_load(&g.wait_status), WEFT_CANCELLED); /* the wait was woken */
    ASSERT(!weft_event_is_set(g.go));
    weft_future *next = submit_ptr(p, task_check_not_cancelled, &g);
    assert_result_str(next, "clean");
    weft_future_free(next);
    weft_future_free(f);
    gate_free(&g);
    weft_pool_free(p);
}

/* ---- close, join, shutdown, terminate, free ------------------------------------------------ */

TEST(pool_close_and_join) {
    weft_pool *p = new_pool(2);
    ASSERT_STATUS(weft_pool_join(p, 0), WEFT_INVALID_STATE); /* open */
    ASSERT_STATUS(weft_pool_join(p, WEFT_FOREVER), WEFT_INVALID_STATE);
    gate g;
    gate_init(&g);
    weft_future *blocker = submit_ptr(p, task_gate, &g);
    wait_started(&g, 1);
    enum { N = 50 };
    weft_future *fs[N];
    for (uint64_t i = 0; i < N; i++) fs[i] = submit_u64(p, task_sq, i);
    ASSERT_OK(weft_pool_close(p));
    ASSERT_OK(weft_pool_close(p)); /* twice is fine */
    weft_future *f = (weft_future *)1;
    uint64_t x = 1;
    ASSERT_STATUS(weft_pool_submit(p, task_sq, &x, 8, &f), WEFT_CLOSED);
    ASSERT_PTR_EQ(f, (weft_future *)1);
    ASSERT_STATUS(weft_pool_apply(p, task_sq, &x, 8, WEFT_FOREVER, NULL), WEFT_CLOSED);
    weft_bytes *b = NULL;
    ASSERT_STATUS(weft_pool_map(p, task_sq, &x, 8, 1, 0, WEFT_FOREVER, &b), WEFT_CLOSED);
    ASSERT_STATUS(weft_pool_map_async(p, task_sq, &x, 8, 1, 0, &f), WEFT_CLOSED);
    /* A worker is still busy: join times out, not before its deadline. */
    uint64_t t0 = runner_now_ns();
    ASSERT_STATUS(weft_pool_join(p, 20 * MS), WEFT_TIMEOUT);
    ASSERT_UGE(runner_now_ns() - t0, 20 * MS);
    ASSERT_STATUS(weft_pool_join(p, 0), WEFT_TIMEOUT);
    ASSERT_OK(weft_event_set(g.go));
    ASSERT_OK(weft_pool_join(p, WEFT_FOREVER));
    ASSERT_OK(weft_pool_join(p, 0)); /* again: still joined */
    /* Every task queued before the close ran. */
    for (uint64_t i = 0; i < N; i++) {
        ASSERT_EQ(weft_future_state(fs[i]), WEFT_FUTURE_DONE);
        ASSERT_UEQ(result_u64(fs[i]), sq(i));
        weft_future_free(fs[i]);
    }
    assert_result_str(blocker, "opened");
    ASSERT_UEQ(pool_workers(p), 2);
    weft_future_free(blocker);
    gate_free(&g);
    weft_pool_free(p);
}

typedef struct {
    weft_future *f;
    weft_as_completed *ac;
    atomic_uint tid;
    weft_status st;
    weft_future *got;
} waiter;

static void *wait_result(void *arg) {
    waiter *w = arg;
    atomic_store(&w->tid, my_tid());
    w->st = weft_future_result(w->f, WEFT_FOREVER, NULL, NULL);
    return NULL;
}

static void *wait_as_completed(void *arg) {
    waiter *w = arg;
    atomic_store(&w->tid, my_tid());
    w->st = weft_as_completed_next(w->ac, WEFT_FOREVER, &w->got);
    return NULL;
}

static void *wait_futures(void *arg) {
    waiter *w = arg;
    atomic_store(&w->tid, my_tid());
    w->st = weft_futures_wait(&w->f, 1, WEFT_FOREVER, WEFT_ALL_COMPLETED, NULL, NULL);
    return NULL;
}

TEST(pool_shutdown_cancel_pending_wakes_waiters) {
    weft_pool *p = new_pool(1);
    gate g;
    gate_init(&g);
    weft_future *running = submit_ptr(p, task_gate, &g);
    wait_started(&g, 1);
    enum { N = 6 };
    weft_future *pending[N];
    for (int i = 0; i < N; i++) pending[i] = submit_ptr(p, task_count, &g);
    /* Blocked: a result waiter, a futures_wait waiter and an as_completed iterator. */
    waiter wr = {.f = pending[3]}, ww = {.f = pending[5]}, wa;
    memset(&wa, 0, sizeof wa);
    ASSERT_OK(weft_as_completed_new(pending, N, &wa.ac));
    pthread_t t1 = spawn(wait_result, &wr), t2 = spawn(wait_futures, &ww), t3 = spawn(wait_as_completed, &wa);
    wait_blocked(&wr.tid);
    wait_blocked(&ww.tid);
    wait_blocked(&wa.tid);
    /* While the running task blocks, a waiting shutdown times out (not before its deadline). */
    uint64_t t0 = runner_now_ns();
    ASSERT_STATUS(weft_pool_shutdown(p, true, false, 20 * MS), WEFT_TIMEOUT);
    ASSERT_UGE(runner_now_ns() - t0, 20 * MS);
    ASSERT_OK(weft_pool_shutdown(p, false, true, 0));
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);
    pthread_join(t3, NULL);
    ASSERT_STATUS(wr.st, WEFT_CANCELLED);
    ASSERT_OK(ww.st);
    ASSERT_OK(wa.st);
    ASSERT_EQ(weft_future_state(wa.got), WEFT_FUTURE_CANCELLED);
    weft_future_free(wa.got);
    for (int i = 1; i < N; i++) {
        weft_future *got = NULL;
        ASSERT_OK(weft_as_completed_next(wa.ac, WEFT_FOREVER, &got));
        weft_future_free(got);
    }
    ASSERT_STATUS(weft_as_completed_next(wa.ac, 0, &wa.got), WEFT_CLOSED);
    weft_as_completed_free(wa.ac);
    for (int i = 0; i < N; i++) assert_cancelled(pending[i]);
    /* The running task is not cancelled: it finishes normally. */
    ASSERT_EQ(weft_future_state(running), WEFT_FUTURE_RUNNING);
    ASSERT_OK(weft_event_set(g.go));
    ASSERT_OK(weft_pool_shutdown(p, true, false, WEFT_FOREVER));
    assert_result_str(running, "opened");
    ASSERT_EQ(atomic_load(&g.ran), 0);
    uint64_t x = 1;
    weft_future *f = NULL;
    ASSERT_STATUS(weft_pool_submit(p, task_sq, &x, 8, &f), WEFT_CLOSED);
    for (int i = 0; i < N; i++) weft_future_free(pending[i]);
    weft_future_free(running);
    gate_free(&g);
    weft_pool_free(p);
}

TEST(pool_shutdown_without_cancel_runs_queued_tasks) {
    weft_pool *p = new_pool(2);
    gate g;
    gate_init(&g);
    enum { N = 40 };
    weft_future *fs[N];
    weft_future *blocker = submit_ptr(p, task_gate, &g);
    for (int i = 0; i < N; i++) fs[i] = submit_ptr(p, task_count, &g);
    wait_started(&g, 1);
    ASSERT_OK(weft_pool_shutdown(p, false, false, 0));
    ASSERT_OK(weft_event_set(g.go));
    ASSERT_OK(weft_pool_shutdown(p, true, false, WEFT_FOREVER));
    for (int i = 0; i < N; i++) {
        assert_result_str(fs[i], "ran");
        weft_future_free(fs[i]);
    }
    ASSERT_EQ(atomic_load(&g.ran), N);
    assert_result_str(blocker, "opened");
    weft_future_free(blocker);
    gate_free(&g);
    weft_pool_free(p);
}

TEST(pool_shutdown_cancels_every_task_not_started) {
    /* A worker takes queued tasks in batches: the tasks of its batch that it has not started
     * are still "not started", and shutdown(cancel_pending) must cancel them too. */
    weft_pool *p = new_pool(1);
    gate first, second;
    gate_init(&first);
    gate_init(&second);
    weft_future *a = submit_ptr(p, task_gate, &first);
    wait_started(&first, 1);
    weft_future *b = submit_ptr(p, task_gate, &second);
    enum { N = 20 };
    weft_future *fs[N];
    for (int i = 0; i < N; i++) fs[i] = submit_ptr(p, task_count, &second);
    /* The worker takes its next batch (b and some of fs) when a ends. */
    ASSERT_OK(weft_event_set(first.go));
    assert_result_str(a, "opened");
    wait_started(&second, 1);
    ASSERT_EQ(weft_future_state(b), WEFT_FUTURE_RUNNING);
    ASSERT_OK(weft_pool_shutdown(p, false, true, 0));
    for (int i = 0; i < N; i++) ASSERT_EQ(weft_future_state(fs[i]), WEFT_FUTURE_CANCELLED);
    ASSERT_OK(weft_event_set(second.go));
    ASSERT_OK(weft_pool_join(p, WEFT_FOREVER));
    assert_result_str(b, "opened");
    ASSERT_EQ(atomic_load(&second.ran), 0);
    for (int i = 0; i < N; i++) weft_future_free(fs[i]);
    weft_future_free(a);
    weft_future_free(b);
    gate_free(&first);
    gate_free(&second);
    weft_pool_free(p);
}

TEST(pool_terminate) {
    weft_pool *p = new_pool(3);
    gate g, c;
    gate_init(&g);
    gate_init(&c);
    /* Two tasks blocked in a weft wait, one polling weft_call_cancelled, and queued ones. */
    weft_future *w1 = submit_ptr(p, task_gate, &g);
    weft_future *w2 = submit_ptr(p, task_gate, &g);
    weft_future *coop = submit_ptr(p, task_until_cancelled, &c);
    wait_started(&g, 2);
    wait_started(&c, 1);
    enum { N = 10 };
    weft_future *fs[N];
    for (int i = 0; i < N; i++) fs[i] = submit_ptr(p, task_count, &g);
    ASSERT_OK(weft_pool_terminate(p, WEFT_FOREVER));
    assert_cancelled(w1);
    assert_cancelled(w2);
    assert_cancelled(coop);
    ASSERT_EQ(atomic_load(&g.wait_status), WEFT_CANCELLED);
    ASSERT_EQ(atomic_load(&c.saw_cancel), 1);
    for (int i = 0; i < N; i++) assert_cancelled(fs[i]);
    ASSERT_EQ(atomic_load(&g.ran), 0);
    ASSERT_OK(weft_pool_join(p, 0)); /* every worker has left */
    weft_future *f = NULL;
    uint64_t x = 1;
    ASSERT_STATUS(weft_pool_submit(p, task_sq, &x, 8, &f), WEFT_CLOSED);
    ASSERT_OK(weft_pool_terminate(p, WEFT_FOREVER)); /* again: nothing left to do */
    for (int i = 0; i < N; i++) weft_future_free(fs[i]);
    weft_future_free(w1);
    weft_future_free(w2);
    weft_future_free(coop);
    gate_free(&g);
    gate_free(&c);
    weft_pool_free(p);
}

TEST(pool_free_with_queued_tasks_completes_them) {
    weft_pool *p = new_pool(1);
    gate g;
    gate_init(&g);
    weft_future *blocker = submit_ptr(p, task_gate, &g);
    wait_started(&g, 1);
    enum { N = 20 };
    weft_future *fs[N];
    for (uint64_t i = 0; i < N; i++) fs[i] = submit_u64(p, task_sq, i);
    weft_future *counted = submit_ptr(p, task_count, &g);
    weft_pool_free(p); /* does not wait, does not cancel */
    ASSERT_EQ(weft_future_state(fs[0]), WEFT_FUTURE_PENDING);
    ASSERT_OK(weft_event_set(g.go));
    assert_result_str(blocker, "opened");
    for (uint64_t i = 0; i < N; i++) {
        ASSERT_UEQ(result_u64(fs[i]), sq(i));
        weft_future_free(fs[i]);
    }
    assert_result_str(counted, "ran");
    ASSERT_EQ(atomic_load(&g.ran), 1);
    weft_future_free(counted);
    weft_future_free(blocker);
    gate_free(&g);
}

/* Threads of this process (entries of /proc/self/task). */
static int thread_count(void) {
    DIR *d = opendir("/proc/self/task");
    ASSERT_NOT_NULL(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

/* A joined pool leaves no thread behind, whatever its workers did (here: workers replaced
 * after every task, and a process pool's collector), so that a fork right after it sees a
 * single-threaded process. */
TEST(pool_join_leaves_no_thread_behind) {
    ASSERT_EQ(thread_count(), 1);
    for (int kind = 0; kind < 2; kind++) {
        weft_pool_options o = popts(3);
        o.max_tasks_per_worker = 1;
        if (kind == 1) {
            o.kind = WEFT_POOL_PROCESSES;
            o.start_method = WEFT_START_FORKSERVER;
        }
        weft_pool *p = new_pool_with(&o);
        enum { N = 40 };
        weft_future *fs[N];
        for (uint64_t i = 0; i < N; i++) fs[i] = submit_u64(p, task_sq, i);
        for (uint64_t i = 0; i < N; i++) {
            ASSERT_UEQ(result_u64(fs[i]), sq(i));
            weft_future_free(fs[i]);
        }
        ASSERT_OK(weft_pool_shutdown(p, true, false, WEFT_FOREVER));
        ASSERT_EQ(thread_count(), 1);
        weft_pool_free(p);
    }
}

/* ---- several pools ------------------------------------------------------------------------- */

/* Result: the name of the worker thread. */
static weft_status task_thread_name(weft_call *call) {
    weft_thread *me = NULL;
    ASSERT_OK(weft_thread_current(&me));
    const char *name = weft_thread_name(me);
    ASSERT_NOT_NULL(name);
    weft_status st = weft_call_set_result(call, name, strlen(name) + 1);
    weft_thread_free(me);
    return st;
}

static const char *result_str(weft_future *f) {
    const void *d = NULL;
    size_t len = 0;
    ASSERT_OK(weft_future_result(f, WEFT_FOREVER, &d, &len));
    ASSERT(len > 0 && ((const char *)d)[len - 1] == '\0');
    return d;
}

TEST(pool_several_independent_pools) {
    enum { P = 3, N = 200 };
    weft_pool *pools[P];
    for (int i = 0; i < P; i++) pools[i] = new_pool(2);
    /* Pool 0's workers are all blocked: the others still run everything. */
    gate g;
    gate_init(&g);
    weft_future *b1 = submit_ptr(pools[0], task_gate, &g);
    weft_future *b2 = submit_ptr(pools[0], task_gate, &g);
    wait_started(&g, 2);
    weft_future *queued0 = submit_u64(pools[0], task_sq, 5);
    static weft_future *fs[P][N];
    for (int k = 1; k < P; k++)
        for (uint64_t i = 0; i < N; i++) fs[k][i] = submit_u64(pools[k], task_sq, i + 1000 * (uint64_t)k);
    for (int k = 1; k < P; k++)
        for (uint64_t i = 0; i < N; i++) {
            ASSERT_UEQ(result_u64(fs[k][i]), sq(i + 1000 * (uint64_t)k));
            weft_future_free(fs[k][i]);
        }
    ASSERT_EQ(weft_future_state(queued0), WEFT_FUTURE_PENDING);
    /* Each pool has workers of its own (names "ThreadPoolWorker-<pool>_<worker>"). */
    weft_future *n1 = submit_ptr(pools[1], task_thread_name, NULL);
    weft_future *n2 = submit_ptr(pools[2], task_thread_name, NULL);
    const char *s1 = result_str(n1), *s2 = result_str(n2);
    ASSERT_CONTAINS(s1, "ThreadPoolWorker-");
    ASSERT_CONTAINS(s2, "ThreadPoolWorker-");
    const char *u1 = strchr(s1, '_'), *u2 = strchr(s2, '_');
    ASSERT(u1 && u2);
    size_t l1 = (size_t)(u1 - s1), l2 = (size_t)(u2 - s2);
    ASSERT(l1 != l2 || strncmp(s1, s2, l1) != 0); /* different pool numbers */
    /* Terminating one pool leaves the others alone. */
    ASSERT_OK(weft_pool_terminate(pools[0], WEFT_FOREVER));
    assert_cancelled(b1);
    assert_cancelled(queued0);
    uint64_t x = 9;
    weft_bytes *r = NULL;
    ASSERT_OK(weft_pool_apply(pools[1], task_sq, &x, 8, WEFT_FOREVER, &r));
    ASSERT_UEQ(bytes_u64(r), 82);
    weft_bytes_free(r);
    ASSERT_OK(weft_pool_set_workers(pools[2], 1));
    ASSERT_UEQ(pool_workers(pools[1]), 2);
    for (int i = 0; i < P; i++) weft_pool_free(pools[i]);
    weft_future *all[] = {b1, b2, queued0, n1, n2};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) weft_future_free(all[i]);
    gate_free(&g);
}

/* ---- a task group fed from a pool ---------------------------------------------------------- */

/* Fails with WEFT_BROKEN once the gate opens. */
static weft_status task_fail_when_open(weft_call *call) {
    gate *g = call_ptr(call);
    ASSERT_OK(weft_event_wait(g->go, WEFT_FOREVER));
    ASSERT_OK(weft_call_set_error(call, "member failed"));
    return WEFT_BROKEN;
}

TEST(pool_group_first_failure_cancels_the_others) {
    weft_pool *p = new_pool(4);
    weft_group *grp = NULL;
    ASSERT_OK(weft_group_new(&grp));
    gate blocked, coop, go;
    gate_init(&blocked);
    gate_init(&coop);
    gate_init(&go);
    weft_future *m[4];
    m[0] = submit_ptr(p, task_gate, &blocked);             /* blocked in a weft wait */
    m[1] = submit_ptr(p, task_gate, &blocked);
    m[2] = submit_ptr(p, task_until_cancelled, &coop);     /* polls weft_call_cancelled */
    wait_started(&blocked, 2);
    wait_started(&coop, 1);
    m[3] = submit_ptr(p, task_fail_when_open, &go);        /* the fourth worker */
    for (int i = 0; i < 4; i++) ASSERT_OK(weft_group_add(grp, m[i]));
    ASSERT_STATUS(weft_group_wait(grp, 0), WEFT_TIMEOUT);
    ASSERT_OK(weft_event_set(go.go));
    ASSERT_STATUS(weft_group_wait(grp, WEFT_FOREVER), WEFT_BROKEN);
    ASSERT_STR_EQ(weft_last_error_message(), "member failed");
    ASSERT_EQ(weft_future_state(m[3]), WEFT_FUTURE_FAILED);
    for (int i = 0; i < 3; i++) assert_cancelled(m[i]);
    ASSERT_EQ(atomic_load(&blocked.wait_status), WEFT_CANCELLED);
    ASSERT_EQ(atomic_load(&blocked.finished), 2);
    ASSERT_EQ(atomic_load(&coop.saw_cancel), 1);
    /* The workers are free again. */
    weft_future *after = submit_ptr(p, task_count, &go);
    assert_result_str(after, "ran");
    ASSERT_OK(weft_pool_shutdown(p, true, false, WEFT_FOREVER));
    for (int i = 0; i < 4; i++) weft_future_free(m[i]);
    weft_future_free(after);
    weft_group_free(grp);
    gate_free(&blocked);
    gate_free(&coop);
    gate_free(&go);
    weft_pool_free(p);
}

TEST(pool_group_failure_cancels_a_queued_member) {
    /* One worker: the failing member runs on it, the other waits in the queue; the failure
     * cancels it before the worker is free again, so it never runs. */
    weft_pool *p = new_pool(1);
    weft_group *grp = NULL;
    ASSERT_OK(weft_group_new(&grp));
    gate go;
    gate_init(&go);
    weft_future *failing = submit_ptr(p, task_fail_when_open, &go);
    weft_future *queued = submit_ptr(p, task_count, &go);
    ASSERT_OK(weft_group_add(grp, failing));
    ASSERT_OK(weft_group_add(grp, queued));
    ASSERT_OK(weft_event_set(go.go));
    ASSERT_STATUS(weft_group_wait(grp, WEFT_FOREVER), WEFT_BROKEN);
    ASSERT_STATUS(weft_future_result(failing, 0, NULL, NULL), WEFT_BROKEN);
    assert_cancelled(queued);
    ASSERT_OK(weft_pool_shutdown(p, true, false, WEFT_FOREVER));
    ASSERT_EQ(atomic_load(&go.ran), 0);
    weft_future_free(failing);
    weft_future_free(queued);
    weft_group_free(grp);
    gate_free(&go);
    weft_pool_free(p);
}

/* ---- pollable futures ---------------------------------------------------------------------- */

TEST(pool_futures_awaited_with_poll) {
    weft_pool *p = new_pool(3);
    gate g;
    gate_init(&g);
    weft_future *fs[3] = {submit_ptr(p, task_gate, &g), submit_ptr(p, task_gate, &g), NULL};
    fs[2] = submit_u64(p, task_sq, 6);
    struct pollfd pfd[3];
    for (int i = 0; i < 3; i++) {
        int fd = -1;
        ASSERT_OK(weft_future_fd(fs[i], &fd));
        ASSERT_GE(fd, 0);
        pfd[i].fd = fd;
        pfd[i].events = POLLIN;
        pfd[i].revents = 0;
    }
    wait_started(&g, 2);
    /* Only the third can be done; wait for it through poll. */
    int seen = 0;
    while (!(pfd[2].revents & POLLIN)) {
        int r;
        do r = poll(pfd, 3, 10000);
        while (r < 0 && errno == EINTR);
        ASSERT_GT(r, 0);
        ASSERT_EQ(pfd[0].revents, 0);
        ASSERT_EQ(pfd[1].revents, 0);
        seen++;
        ASSERT_LT(seen, 100);
    }
    ASSERT_UEQ(result_u64(fs[2]), 37);
    ASSERT_EQ(poll(pfd, 2, 0), 0);
    ASSERT_OK(weft_event_set(g.go));
    for (int i = 0; i < 2; i++) {
        int r;
        do r = poll(&pfd[i], 1, 10000);
        while (r < 0 && errno == EINTR);
        ASSERT_EQ(r, 1);
        ASSERT(pfd[i].revents & POLLIN);
        assert_result_str(fs[i], "opened");
    }
    /* Stays readable. */
    ASSERT_EQ(poll(pfd, 3, 0), 3);
    for (int i = 0; i < 3; i++) weft_future_free(fs[i]);
    gate_free(&g);
    weft_pool_free(p);
}
