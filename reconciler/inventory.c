#include "inventory.h"

#include <math.h>
#include <stdio.h>

#include "capacity.h"

int inventory_gpu_devices(int replicas, double fraction)
{
    if (replicas <= 0 || fraction <= 0)
        return 0;
    if (fraction >= 1)
        return replicas * (int)ceil(fraction - 1e-9);
    int per_device = (int)floor(1.0 / fraction + 1e-9);
    return (replicas + per_device - 1) / per_device;
}

static void add_deployment(struct resource_need *need, const struct deployment_spec *d,
                           int replicas)
{
    if (!d || replicas <= 0)
        return;
    need->cpus += d->num_cpus * replicas;
    long long memory = d->memory;
    if (memory > 0 && replicas > 0 && memory > (1LL << 62) / replicas)
        need->memory = 1LL << 62; /* saturate instead of overflowing */
    else if (need->memory < (1LL << 62))
        need->memory += memory * replicas;
    need->gpu_devices += inventory_gpu_devices(replicas, d->num_gpus);
}

struct resource_need inventory_need_version(const struct service_spec *spec, int percent)
{
    struct resource_need need = {0, 0, 0};
    for (size_t i = 0; spec && i < spec->application_count; i++)
        for (size_t j = 0; j < spec->applications[i].deployment_count; j++) {
            const struct deployment_spec *d = &spec->applications[i].deployments[j];
            add_deployment(&need, d, capacity_replicas(d->num_replicas, percent));
        }
    return need;
}

void inventory_need_add(struct resource_need *total, const struct resource_need *more)
{
    total->cpus += more->cpus;
    total->memory += more->memory;
    total->gpu_devices += more->gpu_devices;
}

struct resource_need inventory_need_rollout(const struct service_spec *new_spec,
                                            const struct service_spec *old_spec,
                                            const struct policy *policy, int max_surge)
{
    struct capacity_step steps[CAPACITY_MAX_STEPS];
    size_t n = capacity_schedule(max_surge, new_spec->rollout.canary_percent, policy->steps,
                                 policy->step_count, steps);
    struct resource_need peak = {0, 0, 0};
    for (size_t s = 0; s < n; s++) {
        struct resource_need need = inventory_need_version(old_spec, steps[s].primary);
        struct resource_need canary = inventory_need_version(new_spec, steps[s].canary);
        inventory_need_add(&need, &canary);
        if (need.cpus > peak.cpus)
            peak.cpus = need.cpus;
        if (need.memory > peak.memory)
            peak.memory = need.memory;
        if (need.gpu_devices > peak.gpu_devices)
            peak.gpu_devices = need.gpu_devices;
    }
    return peak;
}

bool inventory_fits(const struct resource_need *need, const struct resource_need *available,
                    char *reason, size_t size)
{
    if (need->gpu_devices > available->gpu_devices) {
        snprintf(reason, size, "needs %d GPUs at its peak, %d free", need->gpu_devices,
                 available->gpu_devices);
        return false;
    }
    if (need->cpus > available->cpus + 1e-9) {
        snprintf(reason, size, "needs %g CPUs at its peak, %g free", need->cpus, available->cpus);
        return false;
    }
    if (available->memory > 0 && need->memory > available->memory) {
        snprintf(reason, size, "needs %lld MiB of memory at its peak, %lld MiB free",
                 need->memory >> 20, available->memory >> 20);
        return false;
    }
    return true;
}

int inventory_largest_surge(const struct service_spec *new_spec,
                            const struct service_spec *old_spec, const struct policy *policy,
                            const struct resource_need *available)
{
    char reason[128];
    for (int surge = 100; surge >= 1; surge--) {
        struct resource_need need = inventory_need_rollout(new_spec, old_spec, policy, surge);
        if (inventory_fits(&need, available, reason, sizeof(reason)))
            return surge;
    }
    return 0;
}
