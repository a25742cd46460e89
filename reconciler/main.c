#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"
#include "source_dir.h"

static void usage(FILE *out)
{
    fputs("usage: rolld COMMAND [OPTIONS]\n"
          "\n"
          "commands:\n"
          "  validate PATH...                 check service specs (files or directories)\n"
          "  plan NEW --against OLD           what a change from OLD to NEW would do\n"
          "        [--format text|json|markdown] [--policies DIR]\n"
          "  run --source DIR [--state-dir DIR] [--cpus N] [--memory BYTES] [--gpus 0,1,..]\n"
          "                                   the agent: keeps services as their specs say\n"
          "  status [SERVICE] [--format text|json] [--watch]\n"
          "                                   where each service stands\n"
          "  rollback SERVICE [--max-surge-percent S]\n"
          "                                   roll back the rollout in progress\n"
          "  retry SERVICE                    retry a version that was rolled back\n"
          "  sync                             read the source again now\n"
          "  version                          print the version\n",
          out);
}

static bool is_dir(const char *path)
{
    struct stat st;
    return path && stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

int cli_load_policies(const char *dir, struct policy_set *set, struct diag *diag)
{
    if (!dir) {
        const char *candidates[] = {getenv("ROLLD_POLICY_DIR"), ROLLD_POLICY_DIR,
                                    ROLLD_SOURCE_POLICY_DIR};
        for (size_t i = 0; i < sizeof(candidates) / sizeof(candidates[0]) && !dir; i++)
            if (is_dir(candidates[i]))
                dir = candidates[i];
        if (!dir) {
            diag_add(diag, ROLLD_POLICY_DIR, 0, 0, "",
                     "no policies directory found; pass --policies DIR");
            return -1;
        }
    }
    return source_dir_load_policies(dir, set, diag);
}

void cli_print_diag(const struct diag *diag)
{
    for (size_t i = 0; i < diag->count; i++) {
        diag_format(&diag->entries[i], stderr);
        fputc('\n', stderr);
    }
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    const char *command = argv[1];
    if (!strcmp(command, "validate"))
        return cli_validate(argc - 1, argv + 1);
    if (!strcmp(command, "plan"))
        return cli_plan(argc - 1, argv + 1);
    if (!strcmp(command, "run"))
        return cli_run(argc - 1, argv + 1);
    if (!strcmp(command, "status"))
        return cli_status(argc - 1, argv + 1);
    if (!strcmp(command, "rollback") || !strcmp(command, "retry") || !strcmp(command, "sync"))
        return cli_control(argc - 1, argv + 1);
    if (!strcmp(command, "version") || !strcmp(command, "--version")) {
        printf("rolld %s\n", ROLLD_VERSION);
        return 0;
    }
    if (!strcmp(command, "help") || !strcmp(command, "--help") || !strcmp(command, "-h")) {
        usage(stdout);
        return 0;
    }
    fprintf(stderr, "rolld: unknown command '%s'; run 'rolld help' for the list\n", command);
    return 2;
}
