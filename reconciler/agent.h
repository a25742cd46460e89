/*
 * agent.h - `rolld run`: the event loop that watches the source, observes
 * the adapters and moves every service one idempotent step at a time,
 * persisting the state before and after each step.
 */
#ifndef ROLLD_AGENT_H
#define ROLLD_AGENT_H

#include "inventory.h"

struct agent_options {
    const char *source;
    const char *state_dir;
    const char *policies_dir;
    const char *haproxy_binary;
    const char *pin_header;
    int port_min, port_max;
    int debounce_ms;
    struct inventory inventory; /* declared: rollouts are checked against it */
};

int agent_run(const struct agent_options *options);

#endif
