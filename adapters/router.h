/*
 * router.h - the router adapter interface: maps each service's traffic onto
 * the endpoints of its two sides, honours the pin header, and drains
 * endpoints before they are stopped. haproxy.c is the default.
 */
#ifndef ROLLD_ROUTER_H
#define ROLLD_ROUTER_H

#include <stdbool.h>
#include <stddef.h>

#include "compute.h"

#define ROUTER_ADAPTER_VERSION 1
#define ROUTER_MAX_ENDPOINTS 256
#define ROUTER_MAX_PINS 4

struct router_application {
    const char *name;
    const char *route_prefix;
    const struct endpoint *endpoints[2]; /* endpoint_count[side] each, at most ROUTER_MAX_ENDPOINTS */
    size_t endpoint_count[2];
};

struct router_service {
    const char *name;
    const char *host;
    int port;
    int share[2]; /* percent of requests to each side */
    const char *pins[2][ROUTER_MAX_PINS]; /* header values that pin a request to a side */
    struct router_application *applications;
    size_t application_count;
};

struct router_adapter {
    int version;
    const char *name;
    void *instance;
    /* Makes the router serve exactly these services. Returns 0 or -errno. */
    int (*apply)(void *instance, const struct router_service *services, size_t count);
    /* Requests in flight (and queued) on one side of one application. */
    double (*ongoing)(void *instance, const char *service, int side, const char *application);
    /* True when the endpoint has no request in flight. */
    bool (*endpoint_idle)(void *instance, const char *service, int port);
    /* False when the router does not serve what the last apply() asked for
     * (its process died, or that apply failed); cheap enough to ask every
     * few seconds. The agent then runs a pass, which applies again. */
    bool (*serving)(void *instance);
    void (*free)(void *instance);
};

#endif
