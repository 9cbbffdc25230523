/* Typed shared data (weft_array_*: Python's multiprocessing.Value and Array) for every type
 * code, its lock and lock-free atomics across processes, recovery after a process died holding
 * its lock; raw named shared memory (weft_shm_*: Python's SharedMemory).
 */
#define _GNU_SOURCE
#include "helpers.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#define WAIT_LIMIT (10 * SEC)
#define N 5

typedef struct {
    char code;
    size_t size;
    int kind; /* 0 signed integer, 1 unsigned integer, 2 floating point */
} type_code;

static const type_code TYPES[] = {
    {'b', 1, 0}, {'B', 1, 1}, {'h', sizeof(short), 0}, {'H', sizeof(unsigned short), 1},
    {'i', sizeof(int), 0}, {'I', sizeof(unsigned), 1}, {'l', sizeof(long), 0}, {'L', sizeof(unsigned long), 1},
    {'q', 8, 0}, {'Q', 8, 1}, {'f', sizeof(float), 2}, {'d', sizeof(double), 2},
};
#define N_TYPES (sizeof TYPES / sizeof TYPES[0])

/* The bytes of value `v` (an integer, or v / 4 for floats) as an item of type `t`. */
static void encode(const type_code *t, int64_t v, void *out) {
    if (t->kind == 2) {
        if (t->size == sizeof(float)) {
            float f = (float)v / 4.0f;
            memcpy(out, &f, sizeof f);
        } else {
            double d = (double)v / 4.0;
            memcpy(out, &d, sizeof d);
        }
    } else {
        memcpy(out, &v, t->size); /* the low bytes (little-endian) */
    }
}

/* `v` cut to the type's width and sign- or zero-extended back, as weft_array_load reports it. */
static int64_t extend(const type_code *t, int64_t v) {
    if (t->size == 8) return v;
    unsigned bits = (unsigned)t->size * 8;
    uint64_t mask = (UINT64_C(1) << bits) - 1, u = (uint64_t)v & mask;
    if (t->kind == 0 && (u >> (bits - 1))) u |= ~mask;
    return (int64_t)u;
}

/* The largest value of an integer type (as weft_array_load reports it) and what adding 1 to
 * it wraps to. */
static int64_t max_of(const type_code *t) {
    if (t->kind == 1) return t->size == 8 ? -1 : (int64_t)((UINT64_C(1) << (t->size * 8)) - 1);
    return t->size == 8 ? INT64_MAX : (int64_t)((UINT64_C(1) << (t->size * 8 - 1)) - 1);
}
static int64_t wrapped_of(const type_code *t) {
    if (t->kind == 1) return 0;
    return t->size == 8 ? INT64_MIN : -(int64_t)(UINT64_C(1) << (t->size * 8 - 1));
}

#define T_STATUS(t, expr, want)                                                                    \
    do {                                                                                           \
        weft_status got_ = (expr);                                                                 \
        if (got_ != (want))                                                                        \
            FAIL_AT("type '%c': %s returned %s, expected %s (last error: %s)", (t)->code, #expr,   \
                    weft_status_name(got_), weft_status_name(want), weft_last_error_message());    \
    } while (0)

static void check_type(const type_code *t, bool lock, weft_space *space) {
    uint8_t init[N * 8], buf[N * 8], item[16], want[16];
    for (int i = 0; i < N; i++) encode(t, i * 37 - 50, init + i * t->size);
    weft_array *a = NULL;
    T_STATUS(t, weft_array_new_in(space, NULL, t->code, N, init, lock, &a), WEFT_OK);
    ASSERT_EQ(weft_array_len(a), N);
    ASSERT_EQ(weft_array_typecode(a), t->code);
    ASSERT_EQ(weft_array_itemsize(a), t->size);
    ASSERT_NOT_NULL(weft_array_data(a));
    ASSERT_EQ(memcmp(weft_array_data(a), init, N * t->size), 0);

    /* Items, whole. */
    for (size_t i = 0; i < N; i++) {
        memset(item, 0xEE, sizeof item);
        T_STATUS(t, weft_array_get(a, i, item, t->size), WEFT_OK);
        ASSERT_EQ(memcmp(item, init + i * t->size, t->size), 0);
        ASSERT_EQ(item[t->size], 0xEE); /* nothing past the item */
    }
    encode(t, 99, want);
    T_STATUS(t, weft_array_set(a, 2, want, t->size), WEFT_OK);
    T_STATUS(t, weft_array_get(a, 2, item, t->size), WEFT_OK);
    ASSERT_EQ(memcmp(item, want, t->size), 0);
    memcpy(init + 2 * t->size, want, t->size);

    /* Slices. */
    T_STATUS(t, weft_array_read(a, 1, 3, buf, 3 * t->size), WEFT_OK);
    ASSERT_EQ(memcmp(buf, init + t->size, 3 * t->size), 0);
    T_STATUS(t, weft_array_read(a, 0, N, buf, N * t->size), WEFT_OK);
    ASSERT_EQ(memcmp(buf, init, N * t->size), 0);
    encode(t, -7, buf);
    encode(t, 8, buf + t->size);
    T_STATUS(t, weft_array_write(a, 3, 2, buf, 2 * t->size), WEFT_OK);
    memcpy(init + 3 * t->size, buf, 2 * t->size);
    T_STATUS(t, weft_array_read(a, 0, N, buf, N * t->size), WEFT_OK);
    ASSERT_EQ(memcmp(buf, init, N * t->size), 0);
    ASSERT_EQ(memcmp(weft_array_data(a), init, N * t->size), 0);

    /* Out of range, wrong sizes. */
    T_STATUS(t, weft_array_get(a, N, item, t->size), WEFT_INVALID_ARGUMENT);
    T_STATUS(t, weft_array_get(a, SIZE_MAX, item, t->size), WEFT_INVALID_ARGUMENT);
    T_STATUS(t, weft_array_set(a, N, want, t->size), WEFT_INVALID_ARGUMENT);
    T_STATUS(t, weft_array_get(a, 0, item, t->size + 1), WEFT_INVALID_ARGUMENT);
    T_STATUS(t, weft_array_set(a, 0, want, t->size * 2), WEFT_INVALID_ARGUMENT);
    T_STATUS(t, weft_array_get(a, 0, item, 0), WEFT_INVALID_ARGUMENT);
    T_STATUS(t, weft_array_read(a, 4, 2, buf, 2 * t->size), WEFT_INVALID_ARGUMENT);
    T_STATUS(t, weft_array_read(a, SIZE_MAX, 2, buf, 2 * t->size), WEFT_INVALID_ARGUMENT);
    T_STATUS(t, weft_array_read(a, 1, SIZE_MAX, buf, 2 * t->size), WEFT_INVALID_ARGUMENT);
    T_STATUS(t, weft_array_read(a, 0, 2, buf, 2 * t->size + 1), WEFT_INVALID_ARGUMENT);
    T_STATUS(t, weft_array_write(a, 4, 2, buf, 2 * t->size), WEFT_INVALID_ARGUMENT);
    T_STATUS(t, weft_array_write(a, 0, 2, buf, 2 * t->size - 1), WEFT_INVALID_ARGUMENT);
    T_STATUS(t, weft_array_read(a, 0, N, buf, N * t->size), WEFT_OK);
    ASSERT_EQ(memcmp(buf, init, N * t->size), 0); /* the failures changed nothing */

    /* Atomics. */
    int64_t v = 0, prev = 0, expected = 0;
    bool swapped = false;
    if (t->kind == 2) {
        T_STATUS(t, weft_array_load(a, 0, &v), WEFT_INVALID_ARGUMENT);
        T_STATUS(t, weft_array_store(a, 0, 1), WEFT_INVALID_ARGUMENT);
        T_STATUS(t, weft_array_fetch_add(a, 0, 1, &prev), WEFT_INVALID_ARGUMENT);
        T_STATUS(t, weft_array_compare_exchange(a, 0, &expected, 1, &swapped), WEFT_INVALID_ARGUMENT);
    } else {
        for (int i = 0; i < N; i++) {
            int64_t raw = 0;
            memcpy(&raw, init + i * t->size, t->size);
            T_STATUS(t, weft_array_load(a, (size_t)i, &v), WEFT_OK);
            ASSERT_EQ(v, extend(t, raw));
        }
        T_STATUS(t, weft_array_store(a, 1, -3), WEFT_OK); /* the low bits */
        T_STATUS(t, weft_array_load(a, 1, &v), WEFT_OK);
        ASSERT_EQ(v, extend(t, -3));
        T_STATUS(t, weft_array_store(a, 1, max_of(t)), WEFT_OK);
        T_STATUS(t, weft_array_fetch_add(a, 1, 1, &prev), WEFT_OK);
        ASSERT_EQ(prev, max_of(t));
        T_STATUS(t, weft_array_load(a, 1, &v), WEFT_OK);
        ASSERT_EQ(v, wrapped_of(t)); /* wraps at the item's width */
        T_STATUS(t, weft_array_store(a, 1, 0), WEFT_OK);
        T_STATUS(t, weft_array_fetch_add(a, 1, -1, NULL), WEFT_OK);
        T_STATUS(t, weft_array_load(a, 1, &v), WEFT_OK);
        ASSERT_EQ(v, extend(t, -1));
        T_STATUS(t, weft_array_fetch_add(a, 1, 11, &prev), WEFT_OK);
        ASSERT_EQ(prev, extend(t, -1));
        T_STATUS(t, weft_array_load(a, 1, &v), WEFT_OK);
        ASSERT_EQ(v, 10);

        expected = 10;
        T_STATUS(t, weft_array_compare_exchange(a, 1, &expected, 20, &swapped), WEFT_OK);
        ASSERT(swapped);
        ASSERT_EQ(expected, 10);
        expected = 10;
        T_STATUS(t, weft_array_compare_exchange(a, 1, &expected, 30, &swapped), WEFT_OK);
        ASSERT(!swapped);
        ASSERT_EQ(expected, 20); /* the value found */
        T_STATUS(t, weft_array_load(a, 1, &v), WEFT_OK);
        ASSERT_EQ(v, 20);
        /* The atomics and the item accessors see the same item. */
        encode(t, 20, want);
        T_STATUS(t, weft_array_get(a, 1, item, t->size), WEFT_OK);
        ASSERT_EQ(memcmp(item, want, t->size), 0);

        T_STATUS(t, weft_array_load(a, N, &v), WEFT_INVALID_ARGUMENT);
        T_STATUS(t, weft_array_store(a, N, 1), WEFT_INVALID_ARGUMENT);
        T_STATUS(t, weft_array_fetch_add(a, N, 1, NULL), WEFT_INVALID_ARGUMENT);
        T_STATUS(t, weft_array_compare_exchange(a, SIZE_MAX, &expected, 1, &swapped), WEFT_INVALID_ARGUMENT);
    }

    /* The lock: re-entrant, held across operations, which re-enter it. */
    if (lock) {
        T_STATUS(t, weft_array_lock(a, 0), WEFT_OK);
        T_STATUS(t, weft_array_lock(a, WAIT_LIMIT), WEFT_OK);
        T_STATUS(t, weft_array_get(a, 0, item, t->size), WEFT_OK);
        T_STATUS(t, weft_array_unlock(a), WEFT_OK);
        T_STATUS(t, weft_array_unlock(a), WEFT_OK);
        T_STATUS(t, weft_array_unlock(a), WEFT_NOT_OWNER);
        T_STATUS(t, weft_array_mark_consistent(a), WEFT_NOT_OWNER);
    } else {
        T_STATUS(t, weft_array_lock(a, 0), WEFT_INVALID_STATE);
        T_STATUS(t, weft_array_unlock(a), WEFT_INVALID_STATE);
        T_STATUS(t, weft_array_mark_consistent(a), WEFT_INVALID_STATE);
    }
    weft_array_free(a);

    /* A Value: one item, zero-filled without init. */
    T_STATUS(t, weft_array_new_in(space, NULL, t->code, 1, NULL, lock, &a), WEFT_OK);
    ASSERT_EQ(weft_array_len(a), 1);
    memset(item, 0xEE, sizeof item);
    T_STATUS(t, weft_array_get(a, 0, item, t->size), WEFT_OK);
    memset(want, 0, sizeof want);
    ASSERT_EQ(memcmp(item, want, t->size), 0);
    weft_array_free(a);
}

TEST_TIMEOUT(array_every_type_code, 20000) {
    xp_guard g;
    xp_begin(&g);
    char name[64];
    xp_name(name, sizeof name, "arrays");
    weft_space *s = NULL;
    ASSERT_OK(weft_space_create(name, 1 << 20, &s));
    for (size_t i = 0; i < N_TYPES; i++) {
        check_type(&TYPES[i], true, NULL);
        check_type(&TYPES[i], false, NULL);
        check_type(&TYPES[i], true, s);
    }
    ASSERT_OK(weft_space_unlink(name));
    weft_space_free(s);
    xp_end(&g);
}

TEST_TIMEOUT(array_invalid_arguments_and_nulls, 20000) {
    xp_guard g;
    xp_begin(&g);
    weft_array *a = NULL;
    const char bad_codes[] = {'x', 'c', 'u', 'D', 'F', 'n', 'N', 'e', '?', 0, 'z'};
    for (size_t i = 0; i < sizeof bad_codes; i++) {
        weft_status st = weft_array_new_in(NULL, NULL, bad_codes[i], 4, NULL, true, &a);
        if (st != WEFT_INVALID_ARGUMENT) FAIL_AT("type code %d: %s", bad_codes[i], weft_status_name(st));
    }
    ASSERT_STATUS(weft_array_new_in(NULL, NULL, 'i', 0, NULL, true, &a), WEFT_INVALID_ARGUMENT);
    ASSERT_STATUS(weft_array_new_in(NULL, NULL, 'q', SIZE_MAX, NULL, true, &a), WEFT_INVALID_ARGUMENT);
    ASSERT_STATUS(weft_array_new_in(NULL, NULL, 'q', SIZE_MAX / 8 + 1, NULL, true, &a), WEFT_INVALID_ARGUMENT);
    weft_status st = weft_array_new_in(NULL, NULL, 'd', (size_t)1 << 40, NULL, true, &a);
    ASSERT(st == WEFT_INVALID_ARGUMENT || st == WEFT_NO_MEMORY);
    ASSERT_NULL(a);

    ASSERT_OK(weft_array_new_in(NULL, NULL, 'i', 2, NULL, true, &a));
    int v = 0;
    int64_t w = 0;
    bool sw = false;
    ASSERT_STATUS(weft_array_get(NULL, 0, &v, sizeof v), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_array_get(a, 0, NULL, sizeof v), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_array_set(NULL, 0, &v, sizeof v), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_array_set(a, 0, NULL, sizeof v), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_array_read(NULL, 0, 1, &v, sizeof v), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_array_read(a, 0, 1, NULL, sizeof v), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_array_write(NULL, 0, 1, &v, sizeof v), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_array_write(a, 0, 1, NULL, sizeof v), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_array_load(NULL, 0, &w), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_array_load(a, 0, NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_array_store(NULL, 0, 1), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_array_fetch_add(NULL, 0, 1, &w), WEFT_NULL_ARGUMENT);
    ASSERT_OK(weft_array_fetch_add(a, 0, 1, NULL)); /* previous is optional */
    ASSERT_STATUS(weft_array_compare_exchange(NULL, 0, &w, 1, &sw), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_array_compare_exchange(a, 0, NULL, 1, &sw), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_array_compare_exchange(a, 0, &w, 1, NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_array_lock(NULL, 0), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_array_unlock(NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_array_mark_consistent(NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_array_new_in(NULL, NULL, 'i', 1, NULL, true, NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_array_open(NULL, NULL, &a), WEFT_NULL_ARGUMENT);
    ASSERT_EQ(weft_array_len(NULL), 0);
    ASSERT_EQ(weft_array_typecode(NULL), 0);
    ASSERT_EQ(weft_array_itemsize(NULL), 0);
    ASSERT_NULL(weft_array_data(NULL));
    weft_array_free(NULL);
    ASSERT_OK(weft_array_load(a, 0, &w));
    ASSERT_EQ(w, 1);
    weft_array_free(a);
    xp_end(&g);
}

/* ---- across processes ------------------------------------------------------------------------ */

typedef struct {
    weft_array *counts; /* 'q' [0], 'H' in `small` */
    weft_array *small;
    char space[64];
    atomic_int ready, go;
} count_job;

static void adder(void *arg) {
    count_job *j = arg;
    weft_array *q = j->counts, *h = j->small;
    weft_space *s = NULL;
    if (j->space[0]) { /* open by name */
        ASSERT_OK(weft_space_open(j->space, &s));
        q = h = NULL;
        ASSERT_OK(weft_array_open(s, "counts", &q));
        ASSERT_OK(weft_array_open(s, "small", &h));
        ASSERT_EQ(weft_array_typecode(h), 'H');
    }
    atomic_fetch_add(&j->ready, 1);
    while (!atomic_load(&j->go)) sched_yield();
    for (int i = 0; i < 100000; i++) {
        ASSERT_OK(weft_array_fetch_add(q, 0, 1, NULL));
        ASSERT_OK(weft_array_fetch_add(h, 0, 1, NULL));
    }
    if (s) {
        weft_array_free(q);
        weft_array_free(h);
        weft_space_free(s);
    }
}

TEST_TIMEOUT(array_atomics_across_processes_are_exact, 30000) {
    xp_guard g;
    xp_begin(&g);
    count_job *j = xp_shared(sizeof *j);
    ASSERT_OK(weft_array_new_in(NULL, NULL, 'q', 1, NULL, false, &j->counts));
    ASSERT_OK(weft_array_new_in(NULL, NULL, 'H', 1, NULL, false, &j->small));
    pid_t a = xp_fork(adder, j), b = xp_fork(adder, j);
    xp_wait_count(&j->ready, 2);
    atomic_store(&j->go, 1);
    xp_wait_ok(a);
    xp_wait_ok(b);
    int64_t v = 0;
    ASSERT_OK(weft_array_load(j->counts, 0, &v));
    ASSERT_EQ(v, 200000);
    ASSERT_OK(weft_array_load(j->small, 0, &v));
    ASSERT_EQ(v, 200000 % 65536); /* wrapped at 16 bits, nothing lost */
    weft_array_free(j->counts);
    weft_array_free(j->small);

    /* In a named space, opened by name in the children, while the parent adds too. */
    memset(j, 0, sizeof *j);
    xp_name(j->space, sizeof j->space, "counts");
    weft_space *s = NULL;
    ASSERT_OK(weft_space_create(j->space, 1 << 20, &s));
    weft_array *q = NULL, *h = NULL;
    ASSERT_OK(weft_array_new_in(s, "counts", 'q', 1, NULL, true, &q));
    ASSERT_OK(weft_array_new_in(s, "small", 'H', 1, NULL, true, &h));
    a = xp_fork(adder, j);
    b = xp_fork(adder, j);
    xp_wait_count(&j->ready, 2);
    atomic_store(&j->go, 1);
    for (int i = 0; i < 50000; i++) {
        int64_t expected = 0;
        bool swapped = false;
        ASSERT_OK(weft_array_load(q, 0, &expected));
        do ASSERT_OK(weft_array_compare_exchange(q, 0, &expected, expected + 1, &swapped));
        while (!swapped);
    }
    xp_wait_ok(a);
    xp_wait_ok(b);
    ASSERT_OK(weft_array_load(q, 0, &v));
    ASSERT_EQ(v, 250000);
    ASSERT_EQ(xp_participants(s), 1);
    ASSERT_OK(weft_space_unlink(j->space));
    weft_array_free(q);
    weft_array_free(h);
    weft_space_free(s);
    xp_end(&g);
}

typedef struct {
    weft_array *a;
    atomic_int stop, held;
} lock_job;

static void foreign_lock_checks(void *arg) {
    lock_job *j = arg;
    /* The parent holds the array's lock. */
    ASSERT_STATUS(weft_array_lock(j->a, 0), WEFT_WOULD_BLOCK);
    ASSERT_STATUS(weft_array_lock(j->a, 20 * MS), WEFT_TIMEOUT);
    ASSERT_STATUS(weft_array_unlock(j->a), WEFT_NOT_OWNER);
    ASSERT(weft_array_mark_consistent(j->a) != WEFT_OK);
    int64_t v = 0;
    ASSERT_OK(weft_array_load(j->a, 0, &v)); /* the atomics never take the lock */
    ASSERT_OK(weft_array_store(j->a, 7, 5));
}

/* Writes rows of equal items, item by item under the lock, until told to stop. */
static void row_writer(void *arg) {
    lock_job *j = arg;
    for (int k = 1; !atomic_load(&j->stop); k++) {
        ASSERT_OK(weft_array_lock(j->a, WAIT_LIMIT));
        for (size_t i = 0; i < 8; i++) {
            ASSERT_OK(weft_array_set(j->a, i, &k, sizeof k));
            if (i == 3) sched_yield();
        }
        ASSERT_OK(weft_array_unlock(j->a));
        if (k == 1) atomic_store(&j->held, 1);
    }
}

TEST_TIMEOUT(array_lock_across_processes, 20000) {
    xp_guard g;
    xp_begin(&g);
    lock_job *j = xp_shared(sizeof *j);
    ASSERT_OK(weft_array_new_in(NULL, NULL, 'i', 8, NULL, true, &j->a));
    ASSERT_OK(weft_array_lock(j->a, 0));
    xp_wait_ok(xp_fork(foreign_lock_checks, j));
    int v = 0;
    ASSERT_OK(weft_array_get(j->a, 7, &v, sizeof v));
    ASSERT_EQ(v, 5);
    ASSERT_OK(weft_array_unlock(j->a));

    /* Readers of whole slices never see a row half written. */
    pid_t w = xp_fork(row_writer, j);
    xp_wait_count(&j->held, 1);
    for (int r = 0; r < 2000; r++) {
        int row[8];
        ASSERT_OK(weft_array_read(j->a, 0, 8, row, sizeof row));
        for (int i = 1; i < 8; i++)
            if (row[i] != row[0]) FAIL_AT("read %d saw a torn row: %d at 0, %d at %d", r, row[0], row[i], i);
    }
    atomic_store(&j->stop, 1);
    xp_wait_ok(w);
    weft_array_free(j->a);
    xp_end(&g);
}

static void lock_array_and_die(void *arg) {
    weft_array *a = arg;
    ASSERT_OK(weft_array_lock(a, WAIT_LIMIT));
    int64_t one = 1;
    ASSERT_OK(weft_array_set(a, 0, &one, sizeof one)); /* half of a two-item update */
    raise(SIGKILL);
}

TEST_TIMEOUT(array_lock_owner_dead, 20000) {
    xp_guard g;
    xp_begin(&g);
    weft_array *a = NULL;
    ASSERT_OK(weft_array_new_in(NULL, NULL, 'q', 2, NULL, true, &a));
    int64_t item = 0, pair[2];

    /* An explicit lock reports the death. */
    xp_wait_killed(xp_fork(lock_array_and_die, a));
    ASSERT_STATUS(weft_array_lock(a, WAIT_LIMIT), WEFT_OWNER_DEAD);
    ASSERT_OK(weft_array_read(a, 0, 2, pair, sizeof pair)); /* re-enters the held lock */
    ASSERT_EQ(pair[0], 1);
    ASSERT_EQ(pair[1], 0);
    ASSERT_OK(weft_array_set(a, 1, &pair[0], sizeof pair[0])); /* repair */
    ASSERT_OK(weft_array_mark_consistent(a));
    ASSERT_OK(weft_array_unlock(a));
    ASSERT_OK(weft_array_lock(a, 0));
    ASSERT_OK(weft_array_unlock(a));

    /* The array's own operations recover silently. */
    xp_wait_killed(xp_fork(lock_array_and_die, a));
    ASSERT_OK(weft_array_get(a, 0, &item, sizeof item));
    ASSERT_EQ(item, 1);
    ASSERT_OK(weft_array_lock(a, 0)); /* recovered: an ordinary lock again */
    ASSERT_OK(weft_array_unlock(a));
    xp_wait_killed(xp_fork(lock_array_and_die, a));
    pair[0] = pair[1] = 4;
    ASSERT_OK(weft_array_write(a, 0, 2, pair, sizeof pair));
    ASSERT_OK(weft_array_lock(a, 0));
    ASSERT_OK(weft_array_unlock(a));

    /* Abandoned recovery: the lock is unusable, the lock-free atomics are not. */
    xp_wait_killed(xp_fork(lock_array_and_die, a));
    ASSERT_STATUS(weft_array_lock(a, WAIT_LIMIT), WEFT_OWNER_DEAD);
    ASSERT_OK(weft_array_unlock(a));
    ASSERT_STATUS(weft_array_lock(a, 0), WEFT_NOT_RECOVERABLE);
    ASSERT_STATUS(weft_array_get(a, 0, &item, sizeof item), WEFT_NOT_RECOVERABLE);
    ASSERT_STATUS(weft_array_set(a, 0, &item, sizeof item), WEFT_NOT_RECOVERABLE);
    ASSERT_OK(weft_array_load(a, 0, &item));
    ASSERT_EQ(item, 1);
    weft_array_free(a);
    xp_end(&g);
}

/* ---- raw named shared memory ---------------------------------------------------------------- */

typedef struct {
    char name[64];
    char child_name[64];
} shm_job;

static void shm_child(void *arg) {
    shm_job *j = arg;
    weft_shm *m = NULL;
    ASSERT_OK(weft_shm_open(j->name, &m));
    ASSERT_EQ(weft_shm_size(m), 8192);
    ASSERT_STR_EQ(weft_shm_name(m), j->name);
    uint8_t *p = weft_shm_data(m);
    for (int i = 0; i < 8192; i++) ASSERT_EQ(p[i], (uint8_t)(i * 7));
    memcpy(p + 100, "from the child", 15);
    weft_shm_free(m);
    /* A segment the child makes outlives it. */
    ASSERT_OK(weft_shm_create(j->child_name, 3000, &m));
    memcpy(weft_shm_data(m), "left behind", 12);
    weft_shm_free(m);
}

TEST_TIMEOUT(shm_named_segments, 20000) {
    xp_guard g;
    xp_begin(&g);
    shm_job *j = xp_shared(sizeof *j);
    xp_name(j->name, sizeof j->name, "shm");
    xp_name(j->child_name, sizeof j->child_name, "shm-child");
    weft_shm *m = NULL, *dup = NULL;
    ASSERT_OK(weft_shm_create(j->name, 8192, &m));
    ASSERT_EQ(weft_shm_size(m), 8192);
    ASSERT_STR_EQ(weft_shm_name(m), j->name);
    uint8_t *p = weft_shm_data(m);
    ASSERT_NOT_NULL(p);
    for (int i = 0; i < 8192; i++) ASSERT_EQ(p[i], 0);
    for (int i = 0; i < 8192; i++) p[i] = (uint8_t)(i * 7);
    char path[128];
    snprintf(path, sizeof path, "/dev/shm/weft.%s", j->name);
    struct stat st;
    ASSERT_EQ(lstat(path, &st), 0);
    ASSERT_EQ(st.st_mode & 07777, 0600);
    ASSERT_EQ(st.st_uid, geteuid());
    ASSERT_STATUS(weft_shm_create(j->name, 8192, &dup), WEFT_EXISTS);
    ASSERT_STATUS(weft_shm_create(j->name, 100, &dup), WEFT_EXISTS);
    ASSERT_NULL(dup);

    xp_wait_ok(xp_fork(shm_child, j));
    ASSERT_STR_EQ((char *)p + 100, "from the child");
    ASSERT_OK(weft_shm_open(j->child_name, &dup));
    ASSERT_EQ(weft_shm_size(dup), 3000);
    ASSERT_STR_EQ((char *)weft_shm_data(dup), "left behind");
    /* A second mapping in this process is the same memory. */
    weft_shm *again = NULL;
    ASSERT_OK(weft_shm_open(j->name, &again));
    ASSERT(weft_shm_data(again) != (void *)p);
    ((uint8_t *)weft_shm_data(again))[5] = 0xAB;
    ASSERT_EQ(p[5], 0xAB);
    weft_shm_free(again);

    /* Raw segments are never swept, even with nobody attached. */
    weft_shm_free(dup);
    ASSERT_OK(weft_space_sweep(NULL));
    ASSERT(xp_shm_exists(j->child_name));
    ASSERT_OK(weft_shm_unlink(j->child_name));

    /* Unlink: the name goes, the mapping stays. */
    ASSERT_OK(weft_shm_unlink(j->name));
    ASSERT(!xp_shm_exists(j->name));
    ASSERT_STATUS(weft_shm_unlink(j->name), WEFT_NOT_FOUND);
    dup = NULL;
    ASSERT_STATUS(weft_shm_open(j->name, &dup), WEFT_NOT_FOUND);
    ASSERT_NULL(dup);
    p[8191] = 1;
    ASSERT_EQ(p[8191], 1);
    weft_shm_free(m);
    xp_end(&g);
}

TEST_TIMEOUT(shm_random_names_and_errors, 20000) {
    xp_guard g;
    xp_begin(&g);
    weft_shm *m = NULL, *o = NULL;
    ASSERT_OK(weft_shm_create(NULL, 100, &m));
    const char *name = weft_shm_name(m);
    ASSERT_NOT_NULL(name);
    ASSERT(strlen(name) > 0);
    ASSERT(xp_shm_exists(name));
    ASSERT_EQ(weft_shm_size(m), 100);
    weft_shm *m2 = NULL;
    ASSERT_OK(weft_shm_create(NULL, 100, &m2));
    ASSERT(strcmp(weft_shm_name(m2), name) != 0); /* fresh each time */
    ASSERT_OK(weft_shm_open(name, &o));
    ASSERT_EQ(weft_shm_size(o), 100);
    weft_shm_free(o);
    ASSERT_OK(weft_shm_unlink(weft_shm_name(m2)));
    ASSERT_OK(weft_shm_unlink(name));
    ASSERT(!xp_shm_exists(weft_shm_name(m)));
    weft_shm_free(m2);
    weft_shm_free(m);
    m = NULL;

    char nm[64];
    xp_name(nm, sizeof nm, "shm-err");
    ASSERT_STATUS(weft_shm_create(nm, 0, &m), WEFT_INVALID_ARGUMENT);
    ASSERT(!xp_shm_exists(nm));
    ASSERT_STATUS(weft_shm_create(nm, 100, NULL), WEFT_NULL_ARGUMENT);
    ASSERT(!xp_shm_exists(nm));
    ASSERT_STATUS(weft_shm_open(nm, &m), WEFT_NOT_FOUND);
    ASSERT_STATUS(weft_shm_unlink(nm), WEFT_NOT_FOUND);
    ASSERT_STATUS(weft_shm_open(NULL, &m), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_shm_unlink(NULL), WEFT_NULL_ARGUMENT);
    ASSERT_NULL(m);
    ASSERT_OK(weft_shm_create(nm, 100, &m));
    ASSERT_STATUS(weft_shm_open(nm, NULL), WEFT_NULL_ARGUMENT);
    /* An empty file of that name is not a segment to map. */
    char path[128];
    snprintf(path, sizeof path, "/dev/shm/weft.%s", nm);
    ASSERT_EQ(truncate(path, 0), 0);
    ASSERT_STATUS(weft_shm_open(nm, &o), WEFT_CORRUPTED);
    ASSERT_OK(weft_shm_unlink(nm));
    weft_shm_free(m); /* its mapping outlived the truncation untouched */
    ASSERT_EQ(weft_shm_size(NULL), 0);
    ASSERT_NULL(weft_shm_data(NULL));
    ASSERT_NULL(weft_shm_name(NULL));
    weft_shm_free(NULL);
    xp_end(&g);
}
