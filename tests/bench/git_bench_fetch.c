/*
 * git_bench_fetch.c - what the agent's Git source costs on a large
 * repository: one fetch and one load of every spec, as `rolld run --git`
 * does at start (agent_git_open, then agent_git_snapshots), without starting
 * any replica. Used by tests/bench/git_bench.sh; a benchmark helper, not a
 * test.
 *
 *   git_bench_fetch --url URL --clone DIR [--branch B] [--dir D] [--again]
 *
 * Opens (creates when missing) the bare clone DIR with git_source_open,
 * fetches the branch with git_source_fetch and loads the specs of the
 * fetched commit under D with git_source_load (read and parsed, each file on
 * its own, exactly as the agent does). With an empty or missing DIR this is
 * the agent's first fetch; run again on the same DIR after the remote moved,
 * it is the fetch of a push, and the load is the agent's: the previous
 * commit's snapshot is loaded first (not timed) and git_source_reload takes
 * over the entries whose blob did not change. --again fetches once more afterwards, when
 * nothing has changed: what every --fetch-interval costs.
 *
 * Prints one line of key=value figures:
 *   open_ms fetch_ms load_ms total_ms (open + fetch + load) noop_fetch_ms
 *   entries valid (specs in the snapshot, and how many are valid)
 *   hwm_kib (VmHWM: the peak resident set of this process image, from
 *   /proc/self/status) maxrss_kib (getrusage: the same, but Linux carries
 *   the peak of the process that exec'd this one into it, so it is at least
 *   the shell's size) start_rss_kib (VmRSS before opening the repository)
 *   changed commit
 * Exit status 0, or 1 when the repository cannot be opened, fetched or
 * loaded.
 */
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "error.h"
#include "source_dir.h"
#include "source_git.h"

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* A "Name:   1234 kB" line of /proc/self/status, in KiB; -1 when absent. */
static long proc_status_kib(const char *name)
{
    FILE *f = fopen("/proc/self/status", "r");
    if (!f)
        return -1;
    char line[256];
    size_t n = strlen(name);
    long value = -1;
    while (fgets(line, sizeof(line), f)) {
        if (!strncmp(line, name, n) && line[n] == ':') {
            value = strtol(line + n + 1, NULL, 10);
            break;
        }
    }
    fclose(f);
    return value;
}

static void print_diag(const struct diag *diag)
{
    for (size_t i = 0; i < diag->count && i < 5; i++) {
        fputs("git_bench_fetch: ", stderr);
        diag_format(&diag->entries[i], stderr);
        fputc('\n', stderr);
    }
}

static const char usage[] =
    "usage: git_bench_fetch --url URL --clone DIR [--branch B] [--dir D] [--again]\n";

int main(int argc, char **argv)
{
    static const struct option options[] = {
        {"url", required_argument, NULL, 'u'},   {"clone", required_argument, NULL, 'c'},
        {"branch", required_argument, NULL, 'b'}, {"dir", required_argument, NULL, 'd'},
        {"again", no_argument, NULL, 'a'},        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    struct git_source_options so = {.branch = "main", .directory = "services"};
    bool again = false;
    int c;
    while ((c = getopt_long(argc, argv, "h", options, NULL)) != -1) {
        switch (c) {
        case 'u':
            so.url = optarg;
            break;
        case 'c':
            so.clone_dir = optarg;
            break;
        case 'b':
            so.branch = optarg;
            break;
        case 'd':
            so.directory = optarg;
            break;
        case 'a':
            again = true;
            break;
        case 'h':
            fputs(usage, stdout);
            return 0;
        default:
            fputs(usage, stderr);
            return 2;
        }
    }
    if (!so.url || !so.clone_dir || optind != argc) {
        fputs(usage, stderr);
        return 2;
    }
    long start_rss = proc_status_kib("VmRSS");

    char err[512] = "";
    struct git_source *source = NULL;
    double t0 = now_ms();
    if (git_source_open(&so, &source, err, sizeof(err)) < 0) {
        fprintf(stderr, "git_bench_fetch: cannot open %s: %s\n", so.clone_dir, err);
        return 1;
    }
    double t1 = now_ms();
    struct git_fetch_result result;
    memset(&result, 0, sizeof(result));
    if (git_source_fetch(source, &result) < 0) {
        fprintf(stderr, "git_bench_fetch: fetch failed: %s\n", result.error);
        git_source_free(source);
        return 1;
    }
    double t2 = now_ms();
    /* a push: the agent holds the previous commit's snapshot when it loads */
    struct snapshot before;
    memset(&before, 0, sizeof(before));
    struct diag diag = DIAG_INIT;
    if (result.previous[0] && result.changed &&
        git_source_load(source, result.previous, &before, &diag) < 0)
        memset(&before, 0, sizeof(before));
    diag_clear(&diag);
    double t2b = now_ms(); /* the load is timed from here */
    struct snapshot snapshot;
    memset(&snapshot, 0, sizeof(snapshot));
    if (git_source_reload(source, result.commit, &before, &snapshot, &diag) < 0) {
        print_diag(&diag);
        diag_clear(&diag);
        git_source_free(source);
        return 1;
    }
    double t3 = now_ms();
    size_t valid = 0;
    for (size_t i = 0; i < snapshot.count; i++)
        if (snapshot.entries[i].spec)
            valid++;
        else if (valid + 5 > i) /* say why, for the first few */
            print_diag(&snapshot.entries[i].errors);

    double noop_ms = -1;
    if (again) {
        struct git_fetch_result second;
        memset(&second, 0, sizeof(second));
        double t4 = now_ms();
        if (git_source_fetch(source, &second) < 0) {
            fprintf(stderr, "git_bench_fetch: second fetch failed: %s\n", second.error);
        } else {
            noop_ms = now_ms() - t4;
            if (second.changed)
                fprintf(stderr, "git_bench_fetch: the remote moved during the second fetch\n");
        }
    }

    struct rusage usage_self;
    getrusage(RUSAGE_SELF, &usage_self);
    long hwm = proc_status_kib("VmHWM");
    printf("open_ms=%.1f fetch_ms=%.1f load_ms=%.1f total_ms=%.1f noop_fetch_ms=%.1f "
           "entries=%zu valid=%zu hwm_kib=%ld maxrss_kib=%ld start_rss_kib=%ld changed=%d "
           "commit=%s\n",
           t1 - t0, t2 - t1, t3 - t2b, (t2 - t0) + (t3 - t2b), noop_ms, snapshot.count, valid, hwm,
           usage_self.ru_maxrss, start_rss, result.changed ? 1 : 0, result.commit);
    snapshot_clear(&snapshot);
    snapshot_clear(&before);
    diag_clear(&diag);
    git_source_free(source);
    return 0;
}
