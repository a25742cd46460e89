/*
 * policy.h - rollout policies, one YAML file each under policies/.
 *
 * A policy says how cautious rollouts of a service are: the canary's traffic
 * steps when there is no max surge, how long each step must stay healthy,
 * how long a canary may take to become ready, whether heavyweight changes go
 * through a canary or are applied in place, the rollout timeout, and what a
 * failing canary does. policy_parse() validates with the same error quality
 * as service specs. Pure: no I/O.
 */
#ifndef ROLLD_POLICY_H
#define ROLLD_POLICY_H

#include <stdbool.h>
#include <stddef.h>

#include "error.h"

enum heavyweight_mode { HEAVYWEIGHT_CANARY, HEAVYWEIGHT_IN_PLACE };
enum failure_mode { ON_FAILURE_ROLLBACK, ON_FAILURE_HOLD };

#define POLICY_MAX_STEPS 100

struct policy {
    char *name;
    char *file;
    int steps[POLICY_MAX_STEPS]; /* canary traffic percents, increasing, last is 100 */
    size_t step_count;
    long long step_duration_s;  /* each step stays healthy this long before the next */
    long long start_timeout_s;  /* the canary must be ready within this */
    long long timeout_s;        /* the whole rollout; a spec's rollout.timeout wins */
    int failure_threshold;      /* consecutive failed health checks that make a replica unhealthy */
    enum heavyweight_mode heavyweight;
    enum failure_mode on_failure;
    int wave_percent; /* in-place heavyweight replacement wave, percent of replicas */
    int approval_percent; /* canaries stop here until a later commit raises canary_percent; -1 */
    bool require_signed_commits; /* deploy only commits signed by a trusted key */
};

struct policy *policy_parse(const char *text, size_t length, const char *file, struct diag *diag);
void policy_free(struct policy *policy);

/* A set of policies by name, as loaded from a directory. */
struct policy_set {
    struct policy **items;
    size_t count;
};

const struct policy *policy_set_find(const struct policy_set *set, const char *name);
int policy_set_add(struct policy_set *set, struct policy *policy); /* takes ownership */
void policy_set_clear(struct policy_set *set);

#define POLICY_DEFAULT_NAME "production"

#endif
