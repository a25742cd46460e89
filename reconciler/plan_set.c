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

static int compare_base_names(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int compare_entries_by_base_name(const void *a, const void *b)
{
    const struct spec_entry *x = *(const struct spec_entry *const *)a;
    const struct spec_entry *y = *(const struct spec_entry *const *)b;
    int c = strcmp(base_name(x->file), base_name(y->file));
    return c ? c : (x > y) - (x < y); /* then file order */
}

/* What the planner looks up by file name instead of service name: the base
 * names of the next files whose name cannot be read, and the running specs
 * by base name, each sorted for a binary search. */
struct file_index {
    const char **nameless; /* base names of next's nameless entries */
    size_t nameless_count;
    const struct spec_entry **running; /* current's entries with a spec */
    size_t running_count;
};

static int file_index_build(struct file_index *index, const struct snapshot *next,
                            const struct snapshot *current)
{
    memset(index, 0, sizeof(*index));
    index->nameless = calloc(next->count ? next->count : 1, sizeof(*index->nameless));
    if (!index->nameless)
        return -ENOMEM;
    for (size_t i = 0; i < next->count; i++)
        if (!next->entries[i].name)
            index->nameless[index->nameless_count++] = base_name(next->entries[i].file);
    qsort(index->nameless, index->nameless_count, sizeof(*index->nameless), compare_base_names);
    if (!current || !index->nameless_count)
        return 0; /* running specs are looked up for nameless entries only */
    index->running = calloc(current->count ? current->count : 1, sizeof(*index->running));
    if (!index->running)
        return -ENOMEM;
    for (size_t i = 0; i < current->count; i++)
        if (current->entries[i].spec)
            index->running[index->running_count++] = &current->entries[i];
    qsort(index->running, index->running_count, sizeof(*index->running),
          compare_entries_by_base_name);
    return 0;
}

static void file_index_clear(struct file_index *index)
{
    free(index->nameless);
    free(index->running);
}

/* A file broken beyond reading its name is taken to be the service that the
 * file of the same name ran in `current` (the first such, in file order,
 * whose service is not in `next` under its name), so that it is planned as
 * invalid under that name instead of the service being deleted. */
static const struct spec_entry *running_from_same_file(const struct file_index *index,
                                                       const struct spec_entry *entry,
                                                       const struct snapshot *next)
{
    const char *base = base_name(entry->file);
    size_t low = 0, high = index->running_count;
    while (low < high) {
        size_t mid = low + (high - low) / 2;
        if (strcmp(base_name(index->running[mid]->file), base) < 0)
            low = mid + 1;
        else
            high = mid;
    }
    for (; low < index->running_count && !strcmp(base_name(index->running[low]->file), base);
         low++)
        if (!snapshot_find(next, index->running[low]->name))
            return index->running[low];
    return NULL;
}

static bool nameless_in(const struct file_index *index, const struct spec_entry *old)
{
    const char *base = base_name(old->file);
    return index->nameless_count && bsearch(&base, index->nameless, index->nameless_count,
                                            sizeof(*index->nameless), compare_base_names);
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
    struct file_index index;
    int r = file_index_build(&index, next, current);
    for (size_t i = 0; r == 0 && i < next->count; i++) {
        const struct spec_entry *entry = &next->entries[i];
        struct service_plan *plan = &(*plans)[(*count)++];
        if (!entry->spec) {
            const struct spec_entry *old =
                entry->name ? NULL : running_from_same_file(&index, entry, next);
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
        if (!entry->spec || snapshot_find(next, entry->name) || nameless_in(&index, entry))
            continue;
        r = plan_compute(NULL, entry->spec, NULL, &(*plans)[(*count)++]);
    }
    file_index_clear(&index);
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
