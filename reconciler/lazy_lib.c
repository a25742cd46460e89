/*
 * lazy_lib.c - a shared library opened when it is first needed; see lazy_lib.h.
 */
#include "lazy_lib.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>

int lazy_lib_open(const char *soname, const struct lazy_symbol *symbols, size_t count, char *err,
                  size_t err_size)
{
    if (err_size)
        err[0] = 0;
    /* RTLD_NODELETE: the slots stay valid for the process's life */
    void *handle = dlopen(soname, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
    if (!handle) {
        const char *why = dlerror();
        snprintf(err, err_size, "cannot load %s: %s", soname, why ? why : "unknown error");
        return -ENOENT;
    }
    for (size_t i = 0; i < count; i++) {
        dlerror();
        void *address = dlsym(handle, symbols[i].name);
        if (!address) {
            const char *why = dlerror();
            snprintf(err, err_size, "%s has no %s: %s", soname, symbols[i].name,
                     why ? why : "null symbol");
            return -ENOENT;
        }
        *symbols[i].slot = address;
    }
    return 0;
}

int lazy_lib_load(struct lazy_lib *lib, char *err, size_t err_size)
{
    if (lib->status > 0) {
        lib->status = lazy_lib_open(lib->soname, lib->symbols, lib->count, lib->error,
                                    sizeof(lib->error));
        if (lib->status == 0 && lib->init)
            lib->status = lib->init(lib->error, sizeof(lib->error));
    }
    if (err_size)
        snprintf(err, err_size, "%s", lib->status < 0 ? lib->error : "");
    return lib->status;
}
