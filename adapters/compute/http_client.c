#include "http_client.h"

#include <curl/curl.h>
#include <stdlib.h>
#include <string.h>

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
    static bool initialized;
    if (!initialized) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
        initialized = true;
    }
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
