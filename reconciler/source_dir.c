#include "source_dir.h"

#include <dirent.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "yaml_tree.h"

int source_read_file(const char *path, size_t max, char **out, size_t *length)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -errno;
    size_t capacity = 4096, used = 0;
    char *buf = malloc(capacity + 1);
    while (buf) {
        size_t n = fread(buf + used, 1, capacity - used, f);
        used += n;
        if (used > max) {
            free(buf);
            fclose(f);
            return -EFBIG;
        }
        if (n == 0)
            break;
        if (used == capacity) {
            capacity *= 2;
            char *grown = realloc(buf, capacity + 1);
            if (!grown) {
                free(buf);
                buf = NULL;
            }
            buf = grown;
        }
    }
    int error = ferror(f) ? -EIO : 0;
    fclose(f);
    if (!buf)
        return -ENOMEM;
    if (error) {
        free(buf);
        return error;
    }
    buf[used] = 0;
    *out = buf;
    *length = used;
    return 0;
}

static bool is_yaml_name(const char *name)
{
    size_t n = strlen(name);
    if (name[0] == '.')
        return false;
    return (n > 5 && !strcmp(name + n - 5, ".yaml")) || (n > 4 && !strcmp(name + n - 4, ".yml"));
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted list of the YAML files of dir (or dir itself when it is a file). */
static int list_files(const char *path, char ***files, size_t *count, struct diag *diag)
{
    struct stat st;
    *files = NULL;
    *count = 0;
    if (stat(path, &st) < 0) {
        int error = errno;
        diag_add(diag, path, 0, 0, "", "cannot read: %s", strerror(error));
        return -error;
    }
    if (!S_ISDIR(st.st_mode)) {
        *files = calloc(1, sizeof(char *));
        if (!*files || !((*files)[0] = strdup(path)))
            return -ENOMEM;
        *count = 1;
        return 0;
    }
    DIR *dir = opendir(path);
    if (!dir) {
        int error = errno;
        diag_add(diag, path, 0, 0, "", "cannot open directory: %s", strerror(error));
        return -error;
    }
    size_t capacity = 0;
    struct dirent *entry;
    while ((entry = readdir(dir))) {
        if (!is_yaml_name(entry->d_name))
            continue;
        if (*count == capacity) {
            capacity = capacity ? capacity * 2 : 16;
            char **grown = realloc(*files, capacity * sizeof(*grown));
            if (!grown)
                break;
            *files = grown;
        }
        size_t n = strlen(path) + strlen(entry->d_name) + 2;
        char *full = malloc(n);
        if (!full)
            break;
        snprintf(full, n, "%s%s%s", path, path[strlen(path) - 1] == '/' ? "" : "/", entry->d_name);
        (*files)[(*count)++] = full;
    }
    closedir(dir);
    if (*count)
        qsort(*files, *count, sizeof(char *), compare_names);
    return 0;
}

static void free_files(char **files, size_t count)
{
    for (size_t i = 0; i < count; i++)
        free(files[i]);
    free(files);
}

static void load_entry(struct spec_entry *entry, const char *file)
{
    char *text = NULL;
    size_t length = 0;
    entry->file = strdup(file);
    int r = source_read_file(file, YAML_TREE_MAX_BYTES, &text, &length);
    if (r == -EFBIG) {
        diag_add(&entry->errors, file, 0, 0, "",
                 "file is over the limit of %d bytes; refusing it", YAML_TREE_MAX_BYTES);
        return;
    }
    if (r < 0) {
        diag_add(&entry->errors, file, 0, 0, "", "cannot read: %s", strerror(-r));
        return;
    }
    entry->spec = spec_parse(text, length, file, &entry->errors);
    entry->name = entry->spec ? strdup(entry->spec->name) : spec_guess_name(text, length);
    free(text);
}

int source_dir_load(const char *path, struct snapshot *out, struct diag *diag)
{
    char **files;
    size_t count;
    memset(out, 0, sizeof(*out));
    int r = list_files(path, &files, &count, diag);
    if (r < 0)
        return r;
    out->entries = calloc(count ? count : 1, sizeof(*out->entries));
    if (!out->entries) {
        free_files(files, count);
        return -ENOMEM;
    }
    for (size_t i = 0; i < count; i++) {
        struct spec_entry *entry = &out->entries[out->count++];
        load_entry(entry, files[i]);
        /* one service, one file: a second file with the same name is refused */
        for (size_t j = 0; entry->name && j + 1 < out->count; j++) {
            struct spec_entry *other = &out->entries[j];
            if (!other->name || strcmp(other->name, entry->name) != 0)
                continue;
            diag_add(&entry->errors, entry->file, 1, 1, "name",
                     "service '%s' is already defined in %s; give each service its own name",
                     entry->name, other->file);
            spec_free(entry->spec);
            entry->spec = NULL;
            break;
        }
    }
    free_files(files, count);
    return 0;
}

void snapshot_clear(struct snapshot *snapshot)
{
    for (size_t i = 0; i < snapshot->count; i++) {
        free(snapshot->entries[i].file);
        free(snapshot->entries[i].name);
        spec_free(snapshot->entries[i].spec);
        diag_clear(&snapshot->entries[i].errors);
    }
    free(snapshot->entries);
    memset(snapshot, 0, sizeof(*snapshot));
}

const struct spec_entry *snapshot_find(const struct snapshot *snapshot, const char *name)
{
    for (size_t i = 0; i < snapshot->count; i++)
        if (snapshot->entries[i].name && !strcmp(snapshot->entries[i].name, name))
            return &snapshot->entries[i];
    return NULL;
}

int source_dir_load_policies(const char *dir, struct policy_set *set, struct diag *diag)
{
    char **files;
    size_t count;
    int r = list_files(dir, &files, &count, diag);
    if (r < 0)
        return r;
    for (size_t i = 0; i < count; i++) {
        char *text = NULL;
        size_t length = 0;
        r = source_read_file(files[i], YAML_TREE_MAX_BYTES, &text, &length);
        if (r < 0) {
            diag_add(diag, files[i], 0, 0, "", "cannot read: %s", strerror(-r));
            continue;
        }
        struct policy *policy = policy_parse(text, length, files[i], diag);
        free(text);
        if (!policy)
            continue;
        if (policy_set_find(set, policy->name)) {
            diag_add(diag, files[i], 1, 1, "name", "policy '%s' is defined twice", policy->name);
            policy_free(policy);
            continue;
        }
        if (policy_set_add(set, policy) < 0)
            policy_free(policy);
    }
    free_files(files, count);
    return 0;
}
