#include "status.h"

#include <string.h>
#include <time.h>

static void format_time(long long ms, char *out, size_t size)
{
    time_t seconds = (time_t)(ms / 1000);
    struct tm tm;
    gmtime_r(&seconds, &tm);
    strftime(out, size, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static const char *version_state(const struct service_state *s, int side,
                                 const struct status_side_view *view)
{
    int ready = 0, desired = 0;
    for (size_t i = 0; i < view->count; i++) {
        ready += view->counts[i].ready;
        desired += view->counts[i].desired;
    }
    bool is_canary = side == s->canary;
    int share = is_canary ? s->traffic : (s->canary >= 0 ? 100 - s->traffic : 100);
    if (s->sides[side].capacity == 0)
        return ready > 0 || desired > 0 ? "draining" : "stopped";
    if (s->primary < 0 && side == 0)
        return ready >= desired && desired > 0 ? "ready" : "starting";
    if (ready < desired && share == 0)
        return "starting";
    if (share > 0)
        return ready < desired ? "serving_degraded" : "serving";
    return "ready";
}

static json_t *side_json(const struct service_state *s, int side,
                         const struct status_side_view *view)
{
    const struct side_state *st = &s->sides[side];
    if (!st->used)
        return json_null();
    json_t *replicas = json_array();
    for (size_t i = 0; i < view->count; i++) {
        const struct status_deployment_count *c = &view->counts[i];
        json_t *item = json_pack("{s:s, s:s, s:i, s:i}", "application", c->application,
                                 "deployment", c->deployment, "desired", c->desired, "ready",
                                 c->ready);
        if (item && c->autoscale_max > 0)
            json_object_set_new(item, "autoscaling",
                                json_pack("{s:i, s:i}", "min_replicas", c->autoscale_min,
                                          "max_replicas", c->autoscale_max));
        json_array_append_new(replicas, item);
    }
    const char *name = st->spec ? st->spec->version_name : NULL;
    int share = side == s->canary ? s->traffic : (s->canary >= 0 ? 100 - s->traffic : 100);
    if (s->primary < 0)
        share = 0;
    json_t *doc = json_pack("{s:s, s:s, s:s, s:s, s:i, s:i, s:o}", "version", st->version,
                            "version_name", name ? name : st->version, "spec_file",
                            st->file ? st->file : "", "state", version_state(s, side, view),
                            "capacity", st->capacity, "traffic", share, "replicas", replicas);
    if (doc && st->commit[0])
        json_object_set_new(doc, "commit", json_string(st->commit));
    return doc;
}

json_t *status_document(const struct service_state *s, const struct status_side_view views[2],
                        const char *invalid_error, long long now_ms)
{
    char since[32], updated[32];
    format_time(s->phase_since_ms, since, sizeof(since));
    format_time(now_ms, updated, sizeof(updated));
    json_t *doc = json_pack("{s:s, s:s, s:s, s:s, s:s}", "service", s->name, "phase",
                            service_phase_name(s->phase), "phase_description",
                            service_phase_description(s->phase), "phase_since", since, "updated",
                            updated);
    int primary_share = s->primary < 0 ? 0 : (s->canary >= 0 ? 100 - s->traffic : 100);
    json_object_set_new(doc, "traffic",
                        json_pack("{s:i, s:i}", "primary", primary_share, "canary",
                                  s->canary >= 0 ? s->traffic : 0));
    int primary_side = s->primary >= 0 ? s->primary : (s->sides[0].used ? 0 : -1);
    json_object_set_new(doc, "primary",
                        primary_side >= 0 ? side_json(s, primary_side, &views[primary_side])
                                          : json_null());
    json_object_set_new(doc, "canary",
                        s->canary >= 0 ? side_json(s, s->canary, &views[s->canary]) : json_null());
    if (s->canary >= 0) {
        char started[32];
        format_time(s->rollout_started_ms, started, sizeof(started));
        json_t *rollout = json_pack("{s:s}", "started", started);
        const struct rollout_spec *settings = &s->sides[s->canary].spec->rollout;
        if (settings->canary_percent >= 0)
            json_object_set_new(rollout, "canary_percent", json_integer(settings->canary_percent));
        if (settings->max_surge_percent > 0)
            json_object_set_new(rollout, "max_surge_percent",
                                json_integer(settings->max_surge_percent));
        if (s->phase == PHASE_CANARY_PAUSED)
            json_object_set_new(rollout, "paused_at", json_integer(s->traffic));
        if (s->rollback_reason)
            json_object_set_new(rollout, "rollback_reason", json_string(s->rollback_reason));
        json_object_set_new(doc, "rollout", rollout);
    }
    if (invalid_error)
        json_object_set_new(doc, "spec_error", json_string(invalid_error));
    json_object_set_new(doc, "last_error", s->last_error ? json_string(s->last_error) : json_null());
    json_object_set(doc, "rejected_versions", s->rejected);
    json_t *history = json_array();
    size_t i;
    json_t *item;
    json_array_foreach(s->history, i, item)
    {
        char when[32];
        format_time(json_integer_value(json_object_get(item, "time_ms")), when, sizeof(when));
        json_array_append_new(history, json_pack("{s:s, s:O, s:O}", "time", when, "event",
                                                 json_object_get(item, "event"), "detail",
                                                 json_object_get(item, "detail")));
    }
    json_object_set_new(doc, "history", history);
    return doc;
}

static void write_scalar(const json_t *value, FILE *out)
{
    char *text = json_dumps(value, JSON_ENCODE_ANY | JSON_REAL_PRECISION(10));
    fputs(text ? text : "null", out);
    free(text);
}

static bool is_collection(const json_t *v)
{
    return (json_is_object(v) && json_object_size(v)) || (json_is_array(v) && json_array_size(v));
}

static void write_node(const json_t *value, int indent, FILE *out);

static void write_object_body(const json_t *value, int indent, bool first_inline, FILE *out)
{
    const char *key;
    json_t *child;
    bool first = true;
    json_object_foreach((json_t *)value, key, child)
    {
        if (!(first && first_inline))
            fprintf(out, "%*s", indent, "");
        first = false;
        fprintf(out, "%s:", key);
        if (is_collection(child)) {
            fputc('\n', out);
            write_node(child, indent + 2, out);
        } else {
            fputc(' ', out);
            if (json_is_object(child))
                fputs("{}", out);
            else if (json_is_array(child))
                fputs("[]", out);
            else
                write_scalar(child, out);
            fputc('\n', out);
        }
    }
}

static void write_node(const json_t *value, int indent, FILE *out)
{
    if (json_is_object(value)) {
        write_object_body(value, indent, false, out);
    } else if (json_is_array(value)) {
        size_t i;
        json_t *item;
        json_array_foreach((json_t *)value, i, item)
        {
            fprintf(out, "%*s- ", indent, "");
            if (json_is_object(item) && json_object_size(item))
                write_object_body(item, indent + 2, true, out);
            else if (is_collection(item)) {
                fputc('\n', out);
                write_node(item, indent + 2, out);
            } else {
                write_scalar(item, out);
                fputc('\n', out);
            }
        }
    } else {
        fprintf(out, "%*s", indent, "");
        write_scalar(value, out);
        fputc('\n', out);
    }
}

void status_write_yaml(const json_t *doc, FILE *out)
{
    write_node(doc, 0, out);
}

void status_traffic_bar(int canary_percent, char *out, size_t size)
{
    char bar[21];
    int filled = (canary_percent * 20 + 50) / 100;
    for (int i = 0; i < 20; i++)
        bar[i] = i < 20 - filled ? '#' : '=';
    bar[20] = 0;
    snprintf(out, size, "[%s]", bar);
}
