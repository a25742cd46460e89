/* tests for reconciler/state.c: a service's rollout state through its JSON
 * form and back (the agent persists it after every step and must resume from
 * it), what a document that is not a state gives, and the atomic state store.
 * test_rollout.c also round-trips the state after every simulated step. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rollout.h"
#include "state.h"
#include "unit_helpers.h"

static struct service_spec *make_spec(const char *import, const char *rollout)
{
    char text[2048];
    snprintf(text, sizeof(text),
             "name: svc\n"
             "version_name: release-%s\n"
             "applications:\n"
             "  - name: app\n"
             "    route_prefix: /\n"
             "    import_path: %s\n"
             "    deployments:\n"
             "      - name: Model\n"
             "        num_replicas: 3\n"
             "rollout:\n"
             "  policy: production\n"
             "%s"
             "backend:\n"
             "  process:\n"
             "    applications:\n"
             "      - name: app\n"
             "        command: [model-server]\n",
             import, import, rollout ? rollout : "");
    return parse_ok(text);
}

static void side_fill(struct side_state *side, const struct service_spec *spec, int capacity)
{
    side->used = true;
    memcpy(side->version, spec->version, sizeof(side->version));
    side->spec = spec_ref((struct service_spec *)spec);
    side->file = strdup("services/svc.yaml");
    side->capacity = capacity;
}

/* A state in the middle of a rollout with every field set. */
static struct service_state *busy_state(struct service_spec **v1, struct service_spec **v2)
{
    *v1 = make_spec("app:v1", NULL);
    *v2 = make_spec("app:v2", "  canary_percent: 30\n  max_surge_percent: 25\n  timeout: 45m\n");
    struct service_state *s = service_state_new("svc");
    assert_non_null(s);
    side_fill(&s->sides[1], *v1, 75);
    side_fill(&s->sides[0], *v2, 50);
    s->primary = 1;
    s->canary = 0;
    s->traffic = 30;
    s->phase = PHASE_ROLLING_BACK;
    s->phase_since_ms = 1712345678901LL;
    s->step_since_ms = 1712345600000LL;
    s->rollout_started_ms = 1712340000000LL;
    json_array_append_new(s->rejected, json_string("0123456789abcdef"));
    s->rollback_reason = strdup("manual rollback");
    s->reject_on_rollback = true;
    s->last_error = strdup("svc.yaml:3:7: \"quoted\" \xc3\xa9rror\nsecond line");
    for (int i = 0; i < ROLLOUT_HISTORY_MAX; i++)
        json_array_append_new(s->history, json_pack("{s:I, s:s, s:s}", "time_ms",
                                                    (json_int_t)(1712340000000LL + i), "event",
                                                    "traffic_shifted", "detail", "canary traffic"));
    return s;
}

static struct service_state *roundtrip(const struct service_state *s)
{
    json_t *doc = service_state_to_json(s);
    assert_non_null(doc);
    /* through text, as the store does */
    char *text = json_dumps(doc, JSON_COMPACT | JSON_SORT_KEYS);
    assert_non_null(text);
    json_t *parsed = json_loads(text, 0, NULL);
    assert_non_null(parsed);
    struct service_state *back = service_state_from_json(s->name, parsed);
    assert_non_null(back);
    json_t *again = service_state_to_json(back);
    assert_true(json_equal(doc, again));
    free(text);
    json_decref(doc);
    json_decref(parsed);
    json_decref(again);
    return back;
}

static void expect_same_state(const struct service_state *a, const struct service_state *b)
{
    assert_string_equal(a->name, b->name);
    assert_int_equal(a->phase, b->phase);
    assert_int_equal(a->primary, b->primary);
    assert_int_equal(a->canary, b->canary);
    assert_int_equal(a->traffic, b->traffic);
    assert_true(a->phase_since_ms == b->phase_since_ms);
    assert_true(a->step_since_ms == b->step_since_ms);
    assert_true(a->rollout_started_ms == b->rollout_started_ms);
    assert_true(json_equal(a->rejected, b->rejected));
    assert_true(json_equal(a->history, b->history));
    assert_int_equal(a->reject_on_rollback, b->reject_on_rollback);
    if (a->rollback_reason)
        assert_string_equal(a->rollback_reason, b->rollback_reason);
    else
        assert_null(b->rollback_reason);
    if (a->last_error)
        assert_string_equal(a->last_error, b->last_error);
    else
        assert_null(b->last_error);
    for (int i = 0; i < 2; i++) {
        const struct side_state *x = &a->sides[i], *y = &b->sides[i];
        assert_int_equal(x->used, y->used);
        if (!x->used)
            continue;
        assert_string_equal(x->version, y->version);
        assert_string_equal(spec_text(x->spec), spec_text(y->spec));
        assert_string_equal(x->spec->version, y->spec->version);
        assert_string_equal(x->file, y->file);
        assert_int_equal(x->capacity, y->capacity);
    }
}

static void test_new_state_roundtrip(void **state)
{
    (void)state;
    struct service_state *s = service_state_new("fresh");
    struct service_state *back = roundtrip(s);
    expect_same_state(s, back);
    assert_int_equal(back->primary, -1);
    assert_int_equal(back->canary, -1);
    assert_false(back->sides[0].used);
    assert_false(back->sides[1].used);
    assert_null(back->last_error);
    assert_null(back->rollback_reason);
    assert_int_equal(json_array_size(back->rejected), 0);
    assert_int_equal(json_array_size(back->history), 0);
    service_state_free(s);
    service_state_free(back);
}

static void test_busy_state_roundtrip(void **state)
{
    (void)state;
    struct service_spec *v1, *v2;
    struct service_state *s = busy_state(&v1, &v2);
    struct service_state *back = roundtrip(s);
    expect_same_state(s, back);
    /* a second trip changes nothing either */
    struct service_state *twice = roundtrip(back);
    expect_same_state(s, twice);
    service_state_free(s);
    service_state_free(back);
    service_state_free(twice);
    spec_free(v1);
    spec_free(v2);
}

/* The agent rebuilds each side's typed spec from the stored doc: same
 * version, same rollout settings. */
static void test_side_spec_after_roundtrip(void **state)
{
    (void)state;
    struct service_spec *v1, *v2;
    struct service_state *s = busy_state(&v1, &v2);
    struct service_state *back = roundtrip(s);
    struct service_spec *canary = side_spec(&back->sides[0]);
    struct service_spec *primary = side_spec(&back->sides[1]);
    assert_non_null(canary);
    assert_non_null(primary);
    assert_string_equal(canary->version, v2->version);
    assert_string_equal(primary->version, v1->version);
    assert_int_equal(canary->rollout.canary_percent, 30);
    assert_int_equal(canary->rollout.max_surge_percent, 25);
    assert_int_equal(canary->rollout.timeout_s, 45 * 60);
    assert_int_equal(primary->rollout.canary_percent, -1);
    assert_string_equal(canary->version_name, "release-app:v2");
    spec_free(canary);
    spec_free(primary);
    service_state_free(s);
    service_state_free(back);
    spec_free(v1);
    spec_free(v2);
}

static void test_every_phase_roundtrips(void **state)
{
    (void)state;
    for (int p = 0; p < PHASE_COUNT; p++) {
        const char *name = service_phase_name((enum service_phase)p);
        assert_string_not_equal(name, "unknown");
        assert_int_equal(service_phase_from_name(name), p);
        assert_true(strlen(service_phase_description((enum service_phase)p)) > 0);
        struct service_state *s = service_state_new("svc");
        s->phase = (enum service_phase)p;
        struct service_state *back = roundtrip(s);
        assert_int_equal(back->phase, p);
        json_t *doc = service_state_to_json(s);
        assert_string_equal(json_string_value(json_object_get(doc, "phase")), name);
        json_decref(doc);
        service_state_free(s);
        service_state_free(back);
    }
    assert_int_equal(service_phase_from_name("nope"), -1);
    assert_int_equal(service_phase_from_name(NULL), -1);
    assert_string_equal(service_phase_name(PHASE_COUNT), "unknown");
}

/* The published JSON field names (status and tools read them). */
static void test_json_shape(void **state)
{
    (void)state;
    struct service_spec *v1, *v2;
    struct service_state *s = busy_state(&v1, &v2);
    json_t *doc = service_state_to_json(s);
    assert_string_equal(json_string_value(json_object_get(doc, "phase")), "rolling_back");
    assert_int_equal(json_integer_value(json_object_get(doc, "traffic")), 30);
    assert_int_equal(json_integer_value(json_object_get(doc, "primary")), 1);
    assert_int_equal(json_integer_value(json_object_get(doc, "canary")), 0);
    assert_true(json_integer_value(json_object_get(doc, "phase_since_ms")) == 1712345678901LL);
    json_t *sides = json_object_get(doc, "sides");
    assert_int_equal(json_array_size(sides), 2);
    json_t *side = json_array_get(sides, 0);
    assert_string_equal(json_string_value(json_object_get(side, "version")), v2->version);
    assert_int_equal(json_integer_value(json_object_get(side, "capacity")), 50);
    json_t *v2_doc = spec_doc(v2);
    assert_true(json_equal(json_object_get(side, "doc"), v2_doc));
    json_decref(v2_doc);
    assert_string_equal(json_string_value(json_object_get(side, "file")), "services/svc.yaml");
    assert_string_equal(json_string_value(json_object_get(doc, "rollback_reason")),
                        "manual rollback");
    assert_true(json_is_true(json_object_get(doc, "reject_on_rollback")));
    json_decref(doc);
    /* unset texts are left out, unused sides are null */
    struct service_state *fresh = service_state_new("svc");
    doc = service_state_to_json(fresh);
    assert_null(json_object_get(doc, "rollback_reason"));
    assert_null(json_object_get(doc, "last_error"));
    assert_true(json_is_null(json_array_get(json_object_get(doc, "sides"), 0)));
    json_decref(doc);
    service_state_free(fresh);
    service_state_free(s);
    spec_free(v1);
    spec_free(v2);
}

/* Mutates a valid document with fn and expects service_state_from_json to
 * refuse it. */
static void expect_refused(const char *what, void (*fn)(json_t *doc))
{
    struct service_spec *v1, *v2;
    struct service_state *s = busy_state(&v1, &v2);
    json_t *doc = service_state_to_json(s);
    fn(doc);
    struct service_state *back = service_state_from_json("svc", doc);
    if (back) {
        service_state_free(back);
        fail_msg("accepted a state document with %s", what);
    }
    json_decref(doc);
    service_state_free(s);
    spec_free(v1);
    spec_free(v2);
}

static void unknown_phase(json_t *d)
{
    json_object_set_new(d, "phase", json_string("dancing"));
}
static void no_phase(json_t *d)
{
    json_object_del(d, "phase");
}
static void one_side(json_t *d)
{
    json_array_remove(json_object_get(d, "sides"), 1);
}
static void no_sides(json_t *d)
{
    json_object_del(d, "sides");
}
static void short_version(json_t *d)
{
    json_object_set_new(json_array_get(json_object_get(d, "sides"), 0), "version",
                        json_string("abc"));
}
static void side_doc_not_object(json_t *d)
{
    json_object_set_new(json_array_get(json_object_get(d, "sides"), 1), "doc", json_string("x"));
}
static void primary_out_of_range(json_t *d)
{
    json_object_set_new(d, "primary", json_integer(2));
}
static void canary_out_of_range(json_t *d)
{
    json_object_set_new(d, "canary", json_integer(-2));
}

static void test_refuses_non_states(void **state)
{
    (void)state;
    expect_refused("an unknown phase", unknown_phase);
    expect_refused("no phase", no_phase);
    expect_refused("one side", one_side);
    expect_refused("no sides", no_sides);
    expect_refused("a short version id", short_version);
    expect_refused("a side doc that is not an object", side_doc_not_object);
    expect_refused("primary 2", primary_out_of_range);
    expect_refused("canary -2", canary_out_of_range);
    json_t *array = json_array();
    assert_null(service_state_from_json("svc", array));
    json_decref(array);
    assert_null(service_state_from_json("svc", NULL));
}

static void primary_on_empty_side(json_t *d)
{
    json_array_set_new(json_object_get(d, "sides"), 1, json_null());
}
static void canary_is_primary(json_t *d)
{
    json_object_set_new(d, "canary", json_integer(1));
}
static void traffic_over_100(json_t *d)
{
    json_object_set_new(d, "traffic", json_integer(150));
}
static void capacity_negative(json_t *d)
{
    json_object_set_new(json_array_get(json_object_get(d, "sides"), 0), "capacity",
                        json_integer(-5));
}

/* Documents that parse but cannot be a state rollout_step can work from (a
 * hand-edited or corrupted store): rollout_step would stall on them or hand
 * the router 150%. */
static void test_refuses_inconsistent_states(void **state)
{
    (void)state;
    expect_refused("the primary on an empty side", primary_on_empty_side);
    expect_refused("canary == primary", canary_is_primary);
    expect_refused("traffic 150", traffic_over_100);
    expect_refused("capacity -5", capacity_negative);
}

/* ---- the store ---- */

static char dir[256];

static int store_setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/rolld-test-state-XXXXXX");
    assert_non_null(mkdtemp(dir));
    return 0;
}

static int store_teardown(void **state)
{
    (void)state;
    char path[512];
    snprintf(path, sizeof(path), "%s/state.json", dir);
    unlink(path);
    snprintf(path, sizeof(path), "%s/garbage.json", dir);
    unlink(path);
    rmdir(dir);
    return 0;
}

static void test_store_save_load(void **state)
{
    (void)state;
    char path[512], tmp[600];
    snprintf(path, sizeof(path), "%s/state.json", dir);
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    json_t *doc = NULL;
    /* nothing yet: no error, no document */
    assert_int_equal(state_store_load(path, &doc), 0);
    assert_null(doc);

    struct service_spec *v1, *v2;
    struct service_state *s = busy_state(&v1, &v2);
    json_t *saved =
        json_pack("{s:i, s:{s:o}}", "format", 1, "services", "svc", service_state_to_json(s));
    assert_int_equal(state_store_save(path, saved), 0);
    assert_int_equal(access(tmp, F_OK), -1); /* no temporary file left behind */
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(state_store_load(path, &doc), 0);
    assert_non_null(doc);
    assert_true(json_equal(doc, saved));
    struct service_state *back =
        service_state_from_json("svc", json_object_get(json_object_get(doc, "services"), "svc"));
    assert_non_null(back);
    expect_same_state(s, back);
    service_state_free(back);
    json_decref(doc);

    /* overwriting replaces the whole document */
    json_t *smaller = json_pack("{s:i, s:{}}", "format", 1, "services");
    assert_int_equal(state_store_save(path, smaller), 0);
    assert_int_equal(state_store_load(path, &doc), 0);
    assert_true(json_equal(doc, smaller));
    json_decref(doc);
    json_decref(smaller);
    json_decref(saved);
    service_state_free(s);
    spec_free(v1);
    spec_free(v2);
}

/* A record kept with its sides' docs left out, filled at each save with the
 * specs' texts, is byte for byte the record written whole; a string that
 * spells a hole is not taken for one. */
/* Many pieces (more than one writev takes at a time), in order. */
static void test_writer_many_pieces(void **state)
{
    (void)state;
    char path[512];
    snprintf(path, sizeof(path), "%s/state.json", dir);
    static char digits[1000];
    struct state_writer *w = state_writer_open(path);
    assert_non_null(w);
    for (int i = 0; i < 1000; i++) {
        digits[i] = (char)('0' + i % 10);
        state_writer_add(w, &digits[i], 1);
        state_writer_add(w, "", 0);
    }
    assert_int_equal(state_writer_commit(w), 0);
    char *text = NULL;
    size_t length = 0;
    assert_int_equal(source_read_file(path, 1 << 20, &text, &length), 0);
    assert_int_equal(length, 1000);
    assert_memory_equal(text, digits, 1000);
    free(text);
    /* a failed write leaves the file as it was */
    w = state_writer_open(path);
    assert_non_null(w);
    state_writer_add(w, "x", 1);
    state_writer_fail(w, -ENOMEM);
    assert_int_equal(state_writer_commit(w), -ENOMEM);
    assert_int_equal(source_read_file(path, 1 << 20, &text, &length), 0);
    assert_int_equal(length, 1000);
    free(text);
    char tmp[600];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    assert_int_equal(access(tmp, F_OK), -1);
}

static void test_holes_filled_are_the_whole_record(void **state)
{
    (void)state;
    struct service_spec *v1, *v2;
    struct service_state *s = busy_state(&v1, &v2);
    free(s->last_error);
    s->last_error = strdup("\"doc\":-7240915536019117 \"doc\":-7240915536019118");
    const size_t flags = JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(17);
    json_t *whole_doc = service_state_to_json(s), *holed_doc = service_state_to_json_holes(s);
    char *whole = json_dumps(whole_doc, flags), *holed = json_dumps(holed_doc, flags);
    assert_true(strlen(holed) + 1000 < strlen(whole));
    struct state_holes holes;
    state_holes_find(holed, "doc", &holes);
    assert_int_equal(holes.count, 2);
    const char *fills[2] = {spec_text(s->sides[0].spec), spec_text(s->sides[1].spec)};
    char path[512];
    snprintf(path, sizeof(path), "%s/state.json", dir);
    for (int part = 0; part < 2; part++) {
        /* whole, and as the agent writes an entry: without its outer braces */
        struct state_writer *w = state_writer_open(path);
        assert_non_null(w);
        if (part)
            state_writer_add(w, "{", 1);
        state_writer_add_holes(w, holed, part, strlen(holed) - part, &holes, fills);
        if (part)
            state_writer_add(w, "}", 1);
        assert_int_equal(state_writer_commit(w), 0);
        char *filled = NULL;
        size_t length = 0;
        assert_int_equal(source_read_file(path, 1 << 20, &filled, &length), 0);
        assert_int_equal(length, strlen(whole));
        assert_string_equal(filled, whole);
        free(filled);
    }
    /* one side unused: one hole */
    spec_free(s->sides[0].spec);
    free(s->sides[0].file);
    memset(&s->sides[0], 0, sizeof(s->sides[0]));
    s->canary = -1;
    json_t *one = service_state_to_json_holes(s);
    char *one_text = json_dumps(one, flags);
    state_holes_find(one_text, "doc", &holes);
    assert_int_equal(holes.count, 1);
    assert_int_equal(holes.fill[0], 1);
    free(one_text);
    json_decref(one);
    free(whole);
    free(holed);
    json_decref(whole_doc);
    json_decref(holed_doc);
    service_state_free(s);
    spec_free(v1);
    spec_free(v2);
}

static void test_store_errors(void **state)
{
    (void)state;
    char path[512];
    snprintf(path, sizeof(path), "%s/garbage.json", dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("{\"services\": {", f);
    fclose(f);
    json_t *doc = (json_t *)1;
    assert_int_equal(state_store_load(path, &doc), -EBADMSG);
    assert_null(doc);
    /* a directory that does not exist */
    snprintf(path, sizeof(path), "%s/missing/state.json", dir);
    json_t *small = json_object();
    assert_true(state_store_save(path, small) < 0);
    json_decref(small);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_new_state_roundtrip),
        cmocka_unit_test(test_busy_state_roundtrip),
        cmocka_unit_test(test_side_spec_after_roundtrip),
        cmocka_unit_test(test_every_phase_roundtrips),
        cmocka_unit_test(test_json_shape),
        cmocka_unit_test(test_refuses_non_states),
        cmocka_unit_test(test_refuses_inconsistent_states),
        cmocka_unit_test(test_store_save_load),
        cmocka_unit_test(test_store_errors),
        cmocka_unit_test_setup_teardown(test_writer_many_pieces, store_setup, store_teardown),
        cmocka_unit_test_setup_teardown(test_holes_filled_are_the_whole_record, store_setup,
                                        store_teardown),
    };
    return cmocka_run_group_tests_name("state", tests, store_setup, store_teardown);
}
