/* tests for reconciler/lazy_lib.c and its users: libgit2, libevent and
 * libcurl are not in the process until what needs them is first used, and
 * a library or function that is not there is a clear error */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "git_common.h"
#include "compute/http_client.h"
#include "lazy_lib.h"
#include "metrics.h"

/* Whether a file whose name starts with prefix is mapped in this process. */
static bool mapped(const char *prefix)
{
    FILE *f = fopen("/proc/self/maps", "r");
    assert_non_null(f);
    char line[4096];
    bool found = false;
    while (!found && fgets(line, sizeof(line), f)) {
        const char *slash = strrchr(line, '/');
        found = slash && !strncmp(slash + 1, prefix, strlen(prefix));
    }
    fclose(f);
    return found;
}

static void libraries_open_when_first_used(void **state)
{
    /* the order matters: nothing below may have loaded them before */
    assert_false(mapped("libgit2.so"));
    assert_false(mapped("libevent"));
    assert_false(mapped("libcurl.so"));
    /* with them out, what they pull in is out too */
    assert_false(mapped("libcrypto.so"));
    assert_false(mapped("libgnutls.so"));

    assert_int_equal(git_common_ready(), 0);
    assert_true(mapped("libgit2.so"));
    /* a libgit2 call through the table */
    const char *hex = "0123456789abcdef0123456789abcdef01234567";
    git_oid oid;
    assert_int_equal(git_oid_fromstrn(&oid, hex, strlen(hex)), 0);
    char text[GIT_OID_HEXSZ + 1];
    assert_string_equal(git_oid_tostr(text, sizeof(text), &oid), hex);
    assert_false(mapped("libevent"));

    sd_event *event = NULL;
    assert_true(sd_event_new(&event) >= 0);
    struct metrics *m = NULL;
    char err[256];
    assert_int_equal(metrics_open("127.0.0.1:0", &m, err, sizeof(err)), 0);
    assert_true(mapped("libevent"));
    assert_true(metrics_port(m) > 0);
    metrics_free(m);
    /* the metrics endpoint is plain HTTP: no TLS library comes with it */
    assert_false(mapped("libgnutls.so"));
    assert_false(mapped("libcurl.so"));

    struct http_client *client = http_client_new(event);
    assert_non_null(client);
    assert_true(mapped("libcurl.so"));
    http_client_free(client);
    sd_event_unref(event);
}

static void missing_library(void **state)
{
    void *slot = NULL;
    const struct lazy_symbol symbols[] = {{"getpid", &slot}};
    char err[256];
    assert_int_equal(lazy_lib_open("librolld-no-such-library.so.7", symbols, 1, err, sizeof(err)),
                     -ENOENT);
    assert_non_null(strstr(err, "cannot load librolld-no-such-library.so.7"));
    assert_null(slot);
}

static void missing_function(void **state)
{
    void *first = NULL, *second = NULL;
    const struct lazy_symbol symbols[] = {{"getpid", &first},
                                          {"rolld_no_such_function", &second}};
    char err[256];
    assert_int_equal(lazy_lib_open("libc.so.6", symbols, 2, err, sizeof(err)), -ENOENT);
    assert_non_null(strstr(err, "libc.so.6 has no rolld_no_such_function"));
    assert_null(second);
}

static void fills_slots(void **state)
{
    void *slot = NULL;
    const struct lazy_symbol symbols[] = {{"getpid", &slot}};
    char err[256] = "left over";
    assert_int_equal(lazy_lib_open("libc.so.6", symbols, 1, err, sizeof(err)), 0);
    assert_string_equal(err, "");
    assert_non_null(slot);
    pid_t (*found)(void) = (pid_t(*)(void))slot;
    assert_int_equal(found(), getpid());
}

static int init_calls;
static int init_result;

static int counting_init(char *err, size_t err_size)
{
    init_calls++;
    if (init_result < 0)
        snprintf(err, err_size, "set-up refused");
    return init_result;
}

/* the first load decides: init runs once, an error is given back as it was */
static void load_is_tried_once(void **state)
{
    void *slot = NULL;
    struct lazy_symbol filled[] = {{"getpid", &slot}};
    char err[256] = "left over";
    struct lazy_lib libc = LAZY_LIB("libc.so.6", filled, counting_init);
    init_calls = 0;
    init_result = 0;
    assert_int_equal(lazy_lib_load(&libc, err, sizeof(err)), 0);
    assert_string_equal(err, "");
    assert_non_null(slot);
    assert_int_equal(lazy_lib_load(&libc, err, sizeof(err)), 0);
    assert_int_equal(init_calls, 1);

    struct lazy_lib refused = LAZY_LIB("libc.so.6", filled, counting_init);
    init_calls = 0;
    init_result = -EIO;
    assert_int_equal(lazy_lib_load(&refused, err, sizeof(err)), -EIO);
    assert_string_equal(err, "set-up refused");
    init_result = 0; /* not asked again */
    assert_int_equal(lazy_lib_load(&refused, err, sizeof(err)), -EIO);
    assert_string_equal(err, "set-up refused");
    assert_int_equal(init_calls, 1);

    struct lazy_lib missing = LAZY_LIB("librolld-no-such-library.so.7", filled, counting_init);
    init_calls = 0;
    for (int i = 0; i < 2; i++) {
        memset(err, 0, sizeof(err));
        assert_int_equal(lazy_lib_load(&missing, err, sizeof(err)), -ENOENT);
        assert_non_null(strstr(err, "cannot load librolld-no-such-library.so.7"));
    }
    assert_int_equal(init_calls, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(libraries_open_when_first_used),
        cmocka_unit_test(missing_library),
        cmocka_unit_test(missing_function),
        cmocka_unit_test(fills_slots),
        cmocka_unit_test(load_is_tried_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
