/*
 * state.h - the state store: one JSON document in the state dir, written
 * atomically (temporary file, fsync, rename, fsync of the directory), so a
 * crash at any instant leaves either the old or the new document.
 * Also the JSON form of a service's rollout state.
 */
#ifndef ROLLD_STATE_H
#define ROLLD_STATE_H

#include <jansson.h>

#include "rollout.h"

/* Writes doc to path atomically. Returns 0 or -errno. */
int state_store_save(const char *path, const json_t *doc);
/* The same with the document already encoded: length bytes of text. */
int state_store_save_text(const char *path, const char *text, size_t length);
/* A state file written in pieces (writev) from texts kept elsewhere,
 * without the whole document in memory: the temporary file, then fsync,
 * rename and the directory's fsync, as state_store_save. The pieces must
 * stay valid until state_writer_commit. */
struct state_writer;
struct state_holes;
/* NULL with errno set when the temporary file cannot be made. */
struct state_writer *state_writer_open(const char *path);
void state_writer_add(struct state_writer *w, const char *data, size_t length);
/* text[from, to) with its holes filled by fills[i] ("null" for a NULL one). */
void state_writer_add_holes(struct state_writer *w, const char *text, size_t from, size_t to,
                            const struct state_holes *holes, const char *const fills[2]);
/* Marks the write failed (error: a negative errno): commit will not rename. */
void state_writer_fail(struct state_writer *w, int error);
/* Writes what is left and puts the file in place; frees w. 0 or -errno. */
int state_writer_commit(struct state_writer *w);

/* Reads path; *doc is NULL when the file does not exist. Returns 0 or -errno. */
int state_store_load(const char *path, json_t **doc);

json_t *service_state_to_json(const struct service_state *state);

/*
 * Records kept as text with up to two values left out, "holes": a value
 * kept elsewhere anyway (a side's spec text, a replica's launch) is copied
 * in at each save instead of being kept twice. A hole is written as the
 * number STATE_HOLE(i) (i = 0, 1) in the record's JSON, and found as
 * `"<key>":<that number>`, which no string value can contain (its quotes
 * would be escaped).
 */
#define STATE_HOLE(i) ((json_int_t)(-7240915536019117LL - (i)))

struct state_holes {
    size_t at[2];     /* where each hole's number starts */
    size_t length[2]; /* and its length */
    int fill[2];      /* which of the fills goes there (its i) */
    int count;
};

/* The holes `"<key>":STATE_HOLE(0|1)` in text, in the order they come. */
void state_holes_find(const char *text, const char *key, struct state_holes *holes);

/* The same as service_state_to_json with each used side's spec doc left
 * out: STATE_HOLE(side) in its place (key "doc"). */
json_t *service_state_to_json_holes(const struct service_state *state);
/* NULL when the document is not a service state. */
struct service_state *service_state_from_json(const char *name, const json_t *doc);

#endif
