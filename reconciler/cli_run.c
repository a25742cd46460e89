#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "cli.h"

int cli_run(int argc, char **argv)
{
    static const struct option options[] = {
        {"source", required_argument, NULL, 's'},
        {"state-dir", required_argument, NULL, 'd'},
        {"policies", required_argument, NULL, 'p'},
        {"haproxy", required_argument, NULL, 'x'},
        {"pin-header", required_argument, NULL, 'H'},
        {"port-range", required_argument, NULL, 'r'},
        {"debounce-ms", required_argument, NULL, 'b'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct agent_options o = {
        .source = NULL,
        .state_dir = getenv("ROLLD_STATE_DIR") ? getenv("ROLLD_STATE_DIR") : "/var/lib/rolld",
        .haproxy_binary = "haproxy",
        .pin_header = "X-Rolld-Version",
        .port_min = 20000,
        .port_max = 29999,
        .debounce_ms = 30,
    };
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "s:d:p:x:H:r:b:h", options, NULL)) != -1) {
        switch (c) {
        case 's':
            o.source = optarg;
            break;
        case 'd':
            o.state_dir = optarg;
            break;
        case 'p':
            o.policies_dir = optarg;
            break;
        case 'x':
            o.haproxy_binary = optarg;
            break;
        case 'H':
            o.pin_header = optarg;
            break;
        case 'r':
            if (sscanf(optarg, "%d-%d", &o.port_min, &o.port_max) != 2 || o.port_min < 1024 ||
                o.port_max > 65535 || o.port_min > o.port_max) {
                fprintf(stderr, "rolld run: --port-range %s: use LOW-HIGH within 1024-65535\n",
                        optarg);
                return 2;
            }
            break;
        case 'b':
            o.debounce_ms = atoi(optarg);
            break;
        case 'h':
            puts("usage: rolld run --source DIR [--state-dir DIR] [--policies DIR] [--haproxy PATH]\n"
                 "                 [--pin-header NAME] [--port-range LOW-HIGH] [--debounce-ms N]");
            return 0;
        default:
            return 2;
        }
    }
    if (!o.source) {
        fputs("rolld run: --source DIR is required\n", stderr);
        return 2;
    }
    return agent_run(&o);
}
