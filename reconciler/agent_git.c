#include "agent_git.h"
#include "metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "log.h"
#include "status_doc.h"
#include "signature.h"

#define BACKOFF_MAX_S 300
#define WATCH_DEBOUNCE_MS 2

#define PUBLISH_RETRY_S 5

struct publish_set {
    struct status_file *files; /* owned copies */
    size_t count;
    char *message;
};

struct agent_git {
    const struct agent_config *config;
    sd_event *event;
    agent_git_changed_fn changed;
    void *userdata;
    struct metrics *metrics;
    struct git_source *source;  /* the loop's handle: snapshots, signatures, reverts */
    struct git_source *fetcher; /* the fetch thread's handle on the same clone */
    pthread_t thread;
    bool in_flight, again;
    int done_pipe[2];
    sd_event_source *fetch_done;
    int job_status;
    struct git_fetch_result job_result;
    struct status_git *status;
    /* the status branch: one set being pushed on its thread, one waiting */
    struct publish_set pushing, waiting;
    bool publishing, retry_armed;
    pthread_t publish_thread_id;
    int publish_pipe[2];
    sd_event_source *publish_done, *publish_retry;
    int publish_result;
    char publish_commit[GIT_OID_TEXT], publish_error[512];
    sd_event_source *fetch_timer, *watch_dir, *watch_heads, *watch_debounce;
    struct agent_git_info info;
    char trusted_path[PATH_MAX];
};

static long long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#define log_git(...) log_msg(LOG_INFO, "git: " __VA_ARGS__)
#define log_git_warn(...) log_msg(LOG_WARNING, "git: " __VA_ARGS__)

static bool signing_configured(const struct agent_config *c)
{
    return c->allowed_signers || c->gpg_keyring;
}

/* Checks the head's signature and remembers the last trusted commit. */
static void check_head(struct agent_git *g)
{
    struct agent_git_info *info = &g->info;
    info->head_trusted = false;
    info->head_refusal[0] = 0;
    if (!info->commit[0])
        return;
    char *signature = NULL, *payload = NULL;
    size_t signature_length = 0, payload_length = 0;
    int r = git_source_commit_signature(g->source, info->commit, &signature, &signature_length,
                                        &payload, &payload_length);
    if (r == -ENOENT) {
        snprintf(info->head_refusal, sizeof(info->head_refusal), "commit %.12s is not signed",
                 info->commit);
    } else if (r < 0) {
        snprintf(info->head_refusal, sizeof(info->head_refusal),
                 "commit %.12s: cannot read its signature: %s", info->commit, strerror(-r));
    } else if (!signing_configured(g->config)) {
        snprintf(info->head_refusal, sizeof(info->head_refusal),
                 "commit %.12s is signed, but no trusted keys are configured (signing: in "
                 "rolld.yaml)",
                 info->commit);
    } else {
        struct signature_trust trust = {.allowed_signers = g->config->allowed_signers,
                                        .gpg_keyring = g->config->gpg_keyring};
        char signer[256] = "", why[256] = "";
        r = signature_verify(&trust, signature, signature_length, payload, payload_length, signer,
                             sizeof(signer), why, sizeof(why));
        if (r == 0) {
            info->head_trusted = true;
        } else {
            snprintf(info->head_refusal, sizeof(info->head_refusal), "commit %.12s: %s",
                     info->commit, why[0] ? why : strerror(-r));
        }
    }
    free(signature);
    free(payload);
    if (info->head_trusted && strcmp(info->trusted_commit, info->commit) != 0) {
        memcpy(info->trusted_commit, info->commit, sizeof(info->trusted_commit));
        FILE *f = fopen(g->trusted_path, "w");
        if (f) {
            fprintf(f, "%s\n", info->trusted_commit);
            fclose(f);
        }
    }
}

static void schedule_fetch(struct agent_git *g)
{
    long long seconds = g->config->fetch_interval_s > 0 ? g->config->fetch_interval_s : 30;
    /* back off while the remote fails: 2x the interval per failure, at most 5 minutes */
    for (long long i = 0; i < g->info.fetch_failures && seconds < BACKOFF_MAX_S; i++)
        seconds *= 2;
    if (g->info.fetch_failures && seconds > BACKOFF_MAX_S)
        seconds = BACKOFF_MAX_S;
    uint64_t now;
    sd_event_now(g->event, CLOCK_MONOTONIC, &now);
    sd_event_source_set_time(g->fetch_timer, now + (uint64_t)seconds * 1000000ULL);
    sd_event_source_set_enabled(g->fetch_timer, SD_EVENT_ONESHOT);
}

/* One fetch; tells the agent when the head moved. */
/* What a fetch found: the head, an error, a rewritten branch. */
static void fetch_finished(struct agent_git *g, int r, const struct git_fetch_result *fetched)
{
    const struct git_fetch_result result = *fetched;
    struct agent_git_info *info = &g->info;
    if (r < 0) {
        bool first = !info->fetch_error[0];
        snprintf(info->fetch_error, sizeof(info->fetch_error), "%s",
                 result.error[0] ? result.error : strerror(-r));
        info->fetch_failures++;
        metrics_fetch_failed(g->metrics);
        if (first)
            log_git_warn("fetch failed, serving commit %.12s: %s", info->commit, info->fetch_error);
        if (result.commit[0] && strcmp(result.commit, info->commit) != 0) {
            memcpy(info->commit, result.commit, sizeof(info->commit));
            check_head(g);
            g->changed(g->userdata);
        } else if (first) {
            g->changed(g->userdata); /* the status shows the error */
        }
        schedule_fetch(g);
        return;
    }
    bool recovered = info->fetch_error[0] != 0;
    if (recovered)
        log_git("fetch works again");
    info->fetch_error[0] = 0;
    info->fetch_failures = 0;
    info->fetched_ms = now_ms();
    metrics_fetch_succeeded(g->metrics, (double)info->fetched_ms / 1000);
    if (result.rewritten) {
        memcpy(info->rewritten_from, result.previous, sizeof(info->rewritten_from));
        log_git("branch %s was rewritten: %.12s is not an ancestor of %.12s", g->config->git_branch,
                result.previous, result.commit);
    }
    if (strcmp(result.commit, info->commit) != 0) {
        memcpy(info->commit, result.commit, sizeof(info->commit));
        check_head(g);
        log_git("%s is at %.12s%s%s", g->config->git_branch, info->commit,
                info->head_trusted || !info->head_refusal[0] ? "" : "; ",
                info->head_trusted ? "" : info->head_refusal);
        g->changed(g->userdata);
    } else if (recovered) {
        g->changed(g->userdata);
    }
    schedule_fetch(g);
}

/* Fetches run on a thread of their own, with their own handle on the clone:
 * a slow remote (libgit2 1.5 has no network timeouts of its own) or a big
 * pack never stalls the loop, so the watchdog keeps meaning "the loop runs".
 * One at a time; a request while one runs makes another follow it. */
static void *fetch_thread(void *userdata)
{
    struct agent_git *g = userdata;
    memset(&g->job_result, 0, sizeof(g->job_result));
    g->job_status = git_source_fetch(g->fetcher, &g->job_result);
    char done = 1;
    if (write(g->done_pipe[1], &done, 1) < 0) {
        /* cannot happen: one byte into an empty pipe (one fetch at a time) */
    }
    return NULL;
}

static void fetch(struct agent_git *g)
{
    if (g->in_flight) {
        g->again = true;
        return;
    }
    g->in_flight = true;
    if (pthread_create(&g->thread, NULL, fetch_thread, g) != 0) {
        g->in_flight = false;
        struct git_fetch_result failed = {.error = "cannot start a fetch thread"};
        memcpy(failed.commit, g->info.commit, sizeof(failed.commit));
        fetch_finished(g, -EAGAIN, &failed);
    }
}

static int on_fetch_done(sd_event_source *source, int fd, uint32_t revents, void *userdata)
{
    struct agent_git *g = userdata;
    char byte;
    while (read(fd, &byte, 1) == 1) {
    }
    if (!g->in_flight)
        return 0;
    pthread_join(g->thread, NULL);
    g->in_flight = false;
    fetch_finished(g, g->job_status, &g->job_result);
    if (g->again) {
        g->again = false;
        fetch(g);
    }
    return 0;
}

static int on_fetch_timer(sd_event_source *source, uint64_t usec, void *userdata)
{
    fetch(userdata);
    return 0;
}

static int on_watch_debounce(sd_event_source *source, uint64_t usec, void *userdata)
{
    fetch(userdata);
    return 0;
}

/* The local origin's refs moved: fetch after a short quiet time, so the
 * few events of one ref update (a rename, packed-refs rewritten) make one
 * fetch; a push's objects are in place before its ref moves, and an event
 * during a fetch makes one more fetch after it (2 ms, where 20 ms added
 * 18 ms to every push). Only the spec branch's ref and packed-refs count:
 * the status branch lives under refs/heads/rolld/, which is not watched,
 * so rolld never reacts to its own status commits. */
static int on_watch(sd_event_source *source, const struct inotify_event *event, void *userdata)
{
    struct agent_git *g = userdata;
    const char *branch = g->config->git_branch;
    const char *leaf = strrchr(branch, '/') ? strrchr(branch, '/') + 1 : branch;
    const char *wanted = source == g->watch_heads ? leaf : "packed-refs";
    if (event->len && strcmp(event->name, wanted) != 0)
        return 0;
    uint64_t now;
    sd_event_now(g->event, CLOCK_MONOTONIC, &now);
    sd_event_source_set_time(g->watch_debounce, now + WATCH_DEBOUNCE_MS * 1000ULL);
    sd_event_source_set_enabled(g->watch_debounce, SD_EVENT_ONESHOT);
    return 0;
}

static void start_watching(struct agent_git *g)
{
    const char *dir = git_source_watch_path(g->source);
    if (!dir || !g->config->git_watch)
        return;
    const uint32_t mask = IN_MOVED_TO | IN_CLOSE_WRITE | IN_CREATE;
    int r = sd_event_add_inotify(g->event, &g->watch_dir, dir, mask, on_watch, g);
    /* refs/heads, or the directory of a branch with a slash in its name */
    const char *heads = git_source_watch_ref_directory(g->source);
    if (r >= 0 && heads)
        r = sd_event_add_inotify(g->event, &g->watch_heads, heads, mask, on_watch, g);
    if (r < 0)
        log_git_warn("cannot watch %s (%s): fetching every %llds only", dir, strerror(-r),
                     (long long)g->config->fetch_interval_s);
}

static void publish_set_free(struct publish_set *set)
{
    for (size_t i = 0; i < set->count; i++) {
        free((char *)set->files[i].path);
        free((char *)set->files[i].content);
    }
    free(set->files);
    free(set->message);
    memset(set, 0, sizeof(*set));
}

static bool publish_set_has(const struct publish_set *set, const char *path)
{
    for (size_t i = 0; i < set->count; i++)
        if (!strcmp(set->files[i].path, path))
            return true;
    return false;
}

/* Adds a copy of files to set (a path already there is not added again). */
static int publish_set_add(struct publish_set *set, const struct status_file *files, size_t count,
                           bool deletions_only)
{
    struct status_file *grown = realloc(set->files, (set->count + count + 1) * sizeof(*grown));
    if (!grown)
        return -ENOMEM;
    set->files = grown;
    for (size_t i = 0; i < count; i++) {
        if ((deletions_only && files[i].content) || publish_set_has(set, files[i].path))
            continue;
        struct status_file *f = &set->files[set->count];
        f->path = strdup(files[i].path);
        f->content = files[i].content ? malloc(files[i].length + 1) : NULL;
        f->length = files[i].length;
        if (!f->path || (files[i].content && !f->content)) {
            free((char *)f->path);
            free((char *)f->content);
            return -ENOMEM;
        }
        if (f->content)
            memcpy((char *)f->content, files[i].content, files[i].length);
        set->count++;
    }
    return 0;
}

/* The status branch is a record, not a reaction: its commits and pushes
 * run at a lower CPU priority than the loop and the fetches, so a push of
 * specs that lands while the last status is being published is not slowed
 * by it (on 2 cores, a publish cost pushes 3->2 50 ms at p50). */
#define PUBLISH_NICE 10

static void *publish_thread(void *userdata)
{
    struct agent_git *g = userdata;
    /* Linux: a thread's own nice value */
    (void)setpriority(PRIO_PROCESS, (id_t)gettid(), PUBLISH_NICE);
    g->publish_result =
        status_git_publish(g->status, g->pushing.files, g->pushing.count, g->pushing.message,
                           g->publish_commit, g->publish_error, sizeof(g->publish_error));
    char done = 1;
    if (write(g->publish_pipe[1], &done, 1) < 0) {
        /* agent_git_publish_flush joins the thread anyway */
    }
    return NULL;
}

static void publish_start(struct agent_git *g)
{
    if (g->publishing || !g->waiting.files || g->retry_armed)
        return;
    g->pushing = g->waiting;
    memset(&g->waiting, 0, sizeof(g->waiting));
    g->publishing = true;
    if (pthread_create(&g->publish_thread_id, NULL, publish_thread, g) != 0) {
        g->publishing = false;
        g->waiting = g->pushing;
        memset(&g->pushing, 0, sizeof(g->pushing));
        log_git_warn("cannot start a thread to publish the status");
    }
}

/* A push ended: on failure the set waits again (unless a newer one came,
 * which keeps the failed set's deletions) and is retried a bit later. */
static void publish_finished(struct agent_git *g)
{
    pthread_join(g->publish_thread_id, NULL);
    g->publishing = false;
    if (g->publish_result < 0) {
        log_git_warn("cannot publish status: %s; trying again in %ds", g->publish_error,
                     PUBLISH_RETRY_S);
        if (g->waiting.files) {
            publish_set_add(&g->waiting, g->pushing.files, g->pushing.count, true);
            publish_set_free(&g->pushing);
        } else {
            g->waiting = g->pushing;
            memset(&g->pushing, 0, sizeof(g->pushing));
        }
        uint64_t now;
        sd_event_now(g->event, CLOCK_MONOTONIC, &now);
        sd_event_source_set_time(g->publish_retry, now + PUBLISH_RETRY_S * 1000000ULL);
        sd_event_source_set_enabled(g->publish_retry, SD_EVENT_ONESHOT);
        g->retry_armed = true;
        return;
    }
    publish_set_free(&g->pushing);
    publish_start(g);
}

static int on_publish_done(sd_event_source *source, int fd, uint32_t revents, void *userdata)
{
    struct agent_git *g = userdata;
    char byte;
    while (read(fd, &byte, 1) == 1) {
    }
    if (g->publishing)
        publish_finished(g);
    return 0;
}

static int on_publish_retry(sd_event_source *source, uint64_t usec, void *userdata)
{
    struct agent_git *g = userdata;
    g->retry_armed = false;
    publish_start(g);
    return 0;
}

/* STATUS.md from every status file on the branch, this agent's and the
 * others' (each agent writes its own services' files). */
static char *status_summary(void *userdata, const struct status_file *files, size_t count,
                            size_t *length)
{
    const json_t **docs = calloc(count ? count : 1, sizeof(*docs));
    size_t n = 0;
    if (!docs)
        return NULL;
    for (size_t i = 0; i < count; i++) {
        size_t len = strlen(files[i].path);
        if (len < 6 || strcmp(files[i].path + len - 5, ".yaml") != 0)
            continue;
        json_t *doc = status_doc_parse_yaml(files[i].content, files[i].length);
        if (doc && json_is_string(json_object_get(doc, "service")))
            docs[n++] = doc;
        else
            json_decref(doc);
    }
    char *text = status_markdown(docs, n, NULL, NULL);
    for (size_t i = 0; i < n; i++)
        json_decref((json_t *)docs[i]);
    free(docs);
    if (text)
        *length = strlen(text);
    return text;
}

int agent_git_open(const struct agent_config *config, sd_event *event, agent_git_changed_fn changed,
                   void *userdata, struct agent_git **out)
{
    struct agent_git *g = calloc(1, sizeof(*g));
    if (!g)
        return -ENOMEM;
    g->config = config;
    g->event = event;
    g->changed = changed;
    g->userdata = userdata;
    char dir[PATH_MAX], source_dir[PATH_MAX], status_dir[PATH_MAX], err[512] = "";
    snprintf(dir, sizeof(dir), "%s/git", config->state_dir);
    snprintf(source_dir, sizeof(source_dir), "%s/source.git", dir);
    snprintf(status_dir, sizeof(status_dir), "%s/status.git", dir);
    snprintf(g->trusted_path, sizeof(g->trusted_path), "%s/trusted-commit", dir);
    mkdir(dir, 0755);
    struct git_credentials credentials = {.ssh_key = config->ssh_key,
                                          .token_file = config->token_file,
                                          .username = config->git_username};
    struct git_source_options so = {.url = config->git_url,
                                    .branch = config->git_branch,
                                    .directory = config->git_directory,
                                    .clone_dir = source_dir,
                                    .credentials = credentials};
    g->done_pipe[0] = g->done_pipe[1] = -1;
    g->publish_pipe[0] = g->publish_pipe[1] = -1;
    int r = git_source_open(&so, &g->source, err, sizeof(err));
    if (r >= 0)
        r = git_source_open(&so, &g->fetcher, err, sizeof(err));
    if (r >= 0 && pipe2(g->done_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
        r = -errno;
    if (r >= 0)
        r = sd_event_add_io(event, &g->fetch_done, g->done_pipe[0], EPOLLIN, on_fetch_done, g);
    if (r < 0) {
        log_git_warn("cannot open %s: %s", config->git_url, err[0] ? err : strerror(-r));
        agent_git_free(g);
        return r;
    }
    if (config->status_git) {
        struct status_git_options to = {.spec_branch = config->git_branch,
                                        .summary = status_summary,
                                        .summary_userdata = g,
                                        .summary_dir = "status",
                                        .summary_path = "STATUS.md",
                                        .url = config->git_url,
                                        .branch = config->status_branch,
                                        .clone_dir = status_dir,
                                        .author_name = config->author_name,
                                        .author_email = config->author_email,
                                        .credentials = credentials};
        r = status_git_open(&to, &g->status, err, sizeof(err));
        if (r >= 0 && pipe2(g->publish_pipe, O_CLOEXEC | O_NONBLOCK) < 0)
            r = -errno;
        if (r >= 0)
            r = sd_event_add_io(event, &g->publish_done, g->publish_pipe[0], EPOLLIN,
                                on_publish_done, g);
        if (r >= 0) {
            r = sd_event_add_time(event, &g->publish_retry, CLOCK_MONOTONIC, UINT64_MAX, 100000,
                                  on_publish_retry, g);
            sd_event_source_set_enabled(g->publish_retry, SD_EVENT_OFF);
        }
        if (r < 0) {
            log_git_warn("cannot open the status branch %s: %s", config->status_branch, err);
            agent_git_free(g);
            return r;
        }
    }
    FILE *f = fopen(g->trusted_path, "r");
    if (f) {
        if (fscanf(f, "%40s", g->info.trusted_commit) != 1)
            g->info.trusted_commit[0] = 0;
        fclose(f);
    }
    sd_event_add_time(event, &g->fetch_timer, CLOCK_MONOTONIC, UINT64_MAX, 100000, on_fetch_timer,
                      g);
    sd_event_add_time(event, &g->watch_debounce, CLOCK_MONOTONIC, UINT64_MAX, 1000,
                      on_watch_debounce, g);
    sd_event_source_set_enabled(g->watch_debounce, SD_EVENT_OFF);
    start_watching(g);
    /* the first fetch before the first pass: the agent starts from a commit */
    struct git_fetch_result first;
    memset(&first, 0, sizeof(first));
    fetch_finished(g, git_source_fetch(g->fetcher, &first), &first);
    if (!g->info.commit[0] && g->info.fetch_error[0])
        log_git_warn("no commit to serve yet: %s", g->info.fetch_error);
    *out = g;
    return 0;
}

void agent_git_free(struct agent_git *g)
{
    if (!g)
        return;
    if (g->in_flight)
        pthread_join(g->thread, NULL);
    if (g->publishing)
        pthread_join(g->publish_thread_id, NULL);
    publish_set_free(&g->pushing);
    publish_set_free(&g->waiting);
    sd_event_source_disable_unref(g->publish_done);
    sd_event_source_disable_unref(g->publish_retry);
    for (int i = 0; i < 2; i++)
        if (g->publish_pipe[i] >= 0)
            close(g->publish_pipe[i]);
    sd_event_source_disable_unref(g->fetch_done);
    if (g->done_pipe[0] >= 0)
        close(g->done_pipe[0]);
    if (g->done_pipe[1] >= 0)
        close(g->done_pipe[1]);
    git_source_free(g->fetcher);
    sd_event_source_disable_unref(g->fetch_timer);
    sd_event_source_disable_unref(g->watch_dir);
    sd_event_source_disable_unref(g->watch_heads);
    sd_event_source_disable_unref(g->watch_debounce);
    git_source_free(g->source);
    status_git_free(g->status);
    free(g);
}

void agent_git_fetch_now(struct agent_git *g)
{
    fetch(g);
}

const struct agent_git_info *agent_git_info(const struct agent_git *g)
{
    return &g->info;
}

int agent_git_snapshots(struct agent_git *g, struct snapshot *previous_head,
                        struct snapshot *previous_trusted, struct snapshot *head,
                        struct snapshot *trusted, struct diag *diag)
{
    memset(head, 0, sizeof(*head));
    memset(trusted, 0, sizeof(*trusted));
    if (!g->info.commit[0])
        return -ENOENT;
    int r = git_source_reload(g->source, g->info.commit, previous_head, head, diag);
    if (r < 0)
        return r;
    if (!g->info.head_trusted && g->info.trusted_commit[0] &&
        git_source_reload(g->source, g->info.trusted_commit, previous_trusted, trusted, diag) < 0)
        memset(trusted, 0, sizeof(*trusted));
    return 0;
}

int agent_git_read_file(struct agent_git *g, const char *commit, const char *file, char **text,
                        size_t *length)
{
    return git_source_read_file(g->source, commit, file, text, length);
}

int agent_git_push_revert(struct agent_git *g, const char *service, const char *file,
                          const char *text, size_t length, const char *message, char *branch,
                          size_t branch_size)
{
    char commit[GIT_OID_TEXT], err[512] = "";
    snprintf(branch, branch_size, "rolld/revert/%s", service);
    int r = git_source_push_revert(g->source, branch, file, text, length, message,
                                   g->config->author_name, g->config->author_email, commit, err,
                                   sizeof(err));
    if (r < 0)
        log_git_warn("cannot push %s: %s", branch, err);
    else
        log_git("pushed %s (%.12s): %s", branch, commit, message);
    return r;
}

int agent_git_publish_status(struct agent_git *g, const struct status_file *files, size_t count,
                             const char *message)
{
    if (!g->status)
        return 0;
    struct publish_set next = {0};
    int r = publish_set_add(&next, files, count, false);
    if (r == 0 && g->waiting.files)
        r = publish_set_add(&next, g->waiting.files, g->waiting.count, true);
    if (r == 0 && !(next.message = strdup(message)))
        r = -ENOMEM;
    if (r < 0) {
        publish_set_free(&next);
        return r;
    }
    publish_set_free(&g->waiting);
    g->waiting = next;
    publish_start(g);
    return 0;
}

void agent_git_publish_flush(struct agent_git *g)
{
    if (!g || !g->status)
        return;
    if (g->publishing)
        publish_finished(g);
    if (g->waiting.files && !g->publishing) {
        g->retry_armed = false;
        publish_start(g);
        if (g->publishing)
            publish_finished(g);
    }
}

bool agent_git_status_enabled(const struct agent_git *g)
{
    return g && g->status;
}

void agent_git_set_metrics(struct agent_git *g, struct metrics *metrics)
{
    g->metrics = metrics;
}
