#include "agent.h"

#include <errno.h>
#include <limits.h>
#include <malloc.h>
#include <stdarg.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "unix_socket.h"
#include <systemd/sd-daemon.h>
#include <systemd/sd-event.h>
#include <time.h>
#include <unistd.h>

#include "agent_git.h"
#include "autoscale.h"
#include "log.h"
#include "metrics.h"
#include "capacity.h"
#include "cli.h"
#include "compute/process.h"
#include "plan_set.h"
#include "router/haproxy.h"
#include "source_dir.h"
#include "spec_store.h"
#include "state.h"
#include "status.h"

#define MAX_STEPS_PER_PASS 32

struct autoscale_entry {
    int side;
    char version[17];
    char application[64];
    char deployment[64];
    struct autoscale_state st;
};

struct managed {
    struct service_state *state;
    struct autoscale_entry *scale; /* replica counts the autoscaler chose */
    size_t scale_count;
    /* each side's spec (NULL: side unused): a reference to the side's own,
     * or with autoscaling a copy of it, whose counts the autoscaler sets */
    struct service_spec *specs[2];
    struct service_spec *sides_seen[2]; /* the side's spec specs[] stands for (a reference) */
    char status_hash[17];          /* of the last status written, less its timestamp */
    char *state_text;              /* its state file entry; NULL: encode again */
    struct state_holes state_holes; /* where the sides' spec texts go in it */
    json_t *status_doc;            /* and its document, for the status branch */
    char stored[2][17];            /* versions whose spec text is in the spec store */
    char *revert_branch;           /* pushed after the last rollback, or NULL */
    /* rolld rollback --to: run this kept version instead of what the source
     * asks for, until the source asks for something else than override_for */
    struct service_spec *override;
    char override_for[17];
    const char *refused;           /* why the head commit is not deployed for it, or NULL */
    bool autoscaling;              /* a deployment of either side autoscales */
};

struct agent {
    struct agent_config *options; /* SIGHUP replaces what can change while running */
    struct agent_config reloaded; /* owns the strings of the last re-read config */
    bool ready_sent;
    char notify_status[256];
    sd_event *event;
    sd_event_source *debounce, *wake, *reconcile_soon, *control, *autoscale;
    struct snapshot snapshot;
    struct snapshot trusted; /* Git: the last trusted commit's, when the head is not */
    struct agent_git *git;   /* NULL for a directory source */
    sd_event_source *publish;
    sd_event_source *trim;   /* a malloc_trim() put off by TRIM_EVERY_MS */
    char **gone;             /* services deleted since the last status publish */
    size_t gone_count;
    bool publish_pending;
    struct policy_set policies;
    struct managed *services;
    struct metrics *metrics; /* NULL: no metrics endpoint */
    size_t count, capacity;
    struct resource_need used; /* by all services; see sum_used() */
    long long trimmed_ms;      /* CLOCK_MONOTONIC of the last malloc_trim() */
    long long pass_cpu_ms;     /* CPU time of the last pass; see schedule_wake() */
    unsigned long ticks;       /* of the autoscale timer, which also watches the router */
    struct compute_adapter compute;
    struct router_adapter router;
    char state_path[4096], status_dir[4096], control_path[4096];
    bool dirty;
    bool snapshot_stale;
    int command_surge; /* rolld rollback --max-surge-percent, for the command being run */
};

static long long wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#define log_line(...) log_msg(LOG_INFO, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_WARNING, __VA_ARGS__)

/* ---- services ---- */

/* a->services is kept sorted by name: lookups are binary searches, so a
 * pass over n services never costs n^2 name comparisons. */
static size_t managed_position(const struct agent *a, const char *name)
{
    size_t low = 0, high = a->count;
    while (low < high) {
        size_t mid = low + (high - low) / 2;
        if (strcmp(a->services[mid].state->name, name) < 0)
            low = mid + 1;
        else
            high = mid;
    }
    return low;
}

static struct managed *find_managed(struct agent *a, const char *name)
{
    size_t at = managed_position(a, name);
    return at < a->count && !strcmp(a->services[at].state->name, name) ? &a->services[at] : NULL;
}

static struct managed *add_managed(struct agent *a, struct service_state *state)
{
    if (a->count == a->capacity) {
        size_t capacity = a->capacity ? a->capacity * 2 : 16;
        struct managed *grown = realloc(a->services, capacity * sizeof(*grown));
        if (!grown)
            return NULL;
        a->services = grown;
        a->capacity = capacity;
    }
    size_t at = managed_position(a, state->name);
    memmove(&a->services[at + 1], &a->services[at], (a->count - at) * sizeof(*a->services));
    a->count++;
    struct managed *m = &a->services[at];
    memset(m, 0, sizeof(*m));
    m->state = state;
    return m;
}

static void managed_clear(struct managed *m)
{
    for (int i = 0; i < 2; i++) {
        spec_free(m->specs[i]);
        spec_free(m->sides_seen[i]);
    }
    free(m->state_text);
    json_decref(m->status_doc);
    free(m->revert_branch);
    spec_free(m->override);
    free(m->scale);
    service_state_free(m->state);
}

static struct autoscale_entry *scale_entry(struct managed *m, int side, const char *version,
                                           const char *application,
                                           const struct deployment_spec *d)
{
    for (size_t i = 0; i < m->scale_count; i++) {
        struct autoscale_entry *e = &m->scale[i];
        if (e->side == side && !strcmp(e->application, application) &&
            !strcmp(e->deployment, d->name)) {
            if (strcmp(e->version, version) != 0) {
                /* a new version on this side starts from its initial count,
                 * an in-place update keeps what the load asked for */
                if (m->state->primary != side || m->state->canary >= 0)
                    autoscale_init(&e->st, d);
                snprintf(e->version, sizeof(e->version), "%s", version);
                free(m->state_text); /* saved with the next save */
                m->state_text = NULL;
            }
            return e;
        }
    }
    struct autoscale_entry *grown = realloc(m->scale, (m->scale_count + 1) * sizeof(*grown));
    if (!grown)
        return NULL;
    m->scale = grown;
    struct autoscale_entry *e = &m->scale[m->scale_count++];
    memset(e, 0, sizeof(*e));
    e->side = side;
    snprintf(e->version, sizeof(e->version), "%s", version);
    snprintf(e->application, sizeof(e->application), "%s", application);
    snprintf(e->deployment, sizeof(e->deployment), "%s", d->name);
    autoscale_init(&e->st, d);
    free(m->state_text);
    m->state_text = NULL;
    return e;
}

/* Autoscaling deployments run the count the autoscaler chose, within the
 * spec's bounds; the typed spec carries it to the compute adapter. */
static void apply_autoscale(struct managed *m)
{
    for (int side = 0; side < 2; side++) {
        struct service_spec *spec = m->specs[side];
        for (size_t i = 0; spec && i < spec->application_count; i++) {
            struct application_spec *app = &spec->applications[i];
            for (size_t j = 0; j < app->deployment_count; j++) {
                struct deployment_spec *d = &app->deployments[j];
                if (!d->autoscaling)
                    continue;
                struct autoscale_entry *e = scale_entry(m, side, spec->version, app->name, d);
                if (!e)
                    continue;
                int low = d->min_replicas;
                if (side == m->state->canary && d->initial_replicas > low)
                    low = d->initial_replicas; /* the canary's floor until it is primary */
                if (e->st.replicas < low)
                    e->st.replicas = low;
                if (e->st.replicas > d->max_replicas)
                    e->st.replicas = d->max_replicas;
                d->num_replicas = e->st.replicas;
            }
        }
    }
}

static bool spec_autoscales(const struct service_spec *spec)
{
    for (size_t k = 0; spec && k < spec->application_count; k++)
        for (size_t j = 0; j < spec->applications[k].deployment_count; j++)
            if (spec->applications[k].deployments[j].autoscaling)
                return true;
    return false;
}

/* Keeps specs[] in step with the sides. */
static void refresh_specs(struct managed *m)
{
    bool changed = false;
    for (int i = 0; i < 2; i++) {
        struct service_spec *spec = m->state->sides[i].used ? m->state->sides[i].spec : NULL;
        if (spec == m->sides_seen[i])
            continue;
        spec_free(m->specs[i]);
        spec_free(m->sides_seen[i]);
        if (spec)
            spec_compact(spec); /* read back from the state file: a document until now */
        m->sides_seen[i] = spec_ref(spec);
        /* a copy when the autoscaler will set counts in it: the side's spec
         * is shared with the source's snapshot */
        m->specs[i] = spec && spec_autoscales(spec) ? spec_with_file(spec, spec->file)
                                                    : spec_ref(spec);
        if (m->specs[i])
            spec_compact(m->specs[i]);
        changed = true;
    }
    if (changed)
        m->autoscaling = spec_autoscales(m->specs[0]) || spec_autoscales(m->specs[1]);
    apply_autoscale(m);
}

static const struct policy *policy_for(struct agent *a, const struct service_spec *spec)
{
    const struct policy *p = spec ? plan_set_policy_for(&a->policies, spec) : NULL;
    return p ? p : policy_set_find(&a->policies, POLICY_DEFAULT_NAME);
}

/* ---- state store ---- */

/* A service's entry in the state file, kept as text until the service
 * changes (mark_dirty): a save re-encodes what changed and copies the rest,
 * where encoding every service made each save cost the whole host. */
static char *service_text(struct managed *m)
{
    json_t *doc = service_state_to_json_holes(m->state);
    if (!doc)
        return NULL;
    if (m->scale_count) {
        json_t *scale = json_array();
        for (size_t k = 0; k < m->scale_count; k++)
            json_array_append_new(
                scale, json_pack("{s:i, s:s, s:s, s:s, s:i}", "side", m->scale[k].side,
                                 "version", m->scale[k].version, "application",
                                 m->scale[k].application, "deployment",
                                 m->scale[k].deployment, "replicas", m->scale[k].st.replicas));
        json_object_set_new(doc, "autoscale", scale);
    }
    if (m->revert_branch)
        json_object_set_new(doc, "revert_branch", json_string(m->revert_branch));
    if (m->override)
        json_object_set_new(doc, "override", json_pack("{s:s, s:s}", "version",
                                                        m->override->version, "for",
                                                        m->override_for));
    json_t *pair = json_pack("{s:o}", m->state->name, doc);
    char *text = pair ? json_dumps(pair, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(17))
                      : NULL;
    json_decref(pair);
    /* the sides' specs are copied in at each save (state_holes), not kept
     * twice: their text is the spec's own */
    if (text)
        state_holes_find(text, "doc", &m->state_holes);
    return text; /* {"name":{...}}: the braces are dropped when joined */
}

/* The service's state changed: its entry is encoded again at the next save. */
static void mark_dirty(struct agent *a, struct managed *m)
{
    a->dirty = true;
    free(m->state_text);
    m->state_text = NULL;
}

/* What fills a service entry's holes: each used side's spec text. false
 * when one cannot be made (out of memory). */
static bool side_texts(const struct managed *m, const char *fills[2])
{
    for (int i = 0; i < 2; i++) {
        const struct side_state *side = &m->state->sides[i];
        fills[i] = side->used && side->spec ? spec_text(side->spec) : NULL;
        if (side->used && !fills[i])
            return false;
    }
    return true;
}

static int save_state(struct agent *a)
{
    /* written in pieces from the records kept (state_writer): no copy of
     * the whole file is made in memory */
    struct state_writer *w = state_writer_open(a->state_path);
    int r = w ? 0 : -errno;
    if (w) {
        static const char head[] = "{\"format\":1,\"replicas\":";
        static const char middle[] = ",\"services\":{";
        state_writer_add(w, head, sizeof(head) - 1);
        if ((r = a->compute.state_write(a->compute.instance, w)) < 0)
            state_writer_fail(w, r);
        state_writer_add(w, middle, sizeof(middle) - 1);
        /* keys in order, as JSON_SORT_KEYS would: a->services is sorted */
        for (size_t i = 0; r == 0 && i < a->count; i++) {
            struct managed *m = &a->services[i];
            if (!m->state_text && !(m->state_text = service_text(m))) {
                state_writer_fail(w, r = -ENOMEM);
                break;
            }
            const char *fills[2];
            if (!side_texts(m, fills)) {
                state_writer_fail(w, r = -ENOMEM);
                break;
            }
            if (i)
                state_writer_add(w, ",", 1);
            /* {"name":{...}}: without its outer braces */
            state_writer_add_holes(w, m->state_text, 1, strlen(m->state_text) - 1,
                                   &m->state_holes, fills);
        }
        state_writer_add(w, "}}", 2);
        r = state_writer_commit(w);
    }
    if (r < 0)
        log_warn("cannot save %s: %s", a->state_path, strerror(-r));
    return r;
}

/* ---- router view ---- */

/* Header values that pin a request to a side. A side on its way out
 * (capacity 0) takes no pins: a pinned request then reaches whoever serves,
 * never a drained backend; "primary" moves to the canary while the old
 * primary retires, as the canary is about to take its place. */
static void side_pins(const struct service_state *s, int side, const char **pins)
{
    int n = 0;
    const struct side_state *st = &s->sides[side];
    if (!st->used || st->capacity == 0)
        return;
    bool primary_retiring = s->primary >= 0 && s->sides[s->primary].capacity == 0;
    if (side == s->primary || (s->primary < 0 && side == 0) ||
        (side == s->canary && primary_retiring))
        pins[n++] = "primary";
    if (side == s->canary)
        pins[n++] = "canary";
    const char *name = st->spec ? st->spec->version_name : NULL;
    if (name && strchr(name, ' ') == NULL && strchr(name, ';') == NULL)
        pins[n++] = name;
    pins[n++] = st->version;
}

static void apply_router(struct agent *a)
{
    struct router_service *services = calloc(a->count ? a->count : 1, sizeof(*services));
    if (!services) {
        log_line("router: %s", strerror(ENOMEM));
        return;
    }
    bool incomplete = false;
    size_t n = 0;
    for (size_t i = 0; i < a->count; i++) {
        struct managed *m = &a->services[i];
        const struct service_state *s = m->state;
        const struct service_spec *spec =
            s->primary >= 0 ? m->specs[s->primary] : m->specs[0] ? m->specs[0] : m->specs[1];
        if (!spec || spec->http_port <= 0 || s->removed)
            continue;
        struct router_service *rs = &services[n++];
        rs->name = s->name;
        rs->port = spec->http_port;
        rs->host = spec->http_host;
        if (s->primary >= 0) {
            rs->share[s->primary] = s->canary >= 0 ? 100 - s->traffic : 100;
            if (s->canary >= 0)
                rs->share[s->canary] = s->traffic;
        } else {
            rs->share[0] = 100;
        }
        for (int side = 0; side < 2; side++)
            side_pins(s, side, rs->pins[side]);
        /* the applications of both sides, by name */
        size_t capacity = 0;
        for (int side = 0; side < 2; side++)
            capacity += m->specs[side] ? m->specs[side]->application_count : 0;
        rs->applications = calloc(capacity ? capacity : 1, sizeof(*rs->applications));
        for (int side = 0; side < 2 && rs->applications; side++) {
            const struct service_spec *sp = m->specs[side];
            for (size_t k = 0; sp && k < sp->application_count; k++) {
                struct router_application *ra = NULL;
                for (size_t j = 0; j < rs->application_count; j++)
                    if (!strcmp(rs->applications[j].name, sp->applications[k].name))
                        ra = &rs->applications[j];
                if (!ra) {
                    ra = &rs->applications[rs->application_count++];
                    ra->name = sp->applications[k].name;
                    ra->route_prefix = sp->applications[k].route_prefix;
                }
            }
        }
        for (size_t j = 0; rs->applications && j < rs->application_count; j++)
            for (int side = 0; side < 2; side++) {
                struct endpoint found[ROUTER_MAX_ENDPOINTS];
                size_t n_found = a->compute.endpoints(a->compute.instance, s->name, side,
                                                      rs->applications[j].name, found,
                                                      ROUTER_MAX_ENDPOINTS);
                struct endpoint *copy = n_found ? malloc(n_found * sizeof(*copy)) : NULL;
                if (copy)
                    memcpy(copy, found, n_found * sizeof(*copy));
                else if (n_found)
                    incomplete = true;
                rs->applications[j].endpoints[side] = copy;
                rs->applications[j].endpoint_count[side] = copy ? n_found : 0;
            }
        if (!rs->applications)
            incomplete = true;
    }
    /* a model short of memory would drain what it lacks: leave HAProxy as it is */
    int r = incomplete ? -ENOMEM : a->router.apply(a->router.instance, services, n);
    if (r < 0)
        log_line("router: %s", strerror(-r));
    for (size_t i = 0; i < n; i++) {
        for (size_t j = 0; services[i].applications && j < services[i].application_count; j++) {
            free((void *)services[i].applications[j].endpoints[0]);
            free((void *)services[i].applications[j].endpoints[1]);
        }
        free(services[i].applications);
    }
    free(services);
}

/* ---- status ---- */

/* What the status document says beyond the rollout state: the agent, the
 * source commit and its troubles, the approval gate, the revert branch. */
static void decorate_status(struct agent *a, struct managed *m, json_t *doc)
{
    json_object_set_new(doc, "agent", json_string(a->options->name));
    if (a->git) {
        const struct agent_git_info *info = agent_git_info(a->git);
        json_t *source = json_pack("{s:s, s:s, s:s}", "kind", "git", "branch",
                                   a->options->git_branch, "commit", info->commit);
        if (info->fetched_ms) {
            char when[32];
            time_t seconds = (time_t)(info->fetched_ms / 1000);
            struct tm tm;
            gmtime_r(&seconds, &tm);
            strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
            json_object_set_new(source, "fetched", json_string(when));
        }
        if (info->fetch_error[0])
            json_object_set_new(source, "fetch_error", json_string(info->fetch_error));
        if (info->rewritten_from[0])
            json_object_set_new(source, "history_rewritten",
                                json_sprintf("the branch was rewritten (force push): %.12s is "
                                             "not an ancestor of %.12s",
                                             info->rewritten_from, info->commit));
        if (m->refused)
            json_object_set_new(source, "refused_commit",
                                json_pack("{s:s, s:s}", "commit", info->commit, "reason",
                                          m->refused));
        json_object_set_new(doc, "source", source);
    }
    if (m->override)
        json_object_set_new(doc, "override",
                            json_sprintf("rolld rollback --to %s: runs the kept spec of %s until "
                                         "the source asks for a version other than %s",
                                         m->override->version, m->override->version,
                                         m->override_for[0] ? m->override_for : "none"));
    if (m->revert_branch)
        json_object_set_new(doc, "revert_branch", json_string(m->revert_branch));
    json_t *rollout = json_object_get(doc, "rollout");
    if (rollout && m->state->canary >= 0) {
        const struct policy *policy = policy_for(a, m->specs[m->state->canary]);
        if (policy && policy->approval_percent >= 0) {
            int holding = rollout_gate_holding(m->state, policy);
            const char *name = m->state->sides[m->state->canary].spec->version_name;
            json_object_set_new(
                rollout, "gate",
                json_pack("{s:i, s:b, s:s+}", "percent", policy->approval_percent, "released",
                          holding < 0, "release",
                          holding < 0 ? "released by a commit that raised canary_percent"
                                      : "held until a later commit raises rollout.canary_percent "
                                        "above the gate for ",
                          holding < 0 ? "" : (name ? name : m->state->sides[m->state->canary].version)));
        }
    }
}

#define PUBLISH_DELAY_MS 200

static void schedule_publish(struct agent *a)
{
    if (!a->git || !agent_git_status_enabled(a->git) || a->publish_pending)
        return;
    a->publish_pending = true;
    uint64_t now;
    sd_event_now(a->event, CLOCK_MONOTONIC, &now);
    sd_event_source_set_time(a->publish, now + PUBLISH_DELAY_MS * 1000ULL);
    sd_event_source_set_enabled(a->publish, SD_EVENT_ONESHOT);
}

/* Hands every service's status document to the status branch writer, which
 * commits them (and STATUS.md, made from every agent's files on the
 * branch) on its own thread; no commit when nothing changed. */
static int on_publish(sd_event_source *source, uint64_t usec, void *userdata)
{
    struct agent *a = userdata;
    a->publish_pending = false;
    size_t slots = a->count + a->gone_count, n = 0;
    struct status_file *files = calloc(slots ? slots : 1, sizeof(*files));
    char **texts = calloc(slots ? slots : 1, sizeof(*texts));
    char **paths = calloc(slots ? slots : 1, sizeof(*paths));
    if (!files || !texts || !paths)
        goto out;
    for (size_t i = 0; i < a->count; i++) {
        struct managed *m = &a->services[i];
        if (!m->status_doc)
            continue;
        /* the document without its timestamp: a commit only for a real change */
        json_t *stable = json_deep_copy(m->status_doc);
        json_object_del(stable, "updated");
        size_t length = 0;
        FILE *f = open_memstream(&texts[n], &length);
        if (f) {
            status_write_yaml(stable, f);
            fclose(f);
        }
        json_decref(stable);
        if (!texts[n] || asprintf(&paths[n], "status/%s.yaml", m->state->name) < 0) {
            free(texts[n]);
            texts[n] = paths[n] = NULL;
            continue;
        }
        files[n] = (struct status_file){paths[n], texts[n], length};
        n++;
    }
    size_t own = n;
    for (size_t i = 0; i < a->gone_count; i++) {
        if (asprintf(&paths[n], "status/%s.yaml", a->gone[i]) < 0) {
            paths[n] = NULL;
            continue;
        }
        files[n] = (struct status_file){paths[n], NULL, 0};
        n++;
    }
    char message[512];
    snprintf(message, sizeof(message), "rolld status from %s: %zu services", a->options->name,
             own);
    /* the writer keeps deletions until they are committed */
    if (agent_git_publish_status(a->git, files, n, message) == 0) {
        for (size_t i = 0; i < a->gone_count; i++)
            free(a->gone[i]);
        a->gone_count = 0;
    }
out:
    for (size_t i = 0; i < slots && paths; i++) {
        free(paths[i]);
        free(texts[i]);
    }
    free(paths);
    free(texts);
    free(files);
    return 0;
}

/* The service's phase, and each version's traffic and replicas as the
 * status shows them, to the metrics endpoint. */
static void publish_metrics(struct agent *a, struct managed *m,
                            const struct status_side_view views[2])
{
    if (!a->metrics)
        return;
    const struct service_state *s = m->state;
    struct metrics_service ms = {.name = s->name, .phase = s->phase};
    for (int side = 0; side < 2; side++) {
        const struct side_state *st = &s->sides[side];
        if (!st->used)
            continue;
        bool canary = side == s->canary;
        struct metrics_version *v = &ms.versions[ms.version_count++];
        v->version_name = st->spec ? st->spec->version_name : NULL;
        v->version_id = st->version;
        v->role = canary ? METRICS_ROLE_CANARY : METRICS_ROLE_PRIMARY;
        v->traffic_percent = canary ? s->traffic : s->canary >= 0 ? 100 - s->traffic : 100;
        for (size_t k = 0; k < views[side].count; k++) {
            v->replicas_desired += views[side].counts[k].desired;
            v->replicas_ready += views[side].counts[k].ready;
        }
    }
    metrics_service_set(a->metrics, &ms);
}

/* The rollout events of one transition, counted: the history items after
 * the one that was last before it (the history keeps its newest 20). */
static void count_rollout_events(struct agent *a, struct managed *m, const json_t *last_before)
{
    const json_t *history = m->state->history;
    size_t n = json_array_size(history), first = 0;
    for (size_t i = n; last_before && i-- > 0;)
        if (json_array_get(history, i) == last_before) {
            first = i + 1;
            break;
        }
    for (size_t i = first; i < n; i++) {
        json_t *item = json_array_get(history, i);
        const char *event = json_string_value(json_object_get(item, "event"));
        if (!event)
            continue;
        if (!strcmp(event, "canary_started"))
            metrics_rollout_event(a->metrics, m->state->name, "started", NULL);
        else if (!strcmp(event, "promoted"))
            metrics_rollout_event(a->metrics, m->state->name, "completed", NULL);
        else if (!strcmp(event, "rollback_started"))
            metrics_rollout_event(a->metrics, m->state->name, "rolled_back",
                                  m->state->rollback_reason
                                      ? m->state->rollback_reason
                                      : json_string_value(json_object_get(item, "detail")));
    }
}

static void write_status(struct agent *a, struct managed *m, const char *invalid_error)
{
    struct status_side_view views[2] = {{0}};
    struct status_deployment_count counts[2][64];
    for (int side = 0; side < 2; side++) {
        const struct service_spec *spec = m->specs[side];
        views[side].spec = spec;
        views[side].counts = counts[side];
        if (!spec)
            continue;
        for (size_t i = 0; i < spec->application_count; i++) {
            const struct application_spec *app = &spec->applications[i];
            for (size_t j = 0; j < app->deployment_count && views[side].count < 64; j++) {
                struct status_deployment_count *c = &counts[side][views[side].count++];
                c->application = app->name;
                c->deployment = app->deployments[j].name;
                c->desired = capacity_replicas(app->deployments[j].num_replicas,
                                               m->state->sides[side].capacity);
                c->ready = a->compute.count_ready(a->compute.instance, m->state->name, side,
                                                  app->name, app->deployments[j].name, c->desired);
                const struct deployment_spec *d = &app->deployments[j];
                int capacity = m->state->sides[side].capacity;
                c->autoscale_min = d->autoscaling ? capacity_replicas(d->min_replicas, capacity) : -1;
                c->autoscale_max = d->autoscaling ? capacity_replicas(d->max_replicas, capacity) : -1;
            }
        }
    }
    publish_metrics(a, m, views);
    json_t *doc = status_document(m->state, views, invalid_error, wall_ms());
    decorate_status(a, m, doc);
    /* compare without the timestamp so an unchanged service is not
     * rewritten (blanked in place, which keeps the key where it is) */
    json_t *updated = json_incref(json_object_get(doc, "updated"));
    json_object_set_new(doc, "updated", json_string(""));
    char *text = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
    if (updated)
        json_object_set_new(doc, "updated", updated);
    /* its hash is kept, not the text: 16 bytes a service instead of ~700 */
    char hash[17] = "";
    bool hashed = text != NULL;
    if (hashed)
        spec_hash_text(text, hash);
    free(text);
    if (hashed && !strcmp(hash, m->status_hash)) {
        json_decref(doc);
        return;
    }
    memcpy(m->status_hash, hash, sizeof(hash));
    /* the document itself only for the status branch, which reads it */
    json_decref(m->status_doc);
    m->status_doc = a->git && agent_git_status_enabled(a->git) ? json_incref(doc) : NULL;
    schedule_publish(a);
    char path[4200], tmp[4300];
    snprintf(path, sizeof(path), "%s/%s.yaml", a->status_dir, m->state->name);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (f) {
        status_write_yaml(doc, f);
        if (fclose(f) == 0)
            rename(tmp, path);
    }
    json_decref(doc);
}

static void remove_status(struct agent *a, const char *name)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/%s.yaml", a->status_dir, name);
    unlink(path);
    if (a->git && agent_git_status_enabled(a->git)) {
        char **grown = realloc(a->gone, (a->gone_count + 1) * sizeof(*grown));
        if (grown && (grown[a->gone_count] = strdup(name))) {
            a->gone = grown;
            a->gone_count++;
        } else if (grown) {
            a->gone = grown;
        }
        schedule_publish(a);
    }
}

/* ---- reconcile ---- */

static void observe(struct agent *a, struct managed *m, struct service_observation *obs)
{
    memset(obs, 0, sizeof(*obs));
    for (int side = 0; side < 2; side++) {
        a->compute.observe(a->compute.instance, m->state->name, side, m->specs[side],
                           m->state->sides[side].used ? m->state->sides[side].capacity : 0,
                           &obs->sides[side]);
        if (!m->state->sides[side].used)
            obs->sides[side].ready = false;
    }
}

static void sync_compute(struct agent *a, struct managed *m, const struct policy *policy)
{
    for (int side = 0; side < 2; side++) {
        const struct side_state *st = &m->state->sides[side];
        a->compute.sync(a->compute.instance, m->state->name, side, st->used ? m->specs[side] : NULL,
                        st->used ? st->capacity : 0, policy);
    }
}

static const char *first_error(const struct spec_entry *entry, char *buf, size_t size)
{
    if (!entry || entry->spec || !entry->errors.count)
        return NULL;
    const struct diag_entry *e = &entry->errors.entries[0];
    snprintf(buf, size, "%s:%d:%d: %s%s%s", e->file, e->line, e->column, e->field,
             e->field[0] ? ": " : "", e->message);
    return buf;
}

/* What one service's versions take at their current capacities. */
static struct resource_need service_need(const struct managed *m)
{
    struct resource_need used = {0, 0, 0};
    for (int side = 0; side < 2; side++) {
        if (!m->state->sides[side].used || !m->specs[side])
            continue;
        struct resource_need need =
            inventory_need_version(m->specs[side], m->state->sides[side].capacity);
        inventory_need_add(&used, &need);
    }
    return used;
}

/* a->used: what every service takes, summed at the start of a pass and kept
 * current as each service moves, so no service sums all the others. */
static void sum_used(struct agent *a)
{
    a->used = (struct resource_need){0, 0, 0};
    if (!a->options->inventory.declared)
        return;
    for (size_t i = 0; i < a->count; i++) {
        struct resource_need need = service_need(&a->services[i]);
        inventory_need_add(&a->used, &need);
    }
}

static void used_moved(struct agent *a, const struct resource_need *before,
                       const struct resource_need *after)
{
    a->used.cpus += after->cpus - before->cpus;
    a->used.memory += after->memory - before->memory;
    a->used.gpu_devices += after->gpu_devices - before->gpu_devices;
}

/* What the host has free for one service: the inventory less what every
 * other service's versions take (a->used less `self`, its own share). */
static bool available_for(struct agent *a, const struct resource_need *self,
                          struct resource_need *out)
{
    const struct inventory *inv = &a->options->inventory;
    if (!inv->declared)
        return false;
    out->cpus = inv->cpus - (a->used.cpus - self->cpus);
    out->memory = inv->memory > 0 ? inv->memory - (a->used.memory - self->memory) : 0;
    out->gpu_devices = (int)inv->gpu_count - (a->used.gpu_devices - self->gpu_devices);
    return true;
}

/* ---- what each service is asked to run ---- */

static bool requires_signature(struct agent *a, const struct service_spec *spec)
{
    const struct policy *policy = spec ? policy_for(a, spec) : NULL;
    return policy && policy->require_signed_commits;
}

/* The entry a service follows: the head commit's, or under a signed-commit
 * policy with an untrusted head, the last trusted commit's, or what runs
 * now when no trusted commit has the service; or a version the operator
 * rolled back to. *commit: the commit it comes from (NULL: a directory). */
static const struct spec_entry *desired_entry(struct agent *a, struct managed *m,
                                              const char *name, struct spec_entry *scratch,
                                              const char **commit)
{
    const struct spec_entry *entry = snapshot_find(&a->snapshot, name);
    *commit = NULL;
    if (m)
        m->refused = NULL;
    if (a->git) {
        const struct agent_git_info *info = agent_git_info(a->git);
        *commit = info->commit;
        const struct service_spec *running =
            m && m->state->primary >= 0 ? m->specs[m->state->primary] : m ? m->specs[0] : NULL;
        /* a policy change in an untrusted commit must not lift the requirement:
         * the running version's policy counts too */
        if (!info->head_trusted &&
            (requires_signature(a, entry ? entry->spec : NULL) || requires_signature(a, running))) {
            if (m)
                m->refused = info->head_refusal;
            const struct spec_entry *trusted = snapshot_find(&a->trusted, name);
            if (trusted) {
                *commit = info->trusted_commit;
                entry = trusted;
            } else if (running) {
                /* no trusted commit has it: keep what runs */
                memset(scratch, 0, sizeof(*scratch));
                scratch->name = (char *)name;
                scratch->file = m->state->sides[m->state->primary >= 0 ? m->state->primary : 0].file;
                scratch->spec = (struct service_spec *)running;
                *commit = NULL;
                entry = scratch;
            } else {
                return NULL; /* not created from an untrusted commit */
            }
        }
    }
    if (m && m->override) {
        const char *asked = entry && entry->spec ? entry->spec->version : "";
        if (strcmp(asked, m->override_for) != 0) {
            log_line("%s: the source asks for a new version; the rollback to %s ends", name,
                     m->override->version);
            spec_free(m->override);
            m->override = NULL;
            mark_dirty(a, m);
        } else {
            memset(scratch, 0, sizeof(*scratch));
            scratch->name = (char *)name;
            scratch->file = m->override->file;
            scratch->spec = m->override;
            *commit = NULL;
            entry = scratch;
        }
    }
    return entry;
}

/* Each side records the commit its version first came from, and the
 * version's spec text goes to the spec store (last known good). */
static void record_versions(struct agent *a, struct managed *m, const struct spec_entry *entry,
                            const char *commit)
{
    if (!entry || !entry->spec)
        return;
    for (int side = 0; side < 2; side++) {
        struct side_state *st = &m->state->sides[side];
        if (!st->used || strcmp(st->version, entry->spec->version) != 0)
            continue;
        if (commit && commit[0] && !st->commit[0]) {
            snprintf(st->commit, sizeof(st->commit), "%s", commit);
            mark_dirty(a, m);
        }
        if (!strcmp(m->stored[side], st->version))
            continue;
        memcpy(m->stored[side], st->version, sizeof(m->stored[side]));
        if (entry->spec == m->override)
            continue; /* it came from the store */
        char *text = NULL;
        size_t length = 0;
        int r = a->git && commit ? agent_git_read_file(a->git, commit, entry->file, &text, &length)
                                 : source_read_file(entry->file, 1 << 20, &text, &length);
        if (r >= 0)
            r = spec_store_put(a->options->state_dir, m->state->name, st->version, text, length);
        if (r < 0)
            log_warn("%s: cannot keep the spec of %s: %s", m->state->name, st->version,
                     strerror(-r));
        free(text);
    }
}

/* After a rollback the source still asks for the rejected version: push a
 * branch that puts the primary's spec back, for a person to merge. */
static void push_revert(struct agent *a, struct managed *m, const struct spec_entry *entry)
{
    if (!a->git || !a->options->revert_branches || !entry || !entry->spec ||
        m->state->primary < 0 || entry->spec == m->override)
        return;
    const struct side_state *primary = &m->state->sides[m->state->primary];
    char *text = NULL;
    size_t length = 0;
    if (spec_store_get(a->options->state_dir, m->state->name, primary->version, &text, &length) <
        0) {
        log_warn("%s: no kept spec of %s: no revert branch", m->state->name, primary->version);
        return;
    }
    const char *why = "";
    for (size_t i = json_array_size(m->state->history); i-- > 0;) {
        json_t *item = json_array_get(m->state->history, i);
        if (!strcmp(json_string_value(json_object_get(item, "event")) ?: "", "rollback_started")) {
            why = json_string_value(json_object_get(item, "detail")) ?: "";
            break;
        }
    }
    const char *name = primary->spec ? primary->spec->version_name : NULL;
    char message[1024], branch[300];
    snprintf(message, sizeof(message),
             "Revert %s to %s\n\nrolld rolled back %s: %s\nMerging this brings the spec back in "
             "line with what runs.\n",
             m->state->name, name ? name : primary->version, entry->spec->version, why);
    if (agent_git_push_revert(a->git, m->state->name, entry->file, text, length, message, branch,
                              sizeof(branch)) == 0) {
        free(m->revert_branch);
        m->revert_branch = strdup(branch);
        mark_dirty(a, m);
    }
    free(text);
}

/* Runs the transition function for one service until it settles. */
static long long reconcile_service(struct agent *a, struct managed *m,
                                   const struct spec_entry *entry, const char *commit,
                                   enum rollout_command command,
                                   struct rollout_result *command_result)
{
    char error[1024];
    enum service_phase start_phase = m->state->phase;
    struct rollout_input in = {0};
    in.rollback_surge = a->command_surge;
    in.desired = entry ? entry->spec : NULL;
    in.desired_invalid = entry && !entry->spec;
    in.desired_error = first_error(entry, error, sizeof(error));
    struct resource_need available;
    bool inventory = a->options->inventory.declared;
    struct resource_need own = inventory ? service_need(m) : (struct resource_need){0, 0, 0};
    long long wake_at = 0;
    for (int step = 0; step < MAX_STEPS_PER_PASS; step++) {
        refresh_specs(m);
        const struct service_spec *basis =
            in.desired ? in.desired
                       : (m->state->primary >= 0 ? m->specs[m->state->primary] : m->specs[0]);
        in.policy = policy_for(a, basis);
        if (!in.policy)
            return 0;
        observe(a, m, &in.observation);
        in.available = available_for(a, &own, &available) ? &available : NULL;
        in.now_ms = wall_ms();
        in.command = step == 0 ? command : COMMAND_NONE;
        enum service_phase before = m->state->phase;
        size_t events = json_array_size(m->state->history);
        const json_t *last_event = json_array_get(m->state->history, events ? events - 1 : 0);
        struct rollout_result result = rollout_step(m->state, &in);
        count_rollout_events(a, m, last_event);
        size_t now_events = json_array_size(m->state->history);
        /* the history keeps its newest 20: a new item is a new last item */
        if (m->state->phase != before ||
            (now_events && json_array_get(m->state->history, now_events - 1) != last_event)) {
            json_t *last = json_array_get(m->state->history, json_array_size(m->state->history) - 1);
            log_line("%s: %s (%s%s%s)", m->state->name, service_phase_name(m->state->phase),
                     json_string_value(json_object_get(last, "event")) ?: "",
                     json_string_length(json_object_get(last, "detail")) ? ": " : "",
                     json_string_value(json_object_get(last, "detail")) ?: "");
        }
        if (step == 0 && command != COMMAND_NONE && command_result)
            *command_result = result;
        if (result.wake_at_ms && (!wake_at || result.wake_at_ms < wake_at))
            wake_at = result.wake_at_ms;
        if (!result.changed)
            break;
        mark_dirty(a, m);
        refresh_specs(m);
        /* persist the intent, then act on it */
        sync_compute(a, m, in.policy);
        if (m->state->removed)
            break;
    }
    /* the adapters move on their own too (a replica became ready: the next
     * wave of an in-place update may start), so they are synced every pass */
    if (in.policy && !m->state->removed)
        sync_compute(a, m, in.policy);
    if (inventory) {
        struct resource_need now = service_need(m);
        used_moved(a, &own, &now);
    }
    if (!m->state->removed) {
        record_versions(a, m, entry, commit);
        if (m->state->phase == PHASE_ROLLED_BACK && start_phase != PHASE_ROLLED_BACK)
            push_revert(a, m, entry);
    }
    return wake_at;
}

/* Even with nothing to wait for, look again now and then: a level-triggered
 * loop heals what an event missed (a lost inotify, a replica's state that
 * moved without an event). A router that died is noticed sooner, by the
 * autoscale tick (ROUTER_CHECK_TICKS).
 * Every RESYNC_MS, or less often on a host whose pass is long: these passes
 * take at most 1/RESYNC_SHARE of a core (a pass of 20 ms of CPU: every
 * 100 s), up to RESYNC_MAX_MS: a backstop, kept to a small share of an idle
 * agent's budget. Events (a save, a push, a replica that
 * changed, a step's timer) still start a pass at once. */
#define RESYNC_MS 10000
#define RESYNC_MAX_MS 120000
#define RESYNC_SHARE 5000

static void schedule_wake(struct agent *a, long long at)
{
    long long every = a->pass_cpu_ms * RESYNC_SHARE;
    every = every < RESYNC_MS ? RESYNC_MS : every > RESYNC_MAX_MS ? RESYNC_MAX_MS : every;
    long long resync = wall_ms() + every;
    if (!at || at > resync)
        at = resync;
    sd_event_source_set_time(a->wake, (uint64_t)at * 1000);
    sd_event_source_set_enabled(a->wake, SD_EVENT_ONESHOT);
}

static void reload_snapshot(struct agent *a)
{
    struct snapshot next, trusted = {0};
    struct diag diag = DIAG_INIT;
    if (a->git ? agent_git_snapshots(a->git, &a->snapshot, &a->trusted, &next, &trusted, &diag) < 0
               : source_dir_reload(a->options->source_path, &a->snapshot, &next, &diag) < 0) {
        /* keep the last good snapshot: an unreadable source changes nothing */
        if (diag.count)
            log_line("%s: %s", diag.entries[0].file, diag.entries[0].message);
        diag_clear(&diag);
        return;
    }
    diag_clear(&diag);
    for (size_t i = 0; i < next.count; i++)
        for (size_t e = 0; e < next.entries[i].errors.count; e++) {
            struct diag_entry *d = &next.entries[i].errors.entries[e];
            log_line("%s:%d:%d: %s%s%s", d->file, d->line, d->column, d->field,
                     d->field[0] ? ": " : "", d->message);
        }
    /* the agent keeps specs as text (spec_compact); an entry taken over
     * from the last snapshot is compact already */
    for (size_t i = 0; i < next.count; i++)
        if (next.entries[i].spec)
            spec_compact(next.entries[i].spec);
    for (size_t i = 0; i < trusted.count; i++)
        if (trusted.entries[i].spec)
            spec_compact(trusted.entries[i].spec);
    snapshot_clear(&a->snapshot);
    a->snapshot = next;
    snapshot_clear(&a->trusted);
    a->trusted = trusted;
}

/* systemd (Type=notify): READY=1 once the first pass is done, and a
 * STATUS= line saying what the agent does whenever that changes. */
static void notify_systemd(struct agent *a)
{
    int phases[PHASE_COUNT] = {0};
    for (size_t i = 0; i < a->count; i++)
        phases[a->services[i].state->phase]++;
    char status[256];
    int n = snprintf(status, sizeof(status), "%zu services", a->count);
    const char *separator = ":";
    for (int p = 0; p < PHASE_COUNT && n < (int)sizeof(status); p++) {
        if (!phases[p])
            continue;
        n += snprintf(status + n, sizeof(status) - (size_t)n, "%s %d %s", separator, phases[p],
                      service_phase_name(p));
        separator = ",";
    }
    if (a->git && n < (int)sizeof(status)) {
        const struct agent_git_info *info = agent_git_info(a->git);
        n += snprintf(status + n, sizeof(status) - (size_t)n, "; %s at %.12s%s",
                      a->options->git_branch, info->commit[0] ? info->commit : "(none)",
                      info->fetch_error[0] ? ", fetch failing" : "");
    }
    if (!a->ready_sent) {
        sd_notifyf(0, "READY=1\nSTATUS=%s", status);
        a->ready_sent = true;
    } else if (strcmp(status, a->notify_status) != 0) {
        sd_notifyf(0, "STATUS=%s", status);
    }
    snprintf(a->notify_status, sizeof(a->notify_status), "%s", status);
}

/* glibc keeps what was freed (start-up, a large reload) in the heap, in
 * pieces it cannot give back from the top; malloc_trim() returns the free
 * pages of the whole heap. A few ms for a large heap: at most once in
 * TRIM_EVERY_MS, at the end of a pass. */
#define TRIM_EVERY_MS 10000
#define TRIM_FREE_BYTES (1u << 20)

/* After a pass: gives free heap back to the system, at most every
 * TRIM_EVERY_MS; one put off runs when that time is up (the last passes of
 * a busy spell would otherwise leave their garbage in the RSS until the
 * next resync, minutes later). */
static void trim_heap(struct agent *a, const struct timespec *now)
{
    long long ms = (long long)now->tv_sec * 1000 + now->tv_nsec / 1000000;
    if (a->trimmed_ms && ms - a->trimmed_ms < TRIM_EVERY_MS) {
        int on = SD_EVENT_OFF;
        if (a->trim && sd_event_source_get_enabled(a->trim, &on) >= 0 && on == SD_EVENT_OFF) {
            sd_event_source_set_time(a->trim, (uint64_t)(a->trimmed_ms + TRIM_EVERY_MS) * 1000);
            sd_event_source_set_enabled(a->trim, SD_EVENT_ONESHOT);
        }
        return;
    }
    a->trimmed_ms = ms;
    if (a->trim)
        sd_event_source_set_enabled(a->trim, SD_EVENT_OFF); /* this is the one put off */
    /* only with something worth giving back: the pages given back are
     * faulted in again by the next pass that needs them */
    struct mallinfo2 info = mallinfo2();
    if (info.fordblks >= TRIM_FREE_BYTES)
        malloc_trim(0);
}

static int on_trim(sd_event_source *source, uint64_t usec, void *userdata)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    trim_heap(userdata, &now);
    return 0;
}

static struct rollout_result reconcile(struct agent *a, const char *command_service,
                                       enum rollout_command command)
{
    struct rollout_result command_result = {.reply = "no such service", .command_failed = true};
    struct timespec started, cpu_started;
    clock_gettime(CLOCK_MONOTONIC, &started);
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu_started);
    if (a->snapshot_stale) {
        reload_snapshot(a);
        a->snapshot_stale = false;
    }
    /* new services */
    struct spec_entry scratch;
    const char *commit;
    for (size_t i = 0; i < a->snapshot.count; i++) {
        const struct spec_entry *entry = &a->snapshot.entries[i];
        if (!entry->spec || !entry->name || find_managed(a, entry->name))
            continue;
        if (entry != snapshot_find(&a->snapshot, entry->name) ||
            !desired_entry(a, NULL, entry->name, &scratch, &commit))
            continue;
        struct service_state *state = service_state_new(entry->name);
        if (state && !add_managed(a, state))
            service_state_free(state);
    }
    long long wake_at = 0;
    sum_used(a);
    for (size_t i = 0; i < a->count; i++) {
        struct managed *m = &a->services[i];
        const struct spec_entry *entry = desired_entry(a, m, m->state->name, &scratch, &commit);
        bool targeted = command_service && !strcmp(command_service, m->state->name);
        long long at = reconcile_service(a, m, entry, commit, targeted ? command : COMMAND_NONE,
                                         targeted ? &command_result : NULL);
        if (at && (!wake_at || at < wake_at))
            wake_at = at;
    }
    if (a->dirty)
        save_state(a); /* intent on disk before any process starts */
    apply_router(a);
    if (a->compute.launch_pending(a->compute.instance) > 0)
        a->dirty = true;
    /* the status says what the router already does */
    for (size_t i = 0; i < a->count; i++) {
        struct managed *m = &a->services[i];
        if (m->state->removed)
            continue;
        char error[1024];
        write_status(a, m, first_error(desired_entry(a, m, m->state->name, &scratch, &commit),
                                       error, sizeof(error)));
    }
    /* forget services whose deletion finished */
    size_t kept = 0;
    for (size_t i = 0; i < a->count; i++) {
        if (a->services[i].state->removed) {
            remove_status(a, a->services[i].state->name);
            metrics_service_remove(a->metrics, a->services[i].state->name);
            spec_store_remove(a->options->state_dir, a->services[i].state->name);
            managed_clear(&a->services[i]);
            a->dirty = true;
        } else {
            a->services[kept++] = a->services[i];
        }
    }
    a->count = kept;
    if (a->dirty) {
        save_state(a);
        a->dirty = false;
    }
    struct timespec cpu_ended;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &cpu_ended);
    a->pass_cpu_ms = (cpu_ended.tv_sec - cpu_started.tv_sec) * 1000LL +
                     (cpu_ended.tv_nsec - cpu_started.tv_nsec) / 1000000;
    schedule_wake(a, wake_at);
    notify_systemd(a);
    struct timespec ended;
    clock_gettime(CLOCK_MONOTONIC, &ended);
    trim_heap(a, &ended);
    metrics_reconcile_observed(a->metrics, (double)(ended.tv_sec - started.tv_sec) +
                                               (double)(ended.tv_nsec - started.tv_nsec) / 1e9);
    metrics_set_ready(a->metrics, true);
    return command_result;
}

/* ---- autoscaling ---- */

static void request_reconcile(void *userdata);

#define AUTOSCALE_TICK_MS 1000
#define ROUTER_CHECK_TICKS 10

static int on_autoscale_tick(sd_event_source *source, uint64_t usec, void *userdata)
{
    struct agent *a = userdata;
    bool changed = false;
    long long now = wall_ms();
    for (size_t i = 0; i < a->count; i++) {
        struct managed *m = &a->services[i];
        if (!m->autoscaling)
            continue;
        for (int side = 0; side < 2; side++) {
            struct service_spec *spec = m->specs[side];
            int capacity = m->state->sides[side].used ? m->state->sides[side].capacity : 0;
            for (size_t k = 0; spec && capacity > 0 && k < spec->application_count; k++) {
                struct application_spec *app = &spec->applications[k];
                bool any = false;
                for (size_t j = 0; j < app->deployment_count; j++)
                    any = any || app->deployments[j].autoscaling;
                if (!any)
                    continue;
                double ongoing = a->router.ongoing(a->router.instance, m->state->name, side,
                                                   app->name);
                for (size_t j = 0; j < app->deployment_count; j++) {
                    struct deployment_spec *d = &app->deployments[j];
                    if (!d->autoscaling)
                        continue;
                    struct autoscale_entry *e = scale_entry(m, side, spec->version, app->name, d);
                    if (!e)
                        continue;
                    struct autoscale_bounds bounds = {
                        d->min_replicas, d->max_replicas,
                        side == m->state->canary ? d->initial_replicas : 0};
                    long long up = (long long)(1000 * d->upscale_delay_s);
                    long long down = (long long)(1000 * d->downscale_delay_s);
                    int before = e->st.replicas;
                    if (autoscale_decide(&e->st, &bounds, d->target_ongoing_requests, ongoing,
                                         capacity, up, down, now)) {
                        d->num_replicas = e->st.replicas;
                        log_line("%s: %s/%s autoscaled %d -> %d replicas (%.0f requests in "
                                 "flight)",
                                 m->state->name, app->name, d->name, before, e->st.replicas,
                                 ongoing);
                        changed = true;
                        mark_dirty(a, m);
                    }
                }
            }
        }
    }
    if (changed)
        request_reconcile(a);
    /* the router is watched more often than the full resync comes: a
     * dead HAProxy is started again within ROUTER_CHECK_TICKS seconds */
    if (++a->ticks % ROUTER_CHECK_TICKS == 0 && a->router.serving &&
        !a->router.serving(a->router.instance)) {
        log_warn("router: not serving what it was given; applying again");
        request_reconcile(a);
    }
    uint64_t next;
    sd_event_now(a->event, CLOCK_MONOTONIC, &next);
    sd_event_source_set_time(source, next + AUTOSCALE_TICK_MS * 1000ULL);
    sd_event_source_set_enabled(source, SD_EVENT_ON);
    return 0;
}

/* ---- events ---- */

static int on_reconcile_soon(sd_event_source *source, void *userdata)
{
    struct agent *a = userdata;
    reconcile(a, NULL, COMMAND_NONE);
    return 0;
}

static void request_reconcile(void *userdata)
{
    struct agent *a = userdata;
    sd_event_source_set_enabled(a->reconcile_soon, SD_EVENT_ONESHOT);
}

static int on_wake(sd_event_source *source, uint64_t usec, void *userdata)
{
    request_reconcile(userdata);
    return 0;
}

static int on_debounce(sd_event_source *source, uint64_t usec, void *userdata)
{
    struct agent *a = userdata;
    a->snapshot_stale = true;
    request_reconcile(a);
    return 0;
}

static int on_source_change(sd_event_source *source, const struct inotify_event *event,
                            void *userdata)
{
    struct agent *a = userdata;
    /* an editor's save is several events; wait for quiet */
    uint64_t now;
    sd_event_now(a->event, CLOCK_MONOTONIC, &now);
    sd_event_source_set_time(a->debounce, now + (uint64_t)a->options->debounce_ms * 1000);
    sd_event_source_set_enabled(a->debounce, SD_EVENT_ONESHOT);
    return 0;
}

static void on_git_changed(void *userdata)
{
    struct agent *a = userdata;
    a->snapshot_stale = true;
    request_reconcile(a);
}

static bool endpoint_idle(void *userdata, const char *service, int port)
{
    struct agent *a = userdata;
    return a->router.endpoint_idle(a->router.instance, service, port);
}

/* SIGHUP: what the config file says now, for what can change while the
 * agent runs (inventory, policies, signing keys, fetch interval, log
 * format); the rest (source, state dir, router, listen addresses) takes a
 * restart, and the log says so. An invalid file changes nothing. */
static void reload_config(struct agent *a)
{
    struct agent_config *c = a->options;
    if (!c->file)
        return;
    char *text = NULL;
    size_t length = 0;
    int r = source_read_file(c->file, 1 << 20, &text, &length);
    if (r < 0) {
        log_warn("SIGHUP: cannot read %s: %s; the config is unchanged", c->file, strerror(-r));
        return;
    }
    struct agent_config next;
    struct diag diag = DIAG_INIT;
    config_init(&next);
    r = config_parse(text, length, c->file, &next, &diag);
    free(text);
    for (size_t i = 0; i < diag.count; i++) {
        const struct diag_entry *d = &diag.entries[i];
        log_warn("%s:%d:%d: %s: %s", d->file, d->line, d->column, d->field, d->message);
    }
    diag_clear(&diag);
    if (r < 0) {
        log_warn("SIGHUP: %s is invalid; the config is unchanged", c->file);
        config_clear(&next);
        return;
    }
    /* options given on the command line win over the file, as at start */
    bool restart = (next.source_kind == SOURCE_GIT && c->source_kind == SOURCE_GIT &&
                    strcmp(next.git_url, c->git_url) != 0) ||
                   (next.metrics_listen && c->metrics_listen &&
                    strcmp(next.metrics_listen, c->metrics_listen) != 0);
    if (restart)
        log_warn("SIGHUP: a new source or listen address takes a restart; the rest is "
                 "applied");
    c->inventory = next.inventory;
    if (c->inventory.declared && c->inventory.cpus <= 0)
        c->inventory.cpus = 1e9;
    process_backend_set_gpus(a->compute.instance, c->inventory.gpus, c->inventory.gpu_count);
    c->fetch_interval_s = next.fetch_interval_s;
    c->log_format = next.log_format;
    c->revert_branches = next.revert_branches;
    log_setup(c->log_format);
    /* the strings now come from next, which stays alive until the next reload */
    c->allowed_signers = next.allowed_signers;
    c->gpg_keyring = next.gpg_keyring;
    if (next.policies_dir) {
        struct policy_set policies = {0};
        struct diag pdiag = DIAG_INIT;
        cli_load_policies(next.policies_dir, &policies, &pdiag);
        if (policy_set_find(&policies, POLICY_DEFAULT_NAME) && !pdiag.count) {
            policy_set_clear(&a->policies);
            a->policies = policies;
        } else {
            log_warn("SIGHUP: the policies in %s are not all valid; they are unchanged",
                     next.policies_dir);
            policy_set_clear(&policies);
        }
        diag_clear(&pdiag);
    }
    config_clear(&a->reloaded);
    a->reloaded = next;
    log_line("SIGHUP: %s read again", c->file);
}

static int on_signal(sd_event_source *source, const struct signalfd_siginfo *si, void *userdata)
{
    struct agent *a = userdata;
    if (si->ssi_signo == SIGHUP) {
        sd_notify(0, "RELOADING=1\nSTATUS=reading the config and the source again");
        reload_config(a);
        if (a->git)
            agent_git_fetch_now(a->git);
        a->snapshot_stale = true;
        reconcile(a, NULL, COMMAND_NONE);
        sd_notify(0, "READY=1");
        return 0;
    }
    sd_notify(0, "STOPPING=1\nSTATUS=stopping; replicas and HAProxy keep serving");
    log_line("stopping on signal %u; replicas and HAProxy keep serving", si->ssi_signo);
    return sd_event_exit(sd_event_source_get_event(source), 0);
}

/* ---- control socket: one JSON request per connection ---- */

/* The spec of a kept version, checked to be that version. */
static struct service_spec *kept_spec(struct agent *a, const char *service, const char *version,
                                      char *message, size_t size)
{
    char *text = NULL, file[4200];
    size_t length = 0;
    snprintf(file, sizeof(file), "%s/specs/%s/%s.yaml", a->options->state_dir, service, version);
    /* a version id, or a version_name of a kept version */
    char found[17] = "";
    if (spec_store_get(a->options->state_dir, service, version, &text, &length) < 0 &&
        spec_store_find_name(a->options->state_dir, service, version, found) == 0) {
        version = found;
        snprintf(file, sizeof(file), "%s/specs/%s/%s.yaml", a->options->state_dir, service,
                 version);
        spec_store_get(a->options->state_dir, service, version, &text, &length);
    }
    if (!text) {
        snprintf(message, size, "no kept spec of version %s of %s (see %s/specs/%s/)", version,
                 service, a->options->state_dir, service);
        return NULL;
    }
    struct diag diag = DIAG_INIT;
    struct service_spec *spec = spec_parse(text, length, file, &diag);
    free(text);
    diag_clear(&diag);
    if (!spec || strcmp(spec->version, version) != 0) {
        snprintf(message, size, "the kept spec %s does not parse to version %s", file, version);
        spec_free(spec);
        return NULL;
    }
    return spec;
}

/* rolld rollback SERVICE --to VERSION: run a kept version, whatever the
 * source says, until the source asks for a different version. */
static bool rollback_to(struct agent *a, const char *service, const char *version, char *message,
                        size_t size)
{
    struct managed *m = find_managed(a, service);
    if (!m) {
        snprintf(message, size, "no such service");
        return false;
    }
    struct service_spec *spec = kept_spec(a, service, version, message, size);
    if (!spec)
        return false;
    struct spec_entry scratch;
    const char *commit;
    spec_free(m->override);
    m->override = NULL;
    const struct spec_entry *entry = desired_entry(a, m, service, &scratch, &commit);
    snprintf(m->override_for, sizeof(m->override_for), "%s",
             entry && entry->spec ? entry->spec->version : "");
    m->override = spec;
    mark_dirty(a, m);
    snprintf(message, size, "%s goes back to %s until the source asks for a version other than %s",
             service, version, m->override_for[0] ? m->override_for : "none");
    log_line("%s", message);
    return true;
}

static int on_control(sd_event_source *source, int fd, uint32_t revents, void *userdata)
{
    struct agent *a = userdata;
    int client = accept4(fd, NULL, NULL, SOCK_CLOEXEC);
    if (client < 0)
        return 0;
    struct timeval timeout = {2, 0};
    setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
    char buf[4096];
    ssize_t n = read(client, buf, sizeof(buf) - 1);
    json_t *reply;
    if (n <= 0) {
        close(client);
        return 0;
    }
    buf[n] = 0;
    json_t *request = json_loads(buf, 0, NULL);
    const char *command = json_string_value(json_object_get(request, "command"));
    const char *service = json_string_value(json_object_get(request, "service"));
    const char *to = json_string_value(json_object_get(request, "to"));
    if (command && !strcmp(command, "sync")) {
        if (a->git)
            agent_git_fetch_now(a->git);
        a->snapshot_stale = true;
        reconcile(a, NULL, COMMAND_NONE);
        reply = json_pack("{s:b, s:s}", "ok", 1, "message",
                          a->git ? "fetch started; the source is read again when it ends"
                                 : "source read again");
    } else if (command && service && to && !strcmp(command, "rollback")) {
        char message[512];
        bool ok = rollback_to(a, service, to, message, sizeof(message));
        if (ok) {
            a->snapshot_stale = true;
            reconcile(a, NULL, COMMAND_NONE);
            request_reconcile(a);
        }
        reply = json_pack("{s:b, s:s}", "ok", ok, "message", message);
    } else if (command && service && (!strcmp(command, "rollback") || !strcmp(command, "retry"))) {
        a->snapshot_stale = true;
        enum rollout_command c = !strcmp(command, "rollback") ? COMMAND_ROLLBACK : COMMAND_RETRY;
        a->command_surge = (int)json_integer_value(json_object_get(request, "max_surge_percent"));
        struct rollout_result result = reconcile(a, service, c);
        a->command_surge = 0;
        reply = json_pack("{s:b, s:s}", "ok", !result.command_failed, "message",
                          result.reply ? result.reply : "done");
        /* keep moving: the rollback itself takes more steps */
        request_reconcile(a);
    } else {
        reply = json_pack("{s:b, s:s}", "ok", 0, "message", "unknown command");
    }
    char *text = json_dumps(reply, JSON_COMPACT);
    if (text) {
        if (write(client, text, strlen(text)) < 0 || write(client, "\n", 1) < 0)
            log_warn("control: cannot answer");
        free(text);
    }
    json_decref(reply);
    json_decref(request);
    close(client);
    return 0;
}

static int open_control_socket(struct agent *a)
{
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    struct sockaddr_un addr;
    unix_address(&addr, a->control_path);
    unlink(a->control_path);
    if (bind(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(fd, 16) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    chmod(a->control_path, 0600);
    int r = sd_event_add_io(a->event, &a->control, fd, EPOLLIN, on_control, a);
    if (r < 0) {
        close(fd);
        return r;
    }
    sd_event_source_set_io_fd_own(a->control, 1);
    return 0;
}

/* ---- start ---- */

static int load_state(struct agent *a, json_t **replicas)
{
    json_t *doc = NULL;
    int r = state_store_load(a->state_path, &doc);
    if (r < 0) {
        log_warn("cannot read %s: %s; refusing to start over it", a->state_path, strerror(-r));
        return r;
    }
    *replicas = json_incref(json_object_get(doc, "replicas"));
    const char *name;
    json_t *value;
    json_object_foreach(json_object_get(doc, "services"), name, value)
    {
        struct service_state *state = service_state_from_json(name, value);
        if (!state) {
            log_warn("state of service %s is unreadable; it is skipped", name);
            continue;
        }
        struct managed *m = add_managed(a, state);
        if (!m) {
            service_state_free(state);
            continue;
        }
        size_t k;
        json_t *item;
        json_array_foreach(json_object_get(value, "autoscale"), k, item)
        {
            struct autoscale_entry *grown = realloc(m->scale, (m->scale_count + 1) * sizeof(*grown));
            if (!grown)
                break;
            m->scale = grown;
            struct autoscale_entry *e = &m->scale[m->scale_count++];
            memset(e, 0, sizeof(*e));
            e->side = (int)json_integer_value(json_object_get(item, "side"));
            snprintf(e->version, sizeof(e->version), "%s",
                     json_string_value(json_object_get(item, "version")) ?: "");
            snprintf(e->application, sizeof(e->application), "%s",
                     json_string_value(json_object_get(item, "application")) ?: "");
            snprintf(e->deployment, sizeof(e->deployment), "%s",
                     json_string_value(json_object_get(item, "deployment")) ?: "");
            e->st.replicas = (int)json_integer_value(json_object_get(item, "replicas"));
        }
        const char *revert = json_string_value(json_object_get(value, "revert_branch"));
        m->revert_branch = revert ? strdup(revert) : NULL;
        json_t *override = json_object_get(value, "override");
        const char *version = json_string_value(json_object_get(override, "version"));
        if (version) {
            char message[512];
            m->override = kept_spec(a, name, version, message, sizeof(message));
            snprintf(m->override_for, sizeof(m->override_for), "%s",
                     json_string_value(json_object_get(override, "for")) ?: "");
            if (!m->override)
                log_line("%s: %s; the rollback to %s is forgotten", name, message, version);
        }
    }
    json_decref(doc);
    return 0;
}

static int make_dir(const char *path)
{
    if (mkdir(path, 0755) < 0 && errno != EEXIST)
        return -errno;
    return 0;
}

int agent_run(const struct agent_config *given)
{
    /* absolute paths: HAProxy, replicas and their working dirs see them too */
    struct agent_config absolute = *given;
    char state_dir[PATH_MAX], source[PATH_MAX];
    int r;
    if ((r = make_dir(given->state_dir)) < 0) {
        log_warn("cannot create state dir %s: %s", given->state_dir, strerror(-r));
        return 1;
    }
    if (!realpath(given->state_dir, state_dir)) {
        log_warn("cannot resolve %s: %s", given->state_dir, strerror(errno));
        return 1;
    }
    absolute.state_dir = state_dir;
    if (given->source_kind == SOURCE_DIRECTORY) {
        if (!realpath(given->source_path, source)) {
            log_warn("cannot resolve %s: %s", given->source_path, strerror(errno));
            return 1;
        }
        absolute.source_path = source;
    }
    struct agent_config *options = &absolute;
    struct agent agent = {.options = options};
    config_init(&agent.reloaded);
    log_setup(options->log_format);
    struct agent *a = &agent;
    snprintf(a->state_path, sizeof(a->state_path), "%s/state.json", options->state_dir);
    snprintf(a->status_dir, sizeof(a->status_dir), "%s/status", options->state_dir);
    snprintf(a->control_path, sizeof(a->control_path), "%s/control.sock", options->state_dir);
    make_dir(a->status_dir);

    struct diag diag = DIAG_INIT;
    cli_load_policies(options->policies_dir, &a->policies, &diag);
    for (size_t i = 0; i < diag.count; i++) {
        diag_format(&diag.entries[i], stderr);
        fputc('\n', stderr);
    }
    diag_clear(&diag);
    if (!policy_set_find(&a->policies, POLICY_DEFAULT_NAME)) {
        log_line("no '%s' policy found; pass --policies DIR", POLICY_DEFAULT_NAME);
        return 1;
    }

    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    signal(SIGPIPE, SIG_IGN);
    /* Fixed thresholds: by default glibc raises the mmap threshold to the
     * size of each large block freed (a scrape's 1.5 MB text), and the next
     * ones then come from the heap and stay in the RSS until a trim; blocks
     * of a mebibyte and more are mmapped and go back when freed. Below it,
     * libgit2's buffers of a fetch are reused from the heap (at 128 KiB each
     * fetch mapped and faulted them in again). The heap's top is given back
     * by trim_heap(), not by every free() over 128 KiB. */
    mallopt(M_MMAP_THRESHOLD, 1024 * 1024);
    mallopt(M_TRIM_THRESHOLD, 4 * 1024 * 1024);

    json_t *replicas = NULL;
    /* a loop of its own, not sd_event_default(): the default loop checks
     * with a gettid() system call at every iteration that it runs in its
     * thread, and an idle agent with 1,000 replicas iterates some 100 times
     * a second (a health check's answer each) */
    if ((r = sd_event_new(&a->event)) < 0 || (r = load_state(a, &replicas)) < 0)
        return 1;

    char haproxy_dir[4200];
    snprintf(haproxy_dir, sizeof(haproxy_dir), "%s/haproxy", options->state_dir);
    struct haproxy_config hc = {haproxy_dir, options->haproxy_binary, options->pin_header};
    struct process_config pc = {options->state_dir, options->port_min, options->port_max,
                                endpoint_idle, a, request_reconcile, options->inventory.gpus,
                                options->inventory.gpu_count};
    if ((r = haproxy_router_new(&hc, &a->router)) < 0 ||
        (r = process_backend_new(a->event, &pc, replicas, &a->compute)) < 0) {
        log_warn("cannot start the adapters: %s", strerror(-r));
        json_decref(replicas);
        return 1;
    }
    json_decref(replicas);

    sd_event_add_signal(a->event, NULL, SIGTERM, on_signal, a);
    sd_event_add_signal(a->event, NULL, SIGINT, on_signal, a);
    sd_event_add_signal(a->event, NULL, SIGHUP, on_signal, a);
    sd_event_add_time_relative(a->event, &a->autoscale, CLOCK_MONOTONIC,
                               AUTOSCALE_TICK_MS * 1000ULL, 100000, on_autoscale_tick, a);
    sd_event_add_defer(a->event, &a->reconcile_soon, on_reconcile_soon, a);
    sd_event_source_set_enabled(a->reconcile_soon, SD_EVENT_OFF);
    sd_event_add_time(a->event, &a->debounce, CLOCK_MONOTONIC, UINT64_MAX, 1000, on_debounce, a);
    sd_event_source_set_enabled(a->debounce, SD_EVENT_OFF);
    sd_event_add_time(a->event, &a->wake, CLOCK_REALTIME, UINT64_MAX, 1000, on_wake, a);
    sd_event_source_set_enabled(a->wake, SD_EVENT_OFF);
    sd_event_add_time(a->event, &a->publish, CLOCK_MONOTONIC, UINT64_MAX, 1000, on_publish, a);
    sd_event_source_set_enabled(a->publish, SD_EVENT_OFF);
    sd_event_add_time(a->event, &a->trim, CLOCK_MONOTONIC, UINT64_MAX, 1000000, on_trim, a);
    sd_event_source_set_enabled(a->trim, SD_EVENT_OFF);
    if (options->metrics_listen) {
        char err[512];
        if (metrics_open(options->metrics_listen, &a->metrics, err, sizeof(err)) < 0) {
            log_warn("%s", err);
            return 1;
        }
        metrics_set_build_version(a->metrics, ROLLD_VERSION);
        log_line("metrics on http://%s/metrics", options->metrics_listen);
    }
    if (options->source_kind == SOURCE_GIT) {
        if (agent_git_open(options, a->event, on_git_changed, a, &a->git) < 0)
            return 1;
        /* the first fetch happened inside agent_git_open */
        const struct agent_git_info *info = agent_git_info(a->git);
        if (info->fetched_ms)
            metrics_fetch_succeeded(a->metrics, (double)info->fetched_ms / 1000);
        else if (info->fetch_error[0])
            metrics_fetch_failed(a->metrics);
        agent_git_set_metrics(a->git, a->metrics);
    } else {
        r = sd_event_add_inotify(a->event, NULL, options->source_path,
                                 IN_CLOSE_WRITE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE |
                                     IN_CREATE | IN_ATTRIB,
                                 on_source_change, a);
        if (r < 0) {
            log_warn("cannot watch %s: %s", options->source_path, strerror(-r));
            return 1;
        }
    }
    if ((r = open_control_socket(a)) < 0) {
        log_warn("cannot open %s: %s", a->control_path, strerror(-r));
        return 1;
    }
    a->snapshot_stale = true;
    reconcile(a, NULL, COMMAND_NONE);
    /* WatchdogSec=: from here on sd-event sends WATCHDOG=1 from the loop
     * itself, so a hung loop (not just a live process) is what systemd
     * restarts; not before READY=1, since any WATCHDOG=1 arms systemd's
     * watchdog and a first pass (a first clone) may take longer */
    if ((r = sd_event_set_watchdog(a->event, 1)) < 0)
        log_warn("cannot feed the watchdog: %s", strerror(-r));
    log_line("running: %zu services from %s, state in %s", a->count,
             a->git ? options->git_url : options->source_path, options->state_dir);
    r = sd_event_loop(a->event);

    save_state(a);
    if (a->publish_pending)
        on_publish(a->publish, 0, a); /* the last word goes to the status branch too */
    if (a->git)
        agent_git_publish_flush(a->git);
    unlink(a->control_path);
    for (size_t i = 0; i < a->count; i++)
        managed_clear(&a->services[i]);
    free(a->services);
    snapshot_clear(&a->snapshot);
    snapshot_clear(&a->trusted);
    agent_git_free(a->git);
    metrics_free(a->metrics);
    for (size_t i = 0; i < a->gone_count; i++)
        free(a->gone[i]);
    free(a->gone);
    sd_event_source_disable_unref(a->publish);
    sd_event_source_disable_unref(a->trim);
    policy_set_clear(&a->policies);
    config_clear(&a->reloaded);
    a->compute.free(a->compute.instance);
    a->router.free(a->router.instance);
    sd_event_source_disable_unref(a->reconcile_soon);
    sd_event_source_disable_unref(a->debounce);
    sd_event_source_disable_unref(a->wake);
    sd_event_source_disable_unref(a->autoscale);
    sd_event_source_disable_unref(a->control);
    sd_event_unref(a->event);
    return r < 0 ? 1 : 0;
}
