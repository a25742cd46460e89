/*
 * config.h - the agent's configuration file, /etc/rolld/rolld.yaml.
 *
 * It says where the specs come from (a directory or a Git repository), where
 * the state lives, what the host has (inventory), how the router runs, where
 * status goes, which keys sign trusted commits, and how the agent logs. It is
 * validated with the same error quality as service specs: every problem is
 * file:line:col: field: message, unknown keys get a did-you-mean. Relative
 * paths are taken relative to the file's directory. Described by
 * schema/rolld.schema.json. Pure: parsing takes the text, no I/O.
 */
#ifndef ROLLD_CONFIG_H
#define ROLLD_CONFIG_H

#include <stdbool.h>

#include "error.h"
#include "inventory.h"

#define CONFIG_DEFAULT_PATH "/etc/rolld/rolld.yaml"

enum log_format { LOG_FORMAT_TEXT, LOG_FORMAT_JSON };
enum source_kind { SOURCE_DIRECTORY, SOURCE_GIT };

struct agent_config {
    char *file;         /* the file it came from, or NULL for flags only */
    char *name;         /* this agent, in status commits and STATUS.md; NULL: the host name */
    char *state_dir;    /* NULL: /var/lib/rolld */
    char *policies_dir; /* NULL: the installed policies */

    enum source_kind source_kind;
    char *source_path;   /* SOURCE_DIRECTORY: the spec directory */
    char *git_url;       /* SOURCE_GIT: the remote */
    char *git_branch;    /* "main" */
    char *git_directory; /* inside the repository; "" = the root */
    long long fetch_interval_s; /* 30 */
    bool git_watch;             /* fetch at once when a local origin's refs move (true) */
    char *ssh_key, *token_file, *git_username;
    int debounce_ms; /* 30 */

    bool status_git;       /* write status back to the Git remote (default: on for a Git source) */
    char *status_branch;   /* "rolld/status" */
    char *author_name;     /* "rolld" */
    char *author_email;    /* "rolld@<name>" when NULL */
    bool revert_branches;  /* push rolld/revert/<service> after an automatic rollback (on) */

    char *allowed_signers; /* SSH allowed-signers file for signed-commit policies */
    char *gpg_keyring;     /* OpenPGP keyring for signed-commit policies */

    struct inventory inventory;

    char *haproxy_binary; /* "haproxy" */
    char *pin_header;     /* "X-Rolld-Version" */
    int port_min, port_max;

    char *metrics_listen; /* "127.0.0.1:9464"; NULL: no metrics endpoint */
    enum log_format log_format;
};

/* Fills config with the defaults (all pointers NULL mean the default). */
void config_init(struct agent_config *config);

/* Parses text (the content of file) into config, which holds the defaults.
 * Returns 0, or -EINVAL with every problem in diag (config is then left
 * partly filled; clear it). */
int config_parse(const char *text, size_t length, const char *file, struct agent_config *config,
                 struct diag *diag);

/* Parses a memory amount: bytes, or a number with Ki, Mi, Gi, Ti, K, M, G or T. */
int config_parse_memory(const char *text, long long *bytes);

/* Parses "LOW-HIGH" (decimal, within 1024-65535, LOW <= HIGH). */
int config_parse_ports(const char *text, int *low, int *high);

/* Parses "0,1,3" (device indices) into inventory; -EINVAL when malformed. */
int config_parse_gpu_list(const char *text, struct inventory *inventory);

void config_clear(struct agent_config *config);

#endif
