/*
 * status.h - the status document of a service, derived from its rollout
 * state and what the adapters observe: phase (with its meaning), versions
 * with their state, traffic split, capacities, replicas ready/desired per
 * deployment, last error, recent history. Written as
 * STATE_DIR/status/<service>.yaml; the Git status sink writes the same
 * document. Described by schema/status.schema.json.
 */
#ifndef ROLLD_STATUS_H
#define ROLLD_STATUS_H

#include <jansson.h>
#include <stdio.h>

#include "rollout.h"

struct status_deployment_count {
    const char *application;
    const char *deployment;
    int desired, ready;
    /* autoscaling: the bounds at the version's capacity (desired is the
     * autoscaler's choice within them); -1 when the count is fixed */
    int autoscale_min, autoscale_max;
};

struct status_side_view {
    const struct service_spec *spec; /* NULL when the side is empty */
    struct status_deployment_count *counts;
    size_t count;
};

/* The status document (caller decrefs). invalid_error: the current spec
 * file's first error when it does not parse, else NULL. */
json_t *status_document(const struct service_state *state, const struct status_side_view views[2],
                        const char *invalid_error, long long now_ms);

/* A JSON value as block-style YAML (strings double-quoted, JSON-escaped). */
void status_write_yaml(const json_t *doc, FILE *out);

/* The bar of a traffic split, 20 characters: # for the primary, = for the
 * canary ([################====] at 20%); no percentage. */
void status_traffic_bar(int canary_percent, char *out, size_t size);

#endif
