/* Helpers shared by the test files of the C conformance suite: see helpers.h. */
#define _GNU_SOURCE
#include "helpers.h"

#include <signal.h>
#include <sys/syscall.h>
#include <unistd.h>

/* ---- threads of this process ------------------------------------------------------------ */

uint32_t my_tid(void) {
    return (uint32_t)syscall(SYS_gettid);
}

/* Waits until thread `tid` is in state S, failing at `deadline` (runner_now_ns). */
static void wait_sleeping(uint32_t tid, uint64_t deadline) {
    char path[64];
    snprintf(path, sizeof path, "/proc/self/task/%u/stat", tid);
    for (;;) {
        char buf[512] = "";
        FILE *f = fopen(path, "r");
        if (!f) FAIL_AT("thread %u: cannot read %s", tid, path);
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = '\0';
        /* The state follows the command name in parentheses (which may itself hold a ")"). */
        const char *p = strrchr(buf, ')');
        ASSERT_NOT_NULL(p);
        if (p[1] == ' ' && p[2] == 'S') return;
        if (runner_now_ns() > deadline) FAIL_AT("thread %u never blocked (stat: %s)", tid, buf);
        runner_sleep_ms(1);
    }
}

void wait_until_blocked(uint32_t tid) {
    wait_sleeping(tid, runner_now_ns() + 3 * SEC);
}

void wait_blocked(atomic_uint *tid) {
    uint64_t deadline = runner_now_ns() + 10 * SEC;
    while (atomic_load(tid) == 0) {
        if (runner_now_ns() > deadline) FAIL_AT("thread never published its id, never blocked");
        runner_sleep_ms(1);
    }
    wait_sleeping(atomic_load(tid), deadline);
}

pthread_t spawn(void *(*fn)(void *), void *arg) {
    pthread_t t;
    ASSERT_EQ(pthread_create(&t, NULL, fn, arg), 0);
    return t;
}

/* ---- weft objects ----------------------------------------------------------------------- */

weft_lock *new_lock(void) {
    weft_lock *l = NULL;
    ASSERT_OK(weft_lock_new(&l));
    ASSERT_NOT_NULL(l);
    return l;
}

weft_rlock *new_rlock(void) {
    weft_rlock *r = NULL;
    ASSERT_OK(weft_rlock_new(&r));
    ASSERT_NOT_NULL(r);
    return r;
}

weft_event *new_event(void) {
    weft_event *e = NULL;
    ASSERT_OK(weft_event_new(&e));
    ASSERT_NOT_NULL(e);
    return e;
}

weft_semaphore *new_sem(uint32_t value, int bounded) {
    weft_semaphore *s = NULL;
    if (bounded)
        ASSERT_OK(weft_semaphore_new_bounded(value, &s));
    else
        ASSERT_OK(weft_semaphore_new(value, &s));
    ASSERT_NOT_NULL(s);
    return s;
}

weft_barrier *new_barrier(uint32_t parties, weft_barrier_action action, void *ctx) {
    weft_barrier *b = NULL;
    ASSERT_OK(weft_barrier_new(parties, action, ctx, &b));
    ASSERT_NOT_NULL(b);
    return b;
}

/* ---- weft threads ----------------------------------------------------------------------- */

weft_status start_ptr(weft_task_fn fn, void *p, const weft_thread_options *o, weft_thread **out) {
    return weft_thread_start(fn, &p, sizeof p, o, out);
}

void *call_ptr(weft_call *call) {
    const void *data = NULL;
    size_t len = 0;
    ASSERT_OK(weft_call_arg(call, &data, &len));
    ASSERT_EQ(len, sizeof(void *));
    void *p;
    memcpy(&p, data, sizeof p);
    return p;
}

weft_status task_nothing(weft_call *call) {
    (void)call;
    return WEFT_OK;
}

weft_status task_wait_event(weft_call *call) {
    weft_event *e = call_ptr(call);
    return weft_event_wait(e, WEFT_FOREVER);
}

void wait_dead(weft_thread *t) {
    uint64_t deadline = runner_now_ns() + 3 * SEC;
    while (weft_thread_is_alive(t)) {
        ASSERT(runner_now_ns() < deadline);
        runner_sleep_ms(1);
    }
}

/* ---- signals ---------------------------------------------------------------------------- */

/* Signals delivered since the last pester_start. */
static atomic_int pester_signals;

static void pester_on_signal(int sig) {
    (void)sig;
    atomic_fetch_add(&pester_signals, 1);
}

static void *pester_main(void *arg) {
    pester *p = arg;
    while (!atomic_load(&p->stop)) {
        pthread_kill(p->target, SIGUSR1);
        runner_sleep_ms(1);
    }
    return NULL;
}

void pester_start(pester *p) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = pester_on_signal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;
    ASSERT_EQ(sigaction(SIGUSR1, &sa, NULL), 0);
    atomic_store(&pester_signals, 0);
    atomic_store(&p->stop, 0);
    p->target = pthread_self();
    ASSERT_EQ(pthread_create(&p->thread, NULL, pester_main, p), 0);
}

void pester_stop(pester *p) {
    atomic_store(&p->stop, 1);
    pthread_join(p->thread, NULL);
    ASSERT_GT(atomic_load(&pester_signals), 0); /* the wait really was interrupted */
}

/* ---- processes -------------------------------------------------------------------------- */

#include <dirent.h>
#include <errno.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>

pid_t xp_fork(void (*fn)(void *), void *arg) {
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        fn(arg);
        _exit(0);
    }
    return pid;
}

static const char *describe_status(int st, char *buf, size_t cap) {
    if (WIFEXITED(st))
        snprintf(buf, cap, "exit code %d", WEXITSTATUS(st));
    else if (WIFSIGNALED(st))
        snprintf(buf, cap, "signal %d (%s)", WTERMSIG(st), strsignal(WTERMSIG(st)));
    else
        snprintf(buf, cap, "wait status %d", st);
    return buf;
}

int xp_wait(pid_t pid, unsigned timeout_ms) {
    uint64_t deadline = runner_now_ns() + (uint64_t)timeout_ms * MS;
    for (;;) {
        int st = 0;
        pid_t r = waitpid(pid, &st, WNOHANG);
        if (r == pid) return st;
        if (r < 0 && errno != EINTR) FAIL_AT("waitpid(%d): %s", (int)pid, strerror(errno));
        if (runner_now_ns() > deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &st, 0);
            FAIL_AT("child %d did not end within %u ms", (int)pid, timeout_ms);
        }
        runner_sleep_ms(1);
    }
}

void xp_wait_ok(pid_t pid) {
    char why[64];
    int st = xp_wait(pid, 20000);
    if (!(WIFEXITED(st) && WEXITSTATUS(st) == 0))
        FAIL_AT("child %d failed: %s", (int)pid, describe_status(st, why, sizeof why));
}

void xp_kill(pid_t pid) {
    char why[64];
    ASSERT_EQ(kill(pid, SIGKILL), 0);
    int st = xp_wait(pid, 20000);
    if (!(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL))
        FAIL_AT("child %d ended before it was killed: %s", (int)pid, describe_status(st, why, sizeof why));
}

void xp_wait_killed(pid_t pid) {
    char why[64];
    int st = xp_wait(pid, 20000);
    if (!(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL))
        FAIL_AT("child %d should have killed itself: %s", (int)pid, describe_status(st, why, sizeof why));
}

void xp_wait_sleeping(pid_t pid) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    uint64_t deadline = runner_now_ns() + 10 * SEC;
    for (;;) {
        char buf[512] = "";
        FILE *f = fopen(path, "r");
        if (!f) FAIL_AT("process %d: cannot read %s", (int)pid, path);
        size_t n = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[n] = '\0';
        const char *p = strrchr(buf, ')');
        ASSERT_NOT_NULL(p);
        if (p[1] == ' ' && p[2] == 'S') return;
        if (p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X')) FAIL_AT("process %d died (stat: %s)", (int)pid, buf);
        if (runner_now_ns() > deadline) FAIL_AT("process %d never blocked (stat: %s)", (int)pid, buf);
        runner_sleep_ms(1);
    }
}

void *xp_shared(size_t size) {
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    ASSERT(p != MAP_FAILED);
    return p;
}

void xp_wait_count(atomic_int *counter, int value) {
    uint64_t deadline = runner_now_ns() + 10 * SEC;
    while (atomic_load(counter) < value) {
        if (runner_now_ns() > deadline)
            FAIL_AT("counter stayed at %d, never reached %d", atomic_load(counter), value);
        runner_sleep_ms(1);
    }
}

char *xp_name(char *buf, size_t cap, const char *tag) {
    int n = snprintf(buf, cap, "ct%d-%s", (int)getpid(), tag);
    ASSERT(n > 0 && (size_t)n < cap);
    return buf;
}

uint64_t xp_rand(uint64_t *state) {
    uint64_t x = *state;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    *state = x;
    return x * 0x2545F4914F6CDD1DULL;
}

size_t xp_participants(weft_space *space) {
    weft_space *s = space;
    if (!s) ASSERT_OK(weft_space_default(&s));
    size_t live = 0;
    ASSERT_OK(weft_space_participants(s, &live));
    if (!space) weft_space_free(s);
    return live;
}

static int xp_by_name(const void *a, const void *b) {
    return strcmp((const char *)a, (const char *)b);
}

/* The /dev/shm entries "weft.ct<pid>-*" of the calling process, sorted. */
static void xp_list(xp_guard *g) {
    char prefix[64];
    snprintf(prefix, sizeof prefix, "weft.ct%d-", (int)getpid());
    g->n = 0;
    DIR *d = opendir("/dev/shm");
    ASSERT_NOT_NULL(d);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (strncmp(e->d_name, prefix, strlen(prefix)) != 0) continue;
        if (g->n == sizeof g->names / sizeof g->names[0]) break;
        snprintf(g->names[g->n++], sizeof g->names[0], "%s", e->d_name);
    }
    closedir(d);
    qsort(g->names, g->n, sizeof g->names[0], xp_by_name);
}

void xp_begin(xp_guard *g) {
    xp_list(g);
    g->default_participants = xp_participants(NULL);
}

void xp_end(const xp_guard *g) {
    xp_guard now;
    xp_list(&now);
    for (size_t i = 0; i < now.n; i++) {
        bool found = false;
        for (size_t j = 0; j < g->n; j++) found = found || strcmp(now.names[i], g->names[j]) == 0;
        if (!found) FAIL_AT("/dev/shm/%s was left behind", now.names[i]);
    }
    for (size_t j = 0; j < g->n; j++) {
        bool found = false;
        for (size_t i = 0; i < now.n; i++) found = found || strcmp(now.names[i], g->names[j]) == 0;
        if (!found) FAIL_AT("/dev/shm/%s vanished", g->names[j]);
    }
    ASSERT_UEQ(xp_participants(NULL), g->default_participants);
}

bool xp_shm_exists(const char *name) {
    char path[512];
    snprintf(path, sizeof path, "/dev/shm/weft.%s", name);
    struct stat st;
    return lstat(path, &st) == 0;
}

/* ---- descriptors and children ----------------------------------------------------------- */

int fd_count(void) {
    DIR *d = opendir("/proc/self/fd");
    if (!d) FAIL_AT("opendir /proc/self/fd");
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] != '.') n++;
    }
    closedir(d);
    return n - 1; /* the directory stream's own descriptor */
}

/* Counts children of this process; only zombies when `zombies_only`. */
static int count_children(bool zombies_only) {
    DIR *d = opendir("/proc");
    if (!d) FAIL_AT("opendir /proc");
    int n = 0;
    pid_t me = getpid();
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        char path[300], buf[512];
        snprintf(path, sizeof path, "/proc/%s/stat", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        size_t len = fread(buf, 1, sizeof buf - 1, f);
        fclose(f);
        buf[len] = 0;
        /* pid (comm) state ppid ...: comm may hold spaces and parentheses, so parse from the
         * last ')'. */
        char *close = strrchr(buf, ')');
        char state;
        int ppid;
        if (!close || sscanf(close + 1, " %c %d", &state, &ppid) != 2) continue;
        if (ppid == me && (!zombies_only || state == 'Z')) n++;
    }
    closedir(d);
    return n;
}

int zombie_children(void) {
    return count_children(true);
}

int child_count(void) {
    return count_children(false);
}

void fd_begin(fd_guard *g) {
    g->fds = fd_count();
}

void fd_end(const fd_guard *g) {
    ASSERT_EQ(fd_count(), g->fds);
    ASSERT_EQ(zombie_children(), 0);
}
