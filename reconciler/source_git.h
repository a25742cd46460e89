/*
 * source_git.h - specs read from a Git repository (libgit2).
 *
 * rolld keeps its own bare clone of the spec repository in the state dir and
 * reads specs from the tree of the fetched commit of one branch, under one
 * directory of the repository, never from a work tree. The remote is a local
 * path, a file://, https:// or ssh:// URL; credentials (an SSH key file or a
 * token file) come from the agent config, never from the specs.
 */
#ifndef ROLLD_SOURCE_GIT_H
#define ROLLD_SOURCE_GIT_H

#include <stdbool.h>
#include <stddef.h>

#include "error.h"
#include "source_dir.h"

#define GIT_OID_TEXT 41 /* 40 hex digits and NUL */

struct git_credentials {
    const char *ssh_key;        /* private key file for ssh:// remotes, or NULL */
    const char *ssh_public_key; /* its .pub, or NULL to use ssh_key + ".pub" when it exists */
    const char *token_file;     /* file holding a token for https:// remotes, or NULL */
    const char *username;       /* user for the token or ssh ("git" when NULL) */
};

struct git_source_options {
    const char *url;       /* remote: local path, file://, https://, ssh:// */
    const char *branch;    /* spec branch, "main" when NULL */
    const char *directory; /* directory inside the repository, "" or NULL = the root */
    const char *clone_dir; /* where rolld keeps its bare clone (created when missing) */
    struct git_credentials credentials;
};

struct git_fetch_result {
    char commit[GIT_OID_TEXT];   /* the branch's commit after the fetch */
    char previous[GIT_OID_TEXT]; /* before it ("" the first time) */
    bool changed;                /* commit != previous */
    bool rewritten;              /* the new commit does not descend from the previous one */
    char error[512];             /* when the fetch failed: why, for the status */
};

struct git_source;

/* Opens (or creates) the clone. 0, or a negative errno with a message in err. */
int git_source_open(const struct git_source_options *options, struct git_source **out, char *err,
                    size_t err_size);
void git_source_free(struct git_source *source);

/* Fetches the branch from the remote. On failure returns a negative errno,
 * fills result->error and leaves the last good commit in result->commit. */
int git_source_fetch(struct git_source *source, struct git_fetch_result *result);

/* Reads the specs of commit (hex) from its tree under the directory into a
 * snapshot, exactly as source_dir_load would from a directory holding those
 * files. Entry file names are "<directory>/<name>.yaml" as in the repository.
 * 0, or a negative errno with a message in diag. */
int git_source_load(struct git_source *source, const char *commit, struct snapshot *out,
                    struct diag *diag);

/* A directory whose change means the remote's refs moved (for inotify), when
 * the remote is on this host (a local path or file://); NULL otherwise. */
const char *git_source_watch_path(const struct git_source *source);

/* The signature and the signed payload of commit (git_commit_extract_signature).
 * 0, -ENOENT when the commit is not signed, another negative errno on error.
 * The caller frees both. */
int git_source_commit_signature(struct git_source *source, const char *commit, char **signature,
                                size_t *signature_length, char **payload, size_t *payload_length);

/* The first line of commit's message and its author's "Name <email>". */
int git_source_commit_info(struct git_source *source, const char *commit, char *subject,
                           size_t subject_size, char *author, size_t author_size);

/* Pushes a commit on top of the spec branch's current commit that sets file
 * (a path inside the repository) to content (NULL: deletes it), to the branch
 * refs/heads/<branch> of the remote (rolld's own branch, e.g.
 * rolld/revert/<service>, which it may overwrite). Fills commit_out. */
int git_source_push_revert(struct git_source *source, const char *branch, const char *file,
                           const char *content, size_t length, const char *message,
                           const char *author_name, const char *author_email,
                           char commit_out[GIT_OID_TEXT], char *err, size_t err_size);

/* For `rolld plan --repo`: the specs of rev (any revision git understands:
 * a branch, a tag, a commit, HEAD~2) of the repository at repo_path, under
 * directory. Fills commit_out with the resolved commit. */
int git_repo_load_revision(const char *repo_path, const char *rev, const char *directory,
                           struct snapshot *out, char commit_out[GIT_OID_TEXT],
                           struct diag *diag);

#endif
