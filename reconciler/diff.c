#include "diff.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PATH_SIZE 512

static int change_add(struct change_list *list, const char *path, enum change_kind kind)
{
    if (list->count == list->capacity) {
        size_t capacity = list->capacity ? list->capacity * 2 : 8;
        struct change *grown = realloc(list->items, capacity * sizeof(*grown));
        if (!grown)
            return -ENOMEM;
        list->items = grown;
        list->capacity = capacity;
    }
    char *copy = strdup(path);
    if (!copy)
        return -ENOMEM;
    list->items[list->count].path = copy;
    list->items[list->count].kind = kind;
    list->count++;
    return 0;
}

static bool is_opaque(const char *key)
{
    static const char *const opaque[] = {"user_config", "runtime_env", "args",   "env_vars",
                                         "tags",        "compute_config", "command", "env",
                                         "resources", "ray"};
    for (size_t i = 0; i < sizeof(opaque) / sizeof(opaque[0]); i++)
        if (!strcmp(key, opaque[i]))
            return true;
    return false;
}

static bool is_named_list(const json_t *value)
{
    if (!json_is_array(value) || json_array_size(value) == 0)
        return false;
    size_t i;
    json_t *item;
    json_array_foreach(value, i, item) if (!json_is_string(json_object_get(item, "name"))) return false;
    return true;
}

static json_t *find_named(const json_t *array, const char *name)
{
    size_t i;
    json_t *item;
    json_array_foreach(array, i, item)
    {
        const char *n = json_string_value(json_object_get(item, "name"));
        if (n && !strcmp(n, name))
            return item;
    }
    return NULL;
}

static int diff_value(const json_t *a, const json_t *b, const char *path, const char *key,
                      struct change_list *out);

static int diff_named_lists(const json_t *a, const json_t *b, const char *path,
                            struct change_list *out)
{
    char item_path[PATH_SIZE];
    size_t i;
    json_t *item;
    int r;
    json_array_foreach(a, i, item)
    {
        const char *name = json_string_value(json_object_get(item, "name"));
        snprintf(item_path, sizeof(item_path), "%s[%s]", path, name);
        json_t *other = find_named(b, name);
        r = other ? diff_value(item, other, item_path, "", out)
                  : change_add(out, item_path, CHANGE_REMOVED);
        if (r < 0)
            return r;
    }
    json_array_foreach(b, i, item)
    {
        const char *name = json_string_value(json_object_get(item, "name"));
        if (find_named(a, name))
            continue;
        snprintf(item_path, sizeof(item_path), "%s[%s]", path, name);
        if ((r = change_add(out, item_path, CHANGE_ADDED)) < 0)
            return r;
    }
    return 0;
}

static int diff_value(const json_t *a, const json_t *b, const char *path, const char *key,
                      struct change_list *out)
{
    if (json_is_object(a) && json_is_object(b) && !is_opaque(key)) {
        /* union of keys, in a stable order: a's keys then b's new ones */
        const char *k;
        json_t *v;
        char child[PATH_SIZE];
        int r;
        json_object_foreach((json_t *)a, k, v)
        {
            snprintf(child, sizeof(child), "%s%s%s", path, *path ? "." : "", k);
            json_t *w = json_object_get(b, k);
            r = w ? diff_value(v, w, child, k, out) : change_add(out, child, CHANGE_REMOVED);
            if (r < 0)
                return r;
        }
        json_object_foreach((json_t *)b, k, v)
        {
            if (json_object_get(a, k))
                continue;
            snprintf(child, sizeof(child), "%s%s%s", path, *path ? "." : "", k);
            if ((r = change_add(out, child, CHANGE_ADDED)) < 0)
                return r;
        }
        return 0;
    }
    if (is_named_list(a) && is_named_list(b) && !is_opaque(key))
        return diff_named_lists(a, b, path, out);
    if (json_equal((json_t *)a, (json_t *)b))
        return 0;
    return change_add(out, path, CHANGE_MODIFIED);
}

int diff_documents(const json_t *old_doc, const json_t *new_doc, struct change_list *out)
{
    return diff_value(old_doc, new_doc, "", "", out);
}

void change_list_clear(struct change_list *list)
{
    for (size_t i = 0; i < list->count; i++)
        free(list->items[i].path);
    free(list->items);
    list->items = NULL;
    list->count = list->capacity = 0;
}

const char *change_kind_name(enum change_kind kind)
{
    switch (kind) {
    case CHANGE_ADDED:
        return "added";
    case CHANGE_REMOVED:
        return "removed";
    default:
        return "modified";
    }
}
