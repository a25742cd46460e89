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

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <time.h>

#include "error.h"
#include "policy.h"
#include "spec.h"

/* What a file looked like when it was read: an entry whose file still
 * looks the same is kept as it was parsed (source_dir_reload). */
struct file_stamp {
    bool valid;
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime, ctime;
    struct timespec taken; /* the clock when the stamp was taken */
};

struct spec_entry {
    char *file;
    char *name;                /* service name, or NULL when it cannot be read */
    struct service_spec *spec; /* NULL when invalid */
    struct diag errors;
    struct file_stamp stamp;   /* from before the file was read */
    bool duplicate;            /* refused by snapshot_index: another file has its name */
    bool transient;            /* its errors may pass (unreadable, out of memory): never reused */
    char blob[72];             /* Git: the id of the blob it was parsed from; "" otherwise */
};

struct snapshot {
    struct spec_entry *entries;
    size_t count;
    /* the entries that have a name, by name then file order (snapshot_index) */
    struct spec_entry **by_name;
    size_t named_count;
};

/* Reads path, a directory or a single file. Returns 0, or a negative errno
 * with a message in diag when the path cannot be read at all. */
int source_dir_load(const char *path, struct snapshot *out, struct diag *diag);
/* The same, taking from previous (which it empties of them) the entries
 * whose file has not changed since it was read (same inode, size, mtime and
 * ctime): a change to one file of many parses that one file. previous stays
 * the caller's to clear. */
int source_dir_reload(const char *path, struct snapshot *previous, struct snapshot *out,
                      struct diag *diag);
/* For reloads, asked for files in file order (*at starts at 0 and walks
 * previous, which is in file order too): the index + 1 of previous's entry
 * for file when it may be taken over (not refused as a duplicate, no error
 * that may pass), else 0. */
size_t snapshot_reusable(const struct snapshot *previous, size_t *at, const char *file);
/* For reloads: out's entries i with taken[i] != 0 are copies of previous's
 * entry taken[i] - 1. ok: previous gives them up (out owns them); not ok:
 * out does (clear it after), and previous is as it was. */
void snapshot_settle_taken(struct snapshot *out, struct snapshot *previous, const size_t *taken,
                           bool ok);
void snapshot_clear(struct snapshot *snapshot);
/* The first entry in file order with that name, or NULL. O(log n) once the
 * snapshot is indexed (source_dir_load does it), a scan otherwise. */
const struct spec_entry *snapshot_find(const struct snapshot *snapshot, const char *name);

/* Refuses every file after the first (in file order) that defines the same
 * service: its spec is dropped and an error added. Then indexes the entries
 * by name for snapshot_find. For snapshots whose entries were filled one by
 * one (source_entry_load); call it once, after the last. 0 or -ENOMEM. */
int snapshot_index(struct snapshot *snapshot);

/* The YAML files of path (not hidden, not recursive) in name order, or path
 * itself when it is a file; caller frees with source_files_free. 0, or a
 * negative errno with a message in diag. */
int source_dir_list(const char *path, char ***files, size_t *count, struct diag *diag);
void source_files_free(char **files, size_t count);

/* One file of a snapshot: fills entry, which the caller zeroed, from the
 * file; every problem goes to entry->errors. Free with source_entry_clear. */
void source_entry_load(struct spec_entry *entry, const char *file);
/* The same from a text already read: read_status is what source_read_file
 * returned for it (text is not used when it is negative). */
void source_entry_parse(struct spec_entry *entry, const char *file, int read_status,
                        const char *text, size_t length);
void source_entry_clear(struct spec_entry *entry);

/* Loads every policy file of dir into set; invalid ones go to diag. */
int source_dir_load_policies(const char *dir, struct policy_set *set, struct diag *diag);

/* Reads a whole file (at most max bytes, else -EFBIG); caller frees *out. */
int source_read_file(const char *path, size_t max, char **out, size_t *length);

#endif
