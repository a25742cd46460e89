#include "log.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static enum log_format current = LOG_FORMAT_TEXT;

void log_setup(enum log_format format)
{
    current = format;
}

static const char *level_name(int priority)
{
    static const char *const names[] = {"emerg", "alert", "crit",   "err",
                                        "warning", "notice", "info", "debug"};
    return priority >= 0 && priority <= 7 ? names[priority] : "info";
}

void log_msg(int priority, const char *fmt, ...)
{
    char message[2048];
    va_list args;
    va_start(args, fmt);
    vsnprintf(message, sizeof(message), fmt, args);
    va_end(args);
    if (current == LOG_FORMAT_JSON) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        struct tm tm;
        gmtime_r(&ts.tv_sec, &tm);
        char when[40], stamp[48];
        strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%S", &tm);
        snprintf(stamp, sizeof(stamp), "%s.%03ldZ", when, ts.tv_nsec / 1000000);
        json_t *line = json_pack("{s:s, s:i, s:s, s:s}", "time", stamp, "priority", priority,
                                 "level", level_name(priority), "message", message);
        char *text = line ? json_dumps(line, JSON_COMPACT | JSON_ENSURE_ASCII) : NULL;
        if (text) {
            fprintf(stderr, "%s\n", text);
            free(text);
        }
        json_decref(line);
    } else {
        fprintf(stderr, "<%d>rolld: %s\n", priority, message);
    }
    fflush(stderr);
}
