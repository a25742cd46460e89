/*
 * status_git.h - service status written back to a Git branch (libgit2).
 *
 * Each agent commits its services' status documents to a status branch of
 * the spec repository's remote (default rolld/status, never the spec
 * branch) and pushes. Many agents may share the branch: each writes only the
 * files it is given and keeps everyone else's. A rejected push (someone else
 * pushed first) is resolved by fetching and making the commit again on top
 * of the new tip, never by force.
 *
 * Status commits go to the status branch only, so an agent never reacts to
 * its own status: the spec source must fetch its spec branch and nothing
 * else (git_source_fetch does: +refs/heads/<spec branch> only). A watch on
 * a local remote may still fire for a status push (the status branch's
 * directory appearing, packed-refs rewritten): the fetch that follows finds
 * the spec branch unchanged, so it costs one local fetch and nothing else.
 *
 * The clone (clone_dir) is rolld's own bare repository. It fetches
 * +refs/heads/<branch>:refs/remotes/origin/<branch> and nothing else, and
 * records that as its remote "origin" for people looking into it. It is a
 * cache: it may be deleted while rolld is stopped. Running for weeks:
 *   - fetches add a pack each time the remote has new commits, and our
 *     commits are loose objects; status_git_compact (called by publish when
 *     there are more than 32 packs) merges them into one pack;
 *   - libgit2 caches the objects it reads or writes per open repository
 *     (up to 256 MiB process-wide by default), so publish reopens the clone
 *     every 64 publishes;
 *   - remotes are created anonymous with the url resolved at open: a lookup
 *     of a configured remote leaks memory in libgit2 1.5.1 (PCRE2 match
 *     data, about 20 KiB per config entry read).
 *
 * How the push is made depends on the remote:
 *   - a network remote (ssh://, https://, scp-like host:path): git_remote_push
 *     of refs/heads/<branch>:refs/heads/<branch> without '+'. A refusal is
 *     seen either as GIT_ENONFASTFORWARD (libgit2's own check against the
 *     advertised tip) or as a status in the push_update_reference callback
 *     (the server's verdict); both count as rejected.
 *   - a remote on this host (a path or file://): libgit2's local transport
 *     updates the remote ref without comparing it with the tip it advertised
 *     (a writer pushing in between would be overwritten), so rolld copies the
 *     new objects into the remote repository itself and moves the branch with
 *     git_reference_create_matching, a compare-and-swap under the ref's lock
 *     file: a concurrent writer makes it fail, which counts as rejected. A
 *     remote with a work tree is accepted unless the status branch is the one
 *     checked out there (-EBUSY).
 * After a rejection the branch is fetched again and the commit made again on
 * the new tip. When a server's verdict refused the push and the tip did not
 * move, it refused for another reason (a hook, a protected branch): -EPERM
 * at once, no retry.
 *
 * Credentials, TLS and host key checks, and time limits are as for the spec
 * source (source_git.h): libgit2 checks certificates and host keys; a fetch
 * or push is cancelled when its deadline passes at a point libgit2 calls
 * back. Publish is blocking I/O: call it off the event loop's thread. One
 * status_git from one thread at a time.
 */
#ifndef ROLLD_STATUS_GIT_H
#define ROLLD_STATUS_GIT_H

#include <stdbool.h>
#include <stddef.h>

#include "source_git.h"

struct status_file;

/* A file made from the status files of the tree about to be committed
 * (every writer's, not only this one's), e.g. STATUS.md: files are the
 * blobs under summary_dir, in path order. Returns malloc'd text, or NULL to
 * leave the summary as it is. Called on every attempt, so a summary redone
 * on top of another writer's commit includes that writer's files. */
typedef char *(*status_git_summary_fn)(void *userdata, const struct status_file *files,
                                       size_t count, size_t *length);

struct status_git_options {
    const char *url;       /* the remote, as for the source; git's url.<base>.insteadOf
                              and pushInsteadOf apply (read once, at open) */
    const char *branch;    /* "rolld/status" when NULL */
    const char *clone_dir; /* rolld's own bare clone for the status branch (created, with
                              parents, when missing) */
    const char *author_name, *author_email; /* "rolld" / "rolld@localhost" when NULL;
                                               author and committer of status commits */
    struct git_credentials credentials;
    int timeout_seconds;     /* deadline of one fetch or push; 0: 300 */
    const char *spec_branch; /* the source's branch: refused as the status branch
                                (-EINVAL); NULL: not checked */
    status_git_summary_fn summary; /* NULL: no summary file */
    void *summary_userdata;
    const char *summary_dir;  /* the status files it reads, e.g. "status" */
    const char *summary_path; /* the file it writes, e.g. "STATUS.md" */
};

struct status_file {
    const char *path;    /* inside the repository, e.g. status/<service>.yaml */
    const char *content; /* NULL: remove the file */
    size_t length;       /* bytes of content (0 with content non-NULL: an empty file) */
};

struct status_git;

/* Opens (or creates) the clone and points its remote "origin" at the url (a
 * relative path is made absolute). Does not contact the remote. The options
 * are copied. 0, or a negative errno with a message in err (-EINVAL: no url
 * or clone_dir, a branch name git refuses, the spec branch, an author name or
 * email git refuses). */
int status_git_open(const struct status_git_options *options, struct status_git **out, char *err,
                    size_t err_size);
void status_git_free(struct status_git *status);

/* Makes one commit on the status branch that sets each of files (the others
 * of the tree are kept as they are on the remote) and pushes it. When the
 * tree would not change, makes no commit and returns 0 with commit_out "".
 * Retries a rejected push on top of the remote's new tip a few times.
 * 0, or a negative errno with err filled (the caller retries later).
 *
 * Details: the first commit of a branch the remote does not have is a root
 * commit. Paths are relative, '/'-separated, without empty, "." or ".."
 * components and not inside .git; each at most once (-EINVAL otherwise, and
 * nothing is pushed). Removing a file the branch does not hold is no change.
 * message NULL: "rolld status". Errors: -EAGAIN after 5 rejected pushes in a
 * row (other writers kept winning), -EPERM when the remote refused the push
 * without another writer having moved the branch, -EBUSY when a local remote
 * has the status branch checked out, else the errno of the failed fetch or
 * push (-ENOENT: no repository at the url, -EACCES: credentials refused,
 * -EHOSTUNREACH, -ETIMEDOUT, -EIO, ...); err names the url and the branch. */
int status_git_publish(struct status_git *status, const struct status_file *files, size_t count,
                       const char *message, char commit_out[GIT_OID_TEXT], char *err,
                       size_t err_size);

/* Merges the clone's packs and loose objects into one pack of what the
 * status branch reaches. publish calls it by itself when needed; exposed for
 * tests and maintenance. 0, or a negative errno (the clone stays usable). */
int status_git_compact(struct status_git *status);

/* Counters since open, for logs, metrics and tests. */
struct status_git_stats {
    unsigned long publishes; /* calls of status_git_publish */
    unsigned long commits;   /* status commits pushed */
    unsigned long unchanged; /* publishes that found nothing to commit */
    unsigned long rejected;  /* pushes refused (another writer pushed first) */
    unsigned long failures;  /* publishes that returned an error */
    unsigned long compactions;
    unsigned last_attempts; /* push attempts of the last publish (0: it pushed nothing) */
};
void status_git_stats_get(const struct status_git *status, struct status_git_stats *out);

/* For tests only: ways to reach code paths a single process cannot reach
 * on purpose. */
struct status_git_test_hooks {
    /* The next publish's first attempt does not fetch: it builds on the
     * remote-tracking ref as the clone last saw it, as if another writer had
     * pushed between the fetch and the push. Cleared by that publish. */
    bool skip_next_fetch;
    /* Push to a local remote through git_remote_push, as to a network one. */
    bool push_local_as_network;
};
void status_git_set_test_hooks(struct status_git *status,
                               const struct status_git_test_hooks *hooks);

#endif
