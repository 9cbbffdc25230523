/* A C program sharing weft objects with Python by name (used by test_spaces.py).
 *
 *   c_peer SPACE LOCK VALUE ATOMIC DICT N   opens the named space SPACE, the named lock LOCK,
 *                                           the named one-item int64 arrays VALUE and ATOMIC
 *                                           and the named dict DICT; N times: under LOCK,
 *                                           VALUE += 1 (get then set) and DICT["count"] += 1
 *                                           (a decimal string), then ATOMIC += 1 with the
 *                                           lock-free fetch_add; at the end it sets
 *                                           DICT["c-peer-<pid>"] = "done".
 *   c_peer SPACE LOCK VALUE ATOMIC DICT die acquires LOCK, prints "locked", SIGKILLs itself.
 *
 * Exit status 0 on success; on a weft error prints the status name and message and exits 1.
 */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "weft.h"

static void check(weft_status st, const char *what) {
    if (st != WEFT_OK) {
        fprintf(stderr, "c_peer: %s: %s: %s\n", what, weft_status_name(st), weft_last_error_message());
        exit(1);
    }
}

int main(int argc, char **argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: c_peer SPACE LOCK VALUE ATOMIC DICT (N | die)\n");
        return 2;
    }
    weft_space *space = NULL;
    weft_lock *lock = NULL;
    weft_array *value = NULL;
    weft_array *atomic = NULL;
    weft_dict *dict = NULL;
    check(weft_space_open(argv[1], &space), "weft_space_open");
    check(weft_lock_open(space, argv[2], &lock), "weft_lock_open");
    check(weft_array_open(space, argv[3], &value), "weft_array_open(value)");
    check(weft_array_open(space, argv[4], &atomic), "weft_array_open(atomic)");
    check(weft_dict_open(space, argv[5], &dict), "weft_dict_open");
    if (weft_array_typecode(value) != 'q' || weft_array_len(value) != 1 || weft_array_itemsize(value) != 8) {
        fprintf(stderr, "c_peer: VALUE is not one 'q' item\n");
        return 1;
    }

    if (strcmp(argv[6], "die") == 0) {
        check(weft_lock_acquire(lock, WEFT_FOREVER), "weft_lock_acquire");
        printf("locked\n");
        fflush(stdout);
        raise(SIGKILL);
        return 1; /* not reached */
    }

    static const char count_key[] = "count";
    long n = strtol(argv[6], NULL, 10);
    for (long i = 0; i < n; i++) {
        weft_status st = weft_lock_acquire(lock, WEFT_FOREVER);
        check(st, "weft_lock_acquire");
        int64_t v = 0;
        check(weft_array_get(value, 0, &v, sizeof v), "weft_array_get");
        v += 1;
        check(weft_array_set(value, 0, &v, sizeof v), "weft_array_set");
        char text[32];
        size_t len = 0;
        check(weft_dict_get_into(dict, count_key, strlen(count_key), text, sizeof text - 1, &len), "weft_dict_get_into");
        text[len] = '\0';
        int written = snprintf(text, sizeof text, "%lld", strtoll(text, NULL, 10) + 1);
        check(weft_dict_set(dict, count_key, strlen(count_key), text, (size_t)written), "weft_dict_set");
        check(weft_lock_release(lock), "weft_lock_release");
        check(weft_array_fetch_add(atomic, 0, 1, NULL), "weft_array_fetch_add");
    }

    char key[64];
    int key_len = snprintf(key, sizeof key, "c-peer-%ld", (long)getpid());
    check(weft_dict_set(dict, key, (size_t)key_len, "done", 4), "weft_dict_set");

    weft_dict_free(dict);
    weft_array_free(atomic);
    weft_array_free(value);
    weft_lock_free(lock);
    weft_space_free(space);
    return 0;
}
