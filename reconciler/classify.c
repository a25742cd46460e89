#include "classify.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#define NAME_BUF 128

static bool in_list(const char *key, const char *const *list)
{
    for (; *list; list++)
        if (!strcmp(key, *list))
            return true;
    return false;
}

/* Reads "key" or "key[name]" at *p into key and name; advances past a '.'. */
static bool next_segment(const char **p, char *key, size_t key_size, char *name, size_t name_size)
{
    const char *s = *p;
    if (!*s)
        return false;
    size_t k = 0;
    while (*s && *s != '.' && *s != '[' && k + 1 < key_size)
        key[k++] = *s++;
    key[k] = 0;
    name[0] = 0;
    if (*s == '[') {
        s++;
        size_t n = 0;
        while (*s && *s != ']' && n + 1 < name_size)
            name[n++] = *s++;
        name[n] = 0;
        if (*s == ']')
            s++;
    }
    if (*s == '.')
        s++;
    *p = s;
    return true;
}

static const struct application_spec *find_application(const struct service_spec *spec,
                                                       const char *name)
{
    for (size_t i = 0; spec && i < spec->application_count; i++)
        if (!strcmp(spec->applications[i].name, name))
            return &spec->applications[i];
    return NULL;
}

static struct change_scope scope(enum change_class class, const char *application,
                                 const char *deployment)
{
    struct change_scope s = {class, application, deployment};
    return s;
}

struct change_scope classify_change(const struct change *change, const struct service_spec *new_spec,
                                    char *app_buf, char *deployment_buf)
{
    static const char *const canary_only[] = {"image_uri", "containerfile", "compute_config",
                                              "cloud", "working_dir", NULL};
    static const char *const service_light[] = {"version_name", "tags", "logging_config", NULL};
    static const char *const app_light[] = {"route_prefix", "logging_config", NULL};
    static const char *const deployment_light[] = {
        "num_replicas",          "autoscaling_config",         "user_config",
        "max_ongoing_requests",  "max_queued_requests",        "logging_config",
        "health_check_period_s", "health_check_timeout_s",     "graceful_shutdown_timeout_s",
        "graceful_shutdown_wait_loop_s", NULL};
    static const char *const process_light[] = {"health_path", "reconfigure_path", "ingress", NULL};

    const char *p = change->path;
    char key[NAME_BUF];
    app_buf[0] = deployment_buf[0] = 0;
    if (!next_segment(&p, key, sizeof(key), app_buf, NAME_BUF))
        return scope(CLASS_HEAVYWEIGHT, NULL, NULL);

    if (in_list(key, canary_only))
        return scope(CLASS_CANARY_ONLY, NULL, NULL);
    if (in_list(key, service_light))
        return scope(CLASS_LIGHTWEIGHT, NULL, NULL);

    if (!strcmp(key, "backend")) {
        char sub[NAME_BUF], ignored[NAME_BUF];
        if (!next_segment(&p, sub, sizeof(sub), ignored, sizeof(ignored)) || strcmp(sub, "process"))
            return scope(CLASS_CANARY_ONLY, NULL, NULL); /* another compute adapter */
        if (!next_segment(&p, sub, sizeof(sub), app_buf, NAME_BUF) || !app_buf[0])
            return scope(CLASS_HEAVYWEIGHT, NULL, NULL);
        if (change->kind != CHANGE_MODIFIED && !*p)
            return scope(CLASS_HEAVYWEIGHT, app_buf, NULL); /* entry added or removed */
        char field[NAME_BUF];
        if (next_segment(&p, field, sizeof(field), ignored, sizeof(ignored)) &&
            in_list(field, process_light))
            return scope(CLASS_LIGHTWEIGHT, app_buf, NULL);
        return scope(CLASS_HEAVYWEIGHT, app_buf, NULL);
    }

    if (strcmp(key, "applications") != 0 || !app_buf[0])
        return scope(CLASS_HEAVYWEIGHT, NULL, NULL);
    /* applications[app]... */
    if (change->kind != CHANGE_MODIFIED && !*p)
        return scope(CLASS_HEAVYWEIGHT, app_buf, NULL); /* application added or removed */
    char field[NAME_BUF];
    if (!next_segment(&p, field, sizeof(field), deployment_buf, NAME_BUF))
        return scope(CLASS_HEAVYWEIGHT, app_buf, NULL);
    if (strcmp(field, "deployments") != 0) {
        deployment_buf[0] = 0;
        return in_list(field, app_light) ? scope(CLASS_LIGHTWEIGHT, app_buf, NULL)
                                         : scope(CLASS_HEAVYWEIGHT, app_buf, NULL);
    }
    if (!deployment_buf[0] || !*p) {
        /* a deployment added or removed changes the application's graph */
        deployment_buf[0] = 0;
        return scope(CLASS_HEAVYWEIGHT, app_buf, NULL);
    }
    char dkey[NAME_BUF], ignored[NAME_BUF];
    next_segment(&p, dkey, sizeof(dkey), ignored, sizeof(ignored));
    if (!strcmp(dkey, "user_config")) {
        /* without a reconfigure path the only way to deliver it is a restart */
        const struct application_spec *app = find_application(new_spec, app_buf);
        bool can_reconfigure = !new_spec || strcmp(new_spec->backend, "process") != 0 ||
                               (app && app->reconfigure_path);
        return scope(can_reconfigure ? CLASS_LIGHTWEIGHT : CLASS_HEAVYWEIGHT, app_buf,
                     deployment_buf);
    }
    if (in_list(dkey, deployment_light))
        return scope(CLASS_LIGHTWEIGHT, app_buf, deployment_buf);
    return scope(CLASS_HEAVYWEIGHT, app_buf, deployment_buf);
}

const char *change_class_name(enum change_class class)
{
    switch (class) {
    case CLASS_LIGHTWEIGHT:
        return "lightweight";
    case CLASS_HEAVYWEIGHT:
        return "heavyweight";
    default:
        return "canary_only";
    }
}
