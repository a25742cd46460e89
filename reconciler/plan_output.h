/*
 * plan_output.h - plans rendered for people (text), for pull requests
 * (markdown) and for programs (JSON, described by schema/plan.schema.json).
 */
#ifndef ROLLD_PLAN_OUTPUT_H
#define ROLLD_PLAN_OUTPUT_H

#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>

#include "plan.h"

enum plan_format { PLAN_FORMAT_TEXT, PLAN_FORMAT_JSON, PLAN_FORMAT_MARKDOWN };

/* JSON of a list of plans: {"services": [...], "summary": {...}}, the JSON
 * text plan_list_write writes, read back (caller decrefs; NULL on no memory). */
json_t *plan_list_to_json(const struct service_plan *plans, size_t count);
/* Writes a list of plans (in the order given) one plan at a time, through
 * the functions below, never holding the whole text. */
void plan_list_write(const struct service_plan *plans, size_t count, enum plan_format format,
                     FILE *out);

/*
 * A list of plans written in parts, for writers that never hold every plan
 * at once (rolld plan writes each plan as soon as it is planned and puts the
 * parts in order at the end):
 *
 *   plan_output_begin
 *   for each plan, in order: when plan_output_has_item, plan_output_separator
 *     then plan_output_item; then plan_summary_add
 *   for each plan, in order: plan_output_details (markdown only)
 *   plan_output_end
 *
 * An item or a details part depends on its plan alone, so it can be written
 * anywhere and copied into place later; an item is never empty.
 */
#define PLAN_OUTPUT_ACTIONS (PLAN_INVALID + 1)

struct plan_summary {
    size_t plans;
    size_t items;                                /* items written so far */
    size_t count[PLAN_OUTPUT_ACTIONS];           /* plans of each action */
    enum plan_action order[PLAN_OUTPUT_ACTIONS]; /* actions in the order of their first plan */
    size_t actions;
};

/* Counts a plan, and its item when it has one. */
void plan_summary_add(struct plan_summary *summary, enum plan_action action, bool item);
/* Whether plan_output_item writes anything: in JSON, not for a plan whose
 * name or file is not UTF-8 (such a plan is only counted in the summary). */
bool plan_output_has_item(const struct service_plan *plan, enum plan_format format);
void plan_output_begin(enum plan_format format, FILE *out);
/* What goes before an item, after the summary->items items before it. */
void plan_output_separator(enum plan_format format, const struct plan_summary *summary,
                           FILE *out);
void plan_output_item(const struct service_plan *plan, enum plan_format format, FILE *out);
void plan_output_details(const struct service_plan *plan, enum plan_format format, FILE *out);
void plan_output_end(enum plan_format format, const struct plan_summary *summary, FILE *out);

#endif
