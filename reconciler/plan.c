#include "plan.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

static const struct deployment_spec *find_deployment(const struct service_spec *spec,
                                                     const char *application,
                                                     const char *deployment)
{
    for (size_t i = 0; spec && i < spec->application_count; i++) {
        const struct application_spec *app = &spec->applications[i];
        if (strcmp(app->name, application) != 0)
            continue;
        for (size_t j = 0; j < app->deployment_count; j++)
            if (!strcmp(app->deployments[j].name, deployment))
                return &app->deployments[j];
    }
    return NULL;
}

static int ref_add(struct plan_deployment_ref **refs, size_t *count, const char *application,
                   const char *deployment)
{
    for (size_t i = 0; i < *count; i++)
        if (!strcmp((*refs)[i].application, application) &&
            !strcmp((*refs)[i].deployment, deployment))
            return 0;
    struct plan_deployment_ref *grown = realloc(*refs, (*count + 1) * sizeof(*grown));
    if (!grown)
        return -ENOMEM;
    *refs = grown;
    grown[*count].application = strdup(application);
    grown[*count].deployment = strdup(deployment);
    if (!grown[*count].application || !grown[*count].deployment) {
        free(grown[*count].application);
        free(grown[*count].deployment);
        return -ENOMEM;
    }
    (*count)++;
    return 0;
}

/* Every deployment of the new spec, then those only the old one has. */
static int collect_deployments(const struct service_spec *new_spec,
                               const struct service_spec *old_spec, struct service_plan *plan)
{
    const struct service_spec *specs[2] = {new_spec, old_spec};
    for (int s = 0; s < 2; s++) {
        for (size_t i = 0; specs[s] && i < specs[s]->application_count; i++) {
            const struct application_spec *app = &specs[s]->applications[i];
            for (size_t j = 0; j < app->deployment_count; j++)
                if (ref_add(&plan->deployments, &plan->deployment_count, app->name,
                            app->deployments[j].name) < 0)
                    return -ENOMEM;
        }
    }
    return 0;
}

/* Adds the deployments a heavyweight change replaces. */
static int add_replaced(struct service_plan *plan, const struct service_spec *spec,
                        const struct change_scope *scope)
{
    for (size_t i = 0; spec && i < spec->application_count; i++) {
        const struct application_spec *app = &spec->applications[i];
        if (scope->application && strcmp(scope->application, app->name) != 0)
            continue;
        for (size_t j = 0; j < app->deployment_count; j++) {
            if (scope->deployment && strcmp(scope->deployment, app->deployments[j].name) != 0)
                continue;
            if (ref_add(&plan->replaced, &plan->replaced_count, app->name,
                        app->deployments[j].name) < 0)
                return -ENOMEM;
        }
    }
    return 0;
}

static void resources_add(struct plan_resources *total, const struct deployment_spec *d,
                          int replicas)
{
    if (!d || replicas <= 0)
        return;
    /* counts saturate instead of wrapping: a spec may ask for 1024 replicas
     * of several deployments of 1 PiB each, more bytes than a long long holds */
    if (__builtin_add_overflow(total->replicas, replicas, &total->replicas))
        total->replicas = INT_MAX;
    total->cpus += d->num_cpus * replicas;
    total->gpus += d->num_gpus * replicas;
    long long memory;
    if (__builtin_mul_overflow(d->memory, (long long)replicas, &memory) ||
        __builtin_add_overflow(total->memory, memory, &total->memory))
        total->memory = LLONG_MAX;
}

static void resources_max(struct plan_resources *peak, const struct plan_resources *r)
{
    if (r->replicas > peak->replicas)
        peak->replicas = r->replicas;
    if (r->cpus > peak->cpus)
        peak->cpus = r->cpus;
    if (r->gpus > peak->gpus)
        peak->gpus = r->gpus;
    if (r->memory > peak->memory)
        peak->memory = r->memory;
}

struct plan_resources plan_version_resources(const struct service_spec *spec, int percent)
{
    struct plan_resources total = {0, 0, 0, 0};
    for (size_t i = 0; spec && i < spec->application_count; i++)
        for (size_t j = 0; j < spec->applications[i].deployment_count; j++) {
            const struct deployment_spec *d = &spec->applications[i].deployments[j];
            resources_add(&total, d, capacity_replicas(d->num_replicas, percent));
        }
    return total;
}

static int build_schedule(struct service_plan *plan, const struct service_spec *new_spec,
                          const struct service_spec *old_spec, const struct policy *policy)
{
    struct capacity_step steps[CAPACITY_MAX_STEPS];
    /* a new version stops at the policy's approval gate: only a later commit
     * that raises canary_percent releases it */
    int pause = new_spec->rollout.canary_percent;
    if (policy->approval_percent >= 0 && (pause < 0 || pause > policy->approval_percent))
        pause = policy->approval_percent;
    size_t count = capacity_schedule(new_spec->rollout.max_surge_percent, pause, policy->steps,
                                     policy->step_count, steps);
    plan->steps = calloc(count, sizeof(*plan->steps));
    if (!plan->steps)
        return -ENOMEM;
    plan->step_count = count;
    for (size_t s = 0; s < count; s++) {
        struct plan_step *step = &plan->steps[s];
        step->capacity = steps[s];
        step->pause = s + 1 == count && steps[s].traffic < 100;
        step->replicas = calloc(plan->deployment_count ? plan->deployment_count : 1,
                                sizeof(*step->replicas));
        if (!step->replicas)
            return -ENOMEM;
        struct plan_resources total = {0, 0, 0, 0};
        for (size_t d = 0; d < plan->deployment_count; d++) {
            const struct plan_deployment_ref *ref = &plan->deployments[d];
            const struct deployment_spec *primary =
                find_deployment(old_spec, ref->application, ref->deployment);
            const struct deployment_spec *canary =
                find_deployment(new_spec, ref->application, ref->deployment);
            struct plan_replicas *r = &step->replicas[d];
            r->primary = primary ? capacity_replicas(primary->num_replicas, steps[s].primary) : -1;
            r->canary = canary ? capacity_replicas(canary->num_replicas, steps[s].canary) : -1;
            r->canary_min = r->canary_max = r->canary_initial = -1;
            if (canary && canary->autoscaling) {
                r->canary_min = capacity_replicas(canary->min_replicas, steps[s].canary);
                r->canary_max = capacity_replicas(canary->max_replicas, steps[s].canary);
                r->canary_initial = r->canary;
            }
            resources_add(&total, primary, r->primary);
            resources_add(&total, canary, r->canary);
        }
        resources_max(&plan->peak, &total);
    }
    return 0;
}

/* Peak of an in-place change: lightweight scales each deployment to the
 * larger of its counts; heavyweight adds one wave of new replicas beside the
 * old ones of each replaced deployment. */
static void in_place_peak(struct service_plan *plan, const struct service_spec *new_spec,
                          const struct service_spec *old_spec, const struct policy *policy)
{
    struct plan_resources total = {0, 0, 0, 0};
    for (size_t d = 0; d < plan->deployment_count; d++) {
        const struct plan_deployment_ref *ref = &plan->deployments[d];
        const struct deployment_spec *before =
            find_deployment(old_spec, ref->application, ref->deployment);
        const struct deployment_spec *after =
            find_deployment(new_spec, ref->application, ref->deployment);
        const struct deployment_spec *bigger =
            !before ? after : !after ? before : after->num_replicas >= before->num_replicas ? after : before;
        int replicas = bigger ? bigger->num_replicas : 0;
        bool replaced = false;
        for (size_t r = 0; r < plan->replaced_count; r++)
            if (!strcmp(plan->replaced[r].application, ref->application) &&
                !strcmp(plan->replaced[r].deployment, ref->deployment))
                replaced = true;
        if (plan->action == PLAN_IN_PLACE_HEAVYWEIGHT && replaced && after) {
            int wave = capacity_replicas(after->num_replicas, policy->wave_percent);
            resources_add(&total, before, before ? before->num_replicas : 0);
            resources_add(&total, after, wave < 1 ? 1 : wave);
            continue;
        }
        resources_add(&total, bigger, replicas);
    }
    plan->peak = total;
}

static int set_name(struct service_plan *plan, const char *name, const char *file)
{
    plan->name = strdup(name ? name : "");
    plan->file = strdup(file ? file : "");
    return plan->name && plan->file ? 0 : -ENOMEM;
}

static int plan_add_change(struct service_plan *plan, const struct change *change,
                           enum change_class class)
{
    struct plan_change *grown = realloc(plan->changes, (plan->change_count + 1) * sizeof(*grown));
    if (!grown)
        return -ENOMEM;
    plan->changes = grown;
    struct plan_change *c = &grown[plan->change_count];
    c->path = strdup(change->path);
    c->kind = change->kind;
    c->class = class;
    c->decided = false;
    if (!c->path)
        return -ENOMEM;
    plan->change_count++;
    return 0;
}

int plan_compute(const struct service_spec *new_spec, const struct service_spec *old_spec,
                 const struct policy *policy, struct service_plan *plan)
{
    memset(plan, 0, sizeof(*plan));
    plan->canary_percent = -1;
    plan->approval_percent = -1;
    const struct service_spec *any = new_spec ? new_spec : old_spec;
    int r = set_name(plan, any->name, any->file);
    if (r < 0)
        return r;
    if (old_spec)
        memcpy(plan->old_version, old_spec->version, sizeof(plan->old_version));
    if (new_spec) {
        memcpy(plan->new_version, new_spec->version, sizeof(plan->new_version));
        plan->max_surge_percent = new_spec->rollout.max_surge_percent;
        plan->canary_percent = new_spec->rollout.canary_percent;
    }
    plan->policy_name = policy ? policy->name : NULL;
    plan->approval_percent = policy ? policy->approval_percent : -1;
    plan->signed_commits = policy && policy->require_signed_commits;
    if ((r = collect_deployments(new_spec, old_spec, plan)) < 0)
        return r;

    if (!new_spec) {
        plan->action = PLAN_DELETE;
        return 0;
    }
    if (!policy) {
        plan->action = PLAN_INVALID;
        diag_add(&plan->errors, new_spec->file, 0, 0, "rollout.policy",
                 "no policy named '%s'; use one from the policies directory",
                 new_spec->rollout.policy ? new_spec->rollout.policy : POLICY_DEFAULT_NAME);
        return 0;
    }
    if (!old_spec) {
        plan->action = PLAN_CREATE;
        plan->peak = plan_version_resources(new_spec, 100);
        return 0;
    }
    if (!strcmp(new_spec->version, old_spec->version)) {
        plan->action = PLAN_NONE;
        /* the rollout sections themselves: the same version may list its
         * applications in another order, which the text keeps */
        if (!spec_same(new_spec, old_spec)) {
            json_t *new_doc = spec_doc(new_spec), *old_doc = spec_doc(old_spec);
            if (!new_doc || !old_doc) {
                json_decref(new_doc);
                json_decref(old_doc);
                return -ENOMEM;
            }
            plan->rollout_changed = !json_equal(json_object_get(new_doc, "rollout"),
                                                json_object_get(old_doc, "rollout"));
            json_decref(new_doc);
            json_decref(old_doc);
        }
        plan->peak = plan_version_resources(new_spec, 100);
        return 0;
    }

    struct change_list changes = {0};
    json_t *old_version = spec_version_doc(old_spec), *new_version = spec_version_doc(new_spec);
    r = old_version && new_version ? diff_documents(old_version, new_version, &changes) : -ENOMEM;
    json_decref(old_version);
    json_decref(new_version);
    if (r < 0) {
        change_list_clear(&changes);
        return r;
    }
    enum change_class worst = CLASS_LIGHTWEIGHT;
    for (size_t i = 0; i < changes.count; i++) {
        char app[128], deployment[128];
        struct change_scope scope = classify_change(&changes.items[i], new_spec, app, deployment);
        if (scope.class > worst)
            worst = scope.class;
        r = plan_add_change(plan, &changes.items[i], scope.class);
        if (r == 0 && scope.class == CLASS_HEAVYWEIGHT) {
            r = add_replaced(plan, new_spec, &scope);
        }
        if (r < 0) {
            change_list_clear(&changes);
            return r;
        }
    }
    change_list_clear(&changes);

    enum rollout_strategy strategy = new_spec->rollout.strategy;
    if (worst == CLASS_CANARY_ONLY || strategy == STRATEGY_CANARY)
        plan->action = PLAN_CANARY;
    else if (worst == CLASS_HEAVYWEIGHT)
        plan->action = strategy == STRATEGY_IN_PLACE || policy->heavyweight == HEAVYWEIGHT_IN_PLACE
                           ? PLAN_IN_PLACE_HEAVYWEIGHT
                           : PLAN_CANARY;
    else
        plan->action = PLAN_IN_PLACE_LIGHTWEIGHT;

    /* the fields that decided: those of the worst class, or all when the
     * strategy forced a canary over lighter changes */
    for (size_t i = 0; i < plan->change_count; i++)
        plan->changes[i].decided = plan->changes[i].class == worst;

    if (worst == CLASS_CANARY_ONLY && strategy == STRATEGY_IN_PLACE) {
        plan->action = PLAN_INVALID;
        for (size_t i = 0; i < plan->change_count; i++) {
            if (plan->changes[i].class != CLASS_CANARY_ONLY)
                continue;
            diag_add(&plan->errors, new_spec->file, 0, 0, "rollout.strategy",
                     "strategy is in_place but %s changed, which cannot change in place; set "
                     "strategy to auto or canary",
                     plan->changes[i].path);
        }
        return 0;
    }
    if (plan->action != PLAN_IN_PLACE_HEAVYWEIGHT) {
        /* only an in-place update replaces some replicas and keeps others */
        for (size_t i = 0; i < plan->replaced_count; i++) {
            free(plan->replaced[i].application);
            free(plan->replaced[i].deployment);
        }
        plan->replaced_count = 0;
    }
    if (plan->action == PLAN_CANARY)
        return build_schedule(plan, new_spec, old_spec, policy);
    in_place_peak(plan, new_spec, old_spec, policy);
    return 0;
}

int plan_invalid(const char *name, const char *file, const struct diag *errors,
                 struct service_plan *plan)
{
    memset(plan, 0, sizeof(*plan));
    plan->canary_percent = -1;
    plan->approval_percent = -1;
    plan->action = PLAN_INVALID;
    int r = set_name(plan, name, file);
    for (size_t i = 0; r == 0 && errors && i < errors->count; i++) {
        const struct diag_entry *e = &errors->entries[i];
        r = diag_add(&plan->errors, e->file, e->line, e->column, e->field, "%s", e->message);
    }
    return r;
}

static void refs_free(struct plan_deployment_ref *refs, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        free(refs[i].application);
        free(refs[i].deployment);
    }
    free(refs);
}

void plan_clear(struct service_plan *plan)
{
    free(plan->name);
    free(plan->file);
    for (size_t i = 0; i < plan->change_count; i++)
        free(plan->changes[i].path);
    free(plan->changes);
    refs_free(plan->replaced, plan->replaced_count);
    refs_free(plan->deployments, plan->deployment_count);
    for (size_t i = 0; i < plan->step_count; i++)
        free(plan->steps[i].replicas);
    free(plan->steps);
    diag_clear(&plan->errors);
    memset(plan, 0, sizeof(*plan));
}

const char *plan_action_name(enum plan_action action)
{
    switch (action) {
    case PLAN_NONE:
        return "none";
    case PLAN_CREATE:
        return "create";
    case PLAN_IN_PLACE_LIGHTWEIGHT:
        return "in_place_lightweight";
    case PLAN_IN_PLACE_HEAVYWEIGHT:
        return "in_place_heavyweight";
    case PLAN_CANARY:
        return "canary";
    case PLAN_DELETE:
        return "delete";
    case PLAN_INVALID:
        return "invalid";
    }
    return "?";
}
