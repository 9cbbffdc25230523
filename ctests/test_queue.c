/* Queues (weft_queue_*): Python's queue.Queue, LifoQueue, PriorityQueue and SimpleQueue, and
 * multiprocessing's Queue, JoinableQueue and SimpleQueue, as one handle type, private or in a
 * space. Covered: the order of each kind, words, buffers too small, empty and large items,
 * bounds (Full/Empty as WEFT_WOULD_BLOCK, timeouts), blocked putters, getters and joiners,
 * put_many/get_many, task_done/join, shutdown (graceful and immediate, Python 3.13), the
 * pollable descriptor, misuse, options, names and tokens, cancellation, exact delivery with
 * many producers and consumers across threads and across processes, crash consistency under
 * random SIGKILLs of producers and consumers, and a corrupted shared header.
 *
 * Set WEFT_CTESTS_VERBOSE=1 to print the configuration each loop is testing.
 */
#define _GNU_SOURCE
#include "helpers.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define KIB ((size_t)1024)
#define MIB ((size_t)1024 * 1024)

/* ---- helpers ------------------------------------------------------------------------------- */

static void note(const char *what) {
    if (getenv("WEFT_CTESTS_VERBOSE")) fprintf(stderr, "# %s\n", what);
}

/* How to make a queue: private (weft_queue_new) or in the default space (weft_queue_new_in). */
typedef struct {
    const char *label;
    bool shared;
    uint32_t kind, flags;
    uint64_t maxsize, max_bytes;
} qconf;

static weft_queue_options qopts(uint32_t kind, uint32_t flags, uint64_t maxsize, uint64_t max_bytes) {
    weft_queue_options o;
    memset(&o, 0, sizeof o);
    o.kind = kind;
    o.flags = flags;
    o.maxsize = maxsize;
    o.max_bytes = max_bytes;
    return o;
}

static weft_queue *qmake(const qconf *c) {
    note(c->label);
    weft_queue_options o = qopts(c->kind, c->flags, c->maxsize, c->max_bytes);
    weft_queue *q = NULL;
    if (c->shared)
        ASSERT_OK(weft_queue_new_in(NULL, NULL, &o, &q));
    else
        ASSERT_OK(weft_queue_new(&o, &q));
    ASSERT_NOT_NULL(q);
    return q;
}

static weft_queue *private_queue(uint32_t kind, uint32_t flags, uint64_t maxsize) {
    qconf c = {"private", false, kind, flags, maxsize, 0};
    return qmake(&c);
}

static weft_queue *shared_queue(uint32_t kind, uint32_t flags, uint64_t maxsize, uint64_t max_bytes) {
    qconf c = {"shared", true, kind, flags, maxsize, max_bytes};
    return qmake(&c);
}

static size_t qsize(const weft_queue *q) {
    size_t n = (size_t)-1;
    ASSERT_OK(weft_queue_size(q, &n));
    return n;
}

static size_t unfinished(const weft_queue *q) {
    size_t n = (size_t)-1;
    ASSERT_OK(weft_queue_unfinished(q, &n));
    return n;
}

static void put_s(weft_queue *q, const char *s) {
    ASSERT_OK(weft_queue_put(q, s, strlen(s), 0));
}

/* Takes the next item (waiting up to 5 s) and checks that it is the string `s`. */
static void expect_s_at(weft_queue *q, const char *s, int line) {
    char buf[512];
    size_t len = 0;
    weft_status st = weft_queue_get_into(q, buf, sizeof buf, 5 * SEC, &len);
    if (st != WEFT_OK)
        FAIL_AT("line %d: get returned %s, expected \"%s\" (%s)", line, weft_status_name(st), s,
                weft_last_error_message());
    if (len != strlen(s) || memcmp(buf, s, len) != 0)
        FAIL_AT("line %d: got \"%.*s\", expected \"%s\"", line, (int)len, buf, s);
}
#define expect_s(q, s) expect_s_at((q), (s), __LINE__)

static uint64_t elapsed_since(uint64_t t0) {
    return runner_now_ns() - t0;
}

/* poll(2) for POLLIN on `fd` for up to `timeout_ms` (0: now). */
static bool fd_readable(int fd, int timeout_ms) {
    struct pollfd p = {.fd = fd, .events = POLLIN, .revents = 0};
    int r;
    do {
        r = poll(&p, 1, timeout_ms);
    } while (r < 0 && errno == EINTR);
    ASSERT(r >= 0);
    ASSERT_EQ(p.revents & (POLLERR | POLLNVAL), 0);
    return r > 0 && (p.revents & POLLIN);
}

/* Waits up to `timeout_ms` for `fd` to stop being readable; true when it did. */
static bool fd_becomes_unreadable(int fd, unsigned timeout_ms) {
    uint64_t deadline = runner_now_ns() + (uint64_t)timeout_ms * MS;
    while (fd_readable(fd, 0)) {
        if (runner_now_ns() > deadline) return false;
        runner_sleep_ms(1);
    }
    return true;
}

/* Waits up to 3 s for the descriptor count to come back to `fds` (a shared queue's watcher
 * thread closes its eventfd shortly after its handle is freed). */
static void wait_fd_count(int fds) {
    uint64_t deadline = runner_now_ns() + 3 * SEC;
    while (fd_count() != fds) {
        if (runner_now_ns() > deadline) FAIL_AT("descriptors: %d open, expected %d", fd_count(), fds);
        runner_sleep_ms(2);
    }
}

/* A byte of a recognisable pattern. */
static uint8_t pat(size_t i, uint8_t seed) {
    return (uint8_t)(i * 31 + (i >> 11) + seed);
}

static uint8_t *pattern(size_t len, uint8_t seed) {
    uint8_t *p = malloc(len ? len : 1);
    ASSERT_NOT_NULL(p);
    for (size_t i = 0; i < len; i++) p[i] = pat(i, seed);
    return p;
}

static void check_pattern(const uint8_t *p, size_t len, uint8_t seed) {
    for (size_t i = 0; i < len; i++)
        if (p[i] != pat(i, seed)) FAIL_AT("byte %zu of %zu differs", i, len);
}

/* ---- a thread blocked in one queue call ---------------------------------------------------- */

enum op { OP_PUT, OP_GET, OP_JOIN, OP_GET_MANY };

typedef struct {
    weft_queue *q;
    enum op op;
    const char *item; /* OP_PUT */
    atomic_uint tid;
    atomic_int finished;
    weft_status st;
    char got[256]; /* OP_GET: the item; OP_GET_MANY: the packed items */
    size_t got_len;
    size_t count; /* OP_GET_MANY */
    pthread_t thread;
} waiter;

static void *waiter_main(void *arg) {
    waiter *w = arg;
    atomic_store(&w->tid, my_tid());
    switch (w->op) {
    case OP_PUT: w->st = weft_queue_put(w->q, w->item, strlen(w->item), WEFT_FOREVER); break;
    case OP_GET: w->st = weft_queue_get_into(w->q, w->got, sizeof w->got, WEFT_FOREVER, &w->got_len); break;
    case OP_JOIN: w->st = weft_queue_join(w->q, WEFT_FOREVER); break;
    case OP_GET_MANY: {
        weft_bytes *b = NULL;
        w->st = weft_queue_get_many(w->q, 16, WEFT_FOREVER, &b, &w->count);
        if (w->st == WEFT_OK) {
            ASSERT(weft_bytes_len(b) <= sizeof w->got);
            w->got_len = weft_bytes_len(b);
            memcpy(w->got, weft_bytes_data(b), w->got_len);
            weft_bytes_free(b);
        }
        break;
    }
    }
    atomic_store(&w->finished, 1);
    return NULL;
}

/* Starts a thread making the call `op` (waiting forever) and waits until it is blocked in it. */
static void start_waiter(waiter *w, weft_queue *q, enum op op, const char *item) {
    memset(w, 0, sizeof *w);
    w->q = q;
    w->op = op;
    w->item = item;
    w->st = -1;
    atomic_init(&w->tid, 0);
    atomic_init(&w->finished, 0);
    w->thread = spawn(waiter_main, w);
    wait_blocked(&w->tid);
    ASSERT_EQ(atomic_load(&w->finished), 0);
}

/* Joins the waiter's thread (it must end within 5 s) and returns its call's status. */
static weft_status end_waiter(waiter *w) {
    uint64_t deadline = runner_now_ns() + 5 * SEC;
    while (!atomic_load(&w->finished)) {
        if (runner_now_ns() > deadline) FAIL_AT("a blocked queue call was never released");
        runner_sleep_ms(1);
    }
    ASSERT_EQ(pthread_join(w->thread, NULL), 0);
    return w->st;
}

/* The waiter is still blocked a little later. */
static void still_blocked(waiter *w) {
    runner_sleep_ms(30);
    ASSERT_EQ(atomic_load(&w->finished), 0);
}

/* ---- 1. the order of each kind ----------------------------------------------------------- */

/* Item number `n`: its 4 bytes, then (n * 7) % 41 bytes of (n & 0xff). */
static size_t numbered(uint8_t *buf, uint32_t n) {
    memcpy(buf, &n, 4);
    size_t extra = (size_t)(n * 7u) % 41;
    memset(buf + 4, (int)(n & 0xff), extra);
    return 4 + extra;
}

static void expect_numbered(weft_queue *q, uint32_t n) {
    uint8_t buf[64], want[64];
    size_t len = 0, wlen = numbered(want, n);
    ASSERT_OK(weft_queue_get_into(q, buf, sizeof buf, 0, &len));
    uint32_t got = 0;
    if (len >= 4) memcpy(&got, buf, 4);
    if (len != wlen || memcmp(buf, want, len) != 0)
        FAIL_AT("expected item %u (%zu bytes), got item %u (%zu bytes)", n, wlen, got, len);
}

TEST_TIMEOUT(queue_fifo_and_simple_deliver_in_put_order, 20000) {
    const qconf confs[] = {
        {"private fifo, ring (maxsize 4)", false, WEFT_QUEUE_FIFO, 0, 4, 0},
        {"private fifo, unbounded", false, WEFT_QUEUE_FIFO, 0, 0, 0},
        {"private fifo, joinable, above the ring's limit", false, WEFT_QUEUE_FIFO, WEFT_QUEUE_JOINABLE, 70000, 0},
        {"private simple", false, WEFT_QUEUE_SIMPLE, 0, 0, 0},
        {"shared fifo (maxsize 4)", true, WEFT_QUEUE_FIFO, 0, 4, 0},
        {"shared fifo, 256-byte ring", true, WEFT_QUEUE_FIFO, 0, 0, 256},
        {"shared simple", true, WEFT_QUEUE_SIMPLE, 0, 0, 0},
    };
    xp_guard g;
    xp_begin(&g);
    fd_guard f;
    fd_begin(&f);
    for (size_t c = 0; c < sizeof confs / sizeof confs[0]; c++) {
        weft_queue *q = qmake(&confs[c]);
        uint32_t next_put = 0, next_get = 0;
        /* Up to 3 items at a time, many times: bounded storage wraps around again and again
         * (records of several sizes straddle the end of the small ring). */
        for (int round = 0; round < 400; round++) {
            int n = 1 + round % 3;
            for (int i = 0; i < n; i++) {
                uint8_t item[64];
                size_t len = numbered(item, next_put++);
                /* A priority is ignored by every kind but PRIORITY. */
                ASSERT_OK(weft_queue_put_priority(q, item, len, (int64_t)(round % 5) - 2, 0));
            }
            ASSERT_UEQ(qsize(q), (size_t)n);
            for (int i = 0; i < n; i++) expect_numbered(q, next_get++);
        }
        ASSERT(weft_queue_empty(q));
        /* Many at once (an unbounded or large queue), still in order. */
        if ((confs[c].maxsize == 0 || confs[c].maxsize > 1000) && confs[c].max_bytes == 0) {
            uint32_t first = next_put;
            size_t many = confs[c].shared ? 1000 : 5000;
            for (size_t i = 0; i < many; i++) {
                uint8_t item[64];
                size_t len = numbered(item, next_put++);
                ASSERT_OK(weft_queue_put(q, item, len, 0));
            }
            ASSERT_UEQ(qsize(q), many);
            ASSERT(!weft_queue_full(q));
            for (uint32_t n = first; n < next_put; n++) expect_numbered(q, n);
        }
        ASSERT_UEQ(qsize(q), 0);
        weft_queue_free(q);
    }
    fd_end(&f);
    xp_end(&g);
}

TEST(queue_lifo_delivers_last_put_first) {
    fd_guard f;
    fd_begin(&f);
    const uint64_t bounds[] = {0, 3, 70000};
    for (size_t b = 0; b < 3; b++) {
        weft_queue *q = private_queue(WEFT_QUEUE_LIFO, 0, bounds[b]);
        put_s(q, "1");
        put_s(q, "2");
        put_s(q, "3");
        expect_s(q, "3");
        put_s(q, "4");
        expect_s(q, "4");
        expect_s(q, "2");
        put_s(q, "5");
        expect_s(q, "5");
        expect_s(q, "1");
        ASSERT(weft_queue_empty(q));
        weft_queue_free(q);
    }
    /* Many. */
    weft_queue *q = private_queue(WEFT_QUEUE_LIFO, WEFT_QUEUE_JOINABLE, 0);
    for (uint32_t n = 0; n < 3000; n++) {
        uint8_t item[64];
        size_t len = numbered(item, n);
        ASSERT_OK(weft_queue_put(q, item, len, 0));
    }
    for (uint32_t n = 3000; n-- > 0;) expect_numbered(q, n);
    weft_queue_free(q);
    fd_end(&f);
}

TEST(queue_priority_lowest_first_fifo_among_equals) {
    fd_guard f;
    fd_begin(&f);
    const uint64_t bounds[] = {0, 20, 70000};
    for (size_t b = 0; b < 3; b++) {
        weft_queue *q = private_queue(WEFT_QUEUE_PRIORITY, 0, bounds[b]);
        struct {
            const char *item;
            int64_t priority;
        } puts[] = {
            {"a5", 5}, {"b1", 1}, {"c3", 3}, {"d1", 1}, {"e-2", -2}, {"f3", 3},
            {"gmax", INT64_MAX}, {"hmin", INT64_MIN}, {"i1", 1}, {"j0", 0}, {"k5", 5},
        };
        for (size_t i = 0; i < sizeof puts / sizeof puts[0]; i++)
            ASSERT_OK(weft_queue_put_priority(q, puts[i].item, strlen(puts[i].item), puts[i].priority, 0));
        /* weft_queue_put is priority 0, after the "j0" put earlier. */
        put_s(q, "l0");
        const char *want[] = {"hmin", "e-2", "j0", "l0", "b1", "d1", "i1", "c3", "f3", "a5", "k5", "gmax"};
        for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) expect_s(q, want[i]);
        ASSERT(weft_queue_empty(q));
        /* Equal priorities: FIFO, even after the heap has been reshuffled by other items. A
         * bounded queue takes batches of 10 (even numbers at -7, odd ones at 7); the others
         * all 500 at once. */
        uint32_t batch = bounds[b] == 20 ? 10 : 500;
        for (uint32_t first = 0; first < 500; first += batch) {
            for (uint32_t n = first; n < first + batch; n++) {
                uint8_t item[64];
                size_t len = numbered(item, n);
                ASSERT_OK(weft_queue_put_priority(q, item, len, n % 2 ? 7 : -7, 0));
            }
            for (uint32_t n = first; n < first + batch; n += 2) expect_numbered(q, n);
            for (uint32_t n = first + 1; n < first + batch; n += 2) expect_numbered(q, n);
        }
        ASSERT_UEQ(qsize(q), 0);
        weft_queue_free(q);
    }
    fd_end(&f);
}

TEST(queue_simple_is_unbounded_and_never_joinable) {
    xp_guard g;
    xp_begin(&g);
    fd_guard f;
    fd_begin(&f);
    weft_queue_options o = qopts(WEFT_QUEUE_SIMPLE, 0, 1, 0);
    weft_queue *q = NULL;
    ASSERT_STATUS(weft_queue_new(&o, &q), WEFT_INVALID_ARGUMENT);
    ASSERT_NULL(q);
    ASSERT_STATUS(weft_queue_new_in(NULL, NULL, &o, &q), WEFT_INVALID_ARGUMENT);
    ASSERT_NULL(q);
    o = qopts(WEFT_QUEUE_SIMPLE, WEFT_QUEUE_JOINABLE, 0, 0);
    ASSERT_STATUS(weft_queue_new(&o, &q), WEFT_INVALID_ARGUMENT);
    ASSERT_NULL(q);
    ASSERT_STATUS(weft_queue_new_in(NULL, NULL, &o, &q), WEFT_INVALID_ARGUMENT);
    ASSERT_NULL(q);

    q = private_queue(WEFT_QUEUE_SIMPLE, 0, 0);
    for (uint32_t n = 0; n < 20000; n++) ASSERT_OK(weft_queue_put(q, &n, sizeof n, 0));
    ASSERT_UEQ(qsize(q), 20000);
    ASSERT(!weft_queue_full(q));
    ASSERT_UEQ(unfinished(q), 0);
    ASSERT_STATUS(weft_queue_task_done(q), WEFT_INVALID_STATE);
    ASSERT_STATUS(weft_queue_join(q, 0), WEFT_INVALID_STATE);
    for (uint32_t n = 0; n < 20000; n++) {
        uint32_t v = 0;
        size_t len = 0;
        ASSERT_OK(weft_queue_get_into(q, &v, sizeof v, 0, &len));
        ASSERT_UEQ(len, sizeof v);
        ASSERT_UEQ(v, n);
    }
    weft_queue_free(q);
    fd_end(&f);
    xp_end(&g);
}

/* ---- words, buffers, empty and large items (every kind, private and shared) ---------------- */

TEST_TIMEOUT(queue_words_buffers_empty_and_large_items, 30000) {
    const qconf confs[] = {
        {"private fifo ring", false, WEFT_QUEUE_FIFO, 0, 8, 0},
        {"private fifo unbounded", false, WEFT_QUEUE_FIFO, WEFT_QUEUE_JOINABLE, 0, 0},
        {"private lifo", false, WEFT_QUEUE_LIFO, 0, 0, 0},
        {"private priority", false, WEFT_QUEUE_PRIORITY, 0, 5, 0},
        {"private simple", false, WEFT_QUEUE_SIMPLE, 0, 0, 0},
        {"shared fifo", true, WEFT_QUEUE_FIFO, WEFT_QUEUE_JOINABLE, 8, 3 * MIB},
        {"shared simple", true, WEFT_QUEUE_SIMPLE, 0, 0, 3 * MIB},
    };
    xp_guard g;
    xp_begin(&g);
    fd_guard f;
    fd_begin(&f);
    const size_t big = MIB;
    uint8_t *large = pattern(big, 7);
    uint8_t *into = malloc(big);
    ASSERT_NOT_NULL(into);
    for (size_t c = 0; c < sizeof confs / sizeof confs[0]; c++) {
        weft_queue *q = qmake(&confs[c]);
        /* Words, both ways. */
        const size_t w1 = (size_t)0xdeadbeefcafef00dull, w2 = SIZE_MAX;
        size_t w = 0;
        ASSERT_OK(weft_queue_put_word(q, w1, 0));
        ASSERT_OK(weft_queue_get_word(q, 0, &w));
        ASSERT_UEQ(w, w1);
        ASSERT_OK(weft_queue_put_word(q, w2, 0));
        weft_bytes *b = NULL;
        ASSERT_OK(weft_queue_get(q, 0, &b));
        ASSERT_UEQ(weft_bytes_len(b), sizeof(size_t));
        ASSERT(memcmp(weft_bytes_data(b), &w2, sizeof w2) == 0);
        weft_bytes_free(b);
        /* An item of a word's size put as bytes is a word. */
        const size_t w3 = 0x0102030405060708ull;
        ASSERT_OK(weft_queue_put(q, &w3, sizeof w3, 0));
        w = 0;
        ASSERT_OK(weft_queue_get_word(q, 0, &w));
        ASSERT_UEQ(w, w3);
        /* A non-word item is refused by get_word and stays. */
        const char *sizes[] = {"abc", "123456789", ""};
        for (int i = 0; i < 3; i++) {
            ASSERT_OK(weft_queue_put(q, sizes[i], strlen(sizes[i]), 0));
            w = 42;
            ASSERT_STATUS(weft_queue_get_word(q, 0, &w), WEFT_INVALID_STATE);
            ASSERT_UEQ(w, 42);
            ASSERT_STATUS(weft_queue_get_word(q, 5 * SEC, &w), WEFT_INVALID_STATE); /* not a wait */
            ASSERT_UEQ(qsize(q), 1);
            expect_s(q, sizes[i]);
        }
        /* A buffer too small: the size needed, and the item stays. */
        uint8_t *hundred = pattern(100, 3);
        ASSERT_OK(weft_queue_put(q, hundred, 100, 0));
        uint8_t small[10];
        size_t len = 0;
        ASSERT_STATUS(weft_queue_get_into(q, small, sizeof small, 0, &len), WEFT_BUFFER_TOO_SMALL);
        ASSERT_UEQ(len, 100);
        len = 0;
        ASSERT_STATUS(weft_queue_get_into(q, NULL, 0, 5 * SEC, &len), WEFT_BUFFER_TOO_SMALL);
        ASSERT_UEQ(len, 100);
        ASSERT_UEQ(qsize(q), 1);
        uint8_t exact[100];
        ASSERT_OK(weft_queue_get_into(q, exact, sizeof exact, 0, &len));
        ASSERT_UEQ(len, 100);
        check_pattern(exact, 100, 3);
        free(hundred);
        ASSERT_UEQ(qsize(q), 0);
        /* Empty items: NULL or not, into no buffer at all. */
        ASSERT_OK(weft_queue_put(q, NULL, 0, 0));
        ASSERT_OK(weft_queue_put(q, "x", 0, 0));
        ASSERT_UEQ(qsize(q), 2);
        ASSERT_OK(weft_queue_get(q, 0, &b));
        ASSERT_UEQ(weft_bytes_len(b), 0);
        weft_bytes_free(b);
        len = 99;
        ASSERT_OK(weft_queue_get_into(q, NULL, 0, 0, &len));
        ASSERT_UEQ(len, 0);
        ASSERT(weft_queue_empty(q));
        /* 1 MiB items, through get and get_into. */
        ASSERT_OK(weft_queue_put(q, large, big, 0));
        ASSERT_OK(weft_queue_get(q, 0, &b));
        ASSERT_UEQ(weft_bytes_len(b), big);
        check_pattern(weft_bytes_data(b), big, 7);
        weft_bytes_free(b);
        ASSERT_OK(weft_queue_put(q, large, big, 0));
        ASSERT_STATUS(weft_queue_get_into(q, into, big - 1, 0, &len), WEFT_BUFFER_TOO_SMALL);
        ASSERT_UEQ(len, big);
        memset(into, 0, big);
        ASSERT_OK(weft_queue_get_into(q, into, big, 0, &len));
        ASSERT_UEQ(len, big);
        check_pattern(into, big, 7);
        ASSERT(weft_queue_empty(q));
        weft_queue_free(q);
    }
    free(into);
    free(large);
    fd_end(&f);
    xp_end(&g);
}

/* ---- 2. bounds ------------------------------------------------------------------------------ */

TEST_TIMEOUT(queue_bounds_full_empty_and_timeouts, 30000) {
    const qconf confs[] = {
        {"private fifo ring", false, WEFT_QUEUE_FIFO, 0, 2, 0},
        {"private fifo joinable ring", false, WEFT_QUEUE_FIFO, WEFT_QUEUE_JOINABLE, 2, 0},
        {"private lifo", false, WEFT_QUEUE_LIFO, 0, 2, 0},
        {"private priority", false, WEFT_QUEUE_PRIORITY, WEFT_QUEUE_JOINABLE, 2, 0},
        {"shared fifo", true, WEFT_QUEUE_FIFO, 0, 2, 0},
        {"shared fifo joinable", true, WEFT_QUEUE_FIFO, WEFT_QUEUE_JOINABLE, 2, 4096},
    };
    xp_guard g;
    xp_begin(&g);
    fd_guard f;
    fd_begin(&f);
    for (size_t c = 0; c < sizeof confs / sizeof confs[0]; c++) {
        weft_queue *q = qmake(&confs[c]);
        ASSERT(weft_queue_empty(q));
        ASSERT(!weft_queue_full(q));
        ASSERT_UEQ(qsize(q), 0);
        /* Empty: Python's Empty at once, or a timeout that does not come early. */
        char buf[16];
        size_t len = 77;
        ASSERT_STATUS(weft_queue_get_into(q, buf, sizeof buf, 0, &len), WEFT_WOULD_BLOCK);
        ASSERT_UEQ(len, 77); /* out-parameters are written only on success */
        weft_bytes *b = NULL;
        ASSERT_STATUS(weft_queue_get(q, 0, &b), WEFT_WOULD_BLOCK);
        ASSERT_NULL(b);
        uint64_t t0 = runner_now_ns();
        ASSERT_STATUS(weft_queue_get(q, 50 * MS, &b), WEFT_TIMEOUT);
        ASSERT_UGE(elapsed_since(t0), 50 * MS);
        ASSERT_NULL(b);
        size_t w = 5;
        t0 = runner_now_ns();
        ASSERT_STATUS(weft_queue_get_word(q, 20 * MS, &w), WEFT_TIMEOUT);
        ASSERT_UGE(elapsed_since(t0), 20 * MS);
        ASSERT_UEQ(w, 5);
        /* Full: Python's Full at once, or a timeout that does not come early. */
        put_s(q, "a");
        ASSERT(!weft_queue_empty(q));
        ASSERT(!weft_queue_full(q));
        put_s(q, "b");
        ASSERT(weft_queue_full(q));
        ASSERT_UEQ(qsize(q), 2);
        ASSERT_STATUS(weft_queue_put(q, "c", 1, 0), WEFT_WOULD_BLOCK);
        ASSERT_STATUS(weft_queue_put_word(q, 1, 0), WEFT_WOULD_BLOCK);
        ASSERT_STATUS(weft_queue_put_priority(q, "c", 1, -100, 0), WEFT_WOULD_BLOCK);
        t0 = runner_now_ns();
        ASSERT_STATUS(weft_queue_put(q, "c", 1, 50 * MS), WEFT_TIMEOUT);
        ASSERT_UGE(elapsed_since(t0), 50 * MS);
        ASSERT_UEQ(qsize(q), 2);
        if (confs[c].flags & WEFT_QUEUE_JOINABLE) ASSERT_UEQ(unfinished(q), 2); /* refused puts count nothing */
        bool lifo = confs[c].kind == WEFT_QUEUE_LIFO;
        expect_s(q, lifo ? "b" : "a");
        ASSERT(!weft_queue_full(q));
        put_s(q, "c");
        ASSERT(weft_queue_full(q));
        expect_s(q, lifo ? "c" : "b");
        expect_s(q, lifo ? "a" : "c");
        ASSERT(weft_queue_empty(q));
        ASSERT_STATUS(weft_queue_get_into(q, buf, sizeof buf, 0, &len), WEFT_WOULD_BLOCK);
        weft_queue_free(q);
    }

    /* A shared queue is also bounded by its bytes: a 64-byte ring holds one 56-byte item. */
    weft_queue *q = shared_queue(WEFT_QUEUE_FIFO, 0, 0, 64);
    uint8_t *item = pattern(56, 1);
    ASSERT_OK(weft_queue_put(q, item, 56, 0));
    ASSERT_STATUS(weft_queue_put(q, "x", 1, 0), WEFT_WOULD_BLOCK);
    uint64_t t0 = runner_now_ns();
    ASSERT_STATUS(weft_queue_put(q, NULL, 0, 30 * MS), WEFT_TIMEOUT);
    ASSERT_UGE(elapsed_since(t0), 30 * MS);
    ASSERT(!weft_queue_full(q)); /* full() is about maxsize */
    ASSERT_UEQ(qsize(q), 1);
    uint8_t got[64];
    size_t len = 0;
    ASSERT_OK(weft_queue_get_into(q, got, sizeof got, 0, &len));
    ASSERT_UEQ(len, 56);
    check_pattern(got, 56, 1);
    /* Four 8-byte items (16-byte records) fill the ring where the big one was; not even an
     * empty item (an 8-byte record) fits after them. */
    ASSERT_OK(weft_queue_put(q, "12345678", 8, 0));
    ASSERT_OK(weft_queue_put(q, "12345678", 8, 0));
    ASSERT_OK(weft_queue_put(q, "12345678", 8, 0));
    ASSERT_OK(weft_queue_put(q, "12345678", 8, 0));
    ASSERT_STATUS(weft_queue_put(q, "", 0, 0), WEFT_WOULD_BLOCK);
    ASSERT_UEQ(qsize(q), 4);
    for (int i = 0; i < 4; i++) expect_s(q, "12345678");
    free(item);
    weft_queue_free(q);
    fd_end(&f);
    xp_end(&g);
}

TEST_TIMEOUT(queue_blocked_putters_and_getters_are_released, 30000) {
    const qconf confs[] = {
        {"private fifo ring", false, WEFT_QUEUE_FIFO, 0, 1, 0},
        {"private fifo locked", false, WEFT_QUEUE_FIFO, 0, 70000, 0},
        {"private lifo", false, WEFT_QUEUE_LIFO, WEFT_QUEUE_JOINABLE, 1, 0},
        {"private priority", false, WEFT_QUEUE_PRIORITY, 0, 1, 0},
        {"shared fifo", true, WEFT_QUEUE_FIFO, 0, 1, 0},
        {"shared fifo joinable", true, WEFT_QUEUE_FIFO, WEFT_QUEUE_JOINABLE, 1, 0},
    };
    xp_guard g;
    xp_begin(&g);
    fd_guard f;
    fd_begin(&f);
    for (size_t c = 0; c < sizeof confs / sizeof confs[0]; c++) {
        weft_queue *q = qmake(&confs[c]);
        waiter w1, w2;
        if (confs[c].maxsize == 1) {
            /* A putter blocked on a full queue goes in when a get makes room. */
            put_s(q, "first");
            start_waiter(&w1, q, OP_PUT, "second");
            still_blocked(&w1);
            ASSERT_UEQ(qsize(q), 1);
            expect_s(q, "first");
            ASSERT_OK(end_waiter(&w1));
            ASSERT_UEQ(qsize(q), 1);
            expect_s(q, "second");
        }
        /* A getter blocked on an empty queue takes the item a put brings. */
        start_waiter(&w1, q, OP_GET, NULL);
        still_blocked(&w1);
        put_s(q, "third");
        ASSERT_OK(end_waiter(&w1));
        ASSERT_UEQ(w1.got_len, 5);
        ASSERT(memcmp(w1.got, "third", 5) == 0);
        ASSERT_UEQ(qsize(q), 0);
        /* Two getters, two puts: each gets one. */
        start_waiter(&w1, q, OP_GET, NULL);
        start_waiter(&w2, q, OP_GET, NULL);
        put_s(q, "x");
        if (confs[c].maxsize == 1) {
            /* Wait until a getter took it before the second put. */
            uint64_t deadline = runner_now_ns() + 5 * SEC;
            while (!atomic_load(&w1.finished) && !atomic_load(&w2.finished)) {
                ASSERT(runner_now_ns() < deadline);
                runner_sleep_ms(1);
            }
            ASSERT_OK(weft_queue_put(q, "y", 1, 5 * SEC));
        } else {
            put_s(q, "y");
        }
        ASSERT_OK(end_waiter(&w1));
        ASSERT_OK(end_waiter(&w2));
        ASSERT_UEQ(w1.got_len, 1);
        ASSERT_UEQ(w2.got_len, 1);
        ASSERT(w1.got[0] != w2.got[0]);
        ASSERT(w1.got[0] == 'x' || w1.got[0] == 'y');
        ASSERT(w2.got[0] == 'x' || w2.got[0] == 'y');
        ASSERT(weft_queue_empty(q));
        weft_queue_free(q);
    }
    fd_end(&f);
    xp_end(&g);
}

/* Checks a get_many buffer: `count` items packed as (u64 length, bytes), equal to `want`. */
static void check_packed(const uint8_t *p, size_t total, size_t count, const char *const *want) {
    size_t off = 0;
    for (size_t i = 0; i < count; i++) {
        uint64_t n;
        ASSERT(off + 8 <= total);
        memcpy(&n, p + off, 8);
        off += 8;
        ASSERT_UEQ(n, strlen(want[i]));
        ASSERT(off + n <= total);
        if (n) ASSERT(memcmp(p + off, want[i], n) == 0);
        off += n;
    }
    ASSERT_UEQ(off, total);
}

TEST_TIMEOUT(queue_put_many_and_get_many, 30000) {
    const qconf confs[] = {
        {"private fifo ring", false, WEFT_QUEUE_FIFO, 0, 3, 0},
        {"private fifo locked", false, WEFT_QUEUE_FIFO, WEFT_QUEUE_JOINABLE, 3, 0}, /* see below */
        {"private priority", false, WEFT_QUEUE_PRIORITY, 0, 3, 0},
        {"shared fifo", true, WEFT_QUEUE_FIFO, 0, 3, 0},
        {"shared fifo joinable", true, WEFT_QUEUE_FIFO, WEFT_QUEUE_JOINABLE, 3, 1024},
    };
    xp_guard g;
    xp_begin(&g);
    fd_guard f;
    fd_begin(&f);
    for (size_t c = 0; c < sizeof confs / sizeof confs[0]; c++) {
        weft_queue *q = qmake(&confs[c]);
        const char *strs[] = {"a", "", "ccc", "dddd", "eeeee"};
        const void *items[5];
        size_t lens[5];
        for (int i = 0; i < 5; i++) {
            items[i] = strs[i];
            lens[i] = strlen(strs[i]);
        }
        items[1] = NULL; /* an empty item may be NULL */
        /* Partial: three go in, then Full. */
        size_t done = 99;
        ASSERT_STATUS(weft_queue_put_many(q, items, lens, 5, 0, &done), WEFT_WOULD_BLOCK);
        ASSERT_UEQ(done, 3);
        ASSERT_UEQ(qsize(q), 3);
        if (confs[c].flags & WEFT_QUEUE_JOINABLE) ASSERT_UEQ(unfinished(q), 3);
        done = 99;
        uint64_t t0 = runner_now_ns();
        ASSERT_STATUS(weft_queue_put_many(q, items + 3, lens + 3, 2, 50 * MS, &done), WEFT_TIMEOUT);
        ASSERT_UGE(elapsed_since(t0), 50 * MS);
        ASSERT_UEQ(done, 0);
        /* get_many takes what is there, up to max, packed. */
        weft_bytes *b = NULL;
        size_t count = 99;
        ASSERT_OK(weft_queue_get_many(q, 10, 0, &b, &count));
        ASSERT_UEQ(count, 3);
        check_packed(weft_bytes_data(b), weft_bytes_len(b), 3, strs);
        weft_bytes_free(b);
        b = NULL;
        count = 99;
        ASSERT_STATUS(weft_queue_get_many(q, 10, 0, &b, &count), WEFT_WOULD_BLOCK);
        ASSERT_NULL(b);
        ASSERT_UEQ(count, 99);
        t0 = runner_now_ns();
        ASSERT_STATUS(weft_queue_get_many(q, 10, 30 * MS, &b, &count), WEFT_TIMEOUT);
        ASSERT_UGE(elapsed_since(t0), 30 * MS);
        ASSERT_STATUS(weft_queue_get_many(q, 0, 0, &b, &count), WEFT_INVALID_ARGUMENT);
        ASSERT_STATUS(weft_queue_get_many(q, 1, 0, NULL, &count), WEFT_NULL_ARGUMENT);
        ASSERT_STATUS(weft_queue_get_many(q, 1, 0, &b, NULL), WEFT_NULL_ARGUMENT);
        /* Arguments. */
        done = 99;
        ASSERT_OK(weft_queue_put_many(q, NULL, NULL, 0, 0, &done));
        ASSERT_UEQ(done, 0);
        ASSERT_STATUS(weft_queue_put_many(q, NULL, lens, 2, 0, &done), WEFT_NULL_ARGUMENT);
        ASSERT_STATUS(weft_queue_put_many(q, items, NULL, 2, 0, &done), WEFT_NULL_ARGUMENT);
        const void *bad[2] = {"ok", NULL};
        size_t bad_lens[2] = {2, 4};
        ASSERT_STATUS(weft_queue_put_many(NULL, bad, bad_lens, 2, 0, &done), WEFT_NULL_ARGUMENT);
        weft_status st = weft_queue_put_many(q, bad, bad_lens, 2, 0, &done);
        ASSERT_STATUS(st, WEFT_NULL_ARGUMENT);
        /* (Whether "ok" went in first is not specified; take it if it did.) */
        while (qsize(q) > 0) expect_s(q, "ok");
        /* A NULL `done` is allowed; max 1 takes one. */
        ASSERT_OK(weft_queue_put_many(q, items + 3, lens + 3, 2, 0, NULL));
        ASSERT_OK(weft_queue_get_many(q, 1, 0, &b, &count));
        ASSERT_UEQ(count, 1);
        check_packed(weft_bytes_data(b), weft_bytes_len(b), 1, strs + 3);
        weft_bytes_free(b);
        ASSERT_OK(weft_queue_get_many(q, 5, 0, &b, &count));
        ASSERT_UEQ(count, 1);
        check_packed(weft_bytes_data(b), weft_bytes_len(b), 1, strs + 4);
        weft_bytes_free(b);
        /* get_many waits for the first item, then takes no more than are there. */
        waiter w;
        start_waiter(&w, q, OP_GET_MANY, NULL);
        still_blocked(&w);
        ASSERT_OK(weft_queue_put_many(q, items + 2, lens + 2, 2, WEFT_FOREVER, &done));
        ASSERT_UEQ(done, 2);
        ASSERT_OK(end_waiter(&w));
        ASSERT(w.count >= 1 && w.count <= 2);
        check_packed((const uint8_t *)w.got, w.got_len, w.count, strs + 2);
        if (w.count == 1) expect_s(q, "dddd");
        ASSERT(weft_queue_empty(q));
        /* Shut down: put_many puts nothing; get_many drains, then WEFT_CLOSED. */
        put_s(q, "last");
        ASSERT_OK(weft_queue_shutdown(q, false));
        done = 99;
        ASSERT_STATUS(weft_queue_put_many(q, items, lens, 2, WEFT_FOREVER, &done), WEFT_CLOSED);
        ASSERT_UEQ(done, 0);
        ASSERT_OK(weft_queue_get_many(q, 5, WEFT_FOREVER, &b, &count));
        ASSERT_UEQ(count, 1);
        const char *last[] = {"last"};
        check_packed(weft_bytes_data(b), weft_bytes_len(b), 1, last);
        weft_bytes_free(b);
        ASSERT_STATUS(weft_queue_get_many(q, 5, WEFT_FOREVER, &b, &count), WEFT_CLOSED);
        weft_queue_free(q);
    }
    /* Many at once on an unbounded queue: one call, every item, in order. */
    weft_queue *q = private_queue(WEFT_QUEUE_FIFO, 0, 0);
    const void *items[1000];
    size_t lens[1000];
    uint32_t nums[1000];
    for (uint32_t i = 0; i < 1000; i++) {
        nums[i] = i;
        items[i] = &nums[i];
        lens[i] = 4;
    }
    size_t done = 0;
    ASSERT_OK(weft_queue_put_many(q, items, lens, 1000, 0, &done));
    ASSERT_UEQ(done, 1000);
    weft_bytes *b = NULL;
    size_t count = 0;
    ASSERT_OK(weft_queue_get_many(q, 600, 0, &b, &count));
    ASSERT_UEQ(count, 600);
    ASSERT_UEQ(weft_bytes_len(b), 600 * 12);
    for (uint32_t i = 0; i < 600; i++) {
        uint64_t n;
        uint32_t v;
        memcpy(&n, (const uint8_t *)weft_bytes_data(b) + i * 12, 8);
        memcpy(&v, (const uint8_t *)weft_bytes_data(b) + i * 12 + 8, 4);
        ASSERT_UEQ(n, 4);
        ASSERT_UEQ(v, i);
    }
    weft_bytes_free(b);
    ASSERT_UEQ(qsize(q), 400);
    weft_queue_free(q);
    fd_end(&f);
    xp_end(&g);
}

/* ---- 3. joinable queues ---------------------------------------------------------------------- */

TEST_TIMEOUT(queue_joinable_task_done_and_join, 30000) {
    const qconf confs[] = {
        {"private fifo ring", false, WEFT_QUEUE_FIFO, WEFT_QUEUE_JOINABLE, 4, 0},
        {"private fifo unbounded", false, WEFT_QUEUE_FIFO, WEFT_QUEUE_JOINABLE, 0, 0},
        {"private lifo", false, WEFT_QUEUE_LIFO, WEFT_QUEUE_JOINABLE, 0, 0},
        {"private priority", false, WEFT_QUEUE_PRIORITY, WEFT_QUEUE_JOINABLE, 4, 0},
        {"shared fifo", true, WEFT_QUEUE_FIFO, WEFT_QUEUE_JOINABLE, 4, 0},
        {"shared fifo unbounded", true, WEFT_QUEUE_FIFO, WEFT_QUEUE_JOINABLE, 0, 4096},
    };
    xp_guard g;
    xp_begin(&g);
    fd_guard f;
    fd_begin(&f);
    for (size_t c = 0; c < sizeof confs / sizeof confs[0]; c++) {
        weft_queue *q = qmake(&confs[c]);
        ASSERT_UEQ(unfinished(q), 0);
        ASSERT_OK(weft_queue_join(q, 0));
        ASSERT_OK(weft_queue_join(q, WEFT_FOREVER));
        ASSERT_STATUS(weft_queue_task_done(q), WEFT_INVALID_STATE);
        put_s(q, "1");
        put_s(q, "2");
        ASSERT_OK(weft_queue_put_word(q, 3, 0));
        ASSERT_UEQ(unfinished(q), 3);
        ASSERT_STATUS(weft_queue_join(q, 0), WEFT_WOULD_BLOCK);
        uint64_t t0 = runner_now_ns();
        ASSERT_STATUS(weft_queue_join(q, 50 * MS), WEFT_TIMEOUT);
        ASSERT_UGE(elapsed_since(t0), 50 * MS);
        /* A get does not finish a task; task_done does (even before the get, as in Python). */
        weft_bytes *b = NULL;
        ASSERT_OK(weft_queue_get(q, 0, &b));
        weft_bytes_free(b);
        ASSERT_UEQ(unfinished(q), 3);
        ASSERT_OK(weft_queue_task_done(q));
        ASSERT_UEQ(unfinished(q), 2);
        ASSERT_OK(weft_queue_task_done(q));
        ASSERT_OK(weft_queue_task_done(q));
        ASSERT_UEQ(unfinished(q), 0);
        ASSERT_OK(weft_queue_join(q, 0));
        /* One too many: Python's ValueError; nothing changes. */
        ASSERT_STATUS(weft_queue_task_done(q), WEFT_INVALID_STATE);
        ASSERT_UEQ(unfinished(q), 0);
        ASSERT_UEQ(qsize(q), 2);
        ASSERT_OK(weft_queue_get(q, 0, &b));
        weft_bytes_free(b);
        ASSERT_OK(weft_queue_get(q, 0, &b));
        weft_bytes_free(b);
        ASSERT_STATUS(weft_queue_task_done(q), WEFT_INVALID_STATE);
        ASSERT_OK(weft_queue_join(q, 0));

        /* Joiners blocked in join are released by the last task_done, not before. */
        put_s(q, "a");
        put_s(q, "b");
        size_t before = unfinished(q);
        ASSERT_UEQ(before, 2);
        waiter j1, j2;
        start_waiter(&j1, q, OP_JOIN, NULL);
        start_waiter(&j2, q, OP_JOIN, NULL);
        ASSERT_OK(weft_queue_get(q, 0, &b));
        weft_bytes_free(b);
        ASSERT_OK(weft_queue_task_done(q));
        still_blocked(&j1);
        ASSERT_EQ(atomic_load(&j2.finished), 0);
        ASSERT_OK(weft_queue_get(q, 0, &b));
        weft_bytes_free(b);
        ASSERT_OK(weft_queue_task_done(q));
        ASSERT_OK(end_waiter(&j1));
        ASSERT_OK(end_waiter(&j2));
        ASSERT_UEQ(unfinished(q), 0);
        weft_queue_free(q);
    }
    fd_end(&f);
    xp_end(&g);
}

static void check_not_joinable(const qconf *conf) {
    weft_queue *q = qmake(conf);
    ASSERT_UEQ(unfinished(q), 0);
    ASSERT_STATUS(weft_queue_task_done(q), WEFT_INVALID_STATE);
    ASSERT_STATUS(weft_queue_join(q, 0), WEFT_INVALID_STATE);
    put_s(q, "x");
    ASSERT_UEQ(unfinished(q), 0);
    expect_s(q, "x");
    ASSERT_STATUS(weft_queue_task_done(q), WEFT_INVALID_STATE);
    /* Refused at once, not after waiting. */
    uint64_t t0 = runner_now_ns();
    ASSERT_STATUS(weft_queue_join(q, WEFT_FOREVER), WEFT_INVALID_STATE);
    ASSERT(elapsed_since(t0) < 5 * SEC);
    weft_queue_free(q);
}

TEST(queue_not_joinable_refuses_task_done_and_join) {
    const qconf confs[] = {
        {"private fifo ring", false, WEFT_QUEUE_FIFO, 0, 4, 0},
        {"private fifo unbounded", false, WEFT_QUEUE_FIFO, 0, 0, 0},
        {"private lifo", false, WEFT_QUEUE_LIFO, 0, 0, 0},
        {"private priority", false, WEFT_QUEUE_PRIORITY, 0, 0, 0},
        {"private simple", false, WEFT_QUEUE_SIMPLE, 0, 0, 0},
    };
    for (size_t c = 0; c < sizeof confs / sizeof confs[0]; c++) check_not_joinable(&confs[c]);
}

/* The C API documents WEFT_INVALID_STATE for task_done/join on a queue that is not joinable,
 * private or shared alike. */
TEST(queue_shared_not_joinable_refuses_task_done_and_join) {
    xp_guard g;
    xp_begin(&g);
    const qconf confs[] = {
        {"shared fifo", true, WEFT_QUEUE_FIFO, 0, 4, 0},
        {"shared simple", true, WEFT_QUEUE_SIMPLE, 0, 0, 0},
    };
    for (size_t c = 0; c < sizeof confs / sizeof confs[0]; c++) check_not_joinable(&confs[c]);
    xp_end(&g);
}

/* ---- 4. shutdown ------------------------------------------------------------------------------ */

TEST_TIMEOUT(queue_shutdown_drains_then_closed, 30000) {
    const qconf confs[] = {
        {"private fifo ring", false, WEFT_QUEUE_FIFO, WEFT_QUEUE_JOINABLE, 2, 0},
        {"private fifo locked", false, WEFT_QUEUE_FIFO, WEFT_QUEUE_JOINABLE, 0, 0},
        {"private lifo", false, WEFT_QUEUE_LIFO, WEFT_QUEUE_JOINABLE, 2, 0},
        {"private priority", false, WEFT_QUEUE_PRIORITY, WEFT_QUEUE_JOINABLE, 2, 0},
        {"shared fifo", true, WEFT_QUEUE_FIFO, WEFT_QUEUE_JOINABLE, 2, 0},
        {"shared fifo by bytes", true, WEFT_QUEUE_FIFO, WEFT_QUEUE_JOINABLE, 0, 64},
    };
    xp_guard g;
    xp_begin(&g);
    fd_guard f;
    fd_begin(&f);
    for (size_t c = 0; c < sizeof confs / sizeof confs[0]; c++) {
        weft_queue *q = qmake(&confs[c]);
        weft_queue *empty = qmake(&confs[c]);
        bool lifo = confs[c].kind == WEFT_QUEUE_LIFO;
        bool bounded = confs[c].maxsize != 0 || confs[c].max_bytes != 0;
        ASSERT(!weft_queue_is_shut_down(q));
        /* Two items: full when bounded (the 64-byte ring holds two 32-byte records). */
        const char *item_a = "aaaaaaaaaaaaaaaaaaaaaa", *item_b = "bbbbbbbbbbbbbbbbbbbbbb"; /* 22 bytes */
        put_s(q, item_a);
        put_s(q, item_b);
        waiter putter, joiner, g1, g2;
        if (bounded) {
            ASSERT_STATUS(weft_queue_put(q, "c", 1, 0), WEFT_WOULD_BLOCK);
            start_waiter(&putter, q, OP_PUT, "c");
        }
        start_waiter(&joiner, q, OP_JOIN, NULL);
        start_waiter(&g1, empty, OP_GET, NULL);
        start_waiter(&g2, empty, OP_GET, NULL);

        ASSERT_OK(weft_queue_shutdown(q, false));
        ASSERT(weft_queue_is_shut_down(q));
        if (bounded) ASSERT_STATUS(end_waiter(&putter), WEFT_CLOSED);
        ASSERT_STATUS(weft_queue_put(q, "d", 1, 0), WEFT_CLOSED);
        ASSERT_STATUS(weft_queue_put(q, "d", 1, WEFT_FOREVER), WEFT_CLOSED);
        ASSERT_STATUS(weft_queue_put_word(q, 4, 0), WEFT_CLOSED);
        ASSERT_STATUS(weft_queue_put_priority(q, "d", 1, 1, 0), WEFT_CLOSED);
        /* The items stay, the tasks too; the joiner keeps waiting. */
        ASSERT_UEQ(qsize(q), 2);
        ASSERT_UEQ(unfinished(q), 2);
        still_blocked(&joiner);
        expect_s(q, lifo ? item_b : item_a);
        expect_s(q, lifo ? item_a : item_b);
        /* Drained: WEFT_CLOSED, at once, whatever the timeout. */
        char buf[8];
        size_t len = 0, w = 0;
        weft_bytes *b = NULL;
        ASSERT_STATUS(weft_queue_get_into(q, buf, sizeof buf, 0, &len), WEFT_CLOSED);
        ASSERT_STATUS(weft_queue_get(q, WEFT_FOREVER, &b), WEFT_CLOSED);
        ASSERT_NULL(b);
        ASSERT_STATUS(weft_queue_get_word(q, 10 * SEC, &w), WEFT_CLOSED);
        ASSERT(weft_queue_empty(q));
        still_blocked(&joiner);
        ASSERT_OK(weft_queue_task_done(q));
        ASSERT_OK(weft_queue_task_done(q));
        ASSERT_OK(end_waiter(&joiner));
        ASSERT_STATUS(weft_queue_task_done(q), WEFT_INVALID_STATE);
        /* Again, graceful or immediate: harmless. */
        ASSERT_OK(weft_queue_shutdown(q, false));
        ASSERT_OK(weft_queue_shutdown(q, true));
        ASSERT(weft_queue_is_shut_down(q));
        ASSERT_STATUS(weft_queue_get(q, 0, &b), WEFT_CLOSED);

        /* Getters blocked on an empty queue wake with WEFT_CLOSED. */
        still_blocked(&g1);
        ASSERT_OK(weft_queue_shutdown(empty, false));
        ASSERT_STATUS(end_waiter(&g1), WEFT_CLOSED);
        ASSERT_STATUS(end_waiter(&g2), WEFT_CLOSED);
        ASSERT_STATUS(weft_queue_get(empty, 0, &b), WEFT_CLOSED);
        weft_queue_free(empty);
        weft_queue_free(q);
    }
    ASSERT(!weft_queue_is_shut_down(NULL));
    fd_end(&f);
    xp_end(&g);
}

TEST_TIMEOUT(queue_shutdown_immediate_discards_and_releases, 30000) {
    const qconf confs[] = {
        {"private fifo ring", false, WEFT_QUEUE_FIFO, WEFT_QUEUE_JOINABLE, 3, 0},
        {"private fifo locked", false, WEFT_QUEUE_FIFO, WEFT_QUEUE_JOINABLE, 70000, 0},
        {"private lifo", false, WEFT_QUEUE_LIFO, WEFT_QUEUE_JOINABLE, 3, 0},
        {"private priority", false, WEFT_QUEUE_PRIORITY, WEFT_QUEUE_JOINABLE, 3, 0},
        {"shared fifo", true, WEFT_QUEUE_FIFO, WEFT_QUEUE_JOINABLE, 3, 0},
    };
    xp_guard g;
    xp_begin(&g);
    fd_guard f;
    fd_begin(&f);
    for (size_t c = 0; c < sizeof confs / sizeof confs[0]; c++) {
        weft_queue *q = qmake(&confs[c]);
        bool small = confs[c].maxsize == 3;
        put_s(q, "a");
        put_s(q, "b");
        put_s(q, "c");
        weft_bytes *b = NULL;
        ASSERT_OK(weft_queue_get(q, 0, &b)); /* taken, not done */
        weft_bytes_free(b);
        put_s(q, "d");
        ASSERT_UEQ(qsize(q), 3);
        ASSERT_UEQ(unfinished(q), 4);
        waiter putter, joiner, g1, g2;
        if (small) start_waiter(&putter, q, OP_PUT, "e");
        start_waiter(&joiner, q, OP_JOIN, NULL);
        weft_queue *empty = qmake(&confs[c]);
        start_waiter(&g1, empty, OP_GET, NULL);
        start_waiter(&g2, empty, OP_GET, NULL);

        ASSERT_OK(weft_queue_shutdown(q, true));
        ASSERT(weft_queue_is_shut_down(q));
        if (small) ASSERT_STATUS(end_waiter(&putter), WEFT_CLOSED);
        /* The three items left are gone, each counted done; the one taken is not. */
        ASSERT_UEQ(qsize(q), 0);
        ASSERT(weft_queue_empty(q));
        ASSERT(!weft_queue_full(q));
        ASSERT_UEQ(unfinished(q), 1);
        ASSERT_STATUS(weft_queue_get(q, 0, &b), WEFT_CLOSED);
        ASSERT_STATUS(weft_queue_get(q, WEFT_FOREVER, &b), WEFT_CLOSED);
        ASSERT_STATUS(weft_queue_put(q, "f", 1, 0), WEFT_CLOSED);
        still_blocked(&joiner);
        ASSERT_OK(weft_queue_task_done(q));
        ASSERT_OK(end_waiter(&joiner));
        ASSERT_UEQ(unfinished(q), 0);
        ASSERT_STATUS(weft_queue_task_done(q), WEFT_INVALID_STATE);
        ASSERT_OK(weft_queue_join(q, 0));

        ASSERT_OK(weft_queue_shutdown(empty, true));
        ASSERT_STATUS(end_waiter(&g1), WEFT_CLOSED);
        ASSERT_STATUS(end_waiter(&g2), WEFT_CLOSED);
        weft_queue_free(empty);
        weft_queue_free(q);

        /* A joiner waiting for items nobody took: the discard itself releases it. */
        q = qmake(&confs[c]);
        put_s(q, "x");
        put_s(q, "y");
        start_waiter(&joiner, q, OP_JOIN, NULL);
        ASSERT_OK(weft_queue_shutdown(q, true));
        ASSERT_OK(end_waiter(&joiner));
        ASSERT_UEQ(unfinished(q), 0);
        weft_queue_free(q);

        /* Graceful first, immediate later: the later one still discards. */
        q = qmake(&confs[c]);
        put_s(q, "x");
        put_s(q, "y");
        ASSERT_OK(weft_queue_shutdown(q, false));
        ASSERT_UEQ(qsize(q), 2);
        ASSERT_OK(weft_queue_shutdown(q, true));
        ASSERT_UEQ(qsize(q), 0);
        ASSERT_UEQ(unfinished(q), 0);
        ASSERT_STATUS(weft_queue_get(q, 0, &b), WEFT_CLOSED);
        weft_queue_free(q);
    }
    /* Not joinable: the items are discarded just the same. */
    weft_queue *q = private_queue(WEFT_QUEUE_SIMPLE, 0, 0);
    put_s(q, "x");
    ASSERT_OK(weft_queue_shutdown(q, true));
    ASSERT_UEQ(qsize(q), 0);
    weft_bytes *b = NULL;
    ASSERT_STATUS(weft_queue_get(q, 0, &b), WEFT_CLOSED);
    weft_queue_free(q);
    fd_end(&f);
    xp_end(&g);
}

/* ---- 5. the pollable descriptor ---------------------------------------------------------------- */

TEST(queue_fd_private_follows_the_queue) {
    const qconf confs[] = {
        {"private fifo ring", false, WEFT_QUEUE_FIFO, 0, 4, 0},
        {"private fifo unbounded", false, WEFT_QUEUE_FIFO, 0, 0, 0},
        {"private lifo", false, WEFT_QUEUE_LIFO, 0, 0, 0},
        {"private priority", false, WEFT_QUEUE_PRIORITY, 0, 0, 0},
        {"private simple", false, WEFT_QUEUE_SIMPLE, 0, 0, 0},
    };
    fd_guard f;
    fd_begin(&f);
    for (size_t c = 0; c < sizeof confs / sizeof confs[0]; c++) {
        weft_queue *q = qmake(&confs[c]);
        /* An item put before the descriptor exists makes it readable from the start. */
        put_s(q, "early");
        int fd = -1, fd2 = -1;
        ASSERT_OK(weft_queue_fd(q, &fd));
        ASSERT(fd >= 0);
        ASSERT(fcntl(fd, F_GETFD) & FD_CLOEXEC);
        ASSERT_OK(weft_queue_fd(q, &fd2));
        ASSERT_EQ(fd2, fd);
        ASSERT_EQ(fd_count(), f.fds + 1);
        ASSERT(fd_readable(fd, 0));
        expect_s(q, "early");
        ASSERT(!fd_readable(fd, 0));
        put_s(q, "1");
        ASSERT(fd_readable(fd, 0));
        ASSERT_OK(weft_queue_put_word(q, 2, 0));
        ASSERT(fd_readable(fd, 0));
        weft_bytes *b = NULL;
        ASSERT_OK(weft_queue_get(q, 0, &b));
        ASSERT_UEQ(weft_bytes_len(b), confs[c].kind == WEFT_QUEUE_LIFO ? sizeof(size_t) : 1);
        weft_bytes_free(b);
        ASSERT(fd_readable(fd, 0)); /* one left */
        ASSERT_OK(weft_queue_get(q, 0, &b));
        weft_bytes_free(b);
        ASSERT(!fd_readable(fd, 0));
        /* put_many / get_many. */
        const void *items[2] = {"x", "y"};
        size_t lens[2] = {1, 1}, done = 0, count = 0;
        ASSERT_OK(weft_queue_put_many(q, items, lens, 2, 0, &done));
        ASSERT(fd_readable(fd, 0));
        ASSERT_OK(weft_queue_get_many(q, 10, 0, &b, &count));
        ASSERT_UEQ(count, 2);
        weft_bytes_free(b);
        ASSERT(!fd_readable(fd, 0));
        /* A poller blocked on the descriptor wakes for a put from another thread. */
        ASSERT(!fd_readable(fd, 20));
        /* Shut down: readable for good, so that a poller finds WEFT_CLOSED. */
        ASSERT_OK(weft_queue_shutdown(q, false));
        ASSERT(fd_readable(fd, 0));
        ASSERT_STATUS(weft_queue_get(q, 0, &b), WEFT_CLOSED);
        ASSERT(fd_readable(fd, 0));
        weft_queue_free(q);
        ASSERT_EQ(fd_count(), f.fds); /* the queue closed it */
    }
    /* Immediate shutdown of a non-empty queue: still readable (closed). */
    weft_queue *q = private_queue(WEFT_QUEUE_FIFO, 0, 2);
    int fd = -1;
    ASSERT_OK(weft_queue_fd(q, &fd));
    ASSERT(!fd_readable(fd, 0));
    put_s(q, "z");
    ASSERT_OK(weft_queue_shutdown(q, true));
    ASSERT(fd_readable(fd, 0));
    weft_queue_free(q);
    fd_end(&f);
}

typedef struct {
    char token[WEFT_TOKEN_MAX];
    size_t token_len;
} token_box;

static void child_puts_hello(void *arg) {
    token_box *t = arg;
    weft_queue *q = NULL;
    ASSERT_OK(weft_queue_from_token(t->token, t->token_len, &q));
    ASSERT_OK(weft_queue_put(q, "hello", 5, 5 * SEC));
    weft_queue_free(q);
}

TEST_TIMEOUT(queue_fd_shared_follows_the_queue_across_processes, 30000) {
    xp_guard g;
    xp_begin(&g);
    fd_guard f;
    fd_begin(&f);
    weft_queue *q = shared_queue(WEFT_QUEUE_FIFO, WEFT_QUEUE_JOINABLE, 0, 0);
    token_box *t = xp_shared(sizeof *t);
    ASSERT_OK(weft_queue_token(q, t->token, sizeof t->token, &t->token_len));
    weft_queue *other = NULL;
    ASSERT_OK(weft_queue_from_token(t->token, t->token_len, &other));

    int fd = -1, fd2 = -1, ofd = -1;
    ASSERT_OK(weft_queue_fd(q, &fd));
    ASSERT(fd >= 0);
    ASSERT(fcntl(fd, F_GETFD) & FD_CLOEXEC);
    ASSERT_OK(weft_queue_fd(q, &fd2));
    ASSERT_EQ(fd, fd2);
    ASSERT_OK(weft_queue_fd(other, &ofd));
    ASSERT(ofd >= 0 && ofd != fd);
    ASSERT(!fd_readable(fd, 0));
    ASSERT(!fd_readable(ofd, 0));
    /* A put through one handle makes both handles' descriptors readable (asynchronously). */
    put_s(q, "a");
    ASSERT(fd_readable(fd, 5000));
    ASSERT(fd_readable(ofd, 5000));
    put_s(other, "b");
    ASSERT(fd_readable(fd, 0));
    expect_s(other, "a");
    ASSERT(fd_readable(fd, 0)); /* "b" is left ... */
    runner_sleep_ms(20);
    ASSERT(fd_readable(fd, 0)); /* ... and stays readable */
    expect_s(q, "b");
    ASSERT(fd_becomes_unreadable(fd, 5000));
    ASSERT(fd_becomes_unreadable(ofd, 5000));
    /* A put by another process. */
    xp_wait_ok(xp_fork(child_puts_hello, t));
    ASSERT(fd_readable(fd, 5000));
    ASSERT(fd_readable(ofd, 5000));
    expect_s(q, "hello");
    ASSERT(fd_becomes_unreadable(fd, 5000));
    /* A process blocked in poll is woken by a put of another process. */
    pid_t child = xp_fork(child_puts_hello, t);
    ASSERT(fd_readable(fd, 10000));
    xp_wait_ok(child);
    expect_s(q, "hello");
    ASSERT(fd_becomes_unreadable(fd, 5000));
    /* Shut down (by the other handle): readable although empty. */
    ASSERT_OK(weft_queue_shutdown(other, false));
    ASSERT(fd_readable(fd, 5000));
    ASSERT(fd_readable(ofd, 5000));
    runner_sleep_ms(20);
    ASSERT(fd_readable(fd, 0));
    weft_bytes *b = NULL;
    ASSERT_STATUS(weft_queue_get(q, 0, &b), WEFT_CLOSED);
    weft_queue_free(other);
    weft_queue_free(q);
    /* Each handle's watcher ends by itself shortly after its handle is freed. */
    wait_fd_count(f.fds);
    fd_end(&f);
    xp_end(&g);
}

/* ---- 6. misuse ------------------------------------------------------------------------------ */

TEST(queue_null_and_invalid_arguments) {
    xp_guard g;
    xp_begin(&g);
    fd_guard f;
    fd_begin(&f);
    weft_queue *const sentinel = (weft_queue *)(uintptr_t)0x42;
    weft_queue *q = sentinel;
    /* Creation. */
    ASSERT_STATUS(weft_queue_new(NULL, NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_queue_new_in(NULL, NULL, NULL, NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_queue_open(NULL, NULL, &q), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_queue_open(NULL, "x", NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_queue_from_token(NULL, 10, &q), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_queue_from_token("garbage-token", 13, NULL), WEFT_NULL_ARGUMENT);
    ASSERT_PTR_EQ(q, sentinel);
    weft_queue_options o = qopts(WEFT_QUEUE_FIFO, 0, 0, 0);
    for (int i = 0; i < 4; i++) {
        o.reserved[i] = 1;
        ASSERT_STATUS(weft_queue_new(&o, &q), WEFT_INVALID_ARGUMENT);
        ASSERT_STATUS(weft_queue_new_in(NULL, NULL, &o, &q), WEFT_INVALID_ARGUMENT);
        o.reserved[i] = 0;
    }
    o.kind = 4;
    ASSERT_STATUS(weft_queue_new(&o, &q), WEFT_INVALID_ARGUMENT);
    ASSERT_CONTAINS(weft_last_error_message(), "kind");
    o.kind = UINT32_MAX;
    ASSERT_STATUS(weft_queue_new(&o, &q), WEFT_INVALID_ARGUMENT);
    ASSERT_STATUS(weft_queue_new_in(NULL, NULL, &o, &q), WEFT_INVALID_ARGUMENT);
    o.kind = WEFT_QUEUE_FIFO;
    o.flags = 2;
    ASSERT_STATUS(weft_queue_new(&o, &q), WEFT_INVALID_ARGUMENT);
    ASSERT_CONTAINS(weft_last_error_message(), "flag");
    o.flags = WEFT_QUEUE_JOINABLE | 0x80000000u;
    ASSERT_STATUS(weft_queue_new(&o, &q), WEFT_INVALID_ARGUMENT);
    ASSERT_STATUS(weft_queue_new_in(NULL, NULL, &o, &q), WEFT_INVALID_ARGUMENT);
    ASSERT_PTR_EQ(q, sentinel);
    ASSERT_STATUS(weft_queue_open(NULL, "ct-no-such-queue", &q), WEFT_NOT_FOUND);
    ASSERT_PTR_EQ(q, sentinel);

    /* Every call with a NULL handle. */
    char buf[16];
    size_t n = 0, w = 0;
    int fd = -1;
    weft_bytes *b = NULL;
    const void *items[1] = {"a"};
    size_t lens[1] = {1};
    ASSERT_STATUS(weft_queue_put(NULL, "a", 1, 0), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_queue_put_priority(NULL, "a", 1, 0, 0), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_queue_put_word(NULL, 1, 0), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_queue_put_many(NULL, items, lens, 1, 0, &n), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_queue_get(NULL, 0, &b), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_queue_get_into(NULL, buf, sizeof buf, 0, &n), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_queue_get_word(NULL, 0, &w), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_queue_get_many(NULL, 1, 0, &b, &n), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_queue_size(NULL, &n), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_queue_unfinished(NULL, &n), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_queue_task_done(NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_queue_join(NULL, 0), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_queue_shutdown(NULL, false), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_queue_shutdown(NULL, true), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_queue_fd(NULL, &fd), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_queue_token(NULL, buf, sizeof buf, &n), WEFT_NULL_ARGUMENT);
    weft_queue_options got;
    ASSERT_STATUS(weft_queue_options_get(NULL, &got), WEFT_NULL_ARGUMENT);
    ASSERT(!weft_queue_empty(NULL));
    ASSERT(!weft_queue_full(NULL));
    ASSERT(!weft_queue_is_shut_down(NULL));
    weft_queue_free(NULL);

    /* NULL out-pointers and buffers, for a private and a shared queue. */
    for (int shared = 0; shared < 2; shared++) {
        q = shared ? shared_queue(WEFT_QUEUE_FIFO, 0, 0, 0) : private_queue(WEFT_QUEUE_FIFO, 0, 0);
        put_s(q, "item");
        ASSERT_STATUS(weft_queue_put(q, NULL, 3, 0), WEFT_NULL_ARGUMENT);
        ASSERT_STATUS(weft_queue_put_priority(q, NULL, 3, 0, 0), WEFT_NULL_ARGUMENT);
        ASSERT_STATUS(weft_queue_get(q, 0, NULL), WEFT_NULL_ARGUMENT);
        ASSERT_STATUS(weft_queue_get_into(q, buf, sizeof buf, 0, NULL), WEFT_NULL_ARGUMENT);
        ASSERT_STATUS(weft_queue_get_into(q, NULL, 8, 0, &n), WEFT_NULL_ARGUMENT);
        ASSERT_STATUS(weft_queue_get_word(q, 0, NULL), WEFT_NULL_ARGUMENT);
        ASSERT_STATUS(weft_queue_size(q, NULL), WEFT_NULL_ARGUMENT);
        ASSERT_STATUS(weft_queue_unfinished(q, NULL), WEFT_NULL_ARGUMENT);
        ASSERT_STATUS(weft_queue_options_get(q, NULL), WEFT_NULL_ARGUMENT);
        ASSERT_STATUS(weft_queue_fd(q, NULL), WEFT_NULL_ARGUMENT);
        ASSERT_STATUS(weft_queue_token(q, buf, sizeof buf, NULL), WEFT_NULL_ARGUMENT);
        /* None of that took or added anything. */
        ASSERT_UEQ(qsize(q), 1);
        expect_s(q, "item");
        weft_queue_free(q);
    }
    fd_end(&f);
    xp_end(&g);
}

TEST(queue_double_free_and_freed_handles) {
    fd_guard f;
    fd_begin(&f);
    weft_queue *q = private_queue(WEFT_QUEUE_FIFO, WEFT_QUEUE_JOINABLE, 4);
    int fd = -1;
    ASSERT_OK(weft_queue_fd(q, &fd));
    put_s(q, "left behind"); /* freed with the queue */
    weft_queue_free(q);
    weft_queue_free(q); /* ignored */
    ASSERT_CONTAINS(weft_last_error_message(), "free");
    /* weft still works. */
    weft_queue *r = private_queue(WEFT_QUEUE_LIFO, 0, 0);
    put_s(r, "ok");
    expect_s(r, "ok");
    weft_queue_free(r);
    fd_end(&f);
}

TEST(queue_private_has_no_token) {
    weft_queue *q = private_queue(WEFT_QUEUE_FIFO, 0, 0);
    char token[WEFT_TOKEN_MAX];
    size_t len = 12345;
    ASSERT_STATUS(weft_queue_token(q, token, sizeof token, &len), WEFT_INVALID_STATE);
    ASSERT_UEQ(len, 12345);
    weft_queue_free(q);
}

TEST(queue_shared_refusals_leave_the_queue_unchanged) {
    xp_guard g;
    xp_begin(&g);
    weft_queue *q = NULL;
    /* (LIFO and PRIORITY are in shared memory too: test_queue_ordered.c.) */
    /* Storage from 64 bytes to 1 GiB. */
    weft_queue_options o = qopts(WEFT_QUEUE_FIFO, 0, 0, 56);
    ASSERT_STATUS(weft_queue_new_in(NULL, NULL, &o, &q), WEFT_INVALID_ARGUMENT);
    o.max_bytes = ((uint64_t)1 << 30) + 8;
    ASSERT_STATUS(weft_queue_new_in(NULL, NULL, &o, &q), WEFT_INVALID_ARGUMENT);
    o.max_bytes = UINT64_MAX;
    ASSERT_STATUS(weft_queue_new_in(NULL, NULL, &o, &q), WEFT_INVALID_ARGUMENT);
    ASSERT_NULL(q);

    /* An item larger than the storage: refused, and nothing changes. */
    q = shared_queue(WEFT_QUEUE_FIFO, WEFT_QUEUE_JOINABLE, 0, 4096);
    put_s(q, "hi");
    uint8_t *big = pattern(10 * KIB, 9);
    ASSERT_STATUS(weft_queue_put(q, big, 4089, 0), WEFT_INVALID_ARGUMENT);
    ASSERT_STATUS(weft_queue_put(q, big, 10 * KIB, WEFT_FOREVER), WEFT_INVALID_ARGUMENT); /* no wait */
    const void *items[3] = {"small", big, "x"};
    size_t lens[3] = {5, 5000, 1}, done = 99;
    ASSERT_STATUS(weft_queue_put_many(q, items, lens, 3, 0, &done), WEFT_INVALID_ARGUMENT);
    ASSERT_UEQ(done, 0);
    ASSERT_UEQ(qsize(q), 1);
    ASSERT_UEQ(unfinished(q), 1);
    expect_s(q, "hi");
    ASSERT_OK(weft_queue_task_done(q));
    /* The largest item fits an empty queue exactly. */
    ASSERT_OK(weft_queue_put(q, big, 4088, 0));
    ASSERT_STATUS(weft_queue_put(q, NULL, 0, 0), WEFT_WOULD_BLOCK);
    uint8_t *back = malloc(4096);
    ASSERT_NOT_NULL(back);
    size_t len = 0;
    ASSERT_OK(weft_queue_get_into(q, back, 4096, 0, &len));
    ASSERT_UEQ(len, 4088);
    check_pattern(back, 4088, 9);
    ASSERT_UEQ(qsize(q), 0);
    free(back);
    free(big);
    weft_queue_free(q);

    /* A space too small for the queue's storage. */
    char name[64];
    xp_name(name, sizeof name, "qsmall");
    weft_space *s = NULL;
    ASSERT_OK(weft_space_create(name, 64 * KIB, &s));
    o = qopts(WEFT_QUEUE_FIFO, 0, 0, MIB);
    q = NULL;
    ASSERT_STATUS(weft_queue_new_in(s, NULL, &o, &q), WEFT_NO_MEMORY);
    ASSERT_NULL(q);
    o.max_bytes = 4 * KIB;
    ASSERT_OK(weft_queue_new_in(s, NULL, &o, &q));
    weft_queue_free(q);
    weft_space_free(s);
    ASSERT_OK(weft_space_unlink(name));
    xp_end(&g);
}

TEST(queue_options_get_round_trip) {
    xp_guard g;
    xp_begin(&g);
    const qconf confs[] = {
        {"private fifo", false, WEFT_QUEUE_FIFO, 0, 0, 0},
        {"private fifo ring", false, WEFT_QUEUE_FIFO, WEFT_QUEUE_JOINABLE, 5, 0},
        {"private fifo locked", false, WEFT_QUEUE_FIFO, 0, 70000, 0},
        {"private lifo", false, WEFT_QUEUE_LIFO, WEFT_QUEUE_JOINABLE, 7, 0},
        {"private priority", false, WEFT_QUEUE_PRIORITY, 0, 0, 0},
        {"private simple", false, WEFT_QUEUE_SIMPLE, 0, 0, 0},
        {"shared fifo", true, WEFT_QUEUE_FIFO, WEFT_QUEUE_JOINABLE, 9, 1000},
        {"shared fifo rounded", true, WEFT_QUEUE_FIFO, 0, 0, 1001},
        {"shared simple", true, WEFT_QUEUE_SIMPLE, 0, 0, 0},
    };
    for (size_t c = 0; c < sizeof confs / sizeof confs[0]; c++) {
        weft_queue *q = qmake(&confs[c]);
        weft_queue_options got;
        memset(&got, 0xab, sizeof got);
        ASSERT_OK(weft_queue_options_get(q, &got));
        ASSERT_UEQ(got.kind, confs[c].kind);
        ASSERT_UEQ(got.flags, confs[c].flags);
        ASSERT_UEQ(got.maxsize, confs[c].maxsize);
        for (int i = 0; i < 4; i++) ASSERT_UEQ(got.reserved[i], 0);
        if (confs[c].shared) {
            /* The storage's real size: rounded up to 8 bytes; a default when 0. */
            if (confs[c].max_bytes) ASSERT_UEQ(got.max_bytes, (confs[c].max_bytes + 7) / 8 * 8);
            else ASSERT(got.max_bytes >= 512 * KIB && got.max_bytes <= MIB && got.max_bytes % 8 == 0);
            /* The same through another handle; and the options it gives make a queue. */
            char token[WEFT_TOKEN_MAX];
            size_t len = 0;
            ASSERT_OK(weft_queue_token(q, token, sizeof token, &len));
            weft_queue *o = NULL;
            ASSERT_OK(weft_queue_from_token(token, len, &o));
            weft_queue_options again;
            ASSERT_OK(weft_queue_options_get(o, &again));
            ASSERT(memcmp(&again, &got, sizeof got) == 0);
            weft_queue_free(o);
            weft_queue *copy = NULL;
            ASSERT_OK(weft_queue_new_in(NULL, NULL, &got, &copy));
            ASSERT_OK(weft_queue_options_get(copy, &again));
            ASSERT(memcmp(&again, &got, sizeof got) == 0);
            weft_queue_free(copy);
        } else {
            weft_queue *copy = NULL;
            ASSERT_OK(weft_queue_new(&got, &copy));
            weft_queue_options again;
            ASSERT_OK(weft_queue_options_get(copy, &again));
            ASSERT(memcmp(&again, &got, sizeof got) == 0);
            weft_queue_free(copy);
        }
        weft_queue_free(q);
    }
    /* NULL options: an unbounded FIFO that is not joinable. */
    weft_queue *q = NULL;
    ASSERT_OK(weft_queue_new(NULL, &q));
    weft_queue_options got;
    ASSERT_OK(weft_queue_options_get(q, &got));
    ASSERT_UEQ(got.kind, WEFT_QUEUE_FIFO);
    ASSERT_UEQ(got.flags, 0);
    ASSERT_UEQ(got.maxsize, 0);
    weft_queue_free(q);
    ASSERT_OK(weft_queue_new_in(NULL, NULL, NULL, &q));
    ASSERT_OK(weft_queue_options_get(q, &got));
    ASSERT_UEQ(got.kind, WEFT_QUEUE_FIFO);
    ASSERT_UEQ(got.flags, 0);
    ASSERT_UEQ(got.maxsize, 0);
    weft_queue_free(q);
    xp_end(&g);
}

/* ---- 7. names, tokens, other processes ---------------------------------------------------------- */

typedef struct {
    char space[64];
    char token[WEFT_TOKEN_MAX];
    size_t token_len;
} named_job;

static void child_uses_named_queue(void *arg) {
    named_job *j = arg;
    weft_space *s = NULL;
    ASSERT_OK(weft_space_open(j->space, &s));
    weft_queue *byname = NULL, *bytoken = NULL;
    ASSERT_OK(weft_queue_open(s, "jobs", &byname));
    ASSERT_OK(weft_queue_from_token(j->token, j->token_len, &bytoken));
    expect_s(byname, "to the child");
    ASSERT_OK(weft_queue_task_done(bytoken));
    ASSERT_OK(weft_queue_put(bytoken, "from the child", 14, 5 * SEC));
    weft_queue_free(bytoken);
    weft_queue_free(byname);
    weft_space_free(s);
}

TEST_TIMEOUT(queue_shared_by_name_and_token, 30000) {
    xp_guard g;
    xp_begin(&g);
    fd_guard f;
    fd_begin(&f);
    named_job *j = xp_shared(sizeof *j);
    xp_name(j->space, sizeof j->space, "qnamed");
    weft_space *s = NULL;
    ASSERT_OK(weft_space_create(j->space, MIB, &s));
    weft_queue_options o = qopts(WEFT_QUEUE_FIFO, WEFT_QUEUE_JOINABLE, 8, 4096);
    weft_queue *a = NULL, *b = NULL, *c = NULL, *x = NULL;
    ASSERT_OK(weft_queue_new_in(s, "jobs", &o, &a));
    ASSERT_STATUS(weft_queue_new_in(s, "jobs", &o, &x), WEFT_EXISTS);
    ASSERT_NULL(x);
    ASSERT_OK(weft_queue_open(s, "jobs", &b));
    ASSERT_OK(weft_queue_token(a, j->token, sizeof j->token, &j->token_len));
    ASSERT(j->token_len > 0 && j->token_len <= WEFT_TOKEN_MAX);
    /* A token buffer too small says how big it must be. */
    size_t need = 0;
    char tiny[2];
    ASSERT_STATUS(weft_queue_token(a, tiny, sizeof tiny, &need), WEFT_BUFFER_TOO_SMALL);
    ASSERT_UEQ(need, j->token_len);
    ASSERT_OK(weft_queue_from_token(j->token, j->token_len, &c));
    /* Three handles, one queue. */
    put_s(a, "one");
    ASSERT_UEQ(qsize(b), 1);
    ASSERT_UEQ(qsize(c), 1);
    ASSERT_UEQ(unfinished(c), 1);
    expect_s(b, "one");
    ASSERT(weft_queue_empty(a));
    ASSERT_OK(weft_queue_task_done(c));
    ASSERT_UEQ(unfinished(a), 0);
    weft_queue_options oa, ob;
    ASSERT_OK(weft_queue_options_get(a, &oa));
    ASSERT_OK(weft_queue_options_get(b, &ob));
    ASSERT(memcmp(&oa, &ob, sizeof oa) == 0);
    ASSERT_UEQ(oa.maxsize, 8);
    /* Wrong names and kinds. */
    ASSERT_STATUS(weft_queue_open(s, "missing", &x), WEFT_NOT_FOUND);
    weft_lock *l = NULL;
    ASSERT_OK(weft_lock_new_in(s, "L", &l));
    ASSERT_STATUS(weft_queue_open(s, "L", &x), WEFT_INVALID_ARGUMENT);
    char ltoken[WEFT_TOKEN_MAX];
    size_t llen = 0;
    ASSERT_OK(weft_lock_token(l, ltoken, sizeof ltoken, &llen));
    ASSERT_STATUS(weft_queue_from_token(ltoken, llen, &x), WEFT_INVALID_ARGUMENT);
    weft_lock *y = NULL;
    ASSERT_STATUS(weft_lock_from_token(j->token, j->token_len, &y), WEFT_INVALID_ARGUMENT);
    ASSERT_NULL(x);
    weft_lock_free(l);
    /* Another process opens the space and the queue by name, and by token. */
    put_s(a, "to the child");
    xp_wait_ok(xp_fork(child_uses_named_queue, j));
    expect_s(c, "from the child");
    ASSERT_UEQ(unfinished(a), 1);
    ASSERT_OK(weft_queue_task_done(a));
    ASSERT_OK(weft_queue_join(b, 0));
    /* A shutdown through one handle is seen by all. */
    ASSERT_OK(weft_queue_shutdown(c, false));
    ASSERT(weft_queue_is_shut_down(a));
    ASSERT(weft_queue_is_shut_down(b));
    ASSERT_STATUS(weft_queue_put(b, "z", 1, 0), WEFT_CLOSED);
    /* Removing the name: no more opens, the handles go on. */
    ASSERT_OK(weft_space_remove(s, "jobs"));
    ASSERT_STATUS(weft_queue_open(s, "jobs", &x), WEFT_NOT_FOUND);
    weft_bytes *item = NULL;
    ASSERT_STATUS(weft_queue_get(a, 0, &item), WEFT_CLOSED);
    ASSERT_OK(weft_queue_from_token(j->token, j->token_len, &x));
    weft_queue_free(x);
    /* The name is free again. */
    ASSERT_OK(weft_queue_new_in(s, "jobs", &o, &x));
    ASSERT(!weft_queue_is_shut_down(x));
    weft_queue_free(x);
    weft_queue_free(c);
    weft_queue_free(b);
    weft_queue_free(a);
    weft_space_free(s);
    ASSERT_OK(weft_space_unlink(j->space));

    /* A named queue in the default space. */
    char qname[64];
    xp_name(qname, sizeof qname, "defq");
    ASSERT_OK(weft_queue_new_in(NULL, qname, NULL, &a));
    ASSERT_OK(weft_queue_open(NULL, qname, &b));
    put_s(b, "default");
    expect_s(a, "default");
    ASSERT_OK(weft_space_remove(NULL, qname));
    ASSERT_STATUS(weft_queue_open(NULL, qname, &x), WEFT_NOT_FOUND);
    weft_queue_free(b);
    weft_queue_free(a);
    fd_end(&f);
    xp_end(&g);
}

/* ---- cancellation -------------------------------------------------------------------------------- */

typedef struct {
    weft_queue *q;
    enum op op;
    atomic_uint tid;
    weft_status got;
} cancel_job;

static weft_status task_queue_call(weft_call *call) {
    cancel_job *j = call_ptr(call);
    atomic_store(&j->tid, my_tid());
    weft_bytes *b = NULL;
    switch (j->op) {
    case OP_PUT: j->got = weft_queue_put(j->q, "late", 4, WEFT_FOREVER); break;
    case OP_GET: j->got = weft_queue_get(j->q, WEFT_FOREVER, &b); break;
    case OP_JOIN: j->got = weft_queue_join(j->q, WEFT_FOREVER); break;
    case OP_GET_MANY: {
        size_t count = 0;
        j->got = weft_queue_get_many(j->q, 4, 30 * SEC, &b, &count);
        break;
    }
    }
    weft_bytes_free(b);
    return WEFT_OK;
}

static void cancel_case(weft_queue *q, enum op op) {
    cancel_job j = {.q = q, .op = op, .got = -1};
    atomic_init(&j.tid, 0);
    weft_thread *t = NULL;
    ASSERT_OK(start_ptr(task_queue_call, &j, NULL, &t));
    wait_blocked(&j.tid);
    runner_sleep_ms(5);
    ASSERT(weft_thread_is_alive(t));
    ASSERT_OK(weft_thread_cancel(t));
    ASSERT_OK(weft_thread_join(t, 5 * SEC, NULL));
    ASSERT_STATUS(j.got, WEFT_CANCELLED);
    weft_thread_free(t);
}

TEST_TIMEOUT(queue_cancel_ends_blocked_calls, 30000) {
    xp_guard g;
    xp_begin(&g);
    for (int shared = 0; shared < 2; shared++) {
        note(shared ? "shared" : "private");
        weft_queue *q = shared ? shared_queue(WEFT_QUEUE_FIFO, WEFT_QUEUE_JOINABLE, 1, 0)
                               : private_queue(WEFT_QUEUE_FIFO, WEFT_QUEUE_JOINABLE, 1);
        cancel_case(q, OP_GET);
        cancel_case(q, OP_GET_MANY);
        ASSERT_UEQ(qsize(q), 0);
        put_s(q, "full");
        cancel_case(q, OP_PUT);
        cancel_case(q, OP_JOIN);
        /* Nothing changed: the cancelled put did not go in. */
        ASSERT_UEQ(qsize(q), 1);
        ASSERT_UEQ(unfinished(q), 1);
        expect_s(q, "full");
        ASSERT_OK(weft_queue_task_done(q));
        weft_queue_free(q);
    }
    weft_queue *q = private_queue(WEFT_QUEUE_PRIORITY, 0, 0);
    cancel_case(q, OP_GET);
    weft_queue_free(q);
    xp_end(&g);
}

/* ---- messages with a checksum (MPMC and crash tests) ------------------------------------------------ */

#define MSG_MAGIC 0x6d736751u

typedef struct {
    uint32_t producer, seq;
    uint32_t len; /* of the whole message */
    uint32_t magic;
    uint64_t sum; /* FNV-1a of the first 16 bytes, then of the payload */
} msg_head;

static uint64_t fnv(uint64_t h, const void *p, size_t n) {
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ull;
    }
    return h;
}
#define FNV0 0xcbf29ce484222325ull

static uint8_t msg_byte(uint32_t producer, uint32_t seq, size_t i) {
    uint32_t x = producer * 0x9E3779B1u ^ seq * 0x85EBCA77u;
    return (uint8_t)(x + (uint32_t)i * 131u + (uint32_t)(i >> 9));
}

/* Writes message (producer, seq) of `len` bytes (at least sizeof(msg_head)) into `buf`. */
static void msg_make(uint8_t *buf, uint32_t producer, uint32_t seq, size_t len) {
    msg_head h = {producer, seq, (uint32_t)len, MSG_MAGIC, 0};
    for (size_t i = sizeof h; i < len; i++) buf[i] = msg_byte(producer, seq, i);
    h.sum = fnv(fnv(FNV0, &h, 16), buf + sizeof h, len - sizeof h);
    memcpy(buf, &h, sizeof h);
}

/* True when `buf` (`len` bytes) is a whole message: its length, checksum and every byte. */
static bool msg_check(const uint8_t *buf, size_t len, msg_head *out) {
    if (len < sizeof(msg_head)) return false;
    memcpy(out, buf, sizeof *out);
    if (out->magic != MSG_MAGIC || out->len != len) return false;
    if (fnv(fnv(FNV0, out, 16), buf + sizeof *out, len - sizeof *out) != out->sum) return false;
    for (size_t i = sizeof *out; i < len; i++)
        if (buf[i] != msg_byte(out->producer, out->seq, i)) return false;
    return true;
}

#define MSG_CHECK(buf, len, head)                                                              \
    do {                                                                                       \
        if (!msg_check((buf), (len), (head)))                                                  \
            FAIL_AT("torn or foreign message of %zu bytes (head: producer %u seq %u len %u)",  \
                    (size_t)(len), (head)->producer, (head)->seq, (head)->len);                \
    } while (0)

/* ---- 7. MPMC across threads ---------------------------------------------------------------------- */

#define MT_PRODUCERS 4
#define MT_CONSUMERS 4
#define MT_PER 10000

typedef struct {
    weft_queue *q;
    atomic_uchar seen[MT_PRODUCERS][MT_PER];
    atomic_int received;
} mt_state;

typedef struct {
    mt_state *s;
    uint32_t id;
} mt_arg;

static void *mt_producer(void *arg) {
    mt_arg *a = arg;
    uint8_t buf[128];
    for (uint32_t seq = 0; seq < MT_PER; seq++) {
        size_t len = sizeof(msg_head) + (seq * 7 + a->id) % 60;
        msg_make(buf, a->id, seq, len);
        ASSERT_OK(weft_queue_put(a->s->q, buf, len, WEFT_FOREVER));
    }
    return NULL;
}

static void mt_record(mt_state *s, const uint8_t *buf, size_t len, int64_t *last) {
    msg_head h;
    MSG_CHECK(buf, len, &h);
    ASSERT(h.producer < MT_PRODUCERS && h.seq < MT_PER);
    /* Per producer, one consumer sees increasing sequence numbers (FIFO). */
    if ((int64_t)h.seq <= last[h.producer])
        FAIL_AT("producer %u: seq %u after %" PRId64 "", h.producer, h.seq, last[h.producer]);
    last[h.producer] = h.seq;
    if (atomic_fetch_add(&s->seen[h.producer][h.seq], 1) != 0)
        FAIL_AT("message (%u, %u) delivered twice", h.producer, h.seq);
    atomic_fetch_add(&s->received, 1);
}

static void *mt_consumer(void *arg) {
    mt_arg *a = arg;
    int64_t last[MT_PRODUCERS];
    for (int i = 0; i < MT_PRODUCERS; i++) last[i] = -1;
    uint8_t buf[128];
    for (;;) {
        if (a->id == 3) {
            /* One consumer takes several at a time. */
            weft_bytes *b = NULL;
            size_t count = 0;
            weft_status st = weft_queue_get_many(a->s->q, 5, WEFT_FOREVER, &b, &count);
            if (st == WEFT_CLOSED) break;
            ASSERT_OK(st);
            ASSERT(count >= 1 && count <= 5);
            const uint8_t *p = weft_bytes_data(b);
            size_t off = 0;
            for (size_t i = 0; i < count; i++) {
                uint64_t n;
                memcpy(&n, p + off, 8);
                ASSERT(n <= sizeof buf && off + 8 + n <= weft_bytes_len(b));
                memcpy(buf, p + off + 8, n);
                mt_record(a->s, buf, n, last);
                off += 8 + n;
            }
            ASSERT_UEQ(off, weft_bytes_len(b));
            weft_bytes_free(b);
        } else {
            size_t len = 0;
            weft_status st = weft_queue_get_into(a->s->q, buf, sizeof buf, WEFT_FOREVER, &len);
            if (st == WEFT_CLOSED) break;
            ASSERT_OK(st);
            mt_record(a->s, buf, len, last);
        }
    }
    return NULL;
}

TEST_TIMEOUT(queue_mpmc_threads_exact_delivery, 120000) {
    const qconf confs[] = {
        {"private fifo ring (maxsize 8)", false, WEFT_QUEUE_FIFO, 0, 8, 0},
        {"private fifo unbounded", false, WEFT_QUEUE_FIFO, 0, 0, 0},
        {"private simple", false, WEFT_QUEUE_SIMPLE, 0, 0, 0},
        {"shared fifo (maxsize 8, 2 KiB)", true, WEFT_QUEUE_FIFO, 0, 8, 2048},
    };
    xp_guard g;
    xp_begin(&g);
    mt_state *s = malloc(sizeof *s);
    ASSERT_NOT_NULL(s);
    for (size_t c = 0; c < sizeof confs / sizeof confs[0]; c++) {
        memset(s, 0, sizeof *s);
        s->q = qmake(&confs[c]);
        mt_arg pa[MT_PRODUCERS], ca[MT_CONSUMERS];
        pthread_t pt[MT_PRODUCERS], ct[MT_CONSUMERS];
        for (uint32_t i = 0; i < MT_CONSUMERS; i++) {
            ca[i] = (mt_arg){s, i};
            ct[i] = spawn(mt_consumer, &ca[i]);
        }
        for (uint32_t i = 0; i < MT_PRODUCERS; i++) {
            pa[i] = (mt_arg){s, i};
            pt[i] = spawn(mt_producer, &pa[i]);
        }
        for (int i = 0; i < MT_PRODUCERS; i++) ASSERT_EQ(pthread_join(pt[i], NULL), 0);
        /* Every producer is done: a graceful shutdown lets the consumers drain, then stop. */
        ASSERT_OK(weft_queue_shutdown(s->q, false));
        for (int i = 0; i < MT_CONSUMERS; i++) ASSERT_EQ(pthread_join(ct[i], NULL), 0);
        ASSERT_EQ(atomic_load(&s->received), MT_PRODUCERS * MT_PER);
        for (int p = 0; p < MT_PRODUCERS; p++)
            for (int q = 0; q < MT_PER; q++)
                if (atomic_load(&s->seen[p][q]) != 1) FAIL_AT("message (%d, %d) delivered %d times", p, q, (int)atomic_load(&s->seen[p][q]));
        ASSERT_UEQ(qsize(s->q), 0);
        weft_queue_free(s->q);
    }
    free(s);
    xp_end(&g);
}

/* ---- 7. MPMC across processes ------------------------------------------------------------------- */

#define XP_PRODUCERS 2
#define XP_CONSUMERS 2
#define XP_PER 25000

typedef struct {
    char token[WEFT_TOKEN_MAX];
    size_t token_len;
    atomic_uchar seen[XP_PRODUCERS][XP_PER];
    atomic_int received[XP_CONSUMERS];
    atomic_int next_id;
} xp_state;

static xp_state *xps;

static void xp_producer(void *arg) {
    uint32_t id = (uint32_t)(uintptr_t)arg;
    weft_queue *q = NULL;
    ASSERT_OK(weft_queue_from_token(xps->token, xps->token_len, &q));
    uint8_t buf[1024];
    uint64_t rng = 0x9E3779B97F4A7C15ull * (id + 1);
    for (uint32_t seq = 0; seq < XP_PER; seq++) {
        size_t len = sizeof(msg_head) + (size_t)(xp_rand(&rng) % (sizeof buf - sizeof(msg_head) + 1));
        msg_make(buf, id, seq, len);
        if (seq % 64 == 0) { /* and some in batches */
            const void *items[1] = {buf};
            size_t done = 0;
            ASSERT_OK(weft_queue_put_many(q, items, &len, 1, WEFT_FOREVER, &done));
            ASSERT_UEQ(done, 1);
        } else {
            ASSERT_OK(weft_queue_put(q, buf, len, WEFT_FOREVER));
        }
    }
    weft_queue_free(q);
}

static void xp_consumer(void *arg) {
    uint32_t id = (uint32_t)(uintptr_t)arg;
    weft_queue *q = NULL;
    ASSERT_OK(weft_queue_from_token(xps->token, xps->token_len, &q));
    int64_t last[XP_PRODUCERS];
    for (int i = 0; i < XP_PRODUCERS; i++) last[i] = -1;
    uint8_t buf[1024];
    for (;;) {
        size_t len = 0;
        weft_status st = weft_queue_get_into(q, buf, sizeof buf, WEFT_FOREVER, &len);
        if (st == WEFT_CLOSED) break;
        ASSERT_OK(st);
        msg_head h;
        MSG_CHECK(buf, len, &h);
        ASSERT(h.producer < XP_PRODUCERS && h.seq < XP_PER);
        if ((int64_t)h.seq <= last[h.producer]) FAIL_AT("producer %u: seq %u out of order", h.producer, h.seq);
        last[h.producer] = h.seq;
        if (atomic_fetch_add(&xps->seen[h.producer][h.seq], 1) != 0)
            FAIL_AT("message (%u, %u) delivered twice", h.producer, h.seq);
        atomic_fetch_add(&xps->received[id], 1);
    }
    weft_queue_free(q);
}

TEST_TIMEOUT(queue_mpmc_processes_exact_delivery, 120000) {
    xp_guard g;
    xp_begin(&g);
    fd_guard f;
    fd_begin(&f);
    xps = xp_shared(sizeof *xps);
    /* Bounded by count and by bytes (16 KiB of records of up to 1 KiB): both producers and
     * consumers block often, and records wrap around the ring's end. */
    weft_queue *q = shared_queue(WEFT_QUEUE_FIFO, 0, 64, 16 * KIB);
    ASSERT_OK(weft_queue_token(q, xps->token, sizeof xps->token, &xps->token_len));
    pid_t consumers[XP_CONSUMERS], producers[XP_PRODUCERS];
    for (uintptr_t i = 0; i < XP_CONSUMERS; i++) consumers[i] = xp_fork(xp_consumer, (void *)i);
    for (uintptr_t i = 0; i < XP_PRODUCERS; i++) producers[i] = xp_fork(xp_producer, (void *)i);
    for (int i = 0; i < XP_PRODUCERS; i++) xp_wait_ok(producers[i]);
    ASSERT_OK(weft_queue_shutdown(q, false));
    for (int i = 0; i < XP_CONSUMERS; i++) xp_wait_ok(consumers[i]);
    int total = 0;
    for (int i = 0; i < XP_CONSUMERS; i++) total += atomic_load(&xps->received[i]);
    ASSERT_EQ(total, XP_PRODUCERS * XP_PER);
    for (int p = 0; p < XP_PRODUCERS; p++)
        for (int s = 0; s < XP_PER; s++)
            if (atomic_load(&xps->seen[p][s]) != 1)
                FAIL_AT("message (%d, %d) delivered %d times", p, s, (int)atomic_load(&xps->seen[p][s]));
    ASSERT_UEQ(qsize(q), 0);
    weft_bytes *b = NULL;
    ASSERT_STATUS(weft_queue_get(q, 0, &b), WEFT_CLOSED);
    weft_queue_free(q);
    fd_end(&f);
    xp_end(&g);
}

/* ---- 8. crash consistency: producers and consumers SIGKILLed at random moments ------------------ */

#define CR_ROUNDS 30
#define CR_PRODUCERS 2
#define CR_CONSUMERS 2
#define CR_MAXSEQ 20000   /* messages per producer per round, at most */
#define CR_LOG 40000      /* messages per consumer per round, at most */
#define CR_MAXMSG 65536   /* bytes of the largest message */
#define CR_MAXSIZE 16     /* the queue's maxsize */
#define CR_RING (256 * KIB)

typedef struct {
    atomic_uint attempting; /* seq + 1 of the message whose put began last */
    atomic_uint committed;  /* messages whose put returned WEFT_OK (seq 0 .. committed - 1) */
} cr_producer;

typedef struct {
    atomic_int in_get;  /* 1 from before a get until its item is recorded */
    atomic_uint count;  /* entries of log */
    uint64_t log[CR_LOG]; /* producer << 32 | seq, written before count is bumped */
} cr_consumer;

typedef struct {
    atomic_int started;
    atomic_int stop;
    uint32_t round;
    cr_producer prod[CR_PRODUCERS];
    cr_consumer cons[CR_CONSUMERS];
} cr_state;

static cr_state *crs;
static weft_queue *cr_q; /* the parent's handle, inherited by the children */

static void cr_produce(void *arg) {
    uint32_t i = (uint32_t)(uintptr_t)arg;
    uint32_t id = crs->round * CR_PRODUCERS + i;
    cr_producer *me = &crs->prod[i];
    uint8_t *buf = malloc(CR_MAXMSG);
    ASSERT_NOT_NULL(buf);
    uint64_t rng = 0xD1B54A32D192ED03ull ^ ((uint64_t)id << 20) ^ (uint64_t)getpid();
    atomic_fetch_add(&crs->started, 1);
    uint32_t seq = 0;
    while (seq < CR_MAXSEQ && !atomic_load(&crs->stop)) {
        uint64_t r = xp_rand(&rng);
        /* Half small, half up to 64 KiB (large copies, wrapping around the ring's end). */
        size_t len = sizeof(msg_head) + (size_t)((r >> 8) % ((r & 1) ? 232 : CR_MAXMSG - sizeof(msg_head) + 1));
        msg_make(buf, id, seq, len);
        atomic_store(&me->attempting, seq + 1);
        weft_status st = weft_queue_put(cr_q, buf, len, 20 * MS);
        if (st == WEFT_OK) {
            atomic_store(&me->committed, seq + 1);
            seq++;
        } else if (st != WEFT_TIMEOUT) {
            FAIL_AT("producer %u: put returned %s (%s)", id, weft_status_name(st), weft_last_error_message());
        }
    }
    while (!atomic_load(&crs->stop)) runner_sleep_ms(1);
    free(buf);
}

static void cr_consume(void *arg) {
    uint32_t i = (uint32_t)(uintptr_t)arg;
    cr_consumer *me = &crs->cons[i];
    uint8_t *buf = malloc(CR_MAXMSG);
    ASSERT_NOT_NULL(buf);
    atomic_fetch_add(&crs->started, 1);
    while (!atomic_load(&crs->stop)) {
        unsigned n = atomic_load(&me->count);
        if (n == CR_LOG) {
            runner_sleep_ms(1);
            continue;
        }
        atomic_store(&me->in_get, 1);
        size_t len = 0;
        weft_status st = weft_queue_get_into(cr_q, buf, CR_MAXMSG, 20 * MS, &len);
        if (st == WEFT_OK) {
            /* Recorded first, so that a kill leaves as small a window as possible between
             * taking a message and recording it; then checked: a torn message aborts this
             * child (which the parent sees), and its garbage record fails the parent's check
             * if it was killed before checking. */
            msg_head h;
            memset(&h, 0xff, sizeof h);
            memcpy(&h, buf, len < sizeof h ? len : sizeof h);
            me->log[n] = (uint64_t)h.producer << 32 | h.seq;
            atomic_store(&me->count, n + 1);
            MSG_CHECK(buf, len, &h);
        } else if (st != WEFT_TIMEOUT) {
            FAIL_AT("consumer %u: get returned %s (%s)", i, weft_status_name(st), weft_last_error_message());
        }
        atomic_store(&me->in_get, 0);
    }
    free(buf);
}

/* Counts one delivery of the message `entry` in round `round`: never twice, only attempted. */
static void cr_deliver(uint8_t (*del)[CR_MAXSEQ], uint32_t round, uint32_t producer, uint32_t seq) {
    if (producer / CR_PRODUCERS != round)
        FAIL_AT("round %u: a message of producer %u (another round) was delivered", round, producer);
    uint32_t p = producer % CR_PRODUCERS;
    ASSERT(seq < CR_MAXSEQ);
    if (seq >= atomic_load(&crs->prod[p].attempting))
        FAIL_AT("round %u: message (%u, %u) delivered but never put (attempting %u)", round, producer, seq,
                atomic_load(&crs->prod[p].attempting));
    if (del[p][seq]++ != 0) FAIL_AT("round %u: message (%u, %u) delivered twice", round, producer, seq);
}

TEST_TIMEOUT(queue_crash_consistency_under_random_kills, 120000) {
    xp_guard g;
    xp_begin(&g);
    fd_guard f;
    fd_begin(&f);
    crs = xp_shared(sizeof *crs);
    weft_queue_options o = qopts(WEFT_QUEUE_FIFO, 0, CR_MAXSIZE, CR_RING);
    ASSERT_OK(weft_queue_new_in(NULL, NULL, &o, &cr_q));
    weft_queue_options got;
    ASSERT_OK(weft_queue_options_get(cr_q, &got));
    const size_t ring = (size_t)got.max_bytes;
    ASSERT_UEQ(ring, CR_RING);

    uint8_t(*del)[CR_MAXSEQ] = malloc(sizeof(uint8_t[CR_PRODUCERS][CR_MAXSEQ]));
    uint8_t *buf = malloc(ring);
    ASSERT(del && buf);
    uint64_t rng = 0x853C49E6748FEA9Bull ^ (uint64_t)getpid();
    unsigned killed_total = 0, killed_consumers_total = 0, lost_total = 0, large_seen = 0;
    uint64_t delivered_total = 0, committed_total = 0;
    uint64_t t_start = runner_now_ns();

    for (uint32_t round = 0; round < CR_ROUNDS; round++) {
        memset(crs, 0, sizeof *crs);
        crs->round = round;
        pid_t pids[CR_PRODUCERS + CR_CONSUMERS];
        for (uintptr_t i = 0; i < CR_PRODUCERS; i++) pids[i] = xp_fork(cr_produce, (void *)i);
        for (uintptr_t i = 0; i < CR_CONSUMERS; i++) pids[CR_PRODUCERS + i] = xp_fork(cr_consume, (void *)i);
        xp_wait_count(&crs->started, CR_PRODUCERS + CR_CONSUMERS);
        runner_sleep_ms(5 + (unsigned)(xp_rand(&rng) % 60));

        /* Kill three children in four, in a random order, at random moments. */
        int order[CR_PRODUCERS + CR_CONSUMERS];
        const int n_children = CR_PRODUCERS + CR_CONSUMERS;
        for (int i = 0; i < n_children; i++) order[i] = i;
        for (int i = n_children - 1; i > 0; i--) {
            int k = (int)(xp_rand(&rng) % (uint64_t)(i + 1));
            int t = order[i];
            order[i] = order[k];
            order[k] = t;
        }
        bool killed[CR_PRODUCERS + CR_CONSUMERS] = {false};
        unsigned may_hold = 0; /* consumers killed between starting a get and recording it */
        for (int k = 0; k < n_children; k++) {
            int i = order[k];
            if (xp_rand(&rng) % 4 == 0) continue;
            uint64_t r = xp_rand(&rng) % 8;
            if (r) runner_sleep_ms((unsigned)r);
            xp_kill(pids[i]);
            killed[i] = true;
            killed_total++;
            if (i >= CR_PRODUCERS) {
                killed_consumers_total++;
                if (atomic_load(&crs->cons[i - CR_PRODUCERS].in_get)) may_hold++;
            }
        }
        atomic_store(&crs->stop, 1);
        for (int i = 0; i < n_children; i++)
            if (!killed[i]) xp_wait_ok(pids[i]);

        /* Everything the consumers recorded, then what is left in the queue. */
        memset(del, 0, sizeof(uint8_t[CR_PRODUCERS][CR_MAXSEQ]));
        uint64_t delivered = 0;
        for (int c = 0; c < CR_CONSUMERS; c++) {
            unsigned n = atomic_load(&crs->cons[c].count);
            for (unsigned e = 0; e < n; e++) {
                uint64_t v = crs->cons[c].log[e];
                cr_deliver(del, round, (uint32_t)(v >> 32), (uint32_t)v);
            }
            delivered += n;
        }
        size_t left = qsize(cr_q);
        ASSERT(left <= CR_MAXSIZE);
        for (;;) {
            size_t len = 0;
            /* The first get may have to take over the lock of a consumer killed holding it. */
            weft_status st = weft_queue_get_into(cr_q, buf, ring, left ? 5 * SEC : 0, &len);
            if (st == WEFT_WOULD_BLOCK && qsize(cr_q) == 0) break;
            if (st != WEFT_OK)
                FAIL_AT("round %u: draining: %s (%s), %zu left", round, weft_status_name(st),
                        weft_last_error_message(), qsize(cr_q));
            msg_head h;
            MSG_CHECK(buf, len, &h);
            if (len >= 32 * KIB) large_seen++;
            cr_deliver(del, round, h.producer, h.seq);
            delivered++;
            left = qsize(cr_q);
        }
        /* Every committed message was delivered, but for at most one per consumer killed
         * between taking it and recording it. */
        unsigned lost = 0;
        for (int p = 0; p < CR_PRODUCERS; p++) {
            unsigned committed = atomic_load(&crs->prod[p].committed);
            committed_total += committed;
            /* A message whose put never returned (seq == committed, as cr_deliver checked
             * seq < attempting) may be delivered only if its producer was killed during it. */
            if (committed < CR_MAXSEQ && del[p][committed] && !killed[p])
                FAIL_AT("round %u: message (%u, %u) delivered although its put failed", round,
                        round * CR_PRODUCERS + (unsigned)p, committed);
            for (unsigned s = 0; s < committed; s++)
                if (!del[p][s]) lost++;
        }
        if (lost > may_hold)
            FAIL_AT("round %u: %u committed messages lost, but only %u consumers were killed inside a get",
                    round, lost, may_hold);
        lost_total += lost;
        delivered_total += delivered;

        /* The queue still works, and no capacity leaked: maxsize items fit, then the
         * largest item fits the whole ring. */
        ASSERT_UEQ(qsize(cr_q), 0);
        ASSERT(weft_queue_empty(cr_q));
        ASSERT(!weft_queue_is_shut_down(cr_q));
        ASSERT_OK(weft_queue_put(cr_q, "ping", 4, 0));
        expect_s(cr_q, "ping");
        for (uint32_t i = 0; i < CR_MAXSIZE; i++) ASSERT_OK(weft_queue_put(cr_q, &i, sizeof i, 0));
        ASSERT(weft_queue_full(cr_q));
        ASSERT_STATUS(weft_queue_put(cr_q, "one more", 8, 0), WEFT_WOULD_BLOCK);
        for (uint32_t i = 0; i < CR_MAXSIZE; i++) {
            uint32_t v = 0;
            size_t len = 0;
            ASSERT_OK(weft_queue_get_into(cr_q, &v, sizeof v, 0, &len));
            ASSERT_UEQ(len, sizeof v);
            ASSERT_UEQ(v, i);
        }
        memset(buf, (int)round, ring - 8);
        ASSERT_OK(weft_queue_put(cr_q, buf, ring - 8, 0));
        ASSERT_STATUS(weft_queue_put(cr_q, NULL, 0, 0), WEFT_WOULD_BLOCK);
        size_t len = 0;
        memset(buf, 0xff, ring);
        ASSERT_OK(weft_queue_get_into(cr_q, buf, ring, 0, &len));
        ASSERT_UEQ(len, ring - 8);
        for (size_t i = 0; i < len; i++)
            if (buf[i] != (uint8_t)round) FAIL_AT("round %u: byte %zu of the largest item differs", round, i);
        ASSERT_UEQ(qsize(cr_q), 0);
    }
    if (getenv("WEFT_CTESTS_VERBOSE"))
        fprintf(stderr, "# %u kills (%u consumers), %" PRIu64 " committed, %" PRIu64 " delivered, %u lost, "
                        "%u large drained, %.1f s\n",
                killed_total, killed_consumers_total, committed_total, delivered_total, lost_total, large_seen,
                (double)elapsed_since(t_start) / 1e9);
    /* The rounds did something: messages flowed and children died. */
    ASSERT_GT(killed_total, CR_ROUNDS);
    ASSERT_GT(delivered_total, 100 * CR_ROUNDS);
    ASSERT_UGE(committed_total + CR_ROUNDS * CR_PRODUCERS, delivered_total);
    free(buf);
    free(del);
    weft_queue_free(cr_q);
    fd_end(&f);
    xp_end(&g);
}

/* ---- 9. a corrupted shared header ------------------------------------------------------------------ */

/* Statuses a call on a damaged queue may give besides WEFT_CORRUPTED. */
static bool damaged_ok(weft_status st) {
    return st == WEFT_OK || st == WEFT_CORRUPTED || st == WEFT_WOULD_BLOCK || st == WEFT_CLOSED ||
           st == WEFT_INVALID_STATE;
}

/* Uses a handle on a damaged queue: no crash, no hang, only sensible statuses. */
static void poke_damaged(weft_queue *q) {
    char buf[64];
    size_t len = 0, n = 0;
    weft_status st;
    st = weft_queue_put(q, "p", 1, 0);
    if (!damaged_ok(st)) FAIL_AT("put on a damaged queue: %s", weft_status_name(st));
    st = weft_queue_get_into(q, buf, sizeof buf, 0, &len);
    if (!damaged_ok(st) && st != WEFT_BUFFER_TOO_SMALL) FAIL_AT("get on a damaged queue: %s", weft_status_name(st));
    (void)weft_queue_size(q, &n);
    (void)weft_queue_unfinished(q, &n);
    (void)weft_queue_empty(q);
    (void)weft_queue_full(q);
    (void)weft_queue_is_shut_down(q);
}

/* Offsets of the queue header's fields (src/queue/shared/mod.rs; the layout is pinned there). */
#define QH_MAGIC 0
#define QH_VERSION 4
#define QH_KIND 8
#define QH_FLAGS 12
#define QH_MAXSIZE 16
#define QH_RING 24
#define QH_SHUTDOWN 32
#define QH_TAIL 192
#define QH_HEAD 320
#define QH_SIZE 512

TEST_TIMEOUT(queue_corrupted_shared_queue_is_detected, 30000) {
    xp_guard g;
    xp_begin(&g);
    fd_guard f;
    fd_begin(&f);
    char name[64], path[128];
    xp_name(name, sizeof name, "qcorrupt");
    snprintf(path, sizeof path, "/dev/shm/weft.%s", name);
    weft_space *s = NULL;
    ASSERT_OK(weft_space_create(name, 256 * KIB, &s));
    weft_queue_options o = qopts(WEFT_QUEUE_FIFO, WEFT_QUEUE_JOINABLE, 8, 4096);
    weft_queue *q = NULL;
    ASSERT_OK(weft_queue_new_in(s, "q", &o, &q));
    char token[WEFT_TOKEN_MAX];
    size_t token_len = 0;
    ASSERT_OK(weft_queue_token(q, token, sizeof token, &token_len));

    /* Map the space's file and find the queue's header by its magic and version. */
    int fd = open(path, O_RDWR | O_NOFOLLOW | O_CLOEXEC);
    ASSERT(fd >= 0);
    struct stat st;
    ASSERT_EQ(fstat(fd, &st), 0);
    uint8_t *map = mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ASSERT(map != MAP_FAILED);
    const uint8_t sig[8] = {'w', 'f', 'q', 'u', 1, 0, 0, 0};
    uint8_t *h = memmem(map, (size_t)st.st_size, sig, sizeof sig);
    ASSERT_NOT_NULL(h);
    ASSERT_NULL(memmem(h + 1, (size_t)st.st_size - (size_t)(h + 1 - map), sig, sizeof sig)); /* only one */
    ASSERT_EQ(((uintptr_t)(h - map)) % 64, 0);
    uint64_t ring = 0;
    memcpy(&ring, h + QH_RING, 8);
    ASSERT_UEQ(ring, 4096);
    uint8_t saved[QH_SIZE];
    memcpy(saved, h, QH_SIZE);

    /* A damaged record: the item is refused, not delivered torn; repaired, it comes out. */
    put_s(q, "hello");
    uint8_t tag[4];
    memcpy(tag, h + QH_SIZE + 4, 4);
    h[QH_SIZE + 4] ^= 0x5a;
    char buf[64];
    size_t len = 0;
    ASSERT_STATUS(weft_queue_get_into(q, buf, sizeof buf, 0, &len), WEFT_CORRUPTED);
    ASSERT_STATUS(weft_queue_get_into(q, buf, sizeof buf, 5 * SEC, &len), WEFT_CORRUPTED);
    uint32_t huge = 1u << 30;
    h[QH_SIZE + 4] ^= 0x5a;
    ASSERT(memcmp(tag, h + QH_SIZE + 4, 4) == 0);
    uint8_t reclen[4];
    memcpy(reclen, h + QH_SIZE, 4);
    memcpy(h + QH_SIZE, &huge, 4); /* a record length far beyond the ring */
    ASSERT_STATUS(weft_queue_get_into(q, buf, sizeof buf, 0, &len), WEFT_CORRUPTED);
    memcpy(h + QH_SIZE, reclen, 4);
    expect_s(q, "hello");
    ASSERT_OK(weft_queue_task_done(q));
    memcpy(saved, h, QH_SIZE); /* the header as it is now (cursors moved) */

    /* Header fields checked when a queue is opened. */
    struct {
        size_t off, len;
        uint64_t value;
    } damage[] = {
        {QH_MAGIC, 4, 0x58585858},     /* magic */
        {QH_MAGIC, 1, 'W'},            /* one byte of it */
        {QH_VERSION, 4, 2},            /* version */
        {QH_KIND, 4, WEFT_QUEUE_LIFO}, /* a kind of another layout */
        {QH_KIND, 4, 77},              /* no kind at all */
        {QH_FLAGS, 4, 0x80},           /* unknown flags */
        {QH_RING, 8, 4097},            /* ring not a multiple of 8 */
        {QH_RING, 8, 8192},            /* ring larger than the object */
        {QH_RING, 8, 0},
        {QH_RING, 8, UINT64_MAX},
    };
    for (size_t i = 0; i < sizeof damage / sizeof damage[0]; i++) {
        memcpy(h + damage[i].off, &damage[i].value, damage[i].len);
        weft_queue *x = (weft_queue *)(uintptr_t)0x42;
        weft_status r = weft_queue_open(s, "q", &x);
        if (r != WEFT_CORRUPTED)
            FAIL_AT("damage %zu: weft_queue_open returned %s, expected WEFT_CORRUPTED", i, weft_status_name(r));
        ASSERT_PTR_EQ(x, (weft_queue *)(uintptr_t)0x42);
        r = weft_queue_from_token(token, token_len, &x);
        if (r != WEFT_CORRUPTED)
            FAIL_AT("damage %zu: weft_queue_from_token returned %s, expected WEFT_CORRUPTED", i, weft_status_name(r));
        /* The handle opened before the damage never crashes. */
        poke_damaged(q);
        memcpy(h, saved, QH_SIZE);
        (void)weft_queue_get_into(q, buf, sizeof buf, 0, &len); /* take a "p" it may have put */
        memcpy(saved, h, QH_SIZE);
    }

    /* Fields checked on every operation: cursors, shutdown state. */
    weft_queue *other = NULL;
    ASSERT_OK(weft_queue_open(s, "q", &other));
    /* The queue is empty: head == tail == (seq << 32 | offset). */
    uint64_t cur = 0, tail = 0;
    memcpy(&cur, h + QH_HEAD, 8);
    memcpy(&tail, h + QH_TAIL, 8);
    ASSERT_UEQ(cur, tail);
    const uint64_t seq1 = (uint64_t)1 << 32;
    /* `put_sees_it`: a producer that knows of room from its own hint need not read `head`,
     * so only a damaged `tail` or state is sure to stop a put; a get always reads both. */
    const struct {
        size_t off, len;
        uint64_t value;
        bool put_sees_it;
    } live[] = {
        {QH_TAIL, 8, cur + seq1 + 12, true},          /* one item ending at a misaligned offset */
        {QH_TAIL, 8, cur + 1000 * seq1, true},        /* 1000 items in an 8-item queue */
        {QH_TAIL, 8, cur + 2 * seq1 + 8, false},      /* 2 items in 8 bytes */
        {QH_TAIL, 8, (cur >> 32 << 32) | 8192, true}, /* an offset outside the ring */
        {QH_HEAD, 8, cur + 5 * seq1, false},          /* head ahead of tail */
        {QH_SHUTDOWN, 4, 7, true},                    /* no such state */
    };
    for (size_t i = 0; i < sizeof live / sizeof live[0]; i++) {
        memcpy(h + live[i].off, &live[i].value, live[i].len);
        weft_status r1 = weft_queue_get_into(q, buf, sizeof buf, 0, &len);
        weft_status r2 = weft_queue_put(other, "x", 1, 0);
        if (r1 != WEFT_CORRUPTED || (live[i].put_sees_it ? r2 != WEFT_CORRUPTED : !damaged_ok(r2)))
            FAIL_AT("live damage %zu: get returned %s, put %s", i, weft_status_name(r1), weft_status_name(r2));
        /* (A put that went in may have made the damaged cursors consistent again.) */
        if (r2 != WEFT_OK) ASSERT_STATUS(weft_queue_get_into(other, buf, sizeof buf, 100 * MS, &len), WEFT_CORRUPTED);
        size_t n = 0;
        (void)weft_queue_size(q, &n);
        ASSERT(n <= 8);
        poke_damaged(other);
        memcpy(h, saved, QH_SIZE);
    }
    /* Repaired, it all works again. */
    put_s(other, "again");
    expect_s(q, "again");
    ASSERT_OK(weft_queue_task_done(other));
    ASSERT_OK(weft_queue_join(q, 0));
    weft_queue_free(other);

    munmap(map, (size_t)st.st_size);
    close(fd);
    weft_queue_free(q);
    weft_space_free(s);
    ASSERT_OK(weft_space_unlink(name));
    fd_end(&f);
    xp_end(&g);
}
