#include "metrics.h"

#include <arpa/inet.h>
#include <errno.h>
#include <math.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include "lazy_lib.h"

/* libevent (its HTTP server, evhttp) is opened by the first metrics_open(),
 * not at start: an agent without a listener never maps it. Its functions are
 * called through this table. */
#define EVENT_FUNCTIONS(X)                                                                         \
    X(evbuffer_add_reference)                                                                      \
    X(event_add)                                                                                   \
    X(event_base_dispatch)                                                                         \
    X(event_base_free)                                                                             \
    X(event_base_loopbreak)                                                                        \
    X(event_base_new)                                                                              \
    X(event_free)                                                                                  \
    X(event_new)                                                                                   \
    X(evconnlistener_disable)                                                                      \
    X(evconnlistener_enable)                                                                       \
    X(evconnlistener_free)                                                                         \
    X(evconnlistener_get_base)                                                                     \
    X(event_base_once)                                                                             \
    X(evconnlistener_new)                                                                          \
    X(evconnlistener_set_error_cb)                                                                 \
    X(event_set_log_callback)                                                                      \
    X(evhttp_add_header)                                                                           \
    X(evhttp_bind_listener)                                                                        \
    X(evhttp_free)                                                                                 \
    X(evhttp_new)                                                                                  \
    X(evhttp_request_get_command)                                                                  \
    X(evhttp_request_get_output_buffer)                                                            \
    X(evhttp_request_get_output_headers)                                                           \
    X(evhttp_request_get_uri)                                                                      \
    X(evhttp_send_reply)                                                                           \
    X(evhttp_set_allowed_methods)                                                                  \
    X(evhttp_set_gencb)                                                                            \
    X(evhttp_set_max_body_size)                                                                    \
    X(evhttp_set_max_headers_size)                                                                 \
    X(evhttp_set_timeout)
#define EVENT_SLOT(f) __typeof__(f) *f;
static struct {
    EVENT_FUNCTIONS(EVENT_SLOT)
} ev;
#undef EVENT_SLOT

static void on_event_log(int severity, const char *message);

static int event_init(char *err, size_t err_size)
{
    ev.event_set_log_callback(on_event_log);
    return 0;
}

static int event_load(char *err, size_t err_size)
{
#define EVENT_SYMBOL(f) {#f, (void **)&ev.f},
    static const struct lazy_symbol symbols[] = {EVENT_FUNCTIONS(EVENT_SYMBOL)};
#undef EVENT_SYMBOL
    static struct lazy_lib libevent = LAZY_LIB(ROLLD_LIBEVENT_SONAME, symbols, event_init);
    char error[256];
    int r = lazy_lib_load(&libevent, error, sizeof(error));
    if (r < 0)
        snprintf(err, err_size, "metrics: %s", error);
    return r;
}

#include "log.h"
#include "text_buffer.h"

/* Upper bounds of the reconcile histogram's buckets, in seconds: a pass is
 * a few milliseconds when nothing moves, up to seconds when many processes
 * start or HAProxy reloads. */
static const double duration_bounds[] = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                         0.25,  0.5,    1,     2.5,  5,     10};
#define DURATION_BUCKETS (sizeof(duration_bounds) / sizeof(duration_bounds[0]))

enum rollback_reason {
    REASON_MANUAL,
    REASON_START_DEADLINE,
    REASON_UNHEALTHY,
    REASON_TIMEOUT,
    REASON_SUPERSEDED,
    REASON_OTHER,
    REASON_COUNT,
};

static const char *const reason_labels[REASON_COUNT] = {
    [REASON_MANUAL] = "manual",         [REASON_START_DEADLINE] = "start_deadline",
    [REASON_UNHEALTHY] = "unhealthy",   [REASON_TIMEOUT] = "timeout",
    [REASON_SUPERSEDED] = "superseded", [REASON_OTHER] = "other",
};

struct version_entry {
    char *name; /* the label: version_name, else the id */
    char *role;
    int traffic_percent;
    int replicas_desired;
    int replicas_ready;
};

struct service_entry {
    char *name;
    bool has_phase;
    enum service_phase phase;
    size_t version_count;
    struct version_entry versions[2]; /* sorted by name, then role */
    unsigned long long started, completed, rolled_back[REASON_COUNT];
};

struct metrics {
    /* the registry below, shared by the agent's loop (recording) and the
     * HTTP thread (rendering) */
    pthread_mutex_t lock;
    struct event_base *base;
    struct evhttp *http;
    struct event *stop_event; /* stop[0] readable: the thread leaves its loop */
    int stop[2];
    pthread_t thread;
    bool running;
    int port;
    size_t last_length; /* of the last render */
    bool ready;
    char *build_version;
    unsigned long long duration_buckets[DURATION_BUCKETS + 1]; /* per bucket; last: +Inf */
    unsigned long long duration_count;
    double duration_sum;
    bool fetch_seen; /* a fetch succeeded or failed: the source series exist */
    bool fetch_succeeded;
    double fetch_time;
    unsigned long long fetch_failures;
    struct service_entry **services; /* sorted by name */
    size_t service_count;
};

/* ---- recording ---- */

/* Runs call with the registry locked (the HTTP thread renders it); nothing
 * when m is NULL. */
#define WITH_LOCK(m, call)                                                                         \
    do {                                                                                           \
        if (m) {                                                                                   \
            pthread_mutex_lock(&(m)->lock);                                                        \
            call;                                                                                  \
            pthread_mutex_unlock(&(m)->lock);                                                      \
        }                                                                                          \
    } while (0)

/* Keeps *slot equal to text, allocating only when it changes. */
static int keep_text(char **slot, const char *text)
{
    if (*slot && !strcmp(*slot, text))
        return 0;
    char *copy = strdup(text);
    if (!copy)
        return -ENOMEM;
    free(*slot);
    *slot = copy;
    return 0;
}

/* Index of service in the sorted list, or where it would go (*found false). */
static size_t service_index(const struct metrics *m, const char *name, bool *found)
{
    size_t low = 0, high = m->service_count;
    while (low < high) {
        size_t mid = low + (high - low) / 2;
        int c = strcmp(m->services[mid]->name, name);
        if (c == 0) {
            *found = true;
            return mid;
        }
        if (c < 0)
            low = mid + 1;
        else
            high = mid;
    }
    *found = false;
    return low;
}

static struct service_entry *service_get(struct metrics *m, const char *name)
{
    bool found;
    size_t at = service_index(m, name, &found);
    if (found)
        return m->services[at];
    struct service_entry *s = calloc(1, sizeof(*s));
    struct service_entry **grown =
        s ? realloc(m->services, (m->service_count + 1) * sizeof(*grown)) : NULL;
    if (!grown || !(s->name = strdup(name))) {
        free(s);
        if (grown)
            m->services = grown;
        return NULL;
    }
    m->services = grown;
    memmove(&m->services[at + 1], &m->services[at], (m->service_count - at) * sizeof(*m->services));
    m->services[at] = s;
    m->service_count++;
    return s;
}

static void service_entry_free(struct service_entry *s)
{
    for (size_t i = 0; i < 2; i++) {
        free(s->versions[i].name);
        free(s->versions[i].role);
    }
    free(s->name);
    free(s);
}

static void set_build_version_locked(struct metrics *m, const char *version)
{
    if (version)
        keep_text(&m->build_version, version);
}

void metrics_set_build_version(struct metrics *m, const char *version)
{
    WITH_LOCK(m, set_build_version_locked(m, version));
}

static void set_ready_locked(struct metrics *m, bool ready)
{
    m->ready = ready;
}

void metrics_set_ready(struct metrics *m, bool ready)
{
    WITH_LOCK(m, set_ready_locked(m, ready));
}

static void reconcile_observed_locked(struct metrics *m, double seconds)
{
    if (isnan(seconds))
        return;
    if (seconds < 0)
        seconds = 0; /* a clock step; the pass still happened */
    size_t i = 0;
    while (i < DURATION_BUCKETS && seconds > duration_bounds[i])
        i++;
    m->duration_buckets[i]++;
    m->duration_count++;
    m->duration_sum += seconds;
}

void metrics_reconcile_observed(struct metrics *m, double seconds)
{
    WITH_LOCK(m, reconcile_observed_locked(m, seconds));
}

/* What the rollout engine (rollout.c) says when it begins a rollback. */
static enum rollback_reason reason_of(const char *text)
{
    if (!text)
        return REASON_OTHER;
    for (int i = 0; i < REASON_COUNT; i++)
        if (!strcmp(text, reason_labels[i]))
            return (enum rollback_reason)i;
    if (strstr(text, "manual rollback"))
        return REASON_MANUAL;
    if (strstr(text, "start deadline") || strstr(text, "did not become ready"))
        return REASON_START_DEADLINE;
    if (strstr(text, "unhealthy") || strstr(text, "crash loop"))
        return REASON_UNHEALTHY;
    if (strstr(text, "timed out"))
        return REASON_TIMEOUT;
    if (strstr(text, "went back to the primary version") || strstr(text, "newer version replaces"))
        return REASON_SUPERSEDED;
    return REASON_OTHER;
}

const char *metrics_rollback_reason(const char *text)
{
    return reason_labels[reason_of(text)];
}

static void rollout_event_locked(struct metrics *m, const char *service, const char *event,
                           const char *reason)
{
    if (!service || !event)
        return;
    bool started = !strcmp(event, "started"), completed = !strcmp(event, "completed");
    bool rolled_back = !strcmp(event, "rolled_back");
    if (!started && !completed && !rolled_back)
        return;
    struct service_entry *s = service_get(m, service);
    if (!s)
        return;
    if (started)
        s->started++;
    else if (completed)
        s->completed++;
    else
        s->rolled_back[reason_of(reason)]++;
}

void metrics_rollout_event(struct metrics *m, const char *service, const char *event,
                           const char *reason)
{
    WITH_LOCK(m, rollout_event_locked(m, service, event, reason));
}

static const char *label_of(const struct metrics_version *v)
{
    return v->version_name && v->version_name[0] ? v->version_name : v->version_id;
}

static void service_set_locked(struct metrics *m, const struct metrics_service *given)
{
    if (!given || !given->name)
        return;
    struct service_entry *s = service_get(m, given->name);
    if (!s)
        return;
    s->has_phase = true;
    s->phase = given->phase < PHASE_COUNT ? given->phase : PHASE_RUNNING;
    /* the versions sorted by label, then role, before they are stored, so
     * that each slot keeps its strings from one pass to the next */
    const struct metrics_version *sorted[2];
    size_t count = 0;
    for (size_t i = 0; i < given->version_count && i < 2; i++)
        if (label_of(&given->versions[i]) && given->versions[i].role)
            sorted[count++] = &given->versions[i];
    if (count == 2) {
        int c = strcmp(label_of(sorted[0]), label_of(sorted[1]));
        if (c > 0 || (c == 0 && strcmp(sorted[0]->role, sorted[1]->role) > 0)) {
            const struct metrics_version *swap = sorted[0];
            sorted[0] = sorted[1];
            sorted[1] = swap;
        }
    }
    size_t n = 0;
    for (size_t i = 0; i < count; i++) {
        struct version_entry *e = &s->versions[n];
        if (keep_text(&e->name, label_of(sorted[i])) < 0 ||
            keep_text(&e->role, sorted[i]->role) < 0)
            continue;
        e->traffic_percent = sorted[i]->traffic_percent;
        e->replicas_desired = sorted[i]->replicas_desired;
        e->replicas_ready = sorted[i]->replicas_ready;
        n++;
    }
    s->version_count = n;
}

void metrics_service_set(struct metrics *m, const struct metrics_service *given)
{
    WITH_LOCK(m, service_set_locked(m, given));
}

static void service_remove_locked(struct metrics *m, const char *service)
{
    if (!service)
        return;
    bool found;
    size_t at = service_index(m, service, &found);
    if (!found)
        return;
    service_entry_free(m->services[at]);
    memmove(&m->services[at], &m->services[at + 1],
            (m->service_count - at - 1) * sizeof(*m->services));
    m->service_count--;
}

void metrics_service_remove(struct metrics *m, const char *service)
{
    WITH_LOCK(m, service_remove_locked(m, service));
}

static void fetch_succeeded_locked(struct metrics *m, double unix_time)
{
    m->fetch_seen = m->fetch_succeeded = true;
    m->fetch_time = unix_time;
}

void metrics_fetch_succeeded(struct metrics *m, double unix_time)
{
    WITH_LOCK(m, fetch_succeeded_locked(m, unix_time));
}

static void fetch_failed_locked(struct metrics *m)
{
    m->fetch_seen = true;
    m->fetch_failures++;
}

void metrics_fetch_failed(struct metrics *m)
{
    WITH_LOCK(m, fetch_failed_locked(m));
}

/* ---- the exposition format ---- */

/* Shortest text that reads back as the same double; +Inf, -Inf, NaN. */
static void format_number(char *text, size_t size, double v)
{
    if (isnan(v))
        snprintf(text, size, "NaN");
    else if (isinf(v))
        snprintf(text, size, "%s", v > 0 ? "+Inf" : "-Inf");
    else
        for (int digits = 15; digits <= 17; digits++) {
            snprintf(text, size, "%.*g", digits, v);
            if (strtod(text, NULL) == v)
                break;
        }
}

static void put_number(struct text *f, double v)
{
    char text[40];
    format_number(text, sizeof(text), v);
    text_puts(f, text);
}

/* Length of the valid UTF-8 sequence at s, 0 when it is not one. */
static size_t utf8_length(const unsigned char *s)
{
    size_t n;
    uint32_t c;
    if (s[0] < 0x80)
        return 1;
    if ((s[0] & 0xe0) == 0xc0)
        n = 2, c = s[0] & 0x1f;
    else if ((s[0] & 0xf0) == 0xe0)
        n = 3, c = s[0] & 0x0f;
    else if ((s[0] & 0xf8) == 0xf0)
        n = 4, c = s[0] & 0x07;
    else
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        c = (c << 6) | (s[i] & 0x3f);
    }
    static const uint32_t least[] = {0, 0, 0x80, 0x800, 0x10000};
    if (c < least[n] || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
        return 0;
    return n;
}

/* A label value: backslash, double quote and newline escaped; a byte that
 * is not UTF-8 (Prometheus refuses the whole scrape for one) becomes U+FFFD. */
static void put_label_value(struct text *f, const char *value)
{
    const unsigned char *s = (const unsigned char *)value;
    /* the plain ASCII run at the start (all of most values) in one piece */
    size_t plain = 0;
    while (s[plain] && s[plain] < 0x80 && s[plain] != '\\' && s[plain] != '"' && s[plain] != '\n')
        plain++;
    text_append(f, value, plain);
    s += plain;
    while (*s) {
        if (*s == '\\' || *s == '"') {
            text_putc(f, '\\');
            text_putc(f, (char)*s++);
        } else if (*s == '\n') {
            text_puts(f, "\\n");
            s++;
        } else {
            size_t n = utf8_length(s);
            if (n == 0) {
                text_puts(f, "\xef\xbf\xbd");
                s++;
            } else {
                text_append(f, (const char *)s, n);
                s += n;
            }
        }
    }
}

/* name{k="v",...} for label pairs given as (key, value) strings, ended by
 * LABELS_END (a typed null pointer, as execl's list is) */
#define LABELS_END ((const char *)NULL)
static void put_series(struct text *f, const char *name, ...)
{
    va_list args;
    va_start(args, name);
    text_puts(f, name);
    const char *key = va_arg(args, const char *);
    for (const char *separator = "{"; key; separator = ",") {
        text_puts(f, separator);
        text_puts(f, key);
        text_puts(f, "=\"");
        put_label_value(f, va_arg(args, const char *));
        text_putc(f, '"');
        key = va_arg(args, const char *);
        if (!key)
            text_putc(f, '}');
    }
    va_end(args);
    text_putc(f, ' ');
}

static void put_family(struct text *f, const char *name, const char *type, const char *help)
{
    text_puts(f, "# HELP ");
    text_puts(f, name);
    text_putc(f, ' ');
    text_puts(f, help);
    text_puts(f, "\n# TYPE ");
    text_puts(f, name);
    text_putc(f, ' ');
    text_puts(f, type);
    text_putc(f, '\n');
}

static void render_rollouts(struct text *f, const struct metrics *m)
{
    put_family(f, "rolld_rollouts_started_total", "counter",
               "Canary rollouts started, by service.");
    for (size_t i = 0; i < m->service_count; i++) {
        put_series(f, "rolld_rollouts_started_total", "service", m->services[i]->name, LABELS_END);
        text_ull(f, m->services[i]->started);
        text_putc(f, '\n');
    }
    put_family(f, "rolld_rollouts_completed_total", "counter",
               "Canary rollouts completed (the canary promoted to primary), by service.");
    for (size_t i = 0; i < m->service_count; i++) {
        put_series(f, "rolld_rollouts_completed_total", "service", m->services[i]->name,
                   LABELS_END);
        text_ull(f, m->services[i]->completed);
        text_putc(f, '\n');
    }
    put_family(f, "rolld_rollouts_rolled_back_total", "counter",
               "Rollbacks of canary rollouts begun, by service and reason.");
    for (size_t i = 0; i < m->service_count; i++)
        for (int r = 0; r < REASON_COUNT; r++) {
            put_series(f, "rolld_rollouts_rolled_back_total", "service", m->services[i]->name,
                       "reason", reason_labels[r], LABELS_END);
            text_ull(f, m->services[i]->rolled_back[r]);
        text_putc(f, '\n');
        }
}

enum version_field { FIELD_TRAFFIC, FIELD_DESIRED, FIELD_READY };

static void render_versions(struct text *f, const struct metrics *m, const char *name,
                            const char *help, enum version_field field)
{
    put_family(f, name, "gauge", help);
    for (size_t i = 0; i < m->service_count; i++) {
        const struct service_entry *s = m->services[i];
        for (size_t k = 0; k < s->version_count; k++) {
            const struct version_entry *v = &s->versions[k];
            put_series(f, name, "service", s->name, "version", v->name, "role", v->role,
                       LABELS_END);
            int value = field == FIELD_TRAFFIC   ? v->traffic_percent
                        : field == FIELD_DESIRED ? v->replicas_desired
                                                 : v->replicas_ready;
            if (value < 0) {
                text_putc(f, '-');
                value = -value;
            }
            text_ull(f, (unsigned long long)value);
            text_putc(f, '\n');
        }
    }
}

static char *render_locked(const struct metrics *m, size_t *length)
{
    struct text out = {0}, *f = &out;
    /* one allocation of the last scrape's size (and a little more): at
     * 1,000 services a mebibyte or two, mmapped, made present at once and
     * given back after the answer */
    if (m->last_length && !text_reserve(f, m->last_length + m->last_length / 8 + 4096))
        return NULL;
    put_family(f, "rolld_build_info", "gauge", "The running rolld's version; always 1.");
    put_series(f, "rolld_build_info", "version", m->build_version ? m->build_version : "",
               LABELS_END);
    text_puts(f, "1\n");

    put_family(f, "rolld_reconcile_duration_seconds", "histogram",
               "Time one reconcile pass over every service took.");
    unsigned long long cumulative = 0;
    for (size_t i = 0; i <= DURATION_BUCKETS; i++) {
        char bound[40];
        format_number(bound, sizeof(bound), i < DURATION_BUCKETS ? duration_bounds[i] : INFINITY);
        cumulative += m->duration_buckets[i];
        put_series(f, "rolld_reconcile_duration_seconds_bucket", "le", bound, LABELS_END);
        text_ull(f, cumulative);
        text_putc(f, '\n');
    }
    text_puts(f, "rolld_reconcile_duration_seconds_sum ");
    put_number(f, m->duration_sum);
    text_printf(f, "\nrolld_reconcile_duration_seconds_count %llu\n", m->duration_count);

    render_rollouts(f, m);

    put_family(f, "rolld_service_phase", "gauge",
               "1 for the phase the service is in, 0 for the others.");
    for (size_t i = 0; i < m->service_count; i++) {
        const struct service_entry *s = m->services[i];
        for (int p = 0; s->has_phase && p < PHASE_COUNT; p++) {
            put_series(f, "rolld_service_phase", "service", s->name, "phase",
                       service_phase_name((enum service_phase)p), LABELS_END);
            text_puts(f, s->phase == (enum service_phase)p ? "1\n" : "0\n");
        }
    }
    render_versions(f, m, "rolld_traffic_percent",
                    "Percent of the service's requests the router sends to the version.",
                    FIELD_TRAFFIC);
    render_versions(f, m, "rolld_replicas_desired",
                    "Replicas the version should run now, over all its deployments.",
                    FIELD_DESIRED);
    render_versions(f, m, "rolld_replicas_ready",
                    "Replicas of the version that are ready, over all its deployments.",
                    FIELD_READY);

    if (m->fetch_seen) {
        if (m->fetch_succeeded) {
            put_family(f, "rolld_source_last_fetch_success_timestamp_seconds", "gauge",
                       "When the last fetch of the Git source worked, in seconds since the "
                       "epoch.");
            text_puts(f, "rolld_source_last_fetch_success_timestamp_seconds ");
            put_number(f, m->fetch_time);
            text_putc(f, '\n');
        }
        put_family(f, "rolld_source_fetch_failures_total", "counter",
                   "Fetches of the Git source that failed.");
        text_printf(f, "rolld_source_fetch_failures_total %llu\n", m->fetch_failures);
    }
    size_t rendered = out.length;
    char *text = text_finish(&out);
    if (!text)
        return NULL;
    ((struct metrics *)m)->last_length = rendered; /* a memo, under the lock */
    if (length)
        *length = rendered;
    return text;
}

char *metrics_render(const struct metrics *m, size_t *length)
{
    struct metrics *registry = (struct metrics *)m; /* the lock is not the registry's value */
    pthread_mutex_lock(&registry->lock);
    char *text = render_locked(m, length);
    pthread_mutex_unlock(&registry->lock);
    return text;
}

/* ---- HTTP: libevent's evhttp on a thread of its own ---- */

struct http_answer {
    int status;
    const char *reason;
    const char *content_type;
    char *body; /* owned when free_body */
    size_t length;
    bool free_body;
};

static void free_body(const void *data, size_t length, void *extra)
{
    free((void *)data);
}

static void answer_text(struct http_answer *a, int status, const char *reason, const char *text)
{
    *a = (struct http_answer){status, reason, "text/plain; charset=utf-8", (char *)text,
                              strlen(text), false};
}

/* What to answer to method and path (the request target less its query). */
static void route(struct metrics *m, enum evhttp_cmd_type method, const char *target,
                  struct http_answer *a)
{
    size_t path_length = strcspn(target, "?#");
    if (method != EVHTTP_REQ_GET && method != EVHTTP_REQ_HEAD) {
        answer_text(a, 405, "Method Not Allowed", "only GET and HEAD\n");
    } else if (path_length == strlen("/metrics") && !strncmp(target, "/metrics", path_length)) {
        size_t length = 0;
        char *body = metrics_render(m, &length);
        if (!body) {
            answer_text(a, 500, "Internal Server Error", "out of memory\n");
            return;
        }
        *a = (struct http_answer){200, "OK", "text/plain; version=0.0.4; charset=utf-8", body,
                                  length, true};
    } else if (path_length == strlen("/healthz") && !strncmp(target, "/healthz", path_length)) {
        pthread_mutex_lock(&m->lock);
        bool ready = m->ready;
        pthread_mutex_unlock(&m->lock);
        if (ready)
            answer_text(a, 200, "OK", "ok\n");
        else
            answer_text(a, 503, "Service Unavailable", "starting\n");
    } else {
        answer_text(a, 404, "Not Found", "not found; try /metrics or /healthz\n");
    }
}

static void on_request(struct evhttp_request *request, void *userdata)
{
    struct metrics *m = userdata;
    const char *target = ev.evhttp_request_get_uri(request);
    struct http_answer a;
    route(m, ev.evhttp_request_get_command(request), target ? target : "", &a);
    struct evkeyvalq *headers = ev.evhttp_request_get_output_headers(request);
    ev.evhttp_add_header(headers, "Content-Type", a.content_type);
    if (a.status == 405)
        ev.evhttp_add_header(headers, "Allow", "GET, HEAD");
    if (ev.evhttp_request_get_command(request) == EVHTTP_REQ_HEAD) {
        /* the length GET would have, and no body (evhttp 2.1 would send it) */
        char length[32];
        snprintf(length, sizeof(length), "%zu", a.length);
        ev.evhttp_add_header(headers, "Content-Length", length);
        if (a.free_body)
            free(a.body);
        ev.evhttp_send_reply(request, a.status, a.reason, NULL);
        return;
    }
    struct evbuffer *body = ev.evhttp_request_get_output_buffer(request);
    /* the rendered text is handed over, not copied */
    if (a.free_body ? ev.evbuffer_add_reference(body, a.body, a.length, free_body, NULL) < 0
                    : ev.evbuffer_add_reference(body, a.body, a.length, NULL, NULL) < 0) {
        if (a.free_body)
            free(a.body);
        ev.evhttp_send_reply(request, 500, "Internal Server Error", NULL);
        return;
    }
    ev.evhttp_send_reply(request, a.status, a.reason, NULL);
}

/* accept() failed (out of descriptors, most likely): libevent 2.1 would
 * retry at once, in a loop, so the listener pauses for a second. evhttp 2.1
 * has no connection limit (2.2 has); idle connections close after 10 s. */
static void on_resume(evutil_socket_t fd, short what, void *listener)
{
    ev.evconnlistener_enable(listener);
}

static void on_accept_error(struct evconnlistener *listener, void *userdata)
{
    int error = errno;
    ev.evconnlistener_disable(listener);
    struct timeval pause = {1, 0};
    ev.event_base_once(ev.evconnlistener_get_base(listener), -1, EV_TIMEOUT, on_resume, listener,
                       &pause);
    log_msg(LOG_WARNING, "metrics: cannot accept a connection: %s; trying again in 1 s",
            strerror(error));
}

/* libevent's own messages, into the agent's log */
static void on_event_log(int severity, const char *message)
{
    log_msg(severity >= EVENT_LOG_ERR    ? LOG_ERR
            : severity >= EVENT_LOG_WARN ? LOG_WARNING
            : severity >= EVENT_LOG_MSG  ? LOG_INFO
                                         : LOG_DEBUG,
            "metrics: %s", message);
}

static void on_stop(evutil_socket_t fd, short what, void *userdata)
{
    ev.event_base_loopbreak(userdata);
}

static void *serve(void *userdata)
{
    struct metrics *m = userdata;
    ev.event_base_dispatch(m->base);
    return NULL;
}

/* The listening socket, close-on-exec (replicas are started by fork and exec). */
static int listen_on(const struct sockaddr_storage *addr, const char *listen_text, char *err,
                     size_t err_size)
{
    int fd = socket(addr->ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int on = 1;
    socklen_t length = addr->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6)
                                                   : sizeof(struct sockaddr_in);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof(on)) < 0 ||
        (addr->ss_family == AF_INET6 &&
         setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &on, sizeof(on)) < 0) ||
        bind(fd, (const struct sockaddr *)addr, length) < 0 || listen(fd, 64) < 0) {
        int saved = errno;
        if (fd >= 0)
            close(fd);
        snprintf(err, err_size,
                 "metrics: cannot listen on %s: %s; choose another listen.metrics "
                 "(--metrics-listen)",
                 listen_text, strerror(saved));
        return -saved;
    }
    return fd;
}

/* HOST:PORT, [IPv6]:PORT */
static int parse_listen(const char *listen, struct sockaddr_storage *addr, char *err,
                        size_t err_size)
{
    char host[256];
    const char *port_text;
    if (listen[0] == '[') {
        const char *close = strchr(listen, ']');
        if (!close || close[1] != ':' || (size_t)(close - listen - 1) >= sizeof(host))
            goto invalid;
        snprintf(host, sizeof(host), "%.*s", (int)(close - listen - 1), listen + 1);
        port_text = close + 2;
    } else {
        const char *colon = strrchr(listen, ':');
        if (!colon || (size_t)(colon - listen) >= sizeof(host) ||
            memchr(listen, ':', (size_t)(colon - listen)))
            goto invalid;
        snprintf(host, sizeof(host), "%.*s", (int)(colon - listen), listen);
        port_text = colon + 1;
    }
    char *end;
    errno = 0;
    long port = strtol(port_text, &end, 10);
    if (!host[0] || !port_text[0] || *end || errno || port < 0 || port > 65535 ||
        port_text[0] < '0' || port_text[0] > '9')
        goto invalid;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICSERV};
    struct addrinfo *found = NULL;
    int r = getaddrinfo(host, port_text, &hints, &found);
    if (r != 0 || !found || found->ai_addrlen > sizeof(*addr)) {
        snprintf(err, err_size, "metrics: cannot resolve '%s' of listen address '%s': %s", host,
                 listen, r ? gai_strerror(r) : "no address");
        if (found)
            freeaddrinfo(found);
        return -EADDRNOTAVAIL;
    }
    memcpy(addr, found->ai_addr, found->ai_addrlen);
    freeaddrinfo(found);
    return 0;
invalid:
    snprintf(err, err_size,
             "metrics: '%s' is not a listen address; write HOST:PORT (127.0.0.1:9464, "
             "[::1]:9464)",
             listen);
    return -EINVAL;
}

int metrics_open(const char *listen, struct metrics **out, char *err, size_t err_size)
{
    *out = NULL;
    struct sockaddr_storage addr;
    int r = parse_listen(listen ? listen : "", &addr, err, err_size);
    if (r < 0)
        return r;
    if ((r = event_load(err, err_size)) < 0)
        return r;
    struct metrics *m = calloc(1, sizeof(*m));
    if (!m) {
        snprintf(err, err_size, "metrics: out of memory");
        return -ENOMEM;
    }
    pthread_mutex_init(&m->lock, NULL);
    m->stop[0] = m->stop[1] = -1;
    int fd = listen_on(&addr, listen, err, err_size);
    if (fd < 0) {
        metrics_free(m);
        return fd;
    }
    struct sockaddr_storage bound;
    socklen_t bound_length = sizeof(bound);
    if (getsockname(fd, (struct sockaddr *)&bound, &bound_length) == 0)
        m->port = ntohs(bound.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&bound)->sin6_port
                                                    : ((struct sockaddr_in *)&bound)->sin_port);
    struct evconnlistener *listener = NULL;
    errno = 0;
    if (pipe2(m->stop, O_CLOEXEC | O_NONBLOCK) < 0 || !(m->base = ev.event_base_new()) ||
        !(m->http = ev.evhttp_new(m->base)) ||
        !(m->stop_event = ev.event_new(m->base, m->stop[0], EV_READ, on_stop, m->base)) ||
        ev.event_add(m->stop_event, NULL) < 0 ||
        !(listener = ev.evconnlistener_new(m->base, NULL, NULL,
                                           LEV_OPT_CLOSE_ON_FREE | LEV_OPT_CLOSE_ON_EXEC |
                                               LEV_OPT_REUSEABLE,
                                           -1, fd)) ||
        !ev.evhttp_bind_listener(m->http, listener)) {
        int saved = errno ? errno : ENOMEM;
        if (listener)
            ev.evconnlistener_free(listener);
        else
            close(fd);
        snprintf(err, err_size, "metrics: cannot set up the HTTP server on %s: %s", listen,
                 strerror(saved));
        metrics_free(m);
        return -saved;
    }
    ev.evconnlistener_set_error_cb(listener, on_accept_error);
    /* a scraper's connection is kept (HTTP/1.1); an idle one closes after 10 s */
    ev.evhttp_set_timeout(m->http, 10);
    ev.evhttp_set_max_headers_size(m->http, 16384);
    ev.evhttp_set_max_body_size(m->http, 65536);
    /* every method reaches on_request, which answers 405 to all but GET and HEAD */
    ev.evhttp_set_allowed_methods(m->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                               EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                               EVHTTP_REQ_OPTIONS | EVHTTP_REQ_TRACE |
                                               EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH);
    ev.evhttp_set_gencb(m->http, on_request, m);
    /* no signal reaches the thread: the agent's loop takes them (signalfd),
     * and a peer gone while an answer is written is EPIPE, not SIGPIPE */
    sigset_t all, saved;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &saved);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    r = -pthread_create(&m->thread, &attr, serve, m);
    pthread_attr_destroy(&attr);
    pthread_sigmask(SIG_SETMASK, &saved, NULL);
    if (r < 0) {
        snprintf(err, err_size, "metrics: cannot start the HTTP server's thread: %s", strerror(-r));
        metrics_free(m);
        return r;
    }
    pthread_setname_np(m->thread, "rolld-metrics");
    m->running = true;
    *out = m;
    return 0;
}

int metrics_port(const struct metrics *m)
{
    return m ? m->port : 0;
}

void metrics_free(struct metrics *m)
{
    if (!m)
        return;
    if (m->running) {
        /* the thread breaks its loop when the pipe is readable */
        while (write(m->stop[1], "x", 1) < 0 && errno == EINTR)
            ;
        pthread_join(m->thread, NULL);
    }
    if (m->http)
        ev.evhttp_free(m->http); /* with its listener and connections */
    if (m->stop_event)
        ev.event_free(m->stop_event);

    if (m->base)
        ev.event_base_free(m->base);
    for (int i = 0; i < 2; i++)
        if (m->stop[i] >= 0)
            close(m->stop[i]);
    for (size_t i = 0; i < m->service_count; i++)
        service_entry_free(m->services[i]);
    free(m->services);
    free(m->build_version);
    pthread_mutex_destroy(&m->lock);
    free(m);
}
