/* The weft C conformance runner (libuv style).
 *
 * Each TEST(name) registers itself at load time. `weft_ctests` with no argument runs every
 * test in its own forked child with a timeout and prints TAP; `weft_ctests NAME...` runs the
 * named tests the same way; `weft_ctests --in-process NAME` runs one test without forking (for
 * a debugger). A failed assertion prints both values and the location, then aborts the child.
 */
#ifndef WEFT_CTESTS_RUNNER_H
#define WEFT_CTESTS_RUNNER_H

#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "weft.h"

typedef void (*test_fn)(void);

/* Registers a test; `timeout_ms` 0 means the default (30 s). */
void runner_register(const char *name, test_fn fn, unsigned timeout_ms);

#define TEST_TIMEOUT(name, ms)                                                            \
    static void test_##name(void);                                                       \
    __attribute__((constructor)) static void register_##name(void) {                      \
        runner_register(#name, test_##name, (ms));                                        \
    }                                                                                     \
    static void test_##name(void)

#define TEST(name) TEST_TIMEOUT(name, 0)

/* Nanoseconds on CLOCK_MONOTONIC. */
uint64_t runner_now_ns(void);
/* Sleeps for `ms` milliseconds (retrying on EINTR). */
void runner_sleep_ms(unsigned ms);

#define MS ((uint64_t)1000000)
#define SEC ((uint64_t)1000000000)

#define FAIL_AT(...)                                                                      \
    do {                                                                                  \
        fprintf(stderr, "%s:%d: ", __FILE__, __LINE__);                                   \
        fprintf(stderr, __VA_ARGS__);                                                     \
        fprintf(stderr, "\n");                                                            \
        fflush(stderr);                                                                   \
        abort();                                                                          \
    } while (0)

#define ASSERT(cond)                                                                      \
    do {                                                                                  \
        if (!(cond)) FAIL_AT("assertion failed: %s", #cond);                              \
    } while (0)

#define ASSERT_CMP_INT(a, op, b)                                                          \
    do {                                                                                  \
        int64_t a_ = (int64_t)(a), b_ = (int64_t)(b);                                     \
        if (!(a_ op b_))                                                                  \
            FAIL_AT("assertion failed: %s %s %s (%" PRId64 " vs %" PRId64 ")", #a, #op, #b, \
                    a_, b_);                                                              \
    } while (0)

#define ASSERT_CMP_UINT(a, op, b)                                                         \
    do {                                                                                  \
        uint64_t a_ = (uint64_t)(a), b_ = (uint64_t)(b);                                  \
        if (!(a_ op b_))                                                                  \
            FAIL_AT("assertion failed: %s %s %s (%" PRIu64 " vs %" PRIu64 ")", #a, #op, #b, \
                    a_, b_);                                                              \
    } while (0)

#define ASSERT_EQ(a, b) ASSERT_CMP_INT(a, ==, b)
#define ASSERT_NE(a, b) ASSERT_CMP_INT(a, !=, b)
#define ASSERT_LT(a, b) ASSERT_CMP_INT(a, <, b)
#define ASSERT_LE(a, b) ASSERT_CMP_INT(a, <=, b)
#define ASSERT_GT(a, b) ASSERT_CMP_INT(a, >, b)
#define ASSERT_GE(a, b) ASSERT_CMP_INT(a, >=, b)
#define ASSERT_UEQ(a, b) ASSERT_CMP_UINT(a, ==, b)
#define ASSERT_UGE(a, b) ASSERT_CMP_UINT(a, >=, b)

#define ASSERT_PTR_EQ(a, b)                                                               \
    do {                                                                                  \
        const void *a_ = (const void *)(a), *b_ = (const void *)(b);                      \
        if (a_ != b_) FAIL_AT("assertion failed: %s == %s (%p vs %p)", #a, #b, a_, b_);   \
    } while (0)

#define ASSERT_NULL(a) ASSERT_PTR_EQ(a, NULL)
#define ASSERT_NOT_NULL(a)                                                                \
    do {                                                                                  \
        if ((a) == NULL) FAIL_AT("assertion failed: %s != NULL", #a);                     \
    } while (0)

#define ASSERT_STR_EQ(a, b)                                                               \
    do {                                                                                  \
        const char *a_ = (a), *b_ = (b);                                                  \
        if (a_ == NULL || b_ == NULL || strcmp(a_, b_) != 0)                              \
            FAIL_AT("assertion failed: %s == %s (\"%s\" vs \"%s\")", #a, #b,              \
                    a_ ? a_ : "(null)", b_ ? b_ : "(null)");                              \
    } while (0)

/* A weft call must return `expected`; prints both status names and the last error message. */
#define ASSERT_STATUS(expr, expected)                                                     \
    do {                                                                                  \
        weft_status got_ = (expr), want_ = (expected);                                    \
        if (got_ != want_)                                                                \
            FAIL_AT("%s returned %s, expected %s (last error: %s)", #expr,                \
                    weft_status_name(got_), weft_status_name(want_),                      \
                    weft_last_error_message());                                           \
    } while (0)

#define ASSERT_OK(expr) ASSERT_STATUS(expr, WEFT_OK)

#endif
