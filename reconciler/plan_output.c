#include "plan_output.h"

#include <math.h>
#include <stdbool.h>
#include <string.h>

/* ---- JSON, written as jansson writes it ----
 *
 * An item of the list is written directly, in the layout of json_dumpf with
 * JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10) at its depth
 * in the document: the same bytes, without building a jansson value per plan.
 * jansson refuses strings that are not UTF-8 (a file name can be anything):
 * a value holding one is left out as it was when the list was built with
 * json_pack (the entry of a list, or the whole plan for its name or file).
 */

#define JSON_FLAGS (JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10))
#define JSON_INDENT_WIDTH 2
#define JSON_MAX_DEPTH 16

struct json_writer {
    FILE *out;
    int depth;
    bool empty[JSON_MAX_DEPTH]; /* nothing yet in the container open at each depth */
    size_t length;
    char buffer[4096];
};

static bool is_utf8(const char *text)
{
    const unsigned char *s = (const unsigned char *)text;
    while (*s) {
        size_t length;
        unsigned long codepoint;
        if (*s < 0x80) {
            s++;
            continue;
        }
        if (*s >= 0xC2 && *s <= 0xDF) {
            length = 2;
            codepoint = *s & 0x1F;
        } else if (*s >= 0xE0 && *s <= 0xEF) {
            length = 3;
            codepoint = *s & 0x0F;
        } else if (*s >= 0xF0 && *s <= 0xF4) {
            length = 4;
            codepoint = *s & 0x07;
        } else {
            return false;
        }
        for (size_t i = 1; i < length; i++) {
            if ((s[i] & 0xC0) != 0x80)
                return false; /* the NUL at the end included */
            codepoint = codepoint << 6 | (s[i] & 0x3F);
        }
        if ((length == 3 && codepoint < 0x800) || (length == 4 && codepoint < 0x10000) ||
            codepoint > 0x10FFFF || (codepoint >= 0xD800 && codepoint <= 0xDFFF))
            return false;
        s += length;
    }
    return true;
}

/* The writer keeps its own buffer: a plan is some hundred small pieces, and
 * stdio takes a lock for each in a program with threads. */
static void writer_flush(struct json_writer *w)
{
    fwrite(w->buffer, 1, w->length, w->out);
    w->length = 0;
}

static void writer_append(struct json_writer *w, const char *bytes, size_t n)
{
    if (w->length + n > sizeof(w->buffer)) {
        writer_flush(w);
        if (n > sizeof(w->buffer)) {
            fwrite(bytes, 1, n, w->out);
            return;
        }
    }
    memcpy(w->buffer + w->length, bytes, n);
    w->length += n;
}

static void writer_newline(struct json_writer *w)
{
    static const char line[] = "\n                                "; /* 32 spaces */
    size_t spaces = (size_t)w->depth * JSON_INDENT_WIDTH;
    writer_append(w, line, 1 + (spaces < sizeof(line) - 2 ? spaces : sizeof(line) - 2));
    for (; spaces > sizeof(line) - 2; spaces--)
        writer_append(w, " ", 1);
}

static void writer_open(struct json_writer *w, char bracket)
{
    writer_append(w, &bracket, 1);
    w->depth++;
    w->empty[w->depth] = true;
}

static void writer_close(struct json_writer *w, char bracket)
{
    bool empty = w->empty[w->depth];
    w->depth--;
    if (!empty)
        writer_newline(w);
    writer_append(w, &bracket, 1);
}

/* Before a value of a list or a member of an object. */
static void writer_next(struct json_writer *w)
{
    if (!w->empty[w->depth])
        writer_append(w, ",", 1);
    w->empty[w->depth] = false;
    writer_newline(w);
}

static void writer_string(struct json_writer *w, const char *text)
{
    static const char escaped[] = "\"\\\b\f\n\r\t\x01\x02\x03\x04\x05\x06\x07\x0b\x0e\x0f\x10\x11"
                                  "\x12\x13\x14\x15\x16\x17\x18\x19\x1a\x1b\x1c\x1d\x1e\x1f";
    writer_append(w, "\"", 1);
    for (const char *s = text; *s;) {
        size_t run = strcspn(s, escaped);
        writer_append(w, s, run);
        s += run;
        if (!*s)
            break;
        char code[8];
        switch (*s) {
        case '"':
            strcpy(code, "\\\"");
            break;
        case '\\':
            strcpy(code, "\\\\");
            break;
        case '\b':
            strcpy(code, "\\b");
            break;
        case '\f':
            strcpy(code, "\\f");
            break;
        case '\n':
            strcpy(code, "\\n");
            break;
        case '\r':
            strcpy(code, "\\r");
            break;
        case '\t':
            strcpy(code, "\\t");
            break;
        default:
            snprintf(code, sizeof(code), "\\u%04X", (unsigned char)*s);
        }
        writer_append(w, code, strlen(code));
        s++;
    }
    writer_append(w, "\"", 1);
}

static void writer_key(struct json_writer *w, const char *key)
{
    writer_next(w);
    writer_string(w, key);
    writer_append(w, ": ", 2);
}

static void writer_member_string(struct json_writer *w, const char *key, const char *value)
{
    writer_key(w, key);
    writer_string(w, value);
}

static void writer_member_integer(struct json_writer *w, const char *key, long long value)
{
    /* as "%lld" writes it, without the cost of printf */
    char digits[24], *p = digits + sizeof(digits);
    unsigned long long magnitude =
        value < 0 ? 0ULL - (unsigned long long)value : (unsigned long long)value;
    do {
        *--p = (char)('0' + magnitude % 10);
        magnitude /= 10;
    } while (magnitude);
    if (value < 0)
        *--p = '-';
    writer_key(w, key);
    writer_append(w, p, (size_t)(digits + sizeof(digits) - p));
}

/* Reals in jansson's own digits, which differ between its versions. */
static void writer_member_real(struct json_writer *w, const char *key, double value)
{
    char text[100];
    json_t *real = json_real(value);
    size_t length = real ? json_dumpb(real, text, sizeof(text), JSON_ENCODE_ANY | JSON_FLAGS) : 0;
    json_decref(real);
    writer_key(w, key);
    if (length > 0 && length <= sizeof(text))
        writer_append(w, text, length);
}

static void writer_member_bool(struct json_writer *w, const char *key, bool value)
{
    writer_key(w, key);
    writer_append(w, value ? "true" : "false", value ? 4 : 5);
}

static void write_json_refs(struct json_writer *w, const char *key,
                            const struct plan_deployment_ref *refs, size_t count)
{
    writer_key(w, key);
    writer_open(w, '[');
    for (size_t i = 0; i < count; i++) {
        if (!is_utf8(refs[i].application) || !is_utf8(refs[i].deployment))
            continue;
        writer_next(w);
        writer_open(w, '{');
        writer_member_string(w, "application", refs[i].application);
        writer_member_string(w, "deployment", refs[i].deployment);
        writer_close(w, '}');
    }
    writer_close(w, ']');
}

static void write_json_schedule(struct json_writer *w, const struct service_plan *plan)
{
    writer_key(w, "schedule");
    writer_open(w, '[');
    for (size_t s = 0; s < plan->step_count; s++) {
        const struct plan_step *step = &plan->steps[s];
        writer_next(w);
        writer_open(w, '{');
        writer_member_integer(w, "traffic", step->capacity.traffic);
        writer_key(w, "capacity");
        writer_open(w, '{');
        writer_member_integer(w, "primary", step->capacity.primary);
        writer_member_integer(w, "canary", step->capacity.canary);
        writer_close(w, '}');
        writer_member_bool(w, "pause", step->pause);
        writer_key(w, "replicas");
        writer_open(w, '[');
        for (size_t d = 0; d < plan->deployment_count; d++) {
            const struct plan_deployment_ref *ref = &plan->deployments[d];
            const struct plan_replicas *r = &step->replicas[d];
            if (!is_utf8(ref->application) || !is_utf8(ref->deployment))
                continue;
            writer_next(w);
            writer_open(w, '{');
            writer_member_string(w, "application", ref->application);
            writer_member_string(w, "deployment", ref->deployment);
            writer_member_integer(w, "primary", r->primary < 0 ? 0 : r->primary);
            writer_member_integer(w, "canary", r->canary < 0 ? 0 : r->canary);
            if (r->canary_min >= 0) {
                writer_key(w, "canary_autoscaling");
                writer_open(w, '{');
                writer_member_integer(w, "min_replicas", r->canary_min);
                writer_member_integer(w, "max_replicas", r->canary_max);
                writer_member_integer(w, "initial_replicas", r->canary_initial);
                writer_close(w, '}');
            }
            writer_close(w, '}');
        }
        writer_close(w, ']');
        writer_close(w, '}');
    }
    writer_close(w, ']');
}

/* Whether the plan has an item in the JSON list (see above). */
static bool has_json_item(const struct service_plan *plan)
{
    return is_utf8(plan->name) && is_utf8(plan->file) && isfinite(plan->peak.cpus) &&
           isfinite(plan->peak.gpus);
}

/* One item of the "services" list, as an object at depth. */
static void write_json_plan(const struct service_plan *plan, int depth, FILE *out)
{
    struct json_writer writer = {.out = out, .depth = depth}, *w = &writer;
    writer_open(w, '{');
    writer_member_string(w, "name", plan->name);
    writer_member_string(w, "file", plan->file);
    writer_member_string(w, "action", plan_action_name(plan->action));
    writer_key(w, "changed");
    writer_open(w, '[');
    for (size_t i = 0; i < plan->change_count; i++) {
        if (!plan->changes[i].decided || !is_utf8(plan->changes[i].path))
            continue;
        writer_next(w);
        writer_string(w, plan->changes[i].path);
    }
    writer_close(w, ']');
    writer_key(w, "changes");
    writer_open(w, '[');
    for (size_t i = 0; i < plan->change_count; i++) {
        const struct plan_change *c = &plan->changes[i];
        if (!is_utf8(c->path))
            continue;
        writer_next(w);
        writer_open(w, '{');
        writer_member_string(w, "path", c->path);
        writer_member_string(w, "kind", change_kind_name(c->kind));
        writer_member_string(w, "class", change_class_name(c->class));
        writer_close(w, '}');
    }
    writer_close(w, ']');
    writer_key(w, "errors");
    writer_open(w, '[');
    for (size_t i = 0; i < plan->errors.count; i++) {
        const struct diag_entry *e = &plan->errors.entries[i];
        if (!is_utf8(e->file) || !is_utf8(e->field) || !is_utf8(e->message))
            continue;
        writer_next(w);
        writer_open(w, '{');
        writer_member_string(w, "file", e->file);
        writer_member_integer(w, "line", e->line);
        writer_member_integer(w, "column", e->column);
        writer_member_string(w, "field", e->field);
        writer_member_string(w, "message", e->message);
        writer_close(w, '}');
    }
    writer_close(w, ']');
    writer_key(w, "peak");
    writer_open(w, '{');
    writer_member_integer(w, "replicas", plan->peak.replicas);
    writer_member_real(w, "cpus", plan->peak.cpus);
    writer_member_real(w, "gpus", plan->peak.gpus);
    writer_member_integer(w, "memory", plan->peak.memory);
    writer_close(w, '}');
    if (plan->old_version[0])
        writer_member_string(w, "old_version", plan->old_version);
    if (plan->new_version[0])
        writer_member_string(w, "new_version", plan->new_version);
    if (plan->policy_name && is_utf8(plan->policy_name))
        writer_member_string(w, "policy", plan->policy_name);
    if (plan->action == PLAN_NONE && plan->rollout_changed)
        writer_member_bool(w, "rollout_changed", true);
    if (plan->action == PLAN_IN_PLACE_HEAVYWEIGHT || plan->replaced_count)
        write_json_refs(w, "replaced", plan->replaced, plan->replaced_count);
    if (plan->action == PLAN_CANARY) {
        write_json_schedule(w, plan);
        if (plan->max_surge_percent)
            writer_member_integer(w, "max_surge_percent", plan->max_surge_percent);
        if (plan->canary_percent >= 0)
            writer_member_integer(w, "canary_percent", plan->canary_percent);
        if (plan->approval_percent >= 0)
            writer_member_integer(w, "approval_gate", plan->approval_percent);
    }
    if (plan->signed_commits && plan->action != PLAN_NONE && plan->action != PLAN_INVALID)
        writer_member_bool(w, "signed_commits", true);
    writer_close(w, '}');
    writer_flush(w);
}

json_t *plan_list_to_json(const struct service_plan *plans, size_t count)
{
    /* the text rolld plan writes, read back: one definition of the JSON */
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&text, &size);
    if (!out)
        return NULL;
    plan_list_write(plans, count, PLAN_FORMAT_JSON, out);
    json_t *json = fclose(out) == 0 ? json_loadb(text, size, 0, NULL) : NULL;
    free(text);
    return json;
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
        if (p->approval_percent >= 0)
            fprintf(out, "  approval gate: the canary stops at %d%% until a later commit raises "
                         "rollout.canary_percent\n",
                    p->approval_percent);
    }
    if (p->signed_commits && p->action != PLAN_NONE && p->action != PLAN_INVALID)
        fputs("  signed commits only: the commit must be signed by a trusted key\n", out);
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
    if (p->signed_commits && p->action != PLAN_NONE && p->action != PLAN_INVALID)
        fprintf(out, "\n`%s` deploys only commits signed by a trusted key (policy `%s`).\n",
                p->name, p->policy_name ? p->policy_name : "");
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
    if (p->approval_percent >= 0)
        fprintf(out, "\n**Approval gate:** the canary stops at %d%% until a later commit raises "
                     "`rollout.canary_percent`; merging that pull request is the approval.\n",
                p->approval_percent);
}

void plan_summary_add(struct plan_summary *summary, enum plan_action action, bool item)
{
    summary->plans++;
    summary->items += item;
    if ((int)action < 0 || action >= PLAN_OUTPUT_ACTIONS)
        return;
    if (!summary->count[action]++)
        summary->order[summary->actions++] = action;
}

bool plan_output_has_item(const struct service_plan *plan, enum plan_format format)
{
    return format != PLAN_FORMAT_JSON || has_json_item(plan);
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

void plan_output_separator(enum plan_format format, const struct plan_summary *summary,
                           FILE *out)
{
    if (format == PLAN_FORMAT_JSON && summary->items > 0)
        fputc(',', out);
}

void plan_output_item(const struct service_plan *plan, enum plan_format format, FILE *out)
{
    switch (format) {
    case PLAN_FORMAT_JSON:
        /* an item of "services", itself a member of the top object */
        if (has_json_item(plan)) {
            fputs("\n    ", out);
            write_json_plan(plan, 2, out);
        }
        break;
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
    struct json_writer writer = {.out = out, .depth = 1};
    fputs(summary->items ? "\n  ],\n  \"summary\": " : "],\n  \"summary\": ", out);
    writer_open(&writer, '{');
    for (size_t i = 0; i < summary->actions; i++)
        writer_member_integer(&writer, plan_action_name(summary->order[i]),
                              (long long)summary->count[summary->order[i]]);
    writer_close(&writer, '}');
    writer_flush(&writer);
    fputs("\n}\n", out);
}

void plan_list_write(const struct service_plan *plans, size_t count, enum plan_format format,
                     FILE *out)
{
    struct plan_summary summary = {0};
    plan_output_begin(format, out);
    for (size_t i = 0; i < count; i++) {
        bool item = plan_output_has_item(&plans[i], format);
        if (item) {
            plan_output_separator(format, &summary, out);
            plan_output_item(&plans[i], format, out);
        }
        plan_summary_add(&summary, plans[i].action, item);
    }
    for (size_t i = 0; i < count; i++)
        plan_output_details(&plans[i], format, out);
    plan_output_end(format, &summary, out);
}
