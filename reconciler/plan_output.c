#include "plan_output.h"

#include <string.h>

static json_t *errors_to_json(const struct diag *errors)
{
    json_t *array = json_array();
    for (size_t i = 0; i < errors->count; i++) {
        const struct diag_entry *e = &errors->entries[i];
        json_array_append_new(array, json_pack("{s:s, s:i, s:i, s:s, s:s}", "file", e->file,
                                               "line", e->line, "column", e->column, "field",
                                               e->field, "message", e->message));
    }
    return array;
}

static json_t *refs_to_json(const struct plan_deployment_ref *refs, size_t count)
{
    json_t *array = json_array();
    for (size_t i = 0; i < count; i++)
        json_array_append_new(array, json_pack("{s:s, s:s}", "application", refs[i].application,
                                               "deployment", refs[i].deployment));
    return array;
}

static json_t *resources_to_json(const struct plan_resources *r)
{
    return json_pack("{s:i, s:f, s:f, s:I}", "replicas", r->replicas, "cpus", r->cpus, "gpus",
                     r->gpus, "memory", (json_int_t)r->memory);
}

static json_t *schedule_to_json(const struct service_plan *plan)
{
    json_t *array = json_array();
    for (size_t s = 0; s < plan->step_count; s++) {
        const struct plan_step *step = &plan->steps[s];
        json_t *replicas = json_array();
        for (size_t d = 0; d < plan->deployment_count; d++) {
            const struct plan_replicas *r = &step->replicas[d];
            json_t *item = json_pack("{s:s, s:s, s:i, s:i}", "application",
                                     plan->deployments[d].application, "deployment",
                                     plan->deployments[d].deployment, "primary",
                                     r->primary < 0 ? 0 : r->primary, "canary",
                                     r->canary < 0 ? 0 : r->canary);
            if (r->canary_min >= 0)
                json_object_set_new(item, "canary_autoscaling",
                                    json_pack("{s:i, s:i, s:i}", "min_replicas", r->canary_min,
                                              "max_replicas", r->canary_max, "initial_replicas",
                                              r->canary_initial));
            json_array_append_new(replicas, item);
        }
        json_array_append_new(
            array, json_pack("{s:i, s:{s:i, s:i}, s:b, s:o}", "traffic", step->capacity.traffic,
                             "capacity", "primary", step->capacity.primary, "canary",
                             step->capacity.canary, "pause", step->pause, "replicas", replicas));
    }
    return array;
}

static json_t *plan_to_json(const struct service_plan *plan)
{
    json_t *changed = json_array(), *changes = json_array();
    for (size_t i = 0; i < plan->change_count; i++) {
        const struct plan_change *c = &plan->changes[i];
        if (c->decided)
            json_array_append_new(changed, json_string(c->path));
        json_array_append_new(changes, json_pack("{s:s, s:s, s:s}", "path", c->path, "kind",
                                                 change_kind_name(c->kind), "class",
                                                 change_class_name(c->class)));
    }
    json_t *item = json_pack("{s:s, s:s, s:s, s:o, s:o, s:o, s:o}", "name", plan->name, "file",
                             plan->file, "action", plan_action_name(plan->action), "changed",
                             changed, "changes", changes, "errors", errors_to_json(&plan->errors),
                             "peak", resources_to_json(&plan->peak));
    if (plan->old_version[0])
        json_object_set_new(item, "old_version", json_string(plan->old_version));
    if (plan->new_version[0])
        json_object_set_new(item, "new_version", json_string(plan->new_version));
    if (plan->policy_name)
        json_object_set_new(item, "policy", json_string(plan->policy_name));
    if (plan->action == PLAN_NONE && plan->rollout_changed)
        json_object_set_new(item, "rollout_changed", json_true());
    if (plan->action == PLAN_IN_PLACE_HEAVYWEIGHT || plan->replaced_count)
        json_object_set_new(item, "replaced", refs_to_json(plan->replaced, plan->replaced_count));
    if (plan->action == PLAN_CANARY) {
        json_object_set_new(item, "schedule", schedule_to_json(plan));
        if (plan->max_surge_percent)
            json_object_set_new(item, "max_surge_percent", json_integer(plan->max_surge_percent));
        if (plan->canary_percent >= 0)
            json_object_set_new(item, "canary_percent", json_integer(plan->canary_percent));
    }
    return item;
}

json_t *plan_list_to_json(const struct service_plan *plans, size_t count)
{
    json_t *services = json_array();
    json_t *summary = json_object();
    for (size_t i = 0; i < count; i++) {
        json_array_append_new(services, plan_to_json(&plans[i]));
        const char *action = plan_action_name(plans[i].action);
        json_t *n = json_object_get(summary, action);
        json_object_set_new(summary, action, json_integer(n ? json_integer_value(n) + 1 : 1));
    }
    return json_pack("{s:o, s:o}", "services", services, "summary", summary);
}

static void write_decided(const struct service_plan *plan, FILE *out, const char *separator,
                          const char *quote)
{
    int written = 0;
    for (size_t i = 0; i < plan->change_count; i++) {
        if (!plan->changes[i].decided)
            continue;
        if (written == 3) {
            fprintf(out, "%s...", separator);
            break;
        }
        fprintf(out, "%s%s%s%s", written ? separator : "", quote, plan->changes[i].path, quote);
        written++;
    }
    if (!written)
        fputs("-", out);
}

static void format_resources(const struct plan_resources *r, char *buf, size_t size)
{
    snprintf(buf, size, "%d replicas, %g CPU, %g GPU", r->replicas, r->cpus, r->gpus);
}

static void write_text_item(const struct service_plan *p, FILE *out)
{
    char version[40];
    snprintf(version, sizeof(version), "%.8s%s%.8s", p->old_version[0] ? p->old_version : "",
             p->old_version[0] && p->new_version[0] ? " -> " : "",
             p->new_version[0] ? p->new_version : "");
    fprintf(out, "%-24s %-21s %-35s ", p->name, plan_action_name(p->action),
            version[0] ? version : "-");
    write_decided(p, out, ", ", "");
    fputc('\n', out);
    for (size_t e = 0; e < p->errors.count; e++) {
        fputs("  error: ", out);
        diag_format(&p->errors.entries[e], out);
        fputc('\n', out);
    }
    if (p->replaced_count) {
        fputs("  replaces:", out);
        for (size_t r = 0; r < p->replaced_count; r++)
            fprintf(out, " %s/%s", p->replaced[r].application, p->replaced[r].deployment);
        fputc('\n', out);
    }
    if (p->action == PLAN_CANARY) {
        fputs("  steps (canary traffic [primary/canary capacity]):", out);
        for (size_t s = 0; s < p->step_count; s++) {
            const struct capacity_step *c = &p->steps[s].capacity;
            fprintf(out, " %d%%[%d/%d]%s", c->traffic, c->primary, c->canary,
                    p->steps[s].pause ? " pause" : "");
        }
        fputc('\n', out);
    }
    if (p->action != PLAN_INVALID && p->action != PLAN_DELETE && p->action != PLAN_NONE) {
        char peak[96];
        format_resources(&p->peak, peak, sizeof(peak));
        fprintf(out, "  peak: %s\n", peak);
    }
}

static void write_markdown_row(const struct service_plan *p, FILE *out)
{
    char peak[96] = "-";
    if (p->action != PLAN_INVALID && p->action != PLAN_DELETE)
        format_resources(&p->peak, peak, sizeof(peak));
    fprintf(out, "| `%s` | **%s** | `%.8s` → `%.8s` | ", p->name, plan_action_name(p->action),
            p->old_version[0] ? p->old_version : "-", p->new_version[0] ? p->new_version : "-");
    write_decided(p, out, ", ", "`");
    fprintf(out, " | %s |\n", peak);
}

static void write_markdown_details(const struct service_plan *p, FILE *out)
{
    if (p->errors.count) {
        fprintf(out, "\n#### `%s`: invalid\n\n", p->name);
        for (size_t e = 0; e < p->errors.count; e++) {
            const struct diag_entry *d = &p->errors.entries[e];
            fprintf(out, "- `%s:%d:%d` `%s`: %s\n", d->file, d->line, d->column, d->field,
                    d->message);
        }
    }
    if (p->action != PLAN_CANARY)
        return;
    fprintf(out, "\n#### `%s`: canary schedule", p->name);
    if (p->max_surge_percent)
        fprintf(out, " (max surge %d%%)", p->max_surge_percent);
    fputs("\n\n| step | canary traffic | capacity primary / canary | replicas (primary / canary) |\n"
          "|---|---|---|---|\n",
          out);
    for (size_t s = 0; s < p->step_count; s++) {
        const struct plan_step *step = &p->steps[s];
        fprintf(out, "| %zu | %d%%%s | %d%% / %d%% | ", s + 1, step->capacity.traffic,
                step->pause ? " (pause)" : "", step->capacity.primary, step->capacity.canary);
        for (size_t d = 0; d < p->deployment_count; d++)
            fprintf(out, "%s%s/%s %d / %d", d ? ", " : "", p->deployments[d].application,
                    p->deployments[d].deployment,
                    step->replicas[d].primary < 0 ? 0 : step->replicas[d].primary,
                    step->replicas[d].canary < 0 ? 0 : step->replicas[d].canary);
        fputs(" |\n", out);
    }
}

/* ---- JSON, a value at a time ---- */

#define JSON_FLAGS (JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10))

struct indented {
    FILE *out;
    const char *indent; /* written after every newline */
};

/* Values are written on their own and indented for their depth in the list:
 * jansson escapes newlines inside strings, so every newline it writes starts
 * a line of the layout. */
static int write_indented(const char *buffer, size_t size, void *data)
{
    const struct indented *to = data;
    const char *end = buffer + size;
    while (buffer < end) {
        const char *newline = memchr(buffer, '\n', (size_t)(end - buffer));
        size_t n = newline ? (size_t)(newline - buffer) + 1 : (size_t)(end - buffer);
        fwrite(buffer, 1, n, to->out);
        if (newline)
            fputs(to->indent, to->out);
        buffer += n;
    }
    return 0;
}

static void write_json_at(json_t *value, const char *indent, FILE *out)
{
    struct indented to = {out, indent};
    json_dump_callback(value, write_indented, &to, JSON_FLAGS);
}

void plan_summary_add(struct plan_summary *summary, enum plan_action action)
{
    if ((int)action < 0 || action >= PLAN_OUTPUT_ACTIONS)
        return;
    if (!summary->count[action]++)
        summary->order[summary->actions++] = action;
    summary->plans++;
}

void plan_output_begin(enum plan_format format, FILE *out)
{
    switch (format) {
    case PLAN_FORMAT_JSON:
        fputs("{\n  \"services\": [", out);
        break;
    case PLAN_FORMAT_MARKDOWN:
        fputs("### rolld plan\n\n| service | action | version | decided by | peak |\n"
              "|---|---|---|---|---|\n",
              out);
        break;
    default:
        fprintf(out, "%-24s %-21s %-35s %s\n", "SERVICE", "ACTION", "VERSION", "DECIDED BY");
    }
}

void plan_output_separator(enum plan_format format, size_t index, FILE *out)
{
    if (format == PLAN_FORMAT_JSON && index > 0)
        fputc(',', out);
}

void plan_output_item(const struct service_plan *plan, enum plan_format format, FILE *out)
{
    switch (format) {
    case PLAN_FORMAT_JSON: {
        json_t *item = plan_to_json(plan);
        fputs("\n    ", out);
        write_json_at(item, "    ", out);
        json_decref(item);
        break;
    }
    case PLAN_FORMAT_MARKDOWN:
        write_markdown_row(plan, out);
        break;
    default:
        write_text_item(plan, out);
    }
}

void plan_output_details(const struct service_plan *plan, enum plan_format format, FILE *out)
{
    if (format == PLAN_FORMAT_MARKDOWN)
        write_markdown_details(plan, out);
}

void plan_output_end(enum plan_format format, const struct plan_summary *summary, FILE *out)
{
    if (format != PLAN_FORMAT_JSON)
        return;
    json_t *counts = json_object();
    for (size_t i = 0; i < summary->actions; i++)
        json_object_set_new(counts, plan_action_name(summary->order[i]),
                            json_integer((json_int_t)summary->count[summary->order[i]]));
    fputs(summary->plans ? "\n  ],\n  \"summary\": " : "],\n  \"summary\": ", out);
    write_json_at(counts, "  ", out);
    json_decref(counts);
    fputs("\n}\n", out);
}

void plan_list_write(const struct service_plan *plans, size_t count, enum plan_format format,
                     FILE *out)
{
    struct plan_summary summary = {0};
    plan_output_begin(format, out);
    for (size_t i = 0; i < count; i++) {
        plan_output_separator(format, i, out);
        plan_output_item(&plans[i], format, out);
        plan_summary_add(&summary, plans[i].action);
    }
    for (size_t i = 0; i < count; i++)
        plan_output_details(&plans[i], format, out);
    plan_output_end(format, &summary, out);
}
