/*
 * inventory.h - what a host has (CPUs, memory, GPU devices) and what a
 * version or a whole rollout needs of it.
 *
 * GPU needs are counted in devices, the way the process backend packs them:
 * replicas asking for a fraction f < 1 share a device as long as their
 * fractions add up to at most 1 (replicas of one deployment are packed
 * together), a replica asking for f >= 1 takes ceil(f) devices of its own.
 * A rollout's need is the peak over its schedule (capacity.h), primary and
 * canary together. Pure.
 */
#ifndef ROLLD_INVENTORY_H
#define ROLLD_INVENTORY_H

#include <stdbool.h>
#include <stddef.h>

#include "policy.h"
#include "spec.h"

#define INVENTORY_MAX_GPUS 64

struct inventory {
    bool declared; /* false: nothing is checked */
    double cpus;
    long long memory; /* bytes; 0: not checked */
    int gpus[INVENTORY_MAX_GPUS]; /* device indices */
    size_t gpu_count;
};

struct resource_need {
    double cpus;
    long long memory;
    int gpu_devices;
};

/* Devices for n replicas asking for `fraction` GPUs each. */
int inventory_gpu_devices(int replicas, double fraction);

/* What a version needs at a capacity percent. */
struct resource_need inventory_need_version(const struct service_spec *spec, int percent);
void inventory_need_add(struct resource_need *total, const struct resource_need *more);

/* The peak need of a canary rollout from old to new with max_surge (0: none). */
struct resource_need inventory_need_rollout(const struct service_spec *new_spec,
                                            const struct service_spec *old_spec,
                                            const struct policy *policy, int max_surge);

/* True when need fits in available; otherwise reason names what is missing. */
bool inventory_fits(const struct resource_need *need, const struct resource_need *available,
                    char *reason, size_t size);

/* The largest max_surge_percent (1..100) whose rollout fits, or 0. */
int inventory_largest_surge(const struct service_spec *new_spec,
                            const struct service_spec *old_spec, const struct policy *policy,
                            const struct resource_need *available);

#endif
