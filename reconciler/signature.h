/*
 * signature.h - is a commit signed by a trusted key?
 *
 * SSH signatures are checked against an allowed-signers file with
 * `ssh-keygen -Y find-principals` and `ssh-keygen -Y verify` (namespace
 * "git"); OpenPGP signatures against a keyring with gpgv. The verdict is
 * a yes or no plus a reason a person can act on.
 *
 * ssh-keygen and gpgv are looked up in $PATH at each call (Debian packages
 * openssh-client and gpgv) and run without a shell, with an environment of
 * PATH, LC_ALL=C and HOME/GNUPGHOME pointing at a private scratch directory
 * (mkdtemp under $TMPDIR or /tmp, mode 0700) that holds the signature and the
 * payload and is removed before returning. Each program is killed after
 * timeout_ms; at most 64 KiB of each of its output streams is read.
 *
 * The gpg keyring may be binary (`gpg --export KEY... > keyring.gpg`, or a
 * keybox) or ASCII-armored (`gpg --export --armor`): an armored one is
 * decoded into the scratch directory at each check, so gpg itself is not
 * needed. Every key in it is trusted; a signature by an expired or revoked
 * key is refused. SSH time restrictions (valid-after/valid-before) in the
 * allowed signers file are checked against the current time, not the
 * commit's.
 *
 * Blocks the calling thread for a few milliseconds per check (one or two
 * program runs); the caller should verify a commit once and remember the
 * verdict. The children are reaped with waitpid on their pid, so SIGCHLD
 * must not be ignored (SIG_IGN) in the caller.
 */
#ifndef ROLLD_SIGNATURE_H
#define ROLLD_SIGNATURE_H

#include <stddef.h>

struct signature_trust {
    const char *allowed_signers; /* ssh-keygen allowed signers file, or NULL */
    const char *gpg_keyring;     /* OpenPGP keyring for gpgv (binary or armored), or NULL */
    int timeout_ms;              /* limit per program run; 0 means 10 s */
};

/* 0 when signature (detached, as stored in the commit's gpgsig header) is a
 * valid signature of payload by a key trust allows; fills signer (the SSH
 * principal, or the OpenPGP primary key fingerprint in upper-case hex).
 * -EPERM when not, with why filled ("unsigned", "unknown signature format",
 * "signed by a key not in <allowed signers file>: SHA256:...", "signed by a
 * key not in the keyring <file>: <fingerprint or key id>", "bad signature
 * ...", "SSH-signed but no allowed_signers file is configured", ...);
 * another negative errno when the check could not run, with why filled too:
 * -ENOENT "ssh-keygen not found in PATH ..." / "gpgv not found ...", or the
 * configured file cannot be read; -ETIMEDOUT when a program hung. signature
 * NULL or empty means the commit is unsigned. why is one line; signer and
 * why may be NULL when their size is 0. */
int signature_verify(const struct signature_trust *trust, const char *signature,
                     size_t signature_length, const char *payload, size_t payload_length,
                     char *signer, size_t signer_size, char *why, size_t why_size);

#endif
