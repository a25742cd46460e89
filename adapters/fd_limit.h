/*
 * fd_limit.h - the agent's descriptor limit, and its children's.
 *
 * The agent holds a pidfd and a kept-alive health-check connection per
 * replica, so it raises its soft RLIMIT_NOFILE to the hard limit (it uses
 * no select()). The programs it starts (replicas, HAProxy, which sizes its
 * connection limit and tables from it) get the limit the agent was given.
 */
#ifndef ROLLD_FD_LIMIT_H
#define ROLLD_FD_LIMIT_H

/* Raises the soft limit to the hard one, once; later calls do nothing. */
void fd_limit_raise(void);

/* In a child between fork and exec: the limit as it was before
 * fd_limit_raise(); nothing when it was not raised. Async-signal-safe. */
void fd_limit_restore_in_child(void);

#endif
