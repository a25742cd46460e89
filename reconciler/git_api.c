/*
 * git_api.c - libgit2's functions, found when first needed; see git_api.h.
 */
#define ROLLD_GIT_API_TABLE /* the names below are the functions' own */
#include "git_api.h"

#include "lazy_lib.h"

struct git_api git_api;

int git_api_load(char *err, size_t err_size)
{
#define ROLLD_GIT_SYMBOL(f) {#f, (void **)&git_api.f},
    static const struct lazy_symbol symbols[] = {ROLLD_GIT_FUNCTIONS(ROLLD_GIT_SYMBOL)};
#undef ROLLD_GIT_SYMBOL
    static struct lazy_lib libgit2 = LAZY_LIB(ROLLD_LIBGIT2_SONAME, symbols, NULL);
    return lazy_lib_load(&libgit2, err, err_size);
}
