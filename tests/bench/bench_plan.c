/*
 * bench_plan.c - how long `rolld plan` takes, and how much memory, on a
 * large repository of service specs.
 *
 *   bench_plan ROLLD [--services N] [--runs R] [--in-process] [--policies DIR] [--seed S]
 *                    [--keep]
 *
 * Writes N service specs (default 10,000) in two versions into a temporary
 * directory: a mix of fixed replica counts, autoscaling, GPU models with a
 * max surge and multi-application services. v2 changes a realistic fraction:
 * image bumps (canary), replica changes (in place, lightweight), import_path
 * changes (heavyweight: a canary, or in place under the development policy),
 * some services added, some deleted and a few invalid. It then runs the real
 * binary, `ROLLD plan v2 --against v1 --format json > /dev/null`, R times
 * (default 5) and reports wall time (min/median/max) and the child's peak RSS
 * against the targets. One untimed run first writes the JSON to a file and
 * checks that every service got the action the generator meant, so the
 * figures are those of a plan that did the intended work. The runs are
 * started by a small launcher process forked before anything else, so the
 * peak RSS is rolld's own and not this process's (see "the launcher").
 *
 * --in-process times the same work inside this process (read, parse, plan,
 * render) phase by phase, to show where the time goes.
 *
 * A benchmark, not a test: being over a target is reported, not failed. It
 * fails (exit 1) only when the plan is wrong or the binary cannot be run.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <dirent.h>
#include <time.h>
#include <unistd.h>

#include "plan_output.h"
#include "plan_set.h"
#include "source_dir.h"

#define TARGET_WALL_S 1.0
#define TARGET_RSS_MIB 64.0
#define MAX_RUNS 100

#ifndef ROLLD_BENCH_POLICY_DIR
#define ROLLD_BENCH_POLICY_DIR "policies"
#endif

/* ---- what the generator makes ---- */

enum service_kind { KIND_FIXED, KIND_AUTOSCALING, KIND_GPU, KIND_MULTI_APP, KIND_COUNT };
static const char *const kind_names[] = {"fixed replicas", "autoscaling", "GPU, max surge",
                                         "multi-application"};

enum service_edit {
    EDIT_NONE,     /* identical in v2 */
    EDIT_IMAGE,    /* image_uri bumped: canary */
    EDIT_REPLICAS, /* num_replicas or autoscaling bounds: in place, lightweight */
    EDIT_IMPORT,   /* import_path: heavyweight, canary or in place by policy */
    EDIT_ADDED,    /* only in v2: create */
    EDIT_DELETED,  /* only in v1: delete */
    EDIT_INVALID,  /* v2 does not validate: invalid */
    EDIT_COUNT,
};
static const char *const edit_names[] = {
    "unchanged", "image bump", "replica change", "import_path change", "new", "deleted", "invalid"};

struct service {
    enum service_kind kind;
    enum service_edit edit;
    bool development; /* on the development policy: heavyweight changes go in place */
    const char *expected_action;
};

/* xorshift64*: the same seed gives the same repository */
static uint64_t rng_state;
static uint64_t rng_next(void)
{
    rng_state ^= rng_state >> 12;
    rng_state ^= rng_state << 25;
    rng_state ^= rng_state >> 27;
    return rng_state * 0x2545F4914F6CDD1DULL;
}
static unsigned rng_below(unsigned n)
{
    return (unsigned)(rng_next() % n);
}

static const char *expected_action(const struct service *s)
{
    switch (s->edit) {
    case EDIT_IMAGE:
        return "canary";
    case EDIT_REPLICAS:
        return "in_place_lightweight";
    case EDIT_IMPORT:
        return s->development ? "in_place_heavyweight" : "canary";
    case EDIT_ADDED:
        return "create";
    case EDIT_DELETED:
        return "delete";
    case EDIT_INVALID:
        return "invalid";
    default:
        return "none";
    }
}

static void choose(struct service *s)
{
    unsigned k = rng_below(100);
    s->kind = k < 40 ? KIND_FIXED : k < 65 ? KIND_AUTOSCALING : k < 80 ? KIND_GPU : KIND_MULTI_APP;
    s->development = rng_below(100) < 20;
    /* per 1000 services: 200 image bumps, 100 replica changes, 50 import_path
     * changes, 20 new, 20 deleted, 5 invalid, the rest unchanged */
    unsigned c = rng_below(1000);
    s->edit = c < 200   ? EDIT_IMAGE
              : c < 300 ? EDIT_REPLICAS
              : c < 350 ? EDIT_IMPORT
              : c < 370 ? EDIT_ADDED
              : c < 390 ? EDIT_DELETED
              : c < 395 ? EDIT_INVALID
                        : EDIT_NONE;
    s->expected_action = expected_action(s);
}

/* ---- writing the specs ---- */

struct text {
    char *data;
    size_t length, capacity;
};

static void text_add(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void text_add(struct text *t, const char *fmt, ...)
{
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(t->data ? t->data + t->length : NULL,
                          t->data ? t->capacity - t->length : 0, fmt, ap);
        va_end(ap);
        if (n < 0)
            abort();
        if (t->data && t->length + (size_t)n < t->capacity) {
            t->length += (size_t)n;
            return;
        }
        size_t capacity = t->capacity ? t->capacity : 4096;
        while (capacity <= t->length + (size_t)n)
            capacity *= 2;
        char *grown = realloc(t->data, capacity);
        if (!grown) {
            fputs("bench_plan: out of memory\n", stderr);
            exit(1);
        }
        t->data = grown;
        t->capacity = capacity;
    }
}

static void deployment_yaml(struct text *t, const char *indent, const char *name, int replicas,
                            bool autoscaling, int max_replicas, double cpus, double gpus,
                            bool user_config)
{
    text_add(t, "%s- name: %s\n", indent, name);
    if (autoscaling) {
        text_add(t,
                 "%s  autoscaling_config:\n"
                 "%s    min_replicas: %d\n"
                 "%s    initial_replicas: %d\n"
                 "%s    max_replicas: %d\n"
                 "%s    target_ongoing_requests: 4\n"
                 "%s    upscale_delay_s: 5\n"
                 "%s    downscale_delay_s: 60\n",
                 indent, indent, replicas, indent, replicas, indent, max_replicas, indent, indent,
                 indent);
    } else {
        text_add(t, "%s  num_replicas: %d\n", indent, replicas);
    }
    text_add(t, "%s  max_ongoing_requests: 16\n", indent);
    if (user_config)
        text_add(t,
                 "%s  user_config:\n"
                 "%s    temperature: 0.7\n"
                 "%s    max_tokens: 256\n",
                 indent, indent, indent);
    text_add(t, "%s  ray_actor_options:\n%s    num_cpus: %g\n", indent, indent, cpus);
    if (gpus > 0)
        text_add(t, "%s    num_gpus: %g\n%s    memory: 4294967296\n", indent, gpus, indent);
    text_add(t, "%s  health_check_period_s: 2\n%s  health_check_timeout_s: 5\n", indent, indent);
}

/* The YAML of service i in v1 (v2 false) or v2 (v2 true). */
static void service_yaml(struct text *t, size_t i, const struct service *s, bool v2)
{
    bool changed = v2 && s->edit != EDIT_NONE;
    int minor = changed && s->edit == EDIT_IMAGE ? 5 : 4;
    const char *import_suffix = changed && s->edit == EDIT_IMPORT ? "_v2" : "";
    int replica_bump = changed && s->edit == EDIT_REPLICAS ? 2 : 0;
    int base = 1 + (int)(i % 6);

    text_add(t, "# Generated by bench_plan: service %zu (%s).\n", i, kind_names[s->kind]);
    text_add(t, "name: svc-%05zu\n", i);
    text_add(t, "version_name: \"v%d\"\n", minor);
    text_add(t, "image_uri: registry.example.com/team-%zu/svc-%05zu:1.%d.0\n", i % 40, i, minor);
    text_add(t, "compute_config: %s\n", s->kind == KIND_GPU ? "gpu-small" : "cpu-small");
    text_add(t, "env_vars:\n  MODEL_FAMILY: family-%zu\n  LOG_FORMAT: json\n", i % 17);
    text_add(t, "http_options:\n  port: %zu\n", 20000 + i % 40000);
    text_add(t, "applications:\n");
    int apps = s->kind == KIND_MULTI_APP ? 2 + (int)(i % 2) : 1;
    for (int a = 0; a < apps; a++) {
        text_add(t,
                 "  - name: app-%d\n"
                 "    route_prefix: /app-%d\n"
                 "    import_path: svc_%05zu.app_%d:deployment%s\n",
                 a, a, i, a, a == 0 ? import_suffix : "");
        if (s->kind == KIND_MULTI_APP)
            text_add(t, "    runtime_env:\n      pip: [transformers==4.44.0, torch==2.4.0]\n");
        text_add(t, "    deployments:\n");
        char name[32];
        snprintf(name, sizeof(name), "Model%d", a);
        switch (s->kind) {
        case KIND_FIXED:
        case KIND_MULTI_APP:
            deployment_yaml(t, "      ", name, base + (a == 0 ? replica_bump : 0), false, 0,
                            a ? 0.5 : 1, 0, s->kind == KIND_MULTI_APP);
            break;
        case KIND_AUTOSCALING:
            deployment_yaml(t, "      ", name, base, true, 8 + replica_bump * 2, 0.5, 0, false);
            break;
        case KIND_GPU:
            deployment_yaml(t, "      ", name, 2 * base + replica_bump, false, 0, 2, 0.5, false);
            break;
        default:
            break;
        }
    }
    text_add(t, "rollout:\n  policy: %s\n", s->development ? "development" : "production");
    if (s->kind == KIND_GPU)
        text_add(t, "  max_surge_percent: %d\n", 25 + (int)(i % 3) * 25);
    text_add(t, "backend:\n  type: process\n  process:\n    applications:\n");
    for (int a = 0; a < apps; a++)
        text_add(t,
                 "      - name: app-%d\n"
                 "        command: [model-server, --port, \"{port}\"]\n"
                 "        health_path: /healthz\n"
                 "%s",
                 a, s->kind == KIND_MULTI_APP ? "        reconfigure_path: /reconfigure\n" : "");
    if (changed && s->edit == EDIT_INVALID) {
        /* mistakes a person makes: an unknown field (the name can still be
         * read), or broken YAML (it cannot; the planner takes the name of the
         * service that ran from the file of the same name) */
        if (i % 2)
            text_add(t, "rollout_policy: production\n");
        else
            text_add(t, "tags: {team: [search, ranking}\n");
    }
}

static int write_file(const char *dir, size_t i, const struct text *t)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/svc-%05zu.yaml", dir, i);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return -errno;
    ssize_t n = write(fd, t->data, t->length);
    int error = n == (ssize_t)t->length ? 0 : n < 0 ? -errno : -EIO;
    if (close(fd) < 0 && !error)
        error = -errno;
    return error;
}

struct repository {
    char root[4096], v1[4200], v2[4200], json[4200];
    struct service *services;
    size_t count, v1_files, v2_files;
    size_t bytes;
};

static int repository_write(struct repository *repo, size_t count, uint64_t seed)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(repo->root, sizeof(repo->root), "%s/rolld-bench-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(repo->root)) {
        fprintf(stderr, "bench_plan: %s: cannot create the temporary directory: %s\n", repo->root,
                strerror(errno));
        repo->root[0] = 0;
        return -1;
    }
    snprintf(repo->v1, sizeof(repo->v1), "%s/v1", repo->root);
    snprintf(repo->v2, sizeof(repo->v2), "%s/v2", repo->root);
    snprintf(repo->json, sizeof(repo->json), "%s/plan.json", repo->root);
    if (mkdir(repo->v1, 0755) < 0 || mkdir(repo->v2, 0755) < 0) {
        fprintf(stderr, "bench_plan: %s: cannot create: %s\n", repo->root, strerror(errno));
        return -1;
    }
    repo->services = calloc(count, sizeof(*repo->services));
    if (!repo->services)
        return -1;
    repo->count = count;
    rng_state = seed ? seed : 0x9E3779B97F4A7C15ULL;
    struct text t = {0};
    for (size_t i = 0; i < count; i++) {
        struct service *s = &repo->services[i];
        choose(s);
        int r = 0;
        if (s->edit != EDIT_ADDED) {
            t.length = 0;
            service_yaml(&t, i, s, false);
            repo->bytes += t.length;
            r = write_file(repo->v1, i, &t);
            repo->v1_files++;
        }
        if (r == 0 && s->edit != EDIT_DELETED) {
            t.length = 0;
            service_yaml(&t, i, s, true);
            repo->bytes += t.length;
            r = write_file(repo->v2, i, &t);
            repo->v2_files++;
        }
        if (r < 0) {
            fprintf(stderr, "bench_plan: %s: cannot write the specs: %s\n", repo->root,
                    strerror(-r));
            free(t.data);
            return -1;
        }
    }
    free(t.data);
    return 0;
}

static void remove_dir_files(const char *path)
{
    DIR *dir = opendir(path);
    if (!dir)
        return;
    struct dirent *entry;
    char file[8400];
    while ((entry = readdir(dir))) {
        if (!strcmp(entry->d_name, ".") || !strcmp(entry->d_name, ".."))
            continue;
        snprintf(file, sizeof(file), "%s/%s", path, entry->d_name);
        unlink(file);
    }
    closedir(dir);
    rmdir(path);
}

static void repository_remove(struct repository *repo)
{
    if (repo->root[0]) {
        remove_dir_files(repo->v1);
        remove_dir_files(repo->v2);
        unlink(repo->json);
        rmdir(repo->root);
    }
    free(repo->services);
}

/* ---- running the binary ---- */

static double seconds_since(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) + (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

struct child_run {
    double wall_s;
    double peak_rss_mib;
    int exit_status; /* -1: killed by a signal */
};

/* ---- the launcher ----
 *
 * The peak RSS that wait4 reports for a child is at least the resident size
 * of the process that started it: a forked child counts the pages it shares
 * with its parent, and exec keeps the larger of the old and the new peak.
 * posix_spawn and vfork do not help: with CLONE_VM the old memory is the
 * parent's own, and exec records the parent's peak. (Measured on Linux 6.18:
 * a parent holding 170 MiB of heap starts /bin/true with a peak of 170 MiB
 * by fork, posix_spawn and vfork alike.) After the check run this process
 * holds the plan JSON it loaded, some 80 MiB that free() keeps in the heap,
 * and every later child would report that instead of rolld's peak.
 *
 * So rolld is started by a launcher forked first thing in main, before the
 * specs are generated: it stays the size of a fresh process (about 1 MiB,
 * far below rolld's own peak), and since the figure is a maximum, what it
 * reports is rolld's. Requests and replies go over a SOCK_SEQPACKET pair,
 * one message each. */

#define LAUNCH_REQUEST_MAX 16384
#define LAUNCH_ARGS_MAX 32

struct launcher {
    pid_t pid;
    int fd;
};

struct launch_reply {
    int error;       /* errno of a failed fork or wait4, else 0 */
    int wait_status; /* as from wait4 */
    double wall_s;
    long peak_rss_kib;     /* the child's ru_maxrss */
    long launcher_rss_kib; /* the launcher's own peak: the floor of what it can measure */
};

/* Runs each request (output path, then argv) and replies until the socket
 * closes; never returns. */
static void launcher_serve(int fd)
{
    static char request[LAUNCH_REQUEST_MAX];
    for (;;) {
        ssize_t n;
        while ((n = recv(fd, request, sizeof(request) - 1, 0)) < 0 && errno == EINTR)
            ;
        if (n <= 0)
            _exit(n < 0 ? 1 : 0);
        request[n] = 0;
        const char *output_path = request;
        char *argv[LAUNCH_ARGS_MAX + 1];
        size_t argc = 0;
        for (char *p = request + strlen(request) + 1; p < request + n && argc < LAUNCH_ARGS_MAX;
             p += strlen(p) + 1)
            argv[argc++] = p;
        argv[argc] = NULL;

        struct launch_reply reply = {0};
        struct timespec start;
        clock_gettime(CLOCK_MONOTONIC, &start);
        pid_t pid = argc ? fork() : -1;
        if (pid == 0) {
            int out = open(output_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
            int null = open("/dev/null", O_WRONLY);
            if (out < 0 || null < 0 || dup2(out, STDOUT_FILENO) < 0 ||
                dup2(null, STDERR_FILENO) < 0)
                _exit(126);
            execv(argv[0], argv);
            _exit(127);
        }
        if (pid < 0) {
            reply.error = argc ? errno : EINVAL;
        } else {
            struct rusage usage;
            pid_t r;
            while ((r = wait4(pid, &reply.wait_status, 0, &usage)) < 0 && errno == EINTR)
                ;
            reply.wall_s = seconds_since(&start);
            if (r < 0)
                reply.error = errno;
            else
                reply.peak_rss_kib = usage.ru_maxrss; /* KiB on Linux */
        }
        struct rusage self;
        getrusage(RUSAGE_SELF, &self);
        reply.launcher_rss_kib = self.ru_maxrss;
        while (send(fd, &reply, sizeof(reply), 0) < 0)
            if (errno != EINTR)
                _exit(1);
    }
}

/* Forks the launcher; call before this process grows. */
static int launcher_start(struct launcher *l)
{
    int fds[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds) < 0) {
        fprintf(stderr, "bench_plan: socketpair: %s\n", strerror(errno));
        return -1;
    }
    fflush(NULL); /* nothing buffered may be written twice */
    l->pid = fork();
    if (l->pid < 0) {
        fprintf(stderr, "bench_plan: fork: %s\n", strerror(errno));
        close(fds[0]);
        close(fds[1]);
        return -1;
    }
    if (l->pid == 0) {
        close(fds[0]);
        launcher_serve(fds[1]);
    }
    close(fds[1]);
    l->fd = fds[0];
    return 0;
}

static void launcher_stop(struct launcher *l)
{
    if (l->pid <= 0)
        return;
    close(l->fd); /* the launcher sees the end of its requests and exits */
    while (waitpid(l->pid, NULL, 0) < 0 && errno == EINTR)
        ;
    l->pid = 0;
}

/* Asks the launcher to run argv with stdout to output_path. */
static int launcher_run(const struct launcher *l, char *const argv[], const char *output_path,
                        struct launch_reply *reply)
{
    static char request[LAUNCH_REQUEST_MAX];
    size_t length = 0;
    const char *part = output_path;
    for (size_t i = 0; part; part = argv[i++]) {
        size_t n = strlen(part) + 1;
        if (i > LAUNCH_ARGS_MAX || length + n > sizeof(request) - 1) {
            fputs("bench_plan: the command line is too long for the launcher\n", stderr);
            return -1;
        }
        memcpy(request + length, part, n);
        length += n;
    }
    ssize_t n;
    while ((n = send(l->fd, request, length, 0)) < 0 && errno == EINTR)
        ;
    if (n == (ssize_t)length)
        while ((n = recv(l->fd, reply, sizeof(*reply), 0)) < 0 && errno == EINTR)
            ;
    if (n != (ssize_t)sizeof(*reply)) {
        fprintf(stderr, "bench_plan: the launcher (pid %d) stopped answering: %s\n", (int)l->pid,
                n < 0 ? strerror(errno) : "no reply");
        return -1;
    }
    return 0;
}

/* Runs ROLLD plan v2 --against v1 --format json with stdout to output_path.
 * launcher_rss_mib: the launcher's own peak, below which run->peak_rss_mib
 * says nothing about rolld. */
static int run_child(const struct launcher *launcher, const char *rolld,
                     const struct repository *repo, const char *policies, const char *output_path,
                     struct child_run *run, double *launcher_rss_mib)
{
    char *const argv[] = {(char *)rolld,    "plan",     (char *)repo->v2, "--against",
                          (char *)repo->v1, "--format", "json",           "--policies",
                          (char *)policies, NULL};
    struct launch_reply reply;
    if (launcher_run(launcher, argv, output_path, &reply) < 0)
        return -1;
    if (reply.error) {
        fprintf(stderr, "bench_plan: cannot run %s: %s\n", rolld, strerror(reply.error));
        return -1;
    }
    int status = reply.wait_status;
    run->wall_s = reply.wall_s;
    run->peak_rss_mib = (double)reply.peak_rss_kib / 1024.0;
    *launcher_rss_mib = (double)reply.launcher_rss_kib / 1024.0;
    run->exit_status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    if (run->exit_status == 126 || run->exit_status == 127) {
        fprintf(stderr, "bench_plan: %s: cannot be run; pass the path of the rolld binary\n",
                rolld);
        return -1;
    }
    if (run->exit_status < 0) {
        fprintf(stderr, "bench_plan: %s plan died of signal %d\n", rolld, WTERMSIG(status));
        return -1;
    }
    return 0;
}

static size_t invalid_count(const struct repository *repo)
{
    size_t n = 0;
    for (size_t i = 0; i < repo->count; i++)
        n += repo->services[i].edit == EDIT_INVALID;
    return n;
}

/* Checks that every service got the action the generator meant. */
static int check_plan(const struct repository *repo, const struct child_run *run)
{
    int expected_exit = invalid_count(repo) ? 1 : 0;
    if (run->exit_status != expected_exit) {
        fprintf(stderr, "bench_plan: rolld plan exited %d, expected %d; see %s\n", run->exit_status,
                expected_exit, repo->json);
        return -1;
    }
    json_error_t error;
    json_t *doc = json_load_file(repo->json, 0, &error);
    json_t *services = json_object_get(doc, "services");
    if (!json_is_array(services)) {
        fprintf(stderr, "bench_plan: %s:%d: not the JSON of a plan: %s\n", repo->json, error.line,
                error.text);
        json_decref(doc);
        return -1;
    }
    size_t wrong = 0;
    if (json_array_size(services) != repo->count) {
        fprintf(stderr, "bench_plan: the plan has %zu services, expected %zu\n",
                json_array_size(services), repo->count);
        json_decref(doc);
        return -1;
    }
    /* plans come sorted by name and names are svc-%05zu in index order */
    for (size_t i = 0; i < repo->count; i++) {
        json_t *item = json_array_get(services, i);
        const char *action = json_string_value(json_object_get(item, "action"));
        const char *name = json_string_value(json_object_get(item, "name"));
        char want_name[32];
        snprintf(want_name, sizeof(want_name), "svc-%05zu", i);
        if (!action || !name || strcmp(name, want_name) != 0 ||
            strcmp(action, repo->services[i].expected_action) != 0) {
            if (wrong++ < 5)
                fprintf(stderr, "bench_plan: %s: action %s, expected %s (%s)\n", name ? name : "?",
                        action ? action : "?", repo->services[i].expected_action,
                        edit_names[repo->services[i].edit]);
        }
    }
    json_decref(doc);
    if (wrong) {
        fprintf(stderr, "bench_plan: %zu of %zu services got an unexpected action\n", wrong,
                repo->count);
        return -1;
    }
    return 0;
}

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *values, size_t n)
{
    qsort(values, n, sizeof(*values), compare_doubles);
    return n % 2 ? values[n / 2] : (values[n / 2 - 1] + values[n / 2]) / 2;
}

static void print_mix(const struct repository *repo)
{
    size_t kinds[KIND_COUNT] = {0}, changes[EDIT_COUNT] = {0}, development = 0;
    for (size_t i = 0; i < repo->count; i++) {
        kinds[repo->services[i].kind]++;
        changes[repo->services[i].edit]++;
        development += repo->services[i].development;
    }
    printf("services: %zu (v1 %zu files, v2 %zu files, %.1f MiB of YAML) in %s\n", repo->count,
           repo->v1_files, repo->v2_files, (double)repo->bytes / (1024.0 * 1024.0), repo->root);
    printf("  kinds:  ");
    for (int k = 0; k < KIND_COUNT; k++)
        printf("%s %zu%s", kind_names[k], kinds[k], k + 1 < KIND_COUNT ? ", " : "\n");
    printf("  policy: production %zu, development %zu\n", repo->count - development, development);
    printf("  v2:     ");
    for (int c = 0; c < EDIT_COUNT; c++)
        printf("%s %zu%s", edit_names[c], changes[c], c + 1 < EDIT_COUNT ? ", " : "\n");
}

static int bench_child(const struct launcher *launcher, const char *rolld,
                       const struct repository *repo, const char *policies, int runs)
{
    struct child_run check;
    double launcher_rss = 0;
    if (run_child(launcher, rolld, repo, policies, repo->json, &check, &launcher_rss) < 0 ||
        check_plan(repo, &check) < 0)
        return -1;
    printf("  plan checked: every service got the expected action (untimed run)\n\n");

    double wall[MAX_RUNS], rss_max = 0;
    for (int r = 0; r < runs; r++) {
        struct child_run run;
        if (run_child(launcher, rolld, repo, policies, "/dev/null", &run, &launcher_rss) < 0)
            return -1;
        wall[r] = run.wall_s;
        if (run.peak_rss_mib > rss_max)
            rss_max = run.peak_rss_mib;
    }
    double sorted[MAX_RUNS];
    memcpy(sorted, wall, sizeof(double) * (size_t)runs);
    double mid = median(sorted, (size_t)runs);
    printf("rolld plan v2 --against v1 --format json > /dev/null\n");
    printf("%-10s %-6s %-10s %-10s %-10s %-14s %s\n", "services", "runs", "wall min", "median",
           "max", "peak RSS max", "targets");
    printf("%-10zu %-6d %-10.3f %-10.3f %-10.3f %-14.1f < %.0f s: %s; < %.0f MiB: %s\n",
           repo->count, runs, sorted[0], mid, sorted[runs - 1], rss_max, TARGET_WALL_S,
           mid < TARGET_WALL_S ? "met" : "MISSED", TARGET_RSS_MIB,
           rss_max < TARGET_RSS_MIB ? "met" : "MISSED");
    printf("(seconds; RSS in MiB; the wall-time target is judged on the median)\n");
    if (rss_max <= launcher_rss)
        printf("peak RSS NOT MEASURED: the launcher that started rolld holds %.1f MiB itself, "
               "as much as rolld's figure\n",
               launcher_rss);
    else
        printf("(peak RSS is rolld's own: it was started by a launcher of %.1f MiB)\n",
               launcher_rss);
    return 0;
}

/* ---- the same work in this process, phase by phase ---- */

enum phase { PHASE_READ, PHASE_LOAD_V1, PHASE_LOAD_V2, PHASE_PLAN, PHASE_JSON, PHASE_COUNT };
static const char *const phase_names[] = {
    "read files only (I/O, both dirs)", "load v1 (read + parse + validate)",
    "load v2 (read + parse + validate)", "plan_set_compute", "render JSON (plan_list_write)"};

static int read_all(const char *dir, size_t *bytes)
{
    DIR *d = opendir(dir);
    if (!d)
        return -1;
    struct dirent *entry;
    char path[8400];
    while ((entry = readdir(d))) {
        if (entry->d_name[0] == '.')
            continue;
        snprintf(path, sizeof(path), "%s/%s", dir, entry->d_name);
        char *text;
        size_t length;
        if (source_read_file(path, 1 << 20, &text, &length) == 0) {
            *bytes += length;
            free(text);
        }
    }
    closedir(d);
    return 0;
}

static int bench_in_process(const struct repository *repo, const char *policies_dir, int runs)
{
    struct diag diag = DIAG_INIT;
    struct policy_set policies = {0};
    source_dir_load_policies(policies_dir, &policies, &diag);
    if (diag.count || !policies.count) {
        fprintf(stderr, "bench_plan: %s: cannot load the policies\n", policies_dir);
        diag_clear(&diag);
        policy_set_clear(&policies);
        return -1;
    }
    FILE *sink = fopen("/dev/null", "w");
    if (!sink) {
        policy_set_clear(&policies);
        return -1;
    }
    double times[PHASE_COUNT][MAX_RUNS];
    int status = 0;
    for (int r = 0; r < runs && status == 0; r++) {
        struct snapshot next = {0}, current = {0};
        struct service_plan *plans = NULL;
        size_t count = 0, bytes = 0;
        struct timespec start;

        clock_gettime(CLOCK_MONOTONIC, &start);
        read_all(repo->v1, &bytes);
        read_all(repo->v2, &bytes);
        times[PHASE_READ][r] = seconds_since(&start);

        clock_gettime(CLOCK_MONOTONIC, &start);
        if (source_dir_load(repo->v1, &current, &diag) < 0)
            status = -1;
        times[PHASE_LOAD_V1][r] = seconds_since(&start);

        clock_gettime(CLOCK_MONOTONIC, &start);
        if (status == 0 && source_dir_load(repo->v2, &next, &diag) < 0)
            status = -1;
        times[PHASE_LOAD_V2][r] = seconds_since(&start);

        clock_gettime(CLOCK_MONOTONIC, &start);
        if (status == 0 && plan_set_compute(&next, &current, &policies, &plans, &count) < 0)
            status = -1;
        times[PHASE_PLAN][r] = seconds_since(&start);

        clock_gettime(CLOCK_MONOTONIC, &start);
        if (status == 0)
            plan_list_write(plans, count, PLAN_FORMAT_JSON, sink);
        fflush(sink);
        times[PHASE_JSON][r] = seconds_since(&start);

        plan_set_free(plans, count);
        snapshot_clear(&next);
        snapshot_clear(&current);
    }
    fclose(sink);
    policy_set_clear(&policies);
    if (status < 0) {
        fprintf(stderr, "bench_plan: in-process run failed\n");
        for (size_t i = 0; i < diag.count; i++) {
            diag_format(&diag.entries[i], stderr);
            fputc('\n', stderr);
        }
        diag_clear(&diag);
        return -1;
    }
    diag_clear(&diag);

    double total = 0, medians[PHASE_COUNT];
    for (int p = 0; p < PHASE_COUNT; p++) {
        medians[p] = median(times[p], (size_t)runs);
        if (p != PHASE_READ) /* the loads read the files again */
            total += medians[p];
    }
    printf("\nin process, same files, median of %d run%s:\n", runs, runs == 1 ? "" : "s");
    printf("  %-36s %9s %7s\n", "phase", "seconds", "share");
    for (int p = 0; p < PHASE_COUNT; p++)
        printf("  %-36s %9.3f %6.1f%%\n", phase_names[p], medians[p],
               total > 0 ? 100.0 * medians[p] / total : 0.0);
    printf("  %-36s %9.3f\n", "total (loads + plan + JSON)", total);
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    printf("  peak RSS of bench_plan itself (the check of the plan JSON included): %.1f MiB\n",
           (double)usage.ru_maxrss / 1024.0);
    return 0;
}

/* ---- main ---- */

static void usage(FILE *out)
{
    fputs("usage: bench_plan ROLLD [--services N] [--runs R] [--in-process] [--policies DIR]\n"
          "                  [--seed S] [--keep]\n",
          out);
}

static long parse_count(const char *text, const char *what, long min, long max)
{
    char *end;
    errno = 0;
    long n = strtol(text, &end, 10);
    if (errno || *end || n < min || n > max) {
        fprintf(stderr, "bench_plan: %s %s: give a number from %ld to %ld\n", what, text, min, max);
        exit(2);
    }
    return n;
}

int main(int argc, char **argv)
{
    static const struct option options[] = {
        {"services", required_argument, NULL, 'n'}, {"runs", required_argument, NULL, 'r'},
        {"in-process", no_argument, NULL, 'i'},     {"policies", required_argument, NULL, 'p'},
        {"seed", required_argument, NULL, 's'},     {"keep", no_argument, NULL, 'k'},
        {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0},
    };
    size_t services = 10000;
    int runs = 5;
    bool in_process = false, keep = false;
    const char *policies = ROLLD_BENCH_POLICY_DIR;
    uint64_t seed = 1;
    int c;
    while ((c = getopt_long(argc, argv, "n:r:ip:s:kh", options, NULL)) != -1) {
        switch (c) {
        case 'n':
            services = (size_t)parse_count(optarg, "--services", 1, 99999);
            break;
        case 'r':
            runs = (int)parse_count(optarg, "--runs", 1, MAX_RUNS);
            break;
        case 'i':
            in_process = true;
            break;
        case 'p':
            policies = optarg;
            break;
        case 's':
            seed = (uint64_t)parse_count(optarg, "--seed", 0, 1L << 30);
            break;
        case 'k':
            keep = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc - 1) {
        usage(stderr);
        return 2;
    }
    const char *rolld = argv[optind];
    if (access(rolld, X_OK) < 0) {
        fprintf(stderr, "bench_plan: %s: not an executable; pass the path of the rolld binary\n",
                rolld);
        return 2;
    }

    /* before anything grows this process: see "the launcher" */
    struct launcher launcher;
    if (launcher_start(&launcher) < 0)
        return 1;

    struct repository repo;
    memset(&repo, 0, sizeof(repo));
    int status = 1;
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    if (repository_write(&repo, services, seed) == 0) {
        print_mix(&repo);
        printf("  written in %.2f s\n", seconds_since(&start));
        if (bench_child(&launcher, rolld, &repo, policies, runs) == 0 &&
            (!in_process || bench_in_process(&repo, policies, runs) == 0))
            status = 0;
    }
    launcher_stop(&launcher);
    if (keep && repo.root[0]) {
        printf("kept %s\n", repo.root);
        free(repo.services);
    } else {
        repository_remove(&repo);
    }
    return status;
}
