/*
 * error.h - errors as values.
 *
 * A diag collects every problem found in one pass (a user fixing a spec wants
 * all of them at once). Each entry names the file, the 1-based line and
 * column, the field path, and a one-line message. The core never prints;
 * callers format entries with diag_format().
 */
#ifndef ROLLD_ERROR_H
#define ROLLD_ERROR_H

#include <stddef.h>
#include <stdio.h>

struct diag_entry {
    char *file;
    int line;
    int column;
    char *field; /* dotted path such as applications[text].deployments[Model].num_replicas */
    char *message;
};

struct diag {
    struct diag_entry *entries;
    size_t count;
    size_t capacity;
};

#define DIAG_INIT {NULL, 0, 0}

/* Adds one entry; line/column 0 mean "whole file". Returns 0 or -ENOMEM. */
int diag_add(struct diag *diag, const char *file, int line, int column, const char *field,
             const char *fmt, ...) __attribute__((format(printf, 6, 7)));
void diag_clear(struct diag *diag);
/* "file:line:col: field: message" on one line, no newline. */
void diag_format(const struct diag_entry *entry, FILE *out);

#endif
