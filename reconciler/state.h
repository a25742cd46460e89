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
/* Reads path; *doc is NULL when the file does not exist. Returns 0 or -errno. */
int state_store_load(const char *path, json_t **doc);

json_t *service_state_to_json(const struct service_state *state);
/* NULL when the document is not a service state. */
struct service_state *service_state_from_json(const char *name, const json_t *doc);

#endif
