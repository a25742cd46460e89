/*
 * autoscale.h - the autoscaling decision for one deployment of one version
 * (the process backend's autoscaler; Ray Serve does its own).
 *
 * From the requests in flight that the router reports for the deployment,
 * the wanted replica count is ceil(ongoing / target_ongoing_requests),
 * expressed in steady-state replicas so that the version's capacity percent
 * scales it like any other count, and kept within min_replicas..max_replicas
 * (and, for a canary, at least initial_replicas until the rollout ends). A
 * change must persist for upscale_delay_s (up) or downscale_delay_s (down)
 * before it is taken. Pure: the caller passes the time.
 */
#ifndef ROLLD_AUTOSCALE_H
#define ROLLD_AUTOSCALE_H

#include <stdbool.h>

#include "spec.h"

struct autoscale_state {
    int replicas;           /* steady-state replicas now asked for */
    long long up_since_ms;  /* since when more were wanted, 0: not */
    long long down_since_ms;
};

struct autoscale_bounds {
    int min_replicas, max_replicas; /* steady state */
    int floor;                      /* e.g. the canary's initial_replicas; 0: none */
};

/* Starts a deployment at its initial count. */
void autoscale_init(struct autoscale_state *state, const struct deployment_spec *d);

/* Returns true when state->replicas changed. delay_up_ms/delay_down_ms come
 * from the spec's upscale_delay_s/downscale_delay_s. */
bool autoscale_decide(struct autoscale_state *state, const struct autoscale_bounds *bounds,
                      double target_ongoing, double ongoing, int capacity, long long delay_up_ms,
                      long long delay_down_ms, long long now_ms);

#endif
