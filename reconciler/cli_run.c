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
        {"cpus", required_argument, NULL, 'C'},
        {"memory", required_argument, NULL, 'M'},
        {"gpus", required_argument, NULL, 'G'},
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
    while ((c = getopt_long(argc, argv, "s:d:p:x:H:r:b:C:M:G:h", options, NULL)) != -1) {
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
        case 'C':
            o.inventory.declared = true;
            o.inventory.cpus = atof(optarg);
            break;
        case 'M': {
            char *end;
            double value = strtod(optarg, &end);
            double scale = !strcmp(end, "Gi") ? 1073741824.0 : !strcmp(end, "Mi") ? 1048576.0 : 1;
            o.inventory.declared = true;
            o.inventory.memory = (long long)(value * scale);
            break;
        }
        case 'G': {
            /* device indices: 0,1,2,3 */
            o.inventory.declared = true;
            o.inventory.gpu_count = 0;
            char *copy = strdup(optarg);
            for (char *save = NULL, *t = strtok_r(copy, ",", &save);
                 t && o.inventory.gpu_count < INVENTORY_MAX_GPUS; t = strtok_r(NULL, ",", &save))
                o.inventory.gpus[o.inventory.gpu_count++] = atoi(t);
            free(copy);
            break;
        }
        case 'h':
            puts("usage: rolld run --source DIR [--state-dir DIR] [--policies DIR] [--haproxy PATH]\n"
                 "                 [--pin-header NAME] [--port-range LOW-HIGH] [--debounce-ms N]\n"
                 "                 [--cpus N] [--memory BYTES|NMi|NGi] [--gpus 0,1,...]");
            return 0;
        default:
            return 2;
        }
    }
    if (o.inventory.declared && o.inventory.cpus <= 0)
        o.inventory.cpus = 1e9; /* not declared: not the limit */
    if (!o.source) {
        fputs("rolld run: --source DIR is required\n", stderr);
        return 2;
    }
    return agent_run(&o);
}
