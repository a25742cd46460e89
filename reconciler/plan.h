/*
 * plan.h - the planner: (new spec, running spec or none, policy) -> a plan.
 *
 * The plan says what a change means: the action, the fields that decided it,
 * the deployments whose replicas will be replaced, for a canary the step
 * schedule with each deployment's replica counts, and the peak resources the
 * change needs while it runs. Pure: no I/O, no clock.
 */
#ifndef ROLLD_PLAN_H
#define ROLLD_PLAN_H

#include <stdbool.h>
#include <stddef.h>

#include "capacity.h"
#include "classify.h"
#include "diff.h"
#include "error.h"
#include "policy.h"
#include "spec.h"

enum plan_action {
    PLAN_NONE,
    PLAN_CREATE,
    PLAN_IN_PLACE_LIGHTWEIGHT,
    PLAN_IN_PLACE_HEAVYWEIGHT,
    PLAN_CANARY,
    PLAN_DELETE,
    PLAN_INVALID,
};

struct plan_change {
    char *path;
    enum change_kind kind;
    enum change_class class;
    bool decided; /* one of the fields that decided the action */
};

struct plan_deployment_ref {
    char *application;
    char *deployment;
};

/* Replica counts of one deployment at one step; -1 where the version has no
 * such deployment. Autoscaling bounds are the scaled ones (rule 4). */
struct plan_replicas {
    int primary, canary;
    int canary_min, canary_max, canary_initial; /* -1 when not autoscaling */
};

struct plan_step {
    struct capacity_step capacity;
    struct plan_replicas *replicas; /* one per plan->deployments entry */
    bool pause;                     /* the progression holds here (canary_percent) */
};

struct plan_resources {
    int replicas;
    double cpus;
    double gpus;
    long long memory;
};

struct service_plan {
    char *name;
    char *file; /* the new spec's file, or the old one's for delete */
    enum plan_action action;
    char old_version[17], new_version[17];
    const char *policy_name;
    int max_surge_percent;
    int canary_percent; /* -1: none */
    int approval_percent; /* the policy's approval gate (canary stops there), -1: none */
    bool signed_commits;  /* the policy deploys only commits signed by a trusted key */
    struct plan_change *changes;
    size_t change_count;
    struct plan_deployment_ref *replaced; /* heavyweight: deployments whose replicas are replaced */
    size_t replaced_count;
    struct plan_deployment_ref *deployments; /* the columns of each step's replicas */
    size_t deployment_count;
    struct plan_step *steps;
    size_t step_count;
    struct plan_resources peak;
    struct diag errors;
    bool rollout_changed; /* only the rollout section differs */
};

/*
 * Computes the plan for one service. new_spec NULL means the service was
 * removed; old_spec NULL means it is new. Returns 0 or -ENOMEM. An action
 * that cannot be taken (in_place forced on a change that cannot be in place,
 * an unknown policy) gives PLAN_INVALID with the reason in plan->errors.
 */
int plan_compute(const struct service_spec *new_spec, const struct service_spec *old_spec,
                 const struct policy *policy, struct service_plan *plan);
void plan_clear(struct service_plan *plan);

/* A plan for a spec that failed to parse: PLAN_INVALID with its errors. */
int plan_invalid(const char *name, const char *file, const struct diag *errors,
                 struct service_plan *plan);

const char *plan_action_name(enum plan_action action);

/* Resources of a whole version at a capacity percent. */
struct plan_resources plan_version_resources(const struct service_spec *spec, int percent);

#endif
