#include <dirent.h>
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "unix_socket.h"
#include <unistd.h>

#include "cli.h"
#include "decode.h"
#include "source_dir.h"
#include "status.h"
#include "yaml_tree.h"

static const char *default_state_dir(void)
{
    const char *dir = getenv("ROLLD_STATE_DIR");
    return dir ? dir : "/var/lib/rolld";
}

static json_t *read_status(const char *path)
{
    char *text = NULL;
    size_t length = 0;
    if (source_read_file(path, YAML_TREE_MAX_BYTES, &text, &length) < 0)
        return NULL;
    struct diag diag = DIAG_INIT;
    struct ytree *tree = ytree_parse(text, length, path, &diag);
    free(text);
    diag_clear(&diag);
    json_t *doc = ytree_root(tree) ? decode_any(ytree_root(tree)) : NULL;
    ytree_free(tree);
    return doc;
}

static void replicas_text(const json_t *side, char *out, size_t size)
{
    int ready = 0, desired = 0;
    size_t i;
    json_t *r;
    json_array_foreach(json_object_get(side, "replicas"), i, r)
    {
        ready += (int)json_integer_value(json_object_get(r, "ready"));
        desired += (int)json_integer_value(json_object_get(r, "desired"));
    }
    snprintf(out, size, "%s %d/%d", json_string_value(json_object_get(side, "version_name")),
             ready, desired);
}

static void print_line(const json_t *doc)
{
    json_t *traffic = json_object_get(doc, "traffic");
    int canary = (int)json_integer_value(json_object_get(traffic, "canary"));
    char bar[64], primary[128] = "-", canary_text[160] = "";
    status_traffic_bar(canary, bar, sizeof(bar));
    json_t *p = json_object_get(doc, "primary"), *c = json_object_get(doc, "canary");
    if (json_is_object(p))
        replicas_text(p, primary, sizeof(primary));
    if (json_is_object(c)) {
        char text[120];
        replicas_text(c, text, sizeof(text));
        snprintf(canary_text, sizeof(canary_text), "  canary %s", text);
    }
    printf("%-20s %-19s %s %3d%%  primary %s%s", json_string_value(json_object_get(doc, "service")),
           json_string_value(json_object_get(doc, "phase")), bar, canary, primary, canary_text);
    const char *error = json_string_value(json_object_get(doc, "last_error"));
    const char *spec_error = json_string_value(json_object_get(doc, "spec_error"));
    if (spec_error)
        printf("  spec error: %s", spec_error);
    else if (error)
        printf("  last error: %s", error);
    putchar('\n');
}

static int compare_strings(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int show(const char *state_dir, const char *service, bool json_format)
{
    char dir_path[4096];
    snprintf(dir_path, sizeof(dir_path), "%s/status", state_dir);
    DIR *dir = opendir(dir_path);
    if (!dir) {
        fprintf(stderr, "rolld status: no status in %s (is the agent running with --state-dir %s?)\n",
                dir_path, state_dir);
        return 1;
    }
    char *names[4096];
    size_t count = 0;
    struct dirent *entry;
    while ((entry = readdir(dir)) && count < 4096) {
        size_t n = strlen(entry->d_name);
        if (n > 5 && !strcmp(entry->d_name + n - 5, ".yaml"))
            names[count++] = strndup(entry->d_name, n - 5);
    }
    closedir(dir);
    qsort(names, count, sizeof(char *), compare_strings);
    json_t *all = json_array();
    int found = 0;
    for (size_t i = 0; i < count; i++) {
        if (!service || !strcmp(service, names[i])) {
            char path[4400];
            snprintf(path, sizeof(path), "%s/%s.yaml", dir_path, names[i]);
            json_t *doc = read_status(path);
            if (doc) {
                found++;
                if (json_format)
                    json_array_append(all, doc);
                else
                    print_line(doc);
                json_decref(doc);
            }
        }
        free(names[i]);
    }
    if (json_format) {
        json_t *out = json_pack("{s:o}", "services", all);
        json_dumpf(out, stdout, JSON_INDENT(2));
        putchar('\n');
        json_decref(out);
    } else {
        json_decref(all);
    }
    if (service && !found) {
        fprintf(stderr, "rolld status: no service named '%s'\n", service);
        return 1;
    }
    return 0;
}

int cli_status(int argc, char **argv)
{
    static const struct option options[] = {
        {"state-dir", required_argument, NULL, 'd'},
        {"format", required_argument, NULL, 'f'},
        {"watch", no_argument, NULL, 'w'},
        {NULL, 0, NULL, 0},
    };
    const char *state_dir = default_state_dir();
    bool json_format = false, watch = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "d:f:w", options, NULL)) != -1) {
        if (c == 'd')
            state_dir = optarg;
        else if (c == 'f' && (!strcmp(optarg, "json") || !strcmp(optarg, "text")))
            json_format = !strcmp(optarg, "json");
        else if (c == 'w')
            watch = true;
        else {
            fputs("usage: rolld status [SERVICE] [--state-dir DIR] [--format text|json] [--watch]\n",
                  stderr);
            return 2;
        }
    }
    const char *service = optind < argc ? argv[optind] : NULL;
    if (!watch)
        return show(state_dir, service, json_format);
    for (;;) {
        fputs("\033[H\033[2J", stdout);
        show(state_dir, service, json_format);
        fflush(stdout);
        sleep(1);
    }
}

int cli_control(int argc, char **argv)
{
    static const struct option options[] = {
        {"state-dir", required_argument, NULL, 'd'},
        {"max-surge-percent", required_argument, NULL, 's'},
        {"to", required_argument, NULL, 't'},
        {NULL, 0, NULL, 0},
    };
    const char *command = argv[0];
    const char *state_dir = default_state_dir();
    int surge = 0;
    const char *to = NULL;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "d:s:t:", options, NULL)) != -1) {
        if (c == 'd') {
            state_dir = optarg;
        } else if (c == 't' && !strcmp(command, "rollback")) {
            to = optarg;
        } else if (c == 's' && !strcmp(command, "rollback")) {
            surge = atoi(optarg);
            if (surge < 1 || surge > 100) {
                fprintf(stderr, "rolld rollback: --max-surge-percent %s: use 1 to 100\n", optarg);
                return 2;
            }
        } else {
            return 2;
        }
    }
    bool needs_service = strcmp(command, "sync") != 0;
    if (needs_service && optind != argc - 1) {
        fprintf(stderr, "usage: rolld %s SERVICE [--state-dir DIR]%s\n", command,
                !strcmp(command, "rollback") ? " [--max-surge-percent S | --to VERSION]" : "");
        return 2;
    }
    json_t *request = json_pack("{s:s}", "command", command);
    if (needs_service)
        json_object_set_new(request, "service", json_string(argv[optind]));
    if (surge)
        json_object_set_new(request, "max_surge_percent", json_integer(surge));
    if (to)
        json_object_set_new(request, "to", json_string(to));
    char *text = json_dumps(request, JSON_COMPACT);
    json_decref(request);

    char path[4096];
    snprintf(path, sizeof(path), "%s/control.sock", state_dir);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un addr;
    unix_address(&addr, path);
    if (fd < 0 || connect(fd, (struct sockaddr *)&addr, sizeof(addr)) < 0) {
        fprintf(stderr, "rolld %s: cannot reach the agent at %s; is `rolld run` running?\n",
                command, path);
        free(text);
        if (fd >= 0)
            close(fd);
        return 2;
    }
    if (write(fd, text, strlen(text)) < 0) {
        free(text);
        close(fd);
        return 2;
    }
    free(text);
    shutdown(fd, SHUT_WR);
    char answer[4096];
    size_t used = 0;
    ssize_t n;
    while (used < sizeof(answer) - 1 && (n = read(fd, answer + used, sizeof(answer) - 1 - used)) > 0)
        used += (size_t)n;
    close(fd);
    answer[used] = 0;
    json_t *reply = json_loads(answer, 0, NULL);
    bool ok = json_is_true(json_object_get(reply, "ok"));
    const char *message = json_string_value(json_object_get(reply, "message"));
    fprintf(ok ? stdout : stderr, "rolld %s%s%s: %s\n", command, needs_service ? " " : "",
            needs_service ? argv[optind] : "", message ? message : "no answer from the agent");
    json_decref(reply);
    return ok ? 0 : 1;
}
