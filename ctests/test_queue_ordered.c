/* Shared LIFO and priority queues (weft_queue_new_in with WEFT_QUEUE_LIFO or
 * WEFT_QUEUE_PRIORITY): Python's LifoQueue and PriorityQueue in a space. Covered: the order of
 * each kind (ties in put order, negative and extreme priorities), put_many/get_many and words,
 * across a forked child both ways, bounds by count and by bytes, a buffer too small, joinable
 * and shutdown, a corrupted header and corrupted state, and children SIGKILLed at random
 * moments while putting and getting, after which the queue holds exactly the committed items
 * in order and works.
 */
#define _GNU_SOURCE
#include "helpers.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define KIB ((size_t)1024)

static const uint32_t kinds[2] = {WEFT_QUEUE_LIFO, WEFT_QUEUE_PRIORITY};

/* ---- helpers ------------------------------------------------------------------------------- */

static weft_queue_options qopts(uint32_t kind, uint32_t flags, uint64_t maxsize, uint64_t max_bytes) {
    weft_queue_options o;
    memset(&o, 0, sizeof o);
    o.kind = kind;
    o.flags = flags;
    o.maxsize = maxsize;
    o.max_bytes = max_bytes;
    return o;
}

/* A queue in the default space; the test fails unless it is made. */
static weft_queue *shared_q(uint32_t kind, uint32_t flags, uint64_t maxsize, uint64_t max_bytes) {
    weft_queue_options o = qopts(kind, flags, maxsize, max_bytes);
    weft_queue *q = NULL;
    ASSERT_OK(weft_queue_new_in(NULL, NULL, &o, &q));
    ASSERT_NOT_NULL(q);
    return q;
}

static size_t qsize(const weft_queue *q) {
    size_t n = (size_t)-1;
    ASSERT_OK(weft_queue_size(q, &n));
    return n;
}

static void put_p(weft_queue *q, const char *s, int64_t priority) {
    ASSERT_OK(weft_queue_put_priority(q, s, strlen(s), priority, 0));
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

/* Takes the next item, which must be the 4-byte number `want`. */
static void expect_u32_at(weft_queue *q, uint32_t want, int line) {
    uint32_t v = 0;
    size_t len = 0;
    weft_status st = weft_queue_get_into(q, &v, sizeof v, 5 * SEC, &len);
    if (st != WEFT_OK || len != sizeof v || v != want)
        FAIL_AT("line %d: got %s, %zu bytes, %u; expected %u", line, weft_status_name(st), len, v, want);
}
#define expect_u32(q, v) expect_u32_at((q), (v), __LINE__)

/* A priority for item `i` of the cross-process tests: -5..5, with many ties. */
static int64_t prio_of(uint32_t i) {
    return (int64_t)((i * 37u) % 11u) - 5;
}

/* ---- 1. order ------------------------------------------------------------------------------ */

TEST(queue_ordered_lifo_delivers_last_put_first) {
    xp_guard g;
    xp_begin(&g);
    weft_queue *q = shared_q(WEFT_QUEUE_LIFO, 0, 0, 0);
    weft_queue_options o;
    ASSERT_OK(weft_queue_options_get(q, &o));
    ASSERT_UEQ(o.kind, WEFT_QUEUE_LIFO);
    put_p(q, "a", 0);
    put_p(q, "b", 0);
    put_p(q, "c", 0);
    expect_s(q, "c");
    expect_s(q, "b");
    put_p(q, "d", 0);
    expect_s(q, "d");
    expect_s(q, "a");
    /* The priority is ignored. */
    put_p(q, "p1", 5);
    put_p(q, "p2", -5);
    expect_s(q, "p2");
    expect_s(q, "p1");
    /* Words. */
    for (uintptr_t w = 1; w <= 3; w++) ASSERT_OK(weft_queue_put_word(q, w, 0));
    for (uintptr_t w = 3; w >= 1; w--) {
        uintptr_t got = 0;
        ASSERT_OK(weft_queue_get_word(q, 0, &got));
        ASSERT_UEQ(got, w);
    }
    /* put_many then get_many: the last one first. */
    const void *items[3] = {"x", "yy", "zzz"};
    size_t lens[3] = {1, 2, 3}, done = 0;
    ASSERT_OK(weft_queue_put_many(q, items, lens, 3, 0, &done));
    ASSERT_UEQ(done, 3);
    weft_bytes *b = NULL;
    size_t count = 0;
    ASSERT_OK(weft_queue_get_many(q, 10, 0, &b, &count));
    ASSERT_UEQ(count, 3);
    const uint8_t want[] = {3, 0, 0, 0, 0, 0, 0, 0, 'z', 'z', 'z', 2, 0, 0, 0, 0, 0, 0, 0, 'y', 'y',
                            1, 0, 0, 0, 0, 0, 0, 0, 'x'};
    ASSERT_UEQ(weft_bytes_len(b), sizeof want);
    ASSERT(memcmp(weft_bytes_data(b), want, sizeof want) == 0);
    weft_bytes_free(b);
    ASSERT(weft_queue_empty(q));
    weft_queue_free(q);
    xp_end(&g);
}

TEST(queue_ordered_priority_lowest_first_fifo_among_equals) {
    xp_guard g;
    xp_begin(&g);
    weft_queue *q = shared_q(WEFT_QUEUE_PRIORITY, WEFT_QUEUE_JOINABLE, 0, 0);
    put_p(q, "e1", 0);
    put_p(q, "n1", -7);
    put_p(q, "max", INT64_MAX);
    put_p(q, "min", INT64_MIN);
    put_p(q, "e2", 0);
    put_p(q, "n2", -7);
    put_p(q, "p", 3);
    put_p(q, "e3", 0);
    ASSERT_UEQ(qsize(q), 8);
    const char *order[] = {"min", "n1", "n2", "e1", "e2", "e3", "p", "max"};
    for (size_t i = 0; i < 8; i++) expect_s(q, order[i]);
    /* weft_queue_put is priority 0. */
    ASSERT_OK(weft_queue_put(q, "z0", 2, 0));
    put_p(q, "a-1", -1);
    put_p(q, "z1", 0);
    expect_s(q, "a-1");
    expect_s(q, "z0");
    expect_s(q, "z1");
    size_t n = 0;
    ASSERT_OK(weft_queue_unfinished(q, &n));
    ASSERT_UEQ(n, 11);
    for (size_t i = 0; i < 11; i++) ASSERT_OK(weft_queue_task_done(q));
    ASSERT_OK(weft_queue_join(q, 0));
    ASSERT_STATUS(weft_queue_task_done(q), WEFT_INVALID_STATE);
    weft_queue_free(q);
    xp_end(&g);
}

/* ---- 2. across a forked child ---------------------------------------------------------------- */

typedef struct {
    char token[WEFT_TOKEN_MAX];
    size_t token_len;
    uint32_t kind;
} xchild;

/* The child opens the queue from its token and puts 100 numbered items with priorities. */
static void child_puts(void *arg) {
    xchild *x = arg;
    weft_queue *q = NULL;
    ASSERT_OK(weft_queue_from_token(x->token, x->token_len, &q));
    for (uint32_t i = 0; i < 100; i++) ASSERT_OK(weft_queue_put_priority(q, &i, sizeof i, prio_of(i), 5 * SEC));
    weft_queue_free(q);
}

/* The child takes 50 items the parent put and checks their order. */
static void child_gets(void *arg) {
    xchild *x = arg;
    weft_queue *q = NULL;
    ASSERT_OK(weft_queue_from_token(x->token, x->token_len, &q));
    if (x->kind == WEFT_QUEUE_LIFO) {
        for (uint32_t i = 50; i-- > 0;) expect_u32(q, i);
    } else {
        for (int64_t p = -5; p <= 5; p++)
            for (uint32_t i = 0; i < 50; i++)
                if (prio_of(i) == p) expect_u32(q, i);
    }
    ASSERT(weft_queue_empty(q));
    weft_queue_free(q);
}

TEST_TIMEOUT(queue_ordered_order_holds_across_a_forked_child, 30000) {
    xp_guard g;
    xp_begin(&g);
    xchild *x = xp_shared(sizeof *x);
    for (int k = 0; k < 2; k++) {
        weft_queue *q = shared_q(kinds[k], 0, 0, 0);
        x->kind = kinds[k];
        ASSERT_OK(weft_queue_token(q, x->token, sizeof x->token, &x->token_len));
        xp_wait_ok(xp_fork(child_puts, x));
        ASSERT_UEQ(qsize(q), 100);
        if (kinds[k] == WEFT_QUEUE_LIFO) {
            for (uint32_t i = 100; i-- > 0;) expect_u32(q, i);
        } else {
            for (int64_t p = -5; p <= 5; p++)
                for (uint32_t i = 0; i < 100; i++)
                    if (prio_of(i) == p) expect_u32(q, i);
        }
        for (uint32_t i = 0; i < 50; i++) ASSERT_OK(weft_queue_put_priority(q, &i, sizeof i, prio_of(i), 0));
        xp_wait_ok(xp_fork(child_gets, x));
        ASSERT(weft_queue_empty(q));
        weft_queue_free(q);
    }
    xp_end(&g);
}

/* ---- 3. bounds, buffers, shutdown ------------------------------------------------------------- */

TEST_TIMEOUT(queue_ordered_bounds_by_count_and_by_bytes, 30000) {
    xp_guard g;
    xp_begin(&g);
    for (int k = 0; k < 2; k++) {
        weft_queue *q = shared_q(kinds[k], 0, 2, 0);
        put_p(q, "a", 1);
        put_p(q, "b", 1);
        ASSERT(weft_queue_full(q));
        ASSERT_STATUS(weft_queue_put_priority(q, "c", 1, 0, 0), WEFT_WOULD_BLOCK);
        ASSERT_STATUS(weft_queue_put_priority(q, "c", 1, 0, 10 * MS), WEFT_TIMEOUT);
        expect_s(q, kinds[k] == WEFT_QUEUE_LIFO ? "b" : "a");
        ASSERT(!weft_queue_full(q));
        put_p(q, "c", 0);
        expect_s(q, "c");
        weft_queue_free(q);

        /* Storage: rounded up to 64-byte chunks, from 64 bytes to 1 GiB. */
        weft_queue_options o = qopts(kinds[k], 0, 0, 56);
        weft_queue *x = NULL;
        ASSERT_STATUS(weft_queue_new_in(NULL, NULL, &o, &x), WEFT_INVALID_ARGUMENT);
        o.max_bytes = ((uint64_t)1 << 30) + 8;
        ASSERT_STATUS(weft_queue_new_in(NULL, NULL, &o, &x), WEFT_INVALID_ARGUMENT);
        ASSERT_NULL(x);
        q = shared_q(kinds[k], 0, 0, 100);
        ASSERT_OK(weft_queue_options_get(q, &o));
        ASSERT_UEQ(o.max_bytes, 128);
        weft_queue_free(q);

        /* 256 bytes: four chunks; the largest item (232 bytes) fills them. */
        q = shared_q(kinds[k], 0, 0, 256);
        uint8_t big[300];
        memset(big, 0x5a, sizeof big);
        ASSERT_STATUS(weft_queue_put(q, big, 233, WEFT_FOREVER), WEFT_INVALID_ARGUMENT); /* no wait */
        ASSERT_OK(weft_queue_put(q, big, 232, 0));
        ASSERT_STATUS(weft_queue_put(q, NULL, 0, 0), WEFT_WOULD_BLOCK);
        uint8_t back[300];
        size_t len = 0;
        ASSERT_OK(weft_queue_get_into(q, back, sizeof back, 0, &len));
        ASSERT_UEQ(len, 232);
        ASSERT(memcmp(back, big, 232) == 0);
        /* Two chunks each: two fit. */
        const void *items[3] = {big, big, "x"};
        size_t lens[3] = {100, 104, 1}, done = 0;
        ASSERT_STATUS(weft_queue_put_many(q, items, lens, 3, 0, &done), WEFT_WOULD_BLOCK);
        ASSERT_UEQ(done, 2);
        /* An item that never fits: refused before anything is put. */
        lens[0] = 1;
        lens[1] = 300;
        ASSERT_STATUS(weft_queue_put_many(q, items, lens, 2, 0, &done), WEFT_INVALID_ARGUMENT);
        ASSERT_UEQ(done, 0);
        ASSERT_UEQ(qsize(q), 2);
        ASSERT_OK(weft_queue_get_into(q, back, sizeof back, 0, &len));
        ASSERT_OK(weft_queue_get_into(q, back, sizeof back, 0, &len));
        ASSERT(weft_queue_empty(q));
        ASSERT_OK(weft_queue_put(q, big, 232, 0)); /* every chunk came back */
        weft_queue_free(q);
    }
    xp_end(&g);
}

TEST(queue_ordered_get_into_too_small_leaves_the_item) {
    xp_guard g;
    xp_begin(&g);
    for (int k = 0; k < 2; k++) {
        weft_queue *q = shared_q(kinds[k], 0, 0, 0);
        put_p(q, "later", 9);
        put_p(q, "hello world", 1); /* next for both kinds */
        char small[4] = {0};
        size_t len = 0;
        ASSERT_STATUS(weft_queue_get_into(q, small, sizeof small, 0, &len), WEFT_BUFFER_TOO_SMALL);
        ASSERT_UEQ(len, 11);
        ASSERT(small[0] == 0);
        ASSERT_UEQ(qsize(q), 2);
        uintptr_t w = 0;
        ASSERT_STATUS(weft_queue_get_word(q, 0, &w), WEFT_INVALID_STATE);
        expect_s(q, "hello world");
        expect_s(q, "later");
        weft_queue_free(q);
    }
    xp_end(&g);
}

TEST(queue_ordered_shutdown_drains_in_order_or_discards) {
    xp_guard g;
    xp_begin(&g);
    for (int k = 0; k < 2; k++) {
        weft_queue *q = shared_q(kinds[k], WEFT_QUEUE_JOINABLE, 0, 0);
        put_p(q, "two", 2);
        put_p(q, "one", 1);
        ASSERT_OK(weft_queue_shutdown(q, false));
        ASSERT_STATUS(weft_queue_put(q, "x", 1, 0), WEFT_CLOSED);
        expect_s(q, "one");
        expect_s(q, "two");
        char buf[8];
        size_t len = 0;
        ASSERT_STATUS(weft_queue_get_into(q, buf, sizeof buf, WEFT_FOREVER, &len), WEFT_CLOSED);
        weft_queue_free(q);

        q = shared_q(kinds[k], WEFT_QUEUE_JOINABLE, 0, 0);
        put_p(q, "a", 0);
        put_p(q, "b", 0);
        put_p(q, "c", 0);
        ASSERT_OK(weft_queue_get_into(q, buf, sizeof buf, 0, &len)); /* taken, not done */
        ASSERT_OK(weft_queue_shutdown(q, true));
        ASSERT_UEQ(qsize(q), 0);
        ASSERT_STATUS(weft_queue_get_into(q, buf, sizeof buf, 0, &len), WEFT_CLOSED);
        size_t n = 0;
        ASSERT_OK(weft_queue_unfinished(q, &n));
        ASSERT_UEQ(n, 1); /* the discarded ones count as done */
        ASSERT_OK(weft_queue_task_done(q));
        ASSERT_OK(weft_queue_join(q, 0));
        weft_queue_free(q);
    }
    xp_end(&g);
}

/* ---- 4. a corrupted queue ------------------------------------------------------------------------ */

/* Offsets in the payload (src/queue/shared/mod.rs and ordered.rs document and pin them). */
#define QH_MAGIC 0
#define QH_KIND 8
#define QH_MAXSIZE 16
#define QH_RING 24
#define QO_COUNT 512
#define QO_FREE_COUNT 528
/* The arena of a queue of maxsize 8 and 4096 bytes: 1536 + 64 (index) + 256 (links). */
#define QO_ARENA 1856

static bool damaged_ok(weft_status st) {
    return st == WEFT_OK || st == WEFT_CORRUPTED || st == WEFT_WOULD_BLOCK || st == WEFT_CLOSED ||
           st == WEFT_INVALID_STATE || st == WEFT_BUFFER_TOO_SMALL;
}

/* Uses a handle on a damaged queue: no crash, no hang, only sensible statuses. */
static void poke_damaged(weft_queue *q) {
    char buf[64];
    size_t len = 0, n = 0;
    weft_status st = weft_queue_put_priority(q, "p", 1, 3, 0);
    if (!damaged_ok(st)) FAIL_AT("put on a damaged queue: %s", weft_status_name(st));
    st = weft_queue_get_into(q, buf, sizeof buf, 0, &len);
    if (!damaged_ok(st)) FAIL_AT("get on a damaged queue: %s", weft_status_name(st));
    (void)weft_queue_size(q, &n);
    (void)weft_queue_empty(q);
    (void)weft_queue_full(q);
}

TEST_TIMEOUT(queue_ordered_corrupted_queue_is_detected, 30000) {
    xp_guard g;
    xp_begin(&g);
    fd_guard f;
    fd_begin(&f);
    char name[64], path[128];
    xp_name(name, sizeof name, "qocorrupt");
    snprintf(path, sizeof path, "/dev/shm/weft.%s", name);
    weft_space *s = NULL;
    ASSERT_OK(weft_space_create(name, 256 * KIB, &s));
    weft_queue_options o = qopts(WEFT_QUEUE_PRIORITY, WEFT_QUEUE_JOINABLE, 8, 4096);
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
    uint32_t kind = 0;
    memcpy(&kind, h + QH_KIND, 4);
    ASSERT_UEQ(kind, WEFT_QUEUE_PRIORITY);

    /* A damaged item: refused, not delivered torn; repaired, it comes out. */
    put_p(q, "hello", 1);
    h[QO_ARENA + 5] ^= 0x5a; /* its tag */
    char buf[64];
    size_t len = 0;
    ASSERT_STATUS(weft_queue_get_into(q, buf, sizeof buf, 0, &len), WEFT_CORRUPTED);
    h[QO_ARENA + 5] ^= 0x5a;
    uint32_t huge = 1u << 30, saved_len;
    memcpy(&saved_len, h + QO_ARENA, 4);
    memcpy(h + QO_ARENA, &huge, 4); /* a length far beyond the arena */
    ASSERT_STATUS(weft_queue_get_into(q, buf, sizeof buf, 0, &len), WEFT_CORRUPTED);
    memcpy(h + QO_ARENA, &saved_len, 4);
    /* The counts. */
    uint64_t count = 0, bad = 99;
    put_p(q, "world", 0);
    memcpy(&count, h + QO_COUNT, 8);
    ASSERT_UEQ(count, 2);
    memcpy(h + QO_COUNT, &bad, 8);
    ASSERT_STATUS(weft_queue_get_into(q, buf, sizeof buf, 0, &len), WEFT_CORRUPTED);
    ASSERT_STATUS(weft_queue_put(q, "x", 1, 0), WEFT_CORRUPTED);
    memcpy(h + QO_COUNT, &count, 8);
    uint64_t free_count = 0;
    memcpy(&free_count, h + QO_FREE_COUNT, 8);
    ASSERT_UEQ(free_count, 64 - 2);
    memcpy(h + QO_FREE_COUNT, &bad, 8);
    ASSERT_STATUS(weft_queue_put(q, "x", 1, 0), WEFT_CORRUPTED);
    memcpy(h + QO_FREE_COUNT, &free_count, 8);
    expect_s(q, "world");
    expect_s(q, "hello");
    ASSERT_OK(weft_queue_task_done(q));
    ASSERT_OK(weft_queue_task_done(q));

    /* Header fields checked when a queue is opened. */
    uint8_t saved[64];
    memcpy(saved, h, sizeof saved);
    struct {
        size_t off, len;
        uint64_t value;
    } damage[] = {
        {QH_MAGIC, 4, 0x58585858},     /* magic */
        {QH_KIND, 4, WEFT_QUEUE_FIFO}, /* another kind: another layout */
        {QH_KIND, 4, WEFT_QUEUE_LIFO}, /* the same layout: opens (below) */
        {QH_KIND, 4, 77},              /* no kind at all */
        {QH_MAXSIZE, 8, 1000},         /* another index size */
        {QH_RING, 8, 4097},            /* not whole chunks */
        {QH_RING, 8, 8192},            /* larger than the object */
        {QH_RING, 8, 0},
    };
    for (size_t i = 0; i < sizeof damage / sizeof damage[0]; i++) {
        memcpy(h + damage[i].off, &damage[i].value, damage[i].len);
        weft_queue *x = (weft_queue *)(uintptr_t)0x42;
        weft_status r = weft_queue_open(s, "q", &x);
        if (damage[i].off == QH_KIND && damage[i].value == WEFT_QUEUE_LIFO) {
            /* A LIFO view of the same layout is a valid queue. */
            ASSERT_OK(r);
            ASSERT_OK(weft_queue_options_get(x, &o));
            ASSERT_UEQ(o.kind, WEFT_QUEUE_LIFO);
            weft_queue_free(x);
        } else {
            if (r != WEFT_CORRUPTED)
                FAIL_AT("damage %zu: weft_queue_open returned %s, expected WEFT_CORRUPTED", i, weft_status_name(r));
            ASSERT_PTR_EQ(x, (weft_queue *)(uintptr_t)0x42);
            r = weft_queue_from_token(token, token_len, &x);
            if (r != WEFT_CORRUPTED)
                FAIL_AT("damage %zu: weft_queue_from_token returned %s", i, weft_status_name(r));
        }
        poke_damaged(q); /* the handle opened before the damage never crashes */
        memcpy(h, saved, sizeof saved);
        while (weft_queue_get_into(q, buf, sizeof buf, 0, &len) == WEFT_OK) { /* a "p" it may have put */
        }
    }
    weft_queue *again = NULL;
    ASSERT_OK(weft_queue_open(s, "q", &again));
    put_p(again, "after", 0);
    expect_s(q, "after");
    weft_queue_free(again);

    ASSERT_EQ(munmap(map, (size_t)st.st_size), 0);
    close(fd);
    weft_queue_free(q);
    weft_space_free(s);
    ASSERT_OK(weft_space_unlink(name));
    fd_end(&f);
    xp_end(&g);
}

/* ---- 5. children SIGKILLed while putting and getting ------------------------------------------- */

#define KL_ROUNDS 12
#define KL_LOG 100000
#define KL_MAXSEQ 100000
#define KL_MAXMSG (64 * 1024)
#define KL_MAXSIZE 64
#define KL_BYTES (512 * KIB)
#define KL_MAGIC 0x6f726471u

/* A message: this head, then bytes derived from (round, seq). */
typedef struct {
    uint32_t seq, len, round, magic;
    int64_t priority;
} kl_head;

typedef struct {
    atomic_int started, stop;
    atomic_uint attempting; /* seq + 1 of the message whose put began last */
    atomic_uint committed;  /* messages whose put returned WEFT_OK */
    atomic_int in_get;      /* 1 from before a get until its item is logged */
    atomic_uint count;      /* entries of log */
    uint32_t round;
    uint32_t log[KL_LOG];
} kl_state;

static kl_state *kls;
static weft_queue *kl_q; /* the parent's handle, inherited by the children */

static uint8_t kl_byte(uint32_t round, uint32_t seq, size_t i) {
    return (uint8_t)(round * 131u + seq * 2654435761u + (uint32_t)i * 7u + (uint32_t)(i >> 8));
}

static int64_t kl_prio(uint32_t seq) {
    return (int64_t)((seq * 2654435761u) >> 28) - 8; /* -8..7 */
}

static void kl_make(uint8_t *buf, uint32_t round, uint32_t seq, size_t len) {
    kl_head h = {seq, (uint32_t)len, round, KL_MAGIC, kl_prio(seq)};
    memcpy(buf, &h, sizeof h);
    for (size_t i = sizeof h; i < len; i++) buf[i] = kl_byte(round, seq, i);
}

/* Checks a whole message of round `round`; its head in `*out`. */
static void kl_check(const uint8_t *buf, size_t len, uint32_t round, kl_head *out) {
    if (len < sizeof *out) FAIL_AT("a message of %zu bytes", len);
    memcpy(out, buf, sizeof *out);
    if (out->magic != KL_MAGIC || out->len != len || out->round != round || out->seq >= KL_MAXSEQ ||
        out->priority != kl_prio(out->seq))
        FAIL_AT("a foreign message head (seq %u, len %u of %zu, round %u)", out->seq, out->len, len, out->round);
    for (size_t i = sizeof *out; i < len; i++)
        if (buf[i] != kl_byte(round, out->seq, i)) FAIL_AT("message %u is torn at byte %zu", out->seq, i);
}

static void kl_produce(void *arg) {
    (void)arg;
    uint8_t *buf = malloc(KL_MAXMSG);
    ASSERT_NOT_NULL(buf);
    uint64_t rng = 0x9E3779B97F4A7C15ull ^ (uint64_t)getpid();
    atomic_fetch_add(&kls->started, 1);
    uint32_t seq = 0;
    while (seq < KL_MAXSEQ && !atomic_load(&kls->stop)) {
        uint64_t r = xp_rand(&rng);
        size_t len = sizeof(kl_head) + (size_t)((r >> 8) % ((r & 1) ? 200 : KL_MAXMSG - sizeof(kl_head) + 1));
        kl_make(buf, kls->round, seq, len);
        atomic_store(&kls->attempting, seq + 1);
        weft_status st = weft_queue_put_priority(kl_q, buf, len, kl_prio(seq), 20 * MS);
        if (st == WEFT_OK) {
            atomic_store(&kls->committed, ++seq);
        } else if (st != WEFT_TIMEOUT) {
            FAIL_AT("producer: put returned %s (%s)", weft_status_name(st), weft_last_error_message());
        }
    }
    while (!atomic_load(&kls->stop)) runner_sleep_ms(1);
    free(buf);
}

static void kl_consume(void *arg) {
    (void)arg;
    uint8_t *buf = malloc(KL_MAXMSG);
    ASSERT_NOT_NULL(buf);
    atomic_fetch_add(&kls->started, 1);
    while (!atomic_load(&kls->stop)) {
        unsigned n = atomic_load(&kls->count);
        if (n == KL_LOG) {
            runner_sleep_ms(1);
            continue;
        }
        atomic_store(&kls->in_get, 1);
        size_t len = 0;
        weft_status st = weft_queue_get_into(kl_q, buf, KL_MAXMSG, 20 * MS, &len);
        if (st == WEFT_OK) {
            kl_head h;
            memcpy(&h, buf, len < sizeof h ? len : sizeof h);
            kls->log[n] = h.seq; /* logged first: the window between taking and logging is small */
            atomic_store(&kls->count, n + 1);
            kl_check(buf, len, kls->round, &h);
        } else if (st != WEFT_TIMEOUT) {
            FAIL_AT("consumer: get returned %s (%s)", weft_status_name(st), weft_last_error_message());
        }
        atomic_store(&kls->in_get, 0);
    }
    free(buf);
}

TEST_TIMEOUT(queue_ordered_children_killed_mid_put_and_get_leave_exact_contents, 120000) {
    xp_guard g;
    xp_begin(&g);
    fd_guard f;
    fd_begin(&f);
    kls = xp_shared(sizeof *kls);
    uint8_t *del = malloc(KL_MAXSEQ);
    uint8_t *buf = malloc(KL_BYTES);
    ASSERT(del && buf);
    uint64_t rng = 0x853C49E6748FEA9Bull ^ (uint64_t)getpid();
    unsigned killed_in_put = 0, drained_total = 0;
    for (int k = 0; k < 2; k++) {
        const uint32_t kind = kinds[k];
        kl_q = shared_q(kind, 0, KL_MAXSIZE, KL_BYTES);
        for (uint32_t round = 0; round < KL_ROUNDS; round++) {
            memset(kls, 0, sizeof *kls);
            kls->round = round;
            pid_t prod = xp_fork(kl_produce, NULL), cons = xp_fork(kl_consume, NULL);
            xp_wait_count(&kls->started, 2);
            runner_sleep_ms(5 + (unsigned)(xp_rand(&rng) % 40));
            /* Kill the producer, and the consumer three times in four, in a random order, at
             * random moments. */
            bool kill_consumer = xp_rand(&rng) % 4 != 0, producer_first = xp_rand(&rng) % 2;
            if (producer_first) {
                xp_kill(prod);
                runner_sleep_ms((unsigned)(xp_rand(&rng) % 5));
            }
            unsigned may_hold = 0;
            if (kill_consumer) {
                xp_kill(cons);
                may_hold = (unsigned)atomic_load(&kls->in_get);
            }
            if (!producer_first) xp_kill(prod);
            atomic_store(&kls->stop, 1);
            if (!kill_consumer) xp_wait_ok(cons);
            if (atomic_load(&kls->attempting) > atomic_load(&kls->committed)) killed_in_put++;

            /* What the consumer logged, then what is left, in the kind's order. */
            memset(del, 0, KL_MAXSEQ);
            unsigned attempting = atomic_load(&kls->attempting), committed = atomic_load(&kls->committed);
            for (unsigned e = 0; e < atomic_load(&kls->count); e++) {
                uint32_t seq = kls->log[e];
                if (seq >= attempting) FAIL_AT("round %u: message %u taken but never put", round, seq);
                if (del[seq]++) FAIL_AT("round %u: message %u taken twice", round, seq);
            }
            kl_head prev = {0, 0, 0, 0, INT64_MIN};
            bool first = true;
            for (;;) {
                size_t len = 0;
                /* The first get may have to take over the lock of a child killed holding it. */
                weft_status st = weft_queue_get_into(kl_q, buf, KL_BYTES, qsize(kl_q) ? 5 * SEC : 0, &len);
                if (st == WEFT_WOULD_BLOCK && qsize(kl_q) == 0) break;
                if (st != WEFT_OK)
                    FAIL_AT("round %u: draining: %s (%s)", round, weft_status_name(st), weft_last_error_message());
                kl_head h;
                kl_check(buf, len, round, &h);
                if (h.seq >= attempting) FAIL_AT("round %u: message %u left but never put", round, h.seq);
                if (del[h.seq]++) FAIL_AT("round %u: message %u delivered twice", round, h.seq);
                /* One producer: LIFO leaves them newest first; priority by (priority, seq). */
                if (!first) {
                    bool ordered = kind == WEFT_QUEUE_LIFO
                                       ? h.seq < prev.seq
                                       : (h.priority > prev.priority || (h.priority == prev.priority && h.seq > prev.seq));
                    if (!ordered)
                        FAIL_AT("round %u: message %u (priority %" PRId64 ") after %u (priority %" PRId64 ")", round,
                                h.seq, h.priority, prev.seq, prev.priority);
                }
                prev = h;
                first = false;
                drained_total++;
            }
            /* Every committed message exactly once, but for one a killed consumer may hold. */
            unsigned lost = 0;
            for (unsigned s = 0; s < committed; s++) lost += del[s] == 0;
            if (lost > may_hold)
                FAIL_AT("round %u: %u committed messages lost (consumer in a get: %u)", round, lost, may_hold);

            /* The queue works, and no capacity leaked: maxsize items fit, then the largest. */
            ASSERT_UEQ(qsize(kl_q), 0);
            for (uint32_t i = 0; i < KL_MAXSIZE; i++) ASSERT_OK(weft_queue_put_priority(kl_q, &i, sizeof i, -(int64_t)i, 0));
            ASSERT_STATUS(weft_queue_put(kl_q, "one more", 8, 0), WEFT_WOULD_BLOCK);
            for (uint32_t i = 0; i < KL_MAXSIZE; i++) expect_u32(kl_q, KL_MAXSIZE - 1 - i); /* both kinds */
            memset(buf, (int)round, KL_BYTES - 24);
            ASSERT_OK(weft_queue_put(kl_q, buf, KL_BYTES - 24, 0));
            ASSERT_STATUS(weft_queue_put(kl_q, NULL, 0, 0), WEFT_WOULD_BLOCK);
            size_t len = 0;
            memset(buf, 0xff, KL_BYTES);
            ASSERT_OK(weft_queue_get_into(kl_q, buf, KL_BYTES, 0, &len));
            ASSERT_UEQ(len, KL_BYTES - 24);
            for (size_t i = 0; i < len; i++)
                if (buf[i] != (uint8_t)round) FAIL_AT("round %u: byte %zu of the largest item differs", round, i);
        }
        weft_queue_free(kl_q);
    }
    if (getenv("WEFT_CTESTS_VERBOSE"))
        fprintf(stderr, "# %u producers killed inside a put, %u messages drained\n", killed_in_put, drained_total);
    ASSERT_GT(drained_total, 0);
    free(buf);
    free(del);
    fd_end(&f);
    xp_end(&g);
}
