#include "decode.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PATH_SIZE 512

void decode_error(struct decode_context *ctx, const struct ynode *node, const char *path,
                  const char *fmt, ...)
{
    char message[512];
    va_list args;
    va_start(args, fmt);
    vsnprintf(message, sizeof(message), fmt, args);
    va_end(args);
    ctx->errors++;
    diag_add(ctx->diag, ctx->file, node ? node->line : 0, node ? node->column : 0, path, "%s",
             message);
}

void decode_path_join(char *out, size_t size, const char *parent, const char *key)
{
    if (!parent || !*parent)
        snprintf(out, size, "%s", key);
    else if (key[0] == '[')
        snprintf(out, size, "%s%s", parent, key);
    else
        snprintf(out, size, "%s.%s", parent, key);
}

static size_t edit_distance(const char *a, const char *b)
{
    size_t la = strlen(a), lb = strlen(b);
    if (la > 64 || lb > 64)
        return 64;
    size_t row[65];
    for (size_t j = 0; j <= lb; j++)
        row[j] = j;
    for (size_t i = 1; i <= la; i++) {
        size_t diagonal = row[0];
        row[0] = i;
        for (size_t j = 1; j <= lb; j++) {
            size_t above = row[j];
            size_t cost = tolower((unsigned char)a[i - 1]) == tolower((unsigned char)b[j - 1]) ? 0 : 1;
            size_t best = diagonal + cost;
            if (row[j] + 1 < best)
                best = row[j] + 1;
            if (row[j - 1] + 1 < best)
                best = row[j - 1] + 1;
            row[j] = best;
            diagonal = above;
        }
    }
    return row[lb];
}

const char *decode_suggest(const char *word, const char *const *candidates, size_t count)
{
    const char *best = NULL;
    size_t best_distance = (size_t)-1;
    for (size_t i = 0; i < count; i++) {
        size_t d = edit_distance(word, candidates[i]);
        if (d < best_distance) {
            best_distance = d;
            best = candidates[i];
        }
    }
    size_t length = strlen(word);
    size_t allowed = length / 3 > 2 ? length / 3 : 2;
    return best && best_distance <= allowed ? best : NULL;
}

int decode_duration(const char *text, long long *seconds)
{
    const char *p = text;
    long long total = 0;
    int parts = 0;
    char last_unit = 0;
    while (*p) {
        if (!isdigit((unsigned char)*p))
            return -EINVAL;
        long long value = 0;
        while (isdigit((unsigned char)*p)) {
            value = value * 10 + (*p - '0');
            if (value > 100000000LL)
                return -ERANGE;
            p++;
        }
        long long scale;
        switch (*p) {
        case 'h':
            scale = 3600;
            break;
        case 'm':
            scale = 60;
            break;
        case 's':
            scale = 1;
            break;
        default:
            return -EINVAL;
        }
        /* units must come in order h, m, s and each once */
        if (last_unit && (last_unit == 's' || (last_unit == 'm' && *p == 'h') || last_unit == *p))
            return -EINVAL;
        last_unit = *p;
        total += value * scale;
        p++;
        parts++;
    }
    if (!parts)
        return -EINVAL;
    *seconds = total;
    return 0;
}

bool decode_is_name(const char *text)
{
    size_t length = strlen(text);
    if (length < 1 || length > 63)
        return false;
    for (const char *p = text; *p; p++)
        if (!(islower((unsigned char)*p) || isdigit((unsigned char)*p) || *p == '-'))
            return false;
    return true;
}

static bool is_class_name(const char *text)
{
    size_t length = strlen(text);
    if (length < 1 || length > 63)
        return false;
    for (const char *p = text; *p; p++)
        if (!(isalnum((unsigned char)*p) || *p == '-' || *p == '_'))
            return false;
    return true;
}

/* YAML 1.2 core schema for plain scalars. */
static json_t *scalar_to_json(const struct ynode *node)
{
    if (ynode_is_null(node))
        return json_null();
    const char *v = node->value;
    if (!node->plain)
        return json_string(v);
    if (!strcmp(v, "true") || !strcmp(v, "True") || !strcmp(v, "TRUE"))
        return json_true();
    if (!strcmp(v, "false") || !strcmp(v, "False") || !strcmp(v, "FALSE"))
        return json_false();
    char *end;
    errno = 0;
    if (*v && strspn(v, "+-0123456789") == strlen(v)) {
        long long i = strtoll(v, &end, 10);
        if (!*end && errno == 0)
            return json_integer(i);
    }
    if (*v && strspn(v, "+-0123456789.eE") == strlen(v) && strpbrk(v, "0123456789")) {
        errno = 0;
        double d = strtod(v, &end);
        if (!*end && errno == 0 && isfinite(d))
            return json_real(d);
    }
    if (!strcmp(v, ".inf") || !strcmp(v, ".nan") || !strcmp(v, "-.inf"))
        return json_string(v);
    return json_string(v);
}

static json_t *any_to_json(const struct ynode *node)
{
    switch (node->kind) {
    case YNODE_SCALAR:
        return scalar_to_json(node);
    case YNODE_SEQUENCE: {
        json_t *array = json_array();
        for (size_t i = 0; i < node->count; i++)
            json_array_append_new(array, any_to_json(node->items[i]));
        return array;
    }
    case YNODE_MAPPING: {
        json_t *object = json_object();
        for (size_t i = 0; i < node->count; i++)
            json_object_set_new(object, ynode_map_key(node, i)->value,
                                any_to_json(ynode_map_value(node, i)));
        return object;
    }
    }
    return json_null();
}

static const char *json_kind_name(const json_t *value)
{
    switch (json_typeof(value)) {
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    case JSON_NULL:
        return "null";
    default:
        return "a collection";
    }
}

static void format_number(char *out, size_t size, double v)
{
    if (v == floor(v) && fabs(v) < 1e15)
        snprintf(out, size, "%.0f", v);
    else
        snprintf(out, size, "%g", v);
}

static json_t *decode_number(struct decode_context *ctx, const struct ynode *node,
                             const struct field_schema *field, const char *path, bool integer)
{
    const char *wanted = integer ? "an integer" : "a number";
    if (node->kind != YNODE_SCALAR) {
        decode_error(ctx, node, path, "expected %s, got %s", wanted, ynode_kind_name(node));
        return NULL;
    }
    json_t *value = scalar_to_json(node);
    double v;
    if (json_is_integer(value))
        v = (double)json_integer_value(value);
    else if (json_is_real(value) && !integer)
        v = json_real_value(value);
    else {
        decode_error(ctx, node, path, "expected %s, got %s '%s'", wanted, json_kind_name(value),
                     node->value);
        json_decref(value);
        return NULL;
    }
    if (v < field->min || v > field->max) {
        char low[32], high[32];
        format_number(low, sizeof(low), field->min);
        format_number(high, sizeof(high), field->max);
        decode_error(ctx, node, path, "%s is out of range; use a value from %s to %s",
                     node->value, low, high);
        json_decref(value);
        return NULL;
    }
    /* canonical: a whole number is an integer whatever way it was written */
    if (json_is_real(value) && v == floor(v) && fabs(v) < 1e15) {
        json_decref(value);
        value = json_integer((json_int_t)v);
    }
    return value;
}

static json_t *decode_scalar_string(struct decode_context *ctx, const struct ynode *node,
                                    const char *path)
{
    if (node->kind != YNODE_SCALAR || ynode_is_null(node)) {
        decode_error(ctx, node, path, "expected a string, got %s", ynode_kind_name(node));
        return NULL;
    }
    return json_string(node->value);
}

static json_t *decode_named_list(struct decode_context *ctx, const struct ynode *node,
                                 const struct field_schema *field, const char *path)
{
    if (node->kind != YNODE_SEQUENCE) {
        decode_error(ctx, node, path, "expected a list, got %s", ynode_kind_name(node));
        return NULL;
    }
    json_t *array = json_array();
    for (size_t i = 0; i < node->count; i++) {
        const struct ynode *item = node->items[i];
        const struct ynode *name = ynode_map_get(item, "name");
        char key[160], item_path[PATH_SIZE];
        if (name && name->kind == YNODE_SCALAR)
            snprintf(key, sizeof(key), "[%s]", name->value);
        else
            snprintf(key, sizeof(key), "[%zu]", i);
        decode_path_join(item_path, sizeof(item_path), path, key);
        json_t *decoded = decode_object(ctx, item, field->object, item_path);
        if (!decoded)
            continue;
        const char *decoded_name = json_string_value(json_object_get(decoded, "name"));
        for (size_t j = 0; decoded_name && j < json_array_size(array); j++) {
            const char *other = json_string_value(json_object_get(json_array_get(array, j), "name"));
            if (other && !strcmp(other, decoded_name)) {
                decode_error(ctx, name, item_path,
                             "duplicate name '%s'; names must be unique in %s, so rename or "
                             "remove one of them",
                             decoded_name, path);
                break;
            }
        }
        json_array_append_new(array, decoded);
    }
    return array;
}

/* A path goes into HTTP request lines and HAProxy's configuration as it is:
 * no spaces, no control characters. */
static bool path_is_clean(const char *text)
{
    for (const unsigned char *c = (const unsigned char *)text; *c; c++)
        if (*c <= ' ' || *c == 0x7f)
            return false;
    return true;
}

static json_t *decode_field(struct decode_context *ctx, const struct ynode *node,
                            const struct field_schema *field, const char *path)
{
    switch (field->type) {
    case FIELD_STRING:
        return decode_scalar_string(ctx, node, path);
    case FIELD_NAME:
    case FIELD_CLASS_NAME:
    case FIELD_PATH: {
        json_t *value = decode_scalar_string(ctx, node, path);
        if (!value)
            return NULL;
        const char *text = json_string_value(value);
        if (field->type == FIELD_NAME && !decode_is_name(text)) {
            decode_error(ctx, node, path,
                         "'%s' is not a valid name; use 1 to 63 characters from a-z, 0-9 and '-'",
                         text);
        } else if (field->type == FIELD_CLASS_NAME && !is_class_name(text)) {
            decode_error(ctx, node, path,
                         "'%s' is not a valid deployment name; use 1 to 63 characters from "
                         "A-Z, a-z, 0-9, '_' and '-'",
                         text);
        } else if (field->type == FIELD_PATH && text[0] != '/') {
            decode_error(ctx, node, path, "'%s' must start with '/'", text);
        } else if (field->type == FIELD_PATH && !path_is_clean(text)) {
            decode_error(ctx, node, path,
                         "'%s' holds a space or a control character; an HTTP path has neither "
                         "(write a space as %%20)",
                         text);
        } else {
            return value;
        }
        json_decref(value);
        return NULL;
    }
    case FIELD_INT:
        return decode_number(ctx, node, field, path, true);
    case FIELD_NUMBER:
        return decode_number(ctx, node, field, path, false);
    case FIELD_BOOL: {
        json_t *value = node->kind == YNODE_SCALAR ? scalar_to_json(node) : NULL;
        if (value && json_is_boolean(value))
            return value;
        decode_error(ctx, node, path, "expected true or false, got %s%s%s%s",
                     value ? json_kind_name(value) : ynode_kind_name(node), value ? " '" : "",
                     value ? node->value : "", value ? "'" : "");
        json_decref(value);
        return NULL;
    }
    case FIELD_ENUM: {
        json_t *value = decode_scalar_string(ctx, node, path);
        if (!value)
            return NULL;
        size_t count = 0;
        while (field->enum_values[count])
            count++;
        for (size_t i = 0; i < count; i++)
            if (!strcmp(field->enum_values[i], json_string_value(value)))
                return value;
        char choices[256] = "";
        for (size_t i = 0; i < count; i++) {
            strncat(choices, i ? ", " : "", sizeof(choices) - strlen(choices) - 1);
            strncat(choices, field->enum_values[i], sizeof(choices) - strlen(choices) - 1);
        }
        const char *near = decode_suggest(json_string_value(value), field->enum_values, count);
        if (near)
            decode_error(ctx, node, path, "'%s' is not one of %s; did you mean '%s'?",
                         json_string_value(value), choices, near);
        else
            decode_error(ctx, node, path, "'%s' is not one of %s", json_string_value(value),
                         choices);
        json_decref(value);
        return NULL;
    }
    case FIELD_DURATION: {
        if (node->kind != YNODE_SCALAR || ynode_is_null(node)) {
            decode_error(ctx, node, path, "expected a duration such as 90s, 15m or 2h, got %s",
                         ynode_kind_name(node));
            return NULL;
        }
        long long seconds;
        int r = decode_duration(node->value, &seconds);
        if (r < 0) {
            decode_error(ctx, node, path,
                         "'%s' is not a duration; write a number with a unit, such as 90s, 15m, "
                         "2h or 1h30m",
                         node->value);
            return NULL;
        }
        if (seconds < field->min || seconds > field->max) {
            decode_error(ctx, node, path, "%s is out of range; use %.0fs to %.0fs", node->value,
                         field->min, field->max);
            return NULL;
        }
        return json_integer(seconds);
    }
    case FIELD_OBJECT:
        return decode_object(ctx, node, field->object, path);
    case FIELD_NAMED_LIST:
        return decode_named_list(ctx, node, field, path);
    case FIELD_STRING_OR_LIST:
        if (node->kind == YNODE_SCALAR)
            return decode_scalar_string(ctx, node, path);
        /* fall through */
    case FIELD_STRING_LIST:
    case FIELD_INT_LIST: {
        if (node->kind != YNODE_SEQUENCE) {
            decode_error(ctx, node, path, "expected a list, got %s", ynode_kind_name(node));
            return NULL;
        }
        json_t *array = json_array();
        for (size_t i = 0; i < node->count; i++) {
            char item_path[PATH_SIZE], key[32];
            snprintf(key, sizeof(key), "[%zu]", i);
            decode_path_join(item_path, sizeof(item_path), path, key);
            json_t *item = field->type == FIELD_INT_LIST
                               ? decode_number(ctx, node->items[i], field, item_path, true)
                               : decode_scalar_string(ctx, node->items[i], item_path);
            if (item)
                json_array_append_new(array, item);
        }
        return array;
    }
    case FIELD_STRING_MAP: {
        if (node->kind != YNODE_MAPPING) {
            decode_error(ctx, node, path, "expected a mapping, got %s", ynode_kind_name(node));
            return NULL;
        }
        json_t *object = json_object();
        for (size_t i = 0; i < node->count; i++) {
            char item_path[PATH_SIZE];
            decode_path_join(item_path, sizeof(item_path), path, ynode_map_key(node, i)->value);
            json_t *item = decode_scalar_string(ctx, ynode_map_value(node, i), item_path);
            if (item)
                json_object_set_new(object, ynode_map_key(node, i)->value, item);
        }
        return object;
    }
    case FIELD_ANY:
        return any_to_json(node);
    case FIELD_ANY_MAP:
        if (node->kind != YNODE_MAPPING) {
            decode_error(ctx, node, path, "expected a mapping, got %s", ynode_kind_name(node));
            return NULL;
        }
        return any_to_json(node);
    case FIELD_NAME_OR_ANY_MAP:
        if (node->kind == YNODE_MAPPING)
            return any_to_json(node);
        if (node->kind == YNODE_SCALAR && !ynode_is_null(node))
            return json_string(node->value);
        decode_error(ctx, node, path, "expected a name or a mapping, got %s",
                     ynode_kind_name(node));
        return NULL;
    }
    return NULL;
}

json_t *decode_any(const struct ynode *node)
{
    return any_to_json(node);
}

json_t *decode_object(struct decode_context *ctx, const struct ynode *node,
                      const struct object_schema *schema, const char *path)
{
    if (!node || node->kind != YNODE_MAPPING) {
        decode_error(ctx, node, path && *path ? path : "(document)", "expected a mapping, got %s",
                     ynode_kind_name(node));
        return NULL;
    }
    json_t *out = json_object();
    const char *keys[64];
    for (size_t f = 0; f < schema->field_count && f < 64; f++)
        keys[f] = schema->fields[f].key;

    for (size_t i = 0; i < node->count; i++) {
        const struct ynode *key = ynode_map_key(node, i);
        const struct ynode *value = ynode_map_value(node, i);
        char field_path[PATH_SIZE];
        decode_path_join(field_path, sizeof(field_path), path, key->value);
        const struct field_schema *field = NULL;
        for (size_t f = 0; f < schema->field_count; f++)
            if (!strcmp(schema->fields[f].key, key->value))
                field = &schema->fields[f];
        if (!field) {
            const char *near = decode_suggest(key->value, keys, schema->field_count);
            if (near)
                decode_error(ctx, key, field_path, "unknown field '%s'; did you mean '%s'?",
                             key->value, near);
            else
                decode_error(ctx, key, field_path,
                             "unknown field '%s'; remove it or check its spelling", key->value);
            continue;
        }
        if (ynode_is_null(value) && field->type != FIELD_ANY) {
            /* an explicit null means "not set", as in Ray Serve's config */
            if (field->required)
                decode_error(ctx, value, field_path, "must not be empty; give it a value");
            continue;
        }
        json_t *decoded = decode_field(ctx, value, field, field_path);
        if (decoded)
            json_object_set_new(out, field->key, decoded);
    }
    for (size_t f = 0; f < schema->field_count; f++) {
        const struct field_schema *field = &schema->fields[f];
        /* a key that is written and not null was decoded or reported above; an
         * explicit null is "not set" and takes the default like a missing key */
        const struct ynode *written = ynode_map_get(node, field->key);
        if (json_object_get(out, field->key) || (written && !ynode_is_null(written)))
            continue;
        if (field->required) {
            if (written)
                continue; /* null: reported as empty above */
            char field_path[PATH_SIZE];
            decode_path_join(field_path, sizeof(field_path), path, field->key);
            decode_error(ctx, node, field_path, "required field '%s' is missing; add it",
                         field->key);
        } else if (field->default_json) {
            json_t *value = json_loads(field->default_json, JSON_DECODE_ANY, NULL);
            if (value)
                json_object_set_new(out, field->key, value);
        }
    }
    if (schema->check)
        schema->check(ctx, node, out, path);
    return out;
}
