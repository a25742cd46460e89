#include "rollout.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "capacity.h"
#include "plan.h"

static const struct {
    const char *name;
    const char *description;
} phases[PHASE_COUNT] = {
    [PHASE_CREATING] = {"creating", "the first version is starting; becomes running when every "
                                    "deployment is ready, failed if it misses the start deadline"},
    [PHASE_RUNNING] = {"running", "the primary serves all traffic; a spec change starts an "
                                  "in-place update or a canary"},
    [PHASE_UPDATING_IN_PLACE] = {"updating_in_place",
                                 "a heavyweight change is applied in place: replicas are "
                                 "replaced in waves behind the router; running when none of "
                                 "the old ones is left"},
    [PHASE_CANARY_STARTING] = {"canary_starting",
                               "the canary is starting beside the primary with no traffic; moves "
                               "to canary_progressing when ready, rolling_back at the start "
                               "deadline"},
    [PHASE_CANARY_PROGRESSING] = {"canary_progressing",
                                  "traffic moves to the canary step by step; each step stays "
                                  "healthy for the policy's step_duration"},
    [PHASE_CANARY_PAUSED] = {"canary_paused",
                             "held at rollout.canary_percent; raising it (or 100) continues, "
                             "rolld rollback ends it"},
    [PHASE_CANARY_HELD] = {"canary_held",
                           "the canary failed under on_failure: hold; traffic is frozen until "
                           "rolld rollback or rolld retry"},
    [PHASE_PROMOTING] = {"promoting", "the canary takes all traffic and becomes primary; the old "
                                      "version's replicas are drained and stopped"},
    [PHASE_ROLLING_BACK] = {"rolling_back", "traffic returns to the primary and the canary is "
                                            "drained and stopped; then rolled_back"},
    [PHASE_ROLLED_BACK] = {"rolled_back", "the primary serves all traffic; the rejected version is "
                                          "not retried until its spec changes or rolld retry"},
    [PHASE_FAILED] = {"failed", "the first version could not start; a new spec or rolld retry "
                                "tries again"},
    [PHASE_BLOCKED] = {"blocked", "the change does not fit in the host's free resources; nothing "
                                  "was started; a smaller max_surge_percent, a smaller change or "
                                  "freed resources unblock it"},
    [PHASE_DELETING] = {"deleting", "the spec file was removed; the service's replicas are "
                                    "drained and stopped, then it is gone"},
};

const char *service_phase_name(enum service_phase phase)
{
    return phase < PHASE_COUNT ? phases[phase].name : "unknown";
}

const char *service_phase_description(enum service_phase phase)
{
    return phase < PHASE_COUNT ? phases[phase].description : "";
}

int service_phase_from_name(const char *name)
{
    for (int i = 0; i < PHASE_COUNT; i++)
        if (name && !strcmp(phases[i].name, name))
            return i;
    return -1;
}

struct service_state *service_state_new(const char *name)
{
    struct service_state *state = calloc(1, sizeof(*state));
    if (!state)
        return NULL;
    state->name = strdup(name);
    state->primary = state->canary = -1;
    state->gate_base = -1;
    state->rejected = json_array();
    state->history = json_array();
    if (!state->name || !state->rejected || !state->history) {
        service_state_free(state);
        return NULL;
    }
    return state;
}

static void side_clear(struct side_state *side)
{
    spec_free(side->spec);
    free(side->file);
    memset(side, 0, sizeof(*side));
}

void service_state_free(struct service_state *state)
{
    if (!state)
        return;
    for (int i = 0; i < 2; i++)
        side_clear(&state->sides[i]);
    free(state->name);
    free(state->rollback_reason);
    free(state->last_error);
    json_decref(state->rejected);
    json_decref(state->history);
    free(state);
}

struct service_spec *side_spec(const struct side_state *side)
{
    return side->used ? spec_ref(side->spec) : NULL;
}

static void side_set(struct side_state *side, const struct service_spec *spec, int capacity)
{
    /* new rollout settings for the same version keep the commit it came from */
    char commit[sizeof(side->commit)] = "";
    if (side->used && !strcmp(side->version, spec->version))
        memcpy(commit, side->commit, sizeof(commit));
    side_clear(side);
    memcpy(side->commit, commit, sizeof(commit));
    side->used = true;
    memcpy(side->version, spec->version, sizeof(side->version));
    side->spec = spec_ref((struct service_spec *)spec);
    side->file = strdup(spec->file);
    side->capacity = capacity;
}

static void history_add(struct service_state *state, long long now, const char *event,
                        const char *detail)
{
    json_array_append_new(state->history, json_pack("{s:I, s:s, s:s}", "time_ms",
                                                    (json_int_t)now, "event", event, "detail",
                                                    detail ? detail : ""));
    while (json_array_size(state->history) > ROLLOUT_HISTORY_MAX)
        json_array_remove(state->history, 0);
}

static void set_phase(struct service_state *state, enum service_phase phase, long long now)
{
    if (state->phase == phase)
        return;
    state->phase = phase;
    state->phase_since_ms = now;
}

static void set_text(char **field, const char *text)
{
    free(*field);
    *field = text ? strdup(text) : NULL;
}

static bool is_rejected(const struct service_state *state, const char *version)
{
    size_t i;
    json_t *item;
    json_array_foreach(state->rejected, i, item) if (!strcmp(json_string_value(item), version))
        return true;
    return false;
}

static const char *side_version_name(const struct side_state *side)
{
    const char *name = side->spec ? side->spec->version_name : NULL;
    return name ? name : side->version;
}

static int canary_surge(const struct service_state *state)
{
    return state->sides[state->canary].spec->rollout.max_surge_percent;
}

static int spec_canary_percent(const struct service_state *state)
{
    return state->sides[state->canary].spec->rollout.canary_percent;
}

int rollout_gate_holding(const struct service_state *state, const struct policy *policy)
{
    if (!policy || policy->approval_percent < 0 || state->canary < 0)
        return -1;
    int asked = spec_canary_percent(state);
    /* released: a commit after the one that started the canary raised canary_percent past
     * the gate (merging that pull request is the approval) */
    if (asked > policy->approval_percent && asked != state->gate_base)
        return -1;
    return policy->approval_percent;
}

/* Where the progression pauses: the spec's canary_percent, or the approval gate below it. */
static int effective_pause(const struct service_state *state, const struct policy *policy)
{
    int pause = spec_canary_percent(state);
    int gate = rollout_gate_holding(state, policy);
    if (gate >= 0 && (pause < 0 || pause > gate))
        pause = gate;
    return pause;
}

static bool canary_paused_by_spec(const struct service_state *state, const struct policy *policy)
{
    return effective_pause(state, policy) >= 0;
}

static void begin_rollback(struct service_state *state, const char *reason, bool reject,
                           long long now)
{
    state->rollback_surge = canary_surge(state);
    state->rollback_immediate = false;
    char detail[256];
    snprintf(detail, sizeof(detail), "%s: %s", side_version_name(&state->sides[state->canary]),
             reason);
    set_text(&state->rollback_reason, reason);
    state->reject_on_rollback = reject;
    history_add(state, now, "rollback_started", detail);
    set_phase(state, PHASE_ROLLING_BACK, now);
}

static int other_side(int side)
{
    return side == 0 ? 1 : 0;
}

/* The schedule of the running canary under its current rollout settings. */
static size_t canary_schedule(const struct service_state *state, const struct policy *policy,
                              struct capacity_step *steps)
{
    return capacity_schedule(state->sides[state->canary].spec->rollout.max_surge_percent,
                             effective_pause(state, policy), policy->steps, policy->step_count,
                             steps);
}

static long long rollout_timeout_ms(const struct service_state *state, const struct policy *policy)
{
    long long timeout = state->sides[state->canary].spec->rollout.timeout_s;
    long long seconds = timeout > 0 ? timeout : policy->timeout_s;
    return seconds * 1000;
}

static void wake(struct rollout_result *result, long long at)
{
    if (at > 0 && (result->wake_at_ms == 0 || at < result->wake_at_ms))
        result->wake_at_ms = at;
}

/* Rolling back. At once (unhealthy canary, or no surge bound): the primary
 * back to full capacity, all traffic to it as soon as it has a ready
 * replica, then the canary drained and stopped. Gradually under a surge
 * bound S, the forward schedule in reverse, keeping traffic(v) <= capacity(v)
 * and capacity(primary) + capacity(canary) <= 100 + S at every instant:
 * traffic back onto the primary's ready capacity, the canary shrunk to its
 * traffic, the primary grown within the budget, again. */
static void step_rollback(struct service_state *state, const struct rollout_input *in,
                          struct rollout_result *result)
{
    struct side_state *primary = &state->sides[state->primary];
    struct side_state *canary = &state->sides[state->canary];
    const struct side_observation *primary_obs = &in->observation.sides[state->primary];
    const struct side_observation *canary_obs = &in->observation.sides[state->canary];
    int surge = state->rollback_surge;
    if (state->rollback_immediate || surge <= 0) {
        /* all traffic to the primary's ready replicas first, then the
         * canary out, then the primary back to full capacity once the
         * canary's replicas (and their GPUs) are gone; only a primary
         * without a ready replica grows first */
        if (state->traffic > 0) {
            if (primary_obs->ready_replicas == 0 && !primary_obs->ready) {
                if (primary->capacity < 100) {
                    primary->capacity = 100;
                    result->changed = true;
                }
                return;
            }
            state->traffic = 0;
            result->changed = true;
            return;
        }
        if (canary->capacity > 0) {
            canary->capacity = 0;
            result->changed = true;
            return;
        }
        if (primary->capacity < 100) {
            if (surge > 0 && canary_obs->total_replicas > 0)
                return;
            primary->capacity = 100;
            result->changed = true;
            return;
        }
    } else if (state->traffic > 0 || primary->capacity < 100) {
        int target = 100 - primary->capacity > 0 ? 100 - primary->capacity : 0;
        if (target < state->traffic && primary_obs->ready) {
            state->traffic = target;
            result->changed = true;
            return;
        }
        if (canary->capacity > state->traffic) {
            canary->capacity = state->traffic;
            result->changed = true;
            return;
        }
        /* the canary's drained replicas (and their GPUs) leave first */
        if (canary_obs->surplus_replicas > 0)
            return;
        int room = 100 + surge - canary->capacity;
        if (room > 100)
            room = 100;
        if (room > primary->capacity) {
            primary->capacity = room;
            result->changed = true;
        }
        return;
    }
    if (canary->capacity > 0) {
        canary->capacity = 0;
        result->changed = true;
        return;
    }
    if (canary_obs->total_replicas > 0)
        return;
    char detail[256];
    snprintf(detail, sizeof(detail), "%s: %s", side_version_name(canary),
             state->rollback_reason ? state->rollback_reason : "");
    if (state->reject_on_rollback) {
        json_array_append_new(state->rejected, json_string(canary->version));
        set_text(&state->last_error, detail);
    }
    history_add(state, in->now_ms, "rolled_back", detail);
    side_clear(canary);
    state->canary = -1;
    state->traffic = 0;
    set_phase(state, state->reject_on_rollback ? PHASE_ROLLED_BACK : PHASE_RUNNING, in->now_ms);
    set_text(&state->rollback_reason, NULL);
    state->rollback_immediate = false;
    state->rollback_surge = 0;
    result->changed = true;
}

static void start_canary(struct service_state *state, const struct rollout_input *in,
                         struct rollout_result *result)
{
    int side = other_side(state->primary);
    struct capacity_step steps[CAPACITY_MAX_STEPS];
    side_set(&state->sides[side], in->desired, 0);
    state->canary = side;
    state->gate_base = spec_canary_percent(state);
    size_t n = canary_schedule(state, in->policy, steps);
    state->sides[side].capacity = n ? steps[0].canary : 100;
    state->traffic = 0;
    state->rollout_started_ms = in->now_ms;
    state->step_since_ms = in->now_ms;
    set_text(&state->last_error, NULL);
    char detail[128];
    snprintf(detail, sizeof(detail), "%s -> %s",
             side_version_name(&state->sides[state->primary]),
             side_version_name(&state->sides[side]));
    history_add(state, in->now_ms, "canary_started", detail);
    set_phase(state, PHASE_CANARY_STARTING, in->now_ms);
    result->changed = true;
}

static bool step_ahead(const struct capacity_step *s, const struct service_state *state)
{
    const struct side_state *p = &state->sides[state->primary];
    const struct side_state *c = &state->sides[state->canary];
    return s->traffic > state->traffic || s->primary < p->capacity || s->canary > c->capacity;
}

/* One move along the schedule. */
static void step_canary(struct service_state *state, const struct rollout_input *in,
                        struct rollout_result *result)
{
    const struct policy *policy = in->policy;
    struct side_state *primary = &state->sides[state->primary];
    struct side_state *canary = &state->sides[state->canary];
    const struct side_observation *canary_obs = &in->observation.sides[state->canary];
    const struct side_observation *primary_obs = &in->observation.sides[state->primary];
    long long now = in->now_ms;

    if (canary_obs->unhealthy) {
        char reason[192];
        snprintf(reason, sizeof(reason), "canary unhealthy: %s",
                 canary_obs->unhealthy_reason ? canary_obs->unhealthy_reason : "failing");
        if (policy->on_failure == ON_FAILURE_HOLD) {
            if (state->phase != PHASE_CANARY_HELD) {
                set_text(&state->last_error, reason);
                history_add(state, now, "canary_held", reason);
                set_phase(state, PHASE_CANARY_HELD, now);
                result->changed = true;
            }
            return;
        }
        begin_rollback(state, reason, true, now);
        /* DESIGN.md rule 4: an unhealthy canary without a pause returns all
         * traffic to the primary at once, whatever the surge bound */
        state->rollback_immediate = !canary_paused_by_spec(state, policy);
        result->changed = true;
        return;
    }
    if (state->phase == PHASE_CANARY_HELD)
        return; /* only the operator moves a held canary */
    /* a pause the spec asks for lasts until the spec changes (rule 2) */
    if (state->phase != PHASE_CANARY_PAUSED && state->phase != PHASE_PROMOTING) {
        if (now - state->rollout_started_ms >= rollout_timeout_ms(state, policy)) {
            begin_rollback(state, "rollout timed out", true, now);
            result->changed = true;
            return;
        }
        wake(result, state->rollout_started_ms + rollout_timeout_ms(state, policy));
    }
    if (state->traffic == 0 && !canary_obs->ready) {
        long long deadline = state->rollout_started_ms + policy->start_timeout_s * 1000;
        if (now >= deadline) {
            const char *reason = "canary not ready before the start deadline";
            if (policy->on_failure == ON_FAILURE_HOLD) {
                set_text(&state->last_error, reason);
                history_add(state, now, "canary_held", reason);
                set_phase(state, PHASE_CANARY_HELD, now);
            } else {
                begin_rollback(state, reason, true, now);
            }
            result->changed = true;
            return;
        }
        wake(result, deadline);
    }

    struct capacity_step steps[CAPACITY_MAX_STEPS];
    size_t n = canary_schedule(state, policy, steps);
    const struct capacity_step *next = NULL;
    for (size_t i = 0; i < n && !next; i++)
        if (step_ahead(&steps[i], state))
            next = &steps[i];

    if (!next) {
        if (state->traffic == 100 && primary->capacity == 0) {
            set_phase(state, PHASE_PROMOTING, now);
            if (primary_obs->total_replicas > 0)
                return;
            char detail[128];
            snprintf(detail, sizeof(detail), "%s is primary", side_version_name(canary));
            history_add(state, now, "promoted", detail);
            side_clear(primary);
            state->primary = state->canary;
            state->canary = -1;
            state->traffic = 0;
            set_phase(state, PHASE_RUNNING, now);
            result->changed = true;
            return;
        }
        if (state->traffic == 0 && !canary_obs->ready) {
            set_phase(state, PHASE_CANARY_STARTING, now);
            return; /* a pause at 0% still waits for a ready canary */
        }
        if (state->phase != PHASE_CANARY_PAUSED) {
            char detail[64];
            snprintf(detail, sizeof(detail), "paused at %d%%", state->traffic);
            history_add(state, now, "canary_paused", detail);
            set_phase(state, PHASE_CANARY_PAUSED, now);
            result->changed = true;
        }
        return;
    }

    if (next->canary > canary->capacity) {
        /* under a surge bound the primary's drained replicas must be gone
         * before the canary takes their room (GPUs are not shared) */
        if (canary->capacity > 0 && primary_obs->surplus_replicas > 0)
            return;
        canary->capacity = next->canary;
        result->changed = true;
        return;
    }
    if (next->traffic > state->traffic) {
        /* traffic moves only onto ready capacity, and each step holds */
        if (!canary_obs->ready || !primary_obs->ready) {
            set_phase(state, state->traffic == 0 ? PHASE_CANARY_STARTING : PHASE_CANARY_PROGRESSING,
                      now);
            return;
        }
        long long hold_until = state->step_since_ms + policy->step_duration_s * 1000;
        if (state->traffic > 0 && now < hold_until) {
            set_phase(state, PHASE_CANARY_PROGRESSING, now);
            wake(result, hold_until);
            return;
        }
        state->traffic = next->traffic;
        state->step_since_ms = now;
        char detail[64];
        snprintf(detail, sizeof(detail), "canary traffic %d%%", state->traffic);
        history_add(state, now, "traffic_shifted", detail);
        set_phase(state, PHASE_CANARY_PROGRESSING, now);
        result->changed = true;
        return;
    }
    if (next->primary < primary->capacity) {
        /* the last traffic step holds before the old version is retired */
        long long hold_until = state->step_since_ms + policy->step_duration_s * 1000;
        if (next->primary == 0 && now < hold_until) {
            wake(result, hold_until);
            return;
        }
        primary->capacity = next->primary;
        if (primary->capacity == 0)
            set_phase(state, PHASE_PROMOTING, now);
        result->changed = true;
    }
}

static void step_steady(struct service_state *state, const struct rollout_input *in,
                        struct rollout_result *result)
{
    const struct service_spec *desired = in->desired;
    struct side_state *primary = &state->sides[state->primary];
    if (!strcmp(desired->version, primary->version)) {
        if (!spec_same(desired, primary->spec)) {
            /* rollout settings or file moved; same version */
            side_set(primary, desired, primary->capacity);
            result->changed = true;
        }
        if (state->phase == PHASE_UPDATING_IN_PLACE) {
            const struct side_observation *obs = &in->observation.sides[state->primary];
            if (!obs->ready || obs->outdated_replicas > 0)
                return; /* the waves go on */
            history_add(state, in->now_ms, "updated_in_place", side_version_name(primary));
        }
        if (state->phase != PHASE_RUNNING) {
            set_phase(state, PHASE_RUNNING, in->now_ms);
            result->changed = true;
        }
        return;
    }
    if (is_rejected(state, desired->version)) {
        if (state->phase != PHASE_ROLLED_BACK) {
            set_phase(state, PHASE_ROLLED_BACK, in->now_ms);
            result->changed = true;
        }
        return;
    }
    struct service_spec *running = side_spec(primary);
    struct service_plan plan;
    int r = running ? plan_compute(desired, running, in->policy, &plan) : -1;
    if (r < 0) {
        spec_free(running);
        return;
    }
    if (plan.action == PLAN_CANARY && in->available) {
        /* the whole schedule must fit before anything starts */
        int surge = desired->rollout.max_surge_percent;
        struct resource_need need = inventory_need_rollout(desired, running, in->policy, surge);
        char reason[192], text[320];
        if (!inventory_fits(&need, in->available, reason, sizeof(reason))) {
            int fits = inventory_largest_surge(desired, running, in->policy, in->available);
            if (fits > 0)
                snprintf(text, sizeof(text),
                         "blocked: the rollout %s; the largest max_surge_percent that fits is %d",
                         reason, fits);
            else
                snprintf(text, sizeof(text),
                         "blocked: the rollout %s, and no max_surge_percent fits", reason);
            if (!state->last_error || strcmp(state->last_error, text) != 0) {
                set_text(&state->last_error, text);
                history_add(state, in->now_ms, "blocked", text + 9);
                result->changed = true;
            }
            set_phase(state, PHASE_BLOCKED, in->now_ms);
            spec_free(running);
            plan_clear(&plan);
            return;
        }
    }
    spec_free(running);
    enum plan_action action = plan.action;
    if (action == PLAN_INVALID && plan.errors.count) {
        char text[512];
        snprintf(text, sizeof(text), "%s: %s", plan.errors.entries[0].field,
                 plan.errors.entries[0].message);
        if (!state->last_error || strcmp(state->last_error, text) != 0) {
            set_text(&state->last_error, text);
            result->changed = true;
        }
    }
    plan_clear(&plan);
    if (action == PLAN_IN_PLACE_LIGHTWEIGHT || action == PLAN_IN_PLACE_HEAVYWEIGHT) {
        /* the compute adapter applies lightweight changes to the running
         * replicas and replaces them in waves for heavyweight ones */
        bool heavy = action == PLAN_IN_PLACE_HEAVYWEIGHT;
        const char *to = desired->version_name;
        char detail[128];
        snprintf(detail, sizeof(detail), "%s -> %s", side_version_name(primary),
                 to ? to : desired->version);
        side_set(primary, desired, 100);
        history_add(state, in->now_ms, heavy ? "updating_in_place" : "updated_in_place", detail);
        set_phase(state, heavy ? PHASE_UPDATING_IN_PLACE : PHASE_RUNNING, in->now_ms);
        result->changed = true;
        return;
    }
    if (action == PLAN_CANARY)
        start_canary(state, in, result);
}

static void step_create(struct service_state *state, const struct rollout_input *in,
                        struct rollout_result *result)
{
    struct side_state *side = &state->sides[0];
    if (!in->desired && !side->used)
        return;
    if (in->desired && (!side->used || strcmp(side->version, in->desired->version) != 0)) {
        if (is_rejected(state, in->desired->version)) {
            set_phase(state, PHASE_FAILED, in->now_ms);
            return;
        }
        if (in->available) {
            struct resource_need need = inventory_need_version(in->desired, 100);
            char reason[192], text[256];
            if (!inventory_fits(&need, in->available, reason, sizeof(reason))) {
                snprintf(text, sizeof(text), "blocked: the first version %s", reason);
                if (!state->last_error || strcmp(state->last_error, text) != 0) {
                    set_text(&state->last_error, text);
                    history_add(state, in->now_ms, "blocked", text + 9);
                    result->changed = true;
                }
                if (state->phase != PHASE_BLOCKED)
                    result->changed = true;
                set_phase(state, PHASE_BLOCKED, in->now_ms);
                return;
            }
        }
        side_set(side, in->desired, 100);
        state->rollout_started_ms = in->now_ms;
        history_add(state, in->now_ms, "creating", side_version_name(side));
        set_phase(state, PHASE_CREATING, in->now_ms);
        result->changed = true;
        return;
    }
    if (in->desired && !spec_same(side->spec, in->desired)) {
        side_set(side, in->desired, 100);
        result->changed = true;
    }
    const struct side_observation *obs = &in->observation.sides[0];
    if (obs->ready) {
        state->primary = 0;
        state->traffic = 0;
        history_add(state, in->now_ms, "created", side_version_name(side));
        set_phase(state, PHASE_RUNNING, in->now_ms);
        set_text(&state->last_error, NULL);
        result->changed = true;
        return;
    }
    long long deadline = state->rollout_started_ms + in->policy->start_timeout_s * 1000;
    if (state->phase == PHASE_CREATING && (in->now_ms >= deadline || obs->unhealthy)) {
        char text[256];
        snprintf(text, sizeof(text), "%s did not become ready: %s", side_version_name(side),
                 obs->unhealthy ? (obs->unhealthy_reason ? obs->unhealthy_reason : "unhealthy")
                                : "start deadline passed");
        set_text(&state->last_error, text);
        history_add(state, in->now_ms, "failed", text);
        set_phase(state, PHASE_FAILED, in->now_ms);
        result->changed = true;
        return;
    }
    if (state->phase == PHASE_CREATING)
        wake(result, deadline);
}

static void handle_command(struct service_state *state, const struct rollout_input *in,
                           struct rollout_result *result)
{
    if (in->command == COMMAND_ROLLBACK) {
        if (state->canary < 0 || state->phase == PHASE_ROLLING_BACK) {
            result->reply = state->phase == PHASE_ROLLING_BACK ? "a rollback is already running"
                                                               : "no rollout in progress";
            result->command_failed = true;
            return;
        }
        begin_rollback(state, "manual rollback", true, in->now_ms);
        if (in->rollback_surge > 0)
            state->rollback_surge = in->rollback_surge;
        result->reply = "rollback started";
        result->changed = true;
        return;
    }
    if (in->command == COMMAND_RETRY) {
        const char *version = in->desired ? in->desired->version : NULL;
        bool held = state->phase == PHASE_CANARY_HELD;
        if (held) {
            /* retrying a held canary: let it go on from where it is, with
             * fresh deadlines */
            state->rollout_started_ms = in->now_ms;
            state->step_since_ms = in->now_ms;
            set_text(&state->last_error, NULL);
            history_add(state, in->now_ms, "retry", "held canary released");
            set_phase(state, PHASE_CANARY_PROGRESSING, in->now_ms);
            result->reply = "held canary released";
            result->changed = true;
            return;
        }
        if (state->phase == PHASE_FAILED && state->primary < 0) {
            state->rollout_started_ms = in->now_ms;
            set_text(&state->last_error, NULL);
            history_add(state, in->now_ms, "retry", "starting the first version again");
            set_phase(state, PHASE_CREATING, in->now_ms);
            result->reply = "starting the first version again";
            result->changed = true;
            return;
        }
        if (!version || !is_rejected(state, version)) {
            result->reply = "the desired version was not rolled back; nothing to retry";
            result->command_failed = true;
            return;
        }
        for (size_t i = json_array_size(state->rejected); i > 0; i--)
            if (!strcmp(json_string_value(json_array_get(state->rejected, i - 1)), version))
                json_array_remove(state->rejected, i - 1);
        history_add(state, in->now_ms, "retry", version);
        set_text(&state->last_error, NULL);
        if (state->phase == PHASE_FAILED)
            set_phase(state, PHASE_CREATING, in->now_ms);
        result->reply = "retrying the rolled-back version";
        result->changed = true;
    }
}

static struct rollout_result rollout_step_once(struct service_state *state,
                                               const struct rollout_input *in);

struct rollout_result rollout_step(struct service_state *state, const struct rollout_input *in)
{
    enum service_phase before = state->phase;
    struct rollout_result result = rollout_step_once(state, in);
    if (state->phase != before)
        result.changed = true; /* so that the agent saves and reports it */
    return result;
}

static struct rollout_result rollout_step_once(struct service_state *state,
                                               const struct rollout_input *in)
{
    struct rollout_result result = {0};
    if (in->command != COMMAND_NONE) {
        handle_command(state, in, &result);
        return result;
    }

    if (!in->desired && !in->desired_invalid) {
        /* the spec was removed: drain everything, then forget the service */
        if (state->phase != PHASE_DELETING) {
            history_add(state, in->now_ms, "deleting", "");
            set_phase(state, PHASE_DELETING, in->now_ms);
            result.changed = true;
        }
        for (int i = 0; i < 2; i++) {
            if (state->sides[i].used && state->sides[i].capacity > 0) {
                state->sides[i].capacity = 0;
                result.changed = true;
            }
        }
        if (in->observation.sides[0].total_replicas == 0 &&
            in->observation.sides[1].total_replicas == 0 && !state->removed) {
            state->removed = true;
            result.changed = true;
        }
        return result;
    }
    if (in->desired_invalid) {
        /* an invalid spec never disturbs what runs; it only says why */
        const char *text = in->desired_error ? in->desired_error : "the spec is invalid";
        if (!state->last_error || strcmp(state->last_error, text) != 0) {
            set_text(&state->last_error, text);
            result.changed = true;
        }
        if (state->primary < 0 && state->phase != PHASE_DELETING) {
            /* a first version that is starting goes on starting */
            step_create(state, in, &result);
            return result;
        }
        if (state->canary < 0 || state->phase == PHASE_CANARY_HELD)
            return result;
        /* a running rollout goes on under the spec it started with */
    }
    if (state->phase == PHASE_DELETING) {
        /* the file came back before deletion finished: the primary comes
         * back; a canary that was running is dropped (all traffic to the
         * primary once it has a ready replica), and the next pass decides
         * afresh what the spec asks for */
        int main_side = state->primary >= 0 ? state->primary : 0;
        if (state->sides[main_side].used)
            state->sides[main_side].capacity = 100;
        if (state->canary >= 0 && state->primary >= 0) {
            begin_rollback(state, "the spec came back while the service was being deleted",
                           false, in->now_ms);
            state->rollback_immediate = true;
        } else {
            set_phase(state, state->primary >= 0 ? PHASE_RUNNING : PHASE_CREATING, in->now_ms);
            state->rollout_started_ms = in->now_ms;
        }
        history_add(state, in->now_ms, "restored", "");
        result.changed = true;
        return result;
    }
    if (state->primary < 0) {
        if (in->desired)
            step_create(state, in, &result);
        return result;
    }
    if (state->canary < 0) {
        if (in->desired)
            step_steady(state, in, &result);
        return result;
    }
    if (state->phase == PHASE_ROLLING_BACK) {
        step_rollback(state, in, &result);
        return result;
    }
    const struct service_spec *desired = in->desired;
    struct side_state *canary = &state->sides[state->canary];
    if (desired && strcmp(desired->version, canary->version) != 0) {
        bool back_to_primary = !strcmp(desired->version, state->sides[state->primary].version);
        begin_rollback(state,
                       back_to_primary ? "the spec went back to the primary version"
                                       : "a newer version replaces this canary",
                       false, in->now_ms);
        result.changed = true;
        return result;
    }
    if (desired && !spec_same(desired, canary->spec)) {
        /* same version, new rollout settings (canary_percent, surge, timeout) */
        int capacity = canary->capacity;
        side_set(canary, desired, capacity);
        history_add(state, in->now_ms, "rollout_settings_changed", "");
        if (state->phase == PHASE_CANARY_PAUSED) {
            /* time spent paused (waiting for an approval, say) does not count
             * toward rollout.timeout */
            state->rollout_started_ms += in->now_ms - state->phase_since_ms;
            set_phase(state, PHASE_CANARY_PROGRESSING, in->now_ms);
        }
        result.changed = true;
        return result;
    }
    step_canary(state, in, &result);
    return result;
}
