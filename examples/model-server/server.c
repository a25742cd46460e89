#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>

#include "server.h"

#ifndef MHD_HTTP_CONTENT_TOO_LARGE /* libmicrohttpd before 0.9.74 */
#define MHD_HTTP_CONTENT_TOO_LARGE 413
#endif

/* A reconfigure body larger than this is refused; user_config is a small settings object. */
#define RECONFIGURE_BODY_LIMIT (1024 * 1024)

struct server {
    struct options options;
    struct identity identity;
    double started_at;
    server_crash_fn on_crash_due;
    struct MHD_Daemon *daemon;
    unsigned port;

    pthread_mutex_t user_config_lock;
    /* Touched only under the lock: jansson's reference counts are not safe to share between
     * threads (the last decref frees without an acquire fence), so readers take a deep copy. */
    json_t *user_config;

    atomic_ulong inference_requests;
    atomic_ulong in_flight;
    atomic_bool draining;
    atomic_uint_fast64_t random_state;
};

enum endpoint {
    ENDPOINT_INFERENCE,
    ENDPOINT_HEALTH,
    ENDPOINT_RECONFIGURE,
    ENDPOINT_WRONG_METHOD,
};

struct request {
    enum endpoint endpoint;
    const char *allowed_methods; /* for ENDPOINT_WRONG_METHOD */
    char *body;                  /* reconfigure only */
    size_t body_size;
    bool body_too_large;
    unsigned long ordinal; /* the request's number among inference requests, from 1 */
    unsigned status;
    double started_at;
    char *method_and_path; /* kept for the --verbose line only */
};

double clock_now_seconds(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)now.tv_sec + (double)now.tv_nsec / 1e9;
}

enum health {
    HEALTH_OK,
    HEALTH_STARTING,
    HEALTH_UNHEALTHY,
};

static enum health health_at(const struct options *options, double seconds_since_start)
{
    if (options->never_healthy)
        return HEALTH_UNHEALTHY;
    if (options->unhealthy_after_seconds > 0 &&
        seconds_since_start >= options->unhealthy_after_seconds)
        return HEALTH_UNHEALTHY;
    if (seconds_since_start < options->start_delay_seconds)
        return HEALTH_STARTING;
    return HEALTH_OK;
}

/* splitmix64 on an atomic counter: good enough to pick failures, and lock-free. */
static bool roll_failure(struct server *server)
{
    if (server->options.fail_rate_percent <= 0)
        return false;
    uint64_t z = atomic_fetch_add(&server->random_state, UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    z ^= z >> 31;
    return (double)(z >> 11) / (double)(UINT64_C(1) << 53) * 100.0 <
           server->options.fail_rate_percent;
}

static void sleep_milliseconds(unsigned long milliseconds)
{
    struct timespec left = {(time_t)(milliseconds / 1000), (long)(milliseconds % 1000) * 1000000L};
    while (nanosleep(&left, &left) < 0 && errno == EINTR)
        ;
}

static enum MHD_Result send_buffer(struct server *server, struct MHD_Connection *connection,
                                   struct request *request, unsigned status,
                                   const char *content_type, char *body, size_t size,
                                   enum MHD_ResponseMemoryMode mode)
{
    struct MHD_Response *response = MHD_create_response_from_buffer(size, body, mode);
    if (!response) {
        if (mode == MHD_RESPMEM_MUST_FREE)
            free(body);
        return MHD_NO;
    }
    MHD_add_response_header(response, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    if (request->endpoint == ENDPOINT_WRONG_METHOD)
        MHD_add_response_header(response, MHD_HTTP_HEADER_ALLOW, request->allowed_methods);
    /* While draining, keep-alive would hold the connection (and our exit) open for nothing. */
    if (atomic_load(&server->draining))
        MHD_add_response_header(response, MHD_HTTP_HEADER_CONNECTION, "close");
    request->status = status;
    enum MHD_Result result = MHD_queue_response(connection, status, response);
    MHD_destroy_response(response);
    return result;
}

static enum MHD_Result send_text(struct server *server, struct MHD_Connection *connection,
                                 struct request *request, unsigned status, const char *text)
{
    return send_buffer(server, connection, request, status, "text/plain", (char *)text,
                       strlen(text), MHD_RESPMEM_PERSISTENT);
}

/* Takes the reference to `body`. */
static enum MHD_Result send_json(struct server *server, struct MHD_Connection *connection,
                                 struct request *request, unsigned status, json_t *body)
{
    char *text = body ? json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY) : NULL;
    json_decref(body);
    if (!text)
        return MHD_NO;
    size_t size = strlen(text);
    /* A newline keeps curl output readable; JSON parsers ignore it. */
    char *with_newline = realloc(text, size + 2);
    if (!with_newline) {
        free(text);
        return MHD_NO;
    }
    with_newline[size] = '\n';
    with_newline[size + 1] = '\0';
    return send_buffer(server, connection, request, status, "application/json", with_newline,
                       size + 1, MHD_RESPMEM_MUST_FREE);
}

/* Read through the connection: server->port is written by main after the threads start. */
static unsigned bound_port(struct MHD_Connection *connection)
{
    const union MHD_ConnectionInfo *connection_info =
        MHD_get_connection_info(connection, MHD_CONNECTION_INFO_DAEMON);
    if (!connection_info)
        return 0;
    const union MHD_DaemonInfo *daemon_info =
        MHD_get_daemon_info(connection_info->daemon, MHD_DAEMON_INFO_BIND_PORT);
    return daemon_info ? daemon_info->port : 0;
}

static json_t *json_string_or_null(const char *text)
{
    return text ? json_string(text) : json_null();
}

/* The replica index as a number when it is one, as given otherwise. */
static json_t *replica_value(const char *text)
{
    if (!text)
        return json_null();
    char *end;
    errno = 0;
    long long index = strtoll(text, &end, 10);
    if (*text && !*end && !errno)
        return json_integer(index);
    return json_string(text);
}

/* Returns a private copy; caller owns it. */
static json_t *user_config_copy(struct server *server)
{
    pthread_mutex_lock(&server->user_config_lock);
    json_t *config = json_deep_copy(server->user_config);
    pthread_mutex_unlock(&server->user_config_lock);
    return config;
}

static enum MHD_Result answer_inference(struct server *server, struct MHD_Connection *connection,
                                        struct request *request, const char *path)
{
    request->ordinal = atomic_fetch_add(&server->inference_requests, 1) + 1;
    unsigned long crash_after = server->options.crash_after_requests;
    /* Past the last allowed request the process is as good as dead: drop the connection. */
    if (crash_after && request->ordinal > crash_after)
        return MHD_NO;
    if (server->options.latency_ms)
        sleep_milliseconds(server->options.latency_ms);

    const struct identity *identity = &server->identity;
    json_t *body = json_object();
    if (!body)
        return MHD_NO;
    json_object_set_new(body, "service", json_string_or_null(identity->service));
    json_object_set_new(body, "version", json_string_or_null(identity->version));
    json_object_set_new(body, "version_name", json_string_or_null(identity->version_name));
    json_object_set_new(body, "application", json_string_or_null(identity->application));
    json_object_set_new(body, "deployment", json_string_or_null(identity->deployment));
    json_object_set_new(body, "replica", replica_value(identity->replica));
    json_object_set_new(body, "pid", json_integer(getpid()));
    json_object_set_new(body, "port", json_integer(bound_port(connection)));
    json_object_set_new(body, "path", json_string(path));
    json_object_set_new(body, "user_config", user_config_copy(server));
    json_object_set_new(body, "request", json_integer((json_int_t)request->ordinal));
    unsigned status = MHD_HTTP_OK;
    if (roll_failure(server)) {
        json_object_set_new(body, "error", json_string("injected failure (--fail-rate)"));
        status = MHD_HTTP_INTERNAL_SERVER_ERROR;
    }
    return send_json(server, connection, request, status, body);
}

static enum MHD_Result answer_health(struct server *server, struct MHD_Connection *connection,
                                     struct request *request)
{
    switch (health_at(&server->options, clock_now_seconds() - server->started_at)) {
    case HEALTH_OK:
        return send_text(server, connection, request, MHD_HTTP_OK, "ok");
    case HEALTH_STARTING:
        return send_text(server, connection, request, MHD_HTTP_SERVICE_UNAVAILABLE, "starting");
    case HEALTH_UNHEALTHY:
        break;
    }
    return send_text(server, connection, request, MHD_HTTP_SERVICE_UNAVAILABLE, "unhealthy");
}

static json_t *error_body(const char *message)
{
    return json_pack("{s:s}", "error", message);
}

static enum MHD_Result answer_reconfigure(struct server *server, struct MHD_Connection *connection,
                                          struct request *request)
{
    if (request->body_too_large)
        return send_json(server, connection, request, MHD_HTTP_CONTENT_TOO_LARGE,
                         error_body("body too large; user_config must stay under 1 MiB"));
    json_error_t parse_error;
    json_t *config = json_loadb(request->body ? request->body : "", request->body_size,
                                JSON_DECODE_ANY, &parse_error);
    if (!config) {
        char message[256 + JSON_ERROR_TEXT_LENGTH];
        snprintf(message, sizeof(message), "body is not JSON: line %d column %d: %s",
                 parse_error.line, parse_error.column, parse_error.text);
        return send_json(server, connection, request, MHD_HTTP_BAD_REQUEST, error_body(message));
    }
    json_t *answer = json_deep_copy(config);
    pthread_mutex_lock(&server->user_config_lock);
    json_t *old = server->user_config;
    server->user_config = config;
    json_decref(old);
    pthread_mutex_unlock(&server->user_config_lock);
    return send_json(server, connection, request, MHD_HTTP_OK, answer);
}

static bool method_is(const char *method, const char *expected)
{
    return !strcmp(method, expected);
}

static void classify(const struct server *server, struct request *request, const char *path,
                     const char *method)
{
    bool get = method_is(method, MHD_HTTP_METHOD_GET) || method_is(method, MHD_HTTP_METHOD_HEAD);
    bool post = method_is(method, MHD_HTTP_METHOD_POST);
    if (!strcmp(path, server->options.health_path)) {
        request->endpoint = get ? ENDPOINT_HEALTH : ENDPOINT_WRONG_METHOD;
        request->allowed_methods = "GET, HEAD";
    } else if (!strcmp(path, server->options.reconfigure_path)) {
        request->endpoint = post ? ENDPOINT_RECONFIGURE : ENDPOINT_WRONG_METHOD;
        request->allowed_methods = "POST";
    } else {
        request->endpoint = get || post ? ENDPOINT_INFERENCE : ENDPOINT_WRONG_METHOD;
        request->allowed_methods = "GET, HEAD, POST";
    }
}

static void collect_body(struct request *request, const char *data, size_t size)
{
    if (request->endpoint != ENDPOINT_RECONFIGURE || request->body_too_large)
        return; /* inference bodies are read and dropped */
    if (request->body_size + size > RECONFIGURE_BODY_LIMIT) {
        request->body_too_large = true;
        return;
    }
    char *grown = realloc(request->body, request->body_size + size);
    if (!grown) {
        request->body_too_large = true;
        return;
    }
    memcpy(grown + request->body_size, data, size);
    request->body = grown;
    request->body_size += size;
}

static enum MHD_Result handle_request(void *cls, struct MHD_Connection *connection,
                                      const char *path, const char *method,
                                      const char *http_version, const char *upload_data,
                                      size_t *upload_data_size, void **request_slot)
{
    struct server *server = cls;
    struct request *request = *request_slot;
    if (!request) {
        request = calloc(1, sizeof(*request));
        if (!request)
            return MHD_NO;
        classify(server, request, path, method);
        request->started_at = clock_now_seconds();
        if (server->options.verbose) {
            size_t size = strlen(method) + strlen(path) + 2;
            request->method_and_path = malloc(size);
            if (request->method_and_path)
                snprintf(request->method_and_path, size, "%s %s", method, path);
        }
        atomic_fetch_add(&server->in_flight, 1);
        *request_slot = request;
        return MHD_YES;
    }
    if (*upload_data_size) {
        collect_body(request, upload_data, *upload_data_size);
        *upload_data_size = 0;
        return MHD_YES;
    }
    switch (request->endpoint) {
    case ENDPOINT_INFERENCE:
        return answer_inference(server, connection, request, path);
    case ENDPOINT_HEALTH:
        return answer_health(server, connection, request);
    case ENDPOINT_RECONFIGURE:
        return answer_reconfigure(server, connection, request);
    case ENDPOINT_WRONG_METHOD:
        break;
    }
    return send_text(server, connection, request, MHD_HTTP_METHOD_NOT_ALLOWED,
                     "method not allowed");
}

static void complete_request(void *cls, struct MHD_Connection *connection, void **request_slot,
                             enum MHD_RequestTerminationCode how)
{
    struct server *server = cls;
    struct request *request = *request_slot;
    if (!request)
        return;
    *request_slot = NULL;
    if (server->options.verbose)
        fprintf(stderr, "model-server[%d]: %s -> %u%s in %.1f ms\n", (int)getpid(),
                request->method_and_path ? request->method_and_path : "?", request->status,
                how == MHD_REQUEST_TERMINATED_COMPLETED_OK ? "" : " (not completed)",
                (clock_now_seconds() - request->started_at) * 1000);
    bool crash_now = server->options.crash_after_requests &&
                     request->ordinal == server->options.crash_after_requests;
    free(request->body);
    free(request->method_and_path);
    free(request);
    atomic_fetch_sub(&server->in_flight, 1);
    if (crash_now && server->on_crash_due)
        server->on_crash_due();
}

struct server *server_new(const struct options *options, const struct identity *identity,
                          json_t *user_config, double started_at, server_crash_fn on_crash_due)
{
    struct server *server = calloc(1, sizeof(*server));
    if (!server) {
        json_decref(user_config);
        return NULL;
    }
    server->options = *options;
    server->identity = *identity;
    server->started_at = started_at;
    server->on_crash_due = on_crash_due;
    server->user_config = user_config;
    pthread_mutex_init(&server->user_config_lock, NULL);
    atomic_init(&server->inference_requests, 0);
    atomic_init(&server->in_flight, 0);
    atomic_init(&server->draining, false);
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    atomic_init(&server->random_state,
                (uint64_t)now.tv_nsec ^ ((uint64_t)now.tv_sec << 20) ^ (uint64_t)getpid());
    return server;
}

int server_listen(struct server *server, char *error, size_t error_size)
{
    struct sockaddr_in address4 = {.sin_family = AF_INET,
                                   .sin_port = htons((uint16_t)server->options.port)};
    struct sockaddr_in6 address6 = {.sin6_family = AF_INET6,
                                    .sin6_port = htons((uint16_t)server->options.port)};
    const struct sockaddr *address;
    unsigned int flags = MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD |
                         MHD_USE_ITC | MHD_USE_AUTO; /* ITC lets MHD_quiesce_daemon work */
    if (inet_pton(AF_INET, server->options.host, &address4.sin_addr) == 1) {
        address = (const struct sockaddr *)&address4;
    } else if (inet_pton(AF_INET6, server->options.host, &address6.sin6_addr) == 1) {
        address = (const struct sockaddr *)&address6;
        flags |= MHD_USE_IPv6;
    } else {
        snprintf(error, error_size, "--host %s: not a numeric IPv4 or IPv6 address",
                 server->options.host);
        return -1;
    }
    if (server->options.verbose)
        flags |= MHD_USE_ERROR_LOG;

    server->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, handle_request, server, MHD_OPTION_SOCK_ADDR, address,
        MHD_OPTION_NOTIFY_COMPLETED, complete_request, server,
        /* Connection threads need little stack; a smaller one keeps many connections cheap. */
        MHD_OPTION_THREAD_STACK_SIZE, (size_t)(1024 * 1024), MHD_OPTION_END);
    if (!server->daemon) {
        snprintf(error, error_size,
                 "cannot listen on %s port %d (%s); pick a free port or check --host",
                 server->options.host, server->options.port,
                 errno ? strerror(errno) : "libmicrohttpd refused to start");
        return -1;
    }
    const union MHD_DaemonInfo *info =
        MHD_get_daemon_info(server->daemon, MHD_DAEMON_INFO_BIND_PORT);
    server->port = info && info->port ? info->port : (unsigned)server->options.port;
    return 0;
}

unsigned server_port(const struct server *server)
{
    return server->port;
}

void server_stop_accepting(struct server *server)
{
    atomic_store(&server->draining, true);
    if (!server->daemon)
        return;
    MHD_socket listener = MHD_quiesce_daemon(server->daemon);
    if (listener != MHD_INVALID_SOCKET)
        close(listener);
}

unsigned long server_requests_in_flight(const struct server *server)
{
    return atomic_load(&server->in_flight);
}

unsigned long server_connections_open(const struct server *server)
{
    if (!server->daemon)
        return 0;
    const union MHD_DaemonInfo *info =
        MHD_get_daemon_info(server->daemon, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
    return info ? info->num_connections : 0;
}

unsigned long server_requests_served(const struct server *server)
{
    return atomic_load(&server->inference_requests);
}

void server_free(struct server *server)
{
    if (!server)
        return;
    if (server->daemon)
        MHD_stop_daemon(server->daemon);
    json_decref(server->user_config);
    pthread_mutex_destroy(&server->user_config_lock);
    free(server);
}
