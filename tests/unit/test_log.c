/* tests for reconciler/log.c: journald priority prefixes in text, one JSON
 * object per line in json, what is written to stderr read back */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"

/* Runs the logging calls with stderr sent to a temporary file; returns what was written. */
static char *captured(void (*body)(void))
{
    fflush(stderr);
    FILE *tmp = tmpfile();
    assert_non_null(tmp);
    int saved = dup(2);
    dup2(fileno(tmp), 2);
    body();
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    fseek(tmp, 0, SEEK_END);
    long size = ftell(tmp);
    rewind(tmp);
    char *text = calloc(1, (size_t)size + 1);
    assert_int_equal(fread(text, 1, (size_t)size, tmp), (size_t)size);
    fclose(tmp);
    return text;
}

static void text_lines(void)
{
    log_setup(LOG_FORMAT_TEXT);
    log_msg(LOG_INFO, "svc: %s", "running");
    log_msg(LOG_WARNING, "cannot read %d files", 2);
}

static void json_lines(void)
{
    log_setup(LOG_FORMAT_JSON);
    log_msg(LOG_ERR, "a \"quoted\" message\nwith a newline");
    log_msg(LOG_INFO, "svc: canary_progressing");
    log_setup(LOG_FORMAT_TEXT);
}

static void test_text_has_priority_prefixes(void **state)
{
    (void)state;
    char *text = captured(text_lines);
    assert_string_equal(text, "<6>rolld: svc: running\n<4>rolld: cannot read 2 files\n");
    free(text);
}

static void test_json_is_one_object_per_line(void **state)
{
    (void)state;
    char *text = captured(json_lines);
    char *second = strchr(text, '\n');
    assert_non_null(second);
    *second++ = 0;
    json_error_t error;
    json_t *first = json_loads(text, 0, &error);
    assert_non_null(first);
    assert_int_equal(json_integer_value(json_object_get(first, "priority")), 3);
    assert_string_equal(json_string_value(json_object_get(first, "level")), "err");
    assert_string_equal(json_string_value(json_object_get(first, "message")),
                        "a \"quoted\" message\nwith a newline");
    const char *when = json_string_value(json_object_get(first, "time"));
    assert_non_null(when);
    assert_int_equal(strlen(when), strlen("2026-11-24T16:00:00.000Z"));
    json_t *next = json_loads(second, JSON_DISABLE_EOF_CHECK, &error);
    assert_non_null(next);
    assert_string_equal(json_string_value(json_object_get(next, "level")), "info");
    json_decref(first);
    json_decref(next);
    free(text);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_text_has_priority_prefixes),
        cmocka_unit_test(test_json_is_one_object_per_line),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
