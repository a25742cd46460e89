#include "signature.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SIGNATURE_TIMEOUT_MS 10000
#define SIGNATURE_OUTPUT_MAX (64 * 1024)
#define SIGNATURE_KEYRING_MAX (16 * 1024 * 1024)
#define SIGNATURE_DEFAULT_PATH "/usr/local/bin:/usr/bin:/bin"

static const char SSH_BEGIN[] = "-----BEGIN SSH SIGNATURE-----";
static const char PGP_BEGIN[] = "-----BEGIN PGP SIGNATURE-----";

static void text_set(char *buffer, size_t size, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

static void text_set(char *buffer, size_t size, const char *format, ...)
{
    if (!buffer || !size)
        return;
    va_list args;
    va_start(args, format);
    vsnprintf(buffer, size, format, args);
    va_end(args);
}

static bool text_starts_with(const char *text, size_t length, const char *prefix)
{
    while (length && (*text == ' ' || *text == '\t' || *text == '\r' || *text == '\n')) {
        text++;
        length--;
    }
    size_t prefix_length = strlen(prefix);
    return length >= prefix_length && !memcmp(text, prefix, prefix_length);
}

/* The first non-empty line of text, trimmed and without control characters,
 * so that a program's message fits in a one-line why. */
static void first_line(const char *text, char *line, size_t size)
{
    size_t used = 0;
    while (*text == '\n' || *text == '\r' || *text == ' ' || *text == '\t')
        text++;
    for (; *text && *text != '\n' && used + 1 < size; text++)
        line[used++] = (*text == '\t' || (unsigned char)*text < 0x20) ? ' ' : *text;
    while (used && (line[used - 1] == ' ' || line[used - 1] == '\r'))
        used--;
    line[used] = '\0';
}

/* ---- the scratch directory ---- */

struct scratch {
    char path[PATH_MAX];
};

static int scratch_create(struct scratch *scratch, char *why, size_t why_size)
{
    const char *tmp = getenv("TMPDIR");
    if (!tmp || !*tmp)
        tmp = "/tmp";
    int n = snprintf(scratch->path, sizeof scratch->path, "%s/rolld-signature-XXXXXX", tmp);
    if (n < 0 || (size_t)n >= sizeof scratch->path) {
        text_set(why, why_size, "temporary directory path too long: %s", tmp);
        return -ENAMETOOLONG;
    }
    if (!mkdtemp(scratch->path)) { /* mode 0700 */
        int r = -errno;
        text_set(why, why_size, "cannot create a temporary directory in %s: %s", tmp, strerror(-r));
        scratch->path[0] = '\0';
        return r;
    }
    return 0;
}

/* Removes the directory and whatever the programs may have left in it (one
 * level deep; neither ssh-keygen nor gpgv makes subdirectories). */
static void scratch_remove(struct scratch *scratch)
{
    if (!scratch->path[0])
        return;
    DIR *dir = opendir(scratch->path);
    if (dir) {
        struct dirent *entry;
        while ((entry = readdir(dir))) {
            if (!strcmp(entry->d_name, ".") || !strcmp(entry->d_name, ".."))
                continue;
            if (unlinkat(dirfd(dir), entry->d_name, 0) < 0 && errno == EISDIR)
                unlinkat(dirfd(dir), entry->d_name, AT_REMOVEDIR);
        }
        closedir(dir);
    }
    rmdir(scratch->path);
    scratch->path[0] = '\0';
}

/* Writes a file named name into the scratch directory; fills path. */
static int scratch_write(const struct scratch *scratch, const char *name, const void *data,
                         size_t length, char *path, size_t path_size, char *why, size_t why_size)
{
    int n = snprintf(path, path_size, "%s/%s", scratch->path, name);
    if (n < 0 || (size_t)n >= path_size) {
        text_set(why, why_size, "temporary file path too long: %s/%s", scratch->path, name);
        return -ENAMETOOLONG;
    }
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0)
        goto fail;
    const char *cursor = data;
    while (length) {
        ssize_t written = write(fd, cursor, length);
        if (written < 0 && errno == EINTR)
            continue;
        if (written < 0) {
            int saved = errno;
            close(fd);
            errno = saved;
            goto fail;
        }
        cursor += written;
        length -= (size_t)written;
    }
    if (close(fd) < 0)
        goto fail;
    return 0;
fail:;
    int r = -errno;
    text_set(why, why_size, "cannot write %s: %s", path, strerror(-r));
    return r;
}

/* ---- running a program ---- */

struct program_run {
    int status; /* wait status */
    char *out;  /* stdout, NUL-terminated, at most SIGNATURE_OUTPUT_MAX bytes */
    char *err;  /* stderr, likewise */
    size_t out_length, err_length;
};

static void program_run_clear(struct program_run *run)
{
    free(run->out);
    free(run->err);
    memset(run, 0, sizeof *run);
}

static bool program_succeeded(const struct program_run *run)
{
    return WIFEXITED(run->status) && WEXITSTATUS(run->status) == 0;
}

/* Looks name up in $PATH like execvp would, but only for regular executable
 * files, and skips empty (current directory) entries. */
static int program_find(const char *name, char *path, size_t path_size)
{
    const char *search = getenv("PATH");
    if (!search || !*search)
        search = SIGNATURE_DEFAULT_PATH;
    while (*search) {
        const char *end = strchr(search, ':');
        size_t length = end ? (size_t)(end - search) : strlen(search);
        int n = snprintf(path, path_size, "%.*s/%s", (int)length, search, name);
        struct stat st;
        if (length && n > 0 && (size_t)n < path_size && stat(path, &st) == 0 &&
            S_ISREG(st.st_mode) && access(path, X_OK) == 0)
            return 0;
        search += length + (end ? 1 : 0);
    }
    return -ENOENT;
}

static int64_t monotonic_ms(void)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

/* A pipe whose ends are both above stderr, so that the child's dup2 onto
 * 0, 1, 2 can never collide with them even if the agent runs with those
 * closed; close-on-exec, so no other child inherits them. */
static int pipe_make(int ends[2])
{
    if (pipe2(ends, O_CLOEXEC) < 0)
        return -errno;
    for (int i = 0; i < 2; i++) {
        if (ends[i] > 2)
            continue;
        int moved = fcntl(ends[i], F_DUPFD_CLOEXEC, 3);
        if (moved < 0) {
            int r = -errno;
            close(ends[0]);
            close(ends[1]);
            return r;
        }
        close(ends[i]);
        ends[i] = moved;
    }
    return 0;
}

static void pipes_close(int pipes[2][2])
{
    for (int i = 0; i < 2; i++)
        for (int j = 0; j < 2; j++)
            if (pipes[i][j] >= 0) {
                close(pipes[i][j]);
                pipes[i][j] = -1;
            }
}

static int program_spawn(const char *path, char *const argv[], const char *stdin_path,
                         char *const envp[], int pipes[2][2], pid_t *pid)
{
    posix_spawn_file_actions_t actions;
    posix_spawnattr_t attr;
    sigset_t mask, defaults;
    sigemptyset(&mask);
    sigfillset(&defaults);
    posix_spawn_file_actions_init(&actions);
    posix_spawnattr_init(&attr);
    posix_spawn_file_actions_addopen(&actions, 0, stdin_path ? stdin_path : "/dev/null", O_RDONLY,
                                     0);
    posix_spawn_file_actions_adddup2(&actions, pipes[0][1], 1);
    posix_spawn_file_actions_adddup2(&actions, pipes[1][1], 2);
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
    posix_spawn_file_actions_addclosefrom_np(&actions, 3);
#endif
    /* The agent blocks signals for its event loop and may ignore SIGPIPE;
     * the child starts clean, in its own process group so a kill on timeout
     * reaches whatever it started. */
    posix_spawnattr_setsigmask(&attr, &mask);
    posix_spawnattr_setsigdefault(&attr, &defaults);
    posix_spawnattr_setpgroup(&attr, 0);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF |
                                        POSIX_SPAWN_SETPGROUP);
    int r = posix_spawn(pid, path, &actions, &attr, argv, envp);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    return -r;
}

static void output_read(int *fd, char *buffer, size_t *length)
{
    char discard[4096];
    size_t room = SIGNATURE_OUTPUT_MAX - *length;
    char *into = room ? buffer + *length : discard;
    ssize_t got = read(*fd, into, room ? room : sizeof discard);
    if (got < 0 && (errno == EINTR || errno == EAGAIN))
        return;
    if (got <= 0) {
        close(*fd);
        *fd = -1;
        return;
    }
    if (room)
        *length += (size_t)got;
}

/* Reads both pipes and waits for the child until deadline; 1 when it
 * exited (status filled), 0 when the time ran out, a negative errno when it
 * cannot be waited for (-ECHILD: SIGCHLD is ignored, the kernel reaped it). */
static int program_collect(pid_t pid, int pipes[2][2], struct program_run *run, int64_t deadline)
{
    int pidfd = -1;
#ifdef SYS_pidfd_open
    pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
#endif
    bool exited = false;
    int r = 0;
    while (!exited || pipes[0][0] >= 0 || pipes[1][0] >= 0) {
        int64_t left = deadline - monotonic_ms();
        if (left <= 0)
            break;
        struct pollfd fds[3];
        int count = 0;
        for (int i = 0; i < 2; i++)
            if (pipes[i][0] >= 0)
                fds[count++] = (struct pollfd){.fd = pipes[i][0], .events = POLLIN};
        if (!exited && pidfd >= 0)
            fds[count++] = (struct pollfd){.fd = pidfd, .events = POLLIN};
        /* Without a pidfd, an exit after both pipes closed is noticed by
         * polling waitpid every few milliseconds. */
        int timeout = (int)left;
        if (!exited && pidfd < 0 && pipes[0][0] < 0 && pipes[1][0] < 0 && timeout > 5)
            timeout = 5;
        if (poll(fds, (nfds_t)count, timeout) < 0 && errno != EINTR) {
            r = -errno;
            break;
        }
        for (int i = 0; i < count; i++) {
            if (!fds[i].revents || fds[i].fd == pidfd)
                continue;
            if (fds[i].fd == pipes[0][0])
                output_read(&pipes[0][0], run->out, &run->out_length);
            else
                output_read(&pipes[1][0], run->err, &run->err_length);
        }
        pid_t waited = exited ? 0 : waitpid(pid, &run->status, WNOHANG);
        if (waited == pid) {
            exited = true;
        } else if (waited < 0 && errno != EINTR) {
            r = -errno;
            break;
        }
    }
    if (pidfd >= 0)
        close(pidfd);
    return r < 0 ? r : exited;
}

/* Runs path with argv (no shell), stdin from stdin_path (NULL: /dev/null),
 * for at most timeout_ms; fills run (caller clears). 0 when the program ran
 * to an exit of any status; a negative errno with why when it could not be
 * started or was killed. */
static int program_run(const char *path, char *const argv[], const char *stdin_path,
                       const struct scratch *scratch, int timeout_ms, struct program_run *run,
                       char *why, size_t why_size)
{
    memset(run, 0, sizeof *run);
    run->out = malloc(SIGNATURE_OUTPUT_MAX + 1);
    run->err = malloc(SIGNATURE_OUTPUT_MAX + 1);
    char env_path[PATH_MAX + 8], env_home[PATH_MAX + 8], env_gnupg[PATH_MAX + 16];
    const char *search = getenv("PATH");
    snprintf(env_path, sizeof env_path, "PATH=%s",
             search && *search ? search : SIGNATURE_DEFAULT_PATH);
    snprintf(env_home, sizeof env_home, "HOME=%s", scratch->path);
    snprintf(env_gnupg, sizeof env_gnupg, "GNUPGHOME=%s", scratch->path);
    char *envp[] = {env_path, env_home, env_gnupg, "LC_ALL=C", NULL};

    int pipes[2][2] = {{-1, -1}, {-1, -1}};
    int r = -ENOMEM;
    if (!run->out || !run->err)
        goto fail;
    if ((r = pipe_make(pipes[0])) < 0 || (r = pipe_make(pipes[1])) < 0)
        goto fail;
    pid_t pid;
    int64_t deadline = monotonic_ms() + timeout_ms;
    if ((r = program_spawn(path, argv, stdin_path, envp, pipes, &pid)) < 0)
        goto fail;
    close(pipes[0][1]);
    close(pipes[1][1]);
    pipes[0][1] = pipes[1][1] = -1;

    r = program_collect(pid, pipes, run, deadline);
    pipes_close(pipes);
    run->out[run->out_length] = '\0';
    run->err[run->err_length] = '\0';
    if (r == 1)
        return 0;
    /* Not after -ECHILD: the pid is no longer ours and may be reused. */
    if (r != -ECHILD) {
        kill(-pid, SIGKILL);
        kill(pid, SIGKILL);
        while (waitpid(pid, &run->status, 0) < 0 && errno == EINTR)
            ;
    }
    if (r < 0) {
        text_set(why, why_size, "cannot wait for %s: %s", argv[0], strerror(-r));
        return r;
    }
    text_set(why, why_size, "%s did not finish within %d ms and was killed", argv[0], timeout_ms);
    return -ETIMEDOUT;
fail:
    pipes_close(pipes);
    text_set(why, why_size, "cannot run %s: %s", path, strerror(-r));
    return r;
}

/* ---- SSH ---- */

static int file_check_readable(const char *what, const char *path, char *why, size_t why_size)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        int r = -errno;
        text_set(why, why_size, "cannot read %s %s: %s", what, path, strerror(-r));
        return r;
    }
    close(fd);
    return 0;
}

/* The "SHA256:..." fingerprint in ssh-keygen's "... with ED25519 key
 * SHA256:xyz" line, or "" when there is none. */
static void ssh_fingerprint_parse(const char *text, char *fingerprint, size_t size)
{
    const char *found = strstr(text, " key SHA256:");
    fingerprint[0] = '\0';
    if (!found)
        return;
    found += strlen(" key ");
    size_t length = strcspn(found, " \r\n");
    if (length >= size)
        length = size - 1;
    memcpy(fingerprint, found, length);
    fingerprint[length] = '\0';
}

/* Why a signature whose key is not in the allowed signers file is refused,
 * naming the key so that a person can decide whether to add it. */
static int ssh_refuse_unknown(const char *keygen, const struct signature_trust *trust,
                              char *signature_path, char *payload_path,
                              const struct scratch *scratch, int timeout_ms, const char *hint,
                              char *why, size_t why_size)
{
    char *argv[] = {"ssh-keygen", "-Y", "check-novalidate", "-n",
                    "git",        "-s", signature_path,     NULL};
    struct program_run run;
    int r = program_run(keygen, argv, payload_path, scratch, timeout_ms, &run, why, why_size);
    if (r < 0) {
        program_run_clear(&run);
        return r;
    }
    char fingerprint[128], message[256];
    ssh_fingerprint_parse(run.out, fingerprint, sizeof fingerprint);
    if (!fingerprint[0])
        ssh_fingerprint_parse(run.err, fingerprint, sizeof fingerprint);
    first_line(run.err[0] ? run.err : run.out, message, sizeof message);
    /* hint: what find-principals said besides "no match", e.g. a line of
     * the allowed signers file it could not parse. */
    if (program_succeeded(&run) && fingerprint[0])
        text_set(why, why_size, "signed by a key not in %s: %s%s%s%s", trust->allowed_signers,
                 fingerprint, hint[0] ? " (ssh-keygen: " : "", hint, hint[0] ? ")" : "");
    else
        text_set(why, why_size, "signed by a key not in %s, and the signature does not verify: %s",
                 trust->allowed_signers, message[0] ? message : "no message from ssh-keygen");
    program_run_clear(&run);
    return -EPERM;
}

static int ssh_verify(const struct signature_trust *trust, const char *signature,
                      size_t signature_length, const char *payload, size_t payload_length,
                      int timeout_ms, char *signer, size_t signer_size, char *why, size_t why_size)
{
    if (!trust || !trust->allowed_signers || !*trust->allowed_signers) {
        text_set(why, why_size, "SSH-signed but no allowed_signers file is configured");
        return -EPERM;
    }
    int r = file_check_readable("allowed signers file", trust->allowed_signers, why, why_size);
    if (r < 0)
        return r;
    char keygen[PATH_MAX];
    if (program_find("ssh-keygen", keygen, sizeof keygen) < 0) {
        text_set(why, why_size, "ssh-keygen not found in PATH; install openssh-client");
        return -ENOENT;
    }
    struct scratch scratch = {0};
    char signature_path[PATH_MAX + 16], payload_path[PATH_MAX + 16];
    if ((r = scratch_create(&scratch, why, why_size)) < 0)
        return r;
    struct program_run run = {0};
    if ((r = scratch_write(&scratch, "signature", signature, signature_length, signature_path,
                           sizeof signature_path, why, why_size)) < 0 ||
        (r = scratch_write(&scratch, "payload", payload, payload_length, payload_path,
                           sizeof payload_path, why, why_size)) < 0)
        goto done;

    char *find_argv[] = {
        "ssh-keygen",   "-Y", "find-principals", "-f", (char *)trust->allowed_signers, "-s",
        signature_path, NULL};
    if ((r = program_run(keygen, find_argv, NULL, &scratch, timeout_ms, &run, why, why_size)) < 0)
        goto done;
    /* One principal per line; any of them will do for -I. */
    char principal[256];
    first_line(run.out, principal, sizeof principal);
    if (!program_succeeded(&run) || !principal[0]) {
        char hint[256];
        first_line(run.err, hint, sizeof hint);
        if (!strcmp(hint, "No principal matched."))
            hint[0] = '\0';
        r = ssh_refuse_unknown(keygen, trust, signature_path, payload_path, &scratch, timeout_ms,
                               hint, why, why_size);
        goto done;
    }
    program_run_clear(&run);

    char *verify_argv[] = {
        "ssh-keygen",   "-Y",      "verify", "-f",  (char *)trust->allowed_signers,
        "-I",           principal, "-n",     "git", "-s",
        signature_path, NULL};
    if ((r = program_run(keygen, verify_argv, payload_path, &scratch, timeout_ms, &run, why,
                         why_size)) < 0)
        goto done;
    if (program_succeeded(&run)) {
        text_set(signer, signer_size, "%s", principal);
        r = 0;
    } else {
        char message[256];
        first_line(run.err[0] ? run.err : run.out, message, sizeof message);
        text_set(why, why_size, "bad signature from %s: %s", principal,
                 message[0] ? message : "ssh-keygen -Y verify failed");
        r = -EPERM;
    }
done:
    program_run_clear(&run);
    scratch_remove(&scratch);
    return r;
}

/* ---- OpenPGP ---- */

static int base64_value(unsigned char c)
{
    if (c >= 'A' && c <= 'Z')
        return c - 'A';
    if (c >= 'a' && c <= 'z')
        return c - 'a' + 26;
    if (c >= '0' && c <= '9')
        return c - '0' + 52;
    if (c == '+')
        return 62;
    if (c == '/')
        return 63;
    return -1;
}

/* Decodes base64 text (padding and whitespace ignored) onto out. */
static int base64_append(const char *text, size_t length, unsigned char *out, size_t *out_length)
{
    uint32_t bits = 0;
    int count = 0;
    for (size_t i = 0; i < length; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c == '=' || c == ' ' || c == '\t' || c == '\r')
            continue;
        int value = base64_value(c);
        if (value < 0)
            return -EINVAL;
        bits = (bits << 6) | (uint32_t)value;
        count += 6;
        if (count >= 8) {
            count -= 8;
            out[(*out_length)++] = (unsigned char)(bits >> count);
        }
    }
    return 0;
}

static uint32_t crc24(const unsigned char *data, size_t length)
{
    uint32_t crc = 0xB704CE;
    for (size_t i = 0; i < length; i++) {
        crc ^= (uint32_t)data[i] << 16;
        for (int bit = 0; bit < 8; bit++) {
            crc <<= 1;
            if (crc & 0x1000000)
                crc ^= 0x1864CFB;
        }
    }
    return crc & 0xFFFFFF;
}

/* Decodes every ASCII-armored block of text (RFC 4880 section 6) into out,
 * which holds at least length bytes: gpgv reads only binary keyrings. */
static int armor_decode(const char *text, size_t length, unsigned char *out, size_t *out_length)
{
    enum { OUTSIDE, HEADERS, BODY } state = OUTSIDE;
    size_t block_start = 0;
    *out_length = 0;
    const char *end = text + length;
    for (const char *line = text; line < end;) {
        const char *next = memchr(line, '\n', (size_t)(end - line));
        size_t line_length = next ? (size_t)(next - line) : (size_t)(end - line);
        while (line_length && (line[line_length - 1] == '\r' || line[line_length - 1] == ' '))
            line_length--;
        if (state == OUTSIDE) {
            if (line_length >= 15 && !memcmp(line, "-----BEGIN PGP ", 15)) {
                state = HEADERS;
                block_start = *out_length;
            }
        } else if (line_length >= 9 && !memcmp(line, "-----END ", 9)) {
            state = OUTSIDE;
        } else if (state == HEADERS && (!line_length || memchr(line, ':', line_length))) {
            if (!line_length)
                state = BODY;
        } else if (line_length == 5 && line[0] == '=') {
            unsigned char sum[3];
            size_t sum_length = 0;
            if (base64_append(line + 1, 4, sum, &sum_length) < 0 || sum_length != 3)
                return -EINVAL;
            uint32_t expected = (uint32_t)sum[0] << 16 | (uint32_t)sum[1] << 8 | sum[2];
            if (crc24(out + block_start, *out_length - block_start) != expected)
                return -EBADMSG;
        } else {
            state = BODY;
            if (base64_append(line, line_length, out, out_length) < 0)
                return -EINVAL;
        }
        line = next ? next + 1 : end;
    }
    return *out_length ? 0 : -EINVAL;
}

/* Reads a whole ASCII-armored keyring file; caller frees text. */
static int file_read(int fd, char **text, size_t *length)
{
    struct stat st;
    *text = NULL;
    *length = 0;
    if (fstat(fd, &st) < 0)
        return -errno;
    if (st.st_size > SIGNATURE_KEYRING_MAX)
        return -EFBIG;
    if (!(*text = malloc((size_t)st.st_size + 1)))
        return -ENOMEM;
    while (*length < (size_t)st.st_size) {
        ssize_t got = pread(fd, *text + *length, (size_t)st.st_size - *length, (off_t)*length);
        if (got < 0 && errno == EINTR)
            continue;
        if (got < 0) {
            int r = -errno;
            free(*text);
            *text = NULL;
            return r;
        }
        if (got == 0)
            break;
        *length += (size_t)got;
    }
    return 0;
}

/* The keyring argument for gpgv: the configured file itself when binary or
 * a keybox (with "./" so gpgv does not look for a bare name in GNUPGHOME),
 * or a binary copy in the scratch directory when armored. */
static int pgp_keyring_prepare(const char *keyring, const struct scratch *scratch, char *path,
                               size_t path_size, char *why, size_t why_size)
{
    char head[64], *text = NULL;
    size_t length = 0;
    unsigned char *binary = NULL;
    int fd = open(keyring, O_RDONLY | O_CLOEXEC);
    ssize_t got = fd < 0 ? -1 : pread(fd, head, sizeof head, 0);
    int r = got < 0 ? -errno : 0;
    if (r == 0 && !text_starts_with(head, (size_t)got, "-----BEGIN PGP ")) {
        text_set(path, path_size, "%s%s", strchr(keyring, '/') ? "" : "./", keyring);
        goto done;
    }
    if (r == 0)
        r = file_read(fd, &text, &length);
    if (r < 0) {
        text_set(why, why_size, "cannot read gpg keyring %s: %s", keyring, strerror(-r));
        goto done;
    }
    size_t binary_length = 0;
    binary = malloc(length + 1);
    r = binary ? armor_decode(text, length, binary, &binary_length) : -ENOMEM;
    if (r < 0)
        text_set(why, why_size, "gpg keyring %s: %s", keyring,
                 r == -EBADMSG ? "armor checksum mismatch" : "not a valid armored key block");
    else
        r = scratch_write(scratch, "keyring.gpg", binary, binary_length, path, path_size, why,
                          why_size);
done:
    if (fd >= 0)
        close(fd);
    free(binary);
    free(text);
    return r;
}

/* What gpgv's status lines (--status-fd) say about the signature. */
struct pgp_status {
    bool good, valid, bad, missing_key, expired_key, revoked_key, expired_signature;
    int error_code; /* ERRSIG's rc, 0 when none */
    char key_id[64];
    char fingerprint[128]; /* primary key's, from VALIDSIG or ERRSIG */
};

static void status_word(const char *line, int index, char *word, size_t size)
{
    for (int i = 0; i < index && *line; i++) {
        line += strcspn(line, " \n");
        line += strspn(line, " ");
    }
    size_t length = strcspn(line, " \n");
    if (length >= size)
        length = size - 1;
    memcpy(word, line, length);
    word[length] = '\0';
}

static void pgp_status_parse(const char *text, struct pgp_status *status)
{
    static const char prefix[] = "[GNUPG:] ";
    memset(status, 0, sizeof *status);
    for (const char *line = text; line && *line;) {
        const char *next = strchr(line, '\n');
        if (!strncmp(line, prefix, strlen(prefix))) {
            const char *rest = line + strlen(prefix);
            char keyword[32], word[128];
            status_word(rest, 0, keyword, sizeof keyword);
            if (!strcmp(keyword, "GOODSIG")) {
                status->good = true;
            } else if (!strcmp(keyword, "VALIDSIG")) {
                /* Field 10 is the primary key's fingerprint, field 1 the
                 * signing (sub)key's; keyrings list primary keys. */
                status->valid = true;
                status_word(rest, 10, word, sizeof word);
                if (!word[0])
                    status_word(rest, 1, word, sizeof word);
                snprintf(status->fingerprint, sizeof status->fingerprint, "%s", word);
            } else if (!strcmp(keyword, "BADSIG")) {
                status->bad = true;
            } else if (!strcmp(keyword, "ERRSIG")) {
                status_word(rest, 6, word, sizeof word);
                status->error_code = atoi(word) ? atoi(word) : -1;
                status_word(rest, 7, word, sizeof word);
                if (word[0] && strcmp(word, "-"))
                    snprintf(status->fingerprint, sizeof status->fingerprint, "%s", word);
            } else if (!strcmp(keyword, "NO_PUBKEY")) {
                status->missing_key = true;
            } else if (!strcmp(keyword, "EXPKEYSIG")) {
                status->expired_key = true;
            } else if (!strcmp(keyword, "REVKEYSIG")) {
                status->revoked_key = true;
            } else if (!strcmp(keyword, "EXPSIG")) {
                status->expired_signature = true;
            }
            static const char *const naming_key[] = {"GOODSIG",   "BADSIG",    "ERRSIG",   "EXPSIG",
                                                     "EXPKEYSIG", "REVKEYSIG", "NO_PUBKEY"};
            for (size_t i = 0; i < sizeof naming_key / sizeof naming_key[0]; i++)
                if (!strcmp(keyword, naming_key[i]) && !status->key_id[0])
                    status_word(rest, 1, status->key_id, sizeof status->key_id);
        }
        line = next ? next + 1 : NULL;
    }
}

static int pgp_verdict(const struct pgp_status *status, const struct program_run *run,
                       const char *keyring, char *signer, size_t signer_size, char *why,
                       size_t why_size)
{
    const char *key = status->fingerprint[0] ? status->fingerprint : status->key_id;
    char message[256];
    first_line(run->err, message, sizeof message);
    if (status->bad)
        text_set(why, why_size, "bad signature by OpenPGP key %s", status->key_id);
    else if (status->missing_key || status->error_code == 9)
        text_set(why, why_size, "signed by a key not in the keyring %s: %s", keyring, key);
    else if (status->error_code)
        text_set(why, why_size, "OpenPGP signature by %s could not be checked (gpgv error %d): %s",
                 key, status->error_code, message);
    else if (status->revoked_key)
        text_set(why, why_size, "signed by a revoked OpenPGP key %s", key);
    else if (status->expired_key)
        text_set(why, why_size, "signed by an expired OpenPGP key %s", key);
    else if (status->expired_signature)
        text_set(why, why_size, "expired OpenPGP signature by %s", key);
    else if (status->good && status->valid && program_succeeded(run)) {
        text_set(signer, signer_size, "%s", status->fingerprint);
        return 0;
    } else
        text_set(why, why_size, "gpgv did not find a valid signature: %s",
                 message[0] ? message : "no message");
    return -EPERM;
}

static int pgp_verify(const struct signature_trust *trust, const char *signature,
                      size_t signature_length, const char *payload, size_t payload_length,
                      int timeout_ms, char *signer, size_t signer_size, char *why, size_t why_size)
{
    if (!trust || !trust->gpg_keyring || !*trust->gpg_keyring) {
        text_set(why, why_size, "OpenPGP-signed but no gpg_keyring is configured");
        return -EPERM;
    }
    int r = file_check_readable("gpg keyring", trust->gpg_keyring, why, why_size);
    if (r < 0)
        return r;
    char gpgv[PATH_MAX];
    if (program_find("gpgv", gpgv, sizeof gpgv) < 0) {
        text_set(why, why_size, "gpgv not found in PATH; install gpgv");
        return -ENOENT;
    }
    struct scratch scratch = {0};
    char signature_path[PATH_MAX + 16], payload_path[PATH_MAX + 16], keyring[PATH_MAX + 16];
    if ((r = scratch_create(&scratch, why, why_size)) < 0)
        return r;
    struct program_run run = {0};
    if ((r = scratch_write(&scratch, "signature.asc", signature, signature_length, signature_path,
                           sizeof signature_path, why, why_size)) < 0 ||
        (r = scratch_write(&scratch, "payload", payload, payload_length, payload_path,
                           sizeof payload_path, why, why_size)) < 0 ||
        (r = pgp_keyring_prepare(trust->gpg_keyring, &scratch, keyring, sizeof keyring, why,
                                 why_size)) < 0)
        goto done;
    char *argv[] = {"gpgv", "--status-fd",  "1",          "--keyring", keyring,
                    "--",   signature_path, payload_path, NULL};
    if ((r = program_run(gpgv, argv, NULL, &scratch, timeout_ms, &run, why, why_size)) < 0)
        goto done;
    struct pgp_status status;
    pgp_status_parse(run.out, &status);
    r = pgp_verdict(&status, &run, trust->gpg_keyring, signer, signer_size, why, why_size);
done:
    program_run_clear(&run);
    scratch_remove(&scratch);
    return r;
}

/* ---- the entry point ---- */

int signature_verify(const struct signature_trust *trust, const char *signature,
                     size_t signature_length, const char *payload, size_t payload_length,
                     char *signer, size_t signer_size, char *why, size_t why_size)
{
    text_set(signer, signer_size, "%s", "");
    text_set(why, why_size, "%s", "");
    if (!payload)
        payload_length = 0;
    if (!payload_length)
        payload = "";
    int timeout_ms = trust && trust->timeout_ms > 0 ? trust->timeout_ms : SIGNATURE_TIMEOUT_MS;
    if (!signature || !signature_length) {
        text_set(why, why_size, "unsigned");
        return -EPERM;
    }
    if (text_starts_with(signature, signature_length, SSH_BEGIN))
        return ssh_verify(trust, signature, signature_length, payload, payload_length, timeout_ms,
                          signer, signer_size, why, why_size);
    if (text_starts_with(signature, signature_length, PGP_BEGIN))
        return pgp_verify(trust, signature, signature_length, payload, payload_length, timeout_ms,
                          signer, signer_size, why, why_size);
    text_set(why, why_size, "unknown signature format");
    return -EPERM;
}
