/*
 * test_source_git.c - reconciler/source_git.c against real repositories made
 * with the git command in a temporary directory (removed at the end), with
 * the machine's and the user's git configuration shut out.
 *
 * The last test runs the rolld binary named by $ROLLD (tests/unit/
 * CMakeLists.txt sets it) and is skipped when it is not set.
 */
#include <errno.h>
#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "source_git.h"
#include "unit_helpers.h"

#define GIT                                                                                        \
    "git -c user.name=t -c user.email=t@example.com -c init.defaultBranch=main "                   \
    "-c commit.gpgsign=false -c tag.gpgsign=false -c advice.detachedHead=false"

static char root[PATH_MAX];

/* ---- shell ---- */

static void sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void sh(const char *fmt, ...)
{
    char command[8192];
    va_list args;
    va_start(args, fmt);
    vsnprintf(command, sizeof(command), fmt, args);
    va_end(args);
    int status = system(command);
    if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("command failed (status %d): %s", status, command);
}

/* stdout of a command, without its last newline, and its exit status. */
static char *sh_output_status(int *exit_status, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static char *sh_output_status(int *exit_status, const char *fmt, ...)
{
    char command[8192];
    va_list args;
    va_start(args, fmt);
    vsnprintf(command, sizeof(command), fmt, args);
    va_end(args);
    FILE *p = popen(command, "r");
    assert_non_null(p);
    size_t size = 0, capacity = 4096;
    char *text = malloc(capacity);
    assert_non_null(text);
    size_t n;
    while ((n = fread(text + size, 1, capacity - size - 1, p)) > 0) {
        size += n;
        if (capacity - size < 2) {
            capacity *= 2;
            text = realloc(text, capacity);
            assert_non_null(text);
        }
    }
    text[size] = 0;
    int status = pclose(p);
    *exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    if (size > 0 && text[size - 1] == '\n')
        text[size - 1] = 0;
    return text;
}

#define sh_output(...) sh_output_ok(__VA_ARGS__)
static char *sh_output_ok(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *sh_output_ok(const char *fmt, ...)
{
    char command[8192];
    va_list args;
    va_start(args, fmt);
    vsnprintf(command, sizeof(command), fmt, args);
    va_end(args);
    int status;
    char *text = sh_output_status(&status, "%s", command);
    if (status != 0)
        fail_msg("command failed (exit %d): %s", status, command);
    return text;
}

static void write_file(const char *path, const char *text)
{
    char dir[PATH_MAX];
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash) {
        *slash = 0;
        sh("mkdir -p '%s'", dir);
    }
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(text, f);
    assert_int_equal(fclose(f), 0);
}

/* ---- repositories ---- */

struct repo {
    char dir[PATH_MAX];    /* everything of one test */
    char origin[PATH_MAX]; /* bare: what rolld fetches from */
    char work[PATH_MAX];   /* a clone that commits and pushes */
    char clone[PATH_MAX];  /* rolld's clone */
};

static void repo_new(struct repo *repo, const char *name)
{
    snprintf(repo->dir, sizeof(repo->dir), "%s/%s", root, name);
    snprintf(repo->origin, sizeof(repo->origin), "%s/origin.git", repo->dir);
    snprintf(repo->work, sizeof(repo->work), "%s/work", repo->dir);
    snprintf(repo->clone, sizeof(repo->clone), "%s/state/clone", repo->dir);
    sh("mkdir -p '%s' && " GIT " init -q --bare -b main '%s' && " GIT
       " init -q -b main '%s' && " GIT " -C '%s' remote add origin '%s'",
       repo->dir, repo->origin, repo->work, repo->work, repo->origin);
}

static void work_write(const struct repo *repo, const char *file, const char *text)
{
    char path[PATH_MAX];
    snprintf(path, sizeof(path), "%s/%s", repo->work, file);
    write_file(path, text);
}

/* Copies a file of the source tree (ROLLD_SOURCE_DIR) into the work tree. */
static void work_copy(const struct repo *repo, const char *file, const char *source_relative)
{
    size_t length;
    char *text = read_source_file(source_relative, &length);
    work_write(repo, file, text);
    free(text);
}

static void work_commit(const struct repo *repo, const char *message)
{
    sh("cd '%s' && " GIT " add -A && " GIT " commit -q -m '%s'", repo->work, message);
}

static void work_push(const struct repo *repo)
{
    sh("cd '%s' && " GIT " push -q origin main 2>/dev/null", repo->work);
}

static char *work_rev(const struct repo *repo, const char *rev)
{
    return sh_output("cd '%s' && " GIT " rev-parse '%s'", repo->work, rev);
}

/* The files of rev under directory, checked out into dest/<directory>. */
static void work_export(const struct repo *repo, const char *rev, const char *dest)
{
    sh("mkdir -p '%s' && cd '%s' && " GIT " archive '%s' | tar -x -C '%s'", dest, repo->work, rev,
       dest);
}

static const char *const invalid_spec = "# an unknown key on line 5\n"
                                        "name: broken\n"
                                        "applications:\n"
                                        "  - name: app\n"
                                        "    replicas: 3\n"
                                        "    import_path: app:deployment\n"
                                        "    deployments:\n"
                                        "      - name: Model\n";

static const char *const minimal_spec = "name: %s\n"
                                        "applications:\n"
                                        "  - name: app\n"
                                        "    import_path: app:deployment\n"
                                        "    deployments:\n"
                                        "      - name: Model\n"
                                        "        num_replicas: %d\n"
                                        "backend:\n"
                                        "  process:\n"
                                        "    applications:\n"
                                        "      - name: app\n"
                                        "        command: [model-server]\n";

static void work_write_minimal(const struct repo *repo, const char *file, const char *name,
                               int replicas)
{
    char text[1024];
    snprintf(text, sizeof(text), minimal_spec, name, replicas);
    work_write(repo, file, text);
}

/* The example services of version v (1 or 2) under services/, plus an
 * invalid file, a file in a subdirectory, a hidden file and a non-YAML file
 * (which a load ignores), and a spec outside services/. */
static void work_write_services(const struct repo *repo, int v)
{
    static const char *const names[] = {"chat",      "embed",     "ocr",   "search",
                                        "summarize", "translate", "vision"};
    const char *source_dir = getenv("ROLLD_SOURCE_DIR");
    assert_non_null(source_dir);
    sh("rm -rf '%s/services'", repo->work);
    for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        char source[PATH_MAX], file[PATH_MAX];
        snprintf(source, sizeof(source), "%s/examples/services/v%d/%s.yaml", source_dir, v,
                 names[i]);
        if (access(source, R_OK) < 0)
            continue;
        snprintf(source, sizeof(source), "examples/services/v%d/%s.yaml", v, names[i]);
        snprintf(file, sizeof(file), "services/%s.yaml", names[i]);
        work_copy(repo, file, source);
    }
    work_write(repo, "services/broken.yml", invalid_spec);
    work_write_minimal(repo, "services/nested/deep.yaml", "deep", 1);
    work_write_minimal(repo, "services/.hidden.yaml", "hidden", 1);
    work_write(repo, "services/README.md", "not a spec\n");
    work_write_minimal(repo, "outside.yaml", "outside", 1);
}

static struct git_source *source_open_url(const struct repo *repo, const char *url,
                                          const char *branch, const char *directory)
{
    struct git_source_options options = {
        .url = url, .branch = branch, .directory = directory, .clone_dir = repo->clone};
    struct git_source *source = NULL;
    char err[512] = "";
    int r = git_source_open(&options, &source, err, sizeof(err));
    if (r < 0)
        fail_msg("git_source_open(%s): %d %s", url, r, err);
    assert_non_null(source);
    return source;
}

static struct git_source *source_open(const struct repo *repo, const char *directory)
{
    return source_open_url(repo, repo->origin, "main", directory);
}

static void fetch_ok(struct git_source *source, struct git_fetch_result *result)
{
    int r = git_source_fetch(source, result);
    if (r < 0)
        fail_msg("git_source_fetch: %d %s", r, result->error);
    assert_string_equal(result->error, "");
}

static void load_ok(struct git_source *source, const char *commit, struct snapshot *snapshot)
{
    struct diag diag = DIAG_INIT;
    int r = git_source_load(source, commit, snapshot, &diag);
    if (r < 0 || diag.count)
        print_diag(&diag);
    assert_int_equal(r, 0);
    assert_int_equal(diag.count, 0);
    diag_clear(&diag);
}

/* "<prefix>" replaced by "" in text; caller frees. */
static char *text_without(const char *text, const char *prefix)
{
    char *out = strdup(text), *o = out;
    assert_non_null(out);
    size_t n = strlen(prefix);
    for (const char *p = text; *p;) {
        if (n && !strncmp(p, prefix, n)) {
            p += n;
            continue;
        }
        *o++ = *p++;
    }
    *o = 0;
    return out;
}

/* The snapshot of a commit is the one of a directory holding its files,
 * with repository paths (repo_directory + name) instead of directory ones. */
static void expect_same_snapshot(const struct snapshot *git, const char *repo_directory,
                                 const char *dir_path)
{
    struct snapshot dir = {0};
    struct diag diag = DIAG_INIT;
    assert_int_equal(source_dir_load(dir_path, &dir, &diag), 0);
    assert_int_equal(diag.count, 0);
    char dir_prefix[PATH_MAX], repo_prefix[PATH_MAX];
    snprintf(dir_prefix, sizeof(dir_prefix), "%s/", dir_path);
    snprintf(repo_prefix, sizeof(repo_prefix), "%s%s", repo_directory, *repo_directory ? "/" : "");
    assert_int_equal(git->count, dir.count);
    assert_int_equal(git->named_count, dir.named_count);
    for (size_t i = 0; i < dir.count; i++) {
        const struct spec_entry *g = &git->entries[i], *d = &dir.entries[i];
        char expected_file[PATH_MAX];
        assert_true(!strncmp(d->file, dir_prefix, strlen(dir_prefix)));
        snprintf(expected_file, sizeof(expected_file), "%s%s", repo_prefix,
                 d->file + strlen(dir_prefix));
        assert_string_equal(g->file, expected_file);
        if (d->name)
            assert_string_equal(g->name, d->name);
        else
            assert_null(g->name);
        assert_int_equal(g->spec != NULL, d->spec != NULL);
        if (d->spec)
            assert_string_equal(g->spec->version, d->spec->version);
        assert_int_equal(g->errors.count, d->errors.count);
        for (size_t e = 0; e < d->errors.count; e++) {
            const struct diag_entry *ge = &g->errors.entries[e], *de = &d->errors.entries[e];
            char *expected_message = text_without(de->message, dir_prefix);
            char *message = text_without(ge->message, repo_prefix);
            char *dmessage = text_without(expected_message, repo_prefix);
            assert_true(!strncmp(de->file, dir_prefix, strlen(dir_prefix)));
            snprintf(expected_file, sizeof(expected_file), "%s%s", repo_prefix,
                     de->file + strlen(dir_prefix));
            assert_string_equal(ge->file, expected_file);
            assert_int_equal(ge->line, de->line);
            assert_int_equal(ge->column, de->column);
            assert_string_equal(ge->field, de->field);
            assert_string_equal(message, dmessage);
            free(expected_message);
            free(message);
            free(dmessage);
        }
    }
    for (size_t i = 0; i < dir.named_count; i++)
        assert_string_equal(git->by_name[i]->name, dir.by_name[i]->name);
    snapshot_clear(&dir);
}

static const struct spec_entry *entry_by_file(const struct snapshot *snapshot, const char *file)
{
    for (size_t i = 0; i < snapshot->count; i++)
        if (!strcmp(snapshot->entries[i].file, file))
            return &snapshot->entries[i];
    return NULL;
}

/* ---- tests ---- */

static void test_fetch_plain_path_loads_like_a_directory(void **state)
{
    struct repo repo;
    repo_new(&repo, "plain");
    work_write_services(&repo, 1);
    work_commit(&repo, "v1");
    work_push(&repo);
    char *head = work_rev(&repo, "HEAD");

    struct git_source *source = source_open(&repo, "services");
    struct git_fetch_result result;
    fetch_ok(source, &result);
    assert_string_equal(result.commit, head);
    assert_string_equal(result.previous, "");
    assert_true(result.changed);
    assert_false(result.rewritten);

    struct snapshot snapshot;
    load_ok(source, result.commit, &snapshot);
    char exported[PATH_MAX], services[PATH_MAX];
    snprintf(exported, sizeof(exported), "%s/export", repo.dir);
    snprintf(services, sizeof(services), "%s/services", exported);
    work_export(&repo, head, exported);
    expect_same_snapshot(&snapshot, "services", services);

    /* the invalid file: its errors carry its repository path and a place */
    const struct spec_entry *broken = entry_by_file(&snapshot, "services/broken.yml");
    assert_non_null(broken);
    assert_null(broken->spec);
    assert_true(broken->errors.count >= 1);
    assert_string_equal(broken->errors.entries[0].file, "services/broken.yml");
    assert_int_equal(broken->errors.entries[0].line, 5);
    assert_non_null(entry_by_file(&snapshot, "services/chat.yaml"));
    assert_non_null(entry_by_file(&snapshot, "services/chat.yaml")->spec);
    assert_null(entry_by_file(&snapshot, "services/nested/deep.yaml"));
    assert_null(entry_by_file(&snapshot, "services/.hidden.yaml"));
    assert_null(snapshot_find(&snapshot, "outside"));

    /* one file of a commit, as it is in the repository */
    char *text = NULL;
    size_t length = 0;
    assert_int_equal(git_source_read_file(source, head, "services/broken.yml", &text, &length), 0);
    assert_int_equal(length, strlen(invalid_spec));
    assert_string_equal(text, invalid_spec);
    free(text);
    assert_int_equal(git_source_read_file(source, head, "outside.yaml", &text, &length), 0);
    assert_non_null(strstr(text, "name: outside"));
    free(text);
    assert_int_equal(git_source_read_file(source, head, "services/gone.yaml", &text, &length),
                     -ENOENT);
    assert_null(text);
    assert_int_equal(git_source_read_file(source, head, "services", &text, &length), -ENOENT);
    assert_int_equal(git_source_read_file(source, "zz", "outside.yaml", &text, &length), -EINVAL);

    /* an abbreviated commit id does as well */
    char abbreviated[13];
    snprintf(abbreviated, sizeof(abbreviated), "%.12s", head);
    struct snapshot again;
    load_ok(source, abbreviated, &again);
    assert_int_equal(again.count, snapshot.count);
    snapshot_clear(&again);

    /* the clone is bare, under the state dir, with origin at the url */
    char *bare = sh_output("git -C '%s' rev-parse --is-bare-repository", repo.clone);
    assert_string_equal(bare, "true");
    char *url = sh_output("git -C '%s' config remote.origin.url", repo.clone);
    assert_string_equal(url, repo.origin);
    free(bare);
    free(url);

    /* a network remote has nothing to watch; a local one its git dir */
    assert_string_equal(git_source_watch_path(source), repo.origin);
    char refs[PATH_MAX];
    snprintf(refs, sizeof(refs), "%s/refs/heads", repo.origin);
    assert_string_equal(git_source_watch_ref_directory(source), refs);

    snapshot_clear(&snapshot);
    git_source_free(source);
    free(head);
}

static void test_fetch_file_url_and_relative_path(void **state)
{
    struct repo repo;
    repo_new(&repo, "file-url");
    work_write_minimal(&repo, "a.yaml", "a", 1);
    work_commit(&repo, "one");
    work_push(&repo);
    char *head = work_rev(&repo, "HEAD");

    char url[PATH_MAX + 16];
    snprintf(url, sizeof(url), "file://%s", repo.origin);
    struct git_source *source = source_open_url(&repo, url, NULL, NULL);
    struct git_fetch_result result;
    fetch_ok(source, &result);
    assert_string_equal(result.commit, head);
    struct snapshot snapshot;
    load_ok(source, result.commit, &snapshot);
    assert_int_equal(snapshot.count, 1);
    assert_string_equal(snapshot.entries[0].file, "a.yaml");
    assert_non_null(snapshot.entries[0].spec);
    snapshot_clear(&snapshot);
    assert_string_equal(git_source_watch_path(source), repo.origin);
    git_source_free(source);

    /* the same clone, reopened with a relative path: the url is updated,
     * and the path stays good after the working directory changes */
    char cwd[PATH_MAX];
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_int_equal(chdir(repo.dir), 0);
    source = source_open_url(&repo, "origin.git", "main", "");
    assert_int_equal(chdir("/"), 0);
    char *configured = sh_output("git -C '%s' config remote.origin.url", repo.clone);
    assert_string_equal(configured, repo.origin);
    fetch_ok(source, &result);
    assert_string_equal(result.commit, head);
    assert_false(result.changed);
    assert_int_equal(chdir(cwd), 0);

    /* a network remote: nothing to watch */
    struct repo net;
    repo_new(&net, "network");
    struct git_source *remote =
        source_open_url(&net, "https://git.example.invalid/specs.git", "main", NULL);
    assert_null(git_source_watch_path(remote));
    assert_null(git_source_watch_ref_directory(remote));
    git_source_free(remote);

    free(configured);
    git_source_free(source);
    free(head);
}

static void test_second_fetch_changed_or_not(void **state)
{
    struct repo repo;
    repo_new(&repo, "changes");
    work_write_minimal(&repo, "a.yaml", "a", 1);
    work_write_minimal(&repo, "b.yaml", "b", 1);
    work_commit(&repo, "one");
    work_push(&repo);
    char *first = work_rev(&repo, "HEAD");

    struct git_source *source = source_open(&repo, NULL);
    struct git_fetch_result result;
    fetch_ok(source, &result);
    assert_true(result.changed);

    fetch_ok(source, &result);
    assert_false(result.changed);
    assert_false(result.rewritten);
    assert_string_equal(result.commit, first);
    assert_string_equal(result.previous, first);

    work_write_minimal(&repo, "a.yaml", "a", 2);
    work_commit(&repo, "two");
    work_push(&repo);
    char *second = work_rev(&repo, "HEAD");
    fetch_ok(source, &result);
    assert_true(result.changed);
    assert_false(result.rewritten);
    assert_string_equal(result.previous, first);
    assert_string_equal(result.commit, second);

    /* both commits stay readable, with their own versions */
    struct snapshot old, next;
    load_ok(source, first, &old);
    load_ok(source, second, &next);
    assert_string_not_equal(old.entries[0].spec->version, next.entries[0].spec->version);

    /* a reload from the first commit's snapshot parses only the blob that
     * changed (a.yaml) and takes b.yaml's entry over as it was */
    const struct service_spec *b_spec = old.entries[1].spec;
    struct snapshot again;
    struct diag diag = DIAG_INIT;
    assert_int_equal(git_source_reload(source, second, &old, &again, &diag), 0);
    assert_int_equal(diag.count, 0);
    assert_int_equal(again.count, 2);
    assert_ptr_equal(again.entries[1].spec, b_spec);
    assert_null(old.entries[1].spec); /* given up by old */
    assert_non_null(old.entries[0].spec);
    assert_ptr_not_equal(again.entries[0].spec, old.entries[0].spec);
    assert_string_equal(again.entries[0].spec->version, next.entries[0].spec->version);
    assert_non_null(snapshot_find(&again, "b"));
    snapshot_clear(&again);
    snapshot_clear(&old);
    snapshot_clear(&next);

    git_source_free(source);
    free(first);
    free(second);
}

static void test_force_push_is_rewritten(void **state)
{
    struct repo repo;
    repo_new(&repo, "force");
    work_write_minimal(&repo, "a.yaml", "a", 1);
    work_commit(&repo, "one");
    work_write_minimal(&repo, "a.yaml", "a", 2);
    work_commit(&repo, "two");
    work_push(&repo);

    struct git_source *source = source_open(&repo, NULL);
    struct git_fetch_result result;
    fetch_ok(source, &result);
    char *before = work_rev(&repo, "HEAD");

    sh("cd '%s' && " GIT " reset -q --hard HEAD~1", repo.work);
    work_write_minimal(&repo, "a.yaml", "a", 3);
    work_commit(&repo, "three, instead of two");
    sh("cd '%s' && " GIT " push -q --force origin main 2>/dev/null", repo.work);
    char *after = work_rev(&repo, "HEAD");

    fetch_ok(source, &result);
    assert_true(result.changed);
    assert_true(result.rewritten);
    assert_string_equal(result.previous, before);
    assert_string_equal(result.commit, after);

    /* a fast-forward after that is not a rewrite */
    work_write_minimal(&repo, "a.yaml", "a", 4);
    work_commit(&repo, "four");
    work_push(&repo);
    fetch_ok(source, &result);
    assert_true(result.changed);
    assert_false(result.rewritten);

    git_source_free(source);
    free(before);
    free(after);
}

static void test_unreachable_origin_keeps_last_commit(void **state)
{
    struct repo repo;
    repo_new(&repo, "unreachable");
    work_write_minimal(&repo, "a.yaml", "a", 1);
    work_commit(&repo, "one");
    work_push(&repo);

    struct git_source *source = source_open(&repo, NULL);
    struct git_fetch_result result;
    fetch_ok(source, &result);
    char good[GIT_OID_TEXT];
    memcpy(good, result.commit, sizeof(good));

    sh("mv '%s' '%s.moved'", repo.origin, repo.origin);
    int r = git_source_fetch(source, &result);
    assert_true(r < 0);
    assert_string_equal(result.commit, good);
    assert_false(result.changed);
    assert_non_null(strstr(result.error, repo.origin));
    assert_non_null(strstr(result.error, "'main'"));

    struct snapshot snapshot;
    load_ok(source, good, &snapshot);
    assert_int_equal(snapshot.count, 1);
    snapshot_clear(&snapshot);

    /* a directory that is not a repository: libgit2's own error */
    sh("mkdir '%s'", repo.origin);
    r = git_source_fetch(source, &result);
    assert_true(r < 0);
    assert_string_equal(result.commit, good);
    assert_non_null(strstr(result.error, repo.origin));

    /* back where it was: fetches again */
    sh("rmdir '%s' && mv '%s.moved' '%s'", repo.origin, repo.origin, repo.origin);
    fetch_ok(source, &result);
    assert_string_equal(result.commit, good);
    assert_false(result.changed);
    git_source_free(source);
}

static void test_missing_branch_is_an_error(void **state)
{
    struct repo repo;
    repo_new(&repo, "no-branch");
    work_write_minimal(&repo, "a.yaml", "a", 1);
    work_commit(&repo, "one");
    work_push(&repo);

    struct git_source *source = source_open_url(&repo, repo.origin, "release/v2", NULL);
    struct git_fetch_result result;
    int r = git_source_fetch(source, &result);
    assert_int_equal(r, -ENOENT);
    assert_string_equal(result.commit, "");
    assert_non_null(strstr(result.error, "release/v2"));
    assert_non_null(strstr(result.error, repo.origin));
    char refs[PATH_MAX];
    snprintf(refs, sizeof(refs), "%s/refs/heads/release", repo.origin);
    assert_string_equal(git_source_watch_ref_directory(source), refs);
    git_source_free(source);

    /* a branch deleted on the remote after a fetch: an error, the last commit kept */
    sh("cd '%s' && " GIT " push -q origin main:gone 2>/dev/null", repo.work);
    source = source_open_url(&repo, repo.origin, "gone", NULL);
    fetch_ok(source, &result);
    char good[GIT_OID_TEXT];
    memcpy(good, result.commit, sizeof(good));
    sh("cd '%s' && " GIT " push -q origin :gone 2>/dev/null", repo.work);
    r = git_source_fetch(source, &result);
    assert_int_equal(r, -ENOENT);
    assert_string_equal(result.commit, good);
    git_source_free(source);

    /* an invalid branch name is refused at open */
    struct git_source_options options = {
        .url = repo.origin, .branch = "bad..name", .clone_dir = repo.clone};
    char err[512] = "";
    assert_int_equal(git_source_open(&options, &source, err, sizeof(err)), -EINVAL);
    assert_null(source);
    assert_non_null(strstr(err, "bad..name"));
}

static void test_directory_filter(void **state)
{
    struct repo repo;
    repo_new(&repo, "filter");
    work_write_minimal(&repo, "services/a.yaml", "a", 1);
    work_write_minimal(&repo, "services/b.yml", "b", 1);
    work_write_minimal(&repo, "services/sub/c.yaml", "c", 1);
    work_write_minimal(&repo, "services/.d.yaml", "d", 1);
    work_write_minimal(&repo, "services/e.yaml.bak", "e", 1);
    work_write_minimal(&repo, "top.yaml", "top", 1);
    sh("mkdir -p '%s/services/dir.yaml' && cp '%s/top.yaml' '%s/services/dir.yaml/f.yaml'",
       repo.work, repo.work, repo.work);
    sh("cd '%s/services' && ln -s a.yaml link.yaml", repo.work);
    work_commit(&repo, "files");
    work_push(&repo);

    struct git_source *source = source_open(&repo, "services/");
    struct git_fetch_result result;
    fetch_ok(source, &result);
    struct snapshot snapshot;
    load_ok(source, result.commit, &snapshot);
    assert_int_equal(snapshot.count, 2);
    assert_string_equal(snapshot.entries[0].file, "services/a.yaml");
    assert_string_equal(snapshot.entries[1].file, "services/b.yml");
    assert_non_null(snapshot_find(&snapshot, "b"));
    snapshot_clear(&snapshot);
    git_source_free(source);

    source = source_open(&repo, "");
    fetch_ok(source, &result);
    load_ok(source, result.commit, &snapshot);
    assert_int_equal(snapshot.count, 1);
    assert_string_equal(snapshot.entries[0].file, "top.yaml");
    snapshot_clear(&snapshot);
    git_source_free(source);

    source = source_open(&repo, "./services/sub");
    fetch_ok(source, &result);
    load_ok(source, result.commit, &snapshot);
    assert_int_equal(snapshot.count, 1);
    assert_string_equal(snapshot.entries[0].file, "services/sub/c.yaml");
    snapshot_clear(&snapshot);
    git_source_free(source);

    /* a directory the commit does not have, or a file */
    const char *missing[] = {"nowhere", "top.yaml"};
    for (int i = 0; i < 2; i++) {
        source = source_open(&repo, missing[i]);
        fetch_ok(source, &result);
        struct diag diag = DIAG_INIT;
        int r = git_source_load(source, result.commit, &snapshot, &diag);
        assert_true(r < 0);
        assert_int_equal(snapshot.count, 0);
        const struct diag_entry *entry = diag_only(&diag);
        assert_string_equal(entry->file, missing[i]);
        assert_non_null(strstr(entry->message, missing[i]));
        assert_non_null(strstr(entry->message, result.commit));
        diag_clear(&diag);
        git_source_free(source);
    }

    /* a commit the clone does not have */
    source = source_open(&repo, "services");
    struct diag diag = DIAG_INIT;
    assert_int_equal(
        git_source_load(source, "0123456789abcdef0123456789abcdef01234567", &snapshot, &diag),
        -ENOENT);
    assert_int_equal(diag.count, 1);
    diag_clear(&diag);
    assert_int_equal(git_source_load(source, "not-a-commit", &snapshot, &diag), -EINVAL);
    diag_clear(&diag);
    git_source_free(source);
}

static void test_commit_signature_and_info(void **state)
{
    struct repo repo;
    repo_new(&repo, "commits");
    work_write_minimal(&repo, "a.yaml", "a", 1);
    sh("cd '%s' && " GIT " add -A && " GIT
       " commit -q --author='Alice Example <alice@example.com>' "
       "-m 'Scale a to one replica' -m 'A body that is not the subject.'",
       repo.work);
    /* a commit carrying a gpgsig header, written by hand (no gpg needed) */
    char *tree = work_rev(&repo, "HEAD^{tree}");
    char *parent = work_rev(&repo, "HEAD");
    char object[PATH_MAX];
    snprintf(object, sizeof(object), "%s/signed-commit", repo.dir);
    char text[2048];
    snprintf(text, sizeof(text),
             "tree %s\nparent %s\n"
             "author Bob <bob@example.com> 1700000000 +0000\n"
             "committer Bob <bob@example.com> 1700000000 +0000\n"
             "gpgsig -----BEGIN PGP SIGNATURE-----\n \n fakesignature\n"
             " -----END PGP SIGNATURE-----\n\nSigned change\n",
             tree, parent);
    write_file(object, text);
    char *signed_commit =
        sh_output("cd '%s' && " GIT " hash-object -t commit -w '%s'", repo.work, object);
    sh("cd '%s' && " GIT " update-ref refs/heads/main %s", repo.work, signed_commit);
    work_push(&repo);

    struct git_source *source = source_open(&repo, NULL);
    struct git_fetch_result result;
    fetch_ok(source, &result);
    assert_string_equal(result.commit, signed_commit);

    char *signature = NULL, *payload = NULL;
    size_t signature_length = 0, payload_length = 0;
    assert_int_equal(git_source_commit_signature(source, parent, &signature, &signature_length,
                                                 &payload, &payload_length),
                     -ENOENT);
    assert_null(signature);
    assert_null(payload);
    assert_int_equal(git_source_commit_signature(source, signed_commit, &signature,
                                                 &signature_length, &payload, &payload_length),
                     0);
    assert_non_null(strstr(signature, "-----BEGIN PGP SIGNATURE-----"));
    assert_non_null(strstr(signature, "fakesignature"));
    assert_int_equal(strlen(signature), signature_length);
    assert_non_null(strstr(payload, "Signed change"));
    assert_null(strstr(payload, "gpgsig"));
    assert_int_equal(strncmp(payload, "tree ", 5), 0);
    assert_int_equal(strlen(payload), payload_length);
    free(signature);
    free(payload);
    assert_int_equal(git_source_commit_signature(source, "0123456789abcdef0123456789abcdef01234567",
                                                 &signature, &signature_length, &payload,
                                                 &payload_length),
                     -EINVAL);

    char subject[128], author[128];
    assert_int_equal(
        git_source_commit_info(source, parent, subject, sizeof(subject), author, sizeof(author)),
        0);
    assert_string_equal(subject, "Scale a to one replica");
    assert_string_equal(author, "Alice Example <alice@example.com>");
    assert_int_equal(git_source_commit_info(source, signed_commit, subject, sizeof(subject), author,
                                            sizeof(author)),
                     0);
    assert_string_equal(subject, "Signed change");
    assert_string_equal(author, "Bob <bob@example.com>");
    /* cut to the buffers */
    char small[6];
    assert_int_equal(
        git_source_commit_info(source, parent, small, sizeof(small), author, sizeof(author)), 0);
    assert_string_equal(small, "Scale");

    git_source_free(source);
    free(tree);
    free(parent);
    free(signed_commit);
}

static void test_push_revert(void **state)
{
    struct repo repo;
    repo_new(&repo, "revert");
    work_write_minimal(&repo, "services/x.yaml", "x", 3);
    work_write_minimal(&repo, "services/y.yaml", "y", 1);
    work_write_minimal(&repo, "other/z.yaml", "z", 1);
    work_commit(&repo, "specs");
    work_push(&repo);
    char *main_commit = work_rev(&repo, "HEAD");

    struct git_source *source = source_open(&repo, "services");
    char commit[GIT_OID_TEXT], err[512] = "";
    /* before any fetch there is no spec branch to start from */
    assert_int_equal(git_source_push_revert(source, "rolld/revert/x", "services/x.yaml", "a", 1,
                                            "m", "rolld", "rolld@example.com", commit, err,
                                            sizeof(err)),
                     -ENOENT);
    assert_string_equal(commit, "");
    struct git_fetch_result result;
    fetch_ok(source, &result);

    char content[1024];
    snprintf(content, sizeof(content), minimal_spec, "x", 1);
    int r = git_source_push_revert(source, "rolld/revert/x", "services/x.yaml", content,
                                   strlen(content), "Revert x to its previous spec\n",
                                   "rolld agent", "rolld@example.com", commit, err, sizeof(err));
    if (r < 0)
        fail_msg("push_revert: %d %s", r, err);
    char *pushed = sh_output("git -C '%s' rev-parse rolld/revert/x", repo.origin);
    assert_string_equal(pushed, commit);
    char *shown = sh_output("git -C '%s' show rolld/revert/x:services/x.yaml", repo.origin);
    content[strlen(content) - 1] = 0; /* sh_output drops the last newline */
    assert_string_equal(shown, content);
    char *changed = sh_output("git -C '%s' diff --name-status main rolld/revert/x", repo.origin);
    assert_string_equal(changed, "M\tservices/x.yaml");
    char *parent = sh_output("git -C '%s' rev-parse rolld/revert/x^", repo.origin);
    assert_string_equal(parent, main_commit);
    char *meta = sh_output(
        "git -C '%s' log -1 --format='%%an <%%ae>|%%cn <%%ce>|%%s' rolld/revert/x", repo.origin);
    assert_string_equal(meta, "rolld agent <rolld@example.com>|rolld agent <rolld@example.com>|"
                              "Revert x to its previous spec");
    /* the clone has the branch too */
    char *local = sh_output("git -C '%s' rev-parse refs/heads/rolld/revert/x", repo.clone);
    assert_string_equal(local, commit);
    free(pushed);
    free(shown);
    free(changed);
    free(parent);
    free(meta);
    free(local);

    /* again, deleting the file: the branch is overwritten (not a fast-forward) */
    char second[GIT_OID_TEXT];
    r = git_source_push_revert(source, "rolld/revert/x", "services/x.yaml", NULL, 0, "Remove x\n",
                               "rolld agent", "rolld@example.com", second, err, sizeof(err));
    if (r < 0)
        fail_msg("push_revert (delete): %d %s", r, err);
    assert_string_not_equal(second, commit);
    changed = sh_output("git -C '%s' diff --name-status main rolld/revert/x", repo.origin);
    assert_string_equal(changed, "D\tservices/x.yaml");
    parent = sh_output("git -C '%s' rev-parse rolld/revert/x^", repo.origin);
    assert_string_equal(parent, main_commit);
    free(changed);
    free(parent);

    /* a nested path that does not exist yet is created */
    r = git_source_push_revert(source, "rolld/revert/w", "services/new/w.yaml", "w\n", 2, "Add w\n",
                               "rolld agent", "rolld@example.com", second, err, sizeof(err));
    if (r < 0)
        fail_msg("push_revert (nested): %d %s", r, err);
    changed = sh_output("git -C '%s' diff --name-status main rolld/revert/w", repo.origin);
    assert_string_equal(changed, "A\tservices/new/w.yaml");
    free(changed);

    /* removing a file the branch does not have */
    assert_int_equal(git_source_push_revert(source, "rolld/revert/q", "services/q.yaml", NULL, 0,
                                            "m", "rolld", "rolld@example.com", second, err,
                                            sizeof(err)),
                     -ENOENT);
    assert_non_null(strstr(err, "services/q.yaml"));
    /* an invalid branch name */
    assert_int_equal(git_source_push_revert(source, "bad..name", "services/x.yaml", "a", 1, "m",
                                            "rolld", "rolld@example.com", second, err, sizeof(err)),
                     -EINVAL);
    /* the spec branch itself is untouched */
    char *still = sh_output("git -C '%s' rev-parse main", repo.origin);
    assert_string_equal(still, main_commit);
    free(still);

    /* an unreachable remote */
    sh("mv '%s' '%s.moved'", repo.origin, repo.origin);
    r = git_source_push_revert(source, "rolld/revert/x", "services/x.yaml", "a", 1, "m", "rolld",
                               "rolld@example.com", second, err, sizeof(err));
    assert_true(r < 0);
    assert_non_null(strstr(err, repo.origin));
    sh("mv '%s.moved' '%s'", repo.origin, repo.origin);

    git_source_free(source);
    free(main_commit);
}

static void test_repo_load_revision(void **state)
{
    struct repo repo;
    repo_new(&repo, "revisions");
    work_write_services(&repo, 1);
    work_commit(&repo, "v1");
    sh("cd '%s' && " GIT " tag v1 && " GIT " tag -a -m annotated v1-annotated", repo.work);
    work_write_services(&repo, 2);
    work_commit(&repo, "v2");
    work_push(&repo);
    char *v1 = work_rev(&repo, "HEAD~1");
    char *v2 = work_rev(&repo, "HEAD");

    char exported[PATH_MAX], services[PATH_MAX];
    snprintf(exported, sizeof(exported), "%s/export-v1", repo.dir);
    snprintf(services, sizeof(services), "%s/services", exported);
    work_export(&repo, v1, exported);

    const char *revs[] = {"HEAD~1", "v1", "v1-annotated", v1};
    for (size_t i = 0; i < sizeof(revs) / sizeof(revs[0]); i++) {
        struct snapshot snapshot;
        struct diag diag = DIAG_INIT;
        char commit[GIT_OID_TEXT];
        int r = git_repo_load_revision(repo.work, revs[i], "services", &snapshot, commit, &diag);
        if (r < 0)
            print_diag(&diag);
        assert_int_equal(r, 0);
        assert_string_equal(commit, v1);
        expect_same_snapshot(&snapshot, "services", services);
        snapshot_clear(&snapshot);
        diag_clear(&diag);
    }

    /* from a subdirectory of the work tree, and from the bare origin */
    char subdirectory[PATH_MAX];
    snprintf(subdirectory, sizeof(subdirectory), "%s/services", repo.work);
    const char *paths[] = {subdirectory, repo.origin};
    for (size_t i = 0; i < 2; i++) {
        struct snapshot snapshot;
        struct diag diag = DIAG_INIT;
        char commit[GIT_OID_TEXT];
        assert_int_equal(
            git_repo_load_revision(paths[i], "main", "services", &snapshot, commit, &diag), 0);
        assert_string_equal(commit, v2);
        assert_non_null(snapshot_find(&snapshot, "translate"));
        snapshot_clear(&snapshot);
    }

    /* errors */
    struct snapshot snapshot;
    struct diag diag = DIAG_INIT;
    char commit[GIT_OID_TEXT];
    assert_true(
        git_repo_load_revision(repo.work, "no-such-rev", "services", &snapshot, commit, &diag) < 0);
    assert_non_null(strstr(diag_only(&diag)->message, "no-such-rev"));
    diag_clear(&diag);
    assert_true(git_repo_load_revision(repo.work, "HEAD", "nowhere", &snapshot, commit, &diag) < 0);
    assert_non_null(strstr(diag_only(&diag)->message, "nowhere"));
    diag_clear(&diag);
    assert_true(git_repo_load_revision("/nonexistent/rolld-test", "HEAD", "", &snapshot, commit,
                                       &diag) < 0);
    assert_string_equal(diag_only(&diag)->file, "/nonexistent/rolld-test");
    diag_clear(&diag);
    free(v1);
    free(v2);
}

/* rolld plan --repo over two revisions says what rolld plan says over two
 * directories holding their files. */
static void test_cli_plan_repo_matches_directories(void **state)
{
    const char *rolld = getenv("ROLLD");
    if (!rolld || !*rolld) {
        print_message("ROLLD is not set: skipping the rolld plan --repo test\n");
        skip();
    }
    struct repo repo;
    repo_new(&repo, "cli");
    work_write_services(&repo, 1);
    work_commit(&repo, "v1");
    sh("cd '%s' && " GIT " tag base", repo.work);
    work_write_services(&repo, 2);
    work_write(&repo, "services/broken.yml", "name: broken\napplications: 3\n");
    work_commit(&repo, "v2");
    char *base = work_rev(&repo, "base");
    char *head = work_rev(&repo, "HEAD");

    char base_dir[PATH_MAX], head_dir[PATH_MAX];
    snprintf(base_dir, sizeof(base_dir), "%s/base", repo.dir);
    snprintf(head_dir, sizeof(head_dir), "%s/head", repo.dir);
    work_export(&repo, base, base_dir);
    work_export(&repo, head, head_dir);

    static const char *const formats[] = {"json", "text", "markdown"};
    for (size_t f = 0; f < sizeof(formats) / sizeof(formats[0]); f++) {
        int repo_status, dir_status;
        char *from_repo = sh_output_status(
            &repo_status,
            "'%s' plan --repo '%s' --base base --head HEAD --dir services --format %s", rolld,
            repo.work, formats[f]);
        char *from_dirs = sh_output_status(
            &dir_status, "'%s' plan '%s/services' --against '%s/services' --format %s", rolld,
            head_dir, base_dir, formats[f]);
        assert_int_equal(repo_status, dir_status);
        assert_int_equal(repo_status, 1); /* broken.yml is invalid */
        char prefix[PATH_MAX + 1];
        snprintf(prefix, sizeof(prefix), "%s/", head_dir);
        char *a = text_without(from_dirs, prefix);
        snprintf(prefix, sizeof(prefix), "%s/", base_dir);
        char *expected = text_without(a, prefix);

        /* the commits are in the repository's output, and only there */
        char line[256];
        if (!strcmp(formats[f], "json"))
            snprintf(line, sizeof(line), "  \"base_commit\": \"%s\",\n  \"head_commit\": \"%s\",\n",
                     base, head);
        else if (!strcmp(formats[f], "text"))
            snprintf(line, sizeof(line), "base %s (base)\nhead %s (HEAD)\n\n", base, head);
        else
            snprintf(line, sizeof(line), "Base `%s` (`base`), head `%s` (`HEAD`).\n\n", base, head);
        assert_non_null(strstr(from_repo, line));
        char *got = text_without(from_repo, line);
        if (strcmp(got, expected)) {
            fprintf(stderr, "--- rolld plan --repo (%s) ---\n%s\n--- rolld plan dirs ---\n%s\n",
                    formats[f], got, expected);
            fail_msg("rolld plan --repo differs from rolld plan over the directories (%s)",
                     formats[f]);
        }
        assert_non_null(strstr(got, "services/broken.yml"));
        free(a);
        free(expected);
        free(got);
        free(from_repo);
        free(from_dirs);
    }

    /* a validation error names the repository path with its place */
    int status;
    char *text = sh_output_status(
        &status, "'%s' plan --repo '%s' --base base --head HEAD --dir services", rolld, repo.work);
    assert_int_equal(status, 1);
    assert_non_null(strstr(text, "services/broken.yml:2:"));
    free(text);

    /* an unknown revision: exit 2 and the reason on stderr */
    text = sh_output_status(&status, "'%s' plan --repo '%s' --base nope --head HEAD 2>&1", rolld,
                            repo.work);
    assert_int_equal(status, 2);
    assert_non_null(strstr(text, "nope"));
    free(text);

    text = sh_output_status(&status, "'%s' plan --help", rolld);
    assert_int_equal(status, 0);
    assert_non_null(strstr(text, "--repo"));
    assert_non_null(strstr(text, "--base"));
    assert_non_null(strstr(text, "--head"));
    assert_non_null(strstr(text, "--dir"));
    free(text);
    free(base);
    free(head);
}

/* ---- setup ---- */

static int group_setup(void **state)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(root, sizeof(root), "%s/rolld-source-git-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(root))
        return -1;
    /* the machine's and the user's git configuration stay out (git and libgit2) */
    setenv("GIT_CONFIG_GLOBAL", "/dev/null", 1);
    setenv("GIT_CONFIG_NOSYSTEM", "1", 1);
    setenv("HOME", root, 1);
    setenv("XDG_CONFIG_HOME", root, 1);
    unsetenv("GIT_DIR");
    unsetenv("GIT_WORK_TREE");
    setenv("GIT_TERMINAL_PROMPT", "0", 1);
    return 0;
}

static int group_teardown(void **state)
{
    if (root[0] && !getenv("ROLLD_KEEP_TMP")) {
        char command[PATH_MAX + 32];
        snprintf(command, sizeof(command), "rm -rf '%s'", root);
        if (system(command) != 0)
            return -1;
    }
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fetch_plain_path_loads_like_a_directory),
        cmocka_unit_test(test_fetch_file_url_and_relative_path),
        cmocka_unit_test(test_second_fetch_changed_or_not),
        cmocka_unit_test(test_force_push_is_rewritten),
        cmocka_unit_test(test_unreachable_origin_keeps_last_commit),
        cmocka_unit_test(test_missing_branch_is_an_error),
        cmocka_unit_test(test_directory_filter),
        cmocka_unit_test(test_commit_signature_and_info),
        cmocka_unit_test(test_push_revert),
        cmocka_unit_test(test_repo_load_revision),
        cmocka_unit_test(test_cli_plan_repo_matches_directories),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
