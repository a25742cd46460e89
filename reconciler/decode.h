/*
 * decode.h - table-driven decoding of a YAML tree into canonical JSON.
 *
 * A struct object_schema lists the keys one YAML mapping may hold, each with
 * a type and its limits. decode_object() checks a mapping against it and
 * returns the canonical JSON of what was written plus the defaults the table
 * declares, so two specs that mean the same thing decode to equal JSON.
 * Every problem becomes a diag entry naming file:line:column and the field
 * path; unknown keys get a did-you-mean. Decoding goes on after an error so a
 * user sees all problems at once. Pure: no I/O.
 */
#ifndef ROLLD_DECODE_H
#define ROLLD_DECODE_H

#include <jansson.h>
#include <stdbool.h>

#include "error.h"
#include "yaml_tree.h"

enum field_type {
    FIELD_STRING,      /* any non-null scalar, kept as text */
    FIELD_NAME,        /* [a-z0-9-]{1,63} */
    FIELD_CLASS_NAME,  /* Ray Serve deployment name: [A-Za-z0-9_-]{1,63} */
    FIELD_PATH,        /* string starting with '/' */
    FIELD_INT,         /* integer within [min, max] */
    FIELD_NUMBER,      /* integer or float within [min, max] */
    FIELD_BOOL,
    FIELD_ENUM,        /* one of enum_values */
    FIELD_DURATION,    /* "90s", "15m", "2h", "1h30m": stored as seconds */
    FIELD_OBJECT,      /* mapping checked against object */
    FIELD_NAMED_LIST,  /* list of mappings checked against object, unique "name" */
    FIELD_STRING_LIST, /* list of scalars */
    FIELD_STRING_OR_LIST, /* one string or a list of them (requirements) */
    FIELD_STRING_MAP,  /* mapping of scalars */
    FIELD_INT_LIST,    /* list of integers within [min, max] */
    FIELD_ANY,         /* free-form value (user_config, runtime_env, args) */
    FIELD_ANY_MAP,     /* free-form mapping */
    FIELD_NAME_OR_ANY_MAP, /* a name or an inline free-form mapping (compute_config) */
};

struct decode_context;
struct object_schema;

struct field_schema {
    const char *key;
    enum field_type type;
    double min, max;
    const struct object_schema *object;
    const char *const *enum_values; /* NULL-terminated */
    bool required;
    const char *default_json; /* JSON text of the default, or NULL */
};

/* Checks that need several fields at once; node is the mapping, out its JSON. */
typedef void (*object_check_fn)(struct decode_context *ctx, const struct ynode *node,
                                json_t *out, const char *path);

struct object_schema {
    const struct field_schema *fields;
    size_t field_count;
    object_check_fn check;
};

struct decode_context {
    const char *file;
    struct diag *diag;
    int errors;
};

/* Returns a new JSON object (caller decrefs), or NULL when node is not a
 * mapping (error recorded). Field errors are recorded and the field left out. */
json_t *decode_object(struct decode_context *ctx, const struct ynode *node,
                      const struct object_schema *schema, const char *path);

/* Records an error at node (or at line 0 when node is NULL). */
void decode_error(struct decode_context *ctx, const struct ynode *node, const char *path,
                  const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Joins a parent path and a key ("a.b", "a[x]"); returns a static-free string. */
void decode_path_join(char *out, size_t size, const char *parent, const char *key);

/* The closest of candidates to word, or NULL when none is close. */
const char *decode_suggest(const char *word, const char *const *candidates, size_t count);

/* Parses a duration such as "90s", "15m", "2h", "1h30m" into seconds. */
int decode_duration(const char *text, long long *seconds);

bool decode_is_name(const char *text);

/* Any YAML node as JSON (YAML 1.2 core schema for plain scalars); caller decrefs. */
json_t *decode_any(const struct ynode *node);

#endif
