/*
 * test_signature.c - signature_verify against real keys and real commits:
 * ssh-keygen and gpg make the keys, git signs the commits, libgit2 extracts
 * signature and payload exactly as the agent does. Everything lives in a
 * mkdtemp directory removed at the end; TMPDIR points inside it, so every
 * check can assert that its scratch directory is gone.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <git2.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "signature.h"

struct signed_commit {
    char *signature; /* NULL when unsigned */
    size_t signature_length;
    char *payload;
    size_t payload_length;
};

static struct {
    char root[256];
    char scratch[300];         /* $TMPDIR for signature_verify */
    char allowed_signers[300]; /* trusts the "trusted" SSH key only */
    char keyring[300];         /* binary, the trusted OpenPGP key only */
    char keyring_armored[300];
    char stranger_ssh_fingerprint[128];
    char trusted_gpg_fingerprint[64];
    char stranger_gpg_fingerprint[64];
    char saved_path[4096];
    struct signed_commit ssh_trusted, ssh_stranger, pgp_trusted, pgp_stranger, unsigned_commit;
} fixture;

static void run_command(const char *format, ...) __attribute__((format(printf, 1, 2)));
static void capture_command(char *out, size_t size, const char *format, ...)
    __attribute__((format(printf, 3, 4)));

static void run_command(const char *format, ...)
{
    char command[2048];
    va_list args;
    va_start(args, format);
    vsnprintf(command, sizeof command, format, args);
    va_end(args);
    int status = system(command);
    if (status != 0)
        fail_msg("command failed (%d): %s", status, command);
}

/* The first line of a command's output. */
static void capture_command(char *out, size_t size, const char *format, ...)
{
    char command[2048];
    va_list args;
    va_start(args, format);
    vsnprintf(command, sizeof command, format, args);
    va_end(args);
    FILE *pipe = popen(command, "r");
    assert_non_null(pipe);
    if (!fgets(out, (int)size, pipe))
        out[0] = '\0';
    out[strcspn(out, "\r\n")] = '\0';
    if (pclose(pipe) != 0 || !out[0])
        fail_msg("command failed or printed nothing: %s", command);
}

static void write_text(const char *path, const char *text, mode_t mode)
{
    FILE *file = fopen(path, "w");
    assert_non_null(file);
    fputs(text, file);
    assert_int_equal(fclose(file), 0);
    assert_int_equal(chmod(path, mode), 0);
}

/* Makes an empty commit with the given git options (which choose the key)
 * and extracts its signature with libgit2. */
static void commit_and_extract(struct signed_commit *out, const char *options, const char *message)
{
    char hex[64];
    run_command("git -C %s/repo %s commit -q --allow-empty -m '%s'", fixture.root, options,
                message);
    capture_command(hex, sizeof hex, "git -C %s/repo rev-parse HEAD", fixture.root);

    char path[300];
    snprintf(path, sizeof path, "%s/repo", fixture.root);
    git_repository *repo = NULL;
    git_oid oid;
    assert_int_equal(git_repository_open(&repo, path), 0);
    assert_int_equal(git_oid_fromstr(&oid, hex), 0);
    git_buf signature = GIT_BUF_INIT, payload = GIT_BUF_INIT;
    int r = git_commit_extract_signature(&signature, &payload, repo, &oid, NULL);
    memset(out, 0, sizeof *out);
    if (r == 0) {
        out->signature = strndup(signature.ptr, signature.size);
        out->signature_length = signature.size;
        out->payload = malloc(payload.size + 1);
        memcpy(out->payload, payload.ptr, payload.size);
        out->payload_length = payload.size;
    } else {
        assert_int_equal(r, GIT_ENOTFOUND);
    }
    git_buf_dispose(&signature);
    git_buf_dispose(&payload);
    git_repository_free(repo);
}

static int setup(void **state)
{
    (void)state;
    const char *tmp = getenv("TMPDIR");
    snprintf(fixture.root, sizeof fixture.root, "%s/rolld-test-signature-XXXXXX",
             tmp && *tmp ? tmp : "/tmp");
    assert_non_null(mkdtemp(fixture.root));
    const char *path = getenv("PATH");
    snprintf(fixture.saved_path, sizeof fixture.saved_path, "%s", path ? path : "/usr/bin:/bin");

    char home[300];
    snprintf(home, sizeof home, "%s/gnupg", fixture.root);
    assert_int_equal(mkdir(home, 0700), 0);
    setenv("GNUPGHOME", home, 1);
    setenv("GIT_CONFIG_GLOBAL", "/dev/null", 1);
    setenv("GIT_CONFIG_NOSYSTEM", "1", 1);
    unsetenv("SSH_AUTH_SOCK");
    snprintf(fixture.scratch, sizeof fixture.scratch, "%s/tmp", fixture.root);
    assert_int_equal(mkdir(fixture.scratch, 0700), 0);

    /* SSH: one trusted key, one stranger. */
    const char *r = fixture.root;
    run_command("ssh-keygen -q -t ed25519 -N '' -C t@example.com -f %s/trusted", r);
    run_command("ssh-keygen -q -t ed25519 -N '' -C o@example.com -f %s/stranger", r);
    snprintf(fixture.allowed_signers, sizeof fixture.allowed_signers, "%s/allowed_signers", r);
    run_command("printf 't@example.com namespaces=\"git\" %%s %%s\\n' $(cut -d' ' -f1,2 "
                "%s/trusted.pub) > %s",
                r, fixture.allowed_signers);
    capture_command(fixture.stranger_ssh_fingerprint, sizeof fixture.stranger_ssh_fingerprint,
                    "ssh-keygen -lf %s/stranger.pub | cut -d' ' -f2", r);

    /* OpenPGP: one key in the keyring, one not. */
    run_command("gpg -q --batch --passphrase '' --quick-gen-key 'Test <t@example.com>' "
                "ed25519 sign never 2>/dev/null");
    run_command("gpg -q --batch --passphrase '' --quick-gen-key 'Other <o@example.com>' "
                "ed25519 sign never 2>/dev/null");
    capture_command(fixture.trusted_gpg_fingerprint, sizeof fixture.trusted_gpg_fingerprint,
                    "gpg --with-colons --list-keys t@example.com 2>/dev/null | "
                    "awk -F: '/^fpr/ { print $10; exit }'");
    capture_command(fixture.stranger_gpg_fingerprint, sizeof fixture.stranger_gpg_fingerprint,
                    "gpg --with-colons --list-keys o@example.com 2>/dev/null | "
                    "awk -F: '/^fpr/ { print $10; exit }'");
    snprintf(fixture.keyring, sizeof fixture.keyring, "%s/keyring.gpg", r);
    snprintf(fixture.keyring_armored, sizeof fixture.keyring_armored, "%s/keyring.asc", r);
    run_command("gpg --export %s > %s", fixture.trusted_gpg_fingerprint, fixture.keyring);
    run_command("gpg --export --armor %s > %s", fixture.trusted_gpg_fingerprint,
                fixture.keyring_armored);

    /* The commits. */
    run_command("git init -q %s/repo && git -C %s/repo config user.name Test && "
                "git -C %s/repo config user.email t@example.com",
                r, r, r);
    char options[600];
    snprintf(options, sizeof options,
             "-c gpg.format=ssh -c user.signingkey=%s/trusted.pub -c commit.gpgsign=true", r);
    commit_and_extract(&fixture.ssh_trusted, options, "ssh trusted");
    snprintf(options, sizeof options,
             "-c gpg.format=ssh -c user.signingkey=%s/stranger.pub -c commit.gpgsign=true", r);
    commit_and_extract(&fixture.ssh_stranger, options, "ssh stranger");
    snprintf(options, sizeof options,
             "-c gpg.program=gpg -c user.signingkey=%s -c commit.gpgsign=true",
             fixture.trusted_gpg_fingerprint);
    commit_and_extract(&fixture.pgp_trusted, options, "pgp trusted");
    snprintf(options, sizeof options,
             "-c gpg.program=gpg -c user.signingkey=%s -c commit.gpgsign=true",
             fixture.stranger_gpg_fingerprint);
    commit_and_extract(&fixture.pgp_stranger, options, "pgp stranger");
    commit_and_extract(&fixture.unsigned_commit, "-c commit.gpgsign=false", "unsigned");

    assert_non_null(fixture.ssh_trusted.signature);
    assert_non_null(fixture.ssh_stranger.signature);
    assert_non_null(fixture.pgp_trusted.signature);
    assert_non_null(fixture.pgp_stranger.signature);
    assert_null(fixture.unsigned_commit.signature);

    setenv("TMPDIR", fixture.scratch, 1);
    return 0;
}

static void signed_commit_free(struct signed_commit *commit)
{
    free(commit->signature);
    free(commit->payload);
}

static int teardown(void **state)
{
    (void)state;
    setenv("PATH", fixture.saved_path, 1);
    unsetenv("TMPDIR");
    if (system("gpgconf --kill gpg-agent 2>/dev/null") != 0)
        fprintf(stderr, "gpgconf --kill gpg-agent failed\n");
    run_command("rm -rf %s", fixture.root);
    signed_commit_free(&fixture.ssh_trusted);
    signed_commit_free(&fixture.ssh_stranger);
    signed_commit_free(&fixture.pgp_trusted);
    signed_commit_free(&fixture.pgp_stranger);
    signed_commit_free(&fixture.unsigned_commit);
    return 0;
}

static void assert_scratch_empty(void)
{
    DIR *dir = opendir(fixture.scratch);
    assert_non_null(dir);
    struct dirent *entry;
    while ((entry = readdir(dir)))
        if (strcmp(entry->d_name, ".") && strcmp(entry->d_name, ".."))
            fail_msg("signature_verify left %s/%s behind", fixture.scratch, entry->d_name);
    closedir(dir);
}

struct verdict {
    int result;
    char signer[256];
    char why[512];
};

/* signature_verify on a commit, checking that no temporary file remains. */
static struct verdict verify(const struct signature_trust *trust,
                             const struct signed_commit *commit)
{
    struct verdict verdict;
    verdict.result = signature_verify(trust, commit->signature, commit->signature_length,
                                      commit->payload, commit->payload_length, verdict.signer,
                                      sizeof verdict.signer, verdict.why, sizeof verdict.why);
    assert_scratch_empty();
    return verdict;
}

static void assert_why_contains(const struct verdict *verdict, const char *needle)
{
    if (!strstr(verdict->why, needle))
        fail_msg("why is \"%s\", which does not contain \"%s\"", verdict->why, needle);
    assert_null(strchr(verdict->why, '\n'));
}

static double elapsed_ms(const struct timespec *start)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) * 1e3 +
           (double)(now.tv_nsec - start->tv_nsec) / 1e6;
}

static struct signature_trust trust_all(void)
{
    return (struct signature_trust){.allowed_signers = fixture.allowed_signers,
                                    .gpg_keyring = fixture.keyring};
}

static void test_ssh_trusted(void **state)
{
    (void)state;
    struct signature_trust trust = trust_all();
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    struct verdict verdict = verify(&trust, &fixture.ssh_trusted);
    double took = elapsed_ms(&start);
    if (verdict.result != 0)
        fail_msg("refused (%d): %s", verdict.result, verdict.why);
    assert_string_equal(verdict.signer, "t@example.com");
    print_message("SSH verification took %.1f ms\n", took);
}

static void test_pgp_trusted(void **state)
{
    (void)state;
    struct signature_trust trust = trust_all();
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    struct verdict verdict = verify(&trust, &fixture.pgp_trusted);
    double took = elapsed_ms(&start);
    if (verdict.result != 0)
        fail_msg("refused (%d): %s", verdict.result, verdict.why);
    assert_string_equal(verdict.signer, fixture.trusted_gpg_fingerprint);
    print_message("OpenPGP verification took %.1f ms\n", took);
}

static void test_pgp_trusted_armored_keyring(void **state)
{
    (void)state;
    struct signature_trust trust = {.gpg_keyring = fixture.keyring_armored};
    struct verdict verdict = verify(&trust, &fixture.pgp_trusted);
    if (verdict.result != 0)
        fail_msg("refused (%d): %s", verdict.result, verdict.why);
    assert_string_equal(verdict.signer, fixture.trusted_gpg_fingerprint);
}

static void test_unsigned(void **state)
{
    (void)state;
    struct signature_trust trust = trust_all();
    struct verdict verdict = verify(&trust, &fixture.unsigned_commit);
    assert_int_equal(verdict.result, -EPERM);
    assert_string_equal(verdict.why, "unsigned");
    assert_string_equal(verdict.signer, "");

    struct signed_commit empty = {.signature = "", .payload = "tree x\n", .payload_length = 7};
    verdict = verify(&trust, &empty);
    assert_int_equal(verdict.result, -EPERM);
    assert_string_equal(verdict.why, "unsigned");
}

static void test_unknown_format(void **state)
{
    (void)state;
    struct signature_trust trust = trust_all();
    static char text[] = "-----BEGIN SIGNED MESSAGE-----\nMIIB\n-----END SIGNED MESSAGE-----\n";
    struct signed_commit x509 = {.signature = text,
                                 .signature_length = sizeof text - 1,
                                 .payload = fixture.ssh_trusted.payload,
                                 .payload_length = fixture.ssh_trusted.payload_length};
    struct verdict verdict = verify(&trust, &x509);
    assert_int_equal(verdict.result, -EPERM);
    assert_string_equal(verdict.why, "unknown signature format");
}

static void test_ssh_unknown_key(void **state)
{
    (void)state;
    struct signature_trust trust = trust_all();
    struct verdict verdict = verify(&trust, &fixture.ssh_stranger);
    assert_int_equal(verdict.result, -EPERM);
    assert_string_equal(verdict.signer, "");
    assert_why_contains(&verdict, "signed by a key not in ");
    assert_why_contains(&verdict, fixture.allowed_signers);
    assert_why_contains(&verdict, fixture.stranger_ssh_fingerprint);

    /* What ssh-keygen says about a broken line is passed on. */
    char broken[320], line[400], text[500];
    snprintf(broken, sizeof broken, "%s/allowed_signers_broken", fixture.root);
    FILE *from = fopen(fixture.allowed_signers, "r");
    assert_non_null(from);
    assert_non_null(fgets(line, (int)sizeof line, from));
    fclose(from);
    snprintf(text, sizeof text, "bad@example.com not-a-key\n%s", line);
    write_text(broken, text, 0600);
    trust.allowed_signers = broken;
    verdict = verify(&trust, &fixture.ssh_stranger);
    assert_int_equal(verdict.result, -EPERM);
    assert_why_contains(&verdict, fixture.stranger_ssh_fingerprint);
    assert_why_contains(&verdict, "allowed_signers_broken:1:");
    verdict = verify(&trust, &fixture.ssh_trusted);
    assert_int_equal(verdict.result, 0);
}

static void test_pgp_unknown_key(void **state)
{
    (void)state;
    struct signature_trust trust = trust_all();
    struct verdict verdict = verify(&trust, &fixture.pgp_stranger);
    assert_int_equal(verdict.result, -EPERM);
    assert_string_equal(verdict.signer, "");
    assert_why_contains(&verdict, "signed by a key not in the keyring");
    /* The long key id is the fingerprint's last 16 digits. */
    assert_why_contains(&verdict, fixture.stranger_gpg_fingerprint + 24);
}

/* A copy of commit whose payload differs in one byte (the commit message). */
static struct signed_commit tampered(const struct signed_commit *commit)
{
    struct signed_commit copy = *commit;
    copy.payload = malloc(commit->payload_length);
    assert_non_null(copy.payload);
    memcpy(copy.payload, commit->payload, commit->payload_length);
    copy.payload[commit->payload_length - 2] ^= 0x01;
    return copy;
}

static void test_ssh_tampered(void **state)
{
    (void)state;
    struct signature_trust trust = trust_all();
    struct signed_commit copy = tampered(&fixture.ssh_trusted);
    struct verdict verdict = verify(&trust, &copy);
    free(copy.payload);
    assert_int_equal(verdict.result, -EPERM);
    assert_string_equal(verdict.signer, "");
    assert_why_contains(&verdict, "bad signature");
}

static void test_pgp_tampered(void **state)
{
    (void)state;
    struct signature_trust trust = trust_all();
    struct signed_commit copy = tampered(&fixture.pgp_trusted);
    struct verdict verdict = verify(&trust, &copy);
    free(copy.payload);
    assert_int_equal(verdict.result, -EPERM);
    assert_string_equal(verdict.signer, "");
    assert_why_contains(&verdict, "bad signature");
}

static void test_nothing_configured(void **state)
{
    (void)state;
    struct signature_trust trust = {0};
    struct verdict verdict = verify(&trust, &fixture.ssh_trusted);
    assert_int_equal(verdict.result, -EPERM);
    assert_why_contains(&verdict, "no allowed_signers file is configured");
    verdict = verify(NULL, &fixture.ssh_trusted);
    assert_int_equal(verdict.result, -EPERM);

    verdict = verify(&trust, &fixture.pgp_trusted);
    assert_int_equal(verdict.result, -EPERM);
    assert_why_contains(&verdict, "no gpg_keyring is configured");

    /* Trusting one kind does not accept the other. */
    trust.allowed_signers = fixture.allowed_signers;
    verdict = verify(&trust, &fixture.pgp_trusted);
    assert_int_equal(verdict.result, -EPERM);
}

static void test_configured_file_missing(void **state)
{
    (void)state;
    char missing[320];
    snprintf(missing, sizeof missing, "%s/no-such-file", fixture.root);
    struct signature_trust trust = {.allowed_signers = missing, .gpg_keyring = missing};
    struct verdict verdict = verify(&trust, &fixture.ssh_trusted);
    assert_int_equal(verdict.result, -ENOENT);
    assert_why_contains(&verdict, missing);
    verdict = verify(&trust, &fixture.pgp_trusted);
    assert_int_equal(verdict.result, -ENOENT);
    assert_why_contains(&verdict, missing);
}

static void test_programs_missing(void **state)
{
    (void)state;
    char empty[320];
    snprintf(empty, sizeof empty, "%s/empty-bin", fixture.root);
    mkdir(empty, 0700);
    setenv("PATH", empty, 1);
    struct signature_trust trust = trust_all();
    struct verdict ssh = verify(&trust, &fixture.ssh_trusted);
    struct verdict pgp = verify(&trust, &fixture.pgp_trusted);
    setenv("PATH", fixture.saved_path, 1);
    assert_int_equal(ssh.result, -ENOENT);
    assert_why_contains(&ssh, "ssh-keygen not found");
    assert_int_equal(pgp.result, -ENOENT);
    assert_why_contains(&pgp, "gpgv not found");
}

/* A directory holding only a fake ssh-keygen with the given script body. */
static void fake_ssh_keygen(const char *body, char *directory, size_t size)
{
    snprintf(directory, size, "%s/fake-bin", fixture.root);
    mkdir(directory, 0700);
    char path[400], script[600];
    snprintf(path, sizeof path, "%s/ssh-keygen", directory);
    snprintf(script, sizeof script, "#!/bin/sh\n%s\n", body);
    write_text(path, script, 0700);
}

static void test_hung_program_is_killed(void **state)
{
    (void)state;
    char sleep_path[256], directory[320], body[320];
    capture_command(sleep_path, sizeof sleep_path, "command -v sleep");
    snprintf(body, sizeof body, "exec %s 60", sleep_path);
    fake_ssh_keygen(body, directory, sizeof directory);
    setenv("PATH", directory, 1);
    struct signature_trust trust = trust_all();
    trust.timeout_ms = 200;
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    struct verdict verdict = verify(&trust, &fixture.ssh_trusted);
    double took = elapsed_ms(&start);
    setenv("PATH", fixture.saved_path, 1);
    assert_int_equal(verdict.result, -ETIMEDOUT);
    assert_why_contains(&verdict, "did not finish");
    assert_true(took >= 190 && took < 5000);
}

/* A program that writes far more than is kept must not block on a full
 * pipe (which would end in the timeout instead). */
static void test_output_flood_is_drained(void **state)
{
    (void)state;
    char head_path[256], directory[320], body[700];
    capture_command(head_path, sizeof head_path, "command -v head");
    snprintf(body, sizeof body, "%s -c 4000000 /dev/zero\n%s -c 300000 /dev/zero >&2\nexit 255",
             head_path, head_path);
    fake_ssh_keygen(body, directory, sizeof directory);
    setenv("PATH", directory, 1);
    struct signature_trust trust = trust_all();
    trust.timeout_ms = 8000;
    struct verdict verdict = verify(&trust, &fixture.ssh_trusted);
    setenv("PATH", fixture.saved_path, 1);
    assert_int_equal(verdict.result, -EPERM);
    assert_why_contains(&verdict, "signed by a key not in");
}

/* With SIGCHLD ignored the kernel reaps the child: an error, not a hang
 * and not a verdict. */
static void test_sigchld_ignored(void **state)
{
    (void)state;
    struct sigaction ignore = {.sa_handler = SIG_IGN}, saved;
    sigaction(SIGCHLD, &ignore, &saved);
    struct signature_trust trust = trust_all();
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    struct verdict verdict = verify(&trust, &fixture.ssh_trusted);
    double took = elapsed_ms(&start);
    sigaction(SIGCHLD, &saved, NULL);
    assert_int_equal(verdict.result, -ECHILD);
    assert_why_contains(&verdict, "cannot wait for ssh-keygen");
    assert_true(took < 5000);
}

int main(void)
{
    git_libgit2_init();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ssh_trusted),
        cmocka_unit_test(test_pgp_trusted),
        cmocka_unit_test(test_pgp_trusted_armored_keyring),
        cmocka_unit_test(test_unsigned),
        cmocka_unit_test(test_unknown_format),
        cmocka_unit_test(test_ssh_unknown_key),
        cmocka_unit_test(test_pgp_unknown_key),
        cmocka_unit_test(test_ssh_tampered),
        cmocka_unit_test(test_pgp_tampered),
        cmocka_unit_test(test_nothing_configured),
        cmocka_unit_test(test_configured_file_missing),
        cmocka_unit_test(test_programs_missing),
        cmocka_unit_test(test_hung_program_is_killed),
        cmocka_unit_test(test_output_flood_is_drained),
        cmocka_unit_test(test_sigchld_ignored),
    };
    int failed = cmocka_run_group_tests(tests, setup, teardown);
    git_libgit2_shutdown();
    return failed;
}
