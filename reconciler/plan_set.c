#include "plan_set.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

const struct policy *plan_set_policy_for(const struct policy_set *policies,
                                         const struct service_spec *spec)
{
    return policy_set_find(policies, spec->rollout.policy ? spec->rollout.policy
                                                          : POLICY_DEFAULT_NAME);
}

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

/* A file broken beyond reading its name is taken to be the service that the
 * file of the same name ran in `current`, so that it is planned as invalid
 * under that name instead of the service being deleted. */
static const struct spec_entry *running_from_same_file(const struct spec_entry *entry,
                                                       const struct snapshot *current,
                                                       const struct snapshot *next)
{
    for (size_t i = 0; current && i < current->count; i++) {
        const struct spec_entry *old = &current->entries[i];
        if (old->spec && !strcmp(base_name(old->file), base_name(entry->file)) &&
            !snapshot_find(next, old->name))
            return old;
    }
    return NULL;
}

static bool nameless_in(const struct snapshot *next, const struct spec_entry *old)
{
    for (size_t i = 0; i < next->count; i++)
        if (!next->entries[i].name &&
            !strcmp(base_name(next->entries[i].file), base_name(old->file)))
            return true;
    return false;
}

static int compare_plans(const void *a, const void *b)
{
    const struct service_plan *x = a, *y = b;
    int c = strcmp(x->name, y->name);
    return c ? c : strcmp(x->file, y->file);
}

int plan_set_compute(const struct snapshot *next, const struct snapshot *current,
                     const struct policy_set *policies, struct service_plan **plans,
                     size_t *count)
{
    size_t capacity = next->count + (current ? current->count : 0);
    *plans = calloc(capacity ? capacity : 1, sizeof(**plans));
    *count = 0;
    if (!*plans)
        return -ENOMEM;
    int r = 0;
    for (size_t i = 0; r == 0 && i < next->count; i++) {
        const struct spec_entry *entry = &next->entries[i];
        struct service_plan *plan = &(*plans)[(*count)++];
        if (!entry->spec) {
            const struct spec_entry *old =
                entry->name ? NULL : running_from_same_file(entry, current, next);
            const char *name = entry->name ? entry->name : old ? old->name : "(unknown)";
            r = plan_invalid(name, entry->file, &entry->errors, plan);
            continue;
        }
        const struct spec_entry *old = current ? snapshot_find(current, entry->name) : NULL;
        r = plan_compute(entry->spec, old ? old->spec : NULL,
                         plan_set_policy_for(policies, entry->spec), plan);
    }
    for (size_t i = 0; r == 0 && current && i < current->count; i++) {
        const struct spec_entry *entry = &current->entries[i];
        if (!entry->spec || snapshot_find(next, entry->name) || nameless_in(next, entry))
            continue;
        r = plan_compute(NULL, entry->spec, NULL, &(*plans)[(*count)++]);
    }
    if (r < 0) {
        plan_set_free(*plans, *count);
        *plans = NULL;
        *count = 0;
        return r;
    }
    qsort(*plans, *count, sizeof(**plans), compare_plans);
    return 0;
}

void plan_set_free(struct service_plan *plans, size_t count)
{
    for (size_t i = 0; i < count; i++)
        plan_clear(&plans[i]);
    free(plans);
}
