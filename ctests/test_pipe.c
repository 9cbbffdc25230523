/* Connections (weft_pipe, weft_connection_*), descriptor passing, and listeners and clients
 * (weft_listener_*, weft_client_connect) over Unix paths, the abstract namespace and TCP
 * loopback, with and without an authkey. Cross-process tests fork real children; a child
 * SIGKILLed in the middle of a message must never yield a partial message. Every test checks
 * that no descriptor leaked and no child was left unreaped.
 */
#define _GNU_SOURCE
#include "helpers.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- helpers ------------------------------------------------------------------------------ */

/* Receives one message (waiting forever) and checks that it equals `text`. */
static void expect_msg(weft_connection *c, const char *text) {
    weft_bytes *b = NULL;
    ASSERT_OK(weft_connection_recv(c, WEFT_FOREVER, &b));
    ASSERT_UEQ(weft_bytes_len(b), strlen(text));
    ASSERT(memcmp(weft_bytes_data(b), text, strlen(text)) == 0);
    weft_bytes_free(b);
}

static void send_str(weft_connection *c, const char *text) {
    ASSERT_OK(weft_connection_send(c, text, strlen(text)));
}

/* A recognisable byte at position `i` of a message seeded with `seed`. */
static uint8_t pattern_at(size_t i, uint8_t seed) {
    return (uint8_t)(i * 31 + (i >> 13) + seed);
}

static uint8_t *pattern(size_t len, uint8_t seed) {
    uint8_t *p = malloc(len);
    ASSERT_NOT_NULL(p);
    for (size_t i = 0; i < len; i++) p[i] = pattern_at(i, seed);
    return p;
}

static void check_pattern(const uint8_t *p, size_t len, uint8_t seed) {
    for (size_t i = 0; i < len; i++) {
        if (p[i] != pattern_at(i, seed)) FAIL_AT("byte %zu of %zu differs", i, len);
    }
}

#define HUGE_LEN ((size_t)65 * 1024 * 1024 + 3) /* more than 64 MiB */

/* ---- pairs -------------------------------------------------------------------------------- */

TEST(pipe_duplex_round_trip) {
    fd_guard g;
    fd_begin(&g);
    weft_connection *a = NULL, *b = NULL;
    ASSERT_OK(weft_pipe(true, &a, &b));
    ASSERT(weft_connection_readable(a) && weft_connection_writable(a));
    ASSERT(weft_connection_readable(b) && weft_connection_writable(b));
    ASSERT_GE(weft_connection_fd(a), 0);
    ASSERT_NE(weft_connection_fd(a), weft_connection_fd(b));
    ASSERT(fcntl(weft_connection_fd(a), F_GETFD) & FD_CLOEXEC);

    send_str(a, "ping");
    expect_msg(b, "ping");
    send_str(b, "pong");
    expect_msg(a, "pong");
    /* Empty messages are messages too, and several queue up in order. */
    ASSERT_OK(weft_connection_send(a, NULL, 0));
    send_str(a, "two");
    send_str(a, "three");
    expect_msg(b, "");
    expect_msg(b, "two");
    expect_msg(b, "three");
    weft_connection_free(a);
    weft_connection_free(b);
    fd_end(&g);
}

TEST(pipe_one_way) {
    fd_guard g;
    fd_begin(&g);
    weft_connection *r = NULL, *w = NULL;
    ASSERT_OK(weft_pipe(false, &r, &w));
    ASSERT(weft_connection_readable(r) && !weft_connection_writable(r));
    ASSERT(!weft_connection_readable(w) && weft_connection_writable(w));
    ASSERT_STATUS(weft_connection_send(r, "x", 1), WEFT_INVALID_STATE);
    weft_bytes *b = NULL;
    ASSERT_STATUS(weft_connection_recv(w, 0, &b), WEFT_INVALID_STATE);
    ASSERT_NULL(b);
    ASSERT_STATUS(weft_connection_poll(w, 0), WEFT_INVALID_STATE);
    ASSERT_STATUS(weft_connection_send_fd(r, 0), WEFT_INVALID_STATE);

    send_str(w, "one way");
    expect_msg(r, "one way");
    /* The reader gone, a send is WEFT_CLOSED, not SIGPIPE (which would kill this test). */
    weft_connection_free(r);
    ASSERT_STATUS(weft_connection_send(w, "x", 1), WEFT_CLOSED);
    weft_connection_free(w);
    fd_end(&g);
}

typedef struct {
    weft_connection *c;
    int times;
    uint8_t seed;
} sender_job;

static void *send_huge(void *arg) {
    sender_job *j = arg;
    uint8_t *p = pattern(HUGE_LEN, j->seed);
    for (int i = 0; i < j->times; i++) ASSERT_OK(weft_connection_send(j->c, p, HUGE_LEN));
    free(p);
    return NULL;
}

static void send_huge_from_child(void *arg) {
    send_huge(arg);
}

TEST_TIMEOUT(pipe_message_over_64_mib, 60000) {
    fd_guard g;
    fd_begin(&g);
    weft_connection *a = NULL, *b = NULL;
    ASSERT_OK(weft_pipe(true, &a, &b));

    /* From a thread: into a weft buffer, then into the caller's buffer. */
    sender_job j = {b, 2, 7};
    pthread_t t = spawn(send_huge, &j);
    weft_bytes *m = NULL;
    ASSERT_OK(weft_connection_recv(a, WEFT_FOREVER, &m));
    ASSERT_UEQ(weft_bytes_len(m), HUGE_LEN);
    check_pattern(weft_bytes_data(m), HUGE_LEN, 7);
    weft_bytes_free(m);
    uint8_t *buf = malloc(HUGE_LEN);
    ASSERT_NOT_NULL(buf);
    size_t len = 0;
    ASSERT_OK(weft_connection_recv_into(a, buf, HUGE_LEN, WEFT_FOREVER, &len));
    ASSERT_UEQ(len, HUGE_LEN);
    check_pattern(buf, HUGE_LEN, 7);
    pthread_join(t, NULL);

    /* From another process, through the inherited connection. */
    sender_job c = {b, 1, 9};
    pid_t pid = xp_fork(send_huge_from_child, &c);
    ASSERT_OK(weft_connection_close(b)); /* the child's copy stays open */
    len = 0;
    ASSERT_OK(weft_connection_recv_into(a, buf, HUGE_LEN, WEFT_FOREVER, &len));
    ASSERT_UEQ(len, HUGE_LEN);
    check_pattern(buf, HUGE_LEN, 9);
    xp_wait_ok(pid);
    ASSERT_STATUS(weft_connection_recv(a, WEFT_FOREVER, &m), WEFT_CLOSED);
    free(buf);
    weft_connection_free(a);
    weft_connection_free(b);
    fd_end(&g);
}

TEST(pipe_recv_into_too_small_then_whole) {
    fd_guard g;
    fd_begin(&g);
    weft_connection *a = NULL, *b = NULL;
    ASSERT_OK(weft_pipe(true, &a, &b));
    send_str(a, "hello world");
    char small[4] = {0}, big[64] = {0};
    size_t len = 0;
    ASSERT_STATUS(weft_connection_recv_into(b, small, sizeof small, 0, &len), WEFT_BUFFER_TOO_SMALL);
    ASSERT_UEQ(len, 11);
    ASSERT_STATUS(weft_connection_recv_into(b, NULL, 0, 0, &len), WEFT_BUFFER_TOO_SMALL);
    ASSERT_UEQ(len, 11);
    len = 0;
    ASSERT_OK(weft_connection_recv_into(b, big, sizeof big, 0, &len));
    ASSERT_UEQ(len, 11);
    ASSERT(memcmp(big, "hello world", 11) == 0);

    /* A message larger than weft's own buffer: too small, then whole through recv. */
    size_t n = 100000; /* more than weft buffers, less than the socket holds */
    uint8_t *p = pattern(n, 3);
    ASSERT_OK(weft_connection_send(a, p, n));
    ASSERT_STATUS(weft_connection_recv_into(b, big, sizeof big, WEFT_FOREVER, &len), WEFT_BUFFER_TOO_SMALL);
    ASSERT_UEQ(len, n);
    weft_bytes *m = NULL;
    ASSERT_OK(weft_connection_recv(b, WEFT_FOREVER, &m));
    ASSERT_UEQ(weft_bytes_len(m), n);
    check_pattern(weft_bytes_data(m), n, 3);
    weft_bytes_free(m);

    /* An empty message fits an empty buffer. */
    ASSERT_OK(weft_connection_send(a, NULL, 0));
    len = 99;
    ASSERT_OK(weft_connection_recv_into(b, NULL, 0, 0, &len));
    ASSERT_UEQ(len, 0);
    free(p);
    weft_connection_free(a);
    weft_connection_free(b);
    fd_end(&g);
}

static void *send_after_a_while(void *arg) {
    runner_sleep_ms(30);
    send_str(arg, "late");
    return NULL;
}

TEST(pipe_poll_and_timeouts) {
    fd_guard g;
    fd_begin(&g);
    weft_connection *a = NULL, *b = NULL;
    ASSERT_OK(weft_pipe(true, &a, &b));
    ASSERT_STATUS(weft_connection_poll(b, 0), WEFT_WOULD_BLOCK);
    uint64_t t0 = runner_now_ns();
    ASSERT_STATUS(weft_connection_poll(b, 20 * MS), WEFT_TIMEOUT);
    ASSERT_UGE(runner_now_ns() - t0, 20 * MS); /* not before its deadline */
    weft_bytes *m = NULL;
    ASSERT_STATUS(weft_connection_recv(b, 0, &m), WEFT_WOULD_BLOCK);
    t0 = runner_now_ns();
    ASSERT_STATUS(weft_connection_recv(b, 20 * MS, &m), WEFT_TIMEOUT);
    ASSERT_UGE(runner_now_ns() - t0, 20 * MS);
    ASSERT_NULL(m);

    pthread_t t = spawn(send_after_a_while, a);
    ASSERT_OK(weft_connection_poll(b, WEFT_FOREVER));
    ASSERT_OK(weft_connection_poll(b, 0)); /* still there: poll does not consume */
    expect_msg(b, "late");
    pthread_join(t, NULL);
    ASSERT_STATUS(weft_connection_poll(b, 0), WEFT_WOULD_BLOCK);

    /* Two messages arriving in one read: the second is ready from weft's buffer. */
    send_str(a, "x");
    send_str(a, "y");
    expect_msg(b, "x");
    ASSERT_OK(weft_connection_poll(b, 0));
    expect_msg(b, "y");

    /* End of file is "ready" too (Python's poll returns True), and recv says WEFT_CLOSED. */
    weft_connection_free(a);
    ASSERT_OK(weft_connection_poll(b, 0));
    ASSERT_STATUS(weft_connection_recv(b, 0, &m), WEFT_CLOSED);
    weft_connection_free(b);
    fd_end(&g);
}

TEST(pipe_close_drains_then_closed) {
    fd_guard g;
    fd_begin(&g);
    weft_connection *a = NULL, *b = NULL;
    ASSERT_OK(weft_pipe(true, &a, &b));
    send_str(b, "one");
    send_str(b, "two");
    send_str(b, "three");
    ASSERT_OK(weft_connection_close(b));
    ASSERT_OK(weft_connection_close(b)); /* twice is fine */
    ASSERT_EQ(weft_connection_fd(b), -1);
    ASSERT(weft_connection_writable(b));

    /* Every call on the closed end: WEFT_CLOSED, out-parameters untouched. */
    weft_bytes *m = NULL;
    size_t len = 77;
    int fd = -5;
    char buf[8];
    ASSERT_STATUS(weft_connection_send(b, "x", 1), WEFT_CLOSED);
    ASSERT_STATUS(weft_connection_recv(b, 0, &m), WEFT_CLOSED);
    ASSERT_STATUS(weft_connection_recv_into(b, buf, sizeof buf, 0, &len), WEFT_CLOSED);
    ASSERT_STATUS(weft_connection_poll(b, 0), WEFT_CLOSED);
    ASSERT_STATUS(weft_connection_send_fd(b, 0), WEFT_CLOSED);
    ASSERT_STATUS(weft_connection_recv_fd(b, 0, &fd), WEFT_CLOSED);
    ASSERT_NULL(m);
    ASSERT_UEQ(len, 77);
    ASSERT_EQ(fd, -5);

    /* The peer first gets every message that was sent, then WEFT_CLOSED, for good. */
    expect_msg(a, "one");
    expect_msg(a, "two");
    expect_msg(a, "three");
    ASSERT_STATUS(weft_connection_recv(a, WEFT_FOREVER, &m), WEFT_CLOSED);
    ASSERT_STATUS(weft_connection_recv(a, WEFT_FOREVER, &m), WEFT_CLOSED);
    ASSERT_STATUS(weft_connection_send(a, "x", 1), WEFT_CLOSED);
    weft_connection_free(a);
    weft_connection_free(b);
    fd_end(&g);
}

typedef struct {
    weft_connection *c;
    atomic_int started_big;
} dying_sender;

static void send_then_stall_in_big_message(void *arg) {
    dying_sender *d = arg;
    send_str(d->c, "complete");
    size_t n = (size_t)64 * 1024 * 1024;
    uint8_t *p = pattern(n, 1);
    atomic_store(&d->started_big, 1);
    /* Blocks once the socket is full; the parent kills us in the middle. */
    weft_connection_send(d->c, p, n);
    FAIL_AT("the big send returned although nobody read it all");
}

TEST_TIMEOUT(pipe_sender_killed_mid_message, 30000) {
    fd_guard g;
    fd_begin(&g);
    weft_connection *a = NULL, *b = NULL;
    ASSERT_OK(weft_pipe(true, &a, &b));
    dying_sender *d = xp_shared(sizeof *d);
    d->c = b;
    pid_t pid = xp_fork(send_then_stall_in_big_message, d);
    ASSERT_OK(weft_connection_close(b)); /* only the child holds that end now */
    expect_msg(a, "complete");
    xp_wait_count(&d->started_big, 1);
    xp_wait_sleeping(pid);
    /* Part of the big message arrives, then the wait times out: nothing is delivered. */
    weft_bytes *m = NULL;
    ASSERT_STATUS(weft_connection_recv(a, 10 * MS, &m), WEFT_TIMEOUT);
    ASSERT_NULL(m);
    xp_kill(pid);
    ASSERT_STATUS(weft_connection_recv(a, WEFT_FOREVER, &m), WEFT_CLOSED);
    ASSERT_NULL(m);
    ASSERT_STATUS(weft_connection_recv(a, WEFT_FOREVER, &m), WEFT_CLOSED);
    ASSERT_OK(weft_connection_poll(a, 0));

    /* The same into a caller's buffer. */
    weft_connection *reader = NULL;
    ASSERT_OK(weft_pipe(true, &reader, &d->c));
    d->started_big = 0;
    pid = xp_fork(send_then_stall_in_big_message, d);
    ASSERT_OK(weft_connection_close(d->c));
    expect_msg(reader, "complete");
    xp_wait_count(&d->started_big, 1);
    xp_wait_sleeping(pid);
    xp_kill(pid);
    size_t cap = (size_t)64 * 1024 * 1024, len = 5;
    uint8_t *buf = malloc(cap);
    ASSERT_NOT_NULL(buf);
    ASSERT_STATUS(weft_connection_recv_into(reader, buf, cap, WEFT_FOREVER, &len), WEFT_CLOSED);
    ASSERT_UEQ(len, 5);
    free(buf);
    weft_connection_free(reader);
    weft_connection_free(d->c);
    weft_connection_free(a);
    weft_connection_free(b);
    fd_end(&g);
}

/* ---- descriptors -------------------------------------------------------------------------- */

static void write_through_received_fd(void *arg) {
    weft_connection *c = arg;
    int fd = -1;
    ASSERT_OK(weft_connection_recv_fd(c, 10 * SEC, &fd));
    ASSERT(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    ASSERT_EQ(write(fd, "from child", 10), 10);
    close(fd);
    expect_msg(c, "after the descriptor");
}

TEST(pipe_passes_descriptors) {
    fd_guard g;
    fd_begin(&g);
    weft_connection *a = NULL, *b = NULL;
    ASSERT_OK(weft_pipe(true, &a, &b));
    int p[2];
    ASSERT_EQ(pipe2(p, O_CLOEXEC), 0);

    /* Byte and descriptor messages are told apart, and a mismatch leaves the message. */
    send_str(a, "bytes");
    ASSERT_OK(weft_connection_send_fd(a, p[1]));
    int fd = -1;
    ASSERT_STATUS(weft_connection_recv_fd(b, WEFT_FOREVER, &fd), WEFT_INVALID_STATE);
    expect_msg(b, "bytes");
    weft_bytes *m = NULL;
    ASSERT_STATUS(weft_connection_recv(b, WEFT_FOREVER, &m), WEFT_INVALID_STATE);
    ASSERT_OK(weft_connection_recv_fd(b, WEFT_FOREVER, &fd));
    ASSERT_NE(fd, p[1]);
    ASSERT_EQ(write(fd, "z", 1), 1);
    close(fd);
    char c = 0;
    ASSERT_EQ(read(p[0], &c, 1), 1);
    ASSERT_EQ(c, 'z');

    /* To another process. */
    pid_t pid = xp_fork(write_through_received_fd, b);
    ASSERT_OK(weft_connection_send_fd(a, p[1]));
    send_str(a, "after the descriptor");
    close(p[1]); /* the sender's copy stays open until here */
    char buf[16] = {0};
    ASSERT_EQ(read(p[0], buf, 10), 10);
    ASSERT(memcmp(buf, "from child", 10) == 0);
    xp_wait_ok(pid);
    ASSERT_STATUS(weft_connection_send_fd(a, -1), WEFT_INVALID_ARGUMENT);
    ASSERT_STATUS(weft_connection_recv_fd(b, 0, NULL), WEFT_NULL_ARGUMENT);
    close(p[0]);
    weft_connection_free(a);
    weft_connection_free(b);
    fd_end(&g);
}

TEST(pipe_connection_from_fd) {
    fd_guard g;
    fd_begin(&g);
    int sv[2];
    ASSERT_EQ(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    weft_connection *a = NULL, *b = NULL;
    ASSERT_STATUS(weft_connection_from_fd(sv[0], false, false, &a), WEFT_INVALID_ARGUMENT);
    ASSERT_NULL(a);
    ASSERT_GE(fcntl(sv[0], F_GETFD), 0); /* not taken over on failure */
    ASSERT_OK(weft_connection_from_fd(sv[0], true, true, &a));
    ASSERT_OK(weft_connection_from_fd(sv[1], true, false, &b));
    ASSERT_EQ(weft_connection_fd(a), sv[0]);
    ASSERT(fcntl(sv[0], F_GETFD) & FD_CLOEXEC);
    ASSERT(!weft_connection_writable(b));
    send_str(a, "wrapped");
    expect_msg(b, "wrapped");

    /* Not sockets, or not open: refused and left alone. */
    int p[2];
    ASSERT_EQ(pipe(p), 0);
    weft_connection *c = NULL;
    ASSERT_STATUS(weft_connection_from_fd(p[0], true, false, &c), WEFT_INVALID_ARGUMENT);
    ASSERT_STATUS(weft_connection_from_fd(-1, true, false, &c), WEFT_INVALID_ARGUMENT);
    ASSERT_NULL(c);
    ASSERT_EQ(close(p[0]), 0);
    ASSERT_EQ(close(p[1]), 0);
    ASSERT_STATUS(weft_connection_from_fd(p[0], true, false, &c), WEFT_INVALID_ARGUMENT);
    weft_listener *l = NULL;
    ASSERT_OK(weft_listener_new("tcp:127.0.0.1:0", NULL, 0, &l));
    ASSERT_STATUS(weft_connection_from_fd(weft_listener_fd(l), true, true, &c), WEFT_INVALID_ARGUMENT);
    weft_listener_free(l);
    weft_connection_free(a); /* closes sv[0] */
    weft_connection_free(b);
    fd_end(&g);
}

/* ---- listeners and clients ---------------------------------------------------------------- */

typedef struct {
    char address[256];
    char key[32];
    size_t key_len;
    char bad_key[32];
    size_t bad_key_len;
} client_job;

/* The child's client: optionally a wrong key first (which must fail on its side), then the
 * right one: say hello and expect the echo. */
static void run_client(void *arg) {
    client_job *j = arg;
    weft_connection *c = NULL;
    if (j->bad_key_len) {
        ASSERT_STATUS(weft_client_connect(j->address, j->bad_key, j->bad_key_len, 10 * SEC, &c), WEFT_AUTH_FAILED);
        ASSERT_NULL(c);
    }
    ASSERT_OK(weft_client_connect(j->address, j->key_len ? j->key : NULL, j->key_len, 10 * SEC, &c));
    send_str(c, "hello listener");
    expect_msg(c, "hello client");
    weft_bytes *m = NULL;
    ASSERT_STATUS(weft_connection_recv(c, 10 * SEC, &m), WEFT_CLOSED);
    weft_connection_free(c);
}

/* Accepts one good client of `l` (after `failures` that must fail with WEFT_AUTH_FAILED) from a
 * forked child and talks with it. */
static void serve_child(weft_listener *l, client_job *j, int failures) {
    snprintf(j->address, sizeof j->address, "%s", weft_listener_address(l));
    pid_t pid = xp_fork(run_client, j);
    weft_connection *c = NULL;
    for (int i = 0; i < failures; i++) {
        ASSERT_STATUS(weft_listener_accept(l, 10 * SEC, &c), WEFT_AUTH_FAILED);
        ASSERT_NULL(c);
    }
    ASSERT_OK(weft_listener_accept(l, 10 * SEC, &c));
    ASSERT(weft_connection_readable(c) && weft_connection_writable(c));
    expect_msg(c, "hello listener");
    send_str(c, "hello client");
    weft_connection_free(c);
    xp_wait_ok(pid);
}

TEST(listener_unix_path) {
    fd_guard g;
    fd_begin(&g);
    char name[64], address[128];
    xp_name(name, sizeof name, "l.sock");
    snprintf(address, sizeof address, "unix:/tmp/%s", name);
    const char *path = address + 5;
    unlink(path);
    weft_listener *l = NULL;
    ASSERT_OK(weft_listener_new(address, NULL, 0, &l));
    ASSERT_STR_EQ(weft_listener_address(l), address);
    ASSERT_GE(weft_listener_fd(l), 0);
    struct stat st;
    ASSERT_EQ(stat(path, &st), 0);
    ASSERT(S_ISSOCK(st.st_mode));
    weft_listener *again = NULL;
    ASSERT_STATUS(weft_listener_new(address, NULL, 0, &again), WEFT_EXISTS);
    ASSERT_NULL(again);

    client_job *j = xp_shared(sizeof *j);
    serve_child(l, j, 0);
    weft_listener_free(l);
    ASSERT_EQ(stat(path, &st), -1); /* the socket file went with the listener */
    ASSERT_EQ(errno, ENOENT);

    /* A file that is not the listener's own is left alone. */
    ASSERT_OK(weft_listener_new(address, NULL, 0, &l));
    ASSERT_EQ(unlink(path), 0);
    int fd = open(path, O_CREAT | O_WRONLY | O_CLOEXEC, 0600);
    ASSERT_GE(fd, 0);
    close(fd);
    weft_listener_free(l);
    ASSERT_EQ(stat(path, &st), 0);
    ASSERT_EQ(unlink(path), 0);
    fd_end(&g);
}

TEST(listener_abstract_namespace) {
    fd_guard g;
    fd_begin(&g);
    char name[64], address[128];
    xp_name(name, sizeof name, "abstract");
    snprintf(address, sizeof address, "unix:@%s", name);
    weft_listener *l = NULL;
    ASSERT_OK(weft_listener_new(address, NULL, 0, &l));
    ASSERT_STR_EQ(weft_listener_address(l), address);
    weft_listener *again = NULL;
    ASSERT_STATUS(weft_listener_new(address, NULL, 0, &again), WEFT_EXISTS);
    client_job *j = xp_shared(sizeof *j);
    serve_child(l, j, 0);
    weft_listener_free(l);
    /* Gone with the listener. */
    weft_connection *c = NULL;
    ASSERT_STATUS(weft_client_connect(address, NULL, 0, SEC, &c), WEFT_NOT_FOUND);
    ASSERT_NULL(c);
    fd_end(&g);
}

TEST(listener_tcp_loopback) {
    fd_guard g;
    fd_begin(&g);
    weft_listener *l = NULL;
    ASSERT_OK(weft_listener_new("tcp:127.0.0.1:0", NULL, 0, &l));
    const char *actual = weft_listener_address(l);
    ASSERT(strncmp(actual, "tcp:127.0.0.1:", 14) == 0);
    ASSERT_GT(atoi(actual + 14), 0);
    weft_listener *again = NULL;
    ASSERT_STATUS(weft_listener_new(actual, NULL, 0, &again), WEFT_EXISTS);
    client_job *j = xp_shared(sizeof *j);
    serve_child(l, j, 0);
    weft_listener_free(l);

    /* IPv6 loopback, where the machine has IPv6 at all. */
    weft_status rc = weft_listener_new("tcp:[::1]:0", NULL, 0, &l);
    if (rc == WEFT_OS_ERROR && (weft_last_error_errno() == EAFNOSUPPORT || weft_last_error_errno() == EADDRNOTAVAIL)) {
        fprintf(stderr, "# no IPv6 loopback here: %s\n", weft_last_error_message());
    } else {
        ASSERT_OK(rc);
        ASSERT(strncmp(weft_listener_address(l), "tcp:[::1]:", 10) == 0);
        serve_child(l, j, 0);
        weft_listener_free(l);
    }
    fd_end(&g);
}

TEST(listener_authkey_accepted_and_rejected) {
    fd_guard g;
    fd_begin(&g);
    client_job *j = xp_shared(sizeof *j);
    memcpy(j->key, "open sesame", 11);
    j->key_len = 11;
    memcpy(j->bad_key, "open barley", 11);
    j->bad_key_len = 11;

    const char *addresses[] = {"tcp:127.0.0.1:0", "unix:@", NULL};
    char abstract[128], name[64];
    xp_name(name, sizeof name, "auth");
    snprintf(abstract, sizeof abstract, "unix:@%s", name);
    addresses[1] = abstract;
    for (int i = 0; addresses[i]; i++) {
        weft_listener *l = NULL;
        ASSERT_OK(weft_listener_new(addresses[i], "open sesame", 11, &l));
        /* A wrong key fails on both sides; the listener then accepts the right one. */
        serve_child(l, j, 1);
        weft_listener_free(l);
    }
    fd_end(&g);
}

TEST(listener_timeouts_and_missing_peers) {
    fd_guard g;
    fd_begin(&g);
    weft_listener *l = NULL;
    ASSERT_OK(weft_listener_new("tcp:127.0.0.1:0", "k", 1, &l));
    weft_connection *c = NULL;
    ASSERT_STATUS(weft_listener_accept(l, 0, &c), WEFT_WOULD_BLOCK);
    uint64_t t0 = runner_now_ns();
    ASSERT_STATUS(weft_listener_accept(l, 20 * MS, &c), WEFT_TIMEOUT);
    ASSERT_UGE(runner_now_ns() - t0, 20 * MS);
    ASSERT_NULL(c);

    /* A client that connects but never answers the challenge: the timeout covers the handshake. */
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(s, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(weft_listener_address(l) + 14))};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ASSERT_EQ(connect(s, (struct sockaddr *)&sin, sizeof sin), 0);
    ASSERT_STATUS(weft_listener_accept(l, 50 * MS, &c), WEFT_TIMEOUT);
    ASSERT_NULL(c);
    close(s);

    /* Nobody listening. */
    char name[64], address[128];
    xp_name(name, sizeof name, "nobody");
    snprintf(address, sizeof address, "unix:/tmp/%s", name);
    ASSERT_STATUS(weft_client_connect(address, NULL, 0, SEC, &c), WEFT_NOT_FOUND);
    snprintf(address, sizeof address, "unix:@%s", name);
    ASSERT_STATUS(weft_client_connect(address, NULL, 0, SEC, &c), WEFT_NOT_FOUND);
    ASSERT_NULL(c);
    weft_listener_free(l);
    fd_end(&g);
}

/* ---- arguments ---------------------------------------------------------------------------- */

TEST(pipe_null_and_bad_arguments) {
    fd_guard g;
    fd_begin(&g);
    weft_connection *a = NULL, *b = NULL;
    ASSERT_STATUS(weft_pipe(true, NULL, &b), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_pipe(true, &a, NULL), WEFT_NULL_ARGUMENT);
    ASSERT_NULL(a);
    ASSERT_NULL(b);
    ASSERT_OK(weft_pipe(true, &a, &b));

    weft_bytes *m = NULL;
    size_t len = 0;
    int fd = 0;
    ASSERT_STATUS(weft_connection_send(NULL, "x", 1), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_connection_send(a, NULL, 1), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_connection_recv(NULL, 0, &m), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_connection_recv(a, 0, NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_connection_recv_into(NULL, NULL, 0, 0, &len), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_connection_recv_into(a, NULL, 0, 0, NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_connection_recv_into(a, NULL, 8, 0, &len), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_connection_poll(NULL, 0), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_connection_send_fd(NULL, 0), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_connection_recv_fd(NULL, 0, &fd), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_connection_close(NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_connection_from_fd(0, true, true, NULL), WEFT_NULL_ARGUMENT);
    ASSERT_EQ(weft_connection_fd(NULL), -1);
    ASSERT(!weft_connection_readable(NULL));
    ASSERT(!weft_connection_writable(NULL));
    ASSERT_NULL(m);
    weft_connection_free(NULL);

    weft_listener *l = NULL;
    ASSERT_STATUS(weft_listener_new(NULL, NULL, 0, &l), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_listener_new("tcp:127.0.0.1:0", NULL, 0, NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_listener_new("tcp:127.0.0.1:0", NULL, 4, &l), WEFT_NULL_ARGUMENT);
    const char *bad[] = {"", "unix:", "unix:@", "pipe:/x", "tcp:127.0.0.1", "tcp:127.0.0.1:70000", "tcp::1", NULL};
    for (int i = 0; bad[i]; i++) {
        ASSERT_STATUS(weft_listener_new(bad[i], NULL, 0, &l), WEFT_INVALID_ARGUMENT);
        ASSERT_STATUS(weft_client_connect(bad[i], NULL, 0, SEC, &a), WEFT_INVALID_ARGUMENT);
    }
    ASSERT_NULL(l);
    ASSERT_STATUS(weft_listener_accept(NULL, 0, &a), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_client_connect(NULL, NULL, 0, SEC, &a), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_client_connect("tcp:127.0.0.1:1", NULL, 0, SEC, NULL), WEFT_NULL_ARGUMENT);
    ASSERT_NULL(weft_listener_address(NULL));
    ASSERT_EQ(weft_listener_fd(NULL), -1);
    weft_listener_free(NULL);
    /* A missing directory. */
    ASSERT_STATUS(weft_listener_new("unix:/nonexistent-weft-dir/x.sock", NULL, 0, &l), WEFT_NOT_FOUND);

    ASSERT_OK(weft_listener_new("tcp:127.0.0.1:0", NULL, 0, &l));
    ASSERT_STATUS(weft_listener_accept(l, 0, NULL), WEFT_NULL_ARGUMENT);
    weft_listener_free(l);
    weft_connection_free(a);
    weft_connection_free(b);
    fd_end(&g);
}
