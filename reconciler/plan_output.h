/*
 * plan_output.h - plans rendered for people (text), for pull requests
 * (markdown) and for programs (JSON, described by schema/plan.schema.json).
 */
#ifndef ROLLD_PLAN_OUTPUT_H
#define ROLLD_PLAN_OUTPUT_H

#include <jansson.h>
#include <stdio.h>

#include "plan.h"

enum plan_format { PLAN_FORMAT_TEXT, PLAN_FORMAT_JSON, PLAN_FORMAT_MARKDOWN };

/* JSON of a list of plans: {"services": [...], "summary": {...}}; caller decrefs. */
json_t *plan_list_to_json(const struct service_plan *plans, size_t count);
/* Writes a list of plans (in the order given) one plan at a time, through
 * the functions below: the JSON is the same text plan_list_to_json would
 * give, written without holding it whole. */
void plan_list_write(const struct service_plan *plans, size_t count, enum plan_format format,
                     FILE *out);

/*
 * A list of plans written in parts, for writers that never hold every plan
 * at once (rolld plan writes each plan as soon as it is planned and puts the
 * parts in order at the end):
 *
 *   plan_output_begin
 *   for each plan, in order: plan_output_separator, then its plan_output_item
 *   for each plan, in order: its plan_output_details (markdown only)
 *   plan_output_end, with the summary of the plans
 *
 * An item or a details part depends on its plan alone, so it can be written
 * anywhere and copied into place later.
 */
#define PLAN_OUTPUT_ACTIONS (PLAN_INVALID + 1)

struct plan_summary {
    size_t plans;
    size_t count[PLAN_OUTPUT_ACTIONS];        /* plans of each action */
    enum plan_action order[PLAN_OUTPUT_ACTIONS]; /* actions in the order of their first plan */
    size_t actions;
};

void plan_summary_add(struct plan_summary *summary, enum plan_action action);
void plan_output_begin(enum plan_format format, FILE *out);
/* What goes between the item before index and this one. */
void plan_output_separator(enum plan_format format, size_t index, FILE *out);
void plan_output_item(const struct service_plan *plan, enum plan_format format, FILE *out);
void plan_output_details(const struct service_plan *plan, enum plan_format format, FILE *out);
void plan_output_end(enum plan_format format, const struct plan_summary *summary, FILE *out);

#endif
