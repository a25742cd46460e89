#include "capacity.h"

int capacity_replicas(int n, int percent)
{
    if (n <= 0 || percent <= 0)
        return 0;
    return (n * percent + 99) / 100;
}

static size_t push(struct capacity_step *out, size_t count, int traffic, int primary, int canary)
{
    if (count >= CAPACITY_MAX_STEPS)
        return count;
    out[count].traffic = traffic;
    out[count].primary = primary;
    out[count].canary = canary;
    return count + 1;
}

static size_t schedule_full_capacity(int pause, const int *steps, size_t step_count,
                                     struct capacity_step *out)
{
    size_t n = push(out, 0, 0, 100, 100);
    int traffic = 0;
    for (size_t i = 0; i < step_count && traffic < pause; i++) {
        traffic = steps[i] < pause ? steps[i] : pause;
        n = push(out, n, traffic, 100, 100);
    }
    if (traffic < pause) /* a policy whose steps stop short of the pause */
        n = push(out, n, traffic = pause, 100, 100);
    if (traffic == 100)
        n = push(out, n, 100, 0, 100);
    return n;
}

size_t capacity_schedule(int max_surge, int canary_percent, const int *policy_steps,
                         size_t policy_step_count, struct capacity_step *out)
{
    int pause = canary_percent >= 0 && canary_percent < 100 ? canary_percent : 100;
    if (max_surge <= 0)
        return schedule_full_capacity(pause, policy_steps, policy_step_count, out);

    int surge = max_surge > 100 ? 100 : max_surge;
    int traffic = 0, primary = 100, canary = surge;
    size_t n = push(out, 0, traffic, primary, canary);
    for (;;) {
        int target = canary < pause ? canary : pause;
        if (target > traffic) {
            traffic = target;
            n = push(out, n, traffic, primary, canary);
        }
        if (traffic >= pause)
            break;
        if (100 - traffic < primary) {
            primary = 100 - traffic;
            n = push(out, n, traffic, primary, canary);
        }
        int room = 100 + surge - primary;
        int next = room < 100 ? room : 100;
        if (next <= canary)
            break; /* cannot happen with surge >= 1; guards the loop */
        canary = next;
        n = push(out, n, traffic, primary, canary);
    }
    if (traffic == 100 && primary > 0)
        n = push(out, n, 100, 0, canary);
    return n;
}

bool capacity_step_valid(const struct capacity_step *step, int max_surge)
{
    if (step->traffic < 0 || step->traffic > 100 || step->primary < 0 || step->primary > 100 ||
        step->canary < 0 || step->canary > 100)
        return false;
    if (step->traffic > step->canary || 100 - step->traffic > step->primary)
        return false;
    if (max_surge > 0 && step->primary + step->canary > 100 + max_surge)
        return false;
    return true;
}
