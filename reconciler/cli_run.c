#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent.h"
#include "cli.h"
#include "config.h"
#include "source_dir.h"

#define CONFIG_MAX_BYTES (1 << 20)

/* Reads and checks a config file; prints every problem. 0 or 2. */
static int load_config_file(const char *path, struct agent_config *config)
{
    char *text = NULL;
    size_t length = 0;
    int r = source_read_file(path, CONFIG_MAX_BYTES, &text, &length);
    if (r < 0) {
        fprintf(stderr, "rolld: %s: %s\n", path, strerror(-r));
        return 2;
    }
    struct diag diag = DIAG_INIT;
    r = config_parse(text, length, path, config, &diag);
    free(text);
    cli_print_diag(&diag);
    diag_clear(&diag);
    return r < 0 ? 2 : 0;
}

static void set_text(char **field, const char *value)
{
    free(*field);
    *field = strdup(value);
}

static const char usage[] =
    "usage: rolld run [--config FILE] [--source DIR | --git URL [--branch B] [--dir D]]\n"
    "                 [--state-dir DIR] [--policies DIR] [--haproxy PATH] [--pin-header NAME]\n"
    "                 [--port-range LOW-HIGH] [--debounce-ms N] [--fetch-interval SECONDS]\n"
    "                 [--no-watch] [--metrics-listen HOST:PORT] [--log-format text|json]\n"
    "                 [--status-branch B | --no-status-git] [--name NAME]\n"
    "                 [--cpus N] [--memory BYTES|NMi|NGi] [--gpus 0,1,...] [--check]\n"
    "The config file (default " CONFIG_DEFAULT_PATH " when neither --config nor a source\n"
    "is given) is read first; options given here win over it. --check validates and exits.\n";

int cli_run(int argc, char **argv)
{
    static const struct option options[] = {
        {"config", required_argument, NULL, 'c'},
        {"source", required_argument, NULL, 's'},
        {"git", required_argument, NULL, 'g'},
        {"branch", required_argument, NULL, 'B'},
        {"dir", required_argument, NULL, 'D'},
        {"fetch-interval", required_argument, NULL, 'F'},
        {"status-branch", required_argument, NULL, 'S'},
        {"no-status-git", no_argument, NULL, 'N'},
        {"no-watch", no_argument, NULL, 'W'},
        {"metrics-listen", required_argument, NULL, 'L'},
        {"log-format", required_argument, NULL, 'l'},
        {"name", required_argument, NULL, 'n'},
        {"state-dir", required_argument, NULL, 'd'},
        {"policies", required_argument, NULL, 'p'},
        {"haproxy", required_argument, NULL, 'x'},
        {"pin-header", required_argument, NULL, 'H'},
        {"port-range", required_argument, NULL, 'r'},
        {"debounce-ms", required_argument, NULL, 'b'},
        {"cpus", required_argument, NULL, 'C'},
        {"memory", required_argument, NULL, 'M'},
        {"gpus", required_argument, NULL, 'G'},
        {"check", no_argument, NULL, 'k'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    /* first pass: the config file, so that options can override it */
    const char *config_file = NULL;
    bool source_given = false, check_only = false;
    int c;
    optind = 0; /* glibc: 0 starts getopt afresh */
    opterr = 0;
    while ((c = getopt_long(argc, argv, "c:s:g:h", options, NULL)) != -1) {
        if (c == 'c')
            config_file = optarg;
        else if (c == 's' || c == 'g')
            source_given = true;
        else if (c == 'h') {
            fputs(usage, stdout);
            return 0;
        }
    }
    opterr = 1;
    struct agent_config config;
    config_init(&config);
    if (!config_file && !source_given)
        config_file = getenv("ROLLD_CONFIG") ? getenv("ROLLD_CONFIG") : CONFIG_DEFAULT_PATH;
    if (config_file && load_config_file(config_file, &config) != 0) {
        config_clear(&config);
        return 2;
    }
    bool status_git_set = false;
    optind = 0;
    int result = -1;
    while (result < 0 && (c = getopt_long(argc, argv, "c:s:g:d:p:x:H:r:b:C:M:G:h", options,
                                          NULL)) != -1) {
        switch (c) {
        case 'c':
            break;
        case 's':
            config.source_kind = SOURCE_DIRECTORY;
            set_text(&config.source_path, optarg);
            break;
        case 'g':
            config.source_kind = SOURCE_GIT;
            set_text(&config.git_url, optarg);
            break;
        case 'B':
            set_text(&config.git_branch, optarg);
            break;
        case 'D':
            set_text(&config.git_directory, optarg);
            break;
        case 'F':
            config.fetch_interval_s = atoll(optarg);
            if (config.fetch_interval_s < 1) {
                fprintf(stderr, "rolld run: --fetch-interval %s: give whole seconds, at least 1\n",
                        optarg);
                result = 2;
            }
            break;
        case 'S':
            set_text(&config.status_branch, optarg);
            config.status_git = true;
            status_git_set = true;
            break;
        case 'W':
            config.git_watch = false;
            break;
        case 'L':
            set_text(&config.metrics_listen, optarg);
            break;
        case 'l':
            if (!strcmp(optarg, "json") || !strcmp(optarg, "text")) {
                config.log_format = !strcmp(optarg, "json") ? LOG_FORMAT_JSON : LOG_FORMAT_TEXT;
            } else {
                fprintf(stderr, "rolld run: --log-format %s: text or json\n", optarg);
                result = 2;
            }
            break;
        case 'N':
            config.status_git = false;
            status_git_set = true;
            break;
        case 'n':
            set_text(&config.name, optarg);
            break;
        case 'd':
            set_text(&config.state_dir, optarg);
            break;
        case 'p':
            set_text(&config.policies_dir, optarg);
            break;
        case 'x':
            set_text(&config.haproxy_binary, optarg);
            break;
        case 'H':
            set_text(&config.pin_header, optarg);
            break;
        case 'r':
            if (config_parse_ports(optarg, &config.port_min, &config.port_max) < 0) {
                fprintf(stderr, "rolld run: --port-range %s: use LOW-HIGH within 1024-65535\n",
                        optarg);
                result = 2;
            }
            break;
        case 'b':
            config.debounce_ms = atoi(optarg);
            break;
        case 'C':
            config.inventory.declared = true;
            config.inventory.cpus = atof(optarg);
            break;
        case 'M':
            config.inventory.declared = true;
            if (config_parse_memory(optarg, &config.inventory.memory) < 0) {
                fprintf(stderr, "rolld run: --memory %s: write bytes or a number with Ki, Mi, "
                                "Gi or Ti\n",
                        optarg);
                result = 2;
            }
            break;
        case 'G':
            config.inventory.declared = true;
            if (config_parse_gpu_list(optarg, &config.inventory) < 0) {
                fprintf(stderr, "rolld run: --gpus %s: write device indices, 0,1,2\n", optarg);
                result = 2;
            }
            break;
        case 'k':
            check_only = true;
            break;
        default:
            result = 2;
        }
    }
    if (result < 0 && optind < argc) {
        fprintf(stderr, "rolld run: unexpected argument '%s'\n", argv[optind]);
        result = 2;
    }
    if (result < 0) {
        if (config.inventory.declared && config.inventory.cpus <= 0)
            config.inventory.cpus = 1e9; /* not declared: not the limit */
        if (!status_git_set && !config.file)
            config.status_git = config.source_kind == SOURCE_GIT;
        if (config.status_git && config.source_kind != SOURCE_GIT) {
            fputs("rolld run: status can be written to Git only with a Git source\n", stderr);
            result = 2;
        } else if (config.source_kind == SOURCE_GIT && config.status_git &&
                   !strcmp(config.git_branch ? config.git_branch : "main",
                           config.status_branch ? config.status_branch : "rolld/status")) {
            fputs("rolld run: the status branch must not be the spec branch\n", stderr);
            result = 2;
        } else if (config.source_kind == SOURCE_DIRECTORY && !config.source_path) {
            fputs("rolld run: no source: give --source DIR, --git URL or a config file with "
                  "source:\n",
                  stderr);
            result = 2;
        }
    }
    if (result < 0) {
        if (!config.state_dir)
            set_text(&config.state_dir,
                     getenv("ROLLD_STATE_DIR") ? getenv("ROLLD_STATE_DIR") : "/var/lib/rolld");
        if (!config.haproxy_binary)
            set_text(&config.haproxy_binary, "haproxy");
        if (!config.pin_header)
            set_text(&config.pin_header, "X-Rolld-Version");
        if (!config.git_branch)
            set_text(&config.git_branch, "main");
        if (!config.git_directory)
            set_text(&config.git_directory, "");
        if (!config.status_branch)
            set_text(&config.status_branch, "rolld/status");
        if (!config.author_name)
            set_text(&config.author_name, "rolld");
        if (!config.name) {
            char host[256] = "rolld";
            gethostname(host, sizeof(host) - 1);
            set_text(&config.name, host);
        }
        if (!config.author_email) {
            char email[320];
            snprintf(email, sizeof(email), "rolld@%s", config.name);
            set_text(&config.author_email, email);
        }
        if (check_only) {
            printf("%s: valid\n", config.file ? config.file : "options");
            result = 0;
        } else {
            result = agent_run(&config);
        }
    }
    config_clear(&config);
    return result;
}
