#include <stdio.h>

#include "cli.h"
#include "source_dir.h"

int cli_validate(int argc, char **argv)
{
    if (argc < 2) {
        fputs("usage: rolld validate PATH...\n", stderr);
        return 2;
    }
    int invalid = 0, valid = 0;
    for (int i = 1; i < argc; i++) {
        struct snapshot snapshot;
        struct diag diag = DIAG_INIT;
        if (source_dir_load(argv[i], &snapshot, &diag) < 0) {
            cli_print_diag(&diag);
            diag_clear(&diag);
            invalid++;
            continue;
        }
        for (size_t e = 0; e < snapshot.count; e++) {
            if (snapshot.entries[e].spec) {
                valid++;
                continue;
            }
            invalid++;
            cli_print_diag(&snapshot.entries[e].errors);
        }
        snapshot_clear(&snapshot);
        diag_clear(&diag);
    }
    printf("%d valid, %d invalid\n", valid, invalid);
    return invalid ? 1 : 0;
}
