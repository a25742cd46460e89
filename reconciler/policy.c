#include "policy.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "decode.h"
#include "yaml_tree.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static const char *const heavyweight_modes[] = {"canary", "in_place", NULL};
static const char *const failure_modes[] = {"rollback", "hold", NULL};

static void canary_check(struct decode_context *ctx, const struct ynode *node, json_t *out,
                         const char *path)
{
    json_t *steps = json_object_get(out, "steps");
    const struct ynode *steps_node = ynode_map_get(node, "steps");
    if (!steps)
        return;
    /* a step refused on its own is already reported and missing from steps,
     * whose indices then no longer match the file's */
    if (steps_node && steps_node->kind == YNODE_SEQUENCE &&
        json_array_size(steps) != steps_node->count)
        return;
    if (json_array_size(steps) == 0 || json_array_size(steps) > POLICY_MAX_STEPS) {
        decode_error(ctx, steps_node, "canary.steps", "give 1 to %d traffic steps",
                     POLICY_MAX_STEPS);
        return;
    }
    json_int_t previous = 0;
    for (size_t i = 0; i < json_array_size(steps); i++) {
        json_int_t step = json_integer_value(json_array_get(steps, i));
        if (step <= previous) {
            decode_error(ctx, steps_node->items[i], "canary.steps",
                         "steps must increase; %lld follows %lld", (long long)step,
                         (long long)previous);
            return;
        }
        previous = step;
    }
    if (previous != 100)
        decode_error(ctx, steps_node, "canary.steps",
                     "the last step must be 100 so that a rollout can complete");
}

static const struct field_schema canary_fields[] = {
    {"steps", FIELD_INT_LIST, 1, 100, NULL, NULL, false, "[5,10,20,30,50,75,100]"},
    {"step_duration", FIELD_DURATION, 0, 86400, NULL, NULL, false, "20"},
    {"start_timeout", FIELD_DURATION, 1, 86400, NULL, NULL, false, "600"},
    {"failure_threshold", FIELD_INT, 1, 1000, NULL, NULL, false, "3"},
};
static const struct object_schema canary_object = {canary_fields, COUNT(canary_fields),
                                                   canary_check};

static const struct field_schema in_place_fields[] = {
    {"wave_percent", FIELD_INT, 1, 100, NULL, NULL, false, "20"},
};
static const struct object_schema in_place_object = {in_place_fields, COUNT(in_place_fields),
                                                     NULL};

static const struct field_schema approval_fields[] = {
    {"canary_percent", FIELD_INT, 0, 99, NULL, NULL, true, NULL},
};
static const struct object_schema approval_object = {approval_fields, COUNT(approval_fields),
                                                     NULL};

static const struct field_schema policy_fields[] = {
    {"name", FIELD_NAME, 0, 0, NULL, NULL, true, NULL},
    {"description", FIELD_STRING, 0, 0, NULL, NULL, false, NULL},
    {"canary", FIELD_OBJECT, 0, 0, &canary_object, NULL, false, "{}"},
    {"heavyweight", FIELD_ENUM, 0, 0, NULL, heavyweight_modes, false, "\"canary\""},
    {"on_failure", FIELD_ENUM, 0, 0, NULL, failure_modes, false, "\"rollback\""},
    {"timeout", FIELD_DURATION, 1, 30 * 86400, NULL, NULL, false, "7200"},
    {"in_place", FIELD_OBJECT, 0, 0, &in_place_object, NULL, false, "{}"},
    {"approval", FIELD_OBJECT, 0, 0, &approval_object, NULL, false, NULL},
    {"require_signed_commits", FIELD_BOOL, 0, 0, NULL, NULL, false, "false"},
};
static const struct object_schema policy_object = {policy_fields, COUNT(policy_fields), NULL};

static long long integer_or(json_t *value, long long fallback)
{
    return json_is_integer(value) ? (long long)json_integer_value(value) : fallback;
}

struct policy *policy_parse(const char *text, size_t length, const char *file, struct diag *diag)
{
    size_t before = diag->count;
    struct ytree *tree = ytree_parse(text, length, file, diag);
    if (!tree)
        return NULL;
    struct decode_context ctx = {.file = file, .diag = diag};
    const struct ynode *root = ytree_root(tree);
    json_t *doc = root ? decode_object(&ctx, root, &policy_object, "") : NULL;
    ytree_free(tree);
    if (!doc || ctx.errors) {
        json_decref(doc);
        if (diag->count == before)
            diag_add(diag, file, 1, 1, "", "not a valid policy (is the file empty?)");
        return NULL;
    }
    struct policy *policy = calloc(1, sizeof(*policy));
    if (!policy) {
        json_decref(doc);
        return NULL;
    }
    policy->name = strdup(json_string_value(json_object_get(doc, "name")));
    policy->file = strdup(file);
    json_t *canary = json_object_get(doc, "canary");
    json_t *steps = json_object_get(canary, "steps");
    /* canary defaults are applied only when the canary mapping exists */
    if (!steps) {
        static const int fallback[] = {5, 10, 20, 30, 50, 75, 100};
        memcpy(policy->steps, fallback, sizeof(fallback));
        policy->step_count = COUNT(fallback);
    } else {
        policy->step_count = json_array_size(steps);
        for (size_t i = 0; i < policy->step_count; i++)
            policy->steps[i] = (int)json_integer_value(json_array_get(steps, i));
    }
    policy->step_duration_s = integer_or(json_object_get(canary, "step_duration"), 20);
    policy->start_timeout_s = integer_or(json_object_get(canary, "start_timeout"), 600);
    policy->failure_threshold = (int)integer_or(json_object_get(canary, "failure_threshold"), 3);
    policy->timeout_s = integer_or(json_object_get(doc, "timeout"), 7200);
    policy->heavyweight =
        !strcmp(json_string_value(json_object_get(doc, "heavyweight")), "in_place")
            ? HEAVYWEIGHT_IN_PLACE
            : HEAVYWEIGHT_CANARY;
    policy->on_failure = !strcmp(json_string_value(json_object_get(doc, "on_failure")), "hold")
                             ? ON_FAILURE_HOLD
                             : ON_FAILURE_ROLLBACK;
    policy->wave_percent =
        (int)integer_or(json_object_get(json_object_get(doc, "in_place"), "wave_percent"), 20);
    json_t *approval = json_object_get(json_object_get(doc, "approval"), "canary_percent");
    policy->approval_percent = approval ? (int)json_integer_value(approval) : -1;
    policy->require_signed_commits = json_is_true(json_object_get(doc, "require_signed_commits"));
    json_decref(doc);
    if (!policy->name || !policy->file) {
        policy_free(policy);
        return NULL;
    }
    return policy;
}

void policy_free(struct policy *policy)
{
    if (!policy)
        return;
    free(policy->name);
    free(policy->file);
    free(policy);
}

const struct policy *policy_set_find(const struct policy_set *set, const char *name)
{
    for (size_t i = 0; i < set->count; i++)
        if (!strcmp(set->items[i]->name, name))
            return set->items[i];
    return NULL;
}

int policy_set_add(struct policy_set *set, struct policy *policy)
{
    struct policy **grown = realloc(set->items, (set->count + 1) * sizeof(*grown));
    if (!grown)
        return -ENOMEM;
    set->items = grown;
    set->items[set->count++] = policy;
    return 0;
}

void policy_set_clear(struct policy_set *set)
{
    for (size_t i = 0; i < set->count; i++)
        policy_free(set->items[i]);
    free(set->items);
    set->items = NULL;
    set->count = 0;
}
