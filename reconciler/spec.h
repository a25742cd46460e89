/*
 * spec.h - the service spec: one YAML file per service.
 *
 * spec_parse() turns the text of one file into a struct service_spec, or
 * records every error (file:line:column, field path, message) and returns
 * NULL. The spec keeps its canonical JSON document: everything the file
 * says with defaults filled in. Parsed, it is a jansson tree (`doc`, about
 * 6 KB); spec_compact() turns it into its text (`text`: compact, keys
 * sorted, about 700 bytes), which is what an agent keeping one spec per
 * service holds. spec_doc() gives the document either way, for what needs
 * all of it (a replica's launch, a plan's diff, the state file); a one-shot
 * `rolld plan` never pays for the text. The
 * part that makes a version (everything but the rollout section,
 * spec_version_doc()) is hashed into `version`. Typed fields below are read
 * from the document for the planner and the agent.
 *
 * A spec is shared: the snapshot of the source and each side of a running
 * service hold references to one spec (spec_ref, spec_free), and nothing
 * changes it after it is made, but for the identity memo. Pure: no I/O.
 */
#ifndef ROLLD_SPEC_H
#define ROLLD_SPEC_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "error.h"

enum rollout_strategy { STRATEGY_AUTO, STRATEGY_CANARY, STRATEGY_IN_PLACE };

struct deployment_spec {
    char *name;
    int num_replicas;      /* fixed count; with autoscaling, the initial count */
    bool autoscaling;
    int min_replicas, max_replicas, initial_replicas;
    double target_ongoing_requests;
    double upscale_delay_s, downscale_delay_s;
    double num_cpus, num_gpus;
    long long memory; /* bytes */
    int max_ongoing_requests;
    double health_check_period_s, health_check_timeout_s;
    double graceful_shutdown_timeout_s, graceful_shutdown_wait_loop_s;
    /* memo for the compute backend: the hash of what a restart of a replica
     * would change, a function of the spec's doc ("" until first asked) */
    char identity[17];
};

struct application_spec {
    char *name;
    char *route_prefix;
    struct deployment_spec *deployments;
    size_t deployment_count;
    /* process backend */
    char **command; /* NULL-terminated argv; "{port}" stands for the replica's port */
    char *health_path;
    char *reconfigure_path; /* NULL: user_config changes need a restart */
    char *ingress;          /* deployment that receives the route's traffic */
};

struct rollout_spec {
    enum rollout_strategy strategy;
    int canary_percent;    /* -1 when not set */
    int max_surge_percent; /* 0 when not set */
    long long timeout_s;   /* 0: the policy's */
    char *policy;          /* NULL: the agent's default policy */
};

struct service_spec {
    int refs;           /* atomically counted: snapshots move between threads */
    char *file;
    char *name;
    char *version_name; /* NULL when not set */
    char version[17];   /* hash of spec_version_doc(), 16 hex digits */
    json_t *doc;        /* the canonical document, NULL once compacted */
    char *text;         /* or its text (spec_canonical_text()); NULL until made */
    char *http_host;    /* http_options.host, NULL when not set */
    struct rollout_spec rollout;
    char *backend; /* "process", "ray", ... */
    int http_port; /* 0 when not set */
    struct application_spec *applications;
    size_t application_count;
};

#define SPEC_NAME_MAX 63

/* Parses one file's text. Returns a spec (caller frees with spec_free) or
 * NULL with at least one entry added to diag. */
struct service_spec *spec_parse(const char *text, size_t length, const char *file,
                                struct diag *diag);
/* Drops a reference; the last one frees the spec. */
void spec_free(struct service_spec *spec);
/* Takes another reference; returns spec. */
struct service_spec *spec_ref(struct service_spec *spec);

/* The canonical document (a new reference to the spec's own, or parsed from
 * the text): read it, never change it; caller decrefs. NULL when out of
 * memory. */
json_t *spec_doc(const struct service_spec *spec);

/* The canonical document's text, made on first use; NULL when out of memory. */
const char *spec_text(const struct service_spec *spec);

/* Keeps the document as text only. 0, or -ENOMEM (the spec is unchanged). */
int spec_compact(struct service_spec *spec);

/* Whether two specs say the same, rollout section included. */
bool spec_same(const struct service_spec *a, const struct service_spec *b);

/* The part of the document that makes the version: all but rollout; caller
 * decrefs. NULL when out of memory. */
json_t *spec_version_doc(const struct service_spec *spec);

/* The canonical JSON of a spec as text (compact, sorted keys); caller frees. */
char *spec_canonical_text(const json_t *doc);

const char *rollout_strategy_name(enum rollout_strategy strategy);



/* A spec from a canonical doc that spec_parse produced earlier (as kept in
 * the state store). NULL on a doc it cannot read. */
struct service_spec *spec_from_doc(json_t *doc, const char *file);
/* The same spec read from another file; caller frees. NULL when out of memory. */
struct service_spec *spec_with_file(const struct service_spec *spec, const char *file);

/* The FNV-1a 64 hash of a text as 16 hex digits, the form of a version id. */
void spec_hash_text(const char *text, char out[17]);

/* Best-effort service name of a file that may not be valid: the top-level
 * `name` if it can be read, else NULL. Caller frees. */
char *spec_guess_name(const char *text, size_t length);
#endif
