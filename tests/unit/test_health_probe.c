/* tests for adapters/compute/health_probe.c: probes against a libmicrohttpd
 * server (its own thread) and against raw socket servers written here that
 * answer with hand-written bytes, all on loopback; the test drives the
 * prober's sd-event loop itself, with deadlines, never with sleeps. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <errno.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <systemd/sd-event.h>
#include <time.h>
#include <unistd.h>

#include "compute/health_probe.h"

#define MSEC 1000ULL
#define SEC 1000000ULL

static uint64_t monotonic_usec(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * SEC + (uint64_t)ts.tv_nsec / 1000;
}

/* Runs the loop until *counter reaches target; false if timeout passes first. */
static bool run_until(sd_event *event, const int *counter, int target, uint64_t timeout)
{
    uint64_t deadline = monotonic_usec() + timeout;
    while (*counter < target) {
        uint64_t now = monotonic_usec();
        if (now >= deadline)
            return false;
        assert_true(sd_event_run(event, deadline - now) >= 0);
    }
    return true;
}

/* ---- a libmicrohttpd server: 503 for /fail, 200 for any other path ---- */

struct mhd_server {
    struct MHD_Daemon *daemon;
    int port;
    atomic_int connections; /* accepted, counted from MHD's thread */
};

static enum MHD_Result on_mhd_request(void *cls, struct MHD_Connection *connection, const char *url,
                                      const char *method, const char *version,
                                      const char *upload_data, size_t *upload_data_size,
                                      void **request_context)
{
    /* libmicrohttpd 0.9.75 closes the connection after an answer queued at
     * the first call for a request, as model servers do not: answer at the
     * second, like examples/model-server */
    static int seen;
    if (!*request_context) {
        *request_context = &seen;
        return MHD_YES;
    }
    bool failing = strcmp(url, "/fail") == 0;
    const char *body = failing ? "failing\n" : "ok\n";
    struct MHD_Response *response =
        MHD_create_response_from_buffer(strlen(body), (void *)body, MHD_RESPMEM_PERSISTENT);
    if (!response)
        return MHD_NO;
    enum MHD_Result r = MHD_queue_response(
        connection, failing ? MHD_HTTP_SERVICE_UNAVAILABLE : MHD_HTTP_OK, response);
    MHD_destroy_response(response);
    return r;
}

static void on_mhd_connection(void *cls, struct MHD_Connection *connection, void **socket_context,
                              enum MHD_ConnectionNotificationCode code)
{
    struct mhd_server *server = cls;
    if (code == MHD_CONNECTION_NOTIFY_STARTED)
        atomic_fetch_add(&server->connections, 1);
}

static void mhd_server_start(struct mhd_server *server)
{
    struct sockaddr_in address = {.sin_family = AF_INET};
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    server->daemon =
        MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG, 0, NULL, NULL,
                         on_mhd_request, server, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&address,
                         MHD_OPTION_NOTIFY_CONNECTION, on_mhd_connection, server, MHD_OPTION_END);
    assert_non_null(server->daemon);
    const union MHD_DaemonInfo *bound =
        MHD_get_daemon_info(server->daemon, MHD_DAEMON_INFO_BIND_PORT);
    assert_non_null(bound);
    server->port = bound->port;
    assert_true(server->port > 0);
}

/* ---- raw servers: hand-written answers on the test's loop ---- */

enum raw_mode {
    RAW_CHUNKED_IN_TWO_PARTS,    /* a chunked 200, its end 20 ms after its start; stays open */
    RAW_CONNECTION_CLOSE,        /* a 200 with "Connection: close", then closes */
    RAW_BODY_UNTIL_EOF,          /* a 503 whose body ends with the connection */
    RAW_CLOSE_AFTER_ANSWER,      /* a kept-alive 200, then closes (FIN) at once */
    RAW_RESET_AFTER_ANSWER,      /* a kept-alive 200, then resets (RST) at once */
    RAW_SHUT_WHEN_IDLE,          /* a kept-alive 200; 20 ms later, shuts its side (FIN) */
    RAW_RESET_WHEN_IDLE,         /* a kept-alive 200; 20 ms later, resets (RST) */
    RAW_CLOSE_ON_SECOND_REQUEST, /* a kept-alive 200, and a close (FIN) for the next request */
    RAW_RESET_ON_SECOND_REQUEST, /* a kept-alive 200, and a reset (RST) for the next request */
    RAW_CONTINUE_FIRST,          /* 100 Continue, then a kept-alive 200 */
    RAW_LARGE_BODY,              /* a kept-alive 200 with a body of 100 kB */
    RAW_SILENT,                  /* reads requests, never answers */
    RAW_GARBAGE,                 /* answers with something that is not HTTP */
};

#define RAW_CONNECTIONS_MAX 16

struct raw_connection {
    struct raw_server *server;
    int fd;
    sd_event_source *io, *timer;
    int requests;
    size_t length;
    char request[2048];
};

struct raw_server {
    sd_event *event;
    enum raw_mode mode;
    int fd, port;
    sd_event_source *io;
    int accepted, requests, closed_by_client, idle_closes;
    struct raw_connection *connections[RAW_CONNECTIONS_MAX];
};

static void raw_connection_free(struct raw_connection *c)
{
    for (int i = 0; i < RAW_CONNECTIONS_MAX; i++)
        if (c->server->connections[i] == c)
            c->server->connections[i] = NULL;
    sd_event_source_disable_unref(c->io);
    sd_event_source_disable_unref(c->timer);
    close(c->fd);
    free(c);
}

static void raw_send(struct raw_connection *c, const char *text)
{
    size_t length = strlen(text);
    assert_int_equal(send(c->fd, text, length, MSG_NOSIGNAL), (ssize_t)length);
}

static void raw_reset(struct raw_connection *c)
{
    struct linger reset = {.l_onoff = 1, .l_linger = 0};
    assert_int_equal(setsockopt(c->fd, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset)), 0);
    raw_connection_free(c);
}

static int on_raw_timer(sd_event_source *source, uint64_t usec, void *userdata)
{
    struct raw_connection *c = userdata;
    switch (c->server->mode) {
    case RAW_CHUNKED_IN_TWO_PARTS:
        raw_send(c, "0\r\n\r\n");
        break;
    case RAW_SHUT_WHEN_IDLE:
        c->server->idle_closes++;
        assert_int_equal(shutdown(c->fd, SHUT_WR), 0);
        break;
    case RAW_RESET_WHEN_IDLE:
        c->server->idle_closes++;
        raw_reset(c);
        break;
    default:
        break;
    }
    return 0;
}

static void raw_timer_start(struct raw_connection *c)
{
    c->timer = sd_event_source_disable_unref(c->timer);
    assert_true(sd_event_add_time_relative(c->server->event, &c->timer, CLOCK_MONOTONIC, 20 * MSEC,
                                           1, on_raw_timer, c) >= 0);
}

static const char kept_alive_ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n";

/* Answers one request; false when the connection was closed (c is freed). */
static bool raw_answer(struct raw_connection *c)
{
    c->requests++;
    switch (c->server->mode) {
    case RAW_CHUNKED_IN_TWO_PARTS:
        raw_send(c, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nok\n\r\n");
        raw_timer_start(c);
        return true;
    case RAW_CONNECTION_CLOSE:
        raw_send(c, "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n");
        raw_connection_free(c);
        return false;
    case RAW_BODY_UNTIL_EOF:
        raw_send(c, "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n\r\n"
                    "this body ends when the connection does\n");
        raw_connection_free(c);
        return false;
    case RAW_CLOSE_AFTER_ANSWER:
        raw_send(c, kept_alive_ok);
        raw_connection_free(c);
        return false;
    case RAW_RESET_AFTER_ANSWER:
        raw_send(c, kept_alive_ok);
        raw_reset(c);
        return false;
    case RAW_SHUT_WHEN_IDLE:
    case RAW_RESET_WHEN_IDLE:
        raw_send(c, kept_alive_ok);
        raw_timer_start(c);
        return true;
    case RAW_CLOSE_ON_SECOND_REQUEST:
    case RAW_RESET_ON_SECOND_REQUEST:
        if (c->requests == 1) {
            raw_send(c, kept_alive_ok);
            return true;
        }
        if (c->server->mode == RAW_CLOSE_ON_SECOND_REQUEST)
            raw_connection_free(c);
        else
            raw_reset(c);
        return false;
    case RAW_CONTINUE_FIRST:
        raw_send(c, "HTTP/1.1 100 Continue\r\n\r\n");
        raw_send(c, kept_alive_ok);
        return true;
    case RAW_LARGE_BODY: {
        static char answer[100 * 1024 + 64];
        int header = snprintf(answer, sizeof(answer),
                              "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", 100 * 1024);
        memset(answer + header, 'x', 100 * 1024);
        answer[header + 100 * 1024] = 0;
        raw_send(c, answer);
        return true;
    }
    case RAW_SILENT:
        return true;
    case RAW_GARBAGE:
        raw_send(c, "220 smtp.example.com ESMTP ready\r\n\r\n");
        return true;
    }
    return true;
}

static int on_raw_readable(sd_event_source *source, int fd, uint32_t revents, void *userdata)
{
    struct raw_connection *c = userdata;
    ssize_t n = recv(fd, c->request + c->length, sizeof(c->request) - 1 - c->length, 0);
    if (n < 0 && errno == EAGAIN)
        return 0;
    if (n <= 0) {
        c->server->closed_by_client++;
        raw_connection_free(c);
        return 0;
    }
    c->length += (size_t)n;
    c->request[c->length] = 0;
    char *end;
    while ((end = strstr(c->request, "\r\n\r\n"))) {
        c->server->requests++;
        assert_true(strncmp(c->request, "GET /", 5) == 0);
        size_t used = (size_t)(end + 4 - c->request);
        memmove(c->request, c->request + used, c->length - used + 1);
        c->length -= used;
        if (!raw_answer(c))
            return 0;
    }
    assert_true(c->length < sizeof(c->request) - 1);
    return 0;
}

static int on_raw_accept(sd_event_source *source, int fd, uint32_t revents, void *userdata)
{
    struct raw_server *server = userdata;
    int connection = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (connection < 0)
        return 0;
    server->accepted++;
    struct raw_connection *c = calloc(1, sizeof(*c));
    assert_non_null(c);
    c->server = server;
    c->fd = connection;
    bool placed = false;
    for (int slot = 0; slot < RAW_CONNECTIONS_MAX && !placed; slot++)
        if (!server->connections[slot]) {
            server->connections[slot] = c;
            placed = true;
        }
    assert_true(placed);
    assert_true(sd_event_add_io(server->event, &c->io, connection, EPOLLIN, on_raw_readable, c) >=
                0);
    return 0;
}

/* A socket bound to a free loopback port; listening when listen_too. */
static int loopback_socket(bool listen_too, int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in address = {.sin_family = AF_INET};
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&address, sizeof(address)), 0);
    if (listen_too)
        assert_int_equal(listen(fd, 16), 0);
    socklen_t length = sizeof(address);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&address, &length), 0);
    *port = ntohs(address.sin_port);
    return fd;
}

static struct raw_server *raw_server_start(sd_event *event, enum raw_mode mode)
{
    struct raw_server *server = calloc(1, sizeof(*server));
    assert_non_null(server);
    server->event = event;
    server->mode = mode;
    server->fd = loopback_socket(true, &server->port);
    assert_true(sd_event_add_io(event, &server->io, server->fd, EPOLLIN, on_raw_accept, server) >=
                0);
    return server;
}

static void raw_server_free(struct raw_server *server)
{
    if (!server)
        return;
    for (int i = 0; i < RAW_CONNECTIONS_MAX; i++)
        if (server->connections[i])
            raw_connection_free(server->connections[i]);
    sd_event_source_disable_unref(server->io);
    if (server->fd >= 0)
        close(server->fd);
    free(server);
}

/* ---- the fixture: a loop, a probe, an MHD server, up to two raw servers ---- */

struct fixture {
    sd_event *event;
    struct health_probe_group *group;
    struct health_probe *probe;
    struct mhd_server mhd;
    struct raw_server *raw[2];
    int calls; /* of on_done, over the whole test */
    long status;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (!f || sd_event_new(&f->event) < 0)
        return -1;
    f->group = health_probe_group_new(f->event);
    f->probe = f->group ? health_probe_new(f->group) : NULL;
    if (!f->probe)
        return -1;
    mhd_server_start(&f->mhd);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    health_probe_free(f->probe);
    health_probe_group_free(f->group);
    raw_server_free(f->raw[0]);
    raw_server_free(f->raw[1]);
    MHD_stop_daemon(f->mhd.daemon);
    sd_event_unref(f->event);
    free(f);
    return 0;
}

static void on_done(void *userdata, long status)
{
    struct fixture *f = userdata;
    f->calls++;
    f->status = status;
}

/* One probe run to its end, 2 s at most: its status. */
static long probe_once(struct fixture *f, int port, const char *path, long timeout_ms)
{
    int before = f->calls;
    assert_int_equal(health_probe_start(f->probe, port, path, timeout_ms, on_done, f), 0);
    assert_int_equal(f->calls, before); /* never from inside start */
    assert_true(health_probe_busy(f->probe));
    if (!run_until(f->event, &f->calls, before + 1, 2 * SEC))
        fail_msg("no answer to GET %s on port %d within 2 s", path, port);
    assert_int_equal(f->calls, before + 1);
    assert_false(health_probe_busy(f->probe));
    return f->status;
}

static void test_reports_200_and_503(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(probe_once(f, f->mhd.port, "/-/healthz", 1000), 200);
    assert_int_equal(probe_once(f, f->mhd.port, "/fail", 1000), 503);
    assert_int_equal(probe_once(f, f->mhd.port, "/fail", 1000), 503);
    assert_int_equal(probe_once(f, f->mhd.port, "/-/healthz", 1000), 200);
    /* the request is kept between probes: a path that begins like the
     * last one is a new request all the same */
    assert_int_equal(probe_once(f, f->mhd.port, "/fai", 1000), 200);
    assert_int_equal(probe_once(f, f->mhd.port, "/fail", 1000), 503);
    assert_int_equal(probe_once(f, f->mhd.port, "/failing", 1000), 200);
}

static void test_keeps_one_connection_across_probes(void **state)
{
    struct fixture *f = *state;
    for (int i = 0; i < 5; i++)
        assert_int_equal(probe_once(f, f->mhd.port, "/-/healthz", 1000), 200);
    assert_int_equal(atomic_load(&f->mhd.connections), 1);
}

struct chain {
    struct health_probe *probe;
    int port;
    const char *path;
    int left; /* probes still to start from the callback */
    int calls;
    long statuses[8];
};

static void on_chain_done(void *userdata, long status)
{
    struct chain *chain = userdata;
    chain->statuses[chain->calls++] = status;
    if (chain->left-- > 0)
        assert_int_equal(
            health_probe_start(chain->probe, chain->port, chain->path, 1000, on_chain_done, chain),
            0);
}

static void test_callback_starts_the_next_probe(void **state)
{
    struct fixture *f = *state;
    struct chain chain = {f->probe, f->mhd.port, "/-/healthz", 4, 0, {0}};
    assert_int_equal(
        health_probe_start(f->probe, chain.port, chain.path, 1000, on_chain_done, &chain), 0);
    assert_true(run_until(f->event, &chain.calls, 5, 2 * SEC));
    for (int i = 0; i < 5; i++)
        assert_int_equal(chain.statuses[i], 200);
    assert_false(health_probe_busy(f->probe));
    assert_int_equal(atomic_load(&f->mhd.connections), 1);
}

static void test_refuses_a_second_probe_and_bad_arguments(void **state)
{
    struct fixture *f = *state;
    int port = f->mhd.port;
    assert_int_equal(health_probe_start(f->probe, port, "/-/healthz", 1000, on_done, f), 0);
    assert_int_equal(health_probe_start(f->probe, port, "/-/healthz", 1000, on_done, f), -EBUSY);
    assert_true(run_until(f->event, &f->calls, 1, 2 * SEC));
    assert_int_equal(f->status, 200);

    char long_path[600];
    memset(long_path, 'a', sizeof(long_path) - 1);
    long_path[0] = '/';
    long_path[sizeof(long_path) - 1] = 0;
    assert_int_equal(health_probe_start(f->probe, port, long_path, 1000, on_done, f),
                     -ENAMETOOLONG);
    assert_int_equal(health_probe_start(f->probe, port, "healthz", 1000, on_done, f), -EINVAL);
    assert_int_equal(health_probe_start(f->probe, port, "/a b", 1000, on_done, f), -EINVAL);
    assert_int_equal(health_probe_start(f->probe, port, "/a\r\nX: y", 1000, on_done, f), -EINVAL);
    assert_int_equal(health_probe_start(f->probe, 0, "/", 1000, on_done, f), -EINVAL);
    assert_int_equal(health_probe_start(f->probe, 65536, "/", 1000, on_done, f), -EINVAL);
    assert_int_equal(health_probe_start(f->probe, port, "/", -1, on_done, f), -EINVAL);
    assert_int_equal(health_probe_start(f->probe, port, "/", 1000, NULL, f), -EINVAL);
    assert_false(health_probe_busy(f->probe));
    assert_int_equal(f->calls, 1);
    /* the kept connection still serves */
    assert_int_equal(probe_once(f, port, "/-/healthz", 1000), 200);
    assert_int_equal(atomic_load(&f->mhd.connections), 1);
}

static void test_connection_close_answer_closes(void **state)
{
    struct fixture *f = *state;
    struct raw_server *server = f->raw[0] = raw_server_start(f->event, RAW_CONNECTION_CLOSE);
    assert_int_equal(probe_once(f, server->port, "/-/healthz", 1000), 200);
    assert_int_equal(probe_once(f, server->port, "/-/healthz", 1000), 200);
    assert_int_equal(server->accepted, 2);
    assert_int_equal(server->requests, 2);
}

static void test_body_until_end_of_file(void **state)
{
    struct fixture *f = *state;
    struct raw_server *server = f->raw[0] = raw_server_start(f->event, RAW_BODY_UNTIL_EOF);
    assert_int_equal(probe_once(f, server->port, "/-/healthz", 1000), 503);
    assert_int_equal(probe_once(f, server->port, "/-/healthz", 1000), 503);
    assert_int_equal(server->accepted, 2);
}

static void test_chunked_answer_in_two_reads(void **state)
{
    struct fixture *f = *state;
    struct raw_server *server = f->raw[0] = raw_server_start(f->event, RAW_CHUNKED_IN_TWO_PARTS);
    uint64_t start = monotonic_usec();
    for (int i = 0; i < 3; i++)
        assert_int_equal(probe_once(f, server->port, "/-/healthz", 1000), 200);
    /* each answer was complete only with its second part */
    assert_true(monotonic_usec() - start >= 3 * 20 * MSEC);
    assert_int_equal(server->accepted, 1);
    assert_int_equal(server->requests, 3);
}

static void test_interim_answer_is_skipped(void **state)
{
    struct fixture *f = *state;
    struct raw_server *server = f->raw[0] = raw_server_start(f->event, RAW_CONTINUE_FIRST);
    assert_int_equal(probe_once(f, server->port, "/-/healthz", 1000), 200);
    assert_int_equal(probe_once(f, server->port, "/-/healthz", 1000), 200);
    assert_int_equal(server->accepted, 1);
}

/* Many reads for one answer: each edge must be read to its end. */
static void test_large_body_is_read_to_its_end(void **state)
{
    struct fixture *f = *state;
    struct raw_server *server = f->raw[0] = raw_server_start(f->event, RAW_LARGE_BODY);
    assert_int_equal(probe_once(f, server->port, "/-/healthz", 1000), 200);
    assert_int_equal(probe_once(f, server->port, "/-/healthz", 1000), 200);
    assert_int_equal(server->accepted, 1);
}

static void test_garbage_reports_0(void **state)
{
    struct fixture *f = *state;
    struct raw_server *server = f->raw[0] = raw_server_start(f->event, RAW_GARBAGE);
    assert_int_equal(probe_once(f, server->port, "/-/healthz", 1000), 0);
    /* and the connection is closed */
    assert_true(run_until(f->event, &server->closed_by_client, 1, 2 * SEC));
}

/* An answer that comes with the server's FIN or RST: the connection is not
 * kept, and the next probe opens another. */
static void answer_then_close(struct fixture *f, enum raw_mode mode)
{
    struct raw_server *server = f->raw[0] = raw_server_start(f->event, mode);
    assert_int_equal(probe_once(f, server->port, "/-/healthz", 1000), 200);
    assert_int_equal(probe_once(f, server->port, "/-/healthz", 1000), 200);
    assert_int_equal(server->accepted, 2);
    assert_int_equal(server->requests, 2);
}

static void test_answer_then_fin(void **state)
{
    answer_then_close(*state, RAW_CLOSE_AFTER_ANSWER);
}

static void test_answer_then_reset(void **state)
{
    answer_then_close(*state, RAW_RESET_AFTER_ANSWER);
}

static void test_idle_connection_closed_by_the_server(void **state)
{
    struct fixture *f = *state;
    struct raw_server *server = f->raw[0] = raw_server_start(f->event, RAW_SHUT_WHEN_IDLE);
    assert_int_equal(probe_once(f, server->port, "/-/healthz", 1000), 200);
    /* the prober sees the server's FIN with no probe in flight, and closes */
    assert_true(run_until(f->event, &server->closed_by_client, 1, 2 * SEC));
    assert_int_equal(server->idle_closes, 1);
    assert_int_equal(f->calls, 1);
    assert_int_equal(probe_once(f, server->port, "/-/healthz", 1000), 200);
    assert_int_equal(server->accepted, 2);
    assert_int_equal(server->requests, 2);
}

/* The server resets the idle connection, and the next probe starts before
 * the loop has seen it: the first send fails at once, and the request goes
 * out again on a new connection. */
static void test_retry_when_the_first_send_fails(void **state)
{
    struct fixture *f = *state;
    struct raw_server *server = f->raw[0] = raw_server_start(f->event, RAW_RESET_WHEN_IDLE);
    assert_int_equal(probe_once(f, server->port, "/-/healthz", 1000), 200);
    assert_true(run_until(f->event, &server->idle_closes, 1, 2 * SEC));
    assert_int_equal(probe_once(f, server->port, "/-/healthz", 1000), 200);
    assert_int_equal(server->accepted, 2);
    assert_int_equal(server->requests, 2);
}

/* The server drops the kept connection when the next request comes, as one
 * whose keep-alive timeout passes just then does: the request goes out
 * again on a new connection. */
static void retry_when_dropped(struct fixture *f, enum raw_mode mode)
{
    struct raw_server *server = f->raw[0] = raw_server_start(f->event, mode);
    assert_int_equal(probe_once(f, server->port, "/-/healthz", 1000), 200);
    assert_int_equal(probe_once(f, server->port, "/-/healthz", 1000), 200);
    assert_int_equal(server->accepted, 2);
    assert_int_equal(server->requests, 3);
}

static void test_retry_after_fin_for_the_request(void **state)
{
    retry_when_dropped(*state, RAW_CLOSE_ON_SECOND_REQUEST);
}

static void test_retry_after_reset_for_the_request(void **state)
{
    retry_when_dropped(*state, RAW_RESET_ON_SECOND_REQUEST);
}

/* The kept connection is dropped and the server is gone: no second retry. */
static void test_failed_retry_reports_0(void **state)
{
    struct fixture *f = *state;
    struct raw_server *server = f->raw[0] = raw_server_start(f->event, RAW_CLOSE_ON_SECOND_REQUEST);
    int port = server->port;
    assert_int_equal(probe_once(f, port, "/-/healthz", 1000), 200);
    /* no listener any more: a new connection is refused */
    server->io = sd_event_source_disable_unref(server->io);
    close(server->fd);
    server->fd = -1;
    assert_int_equal(probe_once(f, port, "/-/healthz", 1000), 0);
    assert_int_equal(server->requests, 2);
}

static void test_timeout_reports_0(void **state)
{
    struct fixture *f = *state;
    struct raw_server *server = f->raw[0] = raw_server_start(f->event, RAW_SILENT);
    uint64_t start = monotonic_usec();
    assert_int_equal(probe_once(f, server->port, "/-/healthz", 200), 0);
    uint64_t took = monotonic_usec() - start;
    assert_true(took >= 200 * MSEC);
    assert_true(took < 1 * SEC);
    assert_int_equal(server->requests, 1);
    assert_true(run_until(f->event, &server->closed_by_client, 1, 2 * SEC));
}

/* A full accept queue drops the probe's SYN: the connect stays in progress
 * and the request waits for the socket to become writable, which it does
 * when the kernel's SYN sent again a second later finds room. */
static void test_request_waits_for_a_slow_handshake(void **state)
{
    struct fixture *f = *state;
    struct raw_server *server = f->raw[0] = raw_server_start(f->event, RAW_CHUNKED_IN_TWO_PARTS);
    sd_event_source_set_enabled(server->io, SD_EVENT_OFF);
    assert_int_equal(listen(server->fd, 0), 0); /* room for one connection not accepted */
    int filler = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons(server->port)};
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(filler, (struct sockaddr *)&address, sizeof(address)), 0);

    /* a timeout while connecting */
    assert_int_equal(probe_once(f, server->port, "/-/healthz", 100), 0);

    assert_int_equal(health_probe_start(f->probe, server->port, "/-/healthz", 3000, on_done, f), 0);
    assert_false(run_until(f->event, &f->calls, 2, 100 * MSEC));
    assert_int_equal(server->requests, 0);
    sd_event_source_set_enabled(server->io, SD_EVENT_ON);
    assert_true(run_until(f->event, &f->calls, 2, 3 * SEC));
    assert_int_equal(f->status, 200);
    assert_int_equal(server->accepted, 2); /* the filler, then the probe */
    close(filler);
}

static void test_refused_reports_0(void **state)
{
    struct fixture *f = *state;
    int port;
    int fd = loopback_socket(false, &port); /* bound, not listening: connections are refused */
    assert_int_equal(probe_once(f, port, "/-/healthz", 1000), 0);
    assert_int_equal(probe_once(f, port, "/-/healthz", 1000), 0);
    close(fd);
}

static void test_cancel_means_no_callback(void **state)
{
    struct fixture *f = *state;
    /* cancelled before the answer */
    assert_int_equal(health_probe_start(f->probe, f->mhd.port, "/-/healthz", 1000, on_done, f), 0);
    health_probe_cancel(f->probe, true);
    assert_false(health_probe_busy(f->probe));
    assert_false(run_until(f->event, &f->calls, 1, 200 * MSEC));

    /* cancelled with half the answer sent: the connection is not kept, and
     * the other half is taken for no later probe */
    struct raw_server *server = f->raw[0] = raw_server_start(f->event, RAW_CHUNKED_IN_TWO_PARTS);
    assert_int_equal(health_probe_start(f->probe, server->port, "/-/healthz", 1000, on_done, f), 0);
    assert_true(run_until(f->event, &server->requests, 1, 2 * SEC));
    health_probe_cancel(f->probe, true);
    assert_true(run_until(f->event, &server->closed_by_client, 1, 2 * SEC));
    assert_false(run_until(f->event, &f->calls, 1, 50 * MSEC));
    assert_int_equal(probe_once(f, server->port, "/-/healthz", 1000), 200);
    assert_int_equal(server->accepted, 2);

    /* cancelled after a refused connect, whose report was pending */
    int port;
    int fd = loopback_socket(false, &port);
    assert_int_equal(health_probe_start(f->probe, port, "/-/healthz", 1000, on_done, f), 0);
    health_probe_cancel(f->probe, false);
    assert_false(run_until(f->event, &f->calls, 2, 50 * MSEC));
    close(fd);
    assert_int_equal(f->calls, 1);
}

static void test_cancel_when_idle_keeps_or_closes(void **state)
{
    struct fixture *f = *state;
    struct raw_server *server = f->raw[0] = raw_server_start(f->event, RAW_CHUNKED_IN_TWO_PARTS);
    assert_int_equal(probe_once(f, server->port, "/-/healthz", 1000), 200);
    health_probe_cancel(f->probe, true);
    assert_int_equal(probe_once(f, server->port, "/-/healthz", 1000), 200);
    assert_int_equal(server->accepted, 1);
    health_probe_cancel(f->probe, false);
    assert_true(run_until(f->event, &server->closed_by_client, 1, 2 * SEC));
    assert_int_equal(probe_once(f, server->port, "/-/healthz", 1000), 200);
    assert_int_equal(server->accepted, 2);
}

static void test_new_port_closes_the_old_connection(void **state)
{
    struct fixture *f = *state;
    struct raw_server *a = f->raw[0] = raw_server_start(f->event, RAW_CHUNKED_IN_TWO_PARTS);
    struct raw_server *b = f->raw[1] = raw_server_start(f->event, RAW_CHUNKED_IN_TWO_PARTS);
    assert_int_equal(probe_once(f, a->port, "/-/healthz", 1000), 200);
    assert_int_equal(probe_once(f, b->port, "/-/healthz", 1000), 200);
    assert_true(run_until(f->event, &a->closed_by_client, 1, 2 * SEC));
    assert_int_equal(probe_once(f, b->port, "/-/healthz", 1000), 200);
    assert_int_equal(b->accepted, 1);
}

struct freeing {
    struct health_probe *probe;
    int calls;
    long status;
};

static void on_done_free(void *userdata, long status)
{
    struct freeing *freeing = userdata;
    freeing->calls++;
    freeing->status = status;
    health_probe_free(freeing->probe);
    freeing->probe = NULL;
}

/* Frees the probe from its callback, reached from a read, a deadline and a
 * refused connect; ASan and valgrind tell whether anything touched it after. */
static void test_free_inside_the_callback(void **state)
{
    struct fixture *f = *state;
    struct raw_server *silent = f->raw[0] = raw_server_start(f->event, RAW_SILENT);
    int refused_port;
    int fd = loopback_socket(false, &refused_port);
    const struct {
        int port;
        long timeout_ms, status;
    } cases[] = {{f->mhd.port, 1000, 200}, {silent->port, 50, 0}, {refused_port, 1000, 0}};
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct freeing freeing = {health_probe_new(f->group), 0, -1};
        assert_non_null(freeing.probe);
        assert_int_equal(health_probe_start(freeing.probe, cases[i].port, "/-/healthz",
                                            cases[i].timeout_ms, on_done_free, &freeing),
                         0);
        assert_true(run_until(f->event, &freeing.calls, 1, 2 * SEC));
        assert_int_equal(freeing.status, cases[i].status);
        assert_null(freeing.probe);
    }
    close(fd);

    /* freed with a probe in flight: no callback */
    struct health_probe *probe = health_probe_new(f->group);
    assert_non_null(probe);
    assert_int_equal(health_probe_start(probe, f->mhd.port, "/", 1000, on_done, f), 0);
    health_probe_free(probe);
    health_probe_free(NULL);
    health_probe_cancel(NULL, false);
    assert_false(run_until(f->event, &f->calls, 1, 50 * MSEC));
}

/* Probes of one group that free each other's from their callbacks, with
 * many answers arriving together (taken in one dispatch, up to its 64):
 * every probe is answered once, a freed one never. ASan tells whether a
 * freed probe was touched. */
#define MANY 150

struct crowd {
    struct health_probe *probes[MANY];
    int calls[MANY];
    long status[MANY];
    int total;
    bool freeing; /* an even one answered frees the next one */
};

struct member {
    struct crowd *crowd;
    int index;
};

static void on_member_done(void *userdata, long status)
{
    struct member *m = userdata;
    struct crowd *c = m->crowd;
    c->calls[m->index]++;
    c->status[m->index] = status;
    c->total++;
    /* the next one may be answered in this same dispatch */
    int next = m->index + 1;
    if (c->freeing && m->index % 2 == 0 && next < MANY && c->probes[next]) {
        health_probe_free(c->probes[next]);
        c->probes[next] = NULL;
        c->total++;
    }
}

static void test_group_answers_many_and_frees_from_callbacks(void **state)
{
    struct fixture *f = *state;
    static struct crowd crowd;
    static struct member members[MANY];
    memset(&crowd, 0, sizeof(crowd));
    crowd.freeing = true;
    for (int i = 0; i < MANY; i++) {
        members[i] = (struct member){&crowd, i};
        crowd.probes[i] = health_probe_new(f->group);
        assert_non_null(crowd.probes[i]);
        assert_int_equal(health_probe_start(crowd.probes[i], f->mhd.port, "/-/healthz", 5000,
                                            on_member_done, &members[i]),
                         0);
    }
    assert_true(run_until(f->event, &crowd.total, MANY, 10 * SEC));
    int answered = 0;
    for (int i = 0; i < MANY; i++) {
        assert_true(crowd.calls[i] <= 1);
        if (crowd.calls[i]) {
            answered++;
            assert_int_equal(crowd.status[i], 200);
            assert_non_null(crowd.probes[i]);
        } else {
            /* not answered: freed by the one before it, which was */
            assert_true(i % 2 == 1 && crowd.calls[i - 1] == 1 && !crowd.probes[i]);
        }
    }
    assert_true(answered >= MANY / 2);
    /* the kept connections serve a second round */
    crowd.total = 0;
    crowd.freeing = false;
    int expected = 0;
    for (int i = 0; i < MANY; i++) {
        crowd.calls[i] = 0;
        if (!crowd.probes[i])
            continue;
        expected++;
        assert_int_equal(health_probe_start(crowd.probes[i], f->mhd.port, "/-/healthz", 5000,
                                            on_member_done, &members[i]),
                         0);
    }
    assert_true(run_until(f->event, &crowd.total, expected, 10 * SEC));
    for (int i = 0; i < MANY; i++) {
        if (crowd.probes[i]) {
            assert_int_equal(crowd.calls[i], 1);
            assert_int_equal(crowd.status[i], 200);
        }
        health_probe_free(crowd.probes[i]);
    }
    assert_int_equal(atomic_load(&f->mhd.connections), MANY);
}

/* The deadlines of one group's probes: two that pass together, the first
 * one's callback freeing the second (reported never), and a later one
 * reported at its own deadline, not at the others'. */
struct timed {
    struct health_probe *probe, *victim;
    int calls;
    long status;
    uint64_t at;
};

static void on_timed_done(void *userdata, long status)
{
    struct timed *t = userdata;
    t->calls++;
    t->status = status;
    t->at = monotonic_usec();
    if (t->victim) {
        health_probe_free(t->victim);
        t->victim = NULL;
    }
}

static void test_deadlines_of_a_group(void **state)
{
    struct fixture *f = *state;
    struct raw_server *silent = f->raw[0] = raw_server_start(f->event, RAW_SILENT);
    struct timed first = {.probe = health_probe_new(f->group)},
                 second = {.probe = health_probe_new(f->group)},
                 later = {.probe = health_probe_new(f->group)};
    assert_non_null(first.probe);
    assert_non_null(second.probe);
    assert_non_null(later.probe);
    uint64_t started = monotonic_usec();
    assert_int_equal(
        health_probe_start(later.probe, silent->port, "/", 400, on_timed_done, &later), 0);
    assert_int_equal(
        health_probe_start(first.probe, silent->port, "/", 50, on_timed_done, &first), 0);
    assert_int_equal(
        health_probe_start(second.probe, silent->port, "/", 50, on_timed_done, &second), 0);
    /* whichever of the two comes first frees the other */
    first.victim = second.probe;
    second.victim = first.probe;
    assert_true(run_until(f->event, &later.calls, 1, 2 * SEC));
    assert_int_equal(first.calls + second.calls, 1);
    struct timed *reporter = first.calls ? &first : &second;
    assert_int_equal(reporter->status, 0);
    assert_true(reporter->at - started >= 50 * MSEC);
    assert_int_equal(later.calls, 1);
    assert_int_equal(later.status, 0);
    assert_true(later.at - started >= 400 * MSEC);
    health_probe_free(reporter->probe);
    health_probe_free(later.probe);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_reports_200_and_503, setup, teardown),
        cmocka_unit_test_setup_teardown(test_keeps_one_connection_across_probes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_callback_starts_the_next_probe, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refuses_a_second_probe_and_bad_arguments, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_connection_close_answer_closes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_body_until_end_of_file, setup, teardown),
        cmocka_unit_test_setup_teardown(test_chunked_answer_in_two_reads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_interim_answer_is_skipped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_large_body_is_read_to_its_end, setup, teardown),
        cmocka_unit_test_setup_teardown(test_garbage_reports_0, setup, teardown),
        cmocka_unit_test_setup_teardown(test_answer_then_fin, setup, teardown),
        cmocka_unit_test_setup_teardown(test_answer_then_reset, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idle_connection_closed_by_the_server, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_when_the_first_send_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_after_fin_for_the_request, setup, teardown),
        cmocka_unit_test_setup_teardown(test_retry_after_reset_for_the_request, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_retry_reports_0, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout_reports_0, setup, teardown),
        cmocka_unit_test_setup_teardown(test_request_waits_for_a_slow_handshake, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refused_reports_0, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_means_no_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_when_idle_keeps_or_closes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_new_port_closes_the_old_connection, setup, teardown),
        cmocka_unit_test_setup_teardown(test_free_inside_the_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_group_answers_many_and_frees_from_callbacks, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_deadlines_of_a_group, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
