#include "autoscale.h"

#include <math.h>

void autoscale_init(struct autoscale_state *state, const struct deployment_spec *d)
{
    state->replicas = d->initial_replicas;
    state->up_since_ms = state->down_since_ms = 0;
}

bool autoscale_decide(struct autoscale_state *state, const struct autoscale_bounds *bounds,
                      double target_ongoing, double ongoing, int capacity, long long delay_up_ms,
                      long long delay_down_ms, long long now_ms)
{
    if (capacity <= 0 || target_ongoing <= 0)
        return false;
    /* replicas at this capacity for the load, then back to steady state */
    double needed_here = ceil(ongoing / target_ongoing - 1e-9);
    int wanted = (int)ceil(needed_here * 100.0 / capacity - 1e-9);
    int low = bounds->min_replicas > bounds->floor ? bounds->min_replicas : bounds->floor;
    if (wanted < low)
        wanted = low;
    if (wanted > bounds->max_replicas)
        wanted = bounds->max_replicas;
    if (state->replicas < low || state->replicas > bounds->max_replicas) {
        /* new bounds apply at once */
        state->replicas = state->replicas < low ? low : bounds->max_replicas;
        state->up_since_ms = state->down_since_ms = 0;
        return true;
    }
    if (wanted > state->replicas) {
        state->down_since_ms = 0;
        if (!state->up_since_ms)
            state->up_since_ms = now_ms;
        if (now_ms - state->up_since_ms >= delay_up_ms) {
            state->replicas = wanted;
            state->up_since_ms = 0;
            return true;
        }
        return false;
    }
    if (wanted < state->replicas) {
        state->up_since_ms = 0;
        if (!state->down_since_ms)
            state->down_since_ms = now_ms;
        if (now_ms - state->down_since_ms >= delay_down_ms) {
            state->replicas = wanted;
            state->down_since_ms = 0;
            return true;
        }
        return false;
    }
    state->up_since_ms = state->down_since_ms = 0;
    return false;
}
