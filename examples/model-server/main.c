/*
 * model-server - a stand-in model replica for rolld's examples and integration tests.
 *
 * main owns the process: options, signals, the listen delay, the drain on SIGTERM/SIGINT and
 * every exit. A second SIGTERM or SIGINT during the drain stops waiting. Signals are blocked in all
 * threads and taken here with sigwait, so no handler runs in a connection thread. Exit codes: 0
 * after a stop by signal, 1 when it cannot listen, 2 on bad options or configuration, 3 when
 * --crash-after-requests fires.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>

#include "options.h"
#include "server.h"

/* Sent to ourselves by a connection thread when --crash-after-requests is due. */
#define CRASH_SIGNAL SIGUSR1

/* How long a connection accepted just before SIGTERM gets to show its request. */
#define DRAIN_GRACE_SECONDS 0.05

static void log_line(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static void log_line(const char *fmt, ...)
{
    char line[1024];
    va_list args;
    va_start(args, fmt);
    vsnprintf(line, sizeof(line), fmt, args);
    va_end(args);
    fprintf(stderr, "model-server[%d]: %s\n", (int)getpid(), line);
}

static const char *lookup_environment(const char *name)
{
    return getenv(name);
}

static void crash_due(void)
{
    kill(getpid(), CRASH_SIGNAL);
}

/* Waits for one of `signals` until `deadline` (clock_now_seconds; INFINITY waits for ever).
 * Returns the signal number, or 0 when the deadline passed. */
static int wait_for_signal(const sigset_t *signals, double deadline)
{
    for (;;) {
        if (isinf(deadline)) {
            int signal_number;
            if (sigwait(signals, &signal_number) == 0)
                return signal_number;
            continue;
        }
        double left = deadline - clock_now_seconds();
        if (left <= 0)
            return 0;
        struct timespec timeout = {(time_t)left, (long)((left - floor(left)) * 1e9)};
        int signal_number = sigtimedwait(signals, NULL, &timeout);
        if (signal_number > 0)
            return signal_number;
        if (errno == EAGAIN)
            return 0;
    }
}

static void describe_faults(const struct options *options, char *out, size_t size)
{
    size_t used = 0;
    out[0] = '\0';
#define ADD(...)                                                                                   \
    do {                                                                                           \
        if (used < size)                                                                           \
            used += (size_t)snprintf(out + used, size - used, __VA_ARGS__);                        \
    } while (0)
    if (options->start_delay_seconds > 0)
        ADD(" start-delay=%gs", options->start_delay_seconds);
    if (options->listen_delay_seconds > 0)
        ADD(" listen-delay=%gs", options->listen_delay_seconds);
    if (options->never_healthy)
        ADD(" never-healthy");
    if (options->unhealthy_after_seconds > 0)
        ADD(" unhealthy-after=%gs", options->unhealthy_after_seconds);
    if (options->crash_after_requests)
        ADD(" crash-after-requests=%lu", options->crash_after_requests);
    if (options->latency_ms)
        ADD(" latency-ms=%lu", options->latency_ms);
    if (options->fail_rate_percent > 0)
        ADD(" fail-rate=%g%%", options->fail_rate_percent);
#undef ADD
}

static const char *signal_name(int signal_number)
{
    return signal_number == SIGINT ? "SIGINT" : signal_number == SIGTERM ? "SIGTERM" : "signal";
}

static const char *or_dash(const char *text)
{
    return text && *text ? text : "-";
}

static json_t *user_config_load(const char *text, char *error, size_t error_size)
{
    if (!text || !*text)
        return json_object();
    json_error_t parse_error;
    json_t *config = json_loads(text, JSON_DECODE_ANY, &parse_error);
    if (!config)
        snprintf(error, error_size,
                 "ROLLD_USER_CONFIG is not JSON (line %d column %d: %s); fix it or unset it",
                 parse_error.line, parse_error.column, parse_error.text);
    return config;
}

int main(int argc, char **argv)
{
    double started_at = clock_now_seconds();
    char error[512];

    struct options options;
    if (options_parse(&options, argc, argv, lookup_environment, error, sizeof(error)) < 0) {
        log_line("%s", error);
        return 2;
    }
    if (options.help) {
        options_print_usage(argv[0], stdout);
        return 0;
    }
    struct identity identity;
    identity_read(&identity, lookup_environment);
    json_t *user_config = user_config_load(identity.user_config, error, sizeof(error));
    if (!user_config) {
        log_line("%s", error);
        return 2;
    }

    /* Before any thread exists, so every thread inherits the mask and only sigwait sees them. */
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGTERM);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, CRASH_SIGNAL);
    pthread_sigmask(SIG_BLOCK, &signals, NULL);
    signal(SIGPIPE, SIG_IGN);

    char faults[256];
    describe_faults(&options, faults, sizeof(faults));

    if (options.listen_delay_seconds > 0) {
        int signal_number = wait_for_signal(&signals, started_at + options.listen_delay_seconds);
        if (signal_number == SIGTERM || signal_number == SIGINT) {
            log_line("%s before listening: stopped", signal_name(signal_number));
            json_decref(user_config);
            return 0;
        }
    }

    struct server *server = server_new(&options, &identity, user_config, started_at, crash_due);
    if (!server) {
        log_line("out of memory while starting");
        return 1;
    }
    if (server_listen(server, error, sizeof(error)) < 0) {
        log_line("%s", error);
        server_free(server);
        return 1;
    }
    log_line(
        "listening on %s%s%s:%u after %.1f ms (service=%s version=%s replica=%s)%s%s",
        strchr(options.host, ':') ? "[" : "", options.host, strchr(options.host, ':') ? "]" : "",
        server_port(server), (clock_now_seconds() - started_at) * 1000, or_dash(identity.service),
        or_dash(identity.version), or_dash(identity.replica), faults[0] ? " faults:" : "", faults);

    int signal_number = wait_for_signal(&signals, INFINITY);
    if (signal_number == CRASH_SIGNAL) {
        log_line("crashing on purpose after %lu inference requests (--crash-after-requests)",
                 options.crash_after_requests);
        _exit(3);
    }

    double stop_at = clock_now_seconds();
    server_stop_accepting(server);
    double deadline = stop_at + options.drain_timeout_seconds;
    const char *gave_up = NULL;
    for (;;) {
        double now = clock_now_seconds();
        /* A connection accepted just before the stop may not have sent its headers yet, so
         * it counts as in flight only a moment later: give it that moment unless no
         * connection is open at all. Idle keep-alive connections do not hold the drain. */
        if (server_connections_open(server) == 0 ||
            (server_requests_in_flight(server) == 0 && now - stop_at >= DRAIN_GRACE_SECONDS))
            break;
        if (now >= deadline) {
            gave_up = "drain timed out (--drain-timeout)";
            break;
        }
        int again = wait_for_signal(&signals, fmin(now + 0.01, deadline));
        if (again == CRASH_SIGNAL) {
            log_line("crashing on purpose while draining (--crash-after-requests)");
            _exit(3);
        }
        if (again) {
            gave_up = "second SIGTERM or SIGINT";
            break;
        }
    }
    if (gave_up) {
        /* Stopping the daemon would wait for those threads; leave without running atexit. */
        log_line("%s: stopped after %lu inference requests; %s after %.1f ms with %lu requests "
                 "still in flight",
                 signal_name(signal_number), server_requests_served(server), gave_up,
                 (clock_now_seconds() - stop_at) * 1000, server_requests_in_flight(server));
        fflush(stderr);
        _exit(0);
    }
    unsigned long served = server_requests_served(server);
    server_free(server);
    log_line("%s: stopped after %lu inference requests, drained in %.1f ms",
             signal_name(signal_number), served, (clock_now_seconds() - stop_at) * 1000);
    return 0;
}
