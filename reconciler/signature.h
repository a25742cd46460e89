/*
 * signature.h - is a commit signed by a trusted key?
 *
 * SSH signatures are checked against an allowed-signers file with
 * `ssh-keygen -Y find-principals` and `ssh-keygen -Y verify` (namespace
 * "git"); OpenPGP signatures against a keyring with gpgv. The verdict is
 * a yes or no plus a reason a person can act on.
 */
#ifndef ROLLD_SIGNATURE_H
#define ROLLD_SIGNATURE_H

#include <stddef.h>

struct signature_trust {
    const char *allowed_signers; /* ssh-keygen allowed signers file, or NULL */
    const char *gpg_keyring;     /* OpenPGP keyring for gpgv (binary or armored), or NULL */
};

/* 0 when signature (detached, as stored in the commit's gpgsig header) is a
 * valid signature of payload by a key trust allows; fills signer (the
 * principal or key fingerprint). -EPERM when not, with why filled
 * ("unsigned", "signed by an unknown key SHA256:...", "bad signature", ...);
 * another negative errno when the check could not run. signature NULL means
 * the commit is unsigned. */
int signature_verify(const struct signature_trust *trust, const char *signature,
                     size_t signature_length, const char *payload, size_t payload_length,
                     char *signer, size_t signer_size, char *why, size_t why_size);

#endif
