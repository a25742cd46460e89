/*
 * spec_store.h - the spec text of every version the agent has run, kept in
 * STATE/specs/<service>/<version>.yaml, so `rolld rollback SERVICE --to
 * VERSION` and revert branches work while the source is unreachable.
 * Files are written atomically and never changed (a version id is the hash
 * of its spec).
 */
#ifndef ROLLD_SPEC_STORE_H
#define ROLLD_SPEC_STORE_H

#include <stddef.h>

/* Keeps text as the spec of service's version; nothing when it is already kept. */
int spec_store_put(const char *state_dir, const char *service, const char *version,
                   const char *text, size_t length);
/* The kept text, or -ENOENT. The caller frees *text. */
int spec_store_get(const char *state_dir, const char *service, const char *version, char **text,
                   size_t *length);
/* The id of the kept version whose spec says version_name: name (the newest
 * file when several do). 0, or -ENOENT. */
int spec_store_find_name(const char *state_dir, const char *service, const char *name,
                         char version[17]);
/* Forgets a deleted service's versions. */
void spec_store_remove(const char *state_dir, const char *service);

#endif
