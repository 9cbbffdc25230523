/* libweft_tasklib.so: see tasklib.h. */
#define _GNU_SOURCE
#include "tasklib.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <sys/mman.h>

/* Copies the argument into `out` when it is exactly `size` bytes. */
static weft_status exact_arg(weft_call *call, void *out, size_t size) {
    const void *arg = NULL;
    size_t len = 0;
    weft_status s = weft_call_arg(call, &arg, &len);
    if (s != WEFT_OK) return s;
    if (len != size) {
        char msg[96];
        snprintf(msg, sizeof msg, "argument of %zu bytes, expected %zu", len, size);
        weft_call_set_error(call, msg);
        return WEFT_INVALID_ARGUMENT;
    }
    memcpy(out, arg, size);
    return WEFT_OK;
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

weft_status tl_task_info(weft_call *call) {
    return tl_report_info(call, "tasklib");
}

weft_status tl_task_fail(weft_call *call) {
    tl_fail_arg a;
    weft_status s = exact_arg(call, &a, sizeof a);
    if (s != WEFT_OK) return s;
    a.message[sizeof a.message - 1] = '\0';
    weft_call_set_error(call, a.message);
    return a.status;
}

weft_status tl_task_exit(weft_call *call) {
    int32_t code;
    weft_status s = exact_arg(call, &code, sizeof code);
    if (s != WEFT_OK) return s;
    _exit(code);
}

weft_status tl_task_raise(weft_call *call) {
    int32_t sig;
    weft_status s = exact_arg(call, &sig, sizeof sig);
    if (s != WEFT_OK) return s;
    /* The default action, whatever handler the program (or a sanitizer runtime) installed. */
    signal(sig, SIG_DFL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    sigprocmask(SIG_UNBLOCK, &set, NULL);
    if (sig == SIGABRT) abort();
    if (sig == SIGSEGV) {
        /* A real invalid access: a write to a page that may not be written. */
        volatile int *page = mmap(NULL, 4096, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
        if (page != MAP_FAILED) *page = 1;
    }
    raise(sig);
    weft_call_set_error(call, "the signal did not end the process");
    return WEFT_INVALID_STATE;
}

weft_status tl_task_block(weft_call *call) {
    size_t n = weft_call_fd_count(call);
    if (n >= 1) {
        int e = write_all(weft_call_fd(call, 0), "r", 1);
        if (e != 0) {
            weft_call_set_error(call, strerror(e));
            return WEFT_OS_ERROR;
        }
    }
    if (n >= 2) {
        char c;
        for (;;) {
            ssize_t r = read(weft_call_fd(call, 1), &c, 1);
            if (r == 1) break;
            if (r < 0 && errno == EINTR) continue;
            weft_call_set_error(call, r == 0 ? "gate closed" : strerror(errno));
            return WEFT_OS_ERROR;
        }
        const void *arg = NULL;
        size_t len = 0;
        weft_status s = weft_call_arg(call, &arg, &len);
        if (s != WEFT_OK) return s;
        char *buf = malloc(9 + len);
        if (!buf) return WEFT_NO_MEMORY;
        memcpy(buf, "released:", 9);
        if (len > 0) memcpy(buf + 9, arg, len);
        s = weft_call_set_result(call, buf, 9 + len);
        free(buf);
        return s;
    }
    for (;;) pause();
}

weft_status tl_task_fds(weft_call *call) {
    const void *arg = NULL;
    size_t len = 0;
    weft_status s = weft_call_arg(call, &arg, &len);
    if (s != WEFT_OK) return s;
    tl_fds_result r;
    memset(&r, 0, sizeof r);
    r.count = (uint32_t)weft_call_fd_count(call);
    r.past_end = weft_call_fd(call, r.count);
    for (uint32_t i = 0; i < r.count; i++) {
        int fd = weft_call_fd(call, i);
        int flags = fcntl(fd, F_GETFD);
        if (flags >= 0 && (flags & FD_CLOEXEC) && i < 32) r.cloexec_mask |= 1u << i;
        char head[16];
        int hl = snprintf(head, sizeof head, "%u:", i);
        int e = write_all(fd, head, (size_t)hl);
        if (e == 0 && len > 0) e = write_all(fd, arg, len);
        if (e != 0 && r.write_errno == 0) r.write_errno = e;
    }
    return weft_call_set_result(call, &r, sizeof r);
}

weft_status tl_task_array(weft_call *call) {
    const void *arg = NULL;
    size_t len = 0;
    weft_status s = weft_call_arg(call, &arg, &len);
    if (s != WEFT_OK) return s;
    weft_array *a = NULL;
    s = weft_array_from_token(arg, len, &a);
    if (s != WEFT_OK) {
        weft_call_set_error(call, weft_last_error_message());
        return s;
    }
    int64_t previous = -1;
    s = weft_array_fetch_add(a, 0, 1, &previous);
    if (s == WEFT_OK) s = weft_array_store(a, 1, (int64_t)getpid());
    if (s != WEFT_OK) weft_call_set_error(call, weft_last_error_message());
    weft_array_free(a);
    if (s != WEFT_OK) return s;
    return weft_call_set_result(call, &previous, sizeof previous);
}

weft_status tl_task_lock_try(weft_call *call) {
    const void *arg = NULL;
    size_t len = 0;
    weft_status s = weft_call_arg(call, &arg, &len);
    if (s != WEFT_OK) return s;
    weft_lock *l = NULL;
    s = weft_lock_from_token(arg, len, &l);
    if (s != WEFT_OK) {
        weft_call_set_error(call, weft_last_error_message());
        return s;
    }
    int32_t got = weft_lock_acquire(l, 0);
    if (got == WEFT_OK) weft_lock_release(l);
    weft_lock_free(l);
    return weft_call_set_result(call, &got, sizeof got);
}

weft_status tl_task_big(weft_call *call) {
    tl_big_arg a;
    weft_status s = exact_arg(call, &a, sizeof a);
    if (s != WEFT_OK) return s;
    unsigned char *buf = malloc(a.size ? a.size : 1);
    if (!buf) {
        weft_call_set_error(call, "out of memory");
        return WEFT_NO_MEMORY;
    }
    tl_pattern(buf, a.size, a.seed);
    s = weft_call_set_result(call, buf, a.size);
    free(buf);
    return s;
}

weft_status tl_task_nested(weft_call *call) {
    uint32_t method;
    weft_status s = exact_arg(call, &method, sizeof method);
    if (s != WEFT_OK) return s;
    weft_process_options o;
    memset(&o, 0, sizeof o);
    o.start_method = method;
    weft_process *p = NULL;
    s = weft_process_start(tl_task_info, "nested", 6, &o, &p);
    if (s != WEFT_OK) {
        weft_call_set_error(call, weft_last_error_message());
        return s;
    }
    weft_bytes *r = NULL;
    s = weft_process_join(p, WEFT_FOREVER, &r);
    if (s != WEFT_OK) {
        weft_call_set_error(call, weft_last_error_message());
        weft_process_free(p);
        return s;
    }
    s = weft_call_set_result(call, weft_bytes_data(r), weft_bytes_len(r));
    weft_bytes_free(r);
    weft_process_free(p);
    return s;
}
