/* tests for reconciler/plan.c: every action, what decides it, the replicas a
 * heavyweight change replaces, canary schedules with replica counts, and the
 * peak resources of a change */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "plan.h"
#include "plan_output.h"
#include "unit_helpers.h"

static struct policy *production;
static struct policy *development;

static int setup(void **state)
{
    (void)state;
    production = load_shipped_policy("production");
    development = load_shipped_policy("development");
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    policy_free(production);
    policy_free(development);
    return 0;
}

/* One service, two applications; each field below replaces part of it. */
struct variant {
    const char *top;              /* extra top-level lines */
    const char *import_path;      /* of application text */
    const char *runtime_env;      /* of application text, flow mapping */
    const char *args;             /* of application text, flow mapping */
    const char *model;            /* the lines of deployment Model after its name */
    const char *rollout;          /* lines under rollout: */
    const char *text_process;     /* extra lines of text's process entry */
    const char *extra_deployment; /* lines of a third deployment of text, or NULL */
};

static struct service_spec *make(const struct variant *v)
{
    char text[4096];
    snprintf(text, sizeof(text),
             "name: svc\n"
             "%s"
             "applications:\n"
             "  - name: text\n"
             "    route_prefix: /text\n"
             "    import_path: %s\n"
             "    runtime_env: %s\n"
             "    args: %s\n"
             "    deployments:\n"
             "      - name: Model\n"
             "%s"
             "      - name: Tokenizer\n"
             "        num_replicas: 1\n"
             "%s"
             "  - name: image\n"
             "    route_prefix: /image\n"
             "    import_path: app:image\n"
             "    deployments:\n"
             "      - name: Vision\n"
             "        num_replicas: 1\n"
             "rollout:\n"
             "  policy: production\n"
             "%s"
             "backend:\n"
             "  process:\n"
             "    applications:\n"
             "      - name: text\n"
             "        command: [model-server]\n"
             "        ingress: Model\n"
             "%s"
             "      - name: image\n"
             "        command: [model-server]\n",
             v->top ? v->top : "", v->import_path ? v->import_path : "app:text",
             v->runtime_env ? v->runtime_env : "{pip: [torch]}", v->args ? v->args : "{size: 1}",
             v->model ? v->model
                      : "        num_replicas: 2\n"
                        "        user_config: {temperature: 0.5}\n",
             v->extra_deployment ? v->extra_deployment : "", v->rollout ? v->rollout : "",
             v->text_process ? v->text_process : "        reconfigure_path: /reconfigure\n");
    return parse_ok(text);
}

#define MAKE(...) make(&(struct variant){__VA_ARGS__})

static void print_plan(const struct service_plan *plan)
{
    fprintf(stderr, "  plan %s: %s\n", plan->name, plan_action_name(plan->action));
    for (size_t i = 0; i < plan->change_count; i++)
        fprintf(stderr, "    %s %s %s%s\n", plan->changes[i].path,
                change_kind_name(plan->changes[i].kind), change_class_name(plan->changes[i].class),
                plan->changes[i].decided ? " decided" : "");
    for (size_t i = 0; i < plan->replaced_count; i++)
        fprintf(stderr, "    replaces %s/%s\n", plan->replaced[i].application,
                plan->replaced[i].deployment);
    print_diag(&plan->errors);
}

/* Computes a plan and checks its action. */
static void compute(const struct service_spec *new_spec, const struct service_spec *old_spec,
                    const struct policy *policy, enum plan_action action, struct service_plan *plan)
{
    assert_int_equal(plan_compute(new_spec, old_spec, policy, plan), 0);
    if (plan->action != action) {
        print_plan(plan);
        fail_msg("action %s, expected %s", plan_action_name(plan->action),
                 plan_action_name(action));
    }
}

static const struct plan_change *find_change(const struct service_plan *plan, const char *path)
{
    for (size_t i = 0; i < plan->change_count; i++)
        if (!strcmp(plan->changes[i].path, path))
            return &plan->changes[i];
    print_plan(plan);
    fail_msg("no change at %s", path);
    return NULL;
}

static void expect_decided(const struct service_plan *plan, const char *path,
                           enum change_class class, bool decided)
{
    const struct plan_change *c = find_change(plan, path);
    assert_int_equal(c->class, class);
    if (c->decided != decided) {
        print_plan(plan);
        fail_msg("%s decided=%d, expected %d", path, c->decided, decided);
    }
}

static bool replaces(const struct service_plan *plan, const char *application,
                     const char *deployment)
{
    for (size_t i = 0; i < plan->replaced_count; i++)
        if (!strcmp(plan->replaced[i].application, application) &&
            !strcmp(plan->replaced[i].deployment, deployment))
            return true;
    return false;
}

static size_t column_of(const struct service_plan *plan, const char *application,
                        const char *deployment)
{
    for (size_t i = 0; i < plan->deployment_count; i++)
        if (!strcmp(plan->deployments[i].application, application) &&
            !strcmp(plan->deployments[i].deployment, deployment))
            return i;
    fail_msg("no column for %s/%s", application, deployment);
    return 0;
}

/* ---- the seven actions ---- */

static void test_create(void **state)
{
    (void)state;
    struct service_spec *spec = MAKE(0);
    struct service_plan plan;
    compute(spec, NULL, production, PLAN_CREATE, &plan);
    assert_string_equal(plan.name, "svc");
    assert_string_equal(plan.file, "test.yaml");
    assert_string_equal(plan.new_version, spec->version);
    assert_string_equal(plan.old_version, "");
    assert_string_equal(plan.policy_name, "production");
    assert_int_equal(plan.change_count, 0);
    assert_int_equal(plan.step_count, 0);
    assert_int_equal(plan.deployment_count, 3);
    /* Model 2 + Tokenizer 1 + Vision 1, one CPU each by default */
    assert_int_equal(plan.peak.replicas, 4);
    assert_true(plan.peak.cpus == 4.0);
    assert_true(plan.peak.gpus == 0.0);
    plan_clear(&plan);
    spec_free(spec);
}

static void test_none_and_rollout_only(void **state)
{
    (void)state;
    struct service_spec *a = MAKE(0);
    struct service_spec *b = MAKE(0);
    struct service_spec *paused = MAKE(.rollout = "  canary_percent: 10\n");
    struct service_plan plan;
    compute(b, a, production, PLAN_NONE, &plan);
    assert_false(plan.rollout_changed);
    assert_int_equal(plan.change_count, 0);
    assert_string_equal(plan.old_version, plan.new_version);
    assert_int_equal(plan.peak.replicas, 4);
    plan_clear(&plan);

    /* the rollout section is not part of the version: nothing to roll out */
    compute(paused, a, production, PLAN_NONE, &plan);
    assert_true(plan.rollout_changed);
    assert_int_equal(plan.change_count, 0);
    assert_int_equal(plan.step_count, 0);
    plan_clear(&plan);
    spec_free(a);
    spec_free(b);
    spec_free(paused);
}

/* Applications listed in another order are the same version, and the same
 * rollout section is no rollout change, though the documents' texts differ. */
static void test_reordered_applications(void **state)
{
    (void)state;
#define APP(n) "  - name: " n "\n    route_prefix: /" n "\n    import_path: app:" n \
               "\n    deployments:\n      - name: Model\n"
#define ENTRY(n) "      - name: " n "\n        command: [model-server]\n"
    static const char ab[] = "name: svc\napplications:\n" APP("a") APP("b")
        "rollout: {canary_percent: 10}\nbackend:\n  process:\n    applications:\n" ENTRY("a") ENTRY("b");
    static const char ba[] = "name: svc\napplications:\n" APP("b") APP("a")
        "rollout: {canary_percent: 10}\nbackend:\n  process:\n    applications:\n" ENTRY("b") ENTRY("a");
    static const char ba_raised[] = "name: svc\napplications:\n" APP("b") APP("a")
        "rollout: {canary_percent: 20}\nbackend:\n  process:\n    applications:\n" ENTRY("b") ENTRY("a");
#undef APP
#undef ENTRY
    struct service_spec *a = parse_ok(ab), *b = parse_ok(ba), *raised = parse_ok(ba_raised);
    assert_string_equal(a->version, b->version);
    assert_false(spec_same(a, b));
    struct service_plan plan;
    compute(b, a, production, PLAN_NONE, &plan);
    assert_false(plan.rollout_changed);
    plan_clear(&plan);
    compute(raised, a, production, PLAN_NONE, &plan);
    assert_true(plan.rollout_changed);
    plan_clear(&plan);
    spec_free(a);
    spec_free(b);
    spec_free(raised);
}

static void test_delete(void **state)
{
    (void)state;
    struct service_spec *old = MAKE(0);
    struct service_plan plan;
    compute(NULL, old, NULL, PLAN_DELETE, &plan);
    assert_string_equal(plan.name, "svc");
    assert_string_equal(plan.file, "test.yaml");
    assert_string_equal(plan.old_version, old->version);
    assert_string_equal(plan.new_version, "");
    assert_int_equal(plan.errors.count, 0);
    plan_clear(&plan);
    spec_free(old);
}

static void test_in_place_lightweight(void **state)
{
    (void)state;
    struct service_spec *old = MAKE(0);
    struct service_spec *new = MAKE(.model = "        num_replicas: 3\n"
                                             "        user_config: {temperature: 0.7}\n"
                                             "        max_ongoing_requests: 9\n");
    struct service_plan plan;
    compute(new, old, production, PLAN_IN_PLACE_LIGHTWEIGHT, &plan);
    assert_int_equal(plan.change_count, 3);
    /* with a reconfigure endpoint user_config is lightweight */
    expect_decided(&plan, "applications[text].deployments[Model].num_replicas", CLASS_LIGHTWEIGHT,
                   true);
    expect_decided(&plan, "applications[text].deployments[Model].user_config", CLASS_LIGHTWEIGHT,
                   true);
    expect_decided(&plan, "applications[text].deployments[Model].max_ongoing_requests",
                   CLASS_LIGHTWEIGHT, true);
    assert_int_equal(plan.replaced_count, 0);
    assert_int_equal(plan.step_count, 0);
    /* each deployment at the larger of its counts: 3 + 1 + 1 */
    assert_int_equal(plan.peak.replicas, 5);
    plan_clear(&plan);
    spec_free(old);
    spec_free(new);
}

static void test_in_place_heavyweight_on_development_policy(void **state)
{
    (void)state;
    struct service_spec *old = MAKE(0);
    struct service_spec *new = MAKE(.import_path = "app:text_v2");
    struct service_plan plan;
    compute(new, old, development, PLAN_IN_PLACE_HEAVYWEIGHT, &plan);
    assert_string_equal(plan.policy_name, "development");
    assert_int_equal(plan.change_count, 1);
    expect_decided(&plan, "applications[text].import_path", CLASS_HEAVYWEIGHT, true);
    /* an application-level change replaces every deployment of that application */
    assert_int_equal(plan.replaced_count, 2);
    assert_true(replaces(&plan, "text", "Model"));
    assert_true(replaces(&plan, "text", "Tokenizer"));
    assert_false(replaces(&plan, "image", "Vision"));
    assert_int_equal(plan.step_count, 0);
    /* old replicas plus one wave (50% on development) of each replaced
     * deployment: Model 2 + 1, Tokenizer 1 + 1, Vision 1 */
    assert_int_equal(plan.peak.replicas, 6);
    assert_true(plan.peak.cpus == 6.0);
    plan_clear(&plan);

    /* the same change on production goes through a canary */
    compute(new, old, production, PLAN_CANARY, &plan);
    expect_decided(&plan, "applications[text].import_path", CLASS_HEAVYWEIGHT, true);
    assert_int_equal(plan.replaced_count, 0); /* a canary replaces the whole version */
    plan_clear(&plan);
    spec_free(old);
    spec_free(new);
}

static void test_canary(void **state)
{
    (void)state;
    struct service_spec *old = MAKE(0);
    struct service_spec *new = MAKE(.top = "image_uri: registry.example.com/svc:2\n");
    struct service_plan plan;
    compute(new, old, production, PLAN_CANARY, &plan);
    assert_int_equal(plan.change_count, 1);
    expect_decided(&plan, "image_uri", CLASS_CANARY_ONLY, true);
    assert_int_equal(find_change(&plan, "image_uri")->kind, CHANGE_ADDED);
    assert_int_equal(plan.max_surge_percent, 0);
    assert_int_equal(plan.canary_percent, -1);
    /* without surge: canary at full capacity, traffic along production's
     * steps, then the primary retired */
    static const int traffic[] = {0, 5, 10, 20, 30, 50, 75, 100, 100};
    assert_int_equal(plan.step_count, 9);
    for (size_t s = 0; s < plan.step_count; s++) {
        assert_int_equal(plan.steps[s].capacity.traffic, traffic[s]);
        assert_int_equal(plan.steps[s].capacity.canary, 100);
        assert_int_equal(plan.steps[s].capacity.primary, s + 1 == plan.step_count ? 0 : 100);
        assert_false(plan.steps[s].pause);
    }
    size_t model = column_of(&plan, "text", "Model");
    assert_int_equal(plan.steps[0].replicas[model].primary, 2);
    assert_int_equal(plan.steps[0].replicas[model].canary, 2);
    assert_int_equal(plan.steps[8].replicas[model].primary, 0);
    /* both versions at full size at once: 4 + 4 replicas */
    assert_int_equal(plan.peak.replicas, 8);
    plan_clear(&plan);
    spec_free(old);
    spec_free(new);
}

static void test_invalid_when_in_place_cannot_be(void **state)
{
    (void)state;
    struct service_spec *old = MAKE(0);
    struct service_spec *new =
        MAKE(.top = "image_uri: registry.example.com/svc:2\n", .rollout = "  strategy: in_place\n",
             .model = "        num_replicas: 3\n"
                      "        user_config: {temperature: 0.5}\n");
    struct service_plan plan;
    compute(new, old, production, PLAN_INVALID, &plan);
    assert_int_equal(plan.errors.count, 1);
    const struct diag_entry *e = &plan.errors.entries[0];
    assert_string_equal(e->field, "rollout.strategy");
    assert_string_equal(e->file, "test.yaml");
    assert_non_null(strstr(e->message, "image_uri changed"));
    assert_non_null(strstr(e->message, "set strategy to auto or canary"));
    assert_int_equal(plan.step_count, 0);
    plan_clear(&plan);

    /* every such field is named */
    struct service_spec *both = MAKE(.top = "image_uri: registry.example.com/svc:2\ncloud: other\n",
                                     .rollout = "  strategy: in_place\n");
    compute(both, old, development, PLAN_INVALID, &plan);
    assert_int_equal(plan.errors.count, 2);
    assert_true(strstr(plan.errors.entries[0].message, "image_uri") ||
                strstr(plan.errors.entries[1].message, "image_uri"));
    assert_true(strstr(plan.errors.entries[0].message, "cloud") ||
                strstr(plan.errors.entries[1].message, "cloud"));
    plan_clear(&plan);
    spec_free(both);
    spec_free(old);
    spec_free(new);
}

static void test_invalid_without_policy(void **state)
{
    (void)state;
    struct service_spec *old = MAKE(0);
    struct service_spec *new = MAKE(.model = "        num_replicas: 3\n");
    struct service_plan plan;
    compute(new, old, NULL, PLAN_INVALID, &plan);
    assert_int_equal(plan.errors.count, 1);
    assert_string_equal(plan.errors.entries[0].field, "rollout.policy");
    assert_non_null(strstr(plan.errors.entries[0].message, "no policy named 'production'"));
    plan_clear(&plan);
    spec_free(old);
    spec_free(new);
}

static void test_plan_invalid_keeps_the_errors(void **state)
{
    (void)state;
    struct diag errors = DIAG_INIT;
    diag_add(&errors, "svc.yaml", 3, 7, "name", "'Svc' is not a valid name");
    diag_add(&errors, "svc.yaml", 9, 1, "applications", "required field");
    struct service_plan plan;
    assert_int_equal(plan_invalid("svc", "svc.yaml", &errors, &plan), 0);
    assert_int_equal(plan.action, PLAN_INVALID);
    assert_string_equal(plan.name, "svc");
    assert_int_equal(plan.errors.count, 2);
    assert_int_equal(plan.errors.entries[0].line, 3);
    assert_int_equal(plan.errors.entries[0].column, 7);
    assert_string_equal(plan.errors.entries[1].field, "applications");
    plan_clear(&plan);
    diag_clear(&errors);
}

/* ---- what decides ---- */

static void test_never_in_place_fields_always_canary(void **state)
{
    (void)state;
    static const char *const tops[] = {
        "image_uri: registry.example.com/svc:2\n",
        "compute_config: gpu-large\n",
        "cloud: aws-west\n",
        "working_dir: ./other\n",
        "containerfile: ./Containerfile\n",
    };
    static const char *const paths[] = {"image_uri", "compute_config", "cloud", "working_dir",
                                        "containerfile"};
    struct service_spec *old = MAKE(0);
    for (size_t i = 0; i < sizeof(tops) / sizeof(tops[0]); i++) {
        struct service_spec *new = MAKE(.top = tops[i]);
        struct service_plan plan;
        /* even where heavyweight changes go in place */
        compute(new, old, development, PLAN_CANARY, &plan);
        expect_decided(&plan, paths[i], CLASS_CANARY_ONLY, true);
        assert_true(plan.step_count > 0);
        plan_clear(&plan);
        spec_free(new);
    }
    spec_free(old);
}

static void test_strategy_canary_forces_canary(void **state)
{
    (void)state;
    struct service_spec *old = MAKE(0);
    struct service_spec *new = MAKE(.rollout = "  strategy: canary\n",
                                    .model = "        num_replicas: 3\n"
                                             "        user_config: {temperature: 0.5}\n");
    struct service_plan plan;
    compute(new, old, development, PLAN_CANARY, &plan);
    expect_decided(&plan, "applications[text].deployments[Model].num_replicas", CLASS_LIGHTWEIGHT,
                   true);
    assert_true(plan.step_count > 0);
    /* development's steps */
    assert_int_equal(plan.steps[1].capacity.traffic, 25);
    plan_clear(&plan);
    spec_free(old);
    spec_free(new);
}

static void test_strategy_in_place_overrides_the_policy(void **state)
{
    (void)state;
    struct service_spec *old = MAKE(0);
    struct service_spec *new =
        MAKE(.rollout = "  strategy: in_place\n", .runtime_env = "{pip: [torch, numpy]}");
    struct service_plan plan;
    compute(new, old, production, PLAN_IN_PLACE_HEAVYWEIGHT, &plan);
    expect_decided(&plan, "applications[text].runtime_env", CLASS_HEAVYWEIGHT, true);
    assert_true(replaces(&plan, "text", "Model"));
    assert_true(replaces(&plan, "text", "Tokenizer"));
    assert_int_equal(plan.replaced_count, 2);
    /* production replaces 20% at a time: Model 2 + 1, Tokenizer 1 + 1, Vision 1 */
    assert_int_equal(plan.peak.replicas, 6);
    plan_clear(&plan);
    spec_free(old);
    spec_free(new);
}

static void test_decided_is_the_worst_class(void **state)
{
    (void)state;
    struct service_spec *old = MAKE(0);
    struct service_spec *new =
        MAKE(.args = "{size: 2}", .model = "        num_replicas: 5\n"
                                           "        user_config: {temperature: 0.5}\n");
    struct service_plan plan;
    compute(new, old, production, PLAN_CANARY, &plan);
    assert_int_equal(plan.change_count, 2);
    expect_decided(&plan, "applications[text].args", CLASS_HEAVYWEIGHT, true);
    expect_decided(&plan, "applications[text].deployments[Model].num_replicas", CLASS_LIGHTWEIGHT,
                   false);
    plan_clear(&plan);
    spec_free(old);
    spec_free(new);
}

static void test_application_level_heavyweight_replaces_the_application(void **state)
{
    (void)state;
    struct service_spec *old = MAKE(0);
    struct service_spec *news[] = {
        MAKE(.import_path = "app:other"),
        MAKE(.runtime_env = "{pip: [jax]}"),
        MAKE(.args = "{size: 3}"),
    };
    static const char *const paths[] = {"applications[text].import_path",
                                        "applications[text].runtime_env",
                                        "applications[text].args"};
    for (size_t i = 0; i < 3; i++) {
        struct service_plan plan;
        compute(news[i], old, development, PLAN_IN_PLACE_HEAVYWEIGHT, &plan);
        expect_decided(&plan, paths[i], CLASS_HEAVYWEIGHT, true);
        assert_int_equal(plan.replaced_count, 2);
        assert_true(replaces(&plan, "text", "Model"));
        assert_true(replaces(&plan, "text", "Tokenizer"));
        plan_clear(&plan);
        spec_free(news[i]);
    }
    spec_free(old);
}

static void test_deployment_level_heavyweight_replaces_that_deployment(void **state)
{
    (void)state;
    struct service_spec *old = MAKE(0);
    struct service_spec *new = MAKE(.model = "        num_replicas: 2\n"
                                             "        user_config: {temperature: 0.5}\n"
                                             "        ray_actor_options: {num_gpus: 1}\n");
    struct service_plan plan;
    compute(new, old, development, PLAN_IN_PLACE_HEAVYWEIGHT, &plan);
    expect_decided(&plan, "applications[text].deployments[Model].ray_actor_options.num_gpus",
                   CLASS_HEAVYWEIGHT, true);
    assert_int_equal(plan.replaced_count, 1);
    assert_true(replaces(&plan, "text", "Model"));
    /* 2 old replicas without GPU and one wave of 1 new one with a GPU */
    assert_int_equal(plan.peak.replicas, 2 + 1 + 1 + 1);
    assert_true(plan.peak.gpus == 1.0);
    plan_clear(&plan);
    spec_free(old);
    spec_free(new);
}

static void test_user_config_without_reconfigure_path_is_heavyweight(void **state)
{
    (void)state;
    struct service_spec *old = MAKE(.text_process = "");
    struct service_spec *new =
        MAKE(.text_process = "", .model = "        num_replicas: 2\n"
                                          "        user_config: {temperature: 0.9}\n");
    struct service_plan plan;
    compute(new, old, development, PLAN_IN_PLACE_HEAVYWEIGHT, &plan);
    expect_decided(&plan, "applications[text].deployments[Model].user_config", CLASS_HEAVYWEIGHT,
                   true);
    assert_int_equal(plan.replaced_count, 1);
    assert_true(replaces(&plan, "text", "Model"));
    plan_clear(&plan);
    compute(new, old, production, PLAN_CANARY, &plan);
    plan_clear(&plan);

    /* adding a reconfigure endpoint in the same change makes it lightweight */
    struct service_spec *with = MAKE(.model = "        num_replicas: 2\n"
                                              "        user_config: {temperature: 0.9}\n");
    compute(with, old, production, PLAN_IN_PLACE_LIGHTWEIGHT, &plan);
    expect_decided(&plan, "applications[text].deployments[Model].user_config", CLASS_LIGHTWEIGHT,
                   true);
    expect_decided(&plan, "backend.process.applications[text].reconfigure_path", CLASS_LIGHTWEIGHT,
                   true);
    assert_int_equal(
        find_change(&plan, "backend.process.applications[text].reconfigure_path")->kind,
        CHANGE_ADDED);
    plan_clear(&plan);
    spec_free(with);
    spec_free(old);
    spec_free(new);
}

static void test_added_deployment_column(void **state)
{
    (void)state;
    struct service_spec *old = MAKE(0);
    struct service_spec *new = MAKE(.extra_deployment = "      - name: Detok\n"
                                                        "        num_replicas: 2\n",
                                    .top = "image_uri: r/svc:2\n");
    struct service_plan plan;
    compute(new, old, production, PLAN_CANARY, &plan);
    find_change(&plan, "applications[text].deployments[Detok]");
    assert_int_equal(plan.deployment_count, 4);
    size_t detok = column_of(&plan, "text", "Detok");
    for (size_t s = 0; s < plan.step_count; s++) {
        assert_int_equal(plan.steps[s].replicas[detok].primary, -1);
        assert_int_equal(plan.steps[s].replicas[detok].canary, 2);
    }
    plan_clear(&plan);

    /* removed: the column stays for the primary */
    compute(old, new, production, PLAN_CANARY, &plan);
    detok = column_of(&plan, "text", "Detok");
    assert_int_equal(plan.steps[0].replicas[detok].primary, 2);
    assert_int_equal(plan.steps[0].replicas[detok].canary, -1);
    plan_clear(&plan);
    spec_free(old);
    spec_free(new);
}

/* ---- canary schedules ---- */

static void test_seven_replicas_at_surge_50(void **state)
{
    (void)state;
    struct service_spec *old = MAKE(.model = "        num_replicas: 7\n");
    struct service_spec *new =
        MAKE(.model = "        num_replicas: 7\n", .top = "image_uri: r/svc:2\n",
             .rollout = "  max_surge_percent: 50\n");
    struct service_plan plan;
    compute(new, old, production, PLAN_CANARY, &plan);
    assert_int_equal(plan.max_surge_percent, 50);
    /* the seed sequence: canary to S; traffic to S; primary down to 100-S;
     * canary up; traffic to 100; primary retired */
    static const struct capacity_step expected[] = {
        {0, 100, 50}, {50, 100, 50}, {50, 50, 50}, {50, 50, 100}, {100, 50, 100}, {100, 0, 100},
    };
    static const int primary[] = {7, 7, 4, 4, 4, 0};
    static const int canary[] = {4, 4, 4, 7, 7, 7};
    assert_int_equal(plan.step_count, 6);
    size_t model = column_of(&plan, "text", "Model");
    size_t vision = column_of(&plan, "image", "Vision");
    for (size_t s = 0; s < 6; s++) {
        assert_int_equal(plan.steps[s].capacity.traffic, expected[s].traffic);
        assert_int_equal(plan.steps[s].capacity.primary, expected[s].primary);
        assert_int_equal(plan.steps[s].capacity.canary, expected[s].canary);
        assert_int_equal(plan.steps[s].replicas[model].primary, primary[s]);
        assert_int_equal(plan.steps[s].replicas[model].canary, canary[s]);
        /* one replica at any capacity above zero */
        assert_int_equal(plan.steps[s].replicas[vision].canary, 1);
        assert_int_equal(plan.steps[s].replicas[model].canary_min, -1);
        assert_false(plan.steps[s].pause);
    }
    plan_clear(&plan);
    spec_free(old);
    spec_free(new);
}

static void test_autoscaling_bounds_scaled(void **state)
{
    (void)state;
    static const char autoscaled[] = "        autoscaling_config:\n"
                                     "          min_replicas: 2\n"
                                     "          initial_replicas: 4\n"
                                     "          max_replicas: 8\n";
    struct service_spec *old = MAKE(.model = autoscaled);
    struct service_spec *new = MAKE(.model = autoscaled, .top = "image_uri: r/svc:2\n",
                                    .rollout = "  max_surge_percent: 25\n");
    struct service_plan plan;
    compute(new, old, production, PLAN_CANARY, &plan);
    size_t model = column_of(&plan, "text", "Model");
    size_t tokenizer = column_of(&plan, "text", "Tokenizer");
    /* at 25%: min ceil(0.5) = 1, max 2, initial 1 */
    const struct plan_replicas *first = &plan.steps[0].replicas[model];
    assert_int_equal(plan.steps[0].capacity.canary, 25);
    assert_int_equal(first->canary_min, 1);
    assert_int_equal(first->canary_max, 2);
    assert_int_equal(first->canary_initial, 1);
    assert_int_equal(first->canary, 1);
    assert_int_equal(first->primary, 4);
    /* every step scales the bounds by the canary's capacity */
    for (size_t s = 0; s < plan.step_count; s++) {
        const struct plan_replicas *r = &plan.steps[s].replicas[model];
        int capacity = plan.steps[s].capacity.canary;
        assert_int_equal(r->canary_min, capacity_replicas(2, capacity));
        assert_int_equal(r->canary_max, capacity_replicas(8, capacity));
        assert_int_equal(r->canary_initial, capacity_replicas(4, capacity));
        assert_int_equal(plan.steps[s].replicas[tokenizer].canary_min, -1);
    }
    /* at full capacity, the spec's own bounds */
    const struct plan_replicas *last = &plan.steps[plan.step_count - 1].replicas[model];
    assert_int_equal(plan.steps[plan.step_count - 1].capacity.canary, 100);
    assert_int_equal(last->canary_min, 2);
    assert_int_equal(last->canary_max, 8);
    assert_int_equal(last->canary_initial, 4);
    plan_clear(&plan);
    spec_free(old);
    spec_free(new);
}

static void test_canary_percent_pauses(void **state)
{
    (void)state;
    struct service_spec *old = MAKE(0);
    struct service_spec *new =
        MAKE(.top = "image_uri: r/svc:2\n", .rollout = "  canary_percent: 30\n");
    struct service_plan plan;
    compute(new, old, production, PLAN_CANARY, &plan);
    assert_int_equal(plan.canary_percent, 30);
    static const int traffic[] = {0, 5, 10, 20, 30};
    assert_int_equal(plan.step_count, 5);
    for (size_t s = 0; s < 5; s++) {
        assert_int_equal(plan.steps[s].capacity.traffic, traffic[s]);
        assert_int_equal(plan.steps[s].capacity.primary, 100);
        assert_int_equal(plan.steps[s].pause, s == 4);
    }
    plan_clear(&plan);
    spec_free(new);

    /* with surge too: the pause is at 30% and the budget holds throughout */
    new = MAKE(.top = "image_uri: r/svc:2\n",
               .rollout = "  canary_percent: 30\n  max_surge_percent: 20\n");
    compute(new, old, production, PLAN_CANARY, &plan);
    const struct plan_step *last = &plan.steps[plan.step_count - 1];
    assert_int_equal(last->capacity.traffic, 30);
    assert_true(last->pause);
    for (size_t s = 0; s < plan.step_count; s++) {
        assert_true(capacity_step_valid(&plan.steps[s].capacity, 20));
        assert_true(s + 1 == plan.step_count || !plan.steps[s].pause);
    }
    plan_clear(&plan);
    spec_free(new);

    /* 0: the canary starts and takes no traffic; 100: the rollout completes */
    new = MAKE(.top = "image_uri: r/svc:2\n", .rollout = "  canary_percent: 0\n");
    compute(new, old, production, PLAN_CANARY, &plan);
    assert_int_equal(plan.step_count, 1);
    assert_true(plan.steps[0].pause);
    plan_clear(&plan);
    spec_free(new);
    new = MAKE(.top = "image_uri: r/svc:2\n", .rollout = "  canary_percent: 100\n");
    compute(new, old, production, PLAN_CANARY, &plan);
    assert_int_equal(plan.steps[plan.step_count - 1].capacity.primary, 0);
    assert_false(plan.steps[plan.step_count - 1].pause);
    plan_clear(&plan);
    spec_free(new);
    spec_free(old);
}

/* The policy's approval gate: a new version's schedule stops at the gate
 * even when its first commit asks for more; the plan says so in every format. */
static void test_approval_gate_in_plan(void **state)
{
    (void)state;
    struct policy *gated = load_shipped_policy("production-gated");
    struct service_spec *old = MAKE(0);
    struct service_spec *new =
        MAKE(.top = "image_uri: r/svc:2\n", .rollout = "  canary_percent: 100\n");
    struct service_plan plan;
    compute(new, old, gated, PLAN_CANARY, &plan);
    assert_int_equal(plan.approval_percent, 10);
    assert_true(plan.signed_commits);
    const struct plan_step *last = &plan.steps[plan.step_count - 1];
    assert_int_equal(last->capacity.traffic, 10);
    assert_true(last->pause);
    char *text = NULL;
    size_t size = 0;
    static const struct {
        enum plan_format format;
        const char *needle;
    } formats[] = {
        {PLAN_FORMAT_JSON, "\"approval_gate\": 10"},
        {PLAN_FORMAT_TEXT, "approval gate: the canary stops at 10%"},
        {PLAN_FORMAT_MARKDOWN, "**Approval gate:** the canary stops at 10%"},
        {PLAN_FORMAT_TEXT, "signed commits only"},
    };
    for (size_t f = 0; f < sizeof(formats) / sizeof(formats[0]); f++) {
        FILE *out = open_memstream(&text, &size);
        plan_list_write(&plan, 1, formats[f].format, out);
        fclose(out);
        if (!strstr(text, formats[f].needle))
            fail_msg("no '%s' in:\n%s", formats[f].needle, text);
        free(text);
        text = NULL;
    }
    plan_clear(&plan);
    /* without a gate in the policy: no gate in the plan */
    compute(new, old, production, PLAN_CANARY, &plan);
    assert_int_equal(plan.approval_percent, -1);
    assert_false(plan.signed_commits);
    assert_int_equal(plan.steps[plan.step_count - 1].capacity.traffic, 100);
    plan_clear(&plan);
    spec_free(new);
    spec_free(old);
    policy_free(gated);
}

/* ---- resources ---- */

static void test_peak_resources_example(void **state)
{
    (void)state;
    static const char model[] = "        num_replicas: 7\n"
                                "        ray_actor_options: {num_cpus: 2, num_gpus: 1, "
                                "memory: 1000}\n";
    struct service_spec *old = MAKE(.model = model);
    struct service_spec *surge =
        MAKE(.model = model, .top = "image_uri: r/svc:2\n", .rollout = "  max_surge_percent: 50\n");
    struct service_plan plan;
    compute(surge, old, production, PLAN_CANARY, &plan);
    /* worst step: Model 7 + 4 (or 4 + 7), Tokenizer 1 + 1, Vision 1 + 1 */
    assert_int_equal(plan.peak.replicas, 15);
    assert_true(plan.peak.cpus == 11 * 2 + 4);
    assert_true(plan.peak.gpus == 11.0);
    assert_int_equal(plan.peak.memory, 11 * 1000);
    plan_clear(&plan);

    /* without surge both versions run whole: Model 7 + 7 */
    struct service_spec *full = MAKE(.model = model, .top = "image_uri: r/svc:2\n");
    compute(full, old, production, PLAN_CANARY, &plan);
    assert_int_equal(plan.peak.replicas, 18);
    assert_true(plan.peak.cpus == 14 * 2 + 4);
    assert_true(plan.peak.gpus == 14.0);
    plan_clear(&plan);

    /* one version alone */
    struct plan_resources whole = plan_version_resources(old, 100);
    assert_int_equal(whole.replicas, 9);
    assert_true(whole.cpus == 16.0);
    assert_true(whole.gpus == 7.0);
    assert_int_equal(whole.memory, 7000);
    struct plan_resources half = plan_version_resources(old, 50);
    assert_int_equal(half.replicas, 4 + 1 + 1);
    assert_true(half.gpus == 4.0);
    struct plan_resources none = plan_version_resources(old, 0);
    assert_int_equal(none.replicas, 0);
    spec_free(full);
    spec_free(surge);
    spec_free(old);
}

static void test_action_names(void **state)
{
    (void)state;
    assert_string_equal(plan_action_name(PLAN_NONE), "none");
    assert_string_equal(plan_action_name(PLAN_CREATE), "create");
    assert_string_equal(plan_action_name(PLAN_IN_PLACE_LIGHTWEIGHT), "in_place_lightweight");
    assert_string_equal(plan_action_name(PLAN_IN_PLACE_HEAVYWEIGHT), "in_place_heavyweight");
    assert_string_equal(plan_action_name(PLAN_CANARY), "canary");
    assert_string_equal(plan_action_name(PLAN_DELETE), "delete");
    assert_string_equal(plan_action_name(PLAN_INVALID), "invalid");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_create),
        cmocka_unit_test(test_none_and_rollout_only),
        cmocka_unit_test(test_reordered_applications),
        cmocka_unit_test(test_delete),
        cmocka_unit_test(test_in_place_lightweight),
        cmocka_unit_test(test_in_place_heavyweight_on_development_policy),
        cmocka_unit_test(test_canary),
        cmocka_unit_test(test_invalid_when_in_place_cannot_be),
        cmocka_unit_test(test_invalid_without_policy),
        cmocka_unit_test(test_plan_invalid_keeps_the_errors),
        cmocka_unit_test(test_never_in_place_fields_always_canary),
        cmocka_unit_test(test_strategy_canary_forces_canary),
        cmocka_unit_test(test_strategy_in_place_overrides_the_policy),
        cmocka_unit_test(test_decided_is_the_worst_class),
        cmocka_unit_test(test_application_level_heavyweight_replaces_the_application),
        cmocka_unit_test(test_deployment_level_heavyweight_replaces_that_deployment),
        cmocka_unit_test(test_user_config_without_reconfigure_path_is_heavyweight),
        cmocka_unit_test(test_added_deployment_column),
        cmocka_unit_test(test_seven_replicas_at_surge_50),
        cmocka_unit_test(test_autoscaling_bounds_scaled),
        cmocka_unit_test(test_canary_percent_pauses),
        cmocka_unit_test(test_approval_gate_in_plan),
        cmocka_unit_test(test_peak_resources_example),
        cmocka_unit_test(test_action_names),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
