/* Conformance tests for commands (Python's subprocess): return codes and signals, wait
 * timeouts and poll, the pidfd, environment, working directory, new sessions, stdio modes,
 * communicate (100 MiB both ways, timeouts that continue, a child that stops reading), run
 * (capture, input, check, timeout), exec failures reported as statuses with errno, a child
 * collected by someone else's waitpid, freeing a running child, and bad arguments.
 * Every test checks that no descriptor leaked and no zombie child is left. */
#define _GNU_SOURCE
#include "runner.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

/* ---- helpers ---------------------------------------------------------------------------- */

static weft_command *start(const char *const *argv, const weft_command_options *o) {
    weft_command *c = NULL;
    ASSERT_OK(weft_command_start(argv, o, &c));
    ASSERT_NOT_NULL(c);
    return c;
}

static int wait_rc(weft_command *c) {
    int rc = INT_MIN;
    ASSERT_OK(weft_command_wait(c, WEFT_FOREVER, &rc));
    return rc;
}

/* The buffer's bytes as a NUL-terminated string (test outputs are short text); frees it. */
static char *take_text(weft_bytes *b) {
    ASSERT_NOT_NULL(b);
    size_t n = weft_bytes_len(b);
    char *s = malloc(n + 1);
    ASSERT_NOT_NULL(s);
    if (n) memcpy(s, weft_bytes_data(b), n);
    s[n] = '\0';
    weft_bytes_free(b);
    return s;
}

/* Asserts that `b` holds exactly `s`, and frees it. */
static void assert_text(weft_bytes *b, const char *s) {
    char *t = take_text(b);
    ASSERT_STR_EQ(t, s);
    free(t);
}

/* `len` bytes of a pattern that does not repeat at pipe-buffer periods. */
static unsigned char *pattern(size_t len, uint64_t seed) {
    unsigned char *p = malloc(len);
    ASSERT_NOT_NULL(p);
    uint64_t s = seed;
    for (size_t i = 0; i < len; i += 8) {
        uint64_t v = xp_rand(&s);
        memcpy(p + i, &v, len - i < 8 ? len - i : 8);
    }
    return p;
}

static void assert_same(weft_bytes *b, const unsigned char *want, size_t len) {
    ASSERT_NOT_NULL(b);
    ASSERT_UEQ(weft_bytes_len(b), len);
    ASSERT(memcmp(weft_bytes_data(b), want, len) == 0);
    weft_bytes_free(b);
}

/* Waits until child `pid` is stopped (consumes only that notification). */
static void wait_stopped(int pid) {
    siginfo_t info;
    ASSERT_EQ(waitid(P_PID, (id_t)pid, &info, WSTOPPED), 0);
    ASSERT_EQ(info.si_code, CLD_STOPPED);
}

/* ---- return codes, waiting, signals ----------------------------------------------------- */

TEST(command_return_codes_follow_python) {
    fd_guard g;
    fd_begin(&g);
    const char *t[] = {"true", NULL};
    const char *f[] = {"/bin/sh", "-c", "exit 3", NULL};
    weft_command *c = start(t, NULL);
    ASSERT_GT(weft_command_pid(c), 0);
    ASSERT_EQ(wait_rc(c), 0);
    ASSERT_EQ(wait_rc(c), 0); /* collected once, reported every time */
    weft_command_free(c);
    c = start(f, NULL);
    ASSERT_EQ(wait_rc(c), 3);
    int rc = -1;
    ASSERT_OK(weft_command_poll(c, &rc));
    ASSERT_EQ(rc, 3);
    weft_command_free(c);

    const char *sleeper[] = {"sleep", "100", NULL};
    c = start(sleeper, NULL);
    ASSERT_OK(weft_command_terminate(c));
    ASSERT_EQ(wait_rc(c), -SIGTERM);
    ASSERT_OK(weft_command_kill(c)); /* after collection: nothing happens */
    weft_command_free(c);
    c = start(sleeper, NULL);
    ASSERT_OK(weft_command_kill(c));
    ASSERT_EQ(wait_rc(c), -SIGKILL);
    weft_command_free(c);
    c = start(sleeper, NULL);
    ASSERT_OK(weft_command_send_signal(c, SIGINT));
    ASSERT_EQ(wait_rc(c), -SIGINT);
    weft_command_free(c);
    fd_end(&g);
}

TEST(command_wait_timeout_poll_then_kill) {
    fd_guard g;
    fd_begin(&g);
    const char *argv[] = {"sleep", "100", NULL};
    weft_command *c = start(argv, NULL);
    int rc = 12345;
    uint64_t t0 = runner_now_ns();
    ASSERT_STATUS(weft_command_wait(c, 20 * MS, &rc), WEFT_TIMEOUT);
    ASSERT_UGE(runner_now_ns() - t0, 20 * MS); /* never early */
    ASSERT_STATUS(weft_command_poll(c, &rc), WEFT_WOULD_BLOCK);
    ASSERT_EQ(rc, 12345); /* not written on failure */
    ASSERT_OK(weft_command_kill(c));
    ASSERT_EQ(wait_rc(c), -SIGKILL);
    ASSERT_OK(weft_command_poll(c, &rc));
    ASSERT_EQ(rc, -SIGKILL);
    ASSERT_OK(weft_command_wait(c, 0, NULL)); /* the return code pointer is optional */
    weft_command_free(c);
    fd_end(&g);
}

TEST(command_pidfd_becomes_readable_at_exit) {
    fd_guard g;
    fd_begin(&g);
    const char *argv[] = {"cat", NULL};
    weft_command_options o = {0};
    o.stdin_mode = WEFT_STDIO_PIPE;
    weft_command *c = start(argv, &o);
    struct pollfd p = {.fd = weft_command_fd(c), .events = POLLIN};
    ASSERT_GE(p.fd, 0);
    ASSERT_EQ(poll(&p, 1, 0), 0);
    ASSERT_OK(weft_command_close_stdin(c)); /* cat sees end of file and exits */
    ASSERT_EQ(poll(&p, 1, 20000), 1);
    ASSERT(p.revents & POLLIN);
    int rc = -1;
    ASSERT_OK(weft_command_poll(c, &rc));
    ASSERT_EQ(rc, 0);
    weft_command_free(c);
    fd_end(&g);
}

struct waiter {
    weft_command *c;
    int rc;
    weft_status st;
};

static void *waiter_main(void *arg) {
    struct waiter *w = arg;
    w->st = weft_command_wait(w->c, WEFT_FOREVER, &w->rc);
    return NULL;
}

TEST(command_two_threads_waiting_both_see_the_return_code) {
    fd_guard g;
    fd_begin(&g);
    const char *argv[] = {"sh", "-c", "read x; exit 7", NULL};
    weft_command_options o = {0};
    o.stdin_mode = WEFT_STDIO_PIPE;
    weft_command *c = start(argv, &o);
    struct waiter a = {c, 0, -1}, b = {c, 0, -1};
    pthread_t ta = spawn(waiter_main, &a), tb = spawn(waiter_main, &b);
    ASSERT_OK(weft_command_close_stdin(c));
    pthread_join(ta, NULL);
    pthread_join(tb, NULL);
    ASSERT_OK(a.st);
    ASSERT_OK(b.st);
    ASSERT_EQ(a.rc, 7);
    ASSERT_EQ(b.rc, 7);
    weft_command_free(c);
    fd_end(&g);
}

/* ---- environment, working directory, session, PATH -------------------------------------- */

TEST(command_env_replaces_the_environment) {
    fd_guard g;
    fd_begin(&g);
    const char *env[] = {"A=1", "B=two words", NULL};
    const char *argv[] = {"env", NULL}; /* found in the default /bin:/usr/bin */
    weft_command_options o = {0};
    o.env = env;
    weft_bytes *out = NULL;
    int rc = -1;
    ASSERT_OK(weft_command_run(argv, &o, NULL, 0, WEFT_FOREVER, WEFT_RUN_CHECK, &rc, &out, NULL));
    ASSERT_EQ(rc, 0);
    assert_text(out, "A=1\nB=two words\n");
    fd_end(&g);
}

TEST(command_program_is_searched_in_the_childs_path) {
    fd_guard g;
    fd_begin(&g);
    const char *argv[] = {"sh", "-c", "exit 5", NULL};
    const char *good[] = {"PATH=/nonexistent:/usr/bin:/bin", NULL};
    const char *bad[] = {"PATH=/nonexistent", NULL};
    weft_command_options o = {0};
    o.env = good;
    int rc = -1;
    ASSERT_OK(weft_command_run(argv, &o, NULL, 0, WEFT_FOREVER, 0, &rc, NULL, NULL));
    ASSERT_EQ(rc, 5);
    o.env = bad;
    ASSERT_STATUS(weft_command_run(argv, &o, NULL, 0, WEFT_FOREVER, 0, &rc, NULL, NULL), WEFT_NOT_FOUND);
    ASSERT_EQ(weft_last_error_errno(), ENOENT);
    fd_end(&g);
}

TEST(command_cwd) {
    fd_guard g;
    fd_begin(&g);
    char dir[] = "/tmp/weft-cwd-XXXXXX";
    ASSERT_NOT_NULL(mkdtemp(dir));
    char *real = realpath(dir, NULL);
    ASSERT_NOT_NULL(real);
    const char *argv[] = {"sh", "-c", "pwd -P", NULL};
    weft_command_options o = {0};
    o.cwd = dir;
    weft_bytes *out = NULL;
    ASSERT_OK(weft_command_run(argv, &o, NULL, 0, WEFT_FOREVER, WEFT_RUN_CHECK, NULL, &out, NULL));
    char want[PATH_MAX + 2];
    snprintf(want, sizeof want, "%s\n", real);
    assert_text(out, want);
    free(real);
    ASSERT_EQ(rmdir(dir), 0);
    fd_end(&g);
}

TEST(command_start_new_session) {
    fd_guard g;
    fd_begin(&g);
    /* Field 6 of /proc/PID/stat is the session id; "(sh)" holds no space. */
    const char *argv[] = {"sh", "-c", "cut -d' ' -f6 /proc/$$/stat", NULL};
    weft_command_options o = {0};
    o.stdout_mode = WEFT_STDIO_PIPE;
    o.start_new_session = true;
    weft_command *c = start(argv, &o);
    weft_bytes *out = NULL;
    ASSERT_OK(weft_command_communicate(c, NULL, 0, WEFT_FOREVER, &out, NULL));
    char want[32];
    snprintf(want, sizeof want, "%d\n", weft_command_pid(c));
    assert_text(out, want);
    ASSERT_EQ(wait_rc(c), 0);
    weft_command_free(c);

    o.start_new_session = false; /* the default: this process's session */
    c = start(argv, &o);
    ASSERT_OK(weft_command_communicate(c, NULL, 0, WEFT_FOREVER, &out, NULL));
    snprintf(want, sizeof want, "%d\n", (int)getsid(0));
    assert_text(out, want);
    weft_command_free(c);
    fd_end(&g);
}

/* ---- stdio modes and the pipe descriptors ----------------------------------------------- */

TEST(command_stdio_null_fd_and_merged) {
    fd_guard g;
    fd_begin(&g);
    int p[2];
    ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
    const char *argv[] = {"sh", "-c", "cat; echo out; echo err >&2", NULL};
    weft_command_options o = {0};
    o.stdin_mode = WEFT_STDIO_NULL; /* cat reads end of file at once */
    o.stdout_mode = WEFT_STDIO_FD;
    o.stdout_fd = p[1];
    o.stderr_mode = WEFT_STDIO_STDOUT;
    weft_command *c = start(argv, &o);
    ASSERT_EQ(weft_command_stdin_fd(c), -1);
    ASSERT_EQ(weft_command_stdout_fd(c), -1);
    ASSERT_EQ(weft_command_stderr_fd(c), -1);
    ASSERT_EQ(wait_rc(c), 0);
    weft_command_free(c);
    ASSERT_EQ(fcntl(p[1], F_GETFD), FD_CLOEXEC); /* the caller's descriptor is untouched */
    close(p[1]);
    char buf[64] = "";
    ASSERT_EQ(read(p[0], buf, sizeof buf - 1), 8);
    ASSERT_STR_EQ(buf, "out\nerr\n");
    close(p[0]);

    /* stdout to /dev/null, stderr merged: nothing is captured. */
    o.stdin_mode = WEFT_STDIO_NULL;
    o.stdout_mode = WEFT_STDIO_NULL;
    weft_bytes *out = (weft_bytes *)1, *err = (weft_bytes *)1;
    ASSERT_OK(weft_command_run(argv, &o, NULL, 0, WEFT_FOREVER, WEFT_RUN_CHECK, NULL, &out, &err));
    ASSERT_NULL(out);
    ASSERT_NULL(err);
    fd_end(&g);
}

TEST(command_stdio_fd_can_be_a_low_descriptor) {
    fd_guard g;
    fd_begin(&g);
    /* stdout = our stderr's descriptor 2 while stderr is a pipe: the child must copy 2 to 1
     * before replacing its 2 with the pipe. Redirect our 2 to a pipe to see the result. */
    int p[2];
    ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);
    int saved = dup(2);
    ASSERT_GE(saved, 0);
    ASSERT_EQ(dup2(p[1], 2), 2);
    const char *argv[] = {"sh", "-c", "echo to-out; echo to-err >&2", NULL};
    weft_command_options o = {0};
    o.stdout_mode = WEFT_STDIO_FD;
    o.stdout_fd = 2;
    o.stderr_mode = WEFT_STDIO_PIPE;
    weft_bytes *err = NULL;
    weft_status st = weft_command_run(argv, &o, NULL, 0, WEFT_FOREVER, 0, NULL, NULL, &err);
    ASSERT_EQ(dup2(saved, 2), 2);
    close(saved);
    close(p[1]);
    ASSERT_OK(st);
    assert_text(err, "to-err\n");
    char buf[64] = "";
    ASSERT_EQ(read(p[0], buf, sizeof buf - 1), 7);
    ASSERT_STR_EQ(buf, "to-out\n");
    close(p[0]);
    fd_end(&g);
}

TEST(command_pipe_descriptors_can_be_used_directly) {
    fd_guard g;
    fd_begin(&g);
    const char *argv[] = {"cat", NULL};
    weft_command_options o = {0};
    o.stdin_mode = WEFT_STDIO_PIPE;
    o.stdout_mode = WEFT_STDIO_PIPE;
    weft_command *c = start(argv, &o);
    int in = weft_command_stdin_fd(c), out = weft_command_stdout_fd(c);
    ASSERT_GE(in, 3);
    ASSERT_GE(out, 3);
    ASSERT_EQ(fcntl(in, F_GETFD), FD_CLOEXEC);
    ASSERT_EQ(fcntl(out, F_GETFD), FD_CLOEXEC);
    ASSERT_EQ(write(in, "abc", 3), 3);
    ASSERT_OK(weft_command_close_stdin(c));
    ASSERT_OK(weft_command_close_stdin(c)); /* twice is fine */
    ASSERT_EQ(weft_command_stdin_fd(c), -1);
    char buf[16] = "";
    size_t got = 0;
    for (;;) {
        ssize_t n = read(out, buf + got, sizeof buf - 1 - got);
        ASSERT_GE(n, 0);
        if (n == 0) break;
        got += (size_t)n;
    }
    ASSERT_STR_EQ(buf, "abc");
    ASSERT_EQ(wait_rc(c), 0);
    weft_command_free(c);
    fd_end(&g);
}

TEST(command_child_gets_only_0_1_2) {
    fd_guard g;
    fd_begin(&g);
    int leak = open("/dev/null", O_RDONLY); /* deliberately inheritable */
    ASSERT_GE(leak, 3);
    const char *argv[] = {"ls", "/proc/self/fd", NULL};
    weft_bytes *out = NULL;
    ASSERT_OK(weft_command_run(argv, NULL, NULL, 0, WEFT_FOREVER, WEFT_RUN_CHECK, NULL, &out, NULL));
    /* ls's own directory descriptor is 3. */
    assert_text(out, "0\n1\n2\n3\n");
    close(leak);
    fd_end(&g);
}

/* ---- communicate ------------------------------------------------------------------------ */

TEST_TIMEOUT(command_communicate_100_mib_through_cat, 120000) {
    fd_guard g;
    fd_begin(&g);
    size_t len = 100u << 20;
    unsigned char *data = pattern(len, 0x9e3779b97f4a7c15ULL);
    const char *argv[] = {"cat", NULL};
    weft_command_options o = {0};
    o.stdin_mode = WEFT_STDIO_PIPE;
    o.stdout_mode = WEFT_STDIO_PIPE;
    weft_command *c = start(argv, &o);
    weft_bytes *out = NULL, *err = (weft_bytes *)1;
    ASSERT_OK(weft_command_communicate(c, data, len, WEFT_FOREVER, &out, &err));
    ASSERT_NULL(err); /* stderr is not a pipe */
    assert_same(out, data, len);
    int rc = -1;
    ASSERT_OK(weft_command_poll(c, &rc)); /* communicate waited */
    ASSERT_EQ(rc, 0);
    ASSERT_EQ(weft_command_stdin_fd(c), -1);
    ASSERT_EQ(weft_command_stdout_fd(c), -1);
    weft_command_free(c);
    free(data);
    fd_end(&g);
}

TEST_TIMEOUT(command_communicate_all_three_streams_at_once, 120000) {
    fd_guard g;
    fd_begin(&g);
    size_t len = 16u << 20;
    unsigned char *data = pattern(len, 42);
    const char *argv[] = {"tee", "/dev/stderr", NULL};
    weft_command_options o = {0};
    o.stdin_mode = WEFT_STDIO_PIPE;
    o.stdout_mode = WEFT_STDIO_PIPE;
    o.stderr_mode = WEFT_STDIO_PIPE;
    weft_command *c = start(argv, &o);
    weft_bytes *out = NULL, *err = NULL;
    ASSERT_OK(weft_command_communicate(c, data, len, WEFT_FOREVER, &out, &err));
    assert_same(out, data, len);
    assert_same(err, data, len);
    weft_command_free(c);
    free(data);
    fd_end(&g);
}

TEST(command_communicate_timeout_then_continue) {
    fd_guard g;
    fd_begin(&g);
    size_t len = 1u << 20; /* far more than a pipe holds */
    unsigned char *data = pattern(len, 7);
    const char *argv[] = {"cat", NULL};
    weft_command_options o = {0};
    o.stdin_mode = WEFT_STDIO_PIPE;
    o.stdout_mode = WEFT_STDIO_PIPE;
    weft_command *c = start(argv, &o);
    /* A stopped cat reads nothing: the input cannot all be written. */
    ASSERT_OK(weft_command_send_signal(c, SIGSTOP));
    wait_stopped(weft_command_pid(c));
    weft_bytes *out = (weft_bytes *)1;
    ASSERT_STATUS(weft_command_communicate(c, data, len, 0, &out, NULL), WEFT_WOULD_BLOCK);
    uint64_t t0 = runner_now_ns();
    ASSERT_STATUS(weft_command_communicate(c, NULL, 0, 20 * MS, &out, NULL), WEFT_TIMEOUT);
    ASSERT_UGE(runner_now_ns() - t0, 20 * MS);
    ASSERT_PTR_EQ(out, (weft_bytes *)1); /* not written on failure */
    ASSERT_STATUS(weft_command_communicate(c, "x", 1, 0, &out, NULL), WEFT_INVALID_STATE);
    ASSERT_GE(weft_command_stdin_fd(c), 0); /* still open: input is pending */
    ASSERT_OK(weft_command_send_signal(c, SIGCONT));
    ASSERT_OK(weft_command_communicate(c, NULL, 0, WEFT_FOREVER, &out, NULL));
    assert_same(out, data, len); /* nothing lost, nothing repeated */
    ASSERT_EQ(wait_rc(c), 0);
    /* A call after completion returns empty output. */
    ASSERT_OK(weft_command_communicate(c, NULL, 0, 0, &out, NULL));
    ASSERT_UEQ(weft_bytes_len(out), 0);
    weft_bytes_free(out);
    weft_command_free(c);
    free(data);
    fd_end(&g);
}

TEST(command_communicate_child_that_stops_reading_is_no_error) {
    fd_guard g;
    fd_begin(&g);
    /* The default SIGPIPE disposition would end this process if the signal escaped. */
    signal(SIGPIPE, SIG_DFL);
    size_t len = 4u << 20;
    unsigned char *data = pattern(len, 3);
    const char *argv[] = {"sh", "-c", "head -c 10 >/dev/null; exit 4", NULL};
    weft_command_options o = {0};
    o.stdin_mode = WEFT_STDIO_PIPE;
    weft_command *c = start(argv, &o);
    ASSERT_OK(weft_command_communicate(c, data, len, WEFT_FOREVER, NULL, NULL));
    ASSERT_EQ(wait_rc(c), 4);
    weft_command_free(c);
    sigset_t pending;
    sigpending(&pending);
    ASSERT(!sigismember(&pending, SIGPIPE));
    free(data);
    fd_end(&g);
}

TEST(command_communicate_input_needs_a_stdin_pipe) {
    fd_guard g;
    fd_begin(&g);
    const char *argv[] = {"true", NULL};
    weft_command *c = start(argv, NULL);
    ASSERT_STATUS(weft_command_communicate(c, "x", 1, WEFT_FOREVER, NULL, NULL), WEFT_INVALID_STATE);
    ASSERT_STATUS(weft_command_close_stdin(c), WEFT_INVALID_STATE);
    weft_bytes *out = (weft_bytes *)1;
    ASSERT_OK(weft_command_communicate(c, NULL, 0, WEFT_FOREVER, &out, NULL)); /* just waits */
    ASSERT_NULL(out);
    ASSERT_EQ(wait_rc(c), 0);
    weft_command_free(c);
    fd_end(&g);
}

/* ---- run -------------------------------------------------------------------------------- */

TEST(command_run_captures_input_output_and_checks) {
    fd_guard g;
    fd_begin(&g);
    const char *cat[] = {"cat", NULL};
    weft_bytes *out = NULL, *err = NULL;
    int rc = -1;
    ASSERT_OK(weft_command_run(cat, NULL, "hello", 5, WEFT_FOREVER, WEFT_RUN_CHECK, &rc, &out, &err));
    ASSERT_EQ(rc, 0);
    assert_text(out, "hello");
    assert_text(err, "");

    /* Empty but non-NULL input: stdin is a pipe closed at once. */
    ASSERT_OK(weft_command_run(cat, NULL, "", 0, WEFT_FOREVER, 0, &rc, &out, NULL));
    assert_text(out, "");

    const char *fails[] = {"sh", "-c", "echo partial; echo why >&2; exit 2", NULL};
    out = err = NULL;
    rc = -1;
    ASSERT_OK(weft_command_run(fails, NULL, NULL, 0, WEFT_FOREVER, 0, &rc, &out, &err));
    ASSERT_EQ(rc, 2);
    assert_text(out, "partial\n");
    assert_text(err, "why\n");
    ASSERT_STATUS(weft_command_run(fails, NULL, NULL, 0, WEFT_FOREVER, WEFT_RUN_CHECK, &rc, &out, &err),
                  WEFT_TASK_FAILED);
    ASSERT_CONTAINS(weft_last_error_message(), "'sh'");
    ASSERT_CONTAINS(weft_last_error_message(), "exit status 2");
    ASSERT_EQ(rc, 2); /* outputs still given, like CalledProcessError */
    assert_text(out, "partial\n");
    assert_text(err, "why\n");

    const char *killed[] = {"sh", "-c", "kill -9 $$", NULL};
    ASSERT_STATUS(weft_command_run(killed, NULL, NULL, 0, WEFT_FOREVER, WEFT_RUN_CHECK, &rc, NULL, NULL),
                  WEFT_TASK_FAILED);
    ASSERT_EQ(rc, -SIGKILL);
    ASSERT_CONTAINS(weft_last_error_message(), "signal 9");
    fd_end(&g);
}

TEST(command_run_timeout_kills_and_collects) {
    fd_guard g;
    fd_begin(&g);
    const char *argv[] = {"sh", "-c", "echo started; exec sleep 100", NULL};
    weft_bytes *out = (weft_bytes *)1;
    int rc = 12345;
    uint64_t t0 = runner_now_ns();
    ASSERT_STATUS(weft_command_run(argv, NULL, NULL, 0, 30 * MS, 0, &rc, &out, NULL), WEFT_TIMEOUT);
    ASSERT_UGE(runner_now_ns() - t0, 30 * MS);
    ASSERT_EQ(rc, 12345);
    ASSERT_PTR_EQ(out, (weft_bytes *)1);
    ASSERT_EQ(child_count(), 0); /* killed and collected */
    fd_end(&g);
}

/* ---- exec failures ---------------------------------------------------------------------- */

TEST(command_exec_failures_are_statuses_with_errno) {
    fd_guard g;
    fd_begin(&g);
    weft_command *c = (weft_command *)1;
    const char *missing[] = {"weft-no-such-program", NULL};
    ASSERT_STATUS(weft_command_start(missing, NULL, &c), WEFT_NOT_FOUND);
    ASSERT_EQ(weft_last_error_errno(), ENOENT);
    ASSERT_CONTAINS(weft_last_error_message(), "weft-no-such-program");
    ASSERT_PTR_EQ(c, (weft_command *)1);
    const char *missing_path[] = {"/nonexistent/prog", NULL};
    ASSERT_STATUS(weft_command_start(missing_path, NULL, &c), WEFT_NOT_FOUND);
    ASSERT_EQ(weft_last_error_errno(), ENOENT);

    char path[] = "/tmp/weft-noexec-XXXXXX";
    int fd = mkstemp(path);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(write(fd, "#!/bin/sh\n", 10), 10);
    close(fd);
    ASSERT_EQ(chmod(path, 0644), 0);
    const char *noexec[] = {path, NULL};
    ASSERT_STATUS(weft_command_start(noexec, NULL, &c), WEFT_PERMISSION_DENIED);
    ASSERT_EQ(weft_last_error_errno(), EACCES);
    ASSERT_CONTAINS(weft_last_error_message(), path);
    int rc = 12345;
    ASSERT_STATUS(weft_command_run(noexec, NULL, NULL, 0, WEFT_FOREVER, 0, &rc, NULL, NULL), WEFT_PERMISSION_DENIED);
    ASSERT_EQ(rc, 12345);
    ASSERT_EQ(unlink(path), 0);

    const char *t[] = {"true", NULL};
    weft_command_options o = {0};
    o.cwd = "/nonexistent-weft-dir";
    ASSERT_STATUS(weft_command_start(t, &o, &c), WEFT_NOT_FOUND);
    ASSERT_EQ(weft_last_error_errno(), ENOENT);
    ASSERT_CONTAINS(weft_last_error_message(), "/nonexistent-weft-dir");
    ASSERT_PTR_EQ(c, (weft_command *)1);
    ASSERT_EQ(child_count(), 0); /* failed children were collected */
    fd_end(&g);
}

/* ---- who collects the child ------------------------------------------------------------- */

TEST(command_child_collected_by_another_waitpid) {
    fd_guard g;
    fd_begin(&g);
    const char *argv[] = {"sh", "-c", "exit 9", NULL};
    weft_command *c = start(argv, NULL);
    int st = 0;
    ASSERT_EQ(waitpid(-1, &st, 0), weft_command_pid(c));
    ASSERT(WIFEXITED(st) && WEXITSTATUS(st) == 9);
    for (int i = 0; i < 2; i++) {
        int rc = 12345;
        ASSERT_STATUS(weft_command_wait(c, WEFT_FOREVER, &rc), WEFT_OS_ERROR);
        ASSERT_EQ(weft_last_error_errno(), ECHILD);
        ASSERT_CONTAINS(weft_last_error_message(), "another waitpid");
        ASSERT_EQ(rc, 12345);
    }
    ASSERT_STATUS(weft_command_poll(c, NULL), WEFT_OS_ERROR);
    weft_command_free(c);
    fd_end(&g);
}

TEST(command_free_of_a_running_child_collects_it_later) {
    fd_guard g;
    fd_begin(&g);
    const char *argv[] = {"sleep", "100", NULL};
    weft_command *c = start(argv, NULL);
    pid_t pid = weft_command_pid(c);
    weft_command_free(c); /* keeps running */
    ASSERT_EQ(kill(pid, 0), 0);
    ASSERT_EQ(kill(pid, SIGKILL), 0);
    siginfo_t info;
    ASSERT_EQ(waitid(P_PID, (id_t)pid, &info, WEXITED | WNOWAIT), 0); /* a zombie now */
    ASSERT_EQ(zombie_children(), 1);
    const char *t[] = {"true", NULL};
    ASSERT_OK(weft_command_run(t, NULL, NULL, 0, WEFT_FOREVER, 0, NULL, NULL, NULL));
    ASSERT_EQ(zombie_children(), 0); /* collected by the next command call */
    fd_end(&g);
}

/* ---- arguments -------------------------------------------------------------------------- */

TEST(command_null_and_bad_arguments) {
    fd_guard g;
    fd_begin(&g);
    weft_command *c = (weft_command *)1;
    const char *t[] = {"true", NULL};
    const char *empty[] = {NULL};
    ASSERT_STATUS(weft_command_start(NULL, NULL, &c), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_command_start(t, NULL, NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_command_start(empty, NULL, &c), WEFT_INVALID_ARGUMENT);

    weft_command_options o = {0};
    o.stdout_mode = 9;
    ASSERT_STATUS(weft_command_start(t, &o, &c), WEFT_INVALID_ARGUMENT);
    o.stdout_mode = WEFT_STDIO_STDOUT; /* only stderr can follow stdout */
    ASSERT_STATUS(weft_command_start(t, &o, &c), WEFT_INVALID_ARGUMENT);
    o.stdout_mode = WEFT_STDIO_FD;
    o.stdout_fd = -1;
    ASSERT_STATUS(weft_command_start(t, &o, &c), WEFT_INVALID_ARGUMENT);
    o.stdout_fd = 1000; /* not open */
    ASSERT_STATUS(weft_command_start(t, &o, &c), WEFT_INVALID_ARGUMENT);
    memset(&o, 0, sizeof o);
    o.reserved[2] = 1;
    ASSERT_STATUS(weft_command_start(t, &o, &c), WEFT_INVALID_ARGUMENT);
    memset(&o, 0, sizeof o);
    const char *env[] = {"NOEQUALS", NULL};
    o.env = env;
    ASSERT_STATUS(weft_command_start(t, &o, &c), WEFT_INVALID_ARGUMENT);
    ASSERT_PTR_EQ(c, (weft_command *)1);

    memset(&o, 0, sizeof o);
    o.stdin_mode = WEFT_STDIO_NULL;
    ASSERT_STATUS(weft_command_run(t, &o, "x", 1, WEFT_FOREVER, 0, NULL, NULL, NULL), WEFT_INVALID_ARGUMENT);
    ASSERT_STATUS(weft_command_run(t, NULL, NULL, 0, WEFT_FOREVER, 2, NULL, NULL, NULL), WEFT_INVALID_ARGUMENT);
    ASSERT_STATUS(weft_command_run(t, NULL, NULL, 3, WEFT_FOREVER, 0, NULL, NULL, NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_command_run(NULL, NULL, NULL, 0, WEFT_FOREVER, 0, NULL, NULL, NULL), WEFT_NULL_ARGUMENT);

    ASSERT_STATUS(weft_command_wait(NULL, 0, NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_command_poll(NULL, NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_command_communicate(NULL, NULL, 0, 0, NULL, NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_command_send_signal(NULL, SIGTERM), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_command_terminate(NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_command_kill(NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_command_close_stdin(NULL), WEFT_NULL_ARGUMENT);
    ASSERT_EQ(weft_command_pid(NULL), -1);
    ASSERT_EQ(weft_command_fd(NULL), -1);
    ASSERT_EQ(weft_command_stdin_fd(NULL), -1);
    ASSERT_EQ(weft_command_stdout_fd(NULL), -1);
    ASSERT_EQ(weft_command_stderr_fd(NULL), -1);
    weft_command_free(NULL);

    c = start(t, NULL);
    ASSERT_STATUS(weft_command_send_signal(c, -1), WEFT_INVALID_ARGUMENT);
    ASSERT_STATUS(weft_command_send_signal(c, 100000), WEFT_INVALID_ARGUMENT);
    ASSERT_STATUS(weft_command_communicate(c, NULL, 5, 0, NULL, NULL), WEFT_NULL_ARGUMENT);
    ASSERT_EQ(wait_rc(c), 0);
    weft_command_free(c);
    fd_end(&g);
}
