/*
 * unit_helpers.h - small helpers shared by the unit tests: parse a spec or a
 * policy written inline, find a diagnostic by field path, read a file of the
 * source tree (ROLLD_SOURCE_DIR, set by tests/unit/CMakeLists.txt).
 * Include after <cmocka.h>.
 */
#ifndef ROLLD_UNIT_HELPERS_H
#define ROLLD_UNIT_HELPERS_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"
#include "policy.h"
#include "source_dir.h"
#include "spec.h"

static inline void print_diag(const struct diag *diag)
{
    for (size_t i = 0; i < diag->count; i++) {
        fputs("  diag: ", stderr);
        diag_format(&diag->entries[i], stderr);
        fputc('\n', stderr);
    }
}

/* A spec that must parse; fails the test with every diagnostic otherwise. */
static inline struct service_spec *parse_ok(const char *text)
{
    struct diag diag = DIAG_INIT;
    struct service_spec *spec = spec_parse(text, strlen(text), "test.yaml", &diag);
    if (!spec || diag.count)
        print_diag(&diag);
    assert_non_null(spec);
    assert_int_equal(diag.count, 0);
    diag_clear(&diag);
    return spec;
}

/* A spec that must be refused; the errors are left in diag (caller clears). */
static inline void parse_fails(const char *text, size_t length, struct diag *diag)
{
    struct service_spec *spec = spec_parse(text, length, "test.yaml", diag);
    if (spec) {
        spec_free(spec);
        fail_msg("spec was accepted but should have been refused");
    }
    assert_true(diag->count >= 1);
}

static inline const struct diag_entry *diag_find(const struct diag *diag, const char *field)
{
    for (size_t i = 0; i < diag->count; i++)
        if (!strcmp(diag->entries[i].field, field))
            return &diag->entries[i];
    return NULL;
}

/* Asserts that diag holds an entry for field at line:column whose message
 * contains each of the NULL-terminated needles. */
static inline void expect_diag_at(const struct diag *diag, const char *field, int line, int column,
                                  const char *const *needles)
{
    const struct diag_entry *entry = diag_find(diag, field);
    if (!entry) {
        print_diag(diag);
        fail_msg("no diagnostic for field '%s'", field);
    }
    if (entry->line != line || entry->column != column) {
        print_diag(diag);
        fail_msg("diagnostic for '%s' at %d:%d, expected %d:%d", field, entry->line, entry->column,
                 line, column);
    }
    assert_string_equal(entry->file, "test.yaml");
    for (; needles && *needles; needles++) {
        if (!strstr(entry->message, *needles)) {
            print_diag(diag);
            fail_msg("message for '%s' is \"%s\", which does not contain \"%s\"", field,
                     entry->message, *needles);
        }
    }
}

#define EXPECT_DIAG(diag, field, line, column, ...)                                                \
    do {                                                                                           \
        static const char *const needles_[] = {__VA_ARGS__, NULL};                                 \
        expect_diag_at((diag), (field), (line), (column), needles_);                               \
    } while (0)

/* The message of the only entry of diag (asserting there is exactly one). */
static inline const struct diag_entry *diag_only(const struct diag *diag)
{
    if (diag->count != 1)
        print_diag(diag);
    assert_int_equal(diag->count, 1);
    return &diag->entries[0];
}

/* Reads ROLLD_SOURCE_DIR/relative; caller frees. */
static inline char *read_source_file(const char *relative, size_t *length)
{
    const char *root = getenv("ROLLD_SOURCE_DIR");
    assert_non_null(root);
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", root, relative);
    char *text = NULL;
    int r = source_read_file(path, 1 << 20, &text, length);
    if (r < 0)
        fail_msg("cannot read %s: %s", path, strerror(-r));
    return text;
}

static inline struct policy *load_shipped_policy(const char *name)
{
    char relative[256];
    snprintf(relative, sizeof(relative), "policies/%s.yaml", name);
    size_t length;
    char *text = read_source_file(relative, &length);
    struct diag diag = DIAG_INIT;
    struct policy *policy = policy_parse(text, length, relative, &diag);
    if (!policy)
        print_diag(&diag);
    assert_non_null(policy);
    assert_int_equal(diag.count, 0);
    diag_clear(&diag);
    free(text);
    return policy;
}

#endif
