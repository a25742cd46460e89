/*
 * http_client.h - asynchronous HTTP requests (libcurl's multi interface)
 * driven by an sd-event loop: health checks and reconfigure calls to
 * replicas never block the agent.
 */
#ifndef ROLLD_HTTP_CLIENT_H
#define ROLLD_HTTP_CLIENT_H

#include <stdbool.h>
#include <systemd/sd-event.h>

struct http_client;
struct http_request;

/* status: the HTTP status, or 0 when the request failed (refused, timeout). */
typedef void (*http_done_fn)(void *userdata, long status);

struct http_client *http_client_new(sd_event *event);
void http_client_free(struct http_client *client);

/* Starts a GET (body NULL) or a POST of body (JSON). The callback runs once,
 * from the loop, unless the request is cancelled first. */
struct http_request *http_client_start(struct http_client *client, const char *url,
                                       const char *body, long timeout_ms, http_done_fn done,
                                       void *userdata);
void http_request_cancel(struct http_client *client, struct http_request *request);

#endif
