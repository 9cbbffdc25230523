/* weft demo: the `threading` and `multiprocessing` programs of the Python tutorials in seeds/,
 * ported to C.
 *
 * Each section names the seed program it follows and prints what the Python version prints
 * (in English where the tutorial printed Chinese). Sleeps are scaled down (1 s -> 20-50 ms)
 * so that the whole demo runs in about a second.
 *
 * Build and run: `cargo run --release --example demo` (see examples/demo.rs), or by hand:
 *   cargo build --release
 *   cc -std=c11 -Wall -Wextra -pthread -Iinclude examples/demo.c -Ltarget/release -lweft \
 *      -Wl,-rpath,$PWD/target/release -o demo && ./demo
 */
#define _POSIX_C_SOURCE 200809L
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "weft.h"

#define MS ((uint64_t)1000000)

/* Every weft call returns a status; the demo stops at the first unexpected one. */
#define CHECK(expr)                                                                        \
    do {                                                                                   \
        weft_status s_ = (expr);                                                           \
        if (s_ != WEFT_OK) {                                                               \
            fprintf(stderr, "%s:%d: %s failed: %s (%s)\n", __FILE__, __LINE__, #expr,      \
                    weft_status_name(s_), weft_last_error_message());                      \
            exit(1);                                                                       \
        }                                                                                  \
    } while (0)

static void sleep_ms(unsigned ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    while (nanosleep(&ts, &ts) != 0) {
    }
}

/* threading.current_thread().name, copied into `buf`. */
static const char *current_name(char *buf, size_t n) {
    weft_thread *me = NULL;
    CHECK(weft_thread_current(&me));
    snprintf(buf, n, "%s", weft_thread_name(me));
    weft_thread_free(me);
    return buf;
}

/* Thread arguments travel as bytes (Python's args=(...)); these helpers pass one value. */
static weft_thread *start(weft_task_fn fn, const void *arg, size_t len, const char *name, bool daemon) {
    weft_thread_options o = {0};
    o.name = name;
    o.daemon = daemon;
    weft_thread *t = NULL;
    CHECK(weft_thread_start(fn, arg, len, &o, &t));
    return t;
}

static void *arg_ptr(weft_call *call) {
    const void *data = NULL;
    size_t len = 0;
    CHECK(weft_call_arg(call, &data, &len));
    void *p = NULL;
    if (len == sizeof p) memcpy(&p, data, sizeof p);
    return p;
}

static long arg_long(weft_call *call) {
    const void *data = NULL;
    size_t len = 0;
    CHECK(weft_call_arg(call, &data, &len));
    long v = 0;
    if (len == sizeof v) memcpy(&v, data, sizeof v);
    return v;
}

static void join_free(weft_thread *t) {
    CHECK(weft_thread_join(t, WEFT_FOREVER, NULL));
    weft_thread_free(t);
}

static void section(const char *title) { printf("\n== %s ==\n", title); }

/* ---- 0. current_thread() and a named thread (seed 002) ----------------------------------- */

static weft_status loop(weft_call *call) {
    (void)call;
    char name[64];
    current_name(name, sizeof name);
    printf("thread %s is running...\n", name);
    for (int n = 1; n <= 5; n++) {
        printf("thread %s >>> %d\n", name, n);
        sleep_ms(20);
    }
    printf("thread %s ended.\n", name);
    return WEFT_OK;
}

static void demo_loop_thread(void) {
    section("current_thread and a named thread (seed 002)");
    char name[64];
    printf("thread %s is running...\n", current_name(name, sizeof name));
    weft_thread *t = start(loop, NULL, 0, "LoopThread", false);
    join_free(t);
    printf("thread %s ended.\n", current_name(name, sizeof name));
}

/* ---- 1. ten threads adding to a counter, without and with a Lock (seed 000) -------------- */

static weft_lock *num_lock;
static long num;               /* guarded by num_lock */
static _Atomic long racy_num;  /* updated with separate load and store, like `num += 1` */

static weft_status incre_unlocked(weft_call *call) {
    for (long count = arg_long(call); count > 0; count--) {
        /* Read, add, write back: another thread's update in between is lost. (Relaxed
         * atomics make the race visible without undefined behaviour.) */
        long v = atomic_load_explicit(&racy_num, memory_order_relaxed);
        atomic_store_explicit(&racy_num, v + 1, memory_order_relaxed);
    }
    return WEFT_OK;
}

static weft_status incre(weft_call *call) {
    for (long count = arg_long(call); count > 0; count--) {
        CHECK(weft_lock_acquire(num_lock, WEFT_FOREVER)); /* with lock: */
        num += 1;
        CHECK(weft_lock_release(num_lock));
    }
    return WEFT_OK;
}

static void run_ten(weft_task_fn fn) {
    long count = 100000;
    weft_thread *threads[10];
    for (int i = 0; i < 10; i++) threads[i] = start(fn, &count, sizeof count, NULL, false);
    for (int i = 0; i < 10; i++) join_free(threads[i]);
}

static void demo_lock_counter(void) {
    section("Lock: ten threads add 100000 each to a shared counter (seed 000)");
    run_ten(incre_unlocked);
    printf("without the lock: expected value is %d real value is %ld\n", 10 * 100000,
           atomic_load(&racy_num));
    CHECK(weft_lock_new(&num_lock));
    run_ten(incre);
    printf("with the lock:    expected value is %d real value is %ld\n", 10 * 100000, num);
    weft_lock_free(num_lock);
}

/* ---- 1b. acquire with a timeout (seed 000, "mutex.acquire(1)") ----------------------------- */

static weft_lock *mutex;
static int shared_num;

static weft_status my_thread_run(weft_call *call) {
    (void)call;
    char name[64];
    sleep_ms(20);
    if (weft_lock_acquire(mutex, 1000 * MS) == WEFT_OK) { /* if mutex.acquire(1): */
        shared_num = shared_num + 1;
        printf("%s: num value is %d\n", current_name(name, sizeof name), shared_num);
        CHECK(weft_lock_release(mutex));
    }
    return WEFT_OK;
}

static void demo_lock_timeout(void) {
    section("Lock.acquire(timeout) in five threads (seed 000)");
    CHECK(weft_lock_new(&mutex));
    weft_thread *t[5];
    for (int i = 0; i < 5; i++) t[i] = start(my_thread_run, NULL, 0, NULL, false);
    for (int i = 0; i < 5; i++) join_free(t[i]);
    weft_lock_free(mutex);
}

/* ---- 2. a re-entrant lock taken recursively (seed 000) ------------------------------------ */

static weft_rlock *rmutex;

static weft_status rlock_run(weft_call *call) {
    (void)call;
    char name[64];
    if (weft_rlock_acquire(rmutex, 1000 * MS) == WEFT_OK) {
        printf("thread %s get mutex\n", current_name(name, sizeof name));
        sleep_ms(20);
        CHECK(weft_rlock_acquire(rmutex, WEFT_FOREVER)); /* again: an RLock does not deadlock */
        printf("thread %s got it again, depth %u\n", name, weft_rlock_depth(rmutex));
        CHECK(weft_rlock_release(rmutex));
        CHECK(weft_rlock_release(rmutex));
    }
    return WEFT_OK;
}

static void demo_rlock(void) {
    section("RLock taken twice by the same thread (seed 000)");
    CHECK(weft_rlock_new(&rmutex));
    weft_thread *t[3];
    for (int i = 0; i < 3; i++) t[i] = start(rlock_run, NULL, 0, NULL, false);
    for (int i = 0; i < 3; i++) join_free(t[i]);
    weft_rlock_free(rmutex);
}

/* ---- 3. Condition: stage_1 notifies the stage_2 waiters (seed 003) ------------------------ */

static weft_condition *cond;
static bool stage_1_done; /* guarded by cond */

static bool is_stage_1_done(void *ctx) {
    (void)ctx;
    return stage_1_done;
}

static weft_status stage_1(weft_call *call) {
    (void)call;
    char name[64];
    printf("Starting %s\n", current_name(name, sizeof name));
    CHECK(weft_condition_acquire(cond, WEFT_FOREVER)); /* with cond: */
    printf("%s done and ready for stage 2\n", name);
    stage_1_done = true;
    CHECK(weft_condition_notify_all(cond));
    CHECK(weft_condition_release(cond));
    return WEFT_OK;
}

static weft_status stage_2(weft_call *call) {
    (void)call;
    char name[64];
    printf("Starting %s\n", current_name(name, sizeof name));
    CHECK(weft_condition_acquire(cond, WEFT_FOREVER));
    /* cond.wait(), with the predicate so that an early notify is not missed */
    CHECK(weft_condition_wait_for(cond, is_stage_1_done, NULL, WEFT_FOREVER));
    printf("%s running\n", name);
    CHECK(weft_condition_release(cond));
    return WEFT_OK;
}

static void demo_condition(void) {
    section("Condition: stage_1 notifies two stage_2 waiters (seed 003)");
    CHECK(weft_condition_new(&cond));
    weft_thread *s2[2];
    s2[0] = start(stage_2, NULL, 0, "stage_2[1]", false);
    sleep_ms(20);
    s2[1] = start(stage_2, NULL, 0, "stage_2[2]", false);
    sleep_ms(20);
    weft_thread *s1 = start(stage_1, NULL, 0, "s1", false);
    join_free(s1);
    join_free(s2[0]);
    join_free(s2[1]);
    weft_condition_free(cond);
}

/* ---- 3b. producer/consumer on a Condition -------------------------------------------------- */

enum { CAPACITY = 2, ITEMS = 6 };
static weft_condition *slots;
static int buffer[CAPACITY], head, count; /* guarded by slots */

static bool has_room(void *ctx) {
    (void)ctx;
    return count < CAPACITY;
}

static bool has_item(void *ctx) {
    (void)ctx;
    return count > 0;
}

static weft_status producer(weft_call *call) {
    (void)call;
    for (int item = 1; item <= ITEMS; item++) {
        CHECK(weft_condition_acquire(slots, WEFT_FOREVER));
        CHECK(weft_condition_wait_for(slots, has_room, NULL, WEFT_FOREVER));
        buffer[(head + count) % CAPACITY] = item;
        count++;
        printf("producer: put %d (%d in the buffer)\n", item, count);
        CHECK(weft_condition_notify_all(slots));
        CHECK(weft_condition_release(slots));
    }
    return WEFT_OK;
}

static weft_status consumer(weft_call *call) {
    int got[ITEMS], sum = 0;
    for (int i = 0; i < ITEMS; i++) {
        CHECK(weft_condition_acquire(slots, WEFT_FOREVER));
        CHECK(weft_condition_wait_for(slots, has_item, NULL, WEFT_FOREVER));
        got[i] = buffer[head];
        head = (head + 1) % CAPACITY;
        count--;
        printf("consumer: got %d\n", got[i]);
        CHECK(weft_condition_notify_all(slots));
        CHECK(weft_condition_release(slots));
        sum += got[i];
        sleep_ms(5);
    }
    /* The consumer's result travels back to whoever joins it. */
    return weft_call_set_result(call, &sum, sizeof sum);
}

static void demo_producer_consumer(void) {
    section("Condition: producer and consumer on a buffer of 2");
    CHECK(weft_condition_new(&slots));
    weft_thread *c = start(consumer, NULL, 0, "consumer", false);
    weft_thread *p = start(producer, NULL, 0, "producer", false);
    join_free(p);
    weft_bytes *result = NULL;
    CHECK(weft_thread_join(c, WEFT_FOREVER, &result));
    int sum = 0;
    memcpy(&sum, weft_bytes_data(result), sizeof sum);
    printf("main: the consumer's result is %d (1 + 2 + ... + %d)\n", sum, ITEMS);
    weft_bytes_free(result);
    weft_thread_free(c);
    weft_condition_free(slots);
}

/* ---- 4. threads meeting at a Barrier --------------------------------------------------------- */

static weft_barrier *barrier;

static weft_status all_arrived(void *ctx) {
    (void)ctx;
    printf("barrier action: all %u threads arrived\n", weft_barrier_parties(barrier));
    return WEFT_OK;
}

static weft_status meet(weft_call *call) {
    char name[64];
    current_name(name, sizeof name);
    sleep_ms((unsigned)arg_long(call));
    printf("%s waiting at the barrier\n", name);
    uint32_t index = 0;
    CHECK(weft_barrier_wait(barrier, WEFT_FOREVER, &index));
    printf("%s passed the barrier (arrived %u)\n", name, index + 1);
    return WEFT_OK;
}

static void demo_barrier(void) {
    section("Barrier: three threads meet");
    CHECK(weft_barrier_new(3, all_arrived, NULL, &barrier));
    weft_thread *t[3];
    for (long i = 0; i < 3; i++) {
        long delay = 10 * (i + 1);
        t[i] = start(meet, &delay, sizeof delay, NULL, false);
    }
    for (int i = 0; i < 3; i++) join_free(t[i]);
    weft_barrier_free(barrier);
}

/* ---- 5. Event: waiting for it (seed 003) and stopping a worker (seed 001) ----------------- */

static weft_status wait_for_event(weft_call *call) {
    weft_event *e = arg_ptr(call);
    printf("wait_for_event: starting\n");
    CHECK(weft_event_wait(e, WEFT_FOREVER));
    printf("wait_for_event: e.is_set()-> %s\n", weft_event_is_set(e) ? "true" : "false");
    return WEFT_OK;
}

static weft_status wait_for_event_timeout(weft_call *call) {
    weft_event *e = arg_ptr(call);
    printf("wait_for_event_timeout: starting\n");
    weft_status s = weft_event_wait(e, 100 * MS); /* e.wait(t): WEFT_TIMEOUT is "False" */
    if (s != WEFT_OK && s != WEFT_TIMEOUT) CHECK(s);
    printf("wait_for_event_timeout: e.is_set()-> %s\n", weft_event_is_set(e) ? "true" : "false");
    return WEFT_OK;
}

static void demo_event_wait(void) {
    section("Event: one waiter without and one with a timeout (seed 003)");
    weft_event *e = NULL;
    CHECK(weft_event_new(&e));
    weft_thread *w1 = start(wait_for_event, &e, sizeof e, "block", false);
    sleep_ms(10);
    weft_thread *w2 = start(wait_for_event_timeout, &e, sizeof e, "nonblock", false);
    sleep_ms(10);
    printf("main: waiting before calling Event.set()\n");
    sleep_ms(150);
    CHECK(weft_event_set(e));
    printf("main: event is set\n");
    join_free(w1);
    join_free(w2);
    weft_event_free(e);
}

static weft_status child_thread(weft_call *call) {
    weft_event *stop = arg_ptr(call);
    printf("child thread started\n");
    /* while not stop_flag: ...; time.sleep(1) -- the wait doubles as the sleep, so the
     * worker stops as soon as it is told to. */
    for (;;) {
        printf("child thread running\n");
        weft_status s = weft_event_wait(stop, 40 * MS);
        if (s == WEFT_OK) break;
        if (s != WEFT_TIMEOUT) CHECK(s);
    }
    printf("child thread exiting\n");
    return WEFT_OK;
}

static void demo_event_stop(void) {
    section("Event: stopping a worker thread (seed 001, method 2)");
    weft_event *stop = NULL;
    CHECK(weft_event_new(&stop));
    weft_thread *t = start(child_thread, &stop, sizeof stop, NULL, false);
    sleep_ms(180);
    CHECK(weft_event_set(stop)); /* stop_flag = True */
    join_free(t);
    printf("main thread ended\n");
    weft_event_free(stop);
}

/* Seed 001's method 1 raises SystemExit in the thread through ctypes; weft's equivalent is a
 * cancel request, which wakes the thread out of any weft wait. */
static weft_status test_thread(weft_call *call) {
    weft_event *never = arg_ptr(call);
    for (int i = 0;; i++) {
        printf("%d\n", i + 1);
        weft_status s = weft_event_wait(never, 2000 * MS); /* time.sleep(2) */
        if (s == WEFT_CANCELLED || weft_call_cancelled(call)) {
            weft_call_set_error(call, "stopped by stop_thread()");
            return WEFT_CANCELLED;
        }
    }
}

static void demo_cancel(void) {
    section("Stopping a thread from outside: cancel (seed 001, method 1)");
    weft_event *never = NULL;
    CHECK(weft_event_new(&never));
    weft_thread *t = start(test_thread, &never, sizeof never, NULL, false);
    sleep_ms(30);
    CHECK(weft_thread_cancel(t)); /* stop_thread(t) */
    weft_status s = weft_thread_join(t, WEFT_FOREVER, NULL);
    char why[128];
    snprintf(why, sizeof why, "%s", weft_last_error_message()); /* the task's failure */
    weft_status task_status = WEFT_OK;
    CHECK(weft_thread_task_status(t, &task_status));
    printf("join: %s, the task returned %s (%s)\n", weft_status_name(s), weft_status_name(task_status), why);
    weft_thread_free(t);
    weft_event_free(never);
}

/* ---- 6. ThreadLocal (seed 002) ------------------------------------------------------------- */

static weft_local *local_school;

static void process_student(void) {
    char name[64];
    const char *std = weft_local_get(local_school); /* std = local_school.student */
    printf("Hello, %s (in %s)\n", std, current_name(name, sizeof name));
}

static weft_status process_thread(weft_call *call) {
    const void *data = NULL;
    size_t len = 0;
    CHECK(weft_call_arg(call, &data, &len));
    char *student = malloc(len + 1);
    if (!student) return WEFT_NO_MEMORY;
    memcpy(student, data, len);
    student[len] = '\0';
    CHECK(weft_local_set(local_school, student)); /* local_school.student = name */
    process_student();
    return WEFT_OK; /* the destructor frees this thread's student at its exit */
}

static void demo_thread_local(void) {
    section("ThreadLocal (seed 002)");
    CHECK(weft_local_new(free, &local_school));
    weft_thread *t1 = start(process_thread, "Alice", 5, "Thread-A", false);
    join_free(t1);
    weft_thread *t2 = start(process_thread, "Bob", 3, "Thread-B", false);
    join_free(t2);
    weft_local_free(local_school);
}

/* ---- 7. a daemon thread does not keep the program alive (seed 001) ------------------------ */

static weft_status sing(weft_call *call) {
    (void)call;
    for (int i = 0; i < 5; i++) {
        printf("sing\n");
        sleep_ms(40);
    }
    return WEFT_OK;
}

static void demo_daemon(void) {
    section("Daemon thread (seed 001)");
    weft_thread *t = start(sing, NULL, 0, "sing", true); /* sing_thread.setDaemon(True) */
    weft_thread_free(t);
    sleep_ms(60);
    printf("main thread ended\n");
    /* Returning from main: weft joins non-daemon threads at exit, and not this one. */
}

/* ---- 9. multiprocessing: shared memory between processes (seed 003) ---------------------- *
 * These children are weft processes started with the fork method: they see the parent's
 * memory (the object handles in globals), and objects created in the default space (a NULL
 * weft_space) are shared with them, as Python's are with the fork start method. Section 10
 * uses the default method, forkserver, which passes everything in the argument bytes.
 * The daemon thread of section 7 is still singing, so weft warns once (on stderr) that this
 * process forks while it has other threads. */

struct fork_job {
    void (*fn)(void *);
    void *arg;
};

/* The task of a fork-method child: the job's pointers are valid in a forked copy. */
static weft_status run_fork_job(weft_call *call) {
    const void *d;
    size_t n;
    CHECK(weft_call_arg(call, &d, &n));
    struct fork_job job;
    memcpy(&job, d, sizeof job);
    job.fn(job.arg);
    return WEFT_OK;
}

/* Starts a child (fork method) that runs fn(arg). */
static weft_process *fork_run(void (*fn)(void *), void *arg) {
    struct fork_job job = {fn, arg};
    weft_process_options o = {0};
    o.start_method = WEFT_START_FORK;
    weft_process *p;
    CHECK(weft_process_start(run_fork_job, &job, sizeof job, &o, &p));
    return p;
}

static void join_child(weft_process *p) {
    CHECK(weft_process_join(p, WEFT_FOREVER, NULL));
    weft_process_free(p);
}

struct value_array {
    weft_array *num, *arr;
};

static void set_value_array(void *p) {
    struct value_array *va = p;
    double pi = 3.14;
    int five = 5;
    CHECK(weft_array_set(va->num, 0, &pi, sizeof pi)); /* n.value = 3.14 */
    CHECK(weft_array_set(va->arr, 0, &five, sizeof five)); /* a[0] = 5 */
}

static void demo_value_array(void) {
    section("multiprocessing: Value and Array shared with a child process (seed 003)");
    struct value_array va;
    int init[10];
    for (int i = 0; i < 10; i++) init[i] = i; /* range(10) */
    CHECK(weft_array_new_in(NULL, NULL, 'd', 1, NULL, true, &va.num)); /* Value('d', 0.0) */
    CHECK(weft_array_new_in(NULL, NULL, 'i', 10, init, true, &va.arr)); /* Array('i', range(10)) */
    join_child(fork_run(set_value_array, &va));
    double num;
    int arr[10];
    CHECK(weft_array_get(va.num, 0, &num, sizeof num));
    CHECK(weft_array_read(va.arr, 0, 10, arr, sizeof arr));
    printf("%g\n[", num);
    for (int i = 0; i < 10; i++) printf("%s%d", i ? ", " : "", arr[i]);
    printf("]\n");
    weft_array_free(va.num);
    weft_array_free(va.arr);
}

static weft_lock *print_lock;

static void hello_num(void *p) {
    CHECK(weft_lock_acquire(print_lock, WEFT_FOREVER));
    printf("Hello Num: %ld\n", (long)(intptr_t)p);
    CHECK(weft_lock_release(print_lock));
}

static void demo_process_lock(void) {
    section("multiprocessing: Lock shared by 20 processes (seed 003)");
    CHECK(weft_lock_new_in(NULL, NULL, &print_lock)); /* multiprocessing.Lock() */
    weft_process *kids[20];
    for (long num = 0; num < 20; num++) kids[num] = fork_run(hello_num, (void *)(intptr_t)num);
    for (int i = 0; i < 20; i++) join_child(kids[i]);
    weft_lock_free(print_lock);
}

static weft_semaphore *wc;

static void go_wc(void *p) {
    long user = (long)(intptr_t)p;
    CHECK(weft_semaphore_acquire(wc, WEFT_FOREVER));
    printf("user %ld takes a stall\n", user);
    sleep_ms(20 + 10 * (unsigned)(user % 3));
    CHECK(weft_semaphore_release(wc, 1));
    printf("user %ld OK\n", user);
}

static void demo_process_semaphore(void) {
    section("multiprocessing: Semaphore(2) shared by 5 processes (seed 003)");
    CHECK(weft_semaphore_new_in(NULL, NULL, 2, false, &wc));
    weft_process *kids[5];
    for (long i = 0; i < 5; i++) kids[i] = fork_run(go_wc, (void *)(intptr_t)i);
    for (int i = 0; i < 5; i++) join_child(kids[i]);
    weft_semaphore_free(wc);
}

/* What Python cannot do: a process killed while holding a lock. */
static weft_array *balance;

static void die_holding_lock(void *p) {
    (void)p;
    CHECK(weft_lock_acquire(print_lock, WEFT_FOREVER));
    long half = 50;
    CHECK(weft_array_store(balance, 0, half)); /* half-way through an update... */
    kill(getpid(), SIGKILL);                   /* ...killed */
}

static void demo_owner_dead(void) {
    section("A process killed while holding a Lock: the next acquirer recovers");
    CHECK(weft_lock_new_in(NULL, NULL, &print_lock));
    CHECK(weft_array_new_in(NULL, NULL, 'q', 1, NULL, false, &balance));
    weft_process *p = fork_run(die_holding_lock, NULL);
    weft_status js = weft_process_join(p, WEFT_FOREVER, NULL); /* WEFT_WORKER_DIED */
    int code = 0;
    CHECK(weft_process_exitcode(p, &code));
    printf("child killed by signal %d while holding the lock (join: %s)\n", -code, weft_status_name(js));
    weft_process_free(p);
    weft_status s = weft_lock_acquire(print_lock, 5000 * MS);
    printf("acquire -> %s (multiprocessing.Lock would hang here forever)\n", weft_status_name(s));
    if (s != WEFT_OWNER_DEAD) CHECK(s);
    int64_t v = 0;
    CHECK(weft_array_load(balance, 0, &v));
    printf("balance found at %lld, repaired to 0\n", (long long)v);
    CHECK(weft_array_store(balance, 0, 0));
    CHECK(weft_lock_mark_consistent(print_lock));
    CHECK(weft_lock_release(print_lock));
    CHECK(weft_lock_acquire(print_lock, 0));
    CHECK(weft_lock_release(print_lock));
    printf("lock usable again\n");
    weft_array_free(balance);
    weft_lock_free(print_lock);
}

/* ---- 10. Process: a child running a function with an argument (seed 002) ------------------ *
 * The default start method, forkserver: the child is forked from a clean server process and
 * finds run_proc by its place in this executable; it gets only its argument bytes. */

static weft_status run_proc(weft_call *call) {
    const void *d;
    size_t n;
    CHECK(weft_call_arg(call, &d, &n));
    printf("Run child process %.*s (%d)...\n", (int)n, (const char *)d, (int)getpid());
    char reply[64];
    int len = snprintf(reply, sizeof reply, "%s done", weft_process_current_name());
    return weft_call_set_result(call, reply, (size_t)len);
}

static void demo_process(void) {
    section("Process: run_proc('test') in a child (seed 002)");
    printf("Parent process %d.\n", (int)getpid());
    weft_process_options o = {0};
    o.name = "Worker-test";
    weft_process *p;
    CHECK(weft_process_start(run_proc, "test", 4, &o, &p)); /* Process(target=run_proc, args=('test',)) */
    printf("Child process will start.\n");
    weft_bytes *r;
    CHECK(weft_process_join(p, WEFT_FOREVER, &r)); /* p.join() -- and the task's result */
    int code = -1;
    CHECK(weft_process_exitcode(p, &code));
    printf("Child process end: exit code %d, result \"%.*s\".\n", code, (int)weft_bytes_len(r), (const char *)weft_bytes_data(r));
    weft_bytes_free(r);
    weft_process_free(p);
    printf("this machine gives the process %u CPUs (affinity and cgroup quota)\n", weft_cpu_count());
}

/* ---- 11. Pipe: parent and child greet each other (seed 003) -------------------------------- */

static weft_status pipe_child(weft_call *call) {
    weft_connection *conn; /* Subconn: the descriptor the parent passed */
    CHECK(weft_connection_from_fd(dup(weft_call_fd(call, 0)), true, true, &conn));
    const char *hello = "hello from your son";
    CHECK(weft_connection_send(conn, hello, strlen(hello)));
    weft_bytes *m;
    CHECK(weft_connection_recv(conn, WEFT_FOREVER, &m));
    printf("greeting from the father: %.*s\n", (int)weft_bytes_len(m), (const char *)weft_bytes_data(m));
    weft_bytes_free(m);
    weft_connection_free(conn);
    return WEFT_OK;
}

static void demo_pipe(void) {
    section("Pipe: parent_conn, child_conn = Pipe() (seed 003)");
    weft_connection *parent_conn, *child_conn;
    CHECK(weft_pipe(true, &parent_conn, &child_conn));
    int fd = weft_connection_fd(child_conn);
    weft_process_options o = {0};
    o.fds = &fd; /* the connection travels to the child as a descriptor */
    o.fd_count = 1;
    weft_process *p;
    CHECK(weft_process_start(pipe_child, NULL, 0, &o, &p));
    weft_connection_free(child_conn);
    weft_bytes *m;
    CHECK(weft_connection_recv(parent_conn, WEFT_FOREVER, &m));
    printf("greeting from the son: %.*s\n", (int)weft_bytes_len(m), (const char *)weft_bytes_data(m));
    weft_bytes_free(m);
    CHECK(weft_connection_send(parent_conn, "hmm", 3));
    join_child(p);
    weft_status s = weft_connection_recv(parent_conn, 0, &m);
    printf("after the child ended, recv -> %s (Python: EOFError)\n", weft_status_name(s));
    weft_connection_free(parent_conn);
}

/* ---- 12. daemon and terminate (seed 001) ---------------------------------------------------- */

static weft_status sing_forever(weft_call *call) {
    (void)call;
    for (;;) sleep_ms(10);
}

static void demo_process_terminate(void) {
    section("a daemon child, terminated; no zombie left (seed 001)");
    weft_process_options o = {0};
    o.daemon = true; /* would die with this process even if it were killed with SIGKILL */
    weft_process *p;
    CHECK(weft_process_start(sing_forever, NULL, 0, &o, &p));
    sleep_ms(30);
    printf("%s alive: %s\n", weft_process_name(p), weft_process_is_alive(p) ? "yes" : "no");
    CHECK(weft_process_terminate(p)); /* p.terminate() */
    weft_status s = weft_process_join(p, WEFT_FOREVER, NULL);
    int code = 0;
    CHECK(weft_process_exitcode(p, &code));
    printf("terminated: join -> %s, exitcode %d (-SIGTERM), alive: %s\n", weft_status_name(s), code,
           weft_process_is_alive(p) ? "yes" : "no");
    weft_process_free(p);
}

/* ---- 13. subprocess: call and communicate (seed 002) ----------------------------------------- */

static void demo_subprocess(void) {
    section("subprocess.call and Popen.communicate (seed 002)");
    const char *echo[] = {"echo", "$ nslookup www.python.org (echo stands in: no network here)", NULL};
    int rc = -1;
    CHECK(weft_command_run(echo, NULL, NULL, 0, WEFT_FOREVER, 0, &rc, NULL, NULL)); /* subprocess.call */
    printf("Exit code: %d\n", rc);
    /* Popen(..., stdin=PIPE, stdout=PIPE, stderr=PIPE).communicate(b'set q=mx\npython.org\nexit\n'),
     * with `tr` reading the input instead of nslookup. */
    const char *tr[] = {"tr", "a-z", "A-Z", NULL};
    weft_command_options o = {0};
    o.stdin_mode = WEFT_STDIO_PIPE;
    o.stdout_mode = WEFT_STDIO_PIPE;
    o.stderr_mode = WEFT_STDIO_PIPE;
    weft_command *c;
    CHECK(weft_command_start(tr, &o, &c));
    const char *input = "set q=mx\npython.org\nexit\n";
    weft_bytes *out, *err;
    CHECK(weft_command_communicate(c, input, strlen(input), 5000 * MS, &out, &err));
    CHECK(weft_command_wait(c, WEFT_FOREVER, &rc));
    printf("%.*sExit code: %d\n", (int)weft_bytes_len(out), (const char *)weft_bytes_data(out), rc);
    weft_bytes_free(out);
    weft_bytes_free(err);
    weft_command_free(c);
    const char *missing[] = {"no-such-program-weft-demo", NULL};
    weft_status s = weft_command_run(missing, NULL, NULL, 0, WEFT_FOREVER, 0, &rc, NULL, NULL);
    printf("a missing program: %s, errno %d (Python: FileNotFoundError; not exit code 127)\n", weft_status_name(s),
           weft_last_error_errno());
}

/* ---- 14. queue.Queue: worker threads, task_done and join (seed 000) -------------------------- *
 * q = Queue(); workers loop on q.get() ... q.task_done(); the main thread puts the source's
 * items, then q.join() waits until every one was processed. */

static atomic_int work_done;

static weft_status queue_worker(weft_call *call) {
    weft_queue *q = arg_ptr(call);
    for (;;) {
        uintptr_t item;
        weft_status s = weft_queue_get_word(q, WEFT_FOREVER, &item);
        if (s == WEFT_CLOSED) return WEFT_OK; /* the queue was shut down and drained */
        CHECK(s);
        atomic_fetch_add(&work_done, (int)item); /* do_work(item) */
        CHECK(weft_queue_task_done(q));
    }
}

static void demo_queue_workers(void) {
    section("queue.Queue: four worker threads, task_done and join (seed 000)");
    weft_queue_options o = {0};
    o.flags = WEFT_QUEUE_JOINABLE; /* queue.Queue counts unfinished tasks */
    weft_queue *q;
    CHECK(weft_queue_new(&o, &q));
    weft_thread *workers[4];
    for (int i = 0; i < 4; i++) {
        weft_thread_options to = {0};
        to.daemon = true; /* t.daemon = True */
        CHECK(weft_thread_start(queue_worker, &q, sizeof q, &to, &workers[i]));
    }
    for (uintptr_t item = 1; item <= 100; item++) CHECK(weft_queue_put_word(q, item, WEFT_FOREVER)); /* for item in source() */
    CHECK(weft_queue_join(q, WEFT_FOREVER)); /* block until all tasks are done */
    printf("all 100 items processed: sum %d (5050)\n", atomic_load(&work_done));
    CHECK(weft_queue_shutdown(q, false)); /* Python 3.13: the workers' get() ends with ShutDown */
    for (int i = 0; i < 4; i++) {
        CHECK(weft_thread_join(workers[i], WEFT_FOREVER, NULL));
        weft_thread_free(workers[i]);
    }
    /* LifoQueue and PriorityQueue: the same type, another kind. */
    weft_queue_options lo = {0};
    lo.kind = WEFT_QUEUE_LIFO;
    weft_queue *lifo;
    CHECK(weft_queue_new(&lo, &lifo));
    lo.kind = WEFT_QUEUE_PRIORITY;
    weft_queue *prio;
    CHECK(weft_queue_new(&lo, &prio));
    const char *words[] = {"first", "second", "third"};
    const int64_t prios[] = {3, 1, 2};
    for (int i = 0; i < 3; i++) {
        CHECK(weft_queue_put(lifo, words[i], strlen(words[i]), 0));
        CHECK(weft_queue_put_priority(prio, words[i], strlen(words[i]), prios[i], 0));
    }
    printf("LifoQueue gives:");
    for (int i = 0; i < 3; i++) {
        char buf[16];
        size_t n;
        CHECK(weft_queue_get_into(lifo, buf, sizeof buf, 0, &n));
        printf(" %.*s", (int)n, buf);
    }
    printf("\nPriorityQueue gives (priorities 3, 1, 2):");
    for (int i = 0; i < 3; i++) {
        char buf[16];
        size_t n;
        CHECK(weft_queue_get_into(prio, buf, sizeof buf, 0, &n));
        printf(" %.*s", (int)n, buf);
    }
    weft_bytes *none;
    printf("\nget_nowait on the empty queue -> %s (Python: queue.Empty)\n", weft_status_name(weft_queue_get(prio, 0, &none)));
    weft_queue_free(lifo);
    weft_queue_free(prio);
    weft_queue_free(q);
}

/* ---- 15. multiprocessing.Queue: a writer and a reader process (seed 002) --------------------- *
 * The queue lives in the default space; each child opens it from its token (the argument). */

static weft_queue *queue_from_arg(weft_call *call) {
    setvbuf(stdout, NULL, _IOLBF, 0); /* a child's own stdout: print lines as they come */
    const void *token;
    size_t n;
    CHECK(weft_call_arg(call, &token, &n));
    weft_queue *q;
    CHECK(weft_queue_from_token(token, n, &q));
    return q;
}

static weft_status queue_writer(weft_call *call) {
    weft_queue *q = queue_from_arg(call);
    printf("Process to write: %d\n", (int)getpid());
    const char *values[] = {"A", "B", "C"};
    for (int i = 0; i < 3; i++) {
        printf("Put %s to queue...\n", values[i]);
        CHECK(weft_queue_put(q, values[i], 1, WEFT_FOREVER));
        sleep_ms(10);
    }
    weft_queue_free(q);
    return WEFT_OK;
}

static weft_status queue_reader(weft_call *call) {
    weft_queue *q = queue_from_arg(call);
    printf("Process to read: %d\n", (int)getpid());
    for (int i = 0; i < 3; i++) {
        char v[8];
        size_t n;
        CHECK(weft_queue_get_into(q, v, sizeof v, WEFT_FOREVER, &n));
        printf("Get %.*s from queue.\n", (int)n, v);
    }
    weft_queue_free(q);
    return WEFT_OK;
}

static void demo_mp_queue(void) {
    section("multiprocessing.Queue: a writer and a reader process (seed 002)");
    weft_queue *q;
    CHECK(weft_queue_new_in(NULL, NULL, NULL, &q));
    uint8_t token[WEFT_TOKEN_MAX];
    size_t len;
    CHECK(weft_queue_token(q, token, sizeof token, &len));
    weft_process *pw, *pr;
    CHECK(weft_process_start(queue_writer, token, len, NULL, &pw));
    CHECK(weft_process_start(queue_reader, token, len, NULL, &pr));
    join_child(pw);
    join_child(pr);
    weft_queue_free(q);
}

/* ---- 16. JoinableQueue: a daemon consumer process, the producer joins (seed 003) ------------- */

static weft_status joinable_consumer(weft_call *call) {
    weft_queue *q = queue_from_arg(call);
    for (;;) {
        char item[32];
        size_t n;
        CHECK(weft_queue_get_into(q, item, sizeof item, WEFT_FOREVER, &n));
        printf("the consumer got %.*s\n", (int)n, item);
        CHECK(weft_queue_task_done(q));
    }
}

static void demo_joinable_queue(void) {
    section("JoinableQueue: the producer joins a daemon consumer process (seed 003)");
    weft_queue_options o = {0};
    o.flags = WEFT_QUEUE_JOINABLE;
    weft_queue *q;
    CHECK(weft_queue_new_in(NULL, NULL, &o, &q));
    uint8_t token[WEFT_TOKEN_MAX];
    size_t len;
    CHECK(weft_queue_token(q, token, sizeof token, &len));
    weft_process_options po = {0};
    po.daemon = true;
    weft_process *p;
    CHECK(weft_process_start(joinable_consumer, token, len, &po, &p));
    for (int i = 0; i < 5; i++) {
        char item[32];
        int n = snprintf(item, sizeof item, "product %d", i);
        CHECK(weft_queue_put(q, item, (size_t)n, WEFT_FOREVER));
        printf("the producer made %s\n", item);
    }
    CHECK(weft_queue_join(q, WEFT_FOREVER)); /* returns once the consumer marked all five done */
    printf("main: every product was consumed\n");
    CHECK(weft_process_kill(p)); /* the daemon consumer would die with us anyway */
    weft_process_join(p, WEFT_FOREVER, NULL);
    weft_process_free(p);
    weft_queue_free(q);
}

/* ---- 17. multiprocessing.Pool: apply_async, close, join (seed 002) ---------------------------- */

static double seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static weft_status long_time_task(weft_call *call) {
    const void *d;
    size_t n;
    CHECK(weft_call_arg(call, &d, &n));
    int name = *(const int *)d;
    printf("Run task %d (%d)...\n", name, (int)getpid());
    double start = seconds();
    srand((unsigned)(getpid() ^ name));
    usleep((useconds_t)(rand() % 300) * 1000); /* the seed sleeps up to 3 s; we sleep up to 0.3 s */
    printf("Task %d runs %0.2f seconds.\n", name, seconds() - start);
    return WEFT_OK;
}

static void demo_pool_apply_async(void) {
    section("multiprocessing.Pool(4): apply_async, close, join (seed 002)");
    printf("Parent process %d.\n", (int)getpid());
    weft_pool_options o = {0};
    o.kind = WEFT_POOL_PROCESSES;
    o.workers = 4;
    weft_pool *p;
    CHECK(weft_pool_new(&o, &p));
    weft_future *f[5];
    for (int i = 0; i < 5; i++) CHECK(weft_pool_submit(p, long_time_task, &i, sizeof i, &f[i]));
    printf("Waiting for all subprocesses done...\n");
    CHECK(weft_pool_close(p));
    CHECK(weft_pool_join(p, WEFT_FOREVER));
    printf("All subprocesses done.\n");
    for (int i = 0; i < 5; i++) weft_future_free(f[i]);
    weft_pool_free(p);
}

/* ---- 18. Pool.map (seed 003) ------------------------------------------------------------------- */

static weft_status square(weft_call *call) {
    const void *d;
    size_t n;
    CHECK(weft_call_arg(call, &d, &n));
    int64_t x = *(const int64_t *)d;
    int64_t r = x * x;
    return weft_call_set_result(call, &r, sizeof r);
}

static void demo_pool_map(void) {
    section("Pool(8).map over range(100) (seed 003)");
    weft_pool_options o = {0};
    o.kind = WEFT_POOL_PROCESSES;
    o.workers = 8;
    weft_pool *p;
    CHECK(weft_pool_new(&o, &p));
    int64_t items[100];
    for (int i = 0; i < 100; i++) items[i] = i;
    weft_bytes *out;
    CHECK(weft_pool_map(p, square, items, sizeof items[0], 100, 0, WEFT_FOREVER, &out));
    /* The results come packed: for each item its length (uint64_t), then its bytes. */
    const uint8_t *b = weft_bytes_data(out);
    int64_t sum = 0, last = 0;
    for (int i = 0; i < 100; i++) {
        uint64_t len;
        memcpy(&len, b, 8);
        memcpy(&last, b + 8, sizeof last);
        sum += last;
        b += 8 + len;
    }
    printf("map: 100 squares in item order, the last %lld, their sum %lld\n", (long long)last, (long long)sum);
    weft_bytes_free(out);
    CHECK(weft_pool_close(p));
    CHECK(weft_pool_join(p, WEFT_FOREVER));
    weft_pool_free(p);
}

/* ---- 19. concurrent.futures: as_completed on thread and process pools (seed 004) --------------- */

static weft_status evaluate_item(weft_call *call) {
    const void *d;
    size_t n;
    CHECK(weft_call_arg(call, &d, &n));
    int64_t number = *(const int64_t *)d;
    volatile int64_t i = 0;
    for (int64_t k = 0; k < 20000000; k++) i = i + 1; /* CPU-bound, as the seed's count() */
    int64_t r = i * number;
    return weft_call_set_result(call, &r, sizeof r);
}

static void run_executor(uint32_t kind, const char *label) {
    weft_pool_options o = {0};
    o.kind = kind;
    o.workers = 5;
    weft_pool *p;
    CHECK(weft_pool_new(&o, &p));
    double start = seconds();
    weft_future *f[10];
    for (int64_t i = 0; i < 10; i++) CHECK(weft_pool_submit(p, evaluate_item, &i, sizeof i, &f[i]));
    weft_as_completed *ac;
    CHECK(weft_as_completed_new(f, 10, &ac));
    weft_future *done;
    while (weft_as_completed_next(ac, WEFT_FOREVER, &done) == WEFT_OK) {
        const void *r;
        size_t n;
        CHECK(weft_future_result(done, 0, &r, &n));
        printf("%lld ", (long long)*(const int64_t *)r);
        weft_future_free(done);
    }
    printf("\n%s execution in %.2f seconds\n", label, seconds() - start);
    weft_as_completed_free(ac);
    for (int i = 0; i < 10; i++) weft_future_free(f[i]);
    CHECK(weft_pool_shutdown(p, true, false, WEFT_FOREVER));
    weft_pool_free(p);
}

static void demo_executors(void) {
    section("concurrent.futures: as_completed over a thread pool and a process pool (seed 004)");
    /* No interpreter lock: the thread pool scales like the process pool. */
    run_executor(WEFT_POOL_THREADS, "Thread pool");
    run_executor(WEFT_POOL_PROCESSES, "Process pool");
}

/* ---- 20. A worker killed in the middle of a task: only that task fails ------------------------ */

static weft_status maybe_die(weft_call *call) {
    const void *d;
    size_t n;
    CHECK(weft_call_arg(call, &d, &n));
    int i = *(const int *)d;
    if (i == 3) kill(getpid(), SIGKILL); /* the worker dies in the middle of task 3 */
    return weft_call_set_result(call, &i, sizeof i);
}

static void demo_pool_worker_killed(void) {
    section("A pool worker killed mid-task: its task fails, the pool heals (Python's Pool hangs)");
    weft_pool_options o = {0};
    o.kind = WEFT_POOL_PROCESSES;
    o.workers = 2;
    weft_pool *p;
    CHECK(weft_pool_new(&o, &p));
    weft_future *f[6];
    for (int i = 0; i < 6; i++) CHECK(weft_pool_submit(p, maybe_die, &i, sizeof i, &f[i]));
    for (int i = 0; i < 6; i++) {
        weft_status st = weft_future_result(f[i], WEFT_FOREVER, NULL, NULL);
        if (st == WEFT_OK)
            printf("task %d: done\n", i);
        else
            printf("task %d: %s (%s)\n", i, weft_status_name(st), weft_last_error_message());
        weft_future_free(f[i]);
    }
    CHECK(weft_pool_shutdown(p, true, false, WEFT_FOREVER));
    weft_pool_free(p);
}

int main(void) {
    setvbuf(stdout, NULL, _IOLBF, 0);
    printf("weft %s demo: Python threading programs in C\n", weft_version());
    demo_loop_thread();
    demo_lock_counter();
    demo_lock_timeout();
    demo_rlock();
    demo_condition();
    demo_producer_consumer();
    demo_barrier();
    demo_event_wait();
    demo_event_stop();
    demo_cancel();
    demo_thread_local();
    demo_daemon();
    demo_value_array();
    demo_process_lock();
    demo_process_semaphore();
    demo_owner_dead();
    demo_process();
    demo_pipe();
    demo_process_terminate();
    demo_subprocess();
    demo_queue_workers();
    demo_mp_queue();
    demo_joinable_queue();
    demo_pool_apply_async();
    demo_pool_map();
    demo_executors();
    demo_pool_worker_killed();
    return 0;
}
