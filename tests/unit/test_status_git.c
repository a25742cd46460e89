/*
 * test_status_git.c - the status branch against real repositories made by
 * the git command in a temporary directory: first publish, no-op publish,
 * writers sharing the branch (in turn and at the same time), a person
 * pushing in between (the rejected push retried on top, never forced),
 * removal, an unreachable remote, compaction of the clone; and in every
 * test, the spec branch main of the remote is left as it was.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <malloc.h>
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "status_git.h"

#define GIT_PERSON "git -c user.name=Person -c user.email=person@example.com"

struct fixture {
    char dir[256];
    char origin[320];
    char main_tip[GIT_OID_TEXT];
};

/* Runs a shell command; its exit status (-1 when it did not exit). */
__attribute__((format(printf, 1, 2))) static int sh(const char *format, ...)
{
    char *command = NULL;
    va_list args;
    va_start(args, format);
    int n = vasprintf(&command, format, args);
    va_end(args);
    assert_true(n >= 0);
    int status = system(command);
    free(command);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* The output of a shell command that must succeed; caller frees. */
__attribute__((format(printf, 1, 2))) static char *sh_out(const char *format, ...)
{
    char *command = NULL;
    va_list args;
    va_start(args, format);
    int n = vasprintf(&command, format, args);
    va_end(args);
    assert_true(n >= 0);
    FILE *p = popen(command, "r");
    assert_non_null(p);
    size_t size = 0, used = 0;
    char *out = NULL;
    for (;;) {
        if (used + 4096 + 1 > size) {
            size = size * 2 + 4096 + 1;
            out = realloc(out, size);
            assert_non_null(out);
        }
        size_t got = fread(out + used, 1, size - used - 1, p);
        if (got == 0)
            break;
        used += got;
    }
    out[used] = 0;
    int status = pclose(p);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("command failed: %s", command);
    free(command);
    return out;
}

/* The output of a command, without its trailing newline, into buf. */
static void sh_line(char *buf, size_t size, const char *command)
{
    char *out = sh_out("%s", command);
    size_t n = strlen(out);
    while (n && out[n - 1] == '\n')
        out[--n] = 0;
    snprintf(buf, size, "%s", out);
    free(out);
}

static void origin_rev(const struct fixture *f, const char *rev, char out[GIT_OID_TEXT])
{
    char command[1024];
    snprintf(command, sizeof(command), "git -C %s rev-parse --verify -q %s", f->origin, rev);
    sh_line(out, GIT_OID_TEXT, command);
}

/* The remote's text of path on the status branch (must be there); caller frees. */
static char *status_show(const struct fixture *f, const char *path)
{
    return sh_out("git -C %s show rolld/status:%s", f->origin, path);
}

static void assert_status_file(const struct fixture *f, const char *path, const char *text)
{
    char *got = status_show(f, path);
    assert_string_equal(got, text);
    free(got);
}

static void assert_status_files(const struct fixture *f, const char *list)
{
    char *got = sh_out("git -C %s ls-tree -r --name-only rolld/status", f->origin);
    assert_string_equal(got, list);
    free(got);
}

static long status_count(const struct fixture *f, const char *rev_list_options)
{
    char *out = sh_out("git -C %s rev-list --count %s rolld/status", f->origin, rev_list_options);
    long n = strtol(out, NULL, 10);
    free(out);
    return n;
}

/* The spec branch is as setup left it, and the remote has no branch but
 * main and the status branch (no temporary refs left behind). */
static void assert_spec_untouched(const struct fixture *f)
{
    char tip[GIT_OID_TEXT];
    origin_rev(f, "refs/heads/main", tip);
    assert_string_equal(tip, f->main_tip);
    char *refs = sh_out("git -C %s for-each-ref --format='%%(refname)'", f->origin);
    assert_true(!strcmp(refs, "refs/heads/main\n") ||
                !strcmp(refs, "refs/heads/main\nrefs/heads/rolld/status\n"));
    free(refs);
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "%s/rolld-status-git-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->origin, sizeof(f->origin), "%s/origin.git", f->dir);
    assert_int_equal(sh("git init -q --bare -b main %s", f->origin), 0);
    assert_int_equal(sh("git clone -q %s %s/seed 2>/dev/null", f->origin, f->dir), 0);
    assert_int_equal(sh("mkdir -p %s/seed/services && printf 'name: a\\n' > "
                        "%s/seed/services/a.yaml",
                        f->dir, f->dir),
                     0);
    assert_int_equal(sh("cd %s/seed && git add -A && " GIT_PERSON " commit -q -m spec && "
                        "git push -q origin main",
                        f->dir),
                     0);
    origin_rev(f, "refs/heads/main", f->main_tip);
    assert_int_equal(strlen(f->main_tip), 40);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    int r = sh("rm -rf %s", f->dir);
    free(f);
    return r;
}

static struct status_git *writer_open_url(const struct fixture *f, const char *url,
                                          const char *clone, const char *name, const char *email)
{
    char clone_dir[512], err[512] = "";
    snprintf(clone_dir, sizeof(clone_dir), "%s/%s", f->dir, clone);
    struct status_git_options options = {.url = url,
                                         .clone_dir = clone_dir,
                                         .author_name = name,
                                         .author_email = email,
                                         .spec_branch = "main"};
    struct status_git *s = NULL;
    int r = status_git_open(&options, &s, err, sizeof(err));
    if (r < 0)
        fail_msg("status_git_open: %d %s", r, err);
    return s;
}

static struct status_git *writer_open(const struct fixture *f, const char *clone)
{
    return writer_open_url(f, f->origin, clone, "Status Bot", "bot@example.com");
}

/* Publishes one file (content NULL: removes it) that must succeed; the
 * commit (or "") into commit. */
static void publish1(struct status_git *s, const char *path, const char *content,
                     char commit[GIT_OID_TEXT])
{
    struct status_file file = {path, content, content ? strlen(content) : 0};
    char err[512] = "";
    int r = status_git_publish(s, &file, 1, "status", commit, err, sizeof(err));
    if (r < 0)
        fail_msg("status_git_publish: %d %s", r, err);
}

/* 1. The first publish creates the branch as a root commit holding exactly
 * the files, authored and committed by the configured identity. */
static void test_first_publish_creates_branch(void **state)
{
    struct fixture *f = *state;
    struct status_git *s = writer_open(f, "clone-a");
    struct status_file files[] = {
        {"status/a.yaml", "service: a\nphase: steady\n", 25},
        {"STATUS.md", "# Status\n\n| a | steady |\n", 25},
    };
    char commit[GIT_OID_TEXT], err[512] = "";
    int r = status_git_publish(s, files, 2, "rolld status: 1 service", commit, err, sizeof(err));
    assert_int_equal(r, 0);
    assert_string_equal(err, "");
    assert_int_equal(strlen(commit), 40);

    char tip[GIT_OID_TEXT];
    origin_rev(f, "refs/heads/rolld/status", tip);
    assert_string_equal(tip, commit);
    assert_int_equal(status_count(f, ""), 1); /* a root commit */

    /* a fresh clone of the branch reads exactly those files */
    assert_int_equal(sh("git clone -q -b rolld/status %s %s/check", f->origin, f->dir), 0);
    char *list = sh_out("cd %s/check && git ls-files", f->dir);
    assert_string_equal(list, "STATUS.md\nstatus/a.yaml\n");
    free(list);
    char *a = sh_out("cat %s/check/status/a.yaml", f->dir);
    assert_string_equal(a, "service: a\nphase: steady\n");
    free(a);
    char *md = sh_out("cat %s/check/STATUS.md", f->dir);
    assert_string_equal(md, "# Status\n\n| a | steady |\n");
    free(md);

    char *who = sh_out("git -C %s log -1 --format=%%an/%%ae/%%cn/%%ce/%%s rolld/status", f->origin);
    assert_string_equal(who, "Status Bot/bot@example.com/Status Bot/bot@example.com/"
                             "rolld status: 1 service\n");
    free(who);

    struct status_git_stats stats;
    status_git_stats_get(s, &stats);
    assert_int_equal(stats.publishes, 1);
    assert_int_equal(stats.commits, 1);
    assert_int_equal(stats.rejected, 0);
    assert_int_equal(stats.last_attempts, 1);
    status_git_free(s);
    assert_spec_untouched(f);
}

/* The author defaults to rolld <rolld@localhost>. */
static void test_default_author(void **state)
{
    struct fixture *f = *state;
    struct status_git *s = writer_open_url(f, f->origin, "clone-d", NULL, NULL);
    char commit[GIT_OID_TEXT];
    publish1(s, "status/a.yaml", "a\n", commit);
    char *who = sh_out("git -C %s log -1 --format=%%an/%%ae/%%cn/%%ce rolld/status", f->origin);
    assert_string_equal(who, "rolld/rolld@localhost/rolld/rolld@localhost\n");
    free(who);
    status_git_free(s);
    assert_spec_untouched(f);
}

/* 2. Publishing the same contents again makes no commit; so does removing
 * a file the branch does not hold; a real change does. */
static void test_same_contents_no_commit(void **state)
{
    struct fixture *f = *state;
    struct status_git *s = writer_open(f, "clone-a");
    struct status_file files[] = {
        {"status/a.yaml", "a: 1\n", 5},
        {"STATUS.md", "# a\n", 4},
    };
    char commit[GIT_OID_TEXT], tip[GIT_OID_TEXT], again[GIT_OID_TEXT], err[512];
    assert_int_equal(status_git_publish(s, files, 2, "one", commit, err, sizeof(err)), 0);
    assert_int_equal(strlen(commit), 40);
    origin_rev(f, "refs/heads/rolld/status", tip);

    /* same contents, given in the other order, plus the removal of a file
     * that is not there */
    struct status_file same[] = {
        {"STATUS.md", "# a\n", 4},
        {"status/gone.yaml", NULL, 0},
        {"status/a.yaml", "a: 1\n", 5},
    };
    strcpy(again, "x");
    assert_int_equal(status_git_publish(s, same, 3, "two", again, err, sizeof(err)), 0);
    assert_string_equal(again, "");
    origin_rev(f, "refs/heads/rolld/status", again);
    assert_string_equal(again, tip);
    assert_int_equal(status_count(f, ""), 1);

    /* a fresh instance on a fresh clone sees the same: no commit */
    struct status_git *other = writer_open(f, "clone-other");
    assert_int_equal(status_git_publish(other, files, 2, "three", again, err, sizeof(err)), 0);
    assert_string_equal(again, "");
    status_git_free(other);

    /* a change does commit, on top */
    publish1(s, "status/a.yaml", "a: 2\n", again);
    assert_int_equal(strlen(again), 40);
    assert_int_equal(status_count(f, ""), 2);

    struct status_git_stats stats;
    status_git_stats_get(s, &stats);
    assert_int_equal(stats.publishes, 3);
    assert_int_equal(stats.commits, 2);
    assert_int_equal(stats.unchanged, 1);
    status_git_free(s);
    assert_spec_untouched(f);
}

static double seconds_since(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) + (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

/* 3. Two writers with clones of their own, in turn, 20 rounds each: nothing
 * is lost and the history is linear, one commit per change. */
static void test_two_writers_in_turn(void **state)
{
    struct fixture *f = *state;
    struct status_git *a = writer_open(f, "clone-a");
    struct status_git *b = writer_open(f, "clone-b");
    enum { ROUNDS = 20 };
    char commit[GIT_OID_TEXT], text[64];
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (int round = 0; round < ROUNDS; round++) {
        snprintf(text, sizeof(text), "writer: a\nround: %d\n", round);
        publish1(a, "status/a.yaml", text, commit);
        assert_int_equal(strlen(commit), 40);
        snprintf(text, sizeof(text), "writer: b\nround: %d\n", round);
        publish1(b, "status/b.yaml", text, commit);
        assert_int_equal(strlen(commit), 40);
    }
    double elapsed = seconds_since(&start);
    printf("status_git: %d publishes to a local bare remote (fetch, commit, push) in %.3f s: "
           "%.2f ms each\n",
           2 * ROUNDS, elapsed, elapsed * 1000 / (2 * ROUNDS));

    assert_status_files(f, "status/a.yaml\nstatus/b.yaml\n");
    assert_status_file(f, "status/a.yaml", "writer: a\nround: 19\n");
    assert_status_file(f, "status/b.yaml", "writer: b\nround: 19\n");
    assert_int_equal(status_count(f, ""), 2 * ROUNDS);
    assert_int_equal(status_count(f, "--min-parents=2"), 0); /* no merge */
    assert_int_equal(status_count(f, "--max-parents=0"), 1); /* one root */

    struct status_git_stats stats;
    status_git_stats_get(a, &stats);
    assert_int_equal(stats.commits, ROUNDS);
    assert_int_equal(stats.rejected, 0); /* each fetched before pushing */
    status_git_free(a);
    status_git_free(b);
    assert_spec_untouched(f);
}

/* A person pushes notes.txt to the status branch from a normal clone; the
 * person's commit into person_commit. */
static void person_pushes_notes(const struct fixture *f, const char *work, const char *text,
                                char person_commit[GIT_OID_TEXT])
{
    assert_int_equal(sh("rm -rf %s/%s && git clone -q -b rolld/status %s %s/%s", f->dir, work,
                        f->origin, f->dir, work),
                     0);
    assert_int_equal(sh("cd %s/%s && printf '%s' > notes.txt && git add notes.txt && " GIT_PERSON
                        " commit -q -m notes && git push -q origin rolld/status",
                        f->dir, work, text),
                     0);
    origin_rev(f, "refs/heads/rolld/status", person_commit);
}

/* 4. A person pushes between A's fetch and A's push: A's push is rejected
 * (the test hook makes A build on its stale view, as if the person's push
 * had landed after A's fetch) and A makes its commit again on top of the
 * person's: notes.txt kept, the person's commit an ancestor of the tip. */
static void race_with_person(const struct fixture *f, bool push_local_as_network)
{
    struct status_git *a = writer_open(f, "clone-a");
    char commit[GIT_OID_TEXT], person[GIT_OID_TEXT], tip[GIT_OID_TEXT];
    publish1(a, "status/a.yaml", "a: 1\n", commit);
    person_pushes_notes(f, "person", "hello\n", person);
    assert_string_not_equal(person, commit);

    struct status_git_test_hooks hooks = {.skip_next_fetch = true,
                                          .push_local_as_network = push_local_as_network};
    status_git_set_test_hooks(a, &hooks);
    publish1(a, "status/a.yaml", "a: 2\n", commit);
    assert_int_equal(strlen(commit), 40);

    struct status_git_stats stats;
    status_git_stats_get(a, &stats);
    assert_int_equal(stats.rejected, 1);      /* the stale push was refused */
    assert_int_equal(stats.last_attempts, 2); /* and made again on top */
    assert_int_equal(stats.commits, 2);

    origin_rev(f, "refs/heads/rolld/status", tip);
    assert_string_equal(tip, commit);
    assert_int_equal(sh("git -C %s merge-base --is-ancestor %s %s", f->origin, person, tip), 0);
    char parent[GIT_OID_TEXT];
    char command[1024];
    snprintf(command, sizeof(command), "git -C %s rev-parse %s^", f->origin, tip);
    sh_line(parent, sizeof(parent), command);
    assert_string_equal(parent, person); /* directly on top, not a merge */
    assert_status_files(f, "notes.txt\nstatus/a.yaml\n");
    assert_status_file(f, "notes.txt", "hello\n");
    assert_status_file(f, "status/a.yaml", "a: 2\n");
    assert_int_equal(status_count(f, "--min-parents=2"), 0);

    /* the hook was for one publish only: the next fetches first again */
    person_pushes_notes(f, "person2", "hello again\n", person);
    publish1(a, "status/a.yaml", "a: 3\n", commit);
    status_git_stats_get(a, &stats);
    assert_int_equal(stats.rejected, 1);
    assert_int_equal(stats.last_attempts, 1);
    assert_status_file(f, "notes.txt", "hello again\n");
    assert_status_file(f, "status/a.yaml", "a: 3\n");
    assert_int_equal(sh("git -C %s merge-base --is-ancestor %s rolld/status", f->origin, person),
                     0);
    status_git_free(a);
    assert_spec_untouched(f);
}

/* Pushed to the local remote by compare-and-swap of its ref. */
static void test_push_race_with_person(void **state)
{
    race_with_person(*state, false);
}

/* The same through git_remote_push, as to a network remote: the rejection
 * comes back from libgit2 (non-fast-forward), never a forced update. */
static void test_push_race_with_person_libgit2_push(void **state)
{
    race_with_person(*state, true);
}

/* Writers in separate processes publishing at the same time (released
 * together by closing a pipe): every change lands, none overwrites another,
 * the history stays linear. libgit2's local transport would let a push that
 * lands between another's check and ref update overwrite it. */
static void test_concurrent_writers(void **state)
{
    struct fixture *f = *state;
    enum { WRITERS = 3, ROUNDS = 12 };
    int gate[2];
    assert_int_equal(pipe(gate), 0);
    fflush(NULL);
    pid_t pids[WRITERS];
    for (int w = 0; w < WRITERS; w++) {
        pids[w] = fork();
        assert_true(pids[w] >= 0);
        if (pids[w] > 0)
            continue;
        close(gate[1]);
        char clone[32], path[64], text[64], commit[GIT_OID_TEXT], err[512], wait_byte;
        snprintf(clone, sizeof(clone), "clone-%d", w);
        char clone_dir[512];
        snprintf(clone_dir, sizeof(clone_dir), "%s/%s", f->dir, clone);
        struct status_git_options options = {.url = f->origin, .clone_dir = clone_dir};
        struct status_git *s = NULL;
        if (status_git_open(&options, &s, err, sizeof(err)) < 0)
            _exit(10);
        if (read(gate[0], &wait_byte, 1) != 0)
            _exit(11);
        snprintf(path, sizeof(path), "status/w%d.yaml", w);
        for (int round = 0; round < ROUNDS; round++) {
            snprintf(text, sizeof(text), "writer: %d\nround: %d\n", w, round);
            struct status_file file = {path, text, strlen(text)};
            int r, tries = 0;
            do /* -EAGAIN: the caller tries again later; here, at once */
                r = status_git_publish(s, &file, 1, "status", commit, err, sizeof(err));
            while (r == -EAGAIN && ++tries < 100);
            if (r < 0) {
                fprintf(stderr, "writer %d: %d %s\n", w, r, err);
                _exit(12);
            }
            if (strlen(commit) != 40)
                _exit(13);
        }
        struct status_git_stats stats;
        status_git_stats_get(s, &stats);
        printf("writer %d: %lu commits, %lu pushes rejected and made again\n", w, stats.commits,
               stats.rejected);
        fflush(stdout);
        status_git_free(s);
        _exit(0);
    }
    close(gate[0]);
    close(gate[1]); /* go */
    for (int w = 0; w < WRITERS; w++) {
        int status = 0;
        assert_int_equal(waitpid(pids[w], &status, 0), pids[w]);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
    }
    assert_int_equal(status_count(f, ""), WRITERS * ROUNDS);
    assert_int_equal(status_count(f, "--min-parents=2"), 0);
    for (int w = 0; w < WRITERS; w++) {
        char path[64], text[64];
        snprintf(path, sizeof(path), "status/w%d.yaml", w);
        snprintf(text, sizeof(text), "writer: %d\nround: %d\n", w, ROUNDS - 1);
        assert_status_file(f, path, text);
    }
    assert_spec_untouched(f);
}

/* 5. content NULL removes the file; the others stay; a directory left
 * empty goes too. */
static void test_remove_file(void **state)
{
    struct fixture *f = *state;
    struct status_git *s = writer_open(f, "clone-a");
    struct status_file files[] = {
        {"status/a.yaml", "a\n", 2},
        {"status/b.yaml", "b\n", 2},
        {"STATUS.md", "# s\n", 4},
    };
    char commit[GIT_OID_TEXT], err[512];
    assert_int_equal(status_git_publish(s, files, 3, "three", commit, err, sizeof(err)), 0);
    assert_status_files(f, "STATUS.md\nstatus/a.yaml\nstatus/b.yaml\n");

    publish1(s, "status/a.yaml", NULL, commit);
    assert_int_equal(strlen(commit), 40);
    assert_status_files(f, "STATUS.md\nstatus/b.yaml\n");
    assert_status_file(f, "status/b.yaml", "b\n");

    publish1(s, "status/b.yaml", NULL, commit);
    assert_int_equal(strlen(commit), 40);
    assert_status_files(f, "STATUS.md\n");
    char *top = sh_out("git -C %s ls-tree --name-only rolld/status", f->origin);
    assert_string_equal(top, "STATUS.md\n"); /* no empty status/ left */
    free(top);

    publish1(s, "status/b.yaml", NULL, commit); /* not there: no change */
    assert_string_equal(commit, "");
    assert_int_equal(status_count(f, ""), 3);
    status_git_free(s);
    assert_spec_untouched(f);
}

/* 6. An unreachable remote: a negative errno and a message naming it; once
 * it is back, publishing works again. */
static void test_unreachable_origin(void **state)
{
    struct fixture *f = *state;
    struct status_git *s = writer_open(f, "clone-a");
    char commit[GIT_OID_TEXT], err[512] = "";
    publish1(s, "status/a.yaml", "a: 1\n", commit);

    assert_int_equal(sh("mv %s %s/moved.git", f->origin, f->dir), 0);
    struct status_file file = {"status/a.yaml", "a: 2\n", 5};
    int r = status_git_publish(s, &file, 1, "status", commit, err, sizeof(err));
    assert_true(r < 0);
    assert_true(r != -EAGAIN);
    assert_string_equal(commit, "");
    assert_non_null(strstr(err, f->origin));
    assert_non_null(strstr(err, "rolld/status"));
    printf("unreachable remote: %d (%s): %s\n", r, strerror(-r), err);
    struct status_git_stats stats;
    status_git_stats_get(s, &stats);
    assert_int_equal(stats.failures, 1);

    assert_int_equal(sh("mv %s/moved.git %s", f->dir, f->origin), 0);
    err[0] = 0;
    assert_int_equal(status_git_publish(s, &file, 1, "status", commit, err, sizeof(err)), 0);
    assert_int_equal(strlen(commit), 40);
    assert_status_file(f, "status/a.yaml", "a: 2\n");
    status_git_free(s);
    assert_spec_untouched(f);
}

/* A status branch deleted on the remote is seen as absent: the next commit
 * is a root commit with this writer's files. */
static void test_branch_deleted_on_remote(void **state)
{
    struct fixture *f = *state;
    struct status_git *s = writer_open(f, "clone-a");
    char commit[GIT_OID_TEXT];
    publish1(s, "status/a.yaml", "a: 1\n", commit);
    publish1(s, "status/b.yaml", "b: 1\n", commit);
    assert_int_equal(sh("git -C %s branch -q -D rolld/status", f->origin), 0);
    publish1(s, "status/a.yaml", "a: 2\n", commit);
    assert_int_equal(strlen(commit), 40);
    assert_int_equal(status_count(f, ""), 1);
    assert_status_files(f, "status/a.yaml\n");
    status_git_free(s);
    assert_spec_untouched(f);
}

static size_t directory_count(const char *path, const char *suffix)
{
    DIR *d = opendir(path);
    size_t n = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        size_t length = strlen(e->d_name);
        if (e->d_name[0] != '.' && length > strlen(suffix) &&
            !strcmp(e->d_name + length - strlen(suffix), suffix))
            n++;
    }
    if (d)
        closedir(d);
    return n;
}

/* The clone's packs (one per fetch that brought something) and loose
 * objects (our commits) are merged into one pack; the clone still works. */
static void test_compact(void **state)
{
    struct fixture *f = *state;
    struct status_git *a = writer_open(f, "clone-a");
    struct status_git *b = writer_open(f, "clone-b");
    char commit[GIT_OID_TEXT], text[64], packs[512];
    for (int round = 0; round < 10; round++) {
        snprintf(text, sizeof(text), "round: %d\n", round);
        publish1(a, "status/a.yaml", text, commit);
        publish1(b, "status/b.yaml", text, commit);
    }
    snprintf(packs, sizeof(packs), "%s/clone-a/objects/pack", f->dir);
    assert_true(directory_count(packs, ".pack") >= 9);

    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    assert_int_equal(status_git_compact(a), 0);
    printf("compaction of a 20-commit clone: %.2f ms\n", seconds_since(&start) * 1000);
    assert_int_equal(directory_count(packs, ".pack"), 1);
    assert_int_equal(directory_count(packs, ".idx"), 1);
    assert_int_equal(sh("ls -d %s/clone-a/objects/[0-9a-f][0-9a-f] >/dev/null 2>&1", f->dir), 2);
    assert_int_equal(
        sh("git -C %s/clone-a fsck --no-dangling --no-progress >/dev/null 2>&1", f->dir), 0);

    publish1(a, "status/a.yaml", "after\n", commit);
    assert_int_equal(strlen(commit), 40);
    assert_status_file(f, "status/a.yaml", "after\n");
    assert_status_file(f, "status/b.yaml", "round: 9\n");
    struct status_git_stats stats;
    status_git_stats_get(a, &stats);
    assert_int_equal(stats.compactions, 1);
    status_git_free(a);
    status_git_free(b);
    assert_spec_untouched(f);
}

/* The heap does not grow with the number of publishes (the agent
 * publishes on every change for weeks): after a warm-up, many more
 * publishes by two writers (each fetching the other's commits) leave the
 * bytes in use where they were. Both measures are taken right after a
 * compaction, which closes the clone and so empties libgit2's cache of its
 * objects (which publish also does every 64 publishes). */
static void test_memory_steady(void **state)
{
    struct fixture *f = *state;
    struct status_git *a = writer_open(f, "clone-a");
    struct status_git *b = writer_open(f, "clone-b");
    char commit[GIT_OID_TEXT], text[64];
    enum { WARM_UP = 10, ROUNDS = 100 };
    size_t before = 0;
    for (int round = 0; round < WARM_UP + ROUNDS; round++) {
        if (round == WARM_UP) {
            assert_int_equal(status_git_compact(a), 0);
            assert_int_equal(status_git_compact(b), 0);
            before = mallinfo2().uordblks;
        }
        snprintf(text, sizeof(text), "round: %d\n", round);
        publish1(a, "status/a.yaml", text, commit);
        publish1(b, "status/b.yaml", text, commit);
        publish1(a, "status/a.yaml", text, commit); /* unchanged */
    }
    assert_int_equal(status_git_compact(a), 0);
    assert_int_equal(status_git_compact(b), 0);
    size_t after = mallinfo2().uordblks;
    long growth = (long)after - (long)before;
    printf("heap in use after %d more publishes: %+ld bytes (%.0f per publish)\n", 3 * ROUNDS,
           growth, (double)growth / (3 * ROUNDS));
    assert_true(growth < 32 * 1024); /* a few hash tables resized; not per publish */
    status_git_free(a);
    status_git_free(b);
    assert_spec_untouched(f);
}

/* file:// URLs and relative paths are remotes on this host too. */
static void test_file_url_and_relative_path(void **state)
{
    struct fixture *f = *state;
    char url[512], commit[GIT_OID_TEXT];
    snprintf(url, sizeof(url), "file://%s", f->origin);
    struct status_git *s = writer_open_url(f, url, "clone-url", NULL, NULL);
    publish1(s, "status/u.yaml", "u\n", commit);
    assert_int_equal(strlen(commit), 40);
    status_git_free(s);

    char *cwd = getcwd(NULL, 0);
    assert_non_null(cwd);
    assert_int_equal(chdir(f->dir), 0);
    s = writer_open_url(f, "origin.git", "clone-relative", NULL, NULL);
    assert_int_equal(chdir("/"), 0); /* the path was made absolute at open */
    publish1(s, "status/r.yaml", "r\n", commit);
    assert_int_equal(chdir(cwd), 0);
    free(cwd);
    assert_int_equal(strlen(commit), 40);
    assert_status_files(f, "status/r.yaml\nstatus/u.yaml\n");
    status_git_free(s);
    assert_spec_untouched(f);
}

/* url.<base>.insteadOf of the git config applies, as for git (here set in
 * the clone's own config, which also reads the user's and the system's). */
static void test_instead_of(void **state)
{
    struct fixture *f = *state;
    char commit[GIT_OID_TEXT];
    assert_int_equal(sh("git init -q --bare %s/clone-i && git -C %s/clone-i config "
                        "url.%s.insteadOf rolld-test-host:status",
                        f->dir, f->dir, f->origin),
                     0);
    struct status_git *s = writer_open_url(f, "rolld-test-host:status", "clone-i", NULL, NULL);
    publish1(s, "status/i.yaml", "i\n", commit);
    assert_int_equal(strlen(commit), 40);
    assert_status_file(f, "status/i.yaml", "i\n");
    status_git_free(s);
    assert_spec_untouched(f);
}

/* A remote with a work tree takes the status branch unless it has it
 * checked out. */
static void test_work_tree_remote(void **state)
{
    struct fixture *f = *state;
    char work[512], commit[GIT_OID_TEXT], err[512];
    snprintf(work, sizeof(work), "%s/seed", f->dir); /* main is checked out there */
    struct status_git *s = writer_open_url(f, work, "clone-w", NULL, NULL);
    publish1(s, "status/a.yaml", "a\n", commit);
    assert_int_equal(strlen(commit), 40);
    char *got = sh_out("git -C %s show rolld/status:status/a.yaml", work);
    assert_string_equal(got, "a\n");
    free(got);
    assert_int_equal(sh("cd %s && git status --porcelain | grep -q . && exit 1; exit 0", work), 0);

    assert_int_equal(sh("git -C %s checkout -q rolld/status", work), 0);
    struct status_file file = {"status/a.yaml", "b\n", 2};
    assert_int_equal(status_git_publish(s, &file, 1, "status", commit, err, sizeof(err)), -EBUSY);
    assert_non_null(strstr(err, "checked out"));
    assert_int_equal(sh("git -C %s checkout -q main", work), 0);
    status_git_free(s);
}

/* Refused input, before anything is written. */
static void test_invalid(void **state)
{
    struct fixture *f = *state;
    char clone_dir[512], err[512], commit[GIT_OID_TEXT];
    snprintf(clone_dir, sizeof(clone_dir), "%s/clone-x", f->dir);
    struct status_git *s = NULL;
    struct status_git_options options = {
        .url = f->origin, .clone_dir = clone_dir, .branch = "main", .spec_branch = "main"};
    assert_int_equal(status_git_open(&options, &s, err, sizeof(err)), -EINVAL);
    assert_null(s);
    assert_non_null(strstr(err, "spec branch"));
    options.branch = "bad..name";
    assert_int_equal(status_git_open(&options, &s, err, sizeof(err)), -EINVAL);
    options.branch = NULL;
    options.author_name = "a <b>";
    assert_int_equal(status_git_open(&options, &s, err, sizeof(err)), -EINVAL);
    options.author_name = NULL;
    options.url = NULL;
    assert_int_equal(status_git_open(&options, &s, err, sizeof(err)), -EINVAL);
    options.url = f->origin;
    assert_int_equal(status_git_open(&options, &s, err, sizeof(err)), 0);

    const char *bad[] = {"/abs.yaml", "a/../b", "./a", "a//b", "a/", ".git/config", ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct status_file file = {bad[i], "x", 1};
        assert_int_equal(status_git_publish(s, &file, 1, "m", commit, err, sizeof(err)), -EINVAL);
    }
    struct status_file twice[] = {{"status/a.yaml", "1", 1}, {"status/a.yaml", "2", 1}};
    assert_int_equal(status_git_publish(s, twice, 2, "m", commit, err, sizeof(err)), -EINVAL);
    assert_non_null(strstr(err, "twice"));
    assert_int_equal(sh("git -C %s rev-parse -q --verify rolld/status >/dev/null", f->origin), 1);
    status_git_free(s);
    status_git_free(NULL);
    assert_spec_untouched(f);
}

int main(int argc, char **argv)
{
    (void)argc;
    /* test_memory_steady counts the bytes malloc has handed out: without
     * the per-thread cache and the fast bins, freed memory is counted as
     * free at once, so the count is exact rather than off by tens of KiB */
    if (!getenv("GLIBC_TUNABLES")) {
        setenv("GLIBC_TUNABLES", "glibc.malloc.tcache_count=0:glibc.malloc.mxfast=0", 1);
        execv("/proc/self/exe", argv);
        perror("re-executing with GLIBC_TUNABLES"); /* run anyway */
    }
    /* the machine's and the user's git config must not matter */
    setenv("GIT_CONFIG_GLOBAL", "/dev/null", 1);
    setenv("GIT_CONFIG_NOSYSTEM", "1", 1);
    setenv("GIT_TERMINAL_PROMPT", "0", 1);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_first_publish_creates_branch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_default_author, setup, teardown),
        cmocka_unit_test_setup_teardown(test_same_contents_no_commit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_two_writers_in_turn, setup, teardown),
        cmocka_unit_test_setup_teardown(test_push_race_with_person, setup, teardown),
        cmocka_unit_test_setup_teardown(test_push_race_with_person_libgit2_push, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_writers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_remove_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unreachable_origin, setup, teardown),
        cmocka_unit_test_setup_teardown(test_branch_deleted_on_remote, setup, teardown),
        cmocka_unit_test_setup_teardown(test_compact, setup, teardown),
        cmocka_unit_test_setup_teardown(test_memory_steady, setup, teardown),
        cmocka_unit_test_setup_teardown(test_file_url_and_relative_path, setup, teardown),
        cmocka_unit_test_setup_teardown(test_instead_of, setup, teardown),
        cmocka_unit_test_setup_teardown(test_work_tree_remote, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
