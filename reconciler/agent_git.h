/*
 * agent_git.h - the agent's side of a Git source: fetching on an interval,
 * at once when a local origin's refs move (inotify) or on `rolld sync`, with
 * backoff on failure; the head commit's signature; the snapshots of the head
 * and of the last trusted commit; the status branch and revert branches.
 *
 * The loop stays level-triggered: agent_git only says "something changed"
 * through the callback; the agent then asks for the snapshots.
 */
#ifndef ROLLD_AGENT_GIT_H
#define ROLLD_AGENT_GIT_H

#include <stdbool.h>
#include <systemd/sd-event.h>

#include "config.h"
#include "source_dir.h"
#include "source_git.h"
#include "status_git.h"

struct agent_git_info {
    char commit[GIT_OID_TEXT];         /* the head commit the snapshot comes from */
    char trusted_commit[GIT_OID_TEXT]; /* the last commit whose signature passed ("" none) */
    bool head_trusted;                 /* the head's signature passed */
    char head_refusal[256];            /* why the head is not trusted ("unsigned", ...) */
    char fetch_error[512];             /* the last fetch's error, "" when it worked */
    long long fetched_ms;              /* wall time of the last successful fetch */
    long long fetch_failures;          /* in a row */
    char rewritten_from[GIT_OID_TEXT]; /* set when the branch was rewritten (force push) */
};

struct agent_git;

typedef void (*agent_git_changed_fn)(void *userdata);

/* Opens the clones under STATE/git/ and starts fetching (the first fetch
 * happens before this returns). 0, or a negative errno (logged). */
int agent_git_open(const struct agent_config *config, sd_event *event,
                   agent_git_changed_fn changed, void *userdata, struct agent_git **out);
void agent_git_free(struct agent_git *git);

/* Fetch now (rolld sync, SIGHUP), on the fetch thread; the changed callback
 * follows when the head moved. */
void agent_git_fetch_now(struct agent_git *git);

const struct agent_git_info *agent_git_info(const struct agent_git *git);

/* The head commit's specs, and when the head is not trusted, the specs of
 * the last trusted commit (trusted is empty when there is none). Entries of
 * previous_head and previous_trusted (the last ones given; either may be
 * NULL) whose blob did not change are taken over instead of parsed again. */
int agent_git_snapshots(struct agent_git *git, struct snapshot *previous_head,
                        struct snapshot *previous_trusted, struct snapshot *head,
                        struct snapshot *trusted, struct diag *diag);

/* The text of a file at a commit. */
int agent_git_read_file(struct agent_git *git, const char *commit, const char *file, char **text,
                        size_t *length);

/* Pushes rolld/revert/<service>: the spec branch with file set back to text. */
int agent_git_push_revert(struct agent_git *git, const char *service, const char *file,
                          const char *text, size_t length, const char *message, char *branch,
                          size_t branch_size);

/* Commits and pushes status files to the status branch (see status_git.h)
 * on a thread of its own: takes a copy and returns at once. A set handed
 * over while another is being pushed replaces it (deletions carried over);
 * a failed push is retried after a few seconds unless a newer set came. */
int agent_git_publish_status(struct agent_git *git, const struct status_file *files, size_t count,
                             const char *message);
/* Waits for the status being pushed and pushes the one waiting (at exit). */
void agent_git_publish_flush(struct agent_git *git);

bool agent_git_status_enabled(const struct agent_git *git);

/* Where fetches are counted from now on (NULL: nowhere). */
struct metrics;
void agent_git_set_metrics(struct agent_git *git, struct metrics *metrics);

#endif
