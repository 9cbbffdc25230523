/* The weft C conformance runner: see runner.h. */
#define _GNU_SOURCE
#include "runner.h"

#include <errno.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_TESTS 1024
#define DEFAULT_TIMEOUT_MS 30000

struct test {
    const char *name;
    test_fn fn;
    unsigned timeout_ms;
};

static struct test tests[MAX_TESTS];
static int n_tests;

void runner_register(const char *name, test_fn fn, unsigned timeout_ms) {
    if (n_tests == MAX_TESTS) {
        fprintf(stderr, "too many tests\n");
        abort();
    }
    tests[n_tests].name = name;
    tests[n_tests].fn = fn;
    tests[n_tests].timeout_ms = timeout_ms ? timeout_ms : DEFAULT_TIMEOUT_MS;
    n_tests++;
}

uint64_t runner_now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void runner_sleep_ms(unsigned ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

static int by_name(const void *a, const void *b) {
    return strcmp(((const struct test *)a)->name, ((const struct test *)b)->name);
}

/* Runs one test in a forked child; returns 0 on pass. */
static int run_forked(const struct test *t, char *why, size_t why_len) {
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid < 0) {
        snprintf(why, why_len, "fork failed: %s", strerror(errno));
        return -1;
    }
    if (pid == 0) {
        /* Own process group, so that a timeout kills helpers the test forked too. */
        setpgid(0, 0);
        t->fn();
        fflush(stdout);
        fflush(stderr);
        _exit(0);
    }
    setpgid(pid, pid);
    uint64_t deadline = runner_now_ns() + (uint64_t)t->timeout_ms * 1000000u;
    int status = 0;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) break;
        if (r < 0 && errno != EINTR) {
            snprintf(why, why_len, "waitpid failed: %s", strerror(errno));
            return -1;
        }
        if (runner_now_ns() > deadline) {
            kill(-pid, SIGKILL);
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            snprintf(why, why_len, "timed out after %u ms", t->timeout_ms);
            return -1;
        }
        runner_sleep_ms(2);
    }
    /* Reap anything the test left behind in its group. */
    kill(-pid, SIGKILL);
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return 0;
    if (WIFEXITED(status))
        snprintf(why, why_len, "exit code %d", WEXITSTATUS(status));
    else if (WIFSIGNALED(status))
        snprintf(why, why_len, "killed by signal %d (%s)", WTERMSIG(status), strsignal(WTERMSIG(status)));
    else
        snprintf(why, why_len, "unexpected wait status %d", status);
    return -1;
}

static const struct test *find(const char *name) {
    for (int i = 0; i < n_tests; i++)
        if (strcmp(tests[i].name, name) == 0) return &tests[i];
    return NULL;
}

int main(int argc, char **argv) {
    qsort(tests, (size_t)n_tests, sizeof tests[0], by_name);
    if (argc == 3 && strcmp(argv[1], "--in-process") == 0) {
        const struct test *t = find(argv[2]);
        if (!t) {
            fprintf(stderr, "no test named %s\n", argv[2]);
            return 2;
        }
        t->fn();
        return 0;
    }
    if (argc == 2 && strcmp(argv[1], "--list") == 0) {
        for (int i = 0; i < n_tests; i++) printf("%s\n", tests[i].name);
        return 0;
    }
    const struct test *selected[MAX_TESTS];
    int n = 0;
    if (argc > 1) {
        for (int i = 1; i < argc; i++) {
            const struct test *t = find(argv[i]);
            if (!t) {
                fprintf(stderr, "no test named %s\n", argv[i]);
                return 2;
            }
            selected[n++] = t;
        }
    } else {
        for (int i = 0; i < n_tests; i++) selected[n++] = &tests[i];
    }
    printf("TAP version 13\n1..%d\n", n);
    int failed = 0;
    for (int i = 0; i < n; i++) {
        char why[256] = "";
        uint64_t start = runner_now_ns();
        int r = run_forked(selected[i], why, sizeof why);
        double ms = (double)(runner_now_ns() - start) / 1e6;
        if (r == 0) {
            printf("ok %d - %s # %.1f ms\n", i + 1, selected[i]->name, ms);
        } else {
            printf("not ok %d - %s # %s\n", i + 1, selected[i]->name, why);
            failed++;
        }
        fflush(stdout);
    }
    printf("# %d passed, %d failed\n", n - failed, failed);
    return failed ? 1 : 0;
}
