/*
 * source_dir.h - specs and policies read from a directory.
 *
 * A snapshot holds every *.yaml / *.yml file of a directory (not hidden, not
 * recursive), in name order, each parsed on its own: one invalid file never
 * hides the others. An invalid file keeps the service name it seems to have,
 * so the planner reports it as invalid instead of as deleted.
 */
#ifndef ROLLD_SOURCE_DIR_H
#define ROLLD_SOURCE_DIR_H

#include <stddef.h>

#include "error.h"
#include "policy.h"
#include "spec.h"

struct spec_entry {
    char *file;
    char *name;                /* service name, or NULL when it cannot be read */
    struct service_spec *spec; /* NULL when invalid */
    struct diag errors;
};

struct snapshot {
    struct spec_entry *entries;
    size_t count;
};

/* Reads path, a directory or a single file. Returns 0, or a negative errno
 * with a message in diag when the path cannot be read at all. */
int source_dir_load(const char *path, struct snapshot *out, struct diag *diag);
void snapshot_clear(struct snapshot *snapshot);
const struct spec_entry *snapshot_find(const struct snapshot *snapshot, const char *name);

/* Loads every policy file of dir into set; invalid ones go to diag. */
int source_dir_load_policies(const char *dir, struct policy_set *set, struct diag *diag);

/* Reads a whole file (at most max bytes, else -EFBIG); caller frees *out. */
int source_read_file(const char *path, size_t max, char **out, size_t *length);

#endif
