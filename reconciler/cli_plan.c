/*
 * rolld plan NEW --against OLD: what applying NEW over OLD would do.
 *
 * The plans are those of plan_set_compute over the two directories, in the
 * same order, written without holding either directory in memory, so that
 * time and memory do not grow faster than the number of services:
 *
 * - The files of NEW and OLD are grouped by the service name their file name
 *   suggests (chat.yaml, chat.yml: chat). Each group is read, parsed and
 *   planned on its own (plan_set_compute over the group's files), by as many
 *   threads as there are CPUs, and its plans are written at once to a spool,
 *   an unlinked temporary file; only a record per plan (name, file, action,
 *   where its text is) and the service name each file defines stay behind.
 * - A file of OLD with the same text as the file of the same name in NEW is
 *   not parsed again: its spec is made from the new one's document.
 * - The file name is only a guess. A group planned alone gets the plans the
 *   whole directories would give it as long as every service it defines is
 *   defined in no other group (files are matched by service name, and by
 *   file name only between files of the same name). Once every file has been
 *   read, groups that share a service name (a file renamed, a name copied
 *   into another file) are planned again together and replace their plans.
 * - At the end the records are sorted as plan_set_compute sorts plans (by
 *   service name, then file) and the text of each plan is copied from the
 *   spool, in that order, between the list's header and its summary.
 *
 * When no temporary file can be made, the directories are loaded whole and
 * planned with plan_set_compute, as the agent does.
 *
 * rolld plan --repo PATH [--base REV] [--head REV] [--dir D] plans the specs
 * of two revisions of a Git repository (read from its objects, not from a
 * work tree) the same way: both snapshots are loaded whole (a revision is in
 * memory anyway once libgit2 has read it) and written by plan_list_write,
 * which writes what the streaming writer writes, plus the two commits
 * (a header line in text and markdown, "base_commit" and "head_commit" in
 * JSON). File names are the repository's paths, "services/chat.yaml".
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "cli.h"
#include "plan_output.h"
#include "plan_set.h"
#include "source_dir.h"
#include "source_git.h"
#include "yaml_tree.h"

#define PLAN_MAX_THREADS 8
#define PLAN_GROUPS_PER_TAKE 16    /* groups a thread takes at once */
#define PLAN_GROUPS_PER_THREAD 64  /* fewer groups than this per thread: fewer threads */
#define SPOOL_WINDOW (256 * 1024)  /* bytes read back from a spool at once */

enum spool_part { PART_ITEM, PART_DETAILS, PART_COUNT };

struct plan_file {
    char *path;
    char *key;  /* the service name the file name suggests, until the groups are made */
    char *name; /* the service name the file defines, once read; NULL when none */
    size_t group;
};

struct file_side {
    struct plan_file *files; /* sorted by key, then path */
    size_t count;
};

struct plan_group {
    size_t new_first, new_count, old_first, old_count;
};

struct plan_record {
    /* the name and path as the files keep them, or copies when owned */
    const char *name, *file;
    bool owned;
    enum plan_action action;
    size_t group;
    size_t worker;
    off_t offset[PART_COUNT];
    size_t length[PART_COUNT];
};

struct plan_run {
    enum plan_format format;
    const struct policy_set *policies;
    bool against;
    struct file_side next, current;
    struct plan_group *groups;
    size_t group_count;
    size_t next_group; /* the next group a thread takes; atomic */
};

struct plan_worker {
    struct plan_run *run;
    size_t index;
    pthread_t thread;
    bool started;
    FILE *spool[PART_COUNT];
    char *spool_buffer[PART_COUNT];
    off_t spool_size[PART_COUNT];
    FILE *scratch; /* one part of one plan, before it goes to its spool */
    char *scratch_text;
    size_t scratch_length;
    struct plan_record *records;
    size_t record_count, record_capacity;
    int error;
};

/* ---- spools: the text of the plans, out of memory until it is put in order ---- */

/* buffer: SPOOL_WINDOW bytes, which the caller frees after fclose */
static FILE *spool_open(char *buffer)
{
    const char *dir = getenv("TMPDIR");
    if (!dir || !*dir)
        dir = "/tmp";
    int fd = open(dir, O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
    if (fd < 0) {
        char path[PATH_MAX];
        snprintf(path, sizeof(path), "%s/rolld-plan-XXXXXX", dir);
        fd = mkstemp(path);
        if (fd >= 0)
            unlink(path);
    }
    FILE *f = fd < 0 ? tmpfile() : fdopen(fd, "w+");
    if (!f && fd >= 0)
        close(fd);
    if (f && buffer)
        setvbuf(f, buffer, _IOFBF, SPOOL_WINDOW); /* megabytes go through it */
    return f;
}

/* Reads one spool front to back, a window at a time. */
struct spool_reader {
    int fd;
    off_t start;
    size_t size;
    char *buf;
    size_t capacity;
};

/* Copies length bytes at offset to out. 0, -ENOMEM or -EIO. */
static int spool_copy(struct spool_reader *r, off_t offset, size_t length, FILE *out)
{
    if (length == 0)
        return 0;
    if (offset < r->start || offset + (off_t)length > r->start + (off_t)r->size) {
        size_t want = length > SPOOL_WINDOW ? length : SPOOL_WINDOW;
        if (want > r->capacity) {
            char *grown = realloc(r->buf, want);
            if (!grown)
                return -ENOMEM;
            r->buf = grown;
            r->capacity = want;
        }
        size_t got = 0;
        while (got < want) {
            ssize_t n = pread(r->fd, r->buf + got, want - got, offset + (off_t)got);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                break;
            got += (size_t)n;
        }
        r->start = offset;
        r->size = got;
        if (got < length)
            return -EIO;
    }
    fwrite(r->buf + (offset - r->start), 1, length, out);
    return 0;
}

/* ---- the files, grouped by the service name their file name suggests ---- */

static char *file_key(const char *path)
{
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    size_t n = strlen(base);
    if (n > 5 && !strcmp(base + n - 5, ".yaml"))
        n -= 5;
    else if (n > 4 && !strcmp(base + n - 4, ".yml"))
        n -= 4;
    return strndup(base, n);
}

static int compare_files_by_key(const void *a, const void *b)
{
    const struct plan_file *x = a, *y = b;
    int c = strcmp(x->key, y->key);
    return c ? c : strcmp(x->path, y->path);
}

static int compare_file_pointers_by_path(const void *a, const void *b)
{
    return strcmp((*(struct plan_file *const *)a)->path, (*(struct plan_file *const *)b)->path);
}

static void file_side_clear(struct file_side *side)
{
    for (size_t i = 0; i < side->count; i++) {
        free(side->files[i].path);
        free(side->files[i].key);
        free(side->files[i].name);
    }
    free(side->files);
    memset(side, 0, sizeof(*side));
}

/* Takes the paths (files becomes owned by side). */
static int file_side_fill(struct file_side *side, char **paths, size_t count)
{
    side->files = calloc(count ? count : 1, sizeof(*side->files));
    if (!side->files) {
        source_files_free(paths, count);
        return -ENOMEM;
    }
    int r = 0;
    for (size_t i = 0; i < count; i++) {
        side->files[i].path = paths[i];
        side->files[i].key = file_key(paths[i]);
        if (!side->files[i].key)
            r = -ENOMEM;
    }
    side->count = count;
    free(paths);
    if (r == 0)
        qsort(side->files, count, sizeof(*side->files), compare_files_by_key);
    return r;
}

static int groups_build(struct plan_run *run)
{
    const struct file_side *next = &run->next, *current = &run->current;
    run->groups = calloc(next->count + current->count + 1, sizeof(*run->groups));
    if (!run->groups)
        return -ENOMEM;
    size_t i = 0, j = 0;
    while (i < next->count || j < current->count) {
        const char *key = i == next->count                ? current->files[j].key
                          : j == current->count           ? next->files[i].key
                          : strcmp(next->files[i].key, current->files[j].key) <= 0
                              ? next->files[i].key
                              : current->files[j].key;
        size_t id = run->group_count++;
        struct plan_group *group = &run->groups[id];
        group->new_first = i;
        for (; i < next->count && !strcmp(next->files[i].key, key); i++)
            next->files[i].group = id;
        group->new_count = i - group->new_first;
        group->old_first = j;
        for (; j < current->count && !strcmp(current->files[j].key, key); j++)
            current->files[j].group = id;
        group->old_count = j - group->old_first;
    }
    /* the keys have done their work */
    for (size_t k = 0; k < next->count; k++) {
        free(next->files[k].key);
        next->files[k].key = NULL;
    }
    for (size_t k = 0; k < current->count; k++) {
        free(current->files[k].key);
        current->files[k].key = NULL;
    }
    return 0;
}

/* ---- planning files together ---- */

static const char *base_name(const char *path)
{
    const char *slash = strrchr(path, '/');
    return slash ? slash + 1 : path;
}

static void record_clear(struct plan_record *record)
{
    if (record->owned) {
        free((char *)record->name);
        free((char *)record->file);
    }
}

/* The string equal to text among the files' names (path false) or paths,
 * which live as long as the records; NULL when there is none. */
static const char *file_string(struct plan_file **files, size_t count, bool path, const char *text)
{
    for (size_t i = 0; i < count; i++) {
        const char *s = path ? files[i]->path : files[i]->name;
        if (s && !strcmp(s, text))
            return s;
    }
    return NULL;
}

#define PLAN_UNKNOWN_NAME "(unknown)" /* plan_set's name for a file without one */
#define RECORD_LOOKUP_FILES 16 /* beyond: a record keeps copies, not a search per plan */

/* Records plan, planned from these files, and writes its text to the spools. */
static int worker_record(struct plan_worker *w, const struct service_plan *plan, size_t group,
                         struct plan_file **files, size_t file_count)
{
    if (w->record_count == w->record_capacity) {
        size_t capacity = w->record_capacity ? w->record_capacity * 2 : 256;
        struct plan_record *grown = realloc(w->records, capacity * sizeof(*grown));
        if (!grown)
            return -ENOMEM;
        w->records = grown;
        w->record_capacity = capacity;
    }
    struct plan_record *record = &w->records[w->record_count];
    memset(record, 0, sizeof(*record));
    if (file_count <= RECORD_LOOKUP_FILES) {
        record->name = !strcmp(plan->name, PLAN_UNKNOWN_NAME)
                           ? PLAN_UNKNOWN_NAME
                           : file_string(files, file_count, false, plan->name);
        record->file = file_string(files, file_count, true, plan->file);
    }
    if (!record->name || !record->file) {
        record->owned = true;
        record->name = strdup(plan->name);
        record->file = strdup(plan->file);
        if (!record->name || !record->file) {
            record_clear(record);
            return -ENOMEM;
        }
    }
    record->action = plan->action;
    record->group = group;
    record->worker = w->index;
    enum plan_format format = w->run->format;
    for (int part = 0; part < PART_COUNT; part++) {
        if (part == PART_DETAILS && format != PLAN_FORMAT_MARKDOWN)
            continue;
        /* written apart first, to know its length without asking the spool */
        rewind(w->scratch);
        if (part == PART_ITEM)
            plan_output_item(plan, format, w->scratch);
        else
            plan_output_details(plan, format, w->scratch);
        int r = fflush(w->scratch) == 0 ? 0 : -ENOMEM;
        if (r == 0 && w->scratch_length &&
            fwrite(w->scratch_text, 1, w->scratch_length, w->spool[part]) != w->scratch_length)
            r = -EIO;
        if (r < 0) {
            record_clear(record);
            return r;
        }
        record->offset[part] = w->spool_size[part];
        record->length[part] = w->scratch_length;
        w->spool_size[part] += (off_t)w->scratch_length;
    }
    w->record_count++;
    return 0;
}

/* An entry of OLD whose text is that of a valid entry of NEW: the same spec
 * from the same document, under its own file. */
static int entry_copy(struct spec_entry *copy, const struct spec_entry *entry, const char *file)
{
    copy->file = strdup(file);
    copy->name = strdup(entry->name);
    copy->spec = spec_with_file(entry->spec, file);
    if (!copy->file || !copy->name || !copy->spec) {
        source_entry_clear(copy);
        return -ENOMEM;
    }
    return 0;
}

struct file_text {
    char *text;
    size_t length;
    int status; /* source_read_file's */
};

/* Reads, parses and plans these files, the new_count of NEW then the
 * old_count of OLD, each side in file order, as plan_set_compute would plan
 * directories holding only them, and records the plans under group. Notes
 * the service name of every file. */
static int plan_files(struct plan_worker *w, struct plan_file **files, size_t new_count,
                      size_t old_count, size_t group)
{
    struct plan_run *run = w->run;
    struct plan_file **news = files, **olds = files + new_count;
    struct snapshot next = {0}, current = {0};
    struct file_text *texts = calloc(new_count ? new_count : 1, sizeof(*texts));
    next.entries = calloc(new_count ? new_count : 1, sizeof(*next.entries));
    current.entries = calloc(old_count ? old_count : 1, sizeof(*current.entries));
    struct service_plan *plans = NULL;
    size_t count = 0;
    int r = texts && next.entries && current.entries ? 0 : -ENOMEM;
    for (size_t i = 0; r == 0 && i < new_count; i++) {
        texts[i].status =
            source_read_file(news[i]->path, YAML_TREE_MAX_BYTES, &texts[i].text, &texts[i].length);
        source_entry_parse(&next.entries[next.count++], news[i]->path, texts[i].status,
                           texts[i].text, texts[i].length);
    }
    for (size_t j = 0; r == 0 && j < old_count; j++) {
        struct file_text old = {NULL, 0, 0};
        old.status = source_read_file(olds[j]->path, YAML_TREE_MAX_BYTES, &old.text, &old.length);
        struct spec_entry *entry = &current.entries[current.count++];
        bool copied = false;
        for (size_t i = 0; !copied && old.status == 0 && i < new_count; i++)
            if (texts[i].status == 0 && next.entries[i].spec && texts[i].length == old.length &&
                !strcmp(base_name(news[i]->path), base_name(olds[j]->path)) &&
                !memcmp(texts[i].text, old.text, old.length))
                copied = entry_copy(entry, &next.entries[i], olds[j]->path) == 0;
        if (!copied)
            source_entry_parse(entry, olds[j]->path, old.status, old.text, old.length);
        free(old.text);
    }
    for (size_t i = 0; texts && i < new_count; i++)
        free(texts[i].text);
    free(texts);
    if (r == 0 && (snapshot_index(&next) < 0 || snapshot_index(&current) < 0))
        r = -ENOMEM;
    for (size_t i = 0; r == 0 && i < next.count; i++)
        if (next.entries[i].name && !news[i]->name && !(news[i]->name = strdup(next.entries[i].name)))
            r = -ENOMEM;
    for (size_t j = 0; r == 0 && j < current.count; j++)
        if (current.entries[j].name && !olds[j]->name &&
            !(olds[j]->name = strdup(current.entries[j].name)))
            r = -ENOMEM;
    if (r == 0)
        r = plan_set_compute(&next, run->against ? &current : NULL, run->policies, &plans, &count);
    for (size_t i = 0; r == 0 && i < count; i++)
        r = worker_record(w, &plans[i], group, files, new_count + old_count);
    plan_set_free(plans, count);
    snapshot_clear(&next);
    snapshot_clear(&current);
    return r;
}

static int plan_group(struct plan_worker *w, size_t id)
{
    const struct plan_run *run = w->run;
    const struct plan_group *group = &run->groups[id];
    struct plan_file **files = calloc(group->new_count + group->old_count + 1, sizeof(*files));
    if (!files)
        return -ENOMEM;
    for (size_t i = 0; i < group->new_count; i++)
        files[i] = &run->next.files[group->new_first + i];
    for (size_t j = 0; j < group->old_count; j++)
        files[group->new_count + j] = &run->current.files[group->old_first + j];
    int r = plan_files(w, files, group->new_count, group->old_count, id);
    free(files);
    return r;
}

static void *worker_main(void *data)
{
    struct plan_worker *w = data;
    struct plan_run *run = w->run;
    while (!w->error) {
        size_t first = __atomic_fetch_add(&run->next_group, PLAN_GROUPS_PER_TAKE, __ATOMIC_RELAXED);
        for (size_t id = first; !w->error && id < first + PLAN_GROUPS_PER_TAKE; id++) {
            if (id >= run->group_count)
                return NULL;
            w->error = plan_group(w, id);
        }
    }
    return NULL;
}

static size_t thread_count(size_t groups)
{
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof(set), &set) == 0)
        cpus = CPU_COUNT(&set);
    size_t n = cpus < 1 ? 1 : cpus > PLAN_MAX_THREADS ? PLAN_MAX_THREADS : (size_t)cpus;
    while (n > 1 && groups / n < PLAN_GROUPS_PER_THREAD)
        n--;
    return n;
}

/* ---- groups that share a service name, planned again together ---- */

static size_t group_root(size_t *parent, size_t id)
{
    while (parent[id] != id)
        id = parent[id] = parent[parent[id]];
    return id;
}

static int compare_named_files(const void *a, const void *b)
{
    const struct plan_file *x = *(struct plan_file *const *)a, *y = *(struct plan_file *const *)b;
    int c = strcmp(x->name, y->name);
    return c ? c : (x->group > y->group) - (x->group < y->group);
}

/* Marks in replaced[] the groups planned again, and records their plans
 * under ids from run->group_count on. */
static int plan_shared_names(struct plan_worker *w, bool *replaced)
{
    struct plan_run *run = w->run;
    size_t total = run->next.count + run->current.count;
    struct plan_file **named = calloc(total + 1, sizeof(*named));
    size_t *parent = calloc(run->group_count + 1, sizeof(*parent));
    struct plan_file **files = calloc(total + 1, sizeof(*files));
    if (!named || !parent || !files) {
        free(named);
        free(parent);
        free(files);
        return -ENOMEM;
    }
    size_t n = 0;
    const struct file_side *sides[2] = {&run->next, &run->current};
    for (int s = 0; s < 2; s++)
        for (size_t i = 0; i < sides[s]->count; i++)
            if (sides[s]->files[i].name)
                named[n++] = &sides[s]->files[i];
    qsort(named, n, sizeof(*named), compare_named_files);
    for (size_t g = 0; g < run->group_count; g++)
        parent[g] = g;
    for (size_t i = 1; i < n; i++)
        if (!strcmp(named[i]->name, named[i - 1]->name) && named[i]->group != named[i - 1]->group)
            parent[group_root(parent, named[i]->group)] = group_root(parent, named[i - 1]->group);
    for (size_t g = 0; g < run->group_count; g++)
        replaced[g] = group_root(parent, g) != g;
    for (size_t g = 0; g < run->group_count; g++)
        if (replaced[g])
            replaced[group_root(parent, g)] = true;
    int r = 0;
    size_t extra = run->group_count;
    for (size_t root = 0; r == 0 && root < run->group_count; root++) {
        if (!replaced[root] || group_root(parent, root) != root)
            continue;
        /* every file of the groups joined to root, each side in file order */
        size_t new_count = 0, old_count = 0;
        for (int s = 0; s < 2; s++) {
            size_t first = s ? new_count : 0, k = first;
            for (size_t i = 0; i < sides[s]->count; i++)
                if (group_root(parent, sides[s]->files[i].group) == root)
                    files[k++] = &sides[s]->files[i];
            qsort(files + first, k - first, sizeof(*files), compare_file_pointers_by_path);
            if (s == 0)
                new_count = k;
            else
                old_count = k - first;
        }
        r = plan_files(w, files, new_count, old_count, extra++);
    }
    free(named);
    free(parent);
    free(files);
    return r;
}

/* ---- the list, in order ---- */

static int compare_records(const void *a, const void *b)
{
    const struct plan_record *x = *(const struct plan_record *const *)a;
    const struct plan_record *y = *(const struct plan_record *const *)b;
    int c = strcmp(x->name, y->name);
    return c ? c : strcmp(x->file, y->file);
}

/* Writes the list; *invalid tells whether a plan is invalid. */
static int write_records(struct plan_worker *workers, size_t worker_count, const bool *replaced,
                         enum plan_format format, FILE *out, bool *invalid)
{
    size_t total = 0;
    for (size_t w = 0; w < worker_count; w++)
        total += workers[w].record_count;
    const struct plan_record **order = calloc(total + 1, sizeof(*order));
    struct spool_reader *readers = calloc(worker_count * PART_COUNT, sizeof(*readers));
    int r = order && readers ? 0 : -ENOMEM;
    size_t count = 0;
    for (size_t w = 0; r == 0 && w < worker_count; w++) {
        for (int part = 0; part < PART_COUNT; part++) {
            if (fflush(workers[w].spool[part]) != 0)
                r = -EAGAIN; /* nothing written yet: the caller plans in memory */
            readers[w * PART_COUNT + part].fd = fileno(workers[w].spool[part]);
        }
        for (size_t i = 0; i < workers[w].record_count; i++) {
            const struct plan_record *record = &workers[w].records[i];
            if (record->group >= workers->run->group_count || !replaced[record->group])
                order[count++] = record;
        }
    }
    if (r == 0)
        qsort(order, count, sizeof(*order), compare_records);
    struct plan_summary summary = {0};
    if (r == 0)
        plan_output_begin(format, out);
    for (size_t i = 0; r == 0 && i < count; i++) {
        const struct plan_record *record = order[i];
        bool item = record->length[PART_ITEM] > 0;
        if (item) {
            plan_output_separator(format, &summary, out);
            r = spool_copy(&readers[record->worker * PART_COUNT + PART_ITEM],
                           record->offset[PART_ITEM], record->length[PART_ITEM], out);
        }
        plan_summary_add(&summary, record->action, item);
        *invalid |= record->action == PLAN_INVALID;
    }
    for (size_t i = 0; r == 0 && format == PLAN_FORMAT_MARKDOWN && i < count; i++)
        r = spool_copy(&readers[order[i]->worker * PART_COUNT + PART_DETAILS],
                       order[i]->offset[PART_DETAILS], order[i]->length[PART_DETAILS], out);
    if (r == 0)
        plan_output_end(format, &summary, out);
    for (size_t i = 0; readers && i < worker_count * PART_COUNT; i++)
        free(readers[i].buf);
    free(readers);
    free(order);
    return r;
}

static void workers_free(struct plan_worker *workers, size_t count)
{
    for (size_t w = 0; workers && w < count; w++) {
        for (int part = 0; part < PART_COUNT; part++) {
            if (workers[w].spool[part])
                fclose(workers[w].spool[part]);
            free(workers[w].spool_buffer[part]);
        }
        if (workers[w].scratch)
            fclose(workers[w].scratch);
        free(workers[w].scratch_text);
        for (size_t i = 0; i < workers[w].record_count; i++)
            record_clear(&workers[w].records[i]);
        free(workers[w].records);
    }
    free(workers);
}

/* Plans NEW against OLD (or nothing) onto out. Returns 0 or 1 (a plan is
 * invalid), 2 after printing why it could not plan, or -EAGAIN, having
 * written nothing, when the spools cannot be made or written. */
static int plan_streaming(const char *new_path, const char *old_path,
                          const struct policy_set *policies, enum plan_format format, FILE *out)
{
    struct plan_run run = {.format = format, .policies = policies, .against = old_path != NULL};
    struct diag diag = DIAG_INIT;
    char **paths;
    size_t count;
    int r = source_dir_list(new_path, &paths, &count, &diag);
    if (r == 0)
        r = file_side_fill(&run.next, paths, count);
    if (r == 0 && old_path && (r = source_dir_list(old_path, &paths, &count, &diag)) == 0)
        r = file_side_fill(&run.current, paths, count);
    if (diag.count) {
        cli_print_diag(&diag);
        diag_clear(&diag);
        file_side_clear(&run.next);
        file_side_clear(&run.current);
        return 2;
    }
    if (r == 0)
        r = groups_build(&run);

    size_t worker_count = r == 0 ? thread_count(run.group_count) : 0;
    struct plan_worker *workers = calloc(worker_count ? worker_count : 1, sizeof(*workers));
    bool *replaced = calloc(run.group_count + 1, sizeof(*replaced));
    if (!workers || !replaced)
        r = -ENOMEM;
    for (size_t w = 0; r == 0 && w < worker_count; w++) {
        workers[w].run = &run;
        workers[w].index = w;
        for (int part = 0; part < PART_COUNT; part++) {
            workers[w].spool_buffer[part] = malloc(SPOOL_WINDOW);
            if (!(workers[w].spool[part] = spool_open(workers[w].spool_buffer[part])))
                r = -EAGAIN;
        }
        workers[w].scratch = open_memstream(&workers[w].scratch_text, &workers[w].scratch_length);
        if (!workers[w].scratch)
            r = -ENOMEM;
    }
    if (r == 0) {
        for (size_t w = 1; w < worker_count; w++)
            workers[w].started =
                pthread_create(&workers[w].thread, NULL, worker_main, &workers[w]) == 0;
        worker_main(&workers[0]);
        for (size_t w = 1; w < worker_count; w++)
            if (workers[w].started)
                pthread_join(workers[w].thread, NULL);
        /* a thread that could not start left its groups to the others */
        for (size_t w = 0; w < worker_count; w++)
            if (workers[w].error)
                r = workers[w].error;
    }
    if (r == -EIO)
        r = -EAGAIN; /* a spool could not be written: nothing is written yet */
    if (r == 0)
        r = plan_shared_names(&workers[0], replaced);
    if (r == -EIO)
        r = -EAGAIN;
    bool invalid = false;
    if (r == 0)
        r = write_records(workers, worker_count, replaced, format, out, &invalid);
    workers_free(workers, worker_count);
    free(replaced);
    free(run.groups);
    file_side_clear(&run.next);
    file_side_clear(&run.current);
    if (r == -EAGAIN)
        return r;
    if (r < 0) {
        fprintf(stderr, "rolld plan: %s\n",
                r == -ENOMEM ? "out of memory"
                             : "cannot read back the temporary file of the plan; the output is "
                               "incomplete, run it again");
        return 2;
    }
    return invalid ? 1 : 0;
}

/* The directories loaded whole, as the agent loads them. */
static int plan_in_memory(const char *new_path, const char *old_path,
                          const struct policy_set *policies, enum plan_format format, FILE *out)
{
    struct diag diag = DIAG_INIT;
    struct snapshot next = {0}, current = {0};
    struct service_plan *plans = NULL;
    size_t count = 0;
    int status = 0;
    if (source_dir_load(new_path, &next, &diag) < 0 ||
        (old_path && source_dir_load(old_path, &current, &diag) < 0)) {
        cli_print_diag(&diag);
        status = 2;
        goto out;
    }
    if (plan_set_compute(&next, old_path ? &current : NULL, policies, &plans, &count) < 0) {
        fputs("rolld plan: out of memory\n", stderr);
        status = 2;
        goto out;
    }
    plan_list_write(plans, count, format, out);
    for (size_t i = 0; i < count; i++)
        if (plans[i].action == PLAN_INVALID)
            status = 1;
out:
    plan_set_free(plans, count);
    snapshot_clear(&next);
    snapshot_clear(&current);
    diag_clear(&diag);
    return status;
}

/* ---- two revisions of a repository ---- */

struct plan_revisions {
    const char *repo, *base, *head, *directory; /* base NULL: planned against nothing */
    char base_commit[GIT_OID_TEXT], head_commit[GIT_OID_TEXT];
};

/* A revision as the user wrote it, when markdown can quote it as is. */
static void write_markdown_commit(const char *label, const char *commit, const char *rev, FILE *out)
{
    fprintf(out, "%s `%s`", label, commit);
    if (!strchr(rev, '`') && !strchr(rev, '\n'))
        fprintf(out, " (`%s`)", rev);
}

/* The list plan_list_write wrote (text), with the commits put in. */
static void write_with_commits(const struct plan_revisions *revisions, const char *text,
                               size_t length, enum plan_format format, FILE *out)
{
    static const char json_start[] = "{\n", markdown_start[] = "### rolld plan\n\n";
    const char *rest = text;
    switch (format) {
    case PLAN_FORMAT_JSON:
        if (length >= strlen(json_start) && !strncmp(text, json_start, strlen(json_start))) {
            rest += strlen(json_start);
            fputs(json_start, out);
            if (revisions->base)
                fprintf(out, "  \"base_commit\": \"%s\",\n", revisions->base_commit);
            fprintf(out, "  \"head_commit\": \"%s\",\n", revisions->head_commit);
        }
        break;
    case PLAN_FORMAT_MARKDOWN:
        if (length >= strlen(markdown_start) &&
            !strncmp(text, markdown_start, strlen(markdown_start))) {
            rest += strlen(markdown_start);
            fputs(markdown_start, out);
        }
        if (revisions->base) {
            write_markdown_commit("Base", revisions->base_commit, revisions->base, out);
            write_markdown_commit(", head", revisions->head_commit, revisions->head, out);
        } else {
            write_markdown_commit("Head", revisions->head_commit, revisions->head, out);
        }
        fputs(".\n\n", out);
        break;
    default:
        if (revisions->base)
            fprintf(out, "base %s (%s)\n", revisions->base_commit, revisions->base);
        fprintf(out, "head %s (%s)\n\n", revisions->head_commit, revisions->head);
    }
    fwrite(rest, 1, length - (size_t)(rest - text), out);
}

/* Plans the head revision against the base one (or nothing). 0, 1 (a plan
 * is invalid) or 2 after printing why it could not plan. */
static int plan_revisions(struct plan_revisions *revisions, const struct policy_set *policies,
                          enum plan_format format, FILE *out)
{
    struct diag diag = DIAG_INIT;
    struct snapshot next = {0}, current = {0};
    struct service_plan *plans = NULL;
    size_t count = 0;
    char *text = NULL;
    size_t length = 0;
    int status = 0;
    if (git_repo_load_revision(revisions->repo, revisions->head, revisions->directory, &next,
                               revisions->head_commit, &diag) < 0 ||
        (revisions->base &&
         git_repo_load_revision(revisions->repo, revisions->base, revisions->directory, &current,
                                revisions->base_commit, &diag) < 0)) {
        cli_print_diag(&diag);
        status = 2;
        goto out;
    }
    if (plan_set_compute(&next, revisions->base ? &current : NULL, policies, &plans, &count) < 0) {
        fputs("rolld plan: out of memory\n", stderr);
        status = 2;
        goto out;
    }
    /* written apart first, to put the commits into the list's header */
    FILE *list = open_memstream(&text, &length);
    if (!list) {
        fputs("rolld plan: out of memory\n", stderr);
        status = 2;
        goto out;
    }
    plan_list_write(plans, count, format, list);
    if (fclose(list) != 0) {
        fputs("rolld plan: out of memory\n", stderr);
        status = 2;
        goto out;
    }
    write_with_commits(revisions, text, length, format, out);
    for (size_t i = 0; i < count; i++)
        if (plans[i].action == PLAN_INVALID)
            status = 1;
out:
    free(text);
    plan_set_free(plans, count);
    snapshot_clear(&next);
    snapshot_clear(&current);
    diag_clear(&diag);
    return status;
}

static int parse_format(const char *text, enum plan_format *format)
{
    if (!strcmp(text, "text"))
        *format = PLAN_FORMAT_TEXT;
    else if (!strcmp(text, "json"))
        *format = PLAN_FORMAT_JSON;
    else if (!strcmp(text, "markdown"))
        *format = PLAN_FORMAT_MARKDOWN;
    else
        return -1;
    return 0;
}

#define PLAN_USAGE                                                                                 \
    "usage: rolld plan NEW [--against OLD] [--format text|json|markdown] [--policies DIR]\n"       \
    "       rolld plan --repo PATH [--base REV] [--head REV] [--dir DIRECTORY]\n"                  \
    "                  [--format text|json|markdown] [--policies DIR]\n"

enum { OPTION_REPO = 256, OPTION_BASE, OPTION_HEAD, OPTION_DIR };

int cli_plan(int argc, char **argv)
{
    static const struct option options[] = {
        {"against", required_argument, NULL, 'a'},
        {"format", required_argument, NULL, 'f'},
        {"policies", required_argument, NULL, 'p'},
        {"repo", required_argument, NULL, OPTION_REPO},
        {"base", required_argument, NULL, OPTION_BASE},
        {"head", required_argument, NULL, OPTION_HEAD},
        {"dir", required_argument, NULL, OPTION_DIR},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct plan_revisions revisions = {0};
    const char *against = NULL, *policies_dir = NULL;
    enum plan_format format = PLAN_FORMAT_TEXT;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "a:f:p:h", options, NULL)) != -1) {
        switch (c) {
        case 'a':
            against = optarg;
            break;
        case 'f':
            if (parse_format(optarg, &format) < 0) {
                fprintf(stderr, "rolld plan: --format %s: use text, json or markdown\n", optarg);
                return 2;
            }
            break;
        case 'p':
            policies_dir = optarg;
            break;
        case OPTION_REPO:
            revisions.repo = optarg;
            break;
        case OPTION_BASE:
            revisions.base = optarg;
            break;
        case OPTION_HEAD:
            revisions.head = optarg;
            break;
        case OPTION_DIR:
            revisions.directory = optarg;
            break;
        case 'h':
            fputs(PLAN_USAGE
                  "\n"
                  "What applying the specs of NEW over those of OLD (or over nothing) would do,\n"
                  "service by service.\n"
                  "\n"
                  "  --against OLD     the directory (or file) of the specs running now\n"
                  "  --repo PATH       plan two revisions of the Git repository at PATH (a work\n"
                  "                    tree or a bare one) instead of two directories\n"
                  "  --base REV        the revision running now (a branch, tag, commit, HEAD~1);\n"
                  "                    without it every service is new\n"
                  "  --head REV        the revision to apply (default HEAD)\n"
                  "  --dir DIRECTORY   where the specs are in the repository (default: its top)\n"
                  "  --format FORMAT   text (default), json (schema/plan.schema.json) or markdown\n"
                  "  --policies DIR    the rollout policies (default: the installed ones)\n",
                  stdout);
            return 0;
        default:
            return 2;
        }
    }
    if (revisions.repo ? optind != argc || against : optind != argc - 1) {
        fputs(PLAN_USAGE, stderr);
        return 2;
    }
    if (!revisions.repo && (revisions.base || revisions.head || revisions.directory)) {
        fputs("rolld plan: --base, --head and --dir go with --repo PATH\n", stderr);
        return 2;
    }
    if (revisions.repo && !revisions.head)
        revisions.head = "HEAD";
    struct diag diag = DIAG_INIT;
    struct policy_set policies = {0};
    int status = 2;
    cli_load_policies(policies_dir, &policies, &diag);
    if (diag.count) {
        cli_print_diag(&diag);
    } else {
        static char buffer[1 << 16];
        if (!isatty(STDOUT_FILENO))
            setvbuf(stdout, buffer, _IOFBF, sizeof(buffer));
        if (revisions.repo) {
            status = plan_revisions(&revisions, &policies, format, stdout);
        } else {
            status = plan_streaming(argv[optind], against, &policies, format, stdout);
            if (status == -EAGAIN)
                status = plan_in_memory(argv[optind], against, &policies, format, stdout);
        }
        fflush(stdout);
    }
    policy_set_clear(&policies);
    diag_clear(&diag);
    return status;
}
