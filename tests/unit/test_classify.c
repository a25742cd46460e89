/* tests for reconciler/classify.c: which changed field is lightweight,
 * heavyweight (and which replicas it replaces) or canary-only */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "classify.h"
#include "unit_helpers.h"

/* "text" can take user_config through a reconfigure endpoint, "image" cannot. */
static const char process_spec[] = "name: svc\n"
                                   "applications:\n"
                                   "  - name: text\n"
                                   "    route_prefix: /text\n"
                                   "    import_path: app:text\n"
                                   "    deployments:\n"
                                   "      - name: Model\n"
                                   "      - name: Tokenizer\n"
                                   "  - name: image\n"
                                   "    route_prefix: /image\n"
                                   "    import_path: app:image\n"
                                   "    deployments:\n"
                                   "      - name: Vision\n"
                                   "backend:\n"
                                   "  process:\n"
                                   "    applications:\n"
                                   "      - name: text\n"
                                   "        command: [model-server]\n"
                                   "        reconfigure_path: /reconfigure\n"
                                   "      - name: image\n"
                                   "        command: [model-server]\n";

static struct service_spec *spec;

static int setup(void **state)
{
    (void)state;
    spec = parse_ok(process_spec);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    spec_free(spec);
    spec = NULL;
    return 0;
}

/* Classifies path and checks class and scope (NULL: none / every). */
static void expect_class_with(const struct service_spec *new_spec, const char *path,
                              enum change_kind kind, enum change_class class,
                              const char *application, const char *deployment)
{
    char app_buf[128], deployment_buf[128];
    struct change change = {(char *)path, kind};
    struct change_scope scope = classify_change(&change, new_spec, app_buf, deployment_buf);
    if (scope.class != class)
        fail_msg("%s (%s): %s, expected %s", path, change_kind_name(kind),
                 change_class_name(scope.class), change_class_name(class));
    if (application) {
        if (!scope.application || strcmp(scope.application, application))
            fail_msg("%s: application %s, expected %s", path,
                     scope.application ? scope.application : "(every)", application);
    } else if (class == CLASS_HEAVYWEIGHT && scope.application) {
        fail_msg("%s: application %s, expected every application", path, scope.application);
    }
    if (deployment) {
        if (!scope.deployment || strcmp(scope.deployment, deployment))
            fail_msg("%s: deployment %s, expected %s", path,
                     scope.deployment ? scope.deployment : "(every)", deployment);
    } else if (class == CLASS_HEAVYWEIGHT && scope.deployment) {
        fail_msg("%s: deployment %s, expected every deployment", path, scope.deployment);
    }
}

static void expect_class(const char *path, enum change_kind kind, enum change_class class,
                         const char *application, const char *deployment)
{
    expect_class_with(spec, path, kind, class, application, deployment);
}

static void test_never_in_place(void **state)
{
    (void)state;
    static const char *const fields[] = {"image_uri", "containerfile", "compute_config", "cloud",
                                         "working_dir"};
    static const enum change_kind kinds[] = {CHANGE_MODIFIED, CHANGE_ADDED, CHANGE_REMOVED};
    for (size_t f = 0; f < sizeof(fields) / sizeof(fields[0]); f++)
        for (size_t k = 0; k < 3; k++)
            expect_class(fields[f], kinds[k], CLASS_CANARY_ONLY, NULL, NULL);
    /* another compute adapter, or its settings, needs a new version too */
    expect_class("backend.type", CHANGE_MODIFIED, CLASS_CANARY_ONLY, NULL, NULL);
    expect_class("backend.ray", CHANGE_ADDED, CLASS_CANARY_ONLY, NULL, NULL);
}

static void test_service_level_lightweight(void **state)
{
    (void)state;
    expect_class("version_name", CHANGE_MODIFIED, CLASS_LIGHTWEIGHT, NULL, NULL);
    expect_class("tags", CHANGE_ADDED, CLASS_LIGHTWEIGHT, NULL, NULL);
    expect_class("logging_config.log_level", CHANGE_MODIFIED, CLASS_LIGHTWEIGHT, NULL, NULL);
}

static void test_service_level_heavyweight_replaces_everything(void **state)
{
    (void)state;
    expect_class("env_vars", CHANGE_MODIFIED, CLASS_HEAVYWEIGHT, NULL, NULL);
    expect_class("requirements", CHANGE_ADDED, CLASS_HEAVYWEIGHT, NULL, NULL);
    expect_class("py_modules", CHANGE_REMOVED, CLASS_HEAVYWEIGHT, NULL, NULL);
    expect_class("http_options.port", CHANGE_MODIFIED, CLASS_HEAVYWEIGHT, NULL, NULL);
}

static void test_application_level(void **state)
{
    (void)state;
    /* code, runtime env and args replace every deployment of the application */
    expect_class("applications[text].import_path", CHANGE_MODIFIED, CLASS_HEAVYWEIGHT, "text",
                 NULL);
    expect_class("applications[text].runtime_env", CHANGE_ADDED, CLASS_HEAVYWEIGHT, "text", NULL);
    expect_class("applications[image].args", CHANGE_MODIFIED, CLASS_HEAVYWEIGHT, "image", NULL);
    /* routing and logging are applied to running replicas */
    expect_class("applications[text].route_prefix", CHANGE_MODIFIED, CLASS_LIGHTWEIGHT, "text",
                 NULL);
    expect_class("applications[text].logging_config.encoding", CHANGE_ADDED, CLASS_LIGHTWEIGHT,
                 "text", NULL);
    /* a whole application added or removed */
    expect_class("applications[audio]", CHANGE_ADDED, CLASS_HEAVYWEIGHT, "audio", NULL);
    expect_class("applications[image]", CHANGE_REMOVED, CLASS_HEAVYWEIGHT, "image", NULL);
    /* a deployment added or removed changes the application's graph */
    expect_class("applications[text].deployments[Detok]", CHANGE_ADDED, CLASS_HEAVYWEIGHT, "text",
                 NULL);
    expect_class("applications[text].deployments[Tokenizer]", CHANGE_REMOVED, CLASS_HEAVYWEIGHT,
                 "text", NULL);
}

static void test_deployment_level(void **state)
{
    (void)state;
    static const char *const light[] = {
        "applications[text].deployments[Model].num_replicas",
        "applications[text].deployments[Model].autoscaling_config.max_replicas",
        "applications[text].deployments[Model].autoscaling_config",
        "applications[text].deployments[Model].max_ongoing_requests",
        "applications[text].deployments[Model].max_queued_requests",
        "applications[text].deployments[Model].logging_config.log_level",
        "applications[text].deployments[Model].health_check_period_s",
        "applications[text].deployments[Model].health_check_timeout_s",
        "applications[text].deployments[Model].graceful_shutdown_timeout_s",
        "applications[text].deployments[Model].graceful_shutdown_wait_loop_s",
    };
    for (size_t i = 0; i < sizeof(light) / sizeof(light[0]); i++)
        expect_class(light[i], CHANGE_MODIFIED, CLASS_LIGHTWEIGHT, "text", "Model");
    /* actor options replace only that deployment's replicas */
    expect_class("applications[text].deployments[Model].ray_actor_options.num_gpus",
                 CHANGE_MODIFIED, CLASS_HEAVYWEIGHT, "text", "Model");
    expect_class("applications[text].deployments[Tokenizer].ray_actor_options.runtime_env",
                 CHANGE_ADDED, CLASS_HEAVYWEIGHT, "text", "Tokenizer");
}

static void test_user_config_needs_a_way_in(void **state)
{
    (void)state;
    /* "text" has a reconfigure endpoint: lightweight */
    expect_class("applications[text].deployments[Model].user_config", CHANGE_MODIFIED,
                 CLASS_LIGHTWEIGHT, "text", "Model");
    expect_class("applications[text].deployments[Model].user_config", CHANGE_ADDED,
                 CLASS_LIGHTWEIGHT, "text", "Model");
    /* "image" has none: only a restart delivers it, and only to that deployment */
    expect_class("applications[image].deployments[Vision].user_config", CHANGE_MODIFIED,
                 CLASS_HEAVYWEIGHT, "image", "Vision");
    expect_class("applications[image].deployments[Vision].user_config", CHANGE_REMOVED,
                 CLASS_HEAVYWEIGHT, "image", "Vision");

    /* Ray Serve reconfigures in place itself */
    static const char ray[] = "name: svc\n"
                              "applications:\n"
                              "  - name: image\n"
                              "    import_path: app:image\n"
                              "    deployments:\n"
                              "      - name: Vision\n"
                              "backend:\n"
                              "  type: ray\n";
    struct service_spec *ray_spec = parse_ok(ray);
    expect_class_with(ray_spec, "applications[image].deployments[Vision].user_config",
                      CHANGE_MODIFIED, CLASS_LIGHTWEIGHT, "image", "Vision");
    spec_free(ray_spec);
}

static void test_process_backend_fields(void **state)
{
    (void)state;
    expect_class("backend.process.applications[text].health_path", CHANGE_MODIFIED,
                 CLASS_LIGHTWEIGHT, "text", NULL);
    expect_class("backend.process.applications[text].reconfigure_path", CHANGE_MODIFIED,
                 CLASS_LIGHTWEIGHT, "text", NULL);
    expect_class("backend.process.applications[text].ingress", CHANGE_MODIFIED, CLASS_LIGHTWEIGHT,
                 "text", NULL);
    /* a field added to or removed from an entry is that field's change */
    expect_class("backend.process.applications[text].reconfigure_path", CHANGE_ADDED,
                 CLASS_LIGHTWEIGHT, "text", NULL);
    expect_class("backend.process.applications[text].reconfigure_path", CHANGE_REMOVED,
                 CLASS_LIGHTWEIGHT, "text", NULL);
    expect_class("backend.process.applications[text].working_dir", CHANGE_ADDED, CLASS_HEAVYWEIGHT,
                 "text", NULL);
    expect_class("backend.process.applications[text].command", CHANGE_MODIFIED, CLASS_HEAVYWEIGHT,
                 "text", NULL);
    expect_class("backend.process.applications[image].env", CHANGE_ADDED, CLASS_HEAVYWEIGHT,
                 "image", NULL);
    expect_class("backend.process.applications[image]", CHANGE_ADDED, CLASS_HEAVYWEIGHT, "image",
                 NULL);
}

static void test_scope_names_are_copied_into_the_callers_buffers(void **state)
{
    (void)state;
    char app_buf[128], deployment_buf[128];
    struct change change = {"applications[text].deployments[Model].ray_actor_options",
                            CHANGE_MODIFIED};
    struct change_scope scope = classify_change(&change, spec, app_buf, deployment_buf);
    assert_ptr_equal(scope.application, app_buf);
    assert_ptr_equal(scope.deployment, deployment_buf);
    assert_string_equal(app_buf, "text");
    assert_string_equal(deployment_buf, "Model");
}

static void test_class_names(void **state)
{
    (void)state;
    assert_string_equal(change_class_name(CLASS_LIGHTWEIGHT), "lightweight");
    assert_string_equal(change_class_name(CLASS_HEAVYWEIGHT), "heavyweight");
    assert_string_equal(change_class_name(CLASS_CANARY_ONLY), "canary_only");
    /* the order is what the planner takes the worst of */
    assert_true(CLASS_LIGHTWEIGHT < CLASS_HEAVYWEIGHT);
    assert_true(CLASS_HEAVYWEIGHT < CLASS_CANARY_ONLY);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_never_in_place),
        cmocka_unit_test(test_service_level_lightweight),
        cmocka_unit_test(test_service_level_heavyweight_replaces_everything),
        cmocka_unit_test(test_application_level),
        cmocka_unit_test(test_deployment_level),
        cmocka_unit_test(test_user_config_needs_a_way_in),
        cmocka_unit_test(test_process_backend_fields),
        cmocka_unit_test(test_scope_names_are_copied_into_the_callers_buffers),
        cmocka_unit_test(test_class_names),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
