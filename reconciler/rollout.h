/*
 * rollout.h - the rollout transition function (DESIGN.md rules 1-4, 6).
 *
 * A service has two sides, 0 and 1, each of which may hold a version; one is
 * the primary, and during a rollout the other is the canary. Sides let a
 * canary become primary without moving its replicas or router slots.
 *
 * rollout_step() takes the persisted service state, the desired spec (or
 * none, or the errors of an invalid one), the policy, what the adapters
 * observe, a command, and the time, and moves the state one transition
 * forward: capacities (percent of each side's steady state), the canary's
 * traffic share, the phase and the history. The caller applies capacities
 * and traffic through the adapters and calls again until nothing changes.
 * Pure: no I/O, no clock.
 *
 * Service phases (published in the README and schema/status.schema.json):
 *   creating, running, updating_in_place, canary_starting, canary_progressing, canary_paused,
 *   canary_held, promoting, rolling_back, rolled_back, failed, deleting, blocked.
 */
#ifndef ROLLD_ROLLOUT_H
#define ROLLD_ROLLOUT_H

#include <jansson.h>
#include <stdbool.h>

#include "inventory.h"
#include "policy.h"
#include "spec.h"

enum service_phase {
    PHASE_CREATING,
    PHASE_RUNNING,
    PHASE_UPDATING_IN_PLACE,
    PHASE_CANARY_STARTING,
    PHASE_CANARY_PROGRESSING,
    PHASE_CANARY_PAUSED,
    PHASE_CANARY_HELD,
    PHASE_PROMOTING,
    PHASE_ROLLING_BACK,
    PHASE_ROLLED_BACK,
    PHASE_FAILED,
    PHASE_DELETING,
    PHASE_BLOCKED,
    PHASE_COUNT,
};

struct side_state {
    bool used;
    char version[17];
    struct service_spec *spec; /* the version's spec (with its rollout section), shared */
    char *file;       /* the spec file it came from */
    int capacity;     /* percent of steady state */
    char commit[41];  /* the source commit the version first came from ("" unknown) */
};

#define ROLLOUT_HISTORY_MAX 20

struct service_state {
    char *name;
    enum service_phase phase;
    struct side_state sides[2];
    int primary; /* side index, -1 before the first version is ready */
    int canary;  /* side index, -1 when no rollout */
    int traffic; /* percent of requests to the canary */
    long long phase_since_ms;
    long long step_since_ms;    /* when traffic last changed */
    long long rollout_started_ms;
    json_t *rejected;           /* array of version ids not to retry */
    char *rollback_reason;      /* set while rolling back */
    bool reject_on_rollback;
    bool rollback_immediate;    /* all traffic back at once (unhealthy canary, no pause) */
    int rollback_surge;         /* 100+S bound of a gradual rollback; 0: none */
    int gate_base;              /* rollout.canary_percent when the canary started (-1 unset):
                                 * a later commit must raise it to pass the approval gate */
    char *last_error;
    json_t *history;            /* array of {time_ms, event, detail}, newest last */
    bool removed;               /* deletion finished: drop the state */
};

/* What the adapters see of one side. */
struct side_observation {
    bool ready;        /* every deployment has its desired replicas ready */
    int ready_replicas;
    int total_replicas; /* alive, including starting and draining */
    int surplus_replicas; /* alive beyond the side's capacity: draining or stopping */
    int outdated_replicas; /* of an earlier in-place version, still to be replaced */
    bool unhealthy;     /* crash loop or failing health checks */
    const char *unhealthy_reason;
};

struct service_observation {
    struct side_observation sides[2];
};

enum rollout_command { COMMAND_NONE, COMMAND_ROLLBACK, COMMAND_RETRY };

struct rollout_input {
    const struct service_spec *desired; /* NULL: removed or invalid */
    bool desired_invalid;               /* the file exists but does not parse */
    const char *desired_error;          /* first error of an invalid file */
    const struct policy *policy;
    struct service_observation observation;
    enum rollout_command command;
    int rollback_surge; /* with COMMAND_ROLLBACK: a bound other than the rollout's, 0: its own */
    /* what the host has free for this service (its own usage included);
     * NULL when the host declares no inventory */
    const struct resource_need *available;
    long long now_ms;
};

struct rollout_result {
    bool changed;            /* something moved: apply and call again */
    long long wake_at_ms;    /* call again by then even if nothing happens; 0: no need */
    const char *reply;       /* answer to a command (static text) */
    bool command_failed;     /* the command could not be carried out */
};

struct service_state *service_state_new(const char *name);
void service_state_free(struct service_state *state);

struct rollout_result rollout_step(struct service_state *state, const struct rollout_input *input);

/* Where the policy's approval gate holds the running canary: the gate's
 * percent while it holds, -1 when there is no gate or a later commit
 * released it by raising rollout.canary_percent above it. */
int rollout_gate_holding(const struct service_state *state, const struct policy *policy);

const char *service_phase_name(enum service_phase phase);
int service_phase_from_name(const char *name);
/* The phase's meaning and what moves a service out of it (one line). */
const char *service_phase_description(enum service_phase phase);

/* A side's spec: another reference, NULL when the side is not used; caller frees. */
struct service_spec *side_spec(const struct side_state *side);

#endif
