/*
 * status_doc.h - the STATUS.md of a status branch, and the status documents
 * read back from the status/<service>.yaml files on it.
 *
 * Guarantees: status_markdown() is pure and deterministic (the same documents
 * give byte-identical text, whatever order they come in); every text taken
 * from a document is escaped so it cannot break the table or the markdown
 * around it; fields a document lacks (an older agent's, or the optional
 * agent, source, revert_branch, rollout.gate, commit) are left out rather
 * than refused. status_doc_parse_yaml() reads what status_write_yaml()
 * writes back to equal JSON (see schema/status.schema.json).
 */
#ifndef ROLLD_STATUS_DOC_H
#define ROLLD_STATUS_DOC_H

#include <jansson.h>
#include <stddef.h>

/* The STATUS.md of a status branch: one table of every service in docs
 * (sorted by service name), then, per service with a rollout or an error, a
 * short section. agent: the name of the agent writing (may be NULL).
 * now_text: the time shown in the header, such as "2026-11-24T16:00:00Z"
 * (may be NULL: no time, so the text changes only with the documents).
 * Returns a malloc'd NUL-terminated markdown text (caller frees), NULL when
 * out of memory. */
char *status_markdown(const json_t *const *docs, size_t count, const char *agent,
                      const char *now_text);

/* The inverse of status_write_yaml for what it writes: the YAML text of one
 * status document back as JSON (caller decrefs), so STATUS.md can be made
 * from the status/<service>.yaml files other agents wrote. NULL when the
 * text is not YAML or its top level is not a mapping. */
json_t *status_doc_parse_yaml(const char *text, size_t length);

#endif
