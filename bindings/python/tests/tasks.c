/* Native tasks (weft_task_fn) for the Python binding's process, pool and futures tests.
 * Compiled into a shared library by a fixture (build_tasks in test_futures.py / test_process.py)
 * and run by weft.Process and by pools of threads and of processes, with every start method:
 * for forkserver and spawn the child is a fresh image of the python executable in which libweft
 * takes over at load time, so these functions run with no interpreter in the process.
 * Arguments and results are plain bytes. */
#define _GNU_SOURCE
#include <weft.h>

#include <dlfcn.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The argument as a NUL-terminated string in `buf` (cut to fit). */
static const char *arg_string(weft_call *call, char *buf, size_t cap) {
    const void *data = NULL;
    size_t len = 0;
    if (weft_call_arg(call, &data, &len) != WEFT_OK) len = 0;
    if (len >= cap) len = cap - 1;
    if (len > 0) memcpy(buf, data, len);
    buf[len] = '\0';
    return buf;
}

static int write_all(int fd, const void *data, size_t len) {
    const char *p = data;
    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR) continue;
            return errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

/* Result: the argument bytes. */
weft_status t_echo(weft_call *call) {
    const void *data = NULL;
    size_t len = 0;
    weft_status s = weft_call_arg(call, &data, &len);
    if (s != WEFT_OK) return s;
    return weft_call_set_result(call, data, len);
}

/* Fails with WEFT_NOT_FOUND and the argument as its message. */
weft_status t_fail(weft_call *call) {
    char msg[512];
    weft_call_set_error(call, arg_string(call, msg, sizeof msg));
    return WEFT_NOT_FOUND;
}

/* Ends the process with _exit(<argument as a decimal number>). */
weft_status t_exit(weft_call *call) {
    char buf[32];
    _exit(atoi(arg_string(call, buf, sizeof buf)));
}

/* Waits for signals forever (ended by terminate() or kill()). */
weft_status t_pause(weft_call *call) {
    (void)call;
    for (;;) pause();
}

/* Sleeps <argument> milliseconds, then succeeds with the result "slept". */
weft_status t_sleep_ms(weft_call *call) {
    char buf[32];
    long ms = atol(arg_string(call, buf, sizeof buf));
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
    return weft_call_set_result(call, "slept", 5);
}

/* Result: <argument as a decimal number> bytes, byte i being i % 251. */
weft_status t_big(weft_call *call) {
    char buf[32];
    size_t n = (size_t)atol(arg_string(call, buf, sizeof buf));
    unsigned char *p = malloc(n ? n : 1);
    if (!p) return WEFT_NO_MEMORY;
    for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(i % 251);
    weft_status s = weft_call_set_result(call, p, n);
    free(p);
    return s;
}

/* Result: what the child knows about itself, one "key=value" line each: its weft name, the
 * pid of its weft parent, its pid, whether an initialised Python interpreter is in the
 * process (1, 0, or -1 when there is no libpython at all), the executable, its argv[0] as
 * the kernel shows it, and how many descriptors it was passed. */
weft_status t_info(weft_call *call) {
    int interp = -1;
    int (*is_init)(void) = (int (*)(void))dlsym(RTLD_DEFAULT, "Py_IsInitialized");
    if (is_init) interp = is_init();
    char exe[512] = "";
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[n > 0 ? n : 0] = '\0';
    char cmd[256] = "";
    FILE *f = fopen("/proc/self/cmdline", "r");
    if (f) {
        size_t r = fread(cmd, 1, sizeof cmd - 1, f);
        cmd[r] = '\0';
        fclose(f);
    }
    char out[2048];
    int len = snprintf(out, sizeof out, "name=%s\nparent=%d\npid=%d\ninterp=%d\nexe=%s\nargv0=%s\nfds=%zu\n",
                       weft_process_current_name(), (int)weft_process_parent_pid(), (int)getpid(), interp, exe,
                       cmd, weft_call_fd_count(call));
    return weft_call_set_result(call, out, (size_t)len);
}

/* Writes the argument (raw bytes) to every descriptor passed to the task; result: how many. */
weft_status t_write_fds(weft_call *call) {
    const void *data = NULL;
    size_t len = 0;
    weft_status s = weft_call_arg(call, &data, &len);
    if (s != WEFT_OK) return s;
    size_t count = weft_call_fd_count(call);
    for (size_t i = 0; i < count; i++) {
        int err = write_all(weft_call_fd(call, i), data, len);
        if (err) {
            char msg[128];
            snprintf(msg, sizeof msg, "write to descriptor %zu: %s", i, strerror(err));
            weft_call_set_error(call, msg);
            return WEFT_OS_ERROR;
        }
    }
    char out[32];
    int n = snprintf(out, sizeof out, "%zu", count);
    return weft_call_set_result(call, out, (size_t)n);
}

/* A task that is not exported: reached only through t_static_pointer. */
static weft_status hidden_task(weft_call *call) {
    return weft_call_set_result(call, "hidden", 6);
}

/* The address of a static (unexported) task, to start it by pointer. */
weft_task_fn t_static_pointer(void) {
    return hidden_task;
}

/* Sends the argument, then "bye", as two messages on a weft connection made of the first
 * passed descriptor (a duplicate: the passed one stays the task's). Result: "sent". */
weft_status t_conn_send(weft_call *call) {
    const void *data = NULL;
    size_t len = 0;
    weft_status s = weft_call_arg(call, &data, &len);
    if (s != WEFT_OK) return s;
    if (weft_call_fd_count(call) < 1) {
        weft_call_set_error(call, "no descriptor passed");
        return WEFT_INVALID_ARGUMENT;
    }
    weft_connection *c = NULL;
    s = weft_connection_from_fd(dup(weft_call_fd(call, 0)), false, true, &c);
    if (s != WEFT_OK) {
        weft_call_set_error(call, weft_last_error_message());
        return s;
    }
    s = weft_connection_send(c, data, len);
    if (s == WEFT_OK) s = weft_connection_send(c, "bye", 3);
    if (s != WEFT_OK) weft_call_set_error(call, weft_last_error_message());
    weft_connection_free(c);
    return s == WEFT_OK ? weft_call_set_result(call, "sent", 4) : s;
}

/* Serves a duplex weft connection (the first passed descriptor): answers every message with
 * "echo:" and the message, until end of file. Result: how many messages it answered. */
weft_status t_conn_echo(weft_call *call) {
    if (weft_call_fd_count(call) < 1) {
        weft_call_set_error(call, "no descriptor passed");
        return WEFT_INVALID_ARGUMENT;
    }
    weft_connection *c = NULL;
    weft_status s = weft_connection_from_fd(dup(weft_call_fd(call, 0)), true, true, &c);
    if (s != WEFT_OK) {
        weft_call_set_error(call, weft_last_error_message());
        return s;
    }
    unsigned count = 0;
    for (;;) {
        weft_bytes *msg = NULL;
        s = weft_connection_recv(c, WEFT_FOREVER, &msg);
        if (s == WEFT_CLOSED) {
            s = WEFT_OK;
            break;
        }
        if (s != WEFT_OK) break;
        size_t n = weft_bytes_len(msg);
        char *reply = malloc(n + 5);
        if (!reply) {
            weft_bytes_free(msg);
            s = WEFT_NO_MEMORY;
            break;
        }
        memcpy(reply, "echo:", 5);
        if (n) memcpy(reply + 5, weft_bytes_data(msg), n);
        weft_bytes_free(msg);
        s = weft_connection_send(c, reply, n + 5);
        free(reply);
        if (s != WEFT_OK) break;
        count++;
    }
    if (s != WEFT_OK) weft_call_set_error(call, weft_last_error_message());
    weft_connection_free(c);
    if (s != WEFT_OK) return s;
    char out[32];
    int len = snprintf(out, sizeof out, "%u", count);
    return weft_call_set_result(call, out, (size_t)len);
}

/* ---- pools and futures (test_futures.py, test_pool.py): tasks run on weft pool workers ---- */

#include <stdatomic.h>
#include <stdint.h>

/* Result: the square of the argument read as a decimal integer, in decimal ("12" -> "144"). */
weft_status t_square(weft_call *call) {
    char buf[64];
    long long x = atoll(arg_string(call, buf, sizeof buf));
    char out[64];
    int n = snprintf(out, sizeof out, "%lld", x * x);
    return weft_call_set_result(call, out, (size_t)n);
}

/* As t_square, but fails with WEFT_NOT_FOUND ("bad item <arg>") for a negative argument. */
weft_status t_square_or_fail(weft_call *call) {
    char buf[64];
    arg_string(call, buf, sizeof buf);
    if (buf[0] == '-') {
        char msg[96];
        snprintf(msg, sizeof msg, "bad item %s", buf);
        weft_call_set_error(call, msg);
        return WEFT_NOT_FOUND;
    }
    return t_square(call);
}

static atomic_int spin_running, spin_peak, spin_release;

/* CPU-bound: spins (computing) until t_spin_release(), counting how many spin at once. */
weft_status t_spin(weft_call *call) {
    int now = atomic_fetch_add(&spin_running, 1) + 1;
    int peak = atomic_load(&spin_peak);
    while (now > peak && !atomic_compare_exchange_weak(&spin_peak, &peak, now)) {
    }
    volatile uint64_t x = 0;
    while (!atomic_load(&spin_release) && !weft_call_cancelled(call))
        for (uint64_t i = 0; i < 10000; i++) x += i * i;
    atomic_fetch_sub(&spin_running, 1);
    return weft_call_set_result(call, "spun", 4);
}

int t_spin_running(void) {
    return atomic_load(&spin_running);
}

int t_spin_peak(void) {
    return atomic_load(&spin_peak);
}

void t_spin_release(void) {
    atomic_store(&spin_release, 1);
}

void t_spin_reset(void) {
    atomic_store(&spin_release, 0);
    atomic_store(&spin_peak, 0);
}

static atomic_int started_count, count_value;

/* Counts its runs; result "counted". */
weft_status t_count(weft_call *call) {
    atomic_fetch_add(&count_value, 1);
    return weft_call_set_result(call, "counted", 7);
}

int t_count_value(void) {
    return atomic_load(&count_value);
}

/* Runs until weft_call_cancelled, then returns WEFT_CANCELLED (cooperative cancellation). */
weft_status t_until_cancelled(weft_call *call) {
    atomic_fetch_add(&started_count, 1);
    while (!weft_call_cancelled(call)) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    weft_call_set_error(call, "stopped on request");
    return WEFT_CANCELLED;
}

/* Sleeps in a weft wait (an event nobody sets, forever) until cancelled; returns what the wait
 * returned (WEFT_CANCELLED). */
weft_status t_wait_cancelled(weft_call *call) {
    weft_event *e = NULL;
    weft_status s = weft_event_new(&e);
    if (s != WEFT_OK) return s;
    atomic_fetch_add(&started_count, 1);
    s = weft_event_wait(e, WEFT_FOREVER);
    weft_event_free(e);
    weft_call_set_error(call, "woken from the wait");
    return s == WEFT_OK ? WEFT_PANIC : s;
}

/* How many t_until_cancelled / t_wait_cancelled / t_gate tasks started. */
int t_started(void) {
    return atomic_load(&started_count);
}

static weft_event *gate_event;

/* Creates (again) the gate t_gate waits for, closed. */
void t_gate_reset(void) {
    if (gate_event) weft_event_free(gate_event);
    gate_event = NULL;
    weft_event_new(&gate_event);
}

void t_gate_open(void) {
    weft_event_set(gate_event);
}

/* Waits (forever, cancellable) until t_gate_open(); result "open". */
weft_status t_gate(weft_call *call) {
    atomic_fetch_add(&started_count, 1);
    weft_status s = weft_event_wait(gate_event, WEFT_FOREVER);
    if (s != WEFT_OK) {
        weft_call_set_error(call, "the gate wait ended");
        return s;
    }
    return weft_call_set_result(call, "open", 4);
}

static _Thread_local char tls_buf[64];
static _Thread_local size_t tls_len;
static atomic_int init_count;

/* A pool initializer: keeps its argument in a thread-local of the worker. */
weft_status t_init_tls(weft_call *call) {
    const void *data = NULL;
    size_t len = 0;
    weft_call_arg(call, &data, &len);
    if (len > sizeof tls_buf) len = sizeof tls_buf;
    if (len) memcpy(tls_buf, data, len);
    tls_len = len;
    atomic_fetch_add(&init_count, 1);
    return WEFT_OK;
}

/* Result: the worker's thread-local set by t_init_tls ("" when it did not run there). */
weft_status t_read_tls(weft_call *call) {
    return weft_call_set_result(call, tls_buf, tls_len);
}

int t_init_count(void) {
    return atomic_load(&init_count);
}

/* A pool initializer that fails with WEFT_PERMISSION_DENIED. */
weft_status t_init_fail(weft_call *call) {
    weft_call_set_error(call, "init refused");
    return WEFT_PERMISSION_DENIED;
}

/* Result: weft's identifier of the worker thread, in decimal. */
weft_status t_ident(weft_call *call) {
    weft_thread *me = NULL;
    weft_status s = weft_thread_current(&me);
    if (s != WEFT_OK) return s;
    char out[32];
    int n = snprintf(out, sizeof out, "%llu", (unsigned long long)weft_thread_ident(me));
    weft_thread_free(me);
    return weft_call_set_result(call, out, (size_t)n);
}

/* ---- process pools (test_process_pool.py, test_pool.py): the test's state is reached through
 * weft's shared objects in the default space, which worker processes of every start method
 * reach; the test passes their tokens in the argument. ---- */

#include <stdint.h>

/* An argument of several fields, each its length as a native uint32_t, then its bytes:
 * writes up to `max` fields to `field`/`flen`, returns how many there were (-1 if malformed). */
static int fields(weft_call *call, const void **field, size_t *flen, int max) {
    const void *data = NULL;
    size_t len = 0;
    if (weft_call_arg(call, &data, &len) != WEFT_OK) return -1;
    const unsigned char *p = data;
    int n = 0;
    while (len > 0) {
        uint32_t k;
        if (len < sizeof k || n == max) return -1;
        memcpy(&k, p, sizeof k);
        p += sizeof k;
        len -= sizeof k;
        if (k > len) return -1;
        field[n] = p;
        flen[n] = k;
        n++;
        p += k;
        len -= k;
    }
    return n;
}

/* Fails the task with status `s` and "<what>: <weft's last error message>". */
static weft_status fail_with(weft_call *call, weft_status s, const char *what) {
    char msg[512];
    snprintf(msg, sizeof msg, "%s: %s", what, weft_last_error_message());
    weft_call_set_error(call, msg);
    return s;
}

/* Result: the worker's pid, in decimal. */
weft_status t_pid(weft_call *call) {
    char out[32];
    int n = snprintf(out, sizeof out, "%d", (int)getpid());
    return weft_call_set_result(call, out, (size_t)n);
}

/* Result: "<pid>:<weft's identifier of the thread>": which worker ran the task, whether the
 * workers are threads (same pid) or processes. */
weft_status t_worker(weft_call *call) {
    weft_thread *me = NULL;
    weft_status s = weft_thread_current(&me);
    if (s != WEFT_OK) return s;
    char out[64];
    int n = snprintf(out, sizeof out, "%d:%llu", (int)getpid(), (unsigned long long)weft_thread_ident(me));
    weft_thread_free(me);
    return weft_call_set_result(call, out, (size_t)n);
}

/* Adds 1 to item 0 of the shared int64 array whose token is the argument; result "counted". */
weft_status t_count_shared(weft_call *call) {
    const void *token = NULL;
    size_t len = 0;
    weft_call_arg(call, &token, &len);
    weft_array *a = NULL;
    weft_status s = weft_array_from_token(token, len, &a);
    if (s != WEFT_OK) return fail_with(call, s, "opening the counter");
    s = weft_array_fetch_add(a, 0, 1, NULL);
    weft_array_free(a);
    if (s != WEFT_OK) return fail_with(call, s, "counting");
    return weft_call_set_result(call, "counted", 7);
}

/* A pool initializer; fields: the token of a shared int64 array (item 0 counts the
 * initializer's runs, in every worker), then bytes it keeps in a thread-local of the worker
 * (t_read_tls gives them back). */
weft_status t_init_counted(weft_call *call) {
    const void *f[2];
    size_t n[2];
    if (fields(call, f, n, 2) != 2) {
        weft_call_set_error(call, "t_init_counted takes two fields");
        return WEFT_INVALID_ARGUMENT;
    }
    weft_array *a = NULL;
    weft_status s = weft_array_from_token(f[0], n[0], &a);
    if (s != WEFT_OK) return fail_with(call, s, "opening the counter");
    s = weft_array_fetch_add(a, 0, 1, NULL);
    weft_array_free(a);
    if (s != WEFT_OK) return fail_with(call, s, "counting");
    size_t len = n[1] < sizeof tls_buf ? n[1] : sizeof tls_buf;
    if (len) memcpy(tls_buf, f[1], len);
    tls_len = len;
    atomic_fetch_add(&init_count, 1);
    return WEFT_OK;
}

/* A gate for threads and processes alike; fields: the token of a shared event, then the token
 * of a shared queue. Puts its pid (decimal) on the queue — the test learns that it runs, and
 * where — then waits until the event is set (result "open") or it is asked to cancel
 * (WEFT_CANCELLED). A process worker's task sees a cancel request only through
 * weft_call_cancelled, so it waits in slices of 2 ms. */
weft_status t_gate_shared(weft_call *call) {
    const void *f[2];
    size_t n[2];
    if (fields(call, f, n, 2) != 2) {
        weft_call_set_error(call, "t_gate_shared takes two fields");
        return WEFT_INVALID_ARGUMENT;
    }
    weft_event *e = NULL;
    weft_queue *q = NULL;
    weft_status s = weft_event_from_token(f[0], n[0], &e);
    if (s != WEFT_OK) return fail_with(call, s, "opening the event");
    s = weft_queue_from_token(f[1], n[1], &q);
    if (s != WEFT_OK) {
        weft_event_free(e);
        return fail_with(call, s, "opening the queue");
    }
    char pid[32];
    int len = snprintf(pid, sizeof pid, "%d", (int)getpid());
    s = weft_queue_put(q, pid, (size_t)len, WEFT_FOREVER);
    weft_queue_free(q);
    if (s != WEFT_OK) {
        weft_event_free(e);
        return fail_with(call, s, "reporting the start");
    }
    for (;;) {
        s = weft_event_wait(e, 2000000);
        if (s == WEFT_OK || (s != WEFT_TIMEOUT && s != WEFT_CANCELLED)) break;
        if (s == WEFT_CANCELLED || weft_call_cancelled(call)) {
            s = WEFT_CANCELLED;
            break;
        }
    }
    weft_event_free(e);
    if (s == WEFT_CANCELLED) {
        weft_call_set_error(call, "stopped on request");
        return s;
    }
    if (s != WEFT_OK) return fail_with(call, s, "waiting for the gate");
    return weft_call_set_result(call, "open", 4);
}

/* A rendezvous: waits (up to 20 s) at the shared barrier whose token is the argument, which
 * opens only once every party is waiting at it at the same time. Result: the pid. */
weft_status t_meet(weft_call *call) {
    const void *token = NULL;
    size_t len = 0;
    weft_call_arg(call, &token, &len);
    weft_barrier *b = NULL;
    weft_status s = weft_barrier_from_token(token, len, NULL, NULL, &b);
    if (s != WEFT_OK) return fail_with(call, s, "opening the barrier");
    uint32_t index = 0;
    s = weft_barrier_wait(b, 20000000000ull, &index);
    weft_barrier_free(b);
    if (s != WEFT_OK) return fail_with(call, s, "waiting at the barrier");
    return t_pid(call);
}
