/*
 * health_probe.h - the health check of one replica: GET path on
 * 127.0.0.1:port over one HTTP/1.1 connection that stays open between
 * probes, driven by an sd-event loop. Made for many replicas, where libcurl
 * costs too much: no work walks the other replicas' connections, and a
 * probe on a kept connection allocates nothing. Responses are parsed by
 * http-parser; their bodies are read and dropped.
 *
 * A probe whose kept connection turns out closed by the server (end of
 * file, reset, broken pipe before any byte of the response) is sent again,
 * once, on a new connection; a new connection that fails reports status 0.
 * With no probe in flight, a kept connection that the server closes or
 * that receives bytes nobody asked for is closed quietly.
 *
 * The probes of a group share one epoll instance, watched by one sd-event
 * source: the answers that came while the loop was busy are all taken in
 * one dispatch, where a source per connection cost a loop iteration (and
 * its system calls) per answer.
 */
#ifndef ROLLD_HEALTH_PROBE_H
#define ROLLD_HEALTH_PROBE_H

#include <stdbool.h>
#include <systemd/sd-event.h>

struct health_probe;       /* one per replica: its kept-alive connection */
struct health_probe_group; /* the probes of one loop */

/* status: the HTTP status of the response, or 0 when no response came
 * (refused, reset, timeout, unparsable). */
typedef void (*health_probe_done_fn)(void *userdata, long status);

/* NULL when out of memory or descriptors. */
struct health_probe_group *health_probe_group_new(sd_event *event);
/* Once its probes are freed; NULL is fine. */
void health_probe_group_free(struct health_probe_group *g);

/* NULL when out of memory. */
struct health_probe *health_probe_new(struct health_probe_group *g);

/* Starts GET path on 127.0.0.1:port; a port other than the last probe's
 * closes the old connection first. done is called exactly once, from the
 * loop (never from inside this call), unless the probe is cancelled; it may
 * start the next probe, cancel or free p. A replica that cannot be reached
 * is reported through done. Returns 0, or (done is not called then):
 * -EBUSY if a probe is in flight; -EINVAL for a bad port, a timeout_ms
 * outside 0..INT32_MAX, or a path that is not "/..." free of spaces and
 * control characters; -ENAMETOOLONG for a path over some 400 bytes; or
 * -errno when this process lacks descriptors or memory. */
int health_probe_start(struct health_probe *p, int port, const char *path, long timeout_ms,
                       health_probe_done_fn done, void *userdata);

bool health_probe_busy(const struct health_probe *p);

/* Abandons the probe in flight: done is not called. keep_connection false
 * also closes the connection (use it when the replica died or is stopped).
 * An abandoned probe closes its connection whatever keep_connection says:
 * the late answer to its request must not be taken for the next probe's. */
void health_probe_cancel(struct health_probe *p, bool keep_connection);

/* Cancels and closes; NULL is fine. */
void health_probe_free(struct health_probe *p);

#endif
