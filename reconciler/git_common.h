/*
 * git_common.h - the libgit2 helpers source_git.c and status_git.c share.
 *
 * libgit2 initialised once per process, its errors as negative errnos and
 * messages, small text and URL helpers, and the callbacks of one call to a
 * remote: a deadline checked by every progress callback, credentials from
 * the agent config (an SSH key, a token file, a username) each offered
 * once, and the remote's verdict on a pushed ref.
 */
#ifndef ROLLD_GIT_COMMON_H
#define ROLLD_GIT_COMMON_H

#include "git_api.h" /* libgit2, opened by git_common_ready() */
#include <stdbool.h>
#include <time.h>

#include "source_git.h" /* struct git_credentials: what the credentials callback may offer */

/* Opens and initialises libgit2 on the first call; 0, or -EIO when that
 * failed (git_common_message() says why). Every use of libgit2 comes after
 * it. */
int git_common_ready(void);

/* libgit2's message for its last error, never NULL or empty. */
const char *git_common_message(void);

/* A libgit2 error code (with git_error_last) as a negative errno. */
int git_common_errno(int code);

/* "<a><separator><b>", or NULL when out of memory. Caller frees. */
char *git_common_text_join(const char *a, const char *separator, const char *b);

/* The value of a hex digit, or -1. */
int git_common_hex_value(int c);

/* text with its %XX escapes decoded, as libgit2 decodes a file:// URL's
 * path. Caller frees. */
char *git_common_percent_decode(const char *text);

/* The url with the password of a "scheme://user:password@host/" URL
 * replaced by password_mask: "" drops it and its ':', ":***" masks it.
 * Caller frees. */
char *git_common_url_for_display(const char *url, const char *password_mask);

/* A copy of in that owns its strings (an empty string counts as unset).
 * 0, or -ENOMEM with *out empty. Free with git_common_credentials_free. */
int git_common_credentials_copy(struct git_credentials *out,
                                const struct git_credentials *in);
void git_common_credentials_free(struct git_credentials *credentials);

/* One fetch or push: its deadline, its credentials and how it went. */
struct git_common_call {
    struct git_credentials credentials;
    int timeout_seconds;
    struct timespec deadline;
    unsigned credential_tries;
    bool timed_out;
    bool refused;      /* push: the remote refused the update */
    char message[384]; /* why a callback stopped the operation, or the refusal */
};

/* Starts a call: its deadline is timeout_seconds from now. */
void git_common_call_start(struct git_common_call *call,
                           const struct git_credentials *credentials,
                           int timeout_seconds);

/* The remote callbacks of call (its payload): deadline, credentials and
 * push verdicts. certificate_check is left unset: libgit2 checks
 * certificates and host keys. */
void git_common_callbacks_fill(git_remote_callbacks *callbacks, struct git_common_call *call);

/* The errno of a failed call: -ETIMEDOUT when its deadline passed, else
 * code's (git_common_errno). */
int git_common_call_errno(const struct git_common_call *call, int code);

/* Why a call failed: a callback's message, else libgit2's. */
const char *git_common_call_why(const struct git_common_call *call);

#endif
