/*
 * server.h - the HTTP side of model-server on libmicrohttpd.
 *
 * Every path but two is an inference request answered with the replica's identity as JSON; the
 * health path answers "ok" or 503 following the fault options; the reconfigure path swaps
 * user_config in memory. Each connection gets its own thread, so added latency on one request
 * never delays another. The server never prints except per request under --verbose, and never
 * exits: when --crash-after-requests is due it calls `on_crash_due` and leaves the exit to main.
 */
#ifndef MODEL_SERVER_SERVER_H
#define MODEL_SERVER_SERVER_H

#include <stddef.h>

#include <jansson.h>

#include "options.h"

struct server;

/* Called from a connection thread once the last allowed inference request has been answered. */
typedef void (*server_crash_fn)(void);

/* Takes ownership of `user_config`. `started_at` is the process start on clock_now_seconds()'s
 * clock; the fault times count from it. Returns NULL when out of memory. Free with server_free. */
struct server *server_new(const struct options *options, const struct identity *identity,
                          json_t *user_config, double started_at, server_crash_fn on_crash_due);

/* Binds and starts serving. Returns 0, or -1 with a one-line message in `error`. */
int server_listen(struct server *server, char *error, size_t error_size);

/* The port actually bound (useful with --port 0). */
unsigned server_port(const struct server *server);

/* Closes the listening socket; connections already open are still served, and their responses
 * ask the client to close. */
void server_stop_accepting(struct server *server);

/* Requests that have started and not yet been completed or abandoned. */
unsigned long server_requests_in_flight(const struct server *server);
/* Open connections, idle keep-alive ones included. */
unsigned long server_connections_open(const struct server *server);
/* Inference requests received so far. */
unsigned long server_requests_served(const struct server *server);

/* Stops the daemon (waiting for its threads) and frees. Accepts NULL. */
void server_free(struct server *server);

/* Seconds on CLOCK_MONOTONIC. */
double clock_now_seconds(void);

#endif
