/*
 * status_git.c - status documents committed to a branch of the remote.
 *
 * One publish: fetch the status branch, build the new tree from its tip's
 * tree with the given files set or removed, commit on top of the tip, push
 * without force; when the push is rejected, fetch and do it all again.
 * status_git.h says why a remote on this host is pushed by a
 * compare-and-swap of its ref rather than through libgit2's local
 * transport, and what keeps a clone used for weeks small.
 */
#include "status_git.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "git_common.h"
#include "source_dir.h"

#define REMOTE_NAME "origin"
#define DEFAULT_BRANCH "rolld/status"
#define DEFAULT_AUTHOR_NAME "rolld"
#define DEFAULT_AUTHOR_EMAIL "rolld@localhost"
#define DEFAULT_MESSAGE "rolld status"
#define DEFAULT_TIMEOUT_SECONDS 300
#define PUBLISH_ATTEMPTS 5
#define PACK_LIMIT 32         /* packs in the clone before publish compacts it */
#define PUBLISHES_PER_OPEN 64 /* publishes before the clone is reopened (see clone_close) */
#define REFLOG_MESSAGE "rolld: status"

struct status_git {
    git_repository *repo; /* NULL between clone_close and the next use */
    unsigned publishes_since_open;
    char *clone_dir;
    char *url;             /* to fetch from: insteadOf applied, a relative path made absolute */
    char *push_url;        /* to push to: the same with pushInsteadOf */
    char *display_url;     /* for messages: as configured, without a password */
    char *local_path;      /* url's path when it is on this host, else NULL */
    char *push_local_path; /* push_url's path when it is on this host, else NULL */
    char *branch;          /* e.g. rolld/status */
    char *branch_ref;      /* refs/heads/<branch> */
    char *tracking_ref;    /* refs/remotes/origin/<branch> */
    char *fetch_refspec;   /* +refs/heads/<branch>:refs/remotes/origin/<branch> */
    char *push_refspec;    /* refs/heads/<branch>:refs/heads/<branch>: never '+' */
    char *author_name, *author_email;
    struct git_credentials credentials; /* owns its strings */
    int timeout_seconds;
    status_git_summary_fn summary;
    void *summary_userdata;
    char *summary_dir, *summary_path;
    struct status_git_stats stats;
    struct status_git_test_hooks hooks;
};

/* What one push attempt came to. */
enum push_outcome {
    PUSH_DONE,
    PUSH_RACED,   /* the branch moved under us: fetch and try again */
    PUSH_REFUSED, /* the remote said no: try again only if its tip moved */
};

/* ---- errors ---- */

__attribute__((format(printf, 3, 4))) static void error_set(char *err, size_t err_size,
                                                            const char *format, ...)
{
    if (!err || !err_size)
        return;
    va_list args;
    va_start(args, format);
    vsnprintf(err, err_size, format, args);
    va_end(args);
}

/* A failed libgit2 call on the clone: its errno, and "<what> (<url>, branch
 * <branch>): <libgit2's message>" in err. */
static int clone_failure(const struct status_git *s, int code, const char *what, char *err,
                         size_t err_size)
{
    error_set(err, err_size, "status branch %s of %s: %s: %s", s->branch, s->display_url, what,
              git_common_message());
    return git_common_errno(code);
}

/* ---- names and paths ---- */

/* The path of a remote on this host (a path, or file:// on no or the local
 * host, %XX decoded), or NULL for a network remote (a scheme, or scp-like
 * host:path as git reads it). url is already absolute when it is a path.
 * Caller frees. */
static char *url_local_path(const char *url)
{
    if (!strncmp(url, "file://", 7)) {
        const char *path = url + 7;
        if (!strncmp(path, "localhost/", 10))
            path += 9;
        if (*path != '/')
            return NULL;
        return git_common_percent_decode(path);
    }
    if (strstr(url, "://"))
        return NULL;
    const char *colon = strchr(url, ':'), *slash = strchr(url, '/');
    if (colon && (!slash || colon < slash))
        return NULL;
    return strdup(url);
}

static bool url_is_path(const char *url)
{
    if (strstr(url, "://"))
        return false;
    const char *colon = strchr(url, ':'), *slash = strchr(url, '/');
    return !(colon && (!slash || colon < slash));
}

/* The url as libgit2 gets it: a relative path made absolute. Caller frees. */
static char *url_absolute(const char *url)
{
    if (!url_is_path(url) || url[0] == '/')
        return strdup(url);
    char *cwd = getcwd(NULL, 0);
    if (!cwd)
        return NULL;
    char *out = git_common_text_join(cwd, "/", url);
    free(cwd);
    return out;
}

/* A repository path we accept: relative, '/'-separated, no empty, "." or
 * ".." component, nothing inside .git. */
static bool file_path_valid(const char *path)
{
    if (!path || !*path || path[0] == '/')
        return false;
    const char *p = path;
    for (;;) {
        size_t n = strcspn(p, "/");
        if (n == 0 || (n == 1 && p[0] == '.') || (n == 2 && !strncmp(p, "..", 2)) ||
            (n == 4 && !strncasecmp(p, ".git", 4)))
            return false;
        if (!p[n])
            return true;
        p += n + 1;
    }
}

static int files_check(const struct status_git *s, const struct status_file *files, size_t count,
                       char *err, size_t err_size)
{
    if (count && !files) {
        error_set(err, err_size, "status branch %s: no files given", s->branch);
        return -EINVAL;
    }
    for (size_t i = 0; i < count; i++) {
        if (!file_path_valid(files[i].path)) {
            error_set(err, err_size,
                      "status branch %s: file path '%s' is not a relative path inside the "
                      "repository",
                      s->branch, files[i].path ? files[i].path : "(null)");
            return -EINVAL;
        }
        for (size_t j = 0; j < i; j++)
            if (!strcmp(files[i].path, files[j].path)) {
                error_set(err, err_size, "status branch %s: file %s given twice", s->branch,
                          files[i].path);
                return -EINVAL;
            }
    }
    return 0;
}

/* ---- remote calls: deadline, credentials, push verdicts ---- */

/* The errno and the message of a failed fetch or push. */
static int remote_failure(const struct status_git *s, const struct git_common_call *call, int code,
                          const char *what, char *err, size_t err_size)
{
    int r = git_common_call_errno(call, code);
    error_set(err, err_size, "cannot %s status branch %s of %s: %s", what, s->branch,
              s->display_url, git_common_call_why(call));
    return r;
}

/* ---- the clone ---- */

static int clone_open(struct status_git *s, char *err, size_t err_size)
{
    if (s->repo)
        return 0;
    int code = git_repository_open_bare(&s->repo, s->clone_dir);
    if (code == GIT_ENOTFOUND) {
        git_repository_init_options options;
        git_repository_init_options_init(&options, GIT_REPOSITORY_INIT_OPTIONS_VERSION);
        options.flags = GIT_REPOSITORY_INIT_BARE | GIT_REPOSITORY_INIT_MKPATH;
        options.initial_head = s->branch;
        code = git_repository_init_ext(&s->repo, s->clone_dir, &options);
    }
    if (code < 0) {
        s->repo = NULL;
        error_set(err, err_size, "status branch %s: cannot open or create the clone %s: %s",
                  s->branch, s->clone_dir, git_common_message());
        return git_common_errno(code);
    }
    return 0;
}

/* Records "origin" (the url and the status branch's refspec) in the
 * clone's config, for people looking into the clone: rolld itself works
 * with anonymous remotes (see remote_new). */
static int clone_remote_record(struct status_git *s, char *err, size_t err_size)
{
    git_config *config = NULL;
    git_buf url = {0}, fetch = {0};
    int code = git_repository_config(&config, s->repo);
    if (code == 0 && (git_config_get_string_buf(&url, config, "remote." REMOTE_NAME ".url") < 0 ||
                      strcmp(url.ptr, s->url)))
        code = git_config_set_string(config, "remote." REMOTE_NAME ".url", s->url);
    if (code == 0 &&
        (git_config_get_string_buf(&fetch, config, "remote." REMOTE_NAME ".fetch") < 0 ||
         strcmp(fetch.ptr, s->fetch_refspec))) {
        code = git_config_set_string(config, "remote." REMOTE_NAME ".fetch", s->fetch_refspec);
        if (code < 0) /* several values: replace them all */
            code = git_config_delete_multivar(config, "remote." REMOTE_NAME ".fetch", ".*");
        if (code == 0)
            code = git_config_set_string(config, "remote." REMOTE_NAME ".fetch", s->fetch_refspec);
    }
    git_buf_dispose(&fetch);
    git_buf_dispose(&url);
    git_config_free(config);
    if (code < 0)
        return clone_failure(s, code, "cannot record the remote in the clone", err, err_size);
    return 0;
}

/* url rewritten by git's url.<base>.insteadOf (push: pushInsteadOf) of the
 * clone's config (which includes the user's and the system's): the longest
 * matching prefix is replaced by <base>. NULL in *out when none matches.
 * Caller frees. */
static int url_rewrite(git_repository *repo, const char *url, bool push, char **out)
{
    *out = NULL;
    git_config *config = NULL;
    git_config_iterator *iterator = NULL;
    git_config_entry *entry;
    const char *suffix = push ? ".pushinsteadof" : ".insteadof";
    size_t suffix_length = strlen(suffix), best = 0;
    char *base = NULL;
    int code = git_repository_config_snapshot(&config, repo);
    if (code == 0)
        code = git_config_iterator_new(&iterator, config);
    while (code == 0 && git_config_next(&entry, iterator) == 0) {
        size_t n = strlen(entry->name), length = entry->value ? strlen(entry->value) : 0;
        if (strncmp(entry->name, "url.", 4) || n <= 4 + suffix_length ||
            strcmp(entry->name + n - suffix_length, suffix) || length <= best ||
            strncmp(url, entry->value, length))
            continue;
        free(base);
        base = strndup(entry->name + 4, n - 4 - suffix_length);
        best = length;
        if (!base)
            code = -1;
    }
    if (code == 0 && base && asprintf(out, "%s%s", base, url + best) < 0) {
        *out = NULL;
        code = -1;
    }
    free(base);
    git_config_iterator_free(iterator);
    git_config_free(config);
    return code;
}

/* An anonymous remote for url (already rewritten by insteadOf at open).
 * Not git_remote_lookup: in libgit2 1.5.1 a lookup, or applying insteadOf,
 * leaks a PCRE2 match block (about 20 KiB) per config entry it reads,
 * which on every publish for weeks adds up. */
static int remote_new(struct status_git *s, const char *url, git_remote **out)
{
    git_remote_create_options options;
    git_remote_create_options_init(&options, GIT_REMOTE_CREATE_OPTIONS_VERSION);
    options.repository = s->repo;
    options.flags = GIT_REMOTE_CREATE_SKIP_INSTEADOF | GIT_REMOTE_CREATE_SKIP_DEFAULT_FETCHSPEC;
    return git_remote_create_with_opts(out, url, &options);
}

/* Frees the repository, and so libgit2's cache of its objects (which grows
 * with every commit read or made); the next use opens it again. */
static void clone_close(struct status_git *s)
{
    git_repository_free(s->repo);
    s->repo = NULL;
    s->publishes_since_open = 0;
}

/* Points the remote-tracking ref at tip, or deletes it (tip NULL). */
static int tracking_ref_set(struct status_git *s, const git_oid *tip)
{
    git_oid current;
    int code = git_reference_name_to_id(&current, s->repo, s->tracking_ref);
    if (code == 0 && tip && git_oid_equal(&current, tip))
        return 0;
    if (code == GIT_ENOTFOUND && !tip)
        return 0;
    if (!tip) {
        git_reference *ref = NULL;
        code = git_reference_lookup(&ref, s->repo, s->tracking_ref);
        if (code == 0)
            code = git_reference_delete(ref);
        git_reference_free(ref);
        return code;
    }
    git_reference *ref = NULL;
    code = git_reference_create(&ref, s->repo, s->tracking_ref, tip, 1, REFLOG_MESSAGE);
    git_reference_free(ref);
    return code;
}

/* The tip as the clone last saw it (the test hook's stale view). */
static int tracking_tip(struct status_git *s, bool *has_tip, git_oid *tip, char *err,
                        size_t err_size)
{
    int code = git_reference_name_to_id(tip, s->repo, s->tracking_ref);
    *has_tip = code == 0;
    if (code < 0 && code != GIT_ENOTFOUND)
        return clone_failure(s, code, "cannot read the remote-tracking ref", err, err_size);
    return 0;
}

/* Fetches the branch. Where it is on the remote comes from the remote's
 * advertisement, so a branch deleted there is seen as absent (the fetch
 * itself does not prune the tracking ref). */
static int branch_fetch(struct status_git *s, bool *has_tip, git_oid *tip, char *err,
                        size_t err_size)
{
    *has_tip = false;
    /* libgit2 takes a path that is not there for an unknown URL scheme */
    if (s->local_path && access(s->local_path, F_OK) < 0) {
        int r = -errno;
        error_set(err, err_size, "cannot fetch status branch %s of %s: %s: %s", s->branch,
                  s->display_url, s->local_path, strerror(-r));
        return r;
    }
    struct git_common_call call;
    git_common_call_start(&call, &s->credentials, s->timeout_seconds);
    git_remote *remote = NULL;
    int r = 0;
    int code = remote_new(s, s->url, &remote);
    if (code < 0) {
        r = remote_failure(s, &call, code, "fetch", err, err_size);
        goto out;
    }
    git_fetch_options options;
    git_fetch_options_init(&options, GIT_FETCH_OPTIONS_VERSION);
    git_common_callbacks_fill(&options.callbacks, &call);
    options.prune = GIT_FETCH_NO_PRUNE;
    options.update_fetchhead = 0;
    options.download_tags = GIT_REMOTE_DOWNLOAD_TAGS_NONE;
    char *specs[] = {s->fetch_refspec};
    git_strarray refspecs = {specs, 1};
    code = git_remote_fetch(remote, &refspecs, &options, REFLOG_MESSAGE);
    if (code < 0) {
        r = remote_failure(s, &call, code, "fetch", err, err_size);
        goto out;
    }
    const git_remote_head **heads = NULL;
    size_t count = 0;
    code = git_remote_ls(&heads, &count, remote);
    if (code < 0) {
        r = remote_failure(s, &call, code, "list the branches of", err, err_size);
        goto out;
    }
    for (size_t i = 0; i < count; i++)
        if (!strcmp(heads[i]->name, s->branch_ref)) {
            git_oid_cpy(tip, &heads[i]->oid);
            *has_tip = true;
            break;
        }
    code = tracking_ref_set(s, *has_tip ? tip : NULL);
    if (code < 0)
        r = clone_failure(s, code, "cannot update the remote-tracking ref", err, err_size);
out:
    git_remote_free(remote);
    return r;
}

/* ---- the commit ---- */

/* Whether tree holds path (a blob or a tree). */
static bool tree_holds(git_tree *tree, const char *path)
{
    git_tree_entry *entry = NULL;
    if (!tree || git_tree_entry_bypath(&entry, tree, path) < 0)
        return false;
    git_tree_entry_free(entry);
    return true;
}

/* Sets the summary file of the tree tree_id from the status files in it. */
static int summary_add(struct status_git *s, git_oid *tree_id, char *err, size_t err_size)
{
    git_tree *tree = NULL, *dir = NULL;
    git_tree_entry *dir_entry = NULL;
    struct status_file *files = NULL;
    git_blob **blobs = NULL;
    size_t n = 0;
    int r = 0, code;
    if ((code = git_tree_lookup(&tree, s->repo, tree_id)) < 0)
        return clone_failure(s, code, "cannot read the new tree", err, err_size);
    if (git_tree_entry_bypath(&dir_entry, tree, s->summary_dir) == 0 &&
        git_tree_entry_type(dir_entry) == GIT_OBJECT_TREE &&
        git_tree_lookup(&dir, s->repo, git_tree_entry_id(dir_entry)) == 0) {
        size_t total = git_tree_entrycount(dir);
        files = calloc(total ? total : 1, sizeof(*files));
        blobs = calloc(total ? total : 1, sizeof(*blobs));
        if (!files || !blobs) {
            r = -ENOMEM;
            goto out;
        }
        for (size_t i = 0; i < total; i++) {
            const git_tree_entry *e = git_tree_entry_byindex(dir, i);
            if (git_tree_entry_type(e) != GIT_OBJECT_BLOB ||
                git_blob_lookup(&blobs[n], s->repo, git_tree_entry_id(e)) < 0)
                continue;
            files[n].path = git_tree_entry_name(e);
            files[n].content = git_blob_rawcontent(blobs[n]);
            files[n].length = (size_t)git_blob_rawsize(blobs[n]);
            n++;
        }
    }
    size_t length = 0;
    char *text = s->summary(s->summary_userdata, files, n, &length);
    if (text) {
        git_tree_update update = {.action = GIT_TREE_UPDATE_UPSERT,
                                  .filemode = GIT_FILEMODE_BLOB,
                                  .path = s->summary_path};
        code = git_blob_create_from_buffer(&update.id, s->repo, text, length);
        if (code == 0)
            code = git_tree_create_updated(tree_id, s->repo, tree, 1, &update);
        if (code < 0)
            r = clone_failure(s, code, "cannot write the summary", err, err_size);
        free(text);
    }
out:
    for (size_t i = 0; i < n; i++)
        git_blob_free(blobs[i]);
    free(blobs);
    free(files);
    git_tree_entry_free(dir_entry);
    git_tree_free(dir);
    git_tree_free(tree);
    return r;
}

/* The tree of tip (NULL: none) with files set or removed, and whether it is
 * the tip's tree (no tip: whether it is empty). */
static int tree_build(struct status_git *s, git_commit *tip, const struct status_file *files,
                      size_t count, git_oid *tree_id, bool *unchanged, char *err, size_t err_size)
{
    git_tree *base = NULL, *built = NULL;
    git_tree_update *updates = calloc(count ? count : 1, sizeof(*updates));
    int r = 0, code = 0;
    size_t n = 0;
    if (!updates) {
        error_set(err, err_size, "status branch %s: out of memory", s->branch);
        return -ENOMEM;
    }
    if (tip && (code = git_commit_tree(&base, tip)) < 0) {
        r = clone_failure(s, code, "cannot read the tree of the tip", err, err_size);
        goto out;
    }
    for (size_t i = 0; i < count; i++) {
        const struct status_file *f = &files[i];
        if (!f->content) {
            /* git_tree_create_updated refuses to remove what is not there */
            if (!tree_holds(base, f->path))
                continue;
            updates[n].action = GIT_TREE_UPDATE_REMOVE;
        } else {
            code = git_blob_create_from_buffer(&updates[n].id, s->repo, f->content, f->length);
            if (code < 0) {
                r = clone_failure(s, code, "cannot write a blob", err, err_size);
                goto out;
            }
            updates[n].action = GIT_TREE_UPDATE_UPSERT;
            updates[n].filemode = GIT_FILEMODE_BLOB;
        }
        updates[n].path = f->path;
        n++;
    }
    if (n == 0 && base) {
        git_oid_cpy(tree_id, git_tree_id(base));
        *unchanged = true;
        goto out;
    }
    code = git_tree_create_updated(tree_id, s->repo, base, n, updates);
    if (code < 0) {
        r = clone_failure(s, code, "cannot build the tree", err, err_size);
        goto out;
    }
    if (s->summary && (r = summary_add(s, tree_id, err, err_size)) < 0)
        goto out;
    if (base) {
        *unchanged = git_oid_equal(tree_id, git_tree_id(base));
    } else {
        code = git_tree_lookup(&built, s->repo, tree_id);
        if (code < 0) {
            r = clone_failure(s, code, "cannot read the new tree", err, err_size);
            goto out;
        }
        *unchanged = git_tree_entrycount(built) == 0;
    }
out:
    git_tree_free(built);
    git_tree_free(base);
    free(updates);
    return r;
}

/* Writes the commit of tree on top of tip (NULL: a root commit) and points
 * the clone's refs/heads/<branch> at it (what a push sends). */
static int commit_make(struct status_git *s, git_commit *tip, const git_oid *tree_id,
                       const char *message, git_oid *commit_id, char *err, size_t err_size)
{
    git_signature *signature = NULL;
    git_tree *tree = NULL;
    git_reference *ref = NULL;
    git_buf text = {0};
    const git_commit *parents[1] = {tip};
    int r = 0;
    int code = git_signature_now(&signature, s->author_name, s->author_email);
    if (code < 0) {
        r = clone_failure(s, code, "cannot make the signature", err, err_size);
        goto out;
    }
    code = git_tree_lookup(&tree, s->repo, tree_id);
    if (code < 0) {
        r = clone_failure(s, code, "cannot read the new tree", err, err_size);
        goto out;
    }
    if (!message || !*message)
        message = DEFAULT_MESSAGE;
    code = git_message_prettify(&text, message, 0, '#');
    if (code < 0) {
        r = clone_failure(s, code, "cannot format the message", err, err_size);
        goto out;
    }
    code = git_commit_create(commit_id, s->repo, NULL, signature, signature, NULL,
                             text.ptr && *text.ptr ? text.ptr : DEFAULT_MESSAGE "\n", tree,
                             tip ? 1 : 0, parents);
    if (code < 0) {
        r = clone_failure(s, code, "cannot write the commit", err, err_size);
        goto out;
    }
    code = git_reference_create(&ref, s->repo, s->branch_ref, commit_id, 1, REFLOG_MESSAGE);
    if (code < 0)
        r = clone_failure(s, code, "cannot set the branch in the clone", err, err_size);
out:
    git_reference_free(ref);
    git_buf_dispose(&text);
    git_tree_free(tree);
    git_signature_free(signature);
    return r;
}

/* ---- the push ---- */

/* Through libgit2's transport (network remotes): refs/heads/<branch> without
 * '+'. A refusal comes back either as GIT_ENONFASTFORWARD (libgit2 compared
 * our commit with the tip the remote advertised) or through
 * push_update_reference (the server's verdict), whatever the return code. */
static int push_network(struct status_git *s, char *why, size_t why_size, char *err,
                        size_t err_size)
{
    struct git_common_call call;
    git_common_call_start(&call, &s->credentials, s->timeout_seconds);
    git_remote *remote = NULL;
    int code = remote_new(s, s->push_url, &remote);
    if (code < 0)
        return remote_failure(s, &call, code, "push", err, err_size);
    git_push_options options;
    git_push_options_init(&options, GIT_PUSH_OPTIONS_VERSION);
    git_common_callbacks_fill(&options.callbacks, &call);
    char *specs[] = {s->push_refspec};
    git_strarray refspecs = {specs, 1};
    code = git_remote_push(remote, &refspecs, &options);
    git_remote_free(remote);
    if (call.refused) {
        snprintf(why, why_size, "%s", call.message);
        return PUSH_REFUSED;
    }
    if (code == GIT_ENONFASTFORWARD) {
        snprintf(why, why_size, "%s", git_common_message());
        return PUSH_RACED;
    }
    if (code < 0)
        return remote_failure(s, &call, code, "push", err, err_size);
    return PUSH_DONE;
}

/* Copies object id, and for a tree what it holds, from one object database
 * to another, children first, so that the target never holds a tree whose
 * entries it lacks. A tree the target has is taken as complete. */
static int object_copy(git_repository *repo, git_odb *from, git_odb *to, const git_oid *id)
{
    if (git_odb_exists(to, id))
        return 0;
    git_odb_object *object = NULL;
    int code = git_odb_read(&object, from, id);
    if (code < 0)
        return code;
    if (git_odb_object_type(object) == GIT_OBJECT_TREE) {
        git_tree *tree = NULL;
        code = git_tree_lookup(&tree, repo, id);
        for (size_t i = 0; code == 0 && i < git_tree_entrycount(tree); i++) {
            const git_tree_entry *entry = git_tree_entry_byindex(tree, i);
            git_object_t type = git_tree_entry_type(entry);
            if (type == GIT_OBJECT_BLOB || type == GIT_OBJECT_TREE)
                code = object_copy(repo, from, to, git_tree_entry_id(entry));
        }
        git_tree_free(tree);
    }
    git_oid written;
    if (code == 0)
        code = git_odb_write(&written, to, git_odb_object_data(object), git_odb_object_size(object),
                             git_odb_object_type(object));
    git_odb_object_free(object);
    return code;
}

/* A remote on this host: copy the new objects into it, then move its branch
 * from base (NULL: it must not exist) to commit by compare-and-swap under
 * the ref's lock, which git's own receive-pack takes as well. */
static int push_local(struct status_git *s, const git_oid *base, const git_oid *commit_id,
                      char *why, size_t why_size, char *err, size_t err_size)
{
    git_repository *remote = NULL;
    git_reference *head = NULL, *ref = NULL;
    git_odb *from = NULL, *to = NULL;
    git_commit *commit = NULL;
    int r = PUSH_DONE;
    int code =
        git_repository_open_ext(&remote, s->push_local_path, GIT_REPOSITORY_OPEN_NO_SEARCH, NULL);
    if (code < 0) {
        error_set(err, err_size, "cannot push status branch %s to %s: %s", s->branch,
                  s->display_url, git_common_message());
        r = git_common_errno(code);
        goto out;
    }
    if (!git_repository_is_bare(remote) && git_reference_lookup(&head, remote, "HEAD") == 0 &&
        git_reference_type(head) == GIT_REFERENCE_SYMBOLIC &&
        !strcmp(git_reference_symbolic_target(head), s->branch_ref)) {
        error_set(err, err_size,
                  "cannot push status branch %s to %s: it is the branch checked out there; "
                  "check out another branch or use a bare repository",
                  s->branch, s->display_url);
        r = -EBUSY;
        goto out;
    }
    if ((code = git_repository_odb(&from, s->repo)) < 0 ||
        (code = git_repository_odb(&to, remote)) < 0 ||
        (code = git_commit_lookup(&commit, s->repo, commit_id)) < 0 ||
        (code = object_copy(s->repo, from, to, git_commit_tree_id(commit))) < 0 ||
        (code = object_copy(s->repo, from, to, commit_id)) < 0) {
        error_set(err, err_size, "cannot push status branch %s to %s: copying objects: %s",
                  s->branch, s->display_url, git_common_message());
        r = git_common_errno(code);
        goto out;
    }
    /* "must not exist" is the zero id: with force off instead, libgit2 would
     * check for an existing ref before taking the lock, not under it */
    git_oid zero = {{0}};
    code = git_reference_create_matching(&ref, remote, s->branch_ref, commit_id, 1,
                                         base ? base : &zero, REFLOG_MESSAGE);
    switch (code) {
    case 0:
        break;
    case GIT_EMODIFIED: /* it moved since our fetch */
    case GIT_EEXISTS:   /* it was created since our fetch */
    case GIT_ENOTFOUND: /* it was deleted since our fetch */
    case GIT_ELOCKED:   /* someone is moving it right now */
        snprintf(why, why_size, "the branch moved on the remote: %s", git_common_message());
        r = PUSH_RACED;
        break;
    default:
        error_set(err, err_size, "cannot push status branch %s to %s: %s", s->branch,
                  s->display_url, git_common_message());
        r = git_common_errno(code);
        break;
    }
out:
    git_commit_free(commit);
    git_odb_free(to);
    git_odb_free(from);
    git_reference_free(ref);
    git_reference_free(head);
    git_repository_free(remote);
    return r;
}

/* ---- compaction ---- */

static size_t clone_pack_count(const struct status_git *s)
{
    char *dir = git_common_text_join(git_repository_path(s->repo), "", "objects/pack");
    DIR *d = dir ? opendir(dir) : NULL;
    size_t count = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        size_t n = strlen(e->d_name);
        if (n > 5 && !strcmp(e->d_name + n - 5, ".pack"))
            count++;
    }
    if (d)
        closedir(d);
    free(dir);
    return count;
}

/* Removes the files of objects/pack named pack-* but not keep* (keep NULL:
 * all of them), and the loose objects. */
static void clone_objects_remove(const char *objects, const char *keep)
{
    DIR *d = opendir(objects);
    struct dirent *e;
    while (d && (e = readdir(d))) {
        const char *name = e->d_name;
        bool fan_out = strlen(name) == 2 && git_common_hex_value(name[0]) >= 0 && git_common_hex_value(name[1]) >= 0;
        bool pack = !strcmp(name, "pack");
        if (!fan_out && !pack)
            continue;
        char *sub = git_common_text_join(objects, "/", name);
        DIR *sd = sub ? opendir(sub) : NULL;
        struct dirent *f;
        while (sd && (f = readdir(sd))) {
            if (f->d_name[0] == '.')
                continue;
            if (pack && (strncmp(f->d_name, "pack-", 5) ||
                         (keep && !strncmp(f->d_name, keep, strlen(keep)))))
                continue;
            char *file = git_common_text_join(sub, "/", f->d_name);
            if (file)
                unlink(file);
            free(file);
        }
        if (sd)
            closedir(sd);
        if (fan_out && sub)
            rmdir(sub);
        free(sub);
    }
    if (d)
        closedir(d);
}

int status_git_compact(struct status_git *s)
{
    char err[256];
    int r = clone_open(s, err, sizeof(err));
    if (r < 0)
        return r;
    git_packbuilder *packer = NULL;
    git_revwalk *walk = NULL;
    char *objects = NULL, *keep = NULL;
    int code = git_packbuilder_new(&packer, s->repo);
    if (code == 0)
        code = git_revwalk_new(&walk, s->repo);
    bool any = false;
    const char *refs[] = {s->tracking_ref, s->branch_ref};
    for (size_t i = 0; code == 0 && i < 2; i++) {
        code = git_revwalk_push_ref(walk, refs[i]);
        any = any || code == 0;
        if (code == GIT_ENOTFOUND)
            code = 0;
    }
    if (code == 0 && any)
        code = git_packbuilder_insert_walk(packer, walk);
    if (code == 0 && git_packbuilder_object_count(packer) > 0) {
        code = git_packbuilder_write(packer, NULL, 0, NULL, NULL);
        if (code == 0)
            keep = git_common_text_join("pack-", "", git_packbuilder_name(packer));
    }
    objects = git_common_text_join(git_repository_path(s->repo), "", "objects");
    if (code < 0 || !objects || (any && !keep)) {
        r = code < 0 ? git_common_errno(code) : -ENOMEM;
        goto out;
    }
    /* the repository keeps the packs it read open: close it first */
    clone_close(s);
    clone_objects_remove(objects, keep);
    s->stats.compactions++;
out:
    free(keep);
    free(objects);
    git_revwalk_free(walk);
    git_packbuilder_free(packer);
    return r;
}

/* ---- the public functions ---- */

void status_git_free(struct status_git *s)
{
    if (!s)
        return;
    clone_close(s);
    free(s->clone_dir);
    free(s->url);
    free(s->push_url);
    free(s->display_url);
    free(s->local_path);
    free(s->push_local_path);
    free(s->branch);
    free(s->branch_ref);
    free(s->tracking_ref);
    free(s->fetch_refspec);
    free(s->push_refspec);
    free(s->author_name);
    free(s->summary_dir);
    free(s->summary_path);
    free(s->author_email);
    git_common_credentials_free(&s->credentials);
    free(s);
}

/* The urls to fetch from and push to, as git would rewrite url with the
 * insteadOf settings of the clone's config, and where they are on this
 * host when they are. */
static int urls_resolve(struct status_git *s, const char *url, char *err, size_t err_size)
{
    char *fetch = NULL, *push = NULL;
    if (url_rewrite(s->repo, url, false, &fetch) < 0 ||
        url_rewrite(s->repo, url, true, &push) < 0) {
        free(fetch);
        free(push);
        error_set(err, err_size, "status branch %s of %s: cannot read the git config: %s",
                  s->branch, s->display_url, git_common_message());
        return -EIO;
    }
    s->url = url_absolute(fetch ? fetch : url);
    s->push_url = url_absolute(push ? push : fetch ? fetch : url);
    free(fetch);
    free(push);
    if (!s->url || !s->push_url) {
        error_set(err, err_size, "status branch: out of memory");
        return -ENOMEM;
    }
    s->local_path = url_local_path(s->url);
    s->push_local_path = url_local_path(s->push_url);
    return 0;
}

int status_git_open(const struct status_git_options *options, struct status_git **out, char *err,
                    size_t err_size)
{
    *out = NULL;
    if (!options || !options->url || !*options->url || !options->clone_dir ||
        !*options->clone_dir) {
        error_set(err, err_size, "status branch: the url and the clone directory are required");
        return -EINVAL;
    }
    if (git_common_ready() < 0) {
        error_set(err, err_size, "status branch: cannot initialise libgit2: %s",
                  git_common_message());
        return -EIO;
    }
    const char *branch = options->branch && *options->branch ? options->branch : DEFAULT_BRANCH;
    if (options->spec_branch && !strcmp(branch, options->spec_branch)) {
        error_set(err, err_size,
                  "status branch %s is the spec branch: status commits must go to a branch of "
                  "their own (default %s)",
                  branch, DEFAULT_BRANCH);
        return -EINVAL;
    }
    struct status_git *s = calloc(1, sizeof(*s));
    if (!s) {
        error_set(err, err_size, "status branch: out of memory");
        return -ENOMEM;
    }
    s->timeout_seconds =
        options->timeout_seconds > 0 ? options->timeout_seconds : DEFAULT_TIMEOUT_SECONDS;
    s->branch = strdup(branch);
    s->clone_dir = strdup(options->clone_dir);
    s->display_url = git_common_url_for_display(options->url, ":***");
    s->author_name = strdup(options->author_name && *options->author_name ? options->author_name
                                                                          : DEFAULT_AUTHOR_NAME);
    s->author_email =
        strdup(options->author_email && *options->author_email ? options->author_email
                                                               : DEFAULT_AUTHOR_EMAIL);
    int credentials = git_common_credentials_copy(&s->credentials, &options->credentials);
    s->summary = options->summary;
    s->summary_userdata = options->summary_userdata;
    s->summary_dir = strdup(options->summary_dir ? options->summary_dir : "status");
    s->summary_path = strdup(options->summary_path ? options->summary_path : "STATUS.md");
    s->branch_ref = git_common_text_join("refs/heads/", "", branch);
    s->tracking_ref = git_common_text_join("refs/remotes/" REMOTE_NAME "/", "", branch);
    if (asprintf(&s->fetch_refspec, "+refs/heads/%s:refs/remotes/" REMOTE_NAME "/%s", branch,
                 branch) < 0)
        s->fetch_refspec = NULL;
    if (asprintf(&s->push_refspec, "refs/heads/%s:refs/heads/%s", branch, branch) < 0)
        s->push_refspec = NULL;
    if (!s->branch || !s->clone_dir || !s->display_url || !s->author_name || !s->author_email ||
        !s->branch_ref || !s->tracking_ref || !s->fetch_refspec || !s->push_refspec ||
        !s->summary_dir || !s->summary_path || credentials < 0) {
        status_git_free(s);
        error_set(err, err_size, "status branch: out of memory");
        return -ENOMEM;
    }
    int valid = 0;
    if (git_reference_name_is_valid(&valid, s->branch_ref) < 0 || !valid || s->branch[0] == '-') {
        error_set(err, err_size, "status branch '%s' is not a valid branch name", s->branch);
        status_git_free(s);
        return -EINVAL;
    }
    git_signature *signature = NULL;
    if (git_signature_new(&signature, s->author_name, s->author_email, 0, 0) < 0) {
        error_set(err, err_size, "status branch %s: author '%s <%s>' is refused: %s", s->branch,
                  s->author_name, s->author_email, git_common_message());
        status_git_free(s);
        return -EINVAL;
    }
    git_signature_free(signature);
    int r = clone_open(s, err, err_size);
    if (r == 0 && !git_repository_is_bare(s->repo)) {
        error_set(err, err_size, "status branch %s: the clone %s is not a bare repository",
                  s->branch, s->clone_dir);
        r = -EINVAL;
    }
    if (r == 0)
        r = urls_resolve(s, options->url, err, err_size);
    if (r == 0)
        r = clone_remote_record(s, err, err_size);
    if (r < 0) {
        status_git_free(s);
        return r;
    }
    *out = s;
    return 0;
}

/* One attempt: the commit on top of tip, pushed. PUSH_* or a negative errno;
 * commit_id unset and *unchanged true when there was nothing to commit. */
static int publish_attempt(struct status_git *s, bool has_tip, const git_oid *tip,
                           const struct status_file *files, size_t count, const char *message,
                           git_oid *commit_id, bool *unchanged, char *why, size_t why_size,
                           char *err, size_t err_size)
{
    git_commit *tip_commit = NULL;
    git_oid tree_id;
    *unchanged = false;
    int code = has_tip ? git_commit_lookup(&tip_commit, s->repo, tip) : 0;
    if (code < 0)
        return clone_failure(s, code, "cannot read the tip fetched from the remote", err, err_size);
    int r = tree_build(s, tip_commit, files, count, &tree_id, unchanged, err, err_size);
    if (r == 0 && !*unchanged)
        r = commit_make(s, tip_commit, &tree_id, message, commit_id, err, err_size);
    git_commit_free(tip_commit);
    if (r < 0 || *unchanged)
        return r;
    if (s->push_local_path && !s->hooks.push_local_as_network)
        return push_local(s, has_tip ? tip : NULL, commit_id, why, why_size, err, err_size);
    return push_network(s, why, why_size, err, err_size);
}

static void publish_done(struct status_git *s)
{
    if (!s->repo)
        return;
    if (clone_pack_count(s) > PACK_LIMIT)
        status_git_compact(s); /* a failure leaves the clone as it was */
    else if (++s->publishes_since_open >= PUBLISHES_PER_OPEN)
        clone_close(s);
}

int status_git_publish(struct status_git *s, const struct status_file *files, size_t count,
                       const char *message, char commit_out[GIT_OID_TEXT], char *err,
                       size_t err_size)
{
    commit_out[0] = 0;
    error_set(err, err_size, "%s", "");
    s->stats.publishes++;
    s->stats.last_attempts = 0;
    bool skip_fetch = s->hooks.skip_next_fetch;
    s->hooks.skip_next_fetch = false;
    int r = files_check(s, files, count, err, err_size);
    if (r == 0)
        r = clone_open(s, err, err_size);
    bool refused = false, refused_has_base = false;
    git_oid refused_base = {{0}};
    char why[384] = "";
    for (unsigned attempt = 1; r == 0 && attempt <= PUBLISH_ATTEMPTS; attempt++) {
        bool has_tip = false, unchanged = false;
        git_oid tip = {{0}}, commit_id = {{0}};
        r = skip_fetch && attempt == 1 ? tracking_tip(s, &has_tip, &tip, err, err_size)
                                       : branch_fetch(s, &has_tip, &tip, err, err_size);
        if (r < 0)
            break;
        if (refused && has_tip == refused_has_base &&
            (!has_tip || git_oid_equal(&tip, &refused_base))) {
            /* nobody else pushed: the remote refuses us for its own reasons */
            error_set(err, err_size, "cannot push status branch %s to %s: %s", s->branch,
                      s->display_url, why);
            r = -EPERM;
            break;
        }
        int outcome = publish_attempt(s, has_tip, &tip, files, count, message, &commit_id,
                                      &unchanged, why, sizeof(why), err, err_size);
        if (outcome < 0) {
            r = outcome;
            break;
        }
        if (unchanged) {
            s->stats.unchanged++;
            publish_done(s);
            return 0;
        }
        s->stats.last_attempts = attempt;
        if (outcome == PUSH_DONE) {
            tracking_ref_set(s, &commit_id); /* the next fetch would do the same */
            git_oid_tostr(commit_out, GIT_OID_TEXT, &commit_id);
            s->stats.commits++;
            publish_done(s);
            return 0;
        }
        s->stats.rejected++;
        refused = outcome == PUSH_REFUSED;
        refused_has_base = has_tip;
        if (has_tip)
            git_oid_cpy(&refused_base, &tip);
        if (attempt == PUBLISH_ATTEMPTS) {
            error_set(err, err_size,
                      "cannot push status branch %s to %s: rejected %d times in a row, other "
                      "writers pushed first (last: %s); will try again later",
                      s->branch, s->display_url, PUBLISH_ATTEMPTS, why);
            r = -EAGAIN;
        }
    }
    s->stats.failures++;
    return r;
}

void status_git_stats_get(const struct status_git *s, struct status_git_stats *out)
{
    *out = s->stats;
}

void status_git_set_test_hooks(struct status_git *s, const struct status_git_test_hooks *hooks)
{
    s->hooks = *hooks;
}
