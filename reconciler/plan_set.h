/*
 * plan_set.h - plans for every service of two snapshots.
 *
 * Services are matched by name. One only in `next` is created, one only in
 * `current` deleted, and one whose next spec is invalid is planned as
 * invalid, never as deleted: an invalid file must not disturb what runs. A
 * file whose service name cannot be read at all is taken to be the service
 * that ran from the file of the same name in `current`.
 * Plans come sorted by service name. Pure.
 */
#ifndef ROLLD_PLAN_SET_H
#define ROLLD_PLAN_SET_H

#include "plan.h"
#include "policy.h"
#include "source_dir.h"

/* Fills *plans (caller frees with plan_set_free). Returns 0 or -ENOMEM. */
int plan_set_compute(const struct snapshot *next, const struct snapshot *current,
                     const struct policy_set *policies, struct service_plan **plans,
                     size_t *count);
void plan_set_free(struct service_plan *plans, size_t count);

/* The policy a spec asks for (its rollout.policy or the default). */
const struct policy *plan_set_policy_for(const struct policy_set *policies,
                                         const struct service_spec *spec);

#endif
