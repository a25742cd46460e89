/* tests for reconciler/metrics.c: the series in the exposition format, and
 * the endpoint (served from its own thread) read by a plain socket client on
 * loopback, registered on an sd-event loop the test drives itself. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <systemd/sd-event.h>
#include <time.h>
#include <unistd.h>

#include "metrics.h"

struct fixture {
    sd_event *event;
    struct metrics *m;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    char err[512] = "";
    if (!f || sd_event_new(&f->event) < 0)
        return -1;
    int r = metrics_open("127.0.0.1:0", &f->m, err, sizeof(err));
    if (r < 0) {
        fprintf(stderr, "metrics_open: %s\n", err);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    metrics_free(f->m);
    sd_event_unref(f->event);
    free(f);
    return 0;
}

static char *render(struct metrics *m)
{
    size_t length = 0;
    char *text = metrics_render(m, &length);
    assert_non_null(text);
    assert_int_equal(strlen(text), length);
    return text;
}

/* Asserts that line is a whole line of text. */
static void assert_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; (p = strstr(p, line)); p++)
        if ((p == text || p[-1] == '\n') && p[n] == '\n')
            return;
    fail_msg("no line '%s' in:\n%s", line, text);
}

static void assert_no_substring(const char *text, const char *part)
{
    if (strstr(text, part))
        fail_msg("'%s' should not be in:\n%s", part, text);
}

/* The lines of text that start with prefix, joined by newlines. */
static char *lines_with(const char *text, const char *prefix)
{
    char *out = NULL;
    size_t size = 0;
    FILE *f = open_memstream(&out, &size);
    for (const char *p = text; *p;) {
        const char *end = strchr(p, '\n');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (!strncmp(p, prefix, strlen(prefix)))
            fprintf(f, "%.*s\n", (int)n, p);
        p += n + (end ? 1 : 0);
    }
    fclose(f);
    return out;
}

static void test_fresh_registry_renders_exactly(void **state)
{
    struct fixture *f = *state;
    metrics_set_build_version(f->m, "0.1.0");
    char *text = render(f->m);
    assert_string_equal(
        text,
        "# HELP rolld_build_info The running rolld's version; always 1.\n"
        "# TYPE rolld_build_info gauge\n"
        "rolld_build_info{version=\"0.1.0\"} 1\n"
        "# HELP rolld_reconcile_duration_seconds Time one reconcile pass over every service "
        "took.\n"
        "# TYPE rolld_reconcile_duration_seconds histogram\n"
        "rolld_reconcile_duration_seconds_bucket{le=\"0.001\"} 0\n"
        "rolld_reconcile_duration_seconds_bucket{le=\"0.0025\"} 0\n"
        "rolld_reconcile_duration_seconds_bucket{le=\"0.005\"} 0\n"
        "rolld_reconcile_duration_seconds_bucket{le=\"0.01\"} 0\n"
        "rolld_reconcile_duration_seconds_bucket{le=\"0.025\"} 0\n"
        "rolld_reconcile_duration_seconds_bucket{le=\"0.05\"} 0\n"
        "rolld_reconcile_duration_seconds_bucket{le=\"0.1\"} 0\n"
        "rolld_reconcile_duration_seconds_bucket{le=\"0.25\"} 0\n"
        "rolld_reconcile_duration_seconds_bucket{le=\"0.5\"} 0\n"
        "rolld_reconcile_duration_seconds_bucket{le=\"1\"} 0\n"
        "rolld_reconcile_duration_seconds_bucket{le=\"2.5\"} 0\n"
        "rolld_reconcile_duration_seconds_bucket{le=\"5\"} 0\n"
        "rolld_reconcile_duration_seconds_bucket{le=\"10\"} 0\n"
        "rolld_reconcile_duration_seconds_bucket{le=\"+Inf\"} 0\n"
        "rolld_reconcile_duration_seconds_sum 0\n"
        "rolld_reconcile_duration_seconds_count 0\n"
        "# HELP rolld_rollouts_started_total Canary rollouts started, by service.\n"
        "# TYPE rolld_rollouts_started_total counter\n"
        "# HELP rolld_rollouts_completed_total Canary rollouts completed (the canary promoted "
        "to primary), by service.\n"
        "# TYPE rolld_rollouts_completed_total counter\n"
        "# HELP rolld_rollouts_rolled_back_total Rollbacks of canary rollouts begun, by service "
        "and reason.\n"
        "# TYPE rolld_rollouts_rolled_back_total counter\n"
        "# HELP rolld_service_phase 1 for the phase the service is in, 0 for the others.\n"
        "# TYPE rolld_service_phase gauge\n"
        "# HELP rolld_traffic_percent Percent of the service's requests the router sends to "
        "the version.\n"
        "# TYPE rolld_traffic_percent gauge\n"
        "# HELP rolld_replicas_desired Replicas the version should run now, over all its "
        "deployments.\n"
        "# TYPE rolld_replicas_desired gauge\n"
        "# HELP rolld_replicas_ready Replicas of the version that are ready, over all its "
        "deployments.\n"
        "# TYPE rolld_replicas_ready gauge\n");
    free(text);
}

static void test_histogram_buckets_sum_and_count(void **state)
{
    struct fixture *f = *state;
    /* binary fractions, so that the sum is exact */
    metrics_reconcile_observed(f->m, 0.0009765625); /* 2^-10: le 0.001 */
    metrics_reconcile_observed(f->m, 0.00390625);   /* 2^-8: le 0.005 */
    metrics_reconcile_observed(f->m, 0.5);          /* on a bound: le 0.5 */
    metrics_reconcile_observed(f->m, 16);           /* above every bound: +Inf only */
    metrics_reconcile_observed(f->m, -1);           /* a clock step: counted as 0 */
    char *text = render(f->m);
    char *buckets = lines_with(text, "rolld_reconcile_duration_seconds_");
    assert_string_equal(buckets, "rolld_reconcile_duration_seconds_bucket{le=\"0.001\"} 2\n"
                                 "rolld_reconcile_duration_seconds_bucket{le=\"0.0025\"} 2\n"
                                 "rolld_reconcile_duration_seconds_bucket{le=\"0.005\"} 3\n"
                                 "rolld_reconcile_duration_seconds_bucket{le=\"0.01\"} 3\n"
                                 "rolld_reconcile_duration_seconds_bucket{le=\"0.025\"} 3\n"
                                 "rolld_reconcile_duration_seconds_bucket{le=\"0.05\"} 3\n"
                                 "rolld_reconcile_duration_seconds_bucket{le=\"0.1\"} 3\n"
                                 "rolld_reconcile_duration_seconds_bucket{le=\"0.25\"} 3\n"
                                 "rolld_reconcile_duration_seconds_bucket{le=\"0.5\"} 4\n"
                                 "rolld_reconcile_duration_seconds_bucket{le=\"1\"} 4\n"
                                 "rolld_reconcile_duration_seconds_bucket{le=\"2.5\"} 4\n"
                                 "rolld_reconcile_duration_seconds_bucket{le=\"5\"} 4\n"
                                 "rolld_reconcile_duration_seconds_bucket{le=\"10\"} 4\n"
                                 "rolld_reconcile_duration_seconds_bucket{le=\"+Inf\"} 5\n"
                                 "rolld_reconcile_duration_seconds_sum 16.5048828125\n"
                                 "rolld_reconcile_duration_seconds_count 5\n");
    free(buckets);
    free(text);
    /* a sum that is no short decimal reads back as the same double */
    metrics_reconcile_observed(f->m, 0.1);
    metrics_reconcile_observed(f->m, 0.2);
    double sum = 0.0009765625 + 0.00390625 + 0.5 + 16 + 0.0;
    sum += 0.1;
    sum += 0.2;
    text = render(f->m);
    char *line = strstr(text, "\nrolld_reconcile_duration_seconds_sum ");
    assert_non_null(line);
    char *end = NULL;
    double read_back = strtod(line + strlen("\nrolld_reconcile_duration_seconds_sum "), &end);
    assert_true(read_back == sum);
    assert_int_equal(*end, '\n');
    free(text);
}

/* Every reason rollout.c gives begin_rollback, and the labels themselves. */
static void test_rollback_reasons_map_to_labels(void **state)
{
    (void)state;
    static const struct {
        const char *text, *label;
    } cases[] = {
        {"manual rollback", "manual"},
        {"canary not ready before the start deadline", "start_deadline"},
        {"v2 did not become ready: start deadline passed", "start_deadline"},
        {"canary unhealthy: replicas keep dying (crash loop)", "unhealthy"},
        {"canary unhealthy: a replica failed its health checks (policy failure_threshold)",
         "unhealthy"},
        {"canary unhealthy: failing", "unhealthy"},
        {"rollout timed out", "timeout"},
        {"the spec went back to the primary version", "superseded"},
        {"a newer version replaces this canary", "superseded"},
        {"the spec came back while the service was being deleted", "other"},
        {"something new", "other"},
        {"", "other"},
        {NULL, "other"},
        {"manual", "manual"},
        {"start_deadline", "start_deadline"},
        {"unhealthy", "unhealthy"},
        {"timeout", "timeout"},
        {"superseded", "superseded"},
        {"other", "other"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_string_equal(metrics_rollback_reason(cases[i].text), cases[i].label);
}

static void test_rollout_counters_by_service_and_reason(void **state)
{
    struct fixture *f = *state;
    metrics_rollout_event(f->m, "web", "started", NULL);
    metrics_rollout_event(f->m, "web", "completed", NULL);
    metrics_rollout_event(f->m, "web", "started", NULL);
    metrics_rollout_event(f->m, "web", "rolled_back", "rollout timed out");
    metrics_rollout_event(f->m, "api", "started", NULL);
    metrics_rollout_event(f->m, "api", "rolled_back", "canary not ready before the start deadline");
    metrics_rollout_event(f->m, "api", "rolled_back", "manual");
    metrics_rollout_event(f->m, "api", "traffic_shifted", NULL); /* not a rollout event */
    metrics_rollout_event(f->m, NULL, "started", NULL);
    char *text = render(f->m);
    char *started = lines_with(text, "rolld_rollouts_started_total{");
    assert_string_equal(started, "rolld_rollouts_started_total{service=\"api\"} 1\n"
                                 "rolld_rollouts_started_total{service=\"web\"} 2\n");
    char *completed = lines_with(text, "rolld_rollouts_completed_total{");
    assert_string_equal(completed, "rolld_rollouts_completed_total{service=\"api\"} 0\n"
                                   "rolld_rollouts_completed_total{service=\"web\"} 1\n");
    char *rolled = lines_with(text, "rolld_rollouts_rolled_back_total{");
    assert_string_equal(
        rolled, "rolld_rollouts_rolled_back_total{service=\"api\",reason=\"manual\"} 1\n"
                "rolld_rollouts_rolled_back_total{service=\"api\",reason=\"start_deadline\"} 1\n"
                "rolld_rollouts_rolled_back_total{service=\"api\",reason=\"unhealthy\"} 0\n"
                "rolld_rollouts_rolled_back_total{service=\"api\",reason=\"timeout\"} 0\n"
                "rolld_rollouts_rolled_back_total{service=\"api\",reason=\"superseded\"} 0\n"
                "rolld_rollouts_rolled_back_total{service=\"api\",reason=\"other\"} 0\n"
                "rolld_rollouts_rolled_back_total{service=\"web\",reason=\"manual\"} 0\n"
                "rolld_rollouts_rolled_back_total{service=\"web\",reason=\"start_deadline\"} 0\n"
                "rolld_rollouts_rolled_back_total{service=\"web\",reason=\"unhealthy\"} 0\n"
                "rolld_rollouts_rolled_back_total{service=\"web\",reason=\"timeout\"} 1\n"
                "rolld_rollouts_rolled_back_total{service=\"web\",reason=\"superseded\"} 0\n"
                "rolld_rollouts_rolled_back_total{service=\"web\",reason=\"other\"} 0\n");
    /* counters alone make no phase series */
    assert_no_substring(text, "rolld_service_phase{");
    free(started);
    free(completed);
    free(rolled);
    free(text);
}

static const struct metrics_service canary_web = {
    .name = "web",
    .phase = PHASE_CANARY_PROGRESSING,
    .version_count = 2,
    .versions = {{"v2", "bbbbbbbbbbbbbbbb", METRICS_ROLE_CANARY, 20, 2, 1},
                 {"v1", "aaaaaaaaaaaaaaaa", METRICS_ROLE_PRIMARY, 80, 4, 4}},
};

static void test_phase_traffic_and_replicas(void **state)
{
    struct fixture *f = *state;
    struct metrics_service api = {.name = "api",
                                  .phase = PHASE_RUNNING,
                                  .version_count = 1,
                                  .versions = {{NULL, "cccccccccccccccc", "primary", 100, 3, 2}}};
    metrics_service_set(f->m, &canary_web);
    metrics_service_set(f->m, &api);
    char *text = render(f->m);
    char *phases = lines_with(text, "rolld_service_phase{");
    assert_string_equal(phases,
                        "rolld_service_phase{service=\"api\",phase=\"creating\"} 0\n"
                        "rolld_service_phase{service=\"api\",phase=\"running\"} 1\n"
                        "rolld_service_phase{service=\"api\",phase=\"updating_in_place\"} 0\n"
                        "rolld_service_phase{service=\"api\",phase=\"canary_starting\"} 0\n"
                        "rolld_service_phase{service=\"api\",phase=\"canary_progressing\"} 0\n"
                        "rolld_service_phase{service=\"api\",phase=\"canary_paused\"} 0\n"
                        "rolld_service_phase{service=\"api\",phase=\"canary_held\"} 0\n"
                        "rolld_service_phase{service=\"api\",phase=\"promoting\"} 0\n"
                        "rolld_service_phase{service=\"api\",phase=\"rolling_back\"} 0\n"
                        "rolld_service_phase{service=\"api\",phase=\"rolled_back\"} 0\n"
                        "rolld_service_phase{service=\"api\",phase=\"failed\"} 0\n"
                        "rolld_service_phase{service=\"api\",phase=\"deleting\"} 0\n"
                        "rolld_service_phase{service=\"api\",phase=\"blocked\"} 0\n"
                        "rolld_service_phase{service=\"web\",phase=\"creating\"} 0\n"
                        "rolld_service_phase{service=\"web\",phase=\"running\"} 0\n"
                        "rolld_service_phase{service=\"web\",phase=\"updating_in_place\"} 0\n"
                        "rolld_service_phase{service=\"web\",phase=\"canary_starting\"} 0\n"
                        "rolld_service_phase{service=\"web\",phase=\"canary_progressing\"} 1\n"
                        "rolld_service_phase{service=\"web\",phase=\"canary_paused\"} 0\n"
                        "rolld_service_phase{service=\"web\",phase=\"canary_held\"} 0\n"
                        "rolld_service_phase{service=\"web\",phase=\"promoting\"} 0\n"
                        "rolld_service_phase{service=\"web\",phase=\"rolling_back\"} 0\n"
                        "rolld_service_phase{service=\"web\",phase=\"rolled_back\"} 0\n"
                        "rolld_service_phase{service=\"web\",phase=\"failed\"} 0\n"
                        "rolld_service_phase{service=\"web\",phase=\"deleting\"} 0\n"
                        "rolld_service_phase{service=\"web\",phase=\"blocked\"} 0\n");
    char *traffic = lines_with(text, "rolld_traffic_percent{");
    /* sorted by service, then version; a version without a name goes by its id */
    assert_string_equal(
        traffic,
        "rolld_traffic_percent{service=\"api\",version=\"cccccccccccccccc\",role=\"primary\"} "
        "100\n"
        "rolld_traffic_percent{service=\"web\",version=\"v1\",role=\"primary\"} 80\n"
        "rolld_traffic_percent{service=\"web\",version=\"v2\",role=\"canary\"} 20\n");
    char *desired = lines_with(text, "rolld_replicas_desired{");
    assert_string_equal(
        desired,
        "rolld_replicas_desired{service=\"api\",version=\"cccccccccccccccc\",role=\"primary\"} "
        "3\n"
        "rolld_replicas_desired{service=\"web\",version=\"v1\",role=\"primary\"} 4\n"
        "rolld_replicas_desired{service=\"web\",version=\"v2\",role=\"canary\"} 2\n");
    char *ready = lines_with(text, "rolld_replicas_ready{");
    assert_string_equal(
        ready,
        "rolld_replicas_ready{service=\"api\",version=\"cccccccccccccccc\",role=\"primary\"} 2\n"
        "rolld_replicas_ready{service=\"web\",version=\"v1\",role=\"primary\"} 4\n"
        "rolld_replicas_ready{service=\"web\",version=\"v2\",role=\"canary\"} 1\n");
    free(phases);
    free(traffic);
    free(desired);
    free(ready);
    free(text);
}

static void test_gone_versions_and_services_leave_no_series(void **state)
{
    struct fixture *f = *state;
    metrics_service_set(f->m, &canary_web);
    metrics_rollout_event(f->m, "web", "started", NULL);
    metrics_service_set(
        f->m, &(struct metrics_service){
                  "db", PHASE_RUNNING, 1, {{"d1", "dddddddddddddddd", "primary", 100, 1, 1}}});
    /* promoted: v2 is the primary, v1 is gone */
    metrics_service_set(
        f->m, &(struct metrics_service){
                  "web", PHASE_RUNNING, 1, {{"v2", "bbbbbbbbbbbbbbbb", "primary", 100, 4, 4}}});
    char *text = render(f->m);
    char *traffic = lines_with(text, "rolld_traffic_percent{");
    assert_string_equal(traffic,
                        "rolld_traffic_percent{service=\"db\",version=\"d1\",role=\"primary\"} "
                        "100\n"
                        "rolld_traffic_percent{service=\"web\",version=\"v2\",role=\"primary\"} "
                        "100\n");
    assert_no_substring(text, "version=\"v1\"");
    assert_no_substring(text, "role=\"canary\"");
    assert_line(text, "rolld_service_phase{service=\"web\",phase=\"running\"} 1");
    assert_line(text, "rolld_service_phase{service=\"web\",phase=\"canary_progressing\"} 0");
    free(traffic);
    free(text);
    /* deleted: every series of web goes, its counters too; db stays */
    metrics_service_remove(f->m, "web");
    metrics_service_remove(f->m, "never-seen");
    text = render(f->m);
    assert_no_substring(text, "service=\"web\"");
    assert_line(text, "rolld_service_phase{service=\"db\",phase=\"running\"} 1");
    assert_line(text, "rolld_replicas_ready{service=\"db\",version=\"d1\",role=\"primary\"} 1");
    free(text);
    /* a service set again after removal starts its counters afresh */
    metrics_rollout_event(f->m, "web", "started", NULL);
    text = render(f->m);
    assert_line(text, "rolld_rollouts_started_total{service=\"web\"} 1");
    free(text);
}

static void test_label_values_are_escaped(void **state)
{
    struct fixture *f = *state;
    struct metrics_service s = {
        .name = "svc",
        .phase = PHASE_RUNNING,
        .version_count = 1,
        .versions = {{"say \"hi\"\nC:\\models\\v2 caf\xc3\xa9 \xff!", "eeeeeeeeeeeeeeee", "primary",
                      100, 1, 1}},
    };
    metrics_service_set(f->m, &s);
    metrics_set_build_version(f->m, "1.0\"\\\n");
    char *text = render(f->m);
    assert_line(text,
                "rolld_traffic_percent{service=\"svc\",version=\"say \\\"hi\\\"\\nC:\\\\models"
                "\\\\v2 caf\xc3\xa9 \xef\xbf\xbd!\",role=\"primary\"} 100");
    assert_line(text, "rolld_build_info{version=\"1.0\\\"\\\\\\n\"} 1");
    free(text);
}

static void test_fetch_series_appear_with_the_first_fetch(void **state)
{
    struct fixture *f = *state;
    char *text = render(f->m);
    assert_no_substring(text, "rolld_source_");
    free(text);
    metrics_fetch_failed(f->m);
    text = render(f->m);
    assert_line(text, "rolld_source_fetch_failures_total 1");
    assert_line(text, "# TYPE rolld_source_fetch_failures_total counter");
    assert_no_substring(text, "rolld_source_last_fetch_success_timestamp_seconds");
    free(text);
    metrics_fetch_succeeded(f->m, 1718000000.5);
    metrics_fetch_failed(f->m);
    text = render(f->m);
    assert_line(text, "# TYPE rolld_source_last_fetch_success_timestamp_seconds gauge");
    assert_line(text, "rolld_source_last_fetch_success_timestamp_seconds 1718000000.5");
    assert_line(text, "rolld_source_fetch_failures_total 2");
    free(text);
}

/* Gauges print the shortest text that reads back as the same double. */
static void test_numbers_read_back_exactly(void **state)
{
    struct fixture *f = *state;
    static const struct {
        double value;
        const char *text;
    } cases[] = {
        {0.1 + 0.2, "0.30000000000000004"},
        {1718000000.123456789, "1718000000.1234567"},
        {0.1 + 0.7, "0.7999999999999999"}, /* 16 digits are enough */
        {1e-7, "1e-07"},
        {42, "42"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        metrics_fetch_succeeded(f->m, cases[i].value);
        char *text = render(f->m), line[128];
        snprintf(line, sizeof(line), "rolld_source_last_fetch_success_timestamp_seconds %s",
                 cases[i].text);
        assert_line(text, line);
        assert_true(strtod(cases[i].text, NULL) == cases[i].value);
        free(text);
    }
}

static void test_null_registry_records_nothing(void **state)
{
    (void)state;
    metrics_reconcile_observed(NULL, 1);
    metrics_rollout_event(NULL, "web", "started", NULL);
    metrics_service_set(NULL, &canary_web);
    metrics_service_remove(NULL, "web");
    metrics_fetch_succeeded(NULL, 1);
    metrics_fetch_failed(NULL);
    metrics_set_ready(NULL, true);
    metrics_set_build_version(NULL, "x");
    metrics_free(NULL);
    assert_int_equal(metrics_port(NULL), 0);
}

/* ---- over HTTP ---- */

struct exchange {
    int fd;
    char *response;
    size_t length, capacity;
    bool done; /* the server closed the connection */
};

static long long monotonic_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int on_client(sd_event_source *source, int fd, uint32_t revents, void *userdata)
{
    struct exchange *x = userdata;
    if (x->length + 4096 > x->capacity) {
        x->capacity = x->capacity * 2 + 8192;
        x->response = realloc(x->response, x->capacity);
        assert_non_null(x->response);
    }
    ssize_t n = read(fd, x->response + x->length, x->capacity - x->length - 1);
    if (n > 0) {
        x->length += (size_t)n;
        x->response[x->length] = 0;
        return 0;
    }
    if (n < 0 && errno == EAGAIN)
        return 0;
    x->done = true;
    sd_event_source_set_enabled(source, SD_EVENT_OFF);
    return 0;
}

static int connect_to(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    /* the kernel completes a loopback connect before the server accepts */
    assert_int_equal(connect(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
    return fd;
}

struct http_reply {
    int status;
    char headers[2048];
    char *body;
};

/* Sends request (in two parts, 200 ms apart, when split > 0) and runs the
 * loop until the server closes the connection (Connection: close), 5 s at most. */
static struct http_reply exchange(struct fixture *f, const char *request, size_t split)
{
    struct exchange x = {0};
    x.fd = connect_to(metrics_port(f->m));
    size_t length = strlen(request), first = split ? split : length;
    assert_int_equal(write(x.fd, request, first), (ssize_t)first);
    fcntl(x.fd, F_SETFL, fcntl(x.fd, F_GETFL) | O_NONBLOCK);
    sd_event_source *source = NULL;
    assert_true(sd_event_add_io(f->event, &source, x.fd, EPOLLIN, on_client, &x) >= 0);
    long long start = monotonic_ms();
    bool rest_sent = split == 0;
    while (!x.done && monotonic_ms() - start < 5000) {
        assert_true(sd_event_run(f->event, 50 * 1000) >= 0);
        if (!rest_sent && monotonic_ms() - start >= 200) {
            assert_false(x.done); /* no answer to half a request */
            assert_int_equal(write(x.fd, request + first, length - first),
                             (ssize_t)(length - first));
            rest_sent = true;
        }
    }
    sd_event_source_disable_unref(source);
    close(x.fd);
    if (!x.done)
        fail_msg("no complete answer to '%.40s' within 5 s (%zu bytes)", request, x.length);
    struct http_reply reply = {0};
    assert_non_null(x.response);
    assert_int_equal(sscanf(x.response, "HTTP/1.1 %d", &reply.status), 1);
    char *end = strstr(x.response, "\r\n\r\n");
    assert_non_null(end);
    snprintf(reply.headers, sizeof(reply.headers), "%.*s", (int)(end - x.response + 2), x.response);
    reply.body = strdup(end + 4);
    free(x.response);
    return reply;
}

static struct http_reply get(struct fixture *f, const char *method, const char *path)
{
    char request[256];
    snprintf(request, sizeof(request),
             "%s %s HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n", method, path);
    return exchange(f, request, 0);
}

static void assert_header(const struct http_reply *reply, const char *line)
{
    char wanted[512];
    snprintf(wanted, sizeof(wanted), "\r\n%s\r\n", line);
    /* header names are case-insensitive */
    if (!strcasestr(reply->headers, wanted))
        fail_msg("no header '%s' in:\n%s", line, reply->headers);
}

static void test_open_picks_a_port(void **state)
{
    struct fixture *f = *state;
    assert_true(metrics_port(f->m) > 0);
    assert_true(metrics_port(f->m) <= 65535);
}

static void test_metrics_over_http(void **state)
{
    struct fixture *f = *state;
    metrics_set_build_version(f->m, "0.1.0");
    metrics_service_set(f->m, &canary_web);
    metrics_reconcile_observed(f->m, 0.002);
    struct http_reply reply = get(f, "GET", "/metrics");
    assert_int_equal(reply.status, 200);
    assert_header(&reply, "Content-Type: text/plain; version=0.0.4; charset=utf-8");
    char *expected = render(f->m);
    assert_string_equal(reply.body, expected);
    assert_line(reply.body,
                "rolld_traffic_percent{service=\"web\",version=\"v2\",role=\"canary\"} 20");
    char length[64];
    snprintf(length, sizeof(length), "Content-Length: %zu", strlen(expected));
    assert_header(&reply, length);
    free(reply.body);
    /* HEAD: the same headers, no body */
    reply = get(f, "HEAD", "/metrics");
    assert_int_equal(reply.status, 200);
    assert_header(&reply, "Content-Type: text/plain; version=0.0.4; charset=utf-8");
    assert_string_equal(reply.body, "");
    free(reply.body);
    free(expected);
    /* the scrape sees what changed since */
    metrics_service_remove(f->m, "web");
    reply = get(f, "GET", "/metrics");
    assert_int_equal(reply.status, 200);
    assert_no_substring(reply.body, "service=\"web\"");
    free(reply.body);
}

static void test_healthz_is_503_until_ready(void **state)
{
    struct fixture *f = *state;
    struct http_reply reply = get(f, "GET", "/healthz");
    assert_int_equal(reply.status, 503);
    assert_string_equal(reply.body, "starting\n");
    free(reply.body);
    metrics_set_ready(f->m, true);
    reply = get(f, "GET", "/healthz");
    assert_int_equal(reply.status, 200);
    assert_string_equal(reply.body, "ok\n");
    free(reply.body);
}

static void test_other_paths_and_methods_are_refused(void **state)
{
    struct fixture *f = *state;
    struct http_reply reply = get(f, "GET", "/nope");
    assert_int_equal(reply.status, 404);
    free(reply.body);
    reply = get(f, "GET", "/metrics/extra");
    assert_int_equal(reply.status, 404);
    free(reply.body);
    reply = get(f, "DELETE", "/metrics");
    assert_int_equal(reply.status, 405);
    assert_header(&reply, "Allow: GET, HEAD");
    free(reply.body);
    reply = exchange(f,
                     "POST /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
                     "Content-Length: 5\r\n\r\nhello",
                     0);
    assert_int_equal(reply.status, 405);
    free(reply.body);
}

/* A scraper's connection stays open between requests: two requests on one
 * connection get two answers (the second asks to close). An answer queued
 * in the handler's first call would close it after the first. */
static void test_the_connection_is_kept(void **state)
{
    struct fixture *f = *state;
    struct http_reply reply = exchange(f,
                                       "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
                                       "GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
                                       0);
    assert_int_equal(reply.status, 503);
    assert_null(strstr(reply.headers, "Connection: close"));
    assert_non_null(strstr(reply.body, "HTTP/1.1 404"));
    free(reply.body);
}

/* A request that arrives in pieces is answered once whole: MHD's state is
 * carried across loop iterations by the epoll source and its timer. */
static void test_a_slow_client_is_answered(void **state)
{
    struct fixture *f = *state;
    const char *request = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
    struct http_reply reply = exchange(f, request, 10);
    assert_int_equal(reply.status, 503);
    free(reply.body);
}

/* Many scrapes in a row: each connection is served and closed. */
static void test_many_scrapes(void **state)
{
    struct fixture *f = *state;
    metrics_service_set(f->m, &canary_web);
    for (int i = 0; i < 200; i++) {
        metrics_reconcile_observed(f->m, 0.001);
        struct http_reply reply = get(f, "GET", "/metrics");
        assert_int_equal(reply.status, 200);
        char line[128];
        snprintf(line, sizeof(line), "rolld_reconcile_duration_seconds_count %d", i + 1);
        assert_line(reply.body, line);
        free(reply.body);
    }
}

/* Lines of fd's file (from the start) that contain needle. */
static int count_lines_with(int fd, const char *needle)
{
    char text[65536];
    ssize_t n = pread(fd, text, sizeof(text) - 1, 0);
    int count = 0;
    text[n > 0 ? n : 0] = 0;
    for (const char *p = text; (p = strstr(p, needle)); p++)
        count++;
    return count;
}

/* Out of descriptors, accept() fails: the listener pauses a second and
 * says so once, rather than retrying in a loop (libevent 2.1's default,
 * which filled the log at 100,000 lines a second), and serves again once
 * descriptors are free. */
static void test_out_of_descriptors_pauses_accepting(void **state)
{
    struct fixture *f = *state;
    struct rlimit saved;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &saved), 0);
    fflush(stderr);
    FILE *log = tmpfile();
    assert_non_null(log);
    int log_fd = fileno(log), stderr_copy = dup(2);
    dup2(log_fd, 2);
    /* room for the clients' sockets and nothing more: every other number
     * below a lowered limit taken by /dev/null */
    enum { CLIENTS = 6, FILLERS = 1024 };
    struct rlimit low = {(rlim_t)FILLERS, saved.rlim_max};
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &low), 0);
    static int fillers[FILLERS];
    int filled = 0, fd;
    while (filled < FILLERS && (fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) >= 0)
        fillers[filled++] = fd;
    assert_true(filled > CLIENTS);
    for (int i = 0; i < CLIENTS; i++)
        close(fillers[--filled]);
    /* the sockets first, then the connections: the server has none left */
    int clients[CLIENTS];
    for (int i = 0; i < CLIENTS; i++)
        clients[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in addr = {.sin_family = AF_INET,
                               .sin_port = htons((uint16_t)metrics_port(f->m))};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int connected = 0;
    for (int i = 0; i < CLIENTS; i++)
        connected += clients[i] >= 0 && connect(clients[i], (struct sockaddr *)&addr,
                                                sizeof(addr)) == 0;
    long long start = monotonic_ms();
    while (count_lines_with(log_fd, "accept") == 0 &&
           monotonic_ms() - start < 5000) {
        struct timespec pause = {0, 10 * 1000 * 1000};
        nanosleep(&pause, NULL);
    }
    int first = count_lines_with(log_fd, "accept");
    /* an observation window, not a wait for something: a loop would log
     * thousands of lines in it */
    struct timespec window = {1, 500 * 1000 * 1000};
    nanosleep(&window, NULL);
    int later = count_lines_with(log_fd, "accept");
    for (int i = 0; i < CLIENTS; i++)
        if (clients[i] >= 0)
            close(clients[i]);
    while (filled > 0)
        close(fillers[--filled]);
    assert_int_equal(setrlimit(RLIMIT_NOFILE, &saved), 0);
    fflush(stderr);
    dup2(stderr_copy, 2);
    close(stderr_copy);
    fclose(log);
    print_message("accept() errors logged: %d, then %d after 1.5 s\n", first, later);
    assert_int_equal(connected, CLIENTS);
    assert_true(first >= 1);
    assert_true(later <= first + 3);
    /* and it serves again */
    struct http_reply reply = get(f, "GET", "/healthz");
    assert_int_equal(reply.status, 503);
    free(reply.body);
}

static void test_open_refuses_bad_addresses(void **state)
{
    (void)state;
    sd_event *event = NULL;
    assert_true(sd_event_new(&event) >= 0);
    static const char *const bad[] = {"nonsense",
                                      "127.0.0.1",
                                      "127.0.0.1:",
                                      ":9464",
                                      "127.0.0.1:65536",
                                      "127.0.0.1:-1",
                                      "127.0.0.1:94x",
                                      "::1:9464",
                                      "[::1",
                                      "[::1]9464",
                                      ""};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct metrics *m = (struct metrics *)1;
        char err[512] = "";
        assert_int_equal(metrics_open(bad[i], &m, err, sizeof(err)), -EINVAL);
        assert_null(m);
        if (!strstr(err, "HOST:PORT"))
            fail_msg("'%s': the error does not say what to write: %s", bad[i], err);
    }
    struct metrics *m = NULL;
    char err[512] = "";
    assert_true(metrics_open("no-such-host.invalid:9464", &m, err, sizeof(err)) < 0);
    assert_null(m);
    assert_non_null(strstr(err, "no-such-host.invalid"));
    sd_event_unref(event);
}

static void test_open_reports_a_port_in_use(void **state)
{
    struct fixture *f = *state;
    char listen[64], err[512] = "";
    snprintf(listen, sizeof(listen), "127.0.0.1:%d", metrics_port(f->m));
    struct metrics *second = NULL;
    int r = metrics_open(listen, &second, err, sizeof(err));
    assert_true(r < 0);
    assert_null(second);
    if (!strstr(err, listen) || !strstr(err, "in use"))
        fail_msg("the error should name %s and say it is in use: %s", listen, err);
}

static void test_open_ipv6_loopback(void **state)
{
    (void)state;
    int probe = socket(AF_INET6, SOCK_STREAM, 0);
    struct sockaddr_in6 loop = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
    if (probe < 0 || bind(probe, (struct sockaddr *)&loop, sizeof(loop)) < 0) {
        if (probe >= 0)
            close(probe);
        skip(); /* no IPv6 on this host */
    }
    close(probe);
    sd_event *event = NULL;
    struct metrics *m = NULL;
    char err[512] = "";
    assert_true(sd_event_new(&event) >= 0);
    if (metrics_open("[::1]:0", &m, err, sizeof(err)) < 0)
        fail_msg("[::1]:0: %s", err);
    assert_true(metrics_port(m) > 0);
    metrics_free(m);
    sd_event_unref(event);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_fresh_registry_renders_exactly, setup, teardown),
        cmocka_unit_test_setup_teardown(test_histogram_buckets_sum_and_count, setup, teardown),
        cmocka_unit_test(test_rollback_reasons_map_to_labels),
        cmocka_unit_test_setup_teardown(test_rollout_counters_by_service_and_reason, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_phase_traffic_and_replicas, setup, teardown),
        cmocka_unit_test_setup_teardown(test_gone_versions_and_services_leave_no_series, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_label_values_are_escaped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fetch_series_appear_with_the_first_fetch, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_numbers_read_back_exactly, setup, teardown),
        cmocka_unit_test(test_null_registry_records_nothing),
        cmocka_unit_test_setup_teardown(test_open_picks_a_port, setup, teardown),
        cmocka_unit_test_setup_teardown(test_metrics_over_http, setup, teardown),
        cmocka_unit_test_setup_teardown(test_healthz_is_503_until_ready, setup, teardown),
        cmocka_unit_test_setup_teardown(test_other_paths_and_methods_are_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_slow_client_is_answered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_the_connection_is_kept, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_scrapes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_out_of_descriptors_pauses_accepting, setup, teardown),
        cmocka_unit_test(test_open_refuses_bad_addresses),
        cmocka_unit_test_setup_teardown(test_open_reports_a_port_in_use, setup, teardown),
        cmocka_unit_test(test_open_ipv6_loopback),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
