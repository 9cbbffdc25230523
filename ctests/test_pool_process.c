/* Process pools (weft_pool_* with WEFT_POOL_PROCESSES, weft_imap_*): Python's
 * ProcessPoolExecutor and multiprocessing.Pool, call by call, as test_pool.c does for thread
 * workers. Covered: option errors of process pools (start method, thread-only / process-only
 * options, an initializer or task that forkserver/spawn workers could not find, a pool used in
 * a forked child); submit (2,000 tasks, every result checked, run in at most N worker
 * processes), apply (result, task failure as WEFT_TASK_FAILED naming the task's status and
 * message, the call's own timeout), map over fixed-size items with several chunk sizes
 * (automatic included), its first failing item, map_async and cancelling it; imap over an
 * endless input read only as results are taken, imap_unordered delivering every item once,
 * an item failure after which the iteration goes on; the initializer (run once per worker
 * process, its state stays in the worker; a failing one breaks the pool); max_tasks_per_worker
 * seen from inside the workers (the pid changes after every M tasks, all tasks complete, even
 * after close); set_workers growing (N workers meet at a shared weft barrier) and shrinking
 * (one task at a time, the surplus processes end and are reaped); cancelling a task the
 * parent still holds (it never runs) and a running one (cooperatively, and blocked in a weft
 * event wait or a shared weft queue get in the worker: woken with WEFT_CANCELLED), the next
 * task on that worker not cancelled; close/join, shutdown with waiters (result, futures_wait
 * and as_completed woken), shutdown without cancel, terminate (running tasks end cancelled,
 * every worker process gone and reaped), freeing a pool with queued tasks, several pools at
 * once, futures awaited with poll(); an argument larger than a worker's task queue and a
 * result larger than the result queue (the future fails, the pool goes on); the forkserver
 * and spawn start methods (tasks and initializer of this program found by object and offset,
 * workers without the parent's memory). Cross-process bookkeeping lives in MAP_SHARED memory
 * (xp_shared) inherited by fork workers, gates are weft shared events, barriers and queues of
 * the default space passed to the tasks as tokens. Task functions are non-static with a
 * prototype, so that forkserver and spawn workers can find them. No test asserts a duration:
 * each waits for the state it needs.
 *
 * How a process pool dispatches matters to several tests: a submit sends the task straight
 * into a worker's own task queue (up to a window of tasks per worker), and from then on the
 * task counts as running (WEFT_FUTURE_RUNNING: a cancel only asks; a task still waiting in the
 * worker's queue is then taken back and ends cancelled without running, and
 * shutdown(cancel_pending) does the same for all of them); only the tasks the parent still
 * holds are pending. fill_window() below submits until a task stays pending.
 */
#define _GNU_SOURCE
#include "helpers.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

/* An item whose top bit is set makes pproc_task_sq fail. */
#define BAD ((uint64_t)1 << 63)

/* ---- shared bookkeeping ---------------------------------------------------------------------- */

/* What the tasks of a test report, in MAP_SHARED memory created before the pool (fork workers,
 * replacements included, inherit it). */
typedef struct {
    atomic_int started, finished, ran, saw_cancel, inits;
    atomic_int wait_status; /* what the last weft wait of a task returned */
    atomic_int pid, tid;    /* the last task that started: its process and thread */
    atomic_int running, max_running;
    atomic_int pids[64];      /* pid of the gate task of each index */
    atomic_int init_pids[64]; /* pid of each initializer run */
    atomic_int counts[1024];  /* runs of each counted task, by index */
} board;

static board *new_board(void) {
    return xp_shared(sizeof(board));
}

/* The argument of most tasks: the board (fork workers only), an index, and a token of a shared
 * weft object (an event, a barrier or a queue). */
typedef struct {
    board *b;
    int32_t index;
    uint32_t tok_len;
    unsigned char tok[WEFT_TOKEN_MAX];
} targ;

static targ targ_of(board *b, int32_t index) {
    targ a;
    memset(&a, 0, sizeof a);
    a.b = b;
    a.index = index;
    return a;
}

static targ targ_event(board *b, int32_t index, weft_event *ev) {
    targ a = targ_of(b, index);
    size_t len = 0;
    ASSERT_OK(weft_event_token(ev, a.tok, sizeof a.tok, &len));
    a.tok_len = (uint32_t)len;
    return a;
}

static targ targ_barrier(board *b, int32_t index, weft_barrier *bar) {
    targ a = targ_of(b, index);
    size_t len = 0;
    ASSERT_OK(weft_barrier_token(bar, a.tok, sizeof a.tok, &len));
    a.tok_len = (uint32_t)len;
    return a;
}

static targ targ_queue(board *b, int32_t index, weft_queue *q) {
    targ a = targ_of(b, index);
    size_t len = 0;
    ASSERT_OK(weft_queue_token(q, a.tok, sizeof a.tok, &len));
    a.tok_len = (uint32_t)len;
    return a;
}

/* A shared event in the default space (reachable from workers of every start method). */
static weft_event *shared_event(void) {
    weft_event *e = NULL;
    ASSERT_OK(weft_event_new_in(NULL, NULL, &e));
    ASSERT_NOT_NULL(e);
    return e;
}

static weft_barrier *shared_barrier(uint32_t parties) {
    weft_barrier *b = NULL;
    ASSERT_OK(weft_barrier_new_in(NULL, NULL, parties, NULL, NULL, &b));
    ASSERT_NOT_NULL(b);
    return b;
}

/* ---- pools ----------------------------------------------------------------------------------- */

static weft_pool_options popts_with(uint32_t method, uint32_t workers) {
    weft_pool_options o;
    memset(&o, 0, sizeof o);
    o.kind = WEFT_POOL_PROCESSES;
    o.start_method = method;
    o.workers = workers;
    return o;
}

static weft_pool_options popts(uint32_t workers) {
    return popts_with(WEFT_START_FORK, workers);
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

static weft_future *submit(weft_pool *p, weft_task_fn fn, const void *arg, size_t len) {
    weft_future *f = NULL;
    ASSERT_OK(weft_pool_submit(p, fn, arg, len, &f));
    ASSERT_NOT_NULL(f);
    return f;
}

static weft_future *submit_u64(weft_pool *p, weft_task_fn fn, uint64_t x) {
    return submit(p, fn, &x, sizeof x);
}

static weft_future *submit_targ(weft_pool *p, weft_task_fn fn, const targ *a) {
    return submit(p, fn, a, sizeof *a);
}

/* ---- processes ------------------------------------------------------------------------------- */

/* True once `pid` is gone for good: not running, and reaped (no zombie left; kill answers a
 * zombie too). */
static bool pid_gone(pid_t pid) {
    return kill(pid, 0) == -1 && errno == ESRCH;
}

/* Waits until `pid` is gone; fails after 10 s. */
static void wait_pid_gone(pid_t pid) {
    uint64_t deadline = runner_now_ns() + 10 * SEC;
    while (!pid_gone(pid)) {
        if (runner_now_ns() > deadline) FAIL_AT("process %d is still there (running or a zombie)", (int)pid);
        runner_sleep_ms(2);
    }
}

/* Waits until this process has exactly `n` children; fails after 10 s. */
static void wait_children(int n) {
    uint64_t deadline = runner_now_ns() + 10 * SEC;
    while (child_count() != n) {
        if (runner_now_ns() > deadline) FAIL_AT("%d children, expected %d", child_count(), n);
        runner_sleep_ms(2);
    }
}

/* Waits until thread `tid` of process `pid` sleeps in the kernel (state S), i.e. is blocked in
 * the wait it was about to enter; fails after 10 s. */
static void wait_task_sleeping(board *b) {
    xp_wait_count(&b->tid, 1);
    int pid = atomic_load(&b->pid), tid = atomic_load(&b->tid);
    char path[96];
    snprintf(path, sizeof path, "/proc/%d/task/%d/stat", pid, tid);
    uint64_t deadline = runner_now_ns() + 10 * SEC;
    for (;;) {
        char buf[512] = "";
        FILE *f = fopen(path, "r");
        if (!f) FAIL_AT("worker %d thread %d: cannot read %s", pid, tid, path);
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = '\0';
        const char *p = strrchr(buf, ')');
        ASSERT_NOT_NULL(p);
        if (p[1] == ' ' && p[2] == 'S') return;
        if (runner_now_ns() > deadline) FAIL_AT("worker thread never blocked (stat: %s)", buf);
        runner_sleep_ms(1);
    }
}

/* ---- results --------------------------------------------------------------------------------- */

static uint64_t sq(uint64_t x) {
    return x * x + 1;
}

static uint64_t result_u64(weft_future *f) {
    const void *d = NULL;
    size_t len = 0;
    ASSERT_OK(weft_future_result(f, WEFT_FOREVER, &d, &len));
    ASSERT_UEQ(len, sizeof(uint64_t));
    uint64_t r;
    memcpy(&r, d, sizeof r);
    return r;
}

static int32_t result_pid(weft_future *f) {
    const void *d = NULL;
    size_t len = 0;
    ASSERT_OK(weft_future_result(f, WEFT_FOREVER, &d, &len));
    ASSERT_UEQ(len, sizeof(int32_t));
    int32_t r;
    memcpy(&r, d, sizeof r);
    return r;
}

static uint64_t bytes_u64(weft_bytes *b) {
    ASSERT_NOT_NULL(b);
    ASSERT_UEQ(weft_bytes_len(b), sizeof(uint64_t));
    uint64_t r;
    memcpy(&r, weft_bytes_data(b), sizeof r);
    return r;
}

static void assert_result_str(weft_future *f, const char *want) {
    const void *d = NULL;
    size_t len = 0;
    ASSERT_OK(weft_future_result(f, WEFT_FOREVER, &d, &len));
    ASSERT_UEQ(len, strlen(want));
    ASSERT_EQ(memcmp(d, want, len), 0);
}

static void assert_cancelled(weft_future *f) {
    ASSERT_STATUS(weft_future_result(f, WEFT_FOREVER, NULL, NULL), WEFT_CANCELLED);
    ASSERT_EQ(weft_future_state(f), WEFT_FUTURE_CANCELLED);
}

/* Packed map results (per item: a native u64 length, then the bytes): exactly `count` u64
 * results, the i-th being sq(items[i]). */
static void assert_packed_sq(weft_bytes *packed, const uint64_t *items, size_t count) {
    ASSERT_NOT_NULL(packed);
    const unsigned char *p = weft_bytes_data(packed);
    ASSERT_UEQ(weft_bytes_len(packed), count * 16);
    for (size_t i = 0; i < count; i++) {
        uint64_t len, v;
        memcpy(&len, p + 16 * i, 8);
        memcpy(&v, p + 16 * i + 8, 8);
        ASSERT_UEQ(len, 8);
        if (v != sq(items[i])) FAIL_AT("item %zu: result %" PRIu64 ", expected %" PRIu64, i, v, sq(items[i]));
    }
}

/* Index of `pid` in `pids[0..*n]`, added when new. */
static int note_pid(int32_t *pids, int *n, int cap, int32_t pid) {
    for (int i = 0; i < *n; i++)
        if (pids[i] == pid) return i;
    ASSERT_LT(*n, cap);
    pids[*n] = pid;
    return (*n)++;
}

/* ---- task functions (non-static with a prototype: forkserver and spawn workers find them by
 * object and offset) ------------------------------------------------------------------------- */

weft_status pproc_task_sq(weft_call *call);
weft_status pproc_task_sq_pid(weft_call *call);
weft_status pproc_task_returns_timeout(weft_call *call);
weft_status pproc_task_gate(weft_call *call);
weft_status pproc_task_count(weft_call *call);
weft_status pproc_task_until_cancelled(weft_call *call);
weft_status pproc_task_wait_own_event(weft_call *call);
weft_status pproc_task_queue_get(weft_call *call);
weft_status pproc_task_check_not_cancelled(weft_call *call);
weft_status pproc_task_barrier(weft_call *call);
weft_status pproc_task_crowd(weft_call *call);
weft_status pproc_task_pid(weft_call *call);
weft_status pproc_task_echo_size(weft_call *call);
weft_status pproc_task_big_result(weft_call *call);
weft_status pproc_task_info(weft_call *call);
weft_status pproc_init_store(weft_call *call);
weft_status pproc_init_fail(weft_call *call);
weft_status pproc_task_state(weft_call *call);
weft_status pproc_task_join_pool(weft_call *call);

static uint64_t arg_u64(weft_call *call) {
    const void *d = NULL;
    size_t len = 0;
    ASSERT_OK(weft_call_arg(call, &d, &len));
    ASSERT_EQ(len, sizeof(uint64_t));
    uint64_t x;
    memcpy(&x, d, sizeof x);
    return x;
}

static targ arg_targ(weft_call *call) {
    const void *d = NULL;
    size_t len = 0;
    ASSERT_OK(weft_call_arg(call, &d, &len));
    ASSERT_EQ(len, sizeof(targ));
    targ a;
    memcpy(&a, d, sizeof a);
    return a;
}

static weft_status set_pid_result(weft_call *call) {
    int32_t pid = (int32_t)getpid();
    return weft_call_set_result(call, &pid, sizeof pid);
}

/* Publishes the calling task's process and thread, then counts it as started. */
static void publish_started(board *b, int index) {
    atomic_store(&b->pid, (int)getpid());
    atomic_store(&b->tid, (int)my_tid());
    if (index >= 0 && index < 64) atomic_store(&b->pids[index], (int)getpid());
    atomic_fetch_add(&b->started, 1);
}

/* Result: x * x + 1 for a u64 argument x; fails with WEFT_NOT_FOUND ("bad item N") when the
 * BAD bit is set. */
weft_status pproc_task_sq(weft_call *call) {
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

/* Result: sq(x), then the worker's pid (as a u64). */
weft_status pproc_task_sq_pid(weft_call *call) {
    uint64_t r[2] = {sq(arg_u64(call)), (uint64_t)getpid()};
    return weft_call_set_result(call, r, sizeof r);
}

/* Returns WEFT_TIMEOUT as its own failure: not to be taken for a call that timed out. */
weft_status pproc_task_returns_timeout(weft_call *call) {
    ASSERT_OK(weft_call_set_error(call, "my own timeout"));
    return WEFT_TIMEOUT;
}

/* Blocks (weft_event_wait on the shared event of its token, forever) until the gate opens;
 * result "opened", or the wait's failure as the task's own. */
weft_status pproc_task_gate(weft_call *call) {
    targ a = arg_targ(call);
    weft_event *go = NULL;
    ASSERT_OK(weft_event_from_token(a.tok, a.tok_len, &go));
    publish_started(a.b, a.index);
    weft_status st = weft_event_wait(go, WEFT_FOREVER);
    weft_event_free(go);
    atomic_store(&a.b->wait_status, st);
    atomic_fetch_add(&a.b->finished, 1);
    if (st != WEFT_OK) {
        ASSERT_OK(weft_call_set_error(call, "the wait ended"));
        return st;
    }
    return weft_call_set_result(call, "opened", 6);
}

/* Counts that it ran (in total and for its index); result "ran". */
weft_status pproc_task_count(weft_call *call) {
    targ a = arg_targ(call);
    ASSERT(a.index >= 0 && a.index < 1024);
    atomic_fetch_add(&a.b->counts[a.index], 1);
    atomic_fetch_add(&a.b->ran, 1);
    return weft_call_set_result(call, "ran", 3);
}

/* Runs until weft_call_cancelled (at most 20 s: then "never asked"), then returns
 * WEFT_CANCELLED (cooperative cancellation). */
weft_status pproc_task_until_cancelled(weft_call *call) {
    targ a = arg_targ(call);
    publish_started(a.b, a.index);
    for (int i = 0; i < 20000; i++) {
        if (weft_call_cancelled(call)) {
            atomic_fetch_add(&a.b->saw_cancel, 1);
            ASSERT_OK(weft_call_set_error(call, "stopped on request"));
            return WEFT_CANCELLED;
        }
        runner_sleep_ms(1);
    }
    return weft_call_set_result(call, "never asked", 11);
}

/* Waits forever on an event it created itself (nobody else can set it): only a cancel request
 * ends the wait. Returns the wait's status. */
weft_status pproc_task_wait_own_event(weft_call *call) {
    targ a = arg_targ(call);
    weft_event *never = NULL;
    ASSERT_OK(weft_event_new(&never));
    publish_started(a.b, a.index);
    weft_status st = weft_event_wait(never, WEFT_FOREVER);
    weft_event_free(never);
    atomic_store(&a.b->wait_status, st);
    atomic_fetch_add(&a.b->finished, 1);
    if (st != WEFT_OK) ASSERT_OK(weft_call_set_error(call, "the wait ended"));
    return st;
}

/* Waits forever for an item of the shared queue of its token. Returns the get's status (and
 * the item as its result). */
weft_status pproc_task_queue_get(weft_call *call) {
    targ a = arg_targ(call);
    weft_queue *q = NULL;
    ASSERT_OK(weft_queue_from_token(a.tok, a.tok_len, &q));
    publish_started(a.b, a.index);
    weft_bytes *item = NULL;
    weft_status st = weft_queue_get(q, WEFT_FOREVER, &item);
    weft_queue_free(q);
    atomic_store(&a.b->wait_status, st);
    atomic_fetch_add(&a.b->finished, 1);
    if (st != WEFT_OK) {
        ASSERT_OK(weft_call_set_error(call, "the get ended"));
        return st;
    }
    st = weft_call_set_result(call, weft_bytes_data(item), weft_bytes_len(item));
    weft_bytes_free(item);
    return st;
}

/* Not cancelled, and a weft wait of its own is not cancelled either (it times out); result:
 * the worker's pid. */
weft_status pproc_task_check_not_cancelled(weft_call *call) {
    if (weft_call_cancelled(call)) {
        ASSERT_OK(weft_call_set_error(call, "cancelled although nobody asked"));
        return WEFT_PANIC;
    }
    weft_event *e = NULL;
    ASSERT_OK(weft_event_new(&e));
    weft_status st = weft_event_wait(e, 10 * MS);
    weft_event_free(e);
    if (st != WEFT_TIMEOUT) {
        char msg[96];
        snprintf(msg, sizeof msg, "a fresh wait returned %s", weft_status_name(st));
        ASSERT_OK(weft_call_set_error(call, msg));
        return WEFT_PANIC;
    }
    return set_pid_result(call);
}

/* Waits on the shared barrier of its token (all parties must run at once); result: pid. */
weft_status pproc_task_barrier(weft_call *call) {
    targ a = arg_targ(call);
    weft_barrier *bar = NULL;
    ASSERT_OK(weft_barrier_from_token(a.tok, a.tok_len, NULL, NULL, &bar));
    weft_status st = weft_barrier_wait(bar, 10 * SEC, NULL);
    weft_barrier_free(bar);
    if (st != WEFT_OK) {
        ASSERT_OK(weft_call_set_error(call, "barrier"));
        return st;
    }
    return set_pid_result(call);
}

/* Records how many such tasks run at once; result: pid. */
weft_status pproc_task_crowd(weft_call *call) {
    targ a = arg_targ(call);
    int now = atomic_fetch_add(&a.b->running, 1) + 1;
    int m = atomic_load(&a.b->max_running);
    while (now > m && !atomic_compare_exchange_weak(&a.b->max_running, &m, now)) {
    }
    runner_sleep_ms(3);
    atomic_fetch_sub(&a.b->running, 1);
    return set_pid_result(call);
}

/* Result: the worker's pid. */
weft_status pproc_task_pid(weft_call *call) {
    return set_pid_result(call);
}

/* Result: the argument's length and the sum of its bytes (two u64). */
weft_status pproc_task_echo_size(weft_call *call) {
    const void *d = NULL;
    size_t len = 0;
    ASSERT_OK(weft_call_arg(call, &d, &len));
    uint64_t r[2] = {len, 0};
    for (size_t i = 0; i < len; i++) r[1] += ((const unsigned char *)d)[i];
    return weft_call_set_result(call, r, sizeof r);
}

/* Result: `n` bytes (n: the u64 argument), byte i being (i * 7) & 0xff. */
weft_status pproc_task_big_result(weft_call *call) {
    uint64_t n = arg_u64(call);
    unsigned char *buf = malloc(n ? n : 1);
    ASSERT_NOT_NULL(buf);
    for (uint64_t i = 0; i < n; i++) buf[i] = (unsigned char)((i * 7) & 0xff);
    weft_status st = weft_call_set_result(call, buf, n);
    free(buf);
    return st;
}

/* Set by the parent before it starts a pool: fork workers see it, forkserver and spawn ones
 * (fresh images of the program) do not. */
uint64_t pproc_marker;
/* Set by the initializer, in the worker. */
uint64_t pproc_worker_state;

/* What a worker tells about itself. */
typedef struct {
    uint64_t x2, marker, state;
    int32_t pid, weft_parent;
    char name[64];
} info;

/* Result: an info record (x2 = twice the u64 argument). */
weft_status pproc_task_info(weft_call *call) {
    info r;
    memset(&r, 0, sizeof r);
    r.x2 = 2 * arg_u64(call);
    r.marker = pproc_marker;
    r.state = pproc_worker_state;
    r.pid = (int32_t)getpid();
    r.weft_parent = weft_process_parent_pid();
    snprintf(r.name, sizeof r.name, "%s", weft_process_current_name());
    return weft_call_set_result(call, &r, sizeof r);
}

/* The initializer's argument: a value and the board (NULL outside fork workers). */
typedef struct {
    uint64_t value;
    board *b;
} init_arg;

/* Stores its value in the worker's global state; counts its runs on the board. */
weft_status pproc_init_store(weft_call *call) {
    const void *d = NULL;
    size_t len = 0;
    ASSERT_OK(weft_call_arg(call, &d, &len));
    ASSERT_EQ(len, sizeof(init_arg));
    init_arg a;
    memcpy(&a, d, sizeof a);
    pproc_worker_state = a.value;
    if (a.b) {
        int i = atomic_fetch_add(&a.b->inits, 1);
        if (i < 64) atomic_store(&a.b->init_pids[i], (int)getpid());
    }
    return WEFT_OK;
}

weft_status pproc_init_fail(weft_call *call) {
    ASSERT_OK(weft_call_set_error(call, "cannot initialise"));
    return WEFT_PERMISSION_DENIED;
}

/* Result: the worker's state (what its initializer stored), then its pid, as two u64. */
weft_status pproc_task_state(weft_call *call) {
    uint64_t r[2] = {pproc_worker_state, (uint64_t)getpid()};
    return weft_call_set_result(call, r, sizeof r);
}

static void result_pair(weft_future *f, uint64_t out[2]) {
    const void *d = NULL;
    size_t len = 0;
    ASSERT_OK(weft_future_result(f, WEFT_FOREVER, &d, &len));
    ASSERT_UEQ(len, 16);
    memcpy(out, d, 16);
}

/* ---- the dispatch window --------------------------------------------------------------------- */

/* With every worker busy (blocked), submits counted tasks (indices *next, *next + 1, ...) into
 * fs[] until one stays with the parent (PENDING): the tasks before it were sent to workers'
 * queues (RUNNING). Returns the index of the pending one. */
static int fill_window(weft_pool *p, board *b, weft_future **fs, int *next, int cap) {
    for (;;) {
        ASSERT_LT(*next, cap);
        targ a = targ_of(b, *next);
        fs[*next] = submit_targ(p, pproc_task_count, &a);
        int32_t st = weft_future_state(fs[*next]);
        (*next)++;
        if (st == WEFT_FUTURE_PENDING) return *next - 1;
        ASSERT_EQ(st, WEFT_FUTURE_RUNNING); /* sent to a worker: counts as running */
    }
}

/* ---- options --------------------------------------------------------------------------------- */

static weft_status src_empty(void *ctx, const void **item, size_t *len) {
    (void)ctx;
    (void)item;
    (void)len;
    return WEFT_CLOSED;
}

/* What a forked child of the pool's owner gets from the pool: WEFT_INVALID_STATE everywhere. */
static void use_parents_pool(void *arg) {
    weft_pool *p = arg;
    uint64_t x = 3;
    weft_future *f = (weft_future *)1;
    ASSERT_STATUS(weft_pool_submit(p, pproc_task_sq, &x, 8, &f), WEFT_INVALID_STATE);
    ASSERT_CONTAINS(weft_last_error_message(), "forked child");
    ASSERT_PTR_EQ(f, (weft_future *)1);
    ASSERT_STATUS(weft_pool_apply(p, pproc_task_sq, &x, 8, WEFT_FOREVER, NULL), WEFT_INVALID_STATE);
    weft_bytes *b = NULL;
    ASSERT_STATUS(weft_pool_map(p, pproc_task_sq, &x, 8, 1, 0, WEFT_FOREVER, &b), WEFT_INVALID_STATE);
    ASSERT_STATUS(weft_pool_set_workers(p, 3), WEFT_INVALID_STATE);
    ASSERT_STATUS(weft_pool_shutdown(p, true, true, WEFT_FOREVER), WEFT_INVALID_STATE);
    ASSERT_STATUS(weft_pool_terminate(p, WEFT_FOREVER), WEFT_INVALID_STATE);
}

TEST(pool_process_options_and_errors) {
    weft_pool *p = (weft_pool *)1;
    weft_pool_options o = popts(2);
    o.start_method = 9;
    ASSERT_STATUS(weft_pool_new(&o, &p), WEFT_INVALID_ARGUMENT);
    o = popts(2);
    o.reserved[1] = 1;
    ASSERT_STATUS(weft_pool_new(&o, &p), WEFT_INVALID_ARGUMENT);
    ASSERT_CONTAINS(weft_last_error_message(), "reserved");
    o = popts(2);
    o.initializer_arg = "abc";
    o.initializer_arg_len = 3;
    ASSERT_STATUS(weft_pool_new(&o, &p), WEFT_INVALID_ARGUMENT);
    ASSERT_CONTAINS(weft_last_error_message(), "initializer");
    o = popts(2);
    o.initializer = pproc_init_store;
    o.initializer_arg_len = 3; /* NULL argument with a length */
    ASSERT_STATUS(weft_pool_new(&o, &p), WEFT_NULL_ARGUMENT);
    /* The process-only options on a thread pool are refused. */
    o = popts(2);
    o.kind = WEFT_POOL_THREADS;
    ASSERT_STATUS(weft_pool_new(&o, &p), WEFT_INVALID_ARGUMENT); /* start_method FORK */
    ASSERT_CONTAINS(weft_last_error_message(), "process pools");
    o.start_method = 0;
    o.retries = 2;
    ASSERT_STATUS(weft_pool_new(&o, &p), WEFT_INVALID_ARGUMENT);
    ASSERT_CONTAINS(weft_last_error_message(), "process pools");
    /* An initializer forkserver and spawn workers could not find (an address in no loaded
     * object: here, heap memory; it is never called). */
    void *heap = malloc(64);
    ASSERT_NOT_NULL(heap);
    weft_task_fn nowhere;
    memcpy(&nowhere, &(void *){heap}, sizeof nowhere);
    const uint32_t located[] = {WEFT_START_FORKSERVER, WEFT_START_SPAWN};
    for (int m = 0; m < 2; m++) {
        o = popts_with(located[m], 1);
        o.initializer = nowhere;
        ASSERT_STATUS(weft_pool_new(&o, &p), WEFT_INVALID_ARGUMENT);
        ASSERT_CONTAINS(weft_last_error_message(), "not in any loaded object");
    }
    ASSERT_PTR_EQ(p, (weft_pool *)1); /* written only on success */
    free(heap);
    ASSERT_EQ(child_count(), 0); /* no worker was left behind by the failed creations */

    /* 0 workers: one per usable CPU; every worker is a child process. */
    o = popts(0);
    p = new_pool_with(&o);
    ASSERT_UEQ(pool_workers(p), weft_cpu_count());
    wait_children((int)weft_cpu_count());
    /* Bad arguments of the calls, as for thread pools. */
    uint64_t x = 3;
    weft_future *f = (weft_future *)1;
    weft_imap *it = (weft_imap *)1;
    weft_bytes *b = (weft_bytes *)1;
    ASSERT_STATUS(weft_pool_submit(p, NULL, &x, 8, &f), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_pool_submit(p, pproc_task_sq, NULL, 8, &f), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_pool_map(p, pproc_task_sq, &x, 0, 1, 0, WEFT_FOREVER, &b), WEFT_INVALID_ARGUMENT);
    ASSERT_STATUS(weft_pool_map_async(p, pproc_task_sq, &x, SIZE_MAX / 2, 3, 0, &f), WEFT_INVALID_ARGUMENT);
    ASSERT_STATUS(weft_pool_imap(p, pproc_task_sq, src_empty, NULL, 1, 1, 2, &it), WEFT_INVALID_ARGUMENT);
    ASSERT_PTR_EQ(f, (weft_future *)1);
    ASSERT_PTR_EQ(b, (weft_bytes *)1);
    ASSERT_PTR_EQ(it, (weft_imap *)1);
    /* The pool, in a forked child of its owner: its workers are the parent's. */
    xp_wait_ok(xp_fork(use_parents_pool, p));
    /* Still usable here. */
    weft_bytes *r = NULL;
    ASSERT_OK(weft_pool_apply(p, pproc_task_sq, &x, 8, WEFT_FOREVER, &r));
    ASSERT_UEQ(bytes_u64(r), 10);
    weft_bytes_free(r);
    ASSERT_OK(weft_pool_shutdown(p, true, false, WEFT_FOREVER));
    weft_pool_free(p);
    ASSERT_EQ(child_count(), 0);
}

/* ---- submit and apply ------------------------------------------------------------------------ */

TEST_TIMEOUT(pool_process_submit_two_thousand_exact, 60000) {
    enum { N = 2000, W = 2 };
    static weft_future *fs[N];
    weft_pool *p = new_pool(W);
    for (uint64_t i = 0; i < N; i++) fs[i] = submit_u64(p, pproc_task_sq_pid, i);
    int32_t pids[W + 1];
    int npids = 0;
    for (uint64_t i = 0; i < N; i++) {
        uint64_t r[2];
        result_pair(fs[i], r);
        if (r[0] != sq(i)) FAIL_AT("task %" PRIu64 ": %" PRIu64 " instead of %" PRIu64, i, r[0], sq(i));
        ASSERT_EQ(weft_future_state(fs[i]), WEFT_FUTURE_DONE);
        ASSERT_NE((pid_t)r[1], getpid()); /* ran in a worker process */
        note_pid(pids, &npids, W, (int32_t)r[1]); /* at most W distinct processes */
        weft_future_free(fs[i]);
    }
    ASSERT_OK(weft_pool_shutdown(p, true, false, WEFT_FOREVER));
    for (int i = 0; i < npids; i++) ASSERT(pid_gone(pids[i])); /* the workers left, reaped */
    ASSERT_EQ(zombie_children(), 0);
    weft_pool_free(p);
}

TEST(pool_process_apply_success_failure_timeout) {
    board *bd = new_board();
    weft_pool *p = new_pool(2);
    uint64_t x = 12;
    weft_bytes *r = NULL;
    ASSERT_OK(weft_pool_apply(p, pproc_task_sq, &x, 8, WEFT_FOREVER, &r));
    ASSERT_UEQ(bytes_u64(r), 145);
    weft_bytes_free(r);
    ASSERT_OK(weft_pool_apply(p, pproc_task_sq, &x, 8, WEFT_FOREVER, NULL)); /* result not wanted */
    /* A failing task: WEFT_TASK_FAILED naming the task's status and message, sent back from
     * the worker process. */
    x = 5 | BAD;
    r = (weft_bytes *)1;
    ASSERT_STATUS(weft_pool_apply(p, pproc_task_sq, &x, 8, WEFT_FOREVER, &r), WEFT_TASK_FAILED);
    ASSERT_CONTAINS(weft_last_error_message(), "WEFT_NOT_FOUND");
    ASSERT_CONTAINS(weft_last_error_message(), "bad item 5");
    ASSERT_PTR_EQ(r, (weft_bytes *)1);
    ASSERT_STATUS(weft_pool_apply(p, pproc_task_returns_timeout, NULL, 0, WEFT_FOREVER, &r), WEFT_TASK_FAILED);
    ASSERT_CONTAINS(weft_last_error_message(), "WEFT_TIMEOUT");
    ASSERT_CONTAINS(weft_last_error_message(), "my own timeout");
    /* The call's own timeout (WEFT_TIMEOUT) leaves the task running. */
    weft_event *go = shared_event();
    targ a = targ_event(bd, 0, go);
    ASSERT_STATUS(weft_pool_apply(p, pproc_task_gate, &a, sizeof a, 30 * MS, &r), WEFT_TIMEOUT);
    ASSERT_STATUS(weft_pool_apply(p, pproc_task_gate, &a, sizeof a, 0, &r), WEFT_TIMEOUT);
    ASSERT_PTR_EQ(r, (weft_bytes *)1);
    xp_wait_count(&bd->started, 2); /* both run, one per worker */
    ASSERT_EQ(atomic_load(&bd->finished), 0);
    ASSERT_OK(weft_event_set(go));
    ASSERT_OK(weft_pool_close(p));
    ASSERT_OK(weft_pool_join(p, WEFT_FOREVER));
    ASSERT_EQ(atomic_load(&bd->finished), 2); /* both ran to the end */
    ASSERT_EQ(atomic_load(&bd->wait_status), WEFT_OK);
    weft_event_free(go);
    weft_pool_free(p);
}

/* ---- map and map_async ----------------------------------------------------------------------- */

TEST_TIMEOUT(pool_process_map_chunksizes, 60000) {
    enum { N = 1000 };
    static uint64_t items[N];
    for (size_t i = 0; i < N; i++) items[i] = i * 7 + 3;
    weft_pool *p = new_pool(3);
    const size_t sizes[] = {0, 1, 7, 999, 1000, 1001, SIZE_MAX};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        weft_bytes *r = NULL;
        ASSERT_OK(weft_pool_map(p, pproc_task_sq, items, 8, N, sizes[s], WEFT_FOREVER, &r));
        assert_packed_sq(r, items, N);
        weft_bytes_free(r);
        ASSERT_OK(weft_pool_map(p, pproc_task_sq, items, 8, 5, sizes[s], WEFT_FOREVER, &r));
        assert_packed_sq(r, items, 5);
        weft_bytes_free(r);
        ASSERT_OK(weft_pool_map(p, pproc_task_sq, items + 9, 8, 1, sizes[s], WEFT_FOREVER, &r));
        assert_packed_sq(r, items + 9, 1);
        weft_bytes_free(r);
    }
    /* A larger map with the automatic chunk size (about four chunks per worker). */
    enum { M = 20000 };
    uint64_t *many = malloc(M * sizeof *many);
    ASSERT_NOT_NULL(many);
    for (size_t i = 0; i < M; i++) many[i] = i ^ 0x5a5a;
    weft_bytes *r = NULL;
    ASSERT_OK(weft_pool_map(p, pproc_task_sq, many, 8, M, 0, WEFT_FOREVER, &r));
    assert_packed_sq(r, many, M);
    weft_bytes_free(r);
    free(many);
    /* No items: an empty result at once. */
    ASSERT_OK(weft_pool_map(p, pproc_task_sq, NULL, 8, 0, 0, WEFT_FOREVER, &r));
    ASSERT_UEQ(weft_bytes_len(r), 0);
    weft_bytes_free(r);
    ASSERT_OK(weft_pool_shutdown(p, true, false, WEFT_FOREVER));
    weft_pool_free(p);
}

TEST_TIMEOUT(pool_process_map_first_failing_item, 60000) {
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
        ASSERT_STATUS(weft_pool_map(p, pproc_task_sq, items, 8, N, sizes[s], WEFT_FOREVER, &r), WEFT_TASK_FAILED);
        const char *m = weft_last_error_message();
        ASSERT_CONTAINS(m, "WEFT_NOT_FOUND");
        ASSERT_CONTAINS(m, "item 123");
        ASSERT_CONTAINS(m, "bad item 123");
        ASSERT(strstr(m, "200") == NULL);
        ASSERT_PTR_EQ(r, (weft_bytes *)1);
        weft_future *f = NULL;
        ASSERT_OK(weft_pool_map_async(p, pproc_task_sq, items, 8, N, sizes[s], &f));
        ASSERT_STATUS(weft_future_result(f, WEFT_FOREVER, NULL, NULL), WEFT_NOT_FOUND);
        ASSERT_CONTAINS(weft_last_error_message(), "item 123 failed: bad item 123");
        ASSERT_EQ(weft_future_state(f), WEFT_FUTURE_FAILED);
        weft_future_free(f);
    }
    /* The workers are fine afterwards. */
    uint64_t x = 4;
    weft_bytes *r = NULL;
    ASSERT_OK(weft_pool_apply(p, pproc_task_sq, &x, 8, WEFT_FOREVER, &r));
    ASSERT_UEQ(bytes_u64(r), 17);
    weft_bytes_free(r);
    weft_pool_free(p);
}

TEST(pool_process_map_async_result_and_cancel) {
    enum { N = 50 };
    uint64_t items[N];
    for (size_t i = 0; i < N; i++) items[i] = i + 100;
    board *bd = new_board();
    weft_pool *p = new_pool(1);
    weft_future *f = NULL;
    ASSERT_OK(weft_pool_map_async(p, pproc_task_sq, items, 8, N, 4, &f));
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

    /* The only worker is blocked and its queue is full: the map's chunks stay with the parent,
     * and cancelling the map cancels them all. */
    weft_event *go = shared_event();
    targ g = targ_event(bd, 0, go);
    weft_future *blocker = submit_targ(p, pproc_task_gate, &g);
    xp_wait_count(&bd->started, 1);
    static weft_future *fill[1024];
    int n = 0;
    int pending = fill_window(p, bd, fill, &n, 1024);
    targ mitems[N];
    for (size_t i = 0; i < N; i++) mitems[i] = targ_of(bd, 1000 + (int)(i % 20));
    ASSERT_OK(weft_pool_map_async(p, pproc_task_count, mitems, sizeof(targ), N, 3, &f));
    ASSERT_EQ(weft_future_state(f), WEFT_FUTURE_PENDING);
    ASSERT_STATUS(weft_future_result(f, 0, NULL, NULL), WEFT_TIMEOUT);
    bool cancelled = false;
    ASSERT_OK(weft_future_cancel(f, &cancelled));
    ASSERT(cancelled);
    assert_cancelled(f);
    ASSERT_OK(weft_event_set(go));
    assert_result_str(blocker, "opened");
    ASSERT_OK(weft_pool_shutdown(p, true, false, WEFT_FOREVER));
    for (int i = 0; i < n; i++) {
        assert_result_str(fill[i], "ran"); /* the tasks before the map ran */
        weft_future_free(fill[i]);
    }
    ASSERT(pending >= 1);
    for (int i = 1000; i < 1020; i++) ASSERT_EQ(atomic_load(&bd->counts[i]), 0); /* no chunk of the map ran */
    ASSERT_EQ(atomic_load(&bd->ran), n);
    weft_future_free(f);
    weft_future_free(blocker);
    weft_event_free(go);
    weft_pool_free(p);
}

/* ---- imap ------------------------------------------------------------------------------------ */

/* An input for imap: items 0, 1, 2, ... up to `limit` (UINT64_MAX: endless); the item `bad`
 * gets the BAD bit. */
typedef struct {
    uint64_t next, limit, bad;
    uint64_t item;
    int calls;
    uint32_t caller_tid;
} source;

static source source_of(uint64_t limit) {
    source s;
    memset(&s, 0, sizeof s);
    s.limit = limit;
    s.bad = UINT64_MAX;
    return s;
}

static weft_status src_next(void *ctx, const void **item, size_t *len) {
    source *s = ctx;
    s->calls++;
    if (s->caller_tid) ASSERT_EQ(my_tid(), s->caller_tid); /* only on the caller's thread */
    if (s->next >= s->limit) return WEFT_CLOSED;
    s->item = s->next == s->bad ? s->next | BAD : s->next;
    s->next++;
    *item = &s->item;
    *len = sizeof s->item;
    return WEFT_OK;
}

static weft_imap *new_imap(weft_pool *p, source *s, size_t chunksize, size_t max_chunks, uint32_t flags) {
    weft_imap *it = NULL;
    ASSERT_OK(weft_pool_imap(p, pproc_task_sq, src_next, s, chunksize, max_chunks, flags, &it));
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

TEST(pool_process_imap_endless_input_read_only_as_results_are_taken) {
    weft_pool *p = new_pool(2);
    const size_t chunksize = 3, max_chunks = 4;
    source s = source_of(UINT64_MAX);
    s.caller_tid = my_tid();
    weft_imap *it = new_imap(p, &s, chunksize, max_chunks, 0);
    ASSERT_EQ(s.calls, 0); /* nothing is read before the first next */
    for (uint64_t i = 0; i < 60; i++) {
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
    for (uint64_t i = 0; i < 20; i++) {
        ASSERT_UEQ(imap_take(it), sq(i));
        ASSERT_LE(s.calls, (int)(i + 1 + 2 * 2));
    }
    weft_imap_free(it);
    /* Unordered too. */
    s = source_of(UINT64_MAX);
    it = new_imap(p, &s, 2, 3, WEFT_IMAP_UNORDERED);
    for (int i = 0; i < 30; i++) {
        weft_bytes *b = NULL;
        ASSERT_OK(weft_imap_next(it, WEFT_FOREVER, &b));
        weft_bytes_free(b);
        ASSERT_LE(s.calls, i + 1 + 1 + 3 * 2);
    }
    calls = s.calls;
    weft_imap_free(it);
    ASSERT_EQ(s.calls, calls);
    /* The pool is still fine (the chunks cancelled by the frees left no trace). */
    uint64_t x = 6;
    weft_bytes *r = NULL;
    ASSERT_OK(weft_pool_apply(p, pproc_task_sq, &x, 8, WEFT_FOREVER, &r));
    ASSERT_UEQ(bytes_u64(r), 37);
    weft_bytes_free(r);
    ASSERT_OK(weft_pool_shutdown(p, true, false, WEFT_FOREVER));
    weft_pool_free(p);
}

TEST_TIMEOUT(pool_process_imap_unordered_delivers_every_item_once, 60000) {
    enum { N = 2000 };
    static uint64_t seen[N];
    weft_pool *p = new_pool(3);
    const size_t sizes[] = {1, 3, 64};
    for (size_t k = 0; k < sizeof sizes / sizeof sizes[0]; k++) {
        memset(seen, 0, sizeof seen);
        source s = source_of(N);
        weft_imap *it = new_imap(p, &s, sizes[k], 5, WEFT_IMAP_UNORDERED);
        uint64_t x = 0;
        for (int i = 0; i < N; i++) {
            uint64_t r = imap_take(it);
            /* r = x * x + 1, with x near the last one (results come about in order). */
            while (x > 0 && sq(x) > r) x--;
            while (x < N && sq(x) < r) x++;
            ASSERT(x < N && sq(x) == r);
            seen[x]++;
        }
        weft_bytes *b = (weft_bytes *)1;
        ASSERT_STATUS(weft_imap_next(it, WEFT_FOREVER, &b), WEFT_CLOSED);
        ASSERT_STATUS(weft_imap_next(it, 0, &b), WEFT_CLOSED); /* and stays so */
        ASSERT_PTR_EQ(b, (weft_bytes *)1);
        for (int v = 0; v < N; v++)
            if (seen[v] != 1) FAIL_AT("item %d delivered %" PRIu64 " times", v, seen[v]);
        weft_imap_free(it);
    }
    weft_pool_free(p);
}

TEST(pool_process_imap_item_failure_then_iteration_goes_on) {
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

/* ---- initializer ----------------------------------------------------------------------------- */

TEST(pool_process_initializer_once_per_worker_state_stays_in_the_worker) {
    enum { W = 3, N = 300 };
    board *bd = new_board();
    weft_pool_options o = popts(W);
    init_arg ia = {4242, bd};
    o.initializer = pproc_init_store;
    o.initializer_arg = &ia;
    o.initializer_arg_len = sizeof ia;
    pproc_worker_state = 0;
    weft_pool *p = new_pool_with(&o);
    ia.value = 0; /* the argument was copied */
    static weft_future *fs[N];
    for (int i = 0; i < N; i++) fs[i] = submit(p, pproc_task_state, NULL, 0);
    int32_t pids[W];
    int npids = 0;
    for (int i = 0; i < N; i++) {
        uint64_t r[2];
        result_pair(fs[i], r);
        ASSERT_UEQ(r[0], 4242); /* every task sees its worker's initialised state */
        note_pid(pids, &npids, W, (int32_t)r[1]);
        weft_future_free(fs[i]);
    }
    ASSERT_UEQ(pproc_worker_state, 0); /* the parent's copy is untouched */
    ASSERT_OK(weft_pool_close(p));
    ASSERT_OK(weft_pool_join(p, WEFT_FOREVER));
    ASSERT_EQ(atomic_load(&bd->inits), W); /* once per worker process */
    /* Each task ran in a process whose initializer ran. */
    for (int i = 0; i < npids; i++) {
        bool found = false;
        for (int k = 0; k < W; k++) found = found || atomic_load(&bd->init_pids[k]) == pids[i];
        ASSERT(found);
    }
    /* The initializers ran in W distinct processes, none of them this one. */
    for (int k = 0; k < W; k++) {
        ASSERT_NE(atomic_load(&bd->init_pids[k]), (int)getpid());
        for (int j = 0; j < k; j++) ASSERT_NE(atomic_load(&bd->init_pids[k]), atomic_load(&bd->init_pids[j]));
    }
    weft_pool_free(p);
}

TEST(pool_process_failing_initializer_breaks_the_pool) {
    board *bd = new_board();
    weft_pool_options o = popts(2);
    o.initializer = pproc_init_fail;
    weft_pool *p = new_pool_with(&o);
    /* A task queued before the break fails with the initializer's status and message; once
     * broken, the pool refuses tasks with it. */
    targ a = targ_of(bd, 0);
    weft_future *f = NULL;
    weft_status st = weft_pool_submit(p, pproc_task_count, &a, sizeof a, &f);
    if (st == WEFT_OK) {
        ASSERT_STATUS(weft_future_result(f, WEFT_FOREVER, NULL, NULL), WEFT_PERMISSION_DENIED);
        ASSERT_CONTAINS(weft_last_error_message(), "initializer");
        ASSERT_CONTAINS(weft_last_error_message(), "cannot initialise");
        ASSERT_EQ(weft_future_state(f), WEFT_FUTURE_FAILED);
        weft_future_free(f);
    } else {
        ASSERT_STATUS(st, WEFT_PERMISSION_DENIED);
    }
    uint64_t deadline = runner_now_ns() + 10 * SEC;
    for (;;) {
        f = NULL;
        st = weft_pool_submit(p, pproc_task_count, &a, sizeof a, &f);
        if (st != WEFT_OK) break;
        ASSERT_STATUS(weft_future_result(f, WEFT_FOREVER, NULL, NULL), WEFT_PERMISSION_DENIED);
        weft_future_free(f);
        ASSERT(runner_now_ns() < deadline);
    }
    ASSERT_STATUS(st, WEFT_PERMISSION_DENIED);
    ASSERT_CONTAINS(weft_last_error_message(), "WEFT_PERMISSION_DENIED");
    ASSERT_CONTAINS(weft_last_error_message(), "cannot initialise");
    uint64_t x = 2;
    ASSERT_STATUS(weft_pool_apply(p, pproc_task_sq, &x, 8, WEFT_FOREVER, NULL), WEFT_PERMISSION_DENIED);
    weft_bytes *b = NULL;
    ASSERT_STATUS(weft_pool_map(p, pproc_task_sq, &x, 8, 1, 1, WEFT_FOREVER, &b), WEFT_PERMISSION_DENIED);
    /* An imap: the initializer's failure once, then the end. */
    source s = source_of(10);
    weft_imap *it = new_imap(p, &s, 1, 2, 0);
    ASSERT_STATUS(weft_imap_next(it, WEFT_FOREVER, NULL), WEFT_PERMISSION_DENIED);
    ASSERT_CONTAINS(weft_last_error_message(), "cannot initialise");
    ASSERT_STATUS(weft_imap_next(it, WEFT_FOREVER, NULL), WEFT_CLOSED);
    weft_imap_free(it);
    ASSERT_EQ(atomic_load(&bd->ran), 0); /* no task ever ran */
    ASSERT_OK(weft_pool_close(p));
    ASSERT_OK(weft_pool_join(p, WEFT_FOREVER)); /* the workers are gone, none replaced */
    ASSERT_EQ(child_count(), 0);
    weft_pool_free(p);
}

/* ---- max_tasks_per_worker -------------------------------------------------------------------- */

TEST(pool_process_max_tasks_per_worker_replaces_worker_processes) {
    board *bd = new_board();
    weft_pool_options o = popts(1);
    init_arg ia = {7, bd};
    o.max_tasks_per_worker = 3;
    o.initializer = pproc_init_store;
    o.initializer_arg = &ia;
    o.initializer_arg_len = sizeof ia;
    weft_pool *p = new_pool_with(&o);
    enum { N = 12 };
    weft_future *fs[N];
    for (int i = 0; i < N; i++) fs[i] = submit(p, pproc_task_state, NULL, 0);
    int32_t pids[N];
    for (int i = 0; i < N; i++) {
        uint64_t r[2];
        result_pair(fs[i], r);
        ASSERT_UEQ(r[0], 7); /* each replacement ran the initializer */
        pids[i] = (int32_t)r[1];
        weft_future_free(fs[i]);
    }
    /* One worker at a time, each for exactly three tasks, in order: four distinct processes. */
    for (int i = 0; i < N; i++) {
        if (i % 3 != 0) ASSERT_EQ(pids[i], pids[i - 1]);
        for (int j = 0; j < i; j++)
            if (j / 3 != i / 3) ASSERT_NE(pids[i], pids[j]);
    }
    /* The retired ones are gone, and reaped. */
    for (int i = 0; i < 9; i += 3) wait_pid_gone(pids[i]);
    ASSERT_OK(weft_pool_close(p));
    ASSERT_OK(weft_pool_join(p, WEFT_FOREVER));
    ASSERT(pid_gone(pids[9]));
    ASSERT_GE(atomic_load(&bd->inits), 4);
    ASSERT_LE(atomic_load(&bd->inits), 5); /* the fifth replacement may have started */
    ASSERT_EQ(child_count(), 0);
    weft_pool_free(p);

    /* Two workers, two tasks each: no process runs more than two tasks; all complete. */
    o = popts(2);
    o.max_tasks_per_worker = 2;
    p = new_pool_with(&o);
    enum { M = 40 };
    weft_future *gs[M];
    for (uint64_t i = 0; i < M; i++) gs[i] = submit_u64(p, pproc_task_sq_pid, i);
    int32_t seen[M];
    int uses[M] = {0}, nseen = 0;
    for (uint64_t i = 0; i < M; i++) {
        uint64_t r[2];
        result_pair(gs[i], r);
        ASSERT_UEQ(r[0], sq(i));
        uses[note_pid(seen, &nseen, M, (int32_t)r[1])]++;
        weft_future_free(gs[i]);
    }
    /* Twenty processes ran two tasks each, or a few ran one when the tasks ran out. */
    ASSERT_GE(nseen, M / 2);
    for (int i = 0; i < nseen; i++) ASSERT_LE(uses[i], 2);
    ASSERT_OK(weft_pool_shutdown(p, true, false, WEFT_FOREVER));
    for (int i = 0; i < nseen; i++) ASSERT(pid_gone(seen[i]));
    ASSERT_EQ(zombie_children(), 0);
    weft_pool_free(p);
}

TEST(pool_process_max_tasks_per_worker_after_close_runs_every_queued_task) {
    board *bd = new_board();
    weft_pool_options o = popts(1);
    o.max_tasks_per_worker = 1;
    weft_pool *p = new_pool_with(&o);
    weft_event *go = shared_event();
    targ g = targ_event(bd, 0, go);
    weft_future *blocker = submit_targ(p, pproc_task_gate, &g);
    xp_wait_count(&bd->started, 1);
    enum { N = 5 };
    weft_future *fs[N];
    for (int i = 0; i < N; i++) {
        targ a = targ_of(bd, i);
        fs[i] = submit_targ(p, pproc_task_count, &a);
        ASSERT_EQ(weft_future_state(fs[i]), WEFT_FUTURE_PENDING); /* the worker takes one task */
    }
    ASSERT_OK(weft_pool_close(p));
    ASSERT_OK(weft_event_set(go));
    /* Closed: queued tasks still run, each on a fresh worker. */
    assert_result_str(blocker, "opened");
    for (int i = 0; i < N; i++) assert_result_str(fs[i], "ran");
    ASSERT_OK(weft_pool_join(p, WEFT_FOREVER));
    ASSERT_EQ(atomic_load(&bd->ran), N);
    for (int i = 0; i < N; i++) ASSERT_EQ(atomic_load(&bd->counts[i]), 1);
    ASSERT_EQ(child_count(), 0);
    for (int i = 0; i < N; i++) weft_future_free(fs[i]);
    weft_future_free(blocker);
    weft_event_free(go);
    weft_pool_free(p);
}

/* ---- resizing -------------------------------------------------------------------------------- */

/* Runs `n` barrier tasks (a shared barrier of n parties: they can only finish when n workers
 * run them at once) and returns their pids, which must be n distinct ones. */
static void meet(weft_pool *p, board *bd, int n, int32_t *pids) {
    weft_barrier *bar = shared_barrier((uint32_t)n);
    targ a = targ_barrier(bd, 0, bar);
    weft_future *fs[8];
    ASSERT_LE(n, 8);
    for (int i = 0; i < n; i++) fs[i] = submit_targ(p, pproc_task_barrier, &a);
    for (int i = 0; i < n; i++) {
        pids[i] = result_pid(fs[i]);
        for (int j = 0; j < i; j++) ASSERT_NE(pids[i], pids[j]);
        weft_future_free(fs[i]);
    }
    weft_barrier_free(bar);
}

TEST(pool_process_set_workers_grow_and_shrink) {
    board *bd = new_board();
    weft_pool *p = new_pool(1);
    ASSERT_UEQ(pool_workers(p), 1);
    wait_children(1);
    ASSERT_OK(weft_pool_set_workers(p, 4));
    ASSERT_UEQ(pool_workers(p), 4);
    /* Four tasks that can only finish together: four worker processes really run. */
    int32_t four[4];
    meet(p, bd, 4, four);
    ASSERT_EQ(child_count(), 4);
    /* Shrink: surplus workers leave; from then on one task at a time, in one process. */
    ASSERT_OK(weft_pool_set_workers(p, 1));
    ASSERT_UEQ(pool_workers(p), 1);
    enum { N = 16 };
    weft_future *fs[N];
    targ a = targ_of(bd, 0);
    for (int i = 0; i < N; i++) fs[i] = submit_targ(p, pproc_task_crowd, &a);
    int32_t survivor = 0;
    for (int i = 0; i < N; i++) {
        int32_t pid = result_pid(fs[i]);
        if (i == 0) survivor = pid;
        ASSERT_EQ(pid, survivor);
        weft_future_free(fs[i]);
    }
    ASSERT_EQ(atomic_load(&bd->max_running), 1);
    int gone = 0;
    for (int i = 0; i < 4; i++)
        if (four[i] != survivor) {
            wait_pid_gone(four[i]); /* the surplus processes ended and were reaped */
            gone++;
        }
    ASSERT_EQ(gone, 3);
    ASSERT(!pid_gone(survivor));
    ASSERT_EQ(child_count(), 1);
    /* Grow again, and 0 means the CPU count. */
    ASSERT_OK(weft_pool_set_workers(p, 0));
    ASSERT_UEQ(pool_workers(p), weft_cpu_count());
    ASSERT_OK(weft_pool_set_workers(p, 3));
    ASSERT_UEQ(pool_workers(p), 3);
    int32_t three[3];
    meet(p, bd, 3, three);
    ASSERT_OK(weft_pool_close(p));
    ASSERT_STATUS(weft_pool_set_workers(p, 2), WEFT_CLOSED);
    ASSERT_OK(weft_pool_join(p, WEFT_FOREVER));
    for (int i = 0; i < 3; i++) ASSERT(pid_gone(three[i]));
    ASSERT_EQ(child_count(), 0);
    weft_pool_free(p);
}

/* ---- cancellation ---------------------------------------------------------------------------- */

TEST(pool_process_cancel_pending_task_never_runs) {
    board *bd = new_board();
    weft_pool *p = new_pool(1);
    weft_event *go = shared_event();
    targ g = targ_event(bd, 0, go);
    weft_future *blocker = submit_targ(p, pproc_task_gate, &g);
    xp_wait_count(&bd->started, 1);
    static weft_future *fs[1024];
    int n = 0;
    int victim = fill_window(p, bd, fs, &n, 1000);
    /* Tasks sent to the busy worker count as running: a cancel only asks (and none asks here);
     * the one the parent holds is pending and is cancelled for good. */
    ASSERT_EQ(weft_future_state(fs[victim]), WEFT_FUTURE_PENDING);
    bool cancelled = false;
    ASSERT_OK(weft_future_cancel(fs[victim], &cancelled));
    ASSERT(cancelled);
    assert_cancelled(fs[victim]);
    ASSERT_OK(weft_future_cancel(fs[victim], &cancelled)); /* again: still true */
    ASSERT(cancelled);
    targ after = targ_of(bd, n);
    weft_future *fafter = submit_targ(p, pproc_task_count, &after);
    ASSERT_OK(weft_event_set(go));
    assert_result_str(blocker, "opened");
    assert_result_str(fafter, "ran");
    ASSERT_OK(weft_pool_shutdown(p, true, false, WEFT_FOREVER));
    for (int i = 0; i < n; i++) {
        if (i != victim) assert_result_str(fs[i], "ran");
        ASSERT_EQ(atomic_load(&bd->counts[i]), i == victim ? 0 : 1);
        weft_future_free(fs[i]);
    }
    ASSERT_EQ(atomic_load(&bd->counts[n]), 1);
    ASSERT_EQ(atomic_load(&bd->ran), n); /* everything but the victim, plus `after` */
    weft_future_free(fafter);
    weft_future_free(blocker);
    weft_event_free(go);
    weft_pool_free(p);
}

TEST(pool_process_cancel_running_task_cooperative) {
    board *bd = new_board();
    weft_pool *p = new_pool(1);
    targ a = targ_of(bd, 0);
    weft_future *f = submit_targ(p, pproc_task_until_cancelled, &a);
    weft_future *next = submit(p, pproc_task_check_not_cancelled, NULL, 0); /* queued behind it */
    xp_wait_count(&bd->started, 1);
    ASSERT_EQ(weft_future_state(f), WEFT_FUTURE_RUNNING);
    ASSERT(!weft_future_cancel_requested(f));
    bool cancelled = true;
    ASSERT_OK(weft_future_cancel(f, &cancelled));
    ASSERT(!cancelled); /* running: only a request */
    ASSERT(weft_future_cancel_requested(f));
    assert_cancelled(f); /* the task, in the worker process, saw it and honoured it */
    ASSERT_EQ(atomic_load(&bd->saw_cancel), 1);
    /* The worker goes on (the same process), its next task not cancelled. */
    ASSERT_EQ(result_pid(next), atomic_load(&bd->pid));
    weft_future *again = submit(p, pproc_task_check_not_cancelled, NULL, 0);
    ASSERT_EQ(result_pid(again), atomic_load(&bd->pid));

    /* A task cancelled while it waits in its worker's queue (sent: it counts as running, so
     * the cancel only asks) sees the request once it starts. */
    weft_event *go = shared_event();
    targ g = targ_event(bd, 5, go);
    weft_future *blocker = submit_targ(p, pproc_task_gate, &g);
    xp_wait_count(&bd->started, 2);
    targ a2 = targ_of(bd, 6);
    weft_future *queued = submit_targ(p, pproc_task_until_cancelled, &a2);
    ASSERT_EQ(weft_future_state(queued), WEFT_FUTURE_RUNNING);
    ASSERT_OK(weft_future_cancel(queued, &cancelled));
    ASSERT(!cancelled);
    ASSERT_EQ(atomic_load(&bd->started), 2); /* it has not started */
    ASSERT_OK(weft_event_set(go));
    assert_result_str(blocker, "opened");
    assert_cancelled(queued);
    ASSERT_EQ(atomic_load(&bd->saw_cancel), 2);
    ASSERT_EQ(atomic_load(&bd->started), 3);
    ASSERT_OK(weft_pool_shutdown(p, true, false, WEFT_FOREVER));
    weft_future_free(queued);
    weft_future_free(blocker);
    weft_event_free(go);
    weft_future_free(again);
    weft_future_free(next);
    weft_future_free(f);
    weft_pool_free(p);
}

TEST(pool_process_cancel_running_task_blocked_in_a_weft_wait) {
    board *bd = new_board();
    weft_pool *p = new_pool(1);
    /* Blocked forever in weft_event_wait on an event the task created itself. */
    targ a = targ_of(bd, 0);
    weft_future *f = submit_targ(p, pproc_task_wait_own_event, &a);
    weft_future *next = submit(p, pproc_task_check_not_cancelled, NULL, 0);
    wait_task_sleeping(bd);
    int pid = atomic_load(&bd->pid);
    bool cancelled = true;
    ASSERT_OK(weft_future_cancel(f, &cancelled));
    ASSERT(!cancelled);
    assert_cancelled(f);
    ASSERT_EQ(atomic_load(&bd->wait_status), WEFT_CANCELLED); /* the wait was woken */
    ASSERT_EQ(result_pid(next), pid); /* same worker, next task not cancelled */

    /* Blocked in a get on a shared weft queue. */
    weft_queue *q = NULL;
    ASSERT_OK(weft_queue_new_in(NULL, NULL, NULL, &q));
    atomic_store(&bd->tid, 0);
    atomic_store(&bd->wait_status, -1);
    targ qa = targ_queue(bd, 1, q);
    weft_future *g = submit_targ(p, pproc_task_queue_get, &qa);
    weft_future_free(next);
    next = submit(p, pproc_task_check_not_cancelled, NULL, 0);
    wait_task_sleeping(bd);
    ASSERT_EQ(atomic_load(&bd->pid), pid);
    ASSERT_OK(weft_future_cancel(g, &cancelled));
    ASSERT(!cancelled);
    assert_cancelled(g);
    ASSERT_EQ(atomic_load(&bd->wait_status), WEFT_CANCELLED);
    ASSERT_EQ(result_pid(next), pid);
    /* The queue is intact, and a later get in the same worker works. */
    ASSERT_OK(weft_queue_put(q, "item", 4, WEFT_FOREVER));
    weft_future *h = submit_targ(p, pproc_task_queue_get, &qa);
    assert_result_str(h, "item");
    size_t size = 99;
    ASSERT_OK(weft_queue_size(q, &size));
    ASSERT_UEQ(size, 0);
    ASSERT_OK(weft_pool_shutdown(p, true, false, WEFT_FOREVER));
    weft_future_free(h);
    weft_future_free(g);
    weft_future_free(next);
    weft_future_free(f);
    weft_queue_free(q);
    weft_pool_free(p);
}

/* ---- close, join, shutdown, terminate, free -------------------------------------------------- */

TEST(pool_process_close_and_join) {
    board *bd = new_board();
    weft_pool *p = new_pool(2);
    ASSERT_STATUS(weft_pool_join(p, 0), WEFT_INVALID_STATE); /* open */
    ASSERT_STATUS(weft_pool_join(p, WEFT_FOREVER), WEFT_INVALID_STATE);
    weft_event *go = shared_event();
    targ g = targ_event(bd, 0, go);
    weft_future *blocker = submit_targ(p, pproc_task_gate, &g);
    xp_wait_count(&bd->started, 1);
    enum { N = 50 };
    weft_future *fs[N];
    for (uint64_t i = 0; i < N; i++) fs[i] = submit_u64(p, pproc_task_sq, i);
    ASSERT_OK(weft_pool_close(p));
    ASSERT_OK(weft_pool_close(p)); /* twice is fine */
    weft_future *f = (weft_future *)1;
    uint64_t x = 1;
    ASSERT_STATUS(weft_pool_submit(p, pproc_task_sq, &x, 8, &f), WEFT_CLOSED);
    ASSERT_PTR_EQ(f, (weft_future *)1);
    ASSERT_STATUS(weft_pool_apply(p, pproc_task_sq, &x, 8, WEFT_FOREVER, NULL), WEFT_CLOSED);
    weft_bytes *b = NULL;
    ASSERT_STATUS(weft_pool_map(p, pproc_task_sq, &x, 8, 1, 0, WEFT_FOREVER, &b), WEFT_CLOSED);
    ASSERT_STATUS(weft_pool_map_async(p, pproc_task_sq, &x, 8, 1, 0, &f), WEFT_CLOSED);
    ASSERT_STATUS(weft_pool_set_workers(p, 3), WEFT_CLOSED);
    /* A worker is still busy: join times out. */
    ASSERT_STATUS(weft_pool_join(p, 20 * MS), WEFT_TIMEOUT);
    ASSERT_EQ(child_count(), 2);
    ASSERT_OK(weft_event_set(go));
    ASSERT_OK(weft_pool_join(p, WEFT_FOREVER));
    ASSERT_OK(weft_pool_join(p, 0)); /* again: still joined */
    ASSERT_EQ(child_count(), 0); /* every worker process left and was reaped */
    for (uint64_t i = 0; i < N; i++) {
        ASSERT_EQ(weft_future_state(fs[i]), WEFT_FUTURE_DONE);
        ASSERT_UEQ(result_u64(fs[i]), sq(i));
        weft_future_free(fs[i]);
    }
    assert_result_str(blocker, "opened");
    ASSERT_UEQ(pool_workers(p), 2);
    weft_future_free(blocker);
    weft_event_free(go);
    weft_pool_free(p);
}

/* weft_pool_join and weft_pool_shutdown(wait) with timeout 0 on a process pool whose workers
 * are still busy return WEFT_TIMEOUT, as for a thread pool (test_pool.c). */
TEST(pool_process_join_timeout_zero_is_a_timeout) {
    board *bd = new_board();
    weft_pool *p = new_pool(1);
    weft_event *go = shared_event();
    targ g = targ_event(bd, 0, go);
    weft_future *blocker = submit_targ(p, pproc_task_gate, &g);
    xp_wait_count(&bd->started, 1);
    ASSERT_OK(weft_pool_close(p));
    weft_status join0 = weft_pool_join(p, 0);
    weft_status shut0 = weft_pool_shutdown(p, true, false, 0);
    ASSERT_OK(weft_event_set(go));
    ASSERT_OK(weft_pool_join(p, WEFT_FOREVER));
    assert_result_str(blocker, "opened");
    weft_future_free(blocker);
    weft_event_free(go);
    weft_pool_free(p);
    ASSERT_STATUS(join0, WEFT_TIMEOUT);
    ASSERT_STATUS(shut0, WEFT_TIMEOUT);
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

TEST(pool_process_shutdown_cancel_pending_wakes_waiters) {
    board *bd = new_board();
    weft_pool *p = new_pool(1);
    weft_event *go = shared_event();
    targ g = targ_event(bd, 0, go);
    weft_future *running = submit_targ(p, pproc_task_gate, &g);
    xp_wait_count(&bd->started, 1);
    /* Tasks sent to the worker (running, not cancellable), then ones the parent holds. */
    static weft_future *sent[1024];
    int nsent = 0;
    int first = fill_window(p, bd, sent, &nsent, 1000);
    ASSERT_EQ(first, nsent - 1);
    enum { N = 6 };
    weft_future *pending[N];
    pending[0] = sent[--nsent];
    for (int i = 1; i < N; i++) {
        targ a = targ_of(bd, 1000 + i);
        pending[i] = submit_targ(p, pproc_task_count, &a);
        ASSERT_EQ(weft_future_state(pending[i]), WEFT_FUTURE_PENDING);
    }
    /* Blocked: a result waiter, a futures_wait waiter and an as_completed iterator. */
    waiter wr = {.f = pending[3]}, ww = {.f = pending[5]}, wa;
    memset(&wa, 0, sizeof wa);
    ASSERT_OK(weft_as_completed_new(pending, N, &wa.ac));
    pthread_t t1 = spawn(wait_result, &wr), t2 = spawn(wait_futures, &ww), t3 = spawn(wait_as_completed, &wa);
    wait_blocked(&wr.tid);
    wait_blocked(&ww.tid);
    wait_blocked(&wa.tid);
    /* While the running task blocks, a waiting shutdown times out. */
    ASSERT_STATUS(weft_pool_shutdown(p, true, false, 20 * MS), WEFT_TIMEOUT);
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
    /* The running task finishes; those sent to the worker and not taken were cancelled too. */
    ASSERT_EQ(weft_future_state(running), WEFT_FUTURE_RUNNING);
    ASSERT_OK(weft_event_set(go));
    ASSERT_OK(weft_pool_shutdown(p, true, false, WEFT_FOREVER));
    assert_result_str(running, "opened");
    for (int i = 0; i < nsent; i++) {
        assert_cancelled(sent[i]);
        weft_future_free(sent[i]);
    }
    ASSERT_EQ(atomic_load(&bd->ran), 0);
    ASSERT_EQ(atomic_load(&bd->counts[first]), 0);
    for (int i = 1; i < N; i++) ASSERT_EQ(atomic_load(&bd->counts[1000 + i]), 0);
    uint64_t x = 1;
    weft_future *f = NULL;
    ASSERT_STATUS(weft_pool_submit(p, pproc_task_sq, &x, 8, &f), WEFT_CLOSED);
    ASSERT_EQ(child_count(), 0);
    for (int i = 0; i < N; i++) weft_future_free(pending[i]);
    weft_future_free(running);
    weft_event_free(go);
    weft_pool_free(p);
}

TEST(pool_process_shutdown_without_cancel_runs_queued_tasks) {
    board *bd = new_board();
    weft_pool *p = new_pool(2);
    weft_event *go = shared_event();
    targ g0 = targ_event(bd, 0, go), g1 = targ_event(bd, 1, go);
    weft_future *b0 = submit_targ(p, pproc_task_gate, &g0);
    weft_future *b1 = submit_targ(p, pproc_task_gate, &g1);
    xp_wait_count(&bd->started, 2);
    static weft_future *fs[1024];
    int n = 0;
    fill_window(p, bd, fs, &n, 900);
    for (int i = 0; i < 40; i++) { /* and more held by the parent */
        targ a = targ_of(bd, n);
        fs[n++] = submit_targ(p, pproc_task_count, &a);
    }
    ASSERT_OK(weft_pool_shutdown(p, false, false, 0));
    ASSERT_OK(weft_event_set(go));
    ASSERT_OK(weft_pool_shutdown(p, true, false, WEFT_FOREVER));
    for (int i = 0; i < n; i++) {
        assert_result_str(fs[i], "ran");
        ASSERT_EQ(atomic_load(&bd->counts[i]), 1);
        weft_future_free(fs[i]);
    }
    ASSERT_EQ(atomic_load(&bd->ran), n);
    assert_result_str(b0, "opened");
    assert_result_str(b1, "opened");
    ASSERT_EQ(child_count(), 0);
    weft_future_free(b0);
    weft_future_free(b1);
    weft_event_free(go);
    weft_pool_free(p);
}

TEST(pool_process_terminate) {
    board *bd = new_board();
    weft_pool *p = new_pool(3);
    wait_children(3);
    weft_event *go = shared_event();
    /* Two tasks blocked in a weft wait, one polling weft_call_cancelled, and queued ones. */
    targ g0 = targ_event(bd, 0, go), g1 = targ_event(bd, 1, go), c = targ_of(bd, 2);
    weft_future *w1 = submit_targ(p, pproc_task_gate, &g0);
    weft_future *w2 = submit_targ(p, pproc_task_gate, &g1);
    weft_future *coop = submit_targ(p, pproc_task_until_cancelled, &c);
    xp_wait_count(&bd->started, 3);
    int32_t pids[3];
    for (int i = 0; i < 3; i++) {
        pids[i] = atomic_load(&bd->pids[i]);
        for (int j = 0; j < i; j++) ASSERT_NE(pids[i], pids[j]); /* one per worker */
    }
    static weft_future *fs[1024];
    int n = 0;
    fill_window(p, bd, fs, &n, 1000);
    ASSERT_OK(weft_pool_terminate(p, WEFT_FOREVER));
    /* Running tasks end cancelled (their workers were killed: the state they end in is
     * checked by pool_process_terminate_running_futures_end_in_the_cancelled_state). */
    weft_future *run[] = {w1, w2, coop};
    for (int i = 0; i < 3; i++) {
        ASSERT_STATUS(weft_future_result(run[i], WEFT_FOREVER, NULL, NULL), WEFT_CANCELLED);
        int32_t st = weft_future_state(run[i]);
        ASSERT(st == WEFT_FUTURE_CANCELLED || st == WEFT_FUTURE_FAILED);
    }
    /* Queued ones (sent to a worker or held by the parent) too, and none ran. */
    for (int i = 0; i < n; i++) ASSERT_STATUS(weft_future_result(fs[i], WEFT_FOREVER, NULL, NULL), WEFT_CANCELLED);
    ASSERT_EQ(atomic_load(&bd->ran), 0);
    ASSERT_EQ(atomic_load(&bd->finished), 0); /* the gates never opened */
    /* Every worker process is gone and reaped. */
    for (int i = 0; i < 3; i++) ASSERT(pid_gone(pids[i]));
    ASSERT_EQ(child_count(), 0);
    ASSERT_OK(weft_pool_join(p, 0)); /* every worker has left */
    weft_future *f = NULL;
    uint64_t x = 1;
    ASSERT_STATUS(weft_pool_submit(p, pproc_task_sq, &x, 8, &f), WEFT_CLOSED);
    ASSERT_OK(weft_pool_terminate(p, WEFT_FOREVER)); /* again: nothing left to do */
    for (int i = 0; i < n; i++) weft_future_free(fs[i]);
    weft_future_free(w1);
    weft_future_free(w2);
    weft_future_free(coop);
    weft_event_free(go);
    weft_pool_free(p);
}

/* weft_pool_terminate SIGKILLs a process pool's workers; their running futures end cancelled
 * (WEFT_FUTURE_CANCELLED), as a thread pool's do (test_pool.c), not failed: the state,
 * weft_future_exception and task groups ("a cancelled member is not a failure") tell. */
TEST(pool_process_terminate_running_futures_end_in_the_cancelled_state) {
    board *bd = new_board();
    weft_pool *p = new_pool(2);
    weft_event *go = shared_event();
    targ g = targ_event(bd, 0, go), c = targ_of(bd, 1);
    weft_future *blocked = submit_targ(p, pproc_task_gate, &g);
    weft_future *coop = submit_targ(p, pproc_task_until_cancelled, &c);
    xp_wait_count(&bd->started, 2);
    ASSERT_OK(weft_pool_terminate(p, WEFT_FOREVER));
    weft_future *run[] = {blocked, coop};
    int32_t states[2];
    weft_status exc[2];
    for (int i = 0; i < 2; i++) {
        ASSERT_STATUS(weft_future_result(run[i], WEFT_FOREVER, NULL, NULL), WEFT_CANCELLED);
        states[i] = weft_future_state(run[i]);
        weft_status st = WEFT_OK;
        exc[i] = weft_future_exception(run[i], 0, &st, NULL);
    }
    ASSERT_EQ(child_count(), 0);
    weft_future_free(blocked);
    weft_future_free(coop);
    weft_event_free(go);
    weft_pool_free(p);
    for (int i = 0; i < 2; i++) {
        ASSERT_EQ(states[i], WEFT_FUTURE_CANCELLED);
        ASSERT_STATUS(exc[i], WEFT_CANCELLED);
    }
}

TEST(pool_process_free_with_queued_tasks_completes_them) {
    board *bd = new_board();
    weft_pool *p = new_pool(1);
    weft_event *go = shared_event();
    targ g = targ_event(bd, 0, go);
    weft_future *blocker = submit_targ(p, pproc_task_gate, &g);
    xp_wait_count(&bd->started, 1);
    static weft_future *fs[1024];
    int n = 0;
    fill_window(p, bd, fs, &n, 900);
    enum { N = 20 };
    weft_future *sqs[N];
    for (uint64_t i = 0; i < N; i++) {
        sqs[i] = submit_u64(p, pproc_task_sq, i);
        ASSERT_EQ(weft_future_state(sqs[i]), WEFT_FUTURE_PENDING); /* held by the parent */
    }
    weft_pool_free(p); /* does not wait, does not cancel */
    ASSERT_EQ(weft_future_state(sqs[0]), WEFT_FUTURE_PENDING);
    ASSERT_OK(weft_event_set(go));
    assert_result_str(blocker, "opened");
    for (int i = 0; i < n; i++) {
        assert_result_str(fs[i], "ran");
        weft_future_free(fs[i]);
    }
    for (uint64_t i = 0; i < N; i++) {
        ASSERT_UEQ(result_u64(sqs[i]), sq(i));
        weft_future_free(sqs[i]);
    }
    ASSERT_EQ(atomic_load(&bd->ran), n);
    /* Then the worker leaves and is reaped. */
    wait_children(0);
    weft_future_free(blocker);
    weft_event_free(go);
}

/* ---- several pools --------------------------------------------------------------------------- */

/* The pool number of a worker named "<Prefix>PoolWorker-<pool>_<worker>". */
static long pool_number(const info *r, const char *prefix) {
    ASSERT(strncmp(r->name, prefix, strlen(prefix)) == 0);
    const char *dash = strrchr(r->name, '-');
    ASSERT_NOT_NULL(dash);
    char *end = NULL;
    long n = strtol(dash + 1, &end, 10);
    ASSERT(end != dash + 1 && *end == '_');
    return n;
}

static info result_info(weft_future *f) {
    const void *d = NULL;
    size_t len = 0;
    ASSERT_OK(weft_future_result(f, WEFT_FOREVER, &d, &len));
    ASSERT_UEQ(len, sizeof(info));
    info r;
    memcpy(&r, d, sizeof r);
    return r;
}

TEST_TIMEOUT(pool_process_several_independent_pools, 60000) {
    enum { P = 3, N = 200 };
    board *bd = new_board();
    weft_pool *pools[P];
    for (int i = 0; i < P; i++) pools[i] = new_pool(2);
    wait_children(2 * P);
    /* Pool 0's workers are all blocked: the others still run everything. */
    weft_event *go = shared_event();
    targ g0 = targ_event(bd, 0, go), g1 = targ_event(bd, 1, go);
    weft_future *b1 = submit_targ(pools[0], pproc_task_gate, &g0);
    weft_future *b2 = submit_targ(pools[0], pproc_task_gate, &g1);
    xp_wait_count(&bd->started, 2);
    weft_future *queued0 = submit_u64(pools[0], pproc_task_sq, 5);
    static weft_future *fs[P][N];
    for (int k = 1; k < P; k++)
        for (uint64_t i = 0; i < N; i++) fs[k][i] = submit_u64(pools[k], pproc_task_info, i + 1000 * (uint64_t)k);
    long number[P] = {0};
    int32_t pids[P][2];
    int npids[P] = {0};
    for (int k = 1; k < P; k++)
        for (uint64_t i = 0; i < N; i++) {
            info r = result_info(fs[k][i]);
            ASSERT_UEQ(r.x2, 2 * (i + 1000 * (uint64_t)k));
            ASSERT_EQ(r.weft_parent, (int32_t)getpid());
            long num = pool_number(&r, "ForkPoolWorker-");
            if (i == 0) number[k] = num;
            ASSERT_EQ(num, number[k]); /* the workers of one pool */
            note_pid(pids[k], &npids[k], 2, r.pid);
            weft_future_free(fs[k][i]);
        }
    ASSERT_NE(number[1], number[2]);
    for (int i = 0; i < npids[1]; i++)
        for (int j = 0; j < npids[2]; j++) ASSERT_NE(pids[1][i], pids[2][j]); /* processes of their own */
    ASSERT_NE(weft_future_state(queued0), WEFT_FUTURE_DONE);
    /* Terminating one pool leaves the others alone. */
    ASSERT_OK(weft_pool_terminate(pools[0], WEFT_FOREVER));
    ASSERT_STATUS(weft_future_result(b1, WEFT_FOREVER, NULL, NULL), WEFT_CANCELLED);
    ASSERT_STATUS(weft_future_result(queued0, WEFT_FOREVER, NULL, NULL), WEFT_CANCELLED);
    wait_children(2 * (P - 1));
    uint64_t x = 9;
    weft_bytes *r = NULL;
    ASSERT_OK(weft_pool_apply(pools[1], pproc_task_sq, &x, 8, WEFT_FOREVER, &r));
    ASSERT_UEQ(bytes_u64(r), 82);
    weft_bytes_free(r);
    ASSERT_OK(weft_pool_set_workers(pools[2], 1));
    ASSERT_UEQ(pool_workers(pools[1]), 2);
    for (int i = 0; i < npids[1]; i++) ASSERT(!pid_gone(pids[1][i]));
    ASSERT_OK(weft_pool_apply(pools[2], pproc_task_sq, &x, 8, WEFT_FOREVER, &r));
    ASSERT_UEQ(bytes_u64(r), 82);
    weft_bytes_free(r);
    for (int i = 1; i < P; i++) ASSERT_OK(weft_pool_shutdown(pools[i], true, false, WEFT_FOREVER));
    ASSERT_EQ(child_count(), 0);
    for (int i = 0; i < P; i++) weft_pool_free(pools[i]);
    weft_future *all[] = {b1, b2, queued0};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) weft_future_free(all[i]);
    weft_event_free(go);
}

/* ---- pollable futures ------------------------------------------------------------------------ */

TEST(pool_process_futures_awaited_with_poll) {
    board *bd = new_board();
    weft_pool *p = new_pool(3);
    weft_event *go = shared_event();
    targ g0 = targ_event(bd, 0, go), g1 = targ_event(bd, 1, go);
    weft_future *fs[3];
    fs[0] = submit_targ(p, pproc_task_gate, &g0);
    fs[1] = submit_targ(p, pproc_task_gate, &g1);
    xp_wait_count(&bd->started, 2);
    fs[2] = submit_u64(p, pproc_task_sq, 6); /* on the third, idle worker */
    struct pollfd pfd[3];
    for (int i = 0; i < 3; i++) {
        int fd = -1;
        ASSERT_OK(weft_future_fd(fs[i], &fd));
        ASSERT_GE(fd, 0);
        pfd[i].fd = fd;
        pfd[i].events = POLLIN;
        pfd[i].revents = 0;
    }
    /* Only the third can be done; wait for it through poll. */
    int rounds = 0;
    while (!(pfd[2].revents & POLLIN)) {
        int r;
        do r = poll(pfd, 3, 10000);
        while (r < 0 && errno == EINTR);
        ASSERT_GT(r, 0);
        ASSERT_EQ(pfd[0].revents, 0);
        ASSERT_EQ(pfd[1].revents, 0);
        ASSERT_LT(++rounds, 100);
    }
    ASSERT_UEQ(result_u64(fs[2]), 37);
    ASSERT_EQ(poll(pfd, 2, 0), 0);
    ASSERT_OK(weft_event_set(go));
    for (int i = 0; i < 2; i++) {
        int r;
        do r = poll(&pfd[i], 1, 10000);
        while (r < 0 && errno == EINTR);
        ASSERT_EQ(r, 1);
        ASSERT(pfd[i].revents & POLLIN);
        assert_result_str(fs[i], "opened");
    }
    ASSERT_EQ(poll(pfd, 3, 0), 3); /* stays readable */
    for (int i = 0; i < 3; i++) weft_future_free(fs[i]);
    weft_event_free(go);
    weft_pool_free(p);
}

/* ---- sizes of arguments and results ---------------------------------------------------------- */

TEST(pool_process_argument_and_result_too_large) {
    weft_pool *p = new_pool(2);
    enum { KiB = 1024, MiB = 1024 * 1024 };
    size_t cap = 2 * MiB;
    unsigned char *big = malloc(cap);
    ASSERT_NOT_NULL(big);
    for (size_t i = 0; i < cap; i++) big[i] = (unsigned char)(i * 13 + 1);
    /* An argument that fits a worker's task queue arrives whole. */
    size_t fit = 900 * KiB;
    uint64_t sum = 0;
    for (size_t i = 0; i < fit; i++) sum += big[i];
    weft_future *f = submit(p, pproc_task_echo_size, big, fit);
    const void *d = NULL;
    size_t len = 0;
    ASSERT_OK(weft_future_result(f, WEFT_FOREVER, &d, &len));
    ASSERT_UEQ(len, 16);
    uint64_t got[2];
    memcpy(got, d, sizeof got);
    ASSERT_UEQ(got[0], fit);
    ASSERT_UEQ(got[1], sum);
    weft_future_free(f);
    /* One larger than a worker's task queue (1 MiB): the future fails, saying so. */
    f = submit(p, pproc_task_echo_size, big, MiB + 1);
    weft_status st = weft_future_result(f, WEFT_FOREVER, NULL, NULL);
    ASSERT_NE(st, WEFT_OK);
    ASSERT_STATUS(st, WEFT_INVALID_ARGUMENT);
    ASSERT_CONTAINS(weft_last_error_message(), "argument is too large");
    ASSERT_EQ(weft_future_state(f), WEFT_FUTURE_FAILED);
    weft_future_free(f);
    ASSERT_STATUS(weft_pool_apply(p, pproc_task_echo_size, big, cap, WEFT_FOREVER, NULL), WEFT_TASK_FAILED);
    ASSERT_CONTAINS(weft_last_error_message(), "too large");
    /* A map item that large fails the map the same way. */
    weft_bytes *packed = (weft_bytes *)1;
    ASSERT_STATUS(weft_pool_map(p, pproc_task_echo_size, big, MiB + 8, 1, 1, WEFT_FOREVER, &packed), WEFT_TASK_FAILED);
    ASSERT_CONTAINS(weft_last_error_message(), "too large");
    ASSERT_PTR_EQ(packed, (weft_bytes *)1);
    /* A result that fits the result queue (4 MiB) arrives whole. */
    uint64_t n = 3 * MiB;
    f = submit_u64(p, pproc_task_big_result, n);
    ASSERT_OK(weft_future_result(f, WEFT_FOREVER, &d, &len));
    ASSERT_UEQ(len, n);
    for (uint64_t i = 0; i < n; i++)
        if (((const unsigned char *)d)[i] != (unsigned char)((i * 7) & 0xff)) FAIL_AT("result byte %" PRIu64 " differs", i);
    weft_future_free(f);
    /* One larger than the result queue: the future fails, saying so. */
    f = submit_u64(p, pproc_task_big_result, 4 * MiB + 1);
    st = weft_future_result(f, WEFT_FOREVER, NULL, NULL);
    ASSERT_NE(st, WEFT_OK);
    ASSERT_CONTAINS(weft_last_error_message(), "result could not be sent");
    ASSERT_EQ(weft_future_state(f), WEFT_FUTURE_FAILED);
    weft_future_free(f);
    /* The pool goes on with the same workers (none died). */
    weft_future *fs[40];
    int32_t pids[2];
    int npids = 0;
    for (uint64_t i = 0; i < 40; i++) fs[i] = submit_u64(p, pproc_task_sq_pid, i);
    for (uint64_t i = 0; i < 40; i++) {
        uint64_t r[2];
        result_pair(fs[i], r);
        ASSERT_UEQ(r[0], sq(i));
        note_pid(pids, &npids, 2, (int32_t)r[1]);
        weft_future_free(fs[i]);
    }
    ASSERT_EQ(child_count(), 2);
    ASSERT_OK(weft_pool_shutdown(p, true, false, WEFT_FOREVER));
    free(big);
    weft_pool_free(p);
}

/* ---- start methods --------------------------------------------------------------------------- */

/* Submit, map and imap on a pool of `method` workers with an initializer; checks what the
 * workers see of this process. */
static void exercise_start_method(uint32_t method, const char *prefix, uint64_t want_marker) {
    weft_pool_options o = popts_with(method, 2);
    init_arg ia = {99, NULL};
    o.initializer = pproc_init_store;
    o.initializer_arg = &ia;
    o.initializer_arg_len = sizeof ia;
    weft_pool *p = new_pool_with(&o);
    enum { N = 200 };
    weft_future *fs[N];
    for (uint64_t i = 0; i < N; i++) fs[i] = submit_u64(p, pproc_task_info, i);
    int32_t pids[2];
    int npids = 0;
    for (uint64_t i = 0; i < N; i++) {
        info r = result_info(fs[i]);
        ASSERT_UEQ(r.x2, 2 * i);
        ASSERT_UEQ(r.marker, want_marker);  /* the parent's memory, or not */
        ASSERT_UEQ(r.state, 99);            /* the initializer ran in this worker */
        ASSERT_NE(r.pid, (int32_t)getpid());
        ASSERT_EQ(r.weft_parent, (int32_t)getpid());
        pool_number(&r, prefix);
        note_pid(pids, &npids, 2, r.pid);
        weft_future_free(fs[i]);
    }
    enum { M = 300 };
    uint64_t items[M];
    for (size_t i = 0; i < M; i++) items[i] = i * 3;
    const size_t sizes[] = {0, 1, 7};
    for (size_t s = 0; s < 3; s++) {
        weft_bytes *r = NULL;
        ASSERT_OK(weft_pool_map(p, pproc_task_sq, items, 8, M, sizes[s], WEFT_FOREVER, &r));
        assert_packed_sq(r, items, M);
        weft_bytes_free(r);
    }
    source src = source_of(50);
    weft_imap *it = new_imap(p, &src, 4, 3, 0);
    for (uint64_t i = 0; i < 50; i++) ASSERT_UEQ(imap_take(it), sq(i));
    ASSERT_STATUS(weft_imap_next(it, WEFT_FOREVER, NULL), WEFT_CLOSED);
    weft_imap_free(it);
    uint64_t x = 5 | BAD;
    ASSERT_STATUS(weft_pool_apply(p, pproc_task_sq, &x, 8, WEFT_FOREVER, NULL), WEFT_TASK_FAILED);
    ASSERT_CONTAINS(weft_last_error_message(), "bad item 5");
    if (method != WEFT_START_FORK) {
        /* A task in no loaded object cannot be found by these workers: refused at submit. */
        void *heap = malloc(64);
        ASSERT_NOT_NULL(heap);
        weft_task_fn nowhere;
        memcpy(&nowhere, &(void *){heap}, sizeof nowhere);
        weft_future *f = (weft_future *)1;
        ASSERT_STATUS(weft_pool_submit(p, nowhere, &x, 8, &f), WEFT_INVALID_ARGUMENT);
        ASSERT_CONTAINS(weft_last_error_message(), "not in any loaded object");
        ASSERT_PTR_EQ(f, (weft_future *)1);
        weft_bytes *b = (weft_bytes *)1;
        ASSERT_STATUS(weft_pool_map(p, nowhere, items, 8, 10, 2, WEFT_FOREVER, &b), WEFT_INVALID_ARGUMENT);
        ASSERT_PTR_EQ(b, (weft_bytes *)1);
        free(heap);
        /* The pool is unharmed. */
        weft_bytes *r = NULL;
        x = 3;
        ASSERT_OK(weft_pool_apply(p, pproc_task_sq, &x, 8, WEFT_FOREVER, &r));
        ASSERT_UEQ(bytes_u64(r), 10);
        weft_bytes_free(r);
    }
    ASSERT_OK(weft_pool_shutdown(p, true, false, WEFT_FOREVER));
    for (int i = 0; i < npids; i++) wait_pid_gone(pids[i]);
    weft_pool_free(p);
}

TEST_TIMEOUT(pool_process_fork_forkserver_spawn, 90000) {
    pproc_marker = 77;
    exercise_start_method(WEFT_START_FORK, "ForkPoolWorker-", 77);
    exercise_start_method(WEFT_START_FORKSERVER, "ForkServerPoolWorker-", 0);
    exercise_start_method(WEFT_START_SPAWN, "SpawnPoolWorker-", 0);
    ASSERT_EQ(zombie_children(), 0);
}

/* ---- a weft thread asked to cancel while it joins a process pool ----------------------------- */

/* Joins the pool its argument points to (forever); returns what the join returned. */
weft_status pproc_task_join_pool(weft_call *call) {
    weft_pool *p = call_ptr(call);
    weft_status st = weft_pool_join(p, WEFT_FOREVER);
    if (st != WEFT_OK) ASSERT_OK(weft_call_set_error(call, "the join ended"));
    return st;
}

/* A weft thread asked to cancel stops waiting in a process pool's join (WEFT_CANCELLED), as in
 * a thread pool's. */
TEST(pool_process_join_in_a_cancelled_weft_thread) {
    board *bd = new_board();
    weft_pool *p = new_pool(1);
    weft_event *go = shared_event();
    targ g = targ_event(bd, 0, go);
    weft_future *blocker = submit_targ(p, pproc_task_gate, &g);
    xp_wait_count(&bd->started, 1);
    ASSERT_OK(weft_pool_close(p));
    weft_thread *t = NULL;
    ASSERT_OK(start_ptr(pproc_task_join_pool, p, NULL, &t));
    uint32_t tid = 0;
    ASSERT_OK(weft_thread_native_id(t, &tid));
    wait_until_blocked(tid);
    ASSERT_OK(weft_thread_cancel(t));
    weft_status joined = weft_thread_join(t, 2 * SEC, NULL);
    /* Whatever happened, release the worker and clean up before judging. */
    ASSERT_OK(weft_event_set(go));
    if (joined == WEFT_TIMEOUT) joined = weft_thread_join(t, WEFT_FOREVER, NULL);
    weft_status task_status = WEFT_OK;
    ASSERT_OK(weft_thread_task_status(t, &task_status));
    ASSERT_OK(weft_pool_join(p, WEFT_FOREVER));
    assert_result_str(blocker, "opened");
    weft_future_free(blocker);
    weft_thread_free(t);
    weft_event_free(go);
    weft_pool_free(p);
    ASSERT_STATUS(task_status, WEFT_CANCELLED);
}
