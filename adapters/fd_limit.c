#include "fd_limit.h"

#include <stdbool.h>
#include <sys/resource.h>

static struct rlimit given;
static bool raised;

void fd_limit_raise(void)
{
    if (raised || getrlimit(RLIMIT_NOFILE, &given) < 0 || given.rlim_cur >= given.rlim_max)
        return;
    struct rlimit up = {given.rlim_max, given.rlim_max};
    if (setrlimit(RLIMIT_NOFILE, &up) == 0)
        raised = true;
}

void fd_limit_restore_in_child(void)
{
    if (raised)
        setrlimit(RLIMIT_NOFILE, &given);
}
