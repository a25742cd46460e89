#include "state.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

int state_store_save(const char *path, const json_t *doc)
{
    char *text = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(17));
    if (!text)
        return -ENOMEM;
    int r = state_store_save_text(path, text, strlen(text));
    free(text);
    return r;
}

int state_store_save_text(const char *path, const char *text, size_t length)
{
    struct state_writer *w = state_writer_open(path);
    if (!w)
        return -errno;
    state_writer_add(w, text, length);
    return state_writer_commit(w);
}

#define WRITER_PIECES 64

struct state_writer {
    char path[4096], tmp[4096];
    int fd;
    int error;
    struct iovec pieces[WRITER_PIECES];
    int count;
};

struct state_writer *state_writer_open(const char *path)
{
    struct state_writer *w = calloc(1, sizeof(*w));
    if (!w)
        return NULL;
    snprintf(w->path, sizeof(w->path), "%s", path);
    snprintf(w->tmp, sizeof(w->tmp), "%s.tmp", path);
    w->fd = open(w->tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (w->fd < 0) {
        int saved = errno;
        free(w);
        errno = saved;
        return NULL;
    }
    return w;
}

static void writer_flush(struct state_writer *w)
{
    struct iovec *v = w->pieces;
    int count = w->count;
    w->count = 0;
    while (count > 0 && !w->error) {
        ssize_t n = writev(w->fd, v, count);
        if (n < 0) {
            if (errno != EINTR)
                w->error = -errno;
            continue;
        }
        /* a short write: on from where it stopped */
        while (count > 0 && (size_t)n >= v->iov_len) {
            n -= (ssize_t)v->iov_len;
            v++;
            count--;
        }
        if (count > 0) {
            v->iov_base = (char *)v->iov_base + n;
            v->iov_len -= (size_t)n;
        }
    }
}

void state_writer_add(struct state_writer *w, const char *data, size_t length)
{
    if (!length || w->error)
        return;
    if (w->count == WRITER_PIECES)
        writer_flush(w);
    w->pieces[w->count++] = (struct iovec){(void *)data, length};
}

void state_writer_add_holes(struct state_writer *w, const char *text, size_t from, size_t to,
                            const struct state_holes *holes, const char *const fills[2])
{
    size_t at = from;
    for (int k = 0; k < holes->count; k++) {
        size_t start = holes->at[k], end = start + holes->length[k];
        if (start < from || end > to)
            continue;
        const char *fill = fills[holes->fill[k]] ? fills[holes->fill[k]] : "null";
        state_writer_add(w, text + at, start - at);
        state_writer_add(w, fill, strlen(fill));
        at = end;
    }
    state_writer_add(w, text + at, to - at);
}

void state_writer_fail(struct state_writer *w, int error)
{
    if (!w->error)
        w->error = error < 0 ? error : -EIO;
}

int state_writer_commit(struct state_writer *w)
{
    writer_flush(w);
    int r = w->error;
    if (r == 0 && fsync(w->fd) < 0)
        r = -errno;
    close(w->fd);
    if (r == 0 && rename(w->tmp, w->path) < 0)
        r = -errno;
    if (r < 0) {
        unlink(w->tmp);
        free(w);
        return r;
    }
    char dir_path[4096];
    snprintf(dir_path, sizeof(dir_path), "%s", w->path);
    int dir = open(dirname(dir_path), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir >= 0) {
        fsync(dir);
        close(dir);
    }
    free(w);
    return 0;
}

int state_store_load(const char *path, json_t **doc)
{
    *doc = NULL;
    json_error_t error;
    FILE *f = fopen(path, "r");
    if (!f)
        return errno == ENOENT ? 0 : -errno;
    *doc = json_loadf(f, 0, &error);
    fclose(f);
    return *doc ? 0 : -EBADMSG;
}

static json_t *side_to_json(const struct side_state *side, int hole)
{
    if (!side->used)
        return json_null();
    /* the spec keeps its document as text: parsed again to be written, or
     * left for the caller to copy in */
    json_t *spec = hole >= 0 ? json_integer(STATE_HOLE(hole))
                   : side->spec ? spec_doc(side->spec)
                                : NULL;
    if (!spec)
        return NULL;
    json_t *doc = json_pack("{s:s, s:o, s:s, s:i}", "version", side->version, "doc", spec,
                            "file", side->file ? side->file : "", "capacity", side->capacity);
    if (doc && side->commit[0])
        json_object_set_new(doc, "commit", json_string(side->commit));
    return doc;
}

static json_t *to_json(const struct service_state *s, bool holes)
{
    json_t *doc = json_pack(
        "{s:s, s:[o,o], s:i, s:i, s:i, s:I, s:I, s:I, s:O, s:b, s:O}", "phase",
        service_phase_name(s->phase), "sides", side_to_json(&s->sides[0], holes ? 0 : -1),
        side_to_json(&s->sides[1], holes ? 1 : -1), "primary", s->primary, "canary", s->canary, "traffic",
        s->traffic, "phase_since_ms", (json_int_t)s->phase_since_ms, "step_since_ms",
        (json_int_t)s->step_since_ms, "rollout_started_ms", (json_int_t)s->rollout_started_ms,
        "rejected", s->rejected, "reject_on_rollback", s->reject_on_rollback, "history",
        s->history);
    if (doc && s->rollback_immediate)
        json_object_set_new(doc, "rollback_immediate", json_true());
    if (doc && s->rollback_surge)
        json_object_set_new(doc, "rollback_surge", json_integer(s->rollback_surge));
    if (doc && s->gate_base >= 0)
        json_object_set_new(doc, "gate_base", json_integer(s->gate_base));
    if (doc && s->rollback_reason)
        json_object_set_new(doc, "rollback_reason", json_string(s->rollback_reason));
    if (doc && s->last_error)
        json_object_set_new(doc, "last_error", json_string(s->last_error));
    return doc;
}

json_t *service_state_to_json(const struct service_state *s)
{
    return to_json(s, false);
}

json_t *service_state_to_json_holes(const struct service_state *s)
{
    return to_json(s, true);
}

void state_holes_find(const char *text, const char *key, struct state_holes *holes)
{
    memset(holes, 0, sizeof(*holes));
    char needle[2][96];
    for (int i = 0; i < 2; i++)
        snprintf(needle[i], sizeof(needle[i]), "\"%s\":%lld", key, (long long)STATE_HOLE(i));
    size_t key_length = strlen(key) + 3; /* "key": */
    /* each hole at most once; recorded in the order they come */
    const char *found[2];
    for (int i = 0; i < 2; i++)
        found[i] = strstr(text, needle[i]);
    int order[2] = {0, 1};
    if (found[0] && found[1] && found[1] < found[0]) {
        order[0] = 1;
        order[1] = 0;
    }
    for (int k = 0; k < 2; k++) {
        int i = order[k];
        if (!found[i])
            continue;
        holes->at[holes->count] = (size_t)(found[i] - text) + key_length;
        holes->length[holes->count] = strlen(needle[i]) - key_length;
        holes->fill[holes->count] = i;
        holes->count++;
    }
}

static int side_from_json(struct side_state *side, const json_t *doc)
{
    if (json_is_null(doc) || !doc)
        return 0;
    const char *version = json_string_value(json_object_get(doc, "version"));
    json_t *spec = json_object_get(doc, "doc");
    if (!version || strlen(version) != 16 || !json_is_object(spec))
        return -EINVAL;
    const char *file = json_string_value(json_object_get(doc, "file")) ?: "";
    if (!(side->spec = spec_from_doc(spec, file)))
        return -EINVAL;
    side->used = true;
    memcpy(side->version, version, 17);
    side->file = strdup(file);
    side->capacity = (int)json_integer_value(json_object_get(doc, "capacity"));
    const char *commit = json_string_value(json_object_get(doc, "commit"));
    if (commit && strlen(commit) < sizeof(side->commit))
        strcpy(side->commit, commit);
    return 0;
}

struct service_state *service_state_from_json(const char *name, const json_t *doc)
{
    struct service_state *s = service_state_new(name);
    if (!s)
        return NULL;
    json_t *sides = json_object_get(doc, "sides");
    int phase = service_phase_from_name(json_string_value(json_object_get(doc, "phase")));
    if (phase < 0 || json_array_size(sides) != 2 ||
        side_from_json(&s->sides[0], json_array_get(sides, 0)) < 0 ||
        side_from_json(&s->sides[1], json_array_get(sides, 1)) < 0) {
        service_state_free(s);
        return NULL;
    }
    s->phase = (enum service_phase)phase;
    s->primary = (int)json_integer_value(json_object_get(doc, "primary"));
    s->canary = (int)json_integer_value(json_object_get(doc, "canary"));
    s->traffic = (int)json_integer_value(json_object_get(doc, "traffic"));
    s->phase_since_ms = json_integer_value(json_object_get(doc, "phase_since_ms"));
    s->step_since_ms = json_integer_value(json_object_get(doc, "step_since_ms"));
    s->rollout_started_ms = json_integer_value(json_object_get(doc, "rollout_started_ms"));
    s->reject_on_rollback = json_is_true(json_object_get(doc, "reject_on_rollback"));
    s->rollback_immediate = json_is_true(json_object_get(doc, "rollback_immediate"));
    s->rollback_surge = (int)json_integer_value(json_object_get(doc, "rollback_surge"));
    json_t *gate_base = json_object_get(doc, "gate_base");
    s->gate_base = gate_base ? (int)json_integer_value(gate_base) : -1;
    json_t *rejected = json_object_get(doc, "rejected");
    if (json_is_array(rejected)) {
        json_decref(s->rejected);
        s->rejected = json_deep_copy(rejected);
    }
    json_t *history = json_object_get(doc, "history");
    if (json_is_array(history)) {
        json_decref(s->history);
        s->history = json_deep_copy(history);
    }
    const char *text = json_string_value(json_object_get(doc, "rollback_reason"));
    s->rollback_reason = text ? strdup(text) : NULL;
    text = json_string_value(json_object_get(doc, "last_error"));
    s->last_error = text ? strdup(text) : NULL;
    /* a document that contradicts itself is refused, not half-trusted */
    bool valid = s->primary >= -1 && s->primary <= 1 && s->canary >= -1 && s->canary <= 1 &&
                 (s->primary < 0 || s->sides[s->primary].used) &&
                 (s->canary < 0 || (s->sides[s->canary].used && s->canary != s->primary &&
                                    s->primary >= 0)) &&
                 s->traffic >= 0 && s->traffic <= 100;
    for (int i = 0; i < 2 && valid; i++)
        valid = s->sides[i].capacity >= 0 && s->sides[i].capacity <= 100;
    if (!valid) {
        service_state_free(s);
        return NULL;
    }
    return s;
}
