/* weft scaling: how a CPU-bound task scales over 1..N thread workers and 1..N process workers.
 *
 * The task is R rounds of xorshift64 over a seed (a chain of dependent shifts and XORs: pure
 * CPU, no memory traffic, no allocation), sized by calibration to --task-us microseconds. For
 * each worker count k = 1..N the program builds a thread pool and a process pool of k workers
 * (before any timing), warms both up, then times T tasks per worker on the thread pool and
 * then on the process pool: submit all, wait for all, wall clock. It prints one row per kind
 * and worker count with the throughput and the speedup over one worker of the same kind.
 *
 * Every result is verified. A task returns its index and its value; the value is checked
 * against one computed here by a different route: xorshift64 is linear over GF(2), so R
 * rounds are one 64x64 bit matrix (the step matrix to the R-th power, built once by
 * squaring), and the expected value of any seed costs 64 XORs instead of R rounds. A failed,
 * missing, misplaced or wrong result ends the program with exit status 1.
 *
 * With --python it also runs ctests/scaling/scaling_peer.py (the same experiment in pure
 * Python with concurrent.futures, its own task calibrated to the same duration) after weft's
 * runs, and prints its figures next to weft's. --check is the short correctness run of the test
 * suite: a tiny task and a few tasks per worker; it prints the table but judges no timing.
 *
 * Build by hand from the project root (tests/ctests.rs and ctests/CMakeLists.txt build it
 * too, as target/ctests/weft_scaling and weft_scaling):
 *   cargo build --release --lib
 *   cc -std=c11 -O2 -Wall -Wextra -pthread -Iinclude ctests/scaling/scaling.c \
 *      -Ltarget/release -lweft -Wl,-rpath,$PWD/target/release -o weft_scaling
 *   ./weft_scaling --python
 *
 * Task functions of process pools: with the fork start method the worker is a copy of this
 * program and calls the pointer; with forkserver and spawn, weft finds the function again by
 * its object (this executable) and offset, so scaling_task needs no export and no -rdynamic.
 */
#define _POSIX_C_SOURCE 200809L
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "weft.h"

/* Where --python finds the peer unless --peer says otherwise: the builds define it as the
 * file's absolute path; a hand build run from the project root finds it relatively. */
#ifndef WEFT_SCALING_PEER
#define WEFT_SCALING_PEER "ctests/scaling/scaling_peer.py"
#endif

/* Defaults of a measurement run, and of --check (tiny task, few tasks, at most 4 workers). */
#define DEFAULT_TASK_US 1000
#define DEFAULT_TASKS_PER_WORKER 500
#define CHECK_TASK_US 20
#define CHECK_TASKS_PER_WORKER 8
#define CHECK_MAX_WORKERS 4
/* Untimed tasks per worker before each timed run: every worker started and running. */
#define WARMUP_TASKS_PER_WORKER 2

/* Stops the program at the first weft call that fails, naming it, its status and weft's
 * message for the calling thread. */
#define CHECK(expr)                                                                        \
    do {                                                                                   \
        weft_status s_ = (expr);                                                           \
        if (s_ != WEFT_OK) {                                                               \
            fprintf(stderr, "scaling: %s:%d: %s failed: %s (%s)\n", __FILE__, __LINE__,    \
                    #expr, weft_status_name(s_), weft_last_error_message());               \
            exit(1);                                                                       \
        }                                                                                  \
    } while (0)

/* Prints "scaling: " and the message to stderr and exits with status 1. */
static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("scaling: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(1);
}

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- the task ---------------------------------------------------------------------------- */

/* `rounds` rounds of Marsaglia's xorshift64 (13, 7, 17) from `x`. */
static uint64_t xorshift_rounds(uint64_t x, uint64_t rounds) {
    for (uint64_t i = 0; i < rounds; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
    }
    return x;
}

/* The argument of a task, and its result. */
typedef struct {
    uint64_t index;  /* position of the task in its run */
    uint64_t seed;   /* never 0 (xorshift64 keeps 0 at 0) */
    uint64_t rounds;
} task_arg;

typedef struct {
    uint64_t index;
    uint64_t value;
} task_result;

/* The task every pool runs: xorshift_rounds over its argument. A plain (static) function of
 * the executable: fork workers call its address, forkserver and spawn workers find it by
 * this executable's file and the function's offset. */
static weft_status scaling_task(weft_call *call) {
    const void *data = NULL;
    size_t len = 0;
    weft_status s = weft_call_arg(call, &data, &len);
    if (s != WEFT_OK) return s;
    if (len != sizeof(task_arg)) {
        weft_call_set_error(call, "scaling_task: the argument is not a task_arg");
        return WEFT_INVALID_ARGUMENT;
    }
    task_arg a;
    memcpy(&a, data, sizeof a);
    task_result r = {a.index, xorshift_rounds(a.seed, a.rounds)};
    return weft_call_set_result(call, &r, sizeof r);
}

/* The seed of task `index`: splitmix64 of it, so that every task computes something else. */
static uint64_t seed_of(uint64_t index) {
    uint64_t z = index + 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return z ? z : 1;
}

/* ---- the expected values: xorshift64 as a matrix over GF(2) -------------------------------- */

/* A 64x64 bit matrix by columns: col[b] is the image of the vector with only bit b set. */
typedef struct {
    uint64_t col[64];
} gf2_matrix;

/* m * x: the XOR of the columns of m selected by the bits of x. */
static uint64_t gf2_apply(const gf2_matrix *m, uint64_t x) {
    uint64_t r = 0;
    while (x) {
        r ^= m->col[__builtin_ctzll(x)];
        x &= x - 1;
    }
    return r;
}

/* a * b (b applied first). */
static gf2_matrix gf2_mul(const gf2_matrix *a, const gf2_matrix *b) {
    gf2_matrix c;
    for (int i = 0; i < 64; i++) c.col[i] = gf2_apply(a, b->col[i]);
    return c;
}

/* The matrix of `rounds` xorshift64 rounds: the one-round matrix to that power, by squaring
 * (powers of one matrix commute, so the order of the products does not matter). */
static gf2_matrix gf2_rounds(uint64_t rounds) {
    gf2_matrix step, acc;
    for (int i = 0; i < 64; i++) {
        step.col[i] = xorshift_rounds((uint64_t)1 << i, 1);
        acc.col[i] = (uint64_t)1 << i;
    }
    while (rounds) {
        if (rounds & 1) acc = gf2_mul(&step, &acc);
        step = gf2_mul(&step, &step);
        rounds >>= 1;
    }
    return acc;
}

/* ---- calibration --------------------------------------------------------------------------- */

/* Rounds that take about `task_us` microseconds on this CPU: the fastest of five timings of a
 * fixed number of rounds (the fastest is the one least disturbed), scaled. */
static uint64_t calibrate(uint64_t task_us) {
    const uint64_t probe = 1u << 20;
    double best = 1e9;
    volatile uint64_t sink = 0;
    for (int i = 0; i < 5; i++) {
        double t0 = now_s();
        sink = xorshift_rounds(seed_of((uint64_t)i), probe);
        double t = now_s() - t0;
        if (t < best) best = t;
    }
    (void)sink;
    double per_round_us = best * 1e6 / (double)probe;
    double rounds = (double)task_us / per_round_us;
    return rounds < 1 ? 1 : (uint64_t)rounds;
}

/* ---- runs ------------------------------------------------------------------------------------ */

static const char *method_name(uint32_t m) {
    switch (m) {
    case WEFT_START_FORK: return "fork";
    case WEFT_START_FORKSERVER: return "forkserver";
    case WEFT_START_SPAWN: return "spawn";
    default: return "?";
    }
}

static weft_pool *new_pool(uint32_t kind, uint32_t workers, uint32_t method) {
    weft_pool_options o;
    memset(&o, 0, sizeof o);
    o.kind = kind;
    o.workers = workers;
    o.start_method = kind == WEFT_POOL_PROCESSES ? method : 0;
    weft_pool *pool = NULL;
    CHECK(weft_pool_new(&o, &pool));
    size_t n = 0;
    CHECK(weft_pool_workers(pool, &n));
    if (n != workers) die("a pool asked for %" PRIu32 " workers has %zu", workers, n);
    return pool;
}

/* Runs `tasks` tasks of `rounds` rounds on `pool` (submit all, then wait for all in order) and
 * returns the wall-clock seconds from the first submit to the last result. Then checks every
 * result against `expected`; any failure ends the program. */
static double run_tasks(weft_pool *pool, const char *what, size_t tasks, uint64_t rounds, const gf2_matrix *expected) {
    weft_future **futures = calloc(tasks, sizeof *futures);
    if (!futures) die("out of memory");

    double t0 = now_s();
    for (size_t i = 0; i < tasks; i++) {
        task_arg a = {i, seed_of(i), rounds};
        CHECK(weft_pool_submit(pool, scaling_task, &a, sizeof a, &futures[i]));
    }
    for (size_t i = 0; i < tasks; i++) {
        weft_status s = weft_future_result(futures[i], WEFT_FOREVER, NULL, NULL);
        if (s != WEFT_OK)
            die("%s: task %zu failed: %s (%s)", what, i, weft_status_name(s), weft_last_error_message());
    }
    double seconds = now_s() - t0;

    /* Verification, outside the timed part (the results stay valid while we hold the futures). */
    for (size_t i = 0; i < tasks; i++) {
        const void *data = NULL;
        size_t len = 0;
        CHECK(weft_future_result(futures[i], 0, &data, &len));
        if (len != sizeof(task_result)) die("%s: task %zu gave %zu result bytes, not %zu", what, i, len, sizeof(task_result));
        task_result r;
        memcpy(&r, data, sizeof r);
        uint64_t want = gf2_apply(expected, seed_of(i));
        if (r.index != i || r.value != want)
            die("%s: task %zu gave (index %" PRIu64 ", value %#" PRIx64 "), expected (%zu, %#" PRIx64 ")", what, i, r.index,
                r.value, i, want);
        weft_future_free(futures[i]);
    }
    free(futures);
    return seconds;
}

/* The figures of one kind at one worker count. */
typedef struct {
    size_t tasks;
    double seconds;
} figure;

static double rate(figure f) {
    return f.seconds > 0 ? (double)f.tasks / f.seconds : 0;
}

/* ---- the Python peer ------------------------------------------------------------------------ */

typedef struct {
    bool ran;
    char version[64];
    uint64_t rounds;
    figure *threads, *processes; /* [workers + 1], index = worker count */
} peer_figures;

/* Runs the peer with the same settings and parses its "row KIND WORKERS TASKS SECONDS" lines
 * (its stderr passes through to ours). Any failure, or a missing row, ends the program. */
static void run_peer(const char *python, const char *peer, uint32_t workers, uint64_t tasks_per_worker, uint64_t task_us,
                     uint32_t method, peer_figures *out) {
    char w[32], t[32], u[32];
    snprintf(w, sizeof w, "%" PRIu32, workers);
    snprintf(t, sizeof t, "%" PRIu64, tasks_per_worker);
    snprintf(u, sizeof u, "%" PRIu64, task_us);
    const char *argv[] = {python, peer, "--machine", "--workers", w, "--tasks-per-worker", t, "--task-us", u,
                          "--start-method", method_name(method), NULL};
    int code = -1;
    weft_bytes *stdout_bytes = NULL;
    weft_status s = weft_command_run(argv, NULL, NULL, 0, WEFT_FOREVER, WEFT_RUN_CHECK, &code, &stdout_bytes, NULL);
    if (s != WEFT_OK) die("the Python peer (%s %s) failed: %s (%s)", python, peer, weft_status_name(s), weft_last_error_message());

    size_t len = weft_bytes_len(stdout_bytes);
    char *text = malloc(len + 1);
    if (!text) die("out of memory");
    if (len) memcpy(text, weft_bytes_data(stdout_bytes), len);
    text[len] = '\0';
    weft_bytes_free(stdout_bytes);

    out->threads = calloc(workers + 1, sizeof(figure));
    out->processes = calloc(workers + 1, sizeof(figure));
    if (!out->threads || !out->processes) die("out of memory");
    for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
        char kind[16];
        unsigned k;
        size_t tasks;
        double seconds;
        if (sscanf(line, "peer python %63s rounds %" SCNu64, out->version, &out->rounds) == 2) continue;
        if (sscanf(line, "row %15s %u %zu %lf", kind, &k, &tasks, &seconds) != 4) continue;
        if (k < 1 || k > workers) die("the Python peer printed a row for %u workers: %s", k, line);
        figure f = {tasks, seconds};
        if (strcmp(kind, "threads") == 0) out->threads[k] = f;
        else if (strcmp(kind, "processes") == 0) out->processes[k] = f;
        else die("the Python peer printed an unknown row: %s", line);
    }
    free(text);
    for (uint32_t k = 1; k <= workers; k++)
        if (!out->threads[k].tasks || !out->processes[k].tasks) die("the Python peer gave no figures for %" PRIu32 " workers", k);
    out->ran = true;
}

/* ---- main ------------------------------------------------------------------------------------- */

static void usage(FILE *to) {
    fprintf(to,
            "usage: weft_scaling [options]\n"
            "Times a CPU-bound task (xorshift64 rounds) over 1..N thread workers and 1..N process\n"
            "workers of weft pools and prints the speedup over one worker; every result is verified.\n"
            "\n"
            "  --workers N             largest worker count (default: weft_cpu_count(), %" PRIu32 " here)\n"
            "  --tasks-per-worker T    timed tasks per worker at each count (default %d)\n"
            "  --task-us U             task duration in microseconds, calibrated (default %d)\n"
            "  --start-method M        process pools: fork (default), forkserver or spawn\n"
            "  --check                 short correctness run: %d us tasks, %d per worker, at most %d\n"
            "                          workers unless --workers is given; timings are not judged\n"
            "  --python                also run the Python peer (threads and processes of\n"
            "                          concurrent.futures) and print its figures next to weft's\n"
            "  --peer PATH             the peer script (default %s)\n"
            "                          run with $PYTHON, else python3\n"
            "  --help                  this text\n"
            "\n"
            "Exit status 0 when every result was right, 1 otherwise, 2 for bad options.\n",
            weft_cpu_count(), DEFAULT_TASKS_PER_WORKER, DEFAULT_TASK_US, CHECK_TASK_US, CHECK_TASKS_PER_WORKER,
            CHECK_MAX_WORKERS, WEFT_SCALING_PEER);
}

/* A positive integer option value, or exit status 2. */
static uint64_t positive(const char *option, const char *value) {
    if (!value) {
        fprintf(stderr, "scaling: %s needs a value\n", option);
        exit(2);
    }
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(value, &end, 10);
    if (errno || end == value || *end || v == 0 || value[0] == '-') {
        fprintf(stderr, "scaling: %s wants a positive integer, not \"%s\"\n", option, value);
        exit(2);
    }
    return v;
}

int main(int argc, char **argv) {
    uint64_t workers = 0, tasks_per_worker = 0, task_us = 0;
    uint32_t method = WEFT_START_FORK;
    bool check = false, python = false;
    const char *peer = WEFT_SCALING_PEER;

    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--workers") == 0) workers = positive(a, v), i++;
        else if (strcmp(a, "--tasks-per-worker") == 0) tasks_per_worker = positive(a, v), i++;
        else if (strcmp(a, "--task-us") == 0) task_us = positive(a, v), i++;
        else if (strcmp(a, "--start-method") == 0) {
            if (v && strcmp(v, "fork") == 0) method = WEFT_START_FORK;
            else if (v && strcmp(v, "forkserver") == 0) method = WEFT_START_FORKSERVER;
            else if (v && strcmp(v, "spawn") == 0) method = WEFT_START_SPAWN;
            else {
                fprintf(stderr, "scaling: --start-method wants fork, forkserver or spawn\n");
                return 2;
            }
            i++;
        } else if (strcmp(a, "--check") == 0) check = true;
        else if (strcmp(a, "--python") == 0) python = true;
        else if (strcmp(a, "--peer") == 0) {
            if (!v) {
                fprintf(stderr, "scaling: --peer needs a path\n");
                return 2;
            }
            peer = v, i++;
        } else if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
            usage(stdout);
            return 0;
        } else {
            fprintf(stderr, "scaling: unknown option %s\n", a);
            usage(stderr);
            return 2;
        }
    }
    uint32_t cpus = weft_cpu_count();
    if (!workers) workers = check && cpus > CHECK_MAX_WORKERS ? CHECK_MAX_WORKERS : cpus;
    if (workers > 4096) die("--workers %" PRIu64 " is more than this program is meant for", workers);
    if (!tasks_per_worker) tasks_per_worker = check ? CHECK_TASKS_PER_WORKER : DEFAULT_TASKS_PER_WORKER;
    if (!task_us) task_us = check ? CHECK_TASK_US : DEFAULT_TASK_US;
    if (strcmp(weft_version(), WEFT_VERSION_STRING) != 0)
        die("weft.h is version %s but the loaded libweft is %s", WEFT_VERSION_STRING, weft_version());

    /* The task and its expected values; the matrix route is checked once against the direct
     * computation, so that a wrong matrix cannot pass wrong results. */
    uint64_t rounds = calibrate(task_us);
    gf2_matrix expected = gf2_rounds(rounds);
    if (gf2_apply(&expected, seed_of(12345)) != xorshift_rounds(seed_of(12345), rounds))
        die("the GF(2) matrix of %" PRIu64 " rounds disagrees with the rounds themselves", rounds);

    printf("weft scaling: xorshift64 task of ~%" PRIu64 " us (%" PRIu64 " rounds), %" PRIu64
           " tasks per worker, workers 1..%" PRIu64 ", process start method %s%s\n",
           task_us, rounds, tasks_per_worker, workers, method_name(method), check ? ", check run (timings not judged)" : "");
    printf("weft %s, %" PRIu32 " usable CPUs\n", weft_version(), cpus);
    fflush(stdout);

    figure *threads = calloc(workers + 1, sizeof(figure));
    figure *processes = calloc(workers + 1, sizeof(figure));
    if (!threads || !processes) die("out of memory");

    printf("%-10s %7s %7s %9s %10s %8s\n", "kind", "workers", "tasks", "seconds", "tasks/s", "speedup");
    for (uint32_t k = 1; k <= workers; k++) {
        /* Both pools before any timing; the process pool first, so that fork workers are
         * copies of this single-threaded program (weft warns about forking one with threads;
         * the previous pools' threads are gone, weft_pool_shutdown joined them). */
        weft_pool *procs = new_pool(WEFT_POOL_PROCESSES, k, method);
        weft_pool *thrds = new_pool(WEFT_POOL_THREADS, k, method);
        size_t warm = (size_t)k * WARMUP_TASKS_PER_WORKER, tasks = (size_t)k * tasks_per_worker;
        run_tasks(thrds, "thread pool warm-up", warm, rounds, &expected);
        run_tasks(procs, "process pool warm-up", warm, rounds, &expected);

        threads[k] = (figure){tasks, run_tasks(thrds, "thread pool", tasks, rounds, &expected)};
        printf("%-10s %7" PRIu32 " %7zu %9.4f %10.1f %7.2fx\n", "threads", k, tasks, threads[k].seconds, rate(threads[k]),
               rate(threads[k]) / rate(threads[1]));
        fflush(stdout);
        processes[k] = (figure){tasks, run_tasks(procs, "process pool", tasks, rounds, &expected)};
        printf("%-10s %7" PRIu32 " %7zu %9.4f %10.1f %7.2fx\n", "processes", k, tasks, processes[k].seconds,
               rate(processes[k]), rate(processes[k]) / rate(processes[1]));
        fflush(stdout);

        CHECK(weft_pool_shutdown(thrds, true, false, WEFT_FOREVER));
        CHECK(weft_pool_shutdown(procs, true, false, WEFT_FOREVER));
        weft_pool_free(thrds);
        weft_pool_free(procs);
    }

    if (python) {
        const char *interp = getenv("PYTHON");
        if (!interp || !*interp) interp = "python3";
        printf("\nPython peer: %s %s\n", interp, peer);
        fflush(stdout);
        peer_figures py;
        memset(&py, 0, sizeof py);
        run_peer(interp, peer, (uint32_t)workers, tasks_per_worker, task_us, method, &py);
        printf("Python %s, pure-Python xorshift64 task of ~%" PRIu64 " us (%" PRIu64 " rounds), same tasks per worker\n\n",
               py.version, task_us, py.rounds);
        printf("speedup over 1 worker of the same kind (tasks/s)\n");
        printf("%7s  %-20s %-20s %-20s %s\n", "workers", "weft threads", "weft processes", "Python threads",
               "Python processes");
        for (uint32_t k = 1; k <= workers; k++) {
            figure *cols[4][2] = {{threads, &threads[k]}, {processes, &processes[k]}, {py.threads, &py.threads[k]},
                                  {py.processes, &py.processes[k]}};
            printf("%7" PRIu32 " ", k);
            for (int c = 0; c < 4; c++) {
                char cell[32];
                snprintf(cell, sizeof cell, "%.2fx (%.0f/s)", rate(*cols[c][1]) / rate(cols[c][0][1]), rate(*cols[c][1]));
                printf(c < 3 ? " %-20s" : " %s", cell);
            }
            printf("\n");
        }
        free(py.threads);
        free(py.processes);
    }

    free(threads);
    free(processes);
    return 0;
}
