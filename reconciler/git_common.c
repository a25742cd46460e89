/*
 * git_common.c - the libgit2 helpers source_git.c and status_git.c share.
 */
#include "git_common.h"

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "source_dir.h"

#define SSH_DEFAULT_USER "git"
#define TOKEN_DEFAULT_USER "x-access-token"
#define TOKEN_MAX_BYTES 4096

/* ---- libgit2, once; errors ---- */

static pthread_once_t libgit2_once = PTHREAD_ONCE_INIT;
static int libgit2_status = -1;
static bool libgit2_loaded;
static char libgit2_load_error[256];

static void libgit2_start(void)
{
    if (git_api_load(libgit2_load_error, sizeof(libgit2_load_error)) < 0)
        return;
    libgit2_loaded = true;
    libgit2_status = git_libgit2_init();
}

int git_common_ready(void)
{
    pthread_once(&libgit2_once, libgit2_start);
    return libgit2_status < 0 ? -EIO : 0;
}

const char *git_common_message(void)
{
    if (!libgit2_loaded)
        return *libgit2_load_error ? libgit2_load_error : "libgit2 is not loaded";
    const git_error *error = git_error_last();
    return error && error->message && *error->message ? error->message : "unknown libgit2 error";
}

int git_common_errno(int code)
{
    switch (code) {
    case GIT_EAUTH:
    case GIT_ECERTIFICATE:
        return -EACCES;
    case GIT_ENOTFOUND:
        return -ENOENT;
    case GIT_EEXISTS:
        return -EEXIST;
    case GIT_EINVALIDSPEC:
    case GIT_EINVALID:
    case GIT_EAMBIGUOUS:
        return -EINVAL;
    case GIT_ELOCKED:
        return -EBUSY;
    case GIT_EUSER:
        return -ECANCELED;
    default:
        break;
    }
    const git_error *error = git_error_last();
    if (error) {
        switch (error->klass) {
        case GIT_ERROR_NOMEMORY:
            return -ENOMEM;
        case GIT_ERROR_NET:
        case GIT_ERROR_SSH:
        case GIT_ERROR_HTTP:
        case GIT_ERROR_SSL:
            return -EHOSTUNREACH;
        case GIT_ERROR_OS:
            return -EIO;
        default:
            break;
        }
    }
    return -EIO;
}

/* ---- text and URLs ---- */

char *git_common_text_join(const char *a, const char *separator, const char *b)
{
    char *out = NULL;
    return asprintf(&out, "%s%s%s", a, separator, b) < 0 ? NULL : out;
}

int git_common_hex_value(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

char *git_common_percent_decode(const char *text)
{
    char *out = malloc(strlen(text) + 1), *o = out;
    if (!out)
        return NULL;
    for (const char *p = text; *p; p++) {
        if (p[0] == '%' && git_common_hex_value(p[1]) >= 0 && git_common_hex_value(p[2]) >= 0) {
            *o++ = (char)(git_common_hex_value(p[1]) * 16 + git_common_hex_value(p[2]));
            p += 2;
        } else {
            *o++ = *p;
        }
    }
    *o = 0;
    return out;
}

char *git_common_url_for_display(const char *url, const char *password_mask)
{
    const char *scheme = strstr(url, "://");
    if (!scheme)
        return strdup(url);
    const char *user = scheme + 3;
    const char *end = user + strcspn(user, "/");
    const char *at = memchr(user, '@', (size_t)(end - user));
    const char *colon = at ? memchr(user, ':', (size_t)(at - user)) : NULL;
    if (!colon)
        return strdup(url);
    char *out = NULL;
    return asprintf(&out, "%.*s%s%s", (int)(colon - url), url, password_mask, at) < 0 ? NULL
                                                                                       : out;
}

/* ---- one call to a remote ---- */

static int copy_text(const char **out, const char *text)
{
    *out = NULL;
    if (!text || !*text)
        return 0;
    return (*out = strdup(text)) ? 0 : -ENOMEM;
}

int git_common_credentials_copy(struct git_credentials *out,
                                const struct git_credentials *in)
{
    memset(out, 0, sizeof(*out));
    if (copy_text(&out->ssh_key, in->ssh_key) < 0 ||
        copy_text(&out->ssh_public_key, in->ssh_public_key) < 0 ||
        copy_text(&out->token_file, in->token_file) < 0 ||
        copy_text(&out->username, in->username) < 0) {
        git_common_credentials_free(out);
        return -ENOMEM;
    }
    return 0;
}

void git_common_credentials_free(struct git_credentials *credentials)
{
    free((char *)credentials->ssh_key);
    free((char *)credentials->ssh_public_key);
    free((char *)credentials->token_file);
    free((char *)credentials->username);
    memset(credentials, 0, sizeof(*credentials));
}

void git_common_call_start(struct git_common_call *call,
                           const struct git_credentials *credentials, int timeout_seconds)
{
    memset(call, 0, sizeof(*call));
    call->credentials = *credentials;
    call->timeout_seconds = timeout_seconds;
    clock_gettime(CLOCK_MONOTONIC, &call->deadline);
    call->deadline.tv_sec += timeout_seconds;
}

static bool call_expired(struct git_common_call *call)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    if (now.tv_sec < call->deadline.tv_sec ||
        (now.tv_sec == call->deadline.tv_sec && now.tv_nsec < call->deadline.tv_nsec))
        return false;
    if (!call->timed_out)
        snprintf(call->message, sizeof(call->message), "no result within %d s; cancelled",
                 call->timeout_seconds);
    call->timed_out = true;
    git_error_set_str(GIT_ERROR_NET, call->message);
    return true;
}

static int call_refuse(struct git_common_call *call, int code)
{
    git_error_set_str(GIT_ERROR_NET, call->message);
    return code;
}

static int on_transfer_progress(const git_indexer_progress *stats, void *payload)
{
    (void)stats;
    return call_expired(payload) ? GIT_EUSER : 0;
}

static int on_sideband_progress(const char *text, int length, void *payload)
{
    (void)text;
    (void)length;
    return call_expired(payload) ? GIT_EUSER : 0;
}

static int on_pack_progress(int stage, uint32_t current, uint32_t total, void *payload)
{
    (void)stage;
    (void)current;
    (void)total;
    return call_expired(payload) ? GIT_EUSER : 0;
}

static int on_push_transfer_progress(unsigned int current, unsigned int total, size_t bytes,
                                     void *payload)
{
    (void)current;
    (void)total;
    (void)bytes;
    return call_expired(payload) ? GIT_EUSER : 0;
}

/* The server's verdict per ref: libgit2 may return 0 from the push while a
 * ref was refused, so this is where a refusal is seen. */
static int on_push_update_reference(const char *refname, const char *status, void *payload)
{
    struct git_common_call *call = payload;
    if (status) {
        call->refused = true;
        snprintf(call->message, sizeof(call->message), "the remote refused to update %s: %s",
                 refname, status);
    }
    return 0;
}

/* Reads the token (trimmed); caller wipes and frees (token_free). */
static int token_read(const char *file, char **out)
{
    size_t length = 0;
    int r = source_read_file(file, TOKEN_MAX_BYTES, out, &length);
    if (r < 0)
        return r;
    char *token = *out;
    while (length > 0 && strchr(" \t\r\n", token[length - 1]))
        token[--length] = 0;
    size_t skip = strspn(token, " \t\r\n");
    memmove(token, token + skip, length - skip + 1);
    return token[0] ? 0 : -ENODATA;
}

static void token_free(char *token)
{
    if (!token)
        return;
    explicit_bzero(token, strlen(token));
    free(token);
}

/* Credentials from the agent config, each offered once: libgit2 asks again
 * after a refusal, and offering the same secret again would loop. */
static int on_credentials(git_credential **out, const char *url, const char *username_from_url,
                          unsigned int allowed, void *payload)
{
    (void)url;
    struct git_common_call *call = payload;
    const struct git_credentials *c = &call->credentials;
    if (call_expired(call))
        return GIT_EUSER;
    const char *ssh_user = username_from_url && *username_from_url ? username_from_url
                           : c->username                           ? c->username
                                                                   : SSH_DEFAULT_USER;
    if ((allowed & GIT_CREDENTIAL_SSH_KEY) && c->ssh_key) {
        if (call->credential_tries++ > 0) {
            snprintf(call->message, sizeof(call->message),
                     "the remote refused the SSH key %s for user '%s'", c->ssh_key, ssh_user);
            return call_refuse(call, GIT_EAUTH);
        }
        char *public_key = NULL;
        if (!c->ssh_public_key) {
            public_key = git_common_text_join(c->ssh_key, "", ".pub");
            if (public_key && access(public_key, R_OK) < 0) {
                free(public_key);
                public_key = NULL; /* libssh2 derives it from the private key */
            }
        }
        int r = git_credential_ssh_key_new(
            out, ssh_user, c->ssh_public_key ? c->ssh_public_key : public_key, c->ssh_key, NULL);
        free(public_key);
        return r;
    }
    if (allowed & GIT_CREDENTIAL_USERNAME)
        return git_credential_username_new(out, ssh_user);
    if ((allowed & GIT_CREDENTIAL_USERPASS_PLAINTEXT) && c->token_file) {
        if (call->credential_tries++ > 0) {
            snprintf(call->message, sizeof(call->message), "the remote refused the token of %s",
                     c->token_file);
            return call_refuse(call, GIT_EAUTH);
        }
        char *token = NULL;
        int r = token_read(c->token_file, &token);
        if (r < 0) {
            snprintf(call->message, sizeof(call->message), "cannot read the token file %s: %s",
                     c->token_file, r == -ENODATA ? "it is empty" : strerror(-r));
            token_free(token);
            return call_refuse(call, GIT_EAUTH);
        }
        r = git_credential_userpass_plaintext_new(
            out, c->username ? c->username : TOKEN_DEFAULT_USER, token);
        token_free(token);
        return r;
    }
    snprintf(call->message, sizeof(call->message),
             "the remote asks for credentials and none fit: configure %s",
             (allowed & GIT_CREDENTIAL_SSH_KEY) ? "an SSH key" : "a token file");
    return call_refuse(call, GIT_EAUTH);
}

void git_common_callbacks_fill(git_remote_callbacks *callbacks, struct git_common_call *call)
{
    git_remote_init_callbacks(callbacks, GIT_REMOTE_CALLBACKS_VERSION);
    callbacks->credentials = on_credentials;
    callbacks->transfer_progress = on_transfer_progress;
    callbacks->sideband_progress = on_sideband_progress;
    callbacks->pack_progress = on_pack_progress;
    callbacks->push_transfer_progress = on_push_transfer_progress;
    callbacks->push_update_reference = on_push_update_reference;
    /* certificate_check left unset: libgit2 checks certificates and host keys */
    callbacks->payload = call;
}

int git_common_call_errno(const struct git_common_call *call, int code)
{
    return call->timed_out ? -ETIMEDOUT : git_common_errno(code);
}

const char *git_common_call_why(const struct git_common_call *call)
{
    return call->message[0] ? call->message : git_common_message();
}
