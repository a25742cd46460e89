/*
 * lazy_lib.h - a shared library opened when it is first needed, not at start.
 *
 * rolld links libgit2 (a Git source, the status branch, `plan --repo`),
 * libevent (the metrics listener) and libcurl (a user_config
 * reconfiguration) only for what needs them. Linked the usual way, each is
 * mapped and relocated at start with everything it pulls in: libssh2 and
 * OpenSSL, Kerberos and LDAP, about 4 MiB of the RSS of an agent that may
 * use none of them. Instead each user keeps the
 * functions it calls in a table of pointers, filled here by name once, and
 * calls through it (git_api.h, and the tables in metrics.c and
 * http_client.c). The binary does not link these libraries, so a function
 * missing from a table fails the build at link time.
 */
#ifndef ROLLD_LAZY_LIB_H
#define ROLLD_LAZY_LIB_H

#include <stddef.h>

struct lazy_symbol {
    const char *name;
    void **slot;
};

/* Opens the library by its soname and fills every slot (a library opened
 * before is found again, not loaded twice). 0, or -ENOENT with the reason in err
 * (dlerror's words) when the library or one of its functions is missing.
 * Not thread-safe: callers serialise (pthread_once or the event loop). */
int lazy_lib_open(const char *soname, const struct lazy_symbol *symbols, size_t count, char *err,
                  size_t err_size);

/* A library loaded once: the first lazy_lib_load() opens it and runs init
 * (its own set-up, after the slots are filled; NULL for none), later ones
 * give back what the first one found. */
struct lazy_lib {
    const char *soname;
    const struct lazy_symbol *symbols;
    size_t count;
    int (*init)(char *err, size_t err_size); /* 0 or a negative errno */
    int status;                              /* 1 until tried; then 0 or a negative errno */
    char error[256];
};

#define LAZY_LIB(soname, symbols, init) \
    {(soname), (symbols), sizeof(symbols) / sizeof((symbols)[0]), (init), 1, ""}

/* 0, or the first attempt's error (its reason in err). Not thread-safe, as
 * lazy_lib_open(). */
int lazy_lib_load(struct lazy_lib *lib, char *err, size_t err_size);

#endif
