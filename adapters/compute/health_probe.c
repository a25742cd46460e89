#include "health_probe.h"

#include <errno.h>
#include <http_parser.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

/* Room for the request line and headers with a path of some 400 bytes. */
#define REQUEST_MAX 512

/* answers taken per epoll_wait: more stay ready and come at the next
 * iteration of the loop */
#define GROUP_EVENTS 64

struct health_probe_group {
    sd_event *event;
    sd_event_source *source; /* the epoll instance, readable while a connection has news */
    int epoll_fd;
    /* the probes in flight, oldest first, and one timer for their
     * deadlines: set no later than the earliest (moved only earlier as
     * probes start; set again when it fires), where a timer made and
     * freed for each probe cost an allocation and four heap operations */
    struct health_probe *first, *last;
    sd_event_source *deadline;
    uint64_t armed;             /* when deadline fires; 0: off */
    bool dispatching;           /* frees wait until the dispatch ends */
    struct health_probe *freed; /* freed during the dispatch: a list through next_freed */
};

struct health_probe {
    struct health_probe_group *group;
    uint64_t deadline;                /* of the probe in flight */
    struct health_probe *prev, *next; /* in the group's list while in flight */
    bool expired;                     /* its deadline passed; reported by on_deadline() */
    uint32_t events;                  /* what the group's epoll watches on fd */
    int fd;                           /* the connection, -1 when closed */
    int port;                         /* the port it goes to */
    health_probe_done_fn done;        /* set while a probe is in flight */
    void *userdata;
    bool reused;           /* the probe began on a connection an earlier probe left open */
    bool response_started; /* a byte of the response came */
    bool keep_alive;       /* the response lets the connection serve the next probe */
    long status;           /* of the complete response, 0 until it is complete */
    size_t request_length, request_sent;
    int request_port; /* the port request names */
    http_parser parser;
    char *request; /* sized to it: a host keeps one prober per replica */
    size_t request_capacity;
    struct health_probe *next_freed;
};

static int on_message_complete(http_parser *parser)
{
    struct health_probe *p = parser->data;
    if (parser->status_code < 200)
        return 0; /* an interim answer (100 Continue): the real one follows */
    p->status = parser->status_code;
    p->keep_alive = http_should_keep_alive(parser);
    /* http_parser_execute stops after this response: any byte past it was
     * not asked for, and the connection is not kept. */
    http_parser_pause(parser, 1);
    return 0;
}

static const http_parser_settings parser_settings = {
    .on_message_complete = on_message_complete,
};

static void connection_close(struct health_probe *p)
{
    if (p->fd < 0)
        return;
    (void)epoll_ctl(p->group->epoll_fd, EPOLL_CTL_DEL, p->fd, NULL);
    close(p->fd);
    p->fd = -1;
}

/* p leaves the group's list of probes in flight */
static void in_flight_remove(struct health_probe *p)
{
    struct health_probe_group *g = p->group;
    if (!p->done)
        return; /* not in the list */
    if (p->prev)
        p->prev->next = p->next;
    else if (g->first == p)
        g->first = p->next;
    if (p->next)
        p->next->prev = p->prev;
    else if (g->last == p)
        g->last = p->prev;
    p->prev = p->next = NULL;
    p->expired = false;
}

static void deadline_arm(struct health_probe_group *g, uint64_t at)
{
    if (g->armed && g->armed <= at)
        return;
    g->armed = at;
    sd_event_source_set_time(g->deadline, at);
    sd_event_source_set_enabled(g->deadline, SD_EVENT_ONESHOT);
}

/* Reports status with p ready for the next probe, since done may start the
 * next probe, cancel or free p: callers touch nothing of p afterwards. */
static void probe_finish(struct health_probe *p, long status, bool keep_connection)
{
    health_probe_done_fn done = p->done;
    void *userdata = p->userdata;
    in_flight_remove(p);
    p->done = NULL;
    p->userdata = NULL;
    if (!keep_connection)
        connection_close(p);
    done(userdata, status);
}

/* Edge-triggered: sd-event dispatches one source per iteration, and a
 * level-triggered fd still unread is polled again by every epoll_wait in
 * between, which makes a burst of n answers cost n^2 polls. */
static int connection_watch(struct health_probe *p, uint32_t events)
{
    events |= EPOLLET;
    if (events == p->events)
        return 0; /* asking epoll again would cost a system call */
    struct epoll_event change = {.events = events, .data.ptr = p};
    if (epoll_ctl(p->group->epoll_fd, EPOLL_CTL_MOD, p->fd, &change) < 0)
        return -errno;
    p->events = events;
    return 0;
}

/* The handshake may still be under way when this returns; a refused
 * connection shows at the first send. */
static int connection_open(struct health_probe *p, int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    /* the request is one small write: no reason to wait for an ACK */
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct sockaddr_in address = {
        .sin_family = AF_INET,
        .sin_port = htons((uint16_t)port),
        .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
    };
    if (connect(fd, (struct sockaddr *)&address, sizeof(address)) < 0 && errno != EINPROGRESS) {
        int r = -errno;
        close(fd);
        return r;
    }
    p->events = EPOLLOUT | EPOLLET;
    struct epoll_event watch = {.events = p->events, .data.ptr = p};
    if (epoll_ctl(p->group->epoll_fd, EPOLL_CTL_ADD, fd, &watch) < 0) {
        int r = -errno;
        close(fd);
        return r;
    }
    p->fd = fd;
    p->port = port;
    return 0;
}

/* Writes what the socket takes of the rest of the request, and watches for
 * room for more or for the response. */
static int request_send(struct health_probe *p)
{
    while (p->request_sent < p->request_length) {
        ssize_t n = send(p->fd, p->request + p->request_sent, p->request_length - p->request_sent,
                         MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return connection_watch(p, EPOLLOUT);
        if (n < 0)
            return -errno;
        p->request_sent += (size_t)n;
    }
    /* EPOLLRDHUP too: the watch stays as it is while the connection is idle */
    return connection_watch(p, EPOLLIN | EPOLLRDHUP);
}

/* Sends the request on the kept connection, or on a new one when there is
 * none. */
static int probe_send(struct health_probe *p, int port)
{
    if (p->fd < 0) {
        int r = connection_open(p, port);
        if (r < 0)
            return r;
        p->request_sent = 0;
    }
    return request_send(p);
}

/* A kept connection the server closed while no probe was looking fails at
 * the first send or read. Like curl, try such a request again, once, on a
 * new connection. error is 0 for end of file. */
static bool probe_may_retry(const struct health_probe *p, int error)
{
    return p->reused && !p->response_started &&
           (error == 0 || error == -EPIPE || error == -ECONNRESET);
}

/* Within the loop: no response on this connection. */
static void probe_fail(struct health_probe *p, int error)
{
    bool retry = probe_may_retry(p, error);
    connection_close(p);
    if (retry) {
        p->reused = false;
        if (probe_send(p, p->port) >= 0)
            return;
    }
    probe_finish(p, 0, false);
}

static void response_receive(struct health_probe *p, uint32_t revents)
{
    /* The server's FIN or an error came with this edge: no later edge will
     * tell of it, so read to the end, and do not keep the connection. */
    bool closing = revents & (EPOLLRDHUP | EPOLLHUP | EPOLLERR);
    char buffer[4096];
    for (;;) {
        ssize_t n = recv(p->fd, buffer, sizeof(buffer), 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n < 0 || (n == 0 && !p->response_started)) {
            probe_fail(p, n < 0 ? -errno : 0);
            return;
        }
        p->response_started = true;
        /* at end of file (n == 0) this completes a response whose body ends
         * with the connection, and fails any other */
        size_t parsed = http_parser_execute(&p->parser, &parser_settings, buffer, (size_t)n);
        if (p->status) {
            probe_finish(p, p->status, p->keep_alive && !closing && n > 0 && parsed == (size_t)n);
            return;
        }
        if (n == 0 || HTTP_PARSER_ERRNO(&p->parser) != HPE_OK) {
            probe_finish(p, 0, false);
            return;
        }
        /* a short read left the socket empty: what comes next is a new edge */
        if ((size_t)n < sizeof(buffer) && !closing)
            return;
    }
}

/* An event of a dispatch may be older than the connection it finds: one
 * closed and opened again by a callback earlier in the same dispatch. So
 * an event only starts what the socket itself then confirms. */
static void on_connection_event(struct health_probe *p, uint32_t revents)
{
    if (p->fd < 0)
        return;
    if (!p->done) {
        /* idle: the server closed the connection, or sent what was not asked for */
        char byte;
        ssize_t n = recv(p->fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        connection_close(p);
        return;
    }
    if (p->request_sent < p->request_length) {
        int r = request_send(p);
        if (r < 0)
            probe_fail(p, r);
        return;
    }
    response_receive(p, revents);
}

static void probe_release(struct health_probe *p);

/* releases the probes freed during a dispatch */
static void dispatch_end(struct health_probe_group *g)
{
    g->dispatching = false;
    while (g->freed) {
        struct health_probe *p = g->freed;
        g->freed = p->next_freed;
        probe_release(p);
    }
}

static int on_group_event(sd_event_source *source, int fd, uint32_t revents, void *userdata)
{
    struct health_probe_group *g = userdata;
    struct epoll_event events[GROUP_EVENTS];
    int n = epoll_wait(g->epoll_fd, events, GROUP_EVENTS, 0);
    g->dispatching = true;
    /* a probe freed by a callback of this dispatch is released after it:
     * its events here find it closed */
    for (int i = 0; i < n; i++)
        on_connection_event(events[i].data.ptr, events[i].events);
    dispatch_end(g);
    return 0;
}

static int on_deadline(sd_event_source *source, uint64_t usec, void *userdata)
{
    struct health_probe_group *g = userdata;
    g->armed = 0;
    uint64_t now;
    sd_event_now(g->event, CLOCK_MONOTONIC, &now);
    /* marked first, reported after: a callback may start, cancel or free
     * any probe, and a probe started again is no longer expired */
    for (struct health_probe *p = g->first; p; p = p->next)
        p->expired = p->deadline <= now;
    g->dispatching = true;
    for (struct health_probe *p = g->first; p;) {
        if (!p->expired) {
            p = p->next;
            continue;
        }
        probe_finish(p, 0, false);
        /* the list may have changed under the callback: start again from
         * the first probe still marked (each one is reported once) */
        p = g->first;
    }
    uint64_t earliest = 0;
    for (struct health_probe *p = g->first; p; p = p->next)
        if (!earliest || p->deadline < earliest)
            earliest = p->deadline;
    if (earliest)
        deadline_arm(g, earliest);
    dispatch_end(g);
    return 0;
}

struct health_probe_group *health_probe_group_new(sd_event *event)
{
    struct health_probe_group *g = calloc(1, sizeof(*g));
    if (!g)
        return NULL;
    g->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    if (g->epoll_fd < 0 ||
        sd_event_add_io(event, &g->source, g->epoll_fd, EPOLLIN, on_group_event, g) < 0 ||
        sd_event_add_time(event, &g->deadline, CLOCK_MONOTONIC, UINT64_MAX, 1000, on_deadline, g) <
            0) {
        sd_event_source_disable_unref(g->source);
        if (g->epoll_fd >= 0)
            close(g->epoll_fd);
        free(g);
        return NULL;
    }
    sd_event_source_set_enabled(g->deadline, SD_EVENT_OFF);
    g->event = sd_event_ref(event);
    return g;
}

void health_probe_group_free(struct health_probe_group *g)
{
    if (!g)
        return;
    sd_event_source_disable_unref(g->source);
    sd_event_source_disable_unref(g->deadline);
    close(g->epoll_fd);
    sd_event_unref(g->event);
    free(g);
}

struct health_probe *health_probe_new(struct health_probe_group *g)
{
    struct health_probe *p = calloc(1, sizeof(*p));
    if (!p)
        return NULL;
    p->fd = -1;
    p->group = g;
    return p;
}

/* A path goes into the request line as it is: it must not break it. */
static bool path_is_valid(const char *path)
{
    if (path[0] != '/')
        return false;
    for (const unsigned char *c = (const unsigned char *)path; *c; c++)
        if (*c <= ' ' || *c == 0x7f)
            return false;
    return true;
}

/* Failures of this process rather than of the replica: the caller hears of
 * them at once instead of as an unhealthy replica. */
static bool error_is_local(int error)
{
    return error == -EMFILE || error == -ENFILE || error == -ENOMEM || error == -ENOBUFS;
}

int health_probe_start(struct health_probe *p, int port, const char *path, long timeout_ms,
                       health_probe_done_fn done, void *userdata)
{
    if (!p || !path || !done || port <= 0 || port > 65535 || timeout_ms < 0 ||
        timeout_ms > INT32_MAX)
        return -EINVAL;
    if (p->done)
        return -EBUSY;
    if (!path_is_valid(path))
        return -EINVAL;
    /* a replica is asked the same thing each time: the last request is
     * written again only for another path or port */
    size_t path_length = strlen(path);
    if (port != p->request_port || p->request_length < 4 + path_length + 1 ||
        memcmp(p->request + 4, path, path_length) != 0 || p->request[4 + path_length] != ' ') {
        char request[REQUEST_MAX];
        int length = snprintf(request, sizeof(request),
                              "GET %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUser-Agent: rolld\r\n"
                              "Accept: */*\r\n\r\n",
                              path, port);
        if (length < 0 || (size_t)length >= sizeof(request))
            return -ENAMETOOLONG;
        if ((size_t)length > p->request_capacity) {
            char *grown = realloc(p->request, (size_t)length);
            if (!grown)
                return -ENOMEM;
            p->request = grown;
            p->request_capacity = (size_t)length;
        }
        memcpy(p->request, request, (size_t)length);
        p->request_length = (size_t)length;
        p->request_port = port;
    }
    if (p->fd >= 0 && p->port != port)
        connection_close(p);
    p->request_sent = 0;
    p->reused = p->fd >= 0;
    p->response_started = false;
    p->keep_alive = false;
    p->status = 0;
    http_parser_init(&p->parser, HTTP_RESPONSE);
    p->parser.data = p;

    int r = probe_send(p, port);
    if (r < 0 && probe_may_retry(p, r)) {
        connection_close(p);
        p->reused = false;
        r = probe_send(p, port);
    }
    if (r < 0) {
        connection_close(p);
        if (error_is_local(r))
            return r;
    }
    uint64_t now;
    sd_event_now(p->group->event, CLOCK_MONOTONIC, &now);
    /* A probe that failed already is reported as a deadline passed: from the
     * loop, never from inside this call. */
    p->deadline = r < 0 ? now : now + (uint64_t)timeout_ms * 1000;
    p->done = done;
    p->userdata = userdata;
    p->expired = false;
    struct health_probe_group *g = p->group;
    p->prev = g->last;
    p->next = NULL;
    if (g->last)
        g->last->next = p;
    else
        g->first = p;
    g->last = p;
    deadline_arm(g, p->deadline);
    return 0;
}

bool health_probe_busy(const struct health_probe *p)
{
    return p && p->done;
}

void health_probe_cancel(struct health_probe *p, bool keep_connection)
{
    if (!p)
        return;
    if (p->done) {
        in_flight_remove(p);
        p->done = NULL;
        p->userdata = NULL;
        keep_connection = false;
    }
    if (!keep_connection)
        connection_close(p);
}

static void probe_release(struct health_probe *p)
{
    free(p->request);
    free(p);
}

void health_probe_free(struct health_probe *p)
{
    if (!p)
        return;
    health_probe_cancel(p, false);
    /* an event of the dispatch under way may still name it: freed after */
    struct health_probe_group *g = p->group;
    if (g->dispatching) {
        p->next_freed = g->freed;
        g->freed = p;
        return;
    }
    probe_release(p);
}
