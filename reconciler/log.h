/*
 * log.h - the agent's log, on stderr (journald reads it under systemd).
 *
 * text (the default): one line per message with the journald priority
 * prefix of sd-daemon(3), "<6>rolld: svc: running", so that journalctl
 * shows warnings and errors as such; json: one JSON object per line,
 * {"time": "...", "priority": 6, "level": "info", "message": "..."}, for
 * log shippers.
 */
#ifndef ROLLD_LOG_H
#define ROLLD_LOG_H

#include <syslog.h>

#include "config.h"

void log_setup(enum log_format format);
/* priority: LOG_ERR, LOG_WARNING, LOG_NOTICE, LOG_INFO or LOG_DEBUG (syslog.h) */
void log_msg(int priority, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
