/* Status codes, names, descriptions, the last-error message, the version, byte buffers, and
 * the handle rules every type shares: NULL handles, `_free(NULL)`, double free, handles of the
 * wrong type, out-parameters left alone on failure, and no memory kept after `_free`. */
#define _GNU_SOURCE
#include "runner.h"

#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>

#if defined(__SANITIZE_ADDRESS__)
#define WEFT_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define WEFT_TEST_ASAN 1
#endif
#endif
#ifdef WEFT_TEST_ASAN
#include <sanitizer/lsan_interface.h>
#endif

struct code {
    weft_status value;
    const char *macro;
};

#define CODE(x) {x, #x}

/* Every status code the header defines, with the name of its macro. */
static const struct code CODES[] = {
    CODE(WEFT_OK),
    CODE(WEFT_TIMEOUT),
    CODE(WEFT_WOULD_BLOCK),
    CODE(WEFT_CLOSED),
    CODE(WEFT_CANCELLED),
    CODE(WEFT_OWNER_DEAD),
    CODE(WEFT_NOT_RECOVERABLE),
    CODE(WEFT_BROKEN),
    CODE(WEFT_NOT_OWNER),
    CODE(WEFT_WORKER_DIED),
    CODE(WEFT_TASK_FAILED),
    CODE(WEFT_INVALID_ARGUMENT),
    CODE(WEFT_NULL_ARGUMENT),
    CODE(WEFT_BUFFER_TOO_SMALL),
    CODE(WEFT_NO_MEMORY),
    CODE(WEFT_EXISTS),
    CODE(WEFT_NOT_FOUND),
    CODE(WEFT_CORRUPTED),
    CODE(WEFT_UNSUPPORTED),
    CODE(WEFT_OS_ERROR),
    CODE(WEFT_PANIC),
    CODE(WEFT_INVALID_STATE),
    CODE(WEFT_AUTH_FAILED),
    CODE(WEFT_PERMISSION_DENIED),
};
#define N_CODES (sizeof CODES / sizeof CODES[0])

TEST(status_ok_is_zero_and_forever_is_max) {
    ASSERT_EQ(WEFT_OK, 0);
    ASSERT_UEQ(WEFT_FOREVER, UINT64_MAX);
    ASSERT_EQ(sizeof(weft_status), 4);
}

TEST(status_names_match_macros_and_are_distinct) {
    for (size_t i = 0; i < N_CODES; i++) {
        const char *name = weft_status_name(CODES[i].value);
        ASSERT_NOT_NULL(name);
        ASSERT_STR_EQ(name, CODES[i].macro);
        ASSERT_EQ(strncmp(name, "WEFT_", 5), 0);
        for (size_t j = 0; j < i; j++) {
            ASSERT_NE(CODES[i].value, CODES[j].value);
            ASSERT(strcmp(name, weft_status_name(CODES[j].value)) != 0);
        }
    }
}

TEST(status_str_non_empty_and_distinct) {
    for (size_t i = 0; i < N_CODES; i++) {
        const char *s = weft_status_str(CODES[i].value);
        ASSERT_NOT_NULL(s);
        ASSERT_GT(strlen(s), 0);
        for (size_t j = 0; j < i; j++) ASSERT(strcmp(s, weft_status_str(CODES[j].value)) != 0);
    }
}

TEST(status_unknown_codes) {
    const weft_status unknown[] = {-1, (weft_status)N_CODES, 99, 1000, INT32_MIN, INT32_MAX};
    for (size_t i = 0; i < sizeof unknown / sizeof unknown[0]; i++) {
        ASSERT_STR_EQ(weft_status_name(unknown[i]), "WEFT_UNKNOWN_STATUS");
        const char *s = weft_status_str(unknown[i]);
        ASSERT_NOT_NULL(s);
        ASSERT_GT(strlen(s), 0);
    }
}

TEST(status_strings_are_static) {
    /* The same pointer every time: nothing is allocated per call. */
    ASSERT_PTR_EQ(weft_status_name(WEFT_TIMEOUT), weft_status_name(WEFT_TIMEOUT));
    ASSERT_PTR_EQ(weft_status_str(WEFT_TIMEOUT), weft_status_str(WEFT_TIMEOUT));
    ASSERT_PTR_EQ(weft_version(), weft_version());
}

TEST(version_matches_header) {
    ASSERT_NOT_NULL(weft_version());
    ASSERT_STR_EQ(weft_version(), WEFT_VERSION_STRING);
    ASSERT_UEQ(weft_version_number(), WEFT_VERSION_NUMBER);
    ASSERT_UEQ(WEFT_VERSION_NUMBER,
               WEFT_VERSION_MAJOR * 10000 + WEFT_VERSION_MINOR * 100 + WEFT_VERSION_PATCH);
    char buf[64];
    snprintf(buf, sizeof buf, "%d.%d.%d", WEFT_VERSION_MAJOR, WEFT_VERSION_MINOR, WEFT_VERSION_PATCH);
    ASSERT_STR_EQ(weft_version(), buf);
}

/* --- the last-error message ------------------------------------------------------------- */

static void *fresh_thread_message(void *arg) {
    (void)arg;
    const char *m = weft_last_error_message();
    ASSERT_NOT_NULL(m);
    ASSERT_STR_EQ(m, "");
    /* A failure here is this thread's own. */
    ASSERT_STATUS(weft_semaphore_release(NULL, 1), WEFT_NULL_ARGUMENT);
    ASSERT_GT(strlen(weft_last_error_message()), 0);
    return NULL;
}

TEST(last_error_empty_initially_and_thread_local) {
    ASSERT_NOT_NULL(weft_last_error_message());
    ASSERT_STR_EQ(weft_last_error_message(), "");
    ASSERT_STATUS(weft_barrier_new(0, NULL, NULL, &(weft_barrier *){NULL}), WEFT_INVALID_ARGUMENT);
    char mine[512];
    snprintf(mine, sizeof mine, "%s", weft_last_error_message());
    ASSERT_GT(strlen(mine), 0);
    /* Another thread starts with no message, and its failures do not touch this thread's. */
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, fresh_thread_message, NULL), 0);
    ASSERT_EQ(pthread_join(t, NULL), 0);
    ASSERT_STR_EQ(weft_last_error_message(), mine);
}

TEST(last_error_names_the_argument) {
    ASSERT_STATUS(weft_lock_new(NULL), WEFT_NULL_ARGUMENT);
    ASSERT(strstr(weft_last_error_message(), "out") != NULL);

    ASSERT_STATUS(weft_lock_acquire(NULL, 0), WEFT_NULL_ARGUMENT);
    ASSERT(strstr(weft_last_error_message(), "lock") != NULL);

    ASSERT_STATUS(weft_barrier_new(0, NULL, NULL, &(weft_barrier *){NULL}), WEFT_INVALID_ARGUMENT);
    ASSERT(strstr(weft_last_error_message(), "parties") != NULL);

    weft_condition *c = NULL;
    ASSERT_OK(weft_condition_new(&c));
    ASSERT_OK(weft_condition_acquire(c, WEFT_FOREVER));
    ASSERT_STATUS(weft_condition_wait_for(c, NULL, NULL, 0), WEFT_NULL_ARGUMENT);
    ASSERT(strstr(weft_last_error_message(), "predicate") != NULL);
    ASSERT_OK(weft_condition_release(c));
    weft_condition_free(c);

    ASSERT_STATUS(weft_bytes_new(NULL, 3, &(weft_bytes *){NULL}), WEFT_NULL_ARGUMENT);
    ASSERT(strstr(weft_last_error_message(), "data") != NULL);
}

TEST(last_error_not_cleared_by_success) {
    weft_lock *l = NULL;
    ASSERT_OK(weft_lock_new(&l));
    ASSERT_STATUS(weft_lock_release(l), WEFT_INVALID_STATE);
    char msg[512];
    const char *p = weft_last_error_message();
    snprintf(msg, sizeof msg, "%s", p);
    ASSERT_GT(strlen(msg), 0);
    ASSERT_OK(weft_lock_acquire(l, 0));
    ASSERT_OK(weft_lock_release(l));
    ASSERT_STR_EQ(weft_last_error_message(), msg);
    /* The pointer stays valid until the next failing call on this thread. */
    ASSERT_STR_EQ(p, msg);
    /* The next failure replaces it. */
    ASSERT_STATUS(weft_semaphore_release(NULL, 1), WEFT_NULL_ARGUMENT);
    ASSERT(strcmp(weft_last_error_message(), msg) != 0);
    weft_lock_free(l);
}

TEST(last_error_set_for_every_failure_kind) {
    weft_lock *l = NULL;
    weft_semaphore *s = NULL;
    ASSERT_OK(weft_lock_new(&l));
    ASSERT_OK(weft_semaphore_new_bounded(1, &s));
    struct {
        weft_status got, want;
    } cases[6];
    int n = 0;
    /* Each failure must leave a non-empty message different from a blank slate. */
    cases[n].want = WEFT_NULL_ARGUMENT;
    cases[n++].got = weft_event_set(NULL);
    ASSERT_GT(strlen(weft_last_error_message()), 0);
    cases[n].want = WEFT_INVALID_STATE;
    cases[n++].got = weft_lock_release(l);
    ASSERT_GT(strlen(weft_last_error_message()), 0);
    cases[n].want = WEFT_INVALID_ARGUMENT;
    cases[n++].got = weft_semaphore_release(s, 0);
    ASSERT_GT(strlen(weft_last_error_message()), 0);
    cases[n].want = WEFT_INVALID_STATE;
    cases[n++].got = weft_semaphore_release(s, 1);
    ASSERT_GT(strlen(weft_last_error_message()), 0);
    ASSERT_OK(weft_lock_acquire(l, 0));
    cases[n].want = WEFT_WOULD_BLOCK;
    cases[n++].got = weft_lock_acquire(l, 0);
    ASSERT_GT(strlen(weft_last_error_message()), 0);
    cases[n].want = WEFT_TIMEOUT;
    cases[n++].got = weft_lock_acquire(l, 1);
    ASSERT_GT(strlen(weft_last_error_message()), 0);
    for (int i = 0; i < n; i++) ASSERT_STATUS(cases[i].got, cases[i].want);
    weft_lock_free(l);
    weft_semaphore_free(s);
}

/* --- handles ---------------------------------------------------------------------------- */

TEST(free_null_is_noop_for_every_type) {
    weft_lock_free(NULL);
    weft_rlock_free(NULL);
    weft_semaphore_free(NULL);
    weft_event_free(NULL);
    weft_condition_free(NULL);
    weft_barrier_free(NULL);
    weft_bytes_free(NULL);
    /* Still alive, and a free of NULL is not a failure worth a message. */
    ASSERT_STR_EQ(weft_last_error_message(), "");
}

struct all {
    weft_lock *lock;
    weft_rlock *rlock;
    weft_semaphore *sem;
    weft_event *event;
    weft_condition *cond;
    weft_barrier *barrier;
    weft_bytes *bytes;
};

static void make_all(struct all *a) {
    ASSERT_OK(weft_lock_new(&a->lock));
    ASSERT_OK(weft_rlock_new(&a->rlock));
    ASSERT_OK(weft_semaphore_new(1, &a->sem));
    ASSERT_OK(weft_event_new(&a->event));
    ASSERT_OK(weft_condition_new(&a->cond));
    ASSERT_OK(weft_barrier_new(2, NULL, NULL, &a->barrier));
    ASSERT_OK(weft_bytes_new("abc", 3, &a->bytes));
}

static void free_all(struct all *a) {
    weft_lock_free(a->lock);
    weft_rlock_free(a->rlock);
    weft_semaphore_free(a->sem);
    weft_event_free(a->event);
    weft_condition_free(a->cond);
    weft_barrier_free(a->barrier);
    weft_bytes_free(a->bytes);
}

TEST(double_free_is_ignored) {
    struct all a;
    make_all(&a);
    free_all(&a);
    /* The second free of every handle must not crash (nor free something else). */
    free_all(&a);
    /* weft still works: new objects are usable. */
    struct all b;
    make_all(&b);
    ASSERT_OK(weft_lock_acquire(b.lock, 0));
    ASSERT_OK(weft_lock_release(b.lock));
    ASSERT_OK(weft_semaphore_acquire(b.sem, 0));
    ASSERT_UEQ(weft_bytes_len(b.bytes), 3);
    free_all(&b);
}

TEST(double_free_of_lock_kept_alive_by_condition) {
    /* The condition keeps the lock's memory alive, so the second free reads a live object
     * whose handle is dead: it must be ignored, and the condition must keep working. */
    weft_lock *l = NULL;
    weft_condition *c = NULL;
    ASSERT_OK(weft_lock_new(&l));
    ASSERT_OK(weft_condition_new_with_lock(l, &c));
    weft_lock_free(l);
    weft_lock_free(l);
    ASSERT(strstr(weft_last_error_message(), "free") != NULL);
    ASSERT_OK(weft_condition_acquire(c, 0));
    ASSERT_STATUS(weft_condition_wait(c, 1 * MS), WEFT_TIMEOUT);
    ASSERT_OK(weft_condition_release(c));
    ASSERT_STATUS(weft_condition_release(c), WEFT_INVALID_STATE);
    /* The freed handle itself is refused, not used. */
    ASSERT_STATUS(weft_lock_acquire(l, 0), WEFT_INVALID_ARGUMENT);
    ASSERT_STATUS(weft_lock_release(l), WEFT_INVALID_ARGUMENT);
    ASSERT(!weft_lock_locked(l));
    weft_condition *c2 = (weft_condition *)(uintptr_t)0x42;
    ASSERT_STATUS(weft_condition_new_with_lock(l, &c2), WEFT_INVALID_ARGUMENT);
    ASSERT_PTR_EQ(c2, (weft_condition *)(uintptr_t)0x42);
    weft_condition_free(c);
}

/* Calls every status-returning function of one family with a handle of another type. */
static void expect_rejected(const char *what, weft_status got) {
    if (got != WEFT_INVALID_ARGUMENT)
        FAIL_AT("%s with a handle of another type returned %s, expected WEFT_INVALID_ARGUMENT", what,
                weft_status_name(got));
    if (strlen(weft_last_error_message()) == 0) FAIL_AT("%s: no last-error message", what);
}

static void try_as_everything(void *h, const char *type) {
    char what[128];
#define REJECT(call)                                                     \
    do {                                                                 \
        snprintf(what, sizeof what, "%s (given a %s)", #call, type);     \
        expect_rejected(what, (call));                                   \
    } while (0)
    if (strcmp(type, "lock") != 0) {
        REJECT(weft_lock_acquire((weft_lock *)h, 0));
        REJECT(weft_lock_release((weft_lock *)h));
        ASSERT(!weft_lock_locked((weft_lock *)h));
        weft_condition *c = (weft_condition *)0x1;
        REJECT(weft_condition_new_with_lock((weft_lock *)h, &c));
        ASSERT_PTR_EQ(c, (weft_condition *)0x1);
    }
    if (strcmp(type, "rlock") != 0) {
        REJECT(weft_rlock_acquire((weft_rlock *)h, 0));
        REJECT(weft_rlock_release((weft_rlock *)h));
        ASSERT(!weft_rlock_is_owned((weft_rlock *)h));
        ASSERT_UEQ(weft_rlock_depth((weft_rlock *)h), 0);
        weft_condition *c = (weft_condition *)0x1;
        REJECT(weft_condition_new_with_rlock((weft_rlock *)h, &c));
        ASSERT_PTR_EQ(c, (weft_condition *)0x1);
    }
    if (strcmp(type, "semaphore") != 0) {
        REJECT(weft_semaphore_acquire((weft_semaphore *)h, 0));
        REJECT(weft_semaphore_release((weft_semaphore *)h, 1));
        ASSERT_UEQ(weft_semaphore_value((weft_semaphore *)h), 0);
        ASSERT(!weft_semaphore_is_bounded((weft_semaphore *)h));
    }
    if (strcmp(type, "event") != 0) {
        REJECT(weft_event_set((weft_event *)h));
        REJECT(weft_event_clear((weft_event *)h));
        REJECT(weft_event_wait((weft_event *)h, 0));
        ASSERT(!weft_event_is_set((weft_event *)h));
    }
    if (strcmp(type, "condition") != 0) {
        REJECT(weft_condition_acquire((weft_condition *)h, 0));
        REJECT(weft_condition_release((weft_condition *)h));
        REJECT(weft_condition_wait((weft_condition *)h, 0));
        REJECT(weft_condition_notify((weft_condition *)h, 1));
        REJECT(weft_condition_notify_all((weft_condition *)h));
    }
    if (strcmp(type, "barrier") != 0) {
        uint32_t index = 12345;
        REJECT(weft_barrier_wait((weft_barrier *)h, 0, &index));
        ASSERT_UEQ(index, 12345);
        REJECT(weft_barrier_reset((weft_barrier *)h));
        REJECT(weft_barrier_abort((weft_barrier *)h));
        ASSERT_UEQ(weft_barrier_parties((weft_barrier *)h), 0);
        ASSERT_UEQ(weft_barrier_n_waiting((weft_barrier *)h), 0);
        ASSERT(!weft_barrier_broken((weft_barrier *)h));
    }
    if (strcmp(type, "bytes") != 0) {
        ASSERT_NULL(weft_bytes_data((weft_bytes *)h));
        ASSERT_UEQ(weft_bytes_len((weft_bytes *)h), 0);
    }
#undef REJECT
}

static bool always_true(void *ctx) {
    (void)ctx;
    return true;
}

TEST(wrong_type_handles_are_rejected) {
    struct all a;
    make_all(&a);
    try_as_everything(a.lock, "lock");
    try_as_everything(a.rlock, "rlock");
    try_as_everything(a.sem, "semaphore");
    try_as_everything(a.event, "event");
    try_as_everything(a.cond, "condition");
    try_as_everything(a.barrier, "barrier");
    try_as_everything(a.bytes, "bytes");
    /* wait_for with a foreign handle too (it has a predicate argument). */
    ASSERT_STATUS(weft_condition_wait_for((weft_condition *)a.lock, always_true, NULL, 0),
                  WEFT_INVALID_ARGUMENT);

    /* Freeing through the wrong type must not free the object. */
    weft_event_free((weft_event *)a.lock);
    weft_lock_free((weft_lock *)a.event);
    weft_barrier_free((weft_barrier *)a.sem);
    weft_condition_free((weft_condition *)a.rlock);
    weft_bytes_free((weft_bytes *)a.barrier);
    weft_semaphore_free((weft_semaphore *)a.cond);
    weft_rlock_free((weft_rlock *)a.bytes);

    /* Every object is untouched and still works. */
    ASSERT(!weft_lock_locked(a.lock));
    ASSERT_OK(weft_lock_acquire(a.lock, 0));
    ASSERT(weft_lock_locked(a.lock));
    ASSERT_OK(weft_lock_release(a.lock));
    ASSERT_OK(weft_rlock_acquire(a.rlock, 0));
    ASSERT_UEQ(weft_rlock_depth(a.rlock), 1);
    ASSERT_OK(weft_rlock_release(a.rlock));
    ASSERT_UEQ(weft_semaphore_value(a.sem), 1);
    ASSERT_OK(weft_semaphore_acquire(a.sem, 0));
    ASSERT(!weft_event_is_set(a.event));
    ASSERT_OK(weft_event_set(a.event));
    ASSERT(weft_event_is_set(a.event));
    ASSERT_OK(weft_condition_acquire(a.cond, 0));
    ASSERT_OK(weft_condition_notify_all(a.cond));
    ASSERT_OK(weft_condition_release(a.cond));
    ASSERT_UEQ(weft_barrier_parties(a.barrier), 2);
    ASSERT(!weft_barrier_broken(a.barrier));
    ASSERT_UEQ(weft_bytes_len(a.bytes), 3);
    ASSERT_EQ(memcmp(weft_bytes_data(a.bytes), "abc", 3), 0);
    free_all(&a);
}

TEST(out_params_untouched_on_failure) {
    weft_barrier *const BSENT = (weft_barrier *)(uintptr_t)0xdeadbeef;
    weft_condition *const CSENT = (weft_condition *)(uintptr_t)0xdeadbeef;
    weft_bytes *const YSENT = (weft_bytes *)(uintptr_t)0xdeadbeef;

    weft_barrier *b = BSENT;
    ASSERT_STATUS(weft_barrier_new(0, NULL, NULL, &b), WEFT_INVALID_ARGUMENT);
    ASSERT_PTR_EQ(b, BSENT);

    weft_condition *c = CSENT;
    ASSERT_STATUS(weft_condition_new_with_lock(NULL, &c), WEFT_NULL_ARGUMENT);
    ASSERT_PTR_EQ(c, CSENT);
    ASSERT_STATUS(weft_condition_new_with_rlock(NULL, &c), WEFT_NULL_ARGUMENT);
    ASSERT_PTR_EQ(c, CSENT);

    weft_bytes *y = YSENT;
    ASSERT_STATUS(weft_bytes_new(NULL, 1, &y), WEFT_NULL_ARGUMENT);
    ASSERT_PTR_EQ(y, YSENT);

    /* A barrier wait that fails leaves the index alone. */
    ASSERT_OK(weft_barrier_new(2, NULL, NULL, &b));
    uint32_t index = 777;
    ASSERT_STATUS(weft_barrier_wait(b, 1 * MS, &index), WEFT_TIMEOUT);
    ASSERT_UEQ(index, 777);
    ASSERT_STATUS(weft_barrier_wait(b, WEFT_FOREVER, &index), WEFT_BROKEN);
    ASSERT_UEQ(index, 777);
    weft_barrier_free(b);
}

TEST(new_with_null_out_is_null_argument) {
    ASSERT_STATUS(weft_lock_new(NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_rlock_new(NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_semaphore_new(1, NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_semaphore_new_bounded(1, NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_event_new(NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_condition_new(NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_barrier_new(1, NULL, NULL, NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_bytes_new("x", 1, NULL), WEFT_NULL_ARGUMENT);
    weft_lock *l = NULL;
    weft_rlock *r = NULL;
    ASSERT_OK(weft_lock_new(&l));
    ASSERT_OK(weft_rlock_new(&r));
    ASSERT_STATUS(weft_condition_new_with_lock(l, NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_condition_new_with_rlock(r, NULL), WEFT_NULL_ARGUMENT);
    /* The failed constructors took no reference: the lock is still plain and usable. */
    ASSERT_OK(weft_lock_acquire(l, 0));
    ASSERT_OK(weft_lock_release(l));
    weft_lock_free(l);
    weft_rlock_free(r);
}

/* --- byte buffers ----------------------------------------------------------------------- */

TEST(bytes_copy_and_accessors) {
    char src[5] = {'h', 'e', 'l', 'l', 'o'};
    weft_bytes *b = NULL;
    ASSERT_OK(weft_bytes_new(src, sizeof src, &b));
    ASSERT_NOT_NULL(b);
    ASSERT_UEQ(weft_bytes_len(b), 5);
    const void *d = weft_bytes_data(b);
    ASSERT_NOT_NULL(d);
    ASSERT(d != (const void *)src);
    src[0] = 'X'; /* copied, so this does not show */
    ASSERT_EQ(memcmp(weft_bytes_data(b), "hello", 5), 0);
    ASSERT_PTR_EQ(weft_bytes_data(b), d);
    weft_bytes_free(b);
}

TEST(bytes_empty) {
    weft_bytes *b = NULL;
    ASSERT_OK(weft_bytes_new(NULL, 0, &b));
    ASSERT_UEQ(weft_bytes_len(b), 0);
    ASSERT_NOT_NULL(weft_bytes_data(b)); /* documented: non-NULL even when empty */
    weft_bytes_free(b);
    ASSERT_OK(weft_bytes_new("abc", 0, &b));
    ASSERT_UEQ(weft_bytes_len(b), 0);
    ASSERT_NOT_NULL(weft_bytes_data(b));
    weft_bytes_free(b);
}

TEST(bytes_null) {
    ASSERT_NULL(weft_bytes_data(NULL));
    ASSERT_UEQ(weft_bytes_len(NULL), 0);
    weft_bytes *b = (weft_bytes *)(uintptr_t)0x1234;
    ASSERT_STATUS(weft_bytes_new(NULL, 4, &b), WEFT_NULL_ARGUMENT);
    ASSERT_PTR_EQ(b, (weft_bytes *)(uintptr_t)0x1234);
}

TEST(bytes_large) {
    size_t n = 1 << 20;
    unsigned char *src = malloc(n);
    ASSERT_NOT_NULL(src);
    for (size_t i = 0; i < n; i++) src[i] = (unsigned char)(i * 31u);
    weft_bytes *b = NULL;
    ASSERT_OK(weft_bytes_new(src, n, &b));
    ASSERT_UEQ(weft_bytes_len(b), n);
    ASSERT_EQ(memcmp(weft_bytes_data(b), src, n), 0);
    free(src);
    weft_bytes_free(b);
}

/* --- memory --------------------------------------------------------------------------- */

static bool true_pred(void *ctx) {
    (void)ctx;
    return true;
}

static weft_status ok_action(void *ctx) {
    (void)ctx;
    return WEFT_OK;
}

/* Creates, uses and frees one object of every kind (successful calls only, so no
 * last-error message is allocated). */
static void churn(void) {
    struct all a;
    make_all(&a);
    weft_condition *cl = NULL, *cr = NULL;
    ASSERT_OK(weft_condition_new_with_lock(a.lock, &cl));
    ASSERT_OK(weft_condition_new_with_rlock(a.rlock, &cr));
    weft_semaphore *bs = NULL;
    ASSERT_OK(weft_semaphore_new_bounded(3, &bs));
    weft_barrier *one = NULL;
    ASSERT_OK(weft_barrier_new(1, ok_action, NULL, &one));
    ASSERT_OK(weft_barrier_wait(one, WEFT_FOREVER, NULL));
    ASSERT_OK(weft_condition_acquire(cl, 0));
    ASSERT_OK(weft_condition_notify_all(cl));
    ASSERT_OK(weft_condition_wait_for(cl, true_pred, NULL, 0));
    ASSERT_OK(weft_condition_release(cl));
    ASSERT_OK(weft_condition_acquire(cr, 0));
    ASSERT_OK(weft_condition_notify(cr, 1));
    ASSERT_OK(weft_condition_release(cr));
    ASSERT_OK(weft_semaphore_acquire(bs, 0));
    ASSERT_OK(weft_semaphore_release(bs, 1));
    ASSERT_OK(weft_event_set(a.event));
    ASSERT_OK(weft_event_wait(a.event, 0));
    /* Free the locks before the conditions that keep them alive. */
    free_all(&a);
    weft_condition_free(cl);
    weft_condition_free(cr);
    weft_semaphore_free(bs);
    weft_barrier_free(one);
}

TEST(no_memory_kept_after_free) {
    churn(); /* warm up lazily initialised state */
#ifdef WEFT_TEST_ASAN
    for (int i = 0; i < 100; i++) churn();
    /* LeakSanitizer: no object, lock reference or action may outlive its handle. */
    ASSERT_EQ(__lsan_do_recoverable_leak_check(), 0);
#else
    struct mallinfo2 before = mallinfo2();
    for (int i = 0; i < 1000; i++) churn();
    struct mallinfo2 after = mallinfo2();
    ASSERT_UEQ(after.uordblks, before.uordblks);
#endif
}
