#include "http_client.h"

/* plain prototypes, not curl's type-checking macros: the calls go through
 * the table below */
#define CURL_DISABLE_TYPECHECK
#include <curl/curl.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <syslog.h>

#include "lazy_lib.h"
#include "log.h"

/* libcurl (and OpenSSL, Kerberos, LDAP... which it pulls in) is opened by the
 * first http_client_new(), not at start. */
#define CURL_FUNCTIONS(X)                                                                          \
    X(curl_easy_cleanup)                                                                           \
    X(curl_easy_getinfo)                                                                           \
    X(curl_easy_init)                                                                              \
    X(curl_easy_setopt)                                                                            \
    X(curl_global_init)                                                                            \
    X(curl_multi_add_handle)                                                                       \
    X(curl_multi_assign)                                                                           \
    X(curl_multi_cleanup)                                                                          \
    X(curl_multi_info_read)                                                                        \
    X(curl_multi_init)                                                                             \
    X(curl_multi_remove_handle)                                                                    \
    X(curl_multi_setopt)                                                                           \
    X(curl_multi_socket_action)                                                                    \
    X(curl_slist_append)                                                                           \
    X(curl_slist_free_all)
#define CURL_SLOT(f) __typeof__(f) *f;
static struct {
    CURL_FUNCTIONS(CURL_SLOT)
} curl;
#undef CURL_SLOT

static int curl_init(char *err, size_t err_size)
{
    if (curl.curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK)
        return 0;
    snprintf(err, err_size, "libcurl cannot be initialised");
    return -EIO;
}

/* 0 once libcurl is open and initialised; negative when it cannot be */
static int curl_load(void)
{
#define CURL_SYMBOL(f) {#f, (void **)&curl.f},
    static const struct lazy_symbol symbols[] = {CURL_FUNCTIONS(CURL_SYMBOL)};
#undef CURL_SYMBOL
    static struct lazy_lib libcurl = LAZY_LIB(ROLLD_CURL_SONAME, symbols, curl_init);
    bool first = libcurl.status > 0;
    char error[256];
    int r = lazy_lib_load(&libcurl, error, sizeof(error));
    if (r < 0 && first) /* said once */
        log_msg(LOG_ERR, "http client: %s", error);
    return r;
}

/* curl.h makes these three function-like macros of themselves */
#undef curl_easy_getinfo
#undef curl_easy_setopt
#undef curl_multi_setopt
#define curl_easy_cleanup (*curl.curl_easy_cleanup)
#define curl_easy_getinfo (*curl.curl_easy_getinfo)
#define curl_easy_init (*curl.curl_easy_init)
#define curl_easy_setopt (*curl.curl_easy_setopt)
#define curl_multi_add_handle (*curl.curl_multi_add_handle)
#define curl_multi_assign (*curl.curl_multi_assign)
#define curl_multi_cleanup (*curl.curl_multi_cleanup)
#define curl_multi_info_read (*curl.curl_multi_info_read)
#define curl_multi_init (*curl.curl_multi_init)
#define curl_multi_remove_handle (*curl.curl_multi_remove_handle)
#define curl_multi_setopt (*curl.curl_multi_setopt)
#define curl_multi_socket_action (*curl.curl_multi_socket_action)
#define curl_slist_append (*curl.curl_slist_append)
#define curl_slist_free_all (*curl.curl_slist_free_all)

struct http_client {
    sd_event *event;
    CURLM *multi;
    sd_event_source *timer;
};

struct http_request {
    CURL *easy;
    struct curl_slist *headers;
    char *body;
    http_done_fn done;
    void *userdata;
};

struct socket_watch {
    sd_event_source *source;
};

static void check_finished(struct http_client *client)
{
    CURLMsg *message;
    int left;
    while ((message = curl_multi_info_read(client->multi, &left))) {
        if (message->msg != CURLMSG_DONE)
            continue;
        CURL *easy = message->easy_handle;
        struct http_request *request = NULL;
        curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&request);
        long status = 0;
        if (message->data.result == CURLE_OK)
            curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
        curl_multi_remove_handle(client->multi, easy);
        http_done_fn done = request->done;
        void *userdata = request->userdata;
        curl_easy_cleanup(easy);
        curl_slist_free_all(request->headers);
        free(request->body);
        free(request);
        if (done)
            done(userdata, status);
    }
}

static int on_socket_event(sd_event_source *source, int fd, uint32_t revents, void *userdata)
{
    struct http_client *client = userdata;
    int action = 0, running;
    if (revents & EPOLLIN)
        action |= CURL_CSELECT_IN;
    if (revents & EPOLLOUT)
        action |= CURL_CSELECT_OUT;
    if (revents & (EPOLLERR | EPOLLHUP))
        action |= CURL_CSELECT_ERR;
    curl_multi_socket_action(client->multi, fd, action, &running);
    check_finished(client);
    return 0;
}

static int on_timer(sd_event_source *source, uint64_t usec, void *userdata)
{
    struct http_client *client = userdata;
    int running;
    curl_multi_socket_action(client->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    check_finished(client);
    return 0;
}

static int socket_callback(CURL *easy, curl_socket_t fd, int what, void *userdata,
                           void *socket_data)
{
    struct http_client *client = userdata;
    struct socket_watch *watch = socket_data;
    if (what == CURL_POLL_REMOVE) {
        if (watch) {
            sd_event_source_disable_unref(watch->source);
            free(watch);
            curl_multi_assign(client->multi, fd, NULL);
        }
        return 0;
    }
    uint32_t events = 0;
    if (what & CURL_POLL_IN)
        events |= EPOLLIN;
    if (what & CURL_POLL_OUT)
        events |= EPOLLOUT;
    if (!watch) {
        watch = calloc(1, sizeof(*watch));
        if (!watch)
            return -1;
        if (sd_event_add_io(client->event, &watch->source, fd, events, on_socket_event, client) <
            0) {
            free(watch);
            return -1;
        }
        curl_multi_assign(client->multi, fd, watch);
    } else {
        sd_event_source_set_io_events(watch->source, events);
    }
    return 0;
}

static int timer_callback(CURLM *multi, long timeout_ms, void *userdata)
{
    struct http_client *client = userdata;
    if (timeout_ms < 0) {
        sd_event_source_set_enabled(client->timer, SD_EVENT_OFF);
        return 0;
    }
    uint64_t now;
    sd_event_now(client->event, CLOCK_MONOTONIC, &now);
    sd_event_source_set_time(client->timer, now + (uint64_t)timeout_ms * 1000);
    sd_event_source_set_enabled(client->timer, SD_EVENT_ONESHOT);
    return 0;
}

struct http_client *http_client_new(sd_event *event)
{
    if (curl_load() < 0)
        return NULL;
    struct http_client *client = calloc(1, sizeof(*client));
    if (!client)
        return NULL;
    client->event = sd_event_ref(event);
    client->multi = curl_multi_init();
    if (!client->multi ||
        sd_event_add_time(event, &client->timer, CLOCK_MONOTONIC, UINT64_MAX, 1000, on_timer,
                          client) < 0) {
        http_client_free(client);
        return NULL;
    }
    sd_event_source_set_enabled(client->timer, SD_EVENT_OFF);
    curl_multi_setopt(client->multi, CURLMOPT_SOCKETFUNCTION, socket_callback);
    curl_multi_setopt(client->multi, CURLMOPT_SOCKETDATA, client);
    curl_multi_setopt(client->multi, CURLMOPT_TIMERFUNCTION, timer_callback);
    curl_multi_setopt(client->multi, CURLMOPT_TIMERDATA, client);
    return client;
}

void http_client_free(struct http_client *client)
{
    if (!client)
        return;
    if (client->multi)
        curl_multi_cleanup(client->multi);
    sd_event_source_disable_unref(client->timer);
    sd_event_unref(client->event);
    free(client);
}

static size_t discard_body(char *data, size_t size, size_t count, void *userdata)
{
    return size * count;
}

struct http_request *http_client_start(struct http_client *client, const char *url,
                                       const char *body, long timeout_ms, http_done_fn done,
                                       void *userdata)
{
    struct http_request *request = calloc(1, sizeof(*request));
    if (!request)
        return NULL;
    request->easy = curl_easy_init();
    request->done = done;
    request->userdata = userdata;
    if (!request->easy) {
        free(request);
        return NULL;
    }
    CURL *easy = request->easy;
    curl_easy_setopt(easy, CURLOPT_URL, url);
    curl_easy_setopt(easy, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt(easy, CURLOPT_CONNECTTIMEOUT_MS, timeout_ms);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_PRIVATE, request);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, discard_body);
    curl_easy_setopt(easy, CURLOPT_FORBID_REUSE, 1L);
    curl_easy_setopt(easy, CURLOPT_PROXY, "");
    if (body) {
        request->body = strdup(body);
        request->headers = curl_slist_append(NULL, "Content-Type: application/json");
        curl_easy_setopt(easy, CURLOPT_HTTPHEADER, request->headers);
        curl_easy_setopt(easy, CURLOPT_POSTFIELDS, request->body);
    }
    if (curl_multi_add_handle(client->multi, easy) != CURLM_OK) {
        curl_easy_cleanup(easy);
        curl_slist_free_all(request->headers);
        free(request->body);
        free(request);
        return NULL;
    }
    return request;
}

void http_request_cancel(struct http_client *client, struct http_request *request)
{
    if (!request)
        return;
    curl_multi_remove_handle(client->multi, request->easy);
    curl_easy_cleanup(request->easy);
    curl_slist_free_all(request->headers);
    free(request->body);
    free(request);
}
