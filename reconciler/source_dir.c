#include "source_dir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "yaml_tree.h"

int source_read_file(const char *path, size_t max, char **out, size_t *length)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    /* a regular file in one read of the size fstat gives (asking for one
     * byte more, to see whether it has grown since) */
    struct stat st;
    size_t capacity = 4096, size = 0;
    if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_size > 0) {
        if ((unsigned long long)st.st_size > max) {
            close(fd);
            return -EFBIG;
        }
        size = (size_t)st.st_size;
        capacity = size + 1;
    }
    size_t used = 0;
    char *buf = malloc(capacity + 1);
    int error = buf ? 0 : -ENOMEM;
    while (!error) {
        ssize_t n = read(fd, buf + used, capacity - used);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            error = -EIO;
            break;
        }
        if (n == 0)
            break;
        used += (size_t)n;
        if (used > max) {
            error = -EFBIG;
            break;
        }
        if (size && used == size)
            break; /* all fstat saw, and no more though more was asked for */
        if (used == capacity) {
            capacity *= 2;
            char *grown = realloc(buf, capacity + 1);
            if (!grown)
                error = -ENOMEM;
            else
                buf = grown;
        }
    }
    close(fd);
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

int source_dir_list(const char *path, char ***files, size_t *count, struct diag *diag)
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

void source_files_free(char **files, size_t count)
{
    for (size_t i = 0; i < count; i++)
        free(files[i]);
    free(files);
}

void source_entry_parse(struct spec_entry *entry, const char *file, int read_status,
                        const char *text, size_t length)
{
    entry->file = strdup(file);
    if (read_status == -EFBIG) {
        diag_add(&entry->errors, file, 0, 0, "",
                 "file is over the limit of %d bytes; refusing it", YAML_TREE_MAX_BYTES);
        return;
    }
    if (read_status < 0) {
        diag_add(&entry->errors, file, 0, 0, "", "cannot read: %s", strerror(-read_status));
        entry->transient = true;
        return;
    }
    entry->spec = spec_parse(text, length, file, &entry->errors);
    entry->name = entry->spec ? strdup(entry->spec->name) : spec_guess_name(text, length);
    for (size_t i = 0; i < entry->errors.count; i++)
        if (!strncmp(entry->errors.entries[i].message, "out of memory", 13))
            entry->transient = true;
    if (entry->spec && !entry->name)
        entry->transient = true;
}

static void stamp_of(const char *file, struct file_stamp *stamp)
{
    struct stat st;
    memset(stamp, 0, sizeof(*stamp));
    if (stat(file, &st) < 0 || !S_ISREG(st.st_mode))
        return;
    stamp->valid = true;
    stamp->dev = st.st_dev;
    stamp->ino = st.st_ino;
    stamp->size = st.st_size;
    stamp->mtime = st.st_mtim;
    stamp->ctime = st.st_ctim;
    clock_gettime(CLOCK_REALTIME, &stamp->taken);
}

static long long stamp_ms(const struct timespec *t)
{
    return (long long)t->tv_sec * 1000 + t->tv_nsec / 1000000;
}

/* File times tick with the kernel's coarse clock (a few ms): two writes in
 * one tick leave the same times. A stamp taken that soon after the file's
 * last change is not trusted ("racy", as git calls it): the file is read
 * again at the next reload. */
#define STAMP_RACY_MS 100

static bool same_stamp(const struct file_stamp *a, const struct file_stamp *b)
{
    long long changed = stamp_ms(&b->mtime) > stamp_ms(&b->ctime) ? stamp_ms(&b->mtime)
                                                                   : stamp_ms(&b->ctime);
    if (changed + STAMP_RACY_MS >= stamp_ms(&b->taken))
        return false;
    return a->valid && b->valid && a->dev == b->dev && a->ino == b->ino && a->size == b->size &&
           a->mtime.tv_sec == b->mtime.tv_sec && a->mtime.tv_nsec == b->mtime.tv_nsec &&
           a->ctime.tv_sec == b->ctime.tv_sec && a->ctime.tv_nsec == b->ctime.tv_nsec;
}

void source_entry_load(struct spec_entry *entry, const char *file)
{
    /* stamped before reading: a write racing the read leaves an older
     * stamp, so the next reload reads the file again */
    stamp_of(file, &entry->stamp);
    char *text = NULL;
    size_t length = 0;
    int r = source_read_file(file, YAML_TREE_MAX_BYTES, &text, &length);
    source_entry_parse(entry, file, r, text, length);
    free(text);
}

void source_entry_clear(struct spec_entry *entry)
{
    free(entry->file);
    free(entry->name);
    spec_free(entry->spec);
    diag_clear(&entry->errors);
    memset(entry, 0, sizeof(*entry));
}

static int compare_entries_by_name(const void *a, const void *b)
{
    const struct spec_entry *x = *(const struct spec_entry *const *)a;
    const struct spec_entry *y = *(const struct spec_entry *const *)b;
    int c = strcmp(x->name, y->name);
    return c ? c : (x > y) - (x < y); /* then file order: entries is one array */
}

int snapshot_index(struct snapshot *snapshot)
{
    free(snapshot->by_name);
    snapshot->by_name = NULL;
    snapshot->named_count = 0;
    struct spec_entry **by_name = calloc(snapshot->count ? snapshot->count : 1, sizeof(*by_name));
    if (!by_name)
        return -ENOMEM;
    size_t n = 0;
    for (size_t i = 0; i < snapshot->count; i++)
        if (snapshot->entries[i].name)
            by_name[n++] = &snapshot->entries[i];
    qsort(by_name, n, sizeof(*by_name), compare_entries_by_name);
    /* one service, one file: after the first file of a name, the others are refused */
    for (size_t first = 0, i; first < n; first = i) {
        for (i = first + 1; i < n && !strcmp(by_name[i]->name, by_name[first]->name); i++) {
            struct spec_entry *entry = by_name[i];
            diag_add(&entry->errors, entry->file, 1, 1, "name",
                     "service '%s' is already defined in %s; give each service its own name",
                     entry->name, by_name[first]->file);
            spec_free(entry->spec);
            entry->spec = NULL;
            entry->duplicate = true;
        }
    }
    snapshot->by_name = by_name;
    snapshot->named_count = n;
    return 0;
}

int source_dir_load(const char *path, struct snapshot *out, struct diag *diag)
{
    return source_dir_reload(path, NULL, out, diag);
}

size_t snapshot_reusable(const struct snapshot *previous, size_t *at, const char *file)
{
    size_t count = previous ? previous->count : 0;
    while (*at < count &&
           (!previous->entries[*at].file || strcmp(previous->entries[*at].file, file) < 0))
        (*at)++;
    if (*at >= count || strcmp(previous->entries[*at].file, file) != 0)
        return 0;
    const struct spec_entry *before = &previous->entries[(*at)++];
    return before->duplicate || before->transient ? 0 : *at;
}

void snapshot_settle_taken(struct snapshot *out, struct snapshot *previous, const size_t *taken,
                           bool ok)
{
    for (size_t i = 0; taken && i < out->count; i++) {
        if (!taken[i])
            continue;
        if (ok)
            memset(&previous->entries[taken[i] - 1], 0, sizeof(*previous->entries));
        else
            memset(&out->entries[i], 0, sizeof(*out->entries));
    }
}

int source_dir_reload(const char *path, struct snapshot *previous, struct snapshot *out,
                      struct diag *diag)
{
    char **files;
    size_t count;
    memset(out, 0, sizeof(*out));
    int r = source_dir_list(path, &files, &count, diag);
    if (r < 0)
        return r;
    out->entries = calloc(count ? count : 1, sizeof(*out->entries));
    size_t *taken = previous ? calloc(count ? count : 1, sizeof(*taken)) : NULL;
    if (!out->entries || (previous && !taken)) {
        free(out->entries);
        free(taken);
        out->entries = NULL;
        source_files_free(files, count);
        return -ENOMEM;
    }
    /* Entries are copied, and previous gives them up only once out is
     * complete, so a failure leaves previous whole. */
    size_t at = 0;
    for (size_t i = 0; i < count; i++) {
        struct spec_entry *entry = &out->entries[out->count++];
        size_t before = snapshot_reusable(previous, &at, files[i]);
        if (before) {
            struct file_stamp now;
            stamp_of(files[i], &now);
            if (same_stamp(&now, &previous->entries[before - 1].stamp)) {
                *entry = previous->entries[before - 1];
                taken[i] = before;
                continue;
            }
        }
        source_entry_load(entry, files[i]);
    }
    source_files_free(files, count);
    r = snapshot_index(out);
    snapshot_settle_taken(out, previous, taken, r == 0);
    free(taken);
    if (r < 0) {
        snapshot_clear(out);
        return -ENOMEM;
    }
    return 0;
}

void snapshot_clear(struct snapshot *snapshot)
{
    for (size_t i = 0; i < snapshot->count; i++)
        source_entry_clear(&snapshot->entries[i]);
    free(snapshot->entries);
    free(snapshot->by_name);
    memset(snapshot, 0, sizeof(*snapshot));
}

const struct spec_entry *snapshot_find(const struct snapshot *snapshot, const char *name)
{
    if (!snapshot->by_name) {
        for (size_t i = 0; i < snapshot->count; i++)
            if (snapshot->entries[i].name && !strcmp(snapshot->entries[i].name, name))
                return &snapshot->entries[i];
        return NULL;
    }
    /* the leftmost of the entries of that name: the first in file order */
    size_t low = 0, high = snapshot->named_count;
    while (low < high) {
        size_t mid = low + (high - low) / 2;
        if (strcmp(snapshot->by_name[mid]->name, name) < 0)
            low = mid + 1;
        else
            high = mid;
    }
    return low < snapshot->named_count && !strcmp(snapshot->by_name[low]->name, name)
               ? snapshot->by_name[low]
               : NULL;
}

int source_dir_load_policies(const char *dir, struct policy_set *set, struct diag *diag)
{
    char **files;
    size_t count;
    int r = source_dir_list(dir, &files, &count, diag);
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
    source_files_free(files, count);
    return 0;
}
