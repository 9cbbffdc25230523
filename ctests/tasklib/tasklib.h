/* libweft_tasklib.so: task functions of the process tests (test_process.c) that live in a
 * shared library rather than in the test program, so that every start method is also tried
 * with a task found in a library (by object and offset, and by symbol through
 * weft_process_start_symbol). Built by tests/ctests.rs and ctests/CMakeLists.txt, linked
 * against libweft; the suite program links against it.
 *
 * Descriptor conventions (weft_process_options.fds): tasks that take a "ready" descriptor write
 * one byte to it once they run; tasks that take a "gate" descriptor block until they read one
 * byte from it (one byte per task: with the fork method the child holds copies of the
 * parent's write ends, so end of file never comes).
 */
#ifndef WEFT_CTESTS_TASKLIB_H
#define WEFT_CTESTS_TASKLIB_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "weft.h"

/* ---- what a child reports about itself (tl_task_info and the test program's own tasks) ---- */

#define TL_NAME_MAX 64
#define TL_ARG_XOR 0xA5

/* The result of an info task: this header, then the argument bytes each XORed with
 * TL_ARG_XOR (so the result proves the task read its argument). */
typedef struct {
    char tag[16];           /* which function ran: "tasklib", "static", "exported" */
    int32_t pid;            /* getpid() */
    int32_t weft_parent;    /* weft_process_parent_pid() */
    int32_t os_parent;      /* getppid() */
    uint32_t fd_count;      /* weft_call_fd_count() */
    char name[TL_NAME_MAX]; /* weft_process_current_name(), cut to TL_NAME_MAX - 1 bytes */
    uint64_t arg_len;       /* length of the argument */
} tl_info;

/* Builds and sets an info result for the calling task; the test program's tasks use it too
 * (a static inline function: each object has its own copy). */
static inline weft_status tl_report_info(weft_call *call, const char *tag) {
    const void *arg = NULL;
    size_t len = 0;
    weft_status s = weft_call_arg(call, &arg, &len);
    if (s != WEFT_OK) return s;
    size_t total = sizeof(tl_info) + len;
    unsigned char *buf = calloc(1, total);
    if (!buf) {
        weft_call_set_error(call, "out of memory");
        return WEFT_NO_MEMORY;
    }
    tl_info info;
    memset(&info, 0, sizeof info);
    strncpy(info.tag, tag, sizeof info.tag - 1);
    info.pid = (int32_t)getpid();
    info.weft_parent = weft_process_parent_pid();
    info.os_parent = (int32_t)getppid();
    info.fd_count = (uint32_t)weft_call_fd_count(call);
    const char *name = weft_process_current_name();
    strncpy(info.name, name ? name : "(null)", sizeof info.name - 1);
    info.arg_len = len;
    memcpy(buf, &info, sizeof info);
    for (size_t i = 0; i < len; i++) buf[sizeof info + i] = ((const unsigned char *)arg)[i] ^ TL_ARG_XOR;
    s = weft_call_set_result(call, buf, total);
    free(buf);
    return s;
}

/* ---- deterministic bytes for the large-result tests ---------------------------------------- */

/* Fills `buf` with `size` pseudo-random bytes from `seed` (the same on both sides). */
static inline void tl_pattern(unsigned char *buf, size_t size, uint64_t seed) {
    uint64_t x = seed ? seed : 0x9E3779B97F4A7C15ull;
    size_t i = 0;
    while (i < size) {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        uint64_t v = x * 0x2545F4914F6CDD1Dull;
        for (int k = 0; k < 8 && i < size; k++, i++) buf[i] = (unsigned char)(v >> (8 * k));
    }
}

/* ---- arguments of the tasks ----------------------------------------------------------------- */

/* tl_task_fail: returns `status` after weft_call_set_error(message). */
typedef struct {
    int32_t status;
    char message[128];
} tl_fail_arg;

/* tl_task_big: a result of `size` bytes of tl_pattern(seed). */
typedef struct {
    uint64_t size;
    uint64_t seed;
} tl_big_arg;

/* tl_task_fds: the result. */
typedef struct {
    uint32_t count;        /* weft_call_fd_count() */
    int32_t past_end;      /* weft_call_fd(call, count): -1 expected */
    uint32_t cloexec_mask; /* bit i set when descriptor i is close-on-exec in the child */
    int32_t write_errno;   /* 0, or the errno of the first failed write */
} tl_fds_result;

/* ---- the tasks -------------------------------------------------------------------------------- */

/* Reports a tl_info (tag "tasklib"). */
weft_status tl_task_info(weft_call *call);

/* Argument tl_fail_arg: sets its message as the error and returns its status. */
weft_status tl_task_fail(weft_call *call);

/* Argument int32_t: leaves with _exit(code) without reporting. */
weft_status tl_task_exit(weft_call *call);

/* Argument int32_t: restores the default action of that signal and ends by it: abort() for
 * SIGABRT, a write to a PROT_NONE page for SIGSEGV, raise() for others. */
weft_status tl_task_raise(weft_call *call);

/* fds: none, [ready] or [ready, gate]. Writes one byte to the ready descriptor (when passed),
 * then, with a gate, reads one byte from it and returns WEFT_OK with the result "released:"
 * followed by its argument bytes;
 * without a gate, sleeps forever. */
weft_status tl_task_block(weft_call *call);

/* Writes "<i>:<argument>" to each passed descriptor i; the result is a tl_fds_result. */
weft_status tl_task_fds(weft_call *call);

/* Argument: an array token (default space, integer items, length >= 2). Adds 1 to item 0,
 * stores getpid() in item 1; the result is item 0's previous value (int64_t). */
weft_status tl_task_array(weft_call *call);

/* Argument: a lock token. Tries the lock once; the result is the int32_t status of
 * weft_lock_acquire(lock, 0) (released again when it succeeded). */
weft_status tl_task_lock_try(weft_call *call);

/* Argument tl_big_arg: the result is the pattern. */
weft_status tl_task_big(weft_call *call);

/* Argument uint32_t start method: starts tl_task_info as a child of this child (default name,
 * that method), joins it and returns the grandchild's result bytes unchanged. */
weft_status tl_task_nested(weft_call *call);

#endif
