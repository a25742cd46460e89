/*
 * haproxy.h - the HAProxy router. rolld writes HAProxy's configuration
 * (one frontend per service, applications routed by route_prefix, for each
 * application a split backend holding both sides' server slots and one
 * pinned backend per side), starts HAProxy in master-worker mode with its
 * runtime API socket in the state dir, and then steers it through that
 * socket: server addresses, weights and states, and the pin lists. Changing
 * a split never reloads HAProxy; a new service or more slots than were
 * allocated does, with HAProxy's seamless reload.
 */
#ifndef ROLLD_HAPROXY_H
#define ROLLD_HAPROXY_H

#include "router.h"

struct haproxy_config {
    const char *dir;        /* STATE_DIR/haproxy */
    const char *binary;     /* haproxy executable */
    const char *pin_header; /* X-Rolld-Version */
};

int haproxy_router_new(const struct haproxy_config *config, struct router_adapter *out);

/* Sends one runtime API command line (commands separated by ';') to the
 * socket and returns the answer (caller frees), or NULL. */
char *haproxy_runtime_command(const char *socket_path, const char *command);

#endif
