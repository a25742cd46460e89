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
void plan_list_write(const struct service_plan *plans, size_t count, enum plan_format format,
                     FILE *out);

#endif
