/* unix_socket.h - a Unix socket address from a path, refusing paths that do not fit. */
#ifndef ROLLD_UNIX_SOCKET_H
#define ROLLD_UNIX_SOCKET_H

#include <errno.h>
#include <string.h>
#include <sys/un.h>

static inline int unix_address(struct sockaddr_un *addr, const char *path)
{
    size_t length = strlen(path);
    memset(addr, 0, sizeof(*addr));
    addr->sun_family = AF_UNIX;
    if (length >= sizeof(addr->sun_path))
        return -ENAMETOOLONG;
    memcpy(addr->sun_path, path, length + 1);
    return 0;
}

#endif
