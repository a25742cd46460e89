/* Tests for reconciler/status_doc.c: STATUS.md and reading status YAML back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "rollout.h"
#include "status.h"
#include "status_doc.h"

/* ---- helpers ---- */

static char *yaml_of(const json_t *doc, size_t *length)
{
    char *text = NULL;
    FILE *f = open_memstream(&text, length);
    assert_non_null(f);
    status_write_yaml(doc, f);
    fclose(f);
    return text;
}

/* Writes doc as status YAML, reads it back and checks that nothing changed. */
static void assert_round_trip(const json_t *doc)
{
    size_t length = 0;
    char *text = yaml_of(doc, &length);
    json_t *back = status_doc_parse_yaml(text, length);
    if (!back || !json_equal(doc, back)) {
        char *want = json_dumps(doc, JSON_SORT_KEYS | JSON_INDENT(2));
        char *got = back ? json_dumps(back, JSON_SORT_KEYS | JSON_INDENT(2)) : NULL;
        fprintf(stderr, "YAML:\n%s\nwant:\n%s\ngot:\n%s\n", text, want, got ? got : "NULL");
        free(want);
        free(got);
    }
    assert_non_null(back);
    assert_true(json_equal(doc, back));
    json_decref(back);
    free(text);
}

/* Fails unless text has line as one whole line. */
static void assert_line(const char *text, const char *line)
{
    size_t n = strlen(line);
    for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL)
        if (!strncmp(p, line, n) && (p[n] == '\n' || p[n] == 0))
            return;
    fprintf(stderr, "no line:\n%s\nin:\n%s\n", line, text);
    fail_msg("expected line missing");
}

static void assert_no_substring(const char *text, const char *part)
{
    if (strstr(text, part)) {
        fprintf(stderr, "unexpected '%s' in:\n%s\n", part, text);
        fail_msg("unexpected text");
    }
}

static size_t offset_of(const char *text, const char *part)
{
    const char *p = strstr(text, part);
    if (!p)
        fprintf(stderr, "no '%s' in:\n%s\n", part, text);
    assert_non_null(p);
    return (size_t)(p - text);
}

static json_t *version_doc(const char *version, const char *name, const char *commit, int traffic)
{
    json_t *side =
        json_pack("{s:s, s:s, s:s, s:s, s:i, s:i, s:[{s:s, s:s, s:i, s:i}]}", "version", version,
                  "version_name", name, "spec_file", "services/x.yaml", "state",
                  traffic ? "serving" : "ready", "capacity", 100, "traffic", traffic, "replicas",
                  "application", "app", "deployment", "Model", "desired", 2, "ready", 2);
    if (commit)
        json_object_set_new(side, "commit", json_string(commit));
    return side;
}

static json_t *base_doc(const char *service, const char *phase, int primary_share, int canary_share)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:{s:i, s:i}, s:n, s:n, s:n, s:[], s:[]}",
                     "service", service, "phase", phase, "phase_description",
                     "what the phase means.", "phase_since", "2026-11-24T15:00:00Z", "updated",
                     "2026-11-24T15:59:00Z", "traffic", "primary", primary_share, "canary",
                     canary_share, "primary", "canary", "last_error", "rejected_versions",
                     "history");
}

/* The three services of the table tests. */
#define FAILED_ERROR                                                                               \
    "deployment Model | crashed: exit status 1\nTraceback (most recent call last):\n  File "       \
    "\"serve.py\", line 12, in <module>\n    import torch\nModuleNotFoundError: No module named "  \
    "'torch'"

static json_t *running_doc(void)
{
    json_t *doc = base_doc("web", "running", 100, 0);
    json_object_set_new(doc, "primary", version_doc("0123456789abcdef", "v7", NULL, 100));
    return doc;
}

static json_t *canary_doc(void)
{
    json_t *doc = base_doc("api", "canary_paused", 80, 20);
    json_object_set_new(
        doc, "primary",
        version_doc("aaaaaaaaaaaaaaaa", "v1", "1111111111111111111111111111111111111111", 80));
    json_object_set_new(
        doc, "canary",
        version_doc("bbbbbbbbbbbbbbbb", "v2", "2222222233333333444444445555555566666666", 20));
    json_object_set_new(doc, "rollout",
                        json_pack("{s:s, s:i, s:i, s:i, s:{s:i, s:b, s:s}}", "started",
                                  "2026-11-24T15:10:00Z", "canary_percent", 50, "max_surge_percent",
                                  25, "paused_at", 20, "gate", "percent", 20, "released", 0,
                                  "release",
                                  "merge a commit that raises rollout.canary_percent for v2"));
    json_object_set_new(doc, "source",
                        json_pack("{s:s, s:s, s:s, s:s}", "kind", "git", "branch", "main", "commit",
                                  "2222222233333333444444445555555566666666", "fetch_error",
                                  "git fetch origin: connection refused"));
    return doc;
}

static json_t *failed_doc(void)
{
    json_t *doc = base_doc("batch", "failed", 0, 0);
    json_object_set_new(doc, "primary",
                        version_doc("cccccccccccccccc", "cccccccccccccccc", NULL, 0));
    json_object_set_new(doc, "last_error", json_string(FAILED_ERROR));
    json_object_set_new(doc, "revert_branch", json_string("rolld/revert/batch"));
    return doc;
}

static char *render_three(size_t order[3], const char *agent, const char *now)
{
    json_t *made[3] = {running_doc(), canary_doc(), failed_doc()};
    const json_t *docs[3] = {made[order[0]], made[order[1]], made[order[2]]};
    char *text = status_markdown(docs, 3, agent, now);
    for (size_t i = 0; i < 3; i++)
        json_decref(made[i]);
    assert_non_null(text);
    return text;
}

/* ---- reading status YAML back ---- */

static void test_round_trip_packed(void **unused)
{
    json_t *doc = json_pack(
        "{s:s, s:s, s:s, s:{s:i, s:i}, s:n, s:b, s:b, s:I, s:I, s:i,"
        " s:[{s:s, s:s, s:i, s:i}, {s:s, s:s, s:i, s:i}], s:[], s:{}, s:[{}, [], [i, [s]], {s:[]}],"
        " s:{s:{s:[{s:{}}]}}}",
        "service", "api", "phase", "canary_paused", "quoted", "say \"hi\" \\ 'there'", "traffic",
        "primary", 80, "canary", 20, "last_error", "ok", 1, "nope", 0, "big",
        (json_int_t)9007199254740993LL, "negative", (json_int_t)-42, "zero", 0, "replicas",
        "application", "text | image", "deployment", "Model: #1", "desired", 3, "ready", 2,
        "application", "- dash", "deployment", "key: value # not a comment", "desired", 0, "ready",
        0, "rejected_versions", "empty", "mixed", 7, "nested", "deep", "list", "inner", "last",
        "leaf");
    /* strings a careless writer would get wrong */
    const char *strings[] = {
        "line one\nline two\r\nthree\ttab",
        "unicode: h\xc3\xa9llo \xe4\xb8\x96\xe7\x95\x8c \xf0\x9f\x98\x80",
        "pipe | and colon: and # hash",
        "",
        " leading and trailing ",
        "true",
        "null",
        "123",
        "-1.5e3",
        "~",
        "[not, a, list]",
        "{not: a map}",
        "&anchor *alias !tag %directive @at `tick`",
        "control \x01\x1f and backslash-n \\n",
        /* written raw by jansson, refused (DEL, C1, U+FFFF) or folded (NEL) by YAML */
        "del \x7f c1 \xc2\x90 nel \xc2\x85 noncharacter \xef\xbf\xbf ls \xe2\x80\xa8",
    };
    json_t *list = json_array();
    for (size_t i = 0; i < sizeof(strings) / sizeof(*strings); i++) {
        json_t *s = json_string(strings[i]);
        assert_non_null(s);
        json_array_append_new(list, s);
        char key[16];
        snprintf(key, sizeof(key), "s%zu", i);
        json_object_set(doc, key, s);
    }
    json_object_set_new(doc, "strings", list);
    assert_non_null(doc);
    assert_round_trip(doc);

    /* the YAML is the block style with quoted strings, not JSON in disguise */
    size_t length = 0;
    char *text = yaml_of(doc, &length);
    assert_non_null(strstr(text, "\ntraffic:\n  primary: 80\n  canary: 20\n"));
    assert_non_null(strstr(text, "\nempty: {}\n"));
    free(text);
    json_decref(doc);
}

static void test_round_trip_status_document(void **unused)
{
    struct service_state *s = service_state_new("api");
    assert_non_null(s);
    const char *ids[2] = {"aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"};
    for (int i = 0; i < 2; i++) {
        s->sides[i].used = true;
        strcpy(s->sides[i].version, ids[i]);
        /* what the status reads of a side's spec, set by hand */
        struct service_spec *spec = calloc(1, sizeof(*spec));
        assert_non_null(spec);
        spec->refs = 1;
        spec->version_name = strdup(i ? "v2 \"beta\"" : "v1");
        spec->text = strdup("{}");
        spec->rollout.canary_percent = 30;
        spec->rollout.max_surge_percent = 25;
        s->sides[i].spec = spec;
        s->sides[i].file = strdup("services/api.yaml");
        s->sides[i].capacity = 100;
    }
    strcpy(s->sides[1].commit, "0123456789abcdef0123456789abcdef01234567");
    s->primary = 0;
    s->canary = 1;
    s->traffic = 30;
    s->phase = PHASE_CANARY_PAUSED;
    s->phase_since_ms = 1795017600000LL;
    s->rollout_started_ms = 1795017000000LL;
    s->last_error = strdup("health check failed: 503 | retry\nsecond line");
    json_array_append_new(s->rejected, json_string("cccccccccccccccc"));
    json_array_append_new(s->history,
                          json_pack("{s:I, s:s, s:s}", "time_ms", (json_int_t)1795017000000LL,
                                    "event", "canary_started", "detail", "v2: 0% -> 10%"));
    struct status_deployment_count counts[2] = {{"app", "Model", 2, 2, -1, -1},
                                                {"app", "Router", 1, 0, 3, 6}};
    struct status_side_view views[2] = {{NULL, counts, 2}, {NULL, counts, 1}};
    json_t *doc = status_document(s, views, "services/api.yaml:3:5: replicas: expected an integer",
                                  1795018000000LL);
    assert_non_null(doc);
    assert_round_trip(doc);
    json_decref(doc);
    service_state_free(s);
}

static void test_parse_refuses_what_is_not_a_document(void **unused)
{
    const char *bad[] = {"",
                         "just a scalar\n",
                         "- a\n- list\n",
                         "key: [unclosed\n",
                         "a: 1\na: 2\n",
                         "\"a\": \"\\u0000\"\n"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        json_t *doc = status_doc_parse_yaml(bad[i], strlen(bad[i]));
        if (doc)
            fprintf(stderr, "accepted: %s\n", bad[i]);
        assert_null(doc);
    }
    assert_null(status_doc_parse_yaml(NULL, 0));
    /* typed plain scalars, quoted strings stay strings */
    const char *text = "a: 1\nb: true\nc: null\nd: \"1\"\ne: \"true\"\nf: -3\n";
    json_t *doc = status_doc_parse_yaml(text, strlen(text));
    json_t *want = json_pack("{s:i, s:b, s:n, s:s, s:s, s:i}", "a", 1, "b", 1, "c", "d", "1", "e",
                             "true", "f", -3);
    assert_non_null(doc);
    assert_true(json_equal(doc, want));
    json_decref(doc);
    json_decref(want);
}

/* ---- STATUS.md ---- */

static void test_markdown_table(void **unused)
{
    size_t order[3] = {0, 1, 2}; /* web, api, batch: sorted api, batch, web */
    char *text = render_three(order, "host-a", "2026-11-24T16:00:00Z");

    assert_line(text, "# Rollout status");
    assert_line(text, "Written by agent host-a at 2026-11-24T16:00:00Z.");
    assert_line(text, "| Service | Phase | Traffic | Primary | Canary | Last error |");
    assert_line(text, "| --- | --- | --- | --- | --- | --- |");
    assert_line(text, "| api | canary_paused | `[################====]  20%` canary | "
                      "v1 (aaaaaaaa, commit 11111111) | v2 (bbbbbbbb, commit 22222222) | - |");
    /* cut at 120 characters with "…"; '|' escaped, line breaks as <br>, '<' '>' escaped */
    assert_line(text,
                "| batch | failed | no traffic | cccccccc | - | deployment Model \\| crashed: "
                "exit status 1<br>Traceback (most recent call last):<br>  File \"serve.py\", "
                "line 12, in \\<module\\>… |");
    assert_line(text, "| web | running | 100% primary | v7 (01234567) | - | - |");
    assert_no_substring(text, "Agent");

    /* rows sorted by service name */
    size_t api = offset_of(text, "| api |"), batch = offset_of(text, "| batch |"),
           web = offset_of(text, "| web |");
    assert_true(api < batch && batch < web);

    /* a section for the rollout and for the error, none for the running service */
    assert_line(text, "## api");
    assert_line(text, "## batch");
    assert_no_substring(text, "## web");
    assert_true(offset_of(text, "## api") < offset_of(text, "## batch"));
    assert_line(text, "- Rollout: v2 (bbbbbbbb, commit 22222222) replacing v1 (aaaaaaaa, commit "
                      "11111111); the canary takes 20% of traffic; started 2026-11-24T15:10:00Z; "
                      "paused at 20% (rollout.canary_percent).");
    assert_line(text, "- Held at the approval gate 20%: merge a commit that raises "
                      "rollout.canary_percent for v2");
    assert_line(text, "- Spec source: branch `main` at commit 22222222");
    assert_line(text,
                "- Fetch failed, the last good commit still serves: git fetch origin: connection "
                "refused");
    assert_line(text, "- Revert branch `rolld/revert/batch`: merge it to bring the spec branch in "
                      "line with what runs.");
    /* the whole error, verbatim, in a code block */
    assert_non_null(strstr(text, "Last error:\n\n```\n" FAILED_ERROR "\n```\n"));
    free(text);
}

static void test_markdown_optional_fields(void **unused)
{
    json_t *owned = running_doc();
    json_object_set_new(owned, "agent", json_string("host-b"));
    json_t *spec_broken = base_doc("queue", "running", 100, 0);
    json_object_set_new(spec_broken, "spec_error",
                        json_string("services/queue.yaml:4:3: name: a | b\nis not a name"));
    json_object_set_new(spec_broken, "last_error", json_string("an older failure"));
    json_t *gate_released = canary_doc();
    json_object_del(json_object_get(gate_released, "rollout"), "paused_at");
    json_object_set_new(json_object_get(json_object_get(gate_released, "rollout"), "gate"),
                        "released", json_true());
    json_object_set_new(json_object_get(json_object_get(gate_released, "rollout"), "gate"),
                        "release", json_string("commit 2222222 raised rollout.canary_percent"));
    json_object_set_new(json_object_get(gate_released, "source"), "refused_commit",
                        json_pack("{s:s, s:s}", "commit",
                                  "9999999999999999999999999999999999999999", "reason",
                                  "unsigned commit; the policy requires signed commits"));
    json_object_del(json_object_get(gate_released, "source"), "fetch_error");

    const json_t *docs[3] = {owned, spec_broken, gate_released};
    char *text = status_markdown(docs, 3, NULL, NULL);
    assert_non_null(text);
    assert_line(text, "| Service | Agent | Phase | Traffic | Primary | Canary | Last error |");
    assert_line(text, "| --- | --- | --- | --- | --- | --- | --- |");
    assert_line(text, "| web | host-b | running | 100% primary | v7 (01234567) | - | - |");
    assert_line(text, "| queue | - | running | 100% primary | - | - | spec error: "
                      "services/queue.yaml:4:3: name: a \\| b<br>is not a name |");
    assert_line(text, "- Approval gate 20% released: commit 2222222 raised rollout.canary_percent");
    assert_line(text, "- Rollout: v2 (bbbbbbbb, commit 22222222) replacing v1 (aaaaaaaa, commit "
                      "11111111); the canary takes 20% of traffic; started 2026-11-24T15:10:00Z; "
                      "pauses at 50% (rollout.canary_percent).");
    assert_line(text, "- Commit 99999999 refused: unsigned commit; the policy requires signed "
                      "commits");
    assert_non_null(strstr(text, "Spec error (what runs is not disturbed):\n\n```\n"
                                 "services/queue.yaml:4:3: name: a | b\nis not a name\n```\n"
                                 "\nLast error:\n\n```\nan older failure\n```\n"));
    /* no agent and no time: no "Written" line, so the text follows the documents only */
    assert_no_substring(text, "Written");
    assert_no_substring(text, "Fetch failed");
    free(text);
    json_decref(owned);
    json_decref(spec_broken);
    json_decref(gate_released);
}

static void test_markdown_escapes_what_it_shows(void **unused)
{
    json_t *doc = base_doc("odd", "rolled_back", 100, 0);
    json_object_set_new(
        doc, "primary",
        version_doc("dddddddddddddddd", "*bold* [link](x) `code` <b>&amp; ~s~ a_b _c_", NULL, 100));
    json_object_set_new(doc, "last_error", json_string("```\nfenced ```` inside\n"));
    const json_t *docs[1] = {doc};
    char *text = status_markdown(docs, 1, "agent|one", NULL);
    assert_non_null(text);
    assert_line(text, "Written by agent agent\\|one.");
    assert_line(text, "| odd | rolled_back | 100% primary | \\*bold\\* \\[link\\](x) \\`code\\` "
                      "\\<b\\>\\&amp; \\~s\\~ a_b \\_c\\_ (dddddddd) | - | \\`\\`\\`<br>fenced "
                      "\\`\\`\\`\\` inside |");
    /* the code block's fence is longer than any run of backticks inside */
    assert_non_null(strstr(text, "\n`````\n```\nfenced ```` inside\n`````\n"));
    free(text);
    json_decref(doc);
}

static void test_markdown_deterministic(void **unused)
{
    size_t orders[3][3] = {{0, 1, 2}, {2, 1, 0}, {1, 2, 0}};
    char *first = render_three(orders[0], "host-a", "2026-11-24T16:00:00Z");
    for (size_t i = 0; i < 3; i++) {
        char *again = render_three(orders[i], "host-a", "2026-11-24T16:00:00Z");
        assert_string_equal(first, again);
        free(again);
    }
    /* the same document with its keys in another order */
    json_t *doc = canary_doc();
    json_t *reordered = json_object();
    const char *keys[64];
    size_t n = 0;
    const char *key;
    json_t *value;
    json_object_foreach(doc, key, value)
    {
        keys[n++] = key;
    }
    while (n > 0) {
        n--;
        json_object_set(reordered, keys[n], json_object_get(doc, keys[n]));
    }
    const json_t *a[1] = {doc}, *b[1] = {reordered};
    char *text_a = status_markdown(a, 1, NULL, NULL), *text_b = status_markdown(b, 1, NULL, NULL);
    assert_non_null(text_a);
    assert_non_null(text_b);
    assert_string_equal(text_a, text_b);
    free(text_a);
    free(text_b);
    json_decref(doc);
    json_decref(reordered);
    free(first);
}

static void test_markdown_empty(void **unused)
{
    char *text = status_markdown(NULL, 0, "host-a", "2026-11-24T16:00:00Z");
    assert_non_null(text);
    assert_string_equal(text, "# Rollout status\n\n"
                              "Written by agent host-a at 2026-11-24T16:00:00Z.\n\n"
                              "No services on this status branch.\n");
    free(text);
}

/* STATUS.md made from status YAML files as another agent wrote them. */
static void test_markdown_from_yaml_files(void **unused)
{
    json_t *made[3] = {running_doc(), canary_doc(), failed_doc()};
    json_t *read[3];
    for (size_t i = 0; i < 3; i++) {
        size_t length = 0;
        char *yaml = yaml_of(made[i], &length);
        read[i] = status_doc_parse_yaml(yaml, length);
        assert_non_null(read[i]);
        free(yaml);
    }
    const json_t *direct[3] = {made[0], made[1], made[2]}, *parsed[3] = {read[0], read[1], read[2]};
    char *a = status_markdown(direct, 3, "host-a", NULL),
         *b = status_markdown(parsed, 3, "host-a", NULL);
    assert_non_null(a);
    assert_non_null(b);
    assert_string_equal(a, b);
    free(a);
    free(b);
    for (size_t i = 0; i < 3; i++) {
        json_decref(made[i]);
        json_decref(read[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip_packed),
        cmocka_unit_test(test_round_trip_status_document),
        cmocka_unit_test(test_parse_refuses_what_is_not_a_document),
        cmocka_unit_test(test_markdown_table),
        cmocka_unit_test(test_markdown_optional_fields),
        cmocka_unit_test(test_markdown_escapes_what_it_shows),
        cmocka_unit_test(test_markdown_deterministic),
        cmocka_unit_test(test_markdown_empty),
        cmocka_unit_test(test_markdown_from_yaml_files),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
