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

#include <microhttpd.h>

#include "lazy_lib.h"

/* libmicrohttpd (and GnuTLS, which it pulls in) is opened by the first
 * metrics_open(), not at start: an agent without a listener never maps it. */
#define MHD_FUNCTIONS(X)                                                                           \
    X(MHD_add_response_header)                                                                     \
    X(MHD_create_response_from_buffer)                                                             \
    X(MHD_create_response_from_buffer_with_free_callback)                                          \
    X(MHD_destroy_response)                                                                        \
    X(MHD_get_daemon_info)                                                                         \
    X(MHD_get_timeout)                                                                             \
    X(MHD_queue_response)                                                                          \
    X(MHD_run)                                                                                     \
    X(MHD_start_daemon)                                                                            \
    X(MHD_stop_daemon)
#define MHD_SLOT(f) __typeof__(f) *f;
static struct {
    MHD_FUNCTIONS(MHD_SLOT)
} mhd;
#undef MHD_SLOT

static int mhd_load(char *err, size_t err_size)
{
    static int loaded = 1; /* 1: not tried yet */
    static char error[256];
    if (loaded > 0) {
#define MHD_SYMBOL(f) {#f, (void **)&mhd.f},
        static const struct lazy_symbol symbols[] = {MHD_FUNCTIONS(MHD_SYMBOL)};
#undef MHD_SYMBOL
        loaded = lazy_lib_open(ROLLD_MICROHTTPD_SONAME, symbols,
                               sizeof(symbols) / sizeof(symbols[0]), error, sizeof(error));
    }
    if (loaded < 0)
        snprintf(err, err_size, "metrics: %s", error);
    return loaded;
}

#define MHD_add_response_header (*mhd.MHD_add_response_header)
#define MHD_create_response_from_buffer (*mhd.MHD_create_response_from_buffer)
#define MHD_create_response_from_buffer_with_free_callback                                         \
    (*mhd.MHD_create_response_from_buffer_with_free_callback)
#define MHD_destroy_response (*mhd.MHD_destroy_response)
#define MHD_get_daemon_info (*mhd.MHD_get_daemon_info)
#define MHD_get_timeout (*mhd.MHD_get_timeout)
#define MHD_queue_response (*mhd.MHD_queue_response)
#define MHD_run (*mhd.MHD_run)
#define MHD_start_daemon (*mhd.MHD_start_daemon)
#define MHD_stop_daemon (*mhd.MHD_stop_daemon)

#include "log.h"

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
    sd_event *event;
    struct MHD_Daemon *daemon;
    sd_event_source *io, *timer;
    int port;
    bool opened; /* MHD's messages go to the log, not to open_error */
    char open_error[256];
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

void metrics_set_build_version(struct metrics *m, const char *version)
{
    if (m && version)
        keep_text(&m->build_version, version);
}

void metrics_set_ready(struct metrics *m, bool ready)
{
    if (m)
        m->ready = ready;
}

void metrics_reconcile_observed(struct metrics *m, double seconds)
{
    if (!m || isnan(seconds))
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

void metrics_rollout_event(struct metrics *m, const char *service, const char *event,
                           const char *reason)
{
    if (!m || !service || !event)
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

static const char *label_of(const struct metrics_version *v)
{
    return v->version_name && v->version_name[0] ? v->version_name : v->version_id;
}

void metrics_service_set(struct metrics *m, const struct metrics_service *given)
{
    if (!m || !given || !given->name)
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

void metrics_service_remove(struct metrics *m, const char *service)
{
    if (!m || !service)
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

void metrics_fetch_succeeded(struct metrics *m, double unix_time)
{
    if (!m)
        return;
    m->fetch_seen = m->fetch_succeeded = true;
    m->fetch_time = unix_time;
}

void metrics_fetch_failed(struct metrics *m)
{
    if (!m)
        return;
    m->fetch_seen = true;
    m->fetch_failures++;
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

static void put_number(FILE *f, double v)
{
    char text[40];
    format_number(text, sizeof(text), v);
    fputs(text, f);
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
static void put_label_value(FILE *f, const char *value)
{
    const unsigned char *s = (const unsigned char *)value;
    while (*s) {
        if (*s == '\\' || *s == '"') {
            fputc('\\', f);
            fputc(*s++, f);
        } else if (*s == '\n') {
            fputs("\\n", f);
            s++;
        } else {
            size_t n = utf8_length(s);
            if (n == 0) {
                fputs("\xef\xbf\xbd", f);
                s++;
            } else {
                fwrite(s, 1, n, f);
                s += n;
            }
        }
    }
}

/* name{k="v",...} for label pairs given as (key, value) strings, ended by
 * LABELS_END (a typed null pointer, as execl's list is) */
#define LABELS_END ((const char *)NULL)
static void put_series(FILE *f, const char *name, ...)
{
    va_list args;
    va_start(args, name);
    fputs(name, f);
    const char *key = va_arg(args, const char *);
    for (const char *separator = "{"; key; separator = ",") {
        fputs(separator, f);
        fputs(key, f);
        fputs("=\"", f);
        put_label_value(f, va_arg(args, const char *));
        fputc('"', f);
        key = va_arg(args, const char *);
        if (!key)
            fputc('}', f);
    }
    va_end(args);
    fputc(' ', f);
}

static void put_family(FILE *f, const char *name, const char *type, const char *help)
{
    fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void render_rollouts(FILE *f, const struct metrics *m)
{
    put_family(f, "rolld_rollouts_started_total", "counter",
               "Canary rollouts started, by service.");
    for (size_t i = 0; i < m->service_count; i++) {
        put_series(f, "rolld_rollouts_started_total", "service", m->services[i]->name, LABELS_END);
        fprintf(f, "%llu\n", m->services[i]->started);
    }
    put_family(f, "rolld_rollouts_completed_total", "counter",
               "Canary rollouts completed (the canary promoted to primary), by service.");
    for (size_t i = 0; i < m->service_count; i++) {
        put_series(f, "rolld_rollouts_completed_total", "service", m->services[i]->name,
                   LABELS_END);
        fprintf(f, "%llu\n", m->services[i]->completed);
    }
    put_family(f, "rolld_rollouts_rolled_back_total", "counter",
               "Rollbacks of canary rollouts begun, by service and reason.");
    for (size_t i = 0; i < m->service_count; i++)
        for (int r = 0; r < REASON_COUNT; r++) {
            put_series(f, "rolld_rollouts_rolled_back_total", "service", m->services[i]->name,
                       "reason", reason_labels[r], LABELS_END);
            fprintf(f, "%llu\n", m->services[i]->rolled_back[r]);
        }
}

enum version_field { FIELD_TRAFFIC, FIELD_DESIRED, FIELD_READY };

static void render_versions(FILE *f, const struct metrics *m, const char *name, const char *help,
                            enum version_field field)
{
    put_family(f, name, "gauge", help);
    for (size_t i = 0; i < m->service_count; i++) {
        const struct service_entry *s = m->services[i];
        for (size_t k = 0; k < s->version_count; k++) {
            const struct version_entry *v = &s->versions[k];
            put_series(f, name, "service", s->name, "version", v->name, "role", v->role,
                       LABELS_END);
            fprintf(f, "%d\n",
                    field == FIELD_TRAFFIC   ? v->traffic_percent
                    : field == FIELD_DESIRED ? v->replicas_desired
                                             : v->replicas_ready);
        }
    }
}

char *metrics_render(const struct metrics *m, size_t *length)
{
    char *text = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&text, &size);
    if (!f)
        return NULL;
    put_family(f, "rolld_build_info", "gauge", "The running rolld's version; always 1.");
    put_series(f, "rolld_build_info", "version", m->build_version ? m->build_version : "",
               LABELS_END);
    fputs("1\n", f);

    put_family(f, "rolld_reconcile_duration_seconds", "histogram",
               "Time one reconcile pass over every service took.");
    unsigned long long cumulative = 0;
    for (size_t i = 0; i <= DURATION_BUCKETS; i++) {
        char bound[40];
        format_number(bound, sizeof(bound), i < DURATION_BUCKETS ? duration_bounds[i] : INFINITY);
        cumulative += m->duration_buckets[i];
        put_series(f, "rolld_reconcile_duration_seconds_bucket", "le", bound, LABELS_END);
        fprintf(f, "%llu\n", cumulative);
    }
    fputs("rolld_reconcile_duration_seconds_sum ", f);
    put_number(f, m->duration_sum);
    fprintf(f, "\nrolld_reconcile_duration_seconds_count %llu\n", m->duration_count);

    render_rollouts(f, m);

    put_family(f, "rolld_service_phase", "gauge",
               "1 for the phase the service is in, 0 for the others.");
    for (size_t i = 0; i < m->service_count; i++) {
        const struct service_entry *s = m->services[i];
        for (int p = 0; s->has_phase && p < PHASE_COUNT; p++) {
            put_series(f, "rolld_service_phase", "service", s->name, "phase",
                       service_phase_name((enum service_phase)p), LABELS_END);
            fputs(s->phase == (enum service_phase)p ? "1\n" : "0\n", f);
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
            fputs("rolld_source_last_fetch_success_timestamp_seconds ", f);
            put_number(f, m->fetch_time);
            fputc('\n', f);
        }
        put_family(f, "rolld_source_fetch_failures_total", "counter",
                   "Fetches of the Git source that failed.");
        fprintf(f, "rolld_source_fetch_failures_total %llu\n", m->fetch_failures);
    }
    if (fclose(f) != 0 || !text) {
        free(text);
        return NULL;
    }
    if (length)
        *length = size;
    return text;
}

/* ---- HTTP ---- */

static enum MHD_Result answer(struct MHD_Connection *connection, unsigned status,
                              const char *content_type, char *body, size_t length, bool owned)
{
    struct MHD_Response *response =
        owned ? MHD_create_response_from_buffer_with_free_callback(length, body, free)
              : MHD_create_response_from_buffer(length, body, MHD_RESPMEM_PERSISTENT);
    if (!response) {
        if (owned)
            free(body);
        return MHD_NO;
    }
    MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header(response, MHD_HTTP_HEADER_ALLOW, "GET, HEAD");
    enum MHD_Result r = MHD_queue_response(connection, status, response);
    MHD_destroy_response(response);
    return r;
}

static enum MHD_Result answer_text(struct MHD_Connection *connection, unsigned status,
                                   const char *text)
{
    return answer(connection, status, "text/plain; charset=utf-8", (char *)text, strlen(text),
                  false);
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *connection, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **request)
{
    struct metrics *m = cls;
    /* answered from the second call: libmicrohttpd closes the connection
     * after an answer queued in the first one (before the request's end is
     * known), and a scraper would reconnect every time */
    static char headers_seen;
    if (*request != &headers_seen) {
        *request = &headers_seen;
        return MHD_YES;
    }
    if (*upload_data_size) {
        *upload_data_size = 0; /* a body nobody asked for: read and dropped */
        return MHD_YES;
    }
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return answer_text(connection, MHD_HTTP_METHOD_NOT_ALLOWED, "only GET and HEAD\n");
    if (!strcmp(url, "/metrics")) {
        size_t length = 0;
        char *body = metrics_render(m, &length);
        if (!body)
            return answer_text(connection, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory\n");
        return answer(connection, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", body,
                      length, true);
    }
    if (!strcmp(url, "/healthz"))
        return m->ready ? answer_text(connection, MHD_HTTP_OK, "ok\n")
                        : answer_text(connection, MHD_HTTP_SERVICE_UNAVAILABLE, "starting\n");
    return answer_text(connection, MHD_HTTP_NOT_FOUND, "not found; try /metrics or /healthz\n");
}

static void on_mhd_message(void *cls, const char *fmt, va_list args)
{
    struct metrics *m = cls;
    char text[sizeof(m->open_error)];
    vsnprintf(text, sizeof(text), fmt, args);
    size_t n = strlen(text);
    while (n > 0 && (text[n - 1] == '\n' || text[n - 1] == '.'))
        text[--n] = 0;
    if (!m->opened)
        memcpy(m->open_error, text, sizeof(text));
    else
        log_msg(LOG_WARNING, "metrics: %s", text);
}

/* MHD runs when its epoll fd is readable, and again when its timeout (a
 * connection's idle limit, or 0: work left over) comes. */
static void rearm(struct metrics *m)
{
    MHD_UNSIGNED_LONG_LONG timeout_ms;
    if (MHD_get_timeout(m->daemon, &timeout_ms) != MHD_YES) {
        sd_event_source_set_enabled(m->timer, SD_EVENT_OFF);
        return;
    }
    uint64_t now;
    sd_event_now(m->event, CLOCK_MONOTONIC, &now);
    sd_event_source_set_time(m->timer, now + (uint64_t)timeout_ms * 1000ULL);
    sd_event_source_set_enabled(m->timer, SD_EVENT_ONESHOT);
}

static int on_ready(sd_event_source *source, int fd, uint32_t revents, void *userdata)
{
    struct metrics *m = userdata;
    MHD_run(m->daemon);
    rearm(m);
    return 0;
}

static int on_timer(sd_event_source *source, uint64_t usec, void *userdata)
{
    struct metrics *m = userdata;
    MHD_run(m->daemon);
    rearm(m);
    return 0;
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

int metrics_open(sd_event *event, const char *listen, struct metrics **out, char *err,
                 size_t err_size)
{
    *out = NULL;
    struct sockaddr_storage addr;
    int r = parse_listen(listen ? listen : "", &addr, err, err_size);
    if (r < 0)
        return r;
    if ((r = mhd_load(err, err_size)) < 0)
        return r;
    struct metrics *m = calloc(1, sizeof(*m));
    if (!m) {
        snprintf(err, err_size, "metrics: out of memory");
        return -ENOMEM;
    }
    m->event = sd_event_ref(event);
    unsigned flags = MHD_USE_EPOLL | MHD_USE_ERROR_LOG;
    if (addr.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    uint16_t port = ntohs(addr.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&addr)->sin6_port
                                                     : ((struct sockaddr_in *)&addr)->sin_port);
    errno = 0;
    m->daemon = MHD_start_daemon(flags, port, NULL, NULL, on_request, m, MHD_OPTION_SOCK_ADDR,
                                 (struct sockaddr *)&addr, MHD_OPTION_EXTERNAL_LOGGER,
                                 on_mhd_message, m, MHD_OPTION_CONNECTION_LIMIT, 32u,
                                 MHD_OPTION_CONNECTION_TIMEOUT, 10u, MHD_OPTION_END);
    if (!m->daemon) {
        /* bind's errno says it best; MHD's own message when there is none */
        int saved = errno;
        r = saved ? -saved : -EIO;
        snprintf(err, err_size,
                 "metrics: cannot listen on %s: %s; choose another listen.metrics "
                 "(--metrics-listen)",
                 listen, saved || !m->open_error[0] ? strerror(-r) : m->open_error);
        metrics_free(m);
        return r;
    }
    m->opened = true;
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(m->daemon, MHD_DAEMON_INFO_EPOLL_FD);
    const union MHD_DaemonInfo *bound = MHD_get_daemon_info(m->daemon, MHD_DAEMON_INFO_BIND_PORT);
    m->port = bound ? bound->port : 0;
    if (!info) {
        r = -ENOTSUP;
    } else if ((r = sd_event_add_io(event, &m->io, info->epoll_fd, EPOLLIN, on_ready, m)) >= 0 &&
               (r = sd_event_add_time(event, &m->timer, CLOCK_MONOTONIC, UINT64_MAX, 1000, on_timer,
                                      m)) >= 0) {
        sd_event_source_set_description(m->io, "metrics");
        sd_event_source_set_enabled(m->timer, SD_EVENT_OFF);
        *out = m;
        return 0;
    }
    snprintf(err, err_size, "metrics: cannot watch the HTTP server's sockets: %s", strerror(-r));
    metrics_free(m);
    return r;
}

int metrics_port(const struct metrics *m)
{
    return m ? m->port : 0;
}

void metrics_free(struct metrics *m)
{
    if (!m)
        return;
    sd_event_source_disable_unref(m->io);
    sd_event_source_disable_unref(m->timer);
    if (m->daemon)
        MHD_stop_daemon(m->daemon);
    sd_event_unref(m->event);
    for (size_t i = 0; i < m->service_count; i++)
        service_entry_free(m->services[i]);
    free(m->services);
    free(m->build_version);
    free(m);
}
