/*
 * source_git.c - specs read from the fetched commit of a bare clone.
 *
 * The clone is rolld's own: one remote, "origin", with no configured fetch
 * refspec, so a fetch moves refs/remotes/origin/<branch> and nothing else.
 * Specs are read from blobs of the commit's tree, never from a work tree, and
 * parsed by source_dir's source_entry_parse so that a commit gives exactly
 * the snapshot a directory holding the same files gives.
 */
#include "source_git.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "git_common.h"
#include "yaml_tree.h"

#define REMOTE_NAME "origin"
#define DEFAULT_BRANCH "main"
#define DEFAULT_TIMEOUT_SECONDS 300

struct git_source {
    git_repository *repo;
    char *url;         /* as libgit2 gets it: a relative path made absolute */
    char *display_url; /* for messages: without a password the URL may hold */
    char *branch;
    char *directory;     /* "" for the root; no leading or trailing '/' */
    char *local_path;    /* the remote's path when it is on this host, else NULL */
    char *watch_path;    /* the remote's git dir; NULL for a network remote */
    char *watch_ref_dir; /* the directory of the branch's loose ref in it */
    struct git_credentials credentials; /* owns its strings */
    int timeout_seconds;
};

/* ---- names and paths ---- */

/* Same rule as source_dir's: *.yaml or *.yml, not hidden. */
static bool yaml_file_name(const char *name)
{
    size_t n = strlen(name);
    if (name[0] == '.')
        return false;
    return (n > 5 && !strcmp(name + n - 5, ".yaml")) || (n > 4 && !strcmp(name + n - 4, ".yml"));
}

/* A directory inside the repository: "" for the root, else without "./",
 * leading or trailing slashes. Caller frees. */
static char *directory_normalize(const char *directory)
{
    if (!directory)
        directory = "";
    for (;;) {
        if (directory[0] == '/')
            directory++;
        else if (directory[0] == '.' && directory[1] == '/')
            directory += 2;
        else
            break;
    }
    if (!strcmp(directory, "."))
        directory = "";
    char *out = strdup(directory);
    if (!out)
        return NULL;
    size_t n = strlen(out);
    while (n > 0 && out[n - 1] == '/')
        out[--n] = 0;
    return out;
}

static bool branch_name_valid(const char *branch)
{
    char *ref = git_common_text_join("refs/heads/", "", branch);
    int valid = 0;
    if (ref && git_reference_name_is_valid(&valid, ref) < 0)
        valid = 0;
    free(ref);
    return valid != 0;
}

/* The path of a file:// URL, %XX decoded as libgit2 decodes it. */
static char *file_url_path(const char *url)
{
    const char *path = url + strlen("file://");
    if (!strncmp(path, "localhost/", strlen("localhost/")))
        path += strlen("localhost");
    return git_common_percent_decode(path);
}

/* git's rule: "host:path" or "user@host:path" with no '/' before the ':'
 * is an SSH remote; anything else without a scheme is a path. */
static bool scp_like(const char *url)
{
    const char *colon = strchr(url, ':');
    const char *slash = strchr(url, '/');
    return colon && colon != url && (!slash || colon < slash);
}

/* Fills s->url and, for a remote on this host, s->local_path (absolute). */
static int remote_url_resolve(struct git_source *s, const char *url)
{
    if (!strncmp(url, "file://", strlen("file://"))) {
        s->url = strdup(url);
        s->local_path = file_url_path(url);
        return s->url && s->local_path ? 0 : -ENOMEM;
    }
    if (strstr(url, "://") || scp_like(url)) {
        s->url = strdup(url);
        return s->url ? 0 : -ENOMEM;
    }
    if (url[0] == '/') {
        s->local_path = strdup(url);
    } else {
        char *cwd = getcwd(NULL, 0);
        if (!cwd)
            return -errno;
        s->local_path = git_common_text_join(cwd, "/", url);
        free(cwd);
    }
    if (!s->local_path)
        return -ENOMEM;
    /* libgit2 takes an absolute path as it is (its local transport) */
    s->url = strdup(s->local_path);
    return s->url ? 0 : -ENOMEM;
}

static bool is_directory(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

/* The remote's git dir and the directory of the branch's loose ref. */
static int watch_paths_resolve(struct git_source *s)
{
    if (!s->local_path)
        return 0;
    git_repository *remote = NULL;
    if (git_repository_open_ext(&remote, s->local_path, GIT_REPOSITORY_OPEN_NO_SEARCH, NULL) == 0) {
        s->watch_path = strdup(git_repository_path(remote));
        git_repository_free(remote);
    } else {
        /* not there yet, or not ours to open: where git would put it */
        char *dot_git = git_common_text_join(s->local_path, "/", ".git");
        if (dot_git && is_directory(dot_git)) {
            s->watch_path = dot_git;
            dot_git = NULL;
        } else {
            s->watch_path = strdup(s->local_path);
        }
        free(dot_git);
    }
    if (!s->watch_path)
        return -ENOMEM;
    size_t n = strlen(s->watch_path);
    while (n > 1 && s->watch_path[n - 1] == '/')
        s->watch_path[--n] = 0;
    const char *last_slash = strrchr(s->branch, '/');
    int r = last_slash ? asprintf(&s->watch_ref_dir, "%s/refs/heads/%.*s", s->watch_path,
                                  (int)(last_slash - s->branch), s->branch)
                       : asprintf(&s->watch_ref_dir, "%s/refs/heads", s->watch_path);
    if (r < 0) {
        s->watch_ref_dir = NULL;
        return -ENOMEM;
    }
    return 0;
}

/* ---- talking to the remote ---- */

/*
 * The remote of a fetch or a push: "origin"'s url, in memory. Not
 * git_remote_lookup: libgit2 1.5 leaks a PCRE2 match block (~20 KiB) per
 * config entry each time it applies url.<base>.insteadOf (fixed in 1.6 by
 * libgit2 pull request #6382), which would grow the agent by that at every
 * fetch. So insteadOf rewriting is not applied to the remote's url.
 */
static int remote_new(struct git_source *s, git_remote **out)
{
    git_remote_create_options create;
    git_remote_create_options_init(&create, GIT_REMOTE_CREATE_OPTIONS_VERSION);
    create.repository = s->repo;
    create.flags = GIT_REMOTE_CREATE_SKIP_INSTEADOF | GIT_REMOTE_CREATE_SKIP_DEFAULT_FETCHSPEC;
    return git_remote_create_with_opts(out, s->url, &create);
}

/* The errno and the message of a failed remote operation. */
static int remote_failure(const struct git_source *s, const struct git_common_call *call, int code,
                          const char *what, char *err, size_t err_size)
{
    int r = git_common_call_errno(call, code);
    snprintf(err, err_size, "%s %s: %s", what, s->display_url, git_common_call_why(call));
    return r;
}

/* ---- the clone ---- */

static int clone_open(struct git_source *s, const char *clone_dir, char *err, size_t err_size)
{
    int code = git_repository_open_bare(&s->repo, clone_dir);
    if (code == GIT_ENOTFOUND) {
        git_repository_init_options init;
        git_repository_init_options_init(&init, GIT_REPOSITORY_INIT_OPTIONS_VERSION);
        init.flags = GIT_REPOSITORY_INIT_BARE | GIT_REPOSITORY_INIT_MKPATH;
        init.description = "rolld's clone of its spec repository";
        code = git_repository_init_ext(&s->repo, clone_dir, &init);
    }
    if (code < 0) {
        snprintf(err, err_size, "git source: cannot open or create the clone %s: %s", clone_dir,
                 git_common_message());
        return git_common_errno(code);
    }
    /* remote.origin.url, and no fetch refspec: a fetch names its own and
     * updates nothing else (the config is written directly, see remote_new) */
    git_config *config = NULL;
    git_buf current = GIT_BUF_INIT;
    code = git_repository_config(&config, s->repo);
    if (code == 0) {
        code = git_config_get_string_buf(&current, config, "remote." REMOTE_NAME ".url");
        if (code == GIT_ENOTFOUND || (code == 0 && strcmp(current.ptr, s->url)))
            code = git_config_set_string(config, "remote." REMOTE_NAME ".url", s->url);
    }
    git_buf_dispose(&current);
    git_config_free(config);
    if (code < 0) {
        snprintf(err, err_size, "git source: cannot set the remote of the clone %s to %s: %s",
                 clone_dir, s->display_url, git_common_message());
        return git_common_errno(code);
    }
    return 0;
}

int git_source_open(const struct git_source_options *options, struct git_source **out, char *err,
                    size_t err_size)
{
    *out = NULL;
    if (err_size)
        err[0] = 0;
    if (!options || !options->url || !*options->url || !options->clone_dir ||
        !*options->clone_dir) {
        snprintf(err, err_size, "git source: a url and a clone directory are required");
        return -EINVAL;
    }
    if (git_common_ready() < 0) {
        snprintf(err, err_size, "git source: cannot initialise libgit2: %s", git_common_message());
        return -EIO;
    }
    struct git_source *s = calloc(1, sizeof(*s));
    if (!s) {
        snprintf(err, err_size, "git source: out of memory");
        return -ENOMEM;
    }
    bool failed = false;
    s->branch = strdup(options->branch && *options->branch ? options->branch : DEFAULT_BRANCH);
    s->directory = directory_normalize(options->directory);
    s->display_url = git_common_url_for_display(options->url, "");
    failed = git_common_credentials_copy(&s->credentials, &options->credentials) < 0;
    s->timeout_seconds =
        options->timeout_seconds > 0 ? options->timeout_seconds : DEFAULT_TIMEOUT_SECONDS;
    int r = failed || !s->branch || !s->directory || !s->display_url ? -ENOMEM : 0;
    if (r == 0 && !branch_name_valid(s->branch)) {
        snprintf(err, err_size, "git source %s: '%s' is not a valid branch name", s->display_url,
                 s->branch);
        r = -EINVAL;
    } else if (r == 0 && (r = remote_url_resolve(s, options->url)) < 0) {
        snprintf(err, err_size, "git source %s: %s", s->display_url, strerror(-r));
    } else if (r == 0) {
        r = clone_open(s, options->clone_dir, err, err_size);
    }
    if (r == 0 && (r = watch_paths_resolve(s)) < 0)
        snprintf(err, err_size, "git source: out of memory");
    if (r == -ENOMEM && err_size && !err[0])
        snprintf(err, err_size, "git source: out of memory");
    if (r < 0) {
        git_source_free(s);
        return r;
    }
    *out = s;
    return 0;
}

void git_source_free(struct git_source *source)
{
    if (!source)
        return;
    git_repository_free(source->repo);
    free(source->url);
    free(source->display_url);
    free(source->branch);
    free(source->directory);
    free(source->local_path);
    free(source->watch_path);
    free(source->watch_ref_dir);
    git_common_credentials_free(&source->credentials);
    free(source);
}

/* ---- fetch ---- */

static int tracking_ref_read(struct git_source *s, git_oid *id)
{
    char *ref = git_common_text_join("refs/remotes/" REMOTE_NAME "/", "", s->branch);
    if (!ref)
        return -ENOMEM;
    int code = git_reference_name_to_id(id, s->repo, ref);
    free(ref);
    return code < 0 ? git_common_errno(code) : 0;
}

/* Connects, checks the remote has the branch, downloads it and moves the
 * remote-tracking branch. 0, or a negative errno with a message in err. */
static int branch_fetch(struct git_source *s, char *err, size_t err_size)
{
    struct git_common_call call;
    git_common_call_start(&call, &s->credentials, s->timeout_seconds);
    char what[320];
    snprintf(what, sizeof(what), "cannot fetch branch '%s' from", s->branch);
    if (s->local_path && access(s->local_path, F_OK) < 0) {
        int error = errno;
        snprintf(err, err_size, "%s %s: %s (was the repository moved?)", what, s->display_url,
                 strerror(error));
        return -error;
    }
    git_remote *remote = NULL;
    git_remote_callbacks callbacks;
    git_common_callbacks_fill(&callbacks, &call);
    git_proxy_options proxy;
    git_proxy_options_init(&proxy, GIT_PROXY_OPTIONS_VERSION);
    proxy.type = GIT_PROXY_AUTO; /* http.proxy, then https_proxy / no_proxy, as git does */
    char *spec = NULL;
    int r = 0;
    int code = remote_new(s, &remote);
    if (code == 0)
        code = git_remote_connect(remote, GIT_DIRECTION_FETCH, &callbacks, &proxy, NULL);
    if (code < 0) {
        r = remote_failure(s, &call, code, what, err, err_size);
        goto out;
    }
    const git_remote_head **heads = NULL;
    size_t head_count = 0;
    code = git_remote_ls(&heads, &head_count, remote);
    if (code < 0) {
        r = remote_failure(s, &call, code, what, err, err_size);
        goto out;
    }
    char *ref = git_common_text_join("refs/heads/", "", s->branch);
    bool found = false;
    for (size_t i = 0; ref && i < head_count; i++)
        found |= !strcmp(heads[i]->name, ref);
    free(ref);
    if (!found) {
        snprintf(err, err_size, "%s %s: the remote has no such branch", what, s->display_url);
        r = -ENOENT;
        goto out;
    }
    if (asprintf(&spec, "+refs/heads/%s:refs/remotes/" REMOTE_NAME "/%s", s->branch, s->branch) <
        0) {
        spec = NULL;
        snprintf(err, err_size, "%s %s: out of memory", what, s->display_url);
        r = -ENOMEM;
        goto out;
    }
    git_strarray refspecs = {&spec, 1};
    git_fetch_options fetch;
    git_fetch_options_init(&fetch, GIT_FETCH_OPTIONS_VERSION);
    fetch.callbacks = callbacks;
    fetch.prune = GIT_FETCH_NO_PRUNE;
    fetch.update_fetchhead = 0;
    fetch.download_tags = GIT_REMOTE_DOWNLOAD_TAGS_NONE;
    fetch.proxy_opts = proxy;
    code = git_remote_download(remote, &refspecs, &fetch);
    if (code == 0)
        code = git_remote_update_tips(remote, &callbacks, 0, GIT_REMOTE_DOWNLOAD_TAGS_NONE,
                                      "rolld: fetch");
    if (code < 0)
        r = remote_failure(s, &call, code, what, err, err_size);
out:
    if (remote)
        git_remote_disconnect(remote);
    git_remote_free(remote);
    free(spec);
    return r;
}

int git_source_fetch(struct git_source *source, struct git_fetch_result *result)
{
    memset(result, 0, sizeof(*result));
    git_oid before, after;
    bool had = tracking_ref_read(source, &before) == 0;
    if (had) {
        git_oid_tostr(result->previous, sizeof(result->previous), &before);
        memcpy(result->commit, result->previous, sizeof(result->commit));
    }
    int r = branch_fetch(source, result->error, sizeof(result->error));
    if (r < 0)
        return r;
    if ((r = tracking_ref_read(source, &after)) < 0) {
        snprintf(result->error, sizeof(result->error),
                 "cannot fetch branch '%s' from %s: the fetch did not set %s/%s: %s",
                 source->branch, source->display_url, REMOTE_NAME, source->branch,
                 git_common_message());
        return r;
    }
    git_oid_tostr(result->commit, sizeof(result->commit), &after);
    result->changed = !had || !git_oid_equal(&before, &after);
    /* an error (the old commit gone) counts as rewritten: nothing proves it is not */
    result->rewritten =
        had && result->changed && git_graph_descendant_of(source->repo, &after, &before) != 1;
    return 0;
}

/* ---- reading specs from a tree ---- */

struct yaml_blob {
    const char *name;
    const git_tree_entry *entry;
};

static int compare_yaml_blobs(const void *a, const void *b)
{
    return strcmp(((const struct yaml_blob *)a)->name, ((const struct yaml_blob *)b)->name);
}

static void entry_from_blob(git_repository *repo, struct spec_entry *entry, const char *file,
                            const git_oid *id)
{
    git_blob *blob = NULL;
    if (git_blob_lookup(&blob, repo, id) < 0) {
        source_entry_parse(entry, file, -EIO, NULL, 0);
        return;
    }
    git_object_size_t size = git_blob_rawsize(blob);
    if (size > YAML_TREE_MAX_BYTES) {
        source_entry_parse(entry, file, -EFBIG, NULL, 0);
        git_blob_free(blob);
        return;
    }
    /* a NUL-terminated copy, as source_read_file gives */
    char *text = malloc((size_t)size + 1);
    if (!text) {
        source_entry_parse(entry, file, -ENOMEM, NULL, 0);
    } else {
        memcpy(text, git_blob_rawcontent(blob), (size_t)size);
        text[size] = 0;
        source_entry_parse(entry, file, 0, text, (size_t)size);
        free(text);
    }
    git_blob_free(blob);
}

/* The snapshot of the YAML blobs directly under directory in commit's tree. */
static int tree_load(git_repository *repo, const git_oid *commit_id, const char *directory,
                     struct snapshot *previous, struct snapshot *out, struct diag *diag)
{
    memset(out, 0, sizeof(*out));
    char hex[GIT_OID_TEXT];
    git_oid_tostr(hex, sizeof(hex), commit_id);
    const char *where = *directory ? directory : ".";
    git_commit *commit = NULL;
    git_tree *root = NULL, *subtree = NULL;
    git_tree_entry *directory_entry = NULL;
    struct yaml_blob *blobs = NULL;
    size_t *taken = NULL; /* see snapshot_settle_taken */
    int r = 0;
    int code = git_commit_lookup(&commit, repo, commit_id);
    if (code == 0)
        code = git_commit_tree(&root, commit);
    if (code < 0) {
        diag_add(diag, where, 0, 0, "", "cannot read commit %s: %s", hex, git_common_message());
        r = git_common_errno(code);
        goto out;
    }
    const git_tree *tree = root;
    if (*directory) {
        code = git_tree_entry_bypath(&directory_entry, root, directory);
        if (code == GIT_ENOTFOUND) {
            diag_add(diag, directory, 0, 0, "",
                     "commit %s has no directory '%s'; check the source's directory", hex,
                     directory);
            r = -ENOENT;
            goto out;
        }
        if (code == 0 && git_tree_entry_type(directory_entry) != GIT_OBJECT_TREE) {
            diag_add(diag, directory, 0, 0, "",
                     "'%s' is a file, not a directory, in commit %s; check the source's "
                     "directory",
                     directory, hex);
            r = -ENOTDIR;
            goto out;
        }
        if (code == 0)
            code = git_tree_lookup(&subtree, repo, git_tree_entry_id(directory_entry));
        if (code < 0) {
            diag_add(diag, directory, 0, 0, "", "cannot read directory '%s' of commit %s: %s",
                     directory, hex, git_common_message());
            r = git_common_errno(code);
            goto out;
        }
        tree = subtree;
    }
    size_t total = git_tree_entrycount(tree), count = 0;
    blobs = calloc(total ? total : 1, sizeof(*blobs));
    out->entries = calloc(total ? total : 1, sizeof(*out->entries));
    if (!blobs || !out->entries) {
        r = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < total; i++) {
        const git_tree_entry *entry = git_tree_entry_byindex(tree, i);
        git_filemode_t mode = git_tree_entry_filemode(entry);
        const char *name = git_tree_entry_name(entry);
        /* regular files only: not trees, symlinks or submodules */
        if ((mode == GIT_FILEMODE_BLOB || mode == GIT_FILEMODE_BLOB_EXECUTABLE) &&
            yaml_file_name(name))
            blobs[count++] = (struct yaml_blob){name, entry};
    }
    qsort(blobs, count, sizeof(*blobs), compare_yaml_blobs);
    /* an entry of previous whose file is the same blob is taken as parsed:
     * a push that changes one file of many parses that one */
    size_t at = 0;
    taken = previous ? calloc(count ? count : 1, sizeof(*taken)) : NULL;
    if (previous && !taken) {
        r = -ENOMEM;
        goto out;
    }
    for (size_t i = 0; i < count; i++) {
        char *file = *directory ? git_common_text_join(directory, "/", blobs[i].name) : strdup(blobs[i].name);
        if (!file) {
            r = -ENOMEM;
            goto out;
        }
        char blob_id[GIT_OID_TEXT];
        git_oid_tostr(blob_id, sizeof(blob_id), git_tree_entry_id(blobs[i].entry));
        struct spec_entry *entry = &out->entries[out->count++];
        size_t before = snapshot_reusable(previous, &at, file);
        if (before && !strcmp(previous->entries[before - 1].blob, blob_id)) {
            *entry = previous->entries[before - 1]; /* previous gives it up once out is complete */
            taken[i] = before;
        } else {
            entry_from_blob(repo, entry, file, git_tree_entry_id(blobs[i].entry));
            snprintf(entry->blob, sizeof(entry->blob), "%s", blob_id);
        }
        free(file);
    }
    r = snapshot_index(out);
out:
    if (r == -ENOMEM)
        diag_add(diag, where, 0, 0, "", "out of memory reading commit %s", hex);
    if (out->entries)
        snapshot_settle_taken(out, previous, taken, r == 0);
    if (r < 0)
        snapshot_clear(out);
    free(taken);
    free(blobs);
    git_tree_entry_free(directory_entry);
    git_tree_free(subtree);
    git_tree_free(root);
    git_commit_free(commit);
    return r;
}

/* commit as a full or abbreviated hex id of a commit of repo. */
static int commit_lookup(git_repository *repo, const char *hex, git_commit **out)
{
    *out = NULL;
    git_oid id;
    size_t n = hex ? strlen(hex) : 0;
    if (n < GIT_OID_MINPREFIXLEN || n > GIT_OID_HEXSZ ||
        strspn(hex, "0123456789abcdefABCDEF") != n || git_oid_fromstrn(&id, hex, n) < 0)
        return GIT_EINVALIDSPEC;
    return git_commit_lookup_prefix(out, repo, &id, n);
}

int git_source_load(struct git_source *source, const char *commit, struct snapshot *out,
                    struct diag *diag)
{
    return git_source_reload(source, commit, NULL, out, diag);
}

int git_source_reload(struct git_source *source, const char *commit, struct snapshot *previous,
                      struct snapshot *out, struct diag *diag)
{
    memset(out, 0, sizeof(*out));
    git_commit *c = NULL;
    int code = commit_lookup(source->repo, commit, &c);
    if (code < 0) {
        diag_add(diag, *source->directory ? source->directory : ".", 0, 0, "",
                 "no commit '%s' in the clone of %s: %s", commit ? commit : "(null)",
                 source->display_url,
                 code == GIT_EINVALIDSPEC ? "not a commit id" : git_common_message());
        return code == GIT_EINVALIDSPEC ? -EINVAL : -ENOENT;
    }
    git_oid id;
    git_oid_cpy(&id, git_commit_id(c));
    git_commit_free(c);
    return tree_load(source->repo, &id, source->directory, previous, out, diag);
}

const char *git_source_watch_path(const struct git_source *source)
{
    return source->watch_path;
}

const char *git_source_watch_ref_directory(const struct git_source *source)
{
    return source->watch_ref_dir;
}

/* ---- commits ---- */

static char *buffer_dup(const git_buf *buf, size_t *length)
{
    char *out = malloc(buf->size + 1);
    if (!out)
        return NULL;
    memcpy(out, buf->ptr, buf->size);
    out[buf->size] = 0;
    *length = buf->size;
    return out;
}

int git_source_commit_signature(struct git_source *source, const char *commit, char **signature,
                                size_t *signature_length, char **payload, size_t *payload_length)
{
    *signature = *payload = NULL;
    *signature_length = *payload_length = 0;
    git_commit *c = NULL;
    if (commit_lookup(source->repo, commit, &c) < 0)
        return -EINVAL;
    git_oid id;
    git_oid_cpy(&id, git_commit_id(c));
    git_commit_free(c);
    git_buf sig = GIT_BUF_INIT, data = GIT_BUF_INIT;
    int code = git_commit_extract_signature(&sig, &data, source->repo, &id, NULL);
    int r = 0;
    if (code == GIT_ENOTFOUND) {
        r = -ENOENT;
    } else if (code < 0) {
        r = git_common_errno(code);
    } else {
        *signature = buffer_dup(&sig, signature_length);
        *payload = buffer_dup(&data, payload_length);
        if (!*signature || !*payload) {
            free(*signature);
            free(*payload);
            *signature = *payload = NULL;
            *signature_length = *payload_length = 0;
            r = -ENOMEM;
        }
    }
    git_buf_dispose(&sig);
    git_buf_dispose(&data);
    return r;
}

int git_source_read_file(struct git_source *source, const char *commit, const char *file,
                         char **text, size_t *length)
{
    *text = NULL;
    *length = 0;
    git_commit *c = NULL;
    git_tree *tree = NULL;
    git_tree_entry *entry = NULL;
    git_blob *blob = NULL;
    char *path = directory_normalize(file);
    if (!path)
        return -ENOMEM;
    int r = 0;
    int code = commit_lookup(source->repo, commit, &c);
    if (code < 0) {
        r = code == GIT_EINVALIDSPEC ? -EINVAL : git_common_errno(code);
        goto out;
    }
    code = git_commit_tree(&tree, c);
    if (code == 0)
        code = *path ? git_tree_entry_bypath(&entry, tree, path) : GIT_ENOTFOUND;
    if (code == 0 && git_tree_entry_type(entry) != GIT_OBJECT_BLOB)
        code = GIT_ENOTFOUND; /* a directory or a submodule: no file there */
    if (code == 0)
        code = git_blob_lookup(&blob, source->repo, git_tree_entry_id(entry));
    if (code < 0) {
        r = git_common_errno(code);
        goto out;
    }
    size_t size = (size_t)git_blob_rawsize(blob);
    *text = malloc(size + 1);
    if (!*text) {
        r = -ENOMEM;
        goto out;
    }
    memcpy(*text, git_blob_rawcontent(blob), size);
    (*text)[size] = 0;
    *length = size;
out:
    git_blob_free(blob);
    git_tree_entry_free(entry);
    git_tree_free(tree);
    git_commit_free(c);
    free(path);
    return r;
}

int git_source_commit_info(struct git_source *source, const char *commit, char *subject,
                           size_t subject_size, char *author, size_t author_size)
{
    if (subject_size)
        subject[0] = 0;
    if (author_size)
        author[0] = 0;
    git_commit *c = NULL;
    int code = commit_lookup(source->repo, commit, &c);
    if (code < 0)
        return code == GIT_EINVALIDSPEC ? -EINVAL : git_common_errno(code);
    const char *message = git_commit_message(c);
    if (!message)
        message = "";
    message += strspn(message, "\r\n");
    size_t line = strcspn(message, "\n");
    while (line > 0 && (message[line - 1] == '\r' || message[line - 1] == ' '))
        line--;
    if (subject_size)
        snprintf(subject, subject_size, "%.*s", (int)line, message);
    const git_signature *who = git_commit_author(c);
    if (author_size && who)
        snprintf(author, author_size, "%s <%s>", who->name ? who->name : "",
                 who->email ? who->email : "");
    git_commit_free(c);
    return 0;
}

/* ---- writing rolld's own branches ---- */

static int revert_commit_create(struct git_source *s, const char *file, const char *content,
                                size_t length, const char *message, const char *author_name,
                                const char *author_email, git_oid *out, char *err, size_t err_size)
{
    git_oid parent_id, blob_id, tree_id;
    git_commit *parent = NULL;
    git_tree *tree = NULL, *updated = NULL;
    git_tree_entry *existing = NULL;
    git_signature *who = NULL;
    int r = tracking_ref_read(s, &parent_id);
    if (r < 0) {
        snprintf(err, err_size,
                 "cannot write a revert of %s: branch '%s' of %s was never fetched; fetch first",
                 file, s->branch, s->display_url);
        return r == -ENOENT ? -ENOENT : r;
    }
    git_tree_update update = {.path = file};
    int code = git_commit_lookup(&parent, s->repo, &parent_id);
    if (code == 0)
        code = git_commit_tree(&tree, parent);
    if (code == 0 && content) {
        code = git_blob_create_from_buffer(&blob_id, s->repo, content, length);
        update.action = GIT_TREE_UPDATE_UPSERT;
        git_oid_cpy(&update.id, &blob_id);
        update.filemode = GIT_FILEMODE_BLOB;
    } else if (code == 0) {
        update.action = GIT_TREE_UPDATE_REMOVE;
        if (git_tree_entry_bypath(&existing, tree, file) == GIT_ENOTFOUND) {
            snprintf(err, err_size,
                     "cannot remove %s in a revert: branch '%s' of %s has no such file", file,
                     s->branch, s->display_url);
            r = -ENOENT;
            goto out;
        }
    }
    if (code == 0)
        code = git_tree_create_updated(&tree_id, s->repo, tree, 1, &update);
    if (code == 0)
        code = git_tree_lookup(&updated, s->repo, &tree_id);
    if (code == 0)
        code = git_signature_now(&who, author_name && *author_name ? author_name : "rolld",
                                 author_email && *author_email ? author_email : "rolld@localhost");
    if (code == 0) {
        const git_commit *parents[] = {parent};
        code = git_commit_create(out, s->repo, NULL, who, who, NULL,
                                 message && *message ? message : "rolld: revert\n", updated, 1,
                                 parents);
    }
    if (code < 0) {
        snprintf(err, err_size, "cannot write a revert of %s on branch '%s' of %s: %s", file,
                 s->branch, s->display_url, git_common_message());
        r = git_common_errno(code);
    }
out:
    git_signature_free(who);
    git_tree_entry_free(existing);
    git_tree_free(updated);
    git_tree_free(tree);
    git_commit_free(parent);
    return r;
}

int git_source_push_revert(struct git_source *source, const char *branch, const char *file,
                           const char *content, size_t length, const char *message,
                           const char *author_name, const char *author_email,
                           char commit_out[GIT_OID_TEXT], char *err, size_t err_size)
{
    commit_out[0] = 0;
    if (!branch || !branch_name_valid(branch)) {
        snprintf(err, err_size, "cannot push a revert: '%s' is not a valid branch name",
                 branch ? branch : "(null)");
        return -EINVAL;
    }
    char *path = directory_normalize(file);
    if (!path) {
        snprintf(err, err_size, "cannot push a revert: out of memory");
        return -ENOMEM;
    }
    if (!*path) {
        free(path);
        snprintf(err, err_size, "cannot push a revert to %s: no file named", branch);
        return -EINVAL;
    }
    git_oid id;
    int r = revert_commit_create(source, path, content, length, message, author_name, author_email,
                                 &id, err, err_size);
    free(path);
    if (r < 0)
        return r;
    char *ref = git_common_text_join("refs/heads/", "", branch);
    char *spec = ref ? git_common_text_join("+", ref, "") : NULL;
    char *full_spec = spec ? git_common_text_join(spec, ":", ref) : NULL;
    git_reference *local = NULL;
    git_remote *remote = NULL;
    struct git_common_call call;
    git_common_call_start(&call, &source->credentials, source->timeout_seconds);
    char what[320];
    snprintf(what, sizeof(what), "cannot push branch '%s' to", branch);
    int code;
    if (!full_spec) {
        snprintf(err, err_size, "%s %s: out of memory", what, source->display_url);
        r = -ENOMEM;
        goto out;
    }
    code = git_reference_create(&local, source->repo, ref, &id, 1, "rolld: revert");
    if (code == 0)
        code = remote_new(source, &remote);
    if (code == 0) {
        git_push_options push;
        git_push_options_init(&push, GIT_PUSH_OPTIONS_VERSION);
        git_common_callbacks_fill(&push.callbacks, &call);
        push.proxy_opts.type = GIT_PROXY_AUTO;
        git_strarray refspecs = {&full_spec, 1};
        code = git_remote_push(remote, &refspecs, &push);
    }
    if (code < 0) {
        r = remote_failure(source, &call, code, what, err, err_size);
    } else if (call.refused) {
        snprintf(err, err_size, "%s %s: %s", what, source->display_url, call.message);
        r = -EPERM;
    } else {
        git_oid_tostr(commit_out, GIT_OID_TEXT, &id);
    }
out:
    git_remote_free(remote);
    git_reference_free(local);
    free(full_spec);
    free(spec);
    free(ref);
    return r;
}

/* ---- rolld plan --repo ---- */

int git_repo_load_revision(const char *repo_path, const char *rev, const char *directory,
                           struct snapshot *out, char commit_out[GIT_OID_TEXT], struct diag *diag)
{
    memset(out, 0, sizeof(*out));
    commit_out[0] = 0;
    if (git_common_ready() < 0) {
        diag_add(diag, repo_path, 0, 0, "", "cannot initialise libgit2: %s", git_common_message());
        return -EIO;
    }
    git_repository *repo = NULL;
    git_object *object = NULL, *commit = NULL;
    char *dir = directory_normalize(directory);
    int r = 0;
    int code = git_repository_open_ext(&repo, repo_path, 0, NULL);
    if (code < 0) {
        diag_add(diag, repo_path, 0, 0, "", "not a Git repository: %s", git_common_message());
        r = git_common_errno(code);
        goto out;
    }
    code = git_revparse_single(&object, repo, rev);
    if (code == 0)
        code = git_object_peel(&commit, object, GIT_OBJECT_COMMIT);
    if (code < 0) {
        diag_add(diag, repo_path, 0, 0, "", "revision '%s' is not a commit of the repository: %s",
                 rev, git_common_message());
        r = code == GIT_ENOTFOUND || code == GIT_EINVALIDSPEC ? -ENOENT : git_common_errno(code);
        goto out;
    }
    if (!dir) {
        diag_add(diag, repo_path, 0, 0, "", "out of memory");
        r = -ENOMEM;
        goto out;
    }
    git_oid_tostr(commit_out, GIT_OID_TEXT, git_object_id(commit));
    r = tree_load(repo, git_object_id(commit), dir, NULL, out, diag);
out:
    free(dir);
    git_object_free(commit);
    git_object_free(object);
    git_repository_free(repo);
    return r;
}
