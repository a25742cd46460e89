/*
 * diff.h - field-by-field difference of two canonical spec documents.
 *
 * Objects are compared key by key; lists of named things (applications,
 * deployments, the process backend's applications) are matched by name, not
 * position, so reordering them is no change. Free-form values (user_config,
 * runtime_env, args, env_vars, tags, compute_config) are compared whole.
 * Paths name applications and deployments: applications[text].deployments[Model].num_replicas.
 * Pure.
 */
#ifndef ROLLD_DIFF_H
#define ROLLD_DIFF_H

#include <jansson.h>
#include <stddef.h>

enum change_kind { CHANGE_MODIFIED, CHANGE_ADDED, CHANGE_REMOVED };

struct change {
    char *path;
    enum change_kind kind;
};

struct change_list {
    struct change *items;
    size_t count, capacity;
};

/* Appends the differences between old_doc and new_doc; returns 0 or -ENOMEM. */
int diff_documents(const json_t *old_doc, const json_t *new_doc, struct change_list *out);
void change_list_clear(struct change_list *list);
const char *change_kind_name(enum change_kind kind);

#endif
