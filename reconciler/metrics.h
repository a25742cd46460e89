/*
 * metrics.h - the agent's Prometheus endpoint: GET /metrics in the text
 * exposition format (version 0.0.4) and GET /healthz, served by libevent's
 * evhttp on a loopback address, on a thread of its own (HTTP/1.1, kept
 * connections, idle ones closed after 10 s).
 *
 * Why libevent and not libmicrohttpd: Debian's libmicrohttpd is built with
 * GnuTLS, and loading it maps GnuTLS, p11-kit, nettle and GMP, 3 MiB of RSS
 * for an endpoint that serves plain HTTP on loopback; libevent costs 0.4 MiB.
 * evhttp runs its own event loop, so it runs on its own thread: the agent's
 * loop records, the thread renders, and the registry is under one mutex
 * (recording takes it for a few hundred nanoseconds; a render of 1,000
 * services for some milliseconds).
 *
 * The agent pushes values as they change; recording never allocates unless a
 * label value changes (a new service, a new version name). Memory is bounded
 * by services x 2 versions. Every recording function accepts m == NULL and
 * then does nothing, so the agent need not test whether metrics are on.
 *
 * Series (sorted by service, then version, so that a scrape is deterministic):
 *   rolld_build_info{version}                        1
 *   rolld_reconcile_duration_seconds                 histogram of reconcile passes
 *   rolld_rollouts_started_total{service}            canaries started
 *   rolld_rollouts_completed_total{service}          canaries promoted
 *   rolld_rollouts_rolled_back_total{service,reason} rollbacks begun, by reason
 *   rolld_service_phase{service,phase}               1 for the current phase, 0 for the 12 others
 *   rolld_traffic_percent{service,version,role}      share of the service's requests
 *   rolld_replicas_desired{service,version,role}     summed over the version's deployments
 *   rolld_replicas_ready{service,version,role}
 *   rolld_source_last_fetch_success_timestamp_seconds  (once a fetch worked)
 *   rolld_source_fetch_failures_total
 * A service's series (its counters too) leave with metrics_service_remove;
 * a version that is no longer given to metrics_service_set leaves at once.
 */
#ifndef ROLLD_METRICS_H
#define ROLLD_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <systemd/sd-event.h>

#include "rollout.h"

struct metrics;

/* Opens the endpoint on listen, "HOST:PORT" (an IPv4 address, [IPv6] or
 * localhost; port 0 picks a free one, see metrics_port) and starts its
 * thread. 0, or a negative errno with a one-line message in err. */
int metrics_open(const char *listen, struct metrics **out, char *err, size_t err_size);
void metrics_free(struct metrics *m);

/* The port it listens on (the one picked when asked for port 0). */
int metrics_port(const struct metrics *m);

/* rolld_build_info{version}; "" until set. */
void metrics_set_build_version(struct metrics *m, const char *version);

/* /healthz answers 503 "starting" until ready, then 200 "ok". */
void metrics_set_ready(struct metrics *m, bool ready);

/* One reconcile pass took this long. */
void metrics_reconcile_observed(struct metrics *m, double seconds);

/* A rollout of service: event "started", "completed" or "rolled_back" (then
 * with reason, a label from metrics_rollback_reason or the free text the
 * rollout engine gave, which is mapped). Other events are ignored. */
void metrics_rollout_event(struct metrics *m, const char *service, const char *event,
                           const char *reason);

/* The short label of a rollback reason of rollout.c ("rollout timed out",
 * "canary unhealthy: ...", ...): manual, start_deadline, unhealthy, timeout,
 * superseded (the spec moved on: a newer version, or back to the primary's)
 * or other. A label is returned as itself. Static text. */
const char *metrics_rollback_reason(const char *text);

#define METRICS_ROLE_PRIMARY "primary"
#define METRICS_ROLE_CANARY "canary"

struct metrics_version {
    const char *version_name; /* the spec's version_name; NULL or "": version_id */
    const char *version_id;   /* the version hash */
    const char *role;         /* METRICS_ROLE_PRIMARY or METRICS_ROLE_CANARY */
    int traffic_percent;
    int replicas_desired;
    int replicas_ready;
};

struct metrics_service {
    const char *name;
    enum service_phase phase;
    size_t version_count; /* 0 to 2 */
    struct metrics_version versions[2];
};

/* Where a service stands now; replaces what was said of it before. */
void metrics_service_set(struct metrics *m, const struct metrics_service *s);
void metrics_service_remove(struct metrics *m, const char *service);

/* The Git source: a fetch worked (wall time, seconds since the epoch), or failed. */
void metrics_fetch_succeeded(struct metrics *m, double unix_time);
void metrics_fetch_failed(struct metrics *m);

/* The /metrics body as it would be served; caller frees. NULL on ENOMEM. */
char *metrics_render(const struct metrics *m, size_t *length);

#endif
