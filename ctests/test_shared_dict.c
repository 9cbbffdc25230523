/* weft_dict and weft_list: Python's Manager().dict() / .list() living in a space, shared by
 * processes, and left consistent by a process SIGKILLed in the middle of an update. */
#define _GNU_SOURCE
#include "runner.h"

#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <unistd.h>

#include "helpers.h"

static weft_dict *new_dict(void) {
    weft_dict *d = NULL;
    ASSERT_OK(weft_dict_new_in(NULL, NULL, &d));
    return d;
}

static weft_list *new_list(void) {
    weft_list *l = NULL;
    ASSERT_OK(weft_list_new_in(NULL, NULL, &l));
    return l;
}

static void set_str(weft_dict *d, const char *k, const char *v) {
    ASSERT_OK(weft_dict_set(d, k, strlen(k), v, strlen(v)));
}

/* d[k] as a NUL-terminated string in buf, or "" with WEFT_NOT_FOUND returned. */
static weft_status get_str(weft_dict *d, const char *k, char *buf, size_t cap) {
    size_t len = 0;
    weft_status s = weft_dict_get_into(d, k, strlen(k), buf, cap - 1, &len);
    buf[s == WEFT_OK ? len : 0] = 0;
    return s;
}

static size_t dict_len(weft_dict *d) {
    size_t n = 0;
    ASSERT_OK(weft_dict_len(d, &n));
    return n;
}

TEST(dict_null_and_errors) {
    weft_dict *d = NULL;
    ASSERT_STATUS(weft_dict_new_in(NULL, NULL, NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_dict_set(NULL, "k", 1, "v", 1), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_dict_open(NULL, NULL, &d), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_dict_open(NULL, "no-such-dict", &d), WEFT_NOT_FOUND);
    d = new_dict();
    ASSERT_STATUS(weft_dict_set(d, NULL, 3, "v", 1), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_dict_get(d, "k", 1, NULL), WEFT_NULL_ARGUMENT);
    weft_bytes *b = NULL;
    ASSERT_STATUS(weft_dict_get(d, "k", 1, &b), WEFT_NOT_FOUND);
    ASSERT_NULL(b);
    ASSERT_STATUS(weft_dict_delete(d, "k", 1), WEFT_NOT_FOUND);
    set_str(d, "key", "a longer value");
    char small[4];
    size_t len = 0;
    ASSERT_STATUS(weft_dict_get_into(d, "key", 3, small, sizeof small, &len), WEFT_BUFFER_TOO_SMALL);
    ASSERT_UEQ(len, strlen("a longer value"));
    weft_lock *l = NULL;
    char token[WEFT_TOKEN_MAX];
    ASSERT_OK(weft_dict_token(d, token, sizeof token, &len));
    ASSERT_STATUS(weft_lock_from_token(token, len, &l), WEFT_INVALID_ARGUMENT);
    weft_dict_free(d);
    weft_dict_free(NULL);
}

TEST(dict_python_semantics) {
    weft_dict *d = new_dict();
    char buf[64];
    set_str(d, "a", "1");
    set_str(d, "b", "2");
    set_str(d, "c", "3");
    set_str(d, "a", "one"); /* replacing keeps the key's place */
    ASSERT_OK(weft_dict_set(d, "", 0, "", 0)); /* empty key and value are allowed */
    ASSERT_UEQ(dict_len(d), 4);
    ASSERT_OK(get_str(d, "a", buf, sizeof buf));
    ASSERT_STR_EQ(buf, "one");
    bool found = false;
    ASSERT_OK(weft_dict_contains(d, "b", 1, &found));
    ASSERT(found);
    weft_bytes *v = NULL;
    ASSERT_OK(weft_dict_pop(d, "b", 1, &v));
    ASSERT_UEQ(weft_bytes_len(v), 1);
    ASSERT(memcmp(weft_bytes_data(v), "2", 1) == 0);
    weft_bytes_free(v);
    ASSERT_OK(weft_dict_contains(d, "b", 1, &found));
    ASSERT(!found);
    ASSERT_OK(weft_dict_set_default(d, "c", 1, "x", 1, &v));
    ASSERT(memcmp(weft_bytes_data(v), "3", 1) == 0);
    weft_bytes_free(v);
    ASSERT_OK(weft_dict_set_default(d, "d", 1, "4", 1, NULL));
    /* items() in insertion order: a, c, "", d */
    weft_bytes *items = NULL;
    ASSERT_OK(weft_dict_items(d, &items));
    const unsigned char *p = weft_bytes_data(items);
    const char *keys[] = {"a", "c", "", "d"}, *vals[] = {"one", "3", "", "4"};
    size_t off = 0;
    for (int i = 0; i < 4; i++) {
        uint64_t kl, vl;
        memcpy(&kl, p + off, 8);
        memcpy(&vl, p + off + 8, 8);
        off += 16;
        ASSERT_UEQ(kl, strlen(keys[i]));
        ASSERT_UEQ(vl, strlen(vals[i]));
        ASSERT(memcmp(p + off, keys[i], kl) == 0);
        ASSERT(memcmp(p + off + kl, vals[i], vl) == 0);
        off += kl + vl;
    }
    ASSERT_UEQ(off, weft_bytes_len(items));
    weft_bytes_free(items);
    ASSERT_OK(weft_dict_clear(d));
    ASSERT_UEQ(dict_len(d), 0);
    weft_dict_free(d);
}

static void child_fills(void *arg) {
    char *token = arg;
    weft_dict *d = NULL;
    ASSERT_OK(weft_dict_from_token(token + sizeof(size_t), *(size_t *)token, &d));
    for (int i = 0; i < 1000; i++) {
        char k[16], v[16];
        snprintf(k, sizeof k, "child-%d", i);
        snprintf(v, sizeof v, "%d", i * i);
        set_str(d, k, v);
    }
}

TEST(dict_shared_with_children_by_token_and_name) {
    xp_guard g;
    xp_begin(&g);
    weft_dict *d = new_dict();
    char *token = xp_shared(WEFT_TOKEN_MAX + sizeof(size_t));
    ASSERT_OK(weft_dict_token(d, token + sizeof(size_t), WEFT_TOKEN_MAX, (size_t *)token));
    pid_t a = xp_fork(child_fills, token);
    for (int i = 0; i < 1000; i++) {
        char k[16];
        snprintf(k, sizeof k, "parent-%d", i);
        set_str(d, k, "p");
    }
    xp_wait_ok(a);
    ASSERT_UEQ(dict_len(d), 2000);
    char buf[32];
    ASSERT_OK(get_str(d, "child-999", buf, sizeof buf));
    ASSERT_STR_EQ(buf, "998001");
    weft_dict_free(d);

    /* By name in a named space. */
    char name[64];
    xp_name(name, sizeof name, "dict");
    weft_space *s = NULL;
    ASSERT_OK(weft_space_create(name, 1 << 20, &s));
    weft_dict *n = NULL, *n2 = NULL;
    ASSERT_OK(weft_dict_new_in(s, "settings", &n));
    set_str(n, "colour", "blue");
    ASSERT_OK(weft_dict_open(s, "settings", &n2));
    ASSERT_OK(get_str(n2, "colour", buf, sizeof buf));
    ASSERT_STR_EQ(buf, "blue");
    weft_dict_free(n2);
    weft_dict_free(n);
    weft_space_free(s);
    ASSERT_OK(weft_space_unlink(name));
    xp_end(&g);
}

/* ---- killed in the middle of an update ---------------------------------------------------- */

struct victim {
    char token[WEFT_TOKEN_MAX];
    size_t token_len;
    char lock_token[WEFT_TOKEN_MAX];
    size_t lock_token_len;
    atomic_int started;
};

/* Updates the dict without end: keys k0..k63 get values "<key>=<n>" of varying length (so
 * entries are replaced, tables grow and are compacted), some keys are deleted. */
static void churn(void *arg) {
    struct victim *v = arg;
    weft_dict *d = NULL;
    ASSERT_OK(weft_dict_from_token(v->token, v->token_len, &d));
    atomic_fetch_add(&v->started, 1);
    char k[16], val[600];
    for (uint64_t n = 1;; n++) {
        int key = (int)(n * 7 % 64);
        snprintf(k, sizeof k, "k%d", key);
        int len = snprintf(val, sizeof val, "%s=%llu", k, (unsigned long long)n);
        size_t pad = n % 500; /* values of many sizes */
        memset(val + len, 'x', pad);
        if (n % 5 == 0) {
            weft_status s = weft_dict_delete(d, k, strlen(k));
            ASSERT(s == WEFT_OK || s == WEFT_NOT_FOUND);
        } else {
            ASSERT_OK(weft_dict_set(d, k, strlen(k), val, (size_t)len + pad));
        }
    }
}

/* Every entry is a key k<i> with a value "k<i>=<n>" followed only by 'x': never torn. */
static void check_dict(weft_dict *d) {
    weft_bytes *items = NULL;
    ASSERT_OK(weft_dict_items(d, &items));
    const unsigned char *p = weft_bytes_data(items);
    size_t off = 0, total = weft_bytes_len(items), count = 0;
    while (off < total) {
        uint64_t kl, vl;
        memcpy(&kl, p + off, 8);
        memcpy(&vl, p + off + 8, 8);
        off += 16;
        ASSERT(kl >= 2 && kl <= 3 && p[off] == 'k');
        ASSERT(vl > kl + 1);
        ASSERT(memcmp(p + off + kl, p + off, kl) == 0); /* value starts with its key */
        ASSERT_EQ(p[off + kl + kl], '=');
        size_t i = kl + kl + 1;
        while (i < vl && p[off + kl + i] >= '0' && p[off + kl + i] <= '9') i++;
        while (i < vl) ASSERT_EQ(p[off + kl + i++], 'x');
        off += kl + vl;
        count++;
    }
    ASSERT_UEQ(off, total);
    ASSERT_UEQ(count, dict_len(d));
    weft_bytes_free(items);
}

TEST_TIMEOUT(dict_survives_random_kills_mid_update, 60000) {
    xp_guard g;
    xp_begin(&g);
    weft_dict *d = new_dict();
    struct victim *v = xp_shared(sizeof *v);
    ASSERT_OK(weft_dict_token(d, v->token, sizeof v->token, &v->token_len));
    uint64_t rng = 0x9e3779b97f4a7c15ull ^ (uint64_t)getpid();
    for (int round = 0; round < 25; round++) {
        int before = atomic_load(&v->started);
        pid_t pid = xp_fork(churn, v);
        xp_wait_count(&v->started, before + 1);
        runner_sleep_ms(1 + (unsigned)(xp_rand(&rng) % 15));
        xp_kill(pid);
        /* The next call repairs whatever the victim was doing; the dict is whole. */
        check_dict(d);
    }
    /* Still fully usable. */
    set_str(d, "after", "kills");
    char buf[16];
    ASSERT_OK(get_str(d, "after", buf, sizeof buf));
    ASSERT_STR_EQ(buf, "kills");
    ASSERT_OK(weft_dict_clear(d));
    ASSERT_UEQ(dict_len(d), 0);
    weft_dict_free(d);
    xp_end(&g);
}

/* The user's own invariant across several keys, guarded by a shared lock: the child dies
 * half-way through a transfer; the parent sees WEFT_OWNER_DEAD, repairs, and goes on. */
static void transfer_and_die(void *arg) {
    struct victim *v = arg;
    weft_dict *d = NULL;
    weft_lock *l = NULL;
    ASSERT_OK(weft_dict_from_token(v->token, v->token_len, &d));
    ASSERT_OK(weft_lock_from_token(v->lock_token, v->lock_token_len, &l));
    ASSERT_OK(weft_lock_acquire(l, WEFT_FOREVER));
    set_str(d, "alice", "50"); /* debit done ... */
    kill(getpid(), SIGKILL);    /* ... credit to bob never happens */
}

TEST(dict_transfer_interrupted_gives_owner_dead) {
    xp_guard g;
    xp_begin(&g);
    weft_dict *d = new_dict();
    weft_lock *l = NULL;
    ASSERT_OK(weft_lock_new_in(NULL, NULL, &l));
    set_str(d, "alice", "100");
    set_str(d, "bob", "0");
    struct victim *v = xp_shared(sizeof *v);
    ASSERT_OK(weft_dict_token(d, v->token, sizeof v->token, &v->token_len));
    ASSERT_OK(weft_lock_token(l, v->lock_token, sizeof v->lock_token, &v->lock_token_len));
    xp_wait_killed(xp_fork(transfer_and_die, v));
    ASSERT_STATUS(weft_lock_acquire(l, 10 * SEC), WEFT_OWNER_DEAD);
    char a[16], b[16];
    ASSERT_OK(get_str(d, "alice", a, sizeof a));
    ASSERT_OK(get_str(d, "bob", b, sizeof b));
    ASSERT_STR_EQ(a, "50");
    ASSERT_STR_EQ(b, "0");
    set_str(d, "alice", "100"); /* roll the half-done transfer back */
    ASSERT_OK(weft_lock_mark_consistent(l));
    ASSERT_OK(weft_lock_release(l));
    ASSERT_OK(weft_lock_acquire(l, 0));
    ASSERT_UEQ(dict_len(d), 2);
    ASSERT_OK(weft_lock_release(l));
    weft_lock_free(l);
    weft_dict_free(d);
    xp_end(&g);
}

/* ---- list ------------------------------------------------------------------------------- */

static size_t list_len(weft_list *l) {
    size_t n = 0;
    ASSERT_OK(weft_list_len(l, &n));
    return n;
}

TEST(list_python_semantics) {
    weft_list *l = new_list();
    ASSERT_STATUS(weft_list_append(NULL, "a", 1), WEFT_NULL_ARGUMENT);
    ASSERT_OK(weft_list_append(l, "b", 1));
    ASSERT_OK(weft_list_insert(l, 0, "a", 1));
    ASSERT_OK(weft_list_insert(l, 100, "d", 1)); /* clamped to the end */
    ASSERT_OK(weft_list_insert(l, -1, "c", 1));  /* before the last */
    ASSERT_UEQ(list_len(l), 4);
    char buf[8];
    size_t len = 0;
    const char *want = "abcd";
    for (int i = 0; i < 4; i++) {
        ASSERT_OK(weft_list_get_into(l, i, buf, sizeof buf, &len));
        ASSERT_UEQ(len, 1);
        ASSERT_EQ(buf[0], want[i]);
    }
    ASSERT_OK(weft_list_get_into(l, -4, buf, sizeof buf, &len));
    ASSERT_EQ(buf[0], 'a');
    ASSERT_STATUS(weft_list_get_into(l, 4, buf, sizeof buf, &len), WEFT_NOT_FOUND);
    ASSERT_STATUS(weft_list_get_into(l, -5, buf, sizeof buf, &len), WEFT_NOT_FOUND);
    ASSERT_OK(weft_list_set(l, 1, "BB", 2));
    ASSERT_STATUS(weft_list_get_into(l, 1, buf, 1, &len), WEFT_BUFFER_TOO_SMALL);
    ASSERT_UEQ(len, 2);
    weft_bytes *item = NULL;
    ASSERT_OK(weft_list_pop(l, -1, &item));
    ASSERT(memcmp(weft_bytes_data(item), "d", 1) == 0);
    weft_bytes_free(item);
    ASSERT_OK(weft_list_pop(l, 0, NULL));
    ASSERT_UEQ(list_len(l), 2);
    weft_bytes *all = NULL;
    ASSERT_OK(weft_list_items(l, &all));
    ASSERT_UEQ(weft_bytes_len(all), 8 + 2 + 8 + 1);
    weft_bytes_free(all);
    ASSERT_OK(weft_list_clear(l));
    ASSERT_UEQ(list_len(l), 0);
    ASSERT_STATUS(weft_list_pop(l, -1, NULL), WEFT_NOT_FOUND);
    weft_list_free(l);
}

static void append_forever(void *arg) {
    struct victim *v = arg;
    weft_list *l = NULL;
    ASSERT_OK(weft_list_from_token(v->token, v->token_len, &l));
    atomic_fetch_add(&v->started, 1);
    char item[300];
    for (uint64_t n = 0;; n++) {
        memset(item, (int)('a' + n % 26), sizeof item);
        size_t len = 1 + n % sizeof item;
        if (n % 3 == 2) {
            weft_status s = weft_list_pop(l, (int64_t)(n % 7) - 3, NULL);
            ASSERT(s == WEFT_OK || s == WEFT_NOT_FOUND);
        } else if (n % 3 == 1) {
            ASSERT_OK(weft_list_insert(l, (int64_t)(n % 11), item, len));
        } else {
            ASSERT_OK(weft_list_append(l, item, len));
        }
    }
}

TEST_TIMEOUT(list_survives_random_kills_mid_update, 60000) {
    xp_guard g;
    xp_begin(&g);
    weft_list *l = new_list();
    struct victim *v = xp_shared(sizeof *v);
    ASSERT_OK(weft_list_token(l, v->token, sizeof v->token, &v->token_len));
    uint64_t rng = 0x2545f4914f6cdd1dull ^ (uint64_t)getpid();
    for (int round = 0; round < 25; round++) {
        int before = atomic_load(&v->started);
        pid_t pid = xp_fork(append_forever, v);
        xp_wait_count(&v->started, before + 1);
        runner_sleep_ms(1 + (unsigned)(xp_rand(&rng) % 15));
        xp_kill(pid);
        /* Every item is whole: one repeated letter. */
        weft_bytes *all = NULL;
        ASSERT_OK(weft_list_items(l, &all));
        const unsigned char *p = weft_bytes_data(all);
        size_t off = 0, count = 0;
        while (off < weft_bytes_len(all)) {
            uint64_t n;
            memcpy(&n, p + off, 8);
            off += 8;
            ASSERT(n >= 1 && n <= 300);
            for (uint64_t i = 1; i < n; i++) ASSERT_EQ(p[off + i], p[off]);
            off += n;
            count++;
        }
        ASSERT_UEQ(off, weft_bytes_len(all));
        ASSERT_UEQ(count, list_len(l));
        weft_bytes_free(all);
    }
    ASSERT_OK(weft_list_append(l, "end", 3));
    ASSERT_OK(weft_list_clear(l));
    weft_list_free(l);
    xp_end(&g);
}
