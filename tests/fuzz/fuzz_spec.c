/*
 * fuzz_spec.c - libFuzzer target for the spec and policy parsers.
 *
 * Each input is handed, exactly as given (not NUL-terminated, so a read past
 * `length` is caught by ASan), to spec_parse() and to policy_parse(), and to
 * spec_guess_name() as an invalid file would be. What parses is then planned
 * so the planner, the capacity arithmetic and the JSON output also meet odd
 * but valid values: a parsed spec is planned as a create, as a change from
 * and to a fixed baseline, and as a delete; a parsed policy plans the
 * baseline's image bump. Every diagnostic is formatted (to /dev/null) so its
 * strings are read. Everything is freed: LeakSanitizer reports what is not.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "plan.h"
#include "plan_output.h"
#include "policy.h"
#include "spec.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

static const char baseline_policy_text[] = "name: production\n"
                                           "canary:\n"
                                           "  steps: [5, 10, 20, 30, 50, 75, 100]\n"
                                           "  step_duration: 20s\n"
                                           "  start_timeout: 10m\n"
                                           "  failure_threshold: 3\n"
                                           "heavyweight: canary\n"
                                           "on_failure: rollback\n"
                                           "timeout: 120m\n"
                                           "in_place:\n"
                                           "  wave_percent: 20\n";

#define BASELINE_SPEC(image)                                                                       \
    "name: fuzz\n"                                                                                 \
    "image_uri: registry.example.com/fuzz:" image "\n"                                             \
    "http_options: {port: 18080}\n"                                                                \
    "applications:\n"                                                                              \
    "  - name: fuzz\n"                                                                             \
    "    import_path: fuzz.app:model\n"                                                            \
    "    deployments:\n"                                                                           \
    "      - name: Model\n"                                                                        \
    "        num_replicas: 3\n"                                                                    \
    "        ray_actor_options: {num_cpus: 1, num_gpus: 0.5}\n"                                    \
    "rollout: {max_surge_percent: 50}\n"                                                           \
    "backend:\n"                                                                                   \
    "  process:\n"                                                                                 \
    "    applications:\n"                                                                          \
    "      - name: fuzz\n"                                                                         \
    "        command: [model-server, --port, \"{port}\"]\n"

static struct policy *baseline_policy;
static struct service_spec *baseline_old, *baseline_new;
static FILE *sink;

static void *parse_or_die(const char *text, int is_policy)
{
    struct diag diag = DIAG_INIT;
    void *result = is_policy ? (void *)policy_parse(text, strlen(text), "baseline.yaml", &diag)
                             : (void *)spec_parse(text, strlen(text), "baseline.yaml", &diag);
    if (!result) {
        for (size_t i = 0; i < diag.count; i++) {
            diag_format(&diag.entries[i], stderr);
            fputc('\n', stderr);
        }
        fputs("fuzz_spec: the built-in baseline does not parse; fix the fuzzer\n", stderr);
        abort();
    }
    diag_clear(&diag);
    return result;
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    baseline_policy = parse_or_die(baseline_policy_text, 1);
    baseline_old = parse_or_die(BASELINE_SPEC("1.0.0"), 0);
    baseline_new = parse_or_die(BASELINE_SPEC("1.1.0"), 0);
    sink = fopen("/dev/null", "w");
    if (!sink)
        abort();
    /* The baselines live for the whole run; LeakSanitizer sees them as reachable. */
    return 0;
}

static void drain_diag(struct diag *diag)
{
    for (size_t i = 0; i < diag->count; i++)
        diag_format(&diag->entries[i], sink);
    diag_clear(diag);
}

/* Renders plans as JSON and text, the two forms `rolld plan` writes. */
static void render(struct service_plan *plans, size_t count)
{
    json_t *json = plan_list_to_json(plans, count);
    char *text = json ? json_dumps(json, JSON_COMPACT) : NULL;
    free(text);
    json_decref(json);
    plan_list_write(plans, count, PLAN_FORMAT_TEXT, sink);
}

static void plan_spec(const struct service_spec *spec)
{
    struct service_plan plans[4];
    size_t count = 0;
    memset(plans, 0, sizeof(plans));
    if (plan_compute(spec, NULL, baseline_policy, &plans[count]) == 0)
        count++;
    else
        plan_clear(&plans[count]);
    if (plan_compute(spec, baseline_old, baseline_policy, &plans[count]) == 0)
        count++;
    else
        plan_clear(&plans[count]);
    if (plan_compute(baseline_new, spec, baseline_policy, &plans[count]) == 0)
        count++;
    else
        plan_clear(&plans[count]);
    if (plan_compute(NULL, spec, NULL, &plans[count]) == 0)
        count++;
    else
        plan_clear(&plans[count]);
    render(plans, count);
    for (size_t i = 0; i < count; i++)
        plan_clear(&plans[i]);
}

static void plan_with_policy(const struct policy *policy)
{
    struct service_plan plan;
    memset(&plan, 0, sizeof(plan));
    if (plan_compute(baseline_new, baseline_old, policy, &plan) == 0)
        render(&plan, 1);
    plan_clear(&plan);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *text = (const char *)data;
    struct diag diag = DIAG_INIT;

    struct service_spec *spec = spec_parse(text, size, "fuzz.yaml", &diag);
    drain_diag(&diag);
    if (spec) {
        plan_spec(spec);
        spec_free(spec);
    } else {
        free(spec_guess_name(text, size));
    }

    struct policy *policy = policy_parse(text, size, "fuzz.yaml", &diag);
    drain_diag(&diag);
    if (policy) {
        plan_with_policy(policy);
        policy_free(policy);
    }
    return 0;
}
