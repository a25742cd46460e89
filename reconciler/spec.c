#include "spec.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "decode.h"
#include "yaml_tree.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))
#define OBJECT(fields, check) {fields, COUNT(fields), check}

static const char *const log_encodings[] = {"TEXT", "JSON", NULL};
static const char *const log_levels[] = {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL", NULL};
static const char *const strategies[] = {"auto", "canary", "in_place", NULL};
static const char *const backends[] = {"process", "ray", NULL};

static const struct field_schema logging_fields[] = {
    {"encoding", FIELD_ENUM, 0, 0, NULL, log_encodings, false, NULL},
    {"log_level", FIELD_ENUM, 0, 0, NULL, log_levels, false, NULL},
    {"logs_dir", FIELD_STRING, 0, 0, NULL, NULL, false, NULL},
    {"enable_access_log", FIELD_BOOL, 0, 0, NULL, NULL, false, NULL},
    {"additional_log_standard_attrs", FIELD_STRING_LIST, 0, 0, NULL, NULL, false, NULL},
};
static const struct object_schema logging_object = OBJECT(logging_fields, NULL);

static const struct field_schema http_fields[] = {
    {"host", FIELD_STRING, 0, 0, NULL, NULL, false, NULL},
    {"port", FIELD_INT, 1, 65535, NULL, NULL, false, NULL},
    {"root_path", FIELD_STRING, 0, 0, NULL, NULL, false, NULL},
    {"request_timeout_s", FIELD_NUMBER, 0, 86400, NULL, NULL, false, NULL},
    {"keep_alive_timeout_s", FIELD_NUMBER, 0, 86400, NULL, NULL, false, NULL},
};
static const struct object_schema http_object = OBJECT(http_fields, NULL);

static const struct field_schema grpc_fields[] = {
    {"port", FIELD_INT, 1, 65535, NULL, NULL, false, NULL},
    {"grpc_servicer_functions", FIELD_STRING_LIST, 0, 0, NULL, NULL, false, NULL},
    {"request_timeout_s", FIELD_NUMBER, 0, 86400, NULL, NULL, false, NULL},
};
static const struct object_schema grpc_object = OBJECT(grpc_fields, NULL);

static const struct field_schema tracing_fields[] = {
    {"enabled", FIELD_BOOL, 0, 0, NULL, NULL, false, NULL},
    {"exporter_import_path", FIELD_STRING, 0, 0, NULL, NULL, false, NULL},
    {"sampling_ratio", FIELD_NUMBER, 0, 1, NULL, NULL, false, NULL},
};
static const struct object_schema tracing_object = OBJECT(tracing_fields, NULL);

static void autoscaling_check(struct decode_context *ctx, const struct ynode *node, json_t *out,
                              const char *path);
static const struct field_schema autoscaling_fields[] = {
    {"min_replicas", FIELD_INT, 0, 1024, NULL, NULL, false, "1"},
    {"max_replicas", FIELD_INT, 1, 1024, NULL, NULL, false, "1"},
    {"initial_replicas", FIELD_INT, 0, 1024, NULL, NULL, false, NULL},
    {"target_ongoing_requests", FIELD_NUMBER, 0.001, 1e6, NULL, NULL, false, "2"},
    {"upscale_delay_s", FIELD_NUMBER, 0, 86400, NULL, NULL, false, "30"},
    {"downscale_delay_s", FIELD_NUMBER, 0, 86400, NULL, NULL, false, "600"},
    {"metrics_interval_s", FIELD_NUMBER, 0.1, 3600, NULL, NULL, false, "10"},
    {"look_back_period_s", FIELD_NUMBER, 0.1, 86400, NULL, NULL, false, "30"},
    {"smoothing_factor", FIELD_NUMBER, 0.01, 100, NULL, NULL, false, NULL},
    {"upscale_smoothing_factor", FIELD_NUMBER, 0.01, 100, NULL, NULL, false, NULL},
    {"downscale_smoothing_factor", FIELD_NUMBER, 0.01, 100, NULL, NULL, false, NULL},
    {"upscaling_factor", FIELD_NUMBER, 0.01, 100, NULL, NULL, false, NULL},
    {"downscaling_factor", FIELD_NUMBER, 0.01, 100, NULL, NULL, false, NULL},
};
static const struct object_schema autoscaling_object = OBJECT(autoscaling_fields, autoscaling_check);

static const struct field_schema actor_fields[] = {
    {"num_cpus", FIELD_NUMBER, 0, 1024, NULL, NULL, false, "1"},
    {"num_gpus", FIELD_NUMBER, 0, 64, NULL, NULL, false, "0"},
    {"memory", FIELD_NUMBER, 0, 1125899906842624.0, NULL, NULL, false, NULL},
    {"resources", FIELD_ANY_MAP, 0, 0, NULL, NULL, false, NULL},
    {"accelerator_type", FIELD_STRING, 0, 0, NULL, NULL, false, NULL},
    {"runtime_env", FIELD_ANY_MAP, 0, 0, NULL, NULL, false, NULL},
};
static const struct object_schema actor_object = OBJECT(actor_fields, NULL);

static void deployment_check(struct decode_context *ctx, const struct ynode *node, json_t *out,
                             const char *path);
static const struct field_schema deployment_fields[] = {
    {"name", FIELD_CLASS_NAME, 0, 0, NULL, NULL, true, NULL},
    {"num_replicas", FIELD_INT, 1, 1024, NULL, NULL, false, NULL},
    {"autoscaling_config", FIELD_OBJECT, 0, 0, &autoscaling_object, NULL, false, NULL},
    {"user_config", FIELD_ANY, 0, 0, NULL, NULL, false, NULL},
    {"max_ongoing_requests", FIELD_INT, 1, 100000, NULL, NULL, false, "5"},
    {"max_queued_requests", FIELD_INT, -1, 1000000, NULL, NULL, false, NULL},
    {"ray_actor_options", FIELD_OBJECT, 0, 0, &actor_object, NULL, false, "{\"num_cpus\":1,\"num_gpus\":0}"},
    {"health_check_period_s", FIELD_NUMBER, 0.1, 3600, NULL, NULL, false, "10"},
    {"health_check_timeout_s", FIELD_NUMBER, 0.1, 3600, NULL, NULL, false, "30"},
    {"graceful_shutdown_timeout_s", FIELD_NUMBER, 0, 3600, NULL, NULL, false, "20"},
    {"graceful_shutdown_wait_loop_s", FIELD_NUMBER, 0, 3600, NULL, NULL, false, "2"},
    {"logging_config", FIELD_OBJECT, 0, 0, &logging_object, NULL, false, NULL},
};
static const struct object_schema deployment_object = OBJECT(deployment_fields, deployment_check);

static void application_check(struct decode_context *ctx, const struct ynode *node, json_t *out,
                              const char *path);
static const struct field_schema application_fields[] = {
    {"name", FIELD_NAME, 0, 0, NULL, NULL, true, NULL},
    {"route_prefix", FIELD_PATH, 0, 0, NULL, NULL, false, "\"/\""},
    {"import_path", FIELD_STRING, 0, 0, NULL, NULL, true, NULL},
    {"runtime_env", FIELD_ANY_MAP, 0, 0, NULL, NULL, false, NULL},
    {"args", FIELD_ANY_MAP, 0, 0, NULL, NULL, false, NULL},
    {"deployments", FIELD_NAMED_LIST, 0, 0, &deployment_object, NULL, true, NULL},
    {"logging_config", FIELD_OBJECT, 0, 0, &logging_object, NULL, false, NULL},
};
static const struct object_schema application_object = OBJECT(application_fields, application_check);

static const struct field_schema rollout_fields[] = {
    {"strategy", FIELD_ENUM, 0, 0, NULL, strategies, false, "\"auto\""},
    {"canary_percent", FIELD_INT, 0, 100, NULL, NULL, false, NULL},
    {"max_surge_percent", FIELD_INT, 1, 100, NULL, NULL, false, NULL},
    {"timeout", FIELD_DURATION, 1, 30 * 86400, NULL, NULL, false, NULL},
    {"policy", FIELD_NAME, 0, 0, NULL, NULL, false, NULL},
};
static const struct object_schema rollout_object = OBJECT(rollout_fields, NULL);

static const struct field_schema process_application_fields[] = {
    {"name", FIELD_NAME, 0, 0, NULL, NULL, true, NULL},
    {"command", FIELD_STRING_LIST, 0, 0, NULL, NULL, true, NULL},
    {"health_path", FIELD_PATH, 0, 0, NULL, NULL, false, "\"/-/healthz\""},
    {"reconfigure_path", FIELD_PATH, 0, 0, NULL, NULL, false, NULL},
    {"ingress", FIELD_CLASS_NAME, 0, 0, NULL, NULL, false, NULL},
    {"env", FIELD_STRING_MAP, 0, 0, NULL, NULL, false, NULL},
    {"working_dir", FIELD_STRING, 0, 0, NULL, NULL, false, NULL},
};
static const struct object_schema process_application_object =
    OBJECT(process_application_fields, NULL);

static const struct field_schema process_fields[] = {
    {"applications", FIELD_NAMED_LIST, 0, 0, &process_application_object, NULL, true, NULL},
};
static const struct object_schema process_object = OBJECT(process_fields, NULL);

static const struct field_schema backend_fields[] = {
    {"type", FIELD_ENUM, 0, 0, NULL, backends, false, "\"process\""},
    {"process", FIELD_OBJECT, 0, 0, &process_object, NULL, false, NULL},
    {"ray", FIELD_ANY_MAP, 0, 0, NULL, NULL, false, NULL},
};
static const struct object_schema backend_object = OBJECT(backend_fields, NULL);

static void service_check(struct decode_context *ctx, const struct ynode *node, json_t *out,
                          const char *path);
static const struct field_schema service_fields[] = {
    {"name", FIELD_NAME, 0, 0, NULL, NULL, true, NULL},
    {"version_name", FIELD_STRING, 0, 0, NULL, NULL, false, NULL},
    {"image_uri", FIELD_STRING, 0, 0, NULL, NULL, false, NULL},
    {"containerfile", FIELD_STRING, 0, 0, NULL, NULL, false, NULL},
    {"compute_config", FIELD_NAME_OR_ANY_MAP, 0, 0, NULL, NULL, false, NULL},
    {"cloud", FIELD_STRING, 0, 0, NULL, NULL, false, NULL},
    {"project", FIELD_STRING, 0, 0, NULL, NULL, false, NULL},
    {"working_dir", FIELD_STRING, 0, 0, NULL, NULL, false, NULL},
    {"excludes", FIELD_STRING_LIST, 0, 0, NULL, NULL, false, NULL},
    {"requirements", FIELD_STRING_OR_LIST, 0, 0, NULL, NULL, false, NULL},
    {"py_modules", FIELD_STRING_LIST, 0, 0, NULL, NULL, false, NULL},
    {"env_vars", FIELD_STRING_MAP, 0, 0, NULL, NULL, false, NULL},
    {"query_auth_token_enabled", FIELD_BOOL, 0, 0, NULL, NULL, false, NULL},
    {"http_options", FIELD_OBJECT, 0, 0, &http_object, NULL, false, NULL},
    {"grpc_options", FIELD_OBJECT, 0, 0, &grpc_object, NULL, false, NULL},
    {"logging_config", FIELD_OBJECT, 0, 0, &logging_object, NULL, false, NULL},
    {"tracing_config", FIELD_OBJECT, 0, 0, &tracing_object, NULL, false, NULL},
    {"tags", FIELD_STRING_MAP, 0, 0, NULL, NULL, false, NULL},
    {"applications", FIELD_NAMED_LIST, 0, 0, &application_object, NULL, true, NULL},
    {"rollout", FIELD_OBJECT, 0, 0, &rollout_object, NULL, false, "{\"strategy\":\"auto\"}"},
    {"backend", FIELD_OBJECT, 0, 0, &backend_object, NULL, false, "{\"type\":\"process\"}"},
};
static const struct object_schema service_object = OBJECT(service_fields, service_check);

/* ---- cross-field checks ---- */

static const struct ynode *node_or(const struct ynode *child, const struct ynode *parent)
{
    return child ? child : parent;
}

static void autoscaling_check(struct decode_context *ctx, const struct ynode *node, json_t *out,
                              const char *path)
{
    json_t *min = json_object_get(out, "min_replicas");
    json_t *max = json_object_get(out, "max_replicas");
    json_t *initial = json_object_get(out, "initial_replicas");
    if (!min || !max)
        return;
    json_int_t lo = json_integer_value(min), hi = json_integer_value(max);
    char field[512];
    if (lo > hi) {
        decode_path_join(field, sizeof(field), path, "min_replicas");
        decode_error(ctx, node_or(ynode_map_get(node, "min_replicas"), node), field,
                     "min_replicas %lld is above max_replicas %lld", (long long)lo, (long long)hi);
    }
    if (initial && (json_integer_value(initial) < lo || json_integer_value(initial) > hi)) {
        decode_path_join(field, sizeof(field), path, "initial_replicas");
        decode_error(ctx, ynode_map_get(node, "initial_replicas"), field,
                     "initial_replicas %lld is outside min_replicas..max_replicas (%lld..%lld)",
                     (long long)json_integer_value(initial), (long long)lo, (long long)hi);
    }
}

static void deployment_check(struct decode_context *ctx, const struct ynode *node, json_t *out,
                             const char *path)
{
    const struct ynode *replicas = ynode_map_get(node, "num_replicas");
    const struct ynode *autoscaling = ynode_map_get(node, "autoscaling_config");
    if (replicas && autoscaling && !ynode_is_null(replicas) && !ynode_is_null(autoscaling)) {
        char field[512];
        decode_path_join(field, sizeof(field), path, "num_replicas");
        decode_error(ctx, replicas, field,
                     "num_replicas and autoscaling_config are exclusive; remove num_replicas or "
                     "set autoscaling_config.initial_replicas");
    }
    if (!json_object_get(out, "num_replicas") && !json_object_get(out, "autoscaling_config"))
        json_object_set_new(out, "num_replicas", json_integer(1));
}

static void application_check(struct decode_context *ctx, const struct ynode *node, json_t *out,
                              const char *path)
{
    json_t *deployments = json_object_get(out, "deployments");
    if (deployments && json_array_size(deployments) == 0) {
        char field[512];
        decode_path_join(field, sizeof(field), path, "deployments");
        decode_error(ctx, ynode_map_get(node, "deployments"), field,
                     "an application needs at least one deployment");
    }
}

static const struct ynode *named_item(const struct ynode *list, const char *name)
{
    if (!list || list->kind != YNODE_SEQUENCE)
        return NULL;
    for (size_t i = 0; i < list->count; i++) {
        const struct ynode *n = ynode_map_get(list->items[i], "name");
        if (n && n->kind == YNODE_SCALAR && !strcmp(n->value, name))
            return list->items[i];
    }
    return NULL;
}

static json_t *json_named_item(json_t *array, const char *name)
{
    size_t i;
    json_t *item;
    json_array_foreach(array, i, item)
    {
        const char *n = json_string_value(json_object_get(item, "name"));
        if (n && !strcmp(n, name))
            return item;
    }
    return NULL;
}

static void check_process_backend(struct decode_context *ctx, const struct ynode *node,
                                  json_t *out)
{
    json_t *applications = json_object_get(out, "applications");
    json_t *backend = json_object_get(out, "backend");
    const struct ynode *backend_node = ynode_map_get(node, "backend");
    if (!applications || !backend)
        return;
    const char *type = json_string_value(json_object_get(backend, "type"));
    if (!type || strcmp(type, "process") != 0)
        return; /* another backend, or a type already reported as wrong */
    json_t *process = json_object_get(backend, "process");
    const struct ynode *process_node = ynode_map_get(backend_node, "process");
    json_t *entries = process ? json_object_get(process, "applications") : NULL;
    const struct ynode *entries_node = ynode_map_get(process_node, "applications");
    size_t i;
    json_t *app;
    char field[512];
    json_array_foreach(applications, i, app)
    {
        const char *name = json_string_value(json_object_get(app, "name"));
        if (!name)
            continue;
        json_t *entry = entries ? json_named_item(entries, name) : NULL;
        if (!entry) {
            const struct ynode *app_node = named_item(ynode_map_get(node, "applications"), name);
            snprintf(field, sizeof(field), "backend.process.applications[%s]", name);
            decode_error(ctx, app_node, field,
                         "application '%s' has no command; add it under "
                         "backend.process.applications with name: %s",
                         name, name);
            continue;
        }
        json_t *command = json_object_get(entry, "command");
        if (command && json_array_size(command) == 0) {
            snprintf(field, sizeof(field), "backend.process.applications[%s].command", name);
            decode_error(ctx, ynode_map_get(named_item(entries_node, name), "command"), field,
                         "command must name a program to run");
        }
        const char *ingress = json_string_value(json_object_get(entry, "ingress"));
        if (ingress && !json_named_item(json_object_get(app, "deployments"), ingress)) {
            snprintf(field, sizeof(field), "backend.process.applications[%s].ingress", name);
            decode_error(ctx, ynode_map_get(named_item(entries_node, name), "ingress"), field,
                         "'%s' is not a deployment of application '%s'", ingress, name);
        }
        /* the default ingress is the first deployment: written into the
         * canonical doc so that the version does not hang on list order */
        json_t *first = json_array_get(json_object_get(app, "deployments"), 0);
        if (!ingress && json_object_get(first, "name"))
            json_object_set(entry, "ingress", json_object_get(first, "name"));
    }
    json_array_foreach(entries, i, app)
    {
        const char *name = json_string_value(json_object_get(app, "name"));
        if (name && !json_named_item(applications, name)) {
            snprintf(field, sizeof(field), "backend.process.applications[%s]", name);
            decode_error(ctx, ynode_map_get(named_item(entries_node, name), "name"), field,
                         "no application named '%s' in applications", name);
        }
    }
}

static void service_check(struct decode_context *ctx, const struct ynode *node, json_t *out,
                          const char *path)
{
    (void)path;
    if (json_object_get(out, "image_uri") && json_object_get(out, "containerfile"))
        decode_error(ctx, ynode_map_get(node, "containerfile"), "containerfile",
                     "image_uri and containerfile are exclusive; keep one of them");

    json_t *rollout = json_object_get(out, "rollout");
    const struct ynode *rollout_node = ynode_map_get(node, "rollout");
    const char *strategy = json_string_value(json_object_get(rollout, "strategy"));
    if (strategy && !strcmp(strategy, "in_place")) {
        static const char *const surge_fields[] = {"canary_percent", "max_surge_percent"};
        for (size_t i = 0; i < COUNT(surge_fields); i++) {
            if (!json_object_get(rollout, surge_fields[i]))
                continue;
            char field[64];
            snprintf(field, sizeof(field), "rollout.%s", surge_fields[i]);
            decode_error(ctx, ynode_map_get(rollout_node, surge_fields[i]), field,
                         "%s applies to canary rollouts; remove it or set strategy to auto or "
                         "canary",
                         surge_fields[i]);
        }
    }

    /* two applications cannot share a route */
    json_t *applications = json_object_get(out, "applications");
    const struct ynode *applications_node = ynode_map_get(node, "applications");
    for (size_t i = 0; i < json_array_size(applications); i++) {
        const char *route = json_string_value(json_object_get(json_array_get(applications, i), "route_prefix"));
        for (size_t j = 0; route && j < i; j++) {
            const char *other = json_string_value(
                json_object_get(json_array_get(applications, j), "route_prefix"));
            if (other && !strcmp(route, other)) {
                const char *name =
                    json_string_value(json_object_get(json_array_get(applications, i), "name"));
                char field[256];
                snprintf(field, sizeof(field), "applications[%s].route_prefix", name ? name : "?");
                const struct ynode *app = name ? named_item(applications_node, name) : NULL;
                decode_error(ctx, node_or(ynode_map_get(app, "route_prefix"), app), field,
                             "route_prefix '%s' is already used by application '%s'", route,
                             json_string_value(json_object_get(json_array_get(applications, j), "name")));
                break;
            }
        }
    }
    if (applications && json_array_size(applications) == 0)
        decode_error(ctx, applications_node, "applications",
                     "a service needs at least one application");
    check_process_backend(ctx, node, out);
}

/* ---- typed view ---- */

static char *dup_string(json_t *value)
{
    const char *s = json_string_value(value);
    return s ? strdup(s) : NULL;
}

static double number_or(json_t *value, double fallback)
{
    return json_is_number(value) ? json_number_value(value) : fallback;
}

static void fill_deployment(struct deployment_spec *d, json_t *doc)
{
    d->name = dup_string(json_object_get(doc, "name"));
    json_t *autoscaling = json_object_get(doc, "autoscaling_config");
    if (autoscaling) {
        d->autoscaling = true;
        d->min_replicas = (int)json_integer_value(json_object_get(autoscaling, "min_replicas"));
        d->max_replicas = (int)json_integer_value(json_object_get(autoscaling, "max_replicas"));
        json_t *initial = json_object_get(autoscaling, "initial_replicas");
        d->initial_replicas = initial ? (int)json_integer_value(initial) : d->min_replicas;
        d->target_ongoing_requests =
            number_or(json_object_get(autoscaling, "target_ongoing_requests"), 2);
        d->upscale_delay_s = number_or(json_object_get(autoscaling, "upscale_delay_s"), 30);
        d->downscale_delay_s = number_or(json_object_get(autoscaling, "downscale_delay_s"), 600);
        d->num_replicas = d->initial_replicas;
    } else {
        d->num_replicas = (int)json_integer_value(json_object_get(doc, "num_replicas"));
        d->min_replicas = d->max_replicas = d->initial_replicas = d->num_replicas;
    }
    json_t *actor = json_object_get(doc, "ray_actor_options");
    d->num_cpus = number_or(json_object_get(actor, "num_cpus"), 1);
    d->num_gpus = number_or(json_object_get(actor, "num_gpus"), 0);
    d->memory = (long long)number_or(json_object_get(actor, "memory"), 0);
    d->max_ongoing_requests = (int)json_integer_value(json_object_get(doc, "max_ongoing_requests"));
    d->health_check_period_s = number_or(json_object_get(doc, "health_check_period_s"), 10);
    d->health_check_timeout_s = number_or(json_object_get(doc, "health_check_timeout_s"), 30);
    d->graceful_shutdown_timeout_s =
        number_or(json_object_get(doc, "graceful_shutdown_timeout_s"), 20);
    d->graceful_shutdown_wait_loop_s =
        number_or(json_object_get(doc, "graceful_shutdown_wait_loop_s"), 2);
}

static char **dup_argv(json_t *array)
{
    size_t n = json_array_size(array);
    char **argv = calloc(n + 1, sizeof(*argv));
    if (!argv)
        return NULL;
    for (size_t i = 0; i < n; i++)
        argv[i] = dup_string(json_array_get(array, i));
    return argv;
}

static int fill_typed(struct service_spec *spec, json_t *doc)
{
    spec->name = dup_string(json_object_get(doc, "name"));
    spec->version_name = dup_string(json_object_get(doc, "version_name"));
    spec->http_host = dup_string(json_object_get(json_object_get(doc, "http_options"), "host"));
    json_t *rollout = json_object_get(doc, "rollout");
    const char *strategy = json_string_value(json_object_get(rollout, "strategy"));
    spec->rollout.strategy = !strategy                       ? STRATEGY_AUTO
                             : !strcmp(strategy, "canary")   ? STRATEGY_CANARY
                             : !strcmp(strategy, "in_place") ? STRATEGY_IN_PLACE
                                                             : STRATEGY_AUTO;
    json_t *value = json_object_get(rollout, "canary_percent");
    spec->rollout.canary_percent = value ? (int)json_integer_value(value) : -1;
    spec->rollout.max_surge_percent =
        (int)json_integer_value(json_object_get(rollout, "max_surge_percent"));
    spec->rollout.timeout_s = json_integer_value(json_object_get(rollout, "timeout"));
    spec->rollout.policy = dup_string(json_object_get(rollout, "policy"));

    json_t *backend = json_object_get(doc, "backend");
    spec->backend = dup_string(json_object_get(backend, "type"));
    spec->http_port =
        (int)json_integer_value(json_object_get(json_object_get(doc, "http_options"), "port"));
    json_t *process_entries =
        json_object_get(json_object_get(backend, "process"), "applications");

    json_t *applications = json_object_get(doc, "applications");
    size_t count = json_array_size(applications);
    spec->applications = calloc(count ? count : 1, sizeof(*spec->applications));
    if (!spec->applications || !spec->name || !spec->backend)
        return -1;
    spec->application_count = count; /* only once there is an array: spec_free walks it */
    for (size_t i = 0; i < spec->application_count; i++) {
        struct application_spec *app = &spec->applications[i];
        json_t *app_doc = json_array_get(applications, i);
        app->name = dup_string(json_object_get(app_doc, "name"));
        app->route_prefix = dup_string(json_object_get(app_doc, "route_prefix"));
        json_t *deployments = json_object_get(app_doc, "deployments");
        size_t deployment_count = json_array_size(deployments);
        app->deployments = calloc(deployment_count ? deployment_count : 1, sizeof(*app->deployments));
        if (!app->deployments)
            return -1;
        app->deployment_count = deployment_count;
        for (size_t j = 0; j < app->deployment_count; j++)
            fill_deployment(&app->deployments[j], json_array_get(deployments, j));
        json_t *entry = process_entries ? json_named_item(process_entries, app->name) : NULL;
        if (entry) {
            app->command = dup_argv(json_object_get(entry, "command"));
            app->health_path = dup_string(json_object_get(entry, "health_path"));
            app->reconfigure_path = dup_string(json_object_get(entry, "reconfigure_path"));
            app->ingress = dup_string(json_object_get(entry, "ingress"));
        }
        if (!app->ingress && app->deployment_count)
            app->ingress = strdup(app->deployments[0].name);
    }
    return 0;
}

char *spec_canonical_text(const json_t *doc)
{
    return json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(17));
}

static int compare_by_name(const void *a, const void *b)
{
    const char *x = json_string_value(json_object_get(*(json_t *const *)a, "name"));
    const char *y = json_string_value(json_object_get(*(json_t *const *)b, "name"));
    return strcmp(x ? x : "", y ? y : "");
}

/* ---- the version: FNV-1a 64 of the canonical text of spec_version_doc() ----
 *
 * The text is spec_canonical_text's (compact, keys sorted, reals to 17
 * digits) with the lists of named things (applications, their deployments,
 * the process backend's applications) in name order: they are matched by
 * name (see diff.h), so their order in the file is not part of the version.
 * It is hashed as it is made, byte for byte what jansson would write, without
 * being held or the document copied.
 */

struct canonical_hash {
    unsigned long long value;
    bool failed; /* a value jansson cannot write: then there is no text */
};

/* What the lists of an object hold, by where the object is. */
enum canonical_level { LEVEL_PLAIN, LEVEL_ROOT, LEVEL_APPLICATION, LEVEL_BACKEND, LEVEL_PROCESS };

static void hash_bytes(struct canonical_hash *h, const char *bytes, size_t n)
{
    unsigned long long value = h->value;
    for (size_t i = 0; i < n; i++) {
        value ^= (unsigned char)bytes[i];
        value *= 0x100000001b3ULL;
    }
    h->value = value;
}

/* The length of the UTF-8 sequence at s, 0 when it is not one (overlong,
 * a surrogate, beyond U+10FFFF, cut short): jansson writes no such string. */
static size_t utf8_sequence_length(const unsigned char *s, size_t n)
{
    size_t length;
    unsigned long codepoint;
    if (s[0] < 0x80)
        return 1;
    if (s[0] >= 0xC2 && s[0] <= 0xDF) {
        length = 2;
        codepoint = s[0] & 0x1F;
    } else if (s[0] >= 0xE0 && s[0] <= 0xEF) {
        length = 3;
        codepoint = s[0] & 0x0F;
    } else if (s[0] >= 0xF0 && s[0] <= 0xF4) {
        length = 4;
        codepoint = s[0] & 0x07;
    } else {
        return 0;
    }
    if (length > n)
        return 0;
    for (size_t i = 1; i < length; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        codepoint = codepoint << 6 | (s[i] & 0x3F);
    }
    if ((length == 3 && codepoint < 0x800) || (length == 4 && codepoint < 0x10000) ||
        codepoint > 0x10FFFF || (codepoint >= 0xD800 && codepoint <= 0xDFFF))
        return 0;
    return length;
}

static void hash_string(struct canonical_hash *h, const char *text, size_t length)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t done = 0, i = 0;
    hash_bytes(h, "\"", 1);
    while (i < length) {
        unsigned char c = s[i];
        if (c >= 0x80) {
            size_t n = utf8_sequence_length(s + i, length - i);
            if (!n) {
                h->failed = true;
                return;
            }
            i += n;
            continue;
        }
        if (c >= 0x20 && c != '"' && c != '\\') {
            i++;
            continue;
        }
        char escaped[8];
        const char *e = escaped;
        switch (c) {
        case '"':
            e = "\\\"";
            break;
        case '\\':
            e = "\\\\";
            break;
        case '\b':
            e = "\\b";
            break;
        case '\f':
            e = "\\f";
            break;
        case '\n':
            e = "\\n";
            break;
        case '\r':
            e = "\\r";
            break;
        case '\t':
            e = "\\t";
            break;
        default:
            snprintf(escaped, sizeof(escaped), "\\u%04X", c);
        }
        hash_bytes(h, text + done, i - done);
        hash_bytes(h, e, strlen(e));
        done = ++i;
    }
    hash_bytes(h, text + done, length - done);
    hash_bytes(h, "\"", 1);
}

static void hash_value(struct canonical_hash *h, const json_t *value, enum canonical_level level);

/* A list of named things, in name order: as it is when it is in strict name
 * order already, else sorted as qsort sorts it by name. */
static void hash_named_list(struct canonical_hash *h, const json_t *array,
                            enum canonical_level item_level)
{
    if (!json_is_array(array)) {
        hash_value(h, array, LEVEL_PLAIN);
        return;
    }
    size_t n = json_array_size(array);
    json_t *stack[16], **items = n <= 16 ? stack : calloc(n, sizeof(*items));
    if (!items) {
        h->failed = true;
        return;
    }
    bool ordered = true;
    for (size_t i = 0; i < n; i++) {
        items[i] = json_array_get(array, i);
        if (i && ordered)
            ordered = compare_by_name(&items[i - 1], &items[i]) < 0;
    }
    if (!ordered)
        qsort(items, n, sizeof(*items), compare_by_name);
    hash_bytes(h, "[", 1);
    for (size_t i = 0; i < n; i++) {
        if (i)
            hash_bytes(h, ",", 1);
        hash_value(h, items[i], item_level);
    }
    hash_bytes(h, "]", 1);
    if (items != stack)
        free(items);
}

struct object_key {
    const char *key;
    size_t length;
    json_t *value;
};

/* jansson's order of keys: bytes, then length */
static int compare_object_keys(const void *a, const void *b)
{
    const struct object_key *x = a, *y = b;
    int c = memcmp(x->key, y->key, x->length < y->length ? x->length : y->length);
    return c ? c : (x->length > y->length) - (x->length < y->length);
}

static void hash_object(struct canonical_hash *h, const json_t *object, enum canonical_level level)
{
    size_t n = json_object_size(object);
    struct object_key stack[32], *keys = n <= 32 ? stack : calloc(n, sizeof(*keys));
    if (!keys) {
        h->failed = true;
        return;
    }
    size_t count = 0;
    for (void *iter = json_object_iter((json_t *)object); iter && count < n;
         iter = json_object_iter_next((json_t *)object, iter)) {
        keys[count].key = json_object_iter_key(iter);
        keys[count].length = json_object_iter_key_len(iter);
        keys[count].value = json_object_iter_value(iter);
        count++;
    }
    /* objects are small: an insertion sort (keys are unique, any sort agrees) */
    for (size_t i = 1; i < count; i++) {
        struct object_key key = keys[i];
        size_t j = i;
        for (; j > 0 && compare_object_keys(&keys[j - 1], &key) > 0; j--)
            keys[j] = keys[j - 1];
        keys[j] = key;
    }
    hash_bytes(h, "{", 1);
    for (size_t i = 0; i < count; i++) {
        const char *key = keys[i].key;
        if (i)
            hash_bytes(h, ",", 1);
        hash_string(h, key, keys[i].length);
        hash_bytes(h, ":", 1);
        if (level == LEVEL_ROOT && !strcmp(key, "applications"))
            hash_named_list(h, keys[i].value, LEVEL_APPLICATION);
        else if (level == LEVEL_ROOT && !strcmp(key, "backend"))
            hash_value(h, keys[i].value, LEVEL_BACKEND);
        else if (level == LEVEL_APPLICATION && !strcmp(key, "deployments"))
            hash_named_list(h, keys[i].value, LEVEL_PLAIN);
        else if (level == LEVEL_BACKEND && !strcmp(key, "process"))
            hash_value(h, keys[i].value, LEVEL_PROCESS);
        else if (level == LEVEL_PROCESS && !strcmp(key, "applications"))
            hash_named_list(h, keys[i].value, LEVEL_PLAIN);
        else
            hash_value(h, keys[i].value, LEVEL_PLAIN);
    }
    hash_bytes(h, "}", 1);
    if (keys != stack)
        free(keys);
}

static void hash_value(struct canonical_hash *h, const json_t *value, enum canonical_level level)
{
    char text[100];
    switch (json_typeof(value)) {
    case JSON_OBJECT:
        hash_object(h, value, level);
        break;
    case JSON_ARRAY:
        hash_bytes(h, "[", 1);
        for (size_t i = 0; i < json_array_size(value); i++) {
            if (i)
                hash_bytes(h, ",", 1);
            hash_value(h, json_array_get(value, i), LEVEL_PLAIN);
        }
        hash_bytes(h, "]", 1);
        break;
    case JSON_STRING:
        hash_string(h, json_string_value(value), json_string_length(value));
        break;
    case JSON_INTEGER: {
        /* as "%" JSON_INTEGER_FORMAT writes it, without the cost of printf */
        json_int_t integer = json_integer_value(value);
        unsigned long long magnitude =
            integer < 0 ? 0ULL - (unsigned long long)integer : (unsigned long long)integer;
        char *p = text + sizeof(text);
        do {
            *--p = (char)('0' + magnitude % 10);
            magnitude /= 10;
        } while (magnitude);
        if (integer < 0)
            *--p = '-';
        hash_bytes(h, p, (size_t)(text + sizeof(text) - p));
        break;
    }
    case JSON_REAL: {
        /* jansson's own digits: its real formatting has changed between versions */
        size_t length = json_dumpb(value, text, sizeof(text),
                                   JSON_ENCODE_ANY | JSON_COMPACT | JSON_REAL_PRECISION(17));
        if (length == 0 || length > sizeof(text))
            h->failed = true;
        else
            hash_bytes(h, text, length);
        break;
    }
    case JSON_TRUE:
        hash_bytes(h, "true", 4);
        break;
    case JSON_FALSE:
        hash_bytes(h, "false", 5);
        break;
    default:
        hash_bytes(h, "null", 4);
    }
}

json_t *spec_doc(const struct service_spec *spec)
{
    if (spec->doc)
        return json_incref(spec->doc);
    return spec->text ? json_loads(spec->text, 0, NULL) : NULL;
}

const char *spec_text(const struct service_spec *spec)
{
    if (!spec->text && spec->doc)
        ((struct service_spec *)spec)->text = spec_canonical_text(spec->doc); /* a memo */
    return spec->text;
}

int spec_compact(struct service_spec *spec)
{
    if (!spec->doc)
        return 0;
    if (!spec_text(spec))
        return -ENOMEM;
    json_decref(spec->doc);
    spec->doc = NULL;
    return 0;
}

bool spec_same(const struct service_spec *a, const struct service_spec *b)
{
    if (a == b)
        return true;
    /* json_equal on objects ignores key order, as the sorted texts do */
    if (a->doc && b->doc)
        return json_equal(a->doc, b->doc);
    const char *x = spec_text(a), *y = spec_text(b);
    return x && y && !strcmp(x, y);
}

/* All but rollout: a shallow copy sharing doc's values. */
static json_t *version_doc_of(json_t *doc)
{
    json_t *out = json_object();
    if (out && json_object_update(out, doc) == 0) {
        json_object_del(out, "rollout");
        return out;
    }
    json_decref(out);
    return NULL;
}

json_t *spec_version_doc(const struct service_spec *spec)
{
    if (spec->doc)
        return version_doc_of(spec->doc); /* a copy: the spec's own is shared */
    json_t *doc = spec_doc(spec);
    if (doc)
        json_object_del(doc, "rollout"); /* parsed for this caller alone */
    return doc;
}

/* false when out of memory: a version made of nothing would be one
 * version for every spec */
static bool hash_version(struct service_spec *spec, json_t *doc)
{
    static const unsigned long long offset_basis = 0xcbf29ce484222325ULL;
    struct canonical_hash h = {offset_basis, false};
    json_t *version_doc = version_doc_of(doc);
    if (!version_doc)
        return false;
    if (json_is_object(version_doc))
        hash_object(&h, version_doc, LEVEL_ROOT);
    else
        h.failed = true;
    json_decref(version_doc);
    /* no text, no bytes: the hash of nothing, as when the text could not be made */
    snprintf(spec->version, sizeof(spec->version), "%016llx", h.failed ? offset_basis : h.value);
    return true;
}

static struct service_spec *spec_from_doc_steal(json_t *doc, const char *file, struct diag *diag);

struct service_spec *spec_parse(const char *text, size_t length, const char *file,
                                struct diag *diag)
{
    size_t before = diag->count;
    struct ytree *tree = ytree_parse(text, length, file, diag);
    if (!tree) {
        if (diag->count == before)
            diag_add(diag, file, 0, 0, "", "out of memory while reading the file");
        return NULL;
    }
    const struct ynode *root = ytree_root(tree);
    struct decode_context ctx = {.file = file, .diag = diag};
    json_t *doc = root ? decode_object(&ctx, root, &service_object, "") : NULL;
    if (!root)
        diag_add(diag, file, 1, 1, "", "the file is empty; a service spec needs name and applications");
    ytree_free(tree);
    if (!doc || ctx.errors) {
        json_decref(doc);
        if (diag->count == before)
            diag_add(diag, file, 1, 1, "", "not a valid service spec");
        return NULL;
    }
    return spec_from_doc_steal(doc, file, diag);
}

static struct service_spec *spec_from_doc_steal(json_t *doc, const char *file, struct diag *diag)
{
    struct service_spec *spec = calloc(1, sizeof(*spec));
    if (!spec) {
        json_decref(doc);
        return NULL;
    }
    spec->refs = 1;
    spec->doc = doc;
    spec->file = strdup(file);
    bool made = spec->file && fill_typed(spec, doc) == 0 && hash_version(spec, doc);
    if (!made) {
        spec_free(spec);
        if (diag)
            diag_add(diag, file, 0, 0, "", "out of memory while reading the file");
        return NULL;
    }
    return spec;
}

struct service_spec *spec_with_file(const struct service_spec *spec, const char *file)
{
    json_t *doc = spec_doc(spec);
    struct service_spec *copy = doc ? spec_from_doc(doc, file) : NULL;
    json_decref(doc);
    return copy;
}

struct service_spec *spec_ref(struct service_spec *spec)
{
    if (spec)
        __atomic_add_fetch(&spec->refs, 1, __ATOMIC_RELAXED);
    return spec;
}

struct service_spec *spec_from_doc(json_t *doc, const char *file)
{
    if (!json_is_object(doc) || !json_is_array(json_object_get(doc, "applications")) ||
        !json_is_string(json_object_get(doc, "name")) ||
        !json_is_object(json_object_get(doc, "rollout")) ||
        !json_is_object(json_object_get(doc, "backend")))
        return NULL;
    return spec_from_doc_steal(json_incref(doc), file ? file : "", NULL);
}

void spec_free(struct service_spec *spec)
{
    if (!spec || __atomic_sub_fetch(&spec->refs, 1, __ATOMIC_ACQ_REL) > 0)
        return;
    for (size_t i = 0; i < spec->application_count; i++) {
        struct application_spec *app = &spec->applications[i];
        for (size_t j = 0; j < app->deployment_count; j++)
            free(app->deployments[j].name);
        free(app->deployments);
        for (size_t k = 0; app->command && app->command[k]; k++)
            free(app->command[k]);
        free(app->command);
        free(app->name);
        free(app->route_prefix);
        free(app->health_path);
        free(app->reconfigure_path);
        free(app->ingress);
    }
    free(spec->applications);
    free(spec->file);
    free(spec->name);
    free(spec->version_name);
    free(spec->rollout.policy);
    free(spec->backend);
    json_decref(spec->doc);
    free(spec->text);
    free(spec->http_host);
    free(spec);
}

const char *rollout_strategy_name(enum rollout_strategy strategy)
{
    switch (strategy) {
    case STRATEGY_CANARY:
        return "canary";
    case STRATEGY_IN_PLACE:
        return "in_place";
    default:
        return "auto";
    }
}

char *spec_guess_name(const char *text, size_t length)
{
    struct diag ignored = DIAG_INIT;
    struct ytree *tree = ytree_parse(text, length, "", &ignored);
    diag_clear(&ignored);
    const struct ynode *name = ynode_map_get(ytree_root(tree), "name");
    char *result = name && name->kind == YNODE_SCALAR && decode_is_name(name->value)
                       ? strdup(name->value)
                       : NULL;
    ytree_free(tree);
    return result;
}

void spec_hash_text(const char *text, char out[17])
{
    unsigned long long h = 0xcbf29ce484222325ULL; /* FNV-1a 64, as version ids */
    for (const unsigned char *p = (const unsigned char *)text; p && *p; p++) {
        h ^= *p;
        h *= 0x100000001b3ULL;
    }
    snprintf(out, 17, "%016llx", h);
}
