/*
 * source_git.h - specs read from a Git repository (libgit2).
 *
 * rolld keeps its own bare clone of the spec repository in the state dir and
 * reads specs from the tree of the fetched commit of one branch, under one
 * directory of the repository, never from a work tree. The remote is a local
 * path, a file://, https:// or ssh:// URL; credentials (an SSH key file or a
 * token file) come from the agent config, never from the specs.
 *
 * TLS certificates and SSH host keys are checked as libgit2 checks them by
 * default (the system's CA store; ~/.ssh/known_hosts of the user running
 * rolld): nothing here turns verification off.
 *
 * Time limits: libgit2 1.5 has no connect or read timeout (the options
 * GIT_OPT_SET_SERVER_CONNECT_TIMEOUT / _TIMEOUT came with 1.7). A fetch or a
 * push is cancelled when its deadline passes at any point libgit2 calls back
 * (credentials, progress of the transfer), so a slow transfer stops; a
 * connection that hangs silently (a firewall dropping packets) waits for the
 * kernel's TCP timeouts. Run fetches off the event loop's thread.
 *
 * Every function may be called from any thread, but one git_source from one
 * thread at a time. libgit2 is initialised once by the first open.
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
    const char *token_file;     /* file holding a token for https:// remotes, or NULL;
                                   read again at every fetch, so it can be rotated */
    const char *username;       /* user for ssh ("git" when NULL and the URL names none)
                                   or for the token ("x-access-token" when NULL) */
};

struct git_source_options {
    const char *url;       /* remote: local path, file://, https://, ssh:// */
    const char *branch;    /* spec branch, "main" when NULL */
    const char *directory; /* directory inside the repository, "" or NULL = the root */
    const char *clone_dir; /* where rolld keeps its bare clone (created when missing) */
    struct git_credentials credentials;
    int timeout_seconds; /* deadline of one fetch or push (see above); 0: 300 */
};

struct git_fetch_result {
    char commit[GIT_OID_TEXT];   /* the branch's commit after the fetch */
    char previous[GIT_OID_TEXT]; /* before it ("" the first time) */
    bool changed;                /* commit != previous */
    bool rewritten;              /* the new commit does not descend from the previous one */
    char error[512];             /* when the fetch failed: why, for the status */
};

struct git_source;

/* Opens (or creates: a bare repository, with parents) the clone, and points
 * its remote "origin" at the url (a relative path is made absolute). 0, or a
 * negative errno with a message in err. The options are copied. */
int git_source_open(const struct git_source_options *options, struct git_source **out, char *err,
                    size_t err_size);
void git_source_free(struct git_source *source);

/* Fetches the branch from the remote (+refs/heads/<branch> to
 * refs/remotes/origin/<branch> of the clone, nothing else). On failure
 * (unreachable remote, refused credentials, corrupt data, no such branch,
 * deadline passed) returns a negative errno (-EACCES, -ENOENT, -ETIMEDOUT,
 * -EHOSTUNREACH, -EIO, ...), fills result->error with a one-line message
 * naming the url and the branch, and leaves the last good commit in
 * result->commit ("" when there never was one) with changed false. */
int git_source_fetch(struct git_source *source, struct git_fetch_result *result);

/* Reads the specs of commit (hex) from its tree under the directory into a
 * snapshot, exactly as source_dir_load would from a directory holding those
 * files: blobs named *.yaml / *.yml, not hidden, directly under the
 * directory (no subdirectories, no symlinks, no submodules), at most
 * YAML_TREE_MAX_BYTES each. Entry file names are "<directory>/<name>.yaml"
 * as in the repository. 0, or a negative errno with a message in diag
 * (-ENOENT: no such commit, or no such directory in it). */
int git_source_load(struct git_source *source, const char *commit, struct snapshot *out,
                    struct diag *diag);
/* The same, taking from previous (which it empties of them) the entries
 * parsed from the same blob of the same file: a push that changes one file
 * of many parses that one. previous stays the caller's to clear. */
int git_source_reload(struct git_source *source, const char *commit, struct snapshot *previous,
                      struct snapshot *out, struct diag *diag);

/*
 * Watching a remote on this host (a local path or file://), so that a push to
 * it is fetched at once instead of at the next timer:
 *
 * git_source_watch_path is the remote repository's git directory (the
 * directory itself for a bare repository, <work tree>/.git otherwise),
 * resolved when the source was opened; NULL for a network remote. Git moves
 * a branch by renaming a lock file over the ref, so watch, with inotify:
 *   - the git dir for IN_MOVED_TO | IN_CLOSE_WRITE (packed-refs after
 *     `git pack-refs` / `git gc`, HEAD),
 *   - git_source_watch_ref_directory, the directory holding the branch's
 *     loose ref (<git dir>/refs/heads, or refs/heads/team for the branch
 *     team/main), for IN_MOVED_TO | IN_CLOSE_WRITE | IN_DELETE. It may not
 *     exist yet (the branch was never written as a loose ref): watch the git
 *     dir alone then, and add this watch when IN_CREATE says it appeared.
 * Any event means "fetch now": the fetch compares commits, so a spurious
 * event costs one local fetch. When the remote is moved away the watches
 * get IN_IGNORED / IN_MOVE_SELF; keep the timer as the fallback.
 */
const char *git_source_watch_path(const struct git_source *source);
const char *git_source_watch_ref_directory(const struct git_source *source);

/* The signature and the signed payload of commit (git_commit_extract_signature).
 * 0, -ENOENT when the commit is not signed, another negative errno on error.
 * The caller frees both (each also NUL-terminated). -EINVAL when commit is not
 * a commit of the clone. */
int git_source_commit_signature(struct git_source *source, const char *commit, char **signature,
                                size_t *signature_length, char **payload, size_t *payload_length);

/* The text of file (a repository path) at commit; -ENOENT when it is not there.
 * The caller frees *text. */
int git_source_read_file(struct git_source *source, const char *commit, const char *file,
                         char **text, size_t *length);

/* The first line of commit's message and its author's "Name <email>",
 * cut to fit the buffers. 0, or a negative errno. */
int git_source_commit_info(struct git_source *source, const char *commit, char *subject,
                           size_t subject_size, char *author, size_t author_size);

/* Pushes a commit on top of the spec branch's current commit that sets file
 * (a path inside the repository) to content (NULL: deletes it), to the branch
 * refs/heads/<branch> of the remote (rolld's own branch, e.g.
 * rolld/revert/<service>, which it may overwrite: the push is forced).
 * "The spec branch's current commit" is the one the last successful fetch
 * got (refs/remotes/origin/<spec branch> of the clone; -ENOENT before the
 * first fetch). The branch is also set in the clone. Removing a file the
 * tree does not hold is -ENOENT. Fills commit_out. 0, or a negative errno
 * with a message in err naming the url and the branch. */
int git_source_push_revert(struct git_source *source, const char *branch, const char *file,
                           const char *content, size_t length, const char *message,
                           const char *author_name, const char *author_email,
                           char commit_out[GIT_OID_TEXT], char *err, size_t err_size);

/* For `rolld plan --repo`: the specs of rev (any revision git understands:
 * a branch, a tag, a commit, HEAD~2) of the repository at repo_path, under
 * directory. The repository is a work tree or a bare one, found from
 * repo_path as `git -C repo_path` finds it; directory is relative to its
 * top. Fills commit_out with the resolved commit. 0, or a negative errno
 * with a message in diag. */
int git_repo_load_revision(const char *repo_path, const char *rev, const char *directory,
                           struct snapshot *out, char commit_out[GIT_OID_TEXT], struct diag *diag);

#endif
