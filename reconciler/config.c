#include "config.h"

#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "decode.h"
#include "yaml_tree.h"

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static const char *const log_formats[] = {"text", "json", NULL};

static const struct field_schema git_fields[] = {
    {"url", FIELD_STRING, 0, 0, NULL, NULL, true, NULL},
    {"branch", FIELD_STRING, 0, 0, NULL, NULL, false, "\"main\""},
    {"directory", FIELD_STRING, 0, 0, NULL, NULL, false, "\"\""},
    {"fetch_interval", FIELD_DURATION, 1, 86400, NULL, NULL, false, "30"},
    {"watch", FIELD_BOOL, 0, 0, NULL, NULL, false, "true"},
    {"ssh_key", FIELD_STRING, 0, 0, NULL, NULL, false, NULL},
    {"token_file", FIELD_STRING, 0, 0, NULL, NULL, false, NULL},
    {"username", FIELD_STRING, 0, 0, NULL, NULL, false, NULL},
};
static const struct object_schema git_object = {git_fields, COUNT(git_fields), NULL};

static void source_check(struct decode_context *ctx, const struct ynode *node, json_t *out,
                         const char *path)
{
    /* judged on what was written, so that an error inside git: does not also
     * count as a missing source */
    const struct ynode *dir_node = ynode_map_get(node, "directory");
    const struct ynode *git_node = ynode_map_get(node, "git");
    bool dir = dir_node && !ynode_is_null(dir_node), git = git_node && !ynode_is_null(git_node);
    if (dir == git)
        decode_error(ctx, node, path[0] ? path : "source",
                     "give exactly one of source.directory (a spec directory) and source.git "
                     "(a repository)");
}

static const struct field_schema source_fields[] = {
    {"directory", FIELD_STRING, 0, 0, NULL, NULL, false, NULL},
    {"git", FIELD_OBJECT, 0, 0, &git_object, NULL, false, NULL},
    {"debounce_ms", FIELD_INT, 0, 10000, NULL, NULL, false, "30"},
};
static const struct object_schema source_object = {source_fields, COUNT(source_fields),
                                                   source_check};

static const struct field_schema author_fields[] = {
    {"name", FIELD_STRING, 0, 0, NULL, NULL, false, "\"rolld\""},
    {"email", FIELD_STRING, 0, 0, NULL, NULL, false, NULL},
};
static const struct object_schema author_object = {author_fields, COUNT(author_fields), NULL};

static const struct field_schema status_fields[] = {
    {"git", FIELD_BOOL, 0, 0, NULL, NULL, false, NULL},
    {"branch", FIELD_STRING, 0, 0, NULL, NULL, false, "\"rolld/status\""},
    {"author", FIELD_OBJECT, 0, 0, &author_object, NULL, false, "{}"},
    {"revert_branches", FIELD_BOOL, 0, 0, NULL, NULL, false, "true"},
};
static const struct object_schema status_object = {status_fields, COUNT(status_fields), NULL};

static const struct field_schema signing_fields[] = {
    {"allowed_signers", FIELD_STRING, 0, 0, NULL, NULL, false, NULL},
    {"gpg_keyring", FIELD_STRING, 0, 0, NULL, NULL, false, NULL},
};
static const struct object_schema signing_object = {signing_fields, COUNT(signing_fields), NULL};

static void inventory_check(struct decode_context *ctx, const struct ynode *node, json_t *out,
                            const char *path)
{
    const char *memory = json_string_value(json_object_get(out, "memory"));
    long long bytes;
    if (memory && config_parse_memory(memory, &bytes) < 0)
        decode_error(ctx, ynode_map_get(node, "memory"), "inventory.memory",
                     "'%s' is not an amount of memory; write bytes or a number with Ki, Mi, Gi, Ti, "
                     "K, M, G or T (64Gi)",
                     memory);
    json_t *gpus = json_object_get(out, "gpus");
    for (size_t i = 0; i < json_array_size(gpus); i++)
        for (size_t j = 0; j < i; j++)
            if (json_integer_value(json_array_get(gpus, i)) ==
                json_integer_value(json_array_get(gpus, j))) {
                const struct ynode *list = ynode_map_get(node, "gpus");
                decode_error(ctx, list && i < list->count ? list->items[i] : list,
                             "inventory.gpus", "GPU %lld is listed twice",
                             (long long)json_integer_value(json_array_get(gpus, i)));
                return;
            }
    if (json_array_size(gpus) > INVENTORY_MAX_GPUS)
        decode_error(ctx, ynode_map_get(node, "gpus"), "inventory.gpus", "at most %d GPUs",
                     INVENTORY_MAX_GPUS);
}

static const struct field_schema inventory_fields[] = {
    {"cpus", FIELD_NUMBER, 0.001, 1e6, NULL, NULL, false, NULL},
    {"memory", FIELD_STRING, 0, 0, NULL, NULL, false, NULL},
    {"gpus", FIELD_INT_LIST, 0, 1023, NULL, NULL, false, NULL},
};
static const struct object_schema inventory_object = {inventory_fields, COUNT(inventory_fields),
                                                      inventory_check};

static void router_check(struct decode_context *ctx, const struct ynode *node, json_t *out,
                         const char *path)
{
    const char *ports = json_string_value(json_object_get(out, "ports"));
    int low, high;
    if (ports && (config_parse_ports(ports, &low, &high) < 0))
        decode_error(ctx, ynode_map_get(node, "ports"), "router.ports",
                     "'%s' is not a port range; write LOW-HIGH within 1024-65535", ports);
}

/* digits only: LOW-HIGH within 1024-65535 */
int config_parse_ports(const char *text, int *low, int *high)
{
    const char *dash = strchr(text, '-');
    size_t a = strspn(text, "0123456789");
    if (!dash || a == 0 || a > 5 || text + a != dash)
        return -EINVAL;
    size_t b = strspn(dash + 1, "0123456789");
    if (b == 0 || b > 5 || dash[1 + b] != 0)
        return -EINVAL;
    long l = strtol(text, NULL, 10), h = strtol(dash + 1, NULL, 10);
    if (l < 1024 || h > 65535 || l > h)
        return -EINVAL;
    *low = (int)l;
    *high = (int)h;
    return 0;
}

static const struct field_schema router_fields[] = {
    {"haproxy", FIELD_STRING, 0, 0, NULL, NULL, false, "\"haproxy\""},
    {"pin_header", FIELD_STRING, 0, 0, NULL, NULL, false, "\"X-Rolld-Version\""},
    {"ports", FIELD_STRING, 0, 0, NULL, NULL, false, "\"20000-29999\""},
};
static const struct object_schema router_object = {router_fields, COUNT(router_fields),
                                                   router_check};

static void listen_check(struct decode_context *ctx, const struct ynode *node, json_t *out,
                         const char *path)
{
    const char *metrics = json_string_value(json_object_get(out, "metrics"));
    const char *colon = metrics ? strrchr(metrics, ':') : NULL;
    long port = 0;
    if (colon && strspn(colon + 1, "0123456789") == strlen(colon + 1) && strlen(colon + 1) <= 5)
        port = strtol(colon + 1, NULL, 10);
    if (metrics && (!colon || colon == metrics || port < 1 || port > 65535))
        decode_error(ctx, ynode_map_get(node, "metrics"), "listen.metrics",
                     "'%s' is not an address; write HOST:PORT (127.0.0.1:9464)", metrics);
}

static const struct field_schema listen_fields[] = {
    {"metrics", FIELD_STRING, 0, 0, NULL, NULL, false, NULL},
};
static const struct object_schema listen_object = {listen_fields, COUNT(listen_fields),
                                                   listen_check};

static const struct field_schema log_fields[] = {
    {"format", FIELD_ENUM, 0, 0, NULL, log_formats, false, "\"text\""},
};
static const struct object_schema log_object = {log_fields, COUNT(log_fields), NULL};

/* what needs fields of several sections at once */
static void config_check(struct decode_context *ctx, const struct ynode *node, json_t *out,
                         const char *path)
{
    json_t *git = json_object_get(json_object_get(out, "source"), "git");
    json_t *status = json_object_get(out, "status");
    const struct ynode *status_node = ynode_map_get(node, "status");
    if (json_is_true(json_object_get(status, "git")) && !git)
        decode_error(ctx, ynode_map_get(status_node, "git"), "status.git",
                     "status can be written to Git only when the source is a Git repository");
    /* with their defaults: a section left out has none filled in */
    const char *spec_branch = json_string_value(json_object_get(git, "branch"));
    const char *status_branch = json_string_value(json_object_get(status, "branch"));
    if (!spec_branch)
        spec_branch = "main";
    if (!status_branch)
        status_branch = "rolld/status";
    const struct ynode *status_branch_node = ynode_map_get(status_node, "branch");
    const struct ynode *spec_branch_node =
        ynode_map_get(ynode_map_get(ynode_map_get(node, "source"), "git"), "branch");
    if (git && !strcmp(spec_branch, status_branch))
        decode_error(ctx, status_branch_node ? status_branch_node : spec_branch_node,
                     status_branch_node ? "status.branch" : "source.git.branch",
                     "the status branch must not be the spec branch '%s'", spec_branch);
}

static const struct field_schema config_fields[] = {
    {"name", FIELD_NAME, 0, 0, NULL, NULL, false, NULL},
    {"state_dir", FIELD_STRING, 0, 0, NULL, NULL, false, NULL},
    {"policies_dir", FIELD_STRING, 0, 0, NULL, NULL, false, NULL},
    {"source", FIELD_OBJECT, 0, 0, &source_object, NULL, true, NULL},
    {"status", FIELD_OBJECT, 0, 0, &status_object, NULL, false, "{}"},
    {"signing", FIELD_OBJECT, 0, 0, &signing_object, NULL, false, "{}"},
    {"inventory", FIELD_OBJECT, 0, 0, &inventory_object, NULL, false, NULL},
    {"router", FIELD_OBJECT, 0, 0, &router_object, NULL, false, "{}"},
    {"listen", FIELD_OBJECT, 0, 0, &listen_object, NULL, false, "{}"},
    {"log", FIELD_OBJECT, 0, 0, &log_object, NULL, false, "{}"},
};
static const struct object_schema config_object = {config_fields, COUNT(config_fields),
                                                   config_check};

void config_init(struct agent_config *c)
{
    memset(c, 0, sizeof(*c));
    c->fetch_interval_s = 30;
    c->git_watch = true;
    c->debounce_ms = 30;
    c->revert_branches = true;
    c->port_min = 20000;
    c->port_max = 29999;
}

int config_parse_memory(const char *text, long long *bytes)
{
    static const struct {
        const char *suffix;
        double scale;
    } units[] = {{"", 1},          {"Ki", 1024.0},  {"Mi", 1048576.0}, {"Gi", 1073741824.0},
                 {"Ti", 1099511627776.0}, {"K", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12}};
    /* decimal digits with at most one point: strtod alone would take hex and exponents */
    size_t digits = strspn(text, "0123456789.");
    const char *point = strchr(text, '.');
    if (!isdigit((unsigned char)text[0]) || (point && point < text + digits &&
                                             memchr(point + 1, '.', text + digits - point - 1)))
        return -EINVAL;
    char *end;
    errno = 0;
    double value = strtod(text, &end);
    if (end != text + digits || errno || value < 0)
        return -EINVAL;
    for (size_t i = 0; i < COUNT(units); i++)
        if (!strcmp(end, units[i].suffix)) {
            double total = value * units[i].scale;
            if (total > 9e18)
                return -ERANGE;
            *bytes = (long long)total;
            return 0;
        }
    return -EINVAL;
}

int config_parse_gpu_list(const char *text, struct inventory *inventory)
{
    inventory->gpu_count = 0;
    const char *p = text;
    while (*p) {
        char *end;
        long index = strtol(p, &end, 10);
        if (end == p || index < 0 || index > 1023 || inventory->gpu_count >= INVENTORY_MAX_GPUS)
            return -EINVAL;
        inventory->gpus[inventory->gpu_count++] = (int)index;
        if (*end == ',')
            end++;
        else if (*end)
            return -EINVAL;
        p = end;
    }
    return 0;
}

/* A path from the file: absolute as written, relative to the file's directory otherwise. */
static char *config_path(const char *file, const char *value)
{
    if (!value)
        return NULL;
    if (value[0] == '/' || !strchr(file, '/'))
        return strdup(value);
    const char *slash = strrchr(file, '/');
    char *out;
    if (asprintf(&out, "%.*s/%s", (int)(slash - file), file, value) < 0)
        return NULL;
    return out;
}

/* A Git URL from the file: a relative local path is made relative to the file too. */
static char *config_url(const char *file, const char *value)
{
    if (strstr(value, "://") || value[0] == '/' || strchr(value, '@'))
        return strdup(value);
    return config_path(file, value);
}

static char *text_of(json_t *object, const char *key)
{
    const char *value = json_string_value(json_object_get(object, key));
    return value ? strdup(value) : NULL;
}

int config_parse(const char *text, size_t length, const char *file, struct agent_config *c,
                 struct diag *diag)
{
    size_t before = diag->count;
    struct ytree *tree = ytree_parse(text, length, file, diag);
    if (!tree)
        return -EINVAL;
    struct decode_context ctx = {.file = file, .diag = diag};
    const struct ynode *root = ytree_root(tree);
    json_t *doc = root ? decode_object(&ctx, root, &config_object, "") : NULL;
    ytree_free(tree);
    if (!doc || ctx.errors) {
        json_decref(doc);
        if (diag->count == before)
            diag_add(diag, file, 1, 1, "", "not a valid rolld config (is the file empty?)");
        return -EINVAL;
    }
    c->file = strdup(file);
    c->name = text_of(doc, "name");
    c->state_dir = config_path(file, json_string_value(json_object_get(doc, "state_dir")));
    c->policies_dir = config_path(file, json_string_value(json_object_get(doc, "policies_dir")));

    json_t *source = json_object_get(doc, "source");
    json_t *git = json_object_get(source, "git");
    c->debounce_ms = (int)json_integer_value(json_object_get(source, "debounce_ms"));
    if (git) {
        c->source_kind = SOURCE_GIT;
        c->git_url = config_url(file, json_string_value(json_object_get(git, "url")));
        c->git_branch = text_of(git, "branch");
        c->git_directory = text_of(git, "directory");
        c->fetch_interval_s = json_integer_value(json_object_get(git, "fetch_interval"));
        c->git_watch = !json_is_false(json_object_get(git, "watch"));
        c->ssh_key = config_path(file, json_string_value(json_object_get(git, "ssh_key")));
        c->token_file = config_path(file, json_string_value(json_object_get(git, "token_file")));
        c->git_username = text_of(git, "username");
    } else {
        c->source_kind = SOURCE_DIRECTORY;
        c->source_path =
            config_path(file, json_string_value(json_object_get(source, "directory")));
    }

    json_t *status = json_object_get(doc, "status");
    json_t *status_git = json_object_get(status, "git");
    c->status_git = status_git ? json_is_true(status_git) : c->source_kind == SOURCE_GIT;
    c->status_branch = text_of(status, "branch");
    c->author_name = text_of(json_object_get(status, "author"), "name");
    c->author_email = text_of(json_object_get(status, "author"), "email");
    c->revert_branches = !json_is_false(json_object_get(status, "revert_branches"));

    json_t *signing = json_object_get(doc, "signing");
    c->allowed_signers =
        config_path(file, json_string_value(json_object_get(signing, "allowed_signers")));
    c->gpg_keyring = config_path(file, json_string_value(json_object_get(signing, "gpg_keyring")));

    json_t *inventory = json_object_get(doc, "inventory");
    if (inventory) {
        c->inventory.declared = true;
        json_t *cpus = json_object_get(inventory, "cpus");
        c->inventory.cpus = cpus ? json_number_value(cpus) : 1e9;
        const char *memory = json_string_value(json_object_get(inventory, "memory"));
        if (memory)
            config_parse_memory(memory, &c->inventory.memory);
        json_t *gpus = json_object_get(inventory, "gpus");
        for (size_t i = 0; i < json_array_size(gpus) && i < INVENTORY_MAX_GPUS; i++)
            c->inventory.gpus[c->inventory.gpu_count++] =
                (int)json_integer_value(json_array_get(gpus, i));
    }

    json_t *router = json_object_get(doc, "router");
    /* a section left out gets "{}", without its fields' defaults: NULL means default */
    const char *haproxy = json_string_value(json_object_get(router, "haproxy"));
    if (haproxy)
        c->haproxy_binary = strchr(haproxy, '/') ? config_path(file, haproxy) : strdup(haproxy);
    c->pin_header = text_of(router, "pin_header");
    const char *ports = json_string_value(json_object_get(router, "ports"));
    if (ports)
        config_parse_ports(ports, &c->port_min, &c->port_max);
    c->metrics_listen = text_of(json_object_get(doc, "listen"), "metrics");
    const char *format = json_string_value(json_object_get(json_object_get(doc, "log"), "format"));
    c->log_format = format && !strcmp(format, "json") ? LOG_FORMAT_JSON : LOG_FORMAT_TEXT;
    json_decref(doc);
    return 0;
}

void config_clear(struct agent_config *c)
{
    char **strings[] = {&c->file,          &c->name,         &c->state_dir,     &c->policies_dir,
                        &c->source_path,   &c->git_url,      &c->git_branch,    &c->git_directory,
                        &c->ssh_key,       &c->token_file,   &c->git_username,  &c->status_branch,
                        &c->author_name,   &c->author_email, &c->allowed_signers,
                        &c->gpg_keyring,   &c->haproxy_binary, &c->pin_header,
                        &c->metrics_listen};
    for (size_t i = 0; i < COUNT(strings); i++)
        free(*strings[i]);
    config_init(c);
}
