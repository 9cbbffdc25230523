/* Conformance tests for thread-local storage (weft_local_*): per-thread values and when their
 * destructors run. */
#define _GNU_SOURCE
#include "runner.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "helpers.h"

/* Values are `item`s; the destructor records which were destroyed, how often, and where. */
typedef struct {
    int id;
    atomic_int destroyed;
    atomic_uint destroyed_on; /* tid of the destroying thread */
} item;

static atomic_int destructor_calls;

static void destroy_item(void *v) {
    item *it = v;
    atomic_store(&it->destroyed_on, my_tid());
    atomic_fetch_add(&it->destroyed, 1);
    atomic_fetch_add(&destructor_calls, 1);
}

TEST_TIMEOUT(thread_local_null_arguments, 5000) {
    ASSERT_STATUS(weft_local_new(destroy_item, NULL), WEFT_NULL_ARGUMENT);
    item it = {0};
    ASSERT_STATUS(weft_local_set(NULL, &it), WEFT_NULL_ARGUMENT);
    ASSERT_NULL(weft_local_get(NULL));
    weft_local_free(NULL);
    /* A slot without a destructor works and simply forgets its values. */
    weft_local *l = NULL;
    ASSERT_OK(weft_local_new(NULL, &l));
    ASSERT_OK(weft_local_set(l, &it));
    ASSERT_PTR_EQ(weft_local_get(l), &it);
    ASSERT_OK(weft_local_set(l, NULL));
    ASSERT_NULL(weft_local_get(l));
    weft_local_free(l);
}

static weft_status task_get_only(weft_call *call) {
    weft_local *l = call_ptr(call);
    void *v = weft_local_get(l);
    return weft_call_set_result(call, &v, sizeof v);
}

TEST_TIMEOUT(thread_local_get_without_set_is_null, 5000) {
    weft_local *l = NULL;
    ASSERT_OK(weft_local_new(destroy_item, &l));
    ASSERT_NULL(weft_local_get(l));
    item it = {0};
    ASSERT_OK(weft_local_set(l, &it));
    /* Another thread sees nothing of the main thread's value. */
    weft_thread *t = NULL;
    ASSERT_OK(start_ptr(task_get_only, l, NULL, &t));
    weft_bytes *r = NULL;
    ASSERT_OK(weft_thread_join(t, WEFT_FOREVER, &r));
    void *seen = (void *)1;
    ASSERT_EQ(weft_bytes_len(r), sizeof seen);
    memcpy(&seen, weft_bytes_data(r), sizeof seen);
    ASSERT_NULL(seen);
    weft_bytes_free(r);
    weft_thread_free(t);
    ASSERT_PTR_EQ(weft_local_get(l), &it);
    weft_local_free(l);
}

/* Each thread sets its own item, meets the others at a barrier (so all values coexist), and
 * checks it still sees its own. */
typedef struct {
    weft_local *l;
    weft_barrier *b;
    item *it;
    uint32_t tid;
    bool saw_own_before;
    bool saw_own_after;
    int destroyed_before_return;
} per_thread;

static weft_status task_set_own(weft_call *call) {
    per_thread *p = call_ptr(call);
    p->tid = my_tid();
    p->saw_own_before = weft_local_get(p->l) == NULL;
    ASSERT_OK(weft_local_set(p->l, p->it));
    if (p->b) ASSERT_OK(weft_barrier_wait(p->b, 5 * SEC, NULL));
    p->saw_own_after = weft_local_get(p->l) == p->it;
    p->destroyed_before_return = atomic_load(&p->it->destroyed);
    return WEFT_OK;
}

TEST_TIMEOUT(thread_local_per_thread_values, 5000) {
    enum { N = 6 };
    atomic_store(&destructor_calls, 0);
    weft_local *l = NULL;
    ASSERT_OK(weft_local_new(destroy_item, &l));
    item main_item = {.id = -1};
    ASSERT_OK(weft_local_set(l, &main_item));
    weft_barrier *b = NULL;
    ASSERT_OK(weft_barrier_new(N, NULL, NULL, &b));
    item items[N];
    per_thread p[N];
    weft_thread *t[N];
    for (int i = 0; i < N; i++) {
        memset(&items[i], 0, sizeof items[i]);
        items[i].id = i;
        p[i] = (per_thread){.l = l, .b = b, .it = &items[i]};
        ASSERT_OK(start_ptr(task_set_own, &p[i], NULL, &t[i]));
    }
    for (int i = 0; i < N; i++) {
        ASSERT_OK(weft_thread_join(t[i], WEFT_FOREVER, NULL));
        ASSERT(p[i].saw_own_before);
        ASSERT(p[i].saw_own_after);
        ASSERT_EQ(p[i].destroyed_before_return, 0);
        /* Destroyed once, on its own thread, by the time join returned. */
        ASSERT_EQ(atomic_load(&items[i].destroyed), 1);
        ASSERT_UEQ(atomic_load(&items[i].destroyed_on), p[i].tid);
        weft_thread_free(t[i]);
    }
    ASSERT_EQ(atomic_load(&destructor_calls), N);
    ASSERT_PTR_EQ(weft_local_get(l), &main_item);
    ASSERT_EQ(atomic_load(&main_item.destroyed), 0);
    weft_barrier_free(b);
    weft_local_free(l);
    ASSERT_EQ(atomic_load(&main_item.destroyed), 1);
    ASSERT_EQ(atomic_load(&destructor_calls), N + 1);
}

/* The destructor has run before join returns, both for a join without a deadline and for one
 * with a deadline. */
TEST_TIMEOUT(thread_local_destructor_runs_before_join_returns, 5000) {
    weft_local *l = NULL;
    ASSERT_OK(weft_local_new(destroy_item, &l));
    uint64_t timeouts[] = {WEFT_FOREVER, 5 * SEC};
    for (int k = 0; k < 2; k++) {
        for (int rep = 0; rep < 20; rep++) {
            item it = {.id = rep};
            per_thread p = {.l = l, .it = &it};
            weft_thread *t = NULL;
            ASSERT_OK(start_ptr(task_set_own, &p, NULL, &t));
            ASSERT_OK(weft_thread_join(t, timeouts[k], NULL));
            ASSERT_EQ(atomic_load(&it.destroyed), 1);
            ASSERT_UEQ(atomic_load(&it.destroyed_on), p.tid);
            ASSERT(!weft_thread_is_alive(t));
            weft_thread_free(t);
        }
    }
    weft_local_free(l);
}

/* The destructor has also run once is_alive turns false (no join at all). */
TEST_TIMEOUT(thread_local_destructor_runs_before_not_alive, 5000) {
    weft_local *l = NULL;
    ASSERT_OK(weft_local_new(destroy_item, &l));
    item it = {0};
    per_thread p = {.l = l, .it = &it};
    weft_thread *t = NULL;
    ASSERT_OK(start_ptr(task_set_own, &p, NULL, &t));
    /* A spin, not wait_dead: the destructor must have run the moment it is no longer alive. */
    uint64_t deadline = runner_now_ns() + 3 * SEC;
    while (weft_thread_is_alive(t)) {
        ASSERT(runner_now_ns() < deadline);
    }
    ASSERT_EQ(atomic_load(&it.destroyed), 1);
    ASSERT_OK(weft_thread_join(t, WEFT_FOREVER, NULL));
    weft_thread_free(t);
    weft_local_free(l);
    ASSERT_EQ(atomic_load(&it.destroyed), 1);
}

static void *pthread_set_own(void *arg) {
    per_thread *p = arg;
    p->tid = my_tid();
    ASSERT_NULL(weft_local_get(p->l));
    ASSERT_OK(weft_local_set(p->l, p->it));
    p->saw_own_after = weft_local_get(p->l) == p->it;
    return NULL;
}

TEST_TIMEOUT(thread_local_destructor_runs_for_foreign_pthread, 5000) {
    weft_local *l = NULL;
    ASSERT_OK(weft_local_new(destroy_item, &l));
    for (int rep = 0; rep < 5; rep++) {
        item it = {.id = rep};
        per_thread p = {.l = l, .it = &it};
        pthread_t pt;
        ASSERT_EQ(pthread_create(&pt, NULL, pthread_set_own, &p), 0);
        ASSERT_EQ(pthread_join(pt, NULL), 0);
        ASSERT(p.saw_own_after);
        ASSERT_EQ(atomic_load(&it.destroyed), 1);
        ASSERT_UEQ(atomic_load(&it.destroyed_on), p.tid);
    }
    weft_local_free(l);
}

TEST_TIMEOUT(thread_local_replace_destroys_old_value, 5000) {
    atomic_store(&destructor_calls, 0);
    weft_local *l = NULL;
    ASSERT_OK(weft_local_new(destroy_item, &l));
    item a = {.id = 1}, b = {.id = 2}, c = {.id = 3};
    ASSERT_OK(weft_local_set(l, &a));
    ASSERT_OK(weft_local_set(l, &b));
    ASSERT_EQ(atomic_load(&a.destroyed), 1);
    ASSERT_UEQ(atomic_load(&a.destroyed_on), my_tid());
    ASSERT_EQ(atomic_load(&b.destroyed), 0);
    ASSERT_PTR_EQ(weft_local_get(l), &b);
    /* Setting the same value again destroys nothing. */
    ASSERT_OK(weft_local_set(l, &b));
    ASSERT_EQ(atomic_load(&b.destroyed), 0);
    ASSERT_EQ(atomic_load(&destructor_calls), 1);
    /* NULL clears without calling the destructor. */
    ASSERT_OK(weft_local_set(l, NULL));
    ASSERT_NULL(weft_local_get(l));
    ASSERT_EQ(atomic_load(&b.destroyed), 0);
    ASSERT_OK(weft_local_set(l, &c));
    weft_local_free(l);
    ASSERT_EQ(atomic_load(&a.destroyed), 1);
    ASSERT_EQ(atomic_load(&b.destroyed), 0);
    ASSERT_EQ(atomic_load(&c.destroyed), 1);
    ASSERT_EQ(atomic_load(&destructor_calls), 2);
}

/* A thread that sets its value, reports, then waits for `go` and exits without touching the
 * slot again. */
typedef struct {
    weft_local *l;
    item *it;
    weft_event *ready;
    weft_event *go;
} holder;

static weft_status task_hold(weft_call *call) {
    holder *h = call_ptr(call);
    ASSERT_OK(weft_local_set(h->l, h->it));
    ASSERT_OK(weft_event_set(h->ready));
    ASSERT_OK(weft_event_wait(h->go, WEFT_FOREVER));
    return WEFT_OK;
}

TEST_TIMEOUT(thread_local_free_destroys_remaining_values, 5000) {
    atomic_store(&destructor_calls, 0);
    weft_local *l = NULL;
    ASSERT_OK(weft_local_new(destroy_item, &l));
    item mine = {.id = 0}, theirs = {.id = 1}, gone = {.id = 2};
    ASSERT_OK(weft_local_set(l, &mine));
    /* A thread that already ended: its value was destroyed then, not again at free. */
    per_thread p = {.l = l, .it = &gone};
    weft_thread *done = NULL;
    ASSERT_OK(start_ptr(task_set_own, &p, NULL, &done));
    ASSERT_OK(weft_thread_join(done, WEFT_FOREVER, NULL));
    ASSERT_EQ(atomic_load(&gone.destroyed), 1);
    weft_thread_free(done);
    /* A thread still running when the slot is freed. */
    holder h = {.l = l, .it = &theirs};
    ASSERT_OK(weft_event_new(&h.ready));
    ASSERT_OK(weft_event_new(&h.go));
    weft_thread *t = NULL;
    ASSERT_OK(start_ptr(task_hold, &h, NULL, &t));
    ASSERT_OK(weft_event_wait(h.ready, 5 * SEC));

    weft_local_free(l);
    ASSERT_EQ(atomic_load(&mine.destroyed), 1);
    ASSERT_EQ(atomic_load(&theirs.destroyed), 1);
    /* ... on the calling thread. */
    ASSERT_UEQ(atomic_load(&mine.destroyed_on), my_tid());
    ASSERT_UEQ(atomic_load(&theirs.destroyed_on), my_tid());
    ASSERT_EQ(atomic_load(&gone.destroyed), 1);

    /* When that thread exits later, its value is not destroyed a second time. */
    ASSERT_OK(weft_event_set(h.go));
    ASSERT_OK(weft_thread_join(t, WEFT_FOREVER, NULL));
    ASSERT_EQ(atomic_load(&theirs.destroyed), 1);
    ASSERT_EQ(atomic_load(&destructor_calls), 3);
    weft_thread_free(t);
    weft_event_free(h.ready);
    weft_event_free(h.go);
}

/* Two slots are independent. */
TEST_TIMEOUT(thread_local_slots_are_independent, 5000) {
    weft_local *a = NULL, *b = NULL;
    ASSERT_OK(weft_local_new(destroy_item, &a));
    ASSERT_OK(weft_local_new(destroy_item, &b));
    item x = {.id = 1}, y = {.id = 2};
    ASSERT_OK(weft_local_set(a, &x));
    ASSERT_NULL(weft_local_get(b));
    ASSERT_OK(weft_local_set(b, &y));
    ASSERT_PTR_EQ(weft_local_get(a), &x);
    ASSERT_PTR_EQ(weft_local_get(b), &y);
    weft_local_free(a);
    ASSERT_EQ(atomic_load(&x.destroyed), 1);
    ASSERT_EQ(atomic_load(&y.destroyed), 0);
    ASSERT_PTR_EQ(weft_local_get(b), &y);
    weft_local_free(b);
    ASSERT_EQ(atomic_load(&y.destroyed), 1);
}

/* Many short threads each leave a value behind; every one is destroyed exactly once. */
TEST_TIMEOUT(thread_local_many_threads, 10000) {
    enum { N = 200 };
    atomic_store(&destructor_calls, 0);
    weft_local *l = NULL;
    ASSERT_OK(weft_local_new(destroy_item, &l));
    static item items[N];
    static per_thread p[N];
    weft_thread *t[8];
    for (int i = 0; i < N; i += 8) {
        for (int k = 0; k < 8; k++) {
            memset(&items[i + k], 0, sizeof items[i + k]);
            p[i + k] = (per_thread){.l = l, .it = &items[i + k]};
            ASSERT_OK(start_ptr(task_set_own, &p[i + k], NULL, &t[k]));
        }
        for (int k = 0; k < 8; k++) {
            ASSERT_OK(weft_thread_join(t[k], WEFT_FOREVER, NULL));
            weft_thread_free(t[k]);
        }
    }
    for (int i = 0; i < N; i++) ASSERT_EQ(atomic_load(&items[i].destroyed), 1);
    ASSERT_EQ(atomic_load(&destructor_calls), N);
    weft_local_free(l);
    ASSERT_EQ(atomic_load(&destructor_calls), N);
}
