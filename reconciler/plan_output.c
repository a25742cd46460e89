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

static void write_text(const struct service_plan *plans, size_t count, FILE *out)
{
    fprintf(out, "%-24s %-21s %-35s %s\n", "SERVICE", "ACTION", "VERSION", "DECIDED BY");
    for (size_t i = 0; i < count; i++) {
        const struct service_plan *p = &plans[i];
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
}

static void write_markdown(const struct service_plan *plans, size_t count, FILE *out)
{
    fputs("### rolld plan\n\n| service | action | version | decided by | peak |\n"
          "|---|---|---|---|---|\n",
          out);
    for (size_t i = 0; i < count; i++) {
        const struct service_plan *p = &plans[i];
        char peak[96] = "-";
        if (p->action != PLAN_INVALID && p->action != PLAN_DELETE)
            format_resources(&p->peak, peak, sizeof(peak));
        fprintf(out, "| `%s` | **%s** | `%.8s` → `%.8s` | ", p->name, plan_action_name(p->action),
                p->old_version[0] ? p->old_version : "-", p->new_version[0] ? p->new_version : "-");
        write_decided(p, out, ", ", "`");
        fprintf(out, " | %s |\n", peak);
    }
    for (size_t i = 0; i < count; i++) {
        const struct service_plan *p = &plans[i];
        if (p->errors.count) {
            fprintf(out, "\n#### `%s`: invalid\n\n", p->name);
            for (size_t e = 0; e < p->errors.count; e++) {
                const struct diag_entry *d = &p->errors.entries[e];
                fprintf(out, "- `%s:%d:%d` `%s`: %s\n", d->file, d->line, d->column, d->field,
                        d->message);
            }
        }
        if (p->action != PLAN_CANARY)
            continue;
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
}

void plan_list_write(const struct service_plan *plans, size_t count, enum plan_format format,
                     FILE *out)
{
    switch (format) {
    case PLAN_FORMAT_JSON: {
        json_t *doc = plan_list_to_json(plans, count);
        json_dumpf(doc, out, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10));
        fputc('\n', out);
        json_decref(doc);
        break;
    }
    case PLAN_FORMAT_MARKDOWN:
        write_markdown(plans, count, out);
        break;
    default:
        write_text(plans, count, out);
    }
}
