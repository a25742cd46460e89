/*
 * cli.h - the subcommands of the rolld binary. Each takes main's argc/argv
 * from the subcommand name on and returns the process exit code.
 */
#ifndef ROLLD_CLI_H
#define ROLLD_CLI_H

#include "policy.h"
#include "error.h"

int cli_validate(int argc, char **argv);
int cli_plan(int argc, char **argv);
int cli_run(int argc, char **argv);
int cli_status(int argc, char **argv);
/* rollback, retry, sync: a request to the running agent's control socket */
int cli_control(int argc, char **argv);

/* Loads the policies from dir, or from the default directory when NULL. */
int cli_load_policies(const char *dir, struct policy_set *set, struct diag *diag);
void cli_print_diag(const struct diag *diag);

#endif
