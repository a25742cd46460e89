#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "options.h"

enum {
    OPT_PORT = 256,
    OPT_HOST,
    OPT_HEALTH_PATH,
    OPT_RECONFIGURE_PATH,
    OPT_DRAIN_TIMEOUT,
    OPT_VERBOSE,
    OPT_HELP,
    OPT_START_DELAY,
    OPT_LISTEN_DELAY,
    OPT_NEVER_HEALTHY,
    OPT_UNHEALTHY_AFTER,
    OPT_CRASH_AFTER_REQUESTS,
    OPT_LATENCY_MS,
    OPT_FAIL_RATE,
};

static const struct option long_options[] = {
    {"port", required_argument, NULL, OPT_PORT},
    {"host", required_argument, NULL, OPT_HOST},
    {"health-path", required_argument, NULL, OPT_HEALTH_PATH},
    {"reconfigure-path", required_argument, NULL, OPT_RECONFIGURE_PATH},
    {"drain-timeout", required_argument, NULL, OPT_DRAIN_TIMEOUT},
    {"verbose", no_argument, NULL, OPT_VERBOSE},
    {"help", no_argument, NULL, OPT_HELP},
    {"start-delay", required_argument, NULL, OPT_START_DELAY},
    {"listen-delay", required_argument, NULL, OPT_LISTEN_DELAY},
    {"never-healthy", no_argument, NULL, OPT_NEVER_HEALTHY},
    {"unhealthy-after", required_argument, NULL, OPT_UNHEALTHY_AFTER},
    {"crash-after-requests", required_argument, NULL, OPT_CRASH_AFTER_REQUESTS},
    {"latency-ms", required_argument, NULL, OPT_LATENCY_MS},
    {"fail-rate", required_argument, NULL, OPT_FAIL_RATE},
    {NULL, 0, NULL, 0},
};

void options_print_usage(const char *program, FILE *out)
{
    fprintf(out, "usage: %s --port N [OPTIONS]\n", program);
    fputs("\n"
          "  --port N                   port to listen on (env ROLLD_PORT); 0 picks a free one\n"
          "  --host ADDR                numeric address to bind (default 127.0.0.1)\n"
          "  --health-path PATH         health endpoint (default /healthz)\n"
          "  --reconfigure-path PATH    user_config endpoint (default /reconfigure)\n"
          "  --drain-timeout SECONDS    longest wait for in-flight requests on SIGTERM (10)\n"
          "  --verbose                  one log line per request\n"
          "\n"
          "faults; each also read from the variable shown, the flag wins:\n"
          "  --start-delay SECONDS      health 503 until then    ROLLD_FAULT_START_DELAY\n"
          "  --listen-delay SECONDS     do not bind until then   ROLLD_FAULT_LISTEN_DELAY\n"
          "  --never-healthy            health always 503        ROLLD_FAULT_NEVER_HEALTHY=1\n"
          "  --unhealthy-after SECONDS  health 503 from then on  ROLLD_FAULT_UNHEALTHY_AFTER\n"
          "  --crash-after-requests N   exit 3 after N requests  ROLLD_FAULT_CRASH_AFTER_REQUESTS\n"
          "  --latency-ms N             added to each request    ROLLD_FAULT_LATENCY_MS\n"
          "  --fail-rate PERCENT        share answered 500       ROLLD_FAULT_FAIL_RATE\n",
          out);
}

static int fail(char *error, size_t error_size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(char *error, size_t error_size, const char *fmt, ...)
{
    va_list args;
    va_start(args, fmt);
    vsnprintf(error, error_size, fmt, args);
    va_end(args);
    return -EINVAL;
}

static int parse_seconds(const char *text, double *out)
{
    char *end;
    errno = 0;
    double value = strtod(text, &end);
    if (errno || end == text || *end || !isfinite(value) || value < 0)
        return -EINVAL;
    *out = value;
    return 0;
}

static int parse_count(const char *text, unsigned long max, unsigned long *out)
{
    char *end;
    if (*text < '0' || *text > '9')
        return -EINVAL;
    errno = 0;
    unsigned long value = strtoul(text, &end, 10);
    if (errno || *end || value > max)
        return -EINVAL;
    *out = value;
    return 0;
}

static int parse_percent(const char *text, double *out)
{
    double value;
    if (parse_seconds(text, &value) < 0 || value > 100)
        return -EINVAL;
    *out = value;
    return 0;
}

static int parse_flag(const char *text, bool *out)
{
    const char *yes[] = {"1", "true", "yes", "on"};
    const char *no[] = {"", "0", "false", "no", "off"};
    for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
        if (!strcmp(text, yes[i]))
            return *out = true, 0;
    for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
        if (!strcmp(text, no[i]))
            return *out = false, 0;
    return -EINVAL;
}

/* One setting, whichever its source; `source` is "--flag" or "VARIABLE" for messages. */
static int apply(struct options *out, int which, const char *value, const char *source, char *error,
                 size_t error_size)
{
    unsigned long count;
    switch (which) {
    case OPT_PORT:
        if (parse_count(value, 65535, &count) < 0)
            return fail(error, error_size, "%s: '%s' is not a port; give 0 to 65535", source,
                        value);
        out->port = (int)count;
        return 0;
    case OPT_HOST:
        out->host = value;
        return 0;
    case OPT_HEALTH_PATH:
    case OPT_RECONFIGURE_PATH:
        if (value[0] != '/')
            return fail(error, error_size, "%s: '%s' must start with /", source, value);
        if (which == OPT_HEALTH_PATH)
            out->health_path = value;
        else
            out->reconfigure_path = value;
        return 0;
    case OPT_DRAIN_TIMEOUT:
    case OPT_START_DELAY:
    case OPT_LISTEN_DELAY:
    case OPT_UNHEALTHY_AFTER: {
        double seconds;
        if (parse_seconds(value, &seconds) < 0)
            return fail(error, error_size, "%s: '%s' is not a number of seconds >= 0", source,
                        value);
        if (which == OPT_DRAIN_TIMEOUT)
            out->drain_timeout_seconds = seconds;
        else if (which == OPT_START_DELAY)
            out->start_delay_seconds = seconds;
        else if (which == OPT_LISTEN_DELAY)
            out->listen_delay_seconds = seconds;
        else
            out->unhealthy_after_seconds = seconds;
        return 0;
    }
    case OPT_NEVER_HEALTHY:
        if (parse_flag(value, &out->never_healthy) < 0)
            return fail(error, error_size, "%s: '%s' is not a yes/no value; give 1 or 0", source,
                        value);
        return 0;
    case OPT_CRASH_AFTER_REQUESTS:
    case OPT_LATENCY_MS:
        if (parse_count(value, 1000000000UL, &count) < 0)
            return fail(error, error_size, "%s: '%s' is not a whole number >= 0", source, value);
        if (which == OPT_CRASH_AFTER_REQUESTS)
            out->crash_after_requests = count;
        else
            out->latency_ms = count;
        return 0;
    case OPT_FAIL_RATE:
        if (parse_percent(value, &out->fail_rate_percent) < 0)
            return fail(error, error_size, "%s: '%s' is not a percentage from 0 to 100", source,
                        value);
        return 0;
    }
    return fail(error, error_size, "%s: unhandled setting", source);
}

static const struct {
    const char *variable;
    int which;
} environment_settings[] = {
    {"ROLLD_PORT", OPT_PORT},
    {"ROLLD_FAULT_START_DELAY", OPT_START_DELAY},
    {"ROLLD_FAULT_LISTEN_DELAY", OPT_LISTEN_DELAY},
    {"ROLLD_FAULT_NEVER_HEALTHY", OPT_NEVER_HEALTHY},
    {"ROLLD_FAULT_UNHEALTHY_AFTER", OPT_UNHEALTHY_AFTER},
    {"ROLLD_FAULT_CRASH_AFTER_REQUESTS", OPT_CRASH_AFTER_REQUESTS},
    {"ROLLD_FAULT_LATENCY_MS", OPT_LATENCY_MS},
    {"ROLLD_FAULT_FAIL_RATE", OPT_FAIL_RATE},
};

int options_parse(struct options *out, int argc, char **argv, options_lookup_fn lookup, char *error,
                  size_t error_size)
{
    *out = (struct options){
        .host = "127.0.0.1",
        .port = -1,
        .health_path = "/healthz",
        .reconfigure_path = "/reconfigure",
        .drain_timeout_seconds = 10,
    };

    for (size_t i = 0; i < sizeof(environment_settings) / sizeof(environment_settings[0]); i++) {
        const char *value = lookup(environment_settings[i].variable);
        /* An empty variable is how shells and agents often say "unset". */
        if (!value || !*value)
            continue;
        int r = apply(out, environment_settings[i].which, value, environment_settings[i].variable,
                      error, error_size);
        if (r < 0)
            return r;
    }

    optind = 0; /* glibc: start afresh even if getopt ran before */
    opterr = 0;
    for (;;) {
        int index = 0;
        int which = getopt_long(argc, argv, "", long_options, &index);
        if (which == -1)
            break;
        if (which == '?' || which == ':')
            return fail(error, error_size, "%s: unknown option or missing value; see --help",
                        argv[optind - 1]);
        if (which == OPT_HELP) {
            out->help = true;
            return 0;
        }
        if (which == OPT_VERBOSE) {
            out->verbose = true;
            continue;
        }
        if (which == OPT_NEVER_HEALTHY) {
            out->never_healthy = true;
            continue;
        }
        char source[64];
        snprintf(source, sizeof(source), "--%s", long_options[index].name);
        int r = apply(out, which, optarg, source, error, error_size);
        if (r < 0)
            return r;
    }
    if (optind < argc)
        return fail(error, error_size, "%s: unexpected argument; model-server takes only options",
                    argv[optind]);
    if (out->port < 0)
        return fail(error, error_size, "no port given; pass --port N or set ROLLD_PORT");
    return 0;
}

void identity_read(struct identity *out, options_lookup_fn lookup)
{
    *out = (struct identity){
        .service = lookup("ROLLD_SERVICE"),
        .version = lookup("ROLLD_VERSION"),
        .version_name = lookup("ROLLD_VERSION_NAME"),
        .application = lookup("ROLLD_APPLICATION"),
        .deployment = lookup("ROLLD_DEPLOYMENT"),
        .replica = lookup("ROLLD_REPLICA"),
        .user_config = lookup("ROLLD_USER_CONFIG"),
    };
}
