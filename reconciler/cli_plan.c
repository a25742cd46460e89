#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "plan_output.h"
#include "plan_set.h"
#include "source_dir.h"

static int parse_format(const char *text, enum plan_format *format)
{
    if (!strcmp(text, "text"))
        *format = PLAN_FORMAT_TEXT;
    else if (!strcmp(text, "json"))
        *format = PLAN_FORMAT_JSON;
    else if (!strcmp(text, "markdown"))
        *format = PLAN_FORMAT_MARKDOWN;
    else
        return -1;
    return 0;
}

int cli_plan(int argc, char **argv)
{
    static const struct option options[] = {
        {"against", required_argument, NULL, 'a'},
        {"format", required_argument, NULL, 'f'},
        {"policies", required_argument, NULL, 'p'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *against = NULL, *policies_dir = NULL;
    enum plan_format format = PLAN_FORMAT_TEXT;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "a:f:p:h", options, NULL)) != -1) {
        switch (c) {
        case 'a':
            against = optarg;
            break;
        case 'f':
            if (parse_format(optarg, &format) < 0) {
                fprintf(stderr, "rolld plan: --format %s: use text, json or markdown\n", optarg);
                return 2;
            }
            break;
        case 'p':
            policies_dir = optarg;
            break;
        case 'h':
            puts("usage: rolld plan NEW [--against OLD] [--format text|json|markdown] "
                 "[--policies DIR]");
            return 0;
        default:
            return 2;
        }
    }
    if (optind != argc - 1) {
        fputs("usage: rolld plan NEW [--against OLD] [--format text|json|markdown] "
              "[--policies DIR]\n",
              stderr);
        return 2;
    }
    struct diag diag = DIAG_INIT;
    struct policy_set policies = {0};
    struct snapshot next = {0}, current = {0};
    struct service_plan *plans = NULL;
    size_t count = 0;
    int status = 0;
    cli_load_policies(policies_dir, &policies, &diag);
    if (diag.count) {
        cli_print_diag(&diag);
        status = 2;
        goto out;
    }
    if (source_dir_load(argv[optind], &next, &diag) < 0 ||
        (against && source_dir_load(against, &current, &diag) < 0)) {
        cli_print_diag(&diag);
        status = 2;
        goto out;
    }
    if (plan_set_compute(&next, against ? &current : NULL, &policies, &plans, &count) < 0) {
        fputs("rolld plan: out of memory\n", stderr);
        status = 2;
        goto out;
    }
    plan_list_write(plans, count, format, stdout);
    for (size_t i = 0; i < count; i++)
        if (plans[i].action == PLAN_INVALID)
            status = 1;
out:
    plan_set_free(plans, count);
    snapshot_clear(&next);
    snapshot_clear(&current);
    policy_set_clear(&policies);
    diag_clear(&diag);
    return status;
}
