/* Helpers shared by the test files of the weft C conformance suite (helpers.c): thread ids and
 * "is it blocked?" checks, pthread and weft-task plumbing, constructors that assert, and a
 * signal pester. A helper that fails aborts the test as a failed assertion does.
 */
#ifndef WEFT_CTESTS_HELPERS_H
#define WEFT_CTESTS_HELPERS_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "runner.h"

/* `hay` must be a non-NULL string containing `needle`. */
#define ASSERT_CONTAINS(hay, needle)                                                      \
    do {                                                                                  \
        const char *h_ = (hay), *n_ = (needle);                                           \
        if (h_ == NULL || strstr(h_, n_) == NULL)                                         \
            FAIL_AT("assertion failed: \"%s\" contains \"%s\"", h_ ? h_ : "(null)", n_);  \
    } while (0)

/* ---- threads of this process ------------------------------------------------------------ */

/* gettid() of the calling thread. */
uint32_t my_tid(void);

/* Waits until thread `tid` sleeps in the kernel (state S in /proc/self/task/<tid>/stat), i.e.
 * is blocked; fails when its stat cannot be read, or after 3 s. */
void wait_until_blocked(uint32_t tid);

/* Waits until the thread that stores its my_tid() into `*tid` right before a blocking weft
 * call sleeps in the kernel, i.e. is blocked inside that call; fails after 10 s. */
void wait_blocked(atomic_uint *tid);

/* pthread_create with default attributes; the test fails if it does. */
pthread_t spawn(void *(*fn)(void *), void *arg);

/* ---- weft objects (the test fails unless creation succeeds) ----------------------------- */

weft_lock *new_lock(void);
weft_rlock *new_rlock(void);
weft_event *new_event(void);
/* A semaphore with `value` permits; a bounded one when `bounded` is non-zero. */
weft_semaphore *new_sem(uint32_t value, int bounded);
weft_barrier *new_barrier(uint32_t parties, weft_barrier_action action, void *ctx);

/* ---- weft threads ----------------------------------------------------------------------- */

/* Starts `fn` with the pointer `p` itself as the argument bytes. */
weft_status start_ptr(weft_task_fn fn, void *p, const weft_thread_options *o, weft_thread **out);

/* The pointer a task was started with by start_ptr (the argument must be exactly a pointer). */
void *call_ptr(weft_call *call);

/* A task that returns WEFT_OK without setting a result. */
weft_status task_nothing(weft_call *call);

/* A task that waits (forever) on the weft_event its start_ptr argument points to, and returns
 * what the wait returned. */
weft_status task_wait_event(weft_call *call);

/* Waits until `t` is no longer alive; fails after 3 s. */
void wait_dead(weft_thread *t);

/* ---- signals: every blocking system call of a thread interrupted ------------------------- */

/* Sends SIGUSR1 to one thread every millisecond, from a thread of its own. */
typedef struct {
    pthread_t target, thread;
    atomic_int stop;
} pester;

/* Starts signalling the calling thread (a handler without SA_RESTART, so that every blocking
 * system call in progress fails with EINTR). */
void pester_start(pester *p);

/* Stops the signals; fails unless at least one signal was delivered since pester_start. */
void pester_stop(pester *p);

/* ---- processes (cross-process tests of shared objects) ----------------------------------- */

#include <sys/types.h>

/* Forks a child that runs `fn(arg)` and then leaves with _exit(0); a failed assertion in the
 * child aborts it, which its waiter reports. */
pid_t xp_fork(void (*fn)(void *), void *arg);

/* Waits up to `timeout_ms` for child `pid` and returns its wait status; on timeout the child
 * is killed and the test fails. */
int xp_wait(pid_t pid, unsigned timeout_ms);

/* Waits (up to 20 s) for child `pid`, which must exit with status 0. */
void xp_wait_ok(pid_t pid);

/* SIGKILLs child `pid` and reaps it; fails unless it died of a SIGKILL. */
void xp_kill(pid_t pid);

/* Waits (up to 20 s) for child `pid`, which must have died of SIGKILL (it killed itself). */
void xp_wait_killed(pid_t pid);

/* Waits until process `pid` (a child) sleeps in the kernel: state S in /proc/<pid>/stat.
 * Fails after 10 s, or when the process is gone. */
void xp_wait_sleeping(pid_t pid);

/* `size` bytes of zeroed anonymous MAP_SHARED memory, shared with children forked later
 * (never unmapped): the tests' own bookkeeping, independent of weft. */
void *xp_shared(size_t size);

/* Waits until `*counter` is at least `value`; fails after 10 s. */
void xp_wait_count(atomic_int *counter, int value);

/* A name unique to the calling test process, "ct<pid>-<tag>", written into `buf` (`cap`
 * bytes); returns `buf`. Spaces, segments and objects of a test use such names. */
char *xp_name(char *buf, size_t cap, const char *tag);

/* xorshift64* step: a pseudo-random number from `*state` (non-zero). */
uint64_t xp_rand(uint64_t *state);

/* The number of live participants of `space` (NULL: the default space); the test fails if
 * weft_space_participants does. */
size_t xp_participants(weft_space *space);

/* Leak check of a test: the /dev/shm/weft.ct<pid>-* entries and the default space's participant
 * count at xp_begin must be the same at xp_end (after every child was reaped). */
typedef struct {
    size_t n;
    char names[32][256];
    size_t default_participants;
} xp_guard;

void xp_begin(xp_guard *g);
void xp_end(const xp_guard *g);

/* True when /dev/shm/weft.<name> exists (as a file or a link). */
bool xp_shm_exists(const char *name);

/* ---- descriptors and children (processes, pipes, commands) ------------------------------ */

/* Number of open descriptors of this process (entries of /proc/self/fd). */
int fd_count(void);

/* Children of this process (by scanning /proc) in state Z, and in any state. */
int zombie_children(void);
int child_count(void);

/* Leak check of a test: the descriptor count at fd_begin must be the same at fd_end, and at
 * fd_end this process has no zombie children. */
typedef struct {
    int fds;
} fd_guard;
void fd_begin(fd_guard *g);
void fd_end(const fd_guard *g);

#endif
