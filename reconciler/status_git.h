/*
 * status_git.h - service status written back to a Git branch (libgit2).
 *
 * Each agent commits its services' status documents to a status branch of
 * the spec repository's remote (default rolld/status, never the spec
 * branch) and pushes. Many agents may share the branch: each writes only the
 * files it is given and keeps everyone else's. A rejected push (someone else
 * pushed first) is resolved by fetching and making the commit again on top
 * of the new tip, never by force.
 */
#ifndef ROLLD_STATUS_GIT_H
#define ROLLD_STATUS_GIT_H

#include <stdbool.h>
#include <stddef.h>

#include "source_git.h"

struct status_git_options {
    const char *url;       /* the remote, as for the source */
    const char *branch;    /* "rolld/status" when NULL */
    const char *clone_dir; /* rolld's own bare clone for the status branch */
    const char *author_name, *author_email;
    struct git_credentials credentials;
};

struct status_file {
    const char *path;    /* inside the repository, e.g. status/<service>.yaml */
    const char *content; /* NULL: remove the file */
    size_t length;
};

struct status_git;

int status_git_open(const struct status_git_options *options, struct status_git **out, char *err,
                    size_t err_size);
void status_git_free(struct status_git *status);

/* Makes one commit on the status branch that sets each of files (the others
 * of the tree are kept as they are on the remote) and pushes it. When the
 * tree would not change, makes no commit and returns 0 with commit_out "".
 * Retries a rejected push on top of the remote's new tip a few times.
 * 0, or a negative errno with err filled (the caller retries later). */
int status_git_publish(struct status_git *status, const struct status_file *files, size_t count,
                       const char *message, char commit_out[GIT_OID_TEXT], char *err,
                       size_t err_size);

#endif
