#include "haproxy.h"

#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "unix_socket.h"
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fd_limit.h"
#include "source_dir.h"
#include "state.h"

#define MIN_SLOTS 8
#define MAX_SLOTS ROUTER_MAX_ENDPOINTS

struct slot {
    int port; /* 0: unused */
    enum endpoint_state state;
    int weight;
};

struct hp_app {
    char *name;
    char *prefix;
    int slot_count;
    struct slot *slots[2]; /* slot_count each: a host of 1,000 services keeps 1,000 models */
};

struct hp_service {
    char *name;
    char *host;
    int port;
    struct hp_app *apps;
    size_t app_count;
    char *pins[2]; /* newline-separated */
};

struct haproxy {
    char *dir, *binary, *pin_header;
    char cfg_path[4096], admin_path[4096], master_path[4096], pid_path[4096];
    struct hp_service *services;
    size_t count;
    bool synced; /* the model matches what HAProxy runs */
};

/* ---- runtime API ---- */

char *haproxy_runtime_command(const char *socket_path, const char *command)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return NULL;
    struct sockaddr_un addr;
    unix_address(&addr, socket_path);
    if (connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        close(fd);
        return NULL;
    }
    size_t length = strlen(command);
    char *line = malloc(length + 2);
    if (!line) {
        close(fd);
        return NULL;
    }
    memcpy(line, command, length);
    line[length] = '\n';
    size_t done = 0;
    while (done < length + 1) {
        ssize_t n = write(fd, line + done, length + 1 - done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        done += (size_t)n;
    }
    free(line);
    /* the master CLI answers and closes only once the client is done */
    shutdown(fd, SHUT_WR);
    size_t capacity = 4096, used = 0;
    char *answer = malloc(capacity);
    while (answer) {
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, 5000) <= 0)
            break;
        if (used + 1024 > capacity) {
            capacity *= 2;
            char *grown = realloc(answer, capacity);
            if (!grown)
                break;
            answer = grown;
        }
        ssize_t n = read(fd, answer + used, capacity - used - 1);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        used += (size_t)n;
    }
    close(fd);
    if (answer)
        answer[used] = 0;
    return answer;
}

static bool runtime_run(struct haproxy *h, const char *commands)
{
    char *answer = haproxy_runtime_command(h->admin_path, commands);
    if (!answer)
        return false;
    free(answer);
    return true;
}

/* ---- model ---- */

static void app_clear(struct hp_app *app)
{
    free(app->name);
    free(app->prefix);
    free(app->slots[0]);
    free(app->slots[1]);
}

static void service_clear(struct hp_service *s)
{
    for (size_t i = 0; i < s->app_count; i++)
        app_clear(&s->apps[i]);
    free(s->apps);
    free(s->name);
    free(s->host);
    free(s->pins[0]);
    free(s->pins[1]);
}

/* The model is kept in the order the agent gives services, by name: a
 * binary search finds one; a scan covers any other order. */
static struct hp_service *find_service(struct haproxy *h, const char *name)
{
    size_t low = 0, high = h->count;
    while (low < high) {
        size_t mid = low + (high - low) / 2;
        int c = strcmp(h->services[mid].name, name);
        if (!c)
            return &h->services[mid];
        if (c < 0)
            low = mid + 1;
        else
            high = mid;
    }
    for (size_t i = 0; i < h->count; i++)
        if (!strcmp(h->services[i].name, name))
            return &h->services[i];
    return NULL;
}

/* The model's entry for name, for services asked for in name order (the
 * agent's): *cursor walks the model, which the last apply left in the same
 * order, so a pass over n services is O(n). Any other order still works,
 * by a scan. */
static struct hp_service *previous_service(struct haproxy *h, const char *name, size_t *cursor)
{
    while (*cursor < h->count && strcmp(h->services[*cursor].name, name) < 0)
        (*cursor)++;
    if (*cursor < h->count && !strcmp(h->services[*cursor].name, name))
        return &h->services[(*cursor)++];
    return find_service(h, name);
}

static struct hp_app *find_app(struct hp_service *s, const char *name)
{
    for (size_t i = 0; s && i < s->app_count; i++)
        if (!strcmp(s->apps[i].name, name))
            return &s->apps[i];
    return NULL;
}

static int slots_needed(size_t endpoints)
{
    int n = MIN_SLOTS;
    while ((size_t)n < endpoints && n < MAX_SLOTS)
        n *= 2;
    return n;
}

/* Keeps each endpoint in the slot it had; new endpoints take free slots. */
static void assign_slots(struct hp_app *app, const struct hp_app *old, int side,
                         const struct endpoint *endpoints, size_t count)
{
    bool placed[MAX_SLOTS] = {false};
    for (int i = 0; i < app->slot_count; i++)
        app->slots[side][i] = (struct slot){0, ENDPOINT_MAINT, 0};
    for (size_t e = 0; e < count; e++) {
        int slot = -1;
        for (int i = 0; old && i < old->slot_count && i < app->slot_count && slot < 0; i++)
            if (old->slots[side][i].port == endpoints[e].port)
                slot = i;
        if (slot >= 0) {
            app->slots[side][slot].port = endpoints[e].port;
            app->slots[side][slot].state = endpoints[e].state;
            placed[e] = true;
        }
    }
    for (size_t e = 0; e < count; e++) {
        if (placed[e])
            continue;
        for (int i = 0; i < app->slot_count; i++) {
            /* prefer a slot nobody used before, so a stale address never serves */
            bool was_used = old && i < old->slot_count && old->slots[side][i].port;
            if (!app->slots[side][i].port && !was_used) {
                app->slots[side][i].port = endpoints[e].port;
                app->slots[side][i].state = endpoints[e].state;
                placed[e] = true;
                break;
            }
        }
        for (int i = 0; i < app->slot_count && !placed[e]; i++) {
            if (!app->slots[side][i].port) {
                app->slots[side][i].port = endpoints[e].port;
                app->slots[side][i].state = endpoints[e].state;
                placed[e] = true;
            }
        }
    }
    /* slots no endpoint uses keep their old address, in maintenance */
    for (int i = 0; old && i < app->slot_count && i < old->slot_count; i++)
        if (!app->slots[side][i].port && old->slots[side][i].port)
            app->slots[side][i] = (struct slot){old->slots[side][i].port, ENDPOINT_MAINT, 0};
}

/* Weights that split requests share[0]:share[1] over the ready slots of
 * each side, as exactly as HAProxy's 1..256 weights allow. */
static void assign_weights(struct hp_app *app, const int share[2])
{
    int ready[2] = {0, 0};
    for (int side = 0; side < 2; side++)
        for (int i = 0; i < app->slot_count; i++)
            if (app->slots[side][i].port && app->slots[side][i].state == ENDPOINT_READY)
                ready[side]++;
    int effective[2] = {share[0], share[1]};
    /* traffic never goes to a side without ready replicas */
    for (int side = 0; side < 2; side++) {
        if (effective[side] > 0 && ready[side] == 0 && ready[1 - side] > 0) {
            effective[1 - side] += effective[side];
            effective[side] = 0;
        }
    }
    double scale = 1e9;
    for (int side = 0; side < 2; side++)
        if (effective[side] > 0 && ready[side] > 0) {
            double limit = 256.0 * ready[side] / effective[side];
            if (limit < scale)
                scale = limit;
        }
    for (int side = 0; side < 2; side++) {
        int weight = 0;
        if (effective[side] > 0 && ready[side] > 0) {
            weight = (int)(effective[side] * scale / ready[side] + 0.5);
            if (weight < 1)
                weight = 1;
            if (weight > 256)
                weight = 256;
        }
        for (int i = 0; i < app->slot_count; i++)
            app->slots[side][i].weight = app->slots[side][i].port ? weight : 0;
    }
}

static char *join_pins(const char *const *pins)
{
    size_t length = 1;
    for (int i = 0; i < ROUTER_MAX_PINS && pins[i]; i++)
        length += strlen(pins[i]) + 1;
    char *text = calloc(1, length);
    for (int i = 0; text && i < ROUTER_MAX_PINS && pins[i]; i++) {
        strcat(text, pins[i]);
        strcat(text, "\n");
    }
    return text;
}

static bool same_structure(const struct haproxy *h, const struct hp_service *services, size_t count)
{
    if (h->count != count)
        return false;
    for (size_t i = 0; i < count; i++) {
        const struct hp_service *a = &h->services[i], *b = &services[i];
        if (strcmp(a->name, b->name) || strcmp(a->host, b->host) || a->port != b->port ||
            a->app_count != b->app_count)
            return false;
        for (size_t j = 0; j < a->app_count; j++)
            if (strcmp(a->apps[j].name, b->apps[j].name) ||
                strcmp(a->apps[j].prefix, b->apps[j].prefix) ||
                a->apps[j].slot_count != b->apps[j].slot_count)
                return false;
    }
    return true;
}

/* ---- configuration ---- */

static int compare_prefix_length(const void *x, const void *y)
{
    const struct hp_app *a = *(const struct hp_app *const *)x, *b = *(const struct hp_app *const *)y;
    return (int)strlen(b->prefix) - (int)strlen(a->prefix);
}

static void write_server(FILE *f, char side_letter, int index, const struct slot *slot, bool pinned)
{
    int weight = pinned ? 1 : slot->weight;
    bool enabled = slot->port && slot->state != ENDPOINT_MAINT;
    if (slot->state == ENDPOINT_DRAIN)
        weight = 0;
    fprintf(f, "    server %c%d 127.0.0.1:%d weight %d%s\n", side_letter, index,
            slot->port ? slot->port : 1, weight, enabled ? "" : " disabled");
}

static void pin_path(const struct haproxy *h, const char *service, int side, char *out, size_t size)
{
    snprintf(out, size, "%s/%s.%d.pin", h->dir, service, side);
}

static int write_pin_file(const struct haproxy *h, const struct hp_service *s, int side)
{
    char path[4096], tmp[4200];
    pin_path(h, s->name, side, path, sizeof(path));
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return -errno;
    fputs(s->pins[side] ? s->pins[side] : "", f);
    fclose(f);
    return rename(tmp, path) < 0 ? -errno : 0;
}

static int write_config(struct haproxy *h, const struct hp_service *services, size_t count)
{
    char tmp[4200];
    snprintf(tmp, sizeof(tmp), "%s.tmp", h->cfg_path);
    FILE *f = fopen(tmp, "w");
    if (!f)
        return -errno;
    fprintf(f,
            "# written by rolld; changes here are overwritten\n"
            "global\n"
            "    master-worker\n"
            "    stats socket %s mode 600 level admin expose-fd listeners\n"
            "    stats timeout 30s\n"
            "    nbthread 2\n"
            "    hard-stop-after 120s\n"
            /* HAProxy raises its descriptor limit to the hard one and sizes
             * its tables and maxconn from it: a host whose hard limit is in
             * the millions would cost it gigabytes. As the unit's LimitNOFILE. */
            "    fd-hard-limit 65536\n"
            "\n"
            "defaults\n"
            "    mode http\n"
            "    timeout connect 2s\n"
            "    timeout client 120s\n"
            "    timeout server 120s\n"
            "    timeout http-request 15s\n"
            "    timeout http-keep-alive 15s\n"
            "    timeout queue 15s\n"
            "    option redispatch 1\n"
            "    retries 3\n"
            "    retry-on conn-failure empty-response response-timeout\n"
            "    http-reuse safe\n"
            "    option idle-close-on-response\n",
            h->admin_path);
    for (size_t i = 0; i < count; i++) {
        const struct hp_service *s = &services[i];
        for (int side = 0; side < 2; side++)
            write_pin_file(h, s, side);
        char pins[2][4096];
        pin_path(h, s->name, 0, pins[0], sizeof(pins[0]));
        pin_path(h, s->name, 1, pins[1], sizeof(pins[1]));
        fprintf(f, "\nfrontend %s\n    bind %s:%d\n", s->name, s->host, s->port);
        fprintf(f, "    acl pin0 req.hdr(%s) -m str -f %s\n", h->pin_header, pins[0]);
        fprintf(f, "    acl pin1 req.hdr(%s) -m str -f %s\n", h->pin_header, pins[1]);
        const struct hp_app *ordered[64];
        size_t n = s->app_count < 64 ? s->app_count : 64;
        for (size_t j = 0; j < n; j++)
            ordered[j] = &s->apps[j];
        qsort(ordered, n, sizeof(ordered[0]), compare_prefix_length);
        for (size_t j = 0; j < n; j++) {
            const struct hp_app *a = ordered[j];
            if (!strcmp(a->prefix, "/")) {
                fprintf(f, "    use_backend %s.%s.0 if pin0\n", s->name, a->name);
                fprintf(f, "    use_backend %s.%s.1 if pin1\n", s->name, a->name);
                fprintf(f, "    default_backend %s.%s\n", s->name, a->name);
                continue;
            }
            fprintf(f, "    acl route.%s path %s\n", a->name, a->prefix);
            fprintf(f, "    acl route.%s path_beg %s/\n", a->name, a->prefix);
            fprintf(f, "    use_backend %s.%s.0 if route.%s pin0\n", s->name, a->name, a->name);
            fprintf(f, "    use_backend %s.%s.1 if route.%s pin1\n", s->name, a->name, a->name);
            fprintf(f, "    use_backend %s.%s if route.%s\n", s->name, a->name, a->name);
        }
        for (size_t j = 0; j < s->app_count; j++) {
            const struct hp_app *a = &s->apps[j];
            fprintf(f, "\nbackend %s.%s\n    balance roundrobin\n", s->name, a->name);
            for (int side = 0; side < 2; side++)
                for (int k = 0; k < a->slot_count; k++)
                    write_server(f, side ? 'b' : 'a', k, &a->slots[side][k], false);
            for (int side = 0; side < 2; side++) {
                fprintf(f, "\nbackend %s.%s.%d\n    balance roundrobin\n", s->name, a->name, side);
                for (int k = 0; k < a->slot_count; k++)
                    write_server(f, side ? 'b' : 'a', k, &a->slots[side][k], true);
            }
        }
    }
    if (count == 0) {
        /* HAProxy needs a proxy to run; keep a harmless one */
        fprintf(f, "\nbackend rolld.empty\n");
    }
    if (fclose(f) != 0)
        return -EIO;
    return rename(tmp, h->cfg_path) < 0 ? -errno : 0;
}

static bool master_alive(struct haproxy *h)
{
    char *answer = haproxy_runtime_command(h->master_path, "show proc");
    bool ok = answer && strstr(answer, "master");
    free(answer);
    return ok;
}

static long long monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static char *worker_pids(struct haproxy *h)
{
    return haproxy_runtime_command(h->master_path, "show proc");
}

static int start_or_reload(struct haproxy *h)
{
    if (master_alive(h)) {
        char *before = worker_pids(h);
        char *answer = haproxy_runtime_command(h->master_path, "reload");
        free(answer);
        /* wait until the new worker answers on the admin socket */
        long long deadline = monotonic_ms() + 10000;
        bool done = false;
        while (monotonic_ms() < deadline && !done) {
            char *now = worker_pids(h);
            done = now && before && strcmp(now, before) != 0 && strstr(now, "worker");
            free(now);
            if (!done)
                usleep(10000);
        }
        free(before);
        while (monotonic_ms() < deadline) {
            char *info = haproxy_runtime_command(h->admin_path, "show info");
            bool up = info && strstr(info, "Pid:");
            free(info);
            if (up)
                break;
            usleep(10000);
        }
        return done ? 0 : -ETIMEDOUT;
    }
    unlink(h->master_path);
    pid_t pid = fork();
    if (pid == 0) {
        sigset_t none;
        sigemptyset(&none);
        sigprocmask(SIG_SETMASK, &none, NULL);
        setsid();
        /* the limit the agent was given; HAProxy raises it itself, up to
         * the hard limit or fd-hard-limit (see write_config) */
        fd_limit_restore_in_child();
        /* systemd's notify socket and watchdog are the agent's, not HAProxy's */
        unsetenv("NOTIFY_SOCKET");
        unsetenv("WATCHDOG_USEC");
        unsetenv("WATCHDOG_PID");
        char log[4200];
        snprintf(log, sizeof(log), "%s/haproxy.log", h->dir);
        int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        execlp(h->binary, h->binary, "-W", "-D", "-S", h->master_path, "-f", h->cfg_path, "-p",
               h->pid_path, (char *)NULL);
        _exit(127);
    }
    if (pid < 0)
        return -errno;
    int status;
    waitpid(pid, &status, 0); /* -D: the launcher exits once the master runs */
    long long deadline = monotonic_ms() + 10000;
    while (monotonic_ms() < deadline) {
        char *info = haproxy_runtime_command(h->admin_path, "show info");
        bool up = info && strstr(info, "Pid:");
        free(info);
        if (up)
            return 0;
        usleep(10000);
    }
    return -ETIMEDOUT;
}

/* ---- runtime changes ---- */

struct command_buffer {
    char *text;
    size_t length, capacity;
};

static void buffer_add(struct command_buffer *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void buffer_add(struct command_buffer *b, const char *fmt, ...)
{
    char line[1024];
    va_list args;
    va_start(args, fmt);
    int n = vsnprintf(line, sizeof(line), fmt, args);
    va_end(args);
    if (n < 0)
        return;
    if (b->length + (size_t)n + 2 > b->capacity) {
        size_t capacity = (b->capacity + (size_t)n + 2) * 2;
        char *grown = realloc(b->text, capacity);
        if (!grown)
            return;
        b->text = grown;
        b->capacity = capacity;
    }
    if (b->length)
        b->text[b->length++] = ';';
    memcpy(b->text + b->length, line, (size_t)n);
    b->length += (size_t)n;
    b->text[b->length] = 0;
}

static bool buffer_flush(struct haproxy *h, struct command_buffer *b)
{
    if (!b->length)
        return true;
    bool ok = runtime_run(h, b->text);
    b->length = 0;
    if (b->text)
        b->text[0] = 0;
    return ok;
}

static const char *state_word(const struct slot *slot)
{
    if (!slot->port || slot->state == ENDPOINT_MAINT)
        return "maint";
    return slot->state == ENDPOINT_DRAIN ? "drain" : "ready";
}

/* Commands for one server whose slot changed; the order keeps every step
 * safe: out of service first, address, weight, back in service last. */
static void slot_commands(struct command_buffer *b, const char *backend, char letter, int index,
                          const struct slot *before, const struct slot *after, bool pinned, bool force)
{
    int weight_after = pinned ? 1 : after->weight;
    int weight_before = pinned ? 1 : before->weight;
    const char *state_after = state_word(after), *state_before = state_word(before);
    bool moved = after->port && after->port != before->port;
    if (moved || force) {
        if (moved && strcmp(state_before, "maint") != 0)
            buffer_add(b, "set server %s/%c%d state maint", backend, letter, index);
        if (after->port)
            buffer_add(b, "set server %s/%c%d addr 127.0.0.1 port %d", backend, letter, index,
                       after->port);
    }
    if (force || weight_after != weight_before || moved)
        buffer_add(b, "set server %s/%c%d weight %d", backend, letter, index, weight_after);
    if (force || moved || strcmp(state_after, state_before) != 0)
        buffer_add(b, "set server %s/%c%d state %s", backend, letter, index, state_after);
}

static bool apply_runtime(struct haproxy *h, const struct hp_service *services, size_t count,
                          bool force)
{
    struct command_buffer b = {0};
    bool ok = true;
    for (size_t i = 0; i < count && ok; i++) {
        const struct hp_service *s = &services[i];
        struct hp_service *old = find_service(h, s->name);
        for (int side = 0; side < 2; side++) {
            const char *before = old && old->pins[side] ? old->pins[side] : "";
            if (!force && !strcmp(before, s->pins[side] ? s->pins[side] : ""))
                continue;
            char path[4096];
            pin_path(h, s->name, side, path, sizeof(path));
            write_pin_file(h, s, side);
            buffer_add(&b, "clear acl %s", path);
            char *copy = strdup(s->pins[side] ? s->pins[side] : "");
            for (char *save = NULL, *pin = strtok_r(copy, "\n", &save); pin;
                 pin = strtok_r(NULL, "\n", &save))
                buffer_add(&b, "add acl %s %s", path, pin);
            free(copy);
        }
        for (size_t j = 0; j < s->app_count; j++) {
            const struct hp_app *a = &s->apps[j];
            const struct hp_app *before = find_app(old, a->name);
            char split[256], pinned[2][256];
            snprintf(split, sizeof(split), "%s.%s", s->name, a->name);
            snprintf(pinned[0], sizeof(pinned[0]), "%s.%s.0", s->name, a->name);
            snprintf(pinned[1], sizeof(pinned[1]), "%s.%s.1", s->name, a->name);
            /* weights first lower, then raise, so a shift never overloads:
             * a first pass lowers the weights that go down on servers that
             * stay where they are, before any server leaves or joins (a
             * canary server drained in the same pass as its traffic moves
             * back must not leave the others the old share) */
            for (int side = 0; side < 2 && !force; side++) {
                for (int k = 0; k < a->slot_count; k++) {
                    const struct slot *was =
                        before && k < before->slot_count ? &before->slots[side][k] : NULL;
                    const struct slot *now = &a->slots[side][k];
                    if (was && was->port == now->port && now->weight < was->weight &&
                        !strcmp(state_word(was), "ready"))
                        buffer_add(&b, "set server %s/%c%d weight %d", split, side ? 'b' : 'a', k,
                                   now->weight);
                }
            }
            for (int side = 0; side < 2; side++) {
                for (int k = 0; k < a->slot_count; k++) {
                    static const struct slot empty = {0, ENDPOINT_MAINT, 0};
                    const struct slot *was =
                        before && k < before->slot_count ? &before->slots[side][k] : &empty;
                    const struct slot *now = &a->slots[side][k];
                    slot_commands(&b, pinned[side], side ? 'b' : 'a', k, was, now, true, force);
                    slot_commands(&b, split, side ? 'b' : 'a', k, was, now, false, force);
                }
            }
            if (b.length > 6000)
                ok = buffer_flush(h, &b);
        }
    }
    if (ok)
        ok = buffer_flush(h, &b);
    free(b.text);
    return ok;
}

/* ---- the adapter ---- */

/* HAProxy is supervised: a master that died (or was never started by us
 * and is gone after an agent restart) makes the next apply start it again. */
static bool master_running(struct haproxy *h)
{
    FILE *f = fopen(h->pid_path, "r");
    int pid = 0;
    if (f) {
        if (fscanf(f, "%d", &pid) != 1)
            pid = 0;
        fclose(f);
    }
    return pid > 0 && kill(pid, 0) == 0;
}

static bool haproxy_serving(void *instance)
{
    struct haproxy *h = instance;
    return h->synced && master_running(h);
}

static int haproxy_apply(void *instance, const struct router_service *in, size_t count)
{
    struct haproxy *h = instance;
    if (h->synced && !master_running(h))
        h->synced = false;
    struct hp_service *next = calloc(count ? count : 1, sizeof(*next));
    if (!next)
        return -ENOMEM;
    bool failed = false;
    size_t cursor = 0;
    for (size_t i = 0; i < count && !failed; i++) {
        const struct router_service *rs = &in[i];
        struct hp_service *s = &next[i];
        struct hp_service *old = previous_service(h, rs->name, &cursor);
        s->name = strdup(rs->name);
        s->host = strdup(rs->host ? rs->host : "127.0.0.1");
        s->port = rs->port;
        s->pins[0] = join_pins(rs->pins[0]);
        s->pins[1] = join_pins(rs->pins[1]);
        s->apps = calloc(rs->application_count ? rs->application_count : 1, sizeof(*s->apps));
        if (!s->name || !s->host || !s->pins[0] || !s->pins[1] || !s->apps) {
            failed = true;
            break;
        }
        s->app_count = rs->application_count;
        for (size_t j = 0; j < rs->application_count; j++) {
            const struct router_application *ra = &rs->applications[j];
            struct hp_app *a = &s->apps[j];
            const struct hp_app *old_app = find_app(old, ra->name);
            a->name = strdup(ra->name);
            a->prefix = strdup(ra->route_prefix ? ra->route_prefix : "/");
            size_t most = ra->endpoint_count[0] > ra->endpoint_count[1] ? ra->endpoint_count[0]
                                                                         : ra->endpoint_count[1];
            a->slot_count = slots_needed(most);
            if (old_app && old_app->slot_count >= (int)most && old_app->slot_count > a->slot_count)
                a->slot_count = old_app->slot_count; /* never shrink: that would reload */
            a->slots[0] = calloc((size_t)a->slot_count, sizeof(struct slot));
            a->slots[1] = calloc((size_t)a->slot_count, sizeof(struct slot));
            if (!a->name || !a->prefix || !a->slots[0] || !a->slots[1]) {
                failed = true;
                break;
            }
            for (int side = 0; side < 2; side++)
                assign_slots(a, old_app, side, ra->endpoints[side], ra->endpoint_count[side]);
            assign_weights(a, rs->share);
        }
    }
    int r = failed ? -ENOMEM : 0;
    if (r < 0) {
        /* nothing applied */
    } else if (!h->synced || !same_structure(h, next, count)) {
        char *before = NULL, *after = NULL;
        size_t length;
        source_read_file(h->cfg_path, 1 << 24, &before, &length);
        r = write_config(h, next, count);
        source_read_file(h->cfg_path, 1 << 24, &after, &length);
        /* an agent restart finds HAProxy running this very configuration:
         * no reload, which would close idle client connections */
        bool same = before && after && !strcmp(before, after) && master_running(h);
        free(before);
        free(after);
        if (r == 0 && !same)
            r = start_or_reload(h);
        if (r == 0)
            apply_runtime(h, next, count, true);
    } else if (!apply_runtime(h, next, count, false)) {
        r = -EIO;
    }
    if (r < 0) {
        for (size_t i = 0; i < count; i++)
            service_clear(&next[i]);
        free(next);
        h->synced = false;
        return r;
    }
    for (size_t i = 0; i < h->count; i++)
        service_clear(&h->services[i]);
    free(h->services);
    h->services = next;
    h->count = count;
    h->synced = true;
    return 0;
}

static bool haproxy_endpoint_idle(void *instance, const char *service, int port)
{
    struct haproxy *h = instance;
    struct hp_service *s = find_service(h, service);
    if (!s)
        return true;
    char *stats = haproxy_runtime_command(h->admin_path, "show stat");
    if (!stats)
        return true;
    bool idle = true;
    for (size_t j = 0; j < s->app_count && idle; j++) {
        struct hp_app *a = &s->apps[j];
        for (int side = 0; side < 2 && idle; side++) {
            for (int k = 0; k < a->slot_count && idle; k++) {
                if (a->slots[side][k].port != port)
                    continue;
                /* lines: pxname,svname,qcur,qmax,scur,... for the split and pinned backends */
                char prefix[3][320];
                snprintf(prefix[0], sizeof(prefix[0]), "\n%s.%s,%c%d,", s->name, a->name,
                         side ? 'b' : 'a', k);
                snprintf(prefix[1], sizeof(prefix[1]), "\n%s.%s.%d,%c%d,", s->name, a->name, side,
                         side ? 'b' : 'a', k);
                prefix[2][0] = 0;
                for (int p = 0; p < 2 && idle; p++) {
                    const char *line = strstr(stats, prefix[p]);
                    if (!line)
                        continue;
                    line += strlen(prefix[p]);
                    int qcur = 0, qmax = 0, scur = 0;
                    if (sscanf(line, "%d,%d,%d", &qcur, &qmax, &scur) >= 3 && (scur > 0 || qcur > 0))
                        idle = false;
                }
            }
        }
    }
    free(stats);
    return idle;
}

static double haproxy_ongoing(void *instance, const char *service, int side,
                              const char *application)
{
    struct haproxy *h = instance;
    char *stats = haproxy_runtime_command(h->admin_path, "show stat");
    if (!stats)
        return 0;
    char split[300], pinned[300];
    snprintf(split, sizeof(split), "%s.%s", service, application);
    snprintf(pinned, sizeof(pinned), "%s.%s.%d", service, application, side);
    char letter = side ? 'b' : 'a';
    double total = 0;
    /* pxname,svname,qcur,qmax,scur,... one line per server */
    for (char *save = NULL, *line = strtok_r(stats, "\n", &save); line;
         line = strtok_r(NULL, "\n", &save)) {
        char *comma = strchr(line, ',');
        if (!comma || line[0] == '#')
            continue;
        *comma = 0;
        const char *server = comma + 1;
        bool ours = (!strcmp(line, split) || !strcmp(line, pinned)) && server[0] == letter &&
                    server[1] >= '0' && server[1] <= '9';
        if (!ours)
            continue;
        int qcur = 0, qmax = 0, scur = 0;
        const char *fields = strchr(server, ',');
        if (fields && sscanf(fields + 1, "%d,%d,%d", &qcur, &qmax, &scur) >= 3)
            total += qcur + scur;
    }
    free(stats);
    return total;
}

static void haproxy_free(void *instance)
{
    struct haproxy *h = instance;
    if (!h)
        return;
    for (size_t i = 0; i < h->count; i++)
        service_clear(&h->services[i]);
    free(h->services);
    free(h->dir);
    free(h->binary);
    free(h->pin_header);
    free(h);
}

int haproxy_router_new(const struct haproxy_config *config, struct router_adapter *out)
{
    struct haproxy *h = calloc(1, sizeof(*h));
    if (!h)
        return -ENOMEM;
    h->dir = strdup(config->dir);
    h->binary = strdup(config->binary ? config->binary : "haproxy");
    h->pin_header = strdup(config->pin_header ? config->pin_header : "X-Rolld-Version");
    if (!h->dir || !h->binary || !h->pin_header) {
        haproxy_free(h);
        return -ENOMEM;
    }
    mkdir(h->dir, 0755);
    snprintf(h->cfg_path, sizeof(h->cfg_path), "%s/haproxy.cfg", h->dir);
    snprintf(h->admin_path, sizeof(h->admin_path), "%s/admin.sock", h->dir);
    snprintf(h->master_path, sizeof(h->master_path), "%s/master.sock", h->dir);
    snprintf(h->pid_path, sizeof(h->pid_path), "%s/haproxy.pid", h->dir);
    *out = (struct router_adapter){
        .version = ROUTER_ADAPTER_VERSION,
        .name = "haproxy",
        .instance = h,
        .apply = haproxy_apply,
        .ongoing = haproxy_ongoing,
        .endpoint_idle = haproxy_endpoint_idle,
        .serving = haproxy_serving,
        .free = haproxy_free,
    };
    return 0;
}
