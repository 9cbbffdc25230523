/* Child processes (weft_process_*), against the contract of weft.h: every start method (fork,
 * forkserver, spawn) with tasks in the test program (static and not) and in a shared library
 * (libweft_tasklib.so, ctests/tasklib/); argument and result bytes, names and parent pids seen
 * by the child; task failures, exit codes and signals; the pidfd; daemons that die with a
 * SIGKILLed parent; passed descriptors; the default space shared with children; close and
 * free of running children; someone else's waitpid(-1); the fork-with-threads warning; bad
 * arguments; weft_cpu_count and the default start method; large results; many children.
 *
 * Every test checks with fd_begin/fd_end that it leaves no descriptor open and no zombie
 * child. A forkserver start leaves the fork server running (its control socket and pidfd stay
 * open) and the first start creates the default space, so tests warm up first (warm_up) and
 * take the descriptor count after that.
 */
#define _GNU_SOURCE
#include "helpers.h"
#include "tasklib/tasklib.h"

#include <dirent.h>
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

/* Every join is bounded: a hang fails with WEFT_TIMEOUT rather than the runner's timeout. */
#define JOIN_LIMIT (20 * SEC)

static const uint32_t METHODS[3] = {WEFT_START_FORK, WEFT_START_FORKSERVER, WEFT_START_SPAWN};

static const char *method_name(uint32_t m) {
    switch (m) {
    case WEFT_START_FORK: return "fork";
    case WEFT_START_FORKSERVER: return "forkserver";
    case WEFT_START_SPAWN: return "spawn";
    default: return "?";
    }
}

/* ---- tasks of the test program ---------------------------------------------------------------- */

/* Not exported (static), and exported (a plain global; the program is not linked with
 * -rdynamic, so neither has a dynamic symbol: both are found by offset). */
static weft_status task_info_static(weft_call *call) {
    return tl_report_info(call, "static");
}

weft_status task_info_exported(weft_call *call);
weft_status task_info_exported(weft_call *call) {
    return tl_report_info(call, "exported");
}

/* ---- plumbing ----------------------------------------------------------------------------------- */

static weft_process_options opts(uint32_t method, const char *name) {
    weft_process_options o;
    memset(&o, 0, sizeof o);
    o.start_method = method;
    o.name = name;
    return o;
}

static weft_process *start_ok(weft_task_fn fn, const void *arg, size_t len, const weft_process_options *o) {
    weft_process *p = NULL;
    ASSERT_OK(weft_process_start(fn, arg, len, o, &p));
    ASSERT_NOT_NULL(p);
    return p;
}

/* Starts a trivial task with `method` and joins it: brings up what stays for the life of the
 * test process (the default space; the fork server for forkserver). */
static void warm_up(uint32_t method) {
    weft_process_options o = opts(method, NULL);
    weft_process *p = start_ok(tl_task_info, "warm", 4, &o);
    ASSERT_OK(weft_process_join(p, JOIN_LIMIT, NULL));
    weft_process_free(p);
}

static void warm_up_all(void) {
    for (int i = 0; i < 3; i++) warm_up(METHODS[i]);
}

static void make_pipe(int fds[2]) {
    ASSERT_EQ(pipe2(fds, O_CLOEXEC), 0);
}

static void close_pipe(int fds[2]) {
    ASSERT_EQ(close(fds[0]), 0);
    ASSERT_EQ(close(fds[1]), 0);
}

/* Reads exactly one byte from `fd` (a pipe), waiting up to 20 s. */
static char read_byte(int fd) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int r;
    do r = poll(&p, 1, 20000);
    while (r < 0 && errno == EINTR);
    if (r != 1) FAIL_AT("nothing to read on descriptor %d within 20 s", fd);
    char c;
    ssize_t n;
    do n = read(fd, &c, 1);
    while (n < 0 && errno == EINTR);
    ASSERT_EQ(n, 1);
    return c;
}

static void write_byte(int fd) {
    ssize_t n;
    do n = write(fd, "g", 1);
    while (n < 0 && errno == EINTR);
    ASSERT_EQ(n, 1);
}

/* Options for tl_task_block with a ready and (when gate >= 0) a gate descriptor. */
static weft_process_options block_opts(uint32_t method, int32_t fds[2], int ready, int gate) {
    weft_process_options o = opts(method, NULL);
    fds[0] = ready;
    fds[1] = gate;
    o.fds = fds;
    o.fd_count = gate >= 0 ? 2 : 1;
    return o;
}

/* Joins `p`, which must succeed, and returns its result (free with weft_bytes_free). */
static weft_bytes *join_ok(weft_process *p) {
    weft_bytes *r = NULL;
    ASSERT_OK(weft_process_join(p, JOIN_LIMIT, &r));
    ASSERT_NOT_NULL(r);
    return r;
}

static int32_t exitcode_of(const weft_process *p) {
    int32_t code = 12345;
    ASSERT_OK(weft_process_exitcode(p, &code));
    return code;
}

/* Checks a tl_info result against what the parent knows. */
static void check_info(weft_bytes *r, const char *tag, const void *arg, size_t len, weft_process *p,
                       uint32_t method, const char *name) {
    ASSERT_UEQ(weft_bytes_len(r), sizeof(tl_info) + len);
    const unsigned char *data = weft_bytes_data(r);
    tl_info info;
    memcpy(&info, data, sizeof info);
    ASSERT_STR_EQ(info.tag, tag);
    ASSERT_EQ(info.pid, weft_process_pid(p));
    ASSERT_NE(info.pid, getpid());
    ASSERT_EQ(info.weft_parent, getpid());
    if (method == WEFT_START_FORKSERVER)
        ASSERT_NE(info.os_parent, getpid()); /* the server forked it */
    else
        ASSERT_EQ(info.os_parent, getpid());
    ASSERT_STR_EQ(info.name, name);
    ASSERT_STR_EQ(weft_process_name(p), name);
    ASSERT_UEQ(info.arg_len, len);
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)(data[sizeof info + i] ^ TL_ARG_XOR) != ((const unsigned char *)arg)[i])
            FAIL_AT("argument byte %zu differs", i);
}

/* State letter of process `pid` from /proc/<pid>/stat, or 0 when there is no such process. */
static char proc_state(pid_t pid) {
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    if (!p || p[1] != ' ') return 0;
    return p[2];
}

/* Waits until `pid` is a zombie (state Z); fails after 10 s or when it is gone. */
static void wait_zombie(pid_t pid) {
    uint64_t deadline = runner_now_ns() + 10 * SEC;
    for (;;) {
        char s = proc_state(pid);
        if (s == 'Z') return;
        if (s == 0) FAIL_AT("process %d is gone, expected a zombie", (int)pid);
        if (runner_now_ns() > deadline) FAIL_AT("process %d never ended (state %c)", (int)pid, s);
        runner_sleep_ms(1);
    }
}

/* Waits until no process `pid` exists any more; fails after 10 s. */
static void wait_gone(pid_t pid) {
    uint64_t deadline = runner_now_ns() + 10 * SEC;
    for (;;) {
        char s = proc_state(pid);
        if (s == 0) return;
        if (runner_now_ns() > deadline) FAIL_AT("process %d still exists (state %c)", (int)pid, s);
        runner_sleep_ms(1);
    }
}

/* poll() of one descriptor for POLLIN; returns poll's result. */
static int poll_in(int fd, int timeout_ms) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int r;
    do r = poll(&p, 1, timeout_ms);
    while (r < 0 && errno == EINTR);
    ASSERT(r >= 0);
    if (r == 1) ASSERT(p.revents & POLLIN);
    return r;
}

/* ---- 1. every start method and target: bytes in and out, name, parent ------------------------- */

TEST_TIMEOUT(process_every_method_and_target, 60000) {
    warm_up_all();
    fd_guard g;
    fd_begin(&g);
    struct {
        weft_task_fn fn;
        const char *tag;
    } targets[3] = {{task_info_static, "static"}, {task_info_exported, "exported"}, {tl_task_info, "tasklib"}};
    for (int m = 0; m < 3; m++) {
        for (int t = 0; t < 3; t++) {
            char name[64], arg[64];
            snprintf(name, sizeof name, "worker-%s-%s", method_name(METHODS[m]), targets[t].tag);
            int len = snprintf(arg, sizeof arg, "argument %d/%d \x01\xff", m, t);
            weft_process_options o = opts(METHODS[m], name);
            weft_process *p = start_ok(targets[t].fn, arg, (size_t)len, &o);
            ASSERT_GT(weft_process_pid(p), 0);
            ASSERT_GE(weft_process_fd(p), 0);
            ASSERT_STR_EQ(weft_process_name(p), name);
            ASSERT_UEQ(weft_process_start_method(p), METHODS[m]);
            ASSERT(!weft_process_is_daemon(p));
            weft_bytes *r = join_ok(p);
            check_info(r, targets[t].tag, arg, (size_t)len, p, METHODS[m], name);
            weft_bytes_free(r);
            ASSERT_EQ(exitcode_of(p), 0);
            weft_status ts = -1;
            ASSERT_OK(weft_process_task_status(p, &ts));
            ASSERT_EQ(ts, WEFT_OK);
            ASSERT(!weft_process_is_alive(p));
            weft_process_free(p);
        }
        /* An empty argument (NULL, 0) and a UTF-8 name. */
        const char *utf8 = "w\xc3\xb6rker-\xc3\x9f-\xe2\x9c\x93";
        weft_process_options o = opts(METHODS[m], utf8);
        weft_process *p = start_ok(tl_task_info, NULL, 0, &o);
        weft_bytes *r = join_ok(p);
        check_info(r, "tasklib", NULL, 0, p, METHODS[m], utf8);
        weft_bytes_free(r);
        weft_process_free(p);
    }
    fd_end(&g);
}

/* NULL options: the default method (forkserver) and the default name. */
TEST(process_null_options_use_defaults) {
    warm_up(WEFT_START_FORKSERVER);
    fd_guard g;
    fd_begin(&g);
    weft_process *p = NULL;
    ASSERT_OK(weft_process_start(task_info_static, "x", 1, NULL, &p));
    ASSERT_UEQ(weft_process_start_method(p), WEFT_START_FORKSERVER);
    weft_bytes *r = join_ok(p);
    check_info(r, "static", "x", 1, p, WEFT_START_FORKSERVER, "Process-2");
    weft_bytes_free(r);
    weft_process_free(p);
    fd_end(&g);
}

/* Python's default names: Process-N, N counting every child started by this process (named
 * or not), whatever the method. */
TEST_TIMEOUT(process_default_names_count_every_child, 60000) {
    /* This test process started no child yet: the first is Process-1. */
    weft_process_options o = opts(WEFT_START_FORKSERVER, NULL);
    weft_process *p = start_ok(tl_task_info, NULL, 0, &o);
    weft_bytes *r = join_ok(p);
    check_info(r, "tasklib", NULL, 0, p, WEFT_START_FORKSERVER, "Process-1");
    weft_bytes_free(r);
    weft_process_free(p);
    warm_up(WEFT_START_SPAWN);                                /* Process-2 */
    fd_guard g;
    fd_begin(&g);
    const char *expect[4] = {"Process-3", "named", "Process-5", "Process-6"};
    uint32_t methods[4] = {WEFT_START_FORK, WEFT_START_SPAWN, WEFT_START_SPAWN, WEFT_START_FORKSERVER};
    for (int i = 0; i < 4; i++) {
        o = opts(methods[i], i == 1 ? "named" : NULL);
        p = start_ok(task_info_exported, NULL, 0, &o);
        ASSERT_STR_EQ(weft_process_name(p), expect[i]);
        r = join_ok(p);
        check_info(r, "exported", NULL, 0, p, methods[i], expect[i]);
        weft_bytes_free(r);
        weft_process_free(p);
    }
    fd_end(&g);
}

/* A child's own children are named Process-<its id>:N, and see it as their parent. */
TEST_TIMEOUT(process_nested_children, 60000) {
    warm_up_all(); /* Process-1 .. Process-3 */
    fd_guard g;
    fd_begin(&g);
    for (int m = 0; m < 3; m++) {
        weft_process_options o = opts(METHODS[m], NULL);
        uint32_t inner = METHODS[m];
        weft_process *p = start_ok(tl_task_nested, &inner, sizeof inner, &o);
        char expect[32];
        snprintf(expect, sizeof expect, "Process-%d:1", 4 + m);
        weft_bytes *r = join_ok(p);
        ASSERT_UEQ(weft_bytes_len(r), sizeof(tl_info) + 6);
        tl_info info;
        memcpy(&info, weft_bytes_data(r), sizeof info);
        ASSERT_STR_EQ(info.tag, "tasklib");
        ASSERT_STR_EQ(info.name, expect);
        ASSERT_EQ(info.weft_parent, weft_process_pid(p));
        ASSERT_NE(info.pid, weft_process_pid(p));
        weft_bytes_free(r);
        weft_process_free(p);
    }
    fd_end(&g);
}

/* ---- 2. a failing task ------------------------------------------------------------------------- */

TEST_TIMEOUT(process_task_failure, 60000) {
    warm_up_all();
    fd_guard g;
    fd_begin(&g);
    int32_t statuses[2] = {WEFT_INVALID_STATE, 1000}; /* a weft status, and one of the task's own */
    for (int m = 0; m < 3; m++) {
        for (int k = 0; k < 2; k++) {
            tl_fail_arg a;
            memset(&a, 0, sizeof a);
            a.status = statuses[k];
            snprintf(a.message, sizeof a.message, "deliberate failure %d of %s", k, method_name(METHODS[m]));
            weft_process_options o = opts(METHODS[m], NULL);
            weft_process *p = start_ok(tl_task_fail, &a, sizeof a, &o);
            weft_bytes *r = NULL;
            ASSERT_STATUS(weft_process_join(p, JOIN_LIMIT, &r), WEFT_TASK_FAILED);
            ASSERT_CONTAINS(weft_last_error_message(), a.message);
            if (k == 0) ASSERT_CONTAINS(weft_last_error_message(), weft_status_name(a.status));
            ASSERT_NULL(r);
            weft_status ts = -1;
            ASSERT_OK(weft_process_task_status(p, &ts));
            ASSERT_EQ(ts, a.status);
            ASSERT_EQ(exitcode_of(p), 1);
            /* Joining again gives the same. */
            ASSERT_STATUS(weft_process_join(p, 0, NULL), WEFT_TASK_FAILED);
            ASSERT_CONTAINS(weft_last_error_message(), a.message);
            weft_process_free(p);
        }
    }
    fd_end(&g);
}

/* ---- 3. exit codes, signals, join timeouts --------------------------------------------------- */

static void expect_died(weft_process *p, int32_t code) {
    weft_bytes *r = NULL;
    ASSERT_STATUS(weft_process_join(p, JOIN_LIMIT, &r), WEFT_WORKER_DIED);
    ASSERT_NULL(r);
    ASSERT_EQ(exitcode_of(p), code);
    weft_status ts = -1;
    ASSERT_STATUS(weft_process_task_status(p, &ts), WEFT_WORKER_DIED);
    ASSERT(!weft_process_is_alive(p));
}

TEST_TIMEOUT(process_exit_codes_and_signals, 90000) {
    warm_up_all();
    fd_guard g;
    fd_begin(&g);
    for (int m = 0; m < 3; m++) {
        uint32_t method = METHODS[m];
        weft_process_options o = opts(method, NULL);
        /* _exit without reporting. */
        int32_t code = 7;
        weft_process *ep = start_ok(tl_task_exit, &code, sizeof code, &o);
        expect_died(ep, 7);
        weft_process_free(ep);
        /* Ended by a signal the task raised. */
        int32_t sigs[2] = {SIGSEGV, SIGABRT};
        for (int k = 0; k < 2; k++) {
            weft_process *p = start_ok(tl_task_raise, &sigs[k], sizeof sigs[k], &o);
            expect_died(p, -sigs[k]);
            weft_process_free(p);
        }
        /* terminate, kill, send_signal on a running (blocked) task. */
        for (int k = 0; k < 3; k++) {
            int ready[2];
            make_pipe(ready);
            int32_t fds[2];
            weft_process_options bo = block_opts(method, fds, ready[1], -1);
            weft_process *p = start_ok(tl_task_block, NULL, 0, &bo);
            ASSERT_EQ(read_byte(ready[0]), 'r');
            ASSERT(weft_process_is_alive(p));
            int32_t expect;
            if (k == 0) {
                ASSERT_OK(weft_process_terminate(p));
                expect = -SIGTERM;
            } else if (k == 1) {
                ASSERT_OK(weft_process_kill(p));
                expect = -SIGKILL;
            } else {
                ASSERT_OK(weft_process_send_signal(p, SIGUSR1));
                expect = -SIGUSR1;
            }
            expect_died(p, expect);
            /* Signalling a process that ended is not an error. */
            ASSERT_OK(weft_process_kill(p));
            ASSERT_OK(weft_process_terminate(p));
            weft_process_free(p);
            close_pipe(ready);
        }
    }
    fd_end(&g);
}

/* A signal sent the moment start returns reaches the task with its default action, whatever
 * the start method had to do to the disposition around the fork (the forkserver ignores Ctrl-C;
 * its children must not lose one sent before they restored the default). */
TEST_TIMEOUT(process_signal_right_after_start, 90000) {
    warm_up_all();
    for (int m = 1; m < 3; m++) {
        weft_process_options o = opts(METHODS[m], NULL);
        int rounds = METHODS[m] == WEFT_START_FORKSERVER ? 200 : 5;
        for (int k = 0; k < rounds; k++) {
            weft_process *p = start_ok(tl_task_block, NULL, 0, &o);
            ASSERT_OK(weft_process_send_signal(p, SIGINT));
            expect_died(p, -SIGINT);
            weft_process_free(p);
        }
    }
}

/* A task that leaves with _exit(0) never returned: the process ended without reporting
 * (weft.h: WEFT_WORKER_DIED "when the process ended without reporting (it exited on its
 * own, ...)"), whatever its exit code; it is not a success with an empty result. */
TEST_TIMEOUT(process_exit_zero_without_reporting_is_success, 60000) {
    /* Exit status 0 is success (Python's rule): a task ending its process with _exit(0)
     * counts as WEFT_OK with an empty result; a non-zero exit without a report is
     * WEFT_WORKER_DIED (process_exit_codes_and_signals). */
    warm_up_all();
    fd_guard g;
    fd_begin(&g);
    for (int m = 0; m < 3; m++) {
        weft_process_options o = opts(METHODS[m], NULL);
        int32_t code = 0;
        weft_process *p = start_ok(tl_task_exit, &code, sizeof code, &o);
        weft_bytes *r = NULL;
        weft_status s = weft_process_join(p, JOIN_LIMIT, &r);
        if (s != WEFT_OK)
            FAIL_AT("%s: join of a child that called _exit(0) in its task returned %s, expected WEFT_OK",
                    method_name(METHODS[m]), weft_status_name(s));
        ASSERT_NOT_NULL(r);
        ASSERT_UEQ(weft_bytes_len(r), 0);
        weft_bytes_free(r);
        ASSERT_EQ(exitcode_of(p), 0);
        weft_status ts = -1;
        ASSERT_OK(weft_process_task_status(p, &ts));
        ASSERT_EQ(ts, WEFT_OK);
        weft_process_free(p);
    }
    fd_end(&g);
}

/* Once the pidfd is readable the process has ended: it is not alive, its exit code is known
 * and a join does not block (Python: once the sentinel is ready, exitcode is set). Repeated,
 * since the forkserver's report of the exit status races with the pidfd. */
TEST_TIMEOUT(process_ended_once_fd_readable, 60000) {
    warm_up_all();
    fd_guard g;
    fd_begin(&g);
    for (int m = 0; m < 3; m++) {
        for (int i = 0; i < 20; i++) {
            weft_process_options o = opts(METHODS[m], NULL);
            weft_process *p = start_ok(tl_task_info, NULL, 0, &o);
            ASSERT_EQ(poll_in(weft_process_fd(p), 20000), 1);
            ASSERT(!weft_process_is_alive(p));
            int32_t code = 12345;
            weft_status s = weft_process_exitcode(p, &code);
            if (s != WEFT_OK)
                FAIL_AT("%s (round %d): weft_process_exitcode after the pidfd became readable returned %s (%s)",
                        method_name(METHODS[m]), i, weft_status_name(s), weft_last_error_message());
            ASSERT_EQ(code, 0);
            weft_bytes *r = NULL;
            ASSERT_OK(weft_process_join(p, 0, &r));
            weft_bytes_free(r);
            weft_process_free(p);
        }
    }
    fd_end(&g);
}

TEST_TIMEOUT(process_join_timeout_then_kill, 60000) {
    warm_up_all();
    fd_guard g;
    fd_begin(&g);
    for (int m = 0; m < 3; m++) {
        int ready[2];
        make_pipe(ready);
        int32_t fds[2];
        weft_process_options o = block_opts(METHODS[m], fds, ready[1], -1);
        weft_process *p = start_ok(tl_task_block, NULL, 0, &o);
        ASSERT_EQ(read_byte(ready[0]), 'r');
        ASSERT(weft_process_is_alive(p));
        int32_t code = 12345;
        ASSERT_STATUS(weft_process_exitcode(p, &code), WEFT_WOULD_BLOCK);
        ASSERT_EQ(code, 12345);
        weft_status ts = -1;
        ASSERT_STATUS(weft_process_task_status(p, &ts), WEFT_INVALID_STATE);
        weft_bytes *r = NULL;
        ASSERT_STATUS(weft_process_join(p, 0, &r), WEFT_WOULD_BLOCK);
        ASSERT_STATUS(weft_process_join(p, 50 * MS, &r), WEFT_TIMEOUT);
        ASSERT_NULL(r);
        ASSERT(weft_process_is_alive(p));
        /* A bad signal number is the OS's EINVAL, and does nothing. */
        ASSERT_STATUS(weft_process_send_signal(p, 100000), WEFT_OS_ERROR);
        ASSERT_EQ(weft_last_error_errno(), EINVAL);
        ASSERT(weft_process_is_alive(p));
        ASSERT_OK(weft_process_kill(p));
        expect_died(p, -SIGKILL);
        ASSERT_STATUS(weft_process_join(p, 0, NULL), WEFT_WORKER_DIED); /* not WOULD_BLOCK */
        weft_process_free(p);
        close_pipe(ready);
    }
    fd_end(&g);
}

/* Several threads join one process; all get its result. */
typedef struct {
    weft_process *p;
    atomic_uint tid;
    weft_status status;
    weft_bytes *result;
} joiner;

static void *join_thread(void *arg) {
    joiner *j = arg;
    atomic_store(&j->tid, my_tid());
    j->status = weft_process_join(j->p, JOIN_LIMIT, &j->result);
    return NULL;
}

TEST_TIMEOUT(process_joined_by_many_threads, 60000) {
    warm_up_all();
    fd_guard g;
    fd_begin(&g);
    for (int m = 0; m < 3; m++) {
        int ready[2], gate[2];
        make_pipe(ready);
        make_pipe(gate);
        int32_t fds[2];
        weft_process_options o = block_opts(METHODS[m], fds, ready[1], gate[0]);
        weft_process *p = start_ok(tl_task_block, "many", 4, &o);
        ASSERT_EQ(read_byte(ready[0]), 'r');
        joiner js[4];
        pthread_t th[4];
        for (int i = 0; i < 4; i++) {
            memset(&js[i], 0, sizeof js[i]);
            js[i].p = p;
            th[i] = spawn(join_thread, &js[i]);
        }
        for (int i = 0; i < 4; i++) wait_blocked(&js[i].tid);
        write_byte(gate[1]);
        for (int i = 0; i < 4; i++) {
            ASSERT_EQ(pthread_join(th[i], NULL), 0);
            ASSERT_STATUS(js[i].status, WEFT_OK);
            ASSERT_UEQ(weft_bytes_len(js[i].result), 13);
            ASSERT(memcmp(weft_bytes_data(js[i].result), "released:many", 13) == 0);
            weft_bytes_free(js[i].result);
        }
        ASSERT_EQ(exitcode_of(p), 0);
        weft_process_free(p);
        close_pipe(ready);
        close_pipe(gate);
    }
    fd_end(&g);
}

/* A weft thread blocked in a join stops waiting when it is asked to cancel. */
typedef struct {
    weft_process *p;
    atomic_uint tid;
} cancel_job;

static weft_status task_join_process(weft_call *call) {
    cancel_job *j = call_ptr(call);
    atomic_store(&j->tid, my_tid());
    return weft_process_join(j->p, WEFT_FOREVER, NULL);
}

TEST(process_join_cancelled_on_weft_thread) {
    warm_up(WEFT_START_FORKSERVER);
    fd_guard g;
    fd_begin(&g);
    int ready[2];
    make_pipe(ready);
    int32_t fds[2];
    weft_process_options o = block_opts(WEFT_START_FORKSERVER, fds, ready[1], -1);
    cancel_job j = {.p = start_ok(tl_task_block, NULL, 0, &o)};
    ASSERT_EQ(read_byte(ready[0]), 'r');
    weft_thread *t = NULL;
    ASSERT_OK(start_ptr(task_join_process, &j, NULL, &t));
    wait_blocked(&j.tid);
    ASSERT_OK(weft_thread_cancel(t));
    ASSERT_STATUS(weft_thread_join(t, JOIN_LIMIT, NULL), WEFT_TASK_FAILED);
    weft_status ts = -1;
    ASSERT_OK(weft_thread_task_status(t, &ts));
    ASSERT_EQ(ts, WEFT_CANCELLED);
    weft_thread_free(t);
    ASSERT(weft_process_is_alive(j.p));
    ASSERT_OK(weft_process_kill(j.p));
    expect_died(j.p, -SIGKILL);
    weft_process_free(j.p);
    close_pipe(ready);
    fd_end(&g);
}

/* ---- 4. the pidfd ------------------------------------------------------------------------------ */

TEST_TIMEOUT(process_fd_readable_only_after_end, 60000) {
    warm_up_all();
    fd_guard g;
    fd_begin(&g);
    for (int m = 0; m < 3; m++) {
        int ready[2], gate[2];
        make_pipe(ready);
        make_pipe(gate);
        int32_t fds[2];
        weft_process_options o = block_opts(METHODS[m], fds, ready[1], gate[0]);
        weft_process *p = start_ok(tl_task_block, NULL, 0, &o);
        int fd = weft_process_fd(p);
        ASSERT_GE(fd, 0);
        ASSERT_EQ(weft_process_fd(p), fd); /* the same descriptor every time */
        ASSERT_EQ(read_byte(ready[0]), 'r');
        ASSERT_EQ(poll_in(fd, 0), 0);
        ASSERT_EQ(poll_in(fd, 50), 0);
        ASSERT(weft_process_is_alive(p));
        write_byte(gate[1]);
        ASSERT_EQ(poll_in(fd, 20000), 1);
        ASSERT_EQ(poll_in(fd, 0), 1); /* stays readable */
        weft_bytes *r = join_ok(p);
        ASSERT_UEQ(weft_bytes_len(r), 9);
        weft_bytes_free(r);
        ASSERT_EQ(exitcode_of(p), 0);
        weft_process_free(p);
        close_pipe(ready);
        close_pipe(gate);
    }
    fd_end(&g);
}

/* ---- 5. daemons die with their parent, however it dies ----------------------------------------- */

typedef struct {
    atomic_int stage; /* 1: both children run; -1: the middle failed */
    uint32_t method;
    int32_t daemon_pid, plain_pid;
    int32_t daemon_flag, plain_flag;
    char why[256];
} daemon_job;

/* The middle process: starts a daemon and a non-daemon child running tl_task_block, publishes
 * their pids once both run, and sleeps until it is killed. */
static void daemon_middle(void *arg) {
    daemon_job *j = arg;
    int ready[2];
    make_pipe(ready);
    int32_t fds[2];
    weft_process_options o = block_opts(j->method, fds, ready[1], -1);
    o.daemon = true;
    weft_process *d = NULL, *n = NULL;
    weft_status s = weft_process_start(tl_task_block, NULL, 0, &o, &d);
    if (s == WEFT_OK) {
        o.daemon = false;
        s = weft_process_start(tl_task_block, NULL, 0, &o, &n);
    }
    if (s != WEFT_OK) {
        snprintf(j->why, sizeof j->why, "start: %s: %s", weft_status_name(s), weft_last_error_message());
        atomic_store(&j->stage, -1);
        for (;;) pause();
    }
    j->daemon_flag = weft_process_is_daemon(d);
    j->plain_flag = weft_process_is_daemon(n);
    read_byte(ready[0]);
    read_byte(ready[0]);
    j->daemon_pid = weft_process_pid(d);
    j->plain_pid = weft_process_pid(n);
    atomic_store(&j->stage, 1);
    for (;;) pause();
}

/* The status of `pid` once it ended: reaped here when it is (now) a child of this process (a
 * subreaper), else seen gone or a zombie of another parent. Returns the wait status, or -1
 * when it was not ours to reap. Fails after 10 s. */
static int wait_ended(pid_t pid) {
    uint64_t deadline = runner_now_ns() + 10 * SEC;
    for (;;) {
        int st = 0;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) return st;
        if (r < 0 && errno != ECHILD && errno != EINTR) FAIL_AT("waitpid(%d): %s", (int)pid, strerror(errno));
        if (r < 0 && errno == ECHILD) {
            char s = proc_state(pid);
            if (s == 0 || s == 'Z' || s == 'X') return -1;
        }
        if (runner_now_ns() > deadline) FAIL_AT("process %d still runs (state %c)", (int)pid, proc_state(pid));
        runner_sleep_ms(1);
    }
}

/* Reaps every child of this process; fails unless all end within 10 s. */
static void reap_all_children(void) {
    uint64_t deadline = runner_now_ns() + 10 * SEC;
    for (;;) {
        int st;
        pid_t r = waitpid(-1, &st, WNOHANG);
        if (r > 0) continue;
        if (r < 0 && errno == ECHILD) return;
        if (r < 0 && errno != EINTR) FAIL_AT("waitpid(-1): %s", strerror(errno));
        if (runner_now_ns() > deadline) FAIL_AT("%d children still run", child_count());
        runner_sleep_ms(1);
    }
}

TEST_TIMEOUT(process_daemon_dies_with_killed_parent, 90000) {
    fd_guard g;
    fd_begin(&g);
    /* Orphans of the middle process are reparented here, so that they can be reaped (and
     * their end checked) rather than left to init. */
    ASSERT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), 0);
    for (int m = 0; m < 3; m++) {
        daemon_job *j = xp_shared(sizeof *j);
        j->method = METHODS[m];
        pid_t middle = xp_fork(daemon_middle, j);
        uint64_t deadline = runner_now_ns() + 20 * SEC;
        while (atomic_load(&j->stage) == 0) {
            int st;
            if (waitpid(middle, &st, WNOHANG) == middle) FAIL_AT("%s: the middle process ended (%d)", method_name(METHODS[m]), st);
            if (runner_now_ns() > deadline) FAIL_AT("%s: the children never started", method_name(METHODS[m]));
            runner_sleep_ms(1);
        }
        if (atomic_load(&j->stage) < 0) FAIL_AT("%s: %s", method_name(METHODS[m]), j->why);
        ASSERT(j->daemon_flag);
        ASSERT(!j->plain_flag);
        pid_t daemon = j->daemon_pid, plain = j->plain_pid;
        ASSERT_GT(daemon, 0);
        ASSERT_GT(plain, 0);
        ASSERT_NE(proc_state(daemon), 0);
        xp_kill(middle);
        /* The daemon dies (SIGKILL from its lifeline) without anyone asking. */
        int st = wait_ended(daemon);
        if (st != -1 && !(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL))
            FAIL_AT("%s: the daemon ended with wait status %d, expected SIGKILL", method_name(METHODS[m]), st);
        /* The non-daemon child lives on. */
        runner_sleep_ms(100);
        char s = proc_state(plain);
        if (s == 0 || s == 'Z' || s == 'X')
            FAIL_AT("%s: the non-daemon child died with its parent (state %c)", method_name(METHODS[m]), s ? s : '-');
        ASSERT_EQ(kill(plain, SIGKILL), 0);
        st = wait_ended(plain);
        if (st != -1) ASSERT(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
        /* And the middle's fork server (forkserver) ends once its parent is gone. */
        reap_all_children();
        ASSERT_EQ(child_count(), 0);
    }
    fd_end(&g);
}

/* A daemon of a process that exits normally dies too, even after its handle was freed. */
static void daemon_exiting_middle(void *arg) {
    daemon_job *j = arg;
    int ready[2];
    make_pipe(ready);
    int32_t fds[2];
    weft_process_options o = block_opts(j->method, fds, ready[1], -1);
    o.daemon = true;
    weft_process *d = NULL;
    ASSERT_OK(weft_process_start(tl_task_block, NULL, 0, &o, &d));
    read_byte(ready[0]);
    j->daemon_pid = weft_process_pid(d);
    /* Freeing the handle does not stop a daemon (it still dies with this process). */
    weft_process_free(d);
    ASSERT_EQ(proc_state(j->daemon_pid) != 0, 1);
    atomic_store(&j->stage, 1);
    exit(0); /* a normal exit, with atexit handlers */
}

TEST_TIMEOUT(process_daemon_dies_with_exiting_parent, 60000) {
    fd_guard g;
    fd_begin(&g);
    ASSERT_EQ(prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0), 0);
    for (int m = 0; m < 3; m++) {
        daemon_job *j = xp_shared(sizeof *j);
        j->method = METHODS[m];
        xp_wait_ok(xp_fork(daemon_exiting_middle, j));
        ASSERT_EQ(atomic_load(&j->stage), 1);
        int st = wait_ended(j->daemon_pid);
        if (st != -1 && !(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL))
            FAIL_AT("%s: the daemon ended with wait status %d, expected SIGKILL", method_name(METHODS[m]), st);
        reap_all_children();
    }
    fd_end(&g);
}

/* ---- 6. passing descriptors --------------------------------------------------------------------- */

/* Reads what is in pipe `fd` now (the writer ended) into `buf`, NUL-terminated. */
static void read_now(int fd, char *buf, size_t cap) {
    ASSERT_EQ(poll_in(fd, 20000), 1);
    ssize_t n;
    do n = read(fd, buf, cap - 1);
    while (n < 0 && errno == EINTR);
    ASSERT(n >= 0);
    buf[n] = '\0';
}

TEST_TIMEOUT(process_passes_descriptors, 60000) {
    warm_up_all();
    fd_guard g;
    fd_begin(&g);
    for (int m = 0; m < 3; m++) {
        int a[2], b[2];
        make_pipe(a);
        make_pipe(b);
        int32_t fds[2] = {a[1], b[1]};
        weft_process_options o = opts(METHODS[m], NULL);
        o.fds = fds;
        o.fd_count = 2;
        weft_process *p = start_ok(tl_task_fds, "hello", 5, &o);
        weft_bytes *r = join_ok(p);
        ASSERT_UEQ(weft_bytes_len(r), sizeof(tl_fds_result));
        tl_fds_result res;
        memcpy(&res, weft_bytes_data(r), sizeof res);
        weft_bytes_free(r);
        ASSERT_EQ(res.count, 2);
        ASSERT_EQ(res.past_end, -1);
        ASSERT_EQ(res.write_errno, 0);
        /* In the order given. */
        char buf[64];
        read_now(a[0], buf, sizeof buf);
        ASSERT_STR_EQ(buf, "0:hello");
        read_now(b[0], buf, sizeof buf);
        ASSERT_STR_EQ(buf, "1:hello");
        /* They stay open here. */
        ASSERT(fcntl(a[1], F_GETFD) >= 0);
        ASSERT(fcntl(b[1], F_GETFD) >= 0);
        weft_process_free(p);
        close_pipe(a);
        close_pipe(b);

        /* No descriptors: count 0, index 0 is -1. */
        o = opts(METHODS[m], NULL);
        p = start_ok(tl_task_fds, "x", 1, &o);
        r = join_ok(p);
        memcpy(&res, weft_bytes_data(r), sizeof res);
        weft_bytes_free(r);
        ASSERT_EQ(res.count, 0);
        ASSERT_EQ(res.past_end, -1);
        weft_process_free(p);
    }
    /* On a thread, a task has no descriptors. */
    weft_thread *t = NULL;
    ASSERT_OK(weft_thread_start(tl_task_fds, "t", 1, NULL, &t));
    weft_bytes *r = NULL;
    ASSERT_OK(weft_thread_join(t, JOIN_LIMIT, &r));
    tl_fds_result res;
    ASSERT_UEQ(weft_bytes_len(r), sizeof res);
    memcpy(&res, weft_bytes_data(r), sizeof res);
    ASSERT_EQ(res.count, 0);
    ASSERT_EQ(res.past_end, -1);
    weft_bytes_free(r);
    weft_thread_free(t);
    ASSERT_EQ(weft_call_fd_count(NULL), 0);
    ASSERT_EQ(weft_call_fd(NULL, 0), -1);
    fd_end(&g);
}

/* weft.h: passed descriptors are close-on-exec in the child, whatever their flag here. */
TEST_TIMEOUT(process_passed_descriptors_are_cloexec_in_child, 60000) {
    warm_up_all();
    fd_guard g;
    fd_begin(&g);
    for (int m = 0; m < 3; m++) {
        int a[2], b[2];
        make_pipe(a);
        ASSERT_EQ(pipe(b), 0); /* without O_CLOEXEC here */
        int32_t fds[2] = {a[1], b[1]};
        weft_process_options o = opts(METHODS[m], NULL);
        o.fds = fds;
        o.fd_count = 2;
        weft_process *p = start_ok(tl_task_fds, "c", 1, &o);
        weft_bytes *r = join_ok(p);
        tl_fds_result res;
        memcpy(&res, weft_bytes_data(r), sizeof res);
        weft_bytes_free(r);
        weft_process_free(p);
        close_pipe(a);
        close_pipe(b);
        if (res.cloexec_mask != 3u)
            FAIL_AT("%s: close-on-exec mask of the passed descriptors in the child is %#x, expected 0x3",
                    method_name(METHODS[m]), res.cloexec_mask);
    }
    fd_end(&g);
}

/* ---- 7. the default space is shared with children of every method ------------------------------- */

TEST_TIMEOUT(process_default_space_shared_with_children, 60000) {
    warm_up_all();
    fd_guard g;
    fd_begin(&g);
    xp_guard xg;
    xp_begin(&xg);
    weft_array *a = NULL;
    ASSERT_OK(weft_array_new_in(NULL, NULL, 'q', 2, NULL, true, &a));
    unsigned char token[WEFT_TOKEN_MAX];
    size_t tlen = 0;
    ASSERT_OK(weft_array_token(a, token, sizeof token, &tlen));
    weft_lock *l = NULL;
    ASSERT_OK(weft_lock_new_in(NULL, NULL, &l));
    unsigned char ltoken[WEFT_TOKEN_MAX];
    size_t ltlen = 0;
    ASSERT_OK(weft_lock_token(l, ltoken, sizeof ltoken, &ltlen));
    for (int m = 0; m < 3; m++) {
        weft_process_options o = opts(METHODS[m], NULL);
        weft_process *p = start_ok(tl_task_array, token, tlen, &o);
        weft_bytes *r = join_ok(p);
        ASSERT_UEQ(weft_bytes_len(r), sizeof(int64_t));
        int64_t previous;
        memcpy(&previous, weft_bytes_data(r), sizeof previous);
        weft_bytes_free(r);
        ASSERT_EQ(previous, m);
        int64_t v = -1;
        ASSERT_OK(weft_array_load(a, 0, &v));
        ASSERT_EQ(v, m + 1);
        ASSERT_OK(weft_array_load(a, 1, &v));
        ASSERT_EQ(v, weft_process_pid(p));
        weft_process_free(p);

        /* The lock held here is held there; released here, free there. */
        ASSERT_OK(weft_lock_acquire(l, 0));
        for (int k = 0; k < 2; k++) {
            p = start_ok(tl_task_lock_try, ltoken, ltlen, &o);
            r = join_ok(p);
            ASSERT_UEQ(weft_bytes_len(r), sizeof(int32_t));
            int32_t got;
            memcpy(&got, weft_bytes_data(r), sizeof got);
            weft_bytes_free(r);
            weft_process_free(p);
            if (k == 0) {
                ASSERT_STATUS(got, WEFT_WOULD_BLOCK);
                ASSERT_OK(weft_lock_release(l));
            } else {
                ASSERT_STATUS(got, WEFT_OK);
            }
        }
        ASSERT(!weft_lock_locked(l));
    }
    weft_lock_free(l);
    weft_array_free(a);
    xp_end(&xg);
    fd_end(&g);
}

/* ---- 8. close and free ----------------------------------------------------------------------- */

TEST_TIMEOUT(process_close_only_after_end, 60000) {
    warm_up_all();
    fd_guard g;
    fd_begin(&g);
    for (int m = 0; m < 3; m++) {
        int ready[2], gate[2];
        make_pipe(ready);
        make_pipe(gate);
        int32_t fds[2];
        weft_process_options o = block_opts(METHODS[m], fds, ready[1], gate[0]);
        o.name = "closing";
        weft_process *p = start_ok(tl_task_block, NULL, 0, &o);
        ASSERT_EQ(read_byte(ready[0]), 'r');
        int32_t pid = weft_process_pid(p);
        ASSERT_STATUS(weft_process_close(p), WEFT_INVALID_STATE);
        ASSERT(weft_process_is_alive(p)); /* close did nothing */
        write_byte(gate[1]);
        weft_bytes *r = join_ok(p);
        weft_bytes_free(r);
        ASSERT_OK(weft_process_close(p));
        /* The handle keeps its name, pid and exit code. */
        ASSERT_STR_EQ(weft_process_name(p), "closing");
        ASSERT_EQ(weft_process_pid(p), pid);
        ASSERT_EQ(exitcode_of(p), 0);
        ASSERT(!weft_process_is_alive(p));
        weft_process_free(p);
        close_pipe(ready);
        close_pipe(gate);
    }
    fd_end(&g);
}

/* A child freed while it runs is detached, and reaped after it ends at a later start (fork and
 * spawn children are this process's own; forkserver children are the server's). */
TEST_TIMEOUT(process_freed_running_child_reaped_at_next_start, 60000) {
    warm_up_all();
    fd_guard g;
    fd_begin(&g);
    for (int m = 0; m < 3; m++) {
        int ready[2], gate[2];
        make_pipe(ready);
        make_pipe(gate);
        int32_t fds[2];
        weft_process_options o = block_opts(METHODS[m], fds, ready[1], gate[0]);
        weft_process *p = start_ok(tl_task_block, NULL, 0, &o);
        ASSERT_EQ(read_byte(ready[0]), 'r');
        pid_t pid = weft_process_pid(p);
        weft_process_free(p); /* still running */
        ASSERT_NE(proc_state(pid), 0);
        write_byte(gate[1]);
        if (METHODS[m] == WEFT_START_FORKSERVER) {
            wait_gone(pid); /* the server reaps it */
        } else {
            wait_zombie(pid); /* ours, not reaped yet */
            weft_process_options to = opts(METHODS[m], NULL);
            weft_process *q = start_ok(tl_task_info, NULL, 0, &to);
            ASSERT_OK(weft_process_join(q, JOIN_LIMIT, NULL));
            weft_process_free(q);
            ASSERT_EQ(proc_state(pid), 0);
        }
        ASSERT_EQ(zombie_children(), 0);
        close_pipe(ready);
        close_pipe(gate);
    }
    fd_end(&g);
}

/* ... or when another handle is freed. */
TEST_TIMEOUT(process_freed_running_child_reaped_at_next_free, 60000) {
    warm_up_all();
    fd_guard g;
    fd_begin(&g);
    uint32_t methods[2] = {WEFT_START_FORK, WEFT_START_SPAWN};
    for (int m = 0; m < 2; m++) {
        int ready[2], gate[2];
        make_pipe(ready);
        make_pipe(gate);
        int32_t fds[2];
        weft_process_options o = block_opts(methods[m], fds, ready[1], gate[0]);
        weft_process *p = start_ok(tl_task_block, NULL, 0, &o);
        ASSERT_EQ(read_byte(ready[0]), 'r');
        weft_process_options to = opts(methods[m], NULL);
        weft_process *q = start_ok(tl_task_info, NULL, 0, &to);
        ASSERT_OK(weft_process_join(q, JOIN_LIMIT, NULL));
        pid_t pid = weft_process_pid(p);
        weft_process_free(p);
        write_byte(gate[1]);
        wait_zombie(pid);
        weft_process_free(q);
        ASSERT_EQ(proc_state(pid), 0);
        ASSERT_EQ(zombie_children(), 0);
        close_pipe(ready);
        close_pipe(gate);
    }
    fd_end(&g);
}

/* ---- 9. someone else's waitpid(-1) ------------------------------------------------------------ */

TEST_TIMEOUT(process_foreign_waitpid_loses_exit_code_not_result, 60000) {
    for (int m = 0; m < 3; m++) {
        /* Run each method in a helper process of its own, so that waitpid(-1) there sees no
         * child but the one under test (and, for forkserver, the server). */
        pid_t helper = fork();
        ASSERT(helper >= 0);
        if (helper == 0) {
            uint32_t method = METHODS[m];
            warm_up(method);
            fd_guard g;
            fd_begin(&g);
            weft_process_options o = opts(method, NULL);
            weft_process *p = start_ok(tl_task_info, "mine", 4, &o);
            ASSERT_EQ(poll_in(weft_process_fd(p), 20000), 1);
            int st = 0;
            if (method == WEFT_START_FORKSERVER) {
                /* Not our child: our waitpid cannot take its status (the server still runs),
                 * and the exit code comes from the server. */
                ASSERT_EQ(waitpid(-1, &st, WNOHANG), 0);
                weft_bytes *r = join_ok(p);
                weft_bytes_free(r);
                ASSERT_EQ(exitcode_of(p), 0);
            } else {
                pid_t r;
                do r = waitpid(-1, &st, 0);
                while (r < 0 && errno == EINTR);
                ASSERT_EQ(r, weft_process_pid(p));
                ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
                int32_t code = 12345;
                ASSERT_STATUS(weft_process_exitcode(p, &code), WEFT_OS_ERROR);
                ASSERT_EQ(weft_last_error_errno(), ECHILD);
                ASSERT_EQ(code, 12345);
                /* Still unknown, never made up. */
                ASSERT_STATUS(weft_process_exitcode(p, &code), WEFT_OS_ERROR);
                ASSERT_EQ(weft_last_error_errno(), ECHILD);
            }
            weft_bytes *r = join_ok(p);
            check_info(r, "tasklib", "mine", 4, p, method, weft_process_name(p));
            weft_bytes_free(r);
            ASSERT(!weft_process_is_alive(p));
            weft_process_free(p);
            fd_end(&g);
            fflush(stderr);
            _exit(0);
        }
        xp_wait_ok(helper);
    }
}

/* ---- 10. the fork-with-threads warning --------------------------------------------------------- */

typedef struct {
    atomic_int count;
    char last[512];
} warnings;

static void count_warning(const char *message, void *user) {
    warnings *w = user;
    snprintf(w->last, sizeof w->last, "%s", message ? message : "(null)");
    atomic_fetch_add(&w->count, 1);
}

typedef struct {
    int fd;
    atomic_uint tid;
} blocker;

static void *block_on_pipe(void *arg) {
    blocker *b = arg;
    atomic_store(&b->tid, my_tid());
    char c;
    while (read(b->fd, &c, 1) < 0 && errno == EINTR) {
    }
    return NULL;
}

static void run_one(uint32_t method) {
    weft_process_options o = opts(method, NULL);
    weft_process *p = start_ok(task_info_static, "t", 1, &o);
    weft_bytes *r = join_ok(p);
    check_info(r, "static", "t", 1, p, method, weft_process_name(p));
    weft_bytes_free(r);
    weft_process_free(p);
}

TEST_TIMEOUT(process_fork_with_threads_warns, 60000) {
    warm_up_all();
    fd_guard g;
    fd_begin(&g);
    static warnings w;
    weft_set_warning_hook(count_warning, &w);
    /* One thread: no warning. */
    run_one(WEFT_START_FORK);
    ASSERT_EQ(atomic_load(&w.count), 0);

    int p[2];
    make_pipe(p);
    blocker b = {.fd = p[0]};
    pthread_t th = spawn(block_on_pipe, &b);
    wait_blocked(&b.tid);
    run_one(WEFT_START_FORK);
    ASSERT_GE(atomic_load(&w.count), 1);
    ASSERT_CONTAINS(w.last, "thread");
    /* forkserver and spawn are safe with threads: no warning. */
    int before = atomic_load(&w.count);
    run_one(WEFT_START_FORKSERVER);
    run_one(WEFT_START_SPAWN);
    ASSERT_EQ(atomic_load(&w.count), before);
    /* Silenced. */
    weft_set_warning_hook(NULL, NULL);
    run_one(WEFT_START_FORK);
    ASSERT_EQ(atomic_load(&w.count), before);
    write_byte(p[1]);
    ASSERT_EQ(pthread_join(th, NULL), 0);
    close_pipe(p);
    fd_end(&g);
}

/* ---- 11. bad arguments ----------------------------------------------------------------------- */

TEST(process_bad_arguments) {
    warm_up_all();
    fd_guard g;
    fd_begin(&g);
    int children = child_count();
    weft_process *p = NULL;
    weft_process_options o = opts(WEFT_START_FORK, NULL);
    ASSERT_STATUS(weft_process_start(NULL, NULL, 0, &o, &p), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_process_start(tl_task_info, NULL, 0, &o, NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_process_start(tl_task_info, NULL, 5, &o, &p), WEFT_NULL_ARGUMENT);
    o.start_method = 99;
    ASSERT_STATUS(weft_process_start(tl_task_info, NULL, 0, &o, &p), WEFT_INVALID_ARGUMENT);
    for (int i = 0; i < 4; i++) {
        o = opts(WEFT_START_FORK, NULL);
        o.reserved[i] = 1;
        ASSERT_STATUS(weft_process_start(tl_task_info, NULL, 0, &o, &p), WEFT_INVALID_ARGUMENT);
    }
    o = opts(WEFT_START_FORK, NULL);
    o.fd_count = 1;
    ASSERT_STATUS(weft_process_start(tl_task_info, NULL, 0, &o, &p), WEFT_NULL_ARGUMENT);
    int pp[2];
    make_pipe(pp);
    int32_t many[201];
    for (int i = 0; i < 201; i++) many[i] = pp[1];
    o.fds = many;
    o.fd_count = 201;
    ASSERT_STATUS(weft_process_start(tl_task_info, NULL, 0, &o, &p), WEFT_INVALID_ARGUMENT);
    int32_t closed = pp[1];
    close_pipe(pp);
    for (int m = 0; m < 3; m++) {
        o = opts(METHODS[m], NULL);
        o.fds = &closed;
        o.fd_count = 1;
        ASSERT_STATUS(weft_process_start(tl_task_info, NULL, 0, &o, &p), WEFT_INVALID_ARGUMENT);
        int32_t negative = -1;
        o.fds = &negative;
        ASSERT_STATUS(weft_process_start(tl_task_info, NULL, 0, &o, &p), WEFT_INVALID_ARGUMENT);
    }
    ASSERT_NULL(p);
    ASSERT_EQ(child_count(), children); /* nothing was started */
    fd_end(&g);
}

TEST(process_null_handles) {
    weft_bytes *r = NULL;
    weft_status s = -1;
    int32_t code = 12345;
    ASSERT_STATUS(weft_process_join(NULL, 0, &r), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_process_join(NULL, WEFT_FOREVER, NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_process_task_status(NULL, &s), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_process_exitcode(NULL, &code), WEFT_NULL_ARGUMENT);
    ASSERT_EQ(code, 12345);
    ASSERT(!weft_process_is_alive(NULL));
    ASSERT_EQ(weft_process_pid(NULL), 0);
    ASSERT_EQ(weft_process_fd(NULL), -1);
    ASSERT_NULL(weft_process_name(NULL));
    ASSERT(!weft_process_is_daemon(NULL));
    ASSERT_EQ(weft_process_start_method(NULL), 0);
    ASSERT_STATUS(weft_process_send_signal(NULL, SIGTERM), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_process_terminate(NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_process_kill(NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_process_close(NULL), WEFT_NULL_ARGUMENT);
    weft_process_free(NULL);
    ASSERT_NULL(r);

    /* NULL out-pointers on a real handle. */
    warm_up(WEFT_START_FORK);
    fd_guard g;
    fd_begin(&g);
    weft_process_options o = opts(WEFT_START_FORK, NULL);
    weft_process *p = start_ok(tl_task_info, NULL, 0, &o);
    ASSERT_OK(weft_process_join(p, JOIN_LIMIT, NULL)); /* result NULL is allowed */
    ASSERT_STATUS(weft_process_task_status(p, NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_process_exitcode(p, NULL), WEFT_NULL_ARGUMENT);
    weft_process_free(p);
    fd_end(&g);
}

static const char *tasklib_path(void) {
    static Dl_info info;
    ASSERT(dladdr((void *)(uintptr_t)tl_task_info, &info) != 0);
    ASSERT_NOT_NULL(info.dli_fname);
    ASSERT_CONTAINS(info.dli_fname, "libweft_tasklib");
    return info.dli_fname;
}

TEST_TIMEOUT(process_start_symbol, 60000) {
    warm_up_all();
    fd_guard g;
    fd_begin(&g);
    const char *lib = tasklib_path();
    weft_process *p = NULL;
    for (int m = 0; m < 3; m++) {
        weft_process_options o = opts(METHODS[m], "by-symbol");
        p = NULL;
        ASSERT_OK(weft_process_start_symbol(lib, "tl_task_info", "sym", 3, &o, &p));
        weft_bytes *r = join_ok(p);
        check_info(r, "tasklib", "sym", 3, p, METHODS[m], "by-symbol");
        weft_bytes_free(r);
        weft_process_free(p);
        /* NULL library: the program and the libraries loaded with it. */
        p = NULL;
        ASSERT_OK(weft_process_start_symbol(NULL, "tl_task_info", "nul", 3, &o, &p));
        r = join_ok(p);
        check_info(r, "tasklib", "nul", 3, p, METHODS[m], "by-symbol");
        weft_bytes_free(r);
        weft_process_free(p);
    }
    int children = child_count();
    weft_process_options o = opts(WEFT_START_FORKSERVER, NULL);
    p = NULL;
    ASSERT_STATUS(weft_process_start_symbol(lib, "tl_no_such_task", NULL, 0, &o, &p), WEFT_NOT_FOUND);
    ASSERT_STATUS(weft_process_start_symbol(NULL, "tl_no_such_task", NULL, 0, &o, &p), WEFT_NOT_FOUND);
    ASSERT_STATUS(weft_process_start_symbol("/nonexistent/libweft_nothing.so", "tl_task_info", NULL, 0, &o, &p),
                  WEFT_NOT_FOUND);
    ASSERT_STATUS(weft_process_start_symbol(lib, NULL, NULL, 0, &o, &p), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_process_start_symbol(lib, "tl_task_info", NULL, 0, &o, NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_process_start_symbol(lib, "tl_task_info", NULL, 4, &o, &p), WEFT_NULL_ARGUMENT);
    o.start_method = 99;
    ASSERT_STATUS(weft_process_start_symbol(lib, "tl_task_info", NULL, 0, &o, &p), WEFT_INVALID_ARGUMENT);
    ASSERT_NULL(p);
    ASSERT_EQ(child_count(), children);
    fd_end(&g);
}

/* A function that is in no loaded object cannot be found again by forkserver or spawn. */
TEST(process_task_outside_any_object_refused) {
    warm_up_all();
    fd_guard g;
    fd_begin(&g);
    int children = child_count();
    unsigned char *buf = malloc(64);
    ASSERT_NOT_NULL(buf);
    memset(buf, 0xCC, 64);
    /* Never called: weft must refuse it before anything runs it. */
    weft_task_fn bogus = (weft_task_fn)(uintptr_t)(buf + 16);
    uint32_t methods[2] = {WEFT_START_FORKSERVER, WEFT_START_SPAWN};
    for (int m = 0; m < 2; m++) {
        weft_process_options o = opts(methods[m], NULL);
        weft_process *p = NULL;
        ASSERT_STATUS(weft_process_start(bogus, "x", 1, &o, &p), WEFT_INVALID_ARGUMENT);
        ASSERT_NULL(p);
    }
    /* The default method is forkserver. */
    weft_process *p = NULL;
    ASSERT_STATUS(weft_process_start(bogus, NULL, 0, NULL, &p), WEFT_INVALID_ARGUMENT);
    ASSERT_NULL(p);
    free(buf);
    ASSERT_EQ(child_count(), children);
    fd_end(&g);
}

/* ---- 12. CPUs and the default start method ---------------------------------------------------- */

static void one_cpu(void *arg) {
    (void)arg;
    cpu_set_t set;
    CPU_ZERO(&set);
    ASSERT_EQ(sched_getaffinity(0, sizeof set, &set), 0);
    int first = -1;
    for (int i = 0; i < CPU_SETSIZE; i++)
        if (CPU_ISSET(i, &set)) {
            first = i;
            break;
        }
    ASSERT_GE(first, 0);
    CPU_ZERO(&set);
    CPU_SET(first, &set);
    ASSERT_EQ(sched_setaffinity(0, sizeof set, &set), 0);
    ASSERT_EQ(weft_cpu_count(), 1);
}

TEST(process_cpu_count) {
    fd_guard g;
    fd_begin(&g);
    uint32_t n = weft_cpu_count();
    ASSERT_GE(n, 1);
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    ASSERT_GE(online, 1);
    ASSERT_LE(n, online);
    cpu_set_t set;
    CPU_ZERO(&set);
    ASSERT_EQ(sched_getaffinity(0, sizeof set, &set), 0);
    ASSERT_LE(n, CPU_COUNT(&set));
    xp_wait_ok(xp_fork(one_cpu, NULL));
    ASSERT_EQ(weft_cpu_count(), n); /* unchanged here */
    fd_end(&g);
}

TEST_TIMEOUT(process_default_start_method_round_trip, 60000) {
    ASSERT_EQ(weft_process_get_start_method(), WEFT_START_FORKSERVER);
    warm_up_all();
    fd_guard g;
    fd_begin(&g);
    for (int m = 0; m < 3; m++) {
        ASSERT_OK(weft_process_set_start_method(METHODS[m]));
        ASSERT_EQ(weft_process_get_start_method(), METHODS[m]);
        /* NULL options and start_method 0 both take the default. */
        for (int k = 0; k < 2; k++) {
            weft_process_options o = opts(WEFT_START_DEFAULT, NULL);
            weft_process *p = NULL;
            ASSERT_OK(weft_process_start(task_info_exported, "d", 1, k ? &o : NULL, &p));
            ASSERT_UEQ(weft_process_start_method(p), METHODS[m]);
            weft_bytes *r = join_ok(p);
            check_info(r, "exported", "d", 1, p, METHODS[m], weft_process_name(p));
            weft_bytes_free(r);
            weft_process_free(p);
        }
    }
    ASSERT_STATUS(weft_process_set_start_method(WEFT_START_DEFAULT), WEFT_INVALID_ARGUMENT);
    ASSERT_STATUS(weft_process_set_start_method(99), WEFT_INVALID_ARGUMENT);
    ASSERT_EQ(weft_process_get_start_method(), WEFT_START_SPAWN); /* unchanged */
    ASSERT_OK(weft_process_set_start_method(WEFT_START_FORKSERVER));
    ASSERT_EQ(weft_process_get_start_method(), WEFT_START_FORKSERVER);
    fd_end(&g);
}

TEST(process_current_process) {
    ASSERT_EQ(weft_process_current_pid(), getpid());
    ASSERT_STR_EQ(weft_process_current_name(), "MainProcess");
    ASSERT_EQ(weft_process_parent_pid(), getppid());
}

/* ---- 13. large arguments and results ------------------------------------------------------------ */

TEST_TIMEOUT(process_large_result_and_argument, 90000) {
    warm_up_all();
    fd_guard g;
    fd_begin(&g);
    size_t size = 8u << 20;
    unsigned char *want = malloc(size);
    ASSERT_NOT_NULL(want);
    for (int m = 0; m < 3; m++) {
        tl_big_arg a = {size, 0x1234567u + (uint64_t)m};
        tl_pattern(want, size, a.seed);
        weft_process_options o = opts(METHODS[m], NULL);
        weft_process *p = start_ok(tl_task_big, &a, sizeof a, &o);
        weft_bytes *r = join_ok(p);
        ASSERT_UEQ(weft_bytes_len(r), size);
        ASSERT(memcmp(weft_bytes_data(r), want, size) == 0);
        weft_bytes_free(r);
        ASSERT_EQ(exitcode_of(p), 0);
        weft_process_free(p);

        /* A 2 MiB argument, echoed (XORed) back. */
        size_t alen = 2u << 20;
        p = start_ok(tl_task_info, want, alen, &o);
        r = join_ok(p);
        check_info(r, "tasklib", want, alen, p, METHODS[m], weft_process_name(p));
        weft_bytes_free(r);
        weft_process_free(p);
    }
    free(want);
    fd_end(&g);
}

/* ---- 14. many children at once ------------------------------------------------------------------ */

#define MANY 20

TEST_TIMEOUT(process_many_children_at_once, 90000) {
    warm_up_all();
    fd_guard g;
    fd_begin(&g);
    uint32_t methods[2] = {WEFT_START_FORKSERVER, WEFT_START_FORK};
    for (int m = 0; m < 2; m++) {
        int ready[2], gate[2];
        make_pipe(ready);
        make_pipe(gate);
        weft_process *ps[MANY];
        char args[MANY][16];
        for (int i = 0; i < MANY; i++) {
            int32_t fds[2];
            weft_process_options o = block_opts(methods[m], fds, ready[1], gate[0]);
            int len = snprintf(args[i], sizeof args[i], "child-%02d", i);
            ps[i] = start_ok(tl_task_block, args[i], (size_t)len, &o);
        }
        /* All of them run at the same time. */
        for (int i = 0; i < MANY; i++) ASSERT_EQ(read_byte(ready[0]), 'r');
        for (int i = 0; i < MANY; i++) ASSERT(weft_process_is_alive(ps[i]));
        for (int i = 0; i < MANY; i++) write_byte(gate[1]);
        for (int i = 0; i < MANY; i++) {
            weft_bytes *r = join_ok(ps[i]);
            char want[32];
            int wl = snprintf(want, sizeof want, "released:%s", args[i]);
            ASSERT_UEQ(weft_bytes_len(r), (size_t)wl);
            ASSERT(memcmp(weft_bytes_data(r), want, (size_t)wl) == 0);
            weft_bytes_free(r);
            ASSERT_EQ(exitcode_of(ps[i]), 0);
        }
        /* Distinct processes. */
        for (int i = 0; i < MANY; i++)
            for (int k = i + 1; k < MANY; k++) ASSERT_NE(weft_process_pid(ps[i]), weft_process_pid(ps[k]));
        for (int i = 0; i < MANY; i++) weft_process_free(ps[i]);
        close_pipe(ready);
        close_pipe(gate);
    }
    fd_end(&g);
}
