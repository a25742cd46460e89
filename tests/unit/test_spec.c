/* tests for reconciler/spec.c (with decode.c and yaml_tree.c underneath):
 * every class of error with its exact place, hostile YAML, normalisation and
 * the version hash. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <time.h>

#include "spec.h"
#include "unit_helpers.h"
#include "yaml_tree.h"

/* The smallest valid spec; line numbers in the comments are those of the
 * error tests below, which change one line of it. */
#define BASE_BACKEND                                                                               \
    "backend:\n"                                                                                   \
    "  process:\n"                                                                                 \
    "    applications:\n"                                                                          \
    "      - name: text\n"                                                                         \
    "        command: [model-server]\n"

static const char minimal_spec[] = "name: svc\n"                 /* 1 */
                                   "applications:\n"             /* 2 */
                                   "  - name: text\n"            /* 3 */
                                   "    import_path: app:main\n" /* 4 */
                                   "    deployments:\n"          /* 5 */
                                   "      - name: Model\n"       /* 6 */
                                   "        num_replicas: 2\n"   /* 7 */
    BASE_BACKEND;                                                /* 8-12 */

static double seconds_since(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) + (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

/* ---- a valid spec and its typed view ---- */

static void test_minimal_spec_parses_with_defaults(void **state)
{
    (void)state;
    struct service_spec *spec = parse_ok(minimal_spec);
    assert_string_equal(spec->name, "svc");
    assert_string_equal(spec->file, "test.yaml");
    assert_null(spec->version_name);
    assert_string_equal(spec->backend, "process");
    assert_int_equal(spec->http_port, 0);
    assert_int_equal(spec->rollout.strategy, STRATEGY_AUTO);
    assert_int_equal(spec->rollout.canary_percent, -1);
    assert_int_equal(spec->rollout.max_surge_percent, 0);
    assert_int_equal(spec->rollout.timeout_s, 0);
    assert_null(spec->rollout.policy);
    assert_int_equal(strlen(spec->version), 16);
    assert_int_equal(strspn(spec->version, "0123456789abcdef"), 16);

    assert_int_equal(spec->application_count, 1);
    const struct application_spec *app = &spec->applications[0];
    assert_string_equal(app->name, "text");
    assert_string_equal(app->route_prefix, "/");
    assert_string_equal(app->health_path, "/-/healthz");
    assert_null(app->reconfigure_path);
    assert_string_equal(app->ingress, "Model");
    assert_non_null(app->command);
    assert_string_equal(app->command[0], "model-server");
    assert_null(app->command[1]);

    assert_int_equal(app->deployment_count, 1);
    const struct deployment_spec *d = &app->deployments[0];
    assert_string_equal(d->name, "Model");
    assert_int_equal(d->num_replicas, 2);
    assert_false(d->autoscaling);
    assert_int_equal(d->min_replicas, 2);
    assert_int_equal(d->max_replicas, 2);
    assert_true(d->num_cpus == 1.0);
    assert_true(d->num_gpus == 0.0);
    assert_int_equal(d->max_ongoing_requests, 5);
    assert_true(d->health_check_period_s == 10.0);
    assert_true(d->health_check_timeout_s == 30.0);
    assert_true(d->graceful_shutdown_timeout_s == 20.0);
    assert_true(d->graceful_shutdown_wait_loop_s == 2.0);

    /* the version document is the spec without its rollout section */
    json_t *doc = spec_doc(spec);
    assert_non_null(json_object_get(doc, "rollout"));
    json_decref(doc);
    json_t *version_doc = spec_version_doc(spec);
    assert_null(json_object_get(version_doc, "rollout"));
    assert_non_null(json_object_get(version_doc, "applications"));
    json_decref(version_doc);
    spec_free(spec);
}

/* The spec keeps its document as text: what spec_doc() gives back is the
 * document the file made, the text is canonical, and copies and references
 * share it. */
static void test_document_kept_as_text(void **state)
{
    (void)state;
    static const char text[] = "name: svc\n"
                               "version_name: v1\n"
                               "http_options: {host: 127.0.0.2, port: 8000}\n"
                               "applications:\n"
                               "  - name: text\n"
                               "    import_path: app:main\n"
                               "    deployments:\n"
                               "      - name: Model\n"
                               "        user_config: {temperature: 0.7, stop: [a, b]}\n"
                               "        autoscaling_config:\n"
                               "          min_replicas: 1\n"
                               "          max_replicas: 4\n"
                               "          upscale_delay_s: 5\n"
                               "rollout: {canary_percent: 20, timeout: 10m}\n" BASE_BACKEND;
    struct service_spec *spec = parse_ok(text);
    assert_string_equal(spec->http_host, "127.0.0.2");
    assert_true(spec->applications[0].deployments[0].upscale_delay_s == 5.0);
    assert_true(spec->applications[0].deployments[0].downscale_delay_s == 600.0);
    json_t *doc = spec_doc(spec);
    assert_non_null(doc);
    char *again = spec_canonical_text(doc);
    assert_string_equal(again, spec_text(spec));
    free(again);
    json_t *config = json_object_get(
        json_array_get(json_object_get(json_array_get(json_object_get(doc, "applications"), 0),
                                       "deployments"),
                       0),
        "user_config");
    assert_true(json_real_value(json_object_get(config, "temperature")) == 0.7);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(doc, "rollout"), "timeout")),
                     600);
    assert_string_equal(json_string_value(json_object_get(json_object_get(doc, "http_options"), "host")),
                        "127.0.0.2");

    /* read back from the document (the state file), under another file name */
    struct service_spec *back = spec_from_doc(doc, "elsewhere.yaml");
    json_decref(doc);
    assert_non_null(back);
    assert_string_equal(back->version, spec->version);
    assert_string_equal(spec_text(back), spec_text(spec));
    assert_true(spec_same(back, spec));
    /* compacted: the text alone, the same document, the same spec */
    assert_non_null(back->doc);
    assert_int_equal(spec_compact(back), 0);
    assert_null(back->doc);
    assert_string_equal(back->text, spec_text(spec));
    assert_true(spec_same(back, spec) && spec_same(spec, back));
    json_t *reparsed = spec_doc(back), *original = spec_doc(spec);
    assert_true(json_equal(reparsed, original));
    json_decref(reparsed);
    json_decref(original);
    assert_int_equal(spec_compact(back), 0); /* twice is once */
    struct service_spec *moved = spec_with_file(spec, "moved.yaml");
    assert_string_equal(moved->file, "moved.yaml");
    assert_string_equal(moved->version, spec->version);
    assert_true(spec_same(moved, spec));

    /* the version leaves rollout out; the text does not */
    static const char other_rollout[] = "rollout: {canary_percent: 30, timeout: 10m}\n";
    char *changed = calloc(1, sizeof(text) + 8);
    const char *at = strstr(text, "rollout:");
    const char *after = strchr(at, '\n') + 1;
    sprintf(changed, "%.*s%s%s", (int)(at - text), text, other_rollout, after);
    struct service_spec *raised = parse_ok(changed);
    free(changed);
    assert_string_equal(raised->version, spec->version);
    assert_false(spec_same(raised, spec));
    json_t *version_doc = spec_version_doc(raised);
    assert_null(json_object_get(version_doc, "rollout"));
    assert_non_null(json_object_get(version_doc, "version_name"));
    json_decref(version_doc);

    /* references: the spec lives until the last one goes */
    assert_ptr_equal(spec_ref(spec), spec);
    assert_int_equal(spec->refs, 2);
    spec_free(spec);
    assert_int_equal(spec->refs, 1);
    assert_string_equal(spec->name, "svc");
    spec_free(spec);
    spec_free(back);
    spec_free(moved);
    spec_free(raised);
}

static void test_full_spec_typed_view(void **state)
{
    (void)state;
    static const char text[] = "name: chat\n"
                               "version_name: v7\n"
                               "image_uri: registry.example.com/chat:1.0\n"
                               "http_options:\n"
                               "  port: 18080\n"
                               "applications:\n"
                               "  - name: generate\n"
                               "    route_prefix: /generate\n"
                               "    import_path: chat:app\n"
                               "    deployments:\n"
                               "      - name: Router\n"
                               "        num_replicas: 1\n"
                               "      - name: Generator\n"
                               "        autoscaling_config:\n"
                               "          min_replicas: 2\n"
                               "          max_replicas: 8\n"
                               "          initial_replicas: 4\n"
                               "        ray_actor_options:\n"
                               "          num_cpus: 2.5\n"
                               "          num_gpus: 1\n"
                               "          memory: 1073741824\n"
                               "rollout:\n"
                               "  strategy: canary\n"
                               "  canary_percent: 30\n"
                               "  max_surge_percent: 50\n"
                               "  timeout: 1h30m\n"
                               "  policy: development\n"
                               "backend:\n"
                               "  type: process\n"
                               "  process:\n"
                               "    applications:\n"
                               "      - name: generate\n"
                               "        command: [model-server, --port, \"{port}\"]\n"
                               "        reconfigure_path: /reconfigure\n"
                               "        ingress: Generator\n";
    struct service_spec *spec = parse_ok(text);
    assert_string_equal(spec->version_name, "v7");
    assert_int_equal(spec->http_port, 18080);
    assert_int_equal(spec->rollout.strategy, STRATEGY_CANARY);
    assert_int_equal(spec->rollout.canary_percent, 30);
    assert_int_equal(spec->rollout.max_surge_percent, 50);
    assert_int_equal(spec->rollout.timeout_s, 5400);
    assert_string_equal(spec->rollout.policy, "development");
    const struct application_spec *app = &spec->applications[0];
    assert_string_equal(app->route_prefix, "/generate");
    assert_string_equal(app->reconfigure_path, "/reconfigure");
    assert_string_equal(app->ingress, "Generator");
    assert_string_equal(app->command[2], "{port}");
    assert_null(app->command[3]);
    assert_int_equal(app->deployment_count, 2);
    const struct deployment_spec *g = &app->deployments[1];
    assert_string_equal(g->name, "Generator");
    assert_true(g->autoscaling);
    assert_int_equal(g->min_replicas, 2);
    assert_int_equal(g->max_replicas, 8);
    assert_int_equal(g->initial_replicas, 4);
    assert_int_equal(g->num_replicas, 4);
    assert_true(g->target_ongoing_requests == 2.0);
    assert_true(g->num_cpus == 2.5);
    assert_true(g->num_gpus == 1.0);
    assert_int_equal(g->memory, 1073741824LL);
    spec_free(spec);
}

static void test_autoscaling_without_initial_starts_at_min(void **state)
{
    (void)state;
    static const char text[] = "name: svc\n"
                               "applications:\n"
                               "  - name: text\n"
                               "    import_path: app:main\n"
                               "    deployments:\n"
                               "      - name: Model\n"
                               "        autoscaling_config:\n"
                               "          min_replicas: 3\n"
                               "          max_replicas: 5\n" BASE_BACKEND;
    struct service_spec *spec = parse_ok(text);
    const struct deployment_spec *d = &spec->applications[0].deployments[0];
    assert_true(d->autoscaling);
    assert_int_equal(d->initial_replicas, 3);
    assert_int_equal(d->num_replicas, 3);
    spec_free(spec);
}

/* ---- error classes: each with its exact place and what to do ---- */

static void test_unknown_key_suggests_the_right_one(void **state)
{
    (void)state;
    static const char text[] = "name: svc\n"
                               "applications:\n"
                               "  - name: text\n"
                               "    import_path: app:main\n"
                               "    deployments:\n"
                               "      - name: Model\n"
                               "        num_replica: 2\n" BASE_BACKEND;
    struct diag diag = DIAG_INIT;
    parse_fails(text, strlen(text), &diag);
    const struct diag_entry *e = diag_only(&diag);
    assert_string_equal(e->field, "applications[text].deployments[Model].num_replica");
    assert_int_equal(e->line, 7);
    assert_int_equal(e->column, 9);
    assert_non_null(strstr(e->message, "unknown field 'num_replica'"));
    assert_non_null(strstr(e->message, "did you mean 'num_replicas'?"));
    diag_clear(&diag);
}

static void test_unknown_top_level_key_and_nested_object_keys(void **state)
{
    (void)state;
    static const char text[] = "name: svc\n"
                               "imge_uri: registry.example.com/x:1\n"
                               "applications:\n"
                               "  - name: text\n"
                               "    import_path: app:main\n"
                               "    deployments:\n"
                               "      - name: Model\n"
                               "        autoscaling_config:\n"
                               "          max_replica: 4\n"
                               "rollout:\n"
                               "  stratgy: canary\n"
                               "  frobnicate: 1\n" BASE_BACKEND;
    struct diag diag = DIAG_INIT;
    parse_fails(text, strlen(text), &diag);
    EXPECT_DIAG(&diag, "imge_uri", 2, 1, "did you mean 'image_uri'?");
    EXPECT_DIAG(&diag, "applications[text].deployments[Model].autoscaling_config.max_replica", 9,
                11, "did you mean 'max_replicas'?");
    EXPECT_DIAG(&diag, "rollout.stratgy", 11, 3, "did you mean 'strategy'?");
    /* nothing close: still says what to do */
    EXPECT_DIAG(&diag, "rollout.frobnicate", 12, 3, "unknown field 'frobnicate'", "remove it");
    assert_int_equal(diag.count, 4);
    diag_clear(&diag);
}

static void test_wrong_types(void **state)
{
    (void)state;
    static const char text[] = "name: svc\n"
                               "query_auth_token_enabled: yes\n"
                               "tags: [a, b]\n"
                               "applications:\n"
                               "  - name: text\n"
                               "    import_path: {module: app}\n"
                               "    deployments:\n"
                               "      - name: Model\n"
                               "        num_replicas: two\n"
                               "        max_ongoing_requests: \"8\"\n"
                               "        health_check_period_s: [1]\n"
                               "        ray_actor_options: 4\n"
                               "        user_config: {anything: [goes, 1, true]}\n" BASE_BACKEND;
    struct diag diag = DIAG_INIT;
    parse_fails(text, strlen(text), &diag);
    /* YAML 1.2: yes is a string, not a boolean */
    EXPECT_DIAG(&diag, "query_auth_token_enabled", 2, 27, "expected true or false",
                "a string 'yes'");
    EXPECT_DIAG(&diag, "tags", 3, 7, "expected a mapping, got a list");
    EXPECT_DIAG(&diag, "applications[text].import_path", 6, 18, "expected a string, got a mapping");
    EXPECT_DIAG(&diag, "applications[text].deployments[Model].num_replicas", 9, 23,
                "expected an integer, got a string 'two'");
    /* a quoted number is a string */
    EXPECT_DIAG(&diag, "applications[text].deployments[Model].max_ongoing_requests", 10, 31,
                "expected an integer, got a string '8'");
    EXPECT_DIAG(&diag, "applications[text].deployments[Model].health_check_period_s", 11, 32,
                "expected a number, got a list");
    EXPECT_DIAG(&diag, "applications[text].deployments[Model].ray_actor_options", 12, 28,
                "expected a mapping, got a scalar");
    assert_int_equal(diag.count, 7);
    diag_clear(&diag);
}

static void test_wrong_types_of_collections(void **state)
{
    (void)state;
    static const char text[] = "name: svc\n"
                               "applications: text\n"
                               "backend: process\n";
    struct diag diag = DIAG_INIT;
    parse_fails(text, strlen(text), &diag);
    EXPECT_DIAG(&diag, "applications", 2, 15, "expected a list, got a scalar");
    EXPECT_DIAG(&diag, "backend", 3, 10, "expected a mapping, got a scalar");
    diag_clear(&diag);

    static const char not_a_mapping[] = "- name: svc\n";
    parse_fails(not_a_mapping, strlen(not_a_mapping), &diag);
    EXPECT_DIAG(&diag, "(document)", 1, 1, "expected a mapping, got a list");
    diag_clear(&diag);
}

static void test_numbers_out_of_range(void **state)
{
    (void)state;
    static const char text[] = "name: svc\n"
                               "http_options:\n"
                               "  port: 70000\n"
                               "applications:\n"
                               "  - name: text\n"
                               "    import_path: app:main\n"
                               "    deployments:\n"
                               "      - name: Model\n"
                               "        num_replicas: 0\n"
                               "        ray_actor_options:\n"
                               "          num_gpus: 64.5\n"
                               "      - name: Other\n"
                               "        num_replicas: 1025\n"
                               "rollout:\n"
                               "  canary_percent: 101\n"
                               "  max_surge_percent: 0\n" BASE_BACKEND;
    struct diag diag = DIAG_INIT;
    parse_fails(text, strlen(text), &diag);
    EXPECT_DIAG(&diag, "http_options.port", 3, 9, "70000 is out of range",
                "use a value from 1 to 65535");
    EXPECT_DIAG(&diag, "applications[text].deployments[Model].num_replicas", 9, 23,
                "0 is out of range", "use a value from 1 to 1024");
    EXPECT_DIAG(&diag, "applications[text].deployments[Model].ray_actor_options.num_gpus", 11, 21,
                "64.5 is out of range", "use a value from 0 to 64");
    EXPECT_DIAG(&diag, "applications[text].deployments[Other].num_replicas", 13, 23,
                "1025 is out of range", "use a value from 1 to 1024");
    EXPECT_DIAG(&diag, "rollout.canary_percent", 15, 19, "101 is out of range",
                "use a value from 0 to 100");
    EXPECT_DIAG(&diag, "rollout.max_surge_percent", 16, 22, "0 is out of range",
                "use a value from 1 to 100");
    assert_int_equal(diag.count, 6);
    diag_clear(&diag);
}

static void test_integer_field_refuses_fraction(void **state)
{
    (void)state;
    static const char text[] = "name: svc\n"
                               "applications:\n"
                               "  - name: text\n"
                               "    import_path: app:main\n"
                               "    deployments:\n"
                               "      - name: Model\n"
                               "        num_replicas: 2.5\n" BASE_BACKEND;
    struct diag diag = DIAG_INIT;
    parse_fails(text, strlen(text), &diag);
    EXPECT_DIAG(&diag, "applications[text].deployments[Model].num_replicas", 7, 23,
                "expected an integer, got a number '2.5'");
    diag_clear(&diag);
}

static void test_duplicate_application_names(void **state)
{
    (void)state;
    static const char text[] = "name: svc\n"
                               "applications:\n"
                               "  - name: text\n"
                               "    import_path: app:main\n"
                               "    deployments:\n"
                               "      - name: Model\n"
                               "  - name: text\n"
                               "    route_prefix: /other\n"
                               "    import_path: app:other\n"
                               "    deployments:\n"
                               "      - name: Model\n" BASE_BACKEND;
    struct diag diag = DIAG_INIT;
    parse_fails(text, strlen(text), &diag);
    const struct diag_entry *e = diag_only(&diag);
    assert_string_equal(e->field, "applications[text]");
    assert_int_equal(e->line, 7);
    assert_int_equal(e->column, 11);
    assert_non_null(strstr(e->message, "duplicate name 'text'"));
    assert_non_null(strstr(e->message, "rename"));
    diag_clear(&diag);
}

static void test_duplicate_deployment_names(void **state)
{
    (void)state;
    static const char text[] = "name: svc\n"
                               "applications:\n"
                               "  - name: text\n"
                               "    import_path: app:main\n"
                               "    deployments:\n"
                               "      - name: Model\n"
                               "      - name: Other\n"
                               "      - name: Model\n"
                               "        num_replicas: 3\n" BASE_BACKEND;
    struct diag diag = DIAG_INIT;
    parse_fails(text, strlen(text), &diag);
    const struct diag_entry *e = diag_only(&diag);
    assert_string_equal(e->field, "applications[text].deployments[Model]");
    assert_int_equal(e->line, 8);
    assert_int_equal(e->column, 15);
    assert_non_null(strstr(e->message, "duplicate name 'Model'"));
    assert_non_null(strstr(e->message, "applications[text].deployments"));
    assert_non_null(strstr(e->message, "rename"));
    diag_clear(&diag);
}

static void test_same_deployment_name_in_two_applications_is_fine(void **state)
{
    (void)state;
    static const char text[] = "name: svc\n"
                               "applications:\n"
                               "  - name: a\n"
                               "    route_prefix: /a\n"
                               "    import_path: app:a\n"
                               "    deployments:\n"
                               "      - name: Model\n"
                               "  - name: b\n"
                               "    route_prefix: /b\n"
                               "    import_path: app:b\n"
                               "    deployments:\n"
                               "      - name: Model\n"
                               "backend:\n"
                               "  process:\n"
                               "    applications:\n"
                               "      - name: a\n"
                               "        command: [model-server]\n"
                               "      - name: b\n"
                               "        command: [model-server]\n";
    struct service_spec *spec = parse_ok(text);
    assert_int_equal(spec->application_count, 2);
    spec_free(spec);
}

static void expect_bad_service_name(const char *yaml_name, int column)
{
    char text[512];
    snprintf(text, sizeof(text),
             "name: %s\n"
             "applications:\n"
             "  - name: text\n"
             "    import_path: app:main\n"
             "    deployments:\n"
             "      - name: Model\n" BASE_BACKEND,
             yaml_name);
    struct diag diag = DIAG_INIT;
    parse_fails(text, strlen(text), &diag);
    EXPECT_DIAG(&diag, "name", 1, column, "is not a valid name",
                "use 1 to 63 characters from a-z, 0-9 and '-'");
    diag_clear(&diag);
}

static void test_names_outside_the_alphabet(void **state)
{
    (void)state;
    expect_bad_service_name("Svc", 7);
    expect_bad_service_name("my_svc", 7);
    expect_bad_service_name("my.svc", 7);
    expect_bad_service_name("\"\"", 7);
    expect_bad_service_name("'caf\xc3\xa9'", 7);
    /* 64 characters */
    expect_bad_service_name("a123456789012345678901234567890123456789012345678901234567890123", 7);

    /* 63 characters is the longest name */
    char text[512];
    snprintf(text, sizeof(text),
             "name: a12345678901234567890123456789012345678901234567890123456789012\n"
             "applications:\n"
             "  - name: 0-text-9\n"
             "    import_path: app:main\n"
             "    deployments:\n"
             "      - name: Model_2-b\n"
             "backend:\n"
             "  process:\n"
             "    applications:\n"
             "      - name: 0-text-9\n"
             "        command: [model-server]\n");
    struct service_spec *spec = parse_ok(text);
    assert_int_equal(strlen(spec->name), SPEC_NAME_MAX);
    spec_free(spec);
}

static void test_application_and_policy_names_are_checked(void **state)
{
    (void)state;
    static const char text[] = "name: svc\n"
                               "applications:\n"
                               "  - name: Text\n"
                               "    import_path: app:main\n"
                               "    deployments:\n"
                               "      - name: Model.v2\n"
                               "rollout:\n"
                               "  policy: Production\n" BASE_BACKEND;
    struct diag diag = DIAG_INIT;
    parse_fails(text, strlen(text), &diag);
    EXPECT_DIAG(&diag, "applications[Text].name", 3, 11, "'Text' is not a valid name",
                "use 1 to 63 characters");
    EXPECT_DIAG(&diag, "applications[Text].deployments[Model.v2].name", 6, 15,
                "'Model.v2' is not a valid deployment name", "use 1 to 63 characters");
    EXPECT_DIAG(&diag, "rollout.policy", 8, 11, "'Production' is not a valid name");
    diag_clear(&diag);
}

static void test_in_place_refuses_canary_settings(void **state)
{
    (void)state;
    static const char text[] = "name: svc\n"
                               "applications:\n"
                               "  - name: text\n"
                               "    import_path: app:main\n"
                               "    deployments:\n"
                               "      - name: Model\n"
                               "rollout:\n"
                               "  strategy: in_place\n"
                               "  canary_percent: 20\n"
                               "  max_surge_percent: 25\n" BASE_BACKEND;
    struct diag diag = DIAG_INIT;
    parse_fails(text, strlen(text), &diag);
    EXPECT_DIAG(&diag, "rollout.canary_percent", 9, 19, "canary_percent applies to canary",
                "remove it or set strategy to auto or canary");
    EXPECT_DIAG(&diag, "rollout.max_surge_percent", 10, 22, "max_surge_percent applies to canary",
                "remove it or set strategy to auto or canary");
    assert_int_equal(diag.count, 2);
    diag_clear(&diag);

    /* each alone is refused too, and with auto or canary both are fine */
    static const char surge_only[] = "name: svc\n"
                                     "applications:\n"
                                     "  - name: text\n"
                                     "    import_path: app:main\n"
                                     "    deployments:\n"
                                     "      - name: Model\n"
                                     "rollout:\n"
                                     "  max_surge_percent: 25\n"
                                     "  strategy: in_place\n" BASE_BACKEND;
    parse_fails(surge_only, strlen(surge_only), &diag);
    EXPECT_DIAG(&diag, "rollout.max_surge_percent", 8, 22, "remove it");
    assert_int_equal(diag.count, 1);
    diag_clear(&diag);

    static const char canary[] = "name: svc\n"
                                 "applications:\n"
                                 "  - name: text\n"
                                 "    import_path: app:main\n"
                                 "    deployments:\n"
                                 "      - name: Model\n"
                                 "rollout:\n"
                                 "  strategy: canary\n"
                                 "  canary_percent: 20\n"
                                 "  max_surge_percent: 25\n" BASE_BACKEND;
    struct service_spec *spec = parse_ok(canary);
    spec_free(spec);
}

static void test_num_replicas_with_autoscaling(void **state)
{
    (void)state;
    static const char text[] = "name: svc\n"
                               "applications:\n"
                               "  - name: text\n"
                               "    import_path: app:main\n"
                               "    deployments:\n"
                               "      - name: Model\n"
                               "        num_replicas: 2\n"
                               "        autoscaling_config:\n"
                               "          min_replicas: 1\n"
                               "          max_replicas: 4\n" BASE_BACKEND;
    struct diag diag = DIAG_INIT;
    parse_fails(text, strlen(text), &diag);
    const struct diag_entry *e = diag_only(&diag);
    assert_string_equal(e->field, "applications[text].deployments[Model].num_replicas");
    assert_int_equal(e->line, 7);
    assert_int_equal(e->column, 23);
    assert_non_null(strstr(e->message, "exclusive"));
    assert_non_null(
        strstr(e->message, "remove num_replicas or set autoscaling_config.initial_replicas"));
    diag_clear(&diag);
}

static void test_autoscaling_bounds(void **state)
{
    (void)state;
    static const char text[] = "name: svc\n"
                               "applications:\n"
                               "  - name: text\n"
                               "    import_path: app:main\n"
                               "    deployments:\n"
                               "      - name: Model\n"
                               "        autoscaling_config:\n"
                               "          min_replicas: 4\n"
                               "          max_replicas: 2\n"
                               "      - name: Other\n"
                               "        autoscaling_config:\n"
                               "          min_replicas: 1\n"
                               "          max_replicas: 2\n"
                               "          initial_replicas: 3\n" BASE_BACKEND;
    struct diag diag = DIAG_INIT;
    parse_fails(text, strlen(text), &diag);
    EXPECT_DIAG(&diag, "applications[text].deployments[Model].autoscaling_config.min_replicas", 8,
                25, "min_replicas 4 is above max_replicas 2");
    EXPECT_DIAG(&diag, "applications[text].deployments[Other].autoscaling_config.initial_replicas",
                14, 29, "initial_replicas 3 is outside", "(1..2)");
    assert_int_equal(diag.count, 2);
    diag_clear(&diag);
}

static void test_image_uri_with_containerfile(void **state)
{
    (void)state;
    static const char text[] = "name: svc\n"
                               "image_uri: registry.example.com/svc:1\n"
                               "containerfile: ./Containerfile\n"
                               "applications:\n"
                               "  - name: text\n"
                               "    import_path: app:main\n"
                               "    deployments:\n"
                               "      - name: Model\n" BASE_BACKEND;
    struct diag diag = DIAG_INIT;
    parse_fails(text, strlen(text), &diag);
    const struct diag_entry *e = diag_only(&diag);
    assert_string_equal(e->field, "containerfile");
    assert_int_equal(e->line, 3);
    assert_int_equal(e->column, 16);
    assert_non_null(strstr(e->message, "image_uri and containerfile are exclusive"));
    assert_non_null(strstr(e->message, "keep one of them"));
    diag_clear(&diag);
}

static void expect_timeout(const char *value, long long seconds, const char *needle)
{
    char text[512];
    snprintf(text, sizeof(text),
             "name: svc\n"
             "applications:\n"
             "  - name: text\n"
             "    import_path: app:main\n"
             "    deployments:\n"
             "      - name: Model\n"
             "rollout:\n"
             "  timeout: %s\n" BASE_BACKEND,
             value);
    struct diag diag = DIAG_INIT;
    struct service_spec *spec = spec_parse(text, strlen(text), "test.yaml", &diag);
    if (seconds >= 0) {
        if (!spec)
            print_diag(&diag);
        assert_non_null(spec);
        assert_int_equal(spec->rollout.timeout_s, seconds);
        spec_free(spec);
        return;
    }
    if (spec)
        fail_msg("timeout '%s' was accepted", value);
    const struct diag_entry *e = diag_only(&diag);
    assert_string_equal(e->field, "rollout.timeout");
    assert_int_equal(e->line, 8);
    assert_int_equal(e->column, 12);
    if (!strstr(e->message, needle))
        fail_msg("timeout '%s': message \"%s\" lacks \"%s\"", value, e->message, needle);
    diag_clear(&diag);
}

static void test_durations(void **state)
{
    (void)state;
    expect_timeout("90s", 90, NULL);
    expect_timeout("15m", 900, NULL);
    expect_timeout("2h", 7200, NULL);
    expect_timeout("1h30m", 5400, NULL);
    expect_timeout("1h0m5s", 3605, NULL);
    expect_timeout("720h", 30 * 86400, NULL); /* the longest allowed */
}

static void test_bad_durations(void **state)
{
    (void)state;
    const char *syntax = "write a number with a unit, such as 90s, 15m, 2h or 1h30m";
    expect_timeout("90", -1, syntax);   /* no unit */
    expect_timeout("10x", -1, syntax);  /* unknown unit */
    expect_timeout("1m1h", -1, syntax); /* out of order */
    expect_timeout("1h1h", -1, syntax); /* twice */
    expect_timeout("-5m", -1, syntax);  /* negative */
    expect_timeout("1.5h", -1, syntax); /* fraction */
    expect_timeout("h", -1, syntax);    /* no number */
    expect_timeout("\"\"", -1, syntax); /* empty */
    expect_timeout("99999999999s", -1, syntax);
    expect_timeout("0s", -1, "use 1s to 2592000s"); /* out of range */
    expect_timeout("721h", -1, "use 1s to 2592000s");
}

static void test_missing_required_fields(void **state)
{
    (void)state;
    static const char text[] = "version_name: v1\n"
                               "applications:\n"
                               "  - name: text\n"
                               "    deployments:\n"
                               "      - num_replicas: 2\n" BASE_BACKEND;
    struct diag diag = DIAG_INIT;
    parse_fails(text, strlen(text), &diag);
    EXPECT_DIAG(&diag, "name", 1, 1, "required field 'name' is missing", "add it");
    EXPECT_DIAG(&diag, "applications[text].import_path", 3, 5,
                "required field 'import_path' is missing", "add it");
    EXPECT_DIAG(&diag, "applications[text].deployments[0].name", 5, 9,
                "required field 'name' is missing", "add it");
    assert_int_equal(diag.count, 3);
    diag_clear(&diag);

    static const char no_applications[] = "name: svc\n";
    parse_fails(no_applications, strlen(no_applications), &diag);
    EXPECT_DIAG(&diag, "applications", 1, 1, "required field 'applications' is missing", "add it");
    diag_clear(&diag);

    /* an explicit null is no better than a missing field */
    static const char null_name[] = "name: ~\n"
                                    "applications:\n"
                                    "  - name: text\n"
                                    "    import_path: app:main\n"
                                    "    deployments:\n"
                                    "      - name: Model\n" BASE_BACKEND;
    parse_fails(null_name, strlen(null_name), &diag);
    EXPECT_DIAG(&diag, "name", 1, 7, "must not be empty");
    assert_int_equal(diag.count, 1);
    diag_clear(&diag);

    /* and an empty list of applications or deployments is refused */
    static const char empty_lists[] = "name: svc\n"
                                      "applications:\n"
                                      "  - name: text\n"
                                      "    import_path: app:main\n"
                                      "    deployments: []\n" BASE_BACKEND;
    parse_fails(empty_lists, strlen(empty_lists), &diag);
    EXPECT_DIAG(&diag, "applications[text].deployments", 5, 18,
                "an application needs at least one deployment");
    diag_clear(&diag);
    static const char no_apps[] = "name: svc\n"
                                  "applications: []\n";
    parse_fails(no_apps, strlen(no_apps), &diag);
    EXPECT_DIAG(&diag, "applications", 2, 15, "a service needs at least one application");
    diag_clear(&diag);
}

static void test_empty_file(void **state)
{
    (void)state;
    struct diag diag = DIAG_INIT;
    parse_fails("", 0, &diag);
    const struct diag_entry *e = diag_only(&diag);
    assert_int_equal(e->line, 1);
    assert_non_null(strstr(e->message, "needs name and applications"));
    diag_clear(&diag);

    parse_fails("# only a comment\n", 17, &diag);
    diag_clear(&diag);
}

static void test_process_backend_checks(void **state)
{
    (void)state;
    static const char text[] = "name: svc\n"
                               "applications:\n"
                               "  - name: text\n"
                               "    route_prefix: /text\n"
                               "    import_path: app:main\n"
                               "    deployments:\n"
                               "      - name: Model\n"
                               "  - name: image\n"
                               "    import_path: app:image\n"
                               "    deployments:\n"
                               "      - name: Model\n"
                               "backend:\n"
                               "  process:\n"
                               "    applications:\n"
                               "      - name: text\n"
                               "        command: []\n"
                               "        ingress: Missing\n"
                               "      - name: ghost\n"
                               "        command: [model-server]\n";
    struct diag diag = DIAG_INIT;
    parse_fails(text, strlen(text), &diag);
    EXPECT_DIAG(&diag, "backend.process.applications[text].command", 16, 18,
                "command must name a program");
    EXPECT_DIAG(&diag, "backend.process.applications[text].ingress", 17, 18,
                "'Missing' is not a deployment of application 'text'");
    EXPECT_DIAG(&diag, "backend.process.applications[image]", 8, 5,
                "application 'image' has no command", "add it under backend.process.applications");
    EXPECT_DIAG(&diag, "backend.process.applications[ghost]", 18, 15,
                "no application named 'ghost'");
    assert_int_equal(diag.count, 4);
    diag_clear(&diag);
}

static void test_duplicate_route_prefix(void **state)
{
    (void)state;
    static const char text[] = "name: svc\n"
                               "applications:\n"
                               "  - name: a\n"
                               "    import_path: app:a\n"
                               "    deployments:\n"
                               "      - name: Model\n"
                               "  - name: b\n"
                               "    import_path: app:b\n"
                               "    route_prefix: /\n"
                               "    deployments:\n"
                               "      - name: Model\n"
                               "backend:\n"
                               "  process:\n"
                               "    applications:\n"
                               "      - name: a\n"
                               "        command: [x]\n"
                               "      - name: b\n"
                               "        command: [x]\n";
    struct diag diag = DIAG_INIT;
    parse_fails(text, strlen(text), &diag);
    EXPECT_DIAG(&diag, "applications[b].route_prefix", 9, 19,
                "route_prefix '/' is already used by application 'a'");
    assert_int_equal(diag.count, 1);
    diag_clear(&diag);
}

static void test_unknown_backend_type(void **state)
{
    (void)state;
    static const char text[] = "name: svc\n"
                               "applications:\n"
                               "  - name: text\n"
                               "    import_path: app:main\n"
                               "    deployments:\n"
                               "      - name: Model\n"
                               "backend:\n"
                               "  type: kubernetes\n";
    struct diag diag = DIAG_INIT;
    parse_fails(text, strlen(text), &diag);
    const struct diag_entry *e = diag_only(&diag);
    assert_string_equal(e->field, "backend.type");
    assert_int_equal(e->line, 8);
    assert_int_equal(e->column, 9);
    assert_non_null(strstr(e->message, "'kubernetes' is not one of process, ray"));
    diag_clear(&diag);

    static const char near[] = "name: svc\n"
                               "applications:\n"
                               "  - name: text\n"
                               "    import_path: app:main\n"
                               "    deployments:\n"
                               "      - name: Model\n"
                               "backend:\n"
                               "  type: proces\n";
    parse_fails(near, strlen(near), &diag);
    EXPECT_DIAG(&diag, "backend.type", 8, 9, "did you mean 'process'?");
    diag_clear(&diag);
}

/* An explicit null is "not set": the default applies, and the checks that
 * depend on it still run. */
static void test_null_takes_the_default(void **state)
{
    (void)state;
    static const char text[] = "name: svc\n"
                               "applications:\n"
                               "  - name: text\n"
                               "    import_path: app:main\n"
                               "    deployments:\n"
                               "      - name: Model\n"
                               "        autoscaling_config:\n"
                               "          min_replicas: 5\n"
                               "          max_replicas: null\n" BASE_BACKEND;
    struct diag diag = DIAG_INIT;
    parse_fails(text, strlen(text), &diag);
    EXPECT_DIAG(&diag, "applications[text].deployments[Model].autoscaling_config.min_replicas", 8,
                25, "min_replicas 5 is above max_replicas 1");
    assert_int_equal(diag.count, 1);
    diag_clear(&diag);

    static const char strategy[] = "name: svc\n"
                                   "applications:\n"
                                   "  - name: text\n"
                                   "    import_path: app:main\n"
                                   "    deployments:\n"
                                   "      - name: Model\n"
                                   "rollout:\n"
                                   "  strategy: null\n" BASE_BACKEND;
    struct service_spec *spec = parse_ok(strategy);
    assert_int_equal(spec->rollout.strategy, STRATEGY_AUTO);
    spec_free(spec);

    /* no backend is the process backend, which needs a command */
    static const char backend[] = "name: svc\n"
                                  "applications:\n"
                                  "  - name: text\n"
                                  "    import_path: app:main\n"
                                  "    deployments:\n"
                                  "      - name: Model\n"
                                  "backend: ~\n";
    parse_fails(backend, strlen(backend), &diag);
    EXPECT_DIAG(&diag, "backend.process.applications[text]", 3, 5,
                "application 'text' has no command");
    assert_int_equal(diag.count, 1);
    diag_clear(&diag);
}

static void test_every_error_reported_at_once(void **state)
{
    (void)state;
    size_t length;
    char *text = read_source_file("examples/services/invalid/chat.yaml", &length);
    struct diag diag = DIAG_INIT;
    struct service_spec *spec = spec_parse(text, length, "test.yaml", &diag);
    assert_null(spec);
    assert_non_null(diag_find(&diag, "name"));
    assert_non_null(diag_find(&diag, "applications[generate].deployments[Generator].num_replica"));
    assert_non_null(diag_find(
        &diag, "applications[generate].deployments[Generator].autoscaling_config.min_replicas"));
    assert_non_null(
        diag_find(&diag, "applications[generate].deployments[Generator].max_ongoing_requests"));
    assert_non_null(diag_find(&diag, "rollout.canary_percent"));
    for (size_t i = 0; i < diag.count; i++) {
        assert_true(diag.entries[i].line > 0);
        assert_true(diag.entries[i].column > 0);
        assert_null(strchr(diag.entries[i].message, '\n'));
    }
    diag_clear(&diag);
    free(text);
}

/* ---- hostile YAML: refused with an error, quickly ---- */

static void test_input_over_one_mebibyte(void **state)
{
    (void)state;
    size_t size = YAML_TREE_MAX_BYTES + 1;
    char *text = malloc(size + 1);
    assert_non_null(text);
    size_t used = (size_t)snprintf(text, size + 1, "%s", minimal_spec);
    while (used < size) {
        size_t room = size - used;
        size_t n = room < 64 ? room : 64;
        text[used] = '#';
        memset(text + used + 1, 'x', n - 1);
        if (n > 1)
            text[used + n - 1] = '\n';
        used += n;
    }
    text[size] = 0;

    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    struct diag diag = DIAG_INIT;
    parse_fails(text, size, &diag);
    const struct diag_entry *e = diag_only(&diag);
    assert_int_equal(e->line, 0); /* the whole file */
    assert_non_null(strstr(e->message, "over the limit of 1048576"));
    diag_clear(&diag);

    /* exactly 1 MiB is still read */
    text[size - 2] = '\n';
    struct diag ok = DIAG_INIT;
    struct service_spec *spec = spec_parse(text, size - 1, "test.yaml", &ok);
    if (!spec)
        print_diag(&ok);
    assert_non_null(spec);
    spec_free(spec);
    diag_clear(&ok);
    assert_true(seconds_since(&start) < 5.0);
    free(text);
}

static void test_nesting_deeper_than_64(void **state)
{
    (void)state;
    char text[512];
    /* 65 levels: the 65th opening bracket is refused */
    memset(text, '[', 65);
    memset(text + 65, ']', 65);
    struct diag diag = DIAG_INIT;
    parse_fails(text, 130, &diag);
    const struct diag_entry *e = diag_only(&diag);
    assert_int_equal(e->line, 1);
    assert_int_equal(e->column, 65);
    assert_non_null(strstr(e->message, "nesting deeper than 64 levels"));
    diag_clear(&diag);

    /* 64 levels are read (and then refused for not being a service) */
    parse_fails(text + 1, 128, &diag);
    for (size_t i = 0; i < diag.count; i++)
        assert_null(strstr(diag.entries[i].message, "nesting"));
    EXPECT_DIAG(&diag, "(document)", 1, 1, "expected a mapping");
    diag_clear(&diag);

    /* in a block mapping, and very deep: refused at once */
    size_t deep = 200000;
    char *bomb = malloc(deep + 16);
    assert_non_null(bomb);
    memcpy(bomb, "name: svc\nx: ", 13);
    memset(bomb + 13, '[', deep);
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    parse_fails(bomb, deep + 13, &diag);
    e = diag_only(&diag);
    assert_int_equal(e->line, 2);
    assert_int_equal(e->column, 4 + 63); /* root mapping + 63 sequences fit */
    assert_non_null(strstr(e->message, "nesting deeper than 64"));
    assert_true(seconds_since(&start) < 5.0);
    diag_clear(&diag);
    free(bomb);
}

static void test_billion_laughs(void **state)
{
    (void)state;
    static const char text[] = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
                               "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                               "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
                               "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
                               "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
                               "f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n"
                               "g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n"
                               "h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g, *g]\n"
                               "i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h, *h]\n";
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    struct diag diag = DIAG_INIT;
    parse_fails(text, strlen(text), &diag);
    const struct diag_entry *e = diag_only(&diag);
    /* e's list weighs 1 + 9 * 11111 = 100000 after nine aliases; the tenth
     * would take it over the limit */
    assert_int_equal(e->line, 5);
    assert_int_equal(e->column, 8 + 9 * 4);
    assert_non_null(strstr(e->message, "more than 100000 nodes"));
    assert_true(seconds_since(&start) < 5.0);
    diag_clear(&diag);

    /* the same bomb spread over many keys is caught by the total */
    char wide[8192];
    size_t used = (size_t)snprintf(wide, sizeof(wide), "%s",
                                   "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
                                   "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
                                   "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
                                   "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n");
    for (int k = 0; k < 20; k++)
        used += (size_t)snprintf(wide + used, sizeof(wide) - used, "k%d: *d\n", k);
    parse_fails(wide, used, &diag);
    e = diag_only(&diag);
    assert_non_null(strstr(e->message, "more than 100000 nodes"));
    diag_clear(&diag);
}

static void test_aliases_within_limits_are_expanded(void **state)
{
    (void)state;
    static const char text[] = "name: svc\n"
                               "applications:\n"
                               "  - name: text\n"
                               "    import_path: app:main\n"
                               "    deployments:\n"
                               "      - name: Model\n"
                               "        user_config: &cfg {temperature: 0.5}\n"
                               "      - name: Other\n"
                               "        user_config: *cfg\n" BASE_BACKEND;
    struct service_spec *spec = parse_ok(text);
    json_t *doc = spec_doc(spec);
    json_t *deployments =
        json_object_get(json_array_get(json_object_get(doc, "applications"), 0), "deployments");
    assert_true(json_equal(json_object_get(json_array_get(deployments, 0), "user_config"),
                           json_object_get(json_array_get(deployments, 1), "user_config")));
    json_decref(doc);
    spec_free(spec);

    struct diag diag = DIAG_INIT;
    static const char unknown_alias[] = "name: *nothing\n";
    parse_fails(unknown_alias, strlen(unknown_alias), &diag);
    EXPECT_DIAG(&diag, "", 1, 7, "alias '*nothing' has no anchor");
    diag_clear(&diag);
}

static void test_duplicate_keys(void **state)
{
    (void)state;
    static const char text[] = "name: svc\n"
                               "applications:\n"
                               "  - name: text\n"
                               "    import_path: app:main\n"
                               "    deployments:\n"
                               "      - name: Model\n"
                               "name: other\n" BASE_BACKEND;
    struct diag diag = DIAG_INIT;
    parse_fails(text, strlen(text), &diag);
    const struct diag_entry *e = diag_only(&diag);
    assert_string_equal(e->field, "name");
    assert_int_equal(e->line, 7);
    assert_int_equal(e->column, 1);
    assert_non_null(strstr(e->message, "duplicate key 'name' (first at line 1)"));
    assert_non_null(strstr(e->message, "remove one of them"));
    diag_clear(&diag);

    static const char nested[] = "name: svc\n"
                                 "applications:\n"
                                 "  - name: text\n"
                                 "    import_path: app:main\n"
                                 "    deployments:\n"
                                 "      - name: Model\n"
                                 "        num_replicas: 1\n"
                                 "        num_replicas: 2\n" BASE_BACKEND;
    parse_fails(nested, strlen(nested), &diag);
    e = diag_only(&diag);
    assert_int_equal(e->line, 8);
    assert_int_equal(e->column, 9);
    assert_non_null(strstr(e->message, "duplicate key 'num_replicas' (first at line 7)"));
    diag_clear(&diag);

    /* keys that only look alike are different keys */
    static const char quoted[] = "{a: 1, \"b\": 2, 'a': 3}\n";
    parse_fails(quoted, strlen(quoted), &diag);
    e = diag_only(&diag);
    assert_int_equal(e->column, 16);
    assert_non_null(strstr(e->message, "duplicate key 'a'"));
    diag_clear(&diag);
}

static void test_two_documents(void **state)
{
    (void)state;
    static const char text[] = "name: svc\n"
                               "---\n"
                               "name: other\n";
    struct diag diag = DIAG_INIT;
    parse_fails(text, strlen(text), &diag);
    const struct diag_entry *e = diag_only(&diag);
    assert_int_equal(e->line, 2);
    assert_int_equal(e->column, 1);
    assert_non_null(strstr(e->message, "more than one YAML document"));
    assert_non_null(strstr(e->message, "one service per file"));
    diag_clear(&diag);

    /* an explicit start and end marker around one document is fine */
    char one[1024];
    snprintf(one, sizeof(one), "---\n%s...\n", minimal_spec);
    struct service_spec *spec = parse_ok(one);
    spec_free(spec);
}

static void test_syntax_error_and_nul(void **state)
{
    (void)state;
    static const char text[] = "name: svc\n"
                               "applications: [\n";
    struct diag diag = DIAG_INIT;
    parse_fails(text, strlen(text), &diag);
    const struct diag_entry *e = diag_only(&diag);
    assert_non_null(strstr(e->message, "invalid YAML"));
    assert_true(e->line >= 2);
    diag_clear(&diag);

    static const char nul[] = "name: \"a\\0b\"\n";
    parse_fails(nul, strlen(nul), &diag);
    e = diag_only(&diag);
    assert_non_null(strstr(e->message, "NUL"));
    diag_clear(&diag);
}

/* ---- normalisation and the version hash ---- */

static void test_defaults_written_out_hash_the_same(void **state)
{
    (void)state;
    static const char bare[] = "name: svc\n"
                               "applications:\n"
                               "  - name: text\n"
                               "    import_path: app:main\n"
                               "    deployments:\n"
                               "      - name: Model\n"
                               "      - name: Scaled\n"
                               "        autoscaling_config:\n"
                               "          max_replicas: 4\n" BASE_BACKEND;
    static const char explicit_defaults[] = "name: svc\n"
                                            "applications:\n"
                                            "  - name: text\n"
                                            "    route_prefix: /\n"
                                            "    import_path: app:main\n"
                                            "    deployments:\n"
                                            "      - name: Model\n"
                                            "        num_replicas: 1\n"
                                            "        max_ongoing_requests: 5\n"
                                            "        ray_actor_options:\n"
                                            "          num_cpus: 1.0\n"
                                            "          num_gpus: 0\n"
                                            "        health_check_period_s: 10\n"
                                            "        health_check_timeout_s: 30.0\n"
                                            "        graceful_shutdown_timeout_s: 20\n"
                                            "        graceful_shutdown_wait_loop_s: 2\n"
                                            "      - name: Scaled\n"
                                            "        autoscaling_config:\n"
                                            "          min_replicas: 1\n"
                                            "          max_replicas: 4\n"
                                            "          target_ongoing_requests: 2\n"
                                            "          upscale_delay_s: 30\n"
                                            "          downscale_delay_s: 600.0\n"
                                            "          metrics_interval_s: 10\n"
                                            "          look_back_period_s: 30\n"
                                            "        ray_actor_options: {}\n"
                                            "rollout:\n"
                                            "  strategy: auto\n"
                                            "backend:\n"
                                            "  type: process\n"
                                            "  process:\n"
                                            "    applications:\n"
                                            "      - name: text\n"
                                            "        command: [model-server]\n"
                                            "        health_path: /-/healthz\n"
                                            "        ingress: Model\n";
    /* an explicit null means "not set", which is the default */
    static const char nulls[] = "name: svc\n"
                                "applications:\n"
                                "  - name: text\n"
                                "    route_prefix: ~\n"
                                "    import_path: app:main\n"
                                "    deployments:\n"
                                "      - name: Model\n"
                                "        num_replicas: null\n"
                                "        max_ongoing_requests:\n"
                                "      - name: Scaled\n"
                                "        autoscaling_config:\n"
                                "          max_replicas: 4\n"
                                "          upscale_delay_s: ~\n"
                                "rollout: ~\n"
                                "backend:\n"
                                "  type: ~\n"
                                "  process:\n"
                                "    applications:\n"
                                "      - name: text\n"
                                "        command: [model-server]\n"
                                "        health_path: ~\n";
    struct service_spec *a = parse_ok(bare);
    struct service_spec *b = parse_ok(explicit_defaults);
    struct service_spec *c = parse_ok(nulls);
    json_t *version_a = spec_version_doc(a), *version_b = spec_version_doc(b),
           *version_c = spec_version_doc(c);
    char *text_a = spec_canonical_text(version_a);
    char *text_b = spec_canonical_text(version_b);
    char *text_c = spec_canonical_text(version_c);
    json_decref(version_a);
    json_decref(version_b);
    json_decref(version_c);
    assert_string_equal(text_a, text_b);
    assert_string_equal(text_a, text_c);
    assert_string_equal(a->version, b->version);
    assert_string_equal(a->version, c->version);
    /* the typed views agree too */
    assert_int_equal(c->rollout.strategy, STRATEGY_AUTO);
    assert_string_equal(c->backend, "process");
    assert_string_equal(c->applications[0].route_prefix, "/");
    assert_int_equal(c->applications[0].deployments[0].max_ongoing_requests, 5);
    free(text_a);
    free(text_b);
    free(text_c);
    spec_free(a);
    spec_free(b);
    spec_free(c);
}

static void test_reordering_does_not_change_the_hash(void **state)
{
    (void)state;
    static const char one[] = "name: svc\n"
                              "image_uri: registry.example.com/svc:1\n"
                              "applications:\n"
                              "  - name: text\n"
                              "    route_prefix: /text\n"
                              "    import_path: app:main\n"
                              "    deployments:\n"
                              "      - name: Model\n"
                              "        num_replicas: 2\n"
                              "        user_config: {a: 1, b: [x, y]}\n"
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
                              "        ingress: Model\n"
                              "      - name: image\n"
                              "        command: [model-server]\n";
    static const char two[] = "backend:\n"
                              "  process:\n"
                              "    applications:\n"
                              "      - command: [model-server]\n"
                              "        name: image\n"
                              "      - ingress: Model\n"
                              "        name: text\n"
                              "        command: [model-server]\n"
                              "applications:\n"
                              "  - import_path: app:image\n"
                              "    deployments:\n"
                              "      - name: Vision\n"
                              "    name: image\n"
                              "    route_prefix: /image\n"
                              "  - deployments:\n"
                              "      - name: Tokenizer\n"
                              "      - user_config: {b: [x, y], a: 1}\n"
                              "        num_replicas: 2\n"
                              "        name: Model\n"
                              "    name: text\n"
                              "    import_path: app:main\n"
                              "    route_prefix: /text\n"
                              "image_uri: registry.example.com/svc:1\n"
                              "name: svc\n";
    struct service_spec *a = parse_ok(one);
    struct service_spec *b = parse_ok(two);
    assert_string_equal(a->version, b->version);
    /* the order of a list inside user_config is data, not layout */
    static const char three[] = "name: svc\n"
                                "image_uri: registry.example.com/svc:1\n"
                                "applications:\n"
                                "  - name: text\n"
                                "    route_prefix: /text\n"
                                "    import_path: app:main\n"
                                "    deployments:\n"
                                "      - name: Model\n"
                                "        num_replicas: 2\n"
                                "        user_config: {a: 1, b: [y, x]}\n"
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
                                "        ingress: Model\n"
                                "      - name: image\n"
                                "        command: [model-server]\n";
    struct service_spec *c = parse_ok(three);
    assert_string_not_equal(a->version, c->version);
    spec_free(a);
    spec_free(b);
    spec_free(c);
}

/* Without an explicit ingress the first deployment receives the traffic, so
 * swapping deployments changes where traffic goes, and the version. */
static void test_implicit_ingress_follows_the_first_deployment(void **state)
{
    (void)state;
    static const char one[] = "name: svc\n"
                              "applications:\n"
                              "  - name: text\n"
                              "    import_path: app:main\n"
                              "    deployments:\n"
                              "      - name: Model\n"
                              "      - name: Tokenizer\n" BASE_BACKEND;
    static const char two[] = "name: svc\n"
                              "applications:\n"
                              "  - name: text\n"
                              "    import_path: app:main\n"
                              "    deployments:\n"
                              "      - name: Tokenizer\n"
                              "      - name: Model\n" BASE_BACKEND;
    struct service_spec *a = parse_ok(one);
    struct service_spec *b = parse_ok(two);
    assert_string_equal(a->applications[0].ingress, "Model");
    assert_string_equal(b->applications[0].ingress, "Tokenizer");
    assert_string_not_equal(a->version, b->version);
    spec_free(a);
    spec_free(b);
}

static const char versioned_spec_format[] = "name: svc\n"
                                            "applications:\n"
                                            "  - name: text\n"
                                            "    import_path: app:main\n"
                                            "    deployments:\n"
                                            "      - name: Model\n"
                                            "        user_config: {temperature: %s}\n"
                                            "rollout:\n"
                                            "  strategy: %s\n"
                                            "  %s\n" BASE_BACKEND;

static struct service_spec *versioned_spec(const char *temperature, const char *strategy,
                                           const char *extra)
{
    char text[1024];
    snprintf(text, sizeof(text), versioned_spec_format, temperature, strategy, extra);
    return parse_ok(text);
}

static void test_rollout_section_is_not_part_of_the_version(void **state)
{
    (void)state;
    struct service_spec *base = versioned_spec("0.5", "auto", "policy: production");
    struct service_spec *rollout = versioned_spec("0.5", "canary", "canary_percent: 30");
    struct service_spec *surge = versioned_spec("0.5", "auto", "max_surge_percent: 50");
    struct service_spec *timeout = versioned_spec("0.5", "in_place", "timeout: 5m");
    struct service_spec *config = versioned_spec("0.7", "auto", "policy: production");
    struct service_spec *same_number = versioned_spec("5e-1", "auto", "policy: production");
    assert_string_equal(base->version, rollout->version);
    assert_string_equal(base->version, surge->version);
    assert_string_equal(base->version, timeout->version);
    assert_string_not_equal(base->version, config->version);
    /* a number written another way is the same number */
    assert_string_equal(base->version, same_number->version);
    /* but the whole document does differ */
    assert_false(spec_same(base, rollout));
    spec_free(base);
    spec_free(rollout);
    spec_free(surge);
    spec_free(timeout);
    spec_free(config);
    spec_free(same_number);
}

static void test_version_name_and_image_change_the_hash(void **state)
{
    (void)state;
    struct service_spec *base = parse_ok(minimal_spec);
    char text[1024];
    snprintf(text, sizeof(text), "version_name: v2\n%s", minimal_spec);
    struct service_spec *named = parse_ok(text);
    snprintf(text, sizeof(text), "image_uri: r/x:2\n%s", minimal_spec);
    struct service_spec *image = parse_ok(text);
    assert_string_not_equal(base->version, named->version);
    assert_string_not_equal(base->version, image->version);
    assert_string_not_equal(named->version, image->version);
    spec_free(base);
    spec_free(named);
    spec_free(image);
}

static void test_guess_name(void **state)
{
    (void)state;
    static const char invalid[] = "name: svc\n"
                                  "applications: nope\n";
    char *name = spec_guess_name(invalid, strlen(invalid));
    assert_string_equal(name, "svc");
    free(name);
    static const char bad_name[] = "name: Not_A_Name\n";
    assert_null(spec_guess_name(bad_name, strlen(bad_name)));
    assert_null(spec_guess_name("[", 1));
    assert_null(spec_guess_name("", 0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_minimal_spec_parses_with_defaults),
        cmocka_unit_test(test_full_spec_typed_view),
        cmocka_unit_test(test_autoscaling_without_initial_starts_at_min),
        cmocka_unit_test(test_unknown_key_suggests_the_right_one),
        cmocka_unit_test(test_unknown_top_level_key_and_nested_object_keys),
        cmocka_unit_test(test_wrong_types),
        cmocka_unit_test(test_wrong_types_of_collections),
        cmocka_unit_test(test_numbers_out_of_range),
        cmocka_unit_test(test_integer_field_refuses_fraction),
        cmocka_unit_test(test_duplicate_application_names),
        cmocka_unit_test(test_duplicate_deployment_names),
        cmocka_unit_test(test_same_deployment_name_in_two_applications_is_fine),
        cmocka_unit_test(test_names_outside_the_alphabet),
        cmocka_unit_test(test_application_and_policy_names_are_checked),
        cmocka_unit_test(test_in_place_refuses_canary_settings),
        cmocka_unit_test(test_num_replicas_with_autoscaling),
        cmocka_unit_test(test_autoscaling_bounds),
        cmocka_unit_test(test_image_uri_with_containerfile),
        cmocka_unit_test(test_durations),
        cmocka_unit_test(test_bad_durations),
        cmocka_unit_test(test_missing_required_fields),
        cmocka_unit_test(test_empty_file),
        cmocka_unit_test(test_process_backend_checks),
        cmocka_unit_test(test_duplicate_route_prefix),
        cmocka_unit_test(test_unknown_backend_type),
        cmocka_unit_test(test_null_takes_the_default),
        cmocka_unit_test(test_every_error_reported_at_once),
        cmocka_unit_test(test_input_over_one_mebibyte),
        cmocka_unit_test(test_nesting_deeper_than_64),
        cmocka_unit_test(test_billion_laughs),
        cmocka_unit_test(test_aliases_within_limits_are_expanded),
        cmocka_unit_test(test_duplicate_keys),
        cmocka_unit_test(test_two_documents),
        cmocka_unit_test(test_syntax_error_and_nul),
        cmocka_unit_test(test_defaults_written_out_hash_the_same),
        cmocka_unit_test(test_reordering_does_not_change_the_hash),
        cmocka_unit_test(test_implicit_ingress_follows_the_first_deployment),
        cmocka_unit_test(test_rollout_section_is_not_part_of_the_version),
        cmocka_unit_test(test_version_name_and_image_change_the_hash),
        cmocka_unit_test(test_guess_name),
        cmocka_unit_test(test_document_kept_as_text),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
