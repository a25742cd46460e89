/*
 * agent.h - `rolld run`: the event loop that watches the source, observes
 * the adapters and moves every service one idempotent step at a time,
 * persisting the state before and after each step.
 */
#ifndef ROLLD_AGENT_H
#define ROLLD_AGENT_H

#include "config.h"

/* Runs until SIGTERM or SIGINT. config holds the file's values with the
 * command line's on top; NULL fields take their defaults. */
int agent_run(const struct agent_config *config);

#endif
