/*
 * options.h - what model-server was asked to do: flags, and the environment the agent sets.
 *
 * options_parse() reads the ROLLD_* environment first and the flags second, so a flag always
 * wins over its variable. It does not print or exit: on a bad value it fills `error` with one
 * line naming the flag or variable and returns -EINVAL. The environment is read through the
 * `lookup` callback so the parsing can be driven without touching the real environment.
 */
#ifndef MODEL_SERVER_OPTIONS_H
#define MODEL_SERVER_OPTIONS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

struct options {
    const char *host;             /* numeric IPv4 or IPv6 address, default 127.0.0.1 */
    int port;                     /* 0 picks a free port; -1 means not given */
    const char *health_path;      /* default /healthz */
    const char *reconfigure_path; /* default /reconfigure */
    double drain_timeout_seconds; /* default 10 */
    bool verbose;
    bool help;

    /* Faults. Times count from process start. Zero or negative means off. */
    double start_delay_seconds;     /* listening, but health says 503 until then */
    double listen_delay_seconds;    /* not even bound until then */
    double unhealthy_after_seconds; /* health says 503 from then on */
    bool never_healthy;
    unsigned long crash_after_requests; /* exit 3 once this many inference requests completed */
    unsigned long latency_ms;           /* added to every inference request */
    double fail_rate_percent;           /* share of inference requests answered 500 */
};

/* The identity the agent hands every replica; any field may be NULL when its variable is unset. */
struct identity {
    const char *service;
    const char *version;
    const char *version_name;
    const char *application;
    const char *deployment;
    const char *replica;
    const char *user_config; /* JSON text */
};

typedef const char *(*options_lookup_fn)(const char *name);

/* Returns 0, or -EINVAL with a one-line message in `error`. Strings in `out` point into argv,
 * the environment or static storage; nothing to free. */
int options_parse(struct options *out, int argc, char **argv, options_lookup_fn lookup, char *error,
                  size_t error_size);

void identity_read(struct identity *out, options_lookup_fn lookup);

void options_print_usage(const char *program, FILE *out);

#endif
