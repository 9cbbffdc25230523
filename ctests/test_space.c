/* Spaces (weft_space_*): the default space shared with forked children, named spaces (create,
 * open from a forked and from an exec'd process, unlink, usage, participants, a full space),
 * the directory of named objects, names, NULL arguments, tokens, the security of named spaces
 * (links, modes, owners, another user), their lifetime (sweep after SIGKILL, never while a
 * participant lives), and corrupted or truncated spaces.
 *
 * Every test checks on leaving that it left no /dev/shm/weft.ct<pid>-* entry behind and that the
 * default space's participants are back to their number at the start (xp_begin / xp_end).
 */
#define _GNU_SOURCE
#include "helpers.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define KIB ((size_t)1024)
#define MIB ((size_t)1024 * 1024)

static void shm_path(char *buf, size_t cap, const char *name) {
    int n = snprintf(buf, cap, "/dev/shm/weft.%s", name);
    ASSERT(n > 0 && (size_t)n < cap);
}

static weft_space *create_space(const char *name, size_t size) {
    weft_space *s = NULL;
    ASSERT_OK(weft_space_create(name, size, &s));
    ASSERT_NOT_NULL(s);
    return s;
}

static weft_space *open_space(const char *name) {
    weft_space *s = NULL;
    ASSERT_OK(weft_space_open(name, &s));
    ASSERT_NOT_NULL(s);
    return s;
}

/* ---- every kind of shared object behind one interface ------------------------------------ */

typedef struct {
    const char *kind;
    weft_status (*create)(weft_space *s, const char *name, void **out);
    weft_status (*open)(weft_space *s, const char *name, void **out);
    weft_status (*token)(const void *o, void *buf, size_t cap, size_t *len);
    weft_status (*from_token)(const void *t, size_t len, void **out);
    weft_status (*private_new)(void **out); /* WEFT_UNSUPPORTED: no private objects */
    void (*release)(void *o);
} kind_ops;

#define KIND_FUNCS(prefix, type, create_expr, private_expr)                                        \
    static weft_status prefix##_create(weft_space *s, const char *name, void **out) {              \
        type *o = NULL;                                                                            \
        weft_status st = create_expr;                                                              \
        if (st == WEFT_OK) *out = o;                                                               \
        return st;                                                                                 \
    }                                                                                              \
    static weft_status prefix##_open(weft_space *s, const char *name, void **out) {                \
        type *o = NULL;                                                                            \
        weft_status st = weft_##prefix##_open(s, name, &o);                                        \
        if (st == WEFT_OK) *out = o;                                                               \
        return st;                                                                                 \
    }                                                                                              \
    static weft_status prefix##_token(const void *o, void *buf, size_t cap, size_t *len) {         \
        return weft_##prefix##_token((const type *)o, buf, cap, len);                              \
    }                                                                                              \
    static weft_status prefix##_from_token(const void *t, size_t len, void **out) {                \
        type *o = NULL;                                                                            \
        weft_status st = weft_##prefix##_from_token(t, len, &o);                                   \
        if (st == WEFT_OK) *out = o;                                                               \
        return st;                                                                                 \
    }                                                                                              \
    static weft_status prefix##_private(void **out) {                                              \
        type *o = NULL;                                                                            \
        weft_status st = private_expr;                                                             \
        if (st == WEFT_OK) *out = o;                                                               \
        return st;                                                                                 \
    }                                                                                              \
    static void prefix##_release(void *o) {                                                        \
        weft_##prefix##_free((type *)o);                                                           \
    }

KIND_FUNCS(lock, weft_lock, weft_lock_new_in(s, name, &o), weft_lock_new(&o))
KIND_FUNCS(rlock, weft_rlock, weft_rlock_new_in(s, name, &o), weft_rlock_new(&o))
KIND_FUNCS(semaphore, weft_semaphore, weft_semaphore_new_in(s, name, 3, false, &o), weft_semaphore_new(3, &o))
KIND_FUNCS(event, weft_event, weft_event_new_in(s, name, &o), weft_event_new(&o))
KIND_FUNCS(condition, weft_condition, weft_condition_new_in(s, name, NULL, NULL, &o), weft_condition_new(&o))
KIND_FUNCS(array, weft_array, weft_array_new_in(s, name, 'i', 4, NULL, true, &o), WEFT_UNSUPPORTED) /* none */

/* Barriers take an action in open and from_token. */
static weft_status barrier_create(weft_space *s, const char *name, void **out) {
    weft_barrier *o = NULL;
    weft_status st = weft_barrier_new_in(s, name, 2, NULL, NULL, &o);
    if (st == WEFT_OK) *out = o;
    return st;
}
static weft_status barrier_open(weft_space *s, const char *name, void **out) {
    weft_barrier *o = NULL;
    weft_status st = weft_barrier_open(s, name, NULL, NULL, &o);
    if (st == WEFT_OK) *out = o;
    return st;
}
static weft_status barrier_token(const void *o, void *buf, size_t cap, size_t *len) {
    return weft_barrier_token((const weft_barrier *)o, buf, cap, len);
}
static weft_status barrier_from_token(const void *t, size_t len, void **out) {
    weft_barrier *o = NULL;
    weft_status st = weft_barrier_from_token(t, len, NULL, NULL, &o);
    if (st == WEFT_OK) *out = o;
    return st;
}
static weft_status barrier_private(void **out) {
    weft_barrier *o = NULL;
    weft_status st = weft_barrier_new(2, NULL, NULL, &o);
    if (st == WEFT_OK) *out = o;
    return st;
}
static void barrier_release(void *o) {
    weft_barrier_free((weft_barrier *)o);
}

static const kind_ops KINDS[] = {
    {"lock", lock_create, lock_open, lock_token, lock_from_token, lock_private, lock_release},
    {"rlock", rlock_create, rlock_open, rlock_token, rlock_from_token, rlock_private, rlock_release},
    {"semaphore", semaphore_create, semaphore_open, semaphore_token, semaphore_from_token, semaphore_private,
     semaphore_release},
    {"event", event_create, event_open, event_token, event_from_token, event_private, event_release},
    {"condition", condition_create, condition_open, condition_token, condition_from_token, condition_private,
     condition_release},
    {"barrier", barrier_create, barrier_open, barrier_token, barrier_from_token, barrier_private, barrier_release},
    {"array", array_create, array_open, array_token, array_from_token, array_private, array_release},
};
#define N_KINDS (sizeof KINDS / sizeof KINDS[0])

/* Fails naming the kind when `expr` does not return `want`. */
#define ASSERT_KIND_STATUS(k, expr, want)                                                          \
    do {                                                                                           \
        weft_status got_ = (expr);                                                                 \
        if (got_ != (want))                                                                        \
            FAIL_AT("%s: %s returned %s, expected %s (last error: %s)", (k)->kind, #expr,          \
                    weft_status_name(got_), weft_status_name(want), weft_last_error_message());    \
    } while (0)

/* ---- the default space -------------------------------------------------------------------- */

typedef struct {
    uint8_t parent_lock_token[WEFT_TOKEN_MAX];
    size_t parent_lock_len;
    uint8_t child_sem_token[WEFT_TOKEN_MAX];
    size_t child_sem_len;
} default_share;

static void child_uses_default_space(void *arg) {
    default_share *sh = arg;
    /* The parent holds its lock: both the name and the token reach that same lock. */
    weft_lock *by_name = NULL, *by_token = NULL;
    ASSERT_OK(weft_lock_open(NULL, "parent-lock", &by_name));
    ASSERT_OK(weft_lock_from_token(sh->parent_lock_token, sh->parent_lock_len, &by_token));
    ASSERT(weft_lock_locked(by_name));
    ASSERT_STATUS(weft_lock_acquire(by_name, 0), WEFT_WOULD_BLOCK);
    ASSERT_STATUS(weft_lock_acquire(by_token, 0), WEFT_WOULD_BLOCK);
    weft_lock_free(by_name);
    weft_lock_free(by_token);

    /* Objects the child creates in the default space: a named event (set), an unnamed
     * semaphore passed back by token. */
    weft_event *e = NULL;
    ASSERT_OK(weft_event_new_in(NULL, "child-event", &e));
    ASSERT_OK(weft_event_set(e));
    weft_event_free(e);
    weft_semaphore *s = NULL;
    ASSERT_OK(weft_semaphore_new_in(NULL, NULL, 7, false, &s));
    ASSERT_OK(weft_semaphore_token(s, sh->child_sem_token, sizeof sh->child_sem_token, &sh->child_sem_len));
    /* The unnamed semaphore lives while a handle does: leave without freeing it (the reference
     * stays counted, so the parent can open it after the child is gone). */
    ASSERT_EQ(xp_participants(NULL), 2);
}

TEST_TIMEOUT(space_default_is_shared_with_forked_children, 20000) {
    xp_guard g;
    xp_begin(&g);
    ASSERT_EQ(g.default_participants, 1);
    weft_space *d = NULL;
    ASSERT_OK(weft_space_default(&d));
    ASSERT_NULL(weft_space_name(d));
    size_t size = 0, unused = 0;
    ASSERT_OK(weft_space_usage(d, &size, &unused));
    ASSERT_UGE(size, MIB);
    ASSERT(unused > 0 && unused < size);

    default_share *sh = xp_shared(sizeof *sh);
    weft_lock *l = NULL;
    ASSERT_OK(weft_lock_new_in(NULL, "parent-lock", &l));
    ASSERT_OK(weft_lock_token(l, sh->parent_lock_token, sizeof sh->parent_lock_token, &sh->parent_lock_len));
    ASSERT_EQ(sh->parent_lock_len, 40);
    ASSERT_OK(weft_lock_acquire(l, 0));

    xp_wait_ok(xp_fork(child_uses_default_space, sh));
    ASSERT_OK(weft_lock_release(l));

    weft_event *e = NULL;
    ASSERT_OK(weft_event_open(d, "child-event", &e));
    ASSERT(weft_event_is_set(e));
    weft_semaphore *s = NULL;
    ASSERT_OK(weft_semaphore_from_token(sh->child_sem_token, sh->child_sem_len, &s));
    ASSERT_EQ(weft_semaphore_value(s), 7);

    /* Removing the names: the objects live on through their handles, the names are free. */
    ASSERT_OK(weft_space_remove(NULL, "child-event"));
    ASSERT_OK(weft_space_remove(d, "parent-lock"));
    weft_lock *again = NULL;
    ASSERT_STATUS(weft_lock_open(NULL, "parent-lock", &again), WEFT_NOT_FOUND);
    ASSERT_NULL(again);
    ASSERT_OK(weft_lock_acquire(l, 0));
    ASSERT_OK(weft_lock_release(l));
    ASSERT(weft_event_is_set(e));

    weft_semaphore_free(s);
    weft_event_free(e);
    weft_lock_free(l);
    weft_space_free(d);
    xp_end(&g);
}

/* ---- named spaces --------------------------------------------------------------------------- */

static void child_opens_named(void *arg) {
    const char *name = arg;
    weft_space *s = open_space(name);
    ASSERT_STR_EQ(weft_space_name(s), name);
    /* The parent holds two handle sets (its create and its open), the child one. */
    ASSERT_EQ(xp_participants(s), 3);
    weft_lock *l = NULL;
    ASSERT_OK(weft_lock_new_in(s, "from-child", &l));
    ASSERT_OK(weft_lock_acquire(l, 0));
    ASSERT_OK(weft_lock_release(l));
    weft_lock_free(l);
    weft_space_free(s);
}

TEST_TIMEOUT(space_named_create_open_unlink, 20000) {
    xp_guard g;
    xp_begin(&g);
    char name[64], path[128];
    xp_name(name, sizeof name, "named");
    shm_path(path, sizeof path, name);

    mode_t old_umask = umask(0); /* "0600 whatever the umask" */
    weft_space *s = create_space(name, MIB);
    umask(old_umask);
    ASSERT_STR_EQ(weft_space_name(s), name);
    struct stat st;
    ASSERT_EQ(lstat(path, &st), 0);
    ASSERT(S_ISREG(st.st_mode));
    ASSERT_EQ(st.st_mode & 07777, 0600);
    ASSERT_EQ(st.st_uid, geteuid());
    ASSERT_EQ(st.st_size, (off_t)MIB);

    size_t size = 0, unused = 0;
    ASSERT_OK(weft_space_usage(s, &size, NULL));
    ASSERT_OK(weft_space_usage(s, NULL, &unused));
    ASSERT_OK(weft_space_usage(s, NULL, NULL));
    ASSERT_UEQ(size, MIB);
    ASSERT(unused > MIB - 8 * KIB && unused < MIB); /* about 7 KiB of header */
    ASSERT_EQ(xp_participants(s), 1);

    weft_space *dup = NULL;
    ASSERT_STATUS(weft_space_create(name, MIB, &dup), WEFT_EXISTS);
    ASSERT_NULL(dup);
    ASSERT_STATUS(weft_space_create(name, 2 * MIB, &dup), WEFT_EXISTS);

    weft_space *o = open_space(name);
    ASSERT_STR_EQ(weft_space_name(o), name);
    ASSERT_EQ(xp_participants(s), 2);
    ASSERT_OK(weft_space_usage(o, &size, NULL));
    ASSERT_UEQ(size, MIB);

    xp_wait_ok(xp_fork(child_opens_named, name));
    ASSERT_EQ(xp_participants(o), 2);
    weft_space_free(o);
    ASSERT_EQ(xp_participants(s), 1);

    /* What the child created is there. */
    weft_lock *l = NULL;
    ASSERT_OK(weft_lock_open(s, "from-child", &l));
    ASSERT_OK(weft_lock_acquire(l, 0));
    ASSERT_OK(weft_lock_release(l));
    ASSERT_OK(weft_space_usage(s, NULL, &size));
    ASSERT(size < unused);

    /* Unlink: the name goes, the open space keeps working. */
    ASSERT_OK(weft_space_unlink(name));
    ASSERT(!xp_shm_exists(name));
    ASSERT_STATUS(weft_space_open(name, &o), WEFT_NOT_FOUND);
    ASSERT_STATUS(weft_space_unlink(name), WEFT_NOT_FOUND);
    weft_event *e = NULL;
    ASSERT_OK(weft_event_new_in(s, "after-unlink", &e));
    ASSERT_OK(weft_event_set(e));
    ASSERT_OK(weft_lock_acquire(l, 0));
    ASSERT_OK(weft_lock_release(l));

    /* The name can be created again: another space, empty. */
    weft_space *s2 = create_space(name, 64 * KIB);
    weft_lock *l2 = NULL;
    ASSERT_STATUS(weft_lock_open(s2, "from-child", &l2), WEFT_NOT_FOUND);
    ASSERT_OK(weft_space_usage(s2, &size, NULL));
    ASSERT_UEQ(size, 64 * KIB);
    ASSERT_OK(weft_space_unlink(name));
    weft_space_free(s2);

    weft_event_free(e);
    weft_lock_free(l);
    weft_space_free(s);
    xp_end(&g);
}

/* An exec'd copy of this runner (an unrelated process: nothing inherited but descriptors and
 * the environment) reaches a named space by name and by token, and the default space through
 * WEFT_DEFAULT_SPACE_FD. */
#define EXEC_ROLE_ENV "WEFT_CTESTS_EXEC_ROLE"

static void to_hex(const uint8_t *b, size_t n, char *out) {
    for (size_t i = 0; i < n; i++) sprintf(out + 2 * i, "%02x", b[i]);
    out[2 * n] = '\0';
}

static size_t from_hex(const char *s, uint8_t *out, size_t cap) {
    size_t n = strlen(s) / 2;
    ASSERT(n <= cap);
    for (size_t i = 0; i < n; i++) {
        unsigned v = 0;
        ASSERT_EQ(sscanf(s + 2 * i, "%2x", &v), 1);
        out[i] = (uint8_t)v;
    }
    return n;
}

static void exec_child_role(const char *role) {
    /* role: "<how> <space name> <named lock token hex> <default event token hex>", where <how>
     * is "default-first" (attach the default space before using its token) or "token-first". */
    char how[32], name[256], lock_hex[2 * WEFT_TOKEN_MAX + 1], event_hex[2 * WEFT_TOKEN_MAX + 1];
    ASSERT_EQ(sscanf(role, "%31s %255s %480s %480s", how, name, lock_hex, event_hex), 4);
    uint8_t tok[WEFT_TOKEN_MAX];
    weft_space *d = NULL;
    if (strcmp(how, "default-first") == 0) {
        ASSERT_OK(weft_space_default(&d));
        ASSERT_NULL(weft_space_name(d));
    }

    /* The named space is not open in this process: the token opens it by name. */
    weft_lock *l = NULL;
    size_t n = from_hex(lock_hex, tok, sizeof tok);
    ASSERT_OK(weft_lock_from_token(tok, n, &l));
    ASSERT_OK(weft_lock_acquire(l, 0));
    ASSERT_OK(weft_lock_release(l));

    weft_space *s = open_space(name);
    ASSERT_UGE(xp_participants(s), 2);
    weft_semaphore *sem = NULL;
    ASSERT_OK(weft_semaphore_open(s, "sem", &sem));
    ASSERT_OK(weft_semaphore_release(sem, 1));

    /* The default space is the parent's, attached from the inherited descriptor. */
    weft_event *e = NULL;
    n = from_hex(event_hex, tok, sizeof tok);
    ASSERT_OK(weft_event_from_token(tok, n, &e));
    ASSERT(!weft_event_is_set(e));
    ASSERT_OK(weft_event_set(e));

    weft_event_free(e);
    weft_semaphore_free(sem);
    weft_lock_free(l);
    weft_space_free(s);
    weft_space_free(d);
}

static void exec_child_test(const char *how, const char *test_name) {
    const char *role = getenv(EXEC_ROLE_ENV);
    if (role) {
        exec_child_role(role);
        fflush(stdout);
        fflush(stderr);
        _exit(0);
    }
    xp_guard g;
    xp_begin(&g);
    char name[64];
    xp_name(name, sizeof name, "exec");
    weft_space *s = create_space(name, 256 * KIB);
    weft_semaphore *sem = NULL;
    ASSERT_OK(weft_semaphore_new_in(s, "sem", 0, false, &sem));
    weft_lock *l = NULL;
    ASSERT_OK(weft_lock_new_in(s, NULL, &l));
    uint8_t tok[WEFT_TOKEN_MAX];
    size_t n = 0;
    ASSERT_OK(weft_lock_token(l, tok, sizeof tok, &n));
    ASSERT_EQ(n, 40 + strlen(name));
    char lock_hex[2 * WEFT_TOKEN_MAX + 1], event_hex[2 * WEFT_TOKEN_MAX + 1];
    to_hex(tok, n, lock_hex);
    weft_event *e = NULL;
    ASSERT_OK(weft_event_new_in(NULL, NULL, &e));
    ASSERT_OK(weft_event_token(e, tok, sizeof tok, &n));
    to_hex(tok, n, event_hex);
    weft_space *d = NULL;
    ASSERT_OK(weft_space_default(&d));
    int fd = -1;
    ASSERT_OK(weft_space_fd(d, &fd));
    ASSERT(fd >= 0);
    ASSERT(fcntl(fd, F_GETFD) & FD_CLOEXEC);

    char exe[4096];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    ASSERT(len > 0);
    exe[len] = '\0';
    char role_value[1200], fd_value[32];
    snprintf(role_value, sizeof role_value, "%s %s %s %s", how, name, lock_hex, event_hex);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    ASSERT(pid >= 0);
    if (pid == 0) {
        int inherited = dup(fd); /* without FD_CLOEXEC */
        if (inherited < 0) _exit(90);
        snprintf(fd_value, sizeof fd_value, "%d", inherited);
        setenv(EXEC_ROLE_ENV, role_value, 1);
        setenv("WEFT_DEFAULT_SPACE_FD", fd_value, 1);
        char *argv[] = {exe, "--in-process", (char *)test_name, NULL};
        execv(exe, argv);
        _exit(91);
    }
    xp_wait_ok(pid);
    ASSERT(weft_event_is_set(e));
    ASSERT_EQ(weft_semaphore_value(sem), 1);
    ASSERT_EQ(xp_participants(s), 1);

    ASSERT_OK(weft_space_unlink(name));
    weft_space_free(d);
    weft_event_free(e);
    weft_lock_free(l);
    weft_semaphore_free(sem);
    weft_space_free(s);
    xp_end(&g);
}

TEST_TIMEOUT(space_reached_from_an_exec_child, 20000) {
    exec_child_test("default-first", "space_reached_from_an_exec_child");
}

/* A process started with WEFT_DEFAULT_SPACE_FD resolves a token of the default space without
 * first asking for the default space itself: the token's anonymous space is the one its
 * inherited descriptor designates ("attaches on first use"). */
TEST_TIMEOUT(space_exec_child_token_attaches_inherited_default_space, 20000) {
    exec_child_test("token-first", "space_exec_child_token_attaches_inherited_default_space");
}

/* ---- a full space, the directory ------------------------------------------------------------ */

TEST_TIMEOUT(space_full_returns_no_memory, 20000) {
    xp_guard g;
    xp_begin(&g);
    char name[64];
    xp_name(name, sizeof name, "full");
    weft_space *s = NULL;
    /* Too small for the header (about 7 KiB). */
    ASSERT_STATUS(weft_space_create(name, 4096, &s), WEFT_INVALID_ARGUMENT);
    ASSERT_STATUS(weft_space_create(name, 0, &s), WEFT_INVALID_ARGUMENT);
    ASSERT_NULL(s);
    ASSERT(!xp_shm_exists(name));

    s = create_space(name, 16 * KIB);
    weft_event *events[256];
    size_t n = 0;
    weft_status st = WEFT_OK;
    while (n < 256) {
        weft_event *e = NULL;
        st = weft_event_new_in(s, NULL, &e);
        if (st != WEFT_OK) {
            ASSERT_NULL(e);
            break;
        }
        events[n++] = e;
    }
    ASSERT_STATUS(st, WEFT_NO_MEMORY);
    ASSERT_GT(n, 4);
    size_t unused = 0;
    ASSERT_OK(weft_space_usage(s, NULL, &unused));
    ASSERT(unused < 256);
    /* Everything already made still works; an array larger than the space does not fit. */
    ASSERT_OK(weft_event_set(events[0]));
    weft_array *a = NULL;
    ASSERT_STATUS(weft_array_new_in(s, NULL, 'q', 4096, NULL, false, &a), WEFT_NO_MEMORY);
    ASSERT_NULL(a);
    /* A freed block is reused. */
    weft_event_free(events[n - 1]);
    weft_event *e = NULL;
    ASSERT_OK(weft_event_new_in(s, NULL, &e));
    events[n - 1] = e;
    ASSERT_STATUS(weft_event_new_in(s, NULL, &e), WEFT_NO_MEMORY);
    for (size_t i = 0; i < n; i++) weft_event_free(events[i]);
    ASSERT_OK(weft_space_unlink(name));
    weft_space_free(s);

    /* The directory holds 64 names. */
    s = create_space(name, MIB);
    char obj[32];
    for (int i = 0; i < 64; i++) {
        snprintf(obj, sizeof obj, "e%d", i);
        ASSERT_OK(weft_event_new_in(s, obj, &e));
        weft_event_free(e);
    }
    ASSERT_STATUS(weft_event_new_in(s, "one-too-many", &e), WEFT_NO_MEMORY);
    ASSERT_OK(weft_event_new_in(s, NULL, &e)); /* unnamed objects need no entry */
    weft_event_free(e);
    ASSERT_OK(weft_space_remove(s, "e17"));
    ASSERT_OK(weft_event_new_in(s, "one-too-many", &e));
    weft_event_free(e);
    ASSERT_OK(weft_space_unlink(name));
    weft_space_free(s);
    xp_end(&g);
}

TEST_TIMEOUT(space_object_directory_names, 20000) {
    xp_guard g;
    xp_begin(&g);
    char name[64];
    xp_name(name, sizeof name, "dir");
    weft_space *s = create_space(name, MIB);
    for (size_t i = 0; i < N_KINDS; i++) {
        const kind_ops *k = &KINDS[i];
        for (int sp = 0; sp < 2; sp++) { /* the named space, then the default one */
            weft_space *where = sp ? NULL : s;
            void *o = NULL, *dup = NULL, *opened = NULL;
            ASSERT_KIND_STATUS(k, k->create(where, "obj", &o), WEFT_OK);
            ASSERT_KIND_STATUS(k, k->create(where, "obj", &dup), WEFT_EXISTS);
            ASSERT_NULL(dup);
            /* The name is taken whatever the kind. */
            const kind_ops *other = &KINDS[(i + 1) % N_KINDS];
            ASSERT_KIND_STATUS(other, other->create(where, "obj", &dup), WEFT_EXISTS);
            /* Opening it as another kind. */
            ASSERT_KIND_STATUS(other, other->open(where, "obj", &dup), WEFT_INVALID_ARGUMENT);
            ASSERT_NULL(dup);
            ASSERT_KIND_STATUS(k, k->open(where, "missing", &dup), WEFT_NOT_FOUND);
            ASSERT_KIND_STATUS(k, k->open(where, "obj", &opened), WEFT_OK);
            /* Both handles name one object: their tokens are equal. */
            uint8_t t1[WEFT_TOKEN_MAX], t2[WEFT_TOKEN_MAX];
            size_t n1 = 0, n2 = 0;
            ASSERT_KIND_STATUS(k, k->token(o, t1, sizeof t1, &n1), WEFT_OK);
            ASSERT_KIND_STATUS(k, k->token(opened, t2, sizeof t2, &n2), WEFT_OK);
            ASSERT_EQ(n1, n2);
            ASSERT_EQ(memcmp(t1, t2, n1), 0);
            k->release(opened);

            ASSERT_OK(weft_space_remove(where, "obj"));
            ASSERT_STATUS(weft_space_remove(where, "obj"), WEFT_NOT_FOUND);
            ASSERT_KIND_STATUS(k, k->open(where, "obj", &dup), WEFT_NOT_FOUND);
            /* The removed object lives on through its handle; the name makes a new object. */
            ASSERT_KIND_STATUS(k, k->from_token(t1, n1, &opened), WEFT_OK);
            k->release(opened);
            ASSERT_KIND_STATUS(k, k->create(where, "obj", &dup), WEFT_OK);
            ASSERT_KIND_STATUS(k, k->token(dup, t2, sizeof t2, &n2), WEFT_OK);
            ASSERT(n1 != n2 || memcmp(t1, t2, n1) != 0);
            k->release(dup);
            k->release(o);
            ASSERT_OK(weft_space_remove(where, "obj"));
        }
    }

    /* Object names: 1 to 63 bytes of UTF-8 without NUL. */
    char longest[64], too_long[65];
    memset(longest, 'n', 63);
    longest[63] = '\0';
    memset(too_long, 'n', 64);
    too_long[64] = '\0';
    weft_lock *l = NULL;
    ASSERT_OK(weft_lock_new_in(s, longest, &l));
    weft_lock *l2 = NULL;
    ASSERT_OK(weft_lock_open(s, longest, &l2));
    weft_lock_free(l2);
    weft_lock_free(l);
    ASSERT_OK(weft_space_remove(s, longest));
    const char *bad[] = {"", too_long, "\xff\xfe"};
    l = NULL;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ASSERT_STATUS(weft_lock_new_in(s, bad[i], &l), WEFT_INVALID_ARGUMENT);
        ASSERT_STATUS(weft_lock_open(s, bad[i], &l), WEFT_INVALID_ARGUMENT);
        ASSERT_STATUS(weft_space_remove(s, bad[i]), WEFT_INVALID_ARGUMENT);
        ASSERT_STATUS(weft_space_remove(NULL, bad[i]), WEFT_INVALID_ARGUMENT);
    }
    ASSERT_NULL(l);
    ASSERT_OK(weft_space_unlink(name));
    weft_space_free(s);
    xp_end(&g);
}

TEST_TIMEOUT(space_bad_names_are_invalid, 20000) {
    xp_guard g;
    xp_begin(&g);
    char too_long[202], longest[256];
    memset(too_long, 'a', 201);
    too_long[201] = '\0';
    int p = snprintf(longest, sizeof longest, "ct%d-", (int)getpid());
    memset(longest + p, 'z', (size_t)(200 - p));
    longest[200] = '\0';
    const char *bad[] = {"", ".", "..", ".hidden", "a/b", "../etc", "/abs", "a b", "tab\t", "new\nline",
                         "star*", "col:on", "\xc3\xa9t\xc3\xa9", "\xff", too_long};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        weft_space *s = NULL;
        weft_shm *m = NULL;
        weft_status st = weft_space_create(bad[i], MIB, &s);
        if (st != WEFT_INVALID_ARGUMENT)
            FAIL_AT("weft_space_create(\"%s\") returned %s", bad[i], weft_status_name(st));
        ASSERT_STATUS(weft_space_open(bad[i], &s), WEFT_INVALID_ARGUMENT);
        ASSERT_STATUS(weft_space_unlink(bad[i]), WEFT_INVALID_ARGUMENT);
        ASSERT_STATUS(weft_shm_create(bad[i], 4096, &m), WEFT_INVALID_ARGUMENT);
        ASSERT_STATUS(weft_shm_open(bad[i], &m), WEFT_INVALID_ARGUMENT);
        ASSERT_STATUS(weft_shm_unlink(bad[i]), WEFT_INVALID_ARGUMENT);
        ASSERT_NULL(s);
        ASSERT_NULL(m);
    }
    /* 200 bytes of the allowed alphabet is fine; so are '.', '_' and '-' after the first byte. */
    weft_space *s = create_space(longest, 64 * KIB);
    ASSERT_STR_EQ(weft_space_name(s), longest);
    ASSERT_OK(weft_space_unlink(longest));
    weft_space_free(s);
    char odd[64];
    xp_name(odd, sizeof odd, "A.b_C-9");
    s = create_space(odd, 64 * KIB);
    ASSERT_OK(weft_space_unlink(odd));
    weft_space_free(s);
    xp_end(&g);
}

/* ---- NULL arguments ------------------------------------------------------------------------- */

TEST_TIMEOUT(space_null_arguments, 20000) {
    xp_guard g;
    xp_begin(&g);
    char name[64];
    xp_name(name, sizeof name, "nulls");
    weft_space *s = NULL;
    ASSERT_STATUS(weft_space_default(NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_space_create(NULL, MIB, &s), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_space_create(name, MIB, NULL), WEFT_NULL_ARGUMENT);
    ASSERT(!xp_shm_exists(name));
    ASSERT_STATUS(weft_space_open(NULL, &s), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_space_unlink(NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_space_from_fd(0, NULL), WEFT_NULL_ARGUMENT);
    size_t a = 0, b = 0;
    int32_t fd = -1;
    ASSERT_STATUS(weft_space_usage(NULL, &a, &b), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_space_participants(NULL, &a), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_space_fd(NULL, &fd), WEFT_NULL_ARGUMENT);
    ASSERT_NULL(weft_space_name(NULL));
    weft_space_free(NULL);
    ASSERT_OK(weft_space_sweep(NULL));

    s = create_space(name, MIB);
    ASSERT_STATUS(weft_space_open(name, NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_space_participants(s, NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_space_fd(s, NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_space_remove(s, NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_space_remove(NULL, NULL), WEFT_NULL_ARGUMENT);
    ASSERT_OK(weft_space_fd(s, &fd));
    ASSERT(fd >= 0);
    ASSERT_EQ(xp_participants(s), 1);

    for (size_t i = 0; i < N_KINDS; i++) {
        const kind_ops *k = &KINDS[i];
        void *o = NULL;
        uint8_t tok[WEFT_TOKEN_MAX];
        size_t len = 0;
        ASSERT_KIND_STATUS(k, k->open(s, NULL, &o), WEFT_NULL_ARGUMENT);
        ASSERT_KIND_STATUS(k, k->token(NULL, tok, sizeof tok, &len), WEFT_NULL_ARGUMENT);
        ASSERT_KIND_STATUS(k, k->from_token(NULL, 40, &o), WEFT_NULL_ARGUMENT);
        ASSERT_KIND_STATUS(k, k->create(s, "x", &o), WEFT_OK);
        ASSERT_KIND_STATUS(k, k->token(o, tok, sizeof tok, NULL), WEFT_NULL_ARGUMENT);
        ASSERT_KIND_STATUS(k, k->token(o, NULL, sizeof tok, &len), WEFT_NULL_ARGUMENT);
        ASSERT_KIND_STATUS(k, k->token(o, tok, sizeof tok, &len), WEFT_OK);
        k->release(o);
        k->release(NULL);
        ASSERT_OK(weft_space_remove(s, "x"));
    }
    /* The out-pointer of each creator and opener. */
    uint8_t tok[WEFT_TOKEN_MAX] = {0};
    ASSERT_STATUS(weft_lock_new_in(s, NULL, NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_lock_open(s, "x", NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_lock_from_token(tok, 40, NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_rlock_new_in(s, NULL, NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_rlock_open(s, "x", NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_rlock_from_token(tok, 40, NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_semaphore_new_in(s, NULL, 1, true, NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_semaphore_open(s, "x", NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_semaphore_from_token(tok, 40, NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_event_new_in(s, NULL, NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_event_open(s, "x", NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_event_from_token(tok, 40, NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_condition_new_in(s, NULL, NULL, NULL, NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_condition_open(s, "x", NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_condition_from_token(tok, 40, NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_condition_new_with_lock(NULL, NULL), WEFT_NULL_ARGUMENT);
    weft_condition *c = NULL;
    ASSERT_STATUS(weft_condition_new_with_lock(NULL, &c), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_condition_new_with_rlock(NULL, &c), WEFT_NULL_ARGUMENT);
    ASSERT_NULL(c);
    ASSERT_STATUS(weft_barrier_new_in(s, NULL, 2, NULL, NULL, NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_barrier_open(s, "x", NULL, NULL, NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_barrier_from_token(tok, 40, NULL, NULL, NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_array_new_in(s, NULL, 'i', 1, NULL, true, NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_array_open(s, "x", NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_array_from_token(tok, 40, NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_lock_mark_consistent(NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_rlock_mark_consistent(NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_condition_mark_consistent(NULL), WEFT_NULL_ARGUMENT);
    ASSERT_STATUS(weft_array_mark_consistent(NULL), WEFT_NULL_ARGUMENT);
    /* Nothing was created by the failed calls. */
    size_t unused_before = 0, unused_after = 0;
    ASSERT_OK(weft_space_usage(s, NULL, &unused_before));
    ASSERT_STATUS(weft_event_new_in(s, "x", NULL), WEFT_NULL_ARGUMENT);
    weft_event *e = NULL;
    ASSERT_STATUS(weft_event_open(s, "x", &e), WEFT_NOT_FOUND);
    ASSERT_OK(weft_space_usage(s, NULL, &unused_after));
    ASSERT_UEQ(unused_after, unused_before);

    ASSERT_OK(weft_space_unlink(name));
    weft_space_free(s);
    xp_end(&g);
}

/* ---- tokens ---------------------------------------------------------------------------------- */

TEST_TIMEOUT(space_tokens, 20000) {
    xp_guard g;
    xp_begin(&g);
    char name[64];
    xp_name(name, sizeof name, "tok");
    weft_space *named = create_space(name, MIB);
    uint64_t rng = 0x5eed1234abcdULL;
    for (size_t i = 0; i < N_KINDS; i++) {
        const kind_ops *k = &KINDS[i];
        for (int sp = 0; sp < 2; sp++) {
            weft_space *where = sp ? named : NULL;
            size_t want = sp ? 40 + strlen(name) : 40;
            void *o = NULL, *t = NULL;
            ASSERT_KIND_STATUS(k, k->create(where, NULL, &o), WEFT_OK);
            uint8_t tok[WEFT_TOKEN_MAX + 8];
            size_t len = 0;
            /* Too small: the needed size is reported, nothing else. */
            ASSERT_KIND_STATUS(k, k->token(o, NULL, 0, &len), WEFT_BUFFER_TOO_SMALL);
            ASSERT_UEQ(len, want);
            len = 0;
            memset(tok, 0xAA, sizeof tok);
            ASSERT_KIND_STATUS(k, k->token(o, tok, want - 1, &len), WEFT_BUFFER_TOO_SMALL);
            ASSERT_UEQ(len, want);
            ASSERT_EQ(tok[0], 0xAA);
            ASSERT_KIND_STATUS(k, k->token(o, tok, want, &len), WEFT_OK);
            ASSERT_UEQ(len, want);
            ASSERT_EQ(tok[want], 0xAA); /* nothing written past the token */
            ASSERT_KIND_STATUS(k, k->token(o, tok, WEFT_TOKEN_MAX, &len), WEFT_OK);
            ASSERT_UEQ(len, want);

            /* Round trip: the same object. */
            ASSERT_KIND_STATUS(k, k->from_token(tok, len, &t), WEFT_OK);
            uint8_t tok2[WEFT_TOKEN_MAX];
            size_t len2 = 0;
            ASSERT_KIND_STATUS(k, k->token(t, tok2, sizeof tok2, &len2), WEFT_OK);
            ASSERT_UEQ(len2, len);
            ASSERT_EQ(memcmp(tok, tok2, len), 0);
            k->release(t);

            /* Another kind's opener refuses it. */
            for (size_t j = 0; j < N_KINDS; j++) {
                if (j == i) continue;
                t = NULL;
                ASSERT_KIND_STATUS(&KINDS[j], KINDS[j].from_token(tok, len, &t), WEFT_INVALID_ARGUMENT);
                ASSERT_NULL(t);
            }
            /* Truncated, extended, empty, garbage. */
            ASSERT_KIND_STATUS(k, k->from_token(tok, len - 1, &t), WEFT_INVALID_ARGUMENT);
            ASSERT_KIND_STATUS(k, k->from_token(tok, 39, &t), WEFT_INVALID_ARGUMENT);
            ASSERT_KIND_STATUS(k, k->from_token(tok, 4, &t), WEFT_INVALID_ARGUMENT);
            ASSERT_KIND_STATUS(k, k->from_token(tok, 0, &t), WEFT_INVALID_ARGUMENT);
            ASSERT_KIND_STATUS(k, k->from_token(NULL, 0, &t), WEFT_INVALID_ARGUMENT);
            tok[len] = 'x';
            ASSERT_KIND_STATUS(k, k->from_token(tok, len + 1, &t), WEFT_INVALID_ARGUMENT);
            uint8_t bad[WEFT_TOKEN_MAX];
            memcpy(bad, tok, len);
            bad[0] ^= 0x20; /* magic */
            ASSERT_KIND_STATUS(k, k->from_token(bad, len, &t), WEFT_INVALID_ARGUMENT);
            memcpy(bad, tok, len);
            bad[4] = 2; /* version */
            ASSERT_KIND_STATUS(k, k->from_token(bad, len, &t), WEFT_INVALID_ARGUMENT);
            memcpy(bad, tok, len);
            bad[5] = (uint8_t)!bad[5]; /* named flag disagrees with the name's length */
            ASSERT_KIND_STATUS(k, k->from_token(bad, len, &t), WEFT_INVALID_ARGUMENT);
            for (int r = 0; r < 50; r++) {
                size_t n = (size_t)(xp_rand(&rng) % sizeof bad);
                for (size_t b = 0; b < n; b++) bad[b] = (uint8_t)xp_rand(&rng);
                ASSERT_KIND_STATUS(k, k->from_token(bad, n, &t), WEFT_INVALID_ARGUMENT);
            }
            /* A well-formed token of a space this process does not have. */
            memcpy(bad, tok, len);
            for (int b = 16; b < 24; b++) bad[b] ^= 0x5a;
            /* (For the named space, the name is opened and found to have another uid.) */
            ASSERT_KIND_STATUS(k, k->from_token(bad, len, &t), WEFT_NOT_FOUND);
            weft_status st;
            /* A forged offset or serial within a reachable space. */
            memcpy(bad, tok, len);
            bad[32] ^= 0x01;
            st = k->from_token(bad, len, &t);
            if (st != WEFT_NOT_FOUND && st != WEFT_CORRUPTED)
                FAIL_AT("%s: forged serial gave %s", k->kind, weft_status_name(st));
            memcpy(bad, tok, len);
            bad[25] ^= 0x10;
            st = k->from_token(bad, len, &t);
            if (st != WEFT_NOT_FOUND && st != WEFT_CORRUPTED && st != WEFT_INVALID_ARGUMENT)
                FAIL_AT("%s: forged offset gave %s", k->kind, weft_status_name(st));
            ASSERT_NULL(t);

            /* Freed: the last handle of an unnamed object frees it. */
            k->release(o);
            ASSERT_KIND_STATUS(k, k->from_token(tok, len, &t), WEFT_NOT_FOUND);
            ASSERT_NULL(t);
        }
        /* A private object has no token (arrays are always shared). */
        void *p = NULL;
        if (k->private_new(&p) == WEFT_OK) {
            uint8_t tok[WEFT_TOKEN_MAX];
            size_t len = 12345;
            ASSERT_KIND_STATUS(k, k->token(p, tok, sizeof tok, &len), WEFT_INVALID_STATE);
            k->release(p);
        }
    }

    /* A named object is freed once its name is removed and its last handle freed. */
    weft_lock *l = NULL, *t = NULL;
    ASSERT_OK(weft_lock_new_in(named, "n", &l));
    uint8_t tok[WEFT_TOKEN_MAX];
    size_t len = 0;
    ASSERT_OK(weft_lock_token(l, tok, sizeof tok, &len));
    weft_lock_free(l);
    ASSERT_OK(weft_lock_from_token(tok, len, &t)); /* the name keeps it */
    weft_lock_free(t);
    ASSERT_OK(weft_space_remove(named, "n"));
    ASSERT_STATUS(weft_lock_from_token(tok, len, &t), WEFT_NOT_FOUND);

    /* A token of a space re-created under the same name designates nothing. */
    ASSERT_OK(weft_lock_new_in(named, NULL, &l));
    ASSERT_OK(weft_lock_token(l, tok, sizeof tok, &len));
    weft_lock_free(l);
    ASSERT_OK(weft_space_unlink(name));
    weft_space_free(named);
    named = create_space(name, MIB);
    t = NULL;
    ASSERT_STATUS(weft_lock_from_token(tok, len, &t), WEFT_NOT_FOUND);
    ASSERT_NULL(t);
    ASSERT_OK(weft_space_unlink(name));
    /* And a token of a named space that no longer exists at all. */
    weft_space_free(named);
    ASSERT_STATUS(weft_lock_from_token(tok, len, &t), WEFT_NOT_FOUND);
    xp_end(&g);
}

static void child_uses_parent_tokens(void *arg) {
    uint8_t *tok = arg; /* [0]: length, then the token */
    weft_rlock *r = NULL;
    ASSERT_OK(weft_rlock_from_token(tok + 1, tok[0], &r));
    ASSERT_STATUS(weft_rlock_acquire(r, 0), WEFT_WOULD_BLOCK); /* the parent holds it */
    ASSERT(!weft_rlock_is_owned(r));
    weft_rlock_free(r);
}

TEST_TIMEOUT(space_token_from_parent_used_in_child, 20000) {
    xp_guard g;
    xp_begin(&g);
    uint8_t *tok = xp_shared(WEFT_TOKEN_MAX + 1);
    weft_rlock *r = NULL;
    ASSERT_OK(weft_rlock_new_in(NULL, NULL, &r));
    size_t len = 0;
    ASSERT_OK(weft_rlock_token(r, tok + 1, WEFT_TOKEN_MAX, &len));
    tok[0] = (uint8_t)len;
    ASSERT_OK(weft_rlock_acquire(r, 0));
    xp_wait_ok(xp_fork(child_uses_parent_tokens, tok));
    ASSERT_OK(weft_rlock_release(r));
    weft_rlock_free(r);
    xp_end(&g);
}

/* ---- a live participant in another process ----------------------------------------------- */

/* A child that keeps a named space open (a live participant, so that no sweep, by any process,
 * removes the space while the test damages it) until released or killed. */
typedef struct {
    char name[64];
    atomic_int ready, release;
    pid_t pid;
} holder;

static void holder_main(void *arg) {
    holder *h = arg;
    weft_space *s = open_space(h->name);
    atomic_store(&h->ready, 1);
    while (!atomic_load(&h->release)) runner_sleep_ms(1);
    weft_space_free(s);
}

static holder *hold(const char *name) {
    holder *h = xp_shared(sizeof *h);
    snprintf(h->name, sizeof h->name, "%s", name);
    h->pid = xp_fork(holder_main, h);
    xp_wait_count(&h->ready, 1);
    return h;
}

/* Lets the holder free its handle and exit. */
static void unhold(holder *h) {
    atomic_store(&h->release, 1);
    xp_wait_ok(h->pid);
}

/* ---- security of named spaces ---------------------------------------------------------------- */

TEST_TIMEOUT(space_symbolic_links_are_never_followed, 20000) {
    xp_guard g;
    xp_begin(&g);
    char real[64], link_name[64], dangling[64], real_path[128], link_path[128], dangling_path[128];
    char target[128];
    xp_name(real, sizeof real, "real");
    xp_name(link_name, sizeof link_name, "link");
    xp_name(dangling, sizeof dangling, "dangling");
    shm_path(real_path, sizeof real_path, real);
    shm_path(link_path, sizeof link_path, link_name);
    shm_path(dangling_path, sizeof dangling_path, dangling);
    snprintf(target, sizeof target, "/tmp/ct%d-link-target", (int)getpid());

    /* A link to a perfectly valid space is still refused. */
    weft_space *s = create_space(real, 64 * KIB);
    ASSERT_EQ(symlink(real_path, link_path), 0);
    weft_space *o = NULL;
    ASSERT_STATUS(weft_space_open(link_name, &o), WEFT_INVALID_ARGUMENT);
    ASSERT_CONTAINS(weft_last_error_message(), "link");
    ASSERT_NULL(o);
    ASSERT_STATUS(weft_space_create(link_name, 64 * KIB, &o), WEFT_EXISTS);
    weft_shm *m = NULL;
    ASSERT_STATUS(weft_shm_open(link_name, &m), WEFT_INVALID_ARGUMENT);
    ASSERT_STATUS(weft_shm_create(link_name, 4096, &m), WEFT_EXISTS);
    ASSERT_NULL(m);
    struct stat st;
    ASSERT_EQ(stat(real_path, &st), 0);
    ASSERT_EQ(st.st_size, (off_t)(64 * KIB)); /* untouched */
    ASSERT_EQ(xp_participants(s), 1);

    /* A dangling link: create never creates its target. */
    ASSERT_EQ(symlink(target, dangling_path), 0);
    ASSERT_STATUS(weft_space_create(dangling, 64 * KIB, &o), WEFT_EXISTS);
    ASSERT_STATUS(weft_shm_create(dangling, 4096, &m), WEFT_EXISTS);
    ASSERT_STATUS(weft_space_open(dangling, &o), WEFT_INVALID_ARGUMENT);
    ASSERT(lstat(target, &st) != 0 && errno == ENOENT);

    /* The sweep leaves links alone. */
    ASSERT_OK(weft_space_sweep(NULL));
    ASSERT(xp_shm_exists(link_name) && xp_shm_exists(dangling));

    ASSERT_EQ(unlink(link_path), 0);
    ASSERT_EQ(unlink(dangling_path), 0);
    ASSERT_OK(weft_space_unlink(real));
    weft_space_free(s);
    xp_end(&g);
}

/* True when this process maps a file whose path contains `needle`. */
static bool mapped(const char *needle) {
    FILE *f = fopen("/proc/self/maps", "r");
    ASSERT_NOT_NULL(f);
    char line[1024];
    bool found = false;
    while (fgets(line, sizeof line, f)) found = found || strstr(line, needle) != NULL;
    fclose(f);
    return found;
}

TEST_TIMEOUT(space_wrong_mode_owner_or_type_is_refused, 20000) {
    xp_guard g;
    xp_begin(&g);
    char name[64], path[128];
    xp_name(name, sizeof name, "mode");
    shm_path(path, sizeof path, name);
    weft_space *created = create_space(name, 64 * KIB);
    holder *h = hold(name);
    weft_space_free(created); /* the space stays (the holder uses it), unmapped here */
    ASSERT(!mapped(path));

    const mode_t modes[] = {0644, 0640, 0604, 0700, 0400, 0666, 04600, 01600};
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) {
        ASSERT_EQ(chmod(path, modes[i]), 0);
        weft_space *o = NULL;
        weft_status st = weft_space_open(name, &o);
        if (st != WEFT_INVALID_ARGUMENT)
            FAIL_AT("mode %04o: weft_space_open returned %s", (unsigned)modes[i], weft_status_name(st));
        ASSERT_CONTAINS(weft_last_error_message(), "mode");
        ASSERT_NULL(o);
        weft_shm *m = NULL;
        ASSERT_STATUS(weft_shm_open(name, &m), WEFT_INVALID_ARGUMENT);
        ASSERT(!mapped(path)); /* refused before mapping */
    }
    ASSERT_EQ(chmod(path, 0600), 0);
    weft_space *o = open_space(name);
    weft_space_free(o);

    /* Another owner (we are root: give it away). */
    int fd = open(path, O_RDWR | O_NOFOLLOW);
    ASSERT(fd >= 0);
    if (fchown(fd, 65534, 65534) == 0) {
        ASSERT_STATUS(weft_space_open(name, &o), WEFT_INVALID_ARGUMENT);
        ASSERT_CONTAINS(weft_last_error_message(), "owned by");
        weft_shm *m = NULL;
        ASSERT_STATUS(weft_shm_open(name, &m), WEFT_INVALID_ARGUMENT);
        ASSERT(!mapped(path));
        /* A sweep by the caller leaves another user's space alone. */
        ASSERT_OK(weft_space_sweep(NULL));
        ASSERT(xp_shm_exists(name));
        ASSERT_EQ(fchown(fd, geteuid(), getegid()), 0);
        o = open_space(name);
        weft_space_free(o);
    } else {
        ASSERT_EQ(errno, EPERM); /* not root: nothing to give away */
    }
    close(fd);
    unhold(h);
    ASSERT_OK(weft_space_unlink(name));

    /* Not a regular file: a directory, a FIFO. */
    o = NULL;
    ASSERT_EQ(mkdir(path, 0600), 0);
    ASSERT_STATUS(weft_space_open(name, &o), WEFT_INVALID_ARGUMENT);
    ASSERT_STATUS(weft_space_create(name, 64 * KIB, &o), WEFT_EXISTS);
    ASSERT_EQ(rmdir(path), 0);
    ASSERT_EQ(mkfifo(path, 0600), 0);
    ASSERT_STATUS(weft_space_open(name, &o), WEFT_INVALID_ARGUMENT);
    weft_shm *m = NULL;
    ASSERT_STATUS(weft_shm_open(name, &m), WEFT_INVALID_ARGUMENT);
    ASSERT_EQ(unlink(path), 0);
    ASSERT_NULL(o);
    xp_end(&g);
}

typedef struct {
    char parent_space[64];
    char parent_shm[64];
    char child_space[64];
    atomic_int step;
} other_user;

static void child_as_another_user(void *arg) {
    other_user *u = arg;
    ASSERT_EQ(setgid(65534), 0);
    ASSERT_EQ(setuid(65534), 0);
    ASSERT_EQ(geteuid(), 65534);
    weft_space *s = NULL;
    weft_status st = weft_space_open(u->parent_space, &s);
    if (st != WEFT_INVALID_ARGUMENT && st != WEFT_OS_ERROR)
        FAIL_AT("another user opened a 0600 space: %s", weft_status_name(st));
    ASSERT_NULL(s);
    weft_shm *m = NULL;
    st = weft_shm_open(u->parent_shm, &m);
    if (st != WEFT_INVALID_ARGUMENT && st != WEFT_OS_ERROR)
        FAIL_AT("another user opened a 0600 segment: %s", weft_status_name(st));
    ASSERT_NULL(m);
    /* Nor remove it (sticky /dev/shm), nor sweep it away. */
    ASSERT(weft_space_unlink(u->parent_space) != WEFT_OK);
    ASSERT_OK(weft_space_sweep(NULL));
    ASSERT(xp_shm_exists(u->parent_space));
    /* Its own space is its own. */
    s = create_space(u->child_space, 64 * KIB);
    weft_space_free(s);
}

TEST_TIMEOUT(space_another_user_cannot_open, 20000) {
    xp_guard g;
    xp_begin(&g);
    if (geteuid() != 0) {
        fprintf(stderr, "# skipped the second-user part: not root\n");
        xp_end(&g);
        return;
    }
    other_user *u = xp_shared(sizeof *u);
    xp_name(u->parent_space, sizeof u->parent_space, "mine");
    xp_name(u->parent_shm, sizeof u->parent_shm, "mine-shm");
    xp_name(u->child_space, sizeof u->child_space, "theirs");
    weft_space *s = create_space(u->parent_space, 64 * KIB);
    weft_shm *m = NULL;
    ASSERT_OK(weft_shm_create(u->parent_shm, 4096, &m));
    xp_wait_ok(xp_fork(child_as_another_user, u));
    ASSERT(xp_shm_exists(u->parent_space));
    ASSERT_EQ(xp_participants(s), 1);

    /* And the other user's space is refused here. */
    weft_space *o = NULL;
    ASSERT(xp_shm_exists(u->child_space));
    ASSERT_STATUS(weft_space_open(u->child_space, &o), WEFT_INVALID_ARGUMENT);
    ASSERT_OK(weft_space_unlink(u->child_space));

    ASSERT_OK(weft_shm_unlink(u->parent_shm));
    weft_shm_free(m);
    ASSERT_OK(weft_space_unlink(u->parent_space));
    weft_space_free(s);
    xp_end(&g);
}

/* ---- lifetime: participants and the sweep ---------------------------------------------------- */

static void child_creates_and_dies(void *arg) {
    const char *name = arg;
    weft_space *s = create_space(name, 64 * KIB);
    weft_lock *l = NULL;
    ASSERT_OK(weft_lock_new_in(s, "held", &l));
    ASSERT_OK(weft_lock_acquire(l, 0));
    raise(SIGKILL);
}

static void child_creates_and_exits(void *arg) {
    const char *name = arg;
    create_space(name, 64 * KIB); /* never freed: _exit leaves it "in use" by a dead process */
}

TEST_TIMEOUT(space_sweep_removes_spaces_of_dead_processes, 20000) {
    xp_guard g;
    xp_begin(&g);
    char killed[64], exited[64];
    xp_name(killed, sizeof killed, "killed");
    xp_name(exited, sizeof exited, "exited");
    xp_wait_killed(xp_fork(child_creates_and_dies, killed));
    xp_wait_ok(xp_fork(child_creates_and_exits, exited));
    /* (Another process's sweep may remove them too: count what is there just before.) */
    size_t present = (size_t)xp_shm_exists(killed) + (size_t)xp_shm_exists(exited);
    size_t removed = 0;
    ASSERT_OK(weft_space_sweep(&removed));
    ASSERT_UGE(removed, present);
    ASSERT(!xp_shm_exists(killed));
    ASSERT(!xp_shm_exists(exited));
    weft_space *s = NULL;
    ASSERT_STATUS(weft_space_open(killed, &s), WEFT_NOT_FOUND);
    xp_end(&g);
}

static void child_joins_and_dies(void *arg) {
    const char *name = arg;
    weft_space *s = open_space(name);
    ASSERT_EQ(xp_participants(s), 2);
    weft_event *e = NULL;
    ASSERT_OK(weft_event_open(s, "e", &e));
    ASSERT_OK(weft_event_set(e));
    raise(SIGKILL);
}

static void child_joins_and_exits(void *arg) {
    open_space((const char *)arg); /* and _exit without freeing it */
}

TEST_TIMEOUT(space_sweep_never_removes_a_space_with_a_live_participant, 30000) {
    xp_guard g;
    xp_begin(&g);
    char name[64];
    xp_name(name, sizeof name, "live");
    weft_space *s = create_space(name, 256 * KIB);
    weft_event *e = NULL;
    ASSERT_OK(weft_event_new_in(s, "e", &e));
    xp_wait_killed(xp_fork(child_joins_and_dies, name));
    ASSERT(weft_event_is_set(e));
    for (int i = 0; i < 3; i++) {
        ASSERT_OK(weft_space_sweep(NULL));
        ASSERT(xp_shm_exists(name));
    }
    ASSERT_EQ(xp_participants(s), 1); /* the dead child was found and removed */

    /* More dead participants than the table has slots: their slots are reclaimed. */
    for (int i = 0; i < 70; i++) xp_wait_ok(xp_fork(child_joins_and_exits, name));
    ASSERT_EQ(xp_participants(s), 1);
    ASSERT_OK(weft_space_sweep(NULL));
    ASSERT(xp_shm_exists(name));

    /* The creator's objects keep it a participant after its space handle is freed. */
    weft_space_free(s);
    ASSERT_OK(weft_space_sweep(NULL));
    ASSERT(xp_shm_exists(name));
    ASSERT_OK(weft_event_clear(e));
    /* Once the last handle goes, nobody uses it: the sweep removes it. */
    weft_event_free(e);
    size_t present = (size_t)xp_shm_exists(name), removed = 0;
    ASSERT_OK(weft_space_sweep(&removed));
    ASSERT_UGE(removed, present);
    ASSERT(!xp_shm_exists(name));
    xp_end(&g);
}

/* ---- corruption ------------------------------------------------------------------------------- */

/* Statuses a call on a damaged space may return. */
static bool damaged_ok(weft_status st) {
    return st == WEFT_OK || st == WEFT_CORRUPTED || st == WEFT_NOT_RECOVERABLE || st == WEFT_NOT_FOUND ||
           st == WEFT_INVALID_ARGUMENT || st == WEFT_NO_MEMORY || st == WEFT_EXISTS;
}

#define CHECK_DAMAGED(iter, expr, extra)                                                           \
    do {                                                                                           \
        weft_status st_ = (expr);                                                                  \
        if (!damaged_ok(st_) && !(extra))                                                          \
            FAIL_AT("fuzz iteration %d: %s returned %s (%s)", (iter), #expr, weft_status_name(st_), \
                    weft_last_error_message());                                                    \
        last = st_;                                                                                \
    } while (0)

/* Opens the space and uses everything in it; every call must give an allowed status. */
static int use_damaged_space(const char *name, int iter) {
    weft_status last = WEFT_OK;
    weft_space *s = NULL;
    CHECK_DAMAGED(iter, weft_space_open(name, &s), 0);
    if (last != WEFT_OK) return 0;
    size_t n = 0;
    CHECK_DAMAGED(iter, weft_space_participants(s, &n), 0);
    CHECK_DAMAGED(iter, weft_space_usage(s, &n, &n), 0);

    weft_lock *l = NULL;
    CHECK_DAMAGED(iter, weft_lock_open(s, "L", &l), 0);
    if (last == WEFT_OK) {
        CHECK_DAMAGED(iter, weft_lock_acquire(l, 0), st_ == WEFT_WOULD_BLOCK || st_ == WEFT_OWNER_DEAD);
        if (last == WEFT_OWNER_DEAD) (void)weft_lock_mark_consistent(l);
        if (last == WEFT_OK || last == WEFT_OWNER_DEAD) (void)weft_lock_release(l);
        uint8_t tok[WEFT_TOKEN_MAX];
        size_t len = 0;
        CHECK_DAMAGED(iter, weft_lock_token(l, tok, sizeof tok, &len), 0);
        weft_lock *t = NULL;
        if (last == WEFT_OK) CHECK_DAMAGED(iter, weft_lock_from_token(tok, len, &t), 0);
        weft_lock_free(t);
        weft_lock_free(l);
    }
    weft_event *e = NULL;
    CHECK_DAMAGED(iter, weft_event_open(s, "E", &e), 0);
    if (last == WEFT_OK) {
        (void)weft_event_is_set(e);
        CHECK_DAMAGED(iter, weft_event_wait(e, 0), st_ == WEFT_WOULD_BLOCK);
        weft_event_free(e);
    }
    weft_array *a = NULL;
    CHECK_DAMAGED(iter, weft_array_open(s, "A", &a), 0);
    if (last == WEFT_OK) {
        int64_t v = 0;
        size_t len = weft_array_len(a);
        CHECK_DAMAGED(iter, weft_array_load(a, 0, &v), 0);
        if (len > 0) CHECK_DAMAGED(iter, weft_array_fetch_add(a, len - 1, 1, NULL), 0);
        weft_array_free(a);
    }
    weft_semaphore *sem = NULL;
    CHECK_DAMAGED(iter, weft_semaphore_open(s, "S", &sem), 0);
    if (last == WEFT_OK) {
        CHECK_DAMAGED(iter, weft_semaphore_acquire(sem, 0), st_ == WEFT_WOULD_BLOCK);
        weft_semaphore_free(sem);
    }
    weft_condition *c = NULL;
    CHECK_DAMAGED(iter, weft_condition_open(s, "C", &c), 0);
    weft_condition_free(c);
    weft_barrier *b = NULL;
    CHECK_DAMAGED(iter, weft_barrier_open(s, "B", NULL, NULL, &b), 0);
    if (last == WEFT_OK) {
        (void)weft_barrier_parties(b);
        (void)weft_barrier_broken(b);
        weft_barrier_free(b);
    }
    /* New objects, named and unnamed, and their removal. */
    CHECK_DAMAGED(iter, weft_lock_new_in(s, NULL, &l), 0);
    if (last == WEFT_OK) weft_lock_free(l);
    CHECK_DAMAGED(iter, weft_event_new_in(s, "N", &e), 0);
    if (last == WEFT_OK) weft_event_free(e);
    CHECK_DAMAGED(iter, weft_space_remove(s, "N"), 0);
    CHECK_DAMAGED(iter, weft_space_remove(s, "L"), 0);
    CHECK_DAMAGED(iter, weft_space_participants(s, &n), 0);
    weft_space_free(s);
    return 1;
}

/* Makes a space with one object of each kind, named; returns the creator's space handle. */
static weft_space *make_fuzz_space(const char *name, size_t size) {
    weft_space *s = create_space(name, size);
    weft_lock *l = NULL;
    ASSERT_OK(weft_lock_new_in(s, "L", &l));
    weft_event *e = NULL;
    ASSERT_OK(weft_event_new_in(s, "E", &e));
    weft_array *a = NULL;
    int64_t init[4] = {1, 2, 3, 4};
    ASSERT_OK(weft_array_new_in(s, "A", 'q', 4, init, true, &a));
    weft_semaphore *sem = NULL;
    ASSERT_OK(weft_semaphore_new_in(s, "S", 2, true, &sem));
    weft_condition *c = NULL;
    ASSERT_OK(weft_condition_new_in(s, "C", l, NULL, &c));
    weft_barrier *b = NULL;
    ASSERT_OK(weft_barrier_new_in(s, "B", 3, NULL, NULL, &b));
    weft_barrier_free(b);
    weft_condition_free(c);
    weft_semaphore_free(sem);
    weft_array_free(a);
    weft_event_free(e);
    weft_lock_free(l);
    return s;
}

TEST_TIMEOUT(space_fuzzed_header_never_crashes_or_hangs, 60000) {
    xp_guard g;
    xp_begin(&g);
    char name[64], path[128];
    xp_name(name, sizeof name, "fuzz");
    shm_path(path, sizeof path, name);
    const size_t size = 256 * KIB, fuzzed = 8 * KIB, kept = 64 * KIB;
    weft_space *created = make_fuzz_space(name, size);
    holder *h = hold(name);
    weft_space_free(created);

    int fd = open(path, O_RDWR | O_NOFOLLOW);
    ASSERT(fd >= 0);
    uint8_t *map = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    ASSERT(map != MAP_FAILED);
    /* Every object lies in the first 64 KiB: saving and restoring that undoes each round. */
    uint64_t next = 0;
    memcpy(&next, map + 48, 8);
    ASSERT(next > 7000 && next <= kept);
    uint8_t *saved = malloc(kept);
    ASSERT_NOT_NULL(saved);
    memcpy(saved, map, kept);
    ASSERT_EQ(use_damaged_space(name, -1), 1); /* intact, it works */

    uint64_t rng = 0x243F6A8885A308D3ULL;
    const uint64_t interesting[] = {0, 1, 2, 63, 64, 4096, 7000, 7040, size - 64, size, size + 64, UINT32_MAX,
                                    (uint64_t)INT64_MAX, UINT64_MAX, next, next + 64};
    int opened = 0;
    const int iterations = 2000;
    for (int iter = 0; iter < iterations; iter++) {
        memcpy(map, saved, kept);
        int mode = iter % 4;
        int changes = mode == 0 ? 1 : 1 + (int)(xp_rand(&rng) % 16);
        for (int c = 0; c < changes; c++) {
            size_t off = (size_t)(xp_rand(&rng) % fuzzed);
            if (mode == 2) off &= ~(size_t)7;
            /* Not the header's lock word (offset 32..48): a live-looking holder would make
             * every call wait out the lock's 10 s timeout. */
            if (off + 8 > 32 && off < 48) continue;
            if (mode == 2) {
                uint64_t v = interesting[xp_rand(&rng) % (sizeof interesting / sizeof interesting[0])];
                memcpy(map + off, &v, 8);
            } else if (mode == 3) {
                size_t run = 1 + (size_t)(xp_rand(&rng) % 64);
                for (size_t b = 0; b < run && off + b < fuzzed; b++)
                    if (off + b < 32 || off + b >= 48) map[off + b] = (uint8_t)xp_rand(&rng);
            } else {
                if (off < 32 || off >= 48) map[off] = (uint8_t)xp_rand(&rng);
            }
        }
        opened += use_damaged_space(name, iter);
    }
    /* Some rounds hit fields that matter, some did not. */
    ASSERT_GT(opened, 0);
    ASSERT_LT(opened, iterations);
    memcpy(map, saved, kept);
    ASSERT_EQ(use_damaged_space(name, -2), 1);
    free(saved);
    munmap(map, size);
    close(fd);
    unhold(h);
    ASSERT_EQ(xp_participants(NULL), g.default_participants);
    ASSERT_OK(weft_space_unlink(name));
    xp_end(&g);
}

/* Writes `len` bytes at `off` of the space's file. */
static void poke(const char *name, off_t off, const void *data, size_t len) {
    char path[128];
    shm_path(path, sizeof path, name);
    int fd = open(path, O_RDWR | O_NOFOLLOW);
    ASSERT(fd >= 0);
    ASSERT_EQ(pwrite(fd, data, len, off), (ssize_t)len);
    close(fd);
}

TEST_TIMEOUT(space_damaged_header_is_corrupted_and_never_swept, 20000) {
    xp_guard g;
    xp_begin(&g);
    char name[64];
    xp_name(name, sizeof name, "damaged");
    struct {
        off_t off;
        size_t len;
        uint64_t value;
    } damage[] = {
        {0, 8, 0},                 /* magic */
        {0, 1, 'X'},               /* magic, one byte */
        {8, 4, 2},                 /* version */
        {12, 4, 64},               /* header size */
        {16, 8, 1 << 20},          /* total size */
        {24, 4, 0},                /* ready: "not finished creating" */
        {48, 8, 0},                /* next: below the data area */
        {48, 8, UINT64_MAX},       /* next: beyond the end */
    };
    for (size_t i = 0; i < sizeof damage / sizeof damage[0]; i++) {
        weft_space *created = make_fuzz_space(name, 128 * KIB);
        poke(name, damage[i].off, &damage[i].value, damage[i].len);
        weft_space *s = NULL;
        weft_status st = weft_space_open(name, &s);
        if (st != WEFT_CORRUPTED)
            FAIL_AT("damage %zu: weft_space_open returned %s, expected WEFT_CORRUPTED", i, weft_status_name(st));
        ASSERT_NULL(s);
        weft_space_free(created); /* no participant left */
        /* A space that fails validation is reported, not judged: never swept. */
        ASSERT_OK(weft_space_sweep(NULL));
        ASSERT(xp_shm_exists(name));
        ASSERT_OK(weft_space_unlink(name));
    }
    xp_end(&g);
}

TEST_TIMEOUT(space_truncated_is_corrupted_not_sigbus, 20000) {
    xp_guard g;
    xp_begin(&g);
    char name[64], path[128];
    xp_name(name, sizeof name, "trunc");
    shm_path(path, sizeof path, name);
    const off_t sizes[] = {0, 1, 4096, 7000, 8192, 64 * 1024, 512 * 1024 - 1};
    /* Truncated while another process has it open (and is killed afterwards: touching its
     * mapping now could raise SIGBUS there). */
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        weft_space *created = make_fuzz_space(name, 512 * KIB);
        holder *h = hold(name);
        weft_space_free(created);
        ASSERT_EQ(truncate(path, sizes[i]), 0);
        weft_space *s = NULL;
        weft_status st = weft_space_open(name, &s);
        if (st != WEFT_CORRUPTED)
            FAIL_AT("truncated to %ld bytes: weft_space_open returned %s", (long)sizes[i], weft_status_name(st));
        ASSERT_NULL(s);
        xp_kill(h->pid);
        ASSERT_OK(weft_space_unlink(name));
    }
    /* Grown: the size no longer matches the header either. */
    weft_space *created = make_fuzz_space(name, 128 * KIB);
    ASSERT_EQ(truncate(path, 256 * 1024), 0);
    weft_space *o = NULL;
    ASSERT_STATUS(weft_space_open(name, &o), WEFT_CORRUPTED);
    ASSERT_OK(weft_space_unlink(name));
    weft_space_free(created);
    xp_end(&g);
}
