#include "process.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

#include "capacity.h"
#include "fd_limit.h"
#include "health_probe.h"
#include "log.h"
#include "state.h"
#include "http_client.h"

extern char **environ;

enum replica_state {
    REPLICA_PENDING,  /* recorded, no process yet */
    REPLICA_STARTING, /* running, not yet healthy */
    REPLICA_READY,    /* healthy, takes traffic */
    REPLICA_BACKOFF,  /* died; restarts at restart_at_ms */
    REPLICA_DRAINING, /* out of the router, finishing requests */
    REPLICA_STOPPING, /* SIGTERM sent; SIGKILL at deadline */
    REPLICA_GONE,
};

static const char *const state_names[] = {"pending",  "starting", "ready", "backoff",
                                          "draining", "stopping", "gone"};

#define MAX_RESTARTS_BEFORE_CRASH_LOOP 3
#define DRAIN_MAX_MS 30000

struct backend;

struct replica {
    struct backend *backend;
    char id[33];
    char *service, *application, *deployment;
    int side, index;
    char version[17];
    pid_t pid;
    unsigned long long start_time;
    bool child;
    int port;
    enum replica_state state;
    long long state_since_ms, restart_at_ms;
    size_t due_index; /* in backend.due while waiting for a check; DUE_NONE otherwise */
    int failures, restarts, threshold;
    bool ever_ready, crash_loop;
    double period_s, timeout_s, shutdown_timeout_s;
    char *launch;       /* {argv, env, cwd, log} as compact JSON text */
    char *ingress;      /* the launch env's ROLLD_INGRESS, or NULL */
    char *health_url;
    char *reconfigure_url;
    char *user_config;  /* JSON text the replica runs with */
    char identity[17];  /* hash of what a restart would change; see deployment_identity() */
    double num_gpus;    /* what the replica asks for */
    bool health_failed; /* failed `threshold` health checks in a row after being ready */
    char *gpus;         /* devices it was given: "0,1"; NULL: none */
    sd_event_source *exit_source;
    sd_event_source *timer;
    struct health_probe *health; /* its kept connection; NULL until the first probe */
    struct http_request *reconfigure;
    /* the replica's record in the state file, and what it was made from */
    char *saved_text;
    struct state_holes saved_holes; /* where the launch text goes in it */
    struct saved_fields {
        pid_t pid;
        unsigned long long start_time;
        int port, side, index, restarts, threshold;
        enum replica_state state;
        bool ever_ready, crash_loop;
        double period_s, timeout_s, shutdown_timeout_s;
        const void *launch, *health_url, *reconfigure_url, *user_config;
        char version[17], identity[17], gpus[17]; /* gpus: spec_hash_text of the devices */
    } saved;
    /* the spec replica_configure() last applied: its version and file */
    char configured_version[17];
    char *configured_file;
};

struct backend {
    sd_event *event;
    struct process_config config;
    char *state_dir;
    struct http_client *http;
    struct replica **replicas;
    size_t count, capacity;
    int next_port;
    int gpus[64];
    size_t gpu_count;
    bool dirty; /* a replica changed state since the last launch_pending() */
    sd_event_source *probe_tick; /* see on_probe_tick() */
    struct due_entry {
        long long at; /* when the replica's next check is due (ms, monotonic) */
        struct replica *replica;
    } *due; /* a heap of the replicas waiting for a check */
    size_t due_count, due_capacity;
    struct health_probe_group *probes; /* their connections; NULL until the first check */
};

#define DUE_NONE SIZE_MAX

static long long now_ms(struct backend *b)
{
    uint64_t usec;
    sd_event_now(b->event, CLOCK_MONOTONIC, &usec);
    return (long long)(usec / 1000);
}

static long long wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void notify_changed(struct backend *b)
{
    if (b->config.changed)
        b->config.changed(b->config.userdata);
}

/* Field 22 of /proc/PID/stat: start time in clock ticks since boot. */
static unsigned long long process_start_time(pid_t pid)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return 0;
    buf[n] = 0;
    char *p = strrchr(buf, ')'); /* the command name may hold spaces */
    if (!p)
        return 0;
    p += 2;
    /* p is at field 3 (state); field 22 is 19 fields further */
    for (int field = 3; field < 22 && p; field++) {
        p = strchr(p, ' ');
        if (p)
            p++;
    }
    return p ? strtoull(p, NULL, 10) : 0;
}

static void replica_set_state(struct replica *r, enum replica_state state)
{
    if (r->state == state)
        return;
    r->backend->dirty = true;
    r->state = state;
    r->state_since_ms = now_ms(r->backend);
}

static void due_remove(struct backend *b, struct replica *r);

static void replica_free(struct replica *r)
{
    if (!r)
        return;
    due_remove(r->backend, r);
    sd_event_source_disable_unref(r->exit_source);
    sd_event_source_disable_unref(r->timer);
    health_probe_free(r->health);
    http_request_cancel(r->backend->http, r->reconfigure);
    free(r->launch);
    free(r->ingress);
    free(r->service);
    free(r->application);
    free(r->deployment);
    free(r->health_url);
    free(r->reconfigure_url);
    free(r->user_config);
    free(r->saved_text);
    free(r->configured_file);
    free(r->gpus);
    free(r);
}

static void schedule_timer(struct replica *r, long long delay_ms);
static int set_gpus(struct replica *r, const char *devices);
static void schedule_probe(struct replica *r, long long delay_ms);
static void replica_drain(struct replica *r);
static int replica_spawn(struct replica *r);

/* ---- ports ---- */

static bool port_taken(struct backend *b, int port)
{
    for (size_t i = 0; i < b->count; i++)
        if (b->replicas[i]->port == port && b->replicas[i]->state != REPLICA_GONE)
            return true;
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return true;
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int r = bind(fd, (struct sockaddr *)&addr, sizeof(addr));
    close(fd);
    return r < 0;
}

static int allocate_port(struct backend *b)
{
    int span = b->config.port_max - b->config.port_min + 1;
    for (int i = 0; i < span; i++) {
        int port = b->config.port_min + (b->next_port + i) % span;
        if (!port_taken(b, port)) {
            b->next_port = (port - b->config.port_min + 1) % span;
            return port;
        }
    }
    return -1;
}

/* ---- process lifecycle ---- */

static void replica_exited(struct replica *r, int status_known, int status)
{
    sd_event_source_disable_unref(r->exit_source);
    r->exit_source = NULL;
    if (r->health)
        health_probe_cancel(r->health, false);
    r->pid = 0;
    r->start_time = 0;
    if (r->state == REPLICA_STOPPING || r->state == REPLICA_DRAINING || r->state == REPLICA_GONE) {
        set_gpus(r, NULL);
        replica_set_state(r, REPLICA_GONE);
        r->timer = sd_event_source_disable_unref(r->timer);
        notify_changed(r->backend);
        return;
    }
    /* an unexpected death: restart with exponential backoff */
    r->restarts++;
    if (!r->ever_ready && r->restarts >= MAX_RESTARTS_BEFORE_CRASH_LOOP)
        r->crash_loop = true;
    long long delay = 1000LL << (r->restarts > 6 ? 6 : r->restarts - 1);
    r->restart_at_ms = now_ms(r->backend) + delay;
    replica_set_state(r, REPLICA_BACKOFF);
    schedule_timer(r, delay);
    (void)status_known;
    (void)status;
    notify_changed(r->backend);
}

static int on_replica_exit(sd_event_source *source, int fd, uint32_t revents, void *userdata)
{
    struct replica *r = userdata;
    int status = 0, known = 0;
    if (r->child && waitpid(r->pid, &status, WNOHANG) == r->pid)
        known = 1;
    replica_exited(r, known, status);
    return 0;
}

static int watch_exit(struct replica *r)
{
    int fd = (int)syscall(SYS_pidfd_open, r->pid, 0);
    if (fd < 0)
        return -errno;
    int e = sd_event_add_io(r->backend->event, &r->exit_source, fd, EPOLLIN, on_replica_exit, r);
    if (e < 0) {
        close(fd);
        return e;
    }
    sd_event_source_set_io_fd_own(r->exit_source, 1);
    return 0;
}

static char *expand_port(const char *arg, int port)
{
    const char *hole = strstr(arg, "{port}");
    if (!hole)
        return strdup(arg);
    size_t length = strlen(arg) + 16;
    char *out = malloc(length);
    if (out)
        snprintf(out, length, "%.*s%d%s", (int)(hole - arg), arg, port, hole + 6);
    return out;
}

/* ---- GPUs ---- */

/* r->gpus = devices ("" or NULL: none). 0, or -ENOMEM with r unchanged. */
static int set_gpus(struct replica *r, const char *devices)
{
    char *copy = NULL;
    if (devices && *devices && !(copy = strdup(devices)))
        return -ENOMEM;
    free(r->gpus);
    r->gpus = copy;
    return 0;
}

static bool holds_devices(const struct replica *r)
{
    return r->gpus && r->state != REPLICA_GONE && (r->pid > 0 || r->state == REPLICA_PENDING ||
                                                     r->state == REPLICA_BACKOFF);
}

/* Fractions of each device taken by the replicas that hold devices. */
static void device_load(struct backend *b, const struct replica *except, double *load)
{
    for (size_t d = 0; d < b->gpu_count; d++)
        load[d] = 0;
    for (size_t i = 0; i < b->count; i++) {
        const struct replica *r = b->replicas[i];
        if (r == except || !holds_devices(r))
            continue;
        double share = r->num_gpus < 1 ? r->num_gpus : 1;
        char copy[256];
        snprintf(copy, sizeof(copy), "%s", r->gpus);
        for (char *save = NULL, *t = strtok_r(copy, ",", &save); t; t = strtok_r(NULL, ",", &save))
            for (size_t d = 0; d < b->gpu_count; d++)
                if (b->gpus[d] == atoi(t))
                    load[d] += share;
    }
}

/* Gives r its devices: a fraction shares a device whose load allows it, a
 * whole number takes that many free devices. -EBUSY when they are taken. */
static int assign_devices(struct backend *b, struct replica *r)
{
    if (!b->gpu_count || r->num_gpus <= 0)
        return set_gpus(r, NULL);
    if (r->gpus)
        return 0; /* keeps what it had across restarts */
    double load[64];
    device_load(b, r, load);
    if (r->num_gpus < 1) {
        /* the fullest device that still fits packs fractions tightly */
        int best = -1;
        for (size_t d = 0; d < b->gpu_count; d++)
            if (load[d] + r->num_gpus <= 1 + 1e-9 && (best < 0 || load[d] > load[best]))
                best = (int)d;
        if (best < 0)
            return -EBUSY;
        char device[16];
        snprintf(device, sizeof(device), "%d", b->gpus[best]);
        return set_gpus(r, device);
    }
    int want = (int)(r->num_gpus + 0.999999), found = 0;
    char list[256] = "";
    for (size_t d = 0; d < b->gpu_count && found < want; d++) {
        if (load[d] > 1e-9)
            continue;
        char item[16];
        snprintf(item, sizeof(item), "%s%d", found ? "," : "", b->gpus[d]);
        strncat(list, item, sizeof(list) - strlen(list) - 1);
        found++;
    }
    if (found < want)
        return -EBUSY;
    return set_gpus(r, list);
}

static int replica_spawn(struct replica *r)
{
    struct backend *b = r->backend;
    if (r->port <= 0 || port_taken(b, r->port)) {
        r->port = 0;
        int port = allocate_port(b);
        if (port < 0)
            return -EADDRINUSE;
        r->port = port;
    }
    int devices = assign_devices(b, r);
    if (devices < 0)
        return devices;
    /* kept as text, made a document for the spawn only */
    json_t *launch = r->launch ? json_loads(r->launch, 0, NULL) : NULL;
    json_t *argv_json = json_object_get(launch, "argv");
    json_t *env_json = json_object_get(launch, "env");
    const char *cwd = json_string_value(json_object_get(launch, "cwd"));
    const char *log = json_string_value(json_object_get(launch, "log"));
    size_t argc = json_array_size(argv_json);
    if (argc == 0) {
        json_decref(launch);
        return -EINVAL;
    }

    /* everything the child needs is prepared before fork */
    char **argv = calloc(argc + 1, sizeof(char *));
    size_t env_count = 0;
    while (environ[env_count])
        env_count++;
    char **envp = calloc(env_count + json_object_size(env_json) + 5, sizeof(char *));
    if (!argv || !envp) {
        free(argv);
        free(envp);
        json_decref(launch);
        return -ENOMEM;
    }
    for (size_t i = 0; i < argc; i++)
        argv[i] = expand_port(json_string_value(json_array_get(argv_json, i)), r->port);
    size_t e = 0;
    for (size_t i = 0; i < env_count; i++)
        if (strncmp(environ[i], "ROLLD_", 6) != 0 && strncmp(environ[i], "NOTIFY_SOCKET=", 14) != 0 &&
            strncmp(environ[i], "CUDA_VISIBLE_DEVICES=", 21) != 0)
            envp[e++] = strdup(environ[i]);
    const char *key;
    json_t *value;
    json_object_foreach(env_json, key, value)
    {
        size_t n = strlen(key) + strlen(json_string_value(value)) + 2;
        envp[e] = malloc(n);
        if (envp[e])
            snprintf(envp[e++], n, "%s=%s", key, json_string_value(value));
    }
    char port_env[32], id_env[64];
    snprintf(port_env, sizeof(port_env), "ROLLD_PORT=%d", r->port);
    snprintf(id_env, sizeof(id_env), "ROLLD_REPLICA_ID=%s", r->id);
    envp[e++] = strdup(port_env);
    envp[e++] = strdup(id_env);
    if (r->gpus) {
        char gpu_env[300];
        snprintf(gpu_env, sizeof(gpu_env), "CUDA_VISIBLE_DEVICES=%s", r->gpus);
        envp[e++] = strdup(gpu_env);
    }
    envp[e] = NULL;

    int log_fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    pid_t pid = fork();
    if (pid == 0) {
        sigset_t all;
        sigemptyset(&all);
        sigprocmask(SIG_SETMASK, &all, NULL);
        for (int s = 1; s < NSIG; s++)
            signal(s, SIG_DFL);
        setsid();
        fd_limit_restore_in_child();
        int null_fd = open("/dev/null", O_RDONLY);
        if (null_fd >= 0)
            dup2(null_fd, 0);
        if (log_fd >= 0) {
            dup2(log_fd, 1);
            dup2(log_fd, 2);
        }
        if (cwd && *cwd && chdir(cwd) < 0) {
            dprintf(2, "rolld: cannot enter %s: %s\n", cwd, strerror(errno));
            _exit(126);
        }
        environ = envp;
        execvp(argv[0], argv);
        dprintf(2, "rolld: cannot run %s: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    int fork_error = errno;
    if (log_fd >= 0)
        close(log_fd);
    for (size_t i = 0; argv[i]; i++)
        free(argv[i]);
    free(argv);
    for (size_t i = 0; envp[i]; i++)
        free(envp[i]);
    free(envp);
    json_decref(launch);
    if (pid < 0)
        return -fork_error;
    r->pid = pid;
    r->child = true;
    r->start_time = process_start_time(pid);
    r->failures = 0;
    replica_set_state(r, REPLICA_STARTING);
    if (watch_exit(r) < 0) {
        /* cannot watch it: do not keep a process we cannot supervise */
        kill(pid, SIGKILL);
    }
    schedule_timer(r, 100); /* first health check soon after start */
    return 0;
}

static void replica_terminate(struct replica *r)
{
    if (r->health)
        health_probe_cancel(r->health, false);
    if (r->pid > 0) {
        kill(r->pid, SIGTERM);
        replica_set_state(r, REPLICA_STOPPING);
        schedule_timer(r, (long long)(r->shutdown_timeout_s * 1000));
    } else {
        replica_set_state(r, REPLICA_GONE);
    }
}

/* ---- health ---- */

static void on_probe_done(void *userdata, long status)
{
    struct replica *r = userdata;
    if (r->state != REPLICA_STARTING && r->state != REPLICA_READY)
        return;
    bool healthy = status >= 200 && status < 300;
    if (healthy) {
        r->failures = 0;
        if (r->state == REPLICA_STARTING) {
            r->ever_ready = true;
            r->restarts = 0;
            r->crash_loop = false;
            replica_set_state(r, REPLICA_READY);
            notify_changed(r->backend);
        }
    } else if (r->state == REPLICA_READY && ++r->failures >= r->threshold) {
        /* unhealthy: out of the router first (draining), stopped once it
         * has no request in flight; sync starts a replacement meanwhile,
         * and the version counts as unhealthy while it drains */
        r->health_failed = true;
        replica_drain(r);
        notify_changed(r->backend);
        return;
    }
    /* a starting replica is checked often so it takes traffic soon */
    if (r->state == REPLICA_STARTING)
        schedule_timer(r, (long long)((r->period_s > 0.2 ? 0.2 : r->period_s) * 1000));
    else
        schedule_probe(r, (long long)(r->period_s * 1000));
}

/* Starts a health check; false when none is in flight afterwards. */
static bool probe(struct replica *r)
{
    if (!r->health_url)
        return false;
    struct backend *b = r->backend;
    if (!b->probes && !(b->probes = health_probe_group_new(b->event)))
        return false;
    if (!r->health && !(r->health = health_probe_new(b->probes)))
        return false;
    if (health_probe_busy(r->health))
        return true;
    return health_probe_start(r->health, r->port, r->health_url, (long)(r->timeout_s * 1000),
                              on_probe_done, r) == 0;
}

static void on_reconfigure_done(void *userdata, long status)
{
    struct replica *r = userdata;
    r->reconfigure = NULL;
    if (status < 200 || status >= 300)
        r->failures++;
}

static bool replica_idle(struct replica *r)
{
    struct backend *b = r->backend;
    return !b->config.endpoint_idle || b->config.endpoint_idle(b->config.userdata, r->service, r->port);
}

static int on_timer(sd_event_source *source, uint64_t usec, void *userdata)
{
    struct replica *r = userdata;
    /* a oneshot that fired: freed, and made again when next needed; a ready
     * replica waits on the backend's tick, not on a timer of its own */
    r->timer = sd_event_source_unref(r->timer);
    switch (r->state) {
    case REPLICA_STARTING:
    case REPLICA_READY:
        if (!probe(r))
            schedule_timer(r, (long long)(r->period_s * 1000));
        break;
    case REPLICA_BACKOFF:
        if (replica_spawn(r) < 0) {
            r->restarts++;
            schedule_timer(r, 2000);
        }
        notify_changed(r->backend);
        break;
    case REPLICA_DRAINING:
        if (replica_idle(r) || now_ms(r->backend) - r->state_since_ms > DRAIN_MAX_MS)
            replica_terminate(r);
        else
            schedule_timer(r, 200);
        if (r->state == REPLICA_GONE)
            notify_changed(r->backend);
        break;
    case REPLICA_STOPPING:
        if (r->pid > 0)
            kill(r->pid, SIGKILL);
        break;
    default:
        break;
    }
    return 0;
}

static void schedule_timer(struct replica *r, long long delay_ms)
{
    uint64_t now;
    sd_event_now(r->backend->event, CLOCK_MONOTONIC, &now);
    uint64_t at = now + (uint64_t)(delay_ms < 0 ? 0 : delay_ms) * 1000;
    if (!r->timer) {
        int e = sd_event_add_time(r->backend->event, &r->timer, CLOCK_MONOTONIC, at, 1000,
                                  on_timer, r);
        if (e < 0) {
            r->timer = NULL;
            log_msg(LOG_ERR, "%s: replica %s: cannot set a timer: %s", r->service, r->id,
                    strerror(-e));
            return;
        }
    } else {
        sd_event_source_set_time(r->timer, at);
    }
    sd_event_source_set_enabled(r->timer, SD_EVENT_ONESHOT);
}

/* The periodic checks of ready replicas start from one timer of the
 * backend: the replicas waiting for their next check are kept in a heap
 * by when it is due (b->due), and the timer is set for the first of them,
 * with an accuracy of a tenth of its period (between PROBE_TICK_MIN_MS and
 * PROBE_TICK_MAX_MS): sd-event moves the wake-up within that slack to a
 * time it shares with other wake-ups, and each wake-up starts every check
 * then due. So a check starts at most that late, the checks of one wake-up
 * go out together and their answers are taken in few waits (a timer per
 * replica cost a loop iteration and a wait per check), and a wake-up costs
 * the checks it starts, not a look at every replica (a scan of 1,000
 * replicas each tick cost an idle agent a twentieth of its time). */
#define PROBE_TICK_MIN_MS 100
#define PROBE_TICK_MAX_MS 1000

/* the heap holds each replica's due time beside it: a sift compares
 * entries without reading the replicas */
static void due_place(struct backend *b, size_t i, struct due_entry e)
{
    b->due[i] = e;
    e.replica->due_index = i;
}

static void due_sift_up(struct backend *b, size_t i)
{
    struct due_entry e = b->due[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (b->due[parent].at <= e.at)
            break;
        due_place(b, i, b->due[parent]);
        i = parent;
    }
    due_place(b, i, e);
}

static void due_sift_down(struct backend *b, size_t i)
{
    struct due_entry e = b->due[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= b->due_count)
            break;
        if (child + 1 < b->due_count && b->due[child + 1].at < b->due[child].at)
            child++;
        if (e.at <= b->due[child].at)
            break;
        due_place(b, i, b->due[child]);
        i = child;
    }
    due_place(b, i, e);
}

/* r waits for its check until at; false when out of memory */
static bool due_push(struct backend *b, struct replica *r, long long at)
{
    struct due_entry e = {at, r};
    if (r->due_index != DUE_NONE) {
        b->due[r->due_index] = e;
        due_sift_up(b, r->due_index);
        due_sift_down(b, r->due_index);
        return true;
    }
    if (b->due_count == b->due_capacity) {
        size_t capacity = b->due_capacity ? b->due_capacity * 2 : 32;
        struct due_entry *grown = realloc(b->due, capacity * sizeof(*grown));
        if (!grown)
            return false;
        b->due = grown;
        b->due_capacity = capacity;
    }
    due_place(b, b->due_count++, e);
    due_sift_up(b, r->due_index);
    return true;
}

static void due_remove(struct backend *b, struct replica *r)
{
    size_t i = r->due_index;
    if (i == DUE_NONE)
        return;
    r->due_index = DUE_NONE;
    struct due_entry last = b->due[--b->due_count];
    if (i == b->due_count)
        return;
    due_place(b, i, last);
    due_sift_up(b, i);
    due_sift_down(b, last.replica->due_index);
}

/* sets the tick for the first check due; off when none is */
static void arm_probe_tick(struct backend *b)
{
    if (!b->probe_tick)
        return;
    if (!b->due_count) {
        sd_event_source_set_enabled(b->probe_tick, SD_EVENT_OFF);
        return;
    }
    const struct due_entry *first = &b->due[0];
    long long slack = (long long)(first->replica->period_s * 100);
    slack = slack < PROBE_TICK_MIN_MS   ? PROBE_TICK_MIN_MS
            : slack > PROBE_TICK_MAX_MS ? PROBE_TICK_MAX_MS
                                        : slack;
    sd_event_source_set_time(b->probe_tick, (uint64_t)first->at * 1000ULL);
    sd_event_source_set_time_accuracy(b->probe_tick, (uint64_t)slack * 1000ULL);
    sd_event_source_set_enabled(b->probe_tick, SD_EVENT_ONESHOT);
}

static int on_probe_tick(sd_event_source *source, uint64_t usec, void *userdata)
{
    struct backend *b = userdata;
    long long now = now_ms(b);
    /* a check started here goes back into the heap once it is answered;
     * one that cannot start waits a whole period */
    while (b->due_count && b->due[0].at <= now) {
        struct replica *r = b->due[0].replica;
        due_remove(b, r);
        if (r->state != REPLICA_READY || probe(r))
            continue;
        if (!due_push(b, r, now + (long long)(r->period_s * 1000)))
            schedule_timer(r, (long long)(r->period_s * 1000));
    }
    arm_probe_tick(b);
    return 0;
}

/* r (ready) is checked again in delay_ms */
static void schedule_probe(struct replica *r, long long delay_ms)
{
    struct backend *b = r->backend;
    if (!b->probe_tick && sd_event_add_time(b->event, &b->probe_tick, CLOCK_MONOTONIC, 0,
                                            PROBE_TICK_MIN_MS * 1000ULL, on_probe_tick, b) < 0)
        b->probe_tick = NULL;
    if (!b->probe_tick || !due_push(b, r, now_ms(b) + delay_ms)) {
        schedule_timer(r, delay_ms); /* without the tick, on its own timer */
        return;
    }
    if (b->due[0].replica == r)
        arm_probe_tick(b);
}

static void replica_drain(struct replica *r)
{
    if (r->state == REPLICA_DRAINING || r->state == REPLICA_STOPPING || r->state == REPLICA_GONE)
        return;
    if (r->pid <= 0) {
        replica_set_state(r, REPLICA_GONE);
        return;
    }
    /* no more probes: its connection closes too, so it never holds the drain */
    if (r->health)
        health_probe_cancel(r->health, false);
    replica_set_state(r, REPLICA_DRAINING);
    /* the router takes it out in this same pass; give it a moment first */
    schedule_timer(r, 300);
}

/* ---- records ---- */

/* b->replicas is kept sorted by service, so one service's replicas are a
 * range found by binary search: the calls of a pass stay O(log n) each, and
 * a pass over n services O(n log n), where scanning every replica made it
 * quadratic. Within a service, replicas keep the order they were added in. */
static int service_order(const struct replica *r, const char *service)
{
    return strcmp(r->service ? r->service : "", service);
}

/* b->replicas[*lo .. *hi) are the replicas of `service` */
static void service_range(struct backend *b, const char *service, size_t *lo, size_t *hi)
{
    size_t low = 0, high = b->count;
    while (low < high) {
        size_t mid = low + (high - low) / 2;
        if (service_order(b->replicas[mid], service) < 0)
            low = mid + 1;
        else
            high = mid;
    }
    *lo = low;
    high = b->count;
    while (low < high) {
        size_t mid = low + (high - low) / 2;
        if (service_order(b->replicas[mid], service) <= 0)
            low = mid + 1;
        else
            high = mid;
    }
    *hi = low;
}

static struct replica *replica_add(struct backend *b, const char *service)
{
    if (b->count == b->capacity) {
        size_t capacity = b->capacity ? b->capacity * 2 : 32;
        struct replica **grown = realloc(b->replicas, capacity * sizeof(*grown));
        if (!grown)
            return NULL;
        b->replicas = grown;
        b->capacity = capacity;
    }
    struct replica *r = calloc(1, sizeof(*r));
    if (!r)
        return NULL;
    r->service = service ? strdup(service) : NULL;
    if (service && !r->service) {
        free(r);
        return NULL;
    }
    r->backend = b;
    r->due_index = DUE_NONE;
    size_t lo, at;
    service_range(b, service ? service : "", &lo, &at);
    memmove(&b->replicas[at + 1], &b->replicas[at], (b->count - at) * sizeof(*b->replicas));
    b->replicas[at] = r;
    b->count++;
    return r;
}

static void new_replica_id(char *id)
{
    unsigned char bytes[16];
    int fd = open("/dev/urandom", O_RDONLY | O_CLOEXEC);
    if (fd < 0 || read(fd, bytes, sizeof(bytes)) != sizeof(bytes)) {
        for (size_t i = 0; i < sizeof(bytes); i++)
            bytes[i] = (unsigned char)rand();
    }
    if (fd >= 0)
        close(fd);
    for (size_t i = 0; i < sizeof(bytes); i++)
        snprintf(id + 2 * i, 3, "%02x", bytes[i]);
}

static const struct application_spec *find_app(const struct service_spec *spec, const char *name)
{
    for (size_t i = 0; spec && i < spec->application_count; i++)
        if (!strcmp(spec->applications[i].name, name))
            return &spec->applications[i];
    return NULL;
}

static const struct deployment_spec *find_deployment(const struct application_spec *app,
                                                     const char *name)
{
    for (size_t i = 0; app && i < app->deployment_count; i++)
        if (!strcmp(app->deployments[i].name, name))
            return &app->deployments[i];
    return NULL;
}

static bool replica_active(const struct replica *r)
{
    return r->state == REPLICA_PENDING || r->state == REPLICA_STARTING ||
           r->state == REPLICA_READY || r->state == REPLICA_BACKOFF;
}

static bool replica_matches(const struct replica *r, const char *service, int side)
{
    return r->side == side && !strcmp(r->service, service);
}

static char *spec_dir(const struct service_spec *spec)
{
    char *copy = strdup(spec->file ? spec->file : ".");
    if (!copy)
        return NULL;
    char *slash = strrchr(copy, '/');
    if (slash)
        *slash = 0;
    else
        strcpy(copy, ".");
    return copy;
}

/* doc: the spec's document (spec_doc), read only */
static json_t *launch_for(struct backend *b, const struct service_spec *spec, const json_t *doc,
                          const struct application_spec *app, const struct deployment_spec *d,
                          const char *id, int index, int side)
{
    json_t *argv = json_array();
    for (size_t i = 0; app->command && app->command[i]; i++)
        json_array_append_new(argv, json_string(app->command[i]));
    json_t *env = json_object();
    json_t *env_vars = json_object_get(doc, "env_vars");
    const char *key;
    json_t *value;
    json_object_foreach(env_vars, key, value) json_object_set(env, key, value);
    json_t *process_apps =
        json_object_get(json_object_get(json_object_get(doc, "backend"), "process"),
                        "applications");
    json_t *entry = NULL;
    size_t i;
    json_array_foreach(process_apps, i, value) if (!strcmp(json_string_value(json_object_get(value, "name")), app->name)) entry = value;
    json_object_foreach(json_object_get(entry, "env"), key, value) json_object_set(env, key, value);
    char text[64];
    json_object_set_new(env, "ROLLD_SERVICE", json_string(spec->name));
    json_object_set_new(env, "ROLLD_VERSION", json_string(spec->version));
    json_object_set_new(env, "ROLLD_VERSION_NAME",
                        json_string(spec->version_name ? spec->version_name : spec->version));
    json_object_set_new(env, "ROLLD_APPLICATION", json_string(app->name));
    json_object_set_new(env, "ROLLD_DEPLOYMENT", json_string(d->name));
    snprintf(text, sizeof(text), "%d", index);
    json_object_set_new(env, "ROLLD_REPLICA", json_string(text));
    json_object_set_new(env, "ROLLD_STATE_DIR", json_string(b->state_dir));
    json_object_set_new(env, "ROLLD_SIDE", json_string(side ? "1" : "0"));
    json_object_set_new(env, "ROLLD_INGRESS", json_string(app->ingress ? app->ingress : d->name));

    /* a relative working_dir is taken from the spec file's directory; a spec
     * read from a Git commit has no directory on this host (its file is a
     * path in the repository), so there it is taken from the state dir */
    char *dir = spec_dir(spec);
    const char *working = json_string_value(json_object_get(entry, "working_dir"));
    const char *base = dir && dir[0] == '/' ? dir : b->state_dir;
    char cwd[4096];
    if (working && working[0] == '/')
        snprintf(cwd, sizeof(cwd), "%s", working);
    else
        snprintf(cwd, sizeof(cwd), "%s/%s", base, working ? working : "");
    free(dir);
    char log[4096];
    snprintf(log, sizeof(log), "%s/logs/%s.%s.%s.%d.log", b->state_dir, spec->name, app->name,
             d->name, index);
    (void)id;
    return json_pack("{s:o, s:o, s:s, s:s}", "argv", argv, "env", env, "cwd", cwd, "log", log);
}

/* The deployment's user_config as JSON text in *out (NULL: none). 0, or
 * -ENOMEM. */
static int user_config_text(const json_t *doc, const char *app_name, const char *deployment,
                            char **out)
{
    *out = NULL;
    json_t *apps = json_object_get(doc, "applications");
    size_t i, j;
    json_t *app, *d;
    char *text = NULL;
    json_array_foreach(apps, i, app)
    {
        if (strcmp(json_string_value(json_object_get(app, "name")), app_name) != 0)
            continue;
        json_array_foreach(json_object_get(app, "deployments"), j, d)
        {
            if (strcmp(json_string_value(json_object_get(d, "name")), deployment) != 0)
                continue;
            json_t *config = json_object_get(d, "user_config");
            if (config && !(text = json_dumps(config, JSON_COMPACT | JSON_SORT_KEYS |
                                                          JSON_ENCODE_ANY)))
                return -ENOMEM;
        }
    }
    *out = text;
    return 0;
}

/* Keeps launch as text (a third of what the document takes) and the one
 * value read from it every pass. */
static void set_launch(struct replica *r, const json_t *launch)
{
    char *text = launch ? json_dumps(launch, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    const char *ingress =
        json_string_value(json_object_get(json_object_get(launch, "env"), "ROLLD_INGRESS"));
    char *ingress_copy = ingress ? strdup(ingress) : NULL;
    if ((launch && !text) || (ingress && !ingress_copy)) {
        /* out of memory: the replica keeps what it had */
        free(text);
        free(ingress_copy);
        return;
    }
    free(r->launch);
    free(r->ingress);
    r->launch = text;
    r->ingress = ingress_copy;
}

static void replica_configure(struct backend *b, struct replica *r, const struct service_spec *spec,
                              const struct application_spec *app, const struct deployment_spec *d,
                              const struct policy *policy)
{
    r->threshold = policy ? policy->failure_threshold : 3;
    /* everything below comes from the spec's version (its doc less the
     * rollout settings) and its file: done again only when these change */
    const char *file = spec->file ? spec->file : "";
    if (!strcmp(r->configured_version, spec->version) && r->configured_file &&
        !strcmp(r->configured_file, file))
        return;
    memcpy(r->version, spec->version, sizeof(r->version));
    r->num_gpus = d->num_gpus;
    r->period_s = d->health_check_period_s;
    r->timeout_s = d->health_check_timeout_s;
    r->shutdown_timeout_s = d->graceful_shutdown_timeout_s;
    /* made before the old ones are freed: the saved record (replica_text)
     * tells a new value by its new address */
    char *health_url = strdup(app->health_path ? app->health_path : "/-/healthz");
    char *reconfigure_url = app->reconfigure_path ? strdup(app->reconfigure_path) : NULL;
    free(r->health_url);
    r->health_url = health_url;
    free(r->reconfigure_url);
    r->reconfigure_url = reconfigure_url;
    char *config = NULL;
    json_t *launch = NULL, *doc = spec_doc(spec); /* parsed once for both */
    int made = doc ? user_config_text(doc, app->name, d->name, &config) : -ENOMEM;
    if (made == 0)
        launch = launch_for(b, spec, doc, app, d, r->id, r->index, r->side);
    json_decref(doc);
    if (!launch) {
        /* out of memory: the replica keeps its launch and config, and the
         * next pass configures it again (configured_version is unchanged) */
        free(config);
        return;
    }
    bool config_changed = (config == NULL) != (r->user_config == NULL) ||
                          (config && strcmp(config, r->user_config) != 0);
    /* the environment of the next (re)start carries the current config */
    if (config)
        json_object_set_new(json_object_get(launch, "env"), "ROLLD_USER_CONFIG",
                            json_string(config));
    set_launch(r, launch);
    json_decref(launch);
    if (config_changed && r->user_config && r->pid > 0 && r->reconfigure_url) {
        /* a running replica gets the new user_config without a restart */
        char url[512];
        snprintf(url, sizeof(url), "http://127.0.0.1:%d%s", r->port, r->reconfigure_url);
        /* libcurl (and the TLS library it sets up) is loaded into use only
         * by the first reconfiguration: most agents never need it */
        if (!b->http)
            b->http = http_client_new(b->event);
        http_request_cancel(b->http, r->reconfigure);
        r->reconfigure = b->http ? http_client_start(b->http, url, config ? config : "null",
                                                     (long)(r->timeout_s * 1000),
                                                     on_reconfigure_done, r)
                                 : NULL;
        if (!r->reconfigure)
            r->failures++; /* not sent: a failed reconfiguration, as on_reconfigure_done counts */
    }
    char *user_config = config ? config : strdup("null");
    free(r->user_config);
    r->user_config = user_config;
    memcpy(r->configured_version, spec->version, sizeof(r->configured_version));
    free(r->configured_file);
    r->configured_file = strdup(file);
}

/* What a replica cannot change without a restart: everything about its
 * deployment except the fields DESIGN.md rule 5 calls lightweight. Two
 * replicas with the same identity are interchangeable; a replica whose
 * identity differs from its deployment's is replaced, in waves. */
static bool deployment_identity(const struct service_spec *spec, const struct application_spec *app,
                                const struct deployment_spec *d, char out[17])
{
    if (d->identity[0]) {
        memcpy(out, d->identity, 17);
        return true;
    }
    static const char *const service_light[] = {"applications", "backend", "rollout",
                                                "version_name", "tags", "logging_config"};
    static const char *const app_light[] = {"deployments", "route_prefix", "logging_config"};
    static const char *const deployment_light[] = {
        "num_replicas", "autoscaling_config", "max_ongoing_requests", "max_queued_requests",
        "logging_config", "health_check_period_s", "health_check_timeout_s",
        "graceful_shutdown_timeout_s", "graceful_shutdown_wait_loop_s", "user_config"};
    static const char *const process_light[] = {"health_path", "reconfigure_path", "ingress"};
    json_t *doc = spec_doc(spec);
    if (!doc)
        return false;
    json_t *service = json_copy(doc);
    for (size_t i = 0; i < sizeof(service_light) / sizeof(*service_light); i++)
        json_object_del(service, service_light[i]);
    json_t *app_doc = NULL, *dep_doc = NULL, *entry = NULL, *item;
    size_t i;
    json_array_foreach(json_object_get(doc, "applications"), i, item)
        if (!strcmp(json_string_value(json_object_get(item, "name")), app->name))
            app_doc = item;
    json_array_foreach(json_object_get(app_doc, "deployments"), i, item)
        if (!strcmp(json_string_value(json_object_get(item, "name")), d->name))
            dep_doc = item;
    json_array_foreach(json_object_get(json_object_get(json_object_get(doc, "backend"),
                                                       "process"), "applications"), i, item)
        if (!strcmp(json_string_value(json_object_get(item, "name")), app->name))
            entry = item;
    json_t *app_part = app_doc ? json_copy(app_doc) : json_object();
    for (i = 0; i < sizeof(app_light) / sizeof(*app_light); i++)
        json_object_del(app_part, app_light[i]);
    json_t *dep_part = dep_doc ? json_copy(dep_doc) : json_object();
    for (i = 0; i < sizeof(deployment_light) / sizeof(*deployment_light); i++)
        json_object_del(dep_part, deployment_light[i]);
    /* without a reconfigure path, user_config reaches a replica only by a restart */
    if (!app->reconfigure_path && dep_doc && json_object_get(dep_doc, "user_config"))
        json_object_set(dep_part, "user_config", json_object_get(dep_doc, "user_config"));
    json_t *entry_part = entry ? json_copy(entry) : json_object();
    for (i = 0; i < sizeof(process_light) / sizeof(*process_light); i++)
        json_object_del(entry_part, process_light[i]);
    json_t *all = json_pack("{s:o, s:o, s:o, s:o}", "service", service, "application", app_part,
                            "deployment", dep_part, "process", entry_part);
    char *text = json_dumps(all, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(17));
    json_decref(all);
    json_decref(doc);
    if (!text)
        return false; /* out of memory: no identity rather than a wrong one */
    spec_hash_text(text, out);
    free(text);
    /* the spec is not changed after parsing, only this memo in it */
    memcpy(((struct deployment_spec *)d)->identity, out, 17);
    return true;
}

static bool replica_of(const struct replica *r, const char *service, int side,
                       const char *application, const char *deployment)
{
    return replica_matches(r, service, side) && !strcmp(r->application, application) &&
           !strcmp(r->deployment, deployment);
}

/* Worst first: not started, then not ready, then the highest index. */
static int drain_rank(const struct replica *r)
{
    int rank = r->state == REPLICA_READY ? 0 : r->state == REPLICA_STARTING ? 1 : 2;
    return rank * 100000 + r->index;
}

static void drain_worst(struct backend *b, const char *service, int side, const char *app,
                        const char *dep, const char *identity, bool matching)
{
    struct replica *worst = NULL;
    size_t lo, hi;
    service_range(b, service, &lo, &hi);
    for (size_t i = lo; i < hi; i++) {
        struct replica *r = b->replicas[i];
        if (!replica_of(r, service, side, app, dep) || !replica_active(r) ||
            (strcmp(r->identity, identity) == 0) != matching)
            continue;
        if (!worst || drain_rank(r) > drain_rank(worst))
            worst = r;
    }
    if (worst)
        replica_drain(worst);
}

static int free_index(struct backend *b, const char *service, int side, const char *app,
                      const char *dep)
{
    size_t lo, hi;
    service_range(b, service, &lo, &hi);
    for (int index = 0;; index++) {
        bool used = false;
        for (size_t i = lo; i < hi && !used; i++) {
            struct replica *r = b->replicas[i];
            used = r->state != REPLICA_GONE && r->index == index &&
                   replica_of(r, service, side, app, dep);
        }
        if (!used)
            return index;
    }
}

struct deployment_counts {
    int current, outdated, ready_current;
    int leaving; /* draining or stopping, still alive */
};

static struct deployment_counts count_replicas(struct backend *b, const char *service, int side,
                                               const char *app, const char *dep,
                                               const char *identity)
{
    struct deployment_counts c = {0, 0, 0, 0};
    size_t lo, hi;
    service_range(b, service, &lo, &hi);
    for (size_t i = lo; i < hi; i++) {
        struct replica *r = b->replicas[i];
        if (!replica_of(r, service, side, app, dep))
            continue;
        if (r->state == REPLICA_DRAINING || r->state == REPLICA_STOPPING) {
            c.leaving++;
            continue;
        }
        if (!replica_active(r))
            continue;
        if (strcmp(r->identity, identity) == 0) {
            c.current++;
            if (r->state == REPLICA_READY)
                c.ready_current++;
        } else {
            c.outdated++;
        }
    }
    return c;
}

/*
 * One deployment toward `want` replicas of `identity`. Replicas of another
 * identity are replaced in waves (start new, wait ready, drain old): at most
 * `wave` replicas beyond `want` run at once, and an old replica leaves only
 * when a new one is ready to take its place, so ready capacity never drops.
 */
static int sync_deployment(struct backend *b, const char *service, int side,
                           const struct service_spec *spec, const struct application_spec *app,
                           const struct deployment_spec *d, int want, int wave,
                           const struct policy *policy)
{
    char identity[17];
    if (!deployment_identity(spec, app, d, identity))
        return -ENOMEM; /* nothing is replaced on a guess */
    size_t lo, hi;
    service_range(b, service, &lo, &hi);
    for (size_t i = lo; i < hi; i++) {
        struct replica *r = b->replicas[i];
        if (replica_of(r, service, side, app->name, d->name) && replica_active(r) &&
            !strcmp(r->identity, identity))
            replica_configure(b, r, spec, app, d, policy);
    }
    struct deployment_counts c = count_replicas(b, service, side, app->name, d->name, identity);
    while (c.current > want) {
        drain_worst(b, service, side, app->name, d->name, identity, true);
        c = count_replicas(b, service, side, app->name, d->name, identity);
    }
    int keep_outdated = want - c.ready_current > 0 ? want - c.ready_current : 0;
    while (c.outdated > keep_outdated) {
        drain_worst(b, service, side, app->name, d->name, identity, false);
        c = count_replicas(b, service, side, app->name, d->name, identity);
    }
    /* replicas on their way out still hold their room (and their GPUs):
     * nothing runs beyond `want`, plus one wave while old replicas are
     * replaced; a wave starts when the previous one's old replicas are gone,
     * and a replica that failed its health checks is replaced once it is */
    int allowed = want + (c.outdated ? wave : 0);
    int budget = allowed - c.current - c.outdated - c.leaving;
    int start = want - c.current < budget ? want - c.current : budget;
    for (int k = 0; k < start; k++) {
        int index = free_index(b, service, side, app->name, d->name);
        struct replica *r = replica_add(b, service);
        if (!r)
            return -ENOMEM;
        new_replica_id(r->id);
        r->application = strdup(app->name);
        r->deployment = strdup(d->name);
        r->side = side;
        r->index = index;
        memcpy(r->identity, identity, sizeof(r->identity));
        r->state = REPLICA_PENDING;
        r->state_since_ms = now_ms(b);
        replica_configure(b, r, spec, app, d, policy);
    }
    return 0;
}

static int process_sync(void *instance, const char *service, int side,
                        const struct service_spec *spec, int capacity, const struct policy *policy)
{
    struct backend *b = instance;
    /* drain what the spec no longer has, or everything without a spec */
    size_t lo, hi;
    service_range(b, service, &lo, &hi);
    for (size_t i = lo; i < hi; i++) {
        struct replica *r = b->replicas[i];
        if (!replica_matches(r, service, side) || !replica_active(r))
            continue;
        const struct application_spec *app = find_app(spec, r->application);
        if (!find_deployment(app, r->deployment) || capacity <= 0)
            replica_drain(r);
    }
    if (!spec || capacity <= 0)
        return 0;
    int wave_percent = policy ? policy->wave_percent : 20;
    for (size_t a = 0; a < spec->application_count; a++) {
        const struct application_spec *app = &spec->applications[a];
        for (size_t k = 0; k < app->deployment_count; k++) {
            const struct deployment_spec *d = &app->deployments[k];
            int want = capacity_replicas(d->num_replicas, capacity);
            int wave = capacity_replicas(want, wave_percent);
            int r = sync_deployment(b, service, side, spec, app, d, want, wave < 1 ? 1 : wave,
                                    policy);
            if (r < 0)
                return r;
        }
    }
    return 0;
}

static void process_observe(void *instance, const char *service, int side,
                            const struct service_spec *spec, int capacity,
                            struct side_observation *out)
{
    struct backend *b = instance;
    memset(out, 0, sizeof(*out));
    out->ready = spec != NULL;
    size_t lo, hi;
    service_range(b, service, &lo, &hi);
    for (size_t i = lo; i < hi; i++) {
        struct replica *r = b->replicas[i];
        if (!replica_matches(r, service, side) || r->state == REPLICA_GONE)
            continue;
        out->total_replicas++;
        if (r->state == REPLICA_DRAINING || r->state == REPLICA_STOPPING)
            out->surplus_replicas++;
        if (r->state == REPLICA_READY)
            out->ready_replicas++;
        if (r->health_failed && !out->unhealthy) {
            out->unhealthy = true;
            out->unhealthy_reason = "a replica failed its health checks (policy failure_threshold)";
        }
        if (r->crash_loop && replica_active(r)) {
            out->unhealthy = true; /* the crash loop is the reason to tell */
            out->unhealthy_reason = "replicas keep dying (crash loop)";
        }
    }
    for (size_t a = 0; spec && a < spec->application_count; a++) {
        const struct application_spec *app = &spec->applications[a];
        for (size_t k = 0; k < app->deployment_count; k++) {
            const struct deployment_spec *d = &app->deployments[k];
            char identity[17];
            if (!deployment_identity(spec, app, d, identity)) {
                out->ready = false; /* out of memory: not known to be ready */
                continue;
            }
            struct deployment_counts c =
                count_replicas(b, service, side, app->name, d->name, identity);
            if (c.ready_current < capacity_replicas(d->num_replicas, capacity))
                out->ready = false;
            out->outdated_replicas += c.outdated;
        }
    }
}

static int process_count_ready(void *instance, const char *service, int side,
                               const char *application, const char *deployment, int wanted)
{
    struct backend *b = instance;
    int ready = 0;
    size_t lo, hi;
    service_range(b, service, &lo, &hi);
    for (size_t i = lo; i < hi; i++) {
        struct replica *r = b->replicas[i];
        if (replica_of(r, service, side, application, deployment) && r->state == REPLICA_READY)
            ready++;
    }
    return ready < wanted ? ready : wanted;
}

static size_t process_endpoints(void *instance, const char *service, int side,
                                const char *application, struct endpoint *out, size_t max)
{
    struct backend *b = instance;
    size_t n = 0, lo, hi;
    service_range(b, service, &lo, &hi);
    for (size_t i = lo; i < hi && n < max; i++) {
        struct replica *r = b->replicas[i];
        if (!replica_matches(r, service, side) || strcmp(r->application, application) != 0 ||
            r->port <= 0)
            continue;
        /* the ingress deployment is recorded in the launch env */
        if (r->ingress && strcmp(r->ingress, r->deployment) != 0)
            continue;
        if (r->state == REPLICA_READY)
            out[n++] = (struct endpoint){r->port, ENDPOINT_READY};
        else if (r->state == REPLICA_DRAINING || r->state == REPLICA_STOPPING)
            out[n++] = (struct endpoint){r->port, ENDPOINT_DRAIN};
    }
    return n;
}

static int process_launch_pending(void *instance)
{
    struct backend *b = instance;
    int launched = 0;
    for (size_t i = 0; i < b->count; i++) {
        struct replica *r = b->replicas[i];
        if (r->state != REPLICA_PENDING)
            continue;
        int e = replica_spawn(r);
        if (e == -EBUSY)
            continue; /* its devices are still held by replicas on their way out */
        if (e < 0) {
            r->restarts++;
            replica_set_state(r, REPLICA_BACKOFF);
            if (r->restarts >= MAX_RESTARTS_BEFORE_CRASH_LOOP)
                r->crash_loop = true;
            schedule_timer(r, 1000);
        }
        launched++;
    }
    /* forget replicas that are gone */
    size_t kept = 0;
    for (size_t i = 0; i < b->count; i++) {
        if (b->replicas[i]->state == REPLICA_GONE)
            replica_free(b->replicas[i]);
        else
            b->replicas[kept++] = b->replicas[i];
    }
    b->count = kept;
    if (b->dirty)
        launched++; /* tells the caller to save */
    b->dirty = false;
    return launched;
}

static void saved_fields_of(const struct replica *r, struct saved_fields *f)
{
    memset(f, 0, sizeof(*f)); /* padding too: the struct is compared with memcmp */
    f->pid = r->pid;
    f->start_time = r->start_time;
    f->port = r->port;
    f->side = r->side;
    f->index = r->index;
    f->restarts = r->restarts;
    f->threshold = r->threshold;
    f->state = r->state;
    f->ever_ready = r->ever_ready;
    f->crash_loop = r->crash_loop;
    f->period_s = r->period_s;
    f->timeout_s = r->timeout_s;
    f->shutdown_timeout_s = r->shutdown_timeout_s;
    /* replaced, never changed in place, and each new value allocated
     * while the old one still is: a new pointer is a new value */
    f->launch = r->launch;
    f->health_url = r->health_url;
    f->reconfigure_url = r->reconfigure_url;
    f->user_config = r->user_config;
    memcpy(f->version, r->version, sizeof(f->version));
    memcpy(f->identity, r->identity, sizeof(f->identity));
    spec_hash_text(r->gpus, f->gpus);
}

/* One replica's record, made again only when a field it holds changed. */
static const char *replica_text(struct replica *r)
{
    struct saved_fields now;
    saved_fields_of(r, &now);
    if (r->saved_text && !memcmp(&now, &r->saved, sizeof(now)))
        return r->saved_text;
    /* the launch is copied in at each save (state_holes), not kept twice */
    json_t *launch = r->launch ? json_integer(STATE_HOLE(0)) : NULL;
    if (r->launch && !launch)
        return NULL; /* out of memory: no record rather than one without its launch */
    json_t *doc = json_pack(
        "{s:s, s:s, s:s, s:s, s:s, s:s, s:i, s:i, s:s, s:i, s:I, s:i, s:s, s:i, s:b, s:b, "
        "s:O, s:s?, s:s?, s:s?, s:f, s:f, s:f, s:i}",
        "id", r->id, "identity", r->identity, "gpus", r->gpus ? r->gpus : "", "service", r->service,
        "application", r->application, "deployment", r->deployment, "side", r->side, "index",
        r->index, "version", r->version, "pid", (int)r->pid, "start_time",
        (json_int_t)r->start_time, "port", r->port, "state", state_names[r->state], "restarts",
        r->restarts, "ever_ready", r->ever_ready, "crash_loop", r->crash_loop, "launch",
        launch ? launch : json_null(), "health_path", r->health_url, "reconfigure_path",
        r->reconfigure_url, "user_config", r->user_config, "period_s", r->period_s, "timeout_s",
        r->timeout_s, "shutdown_timeout_s", r->shutdown_timeout_s, "threshold", r->threshold);
    char *text = doc ? json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(17))
                     : NULL;
    json_decref(doc);
    json_decref(launch);
    if (!text)
        return NULL;
    free(r->saved_text);
    r->saved_text = text;
    state_holes_find(text, "launch", &r->saved_holes);
    r->saved = now;
    return text;
}

/* The replicas as a JSON array, from each replica's kept record: a save
 * costs what changed, plus copying the rest. */
static int process_state_write(void *instance, struct state_writer *w)
{
    struct backend *b = instance;
    bool first = true;
    state_writer_add(w, "[", 1);
    for (size_t i = 0; i < b->count; i++) {
        struct replica *r = b->replicas[i];
        if (r->state == REPLICA_GONE)
            continue;
        const char *text = replica_text(r);
        if (!text)
            return -ENOMEM;
        if (!first)
            state_writer_add(w, ",", 1);
        first = false;
        const char *fills[2] = {r->launch, NULL};
        state_writer_add_holes(w, text, 0, strlen(text), &r->saved_holes, fills);
    }
    state_writer_add(w, "]", 1);
    return 0;
}

static void process_free(void *instance)
{
    struct backend *b = instance;
    if (!b)
        return;
    for (size_t i = 0; i < b->count; i++)
        replica_free(b->replicas[i]);
    free(b->replicas);
    free(b->due);
    health_probe_group_free(b->probes);
    sd_event_source_disable_unref(b->probe_tick);
    http_client_free(b->http);
    sd_event_unref(b->event);
    free(b->state_dir);
    free(b);
}

/* ---- adoption after a restart ---- */

static int state_index(const char *name)
{
    for (size_t i = 0; i < sizeof(state_names) / sizeof(state_names[0]); i++)
        if (name && !strcmp(state_names[i], name))
            return (int)i;
    return -1;
}

static char *dup_or_null(const char *s)
{
    return s ? strdup(s) : NULL;
}

static void adopt(struct backend *b, const json_t *item)
{
    struct replica *r = replica_add(b, json_string_value(json_object_get(item, "service")));
    if (!r)
        return;
    snprintf(r->id, sizeof(r->id), "%s", json_string_value(json_object_get(item, "id")) ?: "");
    r->application = dup_or_null(json_string_value(json_object_get(item, "application")));
    r->deployment = dup_or_null(json_string_value(json_object_get(item, "deployment")));
    r->side = (int)json_integer_value(json_object_get(item, "side"));
    r->index = (int)json_integer_value(json_object_get(item, "index"));
    snprintf(r->version, sizeof(r->version), "%s",
             json_string_value(json_object_get(item, "version")) ?: "");
    snprintf(r->identity, sizeof(r->identity), "%s",
             json_string_value(json_object_get(item, "identity")) ?: "");
    /* out of memory: the devices are not known, and the replica is let go
     * (adopted, it would share them) */
    const char *devices = json_string_value(json_object_get(item, "gpus"));
    if (devices && strlen(devices) > 255)
        devices = NULL; /* not what this agent writes (64 devices at most) */
    bool devices_lost = set_gpus(r, devices) < 0;
    r->pid = (pid_t)json_integer_value(json_object_get(item, "pid"));
    r->start_time = (unsigned long long)json_integer_value(json_object_get(item, "start_time"));
    r->port = (int)json_integer_value(json_object_get(item, "port"));
    r->restarts = (int)json_integer_value(json_object_get(item, "restarts"));
    r->ever_ready = json_is_true(json_object_get(item, "ever_ready"));
    r->crash_loop = json_is_true(json_object_get(item, "crash_loop"));
    set_launch(r, json_object_get(item, "launch"));
    r->health_url = dup_or_null(json_string_value(json_object_get(item, "health_path")));
    r->reconfigure_url = dup_or_null(json_string_value(json_object_get(item, "reconfigure_path")));
    r->user_config = dup_or_null(json_string_value(json_object_get(item, "user_config")));
    r->period_s = json_number_value(json_object_get(item, "period_s"));
    r->timeout_s = json_number_value(json_object_get(item, "timeout_s"));
    r->shutdown_timeout_s = json_number_value(json_object_get(item, "shutdown_timeout_s"));
    r->threshold = (int)json_integer_value(json_object_get(item, "threshold"));
    if (r->period_s <= 0)
        r->period_s = 10;
    if (r->timeout_s <= 0)
        r->timeout_s = 30;
    if (r->threshold <= 0)
        r->threshold = 3;
    int state = state_index(json_string_value(json_object_get(item, "state")));
    r->state = state < 0 ? REPLICA_PENDING : (enum replica_state)state;
    r->state_since_ms = now_ms(b);
    if (!r->service || !r->application || !r->deployment || devices_lost) {
        r->state = REPLICA_GONE;
        return;
    }

    bool alive = r->pid > 0 && r->start_time && process_start_time(r->pid) == r->start_time;
    if (!alive) {
        r->pid = 0;
        if (r->state == REPLICA_DRAINING || r->state == REPLICA_STOPPING)
            r->state = REPLICA_GONE;
        else if (r->state != REPLICA_PENDING)
            r->state = REPLICA_PENDING; /* died while we were away: start again */
        return;
    }
    r->child = false;
    if (watch_exit(r) < 0) {
        r->state = REPLICA_PENDING;
        r->pid = 0;
        return;
    }
    switch (r->state) {
    case REPLICA_READY:
    case REPLICA_STARTING:
        /* keep serving; the next health check confirms */
        schedule_timer(r, 50);
        break;
    case REPLICA_DRAINING:
        schedule_timer(r, 200);
        break;
    case REPLICA_STOPPING:
        kill(r->pid, SIGTERM);
        schedule_timer(r, (long long)(r->shutdown_timeout_s * 1000));
        break;
    default:
        r->state = REPLICA_STARTING;
        schedule_timer(r, 50);
    }
}

/* A replica whose spawn was recorded but whose pid never made it to disk
 * (the agent died between fork and save) is found by its environment and
 * stopped, so nothing runs that the state does not know. */
static void stop_orphans(struct backend *b)
{
    DIR *proc = opendir("/proc");
    if (!proc)
        return;
    char marker[4200];
    snprintf(marker, sizeof(marker), "ROLLD_STATE_DIR=%s", b->state_dir);
    struct dirent *entry;
    while ((entry = readdir(proc))) {
        pid_t pid = (pid_t)atoi(entry->d_name);
        if (pid <= 1 || pid == getpid())
            continue;
        char path[64];
        snprintf(path, sizeof(path), "/proc/%d/environ", (int)pid);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        if (fd < 0)
            continue;
        static char env[65536];
        ssize_t n = read(fd, env, sizeof(env) - 1);
        close(fd);
        if (n <= 0)
            continue;
        env[n] = 0;
        bool ours = false;
        const char *id = NULL;
        for (char *p = env; p < env + n; p += strlen(p) + 1) {
            if (!strcmp(p, marker))
                ours = true;
            else if (!strncmp(p, "ROLLD_REPLICA_ID=", 17))
                id = p + 17;
        }
        if (!ours || !id)
            continue;
        struct replica *known = NULL;
        for (size_t i = 0; i < b->count && !known; i++)
            if (!strcmp(b->replicas[i]->id, id))
                known = b->replicas[i];
        if (known && known->pid == pid)
            continue;
        if (known && known->pid == 0 && known->state == REPLICA_PENDING) {
            /* spawned just before the agent died: adopt it */
            known->pid = pid;
            known->start_time = process_start_time(pid);
            known->child = false;
            if (watch_exit(known) == 0) {
                replica_set_state(known, REPLICA_STARTING);
                schedule_timer(known, 50);
                continue;
            }
            known->pid = 0;
        }
        kill(pid, SIGKILL);
    }
    closedir(proc);
}

int process_backend_new(sd_event *event, const struct process_config *config,
                        const json_t *previous, struct compute_adapter *out)
{
    struct backend *b = calloc(1, sizeof(*b));
    if (!b)
        return -ENOMEM;
    b->event = sd_event_ref(event);
    b->config = *config;
    b->state_dir = strdup(config->state_dir);
    /* each replica takes a pidfd and a kept-alive probe connection */
    fd_limit_raise();
    for (size_t g = 0; g < config->gpu_count && g < 64; g++)
        b->gpus[b->gpu_count++] = config->gpus[g];
    if (!b->state_dir) {
        process_free(b);
        return -ENOMEM;
    }
    char logs[4096];
    snprintf(logs, sizeof(logs), "%s/logs", b->state_dir);
    mkdir(logs, 0755);
    size_t i;
    json_t *item;
    json_array_foreach(previous, i, item) adopt(b, item);
    stop_orphans(b);
    *out = (struct compute_adapter){
        .version = COMPUTE_ADAPTER_VERSION,
        .name = "process",
        .instance = b,
        .sync = process_sync,
        .observe = process_observe,
        .count_ready = process_count_ready,
        .endpoints = process_endpoints,
        .launch_pending = process_launch_pending,
        .state_write = process_state_write,
        .free = process_free,
    };
    (void)wall_ms;
    return 0;
}

void process_backend_set_gpus(void *instance, const int *gpus, size_t count)
{
    struct backend *b = instance;
    b->gpu_count = 0;
    for (size_t g = 0; g < count && g < 64; g++)
        b->gpus[b->gpu_count++] = gpus[g];
}
