/*
 * compute.h - the compute adapter interface: runs the replicas of each side
 * of each service and says how they are doing. The core never names a
 * backend; it calls through this table (process.c is the embedded default).
 */
#ifndef ROLLD_COMPUTE_H
#define ROLLD_COMPUTE_H

#include <jansson.h>
#include <stddef.h>

#include "policy.h"
#include "rollout.h"
#include "spec.h"
#include "state.h"

#define COMPUTE_ADAPTER_VERSION 1

enum endpoint_state { ENDPOINT_READY, ENDPOINT_DRAIN, ENDPOINT_MAINT };

struct endpoint {
    int port;
    enum endpoint_state state;
};

struct compute_adapter {
    int version;
    const char *name;
    void *instance;
    /* Moves one side of a service toward spec at capacity percent (0 stops
     * it). spec NULL with capacity 0 stops whatever the side runs. */
    int (*sync)(void *instance, const char *service, int side, const struct service_spec *spec,
                int capacity, const struct policy *policy);
    void (*observe)(void *instance, const char *service, int side,
                    const struct service_spec *spec, int capacity, struct side_observation *out);
    /* Ready replicas of one deployment among its first `wanted` (those that count). */
    int (*count_ready)(void *instance, const char *service, int side, const char *application,
                       const char *deployment, int wanted);
    /* Endpoints of the ingress deployment of one application; returns the count. */
    size_t (*endpoints)(void *instance, const char *service, int side, const char *application,
                        struct endpoint *out, size_t max);
    /* Starts the replicas that sync() recorded; call after the state is saved. */
    int (*launch_pending)(void *instance);
    /* What the adapter keeps across restarts, as JSON text (an array)
     * written into the agent's state file, which hands it back to the
     * adapter on the next start. 0, or -ENOMEM (nothing is saved then). */
    int (*state_write)(void *instance, struct state_writer *w);
    void (*free)(void *instance);
};

#endif
