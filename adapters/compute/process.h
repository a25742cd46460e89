/*
 * process.h - the process backend: each deployment replica is a local
 * process on its own port, health-checked over HTTP, restarted with
 * exponential backoff, drained before it is stopped, and adopted again
 * after an agent restart (pid plus process start time, so a reused pid is
 * never taken for a replica). Replicas run in their own session so they
 * outlive the agent.
 */
#ifndef ROLLD_PROCESS_H
#define ROLLD_PROCESS_H

#include <stdbool.h>
#include <systemd/sd-event.h>

#include "compute.h"

struct process_config {
    const char *state_dir;
    int port_min, port_max;
    /* asks the router whether a draining replica still has requests */
    bool (*endpoint_idle)(void *userdata, const char *service, int port);
    void *userdata;
    /* called when something the rollout depends on changed (ready, died) */
    void (*changed)(void *userdata);
    /* GPU device indices replicas are placed on (CUDA_VISIBLE_DEVICES);
     * none: replicas are not given devices */
    const int *gpus;
    size_t gpu_count;
};

/* The GPU devices new replicas are placed on, after the host's inventory
 * changed (SIGHUP); running replicas keep theirs. instance: the adapter's. */
void process_backend_set_gpus(void *instance, const int *gpus, size_t count);

/* Creates the backend; previous, when not NULL, is what state_text() gave (parsed) in an
 * earlier run, whose replicas are adopted when they still run. */
int process_backend_new(sd_event *event, const struct process_config *config,
                        const json_t *previous, struct compute_adapter *out);

#endif
